//! Bus drivers: child devices a driver reports on its own device (static enumeration).
//!
//! # Model
//!
//! A bus driver allocates a PDO's init on its FDO ([`DeviceInit::pdo`],
//! `WdfPdoInitAllocate`), gives it an identity (`WdfPdoInitAssignDeviceID`,
//! `WdfPdoInitAddHardwareID`, …) and its PnP/power callbacks, creates it
//! ([`Device::create`](crate::device::Device::create)) and reports it
//! ([`Device::add_static_child`], `WdfFdoAddStaticChild`). The PnP manager then enumerates the
//! child once the FDO's stack is started ("bus relations"): a new [`DeviceNode`] under the bus
//! node whose stack is the PDO at the bottom ([`StackRole::Bus`]) plus the function driver the
//! child's ids select ([`crate::driver::bind_hardware_id`]: the hardware ids in order, then the
//! compatible ids). The PDO's callbacks run in the stack's sequences like every driver's — first
//! on the way up, last on the way down ([A User Plugs in a Device], [A User Unplugs a Device]).
//! A PDO marked raw (`WdfPdoInitAssignRawDevice`) starts without a function driver when none
//! matches and owns power policy; a non-raw PDO with no matching driver gets a node that fails
//! with `STATUS_NO_SUCH_DEVICE` (Windows' "driver not installed" problem).
//!
//! **Dynamic enumeration** goes through the FDO's child list ([`Device::create_child_list`],
//! the default child list of `WdfFdoInitSetDefaultChildListConfig`): the bus driver reports a
//! child by its identification description ([`Device::child_list_add_or_update_as_present`],
//! `WdfChildListAddOrUpdateChildDescriptionAsPresent`); when the PnP manager next asks for bus
//! relations the framework calls the driver's `EvtChildListCreateDevice` with a PDO init, and the
//! PDO it creates is enumerated like a static child. [`Device::child_list_update_as_missing`]
//! (`WdfChildListUpdateChildDescriptionAsMissing`) reports it gone.
//!
//! [`Device::pdo_mark_missing`] (`WdfPdoMarkMissing`) reports the child gone: its stack takes the
//! surprise-removal path and the PDO is deleted. [`Device::pdo_request_eject`]
//! (`WdfPdoRequestEject`) ejects it: query-remove (a veto keeps it), the orderly-removal list,
//! then the PDO is deleted. Removing or surprise-removing the bus removes its children first
//! (see [`crate::pnp`]) and deletes the PDOs it reported.
//!
//! # Choices for points the documentation leaves open ("inferred")
//!
//! * Enumeration, mark-missing and ejection run **synchronously on the calling thread** when it
//!   is at `PASSIVE_LEVEL` and the bus node is not in a PnP operation (Windows queues them
//!   behind `IoInvalidateDeviceRelations` / `IoRequestDeviceEject`); a child reported from one
//!   of the bus node's own callbacks (e.g. its `EvtDeviceD0Entry`) is enumerated when that
//!   operation ends with the node started.
//! * A child that is orderly removed or disabled on its own keeps its PDO while it is disabled
//!   or failed (the bus still reports it); a removed one's PDO is deleted.
//!
//! A disabled child's PDO follows KMDF's PDO package (Windows Driver Frameworks source,
//! `fxpkgpdo.cpp`): a PDO removed but not reported missing waits after the removal list's
//! EvtDeviceSelfManagedIoFlush, without EvtDeviceSelfManagedIoCleanup and without being deleted;
//! enabling the child starts it again with EvtDevicePrepareHardware, EvtDeviceD0Entry and
//! EvtDeviceSelfManagedIoRestart (`selfmanagediostatemachine.cpp`: from Flushed a start goes to
//! Restarting). When it is then reported missing (`WdfPdoMarkMissing`, eject, its bus removed)
//! its EvtDeviceSelfManagedIoCleanup runs before it is deleted.
//! * The child's instance id is `{device id}\{instance id}` (or a counter when the bus assigned
//!   none).
//!
//! [A User Plugs in a Device]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-user-plugs-in-a-device
//! [A User Unplugs a Device]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-user-unplugs-a-device

use std::sync::{Arc, Mutex};

use super::{DeviceNode, NodeState, StackSpec};
use crate::device::{lock, Device, DeviceInit, PdoStatus};
use crate::driver::driver_for_ids;
use crate::exec::{current_irql, Irql};
use crate::status::Status;
use crate::verifier::invoke_callback;

/// `EvtChildListCreateDevice(ChildList, IdentificationDescription, ChildInit)`: create the PDO
/// (`Device::create`) from the init, with the identity of the description.
pub type ChildListCreateDeviceFn =
    Arc<dyn Fn(&Device, &str, &mut DeviceInit) -> Result<(), Status> + Send + Sync>;

/// One description of a child list.
struct ChildEntry {
    /// The identification description (its bytes compared, as `EvtChildListIdentificationDescriptionCompare`'s default does).
    id: String,
    /// The PDO once `EvtChildListCreateDevice` created it.
    pdo: Option<Device>,
}

/// An FDO's child list (dynamic enumeration), its device extension.
pub(crate) struct ChildList {
    create_device: ChildListCreateDeviceFn,
    entries: Mutex<Vec<ChildEntry>>,
}

/// An FDO's static child list (`WdfFdoAddStaticChild` order), its device extension.
#[derive(Default)]
pub(crate) struct StaticChildren {
    list: Mutex<Vec<Device>>,
}

/// Sets a freshly created child node as the PDO's node; false if the PDO was reported missing
/// meanwhile (a racing `WdfPdoMarkMissing`).
pub(super) fn attach(pdo: &Device, node: &DeviceNode) -> bool {
    let Some(p) = &pdo.0.pdo else {
        return false;
    };
    let mut status = lock(&p.status);
    if *status != PdoStatus::Reported {
        return false;
    }
    *lock(&p.node) = node.slot();
    *status = PdoStatus::Enumerated;
    true
}

/// Whether the child's stack can start: the PDO is still present, and a function driver
/// matched or the PDO is raw.
pub(super) fn pdo_can_start(node: &DeviceNode, pdo: &Device) -> bool {
    if pdo.pdo_status() == Some(PdoStatus::Missing) {
        node.trace("the child was reported missing before it started");
        return false;
    }
    let raw = pdo
        .pdo_identity()
        .is_some_and(|identity| identity.raw_class.is_some());
    if node.0.spec.function.is_empty() && !raw {
        node.trace("no function driver matches the child's ids");
        return false;
    }
    true
}

/// The children `fdo` reported (static, or created from its child list) that the PnP manager
/// has not enumerated yet.
fn reported_children(fdo: &Device) -> Vec<Device> {
    let mut all: Vec<Device> = fdo
        .get_extension::<StaticChildren>()
        .map(|list| lock(&list.list).clone())
        .unwrap_or_default();
    if let Some(list) = fdo.get_extension::<ChildList>() {
        all.extend(lock(&list.entries).iter().filter_map(|e| e.pdo.clone()));
    }
    all.retain(|pdo| pdo.pdo_status() == Some(PdoStatus::Reported));
    all
}

/// Deletes a PDO reported missing (once), taking it off its parent's static child list.
pub(super) fn delete_pdo(pdo: &Device) {
    let Some(p) = &pdo.0.pdo else {
        return;
    };
    {
        let mut status = lock(&p.status);
        if *status == PdoStatus::Missing {
            return;
        }
        *status = PdoStatus::Missing;
    }
    if let Some(parent) = pdo.pdo_parent() {
        if let Some(list) = parent.get_extension::<StaticChildren>() {
            lock(&list.list).retain(|d| d != pdo);
        }
        if let Some(list) = parent.get_extension::<ChildList>() {
            lock(&list.entries).retain(|e| e.pdo.as_ref() != Some(pdo));
        }
    }
    // A PDO flushed when its child was disabled is cleaned up now, before it goes.
    super::scenarios::cleanup_flushed(pdo);
    pdo.trace_state("PDO reported missing: deleted");
    DeviceNode::delete_device(pdo);
}

impl DeviceNode {
    /// Asks for the bus relations of this node: its devices' reported children are enumerated
    /// now (calling thread at `PASSIVE_LEVEL`, node not in an operation) or when the running
    /// operation ends.
    fn request_enumeration(&self) {
        {
            let mut st = lock(&self.0.st);
            st.pending_enumeration = true;
            if st.in_op.is_some() {
                return; // the running operation enumerates at its end
            }
        }
        if current_irql() == Irql::Passive {
            let _ = self.op("bus relations", |_| Ok(()));
        } else {
            self.kick_worker();
        }
    }

    /// Enumerates every child the node's devices reported and the PnP manager has not seen yet.
    pub(super) fn enumerate_children(&self) {
        let Ok(machine) = self.machine() else {
            return;
        };
        for dev in self.stack() {
            if let Some(list) = dev.get_extension::<ChildList>() {
                create_listed_children(&dev, &list);
            }
        }
        for dev in self.stack() {
            for pdo in reported_children(&dev) {
                let Some(identity) = pdo.pdo_identity().cloned() else {
                    continue;
                };
                let device_id = identity.device_id.clone().unwrap_or_default();
                let function =
                    driver_for_ids(&machine, &identity.hardware_ids, &identity.compatible_ids)
                        .unwrap_or_default();
                let spec = StackSpec::new(&device_id, &function);
                self.trace(&format!("bus relations: child {device_id} enumerated"));
                let _ = machine.pnp().plug_in_under(
                    Some(self),
                    spec,
                    Some((pdo.clone(), identity.instance_id.clone())),
                );
            }
        }
    }

    /// The node's FDO goes away: every child left without a stack loses its PDO, and so does
    /// every child reported but not yet enumerated.
    pub(super) fn release_children(&self) {
        for child in self.children() {
            if !child.state().has_stack() {
                child.drop_lingering_pdo();
            }
        }
        for dev in self.stack() {
            if let Some(list) = dev.get_extension::<ChildList>() {
                lock(&list.entries).retain(|e| e.pdo.is_some());
            }
            for pdo in reported_children(&dev) {
                delete_pdo(&pdo);
            }
        }
    }

    /// A child without a stack (failed, disabled, no driver) whose PDO is reported missing.
    fn drop_lingering_pdo(&self) {
        if let Some(pdo) = &self.0.pdo {
            if pdo.pdo_status() != Some(PdoStatus::Missing) {
                delete_pdo(pdo);
                self.set_state(NodeState::Removed);
            }
        }
    }

    /// The bus driver's PDO of this child node.
    pub fn pdo(&self) -> Option<Device> {
        self.0.pdo.clone()
    }
}

impl Device {
    /// `WdfFdoAddStaticChild`: reports `pdo` (created from [`DeviceInit::pdo`] on this
    /// device) as a child of this device's bus; the PnP manager enumerates it once this stack
    /// is started (see the [module docs](self)).
    ///
    /// Errors: `STATUS_INVALID_DEVICE_REQUEST` if `pdo` is not a PDO;
    /// `STATUS_INVALID_PARAMETER` if it was allocated on another device;
    /// `STATUS_INVALID_DEVICE_STATE` if it was already reported or deleted, or this device has
    /// no node.
    ///
    /// [`DeviceInit::pdo`]: crate::device::DeviceInit::pdo
    pub fn add_static_child(&self, pdo: &Device) -> Result<(), Status> {
        self.object().ensure_alive("WdfFdoAddStaticChild")?;
        let p = pdo.0.pdo.as_ref().ok_or(Status::INVALID_DEVICE_REQUEST)?;
        if !p
            .parent
            .upgrade()
            .is_some_and(|parent| Arc::ptr_eq(&parent, &self.0))
        {
            return Err(Status::INVALID_PARAMETER);
        }
        let node = self.node().ok_or(Status::INVALID_DEVICE_STATE)?;
        {
            let mut status = lock(&p.status);
            if *status != PdoStatus::Created || pdo.object().is_deleted() {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            *status = PdoStatus::Reported;
        }
        lock(&self.extension(StaticChildren::default).list).push(pdo.clone());
        node.request_enumeration();
        Ok(())
    }

    /// The static children this device reported and that are not reported missing, in
    /// `WdfFdoAddStaticChild` order (`WdfFdoRetrieveNextStaticChild` with
    /// `WdfRetrieveAllChildren`).
    pub fn static_children(&self) -> Vec<Device> {
        self.get_extension::<StaticChildren>()
            .map(|list| lock(&list.list).clone())
            .unwrap_or_default()
    }

    /// `WdfPdoMarkMissing`: the child is gone. An enumerated child takes the surprise-removal
    /// path (its own children first) and its PDO is deleted; a child not enumerated yet, or
    /// without a stack, only loses its PDO.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_REQUEST` if this is not a PDO; `STATUS_NO_SUCH_DEVICE` if
    /// it was never reported or is already missing; `STATUS_INVALID_DEVICE_STATE` when called
    /// from one of the child's own callbacks.
    pub fn pdo_mark_missing(&self) -> Result<(), Status> {
        let status = self.pdo_status().ok_or(Status::INVALID_DEVICE_REQUEST)?;
        match status {
            PdoStatus::Created | PdoStatus::Missing => Err(Status::NO_SUCH_DEVICE),
            PdoStatus::Reported => {
                delete_pdo(self);
                Ok(())
            }
            PdoStatus::Enumerated => {
                let node = self.node().ok_or(Status::NO_SUCH_DEVICE)?;
                if node.state().has_stack() {
                    node.surprise_remove()?;
                }
                node.drop_lingering_pdo();
                Ok(())
            }
        }
    }

    /// `WdfObjectDelete` of a PDO that was created but never added
    /// ([`add_static_child`](Self::add_static_child)): its bus driver gives it up.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_REQUEST` if this is not a PDO;
    /// `STATUS_INVALID_DEVICE_STATE` once it was added (the PnP manager owns its removal).
    pub fn pdo_delete(&self) -> Result<(), Status> {
        let p = self.0.pdo.as_ref().ok_or(Status::INVALID_DEVICE_REQUEST)?;
        {
            let mut status = lock(&p.status);
            if *status != PdoStatus::Created {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            *status = PdoStatus::Missing;
        }
        DeviceNode::delete_device(self);
        Ok(())
    }

    /// `WdfPdoRequestEject`: asks the PnP manager to eject the child: query-remove (children
    /// first; a veto keeps the device and is traced), the orderly-removal list, then the PDO is
    /// deleted. `WdfPdoRequestEject` returns nothing; neither does this.
    pub fn pdo_request_eject(&self) {
        let Some(node) = self.node() else {
            self.trace_state("WdfPdoRequestEject: not an enumerated PDO, ignored");
            return;
        };
        if self.pdo_status() != Some(PdoStatus::Enumerated) {
            self.trace_state("WdfPdoRequestEject: not an enumerated PDO, ignored");
            return;
        }
        if !node.state().has_stack() {
            node.drop_lingering_pdo();
            return;
        }
        node.trace("eject requested");
        match node.remove() {
            Ok(()) => node.trace("ejected"),
            Err(s) => node.trace(&format!("eject refused: {s}")),
        }
    }
}

/// Bus relations of an FDO with a child list: `EvtChildListCreateDevice` for every description
/// reported present that has no PDO yet; each PDO created is reported, to be enumerated with
/// the static children. A failing callback, or one that creates no device, drops the
/// description (traced).
fn create_listed_children(fdo: &Device, list: &ChildList) {
    let pending: Vec<String> = lock(&list.entries)
        .iter()
        .filter(|e| e.pdo.is_none())
        .map(|e| e.id.clone())
        .collect();
    for id in pending {
        let created = DeviceInit::pdo(fdo).and_then(|mut init| {
            let r = invoke_callback(
                fdo.driver().name(),
                fdo.name(),
                "EvtChildListCreateDevice",
                || (list.create_device)(fdo, &id, &mut init),
            );
            let pdo = init.take_created();
            match (r, pdo) {
                (Ok(()), Some(pdo)) => Ok(pdo),
                (r, pdo) => {
                    if let Some(pdo) = pdo {
                        let _ = pdo.pdo_delete();
                    }
                    Err(r.err().unwrap_or(Status::INVALID_DEVICE_STATE))
                }
            }
        });
        let mut entries = lock(&list.entries);
        let Some(index) = entries.iter().position(|e| e.id == id) else {
            // Reported missing while its PDO was being created.
            drop(entries);
            if let Ok(pdo) = created {
                let _ = pdo.pdo_delete();
            }
            continue;
        };
        match created {
            Ok(pdo) => {
                if let Some(p) = &pdo.0.pdo {
                    *lock(&p.status) = PdoStatus::Reported;
                }
                entries[index].pdo = Some(pdo);
            }
            Err(s) => {
                entries.remove(index);
                drop(entries);
                fdo.trace_state(&format!("EvtChildListCreateDevice({id}) failed: {s}"));
            }
        }
    }
}

impl Device {
    /// The FDO's default child list (`WdfFdoInitSetDefaultChildListConfig` with
    /// `EvtChildListCreateDevice` = `create_device`; the identification description is a
    /// string here). Call it once, before reporting children.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_REQUEST` for a PDO or a control device;
    /// `STATUS_INVALID_DEVICE_STATE` if the device already has a child list.
    pub fn create_child_list(
        &self,
        create_device: impl Fn(&Device, &str, &mut DeviceInit) -> Result<(), Status>
            + Send
            + Sync
            + 'static,
    ) -> Result<(), Status> {
        self.object()
            .ensure_alive("WdfFdoInitSetDefaultChildListConfig")?;
        if self.is_pdo() || self.is_control() {
            return Err(Status::INVALID_DEVICE_REQUEST);
        }
        if self.get_extension::<ChildList>().is_some() {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        let _ = self.extension(|| ChildList {
            create_device: Arc::new(create_device),
            entries: Mutex::new(Vec::new()),
        });
        Ok(())
    }

    /// `WdfChildListAddOrUpdateChildDescriptionAsPresent`: reports the child `id` present; a
    /// new one is created and enumerated at the next bus relations (now, see the
    /// [module docs](self)).
    ///
    /// Errors: `STATUS_OBJECT_NAME_EXISTS` is not an error in KMDF — a description already
    /// present is left as it is and `Ok` returned; `STATUS_INVALID_DEVICE_REQUEST` without a
    /// child list; `STATUS_INVALID_PARAMETER` for an empty id.
    pub fn child_list_add_or_update_as_present(&self, id: &str) -> Result<(), Status> {
        let list = self
            .get_extension::<ChildList>()
            .ok_or(Status::INVALID_DEVICE_REQUEST)?;
        if id.is_empty() {
            return Err(Status::INVALID_PARAMETER);
        }
        {
            let mut entries = lock(&list.entries);
            if entries.iter().any(|e| e.id == id) {
                return Ok(());
            }
            entries.push(ChildEntry {
                id: id.to_owned(),
                pdo: None,
            });
        }
        let node = self.node().ok_or(Status::INVALID_DEVICE_STATE)?;
        node.request_enumeration();
        Ok(())
    }

    /// `WdfChildListUpdateChildDescriptionAsMissing`: the child `id` is gone (its stack is
    /// surprise-removed and its PDO deleted, as [`pdo_mark_missing`](Self::pdo_mark_missing)).
    ///
    /// Errors: `STATUS_NO_SUCH_DEVICE` for an unknown description;
    /// `STATUS_INVALID_DEVICE_REQUEST` without a child list.
    pub fn child_list_update_as_missing(&self, id: &str) -> Result<(), Status> {
        let list = self
            .get_extension::<ChildList>()
            .ok_or(Status::INVALID_DEVICE_REQUEST)?;
        let pdo = {
            let mut entries = lock(&list.entries);
            let index = entries
                .iter()
                .position(|e| e.id == id)
                .ok_or(Status::NO_SUCH_DEVICE)?;
            let Some(pdo) = entries[index].pdo.clone() else {
                entries.remove(index);
                return Ok(());
            };
            pdo
        };
        pdo.pdo_mark_missing()
    }

    /// `WdfChildListRetrievePdo`: the PDO of the child `id`, once created.
    pub fn child_list_retrieve_pdo(&self, id: &str) -> Option<Device> {
        let list = self.get_extension::<ChildList>()?;
        let entries = lock(&list.entries);
        entries
            .iter()
            .find(|e| e.id == id)
            .and_then(|e| e.pdo.clone())
    }
}
