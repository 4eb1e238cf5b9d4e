/* log_writer: the access log's writer thread; see log_writer.h. */
#include "log_writer.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Bytes queued for a stdout that does not keep up before lines are
 * dropped: seconds of a busy server's lines, bounded memory. */
#define QUEUE_MAX (4u * 1024 * 1024)

static struct {
    pid_t pid; /* the process the state below belongs to (0: none yet) */
    pthread_mutex_t lock;
    pthread_cond_t wake, idle;
    pthread_t thread;
    bool running, stopping, writing;
    char *queue;
    size_t len, cap;
    uint64_t dropped; /* lines, since the last report */
} W;

void log_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a failing log */
        }
        p += k;
        n -= (size_t)k;
    }
}

static void report_dropped(uint64_t lines)
{
    char line[160];
    int k = snprintf(line, sizeof line,
                     "WARNING:  access log: %llu line(s) dropped: stdout was not being read "
                     "(pid %d)\n",
                     (unsigned long long)lines, (int)getpid());
    if (k > 0)
        log_write_all(STDERR_FILENO, line, (size_t)k < sizeof line ? (size_t)k : sizeof line - 1);
}

static void *writer_main(void *arg)
{
    (void)arg;
    char *batch = NULL;
    size_t batch_cap = 0;
    pthread_mutex_lock(&W.lock);
    for (;;) {
        while (W.len == 0 && W.dropped == 0 && !W.stopping)
            pthread_cond_wait(&W.wake, &W.lock);
        if (W.len == 0 && W.dropped == 0)
            break; /* stopping, and nothing left */
        /* Swap buffers: the loop fills the other one meanwhile. */
        char *tmp = batch;
        size_t tmp_cap = batch_cap, n = W.len;
        batch = W.queue;
        batch_cap = W.cap;
        W.queue = tmp;
        W.cap = tmp_cap;
        W.len = 0;
        uint64_t dropped = W.dropped;
        W.dropped = 0;
        W.writing = true;
        pthread_mutex_unlock(&W.lock);
        log_write_all(STDOUT_FILENO, batch, n);
        if (dropped)
            report_dropped(dropped);
        pthread_mutex_lock(&W.lock);
        W.writing = false;
        pthread_cond_broadcast(&W.idle);
    }
    pthread_mutex_unlock(&W.lock);
    free(batch);
    return NULL;
}

/* The state for this process: a forked child starts afresh (the parent's
 * thread did not come along, and its queue is the parent's to write). */
static bool writer_ready(void)
{
    pid_t pid = getpid();
    if (W.pid == pid)
        return W.running;
    W.pid = pid;
    W.running = W.stopping = W.writing = false;
    W.len = 0;
    W.dropped = 0;
    pthread_mutex_init(&W.lock, NULL);
    pthread_cond_init(&W.wake, NULL);
    pthread_cond_init(&W.idle, NULL);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay the loop's */
    W.running = pthread_create(&W.thread, NULL, writer_main, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return W.running;
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t lines = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        lines++;
    return lines;
}

void log_writer_put(const char *p, size_t n)
{
    if (n == 0)
        return;
    if (!writer_ready()) {
        log_write_all(STDOUT_FILENO, p, n); /* no thread: as before, on the caller */
        return;
    }
    pthread_mutex_lock(&W.lock);
    if (W.len + n > QUEUE_MAX) {
        W.dropped += count_lines(p, n);
    } else {
        if (W.len + n > W.cap) {
            size_t cap = W.cap ? W.cap : 16384;
            while (cap < W.len + n)
                cap *= 2;
            char *q = realloc(W.queue, cap);
            if (!q) {
                W.dropped += count_lines(p, n);
                goto out;
            }
            W.queue = q;
            W.cap = cap;
        }
        memcpy(W.queue + W.len, p, n);
        W.len += n;
    }
out:
    pthread_cond_signal(&W.wake);
    pthread_mutex_unlock(&W.lock);
}

void log_writer_drain(double timeout)
{
    if (W.pid != getpid() || !W.running)
        return;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)timeout;
    until.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&W.lock);
    while ((W.len > 0 || W.writing) &&
           pthread_cond_timedwait(&W.idle, &W.lock, &until) != ETIMEDOUT)
        ;
    bool done = W.len == 0 && !W.writing;
    W.stopping = true;
    pthread_cond_signal(&W.wake);
    pthread_mutex_unlock(&W.lock);
    /* A writer stuck on a stdout nobody reads is left behind: the
     * process is exiting. */
    if (done)
        pthread_join(W.thread, NULL);
    W.running = false;
}
