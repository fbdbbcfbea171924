//! DMF_HashTable (MODS-HashTable): the C DMF Methods and limits, and a scenario modelled on C
//! DMF's Tests_HashTable (populate with generated records; concurrent successful and failed reads
//! and enumeration), closed under load.
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
use dmf_modules::hash_table::{fnv1a, HashTable, HashTableConfig};
use kmdf_sim::exec::{SystemThread, WaitStatus as SimWait};
use kmdf_sim::fault::FaultPoint;
use task_support::{clean, machine, test_seed, Rng};

fn table(size: u32, hash: Option<fn(&[u8]) -> usize>) -> DynamicModule<HashTable> {
    HashTable::with(HashTableConfig {
        maximum_key_length: 8,
        maximum_value_length: 8,
        maximum_table_size: size,
        hash,
    })
    .create(&NoParent)
    .unwrap()
}

/// MODS-HashTable: write, overwrite, read; NOT_FOUND and BUFFER_TOO_SMALL.
#[test]
fn mods_hash_table_write_read_overwrite() {
    let machine = machine();
    let _on = machine.enter();
    let t = table(4, None);
    let mut v = [0; 8];
    assert_eq!(t.read(b"a", &mut v), Err(NtStatus::NOT_FOUND));
    t.write(b"a", b"one").unwrap();
    t.write(b"b", b"").unwrap();
    assert_eq!(t.read(b"a", &mut v), Ok(3));
    assert_eq!(&v[..3], b"one");
    t.write(b"a", b"eleven").unwrap();
    assert_eq!(t.read(b"a", &mut v), Ok(6));
    assert_eq!(&v[..6], b"eleven");
    assert_eq!(t.read(b"b", &mut v), Ok(0));
    assert_eq!(t.read(b"a", &mut [0; 5]), Err(NtStatus::BUFFER_TOO_SMALL));
    drop(t);
    clean(&machine);
}

/// MODS-HashTable: full table → STATUS_INSUFFICIENT_RESOURCES; key too long or empty, value too
/// long → STATUS_INVALID_PARAMETER; nothing changes on failure.
#[test]
fn mods_hash_table_limits() {
    let machine = machine();
    let _on = machine.enter();
    let t = table(2, None);
    t.write(b"k1", b"1").unwrap();
    t.write(b"k2", b"2").unwrap();
    assert_eq!(t.write(b"k3", b"3"), Err(NtStatus::INSUFFICIENT_RESOURCES));
    assert_eq!(
        t.find(b"k3", |_, _, _| unreachable!()),
        Err(NtStatus::INSUFFICIENT_RESOURCES)
    );
    t.write(b"k1", b"updated").unwrap(); // existing key: fine when full
    assert_eq!(t.write(b"123456789", b""), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(t.write(b"", b""), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(
        t.write(b"k2", b"123456789"),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        t.read(b"123456789", &mut [0; 8]),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        t.find(b"k2", |_, _, len| *len = 9),
        Err(NtStatus::INVALID_PARAMETER)
    );
    let mut v = [0; 8];
    assert_eq!(t.read(b"k2", &mut v), Ok(1));
    for (k, v, s) in [(0, 8, 4), (8, 0, 4), (8, 8, 0)] {
        let created = HashTable::with(HashTableConfig {
            maximum_key_length: k,
            maximum_value_length: v,
            maximum_table_size: s,
            hash: None,
        })
        .create(&NoParent);
        assert_eq!(created.err(), Some(NtStatus::INVALID_PARAMETER));
    }
    drop(t);
    clean(&machine);
}

/// MODS-HashTable: Find adds an absent key with an empty value; enumerate sees every pair and
/// stops on `false`; a client hash (all keys collide) still works; allocation failure leaks nothing.
#[test]
fn mods_hash_table_find_enumerate_client_hash() {
    let machine = machine();
    let _on = machine.enter();
    let t = table(8, Some(|_| 7));
    for i in 0..5_u8 {
        t.find(&[b'k', i], |key, value, len| {
            assert_eq!(*len, 0, "added empty");
            assert_eq!(key, [b'k', i]);
            value[0] = i;
            *len = 1;
        })
        .unwrap();
    }
    t.find(b"k\x02", |_, value, len| {
        assert_eq!((*len, value[0]), (1, 2));
        value[1] = 9;
        *len = 2;
    })
    .unwrap();
    let mut pairs = vec![];
    t.enumerate(|k, v| {
        pairs.push((k.to_vec(), v.to_vec()));
        true
    })
    .unwrap();
    pairs.sort();
    assert_eq!(pairs.len(), 5);
    assert_eq!(pairs[2], (b"k\x02".to_vec(), vec![2, 9]));
    let mut n = 0;
    t.enumerate(|_, _| {
        n += 1;
        n < 2
    })
    .unwrap();
    assert_eq!(n, 2);
    drop(t);
    assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
    machine.faults().fail_nth(FaultPoint::Allocation, 1);
    let created = HashTable::with(HashTableConfig {
        maximum_key_length: 4,
        maximum_value_length: 4,
        maximum_table_size: 4,
        hash: None,
    })
    .create(&NoParent);
    assert_eq!(created.err(), Some(NtStatus::INSUFFICIENT_RESOURCES));
    clean(&machine);
}

/// The generated record of key `i`: the value derives from the key.
fn record(i: u64) -> ([u8; 4], [u8; 8]) {
    let k = u32::try_from(i).unwrap().to_le_bytes();
    (k, (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes())
}

/// Tests_HashTable scenario: populate with generated records (half of the key space), then three
/// threads read present keys (must match), read absent keys (must be NOT_FOUND), rewrite present
/// keys with the same record, and enumerate (every pair must be a valid record); the Module is
/// closed under load. Failures are only STATUS_INVALID_DEVICE_STATE after close; no verifier
/// report, no leak.
#[test]
fn scenario_tests_hash_table_concurrent_reads_and_close_under_load() {
    const RECORDS: u64 = 64;
    const ITERATIONS: u64 = 1_500;
    let seed = test_seed(0x5EED_0000_0000_0073);
    let machine = machine();
    let _on = machine.enter();
    let t = HashTable::with(HashTableConfig {
        maximum_key_length: 4,
        maximum_value_length: 8,
        maximum_table_size: u32::try_from(RECORDS).unwrap(),
        hash: None,
    })
    .create(&NoParent)
    .unwrap();
    for i in (0..RECORDS * 2).step_by(2) {
        let (k, v) = record(i);
        t.write(&k, &v).unwrap();
    }
    let handle = (*t).clone();
    let progress = Arc::new(AtomicU64::new(0));
    let halfway = Arc::new(Event::new(EventKind::Notification, false).unwrap());
    let threads: Vec<SystemThread> = (0..3_u64)
        .map(|id| {
            let (h, progress, halfway) =
                (handle.clone(), Arc::clone(&progress), Arc::clone(&halfway));
            SystemThread::spawn(&machine, &format!("t{id}"), move || {
                let mut rng = Rng::from_state(seed ^ id);
                for n in 0..ITERATIONS {
                    if n == ITERATIONS / 2 && progress.fetch_add(1, Ordering::SeqCst) == 2 {
                        halfway.set();
                    }
                    let i = rng.below(RECORDS * 2);
                    let (k, v) = record(i);
                    let mut got = [0; 8];
                    let result = match rng.below(4) {
                        0 | 1 => match h.read(&k, &mut got) {
                            Ok(len) => {
                                assert!(i.is_multiple_of(2), "seed {seed:#x}: phantom key {i}");
                                assert_eq!((len, got), (8, v), "seed {seed:#x}");
                                Ok(())
                            }
                            Err(NtStatus::NOT_FOUND) => {
                                assert!(i % 2 == 1, "seed {seed:#x}: lost key {i}");
                                Ok(())
                            }
                            Err(e) => Err(e),
                        },
                        2 if i.is_multiple_of(2) => h.write(&k, &v),
                        2 => match h.write(&k, &v) {
                            Err(NtStatus::INSUFFICIENT_RESOURCES) => Ok(()),
                            Err(NtStatus::INVALID_DEVICE_STATE) => {
                                Err(NtStatus::INVALID_DEVICE_STATE)
                            }
                            other => panic!("seed {seed:#x}: full table accepted {i}: {other:?}"),
                        },
                        _ => h.enumerate(|key, value| {
                            let i = u64::from(u32::from_le_bytes(key.try_into().unwrap()));
                            assert_eq!(value, record(i).1, "seed {seed:#x}");
                            true
                        }),
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
    t.delete();
    for th in &threads {
        assert_eq!(th.wait(None), SimWait::Signaled, "seed {seed:#x}");
    }
    assert_eq!(
        handle.read(b"k", &mut [0; 8]),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert!(machine.crash().is_none(), "seed {seed:#x}");
    clean(&machine);
}
