#!/bin/bash
# A stand-in for qemu-system-x86_64 (VMB_QEMU=.../fake-qemu.sh) for
# tests/cli/cli_boot_qemu_fake.sh: it checks what the qemu runner hands
# it (fd 3 connected to our NBD server: the server's greeting must be
# there; the options that keep the guest away from the network and the
# repository) and then behaves as $FAKE_QEMU_MODE says, so the runner's
# logic (match, flood, timeout, kill, KVM failure and TCG rerun, QEMU
# errors) is tested on any machine, with or without QEMU and /dev/kvm.
printf '%s\n' "$@" >"$FAKE_QEMU_ARGS.$$"
greeting=$(python3 -c 'import os,sys; d=os.read(3,18); sys.stdout.write(d[:16].decode("latin1"))' 2>/dev/null)
[ "$greeting" = NBDMAGICIHAVEOPT ] || { echo "fake-qemu: no NBD greeting on fd 3: '$greeting'" >&2; exit 1; }
args=" $* "
for want in " -nodefaults " " -nic none " " -display none " " -no-reboot " "snapshot=on" "file.server.type=fd,file.server.str=3" " -serial stdio "; do
	case $args in *"$want"*) ;; *) echo "fake-qemu: no '$want' in:$args" >&2; exit 1;; esac
done
case $args in *" -accel kvm "*) kvm=1;; *) kvm=0;; esac
case ${FAKE_QEMU_MODE:-marker} in
marker) printf 'SeaBIOS\r\nfake-boot-ok: 1\r\n'; exec sleep 60;;
nul) printf 'a\0b\x1b[2Jfake-boot-ok\n'; exec sleep 60;;
flood) exec yes 'fake flood line';;
hang) printf 'booting...\n'; exec sleep 60;;
silent) exec sleep 60;;
poweroff) printf 'hello from the guest\n'; exit 0;;
fail) echo "qemu-system-x86_64: warning: something harmless" >&2
      echo "qemu-system-x86_64: -drive fake: Could not open" >&2; exit 1;;
fallback) [ $kvm = 1 ] && echo "qemu-system-x86_64: falling back to tcg" >&2
	  printf 'fake-boot-ok\n'; exec sleep 60;;
kvmerr) if [ $kvm = 1 ]; then # past the 4 KiB of stderr the runner keeps
		for i in $(seq 200); do echo "qemu-system-x86_64: warning: host doesn't support requested feature $i" >&2; done
		echo "KVM internal error. Suberror: 1" >&2; exec sleep 60; fi
	printf 'fake-boot-ok under tcg\n'; exec sleep 60;;
esac
