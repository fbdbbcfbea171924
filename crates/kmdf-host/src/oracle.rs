//! C DMF as the oracle: one scripted session played three times — with Microsoft's C DMF image,
//! with our linked image and with our sim build — each run reduced to a normalised trace per
//! step, and the runs compared step by step.
//!
//! A step's normalised trace holds what both implementations must agree on, and nothing of how
//! each is built:
//! - **board**: the switch and light-bar bytes after the step, and whether the board is plugged
//!   in;
//! - **callbacks**: the WDF callbacks kmdf-sim delivered to the driver under test, in order —
//!   the PnP, power, file and I/O-queue ones (`EvtDriver…`, `EvtDevice…`, `EvtIo…`,
//!   `EvtFile…`); object cleanup, completion routines, timers and work items are how a framework
//!   is built, not what the driver does, and are left out;
//! - **requests**: the requests the driver sent, as `IOCTL_OSRUSBFX2_READ_SWITCHES ->
//!   STATUS_SUCCESS`, each distinct one once, in the order first sent (the step's story, not
//!   its retries); a request sent and forgotten (passed down) has no status;
//! - **applications**: what each application's I/O returned (the filter session's).
//!
//! Every difference between the C run and ours is either fixed in ours or written down in
//! `docs/cdmf-oracle.md` as a deliberate deviation with its reason; [`documented`] reads that
//! list, and the runner (`kmdf-host --compare`) fails on a difference it does not cover.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

use kmdf_sim::fx2::ioctl::osrusbfx2_ioctl_name;
use kmdf_sim::trace::{TraceEvent, TraceKind};
use kmdf_sim::Machine;

/// One step of a session, as the sample recorded it.
#[derive(Clone, Debug)]
pub struct RawStep {
    /// What was done.
    pub title: String,
    /// Switch byte after the step.
    pub switches: u8,
    /// Light-bar byte after the step.
    pub bar: u8,
    /// Whether the board is plugged in.
    pub connected: bool,
    /// The step's printed lines (the applications' results are taken from them).
    pub lines: Vec<String>,
    /// The machine's last trace sequence number at the end of the step.
    pub last_seq: u64,
}

/// One step, normalised (see the [module documentation](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What was done.
    pub title: String,
    /// `switches XX, bar YY, plugged in|unplugged`.
    pub board: String,
    /// The driver's WDF callbacks.
    pub callbacks: Vec<String>,
    /// The requests the driver sent, with how they ended.
    pub requests: Vec<String>,
    /// The applications' results.
    pub applications: Vec<String>,
}

/// One run of a session.
#[derive(Clone, Debug)]
pub struct Run {
    /// Which build ran (`C DMF image`, `our image`, `our sim build`).
    pub label: String,
    /// The normalised steps.
    pub steps: Vec<Step>,
    /// The verifier's verdict at the end.
    pub verdict: Result<String, String>,
}

/// Which part of a step differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Aspect {
    /// Step titles (the sessions did not play the same script).
    Title,
    /// The board bytes.
    Board,
    /// The driver's WDF callbacks.
    Callbacks,
    /// The requests the driver sent.
    Requests,
    /// The applications' results.
    Applications,
}

impl Aspect {
    /// The word used in `docs/cdmf-oracle.md`.
    pub fn name(self) -> &'static str {
        match self {
            Aspect::Title => "title",
            Aspect::Board => "board",
            Aspect::Callbacks => "callbacks",
            Aspect::Requests => "requests",
            Aspect::Applications => "applications",
        }
    }
}

/// A difference between the C run and ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// 1-based step number.
    pub step: usize,
    /// The step's title.
    pub title: String,
    /// What differs.
    pub aspect: Aspect,
    /// The C run's value.
    pub c: String,
    /// Ours.
    pub ours: String,
}

fn is_driver_callback(text: &str) -> bool {
    ["EvtDriver", "EvtDevice", "EvtIo", "EvtFile"]
        .iter()
        .any(|p| text.starts_with(p))
}

fn request_name(what: &str) -> String {
    let code = what
        .strip_prefix("IOCTL 0x")
        .and_then(|hex| u32::from_str_radix(hex, 16).ok());
    match code.and_then(osrusbfx2_ioctl_name) {
        Some(name) => name.to_owned(),
        None => what.to_owned(),
    }
}

/// Normalises the steps of one run of `service` on `machine`.
pub fn normalize(machine: &Machine, service: &str, raw: &[RawStep]) -> Vec<Step> {
    let events = machine.trace().events();
    let mut steps: Vec<Step> = raw
        .iter()
        .map(|r| Step {
            title: r.title.clone(),
            board: format!(
                "switches {:02X}, bar {:02X}, {}",
                r.switches,
                r.bar,
                if r.connected {
                    "plugged in"
                } else {
                    "unplugged"
                }
            ),
            callbacks: Vec::new(),
            requests: Vec::new(),
            applications: r
                .lines
                .iter()
                .filter_map(|l| l.split_once("application: ").map(|(_, r)| r.to_owned()))
                .collect(),
        })
        .collect();
    let step_of = |e: &TraceEvent| raw.iter().position(|r| e.seq <= r.last_seq);
    // Open sends per request object: (step, index in that step's requests).
    let mut open: BTreeMap<String, VecDeque<(usize, usize)>> = BTreeMap::new();
    for e in &events {
        let Some(at) = step_of(e) else { continue };
        match e.kind {
            TraceKind::Callback
                if e.driver.as_deref() == Some(service) && is_driver_callback(&e.text) =>
            {
                steps[at].callbacks.push(e.text.clone());
            }
            TraceKind::Request => {
                if e.driver.as_deref() == Some(service) {
                    if let Some((_, what)) = e.text.split_once(" (") {
                        if e.text.starts_with("sent to ") {
                            let what = what.trim_end_matches(" and forgotten");
                            let what = what.trim_end_matches(')');
                            steps[at].requests.push(request_name(what));
                            open.entry(e.object.clone())
                                .or_default()
                                .push_back((at, steps[at].requests.len() - 1));
                            continue;
                        }
                    }
                }
                if let Some(status) = e.text.strip_prefix("returned to its creator with ") {
                    if let Some((s, i)) = open.get_mut(&e.object).and_then(VecDeque::pop_front) {
                        let entry = &mut steps[s].requests[i];
                        *entry = format!("{entry} -> {status}");
                    }
                }
            }
            _ => {}
        }
    }
    for step in &mut steps {
        let mut seen = std::collections::BTreeSet::new();
        step.requests.retain(|r| seen.insert(r.clone()));
    }
    steps
}

/// The differences between the C run and ours, step by step.
pub fn compare(c: &Run, ours: &Run) -> Vec<Difference> {
    let mut out = Vec::new();
    let n = c.steps.len().max(ours.steps.len());
    let empty = Step {
        title: "(no such step)".to_owned(),
        board: String::new(),
        callbacks: Vec::new(),
        requests: Vec::new(),
        applications: Vec::new(),
    };
    for i in 0..n {
        let a = c.steps.get(i).unwrap_or(&empty);
        let b = ours.steps.get(i).unwrap_or(&empty);
        let mut push = |aspect: Aspect, x: String, y: String| {
            if x != y {
                out.push(Difference {
                    step: i + 1,
                    title: b.title.clone(),
                    aspect,
                    c: x,
                    ours: y,
                });
            }
        };
        push(Aspect::Title, a.title.clone(), b.title.clone());
        push(Aspect::Board, a.board.clone(), b.board.clone());
        push(
            Aspect::Callbacks,
            a.callbacks.join(", "),
            b.callbacks.join(", "),
        );
        push(
            Aspect::Requests,
            a.requests.join(", "),
            b.requests.join(", "),
        );
        push(
            Aspect::Applications,
            a.applications.join(" | "),
            b.applications.join(" | "),
        );
    }
    out
}

/// A deviation `docs/cdmf-oracle.md` documents: in its "Deliberate deviations" section, each
/// `` `scenario` step N `aspect` `` (`step *` for every step) names one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deviation {
    /// `switchbar` or `filter`.
    pub scenario: String,
    /// The step, or `None` for every step.
    pub step: Option<usize>,
    /// The aspect's name.
    pub aspect: String,
}

/// The deviations documented in `text` (the deviations document).
pub fn documented(text: &str) -> Vec<Deviation> {
    let Some(start) = text.find("## Deliberate deviations") else {
        return Vec::new();
    };
    let section = &text[start + 2..];
    let section = section.find("\n## ").map_or(section, |end| &section[..end]);
    let mut out = Vec::new();
    let mut rest = section;
    while let Some(at) = rest.find("` step ") {
        let before = &rest[..at];
        let after = &rest[at + "` step ".len()..];
        rest = after;
        let Some(open) = before.rfind('`') else {
            continue;
        };
        let scenario = &before[open + 1..];
        let Some((step, tail)) = after.split_once(" `") else {
            continue;
        };
        let Some((aspect, _)) = tail.split_once('`') else {
            continue;
        };
        let step = if step == "*" {
            None
        } else {
            match step.parse() {
                Ok(n) => Some(n),
                Err(_) => continue,
            }
        };
        if scenario.is_empty() || scenario.contains(char::is_whitespace) {
            continue;
        }
        out.push(Deviation {
            scenario: scenario.to_owned(),
            step,
            aspect: aspect.to_owned(),
        });
    }
    out
}

/// The differences `text` records as fixed (`` - fixed `scenario` step N `aspect`: … ``).
pub fn fixed_count(text: &str) -> usize {
    text.lines()
        .filter(|l| l.trim_start().starts_with("- fixed `"))
        .count()
}

/// Whether `difference` of `scenario` is among `deviations`.
pub fn is_documented(scenario: &str, difference: &Difference, deviations: &[Deviation]) -> bool {
    deviations.iter().any(|d| {
        d.scenario == scenario
            && d.aspect == difference.aspect.name()
            && d.step.is_none_or(|s| s == difference.step)
    })
}

/// The side-by-side report of `runs` (the first is the C run), with the differences between the
/// first and the second marked.
pub fn report(scenario: &str, runs: &[&Run], differences: &[Difference]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== {scenario}: {} ==",
        runs.iter()
            .map(|r| r.label.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let steps = runs.iter().map(|r| r.steps.len()).max().unwrap_or(0);
    for i in 0..steps {
        let title = runs
            .iter()
            .find_map(|r| r.steps.get(i).map(|s| s.title.as_str()))
            .unwrap_or("");
        let _ = writeln!(out, "-- step {}: {title}", i + 1);
        for (aspect, get) in [
            (
                Aspect::Board,
                (|s: &Step| s.board.clone()) as fn(&Step) -> String,
            ),
            (Aspect::Callbacks, |s: &Step| s.callbacks.join(", ")),
            (Aspect::Requests, |s: &Step| s.requests.join(", ")),
            (Aspect::Applications, |s: &Step| s.applications.join(" | ")),
        ] {
            let marked = differences
                .iter()
                .any(|d| d.step == i + 1 && d.aspect == aspect);
            let values: Vec<String> = runs
                .iter()
                .map(|r| r.steps.get(i).map(get).unwrap_or_default())
                .collect();
            if values.iter().all(String::is_empty) {
                continue;
            }
            let flag = if marked { "≠" } else { " " };
            for (run, value) in runs.iter().zip(&values) {
                let _ = writeln!(
                    out,
                    "  {flag} {:<12} {:<15} {value}",
                    aspect.name(),
                    run.label
                );
            }
        }
    }
    for run in runs {
        let verdict = match &run.verdict {
            Ok(summary) => summary.clone(),
            Err(problems) => format!("NOT CLEAN: {problems}"),
        };
        let _ = writeln!(out, "verdict ({}): {verdict}", run.label);
    }
    out
}

/// One step of a sample session, whichever sample (both samples' `Step` have these fields).
macro_rules! raw_steps {
    ($steps:expr) => {
        $steps
            .iter()
            .map(|st| RawStep {
                title: st.title.clone(),
                switches: st.switches,
                bar: st.bar,
                connected: st.connected,
                lines: st.trace.clone(),
                last_seq: st.last_seq,
            })
            .collect::<Vec<RawStep>>()
    };
}

/// SwitchBar's scripted session with `install` as the package `switchbar`, normalised.
pub fn switchbar_run(label: &str, install: &dyn Fn(&Machine)) -> Run {
    let s = switchbar::session::Session::scripted_with(false, install);
    Run {
        label: label.to_owned(),
        steps: normalize(&s.machine, "switchbar", &raw_steps!(s.steps)),
        verdict: s.verdict(),
    }
}

/// The OSR FX2 filter's scripted session with `install` as the package `osrfx2filter`,
/// normalised.
pub fn filter_run(label: &str, install: &dyn Fn(&Machine)) -> Run {
    let s = osrfx2_filter::session::Session::scripted_with(install);
    Run {
        label: label.to_owned(),
        steps: normalize(
            &s.machine,
            osrfx2_filter::session::FILTER,
            &raw_steps!(s.steps),
        ),
        verdict: s.verdict(),
    }
}

/// Plays a session labelled by the first argument with the driver package installed by the
/// second.
pub type PlaySession = fn(&str, &dyn Fn(&Machine)) -> Run;

/// A scenario the oracle compares: its name, the C DMF image and ours (file names under
/// `target/cdmf-oracle` and `target/kmdf-check`), the service, and how to run it.
#[derive(Clone, Copy)]
pub struct Scenario {
    /// `switchbar` or `filter`.
    pub name: &'static str,
    /// Microsoft's C DMF sample image.
    pub c_image: &'static str,
    /// Our image.
    pub our_image: &'static str,
    /// The driver package the session installs.
    pub service: &'static str,
    /// Plays the session with an installer.
    pub run: PlaySession,
    /// Installs our sim build.
    pub sim_install: fn(&Machine),
}

impl core::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The two scenarios: SwitchBar (C DMF's `SwitchBar`, ours `samples/switchbar`) and the filter
/// (C DMF's `SwitchBar4`, ours `samples/osrfx2-filter`).
pub const SCENARIOS: [Scenario; 2] = [
    Scenario {
        name: "switchbar",
        c_image: "SwitchBar1.sys",
        our_image: "switchbar.sys",
        service: "switchbar",
        run: switchbar_run,
        sim_install: switchbar::session::install,
    },
    Scenario {
        name: "filter",
        c_image: "SwitchBar4.sys",
        our_image: "osrfx2_filter.sys",
        service: osrfx2_filter::session::FILTER,
        run: filter_run,
        sim_install: osrfx2_filter::session::install,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn step(title: &str, board: &str, requests: &[&str]) -> Step {
        Step {
            title: title.to_owned(),
            board: board.to_owned(),
            callbacks: vec!["EvtDeviceD0Entry(D3Final)".to_owned()],
            requests: requests.iter().map(|r| (*r).to_owned()).collect(),
            applications: Vec::new(),
        }
    }

    #[test]
    fn differences_are_found_per_step_and_aspect_and_matched_to_the_document() {
        let c = Run {
            label: "C".into(),
            steps: vec![
                step(
                    "plug",
                    "switches 05, bar 05, plugged in",
                    &["A -> STATUS_SUCCESS"],
                ),
                step("flip", "switches 07, bar 07, plugged in", &[]),
            ],
            verdict: Ok(String::new()),
        };
        let ours = Run {
            label: "ours".into(),
            steps: vec![
                step(
                    "plug",
                    "switches 05, bar 05, plugged in",
                    &["A -> STATUS_SUCCESS", "B -> pending"],
                ),
                step("flip", "switches 07, bar 07, plugged in", &[]),
            ],
            verdict: Ok(String::new()),
        };
        let d = compare(&c, &ours);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].step, d[0].aspect), (1, Aspect::Requests));
        let doc = "intro\n## Fixed\n- fixed `switchbar` step 1 `board`: was wrong.\n\
                   ## Deliberate deviations\n- `switchbar` step 1 `requests`: one more read.\n\
                   - `filter` step * `callbacks`, `filter` step 2 `board`: reason\n- not an entry\n\
                   ## After\n- `switchbar` step 9 `board`: not in the section\n";
        let deviations = documented(doc);
        assert_eq!(deviations.len(), 3, "{deviations:?}");
        assert_eq!(deviations[2].step, Some(2));
        assert_eq!(fixed_count(doc), 1);
        assert!(is_documented("switchbar", &d[0], &deviations));
        assert!(!is_documented("filter", &d[0], &deviations));
        let text = report("switchbar", &[&c, &ours], &d);
        assert!(text.contains("≠ requests"), "{text}");
        assert!(text.contains("  board"), "{text}");
    }
}
