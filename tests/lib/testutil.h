/* Minimal test helpers: CHECK macros that report file:line and count
 * failures; a test's main() returns test_done(). */
#ifndef VMB_TESTUTIL_H
#define VMB_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vmbackup/common.h"

extern int test_failures;
extern int test_checks;

#define CHECK(cond)                                                        \
	do {                                                               \
		test_checks++;                                             \
		if (!(cond)) {                                             \
			test_failures++;                                   \
			fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", \
				__FILE__, __LINE__, #cond,                 \
				vmb_error_message());                      \
		}                                                          \
	} while (0)

#define CHECK_OK(expr)                                                     \
	do {                                                               \
		test_checks++;                                             \
		int rc_ = (expr);                                          \
		if (rc_ < 0) {                                             \
			test_failures++;                                   \
			fprintf(stderr, "%s:%d: %s failed: %d %s\n",      \
				__FILE__, __LINE__, #expr, rc_,            \
				vmb_error_message());                      \
		}                                                          \
	} while (0)

#define CHECK_ERR(expr, code)                                              \
	do {                                                               \
		test_checks++;                                             \
		int rc_ = (expr);                                          \
		if (rc_ != (code)) {                                       \
			test_failures++;                                   \
			fprintf(stderr, "%s:%d: %s returned %d, want %d (%s)\n", \
				__FILE__, __LINE__, #expr, rc_, (code),    \
				vmb_error_message());                      \
		}                                                          \
	} while (0)

/* A fresh temporary folder (removed by test_cleanup at exit). */
const char *test_tmpdir(void);
/* Path inside the temporary folder (static ring of buffers). */
const char *test_path(const char *name);
/* Fill with deterministic pseudo-random bytes. */
void test_random(void *buf, size_t len, uint64_t seed);
/* Run a shell command; returns its exit status. */
int test_sh(const char *fmt, ...);
/* Prints "N passed, N failed" and returns the exit code. */
int test_done(void);
/* Skip the whole test (exit 77) with a reason. */
void test_skip(const char *why);
/* A new repository test_path(@name) (passphrase "pw") holding one snapshot
 * of a small 1 MiB disk @name.img; returns its URL, to free(). */
char *test_make_repo(const char *name);

#endif
