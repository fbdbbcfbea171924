//! The callbacks a Module may implement, and how the framework calls them without knowing the type.
//!
//! [`ModuleCallbacks`] is implemented by the Module author for the *handle type* under
//! `#[dmf_callbacks]`. Every method has a default — DMF's "generic" callback (DSP-08): success for
//! `NTSTATUS` callbacks, nothing for `VOID` ones, [`Handled::NotHandled`] for the BOOLEAN request
//! callbacks (DSP-10). Each receives `&Dispatched<'_, Self>`: the framework holds the Module in the
//! state the callback needs, so no rundown guard is taken (DSP-09: only DMF calls callbacks).
//!
//! `#[dmf_callbacks]` reads the method names of the impl block and emits the required
//! [`ModuleCallbacks::IMPLEMENTED`] const. The const has no default on purpose: an impl written
//! without the attribute fails to compile instead of silently never being dispatched.
//!
//! The WDF objects are the platform's types: resource lists are [`Resources`], files
//! [`FileObject`], power states [`PowerDeviceState`]. A request is offered to the Modules in an
//! [`IoRequest`]: the Module that takes it out (to complete, forward or keep it) handles it.

use core::any::TypeId;
use core::marker::PhantomData;

use super::descriptor::CallbackSet;
use super::object::ModuleObject;
use super::scope::{Dispatched, Module};
use super::spec::ModuleInit;
use crate::platform::contract::device::{PowerDeviceState, RelationType, SpecialFileType};
use crate::status::{NtResult, NtStatus};

use crate::platform::contract::io::{PlatformRequest, RequestParameters};
use crate::platform::{FileObject, Queue, Request, Resources};

/// The result of a BOOLEAN request callback (DSP-10): the first Module that handles a request
/// stops the dispatch, and it owns the request's completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub enum Handled {
    /// `TRUE`: this Module handled (completed or forwarded) the request.
    Handled,
    /// `FALSE`: try the next Module.
    NotHandled,
}

/// The callbacks of a Module (MOD-34, MOD-35, DSP-20…DSP-48), implemented for its handle type.
#[allow(unused_variables)]
pub trait ModuleCallbacks: Sized + 'static {
    /// The callbacks this impl overrides; emitted by `#[dmf_callbacks]`.
    const IMPLEMENTED: CallbackSet;

    /// `ChildModulesAdd` (MOD-50): add children with the same API a client uses.
    fn child_modules_add(module: &Dispatched<'_, Self>, init: &mut ModuleInit) {}
    /// `DeviceResourcesAssign` (MOD-51): runs in PrepareHardware before the Module opens.
    fn resources_assign(module: &Dispatched<'_, Self>, resources: &Resources) -> NtResult<()> {
        Ok(())
    }
    /// `DeviceNotificationRegister` (MOD-54): start asynchronous arrival notification.
    fn notification_register(module: &Dispatched<'_, Self>) -> NtResult<()> {
        Ok(())
    }
    /// `DeviceNotificationUnregister` (MOD-55): stop notifications (the framework closes the
    /// Module afterwards if it is still open).
    fn notification_unregister(module: &Dispatched<'_, Self>) {}
    /// `DeviceOpen` (MOD-52).
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        Ok(())
    }
    /// `DeviceClose` (MOD-53).
    fn close(module: &Dispatched<'_, Self>) {}
    /// `ModuleInstanceDestroy` (MOD-56).
    fn destroy(module: &Dispatched<'_, Self>) {}
    /// `DMF_<Name>_TransportMethod` (MOD-72): returns the bytes written to `output`.
    fn transport_method(
        module: &Dispatched<'_, Self>,
        message: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> NtResult<usize> {
        Err(NtStatus::NOT_SUPPORTED)
    }

    /// DSP-20 `ModulePrepareHardware`.
    fn prepare_hardware(module: &Dispatched<'_, Self>, resources: &Resources) -> NtResult<()> {
        Ok(())
    }
    /// DSP-21 `ModuleReleaseHardware`.
    fn release_hardware(module: &Dispatched<'_, Self>, resources: &Resources) -> NtResult<()> {
        Ok(())
    }
    /// DSP-22 `ModuleD0Entry`.
    fn d0_entry(module: &Dispatched<'_, Self>, previous: PowerDeviceState) -> NtResult<()> {
        Ok(())
    }
    /// DSP-23 `ModuleD0EntryPostInterruptsEnabled`.
    fn d0_entry_post_interrupts_enabled(
        module: &Dispatched<'_, Self>,
        previous: PowerDeviceState,
    ) -> NtResult<()> {
        Ok(())
    }
    /// DSP-25 `ModuleD0ExitPreInterruptsDisabled`.
    fn d0_exit_pre_interrupts_disabled(
        module: &Dispatched<'_, Self>,
        target: PowerDeviceState,
    ) -> NtResult<()> {
        Ok(())
    }
    /// DSP-24 `ModuleD0Exit`.
    fn d0_exit(module: &Dispatched<'_, Self>, target: PowerDeviceState) -> NtResult<()> {
        Ok(())
    }
    /// DSP-30 `ModuleSelfManagedIoInit`.
    fn self_managed_io_init(module: &Dispatched<'_, Self>) -> NtResult<()> {
        Ok(())
    }
    /// DSP-32 `ModuleSelfManagedIoRestart`.
    fn self_managed_io_restart(module: &Dispatched<'_, Self>) -> NtResult<()> {
        Ok(())
    }
    /// DSP-31 `ModuleSelfManagedIoSuspend`.
    fn self_managed_io_suspend(module: &Dispatched<'_, Self>) -> NtResult<()> {
        Ok(())
    }
    /// DSP-29 `ModuleSelfManagedIoFlush`.
    fn self_managed_io_flush(module: &Dispatched<'_, Self>) {}
    /// DSP-28 `ModuleSelfManagedIoCleanup`.
    fn self_managed_io_cleanup(module: &Dispatched<'_, Self>) {}
    /// DSP-33 `ModuleSurpriseRemoval`.
    fn surprise_removal(module: &Dispatched<'_, Self>) {}
    /// DSP-34 `ModuleQueryRemove`.
    fn query_remove(module: &Dispatched<'_, Self>) -> NtResult<()> {
        Ok(())
    }
    /// DSP-35 `ModuleQueryStop`.
    fn query_stop(module: &Dispatched<'_, Self>) -> NtResult<()> {
        Ok(())
    }
    /// DSP-36 `ModuleRelationsQuery`.
    fn relations_query(module: &Dispatched<'_, Self>, relation: RelationType) {}
    /// DSP-37 `ModuleUsageNotificationEx`.
    fn usage_notification_ex(
        module: &Dispatched<'_, Self>,
        file_type: SpecialFileType,
        in_path: bool,
    ) -> NtResult<()> {
        Ok(())
    }
    /// DSP-38 `ModuleArmWakeFromS0`.
    fn arm_wake_from_s0(module: &Dispatched<'_, Self>) -> NtResult<()> {
        Ok(())
    }
    /// DSP-39 `ModuleDisarmWakeFromS0` (VOID, E-08).
    fn disarm_wake_from_s0(module: &Dispatched<'_, Self>) {}
    /// DSP-40 `ModuleWakeFromS0Triggered`.
    fn wake_from_s0_triggered(module: &Dispatched<'_, Self>) {}
    /// DSP-41 `ModuleArmWakeFromSxWithReason`.
    fn arm_wake_from_sx_with_reason(
        module: &Dispatched<'_, Self>,
        device_wake_enabled: bool,
        children_armed_for_wake: bool,
    ) -> NtResult<()> {
        Ok(())
    }
    /// DSP-42 `ModuleDisarmWakeFromSx`.
    fn disarm_wake_from_sx(module: &Dispatched<'_, Self>) {}
    /// DSP-43 `ModuleWakeFromSxTriggered`.
    fn wake_from_sx_triggered(module: &Dispatched<'_, Self>) {}
    /// DSP-47 `ModuleQueueIoRead`.
    fn queue_io_read(
        module: &Dispatched<'_, Self>,
        io: &mut IoRequest<'_>,
        length: usize,
    ) -> Handled {
        Handled::NotHandled
    }
    /// DSP-48 `ModuleQueueIoWrite`.
    fn queue_io_write(
        module: &Dispatched<'_, Self>,
        io: &mut IoRequest<'_>,
        length: usize,
    ) -> Handled {
        Handled::NotHandled
    }
    /// DSP-26 `ModuleDeviceIoControl`.
    fn device_io_control(module: &Dispatched<'_, Self>, io: &mut IoRequest<'_>) -> Handled {
        Handled::NotHandled
    }
    /// DSP-27 `ModuleInternalDeviceIoControl`.
    fn internal_device_io_control(
        module: &Dispatched<'_, Self>,
        io: &mut IoRequest<'_>,
    ) -> Handled {
        Handled::NotHandled
    }
    /// DSP-44 `ModuleFileCreate`.
    fn file_create(
        module: &Dispatched<'_, Self>,
        io: &mut IoRequest<'_>,
        file: &FileObject,
    ) -> Handled {
        Handled::NotHandled
    }
    /// DSP-45 `ModuleFileCleanup`.
    fn file_cleanup(module: &Dispatched<'_, Self>, file: &FileObject) -> Handled {
        Handled::NotHandled
    }
    /// DSP-46 `ModuleFileClose`.
    fn file_close(module: &Dispatched<'_, Self>, file: &FileObject) -> Handled {
        Handled::NotHandled
    }
    /// Not in C DMF: `file` is deleted (its `EvtCleanupCallback`) — right after its close, or,
    /// for a create that failed (refused by a Module after this one, by the client, or by a lower
    /// driver), when that create completed: no cleanup or close ever comes for it. So it ends
    /// exactly once whatever a Module did in `file_create`: release per-file state here (e.g. an
    /// exclusive hold). A notice to every Module that implements it (parent first, siblings
    /// backward, the client's first), also for files it never saw; it may run inside the call
    /// that completes the create, so do not complete a create while holding a lock this takes.
    fn file_object_deleted(module: &Dispatched<'_, Self>, file: &FileObject) {}
}

/// A request offered to the Modules by an `EvtIo*` or `EvtDeviceFileCreate` dispatch (DSP-10,
/// DSP-26, DSP-27, DSP-44, DSP-47, DSP-48).
///
/// The request stays in here while Modules look at it ([`parameters`](Self::parameters),
/// [`request`](Self::request) for its buffers). A Module *handles* it by taking it out —
/// [`take`](Self::take) to keep, forward or send it, [`complete`](Self::complete) /
/// [`complete_with_information`](Self::complete_with_information) to finish it now — and the
/// dispatch stops there (first taker wins). Returning [`Handled::Handled`] without taking it is a
/// shorthand: the framework completes it with `STATUS_SUCCESS`. Returning
/// [`Handled::NotHandled`] with the request still in place offers it to the next Module, then the
/// client, then the unhandled-request rule (pass down in a filter, `STATUS_NOT_SUPPORTED`
/// otherwise; creates succeed in a function driver).
pub struct IoRequest<'a> {
    queue: Option<&'a Queue>,
    parameters: RequestParameters,
    request: Option<Request>,
}

impl<'a> IoRequest<'a> {
    /// Offers `request`, presented by `queue` (`None` for a create).
    pub fn new(queue: Option<&'a Queue>, request: Request) -> Self {
        IoRequest {
            queue,
            parameters: request.parameters(),
            request: Some(request),
        }
    }

    /// The queue that presented the request (`None` for `EvtDeviceFileCreate`).
    pub fn queue(&self) -> Option<&'a Queue> {
        self.queue
    }

    /// `WdfRequestGetParameters`: type, control code, buffer lengths, offset.
    pub fn parameters(&self) -> RequestParameters {
        self.parameters
    }

    /// `IoControlCode` (0 unless an IOCTL).
    pub fn ioctl_code(&self) -> u32 {
        self.parameters.ioctl_code
    }

    /// The request, while nobody has taken it (to read its buffers or requestor).
    pub fn request(&self) -> Option<&Request> {
        self.request.as_ref()
    }

    /// Whether a Module took the request.
    pub fn is_taken(&self) -> bool {
        self.request.is_none()
    }

    /// Takes the request out: the caller now owns its completion.
    pub fn take(&mut self) -> Option<Request> {
        self.request.take()
    }

    /// Takes the request and completes it with `status` (`WdfRequestComplete`).
    pub fn complete(&mut self, status: NtStatus) -> Handled {
        self.complete_with_information(status, 0)
    }

    /// Takes the request and completes it with `status` and `information`
    /// (`WdfRequestCompleteWithInformation`).
    pub fn complete_with_information(&mut self, status: NtStatus, information: usize) -> Handled {
        if let Some(request) = self.request.take() {
            request.complete_with_information(status, information);
        }
        Handled::Handled
    }

    /// The request if nobody took it (the dispatcher's end of the offer).
    pub fn into_request(self) -> Option<Request> {
        self.request
    }
}

impl core::fmt::Debug for IoRequest<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IoRequest")
            .field("parameters", &self.parameters)
            .field("taken", &self.request.is_none())
            .finish_non_exhaustive()
    }
}

/// The type-erased face of [`ModuleCallbacks`] that the Module object stores: a table of plain
/// function pointers, one `'static` table per Module type (a promoted `const`, no allocation).
///
/// A hand-made vtable rather than `Box<dyn Trait>` so that the dispatcher can copy the one entry a
/// callback needs next to the object pointer in its precomputed flat order (`collection.rs`): a
/// dispatch step is then one indirect call, as in a loop over `Box<dyn Trait>`. It also carries the
/// handle's `TypeId`, so the object needs no field for it.
pub(crate) struct CallbackTable {
    /// `TypeId::of::<M>()` of the handle type.
    pub(crate) type_id: fn() -> TypeId,
    /// The callbacks.
    pub(crate) fns: CallbackFns,
}

macro_rules! callback_table {
    ($($name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty;)*) => {
        /// The function-pointer fields of [`CallbackTable`], one per callback.
        pub(crate) struct CallbackFns {
            $(pub(crate) $name: fn(&ModuleObject $(, $ty)*) -> $ret,)*
        }

        impl CallbackTable {
            $(
                #[inline]
                pub(crate) fn $name(&self, o: &ModuleObject $(, $arg: $ty)*) -> $ret {
                    (self.fns.$name)(o $(, $arg)*)
                }
            )*
        }

        mod thunks {
            use super::*;
            $(
                #[inline]
                pub(super) fn $name<M: Module>(o: &ModuleObject $(, $arg: $ty)*) -> $ret {
                    M::$name(&Dispatched::<M>::new(o) $(, $arg)*)
                }
            )*
        }

        impl<M: Module> Shim<M> {
            /// `M`'s table; `const { &Shim::<M>::TABLE }` is its `'static` address.
            pub(crate) const TABLE: CallbackTable = CallbackTable {
                type_id: TypeId::of::<M>,
                fns: CallbackFns {
                    $($name: thunks::$name::<M>,)*
                },
            };
        }
    };
}

/// The zero-sized carrier of a Module type's [`CallbackTable`].
pub(crate) struct Shim<M>(PhantomData<fn() -> M>);

callback_table! {
    child_modules_add(init: &mut ModuleInit) -> ();
    resources_assign(r: &Resources) -> NtResult<()>;
    notification_register() -> NtResult<()>;
    notification_unregister() -> ();
    open() -> NtResult<()>;
    close() -> ();
    destroy() -> ();
    transport_method(message: u32, input: &[u8], output: &mut [u8]) -> NtResult<usize>;
    prepare_hardware(r: &Resources) -> NtResult<()>;
    release_hardware(r: &Resources) -> NtResult<()>;
    d0_entry(p: PowerDeviceState) -> NtResult<()>;
    d0_entry_post_interrupts_enabled(p: PowerDeviceState) -> NtResult<()>;
    d0_exit_pre_interrupts_disabled(t: PowerDeviceState) -> NtResult<()>;
    d0_exit(t: PowerDeviceState) -> NtResult<()>;
    self_managed_io_init() -> NtResult<()>;
    self_managed_io_restart() -> NtResult<()>;
    self_managed_io_suspend() -> NtResult<()>;
    self_managed_io_flush() -> ();
    self_managed_io_cleanup() -> ();
    surprise_removal() -> ();
    query_remove() -> NtResult<()>;
    query_stop() -> NtResult<()>;
    relations_query(r: RelationType) -> ();
    usage_notification_ex(t: SpecialFileType, p: bool) -> NtResult<()>;
    arm_wake_from_s0() -> NtResult<()>;
    disarm_wake_from_s0() -> ();
    wake_from_s0_triggered() -> ();
    arm_wake_from_sx_with_reason(w: bool, c: bool) -> NtResult<()>;
    disarm_wake_from_sx() -> ();
    wake_from_sx_triggered() -> ();
    queue_io_read(io: &mut IoRequest<'_>, l: usize) -> Handled;
    queue_io_write(io: &mut IoRequest<'_>, l: usize) -> Handled;
    device_io_control(io: &mut IoRequest<'_>) -> Handled;
    internal_device_io_control(io: &mut IoRequest<'_>) -> Handled;
    file_create(io: &mut IoRequest<'_>, f: &FileObject) -> Handled;
    file_cleanup(f: &FileObject) -> Handled;
    file_close(f: &FileObject) -> Handled;
    file_object_deleted(f: &FileObject) -> ();
}
