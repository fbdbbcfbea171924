//! The machine's wall clock: system time, the time zone, and `TIME_FIELDS`.
//!
//! Windows keeps the *system time* as a count of 100-ns intervals since 1601-01-01 00:00 UTC
//! (`KeQuerySystemTimePrecise`, `KeQuerySystemTime`), the *local time* as the system time minus
//! the time-zone bias (`ExSystemTimeToLocalTime`), and splits either into calendar fields with
//! `RtlTimeToTimeFields` (Gregorian calendar, weekday 0 = Sunday). On a machine the system
//! time is a settable start plus the **virtual** clock: it starts at [`DEFAULT_SYSTEM_TIME`]
//! (2025-01-01 00:00 UTC) at boot, moves exactly as [`Machine::advance`] moves virtual time, and
//! [`Machine::set_system_time`] sets it as an administrator changing the date would (later
//! readings continue from the new value). The time zone is an offset from UTC
//! ([`Machine::set_time_zone_offset`], minutes east of UTC: +60 for CET; Windows' `Bias` is its
//! negation); the default is UTC. Daylight saving is not modelled: the offset is what it is set
//! to.
//!
//! [`time_to_time_fields`] and [`time_fields_to_time`] are `RtlTimeToTimeFields` and
//! `RtlTimeFieldsToTime` (any IRQL), for drivers and for tests that set a date.

use std::sync::{Arc, Mutex};

use super::lock;
use crate::machine::Machine;
use crate::status::Status;

/// 100-ns intervals per day.
pub const TICKS_PER_DAY: i64 = 864_000_000_000;

/// The system time at boot unless set: 2025-01-01 00:00:00 UTC, in 100-ns intervals since
/// 1601-01-01.
pub const DEFAULT_SYSTEM_TIME: i64 = 133_801_632_000_000_000;

/// The largest time-zone offset accepted, in minutes (a day).
pub const MAXIMUM_TIME_ZONE_OFFSET_MINUTES: i32 = 24 * 60;

/// Days from 1601-01-01 to 1970-01-01.
const DAYS_1601_TO_1970: i64 = 134_774;

/// `TIME_FIELDS`: a time split into calendar fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TimeFields {
    /// 1601 and later.
    pub year: u16,
    /// 1–12.
    pub month: u16,
    /// 1–31.
    pub day: u16,
    /// 0–23.
    pub hour: u16,
    /// 0–59.
    pub minute: u16,
    /// 0–59.
    pub second: u16,
    /// 0–999.
    pub milliseconds: u16,
    /// 0 (Sunday) – 6 (Saturday).
    pub weekday: u16,
}

/// The Gregorian date of `days` since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u16, u16) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // In range by construction: 1 ≤ month ≤ 12, 1 ≤ day ≤ 31.
    (
        year,
        u16::try_from(month).unwrap_or(1),
        u16::try_from(day).unwrap_or(1),
    )
}

/// Days since 1970-01-01 of a Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// `RtlTimeToTimeFields`: `time` (100-ns intervals since 1601-01-01) as calendar fields. A
/// negative time (before 1601) is read as 0.
pub fn time_to_time_fields(time: i64) -> TimeFields {
    let time = time.max(0);
    let days = time / TICKS_PER_DAY;
    let rest = time % TICKS_PER_DAY;
    let (year, month, day) = civil_from_days(days - DAYS_1601_TO_1970);
    let milliseconds_of_day = rest / 10_000;
    let field = |v: i64| u16::try_from(v).unwrap_or(u16::MAX);
    TimeFields {
        year: field(year),
        month,
        day,
        hour: field(milliseconds_of_day / 3_600_000),
        minute: field(milliseconds_of_day / 60_000 % 60),
        second: field(milliseconds_of_day / 1_000 % 60),
        milliseconds: field(milliseconds_of_day % 1_000),
        // 1601-01-01 was a Monday.
        weekday: field((days + 1) % 7),
    }
}

/// `RtlTimeFieldsToTime`: the time of `fields` (their `weekday` is ignored), or `None` — the
/// routine's `FALSE` — when a field is out of range or the year is before 1601.
pub fn time_fields_to_time(fields: &TimeFields) -> Option<i64> {
    let year = i64::from(fields.year);
    let month = i64::from(fields.month);
    let day = i64::from(fields.day);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => return None,
    };
    if year < 1601
        || day < 1
        || day > month_days
        || fields.hour > 23
        || fields.minute > 59
        || fields.second > 59
        || fields.milliseconds > 999
    {
        return None;
    }
    let days = days_from_civil(year, month, day) + DAYS_1601_TO_1970;
    let milliseconds = ((i64::from(fields.hour) * 60 + i64::from(fields.minute)) * 60
        + i64::from(fields.second))
        * 1_000
        + i64::from(fields.milliseconds);
    days.checked_mul(TICKS_PER_DAY)?
        .checked_add(milliseconds * 10_000)
}

/// The wall clock's settings (a machine extension).
struct WallClock {
    state: Mutex<WallState>,
}

struct WallState {
    /// The system time at virtual time 0.
    base: i64,
    /// Minutes east of UTC.
    offset_minutes: i32,
}

fn wall_clock(machine: &Machine) -> Arc<WallClock> {
    machine.extension(|| WallClock {
        state: Mutex::new(WallState {
            base: DEFAULT_SYSTEM_TIME,
            offset_minutes: 0,
        }),
    })
}

fn now_ticks(machine: &Machine) -> i64 {
    i64::try_from(machine.now_ticks()).unwrap_or(i64::MAX)
}

impl Machine {
    /// `KeQuerySystemTimePrecise`: the system time (UTC) in 100-ns intervals since 1601-01-01 —
    /// the set start plus the virtual time since. Any IRQL.
    pub fn system_time(&self) -> i64 {
        let base = lock(&wall_clock(self).state).base;
        base.saturating_add(now_ticks(self))
    }

    /// Sets the system time (`ZwSetSystemTime`): [`system_time`](Self::system_time) returns
    /// `time` now and moves on from there with the virtual clock.
    pub fn set_system_time(&self, time: i64) {
        let now = now_ticks(self);
        lock(&wall_clock(self).state).base = time.saturating_sub(now);
    }

    /// Sets the system time to the date `fields` (UTC; see [`set_system_time`](Self::set_system_time)).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` when [`time_fields_to_time`] refuses the fields.
    pub fn set_system_time_fields(&self, fields: &TimeFields) -> Result<(), Status> {
        let time = time_fields_to_time(fields).ok_or(Status::INVALID_PARAMETER)?;
        self.set_system_time(time);
        Ok(())
    }

    /// Sets the time zone: local time is UTC plus `minutes` (east of UTC; Windows' `Bias` is
    /// `-minutes`).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` beyond ±[`MAXIMUM_TIME_ZONE_OFFSET_MINUTES`].
    pub fn set_time_zone_offset(&self, minutes: i32) -> Result<(), Status> {
        if minutes.abs() > MAXIMUM_TIME_ZONE_OFFSET_MINUTES {
            return Err(Status::INVALID_PARAMETER);
        }
        lock(&wall_clock(self).state).offset_minutes = minutes;
        Ok(())
    }

    /// The time zone's offset from UTC in minutes (east positive). Default 0.
    pub fn time_zone_offset(&self) -> i32 {
        lock(&wall_clock(self).state).offset_minutes
    }

    /// `ExSystemTimeToLocalTime`: `system_time` plus the time-zone offset. Any IRQL.
    pub fn system_time_to_local_time(&self, system_time: i64) -> i64 {
        let minutes = i64::from(self.time_zone_offset());
        system_time.saturating_add(minutes * 60 * 10_000_000)
    }

    /// The local time now (`KeQuerySystemTimePrecise` + `ExSystemTimeToLocalTime`).
    pub fn local_time(&self) -> i64 {
        self.system_time_to_local_time(self.system_time())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    fn date(year: u16, month: u16, day: u16, hour: u16, minute: u16) -> TimeFields {
        TimeFields {
            year,
            month,
            day,
            hour,
            minute,
            ..TimeFields::default()
        }
    }

    #[test]
    fn fields_round_trip_and_edges() {
        assert_eq!(time_to_time_fields(0), {
            let mut f = date(1601, 1, 1, 0, 0);
            f.weekday = 1;
            f
        });
        let start = time_to_time_fields(DEFAULT_SYSTEM_TIME);
        assert_eq!(
            (start.year, start.month, start.day, start.weekday),
            (2025, 1, 1, 3)
        );
        let leap = date(2024, 2, 29, 23, 59);
        let t = time_fields_to_time(&leap).unwrap();
        assert_eq!(time_to_time_fields(t).weekday, 4);
        assert_eq!(time_to_time_fields(t + 60 * 10_000_000).month, 3);
        assert_eq!(time_fields_to_time(&date(2023, 2, 29, 0, 0)), None);
        assert_eq!(time_fields_to_time(&date(1900, 2, 29, 0, 0)), None);
        assert!(time_fields_to_time(&date(2000, 2, 29, 0, 0)).is_some());
        assert_eq!(time_fields_to_time(&date(1600, 12, 31, 0, 0)), None);
        for days in [0_i64, 59, 60, 365, 146_096, 154_863, 200_000] {
            let t = days * TICKS_PER_DAY + 12_345 * 10_000;
            let fields = time_to_time_fields(t);
            assert_eq!(time_fields_to_time(&fields), Some(t), "{fields:?}");
        }
    }

    #[test]
    fn system_time_follows_the_virtual_clock_and_the_zone() {
        let machine = Machine::new();
        assert_eq!(machine.system_time(), DEFAULT_SYSTEM_TIME);
        machine.advance(Duration::from_secs(90));
        assert_eq!(machine.system_time(), DEFAULT_SYSTEM_TIME + 900_000_000);
        machine
            .set_system_time_fields(&date(2024, 2, 28, 23, 30))
            .unwrap();
        machine.advance(Duration::from_hours(1));
        let utc = time_to_time_fields(machine.system_time());
        assert_eq!((utc.month, utc.day, utc.hour, utc.minute), (2, 29, 0, 30));
        machine.set_time_zone_offset(-60).unwrap();
        let local = time_to_time_fields(machine.local_time());
        assert_eq!((local.month, local.day, local.hour), (2, 28, 23));
        assert_eq!(
            machine.set_time_zone_offset(25 * 60),
            Err(Status::INVALID_PARAMETER)
        );
    }
}
