//! A device with a manual default queue and an open application handle, for tests that need
//! real requests and file objects (the dispatch rows of the request callbacks).

#![allow(dead_code, clippy::unused_self)]

use std::sync::{Arc, Mutex};

use dmf_core::platform::contract::device::{Guid, PlatformDevice, PlatformDeviceInit};
use dmf_core::platform::contract::io::{PlatformQueue, PlatformRequest, QueueDispatch};
use dmf_core::platform::{
    simulator, Device, DriverConfig, FileObject, FileObjectConfig, Queue, QueueConfig, Request,
};
use dmf_core::NtStatus;
use kmdf_sim::io::{Access, AppConfig, Application, Handle, PendingIo};
use kmdf_sim::pnp::{DeviceNode, StackSpec};
use kmdf_sim::Machine;

const GUID_FIXTURE: Guid = Guid::new(
    0x2D4F_0A11,
    0x6C7E,
    0x4B0B,
    [0x9A, 0x51, 0x0E, 0x3C, 0x44, 0x12, 0x7F, 0x01],
);

/// The device, its manual default queue, a file object and the handle that opened it.
pub struct IoFixture {
    pub node: DeviceNode,
    pub device: Device,
    pub queue: Queue,
    pub file: FileObject,
    handle: Option<Handle>,
    pending: Mutex<Vec<PendingIo>>,
}

impl IoFixture {
    /// Installs the fixture driver, plugs its device and opens it from an application.
    pub fn new(machine: &Machine) -> IoFixture {
        let slot: Arc<Mutex<Option<(Device, FileObject)>>> = Arc::default();
        let s = Arc::clone(&slot);
        let config = DriverConfig {
            device_add: Arc::new(move |_driver, init| {
                let s = Arc::clone(&s);
                let files = FileObjectConfig {
                    create: Some(Arc::new(move |d: &Device, r: Request, f: &FileObject| {
                        *s.lock().unwrap() = Some((d.clone(), f.clone()));
                        r.complete(NtStatus::SUCCESS);
                    })),
                    ..FileObjectConfig::default()
                };
                init.set_file_object_config(files);
                let device = init.create_device()?;
                device.create_queue(QueueConfig::new_default(QueueDispatch::Manual))?;
                device.create_interface(GUID_FIXTURE, None)?;
                Ok(())
            }),
            unload: None,
        };
        simulator::install_driver(machine, "io-fixture", config);
        let node = machine
            .pnp()
            .plug_in(StackSpec::new("ROOT\\IOFIXTURE", "io-fixture"))
            .expect("the fixture device starts");
        let app = Application::new(
            machine,
            AppConfig {
                administrator: true,
                name: "fixture-app".to_owned(),
            },
        );
        let class = dmf_core::platform::simulator::sim_guid(GUID_FIXTURE);
        let handle = app
            .open_interface(class, Access::READ_WRITE)
            .expect("the fixture interface opens");
        let (device, file) = slot.lock().unwrap().take().expect("the create was seen");
        let queue = device.default_queue().expect("the default queue");
        IoFixture {
            node,
            device,
            queue,
            file,
            handle: Some(handle),
            pending: Mutex::new(Vec::new()),
        }
    }

    fn retrieve(&self, pending: PendingIo) -> Request {
        self.pending.lock().unwrap().push(pending);
        self.queue
            .retrieve_next_request()
            .expect("the request waits in the manual queue")
    }

    /// An application IOCTL, retrieved from the queue: the driver owns it.
    pub fn ioctl(&self, code: u32, input: &[u8], output_len: usize) -> Request {
        let handle = self.handle.as_ref().unwrap();
        self.retrieve(
            handle
                .device_io_control_overlapped(code, input, output_len)
                .unwrap(),
        )
    }

    /// An application read of `len` bytes.
    pub fn read(&self, len: usize) -> Request {
        let handle = self.handle.as_ref().unwrap();
        self.retrieve(handle.read_overlapped(len).unwrap())
    }

    /// An application write.
    pub fn write(&self, data: &[u8]) -> Request {
        let handle = self.handle.as_ref().unwrap();
        self.retrieve(handle.write_overlapped(data).unwrap())
    }

    /// The statuses the application saw, in issue order (`None`: still pending).
    pub fn statuses(&self) -> Vec<Option<kmdf_sim::Status>> {
        self.pending
            .lock()
            .unwrap()
            .iter()
            .map(PendingIo::status)
            .collect()
    }

    /// Completes a request nobody took (what the device integration does with the unhandled
    /// rule), so that nothing is left pending.
    pub fn finish(&self, leftover: Option<Request>, status: NtStatus) {
        if let Some(request) = leftover {
            request.complete(status);
        }
    }

    /// Closes the handle and unplugs the device.
    pub fn teardown(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.close();
        }
        self.node.remove().expect("the fixture device is removed");
    }
}
