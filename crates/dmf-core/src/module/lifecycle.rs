//! The Module lifecycle trace: one line per creation, open, close, notification registration and
//! destruction of each Module, written through the platform trace (`DbgPrintEx` on the kernel, a
//! note of the machine's trace on kmdf-sim) with the source [`SOURCE`].
//!
//! # Format (docs/trace.md)
//!
//! ```text
//! DMF: Module <path> created
//! DMF: Module <path> opened (<when>)
//! DMF: Module <path> open failed (<when>) <status>
//! DMF: Module <path> closed (<when>)
//! DMF: Module <path> registered (<when>)
//! DMF: Module <path> unregistered (<when>)
//! DMF: Module <path> destroyed
//! ```
//!
//! `<path>` is the Module's name (`ModuleName` of its descriptor) after its parents' names,
//! separated by `/`, from the top-level Module down. `<when>` for an open or a registration is
//! C DMF's `ModuleOpenedDuringType` without its prefix (`Create`, `PrepareHardware`, `D0Entry`,
//! `D0EntrySystemPowerUp`, `Manual`); for a close or an unregistration it is the phase that
//! closed it: `ReleaseHardware`, `D0Exit`, `Manual` (the Module's own notification close),
//! `Destroy` (the Module is being deleted) or `Unwind` (a failed phase undoing its opens).
//!
//! # Cost
//!
//! A line is formatted lazily from `core::fmt::Arguments`; the path is written by walking the
//! parent links (an `Arc` upgrade each, no allocation). On the kernel the line goes into
//! `NtTrace`'s stack buffer; nothing here allocates.

use core::fmt;

use super::object::{ModuleObject, OpenedDuring};
use crate::platform::contract::{PlatformTrace, TraceLevel};
use crate::platform::Trace;
use crate::status::NtStatus;

/// The trace source of every lifecycle line (`DMF: …` in a debugger).
pub const SOURCE: &str = "DMF";

/// What closed (or unregistered) a Module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClosedDuring {
    /// The Module's own notification close (`DMF_ModuleClose` / `DMF_ModuleNotificationClose`).
    Manual,
    /// `EvtDeviceReleaseHardware` (what PrepareHardware opened).
    ReleaseHardware,
    /// `EvtDeviceD0Exit` (what D0Entry opened).
    D0Exit,
    /// The Module's deletion (its device's cleanup, or a dynamic Module's delete).
    Destroy,
    /// A failed phase undoing what it opened.
    Unwind,
}

impl ClosedDuring {
    const fn name(self) -> &'static str {
        match self {
            ClosedDuring::Manual => "Manual",
            ClosedDuring::ReleaseHardware => "ReleaseHardware",
            ClosedDuring::D0Exit => "D0Exit",
            ClosedDuring::Destroy => "Destroy",
            ClosedDuring::Unwind => "Unwind",
        }
    }
}

/// The name of an `OpenedDuring` in a trace line.
const fn opened_name(during: OpenedDuring) -> &'static str {
    match during {
        OpenedDuring::Nothing => "Nothing",
        OpenedDuring::Manual => "Manual",
        OpenedDuring::Create => "Create",
        OpenedDuring::PrepareHardware => "PrepareHardware",
        OpenedDuring::D0Entry => "D0Entry",
        OpenedDuring::D0EntrySystemPowerUp => "D0EntrySystemPowerUp",
    }
}

/// One lifecycle event of a Module.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    Created,
    Opened(OpenedDuring),
    OpenFailed(OpenedDuring, NtStatus),
    Closed(ClosedDuring),
    Registered(OpenedDuring),
    Unregistered(ClosedDuring),
    Destroyed,
}

/// The `/`-separated names from the top-level Module down to this one.
struct Path<'a>(&'a ModuleObject);

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.0.parent.upgrade() {
            write!(f, "{}/", Path(&parent))?;
        }
        f.write_str(self.0.descriptor.name)
    }
}

/// Writes `event` of `object` to the platform trace.
pub(crate) fn record(object: &ModuleObject, event: Event) {
    let path = Path(object);
    match event {
        Event::Created => trace(format_args!("Module {path} created")),
        Event::Opened(during) => trace(format_args!(
            "Module {path} opened ({})",
            opened_name(during)
        )),
        Event::OpenFailed(during, status) => trace(format_args!(
            "Module {path} open failed ({}) {status:?}",
            opened_name(during)
        )),
        Event::Closed(during) => trace(format_args!("Module {path} closed ({})", during.name())),
        Event::Registered(during) => trace(format_args!(
            "Module {path} registered ({})",
            opened_name(during)
        )),
        Event::Unregistered(during) => trace(format_args!(
            "Module {path} unregistered ({})",
            during.name()
        )),
        Event::Destroyed => trace(format_args!("Module {path} destroyed")),
    }
}

fn trace(message: fmt::Arguments<'_>) {
    Trace::trace(TraceLevel::Information, SOURCE, message);
}

/// Records `created` for `object` and its static subtree, children first (the order they were
/// created in). Called once the tree's parent links are set, so that every path is whole.
pub(crate) fn record_created_tree(object: &ModuleObject) {
    for child in &*object.children {
        record_created_tree(child);
    }
    record(object, Event::Created);
}
