#!/bin/bash
# Installs the library into a temporary prefix and builds the example
# program against the installed headers twice: with pkg-config and with
# the CMake package; then runs it against a fresh repository.
. "$TESTLIB"
P=$T/prefix
cmake --install "$BUILDDIR" --prefix "$P" >"$T/install.log" 2>&1
check "install succeeds" test -f "$P/include/vmbackup.h"
check "pkg-config file installed" test -f "$P/lib/pkgconfig/vmbackup.pc" -o -f "$P/lib/x86_64-linux-gnu/pkgconfig/vmbackup.pc"
export PKG_CONFIG_PATH=$(dirname "$(find "$P" -name vmbackup.pc | head -1)")
check "example builds with pkg-config" \
	cc -std=c11 -Wall -Werror "$SRCDIR/examples/backup_file.c" -o "$T/ex_pc" \
	$(pkg-config --cflags vmbackup) $(pkg-config --libs vmbackup) \
	-Wl,-rpath,"$(pkg-config --variable=libdir vmbackup)"
mkdir -p "$T/cm"
cat >"$T/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.18)
project(ex C)
find_package(vmbackup REQUIRED)
add_executable(ex $SRCDIR/examples/backup_file.c)
target_link_libraries(ex PRIVATE vmbackup::vmbackup)
CM
check "example builds with the CMake package" sh -c \
	"cmake -S '$T/cm' -B '$T/cm/b' -DCMAKE_PREFIX_PATH='$P' >'$T/cm.log' 2>&1 && cmake --build '$T/cm/b' >>'$T/cm.log' 2>&1"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
"$VMB" init "$T/repo" >/dev/null
head -c 3M /dev/urandom >"$T/disk.img"
check "pkg-config example backs up a file" sh -c "'$T/ex_pc' '$T/repo' '$T/disk.img' | grep -q '^snapshot '"
check "CMake example backs up a file" sh -c \
	"LD_LIBRARY_PATH='$(dirname "$(find "$P" -name 'libvmbackup.so' | head -1)")' '$T/cm/b/ex' '$T/repo' '$T/disk.img' | grep -q 'new'"
check "header compiles as C++" sh -c "echo '#include <vmbackup.h>' | c++ -x c++ -fsyntax-only -Wall -Wextra -pedantic -I'$P/include' - 2>'$T/cxx.log' || { command -v c++ >/dev/null || true; false; }"
finish
