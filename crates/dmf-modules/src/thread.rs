//! # Thread
//!
//! ## Summary
//!
//! A system thread owned by a Module (C DMF: `Dmf_Thread.c`). Two ways to run it:
//!
//! - **DMF-controlled** ([`ThreadControl::Dmf`]): the Module runs the loop. The thread calls the
//!   optional `pre` callback once, then sleeps until [`Thread::work_ready`] is called and runs
//!   `work` once per wake-up (several `work_ready` calls before the thread wakes coalesce into one
//!   run, as with C DMF's WorkReady event), until [`Thread::stop`]; then it calls the optional
//!   `post` callback and ends.
//! - **Client-controlled** ([`ThreadControl::Client`]): the client's `function` *is* the thread;
//!   it loops by itself and polls [`Thread::is_stop_pending`] to know when to return.
//!
//! Every callback runs at `PASSIVE_LEVEL` on a platform system thread (`PsCreateSystemThread`; a
//! kmdf-sim system thread on the simulator) and receives the Module's handle.
//!
//! ## Configuration
//!
//! [`ThreadConfig`]: `control` — [`ThreadControl::Dmf`] `{ pre, work, post }` or
//! [`ThreadControl::Client`] `{ function }`; each callback is a [`ThreadCallback`].
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`Thread::start`] | `DMF_Thread_Start` | PASSIVE |
//! | [`Thread::stop`] | `DMF_Thread_Stop` (returns when the thread has ended) | PASSIVE |
//! | [`Thread::work_ready`] | `DMF_Thread_WorkReady` | ≤ DISPATCH |
//! | [`Thread::is_stop_pending`] | `DMF_Thread_IsStopPending` | ≤ DISPATCH |
//!
//! ## Callbacks
//!
//! `EVT_DMF_Thread_Function` → [`ThreadCallback`]: `Fn(&Thread)`, at `PASSIVE_LEVEL` on the thread.
//!
//! ## Remarks
//!
//! - `start` on a running thread, or `start`/`stop` while another `start`/`stop` is under way, is
//!   `STATUS_INVALID_DEVICE_STATE` (C DMF asserts). `stop` on a thread that is not running is a
//!   no-op success.
//! - Close stops the thread (and waits for it): no thread outlives the Module. Once close has
//!   begun `is_stop_pending` is `true`, so a client-controlled loop ends by itself.
//! - Never call `stop` from the thread's own callback: it would wait for itself (as in C DMF).
//! - The thread holds the Module's handle only while it runs, so a stopped Module holds no
//!   reference cycle.
//! - Open option `OPEN_Create`, DISPATCH lock; it implements no WDF callback, so it can be created
//!   dynamically.
//!
//! ## Category
//!
//! Task Execution.
//!
//! # Example
//!
//! ```
//! use core::sync::atomic::{AtomicU32, Ordering};
//! extern crate alloc;
//! use alloc::sync::Arc;
//! use dmf_core::module::NoParent;
//! use dmf_modules::thread::{Thread, ThreadConfig, ThreadControl};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! let runs = Arc::new(AtomicU32::new(0));
//! let counter = Arc::clone(&runs);
//! let thread = Thread::with(ThreadConfig {
//!     control: ThreadControl::Dmf {
//!         pre: None,
//!         work: Arc::new(move |_thread: &Thread| {
//!             counter.fetch_add(1, Ordering::SeqCst);
//!         }),
//!         post: None,
//!     },
//! })
//! .create(&NoParent)?;
//! thread.start()?;
//! thread.work_ready()?;
//! machine.settle();
//! assert_eq!(runs.load(Ordering::SeqCst), 1);
//! thread.stop()?;
//! thread.delete();
//! # Ok::<(), dmf_core::NtStatus>(())
//! ```

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use dmf_core::fallible::try_arc;
use dmf_core::module::{Dispatched, ModuleCallbacks};
use dmf_core::platform::contract::{EventKind, PlatformEvent, PlatformThread};
use dmf_core::platform::{Event, SystemThread};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

/// `EVT_DMF_Thread_Function`: a thread callback; receives the Module's handle.
pub type ThreadCallback = Arc<dyn Fn(&Thread) + Send + Sync>;

/// `ThreadControlType` with its per-type settings.
#[derive(Clone)]
pub enum ThreadControl {
    /// `ThreadControlType_DmfControl`: the Module runs the loop.
    Dmf {
        /// `EvtThreadPre`: once, when the thread starts.
        pre: Option<ThreadCallback>,
        /// `EvtThreadWork`: once per wake-up by [`Thread::work_ready`].
        work: ThreadCallback,
        /// `EvtThreadPost`: once, when the thread stops.
        post: Option<ThreadCallback>,
    },
    /// `ThreadControlType_ClientControl`: the client's function is the thread body.
    Client {
        /// `EvtThreadFunction`: loops until [`Thread::is_stop_pending`] is `true`.
        function: ThreadCallback,
    },
}

impl core::fmt::Debug for ThreadControl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ThreadControl::Dmf { pre, post, .. } => f
                .debug_struct("Dmf")
                .field("pre", &pre.is_some())
                .field("post", &post.is_some())
                .finish_non_exhaustive(),
            ThreadControl::Client { .. } => f.debug_struct("Client").finish_non_exhaustive(),
        }
    }
}

/// `DMF_CONFIG_Thread`.
#[derive(Clone, Debug)]
pub struct ThreadConfig {
    /// How the thread is controlled, with its callbacks.
    pub control: ThreadControl,
}

/// A system thread: DMF-controlled (pre/work/post) or client-controlled. See the
/// [module documentation](self).
#[dmf_module(crate = dmf_core, config = ThreadConfig, context = Context, open = Create, lock = Dispatch)]
pub struct Thread;

/// What the Module and its running thread share; lives from open to close.
struct Signals {
    /// Synchronization event: work ready, or stop requested.
    wake: Event,
    /// `DMF_Thread_IsStopPending`.
    stop_pending: AtomicBool,
}

#[derive(Default)]
struct Context {
    signals: Option<Arc<Signals>>,
    running: Option<SystemThread>,
    /// A `start` or `stop` is under way (spawning and joining happen outside the lock).
    transition: bool,
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for Thread {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let signals = try_arc(Signals {
            wake: Event::new(EventKind::Synchronization, false)?,
            stop_pending: AtomicBool::new(false),
        })?;
        let mut ctx = module.lock();
        ctx.signals = Some(signals);
        ctx.transition = false;
        Ok(())
    }

    fn close(module: &Dispatched<'_, Self>) {
        // INVARIANT: no Method runs any more (the rundown wait is over), so no start/stop is
        // under way and nobody can start the thread again.
        let (running, signals) = {
            let mut ctx = module.lock();
            (ctx.running.take(), ctx.signals.take())
        };
        if let Some(signals) = signals {
            stop_and_join(&signals, running);
        }
    }
}

fn stop_and_join(signals: &Signals, running: Option<SystemThread>) {
    signals.stop_pending.store(true, Ordering::SeqCst);
    signals.wake.set();
    if let Some(thread) = running {
        let _ = thread.wait(None);
    }
}

fn thread_body(handle: &Thread, signals: &Signals, control: &ThreadControl) {
    match control {
        ThreadControl::Client { function } => function(handle),
        ThreadControl::Dmf { pre, work, post } => {
            if let Some(pre) = pre {
                pre(handle);
            }
            loop {
                if signals.stop_pending.load(Ordering::SeqCst) {
                    break;
                }
                let _ = signals.wake.wait(None);
                if signals.stop_pending.load(Ordering::SeqCst) {
                    break;
                }
                work(handle);
            }
            if let Some(post) = post {
                post(handle);
            }
        }
    }
}

impl Thread {
    /// `DMF_Thread_Start` (PASSIVE_LEVEL): creates the system thread.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` when the Module is not open, the thread already runs, or
    /// another `start`/`stop` is under way; the platform's status if the thread cannot be created.
    pub fn start(&self) -> NtResult<()> {
        self.start_thread(false)
    }

    /// `DMF_Thread_Start` followed by `DMF_Thread_WorkReady`, as one step: the wake-up is
    /// signalled *before* the thread exists, so it coalesces with any `work_ready` remembered from
    /// before the start and the new thread runs `work` once for both.
    ///
    /// Calling `start` and then `work_ready` is racy: if the new thread has already consumed a
    /// remembered wake-up (and run `work`) by the time `work_ready` is called, `work` runs a
    /// second time. The ThreadedBufferQueue relies on one run (after `WorkPending` the thread
    /// must not take the next buffer until it is woken again).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start); on an error nothing is signalled.
    pub(crate) fn start_with_work_ready(&self) -> NtResult<()> {
        self.start_thread(true)
    }

    fn start_thread(&self, work_ready: bool) -> NtResult<()> {
        let module = self.enter()?;
        let signals = {
            let mut ctx = module.lock();
            if ctx.transition || ctx.running.is_some() {
                return Err(NtStatus::INVALID_DEVICE_STATE);
            }
            let signals = ctx.signals.clone().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
            ctx.transition = true;
            signals
        };
        signals.stop_pending.store(false, Ordering::SeqCst);
        if work_ready {
            // Before the spawn: the thread cannot have waited yet, so this coalesces with a
            // wake-up remembered from before the start. (If the spawn fails the wake-up stays
            // remembered, as a `work_ready` before `start` would.)
            signals.wake.set();
        }
        let spawned = module.handle().and_then(|handle| {
            let control = module.config().control.clone();
            let shared = Arc::clone(&signals);
            SystemThread::spawn(module.name(), move || {
                thread_body(&handle, &shared, &control);
            })
        });
        let mut ctx = module.lock();
        ctx.transition = false;
        ctx.running = Some(spawned?);
        Ok(())
    }

    /// `DMF_Thread_Stop` (PASSIVE_LEVEL): asks the thread to stop and waits until it has ended
    /// (in DMF-controlled mode after its `post` callback). A thread that is not running is no
    /// error.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` when the Module is not open or another `start`/`stop` is
    /// under way.
    pub fn stop(&self) -> NtResult<()> {
        let module = self.enter()?;
        let (running, signals) = {
            let mut ctx = module.lock();
            if ctx.transition {
                return Err(NtStatus::INVALID_DEVICE_STATE);
            }
            let Some(running) = ctx.running.take() else {
                return Ok(());
            };
            ctx.transition = true;
            (running, ctx.signals.clone())
        };
        if let Some(signals) = signals {
            stop_and_join(&signals, Some(running));
            // A wake-up left over from the stop request must not run `work` after a restart.
            signals.wake.clear();
        }
        module.lock().transition = false;
        Ok(())
    }

    /// `DMF_Thread_WorkReady` (≤ DISPATCH_LEVEL): wakes a DMF-controlled thread to run its `work`
    /// callback once. Calls before the thread wakes coalesce; a call before `start` is remembered.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` when the Module is not open.
    pub fn work_ready(&self) -> NtResult<()> {
        let module = self.enter()?;
        let signals = module.lock().signals.clone();
        if let Some(signals) = signals {
            signals.wake.set();
        }
        Ok(())
    }

    /// `DMF_Thread_IsStopPending` (≤ DISPATCH_LEVEL): `true` once `stop` was called or close has
    /// begun (a client-controlled loop returns when it sees it).
    #[must_use]
    pub fn is_stop_pending(&self) -> bool {
        let Ok(module) = self.enter() else {
            return true;
        };
        let ctx = module.lock();
        ctx.signals
            .as_ref()
            .is_none_or(|s| s.stop_pending.load(Ordering::SeqCst))
    }
}
