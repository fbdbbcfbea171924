//! Shared helpers of the task-execution Module tests: a small deterministic PRNG, the seed of a
//! scenario (printed so a failure can be replayed with `DMF_SEED=<n>`), the end-of-test checks, and
//! a device-bound parent for dynamic Modules whose timers and work items need a device.
#![allow(dead_code)]

use std::time::Duration;

use dmf_core::platform::contract::PlatformClock;
use dmf_core::platform::Clock;
use kmdf_sim::exec::SystemThread;
use kmdf_sim::{ClockMode, Machine, VerifierMode};

/// xorshift64*: small, deterministic, good enough to pick actions.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A generator started at `state` as given (no mixing, so a zero state stays zero): the
    /// sequence of the per-Module scenarios seeded through `DMF_TEST_SEED` ([`test_seed`]).
    pub fn from_state(state: u64) -> Self {
        Rng(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The scenario's seed: `DMF_SEED` if set, else `default`; printed (shown when the test fails).
pub fn seed(test: &str, default: u64) -> u64 {
    let seed = std::env::var("DMF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("{test}: seed = {seed} (replay with DMF_SEED={seed})");
    seed
}

/// A per-Module scenario's seed: `DMF_TEST_SEED` if set, else `default` (not printed).
pub fn test_seed(default: u64) -> u64 {
    std::env::var("DMF_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A machine whose verifier records violations (checked by [`clean`]) instead of bug-checking.
pub fn machine() -> Machine {
    Machine::builder().verifier(VerifierMode::Record).build()
}

/// [`machine`] on an auto-advancing virtual clock (waits with a timeout do not hold the test up).
pub fn auto_advance_machine() -> Machine {
    Machine::builder()
        .clock(ClockMode::AutoAdvance)
        .verifier(VerifierMode::Record)
        .build()
}

/// No verifier violation and no pool left allocated (no settle, no bug-check test: see
/// [`assert_clean`] for those).
pub fn clean(machine: &Machine) {
    assert!(
        machine.verifier().violations().is_empty(),
        "{:?}",
        machine.verifier().violations()
    );
    assert!(machine.pool().outstanding().is_empty());
}

/// A system thread running `f`.
pub fn spawn(machine: &Machine, name: &str, f: impl FnOnce() + Send + 'static) -> SystemThread {
    SystemThread::spawn(machine, name, f).expect("system thread")
}

/// Virtual time since `start`.
pub fn since(start: Duration) -> Duration {
    Clock::now()
        .checked_sub(start)
        .expect("the clock is monotonic")
}

/// No verifier violation, no bug check, no pool left allocated.
pub fn assert_clean(machine: &Machine, seed: u64) {
    machine.settle();
    assert_eq!(machine.crash(), None, "seed {seed}: machine bug-checked");
    assert!(
        machine.verifier().violations().is_empty(),
        "seed {seed}: verifier: {:?}",
        machine.verifier().violations()
    );
    assert!(
        machine.pool().outstanding().is_empty(),
        "seed {seed}: pool leaked: {:?}",
        machine.pool().outstanding()
    );
}

#[path = "../device_parent/mod.rs"]
mod device_parent;
#[allow(unused_imports)] // not every test names the type
pub use device_parent::{device_parent, DeviceParent};
