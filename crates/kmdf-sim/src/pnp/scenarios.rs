//! The per-driver step lists of Microsoft's *PnP and Power Management Scenarios* pages (one
//! device object at a time): [A User Plugs in a Device], [A User Unplugs a Device],
//! [A Device Enters a Low-Power State], [A Device Returns to Its Working State] and
//! [The PnP Manager Redistributes System Resources]. The node-level code in [`super`] runs them
//! over the stack in stack order.
//!
//! [A User Plugs in a Device]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-user-plugs-in-a-device
//! [A User Unplugs a Device]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-user-unplugs-a-device
//! [A Device Enters a Low-Power State]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-device-enters-a-low-power-state
//! [A Device Returns to Its Working State]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-device-returns-to-its-working-state
//! [The PnP Manager Redistributes System Resources]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/the-pnp-manager-redistributes-system-resources

use crate::device::{Device, DeviceFn, DevicePowerFn, DeviceStatusFn, Resources};
use crate::pnp::state::{DevicePnpState, StopAction, WdfPowerDeviceState};
use crate::status::Status;
use crate::verifier::invoke_callback;

/// Calls a driver callback of `dev` through the verifier, traced as `label`.
pub(crate) fn call<R>(dev: &Device, label: &str, f: impl FnOnce() -> R) -> R {
    invoke_callback(dev.driver().name(), dev.name(), label, f)
}

fn status_cb(dev: &Device, label: &str, cb: Option<&DeviceStatusFn>) -> Status {
    cb.map_or(Status::SUCCESS, |f| call(dev, label, || f(dev)))
}

fn void_cb(dev: &Device, label: &str, cb: Option<&DeviceFn>) {
    if let Some(f) = cb {
        call(dev, label, || f(dev));
    }
}

fn power_cb(
    dev: &Device,
    name: &str,
    cb: Option<&DevicePowerFn>,
    state: WdfPowerDeviceState,
) -> Status {
    cb.map_or(Status::SUCCESS, |f| {
        call(dev, &format!("{name}({state})"), || f(dev, state))
    })
}

/// Step 6 of the power-up lists: (re)start power-managed queues.
fn queues_started(dev: &Device) {
    dev.trace_state("power-managed queues started");
    for h in dev.hooks() {
        h.started(dev);
    }
}

/// Step 2 of the power-down lists: stop power-managed queues.
fn queues_stopping(dev: &Device, action: StopAction) {
    dev.trace_state(&format!("power-managed queues stopped ({action:?})"));
    for h in dev.hooks() {
        h.stopping(dev, action);
    }
}

/// How a device is powered up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Up {
    /// First start (or a start after re-enumeration): PrepareHardware, D0Entry(D3Final), …, Init.
    First,
    /// Restart after a rebalance: PrepareHardware(new resources), D0Entry(D3Final), …, Restart.
    Rebalance,
    /// Return from Dx: D0Entry(Dx), …, wake triggered/disarm, Restart.
    Resume { wake: Option<Wake> },
}

/// Which wake signal brought the device back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// While idle in S0.
    S0,
    /// While the system slept.
    Sx,
}

/// The step of a power-up list that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpFail {
    PrepareHardware,
    D0Entry,
    PostInterruptsEnabled,
    SelfManagedIo,
}

/// Power-up list for one device (*A User Plugs in a Device*, *A Device Returns to Its Working
/// State*, *The PnP Manager Redistributes System Resources*). `PreviousState` is D3Final for a
/// first start and for a rebalance restart (inferred: the rebalance page does not state it), else
/// the Dx the device was in.
pub(crate) fn power_up(dev: &Device, up: Up, res: &Resources) -> Result<(), (UpFail, Status)> {
    let pnp = &dev.0.pnp;
    let prev = match up {
        Up::First | Up::Rebalance => {
            dev.state().prepared = true;
            if let Some(f) = &pnp.prepare_hardware {
                let s = call(dev, "EvtDevicePrepareHardware", || f(dev, res));
                if !s.is_success() {
                    return Err((UpFail::PrepareHardware, s));
                }
            }
            WdfPowerDeviceState::D3Final
        }
        Up::Resume { .. } => dev.power_state().as_wdf(),
    };
    let s = power_cb(dev, "EvtDeviceD0Entry", pnp.d0_entry.as_ref(), prev);
    if !s.is_success() {
        return Err((UpFail::D0Entry, s));
    }
    {
        let mut st = dev.state();
        st.power = crate::pnp::state::DevicePowerState::D0;
        st.ever_started = true;
    }
    let s = power_cb(
        dev,
        "EvtDeviceD0EntryPostInterruptsEnabled",
        pnp.d0_entry_post_interrupts_enabled.as_ref(),
        prev,
    );
    if !s.is_success() {
        return Err((UpFail::PostInterruptsEnabled, s));
    }
    if let Up::Resume { wake } = up {
        if dev.is_power_policy_owner() {
            let policy = &dev.0.policy;
            let (s0, sx) = {
                let mut st = dev.state();
                (
                    std::mem::take(&mut st.armed_s0),
                    std::mem::take(&mut st.armed_sx),
                )
            };
            if s0 {
                if wake == Some(Wake::S0) {
                    void_cb(
                        dev,
                        "EvtDeviceWakeFromS0Triggered",
                        policy.wake_from_s0_triggered.as_ref(),
                    );
                }
                void_cb(
                    dev,
                    "EvtDeviceDisarmWakeFromS0",
                    policy.disarm_wake_from_s0.as_ref(),
                );
            }
            if sx {
                if wake == Some(Wake::Sx) {
                    void_cb(
                        dev,
                        "EvtDeviceWakeFromSxTriggered",
                        policy.wake_from_sx_triggered.as_ref(),
                    );
                }
                void_cb(
                    dev,
                    "EvtDeviceDisarmWakeFromSx",
                    policy.disarm_wake_from_sx.as_ref(),
                );
            }
        }
    }
    queues_started(dev);
    let init = {
        let mut st = dev.state();
        st.pnp = DevicePnpState::Started;
        // A flushed PDO (its child was disabled) starts again with Restart: KMDF's
        // self-managed-I/O state machine goes from Flushed to Restarting on a start.
        st.smio_flushed = false;
        !std::mem::replace(&mut st.smio_initialized, true)
    };
    let s = if init {
        status_cb(
            dev,
            "EvtDeviceSelfManagedIoInit",
            pnp.self_managed_io_init.as_ref(),
        )
    } else {
        status_cb(
            dev,
            "EvtDeviceSelfManagedIoRestart",
            pnp.self_managed_io_restart.as_ref(),
        )
    };
    if !s.is_success() {
        return Err((UpFail::SelfManagedIo, s));
    }
    Ok(())
}

/// How a device is powered down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Down {
    /// *A Device Enters a Low-Power State* to a Dx (idle: `sx == false`; system sleep:
    /// `sx == true`). No ReleaseHardware.
    Dx {
        target: WdfPowerDeviceState,
        sx: bool,
    },
    /// System shutdown: D0Exit(D3Final), no ReleaseHardware, no wake arming.
    Shutdown,
    /// Rebalance stop (*The PnP Manager Redistributes System Resources*): … D0Exit(D3Final),
    /// ReleaseHardware.
    Stop,
    /// Orderly removal (*A User Unplugs a Device*): … D0Exit(D3Final), ReleaseHardware, Flush,
    /// Cleanup.
    Remove,
    /// Orderly removal of a PDO its bus driver still reports (its child node disabled): as
    /// [`Remove`](Self::Remove) up to and including Flush, without Cleanup. KMDF's PDO package
    /// sends a PDO that is not reported missing to its "removed PDO wait" state after the remove
    /// path's EvtDeviceSelfManagedIoFlush; the cleanup (EvtDeviceSelfManagedIoCleanup, the
    /// device's children disposed) runs only once the PDO is reported missing, and a new start
    /// from the flushed state runs EvtDeviceSelfManagedIoRestart (Windows Driver Frameworks
    /// source: `fxpkgpdo.cpp`, `selfmanagediostatemachine.cpp`). See [`cleanup_flushed`].
    RemoveKept,
}

impl Down {
    fn is_remove(self) -> bool {
        matches!(self, Down::Remove | Down::RemoveKept)
    }
}

/// Power-down list for one device (*A Device Enters a Low-Power State*, *A User Unplugs a
/// Device* (orderly removal), *The PnP Manager Redistributes System Resources*). A device already
/// out of D0 skips the D0 part (Suspend, queue stop, arming, D0Exit) — the inferred rule for
/// removal/rebalance of an idle device. `Err` only for a failing SelfManagedIoSuspend when
/// lowering power ([`EvtDeviceSelfManagedIoSuspend`]).
///
/// [`EvtDeviceSelfManagedIoSuspend`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_self_managed_io_suspend
pub(crate) fn power_down(dev: &Device, down: Down) -> Result<(), Status> {
    let pnp = &dev.0.pnp;
    if dev.is_in_d0() {
        let s = status_cb(
            dev,
            "EvtDeviceSelfManagedIoSuspend",
            pnp.self_managed_io_suspend.as_ref(),
        );
        if !s.is_success() && !down.is_remove() {
            return Err(s);
        }
        let action = if down.is_remove() {
            StopAction::Purge
        } else {
            StopAction::Suspend
        };
        queues_stopping(dev, action);
        let target = match down {
            Down::Dx { target, sx } => {
                if dev.is_power_policy_owner() {
                    arm_wake(dev, sx);
                }
                target
            }
            _ => WdfPowerDeviceState::D3Final,
        };
        power_exit(dev, target);
    }
    if matches!(down, Down::Stop | Down::Remove | Down::RemoveKept) {
        release_hardware(dev);
    }
    match down {
        Down::Remove => {
            flush_and_cleanup(dev);
            dev.state().pnp = DevicePnpState::Removed;
        }
        Down::RemoveKept => {
            flush_only(dev);
            dev.state().pnp = DevicePnpState::Removed;
        }
        Down::Stop => dev.state().pnp = DevicePnpState::Stopped,
        _ => {}
    }
    Ok(())
}

/// The arm-for-wake step of *A Device Enters a Low-Power State* (power policy owner):
/// `EvtDeviceArmWakeFromS0` (idle) or `EvtDeviceArmWakeFromSx[WithReason]` (system sleep).
fn arm_wake(dev: &Device, sx: bool) {
    let policy = &dev.0.policy;
    let (idle_wake, system_wake) = {
        let st = dev.state();
        (st.idle.can_wake, st.sx_wake)
    };
    if sx {
        if system_wake {
            let s = if let Some(f) = &policy.arm_wake_from_sx_with_reason {
                call(dev, "EvtDeviceArmWakeFromSxWithReason", || {
                    f(dev, true, false)
                })
            } else {
                status_cb(
                    dev,
                    "EvtDeviceArmWakeFromSx",
                    policy.arm_wake_from_sx.as_ref(),
                )
            };
            dev.state().armed_sx = s.is_success();
        }
    } else if idle_wake {
        let s = status_cb(
            dev,
            "EvtDeviceArmWakeFromS0",
            policy.arm_wake_from_s0.as_ref(),
        );
        // EvtDeviceArmWakeFromS0: on failure no Disarm later and no device failure.
        dev.state().armed_s0 = s.is_success();
    }
}

/// The last steps of *A Device Enters a Low-Power State*: D0ExitPreInterruptsDisabled, D0Exit.
/// Failures of these callbacks are traced and otherwise ignored (the docs give only the generic
/// rule of *Reporting Device Failures*; inferred choice).
fn power_exit(dev: &Device, target: WdfPowerDeviceState) {
    let pnp = &dev.0.pnp;
    let s1 = power_cb(
        dev,
        "EvtDeviceD0ExitPreInterruptsDisabled",
        pnp.d0_exit_pre_interrupts_disabled.as_ref(),
        target,
    );
    let s2 = power_cb(dev, "EvtDeviceD0Exit", pnp.d0_exit.as_ref(), target);
    if !s1.is_success() || !s2.is_success() {
        dev.trace_state("power-down callback failed (ignored)");
    }
    dev.state().power = target.resulting_state();
}

fn release_hardware(dev: &Device) {
    let prepared = std::mem::take(&mut dev.state().prepared);
    if prepared {
        if let Some(f) = &dev.0.pnp.release_hardware {
            let res = dev.node().map(|n| n.resources()).unwrap_or_default();
            let _ = call(dev, "EvtDeviceReleaseHardware", || f(dev, &res));
        }
    }
}

/// Flush then Cleanup, if self-managed I/O was initialized; a device already flushed (a
/// disabled child's PDO whose restart failed) is only cleaned up.
fn flush_and_cleanup(dev: &Device) {
    let (started, flushed) = {
        let st = dev.state();
        (st.smio_initialized, st.smio_flushed)
    };
    if started {
        if !flushed {
            flush_only(dev);
        }
        cleanup_flushed(dev);
    }
}

/// EvtDeviceSelfManagedIoFlush (if self-managed I/O was initialized and not flushed yet); the
/// device is left flushed, its Cleanup pending ([`Down::RemoveKept`]).
fn flush_only(dev: &Device) {
    let run = {
        let mut st = dev.state();
        let run = st.smio_initialized && !st.smio_flushed;
        if run {
            st.smio_flushed = true;
        }
        run
    };
    if run {
        void_cb(
            dev,
            "EvtDeviceSelfManagedIoFlush",
            dev.0.pnp.self_managed_io_flush.as_ref(),
        );
    }
}

/// EvtDeviceSelfManagedIoCleanup of a flushed device. Called for a PDO being deleted after it
/// was reported missing: KMDF runs the cleanup of a removed PDO only then (the PDO package's
/// removed-common code, `fxpkgpdo.cpp` in the Windows Driver Frameworks source), so a PDO
/// whose child was disabled gets its Cleanup here, before the device is deleted. A device not
/// flushed (already cleaned up, or never started) gets nothing.
pub(crate) fn cleanup_flushed(dev: &Device) {
    if std::mem::take(&mut dev.state().smio_flushed) {
        void_cb(
            dev,
            "EvtDeviceSelfManagedIoCleanup",
            dev.0.pnp.self_managed_io_cleanup.as_ref(),
        );
    }
}

/// Unwinding of the device whose power-up step failed during a start or rebalance restart (the
/// failure rules of the callbacks' reference pages, see [`super`]'s *Failure unwinding*):
/// PrepareHardware/D0Entry failed → ReleaseHardware only (no D0Exit, D3); PostInterruptsEnabled
/// failed → D0Exit(D3Final), ReleaseHardware; SelfManagedIoInit/Restart failed → stop queues
/// (Purge), D0ExitPreInterruptsDisabled + D0Exit (D3Final), ReleaseHardware, then Flush + Cleanup
/// ([`EvtDeviceSelfManagedIoInit`]). Flush + Cleanup run whenever SelfManagedIoInit had run.
///
/// [`EvtDeviceSelfManagedIoInit`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_self_managed_io_init
pub(crate) fn unwind_failed_start(dev: &Device, fail: UpFail) {
    match fail {
        UpFail::SelfManagedIo => {
            queues_stopping(dev, StopAction::Purge);
            power_exit(dev, WdfPowerDeviceState::D3Final);
        }
        UpFail::PostInterruptsEnabled => {
            let s = power_cb(
                dev,
                "EvtDeviceD0Exit",
                dev.0.pnp.d0_exit.as_ref(),
                WdfPowerDeviceState::D3Final,
            );
            let _ = s;
        }
        UpFail::PrepareHardware | UpFail::D0Entry => {}
    }
    dev.state().power = crate::pnp::state::DevicePowerState::D3;
    release_hardware(dev);
    flush_and_cleanup(dev);
    dev.state().pnp = DevicePnpState::Removed;
}

/// Surprise-removal list for one device (*A User Unplugs a Device*): SurpriseRemoval; if in D0:
/// stop queues (Purge), Suspend, D0ExitPreInterruptsDisabled + D0Exit (D3Final); then
/// ReleaseHardware, Flush, Cleanup. A device in Dx skips the D0 part (it already ran D0Exit) and
/// is not disarmed.
pub(crate) fn surprise(dev: &Device) {
    let pnp = &dev.0.pnp;
    void_cb(
        dev,
        "EvtDeviceSurpriseRemoval",
        pnp.surprise_removal.as_ref(),
    );
    if dev.is_in_d0() {
        queues_stopping(dev, StopAction::Purge);
        let _ = status_cb(
            dev,
            "EvtDeviceSelfManagedIoSuspend",
            pnp.self_managed_io_suspend.as_ref(),
        );
        power_exit(dev, WdfPowerDeviceState::D3Final);
    }
    {
        let mut st = dev.state();
        st.armed_s0 = false;
        st.armed_sx = false;
    }
    release_hardware(dev);
    flush_and_cleanup(dev);
    dev.state().pnp = DevicePnpState::SurpriseRemoved;
}

/// `EvtDeviceQueryRemove` / `EvtDeviceQueryStop`.
pub(crate) fn query(dev: &Device, stop: bool) -> Status {
    if stop {
        status_cb(dev, "EvtDeviceQueryStop", dev.0.pnp.query_stop.as_ref())
    } else {
        status_cb(dev, "EvtDeviceQueryRemove", dev.0.pnp.query_remove.as_ref())
    }
}
