//! NotifyUserWithRequest on kmdf-sim (MODS-NotifyUserWithRequest): applications send an
//! inverted-call IOCTL that an IoctlHandler hands to the Module; the driver reports events.
//! Parking up to the maximum, completion oldest-first with the event's data, events waiting in
//! the bounded ring (oldest overwritten), application cancel, handle close, Module close with
//! requests parked, and the Methods' edge cases. Every test ends with the verifier clean, no
//! pool and no WDF object left.
#![cfg(feature = "sim")]
#![allow(clippy::too_many_lines, clippy::needless_pass_by_value)]

use std::sync::{Arc, Mutex};

use dmf_core::device::DmfDeviceInit;
use dmf_core::module::{Module, ModuleSpec};
use dmf_core::platform::contract::device::{DeviceAttributes, Guid};
use dmf_core::platform::contract::io::PlatformRequest;
use dmf_core::platform::{simulator, DriverConfig};
use dmf_core::NtStatus;
use dmf_modules::ioctl_handler::{
    IoctlEntry, IoctlHandler, IoctlHandlerConfig, IoctlResult, IoctlTable,
};
use dmf_modules::notify_user_with_request::{
    NotifyDelivery, NotifyUserWithRequest, NotifyUserWithRequestConfig,
    NotifyUserWithRequestMultiple, NotifyUserWithRequestMultipleConfig,
};
use kmdf_sim::io::{Access, AppConfig, Application, Handle, PendingIo};
use kmdf_sim::pnp::{DeviceNode, NodeState, StackSpec, SystemPowerState};
use kmdf_sim::{Machine, Status};

const GUID: Guid = Guid::new(
    0x6E3B_2D51,
    0x8C4F,
    0x4A2A,
    [0xAB, 0x72, 0x1D, 0x3E, 0x9F, 0x58, 0xC6, 0x24],
);
const IOCTL_WAIT: u32 = 0x0022_2010;
/// Parks with `event_request_add` (no delivery of waiting events).
const IOCTL_ADD: u32 = 0x0022_2014;

type Slot = Arc<Mutex<Option<NotifyUserWithRequest>>>;

fn st(status: NtStatus) -> Status {
    Status(status.to_raw())
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

/// Installs the `notifier` driver: its device adds the Module `spec` makes, then an IoctlHandler
/// (on [`GUID`]) with the table `table` makes from the slot; the slot holds the Module's handle
/// once created.
fn install_with<M: Module + 'static>(
    machine: &Machine,
    spec: impl Fn() -> ModuleSpec<M> + Send + Sync + 'static,
    table: impl Fn(&Arc<Mutex<Option<M>>>) -> IoctlTable + Send + Sync + 'static,
) -> Arc<Mutex<Option<M>>> {
    let slot = Arc::new(Mutex::new(None));
    let s = Arc::clone(&slot);
    let spec = Arc::new(spec);
    let driver = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            let table = table(&s);
            let token = Arc::new(Mutex::new(None));
            let (t, spec) = (Arc::clone(&token), Arc::clone(&spec));
            dmf.set_modules_add(move |_device, modules| {
                *t.lock().unwrap() = Some(modules.add(spec()));
                modules.add(IoctlHandler::with(IoctlHandlerConfig {
                    table: table.clone(),
                    device_interface: Some(GUID),
                    ..IoctlHandlerConfig::default()
                }));
                Ok(())
            })?;
            dmf.create_device(DeviceAttributes::default())?;
            let device = dmf.modules_create()?;
            let token = token.lock().unwrap().take().unwrap();
            *s.lock().unwrap() = Some(device.get(token)?);
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(machine, "notifier", driver);
    slot
}

/// Installs a driver with an IoctlHandler whose `IOCTL_WAIT` parks the request in a
/// NotifyUserWithRequest configured with `config`; returns the slot of the Module's handle.
fn install(machine: &Machine, config: NotifyUserWithRequestConfig) -> Slot {
    install_with(
        machine,
        move || NotifyUserWithRequest::with(config.clone()),
        |s| {
            let park = |add: bool, slot: &Slot| {
                let slot = Arc::clone(slot);
                move |call: &mut dmf_modules::ioctl_handler::IoctlCall<'_>| {
                    let (request, pended) = call.take().expect("untaken");
                    let module = slot.lock().unwrap().clone().expect("created");
                    let parked = if add {
                        module.event_request_add(request)
                    } else {
                        module.request_process(request)
                    };
                    if let Err((request, status)) = parked {
                        request.complete(status);
                    }
                    IoctlResult::Pending(pended)
                }
            };
            IoctlTable::new([
                IoctlEntry::new(IOCTL_WAIT, 0, 0, park(false, s)).unwrap(),
                IoctlEntry::new(IOCTL_ADD, 0, 0, park(true, s)).unwrap(),
            ])
            .unwrap()
        },
    )
}

fn plug(machine: &Machine) -> DeviceNode {
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\NOTIFIER", "notifier"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    node
}

fn open(machine: &Machine) -> Handle {
    Application::new(machine, AppConfig::default())
        .open_interface(
            dmf_core::platform::simulator::sim_guid(GUID),
            Access::READ_WRITE,
        )
        .unwrap()
}

fn wait(handle: &Handle, output: usize) -> PendingIo {
    handle
        .device_io_control_overlapped(IOCTL_WAIT, &[], output)
        .unwrap()
}

fn module(slot: &Slot) -> NotifyUserWithRequest {
    slot.lock().unwrap().clone().unwrap()
}

fn config(requests: u32, events: u32, size: usize) -> NotifyUserWithRequestConfig {
    NotifyUserWithRequestConfig {
        maximum_pending_requests: requests,
        maximum_pending_data_buffers: events,
        size_of_data_buffer: size,
        ..NotifyUserWithRequestConfig::default()
    }
}

fn finish(machine: &Machine, slot: Slot, node: DeviceNode) {
    node.remove().unwrap();
    machine.settle();
    drop(slot);
    assert_clean(machine);
}

/// Park N requests (the N+1th is refused with `STATUS_INVALID_DEVICE_STATE`), then complete them
/// oldest first, each with its event's data and status.
#[test]
fn parks_up_to_the_maximum_and_completes_oldest_first() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let slot = install(&machine, config(3, 2, 4));
    let node = plug(&machine);
    let handle = open(&machine);
    let parked: Vec<PendingIo> = (0..3).map(|_| wait(&handle, 4)).collect();
    machine.settle();
    let notify = module(&slot);
    assert_eq!(notify.pending_requests(), Ok(3));
    let refused = wait(&handle, 4);
    assert_eq!(
        refused.wait(None),
        Some(Err(st(NtStatus::INVALID_DEVICE_STATE))),
        "MaximumNumberOfPendingRequests"
    );
    assert!(parked.iter().all(|p| !p.is_complete()));
    notify
        .data_process(NtStatus::SUCCESS, &[1, 2, 3, 4])
        .unwrap();
    notify.data_process(NtStatus::SUCCESS, &[5, 6]).unwrap();
    notify
        .data_process(NtStatus::BUFFER_OVERFLOW, &[7, 8, 9])
        .unwrap();
    assert_eq!(parked[0].wait(None), Some(Ok((vec![1, 2, 3, 4], 4))));
    assert_eq!(parked[1].wait(None), Some(Ok((vec![5, 6], 2))));
    assert_eq!(parked[2].status(), Some(st(NtStatus::BUFFER_OVERFLOW)));
    assert_eq!(notify.pending_requests(), Ok(0));
    assert_eq!(notify.pending_events(), Ok(0));
    handle.close();
    drop(notify);
    finish(&machine, slot, node);
}

/// Events with no request waiting stay in the ring (the oldest overwritten when it is full) and
/// complete the next requests at once, in order; with the ring drained a request parks again.
/// `event_request_add` parks without delivering; the next event goes to it.
#[test]
fn events_wait_in_a_bounded_ring_until_requests_arrive() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let slot = install(&machine, config(4, 2, 2));
    let node = plug(&machine);
    let handle = open(&machine);
    let notify = module(&slot);
    for event in 1..=3u8 {
        notify
            .data_process(NtStatus::SUCCESS, &[event, event])
            .unwrap();
    }
    assert_eq!(
        notify.pending_events(),
        Ok(2),
        "bounded: the oldest event was overwritten"
    );
    assert_eq!(
        notify.data_process(NtStatus::SUCCESS, &[1, 2, 3]),
        Err(NtStatus::BUFFER_TOO_SMALL),
        "longer than SizeOfDataBuffer"
    );
    assert_eq!(wait(&handle, 2).wait(None), Some(Ok((vec![2, 2], 2))));
    assert_eq!(wait(&handle, 2).wait(None), Some(Ok((vec![3, 3], 2))));
    let third = wait(&handle, 2);
    machine.settle();
    assert!(!third.is_complete());
    assert_eq!(notify.pending_requests(), Ok(1));

    // event_request_add parks even with events waiting.
    notify.data_process(NtStatus::SUCCESS, &[4]).unwrap();
    assert_eq!(third.wait(None), Some(Ok((vec![4], 1))));
    notify.data_process(NtStatus::SUCCESS, &[5]).unwrap();
    let added = handle
        .device_io_control_overlapped(IOCTL_ADD, &[], 2)
        .unwrap();
    machine.settle();
    assert!(
        !added.is_complete(),
        "EventRequestAdd does not look at the ring"
    );
    assert_eq!(notify.pending_events(), Ok(1));
    notify.data_process(NtStatus::SUCCESS, &[6]).unwrap();
    assert_eq!(
        added.wait(None),
        Some(Ok((vec![5], 1))),
        "the oldest event first"
    );
    assert_eq!(notify.pending_events(), Ok(1));

    assert_eq!(wait(&handle, 2).wait(None), Some(Ok((vec![6], 1))));

    // An output buffer too short for the event: STATUS_BUFFER_TOO_SMALL, the event consumed.
    notify.data_process(NtStatus::SUCCESS, &[7, 7]).unwrap();
    let short = wait(&handle, 1);
    assert_eq!(short.wait(None), Some(Err(Status::BUFFER_TOO_SMALL)));
    assert_eq!(notify.pending_events(), Ok(0));
    handle.close();
    drop(notify);
    finish(&machine, slot, node);
}

/// The application cancels a parked request (`CancelIoEx`): it completes with
/// `STATUS_CANCELLED`, leaves the Module, and the next event goes to the next request.
#[test]
fn application_cancel_completes_the_request_cancelled() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let slot = install(&machine, config(4, 0, 1));
    let node = plug(&machine);
    let handle = open(&machine);
    let first = wait(&handle, 1);
    let second = wait(&handle, 1);
    machine.settle();
    let notify = module(&slot);
    assert_eq!(notify.pending_requests(), Ok(2));
    assert!(first.cancel());
    assert_eq!(first.wait(None), Some(Err(Status::CANCELLED)));
    assert_eq!(notify.pending_requests(), Ok(1));
    notify.data_process(NtStatus::SUCCESS, &[9]).unwrap();
    assert_eq!(second.wait(None), Some(Ok((vec![9], 1))));
    notify.data_process(NtStatus::SUCCESS, &[10]).unwrap();
    assert_eq!(
        notify.pending_events(),
        Ok(0),
        "a ring of 0: an event nobody waits for is lost"
    );
    handle.close();
    drop(notify);
    finish(&machine, slot, node);
}

/// `EvtPendingRequestsCancel` and the completion callback: the client completes cancelled and
/// notified requests itself.
#[test]
fn client_callbacks_complete_cancelled_and_notified_requests() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let (l1, l2) = (Arc::clone(&log), Arc::clone(&log));
    let slot = install(
        &machine,
        NotifyUserWithRequestConfig {
            complete: Some(Arc::new(move |request, event: &NotifyDelivery<'_>| {
                let (data, status) = (event.data, event.status);
                assert_eq!(event.data_timestamp, None, "no time stamping");
                l1.lock()
                    .unwrap()
                    .push(format!("complete {data:?} {status:?}"));
                let n = request
                    .with_output_buffer(1, |out| {
                        out[0] = data.iter().sum();
                        1
                    })
                    .unwrap_or(0);
                request.complete_with_information(status, n);
            })),
            pending_requests_cancel: Some(Arc::new(move |request, data, status| {
                l2.lock()
                    .unwrap()
                    .push(format!("cancel {data:?} {status:?}"));
                request.complete(NtStatus::DEVICE_REMOVED);
            })),
            ..config(2, 1, 3)
        },
    );
    let node = plug(&machine);
    let handle = open(&machine);
    let first = wait(&handle, 1);
    let second = wait(&handle, 1);
    machine.settle();
    let notify = module(&slot);
    notify.data_process(NtStatus::SUCCESS, &[1, 2, 3]).unwrap();
    assert_eq!(first.wait(None), Some(Ok((vec![6], 1))));
    assert!(second.cancel());
    assert_eq!(second.wait(None), Some(Err(Status::DEVICE_REMOVED)));
    assert_eq!(
        *log.lock().unwrap(),
        [
            "complete [1, 2, 3] STATUS_SUCCESS",
            "cancel [] STATUS_CANCELLED"
        ]
    );
    handle.close();
    drop(notify);
    finish(&machine, slot, node);
}

/// Closing a handle cancels that handle's parked requests (file cleanup) and only those.
#[test]
fn closing_a_handle_cancels_its_requests() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let slot = install(&machine, config(8, 0, 1));
    let node = plug(&machine);
    let closing = open(&machine);
    let staying = open(&machine);
    let gone: Vec<PendingIo> = (0..3).map(|_| wait(&closing, 1)).collect();
    let kept = wait(&staying, 1);
    machine.settle();
    let notify = module(&slot);
    assert_eq!(notify.pending_requests(), Ok(4));
    closing.close();
    machine.settle();
    for p in &gone {
        assert_eq!(p.wait(None), Some(Err(Status::CANCELLED)));
    }
    assert_eq!(notify.pending_requests(), Ok(1));
    assert!(!kept.is_complete());
    notify.data_process(NtStatus::SUCCESS, &[3]).unwrap();
    assert_eq!(kept.wait(None), Some(Ok((vec![3], 1))));
    staying.close();
    drop(notify);
    finish(&machine, slot, node);
}

/// `request_return` / `request_return_all` complete parked requests directly (bypassing the
/// ring); the device going away with requests parked completes them with `STATUS_CANCELLED`
/// (the framework purges the Module's queue, then the Module closes), and its Methods then fail.
#[test]
fn return_methods_and_close_with_requests_parked() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let slot = install(&machine, config(8, 2, 2));
    let node = plug(&machine);
    let handle = open(&machine);
    let notify = module(&slot);
    assert_eq!(notify.request_return(NtStatus::SUCCESS, &[1]), Ok(false));
    let a = wait(&handle, 2);
    let b = wait(&handle, 2);
    let c = wait(&handle, 2);
    machine.settle();
    assert_eq!(notify.request_return(NtStatus::SUCCESS, &[1, 1]), Ok(true));
    assert_eq!(a.wait(None), Some(Ok((vec![1, 1], 2))));
    assert_eq!(
        notify.request_return_all(NtStatus::NO_MORE_ENTRIES, &[]),
        Ok(2)
    );
    assert_eq!(b.status(), Some(Status::NO_MORE_ENTRIES));
    assert_eq!(c.status(), Some(Status::NO_MORE_ENTRIES));

    let parked: Vec<PendingIo> = (0..3).map(|_| wait(&handle, 2)).collect();
    machine.settle();
    assert_eq!(notify.pending_requests(), Ok(3));
    // The device goes with the handle still open: the Module closes with requests parked.
    node.surprise_remove().unwrap();
    machine.settle();
    handle.close();
    machine.settle();
    for p in &parked {
        assert_eq!(p.wait(None), Some(Err(Status::CANCELLED)));
    }
    let _ = node.remove();
    machine.settle();
    assert_eq!(
        notify.data_process(NtStatus::SUCCESS, &[1]),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    drop(notify);
    drop(slot);
    assert_clean(&machine);
}

/// Parked requests do not hold up power transitions (they are in the Module's non-power-managed
/// queue, not the power-managed default queue): a system sleep and resume with requests parked
/// completes, and the requests are still there for the next event.
#[test]
fn parked_requests_survive_a_power_cycle() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let slot = install(&machine, config(4, 1, 1));
    let node = plug(&machine);
    let handle = open(&machine);
    let first = wait(&handle, 1);
    let second = wait(&handle, 1);
    machine.settle();
    machine.pnp().system_sleep(SystemPowerState::S3).unwrap();
    machine.pnp().system_resume().unwrap();
    machine.settle();
    assert!(!first.is_complete() && !second.is_complete());
    let notify = module(&slot);
    assert_eq!(notify.pending_requests(), Ok(2));
    notify.data_process(NtStatus::SUCCESS, &[1]).unwrap();
    notify.data_process(NtStatus::SUCCESS, &[2]).unwrap();
    assert_eq!(first.wait(None), Some(Ok((vec![1], 1))));
    assert_eq!(second.wait(None), Some(Ok((vec![2], 1))));
    handle.close();
    drop(notify);
    finish(&machine, slot, node);
}

type MultipleSlot = Arc<Mutex<Option<NotifyUserWithRequestMultiple>>>;

/// As [`install`], with a NotifyUserWithRequestMultiple (added first, so it sees every create).
fn install_multiple(
    machine: &Machine,
    config: NotifyUserWithRequestMultipleConfig,
) -> MultipleSlot {
    install_with(
        machine,
        move || NotifyUserWithRequestMultiple::with(config.clone()),
        |s| {
            let parked = Arc::clone(s);
            IoctlTable::new([IoctlEntry::new(IOCTL_WAIT, 0, 0, move |call| {
                let (request, pended) = call.take().expect("untaken");
                let module = parked.lock().unwrap().clone().expect("created");
                if let Err((request, status)) = module.request_process(request) {
                    request.complete(status);
                }
                IoctlResult::Pending(pended)
            })
            .unwrap()])
            .unwrap()
        },
    )
}

/// NotifyUserWithRequestMultiple: every client gets every broadcast, each in its own order; a
/// client refused at arrival gets nothing (its requests are refused); a new client gets the last
/// message replayed; closing a client's handle cancels its requests and reports its departure.
#[test]
fn multiple_broadcasts_to_every_client() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let (arrivals, departures) = (Arc::clone(&log), Arc::clone(&log));
    let slot = install_multiple(
        &machine,
        NotifyUserWithRequestMultipleConfig {
            maximum_pending_requests: 2,
            maximum_pending_data_buffers: 2,
            size_of_data_buffer: 2,
            client_arrival: Some(Arc::new(move |file| {
                use dmf_core::platform::contract::io::PlatformFileObject;
                arrivals
                    .lock()
                    .unwrap()
                    .push(format!("arrival admin={}", file.is_administrator()));
                if file.is_administrator() {
                    Err(NtStatus::ACCESS_DENIED)
                } else {
                    Ok(())
                }
            })),
            client_departure: Some(Arc::new(move |_file| {
                departures.lock().unwrap().push("departure".to_owned());
            })),
            replay_last_message_to_new_clients: true,
            ..NotifyUserWithRequestMultipleConfig::default()
        },
    );
    let node = plug(&machine);
    let a = open(&machine);
    let b = open(&machine);
    let refused = Application::new(
        &machine,
        AppConfig {
            administrator: true,
            name: "admin".to_owned(),
        },
    )
    .open_interface(
        dmf_core::platform::simulator::sim_guid(GUID),
        Access::READ_WRITE,
    )
    .expect("an arrival refusal does not refuse the open");
    let multiple = slot.lock().unwrap().clone().unwrap();
    assert_eq!(multiple.clients(), Ok(2));
    assert_eq!(
        wait(&refused, 2).wait(None),
        Some(Err(st(NtStatus::INVALID_DEVICE_REQUEST))),
        "not a client"
    );

    let a1 = wait(&a, 2);
    machine.settle();
    multiple.data_broadcast(&[1, 1], NtStatus::SUCCESS).unwrap();
    assert_eq!(a1.wait(None), Some(Ok((vec![1, 1], 2))));
    assert_eq!(
        wait(&b, 2).wait(None),
        Some(Ok((vec![1, 1], 2))),
        "b's event waited"
    );
    multiple.data_broadcast(&[2], NtStatus::SUCCESS).unwrap();
    multiple.data_broadcast(&[3], NtStatus::SUCCESS).unwrap();
    assert_eq!(wait(&a, 2).wait(None), Some(Ok((vec![2], 1))));
    assert_eq!(wait(&a, 2).wait(None), Some(Ok((vec![3], 1))));
    assert_eq!(wait(&b, 2).wait(None), Some(Ok((vec![2], 1))));

    // A new client starts with the last message.
    let c = open(&machine);
    assert_eq!(multiple.clients(), Ok(3));
    assert_eq!(wait(&c, 2).wait(None), Some(Ok((vec![3], 1))));

    // Per-client maximum, and closing a handle cancels its requests.
    let c1 = wait(&c, 2);
    let c2 = wait(&c, 2);
    let c3 = wait(&c, 2);
    assert_eq!(c3.wait(None), Some(Err(st(NtStatus::INVALID_DEVICE_STATE))));
    c.close();
    machine.settle();
    assert_eq!(c1.wait(None), Some(Err(Status::CANCELLED)));
    assert_eq!(c2.wait(None), Some(Err(Status::CANCELLED)));
    assert_eq!(multiple.clients(), Ok(2));
    assert_eq!(
        *log.lock().unwrap(),
        [
            "arrival admin=false",
            "arrival admin=false",
            "arrival admin=true",
            "arrival admin=false",
            "departure"
        ]
    );
    // Still parked at removal: the framework cancels them.
    let b_last = wait(&b, 2);
    machine.settle();
    assert_eq!(
        b_last.wait(None),
        Some(Ok((vec![3], 1))),
        "b still had [3] waiting"
    );
    let b_parked = wait(&b, 2);
    machine.settle();
    assert!(!b_parked.is_complete());
    a.close();
    refused.close();
    node.surprise_remove().unwrap();
    machine.settle();
    b.close();
    machine.settle();
    assert_eq!(b_parked.wait(None), Some(Err(Status::CANCELLED)));
    let _ = node.remove();
    machine.settle();
    drop(multiple);
    drop(slot);
    assert_clean(&machine);
}

/// A delivery seen by the completion callback: data, data time stamp, request time stamp.
type Delivered = (Vec<u8>, Option<i64>, Option<i64>);
/// The time stamps of a delivery: data, request.
type StampPair = (Option<i64>, Option<i64>);

/// The tick count (100-ns units since boot) of the machine's clock now.
fn ticks(machine: &Machine) -> i64 {
    i64::try_from(machine.now().as_nanos() / 100).unwrap()
}

/// `TimeStamping` (`DataBufferTimestampGet` / `RequestTimestampGet`), `EvtDataCleanup` and
/// `RequestReturnEx`: an event delivered at once carries the request's park time and its own
/// arrival; a waiting event carries its arrival, earlier than the request it completes; an
/// event overwritten in the full ring, every delivered event and the events still waiting at
/// close each reach the cleanup exactly once, in that order; `request_return_ex` hands the
/// oldest request to the client's callback, or fails with `STATUS_UNSUCCESSFUL` when none waits.
#[test]
fn time_stamps_data_cleanup_and_request_return_ex() {
    use std::time::Duration;
    let machine = Machine::new();
    let _bound = machine.enter();
    let delivered: Arc<Mutex<Vec<Delivered>>> = Arc::default();
    let cleaned: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let (on_delivery, on_cleanup) = (Arc::clone(&delivered), Arc::clone(&cleaned));
    let slot = install(
        &machine,
        NotifyUserWithRequestConfig {
            complete: Some(Arc::new(move |request, event: &NotifyDelivery<'_>| {
                on_delivery.lock().unwrap().push((
                    event.data.to_vec(),
                    event.data_timestamp,
                    event.request_timestamp,
                ));
                request.complete(event.status);
            })),
            data_cleanup: Some(Arc::new(move |data: &[u8]| {
                on_cleanup.lock().unwrap().push(data.to_vec());
            })),
            time_stamping: true,
            ..config(4, 2, 2)
        },
    );
    let node = plug(&machine);
    let handle = open(&machine);
    let notify = module(&slot);

    // A request parked at t0, an event at t0 + 1 ms: delivered at once.
    let t0 = ticks(&machine);
    let a = wait(&handle, 2);
    machine.settle();
    machine.advance(Duration::from_millis(1));
    let t1 = ticks(&machine);
    assert_eq!(t1 - t0, 10_000, "1 ms in ticks");
    notify.data_process(NtStatus::SUCCESS, &[1]).unwrap();
    assert!(a.wait(None).is_some());
    assert_eq!(delivered.lock().unwrap()[0], (vec![1], Some(t1), Some(t0)));
    assert_eq!(
        *cleaned.lock().unwrap(),
        [vec![1]],
        "cleaned after delivery"
    );

    // An event waits from t1; the request parked 2 ms later takes it.
    notify.data_process(NtStatus::SUCCESS, &[2]).unwrap();
    machine.advance(Duration::from_millis(2));
    let t2 = ticks(&machine);
    let b = wait(&handle, 2);
    assert!(b.wait(None).is_some());
    assert_eq!(delivered.lock().unwrap()[1], (vec![2], Some(t1), Some(t2)));

    // Ring of 2: the third event overwrites the oldest, which is cleaned at once.
    for event in [3u8, 4, 5] {
        notify.data_process(NtStatus::SUCCESS, &[event]).unwrap();
    }
    assert_eq!(notify.pending_events(), Ok(2));
    assert_eq!(*cleaned.lock().unwrap(), [vec![1], vec![2], vec![3]]);

    // RequestReturnEx: nothing parked → STATUS_UNSUCCESSFUL, the callback not called.
    let mut called = false;
    assert_eq!(
        notify.request_return_ex(NtStatus::SUCCESS, |request, _| {
            called = true;
            request.complete(NtStatus::SUCCESS);
        }),
        Err(NtStatus::UNSUCCESSFUL)
    );
    assert!(!called);
    let (c1, c2) = (wait(&handle, 2), wait(&handle, 2));
    assert!(
        c1.wait(None).is_some() && c2.wait(None).is_some(),
        "events 4, 5"
    );
    machine.advance(Duration::from_millis(1));
    let t3 = ticks(&machine);
    let e = wait(&handle, 2);
    machine.settle();
    assert!(!e.is_complete());
    machine.advance(Duration::from_millis(1));
    notify
        .request_return_ex(NtStatus::DEVICE_REMOVED, |request, event| {
            assert_eq!(event.data, &[] as &[u8]);
            assert_eq!(event.data_timestamp, None);
            assert_eq!(event.request_timestamp, Some(t3), "its park time");
            request.complete_with_information(event.status, 0);
        })
        .unwrap();
    assert_eq!(e.wait(None), Some(Err(Status::DEVICE_REMOVED)));
    assert_eq!(notify.pending_requests(), Ok(0));

    // Events still waiting at close reach the cleanup.
    notify.data_process(NtStatus::SUCCESS, &[6]).unwrap();
    notify.data_process(NtStatus::SUCCESS, &[7]).unwrap();
    handle.close();
    drop(notify);
    finish(&machine, slot, node);
    let cleaned: Vec<u8> = cleaned.lock().unwrap().iter().map(|d| d[0]).collect();
    assert_eq!(cleaned, [1, 2, 3, 4, 5, 6, 7], "each event cleaned once");
    assert_eq!(delivered.lock().unwrap().len(), 4, "events 1, 2, 4, 5");
}

/// Without a ring (`maximum_pending_data_buffers` 0) an event no request waits for is lost and
/// cleaned at once; without `time_stamping` the delivery carries no stamps.
#[test]
fn lost_events_are_cleaned_and_unstamped_without_time_stamping() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let cleaned: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let stamps: Arc<Mutex<Vec<StampPair>>> = Arc::default();
    let (c, s) = (Arc::clone(&cleaned), Arc::clone(&stamps));
    let slot = install(
        &machine,
        NotifyUserWithRequestConfig {
            complete: Some(Arc::new(move |request, event: &NotifyDelivery<'_>| {
                s.lock()
                    .unwrap()
                    .push((event.data_timestamp, event.request_timestamp));
                request.complete(event.status);
            })),
            data_cleanup: Some(Arc::new(move |data: &[u8]| {
                c.lock().unwrap().push(data.to_vec());
            })),
            ..config(1, 0, 1)
        },
    );
    let node = plug(&machine);
    let handle = open(&machine);
    let notify = module(&slot);
    notify.data_process(NtStatus::SUCCESS, &[9]).unwrap();
    assert_eq!(*cleaned.lock().unwrap(), [vec![9]], "lost, cleaned");
    assert_eq!(notify.pending_events(), Ok(0));
    let a = wait(&handle, 1);
    machine.settle();
    notify.data_process(NtStatus::SUCCESS, &[8]).unwrap();
    assert!(a.wait(None).is_some());
    assert_eq!(*stamps.lock().unwrap(), [(None, None)]);
    assert_eq!(*cleaned.lock().unwrap(), [vec![9], vec![8]]);
    handle.close();
    drop(notify);
    finish(&machine, slot, node);
}
