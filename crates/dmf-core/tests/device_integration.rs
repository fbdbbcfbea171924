//! The client-driver API on a simulated machine (CLI-11…CLI-33, DSP-10, DSP-53, Top 25 #4, #5,
//! #17, #25): drivers written with `dmf_core::device` are installed, started, sent I/O from
//! applications, power-cycled and removed by kmdf-sim; every test ends with the verifier clean, no
//! pool left and no WDF object left.
#![cfg(feature = "sim")]
#![allow(clippy::too_many_lines, clippy::needless_pass_by_value)]

use std::sync::{Arc, Mutex};

use dmf_core::device::{container_driver_config, DmfDeviceInit};
use dmf_core::module::{Dispatched, Handled, IoRequest, ModuleCallbacks, PowerDeviceState};
use dmf_core::platform::contract::device::{DeviceAttributes, Guid, PlatformDevice};
use dmf_core::platform::contract::io::{PlatformFileObject, PlatformRequest, QueueDispatch};
use dmf_core::platform::{
    simulator, Device, DriverConfig, FileObject, PnpPowerCallbacks, QueueConfig, Request, Resources,
};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};
use kmdf_sim::io::{Access, AppConfig, Application};
use kmdf_sim::pnp::{NodeState, StackSpec, SystemPowerState};
use kmdf_sim::{Machine, Status};

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

const GUID_TEST: Guid = Guid::new(
    0x7C1A_55E2,
    0x19D4,
    0x4E0F,
    [0x8B, 0x2C, 0x61, 0x0D, 0x9E, 0x33, 0xA4, 0x70],
);

use dmf_core::platform::simulator::sim_guid;

/// The IOCTL the test Module answers (its input doubled into the output).
const IOCTL_DOUBLE: u32 = 0x0022_2000;
/// The IOCTL nobody handles.
const IOCTL_UNKNOWN: u32 = 0x0022_2004;
/// The IOCTL only the client handles.
const IOCTL_CLIENT: u32 = 0x0022_2008;

/// The test Module's config: a name and a log.
#[derive(Clone)]
struct EchoConfig {
    name: &'static str,
    log: Log,
    /// Refuse file creates from non-administrators (`STATUS_ACCESS_DENIED`).
    admin_only: bool,
}

/// A Module that records its PnP callbacks, answers `IOCTL_DOUBLE` and can guard creates.
#[dmf_module(crate = ::dmf_core, config = EchoConfig, context = u32, open = PrepareHardware, lock = Dispatch)]
struct Echo;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Echo {
    fn open(m: &Dispatched<'_, Self>) -> NtResult<()> {
        push(&m.config().log, format!("{}.open", m.config().name));
        Ok(())
    }
    fn close(m: &Dispatched<'_, Self>) {
        push(&m.config().log, format!("{}.close", m.config().name));
    }
    fn destroy(m: &Dispatched<'_, Self>) {
        push(&m.config().log, format!("{}.destroy", m.config().name));
    }
    fn prepare_hardware(m: &Dispatched<'_, Self>, r: &Resources) -> NtResult<()> {
        assert!(
            m.device().is_some(),
            "MOD-74: the Module reaches its device"
        );
        push(
            &m.config().log,
            format!("{}.prepare_hardware({})", m.config().name, r.items.len()),
        );
        Ok(())
    }
    fn d0_entry(m: &Dispatched<'_, Self>, previous: PowerDeviceState) -> NtResult<()> {
        push(
            &m.config().log,
            format!("{}.d0_entry({previous:?})", m.config().name),
        );
        Ok(())
    }
    fn d0_exit(m: &Dispatched<'_, Self>, target: PowerDeviceState) -> NtResult<()> {
        push(
            &m.config().log,
            format!("{}.d0_exit({target:?})", m.config().name),
        );
        Ok(())
    }
    fn device_io_control(m: &Dispatched<'_, Self>, io: &mut IoRequest<'_>) -> Handled {
        if io.ioctl_code() != IOCTL_DOUBLE {
            return Handled::NotHandled;
        }
        *m.lock() += 1;
        let Some(request) = io.take() else {
            return Handled::NotHandled;
        };
        let input = request.with_input_buffer(1, <[u8]>::to_vec);
        match input {
            Ok(input) => {
                let written = request.with_output_buffer(input.len(), |out| {
                    for (o, i) in out.iter_mut().zip(&input) {
                        *o = i.wrapping_mul(2);
                    }
                    input.len()
                });
                match written {
                    Ok(n) => request.complete_with_information(NtStatus::SUCCESS, n),
                    Err(status) => request.complete(status),
                }
            }
            Err(status) => request.complete(status),
        }
        Handled::Handled
    }
    fn file_create(m: &Dispatched<'_, Self>, io: &mut IoRequest<'_>, file: &FileObject) -> Handled {
        if !m.config().admin_only {
            return Handled::NotHandled;
        }
        if !file.is_administrator() {
            return io.complete(NtStatus::ACCESS_DENIED);
        }
        // MOD-71: let the create continue — passed down in a filter, completed otherwise.
        let Some(request) = io.take() else {
            return Handled::NotHandled;
        };
        let completed = m.request_complete_or_forward(request, NtStatus::SUCCESS);
        push(
            &m.config().log,
            format!("{}.create_completed({completed})", m.config().name),
        );
        Handled::Handled
    }
}

impl Echo {
    /// How many IOCTLs it answered (a Method: rundown-guarded).
    fn answered(&self) -> NtResult<u32> {
        let m = self.enter()?;
        let count = *m.lock();
        Ok(count)
    }
}

fn echo(name: &'static str, log: &Log) -> EchoConfig {
    EchoConfig {
        name,
        log: Arc::clone(log),
        admin_only: false,
    }
}

fn app(machine: &Machine, administrator: bool) -> Application {
    Application::new(
        machine,
        AppConfig {
            administrator,
            name: if administrator { "admin" } else { "user" }.to_owned(),
        },
    )
}

fn assert_clean(machine: &Machine) {
    machine.settle();
    assert_eq!(machine.crash(), None);
    assert!(
        machine.verifier().violations().is_empty(),
        "{:?}",
        machine.verifier().violations()
    );
    assert!(
        machine.pool().outstanding().is_empty(),
        "{:?}",
        machine.pool().outstanding()
    );
    assert!(
        kmdf_sim::object::live_objects(machine).is_empty(),
        "{:?}",
        kmdf_sim::object::live_objects(machine)
    );
}

/// CLI-30…CLI-33, CLI-20, CLI-22, Top 25 #4, #17: a container driver (no device context, no queue of
/// its own): DMF creates the default queue, the Module answers its IOCTL, an unknown IOCTL is
/// `STATUS_NOT_SUPPORTED`, the interface opens (create succeeds with no handler), the Modules
/// follow start, a system sleep/resume and removal, and are destroyed at device cleanup.
#[test]
fn container_driver_start_io_power_cycle_and_removal() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let log = Log::default();
    let l = Arc::clone(&log);
    simulator::install_driver(
        &machine,
        "container",
        container_driver_config(
            move |device: &Device, modules| {
                device.create_interface(GUID_TEST, None)?;
                modules.add(Echo::with(EchoConfig {
                    admin_only: true,
                    ..echo("E", &l)
                }));
                Ok(())
            },
            false,
        ),
    );
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\CONTAINER", "container").resource("memory 0xF000+0x100"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    assert_eq!(
        take(&log),
        ["E.prepare_hardware(1)", "E.open", "E.d0_entry(D3Final)"]
    );

    let handle = app(&machine, true)
        .open_interface(sim_guid(GUID_TEST), Access::READ_WRITE)
        .expect("the Module completes the create with success in a function driver (MOD-71)");
    assert_eq!(take(&log), ["E.create_completed(true)"]);
    let (out, info) = handle
        .device_io_control(IOCTL_DOUBLE, &[1, 2, 3], 3)
        .unwrap();
    assert_eq!((out, info), (vec![2, 4, 6], 3));
    assert_eq!(
        handle.device_io_control(IOCTL_UNKNOWN, &[], 0).unwrap_err(),
        Status::NOT_SUPPORTED,
        "unhandled in a function driver (CLI-22)"
    );
    assert_eq!(
        handle.device_io_control(IOCTL_DOUBLE, &[], 4).unwrap_err(),
        Status::BUFFER_TOO_SMALL
    );
    assert_eq!(
        handle.read(4).unwrap_err(),
        Status::NOT_SUPPORTED,
        "reads nobody handles"
    );

    machine.pnp().system_sleep(SystemPowerState::S3).unwrap();
    machine.pnp().system_resume().unwrap();
    assert_eq!(take(&log), ["E.d0_exit(D3)", "E.d0_entry(D3)"]);
    handle.close();
    node.remove().unwrap();
    machine.settle();
    assert_eq!(
        take(&log),
        ["E.d0_exit(D3Final)", "E.close", "E.destroy"],
        "closed at ReleaseHardware, destroyed at device cleanup"
    );
    assert_clean(&machine);
}

/// CLI-15, CLI-19, CLI-27, DSP-01…DSP-04, Top 25 #2, #12, #25: a driver with its own DeviceAdd, device context, PnP
/// callbacks and default queue: the Modules run before the client on the way up and after it on
/// the way down; the Module takes its IOCTL first, the client gets what no Module took, and the
/// client's handle on its Module works (CLI-42).
#[test]
fn client_callbacks_run_after_modules_up_and_before_them_down() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let log = Log::default();
    let handles: Arc<Mutex<Option<Echo>>> = Arc::default();
    let (l, h) = (Arc::clone(&log), Arc::clone(&handles));
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            let mut pnp = PnpPowerCallbacks::default();
            let c = Arc::clone(&l);
            pnp.d0_entry = Some(Arc::new(move |d: &Device, p| {
                assert_eq!(d.context::<u64>().as_deref(), Some(&7), "CLI-02 context");
                push(&c, format!("client.d0_entry({p:?})"));
                Ok(())
            }));
            let c = Arc::clone(&l);
            pnp.d0_exit = Some(Arc::new(move |_d: &Device, t| {
                push(&c, format!("client.d0_exit({t:?})"));
                Ok(())
            }));
            dmf.hook_pnp_power_callbacks(Some(pnp));
            dmf.hook_power_policy_callbacks(None);
            dmf.hook_file_object_config(None);
            let (c, hh) = (Arc::clone(&l), Arc::clone(&h));
            let token: Arc<Mutex<Option<_>>> = Arc::default();
            let t = Arc::clone(&token);
            dmf.set_modules_add(move |device, modules| {
                device.create_interface(GUID_TEST, None)?;
                *t.lock().unwrap() = Some(modules.add(Echo::with(echo("E", &c))));
                Ok(())
            })?;
            let device = dmf.create_device(DeviceAttributes {
                context: Some(Arc::new(7_u64)),
                cleanup: None,
            })?;
            let mut queue = QueueConfig::new_default(QueueDispatch::Parallel);
            let c = Arc::clone(&l);
            queue.device_control = Some(Arc::new(move |_q, r: Request, _out, _in, code: u32| {
                push(&c, format!("client.ioctl({code:#x})"));
                if code == IOCTL_CLIENT {
                    r.complete_with_information(NtStatus::SUCCESS, 0);
                } else {
                    r.complete(NtStatus::INVALID_DEVICE_REQUEST);
                }
            }));
            let hooked = dmf.hook_queue_config(queue)?;
            device.create_queue(hooked)?;
            let dmf_device = dmf.modules_create()?;
            let token = token.lock().unwrap().take().unwrap();
            *hh.lock().unwrap() = Some(dmf_device.get(token)?);
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(&machine, "client", config);
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\CLIENT", "client"))
        .unwrap();
    assert_eq!(
        take(&log),
        [
            "E.prepare_hardware(0)",
            "E.open",
            "E.d0_entry(D3Final)",
            "client.d0_entry(D3Final)"
        ]
    );
    let handle = app(&machine, true)
        .open_interface(sim_guid(GUID_TEST), Access::READ_WRITE)
        .unwrap();
    assert_eq!(
        handle.device_io_control(IOCTL_DOUBLE, &[5], 1).unwrap(),
        (vec![10], 1)
    );
    assert_eq!(handle.device_io_control(IOCTL_CLIENT, &[], 0).unwrap().1, 0);
    assert_eq!(
        handle.device_io_control(IOCTL_UNKNOWN, &[], 0).unwrap_err(),
        Status::INVALID_DEVICE_REQUEST,
        "the client's callback, not the NOT_SUPPORTED rule, gets what no Module took"
    );
    assert_eq!(
        take(&log),
        [
            format!("client.ioctl({IOCTL_CLIENT:#x})"),
            format!("client.ioctl({IOCTL_UNKNOWN:#x})")
        ],
        "the client never sees the Module's IOCTL (first taker wins, DSP-10)"
    );
    let module = handles.lock().unwrap().clone().unwrap();
    assert_eq!(module.answered(), Ok(1));
    handle.close();
    node.remove().unwrap();
    machine.settle();
    assert_eq!(
        take(&log),
        [
            "client.d0_exit(D3Final)",
            "E.d0_exit(D3Final)",
            "E.close",
            "E.destroy"
        ]
    );
    assert_eq!(
        module.answered(),
        Err(NtStatus::INVALID_DEVICE_STATE),
        "invariant 4: Methods fail once the Module is closed"
    );
    drop(module);
    drop(handles);
    assert_clean(&machine);
}

/// A function driver below the filter: completes every IOCTL with its code's low byte as the
/// information, and every read with `STATUS_END_OF_FILE`-like `STATUS_NO_MORE_ENTRIES`.
fn lower_driver() -> DriverConfig {
    DriverConfig {
        device_add: Arc::new(|_driver, init| {
            use dmf_core::platform::contract::device::PlatformDeviceInit;
            let device = init.create_device()?;
            let mut queue = QueueConfig::new_default(QueueDispatch::Parallel);
            queue.device_control = Some(Arc::new(|_q, r: Request, _o, _i, code: u32| {
                r.complete_with_information(NtStatus::SUCCESS, (code & 0xFF) as usize);
            }));
            queue.read = Some(Arc::new(|_q, r: Request, _l| {
                r.complete(NtStatus::NO_MORE_ENTRIES);
            }));
            device.create_queue(queue)?;
            device.create_interface(GUID_TEST, None)?;
            Ok(())
        }),
        unload: None,
    }
}

/// CLI-21, CLI-22, MOD-69, Top 25 #4, #5: an upper filter (`set_filter`): what the Module takes
/// never reaches the lower driver; everything else — IOCTLs, reads, creates — passes down
/// untouched; a Module can refuse creates (IoctlHandler-style administrator check).
#[test]
fn filter_passes_down_what_no_module_takes() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let log = Log::default();
    let l = Arc::clone(&log);
    simulator::install_driver(&machine, "lower", lower_driver());
    simulator::install_driver(
        &machine,
        "upper",
        container_driver_config(
            move |_device: &Device, modules| {
                modules.add(Echo::with(EchoConfig {
                    admin_only: true,
                    ..echo("F", &l)
                }));
                Ok(())
            },
            true,
        ),
    );
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\FILTERED", "lower").upper_filter("upper"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    take(&log);
    assert_eq!(
        app(&machine, false)
            .open_interface(sim_guid(GUID_TEST), Access::READ_WRITE)
            .err(),
        Some(Status::ACCESS_DENIED),
        "the Module took the create and refused it"
    );
    let handle = app(&machine, true)
        .open_interface(sim_guid(GUID_TEST), Access::READ_WRITE)
        .expect("an administrator's create passes down");
    assert_eq!(
        take(&log),
        ["F.create_completed(false)"],
        "MOD-71 forwards in a filter"
    );
    assert_eq!(
        handle.device_io_control(IOCTL_DOUBLE, &[7], 1).unwrap(),
        (vec![14], 1),
        "taken by the filter's Module"
    );
    assert_eq!(
        handle.device_io_control(IOCTL_UNKNOWN, &[], 0).unwrap().1,
        0x04,
        "passed down to the lower driver (CLI-22)"
    );
    assert_eq!(handle.read(8).unwrap_err(), Status::NO_MORE_ENTRIES);
    handle.close();
    node.remove().unwrap();
    machine.settle();
    assert_clean(&machine);
}

/// CLI-25, Top 25 #13: a failing Modules-add callback fails the device add and leaves nothing
/// behind; a client D0Entry failure after the Modules came up takes them back down.
#[test]
fn failures_in_device_add_and_client_d0_entry_unwind() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let log = Log::default();
    let l = Arc::clone(&log);
    simulator::install_driver(
        &machine,
        "refuser",
        container_driver_config(
            move |_device: &Device, modules| {
                modules.add(Echo::with(echo("R", &l)));
                Err(NtStatus::INSUFFICIENT_RESOURCES)
            },
            false,
        ),
    );
    let result = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\REFUSER", "refuser"));
    assert!(result.is_err() || result.as_ref().unwrap().state() != NodeState::Started);
    assert!(take(&log).is_empty(), "no Module was created");

    let l = Arc::clone(&log);
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            let pnp = PnpPowerCallbacks {
                d0_entry: Some(Arc::new(|_d: &Device, _p| {
                    Err(NtStatus::DEVICE_NOT_CONNECTED)
                })),
                ..PnpPowerCallbacks::default()
            };
            dmf.hook_pnp_power_callbacks(Some(pnp));
            let c = Arc::clone(&l);
            dmf.set_modules_add(move |_device, modules| {
                modules.add(Echo::with(echo("D", &c)));
                Ok(())
            })?;
            dmf.create_device(DeviceAttributes::default())?;
            dmf.modules_create().map(|_| ())
        }),
        unload: None,
    };
    simulator::install_driver(&machine, "failing-d0", config);
    let result = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\FAILD0", "failing-d0"));
    assert!(result.is_err() || result.as_ref().unwrap().state() != NodeState::Started);
    machine.settle();
    let seen = take(&log);
    assert_eq!(
        &seen[..4],
        [
            "D.prepare_hardware(0)",
            "D.open",
            "D.d0_entry(D3Final)",
            "D.d0_exit(D3Final)"
        ],
        "the Modules are taken back down after the client's D0Entry failed: {seen:?}"
    );
    assert!(seen.contains(&"D.close".to_owned()));
    assert_eq!(seen.last().map(String::as_str), Some("D.destroy"));
    if let Ok(node) = result {
        let _ = node.remove();
    }
    assert_clean(&machine);
}

/// CLI-21, Top 25 #25: `WdfFdoInitSetFilter` called on the init directly (without
/// `DmfDeviceInit::set_filter`, in either order) still makes DMF follow the filter rules: an
/// unhandled IOCTL passes down.
#[test]
fn filter_flag_set_directly_on_the_init_counts() {
    use dmf_core::platform::contract::device::PlatformDeviceInit;
    let machine = Machine::new();
    let _bound = machine.enter();
    simulator::install_driver(&machine, "lower", lower_driver());
    for before in [true, false] {
        let name = if before {
            "upper-before"
        } else {
            "upper-after"
        };
        let config = DriverConfig {
            device_add: Arc::new(move |_driver, init| {
                if before {
                    init.set_filter();
                }
                let mut dmf = DmfDeviceInit::new(init);
                if !before {
                    dmf.device_init().set_filter();
                }
                dmf.create_device(DeviceAttributes::default())?;
                dmf.modules_create().map(|_| ())
            }),
            unload: None,
        };
        simulator::install_driver(&machine, name, config);
        let node = machine
            .pnp()
            .plug_in(StackSpec::new(&format!("ROOT\\{name}"), "lower").upper_filter(name))
            .unwrap();
        let handle = app(&machine, true)
            .open_interface(sim_guid(GUID_TEST), Access::READ_WRITE)
            .unwrap();
        assert_eq!(
            handle.device_io_control(IOCTL_UNKNOWN, &[], 0).unwrap().1,
            0x04,
            "{name}: passed down to the lower driver"
        );
        handle.close();
        node.remove().unwrap();
    }
    assert_clean(&machine);
}

/// A Module for a control device: OPEN_Create (a control device has no PnP), answers
/// `IOCTL_DOUBLE`, and reaches the filter's own device (CLI-56).
#[dmf_module(crate = ::dmf_core, config = EchoConfig, context = (), open = Create, lock = Dispatch)]
struct ControlEcho;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for ControlEcho {
    fn open(m: &Dispatched<'_, Self>) -> NtResult<()> {
        let on_filter = m.filter_device().is_some_and(|d| !d.is_control());
        push(
            &m.config().log,
            format!("{}.open(filter device: {on_filter})", m.config().name),
        );
        Ok(())
    }
    fn destroy(m: &Dispatched<'_, Self>) {
        push(&m.config().log, format!("{}.destroy", m.config().name));
    }
    fn device_io_control(_m: &Dispatched<'_, Self>, io: &mut IoRequest<'_>) -> Handled {
        if io.ioctl_code() != IOCTL_DOUBLE {
            return Handled::NotHandled;
        }
        io.complete_with_information(NtStatus::SUCCESS, 0)
    }
}

/// CLI-50…CLI-56, UM-07: a filter driver creates a control device with its own Modules; an
/// application opens it by its symbolic link, the Module answers its IOCTL, an unknown IOCTL is
/// `STATUS_NOT_SUPPORTED` (a control device is not a filter), and deleting the control device
/// destroys its Modules.
#[test]
fn filter_with_a_control_device_and_its_modules() {
    use dmf_core::platform::contract::device::{PlatformDeviceInit, PlatformDriver};
    let machine = Machine::new();
    let _bound = machine.enter();
    let log = Log::default();
    let control: Arc<Mutex<Option<Device>>> = Arc::default();
    simulator::install_driver(&machine, "lower", lower_driver());
    let (l, slot) = (Arc::clone(&log), Arc::clone(&control));
    let config = DriverConfig {
        device_add: Arc::new(move |driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            dmf.set_filter();
            let fdo = dmf.create_device(DeviceAttributes::default())?;
            dmf.modules_create()?;

            let mut control_init = driver.control_device_init(false);
            let mut ctl = DmfDeviceInit::new(&mut control_init);
            ctl.device_init().assign_name("\\Device\\DmfControl");
            ctl.set_client_driver_device(fdo);
            let c = Arc::clone(&l);
            ctl.set_modules_add(move |_device, modules| {
                modules.add(ControlEcho::with(echo("C", &c)));
                Ok(())
            })?;
            let device = ctl.create_device(DeviceAttributes::default())?;
            assert!(device.is_control());
            device.create_symbolic_link("\\DosDevices\\DmfControl")?;
            ctl.modules_create()?;
            device.finish_initializing();
            *slot.lock().unwrap() = Some(device);
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(&machine, "with-control", config);
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\CTLFILTER", "lower").upper_filter("with-control"))
        .unwrap();
    assert_eq!(take(&log), ["C.open(filter device: true)"]);
    let handle = app(&machine, false)
        .open("\\DosDevices\\DmfControl", Access::READ_WRITE)
        .expect("the control device opens by its link");
    assert_eq!(
        handle.device_io_control(IOCTL_DOUBLE, &[], 0).unwrap().1,
        0,
        "the control device's Module"
    );
    assert_eq!(
        handle.device_io_control(IOCTL_UNKNOWN, &[], 0).unwrap_err(),
        Status::NOT_SUPPORTED
    );
    handle.close();
    let device = control.lock().unwrap().take().unwrap();
    device.delete().unwrap();
    machine.settle();
    assert_eq!(
        take(&log),
        ["C.destroy"],
        "deleting it destroys its Modules"
    );
    assert_eq!(device.delete(), Err(NtStatus::INVALID_DEVICE_STATE));
    drop(device);
    node.remove().unwrap();
    assert_clean(&machine);
}
