//! THE list of Module callbacks: the one declaration from which everything that enumerates them
//! is generated — the [`ModuleCallbacks`](super::ModuleCallbacks) trait and its type-erased
//! table, the [`CallbackSet`](super::CallbackSet) bits, the dispatch table's
//! [`Callback`](super::dispatch_table::Callback) enumeration, the collection's dispatchers and the
//! device's PnP/power hooks. `#[dmf_callbacks]` needs no list: it asks
//! [`CallbackSet::for_method`](super::CallbackSet::for_method) by name.
//!
//! Adding a WDF callback is one entry here plus its row in `dispatch_table.rs` (and, below the
//! framework, its slot in the platform contract's callback structure).
//!
//! An entry reads
//!
//! ```text
//! /// docs
//! method_name Variant FLAG [result collection device] (argument: Type, …) -> Return = default;
//! ```
//!
//! - `result`: `status` (`NTSTATUS`: a failure stops the walk), `void`, `request` (a request
//!   offered to the Modules: first taker wins) or `file` (a file-object callback without a
//!   request: first taker wins);
//! - `collection`: `auto` — [`ModuleCollection`](super::ModuleCollection) gets a dispatcher of
//!   that name generated from the row; `own` — it has a hand-written phase function (the open
//!   options act there) or none;
//! - `device`: `pnp` / `policy` — the device integration hooks the WDF PnP/power or power-policy
//!   callback of that name generically; `own` — by hand; `none` — not a WDF callback;
//! - `default`: DMF's "generic" callback, what a Module that does not implement it does.
//!
//! The three groups are: Module callbacks the framework calls directly (never dispatched),
//! Module callbacks dispatched through the tree, and the WDF callbacks.

/// Invokes `$consumer! { (extra tokens) module { … } dispatched { … } wdf { … } }`.
macro_rules! callback_list {
    ($consumer:ident ! ( $($extra:tt)* )) => {
        $consumer! {
            ($($extra)*)
            module {
                /// `ChildModulesAdd`: adds the Module's children with the same API a client uses.
                child_modules_add ChildModulesAdd CHILD_MODULES_ADD [void own none]
                    (init: &mut $crate::module::ModuleInit) -> () = ();
                /// `ModuleInstanceDestroy`: the Module is being destroyed (after its close).
                destroy Destroy DESTROY [void own none] () -> () = ();
                /// `DMF_<Name>_TransportMethod`: the Module serves as a Transport; returns the
                /// bytes written to `output`.
                transport_method TransportMethod TRANSPORT_METHOD [status own none]
                    (message: u32, input: &[u8], output: &mut [u8]) -> $crate::NtResult<usize>
                    = Err($crate::NtStatus::NOT_SUPPORTED);
            }
            dispatched {
                /// `DeviceResourcesAssign`: runs in PrepareHardware before the Module opens.
                resources_assign ResourcesAssign RESOURCES_ASSIGN [status own none]
                    (resources: &$crate::platform::Resources) -> $crate::NtResult<()> = Ok(());
                /// `DeviceNotificationRegister`: starts asynchronous arrival notification (at
                /// the point the `NOTIFY_*` open option names).
                notification_register NotificationRegister NOTIFICATION_REGISTER [status own none]
                    () -> $crate::NtResult<()> = Ok(());
                /// `DeviceNotificationUnregister`: stops notifications (the framework closes the
                /// Module afterwards if it is still open).
                notification_unregister NotificationUnregister NOTIFICATION_UNREGISTER [void own none]
                    () -> () = ();
                /// `DeviceOpen`: a tree opens children first.
                open Open OPEN [status own none] () -> $crate::NtResult<()> = Ok(());
                /// `DeviceClose`: a tree closes parent first; the children are usable in the
                /// parent's Close.
                close Close CLOSE [void own none] () -> () = ();
            }
            wdf {
                /// `EvtDevicePrepareHardware` (C DMF: `ModulePrepareHardware`).
                prepare_hardware PrepareHardware PREPARE_HARDWARE [status own own]
                    (resources: &$crate::platform::Resources) -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceReleaseHardware` (C DMF: `ModuleReleaseHardware`).
                release_hardware ReleaseHardware RELEASE_HARDWARE [status own pnp]
                    (resources: &$crate::platform::Resources) -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceD0Entry` (C DMF: `ModuleD0Entry`).
                d0_entry D0Entry D0_ENTRY [status own own]
                    (previous: $crate::module::PowerDeviceState) -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceD0EntryPostInterruptsEnabled` (C DMF:
                /// `ModuleD0EntryPostInterruptsEnabled`).
                d0_entry_post_interrupts_enabled D0EntryPostInterruptsEnabled D0_ENTRY_POST_INTERRUPTS_ENABLED [status auto pnp]
                    (previous: $crate::module::PowerDeviceState) -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceD0ExitPreInterruptsDisabled` (C DMF:
                /// `ModuleD0ExitPreInterruptsDisabled`).
                d0_exit_pre_interrupts_disabled D0ExitPreInterruptsDisabled D0_EXIT_PRE_INTERRUPTS_DISABLED [status auto pnp]
                    (target: $crate::module::PowerDeviceState) -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceD0Exit` (C DMF: `ModuleD0Exit`).
                d0_exit D0Exit D0_EXIT [status own pnp]
                    (target: $crate::module::PowerDeviceState) -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceSelfManagedIoInit` (C DMF: `ModuleSelfManagedIoInit`).
                self_managed_io_init SelfManagedIoInit SELF_MANAGED_IO_INIT [status auto pnp]
                    () -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceSelfManagedIoRestart` (C DMF: `ModuleSelfManagedIoRestart`).
                self_managed_io_restart SelfManagedIoRestart SELF_MANAGED_IO_RESTART [status auto pnp]
                    () -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceSelfManagedIoSuspend` (C DMF: `ModuleSelfManagedIoSuspend`).
                self_managed_io_suspend SelfManagedIoSuspend SELF_MANAGED_IO_SUSPEND [status auto pnp]
                    () -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceSelfManagedIoFlush` (C DMF: `ModuleSelfManagedIoFlush`).
                self_managed_io_flush SelfManagedIoFlush SELF_MANAGED_IO_FLUSH [void auto pnp]
                    () -> () = ();
                /// `EvtDeviceSelfManagedIoCleanup` (C DMF: `ModuleSelfManagedIoCleanup`).
                self_managed_io_cleanup SelfManagedIoCleanup SELF_MANAGED_IO_CLEANUP [void auto own]
                    () -> () = ();
                /// `EvtDeviceSurpriseRemoval` (C DMF: `ModuleSurpriseRemoval`).
                surprise_removal SurpriseRemoval SURPRISE_REMOVAL [void auto pnp] () -> () = ();
                /// `EvtDeviceQueryRemove` (C DMF: `ModuleQueryRemove`).
                query_remove QueryRemove QUERY_REMOVE [status auto pnp] () -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceQueryStop` (C DMF: `ModuleQueryStop`).
                query_stop QueryStop QUERY_STOP [status auto pnp] () -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceRelationsQuery` (C DMF: `ModuleRelationsQuery`).
                relations_query RelationsQuery RELATIONS_QUERY [void auto pnp]
                    (relation: $crate::module::RelationType) -> () = ();
                /// `EvtDeviceUsageNotificationEx` (C DMF: `ModuleUsageNotificationEx`).
                usage_notification_ex UsageNotificationEx USAGE_NOTIFICATION_EX [status auto pnp]
                    (file_type: $crate::module::SpecialFileType, in_path: bool) -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceArmWakeFromS0` (C DMF: `ModuleArmWakeFromS0`).
                arm_wake_from_s0 ArmWakeFromS0 ARM_WAKE_FROM_S0 [status auto policy]
                    () -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceDisarmWakeFromS0` (C DMF: `ModuleDisarmWakeFromS0`; `VOID` in WDF).
                disarm_wake_from_s0 DisarmWakeFromS0 DISARM_WAKE_FROM_S0 [void auto policy]
                    () -> () = ();
                /// `EvtDeviceWakeFromS0Triggered` (C DMF: `ModuleWakeFromS0Triggered`).
                wake_from_s0_triggered WakeFromS0Triggered WAKE_FROM_S0_TRIGGERED [void auto policy]
                    () -> () = ();
                /// `EvtDeviceArmWakeFromSxWithReason` (C DMF: `ModuleArmWakeFromSxWithReason`).
                arm_wake_from_sx_with_reason ArmWakeFromSxWithReason ARM_WAKE_FROM_SX_WITH_REASON [status auto policy]
                    (device_wake_enabled: bool, children_armed_for_wake: bool) -> $crate::NtResult<()> = Ok(());
                /// `EvtDeviceDisarmWakeFromSx` (C DMF: `ModuleDisarmWakeFromSx`).
                disarm_wake_from_sx DisarmWakeFromSx DISARM_WAKE_FROM_SX [void auto policy]
                    () -> () = ();
                /// `EvtDeviceWakeFromSxTriggered` (C DMF: `ModuleWakeFromSxTriggered`).
                wake_from_sx_triggered WakeFromSxTriggered WAKE_FROM_SX_TRIGGERED [void auto policy]
                    () -> () = ();
                /// `EvtIoRead` (C DMF: `ModuleQueueIoRead`).
                queue_io_read QueueIoRead QUEUE_IO_READ [request auto own]
                    (io: &mut $crate::module::IoRequest<'_>, length: usize) -> $crate::module::Handled = $crate::module::Handled::NotHandled;
                /// `EvtIoWrite` (C DMF: `ModuleQueueIoWrite`).
                queue_io_write QueueIoWrite QUEUE_IO_WRITE [request auto own]
                    (io: &mut $crate::module::IoRequest<'_>, length: usize) -> $crate::module::Handled = $crate::module::Handled::NotHandled;
                /// `EvtIoDeviceControl` (C DMF: `ModuleDeviceIoControl`).
                device_io_control DeviceIoControl DEVICE_IO_CONTROL [request auto own]
                    (io: &mut $crate::module::IoRequest<'_>) -> $crate::module::Handled = $crate::module::Handled::NotHandled;
                /// `EvtIoInternalDeviceControl` (C DMF: `ModuleInternalDeviceIoControl`).
                internal_device_io_control InternalDeviceIoControl INTERNAL_DEVICE_IO_CONTROL [request auto own]
                    (io: &mut $crate::module::IoRequest<'_>) -> $crate::module::Handled = $crate::module::Handled::NotHandled;
                /// `EvtDeviceFileCreate` (C DMF: `ModuleFileCreate`).
                file_create FileCreate FILE_CREATE [request auto own]
                    (io: &mut $crate::module::IoRequest<'_>, file: &$crate::platform::FileObject) -> $crate::module::Handled = $crate::module::Handled::NotHandled;
                /// `EvtFileCleanup` (C DMF: `ModuleFileCleanup`).
                file_cleanup FileCleanup FILE_CLEANUP [file auto own]
                    (file: &$crate::platform::FileObject) -> $crate::module::Handled = $crate::module::Handled::NotHandled;
                /// `EvtFileClose` (C DMF: `ModuleFileClose`).
                file_close FileClose FILE_CLOSE [file auto own]
                    (file: &$crate::platform::FileObject) -> $crate::module::Handled = $crate::module::Handled::NotHandled;
                /// Not in C DMF: the file object's `EvtCleanupCallback` — it is deleted, right
                /// after its close, or, for a create that failed (refused by a Module after this
                /// one, by the client, or by a lower driver), when that create completed: no
                /// cleanup or close ever comes for it. So it ends exactly once whatever a Module
                /// did in `file_create`: release per-file state here (e.g. an exclusive hold). A
                /// notice to every Module that implements it (parent first, siblings backward,
                /// the client's first), also for files it never saw; it may run inside the call
                /// that completes the create, so do not complete a create while holding a lock
                /// this takes.
                file_object_deleted FileObjectDeleted FILE_OBJECT_DELETED [void auto own]
                    (file: &$crate::platform::FileObject) -> () = ();
            }
        }
    };
}

pub(crate) use callback_list;
