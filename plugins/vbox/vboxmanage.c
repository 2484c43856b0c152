/*
 * Asking VirtualBox about a VM, where VBoxManage is installed: its state
 * (`showvminfo UUID --machinereadable`, the VMState= line), and for
 * --live a snapshot taken and deleted around the backup.  Nothing here
 * runs a shell: the program is found on PATH and run with an argument
 * vector; its output is read up to 1 MiB.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "vmbackup/common.h"
#include "vmbackup/hv.h"
#include "vboxmanage.h"

extern char **environ;

#define OUT_MAX (1u << 20)

int vbox_manage_find(char *out, size_t len)
{
	const char *path = getenv("PATH");
	const char *p = path ? path : "/usr/bin:/bin";
	while (*p) {
		size_t k = strcspn(p, ":");
		struct stat st;
		if (k && k + 12 < len) {
			snprintf(out, len, "%.*s/VBoxManage", (int)k, p);
			if (stat(out, &st) == 0 && S_ISREG(st.st_mode) &&
			    access(out, X_OK) == 0)
				return 1;
		}
		p += k;
		if (*p == ':')
			p++;
	}
	out[0] = 0;
	return 0;
}

int vbox_manage_run(const char *prog, const char *const *args, char **out,
		    int *status)
{
	int fds[2];
	posix_spawn_file_actions_t fa;
	pid_t pid;
	char *buf = NULL;
	size_t n = 0;
	int rc, st = 0;
	const char *argv[16];
	size_t na = 0;

	*out = NULL;
	argv[na++] = "VBoxManage";
	for (; args && *args && na < 15; args++)
		argv[na++] = *args;
	argv[na] = NULL;
	if (pipe2(fds, O_CLOEXEC))
		return vmb_error_set(VMB_EIO, "pipe: %s", strerror(errno));
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	rc = posix_spawn(&pid, prog, &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	if (rc) {
		close(fds[0]);
		return vmb_error_set(VMB_EIO, "cannot run %s: %s", prog,
				     strerror(rc));
	}
	buf = malloc(OUT_MAX + 1);
	for (;;) {
		ssize_t k;
		if (!buf || n >= OUT_MAX) {
			char sink[4096];
			k = read(fds[0], sink, sizeof sink);
		} else {
			k = read(fds[0], buf + n, OUT_MAX - n);
			if (k > 0)
				n += (size_t)k;
		}
		if (k == 0 || (k < 0 && errno != EINTR))
			break;
	}
	close(fds[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!buf)
		return VMB_ENOMEM;
	buf[n] = 0;
	*out = buf;
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
	return 0;
}

/* KEY="value" lines: the value of @key, copied into @v. */
static int value_of(const char *text, const char *key, char *v, size_t len)
{
	size_t kl = strlen(key);
	for (const char *l = text; l && *l; l = strchr(l, '\n'),
	     l = l ? l + 1 : NULL) {
		const char *s = l + kl + 1, *e;
		if (strncmp(l, key, kl) || l[kl] != '=')
			continue;
		if (*s == '"')
			s++;
		e = s + strcspn(s, "\"\r\n");
		snprintf(v, len, "%.*s", (int)(e - s), s);
		return 0;
	}
	return -1;
}

int vbox_manage_state(const char *prog, const char *uuid, int *state,
		      char *why, size_t len)
{
	const char *args[] = { "showvminfo", uuid, "--machinereadable", NULL };
	char *out = NULL, v[64];
	int st, rc = vbox_manage_run(prog, args, &out, &st);
	*state = VMB_HV_STATE_UNKNOWN;
	if (rc)
		return rc;
	if (st != 0 || value_of(out, "VMState", v, sizeof v)) {
		snprintf(why, len, "VBoxManage does not know the VM (exit %d):"
			 " state read from the settings file", st);
		free(out);
		return 1;
	}
	free(out);
	snprintf(why, len, "VBoxManage says '%s'", v);
	if (!strcmp(v, "poweroff") || !strcmp(v, "aborted") ||
	    !strcmp(v, "inaccessible"))
		*state = VMB_HV_STATE_OFF;
	else if (!strcmp(v, "saved"))
		*state = VMB_HV_STATE_SAVED;
	else if (!strcmp(v, "paused"))
		*state = VMB_HV_STATE_PAUSED;
	else
		*state = VMB_HV_STATE_RUNNING; /* running, starting, saving,
						  stuck, ...: in use */
	return 0;
}

int vbox_manage_snapshot_take(const char *prog, const char *uuid,
			      const char *name, char uuid_out[37])
{
	const char *args[] = { "snapshot", uuid, "take", name, "--live",
			       NULL };
	char *out = NULL;
	const char *u;
	int st, rc = vbox_manage_run(prog, args, &out, &st);
	uuid_out[0] = 0;
	if (rc)
		return rc;
	if (st != 0) {
		free(out);
		return vmb_error_set(VMB_EIO, "VBoxManage snapshot %s take %s "
				     "failed (exit %d)", uuid, name, st);
	}
	/* "Snapshot taken. UUID: 1a2b..." */
	if ((u = strstr(out, "UUID: ")) != NULL) {
		u += 6;
		if (strspn(u, "0123456789abcdef-") >= 36)
			snprintf(uuid_out, 37, "%.36s", u);
	}
	free(out);
	return 0;
}

int vbox_manage_snapshot_delete(const char *prog, const char *uuid,
				const char *snap)
{
	const char *args[] = { "snapshot", uuid, "delete", snap, NULL };
	char *out = NULL;
	int st, rc = vbox_manage_run(prog, args, &out, &st);
	free(out);
	if (rc)
		return rc;
	if (st != 0)
		return vmb_error_set(VMB_EIO, "VBoxManage snapshot %s delete %s "
				     "failed (exit %d): delete it by hand",
				     uuid, snap, st);
	return 0;
}
