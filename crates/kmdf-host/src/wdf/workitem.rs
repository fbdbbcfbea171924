//! Work items: `WdfWorkItemCreate`, `WdfWorkItemEnqueue`, `WdfWorkItemFlush`,
//! `WdfWorkItemGetParentObject`, on kmdf-sim's [`WorkItem`].
//!
//! The `WDFWORKITEM` is kmdf-sim's work-item object (its `ParentObject` is mandatory and must
//! lead to a device, as KMDF requires); `EvtWorkItem` runs at `PASSIVE_LEVEL` on one of the
//! machine's system worker threads, an enqueue of a queued item does not queue it again, and
//! deleting the item — by `WdfObjectDelete` or with its parent — skips a queued run and waits
//! for a running one. `AutomaticSerialization` is accepted and not modelled (no image we run
//! parents a work item to an object with a synchronization scope).

use std::sync::Arc;

use kmdf_sim::exec::WorkItem;
use kmdf_sim::Status;

use super::bindings::status::{STATUS_INFO_LENGTH_MISMATCH, STATUS_SUCCESS};
use super::bindings::{
    NTSTATUS, PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES, PWDF_WORKITEM_CONFIG, WDFOBJECT,
    WDFWORKITEM, WDF_WORKITEM_CONFIG,
};
use super::objects::{self, Attributes, Object};
use super::wdf_exports;
use crate::host::guard;

wdf_exports! {
    WdfWorkItemCreate => wdf_work_item_create: PFN_WDFWORKITEMCREATE,
    WdfWorkItemEnqueue => wdf_work_item_enqueue: PFN_WDFWORKITEMENQUEUE,
    WdfWorkItemFlush => wdf_work_item_flush: PFN_WDFWORKITEMFLUSH,
    WdfWorkItemGetParentObject => wdf_work_item_get_parent_object: PFN_WDFWORKITEMGETPARENTOBJECT,
}

/// The payload of a `WDFWORKITEM`: the kmdf-sim work item (its owner).
#[derive(Debug)]
pub struct WorkItemPayload(pub WorkItem);

/// The parent of a timer's or work item's object, as a handle (null when it has none or it is
/// not a host object).
pub(crate) fn parent_handle(object: &Object) -> WDFOBJECT {
    object
        .sim()
        .parent()
        .and_then(|p| objects::of_sim(&p))
        .map_or(core::ptr::null_mut(), |p| p.as_handle())
}

/// `WdfWorkItemCreate`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL config or out pointer, or no
/// `EvtWorkItemFunc`; `STATUS_INFO_LENGTH_MISMATCH` for a config or attributes of the wrong
/// size; `STATUS_WDF_PARENT_NOT_SPECIFIED` without attributes naming a parent;
/// kmdf-sim's (`STATUS_INVALID_DEVICE_REQUEST` for a parent not under a device, …).
extern "win64" fn wdf_work_item_create(
    _globals: PWDF_DRIVER_GLOBALS,
    config: PWDF_WORKITEM_CONFIG,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    work_item: *mut WDFWORKITEM,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfWorkItemCreate";
    guard(ROUTINE, || {
        if config.is_null() || work_item.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        // SAFETY: the routine's contract: the driver's config for the call.
        let cfg: WDF_WORKITEM_CONFIG = unsafe { config.read_unaligned() };
        if cfg.Size as usize != size_of::<WDF_WORKITEM_CONFIG>() {
            return STATUS_INFO_LENGTH_MISMATCH;
        }
        let Some(callback) = cfg.EvtWorkItemFunc else {
            return Status::INVALID_PARAMETER.0;
        };
        // SAFETY: null or the driver's attributes for the call.
        let attributes = match unsafe { Attributes::read(attributes) } {
            Ok(a) => a,
            Err(status) => return status.0,
        };
        if attributes.and_then(|a| a.parent).is_none() {
            return Status::WDF_PARENT_NOT_SPECIFIED.0;
        }
        let pending = match objects::begin("WDFWORKITEM", attributes) {
            Ok(p) => p,
            Err(status) => return status.0,
        };
        let handle = pending.handle();
        let name = format!("WDFWORKITEM {handle:#x}");
        let attrs = pending.sim_attributes(ROUTINE, None);
        let item = match WorkItem::create(&name, attrs, move |_| {
            // SAFETY: the driver's `EVT_WDF_WORKITEM` with its live WDFWORKITEM (deleting the
            // item waits for a running callback).
            unsafe { callback(handle as WDFWORKITEM) };
        }) {
            Ok(item) => item,
            Err(status) => return status.0,
        };
        let Some(sim) = item.object().cloned() else {
            return Status::INVALID_DEVICE_STATE.0;
        };
        pending.finish(sim, WorkItemPayload(item));
        // SAFETY: the driver's out parameter (checked non-null above).
        unsafe { work_item.write(handle as WDFWORKITEM) };
        STATUS_SUCCESS
    })
}

fn work_item(handle: WDFWORKITEM, routine: &str) -> Arc<Object> {
    objects::expect_kind(handle as usize, "WDFWORKITEM", routine)
}

/// `WdfWorkItemEnqueue` (≤ `DISPATCH_LEVEL`).
extern "win64" fn wdf_work_item_enqueue(_globals: PWDF_DRIVER_GLOBALS, item: WDFWORKITEM) {
    guard("WdfWorkItemEnqueue", || {
        let object = work_item(item, "WdfWorkItemEnqueue");
        if let Some(p) = object.payload::<WorkItemPayload>() {
            p.0.enqueue();
        }
    });
}

/// `WdfWorkItemFlush` (`PASSIVE_LEVEL`): returns once the item is not queued and its callback
/// is not running.
extern "win64" fn wdf_work_item_flush(_globals: PWDF_DRIVER_GLOBALS, item: WDFWORKITEM) {
    guard("WdfWorkItemFlush", || {
        let object = work_item(item, "WdfWorkItemFlush");
        if let Some(p) = object.payload::<WorkItemPayload>() {
            p.0.flush();
        }
    });
}

/// `WdfWorkItemGetParentObject`.
extern "win64" fn wdf_work_item_get_parent_object(
    _globals: PWDF_DRIVER_GLOBALS,
    item: WDFWORKITEM,
) -> WDFOBJECT {
    guard("WdfWorkItemGetParentObject", || {
        parent_handle(&work_item(item, "WdfWorkItemGetParentObject"))
    })
}

#[cfg(test)]
mod tests {
    use core::sync::atomic::{AtomicUsize, Ordering};

    use super::super::device::testing::{attributes, create_device, TestDriver};
    use super::*;

    static RAN: AtomicUsize = AtomicUsize::new(0);

    extern "win64" fn on_work(_item: WDFWORKITEM) {
        assert_eq!(kmdf_sim::exec::current_irql(), kmdf_sim::Irql::Passive);
        RAN.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn a_work_item_runs_at_passive_level_and_is_flushed() {
        assert_eq!(size_of::<WDF_WORKITEM_CONFIG>(), 24);
        let driver = TestDriver::load("hdevwork", create_device);
        let (node, device) = driver.plug_in();
        let g = driver.globals;
        let bound = driver.machine.enter();
        // SAFETY: plain data (WDF_WORKITEM_CONFIG_INIT zeroes it).
        let mut c: WDF_WORKITEM_CONFIG = unsafe { core::mem::zeroed() };
        c.Size = u32::try_from(size_of::<WDF_WORKITEM_CONFIG>()).unwrap();
        c.EvtWorkItemFunc = Some(on_work);
        let mut item: WDFWORKITEM = core::ptr::null_mut();
        assert_eq!(
            wdf_work_item_create(g, &raw mut c, core::ptr::null_mut(), &raw mut item),
            Status::WDF_PARENT_NOT_SPECIFIED.0
        );
        assert_eq!(
            wdf_work_item_create(
                g,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                &raw mut item
            ),
            Status::INVALID_PARAMETER.0
        );
        let mut a = attributes(Some(device));
        c.Size += 1;
        assert_eq!(
            wdf_work_item_create(g, &raw mut c, &raw mut a, &raw mut item),
            STATUS_INFO_LENGTH_MISMATCH
        );
        c.Size -= 1;
        assert_eq!(
            wdf_work_item_create(g, &raw mut c, &raw mut a, &raw mut item),
            STATUS_SUCCESS
        );
        assert_eq!(wdf_work_item_get_parent_object(g, item) as usize, device);
        wdf_work_item_enqueue(g, item);
        wdf_work_item_flush(g, item);
        assert_eq!(RAN.load(Ordering::SeqCst), 1);
        drop(bound);
        {
            let _bound = driver.machine.enter();
            node.remove().unwrap();
        }
        assert!(objects::get(item as usize).is_none());
        assert_eq!(driver.machine.verdict().map(|_| ()), Ok(()));
    }
}
