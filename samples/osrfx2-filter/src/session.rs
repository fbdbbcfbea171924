//! The scripted session of the OSR FX2 filter on a simulated machine (the runner's script and the
//! end-to-end test's).
#![allow(
    clippy::missing_panics_doc,
    reason = "a scripted session: a step that fails panics with what went wrong, as a test does"
)]
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    reason = "host code (feature sim) that is never part of the driver image: the kernel \
              allocation rule does not apply"
)]

use std::borrow::ToOwned as _;
use std::string::String;
use std::time::Duration;
use std::vec::Vec;
use std::{format, vec};

use dmf::core::module::lifecycle::SOURCE as MODULE_LIFECYCLE_SOURCE;
use dmf::core::platform::simulator::SequenceDiagram;
use kmdf_sim::fx2::driver as fx2;
use kmdf_sim::fx2::ioctl::{
    osrusbfx2_ioctl_name, IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY,
    IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY, IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR,
    IOCTL_OSRUSBFX2_READ_SWITCHES, IOCTL_OSRUSBFX2_REENUMERATE_DEVICE,
    IOCTL_OSRUSBFX2_RESET_DEVICE, IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY,
    IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
};
use kmdf_sim::fx2::{Fx2Board, GUID_DEVINTERFACE_OSRUSBFX2};
use kmdf_sim::io::{Access, AppConfig, Application};
use kmdf_sim::narrate::Narrator;
use kmdf_sim::pnp::{DeviceNode, NodeState};
use kmdf_sim::{Machine, Status};

/// The filter's service name.
pub const FILTER: &str = "osrfx2filter";

/// One step's outcome.
#[derive(Clone, Debug)]
pub struct Step {
    /// What was done.
    pub title: String,
    /// Switch byte after the step.
    pub switches: u8,
    /// Light-bar byte after the step.
    pub bar: u8,
    /// Whether the board is plugged in.
    pub connected: bool,
    /// The filter's notes, both drivers' PnP callbacks and the applications' results.
    pub trace: Vec<String>,
    /// The board's picture.
    pub picture: String,
    /// The machine's last trace sequence number when the step ended (the step's events are those
    /// after the previous step's `last_seq`, up to this one).
    pub last_seq: u64,
}

/// The machine with the board, the FX2 driver and the filter.
pub struct Session {
    /// The machine.
    pub machine: Machine,
    /// The board on the desk.
    pub board: Fx2Board,
    node: Option<DeviceNode>,
    seen: u64,
    narrator: Narrator,
    app_lines: Vec<String>,
    /// The steps so far.
    pub steps: Vec<Step>,
}

/// Installs this crate's filter (the sim build) as the package [`FILTER`].
pub fn install(machine: &Machine) {
    dmf::core::platform::simulator::install_driver(machine, FILTER, crate::driver_config());
}

/// What the main job shows under each step: the filter's and the FX2 driver's PnP and power
/// callbacks, the filter's own lines, DMF's Module lifecycle lines and the requests the filter
/// sends (the ones it passes down included), by IOCTL name, with their statuses.
fn narrator() -> Narrator {
    Narrator::new(
        &[FILTER, fx2::FX2_DRIVER],
        &[("FX2Filter", "filter"), (MODULE_LIFECYCLE_SOURCE, "DMF")],
        osrusbfx2_ioctl_name,
    )
}

impl Session {
    /// A machine with the filter installed and the board on the desk, not plugged in.
    pub fn start() -> Session {
        Self::start_with(&install)
    }

    /// [`start`](Self::start) with the filter installed by `install` as the driver package
    /// [`FILTER`] (kmdf-host installs a linked `.sys` image this way).
    pub fn start_with(install: &dyn Fn(&Machine)) -> Session {
        let machine = Machine::builder().name("osrfx2-filter-demo").build();
        let board = Fx2Board::new();
        board.unplug();
        {
            let _bound = machine.enter();
            install(&machine);
        }
        Session {
            machine,
            board,
            node: None,
            seen: 0,
            narrator: narrator(),
            app_lines: Vec::new(),
            steps: Vec::new(),
        }
    }

    fn record(&mut self, title: &str) {
        self.machine.settle();
        let events = self.machine.trace().events();
        let new = events.partition_point(|e| e.seq <= self.seen);
        let mut trace = self.narrator.step(&events[new..]);
        trace.append(&mut self.app_lines);
        self.seen = events.last().map_or(self.seen, |e| e.seq);
        let snapshot = self.board.snapshot();
        self.steps.push(Step {
            title: title.to_owned(),
            switches: snapshot.switches.raw(),
            bar: snapshot.bar_graph.raw(),
            connected: self.board.is_connected(),
            trace,
            picture: self.board.picture(),
            last_seq: self.seen,
        });
    }

    fn pause(&self) {
        self.machine.advance(Duration::from_millis(500));
    }

    /// The board is plugged in: the FX2 stack starts with the filter above the function driver.
    pub fn plug_in(&mut self) {
        self.pause();
        {
            let _bound = self.machine.enter();
            let spec = fx2::stack_spec(&self.machine, &self.board).upper_filter(FILTER);
            let node = self
                .machine
                .pnp()
                .plug_in(spec)
                .expect("the FX2 stack starts");
            assert_eq!(node.state(), NodeState::Started);
            self.node = Some(node);
        }
        self.record("the OSR FX2 board is plugged in (FX2 driver + the filter above it)");
    }

    /// Switch `n` (1..=8) is flipped.
    pub fn flip(&mut self, n: u8) {
        self.pause();
        let state = self.board.flip_switch(n).expect("switches 1..=8");
        let on = state.is_on(n).unwrap_or(false);
        self.record(&format!(
            "switch {n} is turned {}",
            if on { "on" } else { "off" }
        ));
    }

    /// An application (administrator or not) opens the FX2 interface and sends `code` with
    /// `input`; returns its result, or the open's failure (a filter that admits only
    /// administrators refuses the open itself).
    pub fn app_ioctl(
        &mut self,
        administrator: bool,
        code: u32,
        input: &[u8],
        output: usize,
    ) -> Result<Vec<u8>, Status> {
        let _bound = self.machine.enter();
        let who = if administrator { "admin" } else { "user" };
        let app = Application::new(
            &self.machine,
            AppConfig {
                administrator,
                name: who.to_owned(),
            },
        );
        let name = kmdf_sim::fx2::ioctl::osrusbfx2_ioctl_name(code).unwrap_or("IOCTL");
        let handle = match app.open_interface(GUID_DEVINTERFACE_OSRUSBFX2, Access::READ_WRITE) {
            Ok(handle) => handle,
            Err(status) => {
                self.app_lines
                    .push(format!("           {who} application: open -> {status:?}"));
                return Err(status);
            }
        };
        let result = handle
            .device_io_control(code, input, output)
            .map(|(out, _)| out);
        handle.close();
        self.app_lines.push(format!(
            "           {who} application: {name} {input:02X?} -> {}",
            match &result {
                Ok(out) => format!("success {out:02X?}"),
                Err(status) => format!("{status:?}"),
            }
        ));
        result
    }

    /// An application sets the light bar.
    pub fn set_bar(&mut self, administrator: bool, bar: u8) -> Result<(), Status> {
        self.pause();
        let result = self
            .app_ioctl(
                administrator,
                IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
                &[bar],
                0,
            )
            .map(|_| ());
        let who = if administrator {
            "an administrator"
        } else {
            "a user"
        };
        self.record(&format!("{who} tries to set the light bar to {bar:08b}"));
        result
    }

    /// Applications read the switches and the bar: passed down untouched.
    pub fn read_back(&mut self) -> (Result<Vec<u8>, Status>, Result<Vec<u8>, Status>) {
        self.pause();
        let switches = self.app_ioctl(false, IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1);
        let bar = self.app_ioctl(false, IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY, &[], 1);
        self.record("a user reads the switches and the bar (passed down by DMF)");
        (switches, bar)
    }

    /// The cable is pulled (surprise removal of the whole stack).
    pub fn unplug(&mut self) {
        self.pause();
        self.board.unplug();
        if let Some(node) = self.node.take() {
            let _bound = self.machine.enter();
            node.surprise_remove().expect("surprise removal");
        }
        self.record("the board is unplugged");
    }

    /// The stack is removed and the drivers unload.
    pub fn unload(&mut self) {
        self.pause();
        if let Some(node) = self.node.take() {
            let _bound = self.machine.enter();
            node.remove().expect("orderly removal");
        }
        self.record("the drivers unload");
    }

    /// The session so far as a sequence diagram, one banner per step (docs/trace.md): what
    /// `--diagram <file>` writes and docs/diagrams/ shows.
    pub fn diagram(&self) -> SequenceDiagram {
        let steps: Vec<(u64, &str)> = self
            .steps
            .iter()
            .map(|s| (s.last_seq, s.title.as_str()))
            .collect();
        SequenceDiagram::from_events(&self.machine.trace().events(), &steps)
    }

    /// The verifier's verdict ([`Machine::verdict`]).
    pub fn verdict(&self) -> Result<String, String> {
        self.machine.verdict()
    }

    /// The scripted session of the runner.
    pub fn scripted() -> Session {
        Self::scripted_with(&install)
    }

    /// The scripted session with the filter installed by `install` (see
    /// [`start_with`](Self::start_with)).
    pub fn scripted_with(install: &dyn Fn(&Machine)) -> Session {
        let mut s = Session::start_with(install);
        s.board.set_switch(2, true).expect("switch 2");
        s.plug_in();
        s.flip(4);
        let _ = s.read_back();
        let _ = s.set_bar(false, 0xFF);
        let _ = s.set_bar(true, 0xAA);
        s.flip(6);
        s.unplug();
        s.plug_in();
        s.unload();
        s
    }
}

fn has(step: &Step, text: &str) -> bool {
    step.trace.iter().any(|l| l.contains(text))
}

/// The scripted session with the filter installed by `install`, asserted step by step: the
/// board, the applications' results, the filter's notes and callbacks, and a clean verdict. The
/// sample's end-to-end test runs it on the sim build; kmdf-host's on the linked image.
pub fn check_scripted_session(install: &dyn Fn(&Machine)) {
    let s = Session::scripted_with(install);
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
    // The user's open goes down to the FX2 driver; the write is refused before it.
    assert!(has(&s.steps[3], "[osrfx2filter] Create → passed down"));
    assert!(
        !has(&s.steps[3], "SET_BAR_GRAPH_DISPLAY → passed down"),
        "refused before the FX2 driver"
    );
    assert!(has(
        &s.steps[4],
        "an administrator sets the light bar: passed down"
    ));
    assert!(has(
        &s.steps[4],
        "[osrfx2filter] IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY → passed down"
    ));
    assert!(has(
        &s.steps[4],
        "admin application: IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY [AA] -> success"
    ));
    assert!(has(&s.steps[6], "[osrfx2filter] EvtDeviceReleaseHardware"));
    assert_eq!(s.verdict().map(|_| ()), Ok(()));
}

/// Every FX2 IOCTL outside the filter's table passes down untouched for any caller, with the
/// FX2 driver's own buffer rules; the table's IOCTL is checked for size, then access.
pub fn check_pass_through(install: &dyn Fn(&Machine)) {
    let mut s = Session::start_with(install);
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

/// Every FX2 IOCTL that changes the board's state is administrator-only: a non-administrator's
/// SET_7_SEGMENT_DISPLAY, RESET_DEVICE and REENUMERATE_DEVICE are refused with
/// `STATUS_ACCESS_DENIED` before the FX2 driver (access before size: even an empty input), and
/// the board is unchanged; an administrator's 7-segment write passes down.
pub fn check_non_administrator_refused(install: &dyn Fn(&Machine)) {
    let mut s = Session::start_with(install);
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

/// Who may open the OSR FX2 interface through the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenPolicy {
    /// Anyone opens it; the filter checks the caller per IOCTL (this crate's filter).
    Everyone,
    /// Only an administrator opens it (`IoctlHandler_AccessModeFilterAdministratorOnly`:
    /// `EvtDeviceFileCreate` fails a non-administrator's create with `STATUS_ACCESS_DENIED`).
    AdministratorOnly,
}

/// How a build of the filter behaves where Microsoft's C DMF SwitchBar4 and this port differ;
/// [`check_board_session`] asserts the board against it.
#[derive(Clone, Copy, Debug)]
pub struct FilterBehaviour {
    /// Who may open the interface.
    pub open: OpenPolicy,
    /// The light-bar byte the filter writes for a switch byte.
    pub mirror: fn(u8) -> u8,
    /// Whether an administrator's `IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY` reaches the board
    /// (passed down), or the filter completes it itself with success.
    pub admin_sets_the_bar: bool,
    /// The IOCTL codes of the header the filter and its applications are built with.
    pub code: fn(u32) -> u32,
}

/// This crate's filter: anyone opens; a non-administrator's `SET_BAR_GRAPH_DISPLAY` is refused
/// per IOCTL, an administrator's passed down; the simulated board's direct mirror.
pub const PORT: FilterBehaviour = FilterBehaviour {
    open: OpenPolicy::Everyone,
    mirror: core::convert::identity,
    admin_sets_the_bar: true,
    code: core::convert::identity,
};

/// Microsoft's C DMF SwitchBar4 (`DmfSamples/SwitchBar4`): administrators only open the
/// interface (`AccessModeFilterAdministratorOnly`); its `SET_BAR_GRAPH_DISPLAY` handler
/// completes the request with success without passing it down ("filtered out"); the physical
/// kit's mirror (`RotateUCHAR(switches, 5)`, inverted); DMF's header (`0xFFDC…` codes).
pub const C_DMF_SWITCHBAR4: FilterBehaviour = FilterBehaviour {
    open: OpenPolicy::AdministratorOnly,
    mirror: |switches| !switches.rotate_left(5),
    admin_sets_the_bar: false,
    code: kmdf_sim::fx2::ioctl::dmf_header_code,
};

/// The filter session's board steps with the filter installed by `install` and an
/// administrator's application, asserted against `behaviour`: the switches and light bar at
/// every step, the applications' results, both drivers' callbacks and a clean verdict (nothing
/// of the filter's own notes: Microsoft's C DMF SwitchBar4 traces through WPP). A
/// non-administrator is refused — at the open under [`OpenPolicy::AdministratorOnly`], at
/// `SET_BAR_GRAPH_DISPLAY` otherwise — with `STATUS_ACCESS_DENIED`, and the board is unchanged.
pub fn check_board_session(install: &dyn Fn(&Machine), behaviour: &FilterBehaviour) -> Session {
    let b = behaviour;
    let code = b.code;
    let mut s = Session::start_with(install);
    s.board.set_switch(2, true).expect("switch 2");
    s.plug_in();
    s.flip(4);
    s.pause();
    let switches = s.app_ioctl(true, code(IOCTL_OSRUSBFX2_READ_SWITCHES), &[], 1);
    let bar = s.app_ioctl(true, code(IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY), &[], 1);
    s.record("an administrator reads the switches and the bar (passed down)");
    assert_eq!(switches, Ok(vec![0x0A]));
    assert_eq!(bar, Ok(vec![(b.mirror)(0x0A)]));
    s.pause();
    // A non-administrator: refused at the open, or at the IOCTL by a filter that checks per
    // IOCTL.
    let refused = s.app_ioctl(
        false,
        code(IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY),
        &[0xFF],
        0,
    );
    s.record("a user tries to set the light bar to 11111111");
    assert_eq!(refused, Err(Status::ACCESS_DENIED), "{:?}", b.open);
    let refused_at_open = s.steps[3]
        .trace
        .iter()
        .any(|l| l.contains("user application: open -> STATUS_ACCESS_DENIED"));
    assert_eq!(
        refused_at_open,
        b.open == OpenPolicy::AdministratorOnly,
        "{:?}",
        s.steps[3].trace
    );
    s.pause();
    let set = s.app_ioctl(
        true,
        code(IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY),
        &[0xAA],
        0,
    );
    s.record("an administrator tries to set the light bar to 10101010");
    assert_eq!(set, Ok(vec![]));
    s.flip(6);
    s.unplug();
    s.plug_in();
    s.unload();
    let m = b.mirror;
    let admin_bar = if b.admin_sets_the_bar { 0xAA } else { m(0x0A) };
    let got: Vec<(u8, u8, bool)> = s
        .steps
        .iter()
        .map(|st| (st.switches, st.bar, st.connected))
        .collect();
    assert_eq!(
        got,
        [
            (0x02, m(0x02), true),   // plugged in: synced
            (0x0A, m(0x0A), true),   // switch 4: the stream follows
            (0x0A, m(0x0A), true),   // an administrator reads (passed down)
            (0x0A, m(0x0A), true),   // a user is refused
            (0x0A, admin_bar, true), // an administrator sets the bar
            (0x2A, m(0x2A), true),   // switch 6: back in sync
            (0x2A, 0x00, false),     // unplugged: dark
            (0x2A, m(0x2A), true),   // replugged: synced again
            (0x2A, m(0x2A), true),   // unload (the board stays plugged in)
        ]
    );
    assert!(has(&s.steps[0], "[osrfx2filter] EvtDeviceD0Entry"));
    assert!(has(&s.steps[0], "[osrusbfx2] EvtDevicePrepareHardware"));
    assert!(has(&s.steps[6], "[osrfx2filter] EvtDeviceReleaseHardware"));
    assert!(has(&s.steps[7], "[osrfx2filter] EvtDeviceD0Entry"));
    assert_eq!(s.verdict().map(|_| ()), Ok(()));
    s
}
