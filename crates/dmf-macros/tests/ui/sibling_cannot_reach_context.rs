// A Module holding another Module's handle (a sibling or its own child) cannot lock it or read
// its context: the access trait and the private key live in the other Module's Rust module.
mod child {
    use dmf::prelude::*;

    #[derive(Default)]
    struct Context {
        pub secret: u32,
    }

    #[dmf_module(config = (), context = Context, open = Create, lock = Dispatch)]
    pub struct Child;

    #[dmf_callbacks]
    impl ModuleCallbacks for Child {}
}

mod parent {
    use dmf::prelude::*;

    #[dmf_module(config = (), open = Create, lock = Dispatch)]
    pub struct Parent;

    #[dmf_callbacks]
    impl ModuleCallbacks for Parent {}

    impl Parent {
        pub fn peek(&self, child: &super::child::Child) -> u32 {
            let _mine = self.enter().unwrap();
            let theirs = child.enter().unwrap();
            theirs.lock().secret
        }
    }
}

fn main() {}
