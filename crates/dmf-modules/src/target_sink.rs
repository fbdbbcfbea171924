//! The child that does the I/O of DefaultTarget and DeviceInterfaceTarget — a
//! ContinuousRequestTarget when a stream is configured, else a RequestTarget — and the forwarding
//! of their shared Methods to it.

use alloc::vec::Vec;
use core::time::Duration;

use dmf_core::module::{Added, Module, Scope};
use dmf_core::platform::IoTarget;
use dmf_core::{NtResult, NtStatus};

use crate::continuous_request_target::ContinuousRequestTarget;
use crate::request_target::{RequestId, RequestKind, RequestTarget, SendCompletion};

/// The child that does the I/O.
#[derive(Clone)]
pub(crate) enum Sink {
    Stream(ContinuousRequestTarget),
    Single(RequestTarget),
}

impl Sink {
    /// The child `module` added: the stream child if any, else the single one;
    /// `STATUS_INVALID_DEVICE_STATE` without either.
    pub(crate) fn of<M: Module>(
        module: &Scope<'_, M>,
        stream: Option<Added<ContinuousRequestTarget>>,
        single: Option<Added<RequestTarget>>,
    ) -> NtResult<Sink> {
        match (stream, single) {
            (Some(token), _) => Ok(Sink::Stream(module.child(token)?)),
            (None, Some(token)) => Ok(Sink::Single(module.child(token)?)),
            (None, None) => Err(NtStatus::INVALID_DEVICE_STATE),
        }
    }

    pub(crate) fn set_target(&self, target: IoTarget) -> NtResult<()> {
        match self {
            Sink::Stream(s) => s.io_target_set(target),
            Sink::Single(s) => s.io_target_set(target),
        }
    }

    /// Stops streaming, cancels every request, waits for them, forgets the target.
    pub(crate) fn clear_and_wait(&self) {
        let _ = match self {
            Sink::Stream(s) => s.io_target_clear(),
            Sink::Single(s) => s.clear_and_wait(),
        };
    }

    /// The stream child; `STATUS_INVALID_DEVICE_REQUEST` without a stream config.
    pub(crate) fn stream(&self) -> NtResult<&ContinuousRequestTarget> {
        match self {
            Sink::Stream(s) => Ok(s),
            Sink::Single(_) => Err(NtStatus::INVALID_DEVICE_REQUEST),
        }
    }

    /// Whether stream requests are active (never without a stream config).
    pub(crate) fn is_streaming(&self) -> bool {
        matches!(self, Sink::Stream(s) if s.is_streaming())
    }

    pub(crate) fn send_synchronously(
        &self,
        kind: RequestKind,
        input: &[u8],
        output_length: usize,
        ioctl: u32,
        timeout: Option<Duration>,
    ) -> NtResult<(Vec<u8>, usize)> {
        match self {
            Sink::Stream(s) => s.send_synchronously(kind, input, output_length, ioctl, timeout),
            Sink::Single(s) => s.send_synchronously(kind, input, output_length, ioctl, timeout),
        }
    }

    pub(crate) fn send(
        &self,
        kind: RequestKind,
        input: &[u8],
        output_length: usize,
        ioctl: u32,
        timeout: Option<Duration>,
        callback: impl FnOnce(SendCompletion) + Send + 'static,
    ) -> NtResult<RequestId> {
        match self {
            Sink::Stream(s) => s.send(kind, input, output_length, ioctl, timeout, callback),
            Sink::Single(s) => s.send(kind, input, output_length, ioctl, timeout, callback),
        }
    }

    pub(crate) fn cancel(&self, id: RequestId) -> bool {
        match self {
            Sink::Stream(s) => s.cancel(id),
            Sink::Single(s) => s.cancel(id),
        }
    }
}
