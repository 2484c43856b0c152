#!/bin/bash
# Reading speed of the native qcow2 reader (issue 3): restore to raw of a
# 1 GiB qcow2 backup against `qemu-img convert -O raw` of the same image,
# plus backup (a full read) of the qcow2.  Usage: bash bench/formats.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build >/dev/null
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DVMB_BUILD_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null
V=$PWD/build-bench/cli/vmb
W=$(mktemp -d /tmp/vmbfmt.XXXXXX)
trap 'rm -rf "$W"' EXIT
export VMB_PASSPHRASE=bench VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608 XDG_CACHE_HOME=$W/cache
python3 - "$W/src.raw" 1024 <<'PY'
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
qemu-img convert -f raw -O qcow2 "$W/src.raw" "$W/src.qcow2"
"$V" init "$W/repo" >/dev/null
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); python3 -c "print('%.2f' % ($e - $s))"; }
sync
best() { local b=999 x; for i in 1 2 3; do rm -rf "$W/o" "$W/q.raw"; x=$(t "$@"); b=$(python3 -c "print(min($b,$x))"); done; echo "$b"; }
qi=$(best qemu-img convert -O raw "$W/src.qcow2" "$W/q.raw")
bk=$(t "$V" backup "$W/repo" "$W/src.qcow2" --full)
rs=$(best "$V" restore "$W/repo" latest --to "$W/o" --format raw)
rm -rf "$W/o"; "$V" restore "$W/repo" latest --to "$W/o" --format raw >/dev/null
cmp "$W/o/src.img" "$W/src.raw"
echo "| 1 GiB qcow2 (40% holes, 30% text, 30% random) | seconds (best of 3) |"
echo "|---|---|"
echo "| qemu-img convert -O raw | $qi |"
echo "| vmb restore --format raw (from an encrypted repository) | $rs |"
echo "| vmb backup (full read of the qcow2, encrypted) | $bk |"
