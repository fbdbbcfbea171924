//! DeviceInterfaceTarget (dmf-upstream §5.7, §3.1): a SwitchBar-like client driver waits for the
//! OSR FX2 interface, streams `GET_INTERRUPT_MESSAGE` through the Module and mirrors the switches
//! onto the bar graph; the FX2 board is unplugged and replugged mid-stream, removal is vetoed and
//! cancelled, and a seeded churn of arrivals and removals runs with I/O in flight (modelled on C
//! DMF's Tests_DeviceInterfaceTarget, dmf-upstream §4).
#![cfg(feature = "sim")]
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

mod driver_support;
mod task_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf_core::module::{ModuleHandle, ModuleState};
use dmf_core::platform::contract::device::Guid;
use dmf_core::platform::contract::io::{IoTargetState, PlatformIoTarget};
use dmf_core::platform::contract::{EventKind, Irql, PlatformEvent, PlatformIrql};
use dmf_core::platform::{CurrentIrql, Event};
use dmf_core::NtStatus;
use dmf_modules::continuous_request_target::{
    BufferDisposition, ClientBuffer, ContinuousRequestTargetConfig, StreamMode,
};
use dmf_modules::device_interface_target::{
    DeviceInterfaceTarget, DeviceInterfaceTargetConfig, TargetStateChange,
};
use dmf_modules::request_target::{
    RequestKind, RequestReuse, RequestSender, SendCompletion, SendRequest,
};
use kmdf_sim::fx2::ioctl::{
    GUID_DEVINTERFACE_OSRUSBFX2, IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
    IOCTL_OSRUSBFX2_READ_SWITCHES, IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
};
use kmdf_sim::fx2::Fx2Board;
use kmdf_sim::pnp::{DeviceNode, NodeState, StackSpec};
use kmdf_sim::Machine;
use task_support::{assert_clean, seed, Rng};

const FX2: Guid = dmf_core::platform::simulator::platform_guid(GUID_DEVINTERFACE_OSRUSBFX2);

/// What the client saw.
#[derive(Default)]
struct Events {
    post_open: AtomicUsize,
    pre_close: AtomicUsize,
    switches: Mutex<Vec<u8>>,
    errors: AtomicUsize,
}

/// SwitchBar's mapping: rotate the switch byte by 5 and invert it.
fn bars(switches: u8) -> u8 {
    !switches.rotate_left(5)
}

/// SwitchBar's "read switches, set bar graph" through the Module.
fn mirror(target: &DeviceInterfaceTarget) -> Result<u8, NtStatus> {
    let (out, _) =
        target.send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1))?;
    target.send_synchronously(&SendRequest::ioctl(
        IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
        &[bars(out[0])],
        0,
    ))?;
    Ok(out[0])
}

struct Options {
    mode: Option<StreamMode>,
    passive: bool,
    veto: Option<Arc<AtomicBool>>,
}

fn switchbar_config(events: &Arc<Events>, options: &Options) -> DeviceInterfaceTargetConfig {
    let mut config = DeviceInterfaceTargetConfig::new(FX2);
    if let Some(mode) = options.mode {
        config.stream = Some(ContinuousRequestTargetConfig {
            request_count: 1,
            request_type: RequestKind::Ioctl,
            ioctl_code: IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
            output_buffer_size: 1,
            mode,
            ..ContinuousRequestTargetConfig::default()
        });
        let events = Arc::clone(events);
        let passive = options.passive;
        config.output_callback = Some(Arc::new(move |target, completion| {
            if !completion.status.is_success() {
                events.errors.fetch_add(1, Ordering::SeqCst);
                return BufferDisposition::StopStreaming;
            }
            if passive {
                assert_eq!(CurrentIrql::current(), Irql::Passive);
                // SwitchBar: sends at PASSIVE_LEVEL from the callback.
                if mirror(target).is_err() {
                    events.errors.fetch_add(1, Ordering::SeqCst);
                }
            }
            events.switches.lock().unwrap().push(completion.output[0]);
            BufferDisposition::ContinueStreaming
        }));
    }
    if let Some(veto) = &options.veto {
        let veto = Arc::clone(veto);
        config.query_remove = Some(Arc::new(move |_target| !veto.load(Ordering::SeqCst)));
    }
    config
}

/// The machine, the client device with a DeviceInterfaceTarget, no FX2 yet.
struct Fixture {
    machine: Machine,
    node: DeviceNode,
    target: DeviceInterfaceTarget,
    events: Arc<Events>,
}

fn fixture(options: &Options) -> Fixture {
    fixture_with(options, |_config| {})
}

/// [`fixture`] with the config changed by `tweak` first.
fn fixture_with(
    options: &Options,
    tweak: impl FnOnce(&mut DeviceInterfaceTargetConfig),
) -> Fixture {
    let machine = Machine::new();
    let _bound = machine.enter();
    let events = Arc::new(Events::default());
    let e = Arc::clone(&events);
    let mut config = switchbar_config(&events, options);
    tweak(&mut config);
    let (manual, passive) = (options.mode == Some(StreamMode::Manual), options.passive);
    let slot = driver_support::install(&machine, "switchbar", false, move |init| {
        let (e1, e2) = (Arc::clone(&e), Arc::clone(&e));
        let spec = DeviceInterfaceTarget::with(config.clone())
            .passive_level(passive)
            .on_post_open(move |target| {
                e1.post_open.fetch_add(1, Ordering::SeqCst);
                assert!(target.get_target().is_ok());
                if manual {
                    target.stream_start().unwrap();
                    let _ = mirror(target);
                }
            })
            .on_pre_close(move |target| {
                e2.pre_close.fetch_add(1, Ordering::SeqCst);
                if manual {
                    target.stream_stop().unwrap();
                }
            });
        init.add(spec)
    });
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\SWITCHBAR", "switchbar"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    let (_device, target) = driver_support::take(&slot);
    Fixture {
        machine,
        node,
        target,
        events,
    }
}

/// Plugs a board (new or replugged) as an FX2 device node.
fn plug(machine: &Machine, board: &Fx2Board) -> DeviceNode {
    kmdf_sim::fx2::driver::install(machine, board).unwrap()
}

/// Unplugs the board: surprise removal of its node.
fn unplug(board: &Fx2Board, node: &DeviceNode) {
    board.unplug();
    node.surprise_remove().unwrap();
}

impl Events {
    /// The switch bytes seen, consecutive repeats folded: the FX2 driver completes every request
    /// parked while it loops over its queue, so a request resent on another processor during
    /// that loop sees the same byte again (as on real hardware).
    fn changes(&self) -> Vec<u8> {
        let mut seen = self.switches.lock().unwrap().clone();
        seen.dedup();
        seen
    }
}

impl Fixture {
    fn flip(&self, board: &Fx2Board, switch: u8) {
        board.flip_switch(switch).unwrap();
        self.machine.settle();
    }

    fn finish(self, fx2: Option<DeviceNode>, seed: u64) {
        let _bound = self.machine.enter();
        self.node.remove().unwrap();
        assert_ne!(self.target.state(), ModuleState::Opened);
        if let Some(fx2) = fx2 {
            fx2.remove().unwrap();
        }
        assert_clean(&self.machine, seed);
    }
}

// ---------------------------------------------------------------------------- scenarios

/// SwitchBar1 (manual streaming, PASSIVE): the FX2 arrives after the client started →
/// PostOpen starts streaming; switch flips reach the callback, which mirrors them on the bar
/// graph; unplug mid-stream closes the Module (PreClose) and its Methods fail; a replug resumes.
#[test]
fn device_interface_target_switchbar_survives_unplug_and_replug() {
    let f = fixture(&Options {
        mode: Some(StreamMode::Manual),
        passive: true,
        veto: None,
    });
    let bound = f.machine.enter();
    assert_eq!(
        f.target.get_target().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    let board = Fx2Board::new();
    let fx2 = plug(&f.machine, &board);
    f.machine.settle();
    assert_eq!(f.events.post_open.load(Ordering::SeqCst), 1);
    assert!(f.target.is_streaming());
    assert_eq!(
        f.target.get_target().unwrap().state(),
        IoTargetState::Started
    );
    assert_eq!(
        board.snapshot().bar_graph.raw(),
        bars(0),
        "PostOpen mirrored the switches"
    );
    for switch in [1u8, 4, 8] {
        f.flip(&board, switch);
        let raw = board.switches().raw();
        assert_eq!(f.events.switches.lock().unwrap().last(), Some(&raw));
        assert_eq!(board.snapshot().bar_graph.raw(), bars(raw));
    }
    // Unplug mid-stream.
    unplug(&board, &fx2);
    f.machine.settle();
    assert_eq!(f.events.pre_close.load(Ordering::SeqCst), 1);
    assert_ne!(f.target.state(), ModuleState::Opened);
    assert_eq!(
        f.target.get_target().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(
        f.target
            .send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1))
            .err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert!(!f.target.is_streaming());
    // Replug: streaming resumes.
    let fx2 = plug(&f.machine, &board);
    f.machine.settle();
    assert_eq!(f.events.post_open.load(Ordering::SeqCst), 2);
    f.flip(&board, 2);
    let raw = board.switches().raw();
    assert_eq!(f.events.switches.lock().unwrap().last(), Some(&raw));
    assert_eq!(board.snapshot().bar_graph.raw(), bars(raw));
    assert_eq!(f.events.errors.load(Ordering::SeqCst), 0);
    drop(bound);
    f.finish(Some(fx2), 0);
}

/// SwitchBar2 (automatic streaming, DISPATCH): the FX2 is present before the client starts;
/// streaming runs without PostOpen help; an orderly removal (query-remove, remove) closes and
/// a replug reopens.
#[test]
fn device_interface_target_automatic_streaming_across_orderly_removal() {
    let machine_board = Fx2Board::new();
    let f = fixture(&Options {
        mode: Some(StreamMode::Automatic),
        passive: false,
        veto: None,
    });
    let bound = f.machine.enter();
    let fx2 = plug(&f.machine, &machine_board);
    f.machine.settle();
    assert!(f.target.is_streaming());
    f.flip(&machine_board, 3);
    assert_eq!(f.events.changes(), [0b100]);
    fx2.remove().unwrap();
    f.machine.settle();
    assert_eq!(f.events.pre_close.load(Ordering::SeqCst), 1);
    assert_eq!(
        f.target.get_target().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    let fx2 = plug(&f.machine, &machine_board);
    f.machine.settle();
    assert!(f.target.is_streaming());
    f.flip(&machine_board, 3);
    assert_eq!(f.events.changes(), [0b100, 0]);
    assert_eq!(f.events.errors.load(Ordering::SeqCst), 0);
    drop(bound);
    f.finish(Some(fx2), 0);
}

/// Query-remove: the client's veto keeps the target open and streaming; without it the target
/// closes for query-remove (PreClose) and a cancelled removal reopens it (PostOpen again).
#[test]
fn device_interface_target_query_remove_veto_and_remove_cancel() {
    let veto = Arc::new(AtomicBool::new(true));
    let f = fixture(&Options {
        mode: Some(StreamMode::Automatic),
        passive: false,
        veto: Some(Arc::clone(&veto)),
    });
    let bound = f.machine.enter();
    let board = Fx2Board::new();
    let fx2 = plug(&f.machine, &board);
    assert!(fx2.remove().is_err(), "vetoed");
    assert_eq!(fx2.state(), NodeState::Started);
    assert_eq!(f.events.pre_close.load(Ordering::SeqCst), 0);
    assert!(f.target.is_streaming());
    f.flip(&board, 1);
    assert_eq!(f.events.changes(), [1]);

    veto.store(false, Ordering::SeqCst);
    fx2.query_remove().unwrap();
    assert_eq!(f.events.pre_close.load(Ordering::SeqCst), 1);
    assert_eq!(
        f.target.get_target().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    fx2.cancel_remove().unwrap();
    f.machine.settle();
    assert_eq!(f.events.post_open.load(Ordering::SeqCst), 2);
    assert!(f.target.is_streaming());
    assert_eq!(
        f.target.get_target().unwrap().state(),
        IoTargetState::Started
    );
    f.flip(&board, 1);
    assert_eq!(f.events.changes(), [1, 0]);
    // A query-remove followed by the removal closes for good.
    fx2.remove().unwrap();
    assert_eq!(f.events.pre_close.load(Ordering::SeqCst), 2);
    assert_eq!(f.target.state(), ModuleState::Closed);
    drop(bound);
    f.finish(None, 0);
}

/// Without a stream config the Module is RequestTarget-only: one-shot sends work while the
/// target is open, streaming Methods are refused, and asynchronous sends in flight are
/// cancelled by a removal (their callbacks still run once).
#[test]
fn device_interface_target_request_target_only_mode() {
    let f = fixture(&Options {
        mode: None,
        passive: false,
        veto: None,
    });
    let bound = f.machine.enter();
    let board = Fx2Board::new();
    let fx2 = plug(&f.machine, &board);
    assert_eq!(mirror(&f.target), Ok(0));
    assert_eq!(
        f.target.stream_start(),
        Err(NtStatus::INVALID_DEVICE_REQUEST)
    );
    assert!(f.target.symbolic_link().is_ok());
    let statuses = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..3 {
        let s = Arc::clone(&statuses);
        f.target
            .send(
                &SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1),
                move |c| s.lock().unwrap().push(c.status),
            )
            .unwrap();
    }
    f.flip(&board, 5);
    assert_eq!(*statuses.lock().unwrap(), [NtStatus::SUCCESS; 3]);
    for _ in 0..2 {
        let s = Arc::clone(&statuses);
        f.target
            .send(
                &SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1),
                move |c| s.lock().unwrap().push(c.status),
            )
            .unwrap();
    }
    unplug(&board, &fx2);
    f.machine.settle();
    let statuses = statuses.lock().unwrap().clone();
    assert_eq!(statuses.len(), 5);
    assert!(
        statuses[3..].iter().all(|s| !s.is_success()),
        "{statuses:?}"
    );
    drop(bound);
    f.finish(None, 0);
}

/// Seeded churn: a system thread keeps synchronous and asynchronous I/O going while the test
/// unplugs/replugs, removes/replugs, query-removes/cancels and flips switches in random order;
/// every accepted asynchronous send completes exactly once, the Module ends closed, the machine
/// clean.
#[test]
fn device_interface_target_seeded_arrival_removal_churn() {
    let seed = seed(
        "device_interface_target_seeded_arrival_removal_churn",
        0x5EED_0003,
    );
    let f = fixture(&Options {
        mode: Some(StreamMode::Automatic),
        passive: true,
        veto: None,
    });
    let bound = f.machine.enter();
    let board = Fx2Board::new();
    let mut fx2 = Some(plug(&f.machine, &board));
    let stop = Arc::new(AtomicBool::new(false));
    let (accepted, completed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let io = {
        let (target, stop, accepted, completed) = (
            f.target.clone(),
            Arc::clone(&stop),
            Arc::clone(&accepted),
            Arc::clone(&completed),
        );
        let mut rng = Rng::new(seed ^ 0x10);
        kmdf_sim::exec::SystemThread::spawn(&f.machine, "io", move || {
            let nap = Event::new(EventKind::Notification, false).unwrap();
            while !stop.load(Ordering::SeqCst) {
                if rng.below(2) == 0 {
                    // Completes at once, or fails: the target is gone or going.
                    let _ = mirror(&target);
                } else {
                    let c = Arc::clone(&completed);
                    let sent = target.send(
                        &SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1)
                            .timeout(Duration::from_millis(3)),
                        move |_| {
                            c.fetch_add(1, Ordering::SeqCst);
                        },
                    );
                    if sent.is_ok() {
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let _ = nap.wait(Some(Duration::from_millis(1)));
            }
        })
        .unwrap()
    };
    let mut rng = Rng::new(seed);
    for _ in 0..40 {
        match (rng.below(5), fx2.take()) {
            (0, Some(node)) => unplug(&board, &node),
            (1, Some(node)) => node.remove().unwrap(),
            (2, Some(node)) => {
                node.query_remove().unwrap();
                f.machine.advance(Duration::from_millis(1));
                node.cancel_remove().unwrap();
                fx2 = Some(node);
            }
            (_, Some(node)) => {
                let _ = board.flip_switch(u8::try_from(rng.below(8) + 1).unwrap());
                fx2 = Some(node);
            }
            (_, None) => {
                board.plug_in();
                fx2 = Some(plug(&f.machine, &board));
            }
        }
        f.machine.advance(Duration::from_millis(rng.below(4) + 1));
        let open = fx2.is_some();
        assert_eq!(
            f.target.state() == ModuleState::Opened,
            open,
            "seed {seed}: the Module is open exactly while the FX2 is there"
        );
    }
    stop.store(true, Ordering::SeqCst);
    f.machine.advance(Duration::from_millis(5));
    io.wait(None);
    f.machine.advance(Duration::from_millis(10));
    assert_eq!(
        f.events.post_open.load(Ordering::SeqCst),
        f.events.pre_close.load(Ordering::SeqCst) + usize::from(fx2.is_some()),
        "seed {seed}"
    );
    eprintln!(
        "seed {seed}: {} arrivals, {} asynchronous sends, {} switch changes seen",
        f.events.post_open.load(Ordering::SeqCst),
        accepted.load(Ordering::SeqCst),
        f.events.switches.lock().unwrap().len()
    );
    drop(bound);
    let (accepted, completed) = (Arc::clone(&accepted), Arc::clone(&completed));
    f.finish(fx2, seed);
    assert_eq!(
        completed.load(Ordering::SeqCst),
        accepted.load(Ordering::SeqCst),
        "seed {seed}: every accepted send completed exactly once"
    );
}

// ---------------------------------------------------------------------------- wave 2 Methods

type States = Arc<Mutex<Vec<TargetStateChange>>>;

/// `EvtDeviceInterfaceTargetOnPnpNotification` and `EvtDeviceInterfaceTargetOnStateChangeEx`
/// (MOD-21): the client declines an interface instance (not opened), then accepts; every
/// state change is reported in order — Open; a QueryRemove the state callback vetoes; a
/// query-remove then RemoveCancel; an orderly removal (QueryRemove, RemoveComplete); a vetoed
/// Open (target closed again, Module stays closed); a surprise removal; and Close when the
/// client's own device goes. `DMF_DeviceInterfaceTarget_GuidGet` answers while open.
#[test]
fn device_interface_target_state_changes_and_pnp_notification() {
    let states = States::default();
    let links = Arc::new(Mutex::new(Vec::<String>::new()));
    let decline = Arc::new(AtomicBool::new(true));
    let veto = Arc::new(Mutex::new(None::<TargetStateChange>));
    let (seen_states, seen_links, declining, vetoing) = (
        Arc::clone(&states),
        Arc::clone(&links),
        Arc::clone(&decline),
        Arc::clone(&veto),
    );
    let f = fixture_with(
        &Options {
            mode: Some(StreamMode::Automatic),
            passive: false,
            veto: None,
        },
        move |config| {
            config.on_pnp_notification = Some(Arc::new(move |target, link| {
                // The Module is not open yet: its Methods refuse.
                assert_eq!(target.guid_get(), Err(NtStatus::INVALID_DEVICE_STATE));
                seen_links.lock().unwrap().push(link.to_owned());
                !declining.load(Ordering::SeqCst)
            }));
            config.on_state_change = Some(Arc::new(move |_target, change| {
                assert_eq!(CurrentIrql::current(), Irql::Passive);
                seen_states.lock().unwrap().push(change);
                if *vetoing.lock().unwrap() == Some(change) {
                    Err(NtStatus::UNSUCCESSFUL)
                } else {
                    Ok(())
                }
            }));
        },
    );
    let bound = f.machine.enter();
    let take = || std::mem::take(&mut *states.lock().unwrap());
    // Declined: asked once, not opened.
    let board = Fx2Board::new();
    let fx2 = plug(&f.machine, &board);
    f.machine.settle();
    assert_eq!(links.lock().unwrap().len(), 1);
    assert!(take().is_empty());
    assert_eq!(f.events.post_open.load(Ordering::SeqCst), 0);
    assert_eq!(
        f.target.get_target().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    unplug(&board, &fx2);
    f.machine.settle();
    assert!(take().is_empty(), "nothing was open");
    // Accepted: Open, then the Module opens and streams.
    decline.store(false, Ordering::SeqCst);
    let board = Fx2Board::new();
    let fx2 = plug(&f.machine, &board);
    f.machine.settle();
    assert_eq!(links.lock().unwrap().len(), 2);
    assert!(links.lock().unwrap()[1].eq_ignore_ascii_case(&f.target.symbolic_link().unwrap()));
    assert_eq!(take(), [TargetStateChange::Open]);
    assert_eq!(f.events.post_open.load(Ordering::SeqCst), 1);
    assert_eq!(f.target.guid_get(), Ok(FX2));
    assert!(f.target.is_streaming());
    // The state callback vetoes the query-remove: the target stays open.
    *veto.lock().unwrap() = Some(TargetStateChange::QueryRemove);
    assert!(fx2.remove().is_err(), "vetoed");
    assert_eq!(take(), [TargetStateChange::QueryRemove]);
    assert_eq!(f.events.pre_close.load(Ordering::SeqCst), 0);
    assert!(f.target.is_streaming());
    // Query-remove, then cancelled: closed, reopened.
    *veto.lock().unwrap() = None;
    fx2.query_remove().unwrap();
    assert_eq!(take(), [TargetStateChange::QueryRemove]);
    assert_eq!(f.events.pre_close.load(Ordering::SeqCst), 1);
    fx2.cancel_remove().unwrap();
    f.machine.settle();
    assert_eq!(take(), [TargetStateChange::RemoveCancel]);
    assert_eq!(f.events.post_open.load(Ordering::SeqCst), 2);
    // Orderly removal.
    fx2.remove().unwrap();
    f.machine.settle();
    assert_eq!(
        take(),
        [
            TargetStateChange::QueryRemove,
            TargetStateChange::RemoveComplete
        ]
    );
    assert_eq!(f.events.pre_close.load(Ordering::SeqCst), 2);
    // A vetoed Open: the target is closed again, PostOpen does not run.
    *veto.lock().unwrap() = Some(TargetStateChange::Open);
    let board = Fx2Board::new();
    let fx2 = plug(&f.machine, &board);
    f.machine.settle();
    assert_eq!(take(), [TargetStateChange::Open]);
    assert_eq!(f.events.post_open.load(Ordering::SeqCst), 2);
    assert_eq!(
        f.target.get_target().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    unplug(&board, &fx2);
    f.machine.settle();
    assert!(take().is_empty());
    // Surprise removal of an open target: the interface goes first (Close).
    *veto.lock().unwrap() = None;
    let board = Fx2Board::new();
    let fx2 = plug(&f.machine, &board);
    f.machine.settle();
    assert_eq!(take(), [TargetStateChange::Open]);
    unplug(&board, &fx2);
    f.machine.settle();
    assert_eq!(take(), [TargetStateChange::Close]);
    assert_eq!(f.events.pre_close.load(Ordering::SeqCst), 3);
    // The client's own device goes while a target is open: Close before PreClose.
    let board = Fx2Board::new();
    let fx2 = plug(&f.machine, &board);
    f.machine.settle();
    assert_eq!(take(), [TargetStateChange::Open]);
    // Six arrivals, one remote target alive: each one given up was deleted (WdfObjectDelete).
    let targets = kmdf_sim::object::live_objects(&f.machine)
        .iter()
        .filter(|(name, driver)| name.starts_with("WDFIOTARGET") && driver == "switchbar")
        .count();
    assert_eq!(targets, 1);
    drop(bound);
    let machine = f.machine.clone();
    f.finish(Some(fx2), 0);
    assert_eq!(take(), [TargetStateChange::Close]);
    drop(machine);
}

/// `DMF_DeviceInterfaceTarget_ReuseCreate/ReuseSend/ReuseDelete` and `…_BufferPut` (MOD-21):
/// a reuse request parked in the FX2 driver at a surprise removal is cancelled (its callback
/// runs once) and deleted; its ID is refused after the board is replugged; the stream's client
/// keeps a buffer and puts it back; nothing leaks.
#[test]
fn device_interface_target_reuse_and_buffer_put_across_removal() {
    let kept = Arc::new(Mutex::new(Vec::<ClientBuffer>::new()));
    let k = Arc::clone(&kept);
    let f = fixture_with(
        &Options {
            mode: Some(StreamMode::Automatic),
            passive: false,
            veto: None,
        },
        move |config| {
            if let Some(stream) = &mut config.stream {
                stream.output_buffer_count = 1;
            }
            config.output_callback = Some(Arc::new(move |_target, completion| {
                if !completion.status.is_success() {
                    return BufferDisposition::StopStreaming;
                }
                if let Some(buffer) = completion.keep() {
                    k.lock().unwrap().push(buffer);
                }
                BufferDisposition::ContinueStreaming
            }));
        },
    );
    let bound = f.machine.enter();
    let board = Fx2Board::new();
    let fx2 = plug(&f.machine, &board);
    f.machine.settle();
    let log = Arc::new(Mutex::new(Vec::<SendCompletion>::new()));
    let recorder = |log: &Arc<Mutex<Vec<SendCompletion>>>| {
        let log = Arc::clone(log);
        move |c: SendCompletion| log.lock().unwrap().push(c)
    };
    let reuse = f.target.reuse_create().unwrap();
    f.target
        .reuse_send(
            reuse,
            &SendRequest::ioctl(IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, &[0x3C], 0),
            recorder(&log),
        )
        .unwrap();
    f.machine.settle();
    assert_eq!(log.lock().unwrap()[0].status, NtStatus::SUCCESS);
    assert_eq!(board.snapshot().bar_graph.raw(), 0x3C);
    // Keep a stream buffer and put it back.
    f.flip(&board, 4);
    let buffer = kept.lock().unwrap().pop().unwrap();
    assert_eq!(&*buffer, &[0x08]);
    f.target.buffer_put(buffer).unwrap();
    f.flip(&board, 4);
    assert_eq!(kept.lock().unwrap().len(), 1);
    // Park the reuse request, then unplug.
    let parked = f
        .target
        .reuse_send(
            reuse,
            &SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1),
            recorder(&log),
        )
        .unwrap();
    f.machine.settle();
    unplug(&board, &fx2);
    f.machine.settle();
    assert_eq!(log.lock().unwrap().len(), 2);
    assert_eq!(log.lock().unwrap()[1].id, parked);
    assert!(!log.lock().unwrap()[1].status.is_success());
    // Closed: every Method refuses; the kept buffer is freed by a refused put.
    let late = kept.lock().unwrap().pop().unwrap();
    assert_eq!(
        f.target.buffer_put(late),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(f.target.reuse_create(), Err(NtStatus::INVALID_DEVICE_STATE));
    // Replugged: the old ID is unknown to the new target.
    let board = Fx2Board::new();
    let fx2 = plug(&f.machine, &board);
    f.machine.settle();
    assert_eq!(
        f.target.reuse_send(
            reuse,
            &SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1),
            recorder(&log),
        ),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        f.target.reuse_delete(reuse),
        Err(NtStatus::INVALID_PARAMETER)
    );
    let fresh = f.target.reuse_create().unwrap();
    f.target
        .reuse_send(
            fresh,
            &SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1),
            recorder(&log),
        )
        .unwrap();
    f.machine.settle();
    assert_eq!(log.lock().unwrap().len(), 3);
    assert_eq!(log.lock().unwrap()[2].status, NtStatus::SUCCESS);
    // Left at rest for close to delete.
    drop(bound);
    kept.lock().unwrap().clear();
    f.finish(Some(fx2), 0);
    assert_eq!(log.lock().unwrap().len(), 3);
}
