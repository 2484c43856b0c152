#!/bin/bash
# The qemu runner's logic, without QEMU: VMB_QEMU points at
# tests/fixtures-src/fake-qemu.sh, which checks that it was given a
# connection to our NBD server on fd 3 (the greeting is read there) and the
# safety options, then prints a marker, floods, hangs, powers off, fails,
# or reports a KVM internal error.  The runner must match and kill, stop a
# flood at the limit, time out, judge a poweroff, rerun a KVM failure
# under TCG, report QEMU's own error in one line; every fake QEMU is gone
# and TMPDIR empty afterwards.  (cli_boot_qemu.sh boots real QEMU.)
. "$TESTLIB"
[ -f "$BUILDDIR/lib/vmbackup/plugins/qemu.so" ] || { echo "no qemu plugin in the build"; exit 1; }
command -v python3 >/dev/null || skip "no python3"
export VMB_QEMU=$SRCDIR/tests/fixtures-src/fake-qemu.sh
export FAKE_QEMU_ARGS=$T/args
R=$T/repo
S=$T/scratch
mkdir -p "$S"
export TMPDIR=$S
"$VMB" init "$R" --encryption none >/dev/null
truncate -s 1M "$T/d.raw"
printf '\x55\xaa' | dd of="$T/d.raw" bs=1 seek=510 conv=notrunc status=none
"$VMB" backup "$R" "$T/d.raw" --vm fake >/dev/null || bad "backup"
reason() { json_field "$T/out" reason; }
boot() { # boot MODE ARGS...: vmb verify --boot --runner qemu under the fake
	local m=$1; shift
	rm -f "$T"/args.*
	FAKE_QEMU_MODE=$m "$VMB" verify "$R" fake@latest --boot --runner qemu --json "$@" \
		>"$T/out" 2>"$T/err"
	echo $?
}
gone() { # every fake QEMU of the last run has exited, nothing in TMPDIR
	local p f
	for f in "$T"/args.*; do
		[ -e "$f" ] || continue
		p=${f##*.}
		for i in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$p" 2>/dev/null && { bad "$1: fake QEMU $p still runs"; kill -9 "$p"; return; }
	done
	[ -z "$(ls -A "$S")" ] || { bad "$1: left in TMPDIR: $(ls -A "$S")"; return; }
	ok "$1: QEMU gone, TMPDIR empty"
}

rc=$(boot marker --vcpu tcg --expect 'fake-boot-ok: [0-9]' --memory 64 --timeout 20)
[ "$rc" = 0 ] && reason | grep -q '^the serial console showed /fake-boot-ok: \[0-9\]/ after' &&
	[ "$(json_field "$T/out" vcpu)" = tcg ] && [ "$(json_field "$T/out" runner)" = qemu ] &&
	ok "marker: $(reason)" || bad "marker: exit $rc $(cat "$T/out" "$T/err")"
grep -qx -- '-accel' "$T"/args.* && ! grep -qx kvm "$T"/args.* && grep -qx tcg "$T"/args.* &&
	ok "--vcpu tcg: -accel tcg only" || bad "args: $(cat "$T"/args.*)"
grep -A1 -x -- '-m' "$T"/args.* | grep -qx 64 && ok "--memory 64: -m 64" || bad "no -m 64"
grep -q 'sandbox' "$T"/args.* && ok "seccomp sandbox asked for" || bad "no -sandbox"
gone marker

rc=$(boot nul --vcpu tcg --expect '^a b.*fake-boot-ok' --timeout 20)
[ "$rc" = 0 ] && json_field "$T/out" console | grep -q 'a b\\x1b\[2Jfake-boot-ok' &&
	ok "NUL as a space, escapes escaped: $(json_field "$T/out" console)" || bad "nul: $rc $(cat "$T/out")"
gone nul

t0=$(date +%s)
rc=$(boot flood --vcpu tcg --expect never --console-limit 100000 --timeout 30)
[ "$rc" = 3 ] && reason | grep -q 'console flood: the guest printed more than 100000 bytes' &&
	[ "$(json_field "$T/out" console | wc -c)" -le 100001 ] && [ $(( $(date +%s) - t0 )) -lt 20 ] &&
	ok "flood: $(reason)" || bad "flood: $rc $(head -c 300 "$T/out")"
gone flood

rc=$(boot hang --vcpu tcg --expect never --timeout 2)
[ "$rc" = 3 ] && reason | grep -q '^timeout after 2 s, without /never/ on the console' &&
	ok "hang: $(reason)" || bad "hang: $rc $(cat "$T/out")"
gone hang
rc=$(boot hang --vcpu tcg --timeout 2)
[ "$rc" = 0 ] && reason | grep -q 'running and printing' && ok "default verdict, running: $(reason)" ||
	bad "default running: $rc $(cat "$T/out")"
rc=$(boot silent --vcpu tcg --timeout 2)
[ "$rc" = 3 ] && reason | grep -q 'printed nothing' && ok "default verdict, silent: $(reason)" ||
	bad "silent: $rc $(cat "$T/out")"
gone silent

rc=$(boot poweroff --vcpu tcg --timeout 20)
[ "$rc" = 0 ] && reason | grep -q '^the guest powered off or reset after' && ok "poweroff: $(reason)" ||
	bad "poweroff: $rc $(cat "$T/out")"
rc=$(boot poweroff --vcpu tcg --expect never --timeout 20)
[ "$rc" = 3 ] && reason | grep -q 'powered off or reset after .* without /never/' &&
	ok "poweroff without the text: $(reason)" || bad "poweroff expect: $rc $(cat "$T/out")"
gone poweroff

rc=$(boot fail --vcpu tcg --timeout 20)
[ "$rc" = 1 ] && [ "$(wc -l <"$T/err")" = 1 ] &&
	grep -q '^vmb: qemu runner: QEMU failed (exit 1): qemu-system-x86_64: -drive fake: Could not open$' "$T/err" &&
	ok "QEMU's error, one line: $(cat "$T/err")" || bad "fail: $rc $(cat "$T/err")"
gone fail

if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	rc=$(boot kvmerr --expect 'fake-boot-ok under tcg' --timeout 20)
	[ "$rc" = 0 ] && [ "$(json_field "$T/out" vcpu)" = tcg ] &&
		reason | grep -q 'KVM could not run the guest, a KVM internal error: TCG ran it' &&
		[ "$(ls "$T"/args.* | wc -l)" = 2 ] &&
		ok "KVM internal error, rerun under TCG: $(reason)" || bad "kvmerr: $rc $(cat "$T/out" "$T/err")"
	gone kvmerr
	rc=$(boot kvmerr --vcpu kvm --expect fake-boot-ok --timeout 20)
	[ "$rc" = 3 ] && reason | grep -q '^KVM could not run the guest' && [ "$(ls "$T"/args.* | wc -l)" = 1 ] &&
		ok "--vcpu kvm: the KVM failure is the verdict" || bad "kvmerr kvm: $rc $(cat "$T/out")"
	gone "kvmerr kvm"
	rc=$(boot fallback --expect fake-boot-ok --timeout 20)
	[ "$rc" = 0 ] && [ "$(json_field "$T/out" vcpu)" = tcg ] && grep -qx kvm "$T"/args.* &&
		ok "QEMU fell back to TCG: reported as tcg" || bad "fallback: $rc $(cat "$T/out")"
	gone fallback
else
	echo "NOTE: /dev/kvm is not usable here: the KVM-failure rerun is not tested"
	expect_exit 1 "--vcpu kvm without /dev/kvm" "$VMB" verify "$R" fake@latest --boot \
		--runner qemu --vcpu kvm
	one_line "--vcpu kvm without /dev/kvm"
fi
finish
