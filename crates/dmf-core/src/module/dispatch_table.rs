//! THE dispatch order: one table, one file (invariant 6).
//!
//! # The rule
//!
//! Three rows cover every callback, and [`row`] assigns each callback to one of them:
//!
//! | Row | Tree | Siblings (and top-level Modules) | Client | Callbacks |
//! |---|---|---|---|---|
//! | [`UP`] | children first | forward (add order) | after the Modules | power-up, start, wake disarm/trigger, relations, usage notification, ResourcesAssign, NotificationRegister, open |
//! | [`DOWN`] | parent first | backward (reverse add order) | before the Modules | power-down, stop, remove, surprise removal, query remove/stop, arm for wake, file object deleted, NotificationUnregister, close |
//! | [`REQUEST`] | parent first | forward | after the Modules (last taker) | the seven BOOLEAN request callbacks: first taker wins |
//!
//! This is the rule DMF documents (the header comment of C DMF's `DmfCall.c`: children before
//! parents on the way up, reversed on the way down; the DMF guide's "Properties of Modules": the
//! client after every Module going up and before them going down) applied without exception. C
//! DMF's *code* in `DmfCall.c` iterates children forward (`DmfChildObjectIterateForward`) on some
//! down-path callbacks (ReleaseHardware, D0Exit, D0ExitPreInterruptsDisabled,
//! ArmWakeFromSxWithReason) and backward on others, and calls the parent first for
//! SurpriseRemoval/QueryRemove/QueryStop/file callbacks where its *comment* says children first. We
//! pick the comment's consistent rule for sibling order — the way down is the exact mirror of the
//! way up — and the code's parent-first for the remove/stop queries (they are on the way down).
//! Request callbacks go parent first and forward, as C DMF's code does: a parent may claim a
//! request before its children, and the earlier-added Module wins.
//!
//! A failing `NTSTATUS` callback stops the walk (the remaining Modules and the client are not
//! called) and its status is returned. A request nobody handles is resolved by [`unhandled`]: data
//! the device integration applies (C DMF decides it in `DmfContainer.c`).

/// Generates [`Callback`], [`ALL`] and [`Callback::flag`] from the list of callbacks: the WDF
/// callbacks and the DMF callbacks that walk the tree.
use super::callback_list::callback_list;
use super::descriptor::CallbackSet;

macro_rules! callback_enum {
    (() module { $($m:tt)* } dispatched { $($d:tt)* } wdf { $($w:tt)* }) => {
        callback_enum!(@enum $($w)* $($d)*);
    };
    (@enum $(
        $(#[$doc:meta])* $name:ident $variant:ident $flag:ident [$($kind:ident)*]
        ($($arg:ident : $ty:ty),*) -> $ret:ty = $default:expr;
    )*) => {
        /// Every dispatched callback: the WDF callbacks and the DMF callbacks that walk the tree.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Callback {
            $($(#[$doc])* $variant,)*
        }

        /// Every dispatched callback, for the tests that assert each row.
        pub const ALL: [Callback; [$(Callback::$variant),*].len()] = [$(Callback::$variant),*];

        impl Callback {
            /// The implemented-callback bit of this callback.
            pub const fn flag(self) -> CallbackSet {
                match self {
                    $(Callback::$variant => CallbackSet::$flag,)*
                }
            }
        }
    };
}

callback_list!(callback_enum!());

/// Which goes first within one Module's subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tree {
    /// The children (recursively), then the parent.
    ChildrenFirst,
    /// The parent, then the children.
    ParentFirst,
}

/// The order among siblings (and among top-level Modules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Siblings {
    /// In add (creation) order.
    Forward,
    /// In reverse add order.
    Backward,
}

/// Where the client driver's own callback runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientOrder {
    /// After every Module.
    AfterModules,
    /// Before every Module.
    BeforeModules,
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Row {
    /// Parent/children order.
    pub tree: Tree,
    /// Sibling order.
    pub siblings: Siblings,
    /// Client position.
    pub client: ClientOrder,
    /// `true` for the BOOLEAN request callbacks: the walk stops at the first taker.
    pub first_taker_wins: bool,
}

/// The way up.
pub const UP: Row = Row {
    tree: Tree::ChildrenFirst,
    siblings: Siblings::Forward,
    client: ClientOrder::AfterModules,
    first_taker_wins: false,
};

/// The way down.
pub const DOWN: Row = Row {
    tree: Tree::ParentFirst,
    siblings: Siblings::Backward,
    client: ClientOrder::BeforeModules,
    first_taker_wins: false,
};

/// Requests.
pub const REQUEST: Row = Row {
    tree: Tree::ParentFirst,
    siblings: Siblings::Forward,
    client: ClientOrder::AfterModules,
    first_taker_wins: true,
};

/// The table: the row of every callback.
pub const fn row(callback: Callback) -> Row {
    use Callback as C;
    match callback {
        C::PrepareHardware
        | C::D0Entry
        | C::D0EntryPostInterruptsEnabled
        | C::SelfManagedIoInit
        | C::SelfManagedIoRestart
        | C::RelationsQuery
        | C::UsageNotificationEx
        | C::DisarmWakeFromS0
        | C::WakeFromS0Triggered
        | C::DisarmWakeFromSx
        | C::WakeFromSxTriggered
        | C::ResourcesAssign
        | C::NotificationRegister
        | C::Open => UP,
        C::ReleaseHardware
        | C::D0ExitPreInterruptsDisabled
        | C::D0Exit
        | C::SelfManagedIoSuspend
        | C::SelfManagedIoFlush
        | C::SelfManagedIoCleanup
        | C::SurpriseRemoval
        | C::QueryRemove
        | C::QueryStop
        | C::ArmWakeFromS0
        | C::ArmWakeFromSxWithReason
        | C::FileObjectDeleted
        | C::NotificationUnregister
        | C::Close => DOWN,
        C::QueueIoRead
        | C::QueueIoWrite
        | C::DeviceIoControl
        | C::InternalDeviceIoControl
        | C::FileCreate
        | C::FileCleanup
        | C::FileClose => REQUEST,
    }
}

/// What happens to a request no Module and not the client handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unhandled {
    /// Complete it with this status.
    Complete(crate::NtStatus),
    /// Send it to the next lower driver unchanged (a filter driver).
    PassDown,
}

/// The unhandled-request policy (C DMF's container callbacks in `DmfContainer.c`, e.g.
/// `DMF_RequestPassthru` in a filter): a filter passes every request down; a function driver
/// completes I/O with `STATUS_NOT_SUPPORTED` and FileCreate with `STATUS_SUCCESS` (so interfaces
/// open without a FileCreate handler), and file cleanup/close with `STATUS_SUCCESS`. `None` for
/// callbacks that are not requests.
pub const fn unhandled(callback: Callback, filter: bool) -> Option<Unhandled> {
    use Callback as C;
    match callback {
        C::QueueIoRead | C::QueueIoWrite | C::DeviceIoControl | C::InternalDeviceIoControl => {
            Some(if filter {
                Unhandled::PassDown
            } else {
                Unhandled::Complete(crate::NtStatus::NOT_SUPPORTED)
            })
        }
        C::FileCreate | C::FileCleanup | C::FileClose => Some(if filter {
            Unhandled::PassDown
        } else {
            Unhandled::Complete(crate::NtStatus::SUCCESS)
        }),
        _ => None,
    }
}
