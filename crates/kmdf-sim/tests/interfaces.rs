//! Device interfaces and interface-change notifications (kmdf-sequences §7.4).

use std::sync::{Arc, Mutex};

use kmdf_sim::device::Device;
use kmdf_sim::driver::{self, DriverConfig};
use kmdf_sim::guid::Guid;
use kmdf_sim::interface::{self, InterfaceEvent};
use kmdf_sim::object::ObjectAttributes;
use kmdf_sim::pnp::StackSpec;
use kmdf_sim::{Irql, Machine};

const CLASS: Guid = Guid::new(
    0x573E_8C73,
    0x0CB4,
    0x4471,
    [0xA1, 0xBF, 0xFA, 0xB2, 0x6C, 0x31, 0xD3, 0x84],
);
const OTHER: Guid = Guid::new(1, 2, 3, [4; 8]);

fn machine() -> Machine {
    let m = Machine::new();
    driver::install(
        &m,
        "fx2",
        DriverConfig::new(|_d, init| {
            let dev = Device::create(init, ObjectAttributes::new())?;
            dev.create_interface(CLASS, None)?;
            dev.create_interface(CLASS, Some("aux"))?;
            dev.create_interface(OTHER, None)?;
            Ok(())
        }),
    );
    m
}

type Log = Arc<Mutex<Vec<(InterfaceEvent, String)>>>;

fn register(m: &Machine, existing: bool) -> (interface::NotificationEntry, Log) {
    let log: Log = Arc::default();
    let l = Arc::clone(&log);
    let e = interface::register_notification(m, CLASS, existing, move |c| {
        assert_eq!(kmdf_sim::exec::current_irql(), Irql::Passive);
        assert_eq!(c.class, CLASS);
        l.lock().unwrap().push((c.event, c.symbolic_link.clone()));
    })
    .unwrap();
    (e, log)
}

#[test]
fn interfaces_enabled_at_start_unique_links_and_lookup() {
    let m = machine();
    let a = m
        .pnp()
        .plug_in(StackSpec::new("USB\\VID_0547&PID_1002", "fx2"))
        .unwrap();
    let b = m
        .pnp()
        .plug_in(StackSpec::new("USB\\VID_0547&PID_1002", "fx2"))
        .unwrap();
    let links = interface::interfaces_of_class(&m, CLASS);
    assert_eq!(links.len(), 4);
    let a_link = format!("\\??\\USB#VID_0547&PID_1002#0000#{CLASS}");
    assert!(links.contains(&a_link), "{links:?}");
    assert!(links.contains(&format!("{a_link}\\aux")));
    let info = interface::find_interface(&m, &a_link.to_lowercase()).unwrap();
    assert_eq!(info.device, a.function_device().unwrap());
    assert_eq!(info.reference, None);
    b.remove().unwrap();
    assert_eq!(interface::interfaces_of_class(&m, CLASS).len(), 2);
    a.surprise_remove().unwrap();
    assert!(interface::interfaces_of_class(&m, CLASS).is_empty());
    assert!(interface::find_interface(&m, &a_link).is_none());
}

#[test]
fn interfaces_arrival_removal_with_include_existing_and_unregister() {
    let m = machine();
    let a = m.pnp().plug_in(StackSpec::new("ROOT\\A", "fx2")).unwrap();
    let (entry, log) = register(&m, true);
    let a_link = format!("\\??\\ROOT#A#0000#{CLASS}");
    // Existing interfaces reported once each.
    assert_eq!(
        *log.lock().unwrap(),
        [
            (InterfaceEvent::Arrival, a_link.clone()),
            (InterfaceEvent::Arrival, format!("{a_link}\\aux")),
        ]
    );
    log.lock().unwrap().clear();
    let b = m.pnp().plug_in(StackSpec::new("ROOT\\B", "fx2")).unwrap();
    let b_link = format!("\\??\\ROOT#B#0000#{CLASS}");
    assert_eq!(
        *log.lock().unwrap(),
        [
            (InterfaceEvent::Arrival, b_link.clone()),
            (InterfaceEvent::Arrival, format!("{b_link}\\aux")),
        ]
    );
    log.lock().unwrap().clear();
    // The driver can disable one interface; removal disables the rest.
    let bdev = b.function_device().unwrap();
    bdev.set_interface_state(CLASS, Some("aux"), false).unwrap();
    b.surprise_remove().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            (InterfaceEvent::Removal, format!("{b_link}\\aux")),
            (InterfaceEvent::Removal, b_link.clone()),
        ]
    );
    log.lock().unwrap().clear();
    entry.unregister();
    a.remove().unwrap();
    assert!(
        log.lock().unwrap().is_empty(),
        "no callback after unregister"
    );
    // The notification callback was traced (no driver registered it: a test).
    assert!(m
        .trace()
        .callbacks_for("<no driver>")
        .contains(&"ArrivalNotification".to_owned()));
}

#[test]
fn interfaces_without_include_existing_see_only_new_ones() {
    let m = machine();
    let _a = m.pnp().plug_in(StackSpec::new("ROOT\\A", "fx2")).unwrap();
    let (entry, log) = register(&m, false);
    assert!(log.lock().unwrap().is_empty());
    let _b = m.pnp().plug_in(StackSpec::new("ROOT\\B", "fx2")).unwrap();
    assert_eq!(log.lock().unwrap().len(), 2);
    entry.unregister();
}

#[test]
fn interfaces_unregister_from_inside_the_callback() {
    let m = machine();
    let slot: Arc<Mutex<Option<interface::NotificationEntry>>> = Arc::default();
    let count = Arc::new(Mutex::new(0));
    let (s, c) = (Arc::clone(&slot), Arc::clone(&count));
    let entry = interface::register_notification(&m, CLASS, false, move |_| {
        *c.lock().unwrap() += 1;
        if let Some(e) = s.lock().unwrap().take() {
            e.unregister();
        }
    })
    .unwrap();
    *slot.lock().unwrap() = Some(entry);
    let _a = m.pnp().plug_in(StackSpec::new("ROOT\\A", "fx2")).unwrap();
    assert_eq!(*count.lock().unwrap(), 1);
}
