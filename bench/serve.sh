#!/bin/bash
# vmb serve against qemu-nbd serving the same qcow2 (issue 17).  A 1 GiB
# image from bench/gen.c (~40% holes, text and random data, nothing
# dedups), as qcow2; it is backed up into an encrypted repository (default
# 4 MiB chunks) and then
#   ttfb     time from starting the server to the first 4 KiB of data
#            read back (the client retries until the socket answers)
#   copy     nbdcopy of the whole export to null: (sequential, holes
#            skipped by block status): cold = first copy after the server
#            started, warm = a second copy through the same server
#   random   2000 random 4 KiB reads inside the first 64 MiB, twice
#            (second pass: vmb serve answers from its chunk cache)
# The page cache is warm for both (the repository's and the image's files
# were just written/read), so "cold" means the server's own state.  Best
# of $RUNS (default 3).  Run under flock /tmp/vmb-bench.lock.
#   Usage: flock /tmp/vmb-bench.lock bash bench/serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DVMB_BUILD_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null
V=$PWD/build-bench/cli/vmb
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
W=$(mktemp -d /tmp/vmbserve.XXXXXX)
SPID=
trap '[ -n "$SPID" ] && kill $SPID 2>/dev/null; rm -rf "$W"' EXIT
export VMB_PASSPHRASE=bench XDG_CACHE_HOME=$W/cache
PY=
for p in python3 /usr/bin/python3; do
	"$p" -c 'import nbd' 2>/dev/null && { PY=$p; break; }
done
[ -n "$PY" ] || { echo "python3-libnbd is needed" >&2; exit 1; }

cc -O2 -o "$W/gen" bench/gen.c
"$W/gen" create "$W/d.raw" "$SIZE_MIB" 1 >/dev/null 2>&1
qemu-img convert -f raw -O qcow2 "$W/d.raw" "$W/d.qcow2"
rm "$W/d.raw"
"$V" init "$W/repo" >/dev/null
"$V" backup "$W/repo" "$W/d.qcow2" --vm bench >/dev/null
# the first data offset (ttfb reads there)
DOFF=$(qemu-img map --output=json "$W/d.qcow2" | python3 -c '
import json, sys
print(next(e["start"] for e in json.load(sys.stdin) if e["data"]))')

cat >"$W/ttfb.py" <<'PY'
import nbd, sys, time
t0 = float(sys.argv[2])
while True:
    try:
        h = nbd.NBD(); h.connect_uri(sys.argv[1]); break
    except nbd.Error:
        time.sleep(0.001)
h.pread(4096, int(sys.argv[3]))
print("%.3f" % (time.time() - t0))
PY
cat >"$W/rand.py" <<'PY'
import nbd, random, sys, time
h = nbd.NBD(); h.connect_uri(sys.argv[1])
r = random.Random(7)
offs = [r.randrange(0, 64 << 20, 4096) for _ in range(2000)]
out = []
for _ in range(2):
    t = time.time()
    for o in offs:
        h.pread(4096, o)
    out.append("%.3f" % (time.time() - t))
print(" ".join(out))
PY

S=$W/s.sock
start_vmb() { "$V" serve "$W/repo" bench@latest --disk 0 --socket "$S" >/dev/null 2>&1 & SPID=$!; }
start_qnbd() { qemu-nbd -r -t -f qcow2 -x d --socket="$S" "$W/d.qcow2" & SPID=$!; }
stop() { kill $SPID; wait $SPID 2>/dev/null || true; SPID=; rm -f "$S"; }
wait_up() { for _ in $(seq 200); do [ -S "$S" ] && return; sleep 0.01; done; }
secs() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }
best() { sort -n | head -1; }

echo "$(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), ${SIZE_MIB} MiB image, best of $RUNS"
echo "| server | ttfb s | copy cold s | copy warm s | MiB/s warm | 2000 random 4K reads, 1st / 2nd pass s |"
echo "| --- | --- | --- | --- | --- | --- |"
for srv in vmb qnbd; do
	name=$([ $srv = vmb ] && echo "vmb serve" || echo "qemu-nbd -r")
	uri="nbd+unix:///d?socket=$S" # both export the disk as "d"
	tt=() cold=() warm=() rnd=()
	for _ in $(seq "$RUNS"); do
		t0=$(date +%s.%N)
		start_$srv
		tt+=("$("$PY" "$W/ttfb.py" "$uri" "$t0" "$DOFF")")
		cold+=("$(secs nbdcopy "$uri" null:)")
		warm+=("$(secs nbdcopy "$uri" null:)")
		stop
		start_$srv; wait_up
		rnd+=("$("$PY" "$W/rand.py" "$uri")")
		stop
	done
	bt=$(printf '%s\n' "${tt[@]}" | best)
	bc=$(printf '%s\n' "${cold[@]}" | best)
	bw=$(printf '%s\n' "${warm[@]}" | best)
	br=$(printf '%s\n' "${rnd[@]}" | sort -n | head -1)
	mbs=$(python3 -c "print('%.0f' % ($SIZE_MIB / max($bw, 0.001)))")
	echo "| $name | $bt | $bc | $bw | $mbs | ${br/ / \/ } |"
done
# the goal: a sequential read through vmb serve at least as fast as a restore
rs=()
for _ in $(seq "$RUNS"); do
	rm -rf "$W/r"
	rs+=("$(secs "$V" restore "$W/repo" bench@latest --to "$W/r" --format raw --no-sync)")
done
echo
echo "vmb restore --format raw --no-sync of the same snapshot: $(printf '%s\n' "${rs[@]}" | best) s"
