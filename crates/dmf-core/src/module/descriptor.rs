//! What a Module *is*, as data: its descriptor, open option and the set of callbacks it implements.
//!
//! C DMF fills a `DMF_MODULE_DESCRIPTOR` at run time in every `DMF_<Name>_Create`. Here
//! `#[dmf_module]` produces it as a `const`, so a Module's identity is fixed at compile time: name,
//! [`ModuleOptions`] (lock kind, `TRANSPORT_REQUIRED`), [`OpenOption`], auxiliary lock count, child
//! limit, in-flight trace size (`InFlightRecorderSize`) and the [`CallbackSet`] the author
//! implemented (from `#[dmf_callbacks]`). The dispatcher skips Modules whose set lacks a callback —
//! DMF's "generic" no-op costs nothing.

use super::callback_list::callback_list;
use crate::sync::ModuleOptions;

/// `DmfModuleOpenOption`: when the framework opens and closes a Module, or registers and
/// unregisters its notifications.
///
/// The discriminants are the numeric order of C DMF's `DmfModuleOpenOption` (`DmfModule.h`),
/// which the parent/child compatibility rule compares: a child must open no later than its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum OpenOption {
    /// `OPEN_Create`: open right after creation, close right before destruction.
    Create = 1,
    /// `OPEN_PrepareHardware`: open in PrepareHardware, close in ReleaseHardware.
    PrepareHardware = 2,
    /// `OPEN_D0EntrySystemPowerUp`: open on D0Entry when not open (first start, return from a
    /// system sleep, hibernation or restart); close on the D0Exit of a system transition out of
    /// S0 (sleep, hibernate, shutdown) or to D3Final — not when the device idles in S0.
    D0EntrySystemPowerUp = 3,
    /// `OPEN_D0Entry`: open on every D0Entry, close on every D0Exit.
    D0Entry = 4,
    /// `NOTIFY_PrepareHardware`: NotificationRegister in PrepareHardware, Unregister in
    /// ReleaseHardware; the Module opens itself from its notification.
    NotifyPrepareHardware = 5,
    /// `NOTIFY_D0Entry`: NotificationRegister in D0Entry, Unregister in D0Exit.
    NotifyD0Entry = 6,
    /// `NOTIFY_Create`: NotificationRegister after creation, Unregister before destruction.
    NotifyCreate = 7,
}

impl OpenOption {
    /// `true` for the three `NOTIFY_*` options (exempt from the compatibility rule).
    pub const fn is_notify(self) -> bool {
        matches!(
            self,
            OpenOption::NotifyPrepareHardware
                | OpenOption::NotifyD0Entry
                | OpenOption::NotifyCreate
        )
    }

    /// `true` for `OPEN_Create` and `NOTIFY_Create`: the only options a dynamic Module may use.
    pub const fn is_create(self) -> bool {
        matches!(self, OpenOption::Create | OpenOption::NotifyCreate)
    }

    /// The parent/child compatibility rule (C DMF: `DMF_Module_OpenOrRegisterNotificationOnCreate`
    /// in `DmfCall.c`): when both use `OPEN_*`, the parent's option must be numerically ≥ the
    /// child's, i.e. the child opens no later.
    pub const fn compatible_child(parent: OpenOption, child: OpenOption) -> bool {
        parent.is_notify() || child.is_notify() || parent as u8 >= child as u8
    }
}

/// Generates [`CallbackSet`] from the list: one bit per callback, in list order.
macro_rules! callback_set {
    (() module { $($m:tt)* } dispatched { $($d:tt)* } wdf { $($w:tt)* }) => {
        callback_set!(@set [$($m)* $($d)* $($w)*] [$($w)*]);
    };
    (@set [$(
        $(#[doc = $doc:tt])* $name:ident $variant:ident $flag:ident [$($kind:ident)*]
        ($($arg:ident : $ty:ty),*) -> $ret:ty = $default:expr;
    )*] [$(
        $(#[$wdoc:meta])* $wname:ident $wvariant:ident $wflag:ident [$($wkind:ident)*]
        ($($warg:ident : $wty:ty),*) -> $wret:ty = $wdefault:expr;
    )*]) => {
        /// The bit number of each callback.
        #[repr(u8)]
        enum Bit {
            $($variant,)*
        }

        bitflags::bitflags! {
            /// Which callbacks a Module implements: one bit per DMF and per WDF callback.
            /// `#[dmf_callbacks]` computes it from the method names of the author's
            /// `impl ModuleCallbacks` block ([`CallbackSet::for_method`]); the flag names are the
            /// method names in upper case.
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
            pub struct CallbackSet: u64 {
                $(
                    $(#[doc = $doc])*
                    const $flag = 1 << (Bit::$variant as u8);
                )*
            }
        }

        impl CallbackSet {
            /// The WDF callbacks: a dynamic Module receives none of them.
            pub const WDF: CallbackSet = CallbackSet::empty() $(.union(CallbackSet::$wflag))*;

            /// The flag of the `ModuleCallbacks` method `name` (empty for any other name): what
            /// `#[dmf_callbacks]` asks for each method of an impl block, at compile time.
            pub const fn for_method(name: &str) -> CallbackSet {
                $(
                    if str_eq(name, stringify!($name)) {
                        return CallbackSet::$flag;
                    }
                )*
                CallbackSet::empty()
            }
        }
    };
}

callback_list!(callback_set!());

/// `a == b`, in a `const fn`.
const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The default child limit: 16, as in the DMF guide's "Properties of Modules" ("A Module can
/// instantiate up to 16 Child Modules"; its notes on Child Modules say there is no limit).
pub const DEFAULT_CHILD_LIMIT: u8 = 16;

impl ModuleDescriptor {
    /// The open option of an instance: `dynamic_open_option` for a dynamic one.
    pub const fn open_option_for(&self, dynamic: bool) -> OpenOption {
        if dynamic {
            self.dynamic_open_option
        } else {
            self.open_option
        }
    }
}

/// `DMF_MODULE_DESCRIPTOR`: a Module's identity, generated as a `const` by `#[dmf_module]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleDescriptor {
    /// `ModuleName`: for diagnostics.
    pub name: &'static str,
    /// `ModuleOptions`: lock kind and `TRANSPORT_REQUIRED`.
    pub options: ModuleOptions,
    /// `OpenOption`.
    pub open_option: OpenOption,
    /// The `OpenOption` of an instance created dynamically: `OPEN_Create` or `NOTIFY_Create`
    /// (C DMF's `DMF_<Name>_Create` picks it when `DMF_MODULE_ATTRIBUTES.DynamicModule` is set, as
    /// DeviceInterfaceTarget does); the same as `open_option` unless the Module says otherwise.
    pub dynamic_open_option: OpenOption,
    /// `NumberOfAuxiliaryLocks` (0…4).
    pub aux_locks: u8,
    /// Which callbacks the Module implements.
    pub callbacks: CallbackSet,
    /// The most children (including a Transport) this Module may add.
    pub child_limit: u8,
    /// Entries of the per-Module in-flight trace ring (`InFlightRecorderSize`); 0 = none.
    pub trace_capacity: u8,
}
