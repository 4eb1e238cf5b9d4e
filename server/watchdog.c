/* watchdog: a per-worker thread that names plugin code holding the event
 * loop, and ends the worker when it will not let go; see watchdog.h.
 *
 * Why a thread: a loop that is blocked cannot time itself. The existing
 * slow-callback warning (plugin_run) fires only once a callback has
 * returned, so a handler that never returns, or a startup hook that hangs,
 * would freeze the worker without a word.
 *
 * The protocol with the loop thread: `seq` changes on every enter and
 * leave; `task` is what the loop runs now (NULL: nothing watched). The
 * watchdog measures how long one value of seq lasts while task is set, so
 * time is only ever read on this thread. To print a task it copies the
 * task's strings while `reading` is set, after checking that seq has not
 * moved; the loop, before freeing a task that it has left, waits for
 * `reading` to clear (watchdog_sync). Both sides put a sequentially
 * consistent fence between their store and their load, so either the
 * watchdog sees the new seq and does not read, or the loop sees `reading`
 * and waits: a Dekker handshake that keeps the hot path to two stores. */
#include "watchdog.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "exit_status.h"
#include "heartbeat.h"
#include "log.h"
#include "log_sink.h"

#define SAMPLE_NS (100 * 1000 * 1000L)

/* What the watchdog copies out of a task before it prints it. */
struct snapshot {
    enum watch_kind kind;
    char role[64];
    char name[320];
    char phase[32];
    struct plugin_file_id file;
};

struct watchdog {
    /* Published by the loop thread. */
    _Atomic(const struct watch_task *) task;
    atomic_ulong seq;
    unsigned long loop_seq; /* the loop's own copy: it is the only writer */
    /* Set by the watchdog while it copies a task. */
    atomic_int reading;

    const struct config *cfg;
    int slot;
    bool stop;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
};

/* ---- the loop thread's side ---- */

static void publish(struct watchdog *W, const struct watch_task *t)
{
    atomic_store_explicit(&W->task, t, memory_order_relaxed);
    atomic_store_explicit(&W->seq, ++W->loop_seq, memory_order_release);
}

const struct watch_task *watchdog_enter(struct watchdog *W, const struct watch_task *t)
{
    if (!W)
        return NULL;
    const struct watch_task *prev = atomic_load_explicit(&W->task, memory_order_relaxed);
    publish(W, t);
    return prev;
}

void watchdog_leave(struct watchdog *W, const struct watch_task *prev)
{
    if (W)
        publish(W, prev);
}

void watchdog_sync(struct watchdog *W)
{
    if (!W)
        return;
    atomic_thread_fence(memory_order_seq_cst);
    while (atomic_load_explicit(&W->reading, memory_order_acquire))
        sched_yield();
}

/* ---- the watchdog's side ---- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Copies the task the loop runs if seq still equals `seq`. */
static bool take_snapshot(struct watchdog *W, unsigned long seq, struct snapshot *out)
{
    bool ok = false;
    atomic_store_explicit(&W->reading, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&W->seq, memory_order_acquire) == seq) {
        const struct watch_task *t = atomic_load_explicit(&W->task, memory_order_acquire);
        if (t) {
            out->kind = t->kind;
            snprintf(out->role, sizeof out->role, "%s", t->role ? t->role : "plugin code");
            snprintf(out->name, sizeof out->name, "%s", t->name ? t->name : "?");
            snprintf(out->phase, sizeof out->phase, "%s", t->phase ? t->phase : "startup");
            out->file = t->file;
            ok = true;
        }
    }
    atomic_store_explicit(&W->reading, 0, memory_order_release);
    return ok;
}

static double limit_of(const struct watchdog *W, enum watch_kind kind)
{
    return kind == WATCH_STARTUP ? W->cfg->timeout_startup : W->cfg->timeout_worker;
}

/* Ends the worker; the master reads the reason from the scoreboard. Only
 * _exit is safe here: the loop thread is still inside plugin code. */
static void stop_worker(const struct watchdog *W, const struct snapshot *s, double limit)
{
    char reason[512];
    if (s->kind == WATCH_STARTUP) {
        log_error("plugin %s: %s did not finish within %g s; refused, and worker %d is replaced",
                  s->name, s->phase, limit, W->slot);
        scoreboard_quarantine(&s->file, limit);
        snprintf(reason, sizeof reason,
                 "plugin %s: %s did not finish within %g s (refused until the file is replaced)",
                 s->name, s->phase, limit);
        scoreboard_set_stop_reason(W->slot, reason);
        _exit(EXIT_STARTUP_HUNG);
    }
    log_error("%s %s has blocked the event loop for %g s (--timeout-worker); stopping worker %d",
              s->role, s->name, limit, W->slot);
    snprintf(reason, sizeof reason, "its event loop was blocked for %g s in %s %s", limit, s->role,
             s->name);
    scoreboard_set_stop_reason(W->slot, reason);
    _exit(EXIT_LOOP_BLOCKED);
}

/* The loop has been inside the task of sequence `seq` for `held` seconds. */
static void judge(struct watchdog *W, unsigned long seq, double held, bool *warned)
{
    /* Skip the copy while nothing can be due yet. */
    double due = *warned ? INFINITY : WATCHDOG_WARN_SECONDS;
    double lw = W->cfg->timeout_worker, ls = W->cfg->timeout_startup;
    if (lw > 0 && lw < due)
        due = lw;
    if (ls > 0 && ls < due)
        due = ls;
    if (held < due)
        return;
    struct snapshot s;
    if (!take_snapshot(W, seq, &s))
        return;
    double limit = limit_of(W, s.kind);
    if (limit > 0 && held >= limit)
        stop_worker(W, &s, limit);
    if (*warned || held < WATCHDOG_WARN_SECONDS)
        return;
    *warned = true;
    if (limit > 0 && s.kind == WATCH_STARTUP)
        log_warning("%s %s has blocked the event loop for %.1f s; it is refused and the worker "
                    "replaced at %g s (--timeout-startup)",
                    s.role, s.name, held, limit);
    else if (limit > 0)
        log_warning("%s %s has blocked the event loop for %.1f s; the worker is stopped at %g s "
                    "(--timeout-worker)",
                    s.role, s.name, held, limit);
    else
        log_warning("%s %s has blocked the event loop for %.1f s", s.role, s.name, held);
}

static void *watch_main(void *arg)
{
    struct watchdog *W = arg;
    /* It must be able to report a worker whose other threads are stuck,
     * whatever they hold: its lines never wait for a log sink. */
    log_sink_bypass_thread();
    unsigned long last = atomic_load_explicit(&W->seq, memory_order_acquire);
    double since = now();
    bool warned = false;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    pthread_mutex_lock(&W->lock);
    while (!W->stop) {
        deadline.tv_nsec += SAMPLE_NS;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        int rc = 0;
        while (!W->stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&W->wake, &W->lock, &deadline);
        if (W->stop)
            break;
        pthread_mutex_unlock(&W->lock);
        heartbeat_beat(); /* this process is alive (heartbeat.h) */
        unsigned long seq = atomic_load_explicit(&W->seq, memory_order_acquire);
        double t = now();
        if (seq != last) {
            last = seq;
            since = t;
            warned = false;
        } else if (atomic_load_explicit(&W->task, memory_order_relaxed)) {
            judge(W, seq, t - since, &warned);
        }
        /* After a long stall of this thread, sample from now on rather
         * than catching up. */
        struct timespec cur;
        clock_gettime(CLOCK_MONOTONIC, &cur);
        if (cur.tv_sec > deadline.tv_sec + 1)
            deadline = cur;
        pthread_mutex_lock(&W->lock);
    }
    pthread_mutex_unlock(&W->lock);
    return NULL;
}

struct watchdog *watchdog_start(const struct config *cfg, int slot)
{
    struct watchdog *W = calloc(1, sizeof *W);
    if (!W)
        return NULL;
    W->cfg = cfg;
    W->slot = slot;
    pthread_condattr_t ca;
    int rc = pthread_mutex_init(&W->lock, NULL);
    if (rc == 0) {
        rc = pthread_condattr_init(&ca);
        if (rc == 0) {
            pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
            rc = pthread_cond_init(&W->wake, &ca);
            pthread_condattr_destroy(&ca);
        }
        if (rc != 0)
            pthread_mutex_destroy(&W->lock);
    }
    if (rc != 0) {
        free(W);
        errno = rc;
        return NULL;
    }
    /* Signals are the loop thread's business (libev): block them all in
     * the watchdog thread. */
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    rc = pthread_create(&W->thread, NULL, watch_main, W);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&W->wake);
        pthread_mutex_destroy(&W->lock);
        free(W);
        errno = rc;
        return NULL;
    }
    return W;
}

void watchdog_stop(struct watchdog *W)
{
    if (!W)
        return;
    pthread_mutex_lock(&W->lock);
    W->stop = true;
    pthread_cond_signal(&W->wake);
    pthread_mutex_unlock(&W->lock);
    pthread_join(W->thread, NULL);
    pthread_cond_destroy(&W->wake);
    pthread_mutex_destroy(&W->lock);
    free(W);
}
