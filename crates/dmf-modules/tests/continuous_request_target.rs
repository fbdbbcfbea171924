//! ContinuousRequestTarget (dmf-upstream §5.5): streaming against the OSR FX2 function driver —
//! its parked `GET_INTERRUPT_MESSAGE` IOCTL completes on every switch flip — in manual and
//! automatic mode, at DISPATCH and PASSIVE level, plus output streaming of writes into the bulk
//! loopback; and DefaultTarget (which embeds a ContinuousRequestTarget) in an upper filter on the
//! FX2 stack (SwitchBar3); from a client driver written with DMF's client-driver API
//! (`dmf_core::device`, see `driver_support`) (modelled on C DMF's Tests_DefaultTarget streaming
//! cases, dmf-upstream §4).
#![cfg(feature = "sim")]
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

mod driver_support;
mod task_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf_core::platform::contract::device::PlatformDevice;
use dmf_core::platform::contract::io::{IoTargetState, PlatformIoTarget};
use dmf_core::platform::contract::{Irql, PlatformIrql};
use dmf_core::platform::{CurrentIrql, IoTarget, TargetOpenParams};
use dmf_core::NtStatus;
use dmf_modules::continuous_request_target::{
    BufferDisposition, BufferOutputCallback, ClientBuffer, ContinuousRequestTarget,
    ContinuousRequestTargetConfig, StreamCompletion, StreamMode,
};
use dmf_modules::default_target::{DefaultTarget, DefaultTargetConfig};
use dmf_modules::request_target::{
    RequestId, RequestKind, RequestReuse, RequestSender, RequestTarget, ReuseId, SendCompletion,
    SendRequest,
};
use kmdf_sim::fault::FaultPoint;
use kmdf_sim::fx2::ioctl::{
    GUID_DEVINTERFACE_OSRUSBFX2, IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
    IOCTL_OSRUSBFX2_READ_SWITCHES, IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
};
use kmdf_sim::fx2::{Fx2Board, SwitchState};
use kmdf_sim::pnp::{DeviceNode, NodeState, StackSpec};
use kmdf_sim::Machine;
use task_support::{assert_clean, seed, Rng};

/// A machine with an FX2 board and its driver, and the client device with one
/// ContinuousRequestTarget; `io_target` is a remote target opened on the FX2 interface (not yet
/// given to the Module).
struct Fixture {
    machine: Machine,
    board: Fx2Board,
    fx2: DeviceNode,
    node: DeviceNode,
    device: dmf_core::platform::Device,
    stream: ContinuousRequestTarget,
    io_target: IoTarget,
}

fn fixture(config: ContinuousRequestTargetConfig, passive: bool) -> Fixture {
    let machine = Machine::new();
    let board = Fx2Board::new();
    let fx2 = kmdf_sim::fx2::driver::install(&machine, &board).unwrap();
    let _bound = machine.enter();
    let slot = driver_support::install(&machine, "crtclient", false, move |init| {
        init.add(ContinuousRequestTarget::with(config.clone()).passive_level(passive))
    });
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\CRTCLIENT", "crtclient"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    let (device, stream) = driver_support::take(&slot);
    let link = kmdf_sim::interface::interfaces_of_class(&machine, GUID_DEVINTERFACE_OSRUSBFX2)
        .pop()
        .unwrap();
    let io_target = device.create_io_target().unwrap();
    io_target.open(TargetOpenParams::by_name(&link)).unwrap();
    Fixture {
        machine,
        board,
        fx2,
        node,
        device,
        stream,
        io_target,
    }
}

impl Fixture {
    /// Removes the client device (closing the Module), then the FX2 device; checks the machine.
    fn finish(self, seed: u64) {
        let _bound = self.machine.enter();
        self.node.remove().unwrap();
        assert!(!self.stream.is_streaming());
        self.fx2.remove().unwrap();
        assert_clean(&self.machine, seed);
    }
}

type Seen = Arc<Mutex<Vec<(NtStatus, Vec<u8>, Irql)>>>;

/// An output callback that records what it sees and continues while the status is a success.
fn recording(seen: &Seen) -> BufferOutputCallback {
    let seen = Arc::clone(seen);
    Arc::new(
        move |_m: &ContinuousRequestTarget, c: &StreamCompletion<'_>| {
            seen.lock()
                .unwrap()
                .push((c.status, c.output.to_vec(), CurrentIrql::current()));
            if c.status.is_success() {
                BufferDisposition::ContinueStreaming
            } else {
                BufferDisposition::StopStreaming
            }
        },
    )
}

/// The switch bytes seen, consecutive repeats folded (a request resent on a worker thread while
/// the FX2 driver still loops over its parked requests sees the same byte again, as on real
/// hardware).
fn bytes(seen: &Seen) -> Vec<u8> {
    let mut bytes: Vec<u8> = seen.lock().unwrap().iter().map(|(_, o, _)| o[0]).collect();
    bytes.dedup();
    bytes
}

fn interrupt_stream(
    count: u32,
    callback: BufferOutputCallback,
    mode: StreamMode,
) -> ContinuousRequestTargetConfig {
    ContinuousRequestTargetConfig {
        request_count: count,
        request_type: RequestKind::Ioctl,
        ioctl_code: IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
        output_buffer_size: 1,
        output_callback: Some(callback),
        mode,
        ..ContinuousRequestTargetConfig::default()
    }
}

// ---------------------------------------------------------------------------- scenarios

/// Manual mode: start keeps N requests parked; each switch flip completes them, the callback
/// sees the switch byte, and the requests are resent; stop cancels without calling the
/// callback; stop-and-wait leaves nothing in flight; start again works.
#[test]
fn continuous_request_target_streams_in_manual_mode() {
    let seen = Seen::default();
    let f = fixture(
        interrupt_stream(2, recording(&seen), StreamMode::Manual),
        false,
    );
    let bound = f.machine.enter();
    assert_eq!(f.stream.stream_start(), Err(NtStatus::INVALID_DEVICE_STATE));
    f.stream.io_target_set(f.io_target.clone()).unwrap();
    assert!(
        !f.stream.is_streaming(),
        "manual mode waits for stream_start"
    );
    f.stream.stream_start().unwrap();
    f.stream.stream_start().unwrap(); // already running: nothing more
    assert!(f.stream.is_streaming());
    for (switch, expected) in [(1u8, 0b01u8), (2, 0b11), (1, 0b10)] {
        f.board.flip_switch(switch).unwrap();
        f.machine.settle();
        let mut seen = seen.lock().unwrap();
        // Both stream requests saw the flip; one resent on a worker thread while the FX2 driver
        // still loops over its parked requests may see it once more (as on real hardware).
        assert!(seen.len() >= 2, "flip of switch {switch}: {seen:?}");
        assert!(
            seen.iter()
                .all(|e| *e == (NtStatus::SUCCESS, vec![expected], Irql::Dispatch)),
            "flip of switch {switch}: {seen:?}"
        );
        seen.clear();
    }
    f.stream.stop_and_wait().unwrap();
    assert!(!f.stream.is_streaming());
    assert!(
        seen.lock().unwrap().is_empty(),
        "a stop does not reach the callback"
    );
    f.board.flip_switch(3).unwrap();
    f.machine.settle();
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing in flight after stop_and_wait"
    );
    // One-shot sends work while not streaming and while streaming.
    assert_eq!(
        f.stream
            .send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1)),
        Ok((vec![0b110], 1))
    );
    f.stream.stream_start().unwrap();
    f.board.flip_switch(3).unwrap();
    f.machine.settle();
    let before = seen.lock().unwrap().len();
    assert!(before >= 2);
    // stream_stop returns at once; the cancelled requests end without a callback.
    f.stream.stream_stop().unwrap();
    f.machine.settle();
    assert!(!f.stream.is_streaming());
    assert_eq!(seen.lock().unwrap().len(), before);
    drop(bound);
    f.finish(0);
}

/// The callback decides: StopStreaming ends that request; when every request stopped the
/// stream is over. Errors stop by default.
#[test]
fn continuous_request_target_client_stops_the_stream() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let callback: BufferOutputCallback = Arc::new(move |_m, _c| {
        // Three completions continue, then each request stops.
        if c.fetch_add(1, Ordering::SeqCst) < 3 {
            BufferDisposition::ContinueStreaming
        } else {
            BufferDisposition::StopStreaming
        }
    });
    let f = fixture(interrupt_stream(2, callback, StreamMode::Manual), false);
    let bound = f.machine.enter();
    f.stream.io_target_set(f.io_target.clone()).unwrap();
    f.stream.stream_start().unwrap();
    // However the flips interleave with the resends, exactly three completions continue and
    // each of the two requests then stops once.
    for _ in 0..10 {
        if !f.stream.is_streaming() {
            break;
        }
        f.board.flip_switch(1).unwrap();
        f.machine.settle();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert!(!f.stream.is_streaming());
    // Without a callback: continue on success, stop on error (here: the target refuses the
    // zero-length output buffer of a READ_SWITCHES stream).
    drop(bound);
    f.finish(0);
}

/// Automatic mode: streaming runs while the device is in D0 and has a target: it starts when
/// the target is set in D0, stops in D0Exit (idle) and resumes in D0Entry.
#[test]
fn continuous_request_target_streams_in_automatic_mode() {
    let seen = Seen::default();
    let f = fixture(
        interrupt_stream(1, recording(&seen), StreamMode::Automatic),
        false,
    );
    let bound = f.machine.enter();
    f.stream.io_target_set(f.io_target.clone()).unwrap();
    assert!(f.stream.is_streaming(), "in D0 with a target: streaming");
    f.board.flip_switch(4).unwrap();
    f.machine.settle();
    assert_eq!(bytes(&seen), [0b1000]);
    f.node.idle().unwrap();
    assert!(!f.stream.is_streaming(), "D0Exit stopped and waited");
    f.board.flip_switch(4).unwrap();
    f.machine.settle();
    assert_eq!(bytes(&seen), [0b1000], "nothing streams while idle");
    f.node.wake_from_idle().unwrap();
    assert!(f.stream.is_streaming(), "D0Entry restarted it");
    f.board.flip_switch(5).unwrap();
    f.machine.settle();
    assert_eq!(bytes(&seen), [0b1000, 0b1_0000]);
    drop(bound);
    f.finish(0);
}

/// PASSIVE_LEVEL streaming, SwitchBar style: the callback runs at PASSIVE, reads the switches
/// and sets the bar graph with synchronous sends through the same Module, and continues.
#[test]
fn continuous_request_target_passive_callback_sends_synchronously() {
    let irqls = Arc::new(Mutex::new(Vec::new()));
    let i = Arc::clone(&irqls);
    let callback: BufferOutputCallback = Arc::new(move |module, c| {
        i.lock().unwrap().push(CurrentIrql::current());
        if !c.status.is_success() {
            return BufferDisposition::StopStreaming;
        }
        let (switches, _) = module
            .send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1))
            .unwrap();
        let bars = !switches[0].rotate_left(5);
        module
            .send_synchronously(&SendRequest::ioctl(
                IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
                &[bars],
                0,
            ))
            .unwrap();
        BufferDisposition::ContinueStreaming
    });
    let f = fixture(interrupt_stream(1, callback, StreamMode::Manual), true);
    let bound = f.machine.enter();
    f.stream.io_target_set(f.io_target.clone()).unwrap();
    f.stream.stream_start().unwrap();
    for switch in [1u8, 3, 8] {
        f.board.flip_switch(switch).unwrap();
        f.machine.settle();
        let raw = f.board.switches().raw();
        assert_eq!(f.board.snapshot().bar_graph.raw(), !raw.rotate_left(5));
    }
    let irqls = irqls.lock().unwrap();
    assert!(
        irqls.len() >= 3 && irqls.iter().all(|i| *i == Irql::Passive),
        "{irqls:?}"
    );
    f.stream.stop_and_wait().unwrap();
    drop(bound);
    f.finish(0);
}

/// Output streaming: a write stream whose input callback numbers each write fills the FX2 bulk
/// loopback; the client stops after three; a one-shot read gets the bytes back.
#[test]
fn continuous_request_target_streams_writes_with_input_callback() {
    let next = Arc::new(AtomicUsize::new(0));
    let (n, written) = (Arc::clone(&next), Arc::new(AtomicUsize::new(0)));
    let w = Arc::clone(&written);
    let config = ContinuousRequestTargetConfig {
        request_count: 1,
        request_type: RequestKind::Write,
        input_buffer_size: 4,
        input_callback: Some(Arc::new(move |_m, buffer: &mut [u8]| {
            buffer[0] = b'a' + u8::try_from(n.fetch_add(1, Ordering::SeqCst)).unwrap();
            1
        })),
        output_callback: Some(Arc::new(move |_m, c| {
            assert_eq!(
                (c.status, c.information, c.output.len()),
                (NtStatus::SUCCESS, 1, 0)
            );
            if w.fetch_add(1, Ordering::SeqCst) < 2 {
                BufferDisposition::ContinueStreaming
            } else {
                BufferDisposition::StopStreaming
            }
        })),
        ..ContinuousRequestTargetConfig::default()
    };
    let f = fixture(config, false);
    let bound = f.machine.enter();
    f.stream.io_target_set(f.io_target.clone()).unwrap();
    f.stream.stream_start().unwrap();
    f.machine.settle();
    assert!(!f.stream.is_streaming());
    assert_eq!(written.load(Ordering::SeqCst), 3);
    assert_eq!(
        f.stream.send_synchronously(&SendRequest::read(16)),
        Ok((b"abc".to_vec(), 3))
    );
    drop(bound);
    f.finish(0);
}

/// Clearing the target stops the stream and cancels one-shot sends; removing the device while
/// streaming closes the Module with nothing left in flight.
#[test]
fn continuous_request_target_clear_and_close_while_streaming() {
    let seen = Seen::default();
    let f = fixture(
        interrupt_stream(3, recording(&seen), StreamMode::Manual),
        false,
    );
    let bound = f.machine.enter();
    f.stream.io_target_set(f.io_target.clone()).unwrap();
    f.stream.stream_start().unwrap();
    let one_shot = Arc::new(Mutex::new(Vec::new()));
    let o = Arc::clone(&one_shot);
    f.stream
        .send(
            &SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1),
            move |c| o.lock().unwrap().push(c.status),
        )
        .unwrap();
    f.stream.io_target_clear().unwrap();
    assert!(!f.stream.is_streaming());
    assert_eq!(*one_shot.lock().unwrap(), [NtStatus::CANCELLED]);
    assert_eq!(f.stream.stream_start(), Err(NtStatus::INVALID_DEVICE_STATE));
    f.stream.io_target_set(f.io_target.clone()).unwrap();
    f.stream.stream_start().unwrap();
    f.board.flip_switch(6).unwrap();
    f.machine.settle();
    let before = seen.lock().unwrap().len();
    assert!(before >= 3);
    // Remove the device mid-stream: close stops everything.
    drop(bound);
    let stream = f.stream.clone();
    f.finish(0);
    assert_eq!(stream.stream_start(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(seen.lock().unwrap().len(), before);
}

/// Seeded stress: starts, stops, stop-and-waits, one-shot sends and switch flips in random
/// order from a system thread and the test thread; the stream always ends cleanly.
#[test]
fn continuous_request_target_seeded_start_stop_stress() {
    let seed = seed(
        "continuous_request_target_seeded_start_stop_stress",
        0x5EED_0002,
    );
    let observed = Seen::default();
    let f = fixture(
        interrupt_stream(3, recording(&observed), StreamMode::Manual),
        false,
    );
    let bound = f.machine.enter();
    f.stream.io_target_set(f.io_target.clone()).unwrap();
    let stream = f.stream.clone();
    let mut rng = Rng::new(seed ^ 0xA5);
    let worker = kmdf_sim::exec::SystemThread::spawn(&f.machine, "streamer", move || {
        for _ in 0..200 {
            match rng.below(4) {
                0 => {
                    let r = stream.stream_start();
                    assert!(matches!(r, Ok(()) | Err(NtStatus::DEVICE_BUSY)), "{r:?}");
                }
                1 => stream.stream_stop().unwrap(),
                2 => stream.stop_and_wait().unwrap(),
                _ => {
                    let r = stream.send_synchronously(&SendRequest::ioctl(
                        IOCTL_OSRUSBFX2_READ_SWITCHES,
                        &[],
                        1,
                    ));
                    assert!(r.is_ok(), "{r:?}");
                }
            }
        }
        stream.stop_and_wait().unwrap();
    })
    .unwrap();
    let mut rng = Rng::new(seed);
    for _ in 0..50 {
        f.board
            .flip_switch(u8::try_from(rng.below(8) + 1).unwrap())
            .unwrap();
        f.machine.advance(Duration::from_millis(rng.below(5)));
    }
    worker.wait(None);
    assert!(!f.stream.is_streaming());
    assert!(observed
        .lock()
        .unwrap()
        .iter()
        .all(|(s, o, _)| *s == NtStatus::SUCCESS && o.len() == 1));
    let _ = SwitchState::from_raw(0);
    drop(bound);
    f.finish(seed);
}

// ---------------------------------------------------------------------------- DefaultTarget

/// SwitchBar3: an upper filter on the FX2 stack with a DefaultTarget streaming
/// GET_INTERRUPT_MESSAGE to the FX2 driver below it (automatic mode, PASSIVE callbacks that
/// mirror the switches on the bar graph); an application still reaches the FX2 driver through
/// the filter; unplugging the board tears the stack down cleanly.
#[test]
fn default_target_streams_to_the_lower_driver_in_a_filter() {
    let machine = Machine::new();
    let board = Fx2Board::new();
    let bound = machine.enter();
    let callbacks = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&callbacks);
    let slot = driver_support::install(&machine, "switchbar3", true, move |init| {
        let c = Arc::clone(&c);
        let config = DefaultTargetConfig {
            stream: Some(ContinuousRequestTargetConfig {
                request_count: 1,
                request_type: RequestKind::Ioctl,
                ioctl_code: IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
                output_buffer_size: 1,
                mode: StreamMode::Automatic,
                ..ContinuousRequestTargetConfig::default()
            }),
            output_callback: Some(Arc::new(move |target: &DefaultTarget, done| {
                assert_eq!(CurrentIrql::current(), Irql::Passive);
                if !done.status.is_success() {
                    return BufferDisposition::StopStreaming;
                }
                c.fetch_add(1, Ordering::SeqCst);
                let bars = !done.output[0].rotate_left(5);
                let _ = target.send_synchronously(&SendRequest::ioctl(
                    IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
                    &[bars],
                    0,
                ));
                BufferDisposition::ContinueStreaming
            })),
        };
        init.add(DefaultTarget::with(config).passive_level(true))
    });
    let spec = kmdf_sim::fx2::driver::stack_spec(&machine, &board).upper_filter("switchbar3");
    let fx2 = machine.pnp().plug_in(spec).unwrap();
    assert_eq!(fx2.state(), NodeState::Started);
    let (_device, target) = driver_support::take(&slot);
    assert!(target.is_streaming(), "automatic: streaming since D0Entry");
    assert!(target.get_target().is_ok());
    for switch in [2u8, 7, 2] {
        board.flip_switch(switch).unwrap();
        machine.settle();
        let raw = board.switches().raw();
        assert_eq!(board.snapshot().bar_graph.raw(), !raw.rotate_left(5));
    }
    assert!(callbacks.load(Ordering::SeqCst) >= 3);
    assert_eq!(
        target.send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1)),
        Ok((vec![0b100_0000], 1))
    );
    // Idle and wake: D0Exit stops the stream before the FX2 powers down; D0Entry restarts it.
    fx2.idle().unwrap();
    assert!(!target.is_streaming());
    fx2.wake_from_idle().unwrap();
    assert!(target.is_streaming());
    // Unplug: the whole stack goes; the Module closes with nothing in flight.
    board.unplug();
    fx2.surprise_remove().unwrap();
    machine.settle();
    assert_eq!(
        target.get_target().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert!(!target.is_streaming());
    drop(bound);
    let _ = SwitchState::from_raw(0);
    assert_clean(&machine, 0);
}

// ---------------------------------------------------------------------------- reuse requests

type Completions = Arc<Mutex<Vec<SendCompletion>>>;

fn recorder(log: &Completions) -> impl FnOnce(SendCompletion) + Send + 'static {
    let log = Arc::clone(log);
    move |c| log.lock().unwrap().push(c)
}

/// The WDFREQUESTs alive on the machine.
fn live_requests(machine: &Machine) -> usize {
    kmdf_sim::object::live_objects(machine)
        .iter()
        .filter(|(name, _)| name.starts_with("WDFREQUEST"))
        .count()
}

/// Sends reuse request `id` as a parked interrupt-message read.
fn reuse_park(
    target: &impl RequestReuse,
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

/// `DMF_ContinuousRequestTarget_ReuseCreate/ReuseSend/ReuseDelete` (MOD-20): one request sent
/// three times with its output each time; a resend in flight is refused; another Module's ID,
/// a deleted ID and an ID whose target was cleared are refused with STATUS_INVALID_PARAMETER
/// (never a panic); io_target_clear cancels the one in flight (callback once) and deletes them;
/// close with a reuse request in flight cancels it and deletes everything (verdict clean).
#[test]
fn continuous_request_target_reuse_requests() {
    for passive in [false, true] {
        let f = fixture(ContinuousRequestTargetConfig::default(), passive);
        let bound = f.machine.enter();
        let log = Completions::default();
        // No target yet.
        assert_eq!(f.stream.reuse_create(), Err(NtStatus::INVALID_DEVICE_STATE));
        f.stream.io_target_set(f.io_target.clone()).unwrap();
        let reuse = f.stream.reuse_create().unwrap();
        assert_eq!(live_requests(&f.machine), 1);
        for (n, switches) in [0x21u8, 0x42, 0x84].into_iter().enumerate() {
            f.board.set_switches(SwitchState::from_raw(switches));
            let id = f
                .stream
                .reuse_send(
                    reuse,
                    &SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1),
                    recorder(&log),
                )
                .unwrap();
            f.machine.settle();
            assert_eq!(
                log.lock().unwrap()[n],
                SendCompletion {
                    id,
                    status: NtStatus::SUCCESS,
                    information: 1,
                    output: vec![switches]
                },
                "passive {passive}"
            );
        }
        assert_eq!(live_requests(&f.machine), 1, "the same request each time");
        // In flight: a resend is refused until its callback ran.
        f.board.set_switches(SwitchState::from_raw(0));
        let parked = reuse_park(&f.stream, reuse, None, &log).unwrap();
        assert_eq!(
            reuse_park(&f.stream, reuse, None, &log),
            Err(NtStatus::INVALID_DEVICE_STATE)
        );
        // Another Module's reuse ID is refused by this one, and this one's by the other.
        let on_device = dmf_core::module::ModuleCollection::create(
            dmf_core::module::ModuleInit::new(),
            dmf_core::module::CollectionConfig {
                device: Some(f.device.clone()),
                ..dmf_core::module::CollectionConfig::default()
            },
        )
        .unwrap();
        let other = RequestTarget::with(()).create(&on_device).unwrap();
        other.io_target_set(f.io_target.clone()).unwrap();
        let foreign = other.reuse_create().unwrap();
        assert_eq!(
            reuse_park(&f.stream, foreign, None, &log),
            Err(NtStatus::INVALID_PARAMETER)
        );
        assert_eq!(
            f.stream.reuse_delete(foreign),
            Err(NtStatus::INVALID_PARAMETER)
        );
        assert_eq!(other.reuse_delete(reuse), Err(NtStatus::INVALID_PARAMETER));
        other.reuse_delete(foreign).unwrap();
        other.delete();
        drop(on_device);
        // Clear: the one in flight is cancelled (callback once), both are deleted.
        let idle = f.stream.reuse_create().unwrap();
        f.stream.io_target_clear().unwrap();
        f.machine.settle();
        assert_eq!(log.lock().unwrap().len(), 4);
        assert_eq!(log.lock().unwrap()[3].id, parked);
        assert_eq!(log.lock().unwrap()[3].status, NtStatus::CANCELLED);
        assert_eq!(live_requests(&f.machine), 0);
        for r in [reuse, idle] {
            assert_eq!(
                reuse_park(&f.stream, r, None, &log),
                Err(NtStatus::INVALID_PARAMETER)
            );
            assert_eq!(f.stream.reuse_delete(r), Err(NtStatus::INVALID_PARAMETER));
        }
        // Close with one in flight and one at rest.
        f.stream.io_target_set(f.io_target.clone()).unwrap();
        let busy = f.stream.reuse_create().unwrap();
        let _rest = f.stream.reuse_create().unwrap();
        let last = reuse_park(&f.stream, busy, None, &log).unwrap();
        f.machine.settle();
        assert_eq!(log.lock().unwrap().len(), 4);
        drop(bound);
        let (machine, stream) = (f.machine.clone(), f.stream.clone());
        f.finish(0);
        assert_eq!(log.lock().unwrap().len(), 5);
        assert_eq!(log.lock().unwrap()[4].id, last);
        assert_eq!(log.lock().unwrap()[4].status, NtStatus::CANCELLED);
        assert_eq!(live_requests(&machine), 0);
        assert_eq!(stream.reuse_create(), Err(NtStatus::INVALID_DEVICE_STATE));
        assert_eq!(
            reuse_park(&stream, busy, None, &log),
            Err(NtStatus::INVALID_DEVICE_STATE)
        );
        let verdict = machine.verdict();
        assert!(verdict.is_ok(), "{verdict:?}");
    }
}

/// Allocation failure at every allocation of ReuseCreate, then of ReuseSend: each fails with
/// STATUS_INSUFFICIENT_RESOURCES and leaves no request behind; the reuse request a failed send
/// wanted stays usable; the machine is clean at the end.
#[test]
fn continuous_request_target_reuse_allocation_failures() {
    let f = fixture(ContinuousRequestTargetConfig::default(), false);
    let bound = f.machine.enter();
    f.stream.io_target_set(f.io_target.clone()).unwrap();
    let faults = f.machine.faults();
    let mut created = Vec::new();
    let runs = faults.sweep(FaultPoint::Allocation, |_n| {
        let result = f.stream.reuse_create();
        if faults.injected(FaultPoint::Allocation) > 0 {
            assert_eq!(result, Err(NtStatus::INSUFFICIENT_RESOURCES));
            assert_eq!(live_requests(&f.machine), created.len());
        } else {
            created.push(result.unwrap());
        }
    });
    assert!(runs > 2, "ReuseCreate allocates: {runs}");
    assert_eq!(created.len(), 1);
    let reuse = created[0];
    let log = Completions::default();
    let runs = faults.sweep(FaultPoint::Allocation, |_n| {
        let result = f.stream.reuse_send(
            reuse,
            &SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1),
            recorder(&log),
        );
        f.machine.settle();
        if faults.injected(FaultPoint::Allocation) > 0 {
            assert!(result.is_err(), "{result:?}");
        } else {
            assert!(result.is_ok(), "{result:?}");
        }
    });
    assert!(runs > 2, "ReuseSend allocates: {runs}");
    // One callback: the send that went through.
    assert_eq!(log.lock().unwrap().len(), 1);
    assert_eq!(log.lock().unwrap()[0].status, NtStatus::SUCCESS);
    assert_eq!(live_requests(&f.machine), 1);
    f.stream.reuse_delete(reuse).unwrap();
    drop(bound);
    f.finish(0);
}

// ---------------------------------------------------------------------------- BufferPut

/// A stream whose client keeps each output buffer (`…ClientAndContinueStreaming`).
fn keeping_stream(
    count: u32,
    kept: &Arc<Mutex<Vec<ClientBuffer>>>,
    misses: &Arc<AtomicUsize>,
) -> ContinuousRequestTargetConfig {
    let (kept, misses) = (Arc::clone(kept), Arc::clone(misses));
    let mut config = interrupt_stream(
        1,
        Arc::new(
            move |_m: &ContinuousRequestTarget, c: &StreamCompletion<'_>| {
                if !c.status.is_success() {
                    return BufferDisposition::StopStreaming;
                }
                match c.keep() {
                    Some(buffer) => kept.lock().unwrap().push(buffer),
                    None => {
                        misses.fetch_add(1, Ordering::SeqCst);
                    }
                }
                BufferDisposition::ContinueStreaming
            },
        ),
        StreamMode::Manual,
    );
    config.output_buffer_count = count;
    config
}

/// `DMF_ContinuousRequestTarget_BufferPut` (MOD-20): the client keeps output buffers from the
/// callback, up to `output_buffer_count`; with none left `keep` says so and the stream goes on;
/// a buffer put back can be kept again; another Module's buffer is refused; after close a put
/// is refused and the buffer freed.
#[test]
fn continuous_request_target_client_keeps_output_buffers() {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let misses = Arc::new(AtomicUsize::new(0));
    let f = fixture(keeping_stream(2, &kept, &misses), false);
    let bound = f.machine.enter();
    f.stream.io_target_set(f.io_target.clone()).unwrap();
    f.stream.stream_start().unwrap();
    f.board.set_switches(SwitchState::from_raw(0));
    let flip = |switch: u8| {
        f.board.flip_switch(switch).unwrap();
        f.machine.settle();
    };
    flip(1);
    flip(2);
    let held: Vec<Vec<u8>> = kept.lock().unwrap().iter().map(|b| b.to_vec()).collect();
    assert_eq!(held, [vec![0x01], vec![0x03]]);
    assert_eq!(misses.load(Ordering::SeqCst), 0);
    // Both spares are out: the next completion cannot keep, the stream goes on.
    flip(3);
    assert_eq!(misses.load(Ordering::SeqCst), 1);
    assert!(f.stream.is_streaming());
    // One comes back and is kept again with the next bytes.
    let first = kept.lock().unwrap().remove(0);
    f.stream.buffer_put(first).unwrap();
    flip(4);
    let held: Vec<Vec<u8>> = kept.lock().unwrap().iter().map(|b| b.to_vec()).collect();
    assert_eq!(held, [vec![0x03], vec![0x0F]]);
    // Another Module instance's buffer is refused (and freed).
    let (other_kept, other_misses) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(AtomicUsize::new(0)),
    );
    let other = fixture(keeping_stream(1, &other_kept, &other_misses), true);
    {
        let _other_bound = other.machine.enter();
        other.stream.io_target_set(other.io_target.clone()).unwrap();
        other.stream.stream_start().unwrap();
        other.board.flip_switch(5).unwrap();
        other.machine.settle();
    }
    let foreign = other_kept.lock().unwrap().pop().unwrap();
    assert_eq!(
        f.stream.buffer_put(foreign),
        Err(NtStatus::INVALID_PARAMETER)
    );
    other.finish(0);
    f.stream.stop_and_wait().unwrap();
    drop(bound);
    let stream = f.stream.clone();
    f.finish(0);
    let late = kept.lock().unwrap().pop().unwrap();
    assert_eq!(stream.buffer_put(late), Err(NtStatus::INVALID_DEVICE_STATE));
    kept.lock().unwrap().clear();
}

/// Zero-buffer mode: a stream whose requests carry no buffers (RESET_DEVICE here): the input
/// callback is never called, the output callback sees no bytes, and the client stops it.
#[test]
fn continuous_request_target_zero_buffer_mode() {
    let inputs = Arc::new(AtomicUsize::new(0));
    let outputs = Arc::new(AtomicUsize::new(0));
    let (i, o) = (Arc::clone(&inputs), Arc::clone(&outputs));
    let config = ContinuousRequestTargetConfig {
        request_count: 2,
        request_type: RequestKind::Ioctl,
        ioctl_code: kmdf_sim::fx2::ioctl::IOCTL_OSRUSBFX2_RESET_DEVICE,
        input_callback: Some(Arc::new(move |_m, _buffer: &mut [u8]| {
            i.fetch_add(1, Ordering::SeqCst);
            0
        })),
        output_callback: Some(Arc::new(move |_m, c| {
            assert_eq!(
                (c.status, c.information, c.output),
                (NtStatus::SUCCESS, 0, &[][..])
            );
            assert!(c.keep().is_none(), "no spare buffers configured");
            if o.fetch_add(1, Ordering::SeqCst) < 8 {
                BufferDisposition::ContinueStreaming
            } else {
                BufferDisposition::StopStreaming
            }
        })),
        mode: StreamMode::Manual,
        ..ContinuousRequestTargetConfig::default()
    };
    let f = fixture(config, false);
    let bound = f.machine.enter();
    f.stream.io_target_set(f.io_target.clone()).unwrap();
    f.stream.stream_start().unwrap();
    f.machine.settle();
    // Each of the two requests streams until its callback sees the count past 8.
    assert_eq!(outputs.load(Ordering::SeqCst), 10);
    assert!(!f.stream.is_streaming());
    assert_eq!(inputs.load(Ordering::SeqCst), 0);
    drop(bound);
    f.finish(0);
}

// ---------------------------------------------------------------------------- D0 flags

/// `CancelAndResendRequestInD0Callbacks`: across a system sleep the stream is stopped in
/// D0Exit (no stream request left in flight while asleep) and restarted in D0Entry; without the
/// flag a manual stream is left alone.
#[test]
fn continuous_request_target_cancel_and_resend_in_d0() {
    for flag in [true, false] {
        let seen = Seen::default();
        let mut config = interrupt_stream(2, recording(&seen), StreamMode::Manual);
        config.cancel_and_resend_request_in_d0_callbacks = flag;
        let f = fixture(config, false);
        let bound = f.machine.enter();
        f.stream.io_target_set(f.io_target.clone()).unwrap();
        f.stream.stream_start().unwrap();
        f.machine.settle();
        assert!(f.stream.is_streaming());
        f.machine
            .pnp()
            .system_sleep(kmdf_sim::pnp::SystemPowerState::S3)
            .unwrap();
        f.machine.settle();
        if flag {
            assert!(!f.stream.is_streaming(), "stopped in D0Exit");
            assert!(seen.lock().unwrap().is_empty(), "a stop calls no callback");
        }
        f.machine.pnp().system_resume().unwrap();
        f.machine.settle();
        if flag {
            assert!(f.stream.is_streaming(), "restarted in D0Entry");
            seen.lock().unwrap().clear();
            f.board.set_switches(SwitchState::from_raw(0));
            f.board.flip_switch(6).unwrap();
            f.machine.settle();
            assert_eq!(bytes(&seen), [0x20]);
        }
        f.stream.stop_and_wait().unwrap();
        drop(bound);
        f.finish(0);
    }
}

/// `PurgeAndStartTargetInD0Callbacks`: the target is stopped with its sent requests cancelled in
/// D0Exit (the stream request's callback sees STATUS_CANCELLED), a request sent meanwhile waits
/// in the target, and D0Entry starts the target again, which sends it; without the flag the
/// target stays started.
#[test]
fn continuous_request_target_purge_and_start_target_in_d0() {
    for flag in [true, false] {
        let seen = Seen::default();
        let mut config = interrupt_stream(1, recording(&seen), StreamMode::Manual);
        config.purge_and_start_target_in_d0_callbacks = flag;
        let f = fixture(config, false);
        let bound = f.machine.enter();
        f.stream.io_target_set(f.io_target.clone()).unwrap();
        f.stream.stream_start().unwrap();
        f.machine.settle();
        f.machine
            .pnp()
            .system_sleep(kmdf_sim::pnp::SystemPowerState::S3)
            .unwrap();
        f.machine.settle();
        let log = Completions::default();
        if flag {
            assert_eq!(f.io_target.state(), IoTargetState::Stopped);
            assert_eq!(
                seen.lock().unwrap().first().map(|(s, _, _)| *s),
                Some(NtStatus::CANCELLED)
            );
            f.stream
                .send(
                    &SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1),
                    recorder(&log),
                )
                .unwrap();
            f.machine.settle();
            assert!(log.lock().unwrap().is_empty(), "held in the stopped target");
        } else {
            assert_eq!(f.io_target.state(), IoTargetState::Started);
        }
        f.machine.pnp().system_resume().unwrap();
        f.machine.settle();
        assert_eq!(f.io_target.state(), IoTargetState::Started);
        if flag {
            assert_eq!(log.lock().unwrap().len(), 1);
            assert_eq!(log.lock().unwrap()[0].status, NtStatus::SUCCESS);
        }
        f.stream.stop_and_wait().unwrap();
        drop(bound);
        f.finish(0);
    }
}

// ---------------------------------------------------------------------------- DefaultTarget: reuse, BufferPut

/// An upper filter on a new FX2 stack with one DefaultTarget (`config`); the stack's node, the
/// board and the Module.
fn filter_stack(
    machine: &Machine,
    name: &str,
    config: DefaultTargetConfig,
    passive: bool,
) -> (Fx2Board, DeviceNode, DefaultTarget) {
    let board = Fx2Board::new();
    let slot = driver_support::install(machine, name, true, move |init| {
        init.add(DefaultTarget::with(config.clone()).passive_level(passive))
    });
    let spec = kmdf_sim::fx2::driver::stack_spec(machine, &board).upper_filter(name);
    let fx2 = machine.pnp().plug_in(spec).unwrap();
    assert_eq!(fx2.state(), NodeState::Started);
    let (_device, target) = driver_support::take(&slot);
    (board, fx2, target)
}

/// `DMF_DefaultTarget_ReuseCreate/ReuseSend/ReuseDelete` and `DMF_DefaultTarget_BufferPut`
/// (MOD-22), in SwitchBar3's filter: a reuse request goes to the lower driver again and again;
/// the stream's client keeps a buffer and puts it back; BufferPut without a stream config is
/// refused; the surprise removal with a reuse request in flight cancels it (callback once) and
/// leaves nothing behind.
#[test]
fn default_target_reuse_and_buffer_put_in_a_filter() {
    let machine = Machine::new();
    let bound = machine.enter();
    let kept = Arc::new(Mutex::new(Vec::<ClientBuffer>::new()));
    let k = Arc::clone(&kept);
    let config = DefaultTargetConfig {
        stream: Some(ContinuousRequestTargetConfig {
            request_count: 1,
            request_type: RequestKind::Ioctl,
            ioctl_code: IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
            output_buffer_size: 1,
            output_buffer_count: 1,
            mode: StreamMode::Automatic,
            ..ContinuousRequestTargetConfig::default()
        }),
        output_callback: Some(Arc::new(move |_target: &DefaultTarget, done| {
            if !done.status.is_success() {
                return BufferDisposition::StopStreaming;
            }
            if let Some(buffer) = done.keep() {
                k.lock().unwrap().push(buffer);
            }
            BufferDisposition::ContinueStreaming
        })),
    };
    let (board, fx2, target) = filter_stack(&machine, "switchbar3r", config, false);
    let log = Completions::default();
    let reuse = target.reuse_create().unwrap();
    for (n, switches) in [0x0Fu8, 0xF0].into_iter().enumerate() {
        board.set_switches(SwitchState::from_raw(switches));
        let id = target
            .reuse_send(
                reuse,
                &SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1),
                recorder(&log),
            )
            .unwrap();
        machine.settle();
        assert_eq!(log.lock().unwrap()[n].id, id);
        assert_eq!(log.lock().unwrap()[n].output, [switches]);
    }
    // The stream's client keeps one buffer (its only spare) and puts it back. (Setting the
    // switches above interrupted too: the stream kept those bytes; they go back first.)
    board.set_switches(SwitchState::from_raw(0));
    machine.settle();
    let held: Vec<ClientBuffer> = kept.lock().unwrap().drain(..).collect();
    assert_eq!(held.len(), 1, "one spare");
    for buffer in held {
        target.buffer_put(buffer).unwrap();
    }
    board.flip_switch(2).unwrap();
    machine.settle();
    let buffer = kept.lock().unwrap().pop().unwrap();
    assert_eq!(&*buffer, &[0x02]);
    target.buffer_put(buffer).unwrap();
    board.flip_switch(3).unwrap();
    machine.settle();
    assert_eq!(kept.lock().unwrap().len(), 1);
    // Unplug with a reuse request parked in the lower driver.
    let parked = reuse_park(&target, reuse, None, &log).unwrap();
    machine.settle();
    board.unplug();
    fx2.surprise_remove().unwrap();
    machine.settle();
    assert_eq!(log.lock().unwrap().len(), 3);
    assert_eq!(log.lock().unwrap()[2].id, parked);
    assert!(!log.lock().unwrap()[2].status.is_success());
    assert_eq!(
        target.reuse_delete(reuse),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    let late = kept.lock().unwrap().pop().unwrap();
    assert_eq!(target.buffer_put(late), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(live_requests(&machine), 0);

    // Without a stream config there is nothing to put a buffer back into.
    let (_board, fx2, single) = filter_stack(
        &machine,
        "switchbar3s",
        DefaultTargetConfig::default(),
        true,
    );
    let reuse = single.reuse_create().unwrap();
    assert!(single
        .reuse_send(
            reuse,
            &SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1),
            recorder(&log),
        )
        .is_ok());
    machine.settle();
    assert_eq!(log.lock().unwrap().len(), 4);
    single.reuse_delete(reuse).unwrap();
    fx2.remove().unwrap();
    drop(bound);
    assert_clean(&machine, 0);
}

/// Tests_DefaultTarget's AsynchronousReuse/Cancel threads as a seeded stress in SwitchBar3's
/// filter: a worker thread sends reuse requests (parked or answered at once, some with time-outs),
/// one-shot requests and synchronous requests, cancels by ID, deletes and recreates reuse
/// requests, while the test thread flips switches and moves the virtual clock; in the last
/// rounds the stack is removed (orderly or by surprise) while the worker still runs. Every
/// accepted send's callback runs exactly once, with a status a request can end with; nothing
/// leaks.
#[test]
fn default_target_seeded_reuse_stress() {
    let seed = seed("default_target_seeded_reuse_stress", 0x5EED_0D7A);
    for round in 0..4u64 {
        let machine = Machine::new();
        let bound = machine.enter();
        let (board, fx2, target) = filter_stack(
            &machine,
            "switchbar3x",
            DefaultTargetConfig::default(),
            round % 2 == 1,
        );
        let accepted = Arc::new(Mutex::new(Vec::<RequestId>::new()));
        let done = Completions::default();
        let (sent_ids, completions, module) =
            (Arc::clone(&accepted), Arc::clone(&done), target.clone());
        let mut rng = Rng::new(seed ^ round);
        let racing = round >= 2;
        let worker = kmdf_sim::exec::SystemThread::spawn(&machine, "reuser", move || {
            // Once the Module is closed (racing rounds) every call is refused with a status.
            let gone = |s: NtStatus| {
                assert!(racing, "{s:?}");
                assert!(
                    matches!(
                        s,
                        NtStatus::INVALID_DEVICE_STATE | NtStatus::INVALID_PARAMETER
                    ),
                    "{s:?}"
                );
            };
            let mut reuses: Vec<ReuseId> =
                (0..2).filter_map(|_| module.reuse_create().ok()).collect();
            for _ in 0..150 {
                let parked = rng.below(2) == 0;
                let timeout = (rng.below(3) == 0).then(|| Duration::from_millis(1 + rng.below(20)));
                let code = if parked {
                    IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE
                } else {
                    IOCTL_OSRUSBFX2_READ_SWITCHES
                };
                let request = SendRequest::ioctl(code, &[], 1).timeout(timeout);
                match rng.below(6) {
                    0 | 1 if !reuses.is_empty() => {
                        let reuse =
                            reuses[usize::try_from(rng.below(reuses.len() as u64)).unwrap()];
                        match module.reuse_send(reuse, &request, recorder(&completions)) {
                            Ok(id) => sent_ids.lock().unwrap().push(id),
                            // Still in flight.
                            Err(NtStatus::INVALID_DEVICE_STATE) => {}
                            Err(status) => gone(status),
                        }
                    }
                    2 => {
                        let id = {
                            let ids = sent_ids.lock().unwrap();
                            (!ids.is_empty())
                                .then(|| ids[usize::try_from(rng.below(ids.len() as u64)).unwrap()])
                        };
                        if let Some(id) = id {
                            let _ = module.cancel(id);
                        }
                    }
                    3 => match module.send(&request, recorder(&completions)) {
                        Ok(id) => sent_ids.lock().unwrap().push(id),
                        Err(status) => gone(status),
                    },
                    4 if !reuses.is_empty() => {
                        let reuse = reuses.swap_remove(0);
                        if let Err(status) = module.reuse_delete(reuse) {
                            gone(status);
                        }
                        match module.reuse_create() {
                            Ok(fresh) => reuses.push(fresh),
                            Err(status) => gone(status),
                        }
                    }
                    _ => {
                        let r = module.send_synchronously(&SendRequest::ioctl(
                            IOCTL_OSRUSBFX2_READ_SWITCHES,
                            &[],
                            1,
                        ));
                        if let Err(status) = r {
                            gone(status);
                        }
                    }
                }
            }
        })
        .unwrap();
        let mut rng = Rng::new(seed.rotate_left(7) ^ round);
        for step in 0..60 {
            board
                .flip_switch(u8::try_from(rng.below(8) + 1).unwrap())
                .unwrap();
            machine.advance(Duration::from_millis(rng.below(6)));
            if racing && step == 30 {
                if round == 2 {
                    fx2.remove().unwrap();
                } else {
                    board.unplug();
                    fx2.surprise_remove().unwrap();
                }
            }
        }
        worker.wait(None);
        if !racing {
            if round == 0 {
                fx2.remove().unwrap();
            } else {
                board.unplug();
                fx2.surprise_remove().unwrap();
            }
        }
        machine.settle();
        let mut ids: Vec<RequestId> = done.lock().unwrap().iter().map(|c| c.id).collect();
        ids.sort();
        let mut sent = accepted.lock().unwrap().clone();
        sent.sort();
        assert_eq!(ids, sent, "round {round}: one callback per accepted send");
        let mut statuses: Vec<NtStatus> = done.lock().unwrap().iter().map(|c| c.status).collect();
        statuses.sort_by_key(|s| s.to_raw());
        statuses.dedup();
        assert!(
            statuses.iter().all(|s| s.is_success()
                || matches!(*s, NtStatus::CANCELLED | NtStatus::IO_TIMEOUT)),
            "round {round}: {statuses:?}"
        );
        assert!(sent.len() > 20, "round {round}: {} sends", sent.len());
        assert_eq!(live_requests(&machine), 0);
        drop(bound);
        assert_clean(&machine, seed);
    }
}
