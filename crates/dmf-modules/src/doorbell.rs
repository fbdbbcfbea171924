//! # Doorbell
//!
//! ## Summary
//!
//! Coalesces many rings into one run of a work item (C DMF: `Dmf_Doorbell.c`). Each
//! [`Doorbell::ring`] guarantees that the client's callback runs at least once, at
//! `PASSIVE_LEVEL`, *after* that ring; rings that arrive before the callback starts are served by
//! the same run, and a ring that arrives while the callback runs causes exactly one more run.
//!
//! ## Configuration
//!
//! [`DoorbellConfig`]: `callback` — `WorkItemCallback`, a [`DoorbellCallback`].
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`Doorbell::ring`] | `DMF_Doorbell_Ring` | ≤ DISPATCH |
//! | [`Doorbell::flush`] | `DMF_Doorbell_Flush` | PASSIVE |
//!
//! ## Callbacks
//!
//! `EVT_DMF_Doorbell_ClientCallback` → [`DoorbellCallback`]: `Fn(&Doorbell)`, at
//! `PASSIVE_LEVEL`, never two at a time for one Module.
//!
//! ## Remarks
//!
//! - A WDF work item may start its next run before the current one returns; the Module
//!   serialises the client's callback so runs never overlap.
//! - Close flushes: a ring that was accepted before close began is still served before close
//!   returns; later rings fail with `STATUS_INVALID_DEVICE_STATE` (C's `Ring` returns `VOID`).
//! - Open option `OPEN_Create`, DISPATCH lock, no WDF callbacks (can be created dynamically).
//! - **Needs a device.** The work item is a child of the Module's device (the `ParentObject` of
//!   `WdfWorkItemCreate`) and goes away with it. A Module without a device (a dynamic Module
//!   created without a device-bound parent) fails to open with `STATUS_INVALID_DEVICE_STATE`,
//!   as C DMF's `WdfWorkItemCreate` fails for it.
//!
//! ## Category
//!
//! Task Execution.
//!
//! # Example
//!
//! ```
//! use core::sync::atomic::{AtomicU32, Ordering};
//! extern crate alloc;
//! use alloc::sync::Arc;
//! use dmf_core::module::{CollectionConfig, ModuleCollection, ModuleInit};
//! use dmf_modules::doorbell::{Doorbell, DoorbellConfig};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! // Its work item is a child of its device: the Module's parent is a device's (empty)
//! // collection, on a device of the simulator.
//! let (_node, device) = dmf_core::platform::simulator::plug_in_device(&machine, "example")?;
//! let config = CollectionConfig { device: Some(device), ..CollectionConfig::default() };
//! let parent = ModuleCollection::create(ModuleInit::new(), config)?;
//! let runs = Arc::new(AtomicU32::new(0));
//! let counter = Arc::clone(&runs);
//! let doorbell = Doorbell::with(DoorbellConfig {
//!     callback: Arc::new(move |_doorbell: &Doorbell| {
//!         counter.fetch_add(1, Ordering::SeqCst);
//!     }),
//! })
//! .create(&parent)?;
//! doorbell.ring()?;
//! doorbell.flush()?;
//! assert!(runs.load(Ordering::SeqCst) >= 1);
//! doorbell.delete();
//! # Ok::<(), dmf_core::NtStatus>(())
//! ```

use alloc::sync::Arc;

use dmf_core::fallible::try_arc;
use dmf_core::module::{Dispatched, ModuleCallbacks};
use dmf_core::platform::contract::PlatformWorkItem;
use dmf_core::platform::WorkItem;
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

use crate::back_ref::BackRef;

/// `EVT_DMF_Doorbell_ClientCallback`.
pub type DoorbellCallback = Arc<dyn Fn(&Doorbell) + Send + Sync>;

/// `DMF_CONFIG_Doorbell`.
#[derive(Clone)]
pub struct DoorbellConfig {
    /// `WorkItemCallback`: called at PASSIVE_LEVEL after rings.
    pub callback: DoorbellCallback,
}

impl core::fmt::Debug for DoorbellConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DoorbellConfig").finish_non_exhaustive()
    }
}

/// Coalesces rings into queued work-item runs. See the [module documentation](self).
#[dmf_module(crate = dmf_core, config = DoorbellConfig, context = Context, open = Create, lock = Dispatch)]
pub struct Doorbell;

#[derive(Default)]
struct Context {
    shared: Option<Arc<Shared>>,
}

#[derive(Default)]
struct Bell {
    /// Rung since the callback last started.
    rung: bool,
    /// The callback loop runs.
    running: bool,
}

struct Shared {
    handle: Doorbell,
    callback: DoorbellCallback,
    bell: ModuleLock<Bell>,
    work_item: WorkItem,
}

impl Shared {
    fn run(&self) {
        {
            let mut bell = self.bell.lock();
            if bell.running || !bell.rung {
                return;
            }
            bell.running = true;
        }
        loop {
            self.bell.lock().rung = false;
            (self.callback)(&self.handle);
            let mut bell = self.bell.lock();
            if !bell.rung {
                bell.running = false;
                return;
            }
        }
    }
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for Doorbell {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let device = module.require_device()?;
        let handle = module.handle()?;
        let bell = ModuleLock::new(LockKind::Spin, Bell::default())?;
        let back = BackRef::<Shared>::new()?;
        let work_item = WorkItem::new(device, module.name(), {
            let back = Arc::clone(&back);
            move || {
                if let Some(shared) = back.upgrade() {
                    shared.run();
                }
            }
        })?;
        let shared = try_arc(Shared {
            handle,
            callback: Arc::clone(&module.config().callback),
            bell,
            work_item,
        })?;
        back.set(&shared);
        module.lock().shared = Some(shared);
        Ok(())
    }

    fn close(module: &Dispatched<'_, Self>) {
        let shared = module.lock().shared.take();
        if let Some(shared) = shared {
            // INVARIANT: no ring can arrive any more; serve the ones that did.
            shared.work_item.flush();
            shared.run();
        }
    }
}

impl Doorbell {
    /// `DMF_Doorbell_Ring` (≤ DISPATCH_LEVEL): the callback will run at least once after this.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn ring(&self) -> NtResult<()> {
        let module = self.enter()?;
        let shared = module
            .lock()
            .shared
            .clone()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let mut bell = shared.bell.lock();
        bell.rung = true;
        if !bell.running {
            shared.work_item.enqueue();
        }
        Ok(())
    }

    /// `DMF_Doorbell_Flush` (PASSIVE_LEVEL): waits until no run is queued or running. From inside
    /// the callback it returns at once.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn flush(&self) -> NtResult<()> {
        let module = self.enter()?;
        let shared = module
            .lock()
            .shared
            .clone()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        shared.work_item.flush();
        drop(module);
        Ok(())
    }
}
