#!/usr/bin/env python3
"""Test fixture generator: VirtualBox VDI images written the way VirtualBox
writes them, from the format as documented (docs: /work/shared/docs/formats.md
section 3, after VirtualBox's VDICore.h), not from vmbackup's own writer.

  vdi_gen.py create OUT.vdi --raw NEW.raw --uuid U [--parent P --parent-modify M]
                            [--against OLD.raw] [--block 1048576]
      A dynamic image (type 1) holding the non-zero blocks of NEW.raw, or with
      --parent a differencing image (type 4, uuidLinkage = P,
      uuidParentModify = M) holding the blocks where NEW.raw differs from
      OLD.raw (an all-zero changed block is written as VDI_IMAGE_BLOCK_ZERO,
      as VirtualBox does).  VDIHEADER1PLUS (cbHeader 400), block map and
      data area aligned to 1 MiB (current VirtualBox), LCHS geometry zero.
  vdi_gen.py ids IMG.vdi       prints "uuid parent modify" (RTUUID text)
  vdi_gen.py read OUT.raw IMG.vdi [PARENT.vdi ...]
      an independent reader: resolves a chain (top first), checking each
      uuidLinkage against the next image's uuidCreate, into raw bytes.
  vdi_gen.py set-parent IMG.vdi UUID   overwrite uuidLinkage (to break it)
"""
import os, struct, sys, uuid as U

SIG = 0xBEDA107F
FREE, ZERO = 0xFFFFFFFF, 0xFFFFFFFE
ALIGN = 1 << 20
TEXT = b"<<< Oracle VM VirtualBox Disk Image >>>\n"


def rt_bytes(s):
    """RTUUID layout: u32, u16, u16 little endian, then 8 bytes."""
    return U.UUID(s).bytes_le


def rt_text(b):
    return str(U.UUID(bytes_le=bytes(b)))


def create(out, raw, uid, parent=None, pmod=None, against=None, block=ALIGN):
    data = open(raw, 'rb').read()
    size = len(data)
    old = open(against, 'rb').read() if against else None
    nblocks = (size + block - 1) // block
    off_blocks = ALIGN
    off_data = off_blocks + ((nblocks * 4 + ALIGN - 1) // ALIGN) * ALIGN
    bmap, blocks = [], []
    for i in range(nblocks):
        chunk = data[i * block:(i + 1) * block].ljust(block, b'\0')
        if parent:
            prev = old[i * block:(i + 1) * block].ljust(block, b'\0')
            if chunk == prev:
                bmap.append(FREE)
                continue
        if chunk.count(0) == block:
            bmap.append(ZERO if parent else FREE)
            continue
        bmap.append(len(blocks))
        blocks.append(chunk)
    h = bytearray(off_blocks)
    h[0:len(TEXT)] = TEXT
    struct.pack_into('<III', h, 0x40, SIG, 0x00010001, 0x190)
    struct.pack_into('<II', h, 0x4C, 4 if parent else 1, 0)
    h[0x54:0x54 + 7] = b'vmbtest'
    struct.pack_into('<II', h, 0x154, off_blocks, off_data)
    struct.pack_into('<IIII', h, 0x15C, 0, 0, 0, 512)  # legacy geometry
    struct.pack_into('<QIIII', h, 0x170, size, block, 0, nblocks, len(blocks))
    h[0x188:0x198] = rt_bytes(uid)
    h[0x198:0x1A8] = U.uuid4().bytes_le
    if parent:
        h[0x1A8:0x1B8] = rt_bytes(parent)
        h[0x1B8:0x1C8] = rt_bytes(pmod) if pmod else bytes(16)
    with open(out, 'wb') as f:
        f.write(h)
        f.write(struct.pack('<%dI' % nblocks, *bmap))
        f.seek(off_data)
        for b in blocks:
            f.write(b)
        f.truncate(off_data + len(blocks) * block)


def header(path):
    with open(path, 'rb') as f:
        h = f.read(0x1C8)
    sig, ver, hs = struct.unpack_from('<III', h, 0x40)
    if sig != SIG:
        sys.exit('%s: not a VDI' % path)
    typ, = struct.unpack_from('<I', h, 0x4C)
    ob, od = struct.unpack_from('<II', h, 0x154)
    size, block, extra, nb, na = struct.unpack_from('<QIIII', h, 0x170)
    return dict(type=typ, off_blocks=ob, off_data=od, size=size, block=block,
                nblocks=nb, uuid=rt_text(h[0x188:0x198]),
                modify=rt_text(h[0x198:0x1A8]), parent=rt_text(h[0x1A8:0x1B8]),
                parent_modify=rt_text(h[0x1B8:0x1C8]))


def read(out, chain):
    hs = [header(p) for p in chain]
    for i in range(len(chain) - 1):
        if hs[i]['parent'] != hs[i + 1]['uuid']:
            sys.exit('%s: parent %s is not %s (%s)' % (chain[i], hs[i]['parent'],
                     chain[i + 1], hs[i + 1]['uuid']))
    if hs[-1]['type'] == 4:
        sys.exit('%s: differencing image without its parent' % chain[-1])
    size, block = hs[0]['size'], hs[0]['block']
    maps = []
    for p, h in zip(chain, hs):
        with open(p, 'rb') as f:
            f.seek(h['off_blocks'])
            maps.append(struct.unpack('<%dI' % h['nblocks'], f.read(4 * h['nblocks'])))
    files = [open(p, 'rb') for p in chain]
    with open(out, 'wb') as o:
        for b in range((size + block - 1) // block):
            chunk = bytes(block)
            for f, h, m in zip(files, hs, maps):
                e = m[b]
                if e == FREE:
                    continue
                if e != ZERO:
                    f.seek(h['off_data'] + e * h['block'])
                    chunk = f.read(block).ljust(block, b'\0')
                break
            o.write(chunk[:min(block, size - b * block)])


def main(a):
    if a[0] == 'create':
        out, opts = a[1], dict(zip(a[2::2], a[3::2]))
        create(out, opts['--raw'], opts['--uuid'], opts.get('--parent'),
               opts.get('--parent-modify'), opts.get('--against'),
               int(opts.get('--block', ALIGN)))
    elif a[0] == 'ids':
        h = header(a[1])
        print(h['uuid'], h['parent'], h['modify'])
    elif a[0] == 'read':
        read(a[1], a[2:])
    elif a[0] == 'set-parent':
        with open(a[1], 'r+b') as f:
            f.seek(0x1A8)
            f.write(rt_bytes(a[2]))
    elif a[0] == 'set-uuid':
        with open(a[1], 'r+b') as f:
            f.seek(0x188)
            f.write(rt_bytes(a[2]))
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main(sys.argv[1:])
