//! End-to-end: the VirtualBus sample with virtual OSR USB-FX2 boards. Every step of the main
//! job's scripted session is asserted (the bus's children, the applications' reads, the WDF
//! callbacks in KMDF order, DMF's Module lines, a clean verdict); the control interface's
//! refusals; seeded plug/unplug/yank/eject churn.
#![allow(clippy::missing_panics_doc)]

use virtual_bus::session;

#[test]
fn scripted_session_every_step() {
    session::check_scripted_session(&session::install);
}

#[test]
fn the_control_interface_refuses_bad_requests() {
    session::check_control_refusals(&session::install);
}

#[test]
fn seeded_churn_keeps_the_children_in_sync_and_leaks_nothing() {
    session::check_seeded_churn(&session::install);
}
