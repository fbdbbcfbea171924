//! The HID parser on the kernel: `hidparse.sys`'s `HidP_*` routines over the preparsed data
//! hidclass returned.
//!
//! | Item | Calls |
//! |---|---|
//! | [`HidParser`] | `HidP_GetCaps`, `HidP_InitializeReportForID`, `HidP_GetUsages`, `HidP_SetUsages`, `HidP_GetUsageValue`, `HidP_SetUsageValue` |
//!
//! The routines are imported from `HIDPARSE.SYS` with `raw-dylib` (as the NT layer imports
//! ntoskrnl.exe: rustc writes the import library, `+verbatim` keeps the DLL name); the
//! structures and enumerators are wdk-sys's `hid` bindings. The `HIDP_STATUS_*` values come back
//! as the `NtStatus` the routine returned (they are `NTSTATUS` values of `FACILITY_HID_ERROR_CODE`;
//! `HIDP_STATUS_SUCCESS` is a success status, not 0).

use core::mem::{offset_of, size_of};

use static_assertions::const_assert_eq;
use wdk_sys::hid::{
    _HIDP_REPORT_TYPE, HIDP_CAPS, HIDP_REPORT_TYPE, HID_COLLECTION_INFORMATION,
    PHIDP_PREPARSED_DATA,
};
use wdk_sys::{NTSTATUS, PCHAR, PULONG, PUSHORT, UCHAR, ULONG, USHORT};

use crate::platform::contract::hid::{
    HidCaps, HidCollectionInformation, HidReportType, PlatformHidParser,
};
use crate::status::{NtResult, NtStatus};

// HIDP_CAPS: five USAGE/USHORT members, USHORT Reserved[17], ten USHORT counts.
const_assert_eq!(size_of::<HIDP_CAPS>(), 64);
const_assert_eq!(offset_of!(HIDP_CAPS, NumberLinkCollectionNodes), 44);
// The contract reads HID_COLLECTION_INFORMATION from the bytes hidclass returns: its layout.
const_assert_eq!(
    size_of::<HID_COLLECTION_INFORMATION>(),
    HidCollectionInformation::SIZE
);
const_assert_eq!(offset_of!(HID_COLLECTION_INFORMATION, Polled), 4);
const_assert_eq!(offset_of!(HID_COLLECTION_INFORMATION, VendorID), 6);
const_assert_eq!(offset_of!(HID_COLLECTION_INFORMATION, ProductID), 8);
const_assert_eq!(offset_of!(HID_COLLECTION_INFORMATION, VersionNumber), 10);

/// `HIDP_LINK_COLLECTION_UNSPECIFIED`: any link collection.
const LINK_COLLECTION_UNSPECIFIED: USHORT = 0; // not in the bindings: a cast macro of hidpi.h

#[link(name = "HIDPARSE.SYS", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    /// `NTSTATUS HidP_GetCaps(PHIDP_PREPARSED_DATA, PHIDP_CAPS)`.
    fn HidP_GetCaps(preparsed: PHIDP_PREPARSED_DATA, caps: *mut HIDP_CAPS) -> NTSTATUS;
    /// `NTSTATUS HidP_InitializeReportForID(HIDP_REPORT_TYPE, UCHAR, PHIDP_PREPARSED_DATA,
    /// PCHAR, ULONG)`.
    fn HidP_InitializeReportForID(
        kind: HIDP_REPORT_TYPE,
        report_id: UCHAR,
        preparsed: PHIDP_PREPARSED_DATA,
        report: PCHAR,
        report_length: ULONG,
    ) -> NTSTATUS;
    /// `NTSTATUS HidP_GetUsages(HIDP_REPORT_TYPE, USAGE, USHORT, PUSAGE, PULONG,
    /// PHIDP_PREPARSED_DATA, PCHAR, ULONG)`.
    fn HidP_GetUsages(
        kind: HIDP_REPORT_TYPE,
        usage_page: USHORT,
        link_collection: USHORT,
        usage_list: PUSHORT,
        usage_length: PULONG,
        preparsed: PHIDP_PREPARSED_DATA,
        report: PCHAR,
        report_length: ULONG,
    ) -> NTSTATUS;
    /// `NTSTATUS HidP_SetUsages(…)`, the parameters of `HidP_GetUsages`.
    fn HidP_SetUsages(
        kind: HIDP_REPORT_TYPE,
        usage_page: USHORT,
        link_collection: USHORT,
        usage_list: PUSHORT,
        usage_length: PULONG,
        preparsed: PHIDP_PREPARSED_DATA,
        report: PCHAR,
        report_length: ULONG,
    ) -> NTSTATUS;
    /// `NTSTATUS HidP_GetUsageValue(HIDP_REPORT_TYPE, USAGE, USHORT, USAGE, PULONG,
    /// PHIDP_PREPARSED_DATA, PCHAR, ULONG)`.
    fn HidP_GetUsageValue(
        kind: HIDP_REPORT_TYPE,
        usage_page: USHORT,
        link_collection: USHORT,
        usage: USHORT,
        value: PULONG,
        preparsed: PHIDP_PREPARSED_DATA,
        report: PCHAR,
        report_length: ULONG,
    ) -> NTSTATUS;
    /// `NTSTATUS HidP_SetUsageValue(HIDP_REPORT_TYPE, USAGE, USHORT, USAGE, ULONG,
    /// PHIDP_PREPARSED_DATA, PCHAR, ULONG)`.
    fn HidP_SetUsageValue(
        kind: HIDP_REPORT_TYPE,
        usage_page: USHORT,
        link_collection: USHORT,
        usage: USHORT,
        value: ULONG,
        preparsed: PHIDP_PREPARSED_DATA,
        report: PCHAR,
        report_length: ULONG,
    ) -> NTSTATUS;
}

/// `hidparse.sys` (see [`PlatformHidParser`]).
#[derive(Debug)]
pub struct HidParser;

fn kind(k: HidReportType) -> HIDP_REPORT_TYPE {
    match k {
        HidReportType::Input => _HIDP_REPORT_TYPE::HidP_Input,
        HidReportType::Output => _HIDP_REPORT_TYPE::HidP_Output,
        HidReportType::Feature => _HIDP_REPORT_TYPE::HidP_Feature,
    }
}

/// A buffer length as the routines' `ULONG`.
fn ulong(length: usize) -> NtResult<ULONG> {
    ULONG::try_from(length).map_err(|_| NtStatus::INVALID_PARAMETER)
}

/// The preparsed data as the routines take it (they only read it).
fn preparsed_ptr(preparsed: &[u8]) -> PHIDP_PREPARSED_DATA {
    preparsed.as_ptr().cast_mut().cast()
}

/// A routine's status: success values (`HIDP_STATUS_SUCCESS`) are `Ok`.
fn result(status: NTSTATUS) -> NtResult<()> {
    let status = NtStatus::from_raw(status);
    if status.is_success() {
        Ok(())
    } else {
        Err(status)
    }
}

impl PlatformHidParser for HidParser {
    fn get_caps(preparsed: &[u8]) -> NtResult<HidCaps> {
        let mut c = HIDP_CAPS::default();
        // SAFETY: the preparsed data is a live buffer the routine only reads (it validates its
        // signature); `c` is our local HIDP_CAPS (size asserted above).
        result(unsafe { HidP_GetCaps(preparsed_ptr(preparsed), &raw mut c) })?;
        Ok(HidCaps {
            usage: c.Usage,
            usage_page: c.UsagePage,
            input_report_byte_length: c.InputReportByteLength,
            output_report_byte_length: c.OutputReportByteLength,
            feature_report_byte_length: c.FeatureReportByteLength,
            number_link_collection_nodes: c.NumberLinkCollectionNodes,
            number_input_button_caps: c.NumberInputButtonCaps,
            number_input_value_caps: c.NumberInputValueCaps,
            number_input_data_indices: c.NumberInputDataIndices,
            number_output_button_caps: c.NumberOutputButtonCaps,
            number_output_value_caps: c.NumberOutputValueCaps,
            number_output_data_indices: c.NumberOutputDataIndices,
            number_feature_button_caps: c.NumberFeatureButtonCaps,
            number_feature_value_caps: c.NumberFeatureValueCaps,
            number_feature_data_indices: c.NumberFeatureDataIndices,
        })
    }

    fn initialize_report_for_id(
        k: HidReportType,
        report_id: u8,
        preparsed: &[u8],
        report: &mut [u8],
    ) -> NtResult<()> {
        let length = ulong(report.len())?;
        // SAFETY: the routine reads the preparsed data and writes at most `length` bytes of
        // `report`, our exclusive borrow.
        result(unsafe {
            HidP_InitializeReportForID(
                kind(k),
                report_id,
                preparsed_ptr(preparsed),
                report.as_mut_ptr().cast(),
                length,
            )
        })
    }

    fn get_usages(
        k: HidReportType,
        usage_page: u16,
        preparsed: &[u8],
        report: &[u8],
        usages: &mut [u16],
    ) -> NtResult<usize> {
        let length = ulong(report.len())?;
        let mut count = ulong(usages.len())?;
        // SAFETY: the routine reads the preparsed data and `report` (it takes a `PCHAR` but does
        // not write a report it gets usages from) and writes at most `count` entries of
        // `usages`, our exclusive borrow; `count` is our local.
        result(unsafe {
            HidP_GetUsages(
                kind(k),
                usage_page,
                LINK_COLLECTION_UNSPECIFIED,
                usages.as_mut_ptr(),
                &raw mut count,
                preparsed_ptr(preparsed),
                report.as_ptr().cast_mut().cast(),
                length,
            )
        })?;
        usize::try_from(count).map_err(|_| NtStatus::INTERNAL_ERROR)
    }

    fn set_usages(
        k: HidReportType,
        usage_page: u16,
        usages: &[u16],
        preparsed: &[u8],
        report: &mut [u8],
    ) -> NtResult<()> {
        let length = ulong(report.len())?;
        let mut count = ulong(usages.len())?;
        // SAFETY: the routine reads `count` entries of `usages` (a `PUSAGE` it does not write
        // when setting) and the preparsed data, and writes at most `length` bytes of `report`,
        // our exclusive borrow.
        result(unsafe {
            HidP_SetUsages(
                kind(k),
                usage_page,
                LINK_COLLECTION_UNSPECIFIED,
                usages.as_ptr().cast_mut(),
                &raw mut count,
                preparsed_ptr(preparsed),
                report.as_mut_ptr().cast(),
                length,
            )
        })
    }

    fn get_usage_value(
        k: HidReportType,
        usage_page: u16,
        usage: u16,
        preparsed: &[u8],
        report: &[u8],
    ) -> NtResult<u32> {
        let length = ulong(report.len())?;
        let mut value: ULONG = 0;
        // SAFETY: the routine reads the preparsed data and `length` bytes of `report` (not
        // written) and writes `value`, our local.
        result(unsafe {
            HidP_GetUsageValue(
                kind(k),
                usage_page,
                LINK_COLLECTION_UNSPECIFIED,
                usage,
                &raw mut value,
                preparsed_ptr(preparsed),
                report.as_ptr().cast_mut().cast(),
                length,
            )
        })?;
        Ok(value)
    }

    fn set_usage_value(
        k: HidReportType,
        usage_page: u16,
        usage: u16,
        value: u32,
        preparsed: &[u8],
        report: &mut [u8],
    ) -> NtResult<()> {
        let length = ulong(report.len())?;
        // SAFETY: the routine reads the preparsed data and writes at most `length` bytes of
        // `report`, our exclusive borrow.
        result(unsafe {
            HidP_SetUsageValue(
                kind(k),
                usage_page,
                LINK_COLLECTION_UNSPECIFIED,
                usage,
                value,
                preparsed_ptr(preparsed),
                report.as_mut_ptr().cast(),
                length,
            )
        })
    }
}
