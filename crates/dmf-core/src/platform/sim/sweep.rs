//! Allocation-failure sweeps on kmdf-sim: fail the 1st, 2nd, 3rd, … allocation of a scenario, one
//! per run, and prove that every failure path ends cleanly.
//!
//! Every pool allocation (`ExAllocatePool2`, WDF memory) and every heap allocation a driver makes
//! through `dmf_core::fallible` (the framework's own Module objects, dispatch orders and lists
//! included) is one *allocation fault point* of the machine's fault injector. [`alloc_sweep`] runs
//! a scenario with the `n`th such allocation failing, for `n = 1, 2, …`, until a run reaches no
//! armed failure; each run must end with a clean verifier verdict (no bug check — a panic in a
//! driver callback is one — no verifier violation, no pool block and no WDF object left) and,
//! when the test binary declares [`CountingAllocator`] as its global allocator, with no heap block
//! left either.
//!
//! ```no_run
//! use dmf_core::platform::simulator::{alloc_sweep, CountingAllocator};
//! use kmdf_sim::fault::FaultPoint;
//!
//! #[global_allocator]
//! static HEAP: CountingAllocator = CountingAllocator;
//!
//! let report = alloc_sweep(|fail_at| {
//!     let machine = kmdf_sim::Machine::builder().build();
//!     machine.faults().fail_nth(FaultPoint::Allocation, fail_at);
//!     // … install the driver, plug in its device, open it, send the first request, remove …
//!     machine
//! })
//! .unwrap();
//! println!("{} allocation failure points swept", report.points);
//! ```

extern crate std;

use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;

use kmdf_sim::fault::FaultPoint;
use kmdf_sim::Machine;

static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting the heap blocks alive: declare it as a test binary's
/// `#[global_allocator]` and [`alloc_sweep`] also proves that no heap block is left after each
/// run. Counts are process-wide: keep one sweeping test per binary, so nothing else allocates
/// while a run is measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountingAllocator;

// SAFETY: every call is forwarded to `System` unchanged; the counters are plain atomics.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        COUNTING.store(true, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout (GlobalAlloc's contract is the caller's).
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        COUNTING.store(true, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        let block = unsafe { System.alloc_zeroed(layout) };
        if !block.is_null() {
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; a block that moves is still one block.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Heap blocks alive in the process, when [`CountingAllocator`] is the global allocator.
pub fn live_heap_blocks() -> Option<isize> {
    COUNTING
        .load(Ordering::Relaxed)
        .then(|| LIVE_BLOCKS.load(Ordering::Relaxed))
}

/// Upper bound on the runs of one sweep.
pub const SWEEP_RUN_LIMIT: u64 = 20_000;

/// What a completed [`alloc_sweep`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Allocation failure points swept: runs in which the armed allocation was reached and failed.
    pub points: u64,
    /// Whether heap blocks were counted ([`CountingAllocator`] installed).
    pub heap_checked: bool,
}

/// Runs `scenario(n)` for `n = 1, 2, …` until a run reaches no armed failure. The scenario builds
/// a fresh machine, arms `machine.faults().fail_nth(FaultPoint::Allocation, n)` where the part to
/// sweep begins, runs to the end (removal included) whatever fails, and returns the machine.
///
/// A warm-up run with nothing armed comes first (`n = 0`: once-only allocations of the test
/// process happen there).
///
/// # Errors
/// Every failing run, one line each: its verifier verdict, heap blocks left, or a run that ran
/// into [`SWEEP_RUN_LIMIT`].
pub fn alloc_sweep(mut scenario: impl FnMut(u64) -> Machine) -> Result<SweepReport, String> {
    let _ = checked_run(&mut scenario, 0);
    let _ = checked_run(&mut scenario, 0);
    let mut problems = String::new();
    let mut report = SweepReport {
        points: 0,
        heap_checked: live_heap_blocks().is_some(),
    };
    for fail_at in 1..=SWEEP_RUN_LIMIT {
        let (injected, problem) = checked_run(&mut scenario, fail_at);
        if let Some(problem) = problem {
            let _ = writeln!(problems, "failing allocation {fail_at}: {problem}");
        }
        if !injected {
            // The run ended before the armed allocation: every allocation has failed once.
            return if problems.is_empty() {
                Ok(report)
            } else {
                Err(problems)
            };
        }
        report.points += 1;
    }
    let _ = writeln!(
        problems,
        "more than {SWEEP_RUN_LIMIT} allocation failure points"
    );
    Err(problems)
}

/// Heap blocks alive once the run's OS threads are gone. A simulator thread that has been joined
/// may still be freeing its thread-local storage and handle as the machine's drop returns; a leak
/// stays, so the count is read again (bounded, 200 × 1 ms of real time) while it differs from
/// `before`.
fn settled_heap_blocks(before: Option<isize>) -> Option<isize> {
    let mut after = live_heap_blocks();
    for _ in 0..200 {
        if after == before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        after = live_heap_blocks();
    }
    after
}

/// One run: whether the armed allocation was reached, and what was wrong with the run.
fn checked_run(scenario: &mut impl FnMut(u64) -> Machine, fail_at: u64) -> (bool, Option<String>) {
    let before = live_heap_blocks();
    let machine = scenario(fail_at);
    let injected = machine.faults().injected(FaultPoint::Allocation) > 0;
    machine.faults().disarm(FaultPoint::Allocation);
    let mut problem = match machine.verdict() {
        Ok(_) => String::new(),
        Err(problems) => problems.replace('\n', "; "),
    };
    drop(machine);
    // `problem` is empty (no block) when the verdict is clean: the count is the run's alone.
    let after = settled_heap_blocks(before);
    if let (Some(before), Some(after)) = (before, after) {
        if after != before {
            let _ = write!(problem, "{} heap blocks left", after - before);
        }
    }
    (injected, (!problem.is_empty()).then_some(problem))
}
