#!/bin/bash
# make-linux-disk.sh OUT.raw [MARKER]
# Builds a small bootable Linux disk from Debian packages, for the boot
# tests and benchmarks (never committed): an MBR (syslinux's mbr.bin), one
# FAT partition with SYSLINUX, the installed kernel (/boot/vmlinuz-*, from
# linux-image-amd64) and an initramfs of busybox-static whose /init prints
# "MARKER: <kernel version>" on ttyS0 and powers off.  Needs no root: the
# partition is built as a file with mtools and copied into the disk.
set -euo pipefail
out=${1:?usage: make-linux-disk.sh OUT.raw [MARKER]}
marker=${2:-vmb-linux-ok}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmb-linux.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
[ -r "$kernel" ] || { echo "make-linux-disk: no readable /boot/vmlinuz-* (apt-get install linux-image-amd64)" >&2; exit 2; }
bb=/bin/busybox
file -L "$bb" 2>/dev/null | grep -q 'statically linked' || [ -x /usr/lib/busybox-static/busybox ] ||
	{ echo "make-linux-disk: no static busybox (apt-get install busybox-static)" >&2; exit 2; }
mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -r "$mbr" ] || { echo "make-linux-disk: no $mbr (apt-get install syslinux-common)" >&2; exit 2; }

# the initramfs: busybox and an /init
r=$tmp/root
mkdir -p "$r/bin" "$r/dev" "$r/proc" "$r/sys"
cp "$bb" "$r/bin/busybox"
for l in sh echo mount cat poweroff sleep; do ln -s busybox "$r/bin/$l"; done
cat >"$r/init" <<INIT
#!/bin/sh
mount -t proc proc /proc
mount -t devtmpfs dev /dev
echo "$marker: \$(cat /proc/sys/kernel/osrelease)" >/dev/ttyS0
poweroff -f
INIT
chmod 755 "$r/init"
(cd "$r" && find . | cpio -o -H newc --quiet) | gzip -1 >"$tmp/initrd.img"

# the FAT partition, starting at sector 2048 (its hidden sectors say so)
cat >"$tmp/syslinux.cfg" <<CFG
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT linux
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.img
  APPEND console=ttyS0,115200 earlyprintk=serial,ttyS0,115200 panic=-1 loglevel=4
CFG
ksize=$(( ($(stat -c %s "$kernel") + $(stat -c %s "$tmp/initrd.img")) / 1048576 + 8 ))
part=$tmp/part.img
truncate -s "${ksize}M" "$part"
mkfs.fat -h 2048 -n VMBBOOT "$part" >/dev/null
export MTOOLS_SKIP_CHECK=1
mcopy -i "$part" "$kernel" ::vmlinuz
mcopy -i "$part" "$tmp/initrd.img" ::initrd.img
mcopy -i "$part" "$tmp/syslinux.cfg" ::syslinux.cfg
syslinux --install "$part"

# the disk: MBR, one bootable FAT partition
rm -f "$out"
truncate -s $((ksize + 1))M "$out"
echo "2048,,c,*" | sfdisk -q "$out" >/dev/null
dd if="$mbr" of="$out" bs=440 count=1 conv=notrunc status=none
dd if="$part" of="$out" bs=1M seek=1 conv=notrunc status=none
