//! Hostile-input scenarios shared by the bounded property tests (`tests/proptest_hostile.rs`) and
//! the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, which include this file with `#[path]`).
//! Each scenario decodes arbitrary bytes into its inputs with [`Bytes`] (exhausted input reads
//! as zeros, so every byte string is a valid scenario), runs them on a fresh kmdf-sim machine
//! and returns `Err(description)` when a property does not hold. A panic is a failure too.
//!
//! - [`ioctl_handler_dispatch`]: an IoctlHandler (arbitrary table, access mode, exclusive, filter
//!   or function driver) and an application (administrator or not) sending arbitrary IOCTLs.
//! - [`target_request_format`]: RequestTarget / DefaultTarget / ContinuousRequestTarget sends
//!   with arbitrary kinds, codes, lengths and time-outs to an echo driver.
//! - [`module_config`]: arbitrary configs of the Modules that validate theirs at create.
#![allow(clippy::many_single_char_names)] // reason: decoders name their byte source `b` and the spec `s`, as the scenarios read
#![allow(dead_code, clippy::too_many_lines)]

#[path = "../driver_support/mod.rs"]
mod driver_support;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf_core::device::container_driver_config;
use dmf_core::module::{CollectionConfig, ModuleCollection, ModuleInit, NoParent};
use dmf_core::platform::contract::device::{Guid, PlatformDevice};
use dmf_core::platform::contract::io::{
    PlatformIoTarget, PlatformRequest, QueueDispatch, TargetOpenParams,
};
use dmf_core::platform::{simulator, Device, DriverConfig, QueueConfig, Request};
use dmf_core::NtStatus;
use dmf_modules::continuous_request_target::{
    BufferDisposition, ContinuousRequestTarget, ContinuousRequestTargetConfig, StreamMode,
};
use dmf_modules::default_target::{DefaultTarget, DefaultTargetConfig};
use dmf_modules::ioctl_handler::{
    IoctlAccessMode, IoctlEntry, IoctlHandler, IoctlHandlerConfig, IoctlResult, IoctlTable,
};
use dmf_modules::request_target::{
    RequestKind, RequestSender, RequestTarget, SendCompletion, SendRequest,
};
use kmdf_sim::io::{Access, AppConfig, Application};
use kmdf_sim::pnp::{DeviceNode, StackSpec};
use kmdf_sim::{Machine, Status, VerifierMode};

/// A property failed: the description.
pub type Verdict = Result<(), String>;

macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

// ------------------------------------------------------------------------------------ decoding

/// Arbitrary bytes read as a stream of choices; past the end every read is 0.
pub struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, at: 0 }
    }

    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.u8()) % n
    }

    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len())]
    }

    /// A buffer length an application or a driver might pass: the edges (0, 1, around
    /// `near`), small values, page-ish values, and — when `huge` — lengths no one could
    /// allocate (`u32::MAX`, `usize::MAX`), which must cost nothing where the length is the
    /// caller's.
    pub fn length(&mut self, near: usize, huge: bool) -> usize {
        match self.u8() % 16 {
            0 => 0,
            1 => 1,
            2 => near.saturating_sub(1),
            3 => near,
            4 => near.saturating_add(1),
            5 => 4096,
            6 if huge => usize::try_from(u32::MAX).unwrap_or(usize::MAX),
            7 if huge => usize::MAX,
            8 if huge => 1 << 31,
            _ => usize::from(self.u8()) % 64,
        }
    }

    /// A u32 config value: edges, small values, powers of two, and the extremes.
    pub fn config_u32(&mut self) -> u32 {
        match self.u8() % 12 {
            0 => 0,
            1 => 1,
            2 => u32::MAX,
            3 => u32::MAX / 2 + 1,
            4 => 1 << 16,
            5 => 4096,
            6 => u32::from(self.u8()),
            _ => u32::from(self.u8() % 16),
        }
    }

    /// An IOCTL code: `CTL_CODE(device type, function, method, access)` of a few device types,
    /// or any 32 bits.
    pub fn ioctl_code(&mut self) -> u32 {
        if self.u8().is_multiple_of(4) {
            return self.u32();
        }
        let device_type = self.pick(&[0x22u32, 0x8000, 0xFFFF, 0]);
        let function = u32::from(self.u16()) & 0xFFF;
        let method = u32::from(self.u8()) & 3;
        let access = u32::from(self.u8()) & 3;
        (device_type << 16) | (access << 14) | (function << 2) | method
    }

    /// A time-out: none, zero, short, long, or one that overflows any deadline arithmetic.
    pub fn timeout(&mut self) -> Option<Duration> {
        match self.u8() % 8 {
            0 | 1 => None,
            2 => Some(Duration::ZERO),
            3 => Some(Duration::from_millis(u64::from(self.u8()))),
            4 => Some(Duration::MAX),
            5 => Some(Duration::from_secs(u64::MAX)),
            6 => Some(Duration::from_nanos(u64::MAX)),
            _ => Some(Duration::from_hours(1)),
        }
    }

    pub fn status(&mut self) -> NtStatus {
        self.pick(&[
            NtStatus::DEVICE_BUSY,
            NtStatus::INVALID_PARAMETER,
            NtStatus::INVALID_DEVICE_REQUEST,
            NtStatus::UNSUCCESSFUL,
            NtStatus::ACCESS_DENIED,
            NtStatus::BUFFER_TOO_SMALL,
        ])
    }
}

// ------------------------------------------------------------------------------------ machine

const GUID: Guid = Guid::new(
    0x0BAD_F00D,
    0x1234,
    0x4321,
    [0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04],
);

fn st(status: NtStatus) -> Status {
    Status(status.to_raw())
}

/// A machine whose verifier records violations instead of bug-checking.
fn machine() -> Machine {
    Machine::builder().verifier(VerifierMode::Record).build()
}

/// The end of every scenario: no crash, no verifier violation, no pool or WDF object left.
fn clean(machine: &Machine) -> Verdict {
    machine.settle();
    check!(machine.crash().is_none(), "crash: {:?}", machine.crash());
    let violations = machine.verifier().violations();
    check!(violations.is_empty(), "verifier: {violations:?}");
    let pool = machine.pool().outstanding();
    check!(pool.is_empty(), "pool outstanding: {pool:?}");
    let objects = kmdf_sim::object::live_objects(machine);
    check!(objects.is_empty(), "live objects: {objects:?}");
    Ok(())
}

/// A driver that answers everything: IOCTLs with `min(code & 0xFF, output)` bytes (or an error
/// when bit 8 of the code is set), reads with their length, writes with theirs. Creates the
/// interface [`GUID`] when `interface`. Counts the requests that reach it.
fn echo_driver(reached: Arc<AtomicUsize>, interface: bool) -> DriverConfig {
    DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            use dmf_core::platform::contract::device::PlatformDeviceInit;
            let device = init.create_device()?;
            let mut queue = QueueConfig::new_default(QueueDispatch::Parallel);
            let control = {
                let r = Arc::clone(&reached);
                Arc::new(
                    move |_q: &_, req: Request, output: usize, _input: usize, code: u32| {
                        r.fetch_add(1, Ordering::SeqCst);
                        if code & 0x100 != 0 {
                            req.complete(NtStatus::INVALID_DEVICE_REQUEST);
                        } else {
                            let information = ((code & 0xFF) as usize).min(output);
                            req.complete_with_information(NtStatus::SUCCESS, information);
                        }
                    },
                )
            };
            queue.device_control = Some(control.clone());
            queue.internal_device_control = Some(control);
            let r = Arc::clone(&reached);
            queue.read = Some(Arc::new(move |_q, req: Request, length| {
                r.fetch_add(1, Ordering::SeqCst);
                req.complete_with_information(NtStatus::SUCCESS, length.min(16));
            }));
            let r = Arc::clone(&reached);
            queue.write = Some(Arc::new(move |_q, req: Request, length| {
                r.fetch_add(1, Ordering::SeqCst);
                req.complete_with_information(NtStatus::SUCCESS, length);
            }));
            device.create_queue(queue)?;
            if interface {
                device.create_interface(GUID, None)?;
            }
            Ok(())
        }),
        unload: None,
    }
}

// ------------------------------------------------------------------------- IoctlHandler dispatch

/// What a table entry's handler does.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// Writes up to 4 bytes of 0x5A, succeeds with this information (clamped by the Module).
    Success(usize),
    /// Completes with an error status.
    Fail(NtStatus),
    /// Takes the request and completes it itself, with no information.
    Take,
    /// `STATUS_BUFFER_OVERFLOW` (a warning) with this information.
    Overflow(usize),
}

#[derive(Clone, Debug)]
struct EntrySpec {
    code: u32,
    input_minimum: usize,
    output_minimum: usize,
    administrator_only: bool,
    behaviour: Behaviour,
}

/// What the handlers saw: request ID → (calls, input length, output length, input view length,
/// output view length).
type Seen = Arc<
    Mutex<
        Vec<(
            u64,
            usize,
            usize,
            Result<usize, NtStatus>,
            Result<usize, NtStatus>,
        )>,
    >,
>;

fn entry(spec: &EntrySpec, seen: &Seen) -> IoctlEntry {
    let (spec_c, seen) = (spec.clone(), Arc::clone(seen));
    let e = IoctlEntry::new(
        spec.code,
        spec.input_minimum,
        spec.output_minimum,
        move |call| {
            let id = call.request().map_or(u64::MAX, PlatformRequest::id);
            let input_view = call.with_input(<[u8]>::len);
            let output_view = call.with_output(|out| {
                let n = out.len().min(4);
                out[..n].fill(0x5A);
                out.len()
            });
            seen.lock().unwrap().push((
                id,
                call.input_length(),
                call.output_length(),
                input_view,
                output_view,
            ));
            match spec_c.behaviour {
                Behaviour::Success(information) => IoctlResult::success(information),
                Behaviour::Fail(status) => IoctlResult::status(status),
                Behaviour::Take => match call.take() {
                    Some((request, pended)) => {
                        request.complete_with_information(NtStatus::SUCCESS, 0);
                        IoctlResult::Pending(pended)
                    }
                    None => IoctlResult::status(NtStatus::INTERNAL_ERROR),
                },
                Behaviour::Overflow(information) => IoctlResult::Complete {
                    status: NtStatus::BUFFER_OVERFLOW,
                    information,
                },
            }
        },
    )
    .unwrap();
    if spec.administrator_only {
        e.administrator_only()
    } else {
        e
    }
}

/// An IoctlHandler with an arbitrary table and access settings, in a function driver or in a
/// filter over [`echo_driver`]; an application, administrator or not, opens the interface (and
/// tries a second handle) and sends arbitrary IOCTLs with arbitrary lengths and contents.
///
/// Properties: no panic, no verifier violation, nothing leaked; every request completes exactly
/// once with the status the rules give — table codes refused with `STATUS_ACCESS_DENIED` where
/// the caller may not send them (before any size check), `STATUS_BUFFER_TOO_SMALL` below the
/// table's minimums, unknown codes `STATUS_NOT_SUPPORTED` in a function driver and passed down in
/// a filter; a handler runs once per valid request and only for those, and sees buffers of
/// exactly the request's lengths.
pub fn ioctl_handler_dispatch(data: &[u8]) -> Verdict {
    let mut b = Bytes::new(data);
    let filter = b.bool();
    let administrator = b.bool();
    let exclusive = b.bool();
    let kernel_mode_requests_only = b.u8().is_multiple_of(4);
    let forward_unhandled_requests = !filter && b.u8().is_multiple_of(4);
    let mode = b.below(3);
    let access_mode = match mode {
        0 => IoctlAccessMode::Default,
        1 => IoctlAccessMode::AdministratorOnly,
        _ => IoctlAccessMode::AdministratorOnlyPerIoctl,
    };
    let specs: Vec<EntrySpec> = (0..b.below(6))
        .map(|_| EntrySpec {
            code: b.ioctl_code(),
            input_minimum: b.length(8, true),
            output_minimum: b.length(8, true),
            administrator_only: b.bool(),
            behaviour: match b.u8() % 4 {
                0 => Behaviour::Success(b.length(8, true)),
                1 => Behaviour::Fail(b.status()),
                2 => Behaviour::Take,
                _ => Behaviour::Overflow(b.length(8, true)),
            },
        })
        .collect();
    let seen = Seen::default();
    let config = IoctlHandlerConfig {
        table: IoctlTable::new(specs.iter().map(|s| entry(s, &seen))).unwrap(),
        access_mode,
        exclusive,
        device_interface: (!filter).then_some(GUID),
        kernel_mode_requests_only,
        forward_unhandled_requests,
        ..IoctlHandlerConfig::default()
    };
    let label = format!(
        "filter {filter} admin {administrator} exclusive {exclusive} kernel-only \
         {kernel_mode_requests_only} forward {forward_unhandled_requests} {config:?}"
    );

    let machine = machine();
    let _bound = machine.enter();
    let reached = Arc::new(AtomicUsize::new(0));
    let cfg = config.clone();
    let node = if filter {
        simulator::install_driver(&machine, "lower", echo_driver(Arc::clone(&reached), true));
        simulator::install_driver(
            &machine,
            "upper",
            container_driver_config(
                move |_device: &Device, modules| {
                    modules.add(IoctlHandler::with(cfg.clone()));
                    Ok(())
                },
                true,
            ),
        );
        machine
            .pnp()
            .plug_in(StackSpec::new("ROOT\\HOSTILE", "lower").upper_filter("upper"))
    } else {
        simulator::install_driver(
            &machine,
            "function",
            container_driver_config(
                move |_device: &Device, modules| {
                    modules.add(IoctlHandler::with(cfg.clone()));
                    Ok(())
                },
                false,
            ),
        );
        machine
            .pnp()
            .plug_in(StackSpec::new("ROOT\\HOSTILE", "function"))
    };
    let node = node.map_err(|s| format!("{label}: plug in: {s:?}"))?;
    let app = Application::new(
        &machine,
        AppConfig {
            administrator,
            name: "hostile".to_owned(),
        },
    );
    let open = || app.open_interface(simulator::sim_guid(GUID), Access::READ_WRITE);
    let opened = open();
    let may_open = administrator || !matches!(mode, 1);
    let Ok(handle) = opened else {
        check!(
            !may_open && opened.as_ref().err() == Some(&Status::ACCESS_DENIED),
            "{label}: open: {:?}",
            opened.err()
        );
        node.remove().map_err(|s| format!("remove: {s:?}"))?;
        return clean(&machine);
    };
    check!(
        may_open,
        "{label}: a non-administrator opened an AdministratorOnly device"
    );
    if exclusive {
        let second = open();
        check!(
            second.as_ref().err() == Some(&Status::ACCESS_DENIED),
            "{label}: a second handle of an exclusive device: {:?}",
            second.as_ref().map(|_| ())
        );
        if let Ok(second) = second {
            second.close();
        }
    }

    let mut log = String::new();
    for _ in 0..=b.below(8) {
        let code = if !specs.is_empty() && b.bool() {
            specs[b.below(specs.len())].code
        } else {
            b.ioctl_code()
        };
        let known = specs.iter().find(|s| s.code == code);
        let near_in = known.map_or(8, |s| s.input_minimum.min(4096));
        let near_out = known.map_or(8, |s| s.output_minimum);
        // The input is the application's own memory: at most a page or two.
        let input_length = b.length(near_in, false).min(8192);
        // DeviceIoControl's nOutBufferSize is a DWORD.
        let output_length = b.length(near_out, true).min(u32::MAX as usize);
        let fill = b.u8();
        let input = vec![fill; input_length];
        let _ = writeln!(log, "{code:#010X} in {input_length} out {output_length}");
        let here = format!("{label}\n{log}");
        let seen_before = seen.lock().unwrap().len();
        let reached_before = reached.load(Ordering::SeqCst);
        let pending = handle.device_io_control_overlapped(code, &input, output_length);
        let Ok(pending) = pending else {
            // Refused by the I/O manager before any driver: the handle lacks the code's access,
            // or the METHOD_BUFFERED system buffer (max(input, output)) is more than the pool
            // grants.
            let refused_access = !Access::READ_WRITE.allows_ioctl(code)
                && pending.as_ref().err() == Some(&Status::ACCESS_DENIED);
            let refused_size = code.trailing_zeros() >= 2 // METHOD_BUFFERED (the low two bits clear)
                && input_length.max(output_length) > kmdf_sim::pool::MAX_ALLOCATION
                && pending.as_ref().err() == Some(&Status::INSUFFICIENT_RESOURCES);
            check!(
                refused_access || refused_size,
                "{here}: not issued: {:?}",
                pending.err()
            );
            check!(
                seen.lock().unwrap().len() == seen_before,
                "{here}: a refused IOCTL reached the handler"
            );
            continue;
        };
        let Some(result) = pending.wait(None) else {
            return Err(format!("{here}: never completed"));
        };
        let status = pending
            .status()
            .ok_or_else(|| format!("{here}: no status"))?;
        let calls: Vec<_> = seen.lock().unwrap()[seen_before..].to_vec();
        let passed_down = reached.load(Ordering::SeqCst) - reached_before;
        match known {
            None => {
                check!(
                    calls.is_empty(),
                    "{here}: a handler ran for an unknown code"
                );
                if forward_unhandled_requests {
                    // A function driver with no driver below: the bus driver answers.
                    check!(
                        status != Status::NOT_SUPPORTED || code & 0x100 != 0,
                        "{here}: not forwarded ({status:?})"
                    );
                } else if filter {
                    check!(passed_down == 1, "{here}: not passed down ({status:?})");
                    let expected = if code & 0x100 != 0 {
                        st(NtStatus::INVALID_DEVICE_REQUEST)
                    } else {
                        Status::SUCCESS
                    };
                    check!(status == expected, "{here}: passed down: {status:?}");
                } else {
                    check!(passed_down == 0, "{here}: passed down in a function driver");
                    check!(
                        status == Status::NOT_SUPPORTED,
                        "{here}: unknown code: {status:?}"
                    );
                }
            }
            Some(spec) => {
                check!(passed_down == 0, "{here}: a table code was passed down");
                let denied = kernel_mode_requests_only
                    || (!administrator && (mode == 1 || (mode == 2 && spec.administrator_only)));
                let too_small =
                    input_length < spec.input_minimum || output_length < spec.output_minimum;
                if denied {
                    check!(
                        status == Status::ACCESS_DENIED,
                        "{here}: denied caller got {status:?}"
                    );
                    check!(calls.is_empty(), "{here}: handler ran for a denied caller");
                } else if too_small {
                    check!(
                        status == Status::BUFFER_TOO_SMALL,
                        "{here}: short buffer got {status:?}"
                    );
                    check!(calls.is_empty(), "{here}: handler ran for a short buffer");
                } else {
                    check!(calls.len() == 1, "{here}: handler calls {}", calls.len());
                    let (id, input_seen, output_seen, input_view, output_view) = calls[0];
                    check!(id == pending.request_id(), "{here}: another request");
                    check!(
                        (input_seen, output_seen) == (input_length, output_length),
                        "{here}: handler saw lengths {input_seen}/{output_seen}"
                    );
                    // METHOD_NEITHER buffers are the caller's, only mapped in caller context: a
                    // handler may be refused them with a status, never given the wrong length.
                    let neither = code & 3 == 3;
                    check!(
                        input_view == Ok(input_length) || (neither && input_view.is_err()),
                        "{here}: input view {input_view:?}"
                    );
                    check!(
                        output_view == Ok(output_length) || (neither && output_view.is_err()),
                        "{here}: output view {output_view:?}"
                    );
                    match spec.behaviour {
                        Behaviour::Success(information) => {
                            let information = information.min(output_length);
                            check!(
                                matches!(&result, Ok((_, i)) if *i == information),
                                "{here}: success: {result:?}"
                            );
                        }
                        Behaviour::Fail(failure) => {
                            check!(status == st(failure), "{here}: failure: {status:?}");
                        }
                        Behaviour::Take => {
                            check!(matches!(&result, Ok((_, 0))), "{here}: taken: {result:?}");
                        }
                        Behaviour::Overflow(_) => check!(
                            status == st(NtStatus::BUFFER_OVERFLOW),
                            "{here}: overflow: {status:?}"
                        ),
                    }
                }
            }
        }
    }
    handle.close();
    node.remove()
        .map_err(|s| format!("{label}: remove: {s:?}"))?;
    drop(app);
    clean(&machine).map_err(|e| format!("{label}\n{log}: {e}"))
}

// ------------------------------------------------------------------------ target request format

/// One send, decoded.
#[derive(Clone, Copy, Debug)]
struct SendSpec {
    kind: RequestKind,
    ioctl: u32,
    input_length: usize,
    output_length: usize,
    timeout: Option<Duration>,
    asynchronous: bool,
}

fn decode_send(b: &mut Bytes<'_>) -> SendSpec {
    SendSpec {
        kind: b.pick(&[
            RequestKind::Read,
            RequestKind::Write,
            RequestKind::Ioctl,
            RequestKind::InternalIoctl,
        ]),
        ioctl: b.ioctl_code(),
        // The input is the sender's memory: bounded.
        input_length: b.length(8, false).min(8192),
        // The output is allocated by the sender at the size it asks: the pool refuses what it
        // cannot give (kmdf-sim's limit is 1 GiB); keep the granted ones small.
        output_length: match b.length(8, true) {
            n if n > 1 << 20 && n <= 1 << 30 => 1 << 20,
            n => n,
        },
        timeout: b.timeout(),
        asynchronous: b.bool(),
    }
}

/// The Module under test, behind one send interface.
enum Sender {
    Request(RequestTarget),
    Default(DefaultTarget),
    Continuous(ContinuousRequestTarget),
}

type Callback = Box<dyn FnOnce(SendCompletion) + Send>;

impl SendSpec {
    /// The request as the target Modules take it (what the kind does not use is dropped there).
    fn request<'a>(&self, input: &'a [u8]) -> SendRequest<'a> {
        SendRequest::new(self.kind, self.ioctl, input, self.output_length).timeout(self.timeout)
    }

    /// Whether it asks for more output than a request's `ULONG` length field can carry (a write
    /// asks for none): refused with `STATUS_INVALID_PARAMETER` before anything is allocated.
    fn too_long(&self) -> bool {
        self.kind != RequestKind::Write && u32::try_from(self.output_length).is_err()
    }
}

impl Sender {
    fn send_synchronously(&self, s: &SendSpec, input: &[u8]) -> Result<(Vec<u8>, usize), NtStatus> {
        let request = s.request(input);
        match self {
            Sender::Request(m) => m.send_synchronously(&request),
            Sender::Default(m) => m.send_synchronously(&request),
            Sender::Continuous(m) => m.send_synchronously(&request),
        }
    }

    fn send(&self, s: &SendSpec, input: &[u8], callback: Callback) -> Result<(), NtStatus> {
        let request = s.request(input);
        match self {
            Sender::Request(m) => m.send(&request, callback).map(|_| ()),
            Sender::Default(m) => m.send(&request, callback).map(|_| ()),
            Sender::Continuous(m) => m.send(&request, callback).map(|_| ()),
        }
    }
}

/// A client driver with a RequestTarget, a DefaultTarget (as a filter over [`echo_driver`]) or a
/// ContinuousRequestTarget (arbitrary stream config, stream started), sending arbitrary requests
/// — kind, IOCTL code, input and output lengths, time-out, synchronous or not — to the echo
/// driver.
///
/// Properties: no panic; a send either is refused with a status or completes, and every accepted
/// asynchronous send's callback runs exactly once; a send asking for more output than a request
/// can carry is refused with `STATUS_INVALID_PARAMETER`; a completion's output is never longer than
/// its information or the requested output; the teardown leaves no violation and nothing leaked.
pub fn target_request_format(data: &[u8]) -> Verdict {
    let mut b = Bytes::new(data);
    let which = b.below(3);
    let stream = ContinuousRequestTargetConfig {
        request_count: u32::from(b.u8() % 4),
        request_type: b.pick(&[
            RequestKind::Read,
            RequestKind::Write,
            RequestKind::Ioctl,
            RequestKind::InternalIoctl,
        ]),
        ioctl_code: b.ioctl_code(),
        input_buffer_size: b.length(8, false),
        output_buffer_size: b.length(8, false),
        // One round per stream request: a stream to a driver that completes at once would
        // otherwise spin until stopped.
        output_callback: Some(Arc::new(|_, _| BufferDisposition::StopStreaming)),
        mode: b.pick(&[StreamMode::Manual, StreamMode::Automatic]),
        ..ContinuousRequestTargetConfig::default()
    };
    let start_stream = b.bool();
    let sends: Vec<SendSpec> = (0..=b.below(8)).map(|_| decode_send(&mut b)).collect();
    let label = format!("module {which} stream {stream:?} start {start_stream}\n{sends:#?}");

    let uptime = Duration::from_millis(1 + u64::from(b.u16()));
    let machine = machine();
    let _bound = machine.enter();
    // Not at time 0: deadlines are `now + timeout`.
    machine.advance(uptime);
    let reached = Arc::new(AtomicUsize::new(0));
    simulator::install_driver(
        &machine,
        "echo",
        echo_driver(Arc::clone(&reached), which != 1),
    );
    let plug = |spec: StackSpec| -> Result<DeviceNode, String> {
        machine
            .pnp()
            .plug_in(spec)
            .map_err(|s| format!("{label}: plug in: {s:?}"))
    };
    let mut nodes = Vec::new();
    let mut remote = None;
    let (device, sender) = match which {
        1 => {
            let config = DefaultTargetConfig {
                stream: (stream.request_count > 0).then(|| stream.clone()),
                output_callback: None,
            };
            let slot = driver_support::install(&machine, "client", true, move |init| {
                init.add(DefaultTarget::with(config.clone()))
            });
            nodes.push(plug(
                StackSpec::new("ROOT\\ECHO", "echo").upper_filter("client"),
            )?);
            let (device, module) = slot.lock().unwrap().take().ok_or("no client device")?;
            (device, Sender::Default(module))
        }
        n => {
            nodes.push(plug(StackSpec::new("ROOT\\ECHO", "echo"))?);
            let (device, sender) = if n == 0 {
                let slot = driver_support::install(&machine, "client", false, |init| {
                    init.add(RequestTarget::with(()))
                });
                nodes.push(plug(StackSpec::new("ROOT\\CLIENT", "client"))?);
                let (device, module) = slot.lock().unwrap().take().ok_or("no client device")?;
                (device, Sender::Request(module))
            } else {
                let config = stream.clone();
                let slot = driver_support::install(&machine, "client", false, move |init| {
                    init.add(ContinuousRequestTarget::with(config.clone()))
                });
                nodes.push(plug(StackSpec::new("ROOT\\CLIENT", "client"))?);
                let (device, module) = slot.lock().unwrap().take().ok_or("no client device")?;
                (device, Sender::Continuous(module))
            };
            let link =
                kmdf_sim::interface::interfaces_of_class(&machine, simulator::sim_guid(GUID))
                    .pop()
                    .ok_or("no echo interface")?;
            let target = device
                .create_io_target()
                .map_err(|s| format!("io target: {s:?}"))?;
            target
                .open(TargetOpenParams::by_name(&link))
                .map_err(|s| format!("open: {s:?}"))?;
            let set = match &sender {
                Sender::Request(m) => m.io_target_set(target.clone()),
                Sender::Continuous(m) => m.io_target_set(target.clone()),
                Sender::Default(_) => Ok(()),
            };
            set.map_err(|s| format!("io_target_set: {s:?}"))?;
            remote = Some(target);
            (device, sender)
        }
    };
    if start_stream {
        // Refused with a status (no stream configured, …) or started: either is fine.
        let _ = match &sender {
            Sender::Default(m) => m.stream_start(),
            Sender::Continuous(m) => m.stream_start(),
            Sender::Request(_) => Ok(()),
        };
    }

    let accepted = Arc::new(AtomicUsize::new(0));
    let called = Arc::new(AtomicUsize::new(0));
    let bad: Arc<Mutex<Option<String>>> = Arc::default();
    for (n, s) in sends.iter().enumerate() {
        let input = vec![0xC3u8; s.input_length];
        if s.asynchronous {
            let (called, bad, s_copy) = (Arc::clone(&called), Arc::clone(&bad), *s);
            let callback: Callback = Box::new(move |c: SendCompletion| {
                called.fetch_add(1, Ordering::SeqCst);
                if c.output.len() > c.information || c.output.len() > s_copy.output_length {
                    *bad.lock().unwrap() = Some(format!("send {n}: completion {c:?}"));
                }
            });
            let sent = sender.send(s, &input, callback);
            check!(
                !s.too_long() || sent == Err(NtStatus::INVALID_PARAMETER),
                "{label}: send {n}: a length no request can carry: {sent:?}"
            );
            if sent.is_ok() {
                accepted.fetch_add(1, Ordering::SeqCst);
            }
        } else {
            let sent = sender.send_synchronously(s, &input);
            check!(
                !s.too_long() || sent == Err(NtStatus::INVALID_PARAMETER),
                "{label}: send {n}: a length no request can carry: {sent:?}"
            );
            if let Ok((output, information)) = sent {
                check!(
                    output.len() <= information && output.len() <= s.output_length,
                    "{label}: send {n}: {} bytes of output, information {information}",
                    output.len()
                );
            }
        }
    }
    machine.settle();
    if start_stream {
        let _ = match &sender {
            Sender::Default(m) => m.stream_stop(),
            Sender::Continuous(m) => m.stream_stop(),
            Sender::Request(_) => Ok(()),
        };
    }
    if let Some(target) = remote.take() {
        match &sender {
            Sender::Request(m) => {
                let _ = m.io_target_clear();
            }
            Sender::Continuous(m) => {
                let _ = m.io_target_clear();
            }
            Sender::Default(_) => {}
        }
        target.close();
        drop(target);
    }
    drop(sender);
    drop(device);
    for node in nodes.into_iter().rev() {
        node.remove()
            .map_err(|s| format!("{label}: remove: {s:?}"))?;
    }
    machine.settle();
    check!(
        bad.lock().unwrap().is_none(),
        "{label}: {:?}",
        bad.lock().unwrap()
    );
    let (accepted, called) = (
        accepted.load(Ordering::SeqCst),
        called.load(Ordering::SeqCst),
    );
    check!(
        accepted == called,
        "{label}: {accepted} sends accepted, {called} callbacks"
    );
    clean(&machine).map_err(|e| format!("{label}: {e}"))
}

// ---------------------------------------------------------------------------- module config

/// Creates a Module with an arbitrary config — BufferPool (Source), RingBuffer, HashTable, Stack,
/// PingPongBuffer, AlertableSleep, QueuedWorkItem, ScheduledTask, ContinuousRequestTarget — under
/// `NoParent` or a device's collection, uses it once if created, and tears it down.
///
/// Properties: create either succeeds or fails with an error status, never panics; nothing is
/// leaked and the verifier stays clean after teardown.
pub fn module_config(data: &[u8]) -> Verdict {
    use dmf_modules::alertable_sleep::{AlertableSleep, AlertableSleepConfig};
    use dmf_modules::buffer_pool::{BufferPool, BufferPoolConfig, BufferPoolSourceSettings};
    use dmf_modules::hash_table::{HashTable, HashTableConfig};
    use dmf_modules::ping_pong_buffer::{PingPongBuffer, PingPongBufferConfig};
    use dmf_modules::queued_work_item::{QueuedWorkItem, QueuedWorkItemConfig};
    use dmf_modules::ring_buffer::{RingBuffer, RingBufferConfig, RingBufferMode};
    use dmf_modules::scheduled_task::{
        ExecuteWhen, ExecutionMode, Persistence, ScheduledTask, ScheduledTaskConfig,
        ScheduledTaskResult,
    };
    use dmf_modules::stack::{Stack, StackConfig};

    let mut b = Bytes::new(data);
    let which = b.below(9);
    let on_device = b.bool();
    let machine = machine();
    let _bound = machine.enter();
    let parent = if on_device {
        let (node, device) = simulator::plug_in_device(&machine, "config-test")
            .map_err(|s| format!("plug in: {s:?}"))?;
        let collection = ModuleCollection::create(
            ModuleInit::new(),
            CollectionConfig {
                device: Some(device.clone()),
                ..CollectionConfig::default()
            },
        )
        .map_err(|s| format!("collection: {s:?}"))?;
        Some((node, device, collection))
    } else {
        None
    };
    // Counts are bounded (a pool of four billion buffers is four billion allocations); sizes are
    // not: the Module must refuse what it cannot allocate.
    let count = |b: &mut Bytes<'_>| match b.config_u32() {
        n if n > 4096 && n != u32::MAX => 4096,
        n => n,
    };
    macro_rules! create {
        ($with:expr, $use:expr) => {{
            let created = match &parent {
                Some((_, _, collection)) => $with.create(collection),
                None => $with.create(&NoParent),
            };
            match created {
                Ok(module) => {
                    #[allow(clippy::redundant_closure_call)]
                    ($use)(&*module);
                    drop(module);
                    Ok(())
                }
                Err(status) => {
                    if status.is_error() {
                        Ok(())
                    } else {
                        Err(status)
                    }
                }
            }
        }};
    }
    let (label, result): (String, Result<(), NtStatus>) = match which {
        0 => {
            let mut settings = BufferPoolSourceSettings::new(count(&mut b), b.config_u32());
            settings.buffer_context_size = b.config_u32();
            settings.enable_look_aside = b.bool();
            settings.create_with_timer = b.bool();
            let label = format!("{settings:?}");
            let r = create!(
                BufferPool::with(BufferPoolConfig::source(settings)),
                |m: &BufferPool| {
                    if let Ok(buffer) = m.get() {
                        let _ = m.put(buffer);
                    }
                }
            );
            (label, r)
        }
        1 => {
            let config = RingBufferConfig {
                item_count: count(&mut b),
                item_size: b.config_u32(),
                mode: b.pick(&[
                    RingBufferMode::FailIfFullOnWrite,
                    RingBufferMode::DeleteOldestIfFullOnWrite,
                ]),
            };
            let item = vec![7u8; b.length(8, false)];
            (
                format!("{config:?}"),
                create!(RingBuffer::with(config), |m: &RingBuffer| {
                    let _ = m.write(&item);
                }),
            )
        }
        2 => {
            let config = HashTableConfig {
                maximum_key_length: b.config_u32(),
                maximum_value_length: b.config_u32(),
                maximum_table_size: count(&mut b),
                hash: None,
            };
            let (key, value) = (vec![1u8; b.length(4, false)], vec![2u8; b.length(4, false)]);
            (
                format!("{config:?}"),
                create!(HashTable::with(config), |m: &HashTable| {
                    let _ = m.write(&key, &value);
                }),
            )
        }
        3 => {
            let config = StackConfig {
                element_size: b.config_u32(),
                depth: count(&mut b),
                unbounded: b.bool(),
            };
            let element = vec![3u8; b.length(8, false)];
            (
                format!("{config:?}"),
                create!(Stack::with(config), |m: &Stack| {
                    let _ = m.push(&element);
                }),
            )
        }
        4 => {
            let config = PingPongBufferConfig {
                buffer_size: b.config_u32(),
            };
            (
                format!("{config:?}"),
                create!(PingPongBuffer::with(config), |_m: &PingPongBuffer| {}),
            )
        }
        5 => {
            let config = AlertableSleepConfig {
                event_count: count(&mut b).min(4096),
            };
            (
                format!("{config:?}"),
                create!(AlertableSleep::with(config), |_m: &AlertableSleep| {}),
            )
        }
        6 => {
            let config = QueuedWorkItemConfig {
                callback: Arc::new(|_, _| ScheduledTaskResult::Success),
                buffer_count: count(&mut b),
                buffer_size: b.config_u32(),
                enable_look_aside: b.bool(),
            };
            (
                format!("{config:?}"),
                create!(QueuedWorkItem::with(config), |_m: &QueuedWorkItem| {}),
            )
        }
        7 => {
            let persistence = if b.bool() {
                Persistence::NotPersistentAcrossReboots
            } else {
                Persistence::PersistentAcrossReboots {
                    driver: if b.bool() {
                        String::new()
                    } else {
                        "config-test".to_owned()
                    },
                    value_name: if b.bool() {
                        String::new()
                    } else {
                        "Count".to_owned()
                    },
                }
            };
            let config = ScheduledTaskConfig {
                callback: Arc::new(|_, _| ScheduledTaskResult::Success),
                persistence,
                execution_mode: b.pick(&[ExecutionMode::Immediate, ExecutionMode::Deferred]),
                execute_when: ExecuteWhen::Other,
                timer_period_on_success: b.timeout().unwrap_or_default(),
                timer_period_on_fail: b.timeout().unwrap_or_default(),
                time_before_initial_call: b.timeout().unwrap_or_default(),
            };
            (
                format!("{:?}", config.persistence),
                create!(ScheduledTask::with(config), |_m: &ScheduledTask| {}),
            )
        }
        _ => {
            let config = ContinuousRequestTargetConfig {
                request_count: b.config_u32(),
                request_type: b.pick(&[
                    RequestKind::Read,
                    RequestKind::Write,
                    RequestKind::Ioctl,
                    RequestKind::InternalIoctl,
                ]),
                ioctl_code: b.ioctl_code(),
                input_buffer_size: b.length(8, true),
                output_buffer_size: b.length(8, true),
                mode: b.pick(&[StreamMode::Manual, StreamMode::Automatic]),
                ..ContinuousRequestTargetConfig::default()
            };
            (
                format!("{config:?}"),
                create!(
                    ContinuousRequestTarget::with(config),
                    |m: &ContinuousRequestTarget| {
                        // No target: refused with a status.
                        let _ = m.stream_start();
                    }
                ),
            )
        }
    };
    let label = format!("module {which} on device {on_device}: {label}");
    if let Err(status) = result {
        return Err(format!(
            "{label}: create failed with a success status {status:?}"
        ));
    }
    if let Some((node, device, collection)) = parent {
        drop(collection);
        drop(device);
        node.remove()
            .map_err(|s| format!("{label}: remove: {s:?}"))?;
    }
    clean(&machine).map_err(|e| format!("{label}: {e}"))
}
