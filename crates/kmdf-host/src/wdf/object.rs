//! The `WdfObject…` functions: generic objects (C DMF's Modules are ones), deletion, typed
//! contexts and references.

use kmdf_sim::object::WdfObject;
use kmdf_sim::Status;

use super::bindings::status::{STATUS_OBJECT_NAME_EXISTS, STATUS_SUCCESS};
use super::bindings::{
    LONG, NTSTATUS, PCCH, PCWDF_OBJECT_CONTEXT_TYPE_INFO, PVOID, PWDF_DRIVER_GLOBALS,
    PWDF_OBJECT_ATTRIBUTES, WDFOBJECT,
};
use super::objects::{self, Attributes, ContextType};
use super::{driver, wdf_exports};
use crate::host::guard;

wdf_exports! {
    WdfObjectCreate => wdf_object_create: PFN_WDFOBJECTCREATE,
    WdfObjectDelete => wdf_object_delete: PFN_WDFOBJECTDELETE,
    WdfObjectGetTypedContextWorker => wdf_object_get_typed_context_worker: PFN_WDFOBJECTGETTYPEDCONTEXTWORKER,
    WdfObjectAllocateContext => wdf_object_allocate_context: PFN_WDFOBJECTALLOCATECONTEXT,
    WdfObjectContextGetObject => wdf_object_context_get_object: PFN_WDFOBJECTCONTEXTGETOBJECT,
    WdfObjectReferenceActual => wdf_object_reference_actual: PFN_WDFOBJECTREFERENCEACTUAL,
    WdfObjectDereferenceActual => wdf_object_dereference_actual: PFN_WDFOBJECTDEREFERENCEACTUAL,
}

/// The payload of a generic object (`WdfObjectCreate`): nothing beyond the object itself.
#[derive(Debug)]
pub struct Generic;

/// `WdfObjectCreate`: a generic object, parented to the driver unless the attributes name a
/// parent.
extern "win64" fn wdf_object_create(
    globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    object: *mut WDFOBJECT,
) -> NTSTATUS {
    guard("WdfObjectCreate", || {
        if object.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        let driver = driver::of_globals(globals, "WdfObjectCreate");
        // SAFETY: the routine's contract: null or the driver's attributes for the call.
        let attributes = match unsafe { Attributes::read(attributes) } {
            Ok(a) => a,
            Err(status) => return status.0,
        };
        let pending = match objects::begin("WDFOBJECT", attributes) {
            Ok(p) => p,
            Err(status) => return status.0,
        };
        let attrs = pending.sim_attributes("WdfObjectCreate", Some(driver.sim.object()));
        let Some(machine) = driver.sim.machine() else {
            return Status::INVALID_DEVICE_STATE.0;
        };
        let sim = match WdfObject::create(&machine, "WDFOBJECT", attrs) {
            Ok(sim) => sim,
            Err(status) => return status.0,
        };
        let created = pending.finish(sim, Generic);
        // SAFETY: `object` is the driver's out parameter (checked non-null above).
        unsafe { object.write(created.as_handle()) };
        STATUS_SUCCESS
    })
}

/// `WdfObjectDelete`: kmdf-sim's two-phase deletion (cleanup of the subtree, then destroy when
/// the references are gone). Deleting an object twice is a verifier violation there.
extern "win64" fn wdf_object_delete(_globals: PWDF_DRIVER_GLOBALS, object: WDFOBJECT) {
    guard("WdfObjectDelete", || {
        let object = objects::expect(object as usize, "WdfObjectDelete");
        if super::pdo::delete_unreported_pdo(&object) {
            return;
        }
        let _ = object.sim().delete();
    });
}

/// `WdfObjectGetTypedContextWorker`: the object's context of the type (by `UniqueType`), or
/// null when it has none.
extern "win64" fn wdf_object_get_typed_context_worker(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFOBJECT,
    type_info: PCWDF_OBJECT_CONTEXT_TYPE_INFO,
) -> PVOID {
    guard("WdfObjectGetTypedContextWorker", || {
        let object = objects::expect(handle as usize, "WdfObjectGetTypedContextWorker");
        // SAFETY: the driver's static type info (`WDF_GET_CONTEXT_TYPE_INFO`).
        match unsafe { ContextType::read(type_info, 0) } {
            Ok(Some(info)) => object.context(info.unique).unwrap_or(core::ptr::null_mut()),
            _ => core::ptr::null_mut(),
        }
    })
}

/// `WdfObjectAllocateContext`: another context on an existing object;
/// `STATUS_OBJECT_NAME_EXISTS` (a success) with the existing block when it already has one of
/// that type.
extern "win64" fn wdf_object_allocate_context(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFOBJECT,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    context: *mut PVOID,
) -> NTSTATUS {
    guard("WdfObjectAllocateContext", || {
        let object = objects::expect(handle as usize, "WdfObjectAllocateContext");
        // SAFETY: the routine's contract: the driver's attributes for the call.
        let attributes = match unsafe { Attributes::read(attributes) } {
            Ok(Some(a)) => a,
            Ok(None) => return Status::INVALID_PARAMETER.0,
            Err(status) => return status.0,
        };
        let Some(info) = attributes.context else {
            return Status::INVALID_PARAMETER.0;
        };
        if object.sim().is_deleted() {
            return Status::DELETE_PENDING.0;
        }
        match object.add_context(&info) {
            Ok((block, fresh)) => {
                if !context.is_null() {
                    // SAFETY: the driver's optional out parameter.
                    unsafe { context.write(block) };
                }
                if fresh {
                    STATUS_SUCCESS
                } else {
                    STATUS_OBJECT_NAME_EXISTS
                }
            }
            Err(status) => status.0,
        }
    })
}

/// `WdfObjectContextGetObject`: the object a context block belongs to.
extern "win64" fn wdf_object_context_get_object(
    _globals: PWDF_DRIVER_GLOBALS,
    context: PVOID,
) -> WDFOBJECT {
    guard("WdfObjectContextGetObject", || {
        objects::owner_of_context(context as usize).map_or(core::ptr::null_mut(), |o| o.as_handle())
    })
}

/// `WdfObjectReferenceActual` (`WdfObjectReference[WithTag]`).
extern "win64" fn wdf_object_reference_actual(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFOBJECT,
    _tag: PVOID,
    _line: LONG,
    _file: PCCH,
) {
    guard("WdfObjectReferenceActual", || {
        objects::expect(handle as usize, "WdfObjectReferenceActual")
            .sim()
            .reference();
    });
}

/// `WdfObjectDereferenceActual` (`WdfObjectDereference[WithTag]`): the last reference of a
/// deleted object destroys it.
extern "win64" fn wdf_object_dereference_actual(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFOBJECT,
    _tag: PVOID,
    _line: LONG,
    _file: PCCH,
) {
    guard("WdfObjectDereferenceActual", || {
        objects::expect(handle as usize, "WdfObjectDereferenceActual")
            .sim()
            .dereference();
    });
}
