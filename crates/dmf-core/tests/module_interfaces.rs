//! DMF Interfaces (dmf-upstream §2.11): protocol/transport binding, its order, duplicate and
//! failed binds, calls racing the unbind, unbinding on destruction, and stacked interfaces.
#![cfg(feature = "sim")]
#![allow(clippy::too_many_lines, clippy::needless_pass_by_value, dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dmf_core::module::interface::{
    self, Binding, BindingState, Interface, InterfaceProtocol, InterfaceTransport,
};
use dmf_core::module::{
    CollectionConfig, Dispatched, ModuleCallbacks, ModuleCollection, ModuleInit, NoParent,
};
use dmf_core::platform::contract::{EventKind, PlatformEvent};
use dmf_core::platform::Event;
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};
use kmdf_sim::Machine;

type Log = Arc<Mutex<Vec<String>>>;

/// Holds the first transport call inside until released.
struct Gate {
    armed: AtomicBool,
    entered: Event,
    release: Event,
}

#[derive(Clone)]
struct Cfg {
    name: &'static str,
    log: Log,
    fail: Vec<&'static str>,
    gate: Option<Arc<Gate>>,
}

fn cfg(name: &'static str, log: &Log) -> Cfg {
    Cfg {
        name,
        log: Arc::clone(log),
        fail: vec![],
        gate: None,
    }
}

impl Cfg {
    fn fail(mut self, what: &'static str) -> Self {
        self.fail.push(what);
        self
    }
}

fn rec(c: &Cfg, what: &str) -> NtResult<()> {
    c.log.lock().unwrap().push(format!("{}.{what}", c.name));
    if c.fail.contains(&what) {
        Err(NtStatus::UNSUCCESSFUL)
    } else {
        Ok(())
    }
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

/// Interface 1: the transport adds.
trait Adder: Send + Sync {
    fn add(&self, value: u32) -> NtResult<u32>;
}
struct AddInterface;
impl Interface for AddInterface {
    const NAME: &'static str = "Add";
    type Transport = dyn Adder;
    type ProtocolData = u32;
    type TransportData = &'static str;
}

/// Interface 2: the transport doubles.
trait Doubler: Send + Sync {
    fn double(&self, value: u32) -> NtResult<u32>;
}
struct DoubleInterface;
impl Interface for DoubleInterface {
    const NAME: &'static str = "Double";
    type Transport = dyn Doubler;
    type ProtocolData = ();
    type TransportData = ();
}

#[derive(Default)]
struct ProtoCtx {
    add: Option<Binding<AddInterface>>,
    double: Option<Binding<DoubleInterface>>,
    transport_name: &'static str,
}

// ---- the protocol of AddInterface ----

#[dmf_module(crate = ::dmf_core, config = Cfg, context = ProtoCtx, open = Create, lock = Passive)]
struct Proto;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Proto {
    fn close(m: &Dispatched<'_, Self>) {
        let _ = rec(m.config(), "close");
    }
}

impl Proto {
    fn sum(&self, value: u32) -> NtResult<u32> {
        let module = self.enter()?;
        let binding = module.lock().add.clone().ok_or(NtStatus::NOT_FOUND)?;
        binding.call(|t| t.add(value))
    }
    fn found_by_lookup(&self) -> bool {
        self.enter()
            .is_ok_and(|m| m.interface::<AddInterface>().is_some())
    }
}

impl InterfaceProtocol<AddInterface> for Proto {
    fn protocol_data(m: &Dispatched<'_, Self>) -> u32 {
        let _ = rec(m.config(), "protocol_data");
        100
    }
    fn bind(m: &Dispatched<'_, Self>, transport: &&'static str) -> NtResult<()> {
        m.lock().transport_name = transport;
        rec(m.config(), "bind")
    }
    fn post_bind(m: &Dispatched<'_, Self>, binding: &Binding<AddInterface>) {
        let _ = rec(m.config(), "post_bind");
        m.lock().add = Some(binding.clone());
    }
    fn pre_unbind(m: &Dispatched<'_, Self>, binding: &Binding<AddInterface>) {
        // Calls still work in PreUnbind.
        let ok = binding.call(|t| t.add(0)).is_ok();
        let _ = rec(
            m.config(),
            if ok {
                "pre_unbind:call-ok"
            } else {
                "pre_unbind:call-refused"
            },
        );
    }
    fn unbind(m: &Dispatched<'_, Self>) {
        let _ = rec(m.config(), "unbind");
        m.lock().add = None;
    }
}

// ---- the transport of AddInterface ----

#[dmf_module(crate = ::dmf_core, config = Cfg, context = u32, open = Create, lock = Passive)]
struct Trans;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Trans {
    fn close(m: &Dispatched<'_, Self>) {
        let _ = rec(m.config(), "close");
    }
}

impl Adder for Trans {
    fn add(&self, value: u32) -> NtResult<u32> {
        let module = self.enter()?;
        if let Some(gate) = &module.config().gate {
            if gate.armed.swap(false, Ordering::SeqCst) {
                let _ = rec(module.config(), "add:inside");
                gate.entered.set();
                let _ = gate.release.wait(None);
                let _ = rec(module.config(), "add:leaving");
            }
        }
        let offset = *module.lock();
        Ok(value + offset)
    }
}

impl InterfaceTransport<AddInterface> for Trans {
    fn bind(m: &Dispatched<'_, Self>, protocol: &u32) -> NtResult<(&'static str, Box<dyn Adder>)> {
        rec(m.config(), "bind")?;
        *m.lock() = *protocol;
        Ok((m.config().name, Box::new(m.handle()?)))
    }
    fn post_bind(m: &Dispatched<'_, Self>) {
        let _ = rec(m.config(), "post_bind");
    }
    fn pre_unbind(m: &Dispatched<'_, Self>) {
        let _ = rec(m.config(), "pre_unbind");
    }
    fn unbind(m: &Dispatched<'_, Self>) {
        let _ = rec(m.config(), "unbind");
    }
}

// ---- the middle of a stack: transport of AddInterface, protocol of DoubleInterface ----

#[dmf_module(crate = ::dmf_core, config = Cfg, context = ProtoCtx, open = Create, lock = Passive)]
struct Middle;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Middle {}

impl Adder for Middle {
    fn add(&self, value: u32) -> NtResult<u32> {
        let module = self.enter()?;
        let below = module.lock().double.clone().ok_or(NtStatus::NOT_FOUND)?;
        Ok(below.call(|d| d.double(value))? + 1)
    }
}

impl InterfaceTransport<AddInterface> for Middle {
    fn bind(m: &Dispatched<'_, Self>, _: &u32) -> NtResult<(&'static str, Box<dyn Adder>)> {
        let _ = rec(m.config(), "bind(add)");
        Ok((m.config().name, Box::new(m.handle()?)))
    }
    fn unbind(m: &Dispatched<'_, Self>) {
        let _ = rec(m.config(), "unbind(add)");
    }
}

impl InterfaceProtocol<DoubleInterface> for Middle {
    fn protocol_data(_: &Dispatched<'_, Self>) {}
    fn post_bind(m: &Dispatched<'_, Self>, binding: &Binding<DoubleInterface>) {
        let _ = rec(m.config(), "post_bind(double)");
        m.lock().double = Some(binding.clone());
    }
    fn unbind(m: &Dispatched<'_, Self>) {
        let _ = rec(m.config(), "unbind(double)");
        m.lock().double = None;
    }
}

// ---- the bottom of the stack: transport of DoubleInterface ----

#[dmf_module(crate = ::dmf_core, config = Cfg, open = Create, lock = Passive)]
struct Leaf;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Leaf {}

impl Doubler for Leaf {
    fn double(&self, value: u32) -> NtResult<u32> {
        let _module = self.enter()?;
        Ok(value * 2)
    }
}

impl InterfaceTransport<DoubleInterface> for Leaf {
    fn bind(m: &Dispatched<'_, Self>, (): &()) -> NtResult<((), Box<dyn Doubler>)> {
        let _ = rec(m.config(), "bind(double)");
        Ok(((), Box::new(m.handle()?)))
    }
    fn unbind(m: &Dispatched<'_, Self>) {
        let _ = rec(m.config(), "unbind(double)");
    }
}

fn pair(log: &Log, p: Cfg, t: Cfg) -> (ModuleCollection, Proto, Trans) {
    let _ = log;
    let mut init = ModuleInit::new();
    let (p, t) = (init.add(Proto::with(p)), init.add(Trans::with(t)));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    let (p, t) = (collection.get(p).unwrap(), collection.get(t).unwrap());
    (collection, p, t)
}

/// §2.11: bind exchanges the bind data (protocol → transport → protocol), opens, then PostBind on
/// the protocol and the transport; unbind runs PreUnbind on both (calls still work), then Unbind
/// on both; afterwards calls fail and the binding is gone from both Modules.
#[test]
fn bind_and_unbind_order() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (_collection, p, t) = pair(&log, cfg("P", &log), cfg("T", &log));
    assert!(!p.found_by_lookup());
    let binding = interface::bind::<AddInterface, _, _>(&p, &t).unwrap();
    assert_eq!(binding.state(), BindingState::Opened);
    assert_eq!(
        take(&log),
        [
            "P.protocol_data",
            "T.bind",
            "P.bind",
            "P.post_bind",
            "T.post_bind"
        ]
    );
    assert_eq!(
        p.sum(5),
        Ok(105),
        "the transport got the protocol's bind data"
    );
    assert!(p.found_by_lookup(), "Scope::interface finds the binding");
    binding.unbind();
    assert_eq!(
        take(&log),
        [
            "P.pre_unbind:call-ok",
            "T.pre_unbind",
            "P.unbind",
            "T.unbind"
        ]
    );
    assert_eq!(binding.state(), BindingState::Closed);
    assert_eq!(
        binding.call(|t| t.add(1)).err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(p.sum(5), Err(NtStatus::NOT_FOUND));
    assert!(!p.found_by_lookup());
    binding.unbind();
    assert!(take(&log).is_empty(), "unbind runs once");
    // The pair can be bound again.
    let again = interface::bind::<AddInterface, _, _>(&p, &t).unwrap();
    assert_eq!(p.sum(1), Ok(101));
    again.unbind();
}

/// §2.11: a duplicate binding is refused; a failing bind (either side) leaves nothing bound and
/// undoes the transport's bind when the protocol refuses.
#[test]
fn duplicate_and_failed_binds_are_refused() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (_collection, p, t) = pair(&log, cfg("P", &log), cfg("T", &log));
    let binding = interface::bind::<AddInterface, _, _>(&p, &t).unwrap();
    take(&log);
    assert_eq!(
        interface::bind::<AddInterface, _, _>(&p, &t).err(),
        Some(NtStatus::OBJECT_NAME_COLLISION)
    );
    assert!(take(&log).is_empty(), "a refused duplicate calls nobody");
    assert_eq!(p.sum(1), Ok(101), "the first binding is untouched");
    binding.unbind();

    let (_c, p, t) = pair(&log, cfg("P", &log), cfg("T", &log).fail("bind"));
    take(&log);
    assert_eq!(
        interface::bind::<AddInterface, _, _>(&p, &t).err(),
        Some(NtStatus::UNSUCCESSFUL)
    );
    assert_eq!(take(&log), ["P.protocol_data", "T.bind"]);
    assert!(!p.found_by_lookup());

    let (_c, p, t) = pair(&log, cfg("P", &log).fail("bind"), cfg("T", &log));
    take(&log);
    assert_eq!(
        interface::bind::<AddInterface, _, _>(&p, &t).err(),
        Some(NtStatus::UNSUCCESSFUL)
    );
    assert_eq!(
        take(&log),
        ["P.protocol_data", "T.bind", "P.bind", "T.unbind"],
        "the protocol's refusal undoes the transport's bind"
    );
    assert!(!p.found_by_lookup());
    // A failed bind leaves no record: the retry is refused by the protocol again, not as a duplicate.
    assert_eq!(
        interface::bind::<AddInterface, _, _>(&p, &t).err(),
        Some(NtStatus::UNSUCCESSFUL)
    );
}

/// §2.11: the unbind waits for the interface reference count to drain — a call in flight finishes
/// before the Unbind callbacks run — and calls made after the unbind began are refused.
#[test]
fn calls_during_unbind_wait_or_are_refused() {
    let machine = Machine::builder()
        .clock(kmdf_sim::ClockMode::AutoAdvance)
        .build();
    let _g = machine.enter();
    let log = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(Gate {
        armed: AtomicBool::new(true),
        entered: Event::new(EventKind::Notification, false).unwrap(),
        release: Event::new(EventKind::Notification, false).unwrap(),
    });
    let mut t_cfg = cfg("T", &log);
    t_cfg.gate = Some(Arc::clone(&gate));
    let (_collection, p, t) = pair(&log, cfg("P", &log), t_cfg);
    let binding = interface::bind::<AddInterface, _, _>(&p, &t).unwrap();
    take(&log);
    let caller = {
        let p = p.clone();
        kmdf_sim::exec::SystemThread::spawn(&machine, "caller", move || {
            assert_eq!(p.sum(1), Ok(101), "the call in flight completes");
        })
        .unwrap()
    };
    let _ = gate.entered.wait(None);
    let unbinder = {
        let binding = binding.clone();
        kmdf_sim::exec::SystemThread::spawn(&machine, "unbinder", move || binding.unbind()).unwrap()
    };
    machine.settle();
    assert_eq!(binding.state(), BindingState::Closing, "the unbind waits");
    assert_eq!(
        binding.call(|t| t.add(1)).err(),
        Some(NtStatus::INVALID_DEVICE_STATE),
        "new calls are refused once the drain began"
    );
    gate.release.set();
    caller.wait(None);
    unbinder.wait(None);
    assert_eq!(binding.state(), BindingState::Closed);
    let events = take(&log);
    let at = |e: &str| events.iter().position(|x| x == e).unwrap();
    assert!(at("T.add:leaving") < at("P.unbind"), "{events:?}");
    assert!(at("T.pre_unbind") < at("T.add:leaving"), "{events:?}");
    assert_eq!(&events[events.len() - 2..], ["P.unbind", "T.unbind"]);
}

/// §2.11: destroying either Module unbinds its interfaces — before the Module closes — whether the
/// collection is destroyed or a dynamic transport is deleted.
#[test]
fn destroying_either_module_unbinds() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (collection, p, t) = pair(&log, cfg("P", &log), cfg("T", &log));
    let binding = interface::bind::<AddInterface, _, _>(&p, &t).unwrap();
    take(&log);
    collection.destroy();
    assert_eq!(
        take(&log),
        [
            "P.pre_unbind:call-ok",
            "T.pre_unbind",
            "P.unbind",
            "T.unbind",
            "T.close",
            "P.close"
        ]
    );
    assert_eq!(binding.state(), BindingState::Closed);

    // A dynamic transport: deleting it unbinds while the protocol lives on.
    let mut init = ModuleInit::new();
    let p = init.add(Proto::with(cfg("P", &log)));
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    let p = collection.get(p).unwrap();
    let t = Trans::with(cfg("D", &log)).create(&NoParent).unwrap();
    let binding = interface::bind::<AddInterface, _, _>(&p, &*t).unwrap();
    assert_eq!(p.sum(2), Ok(102));
    take(&log);
    t.delete();
    assert_eq!(
        take(&log),
        [
            "P.pre_unbind:call-ok",
            "D.pre_unbind",
            "P.unbind",
            "D.unbind",
            "D.close"
        ]
    );
    assert_eq!(binding.state(), BindingState::Closed);
    assert_eq!(p.sum(2), Err(NtStatus::NOT_FOUND));
    // Binding a destroyed Module is refused.
    let t = Trans::with(cfg("E", &log)).create(&NoParent).unwrap();
    let handle = (*t).clone();
    t.delete();
    assert_eq!(
        interface::bind::<AddInterface, _, _>(&p, &handle).err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
}

/// §2.11 (InterfaceSample2): interfaces stack — the transport of one interface is the protocol of
/// another; removing the bottom unbinds only the lower interface.
#[test]
fn stacked_interfaces() {
    let machine = Machine::new();
    let _g = machine.enter();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut init = ModuleInit::new();
    let (a, b) = (
        init.add(Proto::with(cfg("A", &log))),
        init.add(Middle::with(cfg("B", &log))),
    );
    let collection = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    let (a, b) = (collection.get(a).unwrap(), collection.get(b).unwrap());
    let c = Leaf::with(cfg("C", &log)).create(&NoParent).unwrap();
    let upper = interface::bind::<AddInterface, _, _>(&a, &b).unwrap();
    let lower = interface::bind::<DoubleInterface, _, _>(&b, &*c).unwrap();
    assert_eq!(a.sum(3), Ok(7), "A → B (double, +1) → C");
    take(&log);
    c.delete();
    assert_eq!(take(&log), ["B.unbind(double)", "C.unbind(double)"]);
    assert_eq!(lower.state(), BindingState::Closed);
    assert_eq!(upper.state(), BindingState::Opened);
    assert_eq!(
        a.sum(3),
        Err(NtStatus::NOT_FOUND),
        "B has no lower transport now"
    );
    collection.destroy();
    assert_eq!(upper.state(), BindingState::Closed);
}
