# Sourced by bench/run.sh (uses measure, record, dusize, log, $OUT, $VMB,
# $CIPHER, $SEED): the two scenarios of issue 15.
#
# classroom: one base image (CLASS_MIB, 2 GiB; --quick 256 MiB) cloned
# CLASS_N times (30; --quick 5) as VDI disks, each with 2% of its own
# changes, backed up one after the other into one repository.  Only one
# clone exists at a time (30 x 2 GiB would not fit).
run_classroom() {
	local repo=$OUT/repo-class raw=$OUT/class-base.img i c
	rm -rf "$repo" "$XDG_CACHE_HOME/vmb"
	"$VMB" init "$repo" --cipher "$CIPHER" >/dev/null
	log "classroom: $CLASS_N clones of a $CLASS_MIB MiB base, 2% each"
	"$OUT/gen" create "$raw" "$CLASS_MIB" $((SEED + 7)) 2>/dev/null
	record meta class_clones "$CLASS_N"
	record meta class_base_mib "$CLASS_MIB"
	for ((i = 1; i <= CLASS_N; i++)); do
		c=$OUT/pc$i.vdi
		cp --sparse=always "$raw" "$OUT/pc.raw"
		"$OUT/gen" modify "$OUT/pc.raw" $((SEED + 100 + i)) 2 mixed 2>/dev/null
		# the floor of any store: the pages this clone has of its own
		# (not in the base), compressed like vmb does (zstd -1)
		record size class "own-$i" "$("$OUT/gen" diffpages "$raw" "$OUT/pc.raw" | zstd -q -1 -c | wc -c)"
		qemu-img convert -f raw -O vdi "$OUT/pc.raw" "$c"
		rm -f "$OUT/pc.raw"
		[ "$i" = 1 ] && record size class disk "$(stat -c %s "$c")" "$(du -sb "$c" | cut -f1)"
		sync; sleep 2   # at rest, as a shut-down classroom PC
		measure class "clone-$i" 1 "$VMB" backup "$repo" "$c" --vm "pc$i" --json
		[ "$i" = 1 ] && record size class first "$(dusize "$repo")"
		# the floor of any backup of a clone without change tracking:
		# reading it once, cold like the backup (first, second, last)
		if [ "$i" -le 2 ] || [ "$i" = "$CLASS_N" ]; then
			measure class "read-$i" 1 dd if="$c" of=/dev/null bs=4M
		fi
		# kept for the warm pair below: the first and the last clone
		[ "$i" = 1 ] || [ "$i" = "$CLASS_N" ] || rm -f "$c"
	done
	record size class all "$(dusize "$repo")"
	# the same first and later clone with a warm page cache (the clone
	# just written, as on a host that made it), into a fresh repository
	rm -rf "$repo" "$XDG_CACHE_HOME/vmb"
	"$VMB" init "$repo" --cipher "$CIPHER" >/dev/null
	(CAN_DROP=0 IMG=$OUT/pc1.vdi
	 measure class warm-first 1 "$VMB" backup "$repo" "$OUT/pc1.vdi" --vm pc1 --json
	 IMG=$OUT/pc$CLASS_N.vdi
	 measure class warm-later 1 "$VMB" backup "$repo" "$OUT/pc$CLASS_N.vdi" --vm "pc$CLASS_N" --json) || exit 1
	rm -rf "$repo" "$raw" "$OUT"/pc*.vdi
}

# small business night: five VMs of mixed formats (qcow2, VMDK, VDI, raw,
# qcow2), a first night (full) and a second night after 1% changes each.
run_night() {
	local repo=$OUT/repo-night i f fmts=(qcow2 vmdk vdi raw qcow2) night
	rm -rf "$repo" "$XDG_CACHE_HOME/vmb"
	"$VMB" init "$repo" --cipher "$CIPHER" >/dev/null
	log "small business night: five VMs of $NIGHT_MIB MiB, mixed formats"
	for i in 0 1 2 3 4; do
		"$OUT/gen" create "$OUT/vm$i.raw" "$NIGHT_MIB" $((SEED + 200 + i)) 2>/dev/null
	done
	for night in 1 2; do
		for i in 0 1 2 3 4; do
			f=${fmts[$i]}
			[ "$night" = 2 ] && "$OUT/gen" modify "$OUT/vm$i.raw" $((SEED + 300 + i)) 1 mixed 2>/dev/null
			if [ "$f" = raw ]; then cp --sparse=always "$OUT/vm$i.raw" "$OUT/vm$i.img"
			else qemu-img convert -f raw -O "$f" "$OUT/vm$i.raw" "$OUT/vm$i.img"; fi
		done
		sync; sleep 2
		measure night "night-$night" 1 bash -c 'for i in 0 1 2 3 4; do "$0" backup "$1" "$2/vm$i.img" --vm "vm$i" --json || exit 1; done' \
			"$VMB" "$repo" "$OUT"
		record size night "night-$night" "$(dusize "$repo")"
	done
	rm -rf "$repo" "$OUT"/vm?.raw "$OUT"/vm?.img
}
