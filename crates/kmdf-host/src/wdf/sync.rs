//! Locks: `WdfSpinLock…` and `WdfWaitLock…`, on kmdf-sim's [`SpinLock`] and [`WaitLock`].
//!
//! A `WDFSPINLOCK` / `WDFWAITLOCK` is a kmdf-sim object of that kind (default parent: the
//! driver, as KMDF documents) whose payload is the kmdf-sim lock: `WdfSpinLockAcquire` raises
//! the thread to `DISPATCH_LEVEL` (the IRQL the driver reads through CR8 is kmdf-sim's) and
//! `WdfSpinLockRelease` restores the saved IRQL; `WdfWaitLockAcquire` waits on the virtual clock
//! and answers `STATUS_TIMEOUT` when its timeout passes. The verifier sees every acquire and
//! release (recursion, release by another thread, a lock held when a callback returns).

use core::time::Duration;

use kmdf_sim::exec::{SpinLock, WaitLock};
use kmdf_sim::object::WdfObject;
use kmdf_sim::Status;

use super::bindings::status::STATUS_SUCCESS;
use super::bindings::{
    NTSTATUS, PLONGLONG, PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES, WDFSPINLOCK, WDFWAITLOCK,
};
use super::objects::{self, Attributes};
use super::{driver, wdf_exports};
use crate::host::{guard, machine};

wdf_exports! {
    WdfSpinLockCreate => wdf_spin_lock_create: PFN_WDFSPINLOCKCREATE,
    WdfSpinLockAcquire => wdf_spin_lock_acquire: PFN_WDFSPINLOCKACQUIRE,
    WdfSpinLockRelease => wdf_spin_lock_release: PFN_WDFSPINLOCKRELEASE,
    WdfWaitLockCreate => wdf_wait_lock_create: PFN_WDFWAITLOCKCREATE,
    WdfWaitLockAcquire => wdf_wait_lock_acquire: PFN_WDFWAITLOCKACQUIRE,
    WdfWaitLockRelease => wdf_wait_lock_release: PFN_WDFWAITLOCKRELEASE,
}

/// The payload of a `WDFSPINLOCK`.
#[derive(Debug)]
pub struct SpinLockPayload(pub SpinLock);

/// The payload of a `WDFWAITLOCK`.
#[derive(Debug)]
pub struct WaitLockPayload(pub WaitLock);

/// Creates a lock object of `kind` (parent: the attributes' or the driver) whose payload
/// `make` builds from the machine and the lock's trace name.
fn create<P: Send + Sync + 'static>(
    globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    out: *mut usize,
    kind: &'static str,
    routine: &'static str,
    make: impl FnOnce(&kmdf_sim::Machine, &str) -> P,
) -> NTSTATUS {
    if out.is_null() {
        return Status::INVALID_PARAMETER.0;
    }
    let driver = driver::of_globals(globals, routine);
    // SAFETY: the routine's contract: null or the driver's attributes for the call.
    let attributes = match unsafe { Attributes::read(attributes) } {
        Ok(a) => a,
        Err(status) => return status.0,
    };
    let pending = match objects::begin(kind, attributes) {
        Ok(p) => p,
        Err(status) => return status.0,
    };
    let machine = machine(routine);
    let attrs = pending.sim_attributes(routine, Some(driver.sim.object()));
    let sim = match WdfObject::create(&machine, kind, attrs) {
        Ok(sim) => sim,
        Err(status) => return status.0,
    };
    let payload = make(&machine, sim.name());
    let created = pending.finish(sim, payload);
    // SAFETY: `out` is the driver's out parameter (checked non-null above).
    unsafe { out.write(created.handle()) };
    STATUS_SUCCESS
}

/// `WdfSpinLockCreate`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a null out pointer; the attributes' errors; kmdf-sim's
/// object creation errors (fault injection, a deleted parent).
extern "win64" fn wdf_spin_lock_create(
    globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    lock: *mut WDFSPINLOCK,
) -> NTSTATUS {
    guard("WdfSpinLockCreate", || {
        create(
            globals,
            attributes,
            lock.cast(),
            "WDFSPINLOCK",
            "WdfSpinLockCreate",
            |machine, name| SpinLockPayload(SpinLock::new(machine, name)),
        )
    })
}

fn spin_lock(handle: WDFSPINLOCK, routine: &str) -> std::sync::Arc<objects::Object> {
    objects::expect_kind(handle as usize, "WDFSPINLOCK", routine)
}

/// `WdfSpinLockAcquire`: raises to `DISPATCH_LEVEL` and acquires.
extern "win64" fn wdf_spin_lock_acquire(_globals: PWDF_DRIVER_GLOBALS, lock: WDFSPINLOCK) {
    guard("WdfSpinLockAcquire", || {
        let object = spin_lock(lock, "WdfSpinLockAcquire");
        if let Some(p) = object.payload::<SpinLockPayload>() {
            p.0.acquire();
        }
    });
}

/// `WdfSpinLockRelease`: releases and restores the IRQL saved by the acquire.
extern "win64" fn wdf_spin_lock_release(_globals: PWDF_DRIVER_GLOBALS, lock: WDFSPINLOCK) {
    guard("WdfSpinLockRelease", || {
        let object = spin_lock(lock, "WdfSpinLockRelease");
        if let Some(p) = object.payload::<SpinLockPayload>() {
            p.0.release();
        }
    });
}

/// `WdfWaitLockCreate`.
///
/// Errors: as `WdfSpinLockCreate`.
extern "win64" fn wdf_wait_lock_create(
    globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    lock: *mut WDFWAITLOCK,
) -> NTSTATUS {
    guard("WdfWaitLockCreate", || {
        create(
            globals,
            attributes,
            lock.cast(),
            "WDFWAITLOCK",
            "WdfWaitLockCreate",
            |machine, name| WaitLockPayload(WaitLock::new(machine, name)),
        )
    })
}

fn wait_lock(handle: WDFWAITLOCK, routine: &str) -> std::sync::Arc<objects::Object> {
    objects::expect_kind(handle as usize, "WDFWAITLOCK", routine)
}

/// A `LONGLONG` timeout as KMDF reads it: null waits forever, 0 only tries, negative is
/// relative (100-ns units), positive an absolute time (the host's system time counts from boot
/// like the interrupt time, `now_ticks`).
///
/// # Safety
/// `timeout` is null or points to a readable `i64`.
pub(crate) unsafe fn timeout_of(timeout: *const i64, now_ticks: u64) -> Option<Duration> {
    if timeout.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    let t = unsafe { timeout.read_unaligned() };
    let ticks = match t {
        0 => 0,
        t if t < 0 => t.unsigned_abs(),
        t => t.cast_unsigned().saturating_sub(now_ticks),
    };
    Some(Duration::from_nanos(ticks.saturating_mul(100)))
}

/// `WdfWaitLockAcquire`: `STATUS_SUCCESS`, or `STATUS_TIMEOUT` when the timeout passed first
/// (a zero timeout only tries). `PASSIVE_LEVEL` (below `DISPATCH_LEVEL` with a zero timeout):
/// above that the verifier reports the call and it only tries.
extern "win64" fn wdf_wait_lock_acquire(
    _globals: PWDF_DRIVER_GLOBALS,
    lock: WDFWAITLOCK,
    timeout: PLONGLONG,
) -> NTSTATUS {
    guard("WdfWaitLockAcquire", || {
        let object = wait_lock(lock, "WdfWaitLockAcquire");
        let now = machine("WdfWaitLockAcquire").now_ticks();
        // SAFETY: the routine's contract: `Timeout` is null or points to a LONGLONG.
        let timeout = unsafe { timeout_of(timeout, now) };
        object
            .payload::<WaitLockPayload>()
            .map_or(Status::INVALID_PARAMETER, |p| p.0.acquire(timeout))
            .0
    })
}

/// `WdfWaitLockRelease`.
extern "win64" fn wdf_wait_lock_release(_globals: PWDF_DRIVER_GLOBALS, lock: WDFWAITLOCK) {
    guard("WdfWaitLockRelease", || {
        let object = wait_lock(lock, "WdfWaitLockRelease");
        if let Some(p) = object.payload::<WaitLockPayload>() {
            p.0.release();
        }
    });
}

#[cfg(test)]
mod tests {
    use kmdf_sim::exec::{current_irql, Irql};

    use super::super::bindings::status::STATUS_TIMEOUT;
    use super::super::device::testing::{attributes, create_device, TestDriver};
    use super::*;

    #[test]
    fn a_timeout_reads_as_kmdf_reads_it() {
        let read = |t: i64, now: u64| {
            // SAFETY: a local i64.
            unsafe { timeout_of(&raw const t, now) }
        };
        // SAFETY: null is allowed.
        assert_eq!(unsafe { timeout_of(core::ptr::null(), 0) }, None);
        assert_eq!(read(0, 5), Some(Duration::ZERO));
        assert_eq!(read(-10_000, 5), Some(Duration::from_millis(1)));
        assert_eq!(read(30_000, 10_000), Some(Duration::from_millis(2)));
        assert_eq!(read(3, 10), Some(Duration::ZERO));
    }

    #[test]
    fn spin_and_wait_locks_raise_the_irql_time_out_and_are_deleted_with_the_driver() {
        let driver = TestDriver::load("hdevlocks", create_device);
        let g = driver.globals;
        let bound = driver.machine.enter();
        assert_eq!(
            wdf_spin_lock_create(g, core::ptr::null_mut(), core::ptr::null_mut()),
            Status::INVALID_PARAMETER.0
        );
        let mut bad = attributes(None);
        bad.Size += 1;
        let mut spin: WDFSPINLOCK = core::ptr::null_mut();
        assert_eq!(
            wdf_spin_lock_create(g, &raw mut bad, &raw mut spin),
            super::super::bindings::status::STATUS_INFO_LENGTH_MISMATCH
        );
        assert_eq!(
            wdf_spin_lock_create(g, core::ptr::null_mut(), &raw mut spin),
            STATUS_SUCCESS
        );
        assert_eq!(current_irql(), Irql::Passive);
        wdf_spin_lock_acquire(g, spin);
        assert_eq!(current_irql(), Irql::Dispatch);
        wdf_spin_lock_release(g, spin);
        assert_eq!(current_irql(), Irql::Passive);

        let mut wait: WDFWAITLOCK = core::ptr::null_mut();
        assert_eq!(
            wdf_wait_lock_create(g, core::ptr::null_mut(), &raw mut wait),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_wait_lock_acquire(g, wait, core::ptr::null_mut()),
            STATUS_SUCCESS
        );
        assert_eq!(current_irql(), Irql::Passive);
        let (machine, handle, globals) = (driver.machine.clone(), wait as usize, g as usize);
        let try_other = move || {
            let machine = machine.clone();
            std::thread::spawn(move || {
                let _bound = machine.enter();
                let mut zero = 0_i64;
                wdf_wait_lock_acquire(
                    globals as PWDF_DRIVER_GLOBALS,
                    handle as WDFWAITLOCK,
                    &raw mut zero,
                )
            })
            .join()
            .unwrap()
        };
        assert_eq!(try_other.clone()(), STATUS_TIMEOUT);
        wdf_wait_lock_release(g, wait);
        assert_eq!(try_other(), STATUS_SUCCESS);
        drop(bound);
        let loaded = kmdf_sim::driver::Driver::loaded(&driver.machine, "hdevlocks").unwrap();
        {
            let _bound = driver.machine.enter();
            loaded.unload().unwrap();
        }
        assert!(objects::get(spin as usize).is_none());
        // The other thread still holds the wait lock: no verifier rule covers a lock held at
        // deletion, so the verdict is clean.
        assert_eq!(driver.machine.verdict().map(|_| ()), Ok(()));
    }
}
