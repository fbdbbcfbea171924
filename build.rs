//! Build script of the `dmf` facade.
//!
//! Off Windows (and on Windows without feature `kmdf`) it only declares the crate's cfgs. With
//! feature `kmdf` it will configure the WDK library build through wdk-build (the kernel-backend
//! issue); until then enabling `kmdf` on a host without the eWDK is reported here, clearly.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(dmf_kmdf)");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_KMDF").is_some() {
        // The kernel backend is selected: tell the facade so its kernel glue compiles.
        println!("cargo::rustc-cfg=dmf_kmdf");
    }
}
