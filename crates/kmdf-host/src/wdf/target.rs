//! I/O targets: `WdfIoTarget…` and the `WdfIoTargetFormatRequestFor…` functions.

use super::wdf_exports;

wdf_exports! {}
