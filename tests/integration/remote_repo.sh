#!/bin/bash
# Repositories on remote targets: vmb init/backup/restore/check against
# S3 (s3rver) and NFS (nfs-ganesha, v3 and v4) started by tests/services/.
# Byte-identical restores, an unchanged re-backup stores nothing new, and a
# server that dies during a backup makes vmb exit 1 with one line naming
# the target while no partial snapshot becomes visible.
. "$TESTLIB"
SVC=$SRCDIR/tests/services
D=$T/svc
mkdir -p "$D"
PROXY_PIDS=()
stop_all() {
	for p in "${PROXY_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	"$SVC/s3.sh" stop "$D"
	"$SVC/nfs.sh" stop "$D"
}
cleanup_hooks+=("stop_all")
[ -x "$VMB" ] || { bad "vmb binary $VMB missing"; finish; }
"$SVC/s3.sh" start "$D" || { bad "the S3 server (s3rver) did not start"; finish; }
"$SVC/nfs.sh" start "$D" || { bad "the NFS server (nfs-ganesha) did not start"; finish; }
. "$D/env"
export VMB_S3_RETRIES=2 VMB_S3_RETRY_DELAY_MS=20 VMB_S3_CONNECT_TIMEOUT=2
export VMB_S3_LOW_SPEED_TIME=5 VMB_NFS_TIMEOUT=5

# a 24 MiB disk: random data, a zero hole, a repeated block
python3 - "$T/disk.raw" <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    f.write(os.urandom(8 << 20))
    f.write(bytes(8 << 20))
    blk = os.urandom(1 << 20)
    for _ in range(8):
        f.write(blk)
PY

snap_count() { # snap_count REPO -> number of snapshots (or -1)
	timeout 120 "$VMB" snapshots "$1" --json 2>/dev/null | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
    print(len(d if isinstance(d, list) else d.get("snapshots", [])))
except Exception:
    print(-1)'
}

roundtrip() { # roundtrip NAME REPO
	local name=$1 repo=$2 out=$T/out-$1
	expect_exit 0 "$name: init" timeout 120 "$VMB" init "$repo"
	expect_exit 0 "$name: backup" timeout 300 "$VMB" backup "$repo" "$T/disk.raw" --json
	cp "$T/out" "$T/b1-$name.json"
	expect_exit 0 "$name: restore" timeout 300 "$VMB" restore "$repo" latest --to "$out"
	local f; f=$(ls "$out"/disk.* 2>/dev/null | head -1)
	if [ -n "$f" ] && cmp -s "$T/disk.raw" "$f"; then ok "$name: restore is byte-identical"
	else bad "$name: restored disk differs or is missing ($f)"; fi
	expect_exit 0 "$name: check" timeout 300 "$VMB" check "$repo"
	expect_exit 0 "$name: unchanged re-backup" timeout 300 "$VMB" backup "$repo" "$T/disk.raw" --json
	cp "$T/out" "$T/b2-$name.json"
	local cn bs
	cn=$(json_field "$T/b2-$name.json" chunks_new 2>/dev/null)
	bs=$(json_field "$T/b2-$name.json" bytes_stored 2>/dev/null)
	if [ "$cn" = 0 ] && [ -n "$bs" ] && [ "$bs" -lt 262144 ]; then
		ok "$name: unchanged re-backup uploads no chunk (bytes_stored $bs)"
	else
		bad "$name: re-backup chunks_new=$cn bytes_stored=$bs"
	fi
	[ "$(snap_count "$repo")" = 2 ] && ok "$name: 2 snapshots" ||
		bad "$name: snapshot count $(snap_count "$repo"), want 2"
}

S3REPO="s3:http://127.0.0.1:$VMB_TEST_S3_PORT/$VMB_TEST_S3_BUCKET/repos/r1"
roundtrip s3 "$S3REPO"
roundtrip nfs3 "nfs://127.0.0.1$VMB_TEST_NFS_EXPORT/repos/r1?version=3&nfsport=$VMB_TEST_NFS_PORT&mountport=$VMB_TEST_NFS_MOUNT_PORT"
roundtrip nfs4 "nfs://127.0.0.1/vmb/repos/r4?version=4&nfsport=$VMB_TEST_NFS_PORT"

# ---- S3 server dying during a backup (a proxy that exits after N
# requests), then the same repository directly: no partial snapshot ----
python3 - "$T/disk2.raw" <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    f.write(os.urandom(32 << 20))
PY
python3 "$SVC/faultproxy.py" --upstream "127.0.0.1:$VMB_TEST_S3_PORT" \
	--die-after 12 --port-file "$D/die.port" >"$D/die.log" 2>&1 </dev/null &
PROXY_PIDS+=($!)
for ((i = 0; i < 100; i++)); do [ -s "$D/die.port" ] && break; sleep 0.1; done
VIA="s3:http://127.0.0.1:$(cat "$D/die.port")/$VMB_TEST_S3_BUCKET/repos/r1"
start=$(date +%s)
expect_exit 1 "S3 server gone mid-backup" timeout 120 "$VMB" backup "$VIA" "$T/disk2.raw"
end=$(date +%s)
one_line "S3 server gone mid-backup"
grep -qF "$VIA" "$T/err" && ok "the error names the target ($((end - start)) s)" ||
	bad "the error does not name $VIA: $(cat "$T/err")"
[ "$(snap_count "$S3REPO")" = 2 ] && ok "S3: no partial snapshot visible" ||
	bad "S3: snapshot count $(snap_count "$S3REPO") after the failed backup, want 2"
expect_exit 0 "S3: check after the failed backup" timeout 300 "$VMB" check "$S3REPO"

# ---- NFS server gone: vmb fails with one line, quickly ----
N3="nfs://127.0.0.1$VMB_TEST_NFS_EXPORT/repos/r1?version=3&nfsport=$VMB_TEST_NFS_PORT&mountport=$VMB_TEST_NFS_MOUNT_PORT"
"$SVC/nfs.sh" stop "$D"
start=$(date +%s)
expect_exit 1 "NFS server gone" timeout 120 "$VMB" backup "$N3" "$T/disk2.raw"
end=$(date +%s)
one_line "NFS server gone"
grep -qF "$N3" "$T/err" && grep -q "nfs server 127.0.0.1" "$T/err" &&
	ok "the error names the NFS target ($((end - start)) s)" ||
	bad "the error does not name $N3: $(cat "$T/err")"
# the server comes back (new ports, same export): the repository is whole
"$SVC/nfs.sh" start "$D" >/dev/null || bad "NFS restart failed"
. "$D/env"
N3="nfs://127.0.0.1$VMB_TEST_NFS_EXPORT/repos/r1?version=3&nfsport=$VMB_TEST_NFS_PORT&mountport=$VMB_TEST_NFS_MOUNT_PORT"
[ "$(snap_count "$N3")" = 2 ] && ok "NFS: no partial snapshot visible" ||
	bad "NFS: snapshot count $(snap_count "$N3"), want 2"
expect_exit 0 "NFS: check after the outage" timeout 300 "$VMB" check "$N3"
finish
