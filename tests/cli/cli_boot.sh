#!/bin/bash
# vmb verify --boot with the builtin runner: nasm guests (built from
# tests/fixtures-src/ into build/tests/fixtures/) stored as qcow2, VMDK and
# VDI boot from the repository and print their text, under unicorn always
# and under KVM where /dev/kvm works; a damaged boot sector, a guest that
# loops, triple-faults, floods the console, asks INT 13h for sectors
# outside the disk or memory, or writes outside its RAM, ends with exit 3
# and the reason, quickly and without harm to the host.
. "$TESTLIB"
F=$BUILDDIR/tests/fixtures
[ -f "$F/int13_boot.bin" ] || skip "no nasm guests in $F (nasm missing at build time: apt-get install nasm)"
[ -f "$BUILDDIR/lib/vmbackup/plugins/kvm.so" ] || skip "no kvm plugin (libunicorn-dev missing at build time)"
command -v qemu-img >/dev/null || { echo "qemu-img is required (qemu-utils)"; exit 1; }
R=$T/repo
"$VMB" init "$R" --encryption none >/dev/null

# disk NAME FIXTURE: a 1 MiB raw disk with the guest at its start
disk() {
	truncate -s 1M "$T/$1.raw"
	dd if="$F/$2.bin" of="$T/$1.raw" conv=notrunc status=none
}
backup() { # backup VM IMAGE
	"$VMB" backup "$R" "$2" --vm "$1" >/dev/null || bad "backup $1"
}

backends="unicorn"
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	backends="unicorn kvm"
else
	echo "NOTE: /dev/kvm is not usable here: the KVM backend is not tested, unicorn runs the same guests"
fi

# the guests in every image format
disk serial serial_boot
disk int13 int13_boot
for g in serial int13; do
	backup $g-raw "$T/$g.raw"
	qemu-img convert -q -f raw -O qcow2 "$T/$g.raw" "$T/$g.qcow2"
	qemu-img convert -q -f raw -O vmdk "$T/$g.raw" "$T/$g.vmdk"
	qemu-img convert -q -f raw -O vdi "$T/$g.raw" "$T/$g.vdi"
	for f in qcow2 vmdk vdi; do backup $g-$f "$T/$g.$f"; done
done
for b in $backends; do
	for f in raw qcow2 vmdk vdi; do
		expect_exit 0 "$b: int13 guest from $f boots to its text" \
			"$VMB" verify "$R" int13-$f@latest --boot --vcpu $b \
			--expect 'vmb-int13-ok' --timeout 20 --json
		[ "$(json_field "$T/out" vcpu)" = $b ] && ok "$b: ran on $b" ||
			bad "$b: ran on $(json_field "$T/out" vcpu)"
		# CHS, extended reads and the overlay, each said so by the guest
		for w in chs-ok ext-read-ok overlay-ok vmb-int13-ok; do
			json_field "$T/out" console | grep -q "^$w" ||
				bad "$b $f: no '$w' on the serial console"
		done
		json_field "$T/out" screen | grep -q 'vmb-int13-ok' &&
			ok "$b $f: INT 10h teletype captured as the screen" ||
			bad "$b $f: no teletype text: $(cat "$T/out")"
		# default verdict: a signature, runs without a fault, prints
		VMB_VCPU=$b expect_exit 0 "$b: serial guest from $f boots (default verdict)" \
			"$VMB" verify "$R" serial-$f@latest --boot --timeout 20
		grep -q '^booted: .*without a fault' "$T/out" && grep -q '^vmb-boot-ok' "$T/out" &&
			ok "$b $f: report and console" || bad "$b $f: report: $(cat "$T/out")"
	done
	# the expected text never comes
	expect_exit 3 "$b: --expect not seen" "$VMB" verify "$R" serial-raw@latest \
		--boot --vcpu $b --expect 'Welcome to [A-Z]+' --timeout 5
	grep -q 'the guest halted, without /Welcome to \[A-Z\]+/' "$T/out" &&
		ok "$b: says what was not seen" || bad "$b: $(head -1 "$T/out")"
done

# a damaged boot sector: no signature, judged before any runner starts
disk damaged serial_boot
printf '\0\0' | dd of="$T/damaged.raw" bs=1 seek=510 conv=notrunc status=none
backup damaged "$T/damaged.raw"
expect_exit 3 "damaged boot sector" "$VMB" verify "$R" damaged@latest --boot --json
[ "$(json_field "$T/out" booted)" = False ] &&
	json_field "$T/out" reason | grep -q 'no boot signature: bytes 510-511 of the boot sector are 00 00' &&
	ok "reason: $(json_field "$T/out" reason)" || bad "damaged: $(cat "$T/out")"

# hostile guests
for n in loop triple flood oob wild ljmp; do
	disk $n hostile_$n
	backup $n "$T/$n.raw"
done
hostile() { # hostile BACKEND VM EXIT REASON-REGEX [ARGS...]
	local b=$1 vm=$2 want=$3 re=$4 t0 t1; shift 4
	t0=$(date +%s)
	expect_exit "$want" "$b: hostile $vm" "$VMB" verify "$R" $vm@latest --boot \
		--vcpu $b --timeout 3 "$@"
	t1=$(date +%s)
	head -1 "$T/out" | grep -Eq "$re" && ok "$b $vm: $(head -1 "$T/out" | sed 's/.*s: //')" ||
		bad "$b $vm: reason: $(head -1 "$T/out")"
	[ $((t1 - t0)) -le 15 ] || bad "$b $vm took $((t1 - t0)) s"
}
for b in $backends; do
	hostile $b loop 3 'printed nothing \(timeout after 3 s\)'
	hostile $b triple 3 'triple fault'
	hostile $b flood 3 'console flood: the guest printed more than 16384 bytes' \
		--console-limit 16384
	hostile $b oob 0 'showed /vmb-oob-ok/' --expect vmb-oob-ok
	grep -q FAIL "$T/out" && bad "$b: an out-of-bounds INT 13h request was accepted"
	hostile $b wild 3 'guest fault: write outside guest RAM at 0xc0000000'
	hostile $b loop 3 'timeout after 3 s, without /never/' --expect never
	if [ $b = kvm ]; then
		hostile $b ljmp 3 'guest fault: CPU exception 6 \(invalid opcode\)'
	else # unicorn aborts on it: the runner's child process, not vmb
		hostile $b ljmp 3 'guest fault: the vCPU crashed on the guest.s code \(signal 6'
	fi
done
# the 387's ports (0xf0-0xff; Linux resets the FPU there) are not calls of
# our firmware, whose stubs use them too; and text printed just before
# the guest halts, without a newline, still counts for --expect
disk fpu fpu_boot
backup fpu "$T/fpu.raw"
for b in $backends; do
	expect_exit 0 "$b: FPU ports, then text without a newline" "$VMB" verify "$R" \
		fpu@latest --boot --vcpu $b --expect '^vmb-fpu-ok$' --timeout 10
	grep -q 'serial console showed' "$T/out" && ok "$b: $(head -1 "$T/out" | sed 's/.*s: //')" ||
		bad "$b fpu: $(cat "$T/out")"
done
# the flood is cut at the limit, not kept whole
"$VMB" verify "$R" flood@latest --boot --vcpu unicorn --console-limit 65536 \
	--json >"$T/flood.json"
bytes=$(json_field "$T/flood.json" console_bytes)
[ "$bytes" -le 65537 ] && ok "flood stopped at $bytes bytes" || bad "flood: $bytes bytes"

# bad input: usage errors (exit 2) and errors (exit 1), one line each
usage_line() {
	[ "$(wc -l <"$T/err")" = 1 ] && grep -q '^vmb verify: ' "$T/err" &&
		ok "$1: one line: $(cat "$T/err")" || bad "$1: $(cat "$T/err")"
}
expect_exit 2 "bad timeout" "$VMB" verify "$R" serial-raw@latest --boot --timeout -1
usage_line "bad timeout"
expect_exit 2 "unknown runner" "$VMB" verify "$R" serial-raw@latest --boot --runner vbox
usage_line "unknown runner"
expect_exit 2 "bad regex" "$VMB" verify "$R" serial-raw@latest --boot --expect 'a('
usage_line "bad regex"
expect_exit 2 "--expect without --boot" "$VMB" verify "$R" --expect x
usage_line "--expect without --boot"
expect_exit 1 "unknown vCPU backend" "$VMB" verify "$R" serial-raw@latest --boot --vcpu bochs
one_line "unknown vCPU backend"
grep -q "unknown vCPU backend 'bochs'" "$T/err" && ok "names the backend" || bad "$(cat "$T/err")"
expect_exit 1 "no such snapshot" "$VMB" verify "$R" nosuch@latest --boot
one_line "no such snapshot"
finish
