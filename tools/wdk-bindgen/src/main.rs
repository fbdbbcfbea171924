//! `wdk-bindgen`: wdk-sys-shaped Rust bindings from Microsoft's public KMDF 1.33 headers and
//! mingw-w64's NT base headers, generated on Linux with libclang.
//!
//! The output directory receives what wdk-sys 0.5.2's build script writes into its `OUT_DIR`, with
//! the same bindgen settings as wdk-build 0.6.0 (`use_core`, `derive_default`, `ModuleConsts`
//! enums, the same blocklists and clang flags, `WdfFunctions_01033` renamed `WdfFunctions`):
//!
//! | file | what |
//! |---|---|
//! | `constants.rs` | variables and constants of `ntifs.h ntddk.h ntstrsafe.h wdf.h` |
//! | `types.rs` | types of the same headers (wdk-macros reads this file) |
//! | `ntddk.rs` | functions of the NT base headers |
//! | `wdf.rs` | functions of the WDF headers (inline `WDF_*` helpers included) |
//! | `status.rs` | every `STATUS_*` of `ntstatus.h` and `wdfstatus.h` (bindgen cannot evaluate their casts; wdk-sys hand-copies them) |
//! | `include/` | the case aliases and the compatibility header the parse needed |
//! | `ntoskrnl.def` | every function `ntddk.rs` declares, for the import library of `ntoskrnl.exe` |
//!
//! Usage: `wdk-bindgen --kmdf <dir holding kmdf/1.33> --out <dir> [--mingw <mingw include dir>]
//! [--clang-include <clang resource include dir>] [--host <file>]`. libclang is found through
//! `LIBCLANG_PATH`. `--host` also writes the WDF types kmdf-host reads, in the layout a Linux host
//! must see (see `host_bindings`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bindgen::callbacks::{ItemInfo, ItemKind, ParseCallbacks};
use bindgen::{Builder, CodegenConfig};

/// KMDF version the bindings are for (wdk-build: `kmdf-version-major`, `target-kmdf-version-minor`).
const KMDF_MAJOR: u32 = 1;
const KMDF_MINOR: u32 = 33;

/// The five includes of `wdf.h` whose case differs from the file on disk.
const CASE_ALIASES: [(&str, &str); 5] = [
    ("WdfQueryInterface.h", "wdfqueryinterface.h"),
    ("WdfWMI.h", "wdfwmi.h"),
    ("wdfDmaEnabler.h", "wdfdmaenabler.h"),
    ("wdfDmaTransaction.h", "wdfdmatransaction.h"),
    ("wdfCommonBuffer.h", "wdfcommonbuffer.h"),
];

/// What mingw-w64 10's DDK headers lack that the WDK's have and the drivers use: the pool flags
/// of `ExAllocatePool2` (Windows 10 2004) and the routine itself, and `KeQuerySystemTimePrecise`
/// (Windows 8), declared as `wdm.h` does.
const COMPAT_HEADER: &str = r"/* dmf_wdk_compat.h: what mingw-w64's DDK headers lack (wdm.h of the WDK 10.0.19041+). */
#pragma once
typedef ULONG64 POOL_FLAGS;
static const POOL_FLAGS POOL_FLAG_REQUIRED_START = 0x0000000000000001ULL;
static const POOL_FLAGS POOL_FLAG_USE_QUOTA = 0x0000000000000001ULL;
static const POOL_FLAGS POOL_FLAG_UNINITIALIZED = 0x0000000000000002ULL;
static const POOL_FLAGS POOL_FLAG_SESSION = 0x0000000000000004ULL;
static const POOL_FLAGS POOL_FLAG_CACHE_ALIGNED = 0x0000000000000008ULL;
static const POOL_FLAGS POOL_FLAG_RESERVED1 = 0x0000000000000010ULL;
static const POOL_FLAGS POOL_FLAG_RAISE_ON_FAILURE = 0x0000000000000020ULL;
static const POOL_FLAGS POOL_FLAG_NON_PAGED = 0x0000000000000040ULL;
static const POOL_FLAGS POOL_FLAG_NON_PAGED_EXECUTE = 0x0000000000000080ULL;
static const POOL_FLAGS POOL_FLAG_PAGED = 0x0000000000000100ULL;
static const POOL_FLAGS POOL_FLAG_RESERVED2 = 0x0000000000000200ULL;
static const POOL_FLAGS POOL_FLAG_RESERVED3 = 0x0000000000000400ULL;
static const POOL_FLAGS POOL_FLAG_REQUIRED_END = 0x0000000080000000ULL;
NTKERNELAPI PVOID NTAPI ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag);
NTKERNELAPI VOID NTAPI KeQuerySystemTimePrecise(PLARGE_INTEGER CurrentTime);
";

/// Renames the versioned function-table symbol as wdk-build's callback does.
#[derive(Debug)]
struct Rename;

impl ParseCallbacks for Rename {
    fn generated_name_override(&self, item: ItemInfo<'_>) -> Option<String> {
        let table = format!("WdfFunctions_{KMDF_MAJOR:02}{KMDF_MINOR:03}");
        (matches!(item.kind, ItemKind::Var) && item.name == table).then(|| "WdfFunctions".into())
    }
}

struct Inputs {
    kmdf: PathBuf,
    host: Option<PathBuf>,
    mingw: PathBuf,
    clang_include: PathBuf,
    out: PathBuf,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wdk-bindgen: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let inputs = parse_args()?;
    let kmdf_dir = inputs.kmdf.join(format!("kmdf/{KMDF_MAJOR}.{KMDF_MINOR}"));
    if !kmdf_dir.join("wdf.h").is_file() {
        return Err(format!("no wdf.h in {}", kmdf_dir.display()));
    }
    if !inputs.mingw.join("ddk/ntddk.h").is_file() {
        return Err(format!(
            "no ddk/ntddk.h in {} (Debian: apt-get install mingw-w64-x86-64-dev)",
            inputs.mingw.display()
        ));
    }
    std::fs::create_dir_all(&inputs.out).map_err(|e| format!("{}: {e}", inputs.out.display()))?;
    let overlay = inputs.out.join("include");
    std::fs::create_dir_all(&overlay).map_err(|e| e.to_string())?;
    for (alias, file) in CASE_ALIASES {
        write(&overlay.join(alias), &format!("#include \"{file}\"\n"))?;
    }
    write(&overlay.join("dmf_wdk_compat.h"), COMPAT_HEADER)?;

    let include_dirs = [
        overlay.clone(),
        inputs.mingw.join("ddk"),
        inputs.mingw.clone(),
        kmdf_dir.clone(),
    ];
    let base = "#include <ntifs.h>\n#include <ntddk.h>\n#include <ntstrsafe.h>\n#include \"dmf_wdk_compat.h\"\n";
    let all = format!("{base}#include <wdf.h>\n");
    // The HID class and parser headers (wdk-sys's `hid` feature, `wdk_sys::hid`): their types and
    // constants only, the HID Modules import the parser's routines themselves. mingw-w64's
    // hidusage.h lacks the WDK's `USAGE` typedef, which hidpi.h uses: declared first, as the
    // WDK's hidusage.h declares it.
    let hid = format!(
        "{base}typedef USHORT USAGE, *PUSAGE;\n#include <hidusage.h>\n#include <hidclass.h>\n"
    );
    let wdf_files = format!("{}/.*", regex_escape(&kmdf_dir.to_string_lossy()));
    let hid_files = ".*/hid(class|pi|usage)\\.h".to_string();

    let jobs: [(&str, &str, CodegenConfig, Option<&str>); 5] = [
        ("constants.rs", all.as_str(), CodegenConfig::VARS, None),
        ("types.rs", all.as_str(), CodegenConfig::TYPES, None),
        (
            "ntddk.rs",
            base,
            (CodegenConfig::TYPES | CodegenConfig::VARS).complement(),
            None,
        ),
        (
            "wdf.rs",
            all.as_str(),
            (CodegenConfig::TYPES | CodegenConfig::VARS).complement(),
            Some(wdf_files.as_str()),
        ),
        (
            "hid.rs",
            hid.as_str(),
            CodegenConfig::TYPES | CodegenConfig::VARS,
            Some(hid_files.as_str()),
        ),
    ];
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|&(file, header, codegen, only_files)| {
                let include_dirs = &include_dirs;
                let inputs = &inputs;
                scope.spawn(move || {
                    let mut builder = builder(inputs, include_dirs)
                        .with_codegen_config(codegen)
                        .header_contents(&file.replace(".rs", "-input.h"), header);
                    if let Some(files) = only_files {
                        // Only what these headers declare: wdf.rs what the WDF headers declare
                        // (wdk-sys: "(?i).*wdf.*"), so that it does not repeat ntddk.rs — the
                        // KMDF directory is matched by its full path: it may itself sit below a
                        // folder named "wdf" —; hid.rs what the HID headers declare.
                        builder = builder.allowlist_file(files);
                    }
                    if file == "hid.rs" {
                        // What the HID items name from the NT headers (USHORT, NTSTATUS, …) is
                        // the crate's `types` module's, glob-imported where hid.rs is included.
                        // The IOCTL codes are `HID_*_CTL_CODE(n)` expansions, which bindgen cannot
                        // evaluate (it writes `n`): left out rather than wrong.
                        builder = builder
                            .allowlist_recursively(false)
                            .allowlist_type("P?USAGE")
                            .blocklist_item("IOCTL_.*");
                    }
                    let bindings = builder
                        .generate()
                        .map_err(|e| format!("bindgen failed on {file}: {e}"))?;
                    bindings
                        .write_to_file(inputs.out.join(file))
                        .map_err(|e| format!("{file}: {e}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("bindgen thread panicked".into()))
            })
            .collect::<Result<Vec<()>, String>>()
    })?;

    let status = status_constants(&[
        inputs.mingw.join("ntstatus.h"),
        kmdf_dir.join("wdfstatus.h"),
    ])?;
    write(&inputs.out.join("status.rs"), &status)?;
    let def = import_definition(&inputs.out.join("ntddk.rs"))?;
    write(&inputs.out.join("ntoskrnl.def"), &def)?;
    if let Some(host) = &inputs.host {
        let text = host_bindings(&inputs, &include_dirs, &all)?;
        write(host, &format!("{text}\n/// Every `STATUS_*` of `ntstatus.h` and `wdfstatus.h`.\npub mod status {{\n    use super::NTSTATUS;\n{status}}}\n"))?;
    }
    println!(
        "wdk-bindgen: KMDF {KMDF_MAJOR}.{KMDF_MINOR} bindings in {}",
        inputs.out.display()
    );
    Ok(())
}

/// wdk-build 0.6.0's `Builder::wdk_default` settings, on Linux paths.
fn builder(inputs: &Inputs, include_dirs: &[PathBuf]) -> Builder {
    let mut builder = Builder::default()
        .use_core()
        .derive_default(true)
        .generate_cstr(true)
        .detect_include_paths(false)
        .clang_args([
            "--target=x86_64-pc-windows-msvc",
            "-nostdinc",
            // mingw's vadefs.h needs a GNU version to pick its va_list definitions.
            "-fgnuc-version=4.2.1",
            "-fno-builtin",
        ])
        .clang_arg(format!("-isystem{}", inputs.clang_include.display()));
    for dir in include_dirs {
        builder = builder.clang_arg(format!("--include-directory={}", dir.display()));
    }
    for define in [
        "_WIN64".to_string(),
        "_AMD64_".to_string(),
        "AMD64".to_string(),
        "_KERNEL_MODE".to_string(),
        // mingw's DDK declares the WDF handle types only as STRICT handles.
        "STRICT".to_string(),
        format!("KMDF_VERSION_MAJOR={KMDF_MAJOR}"),
        format!("KMDF_VERSION_MINOR={KMDF_MINOR}"),
    ] {
        builder = builder.clang_arg(format!("--define-macro={define}"));
    }
    builder = builder.clang_args([
        "-fms-compatibility",
        "-fms-extensions",
        "-fdelayed-template-parsing",
        "--warn-=no-nonportable-include-path",
        "--warn-=no-pragma-pack",
        "--warn-=no-ignored-attributes",
        "--warn-=no-ignored-pragma-intrinsic",
        "--warn-=no-visibility",
        "--warn-=no-switch",
        "--warn-=no-comment",
        "--warn-=no-deprecated-declarations",
        "--warn-=no-invalid-token-paste",
        "--warn-=no-microsoft",
    ]);
    for item in [
        "ExAllocatePoolWithTag",
        "ExAllocatePoolWithQuotaTag",
        "ExAllocatePoolWithTagPriority",
        "ExAllocatePool",
        ".*MCG_CAP(?:__bindgen.*)?",
        ".*WHEA_XPF_MCA_SECTION",
        ".*WHEA_ARM_BUS_ERROR(?:__bindgen.*)?",
        ".*WHEA_ARM_PROCESSOR_ERROR",
        ".*WHEA_ARM_CACHE_ERROR",
        ".*ADDRESS0_OWNERSHIP_ACQUIRE",
        // clang's AMX intrinsics header, pulled in by mingw's intrin.h.
        "__tile1024i.*",
    ] {
        builder = builder.blocklist_item(item);
    }
    builder
        .opaque_type("_KGDTENTRY64")
        .opaque_type("_KIDTENTRY64")
        .no_default(".*tagMONITORINFOEXA")
        .must_use_type("NTSTATUS")
        .must_use_type("HRESULT")
        .default_enum_style(bindgen::EnumVariation::ModuleConsts)
        .parse_callbacks(Box::new(Rename))
        .formatter(bindgen::Formatter::Prettyplease)
        .rust_target(bindgen::RustTarget::stable(85, 0).unwrap_or_default())
        .rust_edition(bindgen::RustEdition::Edition2024)
}

/// Every `#define STATUS_NAME ((NTSTATUS)0x…)` of the given headers as a Rust constant.
fn status_constants(headers: &[PathBuf]) -> Result<String, String> {
    let mut seen = BTreeSet::new();
    let mut out = String::from(
        "// Generated by wdk-bindgen from ntstatus.h (mingw-w64) and wdfstatus.h (KMDF).\n",
    );
    for header in headers {
        let text =
            std::fs::read_to_string(header).map_err(|e| format!("{}: {e}", header.display()))?;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("#define") {
                continue;
            }
            let (Some(name), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            if !name.starts_with("STATUS_") {
                continue;
            }
            let Some(hex) = value
                .strip_prefix("((NTSTATUS)0x")
                .and_then(|v| v.strip_suffix(')'))
                .map(|v| v.trim_end_matches(['L', 'l']))
            else {
                continue;
            };
            let Ok(number) = u32::from_str_radix(hex, 16) else {
                continue;
            };
            if seen.insert(name.to_string()) {
                let _ = writeln!(
                    out,
                    "pub const {name}: NTSTATUS = {number:#010x}_u32 as NTSTATUS;"
                );
            }
        }
    }
    if seen.len() < 1000 {
        return Err(format!("only {} STATUS_ values found", seen.len()));
    }
    Ok(out)
}

/// A module-definition file naming every function `ntddk.rs` declares, exported by ntoskrnl.exe,
/// plus the C runtime helpers the compiler calls by name (ntoskrnl.exe exports them too).
fn import_definition(ntddk: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(ntddk).map_err(|e| format!("{}: {e}", ntddk.display()))?;
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start();
        if let Some(rest) = line.strip_prefix("pub fn ") {
            if let Some(name) = rest.split('(').next() {
                names.insert(name.trim().to_string());
            }
        }
    }
    for helper in [
        "__chkstk", "memcpy", "memmove", "memset", "memcmp", "strlen",
    ] {
        names.insert(helper.to_string());
    }
    let mut def = String::from("LIBRARY ntoskrnl.exe\nEXPORTS\n");
    for name in names {
        let _ = writeln!(def, "    {name}");
    }
    Ok(def)
}

/// The WDF types kmdf-host reads and writes, generated for a Linux host that must see them with
/// their Windows x64 layout: C's `long` is 32 bits on Windows, so the C types come from the host's
/// own `ctypes` module (`crate::wdf::ctypes`, LLP64) instead of `core::ffi` (LP64 on Linux), and
/// every function-pointer type is `extern "win64"` (the Windows x64 calling convention; bindgen
/// writes `extern "C"`, which is that convention only on a Windows target). The kernel structures
/// the WDF types only point to are opaque. bindgen's layout assertions come along: the host's
/// build checks every size, alignment and offset clang computed for `x86_64-pc-windows-msvc`.
fn host_bindings(
    inputs: &Inputs,
    include_dirs: &[PathBuf],
    header: &str,
) -> Result<String, String> {
    let mut builder = builder(inputs, include_dirs)
        .with_codegen_config(CodegenConfig::TYPES | CodegenConfig::VARS)
        .header_contents("host-input.h", header)
        .ctypes_prefix("crate::wdf::ctypes")
        .derive_default(false)
        .derive_debug(false)
        .layout_tests(true);
    for pattern in HOST_TYPES {
        builder = builder.allowlist_type(pattern);
    }
    for pattern in HOST_VARS {
        builder = builder.allowlist_var(pattern);
    }
    for opaque in HOST_OPAQUE {
        builder = builder.opaque_type(opaque);
    }
    let text = builder
        .generate()
        .map_err(|e| format!("bindgen failed on the host bindings: {e}"))?
        .to_string();
    let text = text.replace("extern \"C\" fn", "extern \"win64\" fn");
    if text.contains("extern \"C\"") {
        return Err("the host bindings declare a non-pointer extern \"C\" item".into());
    }
    Ok(format!(
        "// Generated by tools/wdk-bindgen --host from Microsoft's KMDF 1.33 headers and mingw-w64's \
         NT headers\n// (x86_64-pc-windows-msvc layouts, LLP64 C types, win64 callbacks). Do not \
         edit: .ci/kmdf-check\n// regenerates it and fails on any difference.\n{text}"
    ))
}

/// Types of the host bindings (with everything they name).
const HOST_TYPES: &[&str] = &[
    "_?P?WDF_.*",
    "_?P?WDFDEVICE_INIT",
    "_?P?WDFCX.*",
    "PFN_WDF.*",
    "_?P?EVT_WDF.*",
    "_?P?UNICODE_STRING",
    "_?P?GUID",
    "_?P?DEVICE_POWER_STATE",
    "_?P?SYSTEM_POWER_STATE",
    "_?P?POWER_ACTION",
    "_?P?KPROCESSOR_MODE",
    "_?P?MODE",
    "_?P?WDF.*",
    // What a create's `Parameters.Create.SecurityContext` points at (the requester's token).
    "_?P?IO_SECURITY_CONTEXT",
    "_?P?ACCESS_STATE",
    "_?P?SECURITY_SUBJECT_CONTEXT",
];

/// Constants of the host bindings.
const HOST_VARS: &[&str] = &[
    "WDF_.*",
    "IRP_MJ_.*",
    "FILE_DEVICE_.*",
    "METHOD_.*",
    "GENERIC_(READ|WRITE|EXECUTE|ALL)",
    "FILE_(READ|WRITE)_DATA",
];

/// Kernel structures the WDF types point to but the host never looks inside.
const HOST_OPAQUE: &[&str] = &[
    "_DEVICE_OBJECT",
    "_DRIVER_OBJECT",
    "_IRP",
    "_FILE_OBJECT",
    "_MDL",
    "_IO_STACK_LOCATION",
    "_CM_RESOURCE_LIST",
    "_KINTERRUPT",
    "_DMA_ADAPTER",
    "_SCATTER_GATHER_LIST",
    "_DEVICE_CAPABILITIES",
    "_KEVENT",
    "_KDPC",
    "_INTERFACE",
    "_USB_.*",
    "_URB.*",
];

fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_args() -> Result<Inputs, String> {
    let mut kmdf = None;
    let mut out = None;
    let mut mingw = PathBuf::from("/usr/x86_64-w64-mingw32/include");
    let mut clang_include = None;
    let mut host = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--kmdf" => kmdf = Some(PathBuf::from(value)),
            "--out" => out = Some(PathBuf::from(value)),
            "--mingw" => mingw = PathBuf::from(value),
            "--clang-include" => clang_include = Some(PathBuf::from(value)),
            "--host" => host = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let clang_include = match clang_include {
        Some(dir) => dir,
        None => {
            let output = std::process::Command::new("clang-19")
                .arg("-print-resource-dir")
                .output()
                .map_err(|e| format!("clang-19 -print-resource-dir: {e}"))?;
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("include")
        }
    };
    Ok(Inputs {
        kmdf: kmdf.ok_or("--kmdf <dir> is required")?,
        host,
        mingw,
        clang_include,
        out: out.ok_or("--out <dir> is required")?,
    })
}
