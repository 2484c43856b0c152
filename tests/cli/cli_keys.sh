#!/bin/bash
# vmb key change-passphrase / add / export: the old passphrase stops
# working, the new one works, data objects are byte-for-byte untouched,
# added keys open the repository, and an exported key file restores access.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
export VMB_PASSPHRASE=old-pass
unset VMB_NEW_PASSPHRASE
R=$T/repo

# a listing of every data object with its hash
data_sums() { (cd "$R" && find chunks indexes snapshots -type f -print0 | sort -z | xargs -0 sha256sum); }
nsnaps() { "$VMB" snapshots "$R" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

"$VMB" init "$R" >/dev/null
head -c 2M /dev/urandom >"$T/disk.img"
truncate -s 8M "$T/disk.img"
"$VMB" backup "$R" "$T/disk.img" --vm keyvm >/dev/null
check "backup before key changes" test "$(nsnaps)" = 1
data_sums >"$T/sums.before"
check "data listing is not empty" test -s "$T/sums.before"

# --help is man-page quality
"$VMB" key --help >"$T/help"
check "key --help has SYNOPSIS" grep -q SYNOPSIS "$T/help"
check "key --help names VMB_NEW_PASSPHRASE" grep -q VMB_NEW_PASSPHRASE "$T/help"

# usage errors
expect_exit 2 "key without a subcommand" "$VMB" key
expect_exit 2 "unknown key subcommand" "$VMB" key frobnicate "$R"
expect_exit 2 "key export without FILE" "$VMB" key export "$R"

# export the current key file first, for the restore test below
expect_exit 0 "key export" "$VMB" key export "$R" "$T/key.backup" --json
check "key export --json names keys/default" grep -q '"key":"keys/default"' "$T/out"
check "exported key is mode 0600" test "$(stat -c %a "$T/key.backup")" = 600
check "exported key equals keys/default" cmp -s "$T/key.backup" "$R/keys/default"
expect_exit 1 "key export refuses to overwrite" "$VMB" key export "$R" "$T/key.backup"
one_line "key export over a file"

# change-passphrase without a new passphrase and no terminal
expect_exit 1 "change-passphrase without a new passphrase" \
	"$VMB" key change-passphrase "$R" </dev/null
one_line "change-passphrase without a new passphrase"

# change-passphrase with a wrong current passphrase
VMB_PASSPHRASE=wrong VMB_NEW_PASSPHRASE=x expect_exit 1 \
	"change-passphrase with the wrong current passphrase" \
	"$VMB" key change-passphrase "$R"
check "keys/default unchanged after a refused change" cmp -s "$T/key.backup" "$R/keys/default"

# the change itself
VMB_NEW_PASSPHRASE=new-pass expect_exit 0 "change-passphrase" \
	"$VMB" key change-passphrase "$R" --json
check "change-passphrase --json" grep -q '"action":"change-passphrase"' "$T/out"
expect_exit 1 "old passphrase fails after the change" "$VMB" snapshots "$R"
one_line "old passphrase"
VMB_PASSPHRASE=new-pass expect_exit 0 "new passphrase works" "$VMB" snapshots "$R"
data_sums >"$T/sums.after"
check "chunks/, indexes/, snapshots/ byte-for-byte untouched" cmp -s "$T/sums.before" "$T/sums.after"
VMB_PASSPHRASE=new-pass "$VMB" restore "$R" latest --to "$T/r1" >/dev/null
check "restore with the new passphrase is identical" cmp -s "$T/r1/disk.img" "$T/disk.img"

# new passphrase from a file
printf 'file-pass\n' >"$T/newpass"
VMB_PASSPHRASE=new-pass expect_exit 0 "change-passphrase --new-passphrase-file" \
	"$VMB" key change-passphrase "$R" --new-passphrase-file "$T/newpass"
VMB_PASSPHRASE=file-pass expect_exit 0 "passphrase from the file works" "$VMB" snapshots "$R"
VMB_PASSPHRASE=new-pass expect_exit 1 "previous passphrase fails" "$VMB" snapshots "$R"

# key add: both open
VMB_PASSPHRASE=file-pass VMB_NEW_PASSPHRASE=second-pass expect_exit 0 "key add" \
	"$VMB" key add "$R" --json
check "key add --json names the new key file" grep -Eq '"key":"keys/[0-9a-f]{16}"' "$T/out"
added=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$T/out")
check "added key file exists" test -f "$R/$added"
VMB_PASSPHRASE=file-pass expect_exit 0 "first passphrase still opens" "$VMB" snapshots "$R"
VMB_PASSPHRASE=second-pass expect_exit 0 "added passphrase opens" "$VMB" snapshots "$R"
VMB_PASSPHRASE=second-pass "$VMB" backup "$R" "$T/disk.img" --vm keyvm >/dev/null
check "backup with the added passphrase" test "$(VMB_PASSPHRASE=file-pass nsnaps)" = 2
# changing the added key's passphrase rewrites that file only
cp "$R/keys/default" "$T/default.before-add-change"
VMB_PASSPHRASE=second-pass VMB_NEW_PASSPHRASE=third-pass expect_exit 0 \
	"change the added key's passphrase" "$VMB" key change-passphrase "$R"
check "keys/default untouched by changing another key" cmp -s "$T/default.before-add-change" "$R/keys/default"
VMB_PASSPHRASE=third-pass expect_exit 0 "third passphrase opens" "$VMB" snapshots "$R"
VMB_PASSPHRASE=second-pass expect_exit 1 "second passphrase no longer opens" "$VMB" snapshots "$R"
VMB_PASSPHRASE=file-pass expect_exit 0 "default key still opens" "$VMB" snapshots "$R"

# restore access from the exported key file
cp "$T/key.backup" "$R/keys/default"
VMB_PASSPHRASE=old-pass expect_exit 0 "exported key file restores the old passphrase" "$VMB" snapshots "$R"
VMB_PASSPHRASE=old-pass "$VMB" restore "$R" latest --to "$T/r2" >/dev/null
check "restore after putting the exported key back" cmp -s "$T/r2/disk.img" "$T/disk.img"
data_sums >"$T/sums.end"
check "every data object from before is still byte-for-byte the same" \
	test -z "$(comm -23 <(sort "$T/sums.before") <(sort "$T/sums.end"))"

# unencrypted repositories have no passphrase
"$VMB" init --encryption none "$T/plain" >/dev/null
VMB_NEW_PASSPHRASE=x expect_exit 1 "change-passphrase on an unencrypted repository" \
	"$VMB" key change-passphrase "$T/plain"
one_line "unencrypted change-passphrase"
VMB_NEW_PASSPHRASE=x expect_exit 1 "key add on an unencrypted repository" \
	"$VMB" key add "$T/plain"
finish
