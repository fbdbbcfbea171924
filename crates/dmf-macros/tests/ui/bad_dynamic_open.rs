use dmf::prelude::*;

// A dynamic instance opens (or registers) on its creation: only Create or NotifyCreate.
#[dmf_module(config = (), open = NotifyPrepareHardware, dynamic_open = D0Entry, lock = Dispatch)]
pub struct Target;

#[dmf_callbacks]
impl ModuleCallbacks for Target {}

fn main() {}
