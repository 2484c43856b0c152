/* Changed-block tracking: plan which chunks to read. */
#include <stdlib.h>
#include <string.h>
#include "common/util.h"
#include "cbt.h"

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

void vmb_cbt_plan_free(vmb_cbt_plan *p)
{
	free(p->changed);
	memset(p, 0, sizeof *p);
}

struct mark {
	uint8_t *changed;
	uint64_t count;
	uint32_t cs;
	int below; /* layers [0, below) are new since the parent */
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
	return 0;
}

/*
 * Overlays: if the chain's layers k.. are exactly the layers the parent
 * read (same device, inode, size and mtime: nothing wrote to them since),
 * only layers 0..k-1 can hold changes.
 */
static int plan_overlay(vmb_disk *d, uint32_t cs, const vmb_cbt_parent *p,
			vmb_cbt_plan *plan)
{
	char **cur;
	size_t n;
	int rc, k = -1;
	if (!p->layers || !p->nlayers)
		return 0;
	rc = vmb_cbt_layers(d, &cur, &n);
	if (rc || !cur)
		return rc;
	for (size_t s = 1; s < n && k < 0; s++) {
		if (n - s != p->nlayers)
			continue;
		int same = 1;
		for (size_t j = 0; j < p->nlayers && same; j++)
			same = strcmp(cur[s + j], p->layers[j]) == 0;
		if (same)
			k = (int)s;
	}
	vmb_cbt_layers_free(cur, n);
	if (k < 0)
		return 0;
	struct mark m;
	m.count = plan->count;
	m.cs = cs;
	m.below = k;
	m.changed = vmb_calloc(plan->count ? plan->count : 1, 1);
	if (!m.changed)
		return VMB_ENOMEM;
	rc = vmb_disk_map(d, 0, vmb_disk_size(d), mark_cb, &m);
	if (rc) {
		free(m.changed);
		return rc;
	}
	plan->changed = m.changed;
	plan->source = "overlay";
	return 0;
}

int vmb_cbt_plan_make(vmb_disk *d, uint32_t chunk_size,
		      const vmb_cbt_parent *parent, vmb_cbt_plan *plan)
{
	uint64_t size = vmb_disk_size(d);
	memset(plan, 0, sizeof *plan);
	plan->count = size / chunk_size + (size % chunk_size ? 1 : 0);
	if (!parent || parent->size != size)
		return 0; /* resized: nothing to compare against */
	return plan_overlay(d, chunk_size, parent, plan);
}
