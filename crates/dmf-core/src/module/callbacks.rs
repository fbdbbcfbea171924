//! The callbacks a Module may implement, and how the framework calls them without knowing the type.
//!
//! [`ModuleCallbacks`] is implemented by the Module author for the *handle type* under
//! `#[dmf_callbacks]`. Every method has a default — DMF's "generic" callback: success for
//! `NTSTATUS` callbacks, nothing for `VOID` ones, [`Handled::NotHandled`] for the BOOLEAN request
//! callbacks. Each receives `&Dispatched<'_, Self>`: the framework holds the Module in the state
//! the callback needs, so no rundown guard is taken (only DMF calls callbacks).
//!
//! `#[dmf_callbacks]` reads the method names of the impl block and emits the required
//! [`ModuleCallbacks::IMPLEMENTED`] const. The const has no default on purpose: an impl written
//! without the attribute fails to compile instead of silently never being dispatched.
//!
//! The WDF objects are the platform's types: resource lists are
//! [`Resources`](crate::platform::Resources), files [`FileObject`](crate::platform::FileObject),
//! power states [`PowerDeviceState`](super::PowerDeviceState). A request is offered to the Modules in an
//! [`IoRequest`]: the Module that takes it out (to complete, forward or keep it) handles it.

use core::any::TypeId;
use core::marker::PhantomData;

use super::callback_list::callback_list;
use super::descriptor::CallbackSet;
use super::object::ModuleObject;
use super::scope::{Dispatched, Module};
use crate::status::NtStatus;

use crate::platform::contract::io::{PlatformRequest, RequestParameters};
use crate::platform::{Queue, Request};

/// The result of a BOOLEAN request callback: the first Module that handles a request
/// stops the dispatch, and it owns the request's completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub enum Handled {
    /// `TRUE`: this Module handled (completed or forwarded) the request.
    Handled,
    /// `FALSE`: try the next Module.
    NotHandled,
}

/// The callbacks of a Module — C DMF's `DMF_CALLBACKS_DMF` and `DMF_CALLBACKS_WDF` — implemented
/// for its handle type under `#[dmf_callbacks]`. The methods are generated from the one list of
/// callbacks (`callback_list.rs`); each has DMF's "generic" default.
#[allow(unused_variables)]
pub trait ModuleCallbacks: Sized + 'static {
    /// The callbacks this impl overrides; emitted by `#[dmf_callbacks]`.
    const IMPLEMENTED: CallbackSet;

    callback_list!(trait_methods!());
}

/// The trait's methods, one per entry of the list, with its default.
macro_rules! trait_methods {
    (() module { $($m:tt)* } dispatched { $($d:tt)* } wdf { $($w:tt)* }) => {
        trait_methods!(@methods $($m)* $($d)* $($w)*);
    };
    (@methods $(
        $(#[$doc:meta])* $name:ident $variant:ident $flag:ident [$($kind:ident)*]
        ($($arg:ident : $ty:ty),*) -> $ret:ty = $default:expr;
    )*) => {
        $(
            $(#[$doc])*
            fn $name(module: &Dispatched<'_, Self> $(, $arg: $ty)*) -> $ret {
                $default
            }
        )*
    };
}
use trait_methods;

/// A request offered to the Modules by an `EvtIo*` or `EvtDeviceFileCreate` dispatch.
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
    (() module { $($m:tt)* } dispatched { $($d:tt)* } wdf { $($w:tt)* }) => {
        callback_table!(@table $($m)* $($d)* $($w)*);
    };
    (@table $(
        $(#[$doc:meta])* $name:ident $variant:ident $flag:ident [$($kind:ident)*]
        ($($arg:ident : $ty:ty),*) -> $ret:ty = $default:expr;
    )*) => {
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

callback_list!(callback_table!());
