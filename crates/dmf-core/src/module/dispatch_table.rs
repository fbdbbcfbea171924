//! THE dispatch order: one table, one file (invariant 6; DSP-01…DSP-10, DSP-50…DSP-53).
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
//! This is the rule DMF's documentation states (DSP-02, DSP-03: "children before parents on the way
//! up, reversed on the way down"; the client after every Module going up and before them going
//! down, Top 25 #1, #2) applied without exception. reference/dmf-upstream.md §2.4 records that C
//! DMF's *code* iterates children forward on some down-path callbacks (ReleaseHardware, D0Exit,
//! D0ExitPreInterruptsDisabled, ArmWakeFromSxWithReason) and backward on others, and calls the
//! parent first for SurpriseRemoval/QueryRemove/QueryStop/file callbacks where its *comment* says
//! children first. We pick the comment's consistent rule for sibling order — the way down is the
//! exact mirror of the way up — and the code's parent-first for the remove/stop queries (they are
//! on the way down). Request callbacks go parent first and forward, as C DMF's code does: a parent
//! may claim a request before its children, and the earlier-added Module wins.
//!
//! A failing `NTSTATUS` callback stops the walk (the remaining Modules and the client are not
//! called) and its status is returned (DSP-53). A request nobody handles is resolved by
//! [`unhandled`]: data the device integration applies (CLI-22, Top 25 #4, dmf-upstream §2.4).

/// Every dispatched callback: the 30 WDF callbacks and the DMF callbacks that walk the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Callback {
    /// DSP-20.
    PrepareHardware,
    /// DSP-21.
    ReleaseHardware,
    /// DSP-22.
    D0Entry,
    /// DSP-23.
    D0EntryPostInterruptsEnabled,
    /// DSP-25.
    D0ExitPreInterruptsDisabled,
    /// DSP-24.
    D0Exit,
    /// DSP-30.
    SelfManagedIoInit,
    /// DSP-32.
    SelfManagedIoRestart,
    /// DSP-31.
    SelfManagedIoSuspend,
    /// DSP-29.
    SelfManagedIoFlush,
    /// DSP-28.
    SelfManagedIoCleanup,
    /// DSP-33.
    SurpriseRemoval,
    /// DSP-34.
    QueryRemove,
    /// DSP-35.
    QueryStop,
    /// DSP-36.
    RelationsQuery,
    /// DSP-37.
    UsageNotificationEx,
    /// DSP-38.
    ArmWakeFromS0,
    /// DSP-39.
    DisarmWakeFromS0,
    /// DSP-40.
    WakeFromS0Triggered,
    /// DSP-41.
    ArmWakeFromSxWithReason,
    /// DSP-42.
    DisarmWakeFromSx,
    /// DSP-43.
    WakeFromSxTriggered,
    /// DSP-47.
    QueueIoRead,
    /// DSP-48.
    QueueIoWrite,
    /// DSP-26.
    DeviceIoControl,
    /// DSP-27.
    InternalDeviceIoControl,
    /// DSP-44.
    FileCreate,
    /// DSP-45.
    FileCleanup,
    /// DSP-46.
    FileClose,
    /// Not in C DMF: the file object's `EvtCleanupCallback` — it is deleted, after its close or
    /// because its create failed (a notice, not a request: every Module that implements it).
    FileObjectDeleted,
    /// MOD-51 (in PrepareHardware).
    ResourcesAssign,
    /// MOD-54 (at the open option's point).
    NotificationRegister,
    /// MOD-55.
    NotificationUnregister,
    /// MOD-52: opening a tree (children first, Top 25 #1).
    Open,
    /// MOD-53: closing a tree (parent first, children usable in the parent's Close).
    Close,
}

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

/// Every callback, for the tests that assert each row.
pub const ALL: [Callback; 35] = {
    use Callback as C;
    [
        C::PrepareHardware,
        C::ReleaseHardware,
        C::D0Entry,
        C::D0EntryPostInterruptsEnabled,
        C::D0ExitPreInterruptsDisabled,
        C::D0Exit,
        C::SelfManagedIoInit,
        C::SelfManagedIoRestart,
        C::SelfManagedIoSuspend,
        C::SelfManagedIoFlush,
        C::SelfManagedIoCleanup,
        C::SurpriseRemoval,
        C::QueryRemove,
        C::QueryStop,
        C::RelationsQuery,
        C::UsageNotificationEx,
        C::ArmWakeFromS0,
        C::DisarmWakeFromS0,
        C::WakeFromS0Triggered,
        C::ArmWakeFromSxWithReason,
        C::DisarmWakeFromSx,
        C::WakeFromSxTriggered,
        C::QueueIoRead,
        C::QueueIoWrite,
        C::DeviceIoControl,
        C::InternalDeviceIoControl,
        C::FileCreate,
        C::FileCleanup,
        C::FileClose,
        C::FileObjectDeleted,
        C::ResourcesAssign,
        C::NotificationRegister,
        C::NotificationUnregister,
        C::Open,
        C::Close,
    ]
};

/// What happens to a request no Module and not the client handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unhandled {
    /// Complete it with this status.
    Complete(crate::NtStatus),
    /// Send it to the next lower driver unchanged (a filter driver).
    PassDown,
}

/// The unhandled-request policy (CLI-22, Top 25 #4, dmf-upstream §2.4): a filter passes every
/// request down; a function driver completes I/O with `STATUS_NOT_SUPPORTED` and FileCreate with
/// `STATUS_SUCCESS` (so interfaces open without a FileCreate handler), and file cleanup/close with
/// `STATUS_SUCCESS`. `None` for callbacks that are not requests.
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
