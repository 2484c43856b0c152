/*
 * vmb_serve: the listening socket, one thread per client, and the
 * exports of a snapshot (include/vmbackup/serve.h, docs/serve.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "common/util.h"
#include "vmbackup/serve.h"
#include "nbd.h"

#define DEFAULT_CACHE (64u << 20)
#define DEFAULT_CLIENTS 64

struct vmb_serve {
	nbd_export *ex;
	char **uris;
	size_t nex;
	vmb_disk **owned;     /* disks we close (cache, overlay view) */
	size_t nowned;
	struct vmb_cache **caches;
	vmb_snapshot *snap;
	int lfd;
	char *sock_path;
	int port;
	int stop_pipe[2];
	int max_clients;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int nconn;
	int *conn_fd;         /* max_clients slots, -1 = free */
	int stopping;
	uint64_t connections, requests;
	pthread_t thread;
	int thread_running;
};

/* ---- socket I/O for a session ---- */

struct sockio {
	int fd;
};

static int sock_recv(void *ctx, void *buf, size_t len)
{
	struct sockio *s = ctx;
	uint8_t *p = buf;
	while (len) {
		ssize_t n = recv(s->fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int sock_send(void *ctx, const void *buf, size_t len, int more)
{
	struct sockio *s = ctx;
	const uint8_t *p = buf;
	while (len) {
		/* MSG_NOSIGNAL: a client gone mid-reply is EPIPE, not a
		 * SIGPIPE that kills the server */
		ssize_t n = send(s->fd, p, len,
				 MSG_NOSIGNAL | (more ? MSG_MORE : 0));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

struct conn {
	vmb_serve *s;
	int slot;
};

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	vmb_serve *s = c->s;
	struct sockio sio = { s->conn_fd[c->slot] };
	nbd_io io = { &sio, sock_recv, sock_send };
	uint64_t n = vmb_nbd_session(s->ex, s->nex, &io);
	vmb_error_clear();
	pthread_mutex_lock(&s->lock);
	close(s->conn_fd[c->slot]);
	s->conn_fd[c->slot] = -1;
	s->nconn--;
	s->requests += n;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	free(c);
	return NULL;
}

static void accept_one(vmb_serve *s)
{
	int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC), slot = -1;
	struct conn *c;
	pthread_t t;
	pthread_attr_t attr;
	if (fd < 0)
		return;
	if (s->port) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->max_clients && slot < 0; i++)
		if (s->conn_fd[i] < 0)
			slot = i;
	if (slot < 0 || s->stopping) {
		pthread_mutex_unlock(&s->lock);
		close(fd); /* too many clients: this one is turned away */
		return;
	}
	s->conn_fd[slot] = fd;
	s->nconn++;
	s->connections++;
	pthread_mutex_unlock(&s->lock);
	c = malloc(sizeof *c);
	if (c) {
		c->s = s;
		c->slot = slot;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (!c || pthread_create(&t, &attr, conn_main, c) != 0) {
		free(c);
		pthread_mutex_lock(&s->lock);
		close(fd);
		s->conn_fd[slot] = -1;
		s->nconn--;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_attr_destroy(&attr);
}

VMB_EXTERN(int) vmb_serve_run(vmb_serve *s)
{
	for (;;) {
		struct pollfd p[2] = { { s->lfd, POLLIN, 0 },
				       { s->stop_pipe[0], POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN)
			accept_one(s);
	}
	/* hang up on every client and wait for their threads */
	pthread_mutex_lock(&s->lock);
	s->stopping = 1;
	for (int i = 0; i < s->max_clients; i++)
		if (s->conn_fd[i] >= 0)
			shutdown(s->conn_fd[i], SHUT_RDWR);
	while (s->nconn)
		pthread_cond_wait(&s->cv, &s->lock);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void *run_main(void *arg)
{
	vmb_serve_run(arg);
	return NULL;
}

VMB_EXTERN(int) vmb_serve_start(vmb_serve *s)
{
	if (s->thread_running)
		return vmb_error_set(VMB_EINVAL, "server already started");
	if (pthread_create(&s->thread, NULL, run_main, s) != 0)
		return vmb_error_set(VMB_ENOMEM, "cannot start server thread");
	s->thread_running = 1;
	return 0;
}

VMB_EXTERN(void) vmb_serve_stop(vmb_serve *s)
{
	if (s) {
		char b = 1;
		ssize_t n = write(s->stop_pipe[1], &b, 1);
		(void)n;
	}
}

/* ---- setup ---- */

static int listen_on(vmb_serve *s, const vmb_serve_options *o)
{
	int fd;
	if (o->socket_path) {
		struct sockaddr_un a;
		struct stat st;
		memset(&a, 0, sizeof a);
		a.sun_family = AF_UNIX;
		size_t sl = strlen(o->socket_path);
		if (sl >= sizeof a.sun_path)
			return vmb_error_set(VMB_EINVAL, "socket path %s is too "
					     "long", o->socket_path);
		memcpy(a.sun_path, o->socket_path, sl + 1);
		if (lstat(o->socket_path, &st) == 0) {
			if (!S_ISSOCK(st.st_mode))
				return vmb_error_set(VMB_EEXISTS, "%s exists and "
						     "is not a socket",
						     o->socket_path);
			unlink(o->socket_path); /* a stale socket */
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
		    listen(fd, 64)) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			return vmb_error_set(VMB_EIO, "cannot listen on %s: %s",
					     o->socket_path, strerror(e));
		}
		s->sock_path = vmb_strdup(o->socket_path);
	} else {
		struct sockaddr_in a;
		socklen_t al = sizeof a;
		int one = 1;
		if (o->port < 0 || o->port > 65535)
			return vmb_error_set(VMB_EINVAL, "port %d out of range",
					     o->port);
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_port = htons((uint16_t)o->port);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0)
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
				   sizeof one);
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
		    listen(fd, 64) ||
		    getsockname(fd, (struct sockaddr *)&a, &al)) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			return vmb_error_set(VMB_EIO, "cannot listen on "
					     "127.0.0.1:%d: %s", o->port,
					     strerror(e));
		}
		s->port = ntohs(a.sin_port);
	}
	s->lfd = fd;
	return 0;
}

static int server_new(const vmb_serve_options *o, size_t nex, vmb_serve **out)
{
	vmb_serve *s = vmb_calloc(1, sizeof *s);
	*out = NULL;
	if (!s)
		return VMB_ENOMEM;
	s->lfd = -1;
	s->stop_pipe[0] = s->stop_pipe[1] = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->max_clients = o->max_clients > 0 ? o->max_clients : DEFAULT_CLIENTS;
	s->conn_fd = vmb_calloc((size_t)s->max_clients, sizeof(int));
	s->ex = vmb_calloc(nex ? nex : 1, sizeof *s->ex);
	s->uris = vmb_calloc(nex ? nex : 1, sizeof *s->uris);
	s->owned = vmb_calloc(2 * (nex ? nex : 1), sizeof *s->owned);
	s->caches = vmb_calloc(nex ? nex : 1, sizeof *s->caches);
	*out = s;
	if (!s->conn_fd || !s->ex || !s->uris || !s->owned || !s->caches)
		return VMB_ENOMEM;
	for (int i = 0; i < s->max_clients; i++)
		s->conn_fd[i] = -1;
	s->nex = nex;
	if (pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK))
		return vmb_error_set(VMB_EIO, "pipe: %s", strerror(errno));
	return 0;
}

static int finish(vmb_serve *s, const vmb_serve_options *o)
{
	int rc = listen_on(s, o);
	for (size_t i = 0; i < s->nex && !rc; i++) {
		if (s->sock_path)
			s->uris[i] = vmb_asprintf("nbd+unix:///%s?socket=%s",
						  s->ex[i].name, s->sock_path);
		else
			s->uris[i] = vmb_asprintf("nbd://127.0.0.1:%d/%s",
						  s->port, s->ex[i].name);
		if (!s->uris[i])
			rc = VMB_ENOMEM;
	}
	return rc;
}

static const vmb_serve_options *opts_or_default(const vmb_serve_options *o,
						vmb_serve_options *def)
{
	static const vmb_serve_options init = VMB_SERVE_OPTIONS_INIT;
	*def = init;
	return o ? o : def;
}

VMB_EXTERN(int) vmb_serve_open_disks(vmb_disk *const *disks,
				     const char *const *names, size_t n,
				     const vmb_serve_options *opts,
				     vmb_serve **out)
{
	vmb_serve_options def;
	const vmb_serve_options *o = opts_or_default(opts, &def);
	vmb_serve *s;
	int rc = server_new(o, n, &s);
	for (size_t i = 0; i < n && !rc; i++) {
		s->ex[i].disk = disks[i];
		s->ex[i].name = vmb_strdup(names[i]);
		if (!s->ex[i].name)
			rc = VMB_ENOMEM;
	}
	if (!rc)
		rc = finish(s, o);
	if (rc) {
		vmb_serve_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

/* Which disk indexes to export: all, or the one opts->disk names. */
static int pick_disk(const vmb_snapshot *snap, const char *want, size_t *idx)
{
	size_t n = vmb_snapshot_disk_count(snap);
	char *end;
	unsigned long v;
	for (size_t i = 0; i < n; i++)
		if (strcmp(vmb_snapshot_disk_name(snap, i), want) == 0) {
			*idx = i;
			return 0;
		}
	errno = 0;
	v = strtoul(want, &end, 10);
	if (*want >= '0' && *want <= '9' && !*end && !errno && v < n) {
		*idx = v;
		return 0;
	}
	return vmb_error_set(VMB_ENOTFOUND, "snapshot %.12s has no disk '%s'",
			     vmb_snapshot_id(snap), want);
}

VMB_EXTERN(int) vmb_serve_open(vmb_repo *r, const char *snap,
			       const vmb_serve_options *opts, vmb_serve **out)
{
	vmb_serve_options def;
	const vmb_serve_options *o = opts_or_default(opts, &def);
	vmb_snapshot *sn = NULL;
	vmb_serve *s = NULL;
	size_t first = 0, n;
	int rc;
	*out = NULL;
	rc = vmb_repo_snapshot_find(r, snap, &sn);
	if (rc)
		return rc;
	n = vmb_snapshot_disk_count(sn);
	if (o->disk) {
		rc = pick_disk(sn, o->disk, &first);
		n = 1;
	}
	if (!rc && n == 0)
		rc = vmb_error_set(VMB_ENOTFOUND, "snapshot %.12s has no disks",
				   vmb_snapshot_id(sn));
	if (!rc && o->overlay && n != 1)
		rc = vmb_error_set(VMB_EINVAL, "a writable export needs one "
				   "disk: snapshot %.12s has %zu (pick one)",
				   vmb_snapshot_id(sn), n);
	if (rc) {
		vmb_snapshot_free(sn);
		return rc;
	}
	rc = server_new(o, n, &s);
	if (s)
		s->snap = sn;
	else
		vmb_snapshot_free(sn);
	for (size_t k = 0; k < n && !rc; k++) {
		size_t i = first + k;
		const char *name = vmb_snapshot_disk_name(sn, i);
		uint32_t cs = vmb_snapshot_disk_chunk_size(sn, i);
		vmb_disk *d = NULL, *cached = NULL;
		rc = vmb_snapshot_disk_open(r, sn, name, &d);
		if (!rc)
			rc = vmb_cache_open(d, cs ? cs : (1u << 20),
					    o->cache_bytes ? o->cache_bytes
							   : DEFAULT_CACHE,
					    &cached, &s->caches[k]);
		if (rc) {
			vmb_disk_close(d);
			break;
		}
		s->owned[s->nowned++] = cached;
		s->ex[k].disk = cached;
		s->ex[k].name = vmb_strdup(name);
		s->ex[k].description = vmb_asprintf("%s of snapshot %.12s "
						    "(%s)", name,
						    vmb_snapshot_id(sn),
						    vmb_snapshot_vm(sn));
		if (!s->ex[k].name || !s->ex[k].description)
			rc = VMB_ENOMEM;
		if (!rc && o->overlay) {
			vmb_disk *view;
			rc = vmb_overlay_open(o->overlay, cached, vmb_repo_id(r),
					      vmb_snapshot_id(sn), name, 1,
					      &s->ex[k].ovl, &view);
			if (!rc) {
				/* the view goes first: closed before the
				 * cache it reads */
				s->owned[s->nowned - 1] = view;
				s->owned[s->nowned++] = cached;
				s->ex[k].disk = view;
			}
		}
	}
	if (!rc)
		rc = finish(s, o);
	if (rc) {
		vmb_serve_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

VMB_EXTERN(size_t) vmb_serve_export_count(const vmb_serve *s)
{
	return s ? s->nex : 0;
}

VMB_EXTERN(const char *) vmb_serve_export_name(const vmb_serve *s, size_t i)
{
	return s && i < s->nex ? s->ex[i].name : NULL;
}

VMB_EXTERN(const char *) vmb_serve_uri(const vmb_serve *s, size_t i)
{
	return s && i < s->nex ? s->uris[i] : NULL;
}

VMB_EXTERN(int) vmb_serve_port(const vmb_serve *s)
{
	return s ? s->port : 0;
}

VMB_EXTERN(void) vmb_serve_get_stats(vmb_serve *s, vmb_serve_stats *st)
{
	memset(st, 0, sizeof *st);
	pthread_mutex_lock(&s->lock);
	st->connections = s->connections;
	st->requests = s->requests;
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < s->nex; i++)
		if (s->caches[i]) {
			uint64_t h, m;
			size_t b;
			vmb_cache_stats(s->caches[i], &h, &m, &b);
			st->cache_hits += h;
			st->cache_misses += m;
			st->cache_bytes += b;
		}
}

VMB_EXTERN(void) vmb_serve_free(vmb_serve *s)
{
	if (!s)
		return;
	if (s->thread_running) {
		vmb_serve_stop(s);
		pthread_join(s->thread, NULL);
	} else if (s->conn_fd) {
		pthread_mutex_lock(&s->lock);
		while (s->nconn)
			pthread_cond_wait(&s->cv, &s->lock);
		pthread_mutex_unlock(&s->lock);
	}
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->sock_path) {
		unlink(s->sock_path);
		free(s->sock_path);
	}
	for (size_t i = 0; i < s->nowned; i++)
		vmb_disk_close(s->owned[i]);
	for (size_t i = 0; s->ex && i < s->nex; i++) {
		free(s->ex[i].name);
		free(s->ex[i].description);
		if (s->uris)
			free(s->uris[i]);
	}
	free(s->ex);
	free(s->uris);
	free(s->owned);
	free(s->caches);
	free(s->conn_fd);
	for (int i = 0; i < 2; i++)
		if (s->stop_pipe[i] >= 0)
			close(s->stop_pipe[i]);
	vmb_snapshot_free(s->snap);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cv);
	free(s);
}

/* ---- commit ---- */

VMB_EXTERN(int) vmb_serve_commit(vmb_repo *r, const char *overlay,
				 const vmb_backup_options *opts,
				 vmb_backup_result *result)
{
	char repo_id[65], snap_id[65], disk[257];
	uint64_t size;
	vmb_snapshot *sn = NULL;
	vmb_backup_source *src = NULL;
	vmb_disk **disks = NULL;
	struct vmb_overlay *ovl = NULL;
	vmb_backup_options bo = VMB_BACKUP_OPTIONS_INIT;
	size_t n = 0, hit = SIZE_MAX;
	const char *cfg_format = NULL;
	int rc = vmb_overlay_identify(overlay, repo_id, snap_id, disk, &size);
	if (rc)
		return rc;
	if (strcmp(repo_id, vmb_repo_id(r)) != 0)
		return vmb_error_set(VMB_EINVAL, "overlay %s belongs to "
				     "another repository (%s)", overlay,
				     repo_id);
	rc = vmb_repo_snapshot_find(r, snap_id, &sn);
	if (rc)
		return vmb_error_prefix("overlay %s: base snapshot", overlay);
	n = vmb_snapshot_disk_count(sn);
	src = vmb_calloc(n ? n : 1, sizeof *src);
	disks = vmb_calloc(2 * (n ? n : 1), sizeof *disks);
	if (!src || !disks)
		rc = VMB_ENOMEM;
	for (size_t i = 0; i < n && !rc; i++) {
		const char *name = vmb_snapshot_disk_name(sn, i);
		rc = vmb_snapshot_disk_open(r, sn, name, &disks[i]);
		if (rc)
			break;
		src[i].name = name;
		src[i].disk = disks[i];
		if (strcmp(name, disk) == 0) {
			vmb_disk *view;
			hit = i;
			rc = vmb_overlay_open(overlay, disks[i], repo_id,
					      snap_id, disk, 0, &ovl, &view);
			if (!rc) {
				disks[n + i] = view;
				src[i].disk = view;
			}
		}
	}
	if (!rc && hit == SIZE_MAX)
		rc = vmb_error_set(VMB_ENOTFOUND, "overlay %s: snapshot %.12s "
				   "has no disk '%s'", overlay, snap_id, disk);
	if (!rc) {
		if (opts)
			bo = *opts;
		if (!bo.vm)
			bo.vm = vmb_snapshot_vm(sn);
		if (!bo.tags) {
			bo.ntags = vmb_snapshot_tag_count(sn);
			/* the tag strings are an array inside the snapshot;
			 * copy their pointers */
			const char **t = vmb_calloc(bo.ntags + 1, sizeof *t);
			for (size_t i = 0; t && i < bo.ntags; i++)
				t[i] = vmb_snapshot_tag(sn, i);
			if (!t)
				bo.ntags = 0;
			bo.tags = t;
		}
		if (!bo.config) {
			bo.config = vmb_snapshot_config(sn, &cfg_format);
			bo.config_format = cfg_format;
		}
		rc = vmb_repo_backup(r, src, n, &bo, result);
		if (!opts || !opts->tags)
			free((void *)bo.tags);
	}
	for (size_t i = 0; disks && i < 2 * n; i++) {
		size_t k = (i + n) % (2 * n); /* views before their base */
		vmb_disk_close(disks[k]);
	}
	free(disks);
	free(src);
	vmb_snapshot_free(sn);
	return rc;
}
