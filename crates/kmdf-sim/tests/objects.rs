//! The WDF object tree, drivers and the verifier rules they feed (kmdf-sequences §2.10).

use std::sync::{Arc, Mutex};

use kmdf_sim::device::Device;
use kmdf_sim::driver::{self, Driver, DriverConfig};
use kmdf_sim::exec::DriverScope;
use kmdf_sim::fault::FaultPoint;
use kmdf_sim::object::{live_objects, ObjectAttributes, ObjectState, WdfObject};
use kmdf_sim::pnp::{NodeState, StackSpec};
use kmdf_sim::registry::RegistryStore;
use kmdf_sim::{Machine, Rule, Status, VerifierMode};

type Log = Arc<Mutex<Vec<String>>>;

fn attrs(log: &Log, name: &str) -> ObjectAttributes {
    let (l1, l2) = (Arc::clone(log), Arc::clone(log));
    let (n1, n2) = (name.to_owned(), name.to_owned());
    ObjectAttributes::new()
        .name(name)
        .on_cleanup(move |_| l1.lock().unwrap().push(format!("cleanup {n1}")))
        .on_destroy(move |_| l2.lock().unwrap().push(format!("destroy {n2}")))
}

#[test]
fn object_cleanup_children_first_then_destroy_children_first() {
    let m = Machine::new();
    let log: Log = Arc::default();
    let _d = DriverScope::enter("drv");
    let parent = WdfObject::create(&m, "WDFOBJECT", attrs(&log, "parent")).unwrap();
    let child = WdfObject::create(&m, "WDFOBJECT", attrs(&log, "child").parent(&parent)).unwrap();
    let _grandchild =
        WdfObject::create(&m, "WDFOBJECT", attrs(&log, "grandchild").parent(&child)).unwrap();
    parent.delete().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "cleanup grandchild",
            "cleanup child",
            "cleanup parent",
            "destroy grandchild",
            "destroy child",
            "destroy parent"
        ]
    );
    assert_eq!(parent.state(), ObjectState::Destroyed);
    assert!(live_objects(&m).is_empty());
    // Callbacks are traced against the owning driver.
    assert_eq!(m.trace().callbacks_for("drv").len(), 6);
}

#[test]
fn object_refcount_delays_destroy() {
    let m = Machine::new();
    let log: Log = Arc::default();
    let parent = WdfObject::create(&m, "WDFOBJECT", attrs(&log, "parent")).unwrap();
    let child = WdfObject::create(&m, "WDFOBJECT", attrs(&log, "child").parent(&parent)).unwrap();
    child.reference();
    parent.delete().unwrap();
    // Both cleaned up; the child holds a reference, so it is not destroyed, and the parent does
    // not wait for it (KMDF's `DestroyChildren`: the parent lets go of its children, then
    // releases its own creation reference).
    assert_eq!(
        *log.lock().unwrap(),
        ["cleanup child", "cleanup parent", "destroy parent"]
    );
    assert_eq!(child.state(), ObjectState::Deleted);
    assert_eq!(parent.state(), ObjectState::Destroyed);
    child.dereference();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "cleanup child",
            "cleanup parent",
            "destroy parent",
            "destroy child"
        ]
    );
    assert!(live_objects(&m).is_empty());
}

#[test]
fn object_referencing_its_own_child_is_destroyed_and_then_releases_it() {
    // A WDFCOLLECTION that holds a reference on each item, with items parented to it (C DMF's
    // list of Module configurations): KMDF's collection releases its items when it is destroyed
    // (`~FxCollection`), which is possible only because the collection does not wait for its
    // referenced children.
    let m = Machine::new();
    let log: Log = Arc::default();
    let items: Arc<Mutex<Vec<WdfObject>>> = Arc::default();
    let held = Arc::clone(&items);
    let (l1, l2) = (Arc::clone(&log), Arc::clone(&log));
    let owner = WdfObject::create(&m, "WDFOBJECT", attrs(&log, "device")).unwrap();
    let collection = WdfObject::create(
        &m,
        "WDFCOLLECTION",
        ObjectAttributes::new()
            .name("collection")
            .parent(&owner)
            .on_cleanup(move |_| l1.lock().unwrap().push("cleanup collection".into()))
            .on_destroy(move |_| {
                l2.lock().unwrap().push("destroy collection".into());
                for item in held.lock().unwrap().drain(..) {
                    item.dereference();
                }
            }),
    )
    .unwrap();
    for name in ["item 0", "item 1"] {
        let item =
            WdfObject::create(&m, "WDFMEMORY", attrs(&log, name).parent(&collection)).unwrap();
        item.reference();
        items.lock().unwrap().push(item);
    }
    owner.delete().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "cleanup item 1",
            "cleanup item 0",
            "cleanup collection",
            "cleanup device",
            "destroy collection",
            "destroy item 0",
            "destroy item 1",
            "destroy device"
        ]
    );
    assert!(live_objects(&m).is_empty());
}

#[test]
fn object_context_and_names() {
    let m = Machine::new();
    let _d = DriverScope::enter("switchbar");
    let a = WdfObject::create(&m, "WDFDEVICE", ObjectAttributes::new().context(41u32)).unwrap();
    let b = WdfObject::create(&m, "WDFDEVICE", ObjectAttributes::new()).unwrap();
    assert_eq!(a.name(), "WDFDEVICE switchbar#0");
    assert_eq!(b.name(), "WDFDEVICE switchbar#1");
    assert_eq!(a.context::<u32>().as_deref(), Some(&41));
    assert!(a.context::<String>().is_none());
    a.delete().unwrap();
    b.delete().unwrap();
}

#[test]
fn verifier_deleted_object_use() {
    let m = Machine::builder().verifier(VerifierMode::Record).build();
    let obj = {
        let _d = DriverScope::enter("buggy");
        WdfObject::create(&m, "WDFMEMORY", ObjectAttributes::new().context(7u8)).unwrap()
    };
    obj.delete().unwrap();
    {
        let _d = DriverScope::enter("buggy");
        assert_eq!(obj.delete(), Err(Status::INVALID_DEVICE_STATE));
        assert!(obj.context::<u8>().is_none());
        assert!(WdfObject::create(&m, "WDFMEMORY", ObjectAttributes::new().parent(&obj)).is_err());
    }
    let v = m.verifier().violations_of(Rule::DeletedObjectUsed);
    assert_eq!(v.len(), 3);
    assert!(v
        .iter()
        .all(|v| v.driver == "buggy" && v.object == "WDFMEMORY buggy#0"));
    assert!(v[0].message.contains("WdfObjectDelete"), "{}", v[0]);
}

#[test]
#[should_panic(expected = "DeletedObjectUsed")]
fn verifier_deleted_object_use_panics_by_default() {
    let m = Machine::new();
    let obj = WdfObject::create(&m, "WDFMEMORY", ObjectAttributes::new()).unwrap();
    obj.delete().unwrap();
    let _ = obj.delete();
}

#[test]
fn verifier_pool_leak_at_unload() {
    let m = Machine::builder().verifier(VerifierMode::Record).build();
    let kept = Arc::new(Mutex::new(Vec::new()));
    let k = Arc::clone(&kept);
    driver::install(
        &m,
        "leaker",
        DriverConfig::new(move |_d, init| {
            let mm = Machine::current().unwrap();
            // Leak two blocks tagged 'Leak' and one 'Buf '.
            for (tag, size) in [(b"Leak", 16), (b"Leak", 32), (b"Buf ", 8)] {
                k.lock()
                    .unwrap()
                    .push(mm.pool().allocate(tag, size).unwrap());
            }
            Device::create(init, ObjectAttributes::new())?;
            Ok(())
        }),
    );
    let node = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\LEAK", "leaker"))
        .unwrap();
    node.remove().unwrap(); // last device gone → driver unloads → leak check
    let v = m.verifier().violations_of(Rule::PoolLeak);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].driver, "leaker");
    assert!(
        v[0].message.contains("tag 'Leak': 2 block(s), 48 bytes"),
        "{}",
        v[0]
    );
    assert!(
        v[0].message.contains("tag 'Buf ': 1 block(s), 8 bytes"),
        "{}",
        v[0]
    );
}

#[test]
fn driver_unload_runs_evt_driver_unload_and_deletes_driver_object() {
    let m = Machine::new();
    let log: Log = Arc::default();
    let l = Arc::clone(&log);
    let d = Driver::load(
        &m,
        "plain",
        DriverConfig::default().on_unload(move |_| l.lock().unwrap().push("unload".into())),
    )
    .unwrap();
    assert_eq!(d.object().name(), "WDFDRIVER plain#0");
    assert_eq!(Driver::loaded(&m, "plain"), Some(d.clone()));
    d.unload().unwrap();
    assert_eq!(*log.lock().unwrap(), ["unload"]);
    assert!(d.object().is_deleted());
    assert!(Driver::loaded(&m, "plain").is_none());
    assert_eq!(d.unload(), Err(Status::INVALID_DEVICE_STATE));
    assert_eq!(
        m.trace().callbacks_for("plain"),
        ["DriverEntry", "EvtDriverUnload"]
    );
}

#[test]
fn driver_parameters_survive_a_reboot() {
    let store = RegistryStore::new();
    {
        let m = Machine::new();
        m.use_registry(&store);
        let d = Driver::load(&m, "persist", DriverConfig::default()).unwrap();
        d.open_parameters_key()
            .unwrap()
            .set_value("Boots", 1u32)
            .unwrap();
    }
    let m2 = Machine::new();
    m2.use_registry(&store);
    let d = Driver::load(&m2, "persist", DriverConfig::default()).unwrap();
    assert_eq!(d.open_parameters_key().unwrap().query_dword("Boots"), Ok(1));
}

/// A device add that creates the device, two child objects and an interface.
fn busy_driver() -> DriverConfig {
    DriverConfig::new(|_d, init| {
        let dev = Device::create(init, ObjectAttributes::new().context(String::from("ctx")))?;
        let m = Machine::current().unwrap();
        let _mem = WdfObject::create(
            &m,
            "WDFMEMORY",
            ObjectAttributes::new().parent(dev.object()),
        )?;
        let _tmr = WdfObject::create(&m, "WDFTIMER", ObjectAttributes::new().parent(dev.object()))?;
        Ok(())
    })
}

#[test]
fn fault_sweep_over_device_creation() {
    let m = Machine::builder().verifier(VerifierMode::Record).build();
    driver::install(&m, "busy", busy_driver());
    let mut outcomes = Vec::new();
    let runs = m.faults().sweep(FaultPoint::ObjectCreation, |n| {
        let r = m.pnp().plug_in(StackSpec::new("ROOT\\BUSY", "busy"));
        let node = m.pnp().nodes().pop().unwrap();
        match r {
            Ok(node) => {
                node.remove().unwrap();
                outcomes.push((n, Status::SUCCESS));
            }
            Err(s) => {
                assert_eq!(s, Status::INSUFFICIENT_RESOURCES, "run {n}");
                assert_eq!(node.state(), NodeState::Failed);
                outcomes.push((n, s));
            }
        }
        // Nothing leaks: every object destroyed and the driver unloaded.
        assert!(
            live_objects(&m).is_empty(),
            "run {n}: {:?}",
            live_objects(&m)
        );
        assert!(Driver::loaded(&m, "busy").is_none(), "run {n}");
    });
    // WDFDRIVER, WDFDEVICE, WDFMEMORY, WDFTIMER each failed once, then a clean run.
    assert_eq!(runs, 5);
    assert_eq!(outcomes.iter().filter(|(_, s)| s.is_success()).count(), 1);
    assert!(
        m.verifier().violations().is_empty(),
        "{:?}",
        m.verifier().violations()
    );
}

#[test]
fn device_init_extension_reaches_the_device() {
    #[derive(Default, Debug, PartialEq)]
    struct QueueConfig {
        default_queue: bool,
    }
    let m = Machine::new();
    driver::install(
        &m,
        "ext",
        DriverConfig::new(|_d, init| {
            init.extension_mut::<QueueConfig>().default_queue = true;
            let dev = Device::create(init, ObjectAttributes::new())?;
            assert!(dev.get_extension::<QueueConfig>().unwrap().default_queue);
            assert_eq!(*dev.extension(|| 5u32), 5);
            Ok(())
        }),
    );
    let node = m.pnp().plug_in(StackSpec::new("ROOT\\EXT", "ext")).unwrap();
    let dev = node.function_device().unwrap();
    assert!(dev.get_extension::<QueueConfig>().unwrap().default_queue);
    assert_eq!(*dev.extension(|| 9u32), 5);
}

/// An object disposed by its parent's deletion may still be deleted by its driver, once (KMDF's
/// `FxObject::DeleteObject` in the disposed state); a second delete is the violation.
#[test]
fn a_child_disposed_by_its_parent_may_be_deleted_once_more() {
    let m = Machine::builder().verifier(VerifierMode::Record).build();
    let _d = DriverScope::enter("dmf");
    let parent = WdfObject::create(&m, "WDFOBJECT", ObjectAttributes::new()).unwrap();
    let child =
        WdfObject::create(&m, "WDFMEMORY", ObjectAttributes::new().parent(&parent)).unwrap();
    child.reference();
    parent.delete().unwrap();
    assert_eq!(child.state(), ObjectState::Deleted);
    assert_eq!(child.delete(), Ok(()));
    assert!(m.verifier().violations().is_empty());
    assert_eq!(child.delete(), Err(Status::INVALID_DEVICE_STATE));
    assert_eq!(m.verifier().violations_of(Rule::DeletedObjectUsed).len(), 1);
    child.dereference();
    assert_eq!(child.state(), ObjectState::Destroyed);
}
