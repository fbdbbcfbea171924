//! SelfTarget (dmf-upstream §1.2, C DMF `Dmf_SelfTarget.c`): a client driver, written with DMF's
//! client-driver API (`dmf_core::device`, CLI-27), whose own default queue answers an IOCTL, and a
//! SelfTarget Module that sends that IOCTL to the top of its own stack, synchronously and
//! asynchronously; the Methods fail with `STATUS_INVALID_DEVICE_STATE` once the Module is closed
//! (invariant 4); the machine is clean at the end.
#![cfg(feature = "sim")]
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dmf_core::device::DmfDeviceInit;
use dmf_core::platform::contract::device::{DeviceAttributes, PlatformDevice};
use dmf_core::platform::contract::io::{
    IoTargetState, PlatformIoTarget, PlatformRequest, QueueDispatch,
};
use dmf_core::platform::{simulator, DriverConfig, QueueConfig, Request};
use dmf_core::NtStatus;
use dmf_modules::request_target::{RequestId, RequestSender, SendCompletion, SendRequest};
use dmf_modules::self_target::SelfTarget;
use kmdf_sim::io::{Queue as SimQueue, QueueConfig as SimQueueConfig, SendOptions};
use kmdf_sim::object::ObjectAttributes;
use kmdf_sim::pnp::{NodeState, StackSpec};
use kmdf_sim::Machine;

const IOCTL_ECHO: u32 = (0x22 << 16) | (0x900 << 2);
const IOCTL_UNKNOWN: u32 = (0x22 << 16) | (0x901 << 2);

type Slot = Arc<Mutex<Option<SelfTarget>>>;

/// The client driver: its own default queue echoes `IOCTL_ECHO` (output = input, information =
/// its length) and counts what it answered; its one Module is a SelfTarget.
fn install_client(machine: &Machine, answered: &Arc<AtomicUsize>) -> Slot {
    let slot = Slot::default();
    let (s, answered) = (Arc::clone(&slot), Arc::clone(answered));
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            let token = Arc::new(Mutex::new(None));
            let t = Arc::clone(&token);
            dmf.set_modules_add(move |_device, modules| {
                *t.lock().unwrap() = Some(modules.add(SelfTarget::with(())));
                Ok(())
            })?;
            let device = dmf.create_device(DeviceAttributes::default())?;
            let mut queue = QueueConfig::new_default(QueueDispatch::Parallel);
            let answered = Arc::clone(&answered);
            queue.device_control = Some(Arc::new(move |_q, r: Request, out, _in, code: u32| {
                if code != IOCTL_ECHO {
                    r.complete(NtStatus::INVALID_DEVICE_REQUEST);
                    return;
                }
                answered.fetch_add(1, Ordering::SeqCst);
                let data = r.with_input_buffer(0, <[u8]>::to_vec).unwrap_or_default();
                let n = data.len().min(out);
                let _ = r.with_output_buffer(n, |b| b[..n].copy_from_slice(&data[..n]));
                r.complete_with_information(NtStatus::SUCCESS, n);
            }));
            let hooked = dmf.hook_queue_config(queue)?;
            device.create_queue(hooked)?;
            let dmf_device = dmf.modules_create()?;
            let token = token
                .lock()
                .unwrap()
                .take()
                .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
            *s.lock().unwrap() = Some(dmf_device.get(token)?);
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(machine, "client", config);
    slot
}

/// A plain KMDF upper filter that counts the IOCTLs entering it and passes them down.
fn install_counting_filter(machine: &Machine, seen: &Arc<AtomicUsize>) {
    let seen = Arc::clone(seen);
    kmdf_sim::driver::install(
        machine,
        "upper",
        kmdf_sim::driver::DriverConfig::new(move |_d, init| {
            init.set_filter();
            let dev = kmdf_sim::device::Device::create(init, ObjectAttributes::new())?;
            let seen = Arc::clone(&seen);
            SimQueue::create(
                &dev,
                SimQueueConfig::new_default(kmdf_sim::io::DispatchType::Parallel)
                    .on_device_control(move |q, r, _, _, _| {
                        seen.fetch_add(1, Ordering::SeqCst);
                        let target = q.device().unwrap().io_target();
                        let opts = SendOptions {
                            send_and_forget: true,
                            ..SendOptions::default()
                        };
                        if let Err(s) = r.send(&target, opts) {
                            r.complete(s);
                        }
                    }),
                ObjectAttributes::new(),
            )?;
            Ok(())
        }),
    );
}

fn completion_slot() -> (
    Arc<Mutex<Vec<SendCompletion>>>,
    impl FnOnce(SendCompletion) + Send + 'static,
) {
    let done: Arc<Mutex<Vec<SendCompletion>>> = Arc::default();
    let d = Arc::clone(&done);
    (done, move |c| d.lock().unwrap().push(c))
}

fn assert_closed(module: &SelfTarget) {
    assert_eq!(
        module
            .send_synchronously(&SendRequest::ioctl(IOCTL_ECHO, b"x", 1))
            .err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    let (done, callback) = completion_slot();
    assert_eq!(
        module
            .send(&SendRequest::ioctl(IOCTL_ECHO, b"x", 1), callback)
            .err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert!(
        done.lock().unwrap().is_empty(),
        "no callback for a refused send"
    );
    assert_eq!(
        module.get_target().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert!(!module.cancel(RequestId::from_raw(1)));
}

/// The Module's IOCTLs reach the client's own default queue through the stack-top target, which
/// was opened without a create; the Methods fail after removal closed the Module.
#[test]
fn self_target_sends_to_its_own_default_queue_and_fails_after_close() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let answered = Arc::new(AtomicUsize::new(0));
    let slot = install_client(&machine, &answered);
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\SELF", "client"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    let module = slot.lock().unwrap().take().expect("device added");

    let target = module.get_target().unwrap();
    assert_eq!(target.state(), IoTargetState::Started);
    assert!(
        target.sim().file_object().is_none(),
        "EXISTING_DEVICE: no create, no file object"
    );
    assert_eq!(
        target.sim().target_device(),
        node.function_device(),
        "the top of the client's own stack"
    );

    // Synchronously: the output and information come back from the client's own queue.
    assert_eq!(
        module
            .send_synchronously(&SendRequest::ioctl(IOCTL_ECHO, b"self", 8))
            .unwrap(),
        (b"self".to_vec(), 4)
    );
    assert_eq!(
        module
            .send_synchronously(&SendRequest::ioctl(IOCTL_UNKNOWN, &[], 0))
            .err(),
        Some(NtStatus::INVALID_DEVICE_REQUEST),
        "the client's queue's own answer"
    );

    // Asynchronously: the callback runs exactly once with the same answer.
    let (done, callback) = completion_slot();
    let id = module
        .send(&SendRequest::ioctl(IOCTL_ECHO, b"async", 8), callback)
        .unwrap();
    machine.settle();
    {
        let done = done.lock().unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].id, id);
        assert_eq!(done[0].status, NtStatus::SUCCESS);
        assert_eq!(
            (done[0].output.as_slice(), done[0].information),
            (&b"async"[..], 5)
        );
    }
    assert!(!module.cancel(id), "a completed request is not cancelled");
    assert_eq!(answered.load(Ordering::SeqCst), 2);

    // Removal destroys the device's Modules: closed, the Methods refuse.
    node.remove().unwrap();
    machine.settle();
    assert_closed(&module);
    drop(target);
    drop(module);
    machine.verdict().unwrap();
}

/// With an upper filter: the Module opens in PrepareHardware, when the stack is built, so its
/// requests enter at the filter and travel down to the client's own queue, as an application's do.
#[test]
fn self_target_requests_enter_at_the_highest_filter() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let answered = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicUsize::new(0));
    let slot = install_client(&machine, &answered);
    install_counting_filter(&machine, &seen);
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\SELFF", "client").upper_filter("upper"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    let module = slot.lock().unwrap().take().expect("device added");
    assert_eq!(
        module.get_target().unwrap().sim().target_device(),
        node.device("upper"),
        "the top of the stack is the filter"
    );
    assert_eq!(
        module
            .send_synchronously(&SendRequest::ioctl(IOCTL_ECHO, b"ab", 2))
            .unwrap(),
        (b"ab".to_vec(), 2)
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1, "the filter saw it first");
    assert_eq!(
        answered.load(Ordering::SeqCst),
        1,
        "then the client's queue"
    );

    node.remove().unwrap();
    machine.settle();
    assert_closed(&module);
    drop(module);
    machine.verdict().unwrap();
}

/// It needs the device whose stack it targets, and its RequestTarget child needs it for its work
/// item: a collection without one is not created (the child's open on Create fails) and leaves
/// nothing behind.
#[test]
fn self_target_without_a_device_fails_to_open() {
    use dmf_core::module::{CollectionConfig, ModuleCollection, ModuleInit};
    let machine = Machine::new();
    let _bound = machine.enter();
    let mut init = ModuleInit::new();
    init.add(SelfTarget::with(()));
    assert_eq!(
        ModuleCollection::create(init, CollectionConfig::default()).err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    machine.verdict().unwrap();
}
