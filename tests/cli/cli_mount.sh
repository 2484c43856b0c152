# vmb mount / vmb umount: snapshots as raw files over FUSE.
#  - every snapshot of every VM shows up as DIR/VM/ID/DISK.raw with the
#    disk's size and the snapshot's time, DIR/VM/latest points at the
#    newest; SNAP and --vm narrow the view;
#  - each file is byte for byte `vmb restore --format raw` of it (cmp);
#  - SEEK_DATA / SEEK_HOLE follow the stored zero chunks;
#  - an ext4 made by mke2fs -d from a folder: the whole tree through a
#    loop mount of the FUSE file (diff -r), else (no loop device) through
#    debugfs rdump on the FUSE file;
#  - sources: raw, qcow2, VMDK, VDI (qemu-img convert);
#  - errors, one line each: DIR not empty, not a directory, wrong
#    passphrase, umount of a folder with no vmb mount;
#  - umount ends the server and leaves DIR empty.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
command -v python3 >/dev/null || skip "python3 is needed"
command -v mke2fs >/dev/null || skip "mke2fs (e2fsprogs) is needed"
command -v fusermount3 >/dev/null || skip "fusermount3 (fuse3) is needed"
if ! python3 -c 'import os; os.close(os.open("/dev/fuse", os.O_RDWR))' 2>/dev/null; then
	# the error path is still checked: one clear line
	mkdir -p "$T/m0"
	expect_exit 1 "mount without /dev/fuse fails" "$VMB" mount "$T/nope" "$T/m0"
	one_line "no /dev/fuse"
	grep -q "/dev/fuse" "$T/err" || bad "the message names /dev/fuse"
	echo "SKIP: /dev/fuse cannot be opened here; only the error path was tested"
	exit 77
fi

R=$T/repo
M=$T/mnt
mkdir -p "$M"
mounted() { grep -q " $1 fuse.vmb " /proc/self/mounts; }
umount_all() { mounted "$M" && fusermount3 -u "$M"; true; }
cleanup_hooks+=("umount_all")

# a folder of files, made into an ext4 image without a mount
F=$T/files
mkdir -p "$F/etc/conf.d" "$F/home/user/empty" "$F/bin"
printf 'root:x:0:0::/root:/bin/sh\n' >"$F/etc/passwd"
printf 'key = value\n' >"$F/etc/conf.d/app.conf"
head -c 3000000 /dev/urandom >"$F/home/user/big.bin"
: >"$F/home/user/zero-length"
printf '#!/bin/sh\necho hi\n' >"$F/bin/tool"
chmod 755 "$F/bin/tool"; chmod 600 "$F/etc/passwd"
ln -s ../etc/passwd "$F/bin/passwd-link"
touch -d '2020-02-03 04:05:06' "$F/etc/conf.d/app.conf"
IMG=$T/guest.img
mke2fs -q -t ext4 -d "$F" "$IMG" 64M || { bad "mke2fs -d"; finish; }

"$VMB" init "$R" >/dev/null || { bad "init"; finish; }
"$VMB" backup "$R" "$IMG" --vm web --json >"$T/b1.json" || bad "backup 1"
S1=$(json_field "$T/b1.json" snapshot)
# a second VM from another source format, and a second snapshot of web
formats=()
if command -v qemu-img >/dev/null; then
	for f in qcow2 vmdk vdi; do
		qemu-img convert -O $f "$IMG" "$T/guest.$f" && formats+=($f)
	done
fi
for f in "${formats[@]}"; do
	"$VMB" backup "$R" "$T/guest.$f" --vm "db-$f" >/dev/null || bad "backup $f"
done
cp -a "$F" "$T/files1"
echo extra >"$F/etc/extra"
mke2fs -q -t ext4 -d "$F" "$T/guest2.img" 64M
"$VMB" backup "$R" "$T/guest2.img" --vm web --json >"$T/b2.json" || bad "backup 2"
S2=$(json_field "$T/b2.json" snapshot)

# --- errors first ---
mkdir -p "$T/full"; : >"$T/full/x"
expect_exit 1 "mount on a non-empty folder" "$VMB" mount "$R" "$T/full"
one_line "not empty"; grep -q "not empty" "$T/err" || bad "message says not empty"
expect_exit 1 "mount on a file" "$VMB" mount "$R" "$T/full/x"
one_line "not a directory"; grep -q "not a directory" "$T/err" || bad "message says not a directory"
expect_exit 1 "mount with a wrong passphrase" env VMB_PASSPHRASE=wrong "$VMB" mount "$R" "$M"
one_line "wrong passphrase"
check "nothing mounted after the failures" sh -c "! grep -q ' $M fuse.vmb ' /proc/self/mounts"
expect_exit 1 "umount where nothing is mounted" "$VMB" umount "$M"
one_line "umount of nothing"
expect_exit 2 "mount without DIR" "$VMB" mount "$R"

# --- every snapshot ---
expect_exit 0 "vmb mount REPO DIR" "$VMB" mount "$R" "$M"
check "mounted as fuse.vmb" mounted "$M"
check "the mount is read-only" sh -c "grep ' $M fuse.vmb ' /proc/self/mounts | grep -q ' ro[ ,]'"
n=$(ls "$M" | wc -l)
[ "$n" = $((1 + ${#formats[@]})) ] && ok "one folder per VM ($n)" || bad "VM folders: $(ls "$M")"
check "web has both snapshots" test -f "$M/web/$S1/guest.raw" -a -f "$M/web/$S2/guest2.raw"
check "latest points at the newest" test "$(readlink "$M/web/latest")" = "$S2"
size=$(stat -c %s "$M/web/$S1/guest.raw")
check "size is the disk's ($size)" test "$size" = $((64 << 20))
t=$(python3 - "$R" "$S1" <<'PY'
import json, subprocess, sys, os
out = subprocess.run([os.environ["VMB"], "snapshots", sys.argv[1], "--json"],
                     capture_output=True, text=True).stdout
d = json.loads(out)
snaps = d["snapshots"] if isinstance(d, dict) else d
for s in snaps:
    if s["id"] == sys.argv[2]:
        print(s["time"] if isinstance(s["time"], int) else "")
PY
)
mt=$(stat -c %Y "$M/web/$S1/guest.raw")
if [ -n "$t" ]; then
	check "mtime is the snapshot's time ($mt)" test "$mt" = "$t"
else
	check "mtime is a past time" test "$mt" -le "$(date +%s)"
fi
check "writing is refused" sh -c "! echo x 2>/dev/null >>'$M/web/$S1/guest.raw'"
check "creating is refused" sh -c "! touch '$M/web/new' 2>/dev/null"

# byte for byte what vmb restore --format raw writes
"$VMB" restore "$R" "$S1" --to "$T/r1" --format raw >/dev/null || bad "restore raw"
check "cmp with vmb restore --format raw" cmp "$M/web/$S1/guest.raw" "$T/r1/guest.img"
check "cmp with the source image" cmp "$M/web/$S2/guest2.raw" "$T/guest2.img"
for f in "${formats[@]}"; do
	d=$(ls "$M/db-$f" | grep -v latest)
	check "$f source: file equals the guest disk" cmp "$M/db-$f/$d/guest.raw" "$IMG"
done

# holes: the ext4 image has long zero areas
python3 - "$M/web/$S1/guest.raw" "$IMG" >"$T/seek" 2>&1 <<'PY'
import os, sys
f = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(f).st_size
data = open(sys.argv[2], "rb").read()
pos, holes, datas = 0, 0, 0
while pos < size:
    try:
        d = os.lseek(f, pos, os.SEEK_DATA)
    except OSError:
        assert not any(data[pos:]), "data after the last SEEK_DATA"
        break
    assert not any(data[pos:d]), "SEEK_DATA skipped data"
    h = os.lseek(f, d, os.SEEK_HOLE)
    assert h > d
    holes += d > pos
    datas += 1
    pos = h
assert holes >= 1, "no hole reported"
print("ok", datas, holes)
PY
check "SEEK_DATA/SEEK_HOLE skip only zeros ($(cat "$T/seek"))" grep -q '^ok' "$T/seek"

# the guest's files: loop mount, else debugfs rdump
loopdir=$T/loop
mkdir -p "$loopdir"
if [ "$(id -u)" = 0 ] && mount -o ro,loop "$M/web/$S1/guest.raw" "$loopdir" 2>"$T/loop.err"; then
	cleanup_hooks=("mountpoint -q '$loopdir' && umount '$loopdir'" "${cleanup_hooks[@]}")
	check "loop mount: whole tree equals the original (diff -r)" \
		diff -r --no-dereference -x lost+found "$T/files1" "$loopdir"
	umount "$loopdir"
else
	echo "SKIP: loop mount is not possible here ($(head -c 200 "$T/loop.err" 2>/dev/null)); checking with debugfs rdump instead"
fi
mkdir -p "$T/rdump"
if debugfs -R "rdump / $T/rdump" "$M/web/$S1/guest.raw" >/dev/null 2>&1; then
	check "debugfs rdump of the FUSE file equals the original (diff -r)" \
		diff -r --no-dereference -x lost+found "$T/files1" "$T/rdump"
else
	bad "debugfs rdump on the FUSE file"
fi

# umount while a process holds a file: refused with one line
exec 7<"$M/web/$S1/guest.raw"
expect_exit 1 "umount while busy" "$VMB" umount "$M"
one_line "busy"
exec 7<&-
expect_exit 0 "vmb umount" "$VMB" umount "$M"
check "nothing mounted after umount" sh -c "! grep -q ' $M fuse.vmb ' /proc/self/mounts"
check "DIR is empty again" test -z "$(ls -A "$M")"

# --- one snapshot, by prefix; and --vm ---
expect_exit 0 "vmb mount REPO SNAP DIR" "$VMB" mount "$R" "${S1:0:8}" "$M"
check "only that snapshot" test "$(ls "$M")" = web -a "$(ls "$M/web" | grep -v latest)" = "$S1"
"$VMB" umount "$M" || bad "umount 2"
if [ ${#formats[@]} -gt 0 ]; then
	expect_exit 0 "vmb mount --vm" "$VMB" mount "$R" "$M" --vm "db-${formats[0]}"
	check "only that VM" test "$(ls "$M")" = "db-${formats[0]}"
	"$VMB" umount "$M" || bad "umount 3"
fi

# --- foreground: SIGTERM unmounts ---
"$VMB" mount -f "$R" "$M" >"$T/fg.out" 2>&1 &
pid=$!
for _ in $(seq 50); do mounted "$M" && break; sleep 0.1; done
check "foreground mount is up" mounted "$M"
check "foreground file is readable" cmp "$M/web/$S2/guest2.raw" "$T/guest2.img"
kill -TERM $pid; wait $pid; rc=$?
check "SIGTERM ends the foreground server cleanly (exit $rc: $(head -c 300 "$T/fg.out"))" test "$rc" = 0
check "and unmounts" sh -c "! grep -q ' $M fuse.vmb ' /proc/self/mounts"
finish
