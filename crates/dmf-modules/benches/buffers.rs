//! Buffer Modules against plain concurrent containers holding the same buffers.
//!
//! - `buffer_get_put`: `BufferPool::get` + `put` (a Method each: rundown guard, the Module's
//!   spin lock, the sentinel check) against `crossbeam_queue::ArrayQueue` pop + push (the
//!   lock-free baseline) and a `Mutex<Vec<_>>` pool, all cycling the same kind of `Buffer`.
//!   Targets: BufferPool within 2× of ArrayQueue, faster than the mutex pool.
//! - `buffer_get_put_2_threads`: the same three, with two threads cycling buffers through one
//!   pool at once (time per get+put on each thread; this machine has two cores).
//! - `method_breakdown`: where a Method's time goes on the simulator — `BufferPool::count` (guard +
//!   lock + len) and a bare platform spin lock acquire/release (kmdf-sim's, with the verifier's
//!   bookkeeping).
//! - `ring_write_read`: RingBuffer write + read (two lock-free Methods: each the Module's state
//!   check and the ring's spin lock, inlined here like the baseline's `Mutex` and `VecDeque`)
//!   against `Mutex<VecDeque>` write + read, 32-byte items, 64 slots; and two `items_count`
//!   calls (the same entry and lock, no work) to show what the two Methods' entries and locks
//!   cost by themselves: the difference to write + read is the ring's own work.
//!
//! Run: `cargo bench -p dmf-modules --bench buffers` (short measurement times; the numbers are
//! for comparison within one run, on the simulator platform).
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use crossbeam_queue::ArrayQueue;
use dmf_core::module::NoParent;
use dmf_core::platform::contract::PlatformSpinLock;
use dmf_core::platform::SpinLock;
use dmf_modules::buffer_pool::{Buffer, BufferPool, BufferPoolConfig, BufferPoolSourceSettings};
use dmf_modules::ring_buffer::{RingBuffer, RingBufferConfig, RingBufferMode};
use kmdf_sim::Machine;

const BUFFERS: u32 = 64;
const SIZE: u32 = 64;

fn config() -> BufferPoolConfig {
    let mut settings = BufferPoolSourceSettings::new(BUFFERS, SIZE);
    settings.buffer_context_size = 16;
    BufferPoolConfig::source(settings)
}

fn buffer_get_put(c: &mut Criterion) {
    let machine = Machine::new();
    let _bound = machine.enter();
    let pool = BufferPool::with(config()).create(&NoParent).expect("pool");
    // The baselines hold buffers of a second pool: the same type, size and allocation.
    let donor = BufferPool::with(config()).create(&NoParent).expect("donor");
    let queue = ArrayQueue::new(BUFFERS as usize);
    let mut vec = Vec::with_capacity(BUFFERS as usize);
    for i in 0..BUFFERS {
        let buffer: Buffer = donor.get().expect("buffer");
        if i % 2 == 0 {
            queue.push(buffer).expect("room");
        } else {
            vec.push(buffer);
        }
    }
    // Top both baselines up to BUFFERS with a third pool's buffers.
    let extra = BufferPool::with(BufferPoolConfig::source({
        let mut settings = BufferPoolSourceSettings::new(3 * BUFFERS, SIZE);
        settings.buffer_context_size = 16;
        settings
    }))
    .create(&NoParent)
    .expect("extra");
    while queue.len() < BUFFERS as usize {
        queue.push(extra.get().expect("buffer")).expect("room");
    }
    while vec.len() < BUFFERS as usize {
        vec.push(extra.get().expect("buffer"));
    }
    let mutex_pool = Mutex::new(vec);

    single_thread(c, &pool, &queue, &mutex_pool);
    two_threads(c, &machine, &pool, &queue, &mutex_pool);
    breakdown(c, &pool, &extra);

    drop(queue);
    drop(mutex_pool);
    drop((pool, donor, extra));
    assert!(machine.pool().outstanding().is_empty());
}

fn single_thread(
    c: &mut Criterion,
    pool: &BufferPool,
    queue: &ArrayQueue<Buffer>,
    mutex_pool: &Mutex<Vec<Buffer>>,
) {
    let mut group = c.benchmark_group("buffer_get_put");
    group.bench_function("BufferPool get+put", |b| {
        b.iter(|| {
            let buffer = pool.get().expect("get");
            pool.put(black_box(buffer)).expect("put");
        });
    });
    group.bench_function("ArrayQueue pop+push (baseline)", |b| {
        b.iter(|| {
            let buffer = queue.pop().expect("pop");
            queue.push(black_box(buffer)).expect("push");
        });
    });
    group.bench_function("Mutex<Vec> pop+push", |b| {
        b.iter(|| {
            let buffer = mutex_pool.lock().unwrap().pop().expect("pop");
            mutex_pool.lock().unwrap().push(black_box(buffer));
        });
    });
    group.finish();
}

fn two_threads(
    c: &mut Criterion,
    machine: &Machine,
    pool: &BufferPool,
    queue: &ArrayQueue<Buffer>,
    mutex_pool: &Mutex<Vec<Buffer>>,
) {
    let mut group = c.benchmark_group("buffer_get_put_2_threads");
    group.bench_function("BufferPool get+put", |b| {
        b.iter_custom(|iters| {
            on_two_threads(machine, iters, || {
                let buffer = pool.get().expect("get");
                pool.put(black_box(buffer)).expect("put");
            })
        });
    });
    group.bench_function("ArrayQueue pop+push (baseline)", |b| {
        b.iter_custom(|iters| {
            on_two_threads(machine, iters, || {
                let buffer = queue.pop().expect("pop");
                queue.push(black_box(buffer)).expect("push");
            })
        });
    });
    group.bench_function("Mutex<Vec> pop+push", |b| {
        b.iter_custom(|iters| {
            on_two_threads(machine, iters, || {
                let buffer = mutex_pool.lock().unwrap().pop().expect("pop");
                mutex_pool.lock().unwrap().push(black_box(buffer));
            })
        });
    });
    group.finish();
}

fn breakdown(c: &mut Criterion, pool: &BufferPool, extra: &BufferPool) {
    let mut group = c.benchmark_group("method_breakdown");
    group.bench_function("BufferPool count (guard + lock)", |b| {
        b.iter(|| black_box(pool.count().expect("count")));
    });
    let mut held = pool.get().expect("get");
    group.bench_function("BufferPool context_get (guard + sentinel check)", |b| {
        b.iter(|| black_box(pool.context_get(&mut held).expect("context").len()));
    });
    pool.put(held).expect("put");
    let free = dmf_core::free_list::FreeList::with_capacity(BUFFERS as usize).expect("list");
    for key in free.mint().expect("keys") {
        free.push(key, donor_buffer(extra)).expect("push");
    }
    group.bench_function("FreeList pop+push (the lock-free list alone)", |b| {
        b.iter(|| {
            let dmf_core::free_list::Pop::Item(key, buffer) = free.pop() else {
                panic!("empty")
            };
            free.push(key, black_box(buffer)).expect("push");
        });
    });
    drop(free);
    let lock = SpinLock::new().expect("lock");
    group.bench_function("platform SpinLock acquire+release", |b| {
        b.iter(|| {
            lock.acquire();
            lock.release();
        });
    });
    group.finish();
}

/// Runs `op` `iters` times on each of two threads started together; the wall time of the pair.
fn on_two_threads(machine: &Machine, iters: u64, op: impl Fn() + Sync) -> Duration {
    let start = Barrier::new(3);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let _bound = machine.enter();
                start.wait();
                for _ in 0..iters {
                    op();
                }
            });
        }
        start.wait();
        let began = Instant::now();
        // The scope joins both threads before it returns.
        began
    })
    .elapsed()
}

fn donor_buffer(pool: &BufferPool) -> Buffer {
    pool.get().expect("buffer")
}

/// RingBuffer write + read against `Mutex<VecDeque>`, in the same run.
fn ring_write_read(c: &mut Criterion) {
    let machine = Machine::new();
    let _bound = machine.enter();
    let module = RingBuffer::with(RingBufferConfig {
        item_count: 64,
        item_size: 32,
        mode: RingBufferMode::FailIfFullOnWrite,
    })
    .create(&NoParent)
    .unwrap();
    let ring = Mutex::new(VecDeque::with_capacity(64));
    let item = [0_u8; 32];
    let mut out = [0_u8; 32];
    let mut group = c.benchmark_group("ring_write_read");
    group.bench_function("RingBuffer write+read", |b| {
        b.iter(|| {
            module.write(black_box(&item)).unwrap();
            module.read(black_box(&mut out)).unwrap();
        });
    });
    group.bench_function("RingBuffer items_count x2 (entry + lock, no work)", |b| {
        b.iter(|| {
            black_box(module.items_count().unwrap());
            black_box(module.items_count().unwrap());
        });
    });
    group.bench_function("Mutex<VecDeque> write+read (baseline)", |b| {
        b.iter(|| {
            ring.lock().unwrap().push_back(black_box(item));
            black_box(ring.lock().unwrap().pop_front());
        });
    });
    group.finish();
    drop(module);
    assert!(machine.pool().outstanding().is_empty());
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
    targets = buffer_get_put, ring_write_read
}
criterion_main!(benches);
