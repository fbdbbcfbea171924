//! # dmf-macros — procedural macros of DMF for Rust
//!
//! - `#[dmf_module(...)]` on a unit struct turns it into a DMF Module: the typed handle, the
//!   descriptor (`DMF_MODULE_DESCRIPTOR`), the creation function (`<Name>::with(config)`, the
//!   `DMF_CONFIG_<Name>_AND_ATTRIBUTES_INIT` + `DMF_<Name>_Create` equivalent), the private
//!   `enter()` that opens a rundown-guarded Method scope, and the **private** access trait through
//!   which the Module alone reaches its context, config and locks.
//! - `#[dmf_callbacks]` on `impl ModuleCallbacks for <Name> { … }` records which callbacks the
//!   impl overrides (the `IMPLEMENTED` set the dispatcher uses), read from the method names.
//!
//! Both follow parse → validate → expand, report every error they find at the author's tokens,
//! and still expand the item when the arguments are wrong so that follow-on errors stay few.
//! The expansion names `::dmf::core` (the facade's re-export of dmf-core); `crate = path`
//! overrides it (dmf-core's own tests use `crate = ::dmf_core`).
#![forbid(unsafe_code)]

mod callbacks;
mod module;

use proc_macro::TokenStream;

/// Declares a DMF Module on a unit struct. Keys (comma separated):
///
/// | Key | Value | Default |
/// |---|---|---|
/// | `config` | the config type (`()` for none) | required |
/// | `context` | the private context type (`Default`) | `()` |
/// | `shared` | state reached without the lock, built from the config (`dmf_core::module::ModuleShared`) | `()` |
/// | `open` | `Create`, `PrepareHardware`, `D0Entry`, `D0EntrySystemPowerUp`, `NotifyCreate`, `NotifyPrepareHardware`, `NotifyD0Entry` | required |
/// | `dynamic_open` | `Create` or `NotifyCreate`: the option of a dynamic instance | the `open` option |
/// | `lock` | `Passive`, `Dispatch`, `DispatchMaximum` | required |
/// | `aux_locks` | 0…4 | 0 |
/// | `transport_required` | `true`/`false` | `false` |
/// | `child_limit` | 0…255 | 16 |
/// | `trace` | in-flight trace ring entries, 0…64 | 0 |
/// | `name` | a string | the struct's name |
/// | `crate` | path to dmf-core | `::dmf::core` |
///
/// docs/writing-modules-and-drivers.md ("The `#[dmf_module]` options") gives each key's C DMF
/// name and a compiled example, and explains the one error a new author meets: calling
/// `self.lock()` on the handle instead of `self.enter()?.lock()`.
#[proc_macro_attribute]
pub fn dmf_module(args: TokenStream, item: TokenStream) -> TokenStream {
    module::expand(args.into(), item.into()).into()
}

/// Records the callbacks an `impl ModuleCallbacks for <Name>` block implements. Optional argument:
/// `crate = path`.
#[proc_macro_attribute]
pub fn dmf_callbacks(args: TokenStream, item: TokenStream) -> TokenStream {
    callbacks::expand(&args.into(), item.into()).into()
}
