//! BufferPool (seed MODS-BufferPool; dmf-upstream §5.3 internals, §4 Tests_BufferPool): unit tests
//! of every Method and mode, and the randomized concurrent scenario with close in flight.
#![cfg(feature = "sim")]
#![allow(clippy::too_many_lines, clippy::cast_possible_truncation)]

mod buffers_common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffers_common::{
    assert_clean, device_parent, nap, seeds, spawn, DeviceParent, Failures, Rng, SeedGuard,
};
use dmf_core::module::{DynamicModule, NoParent};
use dmf_core::platform::contract::{EventKind, PlatformEvent, PoolTag};
use dmf_core::platform::Event;
use dmf_core::NtStatus;
use dmf_modules::buffer_pool::{
    Buffer, BufferPool, BufferPoolConfig, BufferPoolSourceSettings, BufferRegion,
    BufferTimerCallback, EnumerationDisposition,
};
use kmdf_sim::{ClockMode, Machine};

const TAG: PoolTag = PoolTag(*b"TbpT");

fn settings(count: u32, size: u32) -> BufferPoolSourceSettings {
    let mut s = BufferPoolSourceSettings::new(count, size);
    s.pool_tag = TAG;
    s
}

fn source(s: BufferPoolSourceSettings) -> DynamicModule<BufferPool> {
    BufferPool::with(BufferPoolConfig::source(s))
        .create(&NoParent)
        .expect("source pool")
}

fn sink() -> DynamicModule<BufferPool> {
    BufferPool::with(BufferPoolConfig::sink())
        .create(&NoParent)
        .expect("sink pool")
}

/// A Sink pool on a device, whose timer (a child of the device) takes timed buffers.
fn timed_sink(parent: &DeviceParent) -> DynamicModule<BufferPool> {
    BufferPool::with(BufferPoolConfig::sink())
        .create(parent)
        .expect("sink pool")
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

/// MODS-BufferPool, §5.3 layout: a Source pool preallocates BufferCount tagged buffers with data
/// and context of the configured sizes. A Source pool hands out the buffer put last first (LIFO,
/// as the kernel's lookaside S-lists do; see the module remarks), so Put and PutAtHead agree.
#[test]
fn mods_bufferpool_source_preallocates_tagged_buffers_and_reuses_the_last_put_first() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let mut s = settings(3, 32);
    s.buffer_context_size = 8;
    let pool = source(s);
    assert_eq!(pool.count(), Ok(3));
    assert_eq!(
        tagged_blocks(&machine),
        3,
        "one tagged allocation per buffer"
    );

    let mut a = pool.get().unwrap();
    assert_eq!((a.data().len(), a.context().len()), (32, 8));
    assert!(a.data().iter().all(|&b| b == 0), "pool memory is zeroed");
    a.data_mut()[0] = 1;
    a.context_mut()[0] = 0xC1;
    pool.put(a).unwrap();
    // The buffer put back comes first, then the two untouched ones.
    let mut a = pool.get().unwrap();
    let b = pool.get().unwrap();
    let c = pool.get().unwrap();
    assert_eq!((a.data()[0], b.data()[0], c.data()[0]), (1, 0, 0));
    assert_eq!(pool.context_get(&mut a).unwrap()[0], 0xC1);
    assert_eq!(pool.count(), Ok(0));
    // PutAtHead: the next Get returns it; so does a plain Put.
    pool.put(b).unwrap();
    pool.put_at_head(a).unwrap();
    let a = pool.get().unwrap();
    assert_eq!(a.data()[0], 1);
    pool.put(a).unwrap();
    assert_eq!(pool.get().unwrap().data()[0], 1);
    drop(c); // a client may drop a buffer: its memory is freed, the pool has one less
    assert_eq!(pool.count(), Ok(1));
    pool.delete();
    assert_clean(&machine);
}

/// §5.3 sentinels, Get side: an overrun done while the pool holds the buffer (as DMA or unsafe
/// code could; here through `enumerate`'s access) is found by the next Get — on the Source pool's
/// lock-free path and on a Sink pool — which frees the buffer and answers STATUS_DATA_ERROR with
/// an error trace; the Source pool has one buffer less from then on.
#[test]
fn mods_bufferpool_sentinels_detect_overruns_on_get() {
    use EnumerationDisposition as D;
    let machine = Machine::new();
    let _bound = machine.enter();
    let mut s = settings(3, 8);
    s.buffer_context_size = 4;
    let pool = source(s);
    let sink = sink();
    pool.enumerate(|b| {
        b.simulate_overrun(BufferRegion::Context, &[0xEE]);
        D::Stop
    })
    .unwrap();
    assert_eq!(pool.get().err(), Some(NtStatus::DATA_ERROR));
    assert_eq!(pool.count(), Ok(2));
    assert_eq!(tagged_blocks(&machine), 2, "the corrupted buffer was freed");
    sink.put(pool.get().unwrap()).unwrap();
    sink.enumerate(|b| {
        b.simulate_overrun(BufferRegion::Data, &[0xEE]);
        D::Stop
    })
    .unwrap();
    assert_eq!(sink.get().err(), Some(NtStatus::DATA_ERROR));
    assert_eq!((pool.count(), sink.count()), (Ok(1), Ok(0)));
    assert_eq!(tagged_blocks(&machine), 1);
    let overruns = machine
        .trace()
        .events()
        .into_iter()
        .filter(|e| e.text.contains("buffer overrun detected by get"))
        .count();
    assert_eq!(overruns, 2);
    sink.delete();
    pool.delete();
    assert_clean(&machine);
}

/// §5.3 Enumerate on a Source pool: head (last put) first; continue, stop and remove-and-stop;
/// the timer dispositions are continue/stop (a Source pool holds no timed buffer); the removed
/// buffer goes back in.
#[test]
fn mods_bufferpool_enumerate_a_source_pool() {
    use EnumerationDisposition as D;
    let machine = Machine::new();
    let _bound = machine.enter();
    let pool = source(settings(4, 8));
    let mut held: Vec<Buffer> = (0..4).map(|_| pool.get().unwrap()).collect();
    for (i, buffer) in held.iter_mut().enumerate() {
        buffer.data_mut()[0] = i as u8;
    }
    for buffer in held.drain(..) {
        pool.put(buffer).unwrap();
    }
    let mut seen = vec![];
    assert!(pool
        .enumerate(|b| {
            seen.push(b.data()[0]);
            D::ResetTimerAndContinue
        })
        .unwrap()
        .is_none());
    assert_eq!(seen, [3, 2, 1, 0]);
    let mut n = 0;
    assert!(pool
        .enumerate(|_| {
            n += 1;
            D::StopTimerAndStop
        })
        .unwrap()
        .is_none());
    assert_eq!(n, 1);
    let removed = pool
        .enumerate(|b| {
            if b.data()[0] == 1 {
                D::RemoveAndStop
            } else {
                b.data_mut()[1] = 0xEE;
                D::Continue
            }
        })
        .unwrap()
        .expect("removed");
    assert_eq!(removed.data()[0], 1);
    assert_eq!(pool.count(), Ok(3));
    pool.put(removed).unwrap();
    let order: Vec<(u8, u8)> = (0..4)
        .map(|_| pool.get().unwrap())
        .map(|b| (b.data()[0], b.data()[1]))
        .collect();
    assert_eq!(order, [(1, 0), (3, 0xEE), (2, 0xEE), (0, 0)]);
    pool.delete();
    assert_clean(&machine);
}

/// MODS-BufferPool: Get on an empty Source pool without lookaside is STATUS_UNSUCCESSFUL.
#[test]
fn mods_bufferpool_empty_source_without_lookaside_is_unsuccessful() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let pool = source(settings(1, 8));
    let held = pool.get().unwrap();
    assert_eq!(pool.get().err(), Some(NtStatus::UNSUCCESSFUL));
    pool.put(held).unwrap();
    pool.delete();
    assert_clean(&machine);
}

/// §5.3 lookaside: Get on empty allocates an additional buffer; Put of an additional buffer frees
/// it, so the list never exceeds the initial count.
#[test]
fn mods_bufferpool_lookaside_grows_and_frees_additional_buffers() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let mut s = settings(2, 16);
    s.enable_look_aside = true;
    let pool = source(s);
    let held: Vec<Buffer> = (0..5).map(|_| pool.get().unwrap()).collect();
    assert_eq!(held.iter().filter(|b| b.is_additional()).count(), 3);
    assert_eq!(tagged_blocks(&machine), 5);
    for buffer in held {
        pool.put(buffer).unwrap();
        assert!(
            pool.count().unwrap() <= 2,
            "never more than BufferCount listed"
        );
    }
    assert_eq!(pool.count(), Ok(2));
    assert_eq!(tagged_blocks(&machine), 2, "additional buffers were freed");
    pool.delete();
    assert_clean(&machine);
}

/// MODS-BufferPool Sink mode: starts empty, accepts buffers from any Source pool; a Source pool
/// accepts only its own buffers (the buffer is handed back with the status).
#[test]
fn mods_bufferpool_sink_accepts_source_buffers_and_sources_refuse_foreign_ones() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let one = source(settings(1, 8));
    let two = source(settings(1, 8));
    let sink = sink();
    assert_eq!(sink.count(), Ok(0));
    assert_eq!(sink.get().err(), Some(NtStatus::UNSUCCESSFUL));

    let from_one = one.get().unwrap();
    let refused = two.put(from_one).unwrap_err();
    assert_eq!(refused.status(), NtStatus::INVALID_PARAMETER);
    let from_one = refused.into_buffer();
    sink.put(from_one).unwrap();
    sink.put(two.get().unwrap()).unwrap();
    assert_eq!(sink.count(), Ok(2));

    // Buffers go home.
    one.put(sink.get().unwrap()).unwrap();
    two.put(sink.get().unwrap()).unwrap();
    assert_eq!((one.count(), two.count()), (Ok(1), Ok(1)));
    sink.delete();
    one.delete();
    two.delete();
    assert_clean(&machine);
}

/// §5.3 sentinels: an overrun past the data or the context is STATUS_DATA_ERROR on Put (the buffer
/// is handed back) and on ContextGet, with an error trace.
#[test]
fn mods_bufferpool_sentinels_detect_overruns_on_put() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let mut s = settings(2, 8);
    s.buffer_context_size = 4;
    let pool = source(s);
    let sink = sink();
    for region in [BufferRegion::Data, BufferRegion::Context] {
        let mut buffer = pool.get().unwrap();
        buffer.simulate_overrun(region, &[0xFF]);
        let error = sink.put(buffer).unwrap_err();
        assert_eq!(error.status(), NtStatus::DATA_ERROR, "{region:?}");
        let mut buffer = error.into_buffer();
        assert_eq!(
            pool.context_get(&mut buffer).err(),
            Some(NtStatus::DATA_ERROR)
        );
        assert_eq!(pool.put(buffer).unwrap_err().status(), NtStatus::DATA_ERROR);
        // The corrupted buffer is dropped (freed) here.
    }
    let texts: Vec<String> = machine
        .trace()
        .events()
        .into_iter()
        .map(|e| e.text)
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("[ERROR]") && t.contains("data sentinel")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("context sentinel")));
    sink.delete();
    pool.delete();
    assert_clean(&machine);
}

fn collector() -> (BufferTimerCallback, Arc<Mutex<Vec<Buffer>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    let callback: BufferTimerCallback = Arc::new(move |buffer| sink.lock().unwrap().push(buffer));
    (callback, got)
}

/// §5.3 PutInSinkWithTimer: after the timeout the buffer leaves the sink and reaches the callback;
/// earlier and later buffers are handled in deadline order, on the virtual clock.
#[test]
fn mods_bufferpool_put_in_sink_with_timer_hands_the_buffer_back() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let mut s = settings(3, 8);
    s.create_with_timer = true;
    let pool = source(s);
    let sink = timed_sink(&parent);
    let (callback, got) = collector();
    for (i, ms) in [(1_u8, 30_u64), (2, 10), (3, 20)] {
        let mut buffer = pool.get().unwrap();
        buffer.data_mut()[0] = i;
        sink.put_in_sink_with_timer(buffer, Duration::from_millis(ms), Arc::clone(&callback))
            .unwrap();
    }
    machine.advance(Duration::from_millis(9));
    machine.settle();
    assert!(got.lock().unwrap().is_empty());
    machine.advance(Duration::from_millis(11)); // t = 20 ms: buffers 2 and 3
    machine.settle();
    let order: Vec<u8> = got.lock().unwrap().iter().map(|b| b.data()[0]).collect();
    assert_eq!(order, [2, 3]);
    assert_eq!(sink.count(), Ok(1));
    machine.advance(Duration::from_millis(10));
    machine.settle();
    assert_eq!(got.lock().unwrap().len(), 3);
    assert_eq!(sink.count(), Ok(0));
    for buffer in got.lock().unwrap().drain(..) {
        pool.put(buffer).unwrap();
    }
    sink.delete();
    pool.delete();
    assert_clean(&machine);
}

/// §5.3 race rule: a timed buffer removed by Get before its timeout never reaches the callback;
/// timed puts need a Sink on a device (its timer's parent) and a Source created with timers.
#[test]
fn mods_bufferpool_timer_versus_get_and_timer_rules() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let mut s = settings(2, 8);
    s.create_with_timer = true;
    let pool = source(s);
    let plain = source(settings(1, 8));
    let sink = timed_sink(&parent);
    let (callback, got) = collector();

    let buffer = pool.get().unwrap();
    sink.put_in_sink_with_timer(buffer, Duration::from_millis(5), Arc::clone(&callback))
        .unwrap();
    let buffer = sink.get().unwrap();
    machine.advance(Duration::from_millis(50));
    machine.settle();
    assert!(got.lock().unwrap().is_empty(), "removed first: no callback");

    let error = pool
        .put_in_sink_with_timer(buffer, Duration::from_millis(1), Arc::clone(&callback))
        .unwrap_err();
    assert_eq!(
        error.status(),
        NtStatus::INVALID_DEVICE_REQUEST,
        "not a sink"
    );
    pool.put(error.into_buffer()).unwrap();
    let error = sink
        .put_in_sink_with_timer(plain.get().unwrap(), Duration::from_millis(1), callback)
        .unwrap_err();
    assert_eq!(
        error.status(),
        NtStatus::INVALID_PARAMETER,
        "no CreateWithTimer"
    );
    plain.put(error.into_buffer()).unwrap();
    // A Sink pool without a device has no timer to parent: a timed put is refused with a status
    // and the buffer comes back; untimed puts still work.
    let deviceless = BufferPool::with(BufferPoolConfig::sink())
        .create(&NoParent)
        .unwrap();
    let error = deviceless
        .put_in_sink_with_timer(pool.get().unwrap(), Duration::from_millis(1), collector().0)
        .unwrap_err();
    assert_eq!(
        error.status(),
        NtStatus::INVALID_DEVICE_STATE,
        "no device, no timer"
    );
    deviceless.put(error.into_buffer()).unwrap();
    assert_eq!(deviceless.count(), Ok(1));
    pool.put(deviceless.get().unwrap()).unwrap();
    deviceless.delete();
    sink.delete();
    pool.delete();
    plain.delete();
    assert_clean(&machine);
}

/// §5.3 Enumerate: every disposition — continue, stop, remove-and-stop (buffer returned),
/// stop-timer, reset-timer (full period again).
#[test]
fn mods_bufferpool_enumerate_applies_every_disposition() {
    use EnumerationDisposition as D;
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let mut s = settings(4, 8);
    s.create_with_timer = true;
    let pool = source(s);
    let sink = timed_sink(&parent);
    let (callback, got) = collector();
    for i in 0..4_u8 {
        let mut buffer = pool.get().unwrap();
        buffer.data_mut()[0] = i;
        sink.put_in_sink_with_timer(buffer, Duration::from_millis(10), Arc::clone(&callback))
            .unwrap();
    }
    // Continue visits all; Stop stops at once.
    let mut seen = vec![];
    assert!(sink
        .enumerate(|b| {
            seen.push(b.data()[0]);
            D::Continue
        })
        .unwrap()
        .is_none());
    assert_eq!(seen, [0, 1, 2, 3]);
    let mut visits = 0;
    sink.enumerate(|_| {
        visits += 1;
        D::Stop
    })
    .unwrap();
    assert_eq!(visits, 1);
    // Stop the timer of 0 and 1; reset the timer of 2 at t = 5 ms (new deadline 15 ms).
    sink.enumerate(|b| match b.data()[0] {
        0 => D::StopTimerAndContinue,
        1 => D::StopTimerAndStop,
        _ => D::Continue,
    })
    .unwrap();
    machine.advance(Duration::from_millis(5));
    machine.settle();
    sink.enumerate(|b| {
        if b.data()[0] == 2 {
            D::ResetTimerAndStop
        } else {
            D::Continue
        }
    })
    .unwrap();
    machine.advance(Duration::from_millis(5)); // t = 10: only 3 expires
    machine.settle();
    let expired: Vec<u8> = got.lock().unwrap().iter().map(|b| b.data()[0]).collect();
    assert_eq!(expired, [3]);
    machine.advance(Duration::from_millis(5)); // t = 15: 2 expires
    machine.settle();
    assert_eq!(got.lock().unwrap().len(), 2);
    // ResetTimerAndContinue on a buffer without a timer just continues.
    let mut n = 0;
    sink.enumerate(|_| {
        n += 1;
        D::ResetTimerAndContinue
    })
    .unwrap();
    assert_eq!(n, 2);
    // RemoveAndStop hands the buffer over.
    let removed = sink
        .enumerate(|b| {
            if b.data()[0] == 1 {
                D::RemoveAndStop
            } else {
                D::Continue
            }
        })
        .unwrap()
        .expect("removed");
    assert_eq!(removed.data()[0], 1);
    assert_eq!(sink.count(), Ok(1));
    machine.advance(Duration::from_secs(1));
    machine.settle();
    assert_eq!(got.lock().unwrap().len(), 2, "stopped timers never fire");
    pool.put(removed).unwrap();
    for buffer in got.lock().unwrap().drain(..) {
        pool.put(buffer).unwrap();
    }
    sink.delete();
    pool.delete();
    assert_clean(&machine);
}

/// §5.3 close flush and MOD-64: Close stops the timer and frees every listed buffer (timed ones
/// included, without calling back); afterwards every Method is STATUS_INVALID_DEVICE_STATE and a
/// refused Put hands the buffer back.
#[test]
fn mods_bufferpool_close_flushes_and_later_calls_are_invalid_device_state() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let mut s = settings(4, 8);
    s.create_with_timer = true;
    let pool = source(s);
    let sink = timed_sink(&parent);
    let (callback, got) = collector();
    for _ in 0..2 {
        sink.put_in_sink_with_timer(
            pool.get().unwrap(),
            Duration::from_millis(10),
            Arc::clone(&callback),
        )
        .unwrap();
    }
    sink.put(pool.get().unwrap()).unwrap();
    let held = pool.get().unwrap();
    let sink_handle: BufferPool = (*sink).clone();
    sink.delete();
    machine.advance(Duration::from_secs(1));
    machine.settle();
    assert!(got.lock().unwrap().is_empty(), "flushed, not called back");
    assert_eq!(sink_handle.count(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(
        sink_handle.get().err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert!(sink_handle
        .enumerate(|_| EnumerationDisposition::Continue)
        .is_err());
    let refused = sink_handle.put(held).unwrap_err();
    assert_eq!(refused.status(), NtStatus::INVALID_DEVICE_STATE);
    let held = refused.into_buffer();
    assert_eq!(tagged_blocks(&machine), 1, "only the held buffer is left");
    pool.delete();
    drop(held);
    drop(sink_handle);
    assert_clean(&machine);
}

/// MODS-BufferPool config validation and failure unwinding: a zero BufferSize fails creation; an
/// allocation failing at any point of open leaves nothing behind.
#[test]
fn mods_bufferpool_open_failures_leak_nothing() {
    let machine = Machine::new();
    let _bound = machine.enter();
    assert_eq!(
        BufferPool::with(BufferPoolConfig::source(settings(1, 0)))
            .create(&NoParent)
            .err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    for n in 1..=4 {
        machine
            .faults()
            .fail_nth(kmdf_sim::fault::FaultPoint::Allocation, n);
        let result = BufferPool::with(BufferPoolConfig::source(settings(4, 8))).create(&NoParent);
        assert_eq!(
            result.err(),
            Some(NtStatus::INSUFFICIENT_RESOURCES),
            "n = {n}"
        );
        machine
            .faults()
            .disarm(kmdf_sim::fault::FaultPoint::Allocation);
        assert_eq!(tagged_blocks(&machine), 0, "n = {n}");
    }
    // Lookaside growth failing is an error, not a panic.
    let mut s = settings(0, 8);
    s.enable_look_aside = true;
    let pool = source(s);
    machine
        .faults()
        .fail_nth(kmdf_sim::fault::FaultPoint::Allocation, 1);
    assert_eq!(pool.get().err(), Some(NtStatus::INSUFFICIENT_RESOURCES));
    pool.delete();
    assert_clean(&machine);
}

/// Tests_BufferPool (dmf-upstream §4): caller threads do seeded random get / put / put-at-head /
/// put-with-timer (the timer callback validates the buffer and gives it back) / enumerate with
/// random dispositions / count, validating data and the count invariants, while the test closes
/// both pools in flight. Afterwards every call is STATUS_INVALID_DEVICE_STATE; the verifier saw
/// nothing and no pool memory is left.
#[test]
fn tests_bufferpool_scenario_random_concurrent_callers_and_close_in_flight() {
    for seed in seeds() {
        bufferpool_scenario(seed);
    }
}

const THREADS: u64 = 3;
const COUNT: u32 = 6;
const SINK_CAP: usize = 8;
const HOLD: usize = 2;

/// Fills a buffer with one byte value and stores it in the context (validated on the way back).
fn stamp(buffer: &mut Buffer, value: u8) {
    let (data, context) = buffer.data_and_context_mut();
    data.fill(value);
    context[0] = value;
}

fn valid(buffer: &Buffer) -> bool {
    let value = buffer.context()[0];
    buffer.data().iter().all(|&b| b == value)
}

fn bufferpool_scenario(seed: u64) {
    let _seed = SeedGuard("tests_bufferpool_scenario", seed);
    let machine = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let mut s = settings(COUNT, 24);
    s.buffer_context_size = 4;
    s.enable_look_aside = true;
    s.create_with_timer = true;
    let source = source(s);
    let sink = timed_sink(&parent);
    let failures = Failures::default();
    let closed = Arc::new(AtomicBool::new(false));
    let expired = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    // Source + sink (cap + racing threads) + held + one in transit per thread + one expiring.
    let bound = COUNT as usize + SINK_CAP + THREADS as usize * (HOLD + 2) + 1;
    let halfway = Arc::new(Event::new(EventKind::Notification, false).unwrap());

    let on_expiry: BufferTimerCallback = {
        let (source, failures, expired) =
            ((*source).clone(), failures.clone(), Arc::clone(&expired));
        Arc::new(move |buffer: Buffer| {
            expired.fetch_add(1, Ordering::Relaxed);
            if !valid(&buffer) {
                failures.record(format!("expired buffer corrupted: {buffer:?}"));
            }
            let _ = source.put(buffer); // refused after close: dropped, which frees it
        })
    };

    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (source, sink, failures, closed, machine2, on_expiry, halfway) = (
                (*source).clone(),
                (*sink).clone(),
                failures.clone(),
                Arc::clone(&closed),
                machine.clone(),
                Arc::clone(&on_expiry),
                Arc::clone(&halfway),
            );
            let refused = Arc::clone(&refused);
            spawn(&machine, &format!("bufferpool-caller-{t}"), move || {
                let mut rng = Rng::new(seed ^ (t + 1).wrapping_mul(0x9E37));
                let mut held: Vec<Buffer> = Vec::new();
                for i in 0..400 {
                    if i == 150 {
                        halfway.set(); // the test closes the pools now, while we keep calling
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
                    match rng.below(10) {
                        0..=2 if held.len() < HOLD => match source.get() {
                            Ok(mut buffer) => {
                                check(Ok(()), "source.get");
                                stamp(&mut buffer, rng.next() as u8);
                                held.push(buffer);
                            }
                            Err(status) => check(Err(status), "source.get"),
                        },
                        0..=4 if !held.is_empty() => {
                            let buffer = held.swap_remove(0);
                            let full = sink.count().is_ok_and(|n| n >= SINK_CAP);
                            let result = match (full, rng.below(4)) {
                                (true, _) => source.put(buffer),
                                (false, 0) => sink.put_at_head(buffer),
                                (false, 1) => sink.put_in_sink_with_timer(
                                    buffer,
                                    Duration::from_micros(rng.below(80)),
                                    Arc::clone(&on_expiry),
                                ),
                                (false, _) => sink.put(buffer),
                            };
                            check(result.map_err(|e| e.status()), "put");
                        }
                        5 | 6 => match sink.get() {
                            Ok(buffer) => {
                                check(Ok(()), "sink.get");
                                if !valid(&buffer) {
                                    fail("buffer from the sink corrupted");
                                }
                                check(source.put(buffer).map_err(|e| e.status()), "source.put");
                            }
                            Err(status) => check(Err(status), "sink.get"),
                        },
                        7 => {
                            let pick = rng.below(7);
                            let result = sink.enumerate(|buffer| {
                                if !valid(buffer) {
                                    fail("enumerated buffer corrupted");
                                }
                                match pick {
                                    0 => EnumerationDisposition::Continue,
                                    1 => EnumerationDisposition::Stop,
                                    2 => EnumerationDisposition::RemoveAndStop,
                                    3 => EnumerationDisposition::StopTimerAndContinue,
                                    4 => EnumerationDisposition::StopTimerAndStop,
                                    5 => EnumerationDisposition::ResetTimerAndContinue,
                                    _ => EnumerationDisposition::ResetTimerAndStop,
                                }
                            });
                            match result {
                                Ok(Some(buffer)) => {
                                    check(source.put(buffer).map_err(|e| e.status()), "put");
                                }
                                Ok(None) => check(Ok(()), "enumerate"),
                                Err(status) => check(Err(status), "enumerate"),
                            }
                        }
                        8 => {
                            // A Source enumerate takes the free list exclusively while the
                            // other threads get and put lock-free.
                            let remove = rng.below(3) == 0;
                            let result = source.enumerate(|buffer| {
                                if !valid(buffer) {
                                    fail("enumerated source buffer corrupted");
                                }
                                if remove {
                                    EnumerationDisposition::RemoveAndStop
                                } else {
                                    EnumerationDisposition::Continue
                                }
                            });
                            match result {
                                Ok(Some(buffer)) => {
                                    check(source.put(buffer).map_err(|e| e.status()), "put");
                                }
                                Ok(None) => check(Ok(()), "source.enumerate"),
                                Err(status) => check(Err(status), "source.enumerate"),
                            }
                            match source.count() {
                                Ok(n) if n > COUNT as usize => {
                                    fail(&format!("source count {n} > BufferCount {COUNT}"));
                                }
                                Ok(_) => check(Ok(()), "source.count"),
                                Err(status) => check(Err(status), "source.count"),
                            }
                            match sink.count() {
                                Ok(n) if n > SINK_CAP + THREADS as usize => {
                                    fail(&format!("sink count {n} > cap + threads"));
                                }
                                Ok(_) => check(Ok(()), "sink.count"),
                                Err(status) => check(Err(status), "sink.count"),
                            }
                            let blocks = machine2
                                .pool()
                                .outstanding_by_tag(None)
                                .iter()
                                .filter(|u| u.tag.0 == TAG.0)
                                .map(|u| u.count)
                                .sum::<usize>();
                            if blocks > bound {
                                fail(&format!("{blocks} buffers alive > bound {bound}"));
                            }
                        }
                        _ => nap(Duration::from_micros(rng.below(100))),
                    }
                }
                drop(held); // buffers still held after close are simply freed
            })
        })
        .collect();

    // Close in flight: once a caller is part-way through its actions.
    halfway.wait(None);
    let mut rng = Rng::new(seed);
    let (first, second) = if rng.below(2) == 0 {
        (sink, source)
    } else {
        (source, sink)
    };
    first.delete();
    second.delete();
    closed.store(true, Ordering::SeqCst);
    for thread in &threads {
        thread.wait(None);
    }
    drop(on_expiry);
    failures.check("tests_bufferpool_scenario", seed);
    assert_clean(&machine);
    let refused = refused.load(Ordering::Relaxed);
    assert!(refused > 0, "seed {seed}: the close was not in flight");
    eprintln!(
        "seed {seed}: {} timed buffers expired, {refused} calls refused after close began",
        expired.load(Ordering::Relaxed)
    );
}

/// MODS-BufferPool `ParametersGet` and the buffer as its own memory (`GetWithMemory`,
/// `GetWithMemoryDescriptor`): the sizes of data and context, from the pool (checked: open,
/// sentinels) and from the buffer; `AsRef`/`AsMut` are exactly the data, so a request built over
/// the buffer never reaches the sentinel or the context.
#[test]
fn mods_bufferpool_parameters_get_and_the_buffer_as_request_memory() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let mut s = settings(2, 24);
    s.buffer_context_size = 8;
    let pool = source(s);
    let sink = sink();
    let mut buffer = pool.get().unwrap();
    let expected = dmf_modules::buffer_pool::BufferParameters {
        buffer_size: 24,
        buffer_context_size: 8,
    };
    assert_eq!(pool.parameters_get(&buffer), Ok(expected));
    assert_eq!(sink.parameters_get(&buffer), Ok(expected), "any open pool");
    assert_eq!(buffer.parameters(), expected);
    buffer.as_mut().fill(0x5A);
    assert_eq!(buffer.as_ref().len(), 24);
    assert!(
        buffer.context().iter().all(|b| *b == 0),
        "the context untouched"
    );
    let write = dmf_modules::request_target::SendRequest::write(buffer.as_ref());
    let _ = write;
    buffer.simulate_overrun(BufferRegion::Data, &[0]);
    assert_eq!(pool.parameters_get(&buffer), Err(NtStatus::DATA_ERROR));
    let user = (*pool).clone();
    drop(buffer);
    pool.delete();
    let other = source(settings(1, 4));
    let b = other.get().unwrap();
    assert_eq!(user.parameters_get(&b), Err(NtStatus::INVALID_DEVICE_STATE));
    drop((b, user, other, sink));
    assert_eq!(tagged_blocks(&machine), 0);
    machine.settle();
    assert!(machine.pool().outstanding().is_empty());
}
