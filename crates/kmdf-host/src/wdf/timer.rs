//! Timers: `WdfTimer…`.

use super::wdf_exports;

wdf_exports! {}
