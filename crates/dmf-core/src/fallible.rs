//! Fallible heap allocation: every `Box`, `Arc`, `Vec` and `String` the framework, the Modules and
//! DMF drivers make after `DriverEntry`.
//!
//! In the kernel an allocation that cannot fail is a bug check: Rust's `Box::new`, `Arc::new`,
//! `Vec::push` and `vec!` call the allocation-error handler when the pool refuses, and in a kernel
//! image that handler is `KeBugCheckEx`. Every allocation made after `DriverEntry` therefore goes
//! through this module, which returns `STATUS_INSUFFICIENT_RESOURCES` instead:
//!
//! | instead of | use |
//! |---|---|
//! | `Box::new(v)` | [`try_box`]`(v)?` |
//! | `Arc::new(v)`, `Arc::new_cyclic(f)` | [`try_arc`]`(v)?`, [`try_arc_cyclic`]`(f)?` |
//! | `Vec::with_capacity(n)`, `vec![x; n]` | [`try_vec_with_capacity`]`(n)?`, [`try_vec_filled`]`(x, n)?` |
//! | `v.push(x)`, `v.insert(i, x)`, `v.extend_from_slice(s)` | [`VecExt::try_push`], [`VecExt::try_insert`], [`VecExt::try_extend_from_slice`] |
//! | `s.to_vec()`, `iter.collect::<Vec<_>>()` | [`try_to_vec`]`(s)?`, [`try_collect`]`(iter)?` |
//! | `v.into_boxed_slice()` | [`try_boxed_slice`]`(v)?` |
//! | `format!(…)`, `String::from(s)` | [`try_format`]`(format_args!(…))?`, [`try_string`]`(s)?` |
//!
//! CI enforces it: clippy's `disallowed_methods`/`disallowed_macros` (`.ci/clippy-kernel/clippy.toml`)
//! refuse the infallible forms in dmf-core, dmf-modules and the samples, outside a short, reviewed
//! list of `DriverEntry`-time and simulator-only places.
//!
//! # Failing on purpose
//! Each function first asks the platform whether the allocation may happen
//! ([`PlatformPool::admit_heap_allocation`](crate::platform::contract::PlatformPool::admit_heap_allocation)).
//! On kmdf-sim that is a fault point of the machine's fault injector — the same counter as pool
//! allocations — so a test can fail the 1st, 2nd, … allocation of any scenario and prove every
//! failure path (the `alloc_sweep` tests).
//!
//! # `Arc` in a kernel image
//! `Arc::try_new` is not stable Rust. [`try_arc`] therefore allocates the `Arc`'s block itself
//! (fallibly), hands it to the kernel's global allocator as a one-shot reservation for the current
//! processor, and then lets `Arc::new` take it: `Arc::new` cannot reach the pool at all. The
//! reservation is made and consumed at `DISPATCH_LEVEL`, so nothing else can run on the processor in
//! between. The block's layout is the `Arc`'s ([`arc_block_layout`]: two counters, then the
//! value); if a future standard library changed it, the reservation would go unused and `Arc::new`
//! would fall back to an ordinary allocation — the test `arc_new_takes_the_reserved_block`
//! (`tests/fallible_reservation.rs`, with a reserving global allocator) fails first.
//!
//! ```
//! use dmf_core::fallible::{try_arc, try_box, try_vec_with_capacity, VecExt};
//!
//! # fn main() -> dmf_core::NtResult<()> {
//! let boxed = try_box(5u32)?;
//! let shared = try_arc([0u8; 16])?;
//! let mut list = try_vec_with_capacity::<u32>(2)?;
//! list.try_push(*boxed)?;
//! list.try_push(u32::from(shared[0]))?;
//! assert_eq!(list, [5, 0]);
//! # Ok(())
//! # }
//! ```

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::alloc::Layout;
use core::fmt;

use crate::status::{NtResult, NtStatus};

pub mod reservation;

/// `STATUS_INSUFFICIENT_RESOURCES`, the status of every refused allocation.
const REFUSED: NtStatus = NtStatus::INSUFFICIENT_RESOURCES;

/// Asks the platform whether the next heap allocation may happen (fault injection on kmdf-sim).
#[inline]
#[cfg_attr(
    not(any(feature = "sim", all(feature = "kmdf", windows))),
    allow(
        clippy::unnecessary_wraps,
        reason = "without a backend every allocation is admitted"
    )
)]
fn admit() -> NtResult<()> {
    #[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
    {
        use crate::platform::contract::PlatformPool;
        crate::platform::Pool::admit_heap_allocation()
    }
    #[cfg(not(any(feature = "sim", all(feature = "kmdf", windows))))]
    {
        Ok(())
    }
}

/// `Box::new(value)`, or `STATUS_INSUFFICIENT_RESOURCES` when the heap refuses (then `value` is
/// dropped).
pub fn try_box<T>(value: T) -> NtResult<Box<T>> {
    admit()?;
    let layout = Layout::new::<T>();
    let raw = if layout.size() == 0 {
        // A zero-sized value needs no memory: an aligned, non-null dangling pointer is a valid
        // `Box` of it (the "Memory layout" section of `Box`'s documentation).
        core::ptr::NonNull::<T>::dangling().as_ptr()
    } else {
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc::alloc::alloc(layout) }.cast::<T>();
        if raw.is_null() {
            return Err(REFUSED);
        }
        raw
    };
    // SAFETY: `raw` is a fresh, properly aligned block for one `T`, allocated by the global
    // allocator with `Layout::new::<T>()` — or, for a zero-sized `T`, an aligned dangling pointer —
    // exactly what `Box<T>` owns and frees (the "Memory layout" section of `Box`'s documentation).
    unsafe {
        raw.write(value);
        Ok(Box::from_raw(raw))
    }
}

/// The layout of an `Arc<T>`'s heap block: the strong and weak counters, then the value, padded
/// to its alignment (how the standard library lays out `ArcInner<T>`).
/// `None` only for a value too large for any allocation.
pub fn arc_block_layout<T>() -> Option<Layout> {
    let counters = Layout::new::<[usize; 2]>();
    Some(counters.extend(Layout::new::<T>()).ok()?.0.pad_to_align())
}

/// Runs `make` (which allocates one block of `layout` through the global allocator) so that its
/// allocation cannot fail: the block is allocated first, fallibly, and handed to the allocator as
/// a reservation `make` consumes. Kernel images only; elsewhere the host allocator does not fail.
#[cfg(all(feature = "kmdf", not(feature = "sim"), windows))]
fn with_reserved_block<R>(layout: Layout, make: impl FnOnce() -> R) -> NtResult<R> {
    crate::platform::nt::reserve_and_run(layout, make)
}

#[cfg(not(all(feature = "kmdf", not(feature = "sim"), windows)))]
#[allow(
    clippy::unnecessary_wraps,
    reason = "the kernel version of this function fails"
)]
fn with_reserved_block<R>(_layout: Layout, make: impl FnOnce() -> R) -> NtResult<R> {
    Ok(make())
}

/// `Arc::new(value)`, or `STATUS_INSUFFICIENT_RESOURCES` when the heap refuses (then `value` is
/// dropped).
pub fn try_arc<T>(value: T) -> NtResult<Arc<T>> {
    admit()?;
    let layout = arc_block_layout::<T>().ok_or(REFUSED)?;
    #[allow(
        clippy::disallowed_methods,
        reason = "the block Arc::new allocates is reserved: it cannot fail"
    )]
    with_reserved_block(layout, move || Arc::new(value))
}

/// `Arc::new_cyclic(make)`, or `STATUS_INSUFFICIENT_RESOURCES` when the heap refuses.
///
/// In a kernel image `make` runs at `DISPATCH_LEVEL` (the `Arc`'s block is reserved for the
/// processor while it runs): it must only assemble the value from what it captured — allocate
/// and wait beforehand.
pub fn try_arc_cyclic<T>(make: impl FnOnce(&Weak<T>) -> T) -> NtResult<Arc<T>> {
    admit()?;
    let layout = arc_block_layout::<T>().ok_or(REFUSED)?;
    #[allow(
        clippy::disallowed_methods,
        reason = "the block Arc::new_cyclic allocates is reserved: it cannot fail"
    )]
    with_reserved_block(layout, || Arc::new_cyclic(make))
}

/// An empty `Vec` with room for `capacity` elements.
pub fn try_vec_with_capacity<T>(capacity: usize) -> NtResult<Vec<T>> {
    let mut vec = Vec::new();
    vec.try_reserve_nt(capacity)?;
    Ok(vec)
}

/// `vec![value; len]`.
pub fn try_vec_filled<T: Clone>(value: T, len: usize) -> NtResult<Vec<T>> {
    let mut vec = Vec::new();
    vec.try_reserve_exact_nt(len)?;
    #[allow(clippy::disallowed_methods, reason = "capacity reserved above")]
    vec.resize(len, value);
    Ok(vec)
}

/// `slice.to_vec()`.
pub fn try_to_vec<T: Clone>(slice: &[T]) -> NtResult<Vec<T>> {
    let mut vec = Vec::new();
    vec.try_extend_from_slice(slice)?;
    Ok(vec)
}

/// `iter.collect::<Vec<_>>()`.
pub fn try_collect<T>(iter: impl IntoIterator<Item = T>) -> NtResult<Vec<T>> {
    let iter = iter.into_iter();
    let mut vec = Vec::new();
    vec.try_reserve_nt(iter.size_hint().0)?;
    for item in iter {
        vec.try_push(item)?;
    }
    Ok(vec)
}

/// `vec.into_boxed_slice()` without the reallocation that can shrink it: when the vector has
/// spare capacity its elements move into an exactly sized one first.
pub fn try_boxed_slice<T>(vec: Vec<T>) -> NtResult<Box<[T]>> {
    if vec.capacity() == vec.len() {
        // `into_boxed_slice` reallocates only to drop spare capacity, and there is none.
        #[allow(
            clippy::disallowed_methods,
            reason = "no spare capacity: no reallocation"
        )]
        return Ok(vec.into_boxed_slice());
    }
    let mut exact = Vec::new();
    exact.try_reserve_exact_nt(vec.len())?;
    if exact.capacity() != vec.len() {
        // The allocator gave more than asked: shrinking could reallocate, which must not fail.
        return Err(REFUSED);
    }
    exact.extend(vec);
    #[allow(clippy::disallowed_methods, reason = "exactly sized: no reallocation")]
    Ok(exact.into_boxed_slice())
}

/// `String::from(text)`.
pub fn try_string(text: &str) -> NtResult<String> {
    admit()?;
    let mut string = String::new();
    string.try_reserve_exact(text.len()).map_err(|_| REFUSED)?;
    #[allow(clippy::disallowed_methods, reason = "capacity reserved above")]
    string.push_str(text);
    Ok(string)
}

/// `format!(…)`: `try_format(format_args!("{x}"))`.
pub fn try_format(args: fmt::Arguments<'_>) -> NtResult<String> {
    struct Writer {
        text: String,
        refused: bool,
    }
    impl fmt::Write for Writer {
        fn write_str(&mut self, piece: &str) -> fmt::Result {
            if admit().is_err() || self.text.try_reserve(piece.len()).is_err() {
                self.refused = true;
                return Err(fmt::Error);
            }
            #[allow(clippy::disallowed_methods, reason = "capacity reserved above")]
            self.text.push_str(piece);
            Ok(())
        }
    }
    let mut writer = Writer {
        text: String::new(),
        refused: false,
    };
    match fmt::write(&mut writer, args) {
        Ok(()) => Ok(writer.text),
        // A formatting error that is not ours (a `Display` impl failing) is reported the same
        // way: the string could not be made.
        Err(_) if writer.refused => Err(REFUSED),
        Err(_) => Err(NtStatus::UNSUCCESSFUL),
    }
}

/// Fallible growth of a `Vec`: every method returns `STATUS_INSUFFICIENT_RESOURCES` instead of
/// aborting, and leaves the vector unchanged when it fails.
pub trait VecExt<T> {
    /// `reserve(additional)`.
    fn try_reserve_nt(&mut self, additional: usize) -> NtResult<()>;
    /// `reserve_exact(additional)`.
    fn try_reserve_exact_nt(&mut self, additional: usize) -> NtResult<()>;
    /// `push(value)`; `value` is dropped when refused.
    fn try_push(&mut self, value: T) -> NtResult<()>;
    /// `insert(index, value)`; `value` is dropped when refused. Panics like `insert` when
    /// `index > len`.
    fn try_insert(&mut self, index: usize, value: T) -> NtResult<()>;
    /// `extend_from_slice(slice)`.
    fn try_extend_from_slice(&mut self, slice: &[T]) -> NtResult<()>
    where
        T: Clone;
}

impl<T> VecExt<T> for Vec<T> {
    fn try_reserve_nt(&mut self, additional: usize) -> NtResult<()> {
        if self.capacity() - self.len() >= additional {
            return Ok(());
        }
        admit()?;
        self.try_reserve(additional).map_err(|_| REFUSED)
    }

    fn try_reserve_exact_nt(&mut self, additional: usize) -> NtResult<()> {
        if self.capacity() - self.len() >= additional {
            return Ok(());
        }
        admit()?;
        self.try_reserve_exact(additional).map_err(|_| REFUSED)
    }

    fn try_push(&mut self, value: T) -> NtResult<()> {
        self.try_reserve_nt(1)?;
        #[allow(clippy::disallowed_methods, reason = "capacity reserved above")]
        self.push(value);
        Ok(())
    }

    fn try_insert(&mut self, index: usize, value: T) -> NtResult<()> {
        self.try_reserve_nt(1)?;
        #[allow(clippy::disallowed_methods, reason = "capacity reserved above")]
        self.insert(index, value);
        Ok(())
    }

    fn try_extend_from_slice(&mut self, slice: &[T]) -> NtResult<()>
    where
        T: Clone,
    {
        self.try_reserve_nt(slice.len())?;
        #[allow(clippy::disallowed_methods, reason = "capacity reserved above")]
        self.extend_from_slice(slice);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arc_block_layout_matches_the_standard_library() {
        // `Arc::as_ptr` points at the value, which sits right after the two counters.
        let arc = try_arc(0u64).unwrap();
        let layout = arc_block_layout::<u64>().unwrap();
        assert_eq!(layout.size(), 24);
        assert_eq!(layout.align(), 8);
        let weak = Arc::downgrade(&arc);
        assert_eq!(Arc::strong_count(&arc), 1);
        assert_eq!(Weak::strong_count(&weak), 1);
    }

    #[test]
    fn growth_and_copies() {
        let mut v = try_vec_with_capacity::<u8>(1).unwrap();
        v.try_push(1).unwrap();
        v.try_extend_from_slice(&[2, 3]).unwrap();
        v.try_insert(0, 0).unwrap();
        assert_eq!(v, [0, 1, 2, 3]);
        assert_eq!(try_to_vec(&v[1..]).unwrap(), [1, 2, 3]);
        assert_eq!(try_collect(v.iter().map(|x| x * 2)).unwrap(), [0, 2, 4, 6]);
        assert_eq!(&*try_boxed_slice(v).unwrap(), [0, 1, 2, 3]);
        assert_eq!(try_vec_filled(7u8, 3).unwrap(), [7, 7, 7]);
        assert_eq!(try_string("dmf").unwrap(), "dmf");
        assert_eq!(try_format(format_args!("{}-{}", 1, "x")).unwrap(), "1-x");
        assert_eq!(*try_box(()).unwrap(), ());
        let cyclic = try_arc_cyclic(|weak: &Weak<u8>| {
            assert!(weak.upgrade().is_none());
            9
        })
        .unwrap();
        assert_eq!(*cyclic, 9);
    }

    #[test]
    fn an_impossible_size_is_refused_not_aborted() {
        let mut v: Vec<u64> = Vec::new();
        assert_eq!(v.try_reserve_nt(usize::MAX / 4), Err(REFUSED));
        assert!(v.is_empty());
        assert_eq!(
            try_vec_with_capacity::<u8>(usize::MAX).unwrap_err(),
            REFUSED
        );
    }
}
