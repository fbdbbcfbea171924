//! The host: the import table the loader binds against, a driver's `DRIVER_OBJECT`, the call of
//! its entry point on a kmdf-sim machine, and how a run ends early.
//!
//! # How a run ends early
//! Driver code cannot be unwound through (its frames have no Rust unwind information, and a panic
//! may not cross an `extern "win64"` boundary anyway). When the driver does something the host
//! must refuse — calls a WDF function the host does not implement yet, bug-checks, frees a block
//! it does not own — the host routine calls [`stop`]: it hands a [`Stop`] to the run that is
//! waiting for the driver (the thread that called [`Driver::call_entry`]) and parks the driver's
//! thread for good. The caller sees a failed scenario with the message; the image stays mapped
//! (it is leaked, since a parked frame is still inside it). A test therefore gets the failure as
//! a value, and the runner (`cargo run -p kmdf-host`) reports it and exits non-zero, which is how
//! the tests drive both images: as a child process.

use core::ffi::c_void;
use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};

use kmdf_sim::Machine;

use crate::pe::{Image, Import, LoadError};
use crate::{nt, wdfldr};

/// Why a run ended before the driver returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stop {
    /// What happened, for a person (the runner prints it).
    pub message: String,
    /// The WDF function the driver called that the host does not implement: (slot, name).
    pub wdf_function: Option<(u32, &'static str)>,
}

/// How a call into the driver ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The driver returned this `NTSTATUS`.
    Returned(i32),
    /// The host stopped the run (see [`Stop`]).
    Stopped(Stop),
}

/// The run a driver thread reports to.
struct RunContext {
    sender: Mutex<mpsc::Sender<Outcome>>,
}

thread_local! {
    static RUN: RefCell<Option<Arc<RunContext>>> = const { RefCell::new(None) };
}

/// Exit code of a process whose driver thread was stopped with no run to report to.
pub const STOPPED_EXIT_CODE: i32 = 2;

/// Ends the current run with `stop` (see the [module documentation](self)); never returns.
///
/// On a thread that is not running a driver call for a run, prints the message and exits the
/// process with [`STOPPED_EXIT_CODE`].
pub fn stop(stop: Stop) -> ! {
    let run = RUN.with(|r| r.borrow().clone());
    let Some(run) = run else {
        eprintln!("{}", stop.message);
        std::process::exit(STOPPED_EXIT_CODE);
    };
    if let Some(machine) = Machine::current() {
        machine.trace().record(
            kmdf_sim::trace::TraceKind::Note,
            "kmdf-host",
            stop.message.trim_start_matches("kmdf-host: "),
        );
    }
    let _ = run
        .sender
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(Outcome::Stopped(stop));
    loop {
        std::thread::park();
    }
}

/// Runs `body` for the host routine `routine`; a panic in it (a kmdf-sim bug check in Panic mode,
/// a host bug) becomes a [`stop`] instead of unwinding into driver code.
pub(crate) fn guard<R>(routine: &str, body: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            let text = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".to_owned());
            stop(Stop {
                message: format!("kmdf-host: {routine} failed: {text}"),
                wdf_function: None,
            })
        }
    }
}

/// The machine of the calling thread, or a stop naming `routine`.
pub(crate) fn machine(routine: &str) -> Machine {
    Machine::current().unwrap_or_else(|| {
        stop(Stop {
            message: format!("kmdf-host: {routine} called on a thread bound to no machine"),
            wdf_function: None,
        })
    })
}

/// Every routine the host provides, as (DLL, name, address).
pub fn exports() -> Vec<(&'static str, &'static str, usize)> {
    let mut all = Vec::new();
    for (name, address) in nt::exports() {
        all.push(("ntoskrnl.exe", name, address));
    }
    for (name, address) in wdfldr::exports() {
        all.push(("WDFLDR.SYS", name, address));
    }
    all
}

/// The loader's resolver: the host routine `dll!name` (DLL names case-insensitive).
pub fn resolve(dll: &str, name: &str) -> Option<usize> {
    exports()
        .into_iter()
        .find(|(d, n, _)| d.eq_ignore_ascii_case(dll) && *n == name)
        .map(|(_, _, address)| address)
}

/// `UNICODE_STRING`.
#[repr(C)]
#[derive(Debug)]
pub struct UnicodeString {
    /// Bytes in use (no terminator).
    pub length: u16,
    /// Bytes of the buffer.
    pub maximum_length: u16,
    /// UTF-16 text.
    pub buffer: *mut u16,
}

impl UnicodeString {
    /// The text `s` points at, or `None` for a null pointer.
    ///
    /// # Safety
    /// `s` is null or points to a `UNICODE_STRING` whose buffer holds `length` readable bytes.
    pub unsafe fn read(s: *const UnicodeString) -> Option<String> {
        if s.is_null() {
            return None;
        }
        // SAFETY: the caller's contract.
        let s = unsafe { &*s };
        if s.buffer.is_null() {
            return Some(String::new());
        }
        // SAFETY: as above: `length` bytes of UTF-16 at `buffer`.
        let units = unsafe { core::slice::from_raw_parts(s.buffer, usize::from(s.length / 2)) };
        Some(String::from_utf16_lossy(units))
    }
}

/// `DRIVER_EXTENSION` (x64: 40 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct DriverExtension {
    /// Back to the driver object.
    pub driver_object: *mut DriverObject,
    /// `AddDevice` (KMDF sets it in `WdfDriverCreate`).
    pub add_device: usize,
    /// `Count`.
    pub count: u32,
    /// `ServiceKeyName`.
    pub service_key_name: UnicodeString,
}

/// `IRP_MJ_MAXIMUM_FUNCTION + 1`.
pub const MAJOR_FUNCTION_COUNT: usize = 28;
/// `IO_TYPE_DRIVER`.
pub const IO_TYPE_DRIVER: i16 = 4;

/// `DRIVER_OBJECT` (x64: 336 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct DriverObject {
    /// `IO_TYPE_DRIVER`.
    pub kind: i16,
    /// `sizeof(DRIVER_OBJECT)`.
    pub size: i16,
    /// The first device object.
    pub device_object: *mut c_void,
    /// `DRVO_*` flags.
    pub flags: u32,
    /// The image's base.
    pub driver_start: *mut c_void,
    /// The image's size.
    pub driver_size: u32,
    /// The loader's entry (opaque).
    pub driver_section: *mut c_void,
    /// The driver extension.
    pub driver_extension: *mut DriverExtension,
    /// `\Driver\<service>`.
    pub driver_name: UnicodeString,
    /// The hardware database path (unused: null).
    pub hardware_database: *mut UnicodeString,
    /// Fast I/O (none).
    pub fast_io_dispatch: *mut c_void,
    /// The entry point.
    pub driver_init: usize,
    /// `DriverStartIo`.
    pub driver_start_io: usize,
    /// `DriverUnload` (set by the driver).
    pub driver_unload: usize,
    /// The IRP dispatch routines.
    pub major_function: [usize; MAJOR_FUNCTION_COUNT],
}

// The x64 layouts of ntddk.h (as bindgen reports them for the KMDF 1.33 / mingw-w64 headers the
// kmdf check generates its bindings from).
const _: () = {
    assert!(size_of::<UnicodeString>() == 16);
    assert!(size_of::<DriverExtension>() == 40);
    assert!(core::mem::offset_of!(DriverExtension, service_key_name) == 24);
    assert!(size_of::<DriverObject>() == 336);
    assert!(core::mem::offset_of!(DriverObject, driver_extension) == 48);
    assert!(core::mem::offset_of!(DriverObject, driver_name) == 56);
    assert!(core::mem::offset_of!(DriverObject, driver_init) == 88);
    assert!(core::mem::offset_of!(DriverObject, driver_unload) == 104);
    assert!(core::mem::offset_of!(DriverObject, major_function) == 112);
};

/// The strings and objects the I/O manager hands a driver, at stable addresses.
struct DriverObjects {
    object: DriverObject,
    extension: DriverExtension,
    registry_path: UnicodeString,
    /// Backing UTF-16 buffers of the strings above.
    _texts: Vec<Vec<u16>>,
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(core::iter::once(0)).collect()
}

fn unicode(buffer: &mut [u16]) -> UnicodeString {
    let bytes = u16::try_from((buffer.len() - 1) * 2).unwrap_or(u16::MAX - 1);
    UnicodeString {
        length: bytes,
        maximum_length: bytes + 2,
        buffer: buffer.as_mut_ptr(),
    }
}

/// `STATUS_INVALID_DEVICE_REQUEST`: what the I/O manager's default dispatch routine completes
/// IRPs with. The host never sends IRPs (kmdf-sim dispatches I/O), so reaching one is a stop.
extern "win64" fn invalid_device_request(_device: *mut c_void, _irp: *mut c_void) -> i32 {
    stop(Stop {
        message: "kmdf-host: an IRP dispatch routine was called; the host delivers I/O through \
                  kmdf-sim, never as IRPs"
            .to_owned(),
        wdf_function: None,
    })
}

/// One mapping of an image with the `DRIVER_OBJECT` and registry path its entry point gets.
struct Instance {
    image: Image,
    objects: Box<DriverObjects>,
}

// SAFETY: the image mapping and the boxed objects are plain process memory with no thread
// affinity; the driver code that uses them synchronises its own access, as in the kernel.
unsafe impl Send for Instance {}
// SAFETY: as for `Send`; `Instance` exposes no interior mutability to safe code.
unsafe impl Sync for Instance {}

impl Instance {
    fn map(bytes: &[u8], service: &str) -> Result<Instance, LoadError> {
        let image = Image::load(bytes, &resolve)?;
        // The UTF-16 buffers move into the box below; their heap storage does not move.
        let mut texts = vec![
            wide(&format!("\\Driver\\{service}")),
            wide(service),
            wide(&format!(
                "\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\{service}"
            )),
        ];
        let [name, key, path] = texts.as_mut_slice() else {
            unreachable!("three strings")
        };
        let (name, key, path) = (unicode(name), unicode(key), unicode(path));
        let mut objects = Box::new(DriverObjects {
            object: DriverObject {
                kind: IO_TYPE_DRIVER,
                size: 336,
                device_object: core::ptr::null_mut(),
                flags: 0,
                driver_start: image.base() as *mut c_void,
                driver_size: u32::try_from(image.size()).unwrap_or(u32::MAX),
                driver_section: core::ptr::null_mut(),
                driver_extension: core::ptr::null_mut(),
                driver_name: name,
                hardware_database: core::ptr::null_mut(),
                fast_io_dispatch: core::ptr::null_mut(),
                driver_init: image.entry(),
                driver_start_io: 0,
                driver_unload: 0,
                major_function: [invalid_device_request as *const () as usize;
                    MAJOR_FUNCTION_COUNT],
            },
            extension: DriverExtension {
                driver_object: core::ptr::null_mut(),
                add_device: 0,
                count: 0,
                service_key_name: key,
            },
            registry_path: path,
            _texts: texts,
        });
        let object: *mut DriverObject = &raw mut objects.object;
        objects.extension.driver_object = object;
        objects.object.driver_extension = &raw mut objects.extension;
        Ok(Instance { image, objects })
    }

    fn entry_args(&self) -> crate::wdf::driver::EntryArgs {
        // SAFETY: the entry point of the loaded, bound image, whose type on x64 is
        // `NTSTATUS (DRIVER_OBJECT*, UNICODE_STRING*)` with the Microsoft x64 calling convention.
        let entry: crate::wdf::driver::EntryPoint =
            unsafe { core::mem::transmute::<usize, _>(self.image.entry()) };
        crate::wdf::driver::EntryArgs::new(
            entry,
            (&raw const self.objects.object).cast_mut(),
            (&raw const self.objects.registry_path).cast_mut(),
        )
    }
}

/// A loaded driver image with its `DRIVER_OBJECT` and registry path.
///
/// Like Windows, which maps a driver anew each time it loads it, every load of the driver
/// package after the first maps a fresh copy of the image (its data sections initialised again);
/// the copies stay mapped as long as the `Driver` lives.
pub struct Driver {
    first: Arc<Instance>,
    service: String,
    bytes: Arc<Vec<u8>>,
    /// The mappings of the loads after the first, kept until the `Driver` goes.
    later: Arc<Mutex<Vec<Instance>>>,
}

impl core::fmt::Debug for Driver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Driver")
            .field("service", &self.service)
            .field("image", &self.first.image)
            .finish_non_exhaustive()
    }
}

/// What [`Driver::call_entry`] observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryReport {
    /// How the entry point ended.
    pub outcome: Outcome,
}

impl Driver {
    /// Loads the image at `path` as the service `service` (its registry path is
    /// `\REGISTRY\MACHINE\SYSTEM\CurrentControlSet\Services\<service>`).
    pub fn load(path: &Path, service: &str) -> Result<Driver, LoadError> {
        let bytes =
            std::fs::read(path).map_err(|e| LoadError::Io(format!("{}: {e}", path.display())))?;
        Self::load_bytes(&bytes, service)
    }

    /// Loads an image from memory (see [`Driver::load`]).
    pub fn load_bytes(bytes: &[u8], service: &str) -> Result<Driver, LoadError> {
        let first = Instance::map(bytes, service)?;
        Ok(Driver {
            first: Arc::new(first),
            service: service.to_owned(),
            bytes: Arc::new(bytes.to_vec()),
            later: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The mapped image.
    pub fn image(&self) -> &Image {
        &self.first.image
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The imports, as bound to host routines.
    pub fn imports(&self) -> &[Import] {
        self.first.image.imports()
    }

    /// Installs the image on `machine` as the kmdf-sim driver package of its service: kmdf-sim
    /// loads it on demand (the first device node naming the service, or
    /// `kmdf_sim::driver::Driver::load_installed`) by calling the entry point, and the driver's
    /// `WdfDriverCreate` joins that load (see [`crate::wdf::driver`]). The `Driver` must stay
    /// alive (mapped) while the machine can call into it.
    pub fn install(&self, machine: &Machine) {
        let first = Arc::clone(&self.first);
        let first_used = AtomicBool::new(false);
        let bytes = Arc::clone(&self.bytes);
        let later = Arc::clone(&self.later);
        let service = self.service.clone();
        crate::wdf::driver::install_with(
            machine,
            &self.service,
            Arc::new(move || {
                if !first_used.swap(true, Ordering::AcqRel) {
                    return Ok(first.entry_args());
                }
                let instance = Instance::map(&bytes, &service).map_err(|e| {
                    if let Some(machine) = Machine::current() {
                        machine.trace().record(
                            kmdf_sim::trace::TraceKind::Note,
                            "kmdf-host",
                            &format!("the image cannot be mapped again: {e}"),
                        );
                    }
                    kmdf_sim::Status::INSUFFICIENT_RESOURCES
                })?;
                let args = instance.entry_args();
                later
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(instance);
                Ok(args)
            }),
        );
    }

    /// Installs the image (see [`install`](Self::install)) and loads it: kmdf-sim calls the entry
    /// point (`FxDriverEntry` for a KMDF image: `WdfVersionBind`, then the driver's
    /// `DriverEntry`) with the `DRIVER_OBJECT` and registry path, on a thread bound to `machine`
    /// at `PASSIVE_LEVEL`, on behalf of the service (kmdf-sim's driver attribution); this waits
    /// for it to return or for the host to [`stop`] it.
    ///
    /// Gives the driver back when the entry point returned. A stopped run parks the driver's
    /// thread inside the image, so the driver is then leaked: its image must stay mapped.
    ///
    /// # Panics
    /// When the thread cannot be spawned.
    pub fn call_entry(self, machine: &Machine) -> (EntryReport, Option<Driver>) {
        let (sender, receiver) = mpsc::channel();
        let run = Arc::new(RunContext {
            sender: Mutex::new(sender.clone()),
        });
        self.install(machine);
        let service = self.service.clone();
        let machine_for_thread = machine.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{service} DriverEntry"))
            .stack_size(1 << 20)
            .spawn(move || {
                let _bound = machine_for_thread.enter();
                RUN.with(|r| *r.borrow_mut() = Some(run));
                let status =
                    match kmdf_sim::driver::Driver::load_installed(&machine_for_thread, &service) {
                        Ok(_) => 0,
                        Err(status) => status.0,
                    };
                let _ = sender.send(Outcome::Returned(status));
            })
            .expect("kmdf-host: cannot spawn the DriverEntry thread");
        let outcome = receiver.recv().unwrap_or_else(|_| {
            Outcome::Stopped(Stop {
                message: "kmdf-host: the DriverEntry thread ended without a result".to_owned(),
                wdf_function: None,
            })
        });
        let driver = match outcome {
            Outcome::Returned(_) => {
                let _ = thread.join();
                Some(self)
            }
            Outcome::Stopped(_) => {
                // The driver's thread is parked inside the image: keep everything mapped.
                core::mem::forget(self);
                None
            }
        };
        (EntryReport { outcome }, driver)
    }
}
