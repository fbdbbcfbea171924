//! IoctlHandler on kmdf-sim (MODS-IoctlHandler, dmf-upstream §5.4), modelled on C DMF's
//! Tests_IoctlHandler: drivers with an IoctlHandler are installed, devices plugged, and
//! applications (administrators and not) open the interface and send IOCTLs. Every buffer size
//! from 0 to past the minimums, every access mode for both kinds of caller, unknown codes in a
//! function driver and in a filter over a lower driver, a dynamic IoctlHandler routed by its
//! owner, exclusive open, manual mode, pending handlers, and a property test: arbitrary codes and
//! sizes, every request completed exactly once. Every test ends with the verifier clean, no pool
//! and no WDF object left.
#![cfg(feature = "sim")]
#![allow(clippy::too_many_lines, clippy::needless_pass_by_value)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dmf_core::device::{container_driver_config, DmfDeviceInit};
use dmf_core::module::{
    Dispatched, DynamicModule, Handled, IoRequest, ModuleCallbacks, ModuleHandle,
};
use dmf_core::platform::contract::device::{DeviceAttributes, Guid, PlatformDevice};
use dmf_core::platform::contract::io::{
    PlatformFileObject, PlatformRequest, QueueDispatch, RequestType,
};
use dmf_core::platform::{
    simulator, Device, DriverConfig, FileObject, FileObjectConfig, QueueConfig, Request,
};
use dmf_core::NtStatus;
use dmf_macros::{dmf_callbacks, dmf_module};
use dmf_modules::ioctl_handler::{
    IoctlAccessMode, IoctlCall, IoctlEntry, IoctlHandler, IoctlHandlerConfig, IoctlResult,
    IoctlTable,
};
use kmdf_sim::io::{Access, AppConfig, Application, Handle};
use kmdf_sim::pnp::{DeviceNode, NodeState, StackSpec};
use kmdf_sim::{Machine, Status};
use proptest::prelude::*;

const GUID: Guid = Guid::new(
    0x5D2A_1C40,
    0x7B3E,
    0x4F19,
    [0x9A, 0x61, 0x0C, 0x2D, 0x8E, 0x47, 0xB5, 0x13],
);

/// Input ≥ 4, output ≥ 2: answers the input's byte sum in two bytes.
const IOCTL_SUM: u32 = 0x0022_2000;
/// No minimums: answers the input and output lengths it saw.
const IOCTL_ANY: u32 = 0x0022_2004;
/// IOCTL_ANY's handler on a `METHOD_OUT_DIRECT` code: the output is the caller's own memory.
const IOCTL_ANY_DIRECT: u32 = IOCTL_ANY | 2;
/// Administrator-only in `AdministratorOnlyPerIoctl` mode.
const IOCTL_ADMIN: u32 = 0x0022_2008;
/// Pended by its handler.
const IOCTL_PEND: u32 = 0x0022_200C;
/// Not in any table.
const IOCTL_UNKNOWN: u32 = 0x0022_2100;

use dmf_core::platform::simulator::sim_guid;

fn st(status: NtStatus) -> Status {
    Status(status.to_raw())
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

fn open(machine: &Machine, administrator: bool) -> Result<Handle, Status> {
    app(machine, administrator).open_interface(sim_guid(GUID), Access::READ_WRITE)
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

/// What the handlers saw: (code, input length, output length) per call.
type Calls = Arc<Mutex<Vec<(u32, usize, usize)>>>;

/// IOCTL_ANY's handler: records the call; with room for two bytes, answers the input and output
/// lengths it saw, written into the request's own output buffer.
fn any_handler(calls: Calls) -> impl Fn(&mut IoctlCall<'_>) -> IoctlResult + Send + Sync + 'static {
    move |call| {
        let (i, o) = (call.input_length(), call.output_length());
        assert_eq!(call.with_input(<[u8]>::len), Ok(i));
        calls.lock().unwrap().push((call.code(), i, o));
        if o >= 2 {
            call.with_output(|out| {
                assert_eq!(out.len(), o, "the request's own buffer");
                out[0] = u8::try_from(i).unwrap_or(u8::MAX);
                out[1] = u8::try_from(o).unwrap_or(u8::MAX);
            })
            .unwrap();
            IoctlResult::success(2)
        } else {
            IoctlResult::success(0)
        }
    }
}

/// The standard table: SUM, ANY (buffered and direct), ADMIN (administrator-only), each
/// recording its calls.
fn table(calls: &Calls) -> IoctlTable {
    let (c1, c2, c3) = (Arc::clone(calls), Arc::clone(calls), Arc::clone(calls));
    IoctlTable::new([
        IoctlEntry::new(IOCTL_SUM, 4, 2, move |call| {
            c1.lock()
                .unwrap()
                .push((call.code(), call.input_length(), call.output_length()));
            assert!(call.input_length() >= 4 && call.output_length() >= 2);
            let sum: u16 = call
                .with_input(|input| input.iter().map(|b| u16::from(*b)).sum())
                .unwrap();
            call.with_output(|out| out[..2].copy_from_slice(&sum.to_le_bytes()))
                .unwrap();
            IoctlResult::success(2)
        })
        .unwrap(),
        IoctlEntry::new(IOCTL_ANY, 0, 0, any_handler(c2)).unwrap(),
        IoctlEntry::new(IOCTL_ANY_DIRECT, 0, 0, any_handler(Arc::clone(calls))).unwrap(),
        IoctlEntry::new(IOCTL_ADMIN, 0, 1, move |call| {
            c3.lock().unwrap().push((call.code(), 0, 0));
            call.with_output(|out| out[0] = 0xAD).unwrap();
            IoctlResult::success(1)
        })
        .unwrap()
        .administrator_only(),
    ])
    .unwrap()
}

/// A container function driver with one IoctlHandler that creates the interface.
fn install_function_driver(machine: &Machine, name: &str, config: IoctlHandlerConfig) {
    simulator::install_driver(
        machine,
        name,
        container_driver_config(
            move |_device: &Device, modules| {
                modules.add(IoctlHandler::with(config.clone()));
                Ok(())
            },
            false,
        ),
    );
}

fn plug(machine: &Machine, id: &str, driver: &str) -> DeviceNode {
    let node = machine
        .pnp()
        .plug_in(StackSpec::new(id, driver))
        .expect("plug in");
    assert_eq!(node.state(), NodeState::Started);
    node
}

fn config(calls: &Calls, access_mode: IoctlAccessMode) -> IoctlHandlerConfig {
    IoctlHandlerConfig {
        table: table(calls),
        access_mode,
        device_interface: Some(GUID),
        ..IoctlHandlerConfig::default()
    }
}

/// Tests_IoctlHandler's buffer checks: every input size 0…6 and output size 0…4 against
/// minimums 4/2, and 0/0: a buffer shorter than its minimum is `STATUS_BUFFER_TOO_SMALL` and
/// never reaches the handler; a minimum of 0 passes an empty buffer.
#[test]
fn every_buffer_size_from_zero_past_the_minimum() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    install_function_driver(&machine, "sizes", config(&calls, IoctlAccessMode::Default));
    let node = plug(&machine, "ROOT\\SIZES", "sizes");
    let handle = open(&machine, false).unwrap();
    for input_length in 0..=6usize {
        for output_length in 0..=4usize {
            let input: Vec<u8> = (1..=u8::try_from(input_length).unwrap()).collect();
            let before = calls.lock().unwrap().len();
            let result = handle.device_io_control(IOCTL_SUM, &input, output_length);
            if input_length < 4 || output_length < 2 {
                assert_eq!(
                    result,
                    Err(Status::BUFFER_TOO_SMALL),
                    "in {input_length} out {output_length}"
                );
                assert_eq!(calls.lock().unwrap().len(), before, "handler not called");
            } else {
                let sum: u16 = input.iter().map(|b| u16::from(*b)).sum();
                assert_eq!(result, Ok((sum.to_le_bytes().to_vec(), 2)));
                assert_eq!(
                    calls.lock().unwrap().last(),
                    Some(&(IOCTL_SUM, input_length, output_length)),
                    "the handler sees the full buffers"
                );
            }
            let result = handle.device_io_control(IOCTL_ANY, &input, output_length);
            let (i, o) = (
                u8::try_from(input_length).unwrap(),
                u8::try_from(output_length).unwrap(),
            );
            if output_length >= 2 {
                assert_eq!(result, Ok((vec![i, o], 2)));
            } else {
                assert_eq!(result, Ok((vec![], 0)));
            }
            assert_eq!(
                calls.lock().unwrap().last(),
                Some(&(IOCTL_ANY, input_length, output_length)),
                "minimum 0: the handler runs for every size, empty buffers included"
            );
        }
    }
    let sum_calls = calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.0 == IOCTL_SUM)
        .count();
    assert_eq!(sum_calls, 3 * 3, "inputs 4..=6 × outputs 2..=4");
    handle.close();
    node.remove().unwrap();
    assert_clean(&machine);
}

/// Every access mode with an administrator and a non-administrator caller: who may open, and
/// who may send the administrator-only IOCTL.
#[test]
fn access_modes_for_administrators_and_users() {
    struct Case {
        mode: IoctlAccessMode,
        user_opens: Result<(), Status>,
        user_admin_ioctl: Status,
    }
    let cases = [
        Case {
            mode: IoctlAccessMode::Default,
            user_opens: Ok(()),
            user_admin_ioctl: Status::SUCCESS,
        },
        Case {
            mode: IoctlAccessMode::AdministratorOnly,
            user_opens: Err(Status::ACCESS_DENIED),
            user_admin_ioctl: Status::SUCCESS,
        },
        Case {
            mode: IoctlAccessMode::AdministratorOnlyPerIoctl,
            user_opens: Ok(()),
            user_admin_ioctl: Status::ACCESS_DENIED,
        },
        Case {
            // The client refuses non-administrators with a status of its own.
            mode: IoctlAccessMode::ClientCallback(Arc::new(|file, request| {
                assert_eq!(
                    request.file_object().map(|f| f.id()),
                    Some(file.id()),
                    "the create request of this file"
                );
                if file.is_administrator() {
                    Ok(())
                } else {
                    Err(NtStatus::PRIVILEGE_NOT_HELD)
                }
            })),
            user_opens: Err(st(NtStatus::PRIVILEGE_NOT_HELD)),
            user_admin_ioctl: Status::SUCCESS,
        },
    ];
    for case in cases {
        let label = format!("{:?}", case.mode);
        let machine = Machine::new();
        let _bound = machine.enter();
        let calls = Calls::default();
        install_function_driver(&machine, "access", config(&calls, case.mode));
        let node = plug(&machine, "ROOT\\ACCESS", "access");

        let admin = open(&machine, true).unwrap_or_else(|s| panic!("{label}: admin open {s:?}"));
        assert_eq!(
            admin.device_io_control(IOCTL_ADMIN, &[], 1),
            Ok((vec![0xAD], 1)),
            "{label}: administrators may send everything"
        );
        assert_eq!(
            admin.device_io_control(IOCTL_SUM, &[1, 1, 1, 1], 2),
            Ok((vec![4, 0], 2)),
            "{label}"
        );
        let user = open(&machine, false);
        assert_eq!(
            user.as_ref().map(|_| ()).map_err(|s| *s),
            case.user_opens,
            "{label}: non-administrator open"
        );
        if let Ok(user) = user {
            let before = calls.lock().unwrap().len();
            let result = user.device_io_control(IOCTL_ADMIN, &[], 1);
            if case.user_admin_ioctl == Status::SUCCESS {
                assert_eq!(result, Ok((vec![0xAD], 1)), "{label}");
            } else {
                assert_eq!(result, Err(case.user_admin_ioctl), "{label}");
                assert_eq!(
                    calls.lock().unwrap().len(),
                    before,
                    "{label}: no handler call"
                );
            }
            assert_eq!(
                user.device_io_control(IOCTL_SUM, &[2, 2, 2, 2], 2),
                Ok((vec![8, 0], 2)),
                "{label}: the other IOCTLs stay open to everyone"
            );
            user.close();
        }
        admin.close();
        node.remove().unwrap();
        assert_clean(&machine);
    }
}

/// CLI-22 in a function driver: a code not in the table is not handled, so DMF completes it with
/// `STATUS_NOT_SUPPORTED`; reads are not the Module's either. `kernel_mode_requests_only`
/// refuses an application's table IOCTL.
#[test]
fn unknown_codes_in_a_function_driver_are_not_supported() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    install_function_driver(
        &machine,
        "function",
        config(&calls, IoctlAccessMode::Default),
    );
    install_function_driver(
        &machine,
        "kernel-only",
        IoctlHandlerConfig {
            kernel_mode_requests_only: true,
            device_interface: Some(Guid::new(1, 2, 3, [4; 8])),
            ..config(&calls, IoctlAccessMode::Default)
        },
    );
    let node = plug(&machine, "ROOT\\FUNCTION", "function");
    let kernel_only = plug(&machine, "ROOT\\KERNELONLY", "kernel-only");
    let handle = open(&machine, true).unwrap();
    assert_eq!(
        handle.device_io_control(IOCTL_UNKNOWN, &[1], 4),
        Err(Status::NOT_SUPPORTED)
    );
    assert_eq!(handle.read(4), Err(Status::NOT_SUPPORTED));
    assert!(calls.lock().unwrap().is_empty());
    let other = app(&machine, true)
        .open_interface(sim_guid(Guid::new(1, 2, 3, [4; 8])), Access::READ_WRITE)
        .unwrap();
    assert_eq!(
        other.device_io_control(IOCTL_ANY, &[], 0),
        Err(Status::ACCESS_DENIED),
        "KernelModeRequestsOnly refuses user-mode senders"
    );
    assert!(calls.lock().unwrap().is_empty());
    other.close();
    handle.close();
    kernel_only.remove().unwrap();
    node.remove().unwrap();
    assert_clean(&machine);
}

/// `KernelModeOnly`: the table answers internal IOCTLs from another driver (sent through a
/// remote I/O target), while an application's device-control requests are not handled.
#[test]
fn kernel_mode_only_answers_internal_ioctls_from_drivers() {
    use dmf_core::platform::contract::device::PlatformDeviceInit;
    use dmf_core::platform::contract::io::{PlatformIoTarget, TargetOpenParams};
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    install_function_driver(
        &machine,
        "server",
        config(&calls, IoctlAccessMode::KernelModeOnly),
    );
    let client: Arc<Mutex<Option<Device>>> = Arc::default();
    let c = Arc::clone(&client);
    simulator::install_driver(
        &machine,
        "client",
        DriverConfig {
            device_add: Arc::new(move |_driver, init| {
                *c.lock().unwrap() = Some(init.create_device()?);
                Ok(())
            }),
            unload: None,
        },
    );
    let server = plug(&machine, "ROOT\\SERVER", "server");
    let client_node = plug(&machine, "ROOT\\CLIENT", "client");
    let handle = open(&machine, true).unwrap();
    assert_eq!(
        handle.device_io_control(IOCTL_SUM, &[1, 2, 3, 4], 2),
        Err(Status::NOT_SUPPORTED),
        "device control is not the table's in KernelModeOnly"
    );
    assert!(calls.lock().unwrap().is_empty());
    let device = client.lock().unwrap().clone().unwrap();
    let link = kmdf_sim::interface::interfaces_of_class(&machine, sim_guid(GUID))
        .into_iter()
        .next()
        .unwrap();
    let target = device.create_io_target().unwrap();
    target.open(TargetOpenParams::by_name(&link)).unwrap();
    assert_eq!(
        target.send_ioctl_synchronously(IOCTL_SUM, &[1, 2, 3, 4], 2, true, None),
        Ok((vec![10, 0], 2)),
        "an internal IOCTL from a driver"
    );
    assert_eq!(
        target.send_ioctl_synchronously(IOCTL_SUM, &[1], 2, true, None),
        Err(NtStatus::BUFFER_TOO_SMALL)
    );
    assert_eq!(calls.lock().unwrap().len(), 1);
    target.close();
    drop(target);
    drop(device);
    client.lock().unwrap().take();
    handle.close();
    client_node.remove().unwrap();
    server.remove().unwrap();
    assert_clean(&machine);
}

/// The lower driver: completes every IOCTL with its code's low byte as the information and
/// creates the interface; counts what reaches it.
fn lower_driver(reached: Arc<AtomicUsize>) -> DriverConfig {
    lower_driver_refusing_users(reached, false)
}

/// [`lower_driver`], refusing a non-administrator's create with `STATUS_ACCESS_DENIED` when
/// `refuse_users` (the lower driver of the exclusive-hold tests).
fn lower_driver_refusing_users(reached: Arc<AtomicUsize>, refuse_users: bool) -> DriverConfig {
    DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            use dmf_core::platform::contract::device::PlatformDeviceInit;
            if refuse_users {
                init.set_file_object_config(FileObjectConfig {
                    create: Some(Arc::new(|_d: &Device, request: Request, file| {
                        request.complete(if file.is_administrator() {
                            NtStatus::SUCCESS
                        } else {
                            NtStatus::ACCESS_DENIED
                        });
                    })),
                    ..FileObjectConfig::default()
                });
            }
            let device = init.create_device()?;
            let mut queue = QueueConfig::new_default(QueueDispatch::Parallel);
            let r = Arc::clone(&reached);
            queue.device_control = Some(Arc::new(move |_q, req: Request, _o, _i, code: u32| {
                r.fetch_add(1, Ordering::SeqCst);
                req.complete_with_information(NtStatus::SUCCESS, (code & 0xFF) as usize);
            }));
            device.create_queue(queue)?;
            device.create_interface(GUID, None)?;
            Ok(())
        }),
        unload: None,
    }
}

/// A filter over a lower driver (SwitchBar4's shape): the table's IOCTLs never reach the lower
/// driver — not even when refused for size — and everything else passes down untouched. With
/// `AdministratorOnly` a non-administrator's create is refused by the filter and an
/// administrator's passes down (MOD-71 through `request_complete_or_forward`).
#[test]
fn filter_over_a_lower_driver_passes_unknown_codes_down() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    let reached = Arc::new(AtomicUsize::new(0));
    simulator::install_driver(&machine, "lower", lower_driver(Arc::clone(&reached)));
    let filter_config = IoctlHandlerConfig {
        device_interface: None,
        ..config(&calls, IoctlAccessMode::AdministratorOnly)
    };
    simulator::install_driver(
        &machine,
        "upper",
        container_driver_config(
            move |_device: &Device, modules| {
                modules.add(IoctlHandler::with(filter_config.clone()));
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
    assert_eq!(open(&machine, false).err(), Some(Status::ACCESS_DENIED));
    let handle = open(&machine, true).expect("an administrator's create passes down");
    assert_eq!(
        handle.device_io_control(IOCTL_SUM, &[1, 2, 3, 4], 2),
        Ok((vec![10, 0], 2))
    );
    assert_eq!(
        handle.device_io_control(IOCTL_SUM, &[1], 2),
        Err(Status::BUFFER_TOO_SMALL)
    );
    assert_eq!(reached.load(Ordering::SeqCst), 0, "the table's IOCTLs stay");
    assert_eq!(
        handle.device_io_control(IOCTL_UNKNOWN, &[9, 9], 8),
        Ok((vec![0; 0], 0x00)),
        "passed down: the lower driver's information (code & 0xFF = 0)"
    );
    assert_eq!(
        handle.device_io_control(IOCTL_UNKNOWN | 0x34, &[], 0),
        Ok((vec![], 0x34))
    );
    assert_eq!(reached.load(Ordering::SeqCst), 2);
    handle.close();
    node.remove().unwrap();
    assert_clean(&machine);
}

/// Exclusive open: a second handle is refused while the first is open, by anyone; once the first
/// closes a new one opens.
#[test]
fn exclusive_open_admits_one_handle_at_a_time() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    install_function_driver(
        &machine,
        "exclusive",
        IoctlHandlerConfig {
            exclusive: true,
            ..config(&calls, IoctlAccessMode::Default)
        },
    );
    let node = plug(&machine, "ROOT\\EXCLUSIVE", "exclusive");
    let first = open(&machine, false).unwrap();
    assert_eq!(open(&machine, true).err(), Some(Status::ACCESS_DENIED));
    assert_eq!(open(&machine, false).err(), Some(Status::ACCESS_DENIED));
    assert!(first.device_io_control(IOCTL_ANY, &[], 0).is_ok());
    first.close();
    let second = open(&machine, true).expect("free again after the close");
    assert_eq!(open(&machine, false).err(), Some(Status::ACCESS_DENIED));
    second.close();
    node.remove().unwrap();
    assert_clean(&machine);
}

/// A handler that takes its request (STATUS_PENDING in C DMF): the application's I/O stays
/// pending until the driver completes it, with the output written through the request; an
/// application cancel reaches a request the driver marked cancelable.
#[test]
fn pending_handler_completes_later() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let kept: Arc<Mutex<Vec<Request>>> = Arc::default();
    let k = Arc::clone(&kept);
    let table = IoctlTable::new([IoctlEntry::new(IOCTL_PEND, 1, 1, move |call| {
        let (request, pended) = call.take().expect("the call holds the request");
        assert!(call.take().is_none(), "taken once");
        k.lock().unwrap().push(request);
        IoctlResult::Pending(pended)
    })
    .unwrap()])
    .unwrap();
    install_function_driver(
        &machine,
        "pending",
        IoctlHandlerConfig {
            table,
            device_interface: Some(GUID),
            ..IoctlHandlerConfig::default()
        },
    );
    let node = plug(&machine, "ROOT\\PENDING", "pending");
    let handle = open(&machine, false).unwrap();
    let first = handle
        .device_io_control_overlapped(IOCTL_PEND, &[7], 1)
        .unwrap();
    let second = handle
        .device_io_control_overlapped(IOCTL_PEND, &[8], 1)
        .unwrap();
    machine.settle();
    assert!(!first.is_complete() && !second.is_complete());
    let mut requests = std::mem::take(&mut *kept.lock().unwrap());
    assert_eq!(requests.len(), 2);
    let second_request = requests.pop().unwrap();
    let first_request = requests.pop().unwrap();
    let input = first_request.with_input_buffer(1, |b| b[0]).unwrap();
    first_request
        .with_output_buffer(1, |out| out[0] = input * 2)
        .unwrap();
    first_request.complete_with_information(NtStatus::SUCCESS, 1);
    assert_eq!(first.wait(None), Some(Ok((vec![14], 1))));
    let k2 = Arc::clone(&kept);
    second_request
        .mark_cancelable(move |r| {
            k2.lock().unwrap().clear();
            r.complete(NtStatus::CANCELLED);
        })
        .unwrap();
    drop(second_request);
    assert!(second.cancel());
    assert_eq!(second.wait(None), Some(Err(Status::CANCELLED)));
    handle.close();
    node.remove().unwrap();
    assert_clean(&machine);
}

/// Manual mode (`IoctlStateSet`): no interface until `enable(true)`; `enable(false)` hides it
/// from new opens while open handles keep working. The post-create callback runs once.
#[test]
fn manual_mode_enables_and_disables_the_interface() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    let created = Arc::new(AtomicUsize::new(0));
    let handler: Arc<Mutex<Option<IoctlHandler>>> = Arc::default();
    let (c, h, cfg) = (
        Arc::clone(&created),
        Arc::clone(&handler),
        config(&calls, IoctlAccessMode::Default),
    );
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            let token = Arc::new(Mutex::new(None));
            let (t, c, cfg) = (Arc::clone(&token), Arc::clone(&c), cfg.clone());
            dmf.set_modules_add(move |_device, modules| {
                let c = Arc::clone(&c);
                *t.lock().unwrap() = Some(modules.add(IoctlHandler::with(IoctlHandlerConfig {
                    manual_mode: true,
                    post_device_interface_create: Some(Arc::new(move |_d, guid, reference| {
                        assert_eq!((guid, reference), (GUID, None));
                        c.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })),
                    ..cfg.clone()
                })));
                Ok(())
            })?;
            dmf.create_device(DeviceAttributes::default())?;
            let device = dmf.modules_create()?;
            let token = token.lock().unwrap().take().unwrap();
            *h.lock().unwrap() = Some(device.get(token)?);
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(&machine, "manual", config);
    let node = plug(&machine, "ROOT\\MANUAL", "manual");
    let module = handler.lock().unwrap().clone().unwrap();
    assert_eq!(module.is_enabled(), Ok(false));
    assert_eq!(
        open(&machine, false).err(),
        Some(Status::OBJECT_NAME_NOT_FOUND)
    );
    module.enable(true).unwrap();
    assert_eq!(module.is_enabled(), Ok(true));
    let handle = open(&machine, false).unwrap();
    module.enable(false).unwrap();
    assert_eq!(
        open(&machine, false).err(),
        Some(Status::OBJECT_NAME_NOT_FOUND)
    );
    assert!(handle.device_io_control(IOCTL_ANY, &[], 0).is_ok());
    module.enable(true).unwrap();
    open(&machine, true).unwrap().close();
    assert_eq!(
        created.load(Ordering::SeqCst),
        1,
        "created once, re-enabled after"
    );
    handle.close();
    node.remove().unwrap();
    machine.settle();
    assert_eq!(module.enable(true), Err(NtStatus::INVALID_DEVICE_STATE));
    drop(module);
    drop(handler);
    assert_clean(&machine);
}

type Slot = Arc<Mutex<Option<DynamicModule<IoctlHandler>>>>;

fn create_dynamic(
    device: &dmf_core::device::DmfDevice,
    calls: &Calls,
) -> DynamicModule<IoctlHandler> {
    IoctlHandler::with(IoctlHandlerConfig {
        exclusive: true,
        ..config(calls, IoctlAccessMode::AdministratorOnlyPerIoctl)
    })
    .create(device.collection())
    .expect("dynamic create")
}

/// A dynamic IoctlHandler (C DMF since #263): created at run time under the device's collection,
/// it creates its interface; the client routes its queue's IOCTLs and its file creates/closes to
/// it (IoctlChain). Deleting it withdraws the interface and its IOCTLs; creating it again brings
/// them back.
#[test]
fn dynamic_ioctl_handler_routed_by_its_owner() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    let slot = Slot::default();
    let dmf_device: Arc<Mutex<Option<dmf_core::device::DmfDevice>>> = Arc::default();
    let (s, d, c) = (
        Arc::clone(&slot),
        Arc::clone(&dmf_device),
        Arc::clone(&calls),
    );
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            let mut files = FileObjectConfig::default();
            let s1 = Arc::clone(&s);
            files.create = Some(Arc::new(move |_d: &Device, request: Request, file| {
                let mut io = IoRequest::new(None, request);
                let taken = s1
                    .lock()
                    .unwrap()
                    .as_ref()
                    .map(|h| h.handle_file_create(&mut io, file));
                if taken != Some(Handled::Handled) {
                    if let Some(request) = io.into_request() {
                        request.complete(NtStatus::SUCCESS);
                    }
                }
            }));
            let s2 = Arc::clone(&s);
            files.close = Some(Arc::new(move |file| {
                if let Some(h) = s2.lock().unwrap().as_ref() {
                    h.handle_file_close(file);
                }
            }));
            dmf.hook_file_object_config(Some(files));
            let device = dmf.create_device(DeviceAttributes::default())?;
            let mut queue = QueueConfig::new_default(QueueDispatch::Parallel);
            let s3 = Arc::clone(&s);
            queue.device_control = Some(Arc::new(move |q, request: Request, _o, _i, _code| {
                let mut io = IoRequest::new(Some(q), request);
                let handler = s3.lock().unwrap().as_ref().map(|h| (*h).clone());
                if handler.map(|h| h.handle_device_io_control(&mut io)) != Some(Handled::Handled) {
                    if let Some(request) = io.into_request() {
                        request.complete(NtStatus::NOT_SUPPORTED);
                    }
                }
            }));
            device.create_queue(dmf.hook_queue_config(queue)?)?;
            let created = dmf.modules_create()?;
            *s.lock().unwrap() = Some(create_dynamic(&created, &c));
            *d.lock().unwrap() = Some(created);
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(&machine, "dynamic", config);
    let node = plug(&machine, "ROOT\\DYNAMIC", "dynamic");
    assert!(slot.lock().unwrap().as_ref().unwrap().is_dynamic());

    let user = open(&machine, false).unwrap();
    assert_eq!(
        open(&machine, true).err(),
        Some(Status::ACCESS_DENIED),
        "exclusive, through the owner's create callback"
    );
    assert_eq!(
        user.device_io_control(IOCTL_SUM, &[5, 5, 5, 5], 2),
        Ok((vec![20, 0], 2))
    );
    assert_eq!(
        user.device_io_control(IOCTL_SUM, &[5], 2),
        Err(Status::BUFFER_TOO_SMALL)
    );
    assert_eq!(
        user.device_io_control(IOCTL_ADMIN, &[], 1),
        Err(Status::ACCESS_DENIED),
        "per-IOCTL administrator check"
    );
    assert_eq!(
        user.device_io_control(IOCTL_UNKNOWN, &[], 0),
        Err(Status::NOT_SUPPORTED),
        "not handled: the owner's rule"
    );
    user.close();
    let admin = open(&machine, true).unwrap();
    assert_eq!(
        admin.device_io_control(IOCTL_ADMIN, &[], 1),
        Ok((vec![0xAD], 1))
    );

    // Delete at run time: the interface goes, the IOCTLs with it.
    slot.lock().unwrap().take().unwrap().delete();
    assert_eq!(
        open(&machine, false).err(),
        Some(Status::OBJECT_NAME_NOT_FOUND)
    );
    assert_eq!(
        admin.device_io_control(IOCTL_SUM, &[1, 1, 1, 1], 2),
        Err(Status::NOT_SUPPORTED)
    );
    admin.close();
    // And back.
    let again = create_dynamic(dmf_device.lock().unwrap().as_ref().unwrap(), &calls);
    *slot.lock().unwrap() = Some(again);
    let user = open(&machine, false).expect("the interface is enabled again");
    assert_eq!(
        user.device_io_control(IOCTL_SUM, &[1, 1, 1, 1], 2),
        Ok((vec![4, 0], 2))
    );
    user.close();
    // The owner deletes it before the device goes (the callbacks hold the slot).
    slot.lock().unwrap().take();
    dmf_device.lock().unwrap().take();
    node.remove().unwrap();
    assert_clean(&machine);
}

/// The `handle_*` Methods on an IoctlHandler the framework dispatches to (not dynamic) work as
/// on a dynamic one (C DMF's `DMF_IoctlHandler_IoctlChain` does not ask how its Module was
/// created): the client sends its IOCTLs to a queue of its own
/// (`WdfDeviceConfigureRequestDispatching`), which DMF does not dispatch, and routes them to the
/// Module; the creates and closes the framework already offered the Module, the client offers
/// again, which changes nothing (the exclusive hold stays with its holder and ends once).
#[test]
fn handle_methods_work_on_an_instance_the_framework_dispatches_to() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    let slot: Arc<Mutex<Option<IoctlHandler>>> = Arc::default();
    let offers = Arc::new(AtomicUsize::new(0));
    let (s, c, o) = (Arc::clone(&slot), Arc::clone(&calls), Arc::clone(&offers));
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            let token = Arc::new(Mutex::new(None));
            let (t, c) = (Arc::clone(&token), Arc::clone(&c));
            dmf.set_modules_add(move |_device, modules| {
                *t.lock().unwrap() = Some(modules.add(IoctlHandler::with(IoctlHandlerConfig {
                    exclusive: true,
                    ..config(&c, IoctlAccessMode::AdministratorOnlyPerIoctl)
                })));
                Ok(())
            })?;
            let mut files = FileObjectConfig::default();
            let (s1, o1) = (Arc::clone(&s), Arc::clone(&o));
            files.create = Some(Arc::new(move |_d: &Device, request: Request, file| {
                // The Module accepted this create already (a function driver leaves it to the
                // client); offered again, it is left to the client again.
                let mut io = IoRequest::new(None, request);
                let handler = s1.lock().unwrap().clone();
                let offered = handler.map(|h| h.handle_file_create(&mut io, file));
                assert_eq!(
                    offered,
                    Some(Handled::NotHandled),
                    "an accepted create, again"
                );
                o1.fetch_add(1, Ordering::SeqCst);
                if let Some(request) = io.into_request() {
                    request.complete(NtStatus::SUCCESS);
                }
            }));
            let s2 = Arc::clone(&s);
            files.close = Some(Arc::new(move |file| {
                // After the Module's own close callback: nothing left to release.
                if let Some(h) = s2.lock().unwrap().clone() {
                    h.handle_file_close(file);
                    h.handle_file_object_deleted(file);
                }
            }));
            dmf.hook_file_object_config(Some(files));
            let device = dmf.create_device(DeviceAttributes::default())?;
            let mut queue = QueueConfig::new(QueueDispatch::Parallel);
            let s3 = Arc::clone(&s);
            queue.device_control = Some(Arc::new(move |q, request: Request, _o, _i, _code| {
                let mut io = IoRequest::new(Some(q), request);
                let handler = s3.lock().unwrap().clone();
                if handler.map(|h| h.handle_device_io_control(&mut io)) != Some(Handled::Handled) {
                    if let Some(request) = io.into_request() {
                        request.complete(NtStatus::NOT_SUPPORTED);
                    }
                }
            }));
            let own = device.create_queue(queue)?;
            device.configure_request_dispatching(&own, RequestType::DeviceControl)?;
            let created = dmf.modules_create()?;
            let token = token.lock().unwrap().take().expect("added");
            *s.lock().unwrap() = Some(created.get(token)?);
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(&machine, "chained", config);
    let node = plug(&machine, "ROOT\\CHAINED", "chained");
    let handler = slot.lock().unwrap().clone().expect("created");
    assert!(!handler.is_dynamic());

    let user = open(&machine, false).unwrap();
    assert_eq!(offers.load(Ordering::SeqCst), 1);
    assert_eq!(
        open(&machine, true).err(),
        Some(Status::ACCESS_DENIED),
        "exclusive: the create offered twice took one hold"
    );
    assert_eq!(
        user.device_io_control(IOCTL_SUM, &[5, 5, 5, 5], 2),
        Ok((vec![20, 0], 2)),
        "validated and handled through the Method"
    );
    assert_eq!(
        user.device_io_control(IOCTL_SUM, &[5], 2),
        Err(Status::BUFFER_TOO_SMALL)
    );
    assert_eq!(
        user.device_io_control(IOCTL_ADMIN, &[], 1),
        Err(Status::ACCESS_DENIED),
        "per-IOCTL administrator check"
    );
    assert_eq!(
        user.device_io_control(IOCTL_UNKNOWN, &[], 0),
        Err(Status::NOT_SUPPORTED),
        "not handled: the client's rule"
    );
    assert_eq!(
        calls.lock().unwrap().as_slice(),
        &[(IOCTL_SUM, 4, 2)],
        "the handler ran once, for the valid request"
    );
    user.close();
    // The hold ended with the close (released by the Module, not again by the client).
    let admin = open(&machine, true).expect("the hold ended at close");
    assert_eq!(
        admin.device_io_control(IOCTL_ADMIN, &[], 1),
        Ok((vec![0xAD], 1))
    );
    admin.close();
    node.remove().unwrap();
    machine.settle();
    // Closed with its device: the Methods refuse, the request stays with the caller.
    assert_eq!(handler.enable(true), Err(NtStatus::INVALID_DEVICE_STATE));
    drop(handler);
    slot.lock().unwrap().take();
    assert_clean(&machine);
}

/// `forward_unhandled_requests` in a function driver over a lower filter: unknown codes go to the
/// next lower driver instead of DMF's NOT_SUPPORTED.
#[test]
fn forward_unhandled_requests_sends_unknown_codes_down() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    let reached = Arc::new(AtomicUsize::new(0));
    simulator::install_driver(&machine, "below", lower_driver(Arc::clone(&reached)));
    let cfg = IoctlHandlerConfig {
        forward_unhandled_requests: true,
        device_interface: Some(Guid::new(9, 9, 9, [9; 8])),
        ..config(&calls, IoctlAccessMode::Default)
    };
    install_function_driver(&machine, "forwarder", cfg);
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\FORWARDER", "forwarder").lower_filter("below"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    let handle = app(&machine, false)
        .open_interface(sim_guid(Guid::new(9, 9, 9, [9; 8])), Access::READ_WRITE)
        .unwrap();
    assert_eq!(
        handle.device_io_control(IOCTL_UNKNOWN | 0x42, &[], 0),
        Ok((vec![], 0x42))
    );
    assert_eq!(reached.load(Ordering::SeqCst), 1);
    assert_eq!(handle.device_io_control(IOCTL_ANY, &[], 0), Ok((vec![], 0)));
    assert_eq!(reached.load(Ordering::SeqCst), 1);
    handle.close();
    node.remove().unwrap();
    assert_clean(&machine);
}

/// The table on its own: lookup and validation, duplicates (first listed wins), empty table.
#[test]
fn table_lookup_and_validation() {
    let first = IoctlEntry::new(7, 1, 0, |_| IoctlResult::success(0)).unwrap();
    let second = IoctlEntry::new(7, 9, 9, |_| IoctlResult::success(0)).unwrap();
    let table = IoctlTable::new([
        IoctlEntry::new(30, 0, 0, |_| IoctlResult::success(0)).unwrap(),
        first,
        second,
        IoctlEntry::new(2, 0, 4, |_| IoctlResult::success(0)).unwrap(),
    ])
    .unwrap();
    assert_eq!(table.len(), 4);
    assert_eq!(
        table.find(7).map(|e| e.input_minimum),
        Some(1),
        "first listed"
    );
    assert!(table.find(8).is_none() && table.find(0).is_none() && table.find(31).is_none());
    assert_eq!(
        table.lookup(2, 0, 3).map(Result::err),
        Some(Some(NtStatus::BUFFER_TOO_SMALL))
    );
    assert!(matches!(table.lookup(2, 0, 4), Some(Ok(e)) if e.code == 2));
    assert!(table.lookup(99, 0, 0).is_none());
    assert!(IoctlTable::default().find(0).is_none());
    let codes: Vec<u32> = table.entries().iter().map(|e| e.code).collect();
    assert_eq!(codes, [2, 7, 7, 30]);

    // Sparse codes (binary search) and codes differing only in the method bits.
    for codes in [
        vec![0x10, 0x0022_2000, 0xFFFF_FFF0],
        vec![0x0022_2000, 0x0022_2001, 0x0022_2003, 0x0022_2004],
    ] {
        let table = IoctlTable::new(
            codes
                .iter()
                .map(|&c| IoctlEntry::new(c, 0, 0, |_| IoctlResult::success(0)).unwrap()),
        )
        .unwrap();
        for &c in &codes {
            assert_eq!(table.find(c).map(|e| e.code), Some(c));
        }
        for c in [0, 0x11, 0x0022_2002, 0x0022_2005, 0xFFFF_FFFF] {
            assert!(table.find(c).is_none(), "{c:#x}");
        }
    }
}

/// What a property-test handler does, chosen by the code.
fn behaviour(code: u32) -> u32 {
    code % 4
}

fn property_table(seen: &Arc<Mutex<HashMap<u64, u32>>>) -> IoctlTable {
    IoctlTable::new((0..8u32).map(|i| {
        let code = 0x0022_0000 | (i << 2);
        let seen = Arc::clone(seen);
        IoctlEntry::new(code, (i as usize) * 3, (i as usize % 3) * 5, move |call| {
            let id = call.request().map(PlatformRequest::id).unwrap();
            *seen.lock().unwrap().entry(id).or_default() += 1;
            match behaviour(i) {
                // Complete with more information than the output has: clamped.
                0 => IoctlResult::success(call.output_length() + 7),
                1 => IoctlResult::status(NtStatus::DEVICE_BUSY),
                // Take it and complete it right away, with information.
                2 => {
                    let (request, pended) = call.take().unwrap();
                    request.complete_with_information(NtStatus::SUCCESS, 0);
                    IoctlResult::Pending(pended)
                }
                _ => IoctlResult::Complete {
                    status: NtStatus::BUFFER_OVERFLOW,
                    information: call.output_length() / 2,
                },
            }
        })
        .unwrap()
    }))
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The table's lookup (direct index or binary search) agrees with C DMF's linear scan.
    #[test]
    fn table_find_agrees_with_a_linear_scan(
        codes in proptest::collection::vec(prop_oneof![0x0022_2000u32..0x0022_2100, any::<u32>()], 0..40),
        probes in proptest::collection::vec(prop_oneof![0x0022_1FF0u32..0x0022_2110, any::<u32>()], 1..64),
    ) {
        let entries: Vec<IoctlEntry> = codes
            .iter()
            .enumerate()
            .map(|(i, &c)| IoctlEntry::new(c, i, 0, |_| IoctlResult::success(0)).unwrap())
            .collect();
        let table = IoctlTable::new(entries.clone()).unwrap();
        for probe in probes.into_iter().chain(codes.iter().copied()) {
            let linear = entries.iter().find(|e| e.code == probe).map(|e| e.input_minimum);
            prop_assert_eq!(table.find(probe).map(|e| e.input_minimum), linear);
        }
    }

    /// Arbitrary codes (table and not) and buffer sizes: no panic, every request completes
    /// exactly once with the status the rules give, handlers run only for valid requests.
    #[test]
    fn arbitrary_codes_and_sizes_complete_exactly_once(
        requests in proptest::collection::vec(
            (prop_oneof![0u32..8, any::<u32>()], 0usize..40, 0usize..24),
            1..24,
        )
    ) {
        let machine = Machine::new();
        let _bound = machine.enter();
        let seen: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
        let cfg = IoctlHandlerConfig {
            table: property_table(&seen),
            device_interface: Some(GUID),
            ..IoctlHandlerConfig::default()
        };
        install_function_driver(&machine, "prop", cfg);
        let node = plug(&machine, "ROOT\\PROP", "prop");
        let handle = open(&machine, false).unwrap();
        let table = property_table(&Arc::default());
        for (raw, input_length, output_length) in requests {
            // Small values are table indexes; the rest are arbitrary codes (access bits cleared so
            // the I/O manager lets them through the read/write handle).
            let code = if raw < 8 { 0x0022_0000 | (raw << 2) } else { raw & !0xC000 };
            let input = vec![0xA5u8; input_length];
            let pending = handle
                .device_io_control_overlapped(code, &input, output_length)
                .unwrap();
            let result = pending.wait(None).expect("completed");
            let status = pending.status().unwrap();
            let handler_ran = seen.lock().unwrap().get(&pending.request_id()).copied();
            match table.lookup(code, input_length, output_length) {
                None => {
                    prop_assert_eq!(status, Status::NOT_SUPPORTED);
                    prop_assert_eq!(handler_ran, None);
                }
                Some(Err(_)) => {
                    prop_assert_eq!(status, Status::BUFFER_TOO_SMALL);
                    prop_assert_eq!(handler_ran, None);
                }
                Some(Ok(entry)) => {
                    prop_assert_eq!(handler_ran, Some(1));
                    let i = (entry.code >> 2) & 7;
                    match behaviour(i) {
                        // METHOD_BUFFERED: the output is the system buffer the input was
                        // copied into, so what the handler did not overwrite is the input.
                        0 => {
                            let mut output = vec![0; output_length];
                            for b in output.iter_mut().take(input_length) {
                                *b = 0xA5;
                            }
                            prop_assert_eq!(result, Ok((output, output_length)));
                        }
                        1 => prop_assert_eq!(status, st(NtStatus::DEVICE_BUSY)),
                        2 => prop_assert_eq!(result, Ok((vec![], 0))),
                        _ => prop_assert_eq!(status, st(NtStatus::BUFFER_OVERFLOW)),
                    }
                }
            }
        }
        handle.close();
        node.remove().unwrap();
        machine.settle();
        prop_assert!(machine.verifier().violations().is_empty(), "{:?}", machine.verifier().violations());
        prop_assert!(kmdf_sim::object::live_objects(&machine).is_empty());
    }
}

/// An upper filter on `lower` with the given IoctlHandlers (in order), plugged in.
fn filter_stack(
    machine: &Machine,
    lower: DriverConfig,
    handlers: Vec<IoctlHandlerConfig>,
) -> DeviceNode {
    simulator::install_driver(machine, "lower", lower);
    simulator::install_driver(
        machine,
        "upper",
        container_driver_config(
            move |_device: &Device, modules| {
                for config in &handlers {
                    modules.add(IoctlHandler::with(config.clone()));
                }
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
    node
}

/// D2: in a filter, a default IoctlHandler before an administrator-only one accepts a
/// non-administrator's create and passes it down, so the administrator-only Module never sees
/// it. Its IOCTLs are still refused on that handle: access is checked per IOCTL against who
/// opened the file object, whatever Module accepted the create.
#[test]
fn ioctl_handler_admin_ioctl_refused_on_handle_opened_by_user() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    let reached = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let open_to_all = IoctlHandlerConfig {
        table: IoctlTable::new([IoctlEntry::new(IOCTL_PEND, 0, 0, move |call| {
            c.lock().unwrap().push((call.code(), 0, 0));
            IoctlResult::success(0)
        })
        .unwrap()])
        .unwrap(),
        ..IoctlHandlerConfig::default()
    };
    let administrators = IoctlHandlerConfig {
        device_interface: None,
        ..config(&calls, IoctlAccessMode::AdministratorOnly)
    };
    let node = filter_stack(
        &machine,
        lower_driver(Arc::clone(&reached)),
        vec![open_to_all, administrators],
    );
    let user = open(&machine, false).expect("the first Module accepts and passes it down");
    assert_eq!(user.device_io_control(IOCTL_PEND, &[], 0), Ok((vec![], 0)));
    for (code, input, output) in [
        (IOCTL_ADMIN, &[][..], 1),
        (IOCTL_SUM, &[1, 2, 3, 4][..], 2),
        (IOCTL_ANY, &[][..], 0),
    ] {
        assert_eq!(
            user.device_io_control(code, input, output),
            Err(Status::ACCESS_DENIED),
            "{code:#X}"
        );
    }
    assert_eq!(
        calls.lock().unwrap().len(),
        1,
        "only the open Module's handler ran"
    );
    let admin = open(&machine, true).unwrap();
    assert_eq!(
        admin.device_io_control(IOCTL_ADMIN, &[], 1),
        Ok((vec![0xAD], 1))
    );
    assert_eq!(reached.load(Ordering::SeqCst), 0, "the table's IOCTLs stay");
    user.close();
    admin.close();
    node.remove().unwrap();
    assert_clean(&machine);
}

/// The same walk-around against `ClientCallback` mode: the client's callback refuses
/// non-administrators, but a default IoctlHandler before it accepts every create and passes it
/// down, so the callback never sees one. The Module asks the callback at the first IOCTL of its
/// table on such a handle: the user's is refused (and asked again next time), the
/// administrator's accepted once and remembered.
#[test]
fn ioctl_handler_client_callback_ioctls_refused_on_handle_it_never_saw() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    let reached = Arc::new(AtomicUsize::new(0));
    let asked = Arc::new(AtomicUsize::new(0));
    let open_to_all = IoctlHandlerConfig {
        table: IoctlTable::new([IoctlEntry::new(IOCTL_PEND, 0, 0, |_call| {
            IoctlResult::success(0)
        })
        .unwrap()])
        .unwrap(),
        ..IoctlHandlerConfig::default()
    };
    let a = Arc::clone(&asked);
    let client_decides = IoctlHandlerConfig {
        device_interface: None,
        ..config(
            &calls,
            IoctlAccessMode::ClientCallback(Arc::new(move |file, _request| {
                a.fetch_add(1, Ordering::SeqCst);
                if file.is_administrator() {
                    Ok(())
                } else {
                    Err(NtStatus::ACCESS_DENIED)
                }
            })),
        )
    };
    let node = filter_stack(
        &machine,
        lower_driver(Arc::clone(&reached)),
        vec![open_to_all, client_decides],
    );
    let user = open(&machine, false).expect("the first Module accepts and passes it down");
    assert_eq!(asked.load(Ordering::SeqCst), 0, "the callback never saw it");
    for (code, input, output) in [(IOCTL_ANY, &[][..], 0), (IOCTL_SUM, &[1, 2, 3, 4][..], 2)] {
        assert_eq!(
            user.device_io_control(code, input, output),
            Err(Status::ACCESS_DENIED),
            "{code:#X}"
        );
    }
    assert!(
        calls.lock().unwrap().is_empty(),
        "no handler ran for the user"
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        2,
        "asked at each refused IOCTL"
    );
    let admin = open(&machine, true).unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    for _ in 0..2 {
        assert_eq!(admin.device_io_control(IOCTL_ANY, &[], 0), Ok((vec![], 0)));
    }
    assert_eq!(
        asked.load(Ordering::SeqCst),
        3,
        "accepted once, then remembered"
    );
    user.close();
    admin.close();
    assert_eq!(reached.load(Ordering::SeqCst), 0, "the table's IOCTLs stay");
    node.remove().unwrap();
    assert_clean(&machine);
}

/// D6: access is checked before the buffer sizes, so a caller who may not send a code learns
/// nothing about it: a non-administrator's too-short administrator-only IOCTL is
/// `STATUS_ACCESS_DENIED`, not `STATUS_BUFFER_TOO_SMALL`.
#[test]
fn ioctl_handler_access_denied_before_buffer_too_small() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    install_function_driver(
        &machine,
        "order",
        IoctlHandlerConfig {
            kernel_mode_requests_only: false,
            ..config(&calls, IoctlAccessMode::AdministratorOnlyPerIoctl)
        },
    );
    install_function_driver(
        &machine,
        "kernel-only",
        IoctlHandlerConfig {
            kernel_mode_requests_only: true,
            device_interface: Some(Guid::new(1, 2, 3, [4; 8])),
            ..config(&calls, IoctlAccessMode::Default)
        },
    );
    let node = plug(&machine, "ROOT\\ORDER", "order");
    let kernel_only = plug(&machine, "ROOT\\KERNELONLY", "kernel-only");
    let user = open(&machine, false).unwrap();
    assert_eq!(
        user.device_io_control(IOCTL_ADMIN, &[], 0),
        Err(Status::ACCESS_DENIED),
        "output minimum 1, but the caller may not send it at all"
    );
    let admin = open(&machine, true).unwrap();
    assert_eq!(
        admin.device_io_control(IOCTL_ADMIN, &[], 0),
        Err(Status::BUFFER_TOO_SMALL),
        "an administrator gets the size check"
    );
    let other = app(&machine, true)
        .open_interface(sim_guid(Guid::new(1, 2, 3, [4; 8])), Access::READ_WRITE)
        .unwrap();
    assert_eq!(
        other.device_io_control(IOCTL_SUM, &[1], 0),
        Err(Status::ACCESS_DENIED),
        "KernelModeRequestsOnly before the sizes too"
    );
    assert!(calls.lock().unwrap().is_empty());
    other.close();
    user.close();
    admin.close();
    kernel_only.remove().unwrap();
    node.remove().unwrap();
    assert_clean(&machine);
}

/// D3: an exclusive IoctlHandler in a filter takes its hold when it accepts a create; when the
/// lower driver then refuses the create (a non-administrator), the hold goes with it — the
/// refused open does not lock administrators out. The hold still admits one handle at a time.
#[test]
fn ioctl_handler_exclusive_hold_released_when_create_refused_below() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    let reached = Arc::new(AtomicUsize::new(0));
    let node = filter_stack(
        &machine,
        lower_driver_refusing_users(Arc::clone(&reached), true),
        vec![IoctlHandlerConfig {
            exclusive: true,
            device_interface: None,
            ..config(&calls, IoctlAccessMode::Default)
        }],
    );
    for _ in 0..2 {
        assert_eq!(open(&machine, false).err(), Some(Status::ACCESS_DENIED));
    }
    let admin = open(&machine, true).expect("the refused opens left no hold");
    assert_eq!(
        open(&machine, true).err(),
        Some(Status::ACCESS_DENIED),
        "exclusive"
    );
    assert!(admin.device_io_control(IOCTL_ANY, &[], 0).is_ok());
    admin.close();
    let again = open(&machine, true).expect("free again after the close");
    again.close();
    node.remove().unwrap();
    assert_clean(&machine);
}

/// A Module that refuses creates from non-administrators (`STATUS_ACCESS_DENIED`) and leaves the
/// others to the Modules after it and the client.
#[dmf_module(crate = ::dmf_core, config = (), context = (), open = Create, lock = Dispatch)]
struct AdminGate;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for AdminGate {
    fn file_create(
        _m: &Dispatched<'_, Self>,
        io: &mut IoRequest<'_>,
        file: &FileObject,
    ) -> Handled {
        if file.is_administrator() {
            return Handled::NotHandled;
        }
        let _ = io.complete(NtStatus::ACCESS_DENIED);
        Handled::Handled
    }
}

/// The opens of the function-driver D3 tests: after refused opens by non-administrators, an
/// administrator opens; the exclusive rule still admits one handle at a time; the close frees it.
fn refused_opens_leave_no_hold(machine: &Machine) {
    for _ in 0..2 {
        assert_eq!(open(machine, false).err(), Some(Status::ACCESS_DENIED));
    }
    let admin = open(machine, true).expect("the refused opens left no hold");
    assert_eq!(
        open(machine, true).err(),
        Some(Status::ACCESS_DENIED),
        "exclusive: one handle at a time"
    );
    assert_eq!(open(machine, false).err(), Some(Status::ACCESS_DENIED));
    assert!(admin.device_io_control(IOCTL_ANY, &[], 0).is_ok());
    admin.close();
    let again = open(machine, true).expect("free again after the close");
    again.close();
}

/// D3 in a function driver: an exclusive IoctlHandler accepts a non-administrator's create and
/// takes its hold; the Module after it refuses the create. The file object is deleted with the
/// failed create (no close ever comes) and the hold goes with it, so administrators can still
/// open — and the exclusive rule still holds.
#[test]
fn ioctl_handler_exclusive_hold_released_when_a_later_module_refuses_the_create() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    let config = IoctlHandlerConfig {
        exclusive: true,
        ..config(&calls, IoctlAccessMode::Default)
    };
    simulator::install_driver(
        &machine,
        "gated",
        container_driver_config(
            move |_device: &Device, modules| {
                modules.add(IoctlHandler::with(config.clone()));
                modules.add(AdminGate::with(()));
                Ok(())
            },
            false,
        ),
    );
    let node = plug(&machine, "ROOT\\GATED", "gated");
    refused_opens_leave_no_hold(&machine);
    node.remove().unwrap();
    assert_clean(&machine);
}

/// D3 in a function driver: the exclusive IoctlHandler accepts every create; the client's own
/// create callback (which gets the creates no Module took) refuses non-administrators. The hold
/// taken for a refused create is released when the create completes.
#[test]
fn ioctl_handler_exclusive_hold_released_when_the_client_refuses_the_create() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    let config = IoctlHandlerConfig {
        exclusive: true,
        ..config(&calls, IoctlAccessMode::Default)
    };
    let driver = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            dmf.hook_file_object_config(Some(FileObjectConfig {
                create: Some(Arc::new(|_d: &Device, request: Request, file| {
                    request.complete(if file.is_administrator() {
                        NtStatus::SUCCESS
                    } else {
                        NtStatus::ACCESS_DENIED
                    });
                })),
                ..FileObjectConfig::default()
            }));
            let config = config.clone();
            dmf.set_modules_add(move |_device, modules| {
                modules.add(IoctlHandler::with(config.clone()));
                Ok(())
            })?;
            dmf.create_device(DeviceAttributes::default())?;
            dmf.modules_create().map(|_| ())
        }),
        unload: None,
    };
    simulator::install_driver(&machine, "client-gated", driver);
    let node = plug(&machine, "ROOT\\CLIENTGATED", "client-gated");
    refused_opens_leave_no_hold(&machine);
    node.remove().unwrap();
    assert_clean(&machine);
}

/// D1: the caller chooses the output length — here `u32::MAX`, DeviceIoControl's largest.
/// With `METHOD_OUT_DIRECT` the output is the caller's own memory: the Module allocates nothing of
/// that size and copies nothing, the handler writes into the request's buffer in place, and the
/// request completes with the handler's status (no abort, which in the kernel would be a bug
/// check on a failed pool allocation). With `METHOD_BUFFERED` the I/O manager would need a system
/// buffer of that size: its pool allocation fails and the caller gets
/// `STATUS_INSUFFICIENT_RESOURCES` before any driver sees the request.
#[test]
fn ioctl_handler_huge_output_length_completes_without_allocating() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let calls = Calls::default();
    install_function_driver(&machine, "huge", config(&calls, IoctlAccessMode::Default));
    let node = plug(&machine, "ROOT\\HUGE", "huge");
    let handle = open(&machine, false).unwrap();
    let huge = usize::try_from(u32::MAX).unwrap();
    assert_eq!(
        handle.device_io_control(IOCTL_ANY_DIRECT, &[1, 2, 3], huge),
        Ok((vec![3, u8::MAX], 2)),
        "the handler wrote into the request's buffer"
    );
    assert_eq!(
        calls.lock().unwrap().last(),
        Some(&(IOCTL_ANY_DIRECT, 3, huge))
    );
    let before = calls.lock().unwrap().len();
    assert_eq!(
        handle.device_io_control(IOCTL_ANY, &[1, 2, 3], huge),
        Err(Status::INSUFFICIENT_RESOURCES),
        "no system buffer of 4 GiB"
    );
    assert_eq!(calls.lock().unwrap().len(), before, "the handler never ran");
    handle.close();
    node.remove().unwrap();
    assert_clean(&machine);
}

/// D1: what a handler writes before taking the request is in the request (the buffer is the
/// request's own, not a copy the Module discards).
#[test]
fn ioctl_handler_output_written_before_take_reaches_the_caller() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let table = IoctlTable::new([IoctlEntry::new(IOCTL_PEND, 1, 2, |call| {
        let doubled = call.with_input(|input| input[0] * 2).unwrap();
        call.with_output(|out| out[..2].copy_from_slice(&[doubled, 0xEE]))
            .unwrap();
        let (request, pended) = call.take().unwrap();
        assert_eq!(
            call.with_output(|_| ()),
            Err(NtStatus::INVALID_DEVICE_STATE)
        );
        request.complete_with_information(NtStatus::SUCCESS, 2);
        IoctlResult::Pending(pended)
    })
    .unwrap()])
    .unwrap();
    install_function_driver(
        &machine,
        "take",
        IoctlHandlerConfig {
            table,
            device_interface: Some(GUID),
            ..IoctlHandlerConfig::default()
        },
    );
    let node = plug(&machine, "ROOT\\TAKE", "take");
    let handle = open(&machine, false).unwrap();
    assert_eq!(
        handle.device_io_control(IOCTL_PEND, &[21], 2),
        Ok((vec![42, 0xEE], 2))
    );
    handle.close();
    node.remove().unwrap();
    assert_clean(&machine);
}
