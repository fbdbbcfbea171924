//! The client-driver API: DMF's device-init, the hooks that route every WDF callback
//! through the Modules and then the client, `modules_create`, and the container-driver defaults.
//!
//! # The flow (the DMF guide's `DeviceAdd` example, step by step)
//!
//! ```text
//! EvtDriverDeviceAdd(driver, init)
//!   let mut dmf = DmfDeviceInit::new(init);        DMF_DmfDeviceInitAllocate
//!   dmf.hook_pnp_power_callbacks(client_pnp);      DMF_DmfDeviceInitHookPnpPower…
//!   dmf.hook_power_policy_callbacks(client_pp);    DMF_DmfDeviceInitHookPowerPolicy
//!   dmf.hook_file_object_config(client_files);     DMF_DmfDeviceInitHookFileObject
//!   dmf.set_filter();                              DMF_DmfFdoSetFilter + WdfFdoInitSetFilter
//!   dmf.set_modules_add(modules_add)?;             DMF_DmfDeviceInitSetEventCallbacks
//!   let device = dmf.create_device(attributes)?;   WdfDeviceCreate
//!   device.create_queue(dmf.hook_queue_config(q))? DMF_DmfDeviceInitHookQueueConfig
//!   let dmf_device = dmf.modules_create()?;        DMF_ModulesCreate
//! ```
//!
//! A **control device** goes the same way from the init of
//! `PlatformDriver::control_device_init` (`DMF_DmfControlDeviceInitAllocate`): name it
//! (`device_init().assign_name`), optionally `set_client_driver_device(fdo)` in a filter, create
//! it, `create_symbolic_link`, `modules_create`, then `finish_initializing`
//! (`WdfControlFinishInitializing`). Its PnP hooks are never called (a control device has no PnP);
//! its DMF default queue is not power-managed; delete it with `PlatformDevice::delete`, which
//! destroys its Modules.
//!
//! Unlike C DMF there is no ordering rule to remember (each `DMF_DmfDeviceInitHook…` call before
//! the matching `WdfDeviceInitSet…` call) and no hook to forget (all three hooks, even with
//! `NULL`): the hooks only *record* the client's callbacks, and
//! [`DmfDeviceInit::create_device`] registers DMF's own dispatchers with WDF for every callback,
//! whether or not the client has one. Dropping a `DmfDeviceInit` is `DMF_DmfDeviceInitFree`.
//!
//! Everything DMF allocates for a device (its state, the dispatchers it registers, the client's
//! recorded Modules-add callback, the collection) is allocated fallibly: a refused allocation
//! fails the call that needed it with `STATUS_INSUFFICIENT_RESOURCES` before anything is
//! registered with WDF or published, and `EvtDriverDeviceAdd` returns that status.
//!
//! # Dispatch
//!
//! Each PnP, power and power-policy callback runs the Module collection's phase function and the
//! client's callback in the order THE table gives ([`dispatch_table::row`], invariant 6): Modules
//! first on the way up, the client first on the way down. A failing step stops the chain and its
//! status goes to WDF; when the client's callback fails after the Modules came up in
//! D0Entry or PrepareHardware, the Modules are taken back down (D0Exit to `D3Final`,
//! ReleaseHardware), because WDF will not call them again for that transition.
//!
//! Requests (default queue, file object) are offered to the Modules first (first taker wins,
//! [`IoRequest`]); a request nobody took goes to the client's callback of that type if it has
//! one, else the unhandled rule applies: passed down to the next lower driver in a
//! filter, completed with `STATUS_NOT_SUPPORTED` otherwise; creates succeed in a function driver.
//! Every file object that reached the create ends with one `file_object_deleted` notice to the
//! Modules (and the client's `deleted`): after its close, or when its create failed — whoever
//! failed it, whenever — since a failed create gets no cleanup or close.
//! If the client creates no default queue, `modules_create` creates one.
//!
//! # Lifetime
//!
//! The Module collection lives until the device's last PnP callback of a removal,
//! `EvtDeviceSelfManagedIoCleanup`, after which every Module is closed and destroyed while the
//! objects the Modules created on the device (I/O targets, requests, timers) still exist; WDF
//! cleans those up before the device's own `EvtCleanupCallback`. A device that never gets that
//! callback (a control device, a failed start) has its Modules destroyed in its
//! `EvtCleanupCallback`.

use alloc::boxed::Box;
use alloc::sync::Arc;

use crate::fallible::{try_arc, try_box};
use crate::module::callback_list::callback_list;
use crate::module::dispatch_table::{self, Callback, ClientOrder, Unhandled};
use crate::module::{
    Added, CollectionConfig, IoRequest, Module, ModuleCollection, ModuleInit, RequestDisposition,
};
use crate::platform::contract::device::{
    DeviceAttributes, PlatformDevice, PlatformDeviceInit, PowerDeviceState,
};
use crate::platform::contract::io::{PlatformRequest, QueueDispatch};
use crate::platform::{
    Device, DeviceInit, DriverConfig, FileObject, FileObjectConfig, PnpPowerCallbacks,
    PowerPolicyCallbacks, Queue, QueueConfig, Request, Resources,
};
use crate::status::{NtResult, NtStatus};
use crate::sync::{LockKind, ModuleLock};

/// `EVT_DMF_DEVICE_MODULES_ADD`: add the device's Modules. Runs once per device, at
/// PASSIVE_LEVEL, inside `modules_create`. An error fails the device add.
pub type ModulesAddFn = Arc<dyn Fn(&Device, &mut ModuleInit) -> NtResult<()> + Send + Sync>;

/// What DMF keeps per device: the collection (once created), the client's callbacks, the device.
struct DeviceState {
    collection: ModuleLock<Option<Arc<ModuleCollection>>>,
    device: ModuleLock<Option<Device>>,
    filter: bool,
    pnp: PnpPowerCallbacks,
    policy: PowerPolicyCallbacks,
    files: FileObjectConfig,
}

impl DeviceState {
    fn collection(&self) -> Option<Arc<ModuleCollection>> {
        self.collection.lock().clone()
    }

    fn device(&self) -> Option<Device> {
        self.device.lock().clone()
    }

    /// The client's callback and the Modules' phase function of a status callback, in the row's
    /// order; stops at the first failure.
    fn ordered(
        &self,
        callback: Callback,
        modules: impl FnOnce(&ModuleCollection) -> NtResult<()>,
        client: impl FnOnce() -> NtResult<()>,
    ) -> NtResult<()> {
        let collection = self.collection();
        let run_modules = move || collection.as_deref().map_or(Ok(()), modules);
        match dispatch_table::row(callback).client {
            ClientOrder::AfterModules => {
                run_modules()?;
                client()
            }
            ClientOrder::BeforeModules => {
                client()?;
                run_modules()
            }
        }
    }

    /// Applies the unhandled-request rule to a request nobody took.
    fn unhandled(&self, callback: Callback, request: Request) {
        let policy = dispatch_table::unhandled(callback, self.filter)
            .unwrap_or(Unhandled::Complete(NtStatus::NOT_SUPPORTED));
        apply(policy, request, self.device().as_ref());
    }

    /// Offers a request to the Modules, then to `client`, then the unhandled rule.
    fn offer(
        &self,
        callback: Callback,
        queue: Option<&Queue>,
        request: Request,
        modules: impl FnOnce(&ModuleCollection, &mut IoRequest<'_>) -> RequestDisposition,
        client: Option<impl FnOnce(Request)>,
    ) {
        let mut io = IoRequest::new(queue, request);
        if let Some(collection) = self.collection() {
            if modules(&collection, &mut io) == RequestDisposition::Handled {
                return;
            }
        }
        let Some(request) = io.into_request() else {
            return;
        };
        match client {
            Some(client) => client(request),
            None => self.unhandled(callback, request),
        }
    }
}

pub use crate::platform::pass_down;

/// Completes or passes down a request under `policy`.
fn apply(policy: Unhandled, request: Request, device: Option<&Device>) {
    match (policy, device) {
        (Unhandled::Complete(status), _) => request.complete(status),
        (Unhandled::PassDown, Some(device)) => {
            let _ = pass_down(request, device);
        }
        (Unhandled::PassDown, None) => request.complete(NtStatus::INVALID_DEVICE_STATE),
    }
}

/// `PDMFDEVICE_INIT`: DMF's view of a `WDFDEVICE_INIT` while `EvtDriverDeviceAdd`
/// sets the device up. See the [module documentation](self) for the order of calls.
pub struct DmfDeviceInit<'a> {
    init: &'a mut DeviceInit,
    filter: bool,
    pnp: PnpPowerCallbacks,
    policy: PowerPolicyCallbacks,
    files: FileObjectConfig,
    modules_add: Option<ModulesAddFn>,
    state: Option<Arc<DeviceState>>,
    queue_hooked: bool,
    client_driver_device: Option<Device>,
}

impl core::fmt::Debug for DmfDeviceInit<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DmfDeviceInit")
            .field("filter", &self.filter)
            .field("modules_add", &self.modules_add.is_some())
            .field("device_created", &self.state.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> DmfDeviceInit<'a> {
    /// `DMF_DmfDeviceInitAllocate`.
    pub fn new(init: &'a mut DeviceInit) -> Self {
        let filter = init.is_filter();
        DmfDeviceInit {
            init,
            filter,
            pnp: PnpPowerCallbacks::default(),
            policy: PowerPolicyCallbacks::default(),
            files: FileObjectConfig::default(),
            modules_add: None,
            state: None,
            queue_hooked: false,
            client_driver_device: None,
        }
    }

    /// The `WDFDEVICE_INIT` underneath, for the client's other `WdfDeviceInitSet…` calls
    /// (device type, I/O type, exclusivity), made after the hooks and before
    /// [`create_device`](Self::create_device) as in the DMF guide's `DeviceAdd` example.
    pub fn device_init(&mut self) -> &mut DeviceInit {
        self.init
    }

    /// `DMF_DmfDeviceInitHookPnpPowerEventCallbacks`: the client's PnP/power callbacks,
    /// called after the Modules' on the way up and before them on the way down.
    pub fn hook_pnp_power_callbacks(&mut self, client: Option<PnpPowerCallbacks>) {
        self.pnp = client.unwrap_or_default();
    }

    /// `DMF_DmfDeviceInitHookPowerPolicyEventCallbacks`.
    pub fn hook_power_policy_callbacks(&mut self, client: Option<PowerPolicyCallbacks>) {
        self.policy = client.unwrap_or_default();
    }

    /// `DMF_DmfDeviceInitHookFileObjectConfig`: the client's create/cleanup/close, called
    /// for the file requests no Module handles.
    pub fn hook_file_object_config(&mut self, client: Option<FileObjectConfig>) {
        self.files = client.unwrap_or_default();
    }

    /// `DMF_DmfFdoSetFilter`, which also calls `WdfFdoInitSetFilter` for the client:
    /// unhandled requests pass down, `is_in_filter_driver` is true.
    pub fn set_filter(&mut self) {
        self.filter = true;
        self.init.set_filter();
    }

    /// `DMF_DmfControlDeviceInitSetClientDriverDevice`: on a control device's init (from
    /// `PlatformDriver::control_device_init`), the filter driver's own device, which the
    /// control device's Modules reach with `Scope::filter_device`.
    pub fn set_client_driver_device(&mut self, device: Device) {
        self.client_driver_device = Some(device);
    }

    /// `DMF_DmfDeviceInitSetEventCallbacks`: the client's Modules-add callback.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` if it cannot be recorded; the previous one (if any) stays.
    pub fn set_modules_add(
        &mut self,
        modules_add: impl Fn(&Device, &mut ModuleInit) -> NtResult<()> + Send + Sync + 'static,
    ) -> NtResult<()> {
        self.modules_add = Some(try_arc(modules_add)?);
        Ok(())
    }

    /// `WdfDeviceCreate` with DMF's dispatchers registered for every PnP, power, power-policy and
    /// file-object callback (the client's recorded ones run inside them). `attributes` carries the
    /// client's device context; its cleanup callback, if any, runs after DMF's.
    ///
    /// # Errors
    ///
    /// `WdfDeviceCreate`'s status; `STATUS_INVALID_DEVICE_STATE` if called twice;
    /// `STATUS_INSUFFICIENT_RESOURCES` if DMF's state or dispatchers cannot be allocated (then
    /// nothing was registered and the hooks stay recorded).
    pub fn create_device(&mut self, attributes: DeviceAttributes) -> NtResult<Device> {
        if self.state.is_some() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        // `WdfFdoInitSetFilter` called directly on the init, before or after `DmfDeviceInit::new`,
        // makes this a filter too: the order of the two calls does not matter.
        self.filter |= self.init.is_filter();
        // Everything is allocated before the init is touched. The client's callbacks are cloned
        // (reference counts only), so a failure leaves them recorded here.
        let state = try_arc(DeviceState {
            collection: ModuleLock::new(LockKind::Spin, None)?,
            device: ModuleLock::new(LockKind::Spin, None)?,
            filter: self.filter,
            pnp: self.pnp.clone(),
            policy: self.policy.clone(),
            files: self.files.clone(),
        })?;
        let pnp = hook_pnp(&state)?;
        let policy = hook_policy(&state)?;
        let files = hook_files(&state)?;
        let client_cleanup = attributes.cleanup;
        let weak = Arc::downgrade(&state);
        let cleanup: Box<dyn FnOnce() + Send> = try_box(move || {
            if let Some(state) = weak.upgrade() {
                let collection = state.collection.lock().take();
                if let Some(collection) = collection {
                    collection.destroy();
                }
                *state.device.lock() = None;
            }
            if let Some(cleanup) = client_cleanup {
                cleanup();
            }
        })?;
        self.pnp = PnpPowerCallbacks::default();
        self.policy = PowerPolicyCallbacks::default();
        self.files = FileObjectConfig::default();
        self.init.set_pnp_power_callbacks(pnp);
        self.init.set_power_policy_callbacks(policy);
        self.init.set_file_object_config(files);
        let device = self.init.create_device_with(DeviceAttributes {
            context: attributes.context,
            cleanup: Some(cleanup),
        })?;
        *state.device.lock() = Some(device.clone());
        self.state = Some(state);
        Ok(device)
    }

    /// `DMF_DmfDeviceInitHookQueueConfig`: wraps the client's default-queue config so that
    /// the Modules see each request first; create the queue with the result. The client's own
    /// request callbacks get only what no Module took.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` before [`create_device`](Self::create_device);
    /// `STATUS_INSUFFICIENT_RESOURCES` if the dispatchers cannot be allocated.
    pub fn hook_queue_config(&mut self, client: QueueConfig) -> NtResult<QueueConfig> {
        let state = self.state.as_ref().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let hooked = hook_queue(state, client)?;
        self.queue_hooked = true;
        Ok(hooked)
    }

    /// `DMF_ModulesCreate`: calls the Modules-add callback, creates the Modules (opening
    /// the `*_Create` ones), and creates a default queue if the client has none. After it
    /// returns the client may call its Modules' Methods through the returned [`DmfDevice`].
    ///
    /// # Errors
    ///
    /// The Modules-add callback's error, any Module's creation or open failure (nothing is left
    /// created), the queue creation's failure; `STATUS_INVALID_DEVICE_STATE` before
    /// [`create_device`](Self::create_device). Return it from `EvtDriverDeviceAdd`.
    pub fn modules_create(self) -> NtResult<DmfDevice> {
        let state = self.state.ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let device = state.device().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let mut modules = ModuleInit::new();
        if let Some(add) = &self.modules_add {
            add(&device, &mut modules)?;
        }
        // If the `Arc` or the default queue's dispatchers cannot be allocated, the collection is
        // dropped before anyone saw it, which destroys its Modules.
        let collection = try_arc(ModuleCollection::create(
            modules,
            CollectionConfig {
                filter: state.filter,
                client: None,
                device: Some(device.clone()),
                filter_device: self.client_driver_device.clone(),
            },
        )?)?;
        let default_queue = if !self.queue_hooked && device.default_queue().is_none() {
            Some(hook_queue(
                &state,
                QueueConfig::new_default(QueueDispatch::Parallel),
            )?)
        } else {
            None
        };
        *state.collection.lock() = Some(Arc::clone(&collection));
        if let Some(config) = default_queue {
            if let Err(status) = device.create_queue(config) {
                *state.collection.lock() = None;
                collection.destroy();
                return Err(status);
            }
        }
        Ok(DmfDevice { collection, device })
    }
}

/// A device's DMF side after `modules_create`: its Modules and its `WDFDEVICE`.
#[derive(Clone)]
pub struct DmfDevice {
    collection: Arc<ModuleCollection>,
    device: Device,
}

impl core::fmt::Debug for DmfDevice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DmfDevice")
            .field("device", &self.device)
            .field("modules", &self.collection.len())
            .finish()
    }
}

impl DmfDevice {
    /// The handle of a Module the client added (`ResultantDmfModule`).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` for a token of another device.
    pub fn get<M: Module>(&self, token: Added<M>) -> NtResult<M> {
        self.collection.get(token)
    }

    /// The `WDFDEVICE`.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The Module collection.
    pub fn collection(&self) -> &ModuleCollection {
        &self.collection
    }
}

macro_rules! hook_status {
    ($state:ident, $pnp:ident, $client:ident, $field:ident, $cb:ident, [$d:ident $(, $a:ident : $t:ty)*]) => {{
        let s = Arc::clone($state);
        $pnp.$field = Some(try_arc(move |$d: &Device $(, $a: $t)*| {
            s.ordered(
                Callback::$cb,
                |c| c.$field($($a),*),
                || s.$client.$field.as_ref().map_or(Ok(()), |f| f($d $(, $a)*)),
            )
        })?);
    }};
}

macro_rules! hook_void {
    ($state:ident, $pnp:ident, $client:ident, $field:ident, $cb:ident, [$d:ident $(, $a:ident : $t:ty)*]) => {{
        let s = Arc::clone($state);
        $pnp.$field = Some(try_arc(move |$d: &Device $(, $a: $t)*| {
            let _ = s.ordered(
                Callback::$cb,
                |c| {
                    c.$field($($a),*);
                    Ok(())
                },
                || {
                    if let Some(f) = s.$client.$field.as_ref() {
                        f($d $(, $a)*);
                    }
                    Ok(())
                },
            );
        })?);
    }};
}

/// Hooks every callback of the list marked `pnp` (or `policy`) to its collection dispatcher and
/// the client's callback, in the order of its dispatch-table row.
macro_rules! device_hooks {
    (($state:ident $group:ident) module { $($m:tt)* } dispatched { $($d:tt)* } wdf { $($w:tt)* }) => {
        device_hooks!(@each $state $group $($w)*);
    };
    (@each $state:ident $group:ident $(
        $(#[$doc:meta])* $name:ident $variant:ident $flag:ident [$result:ident $collection:ident $device:ident]
        ($($args:tt)*) -> $ret:ty = $default:expr;
    )*) => {
        $(device_hooks!(@one $state $group $group $device $result $name $variant ($($args)*));)*
    };
    (@one $state:ident $var:ident pnp pnp status $name:ident $variant:ident ($($arg:ident : $ty:ty),*)) => {
        hook_status!($state, $var, pnp, $name, $variant, [d $(, $arg: $ty)*]);
    };
    (@one $state:ident $var:ident pnp pnp void $name:ident $variant:ident ($($arg:ident : $ty:ty),*)) => {
        hook_void!($state, $var, pnp, $name, $variant, [d $(, $arg: $ty)*]);
    };
    (@one $state:ident $var:ident policy policy status $name:ident $variant:ident ($($arg:ident : $ty:ty),*)) => {
        hook_status!($state, $var, policy, $name, $variant, [d $(, $arg: $ty)*]);
    };
    (@one $state:ident $var:ident policy policy void $name:ident $variant:ident ($($arg:ident : $ty:ty),*)) => {
        hook_void!($state, $var, policy, $name, $variant, [d $(, $arg: $ty)*]);
    };
    (@one $state:ident $var:ident $group:ident $device:ident $($rest:tt)*) => {};
}

/// DMF's PnP and power dispatchers for the device of `state`.
fn hook_pnp(state: &Arc<DeviceState>) -> NtResult<PnpPowerCallbacks> {
    let mut pnp = PnpPowerCallbacks::default();
    {
        let s = Arc::clone(state);
        pnp.prepare_hardware = Some(try_arc(move |d: &Device, r: &Resources| {
            let collection = s.collection();
            if let Some(c) = &collection {
                c.prepare_hardware(r)?;
            }
            // After a failed client PrepareHardware WDF calls ReleaseHardware, which reaches
            // the Modules: nothing to undo here.
            s.pnp.prepare_hardware.as_ref().map_or(Ok(()), |f| f(d, r))
        })?);
    }
    {
        let s = Arc::clone(state);
        pnp.d0_entry = Some(try_arc(move |d: &Device, previous: PowerDeviceState| {
            let collection = s.collection();
            if let Some(c) = &collection {
                c.d0_entry(previous)?;
            }
            let client = s.pnp.d0_entry.as_ref().map_or(Ok(()), |f| f(d, previous));
            if client.is_err() {
                // WDF will not call D0Exit after a failed D0Entry: take the Modules back down.
                if let Some(c) = &collection {
                    let _ = c.d0_exit(PowerDeviceState::D3Final);
                }
            }
            client
        })?);
    }
    {
        // The last PnP callback of a removal: after the client and the Modules ran it, the
        // Modules close and are destroyed here, while the device's children (I/O targets,
        // requests, timers the Modules created) still exist. At the device's cleanup callback
        // WDF has already cleaned those children up, so a Module closing there would touch
        // deleted objects. Later file closes see no collection (the client's callbacks and
        // the unhandled rule still apply).
        let s = Arc::clone(state);
        pnp.self_managed_io_cleanup = Some(try_arc(move |d: &Device| {
            let _ = s.ordered(
                Callback::SelfManagedIoCleanup,
                |c| {
                    c.self_managed_io_cleanup();
                    Ok(())
                },
                || {
                    if let Some(f) = s.pnp.self_managed_io_cleanup.as_ref() {
                        f(d);
                    }
                    Ok(())
                },
            );
            let collection = s.collection.lock().take();
            if let Some(collection) = collection {
                collection.destroy();
            }
        })?);
    }
    callback_list!(device_hooks!(state pnp));
    Ok(pnp)
}

/// DMF's power-policy dispatchers for the device of `state`.
fn hook_policy(state: &Arc<DeviceState>) -> NtResult<PowerPolicyCallbacks> {
    let mut policy = PowerPolicyCallbacks::default();
    callback_list!(device_hooks!(state policy));
    Ok(policy)
}

/// DMF's file-object dispatchers for the device of `state`.
fn hook_files(state: &Arc<DeviceState>) -> NtResult<FileObjectConfig> {
    let s = Arc::clone(state);
    let create = try_arc(move |d: &Device, request: Request, file: &FileObject| {
        s.offer(
            Callback::FileCreate,
            None,
            request,
            |c, io| c.file_create(io, file),
            s.files
                .create
                .as_ref()
                .map(|f| move |r: Request| f(d, r, file)),
        );
    })?;
    let s = Arc::clone(state);
    let cleanup = try_arc(move |file: &FileObject| {
        let taken = s
            .collection()
            .is_some_and(|c| c.file_cleanup(file) == RequestDisposition::Handled);
        if !taken {
            if let Some(f) = &s.files.cleanup {
                f(file);
            }
        }
    })?;
    let s = Arc::clone(state);
    let close = try_arc(move |file: &FileObject| {
        let taken = s
            .collection()
            .is_some_and(|c| c.file_close(file) == RequestDisposition::Handled);
        if !taken {
            if let Some(f) = &s.files.close {
                f(file);
            }
        }
    })?;
    // The file object is deleted: after its close, or because its create failed — wherever
    // that was decided (a Module, the client's callback, possibly later, or a lower driver).
    // This is what ties per-file state taken at create to the file object's life (D3).
    let s = Arc::clone(state);
    let deleted = try_arc(move |file: &FileObject| {
        let _ = s.ordered(
            Callback::FileObjectDeleted,
            |c| {
                c.file_object_deleted(file);
                Ok(())
            },
            || {
                if let Some(f) = &s.files.deleted {
                    f(file);
                }
                Ok(())
            },
        );
    })?;
    Ok(FileObjectConfig {
        create: Some(create),
        cleanup: Some(cleanup),
        close: Some(close),
        deleted: Some(deleted),
    })
}

/// `client` with DMF's request dispatchers in place of its request callbacks (which they call).
fn hook_queue(state: &Arc<DeviceState>, client: QueueConfig) -> NtResult<QueueConfig> {
    if client.dispatch == QueueDispatch::Manual {
        // A manual queue presents nothing: the client retrieves its requests itself.
        return Ok(client);
    }
    let mut hooked = client.clone();
    let s = Arc::clone(state);
    let c = client.read.clone();
    hooked.read = Some(try_arc(move |q: &Queue, r: Request, length: usize| {
        s.offer(
            Callback::QueueIoRead,
            Some(q),
            r,
            |m, io| m.queue_io_read(io, length),
            c.as_ref().map(|f| move |r: Request| f(q, r, length)),
        );
    })?);
    let s = Arc::clone(state);
    let c = client.write.clone();
    hooked.write = Some(try_arc(move |q: &Queue, r: Request, length: usize| {
        s.offer(
            Callback::QueueIoWrite,
            Some(q),
            r,
            |m, io| m.queue_io_write(io, length),
            c.as_ref().map(|f| move |r: Request| f(q, r, length)),
        );
    })?);
    let s = Arc::clone(state);
    let c = client.device_control.clone();
    hooked.device_control = Some(try_arc(
        move |q: &Queue, r: Request, output: usize, input: usize, code: u32| {
            s.offer(
                Callback::DeviceIoControl,
                Some(q),
                r,
                ModuleCollection::device_io_control,
                c.as_ref()
                    .map(|f| move |r: Request| f(q, r, output, input, code)),
            );
        },
    )?);
    let s = Arc::clone(state);
    let c = client.internal_device_control.clone();
    hooked.internal_device_control = Some(try_arc(
        move |q: &Queue, r: Request, output: usize, input: usize, code: u32| {
            s.offer(
                Callback::InternalDeviceIoControl,
                Some(q),
                r,
                ModuleCollection::internal_device_io_control,
                c.as_ref()
                    .map(|f| move |r: Request| f(q, r, output, input, code)),
            );
        },
    )?);
    // `EvtIoDefault` gets the types without a specific callback: the client's, else the rule.
    let s = Arc::clone(state);
    let c = client.default.clone();
    hooked.default = Some(try_arc(move |q: &Queue, r: Request| match &c {
        Some(f) => f(q, r),
        None => s.unhandled(Callback::DeviceIoControl, r),
    })?);
    Ok(hooked)
}

/// `DMF_DEFAULT_DEVICEADD`: an `EvtDriverDeviceAdd` that hooks everything, creates the
/// device (no context) and calls `DMF_ModulesCreate` with `modules_add`. In a filter driver the
/// function calls `set_filter` when the PnP manager loaded it as one. Called while `DriverEntry`
/// builds the driver config; each device add shares `modules_add` without allocating for it.
pub fn default_device_add(
    modules_add: impl Fn(&Device, &mut ModuleInit) -> NtResult<()> + Send + Sync + 'static,
    filter: bool,
) -> impl Fn(&crate::platform::Driver, &mut DeviceInit) -> NtResult<()> + Send + Sync + 'static {
    #[allow(
        clippy::disallowed_methods,
        reason = "DriverEntry-time: the Modules-add callback of the driver config"
    )]
    let modules_add: ModulesAddFn = Arc::new(modules_add);
    move |_driver, init| {
        let mut dmf = DmfDeviceInit::new(init);
        dmf.hook_pnp_power_callbacks(None);
        dmf.hook_power_policy_callbacks(None);
        dmf.hook_file_object_config(None);
        if filter {
            dmf.set_filter();
        }
        dmf.modules_add = Some(Arc::clone(&modules_add));
        dmf.create_device(DeviceAttributes::default())?;
        dmf.modules_create().map(|_| ())
    }
}

/// `DMF_DEFAULT_DRIVERENTRY` + `DMF_DEFAULT_DEVICEADD`: the `WDF_DRIVER_CONFIG`
/// of a container driver whose only code is its Modules-add callback. The `dmf::driver!` macro
/// turns it into `DriverEntry` on the kernel backend and a loadable description on kmdf-sim.
pub fn container_driver_config(
    modules_add: impl Fn(&Device, &mut ModuleInit) -> NtResult<()> + Send + Sync + 'static,
    filter: bool,
) -> DriverConfig {
    #[allow(
        clippy::disallowed_methods,
        reason = "DriverEntry-time: the EvtDriverDeviceAdd of the driver config"
    )]
    let device_add = Arc::new(default_device_add(modules_add, filter));
    DriverConfig {
        device_add,
        unload: None,
    }
}
