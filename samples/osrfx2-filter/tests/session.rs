//! End-to-end: the OSR FX2 upper filter on the simulated board — the scripted session step by
//! step, an administrator and a non-administrator application, and a pass-through of every other
//! FX2 IOCTL.
#![allow(clippy::missing_panics_doc)]

use osrfx2_filter::session;

use kmdf_sim::fx2::ioctl::{
    IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY, IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY,
    IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR, IOCTL_OSRUSBFX2_READ_SWITCHES,
    IOCTL_OSRUSBFX2_REENUMERATE_DEVICE, IOCTL_OSRUSBFX2_RESET_DEVICE,
    IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY, IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
};
use kmdf_sim::Status;
use session::Session;

fn has(step: &session::Step, text: &str) -> bool {
    step.trace.iter().any(|l| l.contains(text))
}

#[test]
fn scripted_session_every_step() {
    let s = Session::scripted();
    let got: Vec<(u8, u8, bool)> = s
        .steps
        .iter()
        .map(|st| (st.switches, st.bar, st.connected))
        .collect();
    assert_eq!(
        got,
        [
            (0x02, 0x02, true),  // plugged in: synced at PostOpen
            (0x0A, 0x0A, true),  // switch 4: the stream follows
            (0x0A, 0x0A, true),  // a user reads (passed down)
            (0x0A, 0x0A, true),  // a user is refused
            (0x0A, 0xAA, true),  // an administrator sets the bar
            (0x2A, 0x2A, true),  // switch 6: back in sync
            (0x2A, 0x00, false), // unplugged: dark
            (0x2A, 0x2A, true),  // replugged: synced again
            (0x2A, 0x2A, true),  // unload (the board stays plugged in)
        ]
    );
    assert!(has(&s.steps[0], "[osrfx2filter] EvtDeviceD0Entry"));
    assert!(has(&s.steps[2], "READ_SWITCHES [] -> success [0A]"));
    assert!(has(&s.steps[2], "GET_BAR_GRAPH_DISPLAY [] -> success [0A]"));
    assert!(has(
        &s.steps[3],
        "user application: IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY [FF] -> STATUS_ACCESS_DENIED"
    ));
    assert!(
        !has(&s.steps[3], "passed down"),
        "refused before the FX2 driver"
    );
    assert!(has(
        &s.steps[4],
        "an administrator sets the light bar: passed down"
    ));
    assert!(has(
        &s.steps[4],
        "admin application: IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY [AA] -> success"
    ));
    assert!(has(&s.steps[6], "[osrfx2filter] EvtDeviceReleaseHardware"));
    assert_eq!(s.verdict().map(|_| ()), Ok(()));
}

#[test]
fn every_other_fx2_ioctl_passes_down_untouched_for_any_caller() {
    let mut s = Session::start();
    s.board.set_switch(3, true).unwrap();
    s.plug_in();
    for admin in [false, true] {
        assert_eq!(
            s.app_ioctl(admin, IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1),
            Ok(vec![0x04])
        );
        assert_eq!(
            s.app_ioctl(admin, IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY, &[], 1),
            Ok(vec![0x04])
        );
        assert_eq!(
            s.app_ioctl(admin, IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY, &[], 1),
            Ok(vec![0x00])
        );
        let descriptor = s
            .app_ioctl(admin, IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR, &[], 64)
            .unwrap();
        assert!(descriptor.len() >= 9, "a configuration descriptor");
        // Buffer rules are the FX2 driver's, not the filter's: a too-small READ_SWITCHES.
        assert_eq!(
            s.app_ioctl(admin, IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 0),
            Err(Status::BUFFER_TOO_SMALL)
        );
    }
    // A table IOCTL: too small is refused by the IoctlHandler before any handler.
    assert_eq!(
        s.app_ioctl(true, IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, &[], 0),
        Err(Status::BUFFER_TOO_SMALL)
    );
    assert_eq!(
        s.app_ioctl(false, IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, &[0x01], 0),
        Err(Status::ACCESS_DENIED)
    );
    assert_eq!(
        s.app_ioctl(true, IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, &[0x81], 0),
        Ok(vec![])
    );
    s.machine.settle();
    assert_eq!(s.board.snapshot().bar_graph.raw(), 0x81);
    s.unload();
    assert_eq!(s.verdict().map(|_| ()), Ok(()));
}

/// The filter's table and the board's IOCTL codes agree.
#[test]
fn filter_table_codes_are_the_fx2_codes() {
    assert_eq!(
        osrfx2_filter::ADMINISTRATOR_ONLY_IOCTLS.map(|(code, _)| code),
        [
            IOCTL_OSRUSBFX2_RESET_DEVICE,
            IOCTL_OSRUSBFX2_REENUMERATE_DEVICE,
            IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
            IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY,
        ]
    );
}

/// Every FX2 IOCTL that changes the board's state is administrator-only: a non-administrator's
/// SET_7_SEGMENT_DISPLAY, RESET_DEVICE and REENUMERATE_DEVICE are refused with
/// `STATUS_ACCESS_DENIED` before the FX2 driver (access before size: even an empty input), and
/// the board is unchanged; an administrator's 7-segment write passes down.
#[test]
fn non_administrator_state_changing_fx2_ioctls_are_refused() {
    let mut s = Session::start();
    s.plug_in();
    let before = s.board.snapshot();
    for (code, input) in [
        (IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY, &[0x3F][..]),
        (IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY, &[][..]),
        (IOCTL_OSRUSBFX2_RESET_DEVICE, &[][..]),
        (IOCTL_OSRUSBFX2_REENUMERATE_DEVICE, &[][..]),
        (IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, &[][..]),
    ] {
        assert_eq!(
            s.app_ioctl(false, code, input, 0),
            Err(Status::ACCESS_DENIED),
            "{code:#010X} {input:?}"
        );
    }
    s.machine.settle();
    let after = s.board.snapshot();
    assert_eq!(after.seven_segment.raw(), before.seven_segment.raw());
    assert_eq!(after.bar_graph.raw(), before.bar_graph.raw());
    assert_eq!(
        s.app_ioctl(true, IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY, &[0x3F], 0),
        Ok(vec![])
    );
    for admin in [false, true] {
        assert_eq!(
            s.app_ioctl(admin, IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY, &[], 1),
            Ok(vec![0x3F]),
            "queries stay open to everyone"
        );
    }
    s.unload();
    assert_eq!(s.verdict().map(|_| ()), Ok(()));
}
