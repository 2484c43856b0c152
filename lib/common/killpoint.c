/* Deterministic kill points (see killpoint.h). */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "killpoint.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int enabled;           /* any variable set */
static unsigned long long at; /* 0: never kill */
static int when_before;
static char ops[128];         /* ",kind,kind," or "" for all */
static int trace_fd = -1;
static unsigned long long count;

static void init(void)
{
	const char *a = getenv("VMB_KILL_AT"), *o = getenv("VMB_KILL_OPS");
	const char *w = getenv("VMB_KILL_WHEN"), *t = getenv("VMB_KILL_TRACE");
	if (a && *a)
		at = strtoull(a, NULL, 10);
	when_before = w && strcmp(w, "before") == 0;
	if (o && *o && strlen(o) < sizeof ops - 2)
		snprintf(ops, sizeof ops, ",%s,", o);
	if (t && *t)
		trace_fd = open(t, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
				0600);
	enabled = at > 0 || trace_fd >= 0;
}

static int counted(const char *kind)
{
	char k[40];
	if (!ops[0])
		return 1;
	snprintf(k, sizeof k, ",%s,", kind);
	return strstr(ops, k) != NULL;
}

void vmb__kill_point(const char *kind, const char *name, int before)
{
	unsigned long long n;
	pthread_once(&once, init);
	if (!enabled || (before == 1 && !when_before) ||
	    (before == 0 && when_before) || !counted(kind))
		return;
	pthread_mutex_lock(&lock);
	n = ++count;
	if (trace_fd >= 0) {
		char line[400];
		int len = snprintf(line, sizeof line, "%llu %s %s%s\n", n,
				   kind, name ? name : "-",
				   n == at ? " (killed)" : "");
		if (len > 0 && write(trace_fd, line,
				     (size_t)len < sizeof line ? (size_t)len :
				     sizeof line - 1) < 0)
			trace_fd = -1;
	}
	if (n == at) {
		/* the lock stays held: no other thread gets another op in */
		raise(SIGKILL);
		_exit(137);
	}
	pthread_mutex_unlock(&lock);
}
