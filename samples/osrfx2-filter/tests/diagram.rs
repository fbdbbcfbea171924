//! The filter session's picture in docs/ stays true: the scripted session is drawn again and
//! compared with docs/diagrams/osrfx2-filter-session.svg and the Mermaid block in
//! docs/session-diagrams.md (`DMF_UPDATE_DIAGRAMS=1` rewrites them). Also: the Module lifecycle
//! lines of the filter's Modules.

use std::path::Path;

use dmf::core::platform::simulator::{module_events, module_lines, ModuleAction};
use osrfx2_filter::session::Session;

const HOW: &str = "cargo test -p osrfx2-filter --test diagram";

#[test]
fn the_committed_session_diagrams_are_current() {
    let session = Session::scripted();
    let diagram = session.diagram();
    assert_eq!(diagram.omitted(), 0, "the session fits the picture");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    diagram
        .check_file(&docs.join("diagrams/osrfx2-filter-session.svg"), HOW)
        .unwrap_or_else(|message| panic!("{message}"));
    diagram
        .check_embedded(&docs.join("session-diagrams.md"), "osrfx2-filter", HOW)
        .unwrap_or_else(|message| panic!("{message}"));
}

#[test]
fn the_filter_modules_open_and_close_in_their_phases() {
    let session = Session::scripted();
    // The first device's Modules, from creation to destruction (the board is then plugged in
    // again and the same lines repeat for the second device).
    let lines = module_lines(&session.machine, "osrfx2filter");
    assert_eq!(
        lines[..14],
        [
            "Module DefaultTarget/ContinuousRequestTarget created",
            "Module DefaultTarget created",
            "Module IoctlHandler created",
            "Module DefaultTarget/ContinuousRequestTarget opened (Create)",
            "Module IoctlHandler opened (Create)",
            // DefaultTarget opens its target in PrepareHardware, before its own notification
            // registration is recorded.
            "Module DefaultTarget opened (Manual)",
            "Module DefaultTarget registered (PrepareHardware)",
            "Module DefaultTarget closed (Manual)",
            "Module DefaultTarget unregistered (ReleaseHardware)",
            "Module IoctlHandler closed (Destroy)",
            "Module DefaultTarget/ContinuousRequestTarget closed (Destroy)",
            "Module DefaultTarget/ContinuousRequestTarget destroyed",
            "Module DefaultTarget destroyed",
            "Module IoctlHandler destroyed",
        ]
    );
    assert_eq!(
        lines[14..],
        lines[..14],
        "the second device repeats the first"
    );
    let events = module_events(&session.machine);
    let opened = events
        .iter()
        .find(|e| e.name() == "IoctlHandler" && e.action == ModuleAction::Opened)
        .expect("IoctlHandler opens");
    assert_eq!(opened.during.as_deref(), Some("Create"));
    assert_eq!(opened.driver.as_deref(), Some("osrfx2filter"));
}
