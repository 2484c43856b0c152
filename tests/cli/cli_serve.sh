#!/bin/bash
# vmb serve (issue 17): a snapshot's disks over NBD, straight from the
# repository.  Real clients (qemu-img, nbdinfo, nbdcopy, nbdsh) check the
# data against the source for qcow2, VMDK and VDI backups, holes in the
# map, many clients at once, a client killed mid-read, requests past the
# end and writes to a read-only export (the server keeps running), and a
# --writable overlay committed as a new snapshot that restores as written.
. "$TESTLIB"
export VMB_KDF_OPSLIMIT=1 VMB_KDF_MEMLIMIT=8388608
for t in qemu-img nbdinfo nbdcopy nbdsh python3; do
	command -v $t >/dev/null || skip "$t is needed (qemu-utils, libnbd-bin, python3-libnbd)"
done
# libnbd's Python binding (python3-libnbd) lives in the system python
NBDPY=
for p in python3 /usr/bin/python3; do
	"$p" -c 'import nbd' 2>/dev/null && { NBDPY=$p; break; }
done
[ -n "$NBDPY" ] || skip "python3-libnbd is needed"
R=$T/repo
"$VMB" init "$R" >/dev/null

# a 64 MiB disk: random data at 5 MiB and 40 MiB, zeros elsewhere
truncate -s 64M "$T/d.raw"
head -c 3M /dev/urandom | dd of="$T/d.raw" bs=1M seek=5 conv=notrunc status=none
head -c 1M /dev/urandom | dd of="$T/d.raw" bs=1M seek=40 conv=notrunc status=none
printf 'tail' | dd of="$T/d.raw" bs=1 seek=$((64 * 1048576 - 4)) conv=notrunc status=none
for f in qcow2 vmdk vdi; do
	qemu-img convert -f raw -O $f "$T/d.raw" "$T/disk_$f.$f"
	"$VMB" backup "$R" "$T/disk_$f.$f" --vm vm_$f >/dev/null || bad "backup $f"
done

PIDS=()
cleanup_hooks+=('for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done')
# serve NAME SNAP ARGS...: start vmb serve on $T/NAME.sock, wait until it
# prints its URIs (in $T/NAME.out); its pid in $SPID
serve() {
	local name=$1 snap=$2; shift 2
	"$VMB" serve "$R" "$snap" --socket "$T/$name.sock" "$@" \
		>"$T/$name.out" 2>"$T/$name.err" &
	SPID=$!
	PIDS+=("$SPID")
	for _ in $(seq 100); do
		[ -s "$T/$name.out" ] && return 0
		kill -0 $SPID 2>/dev/null || break
		sleep 0.1
	done
	bad "vmb serve $name did not start: $(cat "$T/$name.err")"
	return 1
}
stop() { kill "$1"; wait "$1"; }

# --- each source format serves the original bytes ---
for f in qcow2 vmdk vdi; do
	serve $f vm_$f@latest || continue
	uri="nbd+unix:///disk_$f?socket=$T/$f.sock"
	check "$f: the URI is printed" grep -qx "$uri" "$T/$f.out"
	check "$f: qemu-img compare with the original" \
		qemu-img compare -q -f raw "$T/d.raw" "$uri"
	stop $SPID
	check "$f: the socket is removed on exit" test ! -e "$T/$f.sock"
done

serve main vm_qcow2@latest
U="nbd+unix:///disk_qcow2?socket=$T/main.sock"

# --- block status: holes and data where they are ---
nbdinfo --map "$U" >"$T/map" 2>&1
check "nbdinfo --map: zero area at 0 is a hole" \
	grep -Eq '^ *0 +[0-9]+ +3 +hole,zero' "$T/map"
check "nbdinfo --map: data at 5 MiB" \
	awk '$1 <= 5242880 && $1 + $2 > 5242880 && $3 == 0 { f=1 } END { exit !f }' "$T/map"
check "nbdinfo --map: 12 MiB is a hole" \
	awk '$1 <= 12582912 && $1 + $2 > 12582912 && $3 == 3 { f=1 } END { exit !f }' "$T/map"
check "nbdinfo: read-only, base:allocation" \
	bash -c "nbdinfo '$U' | grep -q 'is_read_only: true' && nbdinfo '$U' | grep -q base:allocation"

# --- copies skip holes and equal the source ---
check "nbdcopy to a file" nbdcopy "$U" "$T/copy.raw"
check "nbdcopy copy equals the source" cmp "$T/d.raw" "$T/copy.raw"
check "qemu-img convert from the export" \
	qemu-img convert -f raw -O qcow2 "$U" "$T/conv.qcow2"
check "converted image equals the source" \
	qemu-img compare -q -f raw -F qcow2 "$T/d.raw" "$T/conv.qcow2"
alloc=$(qemu-img map --output=json -f qcow2 "$T/conv.qcow2" |
	python3 -c 'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))')
check "converted image stays sparse ($alloc bytes of data)" test "$alloc" -le $((6 * 1048576))

# --- many clients at once ---
for i in $(seq 8); do
	nbdcopy "$U" "$T/c$i.raw" &
	cp_pids[$i]=$!
done
okc=0
for i in $(seq 8); do
	wait ${cp_pids[$i]} && cmp -s "$T/d.raw" "$T/c$i.raw" && okc=$((okc + 1))
	rm -f "$T/c$i.raw"
done
check "8 concurrent nbdcopy clients all get the data ($okc/8)" test $okc = 8

# --- a client killed in the middle of a read ---
python3 - "$T/main.sock" <<'PY' &
import socket, struct, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.recv(18)
s.sendall(struct.pack(">I", 1))
n = b"disk_qcow2"
s.sendall(struct.pack(">QII", 0x49484156454F5054, 7, 4 + len(n) + 2) +
          struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
time.sleep(0.3)
for i in range(16):   # 16 x 32 MiB reads, never read back
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, i, 0, 32 << 20))
time.sleep(30)
PY
kpid=$!
sleep 1
kill -9 $kpid 2>/dev/null
wait $kpid 2>/dev/null
check "server alive after a client died mid-read" kill -0 $SPID
check "and still serves" qemu-img compare -q -f raw "$T/d.raw" "$U"

# --- protocol errors: past the end, writes to a read-only export ---
cat >"$T/errs.py" <<'PY'
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
size = h.get_size()
def fails(what, f, want):
    try:
        f()
    except nbd.Error as e:
        if want and e.errno != want:
            print("FAIL", what, "errno", e.errnum, e.errno); sys.exit(1)
        print("ok", what, "->", e.errno); return
    print("FAIL", what, "succeeded"); sys.exit(1)
fails("read past the end", lambda: h.pread(4096, size - 2048), None)
fails("write to read-only", lambda: h.pwrite(b"x" * 512, 0), None)
assert h.pread(4, size - 4) == b"tail", "last bytes"
print("ok read at the very end")
PY
# libnbd refuses some of these itself; raw requests check the server's answers
cat >"$T/raw.py" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
def rx(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise SystemExit("FAIL: server hung up")
        b += c
    return b
rx(18)
s.sendall(struct.pack(">I", 3))
n = b"disk_qcow2"
s.sendall(struct.pack(">QII", 0x49484156454F5054, 7, 4 + len(n) + 2) +
          struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
size = None
while True:
    _, opt, typ, ln = struct.unpack(">QIII", rx(20))
    d = rx(ln)
    if typ == 3 and struct.unpack(">H", d[:2])[0] == 0:
        size = struct.unpack(">Q", d[2:10])[0]
    if typ == 1: break
def req(t, off, ln, data=b""):
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, t, 7, off, ln) + data)
    magic, err, cookie = struct.unpack(">IIQ", rx(16))
    assert magic == 0x67446698 and cookie == 7, "reply"
    return err
e = req(0, size - 100, 200); print("read past the end ->", e); assert e == 22
e = req(0, 2**64 - 512, 1024); print("read at 2^64-512 ->", e); assert e == 22
e = req(1, 0, 4, b"abcd"); print("write to read-only ->", e); assert e == 1
e = req(6, 0, 4096); print("write zeroes to read-only ->", e); assert e == 1
e = req(7, 0, 4096); print("block status without context ->", e); assert e == 22
e = req(0, 0, 4); assert e == 0 and rx(4) == b"\0\0\0\0"
print("ok")
PY
check "libnbd: errors for out-of-range reads and read-only writes" \
	"$NBDPY" "$T/errs.py" "$U"
check "raw requests: EINVAL past the end, EPERM for writes" \
	python3 "$T/raw.py" "$T/main.sock"
check "server alive after the errors" kill -0 $SPID
check "and still serves" \
	qemu-img compare -q -f raw "$T/d.raw" "$U"
stop $SPID

# --- TCP on 127.0.0.1 with a free port ---
"$VMB" serve "$R" vm_vdi@latest --port 0 --cache-size 16M --json >"$T/tcp.out" 2>"$T/tcp.err" &
SPID=$!; PIDS+=("$SPID")
for _ in $(seq 100); do [ -s "$T/tcp.out" ] && break; sleep 0.1; done
turi=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["exports"][0]["uri"])' "$T/tcp.out")
check "TCP URI on 127.0.0.1 ($turi)" bash -c "[[ '$turi' == nbd://127.0.0.1:*/disk_vdi ]]"
check "TCP export equals the source" qemu-img compare -q -f raw "$T/d.raw" "$turi"
stop $SPID

# --- usage errors ---
expect_exit 2 "--socket with --port" "$VMB" serve "$R" latest --socket "$T/x" --port 1
expect_exit 1 "unknown disk" "$VMB" serve "$R" vm_vdi@latest --disk nope --socket "$T/x.sock"
one_line "unknown disk"
: >"$T/notasock"
expect_exit 1 "a file in the socket's place" "$VMB" serve "$R" vm_vdi@latest --socket "$T/notasock"
one_line "socket path"

# --- --writable: an overlay, then commit, then restore ---
serve rw vm_qcow2@latest --writable "$T/ovl"
W="nbd+unix:///disk_qcow2?socket=$T/rw.sock"
cp "$T/d.raw" "$T/want.raw"
cat >"$T/write.py" <<'PY'
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
assert not h.is_read_only()
h.pwrite(b"A" * 4096, 0)                     # whole block in a hole
h.pwrite(b"hello overlay", 5 * 1048576 + 100) # inside data, unaligned
h.zero(5 * 1048576 - 1048576 // 2, 1048576)   # zeroes over data (count, offset)
h.trim(40 * 1048576, 65536)
h.flush()
try:
    h.pwrite(b"x" * 4096, h.get_size() - 1024)
    print("FAIL: write past the end"); sys.exit(1)
except nbd.Error as e:
    print("write past the end ->", e.errno)
PY
check "writes, zeroes, trim and flush on the writable export" "$NBDPY" "$T/write.py" "$W"
python3 - "$T/want.raw" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(0); f.write(b"A" * 4096)
    f.seek(5 * 1048576 + 100); f.write(b"hello overlay")
    f.seek(1048576); f.write(b"\0" * (5 * 1048576 - 1048576 // 2))
    f.seek(65536); f.write(b"\0" * (40 * 1048576))
PY
check "the export reads back what was written" qemu-img compare -q -f raw "$T/want.raw" "$W"
stop $SPID
serve ro2 vm_qcow2@latest
check "read-only export of the snapshot still equals the original" \
	qemu-img compare -q -f raw "$T/d.raw" "nbd+unix:///disk_qcow2?socket=$T/ro2.sock"
stop $SPID
serve rw2 vm_qcow2@latest --writable "$T/ovl"
check "reopened overlay keeps the writes" \
	qemu-img compare -q -f raw "$T/want.raw" "nbd+unix:///disk_qcow2?socket=$T/rw2.sock"
stop $SPID
expect_exit 1 "an overlay of another snapshot is refused" \
	"$VMB" serve "$R" vm_vdi@latest --writable "$T/ovl" --socket "$T/x.sock"
one_line "overlay of another snapshot"
expect_exit 0 "vmb commit" "$VMB" commit "$R" "$T/ovl" --json
snap=$(json_field "$T/out" snapshot)
check "vmb restore of the committed snapshot" "$VMB" restore "$R" "$snap" --to "$T/rest" --format raw
check "restored disk equals what was written" cmp "$T/want.raw" "$T/rest/disk_qcow2.img"
check "the commit is a snapshot of vm_qcow2" \
	bash -c "'$VMB' snapshots '$R' --vm vm_qcow2 --json | grep -q '$snap'"
finish
