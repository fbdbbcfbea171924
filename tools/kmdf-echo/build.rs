//! Build script of the echo driver: on a Windows host, `wdk_build::configure_wdk_binary_build()`
//! (the WDK's library paths and the KMDF link arguments `/DRIVER /SUBSYSTEM:NATIVE
//! /ENTRY:FxDriverEntry …`), as every windows-drivers-rs driver does. Elsewhere nothing: the
//! kmdf check passes the link arguments itself.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    configure_driver_binary();
}

#[cfg(windows)]
fn configure_driver_binary() {
    if let Err(error) = wdk_build::configure_wdk_binary_build() {
        panic!("wdk-build could not configure the driver binary: {error:?}");
    }
}

#[cfg(not(windows))]
fn configure_driver_binary() {}
