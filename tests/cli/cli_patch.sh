# Sub-chunk incrementals (docs/cbt.md, "Patches"): when a qcow2 bitmap says
# only a few small ranges of a 4 MiB chunk changed, the backup reads just
# those ranges and stores a patch over the parent's chunk.
#  - scattered 4 KiB writes: bytes_read is exactly the dirty 4 KiB bitmap
#    bits (vmb's bitmaps have 4 KiB granularity up to 64 GiB disks), not
#    the 4 MiB chunks; restores (raw and qcow2, both restore paths)
#    equal `qemu-img convert -O raw` of the image at every snapshot;
#  - patches accumulate over backups (the new patch holds the union) until
#    half of the chunk changed, then the chunk is stored whole;
#  - writes into holes patch a zero base;
#  - check, verify --data, export (the snapshot disk reader), prune + gc
#    keep what patches need;
#  - a lost patch object or base chunk is named by check and verify, and a
#    restore fails with one line instead of writing wrong data.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null ||
	skip "qemu-img and qemu-io are needed"

R=$T/repo
IMG=$T/vm.qcow2
KiB=1024
MiB=1048576
stat_ok() { # stat_ok FILE PYTHON-EXPR (d = the command's JSON)
	python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
if not eval(sys.argv[2]):
    print(d, file=sys.stderr); sys.exit(1)
PY
}
same_raw() { # same_raw SNAP RAW DESC [FORMAT]
	rm -rf "$T/rs"
	if "$VMB" restore "$R" "$1" --to "$T/rs" --format "${4:-raw}" >/dev/null 2>"$T/rerr" &&
		qemu-img compare -q "$T/rs/"* "$2" >/dev/null 2>&1; then ok "$3"
	else bad "$3: $(cat "$T/rerr")"; fi
}
scatter() { # scatter SEED COUNT: 4 KiB writes of random bytes at 4 KiB-aligned offsets
	python3 - "$T/w.bin" "$1" "$2" <<'PY'
import random, sys
rnd = random.Random(int(sys.argv[2]))
n = int(sys.argv[3])
offs = sorted(rnd.sample(range((256 << 20) // 4096), n))
open(sys.argv[1], "wb").write(rnd.randbytes(4096))
print("\n".join(str(o * 4096) for o in offs))
PY
}
apply_writes() { # apply_writes OFFSETS...: qemu-io writes of w.bin
	local args=() o
	for o in "$@"; do args+=(-c "write -s $T/w.bin $o 4k"); done
	qemu-io -f qcow2 "${args[@]}" "$IMG" >/dev/null
}
snap_raw() { qemu-img convert -O raw "$IMG" "$1"; }

# 256 MiB: 64 MiB random, a 32 MiB hole, 64 MiB text-like, the rest holes
python3 - "$T/src.raw" <<'PY'
import random, sys
r = random.Random(7)
with open(sys.argv[1], "wb") as f:
    f.truncate(256 << 20)
    f.write(r.randbytes(64 << 20))
    f.seek(96 << 20)
    line = b"".join(b"%08d GET /api/v1/items/%d 200 %dms\n" % (i, r.randrange(10**6), r.randrange(900)) for i in range(40000))
    for _ in range(64 << 20 // len(line) + 1):
        if f.tell() >= 160 << 20: break
        f.write(line[: (160 << 20) - f.tell()])
PY
qemu-img convert -f raw -O qcow2 "$T/src.raw" "$IMG"
expect_exit 0 "init" "$VMB" init "$R"
expect_exit 0 "full backup" "$VMB" backup "$R" "$IMG" --vm vm --json
(cd "$R" && find chunks -type f | sort) >"$T/full-chunks"

# round 1: 48 scattered 4 KiB writes (data, holes, text)
mapfile -t W1 < <(scatter 1 48)
apply_writes "${W1[@]}"
snap_raw "$T/s1.raw"
expect_exit 0 "incremental after 48 scattered 4 KiB writes" "$VMB" backup "$R" "$IMG" --vm vm --json
cp "$T/out" "$T/b1"
check "round 1: qcow2-bitmap, bytes_read = 48 x 4 KiB (not 4 MiB chunks)" \
	stat_ok "$T/b1" 'd["cbt"] == "qcow2-bitmap" and d["bytes_read"] == 48 * 4096'
# (every write stores the same 4 KiB, so one-write patches dedup)
check "round 1: 0 < bytes_new <= 48 x 4 KiB" stat_ok "$T/b1" '0 < d["bytes_new"] <= 48 * 4096'
same_raw latest "$T/s1.raw" "round 1 restores (raw, workers write directly)"
same_raw latest "$T/s1.raw" "round 1 restores (qcow2, ordered writer)" qcow2
qemu-img check -q "$T/rs/"*.qcow2 >/dev/null 2>&1 && ok "round 1 qcow2 restore passes qemu-img check" ||
	bad "qemu-img check of the qcow2 restore"

# round 2: more scattered writes; patches hold the union of both rounds
mapfile -t W2 < <(scatter 2 48)
apply_writes "${W2[@]}"
snap_raw "$T/s2.raw"
expect_exit 0 "second incremental" "$VMB" backup "$R" "$IMG" --vm vm --json
cp "$T/out" "$T/b2"
check "round 2: bytes_read covers both rounds' ranges in touched chunks only" \
	stat_ok "$T/b2" 'd["cbt"] == "qcow2-bitmap" and 48 * 4096 <= d["bytes_read"] <= 96 * 4096'
same_raw latest "$T/s2.raw" "round 2 restores"
S1=$("$VMB" snapshots "$R" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[1]["id"])')
same_raw "$S1" "$T/s1.raw" "round 1 snapshot still restores as it was"

# round 3: 3 MiB rewritten inside one chunk (more than half): stored whole
qemu-io -f qcow2 -c "write -P 0x5a 9M 3M" "$IMG" >/dev/null
snap_raw "$T/s3.raw"
expect_exit 0 "third incremental" "$VMB" backup "$R" "$IMG" --vm vm --json
cp "$T/out" "$T/b3"
check "round 3: the big change reads its whole chunk" \
	stat_ok "$T/b3" 'd["bytes_read"] == 4 * 1048576'
same_raw latest "$T/s3.raw" "round 3 restores"

expect_exit 0 "check" "$VMB" check "$R"
expect_exit 0 "verify --data" "$VMB" verify "$R" --data --json
# export reads the snapshot through the snapshot disk reader (any offset)
expect_exit 0 "export of a patched snapshot" "$VMB" export "$R" latest "$T/x.tar" --no-encrypt
mkdir -p "$T/x" && tar -xSf "$T/x.tar" -C "$T/x" 2>/dev/null
check "the exported disk equals the image" qemu-img compare -q "$T/x/vm.qcow2" "$T/s3.raw"

# retention: only the newest snapshot kept; gc must keep patch bases
expect_exit 0 "prune --keep-last 1" "$VMB" prune "$R" --keep-last 1
expect_exit 0 "gc" "$VMB" gc "$R"
expect_exit 0 "check after gc" "$VMB" check "$R"
same_raw latest "$T/s3.raw" "the newest snapshot restores after prune + gc"

# damage: the patch objects are the chunks round 3 did not write whole.
# Remove one object a patch entry names: check and verify name it, a
# restore fails with one line.
PATCHID=$(python3 - "$R" "$T/full-chunks" <<'PY'
import os, sys
# chunk files the full backup did not write: patches and round 3's whole
# chunk; the smallest is a patch (a few 64 KiB runs)
old = set(open(sys.argv[2]).read().split())
files = [os.path.relpath(os.path.join(d, f), sys.argv[1])
         for d, _, fs in os.walk(sys.argv[1] + "/chunks") for f in fs]
files = [f for f in files if f not in old]
files.sort(key=lambda f: os.path.getsize(os.path.join(sys.argv[1], f)))
print(os.path.join(sys.argv[1], files[0]))
PY
)
mv "$PATCHID" "$T/saved-object"
expect_exit 3 "check with a lost patch object: a fault found" "$VMB" check "$R"
check "check names the lost patch chunk" grep -q "^problem: .*patch chunk .* is missing" "$T/out"
rm -rf "$T/rs"
expect_exit 3 "restore with a lost patch object: damaged data" "$VMB" restore "$R" latest --to "$T/rs" --format raw
one_line "restore with a lost patch object"
check "the error names the patch and its offset" grep -q "patch for offset [0-9]*: .* is missing" "$T/err"
check "no half-written disk left behind" test ! -e "$T/rs/vm.img"
expect_exit 3 "verify --data with a lost patch object" "$VMB" verify "$R" --data
check "verify names the offset" grep -q "offset\|missing" "$T/out" "$T/err"
mv "$T/saved-object" "$PATCHID"
same_raw latest "$T/s3.raw" "restores again once the object is back"
finish
