//! DMF_Time: tick count and elapsed time on the virtual clock, and a scenario with concurrent
//! callers whose elapsed times must never go backwards, closed under load.
#![cfg(feature = "sim")]
// reason: scenario closures name their handle `h`, the thread `t`, the Rng `rng`, as Tests_* do.
#![allow(clippy::many_single_char_names)]

use std::time::Duration;

use dmf_core::module::NoParent;
use dmf_core::platform::contract::{EventKind, PlatformEvent};
use dmf_core::platform::Event;
use dmf_core::NtStatus;
use dmf_modules::time::{Time, TICK_NANOSECONDS};
use kmdf_sim::exec::{SystemThread, TimeFields as SimFields, WaitStatus as SimWait};
use kmdf_sim::{ClockMode, Machine, VerifierMode};

/// DMF_Time: ticks are 100 ns of the platform clock; elapsed times follow the virtual clock.
#[test]
fn mods_time_ticks_and_elapsed_on_the_virtual_clock() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let _on = machine.enter();
    let time = Time::with(()).create(&NoParent).unwrap();
    machine.advance(Duration::from_secs(2));
    assert_eq!(time.tick_count_get(), Ok(20_000_000));
    assert_eq!(time.tick_count_get_in_milliseconds(), Ok(2_000));
    assert_eq!(time.tick_count_get_in_nanoseconds(), Ok(2_000_000_000));
    let start = time.tick_count_get().unwrap();
    machine.advance(Duration::from_micros(2_500));
    assert_eq!(time.elapsed_time_milliseconds_get(start), Ok(2));
    assert_eq!(time.elapsed_time_nanoseconds_get(start), Ok(2_500_000));
    assert_eq!(TICK_NANOSECONDS, 100);
    // A start in the future or negative is invalid input, not a panic.
    assert_eq!(
        time.elapsed_time_milliseconds_get(start + 1_000_000),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        time.elapsed_time_nanoseconds_get(-1),
        Err(NtStatus::INVALID_PARAMETER)
    );
    let handle = (*time).clone();
    time.delete();
    assert_eq!(handle.tick_count_get(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert!(machine.verifier().violations().is_empty());
}

fn date(year: u16, month: u16, day: u16, hour: u16, minute: u16, second: u16) -> SimFields {
    SimFields {
        year,
        month,
        day,
        hour,
        minute,
        second,
        ..SimFields::default()
    }
}

/// DMF_Time_SystemTimeGet: the machine's wall clock, set to a known date, in 100-ns intervals
/// since 1601 (KeQuerySystemTimePrecise), moving with the virtual clock.
#[test]
fn mods_time_system_time_get_follows_the_wall_clock() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let _on = machine.enter();
    let time = Time::with(()).create(&NoParent).unwrap();
    // 2000-01-01 00:00:00 UTC: 145 731 days after 1601-01-01.
    machine
        .set_system_time_fields(&date(2000, 1, 1, 0, 0, 0))
        .unwrap();
    let start = time.system_time_get().unwrap();
    assert_eq!(start, 145_731 * 864_000_000_000);
    machine.advance(Duration::from_millis(1_250));
    assert_eq!(time.system_time_get(), Ok(start + 12_500_000));
    // The time zone does not move the system time.
    machine.set_time_zone_offset(-300).unwrap();
    assert_eq!(time.system_time_get(), Ok(start + 12_500_000));
    let handle = (*time).clone();
    time.delete();
    assert_eq!(
        handle.system_time_get(),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(handle.local_time_get(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert!(machine.verifier().violations().is_empty());
}

/// DMF_Time_LocalTimeGet: DMF_TIME_FIELDS of the local time (ExSystemTimeToLocalTime +
/// RtlTimeToTimeFields) across a leap day, a year end and a century leap year, with offsets on
/// both sides of UTC.
#[test]
fn mods_time_local_time_get_with_offsets_and_leap_days() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let _on = machine.enter();
    let time = Time::with(()).create(&NoParent).unwrap();
    let fields = |t: &Time| {
        let f = t.local_time_get().unwrap();
        (
            f.year,
            f.month,
            f.day,
            f.hour,
            f.minute,
            f.second,
            f.milliseconds,
            f.weekday,
        )
    };
    // 2024-02-28 23:59:59.500 UTC, UTC+0: a Wednesday.
    machine
        .set_system_time_fields(&SimFields {
            milliseconds: 500,
            ..date(2024, 2, 28, 23, 59, 59)
        })
        .unwrap();
    assert_eq!(fields(&time), (2024, 2, 28, 23, 59, 59, 500, 3));
    // Half a second later: the leap day, a Thursday.
    machine.advance(Duration::from_millis(500));
    assert_eq!(fields(&time), (2024, 2, 29, 0, 0, 0, 0, 4));
    // UTC-1 turns it back to the 28th; UTC+5:30 on to 05:30 of the 29th.
    machine.set_time_zone_offset(-60).unwrap();
    assert_eq!(fields(&time), (2024, 2, 28, 23, 0, 0, 0, 3));
    machine.set_time_zone_offset(330).unwrap();
    assert_eq!(fields(&time), (2024, 2, 29, 5, 30, 0, 0, 4));
    // A day later, March 1st (no 30th of February).
    machine.advance(Duration::from_hours(24));
    assert_eq!(fields(&time), (2024, 3, 1, 5, 30, 0, 0, 5));
    // 2023 has no leap day; its year ends into 2024 in UTC+14 early.
    machine.set_time_zone_offset(0).unwrap();
    machine
        .set_system_time_fields(&date(2023, 2, 28, 12, 0, 0))
        .unwrap();
    machine.advance(Duration::from_hours(24));
    assert_eq!(fields(&time), (2023, 3, 1, 12, 0, 0, 0, 3));
    machine
        .set_system_time_fields(&date(2023, 12, 31, 10, 0, 0))
        .unwrap();
    machine.set_time_zone_offset(14 * 60).unwrap();
    assert_eq!(fields(&time), (2024, 1, 1, 0, 0, 0, 0, 1));
    // 1900 was not a leap year, 2000 was.
    assert!(machine
        .set_system_time_fields(&date(1900, 2, 29, 0, 0, 0))
        .is_err());
    machine.set_time_zone_offset(0).unwrap();
    machine
        .set_system_time_fields(&date(2000, 2, 28, 0, 0, 0))
        .unwrap();
    machine.advance(Duration::from_hours(24));
    assert_eq!(fields(&time), (2000, 2, 29, 0, 0, 0, 0, 2));
    time.delete();
    assert!(machine.verifier().violations().is_empty());
}

/// Scenario: three callers read ticks and elapsed times while virtual time jumps (AutoAdvance);
/// per caller the tick count never decreases and elapsed ≥ the nap taken; the Module is closed
/// under load and the callers then see STATUS_INVALID_DEVICE_STATE only.
#[test]
fn scenario_tests_time_monotonic_and_close_under_load() {
    let machine = Machine::builder()
        .clock(ClockMode::AutoAdvance)
        .verifier(VerifierMode::Record)
        .build();
    let _on = machine.enter();
    let time = Time::with(()).create(&NoParent).unwrap();
    let handle = (*time).clone();
    let threads: Vec<SystemThread> = (0..3_u64)
        .map(|id| {
            let h = handle.clone();
            SystemThread::spawn(&machine, &format!("t{id}"), move || {
                let mut last = 0;
                for n in 0..400_u64 {
                    let nap = Event::new(EventKind::Notification, false).unwrap();
                    let Ok(start) = h.tick_count_get() else { break };
                    assert!(start >= last, "ticks went backwards");
                    last = start;
                    let ms = (n * 7 + id) % 5;
                    let _ = nap.wait(Some(Duration::from_millis(ms)));
                    match h.elapsed_time_milliseconds_get(start) {
                        Ok(elapsed) => assert!(elapsed >= i64::try_from(ms).unwrap()),
                        Err(e) => {
                            assert_eq!(e, NtStatus::INVALID_DEVICE_STATE);
                            break;
                        }
                    }
                }
            })
            .unwrap()
        })
        .collect();
    let nap = Event::new(EventKind::Notification, false).unwrap();
    let _ = nap.wait(Some(Duration::from_millis(200)));
    time.delete();
    for t in &threads {
        assert_eq!(t.wait(None), SimWait::Signaled);
    }
    assert!(machine.crash().is_none());
    assert!(machine.verifier().violations().is_empty());
    assert!(machine.pool().outstanding().is_empty());
}
