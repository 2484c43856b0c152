#!/bin/bash
# Start or stop libvirt for tests: the host's daemon (qemu:///system, QEMU
# in software emulation) and a second, independent daemon that stands in
# for "another host" (its own socket, configuration, state and logs).
#   tests/services/libvirt.sh start DIR   -> state in DIR/libvirt*, DIR/env
#   tests/services/libvirt.sh stop DIR
# DIR/env gets VMB_TEST_LIBVIRT_URI and VMB_TEST_LIBVIRT_URI2.  A daemon
# that was already running is used and left running; the ones this script
# started are stopped by PID (their domains destroyed first).
#
# The second daemon runs in a private mount namespace (unshare -m) where
# /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and
# /var/log/libvirt are folders under DIR, so it shares nothing with the
# first; its socket is DIR/libvirt2/run/libvirt-sock seen from outside.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop DIR"
mkdir -p "$dir" || die "cannot create $dir"
dir=$(cd "$dir" && pwd)
S1=$dir/libvirt
S2=$dir/libvirt2
QEMU_CONF='user = "root"
group = "root"
dynamic_ownership = 0
'

wait_virsh() { # wait_virsh URI SECONDS
	local i
	for ((i = 0; i <= $2 * 10; i++)); do
		timeout 10 virsh -c "$1" version >/dev/null 2>&1 && return 0
		[ "$2" = 0 ] || sleep 0.1
	done
	return 1
}

setup_host() {
	command -v libvirtd >/dev/null ||
		die "libvirtd is missing (apt-get install libvirt-daemon libvirt-daemon-driver-qemu)"
	command -v qemu-system-x86_64 >/dev/null ||
		die "qemu-system-x86_64 is missing (apt-get install qemu-system-x86)"
	# the daemon refuses to start without these (test-services.md)
	getent group kvm >/dev/null || groupadd -r kvm
	getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
	id libvirt-qemu >/dev/null 2>&1 ||
		useradd -r -g libvirt-qemu -G kvm libvirt-qemu
	mkdir -p /etc/libvirt /var/log/libvirt /var/run/libvirt /var/lib/libvirt \
		/var/cache/libvirt
	# QEMU as root, files left as they are (Debian ships no qemu.conf
	# without libvirt-daemon-system)
	[ -f /etc/libvirt/qemu.conf ] || printf '%s' "$QEMU_CONF" >/etc/libvirt/qemu.conf
}

# Daemons must not inherit our descriptors beyond 0-2: a lock held by a
# caller (flock around a test run) would stay held by libvirtd for ever.
close_fds() {
	local f n
	for f in /proc/self/fd/*; do
		n=${f##*/}
		[ "$n" -gt 2 ] 2>/dev/null && eval "exec $n>&-" 2>/dev/null
	done
	return 0
}

start() {
	setup_host
	mkdir -p "$S1"
	if wait_virsh qemu:///system 0; then
		: # someone else's daemon: use it, leave it alone
	else
		pgrep -x virtlogd >/dev/null ||
			(close_fds; exec virtlogd -d -p "$S1/virtlogd.pid") ||
			die "virtlogd did not start"
		(close_fds; exec libvirtd -d -p "$S1/libvirtd.pid") ||
			die "libvirtd did not start"
		wait_virsh qemu:///system 30 ||
			die "libvirtd (qemu:///system) does not answer"
	fi
	# the second host
	mkdir -p "$S2"/{etc,run,lib,cache,log}
	printf '%s' "$QEMU_CONF" >"$S2/etc/qemu.conf"
	(close_fds; exec unshare -m --propagation private bash -c '
		set -e
		S=$1
		mount --bind "$S/etc" /etc/libvirt
		mount --bind "$S/run" /run/libvirt
		mount --bind "$S/lib" /var/lib/libvirt
		mount --bind "$S/cache" /var/cache/libvirt
		mount --bind "$S/log" /var/log/libvirt
		virtlogd -d -p /run/libvirt/virtlogd.pid
		exec libvirtd -p /run/libvirt/libvirtd.pid
	' vmb-libvirt2 "$S2") >"$S2/daemon.log" 2>&1 </dev/null &
	echo $! >"$S2/pid"
	URI2="qemu+unix:///system?socket=$S2/run/libvirt-sock"
	wait_virsh "$URI2" 30 ||
		die "the second libvirtd does not answer: $(tail -3 "$S2/daemon.log")"
	setenv "$dir/env" VMB_TEST_LIBVIRT_URI qemu:///system
	setenv "$dir/env" VMB_TEST_LIBVIRT_URI2 "$URI2"
}

destroy_all() { # destroy_all URI: stop the domains of a daemon we own
	local d
	for d in $(virsh -c "$1" list --name 2>/dev/null); do
		virsh -c "$1" destroy "$d" >/dev/null 2>&1
	done
}

stop() {
	if [ -s "$S2/pid" ]; then
		destroy_all "qemu+unix:///system?socket=$S2/run/libvirt-sock"
		stop_pid "$S2/run/libvirtd.pid"
		stop_pid "$S2/pid"
		stop_pid "$S2/run/virtlogd.pid"
	fi
	if [ -s "$S1/libvirtd.pid" ]; then
		destroy_all qemu:///system
		stop_pid "$S1/libvirtd.pid"
	fi
	stop_pid "$S1/virtlogd.pid"
	return 0
}

case $cmd in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop DIR" ;;
esac
