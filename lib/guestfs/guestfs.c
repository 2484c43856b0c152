/*
 * ext2/3/4 file systems read straight from a vmb_disk through libext2fs,
 * and files copied out of them (include/vmbackup/guestfs.h,
 * docs/instant.md "Single-file restore").
 *
 * libext2fs reads through an io_manager of ours (vmbio_*): block reads
 * become vmb_disk_read() calls at the partition's offset, bounded by the
 * partition's length; every write entry point refuses.  A read error of
 * the disk (a damaged chunk) is kept and handed back as the vmb error it
 * was, so the CLI still exits 3 for damage.
 *
 * Extraction writes only relative to open folder descriptors, with
 * O_NOFOLLOW | O_EXCL, from names checked one at a time: a hostile file
 * system cannot name its way out of the destination.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>
#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>
#include <et/com_err.h>
#include "vmbackup/guestfs.h"
#include "guestfs/guestfs_internal.h"
#include "common/util.h"
#include "nbd/nbd.h" /* the LRU chunk cache of vmb serve */

#define DEFAULT_CACHE (64u << 20)
#define DEFAULT_DEPTH 256u
#define DEFAULT_ENTRIES 10000000ull
#define IO_BUF (1u << 20)

/* ---- the io_manager ---- */

struct vmbio {
	vmb_disk *d;
	uint64_t off, len;  /* the volume inside the disk */
	int err;            /* the first vmb error a read returned */
	char msg[512];      /* and its message */
	struct struct_io_stats stats;
};

static _Thread_local struct vmbio *vmbio_pending;
static struct struct_io_manager vmbio_manager;

static errcode_t vmbio_open(const char *name, int flags, io_channel *out)
{
	struct vmbio *v = vmbio_pending;
	io_channel c;
	if (!v)
		return EXT2_ET_BAD_DEVICE_NAME;
	if (flags & IO_FLAG_RW)
		return EXT2_ET_RO_FILSYS; /* read-only, always */
	if (!(c = calloc(1, sizeof *c)))
		return EXT2_ET_NO_MEMORY;
	if (!(c->name = strdup(name))) {
		free(c);
		return EXT2_ET_NO_MEMORY;
	}
	c->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	c->manager = &vmbio_manager;
	c->block_size = 1024;
	c->refcount = 1;
	c->private_data = v;
	vmbio_pending = NULL;
	*out = c;
	return 0;
}

static errcode_t vmbio_close(io_channel c)
{
	if (--c->refcount > 0)
		return 0;
	free(c->name);
	free(c);
	return 0;
}

static errcode_t vmbio_set_blksize(io_channel c, int blksize)
{
	if (blksize <= 0 || blksize > (1 << 20))
		return EXT2_ET_INVALID_ARGUMENT;
	c->block_size = blksize;
	return 0;
}

static errcode_t vmbio_read64(io_channel c, unsigned long long block,
			      int count, void *data)
{
	struct vmbio *v = c->private_data;
	uint64_t off, len;
	int rc;
	if (count < 0)
		len = (uint64_t)-(int64_t)count;
	else if (vmb_mul_overflow((uint64_t)count, (uint64_t)c->block_size,
				  &len))
		return EXT2_ET_INVALID_ARGUMENT;
	if (vmb_mul_overflow((uint64_t)block, (uint64_t)c->block_size, &off))
		return EXT2_ET_LLSEEK_FAILED;
	if (!len)
		return 0;
	if (len > SIZE_MAX || !vmb_range_ok(off, len, v->len)) {
		/* past the volume's end: what is inside, zeros after */
		memset(data, 0, len <= SIZE_MAX ? (size_t)len : 0);
		return EXT2_ET_SHORT_READ;
	}
	rc = vmb_disk_read(v->d, data, v->off + off, (size_t)len);
	if (rc) {
		if (!v->err) {
			v->err = rc;
			snprintf(v->msg, sizeof v->msg, "%s",
				 vmb_error_message());
		}
		memset(data, 0, (size_t)len);
		return EXT2_ET_SHORT_READ;
	}
	v->stats.bytes_read += len;
	return 0;
}

static errcode_t vmbio_read(io_channel c, unsigned long block, int count,
			    void *data)
{
	return vmbio_read64(c, block, count, data);
}

static errcode_t vmbio_write(io_channel c, unsigned long block, int count,
			     const void *data)
{
	(void)c; (void)block; (void)count; (void)data;
	return EXT2_ET_RO_FILSYS;
}

static errcode_t vmbio_write64(io_channel c, unsigned long long block,
			       int count, const void *data)
{
	(void)c; (void)block; (void)count; (void)data;
	return EXT2_ET_RO_FILSYS;
}

static errcode_t vmbio_write_byte(io_channel c, unsigned long off, int count,
				  const void *data)
{
	(void)c; (void)off; (void)count; (void)data;
	return EXT2_ET_RO_FILSYS;
}

static errcode_t vmbio_range_op(io_channel c, unsigned long long block,
				unsigned long long count)
{
	(void)c; (void)block; (void)count;
	return EXT2_ET_RO_FILSYS;
}

static errcode_t vmbio_flush(io_channel c)
{
	(void)c;
	return 0;
}

static errcode_t vmbio_set_option(io_channel c, const char *opt,
				  const char *arg)
{
	(void)c; (void)opt; (void)arg;
	return EXT2_ET_INVALID_ARGUMENT;
}

static errcode_t vmbio_get_stats(io_channel c, io_stats *out)
{
	struct vmbio *v = c->private_data;
	v->stats.num_fields = 2;
	*out = &v->stats;
	return 0;
}

static struct struct_io_manager vmbio_manager = {
	.magic = EXT2_ET_MAGIC_IO_MANAGER,
	.name = "vmbackup snapshot reader (read-only)",
	.open = vmbio_open,
	.close = vmbio_close,
	.set_blksize = vmbio_set_blksize,
	.read_blk = vmbio_read,
	.write_blk = vmbio_write,
	.flush = vmbio_flush,
	.write_byte = vmbio_write_byte,
	.set_option = vmbio_set_option,
	.get_stats = vmbio_get_stats,
	.read_blk64 = vmbio_read64,
	.write_blk64 = vmbio_write64,
	.discard = vmbio_range_op,
	.zeroout = vmbio_range_op,
};

static pthread_once_t et_once = PTHREAD_ONCE_INIT;
static void et_init(void) { initialize_ext2_error_table(); }

/* ---- handles ---- */

struct vmb_guestfs {
	vmb_disk *d;
	int own_disk;
	unsigned partition;
	char type[8];
	struct vmbio io;
	ext2_filsys fs;
};

/* A libext2fs failure as a vmb error: a read error of the disk as it
 * was, anything else as damage of the file system. */
static int fs_error(vmb_guestfs *g, errcode_t e, const char *fmt, ...)
	VMB_PRINTF(3, 4);
static int fs_error(vmb_guestfs *g, errcode_t e, const char *fmt, ...)
{
	char what[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (g->io.err)
		return vmb_error_set(g->io.err, "%s: %s", what, g->io.msg);
	if (e == EXT2_ET_NO_MEMORY)
		return vmb_error_set(VMB_ENOMEM, "%s: out of memory", what);
	return vmb_error_set(VMB_EFORMAT, "%s: %s", what, error_message(e));
}

static int disk_rd(void *p, void *buf, uint64_t off, size_t len)
{
	return vmb_disk_read(p, buf, off, len);
}

static const char *human(uint64_t n, char buf[32])
{
	static const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	int i = 0;
	double v = (double)n;
	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	snprintf(buf, 32, i ? "%.1f %s" : "%.0f %s", v, u[i]);
	return buf;
}

#define POINTER "vmb restore --file reads ext2/3/4 only; for other file " \
	"systems use 'vmb mount REPO SNAP DIR' and mount the disk file"

/* One line describing every partition and what it holds. */
static int describe(vmb_disk *d, const vmb_partition *p, size_t n,
		    const char **fs, vmb_buf *b)
{
	char sz[32];
	for (size_t i = 0; i < n; i++)
		vmb_buf_printf(b, "%s%u (%s, %s)", i ? ", " : "",
			       p[i].number, human(p[i].length, sz),
			       fs[i] ? fs[i] : "unknown");
	(void)d;
	return b->failed ? VMB_ENOMEM : 0;
}

/* Find the volume to open: its offset, length and partition number. */
static int pick(vmb_disk *d, int want, uint64_t *off, uint64_t *len,
		unsigned *number)
{
	uint64_t size = vmb_disk_size(d);
	const char *whole = NULL, **fs = NULL;
	vmb_partition *p = NULL;
	size_t n = 0, next = 0, first = 0;
	int scheme, rc;
	vmb_buf b;
	vmb_buf_init(&b);
	if (want == VMB_GUESTFS_AUTO || want == VMB_GUESTFS_WHOLE) {
		if ((rc = vmb_part__probe(disk_rd, d, 0, size, &whole)) != 0)
			return rc;
		if (whole && strcmp(whole, "ext") == 0) {
			*off = 0;
			*len = size;
			*number = 0;
			return 0;
		}
		if (want == VMB_GUESTFS_WHOLE)
			return vmb_error_set(VMB_ENOTSUP, "no ext2/3/4 file "
					     "system on the whole disk (%s); "
					     POINTER, whole ? whole :
					     "unknown content");
	}
	if ((rc = vmb_part__parse(disk_rd, d, size, &scheme, &p, &n)) != 0)
		return rc;
	if (n && !(fs = vmb_calloc(n, sizeof *fs))) {
		rc = VMB_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if ((rc = vmb_part__probe(disk_rd, d, p[i].offset,
					  p[i].length, &fs[i])) != 0)
			goto out;
		if (fs[i] && strcmp(fs[i], "ext") == 0 && !next++)
			first = i;
	}
	const char *tn = scheme == VMB_PARTITION_GPT ? "GPT" : "MBR";
	if (want > 0) {
		for (size_t i = 0; i < n; i++) {
			if (p[i].number != (unsigned)want)
				continue;
			if (!fs[i] || strcmp(fs[i], "ext") != 0) {
				rc = vmb_error_set(VMB_ENOTSUP, "partition %d "
						   "holds no ext2/3/4 file "
						   "system (%s); " POINTER,
						   want, fs[i] ? fs[i] :
						   "unknown content");
				goto out;
			}
			*off = p[i].offset;
			*len = p[i].length;
			*number = p[i].number;
			goto out;
		}
		if (!n) {
			rc = vmb_error_set(VMB_ENOTFOUND, "no partition %d: "
					   "the disk has no partition table",
					   want);
			goto out;
		}
		if ((rc = describe(d, p, n, fs, &b)) == 0)
			rc = vmb_error_set(VMB_ENOTFOUND, "no partition %d; "
					   "the %s partitions are %s", want,
					   tn, b.data);
		goto out;
	}
	if (next == 1) {
		*off = p[first].offset;
		*len = p[first].length;
		*number = p[first].number;
		goto out;
	}
	if (!n) {
		rc = vmb_error_set(VMB_ENOTSUP, "no ext2/3/4 file system on "
				   "the disk (%s, no partition table); "
				   POINTER, whole ? whole : "unknown content");
		goto out;
	}
	if ((rc = describe(d, p, n, fs, &b)) != 0)
		goto out;
	if (next > 1)
		rc = vmb_error_set(VMB_EAMBIGUOUS, "the disk has %zu ext "
				   "file systems; pick one with --partition N "
				   "(%s partitions %s)", next, tn, b.data);
	else
		rc = vmb_error_set(VMB_ENOTSUP, "no ext2/3/4 file system on "
				   "the disk (%s partitions %s); " POINTER,
				   tn, b.data);
out:
	vmb_buf_free(&b);
	free(fs);
	free(p);
	return rc;
}

VMB_EXTERN(int) vmb_guestfs_partitions(vmb_disk *d, int *scheme,
				       vmb_partition **parts, size_t *n)
{
	if (!d || !scheme || !parts || !n)
		return vmb_error_set(VMB_EINVAL, "vmb_guestfs_partitions: "
				     "NULL argument");
	return vmb_part__parse(disk_rd, d, vmb_disk_size(d), scheme, parts,
			       n);
}

VMB_EXTERN(int) vmb_guestfs_open(vmb_disk *d, const vmb_guestfs_options *o,
				 vmb_guestfs **out)
{
	static const vmb_guestfs_options def = VMB_GUESTFS_OPTIONS_INIT;
	vmb_guestfs *g;
	errcode_t e;
	char name[64];
	int rc;
	if (!d || !out)
		return vmb_error_set(VMB_EINVAL, "vmb_guestfs_open: NULL "
				     "argument");
	*out = NULL;
	if (!o)
		o = &def;
	if (o->version < 1 || o->partition < VMB_GUESTFS_AUTO)
		return vmb_error_set(VMB_EINVAL, "vmb_guestfs_open: bad "
				     "options");
	pthread_once(&et_once, et_init);
	if (!(g = vmb_calloc(1, sizeof *g)))
		return VMB_ENOMEM;
	g->d = d;
	g->io.d = d;
	rc = pick(d, o->partition, &g->io.off, &g->io.len, &g->partition);
	if (rc) {
		free(g);
		return rc;
	}
	snprintf(name, sizeof name, "vmbackup-disk-part%u", g->partition);
	vmbio_pending = &g->io;
	e = ext2fs_open2(name, NULL, EXT2_FLAG_64BITS, 0, 0, &vmbio_manager,
			 &g->fs);
	vmbio_pending = NULL;
	if (e) {
		g->fs = NULL;
		char where[32] = "the whole disk";
		if (g->partition)
			snprintf(where, sizeof where, "partition %u",
				 g->partition);
		rc = fs_error(g, e, "cannot open the ext2/3/4 file system on "
			      "%s", where);
		free(g);
		return rc;
	}
	const struct ext2_super_block *sb = g->fs->super;
	if (sb->s_feature_incompat & (EXT3_FEATURE_INCOMPAT_EXTENTS |
				      EXT4_FEATURE_INCOMPAT_64BIT |
				      EXT4_FEATURE_INCOMPAT_FLEX_BG) ||
	    sb->s_feature_ro_compat & (EXT4_FEATURE_RO_COMPAT_HUGE_FILE |
				       EXT4_FEATURE_RO_COMPAT_DIR_NLINK |
				       EXT4_FEATURE_RO_COMPAT_METADATA_CSUM))
		snprintf(g->type, sizeof g->type, "ext4");
	else if (sb->s_feature_compat & EXT3_FEATURE_COMPAT_HAS_JOURNAL)
		snprintf(g->type, sizeof g->type, "ext3");
	else
		snprintf(g->type, sizeof g->type, "ext2");
	if (sb->s_feature_incompat & EXT3_FEATURE_INCOMPAT_RECOVER)
		vmb_log(VMB_LOG_WARN, "the %s file system was not cleanly "
			"unmounted and its journal is not replayed here: files "
			"changed just before the backup may come back older",
			g->type);
	*out = g;
	return 0;
}

VMB_EXTERN(int) vmb_guestfs_open_snapshot(vmb_repo *r, const vmb_snapshot *s,
					  const char *disk,
					  const vmb_guestfs_options *o,
					  vmb_guestfs **out)
{
	vmb_disk *base = NULL, *d = NULL;
	struct vmb_cache *c;
	uint32_t chunk = 0;
	size_t i;
	int rc;
	if (!r || !s || !out)
		return vmb_error_set(VMB_EINVAL, "vmb_guestfs_open_snapshot: "
				     "NULL argument");
	*out = NULL;
	for (i = 0; i < vmb_snapshot_disk_count(s); i++)
		if (!disk || strcmp(disk, vmb_snapshot_disk_name(s, i)) == 0)
			break;
	if (i == vmb_snapshot_disk_count(s))
		return vmb_error_set(VMB_ENOTFOUND, "snapshot %s has no disk "
				     "named %s", vmb_snapshot_id(s),
				     disk ? disk : "(any)");
	disk = vmb_snapshot_disk_name(s, i);
	chunk = vmb_snapshot_disk_chunk_size(s, i);
	rc = vmb_snapshot_disk_open(r, s, disk, &base);
	if (!rc)
		rc = vmb_cache_open(base, chunk ? chunk : (1u << 20),
				    o && o->cache_bytes ?
				    (size_t)o->cache_bytes : DEFAULT_CACHE,
				    &d, &c);
	if (rc)
		return rc;
	rc = vmb_guestfs_open(d, o, out);
	if (rc) {
		vmb_disk_close(d);
		return vmb_error_prefix("snapshot %s, disk %s: ",
					vmb_snapshot_id(s), disk);
	}
	(*out)->own_disk = 1;
	return 0;
}

void *vmb_guestfs__fs(vmb_guestfs *g)
{
	return g ? g->fs : NULL;
}

long vmb_guestfs__ext2fs_open(vmb_disk *d, uint64_t off, uint64_t len,
			      int flags, void **fs)
{
	static struct vmbio io; /* tests only: one at a time */
	ext2_filsys f = NULL;
	errcode_t e;
	pthread_once(&et_once, et_init);
	memset(&io, 0, sizeof io);
	io.d = d;
	io.off = off;
	io.len = len;
	vmbio_pending = &io;
	e = ext2fs_open2("vmbackup-test", NULL, flags, 0, 0, &vmbio_manager,
			 &f);
	vmbio_pending = NULL;
	*fs = e ? NULL : f;
	return (long)e;
}

VMB_EXTERN(unsigned) vmb_guestfs_partition(const vmb_guestfs *g)
{
	return g ? g->partition : 0;
}

VMB_EXTERN(const char *) vmb_guestfs_type(const vmb_guestfs *g)
{
	return g ? g->type : NULL;
}

VMB_EXTERN(void) vmb_guestfs_close(vmb_guestfs *g)
{
	if (!g)
		return;
	if (g->fs)
		ext2fs_close_free(&g->fs);
	if (g->own_disk)
		vmb_disk_close(g->d);
	free(g);
}

/* ---- extraction ---- */

struct xctx {
	vmb_guestfs *g;
	ext2_filsys fs;
	int owners;
	unsigned max_depth;
	uint64_t max_entries, entries;
	int force;
	ext2_ino_t *stack; /* folders being copied, for loops */
	vmb_guestfs_extract_result *res;
	uint8_t *buf;
	vmb_progress_fn progress;
	void *payload;
	vmb_progress p;
	double last;
	const char *dir;
};

/* A name from a directory entry that is safe as one host path component:
 * not empty, no '/', no NUL, not "." or "..". */
static bool safe_name(const char *n, size_t len)
{
	if (!len || memchr(n, '/', len) || memchr(n, 0, len))
		return false;
	return !(len == 1 && n[0] == '.') &&
	       !(len == 2 && n[0] == '.' && n[1] == '.');
}

static int sys_error(int e, const char *what, const char *name)
{
	return vmb_error_set(e == ENOSPC || e == EDQUOT ? VMB_ENOSPC :
			     e == EACCES || e == EPERM ? VMB_EACCES :
			     e == EEXIST ? VMB_EEXISTS : VMB_EIO,
			     "cannot %s %s: %s", what, name, strerror(e));
}

static void inode_times(const struct ext2_inode_large *in,
			struct timespec ts[2])
{
	/* seconds are signed 32 bit; ext4's extra fields add two epoch bits
	 * and the nanoseconds */
	int64_t a = (int32_t)in->i_atime, m = (int32_t)in->i_mtime;
	long an = 0, mn = 0;
	if (in->i_extra_isize >= 16) { /* i_mtime_extra, i_atime_extra */
		a += (int64_t)(in->i_atime_extra & 3) << 32;
		m += (int64_t)(in->i_mtime_extra & 3) << 32;
		an = (long)(in->i_atime_extra >> 2);
		mn = (long)(in->i_mtime_extra >> 2);
		if (an > 999999999)
			an = 0;
		if (mn > 999999999)
			mn = 0;
	}
	ts[0].tv_sec = (time_t)a;
	ts[0].tv_nsec = an;
	ts[1].tv_sec = (time_t)m;
	ts[1].tv_nsec = mn;
}

static mode_t inode_mode(const struct xctx *x,
			 const struct ext2_inode_large *in)
{
	mode_t m = in->i_mode & 07777;
	if (!x->owners) /* never hand out set-id bits to the restoring user */
		m &= (mode_t)~(S_ISUID | S_ISGID);
	return m;
}

/* owner, mode, times of an open file or folder */
static int set_attrs(struct xctx *x, int fd, const struct ext2_inode_large *in,
		     const char *name)
{
	struct timespec ts[2];
	if (x->owners && fchown(fd, inode_uid(*in), inode_gid(*in)) != 0)
		return sys_error(errno, "set the owner of", name);
	if (fchmod(fd, inode_mode(x, in)) != 0)
		return sys_error(errno, "set the mode of", name);
	inode_times(in, ts);
	if (futimens(fd, ts) != 0)
		return sys_error(errno, "set the times of", name);
	return 0;
}

static int tick(struct xctx *x, uint64_t bytes)
{
	x->p.bytes_done += bytes;
	x->p.bytes_written += bytes;
	if (!x->progress)
		return 0;
	double now = vmb_now();
	if (now - x->last < 0.2)
		return 0;
	x->last = now;
	if (x->progress(&x->p, x->payload))
		return vmb_error_set(VMB_ECANCELED, "cancelled");
	return 0;
}

/* Make room for @name in @pfd: with force, a file or symlink of that name
 * goes; a folder stays (merged into, or refused for a non-folder). */
static int make_room(struct xctx *x, int pfd, const char *name, int dir)
{
	struct stat st;
	if (!x->force || fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return 0;
	if (S_ISDIR(st.st_mode)) {
		if (dir)
			return 0;
		return vmb_error_set(VMB_EEXISTS, "cannot restore %s: a "
				     "folder of that name is in the way",
				     name);
	}
	if (unlinkat(pfd, name, 0) != 0)
		return sys_error(errno, "replace", name);
	return 0;
}

struct range {
	uint64_t first, count; /* logical blocks */
};

struct ranges {
	struct range *v;
	size_t n, cap;
	uint64_t limit; /* blocks of the file's size */
	int err;
};

static int range_cb(ext2_filsys fs, blk64_t *blocknr, e2_blkcnt_t blockcnt,
		    blk64_t ref, int ref_off, void *priv)
{
	struct ranges *r = priv;
	(void)fs; (void)blocknr; (void)ref; (void)ref_off;
	if (blockcnt < 0 || (uint64_t)blockcnt >= r->limit)
		return 0; /* metadata, or past the end */
	uint64_t b = (uint64_t)blockcnt;
	if (r->n && r->v[r->n - 1].first + r->v[r->n - 1].count == b) {
		r->v[r->n - 1].count++;
		return 0;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct range *v;
		if (cap > (64u << 20) / sizeof *v) {
			r->err = VMB_ERANGE;
			return BLOCK_ABORT;
		}
		if (!(v = realloc(r->v, cap * sizeof *v))) {
			r->err = VMB_ENOMEM;
			return BLOCK_ABORT;
		}
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n].first = b;
	r->v[r->n].count = 1;
	r->n++;
	return 0;
}

/* Copy [from, from+len) of file @f into @fd, leaving all-zero 4 KiB
 * blocks as holes. */
static int copy_range(struct xctx *x, ext2_file_t f, int fd, uint64_t from,
		      uint64_t len, const char *gpath)
{
	errcode_t e = ext2fs_file_llseek(f, from, EXT2_SEEK_SET, NULL);
	if (e)
		return fs_error(x->g, e, "cannot read %s", gpath);
	while (len) {
		unsigned want = len < IO_BUF ? (unsigned)len : IO_BUF, got = 0;
		int rc;
		e = ext2fs_file_read(f, x->buf, want, &got);
		if (e)
			return fs_error(x->g, e, "cannot read %s", gpath);
		if (!got)
			return vmb_error_set(VMB_EFORMAT, "cannot read %s: its "
					     "data ends before its size",
					     gpath);
		for (unsigned o = 0; o < got; o += 4096) {
			unsigned n = got - o < 4096 ? got - o : 4096;
			if (vmb_is_zero(x->buf + o, n))
				continue;
			ssize_t w = pwrite(fd, x->buf + o, n,
					   (off_t)(from + o));
			if (w != (ssize_t)n)
				return sys_error(w < 0 ? errno : ENOSPC,
						 "write", gpath);
		}
		from += got;
		len -= got;
		if ((rc = tick(x, got)) != 0)
			return rc;
	}
	return 0;
}

static int extract_file(struct xctx *x, ext2_ino_t ino,
			struct ext2_inode_large *in, int pfd,
			const char *name, const char *gpath)
{
	ext2_file_t f = NULL;
	uint64_t size = EXT2_I_SIZE((struct ext2_inode *)in);
	struct ranges r = { NULL, 0, 0, 0, 0 };
	errcode_t e;
	int fd, rc = 0;
	if ((rc = make_room(x, pfd, name, 0)) != 0)
		return rc;
	fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0600);
	if (fd < 0)
		return sys_error(errno, "create", gpath);
	e = ext2fs_file_open2(x->fs, ino, (struct ext2_inode *)in, 0, &f);
	if (e) {
		rc = fs_error(x->g, e, "cannot open %s", gpath);
		goto out;
	}
	if (in->i_flags & EXT4_INLINE_DATA_FL) {
		rc = copy_range(x, f, fd, 0, size, gpath);
	} else if (size) {
		uint64_t bs = x->fs->blocksize;
		r.limit = size / bs + (size % bs != 0);
		e = ext2fs_block_iterate3(x->fs, ino, BLOCK_FLAG_DATA_ONLY |
					  BLOCK_FLAG_READ_ONLY, NULL,
					  range_cb, &r);
		if (r.err) {
			rc = vmb_error_set(r.err, "cannot read %s: %s", gpath,
					   r.err == VMB_ENOMEM ? "out of memory"
					   : "too many extents");
			goto out;
		}
		if (e) {
			rc = fs_error(x->g, e, "cannot map %s", gpath);
			goto out;
		}
		for (size_t i = 0; i < r.n && !rc; i++) {
			uint64_t from = r.v[i].first * bs;
			uint64_t len = r.v[i].count * bs;
			if (len > size - from)
				len = size - from;
			rc = copy_range(x, f, fd, from, len, gpath);
		}
		if (!rc)
			rc = tick(x, 0);
	}
	if (!rc && ftruncate(fd, (off_t)size) != 0)
		rc = sys_error(errno, "write", gpath);
	if (!rc)
		rc = set_attrs(x, fd, in, gpath);
	if (!rc) {
		x->res->files++;
		x->res->bytes += size;
	}
out:
	free(r.v);
	if (f)
		ext2fs_file_close(f);
	if (close(fd) != 0 && !rc)
		rc = sys_error(errno, "write", gpath);
	if (rc)
		unlinkat(pfd, name, 0); /* no half file left behind */
	return rc;
}

static int extract_symlink(struct xctx *x, ext2_ino_t ino,
			   struct ext2_inode_large *in, int pfd,
			   const char *name, const char *gpath)
{
	uint64_t size = EXT2_I_SIZE((struct ext2_inode *)in);
	char target[4096];
	struct timespec ts[2];
	int rc;
	if (!size || size >= sizeof target)
		return vmb_error_set(VMB_EFORMAT, "symlink %s has a target "
				     "of %llu bytes", gpath,
				     (unsigned long long)size);
	if (ext2fs_is_fast_symlink((struct ext2_inode *)in)) {
		if (size > sizeof in->i_block)
			return vmb_error_set(VMB_EFORMAT, "symlink %s is "
					     "damaged", gpath);
		memcpy(target, in->i_block, (size_t)size);
	} else {
		ext2_file_t f;
		unsigned got = 0;
		errcode_t e = ext2fs_file_open2(x->fs, ino,
						(struct ext2_inode *)in, 0, &f);
		if (!e) {
			e = ext2fs_file_read(f, target, (unsigned)size, &got);
			ext2fs_file_close(f);
		}
		if (e)
			return fs_error(x->g, e, "cannot read symlink %s",
					gpath);
		if (got != size)
			return vmb_error_set(VMB_EFORMAT, "symlink %s is "
					     "damaged", gpath);
	}
	target[size] = 0;
	if (strlen(target) != size)
		return vmb_error_set(VMB_EFORMAT, "symlink %s has a NUL in "
				     "its target", gpath);
	if ((rc = make_room(x, pfd, name, 0)) != 0)
		return rc;
	/* made, never followed: what it points at is the guest's business */
	if (symlinkat(target, pfd, name) != 0)
		return sys_error(errno, "create symlink", gpath);
	if (x->owners && fchownat(pfd, name, inode_uid(*in), inode_gid(*in),
				  AT_SYMLINK_NOFOLLOW) != 0)
		return sys_error(errno, "set the owner of", gpath);
	inode_times(in, ts);
	if (utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) != 0)
		return sys_error(errno, "set the times of", gpath);
	x->res->symlinks++;
	return 0;
}

struct dent {
	ext2_ino_t ino;
	char *name;
};

struct dlist {
	struct xctx *x;
	struct dent *v;
	size_t n, cap;
	int err;
	const char *gpath;
	int dots, dotdots;
};

static int dir_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *de,
		  int offset, int blocksize, char *buf, void *priv)
{
	struct dlist *l = priv;
	size_t len = (size_t)ext2fs_dirent_name_len(de);
	(void)dir; (void)offset; (void)blocksize; (void)buf;
	(void)entry; /* inline-data folders do not flag their "." and ".." */
	if (!de->inode)
		return 0;
	/* a folder's own "." and ".." are skipped quietly; a second one is
	 * crafted */
	if (len == 1 && de->name[0] == '.' && !l->dots++)
		return 0;
	if (len == 2 && de->name[0] == '.' && de->name[1] == '.' &&
	    !l->dotdots++)
		return 0;
	if (!safe_name(de->name, len)) {
		char shown[65];
		size_t k;
		for (k = 0; k < len && k < 64; k++) {
			unsigned char c = (unsigned char)de->name[k];
			shown[k] = c >= 0x20 && c < 0x7f ? (char)c : '?';
		}
		shown[k] = 0;
		vmb_log(VMB_LOG_WARN, "%s: an entry named \"%s\" is not a "
			"safe file name; skipped", l->gpath, shown);
		l->x->res->skipped++;
		return 0;
	}
	if (++l->x->entries > l->x->max_entries) {
		l->err = vmb_error_set(VMB_ERANGE, "more than %llu entries "
				       "under the path; stopped",
				       (unsigned long long)l->x->max_entries);
		return DIRENT_ABORT;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		struct dent *v = realloc(l->v, cap * sizeof *v);
		if (!v) {
			l->err = vmb_error_set(VMB_ENOMEM, "out of memory");
			return DIRENT_ABORT;
		}
		l->v = v;
		l->cap = cap;
	}
	if (!(l->v[l->n].name = vmb_strndup(de->name, len))) {
		l->err = VMB_ENOMEM;
		return DIRENT_ABORT;
	}
	l->v[l->n++].ino = de->inode;
	return 0;
}

static int extract_inode(struct xctx *x, ext2_ino_t ino, int pfd,
			 const char *name, const char *gpath, unsigned depth);

/* Copy folder @ino's entries into the open folder @fd. */
static int extract_entries(struct xctx *x, ext2_ino_t ino, int fd,
			   const char *gpath, unsigned depth)
{
	struct dlist l = { x, NULL, 0, 0, 0, gpath, 0, 0 };
	errcode_t e;
	int rc = 0;
	if (depth >= x->max_depth)
		return vmb_error_set(VMB_ERANGE, "%s: folders nest deeper than "
				     "%u levels; stopped", gpath,
				     x->max_depth);
	for (unsigned i = 0; i < depth; i++)
		if (x->stack[i] == ino) {
			vmb_log(VMB_LOG_WARN, "%s is a folder inside itself "
				"(a loop in the file system); skipped", gpath);
			x->res->skipped++;
			return 0;
		}
	x->stack[depth] = ino;
	e = ext2fs_dir_iterate2(x->fs, ino, 0, NULL, dir_cb, &l);
	if (l.err)
		rc = l.err;
	else if (e)
		rc = fs_error(x->g, e, "cannot read folder %s", gpath);
	for (size_t i = 0; i < l.n && !rc; i++) {
		size_t gl = strlen(gpath);
		/* the guest path, for messages only: control characters of
		 * a hostile name are shown as '?' */
		char *cp = vmb_asprintf("%s%s%s", gpath,
					gl && gpath[gl - 1] == '/' ? "" : "/",
					l.v[i].name);
		if (!cp) {
			rc = VMB_ENOMEM;
			break;
		}
		for (char *c = cp + gl; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				*c = '?';
		rc = extract_inode(x, l.v[i].ino, fd, l.v[i].name, cp,
				   depth + 1);
		free(cp);
	}
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i].name);
	free(l.v);
	return rc;
}

static int extract_dir(struct xctx *x, ext2_ino_t ino,
		       struct ext2_inode_large *in, int pfd,
		       const char *name, const char *gpath, unsigned depth)
{
	int fd, rc;
	if ((rc = make_room(x, pfd, name, 1)) != 0)
		return rc;
	if (mkdirat(pfd, name, 0700) != 0 && !(x->force && errno == EEXIST))
		return sys_error(errno, "create folder", gpath);
	fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		    O_CLOEXEC);
	if (fd < 0)
		return sys_error(errno, "open folder", gpath);
	/* a folder kept from an earlier run (--force) may be 0500: ours
	 * until its entries are in */
	if (x->force && fchmod(fd, 0700) != 0) {
		rc = sys_error(errno, "set the mode of", gpath);
		close(fd);
		return rc;
	}
	rc = extract_entries(x, ino, fd, gpath, depth);
	if (!rc)
		rc = set_attrs(x, fd, in, gpath); /* last: 0555 folders */
	if (!rc)
		x->res->dirs++;
	close(fd);
	return rc;
}

static int extract_inode(struct xctx *x, ext2_ino_t ino, int pfd,
			 const char *name, const char *gpath, unsigned depth)
{
	struct ext2_inode_large in;
	errcode_t e;
	memset(&in, 0, sizeof in);
	e = ext2fs_read_inode_full(x->fs, ino, (struct ext2_inode *)&in,
				   sizeof in);
	if (e)
		return fs_error(x->g, e, "cannot read the inode of %s", gpath);
	switch (in.i_mode & LINUX_S_IFMT) {
	case LINUX_S_IFREG:
		return extract_file(x, ino, &in, pfd, name, gpath);
	case LINUX_S_IFDIR:
		return extract_dir(x, ino, &in, pfd, name, gpath, depth);
	case LINUX_S_IFLNK:
		return extract_symlink(x, ino, &in, pfd, name, gpath);
	default:
		vmb_log(VMB_LOG_WARN, "%s is a device, FIFO or socket; "
			"skipped", gpath);
		x->res->skipped++;
		return 0;
	}
}

/* @path normalised: absolute, no empty, "." or ".." components. */
static int guest_path(const char *path, char **norm, const char **base)
{
	size_t n = strlen(path);
	char *p = vmb_malloc(n + 2), *o;
	const char *s = path;
	if (!p)
		return VMB_ENOMEM;
	o = p;
	*o++ = '/';
	while (*s) {
		const char *e;
		while (*s == '/')
			s++;
		if (!*s)
			break;
		e = strchr(s, '/');
		if (!e)
			e = s + strlen(s);
		if ((e - s == 1 && s[0] == '.') ||
		    (e - s == 2 && s[0] == '.' && s[1] == '.')) {
			free(p);
			return vmb_error_set(VMB_EINVAL, "%s: give the path "
					     "without '.' or '..' parts",
					     path);
		}
		if (o > p + 1)
			*o++ = '/';
		memcpy(o, s, (size_t)(e - s));
		o += e - s;
		s = e;
	}
	*o = 0;
	*norm = p;
	*base = strrchr(p, '/') + 1; /* "" for the root */
	return 0;
}

/* DIR made like mkdir -p (0700), or an existing folder; must be empty
 * unless @force. */
static int open_dest(const char *dir, int force, int *out)
{
	struct stat st;
	int fd, rc;
	if (!dir || !*dir)
		return vmb_error_set(VMB_EINVAL, "no destination folder");
	if (stat(dir, &st) != 0) {
		if ((rc = vmb_mkdir_p(dir, 0700)) != 0)
			return rc;
	} else if (!S_ISDIR(st.st_mode)) {
		return vmb_error_set(VMB_EINVAL, "%s is not a folder", dir);
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return sys_error(errno, "open", dir);
	if (!force) {
		int dfd = dup(fd);
		DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		struct dirent *de;
		int empty = 1;
		if (!d) {
			if (dfd >= 0)
				close(dfd);
			close(fd);
			return sys_error(errno, "read", dir);
		}
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				empty = 0;
		closedir(d);
		if (!empty) {
			close(fd);
			return vmb_error_set(VMB_EEXISTS, "%s is not empty; "
					     "files are restored into a new or "
					     "empty folder (--force writes "
					     "into it anyway)", dir);
		}
	}
	*out = fd;
	return 0;
}

VMB_EXTERN(int) vmb_guestfs_extract(vmb_guestfs *g, const char *path,
				    const char *dir,
				    const vmb_guestfs_extract_options *o,
				    vmb_guestfs_extract_result *res)
{
	static const vmb_guestfs_extract_options def =
		VMB_GUESTFS_EXTRACT_OPTIONS_INIT;
	vmb_guestfs_extract_result dummy;
	struct xctx x;
	char *norm = NULL;
	const char *base = "";
	ext2_ino_t ino = 0;
	errcode_t e;
	int dfd = -1, rc;
	double t0 = vmb_now();
	if (!g || !path || !dir)
		return vmb_error_set(VMB_EINVAL, "vmb_guestfs_extract: NULL "
				     "argument");
	if (!o)
		o = &def;
	if (!res)
		res = &dummy;
	memset(res, 0, sizeof *res);
	memset(&x, 0, sizeof x);
	x.g = g;
	x.fs = g->fs;
	x.res = res;
	x.force = !!(o->flags & VMB_GUESTFS_FORCE);
	x.owners = !(o->flags & VMB_GUESTFS_NO_OWNERS) &&
		   ((o->flags & VMB_GUESTFS_OWNERS) || geteuid() == 0);
	x.max_depth = o->max_depth ? o->max_depth : DEFAULT_DEPTH;
	x.max_entries = o->max_entries ? o->max_entries : DEFAULT_ENTRIES;
	x.progress = o->progress;
	x.payload = o->payload;
	x.p.phase = "restore";
	x.dir = dir;
	if ((rc = guest_path(path, &norm, &base)) != 0)
		return rc;
	x.p.item = norm;
	g->io.err = 0;
	e = ext2fs_namei(g->fs, EXT2_ROOT_INO, EXT2_ROOT_INO, norm, &ino);
	if (e == EXT2_ET_FILE_NOT_FOUND || (!e && !ino)) {
		rc = vmb_error_set(VMB_ENOTFOUND, "%s does not exist in the "
				   "guest's %s file system", norm, g->type);
		goto out;
	}
	if (e == EXT2_ET_NO_DIRECTORY) {
		rc = vmb_error_set(VMB_ENOTFOUND, "%s does not exist in the "
				   "guest's file system (a part of it is not "
				   "a folder)", norm);
		goto out;
	}
	if (e) {
		rc = fs_error(g, e, "cannot look up %s", norm);
		goto out;
	}
	{
		/* a single file: the progress bar knows its end */
		struct ext2_inode top;
		if (ext2fs_read_inode(g->fs, ino, &top) == 0 &&
		    LINUX_S_ISREG(top.i_mode))
			x.p.bytes_total = EXT2_I_SIZE(&top);
	}
	if ((rc = open_dest(dir, x.force, &dfd)) != 0)
		goto out;
	x.buf = vmb_malloc(IO_BUF);
	x.stack = vmb_calloc(x.max_depth + 1, sizeof *x.stack);
	if (!x.buf || !x.stack) {
		rc = VMB_ENOMEM;
		goto out;
	}
	if (!*base) {
		/* the root: its entries go into DIR itself, whose mode stays
		 * private */
		res->dirs++;
		rc = extract_entries(&x, ino, dfd, norm, 0);
	} else {
		rc = extract_inode(&x, ino, dfd, base, norm, 0);
	}
out:
	res->seconds = vmb_now() - t0;
	if (dfd >= 0)
		close(dfd);
	free(x.buf);
	free(x.stack);
	free(norm);
	return rc;
}
