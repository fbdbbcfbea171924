//! `ioctl_handler_dispatch`: the scenario of the same name in dmf-modules' `tests/hostile` (shared with the
//! bounded property test `proptest_ioctl_handler_dispatch`), on the fuzzer's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/dmf-modules/tests/hostile/mod.rs"]
mod hostile;

fuzz_target!(|data: &[u8]| {
    if let Err(failure) = hostile::ioctl_handler_dispatch(data) {
        panic!("{failure}");
    }
});
