/*
 * The VirtualBox folder through the shared VM-folder layer (vmfolder.h,
 * docs/vm-folders.md): what a backup stores, and how a restore's
 * settings are rewritten (docs/vbox.md).
 *
 * Backup: the .vbox, every image of the media registry (every layer of
 * every chain: the snapshot tree needs them all), each snapshot's saved
 * state (role "snapshot"), the current saved state and the NVRAM file
 * (role "file"); not Logs/, not DVD or floppy images (install media,
 * usually shared and outside the folder).  One drive per hard disk of the
 * state being backed up, its chain's files top first.
 *
 * Restore (folder_fixup): the restored .vbox is parsed again and
 *  - every location (HardDisk, Image), stateFile and NVRAM path becomes
 *    the file's place in the new folder, relative to it; an absolute
 *    snapshotFolder becomes "Snapshots";
 *  - --flatten: each drive's base HardDisk keeps its uuid and points at
 *    the drive's one image (its VDI header given that uuid and no
 *    parent), its differencing children, every Snapshot and
 *    currentSnapshot go, and the current attachments name the base;
 *  - --new-uuid: a new machine uuid, a new uuid for every hard disk,
 *    changed in the registry, the attachments of every state and in every
 *    VDI header (uuidCreate, and uuidLinkage for differencing images, so
 *    parent links stay whole), and new MAC addresses (VirtualBox's
 *    080027 prefix).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include "vmbackup.h"
#include "vmbackup/sys/hv.h"
#include "vmbackup/vmfolder.h"
#include "archive/xml_dl.h"
#include "vbox.h"

/* ---- backup ---- */

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* The neutral hardware description (docs/vm-folders.md) another
 * hypervisor is defined from. */
static int hardware_meta(vmb_vmfolder *f, const struct vbox_machine *m,
			 const struct vbox_state *st)
{
	char t[VBOX_MAX_NICS * 13 + 1], un[400];
	size_t o = 0;
	int rc;
	snprintf(t, sizeof t, "%u", m->cpus ? m->cpus : 1);
	if ((rc = vmb_vmfolder_set(f, "hw.cpus", t)))
		return rc;
	if (m->memory_mb) {
		snprintf(t, sizeof t, "%llu", (unsigned long long)m->memory_mb);
		if ((rc = vmb_vmfolder_set(f, "hw.memory_mb", t)))
			return rc;
	}
	if ((rc = vmb_vmfolder_set(f, "hw.firmware", m->efi ? "efi" : "bios")))
		return rc;
	t[0] = 0;
	for (size_t i = 0; i < m->nmacs && o + 14 < sizeof t; i++)
		o += (size_t)snprintf(t + o, sizeof t - o, "%s%s", i ? "," : "",
				      m->macs[i]);
	if (o && (rc = vmb_vmfolder_set(f, "hw.nics", t)))
		return rc;
	for (size_t i = 0; i < st->natt; i++) {
		const struct vbox_attach *a = &st->att[i];
		char key[200];
		if (a->kind != VBOX_HDD || a->medium < 0)
			continue;
		snprintf(key, sizeof key, "hw.bus.%s-%d-%d", a->controller,
			 a->port, a->device);
		if ((rc = vmb_vmfolder_set(f, key, vbox_bus(a->ctl_type))))
			return rc;
	}
	un[0] = 0;
	if (m->current.state_file)
		snprintf(un, sizeof un, "the saved state (VirtualBox only)");
	if (m->nvram)
		snprintf(un + strlen(un), sizeof un - strlen(un), "%sthe EFI "
			 "variables in %s (VirtualBox's NVRAM format)",
			 un[0] ? "; " : "", m->nvram);
	return un[0] ? vmb_vmfolder_set(f, "hw.unsupported", un) : 0;
}

int vbox_folder_job(const struct vbox_machine *m, const char *config_copy,
		    const struct vbox_state *st, const char *consistency,
		    const char *note, vmb_hv_backup_job **out)
{
	vmb_vmfolder *f;
	const char *cfg = config_copy ? config_copy : base_name(m->settings);
	int rc = vmb_vmfolder_new("vbox", m->dir, &f);
	if (rc)
		return rc;
	rc = vmb_vmfolder_add_file(f, cfg, VMB_VMFOLDER_ROLE_CONFIG, NULL);
	for (size_t i = 0; !rc && i < m->nmedia; i++)
		if (m->media[i].kind == VBOX_HDD)
			rc = vmb_vmfolder_add_file(f, m->media[i].location,
						   VMB_VMFOLDER_ROLE_DISK,
						   NULL);
	for (size_t i = 0; !rc && i < m->nsnaps; i++)
		if (m->snaps[i].state_file)
			rc = vmb_vmfolder_add_file(f, m->snaps[i].state_file,
						   VMB_VMFOLDER_ROLE_SNAPSHOT,
						   NULL);
	if (!rc && m->current.state_file)
		rc = vmb_vmfolder_add_file(f, m->current.state_file,
					   VMB_VMFOLDER_ROLE_FILE, NULL);
	if (!rc && m->nvram)
		rc = vmb_vmfolder_add_file(f, m->nvram, VMB_VMFOLDER_ROLE_FILE,
					   NULL);
	for (size_t i = 0; !rc && i < st->natt; i++) {
		const struct vbox_attach *a = &st->att[i];
		int chain[VBOX_MAX_CHAIN];
		const char *layers[VBOX_MAX_CHAIN];
		char name[160];
		size_t n;
		if (a->kind != VBOX_HDD || a->medium < 0)
			continue;
		n = vbox_chain(m, a->medium, chain);
		for (size_t k = 0; k < n; k++)
			layers[k] = m->media[chain[k]].location;
		snprintf(name, sizeof name, "%s-%d-%d", a->controller, a->port,
			 a->device);
		rc = vmb_vmfolder_add_drive(f, name,
			m->media[a->medium].format &&
			!strcasecmp(m->media[a->medium].format, "VMDK") ?
			"vmdk" : "vdi", layers, n);
	}
	if (!rc)
		rc = vmb_vmfolder_set(f, "name", m->name);
	if (!rc)
		rc = vmb_vmfolder_set(f, "config", cfg);
	if (!rc)
		rc = vmb_vmfolder_set(f, "consistency", consistency);
	if (!rc)
		rc = vmb_vmfolder_set(f, "consistency_note", note);
	if (!rc)
		rc = vmb_vmfolder_set(f, "machine_uuid", m->uuid);
	if (!rc)
		rc = hardware_meta(f, m, st);
	if (rc) {
		vmb_vmfolder_free(f);
		return rc;
	}
	return vmb_vmfolder_job(f, out);
}

/* ---- restore ---- */

struct uuid_map {
	char from[37], to[37];
};

struct fix {
	vmb_vmfolder_view *v;
	unsigned flags;
	struct uuid_map *map;
	size_t nmap;
	struct uuid_map macs[VBOX_MAX_NICS * 4]; /* old MAC -> new, so every
						    state of a NIC agrees */
	size_t nmacs;
	int rc;
	unsigned nodes;
};

static int parse_braced(const char *s, char out[37])
{
	size_t n = s ? strlen(s) : 0;
	if (n == 38 && s[0] == '{' && s[37] == '}') {
		s++;
		n = 36;
	}
	if (n != 36)
		return -1;
	for (size_t i = 0; i < 36; i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		out[i] = c;
	}
	out[36] = 0;
	return 0;
}

static void new_uuid(char out[37])
{
	unsigned char b[16];
	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
		for (size_t i = 0; i < sizeof b; i++)
			b[i] = (unsigned char)rand();
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
		 b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
}

static const char *mapped(const struct fix *x, const char *uuid)
{
	for (size_t i = 0; i < x->nmap; i++)
		if (!strcmp(x->map[i].from, uuid))
			return x->map[i].to;
	return NULL;
}

static int add_map(struct fix *x, const char *from, const char *to)
{
	struct uuid_map *m;
	if (mapped(x, from))
		return 0;
	m = realloc(x->map, (x->nmap + 1) * sizeof *m);
	if (!m)
		return VMB_ENOMEM;
	x->map = m;
	snprintf(m[x->nmap].from, 37, "%s", from);
	if (to)
		snprintf(m[x->nmap].to, 37, "%s", to);
	else
		new_uuid(m[x->nmap].to);
	x->nmap++;
	return 0;
}

static void set_attr(xmlNode *n, const char *name, const char *value)
{
	xmlSetProp(n, (const xmlChar *)name, (const xmlChar *)value);
}

/* A path attribute to where its file is now (relative to the folder). */
static void remap(struct fix *x, xmlNode *n, const char *attr)
{
	char *old = vmb_xml_attr(n, attr);
	const char *now;
	if (!old)
		return;
	now = *old ? vmb_vmfolder_view_map_rel(x->v, old) : NULL;
	if (now)
		set_attr(n, attr, now);
	free(old);
}

static void uuid_attr(struct fix *x, xmlNode *n)
{
	char *u = vmb_xml_attr(n, "uuid"), id[37], b[40];
	const char *to;
	if (u && !parse_braced(u, id) && (to = mapped(x, id))) {
		snprintf(b, sizeof b, "{%s}", to);
		set_attr(n, "uuid", b);
	}
	free(u);
}

static int is_hdd_location(const xmlNode *n)
{
	return vmb_xml_is(n, "HardDisk") || vmb_xml_is(n, "Image");
}

/* Paths, uuids and MACs in the whole document. */
static void rewrite(struct fix *x, xmlNode *n, int depth)
{
	for (; n && !x->rc && depth < 300; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (++x->nodes > VBOX_MAX_NODES) {
			x->rc = vmb_error_set(VMB_EFORMAT, "the settings have "
					      "too many nodes");
			return;
		}
		if (is_hdd_location(n))
			remap(x, n, "location");
		if (vmb_xml_is(n, "Snapshot") || vmb_xml_is(n, "Machine"))
			remap(x, n, "stateFile");
		if (vmb_xml_is(n, "NVRAM"))
			remap(x, n, "path");
		if (vmb_xml_is(n, "Machine")) {
			char *sf = vmb_xml_attr(n, "snapshotFolder");
			if (sf && sf[0] == '/')
				set_attr(n, "snapshotFolder", "Snapshots");
			free(sf);
		}
		if (x->nmap && (vmb_xml_is(n, "Machine") ||
				vmb_xml_is(n, "HardDisk") ||
				vmb_xml_is(n, "Image")))
			uuid_attr(x, n);
		if ((x->flags & VMB_VMFOLDER_NEW_UUID) &&
		    vmb_xml_is(n, "Adapter")) {
			char *mac = vmb_xml_attr(n, "MACAddress");
			if (mac) {
				size_t k;
				for (k = 0; k < x->nmacs &&
				     strcasecmp(x->macs[k].from, mac); k++)
					;
				if (k == x->nmacs &&
				    k < sizeof x->macs / sizeof x->macs[0]) {
					unsigned char b[3];
					if (getrandom(b, 3, 0) != 3)
						b[0] = b[1] = b[2] =
							(unsigned char)rand();
					snprintf(x->macs[k].from, 37, "%.36s",
						 mac);
					snprintf(x->macs[k].to, 37,
						 "080027%02X%02X%02X", b[0],
						 b[1], b[2]);
					x->nmacs++;
				}
				if (k < x->nmacs)
					set_attr(n, "MACAddress",
						 x->macs[k].to);
				free(mac);
			}
		}
		rewrite(x, n->children, depth + 1);
	}
}

/* The HardDisk element of uuid @id anywhere below @n. */
static xmlNode *find_disk(xmlNode *n, const char *id, int depth)
{
	for (; n && depth < 80; n = n->next) {
		xmlNode *f;
		if (vmb_xml_is(n, "HardDisk")) {
			char *u = vmb_xml_attr(n, "uuid"), t[37];
			int hit = u && !parse_braced(u, t) && !strcmp(t, id);
			free(u);
			if (hit)
				return n;
		}
		if ((f = find_disk(n->children, id, depth + 1)))
			return f;
	}
	return NULL;
}

static void drop_children(xmlNode *n, const char *name)
{
	xmlNode *c = n->children;
	while (c) {
		xmlNode *next = c->next;
		if (vmb_xml_is(c, name)) {
			xmlUnlinkNode(c);
			xmlFreeNode(c);
		}
		c = next;
	}
}

/* Attachments of uuid @from (in the current state only) to @to. */
static void retarget(xmlNode *n, const char *from, const char *to,
		     int depth)
{
	for (; n && depth < 12; n = n->next) {
		if (vmb_xml_is(n, "Snapshot"))
			continue;
		if (vmb_xml_is(n, "Image")) {
			char *u = vmb_xml_attr(n, "uuid"), t[37], b[40];
			if (u && !parse_braced(u, t) && !strcmp(t, from)) {
				snprintf(b, sizeof b, "{%s}", to);
				set_attr(n, "uuid", b);
			}
			free(u);
		}
		retarget(n->children, from, to, depth + 1);
	}
}

/* RTUUID bytes of a uuid text. */
static void uuid_bytes(const char *s, unsigned char b[16])
{
	unsigned v[16];
	sscanf(s, "%2x%2x%2x%2x-%2x%2x-%2x%2x-%2x%2x-%2x%2x%2x%2x%2x%2x",
	       &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8],
	       &v[9], &v[10], &v[11], &v[12], &v[13], &v[14], &v[15]);
	/* u32, u16, u16 little endian, then the rest as written */
	b[0] = (unsigned char)v[3]; b[1] = (unsigned char)v[2];
	b[2] = (unsigned char)v[1]; b[3] = (unsigned char)v[0];
	b[4] = (unsigned char)v[5]; b[5] = (unsigned char)v[4];
	b[6] = (unsigned char)v[7]; b[7] = (unsigned char)v[6];
	for (int i = 8; i < 16; i++)
		b[i] = (unsigned char)v[i];
}

/* Write a VDI header's uuid, and its parent link (NULL: keep; "": none,
 * the image becomes a base). */
static int vdi_patch(const char *path, const char *uuid, const char *parent)
{
	unsigned char h[0x1c8], b[16];
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW), rc = 0;
	if (fd < 0)
		return vmb_error_set(VMB_EIO, "%s: %s", path, strerror(errno));
	if (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h ||
	    h[0x40] != 0x7f || h[0x41] != 0x10 || h[0x42] != 0xda ||
	    h[0x43] != 0xbe) {
		close(fd);
		return vmb_error_set(VMB_EFORMAT, "%s: not a VDI image", path);
	}
	uuid_bytes(uuid, b);
	if (pwrite(fd, b, 16, 0x188) != 16)
		rc = -1;
	if (parent && !*parent) {
		static const unsigned char dyn[4] = { 1, 0, 0, 0 };
		memset(b, 0, 16);
		if (pwrite(fd, b, 16, 0x1a8) != 16 ||
		    pwrite(fd, b, 16, 0x1b8) != 16 ||
		    pwrite(fd, dyn, 4, 0x4c) != 4)
			rc = -1;
	} else if (parent) {
		uuid_bytes(parent, b);
		if (pwrite(fd, b, 16, 0x1a8) != 16)
			rc = -1;
	}
	if (!rc && fsync(fd) != 0)
		rc = -1;
	if (rc)
		rc = vmb_error_set(VMB_EIO, "%s: cannot write the header: %s",
				   path, strerror(errno));
	close(fd);
	return rc;
}

/* The stored file whose original path is @loc: where it is now. */
static const char *now_of(vmb_vmfolder_view *v, const char *loc)
{
	return vmb_vmfolder_view_map(v, loc);
}

static int buf_of_doc(xmlDoc *doc, char **out, size_t *len)
{
	FILE *f = open_memstream(out, len);
	if (!f)
		return VMB_ENOMEM;
	xmlDocDump(f, doc);
	if (fclose(f) != 0)
		return VMB_ENOMEM;
	return 0;
}

static int read_file(const char *path, char **text, size_t *len)
{
	FILE *f = fopen(path, "rb");
	long n;
	if (!f)
		return vmb_error_set(VMB_EIO, "%s: %s", path, strerror(errno));
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 ||
	    n > (long)VBOX_MAX_SETTINGS || fseek(f, 0, SEEK_SET)) {
		fclose(f);
		return vmb_error_set(VMB_EFORMAT, "%s: unreadable or too "
				     "large", path);
	}
	*text = malloc((size_t)n + 1);
	if (!*text || fread(*text, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(*text);
		return vmb_error_set(VMB_EIO, "%s: short read", path);
	}
	(*text)[n] = 0;
	*len = (size_t)n;
	fclose(f);
	return 0;
}

int vbox_folder_fixup(void *handle, vmb_vmfolder_view *v)
{
	const char *cfg = vmb_vmfolder_view_meta(v, "config");
	const char *cfg_now = cfg ? vmb_vmfolder_view_map(v, cfg) : NULL;
	/* map_rel's answer lives until its next call: keep a copy */
	const char *rel0 = cfg ? vmb_vmfolder_view_map_rel(v, cfg) : NULL;
	char *cfg_rel = rel0 ? strdup(rel0) : NULL;
	struct vbox_machine m;
	struct fix x;
	xmlDoc *doc = NULL;
	xmlNode *mach;
	char *text = NULL, *out = NULL;
	size_t len = 0, olen = 0;
	int rc;

	(void)handle;
	memset(&x, 0, sizeof x);
	memset(&m, 0, sizeof m);
	x.v = v;
	x.flags = vmb_vmfolder_view_flags(v);
	if (!cfg_now || !cfg_rel) {
		free(cfg_rel);
		return vmb_error_set(VMB_EFORMAT, "the snapshot's VM folder "
				     "has no settings file");
	}
	if ((rc = read_file(cfg_now, &text, &len))) {
		free(cfg_rel);
		return rc;
	}
	/* the model, with the original folder: locations as written */
	{
		const char *od = vmb_vmfolder_view_orig_dir(v);
		size_t ol = od ? strlen(od) + strlen(base_name(cfg)) + 2 : 0;
		char *orig = od ? malloc(ol) : NULL;
		if (!orig) {
			rc = VMB_ENOMEM;
			goto out;
		}
		snprintf(orig, ol, "%s/%s", od, base_name(cfg));
		rc = vbox_settings_parse(text, len, orig, &m);
		free(orig);
		if (rc)
			goto out;
	}
	if ((rc = vmb_xml_parse(text, len, VBOX_MAX_SETTINGS, VBOX_MAX_NODES,
				"the settings file", &doc)))
		goto out;
	mach = (xmlNode *)vmb_xml_child(xmlDocGetRootElement(doc), "Machine");
	if (!mach) {
		rc = vmb_error_set(VMB_EFORMAT, "not VirtualBox settings");
		goto out;
	}
	if (x.flags & VMB_VMFOLDER_NEW_UUID) {
		rc = add_map(&x, m.uuid, NULL);
		for (size_t i = 0; !rc && i < m.nmedia; i++)
			if (m.media[i].kind == VBOX_HDD)
				rc = add_map(&x, m.media[i].uuid, NULL);
		if (rc)
			goto out;
	}
	if (x.flags & VMB_VMFOLDER_FLATTEN) {
		/* each drive: its base keeps its uuid, points at the image */
		for (size_t d = 0; d < vmb_vmfolder_view_drives(v); d++) {
			const char *fmt = NULL;
			const char *flat = vmb_vmfolder_view_drive_flat(v, d, &fmt);
			size_t nl = vmb_vmfolder_view_drive_layers(v, d);
			int top = -1, base = -1;
			xmlNode *hd;
			char up[16];
			for (size_t i = 0; i < m.nmedia; i++) {
				const char *now = now_of(v, m.media[i].location);
				if (!now || m.media[i].kind != VBOX_HDD)
					continue;
				/* the layers' stored names, top and base */
				for (size_t f = 0; f < vmb_vmfolder_view_files(v); f++) {
					const char *orig = vmb_vmfolder_view_file_orig(v, f);
					if (!orig || strcmp(orig, m.media[i].location))
						continue;
					if (!strcmp(vmb_vmfolder_view_file(v, f),
						    vmb_vmfolder_view_drive_layer(v, d, 0)))
						top = (int)i;
					if (!strcmp(vmb_vmfolder_view_file(v, f),
						    vmb_vmfolder_view_drive_layer(v, d, nl - 1)))
						base = (int)i;
				}
			}
			if (!flat || top < 0 || base < 0) {
				rc = vmb_error_set(VMB_EFORMAT, "drive %s: its "
						   "layers are not in the media "
						   "registry",
						   vmb_vmfolder_view_drive(v, d));
				goto out;
			}
			hd = find_disk(mach->children, m.media[base].uuid, 0);
			if (!hd) {
				rc = vmb_error_set(VMB_EFORMAT, "medium {%s} "
						   "vanished", m.media[base].uuid);
				goto out;
			}
			drop_children(hd, "HardDisk");
			/* its location: rewrite() maps the base's to the
			 * drive's image */
			snprintf(up, sizeof up, "%s", fmt ? fmt : "vdi");
			for (char *c = up; *c; c++)
				if (*c >= 'a' && *c <= 'z')
					*c = (char)(*c - 'a' + 'A');
			if (!strcmp(up, "QCOW2"))
				snprintf(up, sizeof up, "QCOW");
			if (!strcmp(up, "RAW"))
				snprintf(up, sizeof up, "RAW");
			set_attr(hd, "format", up);
			if (top != base)
				retarget(mach->children, m.media[top].uuid,
					 m.media[base].uuid, 0);
			if (fmt && !strcmp(fmt, "vdi")) {
				const char *to = mapped(&x, m.media[base].uuid);
				rc = vdi_patch(flat, to ? to : m.media[base].uuid,
					       "");
				if (rc)
					goto out;
			}
		}
		drop_children(mach, "Snapshot");
		xmlUnsetProp(mach, (const xmlChar *)"currentSnapshot");
	} else if (x.flags & VMB_VMFOLDER_NEW_UUID) {
		/* every image's header: its new uuid, its parent's new one */
		for (size_t i = 0; i < m.nmedia; i++) {
			const struct vbox_medium *md = &m.media[i];
			const char *now = now_of(v, md->location);
			if (md->kind != VBOX_HDD || !now || (md->format &&
			    strcasecmp(md->format, "VDI")))
				continue;
			rc = vdi_patch(now, mapped(&x, md->uuid),
				       md->parent >= 0 ?
				       mapped(&x, m.media[md->parent].uuid) :
				       NULL);
			if (rc)
				goto out;
		}
	}
	rewrite(&x, mach, 0);
	if ((rc = x.rc))
		goto out;
	if ((rc = buf_of_doc(doc, &out, &olen)))
		goto out;
	rc = vmb_vmfolder_view_write(v, cfg_rel, out, olen);
out:
	if (doc)
		xmlFreeDoc(doc);
	vbox_machine_free(&m);
	free(x.map);
	free(text);
	free(out);
	free(cfg_rel);
	return rc;
}
