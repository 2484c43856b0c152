/* vmb restore --define --instant: a detached `vmb serve`, then the VM on
 * qcow2 overlays over it, started at once, data pulled in behind it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cli.h"

/* Start `vmb serve REPO SNAP --socket SOCK` in its own session, its
 * output in DIR/vmb-serve.log; wait until the socket is there. */
static int spawn_server(const char *repo, const char *snap, const char *dir,
			const char *sock, pid_t *pid)
{
	char log[PATH_MAX + 32];
	snprintf(log, sizeof log, "%s/vmb-serve.log", dir);
	*pid = fork();
	if (*pid < 0)
		return vmb_error_set(VMB_EIO, "fork: %s", strerror(errno));
	if (*pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		setsid();
		if (in >= 0)
			dup2(in, 0);
		if (out >= 0) {
			dup2(out, 1);
			dup2(out, 2);
		}
		if (g.passphrase_file)
			execl("/proc/self/exe", "vmb", "serve", repo, snap,
			      "--socket", sock, "--passphrase-file",
			      g.passphrase_file, (char *)NULL);
		else
			execl("/proc/self/exe", "vmb", "serve", repo, snap,
			      "--socket", sock, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 600; i++) {
		struct stat st;
		int status;
		if (stat(sock, &st) == 0 && S_ISSOCK(st.st_mode))
			return 0;
		if (waitpid(*pid, &status, WNOHANG) == *pid)
			return vmb_error_set(VMB_EIO, "vmb serve did not start "
					     "(see %s)", log);
		usleep(50 * 1000);
	}
	kill(*pid, SIGTERM);
	return vmb_error_set(VMB_ETIMEOUT, "vmb serve did not listen within "
			     "30 s (see %s)", log);
}

int cli_restore_instant(vmb_repo *r, const char *repo, const char *snap_id,
			const char *dir, const char *uri,
			const vmb_hv_define_opts *dopt)
{
	char absdir[PATH_MAX], sock[PATH_MAX + 32];
	vmb_hv *h = NULL;
	char *name = NULL;
	pid_t pid = -1;
	int rc;
	if (mkdir(dir, 0755) && errno != EEXIST)
		return cli_fail(vmb_error_set(VMB_EIO, "cannot create %s: %s",
					      dir, strerror(errno)));
	if (!realpath(dir, absdir))
		return cli_fail(vmb_error_set(VMB_EIO, "%s: %s", dir,
					      strerror(errno)));
	snprintf(sock, sizeof sock, "%s/vmb-serve.sock", absdir);
	if (strlen(sock) >= 100)
		return cli_fail(vmb_error_set(VMB_EINVAL, "%s: path too long "
					      "for a Unix socket", sock));
	rc = vmb_hv_open("libvirt", uri, &h);
	if (!rc)
		rc = spawn_server(repo, snap_id, absdir, sock, &pid);
	if (!rc)
		rc = vmb_hv_restore_instant(r, snap_id, absdir, sock, h, dopt,
					    &name);
	if (rc) {
		if (pid > 0 && !name) { /* nothing runs on it */
			kill(pid, SIGTERM);
			waitpid(pid, NULL, 0);
		}
		vmb_hv_close(h);
		return cli_fail(rc);
	}
	if (!g.quiet && !g.json) {
		printf("started VM %s on overlays in %s, served by vmb serve "
		       "(pid %ld); copying its data to local disk\n", name,
		       absdir, (long)pid);
		fflush(stdout);
	}
	rc = vmb_hv_instant_wait(h, name, cli_progress, NULL);
	cli_progress_done();
	vmb_hv_close(h);
	if (rc) {
		int ex = cli_fail(rc);
		fprintf(stderr, "vmb: %s keeps running on its overlays; vmb "
			"serve (pid %ld) must stay up\n", name, (long)pid);
		vmb_free(name);
		return ex;
	}
	kill(pid, SIGTERM); /* nothing reads from it any more */
	waitpid(pid, NULL, 0);
	if (g.json) {
		printf("{\"snapshot\":\"%s\",\"defined\":", snap_id);
		cli_json_str(stdout, name);
		printf(",\"instant\":true,\"dir\":");
		cli_json_str(stdout, absdir);
		printf("}\n");
	} else if (!g.quiet) {
		printf("VM %s runs from local disk in %s; vmb serve stopped\n",
		       name, absdir);
	}
	vmb_free(name);
	return EXIT_OK;
}
