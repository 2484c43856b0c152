#!/bin/bash
# Runs every test: installs what is missing, builds (normal and with
# AddressSanitizer+UBSan), runs the whole ctest suite, then replays the
# fuzz corpora and hostile-input tests under the sanitizers.  The tests
# start their own services (nfs-ganesha, rpcbind, s3rver) on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs" >/dev/null
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 1500
if [ "${VMB_SKIP_ASAN:-}" != 1 ]; then
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DVMB_SANITIZE=ON \
		-DVMB_BUILD_EXAMPLES=OFF >/dev/null
	cmake --build build-asan -j"$jobs" >/dev/null
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir build-asan --output-on-failure -j"$jobs" \
		-R '^(fuzz/|unit/test_(disk|blob|index|crypto|repo|hv|guestfs)|cli/cli_(formats|errors|patch|clones|plugins|ova|vbox|serve|boot|tamper|vmware|filerestore|mount)|unit/test_partition)' --timeout 1500
fi
