//! What the loom models share: a notification event whose memory is modelled, so that a signal
//! after the waiter freed it is a reported race; and a value whose memory is modelled, so that an
//! owner's access not ordered after the previous owner's is a reported race.

use dmf_core::rundown::RundownEvent;
use dmf_core::status::NtResult;
use loom::cell::UnsafeCell;
use loom::sync::{Condvar, Mutex};

/// A notification event: a flag and a condvar under one mutex, plus a model of its memory.
pub struct LoomEvent {
    signalled: Mutex<bool>,
    changed: Condvar,
    /// `true` while the event's memory is "allocated"; the closer clears it after the wait.
    alive: UnsafeCell<bool>,
}

impl RundownEvent for LoomEvent {
    fn new() -> NtResult<Self> {
        Ok(Self {
            signalled: Mutex::new(false),
            changed: Condvar::new(),
            alive: UnsafeCell::new(true),
        })
    }

    fn signal(&self) {
        let mut signalled = self.signalled.lock().unwrap();
        // SAFETY: loom checks this read against the closer's write in `free`; a race is reported.
        self.alive
            .with(|alive| assert!(unsafe { *alive }, "signal on a freed event"));
        *signalled = true;
        self.changed.notify_all();
    }

    fn wait(&self) {
        let mut signalled = self.signalled.lock().unwrap();
        while !*signalled {
            signalled = self.changed.wait(signalled).unwrap();
        }
    }

    fn reset(&self) {
        // SAFETY: as in `signal`.
        self.alive
            .with(|alive| assert!(unsafe { *alive }, "reset of a freed event"));
        *self.signalled.lock().unwrap() = false;
    }
}

impl LoomEvent {
    /// Models freeing the event's memory: any later or unordered access is reported by loom.
    pub fn free(&self) {
        // SAFETY: loom checks this write against every other access to `alive`.
        self.alive.with_mut(|alive| unsafe { *alive = false });
    }
}

/// A value whose memory loom tracks (a buffer, a list slot): each owner reads its id back and
/// writes it, so loom reports an access not ordered after the previous owner's.
#[derive(Debug)]
pub struct Tracked {
    pub id: u32,
    cell: UnsafeCell<u32>,
}

impl Tracked {
    pub fn new(id: u32) -> Self {
        Tracked {
            id,
            cell: UnsafeCell::new(id),
        }
    }

    /// What an owner does with it: read it, write it.
    pub fn touch(&self) {
        // SAFETY: loom checks that this access is ordered after the previous owner's.
        let seen = self.cell.with(|p| unsafe { *p });
        assert_eq!(
            seen, self.id,
            "a value read before its writer's access was visible"
        );
        // SAFETY: as above.
        self.cell.with_mut(|p| unsafe { *p = self.id });
    }
}
