//! Build script of the `virtual-bus` sample driver.
//!
//! With feature `kmdf` on a Windows host building for a Windows target it configures the driver
//! binary through wdk-build (`configure_wdk_binary_build`: WDK library paths and the kernel
//! driver link arguments `/DRIVER /SUBSYSTEM:NATIVE /ENTRY:FxDriverEntry …`). Otherwise (the
//! simulator build, or any Linux build) it does nothing: wdk-build is a Windows-host-only,
//! optional build-dependency.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let kmdf = std::env::var_os("CARGO_FEATURE_KMDF").is_some();
    let windows_target = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    if kmdf && windows_target {
        configure_driver_binary();
    }
}

/// `wdk_build::configure_wdk_binary_build()` (Windows hosts with the WDK).
#[cfg(all(windows, feature = "kmdf"))]
fn configure_driver_binary() {
    if let Err(error) = wdk_build::configure_wdk_binary_build() {
        panic!("wdk-build could not configure the driver binary: {error:?}");
    }
}

/// Off a Windows host the kernel backend cannot be built at all (dmf-core says why).
#[cfg(not(all(windows, feature = "kmdf")))]
fn configure_driver_binary() {
    println!("cargo::warning=feature `kmdf` needs a Windows host with the WDK; not configuring a driver binary");
}
