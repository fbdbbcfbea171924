//! `kmdf_echo.sys`: a minimal KMDF driver written directly on wdk-sys, as the windows-drivers-rs
//! samples are (no DMF). kmdf-host runs its linked image like DMF for Rust's and C DMF's: a host
//! that answers the KMDF function table, not one that knows DMF.
//!
//! * `DriverEntry` → `WdfDriverCreate` (`EvtDriverDeviceAdd`, `EvtDriverUnload`).
//! * `EvtDriverDeviceAdd` → `WdfDeviceCreate` with a device context (`DEVICE_CONTEXT`), a spin
//!   lock, the device interface [`GUID_DEVINTERFACE_KMDF_ECHO`], a parallel default queue
//!   (`EvtIoDeviceControl`, `EvtIoRead`, `EvtIoWrite`) and a manual queue for parked reads.
//! * `EvtDevicePrepareHardware` allocates the echo buffer ([`ECHO_BUFFER_SIZE`] bytes from
//!   non-paged pool, through wdk-alloc's global allocator; failing the start when none is left),
//!   `EvtDeviceReleaseHardware` frees it; `EvtDeviceD0Entry` / `EvtDeviceD0Exit` print with
//!   `DbgPrint`.
//! * [`IOCTL_KMDF_ECHO`] copies the input buffer to the output buffer (`STATUS_BUFFER_TOO_SMALL`
//!   when the output is smaller); any other IOCTL fails with `STATUS_INVALID_DEVICE_REQUEST`.
//! * A write stores its bytes in the echo buffer (`STATUS_INVALID_BUFFER_SIZE` when longer than
//!   the buffer) and completes every parked read with them; a read returns the stored bytes, or,
//!   before anything was written, is forwarded to the manual queue and waits there for the first
//!   write (the framework cancels it if the application does, or purges it when the device is
//!   removed).
#![no_std]

extern crate alloc;
extern crate wdk_panic;

use core::alloc::Layout;
use core::mem::size_of;
use core::ptr::null_mut;

use wdk_sys::ntddk::DbgPrint;
use wdk_sys::{
    call_unsafe_wdf_function_binding, _WDF_EXECUTION_LEVEL, _WDF_IO_QUEUE_DISPATCH_TYPE,
    _WDF_SYNCHRONIZATION_SCOPE, _WDF_TRI_STATE, FILE_ANY_ACCESS, FILE_DEVICE_UNKNOWN, GUID,
    METHOD_BUFFERED, NTSTATUS, NT_SUCCESS, PCUNICODE_STRING, PDRIVER_OBJECT, PVOID,
    PWDFDEVICE_INIT, STATUS_BUFFER_TOO_SMALL, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_BUFFER_SIZE, STATUS_INVALID_DEVICE_REQUEST, STATUS_SUCCESS, ULONG, WDFCMRESLIST,
    WDFDEVICE, WDFDRIVER, WDFOBJECT, WDFQUEUE, WDFREQUEST, WDFSPINLOCK, WDF_DRIVER_CONFIG,
    WDF_IO_QUEUE_CONFIG, WDF_NO_OBJECT_ATTRIBUTES, WDF_OBJECT_ATTRIBUTES,
    WDF_OBJECT_CONTEXT_TYPE_INFO, WDF_PNPPOWER_EVENT_CALLBACKS, WDF_POWER_DEVICE_STATE,
};

/// The image's allocator: non-paged pool (wdk-alloc's `ExAllocatePool2`, tag `rust`).
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

/// The echo device's interface class: `{5B3C1F4E-7A2D-4E8B-9C61-2F0D8E4A7B93}`.
pub const GUID_DEVINTERFACE_KMDF_ECHO: GUID = GUID {
    Data1: 0x5B3C_1F4E,
    Data2: 0x7A2D,
    Data3: 0x4E8B,
    Data4: [0x9C, 0x61, 0x2F, 0x0D, 0x8E, 0x4A, 0x7B, 0x93],
};

/// `CTL_CODE(DeviceType, Function, Method, Access)` of `devioctl.h`.
const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// The echo IOCTL: `CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS)`.
pub const IOCTL_KMDF_ECHO: u32 =
    ctl_code(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS);

/// Bytes the echo buffer holds.
pub const ECHO_BUFFER_SIZE: usize = 64;

/// The echo buffer's layout (allocated in `EvtDevicePrepareHardware`).
const ECHO_BUFFER: Layout = match Layout::from_size_align(ECHO_BUFFER_SIZE, 8) {
    Ok(layout) => layout,
    Err(_) => panic!("the echo buffer's layout"),
};

/// `sizeof(T)` as the `ULONG` of a WDF structure's `Size`.
#[allow(
    clippy::cast_possible_truncation,
    reason = "WDF structures are far below 4 GiB"
)]
const fn structure_size<T>() -> ULONG {
    size_of::<T>() as ULONG
}

/// The device's context (`WDF_DECLARE_CONTEXT_TYPE_WITH_NAME(DEVICE_CONTEXT, …)`): zeroed by
/// the framework when `WdfDeviceCreate` creates the device.
#[repr(C)]
struct DeviceContext {
    /// Guards `buffer` and `stored`.
    lock: WDFSPINLOCK,
    /// Reads that arrived before anything was written.
    parked: WDFQUEUE,
    /// [`ECHO_BUFFER_SIZE`] bytes between `EvtDevicePrepareHardware` and
    /// `EvtDeviceReleaseHardware`, else null.
    buffer: *mut u8,
    /// Bytes of `buffer` the last write stored.
    stored: usize,
}

/// A `WDF_OBJECT_CONTEXT_TYPE_INFO` in a static, as `WDF_DECLARE_CONTEXT_TYPE` defines one.
#[repr(transparent)]
struct ContextTypeInfo(WDF_OBJECT_CONTEXT_TYPE_INFO);

// SAFETY: never written after compile-time initialisation; its pointers are to static data.
unsafe impl Sync for ContextTypeInfo {}

/// `WDF_DECLARE_CONTEXT_TYPE_WITH_NAME(DEVICE_CONTEXT, DeviceGetContext)`: `UniqueType` is the
/// address of this very structure.
static DEVICE_CONTEXT_TYPE: ContextTypeInfo = ContextTypeInfo(WDF_OBJECT_CONTEXT_TYPE_INFO {
    Size: structure_size::<WDF_OBJECT_CONTEXT_TYPE_INFO>(),
    ContextName: c"DEVICE_CONTEXT".as_ptr(),
    ContextSize: size_of::<DeviceContext>(),
    UniqueType: &raw const DEVICE_CONTEXT_TYPE.0,
    EvtDriverGetUniqueContextType: None,
});

/// `DeviceGetContext(device)`.
///
/// # Safety
/// `device` is a device this driver created with [`DEVICE_CONTEXT_TYPE`].
unsafe fn device_context(device: WDFDEVICE) -> *mut DeviceContext {
    // SAFETY: the caller's contract: a live device carrying this context type.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectGetTypedContextWorker,
            device as WDFOBJECT,
            DEVICE_CONTEXT_TYPE.0.UniqueType
        )
    }
    .cast()
}

/// `WDF_OBJECT_ATTRIBUTES_INIT`.
fn object_attributes() -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        Size: structure_size::<WDF_OBJECT_ATTRIBUTES>(),
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ..WDF_OBJECT_ATTRIBUTES::default()
    }
}

/// `WDF_IO_QUEUE_CONFIG_INIT` (`default_queue` false) or `WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE`.
fn queue_config(dispatch: i32, default_queue: bool) -> WDF_IO_QUEUE_CONFIG {
    // SAFETY: WDF_IO_QUEUE_CONFIG is integers, handles and optional callbacks: all-zero is valid.
    let mut config: WDF_IO_QUEUE_CONFIG = unsafe { core::mem::zeroed() };
    config.Size = structure_size::<WDF_IO_QUEUE_CONFIG>();
    config.PowerManaged = _WDF_TRI_STATE::WdfUseDefault;
    config.DefaultQueue = u8::from(default_queue);
    config.DispatchType = dispatch;
    if dispatch == _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel {
        config.Settings.Parallel.NumberOfPresentedRequests = ULONG::MAX;
    }
    config
}

/// The driver's entry point, called by `FxDriverEntry` (WdfDriverEntry.lib) after
/// `WdfVersionBind`.
///
/// # Safety
/// Called by the I/O manager (through `FxDriverEntry`) only, once, with its driver object and
/// registry path.
#[no_mangle]
pub unsafe extern "system" fn DriverEntry(
    driver_object: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let mut config = WDF_DRIVER_CONFIG {
        Size: structure_size::<WDF_DRIVER_CONFIG>(),
        EvtDriverDeviceAdd: Some(evt_driver_device_add),
        EvtDriverUnload: Some(evt_driver_unload),
        DriverInitFlags: 0,
        DriverPoolTag: 0,
    };
    let mut attributes = object_attributes();
    let mut driver: WDFDRIVER = null_mut();
    // SAFETY: DriverEntry's own arguments; the attributes, config and out handle are locals.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver_object,
            registry_path,
            &raw mut attributes,
            &raw mut config,
            &raw mut driver
        )
    };
    if !NT_SUCCESS(status) {
        // SAFETY: a NUL-terminated format whose one conversion is the NTSTATUS passed.
        unsafe {
            DbgPrint(
                c"kmdf_echo: WdfDriverCreate failed with %#x\n".as_ptr(),
                status,
            )
        };
    }
    status
}

/// `EvtDriverUnload`.
unsafe extern "C" fn evt_driver_unload(_driver: WDFDRIVER) {
    // SAFETY: a NUL-terminated format without conversions.
    unsafe { DbgPrint(c"kmdf_echo: EvtDriverUnload\n".as_ptr()) };
}

/// `EvtDriverDeviceAdd`: the device, its context, lock, interface and queues. A failure after
/// `WdfDeviceCreate` returns the status: the framework deletes the device and its children.
unsafe extern "C" fn evt_driver_device_add(
    _driver: WDFDRIVER,
    device_init: PWDFDEVICE_INIT,
) -> NTSTATUS {
    let mut pnp_power = WDF_PNPPOWER_EVENT_CALLBACKS {
        Size: structure_size::<WDF_PNPPOWER_EVENT_CALLBACKS>(),
        EvtDevicePrepareHardware: Some(evt_device_prepare_hardware),
        EvtDeviceReleaseHardware: Some(evt_device_release_hardware),
        EvtDeviceD0Entry: Some(evt_device_d0_entry),
        EvtDeviceD0Exit: Some(evt_device_d0_exit),
        ..WDF_PNPPOWER_EVENT_CALLBACKS::default()
    };
    // SAFETY: the framework's device init for this call; the callbacks are a local it copies.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetPnpPowerEventCallbacks,
            device_init,
            &raw mut pnp_power
        );
    }
    let mut attributes = object_attributes();
    attributes.ContextTypeInfo = DEVICE_CONTEXT_TYPE.0.UniqueType;
    let mut device_init = device_init;
    let mut device: WDFDEVICE = null_mut();
    // SAFETY: the device init of this call (WdfDeviceCreate consumes it), local attributes and
    // out handle.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreate,
            &raw mut device_init,
            &raw mut attributes,
            &raw mut device
        )
    };
    if !NT_SUCCESS(status) {
        return status;
    }
    // SAFETY: the device was just created with DEVICE_CONTEXT_TYPE; no callback of it runs
    // before EvtDriverDeviceAdd returns, so this thread has the context to itself.
    let context = unsafe { &mut *device_context(device) };

    let mut lock_attributes = object_attributes();
    lock_attributes.ParentObject = device as WDFOBJECT;
    // SAFETY: local attributes; the out handle is the context's field.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfSpinLockCreate,
            &raw mut lock_attributes,
            &raw mut context.lock
        )
    };
    if !NT_SUCCESS(status) {
        return status;
    }

    let class = GUID_DEVINTERFACE_KMDF_ECHO;
    // SAFETY: the device just created; the GUID is a local the framework copies; no reference
    // string.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreateDeviceInterface,
            device,
            &raw const class,
            core::ptr::null()
        )
    };
    if !NT_SUCCESS(status) {
        return status;
    }

    let mut config = queue_config(
        _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
        true,
    );
    config.EvtIoDeviceControl = Some(evt_io_device_control);
    config.EvtIoRead = Some(evt_io_read);
    config.EvtIoWrite = Some(evt_io_write);
    let mut queue: WDFQUEUE = null_mut();
    // SAFETY: the device just created, a local config and out handle; the queue's parent is the
    // device (no attributes).
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut config,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut queue
        )
    };
    if !NT_SUCCESS(status) {
        return status;
    }

    let mut config = queue_config(_WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchManual, false);
    // SAFETY: as above; the out handle is the context's field.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut config,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut context.parked
        )
    }
}

/// `EvtDevicePrepareHardware`: the echo buffer.
unsafe extern "C" fn evt_device_prepare_hardware(
    device: WDFDEVICE,
    _resources: WDFCMRESLIST,
    _resources_translated: WDFCMRESLIST,
) -> NTSTATUS {
    // SAFETY: the framework passes this driver's device; PnP callbacks of one device do not run
    // concurrently, and no I/O is dispatched before D0Entry.
    let context = unsafe { &mut *device_context(device) };
    if context.buffer.is_null() {
        // SAFETY: a non-zero size; null is checked below.
        let buffer = unsafe { alloc::alloc::alloc_zeroed(ECHO_BUFFER) };
        if buffer.is_null() {
            // SAFETY: a NUL-terminated format without conversions.
            unsafe { DbgPrint(c"kmdf_echo: no pool for the echo buffer\n".as_ptr()) };
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        context.buffer = buffer;
        context.stored = 0;
    }
    STATUS_SUCCESS
}

/// `EvtDeviceReleaseHardware`: frees the echo buffer.
unsafe extern "C" fn evt_device_release_hardware(
    device: WDFDEVICE,
    _resources_translated: WDFCMRESLIST,
) -> NTSTATUS {
    // SAFETY: as in `evt_device_prepare_hardware`; the queues are stopped by now.
    let context = unsafe { &mut *device_context(device) };
    let buffer = core::mem::replace(&mut context.buffer, null_mut());
    context.stored = 0;
    if !buffer.is_null() {
        // SAFETY: allocated in `evt_device_prepare_hardware` with this layout, freed once.
        unsafe { alloc::alloc::dealloc(buffer, ECHO_BUFFER) };
    }
    STATUS_SUCCESS
}

/// `EvtDeviceD0Entry`.
unsafe extern "C" fn evt_device_d0_entry(
    _device: WDFDEVICE,
    previous_state: WDF_POWER_DEVICE_STATE,
) -> NTSTATUS {
    // SAFETY: a NUL-terminated format whose one conversion is the int passed.
    unsafe {
        DbgPrint(
            c"kmdf_echo: EvtDeviceD0Entry (from WDF_POWER_DEVICE_STATE %d)\n".as_ptr(),
            previous_state,
        );
    }
    STATUS_SUCCESS
}

/// `EvtDeviceD0Exit`.
unsafe extern "C" fn evt_device_d0_exit(
    _device: WDFDEVICE,
    target_state: WDF_POWER_DEVICE_STATE,
) -> NTSTATUS {
    // SAFETY: a NUL-terminated format whose one conversion is the int passed.
    unsafe {
        DbgPrint(
            c"kmdf_echo: EvtDeviceD0Exit (to WDF_POWER_DEVICE_STATE %d)\n".as_ptr(),
            target_state,
        );
    }
    STATUS_SUCCESS
}

/// `WdfRequestCompleteWithInformation`.
///
/// # Safety
/// `request` is a request this driver owns (delivered to it and not completed yet).
unsafe fn complete(request: WDFREQUEST, status: NTSTATUS, information: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            request,
            status,
            information as u64
        );
    }
}

/// The context of the device of `queue`.
///
/// # Safety
/// `queue` is one of this driver's queues.
unsafe fn queue_context(queue: WDFQUEUE) -> *mut DeviceContext {
    // SAFETY: the caller's contract: a queue of this driver, whose device carries the context.
    unsafe {
        let device = call_unsafe_wdf_function_binding!(WdfIoQueueGetDevice, queue);
        device_context(device)
    }
}

/// `EvtIoDeviceControl` of the default queue: the echo IOCTL.
unsafe extern "C" fn evt_io_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    output_length: usize,
    input_length: usize,
    io_control_code: ULONG,
) {
    if io_control_code != IOCTL_KMDF_ECHO {
        // SAFETY: the request delivered to this callback, not completed yet.
        unsafe { complete(request, STATUS_INVALID_DEVICE_REQUEST, 0) };
        return;
    }
    if output_length < input_length {
        // SAFETY: as above.
        unsafe { complete(request, STATUS_BUFFER_TOO_SMALL, 0) };
        return;
    }
    if input_length == 0 {
        // SAFETY: as above.
        unsafe { complete(request, STATUS_SUCCESS, 0) };
        return;
    }
    let mut input: PVOID = null_mut();
    let mut output: PVOID = null_mut();
    // SAFETY: the request delivered to this callback; out pointers to locals.
    let mut status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestRetrieveInputBuffer,
            request,
            input_length,
            &raw mut input,
            null_mut()
        )
    };
    if NT_SUCCESS(status) {
        // SAFETY: as above.
        status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveOutputBuffer,
                request,
                input_length,
                &raw mut output,
                null_mut()
            )
        };
    }
    if !NT_SUCCESS(status) {
        // SAFETY: as above.
        unsafe { complete(request, status, 0) };
        return;
    }
    // SAFETY: both buffers hold at least `input_length` bytes until the request completes; with
    // METHOD_BUFFERED they are the same system buffer, so the copy may overlap (memmove).
    unsafe { core::ptr::copy(input.cast::<u8>(), output.cast::<u8>(), input_length) };
    // SAFETY: as above.
    unsafe { complete(request, STATUS_SUCCESS, input_length) };
}

/// Completes the read `request` with the stored bytes (as many as fit).
///
/// # Safety
/// `request` is a read this driver owns; `context` is its device's. The context's `lock` and
/// `parked` are set (they are, once `EvtDriverDeviceAdd` succeeded); the rest of it is accessed
/// under the lock.
unsafe fn complete_read(context: *mut DeviceContext, request: WDFREQUEST) {
    let mut output: PVOID = null_mut();
    let mut length = 0usize;
    // SAFETY: the caller's contract; out pointers to locals.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestRetrieveOutputBuffer,
            request,
            1,
            &raw mut output,
            &raw mut length
        )
    };
    if !NT_SUCCESS(status) {
        // SAFETY: the caller's contract.
        unsafe { complete(request, status, 0) };
        return;
    }
    // SAFETY: the device's spin lock guards the buffer; the output buffer holds `length` bytes
    // until completion; the echo buffer holds `stored` ≤ ECHO_BUFFER_SIZE bytes while the device
    // is in D0 (requests are dispatched only then).
    let copied = unsafe {
        let lock = (*context).lock;
        call_unsafe_wdf_function_binding!(WdfSpinLockAcquire, lock);
        let copied = length.min((*context).stored);
        core::ptr::copy_nonoverlapping((*context).buffer, output.cast::<u8>(), copied);
        call_unsafe_wdf_function_binding!(WdfSpinLockRelease, lock);
        copied
    };
    // SAFETY: the caller's contract.
    unsafe { complete(request, STATUS_SUCCESS, copied) };
}

/// `EvtIoRead` of the default queue: the stored bytes, or parked until the first write.
unsafe extern "C" fn evt_io_read(queue: WDFQUEUE, request: WDFREQUEST, _length: usize) {
    // SAFETY: the framework passes this driver's default queue.
    let context = unsafe { queue_context(queue) };
    // SAFETY: the device's lock; the request is ours (delivered to this callback), and
    // forwarding it to the device's manual queue is allowed at DISPATCH_LEVEL.
    let parked = unsafe {
        let lock = (*context).lock;
        call_unsafe_wdf_function_binding!(WdfSpinLockAcquire, lock);
        let parked = if (*context).stored == 0 {
            Some(call_unsafe_wdf_function_binding!(
                WdfRequestForwardToIoQueue,
                request,
                (*context).parked
            ))
        } else {
            None
        };
        call_unsafe_wdf_function_binding!(WdfSpinLockRelease, lock);
        parked
    };
    match parked {
        Some(status) if NT_SUCCESS(status) => {}
        // SAFETY: the forward failed: the request is still ours.
        Some(status) => unsafe { complete(request, status, 0) },
        // SAFETY: the request delivered to this callback; the context is its device's.
        None => unsafe { complete_read(context, request) },
    }
}

/// `EvtIoWrite` of the default queue: stores the bytes, then completes the parked reads.
unsafe extern "C" fn evt_io_write(queue: WDFQUEUE, request: WDFREQUEST, length: usize) {
    // SAFETY: the framework passes this driver's default queue.
    let context = unsafe { queue_context(queue) };
    if length > ECHO_BUFFER_SIZE {
        // SAFETY: the request delivered to this callback, not completed yet.
        unsafe { complete(request, STATUS_INVALID_BUFFER_SIZE, 0) };
        return;
    }
    if length > 0 {
        let mut input: PVOID = null_mut();
        // SAFETY: the request delivered to this callback; out pointer to a local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveInputBuffer,
                request,
                length,
                &raw mut input,
                null_mut()
            )
        };
        if !NT_SUCCESS(status) {
            // SAFETY: as above.
            unsafe { complete(request, status, 0) };
            return;
        }
        // SAFETY: the device's lock guards the buffer, which holds ECHO_BUFFER_SIZE ≥ `length`
        // bytes in D0; the input holds `length` bytes until completion.
        unsafe {
            let lock = (*context).lock;
            call_unsafe_wdf_function_binding!(WdfSpinLockAcquire, lock);
            core::ptr::copy_nonoverlapping(
                input.cast::<u8>().cast_const(),
                (*context).buffer,
                length,
            );
            (*context).stored = length;
            call_unsafe_wdf_function_binding!(WdfSpinLockRelease, lock);
        }
        loop {
            let mut parked: WDFREQUEST = null_mut();
            // SAFETY: the device's manual queue (set in EvtDriverDeviceAdd, read-only since);
            // out pointer to a local.
            let status = unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfIoQueueRetrieveNextRequest,
                    (*context).parked,
                    &raw mut parked
                )
            };
            if !NT_SUCCESS(status) {
                break;
            }
            // SAFETY: retrieved from the manual queue: the driver owns it now.
            unsafe { complete_read(context, parked) };
        }
    }
    // SAFETY: the request delivered to this callback, not completed yet.
    unsafe { complete(request, STATUS_SUCCESS, length) };
}
