//! Timers: `WdfTimerCreate`, `WdfTimerStart`, `WdfTimerStop`, `WdfTimerGetParentObject`, on
//! kmdf-sim's [`Timer`] and the virtual clock.
//!
//! The `WDFTIMER` is kmdf-sim's timer object (its `ParentObject` is mandatory and must lead to a
//! device). `EvtTimerFunc` runs at `DISPATCH_LEVEL` on the DPC thread, or at `PASSIVE_LEVEL` on a
//! system worker thread when the timer's attributes say `WdfExecutionLevelPassive` (a level
//! inherited from the parent is taken as `DISPATCH_LEVEL`, KMDF's default).
//! `AutomaticSerialization`, `TolerableDelay` and `UseHighResolutionTimer` are accepted and not
//! modelled (the virtual clock is exact).

use std::sync::Arc;

use kmdf_sim::exec::{ExecutionLevel, Timer, TimerConfig};
use kmdf_sim::Status;

use super::bindings::status::{STATUS_INFO_LENGTH_MISMATCH, STATUS_SUCCESS};
use super::bindings::_WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive;
use super::bindings::{
    BOOLEAN, LONGLONG, NTSTATUS, PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES, PWDF_TIMER_CONFIG,
    WDFOBJECT, WDFTIMER, WDF_TIMER_CONFIG,
};
use super::objects::{self, Attributes, Object};
use super::{sync, wdf_exports, workitem};
use crate::host::{guard, machine};

wdf_exports! {
    WdfTimerCreate => wdf_timer_create: PFN_WDFTIMERCREATE,
    WdfTimerStart => wdf_timer_start: PFN_WDFTIMERSTART,
    WdfTimerStop => wdf_timer_stop: PFN_WDFTIMERSTOP,
    WdfTimerGetParentObject => wdf_timer_get_parent_object: PFN_WDFTIMERGETPARENTOBJECT,
}

/// The payload of a `WDFTIMER`: the kmdf-sim timer (its owner).
#[derive(Debug)]
pub struct TimerPayload(pub Timer);

/// `WdfTimerCreate`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL config or out pointer, no `EvtTimerFunc`, or a
/// passive-level timer with a period; `STATUS_INFO_LENGTH_MISMATCH` for a config or attributes
/// of the wrong size; `STATUS_WDF_PARENT_NOT_SPECIFIED` without attributes naming a parent;
/// kmdf-sim's (`STATUS_INVALID_DEVICE_REQUEST` for a parent not under a device, …).
extern "win64" fn wdf_timer_create(
    _globals: PWDF_DRIVER_GLOBALS,
    config: PWDF_TIMER_CONFIG,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    timer: *mut WDFTIMER,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfTimerCreate";
    guard(ROUTINE, || {
        if config.is_null() || timer.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        // SAFETY: the routine's contract: the driver's config for the call.
        let cfg: WDF_TIMER_CONFIG = unsafe { config.read_unaligned() };
        if cfg.Size as usize != size_of::<WDF_TIMER_CONFIG>() {
            return STATUS_INFO_LENGTH_MISMATCH;
        }
        let Some(callback) = cfg.EvtTimerFunc else {
            return Status::INVALID_PARAMETER.0;
        };
        // SAFETY: null or the driver's attributes for the call.
        let attributes = match unsafe { Attributes::read(attributes) } {
            Ok(a) => a,
            Err(status) => return status.0,
        };
        let Some(read) = attributes.filter(|a| a.parent.is_some()) else {
            return Status::WDF_PARENT_NOT_SPECIFIED.0;
        };
        let level = if read.execution_level == WdfExecutionLevelPassive {
            ExecutionLevel::Passive
        } else {
            ExecutionLevel::Dispatch
        };
        let pending = match objects::begin("WDFTIMER", attributes) {
            Ok(p) => p,
            Err(status) => return status.0,
        };
        let handle = pending.handle();
        let name = format!("WDFTIMER {handle:#x}");
        let sim_config = TimerConfig::periodic(&name, cfg.Period).execution_level(level);
        let attrs = pending.sim_attributes(ROUTINE, None);
        let created = Timer::create(sim_config, attrs, move |_| {
            // SAFETY: the driver's `EVT_WDF_TIMER` with its live WDFTIMER (deleting the timer
            // waits for a running callback).
            unsafe { callback(handle as WDFTIMER) };
        });
        let sim_timer = match created {
            Ok(t) => t,
            Err(status) => return status.0,
        };
        let Some(sim) = sim_timer.object().cloned() else {
            return Status::INVALID_DEVICE_STATE.0;
        };
        pending.finish(sim, TimerPayload(sim_timer));
        // SAFETY: the driver's out parameter (checked non-null above).
        unsafe { timer.write(handle as WDFTIMER) };
        STATUS_SUCCESS
    })
}

fn timer_of(handle: WDFTIMER, routine: &str) -> Arc<Object> {
    objects::expect_kind(handle as usize, "WDFTIMER", routine)
}

/// `WdfTimerStart`: `DueTime` negative is relative (100-ns units), positive absolute, 0 at
/// once. TRUE if the timer was already queued (its due time is replaced).
extern "win64" fn wdf_timer_start(
    _globals: PWDF_DRIVER_GLOBALS,
    timer: WDFTIMER,
    due: LONGLONG,
) -> BOOLEAN {
    guard("WdfTimerStart", || {
        let object = timer_of(timer, "WdfTimerStart");
        let now = machine("WdfTimerStart").now_ticks();
        // SAFETY: `due` is a local i64.
        let due = unsafe { sync::timeout_of(&raw const due, now) }.unwrap_or_default();
        object
            .payload::<TimerPayload>()
            .is_some_and(|p| p.0.start(due))
            .into()
    })
}

/// `WdfTimerStop`: TRUE if the timer was queued; with `Wait`, also waits for a pending or
/// running `EvtTimerFunc` (`PASSIVE_LEVEL`, not from the timer's own callback: the verifier
/// reports both).
extern "win64" fn wdf_timer_stop(
    _globals: PWDF_DRIVER_GLOBALS,
    timer: WDFTIMER,
    wait: BOOLEAN,
) -> BOOLEAN {
    guard("WdfTimerStop", || {
        let object = timer_of(timer, "WdfTimerStop");
        object
            .payload::<TimerPayload>()
            .is_some_and(|p| p.0.stop(wait != 0))
            .into()
    })
}

/// `WdfTimerGetParentObject`.
extern "win64" fn wdf_timer_get_parent_object(
    _globals: PWDF_DRIVER_GLOBALS,
    timer: WDFTIMER,
) -> WDFOBJECT {
    guard("WdfTimerGetParentObject", || {
        workitem::parent_handle(&timer_of(timer, "WdfTimerGetParentObject"))
    })
}

#[cfg(test)]
mod tests {
    use core::sync::atomic::{AtomicUsize, Ordering};
    use core::time::Duration;

    use super::super::bindings::status::STATUS_INFO_LENGTH_MISMATCH;
    use super::super::device::testing::{attributes, create_device, TestDriver};
    use super::*;

    static FIRED: AtomicUsize = AtomicUsize::new(0);

    extern "win64" fn on_timer(_timer: WDFTIMER) {
        assert_eq!(kmdf_sim::exec::current_irql(), kmdf_sim::Irql::Dispatch);
        FIRED.fetch_add(1, Ordering::SeqCst);
    }

    fn config(period: u32) -> WDF_TIMER_CONFIG {
        // SAFETY: plain data (WDF_TIMER_CONFIG_INIT zeroes it).
        let mut c: WDF_TIMER_CONFIG = unsafe { core::mem::zeroed() };
        c.Size = u32::try_from(size_of::<WDF_TIMER_CONFIG>()).unwrap();
        c.EvtTimerFunc = Some(on_timer);
        c.Period = period;
        c.AutomaticSerialization = 1;
        c
    }

    #[test]
    fn a_timer_fires_on_the_virtual_clock_and_goes_with_its_device() {
        assert_eq!(size_of::<WDF_TIMER_CONFIG>(), 40);
        let driver = TestDriver::load("hdevtimer", create_device);
        let (node, device) = driver.plug_in();
        let g = driver.globals;
        let bound = driver.machine.enter();
        let mut timer: WDFTIMER = core::ptr::null_mut();
        let mut c = config(0);
        // No parent, a wrong size, no callback, a passive periodic timer.
        assert_eq!(
            wdf_timer_create(g, &raw mut c, core::ptr::null_mut(), &raw mut timer),
            Status::WDF_PARENT_NOT_SPECIFIED.0
        );
        let mut a = attributes(Some(device));
        c.Size -= 8;
        assert_eq!(
            wdf_timer_create(g, &raw mut c, &raw mut a, &raw mut timer),
            STATUS_INFO_LENGTH_MISMATCH
        );
        c = config(0);
        c.EvtTimerFunc = None;
        assert_eq!(
            wdf_timer_create(g, &raw mut c, &raw mut a, &raw mut timer),
            Status::INVALID_PARAMETER.0
        );
        let mut passive = attributes(Some(device));
        passive.ExecutionLevel = WdfExecutionLevelPassive;
        c = config(10);
        assert_eq!(
            wdf_timer_create(g, &raw mut c, &raw mut passive, &raw mut timer),
            Status::INVALID_PARAMETER.0
        );
        c = config(0);
        assert_eq!(
            wdf_timer_create(g, &raw mut c, &raw mut a, &raw mut timer),
            STATUS_SUCCESS
        );
        assert_eq!(wdf_timer_get_parent_object(g, timer) as usize, device);
        // Relative due times, a restart while queued, a stop.
        assert_eq!(wdf_timer_start(g, timer, -100_000), 0);
        assert_eq!(wdf_timer_start(g, timer, -100_000), 1);
        driver.machine.advance(Duration::from_millis(10));
        assert_eq!(FIRED.load(Ordering::SeqCst), 1);
        assert_eq!(wdf_timer_start(g, timer, -100_000), 0);
        assert_eq!(wdf_timer_stop(g, timer, 1), 1);
        driver.machine.advance(Duration::from_millis(20));
        assert_eq!(FIRED.load(Ordering::SeqCst), 1);
        assert_eq!(wdf_timer_stop(g, timer, 0), 0);
        // A started timer is deleted with its device.
        assert_eq!(wdf_timer_start(g, timer, -100_000), 0);
        drop(bound);
        {
            let _bound = driver.machine.enter();
            node.remove().unwrap();
        }
        assert!(objects::get(timer as usize).is_none());
        driver.machine.advance(Duration::from_millis(20));
        assert_eq!(FIRED.load(Ordering::SeqCst), 1);
        assert_eq!(driver.machine.verdict().map(|_| ()), Ok(()));
    }
}
