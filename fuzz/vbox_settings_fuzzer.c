/*
 * Fuzz target: the VirtualBox plugin's .vbox settings reader
 * (plugins/vbox/settings.c).  Whatever the input, parsing ends with 0 or
 * an error message; on success every medium has a path with no ".."
 * component, every parent index points at an earlier medium, every
 * attachment at a medium of its kind, and every chain ends at a base.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "vmbackup/common.h"
#include "../plugins/vbox/vbox.h"

static void check_state(const struct vbox_machine *m,
			const struct vbox_state *st)
{
	for (size_t i = 0; i < st->natt; i++) {
		int chain[VBOX_MAX_CHAIN];
		const struct vbox_attach *a = &st->att[i];
		if (a->medium < 0)
			continue;
		if ((size_t)a->medium >= m->nmedia ||
		    m->media[a->medium].kind != a->kind)
			abort();
		size_t n = vbox_chain(m, a->medium, chain);
		if (!n || m->media[chain[n - 1]].parent != -1)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vbox_machine m;
	int rc = vbox_settings_parse((const char *)data, size,
				     "/vm/fuzz/fuzz.vbox", &m);
	if (rc) {
		if (!vmb_error_message()[0])
			abort();
		return 0;
	}
	for (size_t i = 0; i < m.nmedia; i++) {
		const struct vbox_medium *md = &m.media[i];
		if (!md->path || strstr(md->path, "/../") ||
		    md->parent >= (int)i || strlen(md->uuid) != 36)
			abort();
	}
	check_state(&m, &m.current);
	for (size_t i = 0; i < m.nsnaps; i++) {
		if (m.snaps[i].parent >= (int)i)
			abort();
		check_state(&m, &m.snaps[i]);
	}
	vbox_machine_free(&m);
	return 0;
}
