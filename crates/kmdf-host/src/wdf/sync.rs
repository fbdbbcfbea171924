//! Locks: `WdfSpinLock…` and `WdfWaitLock…`, on kmdf-sim's [`SpinLock`] and [`WaitLock`].

use super::wdf_exports;

wdf_exports! {}
