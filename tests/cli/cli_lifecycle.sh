#!/bin/bash
# Repository lifecycle: prune, protect, gc, verify --data, healing, GC
# running while a backup runs, and the per-VM backup lock.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
R=$T/repo
I=$T/disk.img
"$VMB" init "$R" >/dev/null

# ---- five snapshots of a changing disk, each state kept for comparison
truncate -s 256M "$I"
head -c 24M /dev/urandom | dd of="$I" bs=1M seek=10 conv=notrunc status=none
for n in 1 2 3 4 5; do
	head -c 8M /dev/urandom | dd of="$I" bs=1M seek=80 conv=notrunc status=none
	cp --sparse=always "$I" "$T/state$n.img"
	"$VMB" backup "$R" "$I" --vm web --json >"$T/b$n.json" || bad "backup $n"
	sleep 1.1 # distinct snapshot times
done
ids=($("$VMB" snapshots "$R" --json | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)))'))
check "five snapshots" test "${#ids[@]}" = 5

expect_exit 2 "prune without a rule is refused" "$VMB" prune "$R"
expect_exit 0 "prune --dry-run" "$VMB" prune "$R" --keep-last 2 --dry-run
check "dry run lists three removals" test "$(grep -c '^remove' "$T/out")" = 3
check "dry run removes nothing" test "$(ls "$R/snapshots" | wc -l)" = 5

expect_exit 0 "protect the oldest" "$VMB" protect "$R" "${ids[0]}"
expect_exit 0 "prune --keep-last 2" "$VMB" prune "$R" --keep-last 2 --json
check "prune removed two (protected one kept)" test "$(json_field "$T/out" removed)" = 2
check "three snapshots left" test "$(ls "$R/snapshots" | wc -l)" = 3
check "protected snapshot still there" test -f "$R/snapshots/${ids[0]}"
expect_exit 0 "unprotect" "$VMB" protect "$R" "${ids[0]}" --remove
expect_exit 0 "prune again" "$VMB" prune "$R" --keep-last 2
check "two snapshots left" test "$(ls "$R/snapshots" | wc -l)" = 2

before=$(du -sk "$R/chunks" | cut -f1)
nchunks=$(find "$R/chunks" -type f | wc -l)
expect_exit 0 "gc" "$VMB" gc "$R" --memory-limit 2MiB --json
cp "$T/out" "$T/gc.json"
after=$(du -sk "$R/chunks" | cut -f1)
check "gc freed chunks" test "$(json_field "$T/gc.json" chunks_deleted)" -gt 0
check "gc freed bytes" test "$(json_field "$T/gc.json" bytes_freed)" -gt 8000000
check "chunk folder shrank ($before -> $after KiB)" test "$after" -lt "$before"
check "chunk files went away" test "$(find "$R/chunks" -type f | wc -l)" -lt "$nchunks"
expect_exit 0 "check after gc" "$VMB" check "$R"
"$VMB" restore "$R" "${ids[3]}" --to "$T/r4" >/dev/null
"$VMB" restore "$R" "${ids[4]}" --to "$T/r5" >/dev/null
check "snapshot 4 restores identical after gc" cmp -s "$T/r4/disk.img" "$T/state4.img"
check "snapshot 5 restores identical after gc" cmp -s "$T/r5/disk.img" "$T/state5.img"
expect_exit 0 "second gc frees nothing" "$VMB" gc "$R" --json
check "nothing left to free" test "$(json_field "$T/out" chunks_deleted)" = 0

# ---- verify --data and damage of each kind
expect_exit 0 "verify --data on a sound repository" "$VMB" verify "$R" --data
expect_exit 0 "verify --sample 50" "$VMB" verify "$R" --sample 50
latest=${ids[4]}
# a chunk the latest snapshot uses: damage chunks one by one until verify
# says the latest snapshot is broken
flip() {
	python3 - "$1" <<'PY'
import sys
p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=1; open(p,'wb').write(b)
PY
}
only=
for c in $(find "$R/chunks" -type f | sort); do
	cp "$c" "$T/chunk.bak"
	flip "$c"
	"$VMB" verify "$R" "$latest" --data >/dev/null 2>&1
	if [ $? = 3 ]; then only=$c; break; fi
	cp "$T/chunk.bak" "$c"
done
rm -rf "$R/damaged"
check "found a chunk of the latest snapshot" test -n "$only"
expect_exit 3 "verify --data finds a flipped byte" "$VMB" verify "$R" --data
check "the report names a snapshot and an offset" grep -qE "^damaged: snapshot [0-9a-f]{32} \(web\) disk disk offset [0-9]+" "$T/out"
check "the damaged chunk is recorded for healing" test -n "$(ls "$R/damaged" 2>/dev/null)"
expect_exit 3 "restore of a damaged snapshot fails" "$VMB" restore "$R" "$(sed -n 's/^damaged: snapshot \([0-9a-f]*\).*/\1/p' "$T/out" | head -1)" --to "$T/rbad"
one_line "restore of damaged data"
check "no wrong image left behind" test ! -e "$T/rbad/disk.img"
# healing: the next backup of the same data rewrites the chunk
"$VMB" backup "$R" "$T/state5.img" --vm web --json >"$T/heal.json"
check "healing backup rewrote one chunk" test "$(json_field "$T/heal.json" chunks_new)" -ge 1
expect_exit 0 "verify --data after healing" "$VMB" verify "$R" --data
check "damage marker cleared" test -z "$(ls "$R/damaged" 2>/dev/null)"
truncate -s 100 "$only"
expect_exit 3 "verify --data finds a truncated chunk" "$VMB" verify "$R" --data
one_line "truncated chunk"
cp "$T/chunk.bak" "$only"
rm "$only"
expect_exit 3 "verify finds a deleted chunk (no --data)" "$VMB" verify "$R" "$latest"
expect_exit 3 "verify --data finds a deleted chunk" "$VMB" verify "$R" --data
cp "$T/chunk.bak" "$only"
expect_exit 0 "repaired repository verifies" "$VMB" verify "$R" --data
cp "$R/snapshots/$latest" "$T/manifest.bak"
python3 - "$R/snapshots/$latest" <<'PY'
import sys
p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[40]^=0x80; open(p,'wb').write(b)
PY
expect_exit 3 "verify --data finds a damaged manifest" "$VMB" verify "$R" --data
check "and names it" grep -q "$latest" "$T/out"
expect_exit 3 "snapshots reports the damaged manifest" "$VMB" snapshots "$R"
one_line "damaged manifest"
cp "$T/manifest.bak" "$R/snapshots/$latest"

# ---- GC while a backup runs: nothing is lost
R2=$T/repo2
"$VMB" init "$R2" >/dev/null
big=$T/big.img
truncate -s 1G "$big"
head -c 160M /dev/urandom | dd of="$big" bs=1M seek=100 conv=notrunc status=none
"$VMB" backup "$R2" "$big" --vm big >/dev/null
# make all its chunks garbage, then back up the same data again while GC
# runs: the backup reuses chunks GC wants to delete.  A fast backup can
# finish before the first GC does: then try again (at most 5 times).
for try in 1 2 3 4 5; do
	rm -f "$R2"/snapshots/*
	rm -rf "$T/cache"
	VMB_THREADS=1 "$VMB" backup "$R2" "$big" --vm big --json -v >"$T/race.json" 2>"$T/race.err" &
	bpid=$!
	gcs=0
	while kill -0 $bpid 2>/dev/null; do
		"$VMB" gc "$R2" --quiet 2>/dev/null && gcs=$((gcs + 1))
	done
	wait $bpid
	[ "$gcs" -ge 1 ] && grep -q "overlapped this backup" "$T/race.err" && break
done
check "backup racing gc succeeded: $(tail -1 "$T/race.err")" test -s "$T/race.json"
check "the backup noticed the GC and re-checked what it reused" grep -q "overlapped this backup" "$T/race.err"
check "gc ran during the backup ($gcs times)" test "$gcs" -ge 1
"$VMB" gc "$R2" --quiet
expect_exit 0 "check after the race" "$VMB" check "$R2"
"$VMB" restore "$R2" latest --to "$T/rrace" >/dev/null
check "restore after the race is identical" cmp -s "$T/rrace/big.img" "$big"
expect_exit 0 "verify --data after the race" "$VMB" verify "$R2" --data

# ---- one backup per VM at a time: start one, and while its session
# marker exists, a second backup of the same VM must be refused
caught=0
for try in 1 2 3 4 5; do
	rm -rf "$R2/sessions"
	VMB_THREADS=1 "$VMB" backup "$R2" "$big" --vm big --full >/dev/null 2>&1 &
	bpid=$!
	for i in $(seq 1 500); do
		[ -n "$(ls "$R2/sessions" 2>/dev/null)" ] && break
		kill -0 $bpid 2>/dev/null || break
		sleep 0.01
	done
	"$VMB" backup "$R2" "$big" --vm big >"$T/out" 2>"$T/err"
	got=$?
	running=0; kill -0 $bpid 2>/dev/null && running=1
	wait $bpid
	if [ $running = 1 ] && [ $got = 1 ]; then caught=1; break; fi
done
check "a second backup of the same VM is refused while the first runs" test $caught = 1
check "the error says it is locked" grep -q "locked" "$T/err"
one_line "VM lock"
expect_exit 0 "the lock is released afterwards" "$VMB" backup "$R2" "$big" --vm big
finish
