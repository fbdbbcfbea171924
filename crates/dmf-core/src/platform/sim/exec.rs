//! Timers, work items, system threads and the registry on kmdf-sim.

use alloc::string::String;
use core::time::Duration;

use kmdf_sim::exec::{
    ExecutionLevel, SystemThread as SimThread, Timer as SimTimer, TimerConfig,
    WaitStatus as SimWait, WorkItem as SimWorkItem,
};
use kmdf_sim::object::ObjectAttributes;
use kmdf_sim::registry::{RegistryKey as SimKey, RegistryValue as SimValue};

use super::device::Device;
use super::{current_machine, from_sim_status};
use crate::platform::contract::{
    PlatformRegistryKey, PlatformThread, PlatformTimer, PlatformWorkItem, RegistryValue, Timeout,
    TimerExecutionLevel, WaitStatus,
};
use crate::status::{NtResult, NtStatus};

/// A `WDFTIMER` on the simulated machine's virtual clock.
#[derive(Debug)]
pub struct Timer(SimTimer);

impl PlatformTimer for Timer {
    type Device = Device;

    /// `WdfTimerCreate` with the device's `WDFDEVICE` object as `ParentObject`: kmdf-sim deletes
    /// the timer with the device.
    fn new(
        parent: &Device,
        name: &str,
        period: Option<Duration>,
        level: TimerExecutionLevel,
        callback: impl Fn() + Send + Sync + 'static,
    ) -> NtResult<Self> {
        let config = match period {
            None => TimerConfig::one_shot(name),
            Some(period) => {
                let ms =
                    u32::try_from(period.as_millis()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
                if ms == 0 {
                    return Err(NtStatus::INVALID_PARAMETER);
                }
                TimerConfig::periodic(name, ms)
            }
        }
        .execution_level(match level {
            TimerExecutionLevel::Dispatch => ExecutionLevel::Dispatch,
            TimerExecutionLevel::Passive => ExecutionLevel::Passive,
        });
        SimTimer::create(
            config,
            ObjectAttributes::new().parent(parent.sim().object()),
            move |_| callback(),
        )
        .map(Timer)
        .map_err(from_sim_status)
    }

    fn start(&self, due: Duration) -> bool {
        self.0.start(due)
    }

    fn stop(&self, wait: bool) -> bool {
        self.0.stop(wait)
    }
}

/// A `WDFWORKITEM` on the simulated machine's system worker threads.
#[derive(Debug)]
pub struct WorkItem(SimWorkItem);

impl PlatformWorkItem for WorkItem {
    type Device = Device;

    /// `WdfWorkItemCreate` with the device's `WDFDEVICE` object as `ParentObject`: kmdf-sim
    /// deletes the work item with the device.
    fn new(
        parent: &Device,
        name: &str,
        callback: impl Fn() + Send + Sync + 'static,
    ) -> NtResult<Self> {
        SimWorkItem::create(
            name,
            ObjectAttributes::new().parent(parent.sim().object()),
            move |_| callback(),
        )
        .map(WorkItem)
        .map_err(from_sim_status)
    }

    fn enqueue(&self) -> bool {
        self.0.enqueue()
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// A system thread of the simulated machine.
#[derive(Debug)]
pub struct SystemThread(SimThread);

impl PlatformThread for SystemThread {
    fn spawn(name: &str, start: impl FnOnce() + Send + 'static) -> NtResult<Self> {
        let machine = current_machine()?;
        SimThread::spawn(&machine, name, start)
            .map(SystemThread)
            .map_err(from_sim_status)
    }

    fn wait(&self, timeout: Timeout) -> WaitStatus {
        match self.0.wait(timeout) {
            SimWait::Signaled => WaitStatus::Signaled,
            SimWait::TimedOut => WaitStatus::TimedOut,
        }
    }
}

/// A registry key of the simulated machine's registry (persisted across simulated reboots when
/// the test shares the store).
#[derive(Debug)]
pub struct RegistryKey(SimKey);

fn registry_status(error: &kmdf_sim::registry::RegistryError) -> NtStatus {
    NtStatus::from_raw(error.ntstatus())
}

impl PlatformRegistryKey for RegistryKey {
    fn open_driver_parameters(driver: &str) -> NtResult<Self> {
        let machine = current_machine()?;
        machine
            .registry()
            .driver_parameters(driver)
            .map(RegistryKey)
            .map_err(|e| registry_status(&e))
    }

    fn query(&self, name: &str) -> NtResult<RegistryValue> {
        match self.0.query_value(name).map_err(|e| registry_status(&e))? {
            SimValue::Dword(v) => Ok(RegistryValue::Dword(v)),
            SimValue::Qword(v) => Ok(RegistryValue::Qword(v)),
            SimValue::Sz(s) => Ok(RegistryValue::String(s)),
            SimValue::Binary(b) => Ok(RegistryValue::Binary(b)),
            SimValue::MultiSz(_) => Err(NtStatus::OBJECT_TYPE_MISMATCH),
        }
    }

    fn set(&self, name: &str, value: RegistryValue) -> NtResult<()> {
        let value = match value {
            RegistryValue::Dword(v) => SimValue::Dword(v),
            RegistryValue::Qword(v) => SimValue::Qword(v),
            RegistryValue::String(s) => SimValue::Sz(s),
            RegistryValue::Binary(b) => SimValue::Binary(b),
        };
        self.0
            .set_value(name, value)
            .map_err(|e| registry_status(&e))
    }

    fn delete(&self, name: &str) -> NtResult<()> {
        self.0.delete_value(name).map_err(|e| registry_status(&e))
    }
}

impl RegistryKey {
    /// The key's full path (for diagnostics); fails if the key was deleted.
    pub fn path(&self) -> NtResult<String> {
        self.0.path().map_err(|e| registry_status(&e))
    }
}
