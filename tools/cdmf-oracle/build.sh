#!/usr/bin/env bash
# cdmf-oracle: builds Microsoft's own C DMF SwitchBar1 and SwitchBar4 samples into KMDF .sys images,
# as an oracle for our Rust port (docs/kmdf-host.md, "C DMF's own samples").
#
# Reads the DMF source from $DMF_SOURCE (default: ../shared/cdmf beside the repository; a clone of
# microsoft/DMF at the pinned commit works too) and never copies it. Compiles, with clang-19 for
# x86_64-pc-windows-msvc against the KMDF 1.33 headers and mingw-w64's NT headers:
#   - DMF's kernel framework (the ClCompile list of Dmf/Solution/DmfKFramework) and the Modules the
#     two samples need, as C++ (DMF's projects say CompileAsCpp), into one static library;
#   - each sample's DmfInterface.c as C;
# and links each sample with rust-lld against the library, our startup object (FxDriverEntry ->
# WdfVersionBind -> DriverEntry) and the ntoskrnl.exe / WDFLDR.SYS import libraries that
# .ci/kmdf-check prepares under target/kmdf-check (run it first, or with --prepare-only).
# WPP tracing, the in-flight recorder and the headers mingw-w64 lacks come from compat/ here.
#
# Writes only under target/cdmf-oracle. Last line: `cdmf-oracle: built N images`.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DMF=${DMF_SOURCE:-$ROOT/../shared/cdmf}
[ -f "$DMF/Dmf/Framework/DmfCore.c" ] || { echo "cdmf-oracle: no C DMF source at $DMF (set DMF_SOURCE)" >&2; exit 1; }
DMF=$(cd "$DMF" && pwd)
OUT=$ROOT/target/cdmf-oracle
KC=$ROOT/target/kmdf-check
LIBS=$KC/libs
BINDINGS=$KC/bindings
for f in "$LIBS/ntoskrnl.lib" "$LIBS/WdfLdr.lib" "$LIBS/WdfDriverEntry.lib" "$BINDINGS/include"; do
  [ -e "$f" ] || { echo "cdmf-oracle: $f is missing (run .ci/kmdf-check first)" >&2; exit 1; }
done
if [ -n "${DMF_KMDF_HEADERS:-}" ]; then
  HEADERS=$DMF_KMDF_HEADERS
elif [ -f "$ROOT/../shared/wdf/kmdf/1.33/wdf.h" ]; then
  HEADERS=$(cd "$ROOT/../shared/wdf" && pwd)
else
  HEADERS=$KC/wdf-headers
fi
KMDF_INCLUDE=$HEADERS/kmdf/1.33
MINGW=/usr/x86_64-w64-mingw32/include
CLANG_INCLUDE=$(clang-19 -print-resource-dir)/include
RUST_LLD=$(find "$(rustc --print sysroot)/lib/rustlib" -name rust-lld -type f | head -n 1)
[ -x "$RUST_LLD" ] || { echo "cdmf-oracle: rust-lld not found" >&2; exit 1; }
JOBS=${JOBS:-$(nproc)}

mkdir -p "$OUT/obj" "$OUT/tmh"
say() { printf 'cdmf-oracle: %s\n' "$*"; }

FRAMEWORK=(
  $(sed -n 's/.*<ClCompile Include="\.\.\\\.\.\\\([^"]*\)".*/\1/p' \
      "$DMF/Dmf/Solution/DmfKFramework/DmfKFramework.vcxproj" | tr '\\' '/')
)
# The Modules SwitchBar1 (DeviceInterfaceTarget) and SwitchBar4 (DefaultTarget, IoctlHandler)
# instantiate, and the Modules those instantiate in turn.
MODULES=(DeviceInterfaceTarget DefaultTarget IoctlHandler ContinuousRequestTarget RequestTarget
         BufferPool BufferQueue QueuedWorkItem ScheduledTask Rundown HashTable RingBuffer CrashDump)
LIB_SOURCES=("${FRAMEWORK[@]/#/Dmf/}")
for m in "${MODULES[@]}"; do LIB_SOURCES+=("Dmf/Modules.Library/Dmf_$m.c"); done
SAMPLES=(SwitchBar:SwitchBar1 SwitchBar4:SwitchBar4)

# Windows file names ignore case: DMF includes "..\\..\\Modules.Library\\Dmf_String.h" for
# DMF_String.h (clang, in Microsoft mode, already reads the backslashes as separators). A clang VFS
# overlay gives each such file the spelling its includer uses.
grep -rhoE '^\s*#\s*include\s+"[^"]*"' "$DMF/Dmf" "$DMF/DmfSamples" --include='*.h' --include='*.c' |
  sed -E 's/.*"(.*)"/\1/; s/.*[\\/]//' | sort -u | while read -r name; do
    find "$DMF/Dmf" "$DMF/DmfSamples" -iname "$name" ! -name "$name" 2>/dev/null | while read -r real; do
      printf '{"name": "%s", "type": "file", "external-contents": "%s"}\n' \
        "$(dirname "$real")/$name" "$real"
    done
  done > "$OUT/case-aliases"
{
  echo '{"version": 0, "case-sensitive": "true", "roots": ['
  sed '$!s/$/,/' "$OUT/case-aliases"
  echo ']}'
} > "$OUT/case-overlay.yaml"

# Empty .tmh files, in every spelling the sources include.
for s in "${LIB_SOURCES[@]}" DmfSamples/SwitchBar/DmfInterface.c DmfSamples/SwitchBar4/DmfInterface.c; do
  sed -n 's/^#include "\([^"]*\.tmh\)".*/\1/p' "$DMF/$s"
done | sort -u | while read -r t; do : > "$OUT/tmh/$t"; done

# DMF's Release configuration (no DBG/DEBUG). Warnings are off: this is Microsoft's code, built
# as it is (clang reads, for one, DMF's `sizeof(DMF_CONFIG_##Name##)` trailing paste as an error
# unless -Wno-invalid-token-paste).
CFLAGS=(--target=x86_64-pc-windows-msvc -fms-extensions -fms-compatibility -fgnuc-version=4.2.1
  -nostdinc -isystem "$CLANG_INCLUDE"
  -include "$ROOT/tools/cdmf-oracle/compat/cdmf_force.h"
  -I"$ROOT/tools/cdmf-oracle/compat" -I"$OUT/tmh" -ivfsoverlay "$OUT/case-overlay.yaml" -I"$BINDINGS/include"
  -I"$DMF/Dmf/Framework" -I"$DMF/Dmf/Framework/Modules.Core" -I"$DMF/Dmf/Modules.Library"
  -I"$MINGW/ddk" -I"$MINGW" -I"$KMDF_INCLUDE"
  -D_WIN64 -D_AMD64_ -DAMD64 -D_KERNEL_MODE -DSTRICT -DKMDF_VERSION_MAJOR=1 -DKMDF_VERSION_MINOR=33
  -DDMF_DONT_INCLUDE_PEPFX
  -O2 -fno-exceptions -fno-rtti -mno-red-zone -fno-stack-protector -fno-builtin
  -w -Wno-invalid-token-paste)
export CLANG_CFLAGS_FILE=$OUT/cflags
printf '%s\n' "${CFLAGS[@]}" > "$CLANG_CFLAGS_FILE"

compile() { # $1 = c|c++, $2 = source relative to $DMF, $3 = object
  local lang=$1 src=$2 obj=$3
  if ! clang-19 @"$CLANG_CFLAGS_FILE" -x "$lang" $([ "$lang" = c++ ] && echo -std=c++17) \
       -c "$DMF/$src" -o "$obj" 2>"$obj.log"; then
    echo "cdmf-oracle: FAILED: $src" >&2; head -n 40 "$obj.log" >&2; return 1
  fi
}
export -f compile
export DMF

start=$(date +%s)
say "compiling the framework (${#FRAMEWORK[@]} files) and ${#MODULES[@]} Modules as C++"
objs=()
for s in "${LIB_SOURCES[@]}"; do objs+=("$OUT/obj/$(basename "${s%.c}").obj"); done
for s in "${LIB_SOURCES[@]}"; do echo "$s $OUT/obj/$(basename "${s%.c}").obj"; done |
  xargs -P "$JOBS" -n 2 bash -c 'compile c++ "$0" "$1"'
llvm-lib-19 /out:"$OUT/DmfK.lib" "${objs[@]}"

images=0
for pair in "${SAMPLES[@]}"; do
  dir=${pair%%:*} name=${pair##*:}
  say "compiling and linking $name"
  compile c "DmfSamples/$dir/DmfInterface.c" "$OUT/obj/$name.obj"
  "$RUST_LLD" -flavor link /NOLOGO /OUT:"$OUT/$name.sys" /MAP:"$OUT/$name.map" \
    /DRIVER /NODEFAULTLIB /SUBSYSTEM:NATIVE /KERNEL /ENTRY:FxDriverEntry /IGNORE:4257 \
    /NXCOMPAT /DYNAMICBASE /OPT:REF,ICF /INTEGRITYCHECK /MANIFEST:NO /RELEASE \
    "$OUT/obj/$name.obj" "$OUT/DmfK.lib" "$LIBS/WdfDriverEntry.lib" \
    "$LIBS/ntoskrnl.lib" "$LIBS/WdfLdr.lib"
  images=$((images + 1))
done
say "compiled and linked in $(( $(date +%s) - start )) s"
say "built $images images"
