// The context type is private to the Module's Rust module; nothing outside can name it.
mod ring {
    use dmf::prelude::*;

    #[derive(Default)]
    struct Context {
        count: u32,
    }

    #[dmf_module(config = (), context = Context, open = Create, lock = Dispatch)]
    pub struct Ring;

    #[dmf_callbacks]
    impl ModuleCallbacks for Ring {}
}

fn main() {
    let _c: ring::Context = Default::default();
}
