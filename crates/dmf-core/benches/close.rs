//! Close latency: how long after the last in-flight Method ends a Module's close returns.
//!
//! C DMF's close polls the Module's reference count every 100 ms (`DMF_ModuleWaitForReferenceCountToClear`);
//! ours blocks on the rundown's event, which the last Method's release signals. Goal: close
//! returns within 50 µs of the end of the Method, on kmdf-sim with its real-time clock.
//!
//! One iteration: a dynamic Module is created (open on create); a thread enters a Method and
//! stays in it; this thread begins the close (`DynamicModule::delete`: close, then destroy) and
//! blocks in the rundown wait; the Method thread sees that the wait has begun (a second Method
//! call is refused), gives the closer time to fall asleep, records the instant and returns (its
//! guard's release signals the event); this thread records the instant `delete` returned. The
//! time of an iteration is the difference of the two instants (`iter_custom`), so thread
//! creation and the handshake are not counted. Besides criterion's estimate, the bench prints
//! the median, 90th percentile and maximum of every latency it measured.
//!
//! Run with `cargo bench -p dmf-core --bench close`.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use criterion::Criterion;
use dmf_core::module::{ModuleCallbacks, NoParent};
use dmf_core::NtResult;
use dmf_macros::{dmf_callbacks, dmf_module};
use kmdf_sim::{ClockMode, Machine};

/// How long the Method keeps running after it saw the close begin: long enough for the closer
/// to be asleep on the event (so the measurement includes a real wake-up), short against an
/// iteration.
const CLOSER_SLEEPS_AFTER: Duration = Duration::from_micros(200);

/// A Module whose only Method stays in flight until told to end.
#[dmf_module(crate = ::dmf_core, config = (), open = Create, lock = Dispatch)]
struct Held;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Held {}

impl Held {
    /// A Method: enters, reports that it is in flight, runs until a second Method call is
    /// refused (close's rundown wait has begun) and `CLOSER_SLEEPS_AFTER` more, and returns the
    /// instant it ended. The guard drops right after that instant is taken.
    fn hold(&self, entered: &AtomicBool) -> NtResult<Instant> {
        let _method = self.enter()?;
        entered.store(true, Ordering::Release);
        while self.probe() {
            spin_loop();
        }
        let closing = Instant::now();
        while closing.elapsed() < CLOSER_SLEEPS_AFTER {
            thread::yield_now();
        }
        Ok(Instant::now())
    }

    /// A Method that only enters: `false` once close has begun its wait.
    fn probe(&self) -> bool {
        self.enter().is_ok()
    }
}

/// One close behind one in-flight Method: the time from the Method's end to `delete`'s return.
fn one_close(machine: &Machine) -> Duration {
    let module = Held::with(()).create(&NoParent).expect("created and open");
    let handle = (*module).clone();
    let entered = AtomicBool::new(false);
    thread::scope(|scope| {
        let method = scope.spawn(|| {
            let _bound = machine.enter();
            handle.hold(&entered).expect("the Method runs")
        });
        while !entered.load(Ordering::Acquire) {
            spin_loop();
        }
        module.delete();
        let closed = Instant::now();
        let ended = method.join().expect("the Method thread");
        closed.saturating_duration_since(ended)
    })
}

fn bench(c: &mut Criterion) {
    let machine = Machine::builder().clock(ClockMode::RealTime).build();
    let _bound = machine.enter();
    let all = Mutex::new(Vec::new());
    let mut group = c.benchmark_group("close_latency");
    group.bench_function("close returns after the last Method ends", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut lock = all.lock().unwrap();
            for _ in 0..iters {
                let latency = one_close(&machine);
                lock.push(latency);
                total += latency;
            }
            total
        });
    });
    group.finish();
    let mut all = all.into_inner().unwrap();
    all.sort_unstable();
    if !all.is_empty() {
        let at = |q: usize| all[(all.len() - 1) * q / 100];
        println!(
            "close latency over {} closes: median {:?}, 90th percentile {:?}, max {:?}",
            all.len(),
            at(50),
            at(90),
            all[all.len() - 1]
        );
    }
    machine.settle();
    assert!(machine.verifier().violations().is_empty());
    assert!(machine.pool().outstanding().is_empty());
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

/// What `criterion_group!` + `criterion_main!` expand to, written out (as in `rundown.rs`).
fn main() {
    let mut criterion = config().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
