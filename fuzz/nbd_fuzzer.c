/*
 * Fuzz target: the NBD server's option and request parser
 * (lib/nbd/session.c).  The input is everything a client sends, from the
 * client flags through the options to the transmission requests; the
 * session runs over it exactly as over a socket, against two exports of
 * a 1 MiB disk in memory (read-only "ro" with holes, and "rw" with an
 * overlay file), and its replies are dropped.  Any crash, sanitizer
 * report or hang is the finding.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "nbd/nbd.h"
#include "vmbackup/sys/disk_format.h"

#define DISK_SIZE (1u << 20)

struct mem {
	const uint8_t *p;
	size_t left;
};

static int m_recv(void *ctx, void *buf, size_t len)
{
	struct mem *m = ctx;
	if (len > m->left)
		return -1;
	memcpy(buf, m->p, len);
	m->p += len;
	m->left -= len;
	return 0;
}

static int m_send(void *ctx, const void *buf, size_t len, int more)
{
	(void)ctx; (void)buf; (void)len; (void)more;
	return 0;
}

static uint64_t d_size(void *data) { (void)data; return DISK_SIZE; }

static int d_read(void *data, void *buf, uint64_t off, size_t len)
{
	uint8_t *o = buf;
	(void)data;
	for (size_t i = 0; i < len; i++)
		o[i] = (uint8_t)((off + i) * 7 / 4096);
	return 0;
}

/* 64 KiB extents: data, zero, hole, data ... */
static int d_map(void *data, uint64_t off, uint64_t len, vmb_extent_fn fn,
		 void *payload)
{
	uint64_t end = off + len;
	(void)data;
	while (off < end) {
		uint64_t e = (off / 65536 + 1) * 65536;
		vmb_extent x = { off, (e < end ? e : end) - off,
				 (int)(off / 65536 % 3), 0 };
		if (fn(&x, payload))
			return 0;
		off = x.offset + x.length;
	}
	return 0;
}

static const vmb_disk_ops ops = { 1, "mem", d_size, d_read, d_map, NULL,
				  NULL };
static nbd_export ex[2];

static void setup(void)
{
	char path[] = "/tmp/vmb-nbd-fuzz-XXXXXX";
	vmb_disk *ro, *base, *view;
	struct vmb_overlay *ovl;
	int fd = mkstemp(path);
	if (fd < 0 || vmb_disk_new(&ops, NULL, &ro) ||
	    vmb_disk_new(&ops, NULL, &base))
		abort();
	close(fd);
	if (vmb_overlay_open(path, base, "repo", "snap", "rw", 1, &ovl, &view))
		abort();
	unlink(path); /* the open file stays */
	ex[0].name = "ro";
	ex[0].description = "read-only";
	ex[0].disk = ro;
	ex[1].name = "rw";
	ex[1].disk = view;
	ex[1].ovl = ovl;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mem m = { data, size };
	nbd_io io = { &m, m_recv, m_send };
	if (!ex[0].disk)
		setup();
	vmb_nbd_session(ex, 2, &io);
	return 0;
}
