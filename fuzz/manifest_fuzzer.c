/*
 * Fuzz target: the snapshot manifest parser (lib/repo/snapshot.c), on
 * the plaintext of a manifest (hostile: it comes from the repository).
 * An accepted manifest must satisfy every rule the rest of the library
 * relies on (disk names, chunk sizes, index names, counts), and writing
 * it out again and parsing that must give the same snapshot.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "repo/repo_internal.h"

static const char ID[] = "0123456789abcdef0123456789abcdef";

static void check(const vmb_snapshot *s)
{
	if (strcmp(s->id, ID) != 0 || !s->vm || !s->host || !s->cbt ||
	    !s->json || s->ndisks > 256 || s->ntags > 1000)
		abort();
	if (s->time_us / 1000000 != s->time)
		abort();
	for (size_t i = 0; i < s->ntags; i++)
		if (!s->tags[i])
			abort();
	for (size_t i = 0; i < s->ndisks; i++) {
		const vmb_mdisk *m = &s->disks[i];
		uint64_t n;
		if (!m->name || !*m->name || m->name[0] == '.' ||
		    strlen(m->name) > 200 || !m->format || !m->source ||
		    !m->cbt || m->chunk_size < 4096 ||
		    m->chunk_size > (64u << 20) ||
		    (m->chunk_size & (m->chunk_size - 1)) ||
		    strlen(m->index) != 64 || m->nlayers > 64 ||
		    vmb_index_count(m->size, m->chunk_size, &n) != 0)
			abort();
		for (const char *p = m->name; *p; p++)
			if (*p == '/' || *p == '\\')
				abort(); /* names become file names */
		for (size_t k = 0; k < m->nlayers; k++)
			if (!m->layers[k])
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vmb_snapshot *s = (vmb_snapshot *)1, *again = NULL;
	char *json;

	if (vmb_repo__parse_manifest(ID, (const char *)data, size, "fuzz",
				     &s) != 0) {
		if (s)
			abort(); /* a refused manifest gives nothing */
		return 0;
	}
	check(s);
	json = vmb_repo__manifest_json(s, NULL);
	if (json) {
		if (vmb_repo__parse_manifest(ID, json, strlen(json), "again",
					     &again) != 0)
			abort();
		check(again);
		if (again->time != s->time || again->time_us != s->time_us ||
		    again->ndisks != s->ndisks || again->ntags != s->ntags ||
		    again->protected_ != s->protected_ ||
		    !!again->parent != !!s->parent)
			abort();
		for (size_t i = 0; i < s->ndisks; i++)
			if (strcmp(again->disks[i].name, s->disks[i].name) ||
			    again->disks[i].size != s->disks[i].size ||
			    again->disks[i].chunk_size != s->disks[i].chunk_size ||
			    strcmp(again->disks[i].index, s->disks[i].index))
				abort();
		vmb_snapshot_free(again);
		free(json);
	}
	vmb_snapshot_free(s);
	return 0;
}
