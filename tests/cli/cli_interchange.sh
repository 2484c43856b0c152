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
import os, sys, pyvmdk
os.chdir(os.path.dirname(os.path.abspath(sys.argv[1])))
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
		check "$sub: libyal's pyvmdk reads every byte exact" pyvmdk_equal "$T/r-$sub/d.vmdk" "$T/d.img"
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
# ---- vmb export --ova: what VMware and VirtualBox import ----
# an OVA with hardware (2 CPUs, 2048 MB), imported, then exported again
O=$T/ovasrc
mkdir -p "$O"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$T/d.img" "$O/src-disk1.vmdk"
cat >"$O/src.ovf" <<OVF
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:id="file1" ovf:href="src-disk1.vmdk"/></References>
  <DiskSection><Info>disks</Info>
    <Disk ovf:capacity="24" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1" ovf:fileRef="file1"/>
  </DiskSection>
  <VirtualSystem ovf:id="ovaguest"><Info>vm</Info>
    <VirtualHardwareSection><Info>hw</Info>
      <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
OVF
(cd "$O" && sha256sum --tag src.ovf src-disk1.vmdk | sed 's/^SHA256 (\(.*\)) = /SHA256(\1)= /' >src.mf && tar cf "$T/src.ova" src.ovf src.mf src-disk1.vmdk)
expect_exit 0 "import the source OVA" "$VMB" import "$R" "$T/src.ova"
expect_exit 0 "export --ova" "$VMB" export "$R" ovaguest@latest "$T/out.ova" --ova --json
check "export --ova --json: not encrypted" grep -q '"encrypted":false' "$T/out"
check "an OVA is never encrypted, even from an encrypted repository" test "$(head -c 4 "$T/out.ova")" != VMBX
check "members in OVF order: descriptor, manifest, disk" test "$(tar tf "$T/out.ova" | tr '\n' ' ')" = "ovaguest.ovf ovaguest.mf ovaguest-disk1.vmdk "
check "the tar is POSIX ustar" test "$(dd if="$T/out.ova" bs=1 skip=257 count=6 status=none | od -An -c | tr -d ' ')" = 'ustar\0'
mkdir -p "$T/ox" && tar xf "$T/out.ova" -C "$T/ox"
if command -v xmllint >/dev/null; then
	check "the OVF is well-formed (libxml2's xmllint)" xmllint --noout "$T/ox/ovaguest.ovf"
	xp() { xmllint --xpath "$1" "$T/ox/ovaguest.ovf" 2>/dev/null; }
	check "the OVF names the right capacity" test "$(xp 'string(//*[local-name()="Disk"]/@*[local-name()="capacity"])')" = 25165824
	check "the OVF names the file's size" test "$(xp 'string(//*[local-name()="File"]/@*[local-name()="size"])')" = "$(stat -c %s "$T/ox/ovaguest-disk1.vmdk")"
	check "CPUs carried over from the stored configuration" test "$(xp 'string(//*[local-name()="Item"][*[local-name()="ResourceType"]="3"]/*[local-name()="VirtualQuantity"])')" = 2
	check "memory carried over" test "$(xp 'string(//*[local-name()="Item"][*[local-name()="ResourceType"]="4"]/*[local-name()="VirtualQuantity"])')" = 2048
else
	echo "# xmllint missing (libxml2-utils): OVF XPath checks skipped"
fi
check "the manifest's digests hold (sha256sum)" sh -c "cd '$T/ox' && sed 's/^SHA256(\(.*\))= \(.*\)/\2  \1/' ovaguest.mf | sha256sum -c --quiet"
check "the OVA's VMDK is streamOptimized" sh -c "qemu-img info '$T/ox/ovaguest-disk1.vmdk' | grep -q 'create type: streamOptimized'"
check "qemu-img check passes on it" qemu-img check -q "$T/ox/ovaguest-disk1.vmdk"
check "qemu-img reads it exact" qemu-img compare -q -f raw -F vmdk "$T/d.img" "$T/ox/ovaguest-disk1.vmdk"
if command -v vmdkinfo >/dev/null; then
	check "vmdkinfo: stream optimized, right size" sh -c "vmdkinfo '$T/ox/ovaguest-disk1.vmdk' | grep -q 'Stream optimized' && vmdkinfo '$T/ox/ovaguest-disk1.vmdk' | grep -q '25165824 bytes'"
fi
if [ $have_pyvmdk = 1 ]; then
	check "libyal's pyvmdk reads the OVA's disk exact" pyvmdk_equal "$T/ox/ovaguest-disk1.vmdk" "$T/d.img"
fi
expect_exit 0 "vmb imports its own OVA" "$VMB" import "$R" "$T/out.ova" --vm back
"$VMB" restore "$R" back@latest --to "$T/r-back" --format raw >/dev/null 2>"$T/err" || bad "restore: $(cat "$T/err")"
check "our own OVA round-trips exact" cmp -s "$T/r-back/ovaguest-disk1.img" "$T/d.img"
# a name ending in .ova means --ova; a minimal descriptor without config
expect_exit 0 "export to NAME.ova without --ova" "$VMB" export "$R" ix@latest "$T/ix.ova"
check "NAME.ova is an OVA" sh -c "tar tf '$T/ix.ova' | head -1 | grep -q '^ix.ovf$'"
finish
