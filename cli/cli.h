/* The vmb command-line tool: shared helpers.  Public API only. */
#ifndef VMB_CLI_H
#define VMB_CLI_H

#include <getopt.h>
#include <stdio.h>
#include "vmbackup.h"

/* Exit codes (design.md). */
#define EXIT_OK 0
#define EXIT_ERR 1
#define EXIT_USAGE 2
#define EXIT_VERIFY 3

/* Options every command takes. */
typedef struct cli_common {
	int json;
	int quiet;
	int progress;       /* --progress forces the bar on */
	int verbose;
	const char *passphrase_file;
	const char *log_file;
} cli_common;

extern cli_common g;

/* getopt_long entries for the common options; ids >= 1000. */
#define CLI_COMMON_OPTIONS                                        \
	{ "json", no_argument, NULL, 1000 },                      \
	{ "quiet", no_argument, NULL, 1001 },                     \
	{ "progress", no_argument, NULL, 1002 },                  \
	{ "passphrase-file", required_argument, NULL, 1003 },     \
	{ "log-file", required_argument, NULL, 1004 },            \
	{ "verbose", no_argument, NULL, 'v' },                    \
	{ "help", no_argument, NULL, 'h' }

/* Handle a common option; returns 1 if it was one, -1 for --help. */
int cli_common_opt(int c, const char *arg);
/* Print "vmb: msg" for the last library error; return its exit code. */
int cli_fail(int rc);
/* Print a usage error and return EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...);
/* Open a repository, getting the passphrase as design.md says. */
int cli_open_repo(const char *url, vmb_repo **out);
/* cli_open_repo() for `vmb backup`: with a passphrase given, the key is
 * derived on a thread while the first chunks of @image (NULL: none) are
 * read and compressed (vmb_repo_prefetch()) when the backup reads every
 * chunk: @full, or a repository without any snapshot (the first backup);
 * the same errors, messages and exit codes as cli_open_repo(). */
int cli_open_repo_prefetch(const char *url, vmb_repo **out,
			   const char *image, int full);
/* Passphrase for a new repository (asks twice on a terminal). */
int cli_new_passphrase(char **out, const char *env, const char *file);
/* An archive's passphrase: from FILE, else $VMB_ARCHIVE_PASSPHRASE, else
 * the repository's (--passphrase-file, $VMB_PASSPHRASE); *out NULL if
 * none.  Never prompts. */
int cli_archive_passphrase(char **out, const char *file);
/* Progress callback that draws a bar on stderr (if enabled). */
int cli_progress(const vmb_progress *p, void *payload);
void cli_progress_done(void);
/* Show the library's info-level log lines on stderr. */
void cli_log_info(void);
int cli_progress_enabled(void);
/* Parse a byte count: digits with an optional K, M, G or T suffix (powers
 * of 1024, "Ki"/"KiB"/"KB" spellings too).  0 and *out set when the value
 * is in [min, max]; -1 on anything else (signs, overflow, trailing text). */
int cli_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Parse a decimal integer in [min, max] (no sign other than '-', no
 * trailing text, no empty string); 0 and *out set, -1 otherwise. */
int cli_parse_int(const char *s, long min, long max, long *out);
/* Human-readable byte counts. */
const char *cli_bytes(uint64_t n, char buf[32]);
/* Print a JSON string literal. */
void cli_json_str(FILE *f, const char *s);
/* Library error logs are not printed (the command sums them up). */
void cli_quiet_errors(void);
/* Usage error for the option getopt just rejected. */
int cli_bad_option(const char *cmd, char **argv);
/* Print help text and return 0. */
int cli_help(const char *text);

typedef int (*cli_cmd_fn)(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_snapshots(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_protect(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_serve(int argc, char **argv);
/* restore --define --instant (restore_instant.c) */
int cli_restore_instant(vmb_repo *r, const char *repo, const char *snap_id,
			const char *dir, const char *uri,
			const vmb_hv_define_opts *dopt);
int cmd_commit(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);

#endif
