//! The OSR USB-FX2 board model, as a driver model and a demo will use it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kmdf_sim::fx2::ioctl::{
    access_from_ctl_code, ctl_code, device_type_from_ctl_code, function_from_ctl_code,
    method_from_ctl_code, FILE_ANY_ACCESS, FILE_DEVICE_OSRUSBFX2, FILE_READ_ACCESS,
    FILE_WRITE_ACCESS, IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY,
    IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY, IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR,
    IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, IOCTL_OSRUSBFX2_READ_SWITCHES,
    IOCTL_OSRUSBFX2_REENUMERATE_DEVICE, IOCTL_OSRUSBFX2_RESET_DEVICE,
    IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY, IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, METHOD_BUFFERED,
    METHOD_IN_DIRECT, METHOD_NEITHER, METHOD_OUT_DIRECT,
};
use kmdf_sim::fx2::usb::{
    DESCRIPTOR_TYPE_CONFIGURATION, DESCRIPTOR_TYPE_ENDPOINT, DESCRIPTOR_TYPE_INTERFACE,
};
use kmdf_sim::fx2::{
    BarGraphState, BoardEvent, Fx2Board, Fx2BoardConfig, Fx2Error, PowerState, SevenSegment,
    SwitchState, UsbSpeed, GUID_DEVINTERFACE_OSRUSBFX2,
};

/// A started board with its start-up byte already consumed.
fn started() -> Fx2Board {
    let board = Fx2Board::new();
    board.power_on().expect("plugged in");
    assert_eq!(board.try_read_interrupt(), Ok(Some(0)), "start-up byte");
    board
}

fn drain(board: &Fx2Board) -> Vec<u8> {
    std::iter::from_fn(|| board.try_read_interrupt().ok().flatten()).collect()
}

#[test]
fn fx2_ioctl_codes_match_the_table() {
    let table = [
        (IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR, 0x5500_6000),
        (IOCTL_OSRUSBFX2_RESET_DEVICE, 0x5500_A004),
        (IOCTL_OSRUSBFX2_REENUMERATE_DEVICE, 0x5500_A00C),
        (IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY, 0x5500_6010),
        (IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, 0x5500_A014),
        (IOCTL_OSRUSBFX2_READ_SWITCHES, 0x5500_6018),
        (IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY, 0x5500_601C),
        (IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY, 0x5500_A020),
        (IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, 0x5500_6026),
    ];
    for (code, expected) in table {
        assert_eq!(code, expected, "0x{code:08X}");
    }
    // The quirk: the sample's device type does not survive the 32-bit shift.
    assert_eq!(
        ctl_code(
            FILE_DEVICE_OSRUSBFX2,
            0x800,
            METHOD_BUFFERED,
            FILE_ANY_ACCESS
        ),
        0x5500_2000
    );
    assert_eq!(
        GUID_DEVINTERFACE_OSRUSBFX2.to_string(),
        "{573E8C73-0CB4-4471-A1BF-FAB26C31D384}"
    );
}

#[test]
fn fx2_decoders_split_codes_into_fields() {
    for method in [
        METHOD_BUFFERED,
        METHOD_IN_DIRECT,
        METHOD_OUT_DIRECT,
        METHOD_NEITHER,
    ] {
        for access in [FILE_ANY_ACCESS, FILE_READ_ACCESS, FILE_WRITE_ACCESS, 3] {
            let code = ctl_code(0x0022, 0x907, method, access);
            assert_eq!(device_type_from_ctl_code(code), 0x0022);
            assert_eq!(function_from_ctl_code(code), 0x907);
            assert_eq!(method_from_ctl_code(code), method);
            assert_eq!(access_from_ctl_code(code), access);
        }
    }
    assert_eq!(
        method_from_ctl_code(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE),
        METHOD_OUT_DIRECT
    );
    assert_eq!(
        access_from_ctl_code(IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY),
        FILE_WRITE_ACCESS
    );
    assert_eq!(
        function_from_ctl_code(IOCTL_OSRUSBFX2_REENUMERATE_DEVICE),
        0x803
    );
    assert_eq!(
        device_type_from_ctl_code(IOCTL_OSRUSBFX2_READ_SWITCHES),
        0x5500
    );
}

#[test]
fn fx2_descriptor_walks_cleanly() {
    let board = Fx2Board::new();
    let bytes = board.configuration_descriptor().expect("plugged in");
    // Configuration descriptor header.
    assert_eq!(bytes[0], 9);
    assert_eq!(bytes[1], DESCRIPTOR_TYPE_CONFIGURATION);
    assert_eq!(
        usize::from(u16::from_le_bytes([bytes[2], bytes[3]])),
        bytes.len()
    );
    assert_eq!(bytes.len(), 39);
    assert_eq!(bytes[4], 1, "one interface");
    // Walk every descriptor by bLength.
    let mut offset = 0;
    let mut seen = Vec::new();
    while offset < bytes.len() {
        let length = usize::from(bytes[offset]);
        assert!(
            length >= 2 && offset + length <= bytes.len(),
            "bLength at {offset}"
        );
        seen.push((bytes[offset + 1], bytes[offset..offset + length].to_vec()));
        offset += length;
    }
    assert_eq!(offset, bytes.len());
    let kinds: Vec<u8> = seen.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(
        kinds,
        [
            DESCRIPTOR_TYPE_CONFIGURATION,
            DESCRIPTOR_TYPE_INTERFACE,
            DESCRIPTOR_TYPE_ENDPOINT,
            DESCRIPTOR_TYPE_ENDPOINT,
            DESCRIPTOR_TYPE_ENDPOINT
        ]
    );
    let interface = &seen[1].1;
    assert_eq!(interface.len(), 9);
    assert_eq!(
        (interface[4], interface[5]),
        (3, 0xFF),
        "3 endpoints, vendor class"
    );
    let endpoints: Vec<(u8, u8, u16, u8)> = seen[2..]
        .iter()
        .map(|(_, d)| (d[2], d[3] & 3, u16::from_le_bytes([d[4], d[5]]), d[6]))
        .collect();
    assert_eq!(
        endpoints,
        [(0x81, 3, 0x49, 1), (0x06, 2, 512, 0), (0x88, 2, 512, 0)]
    );

    let full_speed = Fx2Board::with_config(Fx2BoardConfig {
        speed: UsbSpeed::Full,
        ..Fx2BoardConfig::default()
    });
    let bytes = full_speed.configuration_descriptor().unwrap();
    assert_eq!(
        u16::from_le_bytes([bytes[9 + 9 + 7 + 4], bytes[9 + 9 + 7 + 5]]),
        64
    );
}

#[test]
fn fx2_power_on_sends_the_switch_state() {
    let board = Fx2Board::with_config(Fx2BoardConfig {
        initial_switches: SwitchState::from_raw(0x42),
        ..Fx2BoardConfig::default()
    });
    assert_eq!(board.try_read_interrupt(), Err(Fx2Error::PoweredOff));
    board.power_on().unwrap();
    assert_eq!(drain(&board), [0x42]);
    board.power_on().unwrap(); // already on: nothing more
    assert_eq!(drain(&board), Vec::<u8>::new());
}

#[test]
fn fx2_switch_flip_sends_exactly_one_byte() {
    let board = started();
    let state = board.flip_switch(3).unwrap();
    assert_eq!(state, SwitchState::from_raw(0x04));
    assert_eq!(drain(&board), [0x04]);
    assert_eq!(board.read_switches(), Ok(SwitchState::from_raw(0x04)));
    assert_eq!(board.flip_switch(0), Err(Fx2Error::InvalidSwitch(0)));
    assert_eq!(board.flip_switch(9), Err(Fx2Error::InvalidSwitch(9)));
    assert_eq!(drain(&board), Vec::<u8>::new());
}

#[test]
fn fx2_several_flips_send_bytes_in_order() {
    let board = started();
    for n in [1, 2, 8, 1] {
        board.flip_switch(n).unwrap();
    }
    assert_eq!(drain(&board), [0x01, 0x03, 0x83, 0x82]);
    assert_eq!(board.snapshot().interrupt_sent, 5);
}

#[test]
fn fx2_suspend_resume_sends_one_byte_on_resume() {
    let board = started();
    board.suspend().unwrap();
    assert_eq!(board.try_read_interrupt(), Err(Fx2Error::Suspended));
    board.flip_switch(2).unwrap(); // nothing sent while suspended
    board.resume().unwrap();
    assert_eq!(board.power_state(), PowerState::On);
    assert_eq!(
        drain(&board),
        [0x02],
        "the resume byte carries the current state"
    );
}

#[test]
fn fx2_callback_hook_fires_for_waiting_and_new_bytes() {
    let board = Fx2Board::new();
    board.power_on().unwrap(); // start-up byte waits in the endpoint
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let id = board.on_interrupt(move |byte| log.lock().unwrap().push(byte));
    assert_eq!(
        *seen.lock().unwrap(),
        [0x00],
        "the waiting byte is delivered at once"
    );
    board.flip_switch(5).unwrap();
    board.flip_switch(6).unwrap();
    assert_eq!(*seen.lock().unwrap(), [0x00, 0x10, 0x30]);
    assert_eq!(
        board.try_read_interrupt(),
        Ok(None),
        "the hook consumed the bytes"
    );

    assert!(board.remove_hook(id));
    assert!(!board.remove_hook(id));
    board.flip_switch(5).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3, "no delivery after removal");
    assert_eq!(drain(&board), [0x20], "bytes queue again without a hook");
}

#[test]
fn fx2_event_hook_reports_changes() {
    let board = started();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    board.on_event(move |event| log.lock().unwrap().push(*event));
    board.set_bar_graph(BarGraphState::from_raw(0x81)).unwrap();
    board
        .set_seven_segment(SevenSegment::from_raw(0x06))
        .unwrap();
    board.flip_switch(1).unwrap();
    board.bulk_write(b"abc").unwrap();
    board.unplug();
    assert_eq!(
        *events.lock().unwrap(),
        [
            BoardEvent::BarGraphChanged(BarGraphState::from_raw(0x81)),
            BoardEvent::SevenSegmentChanged(SevenSegment::from_raw(0x06)),
            BoardEvent::SwitchesChanged(SwitchState::from_raw(0x01)),
            BoardEvent::BulkDataReady { pending: 3 },
            BoardEvent::PowerChanged(PowerState::Off),
            BoardEvent::Unplugged,
        ]
    );
}

#[test]
fn fx2_remote_wake_is_signalled_while_suspended() {
    let board = started();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    board.on_event(move |event| log.lock().unwrap().push(*event));
    board.set_remote_wake_enabled(true).unwrap();
    board.suspend().unwrap();
    board.flip_switch(4).unwrap();
    assert!(events.lock().unwrap().contains(&BoardEvent::RemoteWake));
}

#[test]
fn fx2_light_bar_and_display_round_trip() {
    let board = started();
    assert_eq!(board.bar_graph(), Ok(BarGraphState::OFF));
    board.set_bar_graph(BarGraphState::from_raw(0xA5)).unwrap();
    assert_eq!(board.bar_graph(), Ok(BarGraphState::from_raw(0xA5)));
    board
        .set_seven_segment(SevenSegment::from_raw(0x80))
        .unwrap();
    assert_eq!(board.seven_segment(), Ok(SevenSegment::from_raw(0x80)));
    assert_eq!(board.is_high_speed(), Ok(true));
}

#[test]
fn fx2_bulk_loopback_returns_the_same_bytes() {
    let board = Fx2Board::with_config(Fx2BoardConfig {
        bulk_capacity: 8,
        ..Fx2BoardConfig::default()
    });
    board.power_on().unwrap();
    assert_eq!(board.bulk_write(b"hello"), Ok(5));
    assert_eq!(
        board.bulk_write(b"world"),
        Ok(3),
        "bounded: only 3 bytes of room"
    );
    assert_eq!(board.bulk_write(b"!"), Ok(0));
    assert_eq!(board.bulk_pending(), 8);
    let mut buf = [0u8; 6];
    assert_eq!(board.bulk_read(&mut buf), Ok(6));
    assert_eq!(&buf, b"hellow");
    assert_eq!(board.bulk_write(b"xyz"), Ok(3));
    let mut rest = [0u8; 16];
    assert_eq!(board.bulk_read(&mut rest), Ok(5));
    assert_eq!(&rest[..5], b"orxyz");
    assert_eq!(
        board.bulk_read(&mut rest),
        Ok(0),
        "the board makes no data itself"
    );
}

#[test]
fn fx2_unplugged_board_errors() {
    let board = started();
    board.set_bar_graph(BarGraphState::ALL).unwrap();
    board.bulk_write(b"data").unwrap();
    board.flip_switch(1).unwrap();
    board.unplug();
    assert!(!board.is_connected());
    assert_eq!(board.power_state(), PowerState::Off);
    assert_eq!(board.read_switches(), Err(Fx2Error::Unplugged));
    assert_eq!(
        board.set_bar_graph(BarGraphState::OFF),
        Err(Fx2Error::Unplugged)
    );
    assert_eq!(board.bar_graph(), Err(Fx2Error::Unplugged));
    assert_eq!(board.try_read_interrupt(), Err(Fx2Error::Unplugged));
    assert_eq!(board.bulk_write(b"x"), Err(Fx2Error::Unplugged));
    assert_eq!(board.bulk_read(&mut [0]), Err(Fx2Error::Unplugged));
    assert_eq!(board.power_on(), Err(Fx2Error::Unplugged));
    assert_eq!(board.reset_port(), Err(Fx2Error::Unplugged));
    assert_eq!(board.reenumerate(), Err(Fx2Error::Unplugged));
    assert_eq!(board.configuration_descriptor(), Err(Fx2Error::Unplugged));
    assert!(Fx2Error::Unplugged.to_string().contains("unplugged"));
    // The switches are still physical; flipping them sends nothing anywhere.
    assert_eq!(board.flip_switch(2).unwrap(), SwitchState::from_raw(0x03));
    // Plug back in: everything was lost, the host must start the board again.
    board.plug_in();
    assert_eq!(board.read_switches(), Err(Fx2Error::PoweredOff));
    board.power_on().unwrap();
    assert_eq!(drain(&board), [0x03]);
    assert_eq!(board.bar_graph(), Ok(BarGraphState::OFF));
    assert_eq!(board.bulk_pending(), 0);
}

#[test]
fn fx2_blocking_reader_wakes_on_byte_and_on_unplug() {
    let board = started();
    assert_eq!(board.read_interrupt_timeout(Duration::ZERO), Ok(None));
    let reader = board.clone();
    let waiter = std::thread::spawn(move || reader.read_interrupt_timeout(Duration::from_secs(30)));
    // Whether or not the reader is already waiting, the byte reaches it.
    board.flip_switch(7).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(Some(0x40)));

    let reader = board.clone();
    let waiter = std::thread::spawn(move || reader.read_interrupt_timeout(Duration::from_secs(30)));
    board.unplug();
    assert_eq!(waiter.join().unwrap(), Err(Fx2Error::Unplugged));
}

#[test]
fn fx2_reset_and_reenumerate_count() {
    let board = started();
    board.bulk_write(b"abc").unwrap();
    board.reset_port().unwrap();
    assert_eq!(board.reset_count(), 1);
    assert_eq!(board.bulk_pending(), 0, "reset loses endpoint data");
    board.flip_switch(1).unwrap();
    board.reenumerate().unwrap();
    assert_eq!(board.reenumerate_count(), 1);
    assert_eq!(
        drain(&board),
        [0x01],
        "the restarted firmware announces the switches"
    );
    assert_eq!(board.vendor_request(0xDA, &mut []), Ok(0));
    assert_eq!(board.snapshot().reenumerate_count, 2);
}

#[test]
fn fx2_picture_contains_the_right_glyphs() {
    let board = started();
    board.set_switches(SwitchState::from_raw(0b0000_1101));
    board
        .set_bar_graph(BarGraphState::from_raw(0b0000_1101))
        .unwrap();
    board
        .set_seven_segment(SevenSegment::from_raw(0x06))
        .unwrap();
    let picture = board.picture();
    assert!(picture.contains("[1 0 1 1 0 0 0 0]"), "{picture}");
    assert!(picture.contains("●○●●○○○○"), "{picture}");
    assert!(picture.contains("0x06"), "{picture}");
    assert!(picture.contains("plugged in"), "{picture}");
    assert!(picture.lines().count() >= 4);
    let line = board.to_string();
    assert!(!line.contains('\n'));
    assert!(
        line.contains("●○●●○○○○") && line.contains("[1 0 1 1 0 0 0 0]"),
        "{line}"
    );
    assert_eq!(format!("{board:#}"), picture);
    board.unplug();
    assert!(board.picture().contains("unplugged"));
    assert!(board.picture().contains("○○○○○○○○"));
}

#[test]
fn fx2_concurrent_flips_are_delivered_in_queue_order() {
    let board = Fx2Board::with_config(Fx2BoardConfig {
        interrupt_capacity: 1024, // no overflow however the threads interleave
        ..Fx2BoardConfig::default()
    });
    board.power_on().unwrap();
    assert_eq!(drain(&board), [0x00]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    board.on_interrupt(move |byte| log.lock().unwrap().push(byte));
    let threads: Vec<_> = (1..=4u8)
        .map(|n| {
            let board = board.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    board.flip_switch(n).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 200, "one byte per flip, none lost");
    // 50 flips of each switch: every switch ends where it started.
    assert_eq!(seen.last(), Some(&0x00));
    assert_eq!(board.switches(), SwitchState::OFF);
}
