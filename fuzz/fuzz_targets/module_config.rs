//! `module_config`: the scenario of the same name in dmf-modules' `tests/hostile` (shared with the
//! bounded property test `proptest_module_config`), on the fuzzer's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/dmf-modules/tests/hostile/mod.rs"]
mod hostile;

fuzz_target!(|data: &[u8]| {
    if let Err(failure) = hostile::module_config(data) {
        panic!("{failure}");
    }
});
