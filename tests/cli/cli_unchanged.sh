#!/bin/bash
# An image file nothing wrote to since the last backup (same device, inode,
# size, mtime and ctime, older than 2 s when it was read) is not read again;
# every way of changing it is noticed.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
R=$T/repo
I=$T/a.img
"$VMB" init "$R" >/dev/null
truncate -s 256M "$I"
head -c 40M /dev/urandom | dd of="$I" bs=1M seek=10 conv=notrunc status=none
b() { "$VMB" backup "$R" "$I" --vm a --json >"$T/b.json" || bad "backup"; }
b
b
check "a file written under 2 s ago is read again (racy timestamps)" test "$(json_field "$T/b.json" bytes_read)" -gt 0
sleep 2.2
b
b
check "an unchanged file is not read" test "$(json_field "$T/b.json" bytes_read)" = 0
check "and the source says so" test "$(json_field "$T/b.json" cbt)" = overlay
check "it still has every chunk" test "$(json_field "$T/b.json" chunks_total)" = 64
"$VMB" restore "$R" latest --to "$T/o1" --quiet
check "its restore is identical" cmp -s "$I" "$T/o1/a.img"
printf 'X' | dd of="$I" bs=1 seek=30000000 conv=notrunc status=none
sleep 2.2
b
check "a one-byte write is noticed" test "$(json_field "$T/b.json" bytes_read)" -gt 0
"$VMB" restore "$R" latest --to "$T/o2" --quiet
check "and restored" cmp -s "$I" "$T/o2/a.img"
sleep 2.2
b
printf 'Y' | dd of="$I" bs=1 seek=30000000 conv=notrunc status=none
touch -d "2020-01-01 00:00:00" "$I"
sleep 2.2
b
check "mtime set back by hand is noticed (ctime moved)" test "$(json_field "$T/b.json" bytes_read)" -gt 0
"$VMB" restore "$R" latest --to "$T/o3" --quiet
check "and restored" cmp -s "$I" "$T/o3/a.img"
cp --sparse=always "$I" "$T/copy.img" && mv "$T/copy.img" "$I"
sleep 2.2
b
check "a replaced file (new inode) is read" test "$(json_field "$T/b.json" bytes_read)" -gt 0
finish
