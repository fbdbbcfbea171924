//! # SwitchBar — a DMF container driver that mirrors the OSR USB-FX2 switches onto its light bar
//!
//! The Rust version of DMF's `SwitchBar` sample (`DmfSamples/SwitchBar/DmfInterface.c` in
//! microsoft/DMF). SwitchBar is **not** the FX2 driver. It is a root-enumerated function
//! driver that finds the FX2 function driver's device interface (`GUID_DEVINTERFACE_OSRUSBFX2`)
//! and talks to it as a remote I/O target:
//!
//! * **One Module**: a `DeviceInterfaceTarget` with an embedded `ContinuousRequestTarget` config.
//!   It keeps one `IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE` (one output byte) in flight, in manual
//!   streaming mode, with callbacks at PASSIVE_LEVEL (the C sample sets `PassiveLevel = TRUE`).
//! * **Arrival** (the Module's PostOpen, when the FX2 interface appears and the target is open):
//!   SwitchBar starts streaming and updates the bar once.
//! * **Every interrupt message** (the board sends one per switch change): it reads the switches
//!   with `IOCTL_OSRUSBFX2_READ_SWITCHES`, computes the bar, sets it with
//!   `IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY`, and continues streaming. A failed completion
//!   (device gone) stops the stream.
//! * **Removal** (PreClose: query-remove or unplug): it stops streaming. The Module waits for the
//!   interface to come back and SwitchBar resumes then.
//!
//! ## The mapping
//!
//! [`bar_for_switches`]: LED *n* lights when switch *n* is on. The C sample rotates the byte by 5
//! and inverts it, which undoes the physical board's wiring (its switch byte is active-low and
//! its LED bits run the other way). kmdf-sim's board reports switch *n* as bit *n − 1* and
//! lights LED *n* for bit *n − 1*, so the identity is the mirror on this board.
//! [`BOARD_WIRING`] selects the other behaviour for a physical board.
//!
//! The driver code here is the same on both backends. `driver_config()` is what `dmf::driver!`
//! generates. The simulator runner is the `switchbar` binary of this package; the Windows
//! package is built from this library with `cargo make` (README, "The Windows path").
#![no_std]
#![forbid(unsafe_code)]

use dmf::core::module::ModuleInit;
use dmf::core::platform::contract::device::Guid;
use dmf::core::platform::Device;
use dmf::modules::continuous_request_target::{
    BufferDisposition, ContinuousRequestTargetConfig, StreamCompletion, StreamMode,
};
use dmf::modules::device_interface_target::{DeviceInterfaceTarget, DeviceInterfaceTargetConfig};
use dmf::modules::request_target::RequestKind;
use dmf::prelude::*;

/// `GUID_DEVINTERFACE_OSRUSBFX2` = `{573E8C73-0CB4-4471-A1BF-FAB26C31D384}` (the FX2 sample's
/// `public.h`).
pub const GUID_DEVINTERFACE_OSRUSBFX2: Guid = Guid::new(
    0x573E_8C73,
    0x0CB4,
    0x4471,
    [0xA1, 0xBF, 0xFA, 0xB2, 0x6C, 0x31, 0xD3, 0x84],
);

/// `CTL_CODE(FILE_DEVICE_OSRUSBFX2, IOCTL_INDEX + 5, METHOD_BUFFERED, FILE_WRITE_ACCESS)`.
pub const IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY: u32 = 0x5500_A014;
/// `CTL_CODE(FILE_DEVICE_OSRUSBFX2, IOCTL_INDEX + 6, METHOD_BUFFERED, FILE_READ_ACCESS)`.
pub const IOCTL_OSRUSBFX2_READ_SWITCHES: u32 = 0x5500_6018;
/// `CTL_CODE(FILE_DEVICE_OSRUSBFX2, IOCTL_INDEX + 9, METHOD_OUT_DIRECT, FILE_READ_ACCESS)`.
pub const IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE: u32 = 0x5500_6026;

/// How the board's switch and LED bits are wired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wiring {
    /// Switch *n* is bit *n − 1* and LED *n* is bit *n − 1* (kmdf-sim's board).
    Direct,
    /// The physical OSR kit: the C sample's rotate-by-5-and-invert.
    OsrKit,
}

/// The wiring this build mirrors for.
pub const BOARD_WIRING: Wiring = Wiring::Direct;

/// The light-bar byte that mirrors the switch byte `switches` on a board wired as `wiring`.
pub const fn bar_for_switches(switches: u8, wiring: Wiring) -> u8 {
    match wiring {
        Wiring::Direct => switches,
        Wiring::OsrKit => !switches.rotate_left(5),
    }
}

/// The trace source of this driver's lines (`SwitchBar: …`; `dmf::trace!`).
const SOURCE: &str = "SwitchBar";

/// Reads the switches and sets the bar to mirror them (`SwitchBar_SwitchesReadAndLightBarSet`).
fn mirror(target: &DeviceInterfaceTarget) -> NtResult<u8> {
    let (switches, read) =
        target.send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1))?;
    let switches = if read >= 1 { switches[0] } else { 0 };
    let bar = bar_for_switches(switches, BOARD_WIRING);
    target.send_synchronously(&SendRequest::ioctl(
        IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
        &[bar],
        0,
    ))?;
    dmf::trace!(SOURCE, "switches {switches:08b} -> light bar {bar:08b}");
    Ok(bar)
}

/// `SwitchBarSwitchChangedCallback`: one interrupt message arrived (or the request failed).
fn switch_changed(
    target: &DeviceInterfaceTarget,
    completion: &StreamCompletion<'_>,
) -> BufferDisposition {
    if !completion.status.is_success() {
        dmf::trace!(
            Warning,
            SOURCE,
            "interrupt message failed with {:?}: stop streaming",
            completion.status
        );
        return BufferDisposition::StopStreaming;
    }
    match mirror(target) {
        Ok(_) => BufferDisposition::ContinueStreaming,
        Err(status) => {
            dmf::trace!(
                Warning,
                SOURCE,
                "mirroring failed with {status:?}: stop streaming"
            );
            BufferDisposition::StopStreaming
        }
    }
}

/// `SwitchBar_OnDeviceArrivalNotification` (PostOpen): the FX2 target is open.
fn on_arrival(target: &DeviceInterfaceTarget) {
    dmf::trace!(SOURCE, "OSR FX2 arrived: start streaming");
    if let Err(status) = target.stream_start() {
        dmf::trace!(Warning, SOURCE, "stream start failed with {status:?}");
        return;
    }
    if let Err(status) = mirror(target) {
        dmf::trace!(Warning, SOURCE, "initial mirror failed with {status:?}");
    }
}

/// `SwitchBar_OnDeviceRemovalNotification` (PreClose): the FX2 target is about to close — the
/// board is leaving, or SwitchBar's own device is being removed (unload).
fn on_removal(target: &DeviceInterfaceTarget) {
    dmf::trace!(
        SOURCE,
        "OSR FX2 target closing: stop streaming, wait for it to return"
    );
    let _ = target.stream_stop();
}

/// The Module configuration (`DmfDeviceModulesAdd` of the C sample).
///
/// # Errors
///
/// `STATUS_INSUFFICIENT_RESOURCES` if the output callback cannot be allocated.
pub fn target_config() -> NtResult<DeviceInterfaceTargetConfig> {
    let mut config = DeviceInterfaceTargetConfig::new(GUID_DEVINTERFACE_OSRUSBFX2);
    config.stream = Some(ContinuousRequestTargetConfig {
        request_count: 1,
        request_type: RequestKind::Ioctl,
        ioctl_code: IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
        output_buffer_size: 1,
        mode: StreamMode::Manual,
        ..ContinuousRequestTargetConfig::default()
    });
    config.output_callback = Some(fallible::try_arc(switch_changed)?);
    Ok(config)
}

/// `DmfDeviceModulesAdd`: SwitchBar's only code besides the callbacks above.
///
/// # Errors
///
/// `STATUS_INSUFFICIENT_RESOURCES` if the configuration cannot be allocated; Module creation
/// errors are reported by `modules_create`.
pub fn modules_add(_device: &Device, modules: &mut ModuleInit) -> NtResult<()> {
    modules.add(
        DeviceInterfaceTarget::with(target_config()?)
            .passive_level(true)
            .on_post_open(on_arrival)
            .on_pre_close(on_removal),
    );
    Ok(())
}

dmf::driver!(modules_add = modules_add);

/// The scripted session on a simulated machine with the OSR FX2 board: the runner's script, the
/// end-to-end tests' and kmdf-host's (which runs it against the linked `.sys` image).
#[cfg(feature = "sim")]
pub mod session;

// The session runs on the host (kmdf-sim), never in the driver image.
#[cfg(feature = "sim")]
extern crate std;
