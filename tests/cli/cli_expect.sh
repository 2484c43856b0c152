# vmb check --expect-snapshots / --expect-latest-within: what no
# authentication can show (whole snapshots deleted, the repository rolled
# back to an older copy, a nightly job that stopped) fails the check with
# exit 3 and one line naming the VM and what is missing or too old.
# Ages use snapshots made under a faked clock (faketime), no sleeps; the
# same rules against a given clock are in tests/unit/test_repo.c.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608

IMG=$T/a.img
truncate -s 1M "$IMG"
head -c 200000 /dev/urandom | dd of="$IMG" conv=notrunc status=none
R=$T/r
expect_exit 0 "init" "$VMB" init "$R" --chunk-size 64K
for i in 1 2 3; do
	expect_exit 0 "backup web1 #$i" "$VMB" backup "$R" "$IMG" --vm web1 --json
	eval "S$i=\$(json_field \"\$T/out\" snapshot)"
done
expect_exit 0 "backup db" "$VMB" backup "$R" "$IMG" --vm db

# usage
expect_exit 2 "bad count" "$VMB" check "$R" --expect-snapshots 0
expect_exit 2 "bad count (not a number)" "$VMB" check "$R" --expect-snapshots 3x
expect_exit 2 "bad age unit" "$VMB" check "$R" --expect-latest-within 26x
expect_exit 2 "bad age (negative)" "$VMB" check "$R" --expect-latest-within -5h
expect_exit 2 "--vm alone" "$VMB" check "$R" --vm web1

# counts
expect_exit 0 "web1 holds 3" "$VMB" check "$R" --expect-snapshots 3 --vm web1
expect_exit 0 "every VM holds 1" "$VMB" check "$R" --expect-snapshots 1
expect_exit 3 "db holds fewer than 2" "$VMB" check "$R" --expect-snapshots 2
one_line "db holds fewer than 2"
check "names db and the count" grep -q "VM db: 1 snapshot, expected at least 2" "$T/err"
check "problem line on stdout" grep -q "^problem: VM db: 1 snapshot" "$T/out"
check "web1 is not named" sh -c "! grep -q web1 '$T/out'"
expect_exit 3 "unknown VM" "$VMB" check "$R" --expect-snapshots 1 --vm nosuch
check "names the VM" grep -q "VM nosuch: no snapshot" "$T/err"

# a snapshot's manifest deleted on the target: authentication cannot see
# it, the expectation does
rm "$R/snapshots/$S2"
expect_exit 0 "manifest deleted: the plain check passes" "$VMB" check "$R"
expect_exit 3 "manifest deleted: --expect-snapshots 3 fails" "$VMB" check "$R" --expect-snapshots 3 --vm web1
one_line "manifest deleted"
check "names web1, 2 of 3" grep -q "VM web1: 2 snapshots, expected at least 3" "$T/err"
expect_exit 3 "manifest deleted: --json" "$VMB" check "$R" --expect-snapshots 3 --vm web1 --json
check "json: expect_ok false, fewest 2, the problem listed" python3 - "$T/out" <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
assert d["ok"] is False and d["expect_ok"] is False, d
assert d["expect_failures"] == 1 and d["fewest_snapshots"] == 2 and d["vms"] == 1, d
assert d["snapshots"] == 3 and d["errors"] == 1, d   # existing fields kept
assert any("VM web1: 2 snapshots" in p for p in d["problems"]), d
PY
expect_exit 0 "a fresh backup" "$VMB" backup "$R" "$IMG" --vm web1
expect_exit 0 "after a fresh backup: passes" "$VMB" check "$R" --expect-snapshots 3 --vm web1

# rolled back to an older copy of the whole repository
cp -a "$R" "$T/old"
expect_exit 0 "one more backup" "$VMB" backup "$R" "$IMG" --vm web1
expect_exit 0 "4 before the rollback" "$VMB" check "$R" --expect-snapshots 4 --vm web1
rm -rf "$R"; mv "$T/old" "$R"
expect_exit 0 "rolled back: the plain check passes" "$VMB" check "$R"
expect_exit 3 "rolled back: --expect-snapshots 4 fails" "$VMB" check "$R" --expect-snapshots 4 --vm web1
check "rolled back: names web1" grep -q "VM web1: 3 snapshots, expected at least 4" "$T/err"

# a damaged (replayed) manifest does not count as a snapshot
cp "$R/snapshots/$S1" "$R/snapshots/0123456789abcdef0123456789abcdef"
expect_exit 3 "replayed manifest: a problem, but 3 readable snapshots" "$VMB" check "$R" --expect-snapshots 3 --vm web1 --json
check "replayed: expect_ok true" python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d[\"expect_ok\"] and d[\"fewest_snapshots\"]==3, d" "$T/out"
expect_exit 3 "4 names (one replayed): --expect-snapshots 4 fails" "$VMB" check "$R" --expect-snapshots 4 --vm web1
rm "$R/snapshots/0123456789abcdef0123456789abcdef"

# ages: a nightly job that stopped, seen through a faked clock
if command -v faketime >/dev/null && faketime -f +1d true 2>/dev/null; then
	# faketime is an LD_PRELOAD library: under ASan it comes first
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
	expect_exit 0 "newest within 26h now" "$VMB" check "$R" --expect-latest-within 26h
	expect_exit 0 "in 25 hours: still within 26h" faketime -f +25h "$VMB" check "$R" --expect-latest-within 26h
	expect_exit 3 "in 3 days: older than 26h" faketime -f +3d "$VMB" check "$R" --expect-latest-within 26h --vm web1
	one_line "too old"
	check "names web1, the age and the limit" grep -Eq "VM web1: newest snapshot [0-9a-f]{32} is 3d old \(.* UTC\), expected within 26h" "$T/err"
	expect_exit 3 "in 3 days, every VM: both named" faketime -f +3d "$VMB" check "$R" --expect-latest-within 2d
	check "db and web1 on stdout" test "$(grep -c '^problem: VM .*expected within 2d' "$T/out")" = 2
	# a backup taken (by the clock) 3 days ago is the newest of a new VM
	expect_exit 0 "backup of vm old, 3 days ago" faketime -f -3d "$VMB" backup "$R" "$IMG" --vm old
	expect_exit 3 "old VM: older than 2d" "$VMB" check "$R" --expect-latest-within 2d
	check "only vm old is named" sh -c "grep -q 'VM old: newest snapshot' '$T/err' && test \$(grep -c '^problem:' '$T/out') = 1"
	expect_exit 0 "a fresh backup of vm old" "$VMB" backup "$R" "$IMG" --vm old
	expect_exit 0 "then every VM within 2d" "$VMB" check "$R" --expect-latest-within 2d --expect-snapshots 1
else
	echo "# faketime missing (scripts/install-deps.sh test): the age cases run in tests/unit/test_repo.c only"
fi

# an empty repository fails any expectation
expect_exit 0 "init empty" "$VMB" init "$T/empty"
expect_exit 0 "empty: plain check passes" "$VMB" check "$T/empty"
expect_exit 3 "empty: --expect-latest-within fails" "$VMB" check "$T/empty" --expect-latest-within 1d
check "says the repository holds none" grep -q "the repository holds no snapshot" "$T/err"
finish
