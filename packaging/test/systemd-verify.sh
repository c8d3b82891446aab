#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# systemd-analyze verify of the installed units, as they would be on a
# system with the packages installed: a root made of the staged install
# (install-tree.sh), the host's own systemd units (the targets the units
# name) and the host's copies of the system tools the units run
# (modprobe, udevadm). Templates are checked through an instance (@test);
# Documentation=man: pages must be among the installed man pages. Any
# output of systemd-analyze (warnings included) fails the check.
#   systemd-verify.sh DESTDIR
set -euo pipefail

die() { echo "systemd-verify: $*" >&2; exit 1; }
(($# == 1)) || die "usage: systemd-verify.sh DESTDIR"
dest=$(realpath -e "$1")
command -v systemd-analyze >/dev/null || die "systemd-analyze is not installed"

mapfile -t units < <(find "$dest" -path '*/systemd/system/*.service' -type f | sort)
((${#units[@]})) || die "no units under $dest"
root=$(mktemp -d /tmp/vl-verify.XXXXXX)
trap 'rm -rf "$root"' EXIT
cp -a "$dest/." "$root/"
for dir in /lib/systemd/system /usr/lib/systemd/system; do
	[[ -d $dir && ! -L $dir ]] || continue
	mkdir -p "$root$dir"
	cp -an "$dir/." "$root$dir/"
done
# System tools the units run that the install does not provide.
for tool in $(sed -n 's/^Exec[A-Za-z]*=[-+!@:]*\(\/[^ ]*\).*/\1/p' "${units[@]}" | sort -u); do
	[[ -e $root$tool ]] && continue
	[[ -x $tool ]] || die "the units run $tool, which this machine does not have either"
	mkdir -p "$root$(dirname "$tool")"
	cp "$tool" "$root$tool"
done

names=()
for unit in "${units[@]}"; do
	name=${unit##*/}
	[[ $name == *@.service ]] && name=${name%@.service}@test.service
	names+=("$name")
done
echo "systemd-verify: $(systemd-analyze --version | head -n1): ${names[*]}"
# Documentation=man: pages must be installed (a build without man pages
# cannot check them).
mandir=$(find "$root" -type d -name man1 -path '*/share/man/*' | head -n1)
man=(--man=yes)
[[ -n $mandir ]] || { man=(--man=no); echo "systemd-verify: no man pages installed, not checking them"; }
set +e
output=$(MANPATH=${mandir%/man1} SYSTEMD_LOG_COLOR=0 systemd-analyze verify "${man[@]}" --root="$root" "${names[@]}" 2>&1)
status=$?
set -e
[[ -z $output ]] || { echo "$output"; die "systemd-analyze verify reported the above"; }
((status == 0)) || die "systemd-analyze verify exited with $status"
echo "systemd-verify: PASS (${#names[@]} units, no warnings)"
