# Helpers shared by the service scripts (sourced).
# free_port: print a free TCP port on 127.0.0.1 in the high range.
free_port() {
	python3 - <<'PY'
import socket, random
for _ in range(200):
    p = random.randint(20000, 60000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
PY
}
# wait_port PORT SECONDS: wait until something listens on 127.0.0.1:PORT
wait_port() {
	local port=$1 secs=$2 i
	for ((i = 0; i < secs * 10; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}
# stop_pid FILE: stop the process whose PID is in FILE (TERM, then KILL)
stop_pid() {
	local f=$1 pid i
	[ -s "$f" ] || return 0
	pid=$(cat "$f")
	case $pid in '' | *[!0-9]*) rm -f "$f"; return 0 ;; esac
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
	fi
	rm -f "$f"
}
die() { echo "services: $*" >&2; exit 1; }
# setenv FILE NAME VALUE: add or replace NAME=VALUE in an env file
setenv() {
	local f=$1 n=$2 v=$3
	touch "$f"
	grep -v "^export $n=" "$f" >"$f.tmp" || true
	printf 'export %s=%q\n' "$n" "$v" >>"$f.tmp"
	mv "$f.tmp" "$f"
}
