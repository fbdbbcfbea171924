//! Conformance tests of the Module framework (without a device: the phase functions are called
//! directly). Each test names the seed IDs it covers (MOD-*, DSP-*, Top 25 #).
#![cfg(feature = "sim")]
#![allow(
    clippy::too_many_lines,
    clippy::needless_pass_by_value,
    clippy::unnecessary_wraps,
    dead_code
)]

use std::sync::{Arc, Mutex};

use dmf_core::module::dispatch_table::{self, Callback, ClientOrder, Siblings, Tree, Unhandled};
use dmf_core::module::{
    Added, ClientCallbacks, CollectionConfig, Dispatched, DynamicModule, Feature, Handled,
    IoRequest, ModuleCallbacks, ModuleCollection, ModuleHandle, ModuleInit, ModuleState, NoParent,
    PowerDeviceState, RelationType, RequestDisposition, SpecialFileType,
};
use dmf_core::platform::{FileObject, Resources};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};
use io_fixture::IoFixture;
use kmdf_sim::Machine;

mod io_fixture;

type Log = Arc<Mutex<Vec<String>>>;

/// Which test Module type a child is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Create,
    Prepare,
    D0,
    D0System,
    NotifyCreate,
    NotifyPrepare,
    NotifyD0,
}

#[derive(Clone)]
struct Cfg {
    name: &'static str,
    log: Log,
    fail: Vec<&'static str>,
    take: Vec<&'static str>,
    children: Vec<(Kind, Cfg)>,
}

fn cfg(name: &'static str, log: &Log) -> Cfg {
    Cfg {
        name,
        log: Arc::clone(log),
        fail: vec![],
        take: vec![],
        children: vec![],
    }
}

impl Cfg {
    fn fail(mut self, what: &'static str) -> Self {
        self.fail.push(what);
        self
    }
    fn take(mut self, what: &'static str) -> Self {
        self.take.push(what);
        self
    }
    fn child(mut self, kind: Kind, child: Cfg) -> Self {
        self.children.push((kind, child));
        self
    }
}

#[derive(Default)]
struct Ctx {
    create_children: Vec<Added<OCreate>>,
    writes: u32,
}

fn rec(c: &Cfg, what: &str) -> NtResult<()> {
    c.log.lock().unwrap().push(format!("{}.{what}", c.name));
    if c.fail.contains(&what) {
        Err(NtStatus::UNSUCCESSFUL)
    } else {
        Ok(())
    }
}

fn req(c: &Cfg, what: &str) -> Handled {
    let _ = rec(c, what);
    if c.take.contains(&what) {
        Handled::Handled
    } else {
        Handled::NotHandled
    }
}

fn add_children(c: &Cfg, init: &mut ModuleInit) -> Vec<Added<OCreate>> {
    let mut tokens = vec![];
    for (kind, child) in &c.children {
        let child = child.clone();
        match kind {
            Kind::Create => tokens.push(init.add(OCreate::with(child))),
            Kind::Prepare => drop(init.add(OPrepare::with(child))),
            Kind::D0 => drop(init.add(OD0::with(child))),
            Kind::D0System => drop(init.add(OD0System::with(child))),
            Kind::NotifyCreate => drop(init.add(NCreate::with(child))),
            Kind::NotifyPrepare => drop(init.add(NPrepare::with(child))),
            Kind::NotifyD0 => drop(init.add(ND0::with(child))),
        }
    }
    tokens
}

macro_rules! test_module {
    ($name:ident, $open:ident) => {
        #[dmf_module(crate = ::dmf_core, config = Cfg, context = Ctx, open = $open, lock = Passive, trace = 4)]
        struct $name;

        impl $name {
            /// A Method: runs only while open.
            #[allow(dead_code)]
            fn write(&self) -> NtResult<u32> {
                let module = self.enter()?;
                let mut ctx = module.lock();
                ctx.writes += 1;
                Ok(ctx.writes)
            }
            #[allow(dead_code)]
            fn arrive(&self) -> NtResult<()> {
                self.notification_open()
            }
            #[allow(dead_code)]
            fn depart(&self) {
                self.notification_close();
            }
        }

        #[dmf_callbacks(crate = ::dmf_core)]
        impl ModuleCallbacks for $name {
            fn child_modules_add(m: &Dispatched<'_, Self>, init: &mut ModuleInit) {
                let tokens = add_children(m.config(), init);
                m.lock().create_children = tokens;
            }
            fn resources_assign(m: &Dispatched<'_, Self>, _r: &Resources) -> NtResult<()> {
                rec(m.config(), "resources_assign")
            }
            fn notification_register(m: &Dispatched<'_, Self>) -> NtResult<()> {
                rec(m.config(), "notification_register")
            }
            fn notification_unregister(m: &Dispatched<'_, Self>) {
                let _ = rec(m.config(), "notification_unregister");
            }
            fn open(m: &Dispatched<'_, Self>) -> NtResult<()> {
                rec(m.config(), "open")
            }
            fn close(m: &Dispatched<'_, Self>) {
                let _ = rec(m.config(), "close");
                // MOD-53: children are still usable inside the parent's Close.
                let children = m.lock().create_children.clone();
                for child in children {
                    let ok = m.child(child).and_then(|c| c.write()).is_ok();
                    let _ = rec(m.config(), if ok { "close:child-usable" } else { "close:child-closed" });
                }
            }
            fn destroy(m: &Dispatched<'_, Self>) {
                let _ = rec(m.config(), "destroy");
            }
            fn prepare_hardware(m: &Dispatched<'_, Self>, _r: &Resources) -> NtResult<()> {
                rec(m.config(), "prepare_hardware")
            }
            fn release_hardware(m: &Dispatched<'_, Self>, _r: &Resources) -> NtResult<()> {
                rec(m.config(), "release_hardware")
            }
            fn d0_entry(m: &Dispatched<'_, Self>, _p: PowerDeviceState) -> NtResult<()> {
                rec(m.config(), "d0_entry")
            }
            fn d0_entry_post_interrupts_enabled(m: &Dispatched<'_, Self>, _p: PowerDeviceState) -> NtResult<()> {
                rec(m.config(), "d0_entry_post_interrupts_enabled")
            }
            fn d0_exit_pre_interrupts_disabled(m: &Dispatched<'_, Self>, _t: PowerDeviceState) -> NtResult<()> {
                rec(m.config(), "d0_exit_pre_interrupts_disabled")
            }
            fn d0_exit(m: &Dispatched<'_, Self>, _t: PowerDeviceState) -> NtResult<()> {
                rec(m.config(), "d0_exit")
            }
            fn self_managed_io_init(m: &Dispatched<'_, Self>) -> NtResult<()> {
                rec(m.config(), "self_managed_io_init")
            }
            fn self_managed_io_restart(m: &Dispatched<'_, Self>) -> NtResult<()> {
                rec(m.config(), "self_managed_io_restart")
            }
            fn self_managed_io_suspend(m: &Dispatched<'_, Self>) -> NtResult<()> {
                rec(m.config(), "self_managed_io_suspend")
            }
            fn self_managed_io_flush(m: &Dispatched<'_, Self>) {
                let _ = rec(m.config(), "self_managed_io_flush");
            }
            fn self_managed_io_cleanup(m: &Dispatched<'_, Self>) {
                let _ = rec(m.config(), "self_managed_io_cleanup");
            }
            fn surprise_removal(m: &Dispatched<'_, Self>) {
                let _ = rec(m.config(), "surprise_removal");
            }
            fn query_remove(m: &Dispatched<'_, Self>) -> NtResult<()> {
                rec(m.config(), "query_remove")
            }
            fn query_stop(m: &Dispatched<'_, Self>) -> NtResult<()> {
                rec(m.config(), "query_stop")
            }
            fn relations_query(m: &Dispatched<'_, Self>, _r: RelationType) {
                let _ = rec(m.config(), "relations_query");
            }
            fn usage_notification_ex(m: &Dispatched<'_, Self>, _t: SpecialFileType, _p: bool) -> NtResult<()> {
                rec(m.config(), "usage_notification_ex")
            }
            fn arm_wake_from_s0(m: &Dispatched<'_, Self>) -> NtResult<()> {
                rec(m.config(), "arm_wake_from_s0")
            }
            fn disarm_wake_from_s0(m: &Dispatched<'_, Self>) {
                let _ = rec(m.config(), "disarm_wake_from_s0");
            }
            fn wake_from_s0_triggered(m: &Dispatched<'_, Self>) {
                let _ = rec(m.config(), "wake_from_s0_triggered");
            }
            fn arm_wake_from_sx_with_reason(m: &Dispatched<'_, Self>, _w: bool, _c: bool) -> NtResult<()> {
                rec(m.config(), "arm_wake_from_sx_with_reason")
            }
            fn disarm_wake_from_sx(m: &Dispatched<'_, Self>) {
                let _ = rec(m.config(), "disarm_wake_from_sx");
            }
            fn wake_from_sx_triggered(m: &Dispatched<'_, Self>) {
                let _ = rec(m.config(), "wake_from_sx_triggered");
            }
            fn queue_io_read(m: &Dispatched<'_, Self>, _io: &mut IoRequest<'_>, _l: usize) -> Handled {
                req(m.config(), "queue_io_read")
            }
            fn queue_io_write(m: &Dispatched<'_, Self>, _io: &mut IoRequest<'_>, _l: usize) -> Handled {
                req(m.config(), "queue_io_write")
            }
            fn device_io_control(m: &Dispatched<'_, Self>, _io: &mut IoRequest<'_>) -> Handled {
                req(m.config(), "device_io_control")
            }
            fn internal_device_io_control(m: &Dispatched<'_, Self>, _io: &mut IoRequest<'_>) -> Handled {
                req(m.config(), "internal_device_io_control")
            }
            fn file_create(m: &Dispatched<'_, Self>, _io: &mut IoRequest<'_>, _f: &FileObject) -> Handled {
                req(m.config(), "file_create")
            }
            fn file_cleanup(m: &Dispatched<'_, Self>, _f: &FileObject) -> Handled {
                req(m.config(), "file_cleanup")
            }
            fn file_close(m: &Dispatched<'_, Self>, _f: &FileObject) -> Handled {
                req(m.config(), "file_close")
            }
            fn file_object_deleted(m: &Dispatched<'_, Self>, _f: &FileObject) {
                let _ = rec(m.config(), "file_object_deleted");
            }
        }
    };
}

test_module!(OCreate, Create);
test_module!(OPrepare, PrepareHardware);
test_module!(OD0, D0Entry);
test_module!(OD0System, D0EntrySystemPowerUp);
test_module!(NCreate, NotifyCreate);
test_module!(NPrepare, NotifyPrepareHardware);
test_module!(ND0, NotifyD0Entry);

/// The client stand-in: records its position; may take requests or fail.
struct Client {
    log: Log,
    take: bool,
}

impl ClientCallbacks for Client {
    fn callback(&self, callback: Callback) -> NtResult<Handled> {
        self.log
            .lock()
            .unwrap()
            .push(format!("client.{callback:?}"));
        Ok(if self.take {
            Handled::Handled
        } else {
            Handled::NotHandled
        })
    }
}

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

fn config(log: &Log, filter: bool) -> CollectionConfig {
    CollectionConfig {
        filter,
        client: Some(Arc::new(Client {
            log: Arc::clone(log),
            take: false,
        })),
        ..CollectionConfig::default()
    }
}

/// An empty resource list (`WDFCMRESLIST`).
const R: &Resources = &Resources {
    generation: 0,
    items: Vec::new(),
};

/// Offers `request` through `dispatch` and completes whatever nobody took the way the device
/// integration would (the unhandled rule).
fn offer(
    fx: &IoFixture,
    request: dmf_core::platform::Request,
    dispatch: impl FnOnce(&mut IoRequest<'_>) -> RequestDisposition,
) -> RequestDisposition {
    let mut io = IoRequest::new(Some(&fx.queue), request);
    let disposition = dispatch(&mut io);
    fx.finish(io.into_request(), NtStatus::NOT_SUPPORTED);
    disposition
}

/// The tree of the dispatch tests: A (children A1, A2), then B — all OPEN_Create.
fn tree(log: &Log, a1: Cfg) -> (ModuleCollection, Added<OCreate>, Added<OCreate>) {
    let mut init = ModuleInit::new();
    let a = init.add(OCreate::with(
        cfg("A", log)
            .child(Kind::Create, a1)
            .child(Kind::Create, cfg("A2", log)),
    ));
    let b = init.add(OCreate::with(cfg("B", log)));
    let collection = ModuleCollection::create(init, config(log, false)).unwrap();
    (collection, a, b)
}

type Invoke = fn(&ModuleCollection, &IoFixture) -> NtResult<()>;

fn invoke(callback: Callback) -> Option<(&'static str, Invoke)> {
    fn ioctl(c: &ModuleCollection, fx: &IoFixture, internal: bool) -> NtResult<()> {
        let _ = offer(fx, fx.ioctl(0x22_2000, &[], 0), |io| {
            if internal {
                c.internal_device_io_control(io)
            } else {
                c.device_io_control(io)
            }
        });
        Ok(())
    }
    use Callback as C;
    Some(match callback {
        C::PrepareHardware => ("prepare_hardware", |c, _| c.prepare_hardware(R)),
        C::ReleaseHardware => ("release_hardware", |c, _| c.release_hardware(R)),
        C::D0Entry => ("d0_entry", |c, _| c.d0_entry(PowerDeviceState::D3Final)),
        C::D0EntryPostInterruptsEnabled => ("d0_entry_post_interrupts_enabled", |c, _| {
            c.d0_entry_post_interrupts_enabled(PowerDeviceState::D3Final)
        }),
        C::D0ExitPreInterruptsDisabled => ("d0_exit_pre_interrupts_disabled", |c, _| {
            c.d0_exit_pre_interrupts_disabled(PowerDeviceState::D3)
        }),
        C::D0Exit => ("d0_exit", |c, _| {
            c.d0_entry(PowerDeviceState::D3Final)?;
            c.d0_exit(PowerDeviceState::D3)
        }),
        C::SelfManagedIoInit => ("self_managed_io_init", |c, _| c.self_managed_io_init()),
        C::SelfManagedIoRestart => ("self_managed_io_restart", |c, _| {
            c.self_managed_io_restart()
        }),
        C::SelfManagedIoSuspend => ("self_managed_io_suspend", |c, _| {
            c.self_managed_io_suspend()
        }),
        C::SelfManagedIoFlush => ("self_managed_io_flush", |c, _| {
            c.self_managed_io_flush();
            Ok(())
        }),
        C::SelfManagedIoCleanup => ("self_managed_io_cleanup", |c, _| {
            c.self_managed_io_cleanup();
            Ok(())
        }),
        C::SurpriseRemoval => ("surprise_removal", |c, _| {
            c.surprise_removal();
            Ok(())
        }),
        C::QueryRemove => ("query_remove", |c, _| c.query_remove()),
        C::QueryStop => ("query_stop", |c, _| c.query_stop()),
        C::RelationsQuery => ("relations_query", |c, _| {
            c.relations_query(RelationType::Bus);
            Ok(())
        }),
        C::UsageNotificationEx => ("usage_notification_ex", |c, _| {
            c.usage_notification_ex(SpecialFileType::Paging, true)
        }),
        C::ArmWakeFromS0 => ("arm_wake_from_s0", |c, _| c.arm_wake_from_s0()),
        C::DisarmWakeFromS0 => ("disarm_wake_from_s0", |c, _| {
            c.disarm_wake_from_s0();
            Ok(())
        }),
        C::WakeFromS0Triggered => ("wake_from_s0_triggered", |c, _| {
            c.wake_from_s0_triggered();
            Ok(())
        }),
        C::ArmWakeFromSxWithReason => ("arm_wake_from_sx_with_reason", |c, _| {
            c.arm_wake_from_sx_with_reason(true, false)
        }),
        C::DisarmWakeFromSx => ("disarm_wake_from_sx", |c, _| {
            c.disarm_wake_from_sx();
            Ok(())
        }),
        C::WakeFromSxTriggered => ("wake_from_sx_triggered", |c, _| {
            c.wake_from_sx_triggered();
            Ok(())
        }),
        C::QueueIoRead => ("queue_io_read", |c, fx| {
            let _ = offer(fx, fx.read(1), |io| c.queue_io_read(io, 1));
            Ok(())
        }),
        C::QueueIoWrite => ("queue_io_write", |c, fx| {
            let _ = offer(fx, fx.write(&[1]), |io| c.queue_io_write(io, 1));
            Ok(())
        }),
        C::DeviceIoControl => ("device_io_control", |c, fx| ioctl(c, fx, false)),
        C::InternalDeviceIoControl => ("internal_device_io_control", |c, fx| ioctl(c, fx, true)),
        C::FileCreate => ("file_create", |c, fx| {
            // A create request stands in: the row's order is what is checked.
            let _ = offer(fx, fx.ioctl(0x22_2004, &[], 0), |io| {
                c.file_create(io, &fx.file)
            });
            Ok(())
        }),
        C::FileCleanup => ("file_cleanup", |c, fx| {
            let _ = c.file_cleanup(&fx.file);
            Ok(())
        }),
        C::FileClose => ("file_close", |c, fx| {
            let _ = c.file_close(&fx.file);
            Ok(())
        }),
        C::FileObjectDeleted => ("file_object_deleted", |c, fx| {
            c.file_object_deleted(&fx.file);
            Ok(())
        }),
        _ => return None,
    })
}

/// The order a row prescribes for the tree A(A1, A2), B plus the client.
fn expected(callback: Callback) -> Vec<&'static str> {
    let row = dispatch_table::row(callback);
    let a: Vec<&str> = match row.tree {
        Tree::ChildrenFirst => match row.siblings {
            Siblings::Forward => vec!["A1", "A2", "A"],
            Siblings::Backward => vec!["A2", "A1", "A"],
        },
        Tree::ParentFirst => match row.siblings {
            Siblings::Forward => vec!["A", "A1", "A2"],
            Siblings::Backward => vec!["A", "A2", "A1"],
        },
    };
    let mut modules = match row.siblings {
        Siblings::Forward => [a, vec!["B"]].concat(),
        Siblings::Backward => [vec!["B"], a].concat(),
    };
    match row.client {
        ClientOrder::AfterModules => modules.push("client"),
        ClientOrder::BeforeModules => modules.insert(0, "client"),
    }
    modules
}

/// Invariant 6, DSP-01…DSP-04, DSP-10, Top 25 #1, #2, #3: every WDF row of the table, asserted by
/// recording the order in a tree (a parent with two children, two top-level siblings) plus the
/// client. Requests are offered to everybody because nobody takes them.
#[test]
fn every_row_of_the_dispatch_table_in_a_tree() {
    let machine = Machine::new();
    let _g = machine.enter();
    let fx = IoFixture::new(&machine);
    let mut checked = 0;
    for callback in dispatch_table::ALL {
        let Some((name, call)) = invoke(callback) else {
            continue;
        };
        let log = log();
        let (collection, _, _) = tree(&log, cfg("A1", &log));
        take(&log);
        call(&collection, &fx).unwrap();
        let client = format!("client.{callback:?}");
        let seen: Vec<String> = take(&log)
            .into_iter()
            .filter(|e| e.ends_with(&format!(".{name}")) || *e == client)
            .map(|e| {
                if e == client {
                    "client".to_string()
                } else {
                    e.split('.').next().unwrap().to_string()
                }
            })
            .collect();
        assert_eq!(seen, expected(callback), "{callback:?}");
        checked += 1;
    }
    assert_eq!(
        checked, 30,
        "all 29 WDF callbacks (DSP-51) and the file object's deletion"
    );
    fx.teardown();
}

/// The DMF rows (Open, Close, NotificationRegister/Unregister, ResourcesAssign) follow the same
/// table: open children first and forward; close parent first and backward (Top 25 #1, MOD-52,
/// MOD-53); children usable in the parent's Close; destroy children first.
#[test]
fn open_children_first_close_parent_first_and_children_usable_in_close() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let (collection, a, _) = tree(&log, cfg("A1", &log));
    let events = |what: &str| -> Vec<String> {
        log.lock()
            .unwrap()
            .iter()
            .filter(|e| e.ends_with(what))
            .cloned()
            .collect()
    };
    assert_eq!(events(".open"), ["A1.open", "A2.open", "A.open", "B.open"]);
    assert_eq!(collection.get(a).unwrap().write(), Ok(1));
    take(&log);
    collection.destroy();
    let all = take(&log);
    let closes: Vec<&String> = all.iter().filter(|e| e.contains(".close")).collect();
    assert_eq!(
        closes,
        [
            "B.close",
            "A.close",
            "A.close:child-usable",
            "A.close:child-usable",
            "A2.close",
            "A1.close"
        ]
    );
    let destroys: Vec<&String> = all.iter().filter(|e| e.ends_with(".destroy")).collect();
    assert_eq!(
        destroys,
        ["A1.destroy", "A2.destroy", "A.destroy", "B.destroy"]
    );
    assert_eq!(collection.get(a).unwrap().state(), ModuleState::Destroyed);
    collection.destroy();
    assert!(take(&log).is_empty(), "destroy runs once");
}

/// DSP-10, Top 25 #3: the first taker stops the dispatch; the client does not see the request.
/// A Module that says Handled without taking the request has it completed with success.
#[test]
fn first_taker_wins() {
    let machine = Machine::new();
    let _g = machine.enter();
    let fx = IoFixture::new(&machine);
    let log = log();
    let (collection, _, _) = tree(&log, cfg("A1", &log).take("device_io_control"));
    take(&log);
    assert_eq!(
        offer(&fx, fx.ioctl(1, &[], 0), |io| collection
            .device_io_control(io)),
        RequestDisposition::Handled
    );
    assert_eq!(take(&log), ["A.device_io_control", "A1.device_io_control"]);
    assert_eq!(fx.statuses(), [Some(kmdf_sim::Status::SUCCESS)]);
    fx.teardown();
}

/// CLI-22, DSP-10, Top 25 #4 (the data part): unhandled requests are NOT_SUPPORTED in a function
/// driver, FileCreate succeeds there, and everything passes down in a filter (MOD-69 flag too).
#[test]
fn unhandled_request_policy_is_data() {
    let machine = Machine::new();
    let _g = machine.enter();
    let fx = IoFixture::new(&machine);
    let log = log();
    for filter in [false, true] {
        let mut init = ModuleInit::new();
        let a = init.add(OCreate::with(cfg("A", &log)));
        let collection = ModuleCollection::create(init, config(&log, filter)).unwrap();
        assert_eq!(collection.is_in_filter_driver(), filter);
        let expect_io = if filter {
            Unhandled::PassDown
        } else {
            Unhandled::Complete(NtStatus::NOT_SUPPORTED)
        };
        let expect_create = if filter {
            Unhandled::PassDown
        } else {
            Unhandled::Complete(NtStatus::SUCCESS)
        };
        assert_eq!(
            offer(&fx, fx.ioctl(1, &[], 0), |io| collection
                .device_io_control(io)),
            RequestDisposition::Unhandled(expect_io)
        );
        assert_eq!(
            offer(&fx, fx.read(4), |io| collection.queue_io_read(io, 4)),
            RequestDisposition::Unhandled(expect_io)
        );
        assert_eq!(
            offer(&fx, fx.ioctl(2, &[], 0), |io| collection
                .file_create(io, &fx.file)),
            RequestDisposition::Unhandled(expect_create)
        );
        let _ = collection.get(a).unwrap();
    }
    let client_takes = CollectionConfig {
        filter: false,
        client: Some(Arc::new(Client {
            log: log.clone(),
            take: true,
        })),
        ..CollectionConfig::default()
    };
    let mut init = ModuleInit::new();
    init.add(OCreate::with(cfg("A", &log)));
    let collection = ModuleCollection::create(init, client_takes).unwrap();
    assert_eq!(
        collection.file_close(&fx.file),
        RequestDisposition::Handled,
        "the client is the last taker"
    );
    fx.teardown();
}

/// DSP-53: a failing callback stops the chain — later Modules and the client are not called.
#[test]
fn a_failing_callback_stops_the_chain() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let (collection, _, _) = tree(&log, cfg("A1", &log).fail("self_managed_io_init"));
    take(&log);
    assert_eq!(
        collection.self_managed_io_init(),
        Err(NtStatus::UNSUCCESSFUL)
    );
    assert_eq!(take(&log), ["A1.self_managed_io_init"]);
}

/// Top 25 #12, CLI-42: adding only records; after create every handle is valid and callable.
/// Top 25 #14, MOD-21: the config is the Module's own copy.
#[test]
fn add_only_records_and_config_is_copied() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let mut mine = cfg("A", &log);
    let mut init = ModuleInit::new();
    let a = init.add(OCreate::with(mine.clone()));
    assert!(
        take(&log).is_empty(),
        "no Create/Open before the collection is created"
    );
    mine.name = "changed by the client";
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    assert_eq!(
        take(&log),
        ["A.open"],
        "the Module logs with its own copy of the config"
    );
    let handle = collection.get(a).unwrap();
    assert_eq!(handle.write(), Ok(1));
    assert_eq!(handle.module_name(), "OCreate");
    assert!(!handle.is_dynamic());
}

/// Top 25 #13, MOD-60: a failing Create/Open leaves nothing created or open.
#[test]
fn modules_create_failure_leaves_nothing_behind() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let mut init = ModuleInit::new();
    init.add(OCreate::with(
        cfg("A", &log).child(Kind::Create, cfg("A1", &log)),
    ));
    init.add(OCreate::with(cfg("B", &log).fail("open")));
    let result = ModuleCollection::create(init, CollectionConfig::default());
    assert_eq!(result.err(), Some(NtStatus::UNSUCCESSFUL));
    let events = take(&log);
    assert_eq!(
        events,
        [
            "A1.open",
            "A.open",
            "B.open",
            "A.close",
            "A.close:child-usable",
            "A1.close",
            "A1.destroy",
            "A.destroy",
            "B.destroy"
        ]
    );
}

/// MOD-10, E-01, Top 25 #18: more children than the limit fails creation (never a silent drop).
#[test]
fn child_limit_fails_creation() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let parent = |n: usize| {
        let mut p = cfg("P", &log);
        for _ in 0..n {
            p = p.child(Kind::Create, cfg("c", &log));
        }
        p
    };
    let mut init = ModuleInit::new();
    init.add(OCreate::with(parent(16)));
    assert!(ModuleCollection::create(init, CollectionConfig::default()).is_ok());
    let mut init = ModuleInit::new();
    init.add(OCreate::with(parent(17)));
    assert_eq!(
        ModuleCollection::create(init, CollectionConfig::default()).err(),
        Some(NtStatus::INSUFFICIENT_RESOURCES)
    );
}

/// dmf-upstream §2.5: a child must open no later than its parent; NOTIFY parents/children exempt.
#[test]
fn open_option_compatibility_is_checked_at_creation() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let mut init = ModuleInit::new();
    init.add(OCreate::with(
        cfg("P", &log).child(Kind::D0, cfg("C", &log)),
    ));
    assert_eq!(
        ModuleCollection::create(init, CollectionConfig::default()).err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    let mut init = ModuleInit::new();
    init.add(OD0::with(
        cfg("P", &log).child(Kind::Create, cfg("C", &log)),
    ));
    init.add(OCreate::with(
        cfg("Q", &log).child(Kind::NotifyPrepare, cfg("N", &log)),
    ));
    assert!(ModuleCollection::create(init, CollectionConfig::default()).is_ok());
}

/// Top 25 #6, #8, MOD-51, DSP-20: OPEN_PrepareHardware opens in PrepareHardware (after
/// ResourcesAssign and the Module's own PrepareHardware) and closes in ReleaseHardware, once per
/// start/stop; a failure unwinds exactly the phase's opens and ReleaseHardware still reaches all.
#[test]
fn open_prepare_hardware_and_its_failure() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let mut init = ModuleInit::new();
    let p = init.add(OPrepare::with(cfg("P", &log)));
    let q = init.add(OPrepare::with(cfg("Q", &log)));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    let (p, q) = (collection.get(p).unwrap(), collection.get(q).unwrap());
    assert_eq!(
        p.write(),
        Err(NtStatus::INVALID_DEVICE_STATE),
        "not open before PrepareHardware"
    );
    for _ in 0..2 {
        take(&log);
        collection.prepare_hardware(R).unwrap();
        assert_eq!(
            take(&log),
            [
                "P.resources_assign",
                "P.prepare_hardware",
                "P.open",
                "Q.resources_assign",
                "Q.prepare_hardware",
                "Q.open"
            ]
        );
        assert!(p.write().is_ok());
        collection.release_hardware(R).unwrap();
        assert_eq!(
            take(&log),
            [
                "Q.close",
                "Q.release_hardware",
                "P.close",
                "P.release_hardware"
            ]
        );
        assert_eq!(p.write(), Err(NtStatus::INVALID_DEVICE_STATE));
    }
    // Failure: Q fails PrepareHardware → P (opened in this phase) is closed, Q never opens.
    let mut init = ModuleInit::new();
    let p2 = init.add(OPrepare::with(cfg("P", &log)));
    init.add(OPrepare::with(cfg("Q", &log).fail("prepare_hardware")));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    take(&log);
    assert_eq!(collection.prepare_hardware(R), Err(NtStatus::UNSUCCESSFUL));
    assert_eq!(
        take(&log),
        [
            "P.resources_assign",
            "P.prepare_hardware",
            "P.open",
            "Q.resources_assign",
            "Q.prepare_hardware",
            "P.close"
        ]
    );
    assert_eq!(collection.get(p2).unwrap().state(), ModuleState::Closed);
    collection.release_hardware(R).unwrap();
    assert_eq!(
        take(&log),
        ["Q.release_hardware", "P.release_hardware"],
        "Top 25 #8"
    );
    let _ = q;
}

/// Top 25 #6, #9, DSP-22: OPEN_D0Entry opens and closes on every D0 cycle; a failing D0Entry
/// unwinds the phase's opens and no D0Exit is dispatched afterwards.
#[test]
fn open_d0_entry_every_cycle_and_its_failure() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let mut init = ModuleInit::new();
    let d = init.add(OD0::with(cfg("D", &log)));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    let d = collection.get(d).unwrap();
    for previous in [PowerDeviceState::D3Final, PowerDeviceState::D3] {
        take(&log);
        collection.d0_entry(previous).unwrap();
        assert_eq!(take(&log), ["D.d0_entry", "D.open"]);
        assert!(d.write().is_ok());
        collection.d0_exit(PowerDeviceState::D3).unwrap();
        assert_eq!(take(&log), ["D.close", "D.d0_exit"]);
        assert!(d.write().is_err());
    }
    let mut init = ModuleInit::new();
    init.add(OD0::with(cfg("D", &log)));
    init.add(OD0::with(cfg("E", &log).fail("d0_entry")));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    take(&log);
    assert_eq!(
        collection.d0_entry(PowerDeviceState::D3Final),
        Err(NtStatus::UNSUCCESSFUL)
    );
    assert_eq!(
        take(&log),
        ["D.d0_entry", "D.open", "E.d0_entry", "D.close"]
    );
    collection.d0_exit(PowerDeviceState::D3).unwrap();
    assert!(
        take(&log).is_empty(),
        "Top 25 #9: no D0Exit after a failed D0Entry"
    );
}

/// Top 25 #6: OPEN_D0EntrySystemPowerUp opens on the first D0Entry and closes only on D0Exit to
/// D3Final (or hibernation), not on an idle D3.
#[test]
fn open_d0_entry_system_power_up() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let mut init = ModuleInit::new();
    let s = init.add(OD0System::with(cfg("S", &log)));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    let s = collection.get(s).unwrap();
    take(&log);
    collection.d0_entry(PowerDeviceState::D3Final).unwrap();
    collection.d0_exit(PowerDeviceState::D3).unwrap();
    collection.d0_entry(PowerDeviceState::D3).unwrap();
    assert_eq!(
        take(&log),
        ["S.d0_entry", "S.open", "S.d0_exit", "S.d0_entry"]
    );
    assert!(s.write().is_ok());
    collection.d0_exit(PowerDeviceState::D3Final).unwrap();
    assert_eq!(take(&log), ["S.close", "S.d0_exit"]);
    collection.d0_entry(PowerDeviceState::D3Final).unwrap();
    collection
        .d0_exit(PowerDeviceState::PrepareForHibernation)
        .unwrap();
    assert_eq!(take(&log), ["S.d0_entry", "S.open", "S.close", "S.d0_exit"]);
}

/// Top 25 #7, MOD-25, MOD-54, MOD-55, MOD-76: NOTIFY Modules register at their point and open
/// only from their notification; client callbacks order NotificationOpen → Open → PostOpen and
/// PreClose → Close → NotificationClose; a veto keeps the Module closed.
#[test]
fn notify_modules_and_client_event_order() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let events = |l: &Log| {
        let (a, b, c, d) = (l.clone(), l.clone(), l.clone(), l.clone());
        NPrepare::with(cfg("N", l))
            .on_device_notification_open(move |_| {
                a.lock().unwrap().push("client.notification_open".into());
                Ok(())
            })
            .on_post_open(move |m| {
                assert!(m.write().is_ok(), "Methods work in PostOpen");
                b.lock().unwrap().push("client.post_open".into());
            })
            .on_pre_close(move |m| {
                assert!(m.write().is_ok(), "Methods still work in PreClose");
                c.lock().unwrap().push("client.pre_close".into());
            })
            .on_device_notification_close(move |m| {
                assert!(m.write().is_err());
                d.lock().unwrap().push("client.notification_close".into());
            })
    };
    let mut init = ModuleInit::new();
    let n = init.add(events(&log));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    let n = collection.get(n).unwrap();
    take(&log);
    collection.prepare_hardware(R).unwrap();
    assert_eq!(
        take(&log),
        [
            "N.resources_assign",
            "N.prepare_hardware",
            "N.notification_register"
        ]
    );
    assert!(n.write().is_err(), "registered, not open");
    n.arrive().unwrap();
    assert_eq!(
        take(&log),
        ["client.notification_open", "N.open", "client.post_open"]
    );
    n.depart();
    assert_eq!(
        take(&log),
        ["client.pre_close", "N.close", "client.notification_close"]
    );
    n.arrive().unwrap();
    take(&log);
    collection.release_hardware(R).unwrap();
    assert_eq!(
        take(&log),
        [
            "N.notification_unregister",
            "client.pre_close",
            "N.close",
            "client.notification_close",
            "N.release_hardware"
        ]
    );
    // A veto.
    let mut init = ModuleInit::new();
    let v = init.add(
        NCreate::with(cfg("V", &log)).on_device_notification_open(|_| Err(NtStatus::ACCESS_DENIED)),
    );
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    let v = collection.get(v).unwrap();
    assert_eq!(v.arrive(), Err(NtStatus::ACCESS_DENIED));
    assert_eq!(v.state(), ModuleState::Created);
    assert!(v.write().is_err());
    // NOTIFY_D0Entry registers in D0Entry and unregisters in D0Exit.
    let mut init = ModuleInit::new();
    init.add(ND0::with(cfg("W", &log)));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    take(&log);
    collection.d0_entry(PowerDeviceState::D3Final).unwrap();
    collection.d0_exit(PowerDeviceState::D3).unwrap();
    assert_eq!(
        take(&log),
        [
            "W.d0_entry",
            "W.notification_register",
            "W.notification_unregister",
            "W.d0_exit"
        ]
    );
}

/// Top 25 #10, MOD-66, MOD-67: Reference succeeds while open and holds off close; fails once
/// closed, holding nothing.
#[test]
fn module_reference_holds_off_close() {
    let machine = Machine::builder()
        .clock(kmdf_sim::ClockMode::AutoAdvance)
        .build();
    let _g = machine.enter();
    let log = log();
    let mut init = ModuleInit::new();
    let n = init.add(NCreate::with(cfg("N", &log)));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    let n = collection.get(n).unwrap();
    assert_eq!(n.reference().err(), Some(NtStatus::INVALID_DEVICE_STATE));
    n.arrive().unwrap();
    let reference = n.reference().unwrap();
    let closer = {
        let n = n.clone();
        kmdf_sim::exec::SystemThread::spawn(&machine, "closer", move || n.depart()).unwrap()
    };
    machine.settle();
    assert_eq!(
        n.state(),
        ModuleState::Closing,
        "close waits for the reference"
    );
    drop(reference);
    closer.wait(None);
    assert_eq!(n.state(), ModuleState::Closed);
    assert_eq!(n.reference().err(), Some(NtStatus::INVALID_DEVICE_STATE));
}

/// Invariant 4, MOD-12, Top 25 #11: concurrent Method callers on system threads; close waits for
/// the calls in flight (no polling), and later calls fail with STATUS_INVALID_DEVICE_STATE.
#[test]
fn method_versus_close_race() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let machine = Machine::builder()
        .clock(kmdf_sim::ClockMode::AutoAdvance)
        .build();
    let _g = machine.enter();
    let log = log();
    let mut init = ModuleInit::new();
    let n = init.add(NCreate::with(cfg("N", &log)));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    let n = collection.get(n).unwrap();
    n.arrive().unwrap();
    let ok = Arc::new(AtomicU32::new(0));
    let refused = Arc::new(AtomicU32::new(0));
    let inside = Arc::new(AtomicU32::new(0));
    let mut threads = vec![];
    for i in 0..4 {
        let (n, ok, refused, inside) = (n.clone(), ok.clone(), refused.clone(), inside.clone());
        threads.push(
            kmdf_sim::exec::SystemThread::spawn(&machine, &format!("caller{i}"), move || loop {
                match n.reference() {
                    Ok(guard) => {
                        inside.fetch_add(1, Ordering::SeqCst);
                        nap(5);
                        assert_ne!(
                            n.state(),
                            ModuleState::Closed,
                            "close never finishes under a caller"
                        );
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(guard);
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(status) => {
                        assert_eq!(status, NtStatus::INVALID_DEVICE_STATE);
                        refused.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            })
            .unwrap(),
        );
    }
    nap(50);
    n.depart();
    assert_eq!(
        inside.load(Ordering::SeqCst),
        0,
        "close returned only after every call left"
    );
    for t in threads {
        t.wait(None);
    }
    assert!(ok.load(Ordering::SeqCst) > 0);
    assert_eq!(refused.load(Ordering::SeqCst), 4);
    assert_eq!(n.write(), Err(NtStatus::INVALID_DEVICE_STATE));
}

/// Sleeps `ms` of (virtual) time on a platform event.
fn nap(ms: u64) {
    use dmf_core::platform::contract::{EventKind, PlatformEvent};
    let event = dmf_core::platform::Event::new(EventKind::Notification, false).unwrap();
    let _ = event.wait(Some(std::time::Duration::from_millis(ms)));
}

/// Top 25 #15, MOD-68, MOD-91…MOD-94: dynamic Modules — open on return from create, no WDF
/// callbacks, deleted explicitly or with their parent, close then destroy exactly once.
#[test]
fn dynamic_module_lifecycle() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let d = DynMod::with(cfg("D", &log)).create(&NoParent).unwrap();
    assert!(d.is_dynamic());
    assert_eq!(d.ping(), Ok(()), "OPEN_Create: open on return");
    let handle = (*d).clone();
    d.delete();
    assert_eq!(take(&log), ["D.open", "D.close", "D.destroy"]);
    assert_eq!(handle.ping(), Err(NtStatus::INVALID_DEVICE_STATE));
    // Parent deletion deletes it: a device-parented dynamic Module dies with the collection.
    let collection =
        ModuleCollection::create(ModuleInit::new(), CollectionConfig::default()).unwrap();
    let d = DynMod::with(cfg("E", &log)).create(&collection).unwrap();
    drop(collection);
    assert_eq!(d.state(), ModuleState::Destroyed);
    drop(d);
    assert_eq!(
        take(&log),
        ["E.open", "E.close", "E.destroy"],
        "exactly once"
    );
    // A Module type with WDF callbacks can be created dynamically but receives none of them
    // (Top 25 #15: C DMF's rule); a non-*_Create option cannot be dynamic.
    let collection =
        ModuleCollection::create(ModuleInit::new(), CollectionConfig::default()).unwrap();
    let x = OCreate::with(cfg("X", &log)).create(&collection).unwrap();
    assert!(x.is_dynamic());
    collection.d0_entry(PowerDeviceState::D3Final).unwrap();
    collection.d0_exit(PowerDeviceState::D3).unwrap();
    collection.self_managed_io_init().unwrap();
    let seen = take(&log);
    assert!(seen.contains(&"X.open".to_owned()), "{seen:?}");
    assert!(
        !seen
            .iter()
            .any(|e| e.contains("d0_") || e.contains("self_managed")),
        "no WDF callback reaches a dynamic Module: {seen:?}"
    );
    drop(x);
    drop(collection);
    take(&log);
    assert_eq!(
        DynD0::with(cfg("Y", &log)).create(&NoParent).err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    // A Module creates a dynamic child through its own scope; it goes with the Module.
    let mut init = ModuleInit::new();
    let p = init.add(DynMod::with(cfg("P", &log)));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    let child = collection
        .get(p)
        .unwrap()
        .spawn_child(cfg("C", &log))
        .unwrap();
    assert!(child.ping().is_ok());
    take(&log);
    collection.destroy();
    assert_eq!(take(&log), ["P.close", "C.close", "C.destroy", "P.destroy"]);
    drop(child);
    assert!(take(&log).is_empty());
}

#[dmf_module(crate = ::dmf_core, config = Cfg, open = Create, lock = Dispatch)]
struct DynMod;

impl DynMod {
    fn ping(&self) -> NtResult<()> {
        let _m = self.enter()?;
        Ok(())
    }
    fn spawn_child(&self, c: Cfg) -> NtResult<DynamicModule<DynMod>> {
        let module = self.enter()?;
        DynMod::with(c).create(&*module)
    }
}

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for DynMod {
    fn open(m: &Dispatched<'_, Self>) -> NtResult<()> {
        rec(m.config(), "open")
    }
    fn close(m: &Dispatched<'_, Self>) {
        let _ = rec(m.config(), "close");
    }
    fn destroy(m: &Dispatched<'_, Self>) {
        let _ = rec(m.config(), "destroy");
    }
}

#[dmf_module(crate = ::dmf_core, config = Cfg, open = D0Entry, lock = Dispatch)]
struct DynD0;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for DynD0 {}

/// MOD-91, MOD-68: one Module type, the open option chosen per instance — a static instance
/// registers for notifications in PrepareHardware, a dynamic one on its creation (C DMF's
/// DeviceInterfaceTarget picks `NOTIFY_Create` when `DynamicModule` is set).
#[test]
fn dynamic_open_option_is_chosen_per_instance() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let mut init = ModuleInit::new();
    let s = init.add(Either::with(cfg("S", &log)));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    let s = collection.get(s).unwrap();
    assert!(!s.is_dynamic());
    assert!(
        take(&log).is_empty(),
        "static: nothing before PrepareHardware"
    );
    collection.prepare_hardware(&Resources::default()).unwrap();
    assert_eq!(take(&log), ["S.register"]);
    let d = Either::with(cfg("D", &log)).create(&collection).unwrap();
    assert!(d.is_dynamic());
    assert_eq!(take(&log), ["D.register"], "dynamic: registered on create");
    drop(d);
    assert_eq!(take(&log), ["D.unregister"]);
    collection.release_hardware(&Resources::default()).unwrap();
    assert_eq!(take(&log), ["S.unregister"]);
}

#[dmf_module(crate = ::dmf_core, config = Cfg, open = NotifyPrepareHardware, dynamic_open = NotifyCreate, lock = Dispatch)]
struct Either;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Either {
    fn notification_register(m: &Dispatched<'_, Self>) -> NtResult<()> {
        rec(m.config(), "register")
    }
    fn notification_unregister(m: &Dispatched<'_, Self>) {
        let _ = rec(m.config(), "unregister");
    }
}

/// A protocol Module that requires a Transport (MOD-100…MOD-102, Top 25 #16).
#[dmf_module(crate = ::dmf_core, config = Cfg, open = Create, lock = Passive, transport_required = true)]
struct Protocol;

impl Protocol {
    fn send(&self, byte: u8) -> NtResult<u8> {
        let module = self.enter()?;
        let mut out = [0u8; 1];
        module.transport_call(7, &[byte], &mut out)?;
        Ok(out[0])
    }
}

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Protocol {
    fn child_modules_add(m: &Dispatched<'_, Self>, init: &mut ModuleInit) {
        let _ = rec(m.config(), "child_modules_add");
        init.add(DynMod::with(cfg("declared-child", &m.config().log)));
    }
}

#[dmf_module(crate = ::dmf_core, config = Cfg, open = Create, lock = Passive)]
struct Transport;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Transport {
    fn transport_method(
        m: &Dispatched<'_, Self>,
        message: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> NtResult<usize> {
        let _ = rec(m.config(), "transport_method");
        output[0] = input[0] + u8::try_from(message).unwrap();
        Ok(1)
    }
}

/// Top 25 #16, MOD-102: the creator runs exactly once, after the Module and its declared children
/// exist; the Transport is one more child, reached through the parent's scope only.
#[test]
fn transport_required() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let calls = Arc::new(Mutex::new(0));
    let mut init = ModuleInit::new();
    let (l, c) = (log.clone(), calls.clone());
    let p = init.add(Protocol::with(cfg("P", &log)).transport(move |init| {
        *c.lock().unwrap() += 1;
        l.lock().unwrap().push("client.transport_creator".into());
        init.add(Transport::with(cfg("T", &l)));
        Ok(())
    }));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    assert_eq!(*calls.lock().unwrap(), 1);
    let events = take(&log);
    // Created in the order: P, its declared child (child_modules_add), then the creator's
    // Transport; opening (OPEN_Create) comes after the whole collection exists.
    assert_eq!(
        &events[..3],
        [
            "P.child_modules_add",
            "client.transport_creator",
            "declared-child.open"
        ]
        .as_slice()
    );
    assert_eq!(collection.get(p).unwrap().send(1), Ok(8));
    // Missing creator, or a creator that adds a non-transport, fail creation.
    let mut init = ModuleInit::new();
    init.add(Protocol::with(cfg("P", &log)));
    assert_eq!(
        ModuleCollection::create(init, CollectionConfig::default()).err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    let mut init = ModuleInit::new();
    let l = log.clone();
    init.add(Protocol::with(cfg("P", &log)).transport(move |init| {
        init.add(DynMod::with(cfg("not-a-transport", &l)));
        Ok(())
    }));
    assert_eq!(
        ModuleCollection::create(init, CollectionConfig::default()).err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
}

/// MOD-110…MOD-112: feature Modules are absent by default and found by feature when added.
/// MOD-75: the in-flight trace ring keeps the last N events.
#[test]
fn features_and_trace_ring() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = log();
    let mut init = ModuleInit::new();
    let a = init.add(OCreate::with(cfg("A", &log)));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    assert!(collection.feature::<DynMod>(Feature::BranchTrack).is_none());
    let mut init = ModuleInit::new();
    init.add_feature(Feature::BranchTrack, DynMod::with(cfg("BT", &log)));
    let collection2 = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    assert!(collection2
        .feature::<DynMod>(Feature::BranchTrack)
        .is_some());
    assert!(
        collection2
            .feature::<OCreate>(Feature::BranchTrack)
            .is_none(),
        "typed lookup"
    );
    let a = collection.get(a).unwrap();
    for _ in 0..3 {
        a.write().unwrap();
    }
    let trace = a.trace_tail();
    assert_eq!(trace.len(), 4);
    assert_eq!(trace[0].0, "create");
    assert_eq!(trace[1].0, "open");
    assert_eq!(trace[3], ("write", 2));
}

impl OCreate {
    fn trace_tail(&self) -> Vec<(&'static str, u64)> {
        let m = self.enter().unwrap();
        m.trace("write", 2);
        m.trace("write", 2);
        m.trace_entries().unwrap()
    }
}
