#!/bin/bash
# Output paths a new user types at 3 a.m.: a restore --to a folder whose
# parents do not exist (absolute, relative, trailing slash) creates the
# whole path with private modes; a file where a folder is expected is one
# clear line and exit 1; existing files are never overwritten.
. "$TESTLIB"
R=$T/repo
"$VMB" init "$R" --encryption none >/dev/null || { bad "init"; finish; }
python3 -c "import os; open('$T/web1.raw','wb').write(os.urandom(3<<20) + bytes(1<<20))"
"$VMB" backup "$R" "$T/web1.raw" --quiet || { bad "backup"; finish; }
expect_exit 0 "restore --to an absolute path whose parents are missing" \
	"$VMB" restore "$R" latest --to "$T/new/path/for/web1"
check "the image is right" cmp -s "$T/web1.raw" "$T/new/path/for/web1/web1.img"
check "created folders are private (0700)" \
	test "$(stat -c %a "$T/new")" = 700 -a "$(stat -c %a "$T/new/path/for/web1")" = 700
(cd "$T" && "$VMB" restore "$R" latest --to rel/a/b/ --quiet) >/dev/null 2>&1
check "a relative path with a trailing slash" cmp -s "$T/web1.raw" "$T/rel/a/b/web1.img"
check "a restore into an empty existing folder" sh -c "mkdir '$T/empty' && '$VMB' restore '$R' latest --to '$T/empty' --quiet"
touch "$T/afile"
expect_exit 1 "--to an existing file" "$VMB" restore "$R" latest --to "$T/afile"
one_line "--to an existing file"
expect_exit 1 "--to a path through a file" "$VMB" restore "$R" latest --to "$T/afile/sub/dir"
one_line "--to a path through a file"
check "the error names the file that is in the way" grep -q "afile is not a folder" "$T/err"
echo keep >"$T/new/path/for/web1/other.keep"
cp "$T/new/path/for/web1/web1.img" "$T/before"
expect_exit 1 "an existing image is never overwritten" "$VMB" restore "$R" latest --to "$T/new/path/for/web1"
one_line "an existing image is never overwritten"
check "and it is intact" cmp -s "$T/before" "$T/new/path/for/web1/web1.img"
expect_exit 0 "init of a repository in missing folders" "$VMB" init "$T/deep/er/repo" --encryption none
finish
