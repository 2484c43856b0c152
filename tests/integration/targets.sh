#!/bin/bash
# Storage backends against real servers: starts s3rver and nfs-ganesha
# (tests/services/), runs the contract suite (test_target_contract) on the
# S3, NFSv3 and NFSv4 URLs, then injects faults: a wrong access key, a
# missing bucket, a missing NFS export, a server answering 500 (retries
# recover), a stalled server (timeouts fire), and servers killed mid-run.
# A service that cannot start fails the test (the packages are part of
# the project's setup); nothing here is skipped.
. "$TESTLIB"
SVC=$SRCDIR/tests/services
BIN=$BUILDDIR/tests/test_target_contract
[ -x "$BIN" ] || { bad "contract binary $BIN missing (build it)"; finish; }
D=$T/svc
mkdir -p "$D"
PROXY_PIDS=()
stop_all() {
	for p in "${PROXY_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	"$SVC/s3.sh" stop "$D/kill" >/dev/null 2>&1
	"$SVC/s3.sh" stop "$D"
	"$SVC/nfs.sh" stop "$D"
}
cleanup_hooks+=("stop_all")

if ! "$SVC/s3.sh" start "$D"; then
	bad "the S3 server (s3rver) did not start; see above"
	finish
fi
if ! "$SVC/nfs.sh" start "$D"; then
	bad "the NFS server (nfs-ganesha) did not start; see above"
	finish
fi
. "$D/env"
echo "S3:   $VMB_TEST_S3_URL"
echo "NFS3: $VMB_TEST_NFS3_URL"
echo "NFS4: $VMB_TEST_NFS4_URL"

# ---- the contract on every backend (bounded by timeout) ----
timeout 900 "$BIN" >"$T/contract.out" 2>&1
rc=$?
grep '^#' "$T/contract.out"
if [ $rc = 0 ]; then ok "contract: local, S3, NFSv3, NFSv4 ($(tail -1 "$T/contract.out"))"
else bad "contract suite failed (exit $rc): $(grep -v '^#' "$T/contract.out" | head -20)"; fi

# probe_ok DESC VAR=VALUE... URL: the probe must succeed
# probe_fails DESC PATTERN... -- VAR=VALUE... URL: the probe must fail
# within 60 s with one error line naming the URL and matching every pattern
probe_fails() {
	local desc=$1; shift
	local pats=()
	while [ "$1" != -- ]; do pats+=("$1"); shift; done
	shift
	local url=${*: -1} start end rc n
	start=$(date +%s)
	env "${@:1:$#-1}" timeout 60 "$BIN" --probe "$url" 0 >"$T/out" 2>"$T/err" &&
		rc=0 || rc=$?
	end=$(date +%s)
	n=$(wc -l <"$T/err")
	if [ $rc != 1 ]; then bad "$desc: exit $rc (want 1): $(head -c 400 "$T/err")"; return; fi
	if [ "$n" != 1 ]; then bad "$desc: $n error lines: $(head -c 400 "$T/err")"; return; fi
	if ! grep -qF "$url" "$T/err"; then bad "$desc: error does not name $url: $(cat "$T/err")"; return; fi
	for p in "${pats[@]}"; do
		grep -qiE "$p" "$T/err" || { bad "$desc: error lacks /$p/: $(cat "$T/err")"; return; }
	done
	ok "$desc ($((end - start)) s): $(cat "$T/err")"
}
probe_ok() {
	local desc=$1; shift
	if env "${@:1:$#-1}" timeout 120 "$BIN" --probe "${@: -1}" 0 >"$T/out" 2>"$T/err"; then
		ok "$desc"
	else
		bad "$desc: $(head -c 400 "$T/err")"
	fi
}

FAST="VMB_S3_RETRIES=2 VMB_S3_RETRY_DELAY_MS=20 VMB_S3_CONNECT_TIMEOUT=2 VMB_S3_LOW_SPEED_TIME=2"

# ---- S3 faults ----
probe_fails "S3 wrong access key" "403" "access denied" "InvalidAccessKeyId" -- \
	AWS_ACCESS_KEY_ID=WRONGKEY $FAST "$VMB_TEST_S3_URL"
probe_fails "S3 missing bucket" "bucket nosuchbucket does not exist" -- \
	$FAST "s3:http://127.0.0.1:$VMB_TEST_S3_PORT/nosuchbucket/repo"
probe_fails "S3 no credentials" "credentials" -- \
	AWS_ACCESS_KEY_ID= $FAST "$VMB_TEST_S3_URL"
probe_fails "S3 nothing listening" "cannot connect to 127.0.0.1" -- \
	$FAST "s3:http://127.0.0.1:$(bash -c ". $SVC/lib.sh; free_port")/bkt/x"

start_proxy() { # start_proxy NAME ARGS... -> sets PROXY_PORT
	local name=$1 i; shift
	python3 "$SVC/faultproxy.py" --upstream "127.0.0.1:$VMB_TEST_S3_PORT" \
		--port-file "$D/$name.port" "$@" >"$D/$name.log" 2>&1 </dev/null &
	PROXY_PIDS+=($!)
	for ((i = 0; i < 100; i++)); do [ -s "$D/$name.port" ] && break; sleep 0.1; done
	PROXY_PORT=$(cat "$D/$name.port" 2>/dev/null)
	[ -n "$PROXY_PORT" ] || bad "fault proxy $name did not start: $(cat "$D/$name.log")"
}
purl() { echo "s3:http://127.0.0.1:$1/$VMB_TEST_S3_BUCKET/viaproxy"; }

start_proxy p500 --fail-first 3
probe_ok "S3 500 x3 then fine: retries recover" VMB_S3_RETRIES=5 \
	VMB_S3_RETRY_DELAY_MS=20 "$(purl "$PROXY_PORT")"
start_proxy p500b --fail-first 1000
probe_fails "S3 always 500: bounded retries, one line" "HTTP 500" "InternalError" "3 attempts" -- \
	$FAST "$(purl "$PROXY_PORT")"
start_proxy p503 --fail-first 2 --status 503
probe_ok "S3 503 x2 then fine" VMB_S3_RETRIES=3 VMB_S3_RETRY_DELAY_MS=20 "$(purl "$PROXY_PORT")"
start_proxy p429 --fail-first 2 --status 429
probe_ok "S3 429 x2 then fine" VMB_S3_RETRIES=3 VMB_S3_RETRY_DELAY_MS=20 "$(purl "$PROXY_PORT")"
start_proxy pslow --delay 0.3
probe_ok "S3 slow (0.3 s per answer) but alive" $FAST "$(purl "$PROXY_PORT")"
start_proxy pstall --stall
probe_fails "S3 stalled mid-answer: timeout, no hang" "timed out" -- \
	VMB_S3_RETRIES=1 VMB_S3_RETRY_DELAY_MS=20 VMB_S3_LOW_SPEED_TIME=2 "$(purl "$PROXY_PORT")"
start_proxy p403 --fail-first 1000 --status 403
probe_fails "S3 403 is not retried" "access denied" "HTTP 403" -- \
	VMB_S3_RETRIES=5 VMB_S3_RETRY_DELAY_MS=2000 "$(purl "$PROXY_PORT")"

# S3 server killed mid-run: a second s3rver, a probe running for 20 s,
# killed after 2 s: one clear line, quickly
if "$SVC/s3.sh" start "$D/kill" >/dev/null; then
	KURL=$(. "$D/kill/env"; echo "$VMB_TEST_S3_URL")
	start=$(date +%s)
	env VMB_S3_RETRIES=2 VMB_S3_RETRY_DELAY_MS=50 VMB_S3_CONNECT_TIMEOUT=2 \
		VMB_S3_LOW_SPEED_TIME=2 timeout 60 "$BIN" --probe "$KURL" 20 \
		>"$T/out" 2>"$T/err" &
	ppid_=$!
	sleep 2
	"$SVC/s3.sh" stop "$D/kill"
	wait $ppid_; rc=$?
	end=$(date +%s)
	if [ $rc = 1 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -qF "$KURL" "$T/err" &&
		grep -qE "cannot connect|server|timed out" "$T/err" && [ $((end - start)) -lt 30 ]; then
		ok "S3 server killed mid-run: exit 1 in $((end - start)) s: $(cat "$T/err")"
	else
		bad "S3 server killed mid-run: exit $rc after $((end - start)) s: $(head -c 400 "$T/err")"
	fi
else
	bad "second s3rver did not start"
fi

# ---- NFS faults ----
probe_fails "NFSv3 missing export" "export /no/such/export not found on 127.0.0.1" -- \
	"nfs://127.0.0.1/no/such/export?version=3&nfsport=$VMB_TEST_NFS_PORT&mountport=$VMB_TEST_NFS_MOUNT_PORT"
probe_fails "NFSv4 missing export" "export /nosuch not found on 127.0.0.1" -- \
	"nfs://127.0.0.1/nosuch/repo?version=4&nfsport=$VMB_TEST_NFS_PORT"
probe_fails "NFS nothing listening" "cannot connect to nfs server 127.0.0.1" -- \
	"nfs://127.0.0.1/x/y?version=3&nfsport=1&mountport=1"
# the repository folder inside the export is created on demand
probe_ok "NFSv3 deep folder created on demand" \
	"nfs://127.0.0.1$VMB_TEST_NFS_EXPORT/a/b/c/repo?version=3&nfsport=$VMB_TEST_NFS_PORT&mountport=$VMB_TEST_NFS_MOUNT_PORT"
[ -f "$VMB_TEST_NFS_EXPORT/a/b/c/repo/probe/obj0" ] &&
	ok "NFSv3 object landed in the export folder" ||
	bad "NFSv3 object not found under $VMB_TEST_NFS_EXPORT/a/b/c/repo"
# no temporary files left behind
left=$(find "$VMB_TEST_NFS_EXPORT" -name '*.tmp-*' | head -3)
[ -z "$left" ] && ok "no NFS temporary files left" || bad "NFS temporaries left: $left"

# NFS server killed mid-run (last: the server stays down)
start=$(date +%s)
env VMB_NFS_TIMEOUT=3 timeout 90 "$BIN" --probe "$VMB_TEST_NFS3_URL" 30 >"$T/out" 2>"$T/err" &
ppid_=$!
sleep 2
"$SVC/nfs.sh" stop "$D"
wait $ppid_; rc=$?
end=$(date +%s)
if [ $rc = 1 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -qF "$VMB_TEST_NFS3_URL" "$T/err" &&
	grep -q "nfs server 127.0.0.1" "$T/err" && [ $((end - start)) -lt 60 ]; then
	ok "NFS server killed mid-run: exit 1 in $((end - start)) s: $(cat "$T/err")"
else
	bad "NFS server killed mid-run: exit $rc after $((end - start)) s: $(head -c 400 "$T/err")"
fi
finish
