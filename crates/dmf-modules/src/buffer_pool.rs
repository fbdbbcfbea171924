//! # BufferPool
//!
//! ## Summary
//!
//! A pool of fixed-size buffers (C DMF: `Dmf_BufferPool.c`). A **Source** pool allocates
//! `buffer_count` buffers of `buffer_size` bytes, each with a client context of
//! `buffer_context_size` bytes, when it opens; clients [`get`](BufferPool::get) buffers from it
//! and [`put`](BufferPool::put) them back. A **Sink** pool starts empty and holds buffers that came
//! from a Source pool — the building block of producer/consumer queues
//! ([`BufferQueue`](crate::buffer_queue::BufferQueue)). A buffer in a Sink pool can carry a timeout
//! ([`put_in_sink_with_timer`](BufferPool::put_in_sink_with_timer)): when it expires the buffer
//! is removed and handed to the client's callback.
//!
//! A buffer is a [`Buffer`] value. It is **moved** into a pool by `put` and out of it by `get`, so
//! a buffer is in at most one pool at a time and nobody touches a buffer that a pool holds — the
//! compiler enforces what C DMF checks with signatures at run time:
//!
//! ```compile_fail
//! # fn f(pool: &dmf_modules::buffer_pool::BufferPool) -> dmf_core::NtResult<()> {
//! let buffer = pool.get()?;
//! pool.put(buffer)?;
//! pool.put(buffer)?; // error[E0382]: use of moved value: `buffer`
//! # Ok(()) }
//! ```
//!
//! ```compile_fail
//! # fn f(pool: &dmf_modules::buffer_pool::BufferPool) -> dmf_core::NtResult<()> {
//! let mut buffer = pool.get()?;
//! let data = buffer.data_mut();
//! pool.put(buffer)?;
//! data[0] = 1; // error[E0505]: cannot move out of `buffer` because it is borrowed
//! # Ok(()) }
//! ```
//!
//! ```compile_fail
//! # fn f(pool: &dmf_modules::buffer_pool::BufferPool) -> dmf_core::NtResult<()> {
//! let buffer = pool.get()?;
//! let copy = buffer.clone(); // error[E0599]: a Buffer cannot be duplicated
//! # Ok(()) }
//! ```
//!
//! What the types cannot see is an `NtStatus`: a buffer of one Source pool put into another
//! Source pool (`STATUS_INVALID_PARAMETER`), a timed put into a Source pool
//! (`STATUS_INVALID_DEVICE_REQUEST`), and an overrun (below).
//!
//! ## Configuration
//!
//! [`BufferPoolConfig`] (`DMF_CONFIG_BufferPool`): `mode` — [`BufferPoolMode::Sink`] or
//! [`BufferPoolMode::Source`] with [`BufferPoolSourceSettings`] (`BufferCount`, `BufferSize`,
//! `BufferContextSize`, `EnableLookAside`, `CreateWithTimer`, and the pool tag — the memory is
//! always non-paged, the only kind the platform pool has).
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`BufferPool::get`] | `DMF_BufferPool_Get` | ≤ DISPATCH |
//! | [`BufferPool::put`] | `DMF_BufferPool_Put` | ≤ DISPATCH |
//! | [`BufferPool::put_at_head`] | `DMF_BufferPool_PutAtHead` | ≤ DISPATCH |
//! | [`BufferPool::put_in_sink_with_timer`] | `DMF_BufferPool_PutInSinkWithTimer` | ≤ DISPATCH |
//! | [`BufferPool::count`] | `DMF_BufferPool_Count` | ≤ DISPATCH |
//! | [`BufferPool::context_get`] | `DMF_BufferPool_ContextGet` | ≤ DISPATCH |
//! | [`BufferPool::enumerate`] | `DMF_BufferPool_Enumerate` | ≤ DISPATCH |
//! | [`BufferPool::parameters_get`] (and [`Buffer::parameters`]) | `DMF_BufferPool_ParametersGet` | ≤ DISPATCH |
//! | [`BufferPool::get`] + the [`Buffer`] as `&[u8]` | `DMF_BufferPool_GetWithMemory`, `DMF_BufferPool_GetWithMemoryDescriptor` (merged, see the remarks) | ≤ DISPATCH |
//!
//! (PASSIVE_LEVEL only when the client created the pool with `passive_level(true)`.) Every Method
//! fails with `STATUS_INVALID_DEVICE_STATE` once the Module has begun to close; a `put` that fails
//! hands the buffer back in the [`PutError`]. On a Source pool `get`, `put` and `put_at_head` are
//! **lock-free** (see the remarks).
//!
//! ## Callbacks
//!
//! - [`BufferTimerCallback`] (`EVT_DMF_BufferPool_TimerCallback`): receives a timed buffer whose
//!   timeout expired; the client owns it again. Runs at DISPATCH_LEVEL (PASSIVE_LEVEL for a
//!   passive-level pool), outside the pool's lock.
//! - The `enumerate` callback (`EVT_DMF_BufferPool_Enumeration`): sees each buffer and returns an
//!   [`EnumerationDisposition`]. It runs **with the pool's lock held**: it must not call back into
//!   the same pool (the verifier reports the recursive acquire).
//!
//! ## Remarks
//!
//! - **Source pools are lock-free.** A Source pool keeps its buffers in a
//!   [`FreeList`]: `get` and `put` are one compare-exchange each,
//!   with no lock and no rundown guard — they are *lock-free Methods* (ARCHITECTURE.md): they
//!   check that the Module is open, and the Module's close shuts the list in the same step that
//!   drains it, so a `get` or `put` racing with close either completes before it (a buffer it put
//!   is freed by close) or is refused with `STATUS_INVALID_DEVICE_STATE`. `enumerate` and
//!   `count` take the list exclusively under the Module's lock; a `get` or `put` meanwhile waits
//!   for that lock. Measured against `crossbeam_queue::ArrayQueue` in `benches/buffers.rs`.
//! - **Source order.** A Source pool hands out the buffer put back last first (LIFO, as the
//!   kernel's lookaside lists do: that buffer is the one still in the cache); its buffers are
//!   interchangeable, so `put` and `put_at_head` are the same there. A Sink pool is a FIFO with
//!   `put_at_head`, as in C DMF.
//! - **A `Buffer` is one pointer.** Its header (pool block, sizes, owning pool, slot in the free
//!   list) is a small allocation made with the buffer, so buffers move between pools and clients
//!   by copying one word.
//! - **Layout and sentinels.** A buffer is one tagged pool allocation:
//!   `| data | sentinel | context | sentinel |`. The client sees exactly `data` and `context`, so
//!   safe Rust cannot overrun them; the sentinels catch what safe Rust cannot see (DMA, unsafe
//!   code, [`Buffer::simulate_overrun`] in tests). Both are checked on every `put` and `get`: a
//!   broken one is `STATUS_DATA_ERROR` and an error trace naming the pool and the region. `get`
//!   frees such a buffer; `put` hands it back.
//! - **Lookaside.** With `enable_look_aside`, `get` on an empty Source pool allocates an
//!   *additional* buffer, and `put` of an additional buffer into its Source pool frees it, so the
//!   list never holds more than `buffer_count` buffers.
//! - **Timers.** C DMF gives every buffer its own `WDFTIMER`; here a Sink pool has **one** timer,
//!   programmed for the earliest deadline of the buffers it holds. The per-buffer timeouts, the
//!   enumerate dispositions and the callback contract are C DMF's; what changes is that no timer
//!   object is created per buffer and the expiry-versus-`get`/`enumerate` race is decided under
//!   the pool's lock (whoever removes the buffer first owns it; an expired buffer is skipped by
//!   `enumerate`, as C DMF skips a buffer whose timer it cannot stop). A Source pool must set
//!   `create_with_timer` for its buffers to be put with a timer (C DMF's rule).
//! - **The timer needs a device.** It is a child of the Module's device (the `ParentObject` of
//!   `WdfTimerCreate`). A Sink pool without a device (a dynamic Module created without a
//!   device-bound parent) opens without a timer, and a timed put into it is
//!   `STATUS_INVALID_DEVICE_STATE` — where C DMF, which creates a buffer's timer at its first
//!   timed put, fails that `WdfTimerCreate`. Untimed puts and gets need no device.
//! - **Close** stops the timer and waits for its callback, then frees every buffer the pool holds
//!   (the expiry callbacks of buffers still listed are not called, as in C DMF). Buffers a client
//!   holds are its own: dropping a [`Buffer`] frees its memory (it does not return to its pool).
//! - **A buffer is its own memory object** (`GetWithMemory`, `GetWithMemoryDescriptor`). C DMF
//!   hands out a `WDFMEMORY` or a `WDF_MEMORY_DESCRIPTOR` with a buffer because C's request
//!   formatting takes those, not a pointer. Here the target Modules' request description
//!   (`SendRequest`) and the platform's request formatting take the request buffer as a borrowed
//!   `&[u8]`, and a [`Buffer`] is exactly that (`AsRef<[u8]>`: its data, `BufferSize` bytes,
//!   never the sentinel or the context); an output comes back as bytes the client copies into
//!   `data_mut()` (`AsMut<[u8]>`). So both Methods are `get`: a separate memory handle would be
//!   a second owner of the same bytes that could outlive the `Buffer` moving on to another pool,
//!   while the borrow ties the request buffer to the buffer's owner for the request's setup.
//!   `ParametersGet`'s memory outputs are the same view; its sizes are [`BufferParameters`].
//! - Open option `OPEN_Create`, `DISPATCH_MAXIMUM` lock, no WDF callback: it can be created
//!   dynamically. A Source pool's free list is its shared state (`shared = …`), allocated with
//!   the Module; its buffers are allocated at open.
//!
//! ## Category
//!
//! Buffers.
//!
//! # Example
//!
//! ```
//! use dmf_core::module::NoParent;
//! use dmf_modules::buffer_pool::{BufferPool, BufferPoolConfig, BufferPoolSourceSettings};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! let source = BufferPool::with(BufferPoolConfig::source(BufferPoolSourceSettings::new(2, 64)))
//!     .create(&NoParent)?;
//! let sink = BufferPool::with(BufferPoolConfig::sink()).create(&NoParent)?;
//!
//! let mut buffer = source.get()?;
//! buffer.data_mut()[..5].copy_from_slice(b"hello");
//! sink.put(buffer)?; // moved: the sink owns it now
//! assert_eq!((source.count()?, sink.count()?), (1, 1));
//!
//! let buffer = sink.get()?;
//! assert_eq!(&buffer.data()[..5], b"hello");
//! // The buffer is the memory a request is formatted over (`DMF_BufferPool_GetWithMemory`):
//! let _write = dmf_modules::request_target::SendRequest::write(buffer.as_ref());
//! assert_eq!(source.parameters_get(&buffer)?.buffer_size, 64);
//! source.put(buffer)?;
//! drop((sink, source)); // close: every buffer freed
//! assert!(machine.pool().outstanding().is_empty());
//! # Ok::<(), dmf_core::NtStatus>(())
//! ```

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use dmf_core::fallible::{try_box, VecExt};
use dmf_core::free_list::{FreeList, Pop, Pushed, SlotKey, Visit};
use dmf_core::module::{Dispatched, ModuleCallbacks, ModuleShared};
use dmf_core::platform::contract::{
    PlatformClock, PlatformPool, PlatformTimer, PlatformTrace, PoolTag, TimerExecutionLevel,
    TraceLevel,
};
use dmf_core::platform::{Clock, Pool, PoolBuffer, Timer, Trace};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

/// The bytes written after the data and after the context of every buffer.
const SENTINEL: [u8; 4] = [0xD3, 0x5E, 0x17, 0xA1];
const SENTINEL_LEN: usize = SENTINEL.len();
/// The trace source of this Module.
const TRACE_SOURCE: &str = "BufferPool";

/// Pool ids: a buffer remembers the Source pool that allocated it.
static NEXT_POOL_ID: AtomicU32 = AtomicU32::new(1);

/// `EVT_DMF_BufferPool_TimerCallback`: a timed buffer's timeout expired; the client owns the
/// buffer again (typically it puts it back into its Source pool). Shared, so one callback can be
/// passed to many `put_in_sink_with_timer` calls without an allocation per call.
pub type BufferTimerCallback = Arc<dyn Fn(Buffer) + Send + Sync>;

/// `BufferPool_SourceSettings`: what a Source pool allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferPoolSourceSettings {
    /// `BufferCount`: buffers allocated at open (0 is allowed with lookaside).
    pub buffer_count: u32,
    /// `BufferSize`: bytes of client data per buffer (≥ 1).
    pub buffer_size: u32,
    /// `BufferContextSize`: bytes of client context per buffer (0 for none).
    pub buffer_context_size: u32,
    /// `EnableLookAside`: `get` on an empty pool allocates an additional buffer; `put` of an
    /// additional buffer frees it.
    pub enable_look_aside: bool,
    /// `CreateWithTimer`: the buffers may be put into a Sink pool with a timer.
    pub create_with_timer: bool,
    /// The pool tag of every buffer allocation (C DMF uses the Module's tag).
    pub pool_tag: PoolTag,
}

impl BufferPoolSourceSettings {
    /// The default pool tag, `'BfmD'` as C writes it.
    pub const DEFAULT_TAG: PoolTag = PoolTag(*b"DmfB");

    /// `buffer_count` buffers of `buffer_size` bytes, no context, no lookaside, no timer.
    pub const fn new(buffer_count: u32, buffer_size: u32) -> Self {
        BufferPoolSourceSettings {
            buffer_count,
            buffer_size,
            buffer_context_size: 0,
            enable_look_aside: false,
            create_with_timer: false,
            pool_tag: Self::DEFAULT_TAG,
        }
    }
}

/// `BufferPool_ModeType` with its settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferPoolMode {
    /// `BufferPool_Mode_Source`: allocates and owns its buffers.
    Source(BufferPoolSourceSettings),
    /// `BufferPool_Mode_Sink`: starts empty; holds buffers that came from Source pools.
    Sink,
}

/// `DMF_CONFIG_BufferPool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferPoolConfig {
    /// Source or Sink.
    pub mode: BufferPoolMode,
}

impl BufferPoolConfig {
    /// A Source pool with `settings`.
    pub const fn source(settings: BufferPoolSourceSettings) -> Self {
        BufferPoolConfig {
            mode: BufferPoolMode::Source(settings),
        }
    }

    /// A Sink pool.
    pub const fn sink() -> Self {
        BufferPoolConfig {
            mode: BufferPoolMode::Sink,
        }
    }
}

/// `BufferPool_EnumerationDispositionType`: what `enumerate` does after its callback saw a buffer.
/// The timer variants act on a timed buffer and are plain continue/stop for the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnumerationDisposition {
    /// `ContinueEnumeration`.
    Continue,
    /// `StopEnumeration`.
    Stop,
    /// `RemoveAndStopEnumeration`: the buffer leaves the pool and is returned by `enumerate`.
    RemoveAndStop,
    /// `StopTimerAndStopEnumeration`: the buffer stays, without a timeout.
    StopTimerAndStop,
    /// `StopTimerAndContinueEnumeration`.
    StopTimerAndContinue,
    /// `ResetTimerAndStopEnumeration`: the timeout starts again with its full period.
    ResetTimerAndStop,
    /// `ResetTimerAndContinueEnumeration`.
    ResetTimerAndContinue,
}

/// Which sentinel region [`Buffer::simulate_overrun`] writes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BufferRegion {
    /// Past the end of the data (into the data sentinel).
    Data,
    /// Past the end of the context (into the context sentinel).
    Context,
}

const FLAG_ADDITIONAL: u8 = 1;
const FLAG_TIMER: u8 = 2;

/// One buffer of a Source pool: client data and client context in one tagged pool allocation,
/// followed each by a sentinel. Owned by exactly one party at a time (a pool or a client); not
/// `Clone`. Dropping it frees its memory.
///
/// A `Buffer` is one pointer: its header (the pool block, its sizes, its owner, its slot key)
/// is a small allocation of its own made with the buffer, so moving a buffer in and out of
/// pools — the hot path of every producer/consumer queue — moves a word, not a struct.
pub struct Buffer(Box<Header>);

/// What a [`Buffer`] points to.
struct Header {
    block: PoolBuffer,
    /// The id of the Source pool that allocated it.
    owner: u32,
    data_len: u32,
    context_len: u32,
    flags: u8,
    /// The key of its home slot in its Source pool's free list (`None` for an additional
    /// buffer). Dropping the buffer drops it: the pool has one buffer less from then on.
    key: Option<SlotKey>,
}

impl core::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let h = self.h();
        f.debug_struct("Buffer")
            .field("owner", &h.owner)
            .field("data_len", &h.data_len)
            .field("context_len", &h.context_len)
            .field("additional", &self.is_additional())
            .finish_non_exhaustive()
    }
}

impl Buffer {
    #[inline]
    fn h(&self) -> &Header {
        &self.0
    }

    #[inline]
    fn h_mut(&mut self) -> &mut Header {
        &mut self.0
    }

    fn data_end(&self) -> usize {
        self.h().data_len as usize
    }

    fn context_start(&self) -> usize {
        self.data_end() + SENTINEL_LEN
    }

    fn context_end(&self) -> usize {
        self.context_start() + self.h().context_len as usize
    }

    /// The client data (`BufferSize` bytes).
    pub fn data(&self) -> &[u8] {
        &self.h().block.as_ref()[..self.data_end()]
    }

    /// The client data, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let end = self.data_end();
        &mut self.h_mut().block.as_mut()[..end]
    }

    /// The client context (`BufferContextSize` bytes; empty without one).
    pub fn context(&self) -> &[u8] {
        &self.h().block.as_ref()[self.context_start()..self.context_end()]
    }

    /// The client context, writable (`DMF_BufferPool_ContextGet` without the Module).
    pub fn context_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.context_start(), self.context_end());
        &mut self.h_mut().block.as_mut()[start..end]
    }

    /// Data and context at once, both writable.
    pub fn data_and_context_mut(&mut self) -> (&mut [u8], &mut [u8]) {
        let (data_end, start, end) = (self.data_end(), self.context_start(), self.context_end());
        let (data, rest) = self.h_mut().block.as_mut().split_at_mut(data_end);
        (data, &mut rest[start - data_end..end - data_end])
    }

    /// The sizes of the data and the context (`DMF_BufferPool_ParametersGet` without the
    /// Module).
    pub fn parameters(&self) -> BufferParameters {
        BufferParameters {
            buffer_size: self.h().data_len,
            buffer_context_size: self.h().context_len,
        }
    }

    /// `true` for a buffer a lookaside Source pool allocated beyond its `buffer_count`.
    pub fn is_additional(&self) -> bool {
        self.h().flags & FLAG_ADDITIONAL != 0
    }

    /// Writes `bytes` just past the end of the data or context region, as a DMA engine or unsafe
    /// code overrunning the buffer would. A test hook: the next `put` or `get` of this buffer
    /// reports the overrun (`STATUS_DATA_ERROR`). At most the sentinel's length is written.
    pub fn simulate_overrun(&mut self, region: BufferRegion, bytes: &[u8]) {
        let start = match region {
            BufferRegion::Data => self.data_end(),
            BufferRegion::Context => self.context_end(),
        };
        let n = bytes.len().min(SENTINEL_LEN);
        self.h_mut().block.as_mut()[start..start + n].copy_from_slice(&bytes[..n]);
    }

    /// Which sentinel is broken, if any.
    #[inline]
    fn overrun(&self) -> Option<BufferRegion> {
        let block = self.h().block.as_ref();
        let (d, c) = (self.data_end(), self.context_end());
        if block[d..d + SENTINEL_LEN] != SENTINEL {
            Some(BufferRegion::Data)
        } else if block[c..c + SENTINEL_LEN] != SENTINEL {
            Some(BufferRegion::Context)
        } else {
            None
        }
    }

    /// Allocates one buffer for Source pool `owner`, for slot `key` (`None`: additional).
    fn allocate(
        owner: u32,
        settings: &BufferPoolSourceSettings,
        flags: u8,
        key: Option<SlotKey>,
    ) -> NtResult<Buffer> {
        let data_len = settings.buffer_size as usize;
        let context_len = settings.buffer_context_size as usize;
        let total = data_len
            .checked_add(context_len)
            .and_then(|n| n.checked_add(2 * SENTINEL_LEN))
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        let mut block = Pool::allocate(settings.pool_tag, total)?;
        let bytes = block.as_mut();
        bytes[data_len..data_len + SENTINEL_LEN].copy_from_slice(&SENTINEL);
        bytes[total - SENTINEL_LEN..].copy_from_slice(&SENTINEL);
        let header = Header {
            block,
            owner,
            data_len: settings.buffer_size,
            context_len: settings.buffer_context_size,
            flags,
            key,
        };
        Ok(Buffer(try_box(header)?))
    }
}

/// The data is the buffer's memory: a `Buffer` is what C DMF's `DMF_BufferPool_GetWithMemory`
/// returns as a `WDFMEMORY` and `DMF_BufferPool_GetWithMemoryDescriptor` as a
/// `WDF_MEMORY_DESCRIPTOR`, a view of exactly `BufferSize` bytes (never the sentinel or the
/// context), so a request is formatted over it directly:
/// `SendRequest::write(buffer.as_ref())`.
impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        self.data()
    }
}

/// The data, writable (where a request's output is copied to).
impl AsMut<[u8]> for Buffer {
    fn as_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
}

/// What `DMF_BufferPool_ParametersGet` reports of a buffer besides its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufferParameters {
    /// `ClientBufferSize`: bytes of client data.
    pub buffer_size: u32,
    /// `ClientBufferContextSize`: bytes of client context.
    pub buffer_context_size: u32,
}

/// A `put` that failed: the status and the buffer, handed back to the caller (who may retry,
/// put it elsewhere, or drop it, which frees it). `?` converts it to its [`NtStatus`], dropping
/// the buffer.
pub struct PutError {
    status: NtStatus,
    buffer: Buffer,
}

impl PutError {
    pub(crate) fn new(status: NtStatus, buffer: Buffer) -> Self {
        PutError { status, buffer }
    }

    /// Why the put failed.
    pub fn status(&self) -> NtStatus {
        self.status
    }

    /// The buffer, back in the caller's hands.
    pub fn into_buffer(self) -> Buffer {
        self.buffer
    }
}

impl core::fmt::Debug for PutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PutError")
            .field("status", &self.status)
            .field("buffer", &self.buffer)
            .finish()
    }
}

impl From<PutError> for NtStatus {
    fn from(error: PutError) -> NtStatus {
        error.status
    }
}

/// A timed buffer's timeout.
struct Timeout {
    deadline: Duration,
    period: Duration,
    callback: BufferTimerCallback,
}

struct Entry {
    buffer: Buffer,
    timeout: Option<Timeout>,
}

/// The pool's lock-free state, kept from create to destroy.
struct Shared {
    /// The pool's id: the buffers of a Source pool carry it.
    id: u32,
    /// A Source pool's settings (`None` for a Sink pool).
    settings: Option<BufferPoolSourceSettings>,
    /// A Source pool's buffers (`None` for a Sink pool). Closed while the Module is.
    free: Option<FreeList<Buffer>>,
}

impl ModuleShared<BufferPoolConfig> for Shared {
    fn new(config: &BufferPoolConfig) -> NtResult<Self> {
        let (settings, free) = match config.mode {
            BufferPoolMode::Source(settings) => {
                let free = FreeList::with_capacity(settings.buffer_count as usize)?;
                // Closed until the Module opens.
                free.exclusive()
                    .ok_or(NtStatus::INTERNAL_ERROR)?
                    .set_closed(true);
                (Some(settings), Some(free))
            }
            BufferPoolMode::Sink => (None, None),
        };
        Ok(Shared {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            settings,
            free,
        })
    }
}

/// The pool's private state, under its lock.
#[derive(Default)]
struct Context {
    /// A Sink pool's buffers, head first (`get` takes the head).
    list: VecDeque<Entry>,
    /// A Source pool's slots without a buffer while it is closed (their buffers were freed at
    /// close); open allocates a buffer for each.
    spare_keys: Vec<SlotKey>,
    /// A Sink pool's timer (from open to close).
    timer: Option<Timer>,
    /// The deadline the timer is programmed for.
    armed: Option<Duration>,
}

impl Context {
    /// Programs the timer for `deadline` unless it already fires no later.
    fn arm(&mut self, deadline: Duration, now: Duration) {
        if self.armed.is_some_and(|armed| armed <= deadline) {
            return;
        }
        if let Some(timer) = &self.timer {
            timer.start(deadline.saturating_sub(now));
            self.armed = Some(deadline);
        }
    }

    /// Programs the timer for the earliest deadline left (after an expiry).
    fn rearm(&mut self, now: Duration) {
        self.armed = None;
        let earliest = self
            .list
            .iter()
            .filter_map(|e| e.timeout.as_ref().map(|t| t.deadline))
            .min();
        if let Some(deadline) = earliest {
            self.arm(deadline, now);
        }
    }

    /// Removes the first buffer whose timeout has expired.
    fn take_expired(&mut self, now: Duration) -> Option<(Buffer, BufferTimerCallback)> {
        let index = self
            .list
            .iter()
            .position(|e| e.timeout.as_ref().is_some_and(|t| t.deadline <= now))?;
        let entry = self.list.remove(index)?;
        entry.timeout.map(|t| (entry.buffer, t.callback))
    }
}

/// A pool of fixed-size buffers, Source or Sink. See the [module documentation](self).
#[dmf_module(crate = dmf_core, config = BufferPoolConfig, context = Context, shared = Shared, open = Create, lock = DispatchMaximum)]
pub struct BufferPool;

fn overrun_trace(pool: u32, operation: &str, region: BufferRegion) {
    Trace::trace(
        TraceLevel::Error,
        TRACE_SOURCE,
        format_args!(
            "buffer overrun detected by {operation} on pool {pool}: the {} sentinel was \
             overwritten (STATUS_DATA_ERROR)",
            match region {
                BufferRegion::Data => "data",
                BufferRegion::Context => "context",
            }
        ),
    );
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for BufferPool {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let shared = module.shared();
        match (module.config().mode, &shared.free) {
            (BufferPoolMode::Source(settings), Some(free)) => {
                if settings.buffer_size == 0 {
                    return Err(NtStatus::INVALID_PARAMETER);
                }
                let mut ctx = module.lock();
                // Room for a key per slot, kept from open to open: the keys then move between the
                // list and `spare_keys` (here and in close) without allocating.
                let slots = settings.buffer_count as usize;
                let room = slots.saturating_sub(ctx.spare_keys.len());
                ctx.spare_keys.try_reserve_exact_nt(room)?;
                // Nobody else holds the list: Methods start only once open returns, and every
                // other exclusive holder holds the Module's lock.
                let mut list = free.exclusive().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
                // The first open mints a key per slot; a later one finds the keys that close
                // freed (a buffer a client kept across the close keeps its own).
                if let Some(minted) = free.mint() {
                    for key in minted {
                        ctx.spare_keys.try_push(key)?;
                    }
                }
                list.set_closed(false);
                let mut keys = core::mem::take(&mut ctx.spare_keys);
                let flags = if settings.create_with_timer {
                    FLAG_TIMER
                } else {
                    0
                };
                while let Some(key) = keys.pop() {
                    match Buffer::allocate(shared.id, &settings, flags, None) {
                        Ok(buffer) => {
                            // The key is this list's own (minted or drained from it).
                            let _ = list.push(key, buffer);
                        }
                        Err(status) => {
                            // Back to the state before open: closed, every slot keyless. The keys
                            // fit in the room reserved above: the pushes do not allocate.
                            list.set_closed(true);
                            let _ = keys.try_push(key);
                            for (key, _buffer) in list.drain() {
                                let _ = keys.try_push(key);
                            }
                            ctx.spare_keys = keys;
                            return Err(status);
                        }
                    }
                }
                // Empty now, with the room close needs.
                ctx.spare_keys = keys;
                Ok(())
            }
            (BufferPoolMode::Source(_), None) | (BufferPoolMode::Sink, Some(_)) => {
                Err(NtStatus::INTERNAL_ERROR)
            }
            (BufferPoolMode::Sink, None) => {
                let handle = module.handle()?;
                let level = if module.is_passive_level() {
                    TimerExecutionLevel::Passive
                } else {
                    TimerExecutionLevel::Dispatch
                };
                // The closure holds the handle; close drops the timer, which ends that cycle. The
                // timer is a child of the Module's device; without a device there is none.
                let timer = match module.device() {
                    Some(device) => Some(Timer::new(
                        device,
                        "BufferPool timer",
                        None,
                        level,
                        move || handle.timer_expired(),
                    )?),
                    None => None,
                };
                let mut ctx = module.lock();
                ctx.list = VecDeque::new();
                ctx.timer = timer;
                ctx.armed = None;
                Ok(())
            }
        }
    }

    fn close(module: &Dispatched<'_, Self>) {
        let (timer, list) = {
            let mut ctx = module.lock();
            ctx.armed = None;
            if let Some(free) = &module.shared().free {
                if let Some(mut list) = free.exclusive() {
                    // Shut in the same hold that drains: a lock-free get or put either came
                    // before (its buffer is drained or was taken) or is refused after.
                    list.set_closed(true);
                    for (key, buffer) in list.drain() {
                        // Within the room open reserved for every key (a refused key would only
                        // cost the pool that slot, like a buffer its client dropped).
                        let _ = ctx.spare_keys.try_push(key);
                        drop(buffer);
                    }
                }
            }
            (ctx.timer.take(), core::mem::take(&mut ctx.list))
        };
        if let Some(timer) = timer {
            timer.stop(true);
        }
        drop(list);
    }
}

impl BufferPool {
    /// `DMF_BufferPool_Get`: removes the buffer at the head of the pool.
    ///
    /// An empty pool is `STATUS_UNSUCCESSFUL`, except a lookaside Source pool, which allocates an
    /// additional buffer (`STATUS_INSUFFICIENT_RESOURCES` if that fails). A buffer whose sentinel
    /// was overwritten is freed and reported (`STATUS_DATA_ERROR`). Lock-free on a Source pool.
    #[inline]
    pub fn get(&self) -> NtResult<Buffer> {
        let shared = self.enter_lock_free()?;
        if let Some(free) = &shared.free {
            // The fast path: one compare-exchange and the sentinel check.
            if let Pop::Item(key, mut buffer) = free.pop() {
                buffer.h_mut().key = Some(key);
                return Self::checked(shared.id, buffer);
            }
            return self.source_get_slow(shared, free);
        }
        let module = self.enter()?;
        let entry = module.lock().list.pop_front();
        Self::checked(shared.id, entry.ok_or(NtStatus::UNSUCCESSFUL)?.buffer)
    }

    /// `buffer` unless a sentinel is broken (then it is freed and reported).
    #[inline]
    fn checked(id: u32, buffer: Buffer) -> NtResult<Buffer> {
        match buffer.overrun() {
            None => Ok(buffer),
            Some(region) => {
                overrun_trace(id, "get", region);
                Err(NtStatus::DATA_ERROR)
            }
        }
    }

    /// A Source pool's `get` when the lock-free pop found nothing: closed, empty (lookaside
    /// allocates), or held by an exclusive holder (open, close, enumerate, count) — then it waits
    /// for the Module's lock, which that holder holds, and pops under it.
    #[cold]
    fn source_get_slow(&self, shared: &Shared, free: &FreeList<Buffer>) -> NtResult<Buffer> {
        let popped = match free.pop() {
            Pop::Item(key, buffer) => Some((key, buffer)),
            Pop::Empty => None,
            Pop::Closed => return Err(NtStatus::INVALID_DEVICE_STATE),
            Pop::Busy => {
                let module = self.enter()?;
                let _ctx = module.lock();
                let mut list = free.exclusive().ok_or(NtStatus::INTERNAL_ERROR)?;
                if list.is_closed() {
                    return Err(NtStatus::INVALID_DEVICE_STATE);
                }
                list.pop()
            }
        };
        if let Some((key, mut buffer)) = popped {
            buffer.h_mut().key = Some(key);
            return Self::checked(shared.id, buffer);
        }
        match shared.settings {
            Some(settings) if settings.enable_look_aside => {
                let flags = FLAG_ADDITIONAL
                    | if settings.create_with_timer {
                        FLAG_TIMER
                    } else {
                        0
                    };
                Buffer::allocate(shared.id, &settings, flags, None)
            }
            _ => Err(NtStatus::UNSUCCESSFUL),
        }
    }

    /// `DMF_BufferPool_Put`: adds `buffer` at the tail of the pool.
    ///
    /// A Source pool accepts only its own buffers (`STATUS_INVALID_PARAMETER`) and frees an
    /// additional buffer when lookaside is on; a Sink pool accepts any Source pool's buffer. A
    /// Source pool hands out the buffer put last first (see the remarks), so there `put` and
    /// `put_at_head` are the same.
    #[inline]
    pub fn put(&self, buffer: Buffer) -> Result<(), PutError> {
        self.put_at(buffer, false)
    }

    /// `DMF_BufferPool_PutAtHead`: adds `buffer` at the head, so the next `get` returns it.
    #[inline]
    pub fn put_at_head(&self, buffer: Buffer) -> Result<(), PutError> {
        self.put_at(buffer, true)
    }

    /// `put` and `put_at_head`: lock-free into a Source pool, under the lock into a Sink pool.
    #[inline]
    fn put_at(&self, buffer: Buffer, at_head: bool) -> Result<(), PutError> {
        match self.enter_lock_free() {
            Ok(shared) => match &shared.free {
                Some(free) => self.source_put(shared.id, free, buffer),
                None => self.sink_insert(shared.id, buffer, at_head, None),
            },
            Err(status) => Err(PutError::new(status, buffer)),
        }
    }

    /// `DMF_BufferPool_PutInSinkWithTimer`: adds `buffer` at the tail of this Sink pool; unless
    /// it is removed first (`get`, `enumerate`), after `timeout` it is removed and passed to
    /// `callback`.
    ///
    /// A Source pool is `STATUS_INVALID_DEVICE_REQUEST`; a Sink pool without a timer (a Module
    /// without a device) is `STATUS_INVALID_DEVICE_STATE`; a buffer from a Source pool without
    /// `create_with_timer` is `STATUS_INVALID_PARAMETER`.
    pub fn put_in_sink_with_timer(
        &self,
        buffer: Buffer,
        timeout: Duration,
        callback: BufferTimerCallback,
    ) -> Result<(), PutError> {
        let shared = match self.enter_lock_free() {
            Ok(shared) => shared,
            Err(status) => return Err(PutError::new(status, buffer)),
        };
        if shared.free.is_some() {
            return Err(PutError::new(NtStatus::INVALID_DEVICE_REQUEST, buffer));
        }
        let timeout = Timeout {
            deadline: Duration::ZERO,
            period: timeout,
            callback,
        };
        self.sink_insert(shared.id, buffer, false, Some(timeout))
    }

    /// A Sink pool's put, under the Module's lock (rundown-guarded).
    fn sink_insert(
        &self,
        id: u32,
        buffer: Buffer,
        at_head: bool,
        timeout: Option<Timeout>,
    ) -> Result<(), PutError> {
        let fail = |status, buffer| Err(PutError { status, buffer });
        let module = match self.enter() {
            Ok(module) => module,
            Err(status) => return fail(status, buffer),
        };
        if timeout.is_some() && buffer.h().flags & FLAG_TIMER == 0 {
            return fail(NtStatus::INVALID_PARAMETER, buffer);
        }
        if let Some(region) = buffer.overrun() {
            overrun_trace(id, "put", region);
            return fail(NtStatus::DATA_ERROR, buffer);
        }
        let mut ctx = module.lock();
        if timeout.is_some() && ctx.timer.is_none() {
            drop(ctx);
            return fail(NtStatus::INVALID_DEVICE_STATE, buffer);
        }
        if ctx.list.try_reserve(1).is_err() {
            return fail(NtStatus::INSUFFICIENT_RESOURCES, buffer);
        }
        let entry = Entry {
            buffer,
            timeout: timeout.map(|t| Timeout {
                deadline: Clock::now().saturating_add(t.period),
                ..t
            }),
        };
        let deadline = entry.timeout.as_ref().map(|t| t.deadline);
        #[allow(clippy::disallowed_methods, reason = "capacity reserved above")]
        if at_head {
            ctx.list.push_front(entry);
        } else {
            ctx.list.push_back(entry);
        }
        if let Some(deadline) = deadline {
            ctx.arm(deadline, Clock::now());
        }
        Ok(())
    }

    /// A Source pool's `put`: one compare-exchange, unless an exclusive holder has the list
    /// (see [`source_get_slow`](Self::source_get_slow)).
    #[inline]
    fn source_put(
        &self,
        id: u32,
        free: &FreeList<Buffer>,
        mut buffer: Buffer,
    ) -> Result<(), PutError> {
        if buffer.h().owner == id && buffer.overrun().is_none() {
            if let Some(key) = buffer.h_mut().key.take() {
                // The fast path: one compare-exchange.
                return match free.push(key, buffer) {
                    Ok(()) => Ok(()),
                    Err(refused) => self.source_put_slow(free, refused),
                };
            }
            // An additional buffer (lookaside): freed, not listed.
            drop(buffer);
            return Ok(());
        }
        if let Some(region) = buffer.overrun() {
            overrun_trace(id, "put", region);
            return Err(PutError::new(NtStatus::DATA_ERROR, buffer));
        }
        Err(PutError::new(NtStatus::INVALID_PARAMETER, buffer))
    }

    /// A Source pool's `put` that the lock-free push refused: held by an exclusive holder (push
    /// under the Module's lock), or closed.
    #[cold]
    fn source_put_slow(
        &self,
        free: &FreeList<Buffer>,
        refused: Pushed<Buffer>,
    ) -> Result<(), PutError> {
        let refused = match refused {
            Pushed::Busy(key, buffer) => match self.source_push_locked(free, key, buffer) {
                Ok(()) => return Ok(()),
                Err(refused) => refused,
            },
            refused => refused,
        };
        let status = match refused {
            Pushed::Closed(..) => NtStatus::INVALID_DEVICE_STATE,
            // Not reached for a buffer of this pool (its key is this list's).
            Pushed::Foreign(..) => NtStatus::INVALID_PARAMETER,
            Pushed::Busy(..) => NtStatus::INTERNAL_ERROR,
        };
        let (key, mut buffer) = refused.into_parts();
        buffer.h_mut().key = Some(key);
        Err(PutError::new(status, buffer))
    }

    /// A push while an exclusive holder had the list: under the Module's lock.
    fn source_push_locked(
        &self,
        free: &FreeList<Buffer>,
        key: SlotKey,
        buffer: Buffer,
    ) -> Result<(), Pushed<Buffer>> {
        let Ok(module) = self.enter() else {
            return Err(Pushed::Closed(key, buffer));
        };
        let _ctx = module.lock();
        match free.exclusive() {
            Some(list) if list.is_closed() => Err(Pushed::Closed(key, buffer)),
            Some(mut list) => list.push(key, buffer),
            None => Err(Pushed::Busy(key, buffer)),
        }
    }

    /// `DMF_BufferPool_Count`: how many buffers the pool holds.
    pub fn count(&self) -> NtResult<usize> {
        let module = self.enter()?;
        let ctx = module.lock();
        let count = match &module.shared().free {
            // Every exclusive holder holds the lock, so the list is ours here.
            Some(free) => free.exclusive().ok_or(NtStatus::INTERNAL_ERROR)?.len(),
            None => ctx.list.len(),
        };
        drop(ctx);
        Ok(count)
    }

    /// `DMF_BufferPool_ContextGet`: the client context of `buffer`, after checking that this
    /// pool is open and that the buffer's sentinels are intact (`STATUS_DATA_ERROR`).
    pub fn context_get<'b>(&self, buffer: &'b mut Buffer) -> NtResult<&'b mut [u8]> {
        let _module = self.enter()?;
        if let Some(region) = buffer.overrun() {
            overrun_trace(buffer.h().owner, "context_get", region);
            return Err(NtStatus::DATA_ERROR);
        }
        Ok(buffer.context_mut())
    }

    /// `DMF_BufferPool_ParametersGet`: the sizes of `buffer`'s data and context, after the same
    /// checks as [`context_get`](Self::context_get). The data itself is `buffer.data()` — the
    /// memory (C DMF's `WDFMEMORY` / `WDF_MEMORY_DESCRIPTOR`) a request is formatted over (see
    /// the module's remarks).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open; `STATUS_DATA_ERROR` for a broken sentinel.
    pub fn parameters_get(&self, buffer: &Buffer) -> NtResult<BufferParameters> {
        let _module = self.enter()?;
        if let Some(region) = buffer.overrun() {
            overrun_trace(buffer.h().owner, "parameters_get", region);
            return Err(NtStatus::DATA_ERROR);
        }
        Ok(buffer.parameters())
    }

    /// `DMF_BufferPool_Enumerate`: calls `callback` for each buffer, head first, **with the
    /// pool's lock held**, and applies the [`EnumerationDisposition`] it returns. Returns the
    /// buffer removed by [`EnumerationDisposition::RemoveAndStop`], if any. Buffers whose
    /// timeout has expired (their expiry is under way) are skipped.
    pub fn enumerate(
        &self,
        mut callback: impl FnMut(&mut Buffer) -> EnumerationDisposition,
    ) -> NtResult<Option<Buffer>> {
        let module = self.enter()?;
        let mut ctx = module.lock();
        if let Some(free) = &module.shared().free {
            // A Source pool: no timeouts, so the timer dispositions are plain continue/stop.
            let mut list = free.exclusive().ok_or(NtStatus::INTERNAL_ERROR)?;
            let removed = list.visit(|buffer| match callback(buffer) {
                EnumerationDisposition::Continue
                | EnumerationDisposition::StopTimerAndContinue
                | EnumerationDisposition::ResetTimerAndContinue => Visit::Continue,
                EnumerationDisposition::Stop
                | EnumerationDisposition::StopTimerAndStop
                | EnumerationDisposition::ResetTimerAndStop => Visit::Stop,
                EnumerationDisposition::RemoveAndStop => Visit::RemoveAndStop,
            });
            drop(list);
            drop(ctx);
            return Ok(removed.map(|(key, mut buffer)| {
                buffer.h_mut().key = Some(key);
                buffer
            }));
        }
        let now = Clock::now();
        let mut index = 0;
        let mut earliest_reset: Option<Duration> = None;
        let mut removed = None;
        while index < ctx.list.len() {
            let entry = &mut ctx.list[index];
            if entry.timeout.as_ref().is_some_and(|t| t.deadline <= now) {
                index += 1;
                continue;
            }
            let disposition = callback(&mut entry.buffer);
            let stop = match disposition {
                EnumerationDisposition::Continue => false,
                EnumerationDisposition::Stop => true,
                EnumerationDisposition::RemoveAndStop => {
                    removed = ctx.list.remove(index).map(|e| e.buffer);
                    true
                }
                EnumerationDisposition::StopTimerAndStop
                | EnumerationDisposition::StopTimerAndContinue => {
                    entry.timeout = None;
                    disposition == EnumerationDisposition::StopTimerAndStop
                }
                EnumerationDisposition::ResetTimerAndStop
                | EnumerationDisposition::ResetTimerAndContinue => {
                    if let Some(t) = entry.timeout.as_mut() {
                        t.deadline = now.saturating_add(t.period);
                        earliest_reset =
                            Some(earliest_reset.map_or(t.deadline, |e| e.min(t.deadline)));
                    }
                    disposition == EnumerationDisposition::ResetTimerAndStop
                }
            };
            if stop {
                break;
            }
            index += 1;
        }
        if let Some(deadline) = earliest_reset {
            ctx.arm(deadline, now);
        }
        drop(ctx);
        Ok(removed)
    }

    /// The Sink timer's callback: hands every expired buffer to its callback, outside the lock,
    /// then programs the timer for the next deadline.
    fn timer_expired(&self) {
        let Ok(module) = self.enter() else {
            return; // closing: close frees what is left
        };
        loop {
            let expired = {
                let mut ctx = module.lock();
                let now = Clock::now();
                let expired = ctx.take_expired(now);
                if expired.is_none() {
                    ctx.rearm(now);
                }
                expired
            };
            match expired {
                Some((buffer, callback)) => callback(buffer),
                None => break,
            }
        }
    }
}
