# Tampering by someone with write access to the target (docs/threat-model.md):
# swapped chunks, chunks from other repositories, a manifest replayed under
# another name, a deleted index, a truncated or replaced key file, a config
# from a newer format.  Each is detected: exit 3 naming the snapshot, or
# exit 1 naming the file; nothing damaged is ever restored.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"

IMG=$T/a.img
truncate -s 4M "$IMG"
head -c 1048576 /dev/urandom | dd of="$IMG" bs=64K seek=2 conv=notrunc status=none
yes "text in the second half" | head -c 400000 | dd of="$IMG" bs=64K seek=40 conv=notrunc status=none

BASE=$T/base
expect_exit 0 "init" "$VMB" init "$BASE" --chunk-size 64K
expect_exit 0 "backup 1" "$VMB" backup "$BASE" "$IMG" --vm web1 --json
S1=$(json_field "$T/out" snapshot)
(cd "$BASE" && find chunks -type f | sort) >"$T/s1_chunks"
head -c 200000 /dev/urandom | dd of="$IMG" bs=64K seek=10 conv=notrunc status=none
cp "$IMG" "$T/a2.img"
expect_exit 0 "backup 2" "$VMB" backup "$BASE" "$IMG" --vm web1 --json
S2=$(json_field "$T/out" snapshot)
# two other repositories holding the same data: same passphrase, and another
expect_exit 0 "init other (same passphrase)" "$VMB" init "$T/same" --chunk-size 64K
expect_exit 0 "backup into other" "$VMB" backup "$T/same" "$IMG" --vm web1
expect_exit 0 "init other (other passphrase)" env VMB_PASSPHRASE=another "$VMB" init "$T/diff" --chunk-size 64K
expect_exit 0 "backup into other" env VMB_PASSPHRASE=another "$VMB" backup "$T/diff" "$IMG" --vm web1

fresh() { rm -rf "$T/r" "$T/o"; cp -a "$BASE" "$T/r"; }
chunks() { (cd "$1" && find chunks -type f | sort); }
mapfile -t C < "$T/s1_chunks" # chunks snapshot 1 uses
no_image() { check "$1: nothing restored" test -z "$(find "$T/o" -type f 2>/dev/null)"; }
# restore exits 3 with one line naming the snapshot; verify --data names it
detected() { # detected WHAT SNAP
	expect_exit 3 "$1: restore refuses" "$VMB" restore "$T/r" "$2" --to "$T/o"
	one_line "$1: restore"
	check "$1: restore names snapshot ${2:0:8}" grep -q "${2:0:8}" "$T/err"
	no_image "$1"
	expect_exit 3 "$1: verify --data finds it" "$VMB" verify "$T/r" --data
	check "$1: verify names snapshot ${2:0:8}" grep -q "${2:0:8}" "$T/out" "$T/err"
}

# ---- two chunk objects swapped (both authentic, each under the other's name)
fresh
A=$T/r/${C[0]} B=$T/r/${C[1]}
mv "$A" "$T/swap"; mv "$B" "$A"; mv "$T/swap" "$B"
detected "swapped chunks" "$S1"

# ---- a chunk from another repository under a name this one uses
for other in same diff; do
	fresh
	mapfile -t O < <(chunks "$T/$other")
	cp "$T/$other/${O[0]}" "$T/r/${C[0]}"
	detected "chunk from a repository with the $other passphrase" "$S1"
done

# ---- an old manifest replayed under a new name, and over a newer one
fresh
NEW=0123456789abcdef0123456789abcdef
cp "$T/r/snapshots/$S1" "$T/r/snapshots/$NEW"
expect_exit 3 "replayed manifest: check" "$VMB" check "$T/r"
check "replayed manifest: check names the new name" grep -q "^problem: .*$NEW" "$T/out"
expect_exit 3 "replayed manifest: restore by its new name" "$VMB" restore "$T/r" "$NEW" --to "$T/o"
one_line "replayed manifest: restore"
check "replayed manifest: restore names it" grep -q "$NEW" "$T/err"
no_image "replayed manifest"
expect_exit 3 "replayed manifest: snapshots reports the damage" "$VMB" snapshots "$T/r"
check "replayed manifest: snapshots names it" grep -q "$NEW" "$T/err"
fresh
cp "$T/r/snapshots/$S1" "$T/r/snapshots/$S2"
expect_exit 3 "old manifest over the latest: restore latest" "$VMB" restore "$T/r" "$S2" --to "$T/o"
check "old manifest over the latest: names it" grep -q "${S2:0:8}" "$T/err"
no_image "old manifest over the latest"
expect_exit 3 "old manifest over the latest: check" "$VMB" check "$T/r"
check "old manifest over the latest: check names it" grep -q "^problem: .*$S2" "$T/out"

# ---- a deleted index
fresh
IX=$(python3 - "$T/r" <<'PY'
import os,sys
print(sorted(os.listdir(os.path.join(sys.argv[1], "indexes")))[0])
PY
)
rm "$T/r/indexes/$IX"
expect_exit 3 "deleted index: check" "$VMB" check "$T/r"
check "deleted index: check names a snapshot" grep -Eq "^problem: snapshot ($S1|$S2)" "$T/out"
SI=$(grep -Eo "^problem: snapshot [0-9a-f]{32}" "$T/out" | head -1 | awk '{print $3}')
detected "deleted index" "$SI"

# ---- a truncated key file: exit 1 naming it
fresh
K=$T/r/keys/default
truncate -s $(( $(stat -c %s "$K") / 2 )) "$K"
for cmd in snapshots check; do
	expect_exit 1 "truncated key file: $cmd" "$VMB" $cmd "$T/r"
	one_line "truncated key file: $cmd"
	check "truncated key file: $cmd names keys/default" grep -q "keys/default" "$T/err"
done
expect_exit 1 "truncated key file: backup" "$VMB" backup "$T/r" "$IMG" --vm web1
check "truncated key file: no snapshot written" test "$(ls "$T/r/snapshots" | wc -l)" = 2

# ---- the key file replaced by an unencrypted one under a key the attacker
# knows: the next backup must not be written in the clear under it
fresh
printf '{"version":1,"kdf":"none","key":"%s","created":1}\n' \
	"$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$T/r/keys/default"
expect_exit 1 "unencrypted key file: backup refused" "$VMB" backup "$T/r" "$IMG" --vm web1
one_line "unencrypted key file"
check "unencrypted key file: names the key file and the config" grep -q "keys/default.*config" "$T/err"
check "unencrypted key file: no snapshot, no new chunk" test "$(ls "$T/r/snapshots" | wc -l)" = 2 -a \
	"$(chunks "$T/r" | wc -l)" = "$(chunks "$BASE" | wc -l)"
# ... and the other way round: a config claiming the repository is unencrypted
fresh
python3 - "$T/r/config" <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); d["encryption"]="none"; d["cipher"]="none"
open(sys.argv[1],"w").write(json.dumps(d))
PY
expect_exit 1 "config says unencrypted: refused" "$VMB" snapshots "$T/r"
check "config says unencrypted: names the config" grep -q "config" "$T/err"

# ---- a config from a newer format version: refused, names the config
for ver in 3 99; do
	fresh
	python3 - "$T/r/config" "$ver" <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); d["vmbackup_repository"]=int(sys.argv[2])
open(sys.argv[1],"w").write(json.dumps(d))
PY
	for cmd in snapshots check; do
		expect_exit 1 "config version $ver: $cmd" "$VMB" $cmd "$T/r"
		one_line "config version $ver: $cmd"
		check "config version $ver: says newer, names config" grep -q "config: repository version $ver is newer" "$T/err"
	done
	expect_exit 1 "config version $ver: backup" "$VMB" backup "$T/r" "$IMG" --vm web1
	check "config version $ver: nothing written" test "$(ls "$T/r/snapshots" | wc -l)" = 2
done
fresh
python3 - "$T/r/config" <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); d["cipher"]="rot13"
open(sys.argv[1],"w").write(json.dumps(d))
PY
expect_exit 1 "unknown cipher in the config" "$VMB" snapshots "$T/r"
check "unknown cipher: names the config" grep -q "config: unknown cipher" "$T/err"

# ---- and the untouched repository is fine, restores byte for byte
expect_exit 0 "base check" "$VMB" check "$BASE"
expect_exit 0 "base verify --data" "$VMB" verify "$BASE" --data
expect_exit 0 "base restore" "$VMB" restore "$BASE" "$S2" --to "$T/ok"
check "base restore is exact" cmp "$T/a2.img" "$T/ok/a.img"
finish
