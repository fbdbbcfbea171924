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
//! A test thread binds itself with [`Machine::enter`](crate::Machine::enter); threads the simulator
//! spawns (the DPC thread, system worker threads, system threads) are bound automatically. Driver
//! attribution is pushed by [`DriverScope`] and by `invoke_callback`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::exec::irql::Irql;
use crate::exec::sched::ThreadRole;
use crate::machine::Core;

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// Allocates a process-wide unique id (threads, locks, allocations).
pub(crate) fn new_uid() -> u64 {
    NEXT_UID.fetch_add(1, Ordering::Relaxed)
}

/// One binding of this thread to a machine.
struct Binding {
    core_id: u64,
    core: Weak<Core>,
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

#[derive(Default)]
struct Ctx {
    uid: Option<u64>,
    name: Option<String>,
    irql: Irql,
    bindings: Vec<Binding>,
    /// Ids of the locks this thread holds, in acquisition order.
    held: Vec<u64>,
    drivers: Vec<String>,
}

thread_local! {
    static CTX: RefCell<Ctx> = RefCell::new(Ctx::default());
}

fn with<R>(default: R, f: impl FnOnce(&mut Ctx) -> R) -> R {
    CTX.try_with(|c| f(&mut c.borrow_mut())).unwrap_or(default)
}

/// The calling thread's unique id.
pub(crate) fn thread_uid() -> u64 {
    with(0, |c| *c.uid.get_or_insert_with(new_uid))
}

/// Initializes a thread the simulator spawned: its pre-allocated id and its name.
pub(crate) fn init_sim_thread(uid: u64, name: &str) {
    with((), |c| {
        c.uid = Some(uid);
        c.name = Some(name.to_owned());
    });
}

/// The calling thread's name as shown in traces.
pub fn thread_name() -> String {
    let sim = with(None, |c| c.name.clone());
    sim.or_else(|| std::thread::current().name().map(str::to_owned))
        .unwrap_or_else(|| format!("thread-{}", thread_uid()))
}

pub(crate) fn irql() -> Irql {
    with(Irql::Passive, |c| c.irql)
}

pub(crate) fn set_irql(irql: Irql) {
    with((), |c| c.irql = irql);
}

pub(crate) fn push_binding(core: &Arc<Core>, role: ThreadRole) {
    with((), |c| {
        c.bindings.push(Binding {
            core_id: core.id,
            core: Arc::downgrade(core),
            role,
        });
    });
}

pub(crate) fn pop_binding(core_id: u64) {
    with((), |c| {
        if let Some(pos) = c.bindings.iter().rposition(|b| b.core_id == core_id) {
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
            .find(|b| b.core_id == core_id)
            .map(|b| b.role)
    })
}

/// The machine the calling thread is bound to (the innermost binding).
pub(crate) fn current_core() -> Option<Arc<Core>> {
    with(None, |c| c.bindings.last().and_then(|b| b.core.upgrade()))
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

pub(crate) fn push_held(id: u64) {
    with((), |c| c.held.push(id));
}

/// Removes `id` from the calling thread's held locks; false if it was not there.
pub(crate) fn remove_held(id: u64) -> bool {
    with(false, |c| {
        if let Some(pos) = c.held.iter().rposition(|&h| h == id) {
            c.held.remove(pos);
            true
        } else {
            false
        }
    })
}

pub(crate) fn held_locks() -> Vec<u64> {
    with(Vec::new(), |c| c.held.clone())
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
