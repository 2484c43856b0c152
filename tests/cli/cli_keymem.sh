# Keys never reach a core dump or a log (issue 14, docs/threat-model.md).
# vmb is stopped under gdb at a kill point (VMB_KILL_AT, docs/reliability.md)
# in the middle of its work, with the repository open and the keys in use;
# then:
#  - the mappings that hold the master key and each derived key are all
#    MADV_DONTDUMP ("dd" in /proc/PID/smaps: libsodium's sodium_malloc);
#  - gdb's core file (gcore honours MADV_DONTDUMP) and the kernel's core
#    after a SIGABRT hold none of the keys, nor the passphrase;
#  - a control core with gdb's dump-excluded-mappings on does hold the
#    master key: the search works and the key was in memory;
#  - stdout, stderr, --log-file, the kill trace, the cache folder and
#    every file in the repository hold none of them (raw bytes or hex).
# The keys come from tests/lib/keydump.c (the key file unwrapped with the
# passphrase; the library has no way to print a key).
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608 VMB_THREADS=2
command -v gdb >/dev/null || skip "gdb is needed (scripts/install-deps.sh test)"
command -v python3 >/dev/null || skip "python3 is needed"
KEYDUMP=$BUILDDIR/tests/vmb-test-keydump
[ -x "$KEYDUMP" ] || skip "$KEYDUMP is not built"
unset VMB_PASSPHRASE
PASSF=$T/passphrase
printf 'keymem passphrase 7f3a\n' >"$PASSF"
PASSF2=$T/passphrase2
printf 'second keymem passphrase 9c1e\n' >"$PASSF2"

IMG=$T/a.img
truncate -s 2M "$IMG"
head -c 600000 /dev/urandom | dd of="$IMG" conv=notrunc status=none
R=$T/r
expect_exit 0 "init" "$VMB" init "$R" --chunk-size 64K --passphrase-file "$PASSF"
expect_exit 0 "backup 1" "$VMB" backup "$R" "$IMG" --vm web1 --passphrase-file "$PASSF"
VMB_PASSPHRASE=$(head -1 "$PASSF") "$KEYDUMP" "$R/keys/default" >"$T/keys" ||
	{ bad "keydump"; finish; }
check "keydump: master, derived and export keys" test "$(wc -l <"$T/keys")" = 11
# a self-contained encrypted archive: its own random key, wrapped
APASSF=$T/archive-passphrase
printf 'archive keymem passphrase 21d0\n' >"$APASSF"
expect_exit 0 "export (self-contained, encrypted)" "$VMB" export "$R" latest "$T/web1.tar" \
	--passphrase-file "$PASSF" --archive-passphrase-file "$APASSF"
VMB_PASSPHRASE=$(head -1 "$APASSF") "$KEYDUMP" --archive "$T/web1.tar" >>"$T/keys" ||
	bad "keydump --archive"
check "keydump: the archive key" grep -q "^archive " "$T/keys"
for f in "$PASSF" "$PASSF2" "$APASSF"; do # the passphrases are secrets too
	echo "passphrase-$(basename "$f") $(head -1 "$f" | tr -d '\n' | od -An -tx1 | tr -d ' \n')"
done >"$T/secrets"
cat "$T/keys" >>"$T/secrets"

# find_secrets FILE...: prints where a secret occurs (bytes or hex)
find_secrets() {
	python3 - "$T/secrets" "$@" <<'PY'
import mmap, sys
secrets = [l.split() for l in open(sys.argv[1])]
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        try:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            continue
        for name, h in secrets:
            k = bytes.fromhex(h)
            for form, pat in (("bytes", k), ("hex", h.encode()),
                              ("HEX", h.upper().encode())):
                i = m.find(pat)
                if i >= 0:
                    print("%s: %s (%s) at offset %d" % (path, name, form, i))
PY
}

# crashed NAME OPS CMD...: runs CMD (with @R@ for the repository) once
# with a trace on a copy to count its OPS operations, then under gdb from
# the same state, stopped at the last of them; checks as said above.
crashed() {
	local name=$1 ops=$2; shift 2
	local n cw=$T/cw-$name
	# the copy has the same repository id: it gets its own cache too,
	# or the real run would believe the copy's chunks are stored
	rm -rf "$T/copy" "$T/copy-cache"; cp -a "$R" "$T/copy"
	[ -d "$XDG_CACHE_HOME" ] && cp -a "$XDG_CACHE_HOME" "$T/copy-cache"
	rm -f "$T/trace"
	XDG_CACHE_HOME=$T/copy-cache VMB_KILL_TRACE=$T/trace VMB_KILL_OPS=$ops \
		"${@//@R@/$T/copy}" >/dev/null 2>&1
	n=$(wc -l <"$T/trace" 2>/dev/null || echo 0)
	if [ "$n" -lt 1 ]; then bad "$name: no $ops operation traced"; return; fi
	mkdir -p "$cw"
	( ulimit -c unlimited; cd "$cw" &&
	  KEYMEM_KEYS=$T/keys VMB_KILL_AT=$n VMB_KILL_OPS=$ops \
	  VMB_KILL_TRACE=$cw/trace timeout 300 gdb -nx -batch \
		-ex 'set pagination off' -ex 'break raise' -ex run \
		-ex "python exec(open('$SRCDIR/tests/lib/keymem_gdb.py').read())" \
		-ex "generate-core-file $cw/gcore" \
		-ex 'set dump-excluded-mappings on' \
		-ex "generate-core-file $cw/gcore-all" \
		-ex 'signal SIGABRT' \
		--args "${@//@R@/$R}" --log-file "$cw/log" -v \
		>"$cw/gdb.out" 2>"$cw/gdb.err" )
	if ! grep -Eq "(^|hit )Breakpoint 1, .*raise" "$cw/gdb.out"; then
		bad "$name: did not stop at kill point $n: $(tail -3 "$cw/gdb.out")"
		return
	fi
	ok "$name: stopped at kill point $n ($(tail -1 "$cw/trace"))"
	check "$name: the master key is in memory" grep -q "^key master in " "$cw/gdb.out"
	if grep "^key " "$cw/gdb.out" | grep -v " not in memory" | grep -Ev "flags .*\bdd\b" >"$cw/dumpable"; then
		bad "$name: key bytes in a dumpable mapping: $(head -3 "$cw/dumpable")"
	else
		ok "$name: every mapping holding a key is MADV_DONTDUMP ($(grep -c '^key .* in ' "$cw/gdb.out") found)"
	fi
	grep "^key master in " "$cw/gdb.out" | grep -Eq "flags .*\blo\b" &&
		echo "# $name: the key pages are mlock()ed too" ||
		echo "# $name: the key pages are not mlock()ed (RLIMIT_MEMLOCK; best effort)"
	find_secrets "$cw/gcore-all" >"$cw/control"
	check "$name: the search finds the master key in the control core" grep -q ": master (bytes)" "$cw/control"
	rm -f "$cw/gcore-all"
	check "$name: gdb wrote a core" test -s "$cw/gcore"
	local cores=("$cw/gcore")
	local kcore; kcore=$(ls "$cw"/core* 2>/dev/null | head -1)
	if [ -n "$kcore" ]; then
		ok "$name: the kernel wrote a core on SIGABRT ($(basename "$kcore"))"
		cores+=("$kcore")
	else
		echo "# $name: no kernel core (core_pattern is '$(cat /proc/sys/kernel/core_pattern)'): gdb's core only"
	fi
	find_secrets "${cores[@]}" >"$cw/found"
	check "$name: no key or passphrase in the core files" test ! -s "$cw/found"
	[ -s "$cw/found" ] && head -5 "$cw/found" >&2
	rm -f "${cores[@]}"
	find_secrets "$cw/log" "$cw/trace" "$cw/gdb.err" $(find "$R" "$XDG_CACHE_HOME" -type f 2>/dev/null) >"$cw/found-files"
	check "$name: no key or passphrase in logs, trace, cache or repository" test ! -s "$cw/found-files"
	[ -s "$cw/found-files" ] && head -5 "$cw/found-files" >&2
}

head -c 300000 /dev/urandom | dd of="$IMG" bs=64K seek=8 conv=notrunc status=none
crashed backup put "$VMB" backup @R@ "$IMG" --vm web1 --passphrase-file "$PASSF"
# the new passphrase is in use (being wrapped) at that point: the CLI
# holds it in vmb_secret_strdup() memory, out of the cores
crashed change-passphrase put "$VMB" key change-passphrase @R@ --passphrase-file "$PASSF" --new-passphrase-file "$PASSF2"

# import of that archive, stopped at its last put into the repository
# (the archive's stream state and its passphrase are in use then)
crashed import put "$VMB" import @R@ "$T/web1.tar" --vm web1b \
	--passphrase-file "$PASSF2" --archive-passphrase-file "$APASSF"

# the untouched commands still work with the keys
# killed after its put: the new passphrase opens the repository
expect_exit 0 "check after the crashes" "$VMB" check "$R" --passphrase-file "$PASSF2"
finish
