/*
 * Domain XML: what the plugin reads (name, uuid, disks, the DAC label
 * QEMU runs as) and the rewrite for defining a restored domain.  The XML
 * comes from libvirt or from a snapshot's configuration: parsed with
 * libxml2 without network access or entity expansion, and size-limited.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include "lv.h"

static int parse_doc(const char *xml, xmlDocPtr *out)
{
	size_t len = xml ? strlen(xml) : 0;
	xmlDocPtr doc;
	xmlNodePtr root;
	if (!len || len > LV_XML_MAX)
		return vmb_error_set(VMB_EFORMAT, "libvirt: domain XML of %zu "
				     "bytes (limit %u)", len, LV_XML_MAX);
	doc = xmlReadMemory(xml, (int)len, "domain.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR |
			    XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
	if (!doc) {
		const xmlError *e = xmlGetLastError();
		return vmb_error_set(VMB_EFORMAT, "libvirt: malformed domain "
				     "XML: %s", e && e->message ? e->message :
				     "parse error");
	}
	/* libvirt never writes a DTD; one here can only be an attack
	 * (entity expansion, external entities) */
	if (doc->intSubset || doc->extSubset) {
		xmlFreeDoc(doc);
		return vmb_error_set(VMB_EFORMAT, "libvirt: domain XML with a "
				     "DOCTYPE is refused");
	}
	root = xmlDocGetRootElement(doc);
	if (!root || xmlStrcmp(root->name, BAD_CAST "domain") != 0) {
		xmlFreeDoc(doc);
		return vmb_error_set(VMB_EFORMAT, "libvirt: the XML is not a "
				     "<domain>");
	}
	*out = doc;
	return 0;
}

static xmlNodePtr child(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE &&
		    !xmlStrcmp(c->name, BAD_CAST name))
			return c;
	return NULL;
}

/* malloc'd attribute value, or NULL */
static char *attr(xmlNodePtr n, const char *name)
{
	xmlChar *v = n ? xmlGetProp(n, BAD_CAST name) : NULL;
	char *s = v ? strdup((const char *)v) : NULL;
	xmlFree(v);
	return s;
}

static char *text(xmlNodePtr n)
{
	xmlChar *v = n ? xmlNodeGetContent(n) : NULL;
	char *s = v ? strdup((const char *)v) : NULL;
	xmlFree(v);
	return s;
}

static int is_attr(xmlNodePtr n, const char *name, const char *want)
{
	char *v = attr(n, name);
	int r = v && !strcmp(v, want);
	free(v);
	return r;
}

void lv_xml_free(lv_domain_xml *d)
{
	if (!d)
		return;
	free(d->name);
	free(d->uuid);
	for (size_t i = 0; i < d->ndisks; i++) {
		free(d->disks[i].target);
		free(d->disks[i].type);
		free(d->disks[i].path);
		free(d->disks[i].format);
	}
	memset(d, 0, sizeof *d);
}

/* "+64055:+64055" or "qemu:kvm" (names are not resolved: -1) */
static void dac_label(const char *l, long *uid, long *gid)
{
	char *end;
	*uid = *gid = -1;
	if (!l || *l != '+')
		return;
	long u = strtol(l + 1, &end, 10);
	if (*end != ':' || end[1] != '+' || u < 0)
		return;
	long g = strtol(end + 2, &end, 10);
	if (*end || g < 0)
		return;
	*uid = u;
	*gid = g;
}

int lv_xml_parse(const char *xml, lv_domain_xml *out)
{
	xmlDocPtr doc;
	xmlNodePtr root, devs;
	int rc;
	char *id;
	memset(out, 0, sizeof *out);
	out->id = -1;
	out->dac_uid = out->dac_gid = -1;
	if ((rc = parse_doc(xml, &doc)) != 0)
		return rc;
	root = xmlDocGetRootElement(doc);
	out->name = text(child(root, "name"));
	out->uuid = text(child(root, "uuid"));
	id = attr(root, "id");
	if (id) {
		char *end;
		long v = strtol(id, &end, 10);
		if (!*end && v >= 0 && v < 1L << 30)
			out->id = (int)v;
		free(id);
	}
	for (xmlNodePtr c = root->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE &&
		    !xmlStrcmp(c->name, BAD_CAST "seclabel") &&
		    is_attr(c, "model", "dac")) {
			char *l = text(child(c, "label"));
			dac_label(l, &out->dac_uid, &out->dac_gid);
			free(l);
		}
	if (!out->name || !*out->name) {
		rc = vmb_error_set(VMB_EFORMAT, "libvirt: domain XML without a "
				   "<name>");
		goto out;
	}
	devs = child(root, "devices");
	for (xmlNodePtr c = devs ? devs->children : NULL; c; c = c->next) {
		lv_disk *d;
		xmlNodePtr src;
		if (c->type != XML_ELEMENT_NODE ||
		    xmlStrcmp(c->name, BAD_CAST "disk") != 0)
			continue;
		{
			char *dev = attr(c, "device");
			int disk = !dev || !strcmp(dev, "disk");
			free(dev);
			if (!disk)
				continue; /* cdrom, floppy, lun */
		}
		if (out->ndisks == LV_MAX_DISKS) {
			rc = vmb_error_set(VMB_ERANGE, "libvirt: more than %d "
					   "disks", LV_MAX_DISKS);
			goto out;
		}
		d = &out->disks[out->ndisks++];
		d->target = attr(child(c, "target"), "dev");
		d->type = attr(c, "type");
		src = child(c, "source");
		d->path = attr(src, "file");
		if (!d->path)
			d->path = attr(src, "dev");
		if (!d->path)
			d->path = attr(src, "name");
		d->format = attr(child(c, "driver"), "type");
		if (!d->target || !*d->target) {
			rc = vmb_error_set(VMB_EFORMAT, "libvirt: a disk of %s "
					   "has no <target dev=...>", out->name);
			goto out;
		}
		for (const char *p = d->target; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
			      *p == '.')) {
				rc = vmb_error_set(VMB_EFORMAT, "libvirt: disk "
						   "target '%s' of %s is not a "
						   "plain name", d->target,
						   out->name);
				goto out;
			}
		for (size_t k = 0; k + 1 < out->ndisks; k++)
			if (!strcmp(out->disks[k].target, d->target)) {
				rc = vmb_error_set(VMB_EFORMAT, "libvirt: two "
						   "disks named %s", d->target);
				goto out;
			}
	}
	rc = 0;
out:
	xmlFreeDoc(doc);
	if (rc)
		lv_xml_free(out);
	return rc;
}

static void remove_children(xmlNodePtr n, const char *name)
{
	xmlNodePtr c = n ? n->children : NULL;
	while (c) {
		xmlNodePtr next = c->next;
		if (c->type == XML_ELEMENT_NODE &&
		    !xmlStrcmp(c->name, BAD_CAST name)) {
			xmlUnlinkNode(c);
			xmlFreeNode(c);
		}
		c = next;
	}
}

static const char *libvirt_format(const char *vmb_format)
{
	/* vmb's format names are libvirt's driver types */
	return vmb_format ? vmb_format : "raw";
}

int lv_xml_rewrite(const vmb_hv_define_request *req, char **out)
{
	xmlDocPtr doc;
	xmlNodePtr root, devs, name;
	xmlChar *mem = NULL;
	int len = 0, rc, nchar = 0;
	char newname[256];
	if ((rc = parse_doc(req->config, &doc)) != 0)
		return rc;
	root = xmlDocGetRootElement(doc);
	name = child(root, "name");
	if (!name) {
		xmlFreeDoc(doc);
		return vmb_error_set(VMB_EFORMAT, "libvirt: stored domain XML "
				     "has no <name>");
	}
	if (req->name)
		xmlNodeSetContent(name, BAD_CAST req->name);
	{
		char *n = text(name);
		snprintf(newname, sizeof newname, "%s", n && *n ? n : "vm");
		free(n);
		for (char *p = newname; *p; p++)
			if (*p == '/')
				*p = '_';
	}
	xmlUnsetProp(root, BAD_CAST "id");
	if (!(req->flags & VMB_HV_DEFINE_KEEP_UUID))
		remove_children(root, "uuid"); /* libvirt makes a new one */
	devs = child(root, "devices");
	for (xmlNodePtr c = devs ? devs->children : NULL; c; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (!xmlStrcmp(c->name, BAD_CAST "disk")) {
			char *dev = attr(c, "device");
			char *target = attr(child(c, "target"), "dev");
			const vmb_hv_define_disk *rd = NULL;
			int isdisk = !dev || !strcmp(dev, "disk");
			for (size_t i = 0; isdisk && target && i < req->ndisks;
			     i++)
				if (!strcmp(req->disks[i].name, target))
					rd = &req->disks[i];
			free(dev);
			free(target);
			if (!isdisk) {
				/* a CD's image is not in the backup: empty
				 * drive, so the domain starts anywhere */
				remove_children(c, "source");
				remove_children(c, "backingStore");
				continue;
			}
			if (!rd)
				continue;
			xmlSetProp(c, BAD_CAST "type", BAD_CAST "file");
			remove_children(c, "source");
			remove_children(c, "backingStore");
			{
				xmlNodePtr drv = child(c, "driver");
				xmlNodePtr src = xmlNewNode(NULL,
							    BAD_CAST "source");
				if (!drv) {
					drv = xmlNewChild(c, NULL,
							  BAD_CAST "driver", NULL);
					xmlSetProp(drv, BAD_CAST "name",
						   BAD_CAST "qemu");
				}
				xmlSetProp(drv, BAD_CAST "type",
					   BAD_CAST libvirt_format(rd->format));
				xmlSetProp(src, BAD_CAST "file",
					   BAD_CAST rd->path);
				xmlAddNextSibling(drv, src);
			}
		} else if (!xmlStrcmp(c->name, BAD_CAST "interface")) {
			if (!(req->flags & VMB_HV_DEFINE_KEEP_MACS))
				remove_children(c, "mac");
		} else if (!xmlStrcmp(c->name, BAD_CAST "serial") ||
			   !xmlStrcmp(c->name, BAD_CAST "console") ||
			   !xmlStrcmp(c->name, BAD_CAST "channel") ||
			   !xmlStrcmp(c->name, BAD_CAST "parallel")) {
			/* a file chardev: the new domain's own file in DIR,
			 * not the original's (which may not exist here) */
			xmlNodePtr src = child(c, "source");
			if (is_attr(c, "type", "file") && src && req->dir) {
				char p[4200];
				snprintf(p, sizeof p, "%s/%s.%s%d.log", req->dir,
					 newname, (const char *)c->name, nchar++);
				xmlSetProp(src, BAD_CAST "path", BAD_CAST p);
			}
		}
	}
	xmlDocDumpMemory(doc, &mem, &len);
	xmlFreeDoc(doc);
	if (!mem || len <= 0)
		return vmb_error_set(VMB_ENOMEM, "libvirt: cannot write the "
				     "domain XML");
	*out = strdup((const char *)mem);
	xmlFree(mem);
	return *out ? 0 : vmb_error_set(VMB_ENOMEM, "out of memory");
}

int lv_state_get(const char *state, const char *key, char *out, size_t n)
{
	char pat[64];
	const char *p, *e;
	if (!state || snprintf(pat, sizeof pat, "\"%s\":\"", key) >=
			      (int)sizeof pat)
		return -1;
	p = strstr(state, pat);
	if (!p)
		return -1;
	p += strlen(pat);
	e = strchr(p, '"');
	if (!e || (size_t)(e - p) >= n || e == p)
		return -1;
	for (const char *q = p; q < e; q++)
		if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
		      (*q >= '0' && *q <= '9') || *q == '-' || *q == '_' ||
		      *q == '.' || *q == ':'))
			return -1;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = 0;
	return 0;
}
