//! Callback pictures: a machine's trace drawn as a sequence diagram, as Mermaid text or as a
//! standalone SVG (docs/trace.md).
//!
//! Host code for tests and the samples' runners: it lives in the sim backend (feature `sim`, the
//! one part of dmf-core with `std`) and is never in a driver image, so it allocates freely
//! (`format!`, `String`) — the kernel allocation rule covers driver code, not this.
//!
//! Lifelines: `Applications` (requests applications issue), `KMDF` (the framework and the PnP
//! manager: WDF callbacks), each driver followed by its Modules (from the Module lifecycle lines,
//! `module_events`), and `Board` (the hardware: plug-in, removal and USB completions). Arrows:
//!
//! - WDF callbacks, `KMDF → driver` (`EvtDeviceD0Entry(D3Final)`, `ArrivalNotification`, …);
//!   USB pipe completions `Board → driver`;
//! - Module lifecycle, `driver → Module` (`opened (D0Entry)`, `closed (D0Exit)`, …);
//! - requests, `sender → driver whose queue receives it`, labelled with the IOCTL's name
//!   (`IOCTL_OSRUSBFX2_READ_SWITCHES`) or the request type, and their completion as a dashed
//!   arrow back to the request's first sender, labelled with the status;
//! - the drivers' own trace lines (`dmf::trace!`) as notes over the driver.
//!
//! Left out, so that a picture shows what a driver author reasons about and is the same on every
//! run: `EvtIo*` callbacks (the request arrow shows them), completion routines (the completion
//! arrow does), work items, timers and DPCs (they run on the simulator's service threads, and
//! where they fall between the calling thread's events can depend on timing; the requests they
//! send are drawn), object creation and deletion, queue moves, thread names, IRQLs, object
//! numbers and times.
//!
//! Readability: consecutive identical arrows (or notes) collapse into one marked `×N`, and a
//! long session stops after [`DEFAULT_ITEM_LIMIT`] items with a note of how many were not drawn.

extern crate std;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::format;
use std::path::Path;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use kmdf_sim::fx2::ioctl::osrusbfx2_ioctl_name;
use kmdf_sim::trace::{TraceEvent, TraceKind};

use super::module_events::{strip_level, ModuleEvent};

/// Items (arrows, notes, step headers) drawn before a diagram stops with a note.
pub const DEFAULT_ITEM_LIMIT: usize = 400;

/// A lifeline.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Lifeline {
    Applications,
    Kmdf,
    /// A driver (by name); its Modules follow it.
    Driver(String),
    /// A Module of a driver: (driver, path).
    Module(String, String),
    Board,
}

impl Lifeline {
    fn label(&self) -> String {
        match self {
            Lifeline::Applications => "Applications".to_string(),
            Lifeline::Kmdf => "KMDF".to_string(),
            Lifeline::Driver(name) => name.clone(),
            Lifeline::Module(_, path) => path.clone(),
            Lifeline::Board => "Board".to_string(),
        }
    }

    /// The column order: applications, KMDF, each driver with its Modules (drivers in order of
    /// first appearance, Modules by path, so a parent comes before its children), the board.
    fn rank<'a>(&'a self, drivers: &[String]) -> (usize, usize, &'a str) {
        let driver_rank = |d: &str| drivers.iter().position(|x| x == d).unwrap_or(usize::MAX);
        match self {
            Lifeline::Applications => (0, 0, ""),
            Lifeline::Kmdf => (1, 0, ""),
            Lifeline::Driver(d) => (2 + driver_rank(d), 0, ""),
            Lifeline::Module(d, path) => (2 + driver_rank(d), 1, path),
            Lifeline::Board => (usize::MAX, 0, ""),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    /// An arrow; `reply` draws it dashed.
    Arrow {
        from: usize,
        to: usize,
        label: String,
        reply: bool,
        count: usize,
    },
    /// A note over one lifeline.
    Note {
        over: usize,
        text: String,
        count: usize,
    },
    /// A note across every lifeline (a step of the session, the cap).
    Banner(String),
}

/// One request's route: who sent it first and who has it now.
#[derive(Clone, Debug)]
struct Route {
    origin: usize,
    label: String,
    /// The last hop's sender and label, waiting for the receiving queue.
    pending_from: Option<usize>,
    hop_label: String,
    /// The lifeline that has it.
    holder: Option<usize>,
}

/// A sequence diagram of a trace ([`SequenceDiagram::from_events`]).
#[derive(Clone, Debug)]
pub struct SequenceDiagram {
    /// Lifelines in column order.
    lifelines: Vec<Lifeline>,
    items: Vec<Item>,
    omitted: usize,
}

/// Builds the diagram with lifelines numbered in order of first appearance.
struct Builder {
    lifelines: Vec<Lifeline>,
    drivers: Vec<String>,
    items: Vec<Item>,
    routes: BTreeMap<String, Route>,
    limit: usize,
    omitted: usize,
}

impl Builder {
    fn lifeline(&mut self, l: Lifeline) -> usize {
        if let Lifeline::Driver(d) | Lifeline::Module(d, _) = &l {
            if !self.drivers.contains(d) {
                self.drivers.push(d.clone());
            }
        }
        if let Lifeline::Module(d, _) = &l {
            self.lifeline(Lifeline::Driver(d.clone()));
        }
        if let Some(i) = self.lifelines.iter().position(|x| *x == l) {
            return i;
        }
        self.lifelines.push(l);
        self.lifelines.len() - 1
    }

    fn push(&mut self, item: Item) {
        if let Some(last) = self.items.last_mut() {
            match (last, &item) {
                (
                    Item::Arrow {
                        from,
                        to,
                        label,
                        reply,
                        count,
                    },
                    Item::Arrow {
                        from: f,
                        to: t,
                        label: l,
                        reply: r,
                        ..
                    },
                ) if from == f && to == t && label == l && reply == r => {
                    *count += 1;
                    return;
                }
                (
                    Item::Note { over, text, count },
                    Item::Note {
                        over: o, text: x, ..
                    },
                ) if over == o && text == x => {
                    *count += 1;
                    return;
                }
                _ => {}
            }
        }
        if self.items.len() >= self.limit {
            self.omitted += 1;
            return;
        }
        self.items.push(item);
    }

    fn arrow(&mut self, from: usize, to: usize, label: String, reply: bool) {
        self.push(Item::Arrow {
            from,
            to,
            label,
            reply,
            count: 1,
        });
    }

    fn event(&mut self, e: &TraceEvent) {
        if let Some(m) = ModuleEvent::parse(e) {
            let driver = m
                .driver
                .clone()
                .unwrap_or_else(|| "(no driver)".to_string());
            let from = self.lifeline(Lifeline::Driver(driver.clone()));
            let to = self.lifeline(Lifeline::Module(driver, m.path.clone()));
            let mut label = m.action.word().to_string();
            if let Some(during) = &m.during {
                let _ = write!(label, " ({during})");
            }
            if let Some(status) = &m.status {
                let _ = write!(label, " {status}");
            }
            self.arrow(from, to, label, false);
            return;
        }
        match e.kind {
            TraceKind::Callback => self.callback(e),
            TraceKind::Request => self.request(e),
            TraceKind::State => self.state(e),
            TraceKind::Note => {
                // A driver's own trace line (`dmf::trace!`: a source name, no spaces).
                if let Some(driver) = &e.driver {
                    if !e.object.is_empty()
                        && !e.object.contains(char::is_whitespace)
                        && e.object != "pool"
                    {
                        let over = self.lifeline(Lifeline::Driver(driver.clone()));
                        self.push(Item::Note {
                            over,
                            text: format!("{}: {}", e.object, strip_level(&e.text)),
                            count: 1,
                        });
                    }
                }
            }
        }
    }

    fn callback(&mut self, e: &TraceEvent) {
        let Some(driver) = &e.driver else { return };
        let name = e.text.as_str();
        let left_out = name.starts_with("EvtIo")
            || name == "CompletionRoutine"
            || name.contains("WorkItem")
            || name.contains("Timer")
            || name.contains("Dpc")
            || name == "EvtCleanupCallback" && !e.object.starts_with("WDFDEVICE");
        if left_out {
            return;
        }
        let from = if name.starts_with("EvtUsb") {
            self.lifeline(Lifeline::Board)
        } else {
            self.lifeline(Lifeline::Kmdf)
        };
        let to = self.lifeline(Lifeline::Driver(driver.clone()));
        self.arrow(from, to, name.to_string(), false);
    }

    fn state(&mut self, e: &TraceEvent) {
        // A USB device node (driver unset, a hardware ID as the object) plugged in: the board
        // arrives. (Its removal is drawn by what it causes: kmdf-sim records the node's
        // `SurpriseRemoved` state only once the drivers have finished with it.)
        if e.driver.is_none() && e.object.starts_with("USB\\") && e.text == "plugged in" {
            let from = self.lifeline(Lifeline::Board);
            let to = self.lifeline(Lifeline::Kmdf);
            self.arrow(from, to, "plugged in".to_string(), false);
        }
    }

    fn request(&mut self, e: &TraceEvent) {
        let text = e.text.as_str();
        let id = e.object.clone();
        if let Some(rest) = text.strip_prefix("sent to ") {
            let Some(driver) = &e.driver else { return };
            // kmdf-sim: `sent to <target> (<what>)`, `… and forgotten` for send-and-forget.
            let rest = rest.trim_end_matches(" and forgotten");
            let what = rest
                .rsplit_once(" (")
                .map_or(rest, |(_, w)| w.trim_end_matches(')'));
            let from = self.lifeline(Lifeline::Driver(driver.clone()));
            let label = request_label(what);
            let route = self.routes.entry(id).or_insert(Route {
                origin: from,
                label: label.clone(),
                pending_from: None,
                hop_label: String::new(),
                holder: None,
            });
            if route.holder.is_none_or(|h| h != from) {
                // A new request (or a reused one sent again).
                route.origin = from;
                route.label.clone_from(&label);
            }
            route.pending_from = Some(from);
            route.hop_label = label;
            route.holder = None;
        } else if let Some(rest) = text.strip_prefix("issued by ") {
            // `issued by user: DeviceControl 0x5500A014`.
            let (who, what) = rest.split_once(": ").unwrap_or((rest, ""));
            let label = match what.split_once(' ') {
                Some(("DeviceControl", code)) => request_label(&format!("IOCTL {code}")),
                Some((kind, _)) => kind.to_string(),
                None => what.to_string(),
            };
            let from = self.lifeline(Lifeline::Applications);
            let label = format!("{label} ({who})");
            self.routes.insert(
                id,
                Route {
                    origin: from,
                    label: label.clone(),
                    pending_from: Some(from),
                    hop_label: label,
                    holder: None,
                },
            );
        } else if let Some(queue) = text.strip_prefix("queued in WDFQUEUE ") {
            let to_driver = owner(queue);
            self.receive(&id, to_driver);
        } else if let Some(rest) = text.strip_prefix("completed by ") {
            let (by, status) = rest.split_once(" with ").unwrap_or((rest, ""));
            let status = status.split(',').next().unwrap_or(status).to_string();
            let by = by.strip_prefix("WDFDEVICE ").map(owner);
            if let Some(by) = by {
                // Completed before any queue saw it (a request the receiver took directly).
                self.receive(&id, by);
            }
            let Some(route) = self.routes.get(&id).cloned() else {
                return;
            };
            let from = match by {
                Some(by) => self.lifeline(Lifeline::Driver(by.to_string())),
                None => route.holder.unwrap_or(route.origin),
            };
            if from != route.origin {
                self.arrow(from, route.origin, status, true);
            }
            if let Some(r) = self.routes.get_mut(&id) {
                r.holder = Some(r.origin);
                r.pending_from = None;
            }
        } else if text == "cancel requested" {
            if let Some(route) = self.routes.get(&id).cloned() {
                if let Some(holder) = route.holder.filter(|h| *h != route.origin) {
                    self.arrow(route.origin, holder, "cancel".to_string(), false);
                }
            }
        }
    }

    /// The request `id` reached a queue (or the device) of `driver`: draws the pending hop.
    fn receive(&mut self, id: &str, driver: &str) {
        let to = self.lifeline(Lifeline::Driver(driver.to_string()));
        let Some(route) = self.routes.get_mut(id) else {
            return;
        };
        let Some(from) = route.pending_from.take() else {
            return;
        };
        route.holder = Some(to);
        let label = route.hop_label.clone();
        if from != to {
            self.arrow(from, to, label, false);
        }
    }
}

/// The driver of an object named `<driver>#<n>`.
fn owner(object: &str) -> &str {
    object.split('#').next().unwrap_or(object)
}

/// `IOCTL 0x55006018` → `IOCTL_OSRUSBFX2_READ_SWITCHES` (the FX2 names kmdf-sim knows), other
/// IOCTLs as their code, other request types as kmdf-sim words them (`Create`, `read 4 bytes`).
fn request_label(what: &str) -> String {
    if let Some(code) = what.strip_prefix("IOCTL ") {
        let digits = code.trim_start_matches("0x").trim_start_matches("0X");
        if let Ok(code) = u32::from_str_radix(digits, 16) {
            return osrusbfx2_ioctl_name(code)
                .map_or_else(|| format!("IOCTL {code:#010X}"), ToString::to_string);
        }
    }
    what.to_string()
}

impl SequenceDiagram {
    /// The diagram of `events` (a machine's trace, `Trace::events`), with a banner before the
    /// events of each step of `steps` — `(last_seq, title)`: the step's events are those after the
    /// previous step's `last_seq` up to its own (the samples' `Step::last_seq`) — and at most
    /// [`DEFAULT_ITEM_LIMIT`] items.
    pub fn from_events(events: &[TraceEvent], steps: &[(u64, &str)]) -> SequenceDiagram {
        Self::with_limit(events, steps, DEFAULT_ITEM_LIMIT)
    }

    /// [`from_events`](Self::from_events) with at most `limit` items.
    pub fn with_limit(
        events: &[TraceEvent],
        steps: &[(u64, &str)],
        limit: usize,
    ) -> SequenceDiagram {
        let mut b = Builder {
            lifelines: Vec::new(),
            drivers: Vec::new(),
            items: Vec::new(),
            routes: BTreeMap::new(),
            limit,
            omitted: 0,
        };
        b.lifeline(Lifeline::Kmdf);
        let mut step = 0;
        let mut step_started = false;
        for e in events {
            while step < steps.len() && e.seq > steps[step].0 {
                if !step_started {
                    // A step with no events of its own still gets its banner.
                    b.push(Item::Banner(format!("{}. {}", step + 1, steps[step].1)));
                }
                step += 1;
                step_started = false;
            }
            if step < steps.len() && !step_started {
                step_started = true;
                b.push(Item::Banner(format!("{}. {}", step + 1, steps[step].1)));
            }
            b.event(e);
        }
        // Steps with no events at all still get their banner.
        while step < steps.len() {
            if !step_started {
                b.push(Item::Banner(format!("{}. {}", step + 1, steps[step].1)));
            }
            step += 1;
            step_started = false;
        }
        if b.omitted > 0 {
            let note = format!(
                "… {} more events not drawn (the picture stops at {} items)",
                b.omitted, b.limit
            );
            b.items.push(Item::Banner(note));
        }
        // Column order; items renumbered.
        let drivers = b.drivers.clone();
        let mut order: Vec<usize> = (0..b.lifelines.len()).collect();
        order.sort_by(|&i, &j| {
            (b.lifelines[i].rank(&drivers), i).cmp(&(b.lifelines[j].rank(&drivers), j))
        });
        let mut column = vec![0; order.len()];
        for (c, &i) in order.iter().enumerate() {
            column[i] = c;
        }
        let lifelines = order.iter().map(|&i| b.lifelines[i].clone()).collect();
        let items = b
            .items
            .into_iter()
            .map(|item| match item {
                Item::Arrow {
                    from,
                    to,
                    label,
                    reply,
                    count,
                } => Item::Arrow {
                    from: column[from],
                    to: column[to],
                    label,
                    reply,
                    count,
                },
                Item::Note { over, text, count } => Item::Note {
                    over: column[over],
                    text,
                    count,
                },
                banner @ Item::Banner(_) => banner,
            })
            .collect();
        SequenceDiagram {
            lifelines,
            items,
            omitted: b.omitted,
        }
    }

    /// The lifelines' labels, left to right.
    pub fn lifelines(&self) -> Vec<String> {
        self.lifelines.iter().map(Lifeline::label).collect()
    }

    /// Every arrow and note as one line of text (`switchbar -> DeviceInterfaceTarget: opened
    /// (Manual)`, `KMDF -> switchbar: EvtDeviceD0Entry(D3Final)`, `note switchbar: …`, `== 2. …`),
    /// for tests that assert on the picture's content.
    pub fn lines(&self) -> Vec<String> {
        let name = |i: usize| self.lifelines[i].label();
        self.items
            .iter()
            .map(|item| match item {
                Item::Arrow {
                    from,
                    to,
                    label,
                    reply,
                    count,
                } => format!(
                    "{} {} {}: {}",
                    name(*from),
                    if *reply { "-->" } else { "->" },
                    name(*to),
                    with_count(label, *count)
                ),
                Item::Note { over, text, count } => {
                    format!("note {}: {}", name(*over), with_count(text, *count))
                }
                Item::Banner(text) => format!("== {text}"),
            })
            .collect()
    }

    /// Events left out because the picture reached its item limit.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// The diagram as Mermaid text (`sequenceDiagram`).
    pub fn mermaid(&self) -> String {
        let mut out = String::from("sequenceDiagram\n");
        for (i, l) in self.lifelines.iter().enumerate() {
            let kind = match l {
                Lifeline::Applications => "actor",
                _ => "participant",
            };
            let _ = writeln!(out, "    {kind} L{i} as {}", mermaid_text(&l.label()));
        }
        let last = self.lifelines.len().saturating_sub(1);
        for item in &self.items {
            match item {
                Item::Arrow {
                    from,
                    to,
                    label,
                    reply,
                    count,
                } => {
                    let _ = writeln!(
                        out,
                        "    L{from}{}L{to}: {}",
                        if *reply { "-->>" } else { "->>" },
                        mermaid_text(&with_count(label, *count))
                    );
                }
                Item::Note { over, text, count } => {
                    let _ = writeln!(
                        out,
                        "    Note over L{over}: {}",
                        mermaid_text(&with_count(text, *count))
                    );
                }
                Item::Banner(text) => {
                    let _ = writeln!(out, "    Note over L0,L{last}: {}", mermaid_text(text));
                }
            }
        }
        out
    }

    /// The diagram as a standalone SVG document.
    pub fn svg(&self) -> String {
        let (xs, width) = self.columns();
        let top = MARGIN + HEAD_H;
        let height = top + ROW_H * (float(self.items.len()) + 1.0) + HEAD_H + MARGIN;
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="monospace" font-size="11">"#
        );
        out.push_str(
            "<defs><marker id=\"head\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
             markerWidth=\"8\" markerHeight=\"8\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" \
             fill=\"#333\"/></marker></defs>\n",
        );
        let _ = writeln!(
            out,
            r##"<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="#fff"/>"##
        );
        self.svg_lifelines(&mut out, &xs, top, height - MARGIN - HEAD_H);
        for (row, item) in self.items.iter().enumerate() {
            let y = top + ROW_H * (float(row) + 1.0);
            svg_item(&mut out, item, &xs, y, width);
        }
        out.push_str("</svg>\n");
        out
    }

    /// Each lifeline's x and the picture's width: neighbouring columns far enough apart for
    /// their heads and for every arrow's label and note between them.
    fn columns(&self) -> (Vec<f64>, f64) {
        let n = self.lifelines.len().max(1);
        let mut gaps = vec![MIN_GAP; n - 1];
        for (i, l) in self.lifelines.iter().enumerate().skip(1) {
            let need = f64::midpoint(
                text_width(&l.label()),
                text_width(&self.lifelines[i - 1].label()),
            ) + 24.0;
            gaps[i - 1] = gaps[i - 1].max(need);
        }
        let mut spans: Vec<(usize, usize, f64)> = Vec::new();
        for item in &self.items {
            match item {
                Item::Arrow {
                    from,
                    to,
                    label,
                    count,
                    ..
                } if from != to => {
                    let (a, b) = if from < to {
                        (*from, *to)
                    } else {
                        (*to, *from)
                    };
                    spans.push((a, b, text_width(&with_count(label, *count)) + 24.0));
                }
                Item::Note { over, text, count } => {
                    // A note is centred on its lifeline: half its width on each side.
                    let half = text_width(&with_count(text, *count)) / 2.0 + 18.0;
                    if *over > 0 {
                        spans.push((*over - 1, *over, half));
                    }
                    if *over + 1 < n {
                        spans.push((*over, *over + 1, half));
                    }
                }
                _ => {}
            }
        }
        spans.sort_by_key(|&(a, b, _)| b - a);
        for (a, b, need) in spans {
            let have: f64 = gaps[a..b].iter().sum();
            if have < need {
                let extra = (need - have) / float(b - a);
                for g in &mut gaps[a..b] {
                    *g += extra;
                }
            }
        }
        let half_head = |l: Option<&Lifeline>| {
            (text_width(&l.map(Lifeline::label).unwrap_or_default()) / 2.0 + 12.0).max(60.0)
        };
        let mut xs = Vec::with_capacity(n);
        let mut x = MARGIN + half_head(self.lifelines.first());
        xs.push(x);
        for gap in gaps {
            x += gap;
            xs.push(x);
        }
        (xs, x + half_head(self.lifelines.last()) + MARGIN)
    }

    fn svg_lifelines(&self, out: &mut String, xs: &[f64], top: f64, bottom: f64) {
        for (l, &x) in self.lifelines.iter().zip(xs) {
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#999" stroke-dasharray="4 3"/>"##
            );
            let label = l.label();
            let w = text_width(&label) + 16.0;
            let fill = match l {
                Lifeline::Module(..) => "#e8f1fb",
                Lifeline::Driver(_) => "#fdf0d5",
                _ => "#eeeeee",
            };
            for y in [MARGIN, bottom] {
                let _ = writeln!(
                    out,
                    r##"<rect x="{:.1}" y="{y:.1}" width="{w:.1}" height="{HEAD_H:.1}" rx="3" fill="{fill}" stroke="#555"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                    x - w / 2.0,
                    y + HEAD_H / 2.0 + 4.0,
                    xml_text(&label)
                );
            }
        }
    }

    /// The diagram for a file named `path`: SVG for `.svg`, Mermaid for `.mmd`, and Mermaid in a
    /// ```` ```mermaid ```` block for `.md`; `None` for any other extension.
    pub fn render_for(&self, path: &Path) -> Option<String> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("svg") => Some(self.svg()),
            Some("mmd") => Some(self.mermaid()),
            Some("md") => Some(format!("```mermaid\n{}```\n", self.mermaid())),
            _ => None,
        }
    }

    /// Writes [`render_for`](Self::render_for) to `path`.
    ///
    /// # Errors
    ///
    /// An unknown extension (`InvalidInput`), or the write's error.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = self.render_for(path).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{}: a diagram file ends in .svg (SVG), .mmd or .md (Mermaid)",
                    path.display()
                ),
            )
        })?;
        std::fs::write(path, text)
    }
}

/// Whether `path` names a file [`SequenceDiagram::write`] can write (`.svg`, `.mmd`, `.md`).
pub fn is_diagram_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("svg" | "mmd" | "md")
    )
}

/// The environment variable that makes [`SequenceDiagram::check_file`] and
/// [`SequenceDiagram::check_embedded`] rewrite the committed pictures instead of comparing.
pub const UPDATE_VARIABLE: &str = "DMF_UPDATE_DIAGRAMS";

fn updating() -> bool {
    std::env::var_os(UPDATE_VARIABLE).is_some_and(|v| v == "1")
}

impl SequenceDiagram {
    /// Checks that the file at `path` holds this diagram ([`render_for`](Self::render_for) its
    /// extension); with `DMF_UPDATE_DIAGRAMS=1` in the environment, writes it instead. `how` is
    /// the command that regenerates it, for the message.
    ///
    /// # Errors
    ///
    /// A message naming the file and the first differing line, or a read or write error.
    pub fn check_file(&self, path: &Path, how: &str) -> Result<(), String> {
        let expected = self
            .render_for(path)
            .ok_or_else(|| format!("{}: not a .svg, .mmd or .md file", path.display()))?;
        if updating() {
            return std::fs::write(path, expected)
                .map_err(|e| format!("cannot write {}: {e}", path.display()));
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        compare(&committed, &expected, &path.display().to_string(), how)
    }

    /// Checks that the Markdown file at `path` embeds this diagram's Mermaid text in a
    /// ```` ```mermaid ```` block between the lines `<!-- diagram: NAME -->` and
    /// `<!-- /diagram: NAME -->`; with `DMF_UPDATE_DIAGRAMS=1`, rewrites that block instead.
    ///
    /// # Errors
    ///
    /// Missing markers, or a message naming the file and the first differing line.
    pub fn check_embedded(&self, path: &Path, name: &str, how: &str) -> Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let begin = format!("<!-- diagram: {name} -->\n");
        let end = format!("<!-- /diagram: {name} -->");
        let (Some(b), Some(e)) = (text.find(&begin), text.find(&end)) else {
            return Err(format!(
                "{} has no `{}` … `{end}` lines around the {name} diagram",
                path.display(),
                begin.trim_end()
            ));
        };
        let start = b + begin.len();
        if e < start {
            return Err(format!(
                "{}: the {name} markers are out of order",
                path.display()
            ));
        }
        let expected = format!("```mermaid\n{}```\n", self.mermaid());
        if updating() {
            let mut updated = String::from(&text[..start]);
            updated.push_str(&expected);
            updated.push_str(&text[e..]);
            return std::fs::write(path, updated)
                .map_err(|e| format!("cannot write {}: {e}", path.display()));
        }
        compare(
            &text[start..e],
            &expected,
            &format!("the {name} diagram in {}", path.display()),
            how,
        )
    }
}

fn compare(committed: &str, expected: &str, what: &str, how: &str) -> Result<(), String> {
    if committed == expected {
        return Ok(());
    }
    let line = committed
        .lines()
        .zip(expected.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| committed.lines().count().min(expected.lines().count()));
    Err(format!(
        "{what} is out of date: the session's picture changed (first difference at line {}: \
         committed {:?}, now {:?}). Regenerate it with `{UPDATE_VARIABLE}=1 {how}` and commit \
         the result.",
        line + 1,
        committed.lines().nth(line).unwrap_or("<end>"),
        expected.lines().nth(line).unwrap_or("<end>"),
    ))
}

const CHAR_WIDTH: f64 = 6.6;
const MARGIN: f64 = 20.0;
const HEAD_H: f64 = 34.0;
const ROW_H: f64 = 26.0;
const MIN_GAP: f64 = 120.0;

/// `n` as a coordinate factor (pictures have far fewer than 2³² rows).
fn float(n: usize) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The drawn width of `s` in the picture's monospace font.
fn text_width(s: &str) -> f64 {
    float(s.chars().count()) * CHAR_WIDTH
}

/// One arrow, note or banner of the SVG, on the row at `y`.
fn svg_item(out: &mut String, item: &Item, xs: &[f64], y: f64, width: f64) {
    match item {
        Item::Arrow {
            from,
            to,
            label,
            reply,
            count,
        } => {
            let (x1, x2) = (xs[*from], xs[*to]);
            let dash = if *reply {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            };
            let _ = writeln!(
                out,
                r##"<line x1="{x1:.1}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="#333"{dash} marker-end="url(#head)"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                f64::midpoint(x1, x2),
                y - 4.0,
                xml_text(&with_count(label, *count))
            );
        }
        Item::Note { over, text, count } => {
            let text = with_count(text, *count);
            let w = text_width(&text) + 16.0;
            let _ = writeln!(
                out,
                r##"<rect x="{:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="#fff8c5" stroke="#b59f3b"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                xs[*over] - w / 2.0,
                y - ROW_H / 2.0 - 1.0,
                ROW_H - 4.0,
                xs[*over],
                y + 2.0,
                xml_text(&text)
            );
        }
        Item::Banner(text) => {
            let _ = writeln!(
                out,
                r##"<rect x="{MARGIN:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#e6e6e6" stroke="#aaa"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"##,
                y - ROW_H / 2.0 - 1.0,
                width - 2.0 * MARGIN,
                ROW_H - 4.0,
                width / 2.0,
                y + 2.0,
                xml_text(text)
            );
        }
    }
}

fn with_count(text: &str, count: usize) -> String {
    if count > 1 {
        format!("{text} ×{count}")
    } else {
        text.to_string()
    }
}

/// Text Mermaid prints as is: its separators and entity syntax replaced.
fn mermaid_text(text: &str) -> String {
    text.replace('#', "#35;")
        .replace(';', ",")
        .replace("#35,", "#35;")
        .replace("->", "→")
        .replace('<', "#60;")
        .replace('>', "#62;")
}

fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
