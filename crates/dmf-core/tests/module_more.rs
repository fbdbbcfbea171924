//! More conformance tests of the Module framework: `PassiveLevel` and lock kinds (MOD-24, MOD-70,
//! MOD-80), auxiliary locks (MOD-81), and the Transport creator's view of the declared children
//! (MOD-102, Top 25 #16), and shared state with lock-free Methods (`shared = …`, `enter_lock_free`).
#![cfg(feature = "sim")]
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use dmf_core::module::{
    CollectionConfig, Dispatched, ModuleCallbacks, ModuleCollection, ModuleInit, ModuleSpec,
};
use dmf_core::platform::contract::{Irql, PlatformIrql};
use dmf_core::platform::CurrentIrql;
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};
use kmdf_sim::Machine;

/// What a Method observes about its Module's locks.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    passive_level: bool,
    /// The IRQL while the Module's own lock is held: DISPATCH for a spin lock, PASSIVE for a wait
    /// lock.
    irql_under_lock: Irql,
    irql_under_aux: Option<Irql>,
}

macro_rules! lock_module {
    ($name:ident, $lock:ident, $aux:literal) => {
        #[dmf_module(crate = ::dmf_core, config = (), context = u32, open = Create, lock = $lock, aux_locks = $aux)]
        struct $name;

        #[dmf_callbacks(crate = ::dmf_core)]
        impl ModuleCallbacks for $name {}

        impl $name {
            fn observe(&self) -> NtResult<Observed> {
                let module = self.enter()?;
                let irql_under_lock = {
                    let mut context = module.lock();
                    *context += 1;
                    CurrentIrql::current()
                };
                let irql_under_aux = module.aux_lock(0).ok().map(|_g| CurrentIrql::current());
                Ok(Observed {
                    passive_level: module.is_passive_level(),
                    irql_under_lock,
                    irql_under_aux,
                })
            }

            /// Takes auxiliary lock `index` and reports whether it was granted.
            fn aux(&self, index: usize) -> NtResult<()> {
                let module = self.enter()?;
                let _guard = module.aux_lock(index)?;
                Ok(())
            }
        }
    };
}

lock_module!(PassiveModule, Passive, 0);
lock_module!(DispatchModule, Dispatch, 0);
lock_module!(MaxModule, DispatchMaximum, 1);
lock_module!(FourAux, Dispatch, 4);
lock_module!(FourAuxPassive, Passive, 4);

fn create_one<M: dmf_core::module::Module>(spec: ModuleSpec<M>) -> NtResult<(ModuleCollection, M)> {
    let mut init = ModuleInit::new();
    let token = init.add(spec);
    let collection = ModuleCollection::create(init, CollectionConfig::default())?;
    let handle = collection.get(token)?;
    Ok((collection, handle))
}

/// MOD-24, MOD-70, MOD-80, dmf-upstream §2.9: DISPATCH_MAXIMUM + PassiveLevel → wait locks
/// (PASSIVE_LEVEL under the lock) and `is_passive_level`; DISPATCH_MAXIMUM alone → spin locks; a
/// PASSIVE Module has wait locks and is passive-level; DISPATCH + PassiveLevel is refused at
/// creation with STATUS_INVALID_PARAMETER.
#[test]
fn passive_level() {
    let machine = Machine::new();
    let _g = machine.enter();

    let (_c, max_passive) = create_one(MaxModule::with(()).passive_level(true)).unwrap();
    assert_eq!(
        max_passive.observe(),
        Ok(Observed {
            passive_level: true,
            irql_under_lock: Irql::Passive,
            irql_under_aux: Some(Irql::Passive),
        })
    );

    let (_c, max_dispatch) = create_one(MaxModule::with(())).unwrap();
    assert_eq!(
        max_dispatch.observe(),
        Ok(Observed {
            passive_level: false,
            irql_under_lock: Irql::Dispatch,
            irql_under_aux: Some(Irql::Dispatch),
        })
    );

    let (_c, passive) = create_one(PassiveModule::with(())).unwrap();
    assert_eq!(
        passive.observe(),
        Ok(Observed {
            passive_level: true,
            irql_under_lock: Irql::Passive,
            irql_under_aux: None,
        })
    );

    let (_c, dispatch) = create_one(DispatchModule::with(())).unwrap();
    assert_eq!(
        dispatch
            .observe()
            .map(|o| (o.passive_level, o.irql_under_lock)),
        Ok((false, Irql::Dispatch))
    );

    assert_eq!(
        create_one(DispatchModule::with(()).passive_level(true)).err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        CurrentIrql::current(),
        Irql::Passive,
        "every lock was released"
    );
}

/// MOD-81, dmf-upstream §2.9: auxiliary locks 0…3 of a four-lock Module are usable (spin or wait,
/// the Module's kind), index 4 and any index of a Module without auxiliary locks are refused with
/// STATUS_INVALID_PARAMETER.
#[test]
fn auxiliary_locks() {
    let machine = Machine::new();
    let _g = machine.enter();
    let (_c, four) = create_one(FourAux::with(())).unwrap();
    for index in 0..4 {
        assert_eq!(four.aux(index), Ok(()), "aux lock {index}");
    }
    assert_eq!(four.aux(4), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(four.aux(usize::MAX), Err(NtStatus::INVALID_PARAMETER));

    let (_c, four_passive) = create_one(FourAuxPassive::with(())).unwrap();
    for index in 0..4 {
        assert_eq!(four_passive.aux(index), Ok(()), "aux lock {index}");
    }
    assert_eq!(four_passive.aux(4), Err(NtStatus::INVALID_PARAMETER));

    let (_c, none) = create_one(DispatchModule::with(())).unwrap();
    assert_eq!(none.aux(0), Err(NtStatus::INVALID_PARAMETER));
    // (`aux_locks = 5` does not compile: the macro accepts 0…4.)
}

type Log = Arc<Mutex<Vec<String>>>;

#[dmf_module(crate = ::dmf_core, config = Log, open = Create, lock = Passive, transport_required = true)]
struct Parent;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Parent {
    fn child_modules_add(m: &Dispatched<'_, Self>, init: &mut ModuleInit) {
        m.config()
            .lock()
            .unwrap()
            .push("parent.child_modules_add".into());
        init.add(Declared::with((m.config().clone(), "first")));
        init.add(Declared::with((m.config().clone(), "second")));
    }
    fn open(m: &Dispatched<'_, Self>) -> NtResult<()> {
        let count = m.child_count();
        m.config()
            .lock()
            .unwrap()
            .push(format!("parent.open children={count}"));
        let mut out = [0u8; 1];
        m.transport_call(1, &[], &mut out)?;
        Ok(())
    }
}

#[dmf_module(crate = ::dmf_core, config = (Log, &'static str), open = Create, lock = Passive)]
struct Declared;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Declared {
    /// Runs while this child is being created: the log shows when it exists.
    fn child_modules_add(m: &Dispatched<'_, Self>, _init: &mut ModuleInit) {
        let (log, name) = m.config();
        log.lock().unwrap().push(format!("{name}.created"));
    }
}

#[dmf_module(crate = ::dmf_core, config = Log, open = Create, lock = Passive)]
struct Tr;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Tr {
    fn child_modules_add(m: &Dispatched<'_, Self>, _init: &mut ModuleInit) {
        m.config().lock().unwrap().push("transport.created".into());
    }
    fn transport_method(
        m: &Dispatched<'_, Self>,
        message: u32,
        _input: &[u8],
        _output: &mut [u8],
    ) -> NtResult<usize> {
        m.config()
            .lock()
            .unwrap()
            .push(format!("transport.method {message}"));
        Ok(0)
    }
}

/// MOD-102, Top 25 #16: the Transport creator runs exactly once, after every declared child has
/// been created; the Transport is created after it as the last child; all of them open before the
/// parent, which can call the Transport in its own Open.
#[test]
fn transport_creator_sees_the_declared_children() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&log);
    let mut init = ModuleInit::new();
    init.add(Parent::with(Arc::clone(&log)).transport(move |init| {
        l.lock().unwrap().push("client.transport_creator".into());
        init.add(Tr::with(Arc::clone(&l)));
        Ok(())
    }));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "parent.child_modules_add",
            "first.created",
            "second.created",
            "client.transport_creator",
            "transport.created",
            "parent.open children=3",
            "transport.method 1"
        ]
    );
    drop(collection);
}

/// `ModuleHandle::downgrade`: a weak handle keeps nothing alive, upgrades while the object
/// exists, and Methods through the upgraded handle still obey rundown (invariant 4).
#[test]
fn weak_handles_upgrade_while_the_object_exists() {
    use dmf_core::module::ModuleHandle;
    let machine = Machine::new();
    let _g = machine.enter();
    let (collection, module) = create_one(DispatchModule::with(())).unwrap();
    let weak = module.downgrade();
    assert!(weak.upgrade().unwrap().observe().is_ok());
    collection.destroy();
    let upgraded = weak.upgrade().expect("the handle still holds the object");
    assert_eq!(upgraded.observe(), Err(NtStatus::INVALID_DEVICE_STATE));
    drop((upgraded, module, collection));
    assert!(weak.upgrade().is_none(), "nothing kept the object alive");
}

/// A Module's shared state for the test below: a counter that starts at the config.
struct Tally {
    hits: std::sync::atomic::AtomicU32,
}

impl dmf_core::module::ModuleShared<u32> for Tally {
    fn new(config: &u32) -> NtResult<Self> {
        if *config == u32::MAX {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        Ok(Tally {
            hits: std::sync::atomic::AtomicU32::new(*config),
        })
    }
}

#[dmf_module(crate = ::dmf_core, config = u32, shared = Tally, open = D0Entry, lock = Dispatch)]
struct Tallied;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Tallied {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        // Framework callbacks reach the shared state too.
        module
            .shared()
            .hits
            .fetch_add(100, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

impl Tallied {
    /// A lock-free Method: no rundown guard, no lock.
    fn hit(&self) -> NtResult<u32> {
        let shared = self.enter_lock_free()?;
        Ok(shared
            .hits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1)
    }

    /// A guarded Method reaching the same state.
    fn peek(&self) -> NtResult<u32> {
        let module = self.enter()?;
        Ok(module
            .shared()
            .hits
            .load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// `shared = …` (`ModuleShared`, ARCHITECTURE.md "lock-free Methods"): the state is built from
/// the config at create and kept across close and reopen; `enter_lock_free` reaches it without a
/// lock or rundown guard and answers STATUS_INVALID_DEVICE_STATE whenever the Module is not open
/// (before its D0Entry open, after its D0Exit close) — as a guarded Method does (invariant 4);
/// a failing `ModuleShared::new` fails the create with its status and leaves nothing behind.
#[test]
fn shared_state_and_lock_free_methods() {
    use dmf_core::module::PowerDeviceState;
    let machine = Machine::new();
    let _g = machine.enter();
    let (collection, module) = create_one(Tallied::with(7)).unwrap();
    assert_eq!(
        module.hit(),
        Err(NtStatus::INVALID_DEVICE_STATE),
        "created, not open"
    );
    assert_eq!(module.peek(), Err(NtStatus::INVALID_DEVICE_STATE));
    collection.d0_entry(PowerDeviceState::D3Final).unwrap();
    assert_eq!(module.hit(), Ok(108), "config 7 + open's 100 + this hit");
    assert_eq!(module.hit(), Ok(109));
    assert_eq!(module.peek(), Ok(109));
    collection.d0_exit(PowerDeviceState::D3).unwrap();
    assert_eq!(module.hit(), Err(NtStatus::INVALID_DEVICE_STATE), "closed");
    collection.d0_entry(PowerDeviceState::D3).unwrap();
    assert_eq!(module.hit(), Ok(210), "the state outlives close and reopen");
    collection.destroy();
    assert_eq!(
        module.hit(),
        Err(NtStatus::INVALID_DEVICE_STATE),
        "destroyed"
    );
    drop((module, collection));

    assert_eq!(
        create_one(Tallied::with(u32::MAX)).err(),
        Some(NtStatus::INSUFFICIENT_RESOURCES)
    );
    assert!(machine.pool().outstanding().is_empty());
}
