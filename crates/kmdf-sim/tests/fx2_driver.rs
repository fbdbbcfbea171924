//! The OSR FX2 function driver model driven by a simulated application (kmdf-sequences §10).

use kmdf_sim::fx2::driver::{install, FX2_DRIVER};
use kmdf_sim::fx2::ioctl::*;
use kmdf_sim::fx2::{Fx2Board, SwitchState};
use kmdf_sim::io::{Access, AppConfig, Application};
use kmdf_sim::pnp::NodeState;
use kmdf_sim::{Machine, Status};

fn setup() -> (Machine, Fx2Board, kmdf_sim::pnp::DeviceNode, Application) {
    let m = Machine::new();
    let board = Fx2Board::new();
    let node = install(&m, &board).unwrap();
    assert_eq!(node.state(), NodeState::Started);
    let app = Application::new(
        &m,
        AppConfig {
            administrator: false,
            name: "osrusbfx2.exe".into(),
        },
    );
    (m, board, node, app)
}

#[test]
fn fx2_driver_reads_switches_sets_bar_graph_and_seven_segment() {
    let (m, board, _node, app) = setup();
    let h = app
        .open_interface(GUID_DEVINTERFACE_OSRUSBFX2, Access::READ_WRITE)
        .unwrap();
    board.set_switches(SwitchState::from_raw(0b1010_0101));
    let (out, info) = h
        .device_io_control(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1)
        .unwrap();
    assert_eq!((out, info), (vec![0b1010_0101], 1));

    h.device_io_control(IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, &[0x3C], 0)
        .unwrap();
    assert_eq!(board.snapshot().bar_graph.raw(), 0x3C);
    let (out, _) = h
        .device_io_control(IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY, &[], 1)
        .unwrap();
    assert_eq!(out, vec![0x3C]);

    h.device_io_control(IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY, &[0x5B], 0)
        .unwrap();
    let (out, info) = h
        .device_io_control(IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY, &[], 1)
        .unwrap();
    assert_eq!((out, info), (vec![0x5B], 1));

    let (desc, n) = h
        .device_io_control(IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR, &[], 64)
        .unwrap();
    assert_eq!(n, desc.len());
    assert_eq!(desc[1], 0x02); // a configuration descriptor

    h.device_io_control(IOCTL_OSRUSBFX2_RESET_DEVICE, &[], 0)
        .unwrap();
    assert_eq!(board.reset_count(), 1);
    assert_eq!(
        h.device_io_control(0x5500_6FFC, &[], 0).unwrap_err(),
        Status::INVALID_DEVICE_REQUEST
    );

    // Bulk loopback through the sequential read and write queues.
    assert_eq!(h.write(b"hello").unwrap(), 5);
    assert_eq!(h.read(16).unwrap(), b"hello".to_vec());

    let cbs = m.trace().callbacks_for(FX2_DRIVER);
    assert!(cbs.iter().any(|c| c == "EvtIoDeviceControl"), "{cbs:?}");
    assert!(cbs.iter().any(|c| c == "EvtIoRead"));
    h.close();
    assert!(m.verifier().violations().is_empty());
}

#[test]
fn fx2_driver_interrupt_message_completes_on_switch_flip() {
    let (m, board, _node, app) = setup();
    let h = app
        .open_interface(GUID_DEVINTERFACE_OSRUSBFX2, Access::READ)
        .unwrap();
    let op = h
        .device_io_control_overlapped(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1)
        .unwrap();
    assert!(!op.is_complete(), "parked in the manual queue");
    board.flip_switch(3).unwrap();
    assert_eq!(op.result().unwrap().unwrap(), (vec![0b0000_0100], 1));
    // Another one waits for the next change.
    let op2 = h
        .device_io_control_overlapped(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1)
        .unwrap();
    assert!(!op2.is_complete());
    board.flip_switch(1).unwrap();
    assert_eq!(op2.result().unwrap().unwrap().0, vec![0b0000_0101]);
    assert!(m
        .trace()
        .callbacks_for(FX2_DRIVER)
        .iter()
        .any(|c| c == "EvtUsbTargetPipeReadComplete"));
    assert!(m.verifier().violations().is_empty());
}

#[test]
fn fx2_driver_too_small_buffer_fails_with_buffer_too_small() {
    let (_m, _board, _node, app) = setup();
    let h = app
        .open_interface(GUID_DEVINTERFACE_OSRUSBFX2, Access::READ_WRITE)
        .unwrap();
    for code in [
        IOCTL_OSRUSBFX2_READ_SWITCHES,
        IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY,
        IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY,
    ] {
        assert_eq!(
            h.device_io_control(code, &[], 0).unwrap_err(),
            Status::BUFFER_TOO_SMALL
        );
    }
    assert_eq!(
        h.device_io_control(IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, &[], 0)
            .unwrap_err(),
        Status::BUFFER_TOO_SMALL
    );
    assert_eq!(
        h.device_io_control(IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR, &[], 9)
            .unwrap_err(),
        Status::BUFFER_TOO_SMALL
    );
}

#[test]
fn fx2_driver_unplug_completes_parked_interrupt_with_device_removed() {
    let (m, board, node, app) = setup();
    let h = app
        .open_interface(GUID_DEVINTERFACE_OSRUSBFX2, Access::READ)
        .unwrap();
    let op = h
        .device_io_control_overlapped(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1)
        .unwrap();
    assert!(!op.is_complete());
    board.unplug();
    node.surprise_remove().unwrap();
    assert_eq!(op.result().unwrap().unwrap_err(), Status::DEVICE_REMOVED);
    // The handle outlives the device: later I/O fails without reaching a driver.
    assert_eq!(
        h.device_io_control(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1)
            .unwrap_err(),
        Status::DEVICE_REMOVED
    );
    h.close();
    m.settle();
    assert!(m.verifier().violations().is_empty());
    let calls = m.trace().callbacks_for(FX2_DRIVER);
    let flush = calls
        .iter()
        .position(|c| c == "EvtDeviceSelfManagedIoFlush")
        .unwrap();
    assert!(calls[..flush]
        .iter()
        .any(|c| c == "EvtDeviceD0Exit(D3Final)"));
}

#[test]
fn fx2_driver_write_ioctl_on_read_only_handle_is_refused() {
    let (m, board, _node, app) = setup();
    let h = app
        .open_interface(GUID_DEVINTERFACE_OSRUSBFX2, Access::READ)
        .unwrap();
    let before = m.trace().callbacks_for(FX2_DRIVER).len();
    assert_eq!(
        h.device_io_control(IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, &[0xFF], 0)
            .unwrap_err(),
        Status::ACCESS_DENIED
    );
    assert_eq!(board.snapshot().bar_graph.raw(), 0);
    assert_eq!(
        m.trace().callbacks_for(FX2_DRIVER).len(),
        before,
        "no driver saw it"
    );
    // Read-access codes still work on the same handle.
    assert!(h
        .device_io_control(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1)
        .is_ok());
    assert_eq!(h.write(b"x").unwrap_err(), Status::ACCESS_DENIED);
}

#[test]
fn fx2_driver_power_up_byte_completes_parked_request_after_idle() {
    let (_m, _board, node, app) = setup();
    let h = app
        .open_interface(GUID_DEVINTERFACE_OSRUSBFX2, Access::READ)
        .unwrap();
    let op = h
        .device_io_control_overlapped(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1)
        .unwrap();
    node.idle().unwrap();
    assert!(!op.is_complete());
    node.wake_from_idle().unwrap();
    // The firmware sends the switch byte on resume (kmdf-sequences §10.6).
    assert_eq!(op.result().unwrap().unwrap(), (vec![0], 1));
}

#[test]
fn fx2_driver_answers_the_codes_of_dmfs_header_too() {
    // C DMF's samples include DMF's copy of public.h (`FILE_DEVICE_OSRUSBFX2 65500U`): the same
    // IOCTLs with device type 0xFFDC.
    assert_eq!(dmf_header_code(IOCTL_OSRUSBFX2_READ_SWITCHES), 0xFFDC_6018);
    assert_eq!(
        dmf_header_code(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE),
        0xFFDC_6026
    );
    assert_eq!(
        from_dmf_header(0xFFDC_A014),
        IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY
    );
    assert_eq!(from_dmf_header(0x0022_0004), 0x0022_0004);
    assert_eq!(
        osrusbfx2_ioctl_name(0xFFDC_A014),
        Some("IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY")
    );
    let (_m, board, _node, app) = setup();
    let h = app
        .open_interface(GUID_DEVINTERFACE_OSRUSBFX2, Access::READ_WRITE)
        .unwrap();
    board.set_switches(SwitchState::from_raw(0b0000_0110));
    let (out, _) = h
        .device_io_control(dmf_header_code(IOCTL_OSRUSBFX2_READ_SWITCHES), &[], 1)
        .unwrap();
    assert_eq!(out, vec![0b0000_0110]);
    h.device_io_control(
        dmf_header_code(IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY),
        &[0x81],
        0,
    )
    .unwrap();
    assert_eq!(board.snapshot().bar_graph.raw(), 0x81);
    // Another device type is still not the FX2's.
    assert_eq!(
        h.device_io_control(0x0022_6018, &[], 1).map(|_| ()),
        Err(Status::INVALID_DEVICE_REQUEST)
    );
}
