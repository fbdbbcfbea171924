//! DMF_RingBuffer (MODS-RingBuffer): the C DMF Methods and modes, and a scenario modelled on C
//! DMF's Tests_RingBuffer (write/read/enumerate sequences with validation), concurrent and closed
//! under load.
#![cfg(feature = "sim")]
// reason: scenario closures name their handle `h`, the thread `t`, the Rng `rng`, as Tests_* do.
#![allow(clippy::many_single_char_names)]

mod task_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use dmf_core::module::{DynamicModule, ModuleHandle, ModuleState, NoParent};
use dmf_core::platform::contract::{EventKind, PlatformEvent, WaitStatus};
use dmf_core::platform::Event;
use dmf_core::NtStatus;
use dmf_modules::ring_buffer::{RingBuffer, RingBufferConfig, RingBufferMode};
use kmdf_sim::exec::{SystemThread, WaitStatus as SimWait};
use kmdf_sim::fault::FaultPoint;
use task_support::{clean, machine, test_seed, Rng};

fn ring(count: u32, size: u32, mode: RingBufferMode) -> DynamicModule<RingBuffer> {
    RingBuffer::with(RingBufferConfig {
        item_count: count,
        item_size: size,
        mode,
    })
    .create(&NoParent)
    .unwrap()
}

fn contents(ring: &RingBuffer) -> Vec<u8> {
    let mut all = vec![0; 64];
    let n = ring.read_all(&mut all).unwrap();
    all.truncate(n);
    all
}

/// MODS-RingBuffer: FIFO order; FailIfFullOnWrite refuses when full, nothing changes.
#[test]
fn mods_ring_buffer_fifo_and_fail_if_full() {
    let machine = machine();
    let _on = machine.enter();
    let r = ring(3, 2, RingBufferMode::FailIfFullOnWrite);
    let mut item = [0; 2];
    assert_eq!(r.read(&mut item), Err(NtStatus::NO_MORE_ENTRIES));
    for x in [b"aa", b"bb", b"cc"] {
        r.write(x).unwrap();
    }
    assert_eq!(r.write(b"dd"), Err(NtStatus::INSUFFICIENT_RESOURCES));
    assert_eq!(contents(&r), b"aabbcc");
    r.read(&mut item).unwrap();
    assert_eq!(&item, b"aa");
    r.write(b"dd").unwrap();
    assert_eq!(contents(&r), b"bbccdd");
    assert_eq!(r.items_count(), Ok(3));
    drop(r);
    clean(&machine);
}

/// MODS-RingBuffer: DeleteOldestIfFullOnWrite never fails for space; the oldest item goes.
#[test]
fn mods_ring_buffer_delete_oldest_if_full() {
    let machine = machine();
    let _on = machine.enter();
    let r = ring(3, 1, RingBufferMode::DeleteOldestIfFullOnWrite);
    for b in b"abcdefg" {
        r.write(&[*b]).unwrap();
    }
    assert_eq!(contents(&r), b"efg");
    drop(r);
    clean(&machine);
}

/// Every item size around the inlined copies (8, 16 and 32 bytes copied from both ends, the
/// C library's copy otherwise), through several wraps of both positions in both modes, against
/// a model: each item reads back byte for byte, in order, and a larger read target keeps its
/// bytes past the item.
#[test]
fn ring_buffer_items_of_every_copy_size_survive_the_wrap() {
    let machine = machine();
    let _on = machine.enter();
    for size in [1_u8, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 100] {
        for mode in [
            RingBufferMode::FailIfFullOnWrite,
            RingBufferMode::DeleteOldestIfFullOnWrite,
        ] {
            let label = format!("size {size} {mode:?}");
            let r = ring(3, u32::from(size), mode);
            let item = |n: u8| -> Vec<u8> {
                (0..size)
                    .map(|i| n.wrapping_mul(31).wrapping_add(i))
                    .collect()
            };
            let mut target = vec![0xEE; usize::from(size) + 5];
            let mut read_one = |model: &mut std::collections::VecDeque<u8>| {
                let n = model.pop_front().unwrap();
                r.read(&mut target).unwrap();
                assert_eq!(&target[..usize::from(size)], item(n).as_slice(), "{label}");
                assert!(target[usize::from(size)..].iter().all(|&b| b == 0xEE));
            };
            let mut model = std::collections::VecDeque::new();
            for n in 0..20_u8 {
                if model.len() == 3 {
                    if mode == RingBufferMode::FailIfFullOnWrite {
                        assert_eq!(
                            r.write(&item(n)),
                            Err(NtStatus::INSUFFICIENT_RESOURCES),
                            "{label}"
                        );
                        read_one(&mut model);
                    } else {
                        model.pop_front();
                    }
                }
                r.write(&item(n)).unwrap();
                model.push_back(n);
                if n % 5 == 4 {
                    read_one(&mut model);
                }
            }
            assert_eq!(r.items_count(), Ok(model.len()), "{label}");
            while !model.is_empty() {
                read_one(&mut model);
            }
            assert_eq!(r.read(&mut [0; 200]), Err(NtStatus::NO_MORE_ENTRIES));
            drop(r);
        }
    }
    clean(&machine);
}

/// MODS-RingBuffer: invalid input is answered with a status, never a panic, and changes nothing.
#[test]
fn mods_ring_buffer_invalid_input() {
    let machine = machine();
    let _on = machine.enter();
    for (count, size) in [(0, 4), (4, 0), (u32::MAX, u32::MAX)] {
        let created = RingBuffer::with(RingBufferConfig {
            item_count: count,
            item_size: size,
            mode: RingBufferMode::FailIfFullOnWrite,
        })
        .create(&NoParent);
        assert!(created.is_err(), "{count}x{size}");
    }
    let r = ring(2, 4, RingBufferMode::FailIfFullOnWrite);
    assert_eq!(r.write(b"abc"), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(r.write(b"abcde"), Err(NtStatus::INVALID_PARAMETER));
    r.write(b"abcd").unwrap();
    let mut small = [0; 3];
    assert_eq!(r.read(&mut small), Err(NtStatus::BUFFER_TOO_SMALL));
    assert_eq!(r.read_all(&mut small), Err(NtStatus::BUFFER_TOO_SMALL));
    assert_eq!(
        r.segments_write(&[(b"xy", 3)]),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        r.segments_write(&[(b"xy", usize::MAX)]),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        r.enumerate_to_find_item(b"abcde", |_| true),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(contents(&r), b"abcd");
    drop(r);
    clean(&machine);
}

/// Allocation failure in Open fails the creation and leaks nothing.
#[test]
fn mods_ring_buffer_allocation_failure_leaks_nothing() {
    let machine = machine();
    let _on = machine.enter();
    machine.faults().fail_nth(FaultPoint::Allocation, 1);
    let created = RingBuffer::with(RingBufferConfig {
        item_count: 4,
        item_size: 4,
        mode: RingBufferMode::FailIfFullOnWrite,
    })
    .create(&NoParent);
    assert_eq!(created.err(), Some(NtStatus::INSUFFICIENT_RESOURCES));
    clean(&machine);
}

/// Segments, enumerate (with early stop and in-place change), find, reorder, total size.
#[test]
fn mods_ring_buffer_segments_enumerate_find_reorder() {
    let machine = machine();
    let _on = machine.enter();
    let r = ring(3, 4, RingBufferMode::DeleteOldestIfFullOnWrite);
    r.segments_write(&[(b"k1", 0), (b"v", 3)]).unwrap();
    r.write(b"k2-b").unwrap();
    r.write(b"k1-c").unwrap();
    r.write(b"k3-d").unwrap(); // drops "k1\0v": read position is now 1
    let mut seen = vec![];
    r.enumerate(|item| {
        seen.push(item.to_vec());
        seen.len() < 2
    })
    .unwrap();
    assert_eq!(seen, [b"k2-b".to_vec(), b"k1-c".to_vec()]);
    let mut found = 0;
    r.enumerate_to_find_item(b"k1", |item| {
        item[3] = b'C';
        found += 1;
        true
    })
    .unwrap();
    assert_eq!(found, 1);
    assert_eq!(contents(&r), b"k2-bk1-Ck3-d");
    r.reorder().unwrap();
    assert_eq!(contents(&r), b"k2-bk1-Ck3-d");
    assert_eq!(r.total_size_get(), Ok(12));
    let (mut head, mut tail) = ([0; 2], [0; 1]);
    r.segments_read(&mut [(&mut head[..], 0), (&mut tail[..], 3)])
        .unwrap();
    assert_eq!((&head, &tail), (b"k2", b"b"));
    r.segments_write(&[(b"zz", 2)]).unwrap();
    assert_eq!(contents(&r), b"k1-Ck3-d\0\0zz");
    drop(r);
    clean(&machine);
}

/// Item: writer id (1 byte) | sequence (4 bytes) | checksum (1 byte).
fn item(writer: u8, seq: u32) -> [u8; 6] {
    let s = seq.to_le_bytes();
    [
        writer,
        s[0],
        s[1],
        s[2],
        s[3],
        writer ^ s[0] ^ s[1] ^ s[2] ^ s[3],
    ]
}

fn check(item: &[u8], seed: u64) -> (u8, u32) {
    assert_eq!(
        item[5],
        item[..5].iter().fold(0, |a, b| a ^ b),
        "seed {seed:#x}: torn item"
    );
    (item[0], u32::from_le_bytes(item[1..5].try_into().unwrap()))
}

/// Tests_RingBuffer scenario, both modes: two writers append sequenced, checksummed items; a
/// reader reads, reads all, enumerates and finds at random. Invariants: no torn item; per writer,
/// sequence numbers only grow in every view (FIFO); in FailIfFull mode none is lost. Closed under
/// load: later calls fail with STATUS_INVALID_DEVICE_STATE; no verifier report, no leak.
#[test]
fn scenario_tests_ring_buffer_concurrent_and_close_under_load() {
    const ITERATIONS: u32 = 2_000;
    for mode in [
        RingBufferMode::FailIfFullOnWrite,
        RingBufferMode::DeleteOldestIfFullOnWrite,
    ] {
        let seed = test_seed(0x5EED_0000_0000_0052);
        let machine = machine();
        let _on = machine.enter();
        let r = ring(8, 6, mode);
        let handle = (*r).clone();
        let progress = Arc::new(AtomicU64::new(0));
        let halfway = Arc::new(Event::new(EventKind::Notification, false).unwrap());
        let threads: Vec<SystemThread> = (0..3_u8)
            .map(|id| {
                let (h, progress, halfway) =
                    (handle.clone(), Arc::clone(&progress), Arc::clone(&halfway));
                SystemThread::spawn(&machine, &format!("t{id}"), move || {
                    let mut rng = Rng::from_state(seed ^ u64::from(id) ^ mode as u64);
                    let mut next_seq = 0_u32;
                    let mut last = [None::<u32>; 3];
                    for n in 0..ITERATIONS {
                        if n == ITERATIONS / 2 && progress.fetch_add(1, Ordering::SeqCst) == 2 {
                            halfway.set();
                        }
                        let result = if id < 2 {
                            // writer
                            match h.write(&item(id, next_seq)) {
                                Ok(()) => {
                                    next_seq += 1;
                                    Ok(())
                                }
                                Err(NtStatus::INSUFFICIENT_RESOURCES) => {
                                    assert_eq!(mode, RingBufferMode::FailIfFullOnWrite);
                                    Ok(())
                                }
                                Err(e) => Err(e),
                            }
                        } else {
                            match rng.below(4) {
                                0 | 1 => {
                                    let mut it = [0; 6];
                                    match h.read(&mut it) {
                                        Ok(()) => {
                                            let (w, s) = check(&it, seed);
                                            let w = usize::from(w);
                                            if let Some(prev) = last[w] {
                                                assert!(s > prev, "seed {seed:#x}: FIFO");
                                                if mode == RingBufferMode::FailIfFullOnWrite {
                                                    assert_eq!(s, prev + 1, "seed {seed:#x}: lost");
                                                }
                                            }
                                            last[w] = Some(s);
                                            Ok(())
                                        }
                                        Err(NtStatus::NO_MORE_ENTRIES) => Ok(()),
                                        Err(e) => Err(e),
                                    }
                                }
                                2 => {
                                    let mut all = [0; 48];
                                    h.read_all(&mut all).map(|n| {
                                        let mut per = [None::<u32>; 2];
                                        for it in all[..n].chunks(6) {
                                            let (w, s) = check(it, seed);
                                            let w = usize::from(w);
                                            assert!(per[w].is_none_or(|p| s > p), "seed {seed:#x}");
                                            per[w] = Some(s);
                                        }
                                    })
                                }
                                _ => {
                                    let key = [u8::try_from(rng.below(2)).unwrap()];
                                    h.enumerate_to_find_item(&key, |it| {
                                        assert_eq!(check(it, seed).0, key[0]);
                                        true
                                    })
                                }
                            }
                        };
                        if let Err(e) = result {
                            assert_eq!(e, NtStatus::INVALID_DEVICE_STATE, "seed {seed:#x}");
                        }
                    }
                })
                .unwrap()
            })
            .collect();
        assert_eq!(halfway.wait(None), WaitStatus::Signaled);
        r.delete();
        for t in &threads {
            assert_eq!(t.wait(None), SimWait::Signaled, "seed {seed:#x}");
        }
        assert_eq!(
            handle.write(&item(0, 0)),
            Err(NtStatus::INVALID_DEVICE_STATE)
        );
        assert!(machine.crash().is_none(), "seed {seed:#x}");
        clean(&machine);
    }
}

/// Yields until `until()` holds. The waits of the close races end within microseconds; the
/// bound only stops a broken run (with `what` as the message).
fn busy_wait(what: &str, until: impl Fn() -> bool) {
    const SPIN_LIMIT: u64 = 100_000_000;
    let mut spins = 0_u64;
    while !until() {
        spins += 1;
        assert!(spins < SPIN_LIMIT, "{what}");
        std::thread::yield_now();
    }
}

/// What one call made by a thread racing close came to.
fn outcome(result: Result<(), NtStatus>, refused: &mut bool, what: &str, seed: u64) -> bool {
    match result {
        Ok(()) => {
            assert!(
                !*refused,
                "seed {seed:#x}: {what} succeeded after a refusal"
            );
            true
        }
        Err(NtStatus::INVALID_DEVICE_STATE) => {
            *refused = true;
            false
        }
        Err(e) => panic!("seed {seed:#x}: {what}: {e:?}"),
    }
}

/// One random call of the reader racing close: a read or a segmented read (the item's sequence
/// recorded per writer), a find (each item found goes through `visit`) then a reorder, or a
/// count. End of the ring (`STATUS_NO_MORE_ENTRIES`) counts as done.
fn reader_call(
    h: &RingBuffer,
    rng: &mut Rng,
    got: &mut [Vec<u32>],
    visit: &dyn Fn(&mut [u8]),
    seed: u64,
) -> Result<(), NtStatus> {
    let mut record = |it: &[u8]| {
        let (w, s) = check(it, seed);
        got[usize::from(w)].push(s);
    };
    let result = match rng.below(5) {
        0 | 1 => {
            let mut it = [0; 6];
            h.read(&mut it).map(|()| record(&it))
        }
        2 => {
            let (mut head, mut tail) = ([0; 2], [0; 4]);
            h.segments_read(&mut [(&mut head[..], 0), (&mut tail[..], 2)])
                .map(|()| record(&[head[0], head[1], tail[0], tail[1], tail[2], tail[3]]))
        }
        3 => h
            .enumerate_to_find_item(&[0], |it| {
                visit(it);
                true
            })
            .and_then(|()| h.reorder()),
        _ => h.items_count().map(|count| assert!(count <= 8)),
    };
    match result {
        Err(NtStatus::NO_MORE_ENTRIES) => Ok(()),
        other => other,
    }
}

/// A writer racing close: `iterations` writes of its sequenced items (a full ring is retried with
/// the same item); returns how many succeeded. Once a write is refused, every later one is.
fn writer_racing_close(h: &RingBuffer, id: u8, iterations: u32, seed: u64) -> u32 {
    let (mut next, mut refused) = (0_u32, false);
    for _ in 0..iterations {
        match h.write(&item(id, next)) {
            Err(NtStatus::INSUFFICIENT_RESOURCES) => {
                assert!(!refused, "seed {seed:#x}: full after a refusal");
            }
            result => {
                if outcome(result, &mut refused, "write", seed) {
                    next += 1;
                }
            }
        }
    }
    next
}

/// Enters an Enumerate callback (under the ring's lock; an item of writer 2 makes sure the ring
/// is not empty), says so through `inside`, waits there until the Module is Closing, and stays a
/// while longer: the Module's close (`closed`) must not complete meanwhile, and the call must
/// then succeed — it was in flight before close.
fn stay_inside_until_close(h: &RingBuffer, inside: &AtomicBool, closed: &AtomicBool, seed: u64) {
    /// How long the callback stays inside once the close has begun.
    const DWELL: u32 = 1_000;
    let _ = h.write(&item(2, 0)); // or the ring is full
    let mut first = true;
    let result = h.enumerate(|_| {
        if std::mem::take(&mut first) {
            inside.store(true, Ordering::SeqCst);
            busy_wait("no close", || h.state() == ModuleState::Closing);
            for _ in 0..DWELL {
                assert!(
                    !closed.load(Ordering::SeqCst),
                    "seed {seed:#x}: close did not wait for the lock holder"
                );
                std::thread::yield_now();
            }
        }
        false
    });
    assert_eq!(result, Ok(()), "seed {seed:#x}: the call in flight");
    assert!(!first, "seed {seed:#x}: the ring was empty");
}

/// After close: every Method is `STATUS_INVALID_DEVICE_STATE`.
fn assert_every_method_refused(h: &RingBuffer) {
    let refused = Err(NtStatus::INVALID_DEVICE_STATE);
    assert_eq!(h.write(&item(0, 0)), refused);
    assert_eq!(h.segments_write(&[(b"ab", 0)]), refused);
    assert_eq!(h.read(&mut [0; 6]), refused);
    assert_eq!(h.segments_read(&mut [(&mut [0; 2][..], 0)]), refused);
    assert_eq!(
        h.read_all(&mut [0; 48]),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(h.enumerate(|_| true), refused);
    assert_eq!(h.enumerate_to_find_item(&[0], |_| true), refused);
    assert_eq!(h.reorder(), refused);
    assert_eq!(h.total_size_get(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(h.items_count(), Err(NtStatus::INVALID_DEVICE_STATE));
}

/// Every Method is a lock-free Method (no rundown reference): close shuts them out by taking the
/// ring's lock and setting `closed`. Two writers and a reader race a close (FailIfFullOnWrite,
/// seeded, bounded loops, no virtual time passes): each call is either done before close or
/// refused, never half-done —
/// - per thread, once a call is refused every later call is too (close is one way);
/// - the reader, halfway, stays inside an Enumerate callback (under the ring's lock) until the
///   close has begun: the close waits for it (the Module's close never completes while it is
///   inside), and its call returns success;
/// - no Method body runs after the Module's close returned (the Enumerate callbacks check);
/// - every item read was written by a write that returned success, whole (checksum), in order
///   and with no gap per writer; a refused write left nothing behind;
/// - afterwards every Method is `STATUS_INVALID_DEVICE_STATE`, no verifier report, no leak.
#[test]
fn ring_buffer_methods_racing_close_are_done_before_it_or_refused() {
    use std::sync::Mutex;

    const ITERATIONS: u32 = 2_000;
    let seed = test_seed(0x5EED_0000_0000_0C10);
    let machine = machine();
    let _on = machine.enter();
    // Set by the client's notification-close callback: the Module's own close has returned.
    let closed = Arc::new(AtomicBool::new(false));
    let c = Arc::clone(&closed);
    let r = RingBuffer::with(RingBufferConfig {
        item_count: 8,
        item_size: 6,
        mode: RingBufferMode::FailIfFullOnWrite,
    })
    .on_device_notification_close(move |_| c.store(true, Ordering::SeqCst))
    .create(&NoParent)
    .unwrap();
    let handle = (*r).clone();
    let inside = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new([0_u32; 3]));
    let read = Arc::new(Mutex::new(vec![Vec::<u32>::new(); 3]));

    let writers: Vec<SystemThread> = (0..2_u8)
        .map(|id| {
            let (h, written) = (handle.clone(), Arc::clone(&written));
            SystemThread::spawn(&machine, &format!("writer{id}"), move || {
                let next = writer_racing_close(&h, id, ITERATIONS, seed);
                written.lock().unwrap()[usize::from(id)] = next;
            })
            .unwrap()
        })
        .collect();

    let reader = {
        let (h, closed, inside, read) = (
            handle.clone(),
            Arc::clone(&closed),
            Arc::clone(&inside),
            Arc::clone(&read),
        );
        SystemThread::spawn(&machine, "reader", move || {
            let mut rng = Rng::from_state(seed);
            let mut got = vec![Vec::<u32>::new(); 3];
            let mut refused = false;
            let open_check = |it: &mut [u8]| {
                assert!(
                    !closed.load(Ordering::SeqCst),
                    "seed {seed:#x}: after close"
                );
                check(it, seed);
            };
            for n in 0..ITERATIONS {
                if n == ITERATIONS / 2 {
                    stay_inside_until_close(&h, &inside, &closed, seed);
                }
                let result = reader_call(&h, &mut rng, &mut got, &open_check, seed);
                outcome(result, &mut refused, "reader call", seed);
            }
            *read.lock().unwrap() = got;
        })
        .unwrap()
    };

    busy_wait("the reader never got inside", || {
        inside.load(Ordering::SeqCst)
    });
    r.delete();
    assert!(closed.load(Ordering::SeqCst));
    for t in writers.iter().chain([&reader]) {
        assert_eq!(t.wait(None), SimWait::Signaled, "seed {seed:#x}");
    }
    let written = *written.lock().unwrap();
    for (w, seqs) in read.lock().unwrap().iter().enumerate() {
        let wrote = if w == 2 { 1 } else { written[w] };
        assert!(
            seqs.iter()
                .copied()
                .eq(0..u32::try_from(seqs.len()).unwrap()),
            "seed {seed:#x}: writer {w}'s items out of order or with a gap: {seqs:?}"
        );
        assert!(
            seqs.len() <= wrote as usize,
            "seed {seed:#x}: writer {w}: {} items read, {wrote} writes succeeded",
            seqs.len()
        );
    }
    assert_every_method_refused(&handle);
    assert!(machine.crash().is_none(), "seed {seed:#x}");
    clean(&machine);
}

/// The narrow case of a lock-free Method racing close: a call that passed the Module's state
/// check (the Module was open) and then waits for the ring's lock while close begins and also
/// waits for it. Thread A holds the lock (inside an Enumerate callback) until B is calling and
/// the close has begun; then B and the Module's close race for the lock. Whoever wins, B's write
/// is either done (success) or refused (`STATUS_INVALID_DEVICE_STATE`, by the `closed` flag —
/// the state check is behind it) — never another status from a ring whose storage is gone.
/// Sixteen rounds (bounded busy waits, no virtual time passes).
#[test]
fn ring_buffer_call_waiting_for_the_lock_at_close_is_done_or_refused() {
    const ROUNDS: u32 = 16;
    let machine = machine();
    let _on = machine.enter();
    let (mut done, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let r = ring(4, 6, RingBufferMode::FailIfFullOnWrite);
        r.write(&item(0, 0)).unwrap();
        // A is inside its callback; B is calling; A let B reach the lock.
        let (inside, calling, ready) = (0, 1, 2);
        let flags: Arc<[AtomicBool; 3]> = Arc::new(Default::default());
        let a = {
            let (h, flags) = ((*r).clone(), Arc::clone(&flags));
            SystemThread::spawn(&machine, "holder", move || {
                let result = h.enumerate(|_| {
                    flags[inside].store(true, Ordering::SeqCst);
                    busy_wait("B never called", || flags[calling].load(Ordering::SeqCst));
                    // Let B pass the state check and start spinning on the lock.
                    for _ in 0..200 {
                        std::thread::yield_now();
                    }
                    flags[ready].store(true, Ordering::SeqCst);
                    busy_wait("no close", || h.state() == ModuleState::Closing);
                    false
                });
                assert_eq!(result, Ok(()), "round {round}: the holder's call");
            })
            .unwrap()
        };
        let outcome = Arc::new(std::sync::Mutex::new(None));
        let b = {
            let (h, flags, outcome) = ((*r).clone(), Arc::clone(&flags), Arc::clone(&outcome));
            SystemThread::spawn(&machine, "caller", move || {
                busy_wait("A never got inside", || {
                    flags[inside].load(Ordering::SeqCst)
                });
                flags[calling].store(true, Ordering::SeqCst);
                *outcome.lock().unwrap() = Some(h.write(&item(1, 0)));
            })
            .unwrap()
        };
        busy_wait("A never got ready", || flags[ready].load(Ordering::SeqCst));
        r.delete();
        assert_eq!(a.wait(None), SimWait::Signaled);
        assert_eq!(b.wait(None), SimWait::Signaled);
        let came_to = outcome.lock().unwrap().take();
        match came_to {
            Some(Ok(())) => done += 1,
            Some(Err(NtStatus::INVALID_DEVICE_STATE)) => refused += 1,
            other => panic!("round {round}: the waiting write came to {other:?}"),
        }
    }
    eprintln!("waiting write: {done} done before close, {refused} refused");
    clean(&machine);
}

/// MOD-76 (`EvtModuleOnDeviceNotificationPreClose`): the Module's Methods still work in the
/// client's PreClose, as in C DMF, although RingBuffer's Methods are lock-free Methods; once the
/// close's wait has begun they are refused.
#[test]
fn methods_still_work_in_pre_close() {
    let machine = machine();
    let _on = machine.enter();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let r = RingBuffer::with(RingBufferConfig {
        item_count: 2,
        item_size: 1,
        mode: RingBufferMode::FailIfFullOnWrite,
    })
    .on_pre_close(move |ring: &RingBuffer| {
        let mut item = [0u8; 1];
        let read = ring.read(&mut item).map(|()| item[0]);
        let wrote = ring.write(&[9]);
        s.lock().unwrap().push((read, wrote));
    })
    .create(&NoParent)
    .unwrap();
    r.write(&[7]).unwrap();
    let handle = (*r).clone();
    r.delete();
    assert_eq!(*seen.lock().unwrap(), [(Ok(7), Ok(()))]);
    assert_eq!(handle.write(&[1]), Err(NtStatus::INVALID_DEVICE_STATE));
    clean(&machine);
}
