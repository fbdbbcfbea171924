use dmf::prelude::*;

#[dmf_module(config = (), open = Create, lock = Passive, colour = Blue)]
pub struct Thing;

#[dmf_callbacks]
impl ModuleCallbacks for Thing {}

fn main() {}
