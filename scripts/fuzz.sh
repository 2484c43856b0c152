#!/bin/bash
# Builds the fuzz targets (fuzz/*_fuzzer.c) with clang and
# -fsanitize=fuzzer,address,undefined in build-fuzz/, then runs each one
# for a bounded time, one after the other, at the lowest CPU priority.
#
#   scripts/fuzz.sh [-t SECONDS] [-j JOBS] [TARGET...]
#
#   -t SECONDS  time per target (default 600: ten minutes)
#   TARGET      e.g. keyfile config s3_xml; default: every target built
#
# Each run starts from a copy of the committed seed corpus
# (fuzz/corpora/TARGET) and grows it in build-fuzz/corpus/TARGET; findings
# (crash-*, leak-*, timeout-*, oom-*) land in build-fuzz/findings/TARGET/.
# Fix each, then copy the reproducer into fuzz/corpora/TARGET/ so ctest
# replays it.  One line per run is appended to build-fuzz/fuzz-runs.tsv:
# date, target, seconds, executions, corpus files, findings, command: the
# numbers docs/fuzzing.md records.  Exit 1 if any target found anything.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=600
while getopts t:h o; do
	case $o in
	t) secs=$OPTARG ;;
	*) sed -n '2,17p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
command -v clang >/dev/null || { echo "fuzz.sh: clang is needed" >&2; exit 1; }

B=build-fuzz
CC=clang cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DVMB_BUILD_FUZZERS=ON -DVMB_SANITIZE=ON -DVMB_BUILD_EXAMPLES=OFF \
	>/dev/null
targets=("$@")
if [ ${#targets[@]} = 0 ]; then
	for f in fuzz/*_fuzzer.c; do
		t=$(basename "$f" _fuzzer.c)
		targets+=("$t")
	done
fi
nice -n 19 cmake --build "$B" -j2 --target \
	$(printf '%s_fuzzer ' "${targets[@]}") >/dev/null

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
found=0
for t in "${targets[@]}"; do
	bin=$B/fuzz/${t}_fuzzer
	[ -x "$bin" ] || { echo "fuzz.sh: $t was not built (skipped)" >&2; continue; }
	corpus=$B/corpus/$t
	out=$B/findings/$t
	mkdir -p "$corpus" "$out"
	cp -n fuzz/corpora/"$t"/* "$corpus"/ 2>/dev/null || true
	dict=()
	[ -f fuzz/dicts/"$t".dict ] && dict=(-dict=fuzz/dicts/"$t".dict)
	cmd=(nice -n 19 "$bin" -max_total_time="$secs" -timeout=25
	     -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
	     -artifact_prefix="$out/" "${dict[@]}" "$corpus")
	echo "== $t: ${cmd[*]}"
	log=$B/findings/$t.log
	set +e
	"${cmd[@]}" >"$log" 2>&1
	rc=$?
	set -e
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	nfind=$(find "$out" -type f | wc -l)
	ncorp=$(find "$corpus" -type f | wc -l)
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" \
		"$t" "$secs" "${execs:-?}" "$ncorp" "$nfind" "${cmd[*]}" \
		>>"$B/fuzz-runs.tsv"
	echo "   exit $rc, ${execs:-?} executions, corpus $ncorp files, $nfind findings"
	if [ "$rc" != 0 ] || [ "$nfind" != 0 ]; then
		found=1
		tail -40 "$log"
	fi
done
exit $found
