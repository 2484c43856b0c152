#!/bin/bash
# A VirtualBox VM (a folder written by tests/lib/vbox_folder.py: BIOS,
# a SATA disk whose base holds tests/fixtures-src/serial_boot.asm, one
# snapshot, so the current state is a differencing VDI) backed up with
# vbox:, restored with --format qcow2 --define onto a second libvirtd
# (tests/services/libvirt.sh), started under QEMU, and judged by its
# serial port: it prints what the original disk prints when QEMU boots it
# directly (VirtualBox itself is not installable here).
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
SVC=$SRCDIR/tests/services
D=$T/svc
mkdir -p "$D"
PREFIX="vmbvb$$"
U2=
stop_all() {
	[ -n "$U2" ] && virsh -c "$U2" destroy "$PREFIX-copy" >/dev/null 2>&1
	[ -n "$U2" ] && virsh -c "$U2" undefine "$PREFIX-copy" --nvram >/dev/null 2>&1
	"$SVC/libvirt.sh" stop "$D"
}
for t in nasm python3 qemu-img qemu-system-x86_64 virsh libvirtd; do
	command -v $t >/dev/null || { bad "$t is missing (scripts/install-deps.sh test installs it)"; finish; }
done
cleanup_hooks+=("stop_all")
"$SVC/libvirt.sh" start "$D" || { bad "libvirtd did not start"; finish; }
. "$D/env"
U2=$VMB_TEST_LIBVIRT_URI2
R=$T/repo
"$VMB" init "$R" >/dev/null || { bad "init"; finish; }

nasm -f bin "$SRCDIR/tests/fixtures-src/serial_boot.asm" -o "$T/boot.bin" || { bad "nasm"; finish; }
truncate -s 16M "$T/boot.raw"
dd if="$T/boot.bin" of="$T/boot.raw" conv=notrunc status=none
mkdir -p "$T/vm/lab7"
python3 "$SRCDIR/tests/lib/vbox_folder.py" "$T/vm/lab7" lab7 --raw1 "$T/boot.raw" --snapshots 1 >/dev/null ||
	{ bad "fixture"; finish; }

wait_line() { # wait_line FILE
	local i
	for ((i = 0; i < 600; i++)); do
		grep -q vmb-boot-ok "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
# what the original prints: its disk booted by QEMU directly
accel=tcg; [ -w /dev/kvm ] && accel=kvm:tcg
qemu-system-x86_64 -machine accel="$accel" -m 32 -display none -nodefaults -no-reboot \
	-drive file="$T/boot.raw",format=raw,if=ide -serial file:"$T/orig.serial" &
qpid=$!
wait_line "$T/orig.serial" && ok "the original disk prints its line under QEMU" || bad "the original does not boot"
kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null

expect_exit 0 "backup vbox:" "$VMB" backup "$R" "vbox:$T/vm/lab7"
C=$PREFIX-copy
expect_exit 0 "restore --format qcow2 --define on the second libvirtd" "$VMB" restore "$R" lab7@latest \
	--to "$T/other/lab7" --format qcow2 --define --connect "$U2" --name "$C" --json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["defined"] == sys.argv[2], d; print(d.get("no_equivalent"))' \
	"$T/out" "$C" >"$T/noeq" && ok "restore --json names the domain" || bad "json: $(cat "$T/out")"
grep -q "user-mode networking" "$T/noeq" && ok "what has no equivalent is listed: $(cat "$T/noeq")" || bad "no report: $(cat "$T/noeq")"
virsh -q -c "$U2" dumpxml "$C" >"$T/copy.xml" 2>/dev/null
grep -q "$T/other/lab7/lab7.qcow2" "$T/copy.xml" && grep -q "bus='sata'" "$T/copy.xml" &&
	ok "the domain's disk is the flattened qcow2 on SATA" || bad "domain XML: $(cat "$T/copy.xml")"
grep -q "<vcpu[^>]*>2</vcpu>" "$T/copy.xml" && grep -q "<memory unit='KiB'>262144</memory>" "$T/copy.xml" &&
	ok "CPUs and memory from the .vbox" || bad "cpus/memory: $(grep -E 'vcpu|memory' "$T/copy.xml")"
mac=$(sed -n 's/.*MACAddress="\([0-9A-F]*\)".*/\1/p' "$T/vm/lab7/lab7.vbox" | head -1 | tr 'A-F' 'a-f' | sed 's/../&:/g; s/:$//')
grep -q "$mac" "$T/copy.xml" && ok "the NIC keeps its MAC ($mac)" || bad "mac $mac not in the domain"
[ -f "$T/other/lab7/lab7.vbox" ] && ! ls "$T/other/lab7/Snapshots/"*.vdi >/dev/null 2>&1 &&
	ok "the folder is there, flattened" || bad "folder: $(ls -R "$T/other/lab7")"
qemu-img compare -q -f qcow2 -F raw "$T/other/lab7/lab7.qcow2" "$T/vm/lab7/../../boot.raw" >/dev/null 2>&1 &&
	bad "the image should carry the snapshot's changes" || ok "the image is the current state, not the base"
virsh -q -c "$U2" start "$C" >/dev/null || bad "the domain does not start"
serial=$(sed -n "s/.*<serial type='file'>.*//; s/.*<source path='\([^']*serial[^']*\)'.*/\1/p" "$T/copy.xml" | head -1)
wait_line "$serial" && ok "the defined domain boots the VirtualBox disk and prints" || bad "no output in $serial"
cmp -s "$T/orig.serial" "$serial" && ok "it prints what the original printed" ||
	bad "serial differs: $(od -c "$T/orig.serial" | head -3) vs $(od -c "$serial" | head -3)"
finish
