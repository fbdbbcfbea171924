//! Named kernel events: the object manager's namespace of event objects.
//!
//! An event created with a name (`ZwCreateEvent` with an `OBJECT_ATTRIBUTES` name, or a user-mode
//! `CreateEvent`, which names it under `\BaseNamedObjects` or a session's `BaseNamedObjects`)
//! can be opened by that name by anyone who knows it — which is how a driver signals an event an
//! application waits on (`ZwOpenEvent`, then `KeSetEvent` on the referenced object). The object
//! lives while any handle to it is open; when the last handle is closed the name goes with it, so
//! an open after that fails with `STATUS_OBJECT_NAME_NOT_FOUND` until the event is created again.
//!
//! What the simulator models:
//!
//! * one namespace per [`Machine`], keyed by the full object-manager path; the lookup is
//!   case-insensitive, as every lookup is on Windows by default (the kernel's
//!   `ObCaseInsensitive` setting);
//! * [`NamedEvent::create`] (`ZwCreateEvent` / `CreateEventW`): a new event, or — when the name
//!   exists — a new handle to the existing one ([`NamedEvent::existed`], `STATUS_OBJECT_NAME_EXISTS`
//!   / `ERROR_ALREADY_EXISTS`), whose kind and state are left as they are;
//! * [`NamedEvent::open`] (`ZwOpenEvent` / `OpenEventW`): `STATUS_OBJECT_NAME_NOT_FOUND` if no
//!   such event exists, `STATUS_OBJECT_NAME_INVALID` for an empty name and
//!   `STATUS_OBJECT_PATH_SYNTAX_BAD` for a name that is not a path from the root (`\…`), as
//!   `ZwOpenEvent` without a `RootDirectory` answers; both create and open are `PASSIVE_LEVEL`
//!   routines (above it, an [`IrqlTooHigh`](crate::verifier::Rule::IrqlTooHigh) violation);
//! * the handle's [`set`](NamedEvent::set) / [`clear`](NamedEvent::clear) /
//!   [`wait`](NamedEvent::wait) are the [`Event`] routines on the referenced object, on the
//!   virtual clock;
//! * [`NamedEvent::close`] or dropping the handle is `ZwClose` / `CloseHandle`;
//!   [`named_event_handles`] counts the handles open on a name (a driver that forgot its
//!   `ZwClose` shows up there).
//!
//! Access checks are not modelled: kernel-mode opens skip them on Windows, and the applications a
//! test plays create the events they open.

use core::time::Duration;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::event::{Event, EventKind, WaitStatus};
use super::irql::{require_max_irql, Irql};
use super::lock;
use crate::machine::Machine;
use crate::object::{bind, MachineRef};
use crate::status::Status;

/// One named event and the number of handles open on it.
struct Entry {
    event: Event,
    handles: usize,
}

/// The machine's namespace of named events (a machine extension).
#[derive(Default)]
struct Namespace {
    entries: Mutex<HashMap<String, Entry>>,
}

fn namespace(machine: &Machine) -> Arc<Namespace> {
    machine.extension(Namespace::default)
}

/// The namespace key of `name`: checked, case-folded.
fn key_of(name: &str) -> Result<String, Status> {
    if name.is_empty() {
        return Err(Status::OBJECT_NAME_INVALID);
    }
    if !name.starts_with('\\') {
        return Err(Status::OBJECT_PATH_SYNTAX_BAD);
    }
    Ok(name.to_lowercase())
}

/// A handle to a named event (a `HANDLE` from `ZwCreateEvent` / `ZwOpenEvent`, or a user-mode
/// event handle). Closed by [`close`](Self::close) or on drop.
pub struct NamedEvent {
    machine: MachineRef,
    space: Arc<Namespace>,
    key: String,
    name: String,
    event: Event,
    existed: bool,
}

impl core::fmt::Debug for NamedEvent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NamedEvent")
            .field("name", &self.name)
            .field("signaled", &self.is_signaled())
            .finish_non_exhaustive()
    }
}

impl NamedEvent {
    /// `ZwCreateEvent(&handle, EVENT_ALL_ACCESS, {name}, kind, initially_signaled)`: creates the
    /// event `name` (a full object-manager path, `\BaseNamedObjects\…`), or opens it if it exists
    /// (then [`existed`](Self::existed) is true and `kind` / `initially_signaled` are ignored).
    /// `PASSIVE_LEVEL`.
    ///
    /// # Errors
    ///
    /// `STATUS_OBJECT_NAME_INVALID` (empty name), `STATUS_OBJECT_PATH_SYNTAX_BAD` (not `\…`).
    pub fn create(
        machine: &Machine,
        name: &str,
        kind: EventKind,
        initially_signaled: bool,
    ) -> Result<NamedEvent, Status> {
        require_max_irql(Irql::Passive, "ZwCreateEvent");
        let key = key_of(name)?;
        let space = namespace(machine);
        let mut entries = lock(&space.entries);
        let existed = entries.contains_key(&key);
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            event: Event::named(machine, name, kind, initially_signaled),
            handles: 0,
        });
        entry.handles += 1;
        let event = entry.event.clone();
        drop(entries);
        Ok(NamedEvent {
            machine: MachineRef::new(machine),
            space,
            key,
            name: name.to_owned(),
            event,
            existed,
        })
    }

    /// `ZwOpenEvent(&handle, access, {name})`: a new handle to the existing event `name`.
    /// `PASSIVE_LEVEL`.
    ///
    /// # Errors
    ///
    /// `STATUS_OBJECT_NAME_NOT_FOUND` (no such event), `STATUS_OBJECT_NAME_INVALID`,
    /// `STATUS_OBJECT_PATH_SYNTAX_BAD`.
    pub fn open(machine: &Machine, name: &str) -> Result<NamedEvent, Status> {
        require_max_irql(Irql::Passive, "ZwOpenEvent");
        let key = key_of(name)?;
        let space = namespace(machine);
        let mut entries = lock(&space.entries);
        let entry = entries.get_mut(&key).ok_or(Status::OBJECT_NAME_NOT_FOUND)?;
        entry.handles += 1;
        let event = entry.event.clone();
        drop(entries);
        Ok(NamedEvent {
            machine: MachineRef::new(machine),
            space,
            key,
            name: name.to_owned(),
            event,
            existed: true,
        })
    }

    /// The name this handle was created or opened with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether [`create`](Self::create) found the event already there (`STATUS_OBJECT_NAME_EXISTS`;
    /// always true for [`open`](Self::open)).
    pub fn existed(&self) -> bool {
        self.existed
    }

    /// The referenced event object (`ObReferenceObjectByHandle`).
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// `KeSetEvent` / `SetEvent`: returns whether it was already signalled.
    pub fn set(&self) -> bool {
        self.event.set()
    }

    /// `KeClearEvent` / `ResetEvent`.
    pub fn clear(&self) {
        self.event.clear();
    }

    /// Whether the event is signalled now.
    pub fn is_signaled(&self) -> bool {
        self.event.is_signaled()
    }

    /// `WaitForSingleObject` / `KeWaitForSingleObject` on the event, on the virtual clock (`None`:
    /// forever). The calling thread is bound to the event's machine for the wait if it was not.
    pub fn wait(&self, timeout: Option<Duration>) -> WaitStatus {
        let _bound = self.machine.machine().and_then(|m| bind(&m));
        self.event.wait(timeout)
    }

    /// `ZwClose` / `CloseHandle`: the name goes when its last handle is closed.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for NamedEvent {
    fn drop(&mut self) {
        let mut entries = lock(&self.space.entries);
        if let Some(entry) = entries.get_mut(&self.key) {
            entry.handles -= 1;
            if entry.handles == 0 {
                entries.remove(&self.key);
            }
        }
    }
}

/// Whether an event named `name` exists on `machine` (some handle to it is open).
pub fn named_event_exists(machine: &Machine, name: &str) -> bool {
    named_event_handles(machine, name) > 0
}

/// How many handles are open on the event `name` (0 when it does not exist).
pub fn named_event_handles(machine: &Machine, name: &str) -> usize {
    let Ok(key) = key_of(name) else { return 0 };
    lock(&namespace(machine).entries)
        .get(&key)
        .map_or(0, |e| e.handles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_open_close_and_the_name_goes_with_the_last_handle() {
        let machine = Machine::new();
        let _on = machine.enter();
        let name = r"\BaseNamedObjects\Ping";
        assert_eq!(
            NamedEvent::open(&machine, name).unwrap_err(),
            Status::OBJECT_NAME_NOT_FOUND
        );
        let app = NamedEvent::create(&machine, name, EventKind::Synchronization, false).unwrap();
        assert!(!app.existed());
        let again = NamedEvent::create(&machine, name, EventKind::Notification, true).unwrap();
        assert!(again.existed());
        assert!(!again.is_signaled(), "an existing event keeps its state");
        again.close();
        let driver = NamedEvent::open(&machine, r"\basenamedobjects\PING").unwrap();
        assert_eq!(named_event_handles(&machine, name), 2);
        assert!(!driver.set());
        assert_eq!(app.wait(Some(Duration::ZERO)), WaitStatus::Signaled);
        assert!(
            !app.is_signaled(),
            "a synchronization event resets on the wait"
        );
        driver.close();
        app.close();
        assert!(!named_event_exists(&machine, name));
        assert_eq!(
            NamedEvent::open(&machine, name).unwrap_err(),
            Status::OBJECT_NAME_NOT_FOUND
        );
        assert_eq!(
            NamedEvent::open(&machine, "").unwrap_err(),
            Status::OBJECT_NAME_INVALID
        );
        assert_eq!(
            NamedEvent::open(&machine, "Ping").unwrap_err(),
            Status::OBJECT_PATH_SYNTAX_BAD
        );
    }
}
