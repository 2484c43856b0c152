/* Retention (prune), protection markers and garbage collection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "common/json.h"
#include "common/util.h"
#include "lease.h"
#include "repo_internal.h"

/* ---- protection ---- */

VMB_EXTERN(int) vmb_repo_is_protected(vmb_repo *r, const char *id)
{
	char name[64];
	uint64_t sz;
	int rc;
	snprintf(name, sizeof name, "protect/%s", id);
	rc = vmb_target_stat(r->t, name, &sz, NULL);
	if (rc == 0)
		return 1;
	if (rc == VMB_ENOTFOUND) {
		vmb_error_clear();
		return 0;
	}
	return rc;
}

VMB_EXTERN(int) vmb_repo_protect(vmb_repo *r, const char *ref, int on)
{
	vmb_snapshot *s;
	char name[64];
	int rc = vmb_repo_snapshot_find(r, ref, &s);
	if (rc)
		return rc;
	snprintf(name, sizeof name, "protect/%s", s->id);
	vmb_snapshot_free(s);
	if (on)
		return vmb_target_put(r->t, name, "1\n", 2);
	rc = vmb_target_delete(r->t, name);
	return rc == VMB_ENOTFOUND ? 0 : rc;
}

/* ---- prune ---- */

/* A period key for the rule, in local time. */
static long period_key(int64_t t, int rule)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char buf[16];
	localtime_r(&tt, &tm);
	switch (rule) {
	case 0: return (long)(tm.tm_year + 1900) * 1000000 + (tm.tm_mon + 1) * 10000 +
		       tm.tm_mday * 100 + tm.tm_hour;               /* hour */
	case 1: return (long)(tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 +
		       tm.tm_mday;                                  /* day */
	case 2: strftime(buf, sizeof buf, "%G%V", &tm);         /* ISO week */
		return atol(buf);
	case 3: return (long)(tm.tm_year + 1900) * 100 + tm.tm_mon + 1;
	default: return tm.tm_year + 1900;
	}
}

/* Append a rule name to a reason ("last, daily"), bounded. */
static void why_add(char why[128], const char *rule)
{
	size_t n = strlen(why);
	snprintf(why + n, 128 - n, "%s%s", n ? ", " : "", rule);
}

static int prune_group(vmb_repo *r, vmb_snapshot **s, size_t n,
		       const vmb_prune_options *o, vmb_prune_fn fn,
		       void *payload, size_t *removed)
{
	static const char *names[] = { "hourly", "daily", "weekly", "monthly",
				       "yearly" };
	int limits[5] = { o->keep_hourly, o->keep_daily, o->keep_weekly,
			  o->keep_monthly, o->keep_yearly };
	char (*why)[128] = vmb_calloc(n ? n : 1, sizeof *why);
	int rc = 0;
	if (!why)
		return VMB_ENOMEM;
	/* s is oldest first; rules walk newest first */
	for (size_t k = 0; k < n; k++) {
		size_t i = n - 1 - k;
		if ((int)k < o->keep_last)
			why_add(why[i], "last");
	}
	for (int rule = 0; rule < 5; rule++) {
		int left = limits[rule];
		long last = -1;
		for (size_t k = 0; k < n && left > 0; k++) {
			size_t i = n - 1 - k;
			long key = period_key(s[i]->time, rule);
			if (key == last)
				continue;
			last = key;
			left--;
			why_add(why[i], names[rule]);
		}
	}
	for (size_t i = 0; i < n; i++) {
		int prot = vmb_repo_is_protected(r, s[i]->id);
		if (prot < 0) {
			rc = prot;
			break;
		}
		if (prot)
			why_add(why[i], "protected");
		int keep = why[i][0] != 0;
		if (fn)
			fn(s[i], keep, keep ? why[i] : "no rule keeps it",
			   payload);
		if (keep)
			continue;
		(*removed)++;
		if (o->dry_run)
			continue;
		char name[64];
		snprintf(name, sizeof name, "snapshots/%s", s[i]->id);
		rc = vmb_target_delete(r->t, name);
		if (rc == VMB_ENOTFOUND)
			rc = 0;
		if (rc)
			break;
	}
	free(why);
	return rc;
}

VMB_EXTERN(int) vmb_repo_prune(vmb_repo *r, const vmb_prune_options *o,
			       vmb_prune_fn fn, void *payload,
			       size_t *removed)
{
	vmb_snapshot **list;
	size_t n, start = 0;
	int rc;
	*removed = 0;
	if (o->keep_last < 0 || o->keep_hourly < 0 || o->keep_daily < 0 ||
	    o->keep_weekly < 0 || o->keep_monthly < 0 || o->keep_yearly < 0)
		return vmb_error_set(VMB_EINVAL, "keep counts must not be "
				     "negative");
	if (!o->keep_last && !o->keep_hourly && !o->keep_daily &&
	    !o->keep_weekly && !o->keep_monthly && !o->keep_yearly)
		return vmb_error_set(VMB_EINVAL, "no keep rule given: refusing "
				     "to remove every snapshot");
	if (!o->dry_run && (rc = vmb_repo_lock(r, 600)))
		return rc;
	rc = vmb_repo_snapshots(r, o->vm, &list, &n);
	if (rc)
		goto out;
	/* group by VM: stable sort by name keeps time order inside */
	for (size_t i = 1; i < n; i++) {
		vmb_snapshot *x = list[i];
		size_t j = i;
		while (j > 0 && strcmp(list[j - 1]->vm, x->vm) > 0) {
			list[j] = list[j - 1];
			j--;
		}
		list[j] = x;
	}
	for (size_t i = 1; i <= n && !rc; i++) {
		if (i == n || strcmp(list[i]->vm, list[start]->vm) != 0) {
			rc = prune_group(r, list + start, i - start, o, fn,
					 payload, removed);
			start = i;
		}
	}
	vmb_snapshot_list_free(list, n);
out:
	if (!o->dry_run) {
		int e = vmb_error_code();
		char msg[1024];
		snprintf(msg, sizeof msg, "%s", vmb_error_message());
		vmb_repo_unlock(r);
		if (rc)
			vmb_error_set(e, "%s", msg);
	}
	return rc;
}

/* ---- garbage collection ---- */

struct listed {
	char (*names)[100];
	uint64_t *sizes;
	int64_t *mtimes;
	size_t n, cap;
	int err;
};

static int collect_cb(const char *name, uint64_t size, int64_t mtime,
		      void *payload)
{
	struct listed *l = payload;
	if (strlen(name) >= 100)
		return 0;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 256;
		void *a = realloc(l->names, nc * sizeof *l->names);
		if (a)
			l->names = a;
		void *b = realloc(l->sizes, nc * sizeof *l->sizes);
		if (b)
			l->sizes = b;
		void *c = realloc(l->mtimes, nc * sizeof *l->mtimes);
		if (c)
			l->mtimes = c;
		if (!a || !b || !c) {
			l->err = vmb_error_set(VMB_ENOMEM, "out of memory");
			return 1;
		}
		l->cap = nc;
	}
	snprintf(l->names[l->n], sizeof l->names[l->n], "%s", name);
	l->sizes[l->n] = size;
	l->mtimes[l->n] = mtime;
	l->n++;
	return 0;
}

static void listed_free(struct listed *l)
{
	free(l->names);
	free(l->sizes);
	free(l->mtimes);
	memset(l, 0, sizeof *l);
}

static int list_all(vmb_repo *r, const char *prefix, struct listed *l)
{
	memset(l, 0, sizeof *l);
	int rc = vmb_target_list(r->t, prefix, collect_cb, l);
	return rc ? rc : l->err;
}

/* Keep the maintenance lease alive during long work. */
static int renew_lease(vmb_repo *r, double *last)
{
	if (!r->lock_token[0] || vmb_now() - *last < 60)
		return 0;
	*last = vmb_now();
	return vmb_lease_take(r, "locks/maintenance", 600,
			      "the repository (maintenance)", r->lock_token);
}

/* Sweep the chunks whose first id byte is in [lo, hi). */
struct chunk_sweep {
	vmb_repo *r;
	const vmb_idset *marked;
	int64_t cutoff;
	int dry_run;
	vmb_gc_result *res;
	int err;
	double *renewed;
};

static int sweep_cb(const char *name, uint64_t size, int64_t mtime,
		    void *payload)
{
	struct chunk_sweep *c = payload;
	const char *slash = strrchr(name, '/');
	uint8_t id[32];
	if (!slash || vmb_unhex(slash + 1, id, 32) != 0)
		return 0;
	c->res->chunks_total++;
	if (vmb_idset_has(c->marked, id)) {
		c->res->chunks_referenced++;
		return 0;
	}
	if (mtime >= c->cutoff) {
		c->res->chunks_young++;
		return 0;
	}
	if ((c->err = renew_lease(c->r, c->renewed)))
		return 1;
	if (!c->dry_run) {
		int rc = vmb_target_delete(c->r->t, name);
		if (rc && rc != VMB_ENOTFOUND) {
			c->err = rc;
			return 1;
		}
	}
	c->res->chunks_deleted++;
	c->res->bytes_freed += size;
	return 0;
}

/* A new random GC epoch: invalidates chunk caches, alerts backups. */
static int new_epoch(vmb_repo *r)
{
	uint8_t rnd[16];
	char epoch[40];
	int rc;
	vmb_crypto_random(rnd, sizeof rnd);
	vmb_hex(rnd, sizeof rnd, epoch);
	rc = vmb_target_put(r->t, "state/gc-epoch", epoch, strlen(epoch));
	if (!rc)
		memcpy(r->gc_epoch, epoch, 33);
	return rc;
}

/*
 * A session marker of a backup on this host whose process no longer
 * exists (killed, or the machine rebooted) is dead at once, like a lease
 * (lease.c): waiting 15 minutes would keep everything written since it
 * started, and a killed nightly job's chunks would outlive the next GC.
 */
static int ignore_cb(const char *name, uint64_t size, int64_t mtime,
		     void *payload)
{
	(void)name, (void)size, (void)mtime, (void)payload;
	return 0;
}

static int session_dead(vmb_json *j)
{
	int64_t pid = 0;
	vmb_json_i64(j, "pid", &pid);
	return vmb_lease_dead(vmb_json_str(j, "host"), pid);
}

VMB_EXTERN(int) vmb_repo_gc(vmb_repo *r, const vmb_gc_options *o,
			    vmb_gc_result *res)
{
	vmb_gc_options def = VMB_GC_OPTIONS_INIT;
	struct listed sessions, snaps, idxs;
	vmb_snapshot **sv = NULL;
	size_t ns = 0;
	vmb_idset used_ix;
	int64_t t0 = (int64_t)time(NULL), cutoff;
	uint64_t refs = 0, mem;
	double start = vmb_now();
	int rc;

	if (!o)
		o = &def;
	memset(res, 0, sizeof *res);
	memset(&sessions, 0, sizeof sessions);
	memset(&snaps, 0, sizeof snaps);
	memset(&idxs, 0, sizeof idxs);
	memset(&used_ix, 0, sizeof used_ix);
	double renewed = vmb_now();
	if (!o->dry_run && (rc = vmb_repo_lock(r, 600)))
		return rc;
	/* 1. a new epoch: every cached "this chunk exists" becomes stale,
	 *    and backups that overlap us re-check what they reused */
	if (!o->dry_run && (rc = new_epoch(r)))
		goto out;
	/* 2. running backups; markers not refreshed for 15 min are dead.
	 *    With none running, everything unreferenced written up to the
	 *    second GC started goes. */
	cutoff = t0 + 1;
	rc = list_all(r, "sessions/", &sessions);
	if (rc)
		goto out;
	for (size_t i = 0; i < sessions.n; i++) {
		void *data = NULL;
		size_t len;
		int64_t started = sessions.mtimes[i];
		if (sessions.mtimes[i] < t0 - 900) {
			res->sessions_stale++;
			if (!o->dry_run)
				vmb_target_delete(r->t, sessions.names[i]);
			continue;
		}
		int dead = 0;
		if (vmb_target_get(r->t, sessions.names[i], &data, &len) == 0) {
			vmb_json *j;
			if (len < 4096 &&
			    vmb_json_parse(data, len, "session", &j) == 0) {
				vmb_json_i64(j, "started", &started);
				dead = session_dead(j);
				vmb_json_free(j);
			}
			free(data);
		}
		if (dead) {
			/* its process is gone (killed): nothing of it runs */
			res->sessions_stale++;
			if (!o->dry_run)
				vmb_target_delete(r->t, sessions.names[i]);
			continue;
		}
		res->sessions_running++;
		if (started - 60 < cutoff)
			cutoff = started - 60; /* clock skew margin */
	}
	if (o->grace > 0 && t0 - o->grace < cutoff)
		cutoff = t0 - o->grace;
	/* 3. mark: every manifest must load, or nothing is deleted */
	rc = vmb_repo__snapshots(r, NULL, 1, &sv, &ns);
	if (rc) {
		vmb_error_prefix("not collecting garbage: ");
		goto out;
	}
	for (size_t i = 0; i < ns; i++)
		for (size_t d = 0; d < sv[i]->ndisks; d++) {
			uint8_t hid[32];
			if (vmb_unhex(sv[i]->disks[d].index, hid, 32) == 0 &&
			    vmb_idset_add(&used_ix, hid) == 1)
				refs += sv[i]->disks[d].chunks;
		}
	mem = o->memory_limit ? o->memory_limit : (256ULL << 20);
	/* an id costs 33 bytes at <= 3/4 load, plus doubling slack */
	uint64_t per_pass = mem / 96 ? mem / 96 : 1;
	unsigned passes = (unsigned)((refs + per_pass - 1) / per_pass);
	if (passes < 1)
		passes = 1;
	if (passes > 256)
		passes = 256;
	res->passes = passes;
	for (unsigned p = 0; p < passes && !rc; p++) {
		unsigned lo = 256 * p / passes, hi = 256 * (p + 1) / passes;
		vmb_idset marked;
		memset(&marked, 0, sizeof marked);
		for (size_t i = 0; i < used_ix.cap && !rc; i++) {
			vmb_index ix;
			char hex[65];
			if (!used_ix.used[i])
				continue;
			vmb_hex(used_ix.slots[i], 32, hex);
			rc = vmb_repo__load_index(r, hex, &ix);
			if (rc) {
				vmb_error_prefix("not collecting garbage: ");
				break;
			}
			if ((rc = renew_lease(r, &renewed))) {
				vmb_index_free(&ix);
				break;
			}
			for (uint64_t k = 0; k < ix.count && !rc; k++) {
				const uint8_t *ids[2];
				int nid = vmb_index_ids(&ix, k, ids);
				for (int q = 0; q < nid; q++)
					if (ids[q][0] >= lo && ids[q][0] < hi &&
					    vmb_idset_add(&marked, ids[q]) < 0) {
						rc = VMB_ENOMEM;
						break;
					}
			}
			vmb_index_free(&ix);
		}
		/* 4. sweep this id range */
		for (unsigned b = lo; b < hi && !rc; b++) {
			char prefix[24];
			struct chunk_sweep c = { r, &marked, cutoff, o->dry_run,
						 res, 0, &renewed };
			snprintf(prefix, sizeof prefix, "chunks/%02x/", b);
			rc = vmb_target_list(r->t, prefix, sweep_cb, &c);
			if (!rc)
				rc = c.err;
		}
		vmb_idset_free(&marked);
	}
	if (rc)
		goto out;
	/* 5. indexes no snapshot uses */
	rc = list_all(r, "indexes/", &idxs);
	if (rc)
		goto out;
	for (size_t i = 0; i < idxs.n; i++) {
		uint8_t hid[32];
		const char *h = idxs.names[i] + strlen("indexes/");
		if (vmb_unhex(h, hid, 32) != 0 || vmb_idset_has(&used_ix, hid) ||
		    idxs.mtimes[i] >= cutoff)
			continue;
		if (!o->dry_run) {
			rc = vmb_target_delete(r->t, idxs.names[i]);
			if (rc && rc != VMB_ENOTFOUND)
				goto out;
			rc = 0;
		}
		res->indexes_deleted++;
	}
	/* protection markers of snapshots that are gone */
	if (!o->dry_run && list_all(r, "protect/", &snaps) == 0) {
		for (size_t i = 0; i < snaps.n; i++) {
			const char *id = snaps.names[i] + strlen("protect/");
			int found = 0;
			for (size_t k = 0; k < ns && !found; k++)
				found = strcmp(sv[k]->id, id) == 0;
			if (!found && snaps.mtimes[i] < cutoff)
				vmb_target_delete(r->t, snaps.names[i]);
		}
	}
	/* the small folders no other step lists: listing them lets the
	 * target drop temporary files of puts killed before their rename
	 * (lib/target/local.c) */
	if (!o->dry_run && !rc) {
		static const char *const small[] = { "locks/", "keys/",
						     "state/", "protect/",
						     "damaged/" };
		for (size_t i = 0; i < sizeof small / sizeof *small; i++)
			vmb_target_list(r->t, small[i], ignore_cb, NULL);
		vmb_error_clear();
	}
	/* 6. a second epoch: a backup that overlapped any part of this GC
	 *    sees a change and re-checks what it reused (docs/gc.md) */
	if (!o->dry_run && (rc = new_epoch(r)))
		goto out;
	res->seconds = vmb_now() - start;
out:
	listed_free(&sessions);
	listed_free(&snaps);
	listed_free(&idxs);
	vmb_idset_free(&used_ix);
	vmb_snapshot_list_free(sv, ns);
	if (!o->dry_run) {
		int e = vmb_error_code();
		char msg[1024];
		snprintf(msg, sizeof msg, "%s", vmb_error_message());
		vmb_repo_unlock(r);
		if (rc)
			vmb_error_set(e, "%s", msg);
	}
	return rc;
}
