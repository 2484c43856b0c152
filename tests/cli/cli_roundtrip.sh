# Backup and restore through vmb are byte-identical; an unchanged second
# backup reads the same (allocated) bytes and stores nothing new; an
# encrypted repository does not leak the image's contents.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"

R=$T/repo
IMG=$T/disk0.img
MARKER="VMB-PLAINTEXT-MARKER-$$-a1b2c3d4e5"

# 64 MiB raw image: holes, text (with a marker), random, allocated zeros,
# a repeated block, a short tail.
truncate -s $((64 * 1048576 + 4321)) "$IMG"
{ for i in $(seq 1 4000); do echo "line $i: $MARKER lorem ipsum dolor sit amet"; done; } |
	dd of="$IMG" bs=65536 seek=1 conv=notrunc status=none
head -c 3145728 /dev/urandom >"$T/rnd"
dd if="$T/rnd" of="$IMG" bs=1M seek=10 conv=notrunc status=none
dd if="$T/rnd" of="$IMG" bs=1M seek=40 count=1 conv=notrunc status=none
dd if=/dev/zero of="$IMG" bs=1M seek=20 count=2 conv=notrunc status=none
printf '%s' "$MARKER" | dd of="$IMG" bs=1 seek=$((64 * 1048576 + 100)) conv=notrunc status=none
SIZE=$(stat -c %s "$IMG")
ALLOC=$(( $(stat -c %b "$IMG") * $(stat -c %B "$IMG") ))

expect_exit 0 "init" "$VMB" init "$R" --chunk-size 256K
expect_exit 0 "first backup" "$VMB" backup "$R" "$IMG" --vm rt --json
cp "$T/out" "$T/b1"
# touched: fresh timestamps are never trusted, so the unchanged data is
# read again and matched by fingerprint (untouched files: cli_unchanged.sh)
touch "$IMG"
expect_exit 0 "second backup" "$VMB" backup "$R" "$IMG" --vm rt --json
cp "$T/out" "$T/b2"
check "backup stats" python3 - "$T/b1" "$T/b2" "$SIZE" "$ALLOC" <<'PY'
import json, sys
b1, b2 = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
size, alloc = int(sys.argv[3]), int(sys.argv[4])
for b in (b1, b2):
    assert b["bytes_total"] == size, b
    assert 0 < b["bytes_read"] <= alloc, (b, alloc)
    assert b["bytes_read"] < b["bytes_total"], b
    assert b["chunks_total"] == (size + 262143) // 262144, b
assert b1["bytes_new"] > 3 * 1048576, b1          # text + random
assert b1["chunks_new"] >= 13, b1
assert b1["bytes_stored"] > 3 * 1048576, b1       # random data stays big
assert b2["bytes_new"] == 0 and b2["chunks_new"] == 0, b2
assert b2["bytes_read"] == b1["bytes_read"], (b1, b2)
assert b1["cbt"] == "none" and b2["cbt"] == "fingerprint", (b1, b2)
# the second backup stores only its index/manifest: a few KiB at most
assert b2["bytes_stored"] < 64 * 1024, b2
PY
S1=$(json_field "$T/b1" snapshot)
S2=$(json_field "$T/b2" snapshot)

expect_exit 0 "restore first" "$VMB" restore "$R" "$S1" --to "$T/r1"
check "first snapshot restores byte-identically" cmp "$IMG" "$T/r1/disk0.img"
expect_exit 0 "restore second" "$VMB" restore "$R" "$S2" --to "$T/r2"
check "second snapshot restores byte-identically" cmp "$IMG" "$T/r2/disk0.img"
RALLOC=$(( $(stat -c %b "$T/r2/disk0.img") * 512 ))
check "the restored image is sparse" test "$RALLOC" -lt $((16 * 1048576))

# change one block: the next backup adds about one chunk
printf 'changed!' | dd of="$IMG" bs=1 seek=$((10 * 1048576 + 7)) conv=notrunc status=none
expect_exit 0 "third backup" "$VMB" backup "$R" "$IMG" --vm rt --json
# one new object, and only the changed 4 KiB page of its chunk in it:
# the page map of the last backup says which pages differ (docs/cbt.md)
check "one changed chunk, stored as its one changed page" python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
assert d["chunks_new"] == 1 and d["bytes_new"] == 4096, d' "$T/out"
expect_exit 0 "restore latest" "$VMB" restore "$R" rt@latest --to "$T/r3"
check "changed image restores byte-identically" cmp "$IMG" "$T/r3/disk0.img"
check "the images differ now" test "$(cmp "$IMG" "$T/r1/disk0.img" | wc -l)" = 1
expect_exit 0 "restore first again" "$VMB" restore "$R" "$S1" --to "$T/r4"
check "older snapshot still restores the old bytes" cmp "$T/r1/disk0.img" "$T/r4/disk0.img"

# nothing of the image shows in an encrypted repository
check "marker is in the image" grep -q -a "$MARKER" "$IMG"
check "marker is not in the encrypted repository" test -z "$(grep -r -l -a "$MARKER" "$R")"
check "random data is not stored in the clear" python3 - "$T/rnd" "$R" <<'PY'
import os, sys
probe = open(sys.argv[1], "rb").read()[123456:123456 + 64]
for root, _, files in os.walk(sys.argv[2]):
    for f in files:
        assert probe not in open(os.path.join(root, f), "rb").read(), f
PY
expect_exit 0 "check" "$VMB" check "$R"

# an unencrypted repository needs no passphrase
RN=$T/repo-none
expect_exit 0 "init --encryption none" env -u VMB_PASSPHRASE "$VMB" init "$RN" --encryption none </dev/null
expect_exit 0 "backup, no passphrase" env -u VMB_PASSPHRASE "$VMB" backup "$RN" "$IMG" --json </dev/null
cp "$T/out" "$T/bn"
check "unencrypted backup stores data" python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
assert d["chunks_new"] > 0 and d["bytes_new"] > 0, d' "$T/bn"
expect_exit 0 "restore, no passphrase" env -u VMB_PASSPHRASE "$VMB" restore "$RN" latest --to "$T/rn" </dev/null
check "unencrypted round trip is byte-identical" cmp "$IMG" "$T/rn/disk0.img"
expect_exit 0 "check, no passphrase" env -u VMB_PASSPHRASE "$VMB" check "$RN" </dev/null

finish
