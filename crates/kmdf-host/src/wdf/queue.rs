//! Queues: `WdfIoQueue…` and the `EvtIo…` callbacks.

use super::wdf_exports;

wdf_exports! {}
