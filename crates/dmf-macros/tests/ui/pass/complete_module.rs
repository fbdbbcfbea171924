// A complete small Module, written as a Module author would in dmf-modules: config, private
// context, callbacks, Methods, an auxiliary lock, a child, and a client that creates and calls it.
use dmf::core::module::{Added, CollectionConfig};
use dmf::prelude::*;

/// The config: copied into the Module at creation.
#[derive(Clone, Debug)]
pub struct CounterConfig {
    pub start: u32,
}

#[derive(Default)]
struct Context {
    value: u32,
    child: Option<Added<Leaf>>,
}

#[dmf_module(config = CounterConfig, context = Context, open = Create, lock = Dispatch, aux_locks = 1)]
pub struct Counter;

#[dmf_callbacks]
impl ModuleCallbacks for Counter {
    fn child_modules_add(module: &Dispatched<'_, Self>, init: &mut ModuleInit) {
        let token = init.add(Leaf::with(()));
        module.lock().child = Some(token);
    }

    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let start = module.config().start;
        module.lock().value = start;
        Ok(())
    }
}

impl Counter {
    /// A Method: rundown-guarded, under the Module's own lock.
    pub fn increment(&self) -> NtResult<u32> {
        let module = self.enter()?;
        let _aux = module.aux_lock(0)?;
        let child = module.lock().child.ok_or(NtStatus::NOT_FOUND)?;
        module.child(child)?.touch()?;
        let mut context = module.lock();
        context.value += 1;
        Ok(context.value)
    }
}

#[dmf_module(config = (), open = Create, lock = Dispatch)]
pub struct Leaf;

#[dmf_callbacks]
impl ModuleCallbacks for Leaf {}

impl Leaf {
    pub fn touch(&self) -> NtResult<()> {
        let _module = self.enter()?;
        Ok(())
    }
}

/// The client side (what `EvtDmfDeviceModulesAdd` and a later callback would do). Not run here:
/// creating Modules needs a simulated machine, which the module tests provide.
fn client() -> NtResult<()> {
    let mut init = ModuleInit::new();
    let counter = init.add(Counter::with(CounterConfig { start: 41 }));
    let collection = ModuleCollection::create(init, CollectionConfig::default())?;
    let counter = collection.get(counter)?;
    assert_eq!(counter.increment(), Ok(42));
    assert_eq!(counter.module_name(), "Counter");
    collection.destroy();
    assert_eq!(counter.increment(), Err(NtStatus::INVALID_DEVICE_STATE));
    Ok(())
}

fn main() {
    let _compiles: fn() -> NtResult<()> = client;
}
