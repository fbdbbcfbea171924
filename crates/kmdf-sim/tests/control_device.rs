//! Control devices (non-PnP WDFDEVICEs): creation, naming, symbolic links, security, I/O,
//! deletion with open handles and deletion at driver unload ("Using Control Device Objects").

use std::sync::{Arc, Mutex};

use kmdf_sim::control::DeviceSecurity;
use kmdf_sim::device::{Device, DeviceInit};
use kmdf_sim::driver::{self, Driver, DriverConfig};
use kmdf_sim::exec::DriverScope;
use kmdf_sim::io::{
    self, Access, AppConfig, Application, DispatchType, FileConfig, OpenParams, Queue, QueueConfig,
    Request, RequestorMode,
};
use kmdf_sim::object::{live_objects, ObjectAttributes};
use kmdf_sim::pnp::StackSpec;
use kmdf_sim::{Machine, Rule, Status, VerifierMode};

const fn ctl(function: u32) -> u32 {
    (0x22 << 16) | (function << 2)
}
const IOCTL_ECHO: u32 = ctl(0x900);
const IOCTL_PARK: u32 = ctl(0x901);
const IOCTL_QUEUE: u32 = ctl(0x902);

const NAME: &str = "\\Device\\SimCtl";
const LINK: &str = "\\DosDevices\\SimCtl";

type Log = Arc<Mutex<Vec<String>>>;
type Held = Arc<Mutex<Vec<Request>>>;
type Slot = Arc<Mutex<Option<Device>>>;

fn log(l: &Log, s: impl Into<String>) {
    l.lock().unwrap().push(s.into());
}

fn entries(l: &Log) -> Vec<String> {
    l.lock().unwrap().clone()
}

fn app(m: &Machine, administrator: bool) -> Application {
    Application::new(
        m,
        AppConfig {
            administrator,
            name: if administrator {
                "admin.exe"
            } else {
                "user.exe"
            }
            .into(),
        },
    )
}

/// What the test's control driver does when it creates its control device.
#[derive(Clone)]
struct Setup {
    security: DeviceSecurity,
    finish: bool,
    log: Log,
    held: Held,
    slot: Slot,
}

impl Setup {
    fn new(security: DeviceSecurity, finish: bool) -> Self {
        Setup {
            security,
            finish,
            log: Arc::default(),
            held: Arc::default(),
            slot: Arc::default(),
        }
    }

    fn device(&self) -> Device {
        self.slot.lock().unwrap().clone().unwrap()
    }
}

/// `DriverEntry` of a control-device-only driver: WdfControlDeviceInitAllocate, name, file
/// callbacks, WdfDeviceCreate, a parallel default queue, a manual queue, the symbolic link and
/// (optionally) WdfControlFinishInitializing.
fn create_control(driver: &Driver, s: &Setup) -> Result<Device, Status> {
    let mut init = DeviceInit::control(driver, s.security);
    init.assign_name(NAME);
    let (l1, l2, l3) = (s.log.clone(), s.log.clone(), s.log.clone());
    io::set_file_object_config(
        &mut init,
        FileConfig::new()
            .on_create(move |_dev, req, file| {
                log(&l1, format!("create admin={}", file.is_administrator()));
                req.complete(Status::SUCCESS);
            })
            .on_cleanup(move |_f| log(&l2, "cleanup"))
            .on_close(move |_f| log(&l3, "close")),
    );
    let l4 = s.log.clone();
    let dev = Device::create(
        &mut init,
        ObjectAttributes::new()
            .context(7_u32)
            .on_cleanup(move |_o| log(&l4, "device cleanup")),
    )?;
    // A manual queue, asked to be power-managed: a control device's queues never are.
    let manual = Queue::create(
        &dev,
        QueueConfig::new(DispatchType::Manual).power_managed(true),
        ObjectAttributes::new(),
    )?;
    let held = s.held.clone();
    let l5 = s.log.clone();
    Queue::create(
        &dev,
        QueueConfig::new_default(DispatchType::Parallel).on_device_control(
            move |_q, req, out, _inl, code| {
                log(&l5, format!("ioctl {code:#x}"));
                match code {
                    IOCTL_ECHO => {
                        let data = req.input_buffer(1).unwrap_or_default();
                        let n = data.len().min(out);
                        match req.with_output_buffer(n, |b| b[..n].copy_from_slice(&data[..n])) {
                            Ok(()) => req.complete_with_information(Status::SUCCESS, n),
                            Err(st) => req.complete(st),
                        }
                    }
                    IOCTL_PARK => held.lock().unwrap().push(req),
                    IOCTL_QUEUE => {
                        if let Err((req, st)) = req.forward_to_queue(&manual) {
                            req.complete(st);
                        }
                    }
                    _ => req.complete(Status::INVALID_DEVICE_REQUEST),
                }
            },
        ),
        ObjectAttributes::new(),
    )?;
    dev.create_symbolic_link(LINK)?;
    if s.finish {
        dev.finish_initializing();
    }
    *s.slot.lock().unwrap() = Some(dev.clone());
    Ok(dev)
}

/// Loads a driver that has no `EvtDriverDeviceAdd`: its `DriverEntry` creates the control device.
fn load_control_driver(m: &Machine, name: &str, s: &Setup) -> Driver {
    let s2 = s.clone();
    let l = s.log.clone();
    Driver::load(
        m,
        name,
        DriverConfig::default()
            .on_entry(move |d| create_control(d, &s2).map(|_| ()))
            .on_unload(move |_d| log(&l, "EvtDriverUnload")),
    )
    .unwrap()
}

fn assert_clean(m: &Machine) {
    m.settle();
    assert!(
        m.verifier().violations().is_empty(),
        "{:?}",
        m.verifier().violations()
    );
    assert!(live_objects(m).is_empty(), "{:?}", live_objects(m));
    assert!(m.pool().outstanding().is_empty());
}

#[test]
fn control_device_is_named_linked_and_refuses_opens_until_finish_initializing() {
    let m = Machine::new();
    let s = Setup::new(DeviceSecurity::Everyone, false);
    let driver = load_control_driver(&m, "ctl", &s);
    let dev = s.device();

    assert!(dev.is_control());
    assert_eq!(dev.device_name(), Some(NAME));
    assert_eq!(dev.symbolic_link().as_deref(), Some(LINK));
    assert_eq!(dev.security(), Some(DeviceSecurity::Everyone));
    assert!(dev.node().is_none() && dev.lower().is_none());
    assert!(dev.is_in_d0());
    assert_eq!(driver.control_devices(), vec![dev.clone()]);
    assert_eq!(driver.device_count(), 1);
    // Queues of a control device are never power-managed, even when asked.
    assert!(dev.queues().iter().all(|q| !q.is_power_managed()));
    assert_eq!(dev.queues().len(), 2);
    // No device interfaces on a control device; one symbolic link only.
    let guid = kmdf_sim::guid::Guid::new(1, 2, 3, [4; 8]);
    assert_eq!(
        dev.create_interface(guid, None),
        Err(Status::INVALID_DEVICE_REQUEST)
    );
    assert_eq!(
        dev.create_symbolic_link("\\DosDevices\\Other"),
        Err(Status::INVALID_DEVICE_REQUEST)
    );

    // WdfControlFinishInitializing not called yet: the I/O manager sends nothing.
    assert!(dev.is_initializing());
    let a = app(&m, true);
    assert_eq!(
        a.open(LINK, Access::READ_WRITE).unwrap_err(),
        Status::NO_SUCH_DEVICE
    );
    assert!(entries(&s.log).is_empty());
    assert_eq!(
        a.open("\\DosDevices\\Nope", Access::READ_WRITE)
            .unwrap_err(),
        Status::OBJECT_NAME_NOT_FOUND
    );

    dev.finish_initializing();
    assert!(!dev.is_initializing());
    // Link names compare case-insensitively, as object names do.
    let h = a.open("\\dosdevices\\simctl", Access::READ_WRITE).unwrap();
    assert_eq!(dev.open_handle_count(), 1);
    h.close();
    m.settle();
    assert_eq!(dev.open_handle_count(), 0);
    assert_eq!(entries(&s.log), ["create admin=true", "cleanup", "close"]);

    drop(dev);
    driver.unload().unwrap();
    assert_clean(&m);
}

#[test]
fn control_device_name_collisions_and_unnamed_devices() {
    let m = Machine::new();
    let s = Setup::new(DeviceSecurity::Everyone, true);
    let driver = load_control_driver(&m, "ctl", &s);
    let scope = DriverScope::enter("ctl");
    // Same device name again: refused.
    let mut again = DeviceInit::control(&driver, DeviceSecurity::Everyone);
    again.assign_name(NAME);
    assert_eq!(
        Device::create(&mut again, ObjectAttributes::new()).unwrap_err(),
        Status::OBJECT_NAME_COLLISION
    );
    // An unnamed control device gets a generated name and may not have a symbolic link.
    let mut unnamed = DeviceInit::control(&driver, DeviceSecurity::Everyone);
    let dev2 = Device::create(&mut unnamed, ObjectAttributes::new()).unwrap();
    assert!(dev2.device_name().unwrap().starts_with("\\Device\\"));
    assert_eq!(
        dev2.create_symbolic_link("\\DosDevices\\Unnamed"),
        Err(Status::INVALID_DEVICE_STATE)
    );
    // A second named device cannot take the first one's link.
    let mut other = DeviceInit::control(&driver, DeviceSecurity::Everyone);
    other.assign_name("\\Device\\SimCtl2");
    let dev3 = Device::create(&mut other, ObjectAttributes::new()).unwrap();
    assert_eq!(
        dev3.create_symbolic_link(&LINK.to_uppercase()),
        Err(Status::OBJECT_NAME_COLLISION)
    );
    assert_eq!(driver.control_devices().len(), 3);
    drop(scope);
    // The driver deletes one; the framework deletes the others at unload.
    dev2.object().delete().unwrap();
    assert_eq!(driver.device_count(), 2);
    driver.unload().unwrap();
    assert_eq!(driver.device_count(), 0);
    assert!(driver.control_devices().is_empty());
    assert_clean(&m);
}

#[test]
fn control_device_admin_only_refuses_non_administrators_everyone_admits_all() {
    let m = Machine::new();
    let admin_only = Setup::new(DeviceSecurity::AdministratorsOnly, true);
    let d1 = load_control_driver(&m, "ctl", &admin_only);

    let user = app(&m, false);
    let admin = app(&m, true);
    assert_eq!(
        user.open(LINK, Access::READ_WRITE).unwrap_err(),
        Status::ACCESS_DENIED
    );
    // Refused by the descriptor: the driver never saw a create.
    assert!(entries(&admin_only.log).is_empty());
    let h = admin.open(LINK, Access::READ_WRITE).unwrap();
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, b"adm", 8).unwrap(),
        (b"adm".to_vec(), 3)
    );
    // Kernel-mode opens (a remote I/O target of another driver) are not subject to the SDDL.
    let s2 = Setup::new(DeviceSecurity::Everyone, true);
    let d2 = Driver::load(
        &m,
        "peer",
        DriverConfig::default().on_entry(move |d| {
            let mut init = DeviceInit::control(d, DeviceSecurity::Everyone);
            init.assign_name("\\Device\\Peer");
            let dev = Device::create(&mut init, ObjectAttributes::new())?;
            dev.finish_initializing();
            *s2.slot.lock().unwrap() = Some(dev);
            Ok(())
        }),
    )
    .unwrap();
    let peer = {
        let _scope = DriverScope::enter("peer");
        let dev = d2.control_devices()[0].clone();
        let t = io::IoTarget::create(&dev, ObjectAttributes::new()).unwrap();
        t.open(OpenParams::by_name(LINK, Access::READ_WRITE))
            .unwrap();
        assert_eq!(
            t.file_object().unwrap().requestor_mode(),
            RequestorMode::Kernel
        );
        assert_eq!(
            t.send_ioctl_synchronously(IOCTL_ECHO, b"k", 4, None)
                .unwrap(),
            (b"k".to_vec(), 1)
        );
        t.close();
        t
    };
    drop(peer);
    h.close();
    m.settle();
    d2.unload().unwrap();
    d1.unload().unwrap();
    assert_eq!(
        entries(&admin_only.log)
            .iter()
            .filter(|e| e.starts_with("create"))
            .count(),
        2
    );

    // SDDL_DEVOBJ_…_WORLD_RW: everyone gets in.
    let everyone = Setup::new(DeviceSecurity::Everyone, true);
    let d3 = load_control_driver(&m, "ctl", &everyone);
    let hu = user.open(LINK, Access::READ_WRITE).unwrap();
    let ha = admin.open(LINK, Access::READ).unwrap();
    assert!(!hu.file_object().is_administrator());
    hu.close();
    ha.close();
    m.settle();
    assert_eq!(
        entries(&everyone.log),
        [
            "create admin=false",
            "create admin=true",
            "cleanup",
            "close",
            "cleanup",
            "close"
        ]
    );
    d3.unload().unwrap();
    assert_clean(&m);
}

#[test]
fn control_device_ioctl_round_trip_file_callbacks_and_no_lower_device() {
    let m = Machine::new();
    let s = Setup::new(DeviceSecurity::Everyone, true);
    let driver = load_control_driver(&m, "ctl", &s);
    let h = app(&m, false).open(LINK, Access::READ_WRITE).unwrap();
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, b"ping", 16).unwrap(),
        (b"ping".to_vec(), 4)
    );
    assert_eq!(
        h.device_io_control(ctl(0x9FF), b"", 0).unwrap_err(),
        Status::INVALID_DEVICE_REQUEST
    );
    // The default queue has no EvtIoRead: the framework fails reads.
    assert_eq!(h.read(4).unwrap_err(), Status::INVALID_DEVICE_REQUEST);
    // A request forwarded to the manual queue waits there until the driver retrieves it.
    let dev = s.device();
    let pending = h.device_io_control_overlapped(IOCTL_QUEUE, b"", 0).unwrap();
    m.settle();
    assert!(!pending.is_complete());
    let manual = dev.queues()[0].clone();
    manual
        .retrieve_next_request()
        .unwrap()
        .complete(Status::SUCCESS);
    assert_eq!(pending.wait(None).unwrap().unwrap().1, 0);
    h.close();
    m.settle();
    assert_eq!(
        entries(&s.log),
        [
            "create admin=false",
            format!("ioctl {IOCTL_ECHO:#x}").as_str(),
            format!("ioctl {:#x}", ctl(0x9FF)).as_str(),
            format!("ioctl {IOCTL_QUEUE:#x}").as_str(),
            "cleanup",
            "close"
        ]
    );
    let callbacks = m.trace().callbacks_for("ctl");
    for cb in [
        "EvtDeviceFileCreate",
        "EvtIoDeviceControl",
        "EvtFileCleanup",
        "EvtFileClose",
    ] {
        assert!(
            callbacks.iter().any(|c| c == cb),
            "{cb} missing: {callbacks:?}"
        );
    }
    // The local I/O target of a control device has nothing below it.
    {
        let _scope = DriverScope::enter("ctl");
        let target = dev.io_target();
        assert!(target.target_device().is_none());
        assert_eq!(
            target
                .send_ioctl_synchronously(IOCTL_ECHO, b"x", 1, None)
                .unwrap_err(),
            Status::INVALID_DEVICE_REQUEST
        );
    }
    drop((dev, manual));
    driver.unload().unwrap();
    assert_clean(&m);
}

#[test]
fn control_device_deleted_with_an_open_handle() {
    let m = Machine::new();
    let s = Setup::new(DeviceSecurity::Everyone, true);
    let driver = load_control_driver(&m, "ctl", &s);
    let h = app(&m, false).open(LINK, Access::READ_WRITE).unwrap();
    // A request waiting in the manual queue (framework-owned) is cancelled at deletion.
    let queued = h.device_io_control_overlapped(IOCTL_QUEUE, b"", 0).unwrap();
    m.settle();
    assert!(!queued.is_complete());

    // WdfObjectDelete on the control device.
    let dev = s.device();
    dev.object().delete().unwrap();
    m.settle();
    assert_eq!(queued.wait(None).unwrap().unwrap_err(), Status::CANCELLED);
    assert!(entries(&s.log).contains(&"device cleanup".to_owned()));
    assert!(driver.control_devices().is_empty());
    assert_eq!(driver.device_count(), 0);
    // The link is gone: new opens fail; the old handle's I/O fails without reaching the driver.
    assert_eq!(
        app(&m, false).open(LINK, Access::READ_WRITE).unwrap_err(),
        Status::OBJECT_NAME_NOT_FOUND
    );
    assert!(dev.symbolic_link().is_none());
    let before = entries(&s.log).len();
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, b"x", 1).unwrap_err(),
        Status::DEVICE_REMOVED
    );
    assert_eq!(entries(&s.log).len(), before);
    // The handle keeps the WDFDEVICE from being destroyed; its context is still readable.
    assert!(live_objects(&m).iter().any(|(n, _)| n == dev.name()));
    assert_eq!(dev.context::<u32>().as_deref(), Some(&7));
    // Closing the handle still runs EvtFileCleanup and EvtFileClose.
    h.close();
    m.settle();
    assert_eq!(&entries(&s.log)[before..], ["cleanup", "close"]);
    drop(dev);
    // A control-only driver stays loaded after deleting its device: it is stopped, not removed.
    assert!(!driver.is_unloaded());
    driver.unload().unwrap();
    assert_eq!(entries(&s.log).last().unwrap(), "EvtDriverUnload");
    assert_clean(&m);
}

#[test]
fn control_device_pending_request_at_deletion_is_a_verifier_violation() {
    let m = Machine::builder().verifier(VerifierMode::Record).build();
    let s = Setup::new(DeviceSecurity::Everyone, true);
    let driver = load_control_driver(&m, "ctl", &s);
    let h = app(&m, false).open(LINK, Access::READ_WRITE).unwrap();
    // The driver parks the request in its own context and never completes it.
    let parked = h.device_io_control_overlapped(IOCTL_PARK, b"", 0).unwrap();
    m.settle();
    assert_eq!(s.held.lock().unwrap().len(), 1);
    s.device().object().delete().unwrap();
    m.settle();
    let v = m.verifier().violations();
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].rule, Rule::RequestPendingAtTeardown);
    assert_eq!(v[0].driver, "ctl");
    // The framework completed it so that the application is not left hanging.
    assert_eq!(parked.wait(None).unwrap().unwrap_err(), Status::CANCELLED);
    s.held.lock().unwrap().clear();
    h.close();
    m.settle();
    driver.unload().unwrap();
    m.settle();
    assert!(live_objects(&m).is_empty(), "{:?}", live_objects(&m));
}

#[test]
fn control_device_is_deleted_after_evt_driver_unload() {
    let m = Machine::new();
    let s = Setup::new(DeviceSecurity::AdministratorsOnly, true);
    let driver = load_control_driver(&m, "ctl", &s);
    let h = app(&m, true).open(LINK, Access::READ_WRITE).unwrap();
    // An open handle keeps the driver from unloading (Windows keeps the unload pending).
    assert_eq!(driver.unload(), Err(Status::INVALID_DEVICE_STATE));
    assert!(!driver.is_unloaded());
    h.close();
    m.settle();
    driver.unload().unwrap();
    assert!(driver.is_unloaded());
    assert!(Driver::loaded(&m, "ctl").is_none());
    // EvtDriverUnload first, then the framework deletes the control device.
    let log = entries(&s.log);
    let unload = log.iter().position(|e| e == "EvtDriverUnload").unwrap();
    let cleanup = log.iter().position(|e| e == "device cleanup").unwrap();
    assert!(unload < cleanup, "{log:?}");
    assert_eq!(
        app(&m, true).open(LINK, Access::READ_WRITE).unwrap_err(),
        Status::OBJECT_NAME_NOT_FOUND
    );
    s.slot.lock().unwrap().take();
    assert_clean(&m);
}

#[test]
fn control_device_of_a_pnp_driver_keeps_it_loaded_until_deleted() {
    let m = Machine::new();
    let s = Setup::new(DeviceSecurity::Everyone, true);
    let s2 = s.clone();
    let l = s.log.clone();
    // A filter-style PnP driver with a side-door control device created in DriverEntry.
    driver::install(
        &m,
        "pnpctl",
        DriverConfig::new(|_d, init| {
            Device::create(init, ObjectAttributes::new())?;
            Ok(())
        })
        .on_entry(move |d| create_control(d, &s2).map(|_| ()))
        .on_unload(move |_d| log(&l, "EvtDriverUnload")),
    );
    let node = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\PNPCTL", "pnpctl"))
        .unwrap();
    let driver = Driver::loaded(&m, "pnpctl").unwrap();
    assert_eq!(driver.device_count(), 2);
    let h = app(&m, false).open(LINK, Access::READ_WRITE).unwrap();
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, b"pnp", 3).unwrap(),
        (b"pnp".to_vec(), 3)
    );
    h.close();

    // The PnP device goes; the control device keeps the driver loaded.
    node.surprise_remove().unwrap();
    m.settle();
    assert!(!driver.is_unloaded());
    assert_eq!(driver.device_count(), 1);
    let h2 = app(&m, false).open(LINK, Access::READ_WRITE).unwrap();
    h2.close();
    m.settle();
    // Deleting the last control device unloads the PnP driver.
    let dev = s.slot.lock().unwrap().take().unwrap();
    dev.object().delete().unwrap();
    drop(dev);
    m.settle();
    assert!(driver.is_unloaded());
    assert!(entries(&s.log).contains(&"EvtDriverUnload".to_owned()));
    assert_clean(&m);
}

#[test]
fn pnp_callbacks_on_a_control_init_are_ignored() {
    let m = Machine::new();
    let called: Log = Arc::default();
    let c2 = called.clone();
    let driver = Driver::load(
        &m,
        "quiet",
        DriverConfig::default().on_entry(move |d| {
            let mut init = DeviceInit::control(d, DeviceSecurity::Everyone);
            assert!(init.is_control());
            init.assign_name("\\Device\\Quiet");
            let (a, b) = (c2.clone(), c2.clone());
            init.pnp.d0_entry = Some(Arc::new(move |_d, _p| {
                log(&a, "D0Entry");
                Status::SUCCESS
            }));
            init.pnp.self_managed_io_cleanup = Some(Arc::new(move |_d| log(&b, "SmIoCleanup")));
            init.set_filter();
            init.set_power_policy_ownership(true);
            let dev = Device::create(&mut init, ObjectAttributes::new())?;
            assert!(!dev.is_filter() && !dev.is_power_policy_owner());
            assert!(init.created_device().is_some());
            dev.finish_initializing();
            Ok(())
        }),
    )
    .unwrap();
    let dev = driver.control_devices()[0].clone();
    dev.object().delete().unwrap();
    drop(dev);
    driver.unload().unwrap();
    assert!(entries(&called).is_empty());
    assert_clean(&m);
}

#[test]
fn failed_driver_entry_deletes_its_control_device() {
    let m = Machine::new();
    let s = Setup::new(DeviceSecurity::Everyone, true);
    let s2 = s.clone();
    let r = Driver::load(
        &m,
        "broken",
        DriverConfig::default().on_entry(move |d| {
            create_control(d, &s2)?;
            Err(Status::INSUFFICIENT_RESOURCES)
        }),
    );
    assert_eq!(r.unwrap_err(), Status::INSUFFICIENT_RESOURCES);
    assert!(entries(&s.log).contains(&"device cleanup".to_owned()));
    assert_eq!(
        app(&m, true).open(LINK, Access::READ_WRITE).unwrap_err(),
        Status::OBJECT_NAME_NOT_FOUND
    );
    s.slot.lock().unwrap().take();
    assert_clean(&m);
}

#[test]
fn pnp_driver_deletes_its_control_device_from_the_last_device_cleanup() {
    // The ControlDeviceDeleted rule: delete the control device from the cleanup callback of
    // the PnP WDFDEVICE; the driver then unloads with its last device.
    let m = Machine::new();
    let s = Setup::new(DeviceSecurity::Everyone, true);
    let (s2, s3) = (s.clone(), s.clone());
    driver::install(
        &m,
        "pnpctl",
        DriverConfig::new(move |_d, init| {
            let slot = s3.slot.clone();
            Device::create(
                init,
                ObjectAttributes::new().on_cleanup(move |_o| {
                    if let Some(ctl) = slot.lock().unwrap().take() {
                        ctl.object().delete().unwrap();
                    }
                }),
            )?;
            Ok(())
        })
        .on_entry(move |d| create_control(d, &s2).map(|_| ())),
    );
    let node = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\PNPCTL", "pnpctl"))
        .unwrap();
    let driver = Driver::loaded(&m, "pnpctl").unwrap();
    let h = app(&m, false).open(LINK, Access::READ_WRITE).unwrap();
    h.close();
    node.surprise_remove().unwrap();
    m.settle();
    assert!(driver.is_unloaded());
    assert!(entries(&s.log).contains(&"device cleanup".to_owned()));
    assert_clean(&m);
}

#[test]
fn symbolic_link_of_a_pnp_device_reaches_its_stack_until_removal() {
    let m = Machine::new();
    let seen: Log = Arc::default();
    let s2 = seen.clone();
    driver::install(
        &m,
        "named",
        DriverConfig::new(move |_d, init| {
            init.assign_name("\\Device\\NamedFdo");
            let l = s2.clone();
            io::set_file_object_config(
                init,
                FileConfig::new().on_create(move |dev, req, _f| {
                    log(&l, format!("create on control={}", dev.is_control()));
                    req.complete(Status::SUCCESS);
                }),
            );
            let dev = Device::create(init, ObjectAttributes::new())?;
            assert!(!dev.is_control() && !dev.is_initializing());
            dev.create_symbolic_link("\\DosDevices\\NamedFdo")
        }),
    );
    let node = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\NAMED", "named"))
        .unwrap();
    let h = app(&m, false)
        .open("\\DosDevices\\NamedFdo", Access::READ)
        .unwrap();
    h.close();
    assert_eq!(entries(&seen), ["create on control=false"]);
    node.surprise_remove().unwrap();
    m.settle();
    assert_eq!(
        app(&m, false)
            .open("\\DosDevices\\NamedFdo", Access::READ)
            .unwrap_err(),
        Status::OBJECT_NAME_NOT_FOUND
    );
    assert_clean(&m);
}
