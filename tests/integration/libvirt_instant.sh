#!/bin/bash
# Instant recovery (issue 17): `vmb restore --define --instant` of a TCG
# domain's snapshot runs the VM on qcow2 overlays over a detached `vmb
# serve` at once; it prints its serial output before the background copy
# (libvirt block pull) is done, and afterwards its disk has no backing
# file, the server is gone, and the disk holds the snapshot's data.
. "$TESTLIB"
SVC=$SRCDIR/tests/services
D=$T/svc
mkdir -p "$D"
PREFIX="vmbi$$"
U=
lv() { virsh -q -c "$U" "$@"; }
stop_all() {
	for dom in "$PREFIX-a" "$PREFIX-i"; do
		virsh -c "$U" destroy "$dom" >/dev/null 2>&1
		virsh -c "$U" undefine "$dom" >/dev/null 2>&1
	done
	"$SVC/libvirt.sh" stop "$D"
}
for t in nasm qemu-img qemu-system-x86_64 virsh libvirtd; do
	command -v $t >/dev/null || skip "$t is missing (scripts/install-deps.sh test installs it)"
done
cleanup_hooks+=("stop_all")
"$SVC/libvirt.sh" start "$D" || { bad "libvirtd did not start"; finish; }
. "$D/env"
U=$VMB_TEST_LIBVIRT_URI
export LIBVIRT_DEFAULT_URI=$U
R=$T/repo
"$VMB" init "$R" >/dev/null || { bad "init"; finish; }

nasm -f bin "$SRCDIR/tests/fixtures-src/serial_boot.asm" -o "$T/boot.bin" || { bad "nasm"; finish; }
truncate -s 256M "$T/boot.raw"
dd if="$T/boot.bin" of="$T/boot.raw" conv=notrunc status=none
# data to copy, so the pull takes a while after the boot sector ran
head -c 96M /dev/urandom | dd of="$T/boot.raw" bs=1M seek=64 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 "$T/boot.raw" "$T/vda.qcow2"
A=$PREFIX-a
cat >"$T/a.xml" <<XML
<domain type='qemu'><name>$A</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
<on_reboot>destroy</on_reboot><devices>
<emulator>$(command -v qemu-system-x86_64)</emulator>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='$T/vda.qcow2'/><target dev='vda' bus='virtio'/></disk>
<serial type='file'><source path='$T/a.serial'/><target port='0'/></serial>
</devices></domain>
XML
lv define "$T/a.xml" >/dev/null || { bad "define the test domain"; finish; }
expect_exit 0 "backup of the shut off domain" "$VMB" backup "$R" "libvirt:$A"

I=$PREFIX-i
# the copy at 16 MiB/s takes some seconds: the guest must run long before
VMB_LIBVIRT_PULL_MIBS=16 "$VMB" restore "$R" "$A@latest" --to "$T/inst" --define --instant --name "$I" \
	>"$T/inst.out" 2>"$T/inst.err" &
rpid=$!
s=$T/inst/$I.serial0.log
booted=
for ((i = 0; i < 600; i++)); do
	if grep -q vmb-boot-ok "$s" 2>/dev/null; then
		booted=$s; break
	fi
	kill -0 $rpid 2>/dev/null || break
	sleep 0.1
done
if [ -n "$booted" ] && kill -0 $rpid 2>/dev/null; then
	ok "the VM printed its serial output while the copy was still running"
else
	bad "no serial output before the copy ended: $(cat "$T/inst.err" "$T/inst.out")"
fi
check "the disk is an overlay over the server meanwhile" \
	bash -c "qemu-img info -U '$T/inst/vda.qcow2' | grep -q 'backing file: nbd+unix'"
wait $rpid
rc=$?
check "restore --instant ends with exit 0 ($(tail -1 "$T/inst.err"))" test $rc = 0
check "it said where the VM runs" grep -q "runs from local disk" "$T/inst.out"
check "the VM still runs" bash -c "virsh -c '$U' domstate '$I' | grep -q running"
check "its disk has no backing file any more" \
	bash -c "! qemu-img info -U '$T/inst/vda.qcow2' | grep -q 'backing file'"
check "the live XML names no NBD server" \
	bash -c "! virsh -c '$U' dumpxml '$I' | grep -q nbd"
check "the server's socket is gone" test ! -e "$T/inst/vmb-serve.sock"
# QEMU flushes its qcow2 metadata when it quits
virsh -c "$U" shutdown "$I" >/dev/null 2>&1
virsh -c "$U" destroy "$I" >/dev/null 2>&1
for _ in $(seq 100); do virsh -c "$U" domstate "$I" 2>/dev/null | grep -q 'shut off' && break; sleep 0.1; done
check "the local disk holds the snapshot's data" \
	qemu-img compare -q -f raw -F qcow2 "$T/boot.raw" "$T/inst/vda.qcow2"
finish
