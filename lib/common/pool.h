/* Internal: a fixed thread pool with a bounded job queue.  submit()
 * blocks while the queue is full, which bounds memory in pipelines. */
#ifndef VMB_LIB_COMMON_POOL_H
#define VMB_LIB_COMMON_POOL_H

typedef struct vmb_pool vmb_pool;
/* A job; @worker is 0..nthreads-1 (index for per-worker state). */
typedef void (*vmb_job_fn)(void *arg, int worker);

int vmb_pool_new(int nthreads, int queue_cap, vmb_pool **out);
int vmb_pool_submit(vmb_pool *p, vmb_job_fn fn, void *arg);
/* Wait until every submitted job has finished. */
void vmb_pool_wait(vmb_pool *p);
void vmb_pool_free(vmb_pool *p); /* waits, joins; NULL ok */
int vmb_pool_threads(const vmb_pool *p);
/* Number of worker threads to use by default ($VMB_THREADS or cores). */
int vmb_pool_default_threads(void);

#endif
