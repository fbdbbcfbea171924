//! End-to-end: the SwitchBar sample on the simulated OSR USB-FX2 board. Every step of the main
//! job's scripted session is asserted on the board and the trace; unplug during streaming,
//! replug, and unload with nothing leaked; plus seeded plug/flip churn.
#![allow(clippy::missing_panics_doc)]

use switchbar::session;

#[test]
fn scripted_session_every_step() {
    session::check_scripted_session(&session::install);
}

#[test]
fn seeded_churn_keeps_the_bar_in_sync_and_leaks_nothing() {
    session::check_seeded_churn(&session::install);
}
