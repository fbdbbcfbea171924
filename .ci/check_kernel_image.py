#!/usr/bin/env python3
"""Verify that a linked PE image is a plausible x64 kernel driver: a WDM image (the default,
docs/kernel-image.md) or a KMDF image (--kmdf, docs/kmdf-backend.md).

Checks, one line each, and exit 1 if any fails. In both modes:
  machine             IMAGE_FILE_MACHINE_AMD64
  subsystem           IMAGE_SUBSYSTEM_NATIVE (a driver, not a Win32 program)
  force-integrity     DllCharacteristics FORCE_INTEGRITY (/INTEGRITYCHECK: the loader demands a
                      signature)
  nx-compat           DllCharacteristics NX_COMPAT (/NXCOMPAT)
  dynamic-base        DllCharacteristics DYNAMIC_BASE (/DYNAMICBASE: relocatable)
  checksum            the PE checksum is non-zero and equals the one computed here (the kernel
                      loader rejects drivers with a wrong checksum)
WDM (the default):
  imports             every import comes from ntoskrnl.exe (no user-mode DLL, no hal.dll, no
                      "ntoskrnl.exe.dll" from a missing raw-dylib `+verbatim`)
  entry-point         AddressOfEntryPoint is the RVA of the exported DriverEntry
KMDF (--kmdf), in this order after dynamic-base:
  imports             every import comes from ntoskrnl.exe, HAL.dll or WDFLDR.SYS (names compared
                      without case; no user-mode DLL, no "ntoskrnl.exe.dll")
  import-descriptors  exactly one import descriptor per DLL, and llvm-readobj sees the same
                      descriptors as the parser here
  wdfldr-bind         WdfVersionBind and WdfVersionUnbind are imported from WDFLDR.SYS (the
                      framework binding that FxDriverEntry performs)
  entry-point         AddressOfEntryPoint is the RVA of FxDriverEntry, the KMDF startup routine
  sections            no section is both writable and executable
and then the imports, one line per import descriptor: `imports  DLL: SYMBOL SYMBOL ...`.

FxDriverEntry is not exported, so its address comes from the linker map (lld-link /MAP, which
writes link.exe's format; rust-lld puts it in cargo's deps/ folder as `<crate>.map`): the line
naming FxDriverEntry gives its address as Rva+Base, and its RVA is that minus the image base. The
map's timestamp and preferred load address must equal the image's TimeDateStamp and ImageBase, so
that a map of another link is rejected (a /Brepro map's timestamp is 0: then only the base is
compared). The map is IMAGE with its suffix replaced by `.map`, or --map.

The headers and the WDM imports and exports come from `llvm-readobj` (Debian's `llvm` package;
found as `llvm-readobj` or `llvm-readobj-NN` on PATH, or named by $LLVM_READOBJ). The checksum is
computed here, from the file's bytes, and compared with the header field read here too
(llvm-readobj 14 does not print it). For KMDF the import directory and the section table are also
parsed here from the file's bytes (one entry per import descriptor, as the loader walks them).

Usage:
  check_kernel_image.py IMAGE
  check_kernel_image.py --self-test IMAGE [--foreign-image IMAGE2]
  check_kernel_image.py --kmdf [--map MAPFILE] IMAGE
  check_kernel_image.py --kmdf --self-test [--map MAPFILE] IMAGE

--self-test first requires IMAGE to pass, then writes patched copies of it and proves that each
copy is rejected by exactly the check it targets; every copy's checksum is fixed up except the
bad-checksum one's. Both modes plant: wrong subsystem, bad checksum, FORCE_INTEGRITY, NX_COMPAT or
DYNAMIC_BASE cleared, the entry point moved, another machine. WDM adds the import DLL renamed to
hal.dll. KMDF adds ntoskrnl.exe renamed to kernel32.dll, a second import descriptor naming
WDFLDR.SYS (the ntoskrnl.exe descriptor's Name pointed at the WDFLDR.SYS string), .text made
writable and executable, WdfVersionBind renamed to WdfVersionBinX, and a TimeDateStamp and
ImageBase that no longer match the map's.
IMAGE2 (WDM only), if given, is a separately built image that really imports from hal.dll as well
(the kernel-image crate's `foreign-import` feature); it must be rejected by the imports check alone.
"""
import collections
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
KMDF_DLLS = ("ntoskrnl.exe", "HAL.dll", "WDFLDR.SYS")
KMDF_LOADER_DLL = "WDFLDR.SYS"
KMDF_LOADER_IMPORTS = ("WdfVersionBind", "WdfVersionUnbind")
KMDF_ENTRY = "FxDriverEntry"
IMAGE_SUBSYSTEM_NATIVE = 1
IMAGE_SUBSYSTEM_WINDOWS_GUI = 2
DLLCHAR_DYNAMIC_BASE = 0x0040
DLLCHAR_FORCE_INTEGRITY = 0x0080
DLLCHAR_NX_COMPAT = 0x0100
IMAGE_FILE_MACHINE_ARM64 = 0xAA64
IMAGE_SCN_MEM_EXECUTE = 0x20000000
IMAGE_SCN_MEM_READ = 0x40000000
IMAGE_SCN_MEM_WRITE = 0x80000000


# --- PE layout (parsed here for the checksum, the KMDF checks and the self-test's patches) ------

class PeLayout:
    """File offsets of the PE32+ header fields the checks and patches use."""

    def __init__(self, data):
        if data[:2] != b"MZ":
            raise ValueError("not an MZ/PE file")
        pe = struct.unpack_from("<I", data, 0x3C)[0]
        if data[pe:pe + 4] != b"PE\0\0":
            raise ValueError("no PE signature")
        self.machine = pe + 4
        self.timestamp = pe + 8
        sections = struct.unpack_from("<H", data, pe + 6)[0]
        optional_size = struct.unpack_from("<H", data, pe + 20)[0]
        opt = pe + 24
        if struct.unpack_from("<H", data, opt)[0] != 0x20B:
            raise ValueError("not a PE32+ (64-bit) image")
        self.entry_point = opt + 16
        self.image_base = opt + 24
        self.checksum = opt + 64
        self.subsystem = opt + 68
        self.dll_characteristics = opt + 70
        self.import_directory = opt + 112 + 8  # data directory 1: RVA, size
        self.sections = []
        self.section_headers = []  # (name, file offset of the section header)
        table = opt + optional_size
        for i in range(sections):
            base = table + 40 * i
            vsize, vaddr, raw_size, raw_ptr = struct.unpack_from("<IIII", data, base + 8)
            self.sections.append((vaddr, max(vsize, raw_size), raw_ptr, raw_size))
            name = bytes(data[base:base + 8]).rstrip(b"\0").decode("ascii", "replace")
            self.section_headers.append((name, base))

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


# One import descriptor: the DLL name, the file offset of the descriptor, and its symbols as
# (name, file offset of the name) — ordinal imports as ("#N", None).
ImportDescriptor = collections.namedtuple("ImportDescriptor", "dll offset symbols")


def c_string(data, offset):
    end = data.index(b"\0", offset)
    return bytes(data[offset:end]).decode("ascii", "replace")


def read_imports(data, layout):
    """The import directory, one entry per descriptor, up to the all-zero descriptor that ends it."""
    directory_rva = struct.unpack_from("<I", data, layout.import_directory)[0]
    descriptors = []
    if directory_rva == 0:
        return descriptors
    offset = layout.file_offset(directory_rva)
    while True:
        fields = struct.unpack_from("<5I", data, offset)
        if not any(fields):
            return descriptors
        lookup, _, _, name_rva, address_table = fields
        thunk = layout.file_offset(lookup or address_table)
        symbols = []
        while True:
            entry = struct.unpack_from("<Q", data, thunk)[0]
            if entry == 0:
                break
            if entry >> 63:
                symbols.append((f"#{entry & 0xFFFF}", None))
            else:
                name_offset = layout.file_offset(entry & 0x7FFFFFFF) + 2  # after the hint
                symbols.append((c_string(data, name_offset), name_offset))
            thunk += 8
        descriptors.append(ImportDescriptor(c_string(data, layout.file_offset(name_rva)), offset, symbols))
        offset += 20


# --- the linker map (KMDF: FxDriverEntry is not exported) ----------------------------------------

def default_map_path(image):
    return os.path.splitext(image)[0] + ".map"


def read_map(path, symbol):
    """(timestamp, preferred load address, {VA of each line naming symbol}) from a link.exe-style
    map, which lld-link writes for /MAP:
      Timestamp is 6b16b302 (...)
      Preferred load address is 0000000180000000
       0001:0001e610       FxDriverEntry              000000018001f610     WdfDriverEntry:fxstub.obj
    The third column is Rva+Base."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    timestamp = re.search(r"^\s*Timestamp is ([0-9A-Fa-f]+)", text, re.M)
    base = re.search(r"^\s*Preferred load address is ([0-9A-Fa-f]+)", text, re.M)
    addresses = {int(m.group(1), 16) for m in re.finditer(
        rf"^\s*[0-9A-Fa-f]{{4}}:[0-9A-Fa-f]{{8}}\s+{re.escape(symbol)}\s+([0-9A-Fa-f]{{8,16}})\s", text, re.M)}
    return (timestamp and int(timestamp.group(1), 16), base and int(base.group(1), 16), addresses)


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


# --- the checks: each takes an Image and returns (name, ok, detail) -------------------------------

class Image:
    """One image's bytes, header layout, llvm-readobj's facts and, for KMDF, its own import table
    and linker map path."""

    def __init__(self, tool, path, kmdf=False, map_path=None):
        with open(path, "rb") as fh:
            self.data = fh.read()
        self.facts = parse_readobj(readobj(tool, path))
        self.layout = PeLayout(self.data)
        if kmdf:
            self.imports = read_imports(self.data, self.layout)
            self.map_path = map_path or default_map_path(path)

    def u32(self, offset):
        return struct.unpack_from("<I", self.data, offset)[0]


def check_machine(img):
    machine = img.facts.get("machine", "<missing>")
    return "machine", machine.startswith("IMAGE_FILE_MACHINE_AMD64"), machine


def check_subsystem(img):
    subsystem = img.facts.get("subsystem", "<missing>")
    return "subsystem", subsystem.startswith("IMAGE_SUBSYSTEM_NATIVE"), subsystem


def dll_characteristic_check(name, flag):
    def check(img):
        present = flag in img.facts["dll_characteristics"]
        return name, present, ("set: " if present else "missing: ") + flag
    return check


check_force_integrity = dll_characteristic_check("force-integrity", "IMAGE_DLL_CHARACTERISTICS_FORCE_INTEGRITY")
check_nx_compat = dll_characteristic_check("nx-compat", "IMAGE_DLL_CHARACTERISTICS_NX_COMPAT")
check_dynamic_base = dll_characteristic_check("dynamic-base", "IMAGE_DLL_CHARACTERISTICS_DYNAMIC_BASE")


def check_checksum(img):
    stored = img.u32(img.layout.checksum)
    computed = pe_checksum(img.data, img.layout.checksum)
    return ("checksum", stored != 0 and stored == computed,
            f"stored {stored:#x}, computed {computed:#x}" + (" (link with /RELEASE)" if stored == 0 else ""))


def check_wdm_imports(img):
    dlls = [name for name, _ in img.facts["imports"]]
    foreign = sorted({d for d in dlls if d.lower() != EXPECTED_DLL})
    count = sum(len(symbols) for _, symbols in img.facts["imports"])
    if not dlls:
        return "imports", False, "no import table (expected imports from ntoskrnl.exe)"
    if foreign:
        return "imports", False, f"imports from {', '.join(foreign)} (only {EXPECTED_DLL} is allowed)"
    return "imports", True, f"{count} symbols, all from {EXPECTED_DLL}"


def check_wdm_entry_point(img):
    entry = img.facts.get("entry")
    driver_entry = img.facts["exports"].get(ENTRY_EXPORT)
    if driver_entry is None:
        return ("entry-point", False, f"no exported {ENTRY_EXPORT} (entry {entry:#x})" if entry is not None
                else f"no exported {ENTRY_EXPORT}")
    return ("entry-point", entry == driver_entry,
            f"AddressOfEntryPoint {entry:#x} {'==' if entry == driver_entry else '!='} "
            f"{ENTRY_EXPORT} RVA {driver_entry:#x}")


def check_kmdf_imports(img):
    allowed = {d.lower() for d in KMDF_DLLS}
    dlls = [d.dll for d in img.imports]
    foreign = sorted({d for d in dlls if d.lower() not in allowed})
    if not dlls:
        return "imports", False, f"no import table (expected imports from {KMDF_LOADER_DLL} and ntoskrnl.exe)"
    if foreign:
        return "imports", False, f"imports from {', '.join(foreign)} (only {', '.join(KMDF_DLLS)} are allowed)"
    count = sum(len(d.symbols) for d in img.imports)
    return "imports", True, f"{count} symbols, all from {', '.join(dict.fromkeys(dlls))}"


def check_import_descriptors(img):
    per_dll = collections.Counter(d.dll.lower() for d in img.imports)
    spelling = {d.dll.lower(): d.dll for d in reversed(img.imports)}
    repeated = [f"{count} descriptors name {spelling[dll]}" for dll, count in per_dll.items() if count > 1]
    if repeated:
        return "import-descriptors", False, f"{'; '.join(repeated)} (exactly one per DLL)"
    ours = [(d.dll, len(d.symbols)) for d in img.imports]
    theirs = [(dll, len(symbols)) for dll, symbols in img.facts["imports"]]
    if ours != theirs:
        return "import-descriptors", False, f"parsed here as {ours}, but llvm-readobj reads {theirs}"
    return ("import-descriptors", True,
            f"{len(ours)} descriptor{'s' if len(ours) != 1 else ''}, one per DLL (llvm-readobj agrees)")


def check_wdfldr_bind(img):
    loaders = [d for d in img.imports if d.dll.lower() == KMDF_LOADER_DLL.lower()]
    if not loaders:
        return "wdfldr-bind", False, f"no import from {KMDF_LOADER_DLL}"
    imported = {name for d in loaders for name, _ in d.symbols}
    missing = [name for name in KMDF_LOADER_IMPORTS if name not in imported]
    if missing:
        return "wdfldr-bind", False, f"{', '.join(missing)} not imported from {KMDF_LOADER_DLL}"
    return "wdfldr-bind", True, f"{', '.join(KMDF_LOADER_IMPORTS)} from {KMDF_LOADER_DLL}"


def check_kmdf_entry_point(img):
    entry = img.facts.get("entry")
    try:
        timestamp, base, addresses = read_map(img.map_path, KMDF_ENTRY)
    except OSError as error:
        return "entry-point", False, f"no linker map {img.map_path} ({error.strerror}; link with /MAP, or pass --map)"
    image_timestamp = img.u32(img.layout.timestamp)
    image_base = struct.unpack_from("<Q", img.data, img.layout.image_base)[0]
    # /Brepro links print "Timestamp is 00000000 (Repro mode)" and put a hash in the header.
    if timestamp is None or timestamp not in (0, image_timestamp) or base != image_base:
        seen = "none" if timestamp is None or base is None else f"{timestamp:#x}, {base:#x}"
        return ("entry-point", False, f"{img.map_path} is not this link's map (its timestamp, base: {seen}; "
                f"the image's: {image_timestamp:#x}, {image_base:#x})")
    if len(addresses) != 1:
        return ("entry-point", False, f"{KMDF_ENTRY} is not in {img.map_path}" if not addresses
                else f"{KMDF_ENTRY} has {len(addresses)} addresses in {img.map_path}")
    rva = addresses.pop() - image_base
    return ("entry-point", entry == rva,
            f"AddressOfEntryPoint {entry:#x} {'==' if entry == rva else '!='} {KMDF_ENTRY} RVA {rva:#x} "
            f"(from {os.path.basename(img.map_path)})")


def section_access(flags):
    return "".join(letter for bit, letter in [(IMAGE_SCN_MEM_READ, "R"), (IMAGE_SCN_MEM_WRITE, "W"),
                                              (IMAGE_SCN_MEM_EXECUTE, "X")] if flags & bit) or "-"


def check_sections(img):
    sections = [(name, img.u32(header + 36)) for name, header in img.layout.section_headers]
    both = IMAGE_SCN_MEM_WRITE | IMAGE_SCN_MEM_EXECUTE
    listing = ", ".join(f"{name} {section_access(flags)}" for name, flags in sections)
    bad = [name for name, flags in sections if flags & both == both]
    if bad:
        return "sections", False, f"writable and executable: {', '.join(bad)} ({listing})"
    return "sections", True, f"none both writable and executable ({listing})"


WDM_CHECKS = [check_machine, check_subsystem, check_force_integrity, check_nx_compat, check_dynamic_base,
              check_wdm_imports, check_wdm_entry_point, check_checksum]
KMDF_CHECKS = [check_machine, check_subsystem, check_force_integrity, check_nx_compat, check_dynamic_base,
               check_kmdf_imports, check_import_descriptors, check_wdfldr_bind, check_kmdf_entry_point,
               check_sections, check_checksum]


def run_checks(tool, image, kmdf=False, map_path=None):
    """([(name, ok, detail)], Image) for one image."""
    img = Image(tool, image, kmdf, map_path)
    return [(name, bool(ok), detail)
            for name, ok, detail in (check(img) for check in (KMDF_CHECKS if kmdf else WDM_CHECKS))], img


def check_image(tool, image, kmdf=False, map_path=None):
    try:
        results, img = run_checks(tool, image, kmdf, map_path)
    except (OSError, RuntimeError, ValueError, struct.error) as error:
        print(f"FAIL image: {error}")
        print(f"check_kernel_image: FAILED (not a readable PE32+ image): {image}")
        return 1
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
    if kmdf:
        for descriptor in img.imports:
            print(f"imports  {descriptor.dll}: {' '.join(name for name, _ in descriptor.symbols)}")
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


def patch_u32(data, offset, update):
    value = struct.unpack_from("<I", data, offset)[0]
    struct.pack_into("<I", data, offset, update(value))


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


def overwrite_string(data, offset, new):
    """Replace the NUL-terminated string at offset by new, NUL-padded in place (never longer)."""
    end = data.index(b"\0", offset)
    if len(new) > end - offset:
        raise ValueError(f"{new!r} is longer than {bytes(data[offset:end])!r}")
    data[offset:end] = new.ljust(end - offset, b"\0")


def find_descriptor(data, layout, dll):
    found = [d for d in read_imports(data, layout) if d.dll.lower() == dll.lower()]
    if not found:
        raise ValueError(f"no import descriptor for {dll}")
    return found[0]


def rename_import_dll(old, new):
    def patch(data, layout):
        descriptor = find_descriptor(data, layout, old)
        name_rva = struct.unpack_from("<I", data, descriptor.offset + 12)[0]
        overwrite_string(data, layout.file_offset(name_rva), new.encode())
    return patch


def second_loader_descriptor(data, layout):
    """Point the Name of the first descriptor that is not WDFLDR.SYS's at WDFLDR.SYS's name string,
    so two descriptors name WDFLDR.SYS. (Pointing WDFLDR.SYS's at ntoskrnl.exe's would also drop
    WdfVersionBind from WDFLDR.SYS and fail wdfldr-bind as well.)"""
    loader = find_descriptor(data, layout, KMDF_LOADER_DLL)
    other = next((d for d in read_imports(data, layout) if d.dll.lower() != KMDF_LOADER_DLL.lower()), None)
    if other is None:
        raise ValueError(f"no import descriptor besides {KMDF_LOADER_DLL}'s")
    struct.pack_into("<I", data, other.offset + 12, struct.unpack_from("<I", data, loader.offset + 12)[0])


def rename_import_symbol(dll, old, new):
    def patch(data, layout):
        offset = next((o for name, o in find_descriptor(data, layout, dll).symbols if name == old), None)
        if offset is None:
            raise ValueError(f"{old} is not imported from {dll}")
        overwrite_string(data, offset, new.encode())
    return patch


def writable_executable(section):
    def patch(data, layout):
        header = next((h for name, h in layout.section_headers if name == section), None)
        if header is None:
            raise ValueError(f"no {section} section")
        patch_u32(data, header + 36, lambda v: v | IMAGE_SCN_MEM_WRITE | IMAGE_SCN_MEM_EXECUTE)
    return patch


def other_link(data, layout):
    """Another TimeDateStamp and ImageBase: the map no longer describes the image (the base alone
    differs for a /Brepro map, whose timestamp is 0)."""
    patch_u32(data, layout.timestamp, lambda v: v + 1)
    struct.pack_into("<Q", data, layout.image_base, struct.unpack_from("<Q", data, layout.image_base)[0] + 0x10000)


def move_entry(data, layout):
    patch_u32(data, layout.entry_point, lambda v: v + 0x10)


# (name, expected failing checks, patch(data, layout), fix the checksum afterwards)
HEADER_MUTANTS = [
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
]
MACHINE_ARM64 = ("machine-arm64", {"machine"},
                 lambda d, l: patch_u16(d, l.machine, lambda _: IMAGE_FILE_MACHINE_ARM64), True)

WDM_MUTANTS = HEADER_MUTANTS + [
    ("import-from-hal.dll", {"imports"}, rename_first_import, True),
    ("entry-not-DriverEntry", {"entry-point"}, move_entry, True),
    MACHINE_ARM64,
]
KMDF_MUTANTS = HEADER_MUTANTS + [
    ("entry-not-FxDriverEntry", {"entry-point"}, move_entry, True),
    MACHINE_ARM64,
    ("import-from-kernel32.dll", {"imports"}, rename_import_dll("ntoskrnl.exe", "kernel32.dll"), True),
    ("second-WDFLDR.SYS-descriptor", {"import-descriptors"}, second_loader_descriptor, True),
    ("writable-executable-.text", {"sections"}, writable_executable(".text"), True),
    ("no-WdfVersionBind", {"wdfldr-bind"},
     rename_import_symbol(KMDF_LOADER_DLL, "WdfVersionBind", "WdfVersionBinX"), True),
    ("map-of-another-link", {"entry-point"}, other_link, True),
]


def failing(tool, image, kmdf=False, map_path=None):
    try:
        results, _ = run_checks(tool, image, kmdf, map_path)
    except (OSError, RuntimeError, ValueError, struct.error) as error:
        return None, str(error)
    return {name for name, ok, _ in results if not ok}, "; ".join(
        f"{name}: {detail}" for name, ok, detail in results if not ok)


def self_test(tool, image, foreign_image, kmdf=False, map_path=None):
    problems = 0
    # The patched copies are written elsewhere: they all use the good image's map.
    map_path = (map_path or default_map_path(image)) if kmdf else None
    mutants = KMDF_MUTANTS if kmdf else WDM_MUTANTS

    def report(label, expected, got, detail):
        nonlocal problems
        ok = got == expected
        problems += not ok
        wanted = ", ".join(sorted(expected)) or "nothing"
        seen = "an error" if got is None else (", ".join(sorted(got)) or "nothing")
        print(f"self-test: {'PASS' if ok else 'FAIL'} {label}: expected to fail [{wanted}], "
              f"failed [{seen}]" + (f" ({detail})" if detail else ""))

    got, detail = failing(tool, image, kmdf, map_path)
    report("good image", set(), got, detail)
    if problems:
        print(f"check_kernel_image self-test: FAILED (the image itself does not pass): {image}")
        return 1
    with open(image, "rb") as fh:
        original = fh.read()
    layout = PeLayout(original)
    with tempfile.TemporaryDirectory(prefix="kimg-selftest-") as tmp:
        for name, expected, patch, fix_checksum in mutants:
            data = bytearray(original)
            try:
                patch(data, layout)
            except ValueError as error:
                report(name, expected, None, f"could not plant: {error}")
                continue
            if fix_checksum:
                struct.pack_into("<I", data, layout.checksum, pe_checksum(bytes(data), layout.checksum))
            path = os.path.join(tmp, f"{name}.sys")
            with open(path, "wb") as fh:
                fh.write(data)
            got, detail = failing(tool, path, kmdf, map_path)
            report(name, expected, got, detail)
    if foreign_image:
        got, detail = failing(tool, foreign_image)
        report("built with feature foreign-import", {"imports"}, got, detail)
    total = 1 + len(mutants) + bool(foreign_image)
    if problems:
        print(f"check_kernel_image self-test: FAILED ({problems} of {total} cases)")
        return 1
    print(f"check_kernel_image self-test: OK ({total} cases)")
    return 0


def main(argv):
    kmdf = run_self_test = False
    foreign = map_path = None
    images = []
    args = iter(argv[1:])
    for arg in args:
        if arg == "--kmdf":
            kmdf = True
        elif arg == "--self-test":
            run_self_test = True
        elif arg in ("--foreign-image", "--map"):
            value = next(args, None)
            if value is None:
                sys.exit(f"check_kernel_image: {arg} needs a path")
            if arg == "--map":
                map_path = value
            else:
                foreign = value
        elif arg.startswith("-"):
            sys.exit(__doc__)
        else:
            images.append(arg)
    if len(images) != 1 or (foreign and (kmdf or not run_self_test)) or (map_path and not kmdf):
        sys.exit(__doc__)
    if run_self_test:
        return self_test(find_readobj(), images[0], foreign, kmdf, map_path)
    return check_image(find_readobj(), images[0], kmdf, map_path)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
