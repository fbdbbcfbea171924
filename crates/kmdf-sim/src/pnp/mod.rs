//! The PnP manager and the PnP/power state machine of device stacks.
//!
//! # Model
//!
//! A [`DeviceNode`] is one device instance: a PDO (root-enumerated, or a child of another node —
//! the bus device) plus a stack of device objects built by **driver packages** ([`crate::driver`]):
//! optional lower filters, one function driver, optional upper filters ([`StackSpec`]). The PDO
//! of a node plugged in by a test ([`PnpManager::plug_in`], [`PnpManager::plug_in_child`]) has
//! no driver code; its part of each sequence (bringing the child to D0 first, lowering it to Dx
//! last) is recorded as a trace state event on the node. A child a **bus driver** reports
//! ([`bus`]: `WdfPdoInitAllocate`, `WdfFdoAddStaticChild`) has the bus driver's PDO at the
//! bottom of its stack, whose callbacks run in those places.
//!
//! [`PnpManager`] (`machine.pnp()`) plugs nodes in and runs system power transitions; each node
//! runs its own operations. Every operation runs **on the calling thread** (bound to the machine
//! for its duration) at `PASSIVE_LEVEL`, serialized per node, and calls each driver callback
//! through [`invoke_callback`], so a callback that returns
//! holding a lock or at a raised IRQL is caught, and every callback is traced with its driver
//! name. Callbacks with a `PreviousState`/`TargetState` are traced with it, e.g.
//! `EvtDeviceD0Entry(D3Final)`. Missing callbacks are skipped, keeping the order of the others.
//!
//! # Sequences
//!
//! Power-up runs one driver at a time **lowest first**, power-down **highest first** (Microsoft's
//! pages [A User Plugs in a Device], [A User Unplugs a Device],
//! [A Device Enters a Low-Power State], [A Device Returns to Its Working State],
//! [The PnP Manager Redistributes System Resources]).
//!
//! | Operation | Per device | Source |
//! |---|---|---|
//! | [`PnpManager::plug_in`] | AddDevice (bottom-up), then PrepareHardware, D0Entry(D3Final), D0EntryPostInterruptsEnabled, *queues started*, SelfManagedIoInit; then interfaces enabled | [A User Plugs in a Device] |
//! | [`DeviceNode::idle`] | SelfManagedIoSuspend, *queues stopped (Suspend)*, ArmWakeFromS0 (PPO, if `can_wake`), D0ExitPreInterruptsDisabled(Dx), D0Exit(Dx) | [A Device Enters a Low-Power State], [Supporting Idle Power-Down] |
//! | [`DeviceNode::wake_from_idle`] / [`DeviceNode::signal_wake`] | D0Entry(Dx), PostInterruptsEnabled(Dx), WakeFromS0Triggered (if signalled), DisarmWakeFromS0 (if armed), *queues started*, SelfManagedIoRestart | [A Device Returns to Its Working State], [`EvtDeviceArmWakeFromS0`] |
//! | [`PnpManager::system_sleep`] / [`PnpManager::system_resume`] | as idle/wake with ArmWakeFromSx\[WithReason\] / WakeFromSxTriggered / DisarmWakeFromSx | [A Device Enters a Low-Power State], [A Device Returns to Its Working State] (system sleep and resume triggers) |
//! | [`DeviceNode::rebalance`] | QueryStop (veto), then Suspend, *stop (Suspend)*, Pre…(D3Final), D0Exit(D3Final), ReleaseHardware; then PrepareHardware(new), D0Entry(D3Final), …, *start*, SelfManagedIoRestart | [The PnP Manager Redistributes System Resources] |
//! | [`DeviceNode::remove`] / [`DeviceNode::disable`] | target hooks query-remove, QueryRemove (veto), interfaces disabled, Suspend, *stop (Purge)*, Pre…(D3Final), D0Exit(D3Final), ReleaseHardware, Flush, Cleanup, target hooks remove-complete, objects deleted (a disabled bus child's PDO: Flush without Cleanup, kept — see [`bus`]) | [A User Unplugs a Device] |
//! | [`DeviceNode::surprise_remove`] | interfaces disabled, SurpriseRemoval, (if in D0: *stop (Purge)*, Suspend, Pre…, D0Exit(D3Final)), ReleaseHardware, Flush, Cleanup, remove-complete, objects deleted | [A User Unplugs a Device], [`EvtDeviceSurpriseRemoval`] |
//! | [`Device::set_failed`] | the surprise-removal list, then (AttemptRestart) a new AddDevice + first start, at most [`MAX_RESTARTS`] times | [Reporting Device Failures], [`WdfDeviceSetFailed`] |
//!
//! # Failure unwinding
//!
//! * PrepareHardware fails → that device gets ReleaseHardware; started lower devices are removed in
//!   order (D0Exit(D3Final) … Cleanup); the node is [`NodeState::Failed`]
//!   ([`EvtDevicePrepareHardware`], [`EvtDeviceReleaseHardware`]).
//! * D0Entry fails on a start → ReleaseHardware, **no D0Exit**, the rest as above (orderly path);
//!   on a return from Dx → the whole stack takes the **surprise-removal** path, the failing device
//!   without D0Exit ([`EvtDeviceD0Entry`]).
//! * SelfManagedIoInit/Restart fails → queues stopped (Purge), D0Exit(D3Final), ReleaseHardware,
//!   Flush, Cleanup; the node fails ([`EvtDeviceSelfManagedIoInit`],
//!   [`EvtDeviceSelfManagedIoRestart`]).
//! * QueryRemove/QueryStop failure → veto: nothing else runs, the node stays started
//!   ([`EvtDeviceQueryRemove`], [`EvtDeviceQueryStop`]). ArmWakeFromS0 failure → not armed, no
//!   Disarm later, no failure ([`EvtDeviceArmWakeFromS0`]).
//! * A function driver's failing `EvtDriverDeviceAdd` fails the node; a filter's only skips the
//!   filter ([Reporting Device Failures]).
//!
//! # Choices for points the documentation leaves open ("inferred")
//!
//! * D0Exit target on removal, surprise removal, rebalance and shutdown: `D3Final`; D0Entry
//!   previous state after a rebalance: `D3Final`.
//! * EvtIoStop action: `Suspend` for Dx and rebalance, `Purge` for removal and surprise removal.
//! * Hibernate (S4): `TargetState = D3` unless the node is on the hibernation path
//!   ([`DeviceNode::set_hibernation_path`]), then `PrepareForHibernation`; resume passes
//!   `PreviousState = D3` in both cases.
//! * S0 idle happens on an explicit [`DeviceNode::idle`] or, with an idle timeout assigned by
//!   the power policy owner ([`Device::assign_s0_idle_timeout`]), once the stack was idle for
//!   that much virtual time ([Supporting Idle Power-Down]: no request waiting in or presented by
//!   a power-managed queue, no power reference, system in S0). A one-shot timer restarts whenever
//!   activity ends; on expiry the condition is re-checked on a system work item. A request for a
//!   power-managed queue or `WdfDeviceStopIdle` brings the stack back to D0.
//! * A device idle in Dx when the system sleeps is left alone (no second D0Exit) and stays in Dx
//!   after resume (KMDF's default of not powering up idle devices on S0 return).
//! * Removal, rebalance or surprise removal of a device idle in Dx skips the D0 part (no
//!   Suspend, queue stop or D0Exit — they ran when it idled) and runs no Disarm.
//! * D0EntryPostInterruptsEnabled failure on a start: D0Exit(D3Final) (the undo of D0Entry) then
//!   ReleaseHardware. D0Exit/D0ExitPreInterruptsDisabled failures are traced and ignored.
//!   SelfManagedIoSuspend failure while lowering power: the node fails along the surprise path.
//! * `WdfDeviceSetFailed` teardown follows the surprise-removal list (EvtDeviceSurpriseRemoval
//!   first, [`EvtDeviceSurpriseRemoval`]); a start failure is terminal until
//!   [`DeviceNode::reenumerate`].
//! * Device interfaces are enabled after the whole stack started, disabled before the removal
//!   callbacks run. Target-device-change hooks get remove-complete after surprise removal too.
//! * Query-remove / remove-cancel / remove have no KMDF driver callback for the cancel; only the
//!   target hooks hear it. A node with a special file in its path vetoes query-remove.
//! * Removing a bus node removes its children first (surprise removal, or a failure of the bus:
//!   surprise-removes them).
//! * The wake signal order is documented: WakeFromS0Triggered after D0Entry and before
//!   DisarmWakeFromS0 ([`EvtDeviceWakeFromS0Triggered`]); WakeFromSxTriggered is placed the same
//!   way (inferred).
//!
//! [A User Plugs in a Device]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-user-plugs-in-a-device
//! [A User Unplugs a Device]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-user-unplugs-a-device
//! [A Device Enters a Low-Power State]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-device-enters-a-low-power-state
//! [A Device Returns to Its Working State]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-device-returns-to-its-working-state
//! [The PnP Manager Redistributes System Resources]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/the-pnp-manager-redistributes-system-resources
//! [Reporting Device Failures]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/reporting-device-failures
//! [Supporting Idle Power-Down]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/supporting-idle-power-down
//! [`EvtDevicePrepareHardware`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_prepare_hardware
//! [`EvtDeviceReleaseHardware`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_release_hardware
//! [`EvtDeviceD0Entry`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_d0_entry
//! [`EvtDeviceSelfManagedIoInit`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_self_managed_io_init
//! [`EvtDeviceSelfManagedIoRestart`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_self_managed_io_restart
//! [`EvtDeviceSurpriseRemoval`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_surprise_removal
//! [`EvtDeviceQueryRemove`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_query_remove
//! [`EvtDeviceQueryStop`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_query_stop
//! [`EvtDeviceArmWakeFromS0`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_arm_wake_from_s0
//! [`EvtDeviceWakeFromS0Triggered`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_wake_from_s0_triggered
//! [`WdfDeviceSetFailed`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nf-wdfdevice-wdfdevicesetfailed
//! [`Device::set_failed`]: crate::device::Device::set_failed
//! [`Device::assign_s0_idle_timeout`]: crate::device::Device::assign_s0_idle_timeout
//! [`invoke_callback`]: crate::verifier::invoke_callback

pub mod bus;
pub(crate) mod scenarios;
pub mod state;

use core::fmt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::thread::ThreadId;
use std::time::Duration;

use crate::device::{lock, Device, DeviceInit, NodeSlot, Resources};
use crate::driver::Driver;
use crate::exec::{current_irql, DriverScope, Irql, Timer, TimerConfig, WorkItem};
use crate::machine::Machine;
use crate::object::{bind, MachineRef};
use crate::status::Status;
use crate::trace::TraceKind;
use crate::verifier::invoke_callback;

use scenarios::{Down, Up, Wake};
pub use state::{
    DevicePnpState, DevicePowerState, FailedAction, NodeState, RelationType, SpecialFileType,
    StackRole, StopAction, SystemPowerAction, SystemPowerState, WdfPowerDeviceState,
};

/// How many times `WdfDeviceSetFailed(AttemptRestart)` restarts a node before giving up.
pub const MAX_RESTARTS: u32 = 3;

/// The drivers of a device node, bottom to top: lower filters, function driver, upper filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackSpec {
    /// The hardware id (e.g. `USB\VID_0547&PID_1002`).
    pub hardware_id: String,
    /// Lower filter drivers, lowest first.
    pub lower_filters: Vec<String>,
    /// The function driver.
    pub function: String,
    /// Upper filter drivers, lowest first.
    pub upper_filters: Vec<String>,
    /// The resources assigned at start.
    pub resources: Vec<String>,
}

impl StackSpec {
    /// A stack with only a function driver.
    pub fn new(hardware_id: &str, function: &str) -> Self {
        StackSpec {
            hardware_id: hardware_id.to_owned(),
            lower_filters: Vec::new(),
            function: function.to_owned(),
            upper_filters: Vec::new(),
            resources: Vec::new(),
        }
    }

    /// Adds a lower filter above the ones already added.
    #[must_use]
    pub fn lower_filter(mut self, driver: &str) -> Self {
        self.lower_filters.push(driver.to_owned());
        self
    }

    /// Adds an upper filter above the ones already added.
    #[must_use]
    pub fn upper_filter(mut self, driver: &str) -> Self {
        self.upper_filters.push(driver.to_owned());
        self
    }

    /// Adds a resource description.
    #[must_use]
    pub fn resource(mut self, item: &str) -> Self {
        self.resources.push(item.to_owned());
        self
    }

    fn drivers(&self) -> Vec<(String, StackRole)> {
        let mut v: Vec<(String, StackRole)> = self
            .lower_filters
            .iter()
            .map(|d| (d.clone(), StackRole::LowerFilter))
            .collect();
        v.push((self.function.clone(), StackRole::Function));
        v.extend(
            self.upper_filters
                .iter()
                .map(|d| (d.clone(), StackRole::UpperFilter)),
        );
        v
    }
}

/// Target-device-change notifications for the device behind a node (`EventCategoryTargetDeviceChange`:
/// query-remove, remove-cancelled, remove-complete). The I/O layer's remote targets use them.
/// Hooks run on the PnP thread at `PASSIVE_LEVEL` (framework code; wrap driver callbacks in
/// [`invoke_callback`]).
pub trait TargetDeviceHook: Send + Sync {
    /// `GUID_TARGET_DEVICE_QUERY_REMOVE`, before the drivers' EvtDeviceQueryRemove. A failure
    /// vetoes the removal.
    fn query_remove(&self, node: &DeviceNode) -> Status {
        let _ = node;
        Status::SUCCESS
    }
    /// `GUID_TARGET_DEVICE_REMOVE_CANCELLED`.
    fn remove_canceled(&self, node: &DeviceNode) {
        let _ = node;
    }
    /// `GUID_TARGET_DEVICE_REMOVE_COMPLETE` (also after surprise removal and failure), before
    /// the device objects are deleted.
    fn remove_complete(&self, node: &DeviceNode) {
        let _ = node;
    }
}

#[allow(clippy::struct_excessive_bools)] // reason: independent flags, not a mode
struct NodeSt {
    state: NodeState,
    stack: Vec<Device>,
    resources: Resources,
    restarts: u32,
    last_status: Status,
    in_op: Option<ThreadId>,
    pending_failure: Option<FailedAction>,
    pending_power_up: bool,
    pending_idle: bool,
    worker: Option<WorkItem>,
    idle_timer: Option<Timer>,
    idle: bool,
    slept: bool,
    system_action: SystemPowerAction,
    hibernation_path: bool,
    special_files: HashMap<SpecialFileType, usize>,
    children: Vec<DeviceNode>,
    /// A bus driver of this stack reported a static child: enumerate once started.
    pending_enumeration: bool,
}

pub(crate) struct NodeInner {
    machine: MachineRef,
    instance_id: String,
    spec: StackSpec,
    parent: Option<Weak<NodeInner>>,
    /// The bus driver's PDO of a child node (`None` for a root-enumerated node, whose PDO has no
    /// driver code in the simulator).
    pdo: Option<Device>,
    op: Mutex<()>,
    st: Mutex<NodeSt>,
    hooks: Mutex<Vec<(u64, Arc<dyn TargetDeviceHook>)>>,
    next_hook: Mutex<u64>,
}

/// One device node (device instance). Cheap to clone; equality is identity.
#[derive(Clone)]
pub struct DeviceNode(Arc<NodeInner>);

impl PartialEq for DeviceNode {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for DeviceNode {}

impl fmt::Debug for DeviceNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceNode")
            .field("instance_id", &self.0.instance_id)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// The PnP manager of one machine: `machine.pnp()`.
pub struct PnpManager {
    machine: MachineRef,
    st: Mutex<ManagerSt>,
}

#[derive(Default)]
struct ManagerSt {
    nodes: Vec<DeviceNode>,
    system: SystemPowerState,
    instances: HashMap<String, u32>,
}

impl fmt::Debug for PnpManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PnpManager").finish_non_exhaustive()
    }
}

impl Machine {
    /// The machine's PnP manager.
    pub fn pnp(&self) -> Arc<PnpManager> {
        let me = MachineRef::new(self);
        self.extension(|| PnpManager {
            machine: me,
            st: Mutex::new(ManagerSt::default()),
        })
    }
}

impl PnpManager {
    fn machine(&self) -> Result<Machine, Status> {
        self.machine.machine().ok_or(Status::INVALID_DEVICE_STATE)
    }

    /// Plugs in a root-enumerated device: creates the node, loads the drivers, runs AddDevice
    /// bottom-up and the first start. The node stays listed in [`nodes`](Self::nodes) even when
    /// it fails.
    ///
    /// Errors: the failing status (the node is then [`NodeState::Failed`]).
    pub fn plug_in(&self, spec: StackSpec) -> Result<DeviceNode, Status> {
        self.plug_in_under(None, spec, None)
    }

    /// Plugs in a device as a child of `parent` (the bus device).
    ///
    /// Errors: as [`plug_in`](Self::plug_in); `STATUS_INVALID_DEVICE_STATE` when the parent is
    /// not started.
    pub fn plug_in_child(
        &self,
        parent: &DeviceNode,
        spec: StackSpec,
    ) -> Result<DeviceNode, Status> {
        if parent.state() != NodeState::Started {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        self.plug_in_under(Some(parent), spec, None)
    }

    fn plug_in_under(
        &self,
        parent: Option<&DeviceNode>,
        spec: StackSpec,
        pdo: Option<(Device, Option<String>)>,
    ) -> Result<DeviceNode, Status> {
        let machine = self.machine()?;
        let _g = bind(&machine);
        let instance_id = {
            let mut st = lock(&self.st);
            let n = st.instances.entry(spec.hardware_id.clone()).or_insert(0);
            let id = match pdo.as_ref().and_then(|(_, instance)| instance.as_ref()) {
                Some(instance) => format!("{}\\{instance}", spec.hardware_id),
                None => format!("{}\\{:04}", spec.hardware_id, *n),
            };
            *n += 1;
            id
        };
        let pdo = pdo.map(|(device, _)| device);
        let node = DeviceNode(Arc::new(NodeInner {
            machine: MachineRef::new(&machine),
            instance_id,
            parent: parent.map(|p| Arc::downgrade(&p.0)),
            pdo,
            op: Mutex::new(()),
            st: Mutex::new(NodeSt {
                state: NodeState::Starting,
                stack: Vec::new(),
                resources: Resources {
                    generation: 0,
                    items: spec.resources.clone(),
                },
                restarts: 0,
                last_status: Status::SUCCESS,
                in_op: None,
                pending_failure: None,
                pending_power_up: false,
                pending_idle: false,
                worker: None,
                idle_timer: None,
                idle: false,
                slept: false,
                system_action: SystemPowerAction::None,
                hibernation_path: false,
                special_files: HashMap::new(),
                children: Vec::new(),
                pending_enumeration: false,
            }),
            spec,
            hooks: Mutex::new(Vec::new()),
            next_hook: Mutex::new(1),
        }));
        lock(&self.st).nodes.push(node.clone());
        if let Some(p) = parent {
            lock(&p.0.st).children.push(node.clone());
        }
        if let Some(pdo) = &node.0.pdo {
            if !bus::attach(pdo, &node) {
                node.set_state(NodeState::Removed);
                return Err(Status::NO_SUCH_DEVICE);
            }
        }
        node.trace("plugged in");
        node.op("plug in", DeviceNode::build_and_start)?;
        Ok(node)
    }

    /// Every node plugged in so far (also removed and failed ones), in plug-in order.
    pub fn nodes(&self) -> Vec<DeviceNode> {
        lock(&self.st).nodes.clone()
    }

    /// The first node with `hardware_id`.
    pub fn find(&self, hardware_id: &str) -> Option<DeviceNode> {
        self.nodes()
            .into_iter()
            .find(|n| n.hardware_id() == hardware_id)
    }

    /// The system power state.
    pub fn system_state(&self) -> SystemPowerState {
        lock(&self.st).system
    }

    /// System S0 → `target` (S3 sleep or S4 hibernate): every started node in D0 runs the
    /// power-down list of [A Device Enters a Low-Power State] (children before parents) with
    /// TargetState D3 (or PrepareForHibernation for S4 on the hibernation path) and
    /// ArmWakeFromSx if Sx wake is enabled.
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` for a target other than S3/S4;
    /// `STATUS_INVALID_DEVICE_STATE` if the system is not in S0.
    ///
    /// [A Device Enters a Low-Power State]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-device-enters-a-low-power-state
    pub fn system_sleep(&self, target: SystemPowerState) -> Result<(), Status> {
        if !matches!(target, SystemPowerState::S3 | SystemPowerState::S4) {
            return Err(Status::INVALID_PARAMETER);
        }
        self.power_down_all(target)
    }

    /// System shutdown (S5): every started node in D0 runs the power-down list with
    /// TargetState D3Final and no wake arming (no ReleaseHardware).
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if the system is not in S0.
    pub fn shutdown(&self) -> Result<(), Status> {
        self.power_down_all(SystemPowerState::S5)
    }

    fn power_down_all(&self, target: SystemPowerState) -> Result<(), Status> {
        let machine = self.machine()?;
        let _g = bind(&machine);
        {
            let mut st = lock(&self.st);
            if st.system != SystemPowerState::S0 {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            st.system = target;
        }
        machine.trace().record_for(
            TraceKind::State,
            None,
            "system",
            &format!("S0 -> {target:?}"),
        );
        for node in self.nodes().iter().rev() {
            let _ = node.op("system sleep", |n| n.sleep(target));
        }
        Ok(())
    }

    /// System Sx → S0: every node powered down by the sleep returns to D0
    /// ([A Device Returns to Its Working State], parents first, DisarmWakeFromSx if armed). Idle
    /// nodes stay in Dx.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if the system is in S0 or was shut down.
    ///
    /// [A Device Returns to Its Working State]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-device-returns-to-its-working-state
    pub fn system_resume(&self) -> Result<(), Status> {
        self.resume_all(None)
    }

    fn resume_all(&self, waker: Option<&DeviceNode>) -> Result<(), Status> {
        let machine = self.machine()?;
        let _g = bind(&machine);
        let action = {
            let mut st = lock(&self.st);
            if !matches!(st.system, SystemPowerState::S3 | SystemPowerState::S4) {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            SystemPowerAction::entering(std::mem::take(&mut st.system))
        };
        machine
            .trace()
            .record_for(TraceKind::State, None, "system", "-> S0");
        for node in self.nodes() {
            let wake = waker.is_some_and(|w| *w == node).then_some(Wake::Sx);
            let _ = node.op("system resume", |n| n.wake_from_sleep(action, wake));
        }
        Ok(())
    }
}

impl DeviceNode {
    /// The node as its devices hold it (see [`NodeSlot`]).
    pub(crate) fn slot(&self) -> NodeSlot {
        let weak: Weak<NodeInner> = Arc::downgrade(&self.0);
        weak
    }

    /// The node a device's slot holds, while it exists.
    pub(crate) fn from_slot(slot: &NodeSlot) -> Option<DeviceNode> {
        slot.upgrade()
            .and_then(|n| n.downcast::<NodeInner>().ok())
            .map(DeviceNode)
    }

    /// The hardware id.
    pub fn hardware_id(&self) -> &str {
        &self.0.spec.hardware_id
    }

    /// The device instance id (`{hardware id}\{nnnn}`), unique per machine.
    pub fn instance_id(&self) -> &str {
        &self.0.instance_id
    }

    /// The stack spec.
    pub fn spec(&self) -> &StackSpec {
        &self.0.spec
    }

    /// The node's PnP state.
    pub fn state(&self) -> NodeState {
        lock(&self.0.st).state
    }

    /// The status of the last failure (`STATUS_SUCCESS` if none).
    pub fn last_status(&self) -> Status {
        lock(&self.0.st).last_status
    }

    /// The device objects, bottom to top (empty once removed).
    pub fn stack(&self) -> Vec<Device> {
        lock(&self.0.st).stack.clone()
    }

    /// The device object of `driver` in this stack.
    pub fn device(&self, driver: &str) -> Option<Device> {
        self.stack()
            .into_iter()
            .find(|d| d.driver().name() == driver)
    }

    /// The function driver's device object.
    pub fn function_device(&self) -> Option<Device> {
        self.stack()
            .into_iter()
            .find(|d| d.role() == StackRole::Function)
    }

    /// The resources currently assigned.
    pub fn resources(&self) -> Resources {
        lock(&self.0.st).resources.clone()
    }

    /// Restarts done after `WdfDeviceSetFailed(AttemptRestart)` or [`reenumerate`](Self::reenumerate).
    pub fn restart_count(&self) -> u32 {
        lock(&self.0.st).restarts
    }

    /// True while the stack idles in Dx with the system in S0.
    pub fn is_idle(&self) -> bool {
        lock(&self.0.st).idle
    }

    /// The parent (bus) node.
    pub fn parent(&self) -> Option<DeviceNode> {
        self.0
            .parent
            .as_ref()
            .and_then(Weak::upgrade)
            .map(DeviceNode)
    }

    /// Child nodes plugged in under this one.
    pub fn children(&self) -> Vec<DeviceNode> {
        lock(&self.0.st).children.clone()
    }

    /// The system power action in progress for this node (`WdfDeviceGetSystemPowerAction`): the
    /// action of the system transition while it powers the stack down (S3/S4/S5) or back up
    /// (return to S0), else [`SystemPowerAction::None`]. See
    /// [`Device::system_power_action`] for the documented rule.
    pub fn system_power_action(&self) -> SystemPowerAction {
        lock(&self.0.st).system_action
    }

    /// Puts the node on (or off) the hibernation-file path: S4 then passes
    /// `PrepareForHibernation` as D0Exit's TargetState.
    pub fn set_hibernation_path(&self, on: bool) {
        lock(&self.0.st).hibernation_path = on;
    }

    /// Registers a target-device-change hook; returns its id for
    /// [`unregister_target_hook`](Self::unregister_target_hook).
    pub fn register_target_hook(&self, hook: Arc<dyn TargetDeviceHook>) -> u64 {
        let id = {
            let mut n = lock(&self.0.next_hook);
            let id = *n;
            *n += 1;
            id
        };
        lock(&self.0.hooks).push((id, hook));
        id
    }

    /// Unregisters a target-device-change hook.
    pub fn unregister_target_hook(&self, id: u64) {
        lock(&self.0.hooks).retain(|(i, _)| *i != id);
    }

    fn target_hooks(&self) -> Vec<Arc<dyn TargetDeviceHook>> {
        lock(&self.0.hooks)
            .iter()
            .map(|(_, h)| Arc::clone(h))
            .collect()
    }

    fn trace(&self, text: &str) {
        if let Some(core) = self.0.machine.core() {
            core.trace
                .record_for(TraceKind::State, None, &self.0.instance_id, text);
        }
    }

    fn set_state(&self, state: NodeState) {
        lock(&self.0.st).state = state;
        self.trace(&format!("{state:?}"));
    }

    fn machine(&self) -> Result<Machine, Status> {
        self.0.machine.machine().ok_or(Status::INVALID_DEVICE_STATE)
    }

    /// Runs one PnP operation: bound to the machine, at PASSIVE_LEVEL, serialized per node,
    /// then processes a failure reported meanwhile (`WdfDeviceSetFailed` from a callback).
    fn op<R>(&self, name: &str, f: impl FnOnce(&Self) -> Result<R, Status>) -> Result<R, Status> {
        let machine = self.machine()?;
        let me = std::thread::current().id();
        if lock(&self.0.st).in_op == Some(me) {
            // A PnP operation called from one of this node's own callbacks.
            return Err(Status::INVALID_DEVICE_STATE);
        }
        if current_irql() != Irql::Passive {
            crate::exec::require_max_irql(Irql::Passive, name);
            return Err(Status::INVALID_DEVICE_STATE);
        }
        let _g = bind(&machine);
        let _op = lock(&self.0.op);
        lock(&self.0.st).in_op = Some(me);
        let r = f(self);
        loop {
            let (failure, power_up, idle, enumerate) = {
                let mut st = lock(&self.0.st);
                let failure = st.pending_failure.take();
                let power_up = std::mem::take(&mut st.pending_power_up);
                let idle = std::mem::take(&mut st.pending_idle);
                let enumerate = std::mem::take(&mut st.pending_enumeration);
                if failure.is_none() && !power_up && !idle && !enumerate {
                    st.in_op = None;
                    break;
                }
                (failure, power_up, idle, enumerate)
            };
            if let Some(action) = failure {
                self.fail(action);
            } else if power_up && self.is_idle() {
                let _ = self.resume_stack(None);
            } else if idle && self.can_idle() {
                self.trace("idle timeout expired");
                let _ = self.go_idle();
            }
            // Bus relations: the children reported meanwhile (a failure above leaves the node
            // without a stack, and then nothing is enumerated).
            if enumerate && self.state() == NodeState::Started {
                self.enumerate_children();
            }
        }
        r
    }

    /// Queues background PnP work (failure teardown, power-up) on a system work item.
    fn kick_worker(&self) {
        let Some(machine) = self.0.machine.machine() else {
            return;
        };
        let mut st = lock(&self.0.st);
        if st.in_op.is_some() {
            return; // the running operation processes it
        }
        let weak = Arc::downgrade(&self.0);
        let item = st.worker.get_or_insert_with(|| {
            let _scope = DriverScope::enter("pnp");
            WorkItem::new(
                &machine,
                &format!("pnp {}", self.0.instance_id),
                move |_| {
                    if let Some(node) = weak.upgrade().map(DeviceNode) {
                        // The node gives up this item before the work runs: the item holds the
                        // machine, which holds the PnP manager, which holds the node — kept in
                        // the node, it would be a reference cycle that leaks the whole machine.
                        // Work reported from here on queues a fresh item.
                        let me = lock(&node.0.st).worker.take();
                        let _ = node.op("deferred PnP work", |_| Ok(()));
                        drop(me);
                    }
                },
            )
        });
        item.enqueue();
    }

    pub(crate) fn request_failure(&self, action: FailedAction) {
        lock(&self.0.st).pending_failure.get_or_insert(action);
        self.kick_worker();
    }

    /// The power policy owner's S0 idle timeout ([`Device::assign_s0_idle_timeout`]).
    fn idle_timeout(&self) -> Option<Duration> {
        self.stack()
            .iter()
            .find(|d| d.is_power_policy_owner())
            .and_then(|d| d.state().idle_timeout)
    }

    /// The idle condition of [Supporting Idle Power-Down]: started and in D0 with the system in
    /// S0, no power reference held, and no request waiting in or presented by a power-managed
    /// queue of any device of the stack.
    ///
    /// [Supporting Idle Power-Down]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/supporting-idle-power-down
    fn can_idle(&self) -> bool {
        let system = self
            .machine()
            .map_or(SystemPowerState::S5, |m| m.pnp().system_state());
        system == SystemPowerState::S0
            && self.state() == NodeState::Started
            && !self.is_idle()
            && self
                .stack()
                .iter()
                .all(|d| d.power_references() == 0 && d.is_in_d0() && !d.power_managed_io_pending())
    }

    /// Something that may have kept the stack busy ended (a request left a power-managed queue,
    /// a power reference was dropped, the stack reached D0): with an idle timeout assigned and
    /// the idle condition met, (re)starts the idle timer for the full timeout. When it expires
    /// the condition is checked again on a system work item and the stack idles to Dx. Any
    /// activity meanwhile ends with another call here, which starts the count again.
    pub(crate) fn idle_check(&self) {
        let Some(timeout) = self.idle_timeout() else {
            return;
        };
        if !self.can_idle() {
            return;
        }
        let Some(machine) = self.0.machine.machine() else {
            return;
        };
        let mut st = lock(&self.0.st);
        if !st.state.has_stack() {
            return;
        }
        if st.idle_timer.is_none() {
            let weak = Arc::downgrade(&self.0);
            let _scope = DriverScope::enter("pnp");
            let timer = Timer::new(
                &machine,
                TimerConfig::one_shot(&format!("S0 idle {}", self.0.instance_id)),
                move |_t| {
                    if let Some(node) = weak.upgrade().map(DeviceNode) {
                        lock(&node.0.st).pending_idle = true;
                        node.kick_worker();
                    }
                },
            );
            st.idle_timer = timer.ok();
        }
        if let Some(t) = &st.idle_timer {
            t.start(timeout);
        }
    }

    pub(crate) fn power_reference_taken(&self) {
        if !self.is_idle() {
            return;
        }
        let in_op = lock(&self.0.st).in_op.is_some();
        if current_irql() == Irql::Passive && !in_op {
            let _ = self.wake_from_idle();
        } else {
            lock(&self.0.st).pending_power_up = true;
            self.kick_worker();
        }
    }

    // ------------------------------------------------------------------ building and starting

    /// AddDevice for each driver (bottom-up), then the first start.
    fn build_and_start(&self) -> Result<(), Status> {
        self.set_state(NodeState::Starting);
        let Some(machine) = self.0.machine.machine() else {
            return Err(Status::INVALID_DEVICE_STATE);
        };
        if let Some(pdo) = &self.0.pdo {
            if !bus::pdo_can_start(self, pdo) {
                lock(&self.0.st).last_status = Status::NO_SUCH_DEVICE;
                self.set_state(NodeState::Failed);
                return Err(Status::NO_SUCH_DEVICE);
            }
            lock(&self.0.st).stack.push(pdo.clone());
        }
        for (name, role) in self.0.spec.drivers() {
            if name.is_empty() && self.0.pdo.is_some() {
                continue; // a raw PDO without a function driver
            }
            let r = Driver::load_installed(&machine, &name).and_then(|driver| {
                let mut init = DeviceInit::new(driver.clone(), self.slot(), role);
                let add = driver.config().device_add.clone();
                let r = match add {
                    Some(add) => invoke_callback(
                        driver.name(),
                        &format!("DRIVER {}", driver.name()),
                        "EvtDriverDeviceAdd",
                        || add(&driver, &mut init),
                    ),
                    None => Err(Status::NOT_SUPPORTED),
                };
                let created = init.take_created();
                match (r, created) {
                    (Ok(()), Some(dev)) => Ok(Some(dev)),
                    (r, created) => {
                        if let Some(dev) = created {
                            Self::delete_device(&dev);
                        }
                        if let Some(d) = Driver::loaded(&machine, &name) {
                            if d.device_count() == 0 {
                                let _ = d.unload();
                            }
                        }
                        Err(r.err().unwrap_or(Status::INVALID_DEVICE_STATE))
                    }
                }
            });
            match r {
                Ok(Some(dev)) => lock(&self.0.st).stack.push(dev),
                Ok(None) => {}
                Err(s) if role != StackRole::Function => {
                    self.trace(&format!("filter {name} skipped: AddDevice failed with {s}"));
                }
                Err(s) => {
                    self.trace(&format!("AddDevice of {name} failed with {s}"));
                    self.teardown_objects();
                    lock(&self.0.st).last_status = s;
                    self.set_state(NodeState::Failed);
                    return Err(s);
                }
            }
        }
        self.start_stack(Up::First)
    }

    /// Powers the stack up bottom-first (first start or rebalance restart), unwinding as the
    /// module docs' *Failure unwinding* says.
    fn start_stack(&self, up: Up) -> Result<(), Status> {
        self.trace("bus: child to D0");
        let stack = self.stack();
        let res = self.resources();
        for (i, dev) in stack.iter().enumerate() {
            if let Err((fail, s)) = scenarios::power_up(dev, up, &res) {
                for (j, other) in stack.iter().enumerate().rev() {
                    if j == i {
                        scenarios::unwind_failed_start(other, fail);
                    } else {
                        let _ = scenarios::power_down(other, Down::Remove);
                    }
                }
                self.trace("bus: child to D3");
                self.finish_removal(NodeState::Failed, s, false);
                return Err(s);
            }
        }
        if up == Up::First {
            for dev in &stack {
                dev.hooks_stack_started();
            }
        }
        {
            let mut st = lock(&self.0.st);
            st.idle = false;
            // The PnP manager asks a started stack for its bus relations.
            st.pending_enumeration = true;
        }
        self.set_state(NodeState::Started);
        self.idle_check();
        Ok(())
    }

    pub(crate) fn delete_device(dev: &Device) {
        dev.hooks_removed();
        let _ = dev.object().delete();
        dev.driver().device_removed();
    }

    /// Deletes every device object, top down, and releases (maybe unloads) the drivers.
    /// A child node's PDO stays (its bus driver owns it until it is reported missing); see
    /// [`finish_removal`](Self::finish_removal).
    fn teardown_objects(&self) {
        let stack = std::mem::take(&mut lock(&self.0.st).stack);
        for dev in stack.iter().rev() {
            if self.0.pdo.as_ref() != Some(dev) {
                Self::delete_device(dev);
            }
        }
    }

    /// Target hooks remove-complete (if `notify`), objects deleted, final state.
    fn finish_removal(&self, state: NodeState, status: Status, notify: bool) {
        for dev in self.stack().iter().rev() {
            dev.hooks_leaving();
        }
        if notify {
            for h in self.target_hooks() {
                h.remove_complete(self);
            }
        }
        // The bus driver's FDO goes: its children that never started, and the ones it reported
        // but the PnP manager has not enumerated yet, are gone with it.
        self.release_children();
        self.teardown_objects();
        if matches!(state, NodeState::Removed | NodeState::SurpriseRemoved) {
            // Removed for good (unplugged, ejected, or its parent went): the PDO is deleted.
            if let Some(pdo) = &self.0.pdo {
                bus::delete_pdo(pdo);
            }
        }
        let timer = {
            let mut st = lock(&self.0.st);
            st.idle = false;
            st.slept = false;
            st.system_action = SystemPowerAction::None;
            st.pending_idle = false;
            if !status.is_success() {
                st.last_status = status;
            }
            st.idle_timer.take()
        };
        drop(timer);
        self.set_state(state);
    }

    /// The devices are leaving: their power hooks hear it (the interface layer disables their
    /// interfaces).
    fn disable_interfaces(&self) {
        for dev in self.stack().iter().rev() {
            dev.hooks_leaving();
        }
    }

    /// The surprise-removal list over the whole stack (highest first).
    fn surprise_stack(&self) {
        // Children go first (a failed or surprise-removed bus takes its children with it).
        for child in self.children() {
            if child.state().has_stack() {
                let _ = child.surprise_remove();
            }
        }
        self.disable_interfaces();
        for dev in self.stack().iter().rev() {
            scenarios::surprise(dev);
        }
        self.trace("bus: child to D3");
    }

    /// Failure teardown (WdfDeviceSetFailed, failing callback on a power transition).
    fn fail(&self, action: FailedAction) {
        if !self.state().has_stack() {
            return;
        }
        self.trace(&format!("device failed ({action:?})"));
        self.surprise_stack();
        self.finish_removal(NodeState::Failed, Status::UNSUCCESSFUL, true);
        if action == FailedAction::AttemptRestart {
            let attempt = {
                let mut st = lock(&self.0.st);
                st.restarts += 1;
                st.restarts <= MAX_RESTARTS
            };
            if attempt {
                self.trace("re-enumerated: restarting");
                let _ = self.build_and_start();
            } else {
                self.trace("restart attempts exhausted");
            }
        }
    }

    // ------------------------------------------------------------------ removal

    /// Orderly removal ([A User Unplugs a Device]): query-remove (target hooks, then
    /// EvtDeviceQueryRemove highest first; a failure vetoes and the node stays started), then the
    /// removal list. Children are removed first.
    ///
    /// Errors: the veto status; `STATUS_INVALID_DEVICE_STATE` if the node is not started.
    ///
    /// [A User Unplugs a Device]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-user-unplugs-a-device
    pub fn remove(&self) -> Result<(), Status> {
        self.query_remove()?;
        self.complete_remove(NodeState::Removed)
    }

    /// Device Manager "disable": orderly removal, ending in [`NodeState::Disabled`].
    ///
    /// On a bus child the PDO stays (its bus driver still reports it) and, as in KMDF, gets the
    /// removal list only up to and including EvtDeviceSelfManagedIoFlush: a PDO not reported
    /// missing waits in KMDF's "removed PDO wait" state, and its EvtDeviceSelfManagedIoCleanup
    /// runs only when it is reported missing (`WdfPdoMarkMissing`, eject, its bus removed) —
    /// see [`bus`]. The devices above it are torn down.
    ///
    /// Errors: as [`remove`](Self::remove).
    pub fn disable(&self) -> Result<(), Status> {
        self.query_remove()?;
        self.complete_remove(NodeState::Disabled)
    }

    /// Re-enables a disabled node: a new AddDevice and first start. A bus child's PDO, kept
    /// flushed by [`disable`](Self::disable), starts again with EvtDevicePrepareHardware,
    /// EvtDeviceD0Entry(D3Final), … and EvtDeviceSelfManagedIoRestart (KMDF's self-managed-I/O
    /// state machine goes from Flushed to Restarting on a start), not Init.
    ///
    /// Errors: the start failure; `STATUS_INVALID_DEVICE_STATE` if not disabled.
    pub fn enable(&self) -> Result<(), Status> {
        self.op("enable", |n| {
            if n.state() != NodeState::Disabled {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            n.build_and_start()
        })
    }

    /// PnP re-enumeration of a failed node (the restart the PnP manager attempts after a failure).
    ///
    /// Errors: the start failure; `STATUS_INVALID_DEVICE_STATE` if not failed.
    pub fn reenumerate(&self) -> Result<(), Status> {
        self.op("re-enumerate", |n| {
            if n.state() != NodeState::Failed {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            lock(&n.0.st).restarts += 1;
            n.build_and_start()
        })
    }

    /// `IRP_MN_QUERY_REMOVE_DEVICE`: children first, then target hooks, then EvtDeviceQueryRemove
    /// per driver, highest first. On success the node is [`NodeState::QueryRemovePending`].
    ///
    /// Errors: the veto status (hooks already asked get remove-cancelled);
    /// `STATUS_UNSUCCESSFUL` while a special file is in the node's path;
    /// `STATUS_INVALID_DEVICE_STATE` if the node is not started.
    pub fn query_remove(&self) -> Result<(), Status> {
        for child in self.children() {
            if child.state().has_stack() {
                child.remove()?;
            }
        }
        self.op("query remove", |n| {
            if n.state() != NodeState::Started {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            if lock(&n.0.st).special_files.values().any(|c| *c > 0) {
                n.trace("query-remove vetoed: special file in path");
                return Err(Status::UNSUCCESSFUL);
            }
            let hooks = n.target_hooks();
            for (i, h) in hooks.iter().enumerate() {
                let s = h.query_remove(n);
                if !s.is_success() {
                    n.trace("query-remove vetoed by a target hook");
                    for h in &hooks[..i] {
                        h.remove_canceled(n);
                    }
                    return Err(s);
                }
            }
            for dev in n.stack().iter().rev() {
                let s = scenarios::query(dev, false);
                if !s.is_success() {
                    n.trace(&format!("query-remove vetoed by {}", dev.driver().name()));
                    for h in &hooks {
                        h.remove_canceled(n);
                    }
                    return Err(s);
                }
            }
            n.set_state(NodeState::QueryRemovePending);
            Ok(())
        })
    }

    /// `IRP_MN_CANCEL_REMOVE_DEVICE` after a successful [`query_remove`](Self::query_remove):
    /// target hooks get remove-cancelled (KMDF has no driver callback); the node is started again.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if no query-remove is pending.
    pub fn cancel_remove(&self) -> Result<(), Status> {
        self.op("cancel remove", |n| {
            if n.state() != NodeState::QueryRemovePending {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            for h in n.target_hooks() {
                h.remove_canceled(n);
            }
            n.set_state(NodeState::Started);
            Ok(())
        })
    }

    /// `IRP_MN_REMOVE_DEVICE` after a successful [`query_remove`](Self::query_remove): the
    /// orderly-removal list per driver, highest first, then remove-complete and object deletion.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if no query-remove is pending.
    pub fn complete_remove(&self, end: NodeState) -> Result<(), Status> {
        self.op("remove", |n| {
            if n.state() != NodeState::QueryRemovePending {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            n.disable_interfaces();
            for dev in n.stack().iter().rev() {
                // A disabled child keeps its PDO (its bus still reports it): KMDF flushes the
                // PDO's self-managed I/O but leaves its Cleanup until the PDO is reported
                // missing ([`Down::RemoveKept`]).
                let down = if end == NodeState::Disabled && n.0.pdo.as_ref() == Some(dev) {
                    Down::RemoveKept
                } else {
                    Down::Remove
                };
                let _ = scenarios::power_down(dev, down);
            }
            n.trace("bus: child to D3");
            n.finish_removal(end, Status::SUCCESS, true);
            Ok(())
        })
    }

    /// Surprise removal (unplug, [A User Unplugs a Device]): children first, then interfaces
    /// disabled and that page's surprise-removal list per driver, highest first, whatever the
    /// power state.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if the node has no stack.
    ///
    /// [A User Unplugs a Device]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-user-unplugs-a-device
    pub fn surprise_remove(&self) -> Result<(), Status> {
        for child in self.children() {
            if child.state().has_stack() {
                let _ = child.surprise_remove();
            }
        }
        self.op("surprise remove", |n| {
            if !n.state().has_stack() {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            n.surprise_stack();
            n.finish_removal(NodeState::SurpriseRemoved, Status::SUCCESS, true);
            Ok(())
        })
    }

    // ------------------------------------------------------------------ rebalance

    /// Resource rebalance ([The PnP Manager Redistributes System Resources]): EvtDeviceQueryStop
    /// highest first (a failure vetoes), the stop list highest first, new resources, the restart
    /// list lowest first.
    ///
    /// Errors: the veto status (node still started); a restart failure (node failed);
    /// `STATUS_INVALID_DEVICE_STATE` if not started.
    ///
    /// [The PnP Manager Redistributes System Resources]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/the-pnp-manager-redistributes-system-resources
    pub fn rebalance(&self) -> Result<(), Status> {
        self.op("rebalance", |n| {
            if n.state() != NodeState::Started {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            let stack = n.stack();
            for dev in stack.iter().rev() {
                let s = scenarios::query(dev, true);
                if !s.is_success() {
                    n.trace(&format!("query-stop vetoed by {}", dev.driver().name()));
                    return Err(s);
                }
            }
            n.set_state(NodeState::QueryStopPending);
            for dev in stack.iter().rev() {
                if let Err(s) = scenarios::power_down(dev, Down::Stop) {
                    n.fail_now(s);
                    return Err(s);
                }
            }
            n.trace("bus: child to D3");
            n.set_state(NodeState::Stopped);
            {
                let mut st = lock(&n.0.st);
                st.resources.generation += 1;
                st.idle = false;
            }
            n.start_stack(Up::Rebalance)
        })
    }

    fn fail_now(&self, s: Status) {
        {
            // The teardown that follows is a surprise removal, not part of the system transition.
            let mut st = lock(&self.0.st);
            st.last_status = s;
            st.system_action = SystemPowerAction::None;
        }
        self.surprise_stack();
        self.finish_removal(NodeState::Failed, s, true);
    }

    // ------------------------------------------------------------------ power

    /// S0 idle ([Supporting Idle Power-Down]): the stack powers down to the power policy owner's
    /// idle Dx (default D3), highest first, arming for wake from S0 when the owner's settings can
    /// wake.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if not started, already idle, the system is not in
    /// S0, or a power reference ([`Device::stop_idle`]) is held; a failing
    /// SelfManagedIoSuspend (the node then fails).
    ///
    /// [Supporting Idle Power-Down]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/supporting-idle-power-down
    pub fn idle(&self) -> Result<(), Status> {
        self.op("idle", DeviceNode::go_idle)
    }

    /// The body of [`idle`](Self::idle), inside an operation.
    fn go_idle(&self) -> Result<(), Status> {
        let system = self
            .machine()
            .map_or(SystemPowerState::S5, |m| m.pnp().system_state());
        let stack = self.stack();
        if self.state() != NodeState::Started
            || self.is_idle()
            || system != SystemPowerState::S0
            || stack
                .iter()
                .any(|d| d.power_references() > 0 || !d.is_in_d0())
        {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        let dx = stack
            .iter()
            .find(|d| d.is_power_policy_owner())
            .map_or(DevicePowerState::D3, |d| d.state().idle.dx_state);
        let target = dx.as_wdf();
        for dev in stack.iter().rev() {
            if let Err(s) = scenarios::power_down(dev, Down::Dx { target, sx: false }) {
                self.fail_now(s);
                return Err(s);
            }
        }
        self.trace(&format!("bus: child to {dx:?}"));
        lock(&self.0.st).idle = true;
        Ok(())
    }

    /// Leaves S0 idle (`WdfDeviceStopIdle` or a request for a power-managed queue): the power-up
    /// list of [A Device Returns to Its Working State], lowest first, with PreviousState = the Dx.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if not idle; the D0Entry failure status (the stack
    /// then takes the surprise-removal path and fails).
    ///
    /// [A Device Returns to Its Working State]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-device-returns-to-its-working-state
    pub fn wake_from_idle(&self) -> Result<(), Status> {
        self.op("wake from idle", |n| {
            if !n.is_idle() {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            n.resume_stack(None)
        })
    }

    /// The device signals wake on its bus. Idle in S0 and armed → returns to D0 with
    /// EvtDeviceWakeFromS0Triggered; system asleep and armed for Sx → the system resumes and this
    /// device's owner gets EvtDeviceWakeFromSxTriggered.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if the device is not armed for wake.
    pub fn signal_wake(&self) -> Result<(), Status> {
        let machine = self.machine()?;
        let ppo_armed = |sx: bool| {
            self.stack().iter().any(|d| {
                let st = d.state();
                d.is_power_policy_owner() && if sx { st.armed_sx } else { st.armed_s0 }
            })
        };
        let system = machine.pnp().system_state();
        if system == SystemPowerState::S0 {
            if !self.is_idle() || !ppo_armed(false) {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            self.trace("wake signalled (S0)");
            self.op("wake signal", |n| n.resume_stack(Some(Wake::S0)))
        } else {
            if !ppo_armed(true) {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            self.trace("wake signalled (Sx)");
            machine.pnp().resume_all(Some(self))
        }
    }

    /// Returns every device to D0 from its Dx, lowest first. On failure: surprise-removal path.
    fn resume_stack(&self, wake: Option<Wake>) -> Result<(), Status> {
        self.trace("bus: child to D0");
        for dev in &self.stack() {
            if let Err((fail, s)) = scenarios::power_up(dev, Up::Resume { wake }, &self.resources())
            {
                let _ = fail;
                self.trace("return to D0 failed: surprise-removal path");
                self.fail_now(s);
                return Err(s);
            }
        }
        lock(&self.0.st).idle = false;
        self.idle_check();
        Ok(())
    }

    fn sleep(&self, target: SystemPowerState) -> Result<(), Status> {
        if self.state() != NodeState::Started {
            return Ok(());
        }
        if self.is_idle() {
            self.trace("system sleep: already in Dx (idle), nothing to do");
            return Ok(());
        }
        let on_path = lock(&self.0.st).hibernation_path;
        let down = match target {
            SystemPowerState::S5 => Down::Shutdown,
            SystemPowerState::S4 if on_path => Down::Dx {
                target: WdfPowerDeviceState::PrepareForHibernation,
                sx: true,
            },
            _ => Down::Dx {
                target: WdfPowerDeviceState::D3,
                sx: true,
            },
        };
        lock(&self.0.st).system_action = SystemPowerAction::entering(target);
        for dev in self.stack().iter().rev() {
            if let Err(s) = scenarios::power_down(dev, down) {
                self.fail_now(s);
                return Err(s);
            }
        }
        self.trace("bus: child to D3");
        let mut st = lock(&self.0.st);
        st.system_action = SystemPowerAction::None;
        st.slept = true;
        Ok(())
    }

    /// The return of a stack this system transition powered down; `action` is the one that put
    /// the system to sleep (what `WdfDeviceGetSystemPowerAction` reports on the way back).
    fn wake_from_sleep(&self, action: SystemPowerAction, wake: Option<Wake>) -> Result<(), Status> {
        let slept = std::mem::take(&mut lock(&self.0.st).slept);
        if !slept || self.state() != NodeState::Started {
            return Ok(());
        }
        lock(&self.0.st).system_action = action;
        let r = self.resume_stack(wake);
        lock(&self.0.st).system_action = SystemPowerAction::None;
        r
    }

    // ------------------------------------------------------------------ queries

    /// `IRP_MN_QUERY_DEVICE_RELATIONS`: EvtDeviceRelationsQuery per driver, highest first.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if the node has no stack.
    pub fn query_relations(&self, kind: RelationType) -> Result<(), Status> {
        self.op("query relations", |n| {
            if !n.state().has_stack() {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            for dev in n.stack().iter().rev() {
                if let Some(f) = &dev.0.pnp.relations_query {
                    scenarios::call(dev, &format!("EvtDeviceRelationsQuery({kind:?})"), || {
                        f(dev, kind);
                    });
                }
            }
            Ok(())
        })
    }

    /// `IRP_MN_DEVICE_USAGE_NOTIFICATION`: EvtDeviceUsageNotificationEx per driver, highest
    /// first. If one fails, the drivers already notified are called again with the opposite
    /// `in_path` (inferred) and the notification fails. While a special file is in the path,
    /// query-remove is vetoed.
    ///
    /// Errors: the failing status; `STATUS_INVALID_DEVICE_STATE` if not started.
    pub fn usage_notification(&self, kind: SpecialFileType, in_path: bool) -> Result<(), Status> {
        self.op("usage notification", |n| {
            if n.state() != NodeState::Started {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            let stack = n.stack();
            let label = |p: bool| format!("EvtDeviceUsageNotificationEx({kind:?}, {p})");
            for (i, dev) in stack.iter().enumerate().rev() {
                let Some(f) = &dev.0.pnp.usage_notification_ex else {
                    continue;
                };
                let s = scenarios::call(dev, &label(in_path), || f(dev, kind, in_path));
                if !s.is_success() {
                    for undo in &stack[i + 1..] {
                        if let Some(g) = &undo.0.pnp.usage_notification_ex {
                            let _ =
                                scenarios::call(undo, &label(!in_path), || g(undo, kind, !in_path));
                        }
                    }
                    return Err(s);
                }
            }
            let mut st = lock(&n.0.st);
            let c = st.special_files.entry(kind).or_insert(0);
            if in_path {
                *c += 1;
            } else {
                *c = c.saturating_sub(1);
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------- devices in a node

impl DeviceInit {
    /// The device node being built.
    pub fn node(&self) -> Option<DeviceNode> {
        DeviceNode::from_slot(&self.node)
    }
}

/// What a device is in its node: the stack around it, its idle references, its failure, the
/// system power action of its transitions.
impl Device {
    /// The device node this device belongs to (gone once the node is dropped).
    pub fn node(&self) -> Option<DeviceNode> {
        DeviceNode::from_slot(&self.0.node).or_else(|| {
            let pdo = self.0.pdo.as_ref()?;
            DeviceNode::from_slot(&lock(&pdo.node))
        })
    }

    /// The next-lower device of the stack (`None` at the bottom: below is the PDO).
    pub fn lower(&self) -> Option<Device> {
        let stack = self.node()?.stack();
        let pos = stack.iter().position(|d| d == self)?;
        pos.checked_sub(1).map(|i| stack[i].clone())
    }

    /// The next-higher device of the stack.
    pub fn upper(&self) -> Option<Device> {
        let stack = self.node()?.stack();
        let pos = stack.iter().position(|d| d == self)?;
        stack.get(pos + 1).cloned()
    }

    /// `WdfDeviceGetSystemPowerAction`: the system power action, if any, that caused this
    /// device's current power transition.
    ///
    /// The rule, as Microsoft documents it for `WdfDeviceGetSystemPowerAction`: a driver calls it
    /// only from the callbacks the framework runs while the device enters a low-power state or
    /// returns to its working state (`EvtDeviceD0ExitPreInterruptsDisabled`, `EvtDeviceD0Exit`,
    /// `EvtDeviceArmWakeFromSx[WithReason]`, `EvtDeviceSelfManagedIoSuspend` of the power-down;
    /// `EvtDeviceD0Entry`, `EvtDeviceD0EntryPostInterruptsEnabled`, the wake/disarm callbacks
    /// and `EvtDeviceSelfManagedIoRestart` of the return). It reports:
    ///
    /// * while the system enters a sleeping state, the reason it does:
    ///   [`SystemPowerAction::Sleep`] for S3, [`SystemPowerAction::Hibernate`] for S4 (on or
    ///   off the hibernation path), [`SystemPowerAction::Shutdown`] for S5;
    /// * while the system returns to S0, the reason it had left S0 (`Sleep` after S3,
    ///   `Hibernate` after S4);
    /// * [`SystemPowerAction::None`] when the device powers down or up on its own while the
    ///   system stays in S0 (S0 idle and its return, start, rebalance stop, removal, surprise
    ///   removal, `WdfDeviceSetFailed` — also a teardown after a callback failed during a system
    ///   transition), when the system starts up after being off, and when neither the system
    ///   nor the device is changing state.
    ///
    /// A device idle in Dx when the system sleeps runs no callback and is left in Dx on the
    /// return (see [`crate::pnp`]); a control device (no node) always reads `None`.
    pub fn system_power_action(&self) -> SystemPowerAction {
        self.node()
            .map_or(SystemPowerAction::None, |n| n.system_power_action())
    }

    /// The `IdleTimeout` (with `Enabled = WdfTrue`) of `WdfDeviceAssignS0IdleSettings` (power
    /// policy owner): with `Some(timeout)`, once the stack has been idle for `timeout` of virtual
    /// time — no request waiting in or presented by a power-managed queue, no power reference
    /// ([`stop_idle`](Self::stop_idle)), system in S0 — it powers down to the Dx of
    /// [`S0IdleSettings`](crate::device::S0IdleSettings) as [`DeviceNode::idle`] does; a request
    /// for a power-managed queue or `stop_idle` brings it back to D0 and the count starts again
    /// when the stack is idle again ([Supporting Idle Power-Down]). `None` (the default) turns
    /// automatic idling off; the stack then only idles on an explicit [`DeviceNode::idle`]. KMDF's
    /// own default timeout is 5 s.
    ///
    /// [Supporting Idle Power-Down]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/supporting-idle-power-down
    pub fn assign_s0_idle_timeout(&self, timeout: Option<std::time::Duration>) {
        lock(&self.0.st).idle_timeout = timeout;
        if let Some(node) = self.node() {
            node.idle_check();
        }
    }

    /// Activity that may have kept the stack busy ended: restart the idle count if it applies.
    pub(crate) fn idle_activity_done(&self) {
        if let Some(node) = self.node() {
            node.idle_check();
        }
    }

    /// `WdfDeviceStopIdle`: takes a power reference; if the stack idles in Dx it returns to D0
    /// (synchronously on this thread when called at `PASSIVE_LEVEL` outside a PnP operation,
    /// otherwise from a system work item).
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if the device is deleted or its node is gone.
    pub fn stop_idle(&self) -> Result<(), Status> {
        self.object().ensure_alive("WdfDeviceStopIdle")?;
        lock(&self.0.st).power_refs += 1;
        let node = self.node().ok_or(Status::INVALID_DEVICE_STATE)?;
        node.power_reference_taken();
        Ok(())
    }

    /// `WdfDeviceResumeIdle`: drops a power reference taken by [`stop_idle`](Self::stop_idle).
    pub fn resume_idle(&self) {
        let last = {
            let mut st = lock(&self.0.st);
            st.power_refs = st.power_refs.saturating_sub(1);
            st.power_refs == 0
        };
        if last {
            self.idle_activity_done();
        }
    }

    /// `WdfDeviceSetFailed` (≤ DISPATCH_LEVEL): the stack is torn down along the surprise-removal
    /// path, after the current PnP operation or from a system work item; with
    /// [`FailedAction::AttemptRestart`] the node is then rebuilt and restarted (bounded retries).
    pub fn set_failed(&self, action: FailedAction) {
        if self.object().ensure_alive("WdfDeviceSetFailed").is_err() {
            return;
        }
        if let Some(node) = self.node() {
            node.request_failure(action);
        }
    }
}
