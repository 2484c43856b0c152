#!/usr/bin/env bash
# vmbackup benchmark: vmb against virtnbdbackup on one running libvirt domain.
#
#   bash bench/libvirt.sh [--size 2G] [--data 512] [--warm] [--keep]
#
# Starts libvirt (tests/services/libvirt.sh), makes one running domain (QEMU
# in software emulation, a boot sector that prints and halts) on a qcow2
# disk of --size virtual size with --data MiB of data (half random, half
# base64 text of random data), then for each tool in turn on the SAME
# running domain, each with its own output and a fresh checkpoint chain:
# a full backup, ten 1 MiB guest writes at scattered offsets (the same
# offsets and data for both tools, through QEMU's monitor as the guest
# would write), an incremental backup.  vmb backs up into an encrypted
# repository (`vmb init`: repokey, zstd, dedup); virtnbdbackup runs at its
# defaults (stream format, no compression).  Wall time (page caches
# dropped before each timed step when the kernel lets us, else "warm
# cache"; --warm leaves the caches as they are) and size on disk
# (`du -sb`; for the incremental, what it added) of each step.  vmb's
# latest snapshot is restored and compared with the live disk.  The table
# is printed and saved as bench/out/libvirt.md (libvirt-warm.md with --warm)
# (bench/out is gitignored); the work files go under bench/out/libvirt/
# and are deleted at the end unless --keep.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=$HERE/out
W=$OUT/libvirt
SIZE=2G
DATA_MIB=512
KEEP=0
WARM=0
while [ $# -gt 0 ]; do
	case $1 in
	--size) SIZE=$2; shift 2 ;;
	--data) DATA_MIB=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	--warm) WARM=1; shift ;;
	-h|--help) sed -n '2,21p' "$0"; exit 0 ;;
	*) echo "libvirt.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

VMB=${VMB:-$ROOT/build/cli/vmb}
export VMB_PLUGIN_DIR=${VMB_PLUGIN_DIR:-$ROOT/build/lib/vmbackup/plugins}
SVC=$ROOT/tests/services/libvirt.sh
URI=qemu:///system
export LIBVIRT_DEFAULT_URI=$URI
export VMB_PASSPHRASE='bench passphrase'
export XDG_CACHE_HOME=$W/cache
DOM=vmbbench$$
DISK=$W/vda.qcow2
REPO=$W/vmb-repo
VNB=$W/virtnbdbackup
# ten 1 MiB writes, scattered over the data (so both tools' fulls see the
# same allocation), none on a 4 MiB boundary
OFFSETS="7M 45M 98M 141M 203M 262M 317M 366M 421M 489M"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for t in nasm qemu-img qemu-io qemu-system-x86_64 virsh libvirtd virtnbdbackup base64; do
	command -v $t >/dev/null || die "$t is missing"
done
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"
[ -x "$VMB" ] || die "$VMB is missing (cmake --build $ROOT/build -j2)"
[ -f "$VMB_PLUGIN_DIR/libvirt.so" ] || die "no libvirt plugin in $VMB_PLUGIN_DIR"

# ---- libvirt and the domain -----------------------------------------------
rm -rf "$W"
mkdir -p "$W/logs" "$XDG_CACHE_HOME"
STARTED=0
cleanup() {
	set +e
	if [ $STARTED = 1 ]; then
		virsh -q destroy "$DOM" >/dev/null 2>&1
		virsh -q undefine "$DOM" --checkpoints-metadata >/dev/null 2>&1
		bash "$SVC" stop "$W/svc" >/dev/null 2>&1
	fi
	if [ $KEEP = 0 ]; then
		rm -rf "$DISK" "$W/data.raw" "$REPO" "$VNB" "$W/restore" "$W/vnb-restore" \
			"$W/cache" "$W"/w*.bin
	fi
}
trap cleanup EXIT
log "starting libvirt"
STARTED=1
bash "$SVC" start "$W/svc" >"$W/logs/svc.log" 2>&1 ||
	die "libvirt did not start: $(tail -3 "$W/logs/svc.log")"
lv() { virsh -q -c "$URI" "$@"; }

log "making the disk: $SIZE virtual, $DATA_MIB MiB of data"
nasm -f bin "$ROOT/tests/fixtures-src/serial_boot.asm" -o "$W/boot.bin"
# sector 0: the boot sector; from 1 MiB: half random, half text (base64 of
# random: zstd -1 brings it to about 3/4), in 1 MiB pieces taking turns
half=$((DATA_MIB / 2))
truncate -s "$SIZE" "$W/data.raw"
dd if="$W/boot.bin" of="$W/data.raw" conv=notrunc status=none
head -c $((half << 20)) /dev/urandom >"$W/rand.tmp"
head -c $(((half * 3 / 4 + 1) << 20)) /dev/urandom | base64 -w 76 >"$W/text.tmp"
truncate -s $((half << 20)) "$W/text.tmp"
for ((i = 0; i < half; i++)); do
	dd if="$W/rand.tmp" of="$W/data.raw" bs=1M skip=$i seek=$((1 + 2 * i)) \
		count=1 conv=notrunc status=none
	dd if="$W/text.tmp" of="$W/data.raw" bs=1M skip=$i seek=$((2 + 2 * i)) \
		count=1 conv=notrunc status=none
done
rm -f "$W/rand.tmp" "$W/text.tmp"
qemu-img convert -f raw -O qcow2 "$W/data.raw" "$DISK"
rm -f "$W/data.raw"
# what the guest will write: 1 MiB of new random data per offset
i=0
for off in $OFFSETS; do
	head -c 1M /dev/urandom >"$W/w$i.bin"
	i=$((i + 1))
done

cat >"$W/dom.xml" <<EOF
<domain type='qemu'><name>$DOM</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
<on_reboot>destroy</on_reboot><devices>
<emulator>$(command -v qemu-system-x86_64)</emulator>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='$DISK'/><target dev='vda' bus='virtio'/></disk>
<serial type='file'><source path='$W/serial.log'/><target port='0'/></serial>
</devices></domain>
EOF
lv define "$W/dom.xml" >/dev/null
lv start "$DOM" >/dev/null
for ((i = 0; i < 600; i++)); do
	grep -q vmb-boot-ok "$W/serial.log" 2>/dev/null && break
	sleep 0.1
done
grep -q vmb-boot-ok "$W/serial.log" || die "the domain did not boot"
log "domain $DOM is running"

hmp() { lv qemu-monitor-command "$DOM" --hmp "$1"; }
guest_write() { # guest_write OFFSET SOURCE_FILE: 1 MiB, then a flush
	local r
	r=$(hmp "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"write -s $2 $1 1M\"")
	case $r in *rror*|*annot*) die "guest write at $1: $r" ;; esac
	hmp "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend flush" >/dev/null
}
guest_writes() {
	local i=0 off
	for off in $OFFSETS; do
		guest_write "$off" "$W/w$i.bin"
		i=$((i + 1))
	done
}
delete_checkpoints() {
	local c
	# leaves first: every delete then merges nothing into a child
	for c in $(lv checkpoint-list "$DOM" --name --topological | tac); do
		lv checkpoint-delete "$DOM" "$c" >/dev/null
	done
}

CAN_DROP=1
sync
if [ $WARM = 1 ]; then
	CAN_DROP=0
else
	{ echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || CAN_DROP=0
	[ $CAN_DROP = 1 ] || log "cannot drop caches: warm cache"
fi
prepare() {
	sync
	[ $CAN_DROP = 0 ] || echo 3 >/proc/sys/vm/drop_caches
}
# timed NAME CMD...: wall seconds in $W/logs/NAME.time (%e %U %S), stdout
# in NAME.out, stderr in NAME.err; the command's exit status
timed() {
	local name=$1; shift
	prepare
	/usr/bin/time -f '%e %U %S' -o "$W/logs/$name.time" "$@" \
		>"$W/logs/$name.out" 2>"$W/logs/$name.err"
}
wall() { cut -d' ' -f1 "$W/logs/$1.time"; }
cpu() { awk '{ printf "%.2f", $2 + $3 }' "$W/logs/$1.time"; }
jf() { # jf FILE FIELD: a top-level number or string from vmb's JSON
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
bytes() { du -sb "$1" | cut -f1; }

declare -A R
SUFFIX=
[ $WARM = 0 ] || SUFFIX=-warm
load0=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- vmb -------------------------------------------------------------------
log "vmb: init"
"$VMB" init "$REPO" --quiet
base=$(bytes "$REPO")
log "vmb: full"
timed vmb-full "$VMB" backup "$REPO" "libvirt:$DOM" --json ||
	die "vmb full: $(tail -3 "$W/logs/vmb-full.err")"
R[vmb_full_s]=$(wall vmb-full)
R[vmb_full_b]=$(($(bytes "$REPO") - base))
guest_writes
log "vmb: incremental"
timed vmb-inc "$VMB" backup "$REPO" "libvirt:$DOM" --json ||
	die "vmb incremental: $(tail -3 "$W/logs/vmb-inc.err")"
R[vmb_inc_s]=$(wall vmb-inc)
R[vmb_inc_b]=$(($(bytes "$REPO") - base - ${R[vmb_full_b]}))
for s in full inc; do
	j=$W/logs/vmb-$s.out
	R[vmb_${s}_note]="cbt $(jf "$j" cbt), bytes_read $(mib "$(jf "$j" bytes_read)") MiB, vmb seconds $(jf "$j" seconds), CPU $(cpu vmb-$s) s"
done
# what opening the repository costs (the passphrase's KDF), warm
/usr/bin/time -f %e -o "$W/logs/vmb-open.time" "$VMB" snapshots "$REPO" >/dev/null
R[vmb_inc_note]+="; opening the repository (KDF) alone $(cat "$W/logs/vmb-open.time") s"
log "vmb: restore and compare with the live disk"
"$VMB" restore "$REPO" "$DOM@latest" --to "$W/restore" --format raw --quiet
if qemu-img compare -q -U -f raw -F qcow2 "$W/restore/vda.img" "$DISK"; then
	VMB_OK="matched"
else
	VMB_OK="DIFFERED"
fi
rm -rf "$W/restore"
log "vmb: restore $VMB_OK the live disk"
vmb_ckpts=$(lv checkpoint-list "$DOM" --name | tr '\n' ' ')

# ---- virtnbdbackup -----------------------------------------------------------
delete_checkpoints
log "virtnbdbackup: full"
VNB_ERR=
if timed vnb-full virtnbdbackup -U "$URI" -d "$DOM" -l full -o "$VNB"; then
	R[vnb_full_s]=$(wall vnb-full)
	R[vnb_full_b]=$(bytes "$VNB")
	R[vnb_full_note]="CPU $(cpu vnb-full) s"
	guest_writes
	log "virtnbdbackup: incremental"
	if timed vnb-inc virtnbdbackup -U "$URI" -d "$DOM" -l inc -o "$VNB"; then
		R[vnb_inc_s]=$(wall vnb-inc)
		R[vnb_inc_b]=$(($(bytes "$VNB") - ${R[vnb_full_b]}))
		R[vnb_inc_note]="CPU $(cpu vnb-inc) s"
	else
		VNB_ERR="incremental failed: $(grep -m1 -i error "$W/logs/vnb-inc.err" || tail -1 "$W/logs/vnb-inc.err")"
	fi
else
	VNB_ERR="full failed: $(grep -m1 -i error "$W/logs/vnb-full.err" || tail -1 "$W/logs/vnb-full.err")"
fi
VNB_OK="not checked"
if [ -z "$VNB_ERR" ] && command -v virtnbdrestore >/dev/null; then
	log "virtnbdbackup: restore and compare with the live disk"
	if virtnbdrestore -i "$VNB" -o "$W/vnb-restore" >"$W/logs/vnb-restore.log" 2>&1; then
		img=$(find "$W/vnb-restore" -maxdepth 1 -type f ! -name '*.xml' ! -name '*.log' | head -1)
		if [ -n "$img" ] && qemu-img compare -q -U "$img" "$DISK"; then
			VNB_OK="matched"
		else
			VNB_OK="DIFFERED"
		fi
	else
		VNB_OK="virtnbdrestore failed (logs/vnb-restore.log)"
	fi
	rm -rf "$W/vnb-restore"
fi
vnb_ckpts=$(lv checkpoint-list "$DOM" --name | tr '\n' ' ')
load1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the table ----------------------------------------------------------------
cache="page cache dropped before each timed step"
[ $CAN_DROP = 1 ] || cache="warm cache"
n() { printf '%s (%s MiB)' "$1" "$(mib "$1")"; }
{
	echo "libvirt: vmb against virtnbdbackup, one running TCG domain ($(date -u '+%Y-%m-%d %H:%M UTC'))"
	echo
	echo "disk: qcow2, $SIZE virtual, $DATA_MIB MiB of data (half random, half base64 text);"
	echo "change: ten 1 MiB writes of random data at $OFFSETS; $cache;"
	echo "nproc $(nproc), load average $load0 at the start, $load1 at the end; $(virtnbdbackup -V 2>&1 | tail -1 | sed 's/^/virtnbdbackup /'), $("$VMB" --version 2>/dev/null | head -1 || echo vmb)"
	echo
	echo "| tool | full s | full bytes | incremental s | incremental bytes | notes |"
	echo "|---|---|---|---|---|---|"
	echo "| vmb | ${R[vmb_full_s]} | $(n "${R[vmb_full_b]}") | ${R[vmb_inc_s]} | $(n "${R[vmb_inc_b]}") | full: ${R[vmb_full_note]}; incremental: ${R[vmb_inc_note]}; restore $VMB_OK the live disk |"
	if [ -z "$VNB_ERR" ]; then
		echo "| virtnbdbackup | ${R[vnb_full_s]} | $(n "${R[vnb_full_b]}") | ${R[vnb_inc_s]} | $(n "${R[vnb_inc_b]}") | defaults (stream, no compression, no encryption); full: ${R[vnb_full_note]}; incremental: ${R[vnb_inc_note]}; restore $VNB_OK the live disk |"
	else
		echo "| virtnbdbackup | ${R[vnb_full_s]:--} | ${R[vnb_full_b]:--} | - | - | $VNB_ERR |"
	fi
	echo
	echo "vmb restore of its latest snapshot: $VMB_OK the live disk (qemu-img compare)"
	echo "checkpoints after vmb: ${vmb_ckpts:-none}; after virtnbdbackup: ${vnb_ckpts:-none}"
} | tee "$OUT/libvirt$SUFFIX.md"
cp "$OUT/libvirt$SUFFIX.md" "$W/logs/"
[ "$VMB_OK" = matched ] || exit 1
