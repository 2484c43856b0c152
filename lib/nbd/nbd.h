/*
 * Internal: our NBD server (docs/serve.md).  The wire constants follow
 * the NBD protocol document (doc/proto.md of the NBD project) and agree
 * with libnbd's (/usr/include/libnbd.h); note NBD_OPT_LIST_META_CONTEXT
 * is 9 and NBD_OPT_SET_META_CONTEXT 10.
 *
 * The session (session.c) runs over an nbd_io, so the fuzz target drives
 * the same code from memory that the server drives from a socket.
 */
#ifndef VMB_LIB_NBD_NBD_H
#define VMB_LIB_NBD_NBD_H

#include <stddef.h>
#include <stdint.h>
#include "vmbackup/disk.h"

/* handshake */
#define NBD_MAGIC 0x4e42444d41474943ULL           /* "NBDMAGIC" */
#define NBD_IHAVEOPT 0x49484156454f5054ULL        /* "IHAVEOPT" */
#define NBD_REP_MAGIC 0x0003e889045565a9ULL
#define NBD_FLAG_FIXED_NEWSTYLE 0x1u
#define NBD_FLAG_NO_ZEROES 0x2u
#define NBD_FLAG_C_FIXED_NEWSTYLE 0x1u
#define NBD_FLAG_C_NO_ZEROES 0x2u

/* options */
#define NBD_OPT_EXPORT_NAME 1u
#define NBD_OPT_ABORT 2u
#define NBD_OPT_LIST 3u
#define NBD_OPT_STARTTLS 5u
#define NBD_OPT_INFO 6u
#define NBD_OPT_GO 7u
#define NBD_OPT_STRUCTURED_REPLY 8u
#define NBD_OPT_LIST_META_CONTEXT 9u
#define NBD_OPT_SET_META_CONTEXT 10u

/* option replies */
#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_META_CONTEXT 4u
#define NBD_REP_ERR(n) (0x80000000u | (n))
#define NBD_REP_ERR_UNSUP NBD_REP_ERR(1u)
#define NBD_REP_ERR_POLICY NBD_REP_ERR(2u)
#define NBD_REP_ERR_INVALID NBD_REP_ERR(3u)
#define NBD_REP_ERR_UNKNOWN NBD_REP_ERR(6u)
#define NBD_REP_ERR_TOO_BIG NBD_REP_ERR(9u)

/* NBD_REP_INFO types */
#define NBD_INFO_EXPORT 0u
#define NBD_INFO_NAME 1u
#define NBD_INFO_DESCRIPTION 2u
#define NBD_INFO_BLOCK_SIZE 3u

/* transmission flags */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)
#define NBD_FLAG_SEND_FAST_ZERO (1u << 11)

/* requests */
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu
#define NBD_CMD_READ 0u
#define NBD_CMD_WRITE 1u
#define NBD_CMD_DISC 2u
#define NBD_CMD_FLUSH 3u
#define NBD_CMD_TRIM 4u
#define NBD_CMD_WRITE_ZEROES 6u
#define NBD_CMD_BLOCK_STATUS 7u
#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_CMD_FLAG_DF (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* structured reply chunks */
#define NBD_REPLY_FLAG_DONE 0x1u
#define NBD_REPLY_TYPE_NONE 0u
#define NBD_REPLY_TYPE_OFFSET_DATA 1u
#define NBD_REPLY_TYPE_OFFSET_HOLE 2u
#define NBD_REPLY_TYPE_BLOCK_STATUS 5u
#define NBD_REPLY_TYPE_ERROR 0x8001u

/* base:allocation */
#define NBD_STATE_HOLE 0x1u
#define NBD_STATE_ZERO 0x2u

/* errors on the wire */
#define NBD_EPERM 1u
#define NBD_EIO 5u
#define NBD_ENOMEM 12u
#define NBD_EINVAL 22u
#define NBD_ENOSPC 28u
#define NBD_EOVERFLOW 75u
#define NBD_ENOTSUP 95u

/* our limits */
#define NBD_MAX_OPTION_LEN 65536u     /* longest option we read */
#define NBD_MAX_OPTIONS 4096u         /* options per connection */
#define NBD_MAX_PAYLOAD (32u << 20)   /* longest READ/WRITE */
#define NBD_IO_BUF (1u << 20)         /* per-connection buffer */
#define NBD_MAX_EXTENTS 1024u         /* descriptors per BLOCK_STATUS */
#define NBD_BASE_ALLOCATION_ID 1u     /* our context id */

struct vmb_overlay;
struct vmb_cache;

/* One export.  @disk gives reads and the allocation map (the cache, or
 * the overlay's view over it); @ovl takes writes (NULL: read-only). */
typedef struct nbd_export {
	char *name;
	char *description;
	vmb_disk *disk;
	struct vmb_overlay *ovl;
} nbd_export;

/* Byte stream of one client. */
typedef struct nbd_io {
	void *ctx;
	/* exactly @len bytes: 0, or -1 at end of stream or error */
	int (*recv)(void *ctx, void *buf, size_t len);
	/* all of @len bytes (@more: more follows at once): 0 or -1 */
	int (*send)(void *ctx, const void *buf, size_t len, int more);
} nbd_io;

/* Serve one client from the handshake to its end (NBD_CMD_DISC, end of
 * stream, a protocol violation).  Every byte from the client is checked;
 * nothing it sends can make this fail other than by ending the session.
 * @return the number of requests served. */
uint64_t vmb_nbd_session(const nbd_export *ex, size_t nex, const nbd_io *io);

/* ---- overlay.c: writes of a --writable export ---- */

/* Open (@create: create) the overlay file @path over @base (borrowed).
 * @snap/@disk/@repo_id identify what it belongs to and must match on
 * reopen.  @view reads base + overlay; closing it closes the overlay. */
int vmb_overlay_open(const char *path, vmb_disk *base, const char *repo_id,
		     const char *snap, const char *disk, int create,
		     struct vmb_overlay **ovl, vmb_disk **view);
int vmb_overlay_write(struct vmb_overlay *o, const void *buf, uint64_t off,
		      size_t len);
int vmb_overlay_zero(struct vmb_overlay *o, uint64_t off, uint64_t len);
int vmb_overlay_flush(struct vmb_overlay *o);
/* What an overlay file belongs to (no base needed). */
int vmb_overlay_identify(const char *path, char repo_id[65], char snap[65],
			 char disk[257], uint64_t *size);

/* ---- cache.c: the LRU chunk cache with read-ahead ---- */

/* A disk reading @base (owned: closed with the cache) through an LRU of
 * @block-byte blocks holding at most @budget bytes. */
int vmb_cache_open(vmb_disk *base, uint32_t block, size_t budget,
		   vmb_disk **out, struct vmb_cache **cache);
void vmb_cache_stats(struct vmb_cache *c, uint64_t *hits, uint64_t *misses,
		     size_t *bytes);

#endif
