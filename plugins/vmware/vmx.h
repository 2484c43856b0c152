/*
 * The VMware plugin (docs/vmware.md): .vmx / .vmsd files (key = "value"
 * lines) and VMDK descriptors, read as hostile input: size, line and
 * entry limits, |XX escapes decoded, nothing trusted before it is checked.
 */
#ifndef VMB_PLUGIN_VMX_H
#define VMB_PLUGIN_VMX_H

#include <stddef.h>
#include <stdint.h>

#define VMX_MAX_FILE   (4u << 20)  /* bytes of a .vmx / .vmsd */
#define VMX_MAX_LINE   65536u      /* bytes of one line */
#define VMX_MAX_LINES  200000u
#define VMDK_MAX_DESC  (1u << 20)  /* bytes of a descriptor */
#define VMDK_MAX_EXTENTS 4096u
#define VMDK_MAX_CHAIN 64

/** One line of a .vmx: an entry (key set) or anything else kept verbatim. */
struct vmx_line {
	char *key;   /* as written; NULL for a comment, blank or odd line */
	char *value; /* decoded (|XX escapes) */
	char *raw;   /* the line itself when key is NULL */
};

struct vmx {
	struct vmx_line *l;
	size_t n;
};

/** Parse @p len bytes.  @return 0, or a vmb error naming @p what and the
 *  line. */
int vmx_parse(const char *text, size_t len, const char *what, struct vmx *out);
void vmx_free(struct vmx *x);
/** The value of @p key (case-insensitive), or NULL. */
const char *vmx_get(const struct vmx *x, const char *key);
/** Set (replace, or append) @p key; value NULL removes it. */
int vmx_set(struct vmx *x, const char *key, const char *value);
/** Serialise (escaping what needs it).  @return malloc'd, length in
 *  @p len. */
char *vmx_write(const struct vmx *x, size_t *len);
/** Read a file of at most VMX_MAX_FILE bytes and parse it. */
int vmx_load(const char *path, struct vmx *out);
/** 1 if @p v means true ("TRUE", "yes", "1"), case-insensitive. */
int vmx_true(const char *v);

/** One extent line of a VMDK descriptor. */
struct vmdk_extent {
	char *file;       /* as written; NULL for ZERO extents */
	char type[16];    /* SPARSE, FLAT, ZERO, VMFS, ... */
	uint64_t sectors;
};

/** A VMDK descriptor (a text file, or embedded in a sparse extent). */
struct vmdk_desc {
	char *text;        /* the descriptor text */
	uint64_t text_off; /* where it is in the file (0 for a text file) */
	uint64_t text_max; /* room there (embedded: descriptorSize sectors) */
	int embedded;
	uint32_t cid, parent_cid;
	int has_cid, has_parent_cid;
	char create_type[48];
	char *parent_hint; /* parentFileNameHint, or NULL */
	struct vmdk_extent *ext;
	size_t next;
};

/** Parse descriptor text (@p len bytes). */
int vmdk_desc_parse(const char *text, size_t len, const char *what,
		    struct vmdk_desc *out);
/** Read @p path: a text descriptor or a sparse extent ("KDMV") with an
 *  embedded one.  VMB_EFORMAT for anything else. */
int vmdk_desc_load(const char *path, struct vmdk_desc *out);
void vmdk_desc_free(struct vmdk_desc *d);
/** Rewrite the descriptor of @p path in place: CID, parentCID (when
 *  @p set_cid), parentFileNameHint (when @p hint is not NULL) and extent
 *  file names through @p map_ext (NULL: kept). */
int vmdk_desc_rewrite(const char *path, int set_cid, uint32_t cid,
		      uint32_t parent_cid, const char *hint,
		      const char *(*map_ext)(const char *file, void *payload),
		      void *payload);

#endif
