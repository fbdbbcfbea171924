//! The HID parser (`hidparse.sys`) over a top-level collection's preparsed data, and the HID
//! class interface a driver opens collections by (`hidclass.h`).
//!
//! | Item | Trait / type | kmdf mapping |
//! |---|---|---|
//! | HID parser | [`PlatformHidParser`] | `HidP_GetCaps`, `HidP_InitializeReportForID`, `HidP_GetUsages`, `HidP_SetUsages`, `HidP_GetUsageValue`, `HidP_SetUsageValue`, imported from `HIDPARSE.SYS` |
//! | collection information | [`HidCollectionInformation`] | `HID_COLLECTION_INFORMATION` (`IOCTL_HID_GET_COLLECTION_INFORMATION`'s output) |
//!
//! Preparsed data is opaque: a driver gets it from hidclass with
//! `IOCTL_HID_GET_COLLECTION_DESCRIPTOR` (its size is `DescriptorSize` of the collection
//! information) and hands it to the parser unchanged. On kmdf-sim it is the simulator's own
//! layout, which kmdf-sim's HID parser reads. Every routine works on caller buffers at
//! `IRQL <= DISPATCH_LEVEL` and allocates nothing. The link collection argument of the
//! `HidP_*` routines is always 0 (`HIDP_LINK_COLLECTION_UNSPECIFIED`: any collection).
//!
//! The HID class's IOCTL codes and interface class are public values of `hidclass.h`, which a
//! driver's own code names (as C drivers do); they are written here from the header's
//! `HID_*_CTL_CODE` macros (`CTL_CODE(FILE_DEVICE_KEYBOARD, id, method, FILE_ANY_ACCESS)`) and
//! checked against the header's values.

use super::device::Guid;
use crate::status::NtResult;

/// `GUID_DEVINTERFACE_HID` (`hidclass.h`): {4D1E55B2-F16F-11CF-88CB-001111000030}.
pub const GUID_DEVINTERFACE_HID: Guid = Guid::new(
    0x4D1E_55B2,
    0xF16F,
    0x11CF,
    [0x88, 0xCB, 0x00, 0x11, 0x11, 0x00, 0x00, 0x30],
);

/// `CTL_CODE(FILE_DEVICE_KEYBOARD, id, method, FILE_ANY_ACCESS)`.
const fn hid_code(id: u32, method: u32) -> u32 {
    (0x0B << 16) | (id << 2) | method
}

/// `IOCTL_HID_GET_COLLECTION_INFORMATION` = `HID_BUFFER_CTL_CODE(106)`.
pub const IOCTL_HID_GET_COLLECTION_INFORMATION: u32 = hid_code(106, 0);
/// `IOCTL_HID_GET_COLLECTION_DESCRIPTOR` = `HID_CTL_CODE(100)` (`METHOD_NEITHER`).
pub const IOCTL_HID_GET_COLLECTION_DESCRIPTOR: u32 = hid_code(100, 3);
/// `IOCTL_HID_GET_FEATURE` = `HID_OUT_CTL_CODE(100)`.
pub const IOCTL_HID_GET_FEATURE: u32 = hid_code(100, 2);
/// `IOCTL_HID_SET_FEATURE` = `HID_IN_CTL_CODE(100)`.
pub const IOCTL_HID_SET_FEATURE: u32 = hid_code(100, 1);
/// `IOCTL_HID_SET_OUTPUT_REPORT` = `HID_IN_CTL_CODE(101)`.
pub const IOCTL_HID_SET_OUTPUT_REPORT: u32 = hid_code(101, 1);
/// `IOCTL_HID_GET_INPUT_REPORT` = `HID_OUT_CTL_CODE(104)`.
pub const IOCTL_HID_GET_INPUT_REPORT: u32 = hid_code(104, 2);

const _: () = assert!(IOCTL_HID_GET_COLLECTION_INFORMATION == 0x000B_01A8);
const _: () = assert!(IOCTL_HID_GET_COLLECTION_DESCRIPTOR == 0x000B_0193);
const _: () = assert!(IOCTL_HID_GET_FEATURE == 0x000B_0192);
const _: () = assert!(IOCTL_HID_SET_FEATURE == 0x000B_0191);
const _: () = assert!(IOCTL_HID_SET_OUTPUT_REPORT == 0x000B_0195);
const _: () = assert!(IOCTL_HID_GET_INPUT_REPORT == 0x000B_01A2);

/// `HID_COLLECTION_INFORMATION`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HidCollectionInformation {
    /// `DescriptorSize`: bytes of preparsed data.
    pub descriptor_size: u32,
    /// `Polled`.
    pub polled: bool,
    /// `VendorID`.
    pub vendor_id: u16,
    /// `ProductID`.
    pub product_id: u16,
    /// `VersionNumber`.
    pub version_number: u16,
}

impl HidCollectionInformation {
    /// `sizeof(HID_COLLECTION_INFORMATION)`.
    pub const SIZE: usize = 12;

    /// The structure from the bytes hidclass returned (little-endian, the header's layout:
    /// `ULONG`, `BOOLEAN`, `UCHAR`, three `USHORT`s); `None` if fewer than [`Self::SIZE`].
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b = b.get(..Self::SIZE)?;
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        Some(HidCollectionInformation {
            descriptor_size: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            polled: b[4] != 0,
            vendor_id: u16_at(6),
            product_id: u16_at(8),
            version_number: u16_at(10),
        })
    }
}

/// `HIDP_REPORT_TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HidReportType {
    /// `HidP_Input`.
    Input,
    /// `HidP_Output`.
    Output,
    /// `HidP_Feature`.
    Feature,
}

/// `HIDP_CAPS` (the reserved members left out).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HidCaps {
    /// `Usage` of the top-level collection.
    pub usage: u16,
    /// `UsagePage` of the top-level collection.
    pub usage_page: u16,
    /// `InputReportByteLength` (the report ID byte included).
    pub input_report_byte_length: u16,
    /// `OutputReportByteLength`.
    pub output_report_byte_length: u16,
    /// `FeatureReportByteLength`.
    pub feature_report_byte_length: u16,
    /// `NumberLinkCollectionNodes`.
    pub number_link_collection_nodes: u16,
    /// `NumberInputButtonCaps`.
    pub number_input_button_caps: u16,
    /// `NumberInputValueCaps`.
    pub number_input_value_caps: u16,
    /// `NumberInputDataIndices`.
    pub number_input_data_indices: u16,
    /// `NumberOutputButtonCaps`.
    pub number_output_button_caps: u16,
    /// `NumberOutputValueCaps`.
    pub number_output_value_caps: u16,
    /// `NumberOutputDataIndices`.
    pub number_output_data_indices: u16,
    /// `NumberFeatureButtonCaps`.
    pub number_feature_button_caps: u16,
    /// `NumberFeatureValueCaps`.
    pub number_feature_value_caps: u16,
    /// `NumberFeatureDataIndices`.
    pub number_feature_data_indices: u16,
}

impl HidCaps {
    /// The byte length of reports of `kind`.
    pub fn report_length(&self, kind: HidReportType) -> u16 {
        match kind {
            HidReportType::Input => self.input_report_byte_length,
            HidReportType::Output => self.output_report_byte_length,
            HidReportType::Feature => self.feature_report_byte_length,
        }
    }
}

/// The HID parser. Errors are the parser's `HIDP_STATUS_*` values (`hidpi.h`), passed through
/// as `NtStatus`: `HIDP_STATUS_INVALID_PREPARSED_DATA`, `…_INVALID_REPORT_LENGTH` (a report
/// whose length is not the caps' length of its type), `…_REPORT_DOES_NOT_EXIST`,
/// `…_USAGE_NOT_FOUND`, `…_INCOMPATIBLE_REPORT_ID`, `…_BUFFER_TOO_SMALL`,
/// `…_VALUE_OUT_OF_RANGE`. A buffer longer than `u32::MAX` bytes is refused with
/// `STATUS_INVALID_PARAMETER` before the call.
pub trait PlatformHidParser {
    /// `HidP_GetCaps`.
    ///
    /// # Errors
    ///
    /// See the trait.
    fn get_caps(preparsed: &[u8]) -> NtResult<HidCaps>;

    /// `HidP_InitializeReportForID`: `report` zeroed (null values set) with `report_id` first.
    ///
    /// # Errors
    ///
    /// See the trait.
    fn initialize_report_for_id(
        kind: HidReportType,
        report_id: u8,
        preparsed: &[u8],
        report: &mut [u8],
    ) -> NtResult<()>;

    /// `HidP_GetUsages`: the buttons of `usage_page` set in `report` into `usages`; how many.
    ///
    /// # Errors
    ///
    /// See the trait.
    fn get_usages(
        kind: HidReportType,
        usage_page: u16,
        preparsed: &[u8],
        report: &[u8],
        usages: &mut [u16],
    ) -> NtResult<usize>;

    /// `HidP_SetUsages`: sets the buttons `usages` of `usage_page` in `report`.
    ///
    /// # Errors
    ///
    /// See the trait.
    fn set_usages(
        kind: HidReportType,
        usage_page: u16,
        usages: &[u16],
        preparsed: &[u8],
        report: &mut [u8],
    ) -> NtResult<()>;

    /// `HidP_GetUsageValue`: the raw value of (`usage_page`, `usage`) in `report`.
    ///
    /// # Errors
    ///
    /// See the trait.
    fn get_usage_value(
        kind: HidReportType,
        usage_page: u16,
        usage: u16,
        preparsed: &[u8],
        report: &[u8],
    ) -> NtResult<u32>;

    /// `HidP_SetUsageValue`: writes the raw `value` of (`usage_page`, `usage`) into `report`.
    ///
    /// # Errors
    ///
    /// See the trait.
    fn set_usage_value(
        kind: HidReportType,
        usage_page: u16,
        usage: u16,
        value: u32,
        preparsed: &[u8],
        report: &mut [u8],
    ) -> NtResult<()>;
}
