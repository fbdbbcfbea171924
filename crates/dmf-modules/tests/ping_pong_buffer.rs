//! DMF_PingPongBuffer (MODS-PingPongBuffer): write, shift, consume, reset, get; and a scenario
//! modelled on C DMF's Tests_PingPongBuffer (reader/writer threads with integrity checks), closed
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
use dmf_modules::ping_pong_buffer::{PingPongBuffer, PingPongBufferConfig};
use kmdf_sim::exec::{SystemThread, WaitStatus as SimWait};
use kmdf_sim::fault::FaultPoint;
use task_support::{clean, machine, test_seed, Rng};

fn buffer(size: u32) -> DynamicModule<PingPongBuffer> {
    PingPongBuffer::with(PingPongBufferConfig { buffer_size: size })
        .create(&NoParent)
        .unwrap()
}

fn ping(b: &PingPongBuffer) -> Vec<u8> {
    b.get(<[u8]>::to_vec).unwrap()
}

/// MODS-PingPongBuffer: write accumulates; a write that does not fit fails and writes nothing.
#[test]
fn mods_ping_pong_write_and_get() {
    let machine = machine();
    let _on = machine.enter();
    let b = buffer(8);
    assert_eq!(b.write(b"abc"), Ok(3));
    assert_eq!(b.write(b"defgh"), Ok(8));
    assert_eq!(b.write(b"i"), Err(NtStatus::INSUFFICIENT_RESOURCES));
    assert_eq!(ping(&b), b"abcdefgh");
    b.reset().unwrap();
    assert_eq!(ping(&b), b"");
    assert_eq!(b.write(b"123456789"), Err(NtStatus::INSUFFICIENT_RESOURCES));
    drop(b);
    clean(&machine);
}

/// MODS-PingPongBuffer: shift drops leading bytes; consume swaps and carries the rest over; bad
/// offsets are STATUS_INVALID_PARAMETER and change nothing.
#[test]
fn mods_ping_pong_shift_and_consume() {
    let machine = machine();
    let _on = machine.enter();
    let b = buffer(10);
    b.write(b"junk[AB][C").unwrap();
    b.shift(4).unwrap();
    assert_eq!(ping(&b), b"[AB][C");
    assert_eq!(b.shift(7), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(b.consume(2, 5, |_| ()), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(
        b.consume(usize::MAX, 2, |_| ()),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(b.consume(0, 4, <[u8]>::to_vec), Ok(b"[AB]".to_vec()));
    assert_eq!(ping(&b), b"[C");
    b.write(b"D]").unwrap();
    assert_eq!(b.consume(0, 4, <[u8]>::to_vec), Ok(b"[CD]".to_vec()));
    assert_eq!(ping(&b), b"");
    assert_eq!(b.consume(0, 0, <[u8]>::len), Ok(0));
    drop(b);
    clean(&machine);
}

/// Bad config and allocation failures (first or second buffer) leak nothing.
#[test]
fn mods_ping_pong_creation_failures_leak_nothing() {
    let machine = machine();
    let _on = machine.enter();
    let zero = PingPongBuffer::with(PingPongBufferConfig { buffer_size: 0 }).create(&NoParent);
    assert_eq!(zero.err(), Some(NtStatus::INVALID_PARAMETER));
    for nth in [1, 2] {
        machine.faults().fail_nth(FaultPoint::Allocation, nth);
        let created =
            PingPongBuffer::with(PingPongBufferConfig { buffer_size: 8 }).create(&NoParent);
        assert_eq!(
            created.err(),
            Some(NtStatus::INSUFFICIENT_RESOURCES),
            "nth {nth}"
        );
        machine.faults().disarm(FaultPoint::Allocation);
        clean(&machine);
    }
}

/// Tests_PingPongBuffer scenario: a writer streams framed packets (`[len, seq, payload…, sum]`) in
/// random-sized chunks; a reader reassembles: it finds complete frames in Ping and consumes them,
/// shifting away nothing but whole frames. Invariants: every consumed packet is intact and in
/// sequence; Ping never exceeds the buffer. Closed under load: then only
/// STATUS_INVALID_DEVICE_STATE; no verifier report, no leak.
#[test]
fn scenario_tests_ping_pong_buffer_reassembly_and_close_under_load() {
    const SIZE: u32 = 64;
    const ITERATIONS: u64 = 3_000;
    let seed = test_seed(0x5EED_0000_0000_0069);
    let machine = machine();
    let _on = machine.enter();
    let b = buffer(SIZE);
    let handle = (*b).clone();
    let progress = Arc::new(AtomicU64::new(0));
    let halfway = Arc::new(Event::new(EventKind::Notification, false).unwrap());
    let mark = {
        let (progress, halfway) = (Arc::clone(&progress), Arc::clone(&halfway));
        move || {
            if progress.fetch_add(1, Ordering::SeqCst) == 1 {
                halfway.set();
            }
        }
    };
    let writer = {
        let (h, mark) = (handle.clone(), mark.clone());
        SystemThread::spawn(&machine, "writer", move || {
            let mut rng = Rng::from_state(seed);
            let mut pending: Vec<u8> = Vec::new();
            let mut seq = 0_u8;
            for n in 0..ITERATIONS {
                if n == ITERATIONS / 2 {
                    mark();
                }
                if pending.len() < 16 {
                    let len = u8::try_from(1 + rng.below(8)).unwrap();
                    let payload: Vec<u8> = (0..len).map(|i| seq.wrapping_add(i)).collect();
                    let sum = payload.iter().fold(len ^ seq, |a, b| a ^ b);
                    pending.extend([len, seq]);
                    pending.extend(payload);
                    pending.push(sum);
                    seq = seq.wrapping_add(1);
                }
                let chunk = usize::try_from(1 + rng.below(6))
                    .unwrap()
                    .min(pending.len());
                match h.write(&pending[..chunk]) {
                    Ok(total) => {
                        assert!(total <= SIZE as usize, "seed {seed:#x}");
                        pending.drain(..chunk);
                    }
                    Err(NtStatus::INSUFFICIENT_RESOURCES) => {} // reader behind: retry later
                    Err(e) => {
                        assert_eq!(e, NtStatus::INVALID_DEVICE_STATE, "seed {seed:#x}");
                        break;
                    }
                }
            }
        })
        .unwrap()
    };
    let reader = {
        let h = handle.clone();
        SystemThread::spawn(&machine, "reader", move || {
            let mut expected = 0_u8;
            for n in 0..ITERATIONS * 2 {
                if n == ITERATIONS {
                    mark();
                }
                // A complete frame at the start of Ping?
                let frame = h.get(|p| {
                    (p.len() >= 2 && p.len() >= usize::from(p[0]) + 3)
                        .then(|| usize::from(p[0]) + 3)
                });
                let result = match frame {
                    Ok(Some(len)) => h.consume(0, len, |f| {
                        let (plen, seq) = (f[0], f[1]);
                        assert_eq!(seq, expected, "seed {seed:#x}: out of sequence");
                        let payload = &f[2..2 + usize::from(plen)];
                        for (i, byte) in payload.iter().enumerate() {
                            assert_eq!(*byte, seq.wrapping_add(u8::try_from(i).unwrap()));
                        }
                        assert_eq!(
                            payload.iter().fold(plen ^ seq, |a, b| a ^ b),
                            f[f.len() - 1]
                        );
                        expected = expected.wrapping_add(1);
                    }),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    assert_eq!(e, NtStatus::INVALID_DEVICE_STATE, "seed {seed:#x}");
                    break;
                }
            }
        })
        .unwrap()
    };
    assert_eq!(halfway.wait(None), WaitStatus::Signaled);
    b.delete();
    assert_eq!(writer.wait(None), SimWait::Signaled, "seed {seed:#x}");
    assert_eq!(reader.wait(None), SimWait::Signaled, "seed {seed:#x}");
    assert_eq!(handle.reset(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert!(machine.crash().is_none(), "seed {seed:#x}");
    clean(&machine);
}
