# Changed-block tracking (docs/cbt.md): qcow2 persistent bitmaps that vmb
# adds itself, their fallbacks, and fingerprints for VDI, VMDK and raw.
#  - 1 GiB qcow2, 8 writes of 1 MiB in 8 different 4 MiB chunks: the
#    incremental reports cbt "qcow2-bitmap" and reads at most the 8 dirty
#    chunks (bytes_read <= 4 x the changed bytes = 8 x 4 MiB); its restore
#    equals the image; qemu-img check is clean after every step.
#  - ten incrementals: every snapshot restores the image as it was then.
#  - an in_use bitmap, a deleted bitmap, a bitmap of another generation,
#    a running QEMU: cbt "fingerprint", a warning, a correct restore.
#  - VDI, VMDK, raw: cbt "fingerprint", bytes_new = the changed chunks.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null ||
	skip "qemu-img and qemu-io are needed"

R=$T/repo
IMG=$T/vm1.qcow2
MiB=1048576
qcheck() { # qemu-img check exit 0 (no errors, no leaks)
	if qemu-img check -q "$1" >/dev/null 2>&1; then ok "qemu-img check clean: $2"
	else bad "qemu-img check of $1 after $2: $(qemu-img check "$1" 2>&1 | tail -3)"; fi
}
stat_ok() { # stat_ok FILE PYTHON-EXPR (d = the backup's JSON)
	python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
if not eval(sys.argv[2]):
    print(d, file=sys.stderr); sys.exit(1)
PY
}
restore_same() { # restore_same SNAP IMAGE-OR-RAW DESC [REPO]
	rm -rf "$T/rs"
	if "$VMB" restore "${4:-$R}" "$1" --to "$T/rs" --format raw >/dev/null 2>"$T/rerr" &&
		qemu-img compare -q "$T/rs/"* "$2" >/dev/null 2>&1; then ok "$3"
	else bad "$3: $(cat "$T/rerr")"; fi
}
bitmap_names() { qemu-img info --output=json "$1" | python3 -c '
import json,sys; d=json.load(sys.stdin)
print(" ".join(b["name"]+":"+",".join(b["flags"]) for b in d.get("format-specific",{}).get("data",{}).get("bitmaps",[])))'; }

expect_exit 0 "init" "$VMB" init "$R"
qemu-img create -q -f qcow2 "$IMG" 1G
qemu-io -c "write -P 1 0 64M" -c "write -P 2 300M 32M" -c "write -P 3 900M 16M" "$IMG" >/dev/null
expect_exit 0 "full backup of a 1 GiB qcow2" "$VMB" backup "$R" "$IMG" --vm vm1 --json
cp "$T/out" "$T/b0"
check "full backup: cbt none" stat_ok "$T/b0" 'd["cbt"] == "none"'
qcheck "$IMG" "full backup"
BM=$(bitmap_names "$IMG")
check "vmb added an auto bitmap QEMU lists ($BM)" python3 -c '
import sys; n=sys.argv[1].split(); assert len(n)==1 and n[0].startswith("vmb-1-") and n[0].endswith(":auto"), n' "$BM"

# 8 MiB scattered: 8 x 1 MiB, each in its own 4 MiB chunk
for i in 0 1 2 3 4 5 6 7; do
	qemu-io -c "write -P $((40 + i)) $((i * 120 + 5))M 1M" "$IMG" >/dev/null
done
check "QEMU recorded the writes in the bitmap" test -n "$(bitmap_names "$IMG")"
expect_exit 0 "incremental backup" "$VMB" backup "$R" "$IMG" --vm vm1 --json
cp "$T/out" "$T/b1"
check "incremental: cbt qcow2-bitmap, bytes_read <= 4 x changed" stat_ok "$T/b1" \
	'd["cbt"] == "qcow2-bitmap" and 0 < d["bytes_read"] <= 32 * 1048576'
check "no warning on the bitmap path" test ! -s "$T/err"
qcheck "$IMG" "incremental backup"
restore_same vm1@latest "$IMG" "incremental restores the current image"
BM=$(bitmap_names "$IMG")
check "a new generation, the old kept until the next backup ($BM)" python3 -c '
import sys; n=sys.argv[1].split(); assert len(n)==2 and any(x.startswith("vmb-2-") for x in n), n' "$BM"

# ---- ten incrementals on a 256 MiB image: restore each state ----
IMG2=$T/vm2.qcow2
qemu-img create -q -f qcow2 "$IMG2" 256M
qemu-io -c "write -P 9 0 32M" "$IMG2" >/dev/null
expect_exit 0 "chain: full backup" "$VMB" backup "$R" "$IMG2" --vm vm2 --json
json_field "$T/out" snapshot >"$T/snap.0"
qemu-img convert -O raw "$IMG2" "$T/state.0"
for k in 1 2 3 4 5 6 7 8 9 10; do
	qemu-io -c "write -P $((100 + k)) $(((k * 23) % 250))M 512k" \
		-c "write -z $(((k * 7) % 32))M 64k" "$IMG2" >/dev/null
	"$VMB" backup "$R" "$IMG2" --vm vm2 --json >"$T/out" 2>"$T/err" || bad "chain backup $k: $(cat "$T/err")"
	stat_ok "$T/out" 'd["cbt"] == "qcow2-bitmap" and d["bytes_read"] <= 8 * 1048576' ||
		bad "chain backup $k did not use the bitmap"
	json_field "$T/out" snapshot >"$T/snap.$k"
	qemu-img convert -O raw "$IMG2" "$T/state.$k" # sparse copy of the state
done
ok "ten incrementals through the bitmap"
qcheck "$IMG2" "ten incrementals"
for k in 0 3 6 9 10 1 2 4 5 7 8; do
	restore_same "$(cat "$T/snap.$k")" "$T/state.$k" "chain snapshot $k restores the image as it was"
done

# ---- fallbacks ----
set_in_use() { # set the in_use flag of bitmap $2 in $1 (a crashed QEMU)
	python3 - "$1" "$2" <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b"); h = f.read(65536)
hl = struct.unpack(">I", h[100:104])[0]; off = hl
while True:
    t, l = struct.unpack(">II", h[off:off + 8])
    if t == 0: sys.exit("no bitmaps extension")
    if t == 0x23852875:
        nb, _, size, doff = struct.unpack(">IIQQ", h[off + 8:off + 32]); break
    off += 8 + (l + 7) // 8 * 8
f.seek(doff); d = f.read(size); p = 0
for _ in range(nb):
    flags = struct.unpack(">I", d[p + 12:p + 16])[0]
    nl, ex = struct.unpack(">HI", d[p + 18:p + 24])
    name = d[p + 24 + ex:p + 24 + ex + nl].decode()
    if name == sys.argv[2]:
        f.seek(doff + p + 12); f.write(struct.pack(">I", flags | 1)); sys.exit(0)
    p += (24 + ex + nl + 7) // 8 * 8
sys.exit("bitmap not found")
PY
}
recorded() { # the bitmap the latest manifest recorded: the newest vmb-N
	bitmap_names "$1" | tr ' ' '\n' | sed 's/:.*//' | sort -t- -k2,2n | tail -1
}
fallback() { # fallback DESC WARNING-REGEX
	"$VMB" backup "$R" "$IMG" --vm vm1 --json >"$T/out" 2>"$T/err"
	if [ $? = 0 ] && stat_ok "$T/out" 'd["cbt"] == "fingerprint"' &&
		grep -Eqi "warning.*($2)" "$T/err"; then ok "$1: fingerprint with a warning: $(head -c 300 "$T/err")"
	else bad "$1: $(cat "$T/out") $(cat "$T/err")"; fi
	restore_same vm1@latest "$IMG" "$1: restore is correct"
	qcheck "$IMG" "$1"
	"$VMB" backup "$R" "$IMG" --vm vm1 --json >"$T/out" 2>"$T/err"
	qemu-io -c "write -P 77 $((RANDOM % 1000))M 64k" "$IMG" >/dev/null
	"$VMB" backup "$R" "$IMG" --vm vm1 --json >"$T/out" 2>"$T/err"
	check "$1: the next backups use a bitmap again" stat_ok "$T/out" 'd["cbt"] == "qcow2-bitmap"'
	restore_same vm1@latest "$IMG" "$1: and restore correctly"
}

# in_use: QEMU died with the image open
qemu-io -c "write -P 61 17M 1M" "$IMG" >/dev/null
set_in_use "$IMG" "$(recorded "$IMG")" || bad "could not set in_use"
fallback "in_use bitmap" "in_use"

# deleted
qemu-io -c "write -P 62 517M 1M" "$IMG" >/dev/null
qemu-img bitmap --remove "$IMG" "$(recorded "$IMG")"
fallback "deleted bitmap" "missing"

# another generation: an older copy of the image comes back
cp --sparse=always "$IMG" "$T/older.qcow2"
qemu-io -c "write -P 63 600M 1M" "$IMG" >/dev/null
expect_exit 0 "backup before the old copy returns" "$VMB" backup "$R" "$IMG" --vm vm1 --json
cp --sparse=always "$T/older.qcow2" "$IMG"
qemu-io -c "write -P 64 700M 1M" "$IMG" >/dev/null
fallback "bitmap of another generation" "another generation"

# a running QEMU (qemu-nbd holds the image like a VM does)
if command -v qemu-nbd >/dev/null; then
	qemu-io -c "write -P 65 800M 1M" "$IMG" >/dev/null
	qemu-nbd -f qcow2 -t -k "$T/nbd.sock" "$IMG" & NBD=$!
	cleanup_hooks+=("kill $NBD 2>/dev/null")
	sleep 1
	"$VMB" backup "$R" "$IMG" --vm vm1 --json >"$T/out" 2>"$T/err"
	if [ $? = 0 ] && stat_ok "$T/out" 'd["cbt"] == "fingerprint"' && grep -qi "warning.*in use" "$T/err"
	then ok "running QEMU: fingerprint with a warning: $(cat "$T/err")"
	else bad "running QEMU: $(cat "$T/out") $(cat "$T/err")"; fi
	kill $NBD; wait $NBD 2>/dev/null
	restore_same vm1@latest "$IMG" "running QEMU: restore is correct"
	qemu-io -c "write -P 66 810M 1M" "$IMG" >/dev/null
	"$VMB" backup "$R" "$IMG" --vm vm1 --json >"$T/out" 2>"$T/err"
	check "after the VM stops, the recorded bitmap is used again" stat_ok "$T/out" 'd["cbt"] == "qcow2-bitmap"'
	restore_same vm1@latest "$IMG" "and restores correctly"
	qcheck "$IMG" "running QEMU"
fi

# ---- VDI, VMDK, raw: fingerprints ----
R2=$T/repo2
expect_exit 0 "init 1 MiB chunks" "$VMB" init "$R2" --chunk-size 1M
n=0
for fmt in vdi vmdk raw; do
	n=$((n + 1))
	F=$T/d.$fmt
	qemu-img create -q -f qcow2 "$T/src.qcow2" 128M
	qemu-io -c "write -P 1 0 16M" -c "write -P 2 64M 8M" "$T/src.qcow2" >/dev/null
	qemu-img convert -O $fmt "$T/src.qcow2" "$F"
	rm -f "$T/src.qcow2"
	expect_exit 0 "$fmt: full backup" "$VMB" backup "$R2" "$F" --vm "v$fmt" --json
	for i in 0 1 2 3; do
		qemu-io -f $fmt -c "write -P $((150 + 10 * n + i)) $((i * 20 + 3))M 1M" "$F" >/dev/null
	done
	qemu-io -f $fmt -c "write -P $((190 + n)) 100M 1k" "$F" >/dev/null 2>&1 # a partial chunk
	expect_exit 0 "$fmt: incremental" "$VMB" backup "$R2" "$F" --vm "v$fmt" --json
	check "$fmt: cbt fingerprint, bytes_new = the 5 changed chunks" stat_ok "$T/out" \
		'd["cbt"] == "fingerprint" and 4 * 1048576 <= d["bytes_new"] <= 5 * 1048576'
	restore_same "v$fmt@latest" "$F" "$fmt: incremental restores the image" "$R2"
done
finish
