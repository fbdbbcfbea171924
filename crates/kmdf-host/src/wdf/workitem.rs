//! Work items: `WdfWorkItem…`.

use super::wdf_exports;

wdf_exports! {}
