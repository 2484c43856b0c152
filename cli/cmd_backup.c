/* vmb backup */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb backup - back up disk images as a new snapshot\n"
"\n"
"SYNOPSIS\n"
"    vmb backup REPO SOURCE... [--vm NAME] [--tag TAG]... [--full]\n"
"               [--connect URI] [--quiesce] [--crash-consistent] [--live]\n"
"               [--dry-run] [--json] [--threads N]\n"
"    vmb backup REPO --each SOURCE... | --each-from FILE [options]\n"
"\n"
"DESCRIPTION\n"
"    Reads each SOURCE and stores all its disks in REPO as one snapshot.\n"
"    A SOURCE is a disk image file (raw, qcow2, VMDK or VDI, recognised\n"
"    by content, with its backing chain; 'file:PATH' says so explicitly)\n"
"    or PLUGIN:VM for a hypervisor plugin:\n"
"\n"
"    libvirt:DOMAIN  a libvirt domain, running or shut off.  A running\n"
"                    domain is read live through a libvirt pull-mode\n"
"                    backup over NBD; its guest file systems are frozen\n"
"                    when the QEMU guest agent answers (the snapshot\n"
"                    records 'frozen' or 'crash-consistent' and why).  A\n"
"                    libvirt checkpoint per backup makes the next one\n"
"                    read only what the guest wrote (cbt: libvirt); a\n"
"                    missing or broken checkpoint means a full read with\n"
"                    a warning, never a failed or wrong backup.  A shut\n"
"                    off domain's images are read directly.  The domain\n"
"                    XML is stored in the snapshot.\n"
"\n"
"    vbox:PATH       a VirtualBox VM: its .vbox settings file or the\n"
"                    folder holding one (such a folder is recognised\n"
"                    without the prefix too).  Each disk is read with\n"
"                    its chain of differencing images, checked against\n"
"                    the media registry (VDI uuids and parent links).\n"
"                    Where VBoxManage is on PATH it is asked for the\n"
"                    VM's state: a running VM is refused unless\n"
"                    --crash-consistent or --live is given.\n"
"\n"
"    With --each every SOURCE is a VM of its own: one snapshot per VM,\n"
"    named from its configuration (a classroom of VM folders in one\n"
"    command).  A SOURCE with * ? or [ is expanded by vmb too, after its\n"
"    prefix, so 'vbox:/lab/*' works quoted.  A progress line per VM goes\n"
"    to stderr; a VM that fails (a missing disk, unreadable settings, a\n"
"    running VM) is reported and the others still go; the exit status is\n"
"    1 at the end, naming each failed one.\n"
"\n"
"    Only allocated data is read; holes and zero blocks are\n"
"    recorded as markers.  Data is cut into fixed chunks on the guest's\n"
"    offsets, deduplicated against everything already in the repository,\n"
"    compressed and encrypted.  The parent is the latest snapshot of the\n"
"    same VM: chunks whose fingerprint did not change are not hashed,\n"
"    compressed or uploaded again.  The snapshot becomes visible only\n"
"    when everything it needs is stored, so an interrupted backup leaves\n"
"    no half snapshot behind.\n"
"\n"
"OPTIONS\n"
"    --vm NAME      VM the snapshot belongs to (default: the domain's\n"
"                   name, or the first disk's file name without\n"
"                   extension)\n"
"    --connect URI  hypervisor connection (default: LIBVIRT_DEFAULT_URI,\n"
"                   else libvirt's own default)\n"
"    --quiesce      fail unless the guest's file systems can be frozen\n"
"    --crash-consistent\n"
"                   back up a running VM that cannot be frozen or\n"
"                   snapshotted (the snapshot records crash-consistent)\n"
"    --live         vbox: take a VirtualBox snapshot of a running VM,\n"
"                   back up the images it made read-only, delete it\n"
"    --tag TAG      attach a tag (repeatable)\n"
"    --full         ignore the parent snapshot (read and hash all)\n"
"    --threads N    worker threads (default: one per core)\n"
"    --dry-run      start the backup and say what it would do (the\n"
"                   commands a plugin would run, the disks it would\n"
"                   read), then stop: nothing is stored, nothing changed\n"
"    --each         one snapshot per SOURCE (see above)\n"
"    --each-from FILE\n"
"                   --each, with the sources read from FILE, one per\n"
"                   line ('-': stdin; blank lines and # comments skipped)\n"
"    --json         print one JSON object when done, with snapshot, vm,\n"
"                   bytes_total, bytes_read, bytes_allocated, bytes_new,\n"
"                   bytes_stored, chunks_total, chunks_new, seconds and\n"
"                   cbt; with --each one object {\"vms\":[...],\"ok\":N,\n"
"                   \"failed\":N,\"failed_sources\":[...],\"seconds\":S}\n"
"                   whose vms holds one such object per VM (with\n"
"                   \"source\"), or {\"source\",\"vm\",\"error\"} for a\n"
"                   VM that failed\n"
"\n"
"COUNTERS\n"
"    bytes_total      virtual size of all disks\n"
"    bytes_read       data bytes read from the sources (holes, zero\n"
"                     and unchanged regions are not read)\n"
"    bytes_allocated  the chunks those reads fell in, counted whole\n"
"                     (read <= allocated)\n"
"    bytes_new        the part of bytes_allocated in chunks the\n"
"                     repository did not have yet (new <= allocated;\n"
"                     a hole inside a new chunk counts, so new may\n"
"                     exceed read)\n"
"    bytes_stored     bytes written to the target after compression and\n"
"                     encryption, manifest and index included\n"
"\n"
"ENVIRONMENT\n"
"    VMB_PLUGIN_DIR  folder of the hypervisor plugins (NAME.so)\n"
"\n"
"EXIT STATUS\n"
"    0 when the snapshot was written, 1 on any failure (nothing is\n"
"    written to REPO when a source cannot be opened).  With --each: 0\n"
"    when every VM was backed up, else 1 after all the others.\n";

static int backup_main(int argc, char **argv, const char **tags);

int cmd_backup(int argc, char **argv)
{
	/* room for every --tag; freed here whichever way backup_main ends */
	const char **tags = calloc((size_t)argc, sizeof *tags);
	int rc;
	if (!tags)
		return EXIT_ERR;
	rc = backup_main(argc, argv, tags);
	free(tags);
	return rc;
}

/* ---- --each: sources, expanded ---- */

struct srclist {
	char **v;
	size_t n, cap;
};

static int src_add(struct srclist *l, const char *s, size_t len)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	if (!(l->v[l->n] = strndup(s, len)))
		return -1;
	l->n++;
	return 0;
}

static void src_free(struct srclist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

/* PREFIX:PATTERN or PATTERN, expanded with glob(3) when it has a
 * wildcard; no match keeps the argument (it then fails as a VM). */
static int src_expand(struct srclist *l, const char *arg)
{
	const char *colon = strchr(arg, ':'), *pat = arg;
	size_t plen = 0;
	glob_t g;
	int rc = 0;
	if (!strpbrk(arg, "*?["))
		return src_add(l, arg, strlen(arg));
	if (colon && colon > arg && colon - arg < 32 && arg[0] != '/' &&
	    arg[0] != '.') {
		plen = (size_t)(colon - arg) + 1;
		pat = colon + 1;
	}
	if (glob(pat, 0, NULL, &g) != 0 || !g.gl_pathc) {
		if (g.gl_pathc == 0)
			globfree(&g);
		return src_add(l, arg, strlen(arg));
	}
	for (size_t i = 0; i < g.gl_pathc && !rc; i++) {
		size_t k = strlen(g.gl_pathv[i]);
		char *t = malloc(plen + k + 1);
		if (!t) {
			rc = -1;
			break;
		}
		memcpy(t, arg, plen);
		memcpy(t + plen, g.gl_pathv[i], k + 1);
		rc = src_add(l, t, plen + k);
		free(t);
	}
	globfree(&g);
	return rc;
}

static int src_from_file(struct srclist *l, const char *file)
{
	FILE *f = strcmp(file, "-") ? fopen(file, "r") : stdin;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0;
	if (!f)
		return cli_usage_error("backup", "cannot read %s", file);
	while (!rc && (n = getline(&line, &cap, f)) >= 0) {
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' ||
			     line[n - 1] == ' ' || line[n - 1] == '\t'))
			line[--n] = 0;
		if (!n || line[0] == '#')
			continue;
		rc = src_expand(l, line) ? EXIT_ERR : 0;
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return rc;
}

struct each_ctx {
	size_t n, ok, failed;
	FILE *json;        /* the vms array, or NULL */
	char *json_buf;
	size_t json_len;
	char *failed_list; /* "a, b" for the last line */
	size_t failed_len;
	FILE *fl;
	FILE *fj;          /* failed sources as JSON strings */
	char *fj_buf;
	size_t fj_len;
	vmb_repo *r;
};

static int each_cb(size_t i, const vmb_hv_source *src, const char *vm,
		   int rc, const char *error, const vmb_backup_result *res,
		   void *payload)
{
	struct each_ctx *c = payload;
	const char *who = vm ? vm : src->vm;
	if (rc) {
		c->failed++;
		fprintf(c->fl, "%s%s", c->failed > 1 ? ", " : "", src->vm);
		if (c->fj) {
			fprintf(c->fj, "%s", c->failed > 1 ? "," : "");
			cli_json_str(c->fj, src->vm);
		}
		if (!g.quiet)
			fprintf(stderr, "vmb: [%zu/%zu] %s: FAILED: %s\n", i + 1,
				c->n, who, error);
	} else {
		char a[32], b[32];
		c->ok++;
		if (!g.quiet)
			fprintf(stderr, "vmb: [%zu/%zu] %s: snapshot %.12s, read "
				"%s, %s new, %.1f s (cbt: %s)\n", i + 1, c->n,
				who, res->snapshot, cli_bytes(res->bytes_read, a),
				cli_bytes(res->bytes_new, b), res->seconds,
				res->cbt);
	}
	if (c->json) {
		fprintf(c->json, "%s{\"source\":", i ? "," : "");
		cli_json_str(c->json, src->vm);
		fprintf(c->json, ",\"vm\":");
		if (who == src->vm && rc)
			fprintf(c->json, "null");
		else
			cli_json_str(c->json, who);
		if (rc) {
			fprintf(c->json, ",\"error\":");
			cli_json_str(c->json, error);
		} else {
			fprintf(c->json, ",\"snapshot\":\"%s\",\"bytes_total\":%llu,"
				"\"bytes_read\":%llu,\"bytes_allocated\":%llu,"
				"\"bytes_new\":%llu,\"bytes_stored\":%llu,"
				"\"chunks_total\":%llu,\"chunks_new\":%llu,"
				"\"chunks_zero\":%llu,\"seconds\":%.3f,"
				"\"cbt\":\"%s\"", res->snapshot,
				(unsigned long long)res->bytes_total,
				(unsigned long long)res->bytes_read,
				(unsigned long long)res->bytes_allocated,
				(unsigned long long)res->bytes_new,
				(unsigned long long)res->bytes_stored,
				(unsigned long long)res->chunks_total,
				(unsigned long long)res->chunks_new,
				(unsigned long long)res->chunks_zero,
				res->seconds, res->cbt);
			vmb_snapshot *s = NULL;
			if (vmb_repo_snapshot_find(c->r, res->snapshot, &s) == 0 &&
			    vmb_snapshot_consistency(s)) {
				fprintf(c->json, ",\"consistency\":");
				cli_json_str(c->json, vmb_snapshot_consistency(s));
			}
			vmb_snapshot_free(s);
		}
		fprintf(c->json, "}");
	} else if (!rc && !g.quiet) {
		printf("snapshot %s of %s\n", res->snapshot, who);
	}
	return 0;
}

static int backup_main(int argc, char **argv, const char **tags)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'm' },
		{ "tag", required_argument, NULL, 't' },
		{ "full", no_argument, NULL, 'f' },
		{ "threads", required_argument, NULL, 'j' },
		{ "connect", required_argument, NULL, 'c' },
		{ "quiesce", no_argument, NULL, 'Q' },
		{ "crash-consistent", no_argument, NULL, 'C' },
		{ "live", no_argument, NULL, 'L' },
		{ "each", no_argument, NULL, 'E' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "each-from", required_argument, NULL, 'F' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_hv_backup_opts ho = VMB_HV_BACKUP_OPTS_INIT;
	vmb_backup_options o = VMB_BACKUP_OPTIONS_INIT;
	vmb_backup_result res;
	vmb_hv_source *src;
	vmb_hv *hvs[16];
	size_t nhv = 0;
	size_t ntags = 0, nsrc;
	const char *uri = NULL, *each_from = NULL;
	struct srclist sl = { NULL, 0, 0 };
	int each = 0;
	vmb_repo *r;
	int c, rc;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (k)
			continue;
		switch (c) {
		case 'm': o.vm = optarg; break;
		case 't': tags[ntags++] = optarg; break;
		case 'f': o.full = 1; break;
		case 'c': uri = optarg; break;
		case 'Q': ho.flags |= VMB_HV_BACKUP_QUIESCE; break;
		case 'C': ho.flags |= VMB_HV_BACKUP_CRASH_CONSISTENT; break;
		case 'L': ho.flags |= VMB_HV_BACKUP_LIVE; break;
		case 'E': each = 1; break;
		case 'n': ho.flags |= VMB_HV_BACKUP_DRY_RUN; break;
		case 'F': each = 1; each_from = optarg; break;
		case 'j': {
			long v;
			if (cli_parse_int(optarg, 1, 64, &v))
				return cli_usage_error("backup", "bad thread "
						       "count '%s'", optarg);
			o.threads = (int)v;
			break;
		}
		default:
			return cli_bad_option("backup", argv);
		}
	}
	if (argc - optind < (each_from ? 1 : 2))
		return cli_usage_error("backup", "expected REPO and at least "
				       "one SOURCE");
	if (each && o.vm)
		return cli_usage_error("backup", "--each names every VM from "
				       "its configuration: no --vm");
	for (int i = optind + 1; i < argc; i++)
		if (each ? src_expand(&sl, argv[i]) :
		    src_add(&sl, argv[i], strlen(argv[i]))) {
			src_free(&sl);
			return EXIT_ERR;
		}
	if (each_from && (rc = src_from_file(&sl, each_from))) {
		src_free(&sl);
		return rc;
	}
	if (!sl.n) {
		src_free(&sl);
		return cli_usage_error("backup", "no SOURCE to back up");
	}
	nsrc = sl.n;
	src = calloc(nsrc, sizeof *src);
	if (!src) {
		src_free(&sl);
		return EXIT_ERR;
	}
	/* one plugin connection per plugin, made before the repository is
	 * opened: a source that cannot be reached touches nothing */
	for (size_t i = 0; i < nsrc; i++) {
		char name[32];
		const char *arg = sl.v[i];
		vmb_hv *h = NULL;
		rc = vmb_hv_parse_source(arg, name, &src[i].vm);
		for (size_t k = 0; !rc && k < nhv && !h; k++)
			if (!strcmp(vmb_hv_name(hvs[k]), name))
				h = hvs[k];
		if (!rc && !h) {
			if (nhv == sizeof hvs / sizeof hvs[0])
				rc = vmb_error_set(VMB_EINVAL, "too many kinds "
						   "of source");
			else
				rc = vmb_hv_open(name, strcmp(name, "file") ?
						 uri : NULL, &h);
			if (!rc)
				hvs[nhv++] = h;
		}
		if (!rc && !*src[i].vm)
			rc = vmb_error_set(VMB_EINVAL, "%s: no VM named after "
					   "the prefix", arg);
		if (rc) {
			vmb_error_prefix("backup failed: ");
			goto fail;
		}
		src[i].hv = h;
	}
	o.tags = tags;
	o.ntags = ntags;
	o.progress = cli_progress;
	ho.backup = o;
	/* the key derivation overlaps reading and compressing the first
	 * image's first chunks (a "file" source: its path is the image);
	 * only for --full or the repository's first backup, which read
	 * every chunk: an incremental may read none, and the prefetch's
	 * reads then slow Argon2id down (memory bandwidth) for nothing
	 * (docs/design-notes/kdf-overlap.md) */
	rc = cli_open_repo_prefetch(argv[optind], &r,
				    !each && nsrc && src[0].hv &&
				    !strcmp(vmb_hv_name(src[0].hv), "file") &&
				    !(ho.flags & VMB_HV_BACKUP_DRY_RUN)
				    ? src[0].vm : NULL, o.full);
	if (rc)
		goto fail;
	if (each) {
		struct each_ctx c;
		struct timespec t0, t1;
		memset(&c, 0, sizeof c);
		c.n = nsrc;
		c.r = r;
		c.fl = open_memstream(&c.failed_list, &c.failed_len);
		if (g.json) {
			c.json = open_memstream(&c.json_buf, &c.json_len);
			c.fj = open_memstream(&c.fj_buf, &c.fj_len);
		}
		clock_gettime(CLOCK_MONOTONIC, &t0);
		rc = c.fl && (!g.json || (c.json && c.fj)) ?
		     vmb_hv_backup_each(r, src, nsrc, &ho, each_cb, &c) :
		     vmb_error_set(VMB_ENOMEM, "out of memory");
		clock_gettime(CLOCK_MONOTONIC, &t1);
		cli_progress_done();
		if (c.fl)
			fclose(c.fl);
		if (c.fj)
			fclose(c.fj);
		if (c.json) {
			fclose(c.json);
			printf("{\"vms\":[%s],\"ok\":%zu,\"failed\":%zu,"
			       "\"failed_sources\":[", c.json_buf ? c.json_buf : "",
			       c.ok, c.failed);
			printf("%s],\"seconds\":%.3f}\n",
			       c.fj_buf ? c.fj_buf : "",
			       (double)(t1.tv_sec - t0.tv_sec) +
			       (t1.tv_nsec - t0.tv_nsec) / 1e9);
		}
		free(c.json_buf);
		free(c.fj_buf);
		vmb_repo_close(r);
		if (rc > 0)
			vmb_error_set(VMB_EGENERIC, "backup failed for %zu of %zu "
				      "VMs: %s", c.failed, nsrc,
				      c.failed_list ? c.failed_list : "");
		free(c.failed_list);
		if (rc)
			goto fail;
		for (size_t k = 0; k < nhv; k++)
			vmb_hv_close(hvs[k]);
		free(src);
		src_free(&sl);
		return EXIT_OK;
	}
	if (ho.flags & VMB_HV_BACKUP_DRY_RUN)
		cli_log_info();
	rc = vmb_hv_backup(r, src, nsrc, &ho, &res);
	cli_progress_done();
	if (!rc && (ho.flags & VMB_HV_BACKUP_DRY_RUN)) {
		char a[32];
		printf("dry run: %s of disks would be read; nothing was "
		       "stored\n", cli_bytes(res.bytes_total, a));
		vmb_repo_close(r);
		for (size_t k = 0; k < nhv; k++)
			vmb_hv_close(hvs[k]);
		free(src);
		src_free(&sl);
		return EXIT_OK;
	}
	if (rc) {
		if (strncmp(vmb_error_message(), "backup failed", 13))
			vmb_error_prefix("backup failed: ");
		vmb_repo_close(r);
		goto fail;
	}
	{
		vmb_snapshot *s = NULL;
		const char *vm = o.vm;
		const char *cons = NULL, *note = NULL;
		if (vmb_repo_snapshot_find(r, res.snapshot, &s) == 0) {
			vm = vmb_snapshot_vm(s);
			cons = vmb_snapshot_consistency(s);
			note = vmb_snapshot_consistency_note(s);
		}
		if (g.json) {
			printf("{\"snapshot\":\"%s\",\"vm\":", res.snapshot);
			cli_json_str(stdout, vm ? vm : "");
			printf(",\"bytes_total\":%llu,\"bytes_read\":%llu,"
			       "\"bytes_allocated\":%llu,"
			       "\"bytes_new\":%llu,\"bytes_stored\":%llu,"
			       "\"chunks_total\":%llu,\"chunks_new\":%llu,"
			       "\"chunks_zero\":%llu,\"seconds\":%.3f,"
			       "\"cbt\":\"%s\",\"precompressed_chunks\":%llu",
			       (unsigned long long)res.bytes_total,
			       (unsigned long long)res.bytes_read,
			       (unsigned long long)res.bytes_allocated,
			       (unsigned long long)res.bytes_new,
			       (unsigned long long)res.bytes_stored,
			       (unsigned long long)res.chunks_total,
			       (unsigned long long)res.chunks_new,
			       (unsigned long long)res.chunks_zero,
			       res.seconds, res.cbt,
			       (unsigned long long)res.precompressed_chunks);
			if (cons) {
				printf(",\"consistency\":");
				cli_json_str(stdout, cons);
			}
			if (note) {
				printf(",\"consistency_note\":");
				cli_json_str(stdout, note);
			}
			printf("}\n");
		} else if (!g.quiet) {
			char a[32], b[32], c[32], d[32], e[32];
			printf("snapshot %s of %s: %s of disks; read %s of "
			       "data in %s of chunks, %s of them new; "
			       "%s stored in %.1f s (cbt: %s)\n", res.snapshot,
			       vm ? vm : "?", cli_bytes(res.bytes_total, a),
			       cli_bytes(res.bytes_read, b),
			       cli_bytes(res.bytes_allocated, c),
			       cli_bytes(res.bytes_new, d),
			       cli_bytes(res.bytes_stored, e), res.seconds,
			       res.cbt);
		}
		vmb_snapshot_free(s);
	}
	vmb_repo_close(r);
	for (size_t k = 0; k < nhv; k++)
		vmb_hv_close(hvs[k]);
	free(src);
	src_free(&sl);
	return EXIT_OK;
fail:
	rc = cli_fail(rc > 0 ? VMB_EGENERIC : rc);
	for (size_t k = 0; k < nhv; k++)
		vmb_hv_close(hvs[k]);
	free(src);
	src_free(&sl);
	return rc;
}
