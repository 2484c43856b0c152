#!/usr/bin/env python3
"""Test helper: what a VirtualBox folder's .vbox says, read independently
of vmbackup (xml.etree, the VDI reader of vdi_gen.py).

  vbox_check.py states DIR/X.vbox OUTDIR
      for every state (each snapshot by name, and "current"), every hard
      disk attached: its chain, resolved by the media registry's nesting
      and checked against each VDI header (image uuid = registry uuid,
      parent uuid = the enclosing HardDisk's), read into
      OUTDIR/<state>-<controller>.raw.
  vbox_check.py inside DIR/X.vbox
      every location, stateFile and NVRAM path is relative, has no '..'
      and names an existing file inside DIR; prints their count.
  vbox_check.py uuids DIR/X.vbox
      prints the machine uuid, every HardDisk uuid and every MAC, one a line.
"""
import os, sys
import xml.etree.ElementTree as ET
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vdi_gen

NS = '{http://www.virtualbox.org/}'


def strip(u):
    return u.strip('{}').lower()


def load(path):
    root = ET.parse(path).getroot()
    m = root.find(NS + 'Machine')
    media, parent = {}, {}

    def walk(e, par):
        for h in e.findall(NS + 'HardDisk'):
            u = strip(h.get('uuid'))
            media[u] = h.get('location')
            parent[u] = par
            walk(h, u)
    hd = m.find(NS + 'MediaRegistry/' + NS + 'HardDisks')
    if hd is not None:
        walk(hd, None)
    return m, media, parent


def controllers(e):
    sc = e.find(NS + 'StorageControllers')
    if sc is None and e.find(NS + 'Hardware') is not None:
        sc = e.find(NS + 'Hardware').find(NS + 'StorageControllers')
    out = []
    for c in (sc.findall(NS + 'StorageController') if sc is not None else []):
        for a in c.findall(NS + 'AttachedDevice'):
            img = a.find(NS + 'Image')
            if a.get('type') == 'HardDisk' and img is not None:
                out.append((c.get('name'), strip(img.get('uuid'))))
    return out


def states(m):
    yield 'current', m

    def walk(s):
        yield s.get('name'), s
        kids = s.find(NS + 'Snapshots')
        for k in (kids.findall(NS + 'Snapshot') if kids is not None else []):
            yield from walk(k)
    for s in m.findall(NS + 'Snapshot'):
        yield from walk(s)


def main(a):
    path = a[1]
    d = os.path.dirname(os.path.abspath(path))
    m, media, parent = load(path)
    if a[0] == 'states':
        n = 0
        for name, e in states(m):
            for ctl, u in controllers(e):
                chain = []
                while u:
                    f = media[u]
                    f = f if f.startswith('/') else os.path.join(d, f)
                    h = vdi_gen.header(f)
                    if h['uuid'] != u:
                        sys.exit('%s: header uuid %s, registry %s' % (f, h['uuid'], u))
                    want = parent[u] or '00000000-0000-0000-0000-000000000000'
                    if h['parent'] != want:
                        sys.exit('%s: header parent %s, registry %s' % (f, h['parent'], want))
                    chain.append(f)
                    u = parent[u]
                vdi_gen.read(os.path.join(a[2], '%s-%s.raw' % (name, ctl)), chain)
                n += 1
        print(n)
    elif a[0] == 'inside':
        n = 0
        for e in m.iter():
            for attr in ('location', 'stateFile', 'path'):
                v = e.get(attr)
                if v is None or e.tag == NS + 'SharedFolder':
                    continue
                if v.startswith('/') or '..' in v.split('/'):
                    sys.exit('%s="%s" leaves the folder' % (attr, v))
                if not os.path.isfile(os.path.join(d, v)):
                    sys.exit('%s="%s": no such file in %s' % (attr, v, d))
                n += 1
        print(n)
    elif a[0] == 'uuids':
        print(strip(m.get('uuid')))
        for u in media:
            print(u)
        for e in m.iter(NS + 'Adapter'):
            if e.get('MACAddress'):
                print(e.get('MACAddress'))


if __name__ == '__main__':
    main(sys.argv[1:])
