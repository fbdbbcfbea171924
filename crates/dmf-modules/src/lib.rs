//! # dmf-modules — the DMF Module library
//!
//! One file per Module, ported from C DMF's `Modules.Library` with the same names and semantics in
//! Rust casing (`DMF_BufferPool_Get` → `BufferPool::get`): buffers (BufferPool, BufferQueue,
//! RingBuffer, PingPongBuffer), data structures (Stack, HashTable), task execution (Thread,
//! QueuedWorkItem, ScheduledTask, Doorbell, ThreadedBufferQueue, AlertableSleep, Rundown, Time),
//! targets (RequestTarget, ContinuousRequestTarget, DeviceInterfaceTarget, DefaultTarget,
//! SelfTarget), IoctlHandler and NotifyUserWithRequest. The Modules arrive with the Module-library
//! issues, on top of the Module framework; until then this crate exports nothing.
//!
//! Buffers: [`buffer_pool`] (BufferPool: Source/Sink pools of fixed-size buffers with sentinels,
//! lookaside growth and timed buffers), [`buffer_queue`] (BufferQueue: producer/consumer on two
//! BufferPools), [`threaded_buffer_queue`] (ThreadedBufferQueue: a BufferQueue consumed by a
//! Thread calling the client per buffer). Data structures: [`stack`] (Stack: LIFO on a BufferQueue).
//!
//! Task execution: [`thread`] (Thread: DMF- or client-controlled system thread),
//! [`queued_work_item`] (QueuedWorkItem: once per enqueue, in order, with per-call data),
//! [`doorbell`] (Doorbell: rings coalesced into work-item runs), [`scheduled_task`] (ScheduledTask:
//! run-once tasks per boot or persistent, at PrepareHardware/D0Entry/on demand, timer retry).
//!
//! Also: [`rundown`] (Rundown: Start/Reference/EndAndWait gate), [`alertable_sleep`]
//! (AlertableSleep: abortable sleeps on 1…32 slots), [`ring_buffer`] (RingBuffer: fixed items,
//! fail-if-full or overwrite-oldest), [`ping_pong_buffer`] (PingPongBuffer: packet reassembly),
//! [`hash_table`] (HashTable: fixed capacity, FNV-1a or client hash), [`time`] (Time: ticks and
//! elapsed time on the platform clock), [`string`] (String: MULTI_SZ, lookups, UTF-16/UTF-8, GUID
//! text) and [`registry`] (Registry: keys and values by path, device key or handle; trees).
//!
//! Targets: [`request_target`] (RequestTarget: one-shot sync/async sends, cancel by ID,
//! time-outs), [`continuous_request_target`] (ContinuousRequestTarget: N requests kept in flight,
//! manual or automatic streaming), [`device_interface_target`] (DeviceInterfaceTarget: a remote
//! target found by interface GUID, surviving removal), [`default_target`] (DefaultTarget: the next
//! lower driver, for filters).
//!
//! Bus drivers: [`pdo`] (Pdo: child PDOs of the device — static records at the first D0Entry,
//! plug/unplug by serial number, eject, each child's own Module tree).
//!
//! The crate is `#![no_std]` and forbids `unsafe`: Modules are written only against dmf-core.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

// Task execution: Thread, QueuedWorkItem, ScheduledTask, Doorbell.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
mod back_ref;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod doorbell;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod queued_work_item;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod scheduled_task;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod thread;

// Rundown, AlertableSleep, RingBuffer, HashTable, PingPongBuffer, Time.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod alertable_sleep;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod hash_table;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod ping_pong_buffer;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod registry;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod ring_buffer;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod rundown;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod string;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod time;

// Buffers: BufferPool, BufferQueue, Stack, ThreadedBufferQueue.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod buffer_pool;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod buffer_queue;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod stack;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod threaded_buffer_queue;

// Targets: RequestTarget, ContinuousRequestTarget, DeviceInterfaceTarget, DefaultTarget.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod continuous_request_target;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod default_target;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod device_interface_multiple_target;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod device_interface_target;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod hid_target;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod request_target;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
mod target_sink;

// Driver patterns: IoctlHandler, NotifyUserWithRequest; and SelfTarget.
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod ioctl_handler;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod notify_user_with_event;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod notify_user_with_request;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod pdo;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod self_target;
