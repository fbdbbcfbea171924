//! Device interfaces and interface-change notifications.
//!
//! # Design
//!
//! [`Device::create_interface`] (`WdfDeviceCreateDeviceInterface`) registers an interface of a
//! class GUID, with an optional reference string, on a device. Each interface instance gets a
//! **symbolic link name** unique on the machine, built from the device instance id, the class
//! GUID and the reference string: `\??\{instance id with '\' → '#'}#{GUID}[\reference]`.
//!
//! The framework **enables** a device's interfaces when its stack has started (unless the driver
//! disabled one with [`Device::set_interface_state`]) and **disables** them when the device is
//! removed, surprise-removed or fails (before the removal callbacks run); the records then go
//! away with the device.
//!
//! [`register_notification`] is
//! `IoRegisterPlugPlayNotification(EventCategoryDeviceInterfaceChange)`
//! ([`IoRegisterPlugPlayNotification`], [`DEVICE_INTERFACE_CHANGE_NOTIFICATION`]): with
//! `include_existing`, the callback runs once per interface of the class that is already enabled
//! (the simulator reports each **once**; Windows may report one twice), then once per arrival and
//! removal. Callbacks run at `PASSIVE_LEVEL` on the thread that changed the
//! interface state, through [`invoke_callback`] attributed to the registering driver.
//! [`NotificationEntry::unregister`] (`IoUnregisterPlugPlayNotificationEx`) guarantees that no
//! callback of the entry runs after it returns (it waits for one running on another thread; called
//! from inside the callback it just stops further calls).
//!
//! [`find_interface`] looks an enabled interface up by symbolic link (remote I/O targets and
//! application handles open by it); [`interfaces_of_class`] lists enabled links of a class
//! (`IoGetDeviceInterfaces`).
//!
//! The PnP engine below does not call this layer: a device's first interface registers a
//! [`DevicePowerHook`] on it, whose `stack_started` enables the device's interfaces and whose
//! `leaving` disables them.
//!
//! # Symbolic links
//!
//! [`Device::create_symbolic_link`] (`WdfDeviceCreateSymbolicLink`) gives a named device — a
//! PnP device or a [control device](crate::control) — a symbolic link by which applications and
//! remote I/O targets open it; link names and interface names share one namespace. The link goes
//! away when a PnP device is torn down, or before a control device's I/O is torn down when it is
//! deleted.
//!
//! [`IoRegisterPlugPlayNotification`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-ioregisterplugplaynotification
//! [`DEVICE_INTERFACE_CHANGE_NOTIFICATION`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/ns-wdm-_device_interface_change_notification
//! [`invoke_callback`]: crate::verifier::invoke_callback

use core::fmt;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::ThreadId;

use crate::control::{self, RequestorMode};
use crate::device::{lock, Device, DeviceInner, DevicePowerHook};
use crate::exec::{current_driver, require_max_irql, Irql};
use crate::guid::Guid;
use crate::machine::Machine;
use crate::pnp::DeviceNode;
use crate::status::Status;
use crate::trace::TraceKind;
use crate::verifier::{invoke_callback, NO_DRIVER};

/// Arrival or removal (`GUID_DEVICE_INTERFACE_ARRIVAL` / `…_REMOVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InterfaceEvent {
    /// The interface was enabled.
    Arrival,
    /// The interface was disabled.
    Removal,
}

/// `DEVICE_INTERFACE_CHANGE_NOTIFICATION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceChange {
    /// Arrival or removal.
    pub event: InterfaceEvent,
    /// `InterfaceClassGuid`.
    pub class: Guid,
    /// `SymbolicLinkName`.
    pub symbolic_link: String,
}

/// An enabled interface found by [`find_interface`].
#[derive(Clone, Debug)]
pub struct InterfaceInfo {
    /// The class GUID.
    pub class: Guid,
    /// The symbolic link name.
    pub symbolic_link: String,
    /// The reference string, if any.
    pub reference: Option<String>,
    /// The device that registered it.
    pub device: Device,
}

struct Record {
    class: Guid,
    reference: Option<String>,
    device: Device,
    enabled: bool,
    /// The driver's requested state (`WdfDeviceSetDeviceInterfaceState`).
    wanted: bool,
    started: bool,
}

type NotifyFn = Arc<dyn Fn(&InterfaceChange) + Send + Sync>;

struct Registration {
    id: u64,
    class: Guid,
    driver: String,
    callback: NotifyFn,
    st: Mutex<RegSt>,
    cv: Condvar,
}

#[derive(Default)]
struct RegSt {
    inactive: bool,
    running: Vec<ThreadId>,
}

#[derive(Default)]
struct Registry {
    inner: Mutex<RegInner>,
}

#[derive(Default)]
struct RegInner {
    records: BTreeMap<String, Record>,
    registrations: Vec<Arc<Registration>>,
    next_id: u64,
}

fn registry(machine: &Machine) -> Arc<Registry> {
    machine.extension(Registry::default)
}

fn link_for(
    node: Option<&DeviceNode>,
    device: &Device,
    class: Guid,
    reference: Option<&str>,
) -> String {
    let base = node.map_or_else(
        || device.name().replace(' ', "_"),
        |n| n.instance_id().to_owned(),
    );
    let mut link = format!("\\??\\{}#{class}", base.replace('\\', "#"));
    if let Some(r) = reference {
        link.push('\\');
        link.push_str(r);
    }
    link
}

impl Device {
    /// `WdfDeviceCreateDeviceInterface`: registers an interface of `class` with an optional
    /// reference string; enabled when the stack starts (at once if it already has). Returns the
    /// symbolic link name.
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` if this device already registered the same class and
    /// reference string; `STATUS_INVALID_DEVICE_STATE` if the device is deleted;
    /// `STATUS_INVALID_DEVICE_REQUEST` on a [control device](crate::control) (no interfaces on
    /// non-PnP devices).
    pub fn create_interface(&self, class: Guid, reference: Option<&str>) -> Result<String, Status> {
        self.object()
            .ensure_alive("WdfDeviceCreateDeviceInterface")?;
        if self.is_control() {
            return Err(Status::INVALID_DEVICE_REQUEST);
        }
        let machine = self.machine().ok_or(Status::INVALID_DEVICE_STATE)?;
        let node = self.node();
        let link = link_for(node.as_ref(), self, class, reference);
        let started = node
            .as_ref()
            .is_some_and(|n| n.state() == crate::pnp::NodeState::Started);
        self.extension(|| {
            self.add_power_hook(Arc::new(InterfaceHook));
            InterfaceHooked
        });
        {
            let reg = registry(&machine);
            let mut inner = lock(&reg.inner);
            if inner.records.contains_key(&link) {
                return Err(Status::INVALID_PARAMETER);
            }
            inner.records.insert(
                link.clone(),
                Record {
                    class,
                    reference: reference.map(str::to_owned),
                    device: self.clone(),
                    enabled: false,
                    wanted: true,
                    started,
                },
            );
        }
        if started {
            set_enabled(&machine, &link, true);
        }
        Ok(link)
    }

    /// `WdfDeviceSetDeviceInterfaceState`: enables or disables one of this device's interfaces
    /// (an enable before the stack starts takes effect at start).
    ///
    /// Errors: `STATUS_NO_SUCH_DEVICE` if the device has no such interface.
    pub fn set_interface_state(
        &self,
        class: Guid,
        reference: Option<&str>,
        enabled: bool,
    ) -> Result<(), Status> {
        let machine = self.machine().ok_or(Status::INVALID_DEVICE_STATE)?;
        let link = link_for(self.node().as_ref(), self, class, reference);
        let started = {
            let reg = registry(&machine);
            let mut inner = lock(&reg.inner);
            let rec = inner
                .records
                .get_mut(&link)
                .filter(|r| r.device == *self)
                .ok_or(Status::NO_SUCH_DEVICE)?;
            rec.wanted = enabled;
            rec.started
        };
        if started || !enabled {
            set_enabled(&machine, &link, enabled);
        }
        Ok(())
    }

    /// The symbolic links of this device's interfaces (enabled or not).
    pub fn interfaces(&self) -> Vec<String> {
        let Some(machine) = self.machine() else {
            return Vec::new();
        };
        let reg = registry(&machine);
        let inner = lock(&reg.inner);
        inner
            .records
            .iter()
            .filter(|(_, r)| r.device == *self)
            .map(|(l, _)| l.clone())
            .collect()
    }
}

/// Changes the state of `link` and notifies the registrations of its class.
fn set_enabled(machine: &Machine, link: &str, enabled: bool) {
    let reg = registry(machine);
    let (class, regs) = {
        let mut inner = lock(&reg.inner);
        let Some(rec) = inner.records.get_mut(link) else {
            return;
        };
        if rec.enabled == enabled {
            return;
        }
        rec.enabled = enabled;
        let class = rec.class;
        let regs: Vec<Arc<Registration>> = inner
            .registrations
            .iter()
            .filter(|r| r.class == class)
            .cloned()
            .collect();
        (class, regs)
    };
    let event = if enabled {
        InterfaceEvent::Arrival
    } else {
        InterfaceEvent::Removal
    };
    machine.trace().record_for(
        TraceKind::State,
        None,
        link,
        if enabled {
            "interface enabled"
        } else {
            "interface disabled"
        },
    );
    let change = InterfaceChange {
        event,
        class,
        symbolic_link: link.to_owned(),
    };
    for r in regs {
        deliver(&r, &change);
    }
}

fn deliver(reg: &Registration, change: &InterfaceChange) {
    let me = std::thread::current().id();
    {
        let mut st = lock(&reg.st);
        if st.inactive {
            return;
        }
        st.running.push(me);
    }
    let label = format!("{:?}Notification", change.event);
    invoke_callback(&reg.driver, "PnP notification", &label, || {
        (reg.callback)(change);
    });
    let mut st = lock(&reg.st);
    if let Some(pos) = st.running.iter().position(|t| *t == me) {
        st.running.remove(pos);
    }
    reg.cv.notify_all();
}

/// Marks a device on which [`InterfaceHook`] is registered.
struct InterfaceHooked;

/// The interface layer's view of a device's node: enable on start, disable when leaving.
struct InterfaceHook;

impl DevicePowerHook for InterfaceHook {
    fn stack_started(&self, device: &Device) {
        device_started(device);
    }

    fn leaving(&self, device: &Device) {
        device_removed(device);
    }
}

/// A device's stack has started: enables its wanted interfaces.
fn device_started(dev: &Device) {
    let Some(machine) = dev.machine() else {
        return;
    };
    let links: Vec<String> = {
        let reg = registry(&machine);
        let mut inner = lock(&reg.inner);
        inner
            .records
            .iter_mut()
            .filter(|(_, r)| r.device == *dev)
            .map(|(l, r)| {
                r.started = true;
                (l.clone(), r.wanted)
            })
            .filter(|(_, w)| *w)
            .map(|(l, _)| l)
            .collect()
    };
    for l in links {
        set_enabled(&machine, &l, true);
    }
}

/// A device is leaving: disables its interfaces and forgets them.
fn device_removed(dev: &Device) {
    let Some(machine) = dev.machine() else {
        return;
    };
    let links: Vec<String> = {
        let reg = registry(&machine);
        let inner = lock(&reg.inner);
        inner
            .records
            .iter()
            .filter(|(_, r)| r.device == *dev)
            .map(|(l, _)| l.clone())
            .collect()
    };
    for l in &links {
        set_enabled(&machine, l, false);
    }
    let reg = registry(&machine);
    let mut inner = lock(&reg.inner);
    for l in &links {
        inner.records.remove(l);
    }
}

/// A registration from [`register_notification`]. Dropping it does **not** unregister (as with
/// the kernel's notification entry); call [`unregister`](Self::unregister).
pub struct NotificationEntry {
    machine: crate::object::MachineRef,
    reg: Arc<Registration>,
}

impl fmt::Debug for NotificationEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotificationEntry")
            .field("class", &self.reg.class)
            .field("driver", &self.reg.driver)
            .finish_non_exhaustive()
    }
}

impl NotificationEntry {
    /// `IoUnregisterPlugPlayNotificationEx`: no callback of this entry runs after this returns.
    pub fn unregister(self) {
        if let Some(m) = self.machine.machine() {
            let reg = registry(&m);
            lock(&reg.inner)
                .registrations
                .retain(|r| r.id != self.reg.id);
        }
        let me = std::thread::current().id();
        let mut st = lock(&self.reg.st);
        st.inactive = true;
        while st.running.iter().any(|t| *t != me) {
            st = self
                .reg
                .cv
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// `IoRegisterPlugPlayNotification(EventCategoryDeviceInterfaceChange, class, …)` at
/// `PASSIVE_LEVEL`, for the calling thread's current driver (or no driver, for a test). With
/// `include_existing`, `callback` first runs once per already-enabled interface of `class`.
///
/// Errors: `STATUS_INVALID_DEVICE_STATE` above `PASSIVE_LEVEL` (also an IRQL violation).
pub fn register_notification(
    machine: &Machine,
    class: Guid,
    include_existing: bool,
    callback: impl Fn(&InterfaceChange) + Send + Sync + 'static,
) -> Result<NotificationEntry, Status> {
    if !require_max_irql(Irql::Passive, "IoRegisterPlugPlayNotification") {
        return Err(Status::INVALID_DEVICE_STATE);
    }
    let reg = registry(machine);
    let (registration, existing) = {
        let mut inner = lock(&reg.inner);
        inner.next_id += 1;
        let r = Arc::new(Registration {
            id: inner.next_id,
            class,
            driver: current_driver().unwrap_or_else(|| NO_DRIVER.to_owned()),
            callback: Arc::new(callback),
            st: Mutex::new(RegSt::default()),
            cv: Condvar::new(),
        });
        inner.registrations.push(Arc::clone(&r));
        let existing: Vec<String> = if include_existing {
            inner
                .records
                .iter()
                .filter(|(_, rec)| rec.class == class && rec.enabled)
                .map(|(l, _)| l.clone())
                .collect()
        } else {
            Vec::new()
        };
        (r, existing)
    };
    let _g = crate::object::bind(machine);
    for link in existing {
        deliver(
            &registration,
            &InterfaceChange {
                event: InterfaceEvent::Arrival,
                class,
                symbolic_link: link,
            },
        );
    }
    Ok(NotificationEntry {
        machine: crate::object::MachineRef::new(machine),
        reg: registration,
    })
}

/// The enabled interface with symbolic link `link` (case-insensitive, as Windows compares names).
pub fn find_interface(machine: &Machine, link: &str) -> Option<InterfaceInfo> {
    let reg = registry(machine);
    let inner = lock(&reg.inner);
    inner
        .records
        .iter()
        .find(|(l, r)| r.enabled && l.eq_ignore_ascii_case(link))
        .map(|(l, r)| InterfaceInfo {
            class: r.class,
            symbolic_link: l.clone(),
            reference: r.reference.clone(),
            device: r.device.clone(),
        })
}

/// The enabled interfaces of `class` (`IoGetDeviceInterfaces`), sorted by link.
pub fn interfaces_of_class(machine: &Machine, class: Guid) -> Vec<String> {
    let reg = registry(machine);
    let inner = lock(&reg.inner);
    inner
        .records
        .iter()
        .filter(|(_, r)| r.enabled && r.class == class)
        .map(|(l, _)| l.clone())
        .collect()
}

// ---------------------------------------------------------------------------- symbolic links

/// Per-machine symbolic links: lower-cased link → (link as given, device).
#[derive(Default)]
struct Links {
    inner: Mutex<BTreeMap<String, (String, Weak<DeviceInner>)>>,
}

fn links(machine: &Machine) -> Arc<Links> {
    machine.extension(Links::default)
}

/// Removes the symbolic link of `device`, if it has one.
fn forget_link(device: &Device) {
    let Some(machine) = device.machine() else {
        return;
    };
    let table = links(&machine);
    lock(&table.inner).retain(|_, (_, w)| !w.upgrade().is_some_and(|d| Arc::ptr_eq(&d, &device.0)));
}

/// Removes a device's symbolic link: when a PnP device is torn down (`removed`), when a control
/// device is deleted (`leaving`, before its I/O is torn down).
struct LinkHook {
    control: bool,
}

impl DevicePowerHook for LinkHook {
    fn leaving(&self, device: &Device) {
        if self.control {
            forget_link(device);
        }
    }

    fn removed(&self, device: &Device) {
        forget_link(device);
    }
}

/// The device an open of `link` reaches, after the I/O manager's checks: `Ok(None)` if no
/// symbolic link of that name exists. A PnP device's opens reach the top of its stack.
///
/// Errors: `STATUS_NO_SUCH_DEVICE` before [`Device::finish_initializing`];
/// `STATUS_ACCESS_DENIED` if the security descriptor refuses the opener.
pub(crate) fn resolve_link(
    machine: &Machine,
    link: &str,
    administrator: bool,
    mode: RequestorMode,
) -> Result<Option<Device>, Status> {
    let device = {
        let table = links(machine);
        let t = lock(&table.inner);
        t.get(&link.to_ascii_lowercase())
            .and_then(|(_, w)| w.upgrade())
            .map(Device)
    };
    let Some(device) = device.filter(|d| !d.object().is_deleted()) else {
        return Ok(None);
    };
    if !device.is_control() {
        // A PnP device: the I/O manager sends the create to the top of its stack.
        let top = device
            .node()
            .and_then(|n| n.stack().last().cloned())
            .unwrap_or(device);
        return Ok(Some(top));
    }
    control::check_open(&device, administrator, mode)?;
    Ok(Some(device))
}

impl Device {
    /// `WdfDeviceCreateSymbolicLink` (PASSIVE): makes the device openable by `link` (e.g.
    /// `\DosDevices\MyCtl`, compared case-insensitively) with
    /// [`Application::open`](crate::io::Application::open) or a remote
    /// [`IoTarget`](crate::io::IoTarget). The framework removes the link when the device is
    /// deleted (control device) or torn down (PnP device, whose opens reach the top of its
    /// stack).
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if the device is deleted, has no name
    /// ([`DeviceInit::assign_name`](crate::device::DeviceInit::assign_name); a control device's
    /// generated name does not count, as documented), or the call is above `PASSIVE_LEVEL`;
    /// `STATUS_INVALID_DEVICE_REQUEST` if the device already has a symbolic link;
    /// `STATUS_OBJECT_NAME_COLLISION` if the name is taken (by a link or a device interface).
    pub fn create_symbolic_link(&self, link: &str) -> Result<(), Status> {
        if !require_max_irql(Irql::Passive, "WdfDeviceCreateSymbolicLink") {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        self.object().ensure_alive("WdfDeviceCreateSymbolicLink")?;
        let machine = self.machine().ok_or(Status::INVALID_DEVICE_STATE)?;
        if self.device_name().is_none() || self.has_generated_name() {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        if find_interface(&machine, link).is_some() {
            return Err(Status::OBJECT_NAME_COLLISION);
        }
        let table = links(&machine);
        {
            let mut t = lock(&table.inner);
            let mine =
                |w: &Weak<DeviceInner>| w.upgrade().is_some_and(|d| Arc::ptr_eq(&d, &self.0));
            if t.values().any(|(_, w)| mine(w)) {
                return Err(Status::INVALID_DEVICE_REQUEST);
            }
            let key = link.to_ascii_lowercase();
            if t.get(&key).is_some_and(|(_, w)| control::live(w)) {
                return Err(Status::OBJECT_NAME_COLLISION);
            }
            t.insert(key, (link.to_owned(), Arc::downgrade(&self.0)));
        }
        self.add_power_hook(Arc::new(LinkHook {
            control: self.is_control(),
        }));
        self.trace_state(&format!("symbolic link {link} created"));
        Ok(())
    }

    /// The symbolic link made with [`create_symbolic_link`](Self::create_symbolic_link), while
    /// it exists.
    pub fn symbolic_link(&self) -> Option<String> {
        let machine = self.machine()?;
        let table = links(&machine);
        let t = lock(&table.inner);
        t.values()
            .find(|(_, w)| w.upgrade().is_some_and(|d| Arc::ptr_eq(&d, &self.0)))
            .map(|(l, _)| l.clone())
    }
}
