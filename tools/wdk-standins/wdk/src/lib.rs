//! Stand-in for `wdk` 0.5.0, for the kmdf check on Linux only: `nt_success`, `dbg_break` and
//! `println!`/`print!` through `DbgPrint`, the parts of the real crate a DMF driver can reach.
#![no_std]

pub use wdk_sys::NT_SUCCESS as nt_success;

/// Breaks into the kernel debugger (`int 3`).
#[inline]
pub fn dbg_break() {
    // SAFETY: `int 3` raises a breakpoint exception, which the kernel debugger handles (or the
    // system bug-checks with no debugger attached, as in the real crate).
    unsafe { core::arch::asm!("int 3") };
}

#[doc(hidden)]
pub mod __print {
    use core::fmt::{self, Write};

    /// A stack buffer flushed to `DbgPrint("%s", …)` whenever it fills.
    struct DbgPrintBuffer {
        bytes: [u8; 512],
        used: usize,
    }

    impl DbgPrintBuffer {
        fn flush(&mut self) {
            if self.used == 0 {
                return;
            }
            self.bytes[self.used] = 0;
            // SAFETY: "%s" with a NUL-terminated buffer that lives across the call.
            unsafe {
                wdk_sys::ntddk::DbgPrint(c"%s".as_ptr(), self.bytes.as_ptr());
            }
            self.used = 0;
        }
    }

    impl Write for DbgPrintBuffer {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            for &byte in text.as_bytes() {
                if self.used == self.bytes.len() - 1 {
                    self.flush();
                }
                self.bytes[self.used] = byte;
                self.used += 1;
            }
            Ok(())
        }
    }

    pub fn print(args: fmt::Arguments<'_>) {
        let mut buffer = DbgPrintBuffer {
            bytes: [0; 512],
            used: 0,
        };
        let _ = buffer.write_fmt(args);
        buffer.flush();
    }
}

/// Prints to the kernel debugger with `DbgPrint`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::__print::print(format_args!($($arg)*)) };
}

/// Prints a line to the kernel debugger with `DbgPrint`.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::__print::print(format_args!("{}\n", format_args!($($arg)*))) };
}
