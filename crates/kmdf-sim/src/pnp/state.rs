//! PnP and power state values: `WDF_POWER_DEVICE_STATE`, device and node states, stop actions.

use core::fmt;

/// `WDF_POWER_DEVICE_STATE` — the `PreviousState` of `EvtDeviceD0Entry` and the `TargetState` of
/// `EvtDeviceD0Exit` ([`WDF_POWER_DEVICE_STATE`]). Printed without the `WdfPowerDevice` prefix
/// (`D3Final`).
///
/// [`WDF_POWER_DEVICE_STATE`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/ne-wdfdevice-_wdf_power_device_state
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WdfPowerDeviceState {
    /// `WdfPowerDeviceInvalid`.
    Invalid,
    /// `WdfPowerDeviceD0`.
    D0,
    /// `WdfPowerDeviceD1`.
    D1,
    /// `WdfPowerDeviceD2`.
    D2,
    /// `WdfPowerDeviceD3`.
    D3,
    /// `WdfPowerDeviceD3Final`: first D0 entry, removal, rebalance, shutdown.
    D3Final,
    /// `WdfPowerDevicePrepareForHibernation`: on the hibernation path, system entering S4.
    PrepareForHibernation,
}

impl WdfPowerDeviceState {
    /// The short name (`D3Final`).
    pub const fn name(self) -> &'static str {
        match self {
            WdfPowerDeviceState::Invalid => "Invalid",
            WdfPowerDeviceState::D0 => "D0",
            WdfPowerDeviceState::D1 => "D1",
            WdfPowerDeviceState::D2 => "D2",
            WdfPowerDeviceState::D3 => "D3",
            WdfPowerDeviceState::D3Final => "D3Final",
            WdfPowerDeviceState::PrepareForHibernation => "PrepareForHibernation",
        }
    }

    /// The device power state a device is in after a D0Exit to this target.
    pub const fn resulting_state(self) -> DevicePowerState {
        match self {
            WdfPowerDeviceState::D0 => DevicePowerState::D0,
            WdfPowerDeviceState::D1 => DevicePowerState::D1,
            WdfPowerDeviceState::D2 => DevicePowerState::D2,
            _ => DevicePowerState::D3,
        }
    }
}

impl fmt::Display for WdfPowerDeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The power state a device is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DevicePowerState {
    /// Working.
    D0,
    /// Low power D1.
    D1,
    /// Low power D2.
    D2,
    /// Off (also: never started, removed).
    #[default]
    D3,
}

impl DevicePowerState {
    /// The `WDF_POWER_DEVICE_STATE` naming this state (as `PreviousState`).
    pub const fn as_wdf(self) -> WdfPowerDeviceState {
        match self {
            DevicePowerState::D0 => WdfPowerDeviceState::D0,
            DevicePowerState::D1 => WdfPowerDeviceState::D1,
            DevicePowerState::D2 => WdfPowerDeviceState::D2,
            DevicePowerState::D3 => WdfPowerDeviceState::D3,
        }
    }
}

/// The PnP state of one device object of a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DevicePnpState {
    /// Created by `EvtDriverDeviceAdd`, not started yet.
    #[default]
    Added,
    /// Started (may be idle in Dx).
    Started,
    /// Stopped for a rebalance (resources released).
    Stopped,
    /// Removed (orderly) or torn down after a failure.
    Removed,
    /// Surprise-removed.
    SurpriseRemoved,
}

/// The PnP state of a device node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Stack being built / started.
    Starting,
    /// Started.
    Started,
    /// A query-stop succeeded; waiting for stop or cancel.
    QueryStopPending,
    /// Stopped for a rebalance.
    Stopped,
    /// A query-remove succeeded; waiting for remove or cancel.
    QueryRemovePending,
    /// Removed in order (the stack is gone).
    Removed,
    /// Disabled (orderly removal; [`enable`](crate::pnp::DeviceNode::enable) rebuilds it).
    Disabled,
    /// Surprise-removed (the stack is gone).
    SurpriseRemoved,
    /// Failed (start failure, failing callback, `WdfDeviceSetFailed`); the stack is gone.
    Failed,
}

impl NodeState {
    /// True while the node has a device stack.
    pub const fn has_stack(self) -> bool {
        matches!(
            self,
            NodeState::Starting
                | NodeState::Started
                | NodeState::QueryStopPending
                | NodeState::Stopped
                | NodeState::QueryRemovePending
        )
    }
}

/// The system power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SystemPowerState {
    /// Working.
    #[default]
    S0,
    /// Sleep (suspend to RAM).
    S3,
    /// Hibernate.
    S4,
    /// Shut down.
    S5,
}

/// `POWER_ACTION` — the system power action that caused a device's current power transition, as
/// `WdfDeviceGetSystemPowerAction` reports it ([`Device::system_power_action`]). The simulator
/// produces `None`, `Sleep` (S3), `Hibernate` (S4) and `Shutdown` (S5); it has no restart or
/// power-off variant of shutdown, so `PowerActionShutdownReset` / `PowerActionShutdownOff` are
/// not modelled.
///
/// [`Device::system_power_action`]: crate::device::Device::system_power_action
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SystemPowerAction {
    /// `PowerActionNone`: no system power transition (the device idles, wakes from idle, starts,
    /// stops, is removed or surprise-removed; or the system starts up after being off).
    #[default]
    None,
    /// `PowerActionSleep`: the system enters (or returns from) S1–S3.
    Sleep,
    /// `PowerActionHibernate`: the system enters (or returns from) S4.
    Hibernate,
    /// `PowerActionShutdown`: the system shuts down (S5).
    Shutdown,
}

impl SystemPowerAction {
    /// The `POWER_ACTION` value of `wdm.h` (`PowerActionNone` = 0, `PowerActionSleep` = 2,
    /// `PowerActionHibernate` = 3, `PowerActionShutdown` = 4).
    pub const fn as_raw(self) -> u32 {
        match self {
            SystemPowerAction::None => 0,
            SystemPowerAction::Sleep => 2,
            SystemPowerAction::Hibernate => 3,
            SystemPowerAction::Shutdown => 4,
        }
    }

    /// The action that takes the system from S0 to `target` (`None` for S0).
    pub const fn entering(target: SystemPowerState) -> Self {
        match target {
            SystemPowerState::S0 => SystemPowerAction::None,
            SystemPowerState::S3 => SystemPowerAction::Sleep,
            SystemPowerState::S4 => SystemPowerAction::Hibernate,
            SystemPowerState::S5 => SystemPowerAction::Shutdown,
        }
    }
}

/// What the I/O layer does with power-managed queues at [`DevicePowerHook::stopping`]
/// ([`WDF_REQUEST_STOP_ACTION_FLAGS`]).
///
/// [`WDF_REQUEST_STOP_ACTION_FLAGS`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfrequest/ne-wdfrequest-_wdf_request_stop_action_flags
/// [`DevicePowerHook::stopping`]: crate::device::DevicePowerHook::stopping
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopAction {
    /// `WdfRequestStopActionSuspend`: the device leaves D0 and comes back (Dx, rebalance).
    Suspend,
    /// `WdfRequestStopActionPurge`: the device is being removed.
    Purge,
}

/// [`WDF_DEVICE_FAILED_ACTION`].
///
/// [`WDF_DEVICE_FAILED_ACTION`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/ne-wdfdevice-_wdf_device_failed_action
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailedAction {
    /// `WdfDeviceFailedAttemptRestart`: tear down, then re-enumerate (bounded retries).
    AttemptRestart,
    /// `WdfDeviceFailedNoRestart`: tear down, no restart.
    NoRestart,
}

/// `DEVICE_RELATION_TYPE` for `EvtDeviceRelationsQuery`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelationType {
    /// `BusRelations`.
    Bus,
    /// `EjectionRelations`.
    Ejection,
    /// `RemovalRelations`.
    Removal,
    /// `TargetDeviceRelation`.
    TargetDevice,
}

/// `WDF_SPECIAL_FILE_TYPE` for `EvtDeviceUsageNotificationEx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialFileType {
    /// `WdfSpecialFilePaging`.
    Paging,
    /// `WdfSpecialFileHibernation`.
    Hibernation,
    /// `WdfSpecialFileDump`.
    Dump,
    /// `WdfSpecialFileBoot`.
    Boot,
}

/// Where a driver sits in a device stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StackRole {
    /// The bus driver's PDO, at the bottom of a child device's stack (`WdfPdoInitAllocate`).
    Bus,
    /// A lower filter (below the function driver).
    LowerFilter,
    /// The function driver (FDO).
    Function,
    /// An upper filter (above the function driver).
    UpperFilter,
}
