//! kmdf-sim's framework spin lock against `std::sync::Mutex`, in the same run.
//!
//! - `spin_lock_pair`: one uncontended `WdfSpinLockAcquire` + `WdfSpinLockRelease` on a
//!   thread bound to a machine (every verifier check on: the IRQL rule, recursion, the
//!   acquirer's release, the held-lock list), the RAII form, two nested locks released in LIFO
//!   order, and `std::sync::Mutex` lock + unlock as the baseline.
//!
//! Run: `cargo bench -p kmdf-sim --bench lock` (short measurement times; the numbers are for
//! comparison within one run).
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Mutex;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use kmdf_sim::exec::SpinLock;
use kmdf_sim::Machine;

fn spin_lock_pair(c: &mut Criterion) {
    let machine = Machine::new();
    let _bound = machine.enter();
    let lock = SpinLock::new(&machine, "bench");
    let inner = SpinLock::new(&machine, "bench inner");
    let mutex = Mutex::new(0_u64);
    let mut group = c.benchmark_group("spin_lock_pair");
    group.bench_function("SpinLock acquire+release", |b| {
        b.iter(|| {
            black_box(&lock).acquire();
            black_box(&lock).release();
        });
    });
    group.bench_function("SpinLock lock() guard", |b| {
        b.iter(|| drop(black_box(&lock).lock()));
    });
    group.bench_function("two nested SpinLocks (LIFO release)", |b| {
        b.iter(|| {
            lock.acquire();
            inner.acquire();
            inner.release();
            lock.release();
        });
    });
    group.bench_function("Mutex lock+unlock (baseline)", |b| {
        b.iter(|| {
            *black_box(&mutex).lock().unwrap() += 1;
        });
    });
    group.finish();
    assert!(machine.verifier().violations().is_empty());
}

fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = short();
    targets = spin_lock_pair
}
criterion_main!(benches);
