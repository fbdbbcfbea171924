//! What one rundown-protected Method call costs: acquire + release, uncontended and with two
//! threads contending on the same object, against two references:
//!
//! - **floor** — a bare `AtomicUsize` `fetch_add` / `fetch_sub` pair: the least any shared
//!   reference count can cost, with no rundown semantics at all;
//! - **spin-lock counter** — how C DMF's `DMF_ModuleReference` / `DMF_ModuleDereference` work: a
//!   test-and-set spin lock around a `ReferenceCount` and an `IsClosePending` check, taken once to
//!   reference and once to dereference.
//!
//! Locked read-modify-write instructions per call pair on x86-64 (they set the uncontended cost):
//! floor 2 (`lock xadd` ×2); `Rundown` 2 (`lock cmpxchg` to acquire — a second one when the
//! first guess, no references out, is wrong — and `lock xadd` to release); spin-lock counter 2 (`xchg` per lock acquisition; the unlocks are plain `mov`
//! stores under x86-TSO). So uncontended the three are within a few cycles of each other; the
//! spin lock loses under contention, where the count update sits inside a critical section and the
//! other thread spins on the line. (The real `WdfSpinLockAcquire` also raises IRQL to
//! `DISPATCH_LEVEL` and is called through the WDF function table, which this model leaves out.)
//!
//! - **platform spin-lock counter** — the same counter behind the spin lock DMF Modules get on
//!   this platform (`dmf_core::platform::SpinLock`, on kmdf-sim): like `KeAcquireSpinLock` /
//!   `WdfSpinLockAcquire` it raises the thread to `DISPATCH_LEVEL` and records the owner (for the
//!   verifier), and lowers the IRQL again on release. This is the faithful model of what C DMF's
//!   `ReferenceCountLock` costs a Method call; the test-and-set counter above is its lower bound.
//!
//! Run with `cargo bench -p dmf-core --bench rundown`; the measurement time is short so the whole
//! run takes under a minute.

use std::cell::UnsafeCell;
use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion};
use dmf_core::rundown::{Rundown, RundownEvent};
use dmf_core::status::NtResult;
use dmf_core::sync::{LockKind, ModuleLock};
use kmdf_sim::Machine;

/// A std notification event (never signalled in these benchmarks: no wait runs).
struct BenchEvent {
    signalled: Mutex<bool>,
    changed: Condvar,
}

impl RundownEvent for BenchEvent {
    fn new() -> NtResult<Self> {
        Ok(Self {
            signalled: Mutex::new(false),
            changed: Condvar::new(),
        })
    }

    fn signal(&self) {
        *self.signalled.lock().unwrap() = true;
        self.changed.notify_all();
    }

    fn wait(&self) {
        let mut signalled = self.signalled.lock().unwrap();
        while !*signalled {
            signalled = self.changed.wait(signalled).unwrap();
        }
    }

    fn reset(&self) {
        *self.signalled.lock().unwrap() = false;
    }
}

/// One protected call: take the protection, "run the Method", drop the protection.
trait Protection: Sync {
    fn call(&self);
}

impl Protection for Rundown<BenchEvent> {
    #[inline]
    fn call(&self) {
        let guard = self.acquire();
        black_box(&guard);
        assert!(guard.is_some());
    }
}

/// The floor: a bare reference count with no rundown check.
struct BareCounter(AtomicUsize);

impl Protection for BareCounter {
    #[inline]
    fn call(&self) {
        black_box(self.0.fetch_add(1, Ordering::Acquire));
        black_box(self.0.fetch_sub(1, Ordering::Release));
    }
}

/// C DMF's module reference: a test-and-set spin lock around a count and a close-pending flag.
struct SpinLockCounter {
    locked: AtomicBool,
    /// `(ReferenceCount, IsClosePending)`, only touched with `locked` held.
    inner: UnsafeCell<(usize, bool)>,
}

// SAFETY: `inner` is only accessed between `lock` and `unlock`, which exclude each other.
unsafe impl Sync for SpinLockCounter {}

impl SpinLockCounter {
    fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
            inner: UnsafeCell::new((0, false)),
        }
    }

    #[inline]
    fn with_lock<R>(&self, f: impl FnOnce(&mut (usize, bool)) -> R) -> R {
        while self.locked.swap(true, Ordering::Acquire) {
            spin_loop();
        }
        // SAFETY: the lock is held (the swap above saw `false`), so no other reference exists.
        let result = f(unsafe { &mut *self.inner.get() });
        self.locked.store(false, Ordering::Release);
        result
    }

    #[inline]
    fn reference(&self) -> bool {
        self.with_lock(|(count, close_pending)| {
            if *close_pending {
                false
            } else {
                *count += 1;
                true
            }
        })
    }

    #[inline]
    fn dereference(&self) {
        self.with_lock(|(count, _)| *count -= 1);
    }
}

impl Protection for SpinLockCounter {
    #[inline]
    fn call(&self) {
        let referenced = self.reference();
        black_box(referenced);
        assert!(referenced);
        self.dereference();
    }
}

/// C DMF's module reference on this platform's spin lock (IRQL raise + owner tracking).
struct PlatformSpinLockCounter {
    lock: ModuleLock<(usize, bool)>,
}

impl PlatformSpinLockCounter {
    fn new() -> Self {
        Self {
            lock: ModuleLock::new(LockKind::Spin, (0, false)).expect("inside a machine"),
        }
    }
}

impl Protection for PlatformSpinLockCounter {
    #[inline]
    fn call(&self) {
        let referenced = {
            let mut guard = self.lock.lock();
            if guard.1 {
                false
            } else {
                guard.0 += 1;
                true
            }
        };
        black_box(referenced);
        assert!(referenced);
        self.lock.lock().0 -= 1;
    }
}

fn uncontended<P: Protection>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    subject: &P,
) {
    group.bench_function(name, |b| b.iter(|| black_box(subject).call()));
}

/// Times `iters` calls on this thread while a second thread makes the same calls on the same object.
fn contended<P: Protection>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    subject: &P,
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let stop = AtomicBool::new(false);
            let started = Barrier::new(2);
            thread::scope(|scope| {
                scope.spawn(|| {
                    // Both threads run on the simulated machine (the platform lock needs one).
                    let _bound = machine().enter();
                    started.wait();
                    while !stop.load(Ordering::Relaxed) {
                        black_box(subject).call();
                    }
                });
                started.wait();
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(subject).call();
                }
                let elapsed = start.elapsed();
                stop.store(true, Ordering::Relaxed);
                elapsed
            })
        });
    });
}

/// The simulated machine the benchmark threads are bound to.
fn machine() -> &'static Machine {
    static MACHINE: OnceLock<Machine> = OnceLock::new();
    MACHINE.get_or_init(Machine::new)
}

fn bench(c: &mut Criterion) {
    let _bound = machine().enter();
    let rundown = Rundown::<BenchEvent>::new().unwrap();
    let floor = BareCounter(AtomicUsize::new(0));
    let spin = SpinLockCounter::new();
    let platform_spin = PlatformSpinLockCounter::new();

    let mut group = c.benchmark_group("uncontended");
    uncontended(&mut group, "rundown", &rundown);
    uncontended(&mut group, "floor_atomic_pair", &floor);
    uncontended(&mut group, "spinlock_counter", &spin);
    uncontended(&mut group, "platform_spinlock_counter", &platform_spin);
    group.finish();

    let mut group = c.benchmark_group("contended_2_threads");
    contended(&mut group, "rundown", &rundown);
    contended(&mut group, "floor_atomic_pair", &floor);
    contended(&mut group, "spinlock_counter", &spin);
    contended(&mut group, "platform_spinlock_counter", &platform_spin);
    group.finish();

    // Nothing leaked: every guard and every reference was released.
    rundown.wait_for_release();
    assert!(rundown.acquire().is_none());
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

/// What `criterion_group!` + `criterion_main!` expand to, written out (so the bench needs no
/// undocumented generated items).
fn main() {
    let mut criterion = config().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
