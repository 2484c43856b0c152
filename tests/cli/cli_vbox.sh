# The VirtualBox plugin (plugins/vbox/, docs/vbox.md).  VirtualBox is not
# installable here: the test writes its own VM folder the way VirtualBox
# lays it out (tests/lib/vbox_folder.py: a .vbox settings file by hand in
# VirtualBox's format, VDI bases and differencing images written from the
# format's documentation by tests/lib/vdi_gen.py, one base by qemu-img),
# and reads VDI chains back with that generator's own reader.
#  - vbox:FOLDER, vbox:FILE.vbox and the bare folder back up the current
#    state (both disks, their whole chains) as one snapshot; restored
#    disks equal the originals; a second backup reads nothing (overlay);
#  - a VDI header whose uuid or parent uuid disagrees with the media
#    registry is named; hostile settings (entities, a DTD, '..', a
#    symlink, a medium listed twice, an attachment of no medium) are
#    refused with one line and nothing written;
#  - the VM's state: VBoxManage is a test double here (a script on PATH
#    that prints `showvminfo --machinereadable` output and logs its
#    arguments), standing in for the real program that is absent: a
#    running VM is refused, --crash-consistent records it, --live takes
#    and deletes a VirtualBox snapshot.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"
command -v qemu-img >/dev/null || skip "qemu-img is needed"
GEN="python3 $SRCDIR/tests/lib/vdi_gen.py"
FOLDER="python3 $SRCDIR/tests/lib/vbox_folder.py"

python3 - "$T" <<'PY'
import os, random, sys
r = random.Random(16)
def blk(): return bytes(r.getrandbits(8) for _ in range(4096)) * 256
open(sys.argv[1] + '/d1.raw', 'wb').write(blk() + blk() + blk() + bytes(2 << 20) + blk() + blk() + blk())
open(sys.argv[1] + '/d2.raw', 'wb').write(bytes(1 << 20) + blk() + blk() + blk())
PY
mkdir -p "$T/vms/lab1" "$T/st"
$FOLDER "$T/vms/lab1" lab1 --raw1 "$T/d1.raw" --raw2 "$T/d2.raw" --efi \
	--abs2 --qemu-base2 --states "$T/st" >"$T/mach" || bad "fixture"
VM=$T/vms/lab1
R=$T/repo
sleep 2 # change tracking trusts a layer's times only once they are 2 s old
expect_exit 0 "init" "$VMB" init "$R"
# an independent look at the chain: the generator's reader agrees with
# the states it wrote
top=$(sed -n 's/.*<Image uuid="{\([^}]*\)}".*/\1/p' "$VM/lab1.vbox" | sed -n 5p)
check "fixture: the generator reads its own chain" $GEN read "$T/x.raw" \
	"$VM/Snapshots/{$top}.vdi" \
	"$(ls "$VM"/Snapshots/*.vdi | while read -r f; do
		[ "$($GEN ids "$f" | cut -d' ' -f1)" = "$($GEN ids "$VM/Snapshots/{$top}.vdi" | cut -d' ' -f2)" ] && echo "$f"; done)" \
	"$VM/lab1.vdi"
cmp -s "$T/x.raw" "$T/st/disk0-current.raw" && ok "fixture chain reads as written" || bad "fixture chain"

expect_exit 0 "backup vbox:FOLDER" "$VMB" backup "$R" "vbox:$VM" --json
cp "$T/out" "$T/b1.json"
grep -q '"vm":"lab1"' "$T/b1.json" && ok "VM named from its settings" || bad "vm name: $(cat "$T/b1.json")"
grep -q '"consistency":"unchecked"' "$T/b1.json" && ok "no VBoxManage: state unchecked, said so" ||
	bad "consistency: $(cat "$T/b1.json")"
CHECK="python3 $SRCDIR/tests/lib/vbox_check.py"
expect_exit 0 "restore the folder" "$VMB" restore "$R" latest --to "$T/r1"
n=$($CHECK inside "$T/r1/lab1.vbox") && ok "restored settings name only files inside the folder ($n paths, the absolute one too)" ||
	bad "restored settings leave the folder: $n"
for f in lab1.vdi lab1-ide.vdi lab1.nvram Snapshots; do
	[ -e "$T/r1/$f" ] || bad "restore: $f missing"
done
[ -e "$T/r1/Logs" ] && bad "Logs/ was stored" || ok "Logs/ not stored"
(cd "$VM" && find . -name '*.vdi' -o -name '*.sav' -o -name '*.nvram' | sort) >"$T/orig.list"
(cd "$T/r1" && find . -name '*.vdi' -o -name '*.sav' -o -name '*.nvram' | sort) >"$T/rest.list"
cmp -s "$T/orig.list" "$T/rest.list" && ok "every image, saved state and NVRAM file back under its name" ||
	bad "files: $(diff "$T/orig.list" "$T/rest.list")"
mkdir -p "$T/pts"
n=$($CHECK states "$T/r1/lab1.vbox" "$T/pts") && [ "$n" = 6 ] && ok "3 states x 2 disks resolve, VDI headers agree with the registry" ||
	bad "states: $n"
for k in 0 1; do
	ctl=SATA; [ $k = 1 ] && ctl=IDE
	for p in step1:s1 step2:s2 current:current; do
		cmp -s "$T/pts/${p%%:*}-$ctl.raw" "$T/st/disk$k-${p#*:}.raw" &&
			ok "disk $ctl at ${p%%:*} equals the original" || bad "disk $ctl at ${p%%:*} differs"
	done
done
"$VMB" init "$T/repo2" >/dev/null
expect_exit 0 "the restored folder backs up (headers and registry agree)" "$VMB" backup "$T/repo2" "vbox:$T/r1"

# --flatten: the current state, one image per drive, no snapshot tree
expect_exit 0 "restore --flatten" "$VMB" restore "$R" latest --to "$T/rf" --flatten
grep -q "<Snapshot \|currentSnapshot" "$T/rf/lab1.vbox" && bad "flatten: snapshot tree left" || ok "flatten: no snapshot tree"
[ -z "$(ls "$T/rf/Snapshots" 2>/dev/null)" ] && ok "flatten: no differencing images or snapshot states" || bad "flatten: $(ls "$T/rf/Snapshots")"
[ "$(grep -c '<HardDisk ' "$T/rf/lab1.vbox")" = 2 ] && ok "flatten: one medium per drive" || bad "flatten: media $(grep -c '<HardDisk ' "$T/rf/lab1.vbox")"
mkdir -p "$T/ptf"
$CHECK inside "$T/rf/lab1.vbox" >/dev/null && [ "$($CHECK states "$T/rf/lab1.vbox" "$T/ptf")" = 2 ] &&
	ok "flatten: settings and VDI headers agree" || bad "flatten: inconsistent"
for k in 0 1; do
	ctl=SATA; img=lab1.vdi; [ $k = 1 ] && ctl=IDE img=lab1-ide.vdi
	qemu-img compare -q -f vdi -F raw "$T/rf/$img" "$T/st/disk$k-current.raw" &&
		ok "flatten: qemu-img compare $img = current state" || bad "flatten: $img differs (qemu-img)"
done

# --new-uuid: new machine, media and MACs, consistent in XML and headers
expect_exit 0 "restore --new-uuid" "$VMB" restore "$R" latest --to "$T/rn" --new-uuid
$CHECK uuids "$VM/lab1.vbox" | sort >"$T/u.old"
$CHECK uuids "$T/rn/lab1.vbox" | sort >"$T/u.new"
[ "$(wc -l <"$T/u.new")" = "$(wc -l <"$T/u.old")" ] && [ -z "$(comm -12 "$T/u.old" "$T/u.new")" ] &&
	ok "new-uuid: machine, every disk and MAC changed" || bad "new-uuid: shared $(comm -12 "$T/u.old" "$T/u.new")"
[ "$(grep -c MACAddress "$T/rn/lab1.vbox")" = 3 ] && [ "$(grep -o 'MACAddress="[^"]*"' "$T/rn/lab1.vbox" | sort -u | wc -l)" = 1 ] &&
	ok "new-uuid: one NIC keeps one (new) MAC in every state" || bad "new-uuid MACs: $(grep -o 'MACAddress="[^"]*"' "$T/rn/lab1.vbox")"
mkdir -p "$T/ptn"
[ "$($CHECK states "$T/rn/lab1.vbox" "$T/ptn")" = 6 ] && ok "new-uuid: every header's uuid and parent link agree with the registry" ||
	bad "new-uuid: headers"
cmp -s "$T/ptn/step1-SATA.raw" "$T/st/disk0-s1.raw" && cmp -s "$T/ptn/current-IDE.raw" "$T/st/disk1-current.raw" &&
	ok "new-uuid: data unchanged" || bad "new-uuid: data"
expect_exit 0 "restore --new-uuid --flatten" "$VMB" restore "$R" latest --to "$T/rnf" --new-uuid --flatten
mkdir -p "$T/ptnf"
[ "$($CHECK states "$T/rnf/lab1.vbox" "$T/ptnf")" = 2 ] && ! grep -qi "$(head -1 "$T/u.old")" "$T/rnf/lab1.vbox" &&
	ok "new-uuid + flatten: consistent" || bad "new-uuid + flatten"
expect_exit 1 "restore into a folder that is not empty" "$VMB" restore "$R" latest --to "$T/rn"
one_line "restore into a non-empty folder"

expect_exit 0 "backup the bare folder again" "$VMB" backup "$R" "$VM" --json
grep -q '"cbt":"overlay"' "$T/out" && grep -q '"bytes_read":0' "$T/out" &&
	ok "second backup: nothing read (the chain is the change tracking)" || bad "second backup: $(cat "$T/out")"
expect_exit 0 "backup vbox:FILE.vbox" "$VMB" backup "$R" "vbox:$VM/lab1.vbox" --json
n=$("$VMB" snapshots "$R" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 3 ] && ok "three snapshots" || bad "snapshots: $n"

# ---- wrong files are named, nothing written ----
count() { "$VMB" snapshots "$R" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
refused() { # refused DESC PATTERN SOURCE
	local before; before=$(count)
	expect_exit 1 "$1" "$VMB" backup "$R" "$3"
	one_line "$1"
	grep -q -- "$2" "$T/err" && ok "$1: says $2" || bad "$1: message: $(cat "$T/err")"
	[ "$(count)" = "$before" ] && ok "$1: nothing written" || bad "$1: a snapshot was written"
}
cp -a "$VM" "$T/vms/wrongparent"
f=$(ls "$T/vms/wrongparent/Snapshots/"*.vdi | head -1)
$GEN set-parent "$f" 01234567-89ab-cdef-0123-456789abcdef
refused "a differencing image with a wrong parent uuid" "$(basename "$f").*parent uuid is {01234567-89ab-cdef-0123-456789abcdef}" "vbox:$T/vms/wrongparent"
cp -a "$VM" "$T/vms/wronguuid"
$GEN set-uuid "$T/vms/wronguuid/lab1.vdi" 11111111-89ab-cdef-0123-456789abcdef
refused "a base image with a wrong uuid" "lab1.vdi: the VDI header's image uuid is {11111111" "vbox:$T/vms/wronguuid"
hostile() { # hostile NAME PATTERN PYTHON-EXPR-ON-s
	cp -a "$VM" "$T/vms/$1"
	python3 - "$T/vms/$1/lab1.vbox" "$3" <<'PY'
import re, sys
p = sys.argv[1]; s = open(p).read()
s = eval(sys.argv[2])
open(p, 'w').write(s)
PY
	refused "$1" "$2" "vbox:$T/vms/$1"
}
hostile entity "document type declaration" \
	"s.replace('<VirtualBox ', '<!DOCTYPE VirtualBox [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]>\n<VirtualBox ', 1).replace('name=\"lab1\"', 'name=\"&b;\"')"
hostile external "document type declaration" \
	"s.replace('<VirtualBox ', '<!DOCTYPE VirtualBox SYSTEM \"http://127.0.0.1:9/x.dtd\">\n<VirtualBox ', 1)"
hostile dotdot "goes up a folder" "re.sub(r'location=\"lab1.vdi\"', 'location=\"../lab1/lab1.vdi\"', s)"
hostile twice "listed twice" \
	"s.replace('<HardDisks>\n', '<HardDisks>\n<HardDisk uuid=\"{00000000-0000-0000-0000-000000000001}\" location=\"lab1.vdi\" format=\"VDI\"/>\n', 1)"
hostile nomedium "is not in the media registry" "re.sub(r'<Image uuid=\"\{[0-9a-f]{8}', '<Image uuid=\"{abcdef01', s, count=1)"
hostile attachedtwice "attached twice" \
	"(lambda i: s[:i] + s[i:].replace('</AttachedDevice>', '</AttachedDevice>' + s[i:s.index('</AttachedDevice>', i)].replace('port=\"0\"', 'port=\"1\"') + '</AttachedDevice>', 1))(s.rindex('<AttachedDevice type=\"HardDisk\"', 0, s.rindex('name=\"IDE\"')))"
cp -a "$VM" "$T/vms/symlink"
mv "$T/vms/symlink/lab1.nvram" "$T/elsewhere.nvram"
ln -s "$T/elsewhere.nvram" "$T/vms/symlink/lab1.nvram"
refused "a symlinked NVRAM file" "symbolic link" "vbox:$T/vms/symlink"
cp -a "$VM" "$T/vms/nosav"
rm "$T/vms/nosav/Snapshots/"*.sav
refused "a missing saved state" "saved state" "vbox:$T/vms/nosav"
mkdir -p "$T/vms/empty"
refused "a folder with no settings file" "no .vbox settings file" "vbox:$T/vms/empty"

# ---- the VM's state through VBoxManage (a test double) ----
mkdir -p "$T/bin"
cat >"$T/bin/VBoxManage" <<'SH'
#!/bin/sh
# Test double for VirtualBox's VBoxManage (not installable here): logs its
# arguments and answers showvminfo from $FAKE_VBOX_STATE; snapshot take
# installs the settings VirtualBox would write ($FAKE_VBOX_AFTER).
echo "$*" >>"$FAKE_VBOX_LOG"
case "$1" in
showvminfo)
	[ "$FAKE_VBOX_STATE" = unknown ] && { echo "VBoxManage: error: Could not find a registered machine" >&2; exit 1; }
	printf 'name="lab1"\nUUID="%s"\nVMState="%s"\nVMStateChangeTime="2026-12-07T07:00:00.000000000"\n' "$2" "$FAKE_VBOX_STATE";;
snapshot)
	case "$3" in
	take) [ -n "${FAKE_VBOX_AFTER:-}" ] && cp "$FAKE_VBOX_AFTER" "$FAKE_VBOX_SETTINGS"
	      echo "0%...10%...100%"; echo "Snapshot taken. UUID: ${FAKE_VBOX_SNAP:-}";;
	delete) echo "0%...100%";;
	esac;;
esac
SH
chmod +x "$T/bin/VBoxManage"
export FAKE_VBOX_LOG=$T/vboxmanage.log
mach=$(cat "$T/mach")
PATH=$T/bin:$PATH FAKE_VBOX_STATE=running expect_exit 1 "a running VM is refused" "$VMB" backup "$R" "vbox:$VM"
one_line "running VM"
grep -q "is running: shut it down, or use --live or --crash-consistent" "$T/err" && ok "running: says what to do" || bad "running: $(cat "$T/err")"
grep -q "^showvminfo $mach --machinereadable\$" "$FAKE_VBOX_LOG" && ok "VBoxManage asked: showvminfo UUID --machinereadable" ||
	bad "VBoxManage log: $(cat "$FAKE_VBOX_LOG")"
PATH=$T/bin:$PATH FAKE_VBOX_STATE=running expect_exit 0 "--crash-consistent" "$VMB" backup "$R" "vbox:$VM" --crash-consistent --json
grep -q '"consistency":"crash-consistent"' "$T/out" && ok "manifest says crash-consistent" || bad "crash: $(cat "$T/out")"
grep -q '"consistency_note":"the VM was running' "$T/out" && ok "the note says why" || bad "note missing: $(cat "$T/out")"
PATH=$T/bin:$PATH FAKE_VBOX_STATE=poweroff expect_exit 0 "powered off" "$VMB" backup "$R" "vbox:$VM" --json
grep -q '"consistency":"powered-off"' "$T/out" && ok "VBoxManage poweroff: powered-off" || bad "poweroff: $(cat "$T/out")"
PATH=$T/bin:$PATH FAKE_VBOX_STATE=saved expect_exit 0 "saved" "$VMB" backup "$R" "vbox:$VM" --json
grep -q '"consistency":"saved"' "$T/out" && ok "VBoxManage saved: saved" || bad "saved: $(cat "$T/out")"
PATH=$T/bin:$PATH FAKE_VBOX_STATE=unknown expect_exit 0 "not registered" "$VMB" backup "$R" "vbox:$VM" --json
grep -q '"consistency":"unchecked"' "$T/out" && ok "unregistered VM: unchecked" || bad "unknown: $(cat "$T/out")"
PATH=$T/bin:$PATH FAKE_VBOX_STATE=paused expect_exit 1 "a paused VM is refused too" "$VMB" backup "$R" "vbox:$VM"

# --live: VBoxManage takes a snapshot (the double installs the settings
# VirtualBox would write then), the images under it are read, and the
# snapshot is deleted after
mkdir -p "$T/vms/live" "$T/stl"
$FOLDER "$T/vms/live" live --raw1 "$T/d1.raw" --before-live "$T/live-before.vbox" --states "$T/stl" >/dev/null
cp "$T/vms/live/live.vbox" "$T/live-after.vbox"
cp "$T/live-before.vbox" "$T/vms/live/live.vbox"
lsnap=$(cat "$T/live-before.vbox.snap")
lmach=$(sed -n 's/.*Machine uuid="{\([^}]*\)}".*/\1/p' "$T/live-before.vbox")
: >"$FAKE_VBOX_LOG"
PATH=$T/bin:$PATH FAKE_VBOX_STATE=running expect_exit 0 "--live --dry-run" "$VMB" backup "$R" "vbox:$T/vms/live" --live --dry-run
grep -q "would run: VBoxManage snapshot $lmach take vmb-backup-[0-9]* --live" "$T/err" &&
	grep -q "would run: VBoxManage snapshot $lmach delete" "$T/err" && ok "--dry-run prints the VBoxManage commands" ||
	bad "dry run: $(cat "$T/err")"
grep -q "^dry run: .*nothing was stored" "$T/out" && ok "dry run: nothing stored" || bad "dry run out: $(cat "$T/out")"
grep -q "take\|delete" "$FAKE_VBOX_LOG" && bad "dry run ran a snapshot command: $(cat "$FAKE_VBOX_LOG")" || ok "dry run: only showvminfo ran"
cmp -s "$T/vms/live/live.vbox" "$T/live-before.vbox" && ok "dry run: settings untouched" || bad "dry run changed the settings"
PATH=$T/bin:$PATH FAKE_VBOX_STATE=running FAKE_VBOX_AFTER=$T/live-after.vbox FAKE_VBOX_SETTINGS=$T/vms/live/live.vbox \
	FAKE_VBOX_SNAP=$lsnap expect_exit 0 "--live on a running VM" "$VMB" backup "$R" "vbox:$T/vms/live" --live --json
grep -q '"consistency":"crash-consistent"' "$T/out" && grep -q "VirtualBox live snapshot {$lsnap}" "$T/out" &&
	ok "live: crash-consistent, the snapshot named" || bad "live: $(cat "$T/out")"
grep -q "^snapshot $lmach take vmb-backup-[0-9]* --live\$" "$FAKE_VBOX_LOG" && grep -q "^snapshot $lmach delete $lsnap\$" "$FAKE_VBOX_LOG" &&
	ok "live: VBoxManage took, then deleted, the snapshot" || bad "live log: $(cat "$FAKE_VBOX_LOG")"
[ "$(grep -n . "$FAKE_VBOX_LOG" | grep -E 'take|delete' | cut -d: -f1 | tr '\n' ' ')" != "" ] &&
	[ "$(grep -c take "$FAKE_VBOX_LOG")" = 1 ] && [ "$(grep -c delete "$FAKE_VBOX_LOG")" = 1 ] && ok "live: once each" || bad "live: counts"
expect_exit 0 "restore the live backup" "$VMB" restore "$R" live@latest --to "$T/rl"
mkdir -p "$T/ptl"
$CHECK states "$T/rl/live.vbox" "$T/ptl" >/dev/null && cmp -s "$T/ptl/current-SATA.raw" "$T/stl/disk0-s2.raw" &&
	ok "live: the images under the new snapshot were stored, with the settings from before it" || bad "live: wrong state read"
grep -q "vmb-backup-" "$T/rl/live.vbox" && bad "live: the temporary snapshot is in the stored settings" ||
	ok "live: the temporary snapshot is not in the stored settings"

# ---- the classroom: every VM folder in one command ----
for i in 1 2 3; do
	mkdir -p "$T/lab/pc$i"
	$FOLDER "$T/lab/pc$i" "pc$i" --raw1 "$T/d1.raw" --snapshots 1 >/dev/null
done
mkdir -p "$T/lab/broken" && cp -a "$T/lab/pc1/." "$T/lab/broken/"
rm "$T/lab/broken/pc1.vdi"
mkdir -p "$T/lab/badxml" && echo '<VirtualBox><Machine' >"$T/lab/badxml/x.vbox"
RC=$T/repo-class
sleep 2 # layer times are trusted once 2 s old
expect_exit 0 "init classroom repo" "$VMB" init "$RC"
expect_exit 1 "--each over a class with two broken VMs" "$VMB" backup "$RC" --each "vbox:$T/lab/*" --json
tail -1 "$T/err" | grep -q "backup failed for 2 of 5 VMs: $T/lab/badxml, $T/lab/broken" &&
	ok "the last line names both failed VMs" || bad "last line: $(tail -1 "$T/err")"
[ "$(grep -c '^vmb: \[[1-5]/5\]' "$T/err")" = 5 ] && ok "a progress line per VM" || bad "progress: $(cat "$T/err")"
grep -q "\[2/5\] $T/lab/broken: FAILED: .*pc1.vdi: No such file" "$T/err" && ok "the missing disk is named" || bad "broken: $(cat "$T/err")"
python3 - "$T/out" <<'PY' && ok "one JSON object: 3 ok, 2 failed, one entry per VM" || bad "--each json: $(cat "$T/out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d['ok'] == 3 and d['failed'] == 2, d
assert len(d['vms']) == 5
assert sorted(v['vm'] for v in d['vms'] if 'snapshot' in v) == ['pc1', 'pc2', 'pc3']
assert all('error' in v for v in d['vms'] if 'snapshot' not in v)
assert len(d['failed_sources']) == 2
PY
n=$("$VMB" snapshots "$RC" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 3 ] && ok "one snapshot per good VM" || bad "class snapshots: $n"
printf '# the room\n%s\n\n%s\n' "$T/lab/pc1" "vbox:$T/lab/pc2/pc2.vbox" >"$T/list"
expect_exit 0 "--each-from a list file" "$VMB" backup "$RC" --each-from "$T/list" --json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"]==2 and all(v["cbt"]=="overlay" for v in d["vms"]), d' "$T/out" &&
	ok "list file: 2 VMs, incremental (overlay)" || bad "list: $(cat "$T/out")"
expect_exit 2 "--each with --vm is a usage error" "$VMB" backup "$RC" --each "$T/lab/pc1" --vm x

finish
