#!/usr/bin/env python3
"""Verify that a linked PE image is a plausible x64 WDM kernel driver (docs/kernel-image.md).

Checks, one line each, and exit 1 if any fails:
  machine          IMAGE_FILE_MACHINE_AMD64
  subsystem        IMAGE_SUBSYSTEM_NATIVE (a driver, not a Win32 program)
  force-integrity  DllCharacteristics FORCE_INTEGRITY (/INTEGRITYCHECK: the loader demands a signature)
  nx-compat        DllCharacteristics NX_COMPAT (/NXCOMPAT)
  dynamic-base     DllCharacteristics DYNAMIC_BASE (/DYNAMICBASE: relocatable)
  imports          every import comes from ntoskrnl.exe (no user-mode DLL, no hal.dll, no
                   "ntoskrnl.exe.dll" from a missing raw-dylib `+verbatim`)
  entry-point      AddressOfEntryPoint is the RVA of the exported DriverEntry
  checksum         the PE checksum is non-zero and equals the one computed here (the kernel loader
                   rejects drivers with a wrong checksum)

The headers, imports and exports come from `llvm-readobj` (Debian's `llvm` package; found as
`llvm-readobj` or `llvm-readobj-NN` on PATH, or named by $LLVM_READOBJ). The checksum is computed
here, from the file's bytes, and compared with the header field read here too (llvm-readobj 14 does
not print it).

Usage:
  check_kernel_image.py IMAGE
  check_kernel_image.py --self-test IMAGE [--foreign-image IMAGE2]

--self-test first requires IMAGE to pass, then writes patched copies of it (wrong subsystem, bad
checksum, FORCE_INTEGRITY or NX_COMPAT cleared, DYNAMIC_BASE cleared, the import DLL renamed to
hal.dll, the entry point moved, another machine) — fixing up the checksum of every copy except the
bad-checksum one — and proves that each copy is rejected by exactly the check it targets.
IMAGE2, if given, is a separately built image that really imports from hal.dll as well (the
kernel-image crate's `foreign-import` feature); it must be rejected by the imports check alone.
"""
import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

EXPECTED_DLL = "ntoskrnl.exe"
ENTRY_EXPORT = "DriverEntry"
IMAGE_SUBSYSTEM_NATIVE = 1
IMAGE_SUBSYSTEM_WINDOWS_GUI = 2
DLLCHAR_DYNAMIC_BASE = 0x0040
DLLCHAR_FORCE_INTEGRITY = 0x0080
DLLCHAR_NX_COMPAT = 0x0100
IMAGE_FILE_MACHINE_ARM64 = 0xAA64


# --- PE layout (parsed here for the checksum and for the self-test's patches) -------------------

class PeLayout:
    """File offsets of the PE32+ header fields the checks and patches use."""

    def __init__(self, data):
        if data[:2] != b"MZ":
            raise ValueError("not an MZ/PE file")
        pe = struct.unpack_from("<I", data, 0x3C)[0]
        if data[pe:pe + 4] != b"PE\0\0":
            raise ValueError("no PE signature")
        self.machine = pe + 4
        sections = struct.unpack_from("<H", data, pe + 6)[0]
        optional_size = struct.unpack_from("<H", data, pe + 20)[0]
        opt = pe + 24
        if struct.unpack_from("<H", data, opt)[0] != 0x20B:
            raise ValueError("not a PE32+ (64-bit) image")
        self.entry_point = opt + 16
        self.checksum = opt + 64
        self.subsystem = opt + 68
        self.dll_characteristics = opt + 70
        self.import_directory = opt + 112 + 8  # data directory 1: RVA, size
        self.sections = []
        table = opt + optional_size
        for i in range(sections):
            base = table + 40 * i
            vsize, vaddr, raw_size, raw_ptr = struct.unpack_from("<IIII", data, base + 8)
            self.sections.append((vaddr, max(vsize, raw_size), raw_ptr, raw_size))

    def file_offset(self, rva):
        for vaddr, span, raw_ptr, raw_size in self.sections:
            if vaddr <= rva < vaddr + span and rva - vaddr < raw_size:
                return raw_ptr + (rva - vaddr)
        raise ValueError(f"RVA {rva:#x} is not backed by file data")


def pe_checksum(data, checksum_offset):
    """The PE image checksum (what link.exe /RELEASE and CheckSumMappedFile compute): the file as
    little-endian 16-bit words, summed with end-around carry, the checksum field itself counted as
    zero, plus the file length."""
    padded = data + b"\0" if len(data) % 2 else data
    total = sum(struct.unpack(f"<{len(padded) // 2}H", padded))
    total -= sum(struct.unpack_from("<2H", padded, checksum_offset))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (total + len(data)) & 0xFFFFFFFF


# --- llvm-readobj ----------------------------------------------------------------------------

def find_readobj():
    named = os.environ.get("LLVM_READOBJ")
    if named:
        return named
    found = shutil.which("llvm-readobj")
    if found:
        return found
    versioned = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        for path in glob.glob(os.path.join(directory, "llvm-readobj-[0-9]*")):
            match = re.search(r"-(\d+)$", path)
            if match and os.access(path, os.X_OK):
                versioned.append((int(match.group(1)), path))
    if versioned:
        return max(versioned)[1]
    sys.exit("check_kernel_image: llvm-readobj not found (install Debian's `llvm` package, "
             "or set LLVM_READOBJ)")


def readobj(tool, image):
    result = subprocess.run([tool, "--file-headers", "--coff-imports", "--coff-exports", image],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"llvm-readobj failed on {image}: {result.stderr.strip()}")
    return result.stdout


def parse_readobj(text):
    """The facts the checks need, from llvm-readobj's text output."""
    facts = {"imports": [], "exports": {}, "dll_characteristics": set()}
    block, block_lines, in_dll_chars = None, [], False
    for raw in text.splitlines():
        line = raw.strip()
        if raw.startswith("ImageFileHeader {"):
            block = "file"
        elif raw.startswith("ImageOptionalHeader {"):
            block = "optional"
        elif raw.startswith("Import {") or raw.startswith("Export {"):
            block, block_lines = raw.split()[0], []
        elif raw.startswith("}"):
            if block == "Import":
                name = next((l.split(":", 1)[1].strip() for l in block_lines if l.startswith("Name:")), "")
                symbols = [l.split(":", 1)[1].strip().rsplit(" (", 1)[0]
                           for l in block_lines if l.startswith("Symbol:")]
                facts["imports"].append((name, symbols))
            elif block == "Export":
                name = next((l.split(":", 1)[1].strip() for l in block_lines if l.startswith("Name:")), "")
                rva = next((l.split(":", 1)[1].strip() for l in block_lines if l.startswith("RVA:")), "")
                if name and rva:
                    facts["exports"][name] = int(rva, 16)
            block = None
        elif block in ("Import", "Export"):
            block_lines.append(line)
        elif block == "file" and line.startswith("Machine:"):
            facts["machine"] = line.split(":", 1)[1].strip()
        elif block == "optional":
            if line.startswith("AddressOfEntryPoint:"):
                facts["entry"] = int(line.split(":", 1)[1], 16)
            elif line.startswith("Subsystem:"):
                facts["subsystem"] = line.split(":", 1)[1].strip()
            elif line.startswith("Characteristics ["):
                in_dll_chars = True
            elif in_dll_chars and line == "]":
                in_dll_chars = False
            elif in_dll_chars:
                facts["dll_characteristics"].add(line.split()[0])
    return facts


# --- the checks --------------------------------------------------------------------------------

def run_checks(tool, image):
    """[(name, ok, detail)] for one image."""
    with open(image, "rb") as fh:
        data = fh.read()
    facts = parse_readobj(readobj(tool, image))
    layout = PeLayout(data)
    results = []

    def add(name, ok, detail):
        results.append((name, bool(ok), detail))

    machine = facts.get("machine", "<missing>")
    add("machine", machine.startswith("IMAGE_FILE_MACHINE_AMD64"), machine)
    subsystem = facts.get("subsystem", "<missing>")
    add("subsystem", subsystem.startswith("IMAGE_SUBSYSTEM_NATIVE"), subsystem)
    chars = facts["dll_characteristics"]
    for name, flag in [("force-integrity", "IMAGE_DLL_CHARACTERISTICS_FORCE_INTEGRITY"),
                       ("nx-compat", "IMAGE_DLL_CHARACTERISTICS_NX_COMPAT"),
                       ("dynamic-base", "IMAGE_DLL_CHARACTERISTICS_DYNAMIC_BASE")]:
        add(name, flag in chars, ("set: " if flag in chars else "missing: ") + flag)
    dlls = [name for name, _ in facts["imports"]]
    foreign = sorted({d for d in dlls if d.lower() != EXPECTED_DLL})
    count = sum(len(symbols) for _, symbols in facts["imports"])
    if not dlls:
        add("imports", False, "no import table (expected imports from ntoskrnl.exe)")
    elif foreign:
        add("imports", False, f"imports from {', '.join(foreign)} (only {EXPECTED_DLL} is allowed)")
    else:
        add("imports", True, f"{count} symbols, all from {EXPECTED_DLL}")
    entry = facts.get("entry")
    driver_entry = facts["exports"].get(ENTRY_EXPORT)
    if driver_entry is None:
        add("entry-point", False, f"no exported {ENTRY_EXPORT} (entry {entry:#x})" if entry is not None
            else f"no exported {ENTRY_EXPORT}")
    else:
        add("entry-point", entry == driver_entry,
            f"AddressOfEntryPoint {entry:#x} {'==' if entry == driver_entry else '!='} "
            f"{ENTRY_EXPORT} RVA {driver_entry:#x}")
    stored = struct.unpack_from("<I", data, layout.checksum)[0]
    computed = pe_checksum(data, layout.checksum)
    add("checksum", stored != 0 and stored == computed,
        f"stored {stored:#x}, computed {computed:#x}" + (" (link with /RELEASE)" if stored == 0 else ""))
    return results


def check_image(tool, image):
    try:
        results = run_checks(tool, image)
    except (OSError, RuntimeError, ValueError, struct.error) as error:
        print(f"FAIL image: {error}")
        print(f"check_kernel_image: FAILED (not a readable PE32+ image): {image}")
        return 1
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
    failed = [name for name, ok, _ in results if not ok]
    if failed:
        print(f"check_kernel_image: FAILED ({', '.join(failed)}): {image}")
        return 1
    print(f"check_kernel_image: OK ({len(results)} checks): {image}")
    return 0


# --- self-test ---------------------------------------------------------------------------------

def patch_u16(data, offset, update):
    value = struct.unpack_from("<H", data, offset)[0]
    struct.pack_into("<H", data, offset, update(value))


def rename_first_import(data, layout):
    """Overwrite the first import descriptor's DLL name with "hal.dll" (NUL-padded in place)."""
    import_rva = struct.unpack_from("<I", data, layout.import_directory)[0]
    descriptor = layout.file_offset(import_rva)
    name_offset = layout.file_offset(struct.unpack_from("<I", data, descriptor + 12)[0])
    end = data.index(b"\0", name_offset)
    old = bytes(data[name_offset:end])
    if old.lower() != EXPECTED_DLL.encode():
        raise ValueError(f"first import is {old!r}, expected {EXPECTED_DLL}")
    data[name_offset:end] = b"hal.dll".ljust(end - name_offset, b"\0")


MUTANTS = [
    # (name, expected failing checks, patch(data, layout), fix the checksum afterwards)
    ("wrong-subsystem", {"subsystem"},
     lambda d, l: patch_u16(d, l.subsystem, lambda _: IMAGE_SUBSYSTEM_WINDOWS_GUI), True),
    ("bad-checksum", {"checksum"},
     lambda d, l: struct.pack_into("<I", d, l.checksum, struct.unpack_from("<I", d, l.checksum)[0] ^ 0x5A5A), False),
    ("no-force-integrity", {"force-integrity"},
     lambda d, l: patch_u16(d, l.dll_characteristics, lambda v: v & ~DLLCHAR_FORCE_INTEGRITY), True),
    ("no-nx-compat", {"nx-compat"},
     lambda d, l: patch_u16(d, l.dll_characteristics, lambda v: v & ~DLLCHAR_NX_COMPAT), True),
    ("no-dynamic-base", {"dynamic-base"},
     lambda d, l: patch_u16(d, l.dll_characteristics, lambda v: v & ~DLLCHAR_DYNAMIC_BASE), True),
    ("import-from-hal.dll", {"imports"}, rename_first_import, True),
    ("entry-not-DriverEntry", {"entry-point"},
     lambda d, l: struct.pack_into("<I", d, l.entry_point, struct.unpack_from("<I", d, l.entry_point)[0] + 0x10), True),
    ("machine-arm64", {"machine"},
     lambda d, l: patch_u16(d, l.machine, lambda _: IMAGE_FILE_MACHINE_ARM64), True),
]


def failing(tool, image):
    try:
        results = run_checks(tool, image)
    except (OSError, RuntimeError, ValueError, struct.error) as error:
        return None, str(error)
    return {name for name, ok, _ in results if not ok}, "; ".join(
        f"{name}: {detail}" for name, ok, detail in results if not ok)


def self_test(tool, image, foreign_image):
    problems = 0

    def report(label, expected, got, detail):
        nonlocal problems
        ok = got == expected
        problems += not ok
        wanted = ", ".join(sorted(expected)) or "nothing"
        seen = "an error" if got is None else (", ".join(sorted(got)) or "nothing")
        print(f"self-test: {'PASS' if ok else 'FAIL'} {label}: expected to fail [{wanted}], "
              f"failed [{seen}]" + (f" ({detail})" if detail else ""))

    got, detail = failing(tool, image)
    report("good image", set(), got, detail)
    with open(image, "rb") as fh:
        original = fh.read()
    layout = PeLayout(original)
    with tempfile.TemporaryDirectory(prefix="kimg-selftest-") as tmp:
        for name, expected, patch, fix_checksum in MUTANTS:
            data = bytearray(original)
            patch(data, layout)
            if fix_checksum:
                struct.pack_into("<I", data, layout.checksum, pe_checksum(bytes(data), layout.checksum))
            path = os.path.join(tmp, f"{name}.sys")
            with open(path, "wb") as fh:
                fh.write(data)
            got, detail = failing(tool, path)
            report(name, expected, got, detail)
    if foreign_image:
        got, detail = failing(tool, foreign_image)
        report("built with feature foreign-import", {"imports"}, got, detail)
    total = 1 + len(MUTANTS) + bool(foreign_image)
    if problems:
        print(f"check_kernel_image self-test: FAILED ({problems} of {total} cases)")
        return 1
    print(f"check_kernel_image self-test: OK ({total} cases)")
    return 0


def main(argv):
    args = argv[1:]
    if args and args[0] == "--self-test":
        foreign = None
        if "--foreign-image" in args:
            i = args.index("--foreign-image")
            if i + 1 >= len(args):
                sys.exit("check_kernel_image: --foreign-image needs a path")
            foreign = args[i + 1]
            del args[i:i + 2]
        if len(args) != 2:
            sys.exit(__doc__)
        return self_test(find_readobj(), args[1], foreign)
    if len(args) != 1 or args[0].startswith("-"):
        sys.exit(__doc__)
    return check_image(find_readobj(), args[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
