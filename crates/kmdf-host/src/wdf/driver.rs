//! `WdfDriverCreate` and the driver's life on kmdf-sim: `EvtDriverDeviceAdd` and unload.
//!
//! A loaded image becomes a kmdf-sim driver package ([`install`]): kmdf-sim loads it on demand —
//! when the first device node naming the service is plugged in, or when a test loads it —
//! creating its `WDFDRIVER` and calling the package's `DriverEntry`, which here is the image's
//! entry point (`FxDriverEntry` → `WdfVersionBind` → the driver's `DriverEntry`). The driver's
//! `WdfDriverCreate` then joins the kmdf-sim driver being loaded on that thread: it reads
//! `WDF_DRIVER_CONFIG` (`EvtDriverDeviceAdd`, `EvtDriverUnload`, the init flags and pool tag)
//! and the driver object's attributes, and, as KMDF does, points `DriverObject->DriverUnload` at
//! the framework's unload routine (which `FxDriverEntry` then displaces with its own, which
//! unbinds after it). kmdf-sim's `AddDevice` calls `EvtDriverDeviceAdd` with a `WDFDEVICE_INIT`
//! ([`super::device`]); kmdf-sim's unload (last device gone, or an explicit unload) calls the
//! `DriverUnload` routine the driver object holds.
//!
//! One ordering differs from KMDF: the driver object's own `EvtCleanupCallback` and
//! `EvtDestroyCallback` run right after `EvtDriverUnload`, before kmdf-sim deletes the objects
//! parented to the driver (KMDF cleans those up first). No driver we run depends on it.

use core::cell::RefCell;
use core::ffi::c_void;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kmdf_sim::driver::{self as sim_driver, DriverConfig};
use kmdf_sim::object::WdfObject;
use kmdf_sim::{Machine, Status};

use super::bindings::status::STATUS_SUCCESS;
use super::bindings::_WDF_DRIVER_INIT_FLAGS::WdfDriverInitNonPnpDriver;
use super::bindings::{
    NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, PFN_WDF_DRIVER_DEVICE_ADD, PFN_WDF_DRIVER_UNLOAD,
    PWDF_DRIVER_CONFIG, PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES, PWSTR, WDFDRIVER, WDFOBJECT,
    WDF_DRIVER_CONFIG,
};
use super::objects::{self, Attributes, Handle};
use super::{device, wdf_exports};
use crate::host::{guard, stop, DriverObject, Stop, UnicodeString};
use crate::wdfldr::WdfDriverGlobals;

wdf_exports! {
    WdfDriverCreate => wdf_driver_create: PFN_WDFDRIVERCREATE,
    WdfDriverWdmGetDriverObject => wdf_driver_wdm_get_driver_object: PFN_WDFDRIVERWDMGETDRIVEROBJECT,
    WdfDriverGetRegistryPath => wdf_driver_get_registry_path: PFN_WDFDRIVERGETREGISTRYPATH,
    WdfWdmDriverGetWdfDriverHandle => wdf_wdm_driver_get_wdf_driver_handle: PFN_WDFWDMDRIVERGETWDFDRIVERHANDLE,
}

/// A driver image's framework state after `WdfDriverCreate`.
pub struct HostDriver {
    /// The service name.
    pub service: String,
    /// The `WDF_DRIVER_GLOBALS` `WdfVersionBind` handed the image.
    pub globals: usize,
    /// The `DRIVER_OBJECT` the entry point received.
    pub driver_object: usize,
    /// The registry path, NUL-terminated (`WdfDriverGetRegistryPath`).
    registry_path: Vec<u16>,
    /// `EvtDriverDeviceAdd`.
    pub device_add: PFN_WDF_DRIVER_DEVICE_ADD,
    /// `EvtDriverUnload`.
    pub unload: PFN_WDF_DRIVER_UNLOAD,
    /// `DriverInitFlags`.
    pub init_flags: u32,
    /// The `WDFDRIVER` handle.
    pub handle: Handle,
    /// The kmdf-sim driver.
    pub sim: sim_driver::Driver,
    attributes: Option<Attributes>,
}

impl core::fmt::Debug for HostDriver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostDriver")
            .field("service", &self.service)
            .field("handle", &format_args!("{:#x}", self.handle))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every driver that called `WdfDriverCreate`, for lookups by globals and driver object.
static DRIVERS: Mutex<Vec<Arc<HostDriver>>> = Mutex::new(Vec::new());

/// The driver bound with `globals`, or a stop naming `routine`.
pub fn of_globals(globals: PWDF_DRIVER_GLOBALS, routine: &str) -> Arc<HostDriver> {
    lock(&DRIVERS)
        .iter()
        .rev()
        .find(|d| d.globals == globals as usize)
        .cloned()
        .unwrap_or_else(|| {
            stop(Stop {
                message: format!(
                    "kmdf-host: {routine} was called with DriverGlobals {globals:p} before \
                     WdfDriverCreate succeeded for them"
                ),
                wdf_function: None,
            })
        })
}

fn of_driver_object(object: usize) -> Option<Arc<HostDriver>> {
    lock(&DRIVERS)
        .iter()
        .rev()
        .find(|d| d.driver_object == object)
        .cloned()
}

/// The package being loaded on this thread: its kmdf-sim driver and where `WdfDriverCreate`
/// leaves the host state for the package's callbacks.
struct Loading {
    sim: sim_driver::Driver,
    slot: Slot,
}

/// The host state of a package's current load (empty while it is not loaded).
type Slot = Arc<Mutex<Option<Arc<HostDriver>>>>;

thread_local! {
    static LOADING: RefCell<Option<Loading>> = const { RefCell::new(None) };
}

/// The image entry point's type: `NTSTATUS (PDRIVER_OBJECT, PUNICODE_STRING)`.
pub type EntryPoint = extern "win64" fn(*mut DriverObject, *mut UnicodeString) -> i32;

/// One load's entry point and what the I/O manager hands it.
#[derive(Clone, Copy, Debug)]
pub struct EntryArgs {
    entry: EntryPoint,
    driver_object: usize,
    registry_path: usize,
}

impl EntryArgs {
    /// `entry` called with `driver_object` and `registry_path`, which must stay valid while the
    /// load's driver can run.
    pub fn new(
        entry: EntryPoint,
        driver_object: *mut DriverObject,
        registry_path: *mut UnicodeString,
    ) -> EntryArgs {
        EntryArgs {
            entry,
            driver_object: driver_object as usize,
            registry_path: registry_path as usize,
        }
    }
}

/// Gives the entry arguments of each load of a package (a fresh mapping of the image, for one).
pub type Loader = Arc<dyn Fn() -> Result<EntryArgs, Status> + Send + Sync>;

/// Installs a driver whose every load calls `entry` with `driver_object` and `registry_path`
/// (see [`install_with`]).
pub fn install(
    machine: &Machine,
    service: &str,
    entry: EntryPoint,
    driver_object: *mut DriverObject,
    registry_path: *mut UnicodeString,
) {
    let args = EntryArgs::new(entry, driver_object, registry_path);
    install_with(machine, service, Arc::new(move || Ok(args)));
}

/// Installs a driver image as the kmdf-sim driver package `service` on `machine` (see the
/// [module documentation](self)). Each load asks `loader` for the entry point to call and its
/// arguments.
pub fn install_with(machine: &Machine, service: &str, loader: Loader) {
    let slot: Slot = Arc::new(Mutex::new(None));
    let entry_slot = Arc::clone(&slot);
    let add_slot = Arc::clone(&slot);
    let unload_slot = Arc::clone(&slot);
    let config = DriverConfig::new(move |_driver, init| {
        let Some(host) = lock(&add_slot).clone() else {
            // DriverEntry succeeded without WdfDriverCreate: no EvtDriverDeviceAdd.
            return Err(Status::INVALID_DEVICE_STATE);
        };
        device::device_add(&host, init)
    })
    .on_entry(move |driver| {
        let args = loader()?;
        LOADING.with(|l| {
            *l.borrow_mut() = Some(Loading {
                sim: driver.clone(),
                slot: Arc::clone(&entry_slot),
            });
        });
        let status = (args.entry)(
            args.driver_object as *mut DriverObject,
            args.registry_path as *mut UnicodeString,
        );
        LOADING.with(|l| l.borrow_mut().take());
        if status >= 0 {
            Ok(())
        } else {
            // A failed DriverEntry: KMDF deletes the WDFDRIVER it created.
            if let Some(host) = lock(&entry_slot).take() {
                forget(&host);
            }
            Err(Status(status))
        }
    })
    .on_driver_unload(move |_driver| {
        let Some(host) = lock(&unload_slot).take() else {
            return;
        };
        let object = host.driver_object as *mut DriverObject;
        // SAFETY: the load's driver object, alive while its image is mapped (the loader's
        // contract).
        let unload = unsafe { (*object).driver_unload };
        if unload != 0 {
            // SAFETY: `DriverUnload` is `VOID (PDRIVER_OBJECT)` in the image or the host
            // (`framework_unload`), with the Microsoft x64 calling convention.
            let unload: extern "win64" fn(*mut DriverObject) =
                unsafe { core::mem::transmute::<usize, _>(unload) };
            unload(object);
        }
        forget(&host);
    });
    sim_driver::install(machine, service, config);
}

/// Forgets a load's host state: its WDFDRIVER handle and its place in the driver list.
fn forget(host: &Arc<HostDriver>) {
    objects::retire_handle(host.handle);
    lock(&DRIVERS).retain(|d| !Arc::ptr_eq(d, host));
}

/// KMDF's `DriverUnload` routine (`WdfDriverCreate` installs it): `EvtDriverUnload`, then the
/// driver object's cleanup and destroy callbacks.
extern "win64" fn framework_unload(driver_object: *mut DriverObject) {
    guard("DriverUnload", || {
        let Some(host) = of_driver_object(driver_object as usize) else {
            return;
        };
        if let Some(unload) = host.unload {
            kmdf_sim::verifier::invoke_callback(
                &host.service,
                host.sim.object().name(),
                "EvtDriverUnload",
                || {
                    // SAFETY: the driver's `EVT_WDF_DRIVER_UNLOAD`, with its own WDFDRIVER.
                    unsafe { unload(host.handle as WDFDRIVER) };
                },
            );
        }
        if let Some(attributes) = host.attributes {
            if let Some(cleanup) = attributes.cleanup {
                // SAFETY: the driver's `EVT_WDF_OBJECT_CONTEXT_CLEANUP` for its WDFDRIVER.
                unsafe { cleanup(host.handle as WDFOBJECT) };
            }
            if let Some(destroy) = attributes.destroy {
                // SAFETY: as above, `EVT_WDF_OBJECT_CONTEXT_DESTROY`.
                unsafe { destroy(host.handle as WDFOBJECT) };
            }
        }
        forget(&host);
    });
}

/// `WdfDriverCreate`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a missing config, driver object or registry path, or a
/// PnP driver without `EvtDriverDeviceAdd`; `STATUS_INFO_LENGTH_MISMATCH` for a config or
/// attributes of the wrong size; `STATUS_INVALID_DEVICE_STATE` when called outside the
/// driver's load (a second `WdfDriverCreate`, or from another thread). The `Driver` out pointer
/// may be null, as in KMDF.
extern "win64" fn wdf_driver_create(
    globals: PWDF_DRIVER_GLOBALS,
    driver_object: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    config: PWDF_DRIVER_CONFIG,
    driver_out: *mut WDFDRIVER,
) -> NTSTATUS {
    guard("WdfDriverCreate", || {
        if config.is_null() || driver_object.is_null() || registry_path.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        // SAFETY: the routine's contract: the driver's WDF_DRIVER_CONFIG for the call.
        let cfg: &WDF_DRIVER_CONFIG = unsafe { &*config };
        if cfg.Size as usize != size_of::<WDF_DRIVER_CONFIG>() {
            return super::bindings::status::STATUS_INFO_LENGTH_MISMATCH;
        }
        // SAFETY: as above.
        let attributes = match unsafe { Attributes::read(attributes) } {
            Ok(a) => a,
            Err(status) => return status.0,
        };
        let non_pnp = cfg.DriverInitFlags & (WdfDriverInitNonPnpDriver as u32) != 0;
        if cfg.EvtDriverDeviceAdd.is_none() && !non_pnp {
            // wdfdriver.h: a PnP driver must provide EvtDriverDeviceAdd.
            return Status::INVALID_PARAMETER.0;
        }
        let Some(loading) = LOADING.with(|l| {
            l.borrow()
                .as_ref()
                .map(|l| (l.sim.clone(), Arc::clone(&l.slot)))
        }) else {
            return Status::INVALID_DEVICE_STATE.0;
        };
        let (sim, slot) = loading;
        if lock(&slot).is_some() {
            return Status::INVALID_DEVICE_STATE.0;
        }
        // SAFETY: the registry path the entry point received (FxDriverEntry's copy).
        let path = unsafe { UnicodeString::read(registry_path.cast()) }.unwrap_or_default();
        let pending = match objects::begin("WDFDRIVER", attributes) {
            Ok(p) => p,
            Err(status) => return status.0,
        };
        let handle = pending.handle();
        let host = Arc::new(HostDriver {
            service: sim.name().to_owned(),
            globals: globals as usize,
            driver_object: driver_object as usize,
            registry_path: path.encode_utf16().chain(Some(0)).collect(),
            device_add: cfg.EvtDriverDeviceAdd,
            unload: cfg.EvtDriverUnload,
            init_flags: cfg.DriverInitFlags,
            handle,
            sim: sim.clone(),
            attributes,
        });
        let object: WdfObject = sim.object().clone();
        pending.finish(object, Arc::clone(&host));
        lock(&DRIVERS).push(Arc::clone(&host));
        *lock(&slot) = Some(Arc::clone(&host));
        // SAFETY: `globals` is the WDF_DRIVER_GLOBALS WdfVersionBind handed out (a host
        // allocation that lives for the process); `driver_object` the entry point's.
        unsafe {
            if !globals.is_null() {
                let g = globals.cast::<WdfDriverGlobals>();
                (*g).driver = handle as *mut c_void;
                if cfg.DriverPoolTag != 0 {
                    (*g).driver_tag = cfg.DriverPoolTag;
                }
            }
            (*driver_object.cast::<DriverObject>()).driver_unload =
                framework_unload as *const () as usize;
            if !driver_out.is_null() {
                driver_out.write(handle as WDFDRIVER);
            }
        }
        STATUS_SUCCESS
    })
}

/// `WdfDriverWdmGetDriverObject`.
extern "win64" fn wdf_driver_wdm_get_driver_object(
    globals: PWDF_DRIVER_GLOBALS,
    driver: WDFDRIVER,
) -> PDRIVER_OBJECT {
    guard("WdfDriverWdmGetDriverObject", || {
        let host = of_handle(globals, driver, "WdfDriverWdmGetDriverObject");
        host.driver_object as PDRIVER_OBJECT
    })
}

/// `WdfDriverGetRegistryPath`: the service key path, NUL-terminated, valid while the driver is
/// loaded.
extern "win64" fn wdf_driver_get_registry_path(
    globals: PWDF_DRIVER_GLOBALS,
    driver: WDFDRIVER,
) -> PWSTR {
    guard("WdfDriverGetRegistryPath", || {
        let host = of_handle(globals, driver, "WdfDriverGetRegistryPath");
        host.registry_path.as_ptr().cast_mut()
    })
}

/// `WdfWdmDriverGetWdfDriverHandle`: the WDFDRIVER of a driver object, or null.
extern "win64" fn wdf_wdm_driver_get_wdf_driver_handle(
    _globals: PWDF_DRIVER_GLOBALS,
    driver_object: PDRIVER_OBJECT,
) -> WDFDRIVER {
    guard("WdfWdmDriverGetWdfDriverHandle", || {
        of_driver_object(driver_object as usize)
            .map_or(core::ptr::null_mut(), |d| d.handle as WDFDRIVER)
    })
}

fn of_handle(globals: PWDF_DRIVER_GLOBALS, driver: WDFDRIVER, routine: &str) -> Arc<HostDriver> {
    let host = of_globals(globals, routine);
    if host.handle != driver as usize {
        stop(Stop {
            message: format!(
                "kmdf-host: the driver passed {routine} {driver:p}, which is not its WDFDRIVER \
                 (WDF_VIOLATION)"
            ),
            wdf_function: None,
        });
    }
    host
}
