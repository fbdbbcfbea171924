//! [`dmf_core::free_list::FreeList`] on real threads: four threads pop, push back and take the
//! list exclusively at random, and at the end every value is listed exactly once. Small enough to
//! run under miri (`.ci/run` runs it there); loom explores the interleavings exhaustively in
//! `loom_free_list.rs`.
#![cfg(not(dmf_loom))]

use std::sync::Arc;

use dmf_core::free_list::{FreeList, Pop, Pushed};

#[test]
fn threads_cycle_values_without_loss() {
    let list = FreeList::with_capacity(8).unwrap();
    for key in list.mint().unwrap() {
        let value = key.index() * 10;
        list.push(key, value).unwrap();
    }
    let list = Arc::new(list);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let list = Arc::clone(&list);
            std::thread::spawn(move || {
                for i in 0..if cfg!(miri) { 50 } else { 20_000 } {
                    if (i + t) % 97 == 0 {
                        if let Some(ex) = list.exclusive() {
                            assert!(ex.len() <= 8);
                        }
                        continue;
                    }
                    match list.pop() {
                        Pop::Item(key, value) => {
                            let mut pending = Some((key, value));
                            while let Some((key, value)) = pending.take() {
                                if let Err(Pushed::Busy(k, v)) = list.push(key, value) {
                                    std::thread::yield_now();
                                    pending = Some((k, v));
                                }
                            }
                        }
                        Pop::Empty | Pop::Busy | Pop::Closed => std::thread::yield_now(),
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let mut ex = list.exclusive().unwrap();
    let mut values: Vec<u32> = ex.drain().map(|(_, v)| v).collect();
    values.sort_unstable();
    assert_eq!(values, [0, 10, 20, 30, 40, 50, 60, 70]);
}
