//! WDFLDR.SYS: `WdfVersionBind` / `WdfVersionUnbind`, the binding contract of Microsoft's public
//! `fxldr.h`, and the KMDF 1.33 function table the driver calls through.
//!
//! A KMDF image's startup code (`FxDriverEntry`, from `WdfDriverEntry.lib` or our
//! `tools/kmdf-startup/fxstub.c`) fills a `WDF_BIND_INFO` (v2: `Size` is `sizeof(WDF_BIND_INFO2)`)
//! with the version it was built for and `FuncTable = &WdfFunctions_01033`, and calls
//! `WdfVersionBind`. The loader checks the version, stores the address of its function table in
//! `*FuncTable` (the driver then calls `WdfFunctions_01033[index]`), sets the v2 globals
//! (`WdfClientVersionHigherThanFramework`, `WdfFunctionCount`) and hands back the driver's
//! `WDF_DRIVER_GLOBALS`, the first argument of every WDF function.
//!
//! The table holds, in each slot the host implements, the function of [`crate::wdf`] (its type
//! pinned to the header's); every other slot is a thunk that knows its index and WDF name (the
//! table in `wdf_names.rs`, generated from `wdffuncenum.h`) and, when called,
//! [stops](crate::host::stop) the run with "the driver called WdfXxx (slot N), which the host
//! does not implement yet".

use core::ffi::c_void;
use core::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use kmdf_sim::trace::TraceKind;
use kmdf_sim::Machine;

use crate::host::{guard, stop, Stop, UnicodeString};
use crate::nt::{STATUS_INVALID_PARAMETER, STATUS_SUCCESS};

/// `STATUS_REVISION_MISMATCH`: the driver wants a framework this host is not.
pub const STATUS_REVISION_MISMATCH: i32 = 0xC000_0059_u32 as i32;
/// The framework version the host is: KMDF 1.33.
pub const FRAMEWORK_MAJOR: u32 = 1;
/// See [`FRAMEWORK_MAJOR`].
pub const FRAMEWORK_MINOR: u32 = 33;
/// Entries of the KMDF 1.33 function table (`WdfFunctionTableNumEntries`).
pub const FUNCTION_COUNT: usize = 458;

/// The signature every thunk has: each WDF function takes `PWDF_DRIVER_GLOBALS` first.
pub type WdfThunk = extern "win64" fn(*mut c_void);

macro_rules! wdf_functions {
    ($($index:literal $name:ident,)*) => {
        /// The WDF function of each slot of the KMDF 1.33 table, by index.
        pub const FUNCTION_NAMES: [&str; super::FUNCTION_COUNT] = [$(stringify!($name)),*];

        /// One thunk per slot (named after its WDF function).
        #[allow(non_snake_case, reason = "each thunk is named after its WDF function")]
        mod thunks {
            $(
                pub(super) extern "win64" fn $name(globals: *mut core::ffi::c_void) {
                    super::super::unimplemented($index, globals)
                }
            )*
        }

        /// The table of stopping thunks, one per slot.
        pub(super) static FUNCTION_TABLE: [super::WdfThunk; super::FUNCTION_COUNT] =
            [$(thunks::$name),*];
    };
}

#[path = "wdf_names.rs"]
mod names;
pub use names::FUNCTION_NAMES;
use names::FUNCTION_TABLE;

/// The slot of the WDF function `name`, if KMDF 1.33 has it.
pub fn slot_of(name: &str) -> Option<u32> {
    FUNCTION_NAMES
        .iter()
        .position(|n| *n == name)
        .and_then(|i| u32::try_from(i).ok())
}

/// The message of a call to a slot the host does not implement.
pub fn unimplemented_message(index: u32) -> String {
    let name = FUNCTION_NAMES.get(index as usize).copied().unwrap_or("?");
    format!(
        "kmdf-host: the driver called {name} (slot {index}), which the host does not implement yet"
    )
}

fn unimplemented(index: u32, globals: *mut c_void) {
    let name = FUNCTION_NAMES[index as usize];
    let mut message = unimplemented_message(index);
    if !is_bound(globals) {
        let _ = write!(
            message,
            " (with DriverGlobals {globals:p}, which WdfVersionBind did not hand out)"
        );
    }
    stop(Stop {
        message,
        wdf_function: Some((index, name)),
    });
}

/// `WDF_VERSION`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WdfVersion {
    /// `Major`.
    pub major: u32,
    /// `Minor`.
    pub minor: u32,
    /// `Build`.
    pub build: u32,
}

/// `WDF_BIND_INFO`.
#[repr(C)]
#[derive(Debug)]
pub struct WdfBindInfo {
    /// `sizeof` the structure the driver passes (v2: `sizeof(WDF_BIND_INFO2)`).
    pub size: u32,
    /// `L"KmdfLibrary"`.
    pub component: *const u16,
    /// The version the driver was built for.
    pub version: WdfVersion,
    /// Entries of the driver's function table.
    pub func_count: u32,
    /// The address of the driver's `WdfFunctions_01033` pointer.
    pub func_table: *mut *const WdfThunk,
    /// Diagnostic only.
    pub module: *mut c_void,
}

/// `WDF_BIND_INFO2`.
#[repr(C)]
#[derive(Debug)]
pub struct WdfBindInfo2 {
    /// The v1 part.
    pub v1: WdfBindInfo,
    /// `&WdfMinimumVersionRequired`.
    pub minimum_version_required: *mut u32,
    /// `&WdfClientVersionHigherThanFramework`.
    pub client_version_higher_than_framework: *mut u8,
    /// `&WdfFunctionCount`.
    pub func_count_ptr: *mut u32,
    /// `&WdfStructureCount`.
    pub struct_count_ptr: *mut u32,
    /// `&WdfStructures`.
    pub struct_table: *mut c_void,
}

/// `WDF_DRIVER_GLOBALS` (56 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct WdfDriverGlobals {
    /// `Driver` (the WDFDRIVER, set by `WdfDriverCreate`).
    pub driver: *mut c_void,
    /// `DriverFlags`.
    pub driver_flags: u32,
    /// `DriverTag`.
    pub driver_tag: u32,
    /// `DriverName`.
    pub driver_name: [u8; 32],
    /// `DisplaceDriverUnload`.
    pub displace_driver_unload: u8,
}

// Layouts of fxldr.h and wdfglobals.h on x64.
const _: () = {
    assert!(size_of::<WdfBindInfo>() == 48);
    assert!(core::mem::offset_of!(WdfBindInfo, func_count) == 28);
    assert!(core::mem::offset_of!(WdfBindInfo, func_table) == 32);
    assert!(size_of::<WdfBindInfo2>() == 88);
    assert!(size_of::<WdfDriverGlobals>() == 56);
};

/// One driver bound by `WdfVersionBind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Address of the driver's `WDF_DRIVER_GLOBALS`.
    pub globals: usize,
    /// The service's registry path.
    pub registry_path: String,
    /// The version the driver asked for.
    pub major: u32,
    /// See `major`.
    pub minor: u32,
    /// Entries of its function table.
    pub func_count: u32,
    /// Whether `WdfVersionUnbind` was called.
    pub unbound: bool,
}

/// Every binding of the process (globals stay allocated for the life of the process: a driver
/// may keep the pointer until it is unloaded).
static BINDINGS: Mutex<Vec<Binding>> = Mutex::new(Vec::new());

fn bindings() -> std::sync::MutexGuard<'static, Vec<Binding>> {
    BINDINGS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The bindings made so far (for reports and tests).
pub fn all_bindings() -> Vec<Binding> {
    bindings().clone()
}

/// The function table handed to drivers: the implemented functions over the stopping thunks.
fn function_table() -> &'static [usize] {
    static TABLE: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table: Vec<usize> = FUNCTION_TABLE.iter().map(|f| *f as usize).collect();
        for (name, address) in crate::wdf::implemented() {
            if let Some(slot) = slot_of(name) {
                table[slot as usize] = address;
            }
        }
        table
    })
}

/// Whether the slot of `name` holds a host implementation.
pub fn is_implemented(name: &str) -> bool {
    slot_of(name).is_some_and(|slot| {
        function_table()[slot as usize] != FUNCTION_TABLE[slot as usize] as usize
    })
}

/// Whether `globals` is a `WDF_DRIVER_GLOBALS` handed out by `WdfVersionBind` and not unbound.
pub(crate) fn is_bound(globals: *mut c_void) -> bool {
    bindings()
        .iter()
        .any(|b| b.globals == globals as usize && !b.unbound)
}

fn wide_text(p: *const u16) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let mut units = Vec::new();
    // SAFETY: `Component` is a NUL-terminated wide string (fxldr.h: `WDF_COMPONENT_NAME`);
    // reading stops at the terminator or after 64 units.
    unsafe {
        let mut at = p;
        while units.len() < 64 && at.read_unaligned() != 0 {
            units.push(at.read_unaligned());
            at = at.add(1);
        }
    }
    Some(String::from_utf16_lossy(&units))
}

fn note(text: &str) {
    if let Some(machine) = Machine::current() {
        machine.trace().record(TraceKind::Note, "WDFLDR", text);
    }
}

extern "win64" fn wdf_version_bind(
    _driver_object: *mut c_void,
    registry_path: *mut UnicodeString,
    bind_info: *mut WdfBindInfo,
    globals_out: *mut *mut c_void,
) -> i32 {
    guard("WdfVersionBind", || {
        if bind_info.is_null() || globals_out.is_null() {
            return STATUS_INVALID_PARAMETER;
        }
        // SAFETY: the routine's contract: a WDF_BIND_INFO (or the v1 part of a v2) the driver
        // owns for the call.
        let info = unsafe { &*bind_info };
        if (info.size as usize) < size_of::<WdfBindInfo>() || info.func_table.is_null() {
            return STATUS_INVALID_PARAMETER;
        }
        let component = wide_text(info.component).unwrap_or_default();
        if !component.eq_ignore_ascii_case("KmdfLibrary") {
            note(&format!("WdfVersionBind: component '{component}' refused"));
            return STATUS_INVALID_PARAMETER;
        }
        let WdfVersion { major, minor, .. } = info.version;
        if major != FRAMEWORK_MAJOR || minor > FRAMEWORK_MINOR {
            note(&format!(
                "WdfVersionBind: KMDF {major}.{minor} refused (the host is KMDF {FRAMEWORK_MAJOR}.{FRAMEWORK_MINOR})"
            ));
            return STATUS_REVISION_MISMATCH;
        }
        if info.func_count == 0 || info.func_count as usize > FUNCTION_COUNT {
            return STATUS_INVALID_PARAMETER;
        }
        if info.size as usize >= size_of::<WdfBindInfo2>() {
            // SAFETY: `Size` says the structure is a WDF_BIND_INFO2.
            let v2 = unsafe { &*bind_info.cast::<WdfBindInfo2>() };
            if !v2.minimum_version_required.is_null() {
                // SAFETY: fxldr.h: a pointer to the driver's WdfMinimumVersionRequired.
                let minimum = unsafe { v2.minimum_version_required.read_unaligned() };
                if minimum > FRAMEWORK_MINOR {
                    return STATUS_REVISION_MISMATCH;
                }
            }
            // SAFETY: fxldr.h: pointers to the driver's globals, each null or writable.
            unsafe {
                if !v2.client_version_higher_than_framework.is_null() {
                    v2.client_version_higher_than_framework.write_unaligned(0);
                }
                if !v2.func_count_ptr.is_null() {
                    v2.func_count_ptr.write_unaligned(info.func_count);
                }
            }
        }
        // SAFETY: as above.
        let path = unsafe { UnicodeString::read(registry_path) }.unwrap_or_default();
        let service = path.rsplit('\\').next().unwrap_or_default().to_owned();
        let mut name = [0_u8; 32];
        for (slot, b) in name.iter_mut().zip(service.bytes().take(31)) {
            *slot = b;
        }
        let mut tag = [b' '; 4];
        for (slot, b) in tag.iter_mut().zip(service.bytes()) {
            *slot = b;
        }
        let globals = Box::into_raw(Box::new(WdfDriverGlobals {
            driver: core::ptr::null_mut(),
            driver_flags: 0,
            driver_tag: u32::from_le_bytes(tag),
            driver_name: name,
            displace_driver_unload: 0,
        }));
        // SAFETY: `FuncTable` is the address of the driver's `WdfFunctions_01033` pointer
        // (fxstub.c, fxldr.h); `globals_out` is the driver's `WdfDriverGlobals`. Both writable.
        unsafe {
            info.func_table
                .write_unaligned(function_table().as_ptr().cast::<WdfThunk>());
            globals_out.write_unaligned(globals.cast());
        }
        bindings().push(Binding {
            globals: globals as usize,
            registry_path: path,
            major,
            minor,
            func_count: info.func_count,
            unbound: false,
        });
        note(&format!(
            "WdfVersionBind: {service} bound to KMDF {major}.{minor} ({} functions)",
            info.func_count
        ));
        STATUS_SUCCESS
    })
}

extern "win64" fn wdf_version_unbind(
    _registry_path: *mut UnicodeString,
    _bind_info: *mut WdfBindInfo,
    globals: *mut c_void,
) -> i32 {
    guard("WdfVersionUnbind", || {
        let mut all = bindings();
        let Some(binding) = all
            .iter_mut()
            .find(|b| b.globals == globals as usize && !b.unbound)
        else {
            return STATUS_INVALID_PARAMETER;
        };
        binding.unbound = true;
        drop(all);
        note("WdfVersionUnbind");
        STATUS_SUCCESS
    })
}

/// The routines of this module by export name.
pub fn exports() -> Vec<(&'static str, usize)> {
    vec![
        ("WdfVersionBind", wdf_version_bind as *const () as usize),
        ("WdfVersionUnbind", wdf_version_unbind as *const () as usize),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_table_matches_wdffuncenum() {
        assert_eq!(FUNCTION_NAMES.len(), 458);
        assert_eq!(FUNCTION_NAMES[0], "WdfChildListCreate");
        assert_eq!(slot_of("WdfDriverCreate"), Some(116));
        assert_eq!(FUNCTION_NAMES[457], "WdfDeviceSetDeviceInterfaceStateEx");
        assert_eq!(
            unimplemented_message(116),
            "kmdf-host: the driver called WdfDriverCreate (slot 116), which the host does not \
             implement yet"
        );
    }

    #[test]
    fn bind_fills_the_table_pointer_and_globals_and_checks_the_version() {
        let component: Vec<u16> = "KmdfLibrary\0".encode_utf16().collect();
        let mut table: *const WdfThunk = core::ptr::null();
        let mut count = 0_u32;
        let mut higher = 7_u8;
        let mut minimum = 31_u32;
        let mut info = WdfBindInfo2 {
            v1: WdfBindInfo {
                size: 88,
                component: component.as_ptr(),
                version: WdfVersion {
                    major: 1,
                    minor: 33,
                    build: 0,
                },
                func_count: 458,
                func_table: &raw mut table,
                module: core::ptr::null_mut(),
            },
            minimum_version_required: &raw mut minimum,
            client_version_higher_than_framework: &raw mut higher,
            func_count_ptr: &raw mut count,
            struct_count_ptr: core::ptr::null_mut(),
            struct_table: core::ptr::null_mut(),
        };
        let mut path: Vec<u16> = "\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\unit"
            .encode_utf16()
            .collect();
        let mut registry = UnicodeString {
            length: (path.len() * 2) as u16,
            maximum_length: (path.len() * 2) as u16,
            buffer: path.as_mut_ptr(),
        };
        let mut globals: *mut c_void = core::ptr::null_mut();
        let status = wdf_version_bind(
            core::ptr::null_mut(),
            &raw mut registry,
            (&raw mut info).cast(),
            &raw mut globals,
        );
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!(table, function_table().as_ptr().cast::<WdfThunk>());
        assert!(is_implemented("WdfDriverCreate"));
        assert!(!is_implemented("WdfChildListCreate"));
        assert_eq!((count, higher), (458, 0));
        // SAFETY: bind handed out a live WDF_DRIVER_GLOBALS.
        let g = unsafe { &*globals.cast::<WdfDriverGlobals>() };
        assert_eq!(&g.driver_name[..5], b"unit\0");
        assert!(is_bound(globals));
        assert_eq!(
            wdf_version_unbind(&raw mut registry, (&raw mut info).cast(), globals),
            STATUS_SUCCESS
        );
        assert!(!is_bound(globals));
        // A newer framework than the host is refused.
        info.v1.version.minor = 35;
        let status = wdf_version_bind(
            core::ptr::null_mut(),
            &raw mut registry,
            (&raw mut info).cast(),
            &raw mut globals,
        );
        assert_eq!(status, STATUS_REVISION_MISMATCH);
    }
}
