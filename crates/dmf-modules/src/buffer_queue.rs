//! # BufferQueue
//!
//! ## Summary
//!
//! A producer/consumer queue of fixed-size buffers (C DMF: `Dmf_BufferQueue.c`). It owns two
//! [`BufferPool`] children: a Source pool of empty buffers (the *producer* list) and a Sink pool
//! of filled buffers (the *consumer* list). A producer [`fetch`](BufferQueue::fetch)es an empty
//! buffer, fills it and [`enqueue`](BufferQueue::enqueue)s it; a consumer
//! [`dequeue`](BufferQueue::dequeue)s it, uses it and gives it back with
//! [`reuse`](BufferQueue::reuse). Buffers are [`Buffer`] values, moved at every step.
//!
//! ## Configuration
//!
//! [`BufferQueueConfig`] (`DMF_CONFIG_BufferQueue`): `source` — the producer pool's
//! [`BufferPoolSourceSettings`] (count, size, context size, lookaside, timers, pool tag);
//! `reuse_cleanup` — optional `EvtBufferQueueReuseCleanup`.
//!
//! ## Methods
//!
//! | Method | C DMF | Does |
//! |---|---|---|
//! | [`BufferQueue::fetch`] | `DMF_BufferQueue_Fetch` | an empty buffer from the producer pool |
//! | [`BufferQueue::enqueue`] | `DMF_BufferQueue_Enqueue` | a filled buffer at the consumer tail |
//! | [`BufferQueue::enqueue_at_head`] | `DMF_BufferQueue_EnqueueAtHead` | … at the consumer head |
//! | [`BufferQueue::enqueue_with_timer`] | `DMF_BufferQueue_EnqueueWithTimer` | … with a timeout |
//! | [`BufferQueue::dequeue`] | `DMF_BufferQueue_Dequeue` | the consumer head |
//! | [`BufferQueue::dequeue_with_memory_descriptor`] | `DMF_BufferQueue_DequeueWithMemoryDescriptor` | the same: a [`Buffer`] is its own memory descriptor |
//! | [`BufferQueue::reuse`] | `DMF_BufferQueue_Reuse` | a used buffer (after `reuse_cleanup`) back to the producer pool |
//! | [`BufferQueue::context_get`] | `DMF_BufferQueue_ContextGet` | a buffer's checked client context |
//! | [`BufferQueue::enumerate`] | `DMF_BufferQueue_Enumerate` | visit the consumer list |
//! | [`BufferQueue::count`] | `DMF_BufferQueue_Count` | buffers in the consumer list |
//! | [`BufferQueue::flush`] | `DMF_BufferQueue_Flush` | every consumer buffer back to the producer pool |
//!
//! All at ≤ DISPATCH_LEVEL (PASSIVE_LEVEL for a `passive_level(true)` queue, whose children are
//! passive-level too). Every Method fails with `STATUS_INVALID_DEVICE_STATE` once the queue has
//! begun to close; a failed enqueue or reuse hands the buffer back in the [`PutError`].
//!
//! ## Callbacks
//!
//! [`BufferTimerCallback`] for `enqueue_with_timer`, and the `enumerate` callback returning an
//! [`EnumerationDisposition`] (runs with the consumer pool's lock held), as in [`BufferPool`].
//! `EVT_DMF_BufferQueue_ReuseCleanup` → [`BufferQueueReuseCleanup`]:
//! `Fn(&BufferQueue, &mut Buffer)`, called for every buffer on its way back to the producer pool —
//! by `reuse`, by `flush` and, as C DMF's close flushes, by close for every buffer still queued —
//! at the caller's IRQL, without any lock of the queue held.
//!
//! ## Remarks
//!
//! - Empty producer pool: `fetch` is `STATUS_UNSUCCESSFUL` (or allocates, with lookaside); empty
//!   consumer pool: `dequeue` is `STATUS_UNSUCCESSFUL`.
//! - Overruns are caught by the pools' sentinels on every enqueue, dequeue, fetch and reuse
//!   (`STATUS_DATA_ERROR`).
//! - The children close after the queue (children close last), so a Method that entered before
//!   close began finishes on open pools; close frees every buffer either pool holds (with a
//!   `reuse_cleanup`, it first flushes the consumer list through it, as C DMF does).
//! - `DequeueWithMemoryDescriptor` is `dequeue`: a [`Buffer`] is the memory a request is
//!   formatted over (`AsRef<[u8]>`, see [`BufferPool`]'s remarks), so no descriptor is needed
//!   beside it. `ContextGet` is also on the buffer itself ([`Buffer::context_mut`]).
//! - Open option `OPEN_Create`, `DISPATCH_MAXIMUM` lock, no WDF callback: dynamic-capable.
//!
//! ## Category
//!
//! Buffers.
//!
//! # Example
//!
//! ```
//! use dmf_core::module::NoParent;
//! use dmf_modules::buffer_pool::BufferPoolSourceSettings;
//! use dmf_modules::buffer_queue::{BufferQueue, BufferQueueConfig};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! let queue = BufferQueue::with(BufferQueueConfig::new(BufferPoolSourceSettings::new(4, 16)))
//!     .create(&NoParent)?;
//!
//! let mut buffer = queue.fetch()?; // producer side
//! buffer.data_mut()[0] = 42;
//! queue.enqueue(buffer)?;
//!
//! let buffer = queue.dequeue()?; // consumer side
//! assert_eq!(buffer.data()[0], 42);
//! queue.reuse(buffer)?;
//! assert_eq!(queue.count()?, 0);
//! queue.delete();
//! assert!(machine.pool().outstanding().is_empty());
//! # Ok::<(), dmf_core::NtStatus>(())
//! ```

use alloc::sync::Arc;
use core::time::Duration;

use dmf_core::module::{Added, Dispatched, ModuleCallbacks, ModuleInit, Scope};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

use crate::buffer_pool::{
    Buffer, BufferPool, BufferPoolConfig, BufferPoolSourceSettings, BufferTimerCallback,
    EnumerationDisposition, PutError,
};

/// `EVT_DMF_BufferQueue_ReuseCleanup`: sees a buffer just before it goes back to the producer
/// pool (its data and context, writable), to release what the client attached to it. Runs at
/// the caller's IRQL (≤ DISPATCH_LEVEL; PASSIVE_LEVEL for a passive-level queue), without any
/// lock of the queue held.
pub type BufferQueueReuseCleanup = Arc<dyn Fn(&BufferQueue, &mut Buffer) + Send + Sync>;

/// `DMF_CONFIG_BufferQueue`.
#[derive(Clone)]
pub struct BufferQueueConfig {
    /// `SourceSettings`: the producer (Source) pool's settings.
    pub source: BufferPoolSourceSettings,
    /// `EvtBufferQueueReuseCleanup` (optional).
    pub reuse_cleanup: Option<BufferQueueReuseCleanup>,
}

impl BufferQueueConfig {
    /// A queue of `source`'s buffers, without a reuse-cleanup callback.
    pub const fn new(source: BufferPoolSourceSettings) -> Self {
        BufferQueueConfig {
            source,
            reuse_cleanup: None,
        }
    }
}

impl core::fmt::Debug for BufferQueueConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BufferQueueConfig")
            .field("source", &self.source)
            .field("reuse_cleanup", &self.reuse_cleanup.is_some())
            .finish()
    }
}

/// The queue's private state: its children's tokens, set in `child_modules_add`.
#[derive(Default)]
struct Context {
    producer: Option<Added<BufferPool>>,
    consumer: Option<Added<BufferPool>>,
}

/// A producer/consumer queue on two [`BufferPool`]s. See the [module documentation](self).
#[dmf_module(crate = dmf_core, config = BufferQueueConfig, context = Context, open = Create, lock = DispatchMaximum)]
pub struct BufferQueue;

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for BufferQueue {
    fn child_modules_add(module: &Dispatched<'_, Self>, init: &mut ModuleInit) {
        // The children run at the queue's level (C DMF passes the parent's attributes on).
        let passive = module.is_passive_level();
        let source = module.config().source;
        let producer =
            init.add(BufferPool::with(BufferPoolConfig::source(source)).passive_level(passive));
        let consumer = init.add(BufferPool::with(BufferPoolConfig::sink()).passive_level(passive));
        let mut ctx = module.lock();
        ctx.producer = Some(producer);
        ctx.consumer = Some(consumer);
    }

    fn close(module: &Dispatched<'_, Self>) {
        // C DMF's close flushes, so `EvtBufferQueueReuseCleanup` sees every buffer still queued
        // (the children close after this Module: they are still open here).
        let Some(cleanup) = module.config().reuse_cleanup.as_ref() else {
            return;
        };
        if let (Ok(queue), Ok(producer), Ok(consumer)) =
            (module.handle(), producer(module), consumer(module))
        {
            let _ = flush_into(&queue, &producer, &consumer, Some(cleanup));
        }
    }
}

/// The producer pool of the queue whose scope this is.
fn producer(module: &Scope<'_, BufferQueue>) -> NtResult<BufferPool> {
    let token = module.lock().producer;
    module.child(token.ok_or(NtStatus::INVALID_DEVICE_STATE)?)
}

/// The consumer pool of the queue whose scope this is.
fn consumer(module: &Scope<'_, BufferQueue>) -> NtResult<BufferPool> {
    let token = module.lock().consumer;
    module.child(token.ok_or(NtStatus::INVALID_DEVICE_STATE)?)
}

/// Runs `put` on a pool of the queue, handing the buffer back on any failure.
fn put_with(
    queue: &BufferQueue,
    pool: fn(&Scope<'_, BufferQueue>) -> NtResult<BufferPool>,
    buffer: Buffer,
    put: impl FnOnce(&BufferPool, Buffer) -> Result<(), PutError>,
) -> Result<(), PutError> {
    let module = match queue.enter() {
        Ok(module) => module,
        Err(status) => return Err(PutError::new(status, buffer)),
    };
    match pool(&module) {
        Ok(pool) => put(&pool, buffer),
        Err(status) => Err(PutError::new(status, buffer)),
    }
}

impl BufferQueue {
    /// `DMF_BufferQueue_Fetch`: an empty buffer from the producer pool.
    pub fn fetch(&self) -> NtResult<Buffer> {
        let module = self.enter()?;
        producer(&module)?.get()
    }

    /// `DMF_BufferQueue_Enqueue`: `buffer` at the tail of the consumer list.
    pub fn enqueue(&self, buffer: Buffer) -> Result<(), PutError> {
        put_with(self, consumer, buffer, BufferPool::put)
    }

    /// `DMF_BufferQueue_EnqueueAtHead`: `buffer` at the head of the consumer list (dequeued
    /// next).
    pub fn enqueue_at_head(&self, buffer: Buffer) -> Result<(), PutError> {
        put_with(self, consumer, buffer, BufferPool::put_at_head)
    }

    /// `DMF_BufferQueue_EnqueueWithTimer`: `buffer` at the tail of the consumer list; unless it
    /// is dequeued first, after `timeout` it is removed and passed to `callback`. Needs
    /// `create_with_timer` in the config (`STATUS_INVALID_PARAMETER` otherwise).
    pub fn enqueue_with_timer(
        &self,
        buffer: Buffer,
        timeout: Duration,
        callback: BufferTimerCallback,
    ) -> Result<(), PutError> {
        put_with(self, consumer, buffer, |pool, buffer| {
            pool.put_in_sink_with_timer(buffer, timeout, callback)
        })
    }

    /// `DMF_BufferQueue_Dequeue`: the buffer at the head of the consumer list.
    pub fn dequeue(&self) -> NtResult<Buffer> {
        let module = self.enter()?;
        consumer(&module)?.get()
    }

    /// `DMF_BufferQueue_Reuse`: a used buffer back to the producer pool, after the config's
    /// `reuse_cleanup` saw it.
    pub fn reuse(&self, mut buffer: Buffer) -> Result<(), PutError> {
        let module = match self.enter() {
            Ok(module) => module,
            Err(status) => return Err(PutError::new(status, buffer)),
        };
        let pool = match producer(&module) {
            Ok(pool) => pool,
            Err(status) => return Err(PutError::new(status, buffer)),
        };
        if let Some(cleanup) = &module.config().reuse_cleanup {
            cleanup(self, &mut buffer);
        }
        pool.put(buffer)
    }

    /// `DMF_BufferQueue_DequeueWithMemoryDescriptor`: the buffer at the head of the consumer
    /// list, which is its own memory descriptor (`buffer.as_ref()` is the request buffer, see
    /// [`BufferPool`]'s remarks). The same as [`dequeue`](Self::dequeue); named for C DMF's
    /// callers.
    ///
    /// # Errors
    ///
    /// As [`dequeue`](Self::dequeue).
    pub fn dequeue_with_memory_descriptor(&self) -> NtResult<Buffer> {
        self.dequeue()
    }

    /// `DMF_BufferQueue_ContextGet`: the client context of `buffer` (checked as
    /// [`BufferPool::context_get`] checks it).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open; `STATUS_DATA_ERROR` for a broken sentinel.
    pub fn context_get<'b>(&self, buffer: &'b mut Buffer) -> NtResult<&'b mut [u8]> {
        let module = self.enter()?;
        consumer(&module)?.context_get(buffer)
    }

    /// `DMF_BufferQueue_Enumerate`: [`BufferPool::enumerate`] on the consumer list.
    pub fn enumerate(
        &self,
        callback: impl FnMut(&mut Buffer) -> EnumerationDisposition,
    ) -> NtResult<Option<Buffer>> {
        let module = self.enter()?;
        consumer(&module)?.enumerate(callback)
    }

    /// `DMF_BufferQueue_Count`: buffers in the consumer list.
    pub fn count(&self) -> NtResult<usize> {
        let module = self.enter()?;
        consumer(&module)?.count()
    }

    /// `DMF_BufferQueue_Flush`: moves every buffer of the consumer list back to the producer
    /// pool (a buffer the producer pool refuses is freed). Returns how many were flushed.
    pub fn flush(&self) -> NtResult<usize> {
        let module = self.enter()?;
        let (producer, consumer) = (producer(&module)?, consumer(&module)?);
        let flushed = flush_into(
            self,
            &producer,
            &consumer,
            module.config().reuse_cleanup.as_ref(),
        );
        drop(module);
        flushed
    }
}

/// `DMF_BufferQueue_Flush`'s loop: every consumer buffer through the cleanup callback back to
/// the producer pool (a buffer the producer pool refuses is freed). Returns how many; an empty
/// consumer list ends it, another error of the consumer pool is returned.
fn flush_into(
    queue: &BufferQueue,
    producer: &BufferPool,
    consumer: &BufferPool,
    cleanup: Option<&BufferQueueReuseCleanup>,
) -> NtResult<usize> {
    let mut flushed = 0;
    loop {
        match consumer.get() {
            Ok(mut buffer) => {
                if let Some(cleanup) = cleanup {
                    cleanup(queue, &mut buffer);
                }
                // A refused buffer (producer closing) is dropped here, which frees it.
                let _ = producer.put(buffer);
                flushed += 1;
            }
            Err(NtStatus::UNSUCCESSFUL) => return Ok(flushed),
            // An overrun buffer was freed by `get`; keep flushing.
            Err(NtStatus::DATA_ERROR) => {}
            Err(status) => return Err(status),
        }
    }
}
