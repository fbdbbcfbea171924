//! The OSR USB-FX2 function driver (`usb/kmdf_fx2`), written against kmdf-sim's driver API.
//!
//! This module is a *driver*: it uses only the public API a driver author uses —
//! [`DriverConfig`], [`DeviceInit`], [`Device`], [`Queue`], [`Request`], [`WaitLock`] — and talks
//! to its hardware, an [`Fx2Board`], the way the sample talks to its USB target (vendor
//! requests, the interrupt pipe's continuous reader, the bulk pipes). Its structure follows the
//! sample (the sources `driver/Device.c`, `driver/ioctl.c` and `driver/interrupt.c` of the WDK
//! sample [`usb/kmdf_fx2`] in Microsoft's Windows-driver-samples):
//!
//! | Sample | Here |
//! |---|---|
//! | `EvtDriverDeviceAdd`: PnP callbacks PrepareHardware, D0Entry, D0Exit, SelfManagedIoFlush; `GUID_DEVINTERFACE_OSRUSBFX2` | [`device_add`] |
//! | default queue: parallel, `EvtIoDeviceControl`, power-managed | `ioctl` |
//! | read / write queues: sequential, `EvtIoRead`/`EvtIoWrite` + `EvtIoStop` | bulk loopback |
//! | interrupt-message queue: manual, not power-managed | parked `GET_INTERRUPT_MESSAGE` |
//! | wait lock serializing `RESET_DEVICE` | [`WaitLock`] |
//! | PrepareHardware: find the device | the board named by the node's resource `fx2 board <n>`, or the board attached to a bus child's instance id |
//! | D0Entry: start the interrupt pipe (continuous reader) | power the board on / resume it, register the interrupt hook |
//! | D0Exit: stop the interrupt pipe | remove the hook, suspend the board |
//! | reader completion: store the byte, complete every parked request | the hook (at `DISPATCH_LEVEL`) |
//! | SelfManagedIoFlush: parked requests → `STATUS_DEVICE_REMOVED` | same |
//!
//! IOCTL buffer checks follow the sample, including its quirk of completing a too-small
//! `READ_SWITCHES` / `SET_7_SEGMENT_DISPLAY` with `Information = 1`. Board errors map to
//! statuses as a USB stack would report them: unplugged → `STATUS_NO_SUCH_DEVICE`, not running
//! → `STATUS_INVALID_DEVICE_STATE`, stall → `STATUS_UNSUCCESSFUL`.
//!
//! [`install`] plugs a board in as a device node with this driver; [`stack_spec`] gives the
//! [`StackSpec`] so a test can add upper or lower filters before plugging it in. On a bus
//! driver's children: [`install_for_hardware_id`] binds the driver to the children's hardware id
//! and [`attach_board`] puts a board behind one child (by its device instance id).
//!
//! [`usb/kmdf_fx2`]: https://github.com/microsoft/Windows-driver-samples/tree/main/usb/kmdf_fx2

use std::sync::{Arc, Mutex, PoisonError};

use super::board::{Fx2Board, Fx2Error, HookId, PowerState};
use super::ioctl::{
    BarGraphState, SevenSegment, SwitchState, GUID_DEVINTERFACE_OSRUSBFX2,
    IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY, IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY,
    IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR, IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
    IOCTL_OSRUSBFX2_READ_SWITCHES, IOCTL_OSRUSBFX2_REENUMERATE_DEVICE,
    IOCTL_OSRUSBFX2_RESET_DEVICE, IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY,
    IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, TEST_BOARD_TRANSFER_BUFFER_SIZE,
};
use crate::device::{Device, DeviceInit, Resources};
use crate::driver::{self, Driver, DriverConfig};
use crate::exec::{Irql, IrqlGuard, WaitLock};
use crate::io::{DispatchType, Queue, QueueConfig, Request, RequestType, StopFlags};
use crate::machine::Machine;
use crate::object::ObjectAttributes;
use crate::pnp::{DeviceNode, StackSpec};
use crate::status::Status;
use crate::verifier::invoke_callback;

/// The driver's service name.
pub const FX2_DRIVER: &str = "osrusbfx2";
/// The board's hardware id.
pub const FX2_HARDWARE_ID: &str = "USB\\VID_0547&PID_1002";

/// The boards plugged into one machine (a resource `fx2 board <n>` names entry `n`).
#[derive(Default)]
struct Boards(Mutex<Vec<Fx2Board>>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The device context (`DEVICE_CONTEXT` of the sample).
#[derive(Default)]
pub struct Fx2Context {
    board: Mutex<Option<Fx2Board>>,
    interrupt_queue: Mutex<Option<Queue>>,
    reader: Mutex<Option<HookId>>,
    reset_lock: Mutex<Option<Arc<WaitLock>>>,
    current_switches: Mutex<u8>,
}

impl Fx2Context {
    /// The board this device drives (after PrepareHardware).
    pub fn board(&self) -> Option<Fx2Board> {
        lock(&self.board).clone()
    }

    /// The last switch byte the interrupt pipe delivered.
    pub fn current_switches(&self) -> u8 {
        *lock(&self.current_switches)
    }
}

fn map(e: Fx2Error) -> Status {
    match e {
        Fx2Error::Unplugged => Status::NO_SUCH_DEVICE,
        Fx2Error::PoweredOff | Fx2Error::Suspended => Status::INVALID_DEVICE_STATE,
        Fx2Error::InvalidSwitch(_) => Status::INVALID_PARAMETER,
        Fx2Error::Stall { .. } => Status::UNSUCCESSFUL,
        Fx2Error::BufferTooSmall { .. } => Status::BUFFER_TOO_SMALL,
    }
}

fn ctx(dev: &Device) -> Arc<Fx2Context> {
    dev.context::<Fx2Context>()
        .expect("the FX2 device has its context")
}

/// The `StackSpec` of a device node for `board` (registers the board on the machine and installs
/// the driver package). Add filters to it, then `machine.pnp().plug_in(spec)`.
pub fn stack_spec(machine: &Machine, board: &Fx2Board) -> StackSpec {
    let boards = machine.extension(Boards::default);
    let n = {
        let mut b = lock(&boards.0);
        b.push(board.clone());
        b.len() - 1
    };
    if !driver::is_installed(machine, FX2_DRIVER) {
        driver::install(machine, FX2_DRIVER, DriverConfig::new(device_add));
    }
    board.plug_in();
    StackSpec::new(FX2_HARDWARE_ID, FX2_DRIVER).resource(&format!("fx2 board {n}"))
}

/// The boards behind children of a bus driver, by the child's device instance id (upper case).
#[derive(Default)]
struct ChildBoards(Mutex<std::collections::HashMap<String, Fx2Board>>);

/// Makes this driver the function driver of the children a bus driver reports with hardware id
/// `hardware_id` (installs the package, and binds the id as the models line of its INF would):
/// a virtual bus's children are driven by it, each finding its board by [`attach_board`].
pub fn install_for_hardware_id(machine: &Machine, hardware_id: &str) {
    if !driver::is_installed(machine, FX2_DRIVER) {
        driver::install(machine, FX2_DRIVER, DriverConfig::new(device_add));
    }
    driver::bind_hardware_id(machine, hardware_id, FX2_DRIVER);
}

/// Puts `board` behind the bus child whose device instance id will be `instance_id`
/// (`{device id}\{instance id}`, see [`crate::pnp::bus`]) and plugs it in: the driver's
/// PrepareHardware finds it there when its node has no `fx2 board <n>` resource. Attaching
/// again replaces the board; [`detach_board`] forgets it.
pub fn attach_board(machine: &Machine, instance_id: &str, board: &Fx2Board) {
    let boards = machine.extension(ChildBoards::default);
    lock(&boards.0).insert(instance_id.to_ascii_uppercase(), board.clone());
    board.plug_in();
}

/// Forgets the board behind the bus child `instance_id` (the board itself is left as it is).
pub fn detach_board(machine: &Machine, instance_id: &str) -> Option<Fx2Board> {
    let boards = machine.extension(ChildBoards::default);
    let removed = lock(&boards.0).remove(&instance_id.to_ascii_uppercase());
    removed
}

/// Plugs `board` into `machine` as a device node driven by this driver (first start included).
///
/// Errors: the start failure.
pub fn install(machine: &Machine, board: &Fx2Board) -> Result<DeviceNode, Status> {
    machine.pnp().plug_in(stack_spec(machine, board))
}

/// `OsrFxEvtDeviceAdd`.
///
/// Errors: a failing `WdfDeviceCreate`, queue creation or interface registration.
pub fn device_add(_driver: &Driver, init: &mut DeviceInit) -> Result<(), Status> {
    init.pnp.prepare_hardware = Some(Arc::new(prepare_hardware));
    init.pnp.d0_entry = Some(Arc::new(|dev, _prev| d0_entry(dev)));
    init.pnp.d0_exit = Some(Arc::new(|dev, _target| d0_exit(dev)));
    init.pnp.self_managed_io_flush = Some(Arc::new(self_managed_io_flush));
    let dev = Device::create(init, ObjectAttributes::new().context(Fx2Context::default()))?;
    let c = ctx(&dev);
    if let Some(m) = dev.machine() {
        *lock(&c.reset_lock) = Some(Arc::new(WaitLock::new(&m, "fx2 reset lock")));
    }
    Queue::create(
        &dev,
        QueueConfig::new_default(DispatchType::Parallel).on_device_control(ioctl),
        ObjectAttributes::new(),
    )?;
    let read = Queue::create(
        &dev,
        QueueConfig::new(DispatchType::Sequential)
            .on_read(bulk_read)
            .on_stop(io_stop),
        ObjectAttributes::new(),
    )?;
    dev.configure_request_dispatching(&read, RequestType::Read)?;
    let write = Queue::create(
        &dev,
        QueueConfig::new(DispatchType::Sequential)
            .on_write(bulk_write)
            .on_stop(io_stop),
        ObjectAttributes::new(),
    )?;
    dev.configure_request_dispatching(&write, RequestType::Write)?;
    let parked = Queue::create(
        &dev,
        QueueConfig::new(DispatchType::Manual).power_managed(false),
        ObjectAttributes::new(),
    )?;
    *lock(&c.interrupt_queue) = Some(parked);
    dev.create_interface(GUID_DEVINTERFACE_OSRUSBFX2, None)?;
    Ok(())
}

fn prepare_hardware(dev: &Device, res: &Resources) -> Status {
    let Some(machine) = dev.machine() else {
        return Status::INVALID_DEVICE_STATE;
    };
    let boards = machine.extension(Boards::default);
    let board = res
        .items
        .iter()
        .find_map(|r| r.strip_prefix("fx2 board "))
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| lock(&boards.0).get(n).cloned())
        .or_else(|| {
            // A child of a bus driver: the board attached to its device instance.
            let node = dev.node()?;
            let children = machine.extension(ChildBoards::default);
            let board = lock(&children.0)
                .get(&node.instance_id().to_ascii_uppercase())
                .cloned();
            board
        });
    let Some(board) = board else {
        return Status::INVALID_DEVICE_STATE;
    };
    if let Err(e) = board.configuration_descriptor() {
        return map(e);
    }
    *lock(&ctx(dev).board) = Some(board);
    Status::SUCCESS
}

fn d0_entry(dev: &Device) -> Status {
    let c = ctx(dev);
    let Some(board) = c.board() else {
        return Status::INVALID_DEVICE_STATE;
    };
    let hook_dev = dev.clone();
    let id = board.on_interrupt(move |byte| reader_completion(&hook_dev, byte));
    *lock(&c.reader) = Some(id);
    let r = if board.power_state() == PowerState::Suspended {
        board.resume()
    } else {
        board.power_on()
    };
    if let Err(e) = r {
        board.remove_hook(id);
        *lock(&c.reader) = None;
        return map(e);
    }
    Status::SUCCESS
}

fn d0_exit(dev: &Device) -> Status {
    let c = ctx(dev);
    if let Some(board) = c.board() {
        if let Some(id) = lock(&c.reader).take() {
            board.remove_hook(id);
        }
        let _ = board.suspend();
    }
    Status::SUCCESS
}

/// The continuous reader's completion (`OsrFxEvtUsbInterruptPipeReadComplete`), at
/// `DISPATCH_LEVEL`, on the thread that changed the board.
fn reader_completion(dev: &Device, byte: u8) {
    let Some(machine) = dev.machine() else {
        return;
    };
    let _bound = machine.enter();
    invoke_callback(
        FX2_DRIVER,
        dev.name(),
        "EvtUsbTargetPipeReadComplete",
        || {
            let _irql = IrqlGuard::raise(Irql::Dispatch);
            let c = ctx(dev);
            *lock(&c.current_switches) = byte;
            // The requests parked when the message arrived, not those parked while they are
            // completed: on the board this loop runs at DISPATCH_LEVEL and ends within a
            // microsecond, long before a client's re-sent request (from a PASSIVE_LEVEL work
            // item, after its own I/O) can reach the queue. In the simulator the loop's thread
            // can be preempted, and a re-sent request would be completed again with the same
            // message, any number of times, as thread timing falls; it waits for the next one.
            let parked = lock(&c.interrupt_queue)
                .as_ref()
                .map_or(0, |q| q.status().queued);
            complete_parked(&c, parked, |req| {
                match req.with_output_buffer(1, |b| b[0] = byte) {
                    Ok(()) => req.complete_with_information(Status::SUCCESS, 1),
                    Err(s) => req.complete_with_information(s, 1),
                }
            });
        },
    );
}

/// Retrieves and hands to `f` at most `limit` requests from the interrupt-message queue.
fn complete_parked(c: &Fx2Context, limit: usize, mut f: impl FnMut(Request)) {
    let Some(q) = lock(&c.interrupt_queue).clone() else {
        return;
    };
    for _ in 0..limit {
        let Ok(req) = q.retrieve_next_request() else {
            break;
        };
        f(req);
    }
}

fn self_managed_io_flush(dev: &Device) {
    complete_parked(&ctx(dev), usize::MAX, |req| {
        req.complete(Status::DEVICE_REMOVED);
    });
}

/// `OsrFxEvtIoDeviceControl`.
fn ioctl(queue: &Queue, req: Request, _out_len: usize, _in_len: usize, code: u32) {
    let Some(dev) = queue.device() else {
        req.complete(Status::INVALID_DEVICE_STATE);
        return;
    };
    let c = ctx(&dev);
    let Some(board) = c.board() else {
        req.complete(Status::INVALID_DEVICE_STATE);
        return;
    };
    // DMF's copy of the header gives the same IOCTLs another device type (`from_dmf_header`).
    let code = super::ioctl::from_dmf_header(code);
    let (status, info) = match code {
        IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR => match board.configuration_descriptor() {
            Err(e) => (map(e), 0),
            Ok(desc) => match req.with_output_buffer(desc.len(), |b| {
                b[..desc.len()].copy_from_slice(&desc);
            }) {
                Ok(()) => (Status::SUCCESS, desc.len()),
                Err(s) => (s, 0),
            },
        },
        IOCTL_OSRUSBFX2_RESET_DEVICE => {
            let lock_ = lock(&c.reset_lock).clone();
            let guard = lock_.as_deref().map(WaitLock::lock);
            let s = board.reset_port().map_or_else(map, |()| Status::SUCCESS);
            drop(guard);
            (s, 0)
        }
        IOCTL_OSRUSBFX2_REENUMERATE_DEVICE => (
            board.reenumerate().map_or_else(map, |()| Status::SUCCESS),
            0,
        ),
        IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY => {
            read_byte(&req, 0, || board.bar_graph().map(BarGraphState::raw))
        }
        IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY => match req.input_buffer(1) {
            Err(s) => (s, 0),
            Ok(b) => (
                board
                    .set_bar_graph(BarGraphState::from_raw(b[0]))
                    .map_or_else(map, |()| Status::SUCCESS),
                0,
            ),
        },
        IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY => {
            read_byte(&req, 0, || board.seven_segment().map(SevenSegment::raw))
        }
        IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY => match req.input_buffer(1) {
            Err(s) => (s, 1),
            Ok(b) => (
                board
                    .set_seven_segment(SevenSegment::from_raw(b[0]))
                    .map_or_else(map, |()| Status::SUCCESS),
                0,
            ),
        },
        IOCTL_OSRUSBFX2_READ_SWITCHES => {
            read_byte(&req, 1, || board.read_switches().map(SwitchState::raw))
        }
        IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE => {
            let Some(q) = lock(&c.interrupt_queue).clone() else {
                req.complete(Status::INVALID_DEVICE_STATE);
                return;
            };
            if let Err((req, s)) = req.forward_to_queue(&q) {
                req.complete(s);
            }
            return;
        }
        _ => (Status::INVALID_DEVICE_REQUEST, 0),
    };
    req.complete_with_information(status, info);
}

/// A one-byte IN vendor request into the output buffer; `fail_info` is the information the
/// sample reports when the buffer is too small.
fn read_byte(
    req: &Request,
    fail_info: usize,
    read: impl FnOnce() -> Result<u8, Fx2Error>,
) -> (Status, usize) {
    match req.with_output_buffer(1, |b| b[0] = 0) {
        Err(s) => (s, fail_info),
        Ok(()) => match read() {
            Err(e) => (map(e), 0),
            Ok(v) => {
                let _ = req.with_output_buffer(1, |b| b[0] = v);
                (Status::SUCCESS, 1)
            }
        },
    }
}

fn board_of(queue: &Queue) -> Option<Fx2Board> {
    queue.device().and_then(|d| ctx(&d).board())
}

/// `OsrFxEvtIoRead`: bulk IN from the loopback.
fn bulk_read(queue: &Queue, req: Request, len: usize) {
    if len > TEST_BOARD_TRANSFER_BUFFER_SIZE {
        req.complete(Status::INVALID_PARAMETER);
        return;
    }
    let Some(board) = board_of(queue) else {
        req.complete(Status::INVALID_DEVICE_STATE);
        return;
    };
    match req.with_output_buffer(1, |b| board.bulk_read(b)) {
        Ok(Ok(n)) => req.complete_with_information(Status::SUCCESS, n),
        Ok(Err(e)) => req.complete(map(e)),
        Err(s) => req.complete(s),
    }
}

/// `OsrFxEvtIoWrite`: bulk OUT into the loopback.
fn bulk_write(queue: &Queue, req: Request, len: usize) {
    if len > TEST_BOARD_TRANSFER_BUFFER_SIZE {
        req.complete(Status::INVALID_PARAMETER);
        return;
    }
    let Some(board) = board_of(queue) else {
        req.complete(Status::INVALID_DEVICE_STATE);
        return;
    };
    match req.input_buffer(1) {
        Ok(data) => match board.bulk_write(&data) {
            Ok(n) => req.complete_with_information(Status::SUCCESS, n),
            Err(e) => req.complete(map(e)),
        },
        Err(s) => req.complete(s),
    }
}

/// `OsrFxEvtIoStop`: bulk requests complete synchronously here, so a presented one is
/// acknowledged back into the queue.
#[allow(clippy::needless_pass_by_value)] // reason: EvtIoStop hands the driver a handle by value
fn io_stop(_queue: &Queue, req: Request, flags: StopFlags) {
    if flags.cancelable && req.unmark_cancelable() == Status::CANCELLED {
        return;
    }
    req.stop_acknowledge(true);
}
