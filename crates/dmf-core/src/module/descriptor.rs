//! What a Module *is*, as data: its descriptor, open option and the set of callbacks it implements.
//!
//! C DMF fills a `DMF_MODULE_DESCRIPTOR` at run time in every `DMF_<Name>_Create` (MOD-30…MOD-36).
//! Here `#[dmf_module]` produces it as a `const`, so a Module's identity is fixed at compile time:
//! name, [`ModuleOptions`] (lock kind, `TRANSPORT_REQUIRED`), [`OpenOption`], auxiliary lock count,
//! child limit (MOD-10, E-01), in-flight trace size (MOD-30 `InFlightRecorderSize`) and the
//! [`CallbackSet`] the author implemented (from `#[dmf_callbacks]`). The dispatcher skips Modules
//! whose set lacks a callback — DMF's "generic" no-op (DSP-08) costs nothing.

use crate::sync::ModuleOptions;

/// `DmfModuleOpenOption`: when the framework opens and closes a Module, or registers and
/// unregisters its notifications (MOD-40, MOD-41, spec §2.4).
///
/// The discriminants are the numeric order of reference/dmf-upstream.md §2.5, which the
/// parent/child compatibility rule compares: a child must open no later than its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum OpenOption {
    /// `OPEN_Create`: open right after creation, close right before destruction.
    Create = 1,
    /// `OPEN_PrepareHardware`: open in PrepareHardware, close in ReleaseHardware.
    PrepareHardware = 2,
    /// `OPEN_D0EntrySystemPowerUp`: open on D0Entry when not open (first start, resume from
    /// system sleep), close on D0Exit to D3Final or hibernation.
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

    /// The parent/child compatibility rule (dmf-upstream §2.5): when both use `OPEN_*`, the
    /// parent's option must be numerically ≥ the child's, i.e. the child opens no later.
    pub const fn compatible_child(parent: OpenOption, child: OpenOption) -> bool {
        parent.is_notify() || child.is_notify() || parent as u8 >= child as u8
    }
}

bitflags::bitflags! {
    /// Which callbacks a Module implements: one bit per DMF callback (MOD-34) and per WDF callback
    /// (MOD-35, all 29 of spec §3.2 / DSP-20…DSP-48). `#[dmf_callbacks]` computes it from the
    /// method names of the author's `impl ModuleCallbacks` block; the flag names are the method
    /// names in upper case.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct CallbackSet: u64 {
        /// `ChildModulesAdd` (MOD-50).
        const CHILD_MODULES_ADD = 1 << 0;
        /// `DeviceResourcesAssign` (MOD-51).
        const RESOURCES_ASSIGN = 1 << 1;
        /// `DeviceNotificationRegister` (MOD-54).
        const NOTIFICATION_REGISTER = 1 << 2;
        /// `DeviceNotificationUnregister` (MOD-55).
        const NOTIFICATION_UNREGISTER = 1 << 3;
        /// `DeviceOpen` (MOD-52).
        const OPEN = 1 << 4;
        /// `DeviceClose` (MOD-53).
        const CLOSE = 1 << 5;
        /// `ModuleInstanceDestroy` (MOD-56).
        const DESTROY = 1 << 6;
        /// `DMF_<Name>_TransportMethod` (MOD-72): the Module can serve as a Transport.
        const TRANSPORT_METHOD = 1 << 7;
        /// DSP-20.
        const PREPARE_HARDWARE = 1 << 8;
        /// DSP-21.
        const RELEASE_HARDWARE = 1 << 9;
        /// DSP-22.
        const D0_ENTRY = 1 << 10;
        /// DSP-23.
        const D0_ENTRY_POST_INTERRUPTS_ENABLED = 1 << 11;
        /// DSP-25.
        const D0_EXIT_PRE_INTERRUPTS_DISABLED = 1 << 12;
        /// DSP-24.
        const D0_EXIT = 1 << 13;
        /// DSP-30.
        const SELF_MANAGED_IO_INIT = 1 << 14;
        /// DSP-32.
        const SELF_MANAGED_IO_RESTART = 1 << 15;
        /// DSP-31.
        const SELF_MANAGED_IO_SUSPEND = 1 << 16;
        /// DSP-29.
        const SELF_MANAGED_IO_FLUSH = 1 << 17;
        /// DSP-28.
        const SELF_MANAGED_IO_CLEANUP = 1 << 18;
        /// DSP-33.
        const SURPRISE_REMOVAL = 1 << 19;
        /// DSP-34.
        const QUERY_REMOVE = 1 << 20;
        /// DSP-35.
        const QUERY_STOP = 1 << 21;
        /// DSP-36.
        const RELATIONS_QUERY = 1 << 22;
        /// DSP-37.
        const USAGE_NOTIFICATION_EX = 1 << 23;
        /// DSP-38.
        const ARM_WAKE_FROM_S0 = 1 << 24;
        /// DSP-39.
        const DISARM_WAKE_FROM_S0 = 1 << 25;
        /// DSP-40.
        const WAKE_FROM_S0_TRIGGERED = 1 << 26;
        /// DSP-41.
        const ARM_WAKE_FROM_SX_WITH_REASON = 1 << 27;
        /// DSP-42.
        const DISARM_WAKE_FROM_SX = 1 << 28;
        /// DSP-43.
        const WAKE_FROM_SX_TRIGGERED = 1 << 29;
        /// DSP-47.
        const QUEUE_IO_READ = 1 << 30;
        /// DSP-48.
        const QUEUE_IO_WRITE = 1 << 31;
        /// DSP-26.
        const DEVICE_IO_CONTROL = 1 << 32;
        /// DSP-27.
        const INTERNAL_DEVICE_IO_CONTROL = 1 << 33;
        /// DSP-44.
        const FILE_CREATE = 1 << 34;
        /// DSP-45.
        const FILE_CLEANUP = 1 << 35;
        /// DSP-46.
        const FILE_CLOSE = 1 << 36;
        /// The file object's deletion (after close, or a failed create).
        const FILE_OBJECT_DELETED = 1 << 37;
    }
}

impl CallbackSet {
    /// The 30 WDF callbacks: a dynamic Module may implement none of them (MOD-91).
    pub const WDF: CallbackSet = CallbackSet::from_bits_truncate(((1u64 << 38) - 1) & !0xff);
}

/// The default child limit (MOD-10, Top 25 #18; the seed's "up to 16", E-01).
pub const DEFAULT_CHILD_LIMIT: u8 = 16;

/// `DMF_MODULE_DESCRIPTOR`: a Module's identity, generated as a `const` by `#[dmf_module]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleDescriptor {
    /// `ModuleName`: for diagnostics.
    pub name: &'static str,
    /// `ModuleOptions`: lock kind and `TRANSPORT_REQUIRED`.
    pub options: ModuleOptions,
    /// `OpenOption`.
    pub open_option: OpenOption,
    /// `NumberOfAuxiliaryLocks` (0…4).
    pub aux_locks: u8,
    /// Which callbacks the Module implements.
    pub callbacks: CallbackSet,
    /// The most children (including a Transport) this Module may add.
    pub child_limit: u8,
    /// Entries of the per-Module in-flight trace ring (`InFlightRecorderSize`); 0 = none.
    pub trace_capacity: u8,
}
