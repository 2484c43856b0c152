#!/bin/bash
# Time to the --expect text of `vmb verify --boot --runner qemu` (issue 13).
# The small Linux disk of tests/fixtures-src/make-linux-disk.sh (SYSLINUX,
# Debian's kernel, a busybox initramfs printing "vmb-bench-ok: VERSION" on
# ttyS0), backed up into an encrypted repository, booted from it $RUNS
# times (default 3) for each accelerator:
#   default   --vcpu not given (-accel kvm -accel tcg when /dev/kvm opens,
#             and a TCG rerun if KVM cannot run the guest)
#   tcg       --vcpu tcg
#   kvm       --vcpu kvm (only where /dev/kvm opens)
# For each run: "to text" = from QEMU's start to the match (the runner's
# reason, "after S s"), "total" = the whole command (JSON seconds:
# repository, NBD server, QEMU, teardown).  For reference, the same disk
# booted by QEMU straight from the raw file (no repository, no NBD), TCG:
# from QEMU's start until it exits (the guest powers off right after
# printing the marker).
#   Usage: flock /tmp/vmb-bench.lock bash bench/boot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DVMB_BUILD_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null
V=$PWD/build-bench/cli/vmb
RUNS=${RUNS:-3}
QEMU=${VMB_QEMU:-qemu-system-x86_64}
W=$(mktemp -d /tmp/vmbboot.XXXXXX)
trap 'rm -rf "$W"' EXIT
export VMB_PASSPHRASE=bench XDG_CACHE_HOME=$W/cache

bash tests/fixtures-src/make-linux-disk.sh "$W/linux.raw" vmb-bench-ok
"$V" init "$W/repo" >/dev/null
"$V" backup "$W/repo" "$W/linux.raw" --vm linux >/dev/null
echo "disk: $(du -h --apparent-size "$W/linux.raw" | cut -f1), $(uname -r), $($QEMU --version | head -1), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| accelerator | run | vcpu | booted | to text s | total s | reason |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
accels="default tcg"
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then accels="default tcg kvm"; fi
for a in $accels; do
	for i in $(seq "$RUNS"); do
		args=()
		[ "$a" = default ] || args=(--vcpu "$a")
		"$V" verify "$W/repo" linux@latest --boot --runner qemu "${args[@]}" \
			--expect 'vmb-bench-ok: [0-9]' --timeout 120 --json >"$W/out" || true
		python3 - "$W/out" "$a" "$i" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1]))
m = re.search(r"after ([0-9.]+) s", d["reason"]) if d["booted"] else None
print("| %s | %s | %s | %s | %s | %.1f | %s |" % (sys.argv[2], sys.argv[3], d["vcpu"],
      "yes" if d["booted"] else "no", m.group(1) if m else "-", d["seconds"],
      d["reason"].replace("|", "\\|")))
PY
	done
done
for i in $(seq "$RUNS"); do
	t0=$(date +%s.%N)
	timeout 120 "$QEMU" -accel tcg -m 256 -nodefaults -display none -no-reboot \
		-drive file="$W/linux.raw",format=raw,if=ide,snapshot=on -serial stdio 2>/dev/null |
		grep -m1 -q vmb-bench-ok || true
	t1=$(date +%s.%N)
	echo "| qemu on the raw file, tcg | $i | tcg | yes | $(echo "$t1 - $t0" | bc | sed 's/^\./0./' | cut -c1-4) | - | reference, no repository |"
done
