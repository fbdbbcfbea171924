//! Hostile input, bounded: the scenarios of `hostile` (shared with the cargo-fuzz targets in
//! `fuzz/`, see docs/fuzzing.md) run on arbitrary bytes from proptest with a fixed seed and no
//! failure persistence, so every run (CI included) checks the same cases in a few seconds.
//! A fuzz crash replays here: call the scenario on the crash file's bytes.
#![cfg(feature = "sim")]

mod hostile;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed};

/// A deterministic, bounded config: `cases` cases from a fixed seed, nothing persisted.
fn config(cases: u32, seed: u64) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 256,
        ..Config::default()
    }
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..160)
}

proptest! {
    #![proptest_config(config(96, 0x1_0C71))]
    /// IoctlHandler dispatch: arbitrary tables, access modes, callers and IOCTLs.
    #[test]
    fn proptest_ioctl_handler_dispatch(data in bytes()) {
        hostile::ioctl_handler_dispatch(&data).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(config(96, 0x7A_4CE7))]
    /// RequestTarget / DefaultTarget / ContinuousRequestTarget sends of arbitrary shape.
    #[test]
    fn proptest_target_request_format(data in bytes()) {
        hostile::target_request_format(&data).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(config(160, 0xC0_4F16))]
    /// Arbitrary configs of the Modules that validate theirs at create.
    #[test]
    fn proptest_module_config(data in bytes()) {
        hostile::module_config(&data).map_err(TestCaseError::fail)?;
    }
}
