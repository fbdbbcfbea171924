use dmf::prelude::*;

#[dmf_module(config = (), open = Create, lock = Dispatch)]
pub struct Thing {
    field: u32,
}

#[dmf_callbacks]
impl ModuleCallbacks for Thing {}

fn main() {}
