//! WDFDPC.
//!
//! Semantics of [`WdfDpcCreate`] / [`WdfDpcEnqueue`] / [`EVT_WDF_DPC`]: [`Dpc::enqueue`] adds the
//! DPC to the machine's DPC queue and returns true, or returns false if it is already queued — one
//! `EvtDpcFunc` run must then handle everything accumulated since the last one. `EvtDpcFunc` runs
//! on the machine's DPC thread at DISPATCH_LEVEL, in FIFO order with timer expiries.
//!
//! [`WdfDpcCreate`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdpc/nf-wdfdpc-wdfdpccreate
//! [`WdfDpcEnqueue`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdpc/nf-wdfdpc-wdfdpcenqueue
//! [`EVT_WDF_DPC`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdpc/nc-wdfdpc-evt_wdf_dpc

use std::sync::Arc;

use crate::exec::callback::{CallbackKind, CallbackObject, ExecutionLevel};
use crate::machine::Machine;

/// A framework DPC object. The value returned by [`Dpc::new`] owns it (drop = delete); the
/// callback receives a borrowed handle.
pub struct Dpc {
    inner: Arc<CallbackObject<Dpc>>,
    owner: bool,
}

impl CallbackKind for Dpc {
    const CALLBACK: &'static str = "EvtDpcFunc";
    type Extra = ();
    fn borrowed(inner: Arc<CallbackObject<Self>>) -> Self {
        Dpc {
            inner,
            owner: false,
        }
    }
}

impl core::fmt::Debug for Dpc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.inner.debug("Dpc", f)
    }
}

impl Dpc {
    /// `WdfDpcCreate` on `machine`, owned by the calling thread's current driver.
    pub fn new(
        machine: &Machine,
        name: &str,
        callback: impl Fn(&Dpc) + Send + Sync + 'static,
    ) -> Dpc {
        Dpc {
            inner: CallbackObject::new(machine, name.to_owned(), None, (), callback),
            owner: true,
        }
    }

    /// The DPC's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `WdfDpcEnqueue` (≤ DISPATCH_LEVEL): true if queued now, false if it was already queued.
    pub fn enqueue(&self) -> bool {
        self.inner
            .enqueue("WdfDpcEnqueue", ExecutionLevel::Dispatch)
    }

    /// `WdfObjectDelete` on the DPC: a queued run is skipped; waits for a running callback
    /// (unless called from it or above PASSIVE_LEVEL). Dropping the owner does the same.
    pub fn delete(&self) {
        self.inner.delete();
    }
}

impl Drop for Dpc {
    fn drop(&mut self) {
        if self.owner {
            self.delete();
        }
    }
}
