//! The wall clock and named events on kmdf-sim.

extern crate std;

use std::time::{SystemTime, UNIX_EPOCH};

use kmdf_sim::exec::named_event::NamedEvent as SimNamedEvent;
use kmdf_sim::exec::wall_clock::{time_to_time_fields, TimeFields as SimTimeFields};
use kmdf_sim::Machine;

use super::{current_machine, from_sim_status};
use crate::platform::contract::{PlatformNamedEvent, PlatformWallClock, TimeFields};
use crate::status::NtResult;

/// 100-ns intervals from 1601-01-01 to 1970-01-01 (the host clock's epoch, outside a machine).
const UNIX_EPOCH_AS_SYSTEM_TIME: i64 = 116_444_736_000_000_000;

/// The machine's wall clock (`KeQuerySystemTimePrecise`, its time zone, `RtlTimeToTimeFields`);
/// outside a machine, the host's clock in UTC.
#[derive(Debug)]
pub struct WallClock;

impl PlatformWallClock for WallClock {
    fn system_time() -> i64 {
        if let Some(machine) = Machine::current() {
            return machine.system_time();
        }
        let since_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let ticks = i64::try_from(since_unix.as_nanos() / 100).unwrap_or(i64::MAX);
        UNIX_EPOCH_AS_SYSTEM_TIME.saturating_add(ticks)
    }

    fn system_time_to_local_time(system_time: i64) -> i64 {
        Machine::current().map_or(system_time, |m| m.system_time_to_local_time(system_time))
    }

    fn time_fields(time: i64) -> TimeFields {
        let SimTimeFields {
            year,
            month,
            day,
            hour,
            minute,
            second,
            milliseconds,
            weekday,
        } = time_to_time_fields(time);
        TimeFields {
            year,
            month,
            day,
            hour,
            minute,
            second,
            milliseconds,
            weekday,
        }
    }
}

/// A kernel handle to a named event of the simulated machine's namespace (`ZwOpenEvent`); closed
/// (`ZwClose`) on drop.
#[derive(Debug)]
pub struct NamedEvent(SimNamedEvent);

impl PlatformNamedEvent for NamedEvent {
    fn open(name: &str) -> NtResult<Self> {
        let machine = current_machine()?;
        SimNamedEvent::open(&machine, name)
            .map(NamedEvent)
            .map_err(from_sim_status)
    }

    fn set(&self) -> NtResult<()> {
        self.0.set();
        Ok(())
    }
}
