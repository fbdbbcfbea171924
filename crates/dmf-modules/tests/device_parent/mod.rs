//! The device parent of dynamic Modules in the scenario tests (shared by `task_support` and
//! `buffers_common`).
#![allow(dead_code)]

use dmf_core::module::{
    CollectionConfig, DynamicParent, DynamicParentRef, ModuleCollection, ModuleInit,
};
use dmf_core::platform::{simulator, Device};
use kmdf_sim::pnp::DeviceNode;
use kmdf_sim::Machine;

/// The parent of dynamic Modules whose timers or work items need a device (their
/// `ParentObject`): a device of a minimal driver plugged in on the machine, and a collection of
/// no Modules bound to it. `Module::with(config).create(&parent)` binds a Module to the device.
pub struct DeviceParent {
    pub node: DeviceNode,
    pub device: Device,
    pub collection: ModuleCollection,
}

impl DynamicParent for DeviceParent {
    fn dynamic_parent(&self) -> DynamicParentRef {
        self.collection.dynamic_parent()
    }
}

/// A [`DeviceParent`] on `machine`.
pub fn device_parent(machine: &Machine) -> DeviceParent {
    let (node, device) =
        simulator::plug_in_device(machine, "module-test").expect("the test device starts");
    let collection = ModuleCollection::create(
        ModuleInit::new(),
        CollectionConfig {
            device: Some(device.clone()),
            ..CollectionConfig::default()
        },
    )
    .expect("a collection on the test device");
    DeviceParent {
        node,
        device,
        collection,
    }
}
