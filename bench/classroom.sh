#!/bin/bash
# The classroom (issue 16): N VirtualBox VM folders cloned from one base
# VDI, each with its own ~2% of unique changes (scattered 1 MiB blocks of
# random data written into its copy of the base, as a term of student work
# would), backed up in ONE command (`vmb backup REPO --each 'vbox:LAB/*'`),
# against one VM alone in a fresh repository.  Reports the time per VM and
# the repository size of the class against one VM.  Runs under
# flock /tmp/vmb-bench.lock, nice'd.
# Usage: bash bench/classroom.sh [VMS] [BASE_MIB]   (default 30 VMs, 1024 MiB
# base of which 60% is allocated: 40% text-like, 20% random)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-30}
mib=${2:-1024}
exec 9>/tmp/vmb-bench.lock
flock 9
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DVMB_BUILD_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null
V=$PWD/build-bench/cli/vmb
W=${VMB_BENCH_DIR:-$PWD/bench/out/classroom}
rm -rf "$W"; mkdir -p "$W/lab"
export VMB_PASSPHRASE=bench
python3 - "$W/base.raw" "$mib" <<'PY'
import os, sys
path, mib = sys.argv[1], int(sys.argv[2])
text = b"".join(b"%08d INFO lesson %d page %d served to 10.0.%d.%d\n" % (i, i % 31, i % 97, i % 255, i % 7) for i in range(20000))
with open(path, "wb") as f:
    f.truncate(mib << 20)
    for i in range(mib):
        k = i % 10
        if k < 4: continue
        f.seek(i << 20)
        f.write(text[:1 << 20] if k < 8 else os.urandom(1 << 20))
PY
# VM 1 is built by the test fixture writer (VDI as VirtualBox writes it,
# no snapshots); the others are copies of its folder, as VirtualBox's
# "full clone" makes, with a new machine uuid and name, then their changes
python3 tests/lib/vbox_folder.py "$W/lab/pc01" pc01 --raw1 "$W/base.raw" --snapshots 0 >/dev/null
python3 - "$W/lab" "$n" <<'PY'
import os, random, shutil, struct, sys, uuid
lab, n = sys.argv[1], int(sys.argv[2])
src = os.path.join(lab, 'pc01')
for i in range(1, n + 1):
    name = 'pc%02d' % i
    d = os.path.join(lab, name)
    if i > 1:
        shutil.copytree(src, d)
        os.rename(os.path.join(d, 'pc01.vbox'), os.path.join(d, name + '.vbox'))
        os.rename(os.path.join(d, 'pc01.vdi'), os.path.join(d, name + '.vdi'))
        p = os.path.join(d, name + '.vbox')
        s = open(p).read()
        old = s.split('Machine uuid="{', 1)[1].split('}', 1)[0]
        vdi_old = s.split('HardDisk uuid="{', 1)[1].split('}', 1)[0]
        vdi_new = str(uuid.uuid4())
        s = s.replace(old, str(uuid.uuid4())).replace('name="pc01"', 'name="%s"' % name)
        s = s.replace('pc01.vdi', name + '.vdi').replace(vdi_old, vdi_new)
        open(p, 'w').write(s)
        with open(os.path.join(d, name + '.vdi'), 'r+b') as f:
            f.seek(0x188); f.write(uuid.UUID(vdi_new).bytes_le)
    # ~2% unique: random data over allocated blocks of this VM's base
    with open(os.path.join(d, name + '.vdi'), 'r+b') as f:
        h = f.read(0x1c8)
        ob, od = struct.unpack_from('<II', h, 0x154)
        nb, = struct.unpack_from('<I', h, 0x180)
        f.seek(ob)
        m = struct.unpack('<%dI' % nb, f.read(4 * nb))
        alloc = [e for e in m if e < 0xfffffffe]
        r = random.Random(i)
        for e in r.sample(alloc, max(1, nb * 2 // 100)):
            f.seek(od + e * (1 << 20)); f.write(os.urandom(1 << 20))
PY
sleep 2
du_b() { du -sb "$1" | cut -f1; }
"$V" init "$W/one" >/dev/null
t0=$(date +%s.%N)
nice "$V" backup "$W/one" "vbox:$W/lab/pc01" --json >"$W/one.json"
t1=$(date +%s.%N)
"$V" init "$W/class" >/dev/null
nice "$V" backup "$W/class" --each "vbox:$W/lab/*" --json >"$W/class.json"
t2=$(date +%s.%N)
nice "$V" backup "$W/class" --each "vbox:$W/lab/*" --json >"$W/class2.json"
t3=$(date +%s.%N)
python3 - "$W" "$n" "$mib" "$t0" "$t1" "$t2" "$t3" "$(du_b "$W/one")" "$(du_b "$W/class")" "$(du_b "$W/lab")" <<'PY'
import json, sys
w, n, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0, t1, t2, t3 = map(float, sys.argv[4:8])
one, cls, lab = map(int, sys.argv[8:11])
c = json.load(open(w + '/class.json')); c2 = json.load(open(w + '/class2.json'))
assert c['ok'] == n and c['failed'] == 0, c
print('VMs: %d, base %d MiB (60%% allocated), each VM ~2%% unique' % (n, mib))
print('VM folders on disk: %.1f MiB' % (lab / 2**20))
print('one VM alone: %.2f s, repository %.1f MiB' % (t1 - t0, one / 2**20))
print('class, first backup: %.1f s in all, %.2f s per VM; repository %.1f MiB = %.2f x one VM'
      % (t2 - t1, (t2 - t1) / n, cls / 2**20, cls / one))
print('class, again (nothing changed): %.1f s in all, %.3f s per VM, cbt %s'
      % (t3 - t2, (t3 - t2) / n, sorted(set(v['cbt'] for v in c2['vms']))))
print('bytes_new per VM after the first: %.1f MiB' % (sum(v['bytes_new'] for v in c['vms'][1:]) / (n - 1) / 2**20))
PY
