//! DeviceInterfaceTarget created dynamically (dmf-upstream §2.5, §5.7: `NOTIFY_Create` when
//! dynamic, chosen at create time as C DMF does): the client creates the Module from its device's
//! collection after start; the OSR FX2 interface arrives, goes away and comes back; deleting the
//! Module unregisters it.
#![cfg(feature = "sim")]
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dmf_core::device::{DmfDevice, DmfDeviceInit};
use dmf_core::module::{DynamicModule, ModuleCallbacks, ModuleHandle, ModuleState};
use dmf_core::platform::contract::device::{DeviceAttributes, Guid};
use dmf_core::platform::contract::io::{IoTargetState, PlatformIoTarget};
use dmf_core::platform::{simulator, DriverConfig};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};
use dmf_modules::continuous_request_target::{ContinuousRequestTargetConfig, StreamMode};
use dmf_modules::device_interface_target::{DeviceInterfaceTarget, DeviceInterfaceTargetConfig};
use dmf_modules::request_target::{RequestKind, RequestSender, SendRequest};
use kmdf_sim::fx2::ioctl::{
    GUID_DEVINTERFACE_OSRUSBFX2, IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
    IOCTL_OSRUSBFX2_READ_SWITCHES,
};
use kmdf_sim::fx2::Fx2Board;
use kmdf_sim::pnp::{DeviceNode, NodeState, StackSpec};
use kmdf_sim::Machine;

const FX2: Guid = dmf_core::platform::simulator::platform_guid(GUID_DEVINTERFACE_OSRUSBFX2);

/// What the client saw.
#[derive(Default)]
struct Events {
    post_open: AtomicUsize,
    pre_close: AtomicUsize,
}

/// A client driver whose device adds no Module: the test keeps its `DmfDevice` to create
/// dynamic Modules from its collection once started.
fn client(machine: &Machine) -> (DeviceNode, DmfDevice) {
    let (node, device, _holder) = client_with(machine, false);
    (node, device)
}

/// [`client`], optionally with a [`Holder`] Module.
fn client_with(machine: &Machine, holder: bool) -> (DeviceNode, DmfDevice, Option<Holder>) {
    type Slot = Arc<Mutex<Option<(DmfDevice, Option<Holder>)>>>;
    let slot: Slot = Arc::default();
    let s = Arc::clone(&slot);
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            let token = Arc::new(Mutex::new(None));
            let t = Arc::clone(&token);
            dmf.set_modules_add(move |_device, modules| {
                if holder {
                    *t.lock().unwrap() = Some(modules.add(Holder::with(())));
                }
                Ok(())
            })?;
            dmf.create_device(DeviceAttributes::default())?;
            let device = dmf.modules_create()?;
            let token = token.lock().unwrap().take();
            let holder = token.map(|token| device.get(token)).transpose()?;
            *s.lock().unwrap() = Some((device, holder));
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(machine, "dynclient", config);
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\DYNCLIENT", "dynclient"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    let (device, holder) = slot
        .lock()
        .unwrap()
        .take()
        .expect("the client added a device");
    (node, device, holder)
}

/// A static Module that creates DeviceInterfaceTargets dynamically under its own scope.
#[dmf_module(crate = ::dmf_core, config = (), context = (), open = Create, lock = Dispatch)]
struct Holder;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Holder {}

impl Holder {
    fn attach(
        &self,
        spec: dmf_core::module::ModuleSpec<DeviceInterfaceTarget>,
    ) -> NtResult<DynamicModule<DeviceInterfaceTarget>> {
        let module = self.enter()?;
        spec.create(&*module)
    }
}

/// The spec: PostOpen checks the target and reads the switches, both count.
fn spec(
    config: DeviceInterfaceTargetConfig,
    events: &Arc<Events>,
) -> dmf_core::module::ModuleSpec<DeviceInterfaceTarget> {
    let (e1, e2) = (Arc::clone(events), Arc::clone(events));
    DeviceInterfaceTarget::with(config)
        .on_post_open(move |target| {
            e1.post_open.fetch_add(1, Ordering::SeqCst);
            assert!(target.get_target().is_ok());
            assert!(read_switches(target).is_ok());
        })
        .on_pre_close(move |_target| {
            e2.pre_close.fetch_add(1, Ordering::SeqCst);
        })
}

fn read_switches(target: &DeviceInterfaceTarget) -> Result<u8, NtStatus> {
    let (out, length) =
        target.send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1))?;
    assert_eq!(length, 1);
    Ok(out[0])
}

fn plug(machine: &Machine, board: &Fx2Board) -> DeviceNode {
    kmdf_sim::fx2::driver::install(machine, board).unwrap()
}

fn unplug(board: &Fx2Board, node: &DeviceNode) {
    board.unplug();
    node.surprise_remove().unwrap();
}

fn assert_closed(target: &DeviceInterfaceTarget) {
    assert_ne!(target.state(), ModuleState::Opened);
    assert_eq!(
        target.get_target().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(read_switches(target), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(
        target.symbolic_link().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
}

/// Created after start, before the FX2: arrival opens it, unplug closes it, replug reopens it;
/// dropping the DynamicModule unregisters (a later arrival opens nothing).
#[test]
fn dynamic_device_interface_target_arrival_removal_replug_and_delete() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let (node, device) = client(&machine);
    let events = Arc::new(Events::default());
    let dynamic = spec(DeviceInterfaceTargetConfig::new(FX2), &events)
        .create(device.collection())
        .unwrap();
    let handle: DeviceInterfaceTarget = (*dynamic).clone();
    // The same type as a static instance; this one is dynamic (`NOTIFY_Create`: it registered in
    // `create`).
    assert!(handle.is_dynamic());
    machine.settle();
    // Registered, nothing arrived: closed.
    assert_eq!(events.post_open.load(Ordering::SeqCst), 0);
    assert_closed(&handle);

    // Arrival.
    let board = Fx2Board::new();
    let fx2 = plug(&machine, &board);
    machine.settle();
    assert_eq!(events.post_open.load(Ordering::SeqCst), 1);
    assert_eq!(handle.state(), ModuleState::Opened);
    assert_eq!(handle.get_target().unwrap().state(), IoTargetState::Started);
    assert!(handle.symbolic_link().is_ok());
    board.flip_switch(3).unwrap();
    machine.settle();
    assert_eq!(read_switches(&handle), Ok(board.switches().raw()));
    // No stream config: stream Methods refuse.
    assert_eq!(handle.stream_start(), Err(NtStatus::INVALID_DEVICE_REQUEST));
    assert!(!handle.is_streaming());

    // Removal.
    unplug(&board, &fx2);
    machine.settle();
    assert_eq!(events.pre_close.load(Ordering::SeqCst), 1);
    assert_closed(&handle);

    // Replug: works again.
    let fx2 = plug(&machine, &board);
    machine.settle();
    assert_eq!(events.post_open.load(Ordering::SeqCst), 2);
    assert_eq!(read_switches(&handle), Ok(board.switches().raw()));

    // Delete while open: PreClose, then unregistered.
    drop(dynamic);
    machine.settle();
    assert_eq!(events.pre_close.load(Ordering::SeqCst), 2);
    assert_closed(&handle);
    unplug(&board, &fx2);
    machine.settle();
    let fx2 = plug(&machine, &board);
    machine.settle();
    assert_eq!(events.post_open.load(Ordering::SeqCst), 2, "unregistered");
    assert_eq!(events.pre_close.load(Ordering::SeqCst), 2);
    assert_closed(&handle);

    node.remove().unwrap();
    fx2.remove().unwrap();
    drop(device);
    machine.verdict().unwrap();
}

/// The FX2 is there before the Module: the existing interface opens it during `create`. The
/// query-remove callback (with the dynamic instance's handle) vetoes, then lets a query-remove close it and a cancelled
/// removal reopen it. Removing the client device with the DynamicModule alive closes it once.
#[test]
fn dynamic_device_interface_target_existing_interface_and_query_remove() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let board = Fx2Board::new();
    let fx2 = plug(&machine, &board);
    machine.settle();
    let (node, device) = client(&machine);
    let events = Arc::new(Events::default());
    let veto = Arc::new(AtomicBool::new(true));
    let mut config = DeviceInterfaceTargetConfig::new(FX2);
    let v = Arc::clone(&veto);
    config.query_remove = Some(Arc::new(move |target: &DeviceInterfaceTarget| {
        assert!(target.is_dynamic());
        assert!(target.get_target().is_ok());
        !v.load(Ordering::SeqCst)
    }));
    let dynamic = spec(config, &events).create(device.collection()).unwrap();
    assert_eq!(
        events.post_open.load(Ordering::SeqCst),
        1,
        "opened in create"
    );
    assert_eq!(read_switches(&dynamic), Ok(0));

    // Vetoed.
    assert!(fx2.remove().is_err(), "vetoed");
    assert_eq!(fx2.state(), NodeState::Started);
    assert_eq!(events.pre_close.load(Ordering::SeqCst), 0);
    assert_eq!(read_switches(&dynamic), Ok(0));
    // Query-remove closes, remove-cancel reopens.
    veto.store(false, Ordering::SeqCst);
    fx2.query_remove().unwrap();
    assert_eq!(events.pre_close.load(Ordering::SeqCst), 1);
    assert_closed(&dynamic);
    fx2.cancel_remove().unwrap();
    machine.settle();
    assert_eq!(events.post_open.load(Ordering::SeqCst), 2);
    assert_eq!(
        dynamic.get_target().unwrap().state(),
        IoTargetState::Started
    );
    board.flip_switch(2).unwrap();
    machine.settle();
    assert_eq!(read_switches(&dynamic), Ok(board.switches().raw()));

    // The client device goes with the Module alive: its collection deletes it.
    node.remove().unwrap();
    machine.settle();
    assert_eq!(events.pre_close.load(Ordering::SeqCst), 2);
    assert_closed(&dynamic);
    drop(dynamic);
    assert_eq!(events.pre_close.load(Ordering::SeqCst), 2);
    fx2.remove().unwrap();
    drop(device);
    machine.verdict().unwrap();
}

/// A Module's scope as the parent: created from a Method of a static Module, works like the
/// others; deleted with its owner, or with its parent when the device goes.
#[test]
fn dynamic_device_interface_target_under_a_module_scope() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let (node, device, holder) = client_with(&machine, true);
    let holder = holder.unwrap();
    let events = Arc::new(Events::default());
    let board = Fx2Board::new();
    let fx2 = plug(&machine, &board);
    machine.settle();

    // Deleted by its owner.
    let first = holder
        .attach(spec(DeviceInterfaceTargetConfig::new(FX2), &events))
        .unwrap();
    assert_eq!(events.post_open.load(Ordering::SeqCst), 1);
    assert_eq!(read_switches(&first), Ok(0));
    drop(first);
    assert_eq!(events.pre_close.load(Ordering::SeqCst), 1);

    // Deleted with its parent.
    let second = holder
        .attach(spec(DeviceInterfaceTargetConfig::new(FX2), &events))
        .unwrap();
    assert_eq!(events.post_open.load(Ordering::SeqCst), 2);
    unplug(&board, &fx2);
    machine.settle();
    assert_eq!(events.pre_close.load(Ordering::SeqCst), 2);
    assert_closed(&second);
    let fx2 = plug(&machine, &board);
    machine.settle();
    assert_eq!(events.post_open.load(Ordering::SeqCst), 3);
    assert_eq!(read_switches(&second), Ok(0));
    node.remove().unwrap();
    machine.settle();
    assert_eq!(events.pre_close.load(Ordering::SeqCst), 3);
    assert_closed(&second);
    drop(second);
    assert_eq!(events.pre_close.load(Ordering::SeqCst), 3);
    fx2.remove().unwrap();
    drop((device, holder));
    machine.verdict().unwrap();
}

/// An automatic stream (it follows D0Entry/D0Exit, which never reach a dynamic Module) is
/// refused, stream child and all, with nothing left behind; the same config with a manual stream
/// is accepted.
#[test]
fn dynamic_device_interface_target_refusals() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let (node, device) = client(&machine);
    let stream = |mode| ContinuousRequestTargetConfig {
        request_count: 1,
        request_type: RequestKind::Ioctl,
        ioctl_code: IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
        output_buffer_size: 1,
        mode,
        ..ContinuousRequestTargetConfig::default()
    };
    let mut config = DeviceInterfaceTargetConfig::new(FX2);
    config.stream = Some(stream(StreamMode::Automatic));
    assert_eq!(
        DeviceInterfaceTarget::with(config)
            .create(device.collection())
            .err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    let mut config = DeviceInterfaceTargetConfig::new(FX2);
    config.stream = Some(stream(StreamMode::Manual));
    let manual = DeviceInterfaceTarget::with(config)
        .create(device.collection())
        .unwrap();
    assert!(manual.is_dynamic());
    assert_closed(&manual);
    drop(manual);
    node.remove().unwrap();
    drop(device);
    machine.verdict().unwrap();
}

/// A dynamic Module streams in manual mode (its ContinuousRequestTarget child is dynamic too and
/// gets no D0 callbacks, Top 25 #15): started in PostOpen, every switch flip reaches the stream's
/// output callback — the embedded ContinuousRequestTarget config's, or this Module's own
/// `output_callback` with its (dynamic) handle; unplug stops it; the Module deletes cleanly.
fn streams_in_manual_mode(own_callback: bool) {
    use dmf_modules::continuous_request_target::{BufferDisposition, StreamCompletion};
    let machine = Machine::new();
    let _bound = machine.enter();
    let (node, device) = client(&machine);
    let bytes: Arc<Mutex<Vec<u8>>> = Arc::default();
    let b = Arc::clone(&bytes);
    let record = move |completion: &StreamCompletion<'_>| {
        if !completion.status.is_success() {
            return BufferDisposition::StopStreaming;
        }
        if let Some(byte) = completion.output.first() {
            let mut seen = b.lock().unwrap();
            // The FX2 driver may complete a re-sent request with the same byte: fold repeats.
            if seen.last() != Some(byte) {
                seen.push(*byte);
            }
        }
        BufferDisposition::ContinueStreaming
    };
    let mut config = DeviceInterfaceTargetConfig::new(FX2);
    let mut stream = ContinuousRequestTargetConfig {
        request_count: 1,
        request_type: RequestKind::Ioctl,
        ioctl_code: IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
        output_buffer_size: 1,
        mode: StreamMode::Manual,
        ..ContinuousRequestTargetConfig::default()
    };
    if own_callback {
        config.output_callback = Some(Arc::new(
            move |target: &DeviceInterfaceTarget, completion: &StreamCompletion<'_>| {
                assert!(target.is_dynamic());
                record(completion)
            },
        ));
    } else {
        stream.output_callback = Some(Arc::new(move |_crt, completion| record(completion)));
    }
    config.stream = Some(stream);
    let dynamic = DeviceInterfaceTarget::with(config)
        .on_post_open(|target| {
            target.stream_start().unwrap();
        })
        .create(device.collection())
        .unwrap();
    let board = Fx2Board::new();
    let fx2 = plug(&machine, &board);
    machine.settle();
    assert!(dynamic.is_streaming());
    board.flip_switch(1).unwrap();
    machine.settle();
    board.flip_switch(2).unwrap();
    machine.settle();
    assert_eq!(*bytes.lock().unwrap(), [0x01, 0x03]);
    unplug(&board, &fx2);
    machine.settle();
    assert!(!dynamic.is_streaming());
    drop(dynamic);
    node.remove().unwrap();
    drop(device);
    machine.verdict().unwrap();
}

#[test]
fn dynamic_device_interface_target_streams_in_manual_mode() {
    streams_in_manual_mode(false);
}

#[test]
fn dynamic_device_interface_target_output_callback_gets_its_own_handle() {
    streams_in_manual_mode(true);
}
