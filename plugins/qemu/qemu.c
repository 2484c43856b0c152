/*
 * The "qemu" plugin: `vmb verify --boot --runner qemu` boots a whole
 * operating system from a snapshot under QEMU (docs/boot.md).  A boot
 * runner only (VMB_HV_F_BOOT), not a backup source.
 *
 * The run, in this one file:
 *  1. the snapshot's disk is exported read-only by our own NBD server
 *     (vmb_serve_open_disks(), include/vmbackup/serve.h), in a thread of
 *     this process, on a Unix socket in a private directory;
 *  2. we connect to it ourselves and remove the socket and the directory
 *     at once: QEMU gets the connected socket as file descriptor 3, so
 *     nothing of ours is left on disk while the guest runs, even if vmb
 *     is killed;
 *  3. qemu-system-x86_64 ($VMB_QEMU, else found in PATH) runs with no
 *     network, no display, no reboot, -snapshot (guest writes go to a
 *     temporary overlay QEMU deletes at once; the export is read-only
 *     anyway), the seccomp sandbox, and the serial port on a pipe;
 *  4. the pipe is read until --expect matches, the console passes
 *     --console-limit, QEMU exits (the guest powered off or reset) or the
 *     time is up; then QEMU is killed by its PID and waited for.  QEMU
 *     dies with us too (PR_SET_PDEATHSIG).
 *
 * Accelerator (--vcpu): "kvm" (-accel kvm only), "tcg" (-accel tcg
 * only), or by default `-accel kvm -accel tcg` when /dev/kvm opens, else
 * tcg.  A guest KVM cannot run (QEMU reports a "KVM internal error", as
 * nested KVM does with some boot loaders) is run again under TCG in the
 * time left, by default; with --vcpu kvm it is a verdict.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "vmbackup/sys/hv.h"
#include "vmbackup/disk.h"
#include "vmbackup/serve.h"

#define EXPECT_WINDOW 4096  /* a match must fit in this much, as builtin */
#define STDERR_KEEP 4096    /* QEMU's own messages kept, for errors */
#define NBD_FD 3            /* the export's connection, in QEMU */
#define EXPORT "boot"

extern char **environ;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- finding QEMU ---- */

/* $VMB_QEMU (a path, or a name looked up in PATH), else
 * qemu-system-x86_64 in PATH, into @p out.  0, or -1. */
static int find_qemu(char *out, size_t n)
{
	const char *want = getenv("VMB_QEMU");
	const char *path = getenv("PATH");
	if (!want || !*want)
		want = "qemu-system-x86_64";
	if (strchr(want, '/')) {
		if ((size_t)snprintf(out, n, "%s", want) >= n)
			return -1;
		return access(out, X_OK) == 0 ? 0 : -1;
	}
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t len = strcspn(path, ":");
		if (len && (size_t)snprintf(out, n, "%.*s/%s", (int)len, path,
					    want) < n && access(out, X_OK) == 0)
			return 0;
		path += len + (path[len] == ':');
	}
	return -1;
}

static int kvm_usable(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

/* ---- the NBD export ---- */

struct export {
	vmb_serve *srv;
	int fd[2];         /* connections made before the socket went */
};

/* Serve @p d on a socket in a fresh directory under @p base, connect
 * @p nconn times, and remove the socket and the directory again. */
static int export_open(vmb_disk *d, const char *base, int nconn,
		       struct export *e)
{
	vmb_serve_options so = VMB_SERVE_OPTIONS_INIT;
	const char *names[1] = { EXPORT };
	struct sockaddr_un sa;
	char dir[sizeof sa.sun_path], sock[sizeof sa.sun_path];
	int rc;

	e->srv = NULL;
	e->fd[0] = e->fd[1] = -1;
	if (strlen(base) > sizeof dir - 32)
		return vmb_error_set(VMB_EINVAL, "qemu runner: the scratch "
				     "directory '%s' is too long for a Unix "
				     "socket", base);
	snprintf(dir, sizeof dir, "%s/vmb-qemu.XXXXXX", base);
	if (!mkdtemp(dir))
		return vmb_error_set(VMB_EIO, "qemu runner: cannot make a "
				     "directory in %s: %s", base,
				     strerror(errno));
	memcpy(sock, dir, strlen(dir));
	memcpy(sock + strlen(dir), "/nbd", 5);
	so.socket_path = sock;
	so.max_clients = 2;
	rc = vmb_serve_open_disks(&d, names, 1, &so, &e->srv);
	for (int i = 0; !rc && i < nconn; i++) {
		memset(&sa, 0, sizeof sa);
		sa.sun_family = AF_UNIX;
		memcpy(sa.sun_path, sock, strlen(sock) + 1);
		e->fd[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (e->fd[i] < 0 ||
		    connect(e->fd[i], (struct sockaddr *)&sa, sizeof sa))
			rc = vmb_error_set(VMB_EIO, "qemu runner: cannot "
					   "connect to our NBD server: %s",
					   strerror(errno));
	}
	unlink(sock);
	rmdir(dir);
	if (!rc)
		rc = vmb_serve_start(e->srv);
	return rc;
}

static void export_close(struct export *e)
{
	for (int i = 0; i < 2; i++)
		if (e->fd[i] >= 0)
			close(e->fd[i]);
	vmb_serve_free(e->srv);
}

/* ---- one QEMU run ---- */

enum end { END_NONE, END_MATCH, END_EXIT, END_TIMEOUT, END_FLOOD,
	   END_KVM_ERROR, END_FAILED };

struct run {
	const vmb_hv_boot_request *req;
	regex_t re;
	int have_re;
	char *con;               /* the serial console, NUL-terminated */
	size_t len, cap, checked;
	uint64_t total;          /* bytes the guest printed */
	char err[STDERR_KEEP + 1];
	size_t err_len;
	char tail[32];           /* the end of QEMU's stderr so far */
	size_t tail_len;
	int fell_back;           /* QEMU said "falling back to tcg" */
	int status;              /* QEMU's wait status, after END_EXIT */
	enum end end;
	double t0;               /* QEMU started */
	double t_end;
};

static void finish(struct run *r, enum end e)
{
	if (r->end == END_NONE) {
		r->end = e;
		r->t_end = now();
	}
}

static void expect_check(struct run *r)
{
	size_t from;
	if (!r->have_re || !r->len || r->end != END_NONE)
		return;
	from = r->checked > EXPECT_WINDOW ? r->checked - EXPECT_WINDOW : 0;
	r->checked = r->len;
	if (regexec(&r->re, r->con + from, 0, NULL, from ? REG_NOTBOL : 0) == 0)
		finish(r, END_MATCH);
}

/* Console bytes from the serial port; NUL bytes are kept as spaces. */
static void console(struct run *r, const char *p, size_t n)
{
	size_t limit = r->req->console_limit;
	r->total += n;
	if (r->len + n > limit) {
		n = limit - r->len;
		finish(r, END_FLOOD);
	}
	if (r->len + n + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		char *c;
		while (cap < r->len + n + 1)
			cap *= 2;
		if (!(c = realloc(r->con, cap))) {
			finish(r, END_FLOOD);
			return;
		}
		r->con = c;
		r->cap = cap;
	}
	for (size_t i = 0; i < n; i++)
		r->con[r->len++] = p[i] ? p[i] : ' ';
	r->con[r->len] = 0;
	expect_check(r);
}

/* QEMU's own messages: the first STDERR_KEEP bytes are kept for the
 * error line; all of it is watched for what decides the run (with the
 * end of the previous read, so a message split between reads is seen). */
static void qemu_stderr(struct run *r, const char *p, size_t n)
{
	static const char *const kvm_err = "KVM internal error",
			  *const tcg = "falling back to tcg";
	char look[sizeof r->tail + 65536];
	size_t keep = n, len;
	if (keep > STDERR_KEEP - r->err_len)
		keep = STDERR_KEEP - r->err_len;
	memcpy(r->err + r->err_len, p, keep);
	r->err_len += keep;
	r->err[r->err_len] = 0;
	while (n) {
		size_t take = n < 65536 ? n : 65536;
		memcpy(look, r->tail, r->tail_len);
		memcpy(look + r->tail_len, p, take);
		len = r->tail_len + take;
		if (memmem(look, len, kvm_err, strlen(kvm_err)))
			finish(r, END_KVM_ERROR);
		if (memmem(look, len, tcg, strlen(tcg)))
			r->fell_back = 1;
		r->tail_len = len < sizeof r->tail ? len : sizeof r->tail;
		memmove(r->tail, look + len - r->tail_len, r->tail_len);
		p += take;
		n -= take;
	}
}

/* The first line of QEMU's messages that is not a warning, made safe. */
static const char *qemu_message(struct run *r)
{
	char *l = r->err, *pick = NULL;
	while (l && *l) {
		char *nl = strchr(l, '\n');
		if (nl)
			*nl = 0;
		if (*l && !strstr(l, "warning:")) {
			pick = l;
			break;
		}
		l = nl ? nl + 1 : NULL;
	}
	if (!pick)
		pick = r->err_len ? r->err : "no message";
	for (char *c = pick; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			*c = '?';
	return pick;
}

static void kill_wait(pid_t pid, int *status, int do_kill)
{
	if (do_kill)
		kill(pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
}

/* Run QEMU with @p accel ("kvm", "tcg" or "kvm:tcg") on connection
 * @p *nbdp (handed over to QEMU and closed here) until the run ends or @p deadline.  0, or an error when QEMU
 * could not be started. */
static int run_qemu(struct run *r, const char *qemu, const char *accel,
		    int *nbdp, double deadline)
{
	const vmb_hv_boot_request *req = r->req;
	char mem[32], drive[160], tmpenv[4200], name[48];
	const char *argv[48];
	char **envp;
	int out[2] = { -1, -1 }, err[2] = { -1, -1 }, devnull = -1;
	int n = 0, nenv = 0, rc = 0, open_fds, nbd = *nbdp;
	pid_t pid, parent = getpid();
	const char *tmp = req->scratch_dir ? req->scratch_dir :
			  getenv("TMPDIR") && *getenv("TMPDIR") ?
			  getenv("TMPDIR") : "/tmp";

	snprintf(mem, sizeof mem, "%u", req->memory_mb);
	/* named after us, so that a test can see it has gone with us */
	snprintf(name, sizeof name, "vmb-verify-%ld", (long)parent);
	snprintf(drive, sizeof drive, "file.driver=nbd,file.server.type=fd,"
		 "file.server.str=%d,file.export=" EXPORT ",format=raw,"
		 "if=ide,snapshot=on", NBD_FD);
	argv[n++] = qemu;
	argv[n++] = "-nodefaults";
	argv[n++] = "-no-user-config";
	argv[n++] = "-name";
	argv[n++] = name;
	if (strstr(accel, "kvm")) {
		argv[n++] = "-accel";
		argv[n++] = "kvm";
	}
	if (strstr(accel, "tcg")) {
		argv[n++] = "-accel";
		argv[n++] = "tcg";
	}
	argv[n++] = "-m";
	argv[n++] = mem;
	argv[n++] = "-smp";
	argv[n++] = "1";
	argv[n++] = "-nic";
	argv[n++] = "none";
	argv[n++] = "-display";
	argv[n++] = "none";
	argv[n++] = "-no-reboot";
	argv[n++] = "-boot";
	argv[n++] = "order=c";
	argv[n++] = "-sandbox";
	argv[n++] = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
		    "resourcecontrol=deny";
	argv[n++] = "-drive";
	argv[n++] = drive;
	argv[n++] = "-serial";
	argv[n++] = "stdio";
	argv[n] = NULL;

	/* the environment, with TMPDIR for -snapshot's overlay */
	while (environ[nenv])
		nenv++;
	if (!(envp = calloc((size_t)nenv + 2, sizeof *envp)))
		return vmb_error_set(VMB_ENOMEM, "qemu runner: out of memory");
	n = 0;
	for (int i = 0; i < nenv; i++)
		if (strncmp(environ[i], "TMPDIR=", 7))
			envp[n++] = environ[i];
	snprintf(tmpenv, sizeof tmpenv, "TMPDIR=%s", tmp);
	envp[n++] = tmpenv;
	envp[n] = NULL;

	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) ||
	    (devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		rc = vmb_error_set(VMB_EIO, "qemu runner: pipe: %s",
				   strerror(errno));
		goto out;
	}
	r->t0 = now();
	pid = fork();
	if (pid < 0) {
		rc = vmb_error_set(VMB_EIO, "qemu runner: fork: %s",
				   strerror(errno));
		goto out;
	}
	if (pid == 0) {
		/* the child: async-signal-safe calls only */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (dup2(devnull, 0) < 0 || dup2(out[1], 1) < 0 ||
		    dup2(err[1], 2) < 0 || dup2(nbd, NBD_FD) < 0)
			_exit(127);
		if (nbd == NBD_FD)
			fcntl(NBD_FD, F_SETFD, 0);
		close_range(NBD_FD + 1, ~0u, 0);
		execve(qemu, (char *const *)argv, envp);
		_exit(127);
	}
	/* QEMU holds the connection now: when it dies, the server sees it */
	close(nbd);
	*nbdp = -1;
	close(out[1]);
	close(err[1]);
	out[1] = err[1] = -1;
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);

	open_fds = 2;
	while (r->end == END_NONE && open_fds) {
		struct pollfd pf[2] = { { out[0], POLLIN, 0 },
					{ err[0], POLLIN, 0 } };
		double left = deadline - now();
		char buf[65536];
		if (left <= 0) {
			finish(r, END_TIMEOUT);
			break;
		}
		if (poll(pf, 2, left > 1 ? 1000 : (int)(left * 1000) + 1) < 0 &&
		    errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			ssize_t got;
			if (pf[i].fd < 0 || !pf[i].revents)
				continue;
			got = read(pf[i].fd, buf, sizeof buf);
			if (got > 0 && i == 0)
				console(r, buf, (size_t)got);
			else if (got > 0)
				qemu_stderr(r, buf, (size_t)got);
			else if (got == 0 || errno != EAGAIN) {
				close(i ? err[0] : out[0]);
				if (i)
					err[0] = -1;
				else
					out[0] = -1;
				open_fds--;
			}
		}
	}
	/* QEMU is done when both pipes closed: wait for it; else kill it */
	kill_wait(pid, &r->status, r->end != END_NONE || open_fds);
	if (r->end == END_NONE) {
		finish(r, END_EXIT);
		if (!WIFEXITED(r->status) || WEXITSTATUS(r->status))
			r->end = END_FAILED;
	}
out:
	if (out[0] >= 0) close(out[0]);
	if (out[1] >= 0) close(out[1]);
	if (err[0] >= 0) close(err[0]);
	if (err[1] >= 0) close(err[1]);
	if (devnull >= 0) close(devnull);
	free(envp);
	return rc;
}

/* ---- the plugin ---- */

static int qemu_open(const char *uri, void **handle)
{
	(void)uri;
	*handle = NULL;
	return 0;
}

static void qemu_close(void *handle)
{
	(void)handle;
}

static void run_reset(struct run *r)
{
	free(r->con);
	r->con = NULL;
	r->len = r->cap = r->checked = r->err_len = r->tail_len = 0;
	r->total = 0;
	r->err[0] = 0;
	r->fell_back = 0;
	r->end = END_NONE;
}

static int qemu_boot(void *handle, const vmb_hv_boot_request *req,
		     vmb_hv_boot_report *rep)
{
	char qemu[4096], note[96] = "";
	const char *vcpu = req->vcpu, *accel;
	struct export e = { NULL, { -1, -1 } };
	struct run r;
	double deadline;
	int rc, retry;
	(void)handle;

	memset(&r, 0, sizeof r);
	r.req = req;
	if (find_qemu(qemu, sizeof qemu))
		return vmb_error_set(VMB_ENOTFOUND, "qemu runner: %s not found "
				     "(apt-get install qemu-system-x86, or set "
				     "VMB_QEMU)", getenv("VMB_QEMU") &&
				     *getenv("VMB_QEMU") ? getenv("VMB_QEMU") :
				     "qemu-system-x86_64 in PATH");
	if (vcpu && strcmp(vcpu, "kvm") && strcmp(vcpu, "tcg"))
		return vmb_error_set(VMB_EINVAL, "qemu runner: no vCPU '%s' "
				     "(kvm or tcg)", vcpu);
	if (vcpu && !strcmp(vcpu, "kvm") && !kvm_usable())
		return vmb_error_set(VMB_ENOTSUP, "qemu runner: --vcpu kvm, "
				     "but /dev/kvm cannot be opened: %s",
				     strerror(errno));
	accel = vcpu ? vcpu : kvm_usable() ? "kvm:tcg" : "tcg";
	retry = !vcpu && !strcmp(accel, "kvm:tcg");
	if (req->expect) {
		if (regcomp(&r.re, req->expect, REG_EXTENDED | REG_NOSUB))
			return vmb_error_set(VMB_EINVAL, "qemu runner: bad "
					     "--expect regex");
		r.have_re = 1;
	}
	rc = export_open(req->disk, req->scratch_dir ? req->scratch_dir :
			 getenv("TMPDIR") && *getenv("TMPDIR") ?
			 getenv("TMPDIR") : "/tmp", retry ? 2 : 1, &e);
	deadline = now() + req->timeout;
	if (!rc)
		rc = run_qemu(&r, qemu, accel, &e.fd[0], deadline);
	if (!rc && r.end == END_KVM_ERROR && retry) {
		snprintf(note, sizeof note, " (KVM could not run the guest, "
			 "a KVM internal error: TCG ran it)");
		run_reset(&r);
		accel = "tcg";
		rc = run_qemu(&r, qemu, accel, &e.fd[1], deadline);
	}
	export_close(&e);
	if (!rc && r.end == END_FAILED)
		rc = vmb_error_set(VMB_EIO, "qemu runner: QEMU failed (%s %d): "
				   "%.200s", WIFEXITED(r.status) ? "exit" :
				   "signal", WIFEXITED(r.status) ?
				   WEXITSTATUS(r.status) : WTERMSIG(r.status),
				   qemu_message(&r));
	if (rc)
		goto out;

	snprintf(rep->vcpu, sizeof rep->vcpu, "%s",
		 !strcmp(accel, "tcg") || r.fell_back ? "tcg" : "kvm");
	switch (r.end) {
	case END_MATCH:
		rep->booted = 1;
		snprintf(rep->reason, sizeof rep->reason, "the serial console "
			 "showed /%.100s/ after %.1f s%s", req->expect,
			 r.t_end - r.t0, note);
		break;
	case END_TIMEOUT:
		rep->booted = !r.have_re && r.total > 0;
		snprintf(rep->reason, sizeof rep->reason, "timeout after %.0f "
			 "s%s%.100s%s%s", req->timeout, r.have_re ? ", without /"
			 : "", r.have_re ? req->expect : "", r.have_re ?
			 "/ on the console" : rep->booted ? ", the guest "
			 "running and printing" : ", the guest printed "
			 "nothing", note);
		break;
	case END_EXIT:
		rep->booted = !r.have_re && r.total > 0;
		snprintf(rep->reason, sizeof rep->reason, "the guest powered "
			 "off or reset after %.1f s%s%.100s%s%s",
			 r.t_end - r.t0, r.have_re ? ", without /" : "",
			 r.have_re ? req->expect : "", r.have_re ?
			 "/ on the console" : rep->booted ? "" :
			 ", printing nothing", note);
		break;
	case END_FLOOD:
		snprintf(rep->reason, sizeof rep->reason, "console flood: the "
			 "guest printed more than %zu bytes%s",
			 req->console_limit, note);
		break;
	case END_KVM_ERROR:
		snprintf(rep->reason, sizeof rep->reason, "KVM could not run "
			 "the guest (a KVM internal error; --vcpu tcg runs it "
			 "in software)");
		break;
	default:
		snprintf(rep->reason, sizeof rep->reason, "QEMU stopped");
		break;
	}
	rep->console = r.con ? r.con : calloc(1, 1);
	rep->console_len = r.len;
	rep->console_total = r.total;
	r.con = NULL;
out:
	free(r.con);
	if (r.have_re)
		regfree(&r.re);
	return rc;
}

static const vmb_hv_plugin plugin = {
	.struct_size = sizeof plugin,
	.api_version = VMB_HV_API_VERSION,
	.name = "qemu",
	.version = "1",
	.description = "boot runner: a whole OS under QEMU (KVM or TCG), the "
		       "disk served over NBD from the repository",
	.features = VMB_HV_F_BOOT,
	.open = qemu_open,
	.close = qemu_close,
	.boot = qemu_boot,
};

VMB_HV_REGISTER_PLUGIN(qemu, plugin)
