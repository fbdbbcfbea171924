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
use dmf_core::platform::contract::io::PlatformIoTarget;
use dmf_core::platform::contract::{Irql, PlatformIrql};
use dmf_core::platform::{CurrentIrql, IoTarget, TargetOpenParams};
use dmf_core::NtStatus;
use dmf_modules::continuous_request_target::{
    BufferDisposition, BufferOutputCallback, ContinuousRequestTarget,
    ContinuousRequestTargetConfig, StreamCompletion, StreamMode,
};
use dmf_modules::default_target::{DefaultTarget, DefaultTargetConfig};
use dmf_modules::request_target::{RequestKind, RequestSender, SendRequest};
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
