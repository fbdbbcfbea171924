//! Registry keys: `WdfDriverOpenParametersRegistryKey`, `WdfDeviceOpenRegistryKey` and `WdfRegistry…`.

use super::wdf_exports;

wdf_exports! {}
