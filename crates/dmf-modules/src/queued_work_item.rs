//! # QueuedWorkItem
//!
//! ## Summary
//!
//! Deferred work that runs **exactly once per enqueue, in enqueue order**, at `PASSIVE_LEVEL`,
//! each run with the parameters its caller passed (C DMF: `Dmf_QueuedWorkItem.c`). Unlike a bare
//! WDF work item — where enqueuing an item that is already queued does nothing, so calls coalesce —
//! every [`QueuedWorkItem::enqueue`] copies the caller's parameter bytes into a buffer of its own
//! and queues it; one work-item run drains the queue, calling the client once per buffer.
//! [`QueuedWorkItem::enqueue_and_wait`] also waits for its call and returns the status the callback
//! set with [`QueuedWork::status_set`].
//!
//! ## Configuration
//!
//! [`QueuedWorkItemConfig`]:
//! - `callback` — `EvtQueuedWorkitemFunction`, a [`QueuedWorkItemCallback`];
//! - `buffer_count`, `buffer_size` — the parameter buffers preallocated at open
//!   (`BufferQueueConfig.SourceSettings.BufferCount`/`BufferSize`), from tagged pool;
//! - `enable_look_aside` — allocate more buffers when all are in use instead of failing
//!   (`SourceSettings.EnableLookAside`).
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`QueuedWorkItem::enqueue`] | `DMF_QueuedWorkItem_Enqueue` | ≤ DISPATCH |
//! | [`QueuedWorkItem::enqueue_and_wait`] | `DMF_QueuedWorkItem_EnqueueAndWait` | PASSIVE |
//! | [`QueuedWorkItem::flush`] | `DMF_QueuedWorkItem_Flush` | PASSIVE |
//! | [`QueuedWork::status_set`] | `DMF_QueuedWorkItem_StatusSet` | (in the callback) |
//!
//! ## Callbacks
//!
//! `EVT_DMF_QueuedWorkItem_Callback` → [`QueuedWorkItemCallback`]:
//! `Fn(&QueuedWorkItem, &mut QueuedWork<'_>) -> ScheduledTaskResult`, at `PASSIVE_LEVEL`, never
//! two at a time for one Module. As in C DMF only `Success` and `Fail` are meaningful; the result
//! is traced, not retried.
//!
//! ## Remarks
//!
//! - Parameters longer than `buffer_size` are `STATUS_BUFFER_TOO_SMALL` (C DMF's check); no free
//!   buffer without look-aside is `STATUS_INSUFFICIENT_RESOURCES`.
//! - Close **flushes**: every call enqueued before close began still runs (and its waiter is
//!   released) before close returns; new calls fail with `STATUS_INVALID_DEVICE_STATE`. No work
//!   item, buffer or reference outlives the close.
//! - C DMF builds this Module from a BufferQueue and a ScheduledTask child; here it owns one work
//!   item and its queue directly, because a ScheduledTask implements WDF callbacks and so could not
//!   be the child of a dynamic Module (the framework refuses WDF callbacks in dynamic trees).
//! - Open option `OPEN_Create`, DISPATCH lock, no WDF callbacks: it can be created dynamically.
//! - **Needs a device.** Its work item is a child of the Module's device (the `ParentObject` of
//!   `WdfWorkItemCreate`); a Module without one (a dynamic Module created without a device-bound
//!   parent) fails to open with `STATUS_INVALID_DEVICE_STATE`, as C DMF's work item creation
//!   fails for it.
//!
//! ## Category
//!
//! Task Execution.
//!
//! # Example
//!
//! ```
//! extern crate alloc;
//! use alloc::sync::Arc;
//! use dmf_core::sync::{LockKind, ModuleLock};
//! use dmf_core::module::{CollectionConfig, ModuleCollection, ModuleInit};
//! use dmf_core::NtStatus;
//! use dmf_modules::queued_work_item::{QueuedWorkItem, QueuedWorkItemConfig};
//! use dmf_modules::scheduled_task::ScheduledTaskResult;
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! // Its work item is a child of its device: the Module's parent is a device's (empty)
//! // collection, on a device of the simulator.
//! let (_node, device) = dmf_core::platform::simulator::plug_in_device(&machine, "example")?;
//! let config = CollectionConfig { device: Some(device), ..CollectionConfig::default() };
//! let parent = ModuleCollection::create(ModuleInit::new(), config)?;
//! let seen = Arc::new(ModuleLock::new(LockKind::Spin, Vec::new())?);
//! let log = Arc::clone(&seen);
//! let work = QueuedWorkItem::with(QueuedWorkItemConfig {
//!     callback: Arc::new(move |_module: &QueuedWorkItem, call: &mut dmf_modules::queued_work_item::QueuedWork<'_>| {
//!         log.lock().push(call.buffer()[0]);
//!         if call.buffer()[0] == 3 {
//!             call.status_set(NtStatus::DEVICE_BUSY);
//!         }
//!         ScheduledTaskResult::Success
//!     }),
//!     buffer_count: 4,
//!     buffer_size: 8,
//!     enable_look_aside: false,
//! })
//! .create(&parent)?;
//! work.enqueue(&[1])?;
//! work.enqueue(&[2])?;
//! assert_eq!(work.enqueue_and_wait(&[3]), Err(NtStatus::DEVICE_BUSY));
//! assert_eq!(*seen.lock(), [1, 2, 3]);
//! work.delete();
//! assert!(machine.pool().outstanding().is_empty());
//! # Ok::<(), NtStatus>(())
//! ```

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicI32, Ordering};

use dmf_core::fallible::{try_arc, try_vec_with_capacity, VecExt};
use dmf_core::module::{Dispatched, ModuleCallbacks};
use dmf_core::platform::contract::{
    EventKind, PlatformEvent, PlatformPool, PlatformTrace, PlatformWorkItem, PoolTag, TraceLevel,
};
use dmf_core::platform::{Event, Pool, PoolBuffer, Trace, WorkItem};
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

use crate::back_ref::BackRef;
use crate::scheduled_task::ScheduledTaskResult;

/// Pool tag of the parameter buffers (`'QwmD'` in C notation).
pub const QUEUED_WORK_ITEM_POOL_TAG: PoolTag = PoolTag(*b"DmwQ");

/// `EVT_DMF_QueuedWorkItem_Callback`: one call per enqueue, with that call's parameters.
pub type QueuedWorkItemCallback =
    Arc<dyn Fn(&QueuedWorkItem, &mut QueuedWork<'_>) -> ScheduledTaskResult + Send + Sync>;

/// `DMF_CONFIG_QueuedWorkItem`.
#[derive(Clone)]
pub struct QueuedWorkItemConfig {
    /// `EvtQueuedWorkitemFunction`.
    pub callback: QueuedWorkItemCallback,
    /// Parameter buffers preallocated at open.
    pub buffer_count: u32,
    /// Size of each parameter buffer (the largest `enqueue` argument).
    pub buffer_size: u32,
    /// Allocate another buffer when all are in use (instead of `STATUS_INSUFFICIENT_RESOURCES`).
    pub enable_look_aside: bool,
}

impl core::fmt::Debug for QueuedWorkItemConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("QueuedWorkItemConfig")
            .field("buffer_count", &self.buffer_count)
            .field("buffer_size", &self.buffer_size)
            .field("enable_look_aside", &self.enable_look_aside)
            .finish_non_exhaustive()
    }
}

/// One queued call as the callback sees it: the caller's parameters and the status that
/// `enqueue_and_wait` will return.
#[derive(Debug)]
pub struct QueuedWork<'a> {
    buffer: &'a mut [u8],
    status: NtStatus,
}

impl QueuedWork<'_> {
    /// The parameters the caller enqueued (`ClientBuffer`), exactly as long as they were.
    #[must_use]
    pub fn buffer(&self) -> &[u8] {
        self.buffer
    }

    /// The parameters, writable (the buffer is the Module's own copy).
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        self.buffer
    }

    /// `DMF_QueuedWorkItem_StatusSet`: what `enqueue_and_wait` returns (default `STATUS_SUCCESS`).
    pub fn status_set(&mut self, status: NtStatus) {
        self.status = status;
    }

    /// The status set so far.
    #[must_use]
    pub fn status(&self) -> NtStatus {
        self.status
    }
}

/// Work that runs exactly once per enqueue, in order, with per-call data. See the
/// [module documentation](self).
#[dmf_module(crate = dmf_core, config = QueuedWorkItemConfig, context = Context, open = Create, lock = Dispatch)]
pub struct QueuedWorkItem;

#[derive(Default)]
struct Context {
    shared: Option<Arc<Shared>>,
}

/// The waiter of an `enqueue_and_wait` call.
struct Waiter {
    done: Event,
    status: AtomicI32,
}

struct Entry {
    buffer: PoolBuffer,
    len: usize,
    waiter: Option<Arc<Waiter>>,
}

#[derive(Default)]
struct Queue {
    free: Vec<PoolBuffer>,
    pending: VecDeque<Entry>,
    /// A drain loop is running (one at a time: in order, never concurrently).
    draining: bool,
    /// Buffers in existence (free + pending + in the callback).
    allocated: usize,
}

/// What the Module, its work item and its callbacks share; lives from open to close.
struct Shared {
    handle: QueuedWorkItem,
    callback: QueuedWorkItemCallback,
    buffer_count: usize,
    buffer_size: usize,
    look_aside: bool,
    queue: ModuleLock<Queue>,
    work_item: WorkItem,
}

fn allocate(size: usize) -> NtResult<PoolBuffer> {
    Pool::allocate(QUEUED_WORK_ITEM_POOL_TAG, size.max(1))
}

impl Shared {
    fn create(module: &Dispatched<'_, QueuedWorkItem>) -> NtResult<Arc<Shared>> {
        let config = module.config();
        let buffer_count =
            usize::try_from(config.buffer_count).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let buffer_size =
            usize::try_from(config.buffer_size).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        if buffer_count == 0 && !config.enable_look_aside {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        // Room for every buffer the Module owns: giving one back never allocates.
        let mut free = try_vec_with_capacity(buffer_count)?;
        for _ in 0..buffer_count {
            free.try_push(allocate(buffer_size)?)?;
        }
        let queue = ModuleLock::new(
            LockKind::Spin,
            Queue {
                free,
                allocated: buffer_count,
                ..Queue::default()
            },
        )?;
        let device = module.require_device()?;
        let handle = module.handle()?;
        let back = BackRef::<Shared>::new()?;
        let work_item = WorkItem::new(device, module.name(), {
            let back = Arc::clone(&back);
            move || {
                if let Some(shared) = back.upgrade() {
                    shared.drain();
                }
            }
        })?;
        let shared = try_arc(Shared {
            handle,
            callback: Arc::clone(&config.callback),
            buffer_count,
            buffer_size,
            look_aside: config.enable_look_aside,
            queue,
            work_item,
        })?;
        back.set(&shared);
        Ok(shared)
    }

    /// Runs queued calls one by one until the queue is empty. Only one drain runs at a time, so
    /// calls run in enqueue order and never concurrently.
    fn drain(&self) {
        {
            let mut queue = self.queue.lock();
            if queue.draining {
                return;
            }
            queue.draining = true;
        }
        loop {
            let entry = {
                let mut queue = self.queue.lock();
                if let Some(entry) = queue.pending.pop_front() {
                    entry
                } else {
                    queue.draining = false;
                    return;
                }
            };
            let Entry {
                mut buffer,
                len,
                waiter,
            } = entry;
            let mut call = QueuedWork {
                buffer: &mut buffer.as_mut()[..len],
                status: NtStatus::SUCCESS,
            };
            let result = (self.callback)(&self.handle, &mut call);
            let status = call.status;
            if !matches!(
                result,
                ScheduledTaskResult::Success | ScheduledTaskResult::Fail
            ) {
                <Trace as PlatformTrace>::trace(
                    TraceLevel::Warning,
                    "QueuedWorkItem",
                    format_args!("callback returned {result:?}; only Success/Fail are meaningful"),
                );
            }
            if let Some(waiter) = waiter {
                waiter.status.store(status.to_raw(), Ordering::SeqCst);
                waiter.done.set();
            }
            let mut queue = self.queue.lock();
            if queue.allocated > self.buffer_count {
                // A look-aside buffer: give it back to the pool (outside the lock).
                queue.allocated -= 1;
                drop(queue);
                drop(buffer);
            } else if queue.free.try_push(buffer).is_err() {
                // Not reached: `free` has room for all `buffer_count` buffers. Were it refused,
                // the buffer was freed and the Module owns one less.
                queue.allocated -= 1;
            }
        }
    }

    fn enqueue(&self, data: &[u8], waiter: Option<Arc<Waiter>>) -> NtResult<()> {
        if data.len() > self.buffer_size {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        let taken = {
            let mut queue = self.queue.lock();
            let taken = queue.free.pop();
            if taken.is_none() && self.look_aside {
                queue.allocated += 1;
            }
            taken
        };
        let look_aside = taken.is_none();
        let mut buffer = match taken {
            Some(buffer) => buffer,
            None if self.look_aside => allocate(self.buffer_size).inspect_err(|_| {
                self.queue.lock().allocated -= 1;
            })?,
            None => return Err(NtStatus::INSUFFICIENT_RESOURCES),
        };
        buffer.as_mut()[..data.len()].copy_from_slice(data);
        let mut queue = self.queue.lock();
        if queue.pending.try_reserve(1).is_err() {
            if look_aside {
                // Freed (outside the lock), as the drain loop frees a look-aside buffer.
                queue.allocated -= 1;
                drop(queue);
                drop(buffer);
            } else if queue.free.try_push(buffer).is_err() {
                // Not reached: the buffer came out of `free`, which keeps its room.
                queue.allocated -= 1;
            }
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        #[allow(clippy::disallowed_methods, reason = "capacity reserved above")]
        queue.pending.push_back(Entry {
            buffer,
            len: data.len(),
            waiter,
        });
        if !queue.draining {
            self.work_item.enqueue();
        }
        Ok(())
    }

    /// Waits for queued calls; runs what is still queued on this thread (close, shutdown).
    fn flush(&self) {
        self.work_item.flush();
        let left = !self.queue.lock().pending.is_empty();
        if left {
            self.drain();
        }
    }
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for QueuedWorkItem {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let shared = Shared::create(module)?;
        module.lock().shared = Some(shared);
        Ok(())
    }

    fn close(module: &Dispatched<'_, Self>) {
        let shared = module.lock().shared.take();
        if let Some(shared) = shared {
            // INVARIANT: no Method runs any more, so the queue only shrinks from here on.
            shared.flush();
        }
    }
}

impl QueuedWorkItem {
    /// `DMF_QueuedWorkItem_Enqueue` (≤ DISPATCH_LEVEL): copies `parameters` and queues one call of
    /// the callback with them.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open; `STATUS_BUFFER_TOO_SMALL` if `parameters` is
    /// longer than `buffer_size`; `STATUS_INSUFFICIENT_RESOURCES` if no buffer is free.
    pub fn enqueue(&self, parameters: &[u8]) -> NtResult<()> {
        let module = self.enter()?;
        let shared = module.lock().shared.clone();
        shared
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?
            .enqueue(parameters, None)
    }

    /// `DMF_QueuedWorkItem_EnqueueAndWait` (PASSIVE_LEVEL): queues one call and waits until it
    /// ran; returns the status its callback set with [`QueuedWork::status_set`] (`Err` unless
    /// `NT_SUCCESS`).
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Self::enqueue) (`STATUS_INSUFFICIENT_RESOURCES` also if the wait's event
    /// cannot be created), or the status the callback set.
    pub fn enqueue_and_wait(&self, parameters: &[u8]) -> NtResult<()> {
        let module = self.enter()?;
        let shared = module
            .lock()
            .shared
            .clone()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let waiter = try_arc(Waiter {
            done: Event::new(EventKind::Notification, false)?,
            status: AtomicI32::new(NtStatus::SUCCESS.to_raw()),
        })?;
        shared.enqueue(parameters, Some(Arc::clone(&waiter)))?;
        drop(shared);
        let _ = waiter.done.wait(None);
        drop(module);
        let status = NtStatus::from_raw(waiter.status.load(Ordering::SeqCst));
        if status.is_success() {
            Ok(())
        } else {
            Err(status)
        }
    }

    /// `DMF_QueuedWorkItem_Flush` (PASSIVE_LEVEL): waits until every call queued so far ran.
    /// From inside the callback it returns at once.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn flush(&self) -> NtResult<()> {
        let module = self.enter()?;
        let shared = module
            .lock()
            .shared
            .clone()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        shared.flush_queued();
        drop(module);
        Ok(())
    }
}

impl Shared {
    fn flush_queued(&self) {
        self.work_item.flush();
    }
}
