//! System threads (PsCreateSystemThread).
//!
//! Semantics of [`PsCreateSystemThread`] / [`PsTerminateSystemThread`]: creation at
//! PASSIVE_LEVEL; the thread starts at PASSIVE_LEVEL bound to the machine, runs its start routine
//! on behalf of the creating driver, and terminates when the routine returns. A driver must make
//! sure every thread it created terminates; waiting on the thread object ([`SystemThread::wait`])
//! is how it knows.
//!
//! A system thread is a *bound* thread: its blocked waits count for `settle` and AutoAdvance.
//! When the machine shuts down, a system thread blocked in a simulator wait is unwound (its
//! destructors run) and joined.
//!
//! [`PsCreateSystemThread`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-pscreatesystemthread
//! [`PsTerminateSystemThread`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-psterminatesystemthread

use core::time::Duration;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::exec::context::{self, new_uid};
use crate::exec::irql::{require_max_irql, Irql};
use crate::exec::sched::WaitStatus;
use crate::exec::sched::{ShutdownUnwind, ThreadRole};
use crate::machine::{checked_wait, Core, Machine};
use crate::status::Status;
use crate::trace::TraceKind;

struct ThreadInner {
    core: Arc<Core>,
    name: String,
    /// Written only under the dispatcher lock.
    terminated: AtomicBool,
}

/// A handle to a system thread (cheap to clone). Dropping handles does not stop the thread.
#[derive(Clone)]
pub struct SystemThread {
    inner: Arc<ThreadInner>,
}

impl core::fmt::Debug for SystemThread {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SystemThread")
            .field("name", &self.inner.name)
            .field("terminated", &self.is_terminated())
            .finish()
    }
}

impl SystemThread {
    /// `PsCreateSystemThread` (PASSIVE_LEVEL): starts `start` on a new thread named `name`,
    /// bound to `machine` at PASSIVE_LEVEL, on behalf of the calling thread's current driver.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if the machine is shutting down;
    /// `STATUS_INSUFFICIENT_RESOURCES` if the OS refuses a thread.
    pub fn spawn(
        machine: &Machine,
        name: &str,
        start: impl FnOnce() + Send + 'static,
    ) -> Result<SystemThread, Status> {
        require_max_irql(Irql::Passive, "PsCreateSystemThread");
        let core = Arc::clone(machine.core());
        let uid = new_uid();
        {
            let mut st = core.sched.lock();
            if st.shutdown {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            st.register(uid, name, ThreadRole::System);
        }
        let inner = Arc::new(ThreadInner {
            core: Arc::clone(&core),
            name: name.to_owned(),
            terminated: AtomicBool::new(false),
        });
        let driver = context::current_driver();
        let thread_inner = Arc::clone(&inner);
        let spawned = std::thread::Builder::new()
            .name(format!("{}-{name}", core.name))
            .spawn(move || run_system_thread(&thread_inner, uid, driver.as_deref(), start));
        if let Ok(handle) = spawned {
            core.adopt_thread(handle);
            Ok(SystemThread { inner })
        } else {
            let mut st = core.sched.lock();
            core.sched.unregister(&mut st, uid);
            Err(Status::INSUFFICIENT_RESOURCES)
        }
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// True once the start routine returned.
    pub fn is_terminated(&self) -> bool {
        self.inner.terminated.load(Ordering::Acquire)
    }

    /// `KeWaitForSingleObject` on the thread object: waits until it terminated.
    pub fn wait(&self, timeout: Option<Duration>) -> WaitStatus {
        let inner = &self.inner;
        checked_wait(
            &inner.core,
            "KeWaitForSingleObject",
            &inner.name,
            timeout,
            &mut |_st| inner.terminated.load(Ordering::Acquire),
        )
    }
}

fn run_system_thread(
    inner: &Arc<ThreadInner>,
    uid: u64,
    driver: Option<&str>,
    start: impl FnOnce(),
) {
    let core = &inner.core;
    context::init_sim_thread(uid, &inner.name);
    core.bind_thread(ThreadRole::System);
    if let Some(d) = driver {
        context::push_driver(d);
    }
    core.trace
        .record(TraceKind::Note, &inner.name, "system thread started");
    let result = std::panic::catch_unwind(AssertUnwindSafe(start));
    match result {
        Ok(()) => core
            .trace
            .record(TraceKind::Note, &inner.name, "system thread terminated"),
        Err(payload) if payload.is::<ShutdownUnwind>() => {}
        Err(payload) => core.crash(&*payload),
    }
    context::set_irql(Irql::Passive);
    if driver.is_some() {
        context::pop_driver();
    }
    core.unbind_thread();
    let mut st = core.sched.lock();
    inner.terminated.store(true, Ordering::Release);
    core.sched.wake_all(&mut st);
    core.sched.unregister(&mut st, uid);
}
