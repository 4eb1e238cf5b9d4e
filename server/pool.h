/* A worker's thread pool for blocking work.
 *
 * Sync HTTP handlers and offloaded blocking functions run on pool threads;
 * their completions come back to the loop thread through a mailbox. Jobs are
 * intrusive (embedded in the caller's own struct), so queueing never
 * allocates. */
#ifndef EVICORN_POOL_H
#define EVICORN_POOL_H

#include "mailbox.h"

struct pool;

struct pool_job {
    void (*work)(struct pool_job *); /* runs on a pool thread; may block */
    void (*done)(struct pool_job *); /* runs afterwards on the loop thread (may be NULL) */
    struct pool_job *next;           /* private */
    struct mailbox_msg msg;          /* private: used to deliver done */
};

/* Loop thread. Threads are started lazily, up to max_threads (>= 1), only when
 * a job is queued and no thread is idle; idle threads wait on a condition
 * variable. done callbacks are posted to mb. NULL with errno set on failure
 * (EINVAL for max_threads == 0 or a NULL mb). */
struct pool *pool_new(struct mailbox *mb, unsigned max_threads);

/* Loop thread. Queues the job (FIFO). Returns 0, or -1 if no thread exists
 * and none can be started (the job is not queued; errno says why). When a
 * thread already exists, failing to start another is not an error: the job
 * waits for a thread to become free.
 *
 * The job must stay valid until done runs. done is read before work runs;
 * when it is NULL the pool does not touch the job after work returns, so work
 * may free it. */
int pool_submit(struct pool *p, struct pool_job *job);

/* Loop thread: counts for status pages and tests. */
unsigned pool_threads(const struct pool *p); /* threads started */
unsigned pool_busy(const struct pool *p);    /* threads running a job now */
unsigned pool_queued(const struct pool *p);  /* jobs waiting for a thread */

/* Loop thread. Stops taking jobs, lets running AND queued jobs finish, joins
 * all threads, then frees (NULL is a no-op). Their done callbacks are not run
 * by pool_free (they are in the mailbox; the caller may mailbox_drain after).
 * It blocks the loop thread, so jobs must not wait for the loop meanwhile. */
void pool_free(struct pool *p);

#endif
