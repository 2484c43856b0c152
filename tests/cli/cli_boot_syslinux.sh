#!/bin/bash
# vmb verify --boot --runner builtin on a real boot loader: the small
# Linux disk of tests/fixtures-src/make-linux-disk.sh (an MBR, a FAT
# partition with SYSLINUX, Debian's kernel and a busybox initramfs), backed
# up, boots from the repository under our own firmware far enough for
# SYSLINUX to print its banner through INT 10h: its MBR, its boot sector
# and ldlinux.sys reading the disk through INT 13h (CHS and extended reads,
# drive parameters), the memory map, then its protected-mode core.  Under
# unicorn always, under KVM where /dev/kvm works; on KVM on to the kernel.
. "$TESTLIB"
[ -f "$BUILDDIR/lib/vmbackup/plugins/kvm.so" ] || skip "no kvm plugin (libunicorn-dev missing at build time)"
for t in syslinux mcopy mkfs.fat sfdisk cpio; do
	command -v $t >/dev/null || skip "no $t (apt-get install syslinux mtools dosfstools fdisk cpio)"
done
bash "$SRCDIR/tests/fixtures-src/make-linux-disk.sh" "$T/linux.raw" vmb-builtin-ok 2>"$T/mk.err" || {
	[ $? = 2 ] && skip "cannot build the Linux disk: $(cat "$T/mk.err")"
	echo "make-linux-disk.sh failed: $(cat "$T/mk.err")"; exit 1; }
R=$T/repo
"$VMB" init "$R" --encryption none >/dev/null
"$VMB" backup "$R" "$T/linux.raw" --vm linux >/dev/null || bad "backup"

backends=unicorn
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	backends="unicorn kvm"
else
	echo "NOTE: /dev/kvm is not usable here: SYSLINUX is booted under unicorn only"
fi
for b in $backends; do
	expect_exit 0 "$b: SYSLINUX prints its banner" "$VMB" verify "$R" linux@latest \
		--boot --runner builtin --vcpu $b --expect 'SYSLINUX|ISOLINUX|EXTLINUX' \
		--timeout 60 --json
	[ "$(json_field "$T/out" vcpu)" = $b ] && ok "$b: ran on $b" ||
		bad "$b: ran on $(json_field "$T/out" vcpu)"
	json_field "$T/out" screen | grep -q '^SYSLINUX [0-9.]* .*Copyright (C)' &&
		ok "$b: the banner came through INT 10h: $(json_field "$T/out" screen | grep -m1 SYSLINUX)" ||
		bad "$b: screen: $(json_field "$T/out" screen)"
	json_field "$T/out" reason | grep -q 'the screen showed' &&
		ok "$b: $(json_field "$T/out" reason)" || bad "$b: reason: $(json_field "$T/out" reason)"
done
# on KVM further: SYSLINUX reads its configuration, loads the kernel and
# the initramfs ("Loading vmlinuz... ok" on the serial console) and starts
# the kernel, whose real-mode setup code prints through INT 10h.  A second
# on a plain KVM host; under nested KVM, where real mode is emulated, some
# 20-30 s: hence the long timeout (the run stops at the match).
if [ "$backends" != unicorn ]; then
	expect_exit 0 "kvm: the kernel's setup code runs" "$VMB" verify "$R" linux@latest \
		--boot --runner builtin --vcpu kvm --expect 'Probing EDD' --timeout 150 --json
	json_field "$T/out" console | grep -q '^Loading vmlinuz\.\.\. *ok' &&
		json_field "$T/out" console | grep -q '^Loading initrd\.img\.\.\. *ok' &&
		ok "kvm: SYSLINUX loaded the kernel and the initramfs" ||
		bad "kvm: console: $(json_field "$T/out" console)"
	ok "kvm: $(json_field "$T/out" reason)"
fi
finish
