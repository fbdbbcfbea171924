//! What the prebuilt `x86_64-pc-windows-msvc` core and alloc expect from the image besides
//! dmf-core's NT layer: the CRT helpers they call by name, and two symbols MSVC code refers to.
//!
//! - `memcpy`, `memmove`, `memset`, `memcmp`, `strlen` and `__chkstk` are exported by
//!   ntoskrnl.exe (a WDK build gets them from ntoskrnl.lib); the prebuilt compiler-builtins only
//!   has them under mangled names, so they are imported here. Unused ones drop out of the import
//!   table at link time.
//! - `_fltused`: MSVC objects that touch floating point reference it; the value is irrelevant.
//! - `__CxxFrameHandler3`: the prebuilt core/alloc were compiled with `panic=unwind`, so their
//!   unwind tables name this personality routine. This image is `panic=abort` and never unwinds,
//!   so the stub is never called; if it ever were, returning `ExceptionContinueSearch` (1) passes
//!   the exception on unchanged.
//!
//! Both symbols are defined in `global_asm!` so they are not exported from the image (a
//! `#[no_mangle] pub` item in a cdylib would be).

use core::ffi::c_void;

#[allow(dead_code, clashing_extern_declarations)]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    fn __chkstk();
    fn memcpy(dest: *mut c_void, src: *const c_void, count: usize) -> *mut c_void;
    fn memmove(dest: *mut c_void, src: *const c_void, count: usize) -> *mut c_void;
    fn memset(dest: *mut c_void, value: i32, count: usize) -> *mut c_void;
    fn memcmp(left: *const c_void, right: *const c_void, count: usize) -> i32;
    fn strlen(text: *const u8) -> usize;
}

core::arch::global_asm!(
    // __CxxFrameHandler3: EXCEPTION_DISPOSITION ExceptionContinueSearch.
    ".section .text$dmfstub,\"xr\"",
    ".globl __CxxFrameHandler3",
    ".p2align 4",
    "__CxxFrameHandler3:",
    "    mov eax, 1",
    "    ret",
    // _fltused: a 32-bit zero in read-only data.
    ".section .rdata$dmfstub,\"dr\"",
    ".globl _fltused",
    ".p2align 2",
    "_fltused:",
    "    .long 0",
);
