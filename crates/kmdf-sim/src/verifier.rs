//! The verifier: a Driver-Verifier-style checker of driver behaviour.
//!
//! Simulator routines check the rules of the KMDF and WDM documentation as they run (IRQL limits
//! from each routine's and callback's reference page, wait rules from KeWaitForSingleObject, lock
//! ownership, …). A broken rule is a [`Violation`]: which [`Rule`], which driver (the thread's
//! current driver, see [`DriverScope`]), which object, and a sentence saying what is wrong.
//! Its `Display` reads like a bug check:
//!
//! ```text
//! DRIVER_VERIFIER_DETECTED_VIOLATION: WaitAtDispatch: driver 'fx2', object 'ready': KeWaitForSingleObject with a nonzero timeout called at DISPATCH_LEVEL; only a zero timeout is allowed at DISPATCH_LEVEL
//! ```
//!
//! Modes ([`VerifierMode`]): `Panic` (default) records the violation and then panics at the point
//! of the bug, like a bug check — in a simulator thread the panic is caught and the machine is
//! marked crashed, so the test's next `settle`/`advance` panics with the same text. `Record` only
//! records; tests that prove a rule fires read [`Verifier::violations`]. After a violation in
//! Record mode the offending call takes a documented safe fallback (usually: no effect).
//!
//! [`invoke_callback`] is how the whole simulator calls into a driver: it attributes the call,
//! traces it, and checks on return that the IRQL was restored and no new lock is still held.
//!
//! ## The power watchdog (bug check 0x9F)
//!
//! In the kernel a PnP or power transition that a driver blocks — a request it never completes
//! while the framework waits for it before leaving D0 or removing the device — ends in bug check
//! 0x9F, `DRIVER_POWER_STATE_FAILURE` (parameter 1 = 0x3: "a device object has been blocking an IRP
//! for too long a time", [Bug Check 0x9F: DRIVER_POWER_STATE_FAILURE]). The simulator bounds the
//! framework's waits of a transition (the `EvtIoStop` wait of power-down and removal, and the
//! `WdfIoQueue…Synchronously` waits) by [`Verifier::power_watchdog`] of **virtual** time, default
//! [`DEFAULT_POWER_WATCHDOG`] (the page does not document Windows' timeout, which is minutes; ten
//! minutes is well above any real transition and is reached in no real time: see below). A wait
//! that reaches it is a [`Rule::PowerStateFailure`] violation naming the transition and what it
//! waits for — e.g. `EvtIoStop(Purge) of queue 'q' (device removal) … waiting for WDFREQUEST #12
//! (IRP_MJ_DEVICE_CONTROL, IOCTL 0x00220004) taken in EvtIoDeviceControl from queue 'q'` — printed
//! as `DRIVER_POWER_STATE_FAILURE (0x9F): PowerStateFailure: …`. In Record mode the transition then
//! goes on as if the wait had ended.
//!
//! Such a wait never hangs a test: while a thread waits under the watchdog, the clock of a
//! [`ClockMode::Manual`](crate::exec::ClockMode::Manual) machine advances by itself whenever
//! every bound thread is blocked (as [`ClockMode::AutoAdvance`](crate::exec::ClockMode) always
//! does) — the machine could not go on otherwise — so timers the driver relies on still fire in
//! order, and a stuck wait reaches the bound after microseconds of real time.
//!
//! [Bug Check 0x9F: DRIVER_POWER_STATE_FAILURE]: https://learn.microsoft.com/en-us/windows-hardware/drivers/debugger/bug-check-0x9f--driver-power-state-failure

use core::fmt;
use core::time::Duration;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::exec::clock::{duration_to_ticks, ticks_to_duration};

use crate::exec::context::{self, DriverScope};
use crate::trace::{Trace, TraceKind};

/// A rule the verifier checks. New rules are added by later layers; match with a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// A routine was called above its maximum IRQL (e.g. a PASSIVE-only routine at DISPATCH).
    IrqlTooHigh,
    /// KeRaiseIrql to a lower level or KeLowerIrql to a higher one.
    InvalidIrqlTransition,
    /// A wait with a nonzero (or no) timeout at DISPATCH_LEVEL.
    WaitAtDispatch,
    /// A lock was released by a thread other than the one that acquired it.
    LockReleasedByOtherThread,
    /// A lock was released that is not held.
    LockNotHeld,
    /// A thread acquired a lock it already holds (deadlock on real hardware).
    LockRecursiveAcquire,
    /// A driver callback returned while holding a lock it acquired.
    LockHeldOnCallbackReturn,
    /// A driver callback returned at a different IRQL than it was called at.
    IrqlNotRestoredOnCallbackReturn,
    /// A request was completed twice.
    RequestCompletedTwice,
    /// A request was still pending when its queue/device was torn down.
    RequestPendingAtTeardown,
    /// A deleted object was used.
    DeletedObjectUsed,
    /// Pool allocations were still outstanding at driver unload.
    PoolLeak,
    /// WdfTimerStop(Wait = TRUE) from the timer's own EvtTimerFunc (a deadlock on real hardware).
    TimerStopWaitInOwnCallback,
    /// The driver dropped its last handle to a request it owns without completing, forwarding,
    /// sending or requeuing it (and without a cancel routine that could): the request can never
    /// complete.
    RequestDroppedWithoutCompletion,
    /// A PnP/power transition waited longer than the power watchdog for the driver (bug check
    /// 0x9F, `DRIVER_POWER_STATE_FAILURE`; see the [module docs](self)).
    PowerStateFailure,
}

impl Rule {
    /// The rule's name as printed in violations.
    pub fn name(self) -> &'static str {
        match self {
            Rule::IrqlTooHigh => "IrqlTooHigh",
            Rule::InvalidIrqlTransition => "InvalidIrqlTransition",
            Rule::WaitAtDispatch => "WaitAtDispatch",
            Rule::LockReleasedByOtherThread => "LockReleasedByOtherThread",
            Rule::LockNotHeld => "LockNotHeld",
            Rule::LockRecursiveAcquire => "LockRecursiveAcquire",
            Rule::LockHeldOnCallbackReturn => "LockHeldOnCallbackReturn",
            Rule::IrqlNotRestoredOnCallbackReturn => "IrqlNotRestoredOnCallbackReturn",
            Rule::RequestCompletedTwice => "RequestCompletedTwice",
            Rule::RequestPendingAtTeardown => "RequestPendingAtTeardown",
            Rule::DeletedObjectUsed => "DeletedObjectUsed",
            Rule::PoolLeak => "PoolLeak",
            Rule::TimerStopWaitInOwnCallback => "TimerStopWaitInOwnCallback",
            Rule::RequestDroppedWithoutCompletion => "RequestDroppedWithoutCompletion",
            Rule::PowerStateFailure => "PowerStateFailure",
        }
    }

    /// The bug check a violation of the rule reads like: `DRIVER_POWER_STATE_FAILURE (0x9F)` for
    /// [`Rule::PowerStateFailure`], else `DRIVER_VERIFIER_DETECTED_VIOLATION`.
    pub fn bug_check(self) -> &'static str {
        match self {
            Rule::PowerStateFailure => "DRIVER_POWER_STATE_FAILURE (0x9F)",
            _ => "DRIVER_VERIFIER_DETECTED_VIOLATION",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One detected violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule broken.
    pub rule: Rule,
    /// The driver that broke it (`<no driver>` if the thread ran no driver code).
    pub driver: String,
    /// The object or routine concerned.
    pub object: String,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: driver '{}', object '{}': {}",
            self.rule.bug_check(),
            self.rule,
            self.driver,
            self.object,
            self.message
        )
    }
}

/// What the verifier does on a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VerifierMode {
    /// Record, then panic with the bug-check text (the default).
    #[default]
    Panic,
    /// Record only.
    Record,
}

/// The verifier of one machine.
#[derive(Debug)]
pub struct Verifier {
    panic_mode: AtomicBool,
    violations: Mutex<Vec<Violation>>,
    trace: Arc<Trace>,
    /// The power watchdog in ticks of virtual time; 0 = off.
    power_watchdog: AtomicU64,
}

/// The driver name used when the thread runs no driver code.
pub const NO_DRIVER: &str = "<no driver>";

/// The default [power watchdog](self#the-power-watchdog-bug-check-0x9f): ten minutes of virtual
/// time.
pub const DEFAULT_POWER_WATCHDOG: Duration = Duration::from_mins(10);

impl Verifier {
    pub(crate) fn new(mode: VerifierMode, trace: Arc<Trace>) -> Self {
        Verifier {
            panic_mode: AtomicBool::new(mode == VerifierMode::Panic),
            violations: Mutex::new(Vec::new()),
            trace,
            power_watchdog: AtomicU64::new(duration_to_ticks(DEFAULT_POWER_WATCHDOG)),
        }
    }

    /// How much virtual time a PnP/power transition may wait for a driver before it is a
    /// [`Rule::PowerStateFailure`] (see the [module docs](self#the-power-watchdog-bug-check-0x9f));
    /// `None` when the watchdog is off.
    pub fn power_watchdog(&self) -> Option<Duration> {
        match self.power_watchdog.load(Ordering::Relaxed) {
            0 => None,
            ticks => Some(ticks_to_duration(ticks)),
        }
    }

    /// Sets the power watchdog (`None` turns it off: transitions wait forever, as before). Waits
    /// already under way keep the bound they started with.
    pub fn set_power_watchdog(&self, bound: Option<Duration>) {
        let ticks = bound.map_or(0, |d| duration_to_ticks(d).max(1));
        self.power_watchdog.store(ticks, Ordering::Relaxed);
    }

    pub(crate) fn power_watchdog_ticks(&self) -> Option<u64> {
        match self.power_watchdog.load(Ordering::Relaxed) {
            0 => None,
            ticks => Some(ticks),
        }
    }

    /// The current mode.
    pub fn mode(&self) -> VerifierMode {
        if self.panic_mode.load(Ordering::Relaxed) {
            VerifierMode::Panic
        } else {
            VerifierMode::Record
        }
    }

    /// Changes the mode.
    pub fn set_mode(&self, mode: VerifierMode) {
        self.panic_mode
            .store(mode == VerifierMode::Panic, Ordering::Relaxed);
    }

    /// Reports a violation by the calling thread's current driver.
    ///
    /// # Panics
    ///
    /// In Panic mode, always (that is the bug check), after recording.
    pub fn report(&self, rule: Rule, object: &str, message: &str) {
        let driver = context::current_driver().unwrap_or_else(|| NO_DRIVER.to_owned());
        self.report_for(rule, &driver, object, message);
    }

    /// Reports a violation by `driver` (e.g. pool leaks found at its unload).
    ///
    /// # Panics
    ///
    /// In Panic mode (that is the bug check), after recording — unless the thread is already
    /// unwinding from a panic (a violation found by a destructor then): a second panic would
    /// abort the process, so the violation is only recorded.
    pub fn report_for(&self, rule: Rule, driver: &str, object: &str, message: &str) {
        let v = Violation {
            rule,
            driver: driver.to_owned(),
            object: object.to_owned(),
            message: message.to_owned(),
        };
        self.trace
            .record_for(TraceKind::Note, Some(driver), object, &v.to_string());
        let text = v.to_string();
        self.violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(v);
        #[allow(
            clippy::manual_assert,
            reason = "a bug check is a deliberate panic, not an assertion"
        )]
        if self.mode() == VerifierMode::Panic && !std::thread::panicking() {
            panic!("{text}");
        }
    }

    /// Every violation recorded so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The violations of `rule`.
    pub fn violations_of(&self, rule: Rule) -> Vec<Violation> {
        self.violations()
            .into_iter()
            .filter(|v| v.rule == rule)
            .collect()
    }

    /// Removes and returns every recorded violation.
    pub fn take_violations(&self) -> Vec<Violation> {
        std::mem::take(
            &mut *self
                .violations
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// Reports a violation on the calling thread's machine (see [`Verifier::report`]). A thread bound
/// to no machine has no verifier to record into: the violation panics with the bug-check text.
///
/// # Panics
///
/// In Panic mode, or when the thread is bound to no machine.
pub fn report(rule: Rule, object: &str, message: &str) {
    if let Some(verifier) = current() {
        verifier.report(rule, object, message);
    } else {
        let v = Violation {
            rule,
            driver: context::current_driver().unwrap_or_else(|| NO_DRIVER.to_owned()),
            object: object.to_owned(),
            message: message.to_owned(),
        };
        panic!("{v}");
    }
}

/// The verifier of the machine the calling thread is bound to.
pub(crate) fn current() -> Option<Arc<Verifier>> {
    context::current_verifier().and_then(|v| v.downcast::<Verifier>().ok())
}

/// Calls into a driver: the one way the simulator invokes a driver callback.
///
/// Runs `f` on behalf of `driver` (a [`DriverScope`]), records a [`TraceKind::Callback`] event
/// (`object`, `callback`) on the calling thread's machine, and when `f` returns checks that
///
/// * the IRQL is the one at entry — else [`Rule::IrqlNotRestoredOnCallbackReturn`] (the IRQL is
///   then put back, so the framework can continue);
/// * the thread holds no lock it did not hold at entry — else [`Rule::LockHeldOnCallbackReturn`]
///   naming each lock.
///
/// # Panics
///
/// In Panic mode, on a violation (the bug check). Panics from `f` propagate.
pub fn invoke_callback<R>(driver: &str, object: &str, callback: &str, f: impl FnOnce() -> R) -> R {
    let scope = DriverScope::enter(driver);
    if let Some(verifier) = current() {
        verifier.trace.record(TraceKind::Callback, object, callback);
    }
    let entry_irql = context::irql();
    let entry_locks: Vec<u64> = context::held_locks();
    let result = f();
    let exit_irql = context::irql();
    let leaked: Vec<String> = context::held_locks()
        .into_iter()
        .filter(|id| !entry_locks.contains(id))
        .map(context::lock_description)
        .collect();
    if exit_irql != entry_irql {
        context::set_irql(entry_irql);
        report(
            Rule::IrqlNotRestoredOnCallbackReturn,
            object,
            &format!(
                "{callback} returned at {exit_irql} but was called at {entry_irql}; \
                 a callback must restore the IRQL before returning"
            ),
        );
    }
    if !leaked.is_empty() {
        report(
            Rule::LockHeldOnCallbackReturn,
            object,
            &format!(
                "{callback} returned while still holding {}; every lock acquired in a \
                 callback must be released before it returns",
                leaked.join(", ")
            ),
        );
    }
    drop(scope);
    result
}
