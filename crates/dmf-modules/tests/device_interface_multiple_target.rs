//! DeviceInterfaceMultipleTarget (MODS-DeviceInterfaceMultipleTarget, MOD-66): a client driver
//! opens every OSR FX2 board that arrives, one target (and one stream) per board; boards arrive
//! and leave in seeded orders, sends go to a chosen board, one board is surprise-removed while
//! the others stream, query-remove is vetoed and cancelled per target, the PnP filter refuses an
//! instance, a stale target handle is refused, allocation fails mid-arrival, and the client's
//! removal (or the deletion of a dynamic instance) closes every target with requests in flight
//! (modelled on C DMF's Tests_DeviceInterfaceMultipleTarget and Tests_DeviceInterfaceTarget).
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
use dmf_core::platform::contract::{EventKind, PlatformEvent};
use dmf_core::platform::simulator::alloc_sweep;
use dmf_core::platform::Event;
use dmf_core::NtStatus;
use dmf_modules::continuous_request_target::{
    BufferDisposition, ClientBuffer, ContinuousRequestTargetConfig, StreamMode,
};
use dmf_modules::device_interface_multiple_target::{
    DeviceInterfaceMultipleTarget, DeviceInterfaceMultipleTargetConfig, Target, TargetStateChange,
};
use dmf_modules::request_target::{RequestKind, RequestReuse, RequestSender, SendRequest};
use kmdf_sim::fault::FaultPoint;
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
    /// Every state change, in order.
    states: Mutex<Vec<(Target, TargetStateChange)>>,
    /// Every successful stream completion: the target and the switch byte.
    switches: Mutex<Vec<(Target, u8)>>,
    /// Buffers the client kept from a stream.
    kept: Mutex<Vec<(Target, ClientBuffer)>>,
    errors: AtomicUsize,
    /// The state change the client vetoes, if any.
    veto: Mutex<Option<TargetStateChange>>,
    /// Arrivals the client's PnP filter declines next.
    decline_next: AtomicUsize,
    /// Links the PnP filter was asked about.
    asked: Mutex<Vec<String>>,
}

impl Events {
    fn take_states(&self) -> Vec<(Target, TargetStateChange)> {
        std::mem::take(&mut *self.states.lock().unwrap())
    }

    /// The switch bytes `target`'s stream saw, consecutive repeats folded.
    fn changes(&self, target: Target) -> Vec<u8> {
        let mut seen: Vec<u8> = self
            .switches
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, b)| *b)
            .collect();
        seen.dedup();
        seen
    }

    /// The target of the last `Open`.
    fn last_open(&self) -> Target {
        self.states
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(_, c)| *c == TargetStateChange::Open)
            .map(|(t, _)| *t)
            .expect("a target opened")
    }
}

struct Options {
    /// `None`: one-shot sends only.
    mode: Option<StreamMode>,
    maximum: usize,
    kept_buffers: u32,
}

const AUTOMATIC: Options = Options {
    mode: Some(StreamMode::Automatic),
    maximum: 8,
    kept_buffers: 0,
};

fn config(events: &Arc<Events>, options: &Options) -> DeviceInterfaceMultipleTargetConfig {
    let mut config = DeviceInterfaceMultipleTargetConfig::new(FX2);
    config.maximum_targets = options.maximum;
    if let Some(mode) = options.mode {
        config.stream = Some(ContinuousRequestTargetConfig {
            request_count: 1,
            request_type: RequestKind::Ioctl,
            ioctl_code: IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
            output_buffer_size: 1,
            output_buffer_count: options.kept_buffers,
            mode,
            ..ContinuousRequestTargetConfig::default()
        });
        let e = Arc::clone(events);
        config.output_callback = Some(Arc::new(move |_module, target, completion| {
            if !completion.status.is_success() {
                e.errors.fetch_add(1, Ordering::SeqCst);
                return BufferDisposition::StopStreaming;
            }
            e.switches
                .lock()
                .unwrap()
                .push((target, completion.output[0]));
            if let Some(buffer) = completion.keep() {
                e.kept.lock().unwrap().push((target, buffer));
            }
            BufferDisposition::ContinueStreaming
        }));
    }
    let e = Arc::clone(events);
    config.on_state_change = Some(Arc::new(move |module, target, change| {
        e.states.lock().unwrap().push((target, change));
        if change == TargetStateChange::Open {
            // Methods on the new target work from its Open notification.
            assert!(module.get(target).is_ok());
            assert_eq!(module.guid_get(), Ok(FX2));
        }
        if *e.veto.lock().unwrap() == Some(change) {
            Err(NtStatus::UNSUCCESSFUL)
        } else {
            Ok(())
        }
    }));
    let e = Arc::clone(events);
    config.on_pnp_notification = Some(Arc::new(move |_module, link| {
        e.asked.lock().unwrap().push(link.to_owned());
        let declined = e
            .decline_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        !declined
    }));
    config
}

/// The machine, the client device with a DeviceInterfaceMultipleTarget, no FX2 yet.
struct Fixture {
    machine: Machine,
    node: DeviceNode,
    module: DeviceInterfaceMultipleTarget,
    events: Arc<Events>,
}

fn fixture(options: &Options) -> Fixture {
    fixture_on(&Machine::new(), options)
}

fn fixture_on(machine: &Machine, options: &Options) -> Fixture {
    let _bound = machine.enter();
    let events = Arc::new(Events::default());
    let config = config(&events, options);
    let e = Arc::clone(&events);
    let slot = driver_support::install(machine, "multiclient", false, move |init| {
        let (e1, e2) = (Arc::clone(&e), Arc::clone(&e));
        init.add(
            DeviceInterfaceMultipleTarget::with(config.clone())
                .on_post_open(move |_module| {
                    e1.post_open.fetch_add(1, Ordering::SeqCst);
                })
                .on_pre_close(move |_module| {
                    e2.pre_close.fetch_add(1, Ordering::SeqCst);
                }),
        )
    });
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\MULTICLIENT", "multiclient"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    let (_device, module) = driver_support::take(&slot);
    Fixture {
        machine: machine.clone(),
        node,
        module,
        events,
    }
}

fn plug(machine: &Machine, board: &Fx2Board) -> DeviceNode {
    let node = kmdf_sim::fx2::driver::install(machine, board).unwrap();
    machine.settle();
    node
}

fn unplug(machine: &Machine, board: &Fx2Board, node: &DeviceNode) {
    board.unplug();
    node.surprise_remove().unwrap();
    machine.settle();
}

fn read_switches(module: &DeviceInterfaceMultipleTarget, target: Target) -> Result<u8, NtStatus> {
    let (out, _) = module.at(target).send_synchronously(&SendRequest::ioctl(
        IOCTL_OSRUSBFX2_READ_SWITCHES,
        &[],
        1,
    ))?;
    Ok(out[0])
}

fn open_targets(module: &DeviceInterfaceMultipleTarget) -> Vec<Target> {
    let mut listed = [Target::default(); 8];
    match module.targets(&mut listed) {
        Ok(count) => listed[..count].to_vec(),
        Err(status) => {
            assert_eq!(status, NtStatus::INVALID_DEVICE_STATE);
            Vec::new()
        }
    }
}

impl Fixture {
    fn flip(&self, board: &Fx2Board, switch: u8) {
        board.flip_switch(switch).unwrap();
        self.machine.settle();
    }

    fn finish(self, fx2: Vec<DeviceNode>, seed: u64) {
        let _bound = self.machine.enter();
        self.node.remove().unwrap();
        assert_ne!(self.module.state(), ModuleState::Opened);
        for node in fx2 {
            node.remove().unwrap();
        }
        assert_clean(&self.machine, seed);
        assert_eq!(
            kmdf_sim::object::live_objects(&self.machine)
                .iter()
                .filter(|(name, driver)| name.starts_with("WDFIOTARGET") && driver == "multiclient")
                .count(),
            0,
            "every remote target was deleted"
        );
    }
}

// ---------------------------------------------------------------------------- scenarios

/// Two boards, one stream each: a flip on one board reaches its own target's stream only; a
/// send to a chosen target reaches its board only; one board is surprise-removed while the other
/// streams: its handle goes stale (`STATUS_INVALID_HANDLE`, never a panic), the Module stays
/// open, and it closes only when the last board goes. Kept buffers go back to the target that
/// handed them out.
#[test]
fn dimt_two_boards_stream_each_and_survive_surprise_removal_of_one() {
    let f = fixture(&Options {
        kept_buffers: 1,
        ..AUTOMATIC
    });
    let bound = f.machine.enter();
    assert!(open_targets(&f.module).is_empty());
    let (board_a, board_b) = (Fx2Board::new(), Fx2Board::new());
    let fx2_a = plug(&f.machine, &board_a);
    let a = f.events.last_open();
    let fx2_b = plug(&f.machine, &board_b);
    let b = f.events.last_open();
    assert_ne!(a, b);
    assert_eq!(
        f.events.take_states(),
        [(a, TargetStateChange::Open), (b, TargetStateChange::Open)]
    );
    assert_eq!(f.events.post_open.load(Ordering::SeqCst), 1, "opened once");
    let mut listed = open_targets(&f.module);
    listed.sort();
    assert_eq!(listed, [a, b]);
    assert!(f.module.is_streaming(a) && f.module.is_streaming(b));
    assert_eq!(f.module.get(a).unwrap().state(), IoTargetState::Started);
    assert_ne!(f.module.symbolic_link(a), f.module.symbolic_link(b));
    // Streams are per board.
    f.flip(&board_a, 1);
    f.flip(&board_b, 8);
    assert_eq!(f.events.changes(a), [0b1]);
    assert_eq!(f.events.changes(b), [0b1000_0000]);
    assert_eq!(read_switches(&f.module, a), Ok(0b1));
    assert_eq!(read_switches(&f.module, b), Ok(0b1000_0000));
    // A send to a chosen target reaches its board only.
    f.module
        .at(b)
        .send_synchronously(&SendRequest::ioctl(
            IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
            &[0x5A],
            0,
        ))
        .unwrap();
    assert_eq!(board_b.snapshot().bar_graph.raw(), 0x5A);
    assert_ne!(board_a.snapshot().bar_graph.raw(), 0x5A);
    // Kept buffers: one per target's spares; put back to the target that handed it out.
    let kept: Vec<_> = std::mem::take(&mut *f.events.kept.lock().unwrap());
    assert_eq!(kept.len(), 2);
    for (target, buffer) in kept {
        let other = if target == a { b } else { a };
        let expected = if target == a { 0b1 } else { 0b1000_0000 };
        assert_eq!(&*buffer, &[expected]);
        if target == a {
            // Not a buffer of the other target's stream: refused (and freed).
            assert_eq!(
                f.module.buffer_put(other, buffer),
                Err(NtStatus::INVALID_PARAMETER)
            );
        } else {
            f.module.buffer_put(target, buffer).unwrap();
        }
    }
    // Surprise removal of board A while B streams.
    unplug(&f.machine, &board_a, &fx2_a);
    assert_eq!(f.events.take_states(), [(a, TargetStateChange::Close)]);
    assert_eq!(f.events.pre_close.load(Ordering::SeqCst), 0);
    assert_eq!(f.module.state(), ModuleState::Opened);
    assert_eq!(open_targets(&f.module), [b]);
    // A's handle is stale: every Method refuses it.
    let request = SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1);
    assert_eq!(
        f.module.at(a).send_synchronously(&request).err(),
        Some(NtStatus::INVALID_HANDLE)
    );
    assert_eq!(
        f.module.at(a).send(&request, |_| {}).err(),
        Some(NtStatus::INVALID_HANDLE)
    );
    assert_eq!(
        f.module.at(a).reuse_create().err(),
        Some(NtStatus::INVALID_HANDLE)
    );
    assert_eq!(f.module.get(a).err(), Some(NtStatus::INVALID_HANDLE));
    assert_eq!(f.module.stream_start(a), Err(NtStatus::INVALID_HANDLE));
    assert_eq!(f.module.stream_stop(a), Err(NtStatus::INVALID_HANDLE));
    assert_eq!(
        f.module.symbolic_link(a).err(),
        Some(NtStatus::INVALID_HANDLE)
    );
    assert_eq!(
        f.module.target_reference(a, |_| ()).err(),
        Some(NtStatus::INVALID_HANDLE)
    );
    assert!(!f.module.is_streaming(a));
    assert_eq!(
        f.module.get(Target::default()).err(),
        Some(NtStatus::INVALID_HANDLE)
    );
    // B streams on.
    f.flip(&board_b, 2);
    assert_eq!(f.events.changes(b), [0b1000_0000, 0b1000_0010]);
    assert_eq!(
        f.module
            .target_reference(b, PlatformIoTarget::state)
            .unwrap(),
        IoTargetState::Started
    );
    assert_eq!(f.events.errors.load(Ordering::SeqCst), 0);
    // The last board goes: the Module closes; every Method refuses.
    unplug(&f.machine, &board_b, &fx2_b);
    assert_eq!(f.events.take_states(), [(b, TargetStateChange::Close)]);
    assert_eq!(f.events.pre_close.load(Ordering::SeqCst), 1);
    assert_ne!(f.module.state(), ModuleState::Opened);
    assert_eq!(f.module.get(b).err(), Some(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(f.module.guid_get(), Err(NtStatus::INVALID_DEVICE_STATE));
    f.events.kept.lock().unwrap().clear();
    drop(bound);
    f.finish(Vec::new(), 0);
}

/// Three boards arrive and leave in seeded orders (surprise removal, orderly removal,
/// query-remove then cancel, replug) while a system thread sends to whichever targets are
/// listed (synchronous and asynchronous sends, stale handles included); after every step each
/// open target answers with its own board's switches, the targets listed are exactly the boards
/// present, and the Module is open exactly while one is; every accepted asynchronous send
/// completes exactly once.
#[test]
fn dimt_three_boards_seeded_arrival_and_removal_orders() {
    let seed = seed(
        "dimt_three_boards_seeded_arrival_and_removal_orders",
        0x5EED_0022,
    );
    let f = fixture(&AUTOMATIC);
    let bound = f.machine.enter();
    let boards = [Fx2Board::new(), Fx2Board::new(), Fx2Board::new()];
    // Board i shows switch i + 1 only: a target's switch byte names its board.
    for (i, board) in boards.iter().enumerate() {
        board.flip_switch(u8::try_from(i + 1).unwrap()).unwrap();
    }
    let mut nodes: [Option<DeviceNode>; 3] = [None, None, None];
    let stop = Arc::new(AtomicBool::new(false));
    let (accepted, completed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let io = {
        let (module, stop, accepted, completed) = (
            f.module.clone(),
            Arc::clone(&stop),
            Arc::clone(&accepted),
            Arc::clone(&completed),
        );
        let mut rng = Rng::new(seed ^ 0x10);
        task_support::spawn(&f.machine, "io", move || {
            let nap = Event::new(EventKind::Notification, false).unwrap();
            let mut known = Vec::<Target>::new();
            while !stop.load(Ordering::SeqCst) {
                // Remember every target ever listed: the stale ones are sent to as well.
                for target in open_targets(&module) {
                    if !known.contains(&target) {
                        known.push(target);
                    }
                }
                if let Some(&target) = known.get(
                    usize::try_from(rng.below(u64::try_from(known.len()).unwrap() + 1)).unwrap(),
                ) {
                    if rng.below(2) == 0 {
                        match read_switches(&module, target) {
                            Ok(byte) => assert_eq!(byte.count_ones(), 1),
                            // The target left or is leaving: refused or cancelled.
                            Err(status) => assert!(status.is_error(), "{status:?}"),
                        }
                    } else {
                        let c = Arc::clone(&completed);
                        let sent = module.at(target).send(
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
                }
                let _ = nap.wait(Some(Duration::from_millis(1)));
            }
        })
    };
    let mut rng = Rng::new(seed);
    for step in 0..30 {
        let i = usize::try_from(rng.below(3)).unwrap();
        match (nodes[i].take(), rng.below(4)) {
            (None, _) => {
                boards[i].plug_in();
                nodes[i] = Some(plug(&f.machine, &boards[i]));
            }
            (Some(node), 0) => unplug(&f.machine, &boards[i], &node),
            (Some(node), 1) => {
                node.remove().unwrap();
                f.machine.settle();
            }
            (Some(node), _) => {
                node.query_remove().unwrap();
                f.machine.settle();
                node.cancel_remove().unwrap();
                f.machine.settle();
                nodes[i] = Some(node);
            }
        }
        f.machine.advance(Duration::from_millis(rng.below(4) + 1));
        let present: Vec<u8> = (0..3u8)
            .filter(|&i| nodes[usize::from(i)].is_some())
            .map(|i| 1 << i)
            .collect();
        let mut answered: Vec<u8> = open_targets(&f.module)
            .into_iter()
            .map(|t| read_switches(&f.module, t).unwrap())
            .collect();
        answered.sort_unstable();
        assert_eq!(answered, present, "seed {seed} step {step}");
        assert_eq!(
            f.module.state() == ModuleState::Opened,
            !present.is_empty(),
            "seed {seed} step {step}"
        );
    }
    let opens = f
        .events
        .take_states()
        .iter()
        .filter(|(_, c)| *c == TargetStateChange::Open)
        .count();
    stop.store(true, Ordering::SeqCst);
    f.machine.advance(Duration::from_millis(5));
    io.wait(None);
    f.machine.advance(Duration::from_millis(10));
    eprintln!(
        "seed {seed}: {opens} target arrivals, {} asynchronous sends",
        accepted.load(Ordering::SeqCst)
    );
    drop(bound);
    f.finish(nodes.into_iter().flatten().collect(), seed);
    assert_eq!(
        completed.load(Ordering::SeqCst),
        accepted.load(Ordering::SeqCst),
        "seed {seed}: every accepted send completed exactly once"
    );
}

/// Query-remove per target: the state callback's veto keeps that target open; an accepted
/// query-remove closes that target only (`STATUS_INVALID_DEVICE_STATE` for it, the other one
/// streams on, the Module stays open); remove-cancel reopens it and its stream; with both
/// query-removed the Module closes, and a cancel opens it again.
#[test]
fn dimt_query_remove_veto_and_cancel_per_target() {
    let f = fixture(&AUTOMATIC);
    let bound = f.machine.enter();
    let (board_a, board_b) = (Fx2Board::new(), Fx2Board::new());
    let fx2_a = plug(&f.machine, &board_a);
    let a = f.events.last_open();
    let fx2_b = plug(&f.machine, &board_b);
    let b = f.events.last_open();
    f.events.take_states();
    // Vetoed.
    *f.events.veto.lock().unwrap() = Some(TargetStateChange::QueryRemove);
    assert!(fx2_a.remove().is_err(), "vetoed");
    assert_eq!(fx2_a.state(), NodeState::Started);
    assert_eq!(
        f.events.take_states(),
        [(a, TargetStateChange::QueryRemove)]
    );
    assert!(f.module.is_streaming(a));
    f.flip(&board_a, 3);
    assert_eq!(f.events.changes(a), [0b100]);
    // Accepted: A closes for query-remove, B goes on.
    *f.events.veto.lock().unwrap() = None;
    fx2_a.query_remove().unwrap();
    assert_eq!(
        f.events.take_states(),
        [(a, TargetStateChange::QueryRemove)]
    );
    assert_eq!(
        read_switches(&f.module, a),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(f.module.get(a).err(), Some(NtStatus::INVALID_DEVICE_STATE));
    assert!(!f.module.is_streaming(a));
    assert_eq!(open_targets(&f.module), [b]);
    assert_eq!(f.events.pre_close.load(Ordering::SeqCst), 0);
    f.flip(&board_b, 5);
    assert_eq!(f.events.changes(b), [0b1_0000]);
    // Cancelled: A reopens and streams.
    fx2_a.cancel_remove().unwrap();
    f.machine.settle();
    assert_eq!(
        f.events.take_states(),
        [(a, TargetStateChange::RemoveCancel)]
    );
    assert!(f.module.is_streaming(a));
    assert_eq!(f.module.get(a).unwrap().state(), IoTargetState::Started);
    f.flip(&board_a, 3);
    assert_eq!(f.events.changes(a), [0b100, 0]);
    // Both query-removed: the Module closes; a cancel opens it again.
    fx2_a.query_remove().unwrap();
    fx2_b.query_remove().unwrap();
    assert_eq!(f.events.pre_close.load(Ordering::SeqCst), 1);
    assert_ne!(f.module.state(), ModuleState::Opened);
    fx2_b.cancel_remove().unwrap();
    f.machine.settle();
    assert_eq!(f.events.post_open.load(Ordering::SeqCst), 2);
    assert_eq!(open_targets(&f.module), [b]);
    // A query-removed target then removed (IRP_MN_REMOVE_DEVICE after the query): RemoveComplete,
    // handle stale.
    fx2_a.complete_remove(NodeState::Removed).unwrap();
    f.machine.settle();
    let states = f.events.take_states();
    assert!(
        states.contains(&(a, TargetStateChange::RemoveComplete)),
        "{states:?}"
    );
    assert_eq!(f.module.get(a).err(), Some(NtStatus::INVALID_HANDLE));
    assert_eq!(read_switches(&f.module, b), Ok(0b1_0000));
    assert_eq!(f.events.errors.load(Ordering::SeqCst), 0);
    drop(bound);
    f.finish(vec![fx2_b], 0);
}

/// The PnP filter refuses one instance (it is not opened, no state change, not even at its
/// removal), `maximum_targets` refuses one beyond the bound (traced); the others work.
#[test]
fn dimt_filter_refuses_an_instance_and_the_bound_holds() {
    let f = fixture(&Options {
        maximum: 2,
        ..AUTOMATIC
    });
    let bound = f.machine.enter();
    let boards = [Fx2Board::new(), Fx2Board::new(), Fx2Board::new()];
    let fx2_0 = plug(&f.machine, &boards[0]);
    let a = f.events.last_open();
    f.events.take_states();
    // Declined: asked once, not opened.
    f.events.decline_next.store(1, Ordering::SeqCst);
    let fx2_1 = plug(&f.machine, &boards[1]);
    assert_eq!(f.events.asked.lock().unwrap().len(), 2);
    assert!(f.events.take_states().is_empty(), "declined: not opened");
    assert_eq!(open_targets(&f.module), [a]);
    // Board 2 opens: the second target of two.
    let fx2_2 = plug(&f.machine, &boards[2]);
    let c = f.events.last_open();
    assert_eq!(open_targets(&f.module).len(), 2);
    f.events.take_states();
    // The declined board leaves without a word and comes back: accepted by the filter, but
    // the bound is 2: not opened, traced.
    unplug(&f.machine, &boards[1], &fx2_1);
    assert!(f.events.take_states().is_empty());
    boards[1].plug_in();
    let fx2_1 = plug(&f.machine, &boards[1]);
    assert_eq!(f.events.asked.lock().unwrap().len(), 4);
    assert!(f.events.take_states().is_empty());
    assert_eq!(open_targets(&f.module).len(), 2);
    let traced = f
        .machine
        .trace()
        .events()
        .into_iter()
        .filter(|e| e.text.contains("maximum_targets"))
        .count();
    assert_eq!(traced, 1);
    assert_eq!(read_switches(&f.module, a), Ok(0));
    assert_eq!(read_switches(&f.module, c), Ok(0));
    drop(bound);
    f.finish(vec![fx2_0, fx2_1, fx2_2], 0);
}

/// Allocation failure mid-arrival (every allocation of a third board's arrival fails in turn):
/// the third target is opened or not, never half; the two open targets keep working; removal
/// leaves nothing behind (clean verdict each run).
#[test]
fn dimt_allocation_failure_mid_arrival_leaves_the_others_working() {
    let partial = Arc::new(AtomicUsize::new(0));
    let p = Arc::clone(&partial);
    let report = alloc_sweep(move |fail_at| {
        let machine = Machine::new();
        let f = fixture_on(&machine, &AUTOMATIC);
        let bound = machine.enter();
        let boards = [Fx2Board::new(), Fx2Board::new(), Fx2Board::new()];
        let mut nodes = vec![plug(&machine, &boards[0]), plug(&machine, &boards[1])];
        let before = open_targets(&f.module);
        assert_eq!(before.len(), 2);
        if fail_at > 0 {
            machine.faults().fail_nth(FaultPoint::Allocation, fail_at);
        }
        let third = kmdf_sim::fx2::driver::install(&machine, &boards[2]);
        machine.settle();
        machine.faults().disarm(FaultPoint::Allocation);
        let after = open_targets(&f.module);
        if after.len() == 2 {
            p.fetch_add(1, Ordering::SeqCst);
            // Either the board's own driver failed to start, or the Module traced why it did
            // not open the instance.
            let traced = machine
                .trace()
                .events()
                .into_iter()
                .any(|e| e.text.contains("not opened"));
            assert!(
                third.is_err() || traced,
                "fail_at {fail_at}: silent failure"
            );
        }
        assert!(after.len() == 2 || after.len() == 3, "{after:?}");
        for &target in &before {
            assert_eq!(read_switches(&f.module, target), Ok(0), "fail_at {fail_at}");
        }
        if let Some(&third_target) = after.iter().find(|t| !before.contains(t)) {
            // Opened whole: it answers too.
            assert_eq!(
                read_switches(&f.module, third_target),
                Ok(0),
                "fail_at {fail_at}"
            );
        }
        if let Ok(node) = third {
            nodes.push(node);
        }
        drop(bound);
        f.finish(nodes, fail_at);
        machine
    })
    .unwrap();
    eprintln!(
        "{} allocation failure points swept, {} kept the third target out",
        report.points,
        partial.load(Ordering::SeqCst)
    );
    assert!(report.points > 0);
    assert!(
        partial.load(Ordering::SeqCst) > 0,
        "some failure kept the third target out"
    );
}

/// Close of the Module with requests in flight on every target (one-shot mode): parked
/// asynchronous sends and a reuse send on each of three boards, and a synchronous send parked on
/// one from a system thread; the client's removal cancels them all, every callback runs once,
/// the synchronous send returns, nothing is left.
#[test]
fn dimt_close_with_requests_in_flight_on_every_target() {
    let f = fixture(&Options {
        mode: None,
        maximum: 8,
        kept_buffers: 0,
    });
    let bound = f.machine.enter();
    let boards = [Fx2Board::new(), Fx2Board::new(), Fx2Board::new()];
    let nodes: Vec<DeviceNode> = boards.iter().map(|b| plug(&f.machine, b)).collect();
    let targets = open_targets(&f.module);
    assert_eq!(targets.len(), 3);
    assert_eq!(
        f.module.stream_start(targets[0]),
        Err(NtStatus::INVALID_DEVICE_REQUEST)
    );
    let parked = SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1);
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let mut accepted = 0;
    for &target in &targets {
        for _ in 0..2 {
            let s = Arc::clone(&statuses);
            f.module
                .at(target)
                .send(&parked, move |c| s.lock().unwrap().push(c.status))
                .unwrap();
            accepted += 1;
        }
        let reuse = f.module.at(target).reuse_create().unwrap();
        let s = Arc::clone(&statuses);
        f.module
            .at(target)
            .reuse_send(reuse, &parked, move |c| s.lock().unwrap().push(c.status))
            .unwrap();
        accepted += 1;
    }
    let synchronous = {
        let (module, target) = (f.module.clone(), targets[1]);
        task_support::spawn(&f.machine, "sync", move || {
            let result = module.at(target).send_synchronously(&SendRequest::ioctl(
                IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
                &[],
                1,
            ));
            assert!(result.is_err(), "{result:?}");
        })
    };
    f.machine.settle();
    assert!(statuses.lock().unwrap().is_empty(), "all parked");
    drop(bound);
    let machine = f.machine.clone();
    let events = Arc::clone(&f.events);
    let module = f.module.clone();
    {
        let _bound = machine.enter();
        f.node.remove().unwrap();
        synchronous.wait(None);
        let statuses = statuses.lock().unwrap().clone();
        assert_eq!(statuses.len(), accepted, "every callback ran once");
        assert!(statuses.iter().all(|s| !s.is_success()), "{statuses:?}");
        let closes = events
            .take_states()
            .iter()
            .filter(|(_, c)| *c == TargetStateChange::Close)
            .count();
        assert_eq!(closes, 3, "every target closed");
        assert_eq!(events.pre_close.load(Ordering::SeqCst), 1);
        assert_ne!(module.state(), ModuleState::Opened);
        for node in nodes {
            node.remove().unwrap();
        }
        assert_clean(&machine, 0);
    }
}

/// Manual streaming: the client starts a target's stream from its `Open` notification and
/// stops one target's stream while the other goes on.
#[test]
fn dimt_manual_streams_start_and_stop_per_target() {
    let f = fixture(&Options {
        mode: Some(StreamMode::Manual),
        maximum: 8,
        kept_buffers: 0,
    });
    let bound = f.machine.enter();
    let (board_a, board_b) = (Fx2Board::new(), Fx2Board::new());
    let fx2_a = plug(&f.machine, &board_a);
    let a = f.events.last_open();
    let fx2_b = plug(&f.machine, &board_b);
    let b = f.events.last_open();
    assert!(!f.module.is_streaming(a));
    f.module.stream_start(a).unwrap();
    f.module.stream_start(b).unwrap();
    f.flip(&board_a, 1);
    f.flip(&board_b, 2);
    f.module.stream_stop(a).unwrap();
    assert!(!f.module.is_streaming(a));
    f.flip(&board_a, 1);
    f.flip(&board_b, 2);
    assert_eq!(f.events.changes(a), [0b1]);
    assert_eq!(f.events.changes(b), [0b10, 0]);
    drop(bound);
    f.finish(vec![fx2_a, fx2_b], 0);
}

/// A client driver whose device adds no Module: its `DmfDevice` is kept to create the Module
/// dynamically from its collection.
fn dynamic_client(machine: &Machine) -> (DeviceNode, dmf_core::device::DmfDevice) {
    use dmf_core::device::DmfDeviceInit;
    use dmf_core::platform::contract::device::DeviceAttributes;
    use dmf_core::platform::{simulator, DriverConfig};
    let slot: Arc<Mutex<Option<dmf_core::device::DmfDevice>>> = Arc::default();
    let s = Arc::clone(&slot);
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            dmf.set_modules_add(|_device, _modules| Ok(()))?;
            dmf.create_device(DeviceAttributes::default())?;
            *s.lock().unwrap() = Some(dmf.modules_create()?);
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(machine, "dynmulti", config);
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\DYNMULTI", "dynmulti"))
        .unwrap();
    let device = slot.lock().unwrap().take().expect("a device was added");
    (node, device)
}

/// Created dynamically (`NOTIFY_Create`): the boards already present open from inside
/// `create`; automatic streaming is refused (`STATUS_INVALID_PARAMETER`: no D0 callbacks reach
/// a dynamic Module); deleting the Module with a stream and a parked send on every target closes
/// them all (`Close` each, PreClose once), every callback runs once, nothing is left.
#[test]
fn dimt_dynamic_create_opens_existing_instances_and_delete_closes_them() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let boards = [Fx2Board::new(), Fx2Board::new()];
    let nodes: Vec<DeviceNode> = boards.iter().map(|b| plug(&machine, b)).collect();
    let (node, device) = dynamic_client(&machine);
    let events = Arc::new(Events::default());
    assert_eq!(
        DeviceInterfaceMultipleTarget::with(config(&events, &AUTOMATIC))
            .create(device.collection())
            .err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    let events = Arc::new(Events::default());
    let manual = Options {
        mode: Some(StreamMode::Manual),
        maximum: 8,
        kept_buffers: 0,
    };
    let e = Arc::clone(&events);
    let dynamic = DeviceInterfaceMultipleTarget::with(config(&events, &manual))
        .on_pre_close(move |_module| {
            e.pre_close.fetch_add(1, Ordering::SeqCst);
        })
        .create(device.collection())
        .unwrap();
    assert!(dynamic.is_dynamic());
    let targets = open_targets(&dynamic);
    assert_eq!(targets.len(), 2, "opened from inside create");
    let statuses = Arc::new(Mutex::new(Vec::new()));
    for &target in &targets {
        dynamic.stream_start(target).unwrap();
        let s = Arc::clone(&statuses);
        dynamic
            .at(target)
            .send(
                &SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1),
                move |c| s.lock().unwrap().push(c.status),
            )
            .unwrap();
    }
    boards[1].flip_switch(6).unwrap();
    machine.settle();
    assert_eq!(
        statuses.lock().unwrap().len(),
        1,
        "board 1's parked send completed"
    );
    events.take_states();
    let handle: DeviceInterfaceMultipleTarget = (*dynamic).clone();
    dynamic.delete();
    machine.settle();
    let states = events.take_states();
    assert_eq!(states.len(), 2);
    assert!(states.iter().all(|(_, c)| *c == TargetStateChange::Close));
    assert_eq!(events.pre_close.load(Ordering::SeqCst), 1);
    assert_eq!(statuses.lock().unwrap().len(), 2, "every callback ran once");
    assert_ne!(handle.state(), ModuleState::Opened);
    assert_eq!(
        handle.get(targets[0]).err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    drop(handle);
    node.remove().unwrap();
    for node in nodes {
        node.remove().unwrap();
    }
    assert_clean(&machine, 0);
}
