//! Memory objects: `WdfMemory…`.

use super::wdf_exports;

wdf_exports! {}
