//! A driver written in Rust against the C ABI, calling the host through its function table as an
//! image does: `WdfDriverCreate` with a driver context, generic objects with typed contexts,
//! cleanup and destroy callbacks, references, deletion order, and unload.

use core::ffi::c_void;
use std::sync::{Mutex, PoisonError};

use kmdf_sim::{ClockMode, Machine, VerifierMode};

use super::bindings::status::{
    STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_PARAMETER, STATUS_OBJECT_NAME_EXISTS,
    STATUS_SUCCESS,
};
use super::bindings::{
    PFN_WDFDRIVERCREATE, PFN_WDFOBJECTALLOCATECONTEXT, PFN_WDFOBJECTCONTEXTGETOBJECT,
    PFN_WDFOBJECTCREATE, PFN_WDFOBJECTDELETE, PFN_WDFOBJECTDEREFERENCEACTUAL,
    PFN_WDFOBJECTGETTYPEDCONTEXTWORKER, PFN_WDFOBJECTREFERENCEACTUAL, PWDF_DRIVER_GLOBALS,
    WDFDEVICE_INIT, WDFDRIVER, WDFOBJECT, WDF_DRIVER_CONFIG, WDF_OBJECT_ATTRIBUTES,
    WDF_OBJECT_CONTEXT_TYPE_INFO,
};
use crate::host::{DriverObject, UnicodeString};
use crate::wdfldr::WdfDriverGlobals;

/// A `WDF_OBJECT_CONTEXT_TYPE_INFO` in a static (`WDF_DECLARE_CONTEXT_TYPE`).
struct TypeInfo(WDF_OBJECT_CONTEXT_TYPE_INFO);
// SAFETY: read-only after initialisation; its pointers are to statics.
unsafe impl Sync for TypeInfo {}

const INFO_SIZE: u32 = size_of::<WDF_OBJECT_CONTEXT_TYPE_INFO>() as u32;

static CONTEXT_A: TypeInfo = TypeInfo(WDF_OBJECT_CONTEXT_TYPE_INFO {
    Size: INFO_SIZE,
    ContextName: c"CONTEXT_A".as_ptr(),
    ContextSize: 40,
    UniqueType: &raw const CONTEXT_A.0,
    EvtDriverGetUniqueContextType: None,
});

static CONTEXT_B: TypeInfo = TypeInfo(WDF_OBJECT_CONTEXT_TYPE_INFO {
    Size: INFO_SIZE,
    ContextName: c"CONTEXT_B".as_ptr(),
    ContextSize: 8,
    UniqueType: &raw const CONTEXT_B.0,
    EvtDriverGetUniqueContextType: None,
});

/// What the driver's callbacks saw, in order.
static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Serialises the tests of this module (they share `EVENTS` and the test driver's globals).
static SERIAL: Mutex<()> = Mutex::new(());

fn event(text: String) {
    EVENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(text);
}

fn take_events() -> Vec<String> {
    core::mem::take(&mut *EVENTS.lock().unwrap_or_else(PoisonError::into_inner))
}

/// A function of the host's table, as the driver's `WdfFunctions_01033[index]` would give it.
fn wdf<T: Copy>(name: &str) -> T {
    let address = super::implemented()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map_or_else(|| panic!("{name} is not implemented"), |(_, a)| a);
    assert_eq!(size_of::<T>(), size_of::<usize>());
    // SAFETY: `T` is the `PFN_` type of `name` (an `Option` of a function pointer, the size of
    // an address), and `address` is the host's implementation of that very type.
    unsafe { core::mem::transmute_copy::<usize, T>(&address) }
}

extern "win64" fn cleanup(object: WDFOBJECT) {
    event(format!("cleanup {:#x}", object as usize));
}

extern "win64" fn destroy(object: WDFOBJECT) {
    event(format!("destroy {:#x}", object as usize));
}

extern "win64" fn driver_unload(driver: WDFDRIVER) {
    event(format!("EvtDriverUnload {:#x}", driver as usize));
}

extern "win64" fn device_add(_driver: WDFDRIVER, _init: *mut WDFDEVICE_INIT) -> i32 {
    STATUS_SUCCESS
}

fn attributes(info: Option<&'static TypeInfo>) -> WDF_OBJECT_ATTRIBUTES {
    // SAFETY: WDF_OBJECT_ATTRIBUTES is plain data; all-zero is a valid value (null callbacks,
    // null parent, no context) that WDF_OBJECT_ATTRIBUTES_INIT then fills.
    let mut a: WDF_OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
    a.Size = size_of::<WDF_OBJECT_ATTRIBUTES>() as u32;
    a.ExecutionLevel = super::bindings::_WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent;
    a.SynchronizationScope =
        super::bindings::_WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent;
    a.ContextTypeInfo = info.map_or(core::ptr::null(), |i| &raw const i.0);
    a
}

/// The globals the test driver was "bound" with (a host allocation, as `WdfVersionBind`'s).
static GLOBALS: Mutex<usize> = Mutex::new(0);
static CREATE_STATUS: Mutex<Option<i32>> = Mutex::new(None);

fn globals() -> PWDF_DRIVER_GLOBALS {
    *GLOBALS.lock().unwrap_or_else(PoisonError::into_inner) as PWDF_DRIVER_GLOBALS
}

/// The test driver's `DriverEntry`: `WdfDriverCreate` with a driver context and callbacks; a
/// second call must fail.
extern "win64" fn driver_entry(object: *mut DriverObject, path: *mut UnicodeString) -> i32 {
    let create: PFN_WDFDRIVERCREATE = wdf("WdfDriverCreate");
    let create = create.unwrap();
    // SAFETY: WDF_DRIVER_CONFIG is plain data (WDF_DRIVER_CONFIG_INIT zeroes it first).
    let mut config: WDF_DRIVER_CONFIG = unsafe { core::mem::zeroed() };
    config.Size = size_of::<WDF_DRIVER_CONFIG>() as u32;
    config.EvtDriverDeviceAdd = Some(device_add);
    config.EvtDriverUnload = Some(driver_unload);
    config.DriverPoolTag = u32::from_le_bytes(*b"tTsT");
    let mut attrs = attributes(Some(&CONTEXT_A));
    attrs.EvtCleanupCallback = Some(cleanup);
    let mut driver: WDFDRIVER = core::ptr::null_mut();
    // A config of the wrong size is refused.
    config.Size -= 4;
    // SAFETY: every argument points to a live local or the entry point's own arguments.
    let status = unsafe {
        create(
            globals(),
            object.cast(),
            path.cast(),
            &raw mut attrs,
            &raw mut config,
            &raw mut driver,
        )
    };
    assert_eq!(status, STATUS_INFO_LENGTH_MISMATCH);
    config.Size += 4;
    // SAFETY: as above.
    let status = unsafe {
        create(
            globals(),
            object.cast(),
            path.cast(),
            &raw mut attrs,
            &raw mut config,
            &raw mut driver,
        )
    };
    *CREATE_STATUS.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
    if status < 0 {
        return status;
    }
    // SAFETY: as above; a second WdfDriverCreate is refused.
    let again = unsafe {
        create(
            globals(),
            object.cast(),
            path.cast(),
            core::ptr::null_mut(),
            &raw mut config,
            core::ptr::null_mut(),
        )
    };
    assert!(again < 0);
    event(format!("DriverEntry created {:#x}", driver as usize));
    STATUS_SUCCESS
}

/// A machine with the test driver installed and loaded: (machine, its WDFDRIVER, the driver
/// object and registry path it was given — leaked for the machine's life).
fn load_test_driver() -> (Machine, usize, *mut DriverObject) {
    let globals = Box::into_raw(Box::new(WdfDriverGlobals {
        driver: core::ptr::null_mut(),
        driver_flags: 0,
        driver_tag: 0,
        driver_name: [0; 32],
        displace_driver_unload: 0,
    }));
    *GLOBALS.lock().unwrap_or_else(PoisonError::into_inner) = globals as usize;
    let machine = Machine::builder()
        .clock(ClockMode::Manual)
        .verifier(VerifierMode::Record)
        .build();
    // SAFETY: DRIVER_OBJECT is plain data for the host; zero is a valid starting state.
    let object: *mut DriverObject = Box::into_raw(Box::new(unsafe { core::mem::zeroed() }));
    let text: &'static mut [u16] = Box::leak(
        "\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\abitest"
            .encode_utf16()
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let path = Box::into_raw(Box::new(UnicodeString {
        length: (text.len() * 2) as u16,
        maximum_length: (text.len() * 2) as u16,
        buffer: text.as_mut_ptr(),
    }));
    super::driver::install(&machine, "abitest", driver_entry, object, path);
    let _bound = machine.enter();
    kmdf_sim::driver::Driver::load_installed(&machine, "abitest").expect("DriverEntry succeeds");
    assert_eq!(
        *CREATE_STATUS.lock().unwrap_or_else(PoisonError::into_inner),
        Some(STATUS_SUCCESS)
    );
    // SAFETY: `globals` is the allocation above; WdfDriverCreate filled it.
    let g = unsafe { &*globals };
    assert_eq!(g.driver_tag, u32::from_le_bytes(*b"tTsT"));
    let driver = g.driver as usize;
    assert_ne!(driver, 0);
    (machine, driver, object)
}

fn create_object(parent: Option<usize>, info: Option<&'static TypeInfo>) -> usize {
    let create: PFN_WDFOBJECTCREATE = wdf("WdfObjectCreate");
    let mut attrs = attributes(info);
    attrs.EvtCleanupCallback = Some(cleanup);
    attrs.EvtDestroyCallback = Some(destroy);
    attrs.ParentObject = parent.map_or(core::ptr::null_mut(), |p| p as WDFOBJECT);
    let mut object: WDFOBJECT = core::ptr::null_mut();
    // SAFETY: live locals; the globals of the loaded test driver.
    let status = unsafe { create.unwrap()(globals(), &raw mut attrs, &raw mut object) };
    assert_eq!(status, STATUS_SUCCESS);
    object as usize
}

fn typed_context(object: usize, info: &'static TypeInfo) -> *mut c_void {
    let get: PFN_WDFOBJECTGETTYPEDCONTEXTWORKER = wdf("WdfObjectGetTypedContextWorker");
    // SAFETY: a live handle and a static type info.
    unsafe { get.unwrap()(globals(), object as WDFOBJECT, &raw const info.0) }
}

#[test]
fn driver_create_gives_the_driver_its_handle_context_and_unload_routine() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    take_events();
    let (machine, driver, object) = load_test_driver();
    assert_eq!(take_events(), [format!("DriverEntry created {driver:#x}")]);
    // The driver context: zeroed, 16-byte aligned, found by its type.
    let context = typed_context(driver, &CONTEXT_A);
    assert!(!context.is_null());
    assert_eq!(context as usize % 16, 0);
    // SAFETY: a 40-byte context block the host allocated zeroed.
    let bytes = unsafe { core::slice::from_raw_parts(context.cast::<u8>(), 40) };
    assert!(bytes.iter().all(|b| *b == 0));
    assert!(typed_context(driver, &CONTEXT_B).is_null());
    // SAFETY: the driver object the test allocated.
    assert_ne!(unsafe { (*object).driver_unload }, 0);
    // Unload: EvtDriverUnload, then the driver object's cleanup.
    let loaded = kmdf_sim::driver::Driver::loaded(&machine, "abitest").unwrap();
    {
        let _bound = machine.enter();
        loaded.unload().unwrap();
    }
    assert_eq!(
        take_events(),
        [
            format!("EvtDriverUnload {driver:#x}"),
            format!("cleanup {driver:#x}")
        ]
    );
    assert!(super::objects::get(driver).is_none());
    assert!(machine.verifier().violations().is_empty());
}

#[test]
fn generic_objects_have_typed_contexts_references_and_ordered_teardown() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let (machine, driver, _object) = load_test_driver();
    take_events();
    let _bound = machine.enter();
    let parent = create_object(None, Some(&CONTEXT_A));
    let child = create_object(Some(parent), None);
    assert_ne!(parent, child);
    assert_eq!(
        super::objects::get(parent).unwrap().sim().parent().unwrap(),
        *super::objects::get(driver).unwrap().sim(),
        "WdfObjectCreate parents to the driver by default"
    );
    // Typed contexts: by type, a second one allocated later, and back from a context.
    let a = typed_context(parent, &CONTEXT_A);
    assert!(!a.is_null());
    assert!(typed_context(child, &CONTEXT_A).is_null());
    let allocate: PFN_WDFOBJECTALLOCATECONTEXT = wdf("WdfObjectAllocateContext");
    let mut attrs = attributes(Some(&CONTEXT_B));
    let mut b: *mut c_void = core::ptr::null_mut();
    // SAFETY: live locals and handle.
    let status =
        unsafe { allocate.unwrap()(globals(), parent as WDFOBJECT, &raw mut attrs, &raw mut b) };
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(typed_context(parent, &CONTEXT_B), b);
    let mut again: *mut c_void = core::ptr::null_mut();
    // SAFETY: as above.
    let status = unsafe {
        allocate.unwrap()(
            globals(),
            parent as WDFOBJECT,
            &raw mut attrs,
            &raw mut again,
        )
    };
    assert_eq!((status, again), (STATUS_OBJECT_NAME_EXISTS, b));
    let owner: PFN_WDFOBJECTCONTEXTGETOBJECT = wdf("WdfObjectContextGetObject");
    // SAFETY: a context pointer the host handed out.
    assert_eq!(unsafe { owner.unwrap()(globals(), b) } as usize, parent);
    // Bad attributes are refused with KMDF's statuses.
    let create: PFN_WDFOBJECTCREATE = wdf("WdfObjectCreate");
    let mut bad = attributes(None);
    bad.Size = 8;
    let mut out: WDFOBJECT = core::ptr::null_mut();
    // SAFETY: live locals.
    let status = unsafe { create.unwrap()(globals(), &raw mut bad, &raw mut out) };
    assert_eq!(status, STATUS_INFO_LENGTH_MISMATCH);
    let mut small = attributes(Some(&CONTEXT_A));
    small.ContextSizeOverride = 4;
    // SAFETY: live locals.
    let status = unsafe { create.unwrap()(globals(), &raw mut small, &raw mut out) };
    assert_eq!(status, STATUS_INVALID_PARAMETER);
    // A reference delays the destroy past the delete; children go first.
    let reference: PFN_WDFOBJECTREFERENCEACTUAL = wdf("WdfObjectReferenceActual");
    let dereference: PFN_WDFOBJECTDEREFERENCEACTUAL = wdf("WdfObjectDereferenceActual");
    let delete: PFN_WDFOBJECTDELETE = wdf("WdfObjectDelete");
    // SAFETY: live handles; tag/line/file are diagnostics only.
    unsafe {
        reference.unwrap()(
            globals(),
            parent as WDFOBJECT,
            core::ptr::null_mut(),
            1,
            core::ptr::null(),
        );
        delete.unwrap()(globals(), parent as WDFOBJECT);
    }
    assert_eq!(
        take_events(),
        [
            format!("cleanup {child:#x}"),
            format!("cleanup {parent:#x}"),
            format!("destroy {child:#x}"),
        ]
    );
    assert!(
        super::objects::get(child).is_none(),
        "a destroyed object's handle is retired"
    );
    // The context stays readable until the destroy.
    assert_eq!(typed_context(parent, &CONTEXT_A), a);
    // SAFETY: the reference taken above.
    unsafe {
        dereference.unwrap()(
            globals(),
            parent as WDFOBJECT,
            core::ptr::null_mut(),
            2,
            core::ptr::null(),
        );
    }
    assert_eq!(take_events(), [format!("destroy {parent:#x}")]);
    assert!(super::objects::get(parent).is_none());
    assert!(
        machine.verifier().violations().is_empty(),
        "{:?}",
        machine.verifier().violations()
    );
}
