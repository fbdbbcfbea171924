//! RequestTarget (dmf-upstream §5.6): one-shot sends to the OSR FX2 function driver through a
//! remote I/O target, from a small client driver written with DMF's client-driver API
//! (`dmf_core::device`, see `driver_support`) (modelled on C DMF's Tests_DefaultTarget /
//! Tests_SelfTarget, dmf-upstream §4).
#![cfg(feature = "sim")]
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

mod driver_support;
mod task_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf_core::module::{CollectionConfig, ModuleCollection, ModuleHandle, ModuleInit, NoParent};
use dmf_core::platform::contract::device::PlatformDevice;
use dmf_core::platform::contract::io::PlatformIoTarget;
use dmf_core::platform::contract::{Irql, PlatformIrql};
use dmf_core::platform::{CurrentIrql, Device, IoTarget, TargetOpenParams};
use dmf_core::NtStatus;
use dmf_modules::request_target::{
    RequestId, RequestKind, RequestReuse, RequestSender, RequestTarget, ReuseId, SendCompletion,
    SendRequest,
};
use kmdf_sim::exec::SystemThread;
use kmdf_sim::fx2::ioctl::{
    GUID_DEVINTERFACE_OSRUSBFX2, IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
    IOCTL_OSRUSBFX2_READ_SWITCHES, IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
};
use kmdf_sim::fx2::{Fx2Board, SwitchState};
use kmdf_sim::pnp::{DeviceNode, NodeState, StackSpec};
use kmdf_sim::Machine;
use task_support::{assert_clean, seed, Rng};

/// A machine with an FX2 board and its driver, and the client device with one RequestTarget
/// whose target is a remote target opened on the FX2 interface.
struct Fixture {
    machine: Machine,
    board: Fx2Board,
    fx2: DeviceNode,
    node: DeviceNode,
    /// The client device (the Module's).
    device: Device,
    target: RequestTarget,
    io_target: IoTarget,
}

fn fixture(passive: bool) -> Fixture {
    let machine = Machine::new();
    let board = Fx2Board::new();
    let fx2 = kmdf_sim::fx2::driver::install(&machine, &board).unwrap();
    let _bound = machine.enter();
    let slot = driver_support::install(&machine, "rtclient", false, move |init| {
        init.add(RequestTarget::with(()).passive_level(passive))
    });
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\RTCLIENT", "rtclient"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    let (device, target) = driver_support::take(&slot);
    let link = kmdf_sim::interface::interfaces_of_class(&machine, GUID_DEVINTERFACE_OSRUSBFX2)
        .pop()
        .unwrap();
    let io_target = device.create_io_target().unwrap();
    io_target.open(TargetOpenParams::by_name(&link)).unwrap();
    target.io_target_set(io_target.clone()).unwrap();
    Fixture {
        machine,
        board,
        fx2,
        node,
        device,
        target,
        io_target,
    }
}

impl Fixture {
    /// Removes the client device (closing the Module), then the FX2 device; checks the machine.
    fn finish(self, seed: u64) {
        let _bound = self.machine.enter();
        self.node.remove().unwrap();
        assert!(self.target.state() != dmf_core::module::ModuleState::Opened);
        self.fx2.remove().unwrap();
        assert_clean(&self.machine, seed);
    }
}

type Completions = Arc<Mutex<Vec<SendCompletion>>>;

fn recorder(log: &Completions) -> impl FnOnce(SendCompletion) + Send + 'static {
    let log = Arc::clone(log);
    move |c| log.lock().unwrap().push(c)
}

/// Sends a parked interrupt-message read (completed when a switch flips, or at `timeout`).
fn park(
    target: &RequestTarget,
    timeout: Option<Duration>,
    log: &Completions,
) -> Result<RequestId, NtStatus> {
    target.send(
        &SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1).timeout(timeout),
        recorder(log),
    )
}

/// The completion of request `id` with `status` and no data.
fn no_data(id: RequestId, status: NtStatus) -> SendCompletion {
    SendCompletion {
        id,
        status,
        information: 0,
        output: vec![],
    }
}

// ---------------------------------------------------------------------------- scenarios

/// Synchronous sends: output bytes and information come back; zero-size buffers; errors are
/// statuses; no target → STATUS_INVALID_DEVICE_STATE.
/// One description per kind: the general form keeps only what the kind uses (C DMF ignores the
/// rest), and the time-out is part of it.
#[test]
fn send_request_keeps_what_its_kind_uses() {
    assert_eq!(
        SendRequest::new(RequestKind::Read, 7, b"in", 3),
        SendRequest::read(3)
    );
    assert_eq!(
        SendRequest::new(RequestKind::Write, 7, b"in", 3),
        SendRequest::write(b"in")
    );
    assert_eq!(
        SendRequest::new(RequestKind::Ioctl, 7, b"in", 3),
        SendRequest::ioctl(7, b"in", 3)
    );
    assert_eq!(
        SendRequest::new(RequestKind::InternalIoctl, 7, b"in", 3),
        SendRequest::internal_ioctl(7, b"in", 3)
    );
    assert_ne!(
        SendRequest::ioctl(7, b"in", 3),
        SendRequest::internal_ioctl(7, b"in", 3)
    );
    let prefixed = SendRequest::ioctl(7, b"in", 3).output_prefix(&[1]);
    assert_ne!(prefixed, SendRequest::ioctl(7, b"in", 3));
    assert_eq!(prefixed.output_prefix(&[]), SendRequest::ioctl(7, b"in", 3));
    let timed = SendRequest::read(3).timeout(Duration::from_millis(100));
    assert_ne!(timed, SendRequest::read(3));
    assert_eq!(timed.timeout(None), SendRequest::read(3));
}

#[test]
fn request_target_sends_synchronously() {
    let f = fixture(false);
    let bound = f.machine.enter();
    f.board.set_switches(SwitchState::from_raw(0b1010_0101));
    assert_eq!(
        f.target
            .send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1)),
        Ok((vec![0b1010_0101], 1))
    );
    assert_eq!(
        f.target.send_synchronously(&SendRequest::ioctl(
            IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
            &[0x3C],
            0
        )),
        Ok((vec![], 0))
    );
    assert_eq!(f.board.snapshot().bar_graph.raw(), 0x3C);
    // Zero-size buffers reach the driver, which refuses them.
    assert_eq!(
        f.target
            .send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 0)),
        Err(NtStatus::BUFFER_TOO_SMALL)
    );
    assert_eq!(
        f.target.send_synchronously(&SendRequest::ioctl(
            IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
            &[],
            0
        )),
        Err(NtStatus::BUFFER_TOO_SMALL)
    );
    assert_eq!(
        f.target
            .send_synchronously(&SendRequest::ioctl(0x5500_6FFC, &[], 4)),
        Err(NtStatus::INVALID_DEVICE_REQUEST)
    );
    // Bulk loopback through write and read requests.
    assert_eq!(
        f.target.send_synchronously(&SendRequest::write(b"hello")),
        Ok((vec![], 5))
    );
    assert_eq!(
        f.target.send_synchronously(&SendRequest::read(16)),
        Ok((b"hello".to_vec(), 5))
    );
    // A length no request's ULONG length field can carry is refused, in one place for every
    // send, before anything is allocated or sent (the callback never runs).
    let too_long = usize::try_from(u64::from(u32::MAX) + 1).unwrap();
    assert_eq!(
        f.target.send_synchronously(&SendRequest::read(too_long)),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        f.target
            .send(
                &SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], too_long),
                |_| panic!("a refused send has no completion")
            )
            .err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    let reuse = f.target.reuse_create().unwrap();
    assert_eq!(
        f.target
            .reuse_send(
                reuse,
                &SendRequest::internal_ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], too_long),
                |_| panic!("a refused send has no completion")
            )
            .err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    f.target.reuse_delete(reuse).unwrap();
    f.target.io_target_clear().unwrap();
    assert_eq!(
        f.target
            .send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1)),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    f.target.io_target_set(f.io_target.clone()).unwrap();
    assert!(f
        .target
        .send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1))
        .is_ok());
    drop(bound);
    f.finish(0);
}

/// Asynchronous sends: each callback runs exactly once with its own ID, which is unique and
/// increasing; a pended request completes when the hardware event comes.
#[test]
fn request_target_sends_asynchronously() {
    let f = fixture(false);
    let bound = f.machine.enter();
    let log = Completions::default();
    f.board.set_switches(SwitchState::from_raw(0x81));
    let a = f
        .target
        .send(
            &SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1),
            recorder(&log),
        )
        .unwrap();
    let pended = park(&f.target, None, &log).unwrap();
    assert!(pended > a);
    f.machine.settle();
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "the interrupt message is parked"
    );
    f.board.flip_switch(2).unwrap();
    f.machine.settle();
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            SendCompletion {
                id: a,
                status: NtStatus::SUCCESS,
                information: 1,
                output: vec![0x81]
            },
            SendCompletion {
                id: pended,
                status: NtStatus::SUCCESS,
                information: 1,
                output: vec![0x83]
            },
        ]
    );
    drop(bound);
    f.finish(0);
}

/// Cancel: the callback reports STATUS_CANCELLED once; a second cancel and a cancel of a
/// completed or unknown ID return false and touch nothing.
#[test]
fn request_target_cancels_by_id() {
    let f = fixture(false);
    let bound = f.machine.enter();
    let log = Completions::default();
    let id = park(&f.target, None, &log).unwrap();
    assert!(f.target.cancel(id));
    f.machine.settle();
    assert_eq!(*log.lock().unwrap(), [no_data(id, NtStatus::CANCELLED)]);
    assert!(
        !f.target.cancel(id),
        "a completed ID is not cancelled again"
    );
    assert!(!f.target.cancel(RequestId::from_raw(u64::MAX)));
    // A later request never gets the old ID, and a stale cancel does not reach it.
    let next = park(&f.target, None, &log).unwrap();
    assert_ne!(next, id);
    assert!(!f.target.cancel(id));
    f.machine.settle();
    assert_eq!(log.lock().unwrap().len(), 1);
    f.board.flip_switch(1).unwrap();
    f.machine.settle();
    assert_eq!(log.lock().unwrap()[1].status, NtStatus::SUCCESS);
    drop(bound);
    f.finish(0);
}

/// Time-outs on the virtual clock: an asynchronous send reports STATUS_IO_TIMEOUT once its
/// deadline passed; a synchronous one returns it.
#[test]
fn request_target_times_out_on_the_virtual_clock() {
    let f = fixture(false);
    let bound = f.machine.enter();
    let log = Completions::default();
    let id = park(&f.target, Some(Duration::from_millis(100)), &log).unwrap();
    f.machine.advance(Duration::from_millis(99));
    assert!(log.lock().unwrap().is_empty());
    f.machine.advance(Duration::from_millis(1));
    assert_eq!(*log.lock().unwrap(), [no_data(id, NtStatus::IO_TIMEOUT)]);
    assert!(!f.target.cancel(id));

    // A synchronous send on a system thread, the clock moved by the test.
    let result = Arc::new(Mutex::new(None));
    let (t, r) = (f.target.clone(), Arc::clone(&result));
    let thread = SystemThread::spawn(&f.machine, "sync-sender", move || {
        *r.lock().unwrap() = Some(
            t.send_synchronously(
                &SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1)
                    .timeout(Duration::from_millis(250)),
            ),
        );
    })
    .unwrap();
    f.machine.advance(Duration::from_millis(200));
    assert!(result.lock().unwrap().is_none());
    f.machine.advance(Duration::from_millis(50));
    thread.wait(None);
    assert_eq!(*result.lock().unwrap(), Some(Err(NtStatus::IO_TIMEOUT)));
    // A request that completes in time is not a time-out.
    let id = park(&f.target, Some(Duration::from_secs(1)), &log).unwrap();
    f.board.flip_switch(7).unwrap();
    f.machine.advance(Duration::from_secs(2));
    let last = log.lock().unwrap().last().cloned().unwrap();
    assert_eq!((last.id, last.status), (id, NtStatus::SUCCESS));
    drop(bound);
    f.finish(0);
}

/// Passive-level completion: the callback runs from a work item at PASSIVE_LEVEL.
#[test]
fn request_target_completes_at_passive_level() {
    let f = fixture(true);
    let bound = f.machine.enter();
    let irqls = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..3 {
        let irqls = Arc::clone(&irqls);
        f.target
            .send(
                &SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1),
                move |c| {
                    irqls
                        .lock()
                        .unwrap()
                        .push((CurrentIrql::current(), c.status));
                },
            )
            .unwrap();
    }
    // The FX2 driver completes parked requests at DISPATCH_LEVEL; the client sees PASSIVE.
    f.board.flip_switch(1).unwrap();
    f.machine.settle();
    assert_eq!(
        *irqls.lock().unwrap(),
        [(Irql::Passive, NtStatus::SUCCESS); 3]
    );
    drop(bound);
    f.finish(0);
}

/// Clearing the target and closing the Module cancel what is in flight; every callback still
/// runs exactly once and nothing is left pending.
#[test]
fn request_target_clear_and_close_cancel_requests_in_flight() {
    let f = fixture(false);
    let bound = f.machine.enter();
    let log = Completions::default();
    for _ in 0..4 {
        park(&f.target, None, &log).unwrap();
    }
    f.target.io_target_clear().unwrap();
    f.machine.settle();
    assert_eq!(log.lock().unwrap().len(), 4);
    assert!(log
        .lock()
        .unwrap()
        .iter()
        .all(|c| c.status == NtStatus::CANCELLED));
    assert_eq!(
        f.target
            .send(&SendRequest::ioctl(0, &[], 1), recorder(&log))
            .err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    f.target.io_target_set(f.io_target.clone()).unwrap();
    for _ in 0..3 {
        park(&f.target, None, &log).unwrap();
    }
    drop(bound);
    let log2 = Arc::clone(&log);
    let target = f.target.clone();
    f.finish(0);
    assert_eq!(log2.lock().unwrap().len(), 7, "close completed each once");
    assert_eq!(
        target.send(&SendRequest::ioctl(0, &[], 1), |_| {}).err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
}

/// Seeded stress (Tests_DefaultTarget style): two system threads send synchronously and
/// asynchronously, cancel and time out while the test flips switches and moves the clock; every
/// accepted asynchronous send completes exactly once.
#[test]
fn request_target_seeded_stress() {
    let seed = seed("request_target_seeded_stress", 0x5EED_0001);
    let f = fixture(false);
    let bound = f.machine.enter();
    let accepted = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let threads: Vec<SystemThread> = (0..2u64)
        .map(|n| {
            let (target, accepted, completed) = (
                f.target.clone(),
                Arc::clone(&accepted),
                Arc::clone(&completed),
            );
            let mut rng = Rng::new(seed ^ (n << 40));
            SystemThread::spawn(&f.machine, &format!("sender-{n}"), move || {
                let mut mine = Vec::new();
                for _ in 0..60 {
                    match rng.below(5) {
                        0 => {
                            let r = target.send_synchronously(&SendRequest::ioctl(
                                IOCTL_OSRUSBFX2_READ_SWITCHES,
                                &[],
                                1,
                            ));
                            assert_eq!(r.map(|(o, i)| (o.len(), i)), Ok((1, 1)));
                        }
                        1 => {
                            let r = target.send_synchronously(&SendRequest::ioctl(
                                IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
                                &[u8::try_from(rng.below(256)).unwrap()],
                                0,
                            ));
                            assert!(r.is_ok(), "{r:?}");
                        }
                        2 | 3 => {
                            let c = Arc::clone(&completed);
                            let timeout = (rng.below(2) == 0)
                                .then(|| Duration::from_millis(rng.below(50) + 1));
                            let id = target
                                .send(
                                    &SendRequest::ioctl(
                                        IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
                                        &[],
                                        1,
                                    )
                                    .timeout(timeout),
                                    move |done| {
                                        assert!(matches!(
                                            done.status,
                                            NtStatus::SUCCESS
                                                | NtStatus::CANCELLED
                                                | NtStatus::IO_TIMEOUT
                                        ));
                                        c.fetch_add(1, Ordering::SeqCst);
                                    },
                                )
                                .unwrap();
                            accepted.fetch_add(1, Ordering::SeqCst);
                            mine.push(id);
                        }
                        _ => {
                            if !mine.is_empty() {
                                let pick = usize::try_from(rng.below(mine.len() as u64)).unwrap();
                                let id = mine.swap_remove(pick);
                                let _ = target.cancel(id);
                            }
                        }
                    }
                }
            })
            .unwrap()
        })
        .collect();
    let mut rng = Rng::new(seed);
    for _ in 0..40 {
        if rng.below(2) == 0 {
            f.board
                .flip_switch(u8::try_from(rng.below(8) + 1).unwrap())
                .unwrap();
        }
        f.machine.advance(Duration::from_millis(rng.below(20) + 1));
    }
    for t in &threads {
        t.wait(None);
    }
    f.machine.settle();
    drop(bound);
    let (accepted, completed) = (Arc::clone(&accepted), Arc::clone(&completed));
    f.finish(seed);
    assert_eq!(
        completed.load(Ordering::SeqCst),
        accepted.load(Ordering::SeqCst),
        "seed {seed}: every accepted send completed exactly once"
    );
}

// ---------------------------------------------------------------------------- reuse requests

/// Sends reuse request `id` as a parked interrupt-message read.
fn reuse_park(
    target: &RequestTarget,
    id: ReuseId,
    timeout: Option<Duration>,
    log: &Completions,
) -> Result<RequestId, NtStatus> {
    target.reuse_send(
        id,
        &SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1).timeout(timeout),
        recorder(log),
    )
}

/// The WDFREQUESTs alive on the machine.
fn live_requests(machine: &Machine) -> usize {
    kmdf_sim::object::live_objects(machine)
        .iter()
        .filter(|(name, _)| name.starts_with("WDFREQUEST"))
        .count()
}

/// Removes the client and FX2 devices; the machine's verdict must be clean.
fn finish_with_verdict(f: Fixture) {
    let machine = f.machine.clone();
    f.finish(0);
    let verdict = machine.verdict();
    assert!(verdict.is_ok(), "{verdict:?}");
}

/// One reuse request sent three times (dispatch and passive delivery): each completion is seen
/// once with its own request ID and the right output; a resend while in flight is refused;
/// unknown and deleted IDs are refused.
#[test]
fn request_target_reuse_sends_the_same_request_again() {
    for passive in [false, true] {
        let f = fixture(passive);
        let bound = f.machine.enter();
        let log = Completions::default();
        let reuse = f.target.reuse_create().unwrap();
        let mut ids = Vec::new();
        for (n, switches) in [0x11u8, 0x22, 0x44].into_iter().enumerate() {
            f.board.set_switches(SwitchState::from_raw(switches));
            let id = f
                .target
                .reuse_send(
                    reuse,
                    &SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1),
                    recorder(&log),
                )
                .unwrap();
            f.machine.settle();
            assert_eq!(log.lock().unwrap().len(), n + 1, "passive {passive}");
            assert_eq!(
                log.lock().unwrap()[n],
                SendCompletion {
                    id,
                    status: NtStatus::SUCCESS,
                    information: 1,
                    output: vec![switches]
                }
            );
            assert!(!ids.contains(&id));
            ids.push(id);
        }
        // In flight (parked): a resend is refused until its callback ran.
        f.board.set_switches(SwitchState::from_raw(0));
        let parked = reuse_park(&f.target, reuse, None, &log).unwrap();
        assert_eq!(
            reuse_park(&f.target, reuse, None, &log),
            Err(NtStatus::INVALID_DEVICE_STATE)
        );
        f.machine.settle();
        assert_eq!(log.lock().unwrap().len(), 3);
        f.board.flip_switch(1).unwrap();
        f.machine.settle();
        assert_eq!(
            log.lock().unwrap()[3],
            SendCompletion {
                id: parked,
                status: NtStatus::SUCCESS,
                information: 1,
                output: vec![0x01]
            }
        );
        // A write through the same request after IOCTLs.
        f.target
            .reuse_send(
                reuse,
                &SendRequest::ioctl(IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, &[0x5A], 0),
                recorder(&log),
            )
            .unwrap();
        f.machine.settle();
        assert_eq!(log.lock().unwrap()[4].status, NtStatus::SUCCESS);
        assert_eq!(f.board.snapshot().bar_graph.raw(), 0x5A);
        // Delete at rest; the ID is unknown afterwards.
        assert_eq!(live_requests(&f.machine), 1);
        f.target.reuse_delete(reuse).unwrap();
        assert_eq!(live_requests(&f.machine), 0);
        assert_eq!(
            f.target.reuse_delete(reuse),
            Err(NtStatus::INVALID_PARAMETER)
        );
        assert_eq!(
            reuse_park(&f.target, reuse, None, &log),
            Err(NtStatus::INVALID_PARAMETER)
        );
        assert_eq!(log.lock().unwrap().len(), 5);
        drop(bound);
        finish_with_verdict(f);
    }
}

/// reuse_delete of a request in flight cancels it, and returns after its callback ran (once,
/// STATUS_CANCELLED); io_target_clear cancels and deletes reuse requests too.
#[test]
fn request_target_reuse_delete_and_clear_cancel_in_flight() {
    let f = fixture(false);
    let bound = f.machine.enter();
    let log = Completions::default();
    let reuse = f.target.reuse_create().unwrap();
    let id = reuse_park(&f.target, reuse, None, &log).unwrap();
    f.machine.settle();
    assert!(log.lock().unwrap().is_empty());
    f.target.reuse_delete(reuse).unwrap();
    assert_eq!(live_requests(&f.machine), 0);
    assert_eq!(*log.lock().unwrap(), [no_data(id, NtStatus::CANCELLED)]);
    assert!(!f.target.cancel(id));
    assert_eq!(
        reuse_park(&f.target, reuse, None, &log),
        Err(NtStatus::INVALID_PARAMETER)
    );
    // cancel() by the send's request ID: the reuse request stays usable.
    let reuse = f.target.reuse_create().unwrap();
    let id = reuse_park(&f.target, reuse, None, &log).unwrap();
    assert!(f.target.cancel(id));
    f.machine.settle();
    assert_eq!(log.lock().unwrap()[1].status, NtStatus::CANCELLED);
    let again = reuse_park(&f.target, reuse, None, &log).unwrap();
    assert_ne!(again, id);
    // Clear: the one in flight is cancelled, both are deleted.
    let idle = f.target.reuse_create().unwrap();
    f.target.io_target_clear().unwrap();
    f.machine.settle();
    assert_eq!(log.lock().unwrap().len(), 3);
    assert_eq!(log.lock().unwrap()[2].id, again);
    assert_eq!(log.lock().unwrap()[2].status, NtStatus::CANCELLED);
    assert_eq!(live_requests(&f.machine), 0, "clear deleted both");
    for r in [reuse, idle] {
        assert_eq!(
            reuse_park(&f.target, r, None, &log),
            Err(NtStatus::INVALID_PARAMETER)
        );
        assert_eq!(f.target.reuse_delete(r), Err(NtStatus::INVALID_PARAMETER));
    }
    assert_eq!(f.target.reuse_create(), Err(NtStatus::INVALID_DEVICE_STATE));
    f.target.io_target_set(f.io_target.clone()).unwrap();
    let reuse = f.target.reuse_create().unwrap();
    reuse_park(&f.target, reuse, None, &log).unwrap();
    f.board.flip_switch(3).unwrap();
    f.machine.settle();
    assert_eq!(log.lock().unwrap()[3].status, NtStatus::SUCCESS);
    assert_eq!(log.lock().unwrap().len(), 4);
    drop(bound);
    finish_with_verdict(f);
}

/// Close with a reuse request in flight (and one at rest): it is cancelled, its callback runs
/// once, both are deleted and the machine's verdict is clean.
#[test]
fn request_target_close_cancels_and_deletes_reuse_requests() {
    for passive in [false, true] {
        let f = fixture(passive);
        let bound = f.machine.enter();
        let log = Completions::default();
        let busy = f.target.reuse_create().unwrap();
        let _idle = f.target.reuse_create().unwrap();
        let id = reuse_park(&f.target, busy, None, &log).unwrap();
        f.machine.settle();
        // Without a device there is no parent for its work item: creation fails with a status.
        assert_eq!(
            RequestTarget::with(())
                .passive_level(passive)
                .create(&NoParent)
                .err(),
            Some(NtStatus::INVALID_DEVICE_STATE)
        );
        // A dynamic instance on the client device, closed by delete (the device, and so the
        // target, stays): its reuse requests are gone at once.
        let on_device = ModuleCollection::create(
            ModuleInit::new(),
            CollectionConfig {
                device: Some(f.device.clone()),
                ..CollectionConfig::default()
            },
        )
        .unwrap();
        let dynamic = RequestTarget::with(())
            .passive_level(passive)
            .create(&on_device)
            .unwrap();
        dynamic.io_target_set(f.io_target.clone()).unwrap();
        let dynamic_log = Completions::default();
        let r = dynamic.reuse_create().unwrap();
        let _ = dynamic.reuse_create().unwrap();
        let dynamic_id = reuse_park(&dynamic, r, None, &dynamic_log).unwrap();
        assert_eq!(live_requests(&f.machine), 4);
        dynamic.delete();
        assert_eq!(live_requests(&f.machine), 2);
        assert_eq!(
            *dynamic_log.lock().unwrap(),
            [no_data(dynamic_id, NtStatus::CANCELLED)]
        );
        drop(on_device);
        drop(bound);
        let (target, log2) = (f.target.clone(), Arc::clone(&log));
        finish_with_verdict(f);
        assert_eq!(
            *log2.lock().unwrap(),
            [no_data(id, NtStatus::CANCELLED)],
            "passive {passive}"
        );
        assert_eq!(
            reuse_park(&target, busy, None, &log),
            Err(NtStatus::INVALID_DEVICE_STATE)
        );
        assert_eq!(target.reuse_create(), Err(NtStatus::INVALID_DEVICE_STATE));
    }
}

/// Time-outs on the virtual clock: a reuse send reports STATUS_IO_TIMEOUT once its deadline
/// passed, and the same request then completes in time.
#[test]
fn request_target_reuse_times_out_on_the_virtual_clock() {
    let f = fixture(false);
    let bound = f.machine.enter();
    let log = Completions::default();
    let reuse = f.target.reuse_create().unwrap();
    let id = reuse_park(&f.target, reuse, Some(Duration::from_millis(100)), &log).unwrap();
    f.machine.advance(Duration::from_millis(99));
    assert!(log.lock().unwrap().is_empty());
    assert_eq!(
        reuse_park(&f.target, reuse, None, &log),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    f.machine.advance(Duration::from_millis(1));
    assert_eq!(*log.lock().unwrap(), [no_data(id, NtStatus::IO_TIMEOUT)]);
    f.board.set_switches(SwitchState::from_raw(0));
    let id = reuse_park(&f.target, reuse, Some(Duration::from_secs(1)), &log).unwrap();
    f.board.flip_switch(8).unwrap();
    f.machine.advance(Duration::from_secs(2));
    assert_eq!(
        log.lock().unwrap()[1],
        SendCompletion {
            id,
            status: NtStatus::SUCCESS,
            information: 1,
            output: vec![0x80]
        }
    );
    assert_eq!(log.lock().unwrap().len(), 2);
    drop(bound);
    finish_with_verdict(f);
}

/// `SendRequest::output_prefix`: the first bytes of the output buffer go out with the request.
/// hidclass reads the report ID of `IOCTL_HID_GET_FEATURE` (`METHOD_OUT_DIRECT`) from byte 0 of
/// the output buffer, so the feature report comes back only when the prefix reached the target
/// — on the synchronous, the asynchronous and the reuse send. A prefix longer than the output
/// is refused before anything is sent.
#[test]
fn request_target_output_prefix_reaches_the_target() {
    use kmdf_sim::hid::device::{REPORT_ID_LIGHT_BAR, REPORT_ID_VERSION};
    use kmdf_sim::hid::{HidDevice, HidDeviceConfig, GUID_DEVINTERFACE_HID};
    const IOCTL_HID_GET_FEATURE: u32 = kmdf_sim::hid::IOCTL_HID_GET_FEATURE;

    let f = fixture(false);
    let bound = f.machine.enter();
    let hid = HidDevice::new(HidDeviceConfig::default());
    let collection = kmdf_sim::hid::driver::install(&f.machine, &hid).unwrap();
    let link = kmdf_sim::interface::interfaces_of_class(&f.machine, GUID_DEVINTERFACE_HID)
        .pop()
        .unwrap();
    let hid_target = f.device.create_io_target().unwrap();
    hid_target.open(TargetOpenParams::by_name(&link)).unwrap();
    f.target.io_target_set(hid_target.clone()).unwrap();
    hid.set_feature(&[REPORT_ID_LIGHT_BAR, 0x5A]).unwrap();
    let version = HidDeviceConfig::default().version_number.to_le_bytes();

    // Synchronous: the ID in byte 0 of the output names the report.
    let get =
        |id: &'static [u8]| SendRequest::ioctl(IOCTL_HID_GET_FEATURE, &[], 3).output_prefix(id);
    assert_eq!(
        f.target.send_synchronously(&get(&[REPORT_ID_LIGHT_BAR])),
        Ok((vec![REPORT_ID_LIGHT_BAR, 0x5A, 0], 3))
    );
    assert_eq!(
        f.target
            .send_synchronously(&get(&[REPORT_ID_VERSION, 0xEE, 0xEE])),
        Ok((vec![REPORT_ID_VERSION, version[0], version[1]], 3))
    );
    // Without a prefix the output starts zeroed (report ID 0: none); an ID in the input buffer
    // is not where hidclass looks.
    assert_eq!(
        f.target.send_synchronously(&SendRequest::ioctl(
            IOCTL_HID_GET_FEATURE,
            &[REPORT_ID_LIGHT_BAR],
            3
        )),
        Err(NtStatus::INVALID_PARAMETER)
    );

    // Asynchronous.
    let log = Completions::default();
    let id = f
        .target
        .send(&get(&[REPORT_ID_VERSION]), recorder(&log))
        .unwrap();
    f.machine.settle();
    assert_eq!(
        log.lock().unwrap().clone(),
        [SendCompletion {
            id,
            status: NtStatus::SUCCESS,
            information: 3,
            output: vec![REPORT_ID_VERSION, version[0], version[1]],
        }]
    );

    // A reuse request sent twice with different prefixes: each send writes its own.
    let reuse = f.target.reuse_create().unwrap();
    for (prefix, expected) in [
        (
            &[REPORT_ID_LIGHT_BAR][..],
            vec![REPORT_ID_LIGHT_BAR, 0x5A, 0],
        ),
        (
            &[REPORT_ID_VERSION][..],
            vec![REPORT_ID_VERSION, version[0], version[1]],
        ),
    ] {
        let log = Completions::default();
        f.target
            .reuse_send(
                reuse,
                &SendRequest::ioctl(IOCTL_HID_GET_FEATURE, &[], 3).output_prefix(prefix),
                recorder(&log),
            )
            .unwrap();
        f.machine.settle();
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].status, &log[0].output),
            (NtStatus::SUCCESS, &expected)
        );
    }

    // Longer than the output (a write has none): refused on every send path, nothing sent.
    let too_long = SendRequest::ioctl(IOCTL_HID_GET_FEATURE, &[], 2).output_prefix(&[2, 0, 0]);
    assert_eq!(
        f.target.send_synchronously(&too_long),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        f.target
            .send(&too_long, |_| panic!("a refused send has no completion"))
            .err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        f.target
            .reuse_send(reuse, &too_long, |_| panic!(
                "a refused send has no completion"
            ))
            .err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        f.target
            .send_synchronously(&SendRequest::write(b"x").output_prefix(&[1])),
        Err(NtStatus::INVALID_PARAMETER)
    );
    f.target.reuse_delete(reuse).unwrap();

    // Back to the FX2; the collection goes.
    f.target.io_target_set(f.io_target.clone()).unwrap();
    hid_target.close();
    hid_target.delete().unwrap();
    collection.remove().unwrap();
    drop(bound);
    finish_with_verdict(f);
}
