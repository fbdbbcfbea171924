//! Build script of the wdk-sys stand-in: copies the generated bindings into `OUT_DIR` (where
//! wdk-macros expects `types.rs`), writes the two small generated modules wdk-sys has
//! (`call_unsafe_wdf_function_binding.rs`, `wdf_function_count.rs`) and the link search path.

use std::path::PathBuf;

const GENERATED: [&str; 6] = [
    "types.rs",
    "constants.rs",
    "ntddk.rs",
    "wdf.rs",
    "status.rs",
    "hid.rs",
];

fn main() {
    println!("cargo::rerun-if-env-changed=DMF_WDK_BINDINGS");
    println!("cargo::rerun-if-env-changed=DMF_WDK_LIBS");
    println!(
        "cargo::rustc-check-cfg=cfg(driver_model__driver_type, values(\"WDM\", \"KMDF\", \"UMDF\"))"
    );
    println!("cargo::rustc-cfg=driver_model__driver_type=\"KMDF\"");
    let Some(bindings) = std::env::var_os("DMF_WDK_BINDINGS").map(PathBuf::from) else {
        panic!(
            "DMF_WDK_BINDINGS is not set: this wdk-sys is the kmdf check's stand-in; run .ci/kmdf-check"
        );
    };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for file in GENERATED {
        let from = bindings.join(file);
        println!("cargo::rerun-if-changed={}", from.display());
        std::fs::copy(&from, out.join(file))
            .unwrap_or_else(|e| panic!("{}: {e} (run tools/wdk-bindgen first)", from.display()));
    }
    let types = out.join("types.rs");
    let types = types.to_str().expect("OUT_DIR is UTF-8");
    std::fs::write(
        out.join("call_unsafe_wdf_function_binding.rs"),
        format!(
            "/// Calls a WDF function by name through the function table (wdk-macros).\n\
             #[macro_export]\n\
             macro_rules! call_unsafe_wdf_function_binding {{\n\
             \x20   ( $($tt:tt)* ) => {{\n\
             \x20       $crate::__proc_macros::call_unsafe_wdf_function_binding!(r\"{types}\", $($tt)*)\n\
             \x20   }}\n\
             }}\n"
        ),
    )
    .expect("write call_unsafe_wdf_function_binding.rs");
    std::fs::write(
        out.join("wdf_function_count.rs"),
        "/// The number of entries of `WdfFunctions` (KMDF 1.25+: the loader fills `WdfFunctionCount`).\n\
         #[must_use]\n\
         pub fn get_wdf_function_count() -> usize {\n\
         \x20   // SAFETY: written once by the startup code before DriverEntry, read-only afterwards.\n\
         \x20   (unsafe { crate::WdfFunctionCount }) as usize\n\
         }\n",
    )
    .expect("write wdf_function_count.rs");
    if let Some(libs) = std::env::var_os("DMF_WDK_LIBS") {
        println!(
            "cargo::rustc-link-search=native={}",
            PathBuf::from(libs).display()
        );
    }
}
