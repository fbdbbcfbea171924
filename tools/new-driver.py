#!/usr/bin/env python3
"""Starts a driver crate from templates/dmf-driver (what `cargo generate` does with it).

    python3 tools/new-driver.py <directory> [--name <crate name>] [--dmf <DMF for Rust checkout>]

The new crate depends on this checkout of DMF for Rust by path (`--dmf`, default: the checkout
the script is in). Its name defaults to the directory's name. Then:

    cd <directory> && cargo test

CI instantiates the template this way and runs the new crate's tests and clippy.
"""

import argparse
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "templates" / "dmf-driver"


def substitute(text, values):
    def one(match):
        key = match.group(1).strip()
        if key not in values:
            raise SystemExit(f"template: unknown placeholder {{{{{key}}}}}")
        return values[key]

    return re.sub(r"\{\{\s*([A-Za-z0-9_-]+)\s*\}\}", one, text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--name")
    parser.add_argument("--dmf", type=Path, default=ROOT)
    args = parser.parse_args()
    dest = args.directory.resolve()
    name = args.name or dest.name
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise SystemExit(f"{name!r}: a crate name is lowercase letters, digits, '-' and '_'")
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"{dest} exists and is not empty")
    dmf = args.dmf.resolve()
    if not (dmf / "crates" / "kmdf-sim" / "Cargo.toml").is_file():
        raise SystemExit(f"{dmf} is not a DMF for Rust checkout")
    values = {
        "project-name": name,
        "crate_name": name.replace("-", "_"),
        "dmf-dependency": f'path = "{dmf.as_posix()}"',
        "kmdf-sim-dependency": f'path = "{(dmf / "crates" / "kmdf-sim").as_posix()}"',
    }
    for source in sorted(TEMPLATE.rglob("*")):
        relative = source.relative_to(TEMPLATE)
        if source.is_dir() or relative.name == "cargo-generate.toml" or "target" in relative.parts:
            continue
        target = dest / substitute(relative.as_posix(), values)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(substitute(source.read_text(encoding="utf-8"), values), encoding="utf-8")
    # A crate of its own, not a member of whichever workspace it lands in.
    with open(dest / "Cargo.toml", "a", encoding="utf-8") as manifest:
        manifest.write("\n[workspace]\n")
    print(f"created {name} in {dest}: cd there and run `cargo test`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
