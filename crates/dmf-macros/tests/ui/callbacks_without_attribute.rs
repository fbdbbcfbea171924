// Forgetting #[dmf_callbacks] cannot silently leave callbacks undispatched: it does not compile.
use dmf::prelude::*;

#[dmf_module(config = (), open = Create, lock = Dispatch)]
pub struct Thing;

impl ModuleCallbacks for Thing {
    fn open(_module: &Dispatched<'_, Self>) -> NtResult<()> {
        Ok(())
    }
}

fn main() {}
