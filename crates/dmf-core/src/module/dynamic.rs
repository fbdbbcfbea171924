//! Dynamic Modules: created at any time with
//! `<Name>::with(config).create(&parent)`, owned by their parent, deleted explicitly or with it.
//!
//! A dynamic Module may only use `OPEN_Create` or `NOTIFY_Create` (otherwise creation fails with
//! `STATUS_INVALID_PARAMETER`). It receives no WDF callbacks: it is not in any dispatch order. A
//! Module type that implements some can still be created dynamically, as in C DMF; it learns that
//! it is dynamic from `is_dynamic` and must do without them (a ContinuousRequestTarget streams in
//! manual mode only, for instance). It is open (or registered) when `create` returns. The returned
//! [`DynamicModule`] is the owner: [`DynamicModule::delete`] (or dropping it) is `WdfObjectDelete`
//! — close (parent first) then destroy (children first), each exactly once even if the parent is
//! deleted concurrently. The parent is a Module's scope (the Module owns it), a
//! [`ModuleCollection`] (the device owns it) or [`NoParent`] (a dynamic-only driver owns it).

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::ops::Deref;

use super::collection::{open_on_create, ModuleCollection, PhaseLog};
use super::object::{DeviceShared, ModuleObject};
use super::scope::{handle_of, Module, Scope};
use super::spec::{create_tree, ModuleSpec, Placement};
use crate::fallible::VecExt;
use crate::status::{NtResult, NtStatus};
use crate::sync::ModuleLock;

enum Owner {
    Module(Weak<ModuleObject>),
    Device(Weak<ModuleLock<Vec<Arc<ModuleObject>>>>),
    Nobody,
}

/// Where a dynamic Module goes (`WDF_OBJECT_ATTRIBUTES.ParentObject`). Opaque.
pub struct DynamicParentRef {
    parent: Weak<ModuleObject>,
    device: Option<Arc<DeviceShared>>,
    owner: Owner,
}

impl core::fmt::Debug for DynamicParentRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DynamicParentRef")
    }
}

/// What can own a dynamic Module.
pub trait DynamicParent {
    /// The parent reference.
    fn dynamic_parent(&self) -> DynamicParentRef;
}

impl<M: Module> DynamicParent for Scope<'_, M> {
    fn dynamic_parent(&self) -> DynamicParentRef {
        DynamicParentRef {
            parent: self.object.this.clone(),
            device: self.object.device.clone(),
            owner: Owner::Module(self.object.this.clone()),
        }
    }
}

impl DynamicParent for ModuleCollection {
    fn dynamic_parent(&self) -> DynamicParentRef {
        DynamicParentRef {
            parent: Weak::new(),
            device: Some(Arc::clone(&self.device)),
            owner: Owner::Device(Arc::downgrade(&self.dynamic)),
        }
    }
}

/// No parent: the caller's [`DynamicModule`] alone owns the Module (a dynamic-only driver).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoParent;

impl DynamicParent for NoParent {
    fn dynamic_parent(&self) -> DynamicParentRef {
        DynamicParentRef {
            parent: Weak::new(),
            device: None,
            owner: Owner::Nobody,
        }
    }
}

/// The owner of a dynamic Module; dereferences to its handle. Dropping it deletes the Module.
#[must_use = "dropping a DynamicModule deletes the Module"]
pub struct DynamicModule<M: Module> {
    handle: M,
    owner: Owner,
}

impl<M: Module> core::fmt::Debug for DynamicModule<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("DynamicModule")
            .field(&self.handle.__ref())
            .finish()
    }
}

impl<M: Module> Deref for DynamicModule<M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.handle
    }
}

fn remove(list: &mut Vec<Arc<ModuleObject>>, object: &Arc<ModuleObject>) {
    list.retain(|o| !Arc::ptr_eq(o, object));
}

impl<M: Module> DynamicModule<M> {
    /// `WdfObjectDelete`: close then destroy, exactly once (also on drop).
    pub fn delete(self) {
        drop(self);
    }
}

impl<M: Module> Drop for DynamicModule<M> {
    fn drop(&mut self) {
        let object = &self.handle.__ref().0;
        match &self.owner {
            Owner::Module(parent) => {
                if let Some(mutable) = parent
                    .upgrade()
                    .as_deref()
                    .and_then(ModuleObject::mutable_if_any)
                {
                    remove(&mut mutable.lock().dynamic_children, object);
                }
            }
            Owner::Device(list) => {
                if let Some(list) = list.upgrade() {
                    remove(&mut list.lock(), object);
                }
            }
            Owner::Nobody => {}
        }
        ModuleObject::close_tree(object);
        ModuleObject::destroy_tree(object);
    }
}

impl<M: Module> ModuleSpec<M> {
    /// `DMF_<Name>_Create` for a dynamic Module: creates it under `parent` and opens (or
    /// registers) it before returning.
    pub fn create(self, parent: &(impl DynamicParent + ?Sized)) -> NtResult<DynamicModule<M>> {
        let DynamicParentRef {
            parent,
            device,
            owner,
        } = parent.dynamic_parent();
        let placement = Placement {
            parent: Some(parent),
            device,
            dynamic: true,
        };
        let object = create_tree(self.erased?, &placement)?;
        super::lifecycle::record_created_tree(&object);
        let mut log = PhaseLog::default();
        if let Err(status) = open_on_create(core::slice::from_ref(&object), &mut log) {
            log.unwind();
            ModuleObject::close_tree(&object);
            ModuleObject::destroy_tree(&object);
            return Err(status);
        }
        // Attaching is the last step and the only one that publishes the Module; if the owner's
        // list cannot grow it is left as it was and the Module is closed and destroyed.
        let attached = match &owner {
            Owner::Module(parent) => match parent.upgrade() {
                Some(p) => p.mutable().and_then(|mutable| {
                    mutable
                        .lock()
                        .dynamic_children
                        .try_push(Arc::clone(&object))
                }),
                None => Err(NtStatus::INVALID_DEVICE_STATE),
            },
            Owner::Device(list) => match list.upgrade() {
                Some(list) => list.lock().try_push(Arc::clone(&object)),
                None => Err(NtStatus::INVALID_DEVICE_STATE),
            },
            Owner::Nobody => Ok(()),
        };
        if let Err(status) = attached {
            ModuleObject::close_tree(&object);
            ModuleObject::destroy_tree(&object);
            return Err(status);
        }
        Ok(DynamicModule {
            handle: handle_of(&object)?,
            owner,
        })
    }
}
