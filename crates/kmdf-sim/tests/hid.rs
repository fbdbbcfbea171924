//! The simulated HID collection: its interface, the HID class IOCTLs, reads, and the parser.
#![allow(clippy::too_many_lines)]

use kmdf_sim::hid::device::{
    REPORT_ID_LIGHT_BAR, REPORT_ID_SWITCHES, REPORT_ID_VERSION, USAGE_LIGHT_BAR, USAGE_PAGE_BUTTON,
    USAGE_PAGE_VENDOR, USAGE_VERSION,
};
use kmdf_sim::hid::parser::{self, ReportType};
use kmdf_sim::hid::{
    self, HidDevice, HidDeviceConfig, GUID_DEVINTERFACE_HID, IOCTL_HID_GET_COLLECTION_INFORMATION,
    IOCTL_HID_GET_FEATURE, IOCTL_HID_GET_INPUT_REPORT, IOCTL_HID_SET_FEATURE,
    IOCTL_HID_SET_OUTPUT_REPORT,
};
use kmdf_sim::interface::interfaces_of_class;
use kmdf_sim::io::{Access, AppConfig, Application};
use kmdf_sim::{Machine, Status};

fn setup() -> (Machine, HidDevice, kmdf_sim::pnp::DeviceNode) {
    let machine = Machine::new();
    let device = HidDevice::new(HidDeviceConfig {
        vendor_id: 0x1234,
        product_id: 0x5678,
        version_number: 0x0203,
        usage: 1,
    });
    let node = hid::driver::install(&machine, &device).unwrap();
    (machine, device, node)
}

#[test]
fn interface_arrives_and_leaves_with_the_node() {
    let (machine, _device, node) = setup();
    assert_eq!(
        interfaces_of_class(&machine, GUID_DEVINTERFACE_HID).len(),
        1
    );
    node.remove().unwrap();
    assert!(interfaces_of_class(&machine, GUID_DEVINTERFACE_HID).is_empty());
    assert!(machine.verdict().is_ok(), "{:?}", machine.verdict());
}

#[test]
fn collection_information_feature_output_and_input_reports() {
    let (machine, device, node) = setup();
    let app = Application::new(&machine, AppConfig::default());
    let h = app
        .open_interface(GUID_DEVINTERFACE_HID, Access::READ_WRITE)
        .unwrap();
    let (info, n) = h
        .device_io_control(IOCTL_HID_GET_COLLECTION_INFORMATION, &[], 12)
        .unwrap();
    assert_eq!(n, 12);
    let pp_len = u32::try_from(device.preparsed_data().len()).unwrap();
    assert_eq!(u32::from_le_bytes(info[0..4].try_into().unwrap()), pp_len);
    assert_eq!(&info[6..12], &[0x34, 0x12, 0x78, 0x56, 0x03, 0x02]);
    // A too-small buffer.
    assert_eq!(
        h.device_io_control(IOCTL_HID_GET_COLLECTION_INFORMATION, &[], 4)
            .err(),
        Some(Status::BUFFER_TOO_SMALL)
    );

    // SET_FEATURE then GET_FEATURE (the ID in the caller's output buffer, as HidD_GetFeature).
    h.device_io_control(IOCTL_HID_SET_FEATURE, &[REPORT_ID_LIGHT_BAR, 0x5A, 0], 0)
        .unwrap();
    assert_eq!(device.light_bar(), 0x5A);
    let mut out = [REPORT_ID_LIGHT_BAR, 0, 0];
    assert_eq!(
        h.device_io_control_buffer(IOCTL_HID_GET_FEATURE, &[], &mut out),
        Ok(3)
    );
    assert_eq!(out, [REPORT_ID_LIGHT_BAR, 0x5A, 0]);
    let mut out = [REPORT_ID_VERSION, 0, 0];
    h.device_io_control_buffer(IOCTL_HID_GET_FEATURE, &[], &mut out)
        .unwrap();
    assert_eq!(out, [REPORT_ID_VERSION, 0x03, 0x02]);
    // The version is read-only; an unknown ID is refused.
    assert_eq!(
        h.device_io_control(IOCTL_HID_SET_FEATURE, &[REPORT_ID_VERSION, 1, 1], 0)
            .err(),
        Some(Status::INVALID_DEVICE_REQUEST)
    );
    let mut out = [9, 0, 0];
    assert_eq!(
        h.device_io_control_buffer(IOCTL_HID_GET_FEATURE, &[], &mut out)
            .err(),
        Some(Status::INVALID_PARAMETER)
    );

    // hidclass takes the ID from the output buffer only: an ID in the input buffer is ignored.
    let mut out = [REPORT_ID_LIGHT_BAR, 0, 0];
    assert_eq!(
        h.device_io_control_buffer(IOCTL_HID_GET_FEATURE, &[REPORT_ID_VERSION], &mut out),
        Ok(3)
    );
    assert_eq!(out, [REPORT_ID_LIGHT_BAR, 0x5A, 0]);
    let mut out = [0, 0, 0];
    assert_eq!(
        h.device_io_control_buffer(IOCTL_HID_GET_FEATURE, &[REPORT_ID_LIGHT_BAR], &mut out)
            .err(),
        Some(Status::INVALID_PARAMETER)
    );

    // The output report lights the bar; the input report shows the switches.
    h.device_io_control(IOCTL_HID_SET_OUTPUT_REPORT, &[REPORT_ID_LIGHT_BAR, 0x81], 0)
        .unwrap();
    assert_eq!(device.light_bar(), 0x81);
    device.set_switches(0x42);
    let mut report = [REPORT_ID_SWITCHES, 0];
    assert_eq!(
        h.device_io_control_buffer(IOCTL_HID_GET_INPUT_REPORT, &[], &mut report),
        Ok(2)
    );
    assert_eq!(report, [REPORT_ID_SWITCHES, 0x42]);
    // Byte 0 of the output names the input report: an ID with no input report is refused.
    let mut report = [REPORT_ID_LIGHT_BAR, 0];
    assert_eq!(
        h.device_io_control_buffer(IOCTL_HID_GET_INPUT_REPORT, &[], &mut report)
            .err(),
        Some(Status::INVALID_PARAMETER)
    );
    assert_eq!(
        h.device_io_control(IOCTL_HID_GET_INPUT_REPORT, &[], 2)
            .err(),
        Some(Status::INVALID_PARAMETER)
    );
    h.close();
    node.remove().unwrap();
    assert!(machine.verdict().is_ok(), "{:?}", machine.verdict());
}

#[test]
fn reads_complete_with_switch_changes_and_fail_on_removal() {
    let (machine, device, node) = setup();
    let app = Application::new(&machine, AppConfig::default());
    let h = app
        .open_interface(GUID_DEVINTERFACE_HID, Access::READ_WRITE)
        .unwrap();
    let pending = h.read_overlapped(2).unwrap();
    assert!(!pending.is_complete());
    device.set_switches(0b0000_0101);
    let (data, n) = pending.wait(None).unwrap().unwrap();
    assert_eq!((data, n), (vec![REPORT_ID_SWITCHES, 0b0000_0101], 2));
    // A report with no read waiting is kept for the next read.
    device.set_switches(0b1000_0000);
    assert_eq!(h.read(2).unwrap(), vec![REPORT_ID_SWITCHES, 0b1000_0000]);
    // Too small a read buffer.
    assert_eq!(h.read(1).err(), Some(Status::BUFFER_TOO_SMALL));
    // A parked read is completed when the collection goes (the framework purges its queue).
    let parked = h.read_overlapped(2).unwrap();
    node.surprise_remove().unwrap();
    assert_eq!(parked.status(), Some(Status::CANCELLED));
    h.close();
    let _ = node.remove();
    assert!(machine.verdict().is_ok(), "{:?}", machine.verdict());
}

#[test]
fn preparsed_caps_match_the_descriptor() {
    let device = HidDevice::new(HidDeviceConfig::default());
    let pp = device.preparsed_data();
    let caps = parser::get_caps(&pp).unwrap();
    assert_eq!((caps.usage_page, caps.usage), (USAGE_PAGE_VENDOR, 1));
    assert_eq!(caps.input_report_byte_length, 2);
    assert_eq!(caps.output_report_byte_length, 2);
    assert_eq!(caps.feature_report_byte_length, 3);
    assert_eq!(caps.number_input_button_caps, 1);
    assert_eq!(caps.number_output_value_caps, 1);
    assert_eq!(caps.number_feature_value_caps, 2);

    // Usages and values round-trip through reports.
    let mut input = [0u8; 2];
    parser::initialize_report_for_id(ReportType::Input, REPORT_ID_SWITCHES, &pp, &mut input)
        .unwrap();
    parser::set_usages(
        ReportType::Input,
        USAGE_PAGE_BUTTON,
        &[1, 8],
        &pp,
        &mut input,
    )
    .unwrap();
    assert_eq!(input, [REPORT_ID_SWITCHES, 0b1000_0001]);
    let mut usages = [0u16; 8];
    let n = parser::get_usages(
        ReportType::Input,
        USAGE_PAGE_BUTTON,
        &pp,
        &input,
        &mut usages,
    )
    .unwrap();
    assert_eq!(&usages[..n], &[1, 8]);
    assert_eq!(
        parser::get_usages(
            ReportType::Input,
            USAGE_PAGE_BUTTON,
            &pp,
            &input,
            &mut usages[..1]
        ),
        Err(parser::HIDP_STATUS_BUFFER_TOO_SMALL)
    );
    let mut feature = [0u8; 3];
    parser::set_usage_value(
        ReportType::Feature,
        USAGE_PAGE_VENDOR,
        USAGE_VERSION,
        0xBEEF,
        &pp,
        &mut feature,
    )
    .unwrap();
    assert_eq!(feature, [REPORT_ID_VERSION, 0xEF, 0xBE]);
    assert_eq!(
        parser::get_usage_value(
            ReportType::Feature,
            USAGE_PAGE_VENDOR,
            USAGE_VERSION,
            &pp,
            &feature
        ),
        Ok(0xBEEF)
    );
    // The light bar lives in another report: incompatible ID.
    assert_eq!(
        parser::set_usage_value(
            ReportType::Feature,
            USAGE_PAGE_VENDOR,
            USAGE_LIGHT_BAR,
            1,
            &pp,
            &mut feature
        ),
        Err(parser::HIDP_STATUS_INCOMPATIBLE_REPORT_ID)
    );
    // Wrong lengths, missing reports, bad blobs, out-of-range values.
    assert_eq!(
        parser::initialize_report_for_id(ReportType::Feature, 2, &pp, &mut [0u8; 2]),
        Err(parser::HIDP_STATUS_INVALID_REPORT_LENGTH)
    );
    assert_eq!(
        parser::initialize_report_for_id(ReportType::Feature, 7, &pp, &mut [0u8; 3]),
        Err(parser::HIDP_STATUS_REPORT_DOES_NOT_EXIST)
    );
    assert_eq!(
        parser::get_caps(&pp[..pp.len() - 1]),
        Err(parser::HIDP_STATUS_INVALID_PREPARSED_DATA)
    );
    let mut out = [0u8; 2];
    assert_eq!(
        parser::set_usage_value(
            ReportType::Output,
            USAGE_PAGE_VENDOR,
            USAGE_LIGHT_BAR,
            256,
            &pp,
            &mut out
        ),
        Err(parser::HIDP_STATUS_VALUE_OUT_OF_RANGE)
    );
    // A descriptor with an unknown item is refused.
    assert_eq!(
        parser::preparse(&[0x06, 0x00, 0xFF, 0xF4]),
        Err(Status::INVALID_PARAMETER)
    );
}
