//! A simulated HID collection: what hidclass and hidparse.sys show a driver that opens a
//! top-level collection of a HID device.
//!
//! * [`device`] — [`HidDevice`], the hardware: a small device modelled on the OSR FX2 board
//!   (the eight switches as buttons in input report 1, the light bar as output and feature
//!   report 2, a read-only version as feature report 3), with its report descriptor;
//! * [`parser`] — the HID parser: the descriptor into the simulator's own preparsed-data layout,
//!   and `HidP_GetCaps`, `HidP_InitializeReportForID`, `HidP_Get/SetUsages`,
//!   `HidP_Get/SetUsageValue` over it;
//! * [`driver`] — the class side: a root-enumerated device node exposing
//!   [`GUID_DEVINTERFACE_HID`] that answers the HID class IOCTLs and reads.
//!
//! The IOCTL codes are those of `hidclass.h` (`HID_CTL_CODE` and friends: device type
//! `FILE_DEVICE_KEYBOARD`, `FILE_ANY_ACCESS`), written out here as the FX2 module writes its
//! `public.h` codes.
//!
//! ```
//! use kmdf_sim::hid::{self, HidDevice, HidDeviceConfig};
//! use kmdf_sim::Machine;
//!
//! let machine = Machine::new();
//! let device = HidDevice::new(HidDeviceConfig::default());
//! let node = hid::driver::install(&machine, &device).unwrap();
//! device.set_switches(0b1010_0000);
//! let caps = hid::parser::get_caps(&device.preparsed_data()).unwrap();
//! assert_eq!(caps.input_report_byte_length, 2);
//! node.remove().unwrap();
//! ```

pub mod device;
pub mod driver;
pub mod parser;

pub use device::{HidDevice, HidDeviceConfig};

use crate::guid::Guid;

/// `GUID_DEVINTERFACE_HID` (`hidclass.h`): {4D1E55B2-F16F-11CF-88CB-001111000030}.
pub const GUID_DEVINTERFACE_HID: Guid = Guid::new(
    0x4D1E_55B2,
    0xF16F,
    0x11CF,
    [0x88, 0xCB, 0x00, 0x11, 0x11, 0x00, 0x00, 0x30],
);

/// `FILE_DEVICE_KEYBOARD`.
const FILE_DEVICE_KEYBOARD: u32 = 0x0B;
const fn ctl_code(function: u32, method: u32) -> u32 {
    (FILE_DEVICE_KEYBOARD << 16) | (function << 2) | method
}
/// `HID_CTL_CODE(id)`: `METHOD_NEITHER`.
const fn hid_ctl_code(id: u32) -> u32 {
    ctl_code(id, 3)
}
/// `HID_BUFFER_CTL_CODE(id)`: `METHOD_BUFFERED`.
const fn hid_buffer_ctl_code(id: u32) -> u32 {
    ctl_code(id, 0)
}
/// `HID_IN_CTL_CODE(id)`: `METHOD_IN_DIRECT`.
const fn hid_in_ctl_code(id: u32) -> u32 {
    ctl_code(id, 1)
}
/// `HID_OUT_CTL_CODE(id)`: `METHOD_OUT_DIRECT`.
const fn hid_out_ctl_code(id: u32) -> u32 {
    ctl_code(id, 2)
}

/// `IOCTL_HID_GET_COLLECTION_INFORMATION` = `HID_BUFFER_CTL_CODE(106)`.
pub const IOCTL_HID_GET_COLLECTION_INFORMATION: u32 = hid_buffer_ctl_code(106);
/// `IOCTL_HID_GET_COLLECTION_DESCRIPTOR` = `HID_CTL_CODE(100)`.
pub const IOCTL_HID_GET_COLLECTION_DESCRIPTOR: u32 = hid_ctl_code(100);
/// `IOCTL_HID_GET_FEATURE` = `HID_OUT_CTL_CODE(100)`.
pub const IOCTL_HID_GET_FEATURE: u32 = hid_out_ctl_code(100);
/// `IOCTL_HID_SET_FEATURE` = `HID_IN_CTL_CODE(100)`.
pub const IOCTL_HID_SET_FEATURE: u32 = hid_in_ctl_code(100);
/// `IOCTL_HID_GET_INPUT_REPORT` = `HID_OUT_CTL_CODE(104)`.
pub const IOCTL_HID_GET_INPUT_REPORT: u32 = hid_out_ctl_code(104);
/// `IOCTL_HID_SET_OUTPUT_REPORT` = `HID_IN_CTL_CODE(101)`.
pub const IOCTL_HID_SET_OUTPUT_REPORT: u32 = hid_in_ctl_code(101);

/// `sizeof(HID_COLLECTION_INFORMATION)`: `DescriptorSize` (u32), `Polled`, `Reserved1`,
/// `VendorID`, `ProductID`, `VersionNumber` (u16 each).
pub const HID_COLLECTION_INFORMATION_SIZE: usize = 12;

// The values `hidclass.h` gives, checked at compile time.
const _: () = assert!(IOCTL_HID_GET_COLLECTION_INFORMATION == 0x000B_01A8);
const _: () = assert!(IOCTL_HID_GET_COLLECTION_DESCRIPTOR == 0x000B_0193);
const _: () = assert!(IOCTL_HID_GET_FEATURE == 0x000B_0192);
const _: () = assert!(IOCTL_HID_SET_FEATURE == 0x000B_0191);
