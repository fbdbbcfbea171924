#!/usr/bin/env python3
"""kmdf-sim's layers are true: no file imports from a layer above its own.

An edge is (file, referenced module) for every `crate::a::b` / `super::a` path in code (use lines
and inline paths; comments ignored), placed by ARCHITECTURE.md's layer table (TABLE below).
Usage: check_sim_layers.py [SRC_DIR] [-v]; exits 1 on an upward import or an unplaced module.
`--self-test` plants an upward import and checks that it is found.
"""
import re, sys, os
from collections import defaultdict

# ARCHITECTURE.md's kmdf-sim layer table, bottom up. A module path names a file; the longest
# prefix wins. A file may import only from its own layer or the layers below.
TABLE = [
    ("values", ["status", "guid", "pnp::state"]),
    ("dispatcher", ["exec::clock", "exec::context", "exec::sched"]),
    ("checks", ["trace", "verifier", "fault", "pool", "narrate"]),
    ("machine", ["machine"]),
    ("objects", ["object"]),
    ("execution", ["exec"]),
    ("hardware", ["fx2", "hid"]),
    ("configuration", ["registry"]),
    ("drivers and devices", ["driver", "device", "control"]),
    ("stacks", ["pnp"]),
    ("interfaces and links", ["interface"]),
    ("I/O", ["io"]),
    ("sample driver", ["fx2::driver", "hid::driver"]),
]
ROOT = {"Machine": "machine", "MachineBuilder": "machine", "MachineGuard": "machine",
        "QueuesPaused": "machine", "Status": "status", "Irql": "exec::context",
        "ClockMode": "exec::clock", "Rule": "verifier", "VerifierMode": "verifier",
        "Violation": "verifier"}

def module_of(path, src):
    rel = os.path.relpath(path, src)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return "::".join(parts)

def layer_of(mod, table):
    best = None
    for i, (_, prefixes) in enumerate(table):
        for p in prefixes:
            if mod == p or mod.startswith(p + "::"):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    return None if best is None else best[0]

def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(re.sub(r"//.*", "", l) for l in text.splitlines())

def refs(text, mod=""):
    """Every crate:: path (and super:: path, resolved against `mod`), with `use crate::{a, b::c}`
    groups expanded to their first segments."""
    out = []
    base = "::".join(mod.split("::")[:-1])  # the parent module `super` names
    for m in re.finditer(r"(?<![A-Za-z0-9_:])super::([A-Za-z_][A-Za-z0-9_]*)", text):
        out.append((base + "::" if base else "") + m.group(1))
    for m in re.finditer(r"crate::(\{[^;]*?\}|[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)", text):
        p = m.group(1)
        if p.startswith("{"):
            for item in re.split(r",", p[1:-1]):
                item = item.strip()
                if item:
                    out.append(re.match(r"[A-Za-z_][A-Za-z0-9_:]*", item).group(0).rstrip(":"))
        else:
            out.append(p)
    return out

def check(src, verbose=False):
    files = []
    for d, _, fs in os.walk(src):
        for f in fs:
            if f.endswith(".rs"):
                files.append(os.path.join(d, f))
    up = defaultdict(set)
    unplaced = set()
    for path in sorted(files):
        mod = module_of(path, src)
        if mod == "":
            continue  # lib.rs: the crate root re-exports everything
        sl = layer_of(mod, TABLE)
        if sl is None:
            unplaced.add(mod)
            continue
        text = strip_comments(open(path).read())
        # `#[cfg(test)] mod tests { use super::*; }` is the file's own test module.
        text = re.sub(r"use super::\*;", "", text)
        for r in refs(text, mod):
            target = ROOT.get(r.split("::")[0], r)
            tl = layer_of(target, TABLE)
            if tl is None:
                unplaced.add(target)
            elif tl > sl:
                up[(mod, target.split("::")[0])].add(r)
    for (a, b), rs in sorted(up.items()):
        print(f"kmdf-sim layer violation: {a} ({TABLE[layer_of(a, TABLE)][0]}) imports "
              f"{b} ({TABLE[layer_of(b, TABLE)][0]}): {', '.join(sorted(rs))}")
    for m in sorted(unplaced):
        print(f"kmdf-sim module not in the layer table: {m}")
    if verbose:
        print("layers (bottom up): " + " < ".join(n for n, _ in TABLE))
    return len(up) + len(unplaced)


def self_test():
    import shutil, tempfile
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(here, "..", "crates", "kmdf-sim", "src")
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "src")
        shutil.copytree(src, copy)
        with open(os.path.join(copy, "status.rs"), "a") as f:
            f.write("\nuse crate::io::Queue;\n")
        found = check(copy)
    if found != 1:
        print(f"self-test: the planted upward import gave {found} findings, expected 1")
        sys.exit(1)
    print("self-test: the planted upward import was found")


def main():
    if "--self-test" in sys.argv:
        self_test()
        return
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    here = os.path.dirname(os.path.abspath(__file__))
    src = args[0] if args else os.path.join(here, "..", "crates", "kmdf-sim", "src")
    n = check(src, "-v" in sys.argv)
    if n:
        sys.exit(1)
    print("kmdf-sim: every import runs down the layer table")


main()
