//! DMF_RingBuffer (MODS-RingBuffer): the C DMF Methods and modes, and a scenario modelled on C
//! DMF's Tests_RingBuffer (write/read/enumerate sequences with validation), concurrent and closed
//! under load.
#![cfg(feature = "sim")]
// reason: scenario closures name their handle `h`, the thread `t`, the Rng `rng`, as Tests_* do.
#![allow(clippy::many_single_char_names)]

mod task_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dmf_core::module::{DynamicModule, NoParent};
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
