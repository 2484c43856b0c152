#!/bin/bash
# Start or stop an S3 server (s3rver, pinned in tests/package.json) for tests.
#   tests/services/s3.sh start DIR   -> state in DIR/s3, settings in DIR/env
#   tests/services/s3.sh stop DIR
# DIR/env gets VMB_TEST_S3_URL, VMB_TEST_S3_PORT, VMB_TEST_S3_BUCKET and the
# AWS_* credentials s3rver accepts (S3RVER / S3RVER).  Fails loudly when
# node or s3rver cannot be installed or started.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop DIR"
mkdir -p "$dir" || die "cannot create $dir"
dir=$(cd "$dir" && pwd)
BUCKET=${VMB_TEST_S3_BUCKET:-vmbtest}

start() {
	local tests=$HERE/.. port i
	command -v node >/dev/null || die "node is missing (apt-get install nodejs)"
	if [ ! -f "$tests/node_modules/s3rver/bin/s3rver.js" ]; then
		command -v npm >/dev/null || die "npm is missing (apt-get install npm)"
		# the lock file pins s3rver 3.7.1 and its dependencies
		timeout 600 npm ci --prefix "$tests" --no-audit --no-fund \
			>"$dir/npm.log" 2>&1 ||
			die "npm ci --prefix $tests failed: $(tail -3 "$dir/npm.log")"
	fi
	mkdir -p "$dir/s3/data"
	for i in 1 2 3; do
		port=$(free_port)
		[ -n "$port" ] || die "no free port"
		# --openssl-legacy-provider: s3rver encrypts its ListObjectsV2
		# continuation tokens with DES, which OpenSSL 3 only has in its
		# legacy provider (without it every truncated list is HTTP 500)
		node --openssl-legacy-provider \
			"$tests/node_modules/s3rver/bin/s3rver.js" -d "$dir/s3/data" -a 127.0.0.1 \
			-p "$port" --configure-bucket "$BUCKET" --silent \
			>"$dir/s3/log" 2>&1 </dev/null &
		echo $! >"$dir/s3/pid"
		if wait_port "$port" 20; then
			break
		fi
		stop_pid "$dir/s3/pid"
		port=
	done
	[ -n "$port" ] || die "s3rver did not start: $(tail -5 "$dir/s3/log")"
	# the bucket is ready once a list answers 200
	for ((i = 0; i < 100; i++)); do
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
			"http://127.0.0.1:$port/$BUCKET?list-type=2&max-keys=1" \
			--aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER \
			-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' 2>/dev/null)
		[ "$code" = 200 ] && break
		sleep 0.1
	done
	[ "$code" = 200 ] || die "s3rver bucket $BUCKET not ready (HTTP $code)"
	setenv "$dir/env" VMB_TEST_S3_PORT "$port"
	setenv "$dir/env" VMB_TEST_S3_BUCKET "$BUCKET"
	# s3rver stores objects in place (a reader racing a writer can see
	# part of an object, unlike S3): the contract test tolerates that only
	setenv "$dir/env" VMB_TEST_S3_SERVER s3rver
	setenv "$dir/env" VMB_TEST_S3_URL "s3:http://127.0.0.1:$port/$BUCKET/prefix"
	setenv "$dir/env" AWS_ACCESS_KEY_ID S3RVER
	setenv "$dir/env" AWS_SECRET_ACCESS_KEY S3RVER
	setenv "$dir/env" AWS_DEFAULT_REGION us-east-1
	echo "s3rver on 127.0.0.1:$port (pid $(cat "$dir/s3/pid")), bucket $BUCKET"
}

case $cmd in
start) start ;;
stop) stop_pid "$dir/s3/pid" ;;
*) die "usage: $0 start|stop DIR" ;;
esac
