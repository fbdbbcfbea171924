//! The platform: the only code in DMF that touches the operating system.
//!
//! [`contract`] writes down, item by item, what DMF needs from the OS and which WDF or NT routine
//! each item maps to on the kernel backend. A backend implements the contract with one concrete
//! type per item, re-exported here under a plain name, which is what the rest of DMF — and Module
//! and driver code — names:
//!
//! | Name | Contract | Rundown/locks built on it |
//! |---|---|---|
//! | [`Event`] | [`PlatformEvent`](contract::PlatformEvent) | [`RundownRef`] waits on it |
//! | [`SpinLock`] | [`PlatformSpinLock`](contract::PlatformSpinLock) | `sync::ModuleLock` (DISPATCH Modules) |
//! | [`WaitLock`] | [`PlatformWaitLock`](contract::PlatformWaitLock) | `sync::ModuleLock` (PASSIVE Modules) |
//! | [`CurrentIrql`] | [`PlatformIrql`](contract::PlatformIrql) | IRQL assertions |
//! | [`Clock`] | [`PlatformClock`](contract::PlatformClock) | time-outs, the `Time` Module |
//! | [`WallClock`] | [`PlatformWallClock`](contract::PlatformWallClock) | the `Time` Module's system and local time |
//! | [`NamedEvent`] | [`PlatformNamedEvent`](contract::PlatformNamedEvent) | the `NotifyUserWithEvent` Module |
//! | [`Pool`] | [`PlatformPool`](contract::PlatformPool) | buffer Modules |
//! | [`Trace`] | [`PlatformTrace`](contract::PlatformTrace) | per-Module trace |
//! | [`Request`], [`Queue`], [`FileObject`], [`IoTarget`] | [`contract::io`] | request dispatch, the target Modules |
//! | [`Device`], [`DeviceInit`], [`Driver`] | [`contract::device`] | the client-driver API |
//! | [`HidParser`] | [`contract::hid`] | the `HidTarget` Module |
//!
//! Backends, chosen by Cargo feature:
//! - `sim` (default): the contract on `kmdf-sim`, the user-mode KMDF. The only place in dmf-core that
//!   names `std`. Code runs on a simulated machine's threads, with its IRQL rules and verifier.
//! - `kmdf` (Windows with the WDK or eWDK): one wdk-sys call per operation (`platform/kmdf/`,
//!   reviewed item by item in `docs/kmdf-backend.md`). It needs wdk-sys, whose build script needs
//!   the WDK, so it exists only on Windows targets; selecting it elsewhere is a compile error
//!   that says why. With both features, `sim` wins (the workspace's default builds stay on the
//!   simulator); a driver package builds with `--no-default-features --features kmdf`.
//!
//! With no backend feature the crate still builds its platform-independent part (status, rundown,
//! the contract), which is how CI proves dmf-core `no_std` on a target without `std`.

pub mod contract;

// The NT layer (feature `nt`, Windows targets only): ntoskrnl.exe rundown, events, pool, spin
// locks, IRQL, clock and debug output for kernel-mode images. Documented in `nt/mod.rs`.
#[cfg(all(feature = "nt", target_os = "windows"))]
pub mod nt;

#[cfg(feature = "sim")]
mod sim;
#[cfg(feature = "sim")]
pub use sim::HidParser;
#[cfg(feature = "sim")]
pub use sim::{
    Clock, CurrentIrql, Device, DeviceInit, Driver, Event, FileObject, InterfaceNotification,
    IoTarget, Pool, PoolBuffer, Queue, RegistryKey, Request, Resources, SpinLock, SystemThread,
    Timer, Trace, WaitLock, WorkItem,
};
#[cfg(feature = "sim")]
pub use sim::{NamedEvent, WallClock};

/// Simulator-only entry points: installing and loading drivers on a `kmdf_sim::Machine` (on
/// Windows the PnP manager and `DriverEntry` do this), allocation-failure sweeps
/// ([`alloc_sweep`](simulator::alloc_sweep)), the Module lifecycle lines of a machine's trace
/// ([`module_events`](simulator::module_events), [`module_lines`](simulator::module_lines)) and
/// its sequence diagram ([`SequenceDiagram`](simulator::SequenceDiagram)); docs/trace.md.
#[cfg(feature = "sim")]
pub mod simulator {
    pub use super::sim::diagram::{self, SequenceDiagram};
    pub use super::sim::module_events::{
        module_events, module_lines, strip_level, ModuleAction, ModuleEvent,
    };
    pub use super::sim::{
        alloc_sweep, install_driver, live_heap_blocks, load_driver, platform_guid, plug_in_device,
        sim_guid, CountingAllocator, SweepReport, SWEEP_RUN_LIMIT,
    };
}

/// `WDF_DRIVER_CONFIG` for this platform's driver and device-init types.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub type DriverConfig = contract::device::DriverConfig<Driver, DeviceInit>;
/// `WDF_PNPPOWER_EVENT_CALLBACKS` for this platform's device.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub type PnpPowerCallbacks = contract::device::PnpPowerCallbacks<Device, Resources>;
/// `WDF_POWER_POLICY_EVENT_CALLBACKS` for this platform's device.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub type PowerPolicyCallbacks = contract::device::PowerPolicyCallbacks<Device>;
/// `WDF_IO_QUEUE_CONFIG` for this platform's queue and request.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub type QueueConfig = contract::io::QueueConfig<Queue, Request>;
/// `WDF_FILEOBJECT_CONFIG` for this platform's device, request and file object.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub type FileObjectConfig = contract::io::FileObjectConfig<Device, Request, FileObject>;
/// `WDF_IO_TARGET_OPEN_PARAMS` for this platform's I/O target.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub type TargetOpenParams = contract::io::TargetOpenParams<IoTarget>;

// The kernel backend (feature `kmdf` without `sim`, Windows targets only). Documented in
// `kmdf/mod.rs`.
#[cfg(all(feature = "kmdf", not(feature = "sim"), windows))]
mod kmdf;
#[cfg(all(feature = "kmdf", not(feature = "sim"), windows))]
pub use kmdf::HidParser;
#[cfg(all(feature = "kmdf", not(feature = "sim"), windows))]
pub use kmdf::{
    Clock, CurrentIrql, Device, DeviceInit, Driver, Event, FileObject, InterfaceNotification,
    IoTarget, Pool, PoolBuffer, Queue, RegistryKey, Request, Resources, SpinLock, SystemThread,
    Timer, Trace, WaitLock, WorkItem,
};
#[cfg(all(feature = "kmdf", not(feature = "sim"), windows))]
pub use kmdf::{NamedEvent, WallClock};

/// Kernel-only entry points: what `DriverEntry` calls (on kmdf-sim, [`simulator`] plays this
/// part).
#[cfg(all(feature = "kmdf", not(feature = "sim"), windows))]
pub mod kernel {
    pub use super::kmdf::driver_create;
}

#[cfg(all(feature = "kmdf", not(feature = "sim"), not(windows)))]
compile_error!(
    "dmf-core: the `kmdf` platform backend needs a Windows target: it is built on wdk-sys, whose \
     build script runs bindgen over the WDK headers and so builds only on Windows with the WDK or \
     eWDK installed (docs/deploy.md). Off Windows, use the default `sim` backend (kmdf-sim), or \
     build the WDM kernel image (kernel-image/) to check the NT layer."
);

/// Rundown protection on the platform's event: what Module Methods are guarded with.
///
/// Maps to `EX_RUNDOWN_REF` (`ExAcquireRundownProtection`, `ExReleaseRundownProtection`,
/// `ExWaitForRundownProtectionRelease`, `ExReInitializeRundownProtection`).
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub type RundownRef = crate::rundown::Rundown<Event>;

/// Passes `request` down to `device`'s next lower driver unchanged: DMF's pass-through in a
/// filter (`WdfRequestFormatRequestUsingCurrentType`, then `WdfRequestSend` with
/// `SEND_AND_FORGET` to `WdfDeviceGetIoTarget`). Returns `true` if it was sent; if the lower
/// target refuses it, the request is completed with the refusal status and the result is `false`.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub fn pass_down(request: Request, device: &Device) -> bool {
    use contract::device::PlatformDevice;
    use contract::io::{PlatformRequest, SendOptions};
    request.format_using_current_type();
    let options = SendOptions {
        send_and_forget: true,
        ..SendOptions::default()
    };
    match request.send(&device.io_target(), options) {
        Ok(()) => true,
        Err(status) => {
            request.complete(status);
            false
        }
    }
}

/// Compile-time proof that the selected backend implements the whole contract.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
const _: () = {
    const fn implements_execution_contract<
        E: contract::PlatformEvent + crate::rundown::RundownEvent,
        S: contract::PlatformSpinLock,
        W: contract::PlatformWaitLock,
        I: contract::PlatformIrql,
        C: contract::PlatformClock,
        P: contract::PlatformPool,
        T: contract::PlatformTrace,
        Tm: contract::PlatformTimer<Device = Device>,
        Wi: contract::PlatformWorkItem<Device = Device>,
        Th: contract::PlatformThread,
        R: contract::PlatformRegistryKey<Device = Device>,
    >() {
    }
    const fn implements_device_contract<
        Drv: contract::device::PlatformDriver<DeviceInit = Init>,
        Init: contract::device::PlatformDeviceInit<Device = Dev>,
        Dev: contract::device::PlatformDevice<Request = Req, Queue = Q, FileObject = F, IoTarget = T>,
        Req: contract::io::PlatformRequest<Queue = Q, FileObject = F, IoTarget = T>,
        Q: contract::io::PlatformQueue<Request = Req>,
        F: contract::io::PlatformFileObject,
        T: contract::io::PlatformIoTarget<Request = Req>,
    >() {
    }
    implements_execution_contract::<
        Event,
        SpinLock,
        WaitLock,
        CurrentIrql,
        Clock,
        Pool,
        Trace,
        Timer,
        WorkItem,
        SystemThread,
        RegistryKey,
    >();
    implements_device_contract::<Driver, DeviceInit, Device, Request, Queue, FileObject, IoTarget>(
    );
};

/// Compile-time proof that the selected backend implements the wall-clock and named-event items.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
const _: () = {
    const fn implements_system_contract<
        C: contract::PlatformWallClock,
        N: contract::PlatformNamedEvent,
    >() {
    }
    implements_system_contract::<WallClock, NamedEvent>();
};

/// Compile-time proof that the selected backend implements the bus-driver items (child PDOs).
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
const _: () = {
    const fn implements_bus_contract<
        Dev: contract::device::PlatformBus<PdoInit = Init>,
        Init: contract::device::PlatformPdoInit + contract::device::PlatformDeviceInit<Device = Dev>,
    >() {
    }
    implements_bus_contract::<Device, DeviceInit>();
};
