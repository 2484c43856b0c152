# Raw images read with O_DIRECT (VMB_DIRECT_READ=1), buffered (0) and
# automatically (auto, evicted from the page cache first so that it goes
# direct) back up and restore byte-identically: sizes that are no multiple
# of 4 KiB nor of the chunk size (a short last chunk, a 1-byte last page),
# holes between data, 4 MiB and 256 KiB chunks; the same on tmpfs
# (/dev/shm), where O_DIRECT may be refused and reads fall back silently;
# a first backup reads around the page cache while one with a parent or
# with other snapshots to compare with reads through it (fincore);
# a bad VMB_DIRECT_READ is a one-line usage error.  (The read paths
# themselves, the page-cache checks and an image cut short during a
# backup: unit/test_disk_raw and unit/test_repo.)
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608

# make_image PATH SIZE: random data with holes, data up to the last byte
make_image() {
	local p=$1 size=$2
	rm -f "$p"
	truncate -s "$size" "$p"
	head -c 1048576 /dev/urandom | dd of="$p" bs=1M seek=0 conv=notrunc status=none
	head -c 1572864 /dev/urandom | dd of="$p" bs=512K seek=4 conv=notrunc status=none
	head -c 4097 /dev/urandom | dd of="$p" bs=1 seek=$((size - 4097)) conv=notrunc status=none
	sync "$p" 2>/dev/null || sync
}

evict() { dd if="$1" iflag=nocache count=0 status=none 2>/dev/null || true; }

n=0
roundtrip() { # roundtrip IMG MODE CHUNK WHAT
	local img=$1 mode=$2 cs=$3 what=$4 R S
	n=$((n + 1))
	R=$T/repo$n
	expect_exit 0 "$what: init" "$VMB" init "$R" --chunk-size "$cs"
	[ "$mode" = auto ] && evict "$img"
	VMB_DIRECT_READ=$mode expect_exit 0 "$what: backup" \
		"$VMB" backup "$R" "$img" --vm d --full --json
	check "$what: backup prints nothing on stderr" test ! -s "$T/err"
	S=$(json_field "$T/out" snapshot)
	expect_exit 0 "$what: restore" "$VMB" restore "$R" "$S" --to "$T/out$n"
	check "$what: restores byte-identically" cmp "$img" "$T/out$n/$(basename "${img%.*}").img"
}

IMG=$T/odd.img
for size in $((4 * 1048576 + 4097)) $((8 * 1048576 + 300 * 1024 + 123)); do
	make_image "$IMG" "$size"
	for mode in 1 0 auto; do
		for cs in 4M 256K; do
			roundtrip "$IMG" "$mode" "$cs" "size $size, VMB_DIRECT_READ=$mode, chunks $cs"
		done
	done
done

if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	SHM=$(mktemp -d /dev/shm/vmb-direct.XXXXXX)
	cleanup_hooks+=("rm -rf '$SHM'")
	make_image "$SHM/shm.img" $((4 * 1048576 + 4097))
	for mode in 1 auto; do
		roundtrip "$SHM/shm.img" "$mode" 4M "tmpfs, VMB_DIRECT_READ=$mode"
	done
else
	echo "no writable /dev/shm: tmpfs fallback not checked here"
fi

# Which path a backup takes in auto mode, seen from the page cache: a
# first backup (every chunk compressed) reads around the cache; one with
# a parent, or compared with another snapshot's disk (a clone), reads
# through it, whose readahead is faster where the disk sets the pace
resident() { fincore -b -n -o RES "$1" 2>/dev/null; }
BIG=$T/big.img
make_image "$BIG" $((16 * 1048576))
head -c $((10 * 1048576)) /dev/urandom | dd of="$BIG" bs=1M seek=5 conv=notrunc status=none
sync "$BIG" 2>/dev/null || sync
evict "$BIG"
r0=$(resident "$BIG")
if [ -z "$r0" ] || [ "$r0" -gt $((1048576)) ]; then
	echo "no fincore, or the page cache keeps $BIG after eviction: backup read paths not checked here"
else
	expect_exit 0 "paths: init" "$VMB" init "$T/repopaths"
	# path_check WHAT around|through VM [ENV=VALUE...]: back up $BIG,
	# evicted first (and changed first when CHANGE is set, so that a
	# backup with a parent reads every allocated byte), in auto mode
	# unless ENV says otherwise, and see what it left in the page cache
	path_check() {
		local what=$1 way=$2 vm=$3 r
		shift 3
		if [ -n "${CHANGE:-}" ]; then
			head -c 4096 /dev/urandom |
				dd of="$BIG" bs=4096 seek="$CHANGE" conv=notrunc status=none
			sync "$BIG" 2>/dev/null || sync
		fi
		evict "$BIG"
		expect_exit 0 "paths: $what" env VMB_DIRECT_READ=auto "$@" \
			"$VMB" backup "$T/repopaths" "$BIG" --vm "$vm"
		r=$(resident "$BIG")
		if [ "$way" = around ]; then
			check "$what reads around the page cache ($r bytes cached)" \
				test "$r" -le $((1048576))
		else
			check "$what reads through the page cache ($r bytes cached)" \
				test "$r" -ge $((10 * 1048576))
		fi
	}
	# (the first without the key-derivation overlap, whose prefetch reads
	# the first chunks through the cache: here that would be all of them)
	path_check "a first backup" around d VMB_NO_KDF_OVERLAP=1
	CHANGE=1500 path_check "a backup with a parent" through d
	path_check "a clone compared with another snapshot" through clone
	CHANGE=1600 path_check "VMB_DIRECT_READ=1 with a parent" around d \
		VMB_DIRECT_READ=1
fi

expect_exit 0 "init for the bad knob" "$VMB" init "$T/repobad"
VMB_DIRECT_READ=yes expect_exit 1 "VMB_DIRECT_READ=yes is refused" \
	"$VMB" backup "$T/repobad" "$IMG" --vm d
one_line "VMB_DIRECT_READ=yes"
finish
