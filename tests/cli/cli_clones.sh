# The classroom of clones (docs/cbt.md, "Pages like another snapshot's"):
# VMs whose disks are copies of one image, each with a few scattered 4 KiB
# changes, are stored as patches over the first one's chunks, page by page;
# every clone restores byte for byte, also after the reference VM is pruned
# and GC'd; a page map that was changed in the cache, a missing cache and a
# reference chunk that verify found damaged all fall back to whole chunks,
# never to wrong data.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"
command -v qemu-img >/dev/null || skip "qemu-img is needed"

R=$T/repo
BASE=$T/base.raw
MIB=1048576
# 24 MiB: text, random, a hole, random again
truncate -s $((24 * MIB)) "$BASE"
{ for i in $(seq 1 30000); do echo "line $i lorem ipsum dolor sit amet"; done; } |
	dd of="$BASE" bs=1M conv=notrunc status=none
head -c $((6 * MIB)) /dev/urandom | dd of="$BASE" bs=1M seek=8 conv=notrunc status=none
head -c $((4 * MIB)) /dev/urandom | dd of="$BASE" bs=1M seek=18 conv=notrunc status=none

# clone N: the base with 24 random 4 KiB pages rewritten, as VDI
clone() {
	cp --sparse=always "$BASE" "$T/pc$1.raw"
	python3 - "$T/pc$1.raw" "$1" <<'PY'
import os, random, sys
r = random.Random(int(sys.argv[2]))
with open(sys.argv[1], "r+b") as f:
    for _ in range(24):
        page = r.choice(list(range(0, 12 * 256)) + list(range(18 * 256, 22 * 256)))
        f.seek(page * 4096)
        f.write(os.urandom(4096))
PY
	qemu-img convert -f raw -O vdi "$T/pc$1.raw" "$T/pc$1.vdi"
}
stat_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

expect_exit 0 "init" "$VMB" init "$R"
for i in 1 2 3; do
	clone $i
	expect_exit 0 "backup of clone $i" "$VMB" backup "$R" "$T/pc$i.vdi" --vm pc$i --json -v
	cp "$T/out" "$T/b$i"
	cp "$T/err" "$T/e$i"
done
S1=$(stat_of "$T/b1" bytes_stored)
for i in 2 3; do
	N=$(stat_of "$T/b$i" bytes_new)
	S=$(stat_of "$T/b$i" bytes_stored)
	# 24 pages of its own and 24 of clone 1 differ from clone 1: at
	# most 48 * 4 KiB of new data (as patches over clone 1's chunks)
	check "clone $i: only the pages that differ are new ($N bytes)" test "$N" -le $((48 * 4096))
	check "clone $i: stored $S bytes, under 5% of the first clone's $S1" \
		test $((S * 20)) -lt "$S1"
	check "clone $i: the log names the reference" grep -q "compared page by page with snapshot" "$T/e$i"
done
for i in 1 2 3; do
	expect_exit 0 "restore clone $i" "$VMB" restore "$R" pc$i@latest --to "$T/r$i" --format raw
	check "clone $i restores byte for byte" cmp "$T/pc$i.raw" "$T/r$i/pc$i.img"
done
expect_exit 0 "check" "$VMB" check "$R"
expect_exit 0 "verify --data" "$VMB" verify "$R" --data

# the reference snapshot pruned (pc1 is now another disk altogether) and
# the unreferenced chunks collected: the clones' patches keep their bases
head -c $((24 * MIB)) /dev/urandom >"$T/other.raw"
wait_s=$(date +%s); while [ "$(date +%s)" = "$wait_s" ]; do sleep 0.1; done
expect_exit 0 "pc1 backs up another disk" "$VMB" backup "$R" "$T/other.raw" --vm pc1
expect_exit 0 "prune pc1's first snapshot" "$VMB" prune "$R" --vm pc1 --keep-last 1
expect_exit 0 "gc" "$VMB" gc "$R"
expect_exit 0 "check after gc" "$VMB" check "$R"
for i in 2 3; do
	rm -rf "$T/r$i"
	expect_exit 0 "restore clone $i after pc1 is gone" "$VMB" restore "$R" pc$i@latest --to "$T/r$i" --format raw
	check "clone $i still restores byte for byte" cmp "$T/pc$i.raw" "$T/r$i/pc$i.img"
done

# a page map changed in the cache (one fingerprint byte) is not used
MAPS=$XDG_CACHE_HOME/vmb/*/pages
for m in $MAPS/*; do
	python3 - "$m" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[-100] ^= 1
open(sys.argv[1], "wb").write(b)
PY
done
clone 4
expect_exit 0 "backup of clone 4 with changed page maps" "$VMB" backup "$R" "$T/pc4.vdi" --vm pc4 --json -v
cp "$T/out" "$T/b4"
check "changed maps are said to be unusable" grep -q "page map .* is not usable" "$T/err"
N=$(stat_of "$T/b4" bytes_new)
check "clone 4: whole chunks again ($N bytes new)" test "$N" -gt $((4 * MIB))
expect_exit 0 "restore clone 4" "$VMB" restore "$R" pc4@latest --to "$T/r4" --format raw
check "clone 4 restores byte for byte" cmp "$T/pc4.raw" "$T/r4/pc4.img"

# no cache at all (another host): whole chunks, right data
clone 5
XDG_CACHE_HOME=$T/cache2 expect_exit 0 "backup of clone 5 without a cache" "$VMB" backup "$R" "$T/pc5.vdi" --vm pc5 --json
N=$(stat_of "$T/out" bytes_new)
check "clone 5: whole chunks ($N bytes new)" test "$N" -gt $((4 * MIB))
expect_exit 0 "restore clone 5" "$VMB" restore "$R" pc5@latest --to "$T/r5" --format raw
check "clone 5 restores byte for byte" cmp "$T/pc5.raw" "$T/r5/pc5.img"

# a reference chunk that verify found damaged is never patched over:
# damage every chunk object, verify marks them, the next clone is stored
# whole (and so restores right once the damage is gone)
clone 6
for f in $(find "$R/chunks" -type f); do cp "$f" "$f.good"; done
python3 - "$R/chunks" <<'PY'
import os, sys
for d, _, fs in os.walk(sys.argv[1]):
    for f in fs:
        if f.endswith(".good"):
            continue
        p = os.path.join(d, f)
        b = bytearray(open(p, "rb").read())
        b[len(b) // 2] ^= 1
        open(p, "wb").write(b)
PY
expect_exit 3 "verify --data finds the damage" "$VMB" verify "$R" --data
expect_exit 0 "backup of clone 6 over damaged references" "$VMB" backup "$R" "$T/pc6.vdi" --vm pc6 --json
N=$(stat_of "$T/out" bytes_new)
check "clone 6: nothing patched over damaged chunks ($N bytes new)" test "$N" -gt $((8 * MIB))
for f in $(find "$R/chunks" -name '*.good'); do mv "$f" "${f%.good}"; done
expect_exit 0 "restore clone 6" "$VMB" restore "$R" pc6@latest --to "$T/r6" --format raw
check "clone 6 restores byte for byte" cmp "$T/pc6.raw" "$T/r6/pc6.img"
expect_exit 0 "check at the end" "$VMB" check "$R"

# Each chunk picks the reference it differs from least.  In a new
# repository: d1 rewrites 3 MiB of chunk 2 (so d2 stores that chunk whole
# again, as the base had it), d2 64 pages of chunk 4, d3 64 pages of
# chunk 5, d4 32 pages each of chunks 0 and 2.  Picking per chunk, d3
# takes d2's entry for chunk 2 and d1's for chunk 4 and stores its own 64
# pages only; d4 patches 32 pages over d2's chunk 2 and 32 over d1's
# chunk 0.  With one reference (d1) for every chunk, d4 would store
# chunk 2 whole again (4 MiB of random data: d1's change undone and d4's
# own pages; d3's whole chunk 2 happens to be d2's, deduplicated).
R2=$T/repo2
# d$1: the base with random bytes at the given 4 KiB pages or byte ranges
variant() {
	local name=$1
	shift
	cp --sparse=always "$BASE" "$T/$name.raw"
	python3 - "$T/$name.raw" "$@" <<'PY'
import os, random, sys
with open(sys.argv[1], "r+b") as f:
    for spec in sys.argv[2:]:
        kind, a, b = spec.split(":")
        if kind == "range":   # offset:length
            f.seek(int(a))
            f.write(os.urandom(int(b)))
        else:                 # pages:CHUNK:COUNT, distinct random pages
            r = random.Random(spec)
            for page in r.sample(range(1024), int(b)):
                f.seek(int(a) * 4 * 1048576 + page * 4096)
                f.write(os.urandom(4096))
PY
	qemu-img convert -f raw -O vdi "$T/$name.raw" "$T/$name.vdi"
}
variant d1 range:$((8 * MIB + MIB / 2)):$((3 * MIB))
variant d2 pages:4:64
variant d3 pages:5:64
variant d4 pages:0:32 pages:2:32
expect_exit 0 "init repo2" "$VMB" init "$R2"
for d in d1 d2 d3 d4; do
	expect_exit 0 "backup of $d" "$VMB" backup "$R2" "$T/$d.vdi" --vm $d --json -v
	cp "$T/out" "$T/b$d"
done
N=$(stat_of "$T/bd2" bytes_new)
check "d2: chunk 2 whole (d1 changed most of it) and 64 pages ($N bytes new)" \
	test "$N" -eq $((4 * MIB + 64 * 4096))
for d in d3 d4; do
	N=$(stat_of "$T/b$d" bytes_new)
	S=$(stat_of "$T/b$d" bytes_stored)
	check "$d: only its own 64 pages are new ($N bytes)" test "$N" -eq $((64 * 4096))
	check "$d: stored $S bytes, not chunk 2 again" test "$S" -lt $((64 * 4096 + 64 * 1024))
done
for d in d1 d2 d3 d4; do
	expect_exit 0 "restore $d" "$VMB" restore "$R2" $d@latest --to "$T/r$d" --format raw
	check "$d restores byte for byte" cmp "$T/$d.raw" "$T/r$d/$d.img"
done
expect_exit 0 "verify repo2 --data" "$VMB" verify "$R2" --data
# the references gone: d1 and d2 back up other disks, their first
# snapshots are pruned and GC'd; d3 and d4 keep their bases
for d in d1 d2; do
	head -c $((24 * MIB)) /dev/urandom >"$T/other-$d.raw"
	expect_exit 0 "$d backs up another disk" "$VMB" backup "$R2" "$T/other-$d.raw" --vm $d
	expect_exit 0 "prune $d's first snapshot" "$VMB" prune "$R2" --vm $d --keep-last 1
done
expect_exit 0 "gc repo2" "$VMB" gc "$R2"
expect_exit 0 "check repo2 after gc" "$VMB" check "$R2"
for d in d3 d4; do
	rm -rf "$T/r$d"
	expect_exit 0 "restore $d after its references are gone" "$VMB" restore "$R2" $d@latest --to "$T/r$d" --format raw
	check "$d still restores byte for byte" cmp "$T/$d.raw" "$T/r$d/$d.img"
done
finish
