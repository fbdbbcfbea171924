//! Requests: the `WdfRequest…` functions for requests the framework delivers and requests the driver creates and sends.

use super::wdf_exports;

wdf_exports! {}
