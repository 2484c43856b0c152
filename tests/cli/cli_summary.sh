#!/bin/bash
# Summaries a reader can trust: the backup counters of a sparse image add
# up (read <= allocated, new <= allocated, stored <= new for compressible
# data), the text summary names them, and restore --json prints the id the
# snapshot reference resolved to (the typed one in snapshot_ref).
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
R=$T/repo
"$VMB" init "$R" --chunk-size 1M >/dev/null
# 64 MiB, sparse: scattered 4 KiB text blocks, so chunks hold holes
truncate -s 64M "$T/sparse.img"
for i in $(seq 0 37); do
	yes "block $i of guest text" | head -c 4096 |
		dd of="$T/sparse.img" bs=4096 seek=$((i * 431 + 7)) conv=notrunc status=none
done
expect_exit 0 "backup of a sparse image --json" "$VMB" backup "$R" "$T/sparse.img" --vm sp --json
cp "$T/out" "$T/b.json"
check "counters add up: read <= allocated, new <= allocated, stored <= new" python3 - "$T/b.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k in ("bytes_total", "bytes_read", "bytes_allocated", "bytes_new", "bytes_stored"):
    assert isinstance(d[k], int), (k, d)
assert 0 < d["bytes_read"] <= d["bytes_allocated"] <= d["bytes_total"], d
assert 0 < d["bytes_new"] <= d["bytes_allocated"], d
assert 0 < d["bytes_stored"] <= d["bytes_new"], d
# the case the issue found: new exceeds read, but never allocated
assert d["bytes_read"] == 38 * 4096, d
assert d["bytes_new"] > d["bytes_read"], d
PY
expect_exit 0 "backup text summary" "$VMB" backup "$R" "$T/sparse.img" --vm sp --full
check "text summary says data read in chunks, of them new" \
	grep -Eq "read .* of data in .* of chunks, .* of them new; .* stored" "$T/out"
S=$(json_field "$T/b.json" snapshot)
expect_exit 0 "restore sp@latest --json" "$VMB" restore "$R" "sp@latest" --to "$T/r1" --json
check "restore --json: snapshot is the resolved id, snapshot_ref as typed" python3 - "$T/out" "$R" <<'PY'
import json, subprocess, sys, os
d = json.load(open(sys.argv[1]))
snaps = json.loads(subprocess.check_output([os.environ["VMB"], "snapshots", sys.argv[2], "--json"]))
latest = snaps[-1]["id"]  # listed oldest first
assert d["snapshot"] == latest, (d, latest)
assert d["snapshot_ref"] == "sp@latest", d
PY
expect_exit 0 "restore by prefix --json" "$VMB" restore "$R" "${S:0:8}" --to "$T/r2" --json
check "restore by prefix: the full id" test "$(json_field "$T/out" snapshot)" = "$S"
check "restored image is exact" cmp "$T/sparse.img" "$T/r2/sparse.img"
finish
