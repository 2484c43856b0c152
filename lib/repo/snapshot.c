/* Snapshot manifests: encode, decode, list, find, random-access disks. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vmbackup/sys/disk_format.h"
#include "common/json.h"
#include "common/util.h"
#include "repo_internal.h"

#define MANIFEST_MAX (64u << 20)
#define INDEX_MAX ((size_t)VMB_INDEX_HEADER_BYTES + \
		   (size_t)VMB_INDEX_MAX_ENTRIES * VMB_INDEX_ENTRY_BYTES)

char *vmb_repo__manifest_json(const vmb_snapshot *s, const char *stats)
{
	vmb_buf b;
	vmb_buf_init(&b);
	vmb_buf_printf(&b, "{\"version\":1,\"id\":\"%s\",\"vm\":", s->id);
	vmb_buf_json_str(&b, s->vm);
	vmb_buf_printf(&b, ",\"time\":%lld,\"time_us\":%lld,\"host\":",
		       (long long)s->time, (long long)s->time_us);
	vmb_buf_json_str(&b, s->host ? s->host : "");
	vmb_buf_puts(&b, ",\"parent\":");
	if (s->parent)
		vmb_buf_json_str(&b, s->parent);
	else
		vmb_buf_puts(&b, "null");
	vmb_buf_puts(&b, ",\"cbt\":");
	vmb_buf_json_str(&b, s->cbt ? s->cbt : "none");
	vmb_buf_puts(&b, ",\"tags\":[");
	for (size_t i = 0; i < s->ntags; i++) {
		if (i)
			vmb_buf_puts(&b, ",");
		vmb_buf_json_str(&b, s->tags[i]);
	}
	vmb_buf_puts(&b, "],\"disks\":[");
	for (size_t i = 0; i < s->ndisks; i++) {
		const vmb_mdisk *d = &s->disks[i];
		vmb_buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
		vmb_buf_json_str(&b, d->name);
		vmb_buf_puts(&b, ",\"source\":");
		vmb_buf_json_str(&b, d->source ? d->source : "");
		vmb_buf_puts(&b, ",\"format\":");
		vmb_buf_json_str(&b, d->format);
		vmb_buf_printf(&b, ",\"virtual_size\":%llu,\"chunk_size\":%u,"
			       "\"index\":\"%s\",\"chunks\":%llu,"
			       "\"zero_chunks\":%llu,\"cbt\":",
			       (unsigned long long)d->size, d->chunk_size,
			       d->index, (unsigned long long)d->chunks,
			       (unsigned long long)d->zero_chunks);
		vmb_buf_json_str(&b, d->cbt ? d->cbt : "none");
		vmb_buf_puts(&b, ",\"layers\":[");
		for (size_t k = 0; k < d->nlayers; k++) {
			if (k)
				vmb_buf_puts(&b, ",");
			vmb_buf_json_str(&b, d->layers[k]);
		}
		vmb_buf_puts(&b, "]");
		if (d->cbt_state) {
			vmb_buf_puts(&b, ",\"cbt_state\":");
			vmb_buf_json_str(&b, d->cbt_state);
		}
		if (d->top_stamp) {
			vmb_buf_puts(&b, ",\"top_stamp\":");
			vmb_buf_json_str(&b, d->top_stamp);
		}
		vmb_buf_puts(&b, "}");
	}
	vmb_buf_puts(&b, "],\"config\":");
	if (s->config) {
		vmb_buf_puts(&b, "{\"format\":");
		vmb_buf_json_str(&b, s->config_format ? s->config_format : "");
		vmb_buf_puts(&b, ",\"data\":");
		vmb_buf_json_str(&b, s->config);
		vmb_buf_puts(&b, "}");
	} else {
		vmb_buf_puts(&b, "null");
	}
	if (s->consistency) {
		vmb_buf_puts(&b, ",\"consistency\":");
		vmb_buf_json_str(&b, s->consistency);
		if (s->consistency_note) {
			vmb_buf_puts(&b, ",\"consistency_note\":");
			vmb_buf_json_str(&b, s->consistency_note);
		}
	}
	vmb_buf_printf(&b, ",\"protected\":%s,\"stats\":%s}",
		       s->protected_ ? "true" : "false", stats ? stats : "{}");
	return vmb_buf_detach(&b);
}

VMB_EXTERN(void) vmb_snapshot_free(vmb_snapshot *s)
{
	if (!s)
		return;
	free(s->vm);
	free(s->host);
	free(s->parent);
	free(s->cbt);
	for (size_t i = 0; i < s->ntags; i++)
		free(s->tags[i]);
	free(s->tags);
	for (size_t i = 0; i < s->ndisks; i++) {
		free(s->disks[i].name);
		free(s->disks[i].source);
		free(s->disks[i].format);
		free(s->disks[i].cbt);
		free(s->disks[i].cbt_state);
		free(s->disks[i].top_stamp);
		for (size_t k = 0; k < s->disks[i].nlayers; k++)
			free(s->disks[i].layers[k]);
		free(s->disks[i].layers);
	}
	free(s->disks);
	free(s->config_format);
	free(s->config);
	free(s->consistency);
	free(s->consistency_note);
	free(s->json);
	free(s);
}

static int valid_disk_name(const char *n)
{
	if (!n || !*n || strlen(n) > 200 || n[0] == '.')
		return 0;
	for (; *n; n++)
		if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') ||
		      (*n >= '0' && *n <= '9') || *n == '.' || *n == '_' ||
		      *n == '-'))
			return 0;
	return 1;
}

int vmb_repo__parse_manifest(const char *id, const char *text, size_t len,
			     const char *what, vmb_snapshot **out)
{
	vmb_json *j = NULL;
	vmb_snapshot *s;
	const vmb_json *arr, *cfg;
	const char *str;
	uint64_t ver;
	int rc;

	*out = NULL;
	rc = vmb_json_parse(text, len, what, &j);
	if (rc)
		return rc;
	s = vmb_calloc(1, sizeof *s);
	if (!s) {
		vmb_json_free(j);
		return VMB_ENOMEM;
	}
	rc = VMB_ECORRUPT;
	if (vmb_json_u64(j, "version", &ver) || ver != 1)
		goto bad;
	str = vmb_json_str(j, "id");
	if (!str || strcmp(str, id) != 0)
		goto bad;
	memcpy(s->id, id, 33);
	if (!(str = vmb_json_str(j, "vm")) || !(s->vm = vmb_strdup(str)))
		goto bad;
	if (vmb_json_i64(j, "time", &s->time) ||
	    s->time > INT64_MAX / 1000000 || s->time < INT64_MIN / 1000000)
		goto bad;
	if (vmb_json_i64(j, "time_us", &s->time_us) ||
	    s->time_us / 1000000 != s->time)
		s->time_us = s->time * 1000000; /* older or inconsistent */
	str = vmb_json_str(j, "host");
	s->host = vmb_strdup(str ? str : "");
	str = vmb_json_str(j, "parent");
	if (str && vmb_repo__valid_id(str) && !(s->parent = vmb_strdup(str)))
		goto nomem;
	str = vmb_json_str(j, "cbt");
	s->cbt = vmb_strdup(str ? str : "none");
	if (!s->host || !s->cbt)
		goto nomem;
	{
		const vmb_json *p = vmb_json_get(j, "protected");
		s->protected_ = p && p->type == VMB_JSON_BOOL && p->boolean;
	}
	if ((arr = vmb_json_arr(j, "tags")) && arr->n) {
		if (arr->n > 1000 || !(s->tags = vmb_calloc(arr->n, sizeof(char *))))
			goto bad;
		for (size_t i = 0; i < arr->n; i++) {
			if (arr->items[i]->type != VMB_JSON_STR)
				goto bad;
			if (!(s->tags[s->ntags++] =
				      vmb_strdup(arr->items[i]->str)))
				goto nomem;
		}
	}
	if (!(arr = vmb_json_arr(j, "disks")) || arr->n > 256)
		goto bad;
	s->disks = vmb_calloc(arr->n ? arr->n : 1, sizeof *s->disks);
	if (!s->disks)
		goto bad;
	for (size_t i = 0; i < arr->n; i++) {
		const vmb_json *d = arr->items[i];
		vmb_mdisk *m = &s->disks[s->ndisks];
		uint64_t cs, n;
		const char *nm = vmb_json_str(d, "name");
		const char *fmt = vmb_json_str(d, "format");
		const char *ix = vmb_json_str(d, "index");
		if (!valid_disk_name(nm) || !fmt ||
		    vmb_json_u64(d, "virtual_size", &m->size) ||
		    vmb_json_u64(d, "chunk_size", &cs) || !vmb_is_pow2(cs) ||
		    cs < 4096 || cs > (64u << 20) || !ix || strlen(ix) != 64 ||
		    vmb_index_count(m->size, (uint32_t)cs, &n))
			goto bad;
		m->chunk_size = (uint32_t)cs;
		memcpy(m->index, ix, 65);
		for (int k = 0; k < 64; k++)
			if (!((ix[k] >= '0' && ix[k] <= '9') ||
			      (ix[k] >= 'a' && ix[k] <= 'f')))
				goto bad;
		s->ndisks++; /* from here on freed with the snapshot */
		m->name = vmb_strdup(nm);
		m->format = vmb_strdup(fmt);
		str = vmb_json_str(d, "source");
		m->source = vmb_strdup(str ? str : "");
		str = vmb_json_str(d, "cbt");
		m->cbt = vmb_strdup(str ? str : "none");
		if (!m->name || !m->format || !m->source || !m->cbt)
			goto nomem;
		str = vmb_json_str(d, "cbt_state");
		if (str && !(m->cbt_state = vmb_strdup(str)))
			goto nomem;
		str = vmb_json_str(d, "top_stamp");
		if (str && !(m->top_stamp = vmb_strdup(str)))
			goto nomem;
		{
			const vmb_json *la = vmb_json_arr(d, "layers");
			if (la && la->n && la->n <= 64) {
				m->layers = vmb_calloc(la->n, sizeof(char *));
				if (!m->layers)
					goto nomem;
				for (size_t k = 0; k < la->n; k++)
					if (la->items[k]->type == VMB_JSON_STR &&
					    !(m->layers[m->nlayers++] =
						      vmb_strdup(la->items[k]->str)))
						goto nomem;
			}
		}
		vmb_json_u64(d, "chunks", &m->chunks);
		vmb_json_u64(d, "zero_chunks", &m->zero_chunks);
	}
	cfg = vmb_json_get(j, "config");
	if (cfg && cfg->type == VMB_JSON_OBJ) {
		str = vmb_json_str(cfg, "format");
		s->config_format = vmb_strdup(str ? str : "");
		str = vmb_json_str(cfg, "data");
		s->config = vmb_strdup(str ? str : "");
		if (!s->config_format || !s->config)
			goto nomem;
	}
	if ((str = vmb_json_str(j, "consistency")) &&
	    !(s->consistency = vmb_strdup(str)))
		goto nomem;
	if ((str = vmb_json_str(j, "consistency_note")) &&
	    !(s->consistency_note = vmb_strdup(str)))
		goto nomem;
	if (!(s->json = vmb_strndup(text, len)))
		goto nomem;
	vmb_json_free(j);
	*out = s;
	return 0;
nomem:
	vmb_json_free(j);
	vmb_snapshot_free(s);
	return vmb_error_set(VMB_ENOMEM, "out of memory");
bad:
	vmb_json_free(j);
	vmb_snapshot_free(s);
	return vmb_error_set(rc, "%s: malformed snapshot manifest", what);
}

int vmb_repo__load_snapshot(vmb_repo *r, const char *id, vmb_snapshot **out)
{
	char name[64], what[200];
	uint8_t *plain;
	size_t len;
	int rc;
	if (!vmb_repo__valid_id(id))
		return vmb_error_set(VMB_EINVAL, "bad snapshot id '%s'", id);
	snprintf(name, sizeof name, "snapshots/%s", id);
	rc = vmb_repo__get_blob(r, VMB_BLOB_MANIFEST, name,
				(const uint8_t *)name, strlen(name),
				MANIFEST_MAX, &plain, &len);
	if (rc == VMB_ENOTFOUND)
		return vmb_error_set(VMB_ENOTFOUND, "snapshot %s not found", id);
	if (rc)
		return rc;
	snprintf(what, sizeof what, "%s: %s", vmb_target_url(r->t), name);
	rc = vmb_repo__parse_manifest(id, (char *)plain, len, what, out);
	free(plain);
	return rc;
}

int vmb_repo__load_index(vmb_repo *r, const char *hexid, vmb_index *ix)
{
	char name[100], what[200];
	uint8_t *plain;
	size_t len;
	int rc;
	snprintf(name, sizeof name, "indexes/%s", hexid);
	rc = vmb_repo__get_blob(r, VMB_BLOB_INDEX, name, (const uint8_t *)name,
				strlen(name), INDEX_MAX, &plain, &len);
	if (rc == VMB_ENOTFOUND)
		return vmb_error_set(VMB_ECORRUPT, "%s: index %s is missing",
				     vmb_target_url(r->t), hexid);
	if (rc)
		return rc;
	snprintf(what, sizeof what, "%s: %s", vmb_target_url(r->t), name);
	rc = vmb_index_decode(plain, len, what, ix);
	free(plain);
	return rc;
}

/* ---- listing ---- */

struct idlist {
	char (*ids)[33];
	size_t n, cap;
	int err;
};

static int list_cb(const char *name, uint64_t size, int64_t mtime,
		   void *payload)
{
	struct idlist *l = payload;
	const char *id = name + strlen("snapshots/");
	if (!vmb_repo__valid_id(id))
		return 0;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;
		void *p = realloc(l->ids, nc * sizeof *l->ids);
		if (!p) {
			l->err = vmb_error_set(VMB_ENOMEM, "out of memory");
			return 1;
		}
		l->ids = p;
		l->cap = nc;
	}
	memcpy(l->ids[l->n++], id, 33);
	return 0;
}

static int list_ids(vmb_repo *r, struct idlist *l)
{
	memset(l, 0, sizeof *l);
	int rc = vmb_target_list(r->t, "snapshots/", list_cb, l);
	return rc ? rc : l->err;
}

static int any_cb(const char *name, uint64_t size, int64_t mtime,
		  void *payload)
{
	(void)size;
	(void)mtime;
	if (!vmb_repo__valid_id(name + strlen("snapshots/")))
		return 0;
	*(int *)payload = 1;
	return 1; /* one is enough */
}

VMB_EXTERN(int) vmb_repo_has_snapshots(vmb_repo *r)
{
	int any = 0, rc;
	if (!r)
		return vmb_error_set(VMB_EINVAL, "no repository");
	rc = vmb_target_list(r->t, "snapshots/", any_cb, &any);
	return rc ? rc : any;
}

static int by_time(const void *a, const void *b)
{
	const vmb_snapshot *x = *(vmb_snapshot *const *)a;
	const vmb_snapshot *y = *(vmb_snapshot *const *)b;
	if (x->time_us != y->time_us)
		return x->time_us < y->time_us ? -1 : 1;
	return strcmp(x->id, y->id);
}

int vmb_repo__snapshots(vmb_repo *r, const char *vm, int strict,
			vmb_snapshot ***list, size_t *count)
{
	struct idlist l;
	vmb_snapshot **out = NULL;
	size_t n = 0;
	int rc;

	*list = NULL;
	*count = 0;
	r->damaged_manifests = 0;
	r->first_damaged[0] = 0;
	rc = list_ids(r, &l);
	if (rc)
		goto out;
	out = vmb_calloc(l.n ? l.n : 1, sizeof *out);
	if (!out) {
		rc = VMB_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < l.n; i++) {
		vmb_snapshot *s;
		rc = vmb_repo__load_snapshot(r, l.ids[i], &s);
		if (rc == VMB_ENOTFOUND) /* deleted while we listed */
			continue;
		if (!strict && (rc == VMB_ECORRUPT || rc == VMB_ENOTSUP)) {
			vmb_log(VMB_LOG_ERROR, "%s", vmb_error_message());
			if (!r->damaged_manifests++)
				snprintf(r->first_damaged,
					 sizeof r->first_damaged, "%s",
					 l.ids[i]);
			rc = 0;
			continue;
		}
		if (rc)
			goto out;
		if (vm && strcmp(s->vm, vm) != 0) {
			vmb_snapshot_free(s);
			continue;
		}
		out[n++] = s;
	}
	qsort(out, n, sizeof *out, by_time);
	*list = out;
	*count = n;
	out = NULL;
	rc = 0;
out:
	if (out)
		vmb_snapshot_list_free(out, n);
	free(l.ids);
	return rc;
}

VMB_EXTERN(int) vmb_repo_snapshots(vmb_repo *r, const char *vm,
				   vmb_snapshot ***list, size_t *count)
{
	return vmb_repo__snapshots(r, vm, 0, list, count);
}

VMB_EXTERN(size_t) vmb_repo_damaged_manifests(const vmb_repo *r,
					      const char **first)
{
	if (first)
		*first = r->first_damaged;
	return r->damaged_manifests;
}

VMB_EXTERN(void) vmb_snapshot_list_free(vmb_snapshot **list, size_t count)
{
	if (!list)
		return;
	for (size_t i = 0; i < count; i++)
		vmb_snapshot_free(list[i]);
	free(list);
}

VMB_EXTERN(int) vmb_repo_snapshot_find(vmb_repo *r, const char *ref,
				       vmb_snapshot **out)
{
	const char *at;
	int rc;
	*out = NULL;
	if (!ref || !*ref)
		return vmb_error_set(VMB_EINVAL, "empty snapshot reference");
	at = strrchr(ref, '@');
	if (strcmp(ref, "latest") == 0 || (at && strcmp(at, "@latest") == 0)) {
		vmb_snapshot **list;
		size_t n;
		char *vm = at ? vmb_strndup(ref, (size_t)(at - ref)) : NULL;
		rc = vmb_repo_snapshots(r, vm, &list, &n);
		if (rc == 0 && n == 0) {
			vmb_snapshot_list_free(list, 0); /* the empty array */
			rc = vmb_error_set(VMB_ENOTFOUND, vm ?
					   "no snapshot of VM '%s'" :
					   "no snapshots in the repository%s",
					   vm ? vm : "");
		}
		if (rc == 0) {
			*out = list[n - 1];
			list[n - 1] = NULL;
			vmb_snapshot_list_free(list, n - 1);
		}
		free(vm);
		return rc;
	}
	if (vmb_repo__valid_id(ref))
		return vmb_repo__load_snapshot(r, ref, out);
	/* a unique prefix */
	for (const char *p = ref; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')) ||
		    p - ref >= 32)
			return vmb_error_set(VMB_ENOTFOUND,
					     "snapshot '%s' not found", ref);
	struct idlist l;
	const char *match = NULL;
	size_t hits = 0;
	rc = list_ids(r, &l);
	if (rc) {
		free(l.ids);
		return rc;
	}
	for (size_t i = 0; i < l.n; i++)
		if (strncmp(l.ids[i], ref, strlen(ref)) == 0) {
			hits++;
			match = l.ids[i];
		}
	if (hits == 1)
		rc = vmb_repo__load_snapshot(r, match, out);
	else if (hits == 0)
		rc = vmb_error_set(VMB_ENOTFOUND, "snapshot '%s' not found", ref);
	else
		rc = vmb_error_set(VMB_EAMBIGUOUS, "snapshot prefix '%s' matches "
				   "%zu snapshots", ref, hits);
	free(l.ids);
	return rc;
}

/* ---- getters ---- */

VMB_EXTERN(const char *) vmb_snapshot_id(const vmb_snapshot *s) { return s->id; }
VMB_EXTERN(const char *) vmb_snapshot_vm(const vmb_snapshot *s) { return s->vm; }
VMB_EXTERN(const char *) vmb_snapshot_host(const vmb_snapshot *s) { return s->host; }
VMB_EXTERN(int64_t) vmb_snapshot_time(const vmb_snapshot *s) { return s->time; }
VMB_EXTERN(const char *) vmb_snapshot_parent(const vmb_snapshot *s) { return s->parent; }
VMB_EXTERN(const char *) vmb_snapshot_cbt(const vmb_snapshot *s) { return s->cbt; }
VMB_EXTERN(size_t) vmb_snapshot_tag_count(const vmb_snapshot *s) { return s->ntags; }
VMB_EXTERN(const char *) vmb_snapshot_tag(const vmb_snapshot *s, size_t i)
{
	return i < s->ntags ? s->tags[i] : NULL;
}
VMB_EXTERN(size_t) vmb_snapshot_disk_count(const vmb_snapshot *s) { return s->ndisks; }
VMB_EXTERN(const char *) vmb_snapshot_disk_name(const vmb_snapshot *s, size_t i)
{
	return i < s->ndisks ? s->disks[i].name : NULL;
}
VMB_EXTERN(const char *) vmb_snapshot_disk_format(const vmb_snapshot *s, size_t i)
{
	return i < s->ndisks ? s->disks[i].format : NULL;
}
VMB_EXTERN(uint64_t) vmb_snapshot_disk_size(const vmb_snapshot *s, size_t i)
{
	return i < s->ndisks ? s->disks[i].size : 0;
}
VMB_EXTERN(uint32_t) vmb_snapshot_disk_chunk_size(const vmb_snapshot *s,
						  size_t i)
{
	return i < s->ndisks ? s->disks[i].chunk_size : 0;
}
VMB_EXTERN(const char *) vmb_snapshot_json(const vmb_snapshot *s) { return s->json; }
VMB_EXTERN(const char *) vmb_snapshot_disk_cbt_state(const vmb_snapshot *s,
						      size_t i)
{
	return i < s->ndisks ? s->disks[i].cbt_state : NULL;
}
VMB_EXTERN(const char *) vmb_snapshot_disk_cbt(const vmb_snapshot *s, size_t i)
{
	return i < s->ndisks ? s->disks[i].cbt : NULL;
}
VMB_EXTERN(const char *) vmb_snapshot_consistency(const vmb_snapshot *s)
{
	return s->consistency;
}
VMB_EXTERN(const char *) vmb_snapshot_consistency_note(const vmb_snapshot *s)
{
	return s->consistency_note;
}
VMB_EXTERN(const char *) vmb_snapshot_config(const vmb_snapshot *s,
					     const char **format)
{
	if (format)
		*format = s->config ? s->config_format : NULL;
	return s->config;
}

/* ---- random-access disk view ---- */

#define SD_DCTX 8 /* whole-chunk reads decoding at once */

struct snapdisk {
	vmb_repo *r;
	vmb_index ix;
	char format[32];
	pthread_mutex_t lock;
	uint64_t cached; /* chunk index in buf, or UINT64_MAX */
	uint8_t *buf;
	ZSTD_DCtx *dctx;
	/* whole-chunk reads (a cache above us) decode straight into the
	 * caller's buffer in parallel, each with a context from here */
	pthread_mutex_t plock;
	pthread_cond_t pcv;
	ZSTD_DCtx *pool[SD_DCTX];
	int npool, npool_max;
};

/* A whole chunk @ci into @out, without the shared buffer. */
static int sd_read_whole(struct snapdisk *sd, uint64_t ci, uint8_t *out)
{
	ZSTD_DCtx *d;
	size_t got;
	int rc;
	pthread_mutex_lock(&sd->plock);
	while (sd->npool == 0)
		pthread_cond_wait(&sd->pcv, &sd->plock);
	d = sd->pool[--sd->npool];
	pthread_mutex_unlock(&sd->plock);
	rc = vmb_repo__read_entry(sd->r, &sd->ix, ci, d, out, &got);
	pthread_mutex_lock(&sd->plock);
	sd->pool[sd->npool++] = d;
	pthread_cond_signal(&sd->pcv);
	pthread_mutex_unlock(&sd->plock);
	return rc;
}

static uint64_t sd_size(void *data)
{
	return ((struct snapdisk *)data)->ix.disk_size;
}

static int sd_read(void *data, void *out, uint64_t off, size_t len)
{
	struct snapdisk *sd = data;
	uint8_t *o = out;
	int rc = 0;
	if (sd->npool_max && off % sd->ix.chunk_size == 0 &&
	    len == vmb_index_chunk_len(&sd->ix, off / sd->ix.chunk_size))
		return sd_read_whole(sd, off / sd->ix.chunk_size, out);
	pthread_mutex_lock(&sd->lock);
	while (len) {
		uint64_t ci = off / sd->ix.chunk_size;
		uint32_t co = (uint32_t)(off % sd->ix.chunk_size);
		uint32_t clen = vmb_index_chunk_len(&sd->ix, ci);
		size_t n = VMB_MIN(len, (size_t)(clen - co));
		if (sd->ix.e[ci].kind == VMB_CHUNK_ZERO) {
			memset(o, 0, n);
		} else {
			if (sd->cached != ci) {
				size_t got;
				sd->cached = UINT64_MAX;
				rc = vmb_repo__read_entry(sd->r, &sd->ix, ci,
							  sd->dctx, sd->buf,
							  &got);
				if (rc)
					break;
				sd->cached = ci;
			}
			memcpy(o, sd->buf + co, n);
		}
		o += n;
		off += n;
		len -= n;
	}
	pthread_mutex_unlock(&sd->lock);
	return rc;
}

static int sd_map(void *data, uint64_t off, uint64_t len, vmb_extent_fn fn,
		  void *payload)
{
	struct snapdisk *sd = data;
	uint64_t end = off + len;
	while (off < end) {
		uint64_t ci = off / sd->ix.chunk_size;
		uint64_t cend = VMB_MIN(end, (ci + 1) * sd->ix.chunk_size);
		int kind = sd->ix.e[ci].kind == VMB_CHUNK_ZERO ?
			   VMB_EXTENT_ZERO : VMB_EXTENT_DATA;
		/* merge runs of the same kind */
		while (cend < end) {
			uint64_t nci = cend / sd->ix.chunk_size;
			int nk = sd->ix.e[nci].kind == VMB_CHUNK_ZERO ?
				 VMB_EXTENT_ZERO : VMB_EXTENT_DATA;
			if (nk != kind)
				break;
			cend = VMB_MIN(end, (nci + 1) * sd->ix.chunk_size);
		}
		vmb_extent e = { off, cend - off, kind, 0 };
		if (fn(&e, payload))
			return 0;
		off = cend;
	}
	return 0;
}

static void sd_close(void *data)
{
	struct snapdisk *sd = data;
	vmb_index_free(&sd->ix);
	free(sd->buf);
	ZSTD_freeDCtx(sd->dctx);
	for (int i = 0; i < sd->npool; i++)
		ZSTD_freeDCtx(sd->pool[i]);
	pthread_mutex_destroy(&sd->lock);
	pthread_mutex_destroy(&sd->plock);
	pthread_cond_destroy(&sd->pcv);
	free(sd);
}

static const vmb_disk_ops snapdisk_ops = {
	VMB_DISK_OPS_VERSION, "snapshot", sd_size, sd_read, sd_map, sd_close,
	NULL
};

VMB_EXTERN(int) vmb_snapshot_disk_open(vmb_repo *r, const vmb_snapshot *s,
				       const char *disk, vmb_disk **out)
{
	const vmb_mdisk *m = NULL;
	struct snapdisk *sd;
	int rc;
	*out = NULL;
	for (size_t i = 0; i < s->ndisks; i++)
		if (!disk || strcmp(s->disks[i].name, disk) == 0) {
			m = &s->disks[i];
			break;
		}
	if (!m)
		return vmb_error_set(VMB_ENOTFOUND, "snapshot %s has no disk "
				     "'%s'", s->id, disk ? disk : "");
	sd = vmb_calloc(1, sizeof *sd);
	if (!sd)
		return VMB_ENOMEM;
	pthread_mutex_init(&sd->lock, NULL);
	pthread_mutex_init(&sd->plock, NULL);
	pthread_cond_init(&sd->pcv, NULL);
	for (int i = 0; i < SD_DCTX; i++)
		if ((sd->pool[sd->npool] = ZSTD_createDCtx()))
			sd->npool++;
	sd->npool_max = sd->npool;
	sd->r = r;
	sd->cached = UINT64_MAX;
	rc = vmb_repo__load_index(r, m->index, &sd->ix);
	if (!rc && (sd->ix.disk_size != m->size ||
		    sd->ix.chunk_size != m->chunk_size))
		rc = vmb_error_set(VMB_ECORRUPT, "index of disk %s does not "
				   "match its manifest", m->name);
	if (!rc && (!(sd->buf = vmb_malloc(sd->ix.chunk_size)) ||
		    !(sd->dctx = ZSTD_createDCtx())))
		rc = VMB_ENOMEM;
	if (!rc)
		rc = vmb_disk_new(&snapdisk_ops, sd, out);
	if (rc) {
		sd_close(sd);
		return rc;
	}
	return 0;
}
