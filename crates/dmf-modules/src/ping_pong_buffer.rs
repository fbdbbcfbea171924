//! # DMF_PingPongBuffer
//!
//! ## Summary
//!
//! Two buffers for packet reassembly: incoming data accumulates in the *Ping* buffer; once the
//! client has found a complete, valid packet in it, Consume swaps the buffers so the packet can be
//! processed from the *Pong* buffer while new data accumulates again in Ping. Data after the packet
//! is carried over to the new Ping buffer.
//!
//! ## Configuration
//!
//! [`PingPongBufferConfig`]`{ buffer_size }` (`DMF_CONFIG_PingPongBuffer`): the size in bytes of
//! each buffer (not zero). C DMF's `PoolType` is not configurable: the buffers are non-paged pool
//! (tag `DmfP`), allocated in Open and freed in Close.
//!
//! ## Methods
//!
//! | C DMF | Rust |
//! |---|---|
//! | `DMF_PingPongBuffer_Write` | [`PingPongBuffer::write`] |
//! | `DMF_PingPongBuffer_Get` | [`PingPongBuffer::get`] |
//! | `DMF_PingPongBuffer_Shift` | [`PingPongBuffer::shift`] |
//! | `DMF_PingPongBuffer_Consume` | [`PingPongBuffer::consume`] |
//! | `DMF_PingPongBuffer_Reset` | [`PingPongBuffer::reset`] |
//!
//! All at `≤ DISPATCH_LEVEL`.
//!
//! ## Callbacks
//!
//! None. Where C DMF returns a pointer into a buffer (Get, Consume), the Rust Method lends the
//! bytes to a closure instead, under the Module's spin lock (so the closure must not call this
//! Module's Methods); the bytes cannot be used after the buffers swap again.
//!
//! ## Remarks
//!
//! - Write fails with `STATUS_INSUFFICIENT_RESOURCES` when the data does not fit the room left in
//!   Ping (nothing is written).
//! - Shift and Consume offsets beyond the data in Ping are `STATUS_INVALID_PARAMETER`.
//! - The processing of Pong must be shorter than the collection of the next packet in Ping (C DMF).
//!
//! ## Example
//!
//! ```
//! use dmf_core::module::NoParent;
//! use dmf_core::NtStatus;
//! use dmf_modules::ping_pong_buffer::{PingPongBuffer, PingPongBufferConfig};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _on = machine.enter();
//! let buffer = PingPongBuffer::with(PingPongBufferConfig { buffer_size: 16 }).create(&NoParent)?;
//! assert_eq!(buffer.write(b"xx<pkt>")?, 7);
//! assert_eq!(buffer.write(b"<ne")?, 10);
//! let packet = buffer.consume(2, 5, |packet| packet.to_vec())?; // swap; "<ne" carries over
//! assert_eq!(packet, b"<pkt>");
//! assert_eq!(buffer.get(|ping| ping.to_vec())?, b"<ne");
//! # Ok::<(), NtStatus>(())
//! ```
//!
//! ## Category
//!
//! Buffers.

use dmf_core::module::{Dispatched, ModuleCallbacks};
use dmf_core::platform::contract::{PlatformPool, PoolTag};
use dmf_core::platform::{Pool, PoolBuffer};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

/// The pool tag of the two buffers.
pub const PING_PONG_BUFFER_POOL_TAG: PoolTag = PoolTag(*b"DmfP");

/// `DMF_CONFIG_PingPongBuffer`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PingPongBufferConfig {
    /// Size in bytes of each buffer.
    pub buffer_size: u32,
}

/// The `DMF_PingPongBuffer` Module. See the [module documentation](self).
#[dmf_module(crate = ::dmf_core, config = PingPongBufferConfig, context = Context, open = Create, lock = Dispatch)]
pub struct PingPongBuffer;

#[derive(Default)]
struct Context {
    /// `[ping, pong]`: index `ping` of the pair is the Ping buffer.
    buffers: Option<[PoolBuffer; 2]>,
    ping: usize,
    /// Bytes of valid data in Ping.
    length: usize,
}

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for PingPongBuffer {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let size = usize::try_from(module.config().buffer_size)
            .map_err(|_| NtStatus::INVALID_PARAMETER)?;
        if size == 0 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        // If the second allocation fails the first is dropped (freed) on return.
        let first = Pool::allocate(PING_PONG_BUFFER_POOL_TAG, size)?;
        let second = Pool::allocate(PING_PONG_BUFFER_POOL_TAG, size)?;
        *module.lock() = Context {
            buffers: Some([first, second]),
            ping: 0,
            length: 0,
        };
        Ok(())
    }

    fn close(module: &Dispatched<'_, Self>) {
        *module.lock() = Context::default(); // frees both buffers
    }
}

impl PingPongBuffer {
    /// `DMF_PingPongBuffer_Write`: appends `data` to Ping; returns Ping's data length after the
    /// write (`ResultSize`).
    pub fn write(&self, data: &[u8]) -> NtResult<usize> {
        let module = self.enter()?;
        let mut context = module.lock();
        let (ping, length) = (context.ping, context.length);
        let buffers = context
            .buffers
            .as_mut()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let target = buffers[ping].as_mut();
        if data.len() > target.len() - length {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        target[length..length + data.len()].copy_from_slice(data);
        context.length += data.len();
        Ok(context.length)
    }

    /// `DMF_PingPongBuffer_Get`: lends Ping's data (its valid bytes; the length is the slice's)
    /// to `f` and returns what `f` returns.
    pub fn get<R>(&self, f: impl FnOnce(&[u8]) -> R) -> NtResult<R> {
        let module = self.enter()?;
        let context = module.lock();
        let buffers = context
            .buffers
            .as_ref()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        Ok(f(&buffers[context.ping].as_ref()[..context.length]))
    }

    /// `DMF_PingPongBuffer_Shift`: drops Ping's first `start_offset` bytes, moving the rest to
    /// the start.
    pub fn shift(&self, start_offset: usize) -> NtResult<()> {
        let module = self.enter()?;
        let mut context = module.lock();
        let (ping, length) = (context.ping, context.length);
        if start_offset > length {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let buffers = context
            .buffers
            .as_mut()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        buffers[ping].as_mut().copy_within(start_offset..length, 0);
        context.length = length - start_offset;
        Ok(())
    }

    /// `DMF_PingPongBuffer_Consume`: the validated packet is `packet_length` bytes at
    /// `start_offset` in Ping. The data after it is copied to the start of Pong, the buffers swap
    /// (so that data is the new Ping), and `f` gets the packet in the new Pong.
    pub fn consume<R>(
        &self,
        start_offset: usize,
        packet_length: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> NtResult<R> {
        let module = self.enter()?;
        let mut context = module.lock();
        let (ping, length) = (context.ping, context.length);
        let end = start_offset
            .checked_add(packet_length)
            .filter(|end| *end <= length)
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        let buffers = context
            .buffers
            .as_mut()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let (first, second) = buffers.split_at_mut(1);
        let (filled, spare) = if ping == 0 {
            (&mut first[0], &mut second[0])
        } else {
            (&mut second[0], &mut first[0])
        };
        let rest = length - end;
        // `filled` (Ping) becomes Pong; `spare` (Pong) becomes Ping with the rest.
        spare.as_mut()[..rest].copy_from_slice(&filled.as_ref()[end..length]);
        let result = f(&filled.as_ref()[start_offset..end]);
        context.ping = 1 - ping;
        context.length = rest;
        Ok(result)
    }

    /// `DMF_PingPongBuffer_Reset`: discards Ping's data.
    pub fn reset(&self) -> NtResult<()> {
        let module = self.enter()?;
        module.lock().length = 0;
        Ok(())
    }
}
