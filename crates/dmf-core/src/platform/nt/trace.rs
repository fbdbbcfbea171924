//! Debug output and bug checks: [`NtTrace`] (`DbgPrintEx`) and [`bug_check`] (`KeBugCheckEx`).
//!
//! A message is formatted into a fixed buffer on the stack (no allocation, so it works at any
//! IRQL and when the pool is exhausted), NUL-terminated, and passed to `DbgPrintEx` as the
//! argument of a constant `"%s"` format — never as the format itself, so a `%` in a message is
//! printed, not interpreted. Longer messages are cut at [`TRACE_BUFFER_SIZE`] bytes minus the
//! terminator; NUL bytes inside a message are printed as `?`.

use core::fmt::{self, Write};

use super::ffi;
use crate::platform::contract::{PlatformTrace, TraceLevel};

/// Bytes of one formatted trace line, including the NUL terminator.
pub const TRACE_BUFFER_SIZE: usize = 256;

/// The `DPFLTR_*_LEVEL` a contract level is printed at (`DbgPrintEx`'s `Level`): Error →
/// `DPFLTR_ERROR_LEVEL` (0, shown by default), Warning → `DPFLTR_WARNING_LEVEL` (1),
/// Information → `DPFLTR_TRACE_LEVEL` (2), Verbose → `DPFLTR_INFO_LEVEL` (3).
pub const fn dpfltr_level(level: TraceLevel) -> u32 {
    match level {
        TraceLevel::Error => 0,
        TraceLevel::Warning => 1,
        TraceLevel::Information => 2,
        TraceLevel::Verbose => 3,
    }
}

/// Driver tracing through `DbgPrintEx(DPFLTR_IHVDRIVER_ID, level, "%s", line)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NtTrace;

impl NtTrace {
    /// Prints `"{source}: {message}\n"` at `level`. Maps to `DbgPrintEx`. Any IRQL.
    pub fn trace(level: TraceLevel, source: &str, message: fmt::Arguments<'_>) {
        let mut line = LineBuffer::new();
        // A full buffer truncates; `LineBuffer::write_str` never fails.
        let _ = writeln!(line, "{source}: {message}");
        let text = line.as_c_str();
        // SAFETY: `c"%s"` is a constant NUL-terminated format with one `%s`, matched by `text`, a
        // NUL-terminated buffer that lives across the call.
        unsafe {
            ffi::DbgPrintEx(
                ffi::DPFLTR_IHVDRIVER_ID,
                dpfltr_level(level),
                c"%s".as_ptr().cast::<u8>(),
                text.as_ptr(),
            );
        }
    }
}

impl PlatformTrace for NtTrace {
    /// [`NtTrace::trace`].
    fn trace(level: TraceLevel, source: &str, message: fmt::Arguments<'_>) {
        NtTrace::trace(level, source, message);
    }
}

/// A fixed, always NUL-terminated line buffer.
struct LineBuffer {
    // INVARIANT: `bytes[len] == 0` and `len < TRACE_BUFFER_SIZE`; no NUL in `bytes[..len]`.
    bytes: [u8; TRACE_BUFFER_SIZE],
    len: usize,
}

impl LineBuffer {
    fn new() -> Self {
        Self {
            bytes: [0; TRACE_BUFFER_SIZE],
            len: 0,
        }
    }

    /// The text with its terminator.
    fn as_c_str(&self) -> &[u8] {
        &self.bytes[..=self.len]
    }
}

impl Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            if self.len + 1 >= TRACE_BUFFER_SIZE {
                break;
            }
            self.bytes[self.len] = if byte == 0 { b'?' } else { byte };
            self.len += 1;
        }
        self.bytes[self.len] = 0;
        Ok(())
    }
}

/// Stops the system with a bug check. Maps to `KeBugCheckEx(code, p1, p2, p3, p4)`. Any IRQL.
///
/// The last resort of a kernel image's `#[panic_handler]`: kernel code cannot unwind, and
/// continuing after a broken invariant risks corrupting the machine.
pub fn bug_check(code: u32, parameters: [usize; 4]) -> ! {
    let [p1, p2, p3, p4] = parameters;
    // SAFETY: KeBugCheckEx takes plain integers and does not return; stopping the system is its
    // documented purpose and is memory-safe.
    unsafe { ffi::KeBugCheckEx(code, p1, p2, p3, p4) }
}
