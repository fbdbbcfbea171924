//! Strings: `WdfString…`.

use super::wdf_exports;

wdf_exports! {}
