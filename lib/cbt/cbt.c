/*
 * Changed-block tracking: plan which chunks to read.
 *
 * Sources, preferred first (docs/cbt.md):
 *  - "qcow2-bitmap": a persistent dirty bitmap that vmb added to the top
 *    qcow2 layer at the parent backup (named in the parent's cbt_state);
 *  - "overlay": the layers above those the parent read unchanged;
 *  - otherwise the backup compares fingerprints.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/json.h"
#include "common/util.h"
#include "disk/format.h"
#include "disk/qcow2.h"
#include "cbt.h"

/*
 * Granularity of the bitmaps vmb adds: 4 KiB (a guest page, so scattered
 * small writes cost the backup only what they wrote: docs/cbt.md,
 * "Patches"), doubled until the bitmap has at most 2^24 bits (2 MiB on
 * disk and in QEMU's memory): 4 KiB up to 64 GiB disks, 64 KiB at 1 TiB.
 */
static uint32_t bitmap_granularity(uint64_t size)
{
	uint32_t g = 4096;
	while (g < (1u << 26) && size / g > (1u << 24))
		g <<= 1;
	return g;
}

int vmb_cbt_layers(vmb_disk *d, char ***out, size_t *n)
{
	int nl = vmb_disk_layers(d);
	char **l;
	*out = NULL;
	*n = 0;
	l = vmb_calloc((size_t)nl, sizeof *l);
	if (!l)
		return VMB_ENOMEM;
	for (int i = 0; i < nl; i++) {
		char id[96];
		if (vmb_disk_layer_identity(d, i, id) != 0) {
			vmb_error_clear();
			vmb_cbt_layers_free(l, (size_t)i);
			return 0; /* custom disks have no layers to track */
		}
		if (!(l[i] = vmb_strdup(id))) {
			vmb_cbt_layers_free(l, (size_t)i);
			return VMB_ENOMEM;
		}
	}
	*out = l;
	*n = (size_t)nl;
	return 0;
}

void vmb_cbt_layers_free(char **l, size_t n)
{
	if (!l)
		return;
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
}

/* Collects changed ranges in increasing order, merging touching ones;
 * gives up (ok = 0) past VMB_CBT_MAX_RANGES or on disorder. */
struct ranges {
	vmb_cbt_range *r;
	size_t n, cap;
	int ok;
};

static void ranges_add(struct ranges *rs, uint64_t off, uint64_t len)
{
	if (!rs->ok || !len)
		return;
	if (rs->n) {
		vmb_cbt_range *l = &rs->r[rs->n - 1];
		if (off < l->off + l->len) {
			rs->ok = 0; /* not increasing */
			return;
		}
		if (off == l->off + l->len) {
			l->len += len;
			return;
		}
	}
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 256;
		void *n = cap > VMB_CBT_MAX_RANGES ? NULL :
			  realloc(rs->r, cap * sizeof *rs->r);
		if (!n) {
			rs->ok = 0;
			return;
		}
		rs->r = n;
		rs->cap = cap;
	}
	rs->r[rs->n].off = off;
	rs->r[rs->n++].len = len;
}

/* Hand the ranges to the plan (or drop them if incomplete). */
static void ranges_give(struct ranges *rs, vmb_cbt_plan *plan)
{
	if (rs->ok) {
		plan->ranges = rs->r;
		plan->nranges = rs->n;
	} else {
		free(rs->r);
	}
	memset(rs, 0, sizeof *rs);
}

void vmb_cbt_plan_free(vmb_cbt_plan *p)
{
	free(p->ranges);
	free(p->changed);
	free(p->new_state);
	if (p->locked)
		close(p->lock_fd);
	memset(p, 0, sizeof *p);
}

struct mark {
	uint8_t *changed;
	uint64_t count;
	uint32_t cs;
	int below; /* layers [0, below) are new since the parent */
	struct ranges rs;
};

static int mark_cb(const vmb_extent *e, void *payload)
{
	struct mark *m = payload;
	uint64_t first, last;
	if (e->layer < 0 || e->layer >= m->below)
		return 0;
	first = e->offset / m->cs;
	last = (e->offset + e->length - 1) / m->cs;
	for (uint64_t i = first; i <= last && i < m->count; i++)
		m->changed[i] = 1;
	ranges_add(&m->rs, e->offset, e->length);
	return 0;
}

char *vmb_cbt_top_stamp(vmb_disk *d, int64_t now_ns)
{
	int64_t m, c;
	if (vmb_disk_layer_times(d, 0, &m, &c) != 0) {
		vmb_error_clear();
		return NULL;
	}
	if (m > now_ns - 2000000000LL || c > now_ns - 2000000000LL)
		return NULL;
	return vmb_asprintf("%lld", (long long)c);
}

/*
 * Overlays: if the chain's layers k.. are exactly the layers the parent
 * read (same device, inode, size and mtime: nothing wrote to them since),
 * only layers 0..k-1 can hold changes.
 */
static int plan_overlay(vmb_disk *d, uint32_t cs, const vmb_cbt_parent *p,
			const char *top_after, vmb_cbt_plan *plan)
{
	char **cur;
	size_t n;
	int rc, k = -1;
	if (!p->layers || !p->nlayers)
		return 0;
	rc = vmb_cbt_layers(d, &cur, &n);
	if (rc || !cur)
		return rc;
	/* k = 0: the whole chain is what the parent read, top included,
	 * and the top's ctime (which nothing can set back) is the same */
	if (p->top_stamp && n == p->nlayers) {
		int64_t m, c;
		int same = vmb_disk_layer_times(d, 0, &m, &c) == 0;
		for (size_t j = 0; j < n && same; j++)
			same = strcmp(cur[j], p->layers[j]) == 0;
		if (same && strtoll(p->top_stamp, NULL, 10) == c)
			k = 0;
		vmb_error_clear();
	}
	for (size_t s = 1; s < n && k < 0; s++) {
		if (n - s != p->nlayers)
			continue;
		int same = 1;
		for (size_t j = 0; j < p->nlayers && same; j++)
			same = strcmp(cur[s + j], p->layers[j]) == 0 ||
			       /* the parent's top as vmb left it after
				* writing its bitmap there */
			       (j == 0 && top_after && *top_after &&
				strcmp(cur[s], top_after) == 0);
		if (same)
			k = (int)s;
	}
	vmb_cbt_layers_free(cur, n);
	if (k < 0)
		return 0;
	struct mark m;
	memset(&m, 0, sizeof m);
	m.rs.ok = 1;
	m.count = plan->count;
	m.cs = cs;
	m.below = k;
	m.changed = vmb_calloc(plan->count ? plan->count : 1, 1);
	if (!m.changed)
		return VMB_ENOMEM;
	rc = vmb_disk_map(d, 0, vmb_disk_size(d), mark_cb, &m);
	if (rc) {
		free(m.rs.r);
		free(m.changed);
		return rc;
	}
	ranges_give(&m.rs, plan);
	plan->changed = m.changed;
	plan->source = "overlay";
	return 0;
}

/* ---- qcow2 persistent bitmaps ---- */

struct bm_state {
	int ok;
	char name[128];
	uint64_t gen;
	char top_after[96];
	char why[800]; /* why the recorded bitmap was not used */
};

static void parse_state(const char *text, struct bm_state *st)
{
	vmb_json *j;
	const char *n, *ta, *src;
	uint64_t g;
	memset(st, 0, sizeof *st);
	if (!text || !*text)
		return;
	if (vmb_json_parse(text, strlen(text), "change-tracking state", &j)) {
		vmb_error_clear();
		return;
	}
	src = vmb_json_str(j, "source");
	n = vmb_json_str(j, "bitmap");
	ta = vmb_json_str(j, "top_after");
	if (ta && strlen(ta) < sizeof st->top_after)
		snprintf(st->top_after, sizeof st->top_after, "%s", ta);
	if (src && !strcmp(src, "qcow2-bitmap") && n &&
	    strlen(n) < sizeof st->name &&
	    vmb_json_u64(j, "generation", &g) == 0) {
		snprintf(st->name, sizeof st->name, "%s", n);
		st->gen = g;
		st->ok = 1;
	}
	vmb_json_free(j);
}

/* "vmb-<generation>-<8 hex>": a bitmap this program made.  @return its
 * generation + 1, or 0 if the name is not one of ours. */
static uint64_t our_bitmap(const char *name)
{
	const char *p = name;
	uint64_t g = 0;
	if (strncmp(p, "vmb-", 4) != 0)
		return 0;
	p += 4;
	if (*p < '0' || *p > '9')
		return 0;
	while (*p >= '0' && *p <= '9') {
		if (g > UINT64_MAX / 20)
			return 0;
		g = g * 10 + (uint64_t)(*p++ - '0');
	}
	if (*p++ != '-')
		return 0;
	for (int i = 0; i < 8; i++, p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	return *p ? 0 : g + 1;
}

/* The same identity string vmb_disk_layer_identity() makes. */
static void fd_identity(int fd, char out[96])
{
	struct stat st;
	out[0] = 0;
	if (fstat(fd, &st) == 0)
		snprintf(out, 96, "%llx:%llx:%llu:%lld.%09ld",
			 (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino,
			 (unsigned long long)st.st_size,
			 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

struct dirty_mark {
	uint8_t *changed;
	uint64_t count;
	uint32_t cs;
	struct ranges rs;
};

static int dirty_cb(uint64_t off, uint64_t len, void *payload)
{
	struct dirty_mark *m = payload;
	for (uint64_t i = off / m->cs; i <= (off + len - 1) / m->cs &&
	     i < m->count; i++)
		m->changed[i] = 1;
	ranges_add(&m->rs, off, len);
	return 0;
}

/* The layers below the top are the ones the parent read. */
static int lower_layers_same(vmb_disk *d, const vmb_cbt_parent *p)
{
	char **cur;
	size_t n;
	int same;
	if (!p->layers || !p->nlayers)
		return 0;
	if (vmb_cbt_layers(d, &cur, &n) || !cur) {
		vmb_error_clear();
		return 0;
	}
	same = n == p->nlayers;
	for (size_t j = 1; j < n && same; j++)
		same = strcmp(cur[j], p->layers[j]) == 0;
	vmb_cbt_layers_free(cur, n);
	return same;
}

/*
 * The bitmap protocol (docs/cbt.md): under the image lock, (1) read the
 * dirty ranges of the bitmap the parent recorded, if it is usable;
 * (2) in one crash-safe edit, add a fresh `auto` bitmap of the next
 * generation and drop our older ones (keeping the recorded one, in case
 * this backup fails and the next one retries from the same parent);
 * (3) return the new bitmap as new_state.  The image stays locked until
 * the backup has read it (vmb_cbt_plan_free).
 */
static int plan_bitmap(vmb_disk *d, uint32_t cs, const vmb_cbt_parent *p,
		       const char *parent_state, struct bm_state *st,
		       vmb_cbt_plan *plan)
{
	const char *fmt = vmb_disk_layer_format(d, 0);
	const char *path = vmb_disk_layer_path(d, 0);
	const vmb_qcow2_bitmap *list = NULL;
	size_t nlist = 0, nremove = 0;
	const char **remove = NULL;
	vmb_qcow2 *q = NULL;
	uint8_t *changed = NULL;
	vmb_cbt_plan ranges = { 0 }; /* only .ranges/.nranges used */
	uint32_t gran = bitmap_granularity(vmb_disk_size(d));
	char why[600] = "", newname[64], ident[96];
	int consistent = 1, usable = 0, fd, rc;
	uint32_t rnd = 0;

	if (!fmt || strcmp(fmt, "qcow2") != 0 || !path) {
		if (st->ok)
			vmb_log(VMB_LOG_WARN, "the parent backup used a "
				"persistent bitmap but the disk is no longer a "
				"qcow2 file; comparing fingerprints");
		return 0;
	}
	rc = vmb_disk__image_lock(path, &fd);
	if (rc) {
		if (rc == VMB_ELOCKED) {
			vmb_log(VMB_LOG_WARN, "%s; its persistent bitmaps can "
				"only be added through QEMU while it runs (the "
				"libvirt source); %s", vmb_error_message(),
				p ? "comparing fingerprints" :
				"no bitmap added for the next backup");
			/* the recorded bitmap (untouched) still holds every
			 * write since the parent, a superset of those since
			 * this backup: the next backup may use it */
			if (st->ok && p && parent_state &&
			    !(plan->new_state = vmb_strdup(parent_state)))
				return VMB_ENOMEM;
		}
		else if (st->ok)
			vmb_log(VMB_LOG_WARN, "persistent bitmap of %s "
				"unusable (%s); comparing fingerprints", path,
				vmb_error_message());
		else
			vmb_log(VMB_LOG_INFO, "not adding a persistent bitmap "
				"to %s: %s", path, vmb_error_message());
		vmb_error_clear();
		return 0;
	}
	plan->lock_fd = fd;
	plan->locked = 1;
	rc = vmb_disk__qcow2_open(path, NULL, &q);
	if (rc) {
		vmb_log(VMB_LOG_WARN, "persistent bitmaps of %s unusable (%s)",
			path, vmb_error_message());
		vmb_error_clear();
		return 0;
	}
	vmb_disk__qcow2_bitmaps(q, &list, &nlist, &consistent);
	if (st->ok && p) {
		const vmb_qcow2_bitmap *b = NULL;
		for (size_t i = 0; i < nlist; i++)
			if (!strcmp(list[i].name, st->name))
				b = &list[i];
		if (!consistent) {
			snprintf(why, sizeof why, "a program that does not "
				 "keep bitmaps wrote the image");
		} else if (!b) {
			const char *other = NULL;
			for (size_t i = 0; i < nlist && !other; i++)
				if (our_bitmap(list[i].name))
					other = list[i].name;
			snprintf(why, sizeof why, "bitmap '%s' (generation %llu)"
				 " is missing%s%s%s", st->name,
				 (unsigned long long)st->gen,
				 other ? "; the image has '" : "",
				 other ? other : "", other ?
				 "' of another generation (an older copy of "
				 "the image?)" : "");
		} else if (b->in_use) {
			snprintf(why, sizeof why, "bitmap '%s' is flagged "
				 "in_use (QEMU did not close the image "
				 "cleanly)", st->name);
		} else if (!b->auto_) {
			snprintf(why, sizeof why, "bitmap '%s' is disabled",
				 st->name);
		} else if (!lower_layers_same(d, p)) {
			snprintf(why, sizeof why, "the backing files changed "
				 "since the parent backup");
		} else {
			struct dirty_mark dm;
			changed = vmb_calloc(plan->count ? plan->count : 1, 1);
			if (!changed) {
				rc = VMB_ENOMEM;
				goto out;
			}
			memset(&dm, 0, sizeof dm);
			dm.rs.ok = 1;
			dm.changed = changed;
			dm.count = plan->count;
			dm.cs = cs;
			rc = vmb_disk__qcow2_bitmap_dirty(q, st->name, dirty_cb,
							  &dm);
			if (rc) {
				snprintf(why, sizeof why, "%s",
					 vmb_error_message());
				vmb_error_clear();
				free(changed);
				free(dm.rs.r);
				changed = NULL;
				rc = 0;
			} else {
				usable = 1;
				ranges_give(&dm.rs, &ranges);
			}
		}
		if (!usable)
			snprintf(st->why, sizeof st->why, "%s: persistent "
				 "bitmap unusable: %s", path, why);
	}
	/* the edit: a fresh bitmap, our stale ones dropped */
	remove = vmb_calloc(nlist ? nlist : 1, sizeof *remove);
	if (!remove) {
		rc = VMB_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nlist; i++)
		if (our_bitmap(list[i].name) &&
		    !(usable && !strcmp(list[i].name, st->name)))
			remove[nremove++] = list[i].name;
	if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		rnd = (uint32_t)getpid() ^ (uint32_t)vmb_now();
	snprintf(newname, sizeof newname, "vmb-%llu-%08x",
		 (unsigned long long)(st->ok ? st->gen + 1 : 1), rnd);
	{
		vmb_qcow2_bitmap_edit e = { newname, gran, 1,
					    remove, nremove };
		rc = vmb_disk__qcow2_bitmaps_edit(fd, path, &e);
	}
	if (rc) {
		vmb_log(VMB_LOG_WARN, "cannot add a persistent bitmap to %s "
			"(%s); the next backup compares fingerprints", path,
			vmb_error_message());
		vmb_error_clear();
		rc = 0;
	} else {
		vmb_buf b;
		fd_identity(fd, ident);
		vmb_buf_init(&b);
		vmb_buf_puts(&b, "{\"source\":\"qcow2-bitmap\",\"bitmap\":");
		vmb_buf_json_str(&b, newname);
		vmb_buf_printf(&b, ",\"generation\":%llu,\"granularity\":%u,"
			       "\"top_after\":",
			       (unsigned long long)(st->ok ? st->gen + 1 : 1),
			       gran);
		vmb_buf_json_str(&b, ident);
		vmb_buf_puts(&b, "}");
		plan->new_state = vmb_buf_detach(&b);
		if (!plan->new_state) {
			rc = VMB_ENOMEM;
			goto out;
		}
	}
	if (usable) {
		plan->changed = changed;
		plan->source = "qcow2-bitmap";
		plan->ranges = ranges.ranges;
		plan->nranges = ranges.nranges;
		ranges.ranges = NULL;
		changed = NULL;
	}
out:
	free(ranges.ranges);
	free(changed);
	free(remove);
	vmb_disk__qcow2_close(q);
	return rc;
}

/* Every extent a disk's own changes() reports (a hypervisor bitmap). */
static int changed_cb(const vmb_extent *e, void *payload)
{
	struct mark *m = payload;
	uint64_t first, last;
	if (!e->length)
		return 0;
	first = e->offset / m->cs;
	last = (e->offset + e->length - 1) / m->cs;
	if (first >= m->count)
		return vmb_error_set(VMB_ERANGE, "changed extent at %llu is "
				     "past the end of the disk",
				     (unsigned long long)e->offset);
	for (uint64_t i = first; i <= last && i < m->count; i++)
		m->changed[i] = 1;
	ranges_add(&m->rs, e->offset, e->length);
	return 0;
}

/*
 * A disk that tracks its own changes (vmb_disk_ops.changes: a libvirt
 * checkpoint's dirty bitmap read over NBD).  @return 1 when the disk has
 * no such source (image files).
 */
static int plan_disk(vmb_disk *d, uint32_t cs, const vmb_cbt_parent *p,
		     vmb_cbt_plan *plan)
{
	struct mark m;
	const char *source = NULL;
	char *state = NULL;
	int rc;
	memset(&m, 0, sizeof m);
	m.count = plan->count;
	m.cs = cs;
	m.rs.ok = 1;
	m.changed = vmb_calloc(plan->count ? plan->count : 1, 1);
	if (!m.changed)
		return VMB_ENOMEM;
	rc = vmb_disk__changes(d, p ? p->state : NULL, changed_cb, &m,
			       &source, &state);
	if (rc == 1) {
		free(m.changed);
		free(m.rs.r);
		return 1;
	}
	if (rc) {
		free(m.changed);
		free(m.rs.r);
		free(state);
		return rc;
	}
	plan->new_state = state;
	if (!p || !source) {
		/* nothing to compare with, or the source does not know */
		free(m.changed);
		free(m.rs.r);
		return 0;
	}
	plan->source = source;
	plan->changed = m.changed;
	ranges_give(&m.rs, plan);
	return 0;
}

int vmb_cbt_plan_make(vmb_disk *d, uint32_t chunk_size,
		      const vmb_cbt_parent *parent, vmb_cbt_plan *plan)
{
	uint64_t size = vmb_disk_size(d);
	const vmb_cbt_parent *p;
	struct bm_state st;
	int rc;
	memset(plan, 0, sizeof *plan);
	plan->count = size / chunk_size + (size % chunk_size ? 1 : 0);
	/* resized: nothing to compare against */
	p = parent && parent->size == size ? parent : NULL;
	rc = plan_disk(d, chunk_size, p, plan);
	if (rc != 1)
		return rc;
	parse_state(parent ? parent->state : NULL, &st);
	rc = plan_bitmap(d, chunk_size, p, parent ? parent->state : NULL, &st,
			 plan);
	if (rc || plan->changed || !p)
		return rc;
	rc = plan_overlay(d, chunk_size, p, st.top_after, plan);
	if (st.why[0])
		vmb_log(rc || !plan->changed ? VMB_LOG_WARN : VMB_LOG_INFO,
			"%s; %s", st.why, rc || !plan->changed ?
			"comparing fingerprints" : "using the overlay");
	return rc;
}
