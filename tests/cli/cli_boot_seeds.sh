#!/bin/bash
# The boot fuzz target's seeds (fuzz/corpora/boot/) end the way each was
# written to, when the builtin runner runs them under unicorn with an
# instruction limit (as the fuzz target does; VMB_BOOT_FUZZ_VERBOSE=1
# prints the verdict): every way a run ends, firmware calls and faults
# through our stubs, and the 387's ports left alone.
. "$TESTLIB"
FZ=$BUILDDIR/fuzz/boot_fuzzer
[ -x "$FZ" ] || skip "no boot fuzz target (no kvm plugin: libunicorn-dev missing at build time)"
C=$SRCDIR/fuzz/corpora/boot
seed() { # seed NAME REGEX
	local v
	v=$(VMB_BOOT_FUZZ_VERBOSE=1 "$FZ" "$C/$1" 2>&1 | grep -E '^(not )?booted: ')
	echo "$v" | grep -Eq "$2" && ok "$1: $v" || bad "$1: '$v', not /$2/"
}
seed endings.bin 'not booted: guest fault: CPU exception 0 \(divide error\) in real mode'
seed endings-1.bin 'not booted: the guest called INT 18h'
seed endings-2.bin 'not booted: the guest called INT 19h'
seed endings-3.bin 'not booted: the guest powered off \(APM\)'
seed endings-4.bin 'not booted: the guest powered off,'
seed endings-5.bin 'not booted: the guest reset the machine \(port 0xcf9\)'
seed endings-7.bin 'not booted: guest fault: .*protected mode'
seed devices.bin 'not booted: the guest reset the machine \(keyboard controller\)'
seed hostile_loop.bin 'not booted: instruction limit of 10000 reached'
seed hostile_triple.bin 'not booted: guest fault: triple fault'
seed hostile_flood.bin 'not booted: console flood'
seed hostile_oob.bin '^booted: the serial console showed'
seed int13_boot.bin '^booted: the screen showed'
seed fpu_boot.bin '^booted: the serial console showed'
finish
