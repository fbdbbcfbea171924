//! File objects: `WdfDeviceInitSetFileObjectConfig`'s callbacks and the `WdfFileObject…` functions.

use super::wdf_exports;

wdf_exports! {}
