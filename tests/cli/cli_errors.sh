# Failures through vmb: the right exit code (1 error, 3 damaged data), one
# "vmb: ..." line on stderr, and never a wrong or partial restored image;
# without a loadable libcurl, s3: repositories fail with one line.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"

BASE=$T/base
IMG=$T/a.img
IMG2=$T/b.img
truncate -s 4M "$IMG"
head -c 1048576 /dev/urandom | dd of="$IMG" bs=64K seek=2 conv=notrunc status=none
yes "some text for the second half of the disk" | head -c 500000 |
	dd of="$IMG" bs=64K seek=40 conv=notrunc status=none
truncate -s 2M "$IMG2"
head -c 300000 /dev/urandom | dd of="$IMG2" bs=64K seek=1 conv=notrunc status=none

expect_exit 0 "init" "$VMB" init "$BASE" --chunk-size 64K
expect_exit 0 "backup a" "$VMB" backup "$BASE" "$IMG" --vm va --json
SA=$(json_field "$T/out" snapshot)
(cd "$BASE" && find chunks -type f | sort) >"$T/a_chunks"
expect_exit 0 "backup b" "$VMB" backup "$BASE" "$IMG2" --vm vb --json
SB=$(json_field "$T/out" snapshot)

fresh() { rm -rf "$T/r"; cp -a "$BASE" "$T/r"; }
nsnap() { "$VMB" snapshots "$1" --json 2>/dev/null |
	python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
# a chunk that only snapshot a uses (stored before b was backed up)
chunk_of_a() { echo "$1/$(sed -n 3p "$T/a_chunks")"; }
flip_middle() {
	python3 - "$1" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x20
open(p, "wb").write(b)
PY
}
no_image() { # no_image DIR
	check "$2: no image left behind" test -z "$(find "$1" -type f 2>/dev/null)"
}

# ---- passphrase and repository ----
expect_exit 1 "wrong passphrase" env VMB_PASSPHRASE=not-it "$VMB" snapshots "$BASE"
one_line "wrong passphrase"
check "says the passphrase is wrong" grep -qi passphrase "$T/err"
expect_exit 1 "backup with a wrong passphrase" env VMB_PASSPHRASE=not-it "$VMB" backup "$BASE" "$IMG"
one_line "backup with a wrong passphrase"
check "no snapshot added" test "$(nsnap "$BASE")" = 2
for cmd in snapshots check; do
	expect_exit 1 "$cmd: missing repository" "$VMB" $cmd "$T/no-such-repo"
	one_line "$cmd: missing repository"
	check "$cmd: names the repository" grep -q no-such-repo "$T/err"
done
expect_exit 1 "backup: missing repository" "$VMB" backup "$T/no-such-repo" "$IMG"
one_line "backup: missing repository"
expect_exit 1 "restore: missing repository" "$VMB" restore "$T/no-such-repo" latest --to "$T/o0"
one_line "restore: missing repository"
check "nothing created for a missing repository" test ! -e "$T/no-such-repo"
mkdir -p "$T/empty-dir"
expect_exit 1 "an empty folder is no repository" "$VMB" snapshots "$T/empty-dir"
one_line "empty folder"

# ---- sources ----
expect_exit 1 "nonexistent source" "$VMB" backup "$BASE" "$T/no-such.img"
one_line "nonexistent source"
check "names the source" grep -q no-such.img "$T/err"
expect_exit 1 "one good, one nonexistent source" "$VMB" backup "$BASE" "$IMG" "$T/no-such.img"
one_line "one good, one nonexistent source"
check "still 2 snapshots" test "$(nsnap "$BASE")" = 2
head -c 700000 /dev/urandom >"$T/garbage.bin"
expect_exit 0 "random bytes back up as a raw image" "$VMB" backup "$T/base" "$T/garbage.bin" --json
check "garbage source is raw" test "$("$VMB" snapshots "$BASE" --vm garbage --json |
	python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["disks"][0]["format"])')" = raw
expect_exit 0 "restore the garbage" "$VMB" restore "$BASE" garbage@latest --to "$T/og"
check "garbage round trip" cmp "$T/garbage.bin" "$T/og/garbage.img"

# ---- damaged chunks: restore exits 3, no image, one line ----
fresh
C=$(chunk_of_a "$T/r")
truncate -s $(( $(stat -c %s "$C") / 2 )) "$C"
expect_exit 3 "restore with a truncated chunk" "$VMB" restore "$T/r" "$SA" --to "$T/o1"
one_line "truncated chunk"
no_image "$T/o1" "truncated chunk"
expect_exit 0 "the other snapshot still restores" "$VMB" restore "$T/r" "$SB" --to "$T/o1b"
check "other snapshot intact" cmp "$IMG2" "$T/o1b/b.img"

fresh
C=$(chunk_of_a "$T/r")
truncate -s 0 "$C"
expect_exit 3 "restore with an empty chunk" "$VMB" restore "$T/r" "$SA" --to "$T/o2"
one_line "empty chunk"
no_image "$T/o2" "empty chunk"

fresh
C=$(chunk_of_a "$T/r")
flip_middle "$C"
expect_exit 3 "restore with a bit-flipped chunk" "$VMB" restore "$T/r" "$SA" --to "$T/o3"
one_line "flipped chunk"
check "says which chunk" grep -q "$(basename "$C" | cut -c1-16)" "$T/err"
no_image "$T/o3" "flipped chunk"
expect_exit 3 "restore --format raw with a flipped chunk" "$VMB" restore "$T/r" va@latest --to "$T/o3b" --format raw --threads 1
no_image "$T/o3b" "flipped chunk, one thread"

# ---- damaged manifest ----
fresh
M=$T/r/snapshots/$SA
check "manifest file exists" test -f "$M"
truncate -s $(( $(stat -c %s "$M") - 7 )) "$M"
expect_exit_1_or_3() { # like expect_exit, for "1 or 3"
	local d=$1; shift
	"$@" >"$T/out" 2>"$T/err"
	local got=$?
	if [ "$got" = 1 ] || [ "$got" = 3 ]; then ok "$d (exit $got)"
	else bad "$d: exit $got, want 1 or 3; stderr: $(head -c 500 "$T/err")"; fi
}
expect_exit_1_or_3 "snapshots with a truncated manifest" "$VMB" snapshots "$T/r"
one_line "snapshots, truncated manifest"
expect_exit_1_or_3 "restore of the truncated manifest" "$VMB" restore "$T/r" "$SA" --to "$T/o4"
one_line "restore, truncated manifest"
no_image "$T/o4" "truncated manifest"
expect_exit 0 "an intact snapshot restores by id" "$VMB" restore "$T/r" "$SB" --to "$T/o4b"
check "intact snapshot restored" cmp "$IMG2" "$T/o4b/b.img"
expect_exit 3 "check with a truncated manifest" "$VMB" check "$T/r"
check "check names the damaged snapshot" grep -q "^problem: .*$SA" "$T/out"
one_line "check, truncated manifest"

fresh
printf 'not a manifest' >"$T/r/snapshots/$SA"
expect_exit 3 "check with a garbage manifest" "$VMB" check "$T/r"
check "check names the garbage snapshot" grep -q "^problem: .*$SA" "$T/out"

# ---- deleted chunk ----
fresh
C=$(chunk_of_a "$T/r")
rm "$C"
expect_exit 3 "check with a deleted chunk" "$VMB" check "$T/r"
check "problem line names the snapshot and the chunk" grep -q "^problem: .*$SA.*$(basename "$C" | cut -c1-16)" "$T/out"
check "exactly one problem" test "$(grep -c '^problem:' "$T/out")" = 1
one_line "check, deleted chunk"
"$VMB" check "$T/r" --json >"$T/cj" 2>/dev/null
check "check --json reports the missing chunk" python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
assert d["ok"] is False and d["chunks_missing"] == 1, d' "$T/cj"
expect_exit 3 "restore with a deleted chunk" "$VMB" restore "$T/r" "$SA" --to "$T/o5"
one_line "restore, deleted chunk"
no_image "$T/o5" "deleted chunk"

# ---- deleted index ----
fresh
rm -f "$T"/r/indexes/*
expect_exit 3 "check without indexes" "$VMB" check "$T/r"
expect_exit 3 "restore without indexes" "$VMB" restore "$T/r" "$SA" --to "$T/o6"
one_line "restore, missing index"
no_image "$T/o6" "missing index"

# ---- damaged key file ----
fresh
printf '{"version":1,"kdf":"argon2id13","opslimit":1}' >"$T/r/keys/default"
"$VMB" snapshots "$T/r" >"$T/out" 2>"$T/err"
rc=$?
check "a damaged key file fails (exit $rc)" test "$rc" = 1 -o "$rc" = 3
one_line "damaged key file"

# ---- S3 without a working libcurl (loaded on first use, docs/storage.md) ----
if command -v readelf >/dev/null; then
	check "vmb does not link libcurl" sh -c "! readelf -d '$VMB' | grep -q 'NEEDED.*libcurl'"
fi
# a broken libcurl.so.4 found first: local repositories do not notice,
# s3: ones fail with one line naming the package, before any request
mkdir -p "$T/nocurl"
: >"$T/nocurl/libcurl.so.4"
NOCURL=(env LD_LIBRARY_PATH="$T/nocurl" AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=secret)
expect_exit 0 "local snapshots without a working libcurl" "${NOCURL[@]}" "$VMB" snapshots "$BASE"
expect_exit 1 "S3 init without a working libcurl" "${NOCURL[@]}" "$VMB" init "s3:http://127.0.0.1:9/vmb-nocurl"
one_line "S3 init without a working libcurl"
check "S3 init names libcurl and its package" grep -q 'S3 storage needs libcurl (libcurl.so.4): .*install the libcurl4 package' "$T/err"
expect_exit 1 "S3 snapshots without a working libcurl" "${NOCURL[@]}" "$VMB" snapshots "s3:http://127.0.0.1:9/vmb-nocurl"
one_line "S3 snapshots without a working libcurl"

# the base repository is still fine after all this
expect_exit 0 "base check" "$VMB" check "$BASE"

finish
