//! # dmf-macros — procedural macros of DMF for Rust
//!
//! This crate will hold `#[dmf_module]`, which turns a Module author's config, context and
//! callbacks into a DMF Module (descriptor, typed handle, creation, implemented-callback set), and
//! the driver-entry macros (`driver!`, the container-driver shortcut that C DMF spells
//! `DMF_DEFAULT_DRIVERENTRY` / `DMF_DEFAULT_DEVICEADD` / `DMF_DEFAULT_DRIVERCLEANUP`). They arrive with
//! the Module-framework issue; until then this crate exports nothing.
#![forbid(unsafe_code)]
