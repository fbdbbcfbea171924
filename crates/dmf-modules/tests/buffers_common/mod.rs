//! Shared helpers of the buffer Modules' scenario tests (modelled on C DMF's Tests_BufferPool,
//! Tests_BufferQueue and Tests_Stack, dmf-upstream §4): a small deterministic PRNG, system-thread
//! callers, virtual-time naps, a guard that prints the seed when a scenario fails, and a
//! device-bound parent for pools whose timer needs a device.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf_core::platform::contract::{EventKind, PlatformEvent};
use dmf_core::platform::Event;
use kmdf_sim::exec::SystemThread;
use kmdf_sim::Machine;

/// SplitMix64: small, deterministic, good enough to pick actions.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The seeds every scenario runs with; `DMF_TEST_SEED=<n>` runs only that one.
pub fn seeds() -> Vec<u64> {
    match std::env::var("DMF_TEST_SEED") {
        Ok(s) => vec![s.parse().expect("DMF_TEST_SEED is a u64")],
        Err(_) => vec![0x5EED_0001, 0x5EED_0002, 0x5EED_0003],
    }
}

/// Prints the seed if the scenario panics (so a failure can be replayed with DMF_TEST_SEED).
pub struct SeedGuard(pub &'static str, pub u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{} failed with seed {} (rerun: DMF_TEST_SEED={})",
                self.0, self.1, self.1
            );
        }
    }
}

/// Failures seen by the caller threads (a simulated thread must not panic: it would crash the
/// machine without saying which seed).
#[derive(Clone, Default)]
pub struct Failures(Arc<Mutex<Vec<String>>>);

impl Failures {
    pub fn record(&self, message: String) {
        self.0.lock().unwrap().push(message);
    }

    pub fn check(&self, scenario: &str, seed: u64) {
        let failures = self.0.lock().unwrap();
        assert!(
            failures.is_empty(),
            "{scenario} seed {seed}: {} failure(s), first: {:?}",
            failures.len(),
            failures.iter().take(5).collect::<Vec<_>>()
        );
    }
}

/// Starts `f` on a system thread of `machine`.
pub fn spawn(machine: &Machine, name: &str, f: impl FnOnce() + Send + 'static) -> SystemThread {
    SystemThread::spawn(machine, name, f).expect("system thread")
}

/// Waits `d` of virtual time (an event nobody sets).
pub fn nap(d: Duration) {
    let event = Event::new(EventKind::Notification, false).unwrap();
    let _ = event.wait(Some(d));
}

/// Asserts the machine is healthy: no crash, no verifier violation, no outstanding pool.
pub fn assert_clean(machine: &Machine) {
    assert_eq!(machine.crash(), None, "the machine crashed");
    let violations = machine.verifier().violations();
    assert!(violations.is_empty(), "verifier: {violations:?}");
    let outstanding = machine.pool().outstanding();
    assert!(outstanding.is_empty(), "leaked pool: {outstanding:?}");
}

#[path = "../device_parent/mod.rs"]
mod device_parent;
#[allow(unused_imports)] // not every test names the type
pub use device_parent::{device_parent, DeviceParent};
