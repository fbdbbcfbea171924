//! File objects: `WDFFILEOBJECT` handles for kmdf-sim's file objects, the file-object callbacks
//! of `WdfDeviceInitSetFileObjectConfig` (`EvtDeviceFileCreate`, `EvtFileCleanup`,
//! `EvtFileClose`) and the `WdfFileObject…` getters.
//!
//! A `WDFFILEOBJECT` is a kmdf-sim object of that kind, child of the device the file was opened
//! on, with the context of the `FileObjectAttributes`, made when the framework first shows the
//! file to the driver (`EvtDeviceFileCreate`, or a request's `WdfRequestGetFileObject`) and
//! deleted where KMDF deletes it: after `EvtFileClose`, or when this device's layer failed the
//! create (its `EvtCleanupCallback` runs then). The kmdf-sim file object carries the handle (a
//! [`HandleTag`] context), which is how a request's file object finds it.
//!
//! `WdfFileObjectGetFileName` answers an empty `UNICODE_STRING` (kmdf-sim's opens carry no file
//! name after the device or interface name); `AutoForwardCleanupClose` and `FileObjectClass`
//! are accepted and not modelled further (kmdf-sim forwards a filter's cleanup and close).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kmdf_sim::io::{FileConfig, FileObject};
use kmdf_sim::object::WdfObject;

use super::bindings::{
    PUNICODE_STRING, PWDF_DRIVER_GLOBALS, UNICODE_STRING, WDFDEVICE, WDFFILEOBJECT, WDFREQUEST,
    WDF_FILEOBJECT_CONFIG,
};
use super::device::{self, DevicePayload};
use super::objects::{self, Attributes, Handle, HandleTag, Object};
use super::wdf_exports;
use crate::host::{guard, stop, Stop};

wdf_exports! {
    WdfFileObjectGetDevice => wdf_file_object_get_device: PFN_WDFFILEOBJECTGETDEVICE,
    WdfFileObjectGetFileName => wdf_file_object_get_file_name: PFN_WDFFILEOBJECTGETFILENAME,
}

/// The payload of a `WDFFILEOBJECT`.
pub struct FilePayload {
    /// The kmdf-sim file object.
    pub sim: FileObject,
    /// The `WDFDEVICE` it belongs to.
    pub device: Handle,
    /// What `WdfFileObjectGetFileName` answers (an empty string; see the module documentation).
    name: Box<Mutex<UNICODE_STRING>>,
}

// SAFETY: the UNICODE_STRING's buffer is null (an empty name): nothing is shared through it.
unsafe impl Send for FilePayload {}
// SAFETY: as above; the string itself is behind a mutex.
unsafe impl Sync for FilePayload {}

impl core::fmt::Debug for FilePayload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FilePayload")
            .field("file", &self.sim.id())
            .field("device", &format_args!("{:#x}", self.device))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Per device: the `FileObjectAttributes` of `WdfDeviceInitSetFileObjectConfig`.
static FILE_ATTRIBUTES: Mutex<Option<HashMap<Handle, Option<Attributes>>>> = Mutex::new(None);
/// (device, kmdf-sim file id) → the `WDFFILEOBJECT`.
static FILES: Mutex<Option<HashMap<(Handle, u64), Handle>>> = Mutex::new(None);

/// The `WDFFILEOBJECT` of `file` on `device`, made now if the driver has not seen it yet.
fn file_handle(device: Handle, file: &FileObject) -> Handle {
    if let Some(handle) = lock(&FILES)
        .as_ref()
        .and_then(|m| m.get(&(device, file.id())).copied())
        .filter(|h| objects::get(*h).is_some())
    {
        return handle;
    }
    let attributes = lock(&FILE_ATTRIBUTES)
        .as_ref()
        .and_then(|m| m.get(&device).copied())
        .flatten()
        .map(|mut a| {
            // The framework parents every file object to its device.
            a.parent = None;
            a
        });
    let Some(device_object) = objects::get(device) else {
        stop(Stop {
            message: format!(
                "kmdf-host: a file object reached the WDFDEVICE {device:#x}, which is deleted"
            ),
            wdf_function: None,
        })
    };
    let created = objects::begin("WDFFILEOBJECT", attributes).and_then(|pending| {
        let sim_device = &device::payload_of(&device_object).sim;
        let attrs = pending.sim_attributes("WDFFILEOBJECT", Some(sim_device.object()));
        let machine = sim_device
            .machine()
            .ok_or(kmdf_sim::Status::INVALID_DEVICE_STATE)?;
        let sim = WdfObject::create(&machine, "WDFFILEOBJECT", attrs)?;
        Ok(pending.finish(
            sim,
            FilePayload {
                sim: file.clone(),
                device,
                name: Box::new(Mutex::new(UNICODE_STRING {
                    Length: 0,
                    MaximumLength: 0,
                    Buffer: core::ptr::null_mut(),
                })),
            },
        ))
    });
    let object = created.unwrap_or_else(|status| {
        stop(Stop {
            message: format!(
                "kmdf-host: the WDFFILEOBJECT of a file opened on {device:#x} could not be \
                 created ({status:?})"
            ),
            wdf_function: None,
        })
    });
    let handle = object.handle();
    if file.context::<HandleTag>().is_none() {
        file.set_context(HandleTag(handle));
    }
    let mut files = lock(&FILES);
    let files = files.get_or_insert_with(HashMap::new);
    files.retain(|_, h| objects::get(*h).is_some());
    files.insert((device, file.id()), handle);
    handle
}

/// The `WDFFILEOBJECT` of a request's file object (`WdfRequestGetFileObject`): the one the
/// driver saw, else one made now on the device the file was opened on (when that device is a
/// host device); `None` for a file object no host device received.
pub(crate) fn handle_of(file: &FileObject) -> Option<Handle> {
    if let Some(tag) = file.context::<HandleTag>() {
        if objects::get(tag.0).is_some() {
            return Some(tag.0);
        }
    }
    let device = objects::of_sim(file.device().object())?;
    (device.kind() == "WDFDEVICE").then(|| file_handle(device.handle(), file))
}

/// The file object is gone at `device` (after `EvtFileClose`, or its create failed there):
/// deletes its `WDFFILEOBJECT` (the driver's `EvtCleanupCallback` and destroy run).
fn file_deleted(device: Handle, file: &FileObject) {
    let handle = lock(&FILES)
        .as_mut()
        .and_then(|m| m.remove(&(device, file.id())));
    if let Some(object) = handle.and_then(objects::get) {
        let _ = object.sim().delete();
    }
}

/// kmdf-sim's file-object config for the `WDFDEVICE` `device` being created: the driver's
/// callbacks (`config`, if it called `WdfDeviceInitSetFileObjectConfig`) and the deletion of
/// the `WDFFILEOBJECT`s, which every host device gets.
pub(crate) fn file_config(
    device: Handle,
    config: Option<&WDF_FILEOBJECT_CONFIG>,
    attributes: Option<Attributes>,
) -> FileConfig {
    lock(&FILE_ATTRIBUTES)
        .get_or_insert_with(HashMap::new)
        .insert(device, attributes);
    let mut sim = FileConfig::new().on_object_cleanup(move |file| file_deleted(device, file));
    let Some(config) = config else {
        return sim;
    };
    if let Some(create) = config.EvtDeviceFileCreate {
        sim = sim.on_create(move |_, request, file| {
            let file = file_handle(device, file);
            let device_object = objects::get(device);
            let payload = device_object
                .as_deref()
                .and_then(Object::payload::<DevicePayload>);
            let request = super::request::adopt(request, payload);
            // SAFETY: the driver's `EVT_WDF_DEVICE_FILE_CREATE`, with its WDFDEVICE, the create
            // request (the driver completes it) and the new WDFFILEOBJECT, all live.
            unsafe {
                create(
                    device as WDFDEVICE,
                    request as WDFREQUEST,
                    file as WDFFILEOBJECT,
                );
            }
        });
    }
    if let Some(cleanup) = config.EvtFileCleanup {
        sim = sim.on_cleanup(move |file| {
            let file = file_handle(device, file);
            // SAFETY: the driver's `EVT_WDF_FILE_CLEANUP` with the live WDFFILEOBJECT.
            unsafe { cleanup(file as WDFFILEOBJECT) };
        });
    }
    if let Some(close) = config.EvtFileClose {
        sim = sim.on_close(move |file| {
            let file = file_handle(device, file);
            // SAFETY: the driver's `EVT_WDF_FILE_CLOSE` with the live WDFFILEOBJECT (deleted
            // only after it returns).
            unsafe { close(file as WDFFILEOBJECT) };
        });
    }
    sim
}

fn file_of(handle: WDFFILEOBJECT, routine: &str) -> Arc<Object> {
    objects::expect_kind(handle as usize, "WDFFILEOBJECT", routine)
}

fn payload(object: &Object) -> &FilePayload {
    object
        .payload::<FilePayload>()
        .expect("a WDFFILEOBJECT has a FilePayload")
}

/// `WdfFileObjectGetDevice`.
extern "win64" fn wdf_file_object_get_device(
    _globals: PWDF_DRIVER_GLOBALS,
    file: WDFFILEOBJECT,
) -> WDFDEVICE {
    guard("WdfFileObjectGetDevice", || {
        let object = file_of(file, "WdfFileObjectGetDevice");
        payload(&object).device as WDFDEVICE
    })
}

/// `WdfFileObjectGetFileName`: an empty name (see the module documentation), valid while the
/// file object lives.
extern "win64" fn wdf_file_object_get_file_name(
    _globals: PWDF_DRIVER_GLOBALS,
    file: WDFFILEOBJECT,
) -> PUNICODE_STRING {
    guard("WdfFileObjectGetFileName", || {
        let object = file_of(file, "WdfFileObjectGetFileName");
        let name: &Mutex<UNICODE_STRING> = &payload(&object).name;
        // The string lives in the payload's box, which the object keeps while it lives.
        let p: *mut UNICODE_STRING = &raw mut *lock(name);
        p
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use kmdf_sim::io::{Access, AppConfig, Application};

    use super::super::bindings::status::{STATUS_ACCESS_DENIED, STATUS_SUCCESS};
    use super::super::bindings::{
        GUID, NTSTATUS, PFN_WDFDEVICECREATE, PFN_WDFDEVICECREATEDEVICEINTERFACE,
        PFN_WDFDEVICEINITSETFILEOBJECTCONFIG, PFN_WDFREQUESTCOMPLETE, PWDFDEVICE_INIT, WDFDRIVER,
        WDFOBJECT,
    };
    use super::super::device::testing::{attributes, wdf, TestDriver};
    use super::*;

    static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
    static GLOBALS: Mutex<usize> = Mutex::new(0);
    static CLASS: GUID = GUID {
        Data1: 0x0f11_e0b1,
        Data2: 0x2222,
        Data3: 0x3333,
        Data4: [4, 4, 4, 4, 5, 5, 5, 5],
    };

    fn event(text: String) {
        EVENTS.lock().unwrap().push(text);
    }

    fn g() -> PWDF_DRIVER_GLOBALS {
        *GLOBALS.lock().unwrap() as PWDF_DRIVER_GLOBALS
    }

    extern "win64" fn file_create(device: WDFDEVICE, request: WDFREQUEST, file: WDFFILEOBJECT) {
        assert_eq!(wdf_file_object_get_device(g(), file), device);
        // SAFETY: the name the host keeps for the live file object.
        let name = unsafe { &*wdf_file_object_get_file_name(g(), file) };
        assert_eq!(name.Length, 0);
        let opened = EVENTS
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with("create"))
            .count();
        event(format!("create {:#x}", file as usize));
        let complete: PFN_WDFREQUESTCOMPLETE = wdf("WdfRequestComplete");
        let status = if opened == 0 {
            STATUS_SUCCESS
        } else {
            STATUS_ACCESS_DENIED
        };
        // SAFETY: the create request the framework delivered, completed once.
        unsafe { complete.unwrap()(g(), request, status) };
    }

    extern "win64" fn file_cleanup(file: WDFFILEOBJECT) {
        event(format!("cleanup {:#x}", file as usize));
    }

    extern "win64" fn file_close(file: WDFFILEOBJECT) {
        event(format!("close {:#x}", file as usize));
    }

    extern "win64" fn file_object_cleanup(file: WDFOBJECT) {
        event(format!("EvtCleanupCallback {:#x}", file as usize));
    }

    fn add(globals: PWDF_DRIVER_GLOBALS, _driver: WDFDRIVER, init: PWDFDEVICE_INIT) -> NTSTATUS {
        *GLOBALS.lock().unwrap() = globals as usize;
        // SAFETY: plain data (WDF_FILEOBJECT_CONFIG_INIT zeroes it).
        let mut config: WDF_FILEOBJECT_CONFIG = unsafe { core::mem::zeroed() };
        config.Size = u32::try_from(size_of::<WDF_FILEOBJECT_CONFIG>()).unwrap();
        config.EvtDeviceFileCreate = Some(file_create);
        config.EvtFileCleanup = Some(file_cleanup);
        config.EvtFileClose = Some(file_close);
        let mut file_attributes = attributes(None);
        file_attributes.EvtCleanupCallback = Some(file_object_cleanup);
        let set: PFN_WDFDEVICEINITSETFILEOBJECTCONFIG = wdf("WdfDeviceInitSetFileObjectConfig");
        let create: PFN_WDFDEVICECREATE = wdf("WdfDeviceCreate");
        let interface: PFN_WDFDEVICECREATEDEVICEINTERFACE = wdf("WdfDeviceCreateDeviceInterface");
        let mut init = init;
        let mut device: WDFDEVICE = core::ptr::null_mut();
        // SAFETY: live locals and the init of this device add.
        unsafe {
            set.unwrap()(globals, init, &raw mut config, &raw mut file_attributes);
            let status = create.unwrap()(
                globals,
                &raw mut init,
                core::ptr::null_mut(),
                &raw mut device,
            );
            assert_eq!(status, STATUS_SUCCESS);
            interface.unwrap()(globals, device, &raw const CLASS, core::ptr::null())
        }
    }

    #[test]
    fn file_objects_reach_the_drivers_callbacks_and_are_deleted_after_close() {
        let driver = TestDriver::load("hdevfile", add);
        let (node, device) = driver.plug_in();
        let bound = driver.machine.enter();
        let app = Application::new(
            &driver.machine,
            AppConfig {
                administrator: false,
                name: "files.exe".into(),
            },
        );
        let class = kmdf_sim::guid::Guid::new(CLASS.Data1, CLASS.Data2, CLASS.Data3, CLASS.Data4);
        let handle = app.open_interface(class, Access::READ_WRITE).unwrap();
        // A second open is refused by the driver: its file object goes at once.
        assert_eq!(
            app.open_interface(class, Access::READ_WRITE).unwrap_err(),
            kmdf_sim::Status(STATUS_ACCESS_DENIED)
        );
        let files: Vec<String> = EVENTS.lock().unwrap().clone();
        let first = files[0].trim_start_matches("create ").to_owned();
        let second = files[1].trim_start_matches("create ").to_owned();
        assert_eq!(files[2], format!("EvtCleanupCallback {second}"));
        let first_handle = usize::from_str_radix(first.trim_start_matches("0x"), 16).unwrap();
        let object = objects::get(first_handle).unwrap();
        assert_eq!(handle_of(&payload(&object).sim), Some(first_handle));
        assert_eq!(payload(&object).device, device);
        drop(object);
        handle.close();
        assert_eq!(
            EVENTS.lock().unwrap()[3..],
            [
                format!("cleanup {first}"),
                format!("close {first}"),
                format!("EvtCleanupCallback {first}"),
            ]
        );
        assert!(objects::get(first_handle).is_none());
        node.remove().unwrap();
        drop(bound);
        assert_eq!(driver.machine.verdict().map(|_| ()), Ok(()));
    }
}
