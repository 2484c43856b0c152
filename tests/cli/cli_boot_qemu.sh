#!/bin/bash
# vmb verify --boot --runner qemu: a small Linux disk (SYSLINUX, Debian's
# kernel, a busybox initramfs printing a marker on ttyS0; built here by
# tests/fixtures-src/make-linux-disk.sh), backed up raw and as qcow2, boots
# from the repository under QEMU to its marker; TCG is forced at least
# once, so the test means something without /dev/kvm.  A marker that never
# comes is a timeout (exit 3), a damaged boot sector exit 3, a console
# flood exit 3; a missing QEMU one line and exit 1.  Nothing is left
# behind: no socket or directory in TMPDIR, no QEMU after vmb has gone,
# even when vmb is killed.
. "$TESTLIB"
[ -f "$BUILDDIR/lib/vmbackup/plugins/qemu.so" ] || { echo "no qemu plugin in the build"; exit 1; }
QEMU=${VMB_QEMU:-qemu-system-x86_64}
command -v "$QEMU" >/dev/null || skip "no $QEMU (apt-get install qemu-system-x86)"
command -v qemu-img >/dev/null || skip "no qemu-img (apt-get install qemu-utils)"
for t in syslinux mcopy mkfs.fat sfdisk cpio; do
	command -v $t >/dev/null || skip "no $t (apt-get install syslinux mtools dosfstools fdisk cpio)"
done
bash "$SRCDIR/tests/fixtures-src/make-linux-disk.sh" "$T/linux.raw" vmb-qemu-ok 2>"$T/mk.err" || {
	[ $? = 2 ] && skip "cannot build the Linux disk: $(cat "$T/mk.err")"
	echo "make-linux-disk.sh failed: $(cat "$T/mk.err")"; exit 1; }

R=$T/repo
S=$T/scratch   # vmb's TMPDIR: must be empty after every run
mkdir -p "$S"
export TMPDIR=$S
"$VMB" init "$R" --encryption none >/dev/null
"$VMB" backup "$R" "$T/linux.raw" --vm linux-raw >/dev/null || bad "backup raw"
qemu-img convert -q -f raw -O qcow2 "$T/linux.raw" "$T/linux.qcow2"
"$VMB" backup "$R" "$T/linux.qcow2" --vm linux-qcow2 >/dev/null || bad "backup qcow2"

clean_scratch() {
	[ -z "$(ls -A "$S")" ] && ok "$1: nothing left in TMPDIR" || bad "$1: left in TMPDIR: $(ls -A "$S")"
}
reason() { json_field "$T/out" reason; }

# raw, the default accelerator (KVM when /dev/kvm opens, else TCG)
expect_exit 0 "raw disk boots to its marker" "$VMB" verify "$R" linux-raw@latest \
	--boot --runner qemu --expect 'vmb-qemu-ok: [0-9]+\.' --timeout 120 --json
[ "$(json_field "$T/out" booted)" = True ] && [ "$(json_field "$T/out" runner)" = qemu ] &&
	ok "raw: $(reason) on $(json_field "$T/out" vcpu)" || bad "raw: $(cat "$T/out")"
json_field "$T/out" console | grep -q '^Linux version\|Linux version' &&
	ok "raw: the kernel's messages are on the console" || bad "raw: console: $(cat "$T/out")"
clean_scratch raw

# qcow2, in software: TCG whatever the machine has
expect_exit 0 "qcow2 disk boots under TCG" "$VMB" verify "$R" linux-qcow2@latest \
	--boot --runner qemu --vcpu tcg --expect 'vmb-qemu-ok' --timeout 120 --json
[ "$(json_field "$T/out" vcpu)" = tcg ] && [ "$(json_field "$T/out" booted)" = True ] &&
	ok "qcow2: $(reason)" || bad "qcow2 tcg: $(cat "$T/out")"
clean_scratch qcow2

# under KVM when asked for: boots, or KVM cannot run this guest (nested
# KVM fails on SYSLINUX on some hosts) and says so with exit 3
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	"$VMB" verify "$R" linux-raw@latest --boot --runner qemu --vcpu kvm \
		--expect 'vmb-qemu-ok' --timeout 120 --json >"$T/out" 2>"$T/err"
	rc=$?
	if [ $rc = 0 ] && [ "$(json_field "$T/out" vcpu)" = kvm ]; then ok "kvm: $(reason)"
	elif [ $rc = 3 ] && reason | grep -q 'KVM internal error'; then
		echo "NOTE: KVM cannot run SYSLINUX on this host: $(reason)"
		ok "kvm: the KVM failure is a verdict with its reason"
	else bad "kvm: exit $rc: $(cat "$T/out" "$T/err")"; fi
else
	echo "NOTE: /dev/kvm is not usable here: QEMU runs under TCG only"
fi

# the expected text never comes: a timeout, exit 3
expect_exit 3 "wrong --expect" "$VMB" verify "$R" linux-raw@latest --boot --runner qemu \
	--vcpu tcg --expect 'Welcome to Windows' --timeout 6 --json
[ "$(json_field "$T/out" booted)" = False ] && reason | grep -q '^timeout after 6 s, without /Welcome to Windows/' &&
	ok "wrong expect: $(reason)" || bad "wrong expect: $(cat "$T/out")"
clean_scratch "wrong expect"

# damaged boot sectors: the signature gone (judged before QEMU starts),
# and the loader's code gone with the signature kept (QEMU runs it)
cp "$T/linux.raw" "$T/nosig.raw"
printf '\0\0' | dd of="$T/nosig.raw" bs=1 seek=510 conv=notrunc status=none
"$VMB" backup "$R" "$T/nosig.raw" --vm nosig >/dev/null || bad "backup nosig"
expect_exit 3 "no boot signature" "$VMB" verify "$R" nosig@latest --boot --runner qemu \
	--expect vmb-qemu-ok --json
reason | grep -q 'no boot signature' && ok "nosig: $(reason)" || bad "nosig: $(cat "$T/out")"
cp "$T/linux.raw" "$T/nocode.raw"
dd if=/dev/zero of="$T/nocode.raw" bs=440 count=1 conv=notrunc status=none
"$VMB" backup "$R" "$T/nocode.raw" --vm nocode >/dev/null || bad "backup nocode"
expect_exit 3 "boot code zeroed" "$VMB" verify "$R" nocode@latest --boot --runner qemu \
	--vcpu tcg --expect vmb-qemu-ok --timeout 5 --json
reason | grep -q '^timeout after 5 s, without' && [ "$(json_field "$T/out" console_bytes)" = 0 ] &&
	ok "nocode: $(reason)" || bad "nocode: $(cat "$T/out")"
expect_exit 3 "boot code zeroed, default verdict" "$VMB" verify "$R" nocode@latest --boot \
	--runner qemu --vcpu tcg --timeout 4
grep -q '^did not boot: .*the guest printed nothing' "$T/out" && ok "nocode: $(head -1 "$T/out")" ||
	bad "nocode default: $(cat "$T/out")"
clean_scratch "damaged"

# a console flood: stopped at the limit
expect_exit 3 "console flood" "$VMB" verify "$R" linux-raw@latest --boot --runner qemu \
	--vcpu tcg --expect vmb-qemu-ok --console-limit 300 --timeout 60 --json
reason | grep -q 'console flood: the guest printed more than 300 bytes' &&
	[ "$(json_field "$T/out" console | wc -c)" -le 302 ] &&
	ok "flood: $(reason)" || bad "flood: $(cat "$T/out")"

# vmb killed mid-boot: QEMU goes with it, nothing stays in TMPDIR
"$VMB" verify "$R" linux-raw@latest --boot --runner qemu --vcpu tcg --expect never \
	--timeout 60 >/dev/null 2>&1 &
pid=$!
for i in $(seq 50); do pgrep -f "vmb-verify-$pid" >/dev/null && break; sleep 0.1; done
pgrep -f "vmb-verify-$pid" >/dev/null && ok "QEMU runs, named after vmb $pid" || bad "no QEMU for vmb $pid"
sleep 1
kill -9 $pid
wait $pid 2>/dev/null
for i in $(seq 50); do pgrep -f "vmb-verify-$pid" >/dev/null || break; sleep 0.1; done
pgrep -f "vmb-verify-$pid" >/dev/null && bad "QEMU outlived vmb (SIGKILL)" || ok "QEMU died with vmb"
clean_scratch "vmb killed"

# cannot run: exit 1, one line
VMB_QEMU=$T/no-such-qemu expect_exit 1 "no QEMU" "$VMB" verify "$R" linux-raw@latest --boot \
	--runner qemu --expect x
one_line "no QEMU"
grep -q 'no-such-qemu not found' "$T/err" && ok "names what is missing" || bad "$(cat "$T/err")"
expect_exit 1 "a vCPU QEMU does not have" "$VMB" verify "$R" linux-raw@latest --boot \
	--runner qemu --vcpu unicorn
one_line "qemu --vcpu unicorn"
clean_scratch "errors"
finish
