//! The trace: a time-stamped record of callbacks, requests and state changes.
//!
//! Every driver callback made through
//! [`invoke_callback`](crate::verifier::invoke_callback) is recorded, as is every verifier
//! violation and every injected fault; later layers record requests and PnP/power state changes.
//! Each [`TraceEvent`] carries a sequence number, the virtual time, the thread name, its IRQL, the
//! driver being run, a [`TraceKind`], an object name and a text. Tests assert sequences with the
//! filtering helpers ([`Trace::callbacks_for`], [`Trace::texts`]); demos print [`Trace::render`].

use core::fmt::{self, Write as _};
use core::time::Duration;
use std::sync::{Arc, Mutex, PoisonError};

use crate::exec::clock::{ticks_to_duration, Clock};
use crate::exec::context;
use crate::exec::context::Irql;

/// What a trace event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TraceKind {
    /// A driver callback was invoked (text = callback name).
    Callback,
    /// An I/O request event (sent, completed, cancelled, …).
    Request,
    /// A state change (PnP/power state, queue state, …).
    State,
    /// Anything else (violations, injected faults, thread start/exit, remarks by tests).
    Note,
}

impl fmt::Display for TraceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceKind::Callback => "callback",
            TraceKind::Request => "request",
            TraceKind::State => "state",
            TraceKind::Note => "note",
        })
    }
}

/// One trace record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Position in the trace, from 1; strictly increasing.
    pub seq: u64,
    /// Virtual time since boot.
    pub time: Duration,
    /// Name of the thread that recorded it.
    pub thread: String,
    /// IRQL of that thread at the time.
    pub irql: Irql,
    /// Driver on whose behalf the thread ran, if any.
    pub driver: Option<String>,
    /// What the event records.
    pub kind: TraceKind,
    /// The object concerned (timer, queue, request, device, …).
    pub object: String,
    /// The callback name, request action or state description.
    pub text: String,
}

/// The trace of one machine.
#[derive(Debug)]
pub struct Trace {
    clock: Arc<Clock>,
    events: Mutex<Vec<TraceEvent>>,
}

impl Trace {
    pub(crate) fn new(clock: Arc<Clock>) -> Self {
        Trace {
            clock,
            events: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TraceEvent>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an event attributed to the calling thread's current driver.
    pub fn record(&self, kind: TraceKind, object: &str, text: &str) {
        self.record_for(kind, context::current_driver().as_deref(), object, text);
    }

    /// Records an event attributed to `driver`.
    pub fn record_for(&self, kind: TraceKind, driver: Option<&str>, object: &str, text: &str) {
        let time = ticks_to_duration(self.clock.now());
        let thread = context::thread_name();
        let irql = context::irql();
        let mut events = self.lock();
        let seq = events.last().map_or(1, |e| e.seq + 1);
        events.push(TraceEvent {
            seq,
            time,
            thread,
            irql,
            driver: driver.map(str::to_owned),
            kind,
            object: object.to_owned(),
            text: text.to_owned(),
        });
    }

    /// Records a free-form note.
    pub fn note(&self, text: &str) {
        self.record(TraceKind::Note, "", text);
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<TraceEvent> {
        self.lock().clone()
    }

    /// Forgets every event (sequence numbers restart at 1).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The events for which `pred` holds.
    pub fn filter(&self, pred: impl Fn(&TraceEvent) -> bool) -> Vec<TraceEvent> {
        self.lock().iter().filter(|e| pred(e)).cloned().collect()
    }

    /// The callback names invoked for `driver`, in order.
    pub fn callbacks_for(&self, driver: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|e| e.kind == TraceKind::Callback && e.driver.as_deref() == Some(driver))
            .map(|e| e.text.clone())
            .collect()
    }

    /// The texts of the events of `kind` on `object`, in order.
    pub fn texts(&self, kind: TraceKind, object: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|e| e.kind == kind && e.object == object)
            .map(|e| e.text.clone())
            .collect()
    }

    /// The trace as aligned text, one event per line, time in milliseconds:
    ///
    /// ```text
    ///    time(ms)  thread        IRQL            driver        kind      object            text
    ///    1000.000  dpc           DISPATCH_LEVEL  osrfx2        callback  heartbeat         EvtTimerFunc
    /// ```
    pub fn render(&self) -> String {
        let events = self.lock();
        let mut out = format!(
            "{:>12}  {:<14}{:<16}{:<14}{:<10}{:<18}{}\n",
            "time(ms)", "thread", "IRQL", "driver", "kind", "object", "text"
        );
        for e in events.iter() {
            let ms = e.time.as_secs_f64() * 1000.0;
            let _ = writeln!(
                out,
                "{ms:>12.3}  {:<14}{:<16}{:<14}{:<10}{:<18}{}",
                e.thread,
                e.irql.name(),
                e.driver.as_deref().unwrap_or("-"),
                e.kind.to_string(),
                e.object,
                e.text
            );
        }
        out
    }
}
