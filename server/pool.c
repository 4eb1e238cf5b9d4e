/* pool: a fixed-ceiling set of pthreads that run blocking jobs off the loop.
 *
 * The pool owns its threads, the mutex and condition variable that guard the
 * FIFO job queue and the counters, and the array of thread ids it joins on
 * pool_free. Jobs belong to the caller; the pool links them through their
 * next field while queued and posts their embedded mailbox message to hand
 * done back to the loop thread. Threads are started lazily on the loop thread
 * and only when the queue holds more jobs than there are idle threads to take
 * them, so a quiet worker process costs no threads. Pool threads block every
 * signal, leaving signal delivery to the loop thread. */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "metrics.h"

#define POOL_STACK_SIZE  (1024 * 1024)
#define POOL_THREAD_NAME "evicorn-pool"

struct pool {
    struct mailbox *mb;
    pthread_mutex_t lock; /* guards everything below except max and tids */
    pthread_cond_t wake;  /* idle threads wait here for a job or for stopping */
    struct pool_job *head;
    struct pool_job **tail; /* &head when empty */
    unsigned max;
    unsigned threads; /* started; written only by the loop thread */
    unsigned idle;    /* threads waiting on wake */
    unsigned busy;    /* threads running a job */
    unsigned queued;  /* jobs in the queue */
    int stopping;
    pthread_t *tids; /* max entries, the first threads of them started */
};

/* Lock, unlock, wait and signal only fail on corrupted state, where carrying
 * on would lose jobs or deadlock; stop the process instead. */
static void check_pthread(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "evicorn: pool: %s: %s\n", what, strerror(rc));
        abort();
    }
}

static void lock(struct pool *p)
{
    check_pthread(pthread_mutex_lock(&p->lock), "pthread_mutex_lock");
}

static void unlock(struct pool *p)
{
    check_pthread(pthread_mutex_unlock(&p->lock), "pthread_mutex_unlock");
}

/* Runs on the loop thread: hands the finished job to its owner. */
static void deliver_done(struct mailbox_msg *msg)
{
    struct pool_job *job = container_of(msg, struct pool_job, msg);
    job->done(job);
}

static void *worker_main(void *arg)
{
    struct pool *p = arg;

    (void)pthread_setname_np(pthread_self(), POOL_THREAD_NAME); /* cosmetic only */
    lock(p);
    for (;;) {
        while (!p->head && !p->stopping) {
            p->idle++;
            check_pthread(pthread_cond_wait(&p->wake, &p->lock), "pthread_cond_wait");
            p->idle--;
        }
        if (!p->head)
            break; /* stopping and nothing left to run */
        struct pool_job *job = p->head;
        p->head = job->next;
        if (!p->head)
            p->tail = &p->head;
        p->queued--;
        p->busy++;
        metrics_pool_state(p->busy, p->queued);
        unlock(p);

        void (*done)(struct pool_job *) = job->done;
        job->work(job);

        lock(p);
        p->busy--;
        metrics_pool_state(p->busy, p->queued);
        /* Posted with the lock held, so by the time done runs this thread
         * counts as not busy, and as idle once it waits again. */
        if (done) {
            job->msg.fn = deliver_done;
            mailbox_post(p->mb, &job->msg);
        }
    }
    unlock(p);
    return NULL;
}

/* Called with p->lock held on the loop thread. Returns 0 or an errno value. */
static int start_thread(struct pool *p)
{
    pthread_attr_t attr;
    sigset_t all, saved;

    int rc = pthread_attr_init(&attr);
    if (rc != 0)
        return rc;
    rc = pthread_attr_setstacksize(&attr, POOL_STACK_SIZE);
    if (rc == 0 && sigfillset(&all) != 0)
        rc = errno;
    /* The new thread inherits the creator's mask: block everything around
     * pthread_create so signals only ever reach the loop thread. */
    if (rc == 0)
        rc = pthread_sigmask(SIG_SETMASK, &all, &saved);
    if (rc == 0) {
        rc = pthread_create(&p->tids[p->threads], &attr, worker_main, p);
        /* Leaving the loop thread with every signal blocked is not
         * recoverable. */
        check_pthread(pthread_sigmask(SIG_SETMASK, &saved, NULL), "pthread_sigmask");
        if (rc == 0)
            p->threads++;
    }
    check_pthread(pthread_attr_destroy(&attr), "pthread_attr_destroy");
    return rc;
}

struct pool *pool_new(struct mailbox *mb, unsigned max_threads)
{
    if (!mb || max_threads == 0) {
        errno = EINVAL;
        return NULL;
    }
    struct pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    int rc = ENOMEM;
    p->tids = calloc(max_threads, sizeof(*p->tids));
    if (!p->tids)
        goto fail;
    rc = pthread_mutex_init(&p->lock, NULL);
    if (rc != 0)
        goto fail;
    rc = pthread_cond_init(&p->wake, NULL);
    if (rc != 0) {
        check_pthread(pthread_mutex_destroy(&p->lock), "pthread_mutex_destroy");
        goto fail;
    }
    p->mb = mb;
    p->max = max_threads;
    p->head = NULL;
    p->tail = &p->head;
    return p;

fail:
    free(p->tids);
    free(p);
    errno = rc; /* set last: free may clobber errno */
    return NULL;
}

int pool_submit(struct pool *p, struct pool_job *job)
{
    if (!job || !job->work) {
        errno = EINVAL;
        return -1;
    }
    lock(p);
    /* Start a thread only for a job no idle thread is left to take; idle
     * threads already signalled still count as idle until they wake. */
    if (p->queued + 1 > p->idle && p->threads < p->max) {
        int rc = start_thread(p);
        if (rc != 0 && p->threads == 0) {
            unlock(p);
            errno = rc;
            return -1;
        }
        /* With a thread running, the job simply waits its turn. */
    }
    job->next = NULL;
    *p->tail = job;
    p->tail = &job->next;
    p->queued++;
    metrics_pool_state(p->busy, p->queued);
    if (p->idle > 0)
        check_pthread(pthread_cond_signal(&p->wake), "pthread_cond_signal");
    unlock(p);
    return 0;
}

/* The counters change on pool threads, so reads take the lock even though
 * the interface is const. */
static unsigned read_count(const struct pool *p, const unsigned *field)
{
    struct pool *mp = (struct pool *)p;
    lock(mp);
    unsigned n = *field;
    unlock(mp);
    return n;
}

unsigned pool_threads(const struct pool *p)
{
    return read_count(p, &p->threads);
}

unsigned pool_busy(const struct pool *p)
{
    return read_count(p, &p->busy);
}

unsigned pool_queued(const struct pool *p)
{
    return read_count(p, &p->queued);
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    lock(p);
    p->stopping = 1;
    /* Threads drain the queue before they notice stopping, so queued jobs
     * still run. */
    check_pthread(pthread_cond_broadcast(&p->wake), "pthread_cond_broadcast");
    unlock(p);
    for (unsigned i = 0; i < p->threads; i++)
        check_pthread(pthread_join(p->tids[i], NULL), "pthread_join");
    check_pthread(pthread_cond_destroy(&p->wake), "pthread_cond_destroy");
    check_pthread(pthread_mutex_destroy(&p->lock), "pthread_mutex_destroy");
    free(p->tids);
    free(p);
}
