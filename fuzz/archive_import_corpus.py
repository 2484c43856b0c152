#!/usr/bin/env python3
"""Writes the hostile seeds of fuzz/corpora/archive_import/ from the valid
ones that `vmb export` made there (plain.tar, seed.ova,
enc1-head.bin, enc2-head.bin): each breaks one rule the import checks.
Usage: fuzz/archive_import_corpus.py fuzz/corpora/archive_import"""
import io, json, os, struct, sys, tarfile

out = sys.argv[1]
def w(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)

def members(path):
    t = tarfile.open(os.path.join(out, path))
    return [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]

def tar(entries, fmt=tarfile.PAX_FORMAT):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for m, data in entries:
            m = tarfile.TarInfo(m.name) if isinstance(m, str) else m
            if data is not None:
                m.size = len(data)
                t.addfile(m, io.BytesIO(data))
            else:
                t.addfile(m)
    return b.getvalue()

def info(name, **kw):
    m = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(m, k, v)
    return m

plain = members("plain.tar")
disk = [(m, d) for m, d in plain if m.name != "manifest.json"]
man = [d for m, d in plain if m.name == "manifest.json"][0]
mj = json.loads(man)

def with_manifest(d):
    return tar(disk + [(info("manifest.json"), json.dumps(d).encode())])

# names
w("abs-name.tar", tar([(info("/etc/passwd"), b"x")] + plain))
w("dotdot.tar", tar([(info("../escape.img"), b"x")] + plain))
w("nested.tar", tar([(info("a/b/c.img"), b"x")] + plain))
w("symlink.tar", tar([(info("link.img", type=tarfile.SYMTYPE, linkname="/etc/shadow"), None)] + plain))
w("hardlink.tar", tar(plain + [(info("hard.img", type=tarfile.LNKTYPE, linkname="manifest.json"), None)]))
w("device.tar", tar([(info("dev.img", type=tarfile.CHRTYPE, devmajor=1, devminor=3), None)] + plain))
w("fifo.tar", tar([(info("pipe", type=tarfile.FIFOTYPE), None)] + plain))
w("dup-name.tar", tar(plain + plain))
w("control-chars.tar", tar([(info("a\x1b[2Jb.img"), b"x")] + plain))
# manifest.json
d = dict(mj); d["vmbackup_export"] = 2; w("manifest-v2.tar", with_manifest(d))
d = json.loads(man); d["disks"][0]["sha256"] = "0" * 64; w("manifest-badsha.tar", with_manifest(d))
d = json.loads(man); d["disks"][0]["file"] = "missing.img"; w("manifest-nofile.tar", with_manifest(d))
d = json.loads(man); d["disks"][0]["virtual_size"] = 2**64 - 1; w("manifest-hugesize.tar", with_manifest(d))
d = json.loads(man); d["disks"][0]["format"] = "qcow9"; w("manifest-format.tar", with_manifest(d))
d = json.loads(man); d["disks"] = d["disks"] * 40; w("manifest-repeat.tar", with_manifest(d))
d = json.loads(man); d["vm"] = "../../x\n"; w("manifest-vmname.tar", with_manifest(d))
w("manifest-notjson.tar", tar(disk + [(info("manifest.json"), b"{\"vmbackup_export\":1,")]))
w("manifest-deep.tar", tar(disk + [(info("manifest.json"), b"[" * 5000)]))
w("manifest-only.tar", tar([(info("manifest.json"), man)]))
# sizes: a header claiming far more than there is, and a bad checksum
t = bytearray(tar(plain, tarfile.USTAR_FORMAT))
w("truncated.tar", bytes(t[:len(t) // 2]))
def fix_sum(h):
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h[:512])
    return bytes(h)
h = bytearray(t); h[124:136] = b"77777777777\0"; w("size-huge.tar", fix_sum(h))
h = bytearray(t); h[124:136] = b"\x80" + b"\0" * 3 + b"\xff" * 8; w("size-base256.tar", fix_sum(h))
h = bytearray(t); h[148:156] = b"000000\0 "; w("bad-checksum.tar", bytes(h))
w("gnu-format.tar", tar(plain, tarfile.GNU_FORMAT))
w("empty.tar", b"\0" * 1024)
w("empty", b"")
# OVA: descriptor and digests
ova = members("seed.ova")
def ova_with(name, data, fix_mf=False):
    ents = [(info(m.name), data if m.name.endswith(name) else d) for m, d in ova]
    if fix_mf:  # the .mf gives the altered descriptor its new digest
        import hashlib
        ovfname = [m.name for m, d in ova if m.name.endswith(".ovf")][0]
        lines = [l for l in mf.decode().splitlines() if ovfname not in l]
        lines.insert(0, "SHA256(%s)= %s" % (ovfname, hashlib.sha256(data).hexdigest()))
        ents = [(m, ("\n".join(lines) + "\n").encode() if m.name.endswith(".mf") else d) for m, d in ents]
    return tar(ents, tarfile.USTAR_FORMAT)
ovf = [d for m, d in ova if m.name.endswith(".ovf")][0]
mf = [d for m, d in ova if m.name.endswith(".mf")][0]
w("ova-badmf.ova", ova_with(".mf", mf.replace(b"= ", b"= 00", 1)))
w("ova-mf-sha1.ova", ova_with(".mf", b"SHA1(seed.ovf)= " + b"0" * 40 + b"\n"))
w("ova-href-abs.ova", ova_with(".ovf", ovf.replace(b'ovf:href="', b'ovf:href="/etc/', 1), True))
w("ova-capacity.ova", ova_with(".ovf", ovf.replace(b'ovf:capacity="', b'ovf:capacity="99999999999999999999', 1), True))
w("ova-capacity-small.ova", ova_with(".ovf", ovf.replace(b'ovf:capacity="', b'ovf:capacity="1', 1), True))
w("ova-noovf.ova", tar([(info(m.name), d) for m, d in ova if not m.name.endswith(".ovf")], tarfile.USTAR_FORMAT))
w("ova-ovf-not-first.ova", tar(list(reversed([(info(m.name), d) for m, d in ova])), tarfile.USTAR_FORMAT))
# encrypted headers ("VMBX"): versions, segment size, key block length
e1 = open(os.path.join(out, "enc1-head.bin"), "rb").read()
e2 = open(os.path.join(out, "enc2-head.bin"), "rb").read()
w("enc-version3.bin", e1[:4] + b"\x03" + e1[5:])
w("enc-segsize.bin", e1[:8] + struct.pack("<I", 4096) + e1[12:])
w("enc2-keyblock-0.bin", e2[:28] + struct.pack("<I", 0) + e2[32:])
w("enc2-keyblock-huge.bin", e2[:28] + struct.pack("<I", 0xffffffff) + e2[32:])
w("enc2-keyblock-short.bin", e2[:28] + struct.pack("<I", 4000) + e2[32:200])
w("enc-header-only.bin", e1[:28])
