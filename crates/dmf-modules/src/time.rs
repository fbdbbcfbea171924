//! # DMF_Time
//!
//! ## Summary
//!
//! Tick count and elapsed-time helpers on the platform clock.
//!
//! ## Configuration
//!
//! None: create it with `Time::with(())`.
//!
//! ## Methods
//!
//! | C DMF | Rust |
//! |---|---|
//! | `DMF_Time_TickCountGet` | [`Time::tick_count_get`] |
//! | — | [`Time::tick_count_get_in_milliseconds`], [`Time::tick_count_get_in_nanoseconds`] |
//! | `DMF_Time_ElapsedTimeMillisecondsGet` | [`Time::elapsed_time_milliseconds_get`] |
//! | `DMF_Time_ElapsedTimeNanosecondsGet` | [`Time::elapsed_time_nanoseconds_get`] |
//!
//! All at `≤ DISPATCH_LEVEL`.
//!
//! ## Callbacks
//!
//! None.
//!
//! ## Remarks
//!
//! - A tick is [`TICK_NANOSECONDS`] (100 ns), the unit of `KeQueryInterruptTime` that the
//!   platform clock maps to; C DMF reads the performance counter, whose frequency varies. On the
//!   simulator the clock is the virtual clock.
//! - A start tick in the future is `STATUS_INVALID_PARAMETER`.
//! - `DMF_Time_SystemTimeGet` and `DMF_Time_LocalTimeGet` are not offered: the platform contract
//!   has no wall-clock (system) time yet.
//!
//! ## Example
//!
//! ```
//! use core::time::Duration;
//! use dmf_core::module::NoParent;
//! use dmf_core::NtStatus;
//! use dmf_modules::time::Time;
//!
//! let machine = kmdf_sim::Machine::new();
//! let _on = machine.enter();
//! let time = Time::with(()).create(&NoParent)?;
//! let start = time.tick_count_get()?;
//! machine.advance(Duration::from_millis(1_500));
//! assert_eq!(time.elapsed_time_milliseconds_get(start)?, 1_500);
//! assert_eq!(time.elapsed_time_nanoseconds_get(start)?, 1_500_000_000);
//! # Ok::<(), NtStatus>(())
//! ```
//!
//! ## Category
//!
//! Driver Patterns.

use dmf_core::module::ModuleCallbacks;
use dmf_core::platform::contract::PlatformClock;
use dmf_core::platform::Clock;
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

/// Nanoseconds per tick (100 ns, the unit of `KeQueryInterruptTime`).
pub const TICK_NANOSECONDS: i64 = 100;

/// The `DMF_Time` Module. See the [module documentation](self).
#[dmf_module(crate = ::dmf_core, config = (), open = Create, lock = Dispatch)]
pub struct Time;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Time {}

fn ticks_now() -> i64 {
    i64::try_from(Clock::now().as_nanos() / 100).unwrap_or(i64::MAX)
}

impl Time {
    /// `DMF_Time_TickCountGet`: the current tick count (100-ns units since boot).
    pub fn tick_count_get(&self) -> NtResult<i64> {
        let _module = self.enter()?;
        Ok(ticks_now())
    }

    /// The current tick count in milliseconds.
    pub fn tick_count_get_in_milliseconds(&self) -> NtResult<i64> {
        Ok(self.tick_count_get()? / (1_000_000 / TICK_NANOSECONDS))
    }

    /// The current tick count in nanoseconds (saturating).
    pub fn tick_count_get_in_nanoseconds(&self) -> NtResult<i64> {
        Ok(self.tick_count_get()?.saturating_mul(TICK_NANOSECONDS))
    }

    fn elapsed_ticks(&self, start_tick: i64) -> NtResult<i64> {
        let now = self.tick_count_get()?;
        if start_tick < 0 || start_tick > now {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        Ok(now - start_tick)
    }

    /// `DMF_Time_ElapsedTimeMillisecondsGet`: milliseconds since `start_tick` (a tick count from
    /// [`tick_count_get`](Self::tick_count_get)).
    pub fn elapsed_time_milliseconds_get(&self, start_tick: i64) -> NtResult<i64> {
        Ok(self.elapsed_ticks(start_tick)? / (1_000_000 / TICK_NANOSECONDS))
    }

    /// `DMF_Time_ElapsedTimeNanosecondsGet`: nanoseconds since `start_tick` (saturating).
    pub fn elapsed_time_nanoseconds_get(&self, start_tick: i64) -> NtResult<i64> {
        Ok(self
            .elapsed_ticks(start_tick)?
            .saturating_mul(TICK_NANOSECONDS))
    }
}
