#!/bin/bash
# vmb export / import: export -> import into a second repository ->
# restore is byte-identical (raw with holes, random and text data, and
# qcow2/VMDK/VDI archives); encrypted exports hold no plaintext; OVAs
# (streamOptimized VMDK + OVF) import; hostile archives are refused with
# one line and nothing imported; without a loadable libarchive, export and
# import fail with one line and everything else works.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
export VMB_PASSPHRASE=archive-pass
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"
command -v python3 >/dev/null || skip "python3 is needed to build test archives"
R=$T/repo
R2=$T/repo2
MARK=VMB-PLAINTEXT-MARKER-7f3a9c

nsnaps() { "$VMB" snapshots "$1" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

# a 48 MiB raw image: holes, random data, and text with a marker string
truncate -s 48M "$T/vm.img"
head -c 3M /dev/urandom | dd of="$T/vm.img" bs=1M seek=2 conv=notrunc status=none
yes "some guest text $MARK with more words" | head -c 5M |
	dd of="$T/vm.img" bs=1M seek=20 conv=notrunc status=none
head -c 100000 /dev/urandom | dd of="$T/vm.img" bs=1 seek=$((47 * 1048576 + 12345)) conv=notrunc status=none
# a second disk, all holes but a tail of data; its size is no multiple of
# the chunk size (VMDK needs a multiple of 512)
truncate -s 5000192 "$T/data.img"
printf 'tail %s\n' "$MARK" | dd of="$T/data.img" bs=1 seek=4999000 conv=notrunc status=none

# small chunks: the archive keeps holes at chunk granularity
"$VMB" init "$R" --chunk-size 256K >/dev/null
"$VMB" init "$R2" >/dev/null
"$VMB" backup "$R" "$T/vm.img" "$T/data.img" --vm guest >/dev/null
check "source backup" test "$(nsnaps "$R")" = 1

"$VMB" export --help >"$T/help"
check "export --help has SYNOPSIS and DESCRIPTION" grep -q DESCRIPTION "$T/help"
"$VMB" import --help >"$T/help"
check "import --help describes hostile archives" grep -qi hostile "$T/help"
expect_exit 2 "export without OUT" "$VMB" export "$R" latest
expect_exit 2 "export with an unknown format" "$VMB" export "$R" latest "$T/x.tar" --format iso
expect_exit 2 "import without ARCHIVE" "$VMB" import "$R"

# ---- libarchive is loaded on first use (docs/archives.md) ----
if command -v readelf >/dev/null; then
	check "vmb does not link libarchive" sh -c "! readelf -d '$VMB' | grep -q 'NEEDED.*libarchive'"
fi
# a broken libarchive.so.13 found first: other commands do not notice,
# export and import fail with one line naming the package
mkdir -p "$T/nolib"
: >"$T/nolib/libarchive.so.13"
expect_exit 0 "snapshots without a working libarchive" env LD_LIBRARY_PATH="$T/nolib" "$VMB" snapshots "$R"
expect_exit 1 "export without a working libarchive" env LD_LIBRARY_PATH="$T/nolib" "$VMB" export "$R" latest "$T/nolib.tar"
one_line "export without a working libarchive"
check "export names libarchive and its package" grep -q 'export needs libarchive (libarchive.so.13): .*install the libarchive13 package' "$T/err"
check "nothing written without libarchive" test ! -e "$T/nolib.tar" -a ! -e "$T/nolib.tar.tmp"
expect_exit 1 "import without a working libarchive" env LD_LIBRARY_PATH="$T/nolib" "$VMB" import "$R" "$T/vm.img"
one_line "import without a working libarchive"
check "import names libarchive and its package" grep -q 'import needs libarchive (libarchive.so.13): .*install the libarchive13 package' "$T/err"
check "nothing imported without libarchive" test "$(nsnaps "$R")" = 1

# ---- plain export -> second repository -> restore ----
expect_exit 0 "plain export" "$VMB" export "$R" guest@latest "$T/plain.tar" --no-encrypt --json
check "export --json says not encrypted" grep -q '"encrypted":false' "$T/out"
check "no OUT.tmp left behind" test ! -e "$T/plain.tar.tmp"
check "plain tar lists the disks and the manifest" \
	sh -c "tar tf '$T/plain.tar' | sort | tr '\n' ' ' | grep -qx 'data.img manifest.json vm.img '"
size=$(stat -c %s "$T/plain.tar")
check "holes stay holes in the archive ($size bytes for 53 MiB of disks)" test "$size" -lt $((10 * 1048576))
mkdir -p "$T/x"
tar xf "$T/plain.tar" -C "$T/x"
check "GNU tar extracts the raw disk identically" cmp -s "$T/x/vm.img" "$T/vm.img"
check "GNU tar extracts the odd-sized disk identically" cmp -s "$T/x/data.img" "$T/data.img"
check "manifest SHA-256 matches sha256sum" python3 - "$T/x" <<'PY'
import json, hashlib, os, sys
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
assert m["vm"] == "guest" and len(m["disks"]) == 2, m
for disk in m["disks"]:
    h = hashlib.sha256(open(os.path.join(d, disk["file"]), "rb").read()).hexdigest()
    assert h == disk["sha256"], disk
    assert disk["format"] == "raw"
    assert disk["virtual_size"] == os.path.getsize(os.path.join(d, disk["file"]))
PY
expect_exit 1 "export never overwrites" "$VMB" export "$R" latest "$T/plain.tar" --no-encrypt
one_line "export over an existing file"

expect_exit 0 "import the plain export into a second repository" \
	"$VMB" import "$R2" "$T/plain.tar" --json
for f in snapshot vm bytes_total bytes_read bytes_new bytes_stored chunks_total chunks_new seconds cbt; do
	python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if '$f' in d else 1)" "$T/out" ||
		bad "import --json lacks $f"
done
check "import --json: vm from the manifest" test "$(json_field "$T/out" vm)" = guest
check "import --json: bytes_total" test "$(json_field "$T/out" bytes_total)" = $((48 * 1048576 + 5000192))
"$VMB" restore "$R2" guest@latest --to "$T/r2" >/dev/null
check "restore from the second repository: raw disk identical" cmp -s "$T/r2/vm.img" "$T/vm.img"
check "restore from the second repository: odd-sized disk identical" cmp -s "$T/r2/data.img" "$T/data.img"

# ---- encrypted export ----
expect_exit 0 "encrypted export" "$VMB" export "$R" latest "$T/enc.tar" --json
check "export --json says encrypted" grep -q '"encrypted":true' "$T/out"
check "encrypted export starts with VMBX" test "$(head -c 4 "$T/enc.tar")" = VMBX
check "encrypted export holds no plaintext marker" sh -c "! grep -qa '$MARK' '$T/enc.tar'"
check "encrypted export holds no file names" sh -c "! grep -qa 'manifest.json' '$T/enc.tar'"
check "the plain export does hold the marker (sanity)" grep -qa "$MARK" "$T/plain.tar"
# self-contained: the archive carries its key, wrapped under the passphrase
check "encrypted export carries its wrapped key (Argon2id)" grep -qa argon2id13 "$T/enc.tar"
VMB_ARCHIVE_PASSPHRASE=wrong expect_exit 1 "wrong archive passphrase is refused" "$VMB" import "$R2" "$T/enc.tar"
one_line "wrong archive passphrase"
check "the refusal says wrong passphrase" grep -q "wrong passphrase" "$T/err"
# a new host: the exporting repository is gone, a new repository with
# another passphrase imports with the archive's passphrase alone
"$VMB" init "$T/gone" >/dev/null
"$VMB" backup "$T/gone" "$T/vm.img" "$T/data.img" --vm guest >/dev/null
"$VMB" export "$T/gone" latest "$T/gone.tar" >/dev/null
rm -rf "$T/gone" "$XDG_CACHE_HOME/vmb"
check "the exporting repository is gone" test ! -e "$T/gone"
VMB_PASSPHRASE=other-host-pass "$VMB" init "$T/newhost" >/dev/null
VMB_PASSPHRASE=other-host-pass VMB_ARCHIVE_PASSPHRASE=archive-pass \
	expect_exit 0 "a new repository imports the export of a deleted one with the passphrase alone" \
	"$VMB" import "$T/newhost" "$T/gone.tar" --vm moved
VMB_PASSPHRASE=other-host-pass "$VMB" restore "$T/newhost" moved@latest --to "$T/r-moved" >/dev/null 2>"$T/err" || bad "restore on the new host: $(cat "$T/err")"
check "new host: disk 1 byte for byte" cmp -s "$T/r-moved/vm.img" "$T/vm.img"
check "new host: disk 2 byte for byte" cmp -s "$T/r-moved/data.img" "$T/data.img"
printf 'archive-pass\n' >"$T/apass"
VMB_PASSPHRASE=other-host-pass expect_exit 0 "--archive-passphrase-file works" \
	"$VMB" import "$T/newhost" "$T/enc.tar" --vm moved2 --archive-passphrase-file "$T/apass"
"$VMB" init "$T/plainrepo" --encryption none >/dev/null
VMB_ARCHIVE_PASSPHRASE=archive-pass expect_exit 0 "even an unencrypted repository imports it" \
	"$VMB" import "$T/plainrepo" "$T/enc.tar" --vm moved3
expect_exit 0 "the same repository imports its encrypted export" \
	"$VMB" import "$R" "$T/enc.tar" --vm guest-copy --json
check "import --vm overrides the name" test "$(json_field "$T/out" vm)" = guest-copy
"$VMB" restore "$R" guest-copy@latest --to "$T/r3" >/dev/null
check "restore of the encrypted round trip is identical" cmp -s "$T/r3/vm.img" "$T/vm.img"
python3 - "$T/enc.tar" "$T/enc-bad.tar" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) // 2] ^= 0x40
open(sys.argv[2], "wb").write(b)
PY
n=$(nsnaps "$R")
expect_exit 3 "a tampered encrypted export is refused as damaged" "$VMB" import "$R" "$T/enc-bad.tar"
one_line "tampered encrypted export"
head -c $(( $(stat -c %s "$T/enc.tar") - 100 )) "$T/enc.tar" >"$T/enc-trunc.tar"
expect_exit 3 "a truncated encrypted export is refused" "$VMB" import "$R" "$T/enc-trunc.tar"
check "nothing imported from damaged encrypted exports" test "$(nsnaps "$R")" = "$n"

# ---- a plain export with a damaged disk: checksum mismatch ----
python3 - "$T/plain.tar" "$T/plain-bad.tar" "$MARK" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
i = b.find(sys.argv[3].encode())
b[i] ^= 0x20
open(sys.argv[2], "wb").write(b)
PY
n2=$(nsnaps "$R2")
expect_exit 3 "a plain export with a changed byte fails its SHA-256" "$VMB" import "$R2" "$T/plain-bad.tar"
one_line "checksum mismatch"
check "nothing imported after a checksum mismatch" test "$(nsnaps "$R2")" = "$n2"

# ---- other disk formats in the archive ----
for fmt in qcow2 vmdk vdi; do
	if ! "$VMB" export "$R" guest@latest "$T/e-$fmt.tar" --format "$fmt" --no-encrypt >"$T/out" 2>"$T/err"; then
		bad "export --format $fmt: $(cat "$T/err")"
		continue
	fi
	check "export --format $fmt holds .$fmt files" sh -c "tar tf '$T/e-$fmt.tar' | grep -q '^vm\\.$fmt\$'"
	check "no temporary folder left beside OUT ($fmt)" sh -c "! ls -d '$T'/e-$fmt.tar.parts.* 2>/dev/null"
	if "$VMB" import "$R2" "$T/e-$fmt.tar" --vm "g-$fmt" >/dev/null 2>"$T/err" &&
		"$VMB" restore "$R2" "g-$fmt@latest" --to "$T/r-$fmt" --format raw >/dev/null 2>>"$T/err"; then
		check "$fmt archive round trip: disk 1 identical" cmp -s "$T/r-$fmt/vm.img" "$T/vm.img"
		check "$fmt archive round trip: disk 2 identical" cmp -s "$T/r-$fmt/data.img" "$T/data.img"
	else
		bad "$fmt archive import/restore: $(cat "$T/err")"
	fi
done

# ---- OVA: streamOptimized VMDK + a hand-written OVF ----
if command -v qemu-img >/dev/null; then
	mkdir -p "$T/ova"
	qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$T/vm.img" "$T/ova/x-disk1.vmdk"
	cat >"$T/ova/x.ovf" <<'OVF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- written by hand for vmb's tests -->
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
          xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
          xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References>
    <File ovf:id="file1" ovf:href="x-disk1.vmdk"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks</Info>
    <Disk ovf:capacity="48" ovf:capacityAllocationUnits="byte * 2^20"
          ovf:diskId="vmdisk1" ovf:fileRef="file1"
          ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="ova-guest">
    <Info>A virtual machine</Info>
    <Name>OVA Guest</Name>
  </VirtualSystem>
</Envelope>
OVF
	(cd "$T/ova" && sha256sum --tag x.ovf x-disk1.vmdk | sed 's/^SHA256 (\(.*\)) = /SHA256(\1)= /' >x.mf &&
		tar cf "$T/x.ova" x.ovf x-disk1.vmdk x.mf)
	expect_exit 0 "import an OVA" "$VMB" import "$R2" "$T/x.ova" --json
	check "OVA: VM name from VirtualSystem ovf:id" test "$(json_field "$T/out" vm)" = ova-guest
	"$VMB" restore "$R2" ova-guest@latest --to "$T/r-ova" --format raw >/dev/null 2>"$T/err" || bad "OVA restore: $(cat "$T/err")"
	check "OVA disk restores identical to the source" cmp -s "$T/r-ova/x-disk1.img" "$T/vm.img"
	check "OVA descriptor kept as the VM configuration" grep -q "ova-guest" "$T/r-ova/ova-guest.xml"
	# a wrong .mf checksum is refused
	(cd "$T/ova" && { echo "SHA256(x-disk1.vmdk)= $(printf '0%.0s' $(seq 64))"; grep x.ovf x.mf; } >x2.mf && mv x2.mf x.mf &&
		tar cf "$T/bad.ova" x.ovf x-disk1.vmdk x.mf)
	n2=$(nsnaps "$R2")
	expect_exit 3 "OVA with a wrong .mf checksum" "$VMB" import "$R2" "$T/bad.ova"
	one_line "OVA checksum"
	# one folder level, as some tools write it, is accepted
	(cd "$T/ova" && rm -f x.mf && mkdir -p sub && cp x.ovf x-disk1.vmdk sub/ && tar cf "$T/dir.ova" sub)
	expect_exit 0 "OVA with one folder level" "$VMB" import "$R2" "$T/dir.ova" --vm dir-ova
else
	echo "# qemu-img missing: OVA checks skipped"
fi

# ---- hostile archives: one line, exit 1, nothing imported ----
python3 - "$T" <<'PY'
import io, sys, tarfile
T = sys.argv[1]
def f(name, data=b"x" * 1024):
    def add(t):
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    return add
def special(name, typ, target=""):
    def add(t):
        ti = tarfile.TarInfo(name); ti.type = typ; ti.linkname = target
        t.addfile(ti)
    return add
man = f("manifest.json", b'{"vmbackup_export":1,"vm":"evil","disks":[{"name":"d","format":"raw","virtual_size":1024,"file":"d.img","sha256":"00"}]}')
def mk(name, entries):
    with tarfile.open(f"{T}/{name}", "w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            e(t)
mk("h-dotdot.tar", [f("../evil"), man])
mk("h-abs.tar", [f("/abs"), man])
mk("h-symlink.tar", [special("d.img", tarfile.SYMTYPE, "/etc/passwd"), man])
mk("h-hardlink.tar", [f("a"), special("d.img", tarfile.LNKTYPE, "a"), man])
mk("h-device.tar", [special("d.img", tarfile.CHRTYPE), man])
mk("h-nested.tar", [f("a/b/d.img"), man])
mk("h-many.tar", [f("f%04d" % i, b"") for i in range(1200)])
mk("h-dup.tar", [f("d.img"), f("sub/d.img"), man])
# a header that declares 1 PiB, with no data behind it
ti = tarfile.TarInfo("d.img"); ti.size = 1 << 50
open(f"{T}/h-huge.tar", "wb").write(ti.tobuf(tarfile.PAX_FORMAT) + b"\0" * 1024)
open(f"{T}/h-corrupt.tar", "wb").write(b"definitely not a tar archive\n" * 100)
good = open(f"{T}/plain.tar", "rb").read()
open(f"{T}/h-truncated.tar", "wb").write(good[: len(good) // 3])
# no manifest and no OVF
mk("h-nomanifest.tar", [f("d.img")])
PY
n2=$(nsnaps "$R2")
for h in dotdot abs symlink hardlink device nested many dup huge corrupt truncated nomanifest; do
	expect_exit 1 "hostile archive ($h) refused" "$VMB" import "$R2" "$T/h-$h.tar"
	one_line "hostile archive ($h)"
done
check "nothing imported from hostile archives" test "$(nsnaps "$R2")" = "$n2"
check "nothing escaped the work folder" test ! -e "$T/evil" -a ! -e /abs
check "no extraction folders left in TMPDIR" test -z "$(ls -A "$TMPDIR")"
finish
