//! Reading the Module lifecycle lines back from a machine's trace, for tests
//! (`dmf_core::module::lifecycle` writes them; docs/trace.md describes the format).

extern crate std;

use std::fmt;
use std::string::{String, ToString};
use std::time::Duration;
use std::vec::Vec;

use kmdf_sim::trace::{TraceEvent, TraceKind};
use kmdf_sim::Machine;

use crate::module::lifecycle::SOURCE;

/// What happened to a Module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModuleAction {
    /// `created`: the Module and its children exist (not open yet).
    Created,
    /// `opened (<when>)`.
    Opened,
    /// `open failed (<when>) <status>`: the Module's open (or the client's
    /// `EvtModuleOnDeviceNotificationOpen`) refused.
    OpenFailed,
    /// `closed (<when>)`.
    Closed,
    /// `registered (<when>)`: a NOTIFY Module registered for its notification.
    Registered,
    /// `unregistered (<when>)`.
    Unregistered,
    /// `destroyed`.
    Destroyed,
}

impl ModuleAction {
    /// The word of the trace line (`opened`, `open failed`, …).
    pub const fn word(self) -> &'static str {
        match self {
            ModuleAction::Created => "created",
            ModuleAction::Opened => "opened",
            ModuleAction::OpenFailed => "open failed",
            ModuleAction::Closed => "closed",
            ModuleAction::Registered => "registered",
            ModuleAction::Unregistered => "unregistered",
            ModuleAction::Destroyed => "destroyed",
        }
    }
}

/// One Module lifecycle line of a machine's trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleEvent {
    /// The trace event's sequence number.
    pub seq: u64,
    /// Virtual time of the event.
    pub time: Duration,
    /// The driver the Module belongs to (the trace event's driver), if any.
    pub driver: Option<String>,
    /// The Module's path: its parents' names and its own, `/`-separated.
    pub path: String,
    /// What happened.
    pub action: ModuleAction,
    /// The phase in parentheses (`D0Entry`, `ReleaseHardware`, `Manual`, …), for opens, closes
    /// and (un)registrations.
    pub during: Option<String>,
    /// The status of a failed open (`STATUS_…`).
    pub status: Option<String>,
}

impl ModuleEvent {
    /// The Module's own name (the last part of its path).
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// Parses a trace event: a note of the source `DMF` whose text (after an optional
    /// `[LEVEL] ` prefix, which the sim backend and kmdf-host's `DbgPrintEx` both write) is a
    /// lifecycle line. `None` for any other event.
    pub fn parse(event: &TraceEvent) -> Option<ModuleEvent> {
        if event.kind != TraceKind::Note || event.object != SOURCE {
            return None;
        }
        let line = strip_level(&event.text).strip_prefix("Module ")?;
        let (path, action, rest) = [
            ModuleAction::OpenFailed,
            ModuleAction::Created,
            ModuleAction::Opened,
            ModuleAction::Closed,
            ModuleAction::Registered,
            ModuleAction::Unregistered,
            ModuleAction::Destroyed,
        ]
        .into_iter()
        .find_map(|action| {
            let word = action.word();
            line.split_once(&std::format!(" {word}"))
                .filter(|(_, rest)| rest.is_empty() || rest.starts_with(' '))
                .map(|(path, rest)| (path, action, rest.trim_start()))
        })?;
        let (during, status) = match rest.strip_prefix('(') {
            Some(r) => {
                let (during, after) = r.split_once(')')?;
                let after = after.trim();
                (
                    Some(during.to_string()),
                    (!after.is_empty()).then(|| after.to_string()),
                )
            }
            None => (None, None),
        };
        Some(ModuleEvent {
            seq: event.seq,
            time: event.time,
            driver: event.driver.clone(),
            path: path.to_string(),
            action,
            during,
            status,
        })
    }
}

/// The line as the framework wrote it, without the source: `Module <path> <action>[ (<when>)]`.
impl fmt::Display for ModuleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Module {} {}", self.path, self.action.word())?;
        if let Some(during) = &self.during {
            write!(f, " ({during})")?;
        }
        if let Some(status) = &self.status {
            write!(f, " {status}")?;
        }
        Ok(())
    }
}

/// A trace note's text without the `[LEVEL] ` prefix the sim backend (and kmdf-host, for a
/// `DbgPrintEx` line of a DMF for Rust driver) puts before the message (kmdf-sim's narrator
/// strips it the same way).
pub use kmdf_sim::narrate::strip_level;

/// Every Module lifecycle event of `machine`'s trace so far, in order.
pub fn module_events(machine: &Machine) -> Vec<ModuleEvent> {
    machine
        .trace()
        .events()
        .iter()
        .filter_map(ModuleEvent::parse)
        .collect()
}

/// The lifecycle lines of `driver`'s Modules (`Module <path> opened (D0Entry)`, …), in order:
/// what a test compares with a list.
pub fn module_lines(machine: &Machine, driver: &str) -> Vec<String> {
    module_events(machine)
        .iter()
        .filter(|e| e.driver.as_deref() == Some(driver))
        .map(ToString::to_string)
        .collect()
}
