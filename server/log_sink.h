/* log_sink: the server's log lines sent somewhere else than stderr and
 * stdout: to Python's logging, with --log-config (the embedding provides
 * the sink; see python/_core.c).
 *
 * Lines are queued and emitted by a thread of the sink's own, so a thread
 * that logs never waits for what the sink needs (the interpreter's GIL,
 * which the app's thread may hold for milliseconds at a time): the event
 * loop and the pool only take a mutex. The thread is started again in
 * each forked worker. Two exceptions write directly, in the plain format:
 * threads that must never wait on the sink (the watchdog, which must be
 * able to report a worker whose every other thread is stuck), and lines
 * still queued at exit that the sink could not take in time. */
#ifndef EVICORN_LOG_SINK_H
#define EVICORN_LOG_SINK_H

#include <stdbool.h>
#include <stddef.h>

struct log_sink {
    /* Around each batch, on the sink's thread: take and give back what
     * emitting needs (the GIL). */
    void (*acquire)(void);
    void (*release)(void);
    /* Whether the calling thread may emit right now (it holds the GIL):
     * at exit, such a thread emits what is queued itself. */
    bool (*held)(void);
    /* Runs fn(arg) with what held() means given up for the while (so that
     * the sink's thread may finish a batch). */
    void (*without)(void (*fn)(void *arg), void *arg);
    /* level: 0 critical .. 5 trace. */
    void (*message)(int level, const char *text);
    /* uvicorn's access record: client "ip:port", method, target, "1.1", status. */
    void (*access)(const char *client, const char *method, const char *target,
                   const char *http_version, int status);
};

/* A record that could not be emitted through the sink. */
struct log_record {
    struct log_record *next;
    bool access;
    int level;  /* messages */
    int status; /* access */
    const char *text, *client, *method, *target, *http_version;
    char buf[];
};
typedef void (*log_record_fn)(const struct log_record *r);

/* Master, before the workers fork. 0, or -1 (then lines stay direct). */
int log_sink_install(const struct log_sink *sink);
/* Around fork(2), before the embedding takes the GIL: waits for a batch
 * being emitted and holds the next one off. In the parent, fork_end
 * after the fork; the child starts afresh. */
void log_sink_fork_begin(void);
void log_sink_fork_end(void);
/* Whether lines from the calling thread go to the sink. */
bool log_sink_active(void);
/* The calling thread's lines never go to the sink (the watchdog). */
void log_sink_bypass_thread(void);

/* Queue one line; false when it could not be queued (write it directly). */
bool log_sink_message(int level, const char *text);
bool log_sink_access(const char *client, const char *method, size_t method_len, const char *target,
                     size_t target_len, const char *http_version, int status);

/* Before the process exits: waits up to timeout seconds for the queue to
 * empty (or empties it on this thread when it holds what the sink needs);
 * what remains goes to fallback, in order. */
void log_sink_drain(double timeout, log_record_fn fallback);

#endif
