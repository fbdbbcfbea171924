//! trybuild UI tests of `#[dmf_module]` / `#[dmf_callbacks]`: the macros' errors and the
//! encapsulation rules (invariant 5). The `.stderr` files are reviewed compiler output for the
//! toolchain CI pins; run with `TRYBUILD=overwrite` to regenerate them after a toolchain change.
#[test]
fn macro_ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("crates/dmf-macros/tests/ui/*.rs");
    // A complete small Module that must compile (and the client code around it).
    t.pass("crates/dmf-macros/tests/ui/pass/*.rs");
}
