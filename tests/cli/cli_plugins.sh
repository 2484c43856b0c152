#!/bin/bash
# Plugin loading through vmb: every defective module (tests/plugins/) is
# refused with one line naming the plugin and the defect, exit 1, nothing
# written; a working module's errors are prefixed with its name; a missing
# plugin is named; the libvirt module is found beside vmb without
# VMB_PLUGIN_DIR; a file whose name has a colon is still a file.
. "$TESTLIB"
R=$T/repo
"$VMB" init "$R" --encryption none >/dev/null || { bad "init"; finish; }
BADDIR=$BUILDDIR/tests/badplugins
count() { find "$R" -type f ! -path '*/locks/*' | wc -l; }
n0=$(count)
refused() { # refused PLUGIN TEXT
	VMB_PLUGIN_DIR=$BADDIR expect_exit 1 "$1 refused" "$VMB" backup "$R" "$1:vm1"
	one_line "$1"
	if grep -q -- "$2" "$T/err"; then ok "$1: says '$2'"; else
		bad "$1: stderr lacks '$2': $(cat "$T/err")"; fi
}
refused bad_version "plugin API version 99"
refused bad_no_begin "bad_no_begin plugin .*mandatory callback backup_begin is missing"
refused bad_feature "offers VMB_HV_F_LIST without list"
refused bad_name "holds the 'somethingelse' plugin"
refused bad_no_entry "has no vmb_hv_plugin_init()"
refused garbage "garbage plugin: cannot load"
refused minimal "minimal plugin: no VM vm1 here"
refused nope "no nope plugin: no nope.so in"
check "nothing was written to the repository" test "$(count)" = "$n0"

# the libvirt module beside vmb, found without VMB_PLUGIN_DIR; libvirt's
# in-process test driver needs no daemon
if [ -f "$BUILDDIR/lib/vmbackup/plugins/libvirt.so" ]; then
	expect_exit 1 "libvirt:NOPE on test:///default" env -u VMB_PLUGIN_DIR \
		"$VMB" backup "$R" libvirt:NOPE --connect test:///default
	one_line "libvirt:NOPE"
	check "libvirt: names the missing domain" grep -q "no domain 'NOPE' on test:///default" "$T/err"
	expect_exit 1 "a domain without disks" "$VMB" backup "$R" libvirt:test \
		--connect test:///default
	one_line "a domain without disks"
else
	bad "the libvirt plugin was not built ($BUILDDIR/lib/vmbackup/plugins/libvirt.so)"
fi
check "still nothing written" test "$(count)" = "$n0"

# a colon in a file name: the file, not a plugin
truncate -s 1M "$T/web:1.raw"
printf 'hello' | dd of="$T/web:1.raw" conv=notrunc status=none
expect_exit 0 "an image whose name has a colon" "$VMB" backup "$R" "$T/web:1.raw" --json
check "file:PATH too" "$VMB" backup "$R" "file:$T/web:1.raw" --quiet
finish
