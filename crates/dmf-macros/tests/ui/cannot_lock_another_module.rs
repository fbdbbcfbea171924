// A Module cannot lock another Module: `lock` exists only on its own scope type.
mod a {
    use dmf::prelude::*;

    #[derive(Default)]
    struct Context;

    #[dmf_module(config = (), context = Context, open = Create, lock = Dispatch)]
    pub struct A;

    #[dmf_callbacks]
    impl ModuleCallbacks for A {}

    impl A {
        pub fn lock_b(&self, b: &super::b::B) {
            let _mine = self.enter().unwrap();
            let _ = b.lock();
        }
    }
}

mod b {
    use dmf::prelude::*;

    #[dmf_module(config = (), open = Create, lock = Dispatch)]
    pub struct B;

    #[dmf_callbacks]
    impl ModuleCallbacks for B {}
}

fn main() {}
