#!/bin/bash
# Incremental backups per change source (issue 4): a 4 GiB image, full
# backup, then 0.1%, 1% and 10% of it changed (scattered 1 MiB writes, as
# a guest would), an incremental after each.  Sources: qcow2-bitmap
# (qcow2 image, writes through qemu-io), overlay (vmb snapshot create,
# then writes into the overlay), fingerprint (raw image), against borg and
# restic backing up the raw image.  Usage: bash bench/cbt.sh [SIZE_GIB]
set -euo pipefail
cd "$(dirname "$0")/.."
gib=${1:-4}
scripts/install-deps.sh build >/dev/null
for t in borg restic; do command -v $t >/dev/null || apt-get install -y -qq borgbackup restic >/dev/null; done
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DVMB_BUILD_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null
V=$PWD/build-bench/cli/vmb
W=${VMB_BENCH_DIR:-$PWD/bench/out/cbt}
rm -rf "$W"; mkdir -p "$W"
export VMB_PASSPHRASE=bench
export BORG_PASSPHRASE=bench RESTIC_PASSWORD=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
python3 - "$W/base.raw" $((gib * 1024)) <<'PY'
import os, sys
path, mib = sys.argv[1], int(sys.argv[2])
text = b"".join(b"%08d INFO request served in %d ms from 10.0.%d.%d\n" % (i, i % 97, i % 255, i % 7) for i in range(20000))
with open(path, "wb") as f:
    f.truncate(mib << 20)
    for i in range(mib):
        k = i % 10
        if k < 4: continue
        f.seek(i << 20)
        f.write(text[:1 << 20] if k < 7 else os.urandom(1 << 20))
PY
# change sets: offsets (MiB) for 0.1%, 1%, 10%, fixed seed, shared by all
python3 - "$W" $((gib * 1024)) <<'PY'
import random, sys
d, mib = sys.argv[1], int(sys.argv[2])
random.seed(42)
for name, frac in (("0.1", 0.001), ("1", 0.01), ("10", 0.10)):
    n = max(1, int(mib * frac))
    offs = random.sample(range(mib), n)
    open(f"{d}/change-{name}", "w").write("\n".join(map(str, offs)) + "\n")
PY
secs() { python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$@"; }
now() { date +%s.%N; }
change_raw() { # file set
	python3 - "$1" "$W/change-$2" <<'PY'
import os, sys
f = open(sys.argv[1], "r+b")
for o in open(sys.argv[2]).read().split():
    f.seek(int(o) << 20); f.write(os.urandom(1 << 20))
PY
}
change_qemu() { # image set
	local args=() o
	for o in $(cat "$W/change-$2"); do args+=(-c "write -P $((o % 250 + 1)) ${o}M 1M"); done
	qemu-io -f qcow2 "${args[@]}" "$1" >/dev/null
}
row() { echo "| $1 | $2 | $3 | $4 | $5 | $6 |"; }
echo "| source | change | seconds | bytes_read (MiB) | bytes_new (MiB) | cbt |"
echo "|---|---|---|---|---|---|"
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d[sys.argv[2]])" "$1" "$2"; }
mib() { python3 -c "print('%.1f' % (int('$1') / 1048576))"; }
vmb_run() { # label image change-fn
	local label=$1 img=$2 fn=$3 repo=$W/repo-$1
	export XDG_CACHE_HOME=$W/cache-$1
	"$V" init "$repo" >/dev/null
	"$V" backup "$repo" "$img" --vm b --json >"$W/$label-full.json"
	row "$label" "full" "$(field "$W/$label-full.json" seconds)" "$(mib "$(field "$W/$label-full.json" bytes_read)")" "$(mib "$(field "$W/$label-full.json" bytes_new)")" "$(field "$W/$label-full.json" cbt)"
	if [ "$label" = overlay ]; then "$V" snapshot create "$img" base >/dev/null; fi
	for c in 0.1 1 10; do
		$fn "$img" "$c"
		"$V" backup "$repo" "$img" --vm b --json 2>/dev/null >"$W/$label-$c.json"
		row "$label" "$c%" "$(field "$W/$label-$c.json" seconds)" "$(mib "$(field "$W/$label-$c.json" bytes_read)")" "$(mib "$(field "$W/$label-$c.json" bytes_new)")" "$(field "$W/$label-$c.json" cbt)"
		# the overlay source needs a frozen layer under each change
		if [ "$label" = overlay ]; then "$V" snapshot create "$img" "s$c" >/dev/null; fi
	done
}
only=${VMB_BENCH_ONLY:-fingerprint qcow2-bitmap overlay peers}
if [[ " $only " == *" fingerprint "* ]]; then
cp --sparse=always "$W/base.raw" "$W/fp.raw"
vmb_run fingerprint "$W/fp.raw" change_raw
fi
if [[ " $only " == *" qcow2-bitmap "* ]]; then
qemu-img convert -O qcow2 "$W/base.raw" "$W/bm.qcow2"
vmb_run qcow2-bitmap "$W/bm.qcow2" change_qemu
fi
if [[ " $only " == *" overlay "* ]]; then
qemu-img convert -O qcow2 "$W/base.raw" "$W/ov.qcow2"
vmb_run overlay "$W/ov.qcow2" change_qemu
fi
[[ " $only " == *" peers "* ]] || exit 0
# peers on the raw image
cp --sparse=always "$W/base.raw" "$W/peer.raw"
borg init -e repokey-blake2 "$W/borg" >/dev/null 2>&1
restic init -q -r "$W/restic" >/dev/null
t0=$(now); borg create --chunker-params fixed,4194304 --compression zstd,1 "$W/borg::full" "$W/peer.raw"; t1=$(now)
row borg full "$(secs $t0 $t1)" - - -
t0=$(now); restic -q -r "$W/restic" backup "$W/peer.raw" >/dev/null; t1=$(now)
row restic full "$(secs $t0 $t1)" - - -
for c in 0.1 1 10; do
	change_raw "$W/peer.raw" "$c"
	t0=$(now); borg create --chunker-params fixed,4194304 --compression zstd,1 "$W/borg::inc$c" "$W/peer.raw"; t1=$(now)
	row borg "$c%" "$(secs $t0 $t1)" - - -
	t0=$(now); restic -q -r "$W/restic" backup "$W/peer.raw" >/dev/null; t1=$(now)
	row restic "$c%" "$(secs $t0 $t1)" - - -
done
