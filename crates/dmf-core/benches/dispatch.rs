//! Dispatch cost: one PnP callback (D0Entry through the phase function) and one IOCTL that nobody
//! takes, through a tree of 64 Modules with empty callbacks, against the floor — a hand-written loop
//! over 64 `Box<dyn Trait>` objects — in the same run. Also: the framework's memory per Module
//! (object size plus allocations, counted by a global allocator), and the cost of the `TypeId`
//! check on context access.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::semicolon_if_nothing_returned,
    clippy::cast_precision_loss
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use dmf_core::module::{
    Dispatched, Handled, IoRequest, ModuleCallbacks, ModuleCollection, ModuleInit, PowerDeviceState,
};
use dmf_core::NtStatus;

#[path = "../tests/io_fixture/mod.rs"]
mod io_fixture;
use dmf_core::NtResult;
use dmf_macros::{dmf_callbacks, dmf_module};

struct Counting;
/// Bytes requested by every allocation (gross, temporaries included).
static BYTES: AtomicUsize = AtomicUsize::new(0);
/// Allocations made.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated and not yet freed (net, what a Module keeps).
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        COUNT.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[dmf_module(crate = ::dmf_core, config = u8, open = Create, lock = Dispatch)]
pub struct Node;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Node {
    fn child_modules_add(m: &Dispatched<'_, Self>, init: &mut ModuleInit) {
        for _ in 0..*m.config() {
            init.add(Node::with(0));
        }
    }
    fn d0_entry(m: &Dispatched<'_, Self>, previous: PowerDeviceState) -> NtResult<()> {
        black_box((m, previous));
        Ok(())
    }
    fn device_io_control(m: &Dispatched<'_, Self>, io: &mut IoRequest<'_>) -> Handled {
        black_box((m, io.ioctl_code()));
        Handled::NotHandled
    }
}

impl Node {
    fn touch(&self) -> u8 {
        let m = self.enter().unwrap();
        *m.config()
    }
}

trait Floor {
    fn d0_entry(&self, previous: PowerDeviceState) -> NtResult<()>;
    fn device_io_control(&self, io: &mut IoRequest<'_>) -> bool;
}
struct F;
impl Floor for F {
    fn d0_entry(&self, previous: PowerDeviceState) -> NtResult<()> {
        black_box((std::ptr::from_ref(self), previous));
        Ok(())
    }
    fn device_io_control(&self, io: &mut IoRequest<'_>) -> bool {
        black_box((std::ptr::from_ref(self), io.ioctl_code()));
        false
    }
}

/// 8 top-level Modules with 7 children each: 64 Modules.
fn tree() -> (ModuleCollection, Vec<dmf_core::module::Added<Node>>) {
    let mut init = ModuleInit::new();
    let tokens = (0..8).map(|_| init.add(Node::with(7))).collect();
    (
        ModuleCollection::create(init, dmf_core::module::CollectionConfig::default()).unwrap(),
        tokens,
    )
}

fn bench(c: &mut Criterion) {
    let machine = kmdf_sim::Machine::new();
    let _g = machine.enter();

    // The Module's own lock alone: a platform (kmdf-sim) spin lock, which must stay one. Averaged
    // over 64 locks, as the Modules are (kmdf-sim's lock registry grows in nodes).
    let live0 = LIVE.load(Ordering::Relaxed);
    let locks: Vec<_> = (0..64)
        .map(|_| dmf_core::sync::ModuleLock::new(dmf_core::sync::LockKind::Spin, ()).unwrap())
        .collect();
    let lock_bytes = (LIVE.load(Ordering::Relaxed)
        - live0
        - locks.capacity() * std::mem::size_of_val(&locks[0]))
        / 64
        + std::mem::size_of_val(&locks[0]);
    drop(locks);

    let (bytes0, count0, live0) = (
        BYTES.load(Ordering::Relaxed),
        COUNT.load(Ordering::Relaxed),
        LIVE.load(Ordering::Relaxed),
    );
    let (collection, tokens) = tree();
    let (bytes, count, live) = (
        BYTES.load(Ordering::Relaxed) - bytes0,
        COUNT.load(Ordering::Relaxed) - count0,
        LIVE.load(Ordering::Relaxed) - live0,
    );
    println!(
        "memory: {live} bytes kept for 64 Modules = {} bytes per Module, of which {lock_bytes} are \
         the Module's own platform lock (kmdf-sim object and its allocations); context `()`, \
         config `u8`, object size {} bytes, counted in the allocations. Gross: {bytes} bytes in \
         {count} allocations = {:.1} allocations per Module (temporaries included)",
        live / 64,
        dmf_core::module::__private::MODULE_OBJECT_SIZE,
        count as f64 / 64.0,
    );

    let floor: Vec<Box<dyn Floor>> = (0..64).map(|_| Box::new(F) as Box<dyn Floor>).collect();
    // One real application IOCTL, offered again and again: nobody takes it.
    let fx = io_fixture::IoFixture::new(&machine);
    let mut io = IoRequest::new(Some(&fx.queue), fx.ioctl(0x22_2000, &[], 0));

    let mut group = c.benchmark_group("dispatch-64");
    group.bench_function("d0_entry/framework", |b| {
        b.iter(|| collection.d0_entry(black_box(PowerDeviceState::D3)))
    });
    group.bench_function("d0_entry/floor", |b| {
        b.iter(|| {
            for o in &floor {
                o.d0_entry(black_box(PowerDeviceState::D3))?;
            }
            NtResult::Ok(())
        })
    });
    group.bench_function("ioctl/framework", |b| {
        b.iter(|| collection.device_io_control(black_box(&mut io)))
    });
    group.bench_function("ioctl/floor", |b| {
        b.iter(|| {
            for o in &floor {
                if o.device_io_control(black_box(&mut io)) {
                    return true;
                }
            }
            false
        })
    });
    group.finish();
    fx.finish(io.into_request(), NtStatus::NOT_SUPPORTED);
    let node = collection.get(tokens[0]).unwrap();
    c.bench_function("method/enter+config(TypeId check)", |b| {
        b.iter(|| black_box(&node).touch())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
