//! WDFDPC.
//!
//! Semantics of WdfDpcCreate / WdfDpcEnqueue / EVT_WDF_DPC (kmdf-sequences §8.3;
//! learn.microsoft.com `wdfdpc/nc-wdfdpc-evt_wdf_dpc`): [`Dpc::enqueue`] adds the DPC to the
//! machine's DPC queue and returns true, or returns false if it is already queued — one
//! `EvtDpcFunc` run must then handle everything accumulated since the last one. `EvtDpcFunc` runs
//! on the machine's DPC thread at DISPATCH_LEVEL, in FIFO order with timer expiries.

use std::sync::{Arc, Mutex};

use crate::exec::context;
use crate::exec::sched::{Deferred, SchedState};
use crate::exec::{delete_callback_object, lock, report_deleted, CallbackState};
use crate::machine::{Core, Machine};
use crate::verifier::{invoke_callback, NO_DRIVER};

type DpcCallback = Box<dyn Fn(&Dpc) + Send + Sync>;

struct DpcInner {
    core: Arc<Core>,
    name: String,
    driver: String,
    callback: DpcCallback,
    cb: Mutex<CallbackState>,
}

impl Deferred for DpcInner {
    fn begin(&self, _st: &mut SchedState) -> bool {
        CallbackState::begin(&self.cb)
    }

    fn run(self: Arc<Self>) {
        let handle = Dpc {
            inner: self,
            owner: false,
        };
        let inner = &handle.inner;
        invoke_callback(&inner.driver, &inner.name, "EvtDpcFunc", || {
            (inner.callback)(&handle);
        });
    }

    fn end(&self, _st: &mut SchedState) {
        CallbackState::end(&self.cb);
    }
}

/// A framework DPC object. The value returned by [`Dpc::new`] owns it (drop = delete); the
/// callback receives a borrowed handle.
pub struct Dpc {
    inner: Arc<DpcInner>,
    owner: bool,
}

impl core::fmt::Debug for Dpc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Dpc")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
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
            inner: Arc::new(DpcInner {
                core: Arc::clone(machine.core()),
                name: name.to_owned(),
                driver: context::current_driver().unwrap_or_else(|| NO_DRIVER.to_owned()),
                callback: Box::new(callback),
                cb: Mutex::new(CallbackState::default()),
            }),
            owner: true,
        }
    }

    /// The DPC's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `WdfDpcEnqueue` (≤ DISPATCH_LEVEL): true if queued now, false if it was already queued.
    pub fn enqueue(&self) -> bool {
        let inner = &self.inner;
        let core = &inner.core;
        let mut st = core.sched.lock();
        let mut cb = lock(&inner.cb);
        if cb.deleted {
            drop(cb);
            drop(st);
            report_deleted(core, &inner.name, "WdfDpcEnqueue");
            return false;
        }
        if cb.queued || st.shutdown {
            return false;
        }
        cb.queued = true;
        drop(cb);
        st.dpc_queue
            .push_back(Arc::clone(inner) as Arc<dyn Deferred>);
        core.sched.queued(&mut st);
        true
    }

    /// `WdfObjectDelete` on the DPC: a queued run is skipped; waits for a running callback
    /// (unless called from it or above PASSIVE_LEVEL). Dropping the owner does the same.
    pub fn delete(&self) {
        delete_callback_object(&self.inner.core, &self.inner.cb, &mut |_| {});
    }
}

impl Drop for Dpc {
    fn drop(&mut self) {
        if self.owner {
            self.delete();
        }
    }
}
