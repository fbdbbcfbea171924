//! Tagged pool allocations and leak tracking.
//!
//! `ExAllocatePool2` with a four-character tag, in user mode: [`Pool::allocate`] returns a
//! [`PoolBlock`] that owns a zeroed byte buffer; dropping it (or [`PoolBlock::free`]) frees it.
//! Every outstanding block is tracked with its tag, size and owning driver (the thread's current
//! driver, see [`DriverScope`](crate::exec::DriverScope)). At driver unload the framework calls
//! [`Pool::check_leaks`], which reports a [`Rule::PoolLeak`]
//! violation listing each leaked tag with its count and bytes — the user-mode version of Driver
//! Verifier's pool tracking. Allocations are a [`FaultPoint::Allocation`] fault point.

use core::fmt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use crate::exec::context;
use crate::fault::{FaultInjector, FaultPoint};
use crate::status::Status;
use crate::trace::{Trace, TraceKind};
use crate::verifier::{Rule, Verifier, NO_DRIVER};

/// A pool tag: four bytes, conventionally ASCII (`b"DmfB"`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolTag(pub [u8; 4]);

impl From<[u8; 4]> for PoolTag {
    fn from(t: [u8; 4]) -> Self {
        PoolTag(t)
    }
}

impl From<&[u8; 4]> for PoolTag {
    fn from(t: &[u8; 4]) -> Self {
        PoolTag(*t)
    }
}

impl fmt::Display for PoolTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            let c = if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PoolTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PoolTag({self})")
    }
}

/// Largest single allocation the simulated pool grants.
pub const MAX_ALLOCATION: usize = 1 << 30;

/// One outstanding allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolAllocation {
    /// Allocation id (unique in the process).
    pub id: u64,
    /// Its tag.
    pub tag: PoolTag,
    /// Its size in bytes.
    pub size: usize,
    /// The driver that allocated it.
    pub driver: String,
}

/// Outstanding allocations of one tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagUsage {
    /// The tag.
    pub tag: PoolTag,
    /// Number of blocks.
    pub count: usize,
    /// Total bytes.
    pub bytes: usize,
}

#[derive(Debug, Default)]
struct Tracker {
    live: Mutex<HashMap<u64, PoolAllocation>>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, PoolAllocation>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An allocated block: a zeroed buffer; freed on drop.
///
/// Three words, like the kernel's pointer-and-size handle plus one: the bytes, and the
/// bookkeeping behind one pointer (a block is moved far more often than it is allocated).
pub struct PoolBlock {
    data: Box<[u8]>,
    meta: Box<BlockMeta>,
}

/// What the pool tracks about one block.
struct BlockMeta {
    id: u64,
    tag: PoolTag,
    tracker: Arc<Tracker>,
}

impl fmt::Debug for PoolBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBlock")
            .field("tag", &self.meta.tag)
            .field("size", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl PoolBlock {
    /// The block's tag.
    pub fn tag(&self) -> PoolTag {
        self.meta.tag
    }

    /// Frees the block (`ExFreePoolWithTag`); same as dropping it.
    pub fn free(self) {}
}

impl core::ops::Deref for PoolBlock {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl core::ops::DerefMut for PoolBlock {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

impl Drop for PoolBlock {
    fn drop(&mut self) {
        self.meta.tracker.lock().remove(&self.meta.id);
    }
}

/// The pool of one machine.
#[derive(Debug)]
pub struct Pool {
    tracker: Arc<Tracker>,
    faults: Arc<FaultInjector>,
    verifier: Arc<Verifier>,
    trace: Arc<Trace>,
}

impl Pool {
    pub(crate) fn new(
        faults: Arc<FaultInjector>,
        verifier: Arc<Verifier>,
        trace: Arc<Trace>,
    ) -> Self {
        Pool {
            tracker: Arc::default(),
            faults,
            verifier,
            trace,
        }
    }

    /// Allocates `size` zeroed bytes tagged `tag`, owned by the calling thread's current driver.
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` for `size == 0`; `STATUS_INSUFFICIENT_RESOURCES` when
    /// fault injection fails this allocation, when `size` exceeds [`MAX_ALLOCATION`], or when the
    /// host is out of memory.
    pub fn allocate(&self, tag: impl Into<PoolTag>, size: usize) -> Result<PoolBlock, Status> {
        let tag = tag.into();
        if size == 0 {
            return Err(Status::INVALID_PARAMETER);
        }
        if self.faults.should_fail(FaultPoint::Allocation) || size > MAX_ALLOCATION {
            return Err(Status::INSUFFICIENT_RESOURCES);
        }
        let mut data = Vec::new();
        if data.try_reserve_exact(size).is_err() {
            return Err(Status::INSUFFICIENT_RESOURCES);
        }
        data.resize(size, 0);
        let id = context::new_uid();
        let driver = context::current_driver().unwrap_or_else(|| NO_DRIVER.to_owned());
        self.tracker.lock().insert(
            id,
            PoolAllocation {
                id,
                tag,
                size,
                driver,
            },
        );
        Ok(PoolBlock {
            data: data.into_boxed_slice(),
            meta: Box::new(BlockMeta {
                id,
                tag,
                tracker: Arc::clone(&self.tracker),
            }),
        })
    }

    /// Every outstanding allocation, oldest first.
    pub fn outstanding(&self) -> Vec<PoolAllocation> {
        let mut v: Vec<PoolAllocation> = self.tracker.lock().values().cloned().collect();
        v.sort_by_key(|a| a.id);
        v
    }

    /// Outstanding allocations of `driver`, oldest first.
    pub fn outstanding_for_driver(&self, driver: &str) -> Vec<PoolAllocation> {
        self.outstanding()
            .into_iter()
            .filter(|a| a.driver == driver)
            .collect()
    }

    /// Outstanding allocations grouped by tag (sorted by tag), optionally only `driver`'s.
    pub fn outstanding_by_tag(&self, driver: Option<&str>) -> Vec<TagUsage> {
        let mut by_tag: BTreeMap<PoolTag, TagUsage> = BTreeMap::new();
        for a in self.tracker.lock().values() {
            if driver.is_some_and(|d| d != a.driver) {
                continue;
            }
            let u = by_tag.entry(a.tag).or_insert(TagUsage {
                tag: a.tag,
                count: 0,
                bytes: 0,
            });
            u.count += 1;
            u.bytes += a.size;
        }
        by_tag.into_values().collect()
    }

    /// Checks that `driver` has no outstanding allocation (called at its unload). On a leak,
    /// reports [`Rule::PoolLeak`] listing every leaked tag with count and bytes, and returns the
    /// leaks; returns an empty vector when clean.
    ///
    /// # Panics
    ///
    /// In Panic verifier mode, when something leaked (the bug check).
    pub fn check_leaks(&self, driver: &str) -> Vec<TagUsage> {
        let leaks = self.outstanding_by_tag(Some(driver));
        if leaks.is_empty() {
            self.trace
                .record_for(TraceKind::Note, Some(driver), "pool", "no pool leaks");
            return leaks;
        }
        let total: usize = leaks.iter().map(|u| u.count).sum();
        let list: Vec<String> = leaks
            .iter()
            .map(|u| format!("tag '{}': {} block(s), {} bytes", u.tag, u.count, u.bytes))
            .collect();
        self.verifier.report_for(
            Rule::PoolLeak,
            driver,
            "pool",
            &format!(
                "{total} pool allocation(s) still outstanding at driver unload: {}",
                list.join("; ")
            ),
        );
        leaks
    }
}
