#!/usr/bin/env python3
"""Test fixture: a VirtualBox VM folder, as VirtualBox lays it out, written
without VirtualBox (not installable here).

  vbox_folder.py DIR NAME --raw1 DISK1.raw [--raw2 DISK2.raw] [--efi]
                 [--snapshots N] [--abs2] [--qemu-base2] [--states DIR]

DIR/NAME.vbox (settings format 1.16, hand-written the way VirtualBox writes
it), DIR/<NAME>.vdi and DIR/<NAME>-ide.vdi base images, and for each of N
snapshots a differencing image of every disk in DIR/Snapshots/{uuid}.vdi:
the disk contents at snapshot k are DISK.raw with blocks changed by
change(k) below, and the current state is one step further.  Snapshot 2
(if any) has a saved state file; --efi adds an NVRAM file; --abs2 writes
the second disk's location as an absolute path; DIR/Logs/VBox.log is
there as VirtualBox leaves it.  --states DIR writes the raw contents of
every disk at every point (DISK-sK.raw, DISK-current.raw) for comparing.
With --qemu-base2 the second base comes from `qemu-img convert -O vdi`.
--before-live FILE also writes the settings as they were before the last
snapshot was taken (FILE.snap: that snapshot's uuid), for a VBoxManage
test double to install when asked to take it.
Prints the machine uuid.
"""
import os, subprocess, sys, uuid as U
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vdi_gen

BLOCK = 1 << 20


def change(data, k, disk):
    """The state after step k: block (k*3+disk) % n gets a new pattern and,
    from step 2, one block becomes zeros."""
    b = bytearray(data)
    n = len(b) // BLOCK
    i = (k * 3 + disk) % n
    pat = bytes([(k * 16 + disk + j) & 0xff for j in range(256)]) * (BLOCK // 256)
    b[i * BLOCK + 4096:(i + 1) * BLOCK] = pat[4096:]
    if k >= 2:
        z = (i + 1) % n
        if z != 0:
            b[z * BLOCK:(z + 1) * BLOCK] = bytes(BLOCK)
    return bytes(b)


def main(a):
    d, name = a[0], a[1]
    o = {}
    i = 2
    while i < len(a):
        if a[i] in ('--efi', '--abs2', '--qemu-base2'):
            o[a[i]] = True
            i += 1
        else:
            o[a[i]] = a[i + 1]
            i += 2
    nsnap = int(o.get('--snapshots', 2))
    os.makedirs(os.path.join(d, 'Snapshots'), exist_ok=True)
    os.makedirs(os.path.join(d, 'Logs'), exist_ok=True)
    open(os.path.join(d, 'Logs', 'VBox.log'), 'w').write('00:00:00.000 VirtualBox VM log\n')
    raws = [open(o['--raw1'], 'rb').read()]
    if '--raw2' in o:
        raws.append(open(o['--raw2'], 'rb').read())
    states = o.get('--states')
    mach = str(U.uuid4())
    ctl = [('SATA', 'AHCI', 0, 0), ('IDE', 'PIIX4', 0, 1)]
    base_names = ['%s.vdi' % name, '%s-ide.vdi' % name]
    tmp = os.path.join(d, '.gen.raw')
    # media[disk] = list of (uuid, location) base first
    media = []
    for k, raw in enumerate(raws):
        loc = base_names[k]
        path = os.path.join(d, loc)
        if k == 1 and o.get('--qemu-base2'):
            open(tmp, 'wb').write(raw)
            subprocess.check_call(['qemu-img', 'convert', '-f', 'raw', '-O', 'vdi', tmp, path])
            u = vdi_gen.header(path)['uuid']
        else:
            u = str(U.uuid4())
            open(tmp, 'wb').write(raw)
            vdi_gen.create(path, tmp, u)
        if k == 1 and o.get('--abs2'):
            loc = os.path.abspath(path)
        chain = [(u, loc)]
        cur = raw
        if states:
            open(os.path.join(states, 'disk%d-s1.raw' % k), 'wb').write(cur)
        for s in range(1, nsnap + 1):
            new = change(cur, s, k)
            nu = str(U.uuid4())
            loc2 = 'Snapshots/{%s}.vdi' % nu
            open(tmp, 'wb').write(new)
            old = tmp + '.old'
            open(old, 'wb').write(cur)
            ph = vdi_gen.header(os.path.join(d, chain[-1][1]) if not chain[-1][1].startswith('/') else chain[-1][1])
            vdi_gen.create(os.path.join(d, loc2), tmp, nu, parent=chain[-1][0],
                           pmod=ph['modify'], against=old)
            os.unlink(old)
            chain.append((nu, loc2))
            cur = new
            if states:
                tag = 's%d' % (s + 1) if s < nsnap else 'current'
                open(os.path.join(states, 'disk%d-%s.raw' % (k, tag)), 'wb').write(cur)
        media.append(chain)
    os.unlink(tmp)
    snaps = [str(U.uuid4()) for _ in range(nsnap)]

    def hd(chain, j, ind):
        u, loc = chain[j]
        attrs = 'uuid="{%s}" location="%s" format="VDI"' % (u, loc)
        if j == 0:
            attrs += ' type="Normal"'
        if j + 1 == len(chain):
            return '%s<HardDisk %s/>\n' % (ind, attrs)
        return '%s<HardDisk %s>\n%s%s</HardDisk>\n' % (ind, attrs, hd(chain, j + 1, ind + '  '), ind)

    def controllers(level, ind):
        out = ind + '<StorageControllers>\n'
        for k in range(len(raws)):
            n, t, port, dev = ctl[k]
            out += '%s  <StorageController name="%s" type="%s" PortCount="2" useHostIOCache="false" Bootable="true">\n' % (ind, n, t)
            out += '%s    <AttachedDevice type="HardDisk" hotpluggable="false" port="%d" device="%d">\n' % (ind, port, dev)
            out += '%s      <Image uuid="{%s}"/>\n%s    </AttachedDevice>\n' % (ind, media[k][level][0], ind)
            if k == 1:
                out += '%s    <AttachedDevice passthrough="false" type="DVD" hotpluggable="false" port="1" device="0"/>\n' % ind
            out += '%s  </StorageController>\n' % ind
        return out + ind + '</StorageControllers>\n'

    def hardware(ind, nested_ctl=None):
        out = ind + '<Hardware>\n'
        out += ind + '  <CPU count="2"/>\n' + ind + '  <Memory RAMSize="256"/>\n'
        if o.get('--efi'):
            out += ind + '  <Firmware type="EFI"/>\n'
            out += ind + '  <BIOS>\n' + ind + '    <NVRAM path="%s.nvram"/>\n' % name + ind + '  </BIOS>\n'
        out += ind + '  <Network>\n' + ind + '    <Adapter slot="0" enabled="true" MACAddress="080027%06X" type="82540EM">\n' % (int(mach[:6], 16)) + ind + '      <NAT/>\n' + ind + '    </Adapter>\n' + ind + '  </Network>\n'
        if nested_ctl is not None:
            out += nested_ctl
        return out + ind + '</Hardware>\n'

    def snapshot(s, ind, ns):
        sf = ''
        if s == 1:
            sf = ' stateFile="Snapshots/{%s}.sav"' % snaps[s]
            open(os.path.join(d, 'Snapshots', '{%s}.sav' % snaps[s]), 'wb').write(b'VBox saved state ' * 64)
        out = '%s<Snapshot uuid="{%s}" name="step%d" timeStamp="2026-12-0%dT07:00:00Z"%s>\n' % (ind, snaps[s], s + 1, s + 1, sf)
        # older layout (StorageControllers beside Hardware) for the first,
        # newer (inside Hardware) for the others: both occur in the wild
        if s == 0:
            out += hardware(ind + '  ') + controllers(s, ind + '  ')
        else:
            out += hardware(ind + '  ', controllers(s, ind + '    '))
        if s + 1 < ns:
            out += ind + '  <Snapshots>\n' + snapshot(s + 1, ind + '    ', ns) + ind + '  </Snapshots>\n'
        return out + ind + '</Snapshot>\n'

    def settings(ns):
        """The settings with the first ns snapshots (ns < nsnap: as they
        were before the later snapshots were taken)."""
        x = '<?xml version="1.0"?>\n<!--\n** DO NOT EDIT THIS FILE.\n-->\n'
        x += '<VirtualBox xmlns="http://www.virtualbox.org/" version="1.16-linux">\n'
        x += '  <Machine uuid="{%s}" name="%s" OSType="Other_64" %ssnapshotFolder="Snapshots" lastStateChange="2026-12-07T07:00:00Z">\n' % (
            mach, name, 'currentSnapshot="{%s}" ' % snaps[ns - 1] if ns else '')
        x += '    <MediaRegistry>\n      <HardDisks>\n'
        for chain in media:
            x += hd(chain[:ns + 1], 0, '        ')
        x += '      </HardDisks>\n    </MediaRegistry>\n'
        x += '    <ExtraData>\n      <ExtraDataItem name="GUI/LastCloseAction" value="PowerOff"/>\n    </ExtraData>\n'
        if ns:
            x += snapshot(0, '    ', ns)
        x += hardware('    ')
        x += controllers(ns, '    ')
        x += '  </Machine>\n</VirtualBox>\n'
        return x

    open(os.path.join(d, name + '.vbox'), 'w').write(settings(nsnap))
    if o.get('--before-live'):
        open(o['--before-live'], 'w').write(settings(nsnap - 1))
        print(snaps[-1], file=open(o['--before-live'] + '.snap', 'w'))
    if o.get('--efi'):
        open(os.path.join(d, name + '.nvram'), 'wb').write(b'NVRAM' + os.urandom(4091))
    print(mach)


if __name__ == '__main__':
    main(sys.argv[1:])
