//! End-to-end: the OSR FX2 upper filter on the simulated board — the scripted session step by
//! step, an administrator and a non-administrator application, and a pass-through of every other
//! FX2 IOCTL.
#![allow(clippy::missing_panics_doc)]

use osrfx2_filter::session;

use kmdf_sim::fx2::ioctl::{
    IOCTL_OSRUSBFX2_REENUMERATE_DEVICE, IOCTL_OSRUSBFX2_RESET_DEVICE,
    IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY, IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
};

#[test]
fn scripted_session_every_step() {
    session::check_scripted_session(&session::install);
}

#[test]
fn every_other_fx2_ioctl_passes_down_untouched_for_any_caller() {
    session::check_pass_through(&session::install);
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

#[test]
fn non_administrator_state_changing_fx2_ioctls_are_refused() {
    session::check_non_administrator_refused(&session::install);
}
