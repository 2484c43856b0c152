#!/usr/bin/env bash
# vmbackup benchmark: vmb against borg, restic, qemu-img and plain zstd.
#
#   bash bench/run.sh [--size 1G] [--quick] [--repeat N] [--warm]
#                     [--tools "vmb borg restic qemu zstd"] [--no-memcheck]
#
# Makes a sparse raw image (holes, text-like and random data, see gen.c),
# then for every tool: full backup, unchanged re-backup, backup after a 1%
# change (90% in 4 regions, 10% as scattered 4 KiB writes), restore of the
# last backup (compared byte for byte with the source).  Page caches are
# dropped before every measured command when the kernel lets us (--warm:
# never drop, read the image once before each step instead).  Each step is
# run --repeat times; the table shows the fastest wall time, the lowest CPU
# time and the highest peak RSS.  Then vmb's peak memory for a 1 GiB and a
# 4 GiB image.  Everything goes under bench/out/ (gitignored); the table is
# printed and saved as bench/out/results.md.
#
# --quick: a 256 MiB image, one repetition, no 4 GiB memory check.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=$HERE/out
SIZE=1G
REPEAT=2
QUICK=0
WARM=0
MEMCHECK=1
TOOLS="vmb vmb-cbt borg restic qemu zstd"
SCENARIOS=1
CIPHER=auto
CLASS_MIB=2048
CLASS_N=30
NIGHT_MIB=512
SEED=42

while [ $# -gt 0 ]; do
	case $1 in
	--size) SIZE=$2; shift 2 ;;
	--quick) QUICK=1; shift ;;
	--repeat) REPEAT=$2; shift 2 ;;
	--warm) WARM=1; shift ;;
	--tools) TOOLS=$2; shift 2 ;;
	--no-memcheck) MEMCHECK=0; shift ;;
	--cipher) CIPHER=$2; shift 2 ;;
	--no-scenarios) SCENARIOS=0; shift ;;
	-h|--help) sed -n '2,19p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
if [ $QUICK = 1 ]; then
	[ "$SIZE" = 1G ] && SIZE=256M
	REPEAT=1
	MEMCHECK=0
	CLASS_MIB=256
	CLASS_N=5
	NIGHT_MIB=64
fi

to_mib() {
	case $1 in
	*G|*g) echo $(( ${1%[Gg]} * 1024 )) ;;
	*M|*m) echo $(( ${1%[Mm]} )) ;;
	*) echo "run.sh: size must end in M or G" >&2; exit 2 ;;
	esac
}
MIB=$(to_mib "$SIZE")

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# ---- dependencies ---------------------------------------------------------
need=()
command -v borg >/dev/null || need+=(borgbackup)
command -v restic >/dev/null || need+=(restic)
[ -x /usr/bin/time ] || need+=(time)
command -v zstd >/dev/null || need+=(zstd)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v cmake >/dev/null || need+=(cmake)
command -v python3 >/dev/null || need+=(python3)
command -v cc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -f "$ROOT/build-bench/CMakeCache.txt" ] || ! dpkg -s libsodium-dev libzstd-dev >/dev/null 2>&1; then
	[ -x "$ROOT/scripts/install-deps.sh" ] && bash "$ROOT/scripts/install-deps.sh" build >/dev/null 2>&1 || true
fi

# ---- build ----------------------------------------------------------------
log "building vmb (Release) in build-bench"
cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release \
	-DVMB_BUILD_TESTS=OFF >/dev/null
cmake --build "$ROOT/build-bench" -j"$(nproc)" >/dev/null
VMB=$ROOT/build-bench/cli/vmb
mkdir -p "$OUT/logs"
cc -O2 -o "$OUT/gen" "$HERE/gen.c"

# ---- environment ----------------------------------------------------------
export VMB_PASSPHRASE='bench passphrase' BORG_PASSPHRASE='bench passphrase'
export RESTIC_PASSWORD='bench passphrase'
# vmb runs at its defaults like every other tool, key derivation included
# (Argon2id, 3 passes over 128 MiB, on every command that opens the
# repository); the "open" row measures that cost alone
unset VMB_KDF_OPSLIMIT VMB_KDF_MEMLIMIT
export XDG_CACHE_HOME=$OUT/cache BORG_BASE_DIR=$OUT/borg-home
export RESTIC_CACHE_DIR=$OUT/cache/restic
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes

RES=$OUT/results.tsv
: >"$RES"
CAN_DROP=1
if [ $WARM = 1 ]; then
	CAN_DROP=0
else
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || CAN_DROP=0
	[ $CAN_DROP = 1 ] || log "cannot drop caches: warm-cache figures"
fi

IMG=$OUT/disk.img
RESTORE=$OUT/restore

prepare() { # before each measured command
	sync
	if [ $CAN_DROP = 1 ]; then
		echo 3 >/proc/sys/vm/drop_caches
	else
		cat "$IMG" >/dev/null
	fi
}

# measure TOOL PHASE REP CMD...: wall, user, sys, peak RSS to results.tsv
measure() {
	local tool=$1 phase=$2 rep=$3 t0 t1 tf=$OUT/time.txt
	shift 3
	prepare
	t0=$(date +%s.%N)
	if ! /usr/bin/time -v -o "$tf" "$@" >"$OUT/logs/$tool-$phase-$rep.out" \
		2>"$OUT/logs/$tool-$phase-$rep.err"; then
		log "FAILED: $tool $phase: $*"
		tail -5 "$OUT/logs/$tool-$phase-$rep.err" >&2
		exit 1
	fi
	t1=$(date +%s.%N)
	printf 'time\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$phase" "$rep" \
		"$(echo "$t1 - $t0" | bc -l)" \
		"$(awk -F': ' '/User time/ {print $2}' "$tf")" \
		"$(awk -F': ' '/System time/ {print $2}' "$tf")" \
		"$(awk -F': ' '/Maximum resident/ {print $2}' "$tf")" >>"$RES"
	log "$tool $phase #$rep: $(echo "$t1 - $t0" | bc -l | cut -c1-6) s"
}

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" "${5:-}" >>"$RES"; }
dusize() { du -sb "$1" | cut -f1; }
allocated() { echo $(( $(stat -c '%b * %B' "$1") )); }

# check_restore TOOL FILE REFERENCE
check_restore() {
	if ! cmp -s "$2" "$3"; then
		log "FAILED: $1 restore differs from the source"
		exit 1
	fi
	record restored "$1" "$(allocated "$2")" "$(stat -c %s "$2")"
}

# A fresh copy of the image, left at rest for 2 s before the full backup
# (for every tool alike), as a stopped VM's disk is when the nightly backup
# starts.  vmb (like git's "racily clean" rule) does not trust a file's
# timestamps if it was written less than 2 s before the backup opened it
# (docs/cbt.md, "Unchanged files"): without the pause its unchanged
# re-backup depends on how long `sync` took after the copy.
fresh_image() {
	rm -f "$IMG"
	cp --sparse=always "$OUT/base.img" "$IMG"
	sync
	sleep 2
}

command -v bc >/dev/null || { echo "run.sh: needs bc" >&2; exit 1; }

# ---- images -----------------------------------------------------------------
log "generating a $MIB MiB image (seed $SEED)"
"$OUT/gen" create "$OUT/base.img" "$MIB" "$SEED" 2>"$OUT/logs/gen.txt"
record meta image_bytes "$(stat -c %s "$OUT/base.img")"
record meta image_allocated "$(allocated "$OUT/base.img")"
record meta image_layout "$(head -1 "$OUT/logs/gen.txt")"
record meta change "1% of the image size: 90% in 4 regions, 10% as scattered 4 KiB writes (gen modify ... 1 mixed)"
record meta caches "$([ $CAN_DROP = 1 ] && echo dropped || echo warm)"
record meta repeat "$REPEAT"
record meta load_start "$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- tools ----------------------------------------------------------------
run_vmb() {
	local r=$1 repo=$OUT/repo-vmb
	rm -rf "$repo" "$XDG_CACHE_HOME/vmb" "$RESTORE"
	"$VMB" init "$repo" --cipher "$CIPHER" --json >"$OUT/init.json"
	record meta cipher "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cipher"])' "$OUT/init.json")"
	fresh_image
	measure vmb full "$r" "$VMB" backup "$repo" "$IMG" --vm bench --json
	record size vmb full "$(dusize "$repo")"
	measure vmb same "$r" "$VMB" backup "$repo" "$IMG" --vm bench --json
	measure vmb open "$r" "$VMB" snapshots "$repo" --json
	"$OUT/gen" modify "$IMG" "$SEED" 1 mixed 2>/dev/null
	measure vmb inc "$r" "$VMB" backup "$repo" "$IMG" --vm bench --json
	record size vmb inc "$(dusize "$repo")"
	record objects vmb inc "$(find "$repo/chunks" -type f | wc -l)"
	# no flush, like qemu-img convert's default (its cache mode "unsafe"):
	# the flushed restore is the next row
	measure vmb restore "$r" "$VMB" restore "$repo" bench@latest \
		--to "$RESTORE" --format raw --no-sync
	check_restore vmb "$RESTORE/disk.img" "$IMG"
	rm -rf "$RESTORE"
	measure vmb restore-flush "$r" bash -c '"$0" restore "$1" bench@latest --to "$2" --format raw && sync "$2/disk.img"' \
		"$VMB" "$repo" "$RESTORE"
	check_restore vmb "$RESTORE/disk.img" "$IMG"
}

# vmb with change tracking: the image as a qcow2, the same shape of 1%
# change written through QEMU (qemu-io), so QEMU's persistent bitmap (which
# vmb adds at the first backup) records it, as for a running VM
run_vmb_cbt() {
	local r=$1 repo=$OUT/repo-vmb-cbt q=$OUT/disk.qcow2
	rm -rf "$repo" "$XDG_CACHE_HOME/vmb" "$q"
	"$VMB" init "$repo" >/dev/null
	qemu-img convert -f raw -O qcow2 "$OUT/base.img" "$q"
	measure vmb-cbt full "$r" "$VMB" backup "$repo" "$q" --vm cbt --json
	python3 - "$q" "$MIB" "$SEED" >"$OUT/qemu-io.cmds" <<'PY'
import random, sys
q, mib, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
size = mib << 20
total = size // 100
# 90% in 4 contiguous regions, 10% as scattered 4 KiB writes
for i in range(4):
    n = (total * 9 // 10) // 4 // 65536 * 65536
    off = rnd.randrange(0, (size - n) // 65536) * 65536
    print(f"write -P {i + 1} {off} {n}")
for i in range(total // 10 // 4096):
    off = rnd.randrange(0, size // 4096) * 4096
    print(f"write -P {(i % 200) + 10} {off} 4096")
PY
	mapfile -t cmds <"$OUT/qemu-io.cmds"
	local args=() c
	for c in "${cmds[@]}"; do args+=(-c "$c"); done
	qemu-io -f qcow2 "${args[@]}" "$q" >/dev/null
	measure vmb-cbt inc "$r" "$VMB" backup "$repo" "$q" --vm cbt --json
}

run_borg() {
	local r=$1 repo=$OUT/repo-borg
	local opts=(--chunker-params fixed,4194304 --compression zstd,1 --sparse)
	rm -rf "$repo" "$BORG_BASE_DIR" "$RESTORE"
	borg init -e repokey-blake2 "$repo" >/dev/null 2>&1
	fresh_image
	measure borg full "$r" borg create "${opts[@]}" "$repo::full" "$IMG"
	record size borg full "$(dusize "$repo")"
	measure borg same "$r" borg create "${opts[@]}" "$repo::same" "$IMG"
	"$OUT/gen" modify "$IMG" "$SEED" 1 mixed 2>/dev/null
	measure borg inc "$r" borg create "${opts[@]}" "$repo::inc" "$IMG"
	record size borg inc "$(dusize "$repo")"
	mkdir -p "$RESTORE"
	measure borg restore "$r" bash -c "cd '$RESTORE' && borg extract --sparse '$repo::inc'"
	check_restore borg "$RESTORE$IMG" "$IMG"
}

run_restic() {
	local r=$1 repo=$OUT/repo-restic
	rm -rf "$repo" "$RESTIC_CACHE_DIR" "$RESTORE"
	restic init -r "$repo" >/dev/null 2>&1
	fresh_image
	measure restic full "$r" restic -r "$repo" backup --host bench "$IMG"
	record size restic full "$(dusize "$repo")"
	measure restic same "$r" restic -r "$repo" backup --host bench "$IMG"
	"$OUT/gen" modify "$IMG" "$SEED" 1 mixed 2>/dev/null
	measure restic inc "$r" restic -r "$repo" backup --host bench "$IMG"
	record size restic inc "$(dusize "$repo")"
	measure restic restore "$r" restic -r "$repo" restore latest --target "$RESTORE"
	check_restore restic "$RESTORE$IMG" "$IMG"
}

run_qemu() {
	local r=$1
	rm -rf "$OUT/disk.qcow2" "$RESTORE"
	fresh_image
	measure qemu full "$r" qemu-img convert -c -O qcow2 "$IMG" "$OUT/disk.qcow2"
	record size qemu full "$(dusize "$OUT/disk.qcow2")"
	mkdir -p "$RESTORE"
	measure qemu restore "$r" qemu-img convert -O raw "$OUT/disk.qcow2" "$RESTORE/disk.img"
	rm -f "$RESTORE/disk.img"
	measure qemu restore-flush "$r" bash -c 'qemu-img convert -O raw "$0" "$1" && sync "$1"' \
		"$OUT/disk.qcow2" "$RESTORE/disk.img"
	check_restore qemu "$RESTORE/disk.img" "$IMG"
	# the floor of any flushed restore on this disk: writing and syncing
	# as many bytes as the restored image allocates, with nothing to read
	# or decode (dd of zeros, conv=fsync)
	local fl=$(( ($(allocated "$RESTORE/disk.img") + 4194303) / 4194304 ))
	rm -f "$RESTORE/disk.img"
	measure floor write-flush "$r" dd if=/dev/zero of="$RESTORE/floor.img" \
		bs=4M count="$fl" conv=fsync status=none
	rm -f "$RESTORE/floor.img"
	rm -f "$OUT/disk.qcow2"
}

run_zstd() {
	local r=$1
	rm -rf "$OUT/disk.img.zst" "$RESTORE"
	fresh_image
	measure zstd full "$r" zstd -T0 -1 -q -f "$IMG" -o "$OUT/disk.img.zst"
	record size zstd full "$(dusize "$OUT/disk.img.zst")"
	# the same, durable: vmb fsyncs every object it writes before the
	# snapshot names it; zstd exits with its output in the page cache
	measure zstd full-sync "$r" sh -c 'zstd -T0 -1 -q -f "$1" -o "$2" && sync "$2"' \
		sh "$IMG" "$OUT/disk.img.zst"
	mkdir -p "$RESTORE"
	measure zstd restore "$r" zstd -d -q -f "$OUT/disk.img.zst" -o "$RESTORE/disk.img"
	check_restore zstd "$RESTORE/disk.img" "$IMG"
	rm -f "$OUT/disk.img.zst"
}

for ((rep = 1; rep <= REPEAT; rep++)); do
	for t in $TOOLS; do
		log "== $t (repetition $rep of $REPEAT)"
		"run_${t//-/_}" "$rep"
	done
done
rm -rf "$RESTORE"

# ---- vmb memory against disk size --------------------------------------------
if [ $MEMCHECK = 1 ] && [[ " $TOOLS " == *" vmb "* ]]; then
	for m in 1024 4096; do
		log "vmb peak memory, $m MiB image"
		"$OUT/gen" create "$IMG" "$m" $((SEED + 1)) 2>/dev/null
		rm -rf "$OUT/repo-mem" "$XDG_CACHE_HOME/vmb" "$RESTORE"
		"$VMB" init "$OUT/repo-mem" >/dev/null
		measure vmb "mem-backup-$m" 1 "$VMB" backup "$OUT/repo-mem" "$IMG" --vm mem --json
		measure vmb "mem-restore-$m" 1 "$VMB" restore "$OUT/repo-mem" mem@latest \
			--to "$RESTORE" --format raw
		rm -rf "$OUT/repo-mem" "$RESTORE"
	done
fi

# ---- issue 15 scenarios ------------------------------------------------------
if [ $SCENARIOS = 1 ]; then
	. "$HERE/scenarios.sh"
	run_classroom
	run_night
fi

record meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
rm -f "$IMG"
python3 "$HERE/report.py" "$RES" "$OUT/logs" | tee "$OUT/results.md"
