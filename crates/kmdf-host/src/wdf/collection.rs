//! Collections: `WdfCollectionCreate`, `…Add`, `…Remove`, `…RemoveItem`, `…GetCount`,
//! `…GetItem`, `…GetFirstItem`, `…GetLastItem` (C DMF keeps its Modules and file objects in
//! them).
//!
//! A `WDFCOLLECTION` is a kmdf-sim object of that kind (default parent: the driver) whose
//! payload is the list of handles. As in KMDF, the collection holds a reference on each object
//! it contains, released when the object is removed or the collection is deleted; the
//! collection is not synchronised (the driver locks around it, as KMDF requires).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kmdf_sim::object::WdfObject;
use kmdf_sim::Status;

use super::bindings::status::STATUS_SUCCESS;
use super::bindings::{
    NTSTATUS, PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES, ULONG, WDFCOLLECTION, WDFOBJECT,
};
use super::objects::{self, Attributes, Handle, Object};
use super::{driver, wdf_exports};
use crate::host::{guard, machine};

wdf_exports! {
    WdfCollectionCreate => wdf_collection_create: PFN_WDFCOLLECTIONCREATE,
    WdfCollectionGetCount => wdf_collection_get_count: PFN_WDFCOLLECTIONGETCOUNT,
    WdfCollectionAdd => wdf_collection_add: PFN_WDFCOLLECTIONADD,
    WdfCollectionRemove => wdf_collection_remove: PFN_WDFCOLLECTIONREMOVE,
    WdfCollectionRemoveItem => wdf_collection_remove_item: PFN_WDFCOLLECTIONREMOVEITEM,
    WdfCollectionGetItem => wdf_collection_get_item: PFN_WDFCOLLECTIONGETITEM,
    WdfCollectionGetFirstItem => wdf_collection_get_first_item: PFN_WDFCOLLECTIONGETFIRSTITEM,
    WdfCollectionGetLastItem => wdf_collection_get_last_item: PFN_WDFCOLLECTIONGETLASTITEM,
}

/// The payload of a `WDFCOLLECTION`: the objects, in order, each with the reference the
/// collection holds on it (released when the payload drops with the collection).
#[derive(Debug, Default)]
pub struct CollectionPayload {
    items: Mutex<Vec<(Handle, WdfObject)>>,
}

impl Drop for CollectionPayload {
    fn drop(&mut self) {
        let items = core::mem::take(self.items.get_mut().unwrap_or_else(PoisonError::into_inner));
        for (_, object) in items {
            object.dereference();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CollectionPayload {
    /// Appends `object`, taking a reference on it.
    pub fn add(&self, handle: Handle, object: &WdfObject) {
        object.reference();
        lock(&self.items).push((handle, object.clone()));
    }

    /// The number of objects.
    pub fn count(&self) -> usize {
        lock(&self.items).len()
    }

    /// The object at `index`.
    pub fn get(&self, index: usize) -> Option<Handle> {
        lock(&self.items).get(index).map(|(h, _)| *h)
    }

    /// The last object.
    pub fn last(&self) -> Option<Handle> {
        lock(&self.items).last().map(|(h, _)| *h)
    }

    /// Removes the object at `index` and releases the collection's reference; false if there
    /// is none.
    pub fn remove_at(&self, index: usize) -> bool {
        let removed = {
            let mut items = lock(&self.items);
            (index < items.len()).then(|| items.remove(index))
        };
        removed.is_some_and(|(_, object)| {
            object.dereference();
            true
        })
    }

    /// The index of `handle`'s first occurrence.
    pub fn position(&self, handle: Handle) -> Option<usize> {
        lock(&self.items).iter().position(|(h, _)| *h == handle)
    }
}

fn collection(handle: WDFCOLLECTION, routine: &str) -> Arc<Object> {
    objects::expect_kind(handle as usize, "WDFCOLLECTION", routine)
}

fn items(object: &Object) -> &CollectionPayload {
    object
        .payload::<CollectionPayload>()
        .expect("a WDFCOLLECTION has a CollectionPayload")
}

fn to_handle(handle: Option<Handle>) -> WDFOBJECT {
    handle.map_or(core::ptr::null_mut(), |h| h as WDFOBJECT)
}

/// `WdfCollectionCreate`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL out pointer; `STATUS_INFO_LENGTH_MISMATCH` for
/// attributes of the wrong size; kmdf-sim's object creation errors.
extern "win64" fn wdf_collection_create(
    globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    out: *mut WDFCOLLECTION,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfCollectionCreate";
    guard(ROUTINE, || {
        if out.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        let driver = driver::of_globals(globals, ROUTINE);
        // SAFETY: null or the driver's attributes for the call.
        let attributes = match unsafe { Attributes::read(attributes) } {
            Ok(a) => a,
            Err(status) => return status.0,
        };
        let pending = match objects::begin("WDFCOLLECTION", attributes) {
            Ok(p) => p,
            Err(status) => return status.0,
        };
        let attrs = pending.sim_attributes(ROUTINE, Some(driver.sim.object()));
        let sim = match WdfObject::create(&machine(ROUTINE), "WDFCOLLECTION", attrs) {
            Ok(sim) => sim,
            Err(status) => return status.0,
        };
        let created = pending.finish(sim, CollectionPayload::default());
        // SAFETY: the driver's out parameter (checked non-null above).
        unsafe { out.write(created.as_handle()) };
        STATUS_SUCCESS
    })
}

/// `WdfCollectionGetCount`.
extern "win64" fn wdf_collection_get_count(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFCOLLECTION,
) -> ULONG {
    guard("WdfCollectionGetCount", || {
        let count = items(&collection(handle, "WdfCollectionGetCount")).count();
        ULONG::try_from(count).unwrap_or(ULONG::MAX)
    })
}

/// `WdfCollectionAdd`: appends the object and takes a reference on it.
///
/// Errors: `STATUS_DELETE_PENDING` for an object being deleted (KMDF cannot reference it).
extern "win64" fn wdf_collection_add(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFCOLLECTION,
    object: WDFOBJECT,
) -> NTSTATUS {
    guard("WdfCollectionAdd", || {
        let target = collection(handle, "WdfCollectionAdd");
        let item = objects::expect(object as usize, "WdfCollectionAdd");
        if item.sim().is_deleted() {
            return Status::DELETE_PENDING.0;
        }
        items(&target).add(item.handle(), item.sim());
        STATUS_SUCCESS
    })
}

/// `WdfCollectionRemove`: removes the object and releases the collection's reference. An object
/// that is not in the collection is a driver bug KMDF's verifier breaks on; the host ignores it.
extern "win64" fn wdf_collection_remove(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFCOLLECTION,
    item: WDFOBJECT,
) {
    guard("WdfCollectionRemove", || {
        let target = collection(handle, "WdfCollectionRemove");
        let payload = items(&target);
        if let Some(index) = payload.position(item as usize) {
            payload.remove_at(index);
        }
    });
}

/// `WdfCollectionRemoveItem`: removes the object at `Index` (an index past the end is ignored,
/// as KMDF does).
extern "win64" fn wdf_collection_remove_item(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFCOLLECTION,
    index: ULONG,
) {
    guard("WdfCollectionRemoveItem", || {
        let target = collection(handle, "WdfCollectionRemoveItem");
        items(&target).remove_at(index as usize);
    });
}

/// `WdfCollectionGetItem`: the object at `Index`, or NULL past the end.
extern "win64" fn wdf_collection_get_item(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFCOLLECTION,
    index: ULONG,
) -> WDFOBJECT {
    guard("WdfCollectionGetItem", || {
        to_handle(items(&collection(handle, "WdfCollectionGetItem")).get(index as usize))
    })
}

/// `WdfCollectionGetFirstItem`: NULL for an empty collection.
extern "win64" fn wdf_collection_get_first_item(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFCOLLECTION,
) -> WDFOBJECT {
    guard("WdfCollectionGetFirstItem", || {
        to_handle(items(&collection(handle, "WdfCollectionGetFirstItem")).get(0))
    })
}

/// `WdfCollectionGetLastItem`: NULL for an empty collection.
extern "win64" fn wdf_collection_get_last_item(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFCOLLECTION,
) -> WDFOBJECT {
    guard("WdfCollectionGetLastItem", || {
        to_handle(items(&collection(handle, "WdfCollectionGetLastItem")).last())
    })
}

#[cfg(test)]
mod tests {
    use super::super::bindings::{PFN_WDFOBJECTCREATE, PFN_WDFOBJECTDELETE};
    use super::super::device::testing::{create_device, wdf, TestDriver};
    use super::*;

    fn generic(g: PWDF_DRIVER_GLOBALS) -> WDFOBJECT {
        let create: PFN_WDFOBJECTCREATE = wdf("WdfObjectCreate");
        let mut object: WDFOBJECT = core::ptr::null_mut();
        // SAFETY: live locals.
        let status = unsafe { create.unwrap()(g, core::ptr::null_mut(), &raw mut object) };
        assert_eq!(status, STATUS_SUCCESS);
        object
    }

    #[test]
    fn a_collection_keeps_its_objects_in_order_and_holds_a_reference_on_each() {
        let driver = TestDriver::load("hdevcoll", create_device);
        let globals = driver.globals;
        let g = globals;
        let bound = driver.machine.enter();
        assert_eq!(
            wdf_collection_create(g, core::ptr::null_mut(), core::ptr::null_mut()),
            Status::INVALID_PARAMETER.0
        );
        let mut coll: WDFCOLLECTION = core::ptr::null_mut();
        assert_eq!(
            wdf_collection_create(g, core::ptr::null_mut(), &raw mut coll),
            STATUS_SUCCESS
        );
        assert_eq!(wdf_collection_get_count(g, coll), 0);
        assert!(wdf_collection_get_first_item(g, coll).is_null());
        assert!(wdf_collection_get_last_item(g, coll).is_null());
        let (first, second, third) = (generic(g), generic(g), generic(g));
        for o in [first, second, third] {
            assert_eq!(wdf_collection_add(g, coll, o), STATUS_SUCCESS);
        }
        assert_eq!(wdf_collection_get_count(g, coll), 3);
        assert_eq!(wdf_collection_get_item(g, coll, 1), second);
        assert!(wdf_collection_get_item(g, coll, 3).is_null());
        assert_eq!(wdf_collection_get_first_item(g, coll), first);
        assert_eq!(wdf_collection_get_last_item(g, coll), third);
        // Deleting an object in the collection: it lives on (the collection's reference) until
        // it is removed.
        let delete: PFN_WDFOBJECTDELETE = wdf("WdfObjectDelete");
        // SAFETY: a live handle.
        unsafe { delete.unwrap()(g, second) };
        assert!(objects::get(second as usize).is_some());
        wdf_collection_remove(g, coll, second);
        assert!(objects::get(second as usize).is_none());
        assert_eq!(wdf_collection_get_count(g, coll), 2);
        wdf_collection_remove_item(g, coll, 7);
        wdf_collection_remove_item(g, coll, 0);
        assert_eq!(wdf_collection_get_first_item(g, coll), third);
        // Deleting the collection releases the rest; `third` goes with the driver.
        // SAFETY: a live handle.
        unsafe { delete.unwrap()(g, coll.cast()) };
        assert!(objects::get(coll as usize).is_none());
        assert!(objects::get(third as usize).is_some());
        drop(bound);
        let loaded = kmdf_sim::driver::Driver::loaded(&driver.machine, "hdevcoll").unwrap();
        {
            let _bound = driver.machine.enter();
            loaded.unload().unwrap();
        }
        assert!(objects::get(first as usize).is_none());
        assert!(objects::get(third as usize).is_none());
        assert_eq!(driver.machine.verdict().map(|_| ()), Ok(()));
    }
}
