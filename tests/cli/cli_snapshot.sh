# vmb snapshot create|list|revert|delete: external snapshots.
#  - after a full backup, create + qemu-io writes: the incremental reports
#    cbt "overlay" (or the bitmap) with a small bytes_read and restores
#    the current image;
#  - delete keeps the current state, revert restores the snapshot's
#    state (compared with qemu-img convert -O raw); qemu-img check clean;
#  - kill -9 (VMB_TEST_CRASH_AT) at every step of create and delete
#    leaves an image qemu-img check accepts with its data intact;
#  - a running QEMU is refused; .vdi with --format qcow2 gets a qcow2
#    overlay (native overlays: cli_snapshot_native.sh).
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null ||
	skip "qemu-img and qemu-io are needed"

R=$T/repo
IMG=$T/vm.qcow2
raw() { rm -f "$2"; qemu-img convert -O raw "$1" "$2"; }
same() { # same IMAGE RAW DESC
	if qemu-img compare -q -F raw "$1" "$2" >/dev/null 2>&1; then ok "$3"
	else bad "$3"; fi
}
qcheck() {
	if qemu-img check -q "$1" >/dev/null 2>&1; then ok "qemu-img check clean: $2"
	else bad "qemu-img check after $2: $(qemu-img check "$1" 2>&1 | tail -3)"; fi
}
stat_ok() {
	python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
if not eval(sys.argv[2]):
    print(d, file=sys.stderr); sys.exit(1)
PY
}

expect_exit 0 "init" "$VMB" init "$R"
qemu-img create -q -f qcow2 "$IMG" 1G
qemu-io -c "write -P 1 0 64M" -c "write -P 2 500M 32M" "$IMG" >/dev/null
expect_exit 0 "full backup" "$VMB" backup "$R" "$IMG" --vm vm --json
raw "$IMG" "$T/s1.raw"
expect_exit 0 "snapshot create s1" "$VMB" snapshot create "$IMG" s1
qcheck "$IMG" "create"
check "IMAGE is an overlay over IMAGE.s1 (relative name)" \
	sh -c "qemu-img info '$IMG' | grep -q 'backing file: vm.qcow2.s1'"
check "the frozen layer is read-only" test ! -w "$IMG.s1" -o "$(id -u)" = 0 -a "$(stat -c %a "$IMG.s1")" = 444
same "$IMG" "$T/s1.raw" "create changes no data"
for i in 0 1 2 3 4 5 6 7; do
	qemu-io -c "write -P $((30 + i)) $((i * 120 + 5))M 1M" "$IMG" >/dev/null
done
expect_exit 0 "incremental after create" "$VMB" backup "$R" "$IMG" --vm vm --json
check "cbt overlay (or bitmap), bytes_read <= 4 x changed" stat_ok "$T/out" \
	'd["cbt"] in ("overlay", "qcow2-bitmap") and 0 < d["bytes_read"] <= 32 * 1048576'
rm -rf "$T/rs"
"$VMB" restore "$R" vm@latest --to "$T/rs" --format raw >/dev/null 2>&1
same "$IMG" "$T/rs/vm.img" "the incremental restores the current image"
qcheck "$IMG" "backup of an overlay"
# the next one: through the bitmap vmb added to the overlay
qemu-io -c "write -P 50 300M 1M" "$IMG" >/dev/null
expect_exit 0 "second incremental" "$VMB" backup "$R" "$IMG" --vm vm --json
check "cbt qcow2-bitmap on the overlay" stat_ok "$T/out" \
	'd["cbt"] == "qcow2-bitmap" and d["bytes_read"] <= 4 * 1048576'

raw "$IMG" "$T/s2.raw"
expect_exit 0 "snapshot create s2" "$VMB" snapshot create "$IMG" s2
qemu-io -c "write -P 60 2M 1M" -c "write -z 0 64k" -c "write -P 61 600M 64k" "$IMG" >/dev/null
raw "$IMG" "$T/cur.raw"
expect_exit 0 "snapshot list" "$VMB" snapshot list "$IMG" --json
check "list: s1 then s2" python3 -c '
import json,sys; l=json.load(open(sys.argv[1]))
assert [x["name"] for x in l] == ["s1","s2"] and all(x["created"] > 0 for x in l), l' "$T/out"
expect_exit 1 "duplicate name refused" "$VMB" snapshot create "$IMG" s1
one_line "duplicate name"
expect_exit 2 "missing NAME is a usage error" "$VMB" snapshot create "$IMG"

expect_exit 0 "delete s2 (merge into the layer above)" "$VMB" snapshot delete "$IMG" s2
qcheck "$IMG" "delete s2"
same "$IMG" "$T/cur.raw" "delete keeps the current state"
check "s2's layer is gone" test ! -e "$IMG.s2"
same "$IMG.s1" "$T/s1.raw" "s1 is intact"
expect_exit 0 "revert s1" "$VMB" snapshot revert "$IMG" s1
qcheck "$IMG" "revert"
same "$IMG" "$T/s1.raw" "revert restores s1's state"
qemu-io -c "write -P 70 5M 1M" "$IMG" >/dev/null
raw "$IMG" "$T/cur2.raw"
expect_exit 0 "delete s1 (the base)" "$VMB" snapshot delete "$IMG" s1
qcheck "$IMG" "delete s1"
same "$IMG" "$T/cur2.raw" "deleting the base keeps the current state"
check "no backing file left" sh -c "! qemu-img info '$IMG' | grep -q 'backing file'"
expect_exit 0 "list is empty" "$VMB" snapshot list "$IMG" --json
check "no snapshots" test "$(cat "$T/out")" = "[]"

# ---- revert to an older snapshot drops the newer ones ----
raw "$IMG" "$T/a.raw"
"$VMB" snapshot create "$IMG" a >/dev/null
qemu-io -c "write -P 80 7M 1M" "$IMG" >/dev/null
"$VMB" snapshot create "$IMG" b >/dev/null
qemu-io -c "write -P 81 8M 1M" "$IMG" >/dev/null
expect_exit 0 "revert a over b" "$VMB" snapshot revert "$IMG" a
same "$IMG" "$T/a.raw" "revert to the older snapshot"
check "b is gone" test ! -e "$IMG.b"
"$VMB" snapshot list "$IMG" --json >"$T/l"
check "only a is listed" python3 -c 'import json,sys; assert [x["name"] for x in json.load(open(sys.argv[1]))]==["a"]' "$T/l"
"$VMB" snapshot delete "$IMG" a >/dev/null

# ---- crashes ----
crash() { # crash STEP DESC CMD...
	local step=$1 d=$2; shift 2
	VMB_TEST_CRASH_AT=$step "$@" >/dev/null 2>&1
	local rc=$?
	[ $rc = 99 ] || bad "$d: step $step not reached (exit $rc)"
}
for step in layer-data-written snap-overlay-written snap-linked snap-renamed snap-sidecar; do
	raw "$IMG" "$T/before.raw"
	crash $step "create" "$VMB" snapshot create "$IMG" c1
	qcheck "$IMG" "create killed at $step"
	same "$IMG" "$T/before.raw" "create killed at $step: data intact"
	check "create killed at $step: QEMU opens it" qemu-io -c "read 0 64k" "$IMG"
	# the user retries: it works, and a delete cleans up
	if [ -e "$T/vm.qcow2.c1" ] && "$VMB" snapshot list "$IMG" | grep -q '^c1 '; then
		expect_exit 0 "after $step: snapshot exists; delete it" "$VMB" snapshot delete "$IMG" c1
	else
		expect_exit 0 "after $step: retry create" "$VMB" snapshot create "$IMG" c1
		expect_exit 0 "after $step: delete" "$VMB" snapshot delete "$IMG" c1
	fi
	same "$IMG" "$T/before.raw" "after $step: data intact after cleanup"
	qcheck "$IMG" "cleanup after $step"
	check "after $step: no leftovers" sh -c "! ls '$T' | grep -q 'vm.qcow2\.\(c1\|vmbtmp\)'"
done
"$VMB" snapshot create "$IMG" d1 >/dev/null
qemu-io -c "write -P 90 9M 1M" "$IMG" >/dev/null
for step in layer-data-written delete-merged delete-renamed delete-sidecar; do
	raw "$IMG" "$T/before.raw"
	raw "$IMG.d1" "$T/d1.raw"
	crash $step "delete" "$VMB" snapshot delete "$IMG" d1
	qcheck "$IMG" "delete killed at $step"
	same "$IMG" "$T/before.raw" "delete killed at $step: data intact"
	if "$VMB" snapshot list "$IMG" | grep -q '^d1 '; then
		same "$IMG.d1" "$T/d1.raw" "delete killed at $step: d1 intact"
		expect_exit 0 "after $step: retry delete" "$VMB" snapshot delete "$IMG" d1
	fi
	same "$IMG" "$T/before.raw" "after $step: data intact"
	# an orphan layer left by the crash is removed by the next operation
	expect_exit 0 "after $step: create again" "$VMB" snapshot create "$IMG" d1
	check "after $step: no leftovers" sh -c "! ls '$T' | grep -q 'vmbtmp'"
	same "$IMG.d1" "$T/before.raw" "after $step: the new d1 is the current state"
	qemu-io -c "write -P 91 10M 1M" "$IMG" >/dev/null
done
"$VMB" snapshot delete "$IMG" d1 >/dev/null

# ---- a running QEMU ----
if command -v qemu-nbd >/dev/null; then
	qemu-nbd -f qcow2 -t -k "$T/nbd.sock" "$IMG" & NBD=$!
	cleanup_hooks+=("kill $NBD 2>/dev/null")
	sleep 1
	expect_exit 1 "a running VM's image is refused" "$VMB" snapshot create "$IMG" live
	one_line "running VM"
	check "the message says it is in use" grep -q "in use" "$T/err"
	kill $NBD; wait $NBD 2>/dev/null
fi

# ---- VDI: a qcow2 overlay on demand ----
qemu-img create -q -f vdi "$T/d.vdi" 64M
qemu-io -f vdi -c "write -P 5 1M 2M" "$T/d.vdi" >/dev/null
raw "$T/d.vdi" "$T/vdi.raw"
expect_exit 1 "a vmdk overlay for a vdi is refused" "$VMB" snapshot create "$T/d.vdi" v1 --format vmdk
one_line "vdi"
expect_exit 0 "vdi with --format qcow2" "$VMB" snapshot create "$T/d.vdi" v1 --format qcow2
check "vdi overlay has a vdi backing" sh -c "qemu-img info '$T/d.vdi' | grep -q 'backing file format: vdi'"
same "$T/d.vdi" "$T/vdi.raw" "vdi overlay shows the same data"
qemu-io -f qcow2 -c "write -P 6 10M 1M" "$T/d.vdi" >/dev/null
raw "$T/d.vdi" "$T/vdi2.raw"
expect_exit 0 "vdi: revert" "$VMB" snapshot revert "$T/d.vdi" v1
same "$T/d.vdi" "$T/vdi.raw" "vdi: revert restores"
qemu-io -f qcow2 -c "write -P 6 10M 1M" "$T/d.vdi" >/dev/null
expect_exit 0 "vdi: delete" "$VMB" snapshot delete "$T/d.vdi" v1
same "$T/d.vdi" "$T/vdi2.raw" "vdi: delete keeps the current state"
finish
