#!/bin/bash
# Start or stop rpcbind + nfs-ganesha (user space, VFS FSAL) for tests,
# as /work/shared/docs/test-services.md describes:
#   tests/services/nfs.sh start DIR   -> export DIR/nfs/export, state in DIR/nfs
#   tests/services/nfs.sh stop DIR
# DIR/env gets VMB_TEST_NFS_EXPORT, VMB_TEST_NFS_PORT, VMB_TEST_NFS3_URL
# (nfs://127.0.0.1/EXPORT/repo?version=3) and VMB_TEST_NFS4_URL
# (nfs://127.0.0.1/vmb/repo?version=4&nfsport=PORT).  Fails loudly when a
# package is missing or a server does not come up.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop DIR"
mkdir -p "$dir" || die "cannot create $dir"
dir=$(cd "$dir" && pwd)
N=$dir/nfs

rpc_up() { rpcinfo -p 127.0.0.1 >/dev/null 2>&1; }

start() {
	local i p nfs_port mnt_port nlm_port rq_port
	command -v ganesha.nfsd >/dev/null ||
		die "ganesha.nfsd is missing (apt-get install nfs-ganesha nfs-ganesha-vfs)"
	command -v rpcbind >/dev/null || die "rpcbind is missing (apt-get install rpcbind)"
	ls /usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so >/dev/null 2>&1 ||
		ls /usr/lib/*/ganesha/libfsalvfs.so >/dev/null 2>&1 ||
		die "the ganesha VFS FSAL is missing (apt-get install nfs-ganesha-vfs)"
	mkdir -p "$N/export" "$N/state" "$N/recov"
	# rpcbind is one per machine (port 111): reuse a running one, else
	# start ours with -w and remember its PID so stop ends only ours.
	if ! rpc_up; then
		mkdir -p /run/rpcbind
		rpcbind -w -f >"$N/rpcbind.log" 2>&1 </dev/null &
		echo $! >"$N/rpcbind.pid"
		for ((i = 0; i < 50; i++)); do rpc_up && break; sleep 0.1; done
		rpc_up || die "rpcbind did not start: $(tail -3 "$N/rpcbind.log")"
	fi
	nfs_port=$(free_port); mnt_port=$(free_port)
	nlm_port=$(free_port); rq_port=$(free_port)
	cat >"$N/ganesha.conf" <<CONF
NFS_CORE_PARAM {
	Protocols = 3, 4;
	Enable_UDP = false;
	NFS_Port = $nfs_port;
	MNT_Port = $mnt_port;
	NLM_Port = $nlm_port;
	Rquota_Port = $rq_port;
	Enable_RQUOTA = false;
	Enable_NLM = false;
	Bind_addr = 127.0.0.1;
}
NFSV4 {
	Graceless = true;
	RecoveryRoot = "$N/recov";
}
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
	Export_Id = 1;
	Path = "$N/export";
	Pseudo = /vmb;
	Access_Type = RW;
	Squash = No_Root_Squash;
	Protocols = 3, 4;
	Transports = TCP;
	SecType = sys;
	FSAL { Name = VFS; }
}
LOG { Default_Log_Level = WARN; }
CONF
	ganesha.nfsd -F -f "$N/ganesha.conf" -L "$N/ganesha.log" \
		-p "$N/ganesha.pidfile" >"$N/ganesha.out" 2>&1 </dev/null &
	echo $! >"$N/ganesha.pid"
	wait_port "$nfs_port" 30 || {
		local why; why=$(tail -5 "$N/ganesha.log" "$N/ganesha.out" 2>/dev/null)
		stop_pid "$N/ganesha.pid"
		die "nfs-ganesha did not start: $why"
	}
	# ready when the export answers over NFSv3 (mount through rpcbind)
	for ((i = 0; i < 100; i++)); do
		if command -v nfs-ls >/dev/null; then
			timeout 5 nfs-ls "nfs://127.0.0.1$N/export/?version=3&nfsport=$nfs_port&mountport=$mnt_port" \
				>/dev/null 2>&1 && break
		else
			rpcinfo -p 127.0.0.1 2>/dev/null | grep -q " $mnt_port " && break
		fi
		sleep 0.2
	done
	[ "$i" -lt 100 ] || die "nfs-ganesha export not ready: $(tail -5 "$N/ganesha.log")"
	setenv "$dir/env" VMB_TEST_NFS_EXPORT "$N/export"
	setenv "$dir/env" VMB_TEST_NFS_PORT "$nfs_port"
	setenv "$dir/env" VMB_TEST_NFS_MOUNT_PORT "$mnt_port"
	setenv "$dir/env" VMB_TEST_NFS3_URL "nfs://127.0.0.1$N/export/repo?version=3&nfsport=$nfs_port&mountport=$mnt_port"
	setenv "$dir/env" VMB_TEST_NFS4_URL "nfs://127.0.0.1/vmb/repo4?version=4&nfsport=$nfs_port"
	echo "nfs-ganesha on 127.0.0.1:$nfs_port (mount $mnt_port, pid $(cat "$N/ganesha.pid")), export $N/export"
}

stop() {
	stop_pid "$N/ganesha.pid"
	stop_pid "$N/rpcbind.pid"
}

case $cmd in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop DIR" ;;
esac
