#!/usr/bin/env bash
# vmb chunk-size and zstd-level studies.
#
#   bash bench/chunksize.sh [--size 1G] [--sizes "256K 1M 4M 16M"]
#                           [--levels "1 3 6"] [--repeat N]
#
# Chunk sizes: for each size, a fresh repository (vmb init --chunk-size),
# a full backup of the benchmark image (gen.c), then two incrementals
# against that full backup, each changing 1% of the image:
#   scattered   4 KiB writes at random offsets (gen modify ... scattered)
#   contiguous  one region (gen modify ... contiguous)
# reported: full backup time, CPU, peak RSS, stored bytes, chunk objects
# (= PUT requests on S3), index object size, and for the incrementals the
# new bytes, new chunks and time.
# zstd levels: full backup at 4 MiB chunks with --compression-level N, and
# the single-thread CPU cost of each pipeline stage (micro.c).
# Needs what run.sh installs; run run.sh first on a fresh machine.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=$HERE/out
SIZE=1G
SIZES="256K 1M 4M 16M"
LEVELS="1 3 6"
REPEAT=1
SEED=42
while [ $# -gt 0 ]; do
	case $1 in
	--size) SIZE=$2; shift 2 ;;
	--sizes) SIZES=$2; shift 2 ;;
	--levels) LEVELS=$2; shift 2 ;;
	--repeat) REPEAT=$2; shift 2 ;;
	-h|--help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "chunksize.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
case $SIZE in
*G|*g) MIB=$(( ${SIZE%[Gg]} * 1024 )) ;;
*M|*m) MIB=${SIZE%[Mm]} ;;
*) echo "chunksize.sh: size must end in M or G" >&2; exit 2 ;;
esac

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
mkdir -p "$OUT/logs"
cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release \
	-DVMB_BUILD_TESTS=OFF >/dev/null
cmake --build "$ROOT/build-bench" -j"$(nproc)" >/dev/null
VMB=$ROOT/build-bench/cli/vmb
cc -O2 -o "$OUT/gen" "$HERE/gen.c"
cc -O2 -o "$OUT/micro" "$HERE/micro.c" -lsodium -lzstd

export VMB_PASSPHRASE='bench passphrase'
export XDG_CACHE_HOME=$OUT/cache
CAN_DROP=1
sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || CAN_DROP=0
REPO=$OUT/repo-cs
BASE=$OUT/cs-base.img
A=$OUT/cs-scattered.img
B=$OUT/cs-contiguous.img

log "generating a $MIB MiB image and its two changed copies"
"$OUT/gen" create "$BASE" "$MIB" "$SEED" 2>"$OUT/logs/cs-gen.txt"
cp --sparse=always "$BASE" "$A"
cp --sparse=always "$BASE" "$B"
"$OUT/gen" modify "$A" "$SEED" 1 scattered 2>>"$OUT/logs/cs-gen.txt"
"$OUT/gen" modify "$B" "$SEED" 1 contiguous 2>>"$OUT/logs/cs-gen.txt"

# run NAME CMD...: sets WALL CPU RSS and leaves stdout in $OUT/logs/NAME.out
run() {
	local name=$1 tf=$OUT/time.txt t0 t1
	shift
	sync
	[ $CAN_DROP = 1 ] && echo 3 >/proc/sys/vm/drop_caches
	t0=$(date +%s.%N)
	/usr/bin/time -v -o "$tf" "$@" >"$OUT/logs/$name.out" 2>"$OUT/logs/$name.err" ||
		{ log "FAILED: $*"; tail -3 "$OUT/logs/$name.err" >&2; exit 1; }
	t1=$(date +%s.%N)
	WALL=$(echo "$t1 - $t0" | bc -l)
	CPU=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {print u+s}' "$tf")
	RSS=$(awk -F': ' '/Maximum resident/ {print $2}' "$tf")
}
j() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$OUT/logs/$1.out" "$2"; }

to_bytes() {
	case $1 in
	*K) echo $(( ${1%K} * 1024 )) ;;
	*M) echo $(( ${1%M} * 1048576 )) ;;
	esac
}

MD=$OUT/chunksize.md
{
echo "## Chunk size (zstd level 1, repokey)"
echo
echo "Image: $(head -1 "$OUT/logs/cs-gen.txt" | sed 's/^[^:]*: //'); page cache $([ $CAN_DROP = 1 ] && echo dropped || echo warm) before each backup; load average $(cut -d' ' -f1-3 /proc/loadavg) at start."
echo "Incrementals change 1% of the image: scattered = 4 KiB writes at random offsets, contiguous = one region; each is backed up against the full backup."
echo
echo "| chunk | full s | full CPU s | peak RSS MiB | stored MiB | chunk objects (PUTs) | index object bytes | scattered: new MiB / new chunks / s | contiguous: new MiB / new chunks / s |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
} >"$MD"

for cs in $SIZES; do
	bw=999999
	for ((rep = 1; rep <= REPEAT; rep++)); do
		log "chunk size $cs: full backup #$rep"
		rm -rf "$REPO" "$XDG_CACHE_HOME/vmb"
		"$VMB" init "$REPO" --chunk-size "$cs" >/dev/null
		run "cs-$cs-full" "$VMB" backup "$REPO" "$BASE" --vm a --json
		if (( $(echo "$WALL < $bw" | bc -l) )); then
			bw=$WALL; bc_=$CPU; br=$RSS
		fi
	done
	stored=$(j "cs-$cs-full" bytes_stored)
	objs=$(find "$REPO/chunks" -type f | wc -l)
	ixbytes=$(find "$REPO/indexes" -type f -printf '%s\n' | head -1)
	# the same data as VM b: dedups completely, gives b a parent
	"$VMB" backup "$REPO" "$BASE" --vm b >/dev/null
	log "chunk size $cs: scattered 1%"
	run "cs-$cs-scat" "$VMB" backup "$REPO" "$A" --vm a --json
	sw=$WALL
	log "chunk size $cs: contiguous 1%"
	run "cs-$cs-cont" "$VMB" backup "$REPO" "$B" --vm b --json
	cw=$WALL
	printf '| %s | %.2f | %.2f | %d | %.1f | %d | %d | %.1f / %d / %.2f | %.1f / %d / %.2f |\n' \
		"$cs" "$bw" "$bc_" $((br / 1024)) "$(echo "$stored / 1048576" | bc -l)" \
		"$objs" "$ixbytes" \
		"$(echo "$(j "cs-$cs-scat" bytes_new) / 1048576" | bc -l)" \
		"$(j "cs-$cs-scat" chunks_new)" "$sw" \
		"$(echo "$(j "cs-$cs-cont" bytes_new) / 1048576" | bc -l)" \
		"$(j "cs-$cs-cont" chunks_new)" "$cw" >>"$MD"
done

{
echo
echo "## zstd level (4 MiB chunks)"
echo
echo "| level | full s | full CPU s | stored MiB | ratio (allocated / stored) |"
echo "| ---: | ---: | ---: | ---: | ---: |"
} >>"$MD"
alloc=$(( $(stat -c '%b * %B' "$BASE") ))
for lv in $LEVELS; do
	bw=999999
	for ((rep = 1; rep <= REPEAT; rep++)); do
		log "zstd level $lv: full backup #$rep"
		rm -rf "$REPO" "$XDG_CACHE_HOME/vmb"
		"$VMB" init "$REPO" --compression-level "$lv" >/dev/null
		run "lv-$lv-full" "$VMB" backup "$REPO" "$BASE" --vm a --json
		if (( $(echo "$WALL < $bw" | bc -l) )); then bw=$WALL; bc_=$CPU; fi
	done
	stored=$(j "lv-$lv-full" bytes_stored)
	printf '| %s | %.2f | %.2f | %.1f | %.3f |\n' "$lv" "$bw" "$bc_" \
		"$(echo "$stored / 1048576" | bc -l)" "$(echo "$alloc / $stored" | bc -l)" >>"$MD"
done

{
echo
echo "## Per-stage CPU cost, one thread (micro.c, MiB of plaintext per CPU second)"
echo
echo "| data | chunk | zstd level | zstd ratio | XXH3 | BLAKE2b | zstd | XChaCha20-Poly1305 (on the payload) | CPU ms per chunk, all four |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for lv in $LEVELS; do "$OUT/micro" "$BASE" 4194304 "$lv"; done
for cs in $SIZES; do
	[ "$cs" = 4M ] || "$OUT/micro" "$BASE" "$(to_bytes "$cs")" 1
done
} >>"$MD"

rm -rf "$REPO" "$BASE" "$A" "$B"
cat "$MD"
