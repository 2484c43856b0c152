# `vmb backup` derives the key (Argon2id) on a thread while it reads and
# compresses the first chunks of the first image (vmb_repo_open_async,
# vmb_repo_prefetch; docs/design-notes/kdf-overlap.md):
#  - with a slow key derivation the backup stores prefetched chunks
#    ("precompressed_chunks" > 0) and restores to the same bytes;
#  - the same chunks and indexes as without the overlap (VMB_NO_KDF_OVERLAP)
#    in a copy of the same repository (same key);
#  - the first backup into an empty repository prefetches without --full,
#    an incremental does not;
#  - a wrong or missing passphrase: the same exit code and one-line message
#    as the synchronous open, and nothing written to the repository.
. "$TESTLIB"
command -v python3 >/dev/null || skip "python3 is needed"
R=$T/repo
IMG=$T/disk.raw
# 40 MiB: random, text, a hole, a repeated chunk, a short tail
python3 - "$IMG" <<'PY'
import random, sys
r = random.Random(15)
M = 1 << 20
with open(sys.argv[1], "wb") as f:
    f.write(bytes(r.getrandbits(8) for _ in range(M)) * 4)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"vmbackup", b"\n"]
    text = b" ".join(r.choice(words) for _ in range(3 * M // 5))[:12 * M]
    f.write(text.ljust(12 * M, b"."))
    f.seek(24 * M)
    f.write(text[:4 * M])
    f.write(text[:4 * M])
    f.write(b"tail" * 1000)
PY
# slow enough that the prefetch gets to work before the key is there
VMB_KDF_OPSLIMIT=8 VMB_KDF_MEMLIMIT=67108864 "$VMB" init "$R" >/dev/null ||
	bad "init"
cp -a "$R" "$T/repo2"
cp -a "$R" "$T/repo3"
cp -a "$R" "$T/repo4"

objects() { (cd "$1" && find . -type f | sort | xargs md5sum); }

"$VMB" backup "$R" "$IMG" --full --vm v --json >"$T/a.json" 2>"$T/a.err" ||
	bad "backup with the overlap: $(cat "$T/a.err")"
n=$(json_field "$T/a.json" precompressed_chunks)
if [ "${n:-0}" -gt 0 ]; then ok "prefetched chunks stored: $n"
else bad "no prefetched chunk was used: $(cat "$T/a.json")"; fi
snap=$(json_field "$T/a.json" snapshot)
rm -rf "$T/rs"
if "$VMB" restore "$R" "$snap" --to "$T/rs" --format raw >/dev/null 2>"$T/rerr" &&
	cmp "$T/rs/"* "$IMG"; then ok "restore equals the image"
else bad "restore differs: $(cat "$T/rerr")"; fi
check "check passes" "$VMB" check "$R" >/dev/null

# its own chunk cache: the copy has the same repository id
XDG_CACHE_HOME=$T/cache2 VMB_NO_KDF_OVERLAP=1 "$VMB" backup "$T/repo2" "$IMG" --full --vm v --json \
	>"$T/b.json" 2>"$T/b.err" || bad "backup without the overlap"
check "no prefetch with VMB_NO_KDF_OVERLAP" \
	[ "$(json_field "$T/b.json" precompressed_chunks)" = 0 ]
for f in chunks_new bytes_new bytes_read chunks_zero; do
	check "same $f" [ "$(json_field "$T/a.json" $f)" = \
		"$(json_field "$T/b.json" $f)" ]
done
names() { (cd "$1" && find chunks indexes -type f 2>/dev/null | sort); }
if [ -n "$(names "$R")" ] && [ "$(names "$R")" = "$(names "$T/repo2")" ]
then ok "same chunk and index names with and without the overlap"
else bad "chunk sets differ: $(diff <(names "$R") <(names "$T/repo2") | head -5)"; fi

# the first backup into an empty repository reads every chunk: it
# prefetches without --full; a later one without --full does not (an
# incremental may read nothing)
XDG_CACHE_HOME=$T/cache4 "$VMB" backup "$T/repo4" "$IMG" --vm v --json \
	>"$T/c.json" 2>"$T/c.err" || bad "first backup: $(cat "$T/c.err")"
n=$(json_field "$T/c.json" precompressed_chunks)
if [ "${n:-0}" -gt 0 ]; then ok "first backup without --full prefetched: $n"
else bad "the first backup did not prefetch: $(cat "$T/c.json")"; fi
XDG_CACHE_HOME=$T/cache4 "$VMB" backup "$T/repo4" "$IMG" --vm v --json \
	>"$T/d.json" 2>"$T/d.err" || bad "second backup: $(cat "$T/d.err")"
check "no prefetch for an incremental" \
	[ "$(json_field "$T/d.json" precompressed_chunks)" = 0 ]
check "the incremental stores nothing new" \
	[ "$(json_field "$T/d.json" chunks_new)" = 0 ]

# a wrong passphrase: as the synchronous open, nothing written
before=$(objects "$T/repo3")
VMB_NO_KDF_OVERLAP=1 VMB_PASSPHRASE=wrong "$VMB" backup "$T/repo3" "$IMG" --full \
	>/dev/null 2>"$T/sync.err"
sync_rc=$?
expect_exit "$sync_rc" "wrong passphrase with the overlap" \
	env VMB_PASSPHRASE=wrong "$VMB" backup "$T/repo3" "$IMG" --full
check "exit 1 for a wrong passphrase" [ "$sync_rc" = 1 ]
one_line "wrong passphrase"
if cmp -s "$T/err" "$T/sync.err"; then ok "same message: $(cat "$T/err")"
else bad "message differs: '$(cat "$T/err")' vs '$(cat "$T/sync.err")'"; fi
check "nothing written on a wrong passphrase" \
	[ "$before" = "$(objects "$T/repo3")" ]
# the same without --full: an empty repository prefetches too
expect_exit 1 "wrong passphrase, first backup without --full" \
	env VMB_PASSPHRASE=wrong "$VMB" backup "$T/repo3" "$IMG"
check "same message without --full" cmp -s "$T/err" "$T/sync.err"
check "nothing written on a wrong passphrase without --full" \
	[ "$before" = "$(objects "$T/repo3")" ]
# no passphrase at all (stdin not a terminal): known before any KDF
expect_exit 1 "no passphrase" env -u VMB_PASSPHRASE "$VMB" backup \
	"$T/repo3" "$IMG" --full </dev/null
grep -q "a passphrase is needed" "$T/err" && ok "no passphrase: asked for" ||
	bad "no passphrase: $(cat "$T/err")"
check "nothing written without a passphrase" \
	[ "$before" = "$(objects "$T/repo3")" ]
finish
