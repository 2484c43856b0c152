/*
 * The libvirt plugin's internals: domain XML (xml.c), a vmb_disk over an
 * NBD export of a pull-mode backup (nbd_disk.c), and the plugin itself
 * (libvirt.c).  docs/libvirt.md describes what it does and why.
 */
#ifndef VMB_PLUGIN_LIBVIRT_LV_H
#define VMB_PLUGIN_LIBVIRT_LV_H

#include <stddef.h>
#include <stdint.h>
#include "vmbackup.h"
#include "vmbackup/sys/hv.h"

/* Largest domain XML we parse (libvirt's own limit is 10 MB). */
#define LV_XML_MAX (10u << 20)
/* Disks per domain. */
#define LV_MAX_DISKS 64

/* One <disk device='disk'> of a domain. */
typedef struct lv_disk {
	char *target; /* <target dev='vda'>: the disk's name */
	char *type;   /* file, block, network, volume */
	char *path;   /* <source file=/dev=>, or NULL */
	char *format; /* <driver type=>: qcow2, raw, ... or NULL */
} lv_disk;

typedef struct lv_domain_xml {
	char *name;
	char *uuid;
	int id;       /* <domain id=> of a running domain, else -1 */
	lv_disk disks[LV_MAX_DISKS];
	size_t ndisks;
	long dac_uid, dac_gid; /* <seclabel model='dac'> label, or -1 */
} lv_domain_xml;

/* Parse a domain's XML (no network, no entities, size-limited). */
int lv_xml_parse(const char *xml, lv_domain_xml *out);
void lv_xml_free(lv_domain_xml *d);

/* The rewrite that define() does, see vmb_hv_define_request. */
int lv_xml_rewrite(const vmb_hv_define_request *req, char **out);

/* Small JSON-ish state of one disk, recorded for the next backup:
 * {"checkpoint":"...","domain":"uuid","run":"id"}.  Fields are
 * [A-Za-z0-9._:-] only. */
int lv_state_get(const char *state, const char *key, char *out, size_t n);

/* A vmb_disk reading export @p export of the NBD server on unix socket
 * @p sock, with @p nconn connections.  @p bitmap is the dirty-bitmap
 * context ("qemu:dirty-bitmap:backup-vda") of an incremental, or NULL.
 * @p base is the checkpoint the incremental starts from and
 * @p new_state what to record for the next backup (both copied).  */
int lv_nbd_disk_open(const char *sock, const char *export, int nconn,
		     const char *bitmap, const char *base,
		     const char *new_state, vmb_disk **out);

#endif
