# Run inside gdb (tests/cli/cli_keymem.sh), with the inferior stopped at a
# kill point: finds which mappings hold the key bytes (KEYS file: "name
# hex" lines) and prints "key NAME in START-END flags VMFLAGS" for each, or
# "key NAME not in memory".  /proc/PID/smaps gives the VmFlags ("dd":
# MADV_DONTDUMP, "lo": mlock()ed).
import gdb, os

inf = gdb.selected_inferior()
keys = [l.split() for l in open(os.environ["KEYMEM_KEYS"])]
maps, cur = [], None
for line in open("/proc/%d/smaps" % inf.pid):
    f = line.split()
    if "-" in f[0] and len(f) >= 5 and ":" not in f[0]:
        a, b = (int(x, 16) for x in f[0].split("-"))
        cur = [a, b, "", f[1]]
        maps.append(cur)
    elif f[0] == "VmFlags:" and cur:
        cur[2] = " ".join(f[1:])
for name, h in keys:
    pat = bytes.fromhex(h)
    hits = []
    for a, b, flags, perm in maps:
        if "r" not in perm or b - a > (1 << 30):
            continue
        try:
            mem = bytes(inf.read_memory(a, b - a))
        except gdb.MemoryError:
            continue
        if pat in mem:
            hits.append("%x-%x flags %s" % (a, b, flags))
    if hits:
        for h in hits:
            print("key %s in %s" % (name, h))
    else:
        print("key %s not in memory" % name)
