//! Allocation-failure sweep of every Module of the library: for each Module, one scenario —
//! creation, open (and the start of the device it needs), the first Method calls or the first
//! I/O, then close, destroy and removal — runs with its 1st, 2nd, 3rd, … allocation (pool or heap,
//! the framework's own included) failing, one per run, until a run reaches no armed failure
//! (`dmf_core::platform::simulator::alloc_sweep`). Every run goes on to the end whatever failed;
//! it must end with a clean verifier verdict and no heap block left, and every failure a caller
//! saw must be `STATUS_INSUFFICIENT_RESOURCES` or a status that follows from it (a Module or a
//! device that did not open answers `STATUS_INVALID_DEVICE_STATE`, `STATUS_NO_SUCH_DEVICE`, …).
//!
//! One `#[test]` in this binary: heap blocks are counted process-wide. The problems of every
//! Module are collected and listed together.
#![cfg(feature = "sim")]
#![allow(clippy::too_many_lines)]

mod driver_support;

use std::any::Any;
use std::fmt::{self, Write as _};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dmf_core::device::{container_driver_config, DmfDevice, DmfDeviceInit};
use dmf_core::module::{
    CollectionConfig, Handled, IoRequest, Module, ModuleCollection, ModuleInit, ModuleSpec,
    NoParent,
};
use dmf_core::platform::contract::device::{DeviceAttributes, Guid, PlatformDevice};
use dmf_core::platform::contract::io::{PlatformIoTarget, PlatformRequest, QueueDispatch};
use dmf_core::platform::simulator::{self, alloc_sweep, CountingAllocator};
use dmf_core::platform::{
    Device, DriverConfig, FileObjectConfig, IoTarget, QueueConfig, Request, TargetOpenParams,
};
use dmf_core::{NtResult, NtStatus};
use dmf_modules::alertable_sleep::{AlertableSleep, AlertableSleepConfig};
use dmf_modules::buffer_pool::{Buffer, BufferPool, BufferPoolConfig, BufferPoolSourceSettings};
use dmf_modules::buffer_queue::{BufferQueue, BufferQueueConfig};
use dmf_modules::continuous_request_target::{
    BufferDisposition, ContinuousRequestTarget, ContinuousRequestTargetConfig, StreamCompletion,
    StreamMode,
};
use dmf_modules::default_target::{DefaultTarget, DefaultTargetConfig};
use dmf_modules::device_interface_target::{DeviceInterfaceTarget, DeviceInterfaceTargetConfig};
use dmf_modules::doorbell::{Doorbell, DoorbellConfig};
use dmf_modules::hash_table::{HashTable, HashTableConfig};
use dmf_modules::ioctl_handler::{
    IoctlCall, IoctlEntry, IoctlHandler, IoctlHandlerConfig, IoctlResult, IoctlTable,
};
use dmf_modules::notify_user_with_event::{NotifyUserWithEvent, NotifyUserWithEventConfig};
use dmf_modules::notify_user_with_request::{
    NotifyUserWithRequest, NotifyUserWithRequestConfig, NotifyUserWithRequestMultiple,
    NotifyUserWithRequestMultipleConfig,
};
use dmf_modules::pdo::{Pdo, PdoConfig, PdoRecord};
use dmf_modules::ping_pong_buffer::{PingPongBuffer, PingPongBufferConfig};
use dmf_modules::queued_work_item::{QueuedWork, QueuedWorkItem, QueuedWorkItemConfig};
use dmf_modules::request_target::{
    RequestKind, RequestReuse, RequestSender, RequestTarget, SendCompletion, SendRequest,
};
use dmf_modules::ring_buffer::{RingBuffer, RingBufferConfig, RingBufferMode};
use dmf_modules::rundown::Rundown;
use dmf_modules::scheduled_task::{
    ExecuteWhen, ExecutionMode, Persistence, ScheduledTask, ScheduledTaskConfig,
    ScheduledTaskResult,
};
use dmf_modules::self_target::SelfTarget;
use dmf_modules::stack::{Stack, StackConfig};
use dmf_modules::thread::{Thread, ThreadConfig, ThreadControl};
use dmf_modules::threaded_buffer_queue::{
    BufferDisposition as WorkDisposition, ThreadedBufferQueue, ThreadedBufferQueueConfig,
    WorkBuffer,
};
use dmf_modules::time::Time;
use kmdf_sim::fault::FaultPoint;
use kmdf_sim::fx2::driver as fx2;
use kmdf_sim::fx2::ioctl::{
    GUID_DEVINTERFACE_OSRUSBFX2, IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
    IOCTL_OSRUSBFX2_READ_SWITCHES, IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
};
use kmdf_sim::fx2::Fx2Board;
use kmdf_sim::io::{Access, AppConfig, Application, Handle, PendingIo};
use kmdf_sim::pnp::{DeviceNode, StackSpec};
use kmdf_sim::{ClockMode, Machine, Status, VerifierMode};

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator;

// ---------------------------------------------------------------------------- the harness

/// Statuses a caller may see when an allocation fails: the allocation's own, and what a Module,
/// a device or a target that did not open (or was closed because of it) answers.
fn acceptable(status: NtStatus) -> bool {
    [
        NtStatus::INSUFFICIENT_RESOURCES,
        NtStatus::INVALID_DEVICE_STATE,
        NtStatus::NO_SUCH_DEVICE,
        NtStatus::DELETE_PENDING,
    ]
    .contains(&status)
}

/// Unexpected statuses and other problems of the scenarios, written into memory reserved before
/// the sweeps (a run that found nothing wrong allocates nothing here, so the heap count of a run
/// stays its own).
struct Log {
    text: String,
    /// Lines written for the current Module; more than [`Log::PER_MODULE`] are only counted.
    lines: usize,
    suppressed: usize,
}

impl Log {
    const PER_MODULE: usize = 12;

    fn new() -> Self {
        Log {
            text: String::with_capacity(1 << 20),
            lines: 0,
            suppressed: 0,
        }
    }

    fn line(&mut self, module: &str, fail_at: u64, what: fmt::Arguments<'_>) {
        if self.lines >= Self::PER_MODULE {
            self.suppressed += 1;
            return;
        }
        self.lines += 1;
        let _ = writeln!(self.text, "{module}: allocation {fail_at}: {what}");
    }

    /// Ends a Module's part: the count of lines left out.
    fn end_module(&mut self, module: &str) {
        if self.suppressed > 0 {
            let _ = writeln!(
                self.text,
                "{module}: … and {} more unexpected results",
                self.suppressed
            );
        }
        self.lines = 0;
        self.suppressed = 0;
    }
}

/// Statuses seen by driver callbacks (stream completions, PostOpen sends, …), each with the
/// statuses normal for that call besides the acceptable ones; checked by the scenario at its end.
type Seen = Arc<Mutex<Vec<(&'static str, NtStatus, &'static [NtStatus])>>>;

fn record(seen: &Seen, what: &'static str, status: NtStatus) {
    record_expecting(seen, what, status, &[]);
}

fn record_expecting(
    seen: &Seen,
    what: &'static str,
    status: NtStatus,
    normal: &'static [NtStatus],
) {
    if let Ok(mut seen) = seen.lock() {
        seen.push((what, status, normal));
    }
}

fn record_result<T>(seen: &Seen, what: &'static str, result: NtResult<T>) -> Option<T> {
    result.map_err(|status| record(seen, what, status)).ok()
}

/// One run of a scenario: its machine, the failing allocation, and where problems go.
struct Ctx<'a> {
    machine: &'a Machine,
    module: &'static str,
    fail_at: u64,
    log: &'a mut Log,
}

impl Ctx<'_> {
    /// Arms the failing allocation: the part to sweep starts here.
    fn arm(&self) {
        self.machine
            .faults()
            .fail_nth(FaultPoint::Allocation, self.fail_at);
    }

    fn problem(&mut self, what: fmt::Arguments<'_>) {
        self.log.line(self.module, self.fail_at, what);
    }

    fn status(&mut self, what: &str, status: NtStatus) {
        if !acceptable(status) {
            self.problem(format_args!("{what} failed with {status:?}"));
        }
    }

    /// The value of a DMF call; a failure is checked and `None`.
    fn nt<T>(&mut self, what: &str, result: NtResult<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(status) => {
                self.status(what, status);
                None
            }
        }
    }

    /// The value of a simulator (PnP manager, application) call; a failure is checked and `None`.
    fn sim<T>(&mut self, what: &str, result: Result<T, Status>) -> Option<T> {
        self.nt(what, result.map_err(|s| NtStatus::from_raw(s.0)))
    }

    /// A value a successful call must have returned.
    fn expect<T: PartialEq + fmt::Debug>(&mut self, what: &str, got: &T, want: &T) {
        if got != want {
            self.problem(format_args!("{what} returned {got:?}, expected {want:?}"));
        }
    }

    /// Checks what the driver callbacks saw (`extra`: statuses normal there, e.g. the completion
    /// of a stream request cancelled by a removal).
    fn seen(&mut self, seen: &Seen, extra: &[NtStatus]) {
        let taken = std::mem::take(&mut *lock(seen));
        for (what, status, normal) in taken {
            if !status.is_success() && !extra.contains(&status) && !normal.contains(&status) {
                self.status(what, status);
            }
        }
    }

    /// Plugs in a root-enumerated device of `driver`.
    fn plug(&mut self, hardware_id: &str, driver: &str) -> Option<DeviceNode> {
        self.sim(
            "device start",
            self.machine
                .pnp()
                .plug_in(StackSpec::new(hardware_id, driver)),
        )
    }

    /// Orderly removal of `node`.
    fn remove(&mut self, node: &DeviceNode) {
        let removed = node.remove();
        self.sim("device removal", removed);
    }
}

/// Empties a slot a driver callback fills (with a Module's handle or a `DmfDevice`), whatever
/// happened: the driver's configuration holds the slot, the machine holds the configuration,
/// and what the slot holds keeps the machine alive — a cycle left in the slot would leak the
/// whole machine.
fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    lock(slot).take()
}

/// A mutex of the test, poisoned or not (a panic is reported on its own).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One Module's scenario.
struct Scenario {
    module: &'static str,
    clock: ClockMode,
    body: fn(&mut Ctx<'_>),
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

/// Progress of the sweeps for the hang watchdog: the run number and what runs.
static RUNS: AtomicU64 = AtomicU64::new(0);
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static FAIL_AT: AtomicU64 = AtomicU64::new(0);
/// Wall-clock seconds one run may take before the watchdog calls it a hang.
const HANG_SECONDS: u64 = 120;

/// A thread that aborts the test (naming the Module and the failing allocation) when a run does
/// not end: a hang would otherwise hold the test up without a word. Started before the sweeps;
/// it allocates nothing while they run.
fn start_watchdog() {
    let ready = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&ready);
    std::thread::spawn(move || {
        r.store(true, Ordering::SeqCst);
        drop(r);
        let (mut last, mut still) = (u64::MAX, 0);
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let runs = RUNS.load(Ordering::SeqCst);
            if runs == last {
                still += 1;
                if still >= HANG_SECONDS {
                    let module = SCENARIOS[CURRENT.load(Ordering::SeqCst)].module;
                    eprintln!(
                        "HANG: {module}, failing allocation {}: the run did not end within \
                         {HANG_SECONDS} s",
                        FAIL_AT.load(Ordering::SeqCst)
                    );
                    std::process::abort();
                }
            } else {
                (last, still) = (runs, 0);
            }
        }
    });
    while !ready.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
}

/// One run: a fresh machine, the scenario (a panic on the test thread is recorded, unless it is
/// the machine's bug check, which the verdict reports), the machine back for the verdict.
fn run(index: usize, fail_at: u64, log: &mut Log) -> Machine {
    let scenario = &SCENARIOS[index];
    CURRENT.store(index, Ordering::SeqCst);
    FAIL_AT.store(fail_at, Ordering::SeqCst);
    RUNS.fetch_add(1, Ordering::SeqCst);
    let machine = Machine::builder()
        .name("module-alloc-sweep")
        .clock(scenario.clock)
        .verifier(VerifierMode::Record)
        .build();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let _bound = machine.enter();
        let mut ctx = Ctx {
            machine: &machine,
            module: scenario.module,
            fail_at,
            log: &mut *log,
        };
        (scenario.body)(&mut ctx);
        machine.settle();
    }));
    if let Err(payload) = outcome {
        if machine.crash().is_none() {
            log.line(
                scenario.module,
                fail_at,
                format_args!("the scenario panicked: {}", panic_text(payload.as_ref())),
            );
        }
    }
    machine
}

/// `DMF_SWEEP_REPLAY=<Module>:<n>`: runs only that Module's scenario with its `n`th allocation
/// failing and prints the run's trace, verdict and heap balance (to study one finding).
fn replay_request() -> Option<(String, u64)> {
    let spec = std::env::var("DMF_SWEEP_REPLAY").ok()?;
    let (module, n) = spec.split_once(':')?;
    Some((module.to_owned(), n.parse().ok()?))
}

fn replay(module: &str, fail_at: u64) {
    let index = SCENARIOS
        .iter()
        .position(|s| s.module == module)
        .unwrap_or_else(|| panic!("no scenario for {module}"));
    let mut log = Log::new();
    drop(run(index, 0, &mut log));
    let before = simulator::live_heap_blocks();
    let machine = run(index, fail_at, &mut log);
    for event in machine.trace().events() {
        println!(
            "{:>10.3} ms {:<24} {:<12} {:<28} {}",
            event.time.as_secs_f64() * 1000.0,
            event.thread,
            event.driver.as_deref().unwrap_or("-"),
            event.object,
            event.text
        );
    }
    println!(
        "injected: {}",
        machine.faults().injected(FaultPoint::Allocation)
    );
    println!("verdict: {:?}", machine.verdict());
    drop(machine);
    println!(
        "heap blocks: {:?} -> {:?}",
        before,
        simulator::live_heap_blocks()
    );
    print!("{}", log.text);
}

#[test]
fn alloc_sweep_every_module() {
    let mut log = Log::new();
    let mut table = String::new();
    let mut problems = String::new();
    if let Some((module, fail_at)) = replay_request() {
        replay(&module, fail_at);
        return;
    }
    start_watchdog();
    for (index, scenario) in SCENARIOS.iter().enumerate() {
        let swept = alloc_sweep(|fail_at| run(index, fail_at, &mut log));
        log.end_module(scenario.module);
        match swept {
            Ok(report) => {
                let _ = writeln!(
                    table,
                    "{:<32} {:>5} allocation failure points swept",
                    format!("{}:", scenario.module),
                    report.points
                );
                if report.points == 0 {
                    let _ = writeln!(
                        problems,
                        "{}: the scenario reaches no allocation fault point (the Module \
                         allocates through something other than dmf_core::fallible, or the \
                         scenario does not exercise it)",
                        scenario.module
                    );
                }
                assert!(report.heap_checked, "CountingAllocator is installed");
            }
            Err(failures) => {
                let _ = writeln!(table, "{:<32} FAILED", format!("{}:", scenario.module));
                for line in failures.lines() {
                    let _ = writeln!(problems, "{}: {line}", scenario.module);
                }
            }
        }
    }
    problems.push_str(&log.text);
    println!("{table}");
    assert!(
        problems.is_empty(),
        "allocation-failure sweep problems:\n{problems}\n{table}"
    );
}

// ---------------------------------------------------------------------------- the scenarios

const SCENARIOS: &[Scenario] = &[
    Scenario {
        module: "Rundown",
        clock: ClockMode::Manual,
        body: rundown,
    },
    Scenario {
        module: "AlertableSleep",
        clock: ClockMode::AutoAdvance,
        body: alertable_sleep,
    },
    Scenario {
        module: "RingBuffer",
        clock: ClockMode::Manual,
        body: ring_buffer,
    },
    Scenario {
        module: "PingPongBuffer",
        clock: ClockMode::Manual,
        body: ping_pong_buffer,
    },
    Scenario {
        module: "HashTable",
        clock: ClockMode::Manual,
        body: hash_table,
    },
    Scenario {
        module: "Time",
        clock: ClockMode::Manual,
        body: time,
    },
    Scenario {
        module: "Registry",
        clock: ClockMode::Manual,
        body: registry,
    },
    Scenario {
        module: "BufferPool",
        clock: ClockMode::Manual,
        body: buffer_pool,
    },
    Scenario {
        module: "BufferQueue",
        clock: ClockMode::Manual,
        body: buffer_queue,
    },
    Scenario {
        module: "ThreadedBufferQueue",
        clock: ClockMode::Manual,
        body: threaded_buffer_queue,
    },
    Scenario {
        module: "Stack",
        clock: ClockMode::Manual,
        body: stack,
    },
    Scenario {
        module: "Thread",
        clock: ClockMode::Manual,
        body: thread,
    },
    Scenario {
        module: "QueuedWorkItem",
        clock: ClockMode::Manual,
        body: queued_work_item,
    },
    Scenario {
        module: "Doorbell",
        clock: ClockMode::Manual,
        body: doorbell,
    },
    Scenario {
        module: "ScheduledTask",
        clock: ClockMode::Manual,
        body: scheduled_task,
    },
    Scenario {
        module: "RequestTarget",
        clock: ClockMode::Manual,
        body: request_target,
    },
    Scenario {
        module: "ContinuousRequestTarget",
        clock: ClockMode::Manual,
        body: continuous_request_target,
    },
    Scenario {
        module: "DeviceInterfaceTarget",
        clock: ClockMode::Manual,
        body: device_interface_target,
    },
    Scenario {
        module: "DeviceInterfaceTarget (dynamic)",
        clock: ClockMode::Manual,
        body: dynamic_device_interface_target,
    },
    Scenario {
        module: "DefaultTarget",
        clock: ClockMode::Manual,
        body: default_target,
    },
    Scenario {
        module: "SelfTarget",
        clock: ClockMode::Manual,
        body: self_target,
    },
    Scenario {
        module: "IoctlHandler",
        clock: ClockMode::Manual,
        body: ioctl_handler,
    },
    Scenario {
        module: "IoctlHandler (dynamic)",
        clock: ClockMode::Manual,
        body: dynamic_ioctl_handler,
    },
    Scenario {
        module: "NotifyUserWithEvent",
        clock: ClockMode::Manual,
        body: notify_user_with_event,
    },
    Scenario {
        module: "NotifyUserWithRequest",
        clock: ClockMode::Manual,
        body: notify_user_with_request,
    },
    Scenario {
        module: "NotifyUserWithRequestMultiple",
        clock: ClockMode::Manual,
        body: notify_user_with_request_multiple,
    },
    Scenario {
        module: "Pdo",
        clock: ClockMode::Manual,
        body: pdo,
    },
];

// ---------------------------------------------------------------- without a device

fn rundown(c: &mut Ctx<'_>) {
    c.arm();
    let Some(rundown) = c.nt("create", Rundown::with(()).create(&NoParent)) else {
        return;
    };
    if c.nt("start", rundown.start()).is_some() {
        c.nt("reference", rundown.reference_with(|| ()));
        if let Some(gate) = c.nt("gate", rundown.gate()) {
            c.nt("gate reference", gate.reference().map(drop));
        }
        c.nt("end_and_wait", rundown.end_and_wait());
    }
    rundown.delete();
}

fn registry(c: &mut Ctx<'_>) {
    use dmf_modules::registry::{
        Registry, RegistryAccess, RegistryBranch, RegistryConfig, RegistryEntry,
        RegistryEntryValue, RegistryTree,
    };
    static TREE: [RegistryTree; 1] = [RegistryTree {
        path: r"\Registry\Machine\SOFTWARE\Sweep",
        branches: &[RegistryBranch {
            prefix: r"\Sub",
            entries: &[
                RegistryEntry {
                    name: "s",
                    value: RegistryEntryValue::String("text"),
                },
                RegistryEntry {
                    name: "m",
                    value: RegistryEntryValue::MultiString(&["a", "b"]),
                },
            ],
        }],
    }];
    const PATH: Option<&str> = Some(r"\Registry\Machine\SOFTWARE\Sweep\Sub");
    c.arm();
    let created = Registry::with(RegistryConfig {
        tree: &TREE,
        ..RegistryConfig::default()
    })
    .create(&NoParent);
    let Some(registry) = c.nt("create", created) else {
        return;
    };
    let mut units = [0_u16; 16];
    if let Some(read) = c.nt(
        "read string",
        registry
            .path_and_value_read_string(PATH, "s", &mut units)
            .map_err(NtStatus::from),
    ) {
        c.expect("read string", &read, &10);
    }
    c.nt(
        "write multi-string",
        registry.path_and_value_write_multi_string(PATH, "m", &["x", "yz"]),
    );
    if let Some(key) = c.nt(
        "open",
        registry.handle_open_by_name_ex(PATH, RegistryAccess::All, false),
    ) {
        c.nt(
            "write if needed",
            registry.value_write_if_needed(
                &key,
                "d",
                dmf_modules::registry::RegistryValueType::Dword,
                &1_u32.to_le_bytes(),
                |_| true,
                true,
            ),
        );
        c.nt(
            "enumerate values",
            registry.values_from_handle_enumerate(&key, |_| true),
        );
        c.nt("delete key", registry.handle_delete(key));
    }
    let mut text = [0_u8; 38];
    let guid = Guid::new(1, 2, 3, [4; 8]);
    c.nt(
        "guid text",
        dmf_modules::string::guid_to_string(&guid, &mut text).map(drop),
    );
    registry.delete();
}

fn alertable_sleep(c: &mut Ctx<'_>) {
    c.arm();
    let created = AlertableSleep::with(AlertableSleepConfig { event_count: 2 }).create(&NoParent);
    let Some(sleep) = c.nt("create", created) else {
        return;
    };
    c.nt("sleep", sleep.sleep(0, 10));
    sleep.abort(1);
    sleep.reset_for_reuse(1);
    c.nt("sleep after reset", sleep.sleep(1, 10));
    sleep.delete();
}

fn ring_buffer(c: &mut Ctx<'_>) {
    c.arm();
    let created = RingBuffer::with(RingBufferConfig {
        item_count: 4,
        item_size: 4,
        mode: RingBufferMode::FailIfFullOnWrite,
    })
    .create(&NoParent);
    let Some(ring) = c.nt("create", created) else {
        return;
    };
    let written = c.nt("write", ring.write(b"abcd")).is_some()
        && c.nt(
            "segments_write",
            ring.segments_write(&[(b"ef", 0), (b"gh", 2)]),
        )
        .is_some();
    if written {
        let mut item = [0; 4];
        if c.nt("read", ring.read(&mut item)).is_some() {
            c.expect("read", &item, b"abcd");
        }
        c.nt("enumerate", ring.enumerate(|_| true));
        c.nt("reorder", ring.reorder());
        let mut all = [0; 16];
        if let Some(n) = c.nt("read_all", ring.read_all(&mut all)) {
            c.expect("read_all", &&all[..n], &&b"efgh"[..]);
        }
    }
    ring.delete();
}

fn ping_pong_buffer(c: &mut Ctx<'_>) {
    c.arm();
    let created = PingPongBuffer::with(PingPongBufferConfig { buffer_size: 16 }).create(&NoParent);
    let Some(buffer) = c.nt("create", created) else {
        return;
    };
    if c.nt("write", buffer.write(b"xx[ab]")).is_some() {
        c.nt("shift", buffer.shift(2));
        if let Some(frame) = c.nt("consume", buffer.consume(0, 4, |f| f == b"[ab]")) {
            c.expect("consume", &frame, &true);
        }
        if let Some(left) = c.nt("get", buffer.get(<[u8]>::len)) {
            c.expect("get", &left, &0);
        }
    }
    c.nt("reset", buffer.reset());
    buffer.delete();
}

fn hash_table(c: &mut Ctx<'_>) {
    c.arm();
    let created = HashTable::with(HashTableConfig {
        maximum_key_length: 8,
        maximum_value_length: 8,
        maximum_table_size: 4,
        hash: None,
    })
    .create(&NoParent);
    let Some(table) = c.nt("create", created) else {
        return;
    };
    if c.nt("write", table.write(b"k1", b"one")).is_some() {
        let mut value = [0; 8];
        if let Some(n) = c.nt("read", table.read(b"k1", &mut value)) {
            c.expect("read", &&value[..n], &&b"one"[..]);
        }
    }
    c.nt(
        "find",
        table.find(b"k2", |_key, value, length| {
            value[0] = 2;
            *length = 1;
        }),
    );
    let mut pairs = 0;
    c.nt(
        "enumerate",
        table.enumerate(|_, _| {
            pairs += 1;
            true
        }),
    );
    table.delete();
}

fn notify_user_with_event(c: &mut Ctx<'_>) {
    let listener = kmdf_sim::io::Application::new(c.machine, kmdf_sim::io::AppConfig::default());
    let Some(ready) = c.sim(
        "CreateEvent",
        listener.create_event(r"Global\DmfSweepReady", true, false),
    ) else {
        return;
    };
    c.arm();
    let config = NotifyUserWithEventConfig {
        maximum_event_index: 0,
        event_names: [r"\BaseNamedObjects\DmfSweepReady", "", "", ""],
    };
    let Some(notify) = c.nt(
        "create",
        NotifyUserWithEvent::with(config).create(&NoParent),
    ) else {
        return;
    };
    if c.nt("notify", notify.notify()).is_some() {
        c.expect("event set", &ready.is_signaled(), &true);
    }
    notify.delete();
}

fn time(c: &mut Ctx<'_>) {
    c.arm();
    let Some(time) = c.nt("create", Time::with(()).create(&NoParent)) else {
        return;
    };
    if let Some(start) = c.nt("tick_count_get", time.tick_count_get()) {
        c.machine.advance(Duration::from_millis(3));
        if let Some(elapsed) = c.nt("elapsed", time.elapsed_time_milliseconds_get(start)) {
            c.expect("elapsed_time_milliseconds_get", &elapsed, &3);
        }
    }
    time.delete();
}

fn buffer_pool(c: &mut Ctx<'_>) {
    c.arm();
    // A Sink pool that takes timed buffers needs a device (its timer's parent).
    let Some((node, device)) = c.nt(
        "device start",
        simulator::plug_in_device(c.machine, "poolparent"),
    ) else {
        return;
    };
    let collection = c.nt(
        "collection create",
        ModuleCollection::create(
            ModuleInit::new(),
            CollectionConfig {
                device: Some(device),
                ..CollectionConfig::default()
            },
        ),
    );
    if let Some(collection) = &collection {
        let mut settings = BufferPoolSourceSettings::new(1, 8);
        settings.buffer_context_size = 4;
        settings.enable_look_aside = true;
        settings.create_with_timer = true;
        let source = c.nt(
            "source create",
            BufferPool::with(BufferPoolConfig::source(settings)).create(&NoParent),
        );
        let sink = c.nt(
            "sink create",
            BufferPool::with(BufferPoolConfig::sink()).create(collection),
        );
        if let (Some(source), Some(sink)) = (&source, &sink) {
            let back: Arc<Mutex<Vec<Buffer>>> = Arc::default();
            let first = c.nt("get", source.get());
            let second = c.nt("get (look-aside)", source.get());
            let mut mine = Vec::new();
            if let Some(buffer) = first {
                match sink.put(buffer) {
                    Ok(()) => {}
                    Err(error) => {
                        c.status("sink put", error.status());
                        mine.push(error.into_buffer());
                    }
                }
            }
            if let Some(buffer) = second {
                let b = Arc::clone(&back);
                let timed = sink.put_in_sink_with_timer(
                    buffer,
                    Duration::from_millis(10),
                    Arc::new(move |buffer| b.lock().unwrap().push(buffer)),
                );
                if let Err(error) = timed {
                    c.status("put_in_sink_with_timer", error.status());
                    mine.push(error.into_buffer());
                }
            }
            c.machine.advance(Duration::from_millis(20));
            c.machine.settle();
            if let Some(count) = c.nt("sink count", sink.count()) {
                for _ in 0..count {
                    if let Some(buffer) = c.nt("sink get", sink.get()) {
                        mine.push(buffer);
                    }
                }
            }
            mine.append(&mut back.lock().unwrap());
            for buffer in mine {
                if let Err(error) = source.put(buffer) {
                    c.status("source put", error.status());
                }
            }
        }
        drop(sink);
        drop(source);
    }
    drop(collection);
    c.remove(&node);
}

fn filled(queue: &BufferQueue, value: u8) -> NtResult<Buffer> {
    let mut buffer = queue.fetch()?;
    buffer.data_mut().fill(value);
    Ok(buffer)
}

fn buffer_queue(c: &mut Ctx<'_>) {
    c.arm();
    let mut source = BufferPoolSourceSettings::new(1, 16);
    source.buffer_context_size = 4;
    source.enable_look_aside = true;
    let created = BufferQueue::with(BufferQueueConfig {
        source,
        reuse_cleanup: Some(Arc::new(|_q: &BufferQueue, buffer: &mut Buffer| {
            buffer.context_mut().fill(0);
        })),
    })
    .create(&NoParent);
    let Some(queue) = c.nt("create", created) else {
        return;
    };
    for (value, at_head) in [(1, false), (2, true)] {
        if let Some(buffer) = c.nt("fetch", filled(&queue, value)) {
            let queued = if at_head {
                queue.enqueue_at_head(buffer)
            } else {
                queue.enqueue(buffer)
            };
            if let Err(error) = queued {
                c.status("enqueue", error.status());
                let _ = queue.reuse(error.into_buffer());
            }
        }
    }
    c.nt("count", queue.count());
    if let Some(buffer) = c.nt("dequeue", queue.dequeue()) {
        if let Err(error) = queue.reuse(buffer) {
            c.status("reuse", error.status());
        }
    }
    c.nt("flush", queue.flush());
    queue.delete();
}

fn threaded_buffer_queue(c: &mut Ctx<'_>) {
    let worked = Arc::new(AtomicU32::new(0));
    let w = Arc::clone(&worked);
    let config = ThreadedBufferQueueConfig {
        buffer_queue: BufferQueueConfig::new(BufferPoolSourceSettings::new(2, 8)),
        pre: None,
        work: Arc::new(move |_q: &ThreadedBufferQueue, buffer: WorkBuffer| {
            w.fetch_add(1, Ordering::SeqCst);
            WorkDisposition::WorkComplete(buffer, NtStatus::SUCCESS)
        }),
        post: None,
        reuse_cleanup: None,
    };
    c.arm();
    let created = ThreadedBufferQueue::with(config).create(&NoParent);
    let Some(queue) = c.nt("create", created) else {
        return;
    };
    if c.nt("start", queue.start()).is_some() {
        if let Some(mut buffer) = c.nt("fetch", queue.fetch()) {
            buffer.data_mut().fill(1);
            if let Err(error) = queue.enqueue(buffer) {
                c.status("enqueue", error.status());
                let _ = queue.reuse(error.into_buffer());
            }
        }
        c.machine.settle();
        if let Some(buffer) = c.nt("fetch", queue.fetch()) {
            c.nt("enqueue_and_wait", queue.enqueue_and_wait(buffer));
        }
        c.nt("count", queue.count());
        c.nt("stop", queue.stop());
    }
    queue.delete();
}

fn stack(c: &mut Ctx<'_>) {
    c.arm();
    let created = Stack::with(StackConfig {
        element_size: 8,
        depth: 1,
        unbounded: true,
    })
    .create(&NoParent);
    let Some(stack) = c.nt("create", created) else {
        return;
    };
    let mut pushed = 0;
    for value in 1..=2_u64 {
        if c.nt("push", stack.push(&value.to_le_bytes())).is_some() {
            pushed += 1;
        }
    }
    c.nt("depth", stack.depth());
    for _ in 0..pushed {
        let mut out = [0; 8];
        c.nt("pop", stack.pop(&mut out));
    }
    c.nt("push", stack.push(&3_u64.to_le_bytes()));
    c.nt("flush", stack.flush());
    stack.delete();
}

fn thread(c: &mut Ctx<'_>) {
    let worked = Arc::new(AtomicU32::new(0));
    let w = Arc::clone(&worked);
    let config = ThreadConfig {
        control: ThreadControl::Dmf {
            pre: None,
            work: Arc::new(move |_t: &Thread| {
                w.fetch_add(1, Ordering::SeqCst);
            }),
            post: None,
        },
    };
    c.arm();
    let Some(thread) = c.nt("create", Thread::with(config).create(&NoParent)) else {
        return;
    };
    if c.nt("start", thread.start()).is_some() {
        c.machine.settle();
        c.nt("work_ready", thread.work_ready());
        c.machine.settle();
        c.nt("stop", thread.stop());
    }
    thread.delete();
}

// ---------------------------------------------------------------- with a client device

/// Installs the client driver `name` whose device has the one Module `add` adds, arms the
/// failing allocation, plugs the device in and returns its node with the Module (if it started).
fn client<M: Module + 'static>(
    c: &mut Ctx<'_>,
    name: &str,
    add: impl Fn(&mut ModuleInit) -> dmf_core::module::Added<M> + Send + Sync + 'static,
) -> Option<(DeviceNode, Option<(Device, M)>)> {
    let slot = driver_support::install(c.machine, name, false, add);
    c.arm();
    let node = c.plug(&format!("ROOT\\{name}"), name);
    let module = take(&slot);
    let node = node?;
    if module.is_none() {
        c.problem(format_args!("the device started without its Module"));
    }
    Some((node, module))
}

fn queued_work_item(c: &mut Ctx<'_>) {
    let config = QueuedWorkItemConfig {
        callback: Arc::new(|_m: &QueuedWorkItem, _call: &mut QueuedWork<'_>| {
            ScheduledTaskResult::Success
        }),
        buffer_count: 1,
        buffer_size: 4,
        enable_look_aside: true,
    };
    let Some((node, module)) = client(c, "qwiclient", move |init| {
        init.add(QueuedWorkItem::with(config.clone()))
    }) else {
        return;
    };
    if let Some((_device, work)) = module {
        {
            // Both queued before the work item runs: the second takes a look-aside buffer.
            let _held = c.machine.pause_queues();
            c.nt("enqueue", work.enqueue(&[1]));
            c.nt("enqueue (look-aside)", work.enqueue(&[2, 2]));
        }
        c.machine.settle();
        c.nt("enqueue_and_wait", work.enqueue_and_wait(&[3]));
        c.nt("flush", work.flush());
    }
    c.remove(&node);
}

fn doorbell(c: &mut Ctx<'_>) {
    let runs = Arc::new(AtomicU32::new(0));
    let r = Arc::clone(&runs);
    let config = DoorbellConfig {
        callback: Arc::new(move |_d: &Doorbell| {
            r.fetch_add(1, Ordering::SeqCst);
        }),
    };
    let Some((node, module)) = client(c, "bellclient", move |init| {
        init.add(Doorbell::with(config.clone()))
    }) else {
        return;
    };
    if let Some((_device, bell)) = module {
        c.nt("ring", bell.ring());
        c.machine.settle();
        c.nt("ring", bell.ring());
        c.nt("flush", bell.flush());
    }
    c.remove(&node);
}

fn scheduled_task(c: &mut Ctx<'_>) {
    let config = ScheduledTaskConfig {
        callback: Arc::new(|_t: &ScheduledTask, _previous| ScheduledTaskResult::Success),
        persistence: Persistence::PersistentAcrossReboots {
            driver: "TaskSweep".into(),
            value_name: "TimesRun".into(),
        },
        execution_mode: ExecutionMode::Deferred,
        execute_when: ExecuteWhen::D0Entry,
        timer_period_on_success: Duration::from_millis(200),
        timer_period_on_fail: Duration::from_millis(100),
        time_before_initial_call: Duration::from_millis(50),
    };
    let Some((node, module)) = client(c, "taskclient", move |init| {
        init.add(ScheduledTask::with(config.clone()))
    }) else {
        return;
    };
    if let Some((_device, task)) = module {
        c.machine.advance(Duration::from_millis(60));
        c.machine.settle();
        c.nt("execute_now_deferred", task.execute_now_deferred());
        c.nt("execute_now_deferred_ex", task.execute_now_deferred_ex());
        c.machine.settle();
        c.nt("cancel", task.cancel());
        c.nt("restart", task.restart());
        c.nt("execute_now", task.execute_now());
        c.nt("times_run", task.times_run());
    }
    c.remove(&node);
}

/// The FX2 interface's symbolic link (the FX2 is plugged in).
fn fx2_link(machine: &Machine) -> Option<String> {
    kmdf_sim::interface::interfaces_of_class(machine, GUID_DEVINTERFACE_OSRUSBFX2).pop()
}

/// A remote target of the client `device` opened on the FX2 interface.
fn open_fx2(c: &mut Ctx<'_>, device: &Device) -> Option<IoTarget> {
    let link = fx2_link(c.machine)?;
    let target = c.nt("create io target", device.create_io_target())?;
    c.nt(
        "open io target",
        target.open(TargetOpenParams::by_name(&link)),
    )?;
    Some(target)
}

/// Plugs in an FX2 board before the sweep starts (the I/O-target Modules' peer).
fn fx2_unswept(c: &mut Ctx<'_>, board: &Fx2Board) -> Option<DeviceNode> {
    match fx2::install(c.machine, board) {
        Ok(node) => Some(node),
        Err(status) => {
            c.problem(format_args!(
                "the FX2 did not start before the sweep: {status:?}"
            ));
            None
        }
    }
}

fn request_target(c: &mut Ctx<'_>) {
    let board = Fx2Board::new();
    let Some(fx2) = fx2_unswept(c, &board) else {
        return;
    };
    let seen = Seen::default();
    if let Some((node, module)) = client(c, "rtclient", |init| {
        init.add(RequestTarget::with(()).passive_level(false))
    }) {
        if let Some((device, target)) = module {
            let io_target = open_fx2(c, &device);
            let set = io_target.as_ref().is_some_and(|t| {
                c.nt("io_target_set", target.io_target_set(t.clone()))
                    .is_some()
            });
            if set {
                c.nt(
                    "send_synchronously",
                    target.send_synchronously(&SendRequest::ioctl(
                        IOCTL_OSRUSBFX2_READ_SWITCHES,
                        &[],
                        1,
                    )),
                );
                let s = Arc::clone(&seen);
                c.nt(
                    "send",
                    target.send(
                        &SendRequest::ioctl(IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, &[0x5A], 0),
                        move |done: SendCompletion| record(&s, "send completion", done.status),
                    ),
                );
                c.machine.settle();
                if let Some(id) = c.nt("reuse_create", target.reuse_create()) {
                    let s = Arc::clone(&seen);
                    c.nt(
                        "reuse_send",
                        target.reuse_send(
                            id,
                            &SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1),
                            move |done: SendCompletion| {
                                record(&s, "reuse_send completion", done.status);
                            },
                        ),
                    );
                    c.machine.settle();
                    c.nt("reuse_delete", target.reuse_delete(id));
                }
                // A parked request that times out, and one cancelled by its ID.
                let s = Arc::clone(&seen);
                c.nt(
                    "send with a time-out",
                    target.send(
                        &SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1)
                            .timeout(Duration::from_millis(10)),
                        move |done: SendCompletion| {
                            record_expecting(&s, "timed-out send", done.status, TIMED_OUT);
                        },
                    ),
                );
                c.machine.advance(Duration::from_millis(20));
                c.machine.settle();
                let s = Arc::clone(&seen);
                let parked = c.nt(
                    "send",
                    target.send(
                        &SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE, &[], 1),
                        move |done: SendCompletion| {
                            record_expecting(&s, "cancelled send", done.status, CANCELLED);
                        },
                    ),
                );
                c.machine.settle();
                if let Some(id) = parked {
                    target.cancel(id);
                }
                c.machine.settle();
            }
        }
        c.remove(&node);
    }
    c.remove(&fx2);
    c.seen(&seen, &[]);
}

/// An output callback that records each completion and streams on while they succeed.
fn stream_recorder(seen: &Seen) -> dmf_modules::continuous_request_target::BufferOutputCallback {
    let seen = Arc::clone(seen);
    Arc::new(
        move |_m: &ContinuousRequestTarget, done: &StreamCompletion<'_>| {
            record(&seen, "stream completion", done.status);
            if done.status.is_success() {
                BufferDisposition::ContinueStreaming
            } else {
                BufferDisposition::StopStreaming
            }
        },
    )
}

fn interrupt_stream(count: u32, mode: StreamMode) -> ContinuousRequestTargetConfig {
    ContinuousRequestTargetConfig {
        request_count: count,
        request_type: RequestKind::Ioctl,
        ioctl_code: IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
        output_buffer_size: 1,
        // Spare output buffers a client may keep: allocated at open, swept with it.
        output_buffer_count: 2,
        mode,
        ..ContinuousRequestTargetConfig::default()
    }
}

fn continuous_request_target(c: &mut Ctx<'_>) {
    let board = Fx2Board::new();
    let Some(fx2) = fx2_unswept(c, &board) else {
        return;
    };
    let seen = Seen::default();
    let config = ContinuousRequestTargetConfig {
        output_callback: Some(stream_recorder(&seen)),
        ..interrupt_stream(2, StreamMode::Manual)
    };
    if let Some((node, module)) = client(c, "crtclient", move |init| {
        init.add(ContinuousRequestTarget::with(config.clone()))
    }) {
        if let Some((device, stream)) = module {
            let io_target = open_fx2(c, &device);
            let set = io_target.as_ref().is_some_and(|t| {
                c.nt("io_target_set", stream.io_target_set(t.clone()))
                    .is_some()
            });
            if set && c.nt("stream_start", stream.stream_start()).is_some() {
                let _ = board.flip_switch(1);
                c.machine.settle();
                c.nt("stop_and_wait", stream.stop_and_wait());
                c.nt(
                    "send_synchronously",
                    stream.send_synchronously(&SendRequest::ioctl(
                        IOCTL_OSRUSBFX2_READ_SWITCHES,
                        &[],
                        1,
                    )),
                );
                // Started again; the removal closes the Module with the stream running.
                if c.nt("stream_start", stream.stream_start()).is_some() {
                    let _ = board.flip_switch(2);
                    c.machine.settle();
                }
            }
        }
        c.remove(&node);
    }
    c.remove(&fx2);
    c.seen(&seen, CANCELLED);
}

/// SwitchBar's "read the switches, set the bar" through a target's synchronous sends.
fn mirror(
    seen: &Seen,
    send: impl Fn(&[u8], usize, u32) -> NtResult<(Vec<u8>, usize)>,
) -> Option<()> {
    let (switches, _) = record_result(
        seen,
        "mirror: read switches",
        send(&[], 1, IOCTL_OSRUSBFX2_READ_SWITCHES),
    )?;
    let bar = switches.first().copied().unwrap_or(0);
    record_result(
        seen,
        "mirror: set bar graph",
        send(&[bar], 0, IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY),
    )?;
    Some(())
}

fn dit_send(
    target: &DeviceInterfaceTarget,
) -> impl Fn(&[u8], usize, u32) -> NtResult<(Vec<u8>, usize)> + '_ {
    move |input, output, code| target.send_synchronously(&SendRequest::ioctl(code, input, output))
}

/// What a request cancelled on purpose comes back with.
const CANCELLED: &[NtStatus] = &[NtStatus::CANCELLED];
/// What a request whose time-out expired comes back with.
const TIMED_OUT: &[NtStatus] = &[NtStatus::CANCELLED, NtStatus::IO_TIMEOUT];

/// Statuses a stream request may come back with when its device goes away.
const REMOVAL: &[NtStatus] = &[NtStatus::CANCELLED, NtStatus::DEVICE_REMOVED];

fn device_interface_target(c: &mut Ctx<'_>) {
    let seen = Seen::default();
    let mut config =
        DeviceInterfaceTargetConfig::new(simulator::platform_guid(GUID_DEVINTERFACE_OSRUSBFX2));
    config.stream = Some(interrupt_stream(1, StreamMode::Manual));
    let s = Arc::clone(&seen);
    config.output_callback = Some(Arc::new(move |target, done| {
        record(&s, "stream completion", done.status);
        if done.status.is_success() && mirror(&s, dit_send(target)).is_some() {
            BufferDisposition::ContinueStreaming
        } else {
            BufferDisposition::StopStreaming
        }
    }));
    let (s1, s2) = (Arc::clone(&seen), Arc::clone(&seen));
    let spec = move || {
        let (s1, s2) = (Arc::clone(&s1), Arc::clone(&s2));
        DeviceInterfaceTarget::with(config.clone())
            .passive_level(true)
            .on_post_open(move |target| {
                if record_result(&s1, "PostOpen: stream_start", target.stream_start()).is_some() {
                    let _ = mirror(&s1, dit_send(target));
                }
            })
            .on_pre_close(move |target| {
                record_result(&s2, "PreClose: stream_stop", target.stream_stop());
            })
    };
    let Some((node, module)) = client(c, "ditclient", move |init| init.add(spec())) else {
        return;
    };
    let board = Fx2Board::new();
    let fx2 = c.sim("FX2 arrival", fx2::install(c.machine, &board));
    c.machine.settle();
    let _ = board.flip_switch(2);
    c.machine.settle();
    if let Some((_device, target)) = &module {
        c.nt(
            "send_synchronously",
            target.send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1)),
        );
    }
    board.unplug();
    if let Some(fx2) = fx2 {
        let removed = fx2.surprise_remove();
        c.sim("FX2 surprise removal", removed);
    }
    c.machine.settle();
    // Replugged: the Module opens again; the client's removal closes it with the FX2 there.
    let fx2 = c.sim("FX2 arrival", fx2::install(c.machine, &board));
    c.machine.settle();
    let _ = board.flip_switch(4);
    c.machine.settle();
    c.remove(&node);
    if let Some(fx2) = fx2 {
        c.remove(&fx2);
    }
    c.seen(&seen, REMOVAL);
}

/// A client driver with no Module: its `DmfDevice` is kept to create dynamic Modules from.
fn dynamic_client(c: &mut Ctx<'_>, name: &str) -> Option<(DeviceNode, Option<DmfDevice>)> {
    let slot: Arc<Mutex<Option<DmfDevice>>> = Arc::default();
    let s = Arc::clone(&slot);
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            dmf.set_modules_add(|_device, _modules| Ok(()))?;
            dmf.create_device(DeviceAttributes::default())?;
            let device = dmf.modules_create()?;
            *lock(&s) = Some(device);
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(c.machine, name, config);
    c.arm();
    let node = c.plug(&format!("ROOT\\{name}"), name);
    let device = take(&slot);
    Some((node?, device))
}

fn dynamic_device_interface_target(c: &mut Ctx<'_>) {
    let seen = Seen::default();
    let Some((node, device)) = dynamic_client(c, "dynclient") else {
        return;
    };
    let s = Arc::clone(&seen);
    let dynamic = device.as_ref().and_then(|device| {
        let created = DeviceInterfaceTarget::with(DeviceInterfaceTargetConfig::new(
            simulator::platform_guid(GUID_DEVINTERFACE_OSRUSBFX2),
        ))
        .on_post_open(move |target| {
            record_result(
                &s,
                "PostOpen: send_synchronously",
                target.send_synchronously(&SendRequest::ioctl(
                    IOCTL_OSRUSBFX2_READ_SWITCHES,
                    &[],
                    1,
                )),
            );
        })
        .create(device.collection());
        c.nt("create", created)
    });
    let board = Fx2Board::new();
    let fx2 = c.sim("FX2 arrival", fx2::install(c.machine, &board));
    c.machine.settle();
    if let Some(target) = &dynamic {
        c.nt(
            "send_synchronously",
            target.send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1)),
        );
    }
    drop(dynamic);
    c.machine.settle();
    board.unplug();
    if let Some(fx2) = fx2 {
        let removed = fx2.surprise_remove();
        c.sim("FX2 surprise removal", removed);
    }
    c.machine.settle();
    c.remove(&node);
    drop(device);
    c.seen(&seen, &[]);
}

fn default_target(c: &mut Ctx<'_>) {
    let seen = Seen::default();
    let s = Arc::clone(&seen);
    let config = DefaultTargetConfig {
        stream: Some(interrupt_stream(1, StreamMode::Automatic)),
        output_callback: Some(Arc::new(move |target: &DefaultTarget, done| {
            record(&s, "stream completion", done.status);
            let send = |input: &[u8], output: usize, code: u32| {
                target.send_synchronously(&SendRequest::ioctl(code, input, output))
            };
            if done.status.is_success() && mirror(&s, send).is_some() {
                BufferDisposition::ContinueStreaming
            } else {
                BufferDisposition::StopStreaming
            }
        })),
    };
    let slot = driver_support::install(c.machine, "dtfilter", true, move |init| {
        init.add(DefaultTarget::with(config.clone()).passive_level(true))
    });
    let board = Fx2Board::new();
    c.arm();
    let spec = fx2::stack_spec(c.machine, &board).upper_filter("dtfilter");
    let node = c.sim("FX2 stack start", c.machine.pnp().plug_in(spec));
    let module = take(&slot);
    let Some(node) = node else {
        return;
    };
    let _ = board.flip_switch(3);
    c.machine.settle();
    if let Some((_device, target)) = &module {
        c.nt(
            "send_synchronously",
            target.send_synchronously(&SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1)),
        );
    }
    // (No Module: the filter's device add failed and the PnP manager skipped the filter.)
    // Idle and wake: D0Exit stops the automatic stream, D0Entry starts it again.
    let idle = node.idle();
    if c.sim("idle", idle).is_some() {
        let woken = node.wake_from_idle();
        c.sim("wake from idle", woken);
        c.machine.settle();
        let _ = board.flip_switch(5);
        c.machine.settle();
    }
    board.unplug();
    let removed = node.surprise_remove();
    c.sim("FX2 surprise removal", removed);
    c.machine.settle();
    c.seen(&seen, REMOVAL);
}

const IOCTL_ECHO: u32 = (0x22 << 16) | (0x900 << 2);

fn self_target(c: &mut Ctx<'_>) {
    let slot: Arc<Mutex<Option<SelfTarget>>> = Arc::default();
    let s = Arc::clone(&slot);
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            let token = Arc::new(Mutex::new(None));
            let t = Arc::clone(&token);
            dmf.set_modules_add(move |_device, modules| {
                *lock(&t) = Some(modules.add(SelfTarget::with(())));
                Ok(())
            })?;
            let device = dmf.create_device(DeviceAttributes::default())?;
            let mut queue = QueueConfig::new_default(QueueDispatch::Parallel);
            queue.device_control = Some(Arc::new(|_q, r: Request, out, _in, code: u32| {
                if code != IOCTL_ECHO {
                    r.complete(NtStatus::INVALID_DEVICE_REQUEST);
                    return;
                }
                let data = r.with_input_buffer(0, <[u8]>::to_vec).unwrap_or_default();
                let n = data.len().min(out);
                let _ = r.with_output_buffer(n, |b| b[..n].copy_from_slice(&data[..n]));
                r.complete_with_information(NtStatus::SUCCESS, n);
            }));
            let hooked = dmf.hook_queue_config(queue)?;
            device.create_queue(hooked)?;
            let dmf_device = dmf.modules_create()?;
            let token = lock(&token).take().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
            *lock(&s) = Some(dmf_device.get(token)?);
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(c.machine, "selfclient", config);
    c.arm();
    let node = c.plug("ROOT\\SELFCLIENT", "selfclient");
    let module = take(&slot);
    let Some(node) = node else {
        return;
    };
    let seen = Seen::default();
    if let Some(module) = module {
        if let Some(echo) = c.nt(
            "send_synchronously",
            module.send_synchronously(&SendRequest::ioctl(IOCTL_ECHO, b"self", 8)),
        ) {
            c.expect("send_synchronously", &echo, &(b"self".to_vec(), 4));
        }
        let s = Arc::clone(&seen);
        c.nt(
            "send",
            module.send(
                &SendRequest::ioctl(IOCTL_ECHO, b"async", 8),
                move |done: SendCompletion| record(&s, "send completion", done.status),
            ),
        );
        c.machine.settle();
        c.nt("get_target", module.get_target());
    } else {
        c.problem(format_args!("the device started without its Module"));
    }
    c.remove(&node);
    c.seen(&seen, &[]);
}

const GUID: Guid = Guid::new(
    0x5D2A_1C41,
    0x7B3E,
    0x4F19,
    [0x9A, 0x61, 0x0C, 0x2D, 0x8E, 0x47, 0xB5, 0x14],
);
/// Input ≥ 4, output ≥ 2: answers the input's byte sum in two bytes.
const IOCTL_SUM: u32 = 0x0022_2000;
/// Parks the request in a NotifyUserWithRequest.
const IOCTL_WAIT: u32 = 0x0022_2010;

fn sum_handler(call: &mut IoctlCall<'_>) -> IoctlResult {
    let sum = match call.with_input(|input| input.iter().map(|b| u16::from(*b)).sum::<u16>()) {
        Ok(sum) => sum,
        Err(status) => return IoctlResult::status(status),
    };
    match call.with_output(|out| out[..2].copy_from_slice(&sum.to_le_bytes())) {
        Ok(()) => IoctlResult::success(2),
        Err(status) => IoctlResult::status(status),
    }
}

fn sum_config() -> NtResult<IoctlHandlerConfig> {
    Ok(IoctlHandlerConfig {
        table: IoctlTable::new([IoctlEntry::new(IOCTL_SUM, 4, 2, sum_handler)?])?,
        device_interface: Some(GUID),
        ..IoctlHandlerConfig::default()
    })
}

fn open(c: &mut Ctx<'_>) -> Option<Handle> {
    let app = Application::new(
        c.machine,
        AppConfig {
            administrator: false,
            name: "user".to_owned(),
        },
    );
    c.sim(
        "open",
        app.open_interface(simulator::sim_guid(GUID), Access::READ_WRITE),
    )
}

/// Opens the interface, sends one IOCTL_SUM and closes the handle.
fn sum_once(c: &mut Ctx<'_>) {
    if let Some(handle) = open(c) {
        if let Some(answer) = c.sim(
            "IOCTL",
            handle.device_io_control(IOCTL_SUM, &[1, 2, 3, 4], 2),
        ) {
            c.expect("IOCTL", &answer, &(vec![10, 0], 2));
        }
        handle.close();
    }
}

fn ioctl_handler(c: &mut Ctx<'_>) {
    let Some(config) = c.nt("IoctlHandler config", sum_config()) else {
        return;
    };
    simulator::install_driver(
        c.machine,
        "ioctlfdo",
        container_driver_config(
            move |_device: &Device, modules| {
                modules.add(IoctlHandler::with(config.clone()));
                Ok(())
            },
            false,
        ),
    );
    c.arm();
    let Some(node) = c.plug("ROOT\\IOCTLFDO", "ioctlfdo") else {
        return;
    };
    sum_once(c);
    c.remove(&node);
}

fn dynamic_ioctl_handler(c: &mut Ctx<'_>) {
    type Slot = Arc<Mutex<Option<dmf_core::module::DynamicModule<IoctlHandler>>>>;
    let slot = Slot::default();
    let owner: Arc<Mutex<Option<DmfDevice>>> = Arc::default();
    let (s, d) = (Arc::clone(&slot), Arc::clone(&owner));
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            let mut files = FileObjectConfig::default();
            let s1 = Arc::clone(&s);
            files.create = Some(Arc::new(move |_d: &Device, request: Request, file| {
                let mut io = IoRequest::new(None, request);
                let taken = lock(&s1)
                    .as_ref()
                    .map(|h| h.handle_file_create(&mut io, file));
                if taken != Some(Handled::Handled) {
                    if let Some(request) = io.into_request() {
                        request.complete(NtStatus::SUCCESS);
                    }
                }
            }));
            let s2 = Arc::clone(&s);
            files.close = Some(Arc::new(move |file| {
                if let Some(h) = lock(&s2).as_ref() {
                    h.handle_file_close(file);
                }
            }));
            dmf.hook_file_object_config(Some(files));
            let device = dmf.create_device(DeviceAttributes::default())?;
            let mut queue = QueueConfig::new_default(QueueDispatch::Parallel);
            let s3 = Arc::clone(&s);
            queue.device_control = Some(Arc::new(move |q, request: Request, _o, _i, _code| {
                let mut io = IoRequest::new(Some(q), request);
                let handler = lock(&s3).as_ref().map(|h| (*h).clone());
                if handler.map(|h| h.handle_device_io_control(&mut io)) != Some(Handled::Handled) {
                    if let Some(request) = io.into_request() {
                        request.complete(NtStatus::NOT_SUPPORTED);
                    }
                }
            }));
            device.create_queue(dmf.hook_queue_config(queue)?)?;
            let created = dmf.modules_create()?;
            let handler = IoctlHandler::with(sum_config()?).create(created.collection())?;
            *lock(&s) = Some(handler);
            *lock(&d) = Some(created);
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(c.machine, "dynioctl", config);
    c.arm();
    let node = c.plug("ROOT\\DYNIOCTL", "dynioctl");
    if node.is_some() {
        sum_once(c);
    }
    // The owner deletes the handler before its device goes (the callbacks hold the slot).
    drop(take(&slot));
    drop(take(&owner));
    if let Some(node) = node {
        c.remove(&node);
    }
}

/// How the IOCTL_WAIT handler parks its request in the Module (a refused request comes back).
type Park<M> = fn(&M, Request) -> Result<(), (Request, NtStatus)>;

/// Installs the `notifier` driver: its device adds the Module `spec` makes, then an IoctlHandler
/// on [`GUID`] whose IOCTL_WAIT hands the request to `park` with the Module; plugs the device in.
/// The slot holds the Module's handle once created: the scenario empties it before the removal
/// (the handler's table holds the slot, the slot the Module: a cycle until then).
fn notifier<M: Module + Clone + Send + 'static>(
    c: &mut Ctx<'_>,
    spec: impl Fn() -> ModuleSpec<M> + Send + Sync + 'static,
    park: Park<M>,
) -> (Option<DeviceNode>, Arc<Mutex<Option<M>>>) {
    let slot: Arc<Mutex<Option<M>>> = Arc::default();
    let s = Arc::clone(&slot);
    let spec = Arc::new(spec);
    let driver = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            let parked = Arc::clone(&s);
            let table = IoctlTable::new([IoctlEntry::new(IOCTL_WAIT, 0, 0, move |call| {
                let Some((request, pended)) = call.take() else {
                    return IoctlResult::status(NtStatus::INVALID_DEVICE_STATE);
                };
                let module = lock(&parked).clone();
                let result = match &module {
                    Some(module) => park(module, request),
                    None => Err((request, NtStatus::INVALID_DEVICE_STATE)),
                };
                if let Err((request, status)) = result {
                    request.complete(status);
                }
                IoctlResult::Pending(pended)
            })?])?;
            let token = Arc::new(Mutex::new(None));
            let (t, spec) = (Arc::clone(&token), Arc::clone(&spec));
            dmf.set_modules_add(move |_device, modules| {
                *lock(&t) = Some(modules.add(spec()));
                modules.add(IoctlHandler::with(IoctlHandlerConfig {
                    table: table.clone(),
                    device_interface: Some(GUID),
                    ..IoctlHandlerConfig::default()
                }));
                Ok(())
            })?;
            dmf.create_device(DeviceAttributes::default())?;
            let device = dmf.modules_create()?;
            let token = lock(&token).take().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
            *lock(&s) = Some(device.get(token)?);
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(c.machine, "notifier", driver);
    c.arm();
    let node = c.plug("ROOT\\NOTIFIER", "notifier");
    (node, slot)
}

/// An inverted-call request an application parked: what it must come back with, given the
/// events the driver reported and kept (`queued`, oldest first) — or still pending when none
/// is kept (then cancelled).
fn parked_result(c: &mut Ctx<'_>, pending: &PendingIo, queued: &mut Vec<Vec<u8>>) {
    c.machine.settle();
    match pending.result() {
        Some(Ok((data, information))) => {
            if queued.is_empty() {
                c.problem(format_args!(
                    "IOCTL_WAIT completed with {data:?} and no event"
                ));
            } else {
                let event = queued.remove(0);
                c.expect(
                    "IOCTL_WAIT",
                    &(data, information),
                    &(event.clone(), event.len()),
                );
            }
        }
        Some(Err(status)) => c.status("IOCTL_WAIT", NtStatus::from_raw(status.0)),
        None => {
            if !queued.is_empty() {
                c.problem(format_args!("IOCTL_WAIT still pending with an event kept"));
            }
            pending.cancel();
            c.machine.settle();
        }
    }
}

/// A parked request cancelled (by the application or its handle's close): it comes back with
/// `STATUS_CANCELLED` (or the failure that refused it).
fn cancelled_result(c: &mut Ctx<'_>, what: &str, pending: &PendingIo) {
    c.machine.settle();
    match pending.result() {
        Some(Ok(answer)) => c.problem(format_args!("{what} completed with {answer:?}")),
        Some(Err(status)) if status == Status::CANCELLED => {}
        Some(Err(status)) => c.status(what, NtStatus::from_raw(status.0)),
        None => {
            c.problem(format_args!("{what}: the request is still pending"));
            pending.cancel();
            c.machine.settle();
        }
    }
}

fn notify_user_with_request(c: &mut Ctx<'_>) {
    let config = NotifyUserWithRequestConfig {
        maximum_pending_requests: 2,
        maximum_pending_data_buffers: 2,
        size_of_data_buffer: 4,
        data_cleanup: Some(Arc::new(|_data: &[u8]| {})),
        time_stamping: true,
        ..NotifyUserWithRequestConfig::default()
    };
    let (node, slot) = notifier(
        c,
        move || NotifyUserWithRequest::with(config.clone()),
        NotifyUserWithRequest::request_process,
    );
    let module = lock(&slot).clone();
    let Some(node) = node else {
        drop(take(&slot));
        return;
    };
    if let (Some(notify), Some(handle)) = (module, open(c)) {
        // An event for a parked request, then one kept for the next request.
        let mut queued = Vec::new();
        let first = c.sim(
            "IOCTL_WAIT",
            handle.device_io_control_overlapped(IOCTL_WAIT, &[], 4),
        );
        c.machine.settle();
        for event in [&[1_u8, 2, 3, 4][..], &[5, 6]] {
            if c.nt(
                "data_process",
                notify.data_process(NtStatus::SUCCESS, event),
            )
            .is_some()
            {
                queued.push(event.to_vec());
            }
            if let Some(first) = &first {
                if event.len() == 4 {
                    parked_result(c, first, &mut queued);
                }
            }
        }
        if let Some(second) = c.sim(
            "IOCTL_WAIT",
            handle.device_io_control_overlapped(IOCTL_WAIT, &[], 4),
        ) {
            parked_result(c, &second, &mut queued);
        }
        // One cancelled by the application, one parked when the handle closes.
        if let Some(third) = c.sim(
            "IOCTL_WAIT",
            handle.device_io_control_overlapped(IOCTL_WAIT, &[], 4),
        ) {
            if queued.is_empty() {
                c.machine.settle();
                third.cancel();
                cancelled_result(c, "cancelled IOCTL_WAIT", &third);
            } else {
                parked_result(c, &third, &mut queued);
            }
        }
        let fourth = c.sim(
            "IOCTL_WAIT",
            handle.device_io_control_overlapped(IOCTL_WAIT, &[], 4),
        );
        c.machine.settle();
        handle.close();
        if let Some(fourth) = fourth {
            if queued.is_empty() {
                cancelled_result(c, "IOCTL_WAIT parked at close", &fourth);
            } else {
                parked_result(c, &fourth, &mut queued);
            }
        }
    }
    c.machine.settle();
    drop(take(&slot));
    c.remove(&node);
}

fn notify_user_with_request_multiple(c: &mut Ctx<'_>) {
    let config = NotifyUserWithRequestMultipleConfig {
        maximum_pending_requests: 2,
        maximum_pending_data_buffers: 2,
        size_of_data_buffer: 2,
        ..NotifyUserWithRequestMultipleConfig::default()
    };
    let (node, slot) = notifier(
        c,
        move || NotifyUserWithRequestMultiple::with(config.clone()),
        NotifyUserWithRequestMultiple::request_process,
    );
    let module = lock(&slot).clone();
    let Some(node) = node else {
        drop(take(&slot));
        return;
    };
    if let (Some(multiple), Some(handle)) = (module, open(c)) {
        let mut queued = Vec::new();
        let waiting = c.sim(
            "IOCTL_WAIT",
            handle.device_io_control_overlapped(IOCTL_WAIT, &[], 2),
        );
        c.machine.settle();
        // An accepted client gets the broadcast; one whose arrival failed gets nothing.
        let client = c.nt("clients", multiple.clients()) == Some(1);
        if c.nt(
            "data_broadcast",
            multiple.data_broadcast(&[7, 7], NtStatus::SUCCESS),
        )
        .is_some()
            && client
        {
            queued.push(vec![7, 7]);
        }
        if let Some(waiting) = waiting {
            parked_result(c, &waiting, &mut queued);
        }
        handle.close();
    }
    c.machine.settle();
    drop(take(&slot));
    c.remove(&node);
}

// ---------------------------------------------------------------- Pdo

const PDO_CHILD_ID: &str = "DmfSweep\\Child";

#[allow(
    clippy::unnecessary_wraps,
    reason = "the signature of Pdo's `PdoModulesAddFn`"
)]
fn pdo_child_modules(_device: &Device, modules: &mut ModuleInit) -> NtResult<()> {
    modules.add(Time::with(()));
    Ok(())
}

static PDO_RECORDS: [PdoRecord<'static>; 1] = [PdoRecord {
    hardware_ids: &[PDO_CHILD_ID],
    description: "Static child %u",
    serial_number: 1,
    modules_add: Some(pdo_child_modules),
    ..PdoRecord::EMPTY
}];

/// A bus device with a Pdo: its static child at the first D0Entry, a child plugged and
/// unplugged, one with its own Modules plugged and ejected, the rest unplugged, then the bus
/// removed.
fn pdo(c: &mut Ctx<'_>) {
    simulator::install_driver(
        c.machine,
        "pdochild",
        DriverConfig {
            device_add: Arc::new(|_driver, init| {
                use dmf_core::platform::contract::device::PlatformDeviceInit;
                init.create_device().map(|_| ())
            }),
            unload: None,
        },
    );
    kmdf_sim::driver::bind_hardware_id(c.machine, PDO_CHILD_ID, "pdochild");
    let slot = driver_support::install(c.machine, "pdobus", false, |init| {
        init.add(Pdo::with(PdoConfig {
            pdo_records: &PDO_RECORDS,
            ..PdoConfig::default()
        }))
    });
    c.arm();
    let node = c.plug("ROOT\\PdoBus", "pdobus");
    let module = take(&slot);
    let Some(node) = node else {
        return;
    };
    if let Some((_device, pdo)) = &module {
        if let Some(child) = c.nt(
            "device_plug",
            pdo.device_plug(&[PDO_CHILD_ID], &[], "Child %u", 2),
        ) {
            c.nt("device_unplug", pdo.device_unplug(&child));
        }
        let record = PdoRecord {
            hardware_ids: &[PDO_CHILD_ID],
            description: "Child with Modules %u",
            serial_number: 3,
            modules_add: Some(pdo_child_modules),
            ..PdoRecord::EMPTY
        };
        if c.nt("device_plug_ex", pdo.device_plug_ex(&record))
            .is_some()
        {
            c.nt("device_eject", pdo.device_eject_using_serial_number(3));
        }
        c.nt("device_unplug_all", pdo.device_unplug_all());
    }
    drop(module);
    c.remove(&node);
}
