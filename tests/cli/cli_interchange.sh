#!/bin/bash
# Interchange with VMware and VirtualBox tools (issue 18): VMDK subformats
# on restore and export (vmdk:streamOptimized, vmdk:monolithicSparse,
# vmdk:monolithicFlat), each read back exact by qemu-img and, where
# installed, by tools that are neither ours nor QEMU's: libyal's vmdkinfo
# and its Python binding pyvmdk (Debian libvmdk-utils, python3-libvmdk),
# and a streamOptimized VMDK written by Debian's python3-vmdkstream imports
# exact.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
export VMB_PASSPHRASE=interchange-pass
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"
command -v qemu-img >/dev/null || skip "qemu-img is needed to compare images"
# Debian's Python modules (pyvmdk, VMDKstream) live in the system python3
PY=/usr/bin/python3
[ -x $PY ] || PY=python3
R=$T/repo
"$VMB" init "$R" >/dev/null

# 24 MiB: holes, random data, text, and a tail that is no grain multiple
truncate -s 24M "$T/d.img"
head -c 3M /dev/urandom | dd of="$T/d.img" bs=1M seek=2 conv=notrunc status=none
yes "guest text for interchange" | head -c 2M | dd of="$T/d.img" bs=1M seek=12 conv=notrunc status=none
head -c 70000 /dev/urandom | dd of="$T/d.img" bs=1 seek=$((24 * 1048576 - 70000)) conv=notrunc status=none
"$VMB" backup "$R" "$T/d.img" --vm ix >/dev/null

# pyvmdk_equal IMAGE RAW: libyal reads the VMDK as the raw image
pyvmdk_equal() {
	$PY - "$1" "$2" <<'PY'
import sys, pyvmdk
h = pyvmdk.handle()
h.open(sys.argv[1])
h.open_extent_data_files()
raw = open(sys.argv[2], "rb")
size = h.get_media_size()
assert size == raw.seek(0, 2), "media size differs"
raw.seek(0)
off = 0
while off < size:
    n = min(1 << 20, size - off)
    if h.read_buffer_at_offset(n, off) != raw.read(n):
        sys.exit("differs at %d" % off)
    off += n
PY
}
have_pyvmdk=0
$PY -c 'import pyvmdk' 2>/dev/null && have_pyvmdk=1
[ $have_pyvmdk = 1 ] || echo "# python3-libvmdk missing: libyal read-back skipped (apt-get install python3-libvmdk)"

for sub in streamOptimized monolithicSparse monolithicFlat; do
	expect_exit 0 "restore --format vmdk:$sub" "$VMB" restore "$R" ix@latest --to "$T/r-$sub" --format "vmdk:$sub"
	check "$sub: qemu-img names the subformat" sh -c "qemu-img info '$T/r-$sub/d.vmdk' | grep -q 'create type: $sub'"
	check "$sub: qemu-img compare" qemu-img compare -q -f raw -F vmdk "$T/d.img" "$T/r-$sub/d.vmdk"
	check "$sub: qemu-img check" qemu-img check -q "$T/r-$sub/d.vmdk"
	if command -v vmdkinfo >/dev/null; then
		check "$sub: vmdkinfo reads it" sh -c "vmdkinfo '$T/r-$sub/d.vmdk' | grep -q 'Media size:.*25165824 bytes'"
	fi
	if [ $have_pyvmdk = 1 ]; then
		(cd "$T/r-$sub" && check "$sub: libyal's pyvmdk reads every byte exact" pyvmdk_equal d.vmdk "$T/d.img")
	fi
done
check "monolithicFlat: descriptor + -flat data file" test -f "$T/r-monolithicFlat/d-flat.vmdk"
check "monolithicFlat: the data file is the raw disk" cmp -s "$T/r-monolithicFlat/d-flat.vmdk" "$T/d.img"
# qemu-img's own spelling of the option
expect_exit 0 "restore --format vmdk:subformat=streamOptimized" "$VMB" restore "$R" ix@latest --to "$T/r-q" --format vmdk:subformat=streamOptimized
check "subformat= spelling gives streamOptimized" sh -c "qemu-img info '$T/r-q/d.vmdk' | grep -q 'create type: streamOptimized'"
expect_exit 2 "unknown subformat is a usage error" "$VMB" restore "$R" ix@latest --to "$T/r-bad" --format vmdk:twoGbMaxExtentFlat
check "unknown subformat: one line naming it" sh -c "[ \$(wc -l <'$T/err') = 1 ] && grep -q twoGbMaxExtentFlat '$T/err'"
expect_exit 2 "subformat on qcow2 is a usage error" "$VMB" restore "$R" ix@latest --to "$T/r-bad" --format qcow2:streamOptimized
check "a refused restore writes nothing" test ! -e "$T/r-bad"

# export with a subformat: the archive's VMDK is streamOptimized
expect_exit 0 "export --format vmdk:streamOptimized" "$VMB" export "$R" ix@latest "$T/so.tar" --format vmdk:streamOptimized --no-encrypt
mkdir -p "$T/x" && tar -xf "$T/so.tar" -C "$T/x"
check "exported VMDK is streamOptimized" sh -c "qemu-img info '$T/x/d.vmdk' | grep -q 'create type: streamOptimized'"
check "exported VMDK is exact" qemu-img compare -q -f raw -F vmdk "$T/d.img" "$T/x/d.vmdk"
expect_exit 1 "export as monolithicFlat is refused (two files per disk)" "$VMB" export "$R" ix@latest "$T/flat.tar" --format vmdk:monolithicFlat --no-encrypt
one_line "export monolithicFlat"

# a streamOptimized VMDK written by python3-vmdkstream imports exact
if $PY -c 'import VMDKstream' 2>/dev/null; then
	$PY -c 'import sys, VMDKstream; VMDKstream.convert_to_stream(sys.argv[1], sys.argv[2])' "$T/d.img" "$T/vs.vmdk" >/dev/null
	expect_exit 0 "backup of a VMDKstream image" "$VMB" backup "$R" "$T/vs.vmdk" --vm vs
	expect_exit 0 "restore it raw" "$VMB" restore "$R" vs@latest --to "$T/r-vs" --format raw
	check "VMDKstream image comes back exact" cmp -s "$T/r-vs/vs.img" "$T/d.img"
else
	echo "# python3-vmdkstream missing: VMDKstream import skipped (apt-get install python3-vmdkstream)"
fi
finish
