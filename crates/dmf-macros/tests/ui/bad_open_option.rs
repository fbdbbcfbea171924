use dmf::prelude::*;

#[dmf_module(config = (), open = Whenever, lock = Dispatch, aux_locks = 9)]
pub struct Thing;

#[dmf_callbacks]
impl ModuleCallbacks for Thing {}

fn main() {}
