#!/bin/bash
# Every image variant qemu-img makes backs up and restores to raw
# byte-identical with `qemu-img convert -O raw`; restores to qcow2, VMDK
# and VDI pass `qemu-img check` and `qemu-img compare`, across formats;
# malformed images fail with exit 1 and one line, quickly.
. "$TESTLIB"
command -v qemu-img >/dev/null || { echo "qemu-img is required (scripts/install-deps.sh installs qemu-utils)"; exit 1; }
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
R=$T/repo
"$VMB" init "$R" --chunk-size 1M >/dev/null

# a 48 MiB source: holes, text, random, zeros written explicitly
S=$T/src.raw
truncate -s 48M "$S"
seq 1 400000 | dd of="$S" bs=1M seek=1 conv=notrunc status=none
head -c 5M /dev/urandom | dd of="$S" bs=1M seek=20 conv=notrunc status=none
head -c 300K /dev/urandom | dd of="$S" bs=4096 seek=9000 conv=notrunc status=none
dd if=/dev/zero of="$S" bs=1M seek=40 count=2 conv=notrunc status=none

mk() { # name qemu-img-args...
	local n=$1; shift
	qemu-img convert -q -f raw "$@" "$S" "$T/img/$n" || bad "qemu-img convert $n"
}
mkdir -p "$T/img"
mk q2.qcow2 -O qcow2 -o compat=0.10
mk q3.qcow2 -O qcow2
mk q3-512.qcow2 -O qcow2 -o cluster_size=512
mk q3-4k.qcow2 -O qcow2 -o cluster_size=4096
mk q3-2m.qcow2 -O qcow2 -o cluster_size=2M
mk q3-l2.qcow2 -O qcow2 -o extended_l2=on,cluster_size=64k
mk q3-zlib.qcow2 -O qcow2 -c
mk q3-zstd.qcow2 -O qcow2 -c -o compression_type=zstd
mk v-sparse.vmdk -O vmdk -o subformat=monolithicSparse
mk v-split.vmdk -O vmdk -o subformat=twoGbMaxExtentSparse
mk v-flat.vmdk -O vmdk -o subformat=monolithicFlat
mk v-splitflat.vmdk -O vmdk -o subformat=twoGbMaxExtentFlat
mk v-stream.vmdk -O vmdk -o subformat=streamOptimized
mk d-dyn.vdi -O vdi
mk d-fixed.vdi -O vdi -o static=on
# a chain: a qcow2 overlay with zero and data writes over a qcow2 base
qemu-img create -q -f qcow2 -b q3.qcow2 -F qcow2 "$T/img/chain.qcow2"
qemu-io -c "write -P 0x5a 3M 1M" -c "write -z 21M 512k" -c "write -P 0x11 47M 64k" "$T/img/chain.qcow2" >/dev/null
# a VMDK delta over a VMDK base
qemu-img create -q -f vmdk -b v-sparse.vmdk -F vmdk "$T/img/delta.vmdk"
qemu-io -c "write -P 0x77 10M 2M" "$T/img/delta.vmdk" >/dev/null

for f in "$T"/img/*; do
	case $f in *-s00*.vmdk|*-f00*.vmdk|*-flat.vmdk) continue;; esac # extents
	n=$(basename "$f"); b=${n%.*}
	qemu-img convert -q -O raw "$f" "$T/want-$b.raw"
	"$VMB" backup "$R" "$f" --vm "$b" --quiet || { bad "backup $n"; continue; }
	"$VMB" restore "$R" "$b@latest" --to "$T/out-$b" --format raw --quiet || { bad "restore $n"; continue; }
	check "$n restores to raw identical to qemu-img convert" cmp -s "$T/out-$b/$b.img" "$T/want-$b.raw"
	fmt=$("$VMB" inspect "$f" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')
	want=${n##*.}
	check "$n is probed as $want (got $fmt)" test "$fmt" = "$want"
done

# restores into every writable format, and across formats
xform() { # source-vm target-format ext
	local vm=$1 fmt=$2 ext=$3 out=$T/x-$1-$2
	"$VMB" restore "$R" "$vm@latest" --to "$out" --format "$fmt" --quiet || { bad "restore $vm as $fmt"; return; }
	local img; img=$(ls "$out"/*."$ext")
	if [ "$fmt" != vmdk ]; then
		check "$vm -> $fmt passes qemu-img check" qemu-img check -q "$img"
	else
		check "$vm -> $fmt opens in qemu-img" qemu-img info "$img" >/dev/null
	fi
	check "$vm -> $fmt is identical (qemu-img compare)" qemu-img compare -q "$img" "$T/want-$vm.raw"
	check "$vm -> $fmt is sparse" test "$(du -k "$img" | cut -f1)" -lt 30000
}
xform d-dyn qcow2 qcow2      # vdi -> qcow2
xform q3 vmdk vmdk           # qcow2 -> vmdk
xform v-sparse vdi vdi       # vmdk -> vdi
xform chain qcow2 qcow2
xform v-stream qcow2 qcow2
xform q3-zstd vdi vdi
xform delta vmdk vmdk
"$VMB" restore "$R" q3@latest --to "$T/same" --quiet
check "default restore format is the source's" test -f "$T/same/q3.qcow2"
check "default-format restore is identical" qemu-img compare -q "$T/same/q3.qcow2" "$T/want-q3.raw"
check "cross-format data dedups: the vdi/vmdk/qcow2 copies of one disk share chunks" \
	test "$(find "$R/chunks" -type f | wc -l)" -lt 60

# malformed images: exit 1, one line, within a second
bad_img() { # name description
	local s e
	s=$(date +%s%N)
	expect_exit 1 "$2" "$VMB" inspect "$T/bad/$1"
	one_line "$2"
	e=$(date +%s%N)
	check "$2 fails within a second" test $(( (e - s) / 1000000 )) -lt 1000
}
mkdir -p "$T/bad"
cp "$T/img/q3.qcow2" "$T/bad/l1.qcow2"
python3 - "$T/bad" <<'PY'
import struct, sys, os, random
d = sys.argv[1]
def patch(name, off, fmt, val):
    p = os.path.join(d, name); b = bytearray(open(p, 'rb').read())
    struct.pack_into(fmt, b, off, val); open(p, 'wb').write(b)
patch("l1.qcow2", 40, ">Q", 1 << 60)                     # l1 offset past the end
q = open(os.path.join(d, "l1.qcow2"), "rb").read()
open(os.path.join(d, "l1size.qcow2"), "wb").write(q[:36] + struct.pack(">I", 0x7fffffff) + q[40:])
open(os.path.join(d, "cbits.qcow2"), "wb").write(q[:20] + struct.pack(">I", 30) + q[24:])
open(os.path.join(d, "trunc.qcow2"), "wb").write(q[:300])
random.seed(7)
open(os.path.join(d, "random.qcow2"), "wb").write(b"QFI\xfb" + bytes(random.getrandbits(8) for _ in range(70000)))
open(os.path.join(d, "random.vmdk"), "wb").write(b"KDMV" + bytes(random.getrandbits(8) for _ in range(70000)))
vdi = bytearray(b"<<< Oracle VM VirtualBox Disk Image >>>\n".ljust(64, b"\0"))
vdi += struct.pack("<I", 0xbeda107f) + bytes(random.getrandbits(8) for _ in range(70000))
open(os.path.join(d, "random.vdi"), "wb").write(vdi)
PY
cp "$T/img/q3.qcow2" "$T/bad/enc.qcow2"
python3 - "$T/bad/enc.qcow2" <<'PY'
import struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); struct.pack_into(">I", b, 32, 1); open(p, 'wb').write(b)
PY
qemu-img create -q -f qcow2 "$T/bad/loopa.qcow2" 1M
qemu-img create -q -f qcow2 -b loopa.qcow2 -F qcow2 "$T/bad/loopb.qcow2"
qemu-img rebase -q -u -f qcow2 -b loopb.qcow2 -F qcow2 "$T/bad/loopa.qcow2"
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "../../../etc/passwd" 0\n' >"$T/bad/escape.vmdk"
bad_img l1.qcow2 "qcow2 with its L1 table past the end"
bad_img l1size.qcow2 "qcow2 with an absurd L1 size"
bad_img cbits.qcow2 "qcow2 with cluster_bits 30"
bad_img trunc.qcow2 "truncated qcow2"
bad_img random.qcow2 "random bytes behind a qcow2 magic"
bad_img random.vmdk "random bytes behind a VMDK magic"
bad_img random.vdi "random bytes behind a VDI signature"
bad_img enc.qcow2 "encrypted qcow2"
bad_img loopb.qcow2 "backing chain loop"
bad_img escape.vmdk "VMDK extent escaping its folder"
expect_exit 1 "backup of a malformed image fails" "$VMB" backup "$R" "$T/bad/l1.qcow2"
one_line "backup of a malformed image"
finish
