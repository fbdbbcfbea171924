//! # dmf-core — the framework core of DMF for Rust
//!
//! Microsoft's Driver Module Framework (DMF) builds a KMDF driver as a tree of *Modules*: small,
//! self-contained drivers, each with its own config, private context, locks and lifecycle. The
//! framework dispatches every WDF callback through the tree in a defined order and guards every
//! Module Method with rundown protection. This crate is that framework, in Rust:
//!
//! - [`status`] — `NtStatus` and `NtResult<T>`: every failure is an `NTSTATUS` a caller can act on.
//! - [`fallible`] — fallible `Box`/`Arc`/`Vec`/`String`: every allocation after `DriverEntry` can
//!   fail with `STATUS_INSUFFICIENT_RESOURCES` instead of bug-checking.
//! - [`free_list`] — a bounded lock-free free list with slot keys (the BufferPool fast path).
//! - [`one_shot`] — a slot written once and taken once, lock-free (a completion's result for its
//!   waiter).
//! - [`rundown`] — rundown protection with `EX_RUNDOWN_REF` semantics; the guard of every Method call.
//! - `sync` — module locks: a spin lock or a wait lock behind one guard, plus auxiliary locks
//!   (needs a platform backend).
//! - `module` — the Module framework: `#[dmf_module]` Modules, their tree, open options,
//!   callbacks and Methods, the one list of callbacks and THE dispatch table, dynamic Modules and
//!   DMF Interfaces (needs a platform backend).
//! - `device` — the client-driver API: `DmfDeviceInit` (DMF's hooks into `EvtDriverDeviceAdd`),
//!   the container driver, the request offer and the unhandled-request rule (pass down in a
//!   filter) (needs a platform backend).
//! - [`platform`] — the contract with the operating system, with two backends: `sim` (the default,
//!   onto the user-mode KMDF simulation `kmdf-sim`) and `kmdf` (wdk-sys, Windows + eWDK only).
//!
//! The crate is `#![no_std]` with `alloc`. The only module that names `std` is `platform::sim`,
//! so the same code compiles for `x86_64-pc-windows-msvc` kernel drivers (ARCHITECTURE.md, invariant 1).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod device;
pub mod fallible;
pub mod free_list;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod module;
// The Module object's state word and Method rundown (no platform): public only to the loom models.
#[cfg(dmf_loom)]
pub mod module_gate;
#[cfg(all(not(dmf_loom), any(feature = "sim", all(feature = "kmdf", windows))))]
pub(crate) mod module_gate;
pub mod one_shot;
pub mod platform;
pub mod rundown;
pub mod status;
#[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
pub mod sync;
mod sync_facade;
mod trace_macro;

pub use status::{NtResult, NtStatus};

/// The guide pages' examples, compiled and run as doctests so the docs cannot rot.
#[cfg(all(doctest, feature = "sim"))]
#[doc = include_str!("../../../docs/status-and-rundown.md")]
pub struct GuideStatusAndRundown;
