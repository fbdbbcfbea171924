//! The SwitchBar session's picture in docs/ stays true: the scripted session is drawn again and
//! compared with docs/diagrams/switchbar-session.svg and the Mermaid block in
//! docs/session-diagrams.md (`DMF_UPDATE_DIAGRAMS=1` rewrites them).

use std::path::Path;

use switchbar::session::Session;

const HOW: &str = "cargo test -p switchbar --test diagram";

#[test]
fn the_committed_session_diagrams_are_current() {
    let session = Session::scripted(false);
    let diagram = session.diagram();
    assert_eq!(diagram.omitted(), 0, "the session fits the picture");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    diagram
        .check_file(&docs.join("diagrams/switchbar-session.svg"), HOW)
        .unwrap_or_else(|message| panic!("{message}"));
    diagram
        .check_embedded(&docs.join("session-diagrams.md"), "switchbar", HOW)
        .unwrap_or_else(|message| panic!("{message}"));
}

#[test]
fn the_diagram_shows_the_module_opening_on_arrival_and_the_ioctls() {
    let session = Session::scripted(false);
    let diagram = session.diagram();
    assert_eq!(
        diagram.lifelines(),
        [
            "KMDF",
            "switchbar",
            "DeviceInterfaceTarget",
            "DeviceInterfaceTarget/ContinuousRequestTarget",
            "osrusbfx2",
            "Board"
        ]
    );
    let lines = diagram.lines();
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("{line:?} not in the picture:\n{}", lines.join("\n")))
    };
    // The FX2 interface arrives, the Module opens on the notification, then streams and mirrors.
    let arrival = at("KMDF -> switchbar: ArrivalNotification");
    let opened = at("switchbar -> DeviceInterfaceTarget: opened (Manual)");
    let read = at("switchbar -> osrusbfx2: IOCTL_OSRUSBFX2_READ_SWITCHES");
    assert!(arrival < opened && opened < read);
    assert_eq!(lines[read + 1], "osrusbfx2 --> switchbar: STATUS_SUCCESS");
    // The unplug cancels the pending interrupt request.
    assert!(lines.contains(&"osrusbfx2 --> switchbar: STATUS_CANCELLED".to_owned()));
    // The step with nothing to do still has its banner, followed directly by the next one.
    let quiet = at("== 7. switch 5 is turned on");
    assert_eq!(lines[quiet + 1], "== 8. the OSR FX2 board is plugged in");
}
