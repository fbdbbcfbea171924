//! # DMF_NotifyUserWithEvent
//!
//! ## Summary
//!
//! Shares named events with a user-mode component: the application creates an event by name
//! (`CreateEvent`) and waits on it; the driver signals it with
//! [`NotifyUserWithEvent::notify`] or [`NotifyUserWithEvent::notify_by_index`].
//!
//! ## Configuration
//!
//! [`NotifyUserWithEventConfig`] (`DMF_CONFIG_NotifyUserWithEvent`):
//! - `maximum_event_index` — `MaximumEventIndex`: the highest index the Module accepts; less than
//!   [`NOTIFY_USER_WITH_EVENT_MAXIMUM_EVENTS`] (4, `NotifyUserWithEvent_MAXIMUM_EVENTS`).
//! - `event_names` — `EventNames[]`: the kernel name of each event, a full object-manager path.
//!   An application's `CreateEvent(…, L"Global\\Name")` creates `\BaseNamedObjects\Name`; a
//!   session-local name (`Local\Name` or a bare `Name`) lives in
//!   `\Sessions\<session>\BaseNamedObjects\Name`. Entries above `maximum_event_index` are not
//!   used.
//!
//! ## Methods
//!
//! | C DMF | Rust | IRQL |
//! |---|---|---|
//! | `DMF_NotifyUserWithEvent_Notify` | [`NotifyUserWithEvent::notify`] | `PASSIVE_LEVEL` |
//! | `DMF_NotifyUserWithEvent_NotifyByIndex` | [`NotifyUserWithEvent::notify_by_index`] | `PASSIVE_LEVEL` |
//!
//! Both return what C DMF returns: `STATUS_SUCCESS` once the event was set; the status of
//! `ZwOpenEvent` when it could not be opened — `STATUS_OBJECT_NAME_NOT_FOUND` when no
//! application has created it (or every handle to it was closed); the status of
//! `ObReferenceObjectByHandle` when it could not be referenced.
//!
//! ## Callbacks
//!
//! None.
//!
//! ## Remarks
//!
//! - As in C DMF, each notification opens the event by name (`ZwOpenEvent` with
//!   `EVENT_MODIFY_STATE` and a kernel handle), sets it (`KeSetEvent` on the referenced object)
//!   and closes it again, under the Module's lock. No handle is kept between notifications, so an
//!   application may stop and start again (closing and re-creating its event) at any time, and the
//!   driver learns from the status whether an application is listening.
//! - Open opens no event (C DMF: "Events are created dynamically as they are used"), so the
//!   Module opens whether or not the application has created its events yet; open only checks
//!   the configuration. Close has nothing to release.
//! - Errors instead of C DMF's assertions: a `maximum_event_index` of
//!   [`NOTIFY_USER_WITH_EVENT_MAXIMUM_EVENTS`] or more fails open with
//!   `STATUS_INVALID_PARAMETER` (as in C); so does an empty name at an index up to
//!   `maximum_event_index`, or a name longer than a `UNICODE_STRING` can hold (32 767 UTF-16
//!   units). A Method called with an index above `maximum_event_index` fails with
//!   `STATUS_INVALID_PARAMETER`; above `PASSIVE_LEVEL` with `STATUS_INVALID_DEVICE_REQUEST`.
//! - Names are `&'static str`: a driver's event names are constants (C DMF's config holds
//!   `UNICODE_STRING`s the client keeps alive). The kernel copies each name into a
//!   `UNICODE_STRING` when it opens the event.
//! - PASSIVE lock (C: `DMF_MODULE_OPTIONS_PASSIVE`), open option `OPEN_Create`. A device is not
//!   needed; the Module can be created dynamically.
//!
//! ## Example
//!
//! ```
//! use core::time::Duration;
//! use dmf_core::module::NoParent;
//! use dmf_core::NtStatus;
//! use dmf_modules::notify_user_with_event::{NotifyUserWithEvent, NotifyUserWithEventConfig};
//! use kmdf_sim::exec::WaitStatus;
//! use kmdf_sim::io::{AppConfig, Application};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _on = machine.enter();
//! let notify = NotifyUserWithEvent::with(NotifyUserWithEventConfig {
//!     maximum_event_index: 0,
//!     event_names: [r"\BaseNamedObjects\Ready", "", "", ""],
//! })
//! .create(&NoParent)?;
//! // No application listens yet.
//! assert_eq!(notify.notify(), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
//! // The application: CreateEvent(NULL, FALSE, FALSE, L"Global\\Ready"), then a wait.
//! let app = Application::new(&machine, AppConfig::default());
//! let ready = app.create_event(r"Global\Ready", false, false).unwrap();
//! notify.notify()?;
//! assert_eq!(ready.wait(Some(Duration::from_secs(1))), WaitStatus::Signaled);
//! # Ok::<(), NtStatus>(())
//! ```
//!
//! ## Category
//!
//! User Notification.

use dmf_core::module::{Dispatched, ModuleCallbacks};
use dmf_core::platform::contract::{Irql, PlatformIrql, PlatformNamedEvent};
use dmf_core::platform::{CurrentIrql, NamedEvent};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

/// `NotifyUserWithEvent_MAXIMUM_EVENTS`: how many events one instance can name.
pub const NOTIFY_USER_WITH_EVENT_MAXIMUM_EVENTS: usize = 4;

/// `NotifyUserWithEvent_DefaultIndex`: the event [`NotifyUserWithEvent::notify`] sets.
pub const NOTIFY_USER_WITH_EVENT_DEFAULT_INDEX: u32 = 0;

/// The longest event name, in UTF-16 units (a `UNICODE_STRING`'s byte length is a `USHORT`).
pub const NOTIFY_USER_WITH_EVENT_MAXIMUM_NAME_LENGTH: usize = 32_767;

/// `DMF_CONFIG_NotifyUserWithEvent`. See the [module documentation](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotifyUserWithEventConfig {
    /// `MaximumEventIndex`: the highest valid index (less than
    /// [`NOTIFY_USER_WITH_EVENT_MAXIMUM_EVENTS`]).
    pub maximum_event_index: u32,
    /// `EventNames`: each event's object-manager path (`\BaseNamedObjects\Name`, …).
    pub event_names: [&'static str; NOTIFY_USER_WITH_EVENT_MAXIMUM_EVENTS],
}

/// The `DMF_NotifyUserWithEvent` Module. See the [module documentation](self).
#[dmf_module(crate = ::dmf_core, config = NotifyUserWithEventConfig, context = (), open = Create, lock = Passive)]
pub struct NotifyUserWithEvent;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for NotifyUserWithEvent {
    /// `DMF_NotifyUserWithEvent_Open`: checks the configuration; opens no event.
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let config = module.config();
        let last = usize::try_from(config.maximum_event_index)
            .ok()
            .filter(|&i| i < NOTIFY_USER_WITH_EVENT_MAXIMUM_EVENTS)
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        for name in &config.event_names[..=last] {
            if name.is_empty()
                || name.encode_utf16().count() > NOTIFY_USER_WITH_EVENT_MAXIMUM_NAME_LENGTH
            {
                return Err(NtStatus::INVALID_PARAMETER);
            }
        }
        Ok(())
    }
}

impl NotifyUserWithEvent {
    /// `DMF_NotifyUserWithEvent_Notify`: sets the event at
    /// [`NOTIFY_USER_WITH_EVENT_DEFAULT_INDEX`]. See [`notify_by_index`](Self::notify_by_index).
    pub fn notify(&self) -> NtResult<()> {
        self.notify_by_index(NOTIFY_USER_WITH_EVENT_DEFAULT_INDEX)
    }

    /// `DMF_NotifyUserWithEvent_NotifyByIndex`: opens the event at `event_index` by name, sets it
    /// and closes it. `PASSIVE_LEVEL`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` for an index above `maximum_event_index`;
    /// `STATUS_INVALID_DEVICE_REQUEST` above `PASSIVE_LEVEL`; `ZwOpenEvent`'s status
    /// (`STATUS_OBJECT_NAME_NOT_FOUND`: no such event) or `ObReferenceObjectByHandle`'s;
    /// `STATUS_INVALID_DEVICE_STATE` once the Module is closed.
    pub fn notify_by_index(&self, event_index: u32) -> NtResult<()> {
        let module = self.enter()?;
        if CurrentIrql::current() != Irql::Passive {
            return Err(NtStatus::INVALID_DEVICE_REQUEST);
        }
        let config = module.config();
        if event_index > config.maximum_event_index {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let name = usize::try_from(event_index)
            .ok()
            .and_then(|i| config.event_names.get(i))
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        // C DMF serialises the open-set-close of every notification under the Module's lock.
        let _serialised = module.lock();
        let event = NamedEvent::open(name)?;
        let result = event.set();
        drop(event);
        result
    }
}
