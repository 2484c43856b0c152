#!/bin/bash
# Installs the Debian 12 packages vmbackup needs, only those missing.
#   scripts/install-deps.sh build   libraries and tools to build
#   scripts/install-deps.sh test    plus everything the tests start
set -euo pipefail
what=${1:-build}
build_pkgs=(cmake make gcc pkg-config python3 libzstd-dev libsodium-dev
	libarchive-dev libxxhash-dev libcurl4-openssl-dev libnfs-dev libnbd-dev
	libvirt-dev libxml2-dev nettle-dev libunicorn-dev zlib1g-dev qemu-utils
	libfuse3-dev libext2fs-dev)
test_pkgs=(clang libclang-rt-14-dev nfs-ganesha nfs-ganesha-vfs rpcbind
	libnfs-utils zstd curl python3
	qemu-system-x86 nasm libvirt-daemon libvirt-daemon-driver-qemu
	libvirt-clients libnbd-bin python3-libnbd libvmdk-utils python3-libvmdk python3-vmdkstream
	fuse3 e2fsprogs faketime gdb
	syslinux syslinux-common mtools dosfstools fdisk cpio busybox-static linux-image-amd64)
# libarchive-dev: headers only; libvmbackup dlopen()s libarchive.so.13
# (package libarchive13, pulled in by libarchive-dev) on the first export
# or import, and needs it at run time for those two commands only.
# libcurl4-openssl-dev: headers only as well; libvmbackup dlopen()s
# libcurl.so.4 (package libcurl4, pulled in by libcurl4-openssl-dev) the
# first time a process opens an s3: repository, and needs it at run time
# for S3 storage only.
pkgs=("${build_pkgs[@]}")
[ "$what" = test ] && pkgs+=("${test_pkgs[@]}")
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
# Node.js for the S3 test server: a machine may have NodeSource's nodejs,
# which ships npm itself and conflicts with Debian's npm package.
if [ "$what" = test ]; then
	command -v node >/dev/null || missing+=(nodejs)
	command -v npm >/dev/null || missing+=(npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null
	# Debian's nodejs may come without npm
	if [ "$what" = test ] && ! command -v npm >/dev/null; then
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm >/dev/null
	fi
fi
if [ "$what" = test ] && [ -f tests/package-lock.json ] &&
   [ ! -x tests/node_modules/.bin/s3rver ]; then
	echo "installing the S3 test server (npm ci)"
	npm ci --prefix tests --no-audit --no-fund --loglevel=error >/dev/null
fi
