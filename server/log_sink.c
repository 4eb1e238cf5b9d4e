/* log_sink: a queue and a thread in front of the embedding's sink; see
 * log_sink.h. */
#include "log_sink.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct log_sink *sink;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER; /* the queue or idle changed */
static struct log_record *head, **tail = &head;
static bool running; /* this process has its thread */
static bool started; /* that thread has finished starting */
static bool busy;    /* the thread is emitting a batch it took */
/* Held by the sink's thread while it emits a batch, and by the master
 * while it forks: emitting takes locks of the interpreter's (a file
 * object's buffer lock, released with the GIL during the write) that a
 * child would otherwise inherit held, by a thread it does not have. Taken
 * before the GIL, always. */
static pthread_mutex_t emit_mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local bool bypass;

static void *pump(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    started = true;
    pthread_cond_broadcast(&cv);
    for (;;) {
        while (!head)
            pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
        /* What emitting needs first, and only then the batch: a thread
         * that holds the GIL at exit may then take the batch itself. */
        pthread_mutex_lock(&emit_mu);
        sink->acquire();
        pthread_mutex_lock(&mu);
        struct log_record *batch = head;
        head = NULL;
        tail = &head;
        busy = batch != NULL;
        pthread_mutex_unlock(&mu);
        for (struct log_record *r = batch, *next; r; r = next) {
            next = r->next;
            if (r->access)
                sink->access(r->client, r->method, r->target, r->http_version, r->status);
            else
                sink->message(r->level, r->text);
            free(r);
        }
        sink->release();
        pthread_mutex_unlock(&emit_mu);
        pthread_mutex_lock(&mu);
        busy = false;
        pthread_cond_broadcast(&cv);
    }
    return NULL;
}

/* Under mu. The thread blocks every signal: they belong to the loop. */
static bool ensure_running(void)
{
    if (running)
        return true;
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pthread_t t;
    pthread_attr_t attr;
    bool ok = pthread_attr_init(&attr) == 0;
    if (ok) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        ok = pthread_create(&t, &attr, pump, NULL) == 0;
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    running = ok;
    return ok;
}

/* fork(): the child has no thread of ours, and what is queued is the
 * parent's to emit. */
static void before_fork(void)
{
    pthread_mutex_lock(&mu);
}

static void after_fork_parent(void)
{
    pthread_mutex_unlock(&mu);
}

static void after_fork_child(void)
{
    for (struct log_record *r = head, *next; r; r = next) {
        next = r->next;
        free(r);
    }
    head = NULL;
    tail = &head;
    running = started = busy = false;
    pthread_mutex_init(&mu, NULL);
    pthread_mutex_init(&emit_mu, NULL);
    pthread_cond_init(&cv, NULL);
}

int log_sink_install(const struct log_sink *s)
{
    if (pthread_atfork(before_fork, after_fork_parent, after_fork_child) != 0)
        return -1;
    sink = s;
    return 0;
}

void log_sink_fork_begin(void)
{
    if (!sink)
        return;
    /* A thread still starting allocates (its stack's attributes), and not
     * every allocator takes its locks across fork(2) (the address
     * sanitizer's does not): the child could inherit one held. */
    pthread_mutex_lock(&mu);
    while (running && !started)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    pthread_mutex_lock(&emit_mu);
}

void log_sink_fork_end(void)
{
    if (sink)
        pthread_mutex_unlock(&emit_mu);
}

bool log_sink_active(void)
{
    return sink && !bypass;
}

void log_sink_bypass_thread(void)
{
    bypass = true;
}

static bool push(struct log_record *r)
{
    pthread_mutex_lock(&mu);
    bool ok = ensure_running();
    if (ok) {
        r->next = NULL;
        *tail = r;
        tail = &r->next;
        pthread_cond_broadcast(&cv);
    }
    pthread_mutex_unlock(&mu);
    if (!ok)
        free(r);
    return ok;
}

static const char *copy_in(char **p, const char *s, size_t n)
{
    char *start = *p;
    memcpy(start, s, n);
    start[n] = '\0';
    *p += n + 1;
    return start;
}

bool log_sink_message(int level, const char *text)
{
    size_t n = strlen(text);
    struct log_record *r = malloc(sizeof *r + n + 1);
    if (!r)
        return false;
    memset(r, 0, sizeof *r);
    char *p = r->buf;
    r->level = level;
    r->text = copy_in(&p, text, n);
    return push(r);
}

bool log_sink_access(const char *client, const char *method, size_t method_len, const char *target,
                     size_t target_len, const char *http_version, int status)
{
    size_t cn = strlen(client), vn = strlen(http_version);
    struct log_record *r = malloc(sizeof *r + cn + method_len + target_len + vn + 4);
    if (!r)
        return false;
    memset(r, 0, sizeof *r);
    char *p = r->buf;
    r->access = true;
    r->status = status;
    r->client = copy_in(&p, client, cn);
    r->method = copy_in(&p, method, method_len);
    r->target = copy_in(&p, target, target_len);
    r->http_version = copy_in(&p, http_version, vn);
    return push(r);
}

struct wait_idle {
    struct timespec deadline;
    bool timed_out;
};

/* Waits (mu not held) until the sink's thread has no batch in hand. */
static void wait_idle(void *arg)
{
    struct wait_idle *w = arg;
    pthread_mutex_lock(&mu);
    while (busy && !w->timed_out)
        w->timed_out = pthread_cond_timedwait(&cv, &mu, &w->deadline) == ETIMEDOUT;
    pthread_mutex_unlock(&mu);
}

void log_sink_drain(double timeout, log_record_fn fallback)
{
    if (!sink)
        return;
    struct wait_idle w = {.timed_out = false};
    clock_gettime(CLOCK_REALTIME, &w.deadline);
    w.deadline.tv_sec += (time_t)timeout;
    w.deadline.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
    if (w.deadline.tv_nsec >= 1000000000L) {
        w.deadline.tv_sec++;
        w.deadline.tv_nsec -= 1000000000L;
    }
    bool here = sink->held();
    pthread_mutex_lock(&mu);
    if (here) {
        /* This thread holds the GIL (the worker's loop thread after the
         * app's shutdown): it emits the rest itself, once the sink's
         * thread has finished the batch it may have in hand (it gave the
         * GIL up while writing). */
        while (busy && !w.timed_out) {
            pthread_mutex_unlock(&mu);
            sink->without(wait_idle, &w);
            pthread_mutex_lock(&mu);
        }
    } else {
        while (running && (head || busy) && !w.timed_out)
            w.timed_out = pthread_cond_timedwait(&cv, &mu, &w.deadline) == ETIMEDOUT;
    }
    struct log_record *rest = head;
    head = NULL;
    tail = &head;
    pthread_mutex_unlock(&mu);
    for (struct log_record *r = rest, *next; r; r = next) {
        next = r->next;
        if (here) {
            if (r->access)
                sink->access(r->client, r->method, r->target, r->http_version, r->status);
            else
                sink->message(r->level, r->text);
        } else {
            fallback(r);
        }
        free(r);
    }
}
