# Both sealing ciphers end to end (init --cipher, backup, restore byte for
# byte, verify --data, a flipped chunk byte caught with exit 3), an
# AES-256-GCM repository opened where the primitive is forced off (one
# line, exit 1), and a repository from before the cipher choice (no
# "cipher" member, version 1) that still reads as XChaCha20-Poly1305.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"

IMG=$T/disk.img
# 24 MiB: text, random, a hole, zeros
truncate -s $((24 * 1048576)) "$IMG"
{ for i in $(seq 1 20000); do echo "line $i lorem ipsum dolor"; done; } |
	dd of="$IMG" bs=1M seek=0 conv=notrunc status=none
head -c $((6 * 1048576)) /dev/urandom | dd of="$IMG" bs=1M seek=8 conv=notrunc status=none
dd if=/dev/zero of="$IMG" bs=1M seek=16 count=2 conv=notrunc status=none

flip_chunk() { # flip one byte in the middle of the largest chunk of $1
	python3 - "$1" <<'PY'
import os, sys
best = max((os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1] + "/chunks")
            for f in fs), key=os.path.getsize)
b = bytearray(open(best, "rb").read())
b[len(b) // 2] ^= 0x01
open(best, "wb").write(b)
print(best)
PY
}

roundtrip() { # roundtrip CIPHER EXPECTED-CONFIG-VERSION
	local c=$1 ver=$2 R=$T/repo-$1
	expect_exit 0 "$c: init" "$VMB" init "$R" --cipher "$c" --chunk-size 1M --json
	check "$c: init --json names the cipher" test "$(json_field "$T/out" cipher)" = "$c"
	check "$c: config records the cipher" test "$(json_field "$R/config" cipher)" = "$c"
	check "$c: config version $ver" test "$(json_field "$R/config" vmbackup_repository)" = "$ver"
	expect_exit 0 "$c: backup" "$VMB" backup "$R" "$IMG" --vm v
	expect_exit 0 "$c: restore" "$VMB" restore "$R" latest --to "$T/out-$c"
	check "$c: restored byte for byte" cmp "$IMG" "$T/out-$c/disk.img"
	expect_exit 0 "$c: verify --data" "$VMB" verify "$R" --data
	expect_exit 0 "$c: check" "$VMB" check "$R" --json
	check "$c: check --json names the cipher" test "$(json_field "$T/out" cipher)" = "$c"
	# the header byte 7 names the cipher of each sealed object
	check "$c: chunks carry the cipher byte" python3 - "$R" "$c" <<'PY'
import os, sys
want = 1 if sys.argv[2] == "aes256gcm" else 0
n = 0
for d, _, fs in os.walk(sys.argv[1] + "/chunks"):
    for f in fs:
        b = open(os.path.join(d, f), "rb").read(16)
        assert b[:4] == b"VMBK" and b[6] & 2 and b[7] == want, (f, b)
        n += 1
assert n >= 7, n
PY
	cp -a "$R" "$R.bad"
	flip_chunk "$R.bad" >/dev/null
	expect_exit 3 "$c: verify --data finds the flipped byte" "$VMB" verify "$R.bad" --data
	expect_exit 3 "$c: restore refuses the flipped chunk" "$VMB" restore "$R.bad" latest --to "$T/bad-$c"
	one_line "$c: flipped chunk"
}

roundtrip xchacha20poly1305 1
if "$VMB" init "$T/probe" --cipher aes256gcm --encryption repokey >/dev/null 2>&1; then
	roundtrip aes256gcm 2
	expect_exit 0 "auto picks AES-256-GCM here" "$VMB" init "$T/auto" --json
	check "auto -> aes256gcm" test "$(json_field "$T/out" cipher)" = aes256gcm

	# an AES-GCM repository where the primitive is missing: refused, one line
	expect_exit 1 "AES-GCM repository, primitive off: snapshots" \
		env VMB_TEST_NO_AESGCM=1 "$VMB" snapshots "$T/repo-aes256gcm"
	one_line "AES-GCM repository without AES-GCM"
	check "names AES-256-GCM" grep -q "AES-256-GCM" "$T/err"
	expect_exit 1 "AES-GCM repository, primitive off: restore" \
		env VMB_TEST_NO_AESGCM=1 "$VMB" restore "$T/repo-aes256gcm" latest --to "$T/off"
	one_line "restore without AES-GCM"
	check "nothing restored without AES-GCM" test ! -e "$T/off/disk.img"
	# the XChaCha20 repository does not care
	expect_exit 0 "XChaCha20 repository, AES-GCM off: verify --data" \
		env VMB_TEST_NO_AESGCM=1 "$VMB" verify "$T/repo-xchacha20poly1305" --data
else
	echo "# this CPU has no AES-NI/PCLMUL: only the refusal is tested"
fi
# forced off: auto falls back, an explicit aes256gcm is refused
expect_exit 0 "auto without AES-GCM" env VMB_TEST_NO_AESGCM=1 "$VMB" init "$T/auto2" --json
check "auto -> xchacha20poly1305 without AES-GCM" \
	test "$(json_field "$T/out" cipher)" = xchacha20poly1305
expect_exit 1 "init --cipher aes256gcm without AES-GCM" \
	env VMB_TEST_NO_AESGCM=1 "$VMB" init "$T/aes-off" --cipher aes256gcm
one_line "init without AES-GCM"
check "nothing created" test ! -e "$T/aes-off/config"
expect_exit 2 "unknown cipher" "$VMB" init "$T/x" --cipher rot13

# a repository from before the cipher choice: no "cipher" member
R=$T/old
expect_exit 0 "old: init" "$VMB" init "$R" --cipher xchacha20poly1305
python3 - "$R/config" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
del d["cipher"]
d["vmbackup_repository"] = 1
open(sys.argv[1], "w").write(json.dumps(d) + "\n")
PY
check "old: config has no cipher" python3 -c "import json,sys; assert 'cipher' not in json.load(open(sys.argv[1]))" "$R/config"
expect_exit 0 "old: backup" "$VMB" backup "$R" "$IMG" --vm v
expect_exit 0 "old: restore" env VMB_TEST_NO_AESGCM=1 "$VMB" restore "$R" latest --to "$T/out-old"
check "old: restored byte for byte" cmp "$IMG" "$T/out-old/disk.img"
expect_exit 0 "old: check" "$VMB" check "$R" --json
check "old: reads as xchacha20poly1305" test "$(json_field "$T/out" cipher)" = xchacha20poly1305
# and its chunks are readable by the XChaCha20 repository's key layout
# before this change: header byte 7 is 0
check "old: chunks have byte 7 = 0" python3 - "$R" <<'PY'
import os, sys
for d, _, fs in os.walk(sys.argv[1] + "/chunks"):
    for f in fs:
        assert open(os.path.join(d, f), "rb").read(8)[7] == 0
PY
finish
