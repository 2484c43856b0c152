/*
 * Reading a VirtualBox .vbox settings file (docs/vbox.md).
 *
 * <VirtualBox version="1.x-linux"><Machine uuid="{..}" name=".."
 * currentSnapshot="{..}" snapshotFolder="Snapshots" stateFile="..">:
 *  - MediaRegistry/HardDisks/HardDisk (uuid, location, format), nested:
 *    a HardDisk inside another is a differencing image of it;
 *    DVDImages/Image, FloppyImages/Image;
 *  - Hardware: CPU@count, Memory@RAMSize, Firmware@type (EFI...),
 *    BIOS/NVRAM@path (wherever an NVRAM element with a path sits under
 *    Hardware: the element moved between settings versions),
 *    Network/Adapter@MACAddress;
 *  - StorageControllers/StorageController (name, type)/AttachedDevice
 *    (type, port, device)/Image@uuid: what each port has, as a child of
 *    Machine (or of its Hardware, in newer settings versions);
 *  - Snapshot (uuid, name, stateFile) with its own Hardware and
 *    StorageControllers, and Snapshots/Snapshot children.
 * The file is untrusted: every count is bounded, every uuid checked,
 * every reference resolved, and locations with ".." refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vmbackup/common.h"
#include "archive/xml_dl.h"
#include "vbox.h"

struct ctx {
	struct vbox_machine *m;
	int rc;
};

static int fail(struct ctx *c, const char *fmt, const char *a,
		const char *b)
{
	if (!c->rc)
		c->rc = vmb_error_set(VMB_EFORMAT, fmt, a ? a : "",
				      b ? b : "");
	return c->rc;
}

static char *dupstr(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

/* "{6B0B...}" or without braces, into lower case without braces. */
static int parse_uuid(const char *s, char out[37])
{
	size_t n;
	if (!s)
		return -1;
	n = strlen(s);
	if (n == 38 && s[0] == '{' && s[37] == '}')
		s++, n -= 2;
	if (n != 36)
		return -1;
	for (size_t i = 0; i < 36; i++) {
		char ch = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (ch != '-')
				return -1;
		} else if ((ch >= '0' && ch <= '9') ||
			   (ch >= 'a' && ch <= 'f')) {
		} else if (ch >= 'A' && ch <= 'F') {
			ch = (char)(ch - 'A' + 'a');
		} else {
			return -1;
		}
		out[i] = ch;
	}
	out[36] = 0;
	return 0;
}

/* A location as VirtualBox writes it, resolved against the folder. */
static char *resolve(struct ctx *c, const char *loc, const char *what)
{
	const char *p = loc;
	char *out;
	size_t n;
	if (!loc || !*loc) {
		fail(c, "%s has no location%s", what, NULL);
		return NULL;
	}
	if (strlen(loc) > 4000) {
		fail(c, "%s: location too long%s", what, NULL);
		return NULL;
	}
	for (;;) {
		size_t k = strcspn(p, "/\\");
		if (k == 2 && p[0] == '.' && p[1] == '.') {
			fail(c, "%s: location '%s' goes up a folder ('..'): "
			     "refused", what, loc);
			return NULL;
		}
		if (!p[k])
			break;
		p += k + 1;
	}
	if (loc[0] == '/')
		return dupstr(loc);
	n = strlen(c->m->dir) + strlen(loc) + 2;
	out = malloc(n);
	if (out)
		snprintf(out, n, "%s/%s", c->m->dir, loc);
	return out;
}

static int add_medium(struct ctx *c, const xmlNode *n, int kind, int parent,
		      int depth)
{
	struct vbox_machine *m = c->m;
	struct vbox_medium *md;
	char *u = vmb_xml_attr(n, "uuid"), *loc;
	char uuid[37];
	int bad = parse_uuid(u, uuid);
	free(u);
	if (bad)
		return fail(c, "a medium of the registry has no valid uuid%s%s",
			    NULL, NULL);
	if (m->nmedia >= VBOX_MAX_MEDIA)
		return fail(c, "more than 4096 media in the registry%s%s",
			    NULL, NULL);
	if (depth >= VBOX_MAX_CHAIN)
		return fail(c, "medium {%s}: differencing images nested "
			    "deeper than 64%s", uuid, NULL);
	for (size_t i = 0; i < m->nmedia; i++)
		if (!strcmp(m->media[i].uuid, uuid))
			return fail(c, "medium {%s} is listed twice in the "
				    "media registry%s", uuid, NULL);
	md = realloc(m->media, (m->nmedia + 1) * sizeof *md);
	if (!md)
		return c->rc = VMB_ENOMEM;
	m->media = md;
	md += m->nmedia;
	memset(md, 0, sizeof *md);
	memcpy(md->uuid, uuid, 37);
	md->kind = kind;
	md->parent = parent;
	md->depth = depth;
	m->nmedia++;
	loc = vmb_xml_attr(n, "location");
	md->location = loc;
	md->format = vmb_xml_attr(n, "format");
	{
		char what[64];
		snprintf(what, sizeof what, "medium {%s}", uuid);
		if (!(md->path = resolve(c, loc, what)))
			return c->rc ? c->rc : (c->rc = VMB_ENOMEM);
	}
	for (size_t i = 0; i + 1 < m->nmedia; i++)
		if (!strcmp(m->media[i].path, md->path))
			return fail(c, "%s is listed twice in the media "
				    "registry (as {%s})", md->location,
				    m->media[i].uuid);
	return 0;
}

static void hard_disks(struct ctx *c, const xmlNode *n, int parent,
		       int depth)
{
	for (; n && !c->rc; n = n->next) {
		int me;
		if (!vmb_xml_is(n, "HardDisk"))
			continue;
		if (add_medium(c, n, VBOX_HDD, parent, depth))
			return;
		me = (int)c->m->nmedia - 1;
		hard_disks(c, n->children, me, depth + 1);
	}
}

static void images(struct ctx *c, const xmlNode *n, int kind)
{
	for (; n && !c->rc; n = n->next)
		if (vmb_xml_is(n, "Image"))
			add_medium(c, n, kind, -1, 0);
}

static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;
	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

static int find_medium(const struct vbox_machine *m, const char *uuid)
{
	for (size_t i = 0; i < m->nmedia; i++)
		if (!strcmp(m->media[i].uuid, uuid))
			return (int)i;
	return -1;
}

static void controllers(struct ctx *c, const xmlNode *sc,
			struct vbox_state *st, const char *who)
{
	for (const xmlNode *ct = sc ? sc->children : NULL; ct && !c->rc;
	     ct = ct->next) {
		if (!vmb_xml_is(ct, "StorageController"))
			continue;
		for (const xmlNode *ad = ct->children; ad && !c->rc;
		     ad = ad->next) {
			struct vbox_attach *a;
			char *type, *s;
			const xmlNode *img;
			uint64_t v;
			if (!vmb_xml_is(ad, "AttachedDevice"))
				continue;
			if (st->natt >= VBOX_MAX_ATTACH) {
				fail(c, "%s: more than 256 attached devices%s",
				     who, NULL);
				return;
			}
			a = realloc(st->att, (st->natt + 1) * sizeof *a);
			if (!a) {
				c->rc = VMB_ENOMEM;
				return;
			}
			st->att = a;
			a += st->natt++;
			memset(a, 0, sizeof *a);
			a->medium = -1;
			a->controller = vmb_xml_attr(ct, "name");
			a->ctl_type = vmb_xml_attr(ct, "type");
			if (!a->controller || !*a->controller) {
				fail(c, "%s: a storage controller has no name%s",
				     who, NULL);
				return;
			}
			type = vmb_xml_attr(ad, "type");
			a->kind = type && !strcmp(type, "HardDisk") ? VBOX_HDD :
				  type && !strcmp(type, "DVD") ? VBOX_DVD :
				  type && !strcmp(type, "Floppy") ?
				  VBOX_FLOPPY : -1;
			free(type);
			s = vmb_xml_attr(ad, "port");
			a->port = parse_uint(s ? s : "0", 255, &v) ? -1 : (int)v;
			free(s);
			s = vmb_xml_attr(ad, "device");
			a->device = parse_uint(s ? s : "0", 255, &v) ? -1 :
				    (int)v;
			free(s);
			if (a->kind < 0 || a->port < 0 || a->device < 0) {
				fail(c, "%s: controller %s has a device of "
				     "unknown type or port", who,
				     a->controller);
				return;
			}
			img = vmb_xml_child(ad, "Image");
			if (img) {
				char uuid[37];
				char *u = vmb_xml_attr(img, "uuid");
				int bad = parse_uuid(u, uuid);
				free(u);
				if (bad) {
					fail(c, "%s: controller %s: an image "
					     "with no valid uuid", who,
					     a->controller);
					return;
				}
				a->medium = find_medium(c->m, uuid);
				if (a->medium < 0 ||
				    c->m->media[a->medium].kind != a->kind) {
					char t[200];
					snprintf(t, sizeof t, "%s port %d "
						 "device %d", a->controller,
						 a->port, a->device);
					fail(c, "%s: %s: the media registry has "
					     "no such image", who, t);
					if (c->rc)
						vmb_error_set(VMB_EFORMAT,
							"%s: %s: medium {%s} "
							"is not in the media "
							"registry", who, t,
							uuid);
					return;
				}
			}
			for (size_t k = 0; a->kind == VBOX_HDD && a->medium >= 0
			     && k + 1 < st->natt; k++)
				if (st->att[k].medium == a->medium) {
					fail(c, "%s: disk %s is attached twice",
					     who, c->m->media[a->medium]
					     .location);
					return;
				}
		}
	}
}

/* StorageControllers: a child of the state's element, or of its
 * Hardware. */
static void state_devices(struct ctx *c, const xmlNode *el,
			  struct vbox_state *st, const char *who)
{
	const xmlNode *sc = vmb_xml_child(el, "StorageControllers");
	if (!sc)
		sc = vmb_xml_child(vmb_xml_child(el, "Hardware"),
				   "StorageControllers");
	controllers(c, sc, st, who);
}

static void state_file(struct ctx *c, const xmlNode *el,
		       struct vbox_state *st, const char *who)
{
	char *sf = vmb_xml_attr(el, "stateFile");
	if (sf && !*sf) {
		free(sf);
		sf = NULL;
	}
	st->state_file = sf;
	if (sf && !(st->state_path = resolve(c, sf, who)) && !c->rc)
		c->rc = VMB_ENOMEM;
}

static void snapshot(struct ctx *c, const xmlNode *n, int parent,
		     int depth)
{
	struct vbox_machine *m = c->m;
	for (; n && !c->rc; n = n->next) {
		struct vbox_state *st;
		char *u;
		char who[64];
		int me;
		if (!vmb_xml_is(n, "Snapshot"))
			continue;
		if (m->nsnaps >= VBOX_MAX_SNAPSHOTS || depth > 250) {
			fail(c, "more than 1024 snapshots, or nested deeper "
			     "than 250%s%s", NULL, NULL);
			return;
		}
		st = realloc(m->snaps, (m->nsnaps + 1) * sizeof *st);
		if (!st) {
			c->rc = VMB_ENOMEM;
			return;
		}
		m->snaps = st;
		me = (int)m->nsnaps++;
		st += me;
		memset(st, 0, sizeof *st);
		st->parent = parent;
		u = vmb_xml_attr(n, "uuid");
		if (parse_uuid(u, st->uuid)) {
			free(u);
			fail(c, "a snapshot has no valid uuid%s%s", NULL, NULL);
			return;
		}
		free(u);
		for (int k = 0; k < me; k++)
			if (!strcmp(m->snaps[k].uuid, st->uuid)) {
				fail(c, "snapshot {%s} is listed twice%s",
				     st->uuid, NULL);
				return;
			}
		st->name = vmb_xml_attr(n, "name");
		snprintf(who, sizeof who, "snapshot {%s}", st->uuid);
		state_file(c, n, st, who);
		state_devices(c, n, &m->snaps[me], who);
		snapshot(c, vmb_xml_child(n, "Snapshots") ?
			 vmb_xml_child(n, "Snapshots")->children : NULL, me,
			 depth + 1);
	}
}

static const xmlNode *find_below(const xmlNode *n, const char *name,
				 int depth)
{
	for (const xmlNode *c = n ? n->children : NULL; c && depth < 4;
	     c = c->next) {
		const xmlNode *f;
		if (vmb_xml_is(c, name))
			return c;
		if ((f = find_below(c, name, depth + 1)))
			return f;
	}
	return NULL;
}

static void hardware(struct ctx *c, const xmlNode *hw)
{
	struct vbox_machine *m = c->m;
	const xmlNode *n;
	char *s;
	uint64_t v;
	if (!hw)
		return;
	if ((n = vmb_xml_child(hw, "CPU")) && (s = vmb_xml_attr(n, "count"))) {
		if (!parse_uint(s, 1024, &v))
			m->cpus = (unsigned)v;
		free(s);
	}
	if ((n = vmb_xml_child(hw, "Memory")) &&
	    (s = vmb_xml_attr(n, "RAMSize"))) {
		if (!parse_uint(s, 1u << 24, &v))
			m->memory_mb = v;
		free(s);
	}
	if ((n = find_below(hw, "Firmware", 0)) &&
	    (s = vmb_xml_attr(n, "type"))) {
		m->efi = !strncmp(s, "EFI", 3);
		free(s);
	}
	if ((n = find_below(hw, "NVRAM", 0)) &&
	    (s = vmb_xml_attr(n, "path"))) {
		if (*s) {
			m->nvram = s;
			if (!(m->nvram_path = resolve(c, s, "the NVRAM file")) &&
			    !c->rc)
				c->rc = VMB_ENOMEM;
		} else {
			free(s);
		}
	}
	n = vmb_xml_child(hw, "Network");
	for (n = n ? n->children : NULL; n && m->nmacs < VBOX_MAX_NICS;
	     n = n->next) {
		char *en, *mac;
		if (!vmb_xml_is(n, "Adapter"))
			continue;
		en = vmb_xml_attr(n, "enabled");
		mac = vmb_xml_attr(n, "MACAddress");
		if (en && !strcmp(en, "true") && mac && strlen(mac) == 12 &&
		    strspn(mac, "0123456789abcdefABCDEF") == 12) {
			m->macs[m->nmacs++] = mac;
			mac = NULL;
		}
		free(en);
		free(mac);
	}
}

static char *folder_of(const char *path)
{
	const char *sl = strrchr(path, '/');
	char *d;
	if (!sl)
		return dupstr(".");
	if (sl == path)
		return dupstr("/");
	d = malloc((size_t)(sl - path) + 1);
	if (d) {
		memcpy(d, path, (size_t)(sl - path));
		d[sl - path] = 0;
	}
	return d;
}

int vbox_settings_parse(const char *text, size_t len, const char *settings,
			struct vbox_machine *m)
{
	struct ctx c = { m, 0 };
	xmlDoc *doc;
	const xmlNode *root, *mach, *reg, *n;
	char *s;
	int rc;

	memset(m, 0, sizeof *m);
	m->current.parent = -1;
	rc = vmb_xml_parse(text, len, VBOX_MAX_SETTINGS, VBOX_MAX_NODES,
			   "the settings file", &doc);
	if (rc)
		return rc;
	m->settings = dupstr(settings ? settings : "machine.vbox");
	m->dir = m->settings ? folder_of(m->settings) : NULL;
	if (!m->dir) {
		rc = VMB_ENOMEM;
		goto out;
	}
	root = xmlDocGetRootElement(doc);
	mach = vmb_xml_is(root, "VirtualBox") ?
	       vmb_xml_child(root, "Machine") : NULL;
	if (!mach) {
		rc = vmb_error_set(VMB_EFORMAT, "not VirtualBox settings "
				   "(no VirtualBox/Machine element)");
		goto out;
	}
	s = vmb_xml_attr(mach, "uuid");
	if (parse_uuid(s, m->uuid)) {
		free(s);
		rc = vmb_error_set(VMB_EFORMAT, "the machine has no valid "
				   "uuid");
		goto out;
	}
	free(s);
	m->name = vmb_xml_attr(mach, "name");
	if (!m->name || !*m->name || strlen(m->name) > 200) {
		rc = vmb_error_set(VMB_EFORMAT, "the machine has no name");
		goto out;
	}
	m->snapshot_folder = vmb_xml_attr(mach, "snapshotFolder");
	s = vmb_xml_attr(mach, "currentSnapshot");
	if (s && parse_uuid(s, m->current_snapshot)) {
		free(s);
		rc = vmb_error_set(VMB_EFORMAT, "currentSnapshot is not a "
				   "uuid");
		goto out;
	}
	free(s);
	reg = vmb_xml_child(mach, "MediaRegistry");
	if ((n = vmb_xml_child(reg, "HardDisks")))
		hard_disks(&c, n->children, -1, 0);
	if (!c.rc && (n = vmb_xml_child(reg, "DVDImages")))
		images(&c, n->children, VBOX_DVD);
	if (!c.rc && (n = vmb_xml_child(reg, "FloppyImages")))
		images(&c, n->children, VBOX_FLOPPY);
	if (!c.rc)
		hardware(&c, vmb_xml_child(mach, "Hardware"));
	if (!c.rc)
		state_file(&c, mach, &m->current, "the machine");
	if (!c.rc)
		state_devices(&c, mach, &m->current, "the current state");
	if (!c.rc)
		snapshot(&c, mach->children, -1, 0);
	if (!c.rc && m->current_snapshot[0]) {
		size_t i;
		for (i = 0; i < m->nsnaps; i++)
			if (!strcmp(m->snaps[i].uuid, m->current_snapshot))
				break;
		if (i == m->nsnaps)
			fail(&c, "currentSnapshot {%s} is not in the snapshot "
			     "tree%s", m->current_snapshot, NULL);
	}
	if (!c.rc && m->nsnaps && !m->current_snapshot[0])
		fail(&c, "snapshots without a currentSnapshot%s%s", NULL,
		     NULL);
	rc = c.rc;
out:
	xmlFreeDoc(doc);
	if (rc)
		vbox_machine_free(m);
	return rc;
}

static void state_free(struct vbox_state *st)
{
	for (size_t i = 0; i < st->natt; i++) {
		free(st->att[i].controller);
		free(st->att[i].ctl_type);
	}
	free(st->att);
	free(st->name);
	free(st->state_file);
	free(st->state_path);
}

void vbox_machine_free(struct vbox_machine *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nmedia; i++) {
		free(m->media[i].location);
		free(m->media[i].path);
		free(m->media[i].format);
	}
	free(m->media);
	state_free(&m->current);
	for (size_t i = 0; i < m->nsnaps; i++)
		state_free(&m->snaps[i]);
	free(m->snaps);
	for (size_t i = 0; i < m->nmacs; i++)
		free(m->macs[i]);
	free(m->name);
	free(m->settings);
	free(m->dir);
	free(m->snapshot_folder);
	free(m->nvram);
	free(m->nvram_path);
	memset(m, 0, sizeof *m);
}

size_t vbox_chain(const struct vbox_machine *m, int i, int *out)
{
	size_t n = 0;
	while (i >= 0 && (size_t)i < m->nmedia && n < VBOX_MAX_CHAIN) {
		out[n++] = i;
		i = m->media[i].parent;
	}
	return n;
}

const char *vbox_bus(const char *t)
{
	if (!t)
		return "sata";
	if (!strcmp(t, "AHCI"))
		return "sata";
	if (!strncmp(t, "PIIX", 4) || !strcmp(t, "ICH6"))
		return "ide";
	if (!strcmp(t, "NVMe"))
		return "nvme";
	if (!strcmp(t, "I82078"))
		return "floppy";
	if (!strcmp(t, "VirtioSCSI"))
		return "virtio";
	if (!strcmp(t, "USB"))
		return "usb";
	return "scsi"; /* LsiLogic, BusLogic, LsiLogicSas */
}
