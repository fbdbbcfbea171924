//! The scripted SwitchBar session on a simulated machine: the main job's script and the
//! end-to-end test's, so that what `cargo run -p switchbar` shows is what the tests assert.
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
use std::format;

use crate::{bar_for_switches, Wiring, BOARD_WIRING};
use std::string::String;
use std::time::Duration;
use std::vec::Vec;

use dmf::core::module::lifecycle::SOURCE as MODULE_LIFECYCLE_SOURCE;
use dmf::core::platform::simulator::SequenceDiagram;
use kmdf_sim::fx2::driver as fx2;
use kmdf_sim::fx2::ioctl::osrusbfx2_ioctl_name;
use kmdf_sim::fx2::Fx2Board;
use kmdf_sim::narrate::Narrator;
use kmdf_sim::pnp::{DeviceNode, NodeState, StackSpec};
use kmdf_sim::{ClockMode, Machine};

/// One step's outcome, as printed and as asserted.
#[derive(Clone, Debug)]
pub struct Step {
    /// What was done.
    pub title: String,
    /// The switch byte after the step.
    pub switches: u8,
    /// The light-bar byte after the step.
    pub bar: u8,
    /// Whether the board is plugged in.
    pub connected: bool,
    /// The trace lines of the step (SwitchBar's notes and both drivers' PnP callbacks).
    pub trace: Vec<String>,
    /// The board's picture.
    pub picture: String,
    /// The machine's last trace sequence number when the step ended (the step's events are those
    /// after the previous step's `last_seq`, up to this one).
    pub last_seq: u64,
}

/// The simulated machine with the FX2 board and SwitchBar installed.
pub struct Session {
    /// The machine.
    pub machine: Machine,
    /// The OSR USB-FX2 board on the desk.
    pub board: Fx2Board,
    switchbar: Option<DeviceNode>,
    fx2: Option<DeviceNode>,
    seen: u64,
    narrator: Narrator,
    /// The steps so far.
    pub steps: Vec<Step>,
}

/// The SwitchBar device node (root-enumerated, as the sample's INF installs it).
pub const SWITCHBAR_HARDWARE_ID: &str = "ROOT\\SWITCHBAR";

/// Installs this crate's SwitchBar (the sim build) as the package `switchbar`.
pub fn install(machine: &Machine) {
    dmf::core::platform::simulator::install_driver(machine, "switchbar", crate::driver_config());
}

/// What the main job shows under each step: SwitchBar's and the FX2 driver's PnP and power
/// callbacks, SwitchBar's own lines, DMF's Module lifecycle lines and the requests SwitchBar
/// sends, by IOCTL name, with their statuses.
fn narrator() -> Narrator {
    Narrator::new(
        &["switchbar", fx2::FX2_DRIVER],
        &[("SwitchBar", "SwitchBar"), (MODULE_LIFECYCLE_SOURCE, "DMF")],
        osrusbfx2_ioctl_name,
    )
}

impl Session {
    /// A machine (virtual clock, or wall clock with `real_time`) with the board and SwitchBar
    /// installed; SwitchBar's device starts and waits for the FX2 interface.
    pub fn start(real_time: bool) -> Session {
        Self::start_with(real_time, &install)
    }

    /// [`start`](Self::start) with SwitchBar installed by `install` as the driver package
    /// `switchbar` (kmdf-host installs a linked `.sys` image this way).
    pub fn start_with(real_time: bool, install: &dyn Fn(&Machine)) -> Session {
        let machine = Machine::builder()
            .name("switchbar-demo")
            .clock(if real_time {
                ClockMode::RealTime
            } else {
                ClockMode::Manual
            })
            .build();
        let board = Fx2Board::new();
        // On the desk, not yet connected.
        board.unplug();
        let mut session = Session {
            machine,
            board,
            switchbar: None,
            fx2: None,
            seen: 0,
            narrator: narrator(),
            steps: Vec::new(),
        };
        {
            let _bound = session.machine.enter();
            install(&session.machine);
            let node = session
                .machine
                .pnp()
                .plug_in(StackSpec::new(SWITCHBAR_HARDWARE_ID, "switchbar"))
                .expect("the SwitchBar device starts");
            assert_eq!(node.state(), NodeState::Started);
            session.switchbar = Some(node);
        }
        session.record("SwitchBar loads; it waits for the OSR FX2 interface");
        session
    }

    /// A person takes a moment between actions: half a second of virtual time (the wall clock
    /// does it by itself in real-time mode).
    fn pause(&self) {
        if self.machine.clock_mode() == ClockMode::RealTime {
            std::thread::sleep(Duration::from_millis(300));
        } else {
            self.machine.advance(Duration::from_millis(500));
        }
    }

    fn record(&mut self, title: &str) {
        self.machine.settle();
        let events = self.machine.trace().events();
        let new = events.partition_point(|e| e.seq <= self.seen);
        let trace = self.narrator.step(&events[new..]);
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

    /// The board is plugged in: the FX2 driver starts and registers its interface.
    pub fn plug_in(&mut self) {
        self.pause();
        {
            let _bound = self.machine.enter();
            self.fx2 = Some(fx2::install(&self.machine, &self.board).expect("the FX2 starts"));
        }
        self.record("the OSR FX2 board is plugged in");
    }

    /// Switch `n` (1..=8) is flipped by the person at the desk.
    pub fn flip(&mut self, n: u8) {
        self.pause();
        let state = self.board.flip_switch(n).expect("switches 1..=8");
        let on = state.is_on(n).unwrap_or(false);
        self.record(&format!(
            "switch {n} is turned {}",
            if on { "on" } else { "off" }
        ));
    }

    /// The cable is pulled while the interrupt message is pending (surprise removal).
    pub fn unplug(&mut self) {
        self.pause();
        self.board.unplug();
        if let Some(node) = self.fx2.take() {
            let _bound = self.machine.enter();
            node.surprise_remove().expect("surprise removal");
        }
        self.record("the board is unplugged mid-stream");
    }

    /// Both drivers unload: SwitchBar's device is removed, then the FX2's, and the machine settles.
    pub fn unload(&mut self) {
        self.pause();
        {
            let _bound = self.machine.enter();
            if let Some(node) = self.switchbar.take() {
                node.remove().expect("SwitchBar's device is removed");
            }
            if let Some(node) = self.fx2.take() {
                node.remove().expect("the FX2 device is removed");
            }
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

    /// The scripted session of the main job.
    pub fn scripted(real_time: bool) -> Session {
        Self::scripted_with(real_time, &install)
    }

    /// The scripted session with SwitchBar installed by `install` (see
    /// [`start_with`](Self::start_with)).
    pub fn scripted_with(real_time: bool, install: &dyn Fn(&Machine)) -> Session {
        Self::scripted_live(real_time, install, &mut |_| {})
    }

    /// The scripted session, calling `after_step` as soon as each step is recorded (the main
    /// job prints it then, so a real-time run shows each step as it happens).
    pub fn scripted_live(
        real_time: bool,
        install: &dyn Fn(&Machine),
        after_step: &mut dyn FnMut(&Session),
    ) -> Session {
        let mut s = Session::start_with(real_time, install);
        after_step(&s);
        s.board.set_switch(1, true).expect("switch 1");
        s.board.set_switch(3, true).expect("switch 3");
        let script: [&dyn Fn(&mut Session); 9] = [
            &|s| s.plug_in(),
            &|s| s.flip(2),
            &|s| s.flip(8),
            &|s| s.flip(1),
            &|s| s.unplug(),
            &|s| s.flip(5),
            &|s| s.plug_in(),
            &|s| s.flip(5),
            &|s| s.unload(),
        ];
        for action in script {
            action(&mut s);
            after_step(&s);
        }
        s
    }
}

fn has(step: &Step, text: &str) -> bool {
    step.trace.iter().any(|l| l.contains(text))
}

/// The scripted session with SwitchBar installed by `install`, asserted on what any SwitchBar
/// does, whoever built it: the board (switches and light bar) at every step, both drivers' PnP
/// callbacks, and a clean verdict — without SwitchBar's own notes (Microsoft's C DMF SwitchBar
/// traces through WPP, which kmdf-host does not see). `wiring` is the mirror the driver
/// computes: [`BOARD_WIRING`] for this crate's SwitchBar, [`Wiring::OsrKit`] for Microsoft's
/// (`RotateUCHAR(switches, 5)`, inverted). Returns the session for further checks.
pub fn check_board_session(install: &dyn Fn(&Machine), wiring: Wiring) -> Session {
    let s = Session::scripted_with(false, install);
    let titles: Vec<&str> = s.steps.iter().map(|st| st.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "SwitchBar loads; it waits for the OSR FX2 interface",
            "the OSR FX2 board is plugged in",
            "switch 2 is turned on",
            "switch 8 is turned on",
            "switch 1 is turned off",
            "the board is unplugged mid-stream",
            "switch 5 is turned on",
            "the OSR FX2 board is plugged in",
            "switch 5 is turned off",
            "the drivers unload",
        ]
    );
    let expected_switches = [0x00, 0x05, 0x07, 0x87, 0x86, 0x86, 0x96, 0x96, 0x86, 0x86];
    let direct_bar = [0x00, 0x05, 0x07, 0x87, 0x86, 0x00, 0x00, 0x96, 0x86, 0x86];
    // The board is dark before the first plug-in (step 1) and while unplugged (steps 6-7);
    // otherwise the bar mirrors the switches.
    let dark = [0, 5, 6];
    let expected_bar: Vec<u8> = expected_switches
        .iter()
        .enumerate()
        .map(|(i, &sw)| {
            if dark.contains(&i) {
                0
            } else {
                bar_for_switches(sw, wiring)
            }
        })
        .collect();
    if wiring == Wiring::Direct {
        assert_eq!(expected_bar, direct_bar);
    }
    for (i, step) in s.steps.iter().enumerate() {
        assert_eq!(
            step.switches,
            expected_switches[i],
            "step {}: switches",
            i + 1
        );
        assert_eq!(step.bar, expected_bar[i], "step {}: light bar", i + 1);
        if step.connected && i > 0 {
            assert_eq!(step.bar, bar_for_switches(step.switches, wiring));
        }
    }
    // Step 1: SwitchBar's device started, no FX2 yet.
    assert!(has(&s.steps[0], "[switchbar] EvtDeviceD0Entry"));
    // Step 2: the FX2 device starts.
    assert!(has(&s.steps[1], "[osrusbfx2] EvtDevicePrepareHardware"));
    // Step 6: the unplug flushes the FX2 driver's pending interrupt requests.
    assert!(has(&s.steps[5], "[osrusbfx2] EvtDeviceSelfManagedIoFlush"));
    assert!(!s.steps[5].connected);
    // Step 7: nothing happens while unplugged.
    assert!(s.steps[6].trace.is_empty(), "{:?}", s.steps[6].trace);
    // Step 10: SwitchBar's device leaves first, then the FX2.
    assert!(has(&s.steps[9], "[switchbar] EvtDeviceReleaseHardware"));
    assert_eq!(s.verdict().map(|_| ()), Ok(()));
    s
}

/// The scripted session with SwitchBar installed by `install`, asserted step by step: the board
/// (switches and light bar), both drivers' callbacks and a clean verdict
/// ([`check_board_session`]), then SwitchBar's notes. The sample's end-to-end test runs it on
/// the sim build; kmdf-host's on the linked image.
pub fn check_scripted_session(install: &dyn Fn(&Machine)) {
    let s = check_board_session(install, BOARD_WIRING);
    // Step 1: nothing streamed.
    assert!(!has(&s.steps[0], "SwitchBar:"));
    // Step 2: arrival → PostOpen → stream start and the initial mirror.
    assert!(has(
        &s.steps[1],
        "SwitchBar: OSR FX2 arrived: start streaming"
    ));
    assert!(has(&s.steps[1], "switches 00000101 -> light bar 00000101"));
    // DMF's Module events: the target Module opens when the interface arrives and closes when
    // it leaves; the requests carry their IOCTL names and statuses.
    assert!(has(&s.steps[1], "DMF: Module DeviceInterfaceTarget opened"));
    assert!(has(
        &s.steps[1],
        "[switchbar] IOCTL_OSRUSBFX2_READ_SWITCHES → STATUS_SUCCESS"
    ));
    assert!(has(&s.steps[5], "DMF: Module DeviceInterfaceTarget closed"));
    assert!(has(
        &s.steps[5],
        "[switchbar] IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE → STATUS_CANCELLED"
    ));
    // Steps 3-5: each flip reaches SwitchBar and it mirrors the new switches, once: the FX2
    // driver completes the interrupt requests parked when the message arrived; the one SwitchBar
    // re-sends (from a work item, at PASSIVE_LEVEL) waits for the next flip.
    for (i, bits) in [(2, "00000111"), (3, "10000111"), (4, "10000110")] {
        let mirrors: Vec<_> = s.steps[i]
            .trace
            .iter()
            .filter(|l| l.contains("-> light bar"))
            .collect();
        assert_eq!(mirrors.len(), 1, "step {}: {mirrors:?}", i + 1);
        assert!(
            mirrors[0].contains(&format!("switches {bits}")),
            "{}",
            mirrors[0]
        );
    }
    // Step 6: the unplug reaches SwitchBar's PreClose while the interrupt request is pending.
    assert!(has(&s.steps[5], "SwitchBar: OSR FX2 target closing"));
    // Step 8: replug resumes with the switch moved while unplugged.
    assert!(has(&s.steps[7], "SwitchBar: OSR FX2 arrived"));
    assert!(has(&s.steps[7], "switches 10010110 -> light bar 10010110"));
    // Step 10: SwitchBar's device leaves first (its Module closes the target), then the FX2.
    assert!(has(&s.steps[9], "SwitchBar: OSR FX2 target closing"));
}

/// A small deterministic generator (xorshift) for the churn test.
/// A small seeded generator (xorshift) for the churn.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Seeded plug/unplug/flip churn with SwitchBar installed by `install`: after every step the
/// light bar mirrors the switches (or the board is dark), and nothing leaks.
pub fn check_seeded_churn(install: &dyn Fn(&Machine)) {
    for seed in [1_u64, 7, 42, 2024] {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut s = Session::start_with(false, install);
        s.plug_in();
        for _ in 0..40 {
            match rng.below(10) {
                0 if s.board.is_connected() => s.unplug(),
                1 if !s.board.is_connected() => s.plug_in(),
                _ => s.flip(u8::try_from(rng.below(8)).unwrap() + 1),
            }
            let step = s.steps.last().unwrap();
            if step.connected {
                assert_eq!(
                    step.bar,
                    bar_for_switches(step.switches, BOARD_WIRING),
                    "seed {seed}: {}",
                    step.title
                );
            } else {
                assert_eq!(step.bar, 0, "seed {seed}: an unplugged board is dark");
            }
        }
        s.unload();
        assert_eq!(s.verdict().map(|_| ()), Ok(()), "seed {seed}");
    }
}
