# The VMware plugin (plugins/vmware/, docs/vmware.md).  VMware is not
# installable here: the test builds a VM folder as Workstation lays it out
# (qemu-img makes the VMDKs: a monolithicSparse system disk with two delta
# layers, one with an absolute parentFileNameHint, and a
# twoGbMaxExtentSparse data disk with a delta; a hand-written .vmx and
# .vmsd with two snapshots, an .nvram, .vmsn files), and checks:
#  - vmware:FOLDER backs it up as one snapshot; restore --to DIR gives a
#    folder whose .vmx/.vmsd/descriptors refer only to files inside it,
#    and every snapshot point of every disk equals the original
#    (qemu-img compare, with the original folder moved away);
#  - --flatten: one image per drive, no snapshot tree; --new-uuid: new
#    uuid.bios/uuid.location, MACs and CIDs, every parentCID its parent's
#    CID (QEMU checks that link when it opens the chain);
#  - a running VM (*.lck) refused with one line, --crash-consistent
#    recorded; a wrong parentCID named; a parent loop, '..', a symlink, a
#    disk listed twice refused with nothing written;
#  - an incremental after the guest wrote into its current delta reads
#    only that delta (cbt overlay), and the bare folder is recognised.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"
command -v qemu-img >/dev/null || skip "qemu-img is needed"
command -v qemu-io >/dev/null || skip "qemu-io is needed"

VM=$T/vms/win
mkdir -p "$VM"
q() { qemu-io -f vmdk -c "$1" "$2" >/dev/null || bad "qemu-io $1 $2"; }
(
cd "$VM" || exit 1
qemu-img create -q -f vmdk -o subformat=monolithicSparse win.vmdk 16M
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse data.vmdk 8M
)
q "write -P 0x11 0 3M" "$VM/win.vmdk"
q "write -P 0x44 1M 2M" "$VM/data.vmdk"
# snapshot s1 freezes win.vmdk and data.vmdk
qemu-img create -q -f vmdk -b "$VM/win.vmdk" -F vmdk "$VM/win-000001.vmdk"
q "write -P 0x22 1M 512k" "$VM/win-000001.vmdk"
q "write -z 2M 64k" "$VM/win-000001.vmdk"
# snapshot s2 freezes win-000001.vmdk (relative hint) and data.vmdk
(cd "$VM" && qemu-img create -q -f vmdk -b win-000001.vmdk -F vmdk win-000002.vmdk)
(cd "$VM" && qemu-img create -q -f vmdk -b data.vmdk -F vmdk data-000001.vmdk)
q "write -P 0x33 8M 1M" "$VM/win-000002.vmdk"
q "write -P 0x55 0 64k" "$VM/data-000001.vmdk"
head -c 8195 /dev/urandom >"$VM/win.nvram"
head -c 70000 /dev/urandom >"$VM/win-Snapshot1.vmsn"
head -c 70000 /dev/urandom >"$VM/win-Snapshot2.vmsn"
head -c 5000 /dev/urandom >"$VM/vmware.log"
cat >"$VM/win.vmx" <<VMX
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
displayName = "Win |22test|22"
guestOS = "windows9-64"
memsize = "1024"
numvcpus = "2"
firmware = "efi"
nvram = "win.nvram"
scsi0.present = "TRUE"
scsi0.virtualDev = "lsisas1068"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "win-000002.vmdk"
sata0.present = "TRUE"
sata0:1.present = "TRUE"
sata0:1.fileName = "$VM/data-000001.vmdk"
sata0:2.present = "FALSE"
sata0:2.fileName = "gone.vmdk"
ide1:0.present = "TRUE"
ide1:0.deviceType = "cdrom-image"
ide1:0.fileName = "/nonexistent/install.iso"
ethernet0.present = "TRUE"
ethernet0.addressType = "generated"
ethernet0.generatedAddress = "00:0c:29:aa:bb:cc"
uuid.bios = "56 4d 11 22 33 44 55 66-77 88 99 aa bb cc dd ee"
uuid.location = "56 4d 11 22 33 44 55 66-77 88 99 aa bb cc dd ee"
VMX
cat >"$VM/win.vmsd" <<VMSD
.encoding = "UTF-8"
snapshot.lastUID = "2"
snapshot.current = "2"
snapshot0.uid = "1"
snapshot0.filename = "win-Snapshot1.vmsn"
snapshot0.displayName = "s1"
snapshot0.numDisks = "2"
snapshot0.disk0.fileName = "win.vmdk"
snapshot0.disk0.node = "scsi0:0"
snapshot0.disk1.fileName = "$VM/data.vmdk"
snapshot0.disk1.node = "sata0:1"
snapshot1.uid = "2"
snapshot1.filename = "win-Snapshot2.vmsn"
snapshot1.parent = "1"
snapshot1.displayName = "s2"
snapshot1.numDisks = "2"
snapshot1.disk0.fileName = "win-000001.vmdk"
snapshot1.disk0.node = "scsi0:0"
snapshot1.disk1.fileName = "data.vmdk"
snapshot1.disk1.node = "sata0:1"
snapshot.numSnapshots = "2"
VMSD
POINTS="win.vmdk win-000001.vmdk win-000002.vmdk data.vmdk data-000001.vmdk"
mkdir "$T/ref"
for f in $POINTS; do
	qemu-img convert -f vmdk -O raw "$VM/$f" "$T/ref/$f.raw" || bad "ref $f"
done
grep -q "parentFileNameHint=\"$VM/win.vmdk\"" "$VM/win-000001.vmdk" && ok "fixture: an absolute parent hint" || bad "fixture: hint"

# the CID and parentCID of a VMDK (text descriptor or embedded)
cid() { python3 - "$1" "$2" <<'PY'
import re, struct, sys
b = open(sys.argv[1], 'rb').read()
if b[:4] == b'KDMV':
    off, size = struct.unpack_from('<QQ', b, 28)
    b = b[off * 512:(off + size) * 512]
t = b.split(b'\0')[0].decode()
m = re.search(r'^' + sys.argv[2] + r'=([0-9a-fA-F]+)', t, re.M)
print(m.group(1).lower() if m else 'none')
PY
}
# every path a configuration names, for the inside-the-folder check
paths_of() { grep -iE '(filename|nvram|vmstate|parentFileNameHint) *=|^(RW|RDONLY) ' "$@" 2>/dev/null | grep -a -o '"[^"]*"' | tr -d '"'; }

R=$T/repo
sleep 2 # change tracking trusts a file's times only once they are 2 s old
expect_exit 0 "init" "$VMB" init "$R"
expect_exit 0 "backup vmware:FOLDER" "$VMB" backup "$R" "vmware:$VM" --json
cp "$T/out" "$T/b1.json"
SNAP=$(json_field "$T/b1.json" snapshot)
check "one snapshot" test "$("$VMB" snapshots "$R" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 1
check "consistency powered-off" test "$(json_field "$T/b1.json" consistency)" = powered-off
"$VMB" snapshots "$R" --json >"$T/snaps.json"
python3 - "$T/snaps.json" <<'PY' && ok "snapshot: VM name from displayName, the log left out" || bad "snapshot name/files"
import json, sys
s = json.load(open(sys.argv[1]))[0]
names = [d['name'] for d in s['disks']]
assert s['vm'] == 'Win "test"', s['vm']
assert not any('log' in n for n in names), names
assert any(n.startswith('data-s00') for n in names), names  # split extents
assert len(names) == 11, names
PY

# ---- restore: the folder, every snapshot point ----
expect_exit 0 "restore" "$VMB" restore "$R" "$SNAP" --to "$T/r1"
mv "$VM" "$VM.away"
for f in $POINTS; do
	qemu-img compare -q -f vmdk -F raw "$T/r1/$f" "$T/ref/$f.raw" && ok "restored point $f equals the original" || bad "restored $f differs"
done
for f in win.nvram win-Snapshot1.vmsn win-Snapshot2.vmsn win.vmdk data-s001.vmdk; do
	cmp -s "$T/r1/$f" "$VM.away/$f" && ok "$f byte for byte" || bad "$f differs"
done
mv "$VM.away" "$VM"
check "no log restored" test ! -e "$T/r1/vmware.log"
outside=$(cd "$T/r1" && paths_of win.vmx win.vmsd *.vmdk | grep -v '^$' | while read -r p; do
	case $p in /*) echo "$p";; *) [ -e "$p" ] || echo "missing:$p";; esac; done)
[ -z "$outside" ] && ok "config, vmsd and descriptors refer only to files inside the folder" || bad "outside refs: $outside"
grep -q '^displayName = "Win |22test|22"$' "$T/r1/win.vmx" && ok "escapes kept" || bad "displayName: $(grep displayName "$T/r1/win.vmx")"
grep -q '^ide1:0.fileName = ""' "$T/r1/win.vmx" && ok "the CD image comes back empty" || bad "cd"
grep -q '^snapshot0.disk1.fileName = "data.vmdk"' "$T/r1/win.vmsd" && ok "vmsd: absolute disk path made relative" || bad "vmsd: $(grep disk1 "$T/r1/win.vmsd")"
for f in $POINTS; do
	check "CID of $f kept" test "$(cid "$T/r1/$f" CID)" = "$(cid "$VM/$f" CID)"
done

# ---- --flatten ----
expect_exit 0 "restore --flatten" "$VMB" restore "$R" "$SNAP" --to "$T/r2" --flatten
check "flatten: files" test "$(cd "$T/r2" && ls | sort | tr '\n' ' ')" = "data.vmdk win.nvram win.vmdk win.vmx "
grep -q '^scsi0:0.fileName = "win.vmdk"' "$T/r2/win.vmx" && grep -q '^sata0:1.fileName = "data.vmdk"' "$T/r2/win.vmx" && ok "flatten: vmx names the images" || bad "flatten vmx: $(grep -i filename "$T/r2/win.vmx")"
qemu-img compare -q -f vmdk -F raw "$T/r2/win.vmdk" "$T/ref/win-000002.vmdk.raw" && ok "flatten: system disk = current state" || bad "flatten win"
qemu-img compare -q -f vmdk -F raw "$T/r2/data.vmdk" "$T/ref/data-000001.vmdk.raw" && ok "flatten: data disk = current state" || bad "flatten data"
qemu-img info "$T/r2/win.vmdk" | grep -q "backing file" && bad "flatten: a backing file left" || ok "flatten: no backing file"

# ---- --new-uuid ----
expect_exit 0 "restore --new-uuid" "$VMB" restore "$R" "$SNAP" --to "$T/r3" --new-uuid
b=$(sed -n 's/^uuid.bios = "\(.*\)"/\1/p' "$T/r3/win.vmx")
l=$(sed -n 's/^uuid.location = "\(.*\)"/\1/p' "$T/r3/win.vmx")
[ -n "$b" ] && [ "$b" = "$l" ] && [ "$b" != "56 4d 11 22 33 44 55 66-77 88 99 aa bb cc dd ee" ] && ok "new uuid.bios = uuid.location" || bad "uuids: $b / $l"
grep -q 'generatedAddress = "00:0c:29:aa:bb:cc"' "$T/r3/win.vmx" && bad "MAC kept" || ok "new MAC"
for f in $POINTS; do
	[ "$(cid "$T/r3/$f" CID)" != "$(cid "$VM/$f" CID)" ] && ok "$f: new CID" || bad "$f: CID kept"
done
for pair in win-000001.vmdk:win.vmdk win-000002.vmdk:win-000001.vmdk data-000001.vmdk:data.vmdk; do
	c=${pair%%:*} p=${pair#*:}
	check "$c: parentCID = CID of $p" test "$(cid "$T/r3/$c" parentCID)" = "$(cid "$T/r3/$p" CID)"
done
for f in $POINTS; do
	qemu-img compare -q -f vmdk -F raw "$T/r3/$f" "$T/ref/$f.raw" && ok "--new-uuid point $f opens and equals" || bad "--new-uuid $f"
done
expect_exit 0 "restore --flatten --new-uuid" "$VMB" restore "$R" "$SNAP" --to "$T/r4" --flatten --new-uuid
check "flatten+new-uuid: a new CID" test "$(cid "$T/r4/win.vmdk" CID)" != "$(cid "$T/r2/win.vmdk" CID)"
check "flatten+new-uuid: no parent" test "$(cid "$T/r4/win.vmdk" parentCID)" = ffffffff
expect_exit 1 "into a non-empty folder" "$VMB" restore "$R" "$SNAP" --to "$T/r1"
one_line "non-empty folder"

# ---- an incremental after a write into the current delta ----
q "write -P 0x66 9M 64k" "$VM/win-000002.vmdk"
expect_exit 0 "incremental, the bare folder" "$VMB" backup "$R" "$VM" --json
cp "$T/out" "$T/b2.json"
read_b=$(json_field "$T/b2.json" bytes_read)
dsz=$(stat -c %s "$VM/win-000002.vmdk")
[ "$read_b" -le "$dsz" ] && [ "$read_b" -gt 0 ] && ok "incremental read only the delta ($read_b <= $dsz bytes)" || bad "incremental read $read_b (delta $dsz)"
check "incremental: cbt overlay" test "$(json_field "$T/b2.json" cbt)" = overlay
qemu-img convert -f vmdk -O raw "$VM/win-000002.vmdk" "$T/ref/now.raw"
expect_exit 0 "restore the incremental" "$VMB" restore "$R" "$(json_field "$T/b2.json" snapshot)" --to "$T/r5"
qemu-img compare -q -f vmdk -F raw "$T/r5/win-000002.vmdk" "$T/ref/now.raw" && ok "incremental restores the new state" || bad "incremental restore"
qemu-img compare -q -f vmdk -F raw "$T/r5/win-000001.vmdk" "$T/ref/win-000001.vmdk.raw" && ok "incremental keeps the older points" || bad "incremental point"

count() { "$VMB" snapshots "$R" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
# ---- running ----
mkdir "$VM/win.vmx.lck"
n0=$(count)
expect_exit 1 "a running VM is refused" "$VMB" backup "$R" "vmware:$VM"
one_line "running"
grep -q "is running (win.vmx.lck)" "$T/err" && ok "running: names the lock" || bad "running: $(cat "$T/err")"
check "running: nothing written" test "$(count)" = "$n0"
expect_exit 0 "--crash-consistent" "$VMB" backup "$R" "vmware:$VM" --crash-consistent --json
check "recorded crash-consistent" test "$(json_field "$T/out" consistency)" = crash-consistent
rmdir "$VM/win.vmx.lck"

# ---- hostile folders ----
hostile() { # NAME EDIT-COMMAND GREP
	rm -rf "$T/h"; cp -a "$VM" "$T/h"
	sed -i "s|$VM|$T/h|g" "$T/h/win.vmx" "$T/h/win.vmsd" "$T/h/win-000001.vmdk" 2>/dev/null
	(cd "$T/h" && eval "$2")
	n0=$(count)
	expect_exit 1 "$1 refused" "$VMB" backup "$R" "vmware:$T/h"
	one_line "$1"
	grep -q -- "$3" "$T/err" && ok "$1: says $3" || bad "$1: $(cat "$T/err")"
	check "$1: nothing written" test "$(count)" = "$n0"
}
hostile "wrong parentCID" "python3 -c \"
import re
b = open('win-000002.vmdk','rb').read()
# qemu-img writes CIDs unpadded (%x): replace the whole value, whatever its length
b = re.sub(rb'parentCID=[0-9a-fA-F]+', b'parentCID=deadbeef', b, count=1)
open('win-000002.vmdk','wb').write(b)\"" "win-000002.vmdk: parentCID deadbeef does not match the CID"
hostile "a parent loop" "printf '# Disk DescriptorFile\nversion=1\nCID=0000000a\nparentCID=0000000a\ncreateType=\"monolithicFlat\"\nparentFileNameHint=\"loop.vmdk\"\nRW 16 FLAT \"win.nvram\" 0\n' >loop.vmdk; sed -i 's/^scsi0:0.fileName.*/scsi0:0.fileName = \"loop.vmdk\"/' win.vmx" "parent loop"
hostile "a '..' path" "mkdir -p ../hx && cp win.vmdk ../hx/ && sed -i 's|^scsi0:0.fileName.*|scsi0:0.fileName = \"../hx/win.vmdk\"|' win.vmx" "'..'"
hostile "a symlink" "ln -s win.vmdk link.vmdk && sed -i 's/^scsi0:0.fileName.*/scsi0:0.fileName = \"link.vmdk\"/' win.vmx" "symbolic link"
hostile "a disk listed twice" "echo 'scsi0:1.present = \"TRUE\"' >>win.vmx; echo 'scsi0:1.fileName = \"win-000002.vmdk\"' >>win.vmx" "is the disk of both"
hostile "an unterminated quote" "echo 'memsize = \"12' >>win.vmx" "unterminated quote"
hostile "a missing parent" "rm win-000001.vmdk" "win-000001.vmdk"
finish
