//! # DMF for Rust
//!
//! Microsoft's Driver Module Framework, rebuilt in Rust for Windows kernel-mode (KMDF) drivers,
//! with a user-mode simulation of KMDF so every driver can be tested with `cargo test`.
//!
//! A driver crate depends on `dmf` alone: [`core`] is the framework (Module model, dispatch,
//! rundown, locks, the platform contract, the client-driver API in [`core::device`]),
//! [`modules`] the Module library, and [`dmf_module`] / [`dmf_callbacks`] / [`driver!`] the
//! macros.
//!
//! # A Module and a container driver, run on the simulator
//!
//! A complete Module (config, private context, callbacks, a rundown-guarded Method), a container
//! driver that instantiates it (`DMF_DEFAULT_DRIVERENTRY` + `DMF_DEFAULT_DEVICEADD`), and a test
//! that plugs the device on a simulated machine, sends it I/O from an application, cycles system
//! power and removes it — with the verifier watching throughout.
//!
//! ```
//! use dmf::prelude::*;
//! use dmf::core::module::{IoRequest, PowerDeviceState};
//! use dmf::core::platform::contract::device::{Guid, PlatformDevice};
//! use dmf::core::platform::contract::io::PlatformRequest;
//! use dmf::core::platform::{simulator, Device};
//!
//! const GUID_COUNTER: Guid =
//!     Guid::new(0x1B2C_3D4E, 0x5F60, 0x4172, [0x83, 0x94, 0xA5, 0xB6, 0xC7, 0xD8, 0xE9, 0xF0]);
//! const IOCTL_COUNTER_GET: u32 = 0x0022_2000;
//!
//! /// Counts the power-ups of its device and reports the count by IOCTL.
//! #[derive(Clone, Debug)]
//! pub struct CounterConfig {
//!     /// The value reported before the first power-up.
//!     pub start: u32,
//! }
//!
//! #[dmf_module(config = CounterConfig, context = u32, open = Create, lock = Dispatch)]
//! pub struct Counter;
//!
//! #[dmf_callbacks]
//! impl ModuleCallbacks for Counter {
//!     fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
//!         *module.lock() = module.config().start;
//!         Ok(())
//!     }
//!     fn d0_entry(module: &Dispatched<'_, Self>, _previous: PowerDeviceState) -> NtResult<()> {
//!         *module.lock() += 1;
//!         Ok(())
//!     }
//!     fn device_io_control(module: &Dispatched<'_, Self>, io: &mut IoRequest<'_>) -> Handled {
//!         if io.ioctl_code() != IOCTL_COUNTER_GET {
//!             return Handled::NotHandled;
//!         }
//!         let count = *module.lock();
//!         let Some(request) = io.take() else { return Handled::NotHandled };
//!         match request.with_output_buffer(4, |out| out[..4].copy_from_slice(&count.to_le_bytes())) {
//!             Ok(()) => request.complete_with_information(NtStatus::SUCCESS, 4),
//!             Err(status) => request.complete(status),
//!         }
//!         Handled::Handled
//!     }
//! }
//!
//! impl Counter {
//!     /// The count (a Method: fails with STATUS_INVALID_DEVICE_STATE once the Module closes).
//!     pub fn count(&self) -> NtResult<u32> {
//!         let module = self.enter()?;
//!         let count = *module.lock();
//!         Ok(count)
//!     }
//! }
//!
//! // The container driver: its only code is the Modules-add callback.
//! fn modules_add(device: &Device, modules: &mut ModuleInit) -> NtResult<()> {
//!     device.create_interface(GUID_COUNTER, None)?;
//!     modules.add(Counter::with(CounterConfig { start: 100 }));
//!     Ok(())
//! }
//! dmf::driver!(modules_add = modules_add);
//!
//! // The test: a simulated machine, the driver installed, a device plugged in.
//! use kmdf_sim::io::{Access, AppConfig, Application};
//! use kmdf_sim::pnp::{StackSpec, SystemPowerState};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! simulator::install_driver(&machine, "counter", driver_config());
//! let node = machine.pnp().plug_in(StackSpec::new("ROOT\\COUNTER", "counter")).unwrap();
//!
//! let app = Application::new(&machine, AppConfig { administrator: false, name: "app".into() });
//! let class = simulator::sim_guid(GUID_COUNTER);
//! let handle = app.open_interface(class, Access::READ_WRITE).unwrap();
//! let read = |h: &kmdf_sim::io::Handle| {
//!     let (out, _) = h.device_io_control(IOCTL_COUNTER_GET, &[], 4).unwrap();
//!     u32::from_le_bytes(out.try_into().unwrap())
//! };
//! assert_eq!(read(&handle), 101, "opened at create, one power-up");
//! assert_eq!(
//!     handle.device_io_control(0x0022_2004, &[], 0).unwrap_err(),
//!     kmdf_sim::Status::NOT_SUPPORTED,
//!     "nobody handles it: DMF completes it"
//! );
//!
//! machine.pnp().system_sleep(SystemPowerState::S3).unwrap();
//! machine.pnp().system_resume().unwrap();
//! assert_eq!(read(&handle), 102, "the power cycle reached the Module");
//!
//! handle.close();
//! node.remove().unwrap();
//! machine.settle();
//! assert!(machine.verifier().violations().is_empty());
//! assert!(machine.pool().outstanding().is_empty());
//! ```
#![no_std]
// The guide's examples (docs/*.md, included below) and these docs compile without a warning
// (items a snippet declares but does not use, and a callback's unused parameters, aside).
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

pub use dmf_core as core;
/// Fallible heap allocation (`try_box`, `try_arc`, `VecExt::try_push`, …): every allocation a
/// driver makes after `DriverEntry`.
pub use dmf_core::fallible;
/// `dmf::trace!([Level,] source, "format", args…)`: a trace line through the platform trace
/// (`DbgPrintEx` on the kernel, a note of the machine's trace on kmdf-sim); docs/trace.md.
pub use dmf_core::trace;
pub use dmf_macros::{dmf_callbacks, dmf_module};
pub use dmf_modules as modules;

#[cfg(all(feature = "kmdf", windows))]
#[doc(hidden)]
pub mod kernel;

#[cfg(not(any(feature = "sim", feature = "kmdf")))]
compile_error!(
    "dmf: choose a platform backend: feature `sim` (the default — kmdf-sim, the user-mode KMDF \
     simulation, for `cargo run` and `cargo test` on any OS) or `kmdf` (the real KMDF on \
     Windows with the WDK: `--no-default-features --features kmdf`, docs/deploy.md). A driver \
     crate usually forwards both as its own features, as samples/switchbar/Cargo.toml does."
);

/// The names most drivers and Modules need, in one `use`.
pub mod prelude {
    pub use dmf_core::fallible::{self, VecExt};
    #[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
    pub use dmf_core::module::{
        Dispatched, Handled, Method, ModuleCallbacks, ModuleCollection, ModuleHandle, ModuleInit,
    };
    pub use dmf_core::status::{NtResult, NtStatus};
    pub use dmf_macros::{dmf_callbacks, dmf_module};
    /// The target Modules' send Methods (`send_synchronously`, `send`, `cancel`) and the request
    /// they send.
    #[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
    pub use dmf_modules::request_target::{RequestSender, SendRequest};
}

/// A container driver (`DMF_DEFAULT_DRIVERENTRY` + `DMF_DEFAULT_DEVICEADD` +
/// `DMF_DEFAULT_DRIVERCLEANUP`): the driver's only code is its Modules-add
/// callback, `fn(&Device, &mut ModuleInit) -> NtResult<()>`.
///
/// `dmf::driver!(modules_add = f)` defines `pub fn driver_config() -> DriverConfig`: the driver's
/// `WDF_DRIVER_CONFIG`, whose EvtDriverDeviceAdd hooks every callback, creates the device and
/// calls `DMF_ModulesCreate`. `dmf::driver!(modules_add = f, filter = true)` makes it an upper or
/// lower filter (`DMF_DmfFdoSetFilter`: unhandled requests pass down).
///
/// On kmdf-sim the driver is loaded with
/// `dmf::core::platform::simulator::install_driver(&machine, name, driver_config())`. On Windows
/// with the kernel backend (the driver crate builds `dmf` with feature `kmdf` and without `sim`)
/// the same invocation also emits
///
/// ```ignore
/// #[no_mangle]
/// pub unsafe extern "system" fn DriverEntry(driver_object: *mut c_void, registry_path: *const c_void) -> i32
/// ```
///
/// calling `dmf::kernel::driver_entry(driver_object, registry_path, driver_config())`
/// (`WdfDriverCreate` with this config). WdfDriverEntry.lib's `FxDriverEntry` (the image's entry
/// point, set by `wdk_build::configure_wdk_binary_build()`) binds to KMDF and calls it.
///
/// The kernel panic handler (wdk-panic) and global allocator (dmf-core's `NtPoolAllocator`, which
/// also makes `dmf::fallible::try_arc` fallible) come with `dmf`'s `kmdf` feature (its kernel
/// glue), so the driver crate names no wdk crate.
///
/// See docs/deploy.md for building and loading the package.
#[macro_export]
macro_rules! driver {
    (modules_add = $add:path $(,)?) => {
        $crate::driver!(modules_add = $add, filter = false);
    };
    (modules_add = $add:path, filter = $filter:expr $(,)?) => {
        /// This driver's `WDF_DRIVER_CONFIG` (generated by `dmf::driver!`).
        pub fn driver_config() -> $crate::core::platform::DriverConfig {
            $crate::core::device::container_driver_config($add, $filter)
        }

        $crate::__driver_entry!();
    };
}

/// `DriverEntry` for [`driver!`] on the kernel backend (`kmdf` without `sim`, Windows): calls
/// `dmf::kernel::driver_entry` with the driver's `driver_config()`.
#[cfg(all(feature = "kmdf", not(feature = "sim"), windows))]
#[doc(hidden)]
#[macro_export]
macro_rules! __driver_entry {
    () => {
        /// The image's `DriverEntry` (generated by `dmf::driver!`): `WdfDriverCreate` with
        /// `driver_config()`.
        ///
        /// # Safety
        /// Called by KMDF's `FxDriverEntry` only, once, with the I/O manager's arguments.
        #[no_mangle]
        #[allow(non_snake_case)]
        pub unsafe extern "system" fn DriverEntry(
            driver_object: *mut ::core::ffi::c_void,
            registry_path: *const ::core::ffi::c_void,
        ) -> i32 {
            // SAFETY: the I/O manager (through FxDriverEntry) passes its driver object and
            // registry path, once; they are forwarded unchanged.
            unsafe { $crate::kernel::driver_entry(driver_object, registry_path, driver_config()) }
        }
    };
}

/// No `DriverEntry` off the kernel backend: kmdf-sim loads drivers from `driver_config()`.
#[cfg(not(all(feature = "kmdf", not(feature = "sim"), windows)))]
#[doc(hidden)]
#[macro_export]
macro_rules! __driver_entry {
    () => {};
}

/// The guide pages' examples, compiled and run as doctests so the docs cannot rot.
#[cfg(all(doctest, feature = "sim"))]
#[doc = include_str!("../docs/writing-modules-and-drivers.md")]
pub struct GuideWritingModulesAndDrivers;

/// The tracing page's examples, compiled (and the first run) as doctests.
#[cfg(all(doctest, feature = "sim"))]
#[doc = include_str!("../docs/trace.md")]
pub struct GuideTrace;
