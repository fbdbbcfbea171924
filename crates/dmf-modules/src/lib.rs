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
//! The crate is `#![no_std]` and forbids `unsafe`: Modules are written only against dmf-core.
#![no_std]
#![forbid(unsafe_code)]
