/* vmb: entry point, command table, shared helpers. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"

cli_common g;
static FILE *log_file;

static const struct {
	const char *name;
	cli_cmd_fn fn;
	const char *summary;
} commands[] = {
	{ "init", cmd_init, "create a repository" },
	{ "backup", cmd_backup, "back up disk images as a new snapshot" },
	{ "snapshots", cmd_snapshots, "list the snapshots in a repository" },
	{ "restore", cmd_restore, "restore a snapshot's disks to a folder" },
	{ "mount", cmd_mount, "show snapshots as raw disk files (FUSE)" },
	{ "umount", cmd_umount, "unmount what vmb mount mounted" },
	{ "check", cmd_check, "check a repository's metadata" },
	{ "verify", cmd_verify, "read and authenticate a snapshot's data" },
	{ "prune", cmd_prune, "remove snapshots by retention rules" },
	{ "gc", cmd_gc, "free the space of unreferenced chunks" },
	{ "protect", cmd_protect, "protect a snapshot from prune (or undo)" },
	{ "serve", cmd_serve, "serve a snapshot's disks over NBD" },
	{ "commit", cmd_commit, "make a snapshot of a served disk's overlay" },
	{ "export", cmd_export, "write a snapshot to a self-contained tar" },
	{ "import", cmd_import, "import an exported tar or an OVA" },
	{ "key", cmd_key, "change, add or export repository keys" },
	{ "inspect", cmd_inspect, "describe a disk image" },
	{ "snapshot", cmd_snapshot, "create, list, revert, delete image snapshots" },
};

static const char main_help[] =
"NAME\n"
"    vmb - back up, restore and verify virtual machine disks\n"
"\n"
"SYNOPSIS\n"
"    vmb COMMAND [OPTIONS] [ARGS]\n"
"    vmb COMMAND --help\n"
"\n"
"COMMANDS\n"
"%s"
"\n"
"COMMON OPTIONS\n"
"    --json                 print one JSON document on stdout\n"
"    --quiet                print nothing but errors\n"
"    --progress             draw a progress bar even when stderr is not\n"
"                           a terminal\n"
"    --passphrase-file F    read the repository passphrase from F\n"
"    --log-file F           append warnings and errors to F as well\n"
"    -v, --verbose          more log output\n"
"\n"
"ENVIRONMENT\n"
"    VMB_PASSPHRASE         repository passphrase\n"
"    VMB_THREADS            worker threads (default: one per core)\n"
"    XDG_CACHE_HOME         where the local chunk cache lives\n"
"    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION\n"
"                           credentials for s3: repositories\n"
"\n"
"EXIT STATUS\n"
"    0 success, 1 error, 2 usage error, 3 verification failed\n";

static void log_sink(vmb_log_level level, const char *msg, void *payload)
{
	static const char *names[] = { "error", "warning", "info", "debug" };
	const char *n = names[(unsigned)level < 4 ? level : 3];
	if (!g.quiet || level == VMB_LOG_ERROR)
		fprintf(stderr, "vmb: %s: %s\n", n, msg);
	if (log_file) {
		char ts[32];
		time_t t = time(NULL);
		strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", localtime(&t));
		fprintf(log_file, "%s %s: %s\n", ts, n, msg);
		fflush(log_file);
	}
}

static void errors_quiet_sink(vmb_log_level level, const char *msg,
			      void *payload)
{
	if (level != VMB_LOG_ERROR)
		log_sink(level, msg, payload);
	else if (log_file)
		fprintf(log_file, "error: %s\n", msg);
}

/* Show the library's info messages too (vmb backup --dry-run). */
void cli_log_info(void)
{
	vmb_log_set(log_sink, NULL, g.verbose > 1 ? VMB_LOG_DEBUG :
		    VMB_LOG_INFO);
}

/* Library errors that a command reports itself as one summary line. */
void cli_quiet_errors(void)
{
	vmb_log_set(errors_quiet_sink, NULL,
		    g.verbose ? VMB_LOG_INFO : VMB_LOG_WARN);
}

int cli_common_opt(int c, const char *arg)
{
	switch (c) {
	case 1000: g.json = 1; return 1;
	case 1001: g.quiet = 1; return 1;
	case 1002: g.progress = 1; return 1;
	case 1003: g.passphrase_file = arg; return 1;
	case 1004:
		g.log_file = arg;
		log_file = fopen(arg, "a");
		if (!log_file) {
			fprintf(stderr, "vmb: cannot open log file %s: %s\n",
				arg, strerror(errno));
			exit(EXIT_USAGE);
		}
		return 1;
	case 'v':
		g.verbose++;
		vmb_log_set(log_sink, NULL, g.verbose > 1 ? VMB_LOG_DEBUG
							   : VMB_LOG_INFO);
		return 1;
	case 'h': return -1;
	}
	return 0;
}

static int repo_open_failed;

int cli_fail(int rc)
{
	const char *m = vmb_error_message();
	cli_progress_done();
	fprintf(stderr, "vmb: %s\n", m && *m ? m : vmb_error_name(rc));
	if (log_file)
		fprintf(log_file, "error: %s\n", m);
	/* a repository that cannot be opened (damaged config or key
	 * file): the command could not run, exit 1; the line names the file */
	if ((rc == VMB_ECORRUPT && !repo_open_failed) || rc == VMB_EVERIFY)
		return EXIT_VERIFY;
	if (rc == VMB_EINVAL && 0)
		return EXIT_USAGE;
	return EXIT_ERR;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "vmb%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'vmb %s --help')\n", cmd ? cmd : "");
	return EXIT_USAGE;
}

int cli_bad_option(const char *cmd, char **argv)
{
	const char *o = optind > 0 ? argv[optind - 1] : "?";
	return cli_usage_error(cmd, "option '%s' is unknown or needs a value",
			       o);
}

int cli_help(const char *text)
{
	fputs(text, stdout);
	return EXIT_OK;
}

static char *read_pass_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char buf[4096];
	size_t n;
	if (!f) {
		vmb_error_set(VMB_ENOTFOUND, "cannot read passphrase file %s: %s",
			      path, strerror(errno));
		return NULL;
	}
	char *p;
	setvbuf(f, NULL, _IONBF, 0); /* no stdio buffer left unwiped */
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	p = vmb_secret_strdup(buf);
	explicit_bzero(buf, sizeof buf);
	return p;
}

static char *prompt(const char *msg)
{
	struct termios old, noecho;
	char buf[4096];
	int restore = 0;
	fprintf(stderr, "%s", msg);
	fflush(stderr);
	if (tcgetattr(STDIN_FILENO, &old) == 0) {
		noecho = old;
		noecho.c_lflag &= ~(tcflag_t)ECHO;
		restore = tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho) == 0;
	}
	char *s = fgets(buf, sizeof buf, stdin);
	if (restore)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	fprintf(stderr, "\n");
	if (!s)
		return NULL;
	buf[strcspn(buf, "\r\n")] = 0;
	s = vmb_secret_strdup(buf);
	explicit_bzero(buf, sizeof buf);
	return s;
}

/* The passphrase from --passphrase-file, then $VMB_PASSPHRASE; NULL if
 * neither (and no error). */
static char *given_passphrase(int *err)
{
	const char *env = getenv("VMB_PASSPHRASE");
	*err = 0;
	if (g.passphrase_file) {
		char *p = read_pass_file(g.passphrase_file);
		if (!p)
			*err = 1;
		return p;
	}
	if (env)
		return vmb_secret_strdup(env);
	return NULL;
}

int cli_open_repo(const char *url, vmb_repo **out)
{
	int err, rc;
	char *pass = given_passphrase(&err);
	if (err)
		return VMB_ENOTFOUND;
	rc = vmb_repo_open(url, pass, out);
	if (rc == VMB_EAUTH && !pass) {
		if (isatty(STDIN_FILENO)) {
			pass = prompt("Repository passphrase: ");
			if (pass)
				rc = vmb_repo_open(url, pass, out);
		} else {
			rc = vmb_error_set(VMB_EAUTH, "%s: a passphrase is "
					   "needed: set VMB_PASSPHRASE or use "
					   "--passphrase-file", url);
		}
	}
	vmb_secret_free(pass);
	repo_open_failed = rc != 0;
	return rc;
}

int cli_open_repo_prefetch(const char *url, vmb_repo **out,
			   const char *image, int full)
{
	int err, rc;
	char *pass = given_passphrase(&err);
	if (err)
		return VMB_ENOTFOUND;
	if (!pass || !image) {
		/* no passphrase yet: the prompt's retry of cli_open_repo() */
		vmb_secret_free(pass);
		return cli_open_repo(url, out);
	}
	rc = vmb_repo_open_async(url, pass, out);
	vmb_secret_free(pass);
	if (!rc) {
		/* an incremental may read nothing, and the prefetch's reads
		 * would then only slow Argon2id down; the first backup into
		 * a repository reads every chunk, as --full does */
		if (full || vmb_repo_has_snapshots(*out) == 0)
			vmb_repo_prefetch(*out, image);
		rc = vmb_repo_key_wait(*out);
		if (rc) {
			vmb_repo_close(*out);
			*out = NULL;
		}
	}
	repo_open_failed = rc != 0;
	return rc;
}

int cli_archive_passphrase(char **out, const char *file)
{
	int err;
	const char *e = getenv("VMB_ARCHIVE_PASSPHRASE");
	*out = NULL;
	if (file) {
		*out = read_pass_file(file);
		return *out ? 0 : VMB_ENOTFOUND;
	}
	if (e) {
		*out = vmb_secret_strdup(e);
		return *out ? 0 : VMB_ENOMEM;
	}
	*out = given_passphrase(&err);
	return err ? VMB_ENOTFOUND : 0;
}

int cli_new_passphrase(char **out, const char *env, const char *file)
{
	int err;
	*out = NULL;
	if (file) {
		*out = read_pass_file(file);
		return *out ? 0 : VMB_ENOTFOUND;
	}
	if (env) {
		const char *e = getenv(env);
		if (e) {
			*out = vmb_secret_strdup(e);
			return *out ? 0 : VMB_ENOMEM;
		}
	} else {
		*out = given_passphrase(&err);
		if (err)
			return VMB_ENOTFOUND;
		if (*out)
			return 0;
	}
	if (!isatty(STDIN_FILENO))
		return vmb_error_set(VMB_EINVAL, "no passphrase given: set %s "
				     "or use a passphrase file",
				     env ? env : "VMB_PASSPHRASE");
	char *a = prompt("New passphrase: ");
	char *b = a ? prompt("Repeat passphrase: ") : NULL;
	if (!a || !b || strcmp(a, b) != 0) {
		vmb_secret_free(a);
		vmb_secret_free(b);
		return vmb_error_set(VMB_EINVAL, "passphrases do not match");
	}
	vmb_secret_free(b);
	*out = a;
	return 0;
}

/* ---- progress ---- */

static int bar_drawn;
static double bar_t0;

int cli_progress_enabled(void)
{
	return !g.quiet && (g.progress || isatty(STDERR_FILENO));
}

int cli_parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v;
	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int cli_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0, mul = 1;
	const char *p = s;
	if (!s)
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (p == s)
		return -1;
	switch (*p) {
	case 'k': case 'K': mul = 1ULL << 10; p++; break;
	case 'm': case 'M': mul = 1ULL << 20; p++; break;
	case 'g': case 'G': mul = 1ULL << 30; p++; break;
	case 't': case 'T': mul = 1ULL << 40; p++; break;
	}
	if (mul > 1 && *p == 'i')
		p++;
	if (mul > 1 && (*p == 'B' || *p == 'b'))
		p++;
	if (*p || v > UINT64_MAX / mul)
		return -1;
	v *= mul;
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

const char *cli_bytes(uint64_t n, char buf[32])
{
	static const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)n;
	int i = 0;
	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	snprintf(buf, 32, i ? "%.1f %s" : "%.0f %s", v, u[i]);
	return buf;
}

int cli_progress(const vmb_progress *p, void *payload)
{
	char a[32], b[32], c[32], bar[31];
	struct timespec ts;
	double now, pct, rate;
	int fill;
	if (!cli_progress_enabled())
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (double)ts.tv_sec + ts.tv_nsec / 1e9;
	if (!bar_drawn)
		bar_t0 = now;
	pct = p->bytes_total ? 100.0 * (double)p->bytes_done /
			       (double)p->bytes_total : 100.0;
	if (pct > 100)
		pct = 100;
	fill = (int)(pct * 30 / 100);
	for (int i = 0; i < 30; i++)
		bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
	bar[30] = 0;
	rate = now > bar_t0 ? (double)p->bytes_done / (now - bar_t0) : 0;
	fprintf(stderr, "\r%s [%s] %3.0f%% %s/%s %s/s %-20.20s",
		p->phase ? p->phase : "", bar, pct, cli_bytes(p->bytes_done, a),
		cli_bytes(p->bytes_total, b), cli_bytes((uint64_t)rate, c),
		p->item ? p->item : "");
	fflush(stderr);
	bar_drawn = 1;
	return 0;
}

void cli_progress_done(void)
{
	if (bar_drawn) {
		fprintf(stderr, "\n");
		bar_drawn = 0;
	}
}

void cli_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)(s ? s : "");
	     *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

const vmb_hv_plugin *vmb_hv_plugin_init_file(void); /* plugins/file */

/*
 * Plugins: the file plugin is linked in; the others are modules in
 * VMB_PLUGIN_DIR, else beside this vmb (../lib/vmbackup/plugins: the
 * build tree and a relocated install), else the installed folder.
 */
static void hv_setup(void)
{
	char exe[4096], dir[4200];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	vmb_hv_register(vmb_hv_plugin_init_file);
	if (n <= 0)
		return;
	exe[n] = 0;
	if (strrchr(exe, '/'))
		*strrchr(exe, '/') = 0;
	snprintf(dir, sizeof dir, "%s/../lib/vmbackup/plugins", exe);
	if (access(dir, X_OK) == 0)
		vmb_hv_set_plugin_dir(dir);
}

int main(int argc, char **argv)
{
	char list[2048] = "";
	size_t n = 0;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		n += (size_t)snprintf(list + n, sizeof list - n,
				      "    %-12s %s\n", commands[i].name,
				      commands[i].summary);
	vmb_log_set(log_sink, NULL, VMB_LOG_WARN);
	hv_setup();
	opterr = 0; /* we print one line of our own */
	if (argc < 2) {
		fprintf(stderr, main_help, list);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		printf(main_help, list);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("vmb %s\n", vmb_version());
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(argv[1], commands[i].name)) {
			int rc = commands[i].fn(argc - 1, argv + 1);
			cli_progress_done();
			if (log_file)
				fclose(log_file);
			return rc;
		}
	fprintf(stderr, "vmb: unknown command '%s' (see 'vmb --help')\n",
		argv[1]);
	return EXIT_USAGE;
}
