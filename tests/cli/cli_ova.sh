#!/bin/bash
# OVA import checks everything that vouches for the archive (issue 18):
# manifest lines in each digest OVF allows (SHA1, SHA256, SHA512, as
# `sha*sum --tag` and VMware's ovftool/mkova.sh write them) must match;
# a member missing from the manifest, a manifest line for a missing
# member, an unknown algorithm, a malformed line, a wrong ovf:size or
# ovf:capacity, a DTD with entities: each refused with one line naming
# the file, nothing imported.  A certificate is reported as not verified.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
export VMB_PASSPHRASE=ova-pass
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"
command -v qemu-img >/dev/null || skip "qemu-img is needed to make the streamOptimized VMDK"
command -v python3 >/dev/null || skip "python3 is needed to count snapshots"
R=$T/repo
"$VMB" init "$R" >/dev/null
nsnaps() { "$VMB" snapshots "$R" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

truncate -s 8M "$T/disk.img"
head -c 1M /dev/urandom | dd of="$T/disk.img" bs=1M seek=3 conv=notrunc status=none
D=$T/ova
mkdir -p "$D"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$T/disk.img" "$D/g-disk1.vmdk"
vsize=$(stat -c %s "$D/g-disk1.vmdk")

# ovf NAME SIZE CAPACITY UNITS [EXTRA_DOCTYPE]
ovf() {
	{
		echo '<?xml version="1.0" encoding="UTF-8"?>'
		[ -n "${5:-}" ] && echo "$5"
		cat <<EOF
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
          xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
    <File ovf:id="file1" ovf:href="g-disk1.vmdk" ovf:size="$2"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:capacity="$3" ovf:capacityAllocationUnits="$4"
          ovf:diskId="vmdisk1" ovf:fileRef="file1"
          ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="$1">
    <Info>A virtual machine</Info>
    <Name>$1</Name>
  </VirtualSystem>
</Envelope>
EOF
	} >"$D/g.ovf"
}
# mf ALG FILE...: the manifest as `shaNsum --tag` writes it, in OVF's form
mf() {
	local alg=$1; shift
	(cd "$D" && "$alg"sum --tag "$@" | sed 's/^\([A-Z0-9]*\) (\(.*\)) = /\1(\2)= /')
}
TARFMT=gnu
pack() { (cd "$D" && tar --format=$TARFMT -cf "$T/$1" "${@:2}"); }

# --- good OVAs in each algorithm and tar layout: mkova.sh writes
#     ovf, mf, then the disks (ustar); ova-compose uses Python's tarfile
#     (pax); GNU tar's own format for good measure ---
n0=$(nsnaps)
cp "$D/g-disk1.vmdk" "$T/orig.vmdk"
for TARFMT in ustar pax gnu; do
	for alg in sha1 sha256 sha512; do
		ovf "vm-$alg-$TARFMT" "$vsize" 8 "byte * 2^20"
		mf "$alg" g.ovf g-disk1.vmdk >"$D/g.mf"
		pack "$alg-$TARFMT.ova" g.ovf g.mf g-disk1.vmdk
		expect_exit 0 "$TARFMT OVA with $alg manifest imports" "$VMB" import "$R" "$T/$alg-$TARFMT.ova"
		# the same archive with one byte of the disk changed
		printf '\x55' | dd of="$D/g-disk1.vmdk" bs=1 seek=70000 conv=notrunc status=none
		pack "bad-$alg-$TARFMT.ova" g.ovf g.mf g-disk1.vmdk
		cp "$T/orig.vmdk" "$D/g-disk1.vmdk"
		expect_exit 3 "$TARFMT OVA with $alg manifest, disk altered, is refused" "$VMB" import "$R" "$T/bad-$alg-$TARFMT.ova"
	done
done
check "nine snapshots, none from the altered ones" test "$(nsnaps)" = $((n0 + 9))
"$VMB" restore "$R" vm-sha1-ustar@latest --to "$T/r-u" --format raw >/dev/null 2>"$T/err" || bad "restore: $(cat "$T/err")"
check "a ustar OVA's disk restores identical" cmp -s "$T/r-u/g-disk1.img" "$T/disk.img"
TARFMT=gnu
for alg in sha1 sha256 sha512; do
	ovf "vm-$alg" "$vsize" 8 "byte * 2^20"
	mf "$alg" g.ovf g-disk1.vmdk >"$D/g.mf"
	pack "$alg.ova" g.ovf g.mf g-disk1.vmdk
	expect_exit 0 "OVA with $alg manifest imports" "$VMB" import "$R" "$T/$alg.ova"
done
check "three more snapshots" test "$(nsnaps)" = $((n0 + 12))
"$VMB" restore "$R" vm-sha512@latest --to "$T/r" --format raw >/dev/null 2>"$T/err" || bad "restore: $(cat "$T/err")"
check "the OVA's disk restores identical" cmp -s "$T/r/g-disk1.img" "$T/disk.img"

# capacity in other units the OVF tools write
ovf vm-units "$vsize" 8388608 byte
mf sha256 g.ovf g-disk1.vmdk >"$D/g.mf"
pack units.ova g.ovf g.mf g-disk1.vmdk
expect_exit 0 "capacity in bytes" "$VMB" import "$R" "$T/units.ova"
ovf vm-units2 "$vsize" 8 MegaBytes
mf sha256 g.ovf g-disk1.vmdk >"$D/g.mf"
pack units2.ova g.ovf g.mf g-disk1.vmdk
expect_exit 0 "capacity in MegaBytes" "$VMB" import "$R" "$T/units2.ova"
n=$(nsnaps)

# refuse CODE DESCRIPTION ARCHIVE GREP: one line naming the file, nothing imported
refuse() {
	expect_exit "$1" "$2" "$VMB" import "$R" "$T/$3"
	one_line "$2"
	check "$2: the message names $4" grep -q -- "$4" "$T/err"
	check "$2: nothing imported" test "$(nsnaps)" = "$n"
}

# --- a tampered disk under each algorithm (the digest in the manifest
#     is the original's) ---
ovf vm-t "$vsize" 8 "byte * 2^20"
for alg in sha1 sha256 sha512; do
	mf "$alg" g.ovf g-disk1.vmdk >"$D/g.mf"
	# flip one byte of the compressed grain data, size unchanged
	printf '\x55' | dd of="$D/g-disk1.vmdk" bs=1 seek=70000 conv=notrunc status=none
	pack "t-$alg.ova" g.ovf g.mf g-disk1.vmdk
	cp "$T/orig.vmdk" "$D/g-disk1.vmdk"
	refuse 3 "tampered disk under $alg" "t-$alg.ova" g-disk1.vmdk
done
# a tampered descriptor
mf sha512 g.ovf g-disk1.vmdk >"$D/g.mf"
sed -i 's/A virtual machine/An altered machine/' "$D/g.ovf"
pack t-ovf.ova g.ovf g.mf g-disk1.vmdk
refuse 3 "tampered descriptor" t-ovf.ova g.ovf
ovf vm-t "$vsize" 8 "byte * 2^20"

# a member the manifest does not list
mf sha256 g-disk1.vmdk >"$D/g.mf"
pack unlisted.ova g.ovf g.mf g-disk1.vmdk
refuse 3 "member missing from the manifest" unlisted.ova "g.ovf is not listed"
# a manifest line for a member the archive lacks
{ mf sha256 g.ovf g-disk1.vmdk; echo "SHA256(ghost.vmdk)= $(printf 'a%.0s' $(seq 64))"; } >"$D/g.mf"
pack ghost.ova g.ovf g.mf g-disk1.vmdk
refuse 3 "manifest line for a missing member" ghost.ova ghost.vmdk
# an algorithm OVF does not allow
{ mf sha256 g.ovf; echo "MD5(g-disk1.vmdk)= $(md5sum "$D/g-disk1.vmdk" | cut -d' ' -f1)"; } >"$D/g.mf"
pack md5.ova g.ovf g.mf g-disk1.vmdk
refuse 1 "MD5 manifest line" md5.ova MD5
# a malformed line
{ mf sha256 g.ovf g-disk1.vmdk; echo "this is not a digest"; } >"$D/g.mf"
pack junk.ova g.ovf g.mf g-disk1.vmdk
refuse 1 "malformed manifest line" junk.ova "line 3"
# a digest of the wrong length
{ mf sha256 g.ovf; echo "SHA512(g-disk1.vmdk)= abcdef"; } >"$D/g.mf"
pack short.ova g.ovf g.mf g-disk1.vmdk
refuse 1 "digest of the wrong length" short.ova "128 hex"
# an empty manifest
: >"$D/g.mf"
pack empty.ova g.ovf g.mf g-disk1.vmdk
refuse 1 "empty manifest" empty.ova "no digests"

# --- the descriptor's own claims ---
ovf vm-s $((vsize + 1)) 8 "byte * 2^20"
mf sha256 g.ovf g-disk1.vmdk >"$D/g.mf"
pack size.ova g.ovf g.mf g-disk1.vmdk
refuse 3 "wrong ovf:size" size.ova "ovf:size"
ovf vm-c "$vsize" 9 "byte * 2^20"
mf sha256 g.ovf g-disk1.vmdk >"$D/g.mf"
pack cap.ova g.ovf g.mf g-disk1.vmdk
refuse 3 "wrong ovf:capacity" cap.ova "ovf:capacity"
ovf vm-c2 "$vsize" 8 "furlongs"
mf sha256 g.ovf g-disk1.vmdk >"$D/g.mf"
pack units3.ova g.ovf g.mf g-disk1.vmdk
refuse 1 "unknown capacity units" units3.ova "furlongs"
# no manifest at all: the sizes are still checked
ovf vm-s2 $((vsize - 1)) 8 "byte * 2^20"
pack nomf.ova g.ovf g-disk1.vmdk
refuse 3 "wrong ovf:size without a manifest" nomf.ova "ovf:size"
# entity expansion ("billion laughs") is refused before any expansion
ovf 'vm-&a;' "$vsize" 8 "byte * 2^20" '<!DOCTYPE Envelope [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
mf sha256 g.ovf g-disk1.vmdk >"$D/g.mf"
pack dtd.ova g.ovf g.mf g-disk1.vmdk
refuse 1 "descriptor with entities" dtd.ova "document type"
# not XML
echo '<Envelope><References>' >"$D/g.ovf"
mf sha256 g.ovf g-disk1.vmdk >"$D/g.mf"
pack notxml.ova g.ovf g.mf g-disk1.vmdk
refuse 1 "descriptor that is not XML" notxml.ova "well-formed"

# --- a certificate is reported, never silently ignored ---
ovf vm-cert "$vsize" 8 "byte * 2^20"
mf sha256 g.ovf g-disk1.vmdk >"$D/g.mf"
printf 'SHA256(g.mf)= %s\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n' \
	"$(printf 'b%.0s' $(seq 64))" >"$D/g.cert"
pack cert.ova g.ovf g.mf g.cert g-disk1.vmdk
expect_exit 0 "OVA with a certificate imports" "$VMB" import "$R" "$T/cert.ova"
check "the certificate is reported as not verified" grep -q "g.cert was NOT verified" "$T/err"
finish
