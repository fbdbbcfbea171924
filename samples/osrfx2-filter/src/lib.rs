//! The `osrfx2-filter` sample driver. It arrives with the samples issue, once the Module library has the
//! Modules it is built from; until then this crate holds no driver code.
#![no_std]
#![forbid(unsafe_code)]
