//! The trace told for a person: what a session's main job prints under each step.
//!
//! A [`Narrator`] turns trace events into lines, one step at a time:
//!
//! - the PnP, power and driver callbacks (`EvtDriver…`, `EvtDevice…`) of the drivers it follows;
//! - the notes of the sources it shows (a driver's own trace lines; DMF's Module lifecycle
//!   lines, whose source is `DMF`), each under its label;
//! - the requests those drivers send, by name (an IOCTL through the caller's naming function),
//!   each with its final status when it comes back — `→ STATUS_SUCCESS` — or, when the step ends
//!   first, `→ pending` (its status follows in the step it completes in); a request sent and
//!   forgotten (passed down) is `→ passed down`.
//!
//! A session may add lines of its own kinds (a bus driver's PnP states, say) with
//! [`Narrator::with_extra`]; they keep their place among the others.
//!
//! Lines start with the virtual time of the event. Work items, timers, DPCs, completion routines
//! and object bookkeeping are left out: they are how a framework is built, not what the driver
//! does.

use std::collections::HashMap;

use crate::trace::{TraceEvent, TraceKind};

/// Names an IOCTL code (`IOCTL_OSRUSBFX2_READ_SWITCHES`), or `None` to show it in hex.
pub type IoctlNamer = fn(u32) -> Option<&'static str>;

/// Tells a trace step by step; see the [module documentation](self).
#[derive(Debug)]
pub struct Narrator {
    drivers: Vec<String>,
    sources: Vec<(String, String)>,
    name_ioctl: IoctlNamer,
    /// The session's own lines, asked first for every event.
    extra: Option<fn(&TraceEvent) -> Option<String>>,
    /// Requests sent and not back yet: object name → (sending driver, request name).
    open: HashMap<String, (String, String)>,
}

impl Narrator {
    /// Follows the callbacks and sends of `drivers` (their service names) and shows the notes of
    /// `sources` as `(source, label)`; `name_ioctl` names IOCTL codes.
    #[must_use]
    pub fn new(drivers: &[&str], sources: &[(&str, &str)], name_ioctl: IoctlNamer) -> Self {
        Narrator {
            drivers: drivers.iter().map(|d| (*d).to_owned()).collect(),
            sources: sources
                .iter()
                .map(|(s, l)| ((*s).to_owned(), (*l).to_owned()))
                .collect(),
            name_ioctl,
            extra: None,
            open: HashMap::new(),
        }
    }

    /// Asks `extra` first for every event: a line it returns is told in the event's place, and
    /// the event is not told otherwise.
    #[must_use]
    pub fn with_extra(mut self, extra: fn(&TraceEvent) -> Option<String>) -> Self {
        self.extra = Some(extra);
        self
    }

    fn follows(&self, driver: Option<&str>) -> Option<String> {
        let driver = driver?;
        self.drivers
            .iter()
            .any(|d| d == driver)
            .then(|| driver.to_owned())
    }

    /// The request named as a person reads it: an IOCTL's name, else kmdf-sim's description.
    fn request_name(&self, what: &str) -> String {
        let code = what
            .strip_prefix("IOCTL 0x")
            .and_then(|hex| u32::from_str_radix(hex, 16).ok());
        match code.and_then(self.name_ioctl) {
            Some(name) => name.to_owned(),
            None => what.to_owned(),
        }
    }

    /// The lines for one step's `events` (in trace order). Requests still out at the end of the
    /// step get a `→ pending` line and are followed into later steps.
    pub fn step(&mut self, events: &[TraceEvent]) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        // Sent in this step and not back yet: object → index of its line.
        let mut sent_here: HashMap<String, usize> = HashMap::new();
        for e in events {
            if let Some(line) = self.extra.and_then(|extra| extra(e)) {
                lines.push(line);
                continue;
            }
            let ms = e.time.as_secs_f64() * 1000.0;
            match e.kind {
                TraceKind::Note => {
                    if let Some((_, label)) = self.sources.iter().find(|(s, _)| *s == e.object) {
                        let text = strip_level(&e.text);
                        lines.push(format!("{ms:>9.3} ms  {label}: {text}"));
                    }
                }
                TraceKind::Callback => {
                    if let Some(driver) = self.follows(e.driver.as_deref()) {
                        if e.text.starts_with("EvtDevice") || e.text.starts_with("EvtDriver") {
                            lines.push(format!("{ms:>9.3} ms  [{driver}] {}", e.text));
                        }
                    }
                }
                TraceKind::Request => {
                    if let Some(rest) = e.text.strip_prefix("sent to ") {
                        let Some(driver) = self.follows(e.driver.as_deref()) else {
                            continue;
                        };
                        let Some((_, what)) = rest.split_once(" (") else {
                            continue;
                        };
                        let (what, forgotten) = match what.strip_suffix(") and forgotten") {
                            Some(what) => (what, true),
                            None => (what.trim_end_matches(')'), false),
                        };
                        let name = self.request_name(what);
                        if forgotten {
                            lines.push(format!("{ms:>9.3} ms  [{driver}] {name} → passed down"));
                        } else {
                            sent_here.insert(e.object.clone(), lines.len());
                            lines.push(format!("{ms:>9.3} ms  [{driver}] {name} → pending"));
                            self.open.insert(e.object.clone(), (driver, name));
                        }
                    } else if let Some(status) =
                        e.text.strip_prefix("returned to its creator with ")
                    {
                        let Some((driver, name)) = self.open.remove(&e.object) else {
                            continue;
                        };
                        let line = format!("{ms:>9.3} ms  [{driver}] {name} → {status}");
                        match sent_here.remove(&e.object) {
                            // Sent and back in this step: one line, at the send's place.
                            Some(at) => {
                                let sent_at = lines[at].split("  [").next().unwrap_or("");
                                lines[at] = format!("{sent_at}  [{driver}] {name} → {status}");
                            }
                            None => lines.push(line),
                        }
                    }
                }
                TraceKind::State => {}
            }
        }
        lines
    }
}

/// A driver's trace line without its level prefix (`[INFO] `, `[WARNING] ` …).
#[must_use]
pub fn strip_level(text: &str) -> &str {
    match text.strip_prefix('[').and_then(|t| t.split_once("] ")) {
        Some((level, rest)) if level.chars().all(|c| c.is_ascii_uppercase()) => rest,
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use super::*;
    use crate::exec::context::Irql;

    fn event(
        seq: u64,
        ms: u64,
        driver: Option<&str>,
        kind: TraceKind,
        object: &str,
        text: &str,
    ) -> TraceEvent {
        TraceEvent {
            seq,
            time: Duration::from_millis(ms),
            thread: "t".into(),
            irql: Irql::Passive,
            driver: driver.map(str::to_owned),
            kind,
            object: object.into(),
            text: text.into(),
        }
    }

    fn name(code: u32) -> Option<&'static str> {
        (code == 0x5500_6018).then_some("IOCTL_READ")
    }

    #[test]
    fn requests_are_told_with_their_status_across_steps() {
        let mut n = Narrator::new(&["bar"], &[("Bar", "Bar"), ("DMF", "DMF")], name);
        let step1 = [
            event(
                1,
                0,
                Some("bar"),
                TraceKind::Callback,
                "dev",
                "EvtDeviceD0Entry(D3Final)",
            ),
            event(
                2,
                0,
                Some("bar"),
                TraceKind::Callback,
                "q",
                "EvtIoDeviceControl",
            ),
            event(
                3,
                0,
                Some("bar"),
                TraceKind::Note,
                "DMF",
                "Module Bar/Target opened (D0Entry)",
            ),
            event(
                4,
                1,
                Some("bar"),
                TraceKind::Request,
                "R#1",
                "sent to T (IOCTL 0x55006018)",
            ),
            event(
                5,
                1,
                None,
                TraceKind::Request,
                "R#1",
                "returned to its creator with STATUS_SUCCESS",
            ),
            event(
                6,
                2,
                Some("bar"),
                TraceKind::Request,
                "R#2",
                "sent to T (IOCTL 0x55006024)",
            ),
            event(
                7,
                2,
                Some("other"),
                TraceKind::Request,
                "R#3",
                "sent to T (IOCTL 0x55006018)",
            ),
            event(
                8,
                2,
                Some("bar"),
                TraceKind::Request,
                "R#4",
                "sent to T (write 4 bytes) and forgotten",
            ),
            event(
                9,
                2,
                Some("bar"),
                TraceKind::Note,
                "Bar",
                "[WARNING] careful",
            ),
        ];
        assert_eq!(
            n.step(&step1),
            [
                "    0.000 ms  [bar] EvtDeviceD0Entry(D3Final)",
                "    0.000 ms  DMF: Module Bar/Target opened (D0Entry)",
                "    1.000 ms  [bar] IOCTL_READ → STATUS_SUCCESS",
                "    2.000 ms  [bar] IOCTL 0x55006024 → pending",
                "    2.000 ms  [bar] write 4 bytes → passed down",
                "    2.000 ms  Bar: careful",
            ]
        );
        let step2 = [event(
            10,
            5,
            None,
            TraceKind::Request,
            "R#2",
            "returned to its creator with STATUS_CANCELLED",
        )];
        assert_eq!(
            n.step(&step2),
            ["    5.000 ms  [bar] IOCTL 0x55006024 → STATUS_CANCELLED"]
        );
        assert!(n.step(&step2).is_empty(), "told once");
    }

    #[test]
    fn extra_lines_keep_their_place() {
        fn states(e: &TraceEvent) -> Option<String> {
            (e.kind == TraceKind::State).then(|| format!("[PnP] {}: {}", e.object, e.text))
        }
        let mut n = Narrator::new(&["bar"], &[("Bar", "Bar")], name).with_extra(states);
        let step = [
            event(1, 0, Some("bar"), TraceKind::Note, "Bar", "first"),
            event(2, 0, None, TraceKind::State, "node", "Started"),
            event(3, 0, Some("bar"), TraceKind::Note, "Bar", "last"),
        ];
        assert_eq!(
            n.step(&step),
            [
                "    0.000 ms  Bar: first",
                "[PnP] node: Started",
                "    0.000 ms  Bar: last"
            ]
        );
    }

    #[test]
    fn level_prefixes_are_stripped() {
        assert_eq!(strip_level("[INFO] x"), "x");
        assert_eq!(strip_level("[x] y"), "[x] y");
        assert_eq!(strip_level("plain"), "plain");
    }
}
