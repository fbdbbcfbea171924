//! # VirtualBus — a DMF bus driver that enumerates virtual OSR USB-FX2 boards
//!
//! A bus driver in the manner of the WDK's toaster bus sample (`general/toaster/toastDrv/kmdf/bus`
//! in Microsoft's Windows-driver-samples), written with DMF: its device (root-enumerated,
//! `ROOT\VIRTUALBUS`) reports child PDOs through the **Pdo** Module (`DMF_Pdo`), and an
//! application plugs, unplugs and ejects them through the bus's control interface — what the
//! toaster's `enum` tool does with `-p`, `-u` and `-e`.
//!
//! * **Pdo** (`DMF_Pdo`), no static records: every child is plugged at run time with
//!   `DMF_Pdo_DevicePlug`. A child has the hardware id [`CHILD_HARDWARE_ID`]
//!   (`DmfVirtualBus\OsrFx2`), its serial number as instance id and `UINumber`, and the
//!   description [`CHILD_DESCRIPTION`]. The PnP manager loads the function driver the child's
//!   hardware id selects: the OSR USB-FX2 function driver (`usb/kmdf_fx2`), each child driving
//!   the board behind it.
//! * **IoctlHandler** (`DMF_IoctlHandler`): creates the bus's device interface
//!   [`GUID_DEVINTERFACE_VIRTUALBUS`], opened by administrators only
//!   (`IoctlHandler_AccessModeFilterAdministratorOnly`), and validates its three IOCTLs — each
//!   takes the board's serial number, a little-endian `ULONG`, 1 to [`MAXIMUM_SERIAL_NUMBER`]:
//!
//!   | IOCTL | Pdo Method | `enum` |
//!   |---|---|---|
//!   | [`IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE`] | `DMF_Pdo_DevicePlug` | `-p` |
//!   | [`IOCTL_VIRTUALBUS_UNPLUG_HARDWARE`] | `DMF_Pdo_DeviceUnplugUsingSerialNumber` (`WdfPdoMarkMissing`) | `-u` |
//!   | [`IOCTL_VIRTUALBUS_EJECT_HARDWARE`] | `DMF_Pdo_DeviceEjectUsingSerialNumber` (`WdfPdoRequestEject`) | `-e` |
//!
//!   A serial number in use is refused by the Pdo Module (`STATUS_INVALID_PARAMETER`), one that
//!   no child has answers `STATUS_NOT_FOUND`; the bound on the serial number bounds the number of
//!   children an application can make the bus create.
//!
//! The IOCTL handlers reach the Pdo Module through a slot the Pdo Module's
//! `EvtModuleOnDeviceNotificationPostOpen` fills and its `…PreClose` empties (what a C driver
//! keeps in its device context from `ResultantDmfModule`): a request that arrives while the
//! Module is not open gets `STATUS_INVALID_DEVICE_STATE`.
//!
//! Removing the bus removes its children first (the PnP manager's order), so unloading needs no
//! code here. The driver code is the same on both backends; the simulator runner is the
//! `virtual-bus-sim` binary of this package (`cargo run -p virtual-bus`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;

use dmf::core::module::ModuleInit;
use dmf::core::platform::contract::device::Guid;
use dmf::core::platform::Device;
use dmf::core::sync::{LockKind, ModuleLock};
use dmf::modules::ioctl_handler::{
    IoctlAccessMode, IoctlCall, IoctlEntry, IoctlHandler, IoctlHandlerConfig, IoctlResult,
    IoctlTable,
};
use dmf::modules::pdo::{Pdo, PdoConfig};
use dmf::prelude::*;

/// `GUID_DEVINTERFACE_VIRTUALBUS` = `{7B1A6E2C-3F4D-4C8B-9E51-D2A0F6C3B847}`: the bus's control
/// interface.
pub const GUID_DEVINTERFACE_VIRTUALBUS: Guid = Guid::new(
    0x7B1A_6E2C,
    0x3F4D,
    0x4C8B,
    [0x9E, 0x51, 0xD2, 0xA0, 0xF6, 0xC3, 0xB8, 0x47],
);

/// `CTL_CODE(FILE_DEVICE_BUS_EXTENDER, 0, METHOD_BUFFERED, FILE_READ_DATA)` (the toaster's
/// `IOCTL_BUSENUM_PLUGIN_HARDWARE`): plug in the board with this serial number.
pub const IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE: u32 = 0x002A_4000;
/// `CTL_CODE(FILE_DEVICE_BUS_EXTENDER, 1, METHOD_BUFFERED, FILE_READ_DATA)`
/// (`IOCTL_BUSENUM_UNPLUG_HARDWARE`): report the board missing.
pub const IOCTL_VIRTUALBUS_UNPLUG_HARDWARE: u32 = 0x002A_4004;
/// `CTL_CODE(FILE_DEVICE_BUS_EXTENDER, 2, METHOD_BUFFERED, FILE_READ_DATA)`
/// (`IOCTL_BUSENUM_EJECT_HARDWARE`): eject the board.
pub const IOCTL_VIRTUALBUS_EJECT_HARDWARE: u32 = 0x002A_4008;

/// The three control IOCTLs, in the order of the table.
pub const CONTROL_IOCTLS: [u32; 3] = [
    IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE,
    IOCTL_VIRTUALBUS_UNPLUG_HARDWARE,
    IOCTL_VIRTUALBUS_EJECT_HARDWARE,
];

/// Every child's hardware id (and device id): the models line of the FX2 function driver's INF
/// names it.
pub const CHILD_HARDWARE_ID: &str = "DmfVirtualBus\\OsrFx2";
/// The children's description, the serial number its argument.
pub const CHILD_DESCRIPTION: &str = "Virtual OSR USB-FX2 board %u";
/// The children's location text.
pub const CHILD_LOCATION: &str = "DMF virtual bus";
/// The largest serial number a board may have (the smallest is 1, as in the toaster bus).
pub const MAXIMUM_SERIAL_NUMBER: u32 = 16;

/// The trace source of this driver's lines (`VirtualBus: …`; `dmf::trace!`).
const SOURCE: &str = "VirtualBus";

/// The Pdo Module's handle while it is open.
struct PdoSlot(ModuleLock<Option<Pdo>>);

impl PdoSlot {
    fn get(&self) -> Option<Pdo> {
        self.0.lock().clone()
    }

    fn set(&self, pdo: Option<Pdo>) {
        let old = core::mem::replace(&mut *self.0.lock(), pdo);
        drop(old);
    }
}

/// The serial number in a control IOCTL's input: a little-endian `ULONG` in
/// `1..=MAXIMUM_SERIAL_NUMBER`.
///
/// # Errors
///
/// `STATUS_INVALID_PARAMETER` for a number out of range (the table guarantees four bytes).
pub fn serial_number_from(input: &[u8]) -> NtResult<u32> {
    let bytes: [u8; 4] = input
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(NtStatus::INVALID_PARAMETER)?;
    let serial = u32::from_le_bytes(bytes);
    if serial == 0 || serial > MAXIMUM_SERIAL_NUMBER {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    Ok(serial)
}

/// What one control IOCTL does to the bus (`Bus_IoCtl` of the toaster bus).
fn control(slot: &PdoSlot, call: &mut IoctlCall<'_>) -> IoctlResult {
    let serial = match call.with_input(serial_number_from) {
        Ok(Ok(serial)) => serial,
        Ok(Err(status)) | Err(status) => return IoctlResult::status(status),
    };
    let Some(pdo) = slot.get() else {
        return IoctlResult::status(NtStatus::INVALID_DEVICE_STATE);
    };
    let (what, result) = match call.code() {
        IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE => (
            "plug in",
            pdo.device_plug(&[CHILD_HARDWARE_ID], &[], CHILD_DESCRIPTION, serial)
                .map(drop),
        ),
        IOCTL_VIRTUALBUS_UNPLUG_HARDWARE => {
            ("unplug", pdo.device_unplug_using_serial_number(serial))
        }
        IOCTL_VIRTUALBUS_EJECT_HARDWARE => ("eject", pdo.device_eject_using_serial_number(serial)),
        _ => ("?", Err(NtStatus::INVALID_DEVICE_REQUEST)),
    };
    match result {
        Ok(()) => {
            dmf::trace!(SOURCE, "{what} board {serial}: done");
            IoctlResult::success(0)
        }
        Err(status) => {
            dmf::trace!(
                Warning,
                SOURCE,
                "{what} board {serial} failed with {status:?}"
            );
            IoctlResult::status(status)
        }
    }
}

/// `DmfDeviceModulesAdd`: the Pdo Module and the control interface.
///
/// # Errors
///
/// `STATUS_INSUFFICIENT_RESOURCES` if the slot, a lock or the IOCTL table cannot be allocated;
/// Module creation errors are reported by `modules_create`.
pub fn modules_add(_device: &Device, modules: &mut ModuleInit) -> NtResult<()> {
    let slot = fallible::try_arc(PdoSlot(ModuleLock::new(LockKind::Spin, None)?))?;
    let opened = Arc::clone(&slot);
    let closing = Arc::clone(&slot);
    modules.add(
        Pdo::with(PdoConfig {
            device_location: CHILD_LOCATION,
            ..PdoConfig::default()
        })
        .on_post_open(move |pdo| opened.set(Some(pdo.clone())))
        .on_pre_close(move |_| closing.set(None)),
    );
    let mut entries = fallible::try_vec_with_capacity(CONTROL_IOCTLS.len())?;
    for code in CONTROL_IOCTLS {
        let slot = Arc::clone(&slot);
        entries.try_push(IoctlEntry::new(code, 4, 0, move |call| {
            control(&slot, call)
        })?)?;
    }
    modules.add(IoctlHandler::with(IoctlHandlerConfig {
        table: IoctlTable::new(entries)?,
        access_mode: IoctlAccessMode::AdministratorOnly,
        device_interface: Some(GUID_DEVINTERFACE_VIRTUALBUS),
        ..IoctlHandlerConfig::default()
    }));
    Ok(())
}

dmf::driver!(modules_add = modules_add);

/// The scripted session on a simulated machine with virtual OSR FX2 boards: the runner's script,
/// the end-to-end tests' and kmdf-host's (which can run it against the linked `.sys` image).
#[cfg(feature = "sim")]
pub mod session;

// The session runs on the host (kmdf-sim), never in the driver image.
#[cfg(feature = "sim")]
extern crate std;
