// A client holds a Module's handle but cannot reach its context, config or lock, nor enter it.
mod ring {
    use dmf::prelude::*;

    #[derive(Default)]
    struct Context {
        pub count: u32,
    }

    #[dmf_module(config = u32, context = Context, open = Create, lock = Dispatch)]
    pub struct Ring;

    #[dmf_callbacks]
    impl ModuleCallbacks for Ring {}
}

fn client(ring: &ring::Ring) {
    let module = ring.enter().unwrap();
    let _ = module.lock().count;
}

fn main() {}
