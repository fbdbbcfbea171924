use dmf::prelude::*;

#[dmf_module(open = Create, lock = Passive)]
pub struct Thing;

#[dmf_callbacks]
impl ModuleCallbacks for Thing {}

fn main() {}
