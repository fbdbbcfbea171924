//! Timers, work items, system threads and the registry on kmdf-sim.

use alloc::string::String;
use core::time::Duration;

use kmdf_sim::exec::{
    ExecutionLevel, SystemThread as SimThread, Timer as SimTimer, TimerConfig,
    WaitStatus as SimWait, WorkItem as SimWorkItem,
};
use kmdf_sim::object::ObjectAttributes;
use kmdf_sim::registry::{
    KeyAccess, RegistryKey as SimKey, RegistryValue as SimValue, RegistryValueType as SimType,
};

use super::device::Device;
use super::{current_machine, from_sim_status};
use crate::platform::contract::{
    DeviceRegistryKey, PlatformRegistryKey, PlatformThread, PlatformTimer, PlatformWorkItem,
    RegistryAccess, RegistryValue, RegistryValueInfo, RegistryValueType, Timeout,
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

fn sim_access(access: RegistryAccess) -> KeyAccess {
    match access {
        RegistryAccess::Read => KeyAccess::Read,
        RegistryAccess::ReadWrite => KeyAccess::ReadWrite,
        RegistryAccess::All => KeyAccess::All,
    }
}

fn sim_type(value_type: RegistryValueType) -> SimType {
    match value_type {
        RegistryValueType::String => SimType::Sz,
        RegistryValueType::ExpandString => SimType::ExpandSz,
        RegistryValueType::Binary => SimType::Binary,
        RegistryValueType::Dword => SimType::Dword,
        RegistryValueType::MultiString => SimType::MultiSz,
        RegistryValueType::Qword => SimType::Qword,
    }
}

fn platform_type(value_type: SimType) -> RegistryValueType {
    match value_type {
        SimType::Sz => RegistryValueType::String,
        SimType::ExpandSz => RegistryValueType::ExpandString,
        SimType::Binary => RegistryValueType::Binary,
        SimType::Dword => RegistryValueType::Dword,
        SimType::MultiSz => RegistryValueType::MultiString,
        SimType::Qword => RegistryValueType::Qword,
    }
}

/// The registry routines run at `PASSIVE_LEVEL` (the verifier reports a call above it).
fn passive(routine: &str) {
    kmdf_sim::exec::irql::require_max_irql(kmdf_sim::exec::Irql::Passive, routine);
}

/// Copies `text` into `out` as UTF-16; its length in units, or `STATUS_BUFFER_OVERFLOW`.
fn name_into(text: &str, out: &mut [u16]) -> NtResult<usize> {
    let mut length = 0;
    for unit in text.encode_utf16() {
        *out.get_mut(length).ok_or(NtStatus::BUFFER_OVERFLOW)? = unit;
        length += 1;
    }
    Ok(length)
}

impl PlatformRegistryKey for RegistryKey {
    type Device = Device;

    fn open_driver_parameters(driver: &str) -> NtResult<Self> {
        passive("WdfDriverOpenParametersRegistryKey");
        let machine = current_machine()?;
        machine
            .registry()
            .driver_parameters(driver)
            .map(|key| RegistryKey(key.with_access(KeyAccess::ReadWrite)))
            .map_err(|e| registry_status(&e))
    }

    fn open_path(path: &str, access: RegistryAccess, create: bool) -> NtResult<Self> {
        passive(if create {
            "WdfRegistryCreateKey"
        } else {
            "WdfRegistryOpenKey"
        });
        let store = current_machine()?.registry();
        let key = if create {
            store.create_key(path)
        } else {
            store.open_key(path)
        };
        key.map(|key| RegistryKey(key.with_access(sim_access(access))))
            .map_err(|e| registry_status(&e))
    }

    /// The keys kmdf-sim's registry keeps for the device's node, by its instance id. A control
    /// device has no node: `STATUS_INVALID_DEVICE_REQUEST`, as KMDF answers for one.
    fn open_device_key(
        device: &Device,
        which: DeviceRegistryKey,
        access: RegistryAccess,
    ) -> NtResult<Self> {
        passive("WdfDeviceOpenRegistryKey");
        let node = device
            .sim()
            .node()
            .ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
        let store = current_machine()?.registry();
        let key = match which {
            DeviceRegistryKey::Hardware => store.device_hardware_key(node.instance_id()),
            DeviceRegistryKey::Software => store.device_software_key(node.instance_id()),
        };
        key.map(|key| RegistryKey(key.with_access(sim_access(access))))
            .map_err(|e| registry_status(&e))
    }

    fn open_subkey(&self, path: &str, access: RegistryAccess, create: bool) -> NtResult<Self> {
        passive(if create {
            "WdfRegistryCreateKey"
        } else {
            "WdfRegistryOpenKey"
        });
        let key = if create {
            self.0.create_subkey(path)
        } else {
            self.0.open_subkey(path)
        };
        key.map(|key| RegistryKey(key.with_access(sim_access(access))))
            .map_err(|e| registry_status(&e))
    }

    fn query(&self, name: &str) -> NtResult<RegistryValue> {
        passive("WdfRegistryQueryValue");
        Ok(
            match self.0.query_value(name).map_err(|e| registry_status(&e))? {
                SimValue::Dword(v) => RegistryValue::Dword(v),
                SimValue::Qword(v) => RegistryValue::Qword(v),
                SimValue::Sz(s) => RegistryValue::String(s),
                SimValue::ExpandSz(s) => RegistryValue::ExpandString(s),
                SimValue::MultiSz(list) => RegistryValue::MultiString(list),
                SimValue::Binary(b) => RegistryValue::Binary(b),
            },
        )
    }

    fn query_into(&self, name: &str, buffer: &mut [u8]) -> NtResult<RegistryValueInfo> {
        passive("WdfRegistryQueryValue");
        let value = self.0.query_value(name).map_err(|e| registry_status(&e))?;
        let bytes = value.to_bytes();
        if let Some(target) = buffer.get_mut(..bytes.len()) {
            target.copy_from_slice(&bytes);
        }
        Ok(RegistryValueInfo {
            value_type: Some(platform_type(value.value_type())),
            length: bytes.len(),
        })
    }

    fn set(&self, name: &str, value: RegistryValue) -> NtResult<()> {
        passive("WdfRegistryAssignValue");
        let value = match value {
            RegistryValue::Dword(v) => SimValue::Dword(v),
            RegistryValue::Qword(v) => SimValue::Qword(v),
            RegistryValue::String(s) => SimValue::Sz(s),
            RegistryValue::ExpandString(s) => SimValue::ExpandSz(s),
            RegistryValue::MultiString(list) => SimValue::MultiSz(list),
            RegistryValue::Binary(b) => SimValue::Binary(b),
        };
        self.0
            .set_value(name, value)
            .map_err(|e| registry_status(&e))
    }

    /// The data is decoded as the kernel would store it: an integer of the wrong size, a string of
    /// odd length or invalid UTF-16 is `STATUS_INVALID_PARAMETER`.
    fn set_raw(&self, name: &str, value_type: RegistryValueType, data: &[u8]) -> NtResult<()> {
        passive("WdfRegistryAssignValue");
        let value =
            SimValue::from_bytes(sim_type(value_type), data).map_err(|e| registry_status(&e))?;
        self.0
            .set_value(name, value)
            .map_err(|e| registry_status(&e))
    }

    fn delete(&self, name: &str) -> NtResult<()> {
        passive("WdfRegistryRemoveValue");
        self.0.delete_value(name).map_err(|e| registry_status(&e))
    }

    fn delete_key(self) -> NtResult<()> {
        passive("WdfRegistryRemoveKey");
        self.0.delete().map_err(|e| registry_status(&e))
    }

    fn subkey_name(&self, index: u32, name: &mut [u16]) -> NtResult<Option<usize>> {
        passive("ZwEnumerateKey");
        let index = usize::try_from(index).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        match self.0.subkey_at(index).map_err(|e| registry_status(&e))? {
            Some(found) => name_into(&found, name).map(Some),
            None => Ok(None),
        }
    }

    fn value_name(&self, index: u32, name: &mut [u16]) -> NtResult<Option<usize>> {
        passive("ZwEnumerateValueKey");
        let index = usize::try_from(index).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        match self.0.value_at(index).map_err(|e| registry_status(&e))? {
            Some((found, _)) => name_into(&found, name).map(Some),
            None => Ok(None),
        }
    }
}

impl RegistryKey {
    /// The key's full path (for diagnostics); fails if the key was deleted.
    pub fn path(&self) -> NtResult<String> {
        self.0.path().map_err(|e| registry_status(&e))
    }
}
