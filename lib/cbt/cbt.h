/*
 * Internal: changed-block tracking.  Given a disk and what its parent
 * snapshot recorded, decide which chunks may have changed, so a backup
 * reads only those.  Sources, fastest first: qcow2 persistent bitmaps,
 * overlays (the top layers of a chain over layers the parent read
 * unchanged), then fingerprints (every allocated chunk is read and its
 * keyed xxh3 compared; done by the backup pipeline itself).
 */
#ifndef VMB_LIB_CBT_CBT_H
#define VMB_LIB_CBT_CBT_H

#include <stddef.h>
#include <stdint.h>
#include "vmbackup/disk.h"

/* A changed range of guest bytes. */
typedef struct vmb_cbt_range {
	uint64_t off, len;
} vmb_cbt_range;

/* More changed ranges than this: only the per-chunk map is kept. */
#define VMB_CBT_MAX_RANGES (1u << 20)

typedef struct vmb_cbt_plan {
	const char *source; /* "qcow2-bitmap", "overlay", or NULL */
	uint8_t *changed;   /* per chunk, 1 = may have changed; NULL = all */
	uint64_t count;
	/* the changed ranges inside those chunks (increasing, apart), at the
	 * source's granularity (bitmap bit, cluster), or NULL when unknown
	 * (too many): then a changed chunk is read whole */
	vmb_cbt_range *ranges;
	size_t nranges;
	char *new_state;    /* malloc'd JSON to record for the next backup
			       (the manifest's cbt_state), or NULL */
	int locked;         /* lock_fd holds the image's lock until free */
	int lock_fd;
} vmb_cbt_plan;

/* What the parent snapshot recorded about this disk. */
typedef struct vmb_cbt_parent {
	char **layers;     /* layer identities, top first */
	size_t nlayers;
	const char *state; /* source-specific state (JSON text) or NULL */
	uint64_t size;     /* virtual size */
	const char *top_stamp; /* see vmb_cbt_top_stamp(), or NULL */
} vmb_cbt_parent;

/*
 * The top layer's ctime as a string, to record in the manifest, or NULL
 * when it cannot be trusted: not a regular file, or modified less than
 * two seconds before @now_ns (timestamps have coarse granularity, so a
 * write right after the backup read it could keep the same time; as git's
 * "racily clean" files).  Two equal stamps, with equal layer identities,
 * mean the file was not written or touched in between: nothing changed.
 */
char *vmb_cbt_top_stamp(vmb_disk *d, int64_t now_ns);

/*
 * Build a plan; with no usable source the plan has changed == NULL.
 * @p parent may be NULL (first backup, or the parent cannot be compared):
 * the plan then only sets up tracking for the next backup (new_state).
 * Sources, in order: qcow2 persistent bitmaps (docs/cbt.md), overlays.
 * A bitmap source keeps the image locked until vmb_cbt_plan_free().
 */
int vmb_cbt_plan_make(vmb_disk *d, uint32_t chunk_size,
		      const vmb_cbt_parent *parent, vmb_cbt_plan *plan);
void vmb_cbt_plan_free(vmb_cbt_plan *plan);

/* The disk's layer identities (malloc'd array of malloc'd strings). */
int vmb_cbt_layers(vmb_disk *d, char ***out, size_t *n);
void vmb_cbt_layers_free(char **l, size_t n);

#endif
