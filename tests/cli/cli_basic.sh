# vmb's command line: help, usage errors, and the contract of init, backup,
# snapshots, restore, check and inspect on raw images (design.md).
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"

R=$T/repo
IMG=$T/img/web-disk.img
mkdir -p "$T/img"

# An 8 MiB raw image: text, random data, holes.
truncate -s 8M "$IMG"
yes "the quick brown fox jumps over the lazy dog $RANDOM" | head -c 300000 |
	dd of="$IMG" bs=4096 seek=16 conv=notrunc status=none
head -c 1048576 /dev/urandom | dd of="$IMG" bs=1M seek=3 conv=notrunc status=none
SIZE=$(stat -c %s "$IMG")

# ---- help ----
expect_exit 0 "vmb --help" "$VMB" --help
cp "$T/out" "$T/help"
check "--help prints to stdout" test -s "$T/help"
expect_exit 0 "vmb help" "$VMB" help
expect_exit 0 "vmb --version" "$VMB" --version
check "--version names vmb" grep -q '^vmb [0-9]' "$T/out"
cmds=$(awk '/^COMMANDS/{f=1;next} /^$/{f=0} f{print $1}' "$T/help")
for c in init backup snapshots restore check inspect; do
	check "help lists $c" grep -qw "$c" <<<"$cmds"
done
for c in $cmds; do
	expect_exit 0 "vmb $c --help" "$VMB" "$c" --help
	check "vmb $c --help prints a synopsis" grep -q "vmb $c" "$T/out"
	expect_exit 0 "vmb $c -h" "$VMB" "$c" -h
done

# ---- usage errors: exit 2, one line on stderr ("vmb: ..." or "vmb CMD: ...")
usage_line() {
	if [ "$(wc -l <"$T/err")" = 1 ] && grep -q '^vmb[ :]' "$T/err"; then
		ok "$1: one-line usage error: $(cat "$T/err")"
	else
		bad "$1: stderr is not one vmb line: $(head -c 500 "$T/err")"
	fi
}
expect_exit 2 "no arguments" "$VMB"
expect_exit 2 "unknown command" "$VMB" frobnicate
one_line "unknown command"
check "unknown command is named" grep -q frobnicate "$T/err"
for c in init backup snapshots restore check inspect; do
	expect_exit 2 "vmb $c with an unknown option" "$VMB" "$c" --no-such-option
	usage_line "vmb $c --no-such-option"
	check "vmb $c: the bad option is named" grep -q -- --no-such-option "$T/err"
done
expect_exit 2 "backup without a source" "$VMB" backup "$R"
usage_line "backup without a source"
expect_exit 2 "restore without --to" "$VMB" restore "$R" latest
usage_line "restore without --to"
expect_exit 2 "init with an unknown encryption" "$VMB" init "$R" --encryption rot13
expect_exit 2 "init with a bad chunk size" "$VMB" init "$R" --chunk-size lots
# sizes: one parser for every size option; wrap-around, signs, and
# trailing text are usage errors, not a silently different value
for v in 18446744073709551615K 16777217 17M -4K 4X 0 64KiBx ""; do
	expect_exit 2 "init --chunk-size '$v'" "$VMB" init "$R" --chunk-size "$v"
done
for v in 1K -1M 18014398509481984G 99999999999999999999; do
	expect_exit 2 "gc --memory-limit '$v'" "$VMB" gc "$R" --memory-limit "$v"
done
for v in 512K 2T 1Mx; do
	expect_exit 2 "serve --cache-size '$v'" "$VMB" serve "$R" latest --cache-size "$v"
done
for v in 4294967297 0 "" 3x -1; do
	expect_exit 2 "backup --threads '$v'" "$VMB" backup "$R" "$T/none.img" --threads "$v"
	expect_exit 2 "restore --threads '$v'" "$VMB" restore "$R" latest --to "$T/x" --threads "$v"
done
for v in "" -1 1000001 5z; do
	expect_exit 2 "prune --keep-last '$v'" "$VMB" prune "$R" --keep-last "$v"
	expect_exit 2 "init --compression-level '$v'" "$VMB" init "$R" --compression-level "$v"
done
for v in 0 17592186044417 1Q; do
	expect_exit 2 "mount --cache-size '$v'" "$VMB" mount "$R" latest "$T/mnt" --cache-size "$v"
done
expect_exit 2 "restore with an unknown format" "$VMB" restore "$R" latest --to "$T/x" --format iso
check "usage errors created nothing" test ! -e "$R"

# ---- init ----
expect_exit 0 "init --json" "$VMB" init "$R" --chunk-size 64K --json
check "init --json: one line" test "$(wc -l <"$T/out")" = 1
check "init --json: id" python3 -c '
import json,sys,re; d=json.load(open(sys.argv[1]))
assert re.fullmatch("[0-9a-f]{32}", d["id"]), d
assert d["encryption"] == "repokey" and d["chunk_size"] == 65536, d' "$T/out"
expect_exit 1 "init twice" "$VMB" init "$R"
one_line "init twice"

# ---- backup --json ----
expect_exit 0 "backup --json" "$VMB" backup "$R" "$IMG" --vm web --tag nightly --tag "two words" --json
cp "$T/out" "$T/b1.json"
check "backup --json: stdout is exactly one line" test "$(wc -l <"$T/b1.json")" = 1
check "backup --json: fields and types" python3 - "$T/b1.json" "$SIZE" <<'PY'
import json, re, sys
line = open(sys.argv[1]).read()
assert line.endswith("\n") and line.count("\n") == 1, repr(line)
d = json.loads(line)
assert isinstance(d, dict), d
need = ["snapshot", "vm", "bytes_total", "bytes_read", "bytes_new",
        "bytes_stored", "chunks_total", "chunks_new", "seconds", "cbt"]
missing = [k for k in need if k not in d]
assert not missing, ("missing", missing)
assert re.fullmatch("[0-9a-f]{32}", d["snapshot"]), d
assert d["vm"] == "web", d
for k in need[2:8]:
    assert isinstance(d[k], int) and not isinstance(d[k], bool) and d[k] >= 0, (k, d[k])
assert isinstance(d["seconds"], (int, float)) and d["seconds"] >= 0, d
assert d["cbt"] in ("libvirt", "qcow2-bitmap", "overlay", "fingerprint", "none"), d
assert d["bytes_total"] == int(sys.argv[2]), d
assert d["chunks_total"] == int(sys.argv[2]) // 65536, d
assert 0 < d["bytes_read"] < d["bytes_total"], d
assert 0 < d["bytes_new"] < d["bytes_total"], d
assert 0 < d["chunks_new"] < d["chunks_total"], d
assert d["bytes_stored"] > 0, d
assert d["cbt"] == "none", d
PY
check "backup --json: nothing on stderr" test ! -s "$T/err"
S1=$(json_field "$T/b1.json" snapshot)

# a second VM, no --vm: the VM is named after the disk
expect_exit 0 "backup without --vm" "$VMB" backup "$R" "$IMG" --json
check "default VM name is the disk name" test "$(json_field "$T/out" vm)" = web-disk
S2=$(json_field "$T/out" snapshot)

# plain output: one summary line
expect_exit 0 "backup (text)" "$VMB" backup "$R" "$IMG" --vm web
check "backup text names the snapshot" grep -q '^snapshot [0-9a-f]\{32\} of web' "$T/out"
S3=$(sed -n 's/^snapshot \([0-9a-f]\{32\}\) .*/\1/p' "$T/out")

# ---- snapshots ----
expect_exit 0 "snapshots --json" "$VMB" snapshots "$R" --json
check "snapshots --json: ids, vm, tags, disks" python3 - "$T/out" "$S1" "$S2" "$S3" "$SIZE" <<'PY'
import json, sys
l = json.load(open(sys.argv[1]))
s1, s2, s3, size = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
assert isinstance(l, list) and len(l) == 3, l
by = {s["id"]: s for s in l}
assert set(by) == {s1, s2, s3}, by.keys()
a = by[s1]
assert a["vm"] == "web" and a["tags"] == ["nightly", "two words"], a
assert isinstance(a["time"], int) and a["time"] > 1500000000, a
assert a["parent"] is None, a
assert len(a["disks"]) == 1 and a["disks"][0]["name"] == "web-disk", a
assert a["disks"][0]["virtual_size"] == size, a
assert a["disks"][0]["format"] == "raw", a
assert by[s2]["vm"] == "web-disk" and by[s2]["tags"] == [], by[s2]
assert by[s3]["parent"] == s1, by[s3]
assert by[s3]["cbt"] in ("fingerprint", "overlay"), by[s3]  # overlay: file untouched for 2 s
assert [s["time"] for s in l] == sorted(s["time"] for s in l)
PY
expect_exit 0 "snapshots --vm web --json" "$VMB" snapshots "$R" --vm web --json
check "snapshots --vm filters" python3 -c '
import json,sys; l=json.load(open(sys.argv[1]))
assert sorted(s["id"] for s in l) == sorted(sys.argv[2:]), l' "$T/out" "$S1" "$S3"
expect_exit 0 "snapshots (text)" "$VMB" snapshots "$R"
check "snapshots text lists every id" grep -q "^${S1:0:12}" "$T/out"
check "snapshots text lists tags" grep -q "nightly" "$T/out"
expect_exit 0 "snapshots --vm none-such" "$VMB" snapshots "$R" --vm nonesuch --json
check "no snapshots of an unknown VM" test "$(tr -d ' \n' <"$T/out")" = "[]"

# ---- restore: SNAP references, DIR/<disk>.img ----
restore_as() { # restore_as REF DIR
	expect_exit 0 "restore $1" "$VMB" restore "$R" "$1" --to "$2"
	check "restore $1: $2/web-disk.img is the image" cmp -s "$IMG" "$2/web-disk.img"
}
restore_as "$S1" "$T/o-full"
restore_as "${S1:0:10}" "$T/o-prefix"
restore_as latest "$T/o-latest"
restore_as web@latest "$T/o-vmlatest"
restore_as web-disk@latest "$T/o-vm2"
check "restore writes only the disk" test "$(ls "$T/o-full")" = web-disk.img
expect_exit 0 "restore --format raw --disk" "$VMB" restore "$R" "$S2" --to "$T/o-raw" --format raw --disk web-disk --json
check "restore --format raw: web-disk.img" cmp -s "$IMG" "$T/o-raw/web-disk.img"
check "restore --json" python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
assert d["disks"] == 1 and d["bytes_total"] == int(sys.argv[2]), d' "$T/out" "$SIZE"
expect_exit 1 "restore over an existing image" "$VMB" restore "$R" "$S1" --to "$T/o-full"
one_line "restore over an existing image"
check "existing image untouched" cmp -s "$IMG" "$T/o-full/web-disk.img"
expect_exit 1 "restore an unknown snapshot" "$VMB" restore "$R" 0123456789abcdef0123456789abcdef --to "$T/o-none"
one_line "restore an unknown snapshot"
expect_exit 1 "restore an unknown disk" "$VMB" restore "$R" latest --to "$T/o-none2" --disk nope
one_line "restore an unknown disk"
expect_exit 1 "restore from an unknown VM" "$VMB" restore "$R" nosuchvm@latest --to "$T/o-none3"
one_line "restore from an unknown VM"
check "failed restores wrote no image" test -z "$(find "$T"/o-none* -type f 2>/dev/null)"

# ---- check ----
expect_exit 0 "check" "$VMB" check "$R"
check "check says ok" grep -q '^ok: 3 snapshots' "$T/out"
expect_exit 0 "check --json" "$VMB" check "$R" --json
check "check --json ok" python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
assert d["ok"] is True and d["snapshots"] == 3 and d["chunks_missing"] == 0, d' "$T/out"

# ---- inspect ----
expect_exit 0 "inspect --json" "$VMB" inspect "$IMG" --json
check "inspect --json: raw, size" python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
assert d["format"] == "raw" and d["virtual_size"] == int(sys.argv[2]), d' "$T/out" "$SIZE"
expect_exit 0 "inspect (text)" "$VMB" inspect "$IMG"
check "inspect text names the format" grep -q '"raw"' "$T/out"
expect_exit 1 "inspect a missing file" "$VMB" inspect "$T/no-such.img"
one_line "inspect a missing file"

# ---- passphrases ----
printf '%s\n' "$VMB_PASSPHRASE" >"$T/pass"
printf 'wrong\n' >"$T/wrong"
expect_exit 0 "--passphrase-file" env -u VMB_PASSPHRASE "$VMB" snapshots "$R" --passphrase-file "$T/pass" --json
check "--passphrase-file lists snapshots" grep -q "$S1" "$T/out"
expect_exit 1 "--passphrase-file with a wrong passphrase" env -u VMB_PASSPHRASE "$VMB" snapshots "$R" --passphrase-file "$T/wrong"
one_line "wrong passphrase file"
expect_exit 1 "--passphrase-file that does not exist" env -u VMB_PASSPHRASE "$VMB" snapshots "$R" --passphrase-file "$T/none"
one_line "missing passphrase file"
expect_exit 1 "no passphrase, stdin not a terminal" env -u VMB_PASSPHRASE "$VMB" snapshots "$R" </dev/null
one_line "no passphrase"
check "asks for VMB_PASSPHRASE or a file" grep -q VMB_PASSPHRASE "$T/err"
# a passphrase file for init, then the environment
expect_exit 0 "init --passphrase-file" env -u VMB_PASSPHRASE "$VMB" init "$T/repo2" --passphrase-file "$T/wrong" --quiet
check "init --quiet prints nothing" test ! -s "$T/out"
expect_exit 0 "open with that passphrase" env VMB_PASSPHRASE=wrong "$VMB" snapshots "$T/repo2"
expect_exit 1 "the other passphrase fails" "$VMB" snapshots "$T/repo2"
one_line "other passphrase"
# a passphrase is not needed for an unencrypted repository
expect_exit 0 "init --encryption none" env -u VMB_PASSPHRASE "$VMB" init "$T/repo3" --encryption none </dev/null
expect_exit 0 "backup to an unencrypted repository" env -u VMB_PASSPHRASE "$VMB" backup "$T/repo3" "$IMG" --json </dev/null

finish
