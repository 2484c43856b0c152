/* `vmb check`: every manifest and index decodes, every chunk exists,
 * and (optionally) the repository holds the snapshots it is expected to. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "common/util.h"
#include "repo_internal.h"

struct present {
	vmb_idset ids;
	int err;
};

static int chunk_list_cb(const char *name, uint64_t size, int64_t mtime,
			 void *payload)
{
	struct present *p = payload;
	const char *slash = strrchr(name, '/');
	uint8_t id[32];
	if (!slash || vmb_unhex(slash + 1, id, 32) != 0)
		return 0;
	if (size < VMB_BLOB_HEADER_BYTES)
		return 0; /* a truncated object counts as missing */
	if (vmb_idset_add(&p->ids, id) < 0) {
		p->err = VMB_ENOMEM;
		return 1;
	}
	return 0;
}

/* Problems are logged one by one; the first is kept for the summary. */
struct problems {
	uint64_t *errors;
	char first[512];
};

static void problem(struct problems *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void problem(struct problems *p, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	vmb_log(VMB_LOG_ERROR, "%s", msg);
	if (!(*p->errors)++)
		memcpy(p->first, msg, sizeof msg);
}

/* A readable snapshot, for the expectations. */
struct seen {
	char *vm;
	int64_t time;
	char id[33];
};

struct seen_list {
	struct seen *v;
	size_t n, cap;
};

static int seen_add(struct seen_list *l, const vmb_snapshot *s)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;
		void *p = realloc(l->v, nc * sizeof *l->v);
		if (!p)
			return VMB_ENOMEM;
		l->v = p;
		l->cap = nc;
	}
	l->v[l->n].vm = vmb_strdup(s->vm ? s->vm : "");
	if (!l->v[l->n].vm)
		return VMB_ENOMEM;
	l->v[l->n].time = s->time;
	memcpy(l->v[l->n].id, s->id, 33);
	l->n++;
	return 0;
}

static int by_vm_time(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;
	int c = strcmp(x->vm, y->vm);
	if (c)
		return c;
	return x->time < y->time ? -1 : x->time > y->time;
}

/* "3d 2h", "26h 5m", "12m 3s", "40s": the two largest units. */
static void fmt_age(int64_t sec, char *buf, size_t n)
{
	static const struct { int64_t s; char u; } units[] = {
		{ 86400, 'd' }, { 3600, 'h' }, { 60, 'm' }, { 1, 's' }
	};
	if (sec < 0)
		sec = 0;
	for (size_t i = 0; i < 4; i++) {
		if (sec < units[i].s && i < 3)
			continue;
		int64_t a = sec / units[i].s, rest = sec % units[i].s;
		if (i < 3 && rest / units[i + 1].s)
			snprintf(buf, n, "%lld%c %lld%c", (long long)a, units[i].u,
				 (long long)(rest / units[i + 1].s),
				 units[i + 1].u);
		else
			snprintf(buf, n, "%lld%c", (long long)a, units[i].u);
		return;
	}
}

/* The same, exact when the value is a whole number of one unit. */
static void fmt_limit(int64_t sec, char *buf, size_t n)
{
	if (sec % 86400 == 0)
		snprintf(buf, n, "%lldd", (long long)(sec / 86400));
	else if (sec % 3600 == 0)
		snprintf(buf, n, "%lldh", (long long)(sec / 3600));
	else if (sec % 60 == 0)
		snprintf(buf, n, "%lldm", (long long)(sec / 60));
	else
		snprintf(buf, n, "%llds", (long long)sec);
}

/* One VM's snapshots v[0..n) (oldest first) against the rules. */
static void expect_vm(const vmb_expect_options *o, const char *vm,
		      const struct seen *v, size_t n, int64_t now,
		      struct problems *p, vmb_expect_result *er)
{
	char lim[32];
	er->vms++;
	er->snapshots += n;
	if (er->vms == 1 || n < er->fewest)
		er->fewest = n;
	if (n && (!er->oldest_latest || v[n - 1].time < er->oldest_latest))
		er->oldest_latest = v[n - 1].time;
	if (o->min_snapshots && n < o->min_snapshots) {
		er->failures++;
		if (n)
			problem(p, "VM %s: %zu snapshot%s, expected at least "
				"%llu", vm, n, n == 1 ? "" : "s",
				(unsigned long long)o->min_snapshots);
		else
			problem(p, "VM %s: no snapshot, expected at least %llu",
				vm, (unsigned long long)o->min_snapshots);
		if (!n)
			return; /* an age line would only repeat it */
	}
	if (o->max_age <= 0)
		return;
	fmt_limit(o->max_age, lim, sizeof lim);
	if (!n) {
		er->failures++;
		problem(p, "VM %s: no snapshot, expected one within %s", vm,
			lim);
	} else if (now - v[n - 1].time > o->max_age) {
		char age[32], when[40];
		time_t t = (time_t)v[n - 1].time;
		struct tm tm;
		fmt_age(now - v[n - 1].time, age, sizeof age);
		if (!gmtime_r(&t, &tm) ||
		    !strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm))
			snprintf(when, sizeof when, "%lld",
				 (long long)v[n - 1].time);
		er->failures++;
		problem(p, "VM %s: newest snapshot %s is %s old (%s), "
			"expected within %s", vm, v[n - 1].id, age, when, lim);
	}
}

static void expect_all(const vmb_expect_options *o, struct seen_list *l,
		       struct problems *p, vmb_expect_result *er)
{
	int64_t now = o->now ? o->now : (int64_t)time(NULL);
	if (!o->min_snapshots && o->max_age <= 0)
		return;
	if (l->n)
		qsort(l->v, l->n, sizeof *l->v, by_vm_time);
	if (o->vm) {
		size_t i = 0, j;
		while (i < l->n && strcmp(l->v[i].vm, o->vm) != 0)
			i++;
		for (j = i; j < l->n && strcmp(l->v[j].vm, o->vm) == 0; j++)
			;
		expect_vm(o, o->vm, l->n ? l->v + i : NULL, j - i, now, p, er);
		return;
	}
	if (!l->n) {
		er->failures++;
		problem(p, "the repository holds no snapshot, expected %s",
			o->min_snapshots ? "some" : "a recent one");
		return;
	}
	for (size_t i = 0, j; i < l->n; i = j) {
		for (j = i; j < l->n && strcmp(l->v[j].vm, l->v[i].vm) == 0;
		     j++)
			;
		expect_vm(o, l->v[i].vm, l->v + i, j - i, now, p, er);
	}
}

struct snap_ids {
	char (*ids)[33];
	size_t n, cap;
};

static int snap_cb(const char *name, uint64_t size, int64_t mtime,
		   void *payload)
{
	struct snap_ids *s = payload;
	const char *id = name + strlen("snapshots/");
	if (!vmb_repo__valid_id(id))
		return 0;
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 64;
		void *p = realloc(s->ids, nc * sizeof *s->ids);
		if (!p)
			return 1;
		s->ids = p;
		s->cap = nc;
	}
	memcpy(s->ids[s->n++], id, 33);
	return 0;
}

VMB_EXTERN(int) vmb_repo_check(vmb_repo *r, vmb_check_result *res)
{
	return vmb_repo_check_expect(r, NULL, res, NULL);
}

VMB_EXTERN(int) vmb_repo_check_expect(vmb_repo *r,
				      const vmb_expect_options *o,
				      vmb_check_result *res,
				      vmb_expect_result *eres)
{
	struct present pr;
	struct snap_ids sl;
	struct seen_list seen = { 0 };
	struct problems pb = { &res->errors, "" };
	vmb_expect_result er_local, *er = eres ? eres : &er_local;
	vmb_idset seen_ix, counted;
	int rc;

	memset(res, 0, sizeof *res);
	memset(er, 0, sizeof *er);
	if (o && (o->version < 1 || o->max_age < 0))
		return vmb_error_set(VMB_EINVAL, "check: bad expectations "
				     "(version %u, age %lld)", o->version,
				     (long long)o->max_age);
	memset(&pr, 0, sizeof pr);
	memset(&sl, 0, sizeof sl);
	memset(&seen_ix, 0, sizeof seen_ix);
	memset(&counted, 0, sizeof counted);
	rc = vmb_target_list(r->t, "chunks/", chunk_list_cb, &pr);
	if (!rc)
		rc = pr.err;
	if (!rc)
		rc = vmb_target_list(r->t, "snapshots/", snap_cb, &sl);
	if (rc)
		goto out;
	for (size_t i = 0; i < sl.n; i++) {
		vmb_snapshot *s;
		res->snapshots++;
		rc = vmb_repo__load_snapshot(r, sl.ids[i], &s);
		if (rc == VMB_ENOTFOUND) {
			res->snapshots--;
			continue;
		}
		if (rc) {
			if (rc != VMB_ECORRUPT && rc != VMB_ENOTSUP)
				goto out;
			problem(&pb, "snapshot %s: %s", sl.ids[i],
				vmb_error_message());
			continue;
		}
		if (o && (rc = seen_add(&seen, s)) != 0) {
			vmb_snapshot_free(s);
			goto out;
		}
		for (size_t d = 0; d < s->ndisks; d++) {
			vmb_index ix;
			uint8_t hid[32];
			if (vmb_unhex(s->disks[d].index, hid, 32) != 0)
				continue;
			if (vmb_idset_has(&seen_ix, hid))
				continue;
			vmb_idset_add(&seen_ix, hid);
			res->indexes++;
			rc = vmb_repo__load_index(r, s->disks[d].index, &ix);
			if (rc) {
				if (rc != VMB_ECORRUPT && rc != VMB_ENOTSUP)
					goto out_snap;
				problem(&pb, "snapshot %s disk %s: %s",
					s->id, s->disks[d].name,
					vmb_error_message());
				rc = 0;
				continue;
			}
			if (ix.disk_size != s->disks[d].size) {
				problem(&pb, "snapshot %s disk %s: "
					"index size differs from manifest",
					s->id, s->disks[d].name);
			}
			for (uint64_t k = 0; k < ix.count; k++) {
			    const uint8_t *ids[2];
			    int nid = vmb_index_ids(&ix, k, ids);
			    for (int q = 0; q < nid; q++) {
				const uint8_t *id = ids[q];
				if (vmb_idset_add(&counted, id) == 1)
					res->chunks_referenced++;
				if (vmb_idset_has(&pr.ids, id))
					continue;
				/* listing may lag on object stores: ask */
				char name[80];
				uint64_t sz;
				vmb_chunk_name(id, name);
				if (vmb_target_stat(r->t, name, &sz, NULL) == 0 &&
				    sz >= VMB_BLOB_HEADER_BYTES) {
					vmb_idset_add(&pr.ids, id);
					continue;
				}
				problem(&pb, "snapshot %s disk %s: "
					"%s %s at offset %llu is missing",
					s->id, s->disks[d].name,
					ix.e[k].kind == VMB_CHUNK_DATA ? "chunk" :
					q ? "patch base chunk" : "patch chunk",
					name + 10,
					(unsigned long long)k * ix.chunk_size);
				res->chunks_missing++;
				vmb_idset_add(&pr.ids, id); /* once */
			    }
			}
			vmb_index_free(&ix);
		}
		rc = 0;
out_snap:
		vmb_snapshot_free(s);
		if (rc)
			goto out;
	}
	if (o)
		expect_all(o, &seen, &pb, er);
	if (res->errors)
		rc = vmb_error_set(VMB_EVERIFY, "check found %llu problem%s%s",
				   (unsigned long long)res->errors,
				   res->errors == 1 ? ": " : "s, the first: ",
				   pb.first);
out:
	for (size_t i = 0; i < seen.n; i++)
		free(seen.v[i].vm);
	free(seen.v);
	vmb_idset_free(&pr.ids);
	vmb_idset_free(&seen_ix);
	vmb_idset_free(&counted);
	free(sl.ids);
	return rc;
}
