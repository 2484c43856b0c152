# vmb restore --file: files straight out of an ext2/3/4 guest file system
# in a snapshot (libext2fs over our reader, no mount, no loop device).
#  - an ext4 made by mke2fs -d from a folder (files of several sizes, a
#    sparse one, one over a chunk, nested folders, symlinks, odd modes,
#    old mtimes) as a whole-disk fs, inside an MBR partition and inside a
#    GPT partition (sfdisk if present, else python writes the tables);
#  - one file and a whole folder come back equal: cmp, modes, mtimes,
#    readlink, diff -r; owners when root; the sparse file stays sparse;
#  - --partition picks, several ext partitions are refused with a list;
#  - errors, one line each: a path that does not exist, a non-empty
#    --to, FAT and blank disks (pointing at vmb mount), a partition that
#    does not exist;
#  - a hostile fs (entries named "..", "../../x", a symlink and a folder
#    of the same name, a folder linked into itself) never writes outside
#    --to.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"
command -v mke2fs >/dev/null || skip "mke2fs (e2fsprogs) is needed"
command -v debugfs >/dev/null || skip "debugfs (e2fsprogs) is needed"

R=$T/repo
cleanup_hooks+=("chmod -R u+rwx '$T' 2>/dev/null")
"$VMB" init "$R" --chunk-size 64K >/dev/null || { bad "init"; finish; }

# --- the guest's files ---
F=$T/files
mkdir -p "$F/etc/conf.d" "$F/home/user/deep/er/still" "$F/home/user/empty" \
	"$F/bin" "$F/srv/shared"
printf 'root:x:0:0::/root:/bin/sh\n' >"$F/etc/passwd"
printf 'key = value\n' >"$F/etc/conf.d/app.conf"
head -c 1 /dev/urandom >"$F/home/user/one-byte"
head -c 4097 /dev/urandom >"$F/home/user/page-and-one"
head -c 3000000 /dev/urandom >"$F/home/user/big.bin"     # > 45 chunks of 64K
: >"$F/home/user/zero-length"
truncate -s 20M "$F/home/user/sparse.img"
printf 'middle' | dd of="$F/home/user/sparse.img" bs=1 seek=7000000 conv=notrunc 2>/dev/null
printf 'end' | dd of="$F/home/user/sparse.img" bs=1 seek=$((20 * 1024 * 1024 - 3)) conv=notrunc 2>/dev/null
echo deep >"$F/home/user/deep/er/still/file"
printf '#!/bin/sh\necho hi\n' >"$F/bin/tool"
ln -s ../etc/passwd "$F/bin/passwd-link"
ln -s /nonexistent/target "$F/home/user/dangling"
chmod 755 "$F/bin/tool"; chmod 600 "$F/etc/passwd"; chmod 640 "$F/home/user/big.bin"
chmod 1777 "$F/srv/shared"; chmod 500 "$F/home/user/deep/er"
touch -d '2020-02-03 04:05:06' "$F/etc/conf.d/app.conf" "$F/home/user/big.bin"
touch -d '2019-01-01 00:00:00' "$F/home/user/deep"
if [ "$(id -u)" = 0 ]; then chown 1234:2345 "$F/etc/conf.d/app.conf"; fi
touch -h -d '2018-05-05 05:05:05' "$F/bin/passwd-link"
FS=$T/fs.img
mke2fs -q -t ext4 -d "$F" "$FS" 48M || { bad "mke2fs -d"; finish; }
cp "$FS" "$T/whole.img"
chmod 700 "$F/home/user/deep/er"   # so the test can clean up later

# an image with a partition table: partition 1 the ext fs at 1 MiB,
# partition 2 (1 MiB) holds an NTFS boot sector signature only
fs_sectors=$(( $(stat -c %s "$FS") / 512 ))
make_table() { # make_table dos|gpt OUT [second-fs-image]
	local label=$1 out=$2 fs2=${3:-} s2=2048
	[ -n "$fs2" ] && s2=$(( $(stat -c %s "$fs2") / 512 ))
	local p2=$((2048 + fs_sectors))
	truncate -s $(( (p2 + s2 + 2048) * 512 )) "$out"
	if command -v sfdisk >/dev/null; then
		local t1=83 t2=7
		[ "$label" = gpt ] && t1=0FC63DAF-8483-4772-8E79-3D69D8477DE4 &&
			t2=EBD0A0A2-B9E5-4433-87C0-68B9B7C779C7
		printf 'label: %s\nstart=2048, size=%d, type=%s\nstart=%d, size=%d, type=%s\n' \
			"$label" "$fs_sectors" "$t1" "$p2" "$s2" "$t2" |
			sfdisk -q "$out" >/dev/null || return 1
	else
		python3 - "$label" "$out" "$fs_sectors" "$p2" "$s2" <<'PY' || return 1
import struct, sys, zlib, uuid
label, out, n1, p2, n2 = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
f = open(out, "r+b"); size = f.seek(0, 2); last = size // 512 - 1
def mbr(entries):
    b = bytearray(512); b[510:] = b"\x55\xaa"
    for i, (t, s, n) in enumerate(entries):
        b[446 + 16*i + 4] = t; b[446 + 16*i + 8:446 + 16*i + 16] = struct.pack("<II", s, n)
    f.seek(0); f.write(b)
if label == "dos":
    mbr([(0x83, 2048, n1), (0x07, p2, n2)])
else:
    mbr([(0xee, 1, min(last, 0xffffffff))])
    linux = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4").bytes_le
    basic = uuid.UUID("EBD0A0A2-B9E5-4433-87C0-68B9B7C779C7").bytes_le
    ents = bytearray(128 * 128)
    for i, (t, s, n) in enumerate([(linux, 2048, n1), (basic, p2, n2)]):
        ents[128*i:128*i+56] = t + uuid.uuid4().bytes + struct.pack("<QQQ", s, s + n - 1, 0)
    ecrc = zlib.crc32(ents)
    def hdr(my, alt, elba):
        h = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0,
                       my, alt, 34, last - 33, uuid.uuid4().bytes, elba, 128, 128, ecrc))
        h[16:20] = struct.pack("<I", zlib.crc32(h))
        return bytes(h) + bytes(512 - len(h))
    f.seek(512); f.write(hdr(1, last, 2)); f.write(ents)
    f.seek((last - 32) * 512); f.write(ents); f.write(hdr(last, 1, last - 32))
PY
	fi
	dd if="$FS" of="$out" bs=1M seek=1 conv=notrunc status=none || return 1
	if [ -n "$fs2" ]; then
		dd if="$fs2" of="$out" bs=512 seek=$p2 conv=notrunc status=none
	else
		printf '\353R\220NTFS    ' | dd of="$out" bs=512 seek=$p2 conv=notrunc status=none
	fi
}
make_table dos "$T/mbr.img" || bad "making the MBR disk"
make_table gpt "$T/gpt.img" || bad "making the GPT disk"
command -v sfdisk >/dev/null && tables=sfdisk || tables=python
echo "partition tables written with $tables"

for k in whole mbr gpt; do
	"$VMB" backup "$R" "$T/$k.img" --vm "$k" --json >"$T/b-$k.json" || bad "backup $k"
done

# --- one file and whole folders, from each layout ---
same_meta() { # same_meta ORIG COPY: mode, mtime (and owner as root)
	local f="%a %Y"
	[ "$(id -u)" = 0 ] && f="%a %Y %u %g"
	[ "$(stat -c "$f" "$1")" = "$(stat -c "$f" "$2")" ]
}
same_tree() { # every entry under ORIG: type, mode, mtime, content/target
	(cd "$1" && find . -mindepth 1 | sort) >"$T/t1"
	(cd "$2" && find . -mindepth 1 -not -path './lost+found*' | sort) >"$T/t2"
	cmp -s "$T/t1" "$T/t2" || { echo "entries differ: $(diff "$T/t1" "$T/t2" | head -5)"; return 1; }
	while read -r p; do
		if [ -L "$1/$p" ]; then
			[ -L "$2/$p" ] && [ "$(readlink "$1/$p")" = "$(readlink "$2/$p")" ] &&
				[ "$(stat -c %Y "$1/$p")" = "$(stat -c %Y "$2/$p")" ] ||
				{ echo "symlink $p differs"; return 1; }
		elif [ -d "$1/$p" ]; then
			[ -d "$2/$p" ] && [ ! -L "$2/$p" ] || { echo "$p is no folder"; return 1; }
		else
			[ -f "$2/$p" ] && [ ! -L "$2/$p" ] && cmp -s "$1/$p" "$2/$p" ||
				{ echo "file $p differs"; return 1; }
		fi
		if [ ! -L "$1/$p" ]; then
			same_meta "$1/$p" "$2/$p" || { echo "$p: $(stat -c '%a %Y %u' "$1/$p") vs $(stat -c '%a %Y %u' "$2/$p")"; return 1; }
		fi
	done <"$T/t1"
}
chmod 500 "$F/home/user/deep/er"
for k in whole mbr gpt; do
	O=$T/out-$k
	expect_exit 0 "$k: --file /etc/conf.d/app.conf" \
		"$VMB" restore "$R" "$k@latest" --file /etc/conf.d/app.conf --to "$O/one"
	check "$k: the file is equal (cmp)" cmp "$F/etc/conf.d/app.conf" "$O/one/app.conf"
	check "$k: its mode and mtime are kept" same_meta "$F/etc/conf.d/app.conf" "$O/one/app.conf"
	check "$k: --to is private (0700)" test "$(stat -c %a "$O/one")" = 700
	expect_exit 0 "$k: --file /home (a folder) --json" \
		"$VMB" restore "$R" "$k@latest" --file /home --to "$O/tree" --json
	cp "$T/out" "$T/home-$k.json"
	check "$k: the tree is equal (names, types, content, modes, mtimes, links)" \
		same_tree "$F/home" "$O/tree/home"
	want_part=1; [ $k = whole ] && want_part=0
	check "$k: --json names partition $want_part" test "$(json_field "$T/home-$k.json" partition)" = $want_part
	check "$k: --json counts the files" test "$(json_field "$T/home-$k.json" files)" = 6
	check "$k: --json fs is ext4" test "$(json_field "$T/home-$k.json" fs)" = ext4
done
O=$T/out-whole
alloc=$(stat -c %b "$O/tree/home/user/sparse.img")
check "the sparse file stays sparse ($alloc blocks of 512)" test "$alloc" -lt 1000
check "a dangling symlink comes back as it was" test "$(readlink "$O/tree/home/user/dangling")" = /nonexistent/target
expect_exit 0 "a symlink by itself" "$VMB" restore "$R" mbr@latest --file /bin/passwd-link --to "$T/link"
check "it is a symlink with the same target" test -L "$T/link/passwd-link" -a "$(readlink "$T/link/passwd-link")" = ../etc/passwd
expect_exit 0 "the whole file system (/)" "$VMB" restore "$R" gpt@latest --file / --to "$T/all"
check "/: the whole tree is equal" same_tree "$F" "$T/all"
check "/: DIR keeps its private mode" test "$(stat -c %a "$T/all")" = 700
expect_exit 0 "--partition 1 on the MBR disk" "$VMB" restore "$R" mbr@latest --partition 1 --file /etc/passwd --to "$T/p1"
check "--partition 1: equal" cmp "$F/etc/passwd" "$T/p1/passwd"
expect_exit 0 "--force writes into a non-empty folder" "$VMB" restore "$R" whole@latest --file /etc --to "$T/p1" --force
check "--force: the folder came back" cmp "$F/etc/passwd" "$T/p1/etc/passwd"
expect_exit 0 "--force twice replaces and merges" "$VMB" restore "$R" whole@latest --file /etc --to "$T/p1" --force
expect_exit 0 "--force over a tree with a 0500 folder" "$VMB" restore "$R" whole@latest --file /home --to "$T/out-whole/tree" --force
check "--force: the tree is still equal" same_tree "$F/home" "$T/out-whole/tree/home"
chmod 700 "$F/home/user/deep/er"

# --- errors, one line each ---
expect_exit 1 "a path that does not exist" "$VMB" restore "$R" whole@latest --file /etc/nope --to "$T/e1"
one_line "missing path"; grep -q "/etc/nope does not exist" "$T/err" || bad "the line names the path"
expect_exit 1 "a path through a file" "$VMB" restore "$R" whole@latest --file /etc/passwd/x --to "$T/e1"
one_line "path through a file"
expect_exit 1 "a non-empty --to" "$VMB" restore "$R" whole@latest --file /etc --to "$T/p1"
one_line "non-empty --to"; grep -q "not empty" "$T/err" || bad "the line says not empty"
expect_exit 1 "partition 2 holds NTFS" "$VMB" restore "$R" mbr@latest --partition 2 --file / --to "$T/e2"
one_line "NTFS partition"; grep -q "NTFS" "$T/err" && grep -q "vmb mount" "$T/err" || bad "the line names NTFS and vmb mount"
expect_exit 1 "a partition that does not exist" "$VMB" restore "$R" gpt@latest --partition 7 --file / --to "$T/e2"
one_line "no partition 7"; grep -q "partition 7" "$T/err" || bad "the line names the partition"
expect_exit 2 "--partition without --file" "$VMB" restore "$R" gpt@latest --partition 1 --to "$T/e2"
expect_exit 2 "--file with --format" "$VMB" restore "$R" gpt@latest --file / --format raw --to "$T/e2"
check "nothing was written by the failures" test ! -e "$T/e2/etc"

# a damaged backup: exit 3, as every restore (the io_manager hands the
# reader's error back instead of a file system error)
cp -a "$R" "$T/rdmg"
python3 - "$T/rdmg/chunks" <<'PY'
import os, sys
for d, _, fs in os.walk(sys.argv[1]):
    for f in fs:
        p = os.path.join(d, f); n = os.path.getsize(p)
        if n > 64:
            with open(p, "r+b") as h:
                h.seek(n // 2); b = h.read(1); h.seek(n // 2); h.write(bytes([b[0] ^ 0xff]))
PY
expect_exit 3 "damaged chunks: exit 3" "$VMB" restore "$T/rdmg" whole@latest --file /home --to "$T/dmg"
one_line "damaged chunks"

# two ext partitions: ambiguous, listed; --partition picks
make_table dos "$T/two.img" "$FS" || bad "making the two-fs disk"
"$VMB" backup "$R" "$T/two.img" --vm two >/dev/null || bad "backup two"
expect_exit 1 "two ext partitions are ambiguous" "$VMB" restore "$R" two@latest --file /etc/passwd --to "$T/e3"
one_line "ambiguous"; grep -q -- "--partition" "$T/err" && grep -q "1 (" "$T/err" && grep -q "2 (" "$T/err" ||
	bad "the line lists the partitions and --partition"
expect_exit 0 "--partition 2 of two" "$VMB" restore "$R" two@latest --partition 2 --file /etc/passwd --to "$T/e3"
check "--partition 2: equal" cmp "$F/etc/passwd" "$T/e3/passwd"

# other file systems point at vmb mount
truncate -s 8M "$T/blank.img"
"$VMB" backup "$R" "$T/blank.img" --vm blank >/dev/null || bad "backup blank"
expect_exit 1 "a blank disk" "$VMB" restore "$R" blank@latest --file /x --to "$T/e4"
one_line "blank disk"; grep -q "vmb mount" "$T/err" || bad "the line points at vmb mount"
if command -v mkfs.vfat >/dev/null; then
	mkfs.vfat -C "$T/fat.img" 8192 >/dev/null || bad "mkfs.vfat"
	"$VMB" backup "$R" "$T/fat.img" --vm fat >/dev/null || bad "backup fat"
	expect_exit 1 "a FAT disk" "$VMB" restore "$R" fat@latest --file /x --to "$T/e4"
	one_line "FAT disk"; grep -q "FAT" "$T/err" && grep -q "vmb mount" "$T/err" || bad "the line names FAT and vmb mount"
else
	echo "SKIP: mkfs.vfat (dosfstools) is missing: no FAT disk (the NTFS partition and the blank disk cover the message)"
fi

# --- a hostile file system ---
H=$T/hostile.img
mkdir -p "$T/hw"
echo pwned >"$T/hw/payload"
mke2fs -q -t ext4 -O ^metadata_csum "$H" 8M || bad "mke2fs hostile"
debugfs -w -f - "$H" >/dev/null 2>&1 <<EOF
mkdir h
symlink h/t $T/outside
mkdir h/TDUPMARK0
write $T/hw/payload h/TDUPMARK0/pwned
mkdir h/DOTDOTMARK
write $T/hw/payload h/DOTDOTMARK/x
write $T/hw/payload h/SLASHMARK
ln h h/loop
EOF
python3 - "$H" <<'PY' || bad "patching the hostile names"
import sys
d = bytearray(open(sys.argv[1], "rb").read())
def rename(mark, new):
    i = d.find(mark)
    assert i > 0 and d.find(mark, i + 1) < 0, mark
    assert d[i - 2] == len(mark)            # name_len
    d[i - 2] = len(new)
    d[i:i + len(new)] = new
rename(b"DOTDOTMARK", b"..")
rename(b"SLASHMARK", b"../../x")
rename(b"TDUPMARK0", b"t")
open(sys.argv[1], "wb").write(d)
PY
debugfs -R "ls -l /h" "$H" 2>/dev/null | grep -q ' \.\.$' || bad "debugfs does not show the crafted entries"
"$VMB" backup "$R" "$H" --vm hostile >/dev/null || bad "backup hostile"
mkdir -p "$T/jail"
expect_exit 1 "hostile: a folder after a symlink of the same name stops the restore" \
	"$VMB" restore "$R" hostile@latest --file /h --to "$T/jail/a"
grep -q 'not a safe file name' "$T/err" || bad "hostile: unsafe names are reported: $(head -c 300 "$T/err")"
check "hostile: nothing written through the symlink" test ! -e "$T/outside"
check "hostile: nothing written beside --to" test ! -e "$T/jail/x" -a ! -e "$T/x" -a ! -e "$T/jail/pwned"
check "hostile: the symlink is a symlink" test -L "$T/jail/a/h/t"
expect_exit 0 "hostile: with --force the symlink is replaced, never followed" \
	"$VMB" restore "$R" hostile@latest --file /h --to "$T/jail/b" --force
grep -q 'inside itself' "$T/err" || bad "hostile: the loop is reported"
check "hostile (--force): nothing outside" test ! -e "$T/outside" -a ! -e "$T/jail/x" -a ! -e "$T/x"
check "hostile (--force): t is a real folder with its file" test -d "$T/jail/b/h/t" -a ! -L "$T/jail/b/h/t" -a -f "$T/jail/b/h/t/pwned"
n=$(find "$T/jail" -name x | wc -l)
check "hostile: the entries named '..' and '../../x' were skipped ($n x files)" test "$n" = 0
check "hostile: only names from the guest under --to" \
	sh -c "find '$T/jail/b' -mindepth 1 | sed 's|^$T/jail/b/||' | sort | tr '\n' ' ' | grep -qx 'h h/loop h/t h/t/pwned '"
finish
