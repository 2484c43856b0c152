# The fault-injecting target (lib/target/fault.c, VMB_FAULT): torn and
# short writes, EIO on write and read, ENOSPC, a rename that does not
# happen, a slow put and a listing that misses fresh objects.  Each case:
#  - the command fails with one line naming the fault, exit 1 or 3 (or, for
#    a slow put and a lagging list, completes correctly);
#  - once the fault is gone: `vmb check` passes, every snapshot restores
#    byte for byte (never wrong data), and the next backup completes and
#    restores byte for byte too.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
unset VMB_FAULT
R=$T/repo
IMG=$T/vm.img
python3 - "$T/d1" <<'PY'
import random, sys
open(sys.argv[1], "wb").write(random.Random(5).randbytes(1 << 20))
PY

snaps() { "$VMB" snapshots "$R" --json | python3 -c 'import json,sys; [print(s["id"]) for s in json.load(sys.stdin)]'; }
# state: a repository with one snapshot of vm.img, recorded in $T/expect
fresh() {
	rm -rf "$R" "$T/cache" "$T"/expect*; export XDG_CACHE_HOME=$T/cache
	truncate -s 0 "$IMG"; truncate -s 2M "$IMG"
	dd if="$T/d1" of="$IMG" bs=64k count=8 conv=notrunc status=none
	"$VMB" init "$R" --chunk-size 64K >/dev/null
	backup_ok
	# new data for the command under the fault
	dd if="$T/d1" of="$IMG" bs=64k skip=8 seek=16 count=8 conv=notrunc status=none
}
backup_ok() { # a clean backup, recorded
	"$VMB" backup "$R" "$IMG" --vm a >/dev/null 2>"$T/berr" || { echo "backup: $(cat "$T/berr")"; return 1; }
	local id; id=$(snaps | tail -1); cp "$IMG" "$T/expect.$id"; echo "$id" >>"$T/expect"
}
all_restore() { # every snapshot listed restores to what was recorded
	local id
	for id in $(snaps); do
		[ -e "$T/expect.$id" ] || { echo "snapshot $id was not expected"; return 1; }
		rm -rf "$T/rs"
		"$VMB" restore "$R" "$id" --to "$T/rs" >/dev/null 2>"$T/rerr" || { echo "restore $id: $(cat "$T/rerr")"; return 1; }
		cmp -s "$T/rs/"*.img "$T/expect.$id" || { echo "restore $id differs"; return 1; }
	done
}
healthy() { # after the fault: check, restores, the next backup
	"$VMB" check "$R" >/dev/null 2>"$T/cerr" || { echo "check: $(cat "$T/cerr")"; return 1; }
	all_restore || return 1
	backup_ok || return 1
	"$VMB" check "$R" >/dev/null 2>"$T/cerr" || { echo "check after the next backup: $(cat "$T/cerr")"; return 1; }
	all_restore
}
# case NAME WANT-EXIT FAULT COMMAND...: run COMMAND under the fault
fcase() {
	local name=$1 want=$2 fault=$3 msg; shift 3
	VMB_FAULT=$fault "$@" >"$T/out" 2>"$T/err"
	local rc=$?
	if [ "$rc" != "$want" ]; then bad "$name: exit $rc, want $want: $(head -c 300 "$T/err")"; return; fi
	if [ "$want" != 0 ]; then
		if [ "$(wc -l <"$T/err")" != 1 ] || ! grep -q '^vmb: .*injected fault' "$T/err"; then
			bad "$name: not one line naming the fault: $(head -c 300 "$T/err")"; return
		fi
	fi
	# a snapshot the failed command left must be whole (never wrong data):
	# it was made from the image as it is now
	local id
	for id in $(snaps); do [ -e "$T/expect.$id" ] || { cp "$IMG" "$T/expect.$id"; echo "$id" >>"$T/expect"; }; done
	if msg=$(healthy 2>&1); then ok "$name: exit $rc$( [ "$want" = 0 ] || echo ", $(cat "$T/err")"); repository healthy after"
	else bad "$name: after the fault: $msg"; fi
}
B=("$VMB" backup "$R" "$IMG" --vm a)

fresh; fcase "torn chunk write" 1 "torn on=2 prefix=chunks/" "${B[@]}"
fresh; fcase "short chunk write" 1 "short on=1 prefix=chunks/" "${B[@]}"
fresh; fcase "torn index write" 1 "torn prefix=indexes/" "${B[@]}"
fresh; fcase "torn manifest write" 1 "torn prefix=snapshots/" "${B[@]}"
fresh; fcase "EIO on a chunk write" 1 "eio-write on=3 prefix=chunks/" "${B[@]}"
fresh; fcase "ENOSPC on a chunk write" 1 "enospc on=1 prefix=chunks/" "${B[@]}"
fresh; fcase "ENOSPC on the session marker" 1 "enospc prefix=sessions/" "${B[@]}"
fresh; fcase "rename of a chunk does not happen" 1 "norename on=2 prefix=chunks/" "${B[@]}"
fresh; fcase "rename of the manifest does not happen" 1 "norename prefix=snapshots/" "${B[@]}"
fresh; fcase "EIO reading a chunk (restore)" 1 "eio-read prefix=chunks/" \
	"$VMB" restore "$R" latest --to "$T/rs-fault"
check "the failed restore left no disk image" test -z "$(ls "$T/rs-fault" 2>/dev/null | grep -v '\.tmp')"
fresh; fcase "EIO reading a chunk (verify --data)" 1 "eio-read on=2 prefix=chunks/" \
	"$VMB" verify "$R" --data
fresh; fcase "EIO reading the manifest (verify)" 1 "eio-read prefix=snapshots/" \
	"$VMB" verify "$R"
fresh; fcase "torn key file write (change-passphrase)" 1 "torn on=1 prefix=keys/" \
	env VMB_NEW_PASSPHRASE=other "$VMB" key change-passphrase "$R"
fresh; fcase "ENOSPC on the key file (change-passphrase)" 1 "enospc prefix=keys/" \
	env VMB_NEW_PASSPHRASE=other "$VMB" key change-passphrase "$R"
fresh; fcase "torn GC epoch write (gc)" 1 "torn prefix=state/" "$VMB" gc "$R"
fresh; fcase "slow puts (backup completes)" 0 "slow ms=30 prefix=chunks/" "${B[@]}"
# a store whose listings lag: the fresh snapshot is not listed yet, so GC
# must be told to keep young objects (--grace, docs/gc.md)
fresh; fcase "listing misses fresh objects (backup)" 0 "lag lag=60" "${B[@]}"
"$VMB" prune "$R" --keep-last 1 >/dev/null 2>&1
fcase "listing misses fresh objects (gc --grace)" 0 "lag lag=60" "$VMB" gc "$R" --grace 120
fcase "listing misses fresh objects (check)" 0 "lag lag=60" "$VMB" check "$R"
VMB_FAULT="bogus" "$VMB" check "$R" >/dev/null 2>"$T/err"
check "a fault spec that does not parse is refused" grep -q "VMB_FAULT: cannot parse" "$T/err"
finish
