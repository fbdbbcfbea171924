//! Memory objects: `WdfMemory…`.
//!
//! A `WDFMEMORY` is a buffer and its length. [`WdfMemoryCreate`] allocates the buffer from the
//! machine's pool under the driver's tag (so kmdf-sim's leak report names it) and frees it when
//! the object is destroyed; [`WdfMemoryCreatePreallocated`] wraps the driver's own buffer (never
//! freed by the framework; [`WdfMemoryAssignBuffer`] points it elsewhere). The framework also
//! wraps a request's buffers in memory objects (`WdfRequestRetrieveInputMemory`, …; see
//! [`super::request`]), children of the request.
//!
//! [`WdfMemoryCreate`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfmemory/nf-wdfmemory-wdfmemorycreate
//! [`WdfMemoryCreatePreallocated`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfmemory/nf-wdfmemory-wdfmemorycreatepreallocated
//! [`WdfMemoryAssignBuffer`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfmemory/nf-wdfmemory-wdfmemoryassignbuffer

use core::any::Any;
use std::alloc::Layout;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kmdf_sim::object::WdfObject;
use kmdf_sim::{Machine, Status};

use super::bindings::status::{
    STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_BUFFER_SIZE, STATUS_SUCCESS,
};
use super::bindings::{
    NTSTATUS, POOL_TYPE, PVOID, PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES, ULONG, WDFLOOKASIDE,
    WDFMEMORY,
};
use super::objects::{self, Attributes, Handle, Object};
use super::{driver, wdf_exports};
use crate::host::guard;
use crate::wdfldr::WdfDriverGlobals;

wdf_exports! {
    WdfMemoryCreate => wdf_memory_create: PFN_WDFMEMORYCREATE,
    WdfMemoryCreatePreallocated => wdf_memory_create_preallocated: PFN_WDFMEMORYCREATEPREALLOCATED,
    WdfMemoryGetBuffer => wdf_memory_get_buffer: PFN_WDFMEMORYGETBUFFER,
    WdfMemoryAssignBuffer => wdf_memory_assign_buffer: PFN_WDFMEMORYASSIGNBUFFER,
    WdfMemoryCopyToBuffer => wdf_memory_copy_to_buffer: PFN_WDFMEMORYCOPYTOBUFFER,
    WdfMemoryCopyFromBuffer => wdf_memory_copy_from_buffer: PFN_WDFMEMORYCOPYFROMBUFFER,
    WdfLookasideListCreate => wdf_lookaside_list_create: PFN_WDFLOOKASIDELISTCREATE,
    WdfMemoryCreateFromLookaside => wdf_memory_create_from_lookaside: PFN_WDFMEMORYCREATEFROMLOOKASIDE,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A zeroed host allocation whose address stays fixed for its life (16-byte aligned, like pool):
/// the buffers the framework hands a driver for a request.
pub struct HostBuffer {
    ptr: *mut u8,
    len: usize,
    layout: Layout,
}

// SAFETY: plain memory owned by this value; the driver synchronises its own use of it, the host
// reads and writes it only while it owns the request it belongs to.
unsafe impl Send for HostBuffer {}
// SAFETY: as above.
unsafe impl Sync for HostBuffer {}

impl core::fmt::Debug for HostBuffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostBuffer")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl HostBuffer {
    /// A buffer holding `bytes`, at least `len` long (the rest zeroed).
    ///
    /// # Panics
    /// Never for a length the host can allocate (larger: the process aborts as on any
    /// allocation failure).
    pub fn new(bytes: &[u8], len: usize) -> HostBuffer {
        let len = len.max(bytes.len());
        let layout = Layout::from_size_align(len.max(1), 16).expect("a buffer layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `ptr` has room for `len >= bytes.len()` bytes and does not overlap `bytes`.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
        HostBuffer { ptr, len, layout }
    }

    /// The address the driver uses.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A copy of the contents.
    pub fn to_vec(&self) -> Vec<u8> {
        // SAFETY: `ptr` is valid for `len` bytes for the life of `self`.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }.to_vec()
    }

    /// Overwrites the start of the buffer with `bytes` (as many as fit).
    pub fn write(&self, bytes: &[u8]) {
        let n = bytes.len().min(self.len);
        // SAFETY: `ptr` is valid for `len >= n` bytes; `bytes` is host memory, not overlapping.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr, n) };
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once (here).
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// The payload of a `WDFMEMORY`: where its buffer is, and what keeps it alive.
pub struct MemoryPayload {
    region: Mutex<(usize, usize)>,
    /// The pool block or host buffer the memory owns or borrows (none: preallocated).
    keep: Option<Box<dyn Any + Send + Sync>>,
}

impl core::fmt::Debug for MemoryPayload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (ptr, len) = *lock(&self.region);
        f.debug_struct("MemoryPayload")
            .field("buffer", &format_args!("{ptr:#x}"))
            .field("len", &len)
            .finish_non_exhaustive()
    }
}

/// The buffer and length of the live `WDFMEMORY` `handle`, or a stop naming `routine`.
pub(crate) fn region_of(handle: Handle, routine: &str) -> (*mut u8, usize) {
    let object = objects::expect_kind(handle, "WDFMEMORY", routine);
    let payload = payload(&object);
    let (ptr, len) = *lock(&payload.region);
    (ptr as *mut u8, len)
}

fn payload(object: &Object) -> &MemoryPayload {
    object
        .payload::<MemoryPayload>()
        .expect("a WDFMEMORY carries a MemoryPayload")
}

/// A `WDFMEMORY` over `len` bytes at `ptr`, kept alive by `keep`, created by the framework with
/// `parent` (a request's buffers). `None` if the object cannot be created.
pub(crate) fn wrap(
    machine: &Machine,
    ptr: *mut u8,
    len: usize,
    keep: Arc<HostBuffer>,
    parent: &WdfObject,
) -> Option<Handle> {
    let pending = objects::begin("WDFMEMORY", None).ok()?;
    let attrs = pending.sim_attributes("WdfRequestRetrieve…Memory", Some(parent));
    let sim = WdfObject::create(machine, "WDFMEMORY", attrs).ok()?;
    let payload = MemoryPayload {
        region: Mutex::new((ptr as usize, len)),
        keep: Some(Box::new(keep)),
    };
    Some(pending.finish(sim, payload).handle())
}

/// Creates a `WDFMEMORY` for the driver of `globals` (default parent: the driver).
fn create(
    globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    routine: &str,
    region: (usize, usize),
    keep: Option<Box<dyn Any + Send + Sync>>,
) -> Result<Handle, Status> {
    // SAFETY: the routine's contract: null or the driver's attributes for the call.
    let attributes = unsafe { Attributes::read(attributes) }?;
    create_with(globals, attributes, routine, region, keep)
}

/// [`create`] with attributes already read.
fn create_with(
    globals: PWDF_DRIVER_GLOBALS,
    attributes: Option<Attributes>,
    routine: &str,
    region: (usize, usize),
    keep: Option<Box<dyn Any + Send + Sync>>,
) -> Result<Handle, Status> {
    let driver = driver::of_globals(globals, routine);
    let pending = objects::begin("WDFMEMORY", attributes)?;
    let attrs = pending.sim_attributes(routine, Some(driver.sim.object()));
    let machine = driver.sim.machine().ok_or(Status::INVALID_DEVICE_STATE)?;
    let sim = WdfObject::create(&machine, "WDFMEMORY", attrs)?;
    let payload = MemoryPayload {
        region: Mutex::new(region),
        keep,
    };
    Ok(pending.finish(sim, payload).handle())
}

/// `WdfMemoryCreate`: `BufferSize` bytes of pool tagged `PoolTag` (the driver's tag when 0),
/// owned by the new object.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a zero size or a null `Memory`;
/// `STATUS_INSUFFICIENT_RESOURCES` when the pool refuses; the attributes' errors.
extern "win64" fn wdf_memory_create(
    globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    _pool_type: POOL_TYPE,
    pool_tag: ULONG,
    buffer_size: usize,
    memory: *mut WDFMEMORY,
    buffer: *mut PVOID,
) -> NTSTATUS {
    guard("WdfMemoryCreate", || {
        if memory.is_null() || buffer_size == 0 {
            return Status::INVALID_PARAMETER.0;
        }
        let tag = if pool_tag == 0 && !globals.is_null() {
            // SAFETY: the globals WdfVersionBind handed out (checked by `of_globals` below).
            unsafe { (*globals.cast::<WdfDriverGlobals>()).driver_tag }
        } else {
            pool_tag
        };
        // SAFETY: the routine's contract: null or the driver's attributes for the call.
        let attributes = match unsafe { Attributes::read(attributes) } {
            Ok(a) => a,
            Err(status) => return status.0,
        };
        match pool_memory(globals, attributes, tag, buffer_size, "WdfMemoryCreate") {
            Ok((handle, ptr)) => {
                // SAFETY: the driver's out parameters (`Memory` checked non-null; `Buffer`
                // optional).
                unsafe {
                    memory.write(handle as WDFMEMORY);
                    if !buffer.is_null() {
                        buffer.write(ptr.cast());
                    }
                }
                STATUS_SUCCESS
            }
            Err(status) => status.0,
        }
    })
}

/// A memory object owning `size` bytes of pool tagged `tag`: (handle, buffer).
fn pool_memory(
    globals: PWDF_DRIVER_GLOBALS,
    attributes: Option<Attributes>,
    tag: u32,
    size: usize,
    routine: &str,
) -> Result<(Handle, *mut u8), Status> {
    let machine = crate::host::machine(routine);
    let mut block = machine.pool().allocate(tag.to_le_bytes(), size)?;
    let ptr = block.as_mut_ptr();
    let handle = create_with(
        globals,
        attributes,
        routine,
        (ptr as usize, size),
        Some(Box::new(Mutex::new(block))),
    )?;
    Ok((handle, ptr))
}

/// The payload of a `WDFLOOKASIDE`: what each memory object made from it gets.
#[derive(Debug)]
pub struct LookasidePayload {
    size: usize,
    tag: u32,
    memory_attributes: Option<Attributes>,
}

/// `WdfLookasideListCreate`: a list of `BufferSize`-byte pool buffers (default parent: the
/// driver); the host allocates each buffer when it is taken (`WdfMemoryCreateFromLookaside`).
///
/// Errors: `STATUS_INVALID_PARAMETER` for a zero size or a null `Lookaside`; the attributes'
/// errors.
extern "win64" fn wdf_lookaside_list_create(
    globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    buffer_size: usize,
    _pool_type: POOL_TYPE,
    memory_attributes: PWDF_OBJECT_ATTRIBUTES,
    pool_tag: ULONG,
    lookaside: *mut WDFLOOKASIDE,
) -> NTSTATUS {
    guard("WdfLookasideListCreate", || {
        if lookaside.is_null() || buffer_size == 0 {
            return Status::INVALID_PARAMETER.0;
        }
        let driver = driver::of_globals(globals, "WdfLookasideListCreate");
        // SAFETY: the routine's contract: null or the driver's attributes for the call (both).
        let (attributes, memory_attributes) = match unsafe {
            (
                Attributes::read(attributes),
                Attributes::read(memory_attributes),
            )
        } {
            (Ok(a), Ok(m)) => (a, m),
            (Err(status), _) | (_, Err(status)) => return status.0,
        };
        let tag = if pool_tag == 0 && !globals.is_null() {
            // SAFETY: the globals WdfVersionBind handed out (checked by `of_globals` above).
            unsafe { (*globals.cast::<WdfDriverGlobals>()).driver_tag }
        } else {
            pool_tag
        };
        let pending = match objects::begin("WDFLOOKASIDE", attributes) {
            Ok(p) => p,
            Err(status) => return status.0,
        };
        let attrs = pending.sim_attributes("WdfLookasideListCreate", Some(driver.sim.object()));
        let Some(machine) = driver.sim.machine() else {
            return Status::INVALID_DEVICE_STATE.0;
        };
        let sim = match WdfObject::create(&machine, "WDFLOOKASIDE", attrs) {
            Ok(sim) => sim,
            Err(status) => return status.0,
        };
        let created = pending.finish(
            sim,
            LookasidePayload {
                size: buffer_size,
                tag,
                memory_attributes,
            },
        );
        // SAFETY: the driver's out parameter (checked non-null).
        unsafe { lookaside.write(created.as_handle()) };
        STATUS_SUCCESS
    })
}

/// `WdfMemoryCreateFromLookaside`: a memory object with a buffer of the list's size and the
/// list's memory attributes; deleting it frees the buffer.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a null `Memory`; `STATUS_INSUFFICIENT_RESOURCES` when
/// the pool refuses.
extern "win64" fn wdf_memory_create_from_lookaside(
    globals: PWDF_DRIVER_GLOBALS,
    lookaside: WDFLOOKASIDE,
    memory: *mut WDFMEMORY,
) -> NTSTATUS {
    guard("WdfMemoryCreateFromLookaside", || {
        if memory.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        let list = objects::expect_kind(
            lookaside as Handle,
            "WDFLOOKASIDE",
            "WdfMemoryCreateFromLookaside",
        );
        let p = list
            .payload::<LookasidePayload>()
            .expect("a WDFLOOKASIDE carries a LookasidePayload");
        match pool_memory(
            globals,
            p.memory_attributes,
            p.tag,
            p.size,
            "WdfMemoryCreateFromLookaside",
        ) {
            Ok((handle, _)) => {
                // SAFETY: the driver's out parameter (checked non-null).
                unsafe { memory.write(handle as WDFMEMORY) };
                STATUS_SUCCESS
            }
            Err(status) => status.0,
        }
    })
}

/// `WdfMemoryCreatePreallocated`: an object over the driver's own buffer.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a null buffer or `Memory`, or a zero size.
extern "win64" fn wdf_memory_create_preallocated(
    globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    buffer: PVOID,
    buffer_size: usize,
    memory: *mut WDFMEMORY,
) -> NTSTATUS {
    guard("WdfMemoryCreatePreallocated", || {
        if memory.is_null() || buffer.is_null() || buffer_size == 0 {
            return Status::INVALID_PARAMETER.0;
        }
        match create(
            globals,
            attributes,
            "WdfMemoryCreatePreallocated",
            (buffer as usize, buffer_size),
            None,
        ) {
            Ok(handle) => {
                // SAFETY: the driver's out parameter, checked non-null.
                unsafe { memory.write(handle as WDFMEMORY) };
                STATUS_SUCCESS
            }
            Err(status) => status.0,
        }
    })
}

/// `WdfMemoryGetBuffer`: the buffer, and its size through the optional `BufferSize`.
extern "win64" fn wdf_memory_get_buffer(
    _globals: PWDF_DRIVER_GLOBALS,
    memory: WDFMEMORY,
    buffer_size: *mut usize,
) -> PVOID {
    guard("WdfMemoryGetBuffer", || {
        let (ptr, len) = region_of(memory as Handle, "WdfMemoryGetBuffer");
        if !buffer_size.is_null() {
            // SAFETY: the driver's optional out parameter.
            unsafe { buffer_size.write(len) };
        }
        ptr.cast()
    })
}

/// `WdfMemoryAssignBuffer`: points a preallocated memory object at another buffer.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a null buffer or zero size;
/// `STATUS_INVALID_DEVICE_REQUEST` for a memory object the framework allocated.
extern "win64" fn wdf_memory_assign_buffer(
    _globals: PWDF_DRIVER_GLOBALS,
    memory: WDFMEMORY,
    buffer: PVOID,
    buffer_size: usize,
) -> NTSTATUS {
    guard("WdfMemoryAssignBuffer", || {
        let object = objects::expect_kind(memory as Handle, "WDFMEMORY", "WdfMemoryAssignBuffer");
        if buffer.is_null() || buffer_size == 0 {
            return Status::INVALID_PARAMETER.0;
        }
        let payload = payload(&object);
        if payload.keep.is_some() {
            return Status::INVALID_DEVICE_REQUEST.0;
        }
        *lock(&payload.region) = (buffer as usize, buffer_size);
        STATUS_SUCCESS
    })
}

/// The checked range `[offset, offset + count)` of `memory`, or `STATUS_INVALID_BUFFER_SIZE`.
fn range(memory: WDFMEMORY, offset: usize, count: usize, routine: &str) -> Result<*mut u8, i32> {
    let (ptr, len) = region_of(memory as Handle, routine);
    match offset.checked_add(count) {
        Some(end) if end <= len => Ok(ptr.wrapping_add(offset)),
        _ => Err(STATUS_INVALID_BUFFER_SIZE),
    }
}

/// `WdfMemoryCopyToBuffer`: `NumBytesToCopyTo` bytes from the memory at `SourceOffset`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a null buffer; `STATUS_INVALID_BUFFER_SIZE` past the
/// end of the memory; `STATUS_BUFFER_TOO_SMALL` for a zero count.
extern "win64" fn wdf_memory_copy_to_buffer(
    _globals: PWDF_DRIVER_GLOBALS,
    source: WDFMEMORY,
    offset: usize,
    buffer: PVOID,
    count: usize,
) -> NTSTATUS {
    guard("WdfMemoryCopyToBuffer", || {
        if buffer.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        if count == 0 {
            return STATUS_BUFFER_TOO_SMALL;
        }
        match range(source, offset, count, "WdfMemoryCopyToBuffer") {
            Ok(src) => {
                // SAFETY: `src` is inside the memory (checked); `buffer` is the driver's,
                // `count` bytes long by the routine's contract. `copy` tolerates overlap.
                unsafe { core::ptr::copy(src, buffer.cast::<u8>(), count) };
                STATUS_SUCCESS
            }
            Err(status) => status,
        }
    })
}

/// `WdfMemoryCopyFromBuffer`: `NumBytesToCopyFrom` bytes into the memory at
/// `DestinationOffset`.
///
/// Errors: as `WdfMemoryCopyToBuffer`.
extern "win64" fn wdf_memory_copy_from_buffer(
    _globals: PWDF_DRIVER_GLOBALS,
    destination: WDFMEMORY,
    offset: usize,
    buffer: PVOID,
    count: usize,
) -> NTSTATUS {
    guard("WdfMemoryCopyFromBuffer", || {
        if buffer.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        if count == 0 {
            return STATUS_BUFFER_TOO_SMALL;
        }
        match range(destination, offset, count, "WdfMemoryCopyFromBuffer") {
            Ok(dst) => {
                // SAFETY: as in `WdfMemoryCopyToBuffer`, the other way.
                unsafe { core::ptr::copy(buffer.cast::<u8>(), dst, count) };
                STATUS_SUCCESS
            }
            Err(status) => status,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::device::testing::{create_device, TestDriver};
    use super::*;

    fn null<T>() -> *mut T {
        core::ptr::null_mut()
    }

    #[test]
    fn memory_objects_check_their_arguments_and_ranges() {
        let driver = TestDriver::load("hiomemory", create_device);
        let _bound = driver.machine.enter();
        let g = driver.globals;
        let (mut mem, mut buf): (WDFMEMORY, PVOID) = (null(), null());
        assert_eq!(
            wdf_memory_create(g, null(), 0, 0, 0, &raw mut mem, &raw mut buf),
            Status::INVALID_PARAMETER.0
        );
        assert_eq!(
            wdf_memory_create(g, null(), 0, 0, 16, null(), &raw mut buf),
            Status::INVALID_PARAMETER.0
        );
        assert_eq!(
            wdf_memory_create(g, null(), 0, 0, 16, &raw mut mem, &raw mut buf),
            STATUS_SUCCESS
        );
        let mut len = 0;
        assert_eq!(wdf_memory_get_buffer(g, mem, &raw mut len), buf);
        assert_eq!(len, 16);
        let mut data = [1_u8, 2, 3, 4];
        let src: PVOID = data.as_mut_ptr().cast();
        assert_eq!(
            wdf_memory_copy_from_buffer(g, mem, 12, src, 4),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_memory_copy_from_buffer(g, mem, 13, src, 4),
            STATUS_INVALID_BUFFER_SIZE
        );
        assert_eq!(
            wdf_memory_copy_from_buffer(g, mem, 0, src, 0),
            STATUS_BUFFER_TOO_SMALL
        );
        assert_eq!(
            wdf_memory_copy_to_buffer(g, mem, 0, null(), 1),
            Status::INVALID_PARAMETER.0
        );
        let mut back = [0_u8; 4];
        let dst: PVOID = back.as_mut_ptr().cast();
        assert_eq!(
            wdf_memory_copy_to_buffer(g, mem, 12, dst, 4),
            STATUS_SUCCESS
        );
        assert_eq!(back, data);
        // A pool allocation under the driver's tag (0 asked), freed with the object.
        assert_eq!(driver.machine.pool().outstanding().len(), 1);
        // The framework's memory cannot be reassigned; a preallocated one can.
        assert_eq!(
            wdf_memory_assign_buffer(g, mem, src, 4),
            Status::INVALID_DEVICE_REQUEST.0
        );
        let mut pre: WDFMEMORY = null();
        assert_eq!(
            wdf_memory_create_preallocated(g, null(), src, 4, &raw mut pre),
            STATUS_SUCCESS
        );
        assert_eq!(wdf_memory_get_buffer(g, pre, null()), src);
        assert_eq!(wdf_memory_assign_buffer(g, pre, dst, 2), STATUS_SUCCESS);
        assert_eq!(wdf_memory_get_buffer(g, pre, &raw mut len), dst);
        assert_eq!(len, 2);
        // Lookaside lists hand out buffers of their size.
        let mut list: WDFLOOKASIDE = null();
        assert_eq!(
            wdf_lookaside_list_create(g, null(), 0, 0, null(), 0, &raw mut list),
            Status::INVALID_PARAMETER.0
        );
        assert_eq!(
            wdf_lookaside_list_create(g, null(), 24, 0, null(), 0, &raw mut list),
            STATUS_SUCCESS
        );
        let mut from: WDFMEMORY = null();
        assert_eq!(
            wdf_memory_create_from_lookaside(g, list, &raw mut from),
            STATUS_SUCCESS
        );
        assert!(!wdf_memory_get_buffer(g, from, &raw mut len).is_null());
        assert_eq!(len, 24);
        assert_eq!(driver.machine.pool().outstanding().len(), 2);
        let delete: super::super::bindings::PFN_WDFOBJECTDELETE =
            super::super::device::testing::wdf("WdfObjectDelete");
        // SAFETY: live handles the test created.
        unsafe {
            delete.unwrap()(g, mem.cast());
            delete.unwrap()(g, pre.cast());
            delete.unwrap()(g, list.cast());
        }
        // The lookaside memory was a child of the driver, not of the list: still there.
        assert_eq!(driver.machine.pool().outstanding().len(), 1);
        // SAFETY: as above.
        unsafe { delete.unwrap()(g, from.cast()) };
        assert!(driver.machine.pool().outstanding().is_empty());
    }
}
