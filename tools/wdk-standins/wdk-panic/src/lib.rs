//! Stand-in for `wdk-panic` 0.5.0, for the kmdf check on Linux only: the kernel panic handler,
//! a debugger break in debug builds, then `KeBugCheckEx('RPNC', file, file length, line,
//! column)` as the real crate does.
#![no_std]

#[cfg(not(test))]
mod handler {
    use core::panic::PanicInfo;

    unsafe extern "system" {
        fn KeBugCheckEx(code: u32, p1: usize, p2: usize, p3: usize, p4: usize) -> !;
    }

    const RUST_PANIC: u32 = u32::from_be_bytes(*b"RPNC");

    #[cold]
    #[panic_handler]
    fn panic(info: &PanicInfo<'_>) -> ! {
        #[cfg(debug_assertions)]
        wdk::dbg_break();
        let (file, length, line, column) = info.location().map_or((0, 0, 0, 0), |location| {
            (
                location.file().as_ptr() as usize,
                location.file().len(),
                location.line() as usize,
                location.column() as usize,
            )
        });
        // SAFETY: KeBugCheckEx takes any four parameters and does not return.
        unsafe { KeBugCheckEx(RUST_PANIC, file, length, line, column) }
    }
}
