//! Fault injection: make the Nth allocation or object creation fail.
//!
//! The simulator asks [`FaultInjector::should_fail`] at each *fault point* — every pool allocation
//! ([`FaultPoint::Allocation`], see [`Pool::allocate`](crate::pool::Pool::allocate)) and every WDF
//! object creation ([`FaultPoint::ObjectCreation`], asked by the object model). Counters are per
//! machine, so parallel machines do not disturb each other.
//!
//! [`FaultInjector::sweep`] proves every failure path of a piece of driver code: it runs the code
//! with the 1st, 2nd, 3rd, … call at a point failing, until a run completes without reaching the
//! armed call — by then every call site has been failed once.

use std::sync::{Arc, Mutex, PoisonError};

use crate::trace::{Trace, TraceKind};

/// Where a fault can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// A pool allocation (fails with `STATUS_INSUFFICIENT_RESOURCES`).
    Allocation,
    /// A WDF object creation (the object model decides the status).
    ObjectCreation,
}

impl FaultPoint {
    fn index(self) -> usize {
        match self {
            FaultPoint::Allocation => 0,
            FaultPoint::ObjectCreation => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct PointState {
    /// Calls since the point was last armed or reset.
    calls: u64,
    /// The call number (1-based, counted from arming) that fails.
    fail_at: Option<u64>,
    /// Failures injected since the point was last armed or reset.
    injected: u64,
}

/// Upper bound on the runs of a [`FaultInjector::sweep`].
pub const SWEEP_LIMIT: u64 = 100_000;

/// The fault injector of one machine.
#[derive(Debug)]
pub struct FaultInjector {
    points: Mutex<[PointState; 2]>,
    trace: Arc<Trace>,
}

impl FaultInjector {
    pub(crate) fn new(trace: Arc<Trace>) -> Self {
        FaultInjector {
            points: Mutex::new([PointState::default(); 2]),
            trace,
        }
    }

    fn with<R>(&self, point: FaultPoint, f: impl FnOnce(&mut PointState) -> R) -> R {
        let mut points = self.points.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut points[point.index()])
    }

    /// Arms `point`: counting restarts, and the `n`th call from now (1-based) fails, once.
    /// `n = 0` disarms.
    pub fn fail_nth(&self, point: FaultPoint, n: u64) {
        self.with(point, |p| {
            *p = PointState {
                calls: 0,
                fail_at: (n > 0).then_some(n),
                injected: 0,
            };
        });
    }

    /// Disarms `point` (calls keep being counted).
    pub fn disarm(&self, point: FaultPoint) {
        self.with(point, |p| p.fail_at = None);
    }

    /// Asked by the simulator at each fault point: true if this call must fail.
    pub fn should_fail(&self, point: FaultPoint) -> bool {
        let (fail, call) = self.with(point, |p| {
            p.calls += 1;
            let fail = p.fail_at == Some(p.calls);
            if fail {
                p.injected += 1;
            }
            (fail, p.calls)
        });
        if fail {
            self.trace.record(
                TraceKind::Note,
                "fault",
                &format!("injected failure of {point:?} call {call}"),
            );
        }
        fail
    }

    /// Calls at `point` since it was last armed.
    pub fn calls(&self, point: FaultPoint) -> u64 {
        self.with(point, |p| p.calls)
    }

    /// Failures injected at `point` since it was last armed.
    pub fn injected(&self, point: FaultPoint) -> u64 {
        self.with(point, |p| p.injected)
    }

    /// Runs `run(n)` with the `n`th call at `point` failing, for n = 1, 2, 3, … until a run
    /// completes without an injected failure (the code made fewer than n calls), and returns the
    /// number of runs (so `runs - 1` failure paths were exercised). Stops after [`SWEEP_LIMIT`]
    /// runs. The point is disarmed afterwards.
    pub fn sweep(&self, point: FaultPoint, mut run: impl FnMut(u64)) -> u64 {
        let mut n = 1;
        loop {
            self.fail_nth(point, n);
            run(n);
            let injected = self.injected(point);
            if injected == 0 || n >= SWEEP_LIMIT {
                self.disarm(point);
                return n;
            }
            n += 1;
        }
    }
}
