//! BufferQueue (seed MODS-BufferQueue; dmf-upstream §1.2, §4 Tests_BufferQueue): unit tests of
//! every Method, and the randomized producer/consumer scenario with close in flight.
#![cfg(feature = "sim")]
#![allow(clippy::too_many_lines, clippy::cast_possible_truncation)]

mod buffers_common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffers_common::{assert_clean, device_parent, nap, seeds, spawn, Failures, Rng, SeedGuard};
use dmf_core::module::{DynamicModule, DynamicParent, ModuleCollection, ModuleInit, NoParent};
use dmf_core::platform::contract::{EventKind, PlatformEvent, PoolTag};
use dmf_core::platform::Event;
use dmf_core::NtStatus;
use dmf_modules::buffer_pool::{
    Buffer, BufferPoolSourceSettings, BufferTimerCallback, EnumerationDisposition,
};
use dmf_modules::buffer_queue::{BufferQueue, BufferQueueConfig};
use kmdf_sim::{ClockMode, Machine};

const TAG: PoolTag = PoolTag(*b"TbqT");

fn queue(count: u32, timers: bool) -> DynamicModule<BufferQueue> {
    queue_on(&NoParent, count, timers)
}

/// A queue under `parent`; timed enqueues need a device-bound parent (the Sink pool's timer is a
/// child of the device).
fn queue_on(parent: &impl DynamicParent, count: u32, timers: bool) -> DynamicModule<BufferQueue> {
    let mut source = BufferPoolSourceSettings::new(count, 16);
    source.buffer_context_size = 4;
    source.create_with_timer = timers;
    source.pool_tag = TAG;
    BufferQueue::with(BufferQueueConfig::new(source))
        .create(parent)
        .expect("queue")
}

fn tagged_blocks(machine: &Machine) -> usize {
    machine
        .pool()
        .outstanding_by_tag(None)
        .iter()
        .filter(|u| u.tag.0 == TAG.0)
        .map(|u| u.count)
        .sum()
}

fn filled(queue: &BufferQueue, value: u8) -> Buffer {
    let mut buffer = queue.fetch().expect("fetch");
    buffer.data_mut().fill(value);
    buffer
}

/// MODS-BufferQueue: Fetch → Enqueue → Dequeue → Reuse, FIFO; EnqueueAtHead jumps the line;
/// Count counts the consumer list; an exhausted producer pool is STATUS_UNSUCCESSFUL.
#[test]
fn mods_bufferqueue_fetch_enqueue_dequeue_reuse_in_order() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let q = queue(3, false);
    assert_eq!(tagged_blocks(&machine), 3);
    q.enqueue(filled(&q, 1)).unwrap();
    q.enqueue(filled(&q, 2)).unwrap();
    q.enqueue_at_head(filled(&q, 3)).unwrap();
    assert_eq!(
        q.fetch().err(),
        Some(NtStatus::UNSUCCESSFUL),
        "producer pool empty"
    );
    assert_eq!(q.count(), Ok(3));
    let order: Vec<u8> = (0..3)
        .map(|_| {
            let buffer = q.dequeue().unwrap();
            let value = buffer.data()[0];
            q.reuse(buffer).unwrap();
            value
        })
        .collect();
    assert_eq!(order, [3, 1, 2]);
    assert_eq!(q.dequeue().err(), Some(NtStatus::UNSUCCESSFUL));
    assert_eq!(q.count(), Ok(0));
    q.delete();
    assert_clean(&machine);
}

/// MODS-BufferQueue: Flush returns every queued buffer to the producer pool; Enumerate sees the
/// consumer list and RemoveAndStop hands a buffer over.
#[test]
fn mods_bufferqueue_flush_and_enumerate() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let q = queue(4, false);
    for i in 0..4 {
        q.enqueue(filled(&q, i)).unwrap();
    }
    let mut seen = vec![];
    let removed = q
        .enumerate(|b| {
            seen.push(b.data()[0]);
            if b.data()[0] == 2 {
                EnumerationDisposition::RemoveAndStop
            } else {
                EnumerationDisposition::Continue
            }
        })
        .unwrap()
        .expect("removed");
    assert_eq!(seen, [0, 1, 2]);
    assert_eq!(removed.data()[0], 2);
    q.reuse(removed).unwrap();
    assert_eq!(q.flush(), Ok(3));
    assert_eq!(q.count(), Ok(0));
    // All four are back in the producer pool.
    let all: Vec<Buffer> = (0..4).map(|_| q.fetch().unwrap()).collect();
    for buffer in all {
        q.reuse(buffer).unwrap();
    }
    q.delete();
    assert_clean(&machine);
}

/// MODS-BufferQueue EnqueueWithTimer: an unconsumed buffer comes back through the callback; a
/// queue whose pool has no timers refuses with STATUS_INVALID_PARAMETER.
#[test]
fn mods_bufferqueue_enqueue_with_timer() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let q = queue_on(&parent, 2, true);
    let back = Arc::new(Mutex::new(Vec::new()));
    let callback: BufferTimerCallback = {
        let back = Arc::clone(&back);
        Arc::new(move |buffer| back.lock().unwrap().push(buffer))
    };
    q.enqueue_with_timer(
        filled(&q, 7),
        Duration::from_millis(5),
        Arc::clone(&callback),
    )
    .unwrap();
    q.enqueue_with_timer(
        filled(&q, 8),
        Duration::from_millis(50),
        Arc::clone(&callback),
    )
    .unwrap();
    machine.advance(Duration::from_millis(5));
    machine.settle();
    assert_eq!(back.lock().unwrap().len(), 1);
    assert_eq!(q.count(), Ok(1));
    let consumed = q.dequeue().unwrap();
    assert_eq!(consumed.data()[0], 8);
    machine.advance(Duration::from_millis(100));
    machine.settle();
    assert_eq!(back.lock().unwrap().len(), 1, "dequeued first: no callback");
    q.reuse(consumed).unwrap();
    for buffer in back.lock().unwrap().drain(..) {
        q.reuse(buffer).unwrap();
    }
    let plain = queue_on(&parent, 1, false);
    let error = plain
        .enqueue_with_timer(filled(&plain, 1), Duration::from_millis(1), callback)
        .unwrap_err();
    assert_eq!(error.status(), NtStatus::INVALID_PARAMETER);
    plain.reuse(error.into_buffer()).unwrap();
    plain.delete();
    q.delete();
    assert_clean(&machine);
}

/// MOD-50/MOD-52/53 with a real Module: the queue is a static Module of a collection; its two
/// BufferPool children are created, opened and closed with it; after close every Method is
/// STATUS_INVALID_DEVICE_STATE and buffers are handed back.
#[test]
fn mods_bufferqueue_as_a_static_module_closes_with_its_children() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let mut init = ModuleInit::new();
    let mut source = BufferPoolSourceSettings::new(2, 8);
    source.pool_tag = TAG;
    let token = init.add(BufferQueue::with(BufferQueueConfig::new(source)));
    let collection = ModuleCollection::create(init, dmf_core::module::CollectionConfig::default())
        .expect("collection");
    let q = collection.get(token).expect("handle");
    let held = q.fetch().unwrap();
    q.enqueue(filled(&q, 1)).unwrap();
    drop(collection); // destroys the device's Modules: close, then destroy
    assert_eq!(q.count(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(q.dequeue().err(), Some(NtStatus::INVALID_DEVICE_STATE));
    let error = q.reuse(held).unwrap_err();
    assert_eq!(error.status(), NtStatus::INVALID_DEVICE_STATE);
    drop(error);
    drop(q);
    assert_clean(&machine);
}

/// Tests_BufferQueue (dmf-upstream §4): producers fetch, stamp and enqueue (tail, head, with
/// timer); consumers dequeue, validate and reuse; others enumerate, count and flush — seeded,
/// concurrent, with the invariants "consumer count ≤ BufferCount" and "exactly BufferCount
/// buffers exist", and the queue closed in flight.
#[test]
fn tests_bufferqueue_scenario_random_concurrent_callers_and_close_in_flight() {
    for seed in seeds() {
        bufferqueue_scenario(seed);
    }
}

const THREADS: u64 = 4;
const COUNT: u32 = 8;

fn stamp(buffer: &mut Buffer, value: u8) {
    let (data, context) = buffer.data_and_context_mut();
    data.fill(value);
    context[0] = value;
}

fn valid(buffer: &Buffer) -> bool {
    let value = buffer.context()[0];
    buffer.data().iter().all(|&b| b == value)
}

fn bufferqueue_scenario(seed: u64) {
    let _seed = SeedGuard("tests_bufferqueue_scenario", seed);
    let machine = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let q = queue_on(&parent, COUNT, true);
    let failures = Failures::default();
    let closed = Arc::new(AtomicBool::new(false));
    let closing = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let halfway = Arc::new(Event::new(EventKind::Notification, false).unwrap());
    let on_expiry: BufferTimerCallback = {
        let (q, failures) = ((*q).clone(), failures.clone());
        Arc::new(move |buffer: Buffer| {
            if !valid(&buffer) {
                failures.record("expired buffer corrupted".into());
            }
            let _ = q.reuse(buffer);
        })
    };
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (q, failures, closed, refused, halfway, on_expiry, machine2) = (
                (*q).clone(),
                failures.clone(),
                Arc::clone(&closed),
                Arc::clone(&refused),
                Arc::clone(&halfway),
                Arc::clone(&on_expiry),
                machine.clone(),
            );
            let closing = Arc::clone(&closing);
            spawn(&machine, &format!("bufferqueue-caller-{t}"), move || {
                let mut rng = Rng::new(seed ^ (t + 1).wrapping_mul(0x7F4A_7C15));
                for i in 0..400 {
                    if i == 150 {
                        halfway.set();
                    }
                    let was_closed = closed.load(Ordering::SeqCst);
                    let fail = |what: &str| failures.record(format!("thread {t} iter {i}: {what}"));
                    let check = |result: Result<(), NtStatus>, what: &str| match result {
                        Ok(()) if was_closed => fail(&format!("{what} succeeded after close")),
                        Ok(()) => {}
                        Err(NtStatus::INVALID_DEVICE_STATE) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(NtStatus::UNSUCCESSFUL) if !was_closed => {}
                        Err(status) => fail(&format!("{what}: {status:?}")),
                    };
                    match rng.below(12) {
                        0..=3 => match q.fetch() {
                            Ok(mut buffer) => {
                                stamp(&mut buffer, rng.next() as u8);
                                let result = match rng.below(4) {
                                    0 => q.enqueue_at_head(buffer),
                                    1 => q.enqueue_with_timer(
                                        buffer,
                                        Duration::from_micros(rng.below(80)),
                                        Arc::clone(&on_expiry),
                                    ),
                                    _ => q.enqueue(buffer),
                                };
                                check(result.map_err(|e| e.status()), "enqueue");
                            }
                            Err(status) => check(Err(status), "fetch"),
                        },
                        4..=7 => match q.dequeue() {
                            Ok(buffer) => {
                                if !valid(&buffer) {
                                    fail("dequeued buffer corrupted");
                                }
                                check(q.reuse(buffer).map_err(|e| e.status()), "reuse");
                            }
                            Err(status) => check(Err(status), "dequeue"),
                        },
                        8 => {
                            let result = q.enumerate(|buffer| {
                                if !valid(buffer) {
                                    fail("enumerated buffer corrupted");
                                }
                                EnumerationDisposition::Continue
                            });
                            check(result.map(|_| ()), "enumerate");
                        }
                        9 => {
                            match q.count() {
                                Ok(n) if n > COUNT as usize => {
                                    fail(&format!("count {n} > BufferCount"));
                                }
                                result => check(result.map(|_| ()), "count"),
                            }
                            let blocks: usize = machine2
                                .pool()
                                .outstanding_by_tag(None)
                                .iter()
                                .filter(|u| u.tag.0 == TAG.0)
                                .map(|u| u.count)
                                .sum();
                            // Read after counting: if close had not begun then, all must exist.
                            if !closing.load(Ordering::SeqCst) && blocks != COUNT as usize {
                                fail(&format!("{blocks} buffers exist, not {COUNT}"));
                            }
                        }
                        10 => check(q.flush().map(|_| ()), "flush"),
                        _ => nap(Duration::from_micros(rng.below(100))),
                    }
                }
            })
        })
        .collect();
    halfway.wait(None);
    closing.store(true, Ordering::SeqCst);
    q.delete();
    closed.store(true, Ordering::SeqCst);
    for thread in &threads {
        thread.wait(None);
    }
    drop(on_expiry);
    failures.check("tests_bufferqueue_scenario", seed);
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "seed {seed}: close was not in flight"
    );
    assert_clean(&machine);
}

/// MODS-BufferQueue `EvtBufferQueueReuseCleanup` (Dmf_BufferQueue.c's Reuse, Flush and Close):
/// every buffer on its way back to the producer pool passes the callback once, writable — by
/// Reuse, by Flush, and by close for the buffers still queued (C's close flushes); a buffer the
/// client keeps or fetches does not. `DequeueWithMemoryDescriptor` is Dequeue: the buffer is its
/// own memory (`AsRef<[u8]>`, exactly the data); ContextGet checks the sentinels.
#[test]
fn mods_bufferqueue_reuse_cleanup_flush_close_and_memory_descriptor() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let cleaned: Arc<Mutex<Vec<u8>>> = Arc::default();
    let c = Arc::clone(&cleaned);
    let mut source = BufferPoolSourceSettings::new(6, 16);
    source.buffer_context_size = 4;
    source.pool_tag = TAG;
    let q = BufferQueue::with(BufferQueueConfig {
        source,
        reuse_cleanup: Some(Arc::new(move |_q: &BufferQueue, buffer: &mut Buffer| {
            c.lock().unwrap().push(buffer.data()[0]);
            // Writable: the client releases what it attached (here: clears the context).
            buffer.context_mut().fill(0);
        })),
    })
    .create(&NoParent)
    .expect("queue");
    for value in 1..=5 {
        let mut buffer = filled(&q, value);
        buffer.context_mut().fill(0xEE);
        q.enqueue(buffer).unwrap();
    }
    let mut head = q.dequeue_with_memory_descriptor().unwrap();
    assert_eq!(
        head.as_ref(),
        &[1u8; 16][..],
        "the memory is the data, 16 bytes"
    );
    assert_eq!(q.context_get(&mut head).unwrap(), &[0xEE; 4]);
    q.reuse(head).unwrap();
    assert_eq!(*cleaned.lock().unwrap(), [1]);
    let fetched = q.fetch().unwrap();
    assert_eq!(fetched.context(), &[0; 4], "cleaned before it went back");
    assert_eq!(q.flush(), Ok(4));
    assert_eq!(
        *cleaned.lock().unwrap(),
        [1, 2, 3, 4, 5],
        "flush cleans in order"
    );
    for value in [6, 7] {
        q.enqueue(filled(&q, value)).unwrap();
    }
    let mut kept = fetched;
    kept.simulate_overrun(dmf_modules::buffer_pool::BufferRegion::Context, &[1]);
    assert_eq!(q.context_get(&mut kept).err(), Some(NtStatus::DATA_ERROR));
    drop(kept);
    q.delete();
    assert_eq!(
        *cleaned.lock().unwrap(),
        [1, 2, 3, 4, 5, 6, 7],
        "close flushes the queued buffers through the callback"
    );
    assert_eq!(tagged_blocks(&machine), 0);
    assert_clean(&machine);
}

/// Without a cleanup callback close flushes nothing through anything and frees every buffer;
/// the Methods added are refused once the queue is gone.
#[test]
fn mods_bufferqueue_methods_after_close_are_invalid_device_state() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let q = queue(2, false);
    q.enqueue(filled(&q, 1)).unwrap();
    let mut held = q.fetch().unwrap();
    let user = (*q).clone();
    q.delete();
    assert_eq!(
        user.dequeue_with_memory_descriptor().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(
        user.context_get(&mut held).err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    let refused = user.reuse(held).unwrap_err();
    assert_eq!(refused.status(), NtStatus::INVALID_DEVICE_STATE);
    drop(refused);
    drop(user);
    assert_eq!(tagged_blocks(&machine), 0);
    assert_clean(&machine);
}
