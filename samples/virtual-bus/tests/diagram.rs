//! The VirtualBus session as a sequence diagram (`cargo run -p virtual-bus -- --diagram <file>`):
//! the whole session fits, its lifelines are the bus, its two Modules, the FX2 driver, the board
//! and the applications, and a plug reads in the order it happens.

use virtual_bus::session::Session;

#[test]
fn the_diagram_shows_the_bus_its_modules_and_the_children() {
    let session = Session::scripted(false);
    let diagram = session.diagram();
    assert_eq!(diagram.omitted(), 0, "the session fits the picture");
    assert_eq!(
        diagram.lifelines(),
        [
            "Applications",
            "KMDF",
            "virtualbus",
            "IoctlHandler",
            "Pdo",
            "osrusbfx2",
            "Board"
        ]
    );
    let lines = diagram.lines();
    let at = |line: &str, from: usize| {
        from + lines[from..]
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("{line:?} not in the picture:\n{}", lines.join("\n")))
    };
    // The Modules open when the bus device is created, before its PrepareHardware.
    let opened = at("virtualbus -> Pdo: opened (Create)", 0);
    assert!(opened < at("KMDF -> virtualbus: EvtDevicePrepareHardware", 0));
    // A plug: the enum IOCTL reaches the bus, the FX2 driver starts on the new child, the IOCTL
    // completes, then the board's application reads its switches.
    let plug = at("== 2. board 1 is plugged in (enum -p 1)", 0);
    let ioctl = at(
        "Applications -> virtualbus: IOCTL 0x002A4000 (enum (admin))",
        plug,
    );
    let add = at("KMDF -> osrusbfx2: EvtDriverDeviceAdd", ioctl);
    let done = at("virtualbus --> Applications: STATUS_SUCCESS", add);
    let read = at(
        "Applications -> osrusbfx2: IOCTL_OSRUSBFX2_READ_SWITCHES (osrusbfx2 app 1)",
        done,
    );
    assert!(read < at("== 3. board 2 is plugged in (enum -p 2)", 0));
    // The bus's Modules close at its removal, the last step.
    let unload = at("== 10. the bus unloads (its children first)", 0);
    at("virtualbus -> Pdo: closed (Destroy)", unload);
}
