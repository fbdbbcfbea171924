//! Allocation-failure sweep of the framework itself: a Module tree (static children, a Transport,
//! a feature Module, client event callbacks, a trace ring), the open phases, dynamic Modules under
//! each kind of parent, an interface binding, and a device built with `DmfDeviceInit` (hooks,
//! Modules-add, the hooked default queue, `modules_create`) that is started, sent a request and
//! removed — each run with its 1st, 2nd, 3rd, … allocation failing
//! (`dmf_core::platform::simulator::alloc_sweep`). Every run goes on to the end whatever failed;
//! it must end with a clean verifier verdict and no heap block left, and every failure a caller
//! sees must be `STATUS_INSUFFICIENT_RESOURCES`.
//!
//! One `#[test]` in this binary: heap blocks are counted process-wide.
#![cfg(feature = "sim")]

use std::sync::{Arc, Mutex};

use dmf_core::device::DmfDeviceInit;
use dmf_core::fallible::try_box;
use dmf_core::module::interface::{
    self, Binding, Interface, InterfaceProtocol, InterfaceTransport,
};
use dmf_core::module::{
    CollectionConfig, Dispatched, DynamicModule, Feature, Handled, IoRequest, ModuleCallbacks,
    ModuleCollection, ModuleInit, NoParent, PowerDeviceState,
};
use dmf_core::platform::contract::device::{DeviceAttributes, PlatformDevice};
use dmf_core::platform::contract::io::{PlatformRequest, QueueDispatch};
use dmf_core::platform::simulator::{self, alloc_sweep, CountingAllocator};
use dmf_core::platform::{DriverConfig, QueueConfig, Request};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};
use kmdf_sim::fault::FaultPoint;
use kmdf_sim::pnp::StackSpec;
use kmdf_sim::Machine;

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator;

/// The IOCTL the device's Module answers.
const IOCTL_MODULE: u32 = 0x0022_2000;
/// The IOCTL the client's queue callback answers.
const IOCTL_CLIENT: u32 = 0x0022_2004;

/// A Module with two static children, a Transport and a trace ring.
#[dmf_module(crate = ::dmf_core, config = (), context = u32, open = Create, lock = Dispatch, trace = 4, transport_required = true)]
struct Parent;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Parent {
    fn child_modules_add(_m: &Dispatched<'_, Self>, init: &mut ModuleInit) {
        init.add(Leaf::with(()));
        init.add(Leaf::with(()).on_post_open(|_| {}));
    }
    fn open(m: &Dispatched<'_, Self>) -> NtResult<()> {
        m.trace("open", 1);
        let mut out = [0u8; 1];
        m.transport_call(1, &[], &mut out).map(|_| ())
    }
}

impl Parent {
    /// A copy of the trace ring and a dynamic child of this Module.
    fn trace_and_child(&self) -> NtResult<(usize, DynamicModule<Leaf>)> {
        let module = self.enter()?;
        let entries = module.trace_entries()?;
        let child = Leaf::with(()).create(&*module)?;
        Ok((entries.len(), child))
    }
}

#[dmf_module(crate = ::dmf_core, config = (), open = Create, lock = Dispatch)]
struct Leaf;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Leaf {}

#[dmf_module(crate = ::dmf_core, config = (), open = Create, lock = Dispatch)]
struct Transport;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Transport {
    fn transport_method(
        _m: &Dispatched<'_, Self>,
        _message: u32,
        _input: &[u8],
        _output: &mut [u8],
    ) -> NtResult<usize> {
        Ok(0)
    }
}

/// Opened in D0Entry: the phase's open log.
#[dmf_module(crate = ::dmf_core, config = (), open = D0Entry, lock = Dispatch)]
struct Powered;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Powered {}

trait Echo: Send + Sync {
    fn echo(&self, value: u32) -> NtResult<u32>;
}

struct EchoInterface;

impl Interface for EchoInterface {
    const NAME: &'static str = "Echo";
    type Transport = dyn Echo;
    type ProtocolData = ();
    type TransportData = ();
}

#[dmf_module(crate = ::dmf_core, config = (), open = Create, lock = Dispatch)]
struct EchoServer;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for EchoServer {}

impl Echo for EchoServer {
    fn echo(&self, value: u32) -> NtResult<u32> {
        let _module = self.enter()?;
        Ok(value)
    }
}

impl InterfaceTransport<EchoInterface> for EchoServer {
    fn bind(m: &Dispatched<'_, Self>, (): &()) -> NtResult<((), Box<dyn Echo>)> {
        let methods: Box<dyn Echo> = try_box(m.handle()?)?;
        Ok(((), methods))
    }
}

#[derive(Default)]
struct ClientContext {
    binding: Option<Binding<EchoInterface>>,
}

#[dmf_module(crate = ::dmf_core, config = (), context = ClientContext, open = Create, lock = Dispatch)]
struct EchoClient;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for EchoClient {}

impl InterfaceProtocol<EchoInterface> for EchoClient {
    fn protocol_data(_m: &Dispatched<'_, Self>) {}
    fn post_bind(m: &Dispatched<'_, Self>, binding: &Binding<EchoInterface>) {
        m.lock().binding = Some(binding.clone());
    }
    fn unbind(m: &Dispatched<'_, Self>) {
        m.lock().binding = None;
    }
}

impl EchoClient {
    fn ask(&self, value: u32) -> NtResult<u32> {
        let module = self.enter()?;
        let binding = module.lock().binding.clone();
        binding.ok_or(NtStatus::NOT_FOUND)?.call(|t| t.echo(value))
    }
}

/// The device's Module: answers `IOCTL_MODULE`.
#[dmf_module(crate = ::dmf_core, config = (), open = PrepareHardware, lock = Dispatch)]
struct Answer;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Answer {
    fn device_io_control(_m: &Dispatched<'_, Self>, io: &mut IoRequest<'_>) -> Handled {
        if io.ioctl_code() == IOCTL_MODULE {
            io.complete(NtStatus::SUCCESS)
        } else {
            Handled::NotHandled
        }
    }
}

/// The Module framework on its own, from creation to destruction.
fn modules() -> NtResult<()> {
    let mut init = ModuleInit::new();
    let parent = init.add(
        Parent::with(())
            .transport(|init| {
                init.add(Transport::with(()));
                Ok(())
            })
            .on_pre_close(|_| {}),
    );
    let client = init.add(EchoClient::with(()));
    let server = init.add(EchoServer::with(()));
    init.add(Powered::with(()));
    init.add_feature(Feature::BranchTrack, Leaf::with(()));
    let collection = ModuleCollection::create(init, CollectionConfig::default())?;
    collection.d0_entry(PowerDeviceState::D3Final)?;
    let (traced, _child) = collection.get(parent)?.trace_and_child()?;
    assert!(traced >= 2, "create and open are traced");
    let (client, server) = (collection.get(client)?, collection.get(server)?);
    let binding = interface::bind::<EchoInterface, _, _>(&client, &server)?;
    assert_eq!(client.ask(7)?, 7);
    let _device_owned = Leaf::with(()).create(&collection)?;
    let _owned = Leaf::with(()).create(&NoParent)?;
    binding.unbind();
    let _still_bound = interface::bind::<EchoInterface, _, _>(&client, &server)?;
    collection.d0_exit(PowerDeviceState::D3Final)?;
    Ok(())
}

/// A driver with its own DeviceAdd: every `DmfDeviceInit` step.
fn driver() -> DriverConfig {
    DriverConfig {
        device_add: Arc::new(|_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            dmf.hook_pnp_power_callbacks(None);
            dmf.hook_power_policy_callbacks(None);
            dmf.hook_file_object_config(None);
            dmf.set_modules_add(|_device, modules| {
                modules.add(Answer::with(()));
                Ok(())
            })?;
            let device = dmf.create_device(DeviceAttributes::default())?;
            let mut queue = QueueConfig::new_default(QueueDispatch::Parallel);
            queue.device_control = Some(Arc::new(|_q, r: Request, _out, _in, code: u32| {
                if code == IOCTL_CLIENT {
                    r.complete(NtStatus::SUCCESS);
                } else {
                    r.complete(NtStatus::INVALID_DEVICE_REQUEST);
                }
            }));
            device.create_queue(dmf.hook_queue_config(queue)?)?;
            dmf.modules_create().map(|_| ())
        }),
        unload: None,
    }
}

/// What went wrong in one run, besides what the verdict reports.
type Problems = Arc<Mutex<Vec<String>>>;

fn check(problems: &Problems, fail_at: u64, what: &str, result: NtResult<()>) {
    if let Err(status) = result {
        if status != NtStatus::INSUFFICIENT_RESOURCES {
            problems
                .lock()
                .unwrap()
                .push(format!("failing allocation {fail_at}: {what}: {status:?}"));
        }
    }
}

/// One run: the Module framework, then the device's life, with allocation `fail_at` failing
/// (none for 0).
fn run(fail_at: u64, problems: &Problems) -> Machine {
    let machine = Machine::new();
    {
        let _bound = machine.enter();
        simulator::install_driver(&machine, "sweepclient", driver());
        if fail_at > 0 {
            machine.faults().fail_nth(FaultPoint::Allocation, fail_at);
        }
        check(problems, fail_at, "modules", modules());
        let node = machine
            .pnp()
            .plug_in(StackSpec::new("ROOT\\SWEEPCLIENT", "sweepclient"));
        match node {
            Ok(node) => {
                let removed = node.remove();
                if removed.is_err() {
                    problems
                        .lock()
                        .unwrap()
                        .push(format!("failing allocation {fail_at}: remove: {removed:?}"));
                }
            }
            Err(_) if fail_at > 0 => {}
            Err(status) => problems
                .lock()
                .unwrap()
                .push(format!("the device did not start: {status:?}")),
        }
        machine.settle();
    }
    machine
}

#[test]
fn alloc_sweep_of_the_framework() {
    let problems: Problems = Arc::default();
    let report = alloc_sweep(|fail_at| run(fail_at, &problems));
    let problems = std::mem::take(&mut *problems.lock().unwrap());
    match report {
        Ok(report) => {
            assert!(report.heap_checked, "CountingAllocator is installed");
            assert!(
                report.points > 20,
                "{} allocation failure points: the sweep reaches the framework's allocations",
                report.points
            );
            println!(
                "framework: {} allocation failure points swept",
                report.points
            );
        }
        Err(failures) => panic!("allocation-failure sweep failed:\n{failures}\n{problems:#?}"),
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
