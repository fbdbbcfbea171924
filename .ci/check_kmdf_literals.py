#!/usr/bin/env python3
"""No hand-written WDF/NT numbers in the kmdf backend (docs/kmdf-backend.md, "Where the numbers
come from").

Every enumerator, flag, status, access mask, IRQL and structure size the backend
(`crates/dmf-core/src/platform/kmdf/**/*.rs`) uses must be the generated wdk-sys item
(`wdk_sys::_WDF_IO_TARGET_OPEN_TYPE::WdfIoTargetOpenByName`, `wdk_sys::FILE_OPEN`,
`wdk_sys::STATUS_TIMEOUT`, ...), never a number typed in. This check reads the code (comments,
doc comments, strings and `#[cfg(test)]` modules are skipped) and reports every integer literal in
a place where such a number would go:

  (a) const-def   the initializer of a `const`/`static` item (`const X: ULONG = 0x40;`)
  (b) field       a structure member written with a literal: `x.Member = 1;` or `Member: 1` in a
                  structure expression (bindgen members start with an upper-case letter)
  (c) cast        a literal cast with `as` (`1 as _`, `0x8000_0005_u32 as i32`, `2 as ULONG`)
  (d) call-arg    an argument of `call_unsafe_wdf_function_binding!(...)` or of a
                  `wdk_sys::...(...)` routine that holds a literal other than a lone `0`
  (e) compare     a comparison with a non-zero literal (`mode == 1`), or a match arm whose pattern
                  is a literal (`3 => ...`)
  (f) value       a match arm or an `if`/`else` branch whose value is a bare non-zero literal
                  (`Kind::A => 1,`, `if x { 1 } else { 3 }`): a hand-made enumerator table (a
                  table's other entries are non-zero, so exempting `0` — "none", "no period" —
                  loses nothing)

A literal that is not a WDF/NT value (a unit conversion, an empty flag set) is allowed only on a
line that says so, with a reason; so is a WDK value the generated bindings cannot carry (a
`DEFINE_GUID`, which is data in a library):

    const NO_SEND_OPTIONS: ULONG = 0; // not a WDF/NT value: the empty flag set
    0x46F0, // not in the bindings: GUID_DEVICE_INTERFACE_ARRIVAL is data in wdmguid.lib

Usage: check_kmdf_literals.py [ROOT]      one line per finding `path:line: <literal> (<kind>) <code>`,
                                          exit 1 on findings; last line
                                          `check_kmdf_literals: N files, M findings`
       check_kmdf_literals.py --self-test plants each kind in a copy of a backend file and proves
                                          each is found (and that allowed forms are not)
"""
import glob
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rust_source import strip_code  # noqa: E402  (the shared reader of Rust source)

BACKEND = os.path.join("crates", "dmf-core", "src", "platform", "kmdf")
MARKER_RE = re.compile(r"//\s*(?:not a WDF/NT value|not in the bindings):\s*\S")

SUFFIX = r"(?:_?(?:u8|u16|u32|u64|u128|usize|i8|i16|i32|i64|i128|isize))?"
# An integer literal: not part of an identifier, a path segment, a tuple index (`.0`) or a float.
LITERAL_RE = re.compile(
    r"(?<![\w.])((?:0x[0-9A-Fa-f_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*)" + SUFFIX + r")(?![\w.])"
)
CONST_DEF_RE = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const|static)\s+(?:mut\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*:"
)
FIELD_ASSIGN_RE = re.compile(r"\.\s*([A-Z][A-Za-z0-9_]*)\s*=(?!=)")
FIELD_INIT_RE = re.compile(r"(?<![:\w])([A-Z][A-Za-z0-9_]*)\s*:(?!:)")
CAST_RE = re.compile(LITERAL_RE.pattern + r"\s*\)*\s+as\b")
COMPARE_RE = re.compile(r"(?:==|!=|<=|>=|(?<![<>=-])<(?![<=])|(?<![<>=-])>(?![>=]))\s*\(?\s*-?\s*" + LITERAL_RE.pattern)
COMPARE_LEFT_RE = re.compile(LITERAL_RE.pattern + r"\s*(?:==|!=|<=|>=)")
ARM_RE = re.compile(r"^\s*(?:\|\s*)?-?" + LITERAL_RE.pattern + r"(?:\s*(?:\||\.\.=?)\s*-?" + LITERAL_RE.pattern + r")*\s*=>")
ARM_VALUE_RE = re.compile(r"=>\s*-?" + LITERAL_RE.pattern + r"\s*,?\s*$")
BRANCH_VALUE_RE = re.compile(r"(?:\)|\bif\b[^{]*|\belse)\s*\{\s*-?" + LITERAL_RE.pattern + r"\s*\}")
CALL_RE = re.compile(r"\bcall_unsafe_wdf_function_binding!\s*\(|\bwdk_sys\s*::\s*(?:\w+\s*::\s*)*\w+\s*\(")




def blank_test_modules(code):
    """Blank out `#[cfg(test)]` items (the module or function after the attribute)."""
    lines = code.split("\n")
    i = 0
    while i < len(lines):
        if not re.match(r"^\s*#\[cfg\(test\)\]", lines[i]):
            i += 1
            continue
        lines[i] = re.sub(r"#\[cfg\(test\)\]", "", lines[i])
        depth, started, j = 0, False, i
        while j < len(lines):
            line = lines[j]
            lines[j] = ""
            for c in line:
                if c == "{":
                    depth, started = depth + 1, True
                elif c == "}":
                    depth -= 1
            if (started and depth <= 0) or (not started and line.rstrip().endswith(";")):
                break
            j += 1
        i = j + 1
    return "\n".join(lines)


def statement_from(code, start):
    """The text from `start` to the `;` that ends the statement (outside brackets)."""
    depth, j = 0, start
    while j < len(code):
        c = code[j]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                break
        elif c == ";" and depth == 0:
            break
        j += 1
    return j


def call_args(code, open_paren):
    """(start, end) of each top-level argument of the call whose `(` is at `open_paren`."""
    args, depth, start, j = [], 0, open_paren + 1, open_paren + 1
    while j < len(code):
        c = code[j]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                args.append((start, j))
                break
            depth -= 1
        elif c == "," and depth == 0:
            args.append((start, j))
            start = j + 1
        j += 1
    return args


def is_zero(literal):
    """`0`, `0x0`, `0_u32`, … (the value zero, whatever the base and suffix)."""
    return re.fullmatch(r"(?:0x|0o|0b)?0+" + SUFFIX, literal.replace("_", "")) is not None


def line_of(code, pos):
    return code.count("\n", 0, pos) + 1


def scan_text(text):
    """Findings `(line, literal, kind)` in one file's text, before allow markers."""
    code = blank_test_modules(strip_code(text))
    found = set()

    def literals(start, end, kind, skip_lone_zero=False):
        chunk = code[start:end]
        if skip_lone_zero and re.fullmatch(r"\s*0\s*", chunk):
            return
        for m in LITERAL_RE.finditer(chunk):
            found.add((line_of(code, start + m.start()), m.group(0), kind))

    offsets, pos = [], 0
    for line in code.split("\n"):
        offsets.append(pos)
        pos += len(line) + 1

    for number, line in enumerate(code.split("\n"), start=1):
        base = offsets[number - 1]
        # (a) const/static initializers.
        m = CONST_DEF_RE.match(line)
        if m and m.group(1) != "_":
            eq = code.find("=", base + m.end())
            end = statement_from(code, base + m.end())
            if 0 <= eq < end:
                literals(eq + 1, end, "const-def")
        # (b) member assignments `x.Member = …;`.
        for m in FIELD_ASSIGN_RE.finditer(line):
            start = base + m.end()
            literals(start, statement_from(code, start), "field")
        # (b) member initializers `Member: …` in structure expressions.
        for m in FIELD_INIT_RE.finditer(line):
            rest = line[m.end():]
            value = re.match(r"[^,}]*", rest).group(0)
            if LITERAL_RE.search(value) and not re.match(r"\s*(?:[&*(\[]|[A-Za-z_])", value):
                literals(base + m.end(), base + m.end() + len(value), "field")
        # (c) casts of literals.
        for m in CAST_RE.finditer(line):
            found.add((number, m.group(1), "cast"))
        # (e) comparisons with non-zero literals, literal match arms.
        for m in list(COMPARE_RE.finditer(line)) + list(COMPARE_LEFT_RE.finditer(line)):
            if not is_zero(m.group(1)):
                found.add((number, m.group(1), "compare"))
        m = ARM_RE.match(line)
        if m:
            for lit in LITERAL_RE.finditer(line[: line.index("=>")]):
                found.add((number, lit.group(0), "match-arm"))
        # (f) bare literal values of match arms and if/else branches.
        for m in list(ARM_VALUE_RE.finditer(line)) + list(BRANCH_VALUE_RE.finditer(line)):
            if not is_zero(m.group(1)):
                found.add((number, m.group(1), "value"))
    # (d) arguments of WDF/NT calls.
    for m in CALL_RE.finditer(code):
        args = call_args(code, m.end() - 1)
        for start, end in args:
            literals(start, end, "call-arg", skip_lone_zero=True)
    return found


def scan_file(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    raw = text.split("\n")
    results = []
    for number, literal, kind in sorted(scan_text(text)):
        source = raw[number - 1] if number <= len(raw) else ""
        if MARKER_RE.search(source):
            continue
        results.append((number, literal, kind, source.strip()))
    return results


def check(root):
    files = sorted(glob.glob(os.path.join(root, BACKEND, "**", "*.rs"), recursive=True))
    findings = []
    for path in files:
        rel = os.path.relpath(path, root)
        for number, literal, kind, source in scan_file(path):
            findings.append(f"{rel}:{number}: {literal} ({kind}) {source}")
    return files, findings


def self_test():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    original = os.path.join(root, BACKEND, "wdf.rs")
    # One planted line per kind, each with a unique literal; the comment tail is the expected kind.
    planted = {
        "const-def": "pub(super) const PLANTED_ENUMERATOR: i32 = 7001;",
        "const-def-expr": "const PLANTED_MASK: ULONG = 0x7002 | 0x7003;",
        "static": "static PLANTED_STATIC: u32 = 7004;",
        "field": "    planted.FileObjectClass = 7005;",
        "field-cast": "    planted.Type = 7006 as _;",
        "field-init": "    let g = GUID { Data1: 7007, Data2: x, Data3: y, Data4: z };",
        "cast": "    let planted_cast = 0x7008_u32 as i32;",
        "cast-paren": "    call(planted, (7009) as WDF_TRI_STATE);",
        "call-arg": "    unsafe { call_unsafe_wdf_function_binding!(WdfDeviceStopIdleNoTrack, device, 7010) };",
        "call-arg-multiline": "    unsafe {\n        call_unsafe_wdf_function_binding!(\n            WdfIoTargetStop,\n            target,\n            7011\n        )\n    };",
        "nt-call-arg": "    let _ = unsafe { wdk_sys::ntddk::ObReferenceObjectByHandle(h, a, t, 7012, o, i) };",
        "compare": "    if mode == 7013 {",
        "match-arm": "        7014 => IoTargetState::Started,",
        "arm-value": "        FailedAction::AttemptRestart => 7015, // WdfDeviceFailedAttemptRestart",
        "branch-value": "    let action: i32 = if cancel_sent { 7016 } else { 7017 };",
    }
    expected = {
        "const-def": ("7001", "const-def"),
        "const-def-expr": ("0x7002", "const-def"),
        "static": ("7004", "const-def"),
        "field": ("7005", "field"),
        "field-cast": ("7006", "cast"),
        "field-init": ("7007", "field"),
        "cast": ("0x7008_u32", "cast"),
        "cast-paren": ("7009", "cast"),
        "call-arg": ("7010", "call-arg"),
        "call-arg-multiline": ("7011", "call-arg"),
        "nt-call-arg": ("7012", "call-arg"),
        "compare": ("7013", "compare"),
        "match-arm": ("7014", "match-arm"),
        "arm-value": ("7015", "value"),
        "branch-value": ("7016", "value"),
        "branch-value-else": ("7017", "value"),
    }
    # Forms that must not be reported.
    allowed = [
        "// planted.FileObjectClass = 7101; (a comment)",
        "/// `x.Type = 7102 as _` in a doc comment",
        "/* const PLANTED: u32 = 7103; */",
        '    let s = "Period = 7104 as u32";',
        "const PLANTED_UNIT: u64 = 7105; // not a WDF/NT value: a unit conversion",
        "    0x7108, // not in the bindings: a DEFINE_GUID",
        "    unsafe { call_unsafe_wdf_function_binding!(WdfRegistryQueryValue, key, name, 0, null_mut()) };",
        "    if len != 0 {",
        "        None => 0,",
        "    let n = if some { 0 } else { 0 };",
        "    let t = value.0 as u64;",
        "#[cfg(test)]\nmod planted_tests {\n    const PLANTED_TEST: u32 = 7106;\n    fn f() { x.Size = 7107; }\n}",
    ]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, BACKEND)
        os.makedirs(target)
        # The untouched file has no findings.
        shutil.copy(original, os.path.join(target, "wdf.rs"))
        _, clean = check(tmp)
        if clean:
            failures.append("the unmodified wdf.rs has findings: " + "; ".join(clean))
        with open(original, encoding="utf-8") as f:
            text = f.read()
        text += "\n// --- planted by check_kmdf_literals.py --self-test ---\n"
        text += "\n".join(allowed) + "\n"
        text += "fn planted() {\n" + "\n".join(planted.values()) + "\n}\n"
        with open(os.path.join(target, "wdf.rs"), "w", encoding="utf-8") as f:
            f.write(text)
        _, findings = check(tmp)
        for name, (literal, kind) in expected.items():
            if not any(f": {literal} ({kind})" in line for line in findings):
                failures.append(f"planted {name} ({literal}, {kind}) was not found")
            else:
                print(f"check_kmdf_literals: self-test: planted {name} found ({literal}, {kind})")
        for line in findings:
            if re.search(r": 71\d\d", line):
                failures.append(f"an allowed form was reported: {line}")
        expected_literals = {lit for lit, _ in expected.values()} | {"0x7003"}
        for line in findings:
            literal = line.split(": ", 1)[1].split(" ", 1)[0]
            if literal not in expected_literals:
                failures.append(f"unexpected finding: {line}")
    for failure in failures:
        print(f"check_kmdf_literals: self-test FAILED: {failure}")
    if failures:
        return 1
    print(f"check_kmdf_literals: self-test passed ({len(expected)} planted kinds found, "
          f"{len(allowed)} allowed forms not reported)")
    return 0


def main(argv):
    if len(argv) > 1 and argv[1] == "--self-test":
        return self_test()
    root = argv[1] if len(argv) > 1 else os.getcwd()
    files, findings = check(root)
    for line in findings:
        print(line)
    print(f"check_kmdf_literals: {len(files)} files, {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
