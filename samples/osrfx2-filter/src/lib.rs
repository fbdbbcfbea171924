//! # OSR FX2 filter — a DMF upper filter on the OSR USB-FX2 function driver
//!
//! The in-stack variant of DMF's FX2 samples (`DmfSamples/SwitchBar3` and `DmfSamples/SwitchBar4`
//! in microsoft/DMF, the upper filters over `DmfSamples/kmdf_fx2_dmf`): an upper filter driver over
//! the FX2 function driver. It has two Modules:
//!
//! * a **DefaultTarget** (its target is the next lower driver, the FX2 function driver). It
//!   streams `IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE` through the stack in *automatic* mode,
//!   between D0Entry and D0Exit, with PASSIVE_LEVEL callbacks. When the Module opens (PostOpen)
//!   and on every interrupt message it reads
//!   the switches and sets the light bar to mirror them (switch *n* lights LED *n*; see the
//!   SwitchBar sample for the wiring note).
//! * an **IoctlHandler** whose table holds every FX2 IOCTL that changes the device's state —
//!   `IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY` and `…_SET_7_SEGMENT_DISPLAY` (one input byte),
//!   `…_RESET_DEVICE` and `…_REENUMERATE_DEVICE` — each marked administrator-only
//!   (`AdministratorOnlyPerIoctl`). An application without administrator rights gets
//!   `STATUS_ACCESS_DENIED` and the request never reaches the FX2 driver. An administrator's
//!   request passes down unchanged.
//!
//! Every other request — the read-only IOCTLs (switches, displays, descriptor, interrupt
//! message), reads, writes, creates — is handled by no Module, so DMF's automatic pass-through in
//! a filter (set up by `DMF_DmfFdoSetFilter`) sends it down untouched: queries stay open to
//! everyone. The filter therefore has no queue code of its own.
//!
//! The driver code is the same on both backends. The simulator runner is the `osrfx2-filter`
//! binary of this package.
#![no_std]
#![forbid(unsafe_code)]

use dmf::core::module::ModuleInit;
use dmf::core::platform::Device;
use dmf::modules::continuous_request_target::{
    BufferDisposition, ContinuousRequestTargetConfig, StreamCompletion, StreamMode,
};
use dmf::modules::default_target::{DefaultTarget, DefaultTargetConfig};
use dmf::modules::ioctl_handler::{
    IoctlAccessMode, IoctlCall, IoctlEntry, IoctlHandler, IoctlHandlerConfig, IoctlResult,
    IoctlTable,
};
use dmf::modules::request_target::RequestKind;
use dmf::prelude::*;

/// `CTL_CODE(FILE_DEVICE_OSRUSBFX2, IOCTL_INDEX + 1, METHOD_BUFFERED, FILE_WRITE_ACCESS)`.
pub const IOCTL_OSRUSBFX2_RESET_DEVICE: u32 = 0x5500_A004;
/// `CTL_CODE(FILE_DEVICE_OSRUSBFX2, IOCTL_INDEX + 3, METHOD_BUFFERED, FILE_WRITE_ACCESS)`.
pub const IOCTL_OSRUSBFX2_REENUMERATE_DEVICE: u32 = 0x5500_A00C;
/// `CTL_CODE(FILE_DEVICE_OSRUSBFX2, IOCTL_INDEX + 5, METHOD_BUFFERED, FILE_WRITE_ACCESS)`.
pub const IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY: u32 = 0x5500_A014;
/// `CTL_CODE(FILE_DEVICE_OSRUSBFX2, IOCTL_INDEX + 8, METHOD_BUFFERED, FILE_WRITE_ACCESS)`.
pub const IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY: u32 = 0x5500_A020;

/// The IOCTLs that change the board's state, with their minimum input sizes: administrator-only
/// in the filter's table.
pub const ADMINISTRATOR_ONLY_IOCTLS: [(u32, usize); 4] = [
    (IOCTL_OSRUSBFX2_RESET_DEVICE, 0),
    (IOCTL_OSRUSBFX2_REENUMERATE_DEVICE, 0),
    (IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, 1),
    (IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY, 1),
];
/// `CTL_CODE(FILE_DEVICE_OSRUSBFX2, IOCTL_INDEX + 6, METHOD_BUFFERED, FILE_READ_ACCESS)`.
pub const IOCTL_OSRUSBFX2_READ_SWITCHES: u32 = 0x5500_6018;
/// `CTL_CODE(FILE_DEVICE_OSRUSBFX2, IOCTL_INDEX + 9, METHOD_OUT_DIRECT, FILE_READ_ACCESS)`.
pub const IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE: u32 = 0x5500_6026;

/// The trace source of this driver's lines (`FX2Filter: …`; `dmf::trace!`).
const SOURCE: &str = "FX2Filter";

/// Reads the switches through the lower driver and sets the bar to mirror them.
fn mirror(target: &DefaultTarget) -> NtResult<u8> {
    let (switches, read) =
        target.send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1))?;
    let switches = if read >= 1 { switches[0] } else { 0 };
    target.send_synchronously(&SendRequest::ioctl(
        IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
        &[switches],
        0,
    ))?;
    dmf::trace!(
        SOURCE,
        "switches {switches:08b} -> light bar {switches:08b}"
    );
    Ok(switches)
}

/// The interrupt message arrived (or failed: the device is leaving).
fn interrupt_message(
    target: &DefaultTarget,
    completion: &StreamCompletion<'_>,
) -> BufferDisposition {
    if !completion.status.is_success() {
        return BufferDisposition::StopStreaming;
    }
    match mirror(target) {
        Ok(_) => BufferDisposition::ContinueStreaming,
        Err(status) => {
            dmf::trace!(Warning, SOURCE, "mirroring failed with {status:?}");
            BufferDisposition::StopStreaming
        }
    }
}

/// The IoctlHandler entries' handler: an administrator's request goes down unchanged.
fn pass_down(device: &Device, call: &mut IoctlCall<'_>) -> IoctlResult {
    let what = match call.code() {
        IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY => "sets the light bar",
        IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY => "sets the 7-segment display",
        IOCTL_OSRUSBFX2_RESET_DEVICE => "resets the device",
        _ => "re-enumerates the device",
    };
    let Some((request, pended)) = call.take() else {
        return IoctlResult::status(NtStatus::INVALID_DEVICE_STATE);
    };
    dmf::trace!(SOURCE, "an administrator {what}: passed down");
    let _ = dmf::core::device::pass_down(request, device);
    IoctlResult::Pending(pended)
}

/// The filter's Modules.
///
/// # Errors
///
/// `STATUS_INSUFFICIENT_RESOURCES` if the configuration cannot be allocated; Module creation
/// errors are reported by `modules_create`.
pub fn modules_add(device: &Device, modules: &mut ModuleInit) -> NtResult<()> {
    let mut target = DefaultTargetConfig {
        stream: Some(ContinuousRequestTargetConfig {
            request_count: 1,
            request_type: RequestKind::Ioctl,
            ioctl_code: IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
            output_buffer_size: 1,
            mode: StreamMode::Automatic,
            ..ContinuousRequestTargetConfig::default()
        }),
        ..DefaultTargetConfig::default()
    };
    target.output_callback = Some(fallible::try_arc(interrupt_message)?);
    modules.add(
        DefaultTarget::with(target)
            .passive_level(true)
            // The board reported its switches at power-up, before the stream started: sync once.
            .on_post_open(|target| {
                if let Err(status) = mirror(target) {
                    dmf::trace!(Warning, SOURCE, "initial mirror failed with {status:?}");
                }
            }),
    );

    let mut entries = fallible::try_vec_with_capacity(ADMINISTRATOR_ONLY_IOCTLS.len())?;
    for (code, input_minimum) in ADMINISTRATOR_ONLY_IOCTLS {
        let fdo = device.clone();
        let entry = IoctlEntry::new(code, input_minimum, 0, move |call: &mut IoctlCall<'_>| {
            pass_down(&fdo, call)
        })?;
        entries.try_push(entry.administrator_only())?;
    }
    let table = IoctlTable::new(entries)?;
    modules.add(IoctlHandler::with(IoctlHandlerConfig {
        table,
        access_mode: IoctlAccessMode::AdministratorOnlyPerIoctl,
        ..IoctlHandlerConfig::default()
    }));
    Ok(())
}

dmf::driver!(modules_add = modules_add, filter = true);

/// The scripted session on a simulated machine with the OSR FX2 board: the runner's script, the
/// end-to-end tests' and kmdf-host's (which runs it against the linked `.sys` image).
#[cfg(feature = "sim")]
pub mod session;

// The session runs on the host (kmdf-sim), never in the driver image.
#[cfg(feature = "sim")]
extern crate std;
