//! The scripted VirtualBus session on a simulated machine: the main job's script and the
//! end-to-end tests', so that what `cargo run -p virtual-bus` shows is what the tests assert.
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
use std::collections::BTreeMap;
use std::format;
use std::string::String;
use std::time::Duration;
use std::vec;
use std::vec::Vec;

use dmf::core::module::lifecycle::SOURCE as MODULE_LIFECYCLE_SOURCE;
use dmf::core::platform::simulator::{sim_guid, SequenceDiagram};
use kmdf_sim::fx2::driver as fx2;
use kmdf_sim::fx2::ioctl::{osrusbfx2_ioctl_name, IOCTL_OSRUSBFX2_READ_SWITCHES};
use kmdf_sim::fx2::Fx2Board;
use kmdf_sim::io::{Access, AppConfig, Application};
use kmdf_sim::narrate::Narrator;
use kmdf_sim::pnp::{DeviceNode, NodeState, StackSpec};
use kmdf_sim::trace::{TraceEvent, TraceKind};
use kmdf_sim::{ClockMode, Machine, Status};

use crate::{
    CHILD_HARDWARE_ID, GUID_DEVINTERFACE_VIRTUALBUS, IOCTL_VIRTUALBUS_EJECT_HARDWARE,
    IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE, IOCTL_VIRTUALBUS_UNPLUG_HARDWARE,
};

/// The bus device node (root-enumerated, as the sample's INF installs it).
pub const VIRTUALBUS_HARDWARE_ID: &str = "ROOT\\VIRTUALBUS";
/// The bus driver's package (service) name.
pub const VIRTUALBUS_DRIVER: &str = "virtualbus";

/// Installs this crate's VirtualBus (the sim build) as the package [`VIRTUALBUS_DRIVER`].
pub fn install(machine: &Machine) {
    dmf::core::platform::simulator::install_driver(
        machine,
        VIRTUALBUS_DRIVER,
        crate::driver_config(),
    );
}

/// The device instance id of the child with `serial`: `{device id}\{instance id}`, the instance
/// id being the serial number (the Pdo Module's default `"%u"`).
pub fn child_instance_id(serial: u32) -> String {
    format!("{CHILD_HARDWARE_ID}\\{serial}")
}

/// One step's outcome, as printed and as asserted.
#[derive(Clone, Debug)]
pub struct Step {
    /// What was done.
    pub title: String,
    /// The trace lines of the step: the bus driver's notes, the WDF callbacks of the bus, its
    /// children's PDOs and their FX2 function drivers, and DMF's Module lines.
    pub trace: Vec<String>,
    /// What the applications did (the bus's control IOCTLs, the boards' switch reads).
    pub apps: Vec<String>,
    /// The children the bus has after the step: serial number and node state.
    pub children: Vec<(u32, NodeState)>,
    /// The switch byte each present child's application read, by serial number.
    pub switches_read: BTreeMap<u32, u8>,
    /// The machine's last trace sequence number when the step ended.
    pub last_seq: u64,
}

/// The simulated machine with the bus driver, the FX2 function driver and the boards.
pub struct Session {
    /// The machine.
    pub machine: Machine,
    /// The boards on the desk, by serial number.
    pub boards: BTreeMap<u32, Fx2Board>,
    bus: Option<DeviceNode>,
    seen: u64,
    narrator: Narrator,
    apps: Vec<String>,
    switches_read: BTreeMap<u32, u8>,
    /// The steps so far.
    pub steps: Vec<Step>,
}

/// What the main job shows under each step: the bus driver's and the FX2 driver's PnP and power
/// callbacks, VirtualBus's own lines, DMF's Module events and the requests the drivers send
/// (kmdf-sim's [`Narrator`]), and — this sample's own — the PnP manager's view of the bus's and
/// its children's device nodes and interfaces, and the bus driver's PDOs.
fn narrator() -> Narrator {
    Narrator::new(
        &[VIRTUALBUS_DRIVER, fx2::FX2_DRIVER],
        &[
            ("VirtualBus", "VirtualBus"),
            (MODULE_LIFECYCLE_SOURCE, "DMF"),
        ],
        osrusbfx2_ioctl_name,
    )
    .with_extra(bus_line)
}

/// The PnP manager's and the bus driver's PDO lines of the narration.
fn bus_line(e: &TraceEvent) -> Option<String> {
    if e.kind != TraceKind::State {
        return None;
    }
    let ms = e.time.as_secs_f64() * 1000.0;
    let driver = e.driver.as_deref().unwrap_or("-");
    if e.object.starts_with(CHILD_HARDWARE_ID)
        || e.object.starts_with(VIRTUALBUS_HARDWARE_ID)
        || e.object.starts_with("\\??\\DmfVirtualBus#")
        || e.object.starts_with("\\??\\ROOT#VIRTUALBUS#")
    {
        // The PnP manager: the bus's and its children's device nodes and interfaces.
        Some(format!("{ms:>9.3} ms  [PnP] {}: {}", e.object, e.text))
    } else if driver == VIRTUALBUS_DRIVER
        && e.object.starts_with("WDFDEVICE ")
        && !e.object.ends_with("#0")
        && (e.text == "created" || e.text.starts_with("PDO"))
    {
        // The bus driver's PDOs (its own device is `#0`).
        Some(format!(
            "{ms:>9.3} ms  [{driver}] PDO {}: {}",
            e.object.trim_start_matches("WDFDEVICE "),
            e.text
        ))
    } else {
        None
    }
}

/// The serial number of a child node of the bus (its instance id's last part).
fn serial_of(node: &DeviceNode) -> Option<u32> {
    node.instance_id().rsplit('\\').next()?.parse().ok()
}

impl Session {
    /// A machine (virtual clock, or wall clock with `real_time`) with the FX2 function driver
    /// bound to the children's hardware id and VirtualBus installed by `install` as the package
    /// [`VIRTUALBUS_DRIVER`] (kmdf-host installs a linked `.sys` image this way); the bus device
    /// starts with no children.
    pub fn start_with(real_time: bool, install: &dyn Fn(&Machine)) -> Session {
        let machine = Machine::builder()
            .name("virtual-bus-demo")
            .clock(if real_time {
                ClockMode::RealTime
            } else {
                ClockMode::Manual
            })
            .build();
        let mut session = Session {
            machine,
            boards: BTreeMap::new(),
            bus: None,
            seen: 0,
            narrator: narrator(),
            apps: Vec::new(),
            switches_read: BTreeMap::new(),
            steps: Vec::new(),
        };
        {
            let _bound = session.machine.enter();
            install(&session.machine);
            fx2::install_for_hardware_id(&session.machine, CHILD_HARDWARE_ID);
            let node = session
                .machine
                .pnp()
                .plug_in(StackSpec::new(VIRTUALBUS_HARDWARE_ID, VIRTUALBUS_DRIVER))
                .expect("the bus device starts");
            assert_eq!(node.state(), NodeState::Started);
            session.bus = Some(node);
        }
        session.record("the virtual bus loads; no boards yet");
        session
    }

    /// [`start_with`](Self::start_with) this crate's VirtualBus.
    pub fn start(real_time: bool) -> Session {
        Self::start_with(real_time, &install)
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
        let children = self.children();
        self.steps.push(Step {
            title: title.to_owned(),
            trace,
            apps: std::mem::take(&mut self.apps),
            children,
            switches_read: std::mem::take(&mut self.switches_read),
            last_seq: self.seen,
        });
    }

    /// The bus's children now (serial number, node state), in serial-number order; removed ones
    /// are left out.
    pub fn children(&self) -> Vec<(u32, NodeState)> {
        let Some(bus) = &self.bus else {
            return Vec::new();
        };
        let mut children: Vec<(u32, NodeState)> = bus
            .children()
            .iter()
            .filter(|c| c.state().has_stack())
            .filter_map(|c| Some((serial_of(c)?, c.state())))
            .collect();
        children.sort_unstable_by_key(|(serial, _)| *serial);
        children
    }

    /// The child node with `serial`, while it has a stack.
    pub fn child(&self, serial: u32) -> Option<DeviceNode> {
        self.bus
            .as_ref()?
            .children()
            .into_iter()
            .find(|c| c.state().has_stack() && serial_of(c) == Some(serial))
    }

    /// The `enum` tool: an administrator's application opens the bus's control interface and
    /// sends `code` with `serial`.
    pub fn bus_ioctl(&mut self, code: u32, serial: u32) -> Result<(), Status> {
        self.bus_ioctl_as(true, code, &serial.to_le_bytes())
    }

    /// [`bus_ioctl`](Self::bus_ioctl) from any application and with any input.
    pub fn bus_ioctl_as(
        &mut self,
        administrator: bool,
        code: u32,
        input: &[u8],
    ) -> Result<(), Status> {
        let _bound = self.machine.enter();
        let who = if administrator { "admin" } else { "user" };
        let app = Application::new(
            &self.machine,
            AppConfig {
                administrator,
                name: format!("enum ({who})"),
            },
        );
        let name = match code {
            IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE => "PLUG_IN_HARDWARE",
            IOCTL_VIRTUALBUS_UNPLUG_HARDWARE => "UNPLUG_HARDWARE",
            IOCTL_VIRTUALBUS_EJECT_HARDWARE => "EJECT_HARDWARE",
            _ => "IOCTL",
        };
        let result = app
            .open_interface(sim_guid(GUID_DEVINTERFACE_VIRTUALBUS), Access::READ_WRITE)
            .and_then(|handle| {
                let result = handle.device_io_control(code, input, 0).map(|_| ());
                handle.close();
                result
            });
        self.apps.push(format!(
            "enum ({who}): {name} {input:02X?} -> {}",
            match result {
                Ok(()) => "success".to_owned(),
                Err(status) => format!("{status:?}"),
            }
        ));
        result
    }

    /// An application opens board `serial`'s FX2 interface and reads its switches.
    pub fn read_switches(&mut self, serial: u32) -> Result<u8, Status> {
        let _bound = self.machine.enter();
        let link = self
            .child(serial)
            .and_then(|node| node.function_device())
            .and_then(|device| device.interfaces().into_iter().next());
        let result = match link {
            None => Err(Status::OBJECT_NAME_NOT_FOUND),
            Some(link) => {
                let app = Application::new(
                    &self.machine,
                    AppConfig {
                        administrator: false,
                        name: format!("osrusbfx2 app {serial}"),
                    },
                );
                app.open(&link, Access::READ).and_then(|handle| {
                    let read = handle.device_io_control(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1);
                    handle.close();
                    read.and_then(|(out, _)| out.first().copied().ok_or(Status::UNSUCCESSFUL))
                })
            }
        };
        self.apps.push(format!(
            "board {serial} app: READ_SWITCHES -> {}",
            match result {
                Ok(byte) => format!("{byte:08b}"),
                Err(status) => format!("{status:?}"),
            }
        ));
        if let Ok(byte) = result {
            self.switches_read.insert(serial, byte);
        }
        result
    }

    /// Board `serial` is put on the bus: the board is attached behind the child the bus will
    /// report, the `enum` tool plugs it in, and an application reads its switches.
    pub fn plug_in(&mut self, serial: u32) -> Result<(), Status> {
        self.pause();
        let board = self.boards.entry(serial).or_default().clone();
        fx2::attach_board(&self.machine, &child_instance_id(serial), &board);
        let result = self.bus_ioctl(IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE, serial);
        if result.is_ok() {
            let _ = self.read_switches(serial);
        }
        self.record(&format!("board {serial} is plugged in (enum -p {serial})"));
        result
    }

    /// Switch `n` (1..=8) of board `serial` is flipped; an application reads the switches again.
    pub fn flip(&mut self, serial: u32, n: u8) {
        self.pause();
        let board = self.boards.get(&serial).expect("a board on the desk");
        let state = board.flip_switch(n).expect("switches 1..=8");
        let on = state.is_on(n).unwrap_or(false);
        let _ = self.read_switches(serial);
        self.record(&format!(
            "switch {n} of board {serial} is turned {}",
            if on { "on" } else { "off" }
        ));
    }

    /// The bus reports board `serial` missing (`enum -u`): its stack is removed, and the board is
    /// taken off the bus.
    pub fn unplug(&mut self, serial: u32) -> Result<(), Status> {
        self.pause();
        let result = self.bus_ioctl(IOCTL_VIRTUALBUS_UNPLUG_HARDWARE, serial);
        self.take_off(serial);
        self.record(&format!("board {serial} is unplugged (enum -u {serial})"));
        result
    }

    /// Board `serial` is yanked: it goes dead at once and the PnP manager surprise-removes its
    /// stack, without asking the bus.
    pub fn yank(&mut self, serial: u32) {
        self.pause();
        if let Some(board) = self.boards.get(&serial) {
            board.unplug();
        }
        if let Some(node) = self.child(serial) {
            let _bound = self.machine.enter();
            node.surprise_remove().expect("surprise removal");
        }
        self.take_off(serial);
        self.record(&format!("board {serial} is yanked (surprise removal)"));
    }

    /// The bus ejects board `serial` (`enum -e`): query-remove, then an orderly removal.
    pub fn eject(&mut self, serial: u32) -> Result<(), Status> {
        self.pause();
        let result = self.bus_ioctl(IOCTL_VIRTUALBUS_EJECT_HARDWARE, serial);
        if result.is_ok() && self.child(serial).is_none() {
            self.take_off(serial);
        }
        self.record(&format!("board {serial} is ejected (enum -e {serial})"));
        result
    }

    fn take_off(&self, serial: u32) {
        if let Some(board) = fx2::detach_board(&self.machine, &child_instance_id(serial)) {
            board.unplug();
        }
    }

    /// The bus unloads: the PnP manager removes its children first, then the bus device.
    pub fn unload(&mut self) {
        self.pause();
        if let Some(node) = &self.bus {
            let _bound = self.machine.enter();
            node.remove().expect("the bus device is removed");
        }
        for serial in self.boards.keys().copied().collect::<Vec<_>>() {
            self.take_off(serial);
        }
        self.record("the bus unloads (its children first)");
        self.bus = None;
    }

    /// The session so far as a sequence diagram, one banner per step (docs/trace.md): what
    /// `--diagram <file>` writes.
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

    /// The scripted session with VirtualBus installed by `install` (see
    /// [`start_with`](Self::start_with)).
    pub fn scripted_with(real_time: bool, install: &dyn Fn(&Machine)) -> Session {
        let mut s = Session::start_with(real_time, install);
        s.boards
            .entry(1)
            .or_default()
            .set_switch(1, true)
            .expect("switch 1");
        s.boards
            .entry(2)
            .or_default()
            .set_switch(4, true)
            .expect("switch 4");
        s.plug_in(1).expect("board 1 is plugged in");
        s.plug_in(2).expect("board 2 is plugged in");
        s.flip(2, 6);
        s.unplug(1).expect("board 1 is unplugged");
        s.yank(2);
        s.plug_in(3).expect("board 3 is plugged in");
        s.eject(3).expect("board 3 is ejected");
        s.plug_in(1).expect("board 1 is plugged in again");
        s.unload();
        s
    }
}

fn has(step: &Step, text: &str) -> bool {
    step.trace.iter().any(|l| l.contains(text))
}

/// The position of the first trace line of `step` containing `text`.
fn at(step: &Step, text: &str) -> usize {
    step.trace
        .iter()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| {
            panic!(
                "{text:?} not in step {:?}:\n{}",
                step.title,
                step.trace.join("\n")
            )
        })
}

/// Asserts that `step` has lines containing `texts`, in this order.
fn in_order(step: &Step, texts: &[&str]) {
    let mut from = 0;
    for text in texts {
        let found = step.trace[from..]
            .iter()
            .position(|l| l.contains(text))
            .unwrap_or_else(|| {
                panic!(
                    "{text:?} not in step {:?} after line {from}:\n{}",
                    step.title,
                    step.trace.join("\n")
                )
            });
        from += found + 1;
    }
}

/// The scripted session with VirtualBus installed by `install`, asserted step by step on what
/// any VirtualBus does, whoever built it: the children the bus has, the applications' results,
/// the WDF callbacks of the bus, its PDOs and the FX2 function drivers in KMDF's order, DMF's
/// Module lines, and a clean verdict. The sample's end-to-end test runs it on the sim build.
pub fn check_scripted_session(install: &dyn Fn(&Machine)) -> Session {
    use NodeState::Started;
    let s = Session::scripted_with(false, install);
    let titles: Vec<&str> = s.steps.iter().map(|st| st.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "the virtual bus loads; no boards yet",
            "board 1 is plugged in (enum -p 1)",
            "board 2 is plugged in (enum -p 2)",
            "switch 6 of board 2 is turned on",
            "board 1 is unplugged (enum -u 1)",
            "board 2 is yanked (surprise removal)",
            "board 3 is plugged in (enum -p 3)",
            "board 3 is ejected (enum -e 3)",
            "board 1 is plugged in (enum -p 1)",
            "the bus unloads (its children first)",
        ]
    );
    let children: Vec<Vec<(u32, NodeState)>> =
        s.steps.iter().map(|st| st.children.clone()).collect();
    assert_eq!(
        children,
        [
            vec![],
            vec![(1, Started)],
            vec![(1, Started), (2, Started)],
            vec![(1, Started), (2, Started)],
            vec![(2, Started)],
            vec![],
            vec![(3, Started)],
            vec![],
            vec![(1, Started)],
            vec![],
        ]
    );
    // What the applications read: each board's own switches.
    let reads: Vec<Vec<(u32, u8)>> = s
        .steps
        .iter()
        .map(|st| st.switches_read.iter().map(|(k, v)| (*k, *v)).collect())
        .collect();
    assert_eq!(
        reads,
        [
            vec![],
            vec![(1, 0b0000_0001)],
            vec![(2, 0b0000_1000)],
            vec![(2, 0b0010_1000)],
            vec![],
            vec![],
            vec![(3, 0)],
            vec![],
            vec![(1, 0b0000_0001)],
            vec![],
        ]
    );
    for step in &s.steps {
        for app in &step.apps {
            assert!(!app.contains("STATUS_"), "step {:?}: {app}", step.title);
        }
    }
    check_step_traces(&s);
    assert_eq!(s.verdict().map(|_| ()), Ok(()));
    s
}

/// The trace of each step of the scripted session: the WDF callbacks and the PnP manager's
/// steps in KMDF's order, the bus's notes and DMF's Module lines.
fn check_step_traces(s: &Session) {
    // Step 1: the bus device starts; its Modules open at creation; its control interface is
    // enabled; no child.
    let bus = &s.steps[0];
    let created = at(bus, "DMF: Module Pdo created");
    let opened = at(bus, "DMF: Module Pdo opened (Create)");
    let prepare = at(bus, "[virtualbus] EvtDevicePrepareHardware");
    let d0 = at(bus, "[virtualbus] EvtDeviceD0Entry(D3Final)");
    assert!(
        created < opened && opened < prepare && prepare < d0,
        "{:#?}",
        bus.trace
    );
    assert!(has(bus, "DMF: Module IoctlHandler opened (Create)"));
    assert!(has(bus, "[PnP] \\??\\ROOT#VIRTUALBUS#0000#{7B1A6E2C-3F4D-4C8B-9E51-D2A0F6C3B847}: interface enabled"));
    assert!(!has(bus, "[osrusbfx2]"));
    // Step 2: the IOCTL reaches the bus; the Pdo Module creates the PDO and reports it; the PnP
    // manager enumerates the child, powers the PDO up, loads the FX2 driver on it (AddDevice,
    // PrepareHardware, D0Entry), enables its interface, and the IOCTL completes.
    let plug = &s.steps[1];
    let order = [
        "[virtualbus] EvtDeviceFileCreate",
        "[virtualbus] PDO virtualbus#1: created",
        "[PnP] ROOT\\VIRTUALBUS\\0000: bus relations: child DmfVirtualBus\\OsrFx2 enumerated",
        "[PnP] DmfVirtualBus\\OsrFx2\\1: Starting",
        "[osrusbfx2] EvtDriverDeviceAdd",
        "[PnP] DmfVirtualBus\\OsrFx2\\1: bus: child to D0",
        "[osrusbfx2] EvtDevicePrepareHardware",
        "[osrusbfx2] EvtDeviceD0Entry(D3Final)",
        "[PnP] \\??\\DmfVirtualBus#OsrFx2#1#{573E8C73-0CB4-4471-A1BF-FAB26C31D384}: interface enabled",
        "[PnP] DmfVirtualBus\\OsrFx2\\1: Started",
        "VirtualBus: plug in board 1: done",
    ];
    in_order(plug, &order);
    in_order(
        &s.steps[2],
        &[
            "[virtualbus] PDO virtualbus#2: created",
            "[PnP] DmfVirtualBus\\OsrFx2\\2: Started",
            "VirtualBus: plug in board 2: done",
        ],
    );
    // Step 4: a flip is a board matter: neither the bus nor PnP takes part.
    assert!(!has(&s.steps[3], "[virtualbus]") && !has(&s.steps[3], "[PnP]"));
    // Step 5: the bus reports board 1 missing (WdfPdoMarkMissing): the stack takes the
    // surprise-removal path, the function driver leaves D0 before the PDO, the PDO is deleted.
    in_order(&s.steps[4], &[
        "[PnP] \\??\\DmfVirtualBus#OsrFx2#1#{573E8C73-0CB4-4471-A1BF-FAB26C31D384}: interface disabled",
        "[osrusbfx2] EvtDeviceD0Exit(D3Final)",
        "[osrusbfx2] EvtDeviceSelfManagedIoFlush",
        "[PnP] DmfVirtualBus\\OsrFx2\\1: bus: child to D3",
        "[virtualbus] PDO virtualbus#1: PDO reported missing: deleted",
        "[PnP] DmfVirtualBus\\OsrFx2\\1: SurpriseRemoved",
        "VirtualBus: unplug board 1: done",
    ]);
    // Step 6: the yank surprise-removes board 2's stack without the bus driver's doing.
    in_order(
        &s.steps[5],
        &[
            "[osrusbfx2] EvtDeviceD0Exit(D3Final)",
            "[osrusbfx2] EvtDeviceSelfManagedIoFlush",
            "[virtualbus] PDO virtualbus#2: PDO reported missing: deleted",
            "[PnP] DmfVirtualBus\\OsrFx2\\2: SurpriseRemoved",
        ],
    );
    assert!(!has(&s.steps[5], "VirtualBus:"));
    // Step 8: the eject (WdfPdoRequestEject): query-remove, then an orderly removal.
    in_order(
        &s.steps[7],
        &[
            "[PnP] DmfVirtualBus\\OsrFx2\\3: eject requested",
            "[PnP] DmfVirtualBus\\OsrFx2\\3: QueryRemovePending",
            "[osrusbfx2] EvtDeviceD0Exit(D3Final)",
            "[virtualbus] PDO virtualbus#3: PDO reported missing: deleted",
            "[PnP] DmfVirtualBus\\OsrFx2\\3: Removed",
            "[PnP] DmfVirtualBus\\OsrFx2\\3: ejected",
            "VirtualBus: eject board 3: done",
        ],
    );
    // Step 10: the child is removed before the bus; the bus's Modules close at its cleanup,
    // the IoctlHandler (added last) first; the bus is removed last.
    in_order(
        &s.steps[9],
        &[
            "[osrusbfx2] EvtDeviceD0Exit(D3Final)",
            "[PnP] DmfVirtualBus\\OsrFx2\\1: Removed",
            "[virtualbus] EvtDeviceQueryRemove",
            "[virtualbus] EvtDeviceD0Exit(D3Final)",
            "[virtualbus] EvtDeviceReleaseHardware",
            "DMF: Module IoctlHandler closed (Destroy)",
            "DMF: Module Pdo closed (Destroy)",
            "DMF: Module Pdo destroyed",
            "[PnP] ROOT\\VIRTUALBUS\\0000: Removed",
        ],
    );
}

/// The control interface refuses what it must: a user (not an administrator), a serial number
/// out of range, a serial number in use, a board no child has, a short input.
pub fn check_control_refusals(install: &dyn Fn(&Machine)) {
    let mut s = Session::start_with(false, install);
    let serial = 1_u32.to_le_bytes();
    assert_eq!(
        s.bus_ioctl_as(false, IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE, &serial),
        Err(Status::ACCESS_DENIED)
    );
    for bad in [0, crate::MAXIMUM_SERIAL_NUMBER + 1, u32::MAX] {
        assert_eq!(
            s.bus_ioctl(IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE, bad),
            Err(Status::INVALID_PARAMETER)
        );
    }
    assert_eq!(
        s.bus_ioctl_as(true, IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE, &[1, 0]),
        Err(Status::BUFFER_TOO_SMALL)
    );
    assert_eq!(
        s.bus_ioctl(IOCTL_VIRTUALBUS_UNPLUG_HARDWARE, 5),
        Err(Status::NOT_FOUND)
    );
    assert_eq!(
        s.bus_ioctl(IOCTL_VIRTUALBUS_EJECT_HARDWARE, 5),
        Err(Status::NOT_FOUND)
    );
    s.plug_in(5).expect("board 5");
    assert_eq!(
        s.bus_ioctl(IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE, 5),
        Err(Status::INVALID_PARAMETER)
    );
    assert_eq!(s.children(), [(5, NodeState::Started)]);
    s.unload();
    assert_eq!(s.verdict().map(|_| ()), Ok(()));
}

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

/// Seeded plug/unplug/yank/eject/flip churn over four boards with VirtualBus installed by
/// `install`: after every step the bus has exactly the boards the script put on it, every
/// present board's application reads that board's switches, and nothing leaks.
pub fn check_seeded_churn(install: &dyn Fn(&Machine)) {
    for seed in [1_u64, 7, 42, 2024] {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut s = Session::start_with(false, install);
        let mut present: Vec<u32> = Vec::new();
        for _ in 0..30 {
            let serial = u32::try_from(rng.below(4)).unwrap() + 1;
            let on_bus = present.contains(&serial);
            match (rng.below(5), on_bus) {
                (_, false) => {
                    s.plug_in(serial).expect("plug in");
                    present.push(serial);
                }
                (0, true) => {
                    s.unplug(serial).expect("unplug");
                    present.retain(|&p| p != serial);
                }
                (1, true) => {
                    s.yank(serial);
                    present.retain(|&p| p != serial);
                }
                (2, true) => {
                    s.eject(serial).expect("eject");
                    present.retain(|&p| p != serial);
                }
                (_, true) => s.flip(serial, u8::try_from(rng.below(8)).unwrap() + 1),
            }
            present.sort_unstable();
            let step = s.steps.last().unwrap();
            let serials: Vec<u32> = step.children.iter().map(|(serial, _)| *serial).collect();
            assert_eq!(serials, present, "seed {seed}: {}", step.title);
            for &serial in &present {
                let expected = s.boards[&serial].switches().raw();
                assert_eq!(
                    s.read_switches(serial),
                    Ok(expected),
                    "seed {seed}: board {serial}"
                );
            }
        }
        s.unload();
        assert!(s.steps.last().unwrap().children.is_empty());
        assert_eq!(s.verdict().map(|_| ()), Ok(()), "seed {seed}");
    }
}
