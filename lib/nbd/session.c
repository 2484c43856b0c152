/*
 * One NBD client session: the fixed newstyle handshake, the options we
 * support, then the transmission phase (docs/serve.md lists the subset).
 *
 * The client is hostile: every length is bounded before anything is
 * read into memory, every offset checked against the export's size with
 * overflow-safe arithmetic, and a malformed option or request gets the
 * protocol's error (or, where the stream can no longer be trusted, the
 * end of the session), never a crash or an unbounded allocation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/util.h"
#include "nbd.h"

struct sess {
	const nbd_export *ex;
	size_t nex;
	const nbd_io *io;
	int no_zeroes;
	int structured;
	int meta;           /* base:allocation selected for meta_export */
	char meta_export[NBD_MAX_OPTION_LEN + 1];
	const nbd_export *cur;
	uint8_t *buf;       /* NBD_IO_BUF bytes */
	uint64_t served;
};

static int rx(struct sess *s, void *buf, size_t len)
{
	return len ? s->io->recv(s->io->ctx, buf, len) : 0;
}

static int tx(struct sess *s, const void *buf, size_t len, int more)
{
	return len ? s->io->send(s->io->ctx, buf, len, more) : 0;
}

/* Read and drop @len bytes. */
static int skip(struct sess *s, uint64_t len)
{
	while (len) {
		size_t n = (size_t)VMB_MIN(len, (uint64_t)NBD_IO_BUF);
		if (rx(s, s->buf, n))
			return -1;
		len -= n;
	}
	return 0;
}

/* ---- handshake ---- */

static int opt_reply(struct sess *s, uint32_t opt, uint32_t type,
		     const void *data, size_t len)
{
	uint8_t h[20];
	vmb_put_be64(h, NBD_REP_MAGIC);
	vmb_put_be32(h + 8, opt);
	vmb_put_be32(h + 12, type);
	vmb_put_be32(h + 16, (uint32_t)len);
	if (tx(s, h, sizeof h, len > 0))
		return -1;
	return tx(s, data, len, 0);
}

static int opt_error(struct sess *s, uint32_t opt, uint32_t type,
		     const char *msg)
{
	return opt_reply(s, opt, type, msg, strlen(msg));
}

static const nbd_export *find_export(struct sess *s, const uint8_t *name,
				     size_t len)
{
	if (!s->nex)
		return NULL;
	if (len == 0)
		return &s->ex[0]; /* the default export */
	for (size_t i = 0; i < s->nex; i++)
		if (strlen(s->ex[i].name) == len &&
		    memcmp(s->ex[i].name, name, len) == 0)
			return &s->ex[i];
	return NULL;
}

static uint16_t export_flags(const nbd_export *e)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_CAN_MULTI_CONN;
	if (e->ovl)
		f |= NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
		     NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
		     NBD_FLAG_SEND_FAST_ZERO;
	else
		f |= NBD_FLAG_READ_ONLY;
	return f;
}

static int info_reply(struct sess *s, uint32_t opt, uint16_t type,
		      const void *data, size_t len)
{
	uint8_t b[2 + 4096];
	if (len > sizeof b - 2)
		len = sizeof b - 2;
	vmb_put_be16(b, type);
	memcpy(b + 2, data, len);
	return opt_reply(s, opt, NBD_REP_INFO, b, 2 + len);
}

/* NBD_OPT_INFO / NBD_OPT_GO: u32 name length, name, u16 count, u16s.
 * @return 1 to enter transmission, 0 to go on, -1 to end. */
static int opt_info_go(struct sess *s, uint32_t opt, const uint8_t *d,
		       uint32_t len)
{
	uint32_t nlen;
	uint16_t nreq;
	uint8_t b[12];
	const nbd_export *e;
	int want_name = 0, want_desc = 0;

	if (len < 6)
		return opt_error(s, opt, NBD_REP_ERR_INVALID,
				 "option too short");
	nlen = vmb_be32(d);
	if (nlen > len - 6)
		return opt_error(s, opt, NBD_REP_ERR_INVALID,
				 "export name longer than the option");
	nreq = vmb_be16(d + 4 + nlen);
	if ((uint64_t)len != 6u + nlen + 2u * (uint64_t)nreq)
		return opt_error(s, opt, NBD_REP_ERR_INVALID,
				 "option length does not match its contents");
	for (uint32_t i = 0; i < nreq; i++) {
		uint16_t t = vmb_be16(d + 6 + nlen + 2 * i);
		want_name |= t == NBD_INFO_NAME;
		want_desc |= t == NBD_INFO_DESCRIPTION;
	}
	e = find_export(s, d + 4, nlen);
	if (!e)
		return opt_error(s, opt, NBD_REP_ERR_UNKNOWN,
				 "no export of that name");
	vmb_put_be64(b, vmb_disk_size(e->disk));
	vmb_put_be16(b + 8, export_flags(e));
	if (info_reply(s, opt, NBD_INFO_EXPORT, b, 10))
		return -1;
	if (want_name && info_reply(s, opt, NBD_INFO_NAME, e->name,
				    strlen(e->name)))
		return -1;
	if (want_desc && e->description &&
	    info_reply(s, opt, NBD_INFO_DESCRIPTION, e->description,
		       strlen(e->description)))
		return -1;
	vmb_put_be32(b, 1);                 /* minimum */
	vmb_put_be32(b + 4, 4096);          /* preferred */
	vmb_put_be32(b + 8, NBD_MAX_PAYLOAD); /* maximum */
	if (info_reply(s, opt, NBD_INFO_BLOCK_SIZE, b, 12))
		return -1;
	if (opt_reply(s, opt, NBD_REP_ACK, NULL, 0))
		return -1;
	if (opt != NBD_OPT_GO)
		return 0;
	/* contexts were chosen for one export; another one gets none */
	if (s->meta && strcmp(s->meta_export, e->name) != 0)
		s->meta = 0;
	s->cur = e;
	return 1;
}

static int opt_list(struct sess *s, uint32_t len)
{
	if (len)
		return opt_error(s, NBD_OPT_LIST, NBD_REP_ERR_INVALID,
				 "NBD_OPT_LIST takes no data");
	for (size_t i = 0; i < s->nex; i++) {
		size_t n = strlen(s->ex[i].name);
		uint8_t b[4 + 256];
		if (n > 256)
			n = 256;
		vmb_put_be32(b, (uint32_t)n);
		memcpy(b + 4, s->ex[i].name, n);
		if (opt_reply(s, NBD_OPT_LIST, NBD_REP_SERVER, b, 4 + n))
			return -1;
	}
	return opt_reply(s, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_LIST/SET_META_CONTEXT: u32 name length, name, u32 count,
 * then count times u32 length + query. */
static int opt_meta(struct sess *s, uint32_t opt, const uint8_t *d,
		    uint32_t len)
{
	static const char ctx[] = "base:allocation";
	uint32_t nlen, nq, pos;
	int set = opt == NBD_OPT_SET_META_CONTEXT, chosen = 0;
	uint8_t b[4 + sizeof ctx];

	if (set && !s->structured)
		return opt_error(s, opt, NBD_REP_ERR_INVALID,
				 "structured replies must be negotiated "
				 "first");
	if (len < 8)
		return opt_error(s, opt, NBD_REP_ERR_INVALID,
				 "option too short");
	nlen = vmb_be32(d);
	if (nlen > len - 8)
		return opt_error(s, opt, NBD_REP_ERR_INVALID,
				 "export name longer than the option");
	nq = vmb_be32(d + 4 + nlen);
	pos = 8 + nlen;
	/* validate the whole option before answering anything */
	for (uint32_t i = 0; i < nq; i++) {
		uint32_t ql;
		if (len - pos < 4)
			return opt_error(s, opt, NBD_REP_ERR_INVALID,
					 "query count beyond the option");
		ql = vmb_be32(d + pos);
		if (ql > len - pos - 4)
			return opt_error(s, opt, NBD_REP_ERR_INVALID,
					 "query longer than the option");
		pos += 4 + ql;
	}
	if (pos != len)
		return opt_error(s, opt, NBD_REP_ERR_INVALID,
				 "option length does not match its contents");
	if (!find_export(s, d + 4, nlen))
		return opt_error(s, opt, NBD_REP_ERR_UNKNOWN,
				 "no export of that name");
	vmb_put_be32(b, NBD_BASE_ALLOCATION_ID);
	memcpy(b + 4, ctx, sizeof ctx - 1);
	pos = 8 + nlen;
	if (nq == 0 && !set)
		chosen = 1; /* LIST with no query: everything we have */
	for (uint32_t i = 0; i < nq && !chosen; i++) {
		uint32_t ql = vmb_be32(d + pos);
		const uint8_t *q = d + pos + 4;
		pos += 4 + ql;
		if (ql == sizeof ctx - 1 && memcmp(q, ctx, ql) == 0)
			chosen = 1;
		else if (!set && ql == 5 && memcmp(q, "base:", 5) == 0)
			chosen = 1;
	}
	if (chosen && opt_reply(s, opt, NBD_REP_META_CONTEXT, b,
				4 + sizeof ctx - 1))
		return -1;
	if (set) {
		s->meta = chosen;
		memcpy(s->meta_export, d + 4, nlen);
		s->meta_export[nlen] = 0;
		if (strlen(s->meta_export) != nlen)
			s->meta = 0; /* a NUL inside: no export has it */
		if (nlen == 0 && s->nex)
			snprintf(s->meta_export, sizeof s->meta_export, "%s",
				 s->ex[0].name);
	}
	return opt_reply(s, opt, NBD_REP_ACK, NULL, 0);
}

/* @return 1: transmission on s->cur; 0: end the session. */
static int handshake(struct sess *s)
{
	uint8_t h[18];
	vmb_put_be64(h, NBD_MAGIC);
	vmb_put_be64(h + 8, NBD_IHAVEOPT);
	vmb_put_be16(h + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (tx(s, h, sizeof h, 0) || rx(s, h, 4))
		return 0;
	uint32_t cflags = vmb_be32(h);
	if (!(cflags & NBD_FLAG_C_FIXED_NEWSTYLE) ||
	    (cflags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)))
		return 0; /* unknown client flags: the spec says disconnect */
	s->no_zeroes = !!(cflags & NBD_FLAG_C_NO_ZEROES);

	for (uint32_t n = 0; n < NBD_MAX_OPTIONS; n++) {
		uint8_t oh[16];
		uint32_t opt, len;
		int r;
		if (rx(s, oh, sizeof oh) || vmb_be64(oh) != NBD_IHAVEOPT)
			return 0;
		opt = vmb_be32(oh + 8);
		len = vmb_be32(oh + 12);
		if (len > NBD_MAX_OPTION_LEN) {
			if (opt == NBD_OPT_EXPORT_NAME || skip(s, len))
				return 0;
			if (opt_error(s, opt, NBD_REP_ERR_TOO_BIG,
				      "option too long"))
				return 0;
			continue;
		}
		if (rx(s, s->buf, len))
			return 0;
		switch (opt) {
		case NBD_OPT_EXPORT_NAME: {
			uint8_t b[10 + 124];
			s->cur = find_export(s, s->buf, len);
			if (!s->cur)
				return 0; /* no way to say no but hanging up */
			memset(b, 0, sizeof b);
			vmb_put_be64(b, vmb_disk_size(s->cur->disk));
			vmb_put_be16(b + 8, export_flags(s->cur));
			s->meta = 0;
			return tx(s, b, s->no_zeroes ? 10 : sizeof b, 0) == 0;
		}
		case NBD_OPT_ABORT:
			opt_reply(s, opt, NBD_REP_ACK, NULL, 0);
			return 0;
		case NBD_OPT_LIST:
			r = opt_list(s, len);
			break;
		case NBD_OPT_INFO:
		case NBD_OPT_GO:
			r = opt_info_go(s, opt, s->buf, len);
			if (r == 1)
				return 1;
			break;
		case NBD_OPT_STRUCTURED_REPLY:
			if (len)
				r = opt_error(s, opt, NBD_REP_ERR_INVALID,
					      "NBD_OPT_STRUCTURED_REPLY takes "
					      "no data");
			else {
				s->structured = 1;
				r = opt_reply(s, opt, NBD_REP_ACK, NULL, 0);
			}
			break;
		case NBD_OPT_LIST_META_CONTEXT:
		case NBD_OPT_SET_META_CONTEXT:
			r = opt_meta(s, opt, s->buf, len);
			break;
		case NBD_OPT_STARTTLS:
			r = opt_error(s, opt, NBD_REP_ERR_POLICY,
				      "no TLS: use a Unix socket or 127.0.0.1");
			break;
		default:
			r = opt_error(s, opt, NBD_REP_ERR_UNSUP,
				      "option not supported");
		}
		if (r < 0)
			return 0;
	}
	return 0; /* an endless option loop */
}

/* ---- transmission ---- */

static int simple_reply(struct sess *s, uint64_t cookie, uint32_t err,
			int more)
{
	uint8_t h[16];
	vmb_put_be32(h, NBD_SIMPLE_REPLY_MAGIC);
	vmb_put_be32(h + 4, err);
	vmb_put_be64(h + 8, cookie);
	return tx(s, h, sizeof h, more);
}

static int chunk_hdr(struct sess *s, uint64_t cookie, uint16_t flags,
		     uint16_t type, uint32_t len)
{
	uint8_t h[20];
	vmb_put_be32(h, NBD_STRUCTURED_REPLY_MAGIC);
	vmb_put_be16(h + 4, flags);
	vmb_put_be16(h + 6, type);
	vmb_put_be64(h + 8, cookie);
	vmb_put_be32(h + 16, len);
	return tx(s, h, sizeof h, len > 0);
}

/* An error for @cookie: a structured error chunk for READ and
 * BLOCK_STATUS once structured replies are on, else a simple reply. */
static int reply_error(struct sess *s, uint64_t cookie, int structured,
		       uint32_t err, const char *msg)
{
	uint8_t b[6 + 128];
	size_t n;
	if (!structured)
		return simple_reply(s, cookie, err, 0);
	n = VMB_MIN(strlen(msg), (size_t)128);
	vmb_put_be32(b, err);
	vmb_put_be16(b + 4, (uint16_t)n);
	memcpy(b + 6, msg, n);
	if (chunk_hdr(s, cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
		      (uint32_t)(6 + n)))
		return -1;
	return tx(s, b, 6 + n, 0);
}

static uint32_t wire_error(int rc)
{
	switch (rc) {
	case VMB_ENOMEM: return NBD_ENOMEM;
	case VMB_ENOSPC: return NBD_ENOSPC;
	case VMB_EINVAL: return NBD_EINVAL;
	case VMB_ENOTSUP: return NBD_ENOTSUP;
	case VMB_EACCES: return NBD_EPERM;
	default: return NBD_EIO;
	}
}

/* The first extent of [off, end), its kind in *kind. */
struct first_ext {
	uint64_t len;
	int kind;
};

static int first_cb(const vmb_extent *e, void *payload)
{
	struct first_ext *f = payload;
	f->len = e->length;
	f->kind = e->kind;
	return 1;
}

static int next_extent(vmb_disk *d, uint64_t off, uint64_t len,
		       struct first_ext *f)
{
	f->len = 0;
	f->kind = VMB_EXTENT_DATA;
	if (vmb_disk_map(d, off, len, first_cb, f) || f->len == 0 ||
	    f->len > len)
		f->len = len, f->kind = VMB_EXTENT_DATA; /* read it */
	return 0;
}

/* NBD_CMD_READ, with [off, off+len) checked. @return -1 to end. */
static int cmd_read(struct sess *s, uint64_t cookie, uint64_t off,
		    uint32_t len)
{
	vmb_disk *d = s->cur->disk;
	uint64_t end = off + len;
	int rc;

	if (!s->structured) {
		/* simple reply: the header says success before the data,
		 * so a failure after the first piece ends the session */
		size_t n = VMB_MIN((size_t)len, (size_t)NBD_IO_BUF);
		rc = vmb_disk_read(d, s->buf, off, n);
		if (rc)
			return simple_reply(s, cookie, wire_error(rc), 0);
		if (simple_reply(s, cookie, 0, 1) || tx(s, s->buf, n, 0))
			return -1;
		for (off += n; off < end; off += n) {
			n = (size_t)VMB_MIN(end - off, (uint64_t)NBD_IO_BUF);
			if (vmb_disk_read(d, s->buf, off, n) ||
			    tx(s, s->buf, n, 0))
				return -1;
		}
		return 0;
	}
	while (off < end) {
		struct first_ext f;
		next_extent(d, off, end - off, &f);
		if (f.kind != VMB_EXTENT_DATA) {
			uint8_t b[12];
			vmb_put_be64(b, off);
			vmb_put_be32(b + 8, (uint32_t)f.len);
			if (chunk_hdr(s, cookie, 0, NBD_REPLY_TYPE_OFFSET_HOLE,
				      12) || tx(s, b, 12, 0))
				return -1;
			off += f.len;
			continue;
		}
		for (uint64_t e = off + f.len; off < e;) {
			/* pieces aligned to the buffer size, so the
			 * cache below sees whole blocks */
			size_t n = (size_t)VMB_MIN(e - off, NBD_IO_BUF -
						   off % NBD_IO_BUF);
			rc = vmb_disk_read(d, s->buf + 8, off, n);
			if (rc)
				return reply_error(s, cookie, 1,
						   wire_error(rc),
						   vmb_error_message());
			vmb_put_be64(s->buf, off);
			if (chunk_hdr(s, cookie, 0, NBD_REPLY_TYPE_OFFSET_DATA,
				      (uint32_t)(8 + n)) ||
			    tx(s, s->buf, 8 + n, 0))
				return -1;
			off += n;
		}
	}
	return chunk_hdr(s, cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE,
			 0);
}

struct bs_walk {
	uint8_t *out;      /* descriptors after the context id */
	uint32_t n, max;
};

static uint32_t state_of(int kind)
{
	/* a repository stores all-zero and unallocated chunks alike as a
	 * marker: no data behind them, and they read as zeros */
	return kind == VMB_EXTENT_DATA ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO;
}

static int bs_cb(const vmb_extent *e, void *payload)
{
	struct bs_walk *w = payload;
	uint32_t st = state_of(e->kind);
	if (w->n && vmb_be32(w->out + 8 * (w->n - 1) + 4) == st) {
		/* merge with the previous one (lengths stay < 2^32: the
		 * request's length bounds their sum) */
		uint8_t *p = w->out + 8 * (w->n - 1);
		vmb_put_be32(p, (uint32_t)(vmb_be32(p) + e->length));
		return 0;
	}
	if (w->n == w->max)
		return 1;
	vmb_put_be32(w->out + 8 * w->n, (uint32_t)e->length);
	vmb_put_be32(w->out + 8 * w->n + 4, st);
	w->n++;
	return 0;
}

static int cmd_block_status(struct sess *s, uint64_t cookie, uint16_t flags,
			    uint64_t off, uint32_t len)
{
	struct bs_walk w = { s->buf + 4, 0,
			     (flags & NBD_CMD_FLAG_REQ_ONE) ? 1 :
			     NBD_MAX_EXTENTS };
	int rc = vmb_disk_map(s->cur->disk, off, len, bs_cb, &w);
	if (rc)
		return reply_error(s, cookie, 1, wire_error(rc),
				   vmb_error_message());
	if (w.n == 0) { /* a map that said nothing: all data */
		vmb_put_be32(w.out, len);
		vmb_put_be32(w.out + 4, 0);
		w.n = 1;
	}
	vmb_put_be32(s->buf, NBD_BASE_ALLOCATION_ID);
	if (chunk_hdr(s, cookie, NBD_REPLY_FLAG_DONE,
		      NBD_REPLY_TYPE_BLOCK_STATUS, 4 + 8 * w.n))
		return -1;
	return tx(s, s->buf, 4 + 8 * w.n, 0);
}

/* NBD_CMD_WRITE: the payload is always consumed, so the stream stays in
 * step whatever the answer. */
static int cmd_write(struct sess *s, uint64_t cookie, uint16_t flags,
		     uint64_t off, uint32_t len, uint32_t err)
{
	int rc = 0;
	for (uint32_t done = 0; done < len;) {
		size_t n = VMB_MIN((size_t)(len - done), (size_t)NBD_IO_BUF);
		if (rx(s, s->buf, n))
			return -1;
		if (!err && !rc)
			rc = vmb_overlay_write(s->cur->ovl, s->buf,
					       off + done, n);
		done += (uint32_t)n;
	}
	if (!err && !rc && (flags & NBD_CMD_FLAG_FUA))
		rc = vmb_overlay_flush(s->cur->ovl);
	if (!err && rc)
		err = wire_error(rc);
	return simple_reply(s, cookie, err, 0);
}

static void transmission(struct sess *s)
{
	const nbd_export *e = s->cur;
	uint64_t size = vmb_disk_size(e->disk);

	for (;;) {
		uint8_t h[28];
		uint16_t flags, type, allowed = 0;
		uint64_t cookie, off;
		uint32_t len, err = 0;
		int r = 0, st;

		if (rx(s, h, sizeof h) || vmb_be32(h) != NBD_REQUEST_MAGIC)
			return;
		flags = vmb_be16(h + 4);
		type = vmb_be16(h + 6);
		cookie = vmb_be64(h + 8);
		off = vmb_be64(h + 16);
		len = vmb_be32(h + 24);
		s->served++;
		st = s->structured &&
		     (type == NBD_CMD_READ || type == NBD_CMD_BLOCK_STATUS);

		switch (type) {
		case NBD_CMD_WRITE:
			allowed = NBD_CMD_FLAG_FUA;
			if (len > NBD_MAX_PAYLOAD)
				return; /* too much to skip: hang up */
			if (!e->ovl)
				err = NBD_EPERM;
			else if (!vmb_range_ok(off, len, size))
				err = NBD_ENOSPC;
			else if (flags & ~allowed)
				err = NBD_EINVAL;
			r = cmd_write(s, cookie, flags, off, len, err);
			break;
		case NBD_CMD_READ:
			if (flags & ~allowed)
				err = NBD_EINVAL;
			else if (len == 0 || len > NBD_MAX_PAYLOAD)
				err = NBD_EINVAL;
			else if (!vmb_range_ok(off, len, size))
				err = NBD_EINVAL;
			r = err ? reply_error(s, cookie, st, err,
					      "read outside the export")
				: cmd_read(s, cookie, off, len);
			break;
		case NBD_CMD_DISC:
			return;
		case NBD_CMD_FLUSH:
			if (!e->ovl)
				err = NBD_EINVAL;
			else {
				int rc = vmb_overlay_flush(e->ovl);
				err = rc ? wire_error(rc) : 0;
			}
			r = simple_reply(s, cookie, err, 0);
			break;
		case NBD_CMD_TRIM:
		case NBD_CMD_WRITE_ZEROES:
			allowed = NBD_CMD_FLAG_FUA;
			if (type == NBD_CMD_WRITE_ZEROES)
				allowed |= NBD_CMD_FLAG_NO_HOLE |
					   NBD_CMD_FLAG_FAST_ZERO;
			if (!e->ovl)
				err = NBD_EPERM;
			else if (flags & ~allowed)
				err = NBD_EINVAL;
			else if (!vmb_range_ok(off, len, size))
				err = NBD_ENOSPC;
			else {
				/* a trimmed range reads as zeros too */
				int rc = vmb_overlay_zero(e->ovl, off, len);
				if (!rc && (flags & NBD_CMD_FLAG_FUA))
					rc = vmb_overlay_flush(e->ovl);
				err = rc ? wire_error(rc) : 0;
			}
			r = simple_reply(s, cookie, err, 0);
			break;
		case NBD_CMD_BLOCK_STATUS:
			allowed = NBD_CMD_FLAG_REQ_ONE;
			if (!s->meta || !s->structured)
				err = NBD_EINVAL;
			else if (flags & ~allowed)
				err = NBD_EINVAL;
			else if (len == 0 || !vmb_range_ok(off, len, size))
				err = NBD_EINVAL;
			r = err ? reply_error(s, cookie, st, err,
					      "bad block status request")
				: cmd_block_status(s, cookie, flags, off, len);
			break;
		default:
			r = reply_error(s, cookie, st, NBD_EINVAL,
					"command not supported");
		}
		if (r < 0)
			return;
	}
}

uint64_t vmb_nbd_session(const nbd_export *ex, size_t nex, const nbd_io *io)
{
	struct sess *s = calloc(1, sizeof *s);
	uint64_t served = 0;
	if (!s)
		return 0;
	s->ex = ex;
	s->nex = nex;
	s->io = io;
	s->buf = malloc(NBD_IO_BUF + 64); /* + an OFFSET_DATA header */
	if (s->buf && handshake(s))
		transmission(s);
	served = s->served;
	free(s->buf);
	free(s);
	return served;
}
