//! Devices: `EvtDriverDeviceAdd` with a `WDFDEVICE_INIT`, the `WdfDeviceInit…` functions and
//! `WdfDeviceCreate`.
//!
//! A `PWDFDEVICE_INIT` the driver receives is the address of an [`InitState`] the host owns for
//! the duration of `EvtDriverDeviceAdd`: the kmdf-sim [`DeviceInit`] of the node being added and
//! what the driver's `WdfDeviceInit…` calls collected, applied by `WdfDeviceCreate`.

use std::sync::Arc;

use kmdf_sim::device::{Device, DeviceInit};
use kmdf_sim::Status;

use super::bindings::WDFDRIVER;
use super::driver::HostDriver;
use super::objects::{self, Attributes, Handle, Object};
use super::wdf_exports;

wdf_exports! {}

/// The payload of a `WDFDEVICE` object.
pub struct DevicePayload {
    /// The kmdf-sim device.
    pub sim: Device,
    /// The driver that created it.
    pub driver: Arc<HostDriver>,
    /// `WdfDeviceInitSetRequestAttributes`: the attributes (context) of every request the
    /// framework delivers to the device's queues.
    pub request_attributes: Option<Attributes>,
}

impl core::fmt::Debug for DevicePayload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DevicePayload").finish_non_exhaustive()
    }
}

/// The live `WDFDEVICE` `handle` (its payload is a [`DevicePayload`]), or a stop naming
/// `routine`.
pub fn device_of(handle: Handle, routine: &str) -> Arc<Object> {
    objects::expect_kind(handle, "WDFDEVICE", routine)
}

/// What stands behind a `PWDFDEVICE_INIT` during `EvtDriverDeviceAdd`.
pub struct InitState {
    /// The kmdf-sim init of the node being added (valid for the callback).
    pub sim: *mut DeviceInit,
    /// The driver being called.
    pub driver: usize,
}

impl core::fmt::Debug for InitState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InitState").finish_non_exhaustive()
    }
}

/// kmdf-sim's `AddDevice` for a host driver: `EvtDriverDeviceAdd(Driver, DeviceInit)`.
///
/// Errors: the callback's failure status; `STATUS_INVALID_DEVICE_STATE` for a driver that
/// registered no `EvtDriverDeviceAdd`.
pub(crate) fn device_add(host: &HostDriver, init: &mut DeviceInit) -> Result<(), Status> {
    let Some(add) = host.device_add else {
        return Err(Status::INVALID_DEVICE_STATE);
    };
    let mut state = InitState {
        sim: init,
        driver: host.handle,
    };
    // SAFETY: the driver's `EVT_WDF_DRIVER_DEVICE_ADD`, called with its WDFDRIVER and a
    // WDFDEVICE_INIT that stays valid for the call (`state` lives on this frame).
    let status = unsafe { add(host.handle as WDFDRIVER, (&raw mut state).cast()) };
    if status >= 0 {
        Ok(())
    } else {
        Err(Status(status))
    }
}
