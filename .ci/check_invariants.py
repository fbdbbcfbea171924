#!/usr/bin/env python3
"""Invariant checks of ARCHITECTURE.md that the compiler cannot see by itself.

1. dmf-core names `std` only in `src/platform/sim/` (and in `#[cfg(test)]` items); dmf-modules never
   names `std` outside `#[cfg(test)]` items. Doc comments count too: a doctest of either crate is
   written with `core` and `alloc` (and kmdf-sim), as the code it documents is. (CI also *builds* both for x86_64-unknown-none, which
   has no std at all; this check gives a readable message and also covers the sim backend boundary.)
2. No wdk crate (wdk, wdk-sys, wdk-alloc, wdk-panic, wdk-build) is named in Rust code outside
   `crates/dmf-core/src/platform/kmdf/`, the facade's kernel glue (`src/kernel.rs`, or a
   `src/kernel/` directory, of the root `dmf` crate only) and build scripts.
3. dmf-modules, dmf-macros, kmdf-sim and the samples carry `#![forbid(unsafe_code)]`. Only the crates
   on `UNSAFE_CRATES` (dmf-core, kmdf-host) may use `unsafe`, and each of them inherits the workspace
   lints (`[lints] workspace = true`), whose `undocumented_unsafe_blocks = "deny"` (every unsafe block
   has a `// SAFETY:` comment, enforced by clippy) and `unsafe_op_in_unsafe_fn = "forbid"` must stay.
   Every crate under `crates/` is on one of the two lists.
4. The kernel allocation rule's exceptions are reviewed: clippy (`.ci/clippy-kernel/clippy.toml`,
   run by `.ci/run` and `.ci/kmdf-check`) refuses infallible allocations in driver code; each
   `allow(clippy::disallowed_methods)` / `allow(clippy::disallowed_macros)` in that code (dmf-core
   outside `platform/sim/` and `#[cfg(test)]` items, dmf-modules, the samples' `src/lib.rs`, the
   facade's `src/`) must be on the list `ALLOCATION_EXCEPTIONS` below, which says why; a new one
   fails until it is reviewed and listed.

Usage: check_invariants.py [ROOT]   (exit 1 and one line per finding when something is wrong)
       check_invariants.py --self-test   (proves each check fires on a planted violation)
"""
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rust_source import strip_code  # noqa: E402  (the shared reader of Rust source)

STD_RE = re.compile(r"\bstd\s*::|\bextern\s+crate\s+std\b|\buse\s+std\b")
WDK_RE = re.compile(r"\b(wdk_sys|wdk_alloc|wdk_panic|wdk_build|wdk)\s*::|\bextern\s+crate\s+(wdk_sys|wdk_alloc|wdk_panic|wdk)\b")




# Crates that forbid unsafe code, and crates allowed it (invariant 3).
FORBID_UNSAFE_CRATES = ["crates/dmf-modules", "crates/dmf-macros", "crates/kmdf-sim",
                        "samples/switchbar", "samples/osrfx2-filter", "samples/virtual-bus"]
UNSAFE_CRATES = {
    "crates/dmf-core": "the platform backends: FFI to ntoskrnl and WDF, the fallible allocator",
    "crates/kmdf-host": "loads and calls driver images: memory mapping, foreign calls, signal handlers",
}
LINTS_INHERITED_RE = re.compile(r"^\[lints\]\s*\n\s*workspace\s*=\s*true\s*$", re.M)
WORKSPACE_UNSAFE_LINTS = {
    "undocumented_unsafe_blocks": re.compile(r'^undocumented_unsafe_blocks\s*=\s*"deny"', re.M),
    "unsafe_op_in_unsafe_fn": re.compile(r'^unsafe_op_in_unsafe_fn\s*=\s*"forbid"', re.M),
}


def unsafe_policy_findings(root):
    """Invariant 3's second half: who may use unsafe, and that those crates are held to SAFETY."""
    findings = []
    crates_dir = os.path.join(root, "crates")
    if os.path.isdir(crates_dir):
        for name in sorted(os.listdir(crates_dir)):
            crate = f"crates/{name}"
            if not os.path.exists(os.path.join(root, crate, "Cargo.toml")):
                continue
            if crate not in FORBID_UNSAFE_CRATES and crate not in UNSAFE_CRATES:
                findings.append(f"{crate}: a crate on neither FORBID_UNSAFE_CRATES nor UNSAFE_CRATES "
                                f"(.ci/check_invariants.py, invariant 3): forbid unsafe, or list it with why")
    for crate in UNSAFE_CRATES:
        manifest = os.path.join(root, crate, "Cargo.toml")
        if not os.path.exists(manifest):
            continue
        with open(manifest, encoding="utf-8") as fh:
            if not LINTS_INHERITED_RE.search(fh.read()):
                findings.append(f"{crate}/Cargo.toml: an unsafe crate must inherit the workspace lints "
                                f"([lints] workspace = true: SAFETY comments, invariant 3)")
    workspace = os.path.join(root, "Cargo.toml")
    if os.path.exists(workspace):
        with open(workspace, encoding="utf-8") as fh:
            text = fh.read()
        for name, lint in WORKSPACE_UNSAFE_LINTS.items():
            if not lint.search(text):
                findings.append(f"Cargo.toml: the workspace lints lost `{name}` at its level (invariant 3)")
    return findings


ALLOC_ALLOW_RE = re.compile(r"allow\s*\([^)]*clippy::disallowed_(methods|macros)")

# file -> (number of exceptions, why they are allowed). Reviewed: each is an allocation that runs
# at DriverEntry, or one that cannot fail (reserved capacity, zero-sized), or simulator-only code.
ALLOCATION_EXCEPTIONS = {
    "crates/dmf-core/src/fallible.rs": (None, "the fallible allocation helpers themselves: each "
                                              "infallible call follows a successful reservation"),
    "crates/dmf-core/src/platform/sim/mod.rs": (1, "the simulator adapter (user-mode, std)"),
    "crates/dmf-core/src/device.rs": (2, "DriverEntry-time: the Arc of the driver config's "
                                         "Modules-add and EvtDriverDeviceAdd callbacks"),
    "crates/dmf-core/src/module/spec.rs": (1, "into_boxed_slice of a vector with no spare capacity "
                                              "(cannot reallocate)"),
    "crates/dmf-modules/src/buffer_pool.rs": (1, "VecDeque push into room reserved by try_reserve(1) "
                                                 "on the line before"),
    "crates/dmf-modules/src/queued_work_item.rs": (1, "VecDeque::push_back into room reserved by "
                                                      "try_reserve(1) on the line before"),
    "crates/dmf-modules/src/request_target.rs": (1, "Sender::defer: VecDeque::push_back into room "
                                                    "reserved when the request was sent"),
    "samples/switchbar/src/session.rs": (1, "the scripted session and end-to-end checks: host code "
                                            "(feature sim), never part of the driver image"),
    "samples/osrfx2-filter/src/session.rs": (1, "the scripted session and end-to-end checks: host "
                                                "code (feature sim), never part of the driver image"),
    "samples/virtual-bus/src/session.rs": (1, "the scripted session and end-to-end checks: host "
                                              "code (feature sim), never part of the driver image"),
}


def allocation_exception_findings(root):
    findings, counts = [], {}
    files = list(rust_files(root, "crates/dmf-core/src")) + list(rust_files(root, "crates/dmf-modules/src")) \
        + list(rust_files(root, "src"))
    for sample in ["samples/switchbar/src/lib.rs", "samples/osrfx2-filter/src/lib.rs",
                   "samples/virtual-bus/src/lib.rs", "samples/switchbar/src/session.rs",
                   "samples/osrfx2-filter/src/session.rs", "samples/virtual-bus/src/session.rs"]:
        if os.path.exists(os.path.join(root, sample)):
            files.append(os.path.join(root, sample))
    for path in files:
        r = os.path.relpath(path, root).replace(os.sep, "/")
        if r.startswith("crates/dmf-core/src/platform/sim/") and r != "crates/dmf-core/src/platform/sim/mod.rs":
            continue
        with open(path, encoding="utf-8") as fh:
            text = strip_cfg_test_items(strip_code(fh.read()))
        # An attribute may span lines (`#[allow(\n    clippy::disallowed_methods,\n    reason = …)]`).
        lines = [text.count("\n", 0, m.start()) + 1 for m in ALLOC_ALLOW_RE.finditer(text)]
        if lines:
            counts[r] = lines
    for r, lines in sorted(counts.items()):
        if r not in ALLOCATION_EXCEPTIONS:
            for n in lines:
                findings.append(f"{r}:{n}: an infallible-allocation exception not on the reviewed list "
                                f"(ALLOCATION_EXCEPTIONS in .ci/check_invariants.py, invariant 8)")
            continue
        allowed, _why = ALLOCATION_EXCEPTIONS[r]
        if allowed is not None and len(lines) > allowed:
            findings.append(f"{r}: {len(lines)} infallible-allocation exceptions, {allowed} reviewed "
                            f"(lines {', '.join(map(str, lines))}; invariant 8)")
    return findings


def strip_cfg_test_items(text):
    """Remove items annotated `#[cfg(test)]` (a braced block or a statement ending in `;`)."""
    result, i = [], 0
    pattern = re.compile(r"#\[cfg\((?:test|all\(test[^\]]*\)|any\(test[^\]]*\))\)\]")
    while True:
        m = pattern.search(text, i)
        if not m:
            result.append(text[i:])
            break
        result.append(text[i:m.start()])
        j, depth = m.end(), 0
        while j < len(text):
            ch = text[j]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    j += 1
                    break
            elif ch == ";" and depth == 0:
                j += 1
                break
            j += 1
        result.append("\n" * text.count("\n", m.start(), j))
        i = j
    return "".join(result)


def rust_files(root, sub):
    base = os.path.join(root, sub)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d != "target"]
        for f in filenames:
            if f.endswith(".rs"):
                yield os.path.join(dirpath, f)


def scan(path, regex):
    with open(path, encoding="utf-8") as fh:
        text = strip_cfg_test_items(strip_code(fh.read()))
    for lineno, line in enumerate(text.splitlines(), 1):
        if regex.search(line):
            yield lineno, line.strip()


DOC_RE = re.compile(r"^\s*//[/!]")


def scan_docs(path, regex):
    """Doc-comment lines (doctests and prose) naming what `regex` matches."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if DOC_RE.match(line) and regex.search(line):
                yield lineno, line.strip()


CALLBACK_ENTRY_RE = re.compile(r"^\s*([a-z0-9_]+) ([A-Za-z0-9]+) ([A-Z0-9_]+) \[(\w+) (\w+) (\w+)\]", re.M)
CALLBACK_HOMES = {"callback_list.rs", "dispatch_table.rs"}


def callback_list_findings(root):
    """Invariant 6: a WDF callback the framework dispatches generically (collection `auto`, device
    hook `pnp`/`policy` in module/callback_list.rs) is named, in any spelling, only by the one
    declaration and the dispatch table among dmf-core's module/, device.rs and dmf-macros."""
    listing = os.path.join(root, "crates/dmf-core/src/module/callback_list.rs")
    if not os.path.exists(listing):
        return []
    with open(listing, encoding="utf-8") as fh:
        entries = CALLBACK_ENTRY_RE.findall(fh.read())
    generic = [m for (m, _v, _f, _r, c, d) in entries if c == "auto" and d in ("pnp", "policy")]
    files = list(rust_files(root, "crates/dmf-core/src/module")) + list(rust_files(root, "crates/dmf-macros/src"))
    device = os.path.join(root, "crates/dmf-core/src/device.rs")
    if os.path.exists(device):
        files.append(device)
    texts = {}
    for path in files:
        with open(path, encoding="utf-8") as fh:
            texts[path] = fh.read().lower().replace("_", "")
    findings = []
    for method in generic:
        key = re.compile(r"(?<![a-z])" + method.replace("_", "") + r"(?![a-z])")
        for path, text in sorted(texts.items()):
            if os.path.basename(path) not in CALLBACK_HOMES and key.search(text):
                findings.append(
                    f"{os.path.relpath(path, root)}: names the callback `{method}` outside the one "
                    "list and the dispatch table (invariant 6: generate it from callback_list.rs)")
    return findings


def check(root):
    findings = []
    rel = lambda p: os.path.relpath(p, root)
    for path in rust_files(root, "crates/dmf-core/src"):
        if "/platform/sim/" in path.replace(os.sep, "/") or path.endswith("/platform/sim.rs"):
            continue
        for lineno, line in scan(path, STD_RE):
            findings.append(f"{rel(path)}:{lineno}: std named outside platform/sim (invariant 1): {line}")
        for lineno, line in scan_docs(path, STD_RE):
            findings.append(f"{rel(path)}:{lineno}: std named in a doc comment outside platform/sim (invariant 1): {line}")
    for path in rust_files(root, "crates/dmf-modules/src"):
        for lineno, line in scan(path, STD_RE):
            findings.append(f"{rel(path)}:{lineno}: std named in dmf-modules (invariant 1): {line}")
        for lineno, line in scan_docs(path, STD_RE):
            findings.append(f"{rel(path)}:{lineno}: std named in a dmf-modules doc comment (invariant 1): {line}")
    for sub in ["src", "crates", "samples"]:
        for path in rust_files(root, sub):
            p = path.replace(os.sep, "/")
            r = rel(path).replace(os.sep, "/")
            kmdf_backend = r.startswith("crates/dmf-core/src/platform/kmdf/")
            facade_kernel_glue = r == "src/kernel.rs" or r.startswith("src/kernel/")
            if kmdf_backend or facade_kernel_glue or p.endswith("/build.rs"):
                continue
            for lineno, line in scan(path, WDK_RE):
                findings.append(f"{rel(path)}:{lineno}: wdk crate named outside the kmdf backend (invariant 2): {line}")
    for crate in FORBID_UNSAFE_CRATES:
        lib = os.path.join(root, crate, "src/lib.rs")
        if os.path.exists(lib):
            with open(lib, encoding="utf-8") as fh:
                if "#![forbid(unsafe_code)]" not in fh.read():
                    findings.append(f"{crate}/src/lib.rs: lacks #![forbid(unsafe_code)] (invariant 3)")
    findings.extend(unsafe_policy_findings(root))
    findings.extend(allocation_exception_findings(root))
    findings.extend(callback_list_findings(root))
    return findings


def self_test():
    plants = {
        "crates/dmf-core/src/bad.rs": "fn f() { let _ = std::mem::size_of::<u8>(); }\n",
        "crates/dmf-modules/src/lib.rs": "#![forbid(unsafe_code)]\nuse std::vec::Vec;\n",
        "crates/dmf-macros/src/lib.rs": "//! no forbid here\n",
        "crates/dmf-modules/src/doc.rs": "//! ```\n//! use std::sync::Mutex;\n//! ```\n",
        "crates/dmf-core/src/doc.rs": "/// ```\n/// let t = std::thread::spawn(|| ());\n/// ```\n",
        "samples/switchbar/src/lib.rs": "#![forbid(unsafe_code)]\nfn f() { wdk_sys::call(); }\n",
        # Only the root facade's kernel glue is exempt, not a `kernel` module elsewhere.
        "crates/dmf-core/src/platform/kernel.rs": "use wdk_sys::NTSTATUS;\n",
        "samples/osrfx2-filter/src/kernel/mod.rs": "use wdk::println;\n",
        "crates/dmf-modules/src/leaky.rs": "fn f() {\n    #[allow(clippy::disallowed_methods, reason = \"x\")]\n    let b = Box::new(1);\n}\n",
        "crates/dmf-core/src/spread.rs": "#[allow(\n    clippy::disallowed_macros,\n    reason = \"x\"\n)]\nfn f() {}\n",
        # An unsafe crate that does not inherit the workspace lints (no SAFETY enforcement).
        "crates/kmdf-host/Cargo.toml": "[package]\nname = \"kmdf-host\"\n\n[lints]\nclippy.pedantic = \"warn\"\n",
        # A new crate that neither forbids unsafe nor is listed.
        "crates/newcomer/Cargo.toml": "[package]\nname = \"newcomer\"\n",
        "crates/newcomer/src/lib.rs": "pub fn f() {}\n",
        # The workspace lints without the SAFETY rule.
        "Cargo.toml": "[workspace.lints.rust]\nunsafe_op_in_unsafe_fn = \"forbid\"\n",
        # A generically dispatched callback named by hand outside the list and the table.
        "crates/dmf-core/src/module/callback_list.rs":
            "        query_stop QueryStop QUERY_STOP [status auto pnp] () -> R = Ok(());\n"
            "        d0_entry D0Entry D0_ENTRY [status own own] (p: P) -> R = Ok(());\n",
        "crates/dmf-core/src/module/collection.rs": "fn f() { c.query_stop(); c.d0_entry(p); }\n",
    }
    allowed = {
        "crates/dmf-core/src/platform/sim/mod.rs": "extern crate std;\nuse std::sync::Mutex;\n",
        "crates/dmf-core/src/ok.rs": "// std::mem in a comment\nconst S: &str = \"std::x\";\n#[cfg(test)]\nmod tests { use std::thread; }\n//! no std in this prose\n",
        "crates/dmf-core/src/platform/sim/doc.rs": "//! ```\n//! use std::sync::Mutex;\n//! ```\n",
        "crates/dmf-core/src/platform/kmdf/mod.rs": "use wdk_sys::NTSTATUS;\n",
        "crates/dmf-core/src/platform/kmdf/io.rs": "fn f() { unsafe { wdk_sys::call_unsafe_wdf_function_binding!(WdfIoQueueStart, q) } }\n",
        "src/kernel.rs": "use wdk_sys::PDRIVER_OBJECT;\n",
        "src/kernel/entry.rs": "extern crate wdk_panic;\n",
        "samples/switchbar/build.rs": "fn main() { wdk_build::configure_wdk_binary_build().unwrap(); }\n",
        "crates/dmf-modules/src/tested.rs": "#[cfg(test)]\nmod tests {\n    #[allow(clippy::disallowed_methods)]\n    fn f() {}\n}\n",
        # dmf-core: an unsafe crate that inherits the workspace lints; no forbid needed.
        "crates/dmf-core/Cargo.toml": "[package]\nname = \"dmf-core\"\n\n[lints]\nworkspace = true\n",
        "crates/kmdf-sim/Cargo.toml": "[package]\nname = \"kmdf-sim\"\n",
        "crates/kmdf-sim/src/lib.rs": "#![forbid(unsafe_code)]\n",
        "crates/dmf-core/src/module/dispatch_table.rs": "C::QueryStop => DOWN,\n",
    }
    with tempfile.TemporaryDirectory() as tmp:
        for rel_path, body in {**plants, **allowed}.items():
            full = os.path.join(tmp, rel_path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w", encoding="utf-8") as fh:
                fh.write(body)
        findings = check(tmp)
    expected = ["bad.rs:1", "dmf-modules/src/lib.rs:2", "dmf-macros/src/lib.rs", "switchbar/src/lib.rs:2",
                "dmf-modules/src/doc.rs:2", "dmf-core/src/doc.rs:2",
                "platform/kernel.rs:1", "osrfx2-filter/src/kernel/mod.rs:1", "dmf-modules/src/leaky.rs:2", "dmf-core/src/spread.rs:1",
                "kmdf-host/Cargo.toml", "crates/newcomer:", "undocumented_unsafe_blocks",
                "collection.rs: names the callback `query_stop`"]
    missing = [e for e in expected if not any(e in f for f in findings)]
    false_alarms = [f for f in findings if not any(e in f for e in expected)]
    if missing or false_alarms:
        print("invariant checker self-test FAILED", "missing:", missing, "false alarms:", false_alarms)
        return 1
    print(f"invariant checker self-test: {len(expected)} planted violations caught, no false alarms")
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--self-test":
        return self_test()
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    findings = check(os.path.abspath(root))
    for f in findings:
        print(f)
    if findings:
        print(f"invariant check FAILED: {len(findings)} finding(s)")
        return 1
    print("invariant check passed: std confined to platform/sim, no wdk outside the kmdf backend, unsafe forbidden where required and SAFETY-linted where allowed, infallible-allocation exceptions reviewed, each generic callback named only by the one list and the dispatch table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
