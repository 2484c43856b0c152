/*
 * The "libvirt" hypervisor plugin: `vmb backup REPO libvirt:DOMAIN`.
 *
 * A running domain is read live: a libvirt pull-mode backup exports each
 * disk's point-in-time view over NBD on a private Unix socket, and a new
 * libvirt checkpoint (a dirty bitmap per qcow2 disk) starts at that same
 * instant, so the next backup is an incremental from it: the NBD export
 * then carries the qemu:dirty-bitmap:backup-DISK context, which is
 * exactly what the guest wrote since.  The guest's file systems are
 * frozen through the QEMU guest agent for the instant the backup starts,
 * when the agent answers; otherwise the snapshot says crash-consistent
 * and why.  A shut off domain's images are read directly (their native
 * change tracking applies).
 *
 * The checkpoint chain is the plugin's to keep healthy: each backup
 * records the checkpoint it created and the domain's run (id) in the
 * disk's state; the next one starts an incremental only when that
 * checkpoint still exists and the domain has not been restarted since
 * (writes made while it was off are in no bitmap).  Anything else, or a
 * libvirt refusal, means a full read with a warning.  After a snapshot is
 * written, older checkpoints of the same repository are deleted; after a
 * failed one, the new checkpoint is, so the parent's stays usable.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include "lv.h"

#define NBD_CONNECTIONS 4

struct lv_conn {
	virConnectPtr conn;
	char *uri;
};

struct lv_vm {
	vmb_hv_vm_info info;
	vmb_hv_disk_info disks[LV_MAX_DISKS];
	lv_domain_xml x;
	char *config;
};

struct lv_job {
	vmb_hv_backup_job b;
	vmb_hv_backup_disk disks[LV_MAX_DISKS];
	lv_domain_xml x;
	virDomainPtr dom;
	char *config;
	int running;        /* a pull-mode backup job is active */
	char checkpoint[128]; /* created by this backup, or "" */
	char prefix[64];    /* this repository's checkpoint names */
	char dir[PATH_MAX]; /* scratch folder (socket, scratch images) */
	char note[512];
};

/* libvirt prints errors on stderr unless told otherwise */
static void quiet(void *opaque, virErrorPtr err)
{
	(void)opaque;
	(void)err;
}

static const char *lverr(void)
{
	const char *m = virGetLastErrorMessage();
	return m && *m ? m : "unknown libvirt error";
}

static int lv_load(void)
{
	if (virInitialize() < 0)
		return vmb_error_set(VMB_EGENERIC, "libvirt: cannot initialize "
				     "the library");
	virSetErrorFunc(NULL, quiet);
	return 0;
}

static int lv_open(const char *uri, void **handle)
{
	struct lv_conn *c = calloc(1, sizeof *c);
	char *u;
	if (!c)
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	c->conn = virConnectOpen(uri);
	if (!c->conn) {
		int rc = vmb_error_set(VMB_EIO, "libvirt: cannot connect to %s: "
				       "%s", uri ? uri : "the default URI",
				       lverr());
		free(c);
		return rc;
	}
	virConnSetErrorFunc(c->conn, NULL, quiet);
	u = virConnectGetURI(c->conn);
	c->uri = u ? u : strdup(uri ? uri : "?");
	*handle = c;
	return 0;
}

static void lv_close(void *handle)
{
	struct lv_conn *c = handle;
	if (!c)
		return;
	virConnectClose(c->conn);
	free(c->uri);
	free(c);
}

static int lookup(struct lv_conn *c, const char *vm, virDomainPtr *out)
{
	virDomainPtr d = virDomainLookupByName(c->conn, vm);
	if (!d && strlen(vm) == 36)
		d = virDomainLookupByUUIDString(c->conn, vm);
	if (!d) {
		virErrorPtr e = virGetLastError();
		if (e && e->code == VIR_ERR_NO_DOMAIN)
			return vmb_error_set(VMB_ENOTFOUND, "libvirt: no domain "
					     "'%s' on %s", vm, c->uri);
		return vmb_error_set(VMB_EIO, "libvirt: looking up domain '%s' "
				     "on %s: %s", vm, c->uri, lverr());
	}
	*out = d;
	return 0;
}

static int dom_state(virDomainPtr d)
{
	int st, reason;
	if (virDomainGetState(d, &st, &reason, 0) < 0)
		return VMB_HV_STATE_UNKNOWN;
	switch (st) {
	case VIR_DOMAIN_RUNNING:
	case VIR_DOMAIN_BLOCKED:
		return VMB_HV_STATE_RUNNING;
	case VIR_DOMAIN_PAUSED:
		return VMB_HV_STATE_PAUSED;
	case VIR_DOMAIN_PMSUSPENDED:
		return VMB_HV_STATE_SAVED;
	case VIR_DOMAIN_SHUTOFF:
	case VIR_DOMAIN_SHUTDOWN:
	case VIR_DOMAIN_CRASHED:
		return VMB_HV_STATE_OFF;
	default:
		return VMB_HV_STATE_UNKNOWN;
	}
}

/*
 * The live XML (disks as QEMU has them) and the configuration to store:
 * the persistent definition without host-specific runtime details, which
 * is what another host can define.
 */
static int get_xml(virDomainPtr d, lv_domain_xml *x, char **config)
{
	char *live = virDomainGetXMLDesc(d, 0);
	int rc;
	if (!live)
		return vmb_error_set(VMB_EIO, "libvirt: cannot read the XML of "
				     "domain '%s': %s", virDomainGetName(d),
				     lverr());
	rc = lv_xml_parse(live, x);
	if (rc) {
		free(live);
		return rc;
	}
	*config = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE |
				      VIR_DOMAIN_XML_MIGRATABLE);
	if (!*config)
		*config = live;
	else
		free(live);
	return 0;
}

static void lv_info_free(void *handle, vmb_hv_vm_info *info)
{
	struct lv_vm *v = (struct lv_vm *)info;
	(void)handle;
	if (!v)
		return;
	lv_xml_free(&v->x);
	free(v->config);
	free(v);
}

static int lv_describe(void *handle, const char *vm, vmb_hv_vm_info **out)
{
	struct lv_conn *c = handle;
	struct lv_vm *v;
	virDomainPtr d;
	int rc = lookup(c, vm, &d);
	if (rc)
		return rc;
	v = calloc(1, sizeof *v);
	if (!v) {
		virDomainFree(d);
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	}
	rc = get_xml(d, &v->x, &v->config);
	if (rc) {
		virDomainFree(d);
		free(v);
		return rc;
	}
	v->info.struct_size = sizeof v->info;
	v->info.name = v->x.name;
	v->info.uuid = v->x.uuid;
	v->info.state = dom_state(d);
	v->info.ndisks = v->x.ndisks;
	v->info.disks = v->disks;
	v->info.config_format = "libvirt-xml";
	v->info.config = v->config;
	for (size_t i = 0; i < v->x.ndisks; i++) {
		virDomainBlockInfo bi;
		v->disks[i].name = v->x.disks[i].target;
		v->disks[i].path = v->x.disks[i].path;
		v->disks[i].format = v->x.disks[i].format;
		if (virDomainGetBlockInfo(d, v->x.disks[i].target, &bi, 0) == 0)
			v->disks[i].size = bi.capacity;
	}
	virDomainFree(d);
	*out = &v->info;
	return 0;
}

static int lv_list(void *handle, vmb_hv_vm_fn fn, void *payload)
{
	struct lv_conn *c = handle;
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(c->conn, &doms, 0);
	if (n < 0)
		return vmb_error_set(VMB_EIO, "libvirt: cannot list domains on "
				     "%s: %s", c->uri, lverr());
	for (int i = 0, stop = 0; i < n; i++) {
		if (!stop)
			stop = fn(virDomainGetName(doms[i]), dom_state(doms[i]),
				  payload);
		virDomainFree(doms[i]);
	}
	free(doms);
	return 0;
}

/* ---- backups ---- */

/* Formats the native readers take for a shut off domain. */
static int readable_format(const char *f)
{
	return f && (!strcmp(f, "raw") || !strcmp(f, "qcow2") ||
		     !strcmp(f, "vmdk") || !strcmp(f, "vdi"));
}

static void job_free(struct lv_job *j)
{
	for (size_t i = 0; i < j->b.ndisks; i++)
		vmb_disk_close(j->disks[i].disk);
	if (j->dir[0]) {
		char p[PATH_MAX + 64];
		for (size_t i = 0; i < j->x.ndisks; i++) {
			snprintf(p, sizeof p, "%s/%s.scratch", j->dir,
				 j->x.disks[i].target);
			unlink(p);
		}
		snprintf(p, sizeof p, "%s/nbd.sock", j->dir);
		unlink(p);
		rmdir(j->dir);
	}
	lv_xml_free(&j->x);
	free(j->config);
	if (j->dom)
		virDomainFree(j->dom);
	free(j);
}

static int backup_off(struct lv_job *j)
{
	for (size_t i = 0; i < j->x.ndisks; i++) {
		lv_disk *d = &j->x.disks[i];
		const char *probed;
		int rc;
		if (!d->path || (d->type && strcmp(d->type, "file") &&
				 strcmp(d->type, "block")))
			return vmb_error_set(VMB_ENOTSUP, "libvirt: disk %s of %s "
					     "is a %s disk, which vmb can read "
					     "only while the domain runs",
					     d->target, j->x.name,
					     d->type ? d->type : "sourceless");
		if (!readable_format(d->format ? d->format : "raw"))
			return vmb_error_set(VMB_ENOTSUP, "libvirt: disk %s of %s "
					     "(%s) is in format '%s', which vmb "
					     "cannot read", d->target, j->x.name,
					     d->path, d->format);
		rc = vmb_disk_probe(d->path, &probed);
		if (rc)
			return rc;
		if (strcmp(probed, d->format ? d->format : "raw") != 0)
			return vmb_error_set(VMB_EFORMAT, "libvirt: disk %s of %s "
					     "(%s) is declared %s but holds %s",
					     d->target, j->x.name, d->path,
					     d->format ? d->format : "raw",
					     probed);
	}
	for (size_t i = 0; i < j->x.ndisks; i++) {
		lv_disk *d = &j->x.disks[i];
		int rc = vmb_disk_open(d->path, 0, &j->disks[i].disk);
		if (rc)
			return rc;
		j->disks[i].name = d->target;
		j->disks[i].path = d->path;
		j->b.ndisks = i + 1;
	}
	j->b.consistency = "powered-off";
	return 0;
}

static int checkpoint_exists(virDomainPtr dom, const char *name)
{
	virDomainCheckpointPtr cp = virDomainCheckpointLookupByName(dom, name,
								    0);
	if (!cp)
		return 0;
	virDomainCheckpointFree(cp);
	return 1;
}

/* XML for virDomainBackupBegin: a pull backup of every disk, each an
 * incremental from @base (if it has a bitmap) or full. */
static char *backup_xml(struct lv_job *j, const char *base,
			const int *incr)
{
	size_t cap = 4096 + j->x.ndisks * (2 * PATH_MAX + 256), n = 0;
	char *x = malloc(cap);
	if (!x)
		return NULL;
	n += (size_t)snprintf(x + n, cap - n, "<domainbackup mode='pull'>");
	if (base)
		n += (size_t)snprintf(x + n, cap - n,
				      "<incremental>%s</incremental>", base);
	n += (size_t)snprintf(x + n, cap - n, "<server transport='unix' "
			      "socket='%s/nbd.sock'/><disks>", j->dir);
	for (size_t i = 0; i < j->x.ndisks; i++)
		n += (size_t)snprintf(x + n, cap - n, "<disk name='%s' "
				      "backup='yes' type='file'%s><scratch "
				      "file='%s/%s.scratch'/></disk>",
				      j->x.disks[i].target,
				      base && !incr[i] ?
				      " backupmode='full'" : "",
				      j->dir, j->x.disks[i].target);
	snprintf(x + n, cap - n, "</disks></domainbackup>");
	return x;
}

/* XML for the checkpoint: a bitmap on each qcow2 disk. */
static char *checkpoint_xml(struct lv_job *j, const int *bm)
{
	size_t cap = 1024 + j->x.ndisks * 128, n = 0;
	char *x = malloc(cap);
	if (!x)
		return NULL;
	n += (size_t)snprintf(x + n, cap - n, "<domaincheckpoint><name>%s"
			      "</name><description>vmb backup</description>"
			      "<disks>", j->checkpoint);
	for (size_t i = 0; i < j->x.ndisks; i++)
		n += (size_t)snprintf(x + n, cap - n, "<disk name='%s' "
				      "checkpoint='%s'/>",
				      j->x.disks[i].target,
				      bm[i] ? "bitmap" : "no");
	snprintf(x + n, cap - n, "</disks></domaincheckpoint>");
	return x;
}

/* Which parent disk state belongs to disk @target. */
static const char *parent_state(const vmb_hv_backup_options *o,
				const char *target)
{
	for (size_t i = 0; o && i < o->nparent; i++)
		if (o->parent_disks[i].name &&
		    !strcmp(o->parent_disks[i].name, target))
			return o->parent_disks[i].state;
	return NULL;
}

static int begin(struct lv_job *j, const char *base, const int *incr,
		 const int *bm, int with_checkpoint)
{
	char *bx = backup_xml(j, base, incr);
	char *cx = with_checkpoint ? checkpoint_xml(j, bm) : NULL;
	int rc = 0;
	if (!bx || (with_checkpoint && !cx))
		rc = vmb_error_set(VMB_ENOMEM, "out of memory");
	else if (virDomainBackupBegin(j->dom, bx, cx, 0) < 0)
		rc = vmb_error_set(VMB_EIO, "%s", lverr());
	free(bx);
	free(cx);
	return rc;
}

static int backup_running(struct lv_conn *c, struct lv_job *j,
			  const vmb_hv_backup_options *o)
{
	int incr[LV_MAX_DISKS] = { 0 }, bm[LV_MAX_DISKS] = { 0 };
	char base[128] = "", run[32];
	int frozen = 0, rc, any_bm = 0, any_incr = 0;
	uint8_t rnd[4];
	(void)c;

	snprintf(run, sizeof run, "%d", j->x.id);
	/* a private folder for the socket and the scratch images, owned by
	 * the user QEMU runs as */
	snprintf(j->dir, sizeof j->dir, "%s/vmb-libvirt-XXXXXX",
		 o->scratch_dir ? o->scratch_dir :
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(j->dir)) {
		rc = vmb_error_set(VMB_EIO, "libvirt: cannot make a scratch "
				   "folder in %s: %s", o->scratch_dir ?
				   o->scratch_dir : "/tmp", strerror(errno));
		j->dir[0] = 0;
		return rc;
	}
	if (j->x.dac_uid >= 0 && chown(j->dir, (uid_t)j->x.dac_uid,
				      (gid_t)j->x.dac_gid) != 0)
		vmb_log(VMB_LOG_WARN, "libvirt: cannot give %s to uid %ld: %s",
			j->dir, j->x.dac_uid, strerror(errno));

	/* the incremental base: the parent's checkpoint, if every part of
	 * the chain is still what the parent saw */
	for (size_t i = 0; i < j->x.ndisks; i++) {
		const char *st = parent_state(o, j->x.disks[i].target);
		char ck[128], dom[64], prun[32];
		bm[i] = j->x.disks[i].format &&
			!strcmp(j->x.disks[i].format, "qcow2");
		any_bm |= bm[i];
		if ((o->flags & VMB_HV_BACKUP_FULL) || !st || !bm[i] ||
		    lv_state_get(st, "checkpoint", ck, sizeof ck) != 0)
			continue;
		if (lv_state_get(st, "domain", dom, sizeof dom) != 0 ||
		    !j->x.uuid || strcmp(dom, j->x.uuid) != 0) {
			vmb_log(VMB_LOG_WARN, "libvirt: the last snapshot of %s "
				"is of another domain of that name: disk %s is "
				"read in full", j->x.name, j->x.disks[i].target);
			continue;
		}
		if (lv_state_get(st, "run", prun, sizeof prun) != 0 ||
		    strcmp(prun, run) != 0) {
			vmb_log(VMB_LOG_WARN, "libvirt: domain %s was restarted "
				"since the last backup (writes made while it was "
				"off are in no dirty bitmap): disk %s is read "
				"in full", j->x.name, j->x.disks[i].target);
			continue;
		}
		if (!checkpoint_exists(j->dom, ck)) {
			vmb_log(VMB_LOG_WARN, "libvirt: checkpoint %s of domain "
				"%s is gone: disk %s is read in full", ck,
				j->x.name, j->x.disks[i].target);
			continue;
		}
		if (base[0] && strcmp(base, ck) != 0) {
			vmb_log(VMB_LOG_WARN, "libvirt: disks of %s recorded "
				"different checkpoints: disk %s is read in full",
				j->x.name, j->x.disks[i].target);
			continue;
		}
		snprintf(base, sizeof base, "%s", ck);
		incr[i] = 1;
		any_incr = 1;
	}
	if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
		memset(rnd, 0, sizeof rnd);
	snprintf(j->checkpoint, sizeof j->checkpoint, "%s%lld-%02x%02x%02x%02x",
		 j->prefix, (long long)time(NULL), rnd[0], rnd[1], rnd[2],
		 rnd[3]);

	/* quiesce for the instant the backup starts */
	if (virDomainFSFreeze(j->dom, NULL, 0, 0) >= 0) {
		frozen = 1;
	} else {
		snprintf(j->note, sizeof j->note, "file systems not frozen: %s",
			 lverr());
		if (o->flags & VMB_HV_BACKUP_QUIESCE)
			return vmb_error_set(VMB_EIO, "libvirt: cannot quiesce "
					     "domain %s (--quiesce): %s",
					     j->x.name, lverr());
	}
	rc = begin(j, any_incr ? base : NULL, incr, bm, any_bm);
	if (rc && any_incr) {
		vmb_log(VMB_LOG_WARN, "libvirt: an incremental backup of %s "
			"from checkpoint %s was refused (%s); reading "
			"everything", j->x.name, base, vmb_error_message());
		memset(incr, 0, sizeof incr);
		any_incr = 0;
		base[0] = 0;
		rc = begin(j, NULL, incr, bm, any_bm);
	}
	if (rc && any_bm) {
		vmb_log(VMB_LOG_WARN, "libvirt: a checkpoint for %s was "
			"refused (%s); backing up without one, so the next "
			"backup reads everything", j->x.name,
			vmb_error_message());
		j->checkpoint[0] = 0;
		rc = begin(j, NULL, incr, bm, 0);
	}
	if (!any_bm)
		j->checkpoint[0] = 0;
	if (frozen && virDomainFSThaw(j->dom, NULL, 0, 0) < 0)
		vmb_log(VMB_LOG_WARN, "libvirt: thawing %s: %s", j->x.name,
			lverr());
	if (rc)
		return vmb_error_set(VMB_EIO, "libvirt: cannot start a backup of "
				     "domain %s: %s", j->x.name,
				     vmb_error_message());
	j->running = 1;
	j->b.consistency = frozen ? "frozen" : "crash-consistent";
	j->b.consistency_note = frozen ? NULL : j->note;

	for (size_t i = 0; i < j->x.ndisks; i++) {
		char sock[PATH_MAX + 16], ctx[200], state[512];
		const char *target = j->x.disks[i].target;
		snprintf(sock, sizeof sock, "%s/nbd.sock", j->dir);
		snprintf(ctx, sizeof ctx, "qemu:dirty-bitmap:backup-%s", target);
		if (j->checkpoint[0] && bm[i])
			snprintf(state, sizeof state, "{\"checkpoint\":\"%s\","
				 "\"domain\":\"%s\",\"run\":\"%s\"}",
				 j->checkpoint, j->x.uuid ? j->x.uuid : "",
				 run);
		else
			snprintf(state, sizeof state, "{\"domain\":\"%s\"}",
				 j->x.uuid ? j->x.uuid : "");
		rc = lv_nbd_disk_open(sock, target, NBD_CONNECTIONS,
				      incr[i] ? ctx : NULL,
				      incr[i] ? base : NULL, state,
				      &j->disks[i].disk);
		if (rc)
			return rc;
		j->disks[i].name = target;
		j->disks[i].path = j->x.disks[i].path;
		j->b.ndisks = i + 1;
	}
	return 0;
}

/* Stop the pull-mode job (the NBD server and scratch files go). */
static void stop_job(struct lv_job *j)
{
	for (size_t i = 0; i < j->b.ndisks; i++) {
		vmb_disk_close(j->disks[i].disk);
		j->disks[i].disk = NULL;
	}
	if (j->running && virDomainAbortJob(j->dom) < 0)
		vmb_log(VMB_LOG_WARN, "libvirt: ending the backup job of %s: %s",
			j->x.name, lverr());
	j->running = 0;
}

static int lv_backup_begin(void *handle, const char *vm,
			   const vmb_hv_backup_options *o,
			   vmb_hv_backup_job **out)
{
	struct lv_conn *c = handle;
	struct lv_job *j = calloc(1, sizeof *j);
	int rc, st;
	if (!j)
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	rc = lookup(c, vm, &j->dom);
	if (rc) {
		free(j);
		return rc;
	}
	rc = get_xml(j->dom, &j->x, &j->config);
	if (rc)
		goto fail;
	if (!j->x.ndisks) {
		rc = vmb_error_set(VMB_EINVAL, "libvirt: domain %s has no "
				   "disks", j->x.name);
		goto fail;
	}
	snprintf(j->prefix, sizeof j->prefix, "vmb-%.8s-",
		 o && o->repo_id ? o->repo_id : "local");
	j->b.struct_size = sizeof j->b;
	j->b.vm = j->x.name;
	j->b.disks = j->disks;
	j->b.config_format = "libvirt-xml";
	j->b.config = j->config;
	j->b.plugin_data = j;
	st = dom_state(j->dom);
	if (st == VMB_HV_STATE_OFF)
		rc = backup_off(j);
	else if (st == VMB_HV_STATE_RUNNING || st == VMB_HV_STATE_PAUSED)
		rc = backup_running(c, j, o);
	else
		rc = vmb_error_set(VMB_ENOTSUP, "libvirt: domain %s is %s: "
				   "neither running nor shut off",
				   j->x.name, vmb_hv_state_name(st));
	if (rc)
		goto fail;
	*out = &j->b;
	return 0;
fail:
	{
		int e = vmb_error_code();
		int began = j->running;
		char msg[1024];
		snprintf(msg, sizeof msg, "%s", vmb_error_message());
		stop_job(j);
		if (began && j->checkpoint[0]) {
			/* started but not handed over: undo the checkpoint */
			virDomainCheckpointPtr cp =
				virDomainCheckpointLookupByName(j->dom,
								j->checkpoint, 0);
			if (cp) {
				virDomainCheckpointDelete(cp, 0);
				virDomainCheckpointFree(cp);
			}
		}
		job_free(j);
		vmb_error_set(e ? e : rc, "%s", msg);
	}
	return rc;
}

/* Delete this repository's checkpoints of the domain except @keep. */
static void prune_checkpoints(struct lv_job *j, const char *keep)
{
	virDomainCheckpointPtr *cps = NULL;
	int n = virDomainListAllCheckpoints(j->dom, &cps, 0);
	if (n < 0) {
		vmb_log(VMB_LOG_WARN, "libvirt: listing checkpoints of %s: %s",
			j->x.name, lverr());
		return;
	}
	/* oldest first is not promised: delete leaves before parents does
	 * not matter, libvirt merges each bitmap into its parent */
	for (int i = 0; i < n; i++) {
		const char *nm = virDomainCheckpointGetName(cps[i]);
		if (nm && !strncmp(nm, j->prefix, strlen(j->prefix)) &&
		    (!keep || strcmp(nm, keep) != 0) &&
		    virDomainCheckpointDelete(cps[i], 0) < 0)
			vmb_log(VMB_LOG_WARN, "libvirt: deleting checkpoint %s "
				"of %s: %s", nm, j->x.name, lverr());
		virDomainCheckpointFree(cps[i]);
	}
	free(cps);
}

static int lv_backup_end(void *handle, vmb_hv_backup_job *b, int committed)
{
	struct lv_job *j = b ? b->plugin_data : NULL;
	(void)handle;
	if (!j)
		return 0;
	if (j->running) {
		stop_job(j);
		if (committed && j->checkpoint[0])
			prune_checkpoints(j, j->checkpoint);
		else if (j->checkpoint[0]) {
			virDomainCheckpointPtr cp =
				virDomainCheckpointLookupByName(j->dom,
								j->checkpoint, 0);
			if (cp) {
				if (virDomainCheckpointDelete(cp, 0) < 0)
					vmb_log(VMB_LOG_WARN, "libvirt: deleting "
						"checkpoint %s: %s",
						j->checkpoint, lverr());
				virDomainCheckpointFree(cp);
			}
		}
	}
	job_free(j);
	return 0;
}

/* ---- VM snapshots (libvirt's own) ---- */

static int lv_snapshot_create(void *handle, const char *vm, const char *name)
{
	virDomainPtr d;
	virDomainSnapshotPtr s;
	char xml[512];
	int rc = lookup(handle, vm, &d);
	if (rc)
		return rc;
	for (const char *p = name; *p; p++)
		if (*p == '<' || *p == '&' || *p == '\'' || *p == '"')
			return vmb_error_set(VMB_EINVAL, "libvirt: bad snapshot "
					     "name '%s'", name);
	snprintf(xml, sizeof xml, "<domainsnapshot><name>%s</name>"
		 "</domainsnapshot>", name);
	s = virDomainSnapshotCreateXML(d, xml, 0);
	if (!s)
		rc = vmb_error_set(VMB_EIO, "libvirt: snapshot %s of %s: %s",
				   name, vm, lverr());
	else
		virDomainSnapshotFree(s);
	virDomainFree(d);
	return rc;
}

static int lv_snapshot_list(void *handle, const char *vm,
			    vmb_hv_snapshot_fn fn, void *payload)
{
	virDomainPtr d;
	virDomainSnapshotPtr *ss = NULL;
	int rc = lookup(handle, vm, &d), n;
	if (rc)
		return rc;
	n = virDomainListAllSnapshots(d, &ss, 0);
	if (n < 0) {
		rc = vmb_error_set(VMB_EIO, "libvirt: snapshots of %s: %s", vm,
				   lverr());
		n = 0;
	}
	for (int i = 0, stop = 0; i < n; i++) {
		char *x = stop ? NULL : virDomainSnapshotGetXMLDesc(ss[i], 0);
		const char *t = x ? strstr(x, "<creationTime>") : NULL;
		long long created = t ? strtoll(t + 14, NULL, 10) : 0;
		free(x);
		if (!stop)
			stop = fn(virDomainSnapshotGetName(ss[i]), created,
				  payload);
		virDomainSnapshotFree(ss[i]);
	}
	free(ss);
	virDomainFree(d);
	return rc;
}

static int snapshot_do(void *handle, const char *vm, const char *name,
		       int revert)
{
	virDomainPtr d = NULL;
	virDomainSnapshotPtr s;
	int rc = lookup(handle, vm, &d);
	if (rc)
		return rc;
	s = virDomainSnapshotLookupByName(d, name, 0);
	if (!s) {
		virDomainFree(d);
		return vmb_error_set(VMB_ENOTFOUND, "libvirt: domain %s has no "
				     "snapshot %s", vm, name);
	}
	if ((revert ? virDomainRevertToSnapshot(s, 0) :
		      virDomainSnapshotDelete(s, 0)) < 0)
		rc = vmb_error_set(VMB_EIO, "libvirt: %s snapshot %s of %s: %s",
				   revert ? "reverting to" : "deleting", name,
				   vm, lverr());
	virDomainSnapshotFree(s);
	virDomainFree(d);
	return rc;
}

static int lv_snapshot_revert(void *handle, const char *vm, const char *name)
{
	return snapshot_do(handle, vm, name, 1);
}

static int lv_snapshot_delete(void *handle, const char *vm, const char *name)
{
	return snapshot_do(handle, vm, name, 0);
}

/* ---- define a restored domain ---- */

static int lv_define(void *handle, const vmb_hv_define_request *req,
		     char **name)
{
	struct lv_conn *c = handle;
	char *xml = NULL;
	virDomainPtr d;
	int rc;
	if (req->config_format && *req->config_format &&
	    strcmp(req->config_format, "libvirt-xml") != 0)
		return vmb_error_set(VMB_ENOTSUP, "libvirt: cannot define a VM "
				     "from a '%s' configuration",
				     req->config_format);
	rc = lv_xml_rewrite(req, &xml);
	if (rc)
		return rc;
	d = virDomainDefineXML(c->conn, xml);
	free(xml);
	if (!d)
		return vmb_error_set(VMB_EIO, "libvirt: cannot define the domain "
				     "on %s: %s", c->uri, lverr());
	*name = strdup(virDomainGetName(d));
	virDomainFree(d);
	return *name ? 0 : vmb_error_set(VMB_ENOMEM, "out of memory");
}

/* ---- instant recovery: start, block pull ---- */

static int lv_start(void *handle, const char *vm)
{
	virDomainPtr d = NULL;
	int rc = lookup(handle, vm, &d);
	if (rc)
		return rc;
	if (virDomainCreate(d) < 0)
		rc = vmb_error_set(VMB_EIO, "libvirt: cannot start %s: %s", vm,
				   lverr());
	virDomainFree(d);
	return rc;
}

/* The running domain's disks (live XML). */
static int live_disks(virDomainPtr d, const char *vm, lv_domain_xml *x)
{
	char *xml = virDomainGetXMLDesc(d, 0);
	int rc;
	if (!xml)
		return vmb_error_set(VMB_EIO, "libvirt: XML of %s: %s", vm,
				     lverr());
	rc = lv_xml_parse(xml, x);
	free(xml);
	return rc;
}

static int lv_pull_start(void *handle, const char *vm)
{
	virDomainPtr d;
	lv_domain_xml x;
	int rc = lookup(handle, vm, &d);
	if (rc)
		return rc;
	memset(&x, 0, sizeof x);
	rc = live_disks(d, vm, &x);
	/* $VMB_LIBVIRT_PULL_MIBS: a bandwidth cap (MiB/s) for the copy, so
	 * it leaves the guest and the host room; unset or 0: no cap */
	const char *bw_env = getenv("VMB_LIBVIRT_PULL_MIBS");
	unsigned long bw = bw_env ? strtoul(bw_env, NULL, 10) : 0;
	/* a pull copies everything the backing chain holds into the top
	 * image and then drops the chain; QEMU switches over atomically, so
	 * the guest never sees a half-copied disk */
	for (size_t i = 0; !rc && i < x.ndisks; i++)
		if (virDomainBlockPull(d, x.disks[i].target, bw, 0) < 0)
			rc = vmb_error_set(VMB_EIO, "libvirt: block pull of "
					   "%s on %s: %s", x.disks[i].target,
					   vm, lverr());
	lv_xml_free(&x);
	virDomainFree(d);
	return rc;
}

static int lv_pull_wait(void *handle, const char *vm, vmb_progress_fn fn,
			void *payload)
{
	virDomainPtr d;
	lv_domain_xml x;
	int rc = lookup(handle, vm, &d);
	if (rc)
		return rc;
	memset(&x, 0, sizeof x);
	rc = live_disks(d, vm, &x);
	for (;;) {
		unsigned long long cur = 0, end = 0;
		int running = 0;
		for (size_t i = 0; !rc && i < x.ndisks; i++) {
			virDomainBlockJobInfo info;
			int r = virDomainGetBlockJobInfo(d, x.disks[i].target,
							 &info, 0);
			if (r < 0)
				rc = vmb_error_set(VMB_EIO, "libvirt: block job "
						   "of %s on %s: %s",
						   x.disks[i].target, vm,
						   lverr());
			else if (r == 1) {
				running = 1;
				cur += info.cur;
				end += info.end;
			}
		}
		if (rc || !running)
			break;
		if (fn) {
			vmb_progress p;
			memset(&p, 0, sizeof p);
			p.phase = "copy";
			p.bytes_done = cur;
			p.bytes_total = end;
			if (fn(&p, payload)) {
				rc = vmb_error_set(VMB_ECANCELED, "libvirt: "
						   "stopped waiting for the "
						   "copy of %s (it goes on)",
						   vm);
				break;
			}
		}
		usleep(100 * 1000);
	}
	/* the jobs are gone: did every disk lose its backing? */
	if (!rc) {
		char *xml = virDomainGetXMLDesc(d, 0);
		if (!xml)
			rc = vmb_error_set(VMB_EIO, "libvirt: XML of %s: %s",
					   vm, lverr());
		else if (strstr(xml, "protocol='nbd'") ||
			 strstr(xml, "protocol=\"nbd\""))
			rc = vmb_error_set(VMB_EIO, "libvirt: the copy of %s "
					   "ended but a disk still reads from "
					   "the NBD server (it runs on its "
					   "overlay)", vm);
		free(xml);
	}
	lv_xml_free(&x);
	virDomainFree(d);
	return rc;
}

static const vmb_hv_plugin libvirt_plugin = {
	.struct_size = sizeof(vmb_hv_plugin),
	.api_version = VMB_HV_API_VERSION,
	.name = "libvirt",
	.version = "1",
	.description = "libvirt domains: live pull-mode backups with "
		       "checkpoints, shut off domains, define on restore",
	.features = VMB_HV_F_LIST | VMB_HV_F_SNAPSHOT | VMB_HV_F_DEFINE |
		    VMB_HV_F_LIVE | VMB_HV_F_CBT | VMB_HV_F_QUIESCE |
		    VMB_HV_F_INSTANT,
	.load = lv_load,
	.open = lv_open,
	.close = lv_close,
	.describe = lv_describe,
	.vm_info_free = lv_info_free,
	.backup_begin = lv_backup_begin,
	.backup_end = lv_backup_end,
	.list = lv_list,
	.snapshot_create = lv_snapshot_create,
	.snapshot_list = lv_snapshot_list,
	.snapshot_revert = lv_snapshot_revert,
	.snapshot_delete = lv_snapshot_delete,
	.define = lv_define,
	.start = lv_start,
	.pull_start = lv_pull_start,
	.pull_wait = lv_pull_wait,
};

VMB_HV_REGISTER_PLUGIN(libvirt, libvirt_plugin)
