/* `vmb check`: every manifest and index decodes, every chunk exists. */
#include <stdlib.h>
#include <string.h>
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
	struct present pr;
	struct snap_ids sl;
	vmb_idset seen_ix, counted;
	int rc;

	memset(res, 0, sizeof *res);
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
			vmb_log(VMB_LOG_ERROR, "snapshot %s: %s", sl.ids[i],
				vmb_error_message());
			res->errors++;
			continue;
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
				vmb_log(VMB_LOG_ERROR, "snapshot %s disk %s: %s",
					s->id, s->disks[d].name,
					vmb_error_message());
				res->errors++;
				rc = 0;
				continue;
			}
			if (ix.disk_size != s->disks[d].size) {
				vmb_log(VMB_LOG_ERROR, "snapshot %s disk %s: "
					"index size differs from manifest",
					s->id, s->disks[d].name);
				res->errors++;
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
				vmb_log(VMB_LOG_ERROR, "snapshot %s disk %s: "
					"%s %s at offset %llu is missing",
					s->id, s->disks[d].name,
					ix.e[k].kind == VMB_CHUNK_DATA ? "chunk" :
					q ? "patch base chunk" : "patch chunk",
					name + 10,
					(unsigned long long)k * ix.chunk_size);
				res->chunks_missing++;
				res->errors++;
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
	if (res->errors)
		rc = vmb_error_set(VMB_EVERIFY, "check found %llu problem%s",
				   (unsigned long long)res->errors,
				   res->errors == 1 ? "" : "s");
out:
	vmb_idset_free(&pr.ids);
	vmb_idset_free(&seen_ix);
	vmb_idset_free(&counted);
	free(sl.ids);
	return rc;
}
