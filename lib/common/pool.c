#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include "pool.h"
#include "util.h"

struct job {
	vmb_job_fn fn;
	void *arg;
};

struct worker_arg {
	vmb_pool *p;
	int idx;
};

struct vmb_pool {
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full, idle;
	struct job *q;
	int cap, head, count, running, stop;
	int nthreads;
	pthread_t *threads;
	struct worker_arg *args;
};

static void *worker(void *a)
{
	struct worker_arg *wa = a;
	vmb_pool *p = wa->p;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->count && !p->stop)
			pthread_cond_wait(&p->not_empty, &p->lock);
		if (!p->count && p->stop)
			break;
		struct job j = p->q[p->head];
		p->head = (p->head + 1) % p->cap;
		p->count--;
		p->running++;
		pthread_cond_signal(&p->not_full);
		pthread_mutex_unlock(&p->lock);
		j.fn(j.arg, wa->idx);
		pthread_mutex_lock(&p->lock);
		p->running--;
		if (!p->count && !p->running)
			pthread_cond_broadcast(&p->idle);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int vmb_pool_default_threads(void)
{
	const char *e = getenv("VMB_THREADS");
	long n = e ? strtol(e, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > 64)
		n = 64;
	return (int)n;
}

int vmb_pool_new(int nthreads, int queue_cap, vmb_pool **out)
{
	vmb_pool *p = vmb_calloc(1, sizeof *p);
	*out = NULL;
	if (!p)
		return VMB_ENOMEM;
	if (nthreads < 1)
		nthreads = 1;
	if (queue_cap < 1)
		queue_cap = 1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->not_empty, NULL);
	pthread_cond_init(&p->not_full, NULL);
	pthread_cond_init(&p->idle, NULL);
	p->cap = queue_cap;
	p->q = vmb_calloc((size_t)queue_cap, sizeof *p->q);
	p->threads = vmb_calloc((size_t)nthreads, sizeof *p->threads);
	p->args = vmb_calloc((size_t)nthreads, sizeof *p->args);
	if (!p->q || !p->threads || !p->args) {
		vmb_pool_free(p);
		return VMB_ENOMEM;
	}
	for (int i = 0; i < nthreads; i++) {
		p->args[i].p = p;
		p->args[i].idx = i;
		if (pthread_create(&p->threads[i], NULL, worker, &p->args[i])) {
			vmb_pool_free(p);
			return vmb_error_set(VMB_ENOMEM,
					     "cannot start worker threads");
		}
		p->nthreads++;
	}
	*out = p;
	return 0;
}

int vmb_pool_threads(const vmb_pool *p)
{
	return p->nthreads;
}

int vmb_pool_submit(vmb_pool *p, vmb_job_fn fn, void *arg)
{
	pthread_mutex_lock(&p->lock);
	while (p->count == p->cap)
		pthread_cond_wait(&p->not_full, &p->lock);
	p->q[(p->head + p->count) % p->cap] = (struct job){ fn, arg };
	p->count++;
	pthread_cond_signal(&p->not_empty);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

void vmb_pool_wait(vmb_pool *p)
{
	pthread_mutex_lock(&p->lock);
	while (p->count || p->running)
		pthread_cond_wait(&p->idle, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

void vmb_pool_free(vmb_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_broadcast(&p->not_empty);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->not_empty);
	pthread_cond_destroy(&p->not_full);
	pthread_cond_destroy(&p->idle);
	free(p->q);
	free(p->threads);
	free(p->args);
	free(p);
}
