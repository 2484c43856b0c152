# Raw images read with O_DIRECT (VMB_DIRECT_READ=1), buffered (0) and
# automatically (auto, evicted from the page cache first so that it goes
# direct) back up and restore byte-identically: sizes that are no multiple
# of 4 KiB nor of the chunk size (a short last chunk, a 1-byte last page),
# holes between data, 4 MiB and 256 KiB chunks; the same on tmpfs
# (/dev/shm), where O_DIRECT may be refused and reads fall back silently;
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

expect_exit 0 "init for the bad knob" "$VMB" init "$T/repobad"
VMB_DIRECT_READ=yes expect_exit 1 "VMB_DIRECT_READ=yes is refused" \
	"$VMB" backup "$T/repobad" "$IMG" --vm d
one_line "VMB_DIRECT_READ=yes"
finish
