//! HidTarget: a client driver waits for the simulated FX2-like HID collection (kmdf-sim's `hid`
//! module), opens it by VID/PID/usage, reads input reports from switch flips through the read
//! loop, gets and sets feature reports, lights the bar with output reports; collections arrive,
//! leave and do not match; bad arguments; allocation failures swept (modelled on C DMF's use of
//! the Module in its HID samples; there is no Dmf_Tests_HidTarget).
#![cfg(feature = "sim")]
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

mod driver_support;
mod task_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf_core::module::{ModuleHandle, ModuleState};
use dmf_core::platform::contract::hid::{HidReportType, PlatformHidParser, GUID_DEVINTERFACE_HID};
use dmf_core::platform::simulator::{self, alloc_sweep, CountingAllocator};
use dmf_core::platform::HidParser;
use dmf_core::NtStatus;
use dmf_modules::hid_target::{HidTarget, HidTargetConfig};
use kmdf_sim::fault::FaultPoint;
use kmdf_sim::hid::device::{
    REPORT_ID_LIGHT_BAR, REPORT_ID_SWITCHES, REPORT_ID_VERSION, USAGE_LIGHT_BAR, USAGE_PAGE_BUTTON,
    USAGE_PAGE_VENDOR, USAGE_VERSION,
};
use kmdf_sim::hid::{HidDevice, HidDeviceConfig};
use kmdf_sim::pnp::{DeviceNode, NodeState, StackSpec};
use kmdf_sim::Machine;
use task_support::assert_clean;

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator;

const VID: u16 = 0x0547;
const PID: u16 = 0x1002;
static PIDS: [u16; 2] = [0x1001, PID];

/// What the client saw.
#[derive(Default)]
struct Events {
    reports: Mutex<Vec<Vec<u8>>>,
    selected: Mutex<Vec<u16>>,
}

struct Fixture {
    machine: Machine,
    node: DeviceNode,
    hid: HidTarget,
    events: Arc<Events>,
}

fn config(events: &Arc<Events>, pended: u32) -> HidTargetConfig {
    let mut config = HidTargetConfig::new(VID, USAGE_PAGE_VENDOR, 1);
    config.product_ids = &PIDS;
    config.pended_input_read_request_count = pended;
    let e = Arc::clone(events);
    config.on_input_report = Some(Arc::new(move |_hid, report| {
        e.reports.lock().unwrap().push(report.to_vec());
    }));
    let e = Arc::clone(events);
    config.on_device_selection = Some(Arc::new(move |_hid, _link, info, preparsed| {
        // The preparsed data handed over is the collection's: the parser reads it.
        assert!(HidParser::get_caps(preparsed).is_ok());
        e.selected.lock().unwrap().push(info.product_id);
        true
    }));
    config
}

fn fixture_on(machine: Machine, pended: u32, passive: bool) -> Fixture {
    let events = Arc::new(Events::default());
    let config = config(&events, pended);
    let slot = driver_support::install(&machine, "hidclient", false, move |init| {
        init.add(HidTarget::with(config.clone()).passive_level(passive))
    });
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\HIDCLIENT", "hidclient"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    let (_device, hid) = driver_support::take(&slot);
    Fixture {
        machine,
        node,
        hid,
        events,
    }
}

fn fixture(pended: u32) -> Fixture {
    fixture_on(task_support::machine(), pended, false)
}

fn collection(vendor_id: u16, product_id: u16, usage: u8) -> HidDevice {
    HidDevice::new(HidDeviceConfig {
        vendor_id,
        product_id,
        version_number: 0x0102,
        usage,
    })
}

impl Fixture {
    fn plug(&self, device: &HidDevice) -> DeviceNode {
        kmdf_sim::hid::driver::install(&self.machine, device).unwrap()
    }

    fn reports(&self) -> Vec<Vec<u8>> {
        self.events.reports.lock().unwrap().clone()
    }

    fn finish(self) {
        self.node.remove().unwrap();
        assert_ne!(self.hid.state(), ModuleState::Opened);
        assert_clean(&self.machine, 0);
    }
}

#[test]
fn the_platform_guid_is_kmdf_sims() {
    assert_eq!(
        GUID_DEVINTERFACE_HID,
        simulator::platform_guid(kmdf_sim::hid::GUID_DEVINTERFACE_HID)
    );
}

/// Arrival opens the Module (PostOpen side: its Methods work), removal closes it, a second
/// arrival reopens it; non-matching collections (other VID, PID not in the list, other usage)
/// are skipped even when they arrive first.
#[test]
fn hid_target_opens_matching_collections_only() {
    let f = fixture(1);
    let _bound = f.machine.enter();
    assert_eq!(f.hid.state(), ModuleState::Created);
    assert_eq!(
        f.hid.hid_collection_information_get().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    let other_vendor = f.plug(&collection(0x1234, PID, 1));
    let other_product = f.plug(&collection(VID, 0x2000, 1));
    let other_usage = f.plug(&collection(VID, PID, 7));
    assert_eq!(
        f.hid.hid_collection_information_get().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    // The selection callback is asked only for full matches.
    assert!(f.events.selected.lock().unwrap().is_empty());

    let device = collection(VID, PID, 1);
    let node = f.plug(&device);
    assert_eq!(f.hid.state(), ModuleState::Opened);
    let info = f.hid.hid_collection_information_get().unwrap();
    assert_eq!(
        (info.vendor_id, info.product_id, info.version_number),
        (VID, PID, 0x0102)
    );
    assert_eq!(*f.events.selected.lock().unwrap(), vec![PID]);
    // Removal closes; the non-matching ones are still ignored.
    node.remove().unwrap();
    assert_eq!(
        f.hid.hid_collection_information_get().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    // The second PID of the list matches too.
    let second = collection(VID, 0x1001, 1);
    let node = f.plug(&second);
    assert_eq!(
        f.hid.hid_collection_information_get().unwrap().product_id,
        0x1001
    );
    node.surprise_remove().unwrap();
    assert_ne!(f.hid.state(), ModuleState::Opened);
    let _ = node.remove();
    for n in [other_vendor, other_product, other_usage] {
        n.remove().unwrap();
    }
    f.finish();
}

/// A collection present before the client starts is opened at NotificationRegister; a
/// selection callback that says no keeps the Module closed.
#[test]
fn hid_target_existing_collection_and_selection_veto() {
    let machine = task_support::machine();
    let device = collection(VID, PID, 1);
    let existing = kmdf_sim::hid::driver::install(&machine, &device).unwrap();
    let f = fixture_on(machine, 1, false);
    let _bound = f.machine.enter();
    assert_eq!(f.hid.state(), ModuleState::Opened);
    f.node.remove().unwrap();
    existing.remove().unwrap();
    assert_clean(&f.machine, 0);

    // Veto.
    let machine = task_support::machine();
    let events = Arc::new(Events::default());
    let mut config = config(&events, 1);
    config.on_device_selection = Some(Arc::new(|_, _, _, _| false));
    let slot = driver_support::install(&machine, "hidclient", false, move |init| {
        init.add(HidTarget::with(config.clone()))
    });
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\HIDCLIENT", "hidclient"))
        .unwrap();
    let (_device, hid) = driver_support::take(&slot);
    let _bound = machine.enter();
    let collection_node = kmdf_sim::hid::driver::install(&machine, &device).unwrap();
    assert_ne!(hid.state(), ModuleState::Opened);
    collection_node.remove().unwrap();
    node.remove().unwrap();
    assert_clean(&machine, 0);
}

/// Switch flips reach `on_input_report` through the read loop (several reads pending), at
/// DISPATCH or, with `passive_level`, from a work item; InputRead sends one read only.
#[test]
fn hid_target_input_reports_from_switch_flips() {
    for (pended, passive) in [(1, false), (4, false), (2, true)] {
        let f = fixture_on(task_support::machine(), pended, passive);
        let _bound = f.machine.enter();
        let device = collection(VID, PID, 1);
        let node = f.plug(&device);
        f.hid.input_read_ex().unwrap();
        assert!(f.hid.is_reading());
        // Starting again while it runs does nothing.
        f.hid.input_read_ex().unwrap();
        let flips = [0x01, 0x03, 0x07, 0x80, 0x00, 0xFF];
        for &v in &flips {
            device.set_switches(v);
            f.machine.settle();
        }
        let seen: Vec<u8> = f.reports().iter().map(|r| r[1]).collect();
        assert_eq!(seen, flips, "pended {pended}, passive {passive}");
        assert!(f
            .reports()
            .iter()
            .all(|r| r.len() == 2 && r[0] == REPORT_ID_SWITCHES));
        // The buttons parse with the collection's preparsed data.
        let report = f.reports()[2].clone();
        let usages = f
            .hid
            .preparsed_data_get(|pp| {
                let mut usages = [0u16; 8];
                let n = HidParser::get_usages(
                    HidReportType::Input,
                    USAGE_PAGE_BUTTON,
                    pp,
                    &report,
                    &mut usages,
                )
                .unwrap();
                usages[..n].to_vec()
            })
            .unwrap();
        assert_eq!(usages, vec![1, 2, 3]);

        // Cancel: no more reports.
        f.hid.input_read_cancel().unwrap();
        assert!(!f.hid.is_reading());
        device.set_switches(0x42);
        f.machine.settle();
        assert_eq!(f.reports().len(), flips.len());
        // InputRead: one read, one report (the one the collection kept meanwhile comes first).
        f.hid.input_read().unwrap();
        f.machine.settle();
        assert_eq!(f.reports().last().unwrap(), &vec![REPORT_ID_SWITCHES, 0x42]);
        device.set_switches(0x43);
        f.machine.settle();
        assert_eq!(f.reports().len(), flips.len() + 1);
        node.remove().unwrap();
        f.finish();
    }
}

/// Feature get/set round trip (whole report and part of it), the version feature, output
/// reports and writes light the bar, input report get, buffer read, report create.
#[test]
fn hid_target_feature_output_and_input_reports() {
    let f = fixture(1);
    let _bound = f.machine.enter();
    let device = collection(VID, PID, 1);
    let node = f.plug(&device);
    let caps = f.hid.caps_get().unwrap();
    assert_eq!(
        (
            caps.usage_page,
            caps.usage,
            caps.input_report_byte_length,
            caps.feature_report_byte_length
        ),
        (USAGE_PAGE_VENDOR, 1, 2, 3)
    );
    assert_eq!(caps.output_report_byte_length, 2);
    assert_eq!(caps.number_input_button_caps, 1);
    assert_eq!(caps.number_feature_value_caps, 2);

    // Part of report 2 (byte 1): the report is read first, the rest kept.
    f.hid
        .feature_set(REPORT_ID_LIGHT_BAR, &[0xA5], 1, 1, None)
        .unwrap();
    assert_eq!(device.light_bar(), 0xA5);
    let mut bar = [0u8; 4];
    f.hid
        .feature_get(REPORT_ID_LIGHT_BAR, &mut bar, 1, 1, None)
        .unwrap();
    assert_eq!(bar[0], 0xA5);
    // The whole report (ID byte included), with a time-out.
    f.hid
        .feature_set(
            REPORT_ID_LIGHT_BAR,
            &[REPORT_ID_LIGHT_BAR, 0x3C, 0],
            0,
            3,
            Some(Duration::from_secs(1)),
        )
        .unwrap();
    assert_eq!(device.light_bar(), 0x3C);
    let mut whole = [0u8; 3];
    f.hid
        .feature_get(
            REPORT_ID_LIGHT_BAR,
            &mut whole,
            0,
            3,
            Some(Duration::from_secs(1)),
        )
        .unwrap();
    assert_eq!(whole, [REPORT_ID_LIGHT_BAR, 0x3C, 0]);
    // The version, parsed as a usage value.
    let mut version = [0u8; 3];
    f.hid
        .feature_get(REPORT_ID_VERSION, &mut version, 0, 3, None)
        .unwrap();
    let value = f
        .hid
        .preparsed_data_get(|pp| {
            HidParser::get_usage_value(
                HidReportType::Feature,
                USAGE_PAGE_VENDOR,
                USAGE_VERSION,
                pp,
                &version,
            )
        })
        .unwrap();
    assert_eq!(value, Ok(0x0102));
    // Asynchronously: the callback gets the report once.
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    f.hid
        .feature_get_asynchronous(REPORT_ID_VERSION, move |_hid, status, report| {
            g.lock().unwrap().push((status, report.to_vec()));
        })
        .unwrap();
    f.machine.settle();
    assert_eq!(
        *got.lock().unwrap(),
        vec![(NtStatus::SUCCESS, vec![REPORT_ID_VERSION, 0x02, 0x01])]
    );
    assert!(f.hid.feature_get_asynchronous(9, |_, _, _| {}).is_err());
    // The version is read-only: the collection refuses the set.
    assert_eq!(
        f.hid
            .feature_set(REPORT_ID_VERSION, &[1, 2], 1, 2, None)
            .err(),
        Some(NtStatus::INVALID_DEVICE_REQUEST)
    );

    // Output reports: built with ReportCreate + HidP_SetUsageValue.
    let mut report = f
        .hid
        .report_create(HidReportType::Output, REPORT_ID_LIGHT_BAR)
        .unwrap();
    assert_eq!(report, vec![REPORT_ID_LIGHT_BAR, 0]);
    f.hid
        .preparsed_data_get(|pp| {
            HidParser::set_usage_value(
                HidReportType::Output,
                USAGE_PAGE_VENDOR,
                USAGE_LIGHT_BAR,
                0x81,
                pp,
                &mut report,
            )
        })
        .unwrap()
        .unwrap();
    f.hid.output_report_set(&report, None).unwrap();
    assert_eq!(device.light_bar(), 0x81);
    assert_eq!(
        f.hid.buffer_write(&[REPORT_ID_LIGHT_BAR, 0x18], None),
        Ok(2)
    );
    assert_eq!(device.light_bar(), 0x18);

    // Input report get and a synchronous buffer read.
    device.set_switches(0x24);
    // The report ID goes out in byte 0 of the output buffer, where hidclass reads it.
    let mut input = [REPORT_ID_SWITCHES, 0];
    assert_eq!(f.hid.input_report_get(&mut input), Ok(2));
    assert_eq!(input, [REPORT_ID_SWITCHES, 0x24]);
    let created = f
        .hid
        .report_create(HidReportType::Input, REPORT_ID_SWITCHES)
        .unwrap();
    let mut input = [0u8; 2];
    input.copy_from_slice(&created);
    assert_eq!(f.hid.input_report_get(&mut input), Ok(2));
    assert_eq!(input, [REPORT_ID_SWITCHES, 0x24]);
    // A report ID the collection has no input report for: hidclass refuses it.
    let mut input = [REPORT_ID_LIGHT_BAR, 0];
    assert_eq!(
        f.hid.input_report_get(&mut input).err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    // The flip above was kept by the collection: the read gets it at once.
    let mut read = [0u8; 8];
    assert_eq!(
        f.hid.buffer_read(&mut read, Some(Duration::from_secs(1))),
        Ok(2)
    );
    assert_eq!(&read[..2], &[REPORT_ID_SWITCHES, 0x24]);
    node.remove().unwrap();
    f.finish();
}

/// Bad arguments: buffers too small, offsets beyond the report, unknown report IDs, report types
/// without reports, a read loop without its count; nothing changes on the device.
#[test]
fn hid_target_bad_arguments() {
    let f = fixture(0);
    let _bound = f.machine.enter();
    let device = collection(VID, PID, 1);
    let node = f.plug(&device);
    let mut one = [0u8; 1];
    assert_eq!(
        f.hid
            .feature_get(REPORT_ID_LIGHT_BAR, &mut one, 0, 2, None)
            .err(),
        Some(NtStatus::BUFFER_TOO_SMALL)
    );
    assert_eq!(
        f.hid
            .feature_get(REPORT_ID_LIGHT_BAR, &mut one, 3, 1, None)
            .err(),
        Some(NtStatus::BUFFER_OVERFLOW)
    );
    assert_eq!(
        f.hid
            .feature_get(REPORT_ID_LIGHT_BAR, &mut one, usize::MAX, 1, None)
            .err(),
        Some(NtStatus::BUFFER_OVERFLOW)
    );
    assert_eq!(
        f.hid
            .feature_set(REPORT_ID_LIGHT_BAR, &[1], 0, 2, None)
            .err(),
        Some(NtStatus::BUFFER_TOO_SMALL)
    );
    assert_eq!(
        f.hid
            .feature_set(REPORT_ID_LIGHT_BAR, &[1, 2, 3, 4], 0, 4, None)
            .err(),
        Some(NtStatus::BUFFER_OVERFLOW)
    );
    // HIDP_STATUS_REPORT_DOES_NOT_EXIST from the parser.
    let missing = f.hid.feature_get(9, &mut one, 0, 1, None).err().unwrap();
    assert_eq!(
        missing.to_raw().to_ne_bytes(),
        0xC011_0010_u32.to_ne_bytes()
    );
    assert_eq!(
        f.hid.report_create(HidReportType::Input, 2).err(),
        Some(missing)
    );
    assert_eq!(
        f.hid.output_report_set(&[REPORT_ID_LIGHT_BAR], None).err(),
        Some(NtStatus::BUFFER_TOO_SMALL)
    );
    assert_eq!(
        f.hid.buffer_write(&[], None).err(),
        Some(NtStatus::BUFFER_TOO_SMALL)
    );
    assert_eq!(
        f.hid.input_report_get(&mut one).err(),
        Some(NtStatus::BUFFER_TOO_SMALL)
    );
    assert_eq!(
        f.hid.buffer_read(&mut one, None).err(),
        Some(NtStatus::BUFFER_TOO_SMALL)
    );
    // PendedInputReadRequestCount 0.
    assert_eq!(
        f.hid.input_read_ex().err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(device.light_bar(), 0);
    node.remove().unwrap();
    f.finish();

    // A config with too many pended reads fails NotificationRegister (and so the start).
    let machine = task_support::machine();
    let events = Arc::new(Events::default());
    let config = config(&events, 1000);
    let _slot = driver_support::install(&machine, "hidclient", false, move |init| {
        init.add(HidTarget::with(config.clone()))
    });
    assert!(machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\HIDCLIENT", "hidclient"))
        .is_err());
    assert_clean(&machine, 0);

    // Without on_input_report the read Methods are refused.
    let machine = task_support::machine();
    let slot = driver_support::install(&machine, "hidclient", false, move |init| {
        init.add(HidTarget::with(HidTargetConfig::new(
            VID,
            USAGE_PAGE_VENDOR,
            1,
        )))
    });
    let client = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\HIDCLIENT", "hidclient"))
        .unwrap();
    let (_device, hid) = driver_support::take(&slot);
    let _bound = machine.enter();
    let node = kmdf_sim::hid::driver::install(&machine, &device).unwrap();
    assert_eq!(
        hid.input_read().err(),
        Some(NtStatus::INVALID_DEVICE_REQUEST)
    );
    assert_eq!(
        hid.input_read_ex().err(),
        Some(NtStatus::INVALID_DEVICE_REQUEST)
    );
    node.remove().unwrap();
    client.remove().unwrap();
    assert_clean(&machine, 0);
}

/// Removal with reads pending: the loop's reads are cancelled and waited for, the Module closes,
/// nothing is left; the client's own removal with the loop running closes it too.
#[test]
fn hid_target_close_with_reads_pending() {
    let f = fixture(3);
    let _bound = f.machine.enter();
    let device = collection(VID, PID, 1);
    let node = f.plug(&device);
    f.hid.input_read_ex().unwrap();
    f.hid.input_read().unwrap();
    node.surprise_remove().unwrap();
    f.machine.settle();
    assert_ne!(f.hid.state(), ModuleState::Opened);
    assert!(!f.hid.is_reading());
    let _ = node.remove();
    // A new arrival: streaming is off until the client starts it again.
    let node = f.plug(&device);
    assert_eq!(f.hid.state(), ModuleState::Opened);
    assert!(!f.hid.is_reading());
    f.hid.input_read_ex().unwrap();
    device.set_switches(0x11);
    f.machine.settle();
    assert_eq!(f.reports(), vec![vec![REPORT_ID_SWITCHES, 0x11]]);
    // The client device goes first, reads still pending.
    f.node.remove().unwrap();
    assert_ne!(f.hid.state(), ModuleState::Opened);
    node.remove().unwrap();
    assert_clean(&f.machine, 0);
}

/// Every allocation of the scenario fails in turn: client start, arrival (open, probe,
/// preparsed data), the read loop, a feature round trip, removal. Each run ends clean.
#[test]
fn hid_target_allocation_failures() {
    let report = alloc_sweep(|fail_at| {
        let machine = task_support::machine();
        let events = Arc::new(Events::default());
        let config = config(&events, 2);
        let slot = driver_support::install(&machine, "hidclient", false, move |init| {
            init.add(HidTarget::with(config.clone()))
        });
        let device = collection(VID, PID, 1);
        machine.faults().fail_nth(FaultPoint::Allocation, fail_at);
        let Ok(client) = machine
            .pnp()
            .plug_in(StackSpec::new("ROOT\\HIDCLIENT", "hidclient"))
        else {
            // The device add may have run: what it left in the slot goes (it holds the device).
            drop(slot.lock().unwrap().take());
            return machine;
        };
        let (_device, hid) = driver_support::take(&slot);
        {
            let _bound = machine.enter();
            if let Ok(node) = kmdf_sim::hid::driver::install(&machine, &device) {
                let _ = hid.input_read_ex();
                device.set_switches(0x5A);
                machine.settle();
                let mut bar = [0u8; 1];
                // A failure is an allocation's (INSUFFICIENT_RESOURCES) or the module's closed
                // state; a success is a true round trip.
                let set = hid.feature_set(REPORT_ID_LIGHT_BAR, &[7], 1, 1, None);
                let get = hid.feature_get(REPORT_ID_LIGHT_BAR, &mut bar, 1, 1, None);
                for result in [set, get] {
                    if let Err(status) = result {
                        assert!(
                            [
                                NtStatus::INSUFFICIENT_RESOURCES,
                                NtStatus::INVALID_DEVICE_STATE
                            ]
                            .contains(&status),
                            "{status:?}"
                        );
                    }
                }
                if set.is_ok() && get.is_ok() {
                    assert_eq!(bar, [7]);
                }
                let _ = node.remove();
            }
            let _ = client.remove();
        }
        drop(hid);
        machine
    })
    .unwrap();
    assert!(report.points > 10, "{} points", report.points);
}

/// Query-remove closes the Module (reads cancelled) and the target for query-remove; a
/// cancelled removal reopens both; the removal that follows closes for good.
#[test]
fn hid_target_query_remove_and_cancel() {
    let f = fixture(2);
    let _bound = f.machine.enter();
    let device = collection(VID, PID, 1);
    let node = f.plug(&device);
    f.hid.input_read_ex().unwrap();
    node.query_remove().unwrap();
    assert_ne!(f.hid.state(), ModuleState::Opened);
    assert_eq!(f.hid.caps_get().err(), Some(NtStatus::INVALID_DEVICE_STATE));
    node.cancel_remove().unwrap();
    f.machine.settle();
    assert_eq!(f.hid.state(), ModuleState::Opened);
    assert_eq!(f.hid.caps_get().unwrap().input_report_byte_length, 2);
    // The loop stopped with the close; the client starts it again.
    assert!(!f.hid.is_reading());
    f.hid.input_read_ex().unwrap();
    device.set_switches(0x0F);
    f.machine.settle();
    assert_eq!(f.reports(), vec![vec![REPORT_ID_SWITCHES, 0x0F]]);
    node.remove().unwrap();
    assert_ne!(f.hid.state(), ModuleState::Opened);
    f.finish();
}

/// Seeded churn (C DMF's target tests stress arrival and removal with I/O in flight): two
/// collections, one matching, plugged and unplugged (orderly or surprise) in a random order
/// while the read loop runs and switches flip; every report the client sees is one the
/// matching collection sent, and the machine ends clean.
#[test]
fn hid_target_seeded_churn() {
    let seed = task_support::seed("hid_target_seeded_churn", 0x4849_4421);
    let mut rng = task_support::Rng::new(seed);
    let f = fixture(3);
    let _bound = f.machine.enter();
    let matching = collection(VID, PID, 1);
    let other = collection(VID, 0x3333, 1);
    let mut nodes: [Option<DeviceNode>; 2] = [None, None];
    let mut sent = vec![0u8];
    for step in 0..60u32 {
        match rng.below(5) {
            0 | 1 => {
                let which = usize::try_from(rng.below(2)).unwrap();
                if let Some(node) = nodes[which].take() {
                    if rng.below(2) == 0 {
                        node.remove().unwrap();
                    } else {
                        node.surprise_remove().unwrap();
                        let _ = node.remove();
                    }
                } else {
                    let device = if which == 0 { &matching } else { &other };
                    nodes[which] = Some(f.plug(device));
                }
            }
            2 => {
                if nodes[0].is_some() {
                    assert_eq!(
                        f.hid.state(),
                        ModuleState::Opened,
                        "seed {seed} step {step}"
                    );
                    f.hid.input_read_ex().unwrap();
                } else {
                    assert_ne!(
                        f.hid.state(),
                        ModuleState::Opened,
                        "seed {seed} step {step}"
                    );
                }
            }
            _ => {
                let value = u8::try_from(step % 256).unwrap() ^ 0xA5;
                matching.set_switches(value);
                other.set_switches(!value);
                sent.push(value);
            }
        }
        f.machine.settle();
    }
    for report in f.reports() {
        assert_eq!(report[0], REPORT_ID_SWITCHES, "seed {seed}");
        assert!(
            sent.contains(&report[1]),
            "seed {seed}: {report:?} never sent"
        );
    }
    for node in nodes.into_iter().flatten() {
        node.remove().unwrap();
    }
    f.node.remove().unwrap();
    assert_clean(&f.machine, seed);
}
