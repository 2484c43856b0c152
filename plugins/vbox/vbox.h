/*
 * The VirtualBox plugin (docs/vbox.md): what a .vbox settings file says,
 * read with libxml2 through lib/archive/xml_dl.c (no network, no DTD, a
 * size and node budget), checked before anything is trusted.
 */
#ifndef VMB_PLUGIN_VBOX_H
#define VMB_PLUGIN_VBOX_H

#include <stddef.h>
#include <stdint.h>

#define VBOX_MAX_SETTINGS (8u << 20)  /* bytes of a .vbox file */
#define VBOX_MAX_NODES 400000u        /* XML nodes in it */
#define VBOX_MAX_MEDIA 4096u          /* registry entries */
#define VBOX_MAX_SNAPSHOTS 1024u
#define VBOX_MAX_ATTACH 256u          /* attached devices per state */
#define VBOX_MAX_CHAIN 64             /* differencing levels */
#define VBOX_MAX_NICS 36

enum { VBOX_HDD = 0, VBOX_DVD = 1, VBOX_FLOPPY = 2 };

/** One medium of the registry (HardDisk, DVDImages/Image, ...). */
struct vbox_medium {
	char uuid[37];   /* lower case, no braces */
	char *location;  /* as written in the file */
	char *path;      /* resolved: absolute */
	char *format;    /* "VDI", "VMDK", ... */
	int kind;        /* VBOX_HDD ... */
	int parent;      /* index of its parent, -1 for a base */
	int depth;       /* 0 for a base */
};

/** One device on a controller port. */
struct vbox_attach {
	char *controller; /* StorageController@name */
	char *ctl_type;   /* its @type: "AHCI", "PIIX4", "NVMe", ... */
	int port, device;
	int kind;         /* VBOX_HDD ... */
	int medium;       /* index, -1: an empty drive or a host drive */
};

/** The current state or one snapshot. */
struct vbox_state {
	char uuid[37];     /* a snapshot's; "" for the current state */
	char *name;        /* a snapshot's name */
	char *state_file;  /* saved state as written, or NULL */
	char *state_path;  /* resolved */
	int parent;        /* parent snapshot, -1 */
	struct vbox_attach *att;
	size_t natt;
};

struct vbox_machine {
	char uuid[37];
	char *name;
	char *settings;        /* the .vbox file, absolute */
	char *dir;             /* its folder */
	char *snapshot_folder; /* as written, or NULL */
	char current_snapshot[37]; /* "" without snapshots */
	int efi;               /* Firmware type EFI* */
	char *nvram;           /* NVRAM path as written, or NULL */
	char *nvram_path;      /* resolved */
	unsigned cpus;         /* 0: not said */
	uint64_t memory_mb;    /* 0: not said */
	char *macs[VBOX_MAX_NICS]; /* enabled adapters' MACs, 12 hex digits */
	size_t nmacs;
	struct vbox_medium *media;
	size_t nmedia;
	struct vbox_state current;
	struct vbox_state *snaps;
	size_t nsnaps;
};

/*
 * Parse a .vbox document.  @p settings is where it lives (relative
 * locations resolve against its folder).  Refused with one line: not
 * VirtualBox settings, a DTD, more than the budgets, a medium listed
 * twice (uuid or file), a location with a ".." component, an attachment
 * of a medium the registry does not have, a disk attached twice in one
 * state, a currentSnapshot that is not in the tree.
 */
int vbox_settings_parse(const char *text, size_t len, const char *settings,
			struct vbox_machine *m);
void vbox_machine_free(struct vbox_machine *m);

/* The chain of medium @i, top first: fills @out (at most VBOX_MAX_CHAIN)
 * with indexes; @return the count. */
size_t vbox_chain(const struct vbox_machine *m, int i, int *out);

/* "sata", "ide", "scsi", "nvme", "floppy", "virtio", "usb" for a
 * StorageController type. */
const char *vbox_bus(const char *ctl_type);

/* The folder through the VM-folder layer (folder.c): the job of a backup
 * of state @p st (@p config_copy: the settings file to store instead of
 * the machine's own, or NULL), and the restore's rewrite. */
struct vmb_hv_backup_job;
struct vmb_vmfolder_view;
int vbox_folder_job(const struct vbox_machine *m, const char *config_copy,
		    const struct vbox_state *st, const char *consistency,
		    const char *note, struct vmb_hv_backup_job **out);
int vbox_folder_fixup(void *handle, struct vmb_vmfolder_view *v);

#endif
