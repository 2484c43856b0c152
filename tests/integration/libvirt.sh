#!/bin/bash
# The libvirt plugin against real libvirt daemons with QEMU in software
# emulation (tests/services/libvirt.sh): live full and incremental backups
# of a running domain with two disks in different formats (cbt "libvirt",
# bytes read about what the guest wrote, restores equal to the live disks
# at each point), a restore defined under a new name on a second daemon
# that boots and prints what the original prints, a shut off domain, a
# checkpoint chain broken behind vmb's back or by a restart (full read,
# warning, exit 0), checkpoints no longer needed removed, and the errors
# that must leave the repository untouched.
. "$TESTLIB"
SVC=$SRCDIR/tests/services
D=$T/svc
mkdir -p "$D"
PREFIX="vmbt$$"
U=
U2=
lv() { virsh -q -c "$U" "$@"; }
lv2() { virsh -q -c "$U2" "$@"; }
stop_all() {
	for dom in "$PREFIX-a" "$PREFIX-snap" "$PREFIX-bad"; do
		virsh -c "$U" destroy "$dom" >/dev/null 2>&1
		virsh -c "$U" undefine "$dom" --checkpoints-metadata \
			--snapshots-metadata >/dev/null 2>&1
	done
	virsh -c "$U2" destroy "$PREFIX-copy" >/dev/null 2>&1
	virsh -c "$U2" undefine "$PREFIX-copy" >/dev/null 2>&1
	"$SVC/libvirt.sh" stop "$D"
}
cleanup_hooks+=("stop_all")
for t in nasm qemu-img qemu-system-x86_64 virsh libvirtd; do
	command -v $t >/dev/null || { bad "$t is missing (scripts/install-deps.sh test installs it)"; finish; }
done
"$SVC/libvirt.sh" start "$D" || { bad "libvirtd did not start"; finish; }
. "$D/env"
U=$VMB_TEST_LIBVIRT_URI
U2=$VMB_TEST_LIBVIRT_URI2
R=$T/repo
export LIBVIRT_DEFAULT_URI=$U
"$VMB" init "$R" >/dev/null || { bad "init"; finish; }

# a boot sector that prints a line on the serial port, then halts
nasm -f bin "$SRCDIR/tests/fixtures-src/serial_boot.asm" -o "$T/boot.bin" || { bad "nasm"; finish; }
truncate -s 64M "$T/boot.raw"
dd if="$T/boot.bin" of="$T/boot.raw" conv=notrunc status=none
qemu-img convert -f raw -O qcow2 "$T/boot.raw" "$T/vda.qcow2"
qemu-io -f qcow2 -c "write -P 0x5a 20M 3M" "$T/vda.qcow2" >/dev/null
# the second disk is raw: no dirty bitmap there, fingerprints instead
truncate -s 32M "$T/vdb.raw"
qemu-io -f raw -c "write -P 0x11 1M 2M" "$T/vdb.raw" >/dev/null

domxml() { # domxml NAME SERIAL DISK:FMT:DEV...
	local name=$1 serial=$2; shift 2
	echo "<domain type='qemu'><name>$name</name><memory unit='MiB'>64</memory>"
	echo "<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>"
	echo "<on_reboot>destroy</on_reboot><devices>"
	echo "<emulator>$(command -v qemu-system-x86_64)</emulator>"
	for d in "$@"; do
		IFS=: read -r file fmt dev <<<"$d"
		echo "<disk type='file' device='disk'><driver name='qemu' type='$fmt'/>"
		echo "<source file='$file'/><target dev='$dev' bus='virtio'/></disk>"
	done
	echo "<serial type='file'><source path='$serial'/><target port='0'/></serial>"
	echo "<interface type='user'><mac address='52:54:00:12:34:56'/><model type='virtio'/></interface>"
	echo "</devices></domain>"
}
wait_serial() { # wait_serial FILE: the boot sector's line within 60 s
	local i
	for ((i = 0; i < 600; i++)); do
		grep -q vmb-boot-ok "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
# write into the running domain's disk as the guest would (test-services.md)
guest_write() { # guest_write DOM DEV PATTERN OFFSET LEN
	lv qemu-monitor-command "$1" --hmp \
		"qemu-io -d /machine/peripheral/virtio-disk$2/virtio-backend \"write -P $3 $4 $5\"" >/dev/null &&
	lv qemu-monitor-command "$1" --hmp \
		"qemu-io -d /machine/peripheral/virtio-disk$2/virtio-backend flush" >/dev/null
}
jf() { json_field "$T/out" "$1"; }
ckpts() { lv checkpoint-list "$1" --name | grep -c '^vmb-'; }
A=$PREFIX-a
domxml "$A" "$T/a.serial" "$T/vda.qcow2:qcow2:vda" "$T/vdb.raw:raw:vdb" >"$T/a.xml"
lv define "$T/a.xml" >/dev/null && lv start "$A" >/dev/null ||
	{ bad "the test domain did not start"; finish; }
check "the domain boots and prints on its serial port" wait_serial "$T/a.serial"

# ---- full, then incremental, of the running domain ----
expect_exit 0 "full live backup" "$VMB" backup "$R" "libvirt:$A" --json
check "full: cbt none" test "$(jf cbt)" = none
check "full: vm is the domain's name" test "$(jf vm)" = "$A"
check "full: both disks, 96 MiB" test "$(jf bytes_total)" = $((96 << 20))
check "full: consistency recorded (no guest agent)" test "$(jf consistency)" = crash-consistent
check "one vmb checkpoint after the full" test "$(ckpts "$A")" = 1
restore_cmp() { # restore_cmp WHAT: restore latest as raw, compare with the live disks
	local out=$T/r-$1
	"$VMB" restore "$R" "$A@latest" --to "$out" --format raw --quiet &&
	qemu-img compare -q -U -f raw -F qcow2 "$out/vda.img" "$T/vda.qcow2" &&
	qemu-img compare -q -U -f raw -F raw "$out/vdb.img" "$T/vdb.raw"
}
check "full: restores equal the live disks" restore_cmp full

guest_write "$A" 0 0xcd 8M 4M || bad "qemu-io write through the monitor"
guest_write "$A" 0 0xce 40M 64K || bad "qemu-io write through the monitor"
expect_exit 0 "incremental live backup" "$VMB" backup "$R" "libvirt:$A" --json
check "incremental: cbt libvirt" test "$(jf cbt)" = libvirt
read_mib=$(( $(jf bytes_read) ))
# vda: the bitmap's 4 MiB + 64 KiB; vdb (raw, no bitmap): its 2 MiB again
check "incremental reads about what was written ($read_mib bytes)" \
	test "$read_mib" -ge $(((4 << 20) + (64 << 10))) -a "$read_mib" -le $((7 << 20))
check "still one vmb checkpoint (the old one removed)" test "$(ckpts "$A")" = 1
check "incremental: restores equal the live disks" restore_cmp incr
expect_exit 0 "an unchanged incremental" "$VMB" backup "$R" "libvirt:$A" --json
check "unchanged: vda reads nothing, vdb its allocation" \
	test "$(jf bytes_read)" -le $((2 << 20))
check "the domain XML is stored in the snapshot" \
	grep -q "<name>$A</name>" "$T/r-full/$A.xml"

# ---- restore onto the "other host", under a new name ----
C=$PREFIX-copy
expect_exit 0 "restore --define on the second libvirtd" "$VMB" restore "$R" \
	"$A@latest" --to "$T/other/vm" --format qcow2 --define --connect "$U2" \
	--name "$C" --json
check "restore --json names the defined domain" test "$(jf defined)" = "$C"
lv2 dumpxml "$C" >"$T/copy.xml" 2>/dev/null
check "the copy's disks point at the restored files" \
	grep -q "$T/other/vm/vdb.qcow2" "$T/copy.xml"
check "the copy's raw disk became qcow2" \
	test "$(grep -c "type='qcow2'" "$T/copy.xml")" = 2
uuid2=$(lv2 domuuid "$C" 2>/dev/null)
check "the copy has a new UUID" test -n "$uuid2" -a "$uuid2" != "$(lv domuuid "$A")"
check "the copy's MAC address was dropped" sh -c "grep -q '<interface' '$T/copy.xml' && ! grep -q 52:54:00:12:34:56 '$T/copy.xml'"
lv2 start "$C" >/dev/null || bad "the restored domain does not start on the second host"
serial2=$(sed -n "s/.*<source path='\([^']*\)'.*/\1/p" "$T/copy.xml" | head -1)
check "the restored domain prints the same serial output" wait_serial "$serial2"
check "both serial logs say the same" cmp -s "$T/a.serial" "$serial2"

# ---- the checkpoint chain, broken behind vmb's back ----
for c in $(lv checkpoint-list "$A" --name); do lv checkpoint-delete "$A" "$c" >/dev/null; done
guest_write "$A" 0 0x77 12M 1M
expect_exit 0 "backup after the checkpoints were deleted" "$VMB" backup "$R" "libvirt:$A" --json
check "deleted checkpoints: a full read (fingerprint)" test "$(jf cbt)" = fingerprint
check "deleted checkpoints: a warning says so" grep -q "is gone" "$T/err"
check "deleted checkpoints: the restore is right" restore_cmp broken
expect_exit 0 "the next backup" "$VMB" backup "$R" "libvirt:$A" --json
check "the chain is healthy again: cbt libvirt" test "$(jf cbt)" = libvirt
lv destroy "$A" >/dev/null && lv start "$A" >/dev/null
wait_serial "$T/a.serial"
guest_write "$A" 0 0x78 30M 1M
expect_exit 0 "backup after a restart" "$VMB" backup "$R" "libvirt:$A" --json
check "restarted: a full read (fingerprint)" test "$(jf cbt)" = fingerprint
check "restarted: a warning says so" grep -q "restarted" "$T/err"
check "restarted: the restore is right" restore_cmp restarted

# ---- a shut off domain: its images read directly ----
lv destroy "$A" >/dev/null
expect_exit 0 "backup of the shut off domain" "$VMB" backup "$R" "libvirt:$A" --json
check "shut off: consistency powered-off" test "$(jf consistency)" = powered-off
check "shut off: the restore is right" restore_cmp off

# ---- VM snapshots through the plugin (libvirt's own, internal qcow2) ----
S=$PREFIX-snap
qemu-img convert -f raw -O qcow2 "$T/boot.raw" "$T/snap.qcow2"
domxml "$S" "$T/snap.serial" "$T/snap.qcow2:qcow2:vda" >"$T/snap.xml"
lv define "$T/snap.xml" >/dev/null || bad "define the snapshot domain"
expect_exit 0 "vmb snapshot create libvirt:DOM" "$VMB" snapshot create "libvirt:$S" s1
qemu-io -f qcow2 -c "write -P 0x99 1M 64K" "$T/snap.qcow2" >/dev/null
"$VMB" snapshot list "libvirt:$S" --json >"$T/out"
check "vmb snapshot list libvirt:DOM shows it" grep -q '"name":"s1","created":[1-9]' "$T/out"
expect_exit 0 "vmb snapshot revert libvirt:DOM" "$VMB" snapshot revert "libvirt:$S" s1
qemu-io -f qcow2 -c "read -P 0 1M 64K" "$T/snap.qcow2" >"$T/qio" 2>&1
check "the revert brought the old data back" \
	sh -c "grep -q 'read 65536/65536' '$T/qio' && ! grep -q failed '$T/qio'"
expect_exit 0 "vmb snapshot delete libvirt:DOM" "$VMB" snapshot delete "libvirt:$S" s1
check "the snapshot is gone" test -z "$(lv snapshot-list "$S" --name)"
expect_exit 1 "deleting a missing snapshot" "$VMB" snapshot delete "libvirt:$S" s9
one_line "deleting a missing snapshot"

# ---- errors: one line, exit 1, nothing written ----
count() { find "$R" -type f ! -path '*/locks/*' | wc -l; }
n0=$(count)
expect_exit 1 "libvirt:NOPE" "$VMB" backup "$R" "libvirt:$PREFIX-nope"
one_line "libvirt:NOPE"
expect_exit 1 "a dead libvirtd" "$VMB" backup "$R" "libvirt:$A" \
	--connect "qemu+unix:///system?socket=$T/no-such.sock"
one_line "a dead libvirtd"
qemu-img create -q -f qed "$T/bad.qed" 16M
domxml "$PREFIX-bad" "$T/bad.serial" "$T/bad.qed:qed:vda" >"$T/bad.xml"
lv define "$T/bad.xml" >/dev/null || bad "define the qed domain"
expect_exit 1 "a disk in a format vmb cannot read" "$VMB" backup "$R" "libvirt:$PREFIX-bad"
one_line "a disk in a format vmb cannot read"
check "the format error names the disk and format" grep -q "qed" "$T/err"
check "nothing was written to the repository" test "$(count)" = "$n0"
expect_exit 0 "check" "$VMB" check "$R"
finish
