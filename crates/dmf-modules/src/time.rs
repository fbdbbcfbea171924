//! # DMF_Time
//!
//! ## Summary
//!
//! Tick count and elapsed-time helpers on the platform clock, and the wall clock: system time
//! (UTC) and local time.
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
//! | `DMF_Time_SystemTimeGet` | [`Time::system_time_get`] |
//! | `DMF_Time_LocalTimeGet` | [`Time::local_time_get`] |
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
//! - [`Time::system_time_get`] returns what `DMF_Time_SystemTimeGet` writes to its
//!   `LARGE_INTEGER`: the system time (UTC) in 100-ns intervals since 1601-01-01, from
//!   `KeQuerySystemTimePrecise`. [`Time::local_time_get`] returns C DMF's `DMF_TIME_FIELDS`
//!   ([`TimeFields`]: year, month, day, hour, minute, second, milliseconds, weekday with 0 =
//!   Sunday) of the local time: `ExSystemTimeToLocalTime` of that system time, split by
//!   `RtlTimeToTimeFields`, as C DMF does in kernel mode. C DMF's Methods return nothing; ours
//!   return `NtResult` only for the closed-Module case.
//! - On the simulator the wall clock is the machine's: it starts at a fixed date, moves with the
//!   virtual clock, and a test sets the date (`Machine::set_system_time_fields`) and the time zone
//!   (`Machine::set_time_zone_offset`).
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
//! // The wall clock: 2024-02-29 23:59:30 UTC, one hour ahead locally.
//! machine
//!     .set_system_time_fields(&kmdf_sim::exec::TimeFields {
//!         year: 2024, month: 2, day: 29, hour: 23, minute: 59, second: 30,
//!         ..Default::default()
//!     })
//!     .unwrap();
//! machine.set_time_zone_offset(60).unwrap();
//! let local = time.local_time_get()?;
//! assert_eq!((local.year, local.month, local.day, local.hour), (2024, 3, 1, 0));
//! assert_eq!(local.weekday, 5, "a Friday");
//! assert_eq!(time.system_time_get()?, machine.system_time());
//! # Ok::<(), NtStatus>(())
//! ```
//!
//! ## Category
//!
//! Driver Patterns.

use dmf_core::module::ModuleCallbacks;
use dmf_core::platform::contract::{PlatformClock, PlatformWallClock};
use dmf_core::platform::{Clock, WallClock};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

pub use dmf_core::platform::contract::TimeFields;

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

    /// `DMF_Time_SystemTimeGet`: the system time (UTC) in 100-ns intervals since 1601-01-01
    /// (`KeQuerySystemTimePrecise`).
    pub fn system_time_get(&self) -> NtResult<i64> {
        let _module = self.enter()?;
        Ok(WallClock::system_time())
    }

    /// `DMF_Time_LocalTimeGet`: the local time as calendar fields (`KeQuerySystemTimePrecise`,
    /// `ExSystemTimeToLocalTime`, `RtlTimeToTimeFields`).
    pub fn local_time_get(&self) -> NtResult<TimeFields> {
        let _module = self.enter()?;
        let local = WallClock::system_time_to_local_time(WallClock::system_time());
        Ok(WallClock::time_fields(local))
    }
}
