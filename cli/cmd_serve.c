/* vmb serve, vmb commit */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb serve - serve a snapshot's disks over NBD, straight from the\n"
"    repository\n"
"\n"
"SYNOPSIS\n"
"    vmb serve REPO SNAP [--disk NAME|N] [--socket PATH | --port P]\n"
"              [--writable OVERLAY] [--cache-size SIZE] [--max-clients N]\n"
"              [--pid-file FILE] [--json]\n"
"\n"
"DESCRIPTION\n"
"    Exports every disk of snapshot SNAP (a full id, a unique prefix,\n"
"    'latest' or 'VM@latest'), or only --disk, as an NBD export named\n"
"    after the disk, until SIGINT or SIGTERM.  Nothing is restored: data\n"
"    is fetched, authenticated and decrypted chunk by chunk as clients\n"
"    read it, through an LRU chunk cache with read-ahead for sequential\n"
"    readers.  Holes and zero chunks are reported as such (structured\n"
"    replies, base:allocation), so 'qemu-img convert' and 'nbdcopy'\n"
"    skip them.  Any NBD client works: qemu, qemu-img, nbdcopy, nbdinfo,\n"
"    nbdfuse, the kernel's nbd-client.\n"
"\n"
"    It listens on a Unix socket (--socket, the default being\n"
"    $XDG_RUNTIME_DIR/vmb-SNAP.sock or /tmp/vmb-UID-SNAP.sock) or on TCP\n"
"    at 127.0.0.1 only (--port; 0 picks a free port).  There is no TLS\n"
"    and no authentication: anyone who can reach the socket reads the\n"
"    disks, so keep it on this host.  Once it listens, one line per\n"
"    export is printed on stdout: the export's NBD URI\n"
"        nbd+unix:///disk0?socket=/run/user/1000/vmb-3f2a.sock\n"
"        nbd://127.0.0.1:10809/disk0\n"
"    (with --json one object: snapshot, socket or port, exports).\n"
"\n"
"    Exports are read-only unless --writable: then writes go to the\n"
"    local overlay file OVERLAY (created if missing, reused when it\n"
"    belongs to the same snapshot and disk) and never to the\n"
"    repository.  'vmb commit REPO OVERLAY' makes a new snapshot of the\n"
"    snapshot with the overlay's writes applied; deleting the file\n"
"    throws them away.  --writable needs exactly one disk (--disk).\n"
"\n"
"OPTIONS\n"
"    --disk NAME|N      export only this disk (name or 0-based index)\n"
"    --socket PATH      Unix socket to listen on (a stale socket there\n"
"                       is replaced; removed on exit)\n"
"    --port P           TCP port on 127.0.0.1 instead of a socket\n"
"    --writable OVL     writable export, writes kept in overlay OVL\n"
"    --cache-size SIZE  chunk cache (default 64M; K, M, G suffixes)\n"
"    --max-clients N    connections at once (default 64)\n"
"    --pid-file FILE    write the server's pid to FILE once it listens\n"
"    --json             print the exports as one JSON object\n"
"\n"
"EXAMPLES\n"
"    vmb serve /backups web@latest --socket /tmp/web.sock &\n"
"    qemu-img convert -O qcow2 'nbd+unix:///disk0?socket=/tmp/web.sock' \\\n"
"        disk0.qcow2\n"
"    nbdinfo --map 'nbd+unix:///disk0?socket=/tmp/web.sock'\n"
"    qemu-system-x86_64 -drive file=nbd+unix:///disk0?socket=/tmp/web.sock,\\\n"
"        format=raw,snapshot=on ...\n"
"\n"
"EXIT STATUS\n"
"    0 after a signal stopped it, 1 on errors, 2 on usage errors.\n";

static const char commit_help[] =
"NAME\n"
"    vmb commit - turn the overlay of 'vmb serve --writable' into a new\n"
"    snapshot\n"
"\n"
"SYNOPSIS\n"
"    vmb commit REPO OVERLAY [--vm NAME] [--tag TAG]... [--json]\n"
"\n"
"DESCRIPTION\n"
"    OVERLAY records the snapshot and the disk it was written over.  The\n"
"    new snapshot has every disk of that snapshot, the overlay's disk\n"
"    with its writes applied, and the snapshot's configuration; it is a\n"
"    normal backup (new chunks only, the manifest written last), of VM\n"
"    NAME (default: the snapshot's VM).  The overlay stays as it is:\n"
"    delete it when done.  Do not commit while 'vmb serve' still writes\n"
"    to it.\n"
"\n"
"OPTIONS\n"
"    --vm NAME       VM name of the new snapshot\n"
"    --tag TAG       tag the new snapshot (repeatable; default: the base\n"
"                    snapshot's tags)\n"
"    --json          print {snapshot, bytes_new, seconds}\n";

static vmb_serve *g_server;

static void on_signal(int sig)
{
	(void)sig;
	vmb_serve_stop(g_server);
}

static char *default_socket(const char *snap)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	char name[32];
	size_t n = 0;
	char *p;
	for (const char *c = snap; *c && n < 16; c++)
		name[n++] = (char)((*c >= 'a' && *c <= 'z') ||
					   (*c >= 'A' && *c <= 'Z') ||
					   (*c >= '0' && *c <= '9') ? *c : '_');
	name[n] = 0;
	if (rt && *rt && access(rt, W_OK) == 0) {
		size_t pl = strlen(rt) + 40;
		p = malloc(pl);
		if (p)
			snprintf(p, pl, "%s/vmb-%s.sock", rt, name);
	} else {
		p = malloc(64);
		if (p)
			snprintf(p, 64, "/tmp/vmb-%u-%s.sock",
				 (unsigned)getuid(), name);
	}
	return p;
}

int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "disk", required_argument, NULL, 'd' },
		{ "socket", required_argument, NULL, 's' },
		{ "port", required_argument, NULL, 'p' },
		{ "writable", required_argument, NULL, 'w' },
		{ "cache-size", required_argument, NULL, 'C' },
		{ "max-clients", required_argument, NULL, 'm' },
		{ "pid-file", required_argument, NULL, 'P' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_serve_options o = VMB_SERVE_OPTIONS_INIT;
	vmb_repo *r;
	vmb_serve *s;
	const char *pid_file = NULL;
	char *sock = NULL;
	int c, rc, port_set = 0;
	char *end;
	long v;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (k)
			continue;
		switch (c) {
		case 'd': o.disk = optarg; break;
		case 's': o.socket_path = optarg; break;
		case 'p':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || v < 0 ||
			    v > 65535)
				return cli_usage_error("serve", "--port wants "
						       "0..65535, not '%s'",
						       optarg);
			o.port = (int)v;
			port_set = 1;
			break;
		case 'w': o.overlay = optarg; break;
		case 'C': {
			uint64_t v64;
			if (cli_parse_size(optarg, 1u << 20, 1ull << 40, &v64))
				return cli_usage_error("serve", "--cache-size "
						       "wants 1M..1T, not "
						       "'%s'", optarg);
			o.cache_bytes = (size_t)v64;
			break;
		}
		case 'm':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || v < 1 ||
			    v > 4096)
				return cli_usage_error("serve", "--max-clients "
						       "wants 1..4096, not "
						       "'%s'", optarg);
			o.max_clients = (int)v;
			break;
		case 'P': pid_file = optarg; break;
		default: return cli_bad_option("serve", argv);
		}
	}
	if (optind + 2 != argc)
		return cli_usage_error("serve", "expected REPO and SNAP");
	if (o.socket_path && port_set)
		return cli_usage_error("serve", "--socket and --port exclude "
				       "each other");
	if (!o.socket_path && !port_set) {
		sock = default_socket(argv[optind + 1]);
		if (!sock)
			return cli_fail(VMB_ENOMEM);
		o.socket_path = sock;
	}
	rc = cli_open_repo(argv[optind], &r);
	if (rc) {
		free(sock);
		return cli_fail(rc);
	}
	rc = vmb_serve_open(r, argv[optind + 1], &o, &s);
	if (rc) {
		free(sock);
		vmb_repo_close(r);
		return cli_fail(rc);
	}
	g_server = s;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	if (pid_file) {
		FILE *f = fopen(pid_file, "w");
		if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 ||
		    fclose(f)) {
			fprintf(stderr, "vmb: cannot write pid file %s: %s\n",
				pid_file, strerror(errno));
			vmb_serve_free(s);
			vmb_repo_close(r);
			free(sock);
			return EXIT_ERR;
		}
	}
	if (g.json) {
		printf("{\"socket\":");
		if (o.socket_path)
			cli_json_str(stdout, o.socket_path);
		else
			printf("null");
		printf(",\"port\":%d,\"writable\":%s,\"exports\":[",
		       vmb_serve_port(s), o.overlay ? "true" : "false");
		for (size_t i = 0; i < vmb_serve_export_count(s); i++) {
			printf("%s{\"name\":", i ? "," : "");
			cli_json_str(stdout, vmb_serve_export_name(s, i));
			printf(",\"uri\":");
			cli_json_str(stdout, vmb_serve_uri(s, i));
			printf("}");
		}
		printf("]}\n");
	} else if (!g.quiet) {
		for (size_t i = 0; i < vmb_serve_export_count(s); i++)
			printf("%s\n", vmb_serve_uri(s, i));
	}
	fflush(stdout);
	vmb_serve_run(s);
	if (g.verbose) {
		vmb_serve_stats st;
		vmb_serve_get_stats(s, &st);
		fprintf(stderr, "vmb: served %llu connections, %llu requests; "
			"cache %llu hits, %llu misses\n",
			(unsigned long long)st.connections,
			(unsigned long long)st.requests,
			(unsigned long long)st.cache_hits,
			(unsigned long long)st.cache_misses);
	}
	vmb_serve_free(s);
	vmb_repo_close(r);
	if (pid_file)
		unlink(pid_file);
	free(sock);
	return EXIT_OK;
}

int cmd_commit(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'V' },
		{ "tag", required_argument, NULL, 't' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_backup_options bo = VMB_BACKUP_OPTIONS_INIT;
	vmb_backup_result res;
	const char *tags[64];
	size_t ntags = 0;
	vmb_repo *r;
	int c, rc;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(commit_help);
		if (k)
			continue;
		if (c == 'V')
			bo.vm = optarg;
		else if (c == 't') {
			if (ntags == 64)
				return cli_usage_error("commit", "at most 64 "
						       "tags");
			tags[ntags++] = optarg;
		} else
			return cli_bad_option("commit", argv);
	}
	if (optind + 2 != argc)
		return cli_usage_error("commit", "expected REPO and OVERLAY");
	if (ntags) {
		bo.tags = tags;
		bo.ntags = ntags;
	}
	rc = cli_open_repo(argv[optind], &r);
	if (rc)
		return cli_fail(rc);
	rc = vmb_serve_commit(r, argv[optind + 1], &bo, &res);
	vmb_repo_close(r);
	if (rc)
		return cli_fail(rc);
	if (g.json)
		printf("{\"snapshot\":\"%s\",\"bytes_new\":%llu,"
		       "\"seconds\":%.3f}\n", res.snapshot,
		       (unsigned long long)res.bytes_new, res.seconds);
	else if (!g.quiet)
		printf("snapshot %s\n", res.snapshot);
	return EXIT_OK;
}
