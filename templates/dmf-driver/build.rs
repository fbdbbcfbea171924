//! Build script: with feature `kmdf` on a Windows host building for a Windows target it
//! configures the driver binary through wdk-build (WDK library paths, the kernel link
//! arguments). Otherwise (the simulator build) it does nothing.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let kmdf = std::env::var_os("CARGO_FEATURE_KMDF").is_some();
    let windows_target = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    if kmdf && windows_target {
        configure_driver_binary();
    }
}

#[cfg(all(windows, feature = "kmdf"))]
fn configure_driver_binary() {
    if let Err(error) = wdk_build::configure_wdk_binary_build() {
        panic!("wdk-build could not configure the driver binary: {error:?}");
    }
}

#[cfg(not(all(windows, feature = "kmdf")))]
fn configure_driver_binary() {
    println!("cargo::warning=feature `kmdf` needs a Windows host with the WDK; not configuring a driver binary");
}
