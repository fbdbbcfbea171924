//! [`trace!`](crate::trace): driver and Module trace lines through the platform trace.

/// Writes one trace line from `source` (a driver or Module name) through the platform trace:
/// `DbgPrintEx(DPFLTR_IHVDRIVER_ID, level, "%s", "<source>: <message>\n")` on the kernel (the
/// line is formatted into a stack buffer, so it allocates nothing and works at any IRQL), a note
/// of the machine's trace on kmdf-sim (object `source`, text `[<LEVEL>] <message>`).
///
/// The level is `Information` unless the first argument names another (`Error`, `Warning`,
/// `Information`, `Verbose`: the `TRACE_LEVEL_*` names of WPP, without the prefix). The rest is
/// `format_args!` syntax.
///
/// ```
/// const SOURCE: &str = "SwitchBar";
/// let switches = 0b101_u8;
/// dmf_core::trace!(SOURCE, "switches {switches:08b}");
/// dmf_core::trace!(Warning, SOURCE, "mirroring failed: {}", dmf_core::NtStatus::CANCELLED);
/// ```
///
/// The framework's own lines (each Module's creation, open, close and destruction) use the same
/// path with the source `DMF` (`dmf_core::module::lifecycle`); docs/trace.md describes the format
/// and the test helpers that read it back.
#[macro_export]
macro_rules! trace {
    (Error, $source:expr, $($arg:tt)+) => {
        $crate::__trace_at!(Error, $source, $($arg)+)
    };
    (Warning, $source:expr, $($arg:tt)+) => {
        $crate::__trace_at!(Warning, $source, $($arg)+)
    };
    (Information, $source:expr, $($arg:tt)+) => {
        $crate::__trace_at!(Information, $source, $($arg)+)
    };
    (Verbose, $source:expr, $($arg:tt)+) => {
        $crate::__trace_at!(Verbose, $source, $($arg)+)
    };
    ($source:expr, $($arg:tt)+) => {
        $crate::__trace_at!(Information, $source, $($arg)+)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __trace_at {
    ($level:ident, $source:expr, $($arg:tt)+) => {
        <$crate::platform::Trace as $crate::platform::contract::PlatformTrace>::trace(
            $crate::platform::contract::TraceLevel::$level,
            $source,
            ::core::format_args!($($arg)+),
        )
    };
}
