# vmb snapshot on .vmdk and .vdi images: native overlays.
#  - VMDK (monolithicSparse and streamOptimized bases): create makes a
#    monolithicSparse delta (parentFileNameHint = the frozen file,
#    parentCID = its CID) that qemu-img/qemu-io open, check and write;
#    backups after create read only the overlay (cbt "overlay");
#    delete (a delta merge and a base merge), revert, list; kill -9 at
#    every step leaves an image qemu-img checks with its data intact;
#  - VDI: create makes a differencing image (type 4, parent uuid, every
#    block free).  QEMU cannot open VDI differencing images, so data is
#    written with a small python writer and read back through vmb
#    (backup + restore to raw); once the base is merged, qemu-img reads
#    the plain VDI again;
#  - a multi-file VMDK is refused without --format qcow2.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null ||
	skip "qemu-img and qemu-io are needed"

R=$T/repo
expect_exit 0 "init" "$VMB" init "$R"
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
names() { # names IMAGE: the snapshot names, one line
	"$VMB" snapshot list "$1" --json | python3 -c '
import json,sys; print(" ".join(x["name"] for x in json.load(sys.stdin)))'
}
crash() { # crash STEP DESC CMD...
	local step=$1 d=$2; shift 2
	VMB_TEST_CRASH_AT=$step "$@" >/dev/null 2>&1
	local rc=$?
	[ $rc = 99 ] || bad "$d: step $step not reached (exit $rc)"
}
# the embedded descriptor of a sparse VMDK file
vdesc() {
	python3 - "$1" <<'PY'
import struct, sys
f = open(sys.argv[1], 'rb'); h = f.read(512)
if struct.unpack_from('<Q', h, 56)[0] == 0xffffffffffffffff:
    pass  # stream: the descriptor offset is in the header too
sec, cnt = struct.unpack_from('<QQ', h, 28)
f.seek(sec * 512); print(f.read(cnt * 512).split(b'\0')[0].decode())
PY
}
dkey() { vdesc "$1" | sed -n "s/^$2=\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p"; }
extent_is() { vdesc "$1" | grep -q "^RW [0-9]* SPARSE \"$2\"\$"; }
# CIDs are hex numbers (QEMU does not always pad them to 8 digits)
cid_eq() { [ -n "$1" ] && [ -n "$2" ] && [ $((16#$1)) = $((16#$2)) ]; }

# =================================================================
# VMDK
# =================================================================
for sub in monolithicSparse streamOptimized; do
	IMG=$T/m-$sub.vmdk
	B=m-$sub.vmdk
	rm -f "$T/src.raw"
	qemu-img create -q -f raw "$T/src.raw" 64M
	qemu-io -f raw -c "write -P 1 0 8M" -c "write -P 2 40M 4M" "$T/src.raw" >/dev/null
	qemu-img convert -O vmdk -o subformat=$sub "$T/src.raw" "$IMG"
	expect_exit 0 "$sub: full backup" "$VMB" backup "$R" "$IMG" --vm "v$sub" --json
	raw "$IMG" "$T/s1.raw"
	expect_exit 0 "$sub: snapshot create s1" "$VMB" snapshot create "$IMG" s1
	check "$sub: IMAGE is a delta over IMAGE.s1" \
		sh -c "qemu-img info '$IMG' | grep -q 'backing file: $B.s1'"
	check "$sub: createType monolithicSparse" test "$(dkey "$IMG" createType)" = monolithicSparse
	check "$sub: parentFileNameHint" test "$(dkey "$IMG" parentFileNameHint)" = "$B.s1"
	check "$sub: the extent line names IMAGE" extent_is "$IMG" "$B"
	check "$sub: parentCID is the frozen file's CID" \
		cid_eq "$(dkey "$IMG" parentCID)" "$(dkey "$IMG.s1" CID)"
	check "$sub: the delta has no grain allocated" sh -c \
		"qemu-img map --output=json '$IMG' | python3 -c '
import json,sys; assert all(e[\"depth\"] >= 1 or not e[\"data\"] for e in json.load(sys.stdin))'"
	qcheck "$IMG" "$sub: create"
	same "$IMG" "$T/s1.raw" "$sub: create changes no data"
	check "$sub: the frozen layer is read-only" test ! -w "$IMG.s1" -o "$(id -u)" = 0 -a "$(stat -c %a "$IMG.s1")" = 444
	qemu-io -f vmdk -c "write -P 0x55 1M 64k" -c "write -P 0x56 20M 1M" \
		-c "write -P 0x57 63M 512" "$IMG" >/dev/null
	qcheck "$IMG" "$sub: qemu-io writes into the delta"
	raw "$IMG" "$T/cur.raw"
	cp "$T/s1.raw" "$T/exp.raw"
	python3 - "$T/exp.raw" <<'PY'
import sys
f = open(sys.argv[1], 'r+b')
for off, n, b in ((1 << 20, 65536, 0x55), (20 << 20, 1 << 20, 0x56), (63 << 20, 512, 0x57)):
    f.seek(off); f.write(bytes([b]) * n)
PY
	check "$sub: the delta reads as expected" cmp -s "$T/cur.raw" "$T/exp.raw"
	same "$IMG.s1" "$T/s1.raw" "$sub: the frozen layer is unchanged"
	expect_exit 0 "$sub: incremental after create" "$VMB" backup "$R" "$IMG" --vm "v$sub" --json
	check "$sub: cbt overlay, small bytes_read" stat_ok "$T/out" \
		'd["cbt"] == "overlay" and 0 < d["bytes_read"] <= 8 * 1048576'
	rm -rf "$T/rs"
	"$VMB" restore "$R" "v$sub@latest" --to "$T/rs" --format raw >/dev/null 2>&1
	check "$sub: the incremental restores the current image" cmp -s "$T/rs/"* "$T/cur.raw"
	check "$sub: list shows s1" test "$(names "$IMG")" = s1

	# a second snapshot; delete it (a delta merged into a delta)
	expect_exit 0 "$sub: create s2" "$VMB" snapshot create "$IMG" s2
	qemu-io -f vmdk -c "write -P 0x60 2M 1M" -c "write -z 0 64k" \
		-c "write -z 40M 64k" -c "write -P 0x61 50M 64k" "$IMG" >/dev/null
	raw "$IMG" "$T/cur2.raw"
	check "$sub: list shows s1 s2" test "$(names "$IMG")" = "s1 s2"
	expect_exit 0 "$sub: delete s2 (delta merge)" "$VMB" snapshot delete "$IMG" s2
	qcheck "$IMG" "$sub: delete s2"
	same "$IMG" "$T/cur2.raw" "$sub: delete keeps the current state"
	check "$sub: s2's layer is gone" test ! -e "$IMG.s2"
	check "$sub: still a delta over s1" test "$(dkey "$IMG" parentFileNameHint)" = "$B.s1"
	check "$sub: with s1's CID as parentCID" \
		cid_eq "$(dkey "$IMG" parentCID)" "$(dkey "$IMG.s1" CID)"
	same "$IMG.s1" "$T/s1.raw" "$sub: s1 is intact"
	qemu-io -f vmdk -c "write -P 0x62 3M 4k" "$IMG" >/dev/null
	check "$sub: QEMU writes the merged delta" qemu-io -f vmdk -c "read -P 0x62 3M 4k" "$IMG"

	# a middle layer merged under a layer that has a child: CID kept
	expect_exit 0 "$sub: create m1" "$VMB" snapshot create "$IMG" m1
	qemu-io -f vmdk -c "write -P 0x63 4M 64k" "$IMG" >/dev/null
	expect_exit 0 "$sub: create m2" "$VMB" snapshot create "$IMG" m2
	qemu-io -f vmdk -c "write -P 0x64 5M 64k" "$IMG" >/dev/null
	raw "$IMG" "$T/cur3.raw"
	expect_exit 0 "$sub: delete m1 (under m2)" "$VMB" snapshot delete "$IMG" m1
	same "$IMG" "$T/cur3.raw" "$sub: delete m1 keeps the current state"
	check "$sub: m2 still matches its child's parentCID" \
		cid_eq "$(dkey "$IMG" parentCID)" "$(dkey "$IMG.m2" CID)"
	check "$sub: m2 is a delta over s1" test "$(dkey "$IMG.m2" parentFileNameHint)" = "$B.s1"
	qcheck "$IMG" "$sub: delete m1"
	expect_exit 0 "$sub: delete m2" "$VMB" snapshot delete "$IMG" m2
	same "$IMG" "$T/cur3.raw" "$sub: delete m2 keeps the current state"

	expect_exit 0 "$sub: revert s1" "$VMB" snapshot revert "$IMG" s1
	qcheck "$IMG" "$sub: revert"
	same "$IMG" "$T/s1.raw" "$sub: revert restores s1's state"
	check "$sub: reverted IMAGE is a vmdk delta" test "$(dkey "$IMG" parentFileNameHint)" = "$B.s1"
	qemu-io -f vmdk -c "write -P 70 5M 1M" "$IMG" >/dev/null
	raw "$IMG" "$T/cur4.raw"
	expect_exit 0 "$sub: delete s1 (the base)" "$VMB" snapshot delete "$IMG" s1
	qcheck "$IMG" "$sub: delete s1"
	same "$IMG" "$T/cur4.raw" "$sub: deleting the base keeps the current state"
	check "$sub: no backing file left" sh -c "! qemu-img info '$IMG' | grep -q 'backing file'"
	check "$sub: no snapshots" test -z "$(names "$IMG")"
done

# ---- VMDK crashes (monolithicSparse) ----
IMG=$T/m-monolithicSparse.vmdk
for step in layer-data-written snap-overlay-written snap-linked snap-renamed snap-sidecar; do
	raw "$IMG" "$T/before.raw"
	crash $step "vmdk create" "$VMB" snapshot create "$IMG" c1
	qcheck "$IMG" "vmdk create killed at $step"
	same "$IMG" "$T/before.raw" "vmdk create killed at $step: data intact"
	if [ -e "$IMG.c1" ] && names "$IMG" | grep -qw c1; then
		expect_exit 0 "vmdk after $step: delete" "$VMB" snapshot delete "$IMG" c1
	else
		expect_exit 0 "vmdk after $step: retry create" "$VMB" snapshot create "$IMG" c1
		expect_exit 0 "vmdk after $step: delete" "$VMB" snapshot delete "$IMG" c1
	fi
	same "$IMG" "$T/before.raw" "vmdk after $step: data intact after cleanup"
	qcheck "$IMG" "vmdk cleanup after $step"
	check "vmdk after $step: no leftovers" sh -c "! ls -a '$T' | grep -q 'monolithicSparse.vmdk\.\(c1\|vmbtmp\)'"
done
"$VMB" snapshot create "$IMG" d0 >/dev/null
qemu-io -f vmdk -c "write -P 90 9M 1M" "$IMG" >/dev/null
"$VMB" snapshot create "$IMG" d1 >/dev/null
qemu-io -f vmdk -c "write -P 91 10M 1M" -c "write -z 9M 64k" "$IMG" >/dev/null
for step in layer-data-written delete-merged delete-renamed delete-sidecar; do
	raw "$IMG" "$T/before.raw"
	raw "$IMG.d1" "$T/d1.raw"
	crash $step "vmdk delete" "$VMB" snapshot delete "$IMG" d1
	qcheck "$IMG" "vmdk delete killed at $step"
	same "$IMG" "$T/before.raw" "vmdk delete killed at $step: data intact"
	if names "$IMG" | grep -qw d1; then
		same "$IMG.d1" "$T/d1.raw" "vmdk delete killed at $step: d1 intact"
		expect_exit 0 "vmdk after $step: retry delete" "$VMB" snapshot delete "$IMG" d1
	fi
	same "$IMG" "$T/before.raw" "vmdk after $step: data intact"
	expect_exit 0 "vmdk after $step: create again" "$VMB" snapshot create "$IMG" d1
	check "vmdk after $step: no leftovers" sh -c "! ls -a '$T' | grep -q 'vmbtmp'"
	same "$IMG.d1" "$T/before.raw" "vmdk after $step: the new d1 is the current state"
	qemu-io -f vmdk -c "write -P 92 11M 1M" "$IMG" >/dev/null
done
for step in revert-written revert-renamed revert-sidecar; do
	raw "$IMG" "$T/before.raw"
	raw "$IMG.d1" "$T/d1.raw"
	crash $step "vmdk revert" "$VMB" snapshot revert "$IMG" d1
	qcheck "$IMG" "vmdk revert killed at $step"
	raw "$IMG" "$T/after.raw"
	check "vmdk revert killed at $step: old or reverted state" sh -c \
		"cmp -s '$T/after.raw' '$T/before.raw' || cmp -s '$T/after.raw' '$T/d1.raw'"
	expect_exit 0 "vmdk after $step: retry revert" "$VMB" snapshot revert "$IMG" d1
	same "$IMG" "$T/d1.raw" "vmdk after $step: reverted"
	check "vmdk after $step: no leftovers" sh -c "! ls -a '$T' | grep -q 'vmbtmp'"
	qemu-io -f vmdk -c "write -P 93 12M 1M" "$IMG" >/dev/null
done
raw "$IMG" "$T/before.raw"
"$VMB" snapshot delete "$IMG" d1 >/dev/null && "$VMB" snapshot delete "$IMG" d0 >/dev/null
same "$IMG" "$T/before.raw" "vmdk: everything merged back"
check "vmdk: no snapshot files left" sh -c "! ls -a '$T' | grep 'monolithicSparse.vmdk\.' | grep -vq 'vmbsnap.json\$'"

# ---- multi-file VMDK: refused natively, qcow2 on demand ----
qemu-img create -q -f vmdk -o subformat=monolithicFlat "$T/flat.vmdk" 16M
qemu-io -f vmdk -c "write -P 5 1M 1M" "$T/flat.vmdk" >/dev/null
expect_exit 1 "monolithicFlat without --format is refused" "$VMB" snapshot create "$T/flat.vmdk" f1
one_line "monolithicFlat"
check "the message says --format qcow2" grep -q -- "--format qcow2" "$T/err"
expect_exit 1 "--format vdi for a vmdk is refused" "$VMB" snapshot create "$T/flat.vmdk" f1 --format vdi
expect_exit 0 "monolithicFlat with --format qcow2" "$VMB" snapshot create "$T/flat.vmdk" f1 --format qcow2
check "flat: qcow2 overlay with a vmdk backing" sh -c "qemu-img info '$T/flat.vmdk' | grep -q 'backing file format: vmdk'"

# =================================================================
# VDI
# =================================================================
# vwrite IMAGE OFFSET LENGTH BYTE [RAW]: write whole blocks into a VDI
# (any type) the way VirtualBox does, and the same bytes into RAW
vwrite() {
	python3 - "$@" <<'PY'
import struct, sys
path, off, n, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4], 0)
f = open(path, 'r+b'); h = f.read(0x200)
ob, od = struct.unpack_from('<II', h, 0x154)
bs, extra, nb, na = struct.unpack_from('<IIII', h, 0x178)
assert off % bs == 0 and n % bs == 0
for blk in range(off // bs, (off + n) // bs):
    f.seek(ob + 4 * blk); e = struct.unpack('<I', f.read(4))[0]
    if e >= 0xfffffffe:
        e = na; na += 1
    f.seek(od + e * (bs + extra) + extra); f.write(bytes([b]) * bs)
    f.seek(ob + 4 * blk); f.write(struct.pack('<I', e))
f.seek(0x184); f.write(struct.pack('<I', na))
if len(sys.argv) > 5:
    r = open(sys.argv[5], 'r+b'); r.seek(off); r.write(bytes([b]) * n)
PY
}
vhdr() { # vhdr IMAGE FIELD: type|uuid|parent|block|size|nalloc|free
	python3 - "$1" "$2" <<'PY'
import struct, sys
f = open(sys.argv[1], 'rb'); h = f.read(0x200)
ob, = struct.unpack_from('<I', h, 0x154)
bs, extra, nb, na = struct.unpack_from('<IIII', h, 0x178)
f.seek(ob); m = struct.unpack('<%dI' % nb, f.read(4 * nb))
print({'type': struct.unpack_from('<I', h, 0x4c)[0], 'uuid': h[0x188:0x198].hex(),
       'parent': h[0x1a8:0x1b8].hex(), 'block': bs,
       'size': struct.unpack_from('<Q', h, 0x170)[0], 'nalloc': na,
       'free': int(all(e == 0xffffffff for e in m))}[sys.argv[2]])
PY
}
VN=0
vraw() { # vraw IMAGE OUT: the guest content through vmb (backup + restore)
	VN=$((VN + 1))
	rm -rf "$T/vr" "$2"
	"$VMB" backup "$R" "$1" --vm "vr$VN" >/dev/null 2>&1 &&
	"$VMB" restore "$R" "vr$VN@latest" --to "$T/vr" --format raw >/dev/null 2>&1 &&
	mv "$T/vr/"* "$2"
}
vsame() { # vsame IMAGE RAW DESC
	if vraw "$1" "$T/vs.raw" && cmp -s "$T/vs.raw" "$2"; then ok "$3"; else bad "$3"; fi
}

D=$T/d.vdi
rm -f "$T/src.raw"
qemu-img create -q -f raw "$T/src.raw" 32M
qemu-io -f raw -c "write -P 1 0 4M" -c "write -P 2 20M 2M" "$T/src.raw" >/dev/null
qemu-img convert -O vdi "$T/src.raw" "$D"
cp "$T/src.raw" "$T/v1.raw"
expect_exit 0 "vdi: full backup" "$VMB" backup "$R" "$D" --vm vdi --json
expect_exit 0 "vdi: snapshot create s1" "$VMB" snapshot create "$D" s1
check "vdi: IMAGE is a differencing image" test "$(vhdr "$D" type)" = 4
check "vdi: its parent uuid is the frozen file's" test "$(vhdr "$D" parent)" = "$(vhdr "$D.s1" uuid)"
check "vdi: a fresh uuid" test "$(vhdr "$D" uuid)" != "$(vhdr "$D.s1" uuid)"
check "vdi: every block unallocated" test "$(vhdr "$D" free)" = 1
check "vdi: same block size" test "$(vhdr "$D" block)" = "$(vhdr "$D.s1" block)"
check "vdi: same disk size" test "$(vhdr "$D" size)" = "$(vhdr "$D.s1" size)"
qcheck "$D.s1" "vdi: the frozen file"
vsame "$D" "$T/v1.raw" "vdi: create changes no data"
check "vdi: vmb inspect shows the chain" sh -c "'$VMB' inspect '$D' --json | grep -q 'd.vdi.s1'"
cp "$T/v1.raw" "$T/vcur.raw"
vwrite "$D" $((1 << 20)) $((1 << 20)) 0x55 "$T/vcur.raw"
vwrite "$D" $((10 << 20)) $((2 << 20)) 0x56 "$T/vcur.raw"
expect_exit 0 "vdi: incremental after create" "$VMB" backup "$R" "$D" --vm vdi --json
check "vdi: cbt overlay, small bytes_read" stat_ok "$T/out" \
	'd["cbt"] == "overlay" and 0 < d["bytes_read"] <= 8 * 1048576'
rm -rf "$T/rs"
"$VMB" restore "$R" vdi@latest --to "$T/rs" --format raw >/dev/null 2>&1
check "vdi: the incremental restores the current image" cmp -s "$T/rs/"* "$T/vcur.raw"
check "vdi: list shows s1" test "$(names "$D")" = s1

expect_exit 0 "vdi: create s2" "$VMB" snapshot create "$D" s2
check "vdi: s2's parent is s1" test "$(vhdr "$D.s2" parent)" = "$(vhdr "$D.s1" uuid)"
cp "$T/vcur.raw" "$T/vcur2.raw"
vwrite "$D" $((3 << 20)) $((1 << 20)) 0x60 "$T/vcur2.raw"
vwrite "$D" $((20 << 20)) $((1 << 20)) 0 "$T/vcur2.raw"
check "vdi: list shows s1 s2" test "$(names "$D")" = "s1 s2"
u_top=$(vhdr "$D" uuid)
expect_exit 0 "vdi: delete s2 (differencing merge)" "$VMB" snapshot delete "$D" s2
vsame "$D" "$T/vcur2.raw" "vdi: delete keeps the current state"
check "vdi: s2's layer is gone" test ! -e "$D.s2"
check "vdi: merged layer keeps its uuid" test "$(vhdr "$D" uuid)" = "$u_top"
check "vdi: merged layer is differencing over s1" test "$(vhdr "$D" type)/$(vhdr "$D" parent)" = "4/$(vhdr "$D.s1" uuid)"
vsame "$D.s1" "$T/v1.raw" "vdi: s1 intact"

expect_exit 0 "vdi: create m1" "$VMB" snapshot create "$D" m1
vwrite "$D" $((5 << 20)) $((1 << 20)) 0x63 "$T/vcur2.raw"
expect_exit 0 "vdi: create m2" "$VMB" snapshot create "$D" m2
vwrite "$D" $((6 << 20)) $((1 << 20)) 0x64 "$T/vcur2.raw"
u_m2=$(vhdr "$D.m2" uuid)
expect_exit 0 "vdi: delete m1 (under m2)" "$VMB" snapshot delete "$D" m1
vsame "$D" "$T/vcur2.raw" "vdi: delete m1 keeps the current state"
check "vdi: m2 keeps the uuid its child links to" test "$(vhdr "$D.m2" uuid)" = "$u_m2" -a "$(vhdr "$D" parent)" = "$u_m2"
expect_exit 0 "vdi: delete m2" "$VMB" snapshot delete "$D" m2
vsame "$D" "$T/vcur2.raw" "vdi: delete m2 keeps the current state"

expect_exit 0 "vdi: revert s1" "$VMB" snapshot revert "$D" s1
vsame "$D" "$T/v1.raw" "vdi: revert restores s1's state"
check "vdi: reverted IMAGE is differencing over s1" test "$(vhdr "$D" parent)" = "$(vhdr "$D.s1" uuid)"
cp "$T/v1.raw" "$T/vcur3.raw"
vwrite "$D" $((7 << 20)) $((1 << 20)) 0x70 "$T/vcur3.raw"
expect_exit 0 "vdi: delete s1 (the base)" "$VMB" snapshot delete "$D" s1
check "vdi: a plain dynamic image again" test "$(vhdr "$D" type)" = 1
qcheck "$D" "vdi: delete s1"
same "$D" "$T/vcur3.raw" "vdi: qemu-img reads the merged image"
check "vdi: no snapshots" test -z "$(names "$D")"

# ---- VDI crashes ----
for step in layer-data-written snap-overlay-written snap-linked snap-renamed snap-sidecar; do
	cp "$T/vcur3.raw" "$T/before.raw"
	crash $step "vdi create" "$VMB" snapshot create "$D" c1
	vsame "$D" "$T/before.raw" "vdi create killed at $step: data intact"
	if [ -e "$D.c1" ] && names "$D" | grep -qw c1; then
		expect_exit 0 "vdi after $step: delete" "$VMB" snapshot delete "$D" c1
	else
		expect_exit 0 "vdi after $step: retry create" "$VMB" snapshot create "$D" c1
		expect_exit 0 "vdi after $step: delete" "$VMB" snapshot delete "$D" c1
	fi
	qcheck "$D" "vdi cleanup after $step"
	same "$D" "$T/before.raw" "vdi after $step: data intact after cleanup"
	check "vdi after $step: no leftovers" sh -c "! ls -a '$T' | grep -q 'd.vdi\.\(c1\|vmbtmp\)'"
done
"$VMB" snapshot create "$D" d0 >/dev/null
vwrite "$D" $((9 << 20)) $((1 << 20)) 90 "$T/vcur3.raw"
"$VMB" snapshot create "$D" d1 >/dev/null
vwrite "$D" $((10 << 20)) $((1 << 20)) 91 "$T/vcur3.raw"
for step in layer-data-written delete-merged delete-renamed delete-sidecar; do
	cp "$T/vcur3.raw" "$T/before.raw"
	crash $step "vdi delete" "$VMB" snapshot delete "$D" d1
	vsame "$D" "$T/before.raw" "vdi delete killed at $step: data intact"
	if names "$D" | grep -qw d1; then
		expect_exit 0 "vdi after $step: retry delete" "$VMB" snapshot delete "$D" d1
	fi
	vsame "$D" "$T/before.raw" "vdi after $step: data intact"
	expect_exit 0 "vdi after $step: create again" "$VMB" snapshot create "$D" d1
	check "vdi after $step: no leftovers" sh -c "! ls -a '$T' | grep -q 'vmbtmp'"
	vwrite "$D" $((11 << 20)) $((1 << 20)) 92 "$T/vcur3.raw"
done
for step in revert-written revert-renamed revert-sidecar; do
	cp "$T/vcur3.raw" "$T/before.raw"
	vraw "$D.d1" "$T/d1.raw"
	crash $step "vdi revert" "$VMB" snapshot revert "$D" d1
	vraw "$D" "$T/after.raw"
	check "vdi revert killed at $step: old or reverted state" sh -c \
		"cmp -s '$T/after.raw' '$T/before.raw' || cmp -s '$T/after.raw' '$T/d1.raw'"
	expect_exit 0 "vdi after $step: retry revert" "$VMB" snapshot revert "$D" d1
	vsame "$D" "$T/d1.raw" "vdi after $step: reverted"
	cp "$T/d1.raw" "$T/vcur3.raw"
	check "vdi after $step: no leftovers" sh -c "! ls -a '$T' | grep -q 'vmbtmp'"
	vwrite "$D" $((12 << 20)) $((1 << 20)) 93 "$T/vcur3.raw"
done
"$VMB" snapshot delete "$D" d1 >/dev/null && "$VMB" snapshot delete "$D" d0 >/dev/null
qcheck "$D" "vdi: everything merged back"
same "$D" "$T/vcur3.raw" "vdi: everything merged back: data"
check "vdi: no snapshot files left" sh -c "! ls -a '$T' | grep '^\.\{0,1\}d\.vdi\.' | grep -vq 'vmbsnap.json\$'"
finish
