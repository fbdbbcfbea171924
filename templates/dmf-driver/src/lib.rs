//! # {{project-name}} — a KMDF driver built on DMF for Rust
//!
//! A root-enumerated function driver (a DMF container driver): its only code is the Modules-add
//! callback. It has one Module of its own, [`Counter`], which counts the power-ups of the device
//! and reports the count through an IOCTL on a device interface.
//!
//! The same code builds for the simulator (`cargo test`, feature `sim`, the default) and for
//! Windows (`--no-default-features --features kmdf`, with the WDK).
#![no_std]
#![forbid(unsafe_code)]

use dmf::core::module::{IoRequest, PowerDeviceState};
use dmf::core::platform::contract::device::{Guid, PlatformDevice};
use dmf::core::platform::contract::io::PlatformRequest;
use dmf::core::platform::Device;
use dmf::prelude::*;

/// The device interface the driver exposes (make your own with `uuidgen`).
pub const GUID_DEVINTERFACE_COUNTER: Guid = Guid::new(
    0x1B2C_3D4E,
    0x5F60,
    0x4172,
    [0x83, 0x94, 0xA5, 0xB6, 0xC7, 0xD8, 0xE9, 0xF0],
);

/// `CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS)`: read the count
/// (4 bytes, little-endian).
pub const IOCTL_COUNTER_GET: u32 = 0x0022_2000;

/// [`Counter`]'s config.
#[derive(Clone, Debug)]
pub struct CounterConfig {
    /// The value reported before the first power-up.
    pub start: u32,
}

/// # Counter
///
/// Counts the power-ups (`EvtDeviceD0Entry`) of its device and answers [`IOCTL_COUNTER_GET`].
/// Opens when it is created; its lock is a spin lock.
#[dmf_module(config = CounterConfig, context = u32, open = Create, lock = Dispatch)]
pub struct Counter;

#[dmf_callbacks]
impl ModuleCallbacks for Counter {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        *module.lock() = module.config().start;
        Ok(())
    }

    fn d0_entry(module: &Dispatched<'_, Self>, _previous: PowerDeviceState) -> NtResult<()> {
        *module.lock() += 1;
        Ok(())
    }

    fn device_io_control(module: &Dispatched<'_, Self>, io: &mut IoRequest<'_>) -> Handled {
        if io.ioctl_code() != IOCTL_COUNTER_GET {
            return Handled::NotHandled;
        }
        let count = *module.lock();
        let Some(request) = io.take() else {
            return Handled::NotHandled;
        };
        match request.with_output_buffer(4, |out| out[..4].copy_from_slice(&count.to_le_bytes())) {
            Ok(()) => request.complete_with_information(NtStatus::SUCCESS, 4),
            Err(status) => request.complete(status),
        }
        Handled::Handled
    }
}

impl Counter {
    /// The count. A Method: fails with `STATUS_INVALID_DEVICE_STATE` once the Module closes.
    pub fn count(&self) -> NtResult<u32> {
        let module = self.enter()?;
        let count = *module.lock();
        Ok(count)
    }
}

/// The driver's Modules-add callback (C DMF's `EvtDmfDeviceModulesAdd`).
///
/// # Errors
///
/// The status of a failed interface creation.
pub fn modules_add(device: &Device, modules: &mut ModuleInit) -> NtResult<()> {
    device.create_interface(GUID_DEVINTERFACE_COUNTER, None)?;
    modules.add(Counter::with(CounterConfig { start: 0 }));
    Ok(())
}

// DriverEntry and EvtDriverDeviceAdd (C DMF's DMF_DEFAULT_DRIVERENTRY / DMF_DEFAULT_DEVICEADD).
dmf::driver!(modules_add = modules_add);
