//! Queues: `WdfIoQueue…` and the `EvtIo…` callbacks.
//!
//! A `WDFQUEUE` is a kmdf-sim [`Queue`] (dispatch types, power management, driver-initiated
//! state changes) built from the driver's `WDF_IO_QUEUE_CONFIG`: each `EvtIo…` callback the
//! driver set becomes the kmdf-sim callback that wraps the presented request in its
//! `WDFREQUEST` handle ([`request::adopt`], with the device's request attributes) and calls the
//! driver. `WdfDeviceConfigureRequestDispatching` routes a request type to a queue.

use kmdf_sim::io::{DispatchType, Queue, QueueConfig, Request, RequestType};
use kmdf_sim::Status;

use super::bindings::status::{STATUS_INFO_LENGTH_MISMATCH, STATUS_SUCCESS};
use super::bindings::_WDF_IO_QUEUE_DISPATCH_TYPE as dispatch_type;
use super::bindings::_WDF_IO_QUEUE_STATE::{
    WdfIoQueueAcceptRequests, WdfIoQueueDispatchRequests, WdfIoQueueDriverNoRequests,
    WdfIoQueueNoRequests, WdfIoQueuePnpHeld,
};
use super::bindings::_WDF_REQUEST_TYPE as request_type;
use super::bindings::_WDF_TRI_STATE as tri_state;
use super::bindings::{
    NTSTATUS, PFN_WDF_IO_QUEUE_STATE, PULONG, PWDF_DRIVER_GLOBALS, PWDF_IO_QUEUE_CONFIG,
    PWDF_OBJECT_ATTRIBUTES, WDFCONTEXT, WDFDEVICE, WDFQUEUE, WDFREQUEST, WDF_IO_QUEUE_CONFIG,
    WDF_IO_QUEUE_STATE, WDF_REQUEST_TYPE,
};
use super::device::{self, DevicePayload};
use super::objects::{self, Attributes, Handle, Object};
use super::{request, wdf_exports};
use crate::host::guard;

wdf_exports! {
    WdfIoQueueCreate => wdf_io_queue_create: PFN_WDFIOQUEUECREATE,
    WdfDeviceConfigureRequestDispatching => wdf_device_configure_request_dispatching: PFN_WDFDEVICECONFIGUREREQUESTDISPATCHING,
    WdfIoQueueGetDevice => wdf_io_queue_get_device: PFN_WDFIOQUEUEGETDEVICE,
    WdfIoQueueGetState => wdf_io_queue_get_state: PFN_WDFIOQUEUEGETSTATE,
    WdfIoQueueStart => wdf_io_queue_start: PFN_WDFIOQUEUESTART,
    WdfIoQueueStop => wdf_io_queue_stop: PFN_WDFIOQUEUESTOP,
    WdfIoQueueStopSynchronously => wdf_io_queue_stop_synchronously: PFN_WDFIOQUEUESTOPSYNCHRONOUSLY,
    WdfIoQueuePurge => wdf_io_queue_purge: PFN_WDFIOQUEUEPURGE,
    WdfIoQueuePurgeSynchronously => wdf_io_queue_purge_synchronously: PFN_WDFIOQUEUEPURGESYNCHRONOUSLY,
    WdfIoQueueDrain => wdf_io_queue_drain: PFN_WDFIOQUEUEDRAIN,
    WdfIoQueueDrainSynchronously => wdf_io_queue_drain_synchronously: PFN_WDFIOQUEUEDRAINSYNCHRONOUSLY,
    WdfIoQueueStopAndPurge => wdf_io_queue_stop_and_purge: PFN_WDFIOQUEUESTOPANDPURGE,
    WdfIoQueueStopAndPurgeSynchronously => wdf_io_queue_stop_and_purge_synchronously: PFN_WDFIOQUEUESTOPANDPURGESYNCHRONOUSLY,
    WdfIoQueueRetrieveNextRequest => wdf_io_queue_retrieve_next_request: PFN_WDFIOQUEUERETRIEVENEXTREQUEST,
}

/// The payload of a `WDFQUEUE`.
pub(crate) struct QueuePayload {
    /// The kmdf-sim queue.
    pub sim: Queue,
    /// The `WDFDEVICE` it belongs to.
    pub device: Handle,
}

impl core::fmt::Debug for QueuePayload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("QueuePayload")
            .field("sim", &self.sim)
            .field("device", &format_args!("{:#x}", self.device))
            .finish()
    }
}

fn payload(object: &Object) -> &QueuePayload {
    object
        .payload::<QueuePayload>()
        .expect("a WDFQUEUE carries a QueuePayload")
}

fn expect(queue: WDFQUEUE, routine: &str) -> std::sync::Arc<Object> {
    objects::expect_kind(queue as Handle, "WDFQUEUE", routine)
}

/// The kmdf-sim queue of the live `WDFQUEUE` `handle`, or a stop naming `routine`.
pub(crate) fn sim_of(handle: Handle, routine: &str) -> Queue {
    payload(&expect(handle as WDFQUEUE, routine)).sim.clone()
}

/// The `WDFQUEUE` handle of a kmdf-sim queue made by `WdfIoQueueCreate` (for
/// `WdfDeviceGetDefaultQueue`).
pub(crate) fn handle_of(queue: &Queue) -> Option<Handle> {
    objects::of_sim(queue.object()).map(|o| o.handle())
}

/// The request kmdf-sim presents from `queue`, as the driver's handles: (queue, request).
fn present(queue: &Queue, request: Request, device: Handle) -> (WDFQUEUE, WDFREQUEST) {
    let queue_handle = handle_of(queue).unwrap_or(0);
    let device = objects::get(device);
    let payload = device.as_ref().and_then(|d| d.payload::<DevicePayload>());
    let handle = request::adopt(request, payload);
    request::set_queue(handle, queue_handle);
    (queue_handle as WDFQUEUE, handle as WDFREQUEST)
}

/// kmdf-sim's queue configuration for the driver's `WDF_IO_QUEUE_CONFIG`, whose callbacks call
/// the driver (each `// SAFETY:` below: the driver's `EVT_WDF_IO_QUEUE_IO_…` callback, called by
/// the framework with the queue it set it on and a request it owns for the call).
fn sim_config(c: &WDF_IO_QUEUE_CONFIG, device: Handle) -> Result<QueueConfig, Status> {
    let dispatch = match c.DispatchType {
        dispatch_type::WdfIoQueueDispatchSequential => DispatchType::Sequential,
        dispatch_type::WdfIoQueueDispatchParallel => DispatchType::Parallel,
        dispatch_type::WdfIoQueueDispatchManual => DispatchType::Manual,
        _ => return Err(Status::INVALID_PARAMETER),
    };
    let mut config = if c.DefaultQueue != 0 {
        QueueConfig::new_default(dispatch)
    } else {
        QueueConfig::new(dispatch)
    };
    match c.PowerManaged {
        tri_state::WdfTrue => config = config.power_managed(true),
        tri_state::WdfFalse => config = config.power_managed(false),
        _ => {}
    }
    config = config.allow_zero_length_requests(c.AllowZeroLengthRequests != 0);
    if dispatch == DispatchType::Parallel {
        // SAFETY: `Parallel` is the union's only member.
        let n = unsafe { c.Settings.Parallel.NumberOfPresentedRequests };
        if n != u32::MAX && n != 0 {
            config.max_presented = usize::try_from(n).ok();
        }
    }
    if let Some(f) = c.EvtIoDefault {
        config = config.on_default(move |q, r| {
            let (q, r) = present(q, r, device);
            // SAFETY: see the function documentation.
            unsafe { f(q, r) };
        });
    }
    if let Some(f) = c.EvtIoRead {
        config = config.on_read(move |q, r, length| {
            let (q, r) = present(q, r, device);
            // SAFETY: see the function documentation.
            unsafe { f(q, r, length) };
        });
    }
    if let Some(f) = c.EvtIoWrite {
        config = config.on_write(move |q, r, length| {
            let (q, r) = present(q, r, device);
            // SAFETY: see the function documentation.
            unsafe { f(q, r, length) };
        });
    }
    if let Some(f) = c.EvtIoDeviceControl {
        config = config.on_device_control(move |q, r, output, input, code| {
            let (q, r) = present(q, r, device);
            // SAFETY: see the function documentation.
            unsafe { f(q, r, output, input, code) };
        });
    }
    if let Some(f) = c.EvtIoInternalDeviceControl {
        config = config.on_internal_device_control(move |q, r, output, input, code| {
            let (q, r) = present(q, r, device);
            // SAFETY: see the function documentation.
            unsafe { f(q, r, output, input, code) };
        });
    }
    if let Some(f) = c.EvtIoStop {
        config = config.on_stop(move |q, r, flags| {
            let (q, r) = present(q, r, device);
            // SAFETY: see the function documentation (`EvtIoStop` with its action flags).
            unsafe { f(q, r, flags.bits()) };
        });
    }
    if let Some(f) = c.EvtIoResume {
        config = config.on_resume(move |q, r| {
            let (q, r) = present(q, r, device);
            // SAFETY: see the function documentation.
            unsafe { f(q, r) };
        });
    }
    if let Some(f) = c.EvtIoCanceledOnQueue {
        config = config.on_canceled_on_queue(move |q, r| {
            let (q, r) = present(q, r, device);
            // SAFETY: see the function documentation.
            unsafe { f(q, r) };
        });
    }
    Ok(config)
}

/// `WdfIoQueueCreate`: a queue of the device (its parent).
///
/// Errors: `STATUS_INVALID_PARAMETER` for a null config, an unknown dispatch type, a presenting
/// queue without any request callback or a second default queue; `STATUS_INFO_LENGTH_MISMATCH`
/// for a config of the wrong size; the attributes' errors; kmdf-sim's.
extern "win64" fn wdf_io_queue_create(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    config: PWDF_IO_QUEUE_CONFIG,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    queue: *mut WDFQUEUE,
) -> NTSTATUS {
    guard("WdfIoQueueCreate", || {
        let device = device::device_of(device as Handle, "WdfIoQueueCreate");
        if config.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        // SAFETY: the driver's WDF_IO_QUEUE_CONFIG for the call (checked non-null).
        let c: &WDF_IO_QUEUE_CONFIG = unsafe { &*config };
        if c.Size as usize != size_of::<WDF_IO_QUEUE_CONFIG>() {
            return STATUS_INFO_LENGTH_MISMATCH;
        }
        let sim_config = match sim_config(c, device.handle()) {
            Ok(s) => s,
            Err(status) => return status.0,
        };
        // SAFETY: the routine's contract: null or the driver's attributes for the call.
        let attributes = match unsafe { Attributes::read(attributes) } {
            Ok(a) => a,
            Err(status) => return status.0,
        };
        let pending = match objects::begin("WDFQUEUE", attributes) {
            Ok(p) => p,
            Err(status) => return status.0,
        };
        let attrs = pending.sim_attributes("WdfIoQueueCreate", Some(device.sim()));
        let dev = device
            .payload::<DevicePayload>()
            .expect("a WDFDEVICE carries a DevicePayload");
        let sim = match Queue::create(&dev.sim, sim_config, attrs) {
            Ok(q) => q,
            Err(status) => return status.0,
        };
        let created = pending.finish(
            sim.object().clone(),
            QueuePayload {
                sim,
                device: device.handle(),
            },
        );
        if !queue.is_null() {
            // SAFETY: the driver's optional out parameter.
            unsafe { queue.write(created.as_handle()) };
        }
        STATUS_SUCCESS
    })
}

fn sim_request_type(t: WDF_REQUEST_TYPE) -> Option<RequestType> {
    match t {
        request_type::WdfRequestTypeRead => Some(RequestType::Read),
        request_type::WdfRequestTypeWrite => Some(RequestType::Write),
        request_type::WdfRequestTypeDeviceControl => Some(RequestType::DeviceControl),
        request_type::WdfRequestTypeDeviceControlInternal => {
            Some(RequestType::InternalDeviceControl)
        }
        _ => None,
    }
}

/// `WdfDeviceConfigureRequestDispatching`: requests of the type go to the queue.
///
/// Errors: `STATUS_INVALID_PARAMETER` for another type than read, write and (internal) device
/// control, or a queue of another device.
extern "win64" fn wdf_device_configure_request_dispatching(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    queue: WDFQUEUE,
    kind: WDF_REQUEST_TYPE,
) -> NTSTATUS {
    guard("WdfDeviceConfigureRequestDispatching", || {
        let device = device::device_of(device as Handle, "WdfDeviceConfigureRequestDispatching");
        let queue = sim_of(queue as Handle, "WdfDeviceConfigureRequestDispatching");
        let Some(kind) = sim_request_type(kind) else {
            return Status::INVALID_PARAMETER.0;
        };
        let dev = device
            .payload::<DevicePayload>()
            .expect("a WDFDEVICE carries a DevicePayload");
        match dev.sim.configure_request_dispatching(&queue, kind) {
            Ok(()) => STATUS_SUCCESS,
            Err(status) => status.0,
        }
    })
}

/// `WdfIoQueueGetDevice`.
extern "win64" fn wdf_io_queue_get_device(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
) -> WDFDEVICE {
    guard("WdfIoQueueGetDevice", || {
        payload(&expect(queue, "WdfIoQueueGetDevice")).device as WDFDEVICE
    })
}

/// `WdfIoQueueGetState`: the state flags, and the counts of queued and driver-owned requests.
extern "win64" fn wdf_io_queue_get_state(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
    queued: PULONG,
    driver: PULONG,
) -> WDF_IO_QUEUE_STATE {
    guard("WdfIoQueueGetState", || {
        let status = sim_of(queue as Handle, "WdfIoQueueGetState").status();
        // SAFETY: the driver's optional out parameters.
        unsafe {
            if !queued.is_null() {
                queued.write(u32::try_from(status.queued).unwrap_or(u32::MAX));
            }
            if !driver.is_null() {
                driver.write(u32::try_from(status.driver_owned).unwrap_or(u32::MAX));
            }
        }
        let mut state = 0;
        if status.accepting {
            state |= WdfIoQueueAcceptRequests;
        }
        if status.started && status.powered {
            state |= WdfIoQueueDispatchRequests;
        }
        if status.queued == 0 {
            state |= WdfIoQueueNoRequests;
        }
        if status.driver_owned == 0 {
            state |= WdfIoQueueDriverNoRequests;
        }
        if !status.powered {
            state |= WdfIoQueuePnpHeld;
        }
        state
    })
}

/// `WdfIoQueueStart`.
extern "win64" fn wdf_io_queue_start(_globals: PWDF_DRIVER_GLOBALS, queue: WDFQUEUE) {
    guard("WdfIoQueueStart", || {
        sim_of(queue as Handle, "WdfIoQueueStart").start();
    });
}

/// The driver's `EVT_WDF_IO_QUEUE_STATE`, as a kmdf-sim "done" callback.
fn state_callback(
    queue: WDFQUEUE,
    callback: PFN_WDF_IO_QUEUE_STATE,
    context: WDFCONTEXT,
) -> Option<kmdf_sim::io::queue::QueueStateFn> {
    let callback = callback?;
    let (queue, context) = (queue as Handle, context as usize);
    Some(Box::new(move |_| {
        // SAFETY: the driver's `EVT_WDF_IO_QUEUE_STATE` with its queue and context.
        unsafe { callback(queue as WDFQUEUE, context as WDFCONTEXT) };
    }))
}

/// `WdfIoQueueStop`: the queue stops presenting requests. The callback (when every request the
/// driver owns is completed in KMDF) is called at once when the driver owns none, else after
/// the stop: the host does not track that moment.
extern "win64" fn wdf_io_queue_stop(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
    callback: PFN_WDF_IO_QUEUE_STATE,
    context: WDFCONTEXT,
) {
    guard("WdfIoQueueStop", || {
        let sim = sim_of(queue as Handle, "WdfIoQueueStop");
        sim.stop();
        if let Some(done) = state_callback(queue, callback, context) {
            done(&sim);
        }
    });
}

/// `WdfIoQueueStopSynchronously` (PASSIVE).
extern "win64" fn wdf_io_queue_stop_synchronously(_globals: PWDF_DRIVER_GLOBALS, queue: WDFQUEUE) {
    guard("WdfIoQueueStopSynchronously", || {
        sim_of(queue as Handle, "WdfIoQueueStopSynchronously").stop_synchronously();
    });
}

/// `WdfIoQueuePurge`.
extern "win64" fn wdf_io_queue_purge(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
    callback: PFN_WDF_IO_QUEUE_STATE,
    context: WDFCONTEXT,
) {
    guard("WdfIoQueuePurge", || {
        sim_of(queue as Handle, "WdfIoQueuePurge").purge(state_callback(queue, callback, context));
    });
}

/// `WdfIoQueuePurgeSynchronously` (PASSIVE).
extern "win64" fn wdf_io_queue_purge_synchronously(_globals: PWDF_DRIVER_GLOBALS, queue: WDFQUEUE) {
    guard("WdfIoQueuePurgeSynchronously", || {
        sim_of(queue as Handle, "WdfIoQueuePurgeSynchronously").purge_synchronously();
    });
}

/// `WdfIoQueueDrain`.
extern "win64" fn wdf_io_queue_drain(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
    callback: PFN_WDF_IO_QUEUE_STATE,
    context: WDFCONTEXT,
) {
    guard("WdfIoQueueDrain", || {
        sim_of(queue as Handle, "WdfIoQueueDrain").drain(state_callback(queue, callback, context));
    });
}

/// `WdfIoQueueDrainSynchronously` (PASSIVE).
extern "win64" fn wdf_io_queue_drain_synchronously(_globals: PWDF_DRIVER_GLOBALS, queue: WDFQUEUE) {
    guard("WdfIoQueueDrainSynchronously", || {
        sim_of(queue as Handle, "WdfIoQueueDrainSynchronously").drain_synchronously();
    });
}

/// `WdfIoQueueStopAndPurge`.
extern "win64" fn wdf_io_queue_stop_and_purge(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
    callback: PFN_WDF_IO_QUEUE_STATE,
    context: WDFCONTEXT,
) {
    guard("WdfIoQueueStopAndPurge", || {
        sim_of(queue as Handle, "WdfIoQueueStopAndPurge")
            .stop_and_purge(state_callback(queue, callback, context));
    });
}

/// `WdfIoQueueStopAndPurgeSynchronously` (PASSIVE).
extern "win64" fn wdf_io_queue_stop_and_purge_synchronously(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
) {
    guard("WdfIoQueueStopAndPurgeSynchronously", || {
        sim_of(queue as Handle, "WdfIoQueueStopAndPurgeSynchronously")
            .stop_and_purge_synchronously();
    });
}

/// `WdfIoQueueRetrieveNextRequest` (manual queues, or any queue the driver pulls from).
///
/// Errors: `STATUS_NO_MORE_ENTRIES` for an empty queue; `STATUS_INVALID_DEVICE_STATE` for a
/// power-managed queue out of D0; `STATUS_INVALID_PARAMETER` for a null `OutRequest`.
extern "win64" fn wdf_io_queue_retrieve_next_request(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
    out: *mut WDFREQUEST,
) -> NTSTATUS {
    guard("WdfIoQueueRetrieveNextRequest", || {
        if out.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        let object = expect(queue, "WdfIoQueueRetrieveNextRequest");
        let p = payload(&object);
        match p.sim.retrieve_next_request() {
            Ok(r) => {
                let (_, request) = present(&p.sim, r, p.device);
                // SAFETY: the driver's out parameter (checked non-null).
                unsafe { out.write(request) };
                STATUS_SUCCESS
            }
            Err(status) => {
                // SAFETY: as above.
                unsafe { out.write(core::ptr::null_mut()) };
                status.0
            }
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::bindings::_WDF_IO_QUEUE_DISPATCH_TYPE as dispatch_type;
    use super::super::device::testing::{create_device, TestDriver};
    use super::super::request::tests::queue_config;
    use super::*;

    /// `WdfIoQueueCreate` with no attributes.
    pub(crate) fn create_queue(
        globals: PWDF_DRIVER_GLOBALS,
        device: WDFDEVICE,
        config: &mut WDF_IO_QUEUE_CONFIG,
        queue: &mut WDFQUEUE,
    ) -> NTSTATUS {
        wdf_io_queue_create(globals, device, config, core::ptr::null_mut(), queue)
    }

    /// `WdfIoQueueRetrieveNextRequest`.
    pub(crate) fn retrieve(queue: WDFQUEUE, request: &mut WDFREQUEST) -> NTSTATUS {
        wdf_io_queue_retrieve_next_request(core::ptr::null_mut(), queue, request)
    }

    extern "win64" fn evt_io_default(_queue: WDFQUEUE, _request: WDFREQUEST) {}

    #[test]
    fn queue_configs_are_checked_as_kmdf_checks_them() {
        let driver = TestDriver::load("hioqueues", create_device);
        let (_node, device) = driver.plug_in();
        let _bound = driver.machine.enter();
        let g = driver.globals;
        let device = device as WDFDEVICE;
        let mut q: WDFQUEUE = core::ptr::null_mut();

        let mut bad = queue_config(dispatch_type::WdfIoQueueDispatchParallel, false);
        bad.Size -= 8;
        assert_eq!(
            create_queue(g, device, &mut bad, &mut q),
            STATUS_INFO_LENGTH_MISMATCH
        );
        let mut no_callback = queue_config(dispatch_type::WdfIoQueueDispatchParallel, false);
        assert_eq!(
            create_queue(g, device, &mut no_callback, &mut q),
            Status::INVALID_PARAMETER.0
        );
        let mut invalid = queue_config(dispatch_type::WdfIoQueueDispatchMax, false);
        assert_eq!(
            create_queue(g, device, &mut invalid, &mut q),
            Status::INVALID_PARAMETER.0
        );
        assert_eq!(
            wdf_io_queue_create(
                g,
                device,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                &raw mut q
            ),
            Status::INVALID_PARAMETER.0
        );

        let mut default = queue_config(dispatch_type::WdfIoQueueDispatchSequential, true);
        default.EvtIoDefault = Some(evt_io_default);
        assert_eq!(
            create_queue(g, device, &mut default, &mut q),
            STATUS_SUCCESS
        );
        assert_eq!(wdf_io_queue_get_device(g, q), device);
        let mut second = q;
        assert_eq!(
            create_queue(g, device, &mut default, &mut second),
            Status::INVALID_PARAMETER.0
        );

        let mut manual = queue_config(dispatch_type::WdfIoQueueDispatchManual, false);
        let mut mq: WDFQUEUE = core::ptr::null_mut();
        assert_eq!(
            create_queue(g, device, &mut manual, &mut mq),
            STATUS_SUCCESS
        );
        let (mut queued, mut owned) = (7_u32, 7_u32);
        let state = wdf_io_queue_get_state(g, mq, &raw mut queued, &raw mut owned);
        assert_eq!((queued, owned), (0, 0));
        assert_ne!(state & WdfIoQueueAcceptRequests, 0);
        assert_ne!(state & WdfIoQueueNoRequests, 0);
        assert_ne!(state & WdfIoQueueDispatchRequests, 0);
        wdf_io_queue_stop(g, mq, None, core::ptr::null_mut());
        assert_eq!(
            wdf_io_queue_get_state(g, mq, core::ptr::null_mut(), core::ptr::null_mut())
                & WdfIoQueueDispatchRequests,
            0
        );
        wdf_io_queue_start(g, mq);
        wdf_io_queue_purge_synchronously(g, mq);
        assert_eq!(
            wdf_io_queue_get_state(g, mq, core::ptr::null_mut(), core::ptr::null_mut())
                & WdfIoQueueAcceptRequests,
            0
        );
        let mut r: WDFREQUEST = core::ptr::null_mut();
        assert_eq!(retrieve(mq, &mut r), Status::NO_MORE_ENTRIES.0);
        assert!(r.is_null());

        // Routing: only read, write and (internal) device control may be configured.
        assert_eq!(
            wdf_device_configure_request_dispatching(
                g,
                device,
                mq,
                super::super::bindings::_WDF_REQUEST_TYPE::WdfRequestTypeCreate
            ),
            Status::INVALID_PARAMETER.0
        );
        assert_eq!(
            wdf_device_configure_request_dispatching(
                g,
                device,
                mq,
                super::super::bindings::_WDF_REQUEST_TYPE::WdfRequestTypeRead
            ),
            STATUS_SUCCESS
        );
    }
}
