//! # ThreadedBufferQueue
//!
//! ## Summary
//!
//! A work queue consumed by a dedicated thread (C DMF: `Dmf_ThreadedBufferQueue.c`): a
//! [`BufferQueue`] child holds empty buffers (producer list) and pending work (consumer list), a
//! [`Thread`] child removes each work buffer and passes it to the client's
//! [`work`](ThreadedBufferQueueConfig::work) callback. A client [`fetch`](ThreadedBufferQueue::fetch)es
//! an empty [`WorkBuffer`], fills it and [`enqueue`](ThreadedBufferQueue::enqueue)s it — or
//! [`enqueue_and_wait`](ThreadedBufferQueue::enqueue_and_wait)s it, which blocks until the work
//! was done and returns the callback's `NTSTATUS`. The callback either completes the buffer
//! ([`BufferDisposition::WorkComplete`], the buffer goes back to the producer list) or keeps it
//! ([`BufferDisposition::WorkPending`]) and completes it later with
//! [`work_completed`](ThreadedBufferQueue::work_completed). Useful where many threads produce
//! work that must be done one item at a time (writing to hardware, e.g.).
//!
//! ## Configuration
//!
//! [`ThreadedBufferQueueConfig`] (`DMF_CONFIG_ThreadedBufferQueue`):
//! - `buffer_queue` — the [`BufferQueueConfig`] of the child (`BufferQueueConfig`: buffer count,
//!   size, context size, lookaside, pool tag; its `reuse_cleanup` is not used — `reuse_cleanup`
//!   below is this Module's `EvtThreadedBufferQueueReuseCleanup`);
//! - `pre` / `post` — optional, once when the thread starts / stops
//!   (`EvtThreadedBufferQueuePre` / `…Post`);
//! - `work` — `EvtThreadedBufferQueueWork`, once per work buffer;
//! - `reuse_cleanup` — optional `EvtThreadedBufferQueueReuseCleanup`, sees every buffer just
//!   before this Module puts it back into the producer list.
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`ThreadedBufferQueue::start`] | `DMF_ThreadedBufferQueue_Start` | PASSIVE |
//! | [`ThreadedBufferQueue::stop`] | `DMF_ThreadedBufferQueue_Stop` (+ flush, see Remarks) | PASSIVE |
//! | [`ThreadedBufferQueue::fetch`] | `DMF_ThreadedBufferQueue_Fetch` | ≤ DISPATCH |
//! | [`ThreadedBufferQueue::enqueue`] | `DMF_ThreadedBufferQueue_Enqueue` | ≤ DISPATCH |
//! | [`ThreadedBufferQueue::enqueue_at_head`] | `DMF_ThreadedBufferQueue_EnqueueAtHead` | ≤ DISPATCH |
//! | [`ThreadedBufferQueue::enqueue_and_wait`] | `DMF_ThreadedBufferQueue_EnqueueAndWait` | PASSIVE |
//! | [`ThreadedBufferQueue::enqueue_at_head_and_wait`] | `DMF_ThreadedBufferQueue_EnqueueAtHeadAndWait` | PASSIVE |
//! | [`ThreadedBufferQueue::reuse`] | `DMF_ThreadedBufferQueue_Reuse` | ≤ DISPATCH |
//! | [`ThreadedBufferQueue::work_completed`] | `DMF_ThreadedBufferQueue_WorkCompleted` | ≤ DISPATCH |
//! | [`ThreadedBufferQueue::flush`] | `DMF_ThreadedBufferQueue_Flush` | ≤ DISPATCH |
//! | [`ThreadedBufferQueue::count`] | `DMF_ThreadedBufferQueue_Count` | ≤ DISPATCH |
//!
//! (PASSIVE_LEVEL only for a `passive_level(true)` Module.) Every Method fails with
//! `STATUS_INVALID_DEVICE_STATE` once the Module has begun to close; a Method that takes a buffer
//! and fails hands it back in the [`WorkBufferError`] (dropping a buffer frees it).
//!
//! ## Callbacks
//!
//! - `EVT_DMF_ThreadedBufferQueue_Callback` → [`ThreadedBufferQueueCallback`]:
//!   `Fn(&ThreadedBufferQueue, WorkBuffer) -> BufferDisposition`, at `PASSIVE_LEVEL` on the
//!   Module's thread, one buffer at a time. The buffer is *moved* to the callback: it returns it
//!   with `WorkComplete(buffer, status)` or keeps it and returns `WorkPending`.
//! - `EVT_DMF_Thread_Function` (pre/post) → [`ThreadedBufferQueueThreadCallback`], on the thread.
//! - `EVT_DMF_ThreadedBufferQueue_ReuseCleanup` → [`ReuseCleanupCallback`], ≤ DISPATCH_LEVEL.
//!
//! ## Remarks
//!
//! - **Order.** Work buffers are handed to the callback in consumer-list order (FIFO, except
//!   `enqueue_at_head`), never two at a time.
//! - **WorkPending.** As in C DMF, after `WorkPending` the thread takes no further buffer until it
//!   is woken again: by the next enqueue, by [`start`](ThreadedBufferQueue::start) or — unlike C
//!   DMF, where the client cannot reach the Thread child's WorkReady — by
//!   [`work_completed`](ThreadedBufferQueue::work_completed), so buffers queued behind a retained
//!   one are not stranded.
//! - **Cancellation (C DMF's Flush semantics).** [`flush`](ThreadedBufferQueue::flush) moves every
//!   buffer of the consumer list back to the producer list and its `enqueue_and_wait` caller
//!   returns `STATUS_CANCELLED` (as `DMF_ThreadedBufferQueue_Flush` does). **Stop and close
//!   flush** after the thread has ended: buffers queued but never processed go back to the pool
//!   and their waiters get `STATUS_CANCELLED`. (C DMF's Stop only stops the thread and leaves the
//!   buffers for the next Start, their `EnqueueAndWait` callers blocked; its close frees the
//!   buffers and leaves those callers blocked forever.) Work already handed to the callback is
//!   not interrupted: stop and close wait for it; between two buffers the thread checks for a
//!   pending stop.
//! - **Waiting.** `enqueue_and_wait` waits *outside* the Module's rundown guard, so close does not
//!   wait for it: close cancels it. On a stopped queue it waits until a `start`, or until a
//!   flush/stop/close cancels it. A retained buffer carries its waiter: `work_completed(buffer,
//!   status)` reports `status` to it — even after close, when the buffer itself comes back in the
//!   error — while dropping the buffer, or `reuse`-ing or re-enqueuing it, reports
//!   `STATUS_CANCELLED`. Never call `enqueue_and_wait`, `stop` or close from the `work` callback:
//!   they would wait for the thread they run on (as in C DMF).
//! - **Layout.** As C DMF prefixes each client buffer with a private header, each buffer's context
//!   here starts with 8 private bytes (the waiter's ticket); [`WorkBuffer::context`] is only the
//!   client's part. A buffer belongs to the queue it was fetched from: one completed into another
//!   queue is refused by that queue's producer pool and freed.
//! - The children close after this Module (Thread first, then BufferQueue), so close can stop the
//!   thread and flush the consumer list through them. No thread, buffer or reference cycle
//!   outlives the close: buffers the client still holds are its own.
//! - Open option `OPEN_Create`, `DISPATCH_MAXIMUM` lock, no WDF callback: dynamic-capable.
//!
//! ## Category
//!
//! Buffers. Like C DMF's `Dmf_ThreadedBufferQueue.c`, its children are a DMF_Thread and a
//! DMF_BufferQueue.
//!
//! # Example
//!
//! ```
//! extern crate alloc;
//! use alloc::sync::Arc;
//! use dmf_core::sync::{LockKind, ModuleLock};
//! use dmf_core::module::NoParent;
//! use dmf_core::NtStatus;
//! use dmf_modules::buffer_pool::BufferPoolSourceSettings;
//! use dmf_modules::buffer_queue::BufferQueueConfig;
//! use dmf_modules::threaded_buffer_queue::{
//!     BufferDisposition, ThreadedBufferQueue, ThreadedBufferQueueConfig, WorkBuffer,
//! };
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! let seen = Arc::new(ModuleLock::new(LockKind::Spin, Vec::new())?);
//! let log = Arc::clone(&seen);
//! let queue = ThreadedBufferQueue::with(ThreadedBufferQueueConfig {
//!     buffer_queue: BufferQueueConfig::new(BufferPoolSourceSettings::new(4, 8)),
//!     pre: None,
//!     work: Arc::new(move |_queue: &ThreadedBufferQueue, buffer: WorkBuffer| {
//!         log.lock().push(buffer.data()[0]);
//!         let status = if buffer.data()[0] == 3 { NtStatus::DEVICE_BUSY } else { NtStatus::SUCCESS };
//!         BufferDisposition::WorkComplete(buffer, status)
//!     }),
//!     post: None,
//!     reuse_cleanup: None,
//! })
//! .create(&NoParent)?;
//! queue.start()?;
//! for value in 1..=2 {
//!     let mut buffer = queue.fetch()?;
//!     buffer.data_mut()[0] = value;
//!     queue.enqueue(buffer)?;
//! }
//! let mut buffer = queue.fetch()?;
//! buffer.data_mut()[0] = 3;
//! assert_eq!(queue.enqueue_and_wait(buffer), Err(NtStatus::DEVICE_BUSY));
//! assert_eq!(*seen.lock(), [1, 2, 3]);
//! queue.delete(); // stops the thread
//! assert!(machine.pool().outstanding().is_empty());
//! # Ok::<(), NtStatus>(())
//! ```

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use dmf_core::fallible::{try_arc, VecExt};
use dmf_core::module::{Added, Dispatched, ModuleCallbacks, ModuleInit, Scope};
use dmf_core::platform::contract::{EventKind, PlatformEvent};
use dmf_core::platform::Event;
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

use crate::buffer_pool::Buffer;
use crate::buffer_queue::{BufferQueue, BufferQueueConfig};
use crate::thread::{Thread, ThreadCallback, ThreadConfig, ThreadControl};

/// Private bytes at the start of every buffer's context: the ticket (little-endian `u64`) of the
/// `enqueue_and_wait` caller waiting for the buffer, 0 for none (C DMF's
/// `ThreadedBufferQueue_WorkBufferInternal`).
const HEADER_LEN: usize = 8;
/// [`HEADER_LEN`] as the pool settings count it.
const HEADER_LEN_U32: u32 = 8;

/// `EVT_DMF_ThreadedBufferQueue_Callback`: does the work of one buffer, at `PASSIVE_LEVEL` on the
/// Module's thread. Returns the buffer with its status, or keeps it (see [`BufferDisposition`]).
pub type ThreadedBufferQueueCallback =
    Arc<dyn Fn(&ThreadedBufferQueue, WorkBuffer) -> BufferDisposition + Send + Sync>;

/// `EVT_DMF_Thread_Function` as `EvtThreadedBufferQueuePre` / `…Post`: on the Module's thread, when
/// it starts / before it ends.
pub type ThreadedBufferQueueThreadCallback = Arc<dyn Fn(&ThreadedBufferQueue) + Send + Sync>;

/// `EVT_DMF_ThreadedBufferQueue_ReuseCleanup`: sees a buffer just before the Module puts it back
/// into the producer list (to release what the client attached to it). ≤ DISPATCH_LEVEL.
pub type ReuseCleanupCallback = Arc<dyn Fn(&ThreadedBufferQueue, &mut WorkBuffer) + Send + Sync>;

/// `ThreadedBufferQueue_BufferDisposition`: what the `work` callback did with its buffer.
#[derive(Debug)]
pub enum BufferDisposition {
    /// `…_WorkComplete`: the work is done; the buffer goes back to the producer list and the
    /// status to the `enqueue_and_wait` caller, if any. The thread takes the next buffer.
    WorkComplete(WorkBuffer, NtStatus),
    /// `…_WorkPending`: the client kept the buffer and will pass it to
    /// [`ThreadedBufferQueue::work_completed`]. The thread takes no further buffer until it is
    /// woken again (next enqueue, `work_completed`, `start`).
    WorkPending,
}

/// `DMF_CONFIG_ThreadedBufferQueue`.
#[derive(Clone)]
pub struct ThreadedBufferQueueConfig {
    /// `BufferQueueConfig`: the buffers (count, size, context size, lookaside, pool tag). Its
    /// `reuse_cleanup` is not used: this Module's own [`reuse_cleanup`](Self::reuse_cleanup) is.
    pub buffer_queue: BufferQueueConfig,
    /// `EvtThreadedBufferQueuePre`: once each time the thread starts.
    pub pre: Option<ThreadedBufferQueueThreadCallback>,
    /// `EvtThreadedBufferQueueWork`: once per work buffer.
    pub work: ThreadedBufferQueueCallback,
    /// `EvtThreadedBufferQueuePost`: once each time the thread stops.
    pub post: Option<ThreadedBufferQueueThreadCallback>,
    /// `EvtThreadedBufferQueueReuseCleanup`: before a buffer goes back to the producer list.
    pub reuse_cleanup: Option<ReuseCleanupCallback>,
}

impl core::fmt::Debug for ThreadedBufferQueueConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ThreadedBufferQueueConfig")
            .field("buffer_queue", &self.buffer_queue)
            .field("pre", &self.pre.is_some())
            .field("post", &self.post.is_some())
            .field("reuse_cleanup", &self.reuse_cleanup.is_some())
            .finish_non_exhaustive()
    }
}

/// The waiter of an `enqueue_and_wait` call.
struct Waiter {
    done: Event,
    status: AtomicI32,
}

impl Waiter {
    /// A waiter not yet woken; `STATUS_INSUFFICIENT_RESOURCES` if its event cannot be created.
    fn new() -> NtResult<Self> {
        Ok(Waiter {
            done: Event::new(EventKind::Notification, false)?,
            status: AtomicI32::new(NtStatus::SUCCESS.to_raw()),
        })
    }

    /// Writes the status back, then wakes the caller (C DMF's order).
    fn complete(&self, status: NtStatus) {
        self.status.store(status.to_raw(), Ordering::SeqCst);
        self.done.set();
    }
}

/// The waiter a buffer carries while the client holds it; reports `STATUS_CANCELLED` if the
/// buffer is dropped (or reused) without `work_completed`, so no caller waits forever.
struct Completion(Option<Arc<Waiter>>);

impl Completion {
    fn complete(&mut self, status: NtStatus) {
        if let Some(waiter) = self.0.take() {
            waiter.complete(status);
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.complete(NtStatus::CANCELLED);
    }
}

/// One buffer of a ThreadedBufferQueue: client data (`BufferSize` bytes) and client context
/// (`BufferContextSize` bytes). Moved at every step, like a [`Buffer`]; not `Clone`. Dropping it
/// frees its memory (and cancels its `enqueue_and_wait` caller, if it has one).
pub struct WorkBuffer {
    buffer: Buffer,
    completion: Completion,
}

impl core::fmt::Debug for WorkBuffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkBuffer")
            .field("data_len", &self.data().len())
            .field("context_len", &self.context().len())
            .field("awaited", &self.is_awaited())
            .finish()
    }
}

impl WorkBuffer {
    fn plain(buffer: Buffer) -> Self {
        WorkBuffer {
            buffer,
            completion: Completion(None),
        }
    }

    /// The client data (`ClientWorkBuffer`, `ClientWorkBufferSize` bytes).
    pub fn data(&self) -> &[u8] {
        self.buffer.data()
    }

    /// The client data, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer.data_mut()
    }

    /// The client context (`ClientWorkBufferContext`; empty without one).
    pub fn context(&self) -> &[u8] {
        &self.buffer.context()[HEADER_LEN..]
    }

    /// The client context, writable.
    pub fn context_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.context_mut()[HEADER_LEN..]
    }

    /// Data and context at once, both writable.
    pub fn data_and_context_mut(&mut self) -> (&mut [u8], &mut [u8]) {
        let (data, context) = self.buffer.data_and_context_mut();
        (data, &mut context[HEADER_LEN..])
    }

    /// `true` while an `enqueue_and_wait` caller waits for this buffer (a retained buffer that
    /// was enqueued with `enqueue_and_wait`).
    pub fn is_awaited(&self) -> bool {
        self.completion.0.is_some()
    }
}

fn ticket_of(buffer: &Buffer) -> u64 {
    let mut bytes = [0u8; HEADER_LEN];
    bytes.copy_from_slice(&buffer.context()[..HEADER_LEN]);
    u64::from_le_bytes(bytes)
}

fn ticket_set(buffer: &mut Buffer, ticket: u64) {
    buffer.context_mut()[..HEADER_LEN].copy_from_slice(&ticket.to_le_bytes());
}

/// A Method that takes a buffer failed: the status and the buffer, back in the caller's hands
/// (retry, reuse, or drop it, which frees it). `?` converts it to its [`NtStatus`], dropping the
/// buffer.
pub struct WorkBufferError {
    status: NtStatus,
    buffer: WorkBuffer,
}

impl WorkBufferError {
    fn new(status: NtStatus, buffer: WorkBuffer) -> Self {
        WorkBufferError { status, buffer }
    }

    /// Why the Method failed.
    pub fn status(&self) -> NtStatus {
        self.status
    }

    /// The buffer, back in the caller's hands.
    pub fn into_buffer(self) -> WorkBuffer {
        self.buffer
    }
}

impl core::fmt::Debug for WorkBufferError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkBufferError")
            .field("status", &self.status)
            .field("buffer", &self.buffer)
            .finish()
    }
}

impl From<WorkBufferError> for NtStatus {
    fn from(error: WorkBufferError) -> NtStatus {
        error.status
    }
}

/// The thread callbacks' way to the Module: they are fixed in the Thread child's config before
/// this Module's handle exists, so they hold this cell, which `open` fills and `close` empties.
struct Link(ModuleLock<Option<Arc<Shared>>>);

impl Link {
    fn get(&self) -> Option<Arc<Shared>> {
        self.0.lock().clone()
    }

    fn set(&self, shared: Option<Arc<Shared>>) {
        let old = {
            let mut slot = self.0.lock();
            core::mem::replace(&mut *slot, shared)
        };
        // Dropped outside the lock: the last reference releases the children's handles.
        drop(old);
    }
}

/// The Module's private state: children tokens (from `child_modules_add`), the link of the thread
/// callbacks, and what the Methods share while the Module is open.
#[derive(Default)]
struct Context {
    queue: Option<Added<BufferQueue>>,
    thread: Option<Added<Thread>>,
    link: Option<Arc<Link>>,
    /// Why the link or the thread callbacks could not be allocated (`open` reports it).
    wiring_failure: Option<NtStatus>,
    shared: Option<Arc<Shared>>,
}

/// What the Methods and the thread share; lives from open to close.
struct Shared {
    handle: ThreadedBufferQueue,
    queue: BufferQueue,
    thread: Thread,
    config: ThreadedBufferQueueConfig,
    /// `enqueue_and_wait` callers whose buffer is in the consumer list, by ticket.
    waiters: ModuleLock<Vec<(u64, Arc<Waiter>)>>,
    next_ticket: AtomicU64,
}

impl Shared {
    /// A buffer taken from the consumer list, with its waiter (if any) attached.
    fn claim(&self, mut buffer: Buffer) -> WorkBuffer {
        let ticket = ticket_of(&buffer);
        ticket_set(&mut buffer, 0);
        let waiter = if ticket == 0 {
            None
        } else {
            let mut waiters = self.waiters.lock();
            waiters
                .iter()
                .position(|(t, _)| *t == ticket)
                .map(|index| waiters.swap_remove(index).1)
        };
        WorkBuffer {
            buffer,
            completion: Completion(waiter),
        }
    }

    /// Puts `buffer` back into the producer list (after the client's cleanup). Returns its
    /// completion, for the caller to report a status to, and the buffer if the pool refused it.
    fn recycle(&self, mut buffer: WorkBuffer) -> (Completion, Result<(), WorkBufferError>) {
        if let Some(cleanup) = &self.config.reuse_cleanup {
            cleanup(&self.handle, &mut buffer);
        }
        let WorkBuffer {
            buffer: mut raw,
            completion,
        } = buffer;
        ticket_set(&mut raw, 0);
        let result = self.queue.reuse(raw).map_err(|error| {
            WorkBufferError::new(error.status(), WorkBuffer::plain(error.into_buffer()))
        });
        (completion, result)
    }

    /// Work done: the buffer back to the pool first, then the status to its waiter, so a waiter
    /// that returns finds the buffer available again. A refused buffer is freed.
    fn finish(&self, buffer: WorkBuffer, status: NtStatus) {
        let (mut completion, _refused) = self.recycle(buffer);
        completion.complete(status);
    }

    /// `enqueue` with an optional waiter. On failure the buffer comes back, without a waiter.
    fn enqueue(
        &self,
        buffer: WorkBuffer,
        at_head: bool,
        waiter: Option<&Arc<Waiter>>,
    ) -> Result<(), WorkBufferError> {
        let WorkBuffer {
            buffer: mut raw,
            completion,
        } = buffer;
        // A waiter from an earlier round (a retained buffer enqueued again) is cancelled.
        drop(completion);
        let ticket = match waiter {
            None => 0,
            Some(waiter) => {
                let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
                let pushed = self.waiters.lock().try_push((ticket, Arc::clone(waiter)));
                if let Err(status) = pushed {
                    return Err(WorkBufferError::new(status, WorkBuffer::plain(raw)));
                }
                ticket
            }
        };
        ticket_set(&mut raw, ticket);
        let put = if at_head {
            self.queue.enqueue_at_head(raw)
        } else {
            self.queue.enqueue(raw)
        };
        if let Err(error) = put {
            if ticket != 0 {
                // The buffer never reached the list, so nobody else can have claimed the ticket.
                let removed = {
                    let mut waiters = self.waiters.lock();
                    waiters
                        .iter()
                        .position(|(t, _)| *t == ticket)
                        .map(|index| waiters.swap_remove(index))
                };
                drop(removed);
            }
            let status = error.status();
            let mut buffer = error.into_buffer();
            ticket_set(&mut buffer, 0);
            return Err(WorkBufferError::new(status, WorkBuffer::plain(buffer)));
        }
        // DMF_Thread_WorkReady (the Thread child is open while this Module is).
        let _ = self.thread.work_ready();
        Ok(())
    }

    /// The thread's work: take buffers off the consumer list and hand them to the client, until
    /// the list is empty, the client keeps one, or a stop is pending.
    fn process(&self, thread: &Thread) {
        loop {
            if thread.is_stop_pending() {
                return;
            }
            let buffer = match self.queue.dequeue() {
                Ok(buffer) => buffer,
                // An overrun buffer was freed by the pool; take the next one.
                Err(NtStatus::DATA_ERROR) => continue,
                // Empty (STATUS_UNSUCCESSFUL): no more work. This is how the loop ends.
                Err(_) => return,
            };
            let buffer = self.claim(buffer);
            match (self.config.work)(&self.handle, buffer) {
                BufferDisposition::WorkComplete(buffer, status) => self.finish(buffer, status),
                BufferDisposition::WorkPending => return,
            }
        }
    }

    /// `DMF_ThreadedBufferQueue_Flush`: every buffer of the consumer list back to the producer
    /// list, its waiter told `STATUS_CANCELLED`. Returns how many.
    fn flush(&self) -> usize {
        let mut flushed = 0;
        loop {
            match self.queue.dequeue() {
                Ok(buffer) => {
                    let buffer = self.claim(buffer);
                    self.finish(buffer, NtStatus::CANCELLED);
                    flushed += 1;
                }
                Err(NtStatus::DATA_ERROR) => {}
                Err(_) => return flushed,
            }
        }
    }

    /// Close: every waiter still registered is cancelled (one whose buffer the pool freed on an
    /// overrun, say); none may wait for a Module that is gone.
    fn cancel_waiters(&self) {
        let left = core::mem::take(&mut *self.waiters.lock());
        for (_, waiter) in left {
            waiter.complete(NtStatus::CANCELLED);
        }
    }
}

/// A ThreadedBufferQueue: a BufferQueue consumed by a dedicated thread. See the
/// [module documentation](self).
#[dmf_module(crate = dmf_core, config = ThreadedBufferQueueConfig, context = Context, open = Create, lock = DispatchMaximum)]
pub struct ThreadedBufferQueue;

/// A thread callback of the Thread child that forwards to `forward` with the Module's shared
/// state, while the Module is open.
fn thread_callback(link: &Arc<Link>, forward: fn(&Shared, &Thread)) -> NtResult<ThreadCallback> {
    let link = Arc::clone(link);
    Ok(try_arc(move |thread: &Thread| {
        if let Some(shared) = link.get() {
            forward(&shared, thread);
        }
    })?)
}

/// The link and the Thread child's callbacks (`pre`, `work`, `post`), which forward through it.
fn thread_wiring(config: &ThreadedBufferQueueConfig) -> NtResult<(Arc<Link>, ThreadControl)> {
    let link = try_arc(Link(ModuleLock::new(LockKind::Spin, None)?))?;
    let pre = match config.pre {
        Some(_) => Some(thread_callback(&link, |shared, _| {
            if let Some(pre) = &shared.config.pre {
                pre(&shared.handle);
            }
        })?),
        None => None,
    };
    let post = match config.post {
        Some(_) => Some(thread_callback(&link, |shared, _| {
            if let Some(post) = &shared.config.post {
                post(&shared.handle);
            }
        })?),
        None => None,
    };
    let work = thread_callback(&link, Shared::process)?;
    Ok((link, ThreadControl::Dmf { pre, work, post }))
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for ThreadedBufferQueue {
    fn child_modules_add(module: &Dispatched<'_, Self>, init: &mut ModuleInit) {
        let config = module.config();
        // The BufferQueue runs at this Module's level (C DMF passes PassiveLevel on) and its
        // buffers carry the private header in front of the client's context.
        let mut queue_config = config.buffer_queue.clone();
        // This Module's own `reuse_cleanup` sees its buffers (the child's would see the private
        // header in their context).
        queue_config.reuse_cleanup = None;
        if let Some(size) = queue_config
            .source
            .buffer_context_size
            .checked_add(HEADER_LEN_U32)
        {
            queue_config.source.buffer_context_size = size;
        } else {
            // Too large for the header: allocate nothing; `open` fails.
            queue_config.source.buffer_count = 0;
            queue_config.source.enable_look_aside = false;
        }
        let queue =
            init.add(BufferQueue::with(queue_config).passive_level(module.is_passive_level()));
        // A failure to allocate the link or the callbacks is reported by `open` (without the
        // Thread child).
        let wiring = thread_wiring(config)
            .map(|(link, control)| (link, init.add(Thread::with(ThreadConfig { control }))));
        let mut ctx = module.lock();
        ctx.queue = Some(queue);
        match wiring {
            Ok((link, thread)) => {
                ctx.thread = Some(thread);
                ctx.link = Some(link);
            }
            Err(status) => ctx.wiring_failure = Some(status),
        }
    }

    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let config = module.config();
        if config.buffer_queue.source.buffer_context_size > u32::MAX - HEADER_LEN_U32 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let (queue, thread, link, wiring_failure) = {
            let ctx = module.lock();
            (ctx.queue, ctx.thread, ctx.link.clone(), ctx.wiring_failure)
        };
        if let Some(status) = wiring_failure {
            return Err(status);
        }
        let missing = NtStatus::INVALID_DEVICE_STATE;
        let link = link.ok_or(missing)?;
        let shared = try_arc(Shared {
            handle: module.handle()?,
            queue: module.child(queue.ok_or(missing)?)?,
            thread: module.child(thread.ok_or(missing)?)?,
            config: config.clone(),
            waiters: ModuleLock::new(LockKind::Spin, Vec::new())?,
            next_ticket: AtomicU64::new(1),
        })?;
        link.set(Some(Arc::clone(&shared)));
        module.lock().shared = Some(shared);
        Ok(())
    }

    fn close(module: &Dispatched<'_, Self>) {
        // INVARIANT: no Method runs any more (the rundown wait is over), so nobody starts the
        // thread again or adds a waiter; the children are still open (they close after us).
        let (shared, link) = {
            let mut ctx = module.lock();
            (ctx.shared.take(), ctx.link.clone())
        };
        let Some(shared) = shared else {
            return;
        };
        // Joins the thread: the buffer in the callback finishes, then `post` runs.
        let _ = shared.thread.stop();
        if let Some(link) = link {
            link.set(None);
        }
        shared.flush();
        shared.cancel_waiters();
    }
}

/// This Module's shared state, while it is open.
fn shared_of(module: &Scope<'_, ThreadedBufferQueue>) -> NtResult<Arc<Shared>> {
    module
        .lock()
        .shared
        .clone()
        .ok_or(NtStatus::INVALID_DEVICE_STATE)
}

/// Runs `f` inside the rundown guard with the shared state, handing `buffer` back on failure.
fn with_buffer(
    queue: &ThreadedBufferQueue,
    buffer: WorkBuffer,
    f: impl FnOnce(&Shared, WorkBuffer) -> Result<(), WorkBufferError>,
) -> Result<(), WorkBufferError> {
    let module = match queue.enter() {
        Ok(module) => module,
        Err(status) => return Err(WorkBufferError::new(status, buffer)),
    };
    match shared_of(&module) {
        Ok(shared) => f(&shared, buffer),
        Err(status) => Err(WorkBufferError::new(status, buffer)),
    }
}

impl ThreadedBufferQueue {
    /// `DMF_ThreadedBufferQueue_Start` (PASSIVE_LEVEL): starts the thread; buffers already queued
    /// are processed.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open, if the thread runs already or a `start`/`stop`
    /// is under way; the platform's status if the thread cannot be created.
    pub fn start(&self) -> NtResult<()> {
        let module = self.enter()?;
        let shared = shared_of(&module)?;
        // Work queued while the thread was stopped is not lost: the thread starts with one
        // wake-up (C DMF's Start only starts the thread). Not `start()` then `work_ready()`: the
        // new thread may already have consumed the wake-up of an earlier enqueue, kept that
        // buffer (`WorkPending`) and gone back to waiting, so the second wake-up would make it
        // take the next buffer — a run that depends on thread timing.
        shared.thread.start_with_work_ready()
    }

    /// `DMF_ThreadedBufferQueue_Stop` (PASSIVE_LEVEL): stops the thread (waiting for the buffer in
    /// the callback, then `post`), then flushes: every buffer still queued goes back to the pool,
    /// its `enqueue_and_wait` caller gets `STATUS_CANCELLED`. Not running is no error.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open, or if a `start`/`stop` is under way.
    pub fn stop(&self) -> NtResult<()> {
        let module = self.enter()?;
        let shared = shared_of(&module)?;
        shared.thread.stop()?;
        shared.flush();
        Ok(())
    }

    /// `DMF_ThreadedBufferQueue_Fetch`: an empty buffer from the producer list.
    ///
    /// # Errors
    ///
    /// `STATUS_UNSUCCESSFUL` when none is free (without lookaside); `STATUS_INVALID_DEVICE_STATE`
    /// unless open.
    pub fn fetch(&self) -> NtResult<WorkBuffer> {
        let module = self.enter()?;
        let shared = shared_of(&module)?;
        shared.queue.fetch().map(WorkBuffer::plain)
    }

    /// `DMF_ThreadedBufferQueue_Enqueue`: `buffer` at the tail of the consumer list; wakes the
    /// thread.
    pub fn enqueue(&self, buffer: WorkBuffer) -> Result<(), WorkBufferError> {
        with_buffer(self, buffer, |shared, buffer| {
            shared.enqueue(buffer, false, None)
        })
    }

    /// `DMF_ThreadedBufferQueue_EnqueueAtHead`: `buffer` at the head of the consumer list (worked
    /// on next); wakes the thread.
    pub fn enqueue_at_head(&self, buffer: WorkBuffer) -> Result<(), WorkBufferError> {
        with_buffer(self, buffer, |shared, buffer| {
            shared.enqueue(buffer, true, None)
        })
    }

    /// `DMF_ThreadedBufferQueue_EnqueueAndWait` (PASSIVE_LEVEL): `buffer` at the tail, then waits
    /// until its work is done and returns the status the callback (or `work_completed`) gave.
    ///
    /// # Errors
    ///
    /// The work's status if it is not a success; `STATUS_CANCELLED` if the buffer was flushed
    /// (flush, stop, close) before it was worked on; `STATUS_INVALID_DEVICE_STATE` unless open (the
    /// buffer is dropped, which frees it); `STATUS_INSUFFICIENT_RESOURCES` if the wait (its event)
    /// cannot be created. A buffer the Module could not queue goes back to the producer list.
    pub fn enqueue_and_wait(&self, buffer: WorkBuffer) -> NtResult<()> {
        self.enqueue_wait(buffer, false)
    }

    /// `DMF_ThreadedBufferQueue_EnqueueAtHeadAndWait` (PASSIVE_LEVEL): as
    /// [`enqueue_and_wait`](Self::enqueue_and_wait), at the head of the consumer list.
    ///
    /// # Errors
    ///
    /// As [`enqueue_and_wait`](Self::enqueue_and_wait).
    pub fn enqueue_at_head_and_wait(&self, buffer: WorkBuffer) -> NtResult<()> {
        self.enqueue_wait(buffer, true)
    }

    fn enqueue_wait(&self, buffer: WorkBuffer, at_head: bool) -> NtResult<()> {
        let waiter = {
            let module = self.enter()?;
            let shared = shared_of(&module)?;
            let waiter = match Waiter::new().and_then(try_arc) {
                Ok(waiter) => waiter,
                Err(status) => {
                    // Not queued: the buffer goes back to the producer list (or is freed).
                    let (_, _refused) = shared.recycle(buffer);
                    return Err(status);
                }
            };
            if let Err(error) = shared.enqueue(buffer, at_head, Some(&waiter)) {
                let status = error.status();
                // Not queued: the buffer goes back to the producer list (or is freed).
                let (_, _refused) = shared.recycle(error.into_buffer());
                return Err(status);
            }
            waiter
        };
        // Outside the rundown guard: close does not wait for this call, it cancels it.
        let _ = waiter.done.wait(None);
        NtStatus::from_raw(waiter.status.load(Ordering::SeqCst)).ok()
    }

    /// `DMF_ThreadedBufferQueue_Reuse`: an unused buffer (fetched, not enqueued) back to the
    /// producer list, through `reuse_cleanup`. A retained buffer's waiter gets
    /// `STATUS_CANCELLED` (use [`work_completed`](Self::work_completed) to report a status).
    pub fn reuse(&self, buffer: WorkBuffer) -> Result<(), WorkBufferError> {
        with_buffer(self, buffer, |shared, buffer| shared.recycle(buffer).1)
    }

    /// `DMF_ThreadedBufferQueue_WorkCompleted`: the work of a buffer the callback kept
    /// (`WorkPending`) is done: the buffer goes back to the producer list, `status` to its
    /// `enqueue_and_wait` caller, and the thread is woken to take the next buffer.
    ///
    /// The waiter gets `status` even when this fails (the work *was* done); the buffer then comes
    /// back in the error (`STATUS_INVALID_DEVICE_STATE` after close).
    pub fn work_completed(
        &self,
        buffer: WorkBuffer,
        status: NtStatus,
    ) -> Result<(), WorkBufferError> {
        let mut buffer = buffer;
        let module = match self.enter() {
            Ok(module) => module,
            Err(error) => {
                buffer.completion.complete(status);
                return Err(WorkBufferError::new(error, buffer));
            }
        };
        let shared = match shared_of(&module) {
            Ok(shared) => shared,
            Err(error) => {
                buffer.completion.complete(status);
                return Err(WorkBufferError::new(error, buffer));
            }
        };
        let (mut completion, result) = shared.recycle(buffer);
        completion.complete(status);
        let _ = shared.thread.work_ready();
        result
    }

    /// `DMF_ThreadedBufferQueue_Flush`: every buffer of the consumer list (work not started) back
    /// to the producer list; their `enqueue_and_wait` callers get `STATUS_CANCELLED`. Work already
    /// in the callback continues. Returns how many buffers were flushed.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn flush(&self) -> NtResult<usize> {
        let module = self.enter()?;
        Ok(shared_of(&module)?.flush())
    }

    /// `DMF_ThreadedBufferQueue_Count`: buffers in the consumer list (work not started).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn count(&self) -> NtResult<usize> {
        let module = self.enter()?;
        shared_of(&module)?.queue.count()
    }
}
