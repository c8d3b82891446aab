#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# What can be checked of the Yocto layer (packaging/yocto) for an arm64
# machine without BitBake and openembedded-core:
#  1. syntax: every logical line of the .bb/.inc/.conf files is a comment,
#     an assignment (with BitBake's operators, overrides and flags and a
#     closed double-quoted value), inherit/require/include/export, or part
#     of a function; every `require` names a file of the layer;
#  2. the module recipe: its make command line (EXTRA_OEMAKE, MAKE_TARGETS,
#     MODULES_INSTALL_TARGET, as module.bbclass runs them) with the cross
#     toolchain that module.bbclass passes (ARCH=arm64
#     CROSS_COMPILE=aarch64-linux-gnu-), against Debian's arm64 headers
#     (scripts/arm64-root.sh): builds and installs an aarch64 module;
#  3. the user-space recipe: its EXTRA_OECMAKE with the cross toolchain file
#     configures, builds and installs (DESTDIR) aarch64 programs.
#
#   yocto-arm64.sh WORK_DIR [--no-cmake]
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
layer=$src/packaging/yocto/meta-virtio-loopback
work=${1:?usage: yocto-arm64.sh WORK_DIR [--no-cmake]}
cmake_part=1
[[ ${2:-} == --no-cmake ]] && cmake_part=0
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

echo "=== 1. syntax of the layer's recipes"
python3 - "$layer" <<'EOF' || fail "the recipes have syntax errors (above)"
import os, re, sys

layer = sys.argv[1]
var = r"[A-Za-z_][A-Za-z0-9_\-${}./+]*"          # names may hold ${PN}, -, .
override = r"(?::[A-Za-z0-9_\-${}.+]+)*"           # :append, :${PN}, :pn-foo
flag = r"(?:\[[A-Za-z0-9_\-]+\])?"
assign = re.compile(r"^(?:export\s+)?" + var + override + flag +
                    r"\s*(\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=)\s*\"(?:[^\"\\]|\\.)*\"\s*$")
directive = re.compile(r"^(inherit|require|include|export|addtask|EXPORT_FUNCTIONS)\s+\S")
func_start = re.compile(r"^(?:python\s+)?(?:fakeroot\s+)?[A-Za-z0-9_\-${}:]*\s*\(\)\s*\{\s*$")
errors = 0
checked = 0
for root, _, files in os.walk(layer):
    for name in sorted(files):
        if not name.endswith((".bb", ".bbappend", ".inc", ".conf")):
            continue
        path = os.path.join(root, name)
        checked += 1
        lines = open(path).read().split("\n")
        i, in_func = 0, False
        while i < len(lines):
            start = i
            line = lines[i]
            # Join continuation lines.
            while line.endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line[:-1] + " " + lines[i]
            i += 1
            text = line.strip()
            where = f"{os.path.relpath(path, layer)}:{start + 1}"
            if in_func:
                if text == "}":
                    in_func = False
                continue
            if not text or text.startswith("#"):
                continue
            if func_start.match(text):
                in_func = True
                continue
            if assign.match(text):
                continue
            m = directive.match(text)
            if m:
                if m.group(1) in ("require", "include"):
                    target = text.split(None, 1)[1]
                    # Relative to the recipe, or to the layer (BBPATH).
                    if not (os.path.exists(os.path.join(os.path.dirname(path), target))
                            or os.path.exists(os.path.join(layer, target))):
                        if m.group(1) == "require":
                            print(f"{where}: require of a file the layer does not have: {target}")
                            errors += 1
                continue
            print(f"{where}: not a BitBake statement: {text}")
            errors += 1
        if in_func:
            print(f"{os.path.relpath(path, layer)}: function not closed")
            errors += 1
print(f"checked {checked} files, {errors} errors")
sys.exit(1 if errors or checked == 0 else 0)
EOF

# The value of VAR in a recipe, continuation lines joined (the simple
# assignment forms the recipes use).
recipe_var() { # file var
	python3 - "$1" "$2" <<'EOF'
import re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
m = re.search(r"^" + re.escape(sys.argv[2]) + r"\s*\+?=\s*\"([^\"]*)\"", text, re.M)
print(" ".join(m.group(1).split()) if m else "")
EOF
}

echo "=== 2. the module recipe's Kbuild with the arm64 cross toolchain"
"$src/scripts/arm64-root.sh"
headers=$("$src/scripts/arm64-root.sh" --print-dir)/headers
bb=$layer/recipes-kernel/virtio-loopback/virtio-loopback-module_git.bb
oemake=$(recipe_var "$bb" EXTRA_OEMAKE)
targets=$(recipe_var "$bb" MAKE_TARGETS)
install_target=$(recipe_var "$bb" MODULES_INSTALL_TARGET)
[[ -n $oemake && -n $targets && -n $install_target ]] ||
	fail "cannot read EXTRA_OEMAKE, MAKE_TARGETS and MODULES_INSTALL_TARGET from $bb"
rm -rf "$work"
mkdir -p "$work/git" "$work/image"
cp -r "$src/kernel" "$src/include" "$work/git/"
built=0
for kdir in "$headers"/usr/src/linux-headers-*; do
	[[ -e $kdir/Module.symvers ]] || continue
	rel=${kdir##*/linux-headers-}
	args=${oemake//'${STAGING_KERNEL_DIR}'/$kdir}
	args=${args//'${S}'/$work/git}
	[[ $args != *'${'* ]] || fail "EXTRA_OEMAKE uses variables this check does not know: $args"
	echo "--- $rel: make $args $targets"
	# module.bbclass: KERNEL_SRC, ARCH and CROSS_COMPILE from the kernel's
	# configuration; the recipe's EXTRA_OEMAKE says where the sources are.
	# (Not signed at install: Debian's signing key is not public; a Yocto
	# kernel signs with its own.)
	# shellcheck disable=SC2086
	make -s $args ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- KERNEL_SRC="$kdir" \
		CONFIG_DEBUG_INFO_BTF_MODULES= $targets || fail "the module recipe's build fails for $rel"
	# shellcheck disable=SC2086
	make -s $args ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- KERNEL_SRC="$kdir" \
		INSTALL_MOD_PATH="$work/image" CONFIG_MODULE_SIG_ALL= $install_target ||
		fail "the module recipe's install ($install_target) fails for $rel"
	ko=$(find "$work/image/lib/modules/$rel" -name 'virtio_loopback.ko*' -print)
	[[ -n $ko ]] || fail "$install_target installed no virtio_loopback.ko for $rel"
	# modules_install compresses as the kernel's configuration says (6.12: xz).
	case $ko in
	*.xz) xz -dc "$ko" >"$work/module.ko" ;;
	*.zst) zstd -qdc "$ko" >"$work/module.ko" ;;
	*) cp "$ko" "$work/module.ko" ;;
	esac
	echo "$ko: $(file -b "$work/module.ko")"
	file "$work/module.ko" | grep 'ARM aarch64' >/dev/null || fail "$ko is not an aarch64 module"
	make -s $args ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- clean
	built=$((built + 1))
done
((built > 0)) || fail "no arm64 kernel headers under $headers"

if ((cmake_part)); then
	echo "=== 3. the user-space recipe's CMake options with the arm64 toolchain"
	bb=$layer/recipes-support/virtio-loopback/virtio-loopback_git.bb
	oecmake=$(recipe_var "$bb" EXTRA_OECMAKE)
	[[ -n $oecmake ]] || fail "cannot read EXTRA_OECMAKE from $bb"
	# The Yocto defaults of the paths the recipe names (usrmerge off).
	oecmake=${oecmake//'${systemd_system_unitdir}'//lib/systemd/system}
	oecmake=${oecmake//'${nonarch_base_libdir}'//lib}
	oecmake=${oecmake//'${nonarch_libdir}'//usr/lib}
	oecmake=${oecmake//'${base_sbindir}'//sbin}
	oecmake=${oecmake//'${base_bindir}'//bin}
	[[ $oecmake != *'${'* ]] || fail "EXTRA_OECMAKE uses variables this check does not know: $oecmake"
	echo "--- cmake $oecmake"
	# shellcheck disable=SC2086
	cmake -S "$src" -B "$work/cmake" -DCMAKE_TOOLCHAIN_FILE="$src/cmake/aarch64-linux-gnu.cmake" \
		-DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=Release $oecmake >"$work/cmake.log" ||
		{ cat "$work/cmake.log"; fail "the recipe's CMake options do not configure"; }
	cmake --build "$work/cmake" -j "${JOBS:-2}" >>"$work/cmake.log" 2>&1 ||
		{ tail -50 "$work/cmake.log"; fail "the recipe's configuration does not build"; }
	DESTDIR=$work/image cmake --install "$work/cmake" >>"$work/cmake.log" ||
		{ tail -50 "$work/cmake.log"; fail "the recipe's configuration does not install"; }
	for prog in virtio-loopback-adapter vhost-user-blk vhost-user-input vhost-user-rng; do
		bin=$work/image/usr/bin/$prog
		[[ -x $bin ]] || fail "$prog is not installed in /usr/bin"
		file "$bin"
		file "$bin" | grep 'ARM aarch64' >/dev/null || fail "$bin is not an aarch64 program"
	done
fi
echo "=== PASS"
