# A real full file system and a read-only target.
#  - a small tmpfs (made here; with no mount permission ENOSPC is covered
#    through the fault target, tests/cli/cli_faults.sh, and this part is
#    skipped with a message): a backup that does not fit fails with one
#    line naming the lack of space, exit 1; the repository checks and the
#    earlier snapshot restores; once space is back the backup completes;
#  - a read-only target (the same tmpfs remounted ro, or chmod as non-root):
#    one line, exit 1, nothing lost, and it checks once writable again.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
M=$T/mnt; mkdir -p "$M"
if ! mount -t tmpfs -o size=3m tmpfs "$M" 2>/dev/null; then
	skip "cannot mount a tmpfs here (not root, or no permission); ENOSPC is covered by cli_faults.sh"
fi
cleanup_hooks+=("umount '$M'")
R=$M/repo
python3 - "$T/small" "$T/big" <<'PY'
import random, sys
open(sys.argv[1], "wb").write(random.Random(1).randbytes(512 << 10))
open(sys.argv[2], "wb").write(random.Random(2).randbytes(4 << 20))
PY
expect_exit 0 "init on a 3 MiB tmpfs" "$VMB" init "$R" --chunk-size 64K
expect_exit 0 "a backup that fits" "$VMB" backup "$R" "$T/small" --vm a
restores() { # restores SNAP FILE
	rm -rf "$T/rs"; "$VMB" restore "$R" "$1" --to "$T/rs" >/dev/null 2>&1 && cmp -s "$T/rs/"*.img "$2"
}
expect_exit 1 "a backup that does not fit" "$VMB" backup "$R" "$T/big" --vm b
one_line "full file system"
check "the message names the lack of space" grep -qi "no space" "$T/err"
expect_exit 0 "check on the full file system" "$VMB" check "$R"
check "the earlier snapshot restores" restores a@latest "$T/small"
mount -o remount,size=16m "$M"
expect_exit 0 "with space back, the backup completes" "$VMB" backup "$R" "$T/big" --vm b
check "it restores" restores b@latest "$T/big"
expect_exit 0 "check" "$VMB" check "$R"

# read-only
mount -o remount,ro "$M"
expect_exit 1 "a backup to a read-only target" "$VMB" backup "$R" "$T/small" --vm c
one_line "read-only target"
check "the message says read-only" grep -qi "read-only" "$T/err"
expect_exit 0 "check on the read-only target" "$VMB" check "$R"
check "snapshots restore from the read-only target" restores a@latest "$T/small"
mount -o remount,rw "$M"
expect_exit 0 "writable again: a backup" "$VMB" backup "$R" "$T/small" --vm c
expect_exit 0 "check" "$VMB" check "$R"
finish
