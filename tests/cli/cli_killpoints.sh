# Crash consistency (docs/reliability.md): every command that changes a
# repository or an image is killed with SIGKILL at many deterministic
# points (VMB_KILL_AT=N: the Nth durable operation -- a target put, delete
# or touch, the write, fsync or rename inside a local put, an image
# snapshot step -- is the last thing the process does).  For each command a
# clean run first counts its operations (VMB_KILL_TRACE), then the command
# is run again from the same starting state and killed at each of a spread
# of them.  After each kill:
#  - `vmb check` passes (or, for image snapshots, qemu-img check and the
#    image reads as before),
#  - every snapshot that had finished before restores byte for byte,
#  - the next run of the command completes, and check passes again.
# Every kill point is listed as "ok - NAME@N KIND OBJECT: ...".
# VMB_KILLPOINTS_MAX (default 10) caps the points per command variant;
# VMB_KILLPOINTS_ONLY=REGEX runs only the variants whose name matches.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null ||
	skip "qemu-img and qemu-io are needed"
MAXP=${VMB_KILLPOINTS_MAX:-10}
# the state of one run: repo, images, cache, expectations; on a tmpfs
# when there is one (fsync is free there, and the kills do not depend on it)
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	W=$(mktemp -d /dev/shm/vmbkp.XXXXXX); cleanup_hooks+=("rm -rf '$W'")
else
	W=$T/w
fi
R=$W/r
IMG=$W/vm.qcow2
export XDG_CACHE_HOME=$W/cache
POINTS=0
unset VMB_KILL_AT VMB_KILL_OPS VMB_KILL_WHEN VMB_KILL_TRACE

# fixed data, so every run of a set-up does the same operations
python3 - "$T/d1" "$T/d2" <<'PY'
import random, sys
for i, p in enumerate(sys.argv[1:]):
    open(p, "wb").write(random.Random(i + 1).randbytes(1 << 20))
PY
mkimg() { # a 4 MiB qcow2 with 1 MiB of data at 0 and 512 KiB at 2 MiB
	qemu-img create -q -f qcow2 "$IMG" 4M
	qemu-io -f qcow2 -c "write -s $T/d1 0 1M" -c "write -s $T/d2 2M 512k" "$IMG" >/dev/null
}
raw() { qemu-img convert -O raw "$1" "$2"; }
# (the shell's "Killed" report goes to the log too)
vmb() { { "$VMB" "$@" >>"$W/log" 2>&1; } 2>>"$W/log"; }
backup() { vmb backup "$R" "$IMG" --vm a --threads 1; }
# expect SNAPSHOT-OF-LATEST: record the latest snapshot and the image's bytes
expect() {
	local id
	id=$("$VMB" snapshots "$R" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
	raw "$IMG" "$W/expect.$id.raw"
	echo "$id" >>"$W/expect"
}
must_restore() { # every recorded snapshot restores byte for byte
	local id
	[ -s "$W/expect" ] || return 0
	while read -r id; do
		rm -rf "$W/rs"
		"$VMB" restore "$R" "$id" --to "$W/rs" --format raw >/dev/null 2>"$W/rerr" ||
			{ echo "restore $id: $(cat "$W/rerr")"; return 1; }
		cmp -s "$W/rs/"*.img "$W/expect.$id.raw" || { echo "restore $id differs"; return 1; }
	done <"$W/expect"
}
repo_ok() { # check passes and the recorded snapshots restore
	"$VMB" check "$R" >/dev/null 2>"$W/cerr" || { echo "check: $(cat "$W/cerr")"; return 1; }
	must_restore
}

# killpoints NAME SETUP RUN VERIFY [RC]: count RUN's operations after
# SETUP, then for each chosen N: SETUP, RUN killed at N, VERIFY, RUN again
# (exit RC, default 0), VERIFY.
killpoints() {
	local name=$1 setup=$2 run=$3 verify=$4 want=${5:-0} n k rc msg step
	[[ $name =~ ${VMB_KILLPOINTS_ONLY:-.} ]] || return 0
	rm -rf "$W"; mkdir -p "$W"; $setup
	VMB_KILL_TRACE=$T/trace $run; rc=$?
	n=$(wc -l <"$T/trace"); rm -f "$T/trace"
	if [ "$rc" != "$want" ] || [ "$n" -lt 1 ]; then
		bad "$name: the clean run exits $rc (want $want) after $n operations: $(tail -3 "$W/log")"
		return
	fi
	step=$(( (n + MAXP - 1) / MAXP ))
	# a spread over the whole run, always including the last operation
	for k in $(seq "$n" "-$step" 1); do
		rm -rf "$W"; mkdir -p "$W"; $setup
		VMB_KILL_AT=$k VMB_KILL_TRACE=$T/trace $run; rc=$?
		local what; what=$(grep ' (killed)$' "$T/trace" | cut -d' ' -f2-3); rm -f "$T/trace"
		if [ "$rc" != 137 ] || [ -z "$what" ]; then
			bad "$name@$k: not killed (exit $rc): $(tail -2 "$W/log")"; continue
		fi
		touch "$W/killed"
		if ! msg=$($verify 2>&1); then bad "$name@$k $what: after the kill: $msg"; continue; fi
		rm -f "$W/killed"
		$run; rc=$?
		if [ "$rc" != "$want" ]; then
			bad "$name@$k $what: the next run exits $rc: $(tail -2 "$W/log")"; continue
		fi
		if ! msg=$($verify 2>&1); then bad "$name@$k $what: after the next run: $msg"; continue; fi
		ok "$name@$k/$n $what: consistent, the next run completes"
		POINTS=$((POINTS + 1))
	done
}

# ---- backups ----
s_init() { mkimg; vmb init "$R" --chunk-size 64K; }
s_full() { s_init; backup; expect; }
s_incr() { s_full; qemu-io -f qcow2 -c "write -P 7 64k 192k" -c "write -P 8 3M 128k" "$IMG" >/dev/null; }
s_patch() { s_full; qemu-io -f qcow2 -c "write -P 9 8k 4k" -c "write -P 10 2100k 4k" -c "write -P 11 3500k 4k" "$IMG" >/dev/null; }
# After a killed backup one GC frees everything it left (no chunk kept as
# "young" for a dead backup's session), including the temporary files of
# puts killed before their rename (listings drop those older than an hour:
# they are aged here), and the repository still checks and restores.
v_killed_backup() {
	repo_ok || return 1
	find "$R" -name '*.tmp-*' -exec touch -d '2 hours ago' {} +
	"$VMB" gc "$R" --json >"$W/gc" 2>"$W/cerr" || { echo "gc: $(cat "$W/cerr")"; return 1; }
	python3 - "$W/gc" <<'PY' || return 1
import json, sys
g = json.load(open(sys.argv[1]))
if g["chunks_young"] or g["sessions_running"]:
    sys.exit("gc kept %d young chunks for %d running sessions" % (g["chunks_young"], g["sessions_running"]))
PY
	local tmp; tmp=$(find "$R" -name '*.tmp-*' | head -3)
	[ -z "$tmp" ] || { echo "temporary files left: $tmp"; return 1; }
	repo_ok
}
v_backup() { if [ -e "$W/killed" ]; then rm -f "$W/killed"; v_killed_backup; else repo_ok; fi; }
r_backup() { backup && expect; }
killpoints backup-full s_init r_backup v_backup
killpoints backup-incremental s_incr r_backup v_backup
killpoints backup-patch s_patch r_backup v_backup
VMB_KILL_WHEN=before killpoints backup-full-before s_init r_backup v_backup

# ---- prune, gc ----
ids() { "$VMB" snapshots "$R" --json | python3 -c 'import json,sys; [print(s["id"]) for s in json.load(sys.stdin)]'; }
age() { find "$R" -type f -exec touch -d '2 hours ago' {} +; }
s_three() { # three snapshots, the image changing in between; all aged
	s_full
	qemu-io -f qcow2 -c "write -P 21 0 128k" "$IMG" >/dev/null; backup; expect
	qemu-io -f qcow2 -c "write -P 22 1M 256k" "$IMG" >/dev/null; backup; expect
	age
}
# prune: the kept (latest) snapshot must survive every kill; the pruned
# ones may be there or not, but if listed must restore
v_prune() {
	local keep; keep=$(tail -1 "$W/expect")
	ids >"$W/list" || return 1
	grep -qx "$keep" "$W/list" || { echo "kept snapshot $keep is gone"; return 1; }
	local id; : >"$W/expect.now"
	while read -r id; do grep -qx "$id" "$W/list" && echo "$id" >>"$W/expect.now"; done <"$W/expect"
	mv "$W/expect.now" "$W/expect"
	repo_ok
}
r_prune() { vmb prune "$R" --keep-last 1; }
killpoints prune s_three r_prune v_prune
s_gc() { s_three; vmb prune "$R" --keep-last 1; tail -1 "$W/expect" >"$W/e1"; mv "$W/e1" "$W/expect"; age; }
r_gc() { vmb gc "$R"; }
killpoints gc s_gc r_gc v_backup

# ---- verify --data on a damaged chunk, and the healing backup ----
s_damaged() { # a full snapshot whose first chunk is damaged on the target
	s_full
	local c; c=$(find "$R/chunks" -type f | sort | head -1)
	printf 'XXXXXXXX' | dd of="$c" bs=1 seek=40 conv=notrunc status=none
	mv "$W/expect" "$W/damaged" # not restorable until healed
}
r_verify() { vmb verify "$R" --data; }
v_verify() { "$VMB" check "$R" >/dev/null 2>"$W/cerr" || { cat "$W/cerr"; return 1; }; }
killpoints verify-data s_damaged r_verify v_verify 3
s_heal() { s_damaged; vmb verify "$R" --data; }
# the healing backup: after it completes, the damaged snapshot restores too
r_heal() { backup && expect && cat "$W/damaged" >>"$W/expect"; }
killpoints backup-heal s_heal r_heal v_backup

# ---- key change-passphrase ----
s_key() { s_full; }
PASS_OLD=$VMB_PASSPHRASE PASS_NEW=new-passphrase-2
r_key() { # change to the other passphrase, whichever opens it now
	if VMB_PASSPHRASE=$PASS_OLD "$VMB" snapshots "$R" >/dev/null 2>&1; then
		VMB_PASSPHRASE=$PASS_OLD VMB_NEW_PASSPHRASE=$PASS_NEW vmb key change-passphrase "$R"
	else
		VMB_PASSPHRASE=$PASS_NEW VMB_NEW_PASSPHRASE=$PASS_OLD vmb key change-passphrase "$R"
	fi
}
v_key() { # one of the two passphrases opens it, and it is whole
	local p
	for p in "$PASS_OLD" "$PASS_NEW"; do
		if VMB_PASSPHRASE=$p "$VMB" snapshots "$R" >/dev/null 2>&1; then
			VMB_PASSPHRASE=$p repo_ok; return
		fi
	done
	echo "neither passphrase opens the repository"; return 1
}
killpoints key-change-passphrase s_key r_key v_key

# ---- import ----
s_import() {
	s_full
	"$VMB" export "$R" latest "$W/a.tar" >>"$W/log" 2>&1
	mv "$R" "$W/src"; vmb init "$R" --chunk-size 64K
}
r_import() { vmb import "$R" "$W/a.tar"; }
v_import() { # whatever imported is whole; after the next run, it is there
	"$VMB" check "$R" >/dev/null 2>"$W/cerr" || { cat "$W/cerr"; return 1; }
	ids >"$W/list" || return 1
	local id; id=$(cat "$W/expect")
	if grep -qx "$id" "$W/list"; then must_restore; fi
}
killpoints import s_import r_import v_import

# ---- image snapshots (qcow2) ----
s_img() { mkimg; raw "$IMG" "$W/now.raw"; }
same_img() { # the image reads as recorded and passes qemu-img check
	qemu-img check -q "$IMG" >/dev/null 2>&1 || { echo "qemu-img check fails"; return 1; }
	raw "$IMG" "$W/cur.raw"; cmp -s "$W/cur.raw" "$1" || { echo "$IMG differs"; return 1; }
}
v_snap() { same_img "$W/now.raw"; }
r_create() { # create, or find it already made by the killed run
	if "$VMB" snapshot list "$IMG" 2>/dev/null | grep -q '^s1 '; then return 0; fi
	vmb snapshot create "$IMG" s1
}
killpoints snapshot-create s_img r_create v_snap
s_revert() { s_img; vmb snapshot create "$IMG" s1; cp "$W/now.raw" "$W/s1.raw"
	qemu-io -f qcow2 -c "write -P 31 512k 128k" "$IMG" >/dev/null; raw "$IMG" "$W/now.raw"; }
v_revert() { # the image is as before or as s1; s1 intact
	same_img "$W/now.raw" >/dev/null || same_img "$W/s1.raw" || return 1
	raw "$IMG.s1" "$W/cur1.raw"; cmp -s "$W/cur1.raw" "$W/s1.raw" || { echo "s1 differs"; return 1; }
}
r_revert() { vmb snapshot revert "$IMG" s1 && cp "$W/s1.raw" "$W/now.raw"; }
killpoints snapshot-revert s_revert r_revert v_revert
s_sdel() { s_revert; vmb snapshot create "$IMG" s2; cp "$W/now.raw" "$W/s2.raw"
	qemu-io -f qcow2 -c "write -P 32 1536k 64k" "$IMG" >/dev/null; raw "$IMG" "$W/now.raw"; }
v_sdel() {
	same_img "$W/now.raw" || return 1
	raw "$IMG.s2" "$W/cur2.raw"; cmp -s "$W/cur2.raw" "$W/s2.raw" || { echo "s2 differs"; return 1; }
}
r_sdel() { # delete s1, or find it already gone
	"$VMB" snapshot list "$IMG" 2>/dev/null | grep -q '^s1 ' || return 0
	vmb snapshot delete "$IMG" s1
}
killpoints snapshot-delete s_sdel r_sdel v_sdel

finish_points() {
	echo "$POINTS kill points, all consistent"
	[ -n "${VMB_KILLPOINTS_ONLY:-}" ] ||
		check "at least 50 kill points were run ($POINTS)" test "$POINTS" -ge 50
	finish
}
finish_points
