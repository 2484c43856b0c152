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
finish
