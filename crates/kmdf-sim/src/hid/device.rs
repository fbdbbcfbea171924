//! [`HidDevice`]: the hardware behind a simulated HID collection — a small device modelled on the
//! OSR FX2 board: eight switches reported as buttons, a light bar of eight LEDs, and a firmware
//! version. Thread-safe; clones share the device.

use std::sync::{Arc, Mutex, PoisonError};

use super::parser;
use crate::status::Status;

/// The input report's ID: the eight switches as buttons 1–8 (Button page).
pub const REPORT_ID_SWITCHES: u8 = 1;
/// The light bar's output and feature report ID (vendor usage [`USAGE_LIGHT_BAR`], 8 bits).
pub const REPORT_ID_LIGHT_BAR: u8 = 2;
/// The version feature report's ID (vendor usage [`USAGE_VERSION`], 16 bits, read-only).
pub const REPORT_ID_VERSION: u8 = 3;
/// `HID_USAGE_PAGE_BUTTON`.
pub const USAGE_PAGE_BUTTON: u16 = 0x09;
/// The vendor-defined usage page of the device's collection and values.
pub const USAGE_PAGE_VENDOR: u16 = 0xFF00;
/// The light bar's usage (vendor page).
pub const USAGE_LIGHT_BAR: u16 = 0x02;
/// The version's usage (vendor page).
pub const USAGE_VERSION: u16 = 0x03;

/// The report descriptor of a device whose top-level collection has `usage` on the vendor page.
pub fn report_descriptor(usage: u8) -> Vec<u8> {
    vec![
        0x06,
        0x00,
        0xFF, // Usage Page (Vendor 0xFF00)
        0x09,
        usage, // Usage (the collection's)
        0xA1,
        0x01, // Collection (Application)
        0x85,
        REPORT_ID_SWITCHES, //   Report ID
        0x05,
        0x09, //   Usage Page (Button)
        0x19,
        0x01,
        0x29,
        0x08, //   Usage Minimum 1, Usage Maximum 8
        0x15,
        0x00,
        0x25,
        0x01, //   Logical Minimum 0, Logical Maximum 1
        0x75,
        0x01,
        0x95,
        0x08, //   Report Size 1, Report Count 8
        0x81,
        0x02, //   Input (Data, Variable, Absolute)
        0x85,
        REPORT_ID_LIGHT_BAR, //   Report ID
        0x06,
        0x00,
        0xFF, //   Usage Page (Vendor)
        0x09,
        0x02, //   Usage (light bar)
        0x15,
        0x00,
        0x26,
        0xFF,
        0x00, //   Logical Minimum 0, Logical Maximum 255
        0x75,
        0x08,
        0x95,
        0x01, //   Report Size 8, Report Count 1
        0x91,
        0x02, //   Output (Data, Variable, Absolute)
        0x09,
        0x02, //   Usage (light bar)
        0xB1,
        0x02, //   Feature (Data, Variable, Absolute)
        0x85,
        REPORT_ID_VERSION, //   Report ID
        0x09,
        0x03, //   Usage (version)
        0x27,
        0xFF,
        0xFF,
        0x00,
        0x00, //   Logical Maximum 65535
        0x75,
        0x10,
        0x95,
        0x01, //   Report Size 16, Report Count 1
        0xB1,
        0x02, //   Feature (Data, Variable, Absolute)
        0xC0, // End Collection
    ]
}

/// What a HID device reports about itself (`HID_COLLECTION_INFORMATION`, `HIDD_ATTRIBUTES`) and
/// its collection's usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HidDeviceConfig {
    /// `VendorID`.
    pub vendor_id: u16,
    /// `ProductID`.
    pub product_id: u16,
    /// `VersionNumber` (also the version feature report's value).
    pub version_number: u16,
    /// The top-level collection's usage (vendor page [`USAGE_PAGE_VENDOR`]).
    pub usage: u8,
}

impl Default for HidDeviceConfig {
    /// The OSR FX2 board's IDs (`USB\VID_0547&PID_1002`), version 1.0, usage 1.
    fn default() -> Self {
        HidDeviceConfig {
            vendor_id: 0x0547,
            product_id: 0x1002,
            version_number: 0x0100,
            usage: 1,
        }
    }
}

type InputHook = Arc<dyn Fn([u8; 2]) + Send + Sync>;

struct State {
    switches: u8,
    light_bar: u8,
    hooks: Vec<(u64, InputHook)>,
    next_hook: u64,
}

struct Inner {
    config: HidDeviceConfig,
    preparsed: Vec<u8>,
    state: Mutex<State>,
}

/// A simulated HID device (see the module doc).
#[derive(Clone)]
pub struct HidDevice(Arc<Inner>);

impl std::fmt::Debug for HidDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HidDevice")
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

impl HidDevice {
    /// A device with `config`: switches all off, light bar dark.
    ///
    /// # Panics
    ///
    /// Never: the descriptor is the simulator's own and parses (a test of the module checks it).
    pub fn new(config: HidDeviceConfig) -> Self {
        let preparsed = parser::preparse(&report_descriptor(config.usage))
            .expect("the simulator's own descriptor parses");
        HidDevice(Arc::new(Inner {
            config,
            preparsed,
            state: Mutex::new(State {
                switches: 0,
                light_bar: 0,
                hooks: Vec::new(),
                next_hook: 0,
            }),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The device's config.
    pub fn config(&self) -> HidDeviceConfig {
        self.0.config
    }

    /// The report descriptor.
    pub fn report_descriptor(&self) -> Vec<u8> {
        report_descriptor(self.0.config.usage)
    }

    /// The preparsed data hidclass hands out (the simulator's layout, see [`parser`]).
    pub fn preparsed_data(&self) -> Vec<u8> {
        self.0.preparsed.clone()
    }

    /// The switches (bit *n* − 1 is switch *n*).
    pub fn switches(&self) -> u8 {
        self.state().switches
    }

    /// Flips the switches to `value`: a changed value is an input report `[1, value]`, delivered
    /// to every hook on this thread.
    pub fn set_switches(&self, value: u8) {
        let hooks: Vec<InputHook> = {
            let mut s = self.state();
            if s.switches == value {
                return;
            }
            s.switches = value;
            s.hooks.iter().map(|(_, h)| Arc::clone(h)).collect()
        };
        for hook in hooks {
            hook(self.input_report());
        }
    }

    /// The current input report.
    pub fn input_report(&self) -> [u8; 2] {
        [REPORT_ID_SWITCHES, self.state().switches]
    }

    /// The light bar (bit *n* − 1 is LED *n*).
    pub fn light_bar(&self) -> u8 {
        self.state().light_bar
    }

    /// The feature report `report_id` (report ID byte first).
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` for an ID with no feature report.
    pub fn feature(&self, report_id: u8) -> Result<Vec<u8>, Status> {
        match report_id {
            REPORT_ID_LIGHT_BAR => Ok(vec![REPORT_ID_LIGHT_BAR, self.light_bar()]),
            REPORT_ID_VERSION => {
                let [lo, hi] = self.0.config.version_number.to_le_bytes();
                Ok(vec![REPORT_ID_VERSION, lo, hi])
            }
            _ => Err(Status::INVALID_PARAMETER),
        }
    }

    /// Sets the feature report in `report` (ID byte first). Only the light bar is writable.
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` for a too-short report or an unknown ID;
    /// `STATUS_INVALID_DEVICE_REQUEST` for the read-only version.
    pub fn set_feature(&self, report: &[u8]) -> Result<(), Status> {
        match report {
            [REPORT_ID_LIGHT_BAR, value, ..] => {
                self.state().light_bar = *value;
                Ok(())
            }
            [REPORT_ID_VERSION, ..] => Err(Status::INVALID_DEVICE_REQUEST),
            _ => Err(Status::INVALID_PARAMETER),
        }
    }

    /// Sets the output report in `report` (ID byte first): the light bar.
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` for a too-short report or an unknown ID.
    pub fn set_output(&self, report: &[u8]) -> Result<(), Status> {
        match report {
            [REPORT_ID_LIGHT_BAR, value, ..] => {
                self.state().light_bar = *value;
                Ok(())
            }
            _ => Err(Status::INVALID_PARAMETER),
        }
    }

    /// Registers `hook` for input reports; its ID for [`remove_hook`](Self::remove_hook).
    pub fn on_input(&self, hook: impl Fn([u8; 2]) + Send + Sync + 'static) -> u64 {
        let mut s = self.state();
        s.next_hook += 1;
        let id = s.next_hook;
        s.hooks.push((id, Arc::new(hook)));
        id
    }

    /// Removes the hook `id`.
    pub fn remove_hook(&self, id: u64) {
        self.state().hooks.retain(|(h, _)| *h != id);
    }
}
