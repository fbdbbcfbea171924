//! The HID parser on kmdf-sim: `kmdf_sim::hid::parser` over the simulator's preparsed layout.

use kmdf_sim::hid::parser::{self, ReportType};

use super::from_sim_status;
use crate::platform::contract::hid::{HidCaps, HidReportType, PlatformHidParser};
use crate::status::NtResult;

/// `hidparse.sys` of the simulated machine (see [`PlatformHidParser`]).
#[derive(Debug)]
pub struct HidParser;

fn kind(k: HidReportType) -> ReportType {
    match k {
        HidReportType::Input => ReportType::Input,
        HidReportType::Output => ReportType::Output,
        HidReportType::Feature => ReportType::Feature,
    }
}

impl PlatformHidParser for HidParser {
    fn get_caps(preparsed: &[u8]) -> NtResult<HidCaps> {
        let c = parser::get_caps(preparsed).map_err(from_sim_status)?;
        Ok(HidCaps {
            usage: c.usage,
            usage_page: c.usage_page,
            input_report_byte_length: c.input_report_byte_length,
            output_report_byte_length: c.output_report_byte_length,
            feature_report_byte_length: c.feature_report_byte_length,
            number_link_collection_nodes: 1,
            number_input_button_caps: c.number_input_button_caps,
            number_input_value_caps: c.number_input_value_caps,
            number_input_data_indices: 0,
            number_output_button_caps: c.number_output_button_caps,
            number_output_value_caps: c.number_output_value_caps,
            number_output_data_indices: 0,
            number_feature_button_caps: c.number_feature_button_caps,
            number_feature_value_caps: c.number_feature_value_caps,
            number_feature_data_indices: 0,
        })
    }

    fn initialize_report_for_id(
        k: HidReportType,
        report_id: u8,
        preparsed: &[u8],
        report: &mut [u8],
    ) -> NtResult<()> {
        parser::initialize_report_for_id(kind(k), report_id, preparsed, report)
            .map_err(from_sim_status)
    }

    fn get_usages(
        k: HidReportType,
        usage_page: u16,
        preparsed: &[u8],
        report: &[u8],
        usages: &mut [u16],
    ) -> NtResult<usize> {
        parser::get_usages(kind(k), usage_page, preparsed, report, usages).map_err(from_sim_status)
    }

    fn set_usages(
        k: HidReportType,
        usage_page: u16,
        usages: &[u16],
        preparsed: &[u8],
        report: &mut [u8],
    ) -> NtResult<()> {
        parser::set_usages(kind(k), usage_page, usages, preparsed, report).map_err(from_sim_status)
    }

    fn get_usage_value(
        k: HidReportType,
        usage_page: u16,
        usage: u16,
        preparsed: &[u8],
        report: &[u8],
    ) -> NtResult<u32> {
        parser::get_usage_value(kind(k), usage_page, usage, preparsed, report)
            .map_err(from_sim_status)
    }

    fn set_usage_value(
        k: HidReportType,
        usage_page: u16,
        usage: u16,
        value: u32,
        preparsed: &[u8],
        report: &mut [u8],
    ) -> NtResult<()> {
        parser::set_usage_value(kind(k), usage_page, usage, value, preparsed, report)
            .map_err(from_sim_status)
    }
}
