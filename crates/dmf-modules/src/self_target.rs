//! # SelfTarget
//!
//! ## Summary
//!
//! The RequestTarget API against the *top of the Module's own device stack* (C DMF:
//! `Dmf_SelfTarget.c`): a driver sends requests to itself — through its own default queue and
//! Modules — as any other client of the stack would. On Open the Module creates a remote I/O target
//! opened on the existing device at the top of its stack (no `IRP_MJ_CREATE`, no file object) and
//! hands it to its RequestTarget child; on Close it takes the target away from the child
//! (cancelling and waiting for what is in flight), closes it and deletes it.
//!
//! ## Configuration
//!
//! None (`config = ()`), as in C DMF (`DECLARE_DMF_MODULE_NO_CONFIG(SelfTarget)`).
//! `passive_level(true)` on the spec is passed on to the child (asynchronous completions at
//! `PASSIVE_LEVEL`).
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`send_synchronously`](RequestSender::send_synchronously) | `DMF_SelfTarget_SendSynchronously` | PASSIVE |
//! | [`send`](RequestSender::send) | `DMF_SelfTarget_Send` / `…SendEx` | ≤ DISPATCH |
//! | [`cancel`](RequestSender::cancel) | the child's `DMF_RequestTarget_Cancel` | ≤ DISPATCH |
//! | [`SelfTarget::get_target`] | `DMF_SelfTarget_Get` | ≤ DISPATCH |
//!
//! Every Method runs under the Module's rundown (`DMF_ModuleReference`): once the Module is
//! closed, each fails with `STATUS_INVALID_DEVICE_STATE` (`cancel` returns `false`). The sends are
//! the [`RequestSender`] Methods every target Module shares; they take a
//! [`SendRequest`](crate::request_target::SendRequest).
//!
//! ## Callbacks
//!
//! The completion callback of [`send`](RequestSender::send), as RequestTarget's
//! ([`SendCompletion`](crate::request_target::SendCompletion)):
//! exactly once per successful `send`, cancelled and timed-out requests included.
//!
//! ## Remarks
//!
//! - Open option `OPEN_PrepareHardware` (as the stored upstream `Dmf_SelfTarget.c`): the Module
//!   opens in PrepareHardware, when the whole stack is built, and closes in ReleaseHardware.
//! - It needs its device, and so does its RequestTarget child (the parent of its work item): a
//!   collection without a device is not created (`STATUS_INVALID_DEVICE_STATE`, the child's open
//!   on Create), and would fail this Module's PrepareHardware with the same status.
//! - The target: [`PlatformDevice::create_stack_top_target`] — `WdfIoTargetCreate` +
//!   `WdfIoTargetOpen(WDF_IO_TARGET_OPEN_PARAMS_INIT_EXISTING_DEVICE(IoGetAttachedDeviceReference(
//!   WdfDeviceWdmGetDeviceObject(device))))`. The top of the stack is taken when the target
//!   opens, in PrepareHardware: requests enter at the highest upper filter and travel down to the
//!   device's own default queue (and the Modules that take I/O first), as an application's do.
//!   (Opened in the device add instead, before filters attach, the top would be the device
//!   itself.)
//! - Close order: the child's target is cleared (in-flight requests cancelled and waited for)
//!   before `WdfIoTargetClose` + `WdfObjectDelete`, as C DMF's `DMF_SelfTarget_Close`.
//! - DISPATCH_MAXIMUM lock; the child is a RequestTarget (C DMF's older versions used a
//!   ContinuousRequestTarget child only for its single-request Methods).
//!
//! ## Category
//!
//! Targets.
//!
//! # Example
//!
//! ```
//! use dmf_core::module::{CollectionConfig, ModuleCollection, ModuleInit};
//! use dmf_core::NtStatus;
//! use dmf_modules::self_target::SelfTarget;
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! let mut init = ModuleInit::new();
//! init.add(SelfTarget::with(()));
//! // It needs the device whose stack it targets (its RequestTarget child needs it too, for its
//! // work item): without one the collection is not created.
//! assert_eq!(
//!     ModuleCollection::create(init, CollectionConfig::default()).err(),
//!     Some(NtStatus::INVALID_DEVICE_STATE)
//! );
//! ```
//!
//! [`PlatformDevice::create_stack_top_target`]: dmf_core::platform::contract::device::PlatformDevice::create_stack_top_target

use alloc::sync::Arc;

use dmf_core::module::{Added, Dispatched, ModuleCallbacks, ModuleInit, Scope};
use dmf_core::platform::contract::device::PlatformDevice;
use dmf_core::platform::contract::io::PlatformIoTarget;
use dmf_core::platform::IoTarget;
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

use crate::request_target::sealed::Route;
use crate::request_target::{RequestSender, RequestTarget, Sender};

/// Requests to the top of the Module's own device stack. See the
/// [module documentation](self).
#[dmf_module(crate = dmf_core, config = (), context = Context, open = PrepareHardware, lock = DispatchMaximum)]
pub struct SelfTarget;

#[derive(Default)]
struct Context {
    child: Option<Added<RequestTarget>>,
    target: Option<IoTarget>,
}

fn child(module: &Scope<'_, SelfTarget>) -> NtResult<RequestTarget> {
    let token = module.lock().child.ok_or(NtStatus::INVALID_DEVICE_STATE)?;
    module.child(token)
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for SelfTarget {
    fn child_modules_add(module: &Dispatched<'_, Self>, init: &mut ModuleInit) {
        let passive = module.is_passive_level();
        module.lock().child = Some(init.add(RequestTarget::with(()).passive_level(passive)));
    }

    /// `DMF_SelfTarget_Open`: creates and opens the stack-top target and hands it to the child.
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let device = module.device().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let child = child(module)?;
        let target = device.create_stack_top_target()?;
        if let Err(status) = child.io_target_set(target.clone()) {
            target.close();
            let _ = target.delete();
            return Err(status);
        }
        module.lock().target = Some(target);
        Ok(())
    }

    /// `DMF_SelfTarget_Close`: clears the child's target (cancelling and waiting for its
    /// requests), then closes and deletes the target.
    fn close(module: &Dispatched<'_, Self>) {
        if let Ok(child) = child(module) {
            let _ = child.clear_and_wait();
        }
        let target = module.lock().target.take();
        if let Some(target) = target {
            target.close();
            let _ = target.delete();
        }
    }
}

impl SelfTarget {
    /// `DMF_SelfTarget_Get`: the target on the top of the Module's own stack.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn get_target(&self) -> NtResult<IoTarget> {
        let module = self.enter()?;
        let target = module.lock().target.clone();
        target.ok_or(NtStatus::INVALID_DEVICE_STATE)
    }
}

/// `DMF_SelfTarget_SendSynchronously`, `DMF_SelfTarget_Send` / `DMF_SelfTarget_SendEx` and the
/// child's `DMF_RequestTarget_Cancel`: the RequestTarget child's, to the top of the Module's own
/// stack, inside this Module's rundown.
impl RequestSender for SelfTarget {}

impl Route for SelfTarget {
    fn route<R>(&self, f: impl FnOnce(&Arc<Sender>) -> NtResult<R>) -> NtResult<R> {
        let module = self.enter()?;
        child(&module)?.route(f)
    }
}
