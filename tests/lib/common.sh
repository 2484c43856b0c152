# Shared helpers for shell tests.  Source with: . "$TESTLIB"
set -u
: "${VMB:?VMB must point at the vmb binary}"
T=$(mktemp -d "${TMPDIR:-/tmp}/vmbsh.XXXXXX")
PASS=0
FAIL=0
cleanup_hooks=()
on_exit() {
	for h in "${cleanup_hooks[@]}"; do eval "$h" || true; done
	[ -n "${VMB_KEEP_TMP:-}" ] || rm -rf "$T"
}
trap on_exit EXIT
export VMB_PASSPHRASE=${VMB_PASSPHRASE:-test-passphrase}
export XDG_CACHE_HOME="$T/cache"

ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $*" >&2; }
# check DESCRIPTION COMMAND...: passes when the command succeeds
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
# expect_exit CODE DESCRIPTION COMMAND...: runs, captures stderr in $T/err
expect_exit() {
	local want=$1 d=$2; shift 2
	"$@" >"$T/out" 2>"$T/err"
	local got=$?
	if [ "$got" = "$want" ]; then ok "$d (exit $got)"; else
		bad "$d: exit $got, want $want; stderr: $(head -c 500 "$T/err")"; fi
}
# one_line: stderr of the last expect_exit is exactly one line starting vmb:
one_line() {
	local n; n=$(wc -l <"$T/err")
	if [ "$n" = 1 ] && grep -q '^vmb: ' "$T/err"; then ok "$1: one-line error: $(cat "$T/err")"
	else bad "$1: stderr is not one vmb: line: $(head -c 500 "$T/err")"; fi
}
skip() { echo "SKIP: $*"; exit 77; }
finish() {
	echo "$PASS passed, $FAIL failed"
	[ "$FAIL" = 0 ] && [ "$PASS" -gt 0 ]
	exit $?
}
json_field() { # json_field FILE NAME -> value of a top-level scalar
	python3 - "$1" "$2" <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
v=d[sys.argv[2]]
print(json.dumps(v) if isinstance(v,(dict,list)) else v)
PY
}
