//! loom model of [`dmf_core::free_list::FreeList`]: every interleaving and memory-order outcome of
//! two threads popping and pushing, with and without a third taking the list exclusively, on the
//! same code that ships (the crate's facade switches the list's atomics and cells to loom's under
//! `--cfg dmf_loom`).
//!
//! Run with
//! `RUSTFLAGS="--cfg dmf_loom" cargo test -p dmf-core --release --test loom_free_list`.
//!
//! The values are loom `UnsafeCell`s that each owner writes and reads: loom reports any access not
//! ordered by happens-before, so a pop that returned a value before the pusher's write was
//! visible, or two threads owning one slot at once, fails the model. Each model ends by draining
//! the list and checking that every value is there exactly once (nothing lost, nothing doubled —
//! an ABA on the head would show up as either).
#![cfg(dmf_loom)]

use dmf_core::free_list::{FreeList, Pop, Pushed, SlotKey, Visit};
use loom::sync::Arc;
use loom::thread;

#[allow(dead_code)] // every model file includes it; not each uses every item
mod loom_support;
use loom_support::Tracked;

fn check(bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = bound;
    }
    // The lock-free callers wait out an exclusive holder by yielding; give those loops room.
    builder.max_branches = 100_000;
    builder.check(f);
}

fn filled(n: u32) -> Arc<FreeList<Tracked>> {
    let list = FreeList::with_capacity(n as usize).unwrap();
    for key in list.mint().unwrap() {
        let id = key.index();
        list.push(key, Tracked::new(id)).unwrap();
    }
    Arc::new(list)
}

/// Pushes until it is not refused for being busy.
fn push_back(list: &FreeList<Tracked>, mut key: SlotKey, mut value: Tracked) {
    loop {
        match list.push(key, value) {
            Ok(()) => return,
            Err(Pushed::Busy(k, v)) => {
                (key, value) = (k, v);
                thread::yield_now();
            }
            Err(Pushed::Foreign(..)) => panic!("own key refused"),
            Err(Pushed::Closed(..)) => panic!("nobody closes the list in this model"),
        }
    }
}

/// Pops one value (if any), touches it, pushes it back.
fn cycle(list: &FreeList<Tracked>) {
    loop {
        match list.pop() {
            Pop::Item(key, value) => {
                value.touch();
                push_back(list, key, value);
                return;
            }
            // Busy: a real caller waits on the lock the holder holds; here, give up the round.
            Pop::Empty | Pop::Busy | Pop::Closed => return,
        }
    }
}

fn drained_ids(list: &FreeList<Tracked>) -> Vec<u32> {
    let mut ex = list.exclusive().expect("nobody holds the list at the end");
    let mut ids: Vec<u32> = ex
        .drain()
        .map(|(key, value)| {
            assert_eq!(
                key.index(),
                value.id,
                "a value came back under another slot's key"
            );
            value.touch();
            value.id
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// Two threads each pop and push back twice on a two-slot list: the ABA pattern (pop A, other
/// thread pops A and B and pushes A back) is among the interleavings.
#[test]
fn two_cyclers_lose_nothing() {
    check(Some(4), || {
        let list = filled(2);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let list = Arc::clone(&list);
                thread::spawn(move || {
                    cycle(&list);
                    cycle(&list);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(drained_ids(&list), [0, 1]);
    });
}

/// The ABA pattern itself: while one thread is inside a pop (it has read the top and its `next`),
/// the other pops two values and pushes the first back, so the top is the same slot again with a
/// different `next`. Without the head word's tag the first pop would install the slot the other
/// thread holds as the new top.
#[test]
fn aba_on_the_top_slot_is_refused() {
    check(Some(3), || {
        let list = filled(3);
        let other = {
            let list = Arc::clone(&list);
            thread::spawn(move || {
                let (Pop::Item(k1, v1), Pop::Item(k2, v2)) = (list.pop(), list.pop()) else {
                    return; // the first thread emptied too much; nothing to model
                };
                v1.touch();
                v2.touch();
                push_back(&list, k1, v1);
                push_back(&list, k2, v2);
            })
        };
        cycle(&list);
        other.join().unwrap();
        assert_eq!(drained_ids(&list), [0, 1, 2]);
    });
}

/// Two threads hold a value each (the list runs empty) and push them back concurrently.
#[test]
fn two_holders_push_back_concurrently() {
    check(None, || {
        let list = filled(2);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let list = Arc::clone(&list);
                thread::spawn(move || loop {
                    match list.pop() {
                        Pop::Item(key, value) => {
                            value.touch();
                            push_back(&list, key, value);
                            return;
                        }
                        Pop::Empty => thread::yield_now(),
                        Pop::Busy | Pop::Closed => unreachable!("nobody holds the list"),
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(drained_ids(&list), [0, 1]);
    });
}

/// A third thread takes the list exclusively, walks it and removes a value from the middle while
/// two others cycle: the walk sees only fully pushed values and the lock-free callers back off.
#[test]
fn exclusive_against_two_cyclers() {
    check(Some(3), || {
        let list = filled(3);
        let cyclers: Vec<_> = (0..2)
            .map(|_| {
                let list = Arc::clone(&list);
                thread::spawn(move || cycle(&list))
            })
            .collect();
        let walker = {
            let list = Arc::clone(&list);
            thread::spawn(move || loop {
                let Some(mut ex) = list.exclusive() else {
                    thread::yield_now();
                    continue;
                };
                let len = ex.len();
                assert!(len <= 3);
                let removed = ex.visit(|value| {
                    value.touch();
                    if value.id == 1 {
                        Visit::RemoveAndStop
                    } else {
                        Visit::Continue
                    }
                });
                if let Some((key, value)) = removed {
                    value.touch();
                    ex.push(key, value).unwrap();
                }
                return;
            })
        };
        for t in cyclers {
            t.join().unwrap();
        }
        walker.join().unwrap();
        assert_eq!(drained_ids(&list), [0, 1, 2]);
    });
}

/// Close against two cyclers (what BufferPool's close does): a third thread takes the list, closes
/// it and drains it in one hold. A cycler's pop either came before (it owns the value) or is
/// refused (`Closed`, or `Busy` while the closer holds the list: the cycler gives up); its push
/// after the close is refused and hands the value back. Every value ends up exactly once either
/// drained by the closer or in a cycler's hands — none lost, none doubled, none touched after the
/// closer took it.
#[test]
fn close_against_two_cyclers() {
    check(Some(2), || {
        let list = filled(2);
        let cyclers: Vec<_> = (0..2)
            .map(|_| {
                let list = Arc::clone(&list);
                thread::spawn(move || -> Option<u32> {
                    let Pop::Item(key, value) = list.pop() else {
                        return None;
                    };
                    value.touch();
                    match list.push(key, value) {
                        Ok(()) => None,
                        // Refused (closed) or busy (being closed): the value stays with us.
                        Err(Pushed::Closed(_, v) | Pushed::Busy(_, v)) => {
                            v.touch();
                            Some(v.id)
                        }
                        Err(Pushed::Foreign(..)) => panic!("own key refused"),
                    }
                })
            })
            .collect();
        let mut ex = list.exclusive().expect("only the closer takes the list");
        ex.set_closed(true);
        let mut all: Vec<u32> = ex
            .drain()
            .map(|(_, value)| {
                value.touch();
                value.id
            })
            .collect();
        drop(ex);
        for t in cyclers {
            all.extend(t.join().unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, [0, 1]);
        assert!(matches!(list.pop(), Pop::Closed));
    });
}
