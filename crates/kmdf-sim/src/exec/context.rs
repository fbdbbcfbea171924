//! Thread context: what the simulator knows about the calling OS thread.
//!
//! Each OS thread carries thread-local state:
//!
//! * a unique id (for lock ownership and scheduler accounting),
//! * its simulator name (used in traces; defaults to the OS thread name),
//! * its current [`Irql`],
//! * the machines it is bound to (a stack; the top one is "the current machine"),
//! * the locks it holds (so [`invoke_callback`](crate::verifier::invoke_callback) can detect a
//!   lock still held when a driver callback returns),
//! * the stack of driver names currently executing (attribution of pool allocations, trace events
//!   and verifier violations).
//!
//! The id, the IRQL and the held-lock list — what every spin-lock acquire and release reads and
//! writes — live together in one thread-local of plain cells with a `const` initializer and no
//! destructor (`ThreadState`): the id, one word holding the IRQL and the number of locks held,
//! and the held locks in a small inline array (a LIFO release is a compare and a decrement; a
//! thread holding more than `INLINE_HELD` locks spills the rest into a vector). A spin lock's
//! word (`SpinWord`: holder and saved IRQL packed into one atomic) is taken and given back here,
//! next to that state. The usual cases, `SpinWord::try_acquire` and `SpinWord::try_release`, are
//! small and `#[inline]`, so they compile into the lock's callers, other crates included: one
//! thread-pointer-relative access (no lazy-initialization check, no borrow flag) around the
//! compare-exchange or store, with no call. Everything rarer (the thread's first id, a recursive
//! acquire, a contended word, the spill, an out-of-order release, a misuse) goes to a cold,
//! out-of-line path. The rest (name, bindings, drivers) is in a second thread-local that the
//! lock path never touches.
//!
//! A test thread binds itself with [`Machine::enter`](crate::Machine::enter); threads the simulator
//! spawns (the DPC thread, system worker threads, system threads) are bound automatically. Driver
//! attribution is pushed by [`DriverScope`] and by `invoke_callback`.
//!
//! This is the bottom of the execution core: it knows nothing of the machine. A binding holds
//! the machine type-erased — `Bound`, two `Any` slots the layers above fill and read back
//! with their own types: the machine layer its core, the checks layer its verifier.

use core::fmt;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// An interrupt request level. Ordered: `Passive < Apc < Dispatch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum Irql {
    /// `PASSIVE_LEVEL` (0): threads, may wait and touch pageable memory.
    #[default]
    Passive = 0,
    /// `APC_LEVEL` (1): normal kernel APCs masked.
    Apc = 1,
    /// `DISPATCH_LEVEL` (2): DPCs, spin-lock holders; must not wait.
    Dispatch = 2,
}

impl Irql {
    /// The WDK name, e.g. `DISPATCH_LEVEL`.
    pub const fn name(self) -> &'static str {
        match self {
            Irql::Passive => "PASSIVE_LEVEL",
            Irql::Apc => "APC_LEVEL",
            Irql::Dispatch => "DISPATCH_LEVEL",
        }
    }
}

impl fmt::Display for Irql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a bound thread is to the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ThreadRole {
    /// A test or application thread bound with `Machine::enter`.
    Client,
    /// A system thread a driver created.
    System,
    /// The DPC thread or a system worker thread.
    Service,
}

/// What a thread binds to, seen from below the machine: its id and two type-erased slots.
pub(crate) struct Bound {
    /// The machine's id.
    pub(crate) id: u64,
    /// The machine's core (the machine layer downcasts it back).
    pub(crate) machine: Weak<dyn Any + Send + Sync>,
    /// The machine's verifier (the checks layer downcasts it back).
    pub(crate) verifier: Weak<dyn Any + Send + Sync>,
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// Allocates a process-wide unique id (threads, locks, allocations).
pub(crate) fn new_uid() -> u64 {
    NEXT_UID.fetch_add(1, Ordering::Relaxed)
}

/// One binding of this thread to a machine.
struct Binding {
    bound: Bound,
    role: ThreadRole,
}

/// Descriptions of the live locks (e.g. `spin lock 'name'`) by lock id, for held-lock reports.
/// Registered when a lock is created and removed when it is dropped, so acquire and release only
/// record the id (they must stay cheap: every Module lock on the simulator goes through them).
static LOCK_DESCRIPTIONS: Mutex<BTreeMap<u64, String>> = Mutex::new(BTreeMap::new());

fn descriptions() -> std::sync::MutexGuard<'static, BTreeMap<u64, String>> {
    LOCK_DESCRIPTIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records the description of lock `id` (at creation).
pub(crate) fn register_lock(id: u64, description: String) {
    descriptions().insert(id, description);
}

/// Forgets lock `id` (when it is dropped).
pub(crate) fn unregister_lock(id: u64) {
    descriptions().remove(&id);
}

/// The description of lock `id`, or a placeholder for a lock already dropped.
pub(crate) fn lock_description(id: u64) -> String {
    descriptions()
        .get(&id)
        .cloned()
        .unwrap_or_else(|| format!("lock #{id} (deleted)"))
}

/// The part of the thread context off the lock path.
#[derive(Default)]
struct Ctx {
    name: Option<String>,
    bindings: Vec<Binding>,
    /// The held locks after the first [`INLINE_HELD`], in acquisition order.
    held_spill: Vec<u64>,
    drivers: Vec<String>,
}

/// How many held locks [`ThreadState`] keeps inline; a thread rarely holds more at once.
pub(crate) const INLINE_HELD: usize = 8;

/// `ThreadState::level` and a [`SpinWord`] keep an IRQL in their low bits (`Irql as` value).
const IRQL_BITS: u32 = 2;
const IRQL_MASK: u64 = (1 << IRQL_BITS) - 1;

/// The IRQL kept in the low bits of a level or lock word.
#[inline]
fn irql_from_bits(bits: u64) -> Irql {
    match bits & IRQL_MASK {
        0 => Irql::Passive,
        1 => Irql::Apc,
        _ => Irql::Dispatch,
    }
}

/// The per-thread state a lock acquire or release touches: the thread's id, its IRQL and the
/// locks it holds. Plain cells with a `const` initializer and no destructor, so reaching it is
/// one thread-local address, with no lazy initialization or borrow flag.
pub(crate) struct ThreadState {
    /// The thread's unique id; 0 until first needed.
    uid: Cell<u64>,
    /// The IRQL (low [`IRQL_BITS`]) and how many locks the thread holds (the rest): one word, so
    /// that a lock's acquire or release reads and writes both with one load and one store. The
    /// first `min(held, INLINE_HELD)` ids are in `held`, the rest in `Ctx::held_spill`.
    level: Cell<u64>,
    /// Ids of the first held locks, in acquisition order.
    held: [Cell<u64>; INLINE_HELD],
}

thread_local! {
    static CTX: RefCell<Ctx> = RefCell::new(Ctx::default());
    static THREAD: ThreadState = const {
        ThreadState {
            uid: Cell::new(0),
            level: Cell::new(Irql::Passive as u64),
            held: [const { Cell::new(0) }; INLINE_HELD],
        }
    };
}

fn with<R>(default: R, f: impl FnOnce(&mut Ctx) -> R) -> R {
    CTX.try_with(|c| f(&mut c.borrow_mut())).unwrap_or(default)
}

/// Runs `f` with the calling thread's [`ThreadState`]. `f` stays small (a field or two), so that
/// the whole access inlines into the caller.
#[inline]
fn with_thread<R>(f: impl FnOnce(&ThreadState) -> R) -> R {
    THREAD.with(f)
}

/// A level word: `held` locks at `irql`.
#[inline]
fn level_word(held: u64, irql: u64) -> u64 {
    held << IRQL_BITS | irql
}

impl ThreadState {
    /// The thread's unique id (allocated on first use).
    #[inline]
    pub(crate) fn uid(&self) -> u64 {
        match self.uid.get() {
            0 => self.assign_uid(),
            uid => uid,
        }
    }

    #[cold]
    #[inline(never)]
    fn assign_uid(&self) -> u64 {
        let uid = new_uid();
        self.uid.set(uid);
        uid
    }

    /// The thread's IRQL.
    #[inline]
    pub(crate) fn irql(&self) -> Irql {
        irql_from_bits(self.level.get())
    }

    /// Sets the thread's IRQL (no checks: callers apply the IRQL rules).
    #[inline]
    pub(crate) fn set_irql(&self, irql: Irql) {
        self.level.set(self.level.get() & !IRQL_MASK | irql as u64);
    }

    /// How many locks the thread holds.
    #[inline]
    fn held_len(&self) -> usize {
        usize::try_from(self.level.get() >> IRQL_BITS).unwrap_or(usize::MAX)
    }

    /// Sets how many locks the thread holds.
    #[inline]
    fn set_held_len(&self, len: usize) {
        let irql = self.level.get() & IRQL_MASK;
        self.level.set(level_word(len as u64, irql));
    }

    /// Records that the thread now holds lock `id` (the newest).
    #[inline]
    pub(crate) fn push_held(&self, id: u64) {
        let len = self.held_len();
        if let Some(slot) = self.held.get(len) {
            slot.set(id);
            self.set_held_len(len + 1);
        } else {
            self.push_spilled(id);
        }
    }

    #[cold]
    #[inline(never)]
    fn push_spilled(&self, id: u64) {
        if with(false, |c| {
            c.held_spill.push(id);
            true
        }) {
            self.set_held_len(self.held_len() + 1);
        }
    }

    /// Removes `id` from the held locks (the most recent entry of it); false if it was not
    /// there. Releasing the newest lock — the usual LIFO order — moves nothing.
    #[inline]
    pub(crate) fn remove_held(&self, id: u64) -> bool {
        let len = self.held_len();
        if let Some(last) = len.checked_sub(1).and_then(|i| self.held.get(i)) {
            if last.get() == id {
                self.set_held_len(len - 1);
                return true;
            }
        }
        self.remove_held_slow(id)
    }

    /// Out of order, or with spilled entries: rebuild the list without `id`.
    #[cold]
    #[inline(never)]
    fn remove_held_slow(&self, id: u64) -> bool {
        let mut all = self.held_locks();
        let Some(pos) = all.iter().rposition(|&h| h == id) else {
            return false;
        };
        all.remove(pos);
        self.set_held_locks(&all);
        true
    }

    /// The ids of the locks the thread holds, in acquisition order.
    pub(crate) fn held_locks(&self) -> Vec<u64> {
        let inline = self.held_len().min(INLINE_HELD);
        let mut all: Vec<u64> = self.held[..inline].iter().map(Cell::get).collect();
        with((), |c| all.extend_from_slice(&c.held_spill));
        all
    }

    fn set_held_locks(&self, list: &[u64]) {
        for (slot, &id) in self.held.iter().zip(list) {
            slot.set(id);
        }
        let spill = list.get(INLINE_HELD..).unwrap_or_default();
        let spilled = with(0, |c| {
            c.held_spill.clear();
            c.held_spill.extend_from_slice(spill);
            spill.len()
        });
        self.set_held_len(list.len().min(INLINE_HELD) + spilled);
    }
}

/// A spin lock's word: the holder's thread id and the IRQL to restore on release, packed into
/// one atomic (`uid << IRQL_BITS | irql`; 0 when free), so that taking the lock is one
/// compare-exchange that also saves the IRQL, and giving it back one load and one store. The
/// protocol lives here, next to the thread state it updates in the same access; the lock type
/// reports what it refuses.
#[derive(Debug, Default)]
pub(crate) struct SpinWord {
    word: AtomicU64,
}

/// Why [`SpinWord::release_slow`] did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReleaseRefused {
    /// Nobody holds the lock.
    NotHeld,
    /// Another thread holds it.
    OtherThread,
}

impl SpinWord {
    /// The holder's thread id, if any.
    pub(crate) fn owner(&self) -> Option<u64> {
        match self.word.load(Ordering::Relaxed) >> IRQL_BITS {
            0 => None,
            owner => Some(owner),
        }
    }

    /// `KeAcquireSpinLock`'s usual case for the calling thread: a thread with an id and room in
    /// its inline held-lock list takes a free word. Raises to DISPATCH_LEVEL, keeps the previous
    /// IRQL in the word, records lock `id` as held and returns that IRQL; `None` (nothing
    /// changed) for everything else, which is [`acquire_slow`](Self::acquire_slow)'s.
    ///
    /// Inlined into the lock's callers (other crates too): one thread-local address, two loads,
    /// the compare-exchange and two stores.
    #[inline]
    pub(crate) fn try_acquire(&self, id: u64) -> Option<Irql> {
        THREAD.with(|thread| {
            let me = thread.uid.get();
            let level = thread.level.get();
            let old = level & IRQL_MASK;
            let len = level >> IRQL_BITS;
            let slot = usize::try_from(len).ok().and_then(|i| thread.held.get(i))?;
            if me == 0
                || self
                    .word
                    .compare_exchange(
                        0,
                        me << IRQL_BITS | old,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_err()
            {
                return None;
            }
            slot.set(id);
            thread.level.set(level_word(len + 1, Irql::Dispatch as u64));
            Some(irql_from_bits(old))
        })
    }

    /// `KeAcquireSpinLock` when [`try_acquire`](Self::try_acquire) declined: the thread's first
    /// id, a recursive acquire, a held (contended) word, more than `INLINE_HELD` locks held.
    /// Returns the IRQL the thread ran at: `Ok` acquired, `Err` if the thread holds the word
    /// already (a recursive acquire; nothing changed).
    #[cold]
    #[inline(never)]
    pub(crate) fn acquire_slow(&self, id: u64) -> Result<Irql, Irql> {
        with_thread(|thread| {
            let old = thread.irql();
            let me = thread.uid();
            if self.owner() == Some(me) {
                return Err(old);
            }
            // Raised before spinning, as a processor raises before it spins on a `KSPIN_LOCK`.
            thread.set_irql(Irql::Dispatch);
            let mut spins = 0_u32;
            while self
                .word
                .compare_exchange_weak(
                    0,
                    me << IRQL_BITS | old as u64,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(64) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            thread.push_held(id);
            Ok(old)
        })
    }

    /// `KeReleaseSpinLock`'s usual case for the calling thread: the holder releases its newest
    /// lock (LIFO) from the inline list. Gives the word back, forgets lock `id`, restores the
    /// saved IRQL and returns true; false (nothing changed) for everything else, which is
    /// [`release_slow`](Self::release_slow)'s.
    ///
    /// Inlined into the lock's callers: one thread-local address, four loads and two stores.
    #[inline]
    pub(crate) fn try_release(&self, id: u64) -> bool {
        THREAD.with(|thread| {
            let me = thread.uid.get();
            let len = thread.level.get() >> IRQL_BITS;
            let word = self.word.load(Ordering::Relaxed);
            let newest = len
                .checked_sub(1)
                .and_then(|newest| usize::try_from(newest).ok())
                .and_then(|newest| thread.held.get(newest));
            if me == 0 || word >> IRQL_BITS != me || newest.is_none_or(|newest| newest.get() != id)
            {
                return false;
            }
            self.word.store(0, Ordering::Release);
            thread.level.set(level_word(len - 1, word & IRQL_MASK));
            true
        })
    }

    /// `KeReleaseSpinLock` when [`try_release`](Self::try_release) declined: a misuse (refused,
    /// nothing changes), an out-of-order release, spilled held locks.
    #[cold]
    #[inline(never)]
    pub(crate) fn release_slow(&self, id: u64) -> Result<(), ReleaseRefused> {
        with_thread(|thread| {
            let word = self.word.load(Ordering::Relaxed);
            match word >> IRQL_BITS {
                0 => Err(ReleaseRefused::NotHeld),
                owner if owner != thread.uid() => Err(ReleaseRefused::OtherThread),
                _ => {
                    self.word.store(0, Ordering::Release);
                    thread.remove_held(id);
                    thread.set_irql(irql_from_bits(word));
                    Ok(())
                }
            }
        })
    }
}

/// The calling thread's unique id.
#[inline]
pub(crate) fn thread_uid() -> u64 {
    with_thread(ThreadState::uid)
}

/// Initializes a thread the simulator spawned: its pre-allocated id and its name.
pub(crate) fn init_sim_thread(uid: u64, name: &str) {
    with_thread(|t| t.uid.set(uid));
    with((), |c| c.name = Some(name.to_owned()));
}

/// The calling thread's name as shown in traces.
pub fn thread_name() -> String {
    let sim = with(None, |c| c.name.clone());
    sim.or_else(|| std::thread::current().name().map(str::to_owned))
        .unwrap_or_else(|| format!("thread-{}", thread_uid()))
}

#[inline]
pub(crate) fn irql() -> Irql {
    with_thread(ThreadState::irql)
}

#[inline]
pub(crate) fn set_irql(irql: Irql) {
    with_thread(|t| t.set_irql(irql));
}

pub(crate) fn push_binding(bound: Bound, role: ThreadRole) {
    with((), |c| c.bindings.push(Binding { bound, role }));
}

pub(crate) fn pop_binding(core_id: u64) {
    with((), |c| {
        if let Some(pos) = c.bindings.iter().rposition(|b| b.bound.id == core_id) {
            c.bindings.remove(pos);
        }
    });
}

/// The role of the calling thread on machine `core_id`, if it is bound to it.
pub(crate) fn role_on(core_id: u64) -> Option<ThreadRole> {
    with(None, |c| {
        c.bindings
            .iter()
            .rev()
            .find(|b| b.bound.id == core_id)
            .map(|b| b.role)
    })
}

/// The core of the machine the calling thread is bound to (the innermost binding), type-erased.
pub(crate) fn current_machine() -> Option<Arc<dyn Any + Send + Sync>> {
    with(None, |c| {
        c.bindings.last().and_then(|b| b.bound.machine.upgrade())
    })
}

/// The verifier of the machine the calling thread is bound to, type-erased.
pub(crate) fn current_verifier() -> Option<Arc<dyn Any + Send + Sync>> {
    with(None, |c| {
        c.bindings.last().and_then(|b| b.bound.verifier.upgrade())
    })
}

/// The driver on whose behalf the calling thread currently runs (innermost [`DriverScope`] or
/// driver callback), if any.
pub fn current_driver() -> Option<String> {
    with(None, |c| c.drivers.last().cloned())
}

pub(crate) fn push_driver(name: &str) {
    with((), |c| c.drivers.push(name.to_owned()));
}

pub(crate) fn pop_driver() {
    with((), |c| {
        c.drivers.pop();
    });
}

/// Records that the calling thread now holds lock `id` (the newest).
#[inline]
pub(crate) fn push_held(id: u64) {
    with_thread(|t| t.push_held(id));
}

/// Removes `id` from the calling thread's held locks; false if it was not there.
#[inline]
pub(crate) fn remove_held(id: u64) -> bool {
    with_thread(|t| t.remove_held(id))
}

pub(crate) fn held_locks() -> Vec<u64> {
    with_thread(ThreadState::held_locks)
}

/// Runs the calling thread on behalf of a driver for a scope: pool allocations, trace events and
/// verifier violations made inside are attributed to `driver`. Scopes nest.
///
/// The simulator pushes a scope around every driver callback (see
/// [`invoke_callback`](crate::verifier::invoke_callback)); the object model pushes one around
/// `DriverEntry`. Tests use it to run "driver code" directly.
#[must_use = "the scope ends when the value drops"]
#[derive(Debug)]
pub struct DriverScope {
    _not_send: PhantomData<*const ()>,
}

impl DriverScope {
    /// Enters a scope for `driver`.
    pub fn enter(driver: &str) -> Self {
        push_driver(driver);
        DriverScope {
            _not_send: PhantomData,
        }
    }
}

impl Drop for DriverScope {
    fn drop(&mut self) {
        pop_driver();
    }
}
