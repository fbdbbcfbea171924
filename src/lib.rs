//! # DMF for Rust
//!
//! Microsoft's Driver Module Framework, rebuilt in Rust for Windows kernel-mode (KMDF) drivers,
//! with a user-mode simulation of KMDF so every driver can be tested with `cargo test`.
//!
//! This facade re-exports the framework core ([`core`]) and will re-export the Module library and
//! the macros as they arrive. A driver crate depends on `dmf` alone.
//!
//! ```
//! use dmf::prelude::*;
//!
//! fn validate(len: usize) -> NtResult<()> {
//!     if len == 0 { Err(NtStatus::INVALID_PARAMETER) } else { Ok(()) }
//! }
//! assert_eq!(validate(0), Err(NtStatus::INVALID_PARAMETER));
//! ```
#![no_std]

pub use dmf_core as core;
pub use dmf_macros::{dmf_callbacks, dmf_module};
pub use dmf_modules as modules;

/// The names most drivers and Modules need, in one `use`.
pub mod prelude {
    #[cfg(feature = "sim")]
    pub use dmf_core::module::{
        Dispatched, Handled, Method, ModuleCallbacks, ModuleCollection, ModuleHandle, ModuleInit,
    };
    pub use dmf_core::status::{NtResult, NtStatus};
    pub use dmf_macros::{dmf_callbacks, dmf_module};
}
