/*
 * The OVF descriptor of an OVA, read with libxml2: the VirtualSystem's id
 * or name, the References/File list (href, id, size) and the DiskSection's
 * disks (fileRef, capacity in bytes).  The descriptor comes from an
 * untrusted archive: no network, no DTD (a document type declaration, and
 * with it every entity definition, is refused outright), a node budget,
 * and every number parsed with overflow checks.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "vmbackup/common.h"
#include "common/util.h"
#include "archive_internal.h"
#include "xml_dl.h"

#define OVF_MAX_NODES 200000u /* elements walked before giving up */
#define OVF_MAX_FILES 4096u   /* References/File and Disk entries */

/* A decimal without sign, spaces or overflow. */
static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

/*
 * ovf:capacityAllocationUnits as DSP0004 programmatic units ("byte",
 * "byte * 2^30", "byte * 10^3") or the older names some tools write
 * ("KiloBytes", "MegaBytes", "GigaBytes").  @return the multiplier, 0 if
 * unknown.
 */
static uint64_t unit_bytes(const char *u)
{
	char base[8];
	unsigned b, e;
	uint64_t m = 1;
	if (!u || !*u || !strcmp(u, "byte"))
		return 1;
	if (!strcmp(u, "KiloBytes"))
		return 1024;
	if (!strcmp(u, "MegaBytes"))
		return 1024 * 1024;
	if (!strcmp(u, "GigaBytes"))
		return 1024ull * 1024 * 1024;
	if (sscanf(u, "byte * %7[0-9]^%u", base, &e) != 2)
		return 0;
	b = (unsigned)strtoul(base, NULL, 10);
	if ((b != 2 && b != 10) || e > 60)
		return 0;
	while (e--) {
		if (m > UINT64_MAX / b)
			return 0;
		m *= b;
	}
	return m;
}

void vmb_archive__ovf_free(struct ovf *o)
{
	free(o->vm);
	for (size_t i = 0; i < o->nfiles; i++) {
		free(o->files[i].id);
		free(o->files[i].href);
	}
	free(o->files);
	for (size_t i = 0; i < o->ndisks; i++) {
		free(o->disks[i].id);
		free(o->disks[i].file_ref);
	}
	free(o->disks);
	memset(o, 0, sizeof *o);
}

struct walk {
	struct ovf *o;
	unsigned nodes;
	char *vs_id, *vs_name;
	int rc;
};

static int add_file(struct walk *w, const xmlNode *n)
{
	struct ovf *o = w->o;
	struct ovf_file *f;
	char *size;
	if (o->nfiles >= OVF_MAX_FILES)
		return vmb_error_set(VMB_EINVAL, "more than %u files in "
				     "References", OVF_MAX_FILES);
	f = vmb_realloc(o->files, (o->nfiles + 1) * sizeof *f);
	if (!f)
		return VMB_ENOMEM;
	o->files = f;
	f += o->nfiles;
	memset(f, 0, sizeof *f);
	f->href = vmb_xml_attr(n, "href");
	f->id = vmb_xml_attr(n, "id");
	o->nfiles++;
	if (!f->href || !*f->href)
		return vmb_error_set(VMB_EINVAL, "a References/File has no "
				     "ovf:href");
	if ((size = vmb_xml_attr(n, "size")) != NULL) {
		int bad = parse_u64(size, &f->size);
		free(size);
		if (bad)
			return vmb_error_set(VMB_EINVAL, "the ovf:size of %s "
					     "is not a byte count", f->href);
		f->has_size = 1;
	}
	return 0;
}

static int add_disk(struct walk *w, const xmlNode *n)
{
	struct ovf *o = w->o;
	struct ovf_disk *d;
	char *cap, *units;
	uint64_t v, m;
	if (o->ndisks >= OVF_MAX_FILES)
		return vmb_error_set(VMB_EINVAL, "more than %u disks in "
				     "DiskSection", OVF_MAX_FILES);
	d = vmb_realloc(o->disks, (o->ndisks + 1) * sizeof *d);
	if (!d)
		return VMB_ENOMEM;
	o->disks = d;
	d += o->ndisks;
	memset(d, 0, sizeof *d);
	d->id = vmb_xml_attr(n, "diskId");
	d->file_ref = vmb_xml_attr(n, "fileRef");
	o->ndisks++;
	cap = vmb_xml_attr(n, "capacity");
	if (!cap)
		return 0;
	units = vmb_xml_attr(n, "capacityAllocationUnits");
	/* "${prop}": set at deployment, nothing to check against */
	if (cap[0] == '$') {
		free(cap);
		free(units);
		return 0;
	}
	m = unit_bytes(units);
	if (parse_u64(cap, &v) || !m || v > UINT64_MAX / m) {
		int rc = vmb_error_set(VMB_EINVAL, "disk %s: ovf:capacity "
				       "'%.40s' in units '%.40s' is not a size",
				       d->id ? d->id : "?", cap,
				       units ? units : "byte");
		free(cap);
		free(units);
		return rc;
	}
	free(cap);
	free(units);
	d->capacity = v * m;
	d->has_capacity = 1;
	return 0;
}

static void walk(struct walk *w, const xmlNode *n, int in_refs, int in_disks)
{
	for (; n && !w->rc; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (++w->nodes > OVF_MAX_NODES) {
			w->rc = vmb_error_set(VMB_EINVAL, "more than %u "
					      "elements", OVF_MAX_NODES);
			return;
		}
		if (in_refs && vmb_xml_is(n, "File"))
			w->rc = add_file(w, n);
		else if (in_disks && vmb_xml_is(n, "Disk"))
			w->rc = add_disk(w, n);
		else if (vmb_xml_is(n, "VirtualSystem") && !w->vs_id && !w->vs_name) {
			w->vs_id = vmb_xml_attr(n, "id");
			if (!w->vs_id || !*w->vs_id) {
				free(w->vs_id);
				w->vs_id = NULL;
				for (const xmlNode *c = n->children; c;
				     c = c->next)
					if (vmb_xml_is(c, "Name")) {
						w->vs_name = vmb_xml_text(c->children);
						break;
					}
			}
		}
		if (w->rc)
			return;
		/* bounded depth: libxml2 refuses documents nested deeper
		 * than 256 levels without XML_PARSE_HUGE */
		walk(w, n->children, vmb_xml_is(n, "References"),
		     vmb_xml_is(n, "DiskSection"));
	}
}

int vmb_archive__ovf_parse(const char *text, size_t len, struct ovf *o)
{
	struct walk w;
	xmlDoc *doc;
	memset(o, 0, sizeof *o);
	if (vmb_xml_parse(text, len, 0, 0, "the descriptor", &doc))
		return vmb_error_code();
	memset(&w, 0, sizeof w);
	w.o = o;
	walk(&w, xmlDocGetRootElement(doc), 0, 0);
	xmlFreeDoc(doc);
	if (w.vs_id) {
		o->vm = w.vs_id;
		free(w.vs_name);
	} else {
		o->vm = w.vs_name;
	}
	if (w.rc)
		vmb_archive__ovf_free(o);
	return w.rc;
}

/* ---------------------------------------------------------------- */
/* writing a descriptor for `vmb export --ova` */

static int parse_u64_trim(const char *s, uint64_t *v)
{
	char t[32];
	size_t n;
	if (!s)
		return -1;
	while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')
		s++;
	n = strcspn(s, " \n\t\r");
	if (!n || n >= sizeof t)
		return -1;
	memcpy(t, s, n);
	t[n] = 0;
	return parse_u64(t, v);
}

static void vm_from_libvirt(const xmlNode *dom, struct ovf_vm *vm)
{
	const xmlNode *n, *dev;
	char *t;
	uint64_t v;
	if ((n = vmb_xml_child(dom, "vcpu")) && (t = vmb_xml_text(n->children))) {
		if (!parse_u64_trim(t, &v) && v >= 1 && v <= 1024)
			vm->cpus = (unsigned)v;
		free(t);
	}
	if ((n = vmb_xml_child(dom, "memory")) && (t = vmb_xml_text(n->children))) {
		char *unit = vmb_xml_attr(n, "unit");
		uint64_t m = unit_bytes(NULL);
		if (!unit || !strcmp(unit, "KiB") || !strcmp(unit, "k"))
			m = 1024;
		else if (!strcmp(unit, "MiB") || !strcmp(unit, "M"))
			m = 1024 * 1024;
		else if (!strcmp(unit, "GiB") || !strcmp(unit, "G"))
			m = 1024ull * 1024 * 1024;
		else if (!strcmp(unit, "b") || !strcmp(unit, "bytes"))
			m = 1;
		if (!parse_u64_trim(t, &v) && v <= UINT64_MAX / m &&
		    v * m >= (1u << 20))
			vm->memory_mb = v * m >> 20;
		free(unit);
		free(t);
	}
	if ((n = vmb_xml_child(dom, "os"))) {
		char *fw = vmb_xml_attr(n, "firmware");
		const xmlNode *loader = vmb_xml_child(n, "loader");
		char *lt = loader ? vmb_xml_text(loader->children) : NULL;
		if ((fw && !strcmp(fw, "efi")) ||
		    (lt && (strstr(lt, "OVMF") || strstr(lt, "edk2"))))
			vm->efi = 1;
		free(fw);
		free(lt);
	}
	dev = vmb_xml_child(dom, "devices");
	for (n = dev ? dev->children : NULL; n; n = n->next) {
		if (vmb_xml_is(n, "interface") && vm->nnics < OVF_MAX_NICS) {
			const xmlNode *mac = vmb_xml_child(n, "mac");
			const xmlNode *model = vmb_xml_child(n, "model");
			char *a = mac ? vmb_xml_attr(mac, "address") : NULL;
			char *m = model ? vmb_xml_attr(model, "type") : NULL;
			snprintf(vm->nics[vm->nnics].mac,
				 sizeof vm->nics[0].mac, "%s", a ? a : "");
			snprintf(vm->nics[vm->nnics].model,
				 sizeof vm->nics[0].model, "%s",
				 m && !strcmp(m, "e1000") ? "E1000" :
				 m && !strcmp(m, "vmxnet3") ? "VmxNet3" :
				 "E1000");
			vm->nnics++;
			free(a);
			free(m);
		} else if (vmb_xml_is(n, "disk")) {
			char *device = vmb_xml_attr(n, "device");
			const xmlNode *tg = vmb_xml_child(n, "target");
			char *dname = tg ? vmb_xml_attr(tg, "dev") : NULL;
			char *bus = tg ? vmb_xml_attr(tg, "bus") : NULL;
			for (size_t i = 0; dname && bus &&
			     (!device || !strcmp(device, "disk")) &&
			     i < vm->ndisks; i++)
				if (!strcmp(vm->disks[i].name, dname))
					snprintf(vm->disks[i].bus,
						 sizeof vm->disks[i].bus, "%s",
						 !strcmp(bus, "ide") ? "ide" :
						 !strcmp(bus, "sata") ? "sata" :
						 "scsi");
			free(device);
			free(dname);
			free(bus);
		}
	}
}

static void vm_from_ovf(const xmlNode *n, struct ovf_vm *vm, unsigned depth)
{
	for (; n && depth < 64; n = n->next) {
		if (vmb_xml_is(n, "Item")) {
			const xmlNode *rt = vmb_xml_child(n, "ResourceType");
			const xmlNode *q = vmb_xml_child(n, "VirtualQuantity");
			char *rts = rt ? vmb_xml_text(rt->children) : NULL;
			char *qs = q ? vmb_xml_text(q->children) : NULL;
			uint64_t r = 0, v = 0;
			if (rts && qs && !parse_u64_trim(rts, &r) &&
			    !parse_u64_trim(qs, &v)) {
				if (r == 3 && v >= 1 && v <= 1024)
					vm->cpus = (unsigned)v;
				/* memory: MB is what every tool writes */
				if (r == 4 && v >= 1 && v <= (1u << 30))
					vm->memory_mb = v;
			}
			free(rts);
			free(qs);
		}
		vm_from_ovf(n->children, vm, depth + 1);
	}
}

int vmb_archive__ovf_vm_from_config(const char *format, const char *config,
				    struct ovf_vm *vm)
{
	xmlDoc *doc;
	const xmlNode *root;
	if (!config || !format || strlen(config) > INT_MAX ||
	    (strcmp(format, "libvirt-xml") && strcmp(format, "ovf-xml")))
		return 0;
	if (vmb_xml_load("reading the VM configuration"))
		return vmb_error_code();
	if (vmb_xml_parse(config, strlen(config), 0, 0,
			  "the VM configuration", &doc)) {
		/* unreadable: the minimal descriptor */
		vmb_error_clear();
		return 0;
	}
	root = xmlDocGetRootElement(doc);
	if (root) {
		if (!strcmp(format, "libvirt-xml") && vmb_xml_is(root, "domain"))
			vm_from_libvirt(root, vm);
		else if (vmb_xml_is(root, "Envelope"))
			vm_from_ovf(root->children, vm, 0);
	}
	xmlFreeDoc(doc);
	return 0;
}

static void esc(vmb_buf *b, const char *s)
{
	for (; *s; s++)
		switch (*s) {
		case '&': vmb_buf_puts(b, "&amp;"); break;
		case '<': vmb_buf_puts(b, "&lt;"); break;
		case '>': vmb_buf_puts(b, "&gt;"); break;
		case '"': vmb_buf_puts(b, "&quot;"); break;
		case '\'': vmb_buf_puts(b, "&apos;"); break;
		default:
			/* control characters are not allowed in XML 1.0 */
			if ((unsigned char)*s < 0x20 && *s != '\t' &&
			    *s != '\n' && *s != '\r')
				vmb_buf_puts(b, "_");
			else
				vmb_buf_printf(b, "%c", *s);
		}
}

/* One RASD Item; its elements in the schema's (alphabetical) order. */
static void item(vmb_buf *b, const char *const *kv)
{
	vmb_buf_puts(b, "      <Item>\n");
	for (; kv[0]; kv += 2) {
		if (!kv[1])
			continue;
		vmb_buf_printf(b, "        <rasd:%s>", kv[0]);
		esc(b, kv[1]);
		vmb_buf_printf(b, "</rasd:%s>\n", kv[0]);
	}
	vmb_buf_puts(b, "      </Item>\n");
}

char *vmb_archive__ovf_build(const struct ovf_vm *vm)
{
	static const struct { const char *bus, *rtype, *sub, *name; } ctl[] = {
		{ "scsi", "6", "lsilogic", "SCSI Controller 0" },
		{ "sata", "20", "AHCI", "SATA Controller 0" },
		{ "ide", "5", NULL, "IDE Controller 0" } };
	unsigned id = 1, ctl_id[3] = { 0, 0, 0 };
	char num[32], num2[32], name[64], addr[16];
	vmb_buf b;

	vmb_buf_init(&b);
	vmb_buf_puts(&b,
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<!-- written by vmbackup: vmb export, OVA output -->\n"
		"<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\"\n"
		"    xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\"\n"
		"    xmlns:rasd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData\"\n"
		"    xmlns:vssd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData\"\n"
		"    xmlns:vmw=\"http://www.vmware.com/schema/ovf\"\n"
		"    xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n"
		"  <References>\n");
	for (size_t i = 0; i < vm->ndisks; i++) {
		vmb_buf_printf(&b, "    <File ovf:href=\"");
		esc(&b, vm->disks[i].file);
		vmb_buf_printf(&b, "\" ovf:id=\"file%zu\" ovf:size=\"%llu\"/>\n",
			       i + 1,
			       (unsigned long long)vm->disks[i].file_size);
	}
	vmb_buf_puts(&b, "  </References>\n"
		     "  <DiskSection>\n"
		     "    <Info>Virtual disk information</Info>\n");
	for (size_t i = 0; i < vm->ndisks; i++)
		vmb_buf_printf(&b,
			"    <Disk ovf:capacity=\"%llu\" "
			"ovf:capacityAllocationUnits=\"byte\" "
			"ovf:diskId=\"vmdisk%zu\" ovf:fileRef=\"file%zu\" "
			"ovf:format=\"http://www.vmware.com/interfaces/"
			"specifications/vmdk.html#streamOptimized\"/>\n",
			(unsigned long long)vm->disks[i].capacity, i + 1, i + 1);
	vmb_buf_puts(&b, "  </DiskSection>\n");
	if (vm->nnics)
		vmb_buf_puts(&b,
			"  <NetworkSection>\n"
			"    <Info>The logical networks</Info>\n"
			"    <Network ovf:name=\"VM Network\">\n"
			"      <Description>The VM Network network</Description>\n"
			"    </Network>\n"
			"  </NetworkSection>\n");
	vmb_buf_puts(&b, "  <VirtualSystem ovf:id=\"");
	esc(&b, vm->name);
	vmb_buf_puts(&b, "\">\n    <Info>A virtual machine</Info>\n    <Name>");
	esc(&b, vm->name);
	vmb_buf_puts(&b, "</Name>\n"
		"    <OperatingSystemSection ovf:id=\"1\">\n"
		"      <Info>The guest operating system</Info>\n"
		"      <Description>Other</Description>\n"
		"    </OperatingSystemSection>\n"
		"    <VirtualHardwareSection>\n"
		"      <Info>Virtual hardware requirements</Info>\n"
		"      <System>\n"
		"        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>\n"
		"        <vssd:InstanceID>0</vssd:InstanceID>\n"
		"        <vssd:VirtualSystemIdentifier>");
	esc(&b, vm->name);
	vmb_buf_puts(&b, "</vssd:VirtualSystemIdentifier>\n"
		"        <vssd:VirtualSystemType>vmx-07</vssd:VirtualSystemType>\n"
		"      </System>\n");
	snprintf(num, sizeof num, "%u", vm->cpus ? vm->cpus : 1);
	snprintf(name, sizeof name, "%s virtual CPU(s)", num);
	snprintf(addr, sizeof addr, "%u", id++);
	item(&b, (const char *const[]){ "AllocationUnits", "hertz * 10^6",
		"Description", "Number of Virtual CPUs", "ElementName", name,
		"InstanceID", addr, "ResourceType", "3", "VirtualQuantity", num,
		NULL, NULL });
	snprintf(num, sizeof num, "%llu", (unsigned long long)
		 (vm->memory_mb ? vm->memory_mb : 512));
	snprintf(name, sizeof name, "%sMB of memory", num);
	snprintf(addr, sizeof addr, "%u", id++);
	item(&b, (const char *const[]){ "AllocationUnits", "byte * 2^20",
		"Description", "Memory Size", "ElementName", name,
		"InstanceID", addr, "ResourceType", "4", "VirtualQuantity", num,
		NULL, NULL });
	/* one controller per bus the disks use */
	for (size_t c = 0; c < 3; c++) {
		int used = 0;
		for (size_t i = 0; i < vm->ndisks; i++)
			used |= !strcmp(vm->disks[i].bus[0] ? vm->disks[i].bus
							    : "scsi", ctl[c].bus);
		if (!used)
			continue;
		ctl_id[c] = id++;
		snprintf(addr, sizeof addr, "%u", ctl_id[c]);
		item(&b, (const char *const[]){ "Address", "0",
			"Description", ctl[c].name, "ElementName", ctl[c].name,
			"InstanceID", addr, "ResourceSubType", ctl[c].sub,
			"ResourceType", ctl[c].rtype, NULL, NULL });
	}
	for (size_t c = 0; c < 3; c++) {
		unsigned slot = 0;
		for (size_t i = 0; i < vm->ndisks; i++) {
			char host[48], parent[16];
			if (strcmp(vm->disks[i].bus[0] ? vm->disks[i].bus
						       : "scsi", ctl[c].bus))
				continue;
			snprintf(num, sizeof num, "%u", slot++);
			snprintf(name, sizeof name, "Hard Disk %zu", i + 1);
			snprintf(host, sizeof host, "ovf:/disk/vmdisk%zu", i + 1);
			snprintf(parent, sizeof parent, "%u", ctl_id[c]);
			snprintf(addr, sizeof addr, "%u", id++);
			item(&b, (const char *const[]){ "AddressOnParent", num,
				"ElementName", name, "HostResource", host,
				"InstanceID", addr, "Parent", parent,
				"ResourceType", "17", NULL, NULL });
		}
	}
	for (size_t i = 0; i < vm->nnics; i++) {
		snprintf(name, sizeof name, "Network adapter %zu", i + 1);
		snprintf(num2, sizeof num2, "%zu", i + 7);
		snprintf(addr, sizeof addr, "%u", id++);
		item(&b, (const char *const[]){ "Address",
			vm->nics[i].mac[0] ? vm->nics[i].mac : NULL,
			"AddressOnParent", num2, "AutomaticAllocation", "true",
			"Connection", "VM Network", "ElementName", name,
			"InstanceID", addr, "ResourceSubType", vm->nics[i].model,
			"ResourceType", "10", NULL, NULL });
	}
	/* VMware's way to say EFI; VirtualBox reads it too */
	if (vm->efi)
		vmb_buf_puts(&b, "      <vmw:Config ovf:required=\"false\" "
			     "vmw:key=\"firmware\" vmw:value=\"efi\"/>\n");
	vmb_buf_puts(&b, "    </VirtualHardwareSection>\n"
		     "  </VirtualSystem>\n</Envelope>\n");
	if (b.failed) {
		vmb_buf_free(&b);
		return NULL;
	}
	return vmb_buf_detach(&b);
}
