//! Child PDOs of a bus driver on kmdf-sim: the `PlatformBus` and `PlatformPdoInit` items on
//! kmdf-sim's `DeviceInit::pdo`, `Device::add_static_child`, `Device::pdo_mark_missing`, … (see
//! `kmdf_sim::pnp::bus` for what the simulated PnP manager does with the children).

use kmdf_sim::device::{
    DeviceInit as SimDeviceInit, PdoStatus, PnpCapabilities as SimPnpCaps,
    PowerCapabilities as SimPowerCaps, TriState as SimTriState,
};
use kmdf_sim::pnp::state::DevicePowerState as SimDx;

use super::device::{sim_guid, Device, DeviceInit};
use super::from_sim_status;
use crate::platform::contract::device::{
    DevicePowerLevel, Guid, PlatformBus, PlatformPdoInit, PnpCapabilities, PowerCapabilities,
    TriState,
};
use crate::status::{NtResult, NtStatus};

fn tri(state: TriState) -> SimTriState {
    match state {
        TriState::False => SimTriState::False,
        TriState::True => SimTriState::True,
        TriState::UseDefault => SimTriState::UseDefault,
    }
}

fn dx(level: DevicePowerLevel) -> SimDx {
    match level {
        DevicePowerLevel::D0 => SimDx::D0,
        DevicePowerLevel::D1 => SimDx::D1,
        DevicePowerLevel::D2 => SimDx::D2,
        DevicePowerLevel::D3 => SimDx::D3,
    }
}

impl PlatformPdoInit for DeviceInit {
    fn assign_device_id(&mut self, id: &str) -> NtResult<()> {
        self.sim_mut()
            .pdo_assign_device_id(id)
            .map_err(from_sim_status)
    }

    fn assign_instance_id(&mut self, id: &str) -> NtResult<()> {
        self.sim_mut()
            .pdo_assign_instance_id(id)
            .map_err(from_sim_status)
    }

    fn add_hardware_id(&mut self, id: &str) -> NtResult<()> {
        self.sim_mut()
            .pdo_add_hardware_id(id)
            .map_err(from_sim_status)
    }

    fn add_compatible_id(&mut self, id: &str) -> NtResult<()> {
        self.sim_mut()
            .pdo_add_compatible_id(id)
            .map_err(from_sim_status)
    }

    fn add_device_text(&mut self, description: &str, location: &str, locale: u32) -> NtResult<()> {
        self.sim_mut()
            .pdo_add_device_text(description, location, locale)
            .map_err(from_sim_status)
    }

    fn set_default_locale(&mut self, locale: u32) {
        // Not a PDO's init: KMDF's verifier would break in; the simulator ignores it.
        let _ = self.sim_mut().pdo_set_default_locale(locale);
    }

    fn assign_raw_device(&mut self, class: Guid) -> NtResult<()> {
        self.sim_mut()
            .pdo_assign_raw_device(sim_guid(class))
            .map_err(from_sim_status)
    }
}

impl PlatformBus for Device {
    type PdoInit = DeviceInit;

    fn pdo_init_allocate(&self) -> NtResult<DeviceInit> {
        SimDeviceInit::pdo(self.sim())
            .map(DeviceInit::from_sim)
            .map_err(from_sim_status)
    }

    fn add_static_child(&self, pdo: &Device) -> NtResult<()> {
        self.sim()
            .add_static_child(pdo.sim())
            .map_err(from_sim_status)
    }

    fn for_each_static_child(&self, visit: &mut dyn FnMut(&Device) -> bool) {
        for child in self.sim().static_children() {
            if matches!(
                child.pdo_status(),
                Some(PdoStatus::Reported | PdoStatus::Enumerated)
            ) && !visit(&Device::from_sim(child))
            {
                break;
            }
        }
    }

    fn pdo_mark_missing(&self) -> NtResult<()> {
        self.sim().pdo_mark_missing().map_err(from_sim_status)
    }

    fn pdo_request_eject(&self) {
        self.sim().pdo_request_eject();
    }

    fn pdo_delete(&self) -> NtResult<()> {
        if self.sim().pdo_status() != Some(PdoStatus::Created) {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        self.sim().pdo_delete().map_err(from_sim_status)
    }

    fn set_pnp_capabilities(&self, capabilities: &PnpCapabilities) {
        self.sim().set_pnp_capabilities(SimPnpCaps {
            lock_supported: tri(capabilities.lock_supported),
            eject_supported: tri(capabilities.eject_supported),
            removable: tri(capabilities.removable),
            dock_device: tri(capabilities.dock_device),
            unique_id: tri(capabilities.unique_id),
            silent_install: tri(capabilities.silent_install),
            surprise_removal_ok: tri(capabilities.surprise_removal_ok),
            hardware_disabled: tri(capabilities.hardware_disabled),
            no_display_in_ui: tri(capabilities.no_display_in_ui),
            address: capabilities.address,
            ui_number: capabilities.ui_number,
        });
    }

    fn set_power_capabilities(&self, capabilities: &PowerCapabilities) {
        self.sim().set_power_capabilities(SimPowerCaps {
            device_d1: tri(capabilities.device_d1),
            device_d2: tri(capabilities.device_d2),
            wake_from_d0: tri(capabilities.wake_from_d0),
            wake_from_d1: tri(capabilities.wake_from_d1),
            wake_from_d2: tri(capabilities.wake_from_d2),
            wake_from_d3: tri(capabilities.wake_from_d3),
            device_state: capabilities.device_state.map(|s| s.map(dx)),
            device_wake: capabilities.device_wake.map(dx),
        });
    }
}
