#!/bin/bash
# Backup and restore throughput per storage target (issue 5): the same
# image to a local folder, S3 (s3rver on loopback) and NFSv3
# (nfs-ganesha on loopback).  Usage: bash bench/targets.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}
scripts/install-deps.sh test >/dev/null
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DVMB_BUILD_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null
V=$PWD/build-bench/cli/vmb
W=$(mktemp -d /tmp/vmbtargets.XXXXXX)
cleanup() { tests/services/s3.sh stop "$W/svc" >/dev/null 2>&1 || true
	tests/services/nfs.sh stop "$W/svc" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
export VMB_PASSPHRASE=bench
tests/services/s3.sh start "$W/svc" >/dev/null
tests/services/nfs.sh start "$W/svc" >/dev/null
set -a; . "$W/svc/env"; set +a
# a mixed image: 40% holes, 30% text-like, 30% random
python3 - "$W/disk.img" "$size" <<'PY'
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
printf '| target | full backup | MB/s | unchanged re-backup | restore | MB/s |\n|---|---|---|---|---|---|\n'
run() { # name url
	local name=$1 url=$2 t0 t1 t2 t3
	export XDG_CACHE_HOME=$W/cache-$name
	"$V" init "$url" >/dev/null
	t0=$(date +%s.%N); "$V" backup "$url" "$W/disk.img" --vm b --quiet
	t1=$(date +%s.%N); "$V" backup "$url" "$W/disk.img" --vm b --quiet
	t2=$(date +%s.%N); "$V" restore "$url" latest --to "$W/out-$name" --quiet
	t3=$(date +%s.%N)
	cmp "$W/disk.img" "$W/out-$name/disk.img"
	python3 -c "import sys; a,b,c,d,s=map(float,sys.argv[1:]); print('| %s | %.2f s | %.0f | %.2f s | %.2f s | %.0f |' % ('$name',b-a,s/(b-a),c-b,d-c,s/(d-c)))" "$t0" "$t1" "$t2" "$t3" "$size"
}
run local "$W/repo-local"
for t in ${VMB_BENCH_THREADS:-}; do VMB_THREADS=$t run "s3-threads$t" "$VMB_TEST_S3_URL/bench$t"; done
run s3 "$VMB_TEST_S3_URL/bench"
nfs=$VMB_TEST_NFS3_URL
run nfs3 "${nfs%%\?*}/bench?${nfs#*\?}"
# the S3 server's own ceiling: plain curl PUTs of 4 MiB objects, 8 in
# flight, nothing computed on the client
head -c 4M /dev/urandom >"$W/obj"
python3 - "$W" "$VMB_TEST_S3_PORT" "$VMB_TEST_S3_BUCKET" <<'PY'
import subprocess, sys, time
w, port, bucket = sys.argv[1:4]
n, par = 160, 8
t0 = time.time(); procs = []
for i in range(n):
    procs.append(subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-X", "PUT", "--data-binary", "@" + w + "/obj",
        "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "S3RVER:S3RVER", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        f"http://127.0.0.1:{port}/{bucket}/ceiling/o{i}"]))
    if len(procs) >= par: procs.pop(0).wait()
for p in procs: p.wait()
dt = time.time() - t0
print(f"\ns3rver ceiling (curl, {n} x 4 MiB PUTs, {par} in flight, no client work): {n * 4 / dt:.0f} MiB/s")
PY
for n in local s3 nfs3; do
	du -sm "$W/repo-local" >/dev/null 2>&1
done
echo "stored bytes per repository (MiB): local $(du -sm "$W/repo-local" | cut -f1)"
