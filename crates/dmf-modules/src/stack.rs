//! # Stack
//!
//! ## Summary
//!
//! A LIFO of fixed-size elements (C DMF: `Dmf_Stack.c`), built on a [`BufferQueue`] child: a push
//! fetches an empty buffer, copies the element in and enqueues it at the head; a pop dequeues the
//! head, copies the element out and gives the buffer back for reuse. Elements are copied, so the
//! client never holds the stack's buffers.
//!
//! ## Configuration
//!
//! [`StackConfig`] (`DMF_CONFIG_Stack`): `element_size` (`StackElementSize`, bytes per element,
//! ≥ 1), `depth` (`StackDepth`, elements preallocated) and `unbounded`: when `false` the stack
//! holds at most `depth` elements; when `true` it grows past `depth` (the extra elements are
//! allocated on push and freed on pop — the BufferQueue's lookaside).
//!
//! ## Methods
//!
//! | Method | C DMF | Does |
//! |---|---|---|
//! | [`Stack::push`] | `DMF_Stack_Push` | copies one element onto the top |
//! | [`Stack::pop`] | `DMF_Stack_Pop` | copies the top element out and removes it |
//! | [`Stack::depth`] | `DMF_Stack_Depth` | how many elements the stack holds |
//! | [`Stack::flush`] | `DMF_Stack_Flush` | removes every element |
//!
//! All at ≤ DISPATCH_LEVEL (PASSIVE_LEVEL for a `passive_level(true)` stack). Errors:
//! `STATUS_INVALID_PARAMETER` for an element of the wrong size, `STATUS_BUFFER_TOO_SMALL` for a
//! pop into too small a buffer, `STATUS_UNSUCCESSFUL` for a push onto a full bounded stack or a
//! pop from an empty one (the BufferQueue's statuses, as in C DMF), `STATUS_INVALID_DEVICE_STATE`
//! once the stack has begun to close.
//!
//! ## Callbacks
//!
//! None.
//!
//! ## Remarks
//!
//! - A push and a pop are each two BufferQueue operations; concurrent pushes and pops are safe
//!   (every element pushed is popped exactly once or flushed), but "the top" is only defined
//!   between concurrent operations, as with C DMF.
//! - Open option `OPEN_Create`, `DISPATCH_MAXIMUM` lock, no WDF callback: dynamic-capable.
//!
//! ## Category
//!
//! Buffers (C DMF's `Dmf_Stack.md`). Like C DMF's `Dmf_Stack.c`, it is a LIFO on a child
//! BufferQueue.
//!
//! # Example
//!
//! ```
//! use dmf_core::module::NoParent;
//! use dmf_modules::stack::{Stack, StackConfig};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! let stack = Stack::with(StackConfig { element_size: 4, depth: 2, unbounded: false })
//!     .create(&NoParent)?;
//! stack.push(&1_u32.to_le_bytes())?;
//! stack.push(&2_u32.to_le_bytes())?;
//! assert_eq!(stack.push(&3_u32.to_le_bytes()), Err(dmf_core::NtStatus::UNSUCCESSFUL)); // full
//!
//! let mut top = [0_u8; 4];
//! stack.pop(&mut top)?;
//! assert_eq!(u32::from_le_bytes(top), 2); // last in, first out
//! assert_eq!(stack.depth()?, 1);
//! stack.delete();
//! assert!(machine.pool().outstanding().is_empty());
//! # Ok::<(), dmf_core::NtStatus>(())
//! ```

use dmf_core::module::{Added, Dispatched, ModuleCallbacks, ModuleInit, Scope};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

use crate::buffer_pool::BufferPoolSourceSettings;
use crate::buffer_queue::{BufferQueue, BufferQueueConfig};

/// `DMF_CONFIG_Stack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackConfig {
    /// `StackElementSize`: bytes per element (≥ 1).
    pub element_size: u32,
    /// `StackDepth`: elements preallocated (and the limit of a bounded stack).
    pub depth: u32,
    /// `true`: the stack grows past `depth`; `false`: a push onto a full stack fails.
    pub unbounded: bool,
}

#[derive(Default)]
struct Context {
    queue: Option<Added<BufferQueue>>,
}

/// A LIFO of fixed-size elements on a [`BufferQueue`]. See the [module documentation](self).
#[dmf_module(crate = dmf_core, config = StackConfig, context = Context, open = Create, lock = DispatchMaximum)]
pub struct Stack;

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for Stack {
    fn child_modules_add(module: &Dispatched<'_, Self>, init: &mut ModuleInit) {
        let config = *module.config();
        let mut source = BufferPoolSourceSettings::new(config.depth, config.element_size);
        source.enable_look_aside = config.unbounded;
        let queue = init.add(
            BufferQueue::with(BufferQueueConfig::new(source))
                .passive_level(module.is_passive_level()),
        );
        module.lock().queue = Some(queue);
    }
}

fn queue(module: &Scope<'_, Stack>) -> NtResult<BufferQueue> {
    let token = module.lock().queue;
    module.child(token.ok_or(NtStatus::INVALID_DEVICE_STATE)?)
}

impl Stack {
    /// `DMF_Stack_Push`: copies `element` (exactly `element_size` bytes) onto the top.
    pub fn push(&self, element: &[u8]) -> NtResult<()> {
        let module = self.enter()?;
        if element.len() != module.config().element_size as usize {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let queue = queue(&module)?;
        let mut buffer = queue.fetch()?;
        buffer.data_mut().copy_from_slice(element);
        queue.enqueue_at_head(buffer)?;
        Ok(())
    }

    /// `DMF_Stack_Pop`: copies the top element into `element` (at least `element_size` bytes)
    /// and removes it.
    pub fn pop(&self, element: &mut [u8]) -> NtResult<()> {
        let module = self.enter()?;
        let size = module.config().element_size as usize;
        if element.len() < size {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        let queue = queue(&module)?;
        let buffer = queue.dequeue()?;
        element[..size].copy_from_slice(buffer.data());
        // A buffer the producer pool refuses (closing) is freed when the error drops.
        let _ = queue.reuse(buffer);
        Ok(())
    }

    /// `DMF_Stack_Depth`: how many elements the stack holds.
    pub fn depth(&self) -> NtResult<usize> {
        let module = self.enter()?;
        queue(&module)?.count()
    }

    /// `DMF_Stack_Flush`: removes every element.
    pub fn flush(&self) -> NtResult<()> {
        let module = self.enter()?;
        queue(&module)?.flush().map(|_| ())
    }
}
