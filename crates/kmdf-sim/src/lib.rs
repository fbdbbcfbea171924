//! # kmdf-sim — a user-mode simulation of KMDF
//!
//! kmdf-sim runs kernel-mode driver code, written once against the KMDF model, as an ordinary
//! Rust program under `cargo test`. It knows nothing of DMF: it is the platform DMF's `sim`
//! backend runs on. This crate layer is the **execution core**:
//!
//! * [`Machine`] — one simulated computer (not a global: many run in parallel in one process),
//!   with its own virtual clock, DPC thread, system worker threads, verifier, pool, trace and
//!   fault injector;
//! * [`exec`] — IRQL, per-thread context, the [virtual clock](exec::clock), and the primitives
//!   drivers run on: [`Event`](exec::Event), [`SpinLock`](exec::SpinLock),
//!   [`WaitLock`](exec::WaitLock), [`Timer`](exec::Timer), [`WorkItem`](exec::WorkItem),
//!   [`Dpc`](exec::Dpc), [`SystemThread`](exec::SystemThread);
//! * [`verifier`] — Driver-Verifier-style rules, violations that read like bug checks, and
//!   [`invoke_callback`](verifier::invoke_callback), the one way the simulator calls a driver;
//! * [`pool`] — tagged allocations with leak reports; [`fault`] — fail the Nth allocation or object
//!   creation; [`trace`] — a time-stamped record of callbacks, requests and state changes;
//! * [`status`] — a minimal `NTSTATUS`.
//!
//! The WDF object tree, the PnP/power state machine, I/O queues and targets and the OSR FX2 board
//! model are built on top of this core.
//!
//! ## Writing a test
//!
//! Build a machine, bind the test thread with [`Machine::enter`] if it will wait on simulator
//! objects, create the driver's objects inside a [`DriverScope`](exec::DriverScope) (or let the
//! object model do it), and move **virtual** time with [`Machine::advance`]: nothing sleeps for
//! real, so a test of ten minutes of driver activity takes milliseconds. Check the
//! [`trace`](Machine::trace) and the [`verifier`](Machine::verifier).
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use kmdf_sim::exec::{current_irql, DriverScope, Irql, Timer, TimerConfig};
//! use kmdf_sim::{ClockMode, Machine};
//!
//! let machine = Machine::builder().clock(ClockMode::Manual).build();
//! let ticks = Arc::new(AtomicU32::new(0));
//!
//! // "Driver code": a periodic one-second timer.
//! let timer = {
//!     let _driver = DriverScope::enter("heartbeat");
//!     let ticks = Arc::clone(&ticks);
//!     Timer::new(&machine, TimerConfig::periodic("beat", 1000), move |_timer| {
//!         assert_eq!(current_irql(), Irql::Dispatch); // EvtTimerFunc runs at DISPATCH_LEVEL
//!         ticks.fetch_add(1, Ordering::SeqCst);
//!     })
//!     .unwrap()
//! };
//! timer.start(Duration::from_secs(1));
//!
//! // One simulated hour, in a blink.
//! machine.advance(Duration::from_secs(3600));
//! assert_eq!(ticks.load(Ordering::SeqCst), 3600);
//! assert_eq!(machine.now(), Duration::from_secs(3600));
//! assert_eq!(machine.trace().callbacks_for("heartbeat").len(), 3600);
//! assert!(machine.verifier().violations().is_empty());
//! ```
//!
//! ## A complete driver and application test
//!
//! The layers above the core — [`driver`], [`device`], [`io`], [`pnp`], and [`control`] for
//! non-PnP control devices — let a test install a
//! function driver, plug in a device it drives, and talk to it as an application would: here a
//! driver whose default queue echoes one IOCTL, driven from an [`Application`](io::Application)
//! on the same (test) thread.
//!
//! ```
//! use kmdf_sim::device::Device;
//! use kmdf_sim::driver::{self, DriverConfig};
//! use kmdf_sim::guid::Guid;
//! use kmdf_sim::io::{Access, AppConfig, Application, DispatchType, Queue, QueueConfig};
//! use kmdf_sim::object::{live_objects, ObjectAttributes};
//! use kmdf_sim::pnp::{NodeState, StackSpec};
//! use kmdf_sim::{Machine, Status};
//!
//! const GUID_DEVINTERFACE_ECHO: Guid = Guid::new(0x0EC0_0001, 0x1234, 0x5678, [0xAB; 8]);
//! // CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS)
//! const IOCTL_ECHO: u32 = (0x22 << 16) | (0x800 << 2);
//!
//! let machine = Machine::new();
//!
//! // DriverEntry: the package "echo" with its EvtDriverDeviceAdd.
//! driver::install(
//!     &machine,
//!     "echo",
//!     DriverConfig::new(|_driver, init| {
//!         let device = Device::create(init, ObjectAttributes::new())?; // WdfDeviceCreate
//!         device.create_interface(GUID_DEVINTERFACE_ECHO, None)?;
//!         // A parallel default queue whose EvtIoDeviceControl echoes the input buffer.
//!         Queue::create(
//!             &device,
//!             QueueConfig::new_default(DispatchType::Parallel).on_device_control(
//!                 |_queue, request, output_len, _input_len, code| {
//!                     if code != IOCTL_ECHO {
//!                         request.complete(Status::INVALID_DEVICE_REQUEST);
//!                         return;
//!                     }
//!                     let data = request.input_buffer(1).unwrap_or_default();
//!                     let n = data.len().min(output_len);
//!                     let echo = |out: &mut [u8]| out[..n].copy_from_slice(&data[..n]);
//!                     match request.with_output_buffer(n, echo) {
//!                         Ok(()) => request.complete_with_information(Status::SUCCESS, n),
//!                         Err(status) => request.complete(status),
//!                     }
//!                 },
//!             ),
//!             ObjectAttributes::new(),
//!         )?;
//!         Ok(())
//!     }),
//! );
//!
//! // Plug in a root-enumerated device: AddDevice, PrepareHardware, D0Entry, … run now.
//! let node = machine
//!     .pnp()
//!     .plug_in(StackSpec::new("ROOT\\ECHO", "echo"))
//!     .unwrap();
//! assert_eq!(node.state(), NodeState::Started);
//!
//! // The application: CreateFile on the interface, DeviceIoControl, CloseHandle.
//! let app = Application::new(
//!     &machine,
//!     AppConfig {
//!         administrator: false,
//!         name: "echo.exe".into(),
//!     },
//! );
//! let handle = app
//!     .open_interface(GUID_DEVINTERFACE_ECHO, Access::READ_WRITE)
//!     .unwrap();
//! let (output, information) = handle.device_io_control(IOCTL_ECHO, b"ping", 16).unwrap();
//! assert_eq!((output.as_slice(), information), (&b"ping"[..], 4));
//! assert_eq!(
//!     handle.device_io_control(0x0022_0FFC, &[], 0).unwrap_err(),
//!     Status::INVALID_DEVICE_REQUEST
//! );
//! handle.close();
//!
//! // Unplug (surprise removal), then check that nothing leaked and no rule was broken.
//! node.surprise_remove().unwrap();
//! assert_eq!(node.state(), NodeState::SurpriseRemoved);
//! assert!(live_objects(&machine).is_empty());
//! assert!(machine.pool().outstanding().is_empty());
//! assert!(machine.verifier().violations().is_empty());
//! assert!(machine
//!     .trace()
//!     .callbacks_for("echo")
//!     .iter()
//!     .any(|c| c == "EvtIoDeviceControl"));
//! ```
//!
//! A failing rule is a bug check: by default the verifier panics with text like
//! `DRIVER_VERIFIER_DETECTED_VIOLATION: WaitAtDispatch: driver 'x', object 'ev': …`. Tests that
//! prove a rule fires build the machine with [`VerifierMode::Record`] and read
//! `machine.verifier().violations()`.
// kmdf-sim is safe Rust throughout: a simulator of kernel code must not be the unsound part.
#![forbid(unsafe_code)]

pub mod exec;
pub mod fault;
pub mod machine;
pub mod narrate;
pub mod pool;
pub mod status;
pub mod trace;
pub mod verifier;

pub mod fx2;
pub mod guid;
pub mod hid;
pub mod registry;

pub mod control;
pub mod device;
pub mod driver;
pub mod interface;
pub mod object;
pub mod pnp;

pub mod io;

pub use exec::clock::ClockMode;
pub use exec::irql::Irql;
pub use machine::{Machine, MachineBuilder, MachineGuard, QueuesPaused};
pub use status::Status;
pub use verifier::{Rule, VerifierMode, Violation};
