//! The child that does the I/O of DefaultTarget and DeviceInterfaceTarget — a
//! ContinuousRequestTarget when a stream is configured, else a RequestTarget — and the route of
//! their [`RequestSender`](crate::request_target::RequestSender) Methods to it.

use alloc::sync::Arc;

use dmf_core::module::{Added, Module, Scope};
use dmf_core::platform::IoTarget;
use dmf_core::{NtResult, NtStatus};

use crate::continuous_request_target::ContinuousRequestTarget;
use crate::request_target::sealed::Route;
use crate::request_target::{RequestTarget, Sender};

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
}

impl Route for Sink {
    fn route<R>(&self, f: impl FnOnce(&Arc<Sender>) -> NtResult<R>) -> NtResult<R> {
        match self {
            Sink::Stream(s) => s.route(f),
            Sink::Single(s) => s.route(f),
        }
    }
}
