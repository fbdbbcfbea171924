//! Collections: `WdfCollection…`.

use super::wdf_exports;

wdf_exports! {}
