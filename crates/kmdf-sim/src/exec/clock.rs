//! The virtual clock.
//!
//! Every machine has its own clock that counts **100-ns ticks since boot**, the unit of KMDF due
//! times and `KeQueryInterruptTime`. Nothing in the simulator reads the wall clock except in
//! [`ClockMode::RealTime`]; everywhere else time moves only when the machine's scheduler moves it:
//!
//! * [`ClockMode::Manual`] — time moves only when a test calls [`Machine::advance`]. `advance(d)`
//!   first settles the machine, then fires every deadline up to `now + d` in time order (timer
//!   expiries and timed-out waits), settling after each, and ends exactly at `now + d`. One
//!   exception: while a PnP/power transition waits for a driver under the verifier's power
//!   watchdog, the clock advances as in AutoAdvance — then every bound thread is blocked and
//!   nothing else could end the wait (see [`crate::verifier`], "The power watchdog").
//! * [`ClockMode::AutoAdvance`] — like Manual, and in addition, when every thread bound to the
//!   machine (entered test threads and system threads) is blocked in a simulator wait, the DPC and
//!   work queues are empty and something has a deadline, time jumps to the earliest deadline (the
//!   model is tokio's paused clock). A ten-minute sleep finishes in microseconds.
//! * [`ClockMode::RealTime`] — the same code against the wall clock, for demos.
//!
//! Timer due times are relative (a negative `DueTime` in `WdfTimerStart`); absolute due times
//! are not modelled because the virtual clock never jumps backwards or forwards outside the
//! scheduler's control.
//!
//! [`Machine::advance`]: crate::Machine::advance

use core::time::Duration;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// 100-ns ticks in one millisecond.
pub const TICKS_PER_MILLISECOND: u64 = 10_000;
/// 100-ns ticks in one second.
pub const TICKS_PER_SECOND: u64 = 10_000_000;

/// How a machine's clock moves. See the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClockMode {
    /// Time moves only in [`Machine::advance`](crate::Machine::advance). The default.
    #[default]
    Manual,
    /// Time also jumps to the earliest deadline whenever every bound thread is blocked.
    AutoAdvance,
    /// Time is the wall clock since the machine was built.
    RealTime,
}

/// Converts a duration to 100-ns ticks, rounding up (a wait is never shorter than asked) and
/// saturating at `u64::MAX`.
pub fn duration_to_ticks(d: Duration) -> u64 {
    let nanos = d.as_nanos();
    let ticks = nanos.div_ceil(100);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Converts 100-ns ticks to a duration.
pub fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_secs(ticks / TICKS_PER_SECOND)
        + Duration::from_nanos((ticks % TICKS_PER_SECOND) * 100)
}

/// The clock of one machine. The virtual time is written only by the scheduler, under its lock;
/// anyone may read it without locking.
#[derive(Debug)]
pub(crate) struct Clock {
    mode: ClockMode,
    boot: Instant,
    now: AtomicU64,
}

impl Clock {
    pub(crate) fn new(mode: ClockMode) -> Self {
        Clock {
            mode,
            boot: Instant::now(),
            now: AtomicU64::new(0),
        }
    }

    pub(crate) fn mode(&self) -> ClockMode {
        self.mode
    }

    /// Ticks since boot.
    pub(crate) fn now(&self) -> u64 {
        match self.mode {
            ClockMode::RealTime => duration_to_ticks(self.boot.elapsed()),
            ClockMode::Manual | ClockMode::AutoAdvance => self.now.load(Ordering::Acquire),
        }
    }

    /// Moves virtual time forward to `ticks` (never backwards). Scheduler only.
    pub(crate) fn set(&self, ticks: u64) {
        self.now.fetch_max(ticks, Ordering::AcqRel);
    }

    /// Real time left until `deadline` (RealTime mode only).
    pub(crate) fn real_until(&self, deadline: u64) -> Duration {
        ticks_to_duration(deadline.saturating_sub(self.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_up() {
        assert_eq!(
            duration_to_ticks(Duration::from_millis(1)),
            TICKS_PER_MILLISECOND
        );
        assert_eq!(duration_to_ticks(Duration::from_nanos(1)), 1);
        assert_eq!(duration_to_ticks(Duration::MAX), u64::MAX);
        assert_eq!(ticks_to_duration(15_000), Duration::from_micros(1500));
    }
}
