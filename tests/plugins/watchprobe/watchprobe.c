/* watchprobe: a test-only plugin for the ABI's watches (1.3), built twice
 * (WATCHPROBE_VERSION "1" and "2") for the hot-reload tests, and once with
 * WATCHPROBE_LEAK (its shutdown leaves its plugin-level timer running, so
 * the host's unload report can be checked).
 *
 * In startup it arms a plugin-level timer that ticks every 20 ms (counted
 * in /watch/stats); its shutdown cancels it.
 *
 * Routes (async unless _sync):
 *   GET /watch/timer?s=S        a request-bound watch on fd -1 fires after
 *                               S seconds: {"events": 4, "elapsed": ...}
 *   GET /watch/pipe?ms=N        a request-bound watch on a pipe's read end;
 *                               a plugin-level timer writes "ping" into the
 *                               pipe after N ms: {"read": "ping", ...}
 *   GET /watch/hang             a request-bound watch on a pipe nobody
 *                               writes: only the client leaving ends it
 *                               (counted as "cancelled" in /watch/stats)
 *   GET /watch/self_cancel      a timer watch that cancels itself in its
 *                               callback, then answers from a second one
 *   GET /watch/cancel_due       two timers due at once; the first cancels
 *                               the other, which must not run
 *   GET /watch/late_end         "hello" with Content-Length 5, the end of
 *                               the response said 100 ms after the body
 *   GET /watch/errors           the results of calls that must fail
 *   GET /watch/errors_sync      watch from a pool thread: EPERM
 *   GET /watch/stats            counters, the version and the open fds
 */
#define EVICORN_PLUGIN_MIN_ABI_MINOR 3
#include <evicorn/sdk.h>

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef WATCHPROBE_VERSION
#define WATCHPROBE_VERSION "1"
#endif

struct probe {
    evicorn_watch *ticker;
    long ticks;
    long cancelled;
    long plugin_fires;
};

static struct probe *probe_of(evicorn_request *req)
{
    return evicorn_state(req);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_tick(evicorn_watch *w, void *ud, unsigned events, int status)
{
    struct probe *p = ud;
    if (status == 0 && (events & EVICORN_TIMEOUT)) {
        p->ticks++;
        evicorn_watch_set(w, 0, 0.02);
    }
}

static int startup(void **state, char *err, size_t errlen)
{
    struct probe *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    int rc = evicorn_watch_new(NULL, -1, on_tick, p, &p->ticker);
    if (rc == 0)
        rc = evicorn_watch_set(p->ticker, 0, 0.02);
    if (rc != 0) {
        snprintf(err, errlen, "cannot arm the ticker: %d", rc);
        free(p);
        return 1;
    }
    *state = p;
    return 0;
}

static void shutdown_probe(void *state)
{
    struct probe *p = state;
#ifndef WATCHPROBE_LEAK
    evicorn_watch_cancel(p->ticker);
#endif
    free(p);
}

/* ---- /watch/timer ---- */

struct timed {
    evicorn_request *req;
    double started;
};

static void timer_fired(evicorn_watch *w, void *ud, unsigned events, int status)
{
    struct timed *t = ud;
    if (status == 0) {
        evicorn_watch_cancel(w);
        evicorn_respond_json(
            t->req, 200,
            json_pack("{s:i,s:f}", "events", (int)events, "elapsed", now() - t->started));
    }
    free(t);
}

static void timer_route(evicorn_request *req, void *data)
{
    (void)data;
    double s = evicorn_query_float(req, "s", 0.05, NULL);
    struct timed *t = calloc(1, sizeof *t);
    evicorn_watch *w;
    if (!t || evicorn_watch_new(req, -1, timer_fired, t, &w) != 0) {
        free(t);
        evicorn_respond_error(req, 500, "cannot watch");
        return;
    }
    t->req = req;
    t->started = now();
    evicorn_watch_set(w, 0, s);
}

/* ---- /watch/pipe ---- */

struct piped {
    evicorn_request *req;
    int fds[2];
    evicorn_watch *writer; /* plugin-level timer */
    struct probe *p;
    int reader_done;
    int writer_done;
};

static void piped_maybe_free(struct piped *pp)
{
    if (!pp->reader_done || !pp->writer_done)
        return;
    close(pp->fds[0]);
    close(pp->fds[1]);
    free(pp);
}

static void write_ping(evicorn_watch *w, void *ud, unsigned events, int status)
{
    struct piped *pp = ud;
    (void)events;
    (void)status;
    pp->p->plugin_fires++;
    if (write(pp->fds[1], "ping", 4) != 4)
        evicorn_log(NULL, 2, "watchprobe: write failed: %s", strerror(errno));
    evicorn_watch_cancel(w);
    pp->writer_done = 1;
    piped_maybe_free(pp);
}

static void pipe_readable(evicorn_watch *w, void *ud, unsigned events, int status)
{
    struct piped *pp = ud;
    if (status == 0) {
        char buf[16];
        ssize_t n = read(pp->fds[0], buf, sizeof buf);
        evicorn_watch_cancel(w);
        evicorn_respond_json(
            pp->req, 200,
            json_pack("{s:s#,s:i}", "read", buf, n > 0 ? (int)n : 0, "events", (int)events));
    } else if (pp->writer) {
        /* The client left first: the writer is the plugin's, stop it. */
        evicorn_watch_cancel(pp->writer);
        pp->writer_done = 1;
    }
    pp->reader_done = 1;
    piped_maybe_free(pp);
}

static void pipe_route(evicorn_request *req, void *data)
{
    (void)data;
    double ms = (double)evicorn_query_int(req, "ms", 50, NULL);
    struct piped *pp = calloc(1, sizeof *pp);
    if (!pp || pipe(pp->fds) != 0) {
        free(pp);
        evicorn_respond_error(req, 500, "no pipe");
        return;
    }
    pp->req = req;
    pp->p = probe_of(req);
    evicorn_watch *r;
    if (evicorn_watch_new(req, pp->fds[0], pipe_readable, pp, &r) != 0 ||
        evicorn_watch_set(r, EVICORN_READABLE, 5.0) != 0 ||
        evicorn_watch_new(NULL, -1, write_ping, pp, &pp->writer) != 0 ||
        evicorn_watch_set(pp->writer, 0, ms / 1000.0) != 0) {
        evicorn_respond_error(req, 500, "cannot watch");
        return; /* the test never takes this path; the pipe leaks if it does */
    }
}

/* ---- /watch/hang ---- */

struct hung {
    int fds[2];
    struct probe *p;
};

static void hang_event(evicorn_watch *w, void *ud, unsigned events, int status)
{
    struct hung *h = ud;
    (void)w;
    (void)events;
    if (status == EVICORN_ECANCELED) {
        h->p->cancelled++;
        close(h->fds[0]);
        close(h->fds[1]);
        free(h);
    }
}

static void hang_route(evicorn_request *req, void *data)
{
    (void)data;
    struct hung *h = calloc(1, sizeof *h);
    if (!h || pipe(h->fds) != 0) {
        free(h);
        evicorn_respond_error(req, 500, "no pipe");
        return;
    }
    h->p = probe_of(req);
    evicorn_watch *w;
    if (evicorn_watch_new(req, h->fds[0], hang_event, h, &w) != 0 ||
        evicorn_watch_set(w, EVICORN_READABLE, 0) != 0)
        evicorn_respond_error(req, 500, "cannot watch");
}

/* ---- /watch/self_cancel ---- */

struct selfc {
    evicorn_request *req;
    int first_runs;
};

static void second_fired(evicorn_watch *w, void *ud, unsigned events, int status)
{
    struct selfc *s = ud;
    (void)events;
    if (status == 0) {
        evicorn_watch_cancel(w);
        evicorn_respond_json(s->req, 200, json_pack("{s:i}", "first_runs", s->first_runs));
    }
    free(s);
}

static void first_fired(evicorn_watch *w, void *ud, unsigned events, int status)
{
    struct selfc *s = ud;
    (void)events;
    s->first_runs++;
    if (status != 0)
        return;
    /* Rearm, then cancel: the rearmed timer must never fire. */
    evicorn_watch_set(w, 0, 0.01);
    evicorn_watch_cancel(w);
    evicorn_watch *second;
    if (evicorn_watch_new(s->req, -1, second_fired, s, &second) != 0 ||
        evicorn_watch_set(second, 0, 0.05) != 0)
        evicorn_respond_error(s->req, 500, "cannot watch");
}

static void self_cancel_route(evicorn_request *req, void *data)
{
    (void)data;
    struct selfc *s = calloc(1, sizeof *s);
    evicorn_watch *w;
    if (!s || evicorn_watch_new(req, -1, first_fired, s, &w) != 0) {
        free(s);
        evicorn_respond_error(req, 500, "cannot watch");
        return;
    }
    s->req = req;
    evicorn_watch_set(w, 0, 0.01);
}

/* ---- /watch/cancel_due ---- */

/* Two timers due in the same loop iteration: the first to run cancels
 * the other, whose callback is then pending and must never run. */
struct due {
    evicorn_request *req;
    evicorn_watch *w[2];
    int fired;
};

static void due_fired(evicorn_watch *w, void *ud, unsigned events, int status)
{
    struct due *d = ud;
    (void)events;
    if (status != 0)
        return; /* not taken: the request ends by the response below */
    d->fired++;
    evicorn_watch *other = d->w[0] == w ? d->w[1] : d->w[0];
    evicorn_watch_cancel(other);
    evicorn_watch_cancel(w);
    evicorn_respond_json(d->req, 200, json_pack("{s:i}", "fired", d->fired));
    free(d);
}

static void cancel_due_route(evicorn_request *req, void *data)
{
    (void)data;
    struct due *d = calloc(1, sizeof *d);
    if (!d || evicorn_watch_new(req, -1, due_fired, d, &d->w[0]) != 0 ||
        evicorn_watch_new(req, -1, due_fired, d, &d->w[1]) != 0) {
        evicorn_respond_error(req, 500, "cannot watch"); /* not taken by the tests */
        return;
    }
    d->req = req;
    evicorn_watch_set(d->w[0], 0, 0.02);
    evicorn_watch_set(d->w[1], 0, 0.02);
}

/* ---- /watch/late_end ---- */

/* A body of known length sent whole, its end said 100 ms later: the end
 * adds no byte to flush. */
static void late_end_fired(evicorn_watch *w, void *ud, unsigned events, int status)
{
    (void)events;
    if (status == 0) {
        evicorn_watch_cancel(w);
        evicorn_send(ud, NULL, 0, 0);
    }
}

static void late_end_route(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_watch *w;
    if (evicorn_start(req, 200, NULL, 0, 5) != 0 || evicorn_send(req, "hello", 5, 1) != 0 ||
        evicorn_watch_new(req, -1, late_end_fired, req, &w) != 0 ||
        evicorn_watch_set(w, 0, 0.1) != 0)
        evicorn_log(req, EVICORN_LOG_ERROR, "late_end: cannot stream");
}

/* ---- /watch/errors ---- */

static void never(evicorn_watch *w, void *ud, unsigned events, int status)
{
    (void)w;
    (void)ud;
    (void)events;
    (void)status;
}

static void errors_route(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_watch *w = NULL;
    int created = evicorn_watch_new(req, -1, never, NULL, &w);
    int fd_events_on_timer = evicorn_watch_set(w, EVICORN_READABLE, 0);
    int bad_events = evicorn_watch_set(w, 0x80, 0);
    evicorn_watch_cancel(w);
    int no_fn = evicorn_watch_new(req, -1, NULL, NULL, &w);
    int bad_fd = evicorn_watch_new(req, -7, never, NULL, &w);
    evicorn_respond_json(req, 200,
                         json_pack("{s:i,s:i,s:i,s:i,s:i}", "created", created,
                                   "fd_events_on_timer", fd_events_on_timer, "bad_events",
                                   bad_events, "no_fn", no_fn, "bad_fd", bad_fd));
}

static void errors_sync_route(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_watch *w = NULL;
    int req_bound = evicorn_watch_new(req, -1, never, NULL, &w);
    int plugin_bound = evicorn_watch_new(NULL, -1, never, NULL, &w);
    evicorn_respond_json(
        req, 200, json_pack("{s:i,s:i}", "req_bound", req_bound, "plugin_bound", plugin_bound));
}

/* ---- /watch/stats ---- */

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own fd */
}

static void stats_route(evicorn_request *req, void *data)
{
    (void)data;
    struct probe *p = probe_of(req);
    evicorn_respond_json(
        req, 200,
        json_pack("{s:s,s:I,s:I,s:I,s:i,s:i}", "version", WATCHPROBE_VERSION, "ticks",
                  (json_int_t)p->ticks, "cancelled", (json_int_t)p->cancelled, "plugin_fires",
                  (json_int_t)p->plugin_fires, "fds", open_fds(), "pid", (int)getpid()));
}

static const evicorn_route routes[] = {
    EVICORN_GET("/watch/timer", timer_route),
    EVICORN_GET("/watch/pipe", pipe_route),
    EVICORN_GET("/watch/hang", hang_route),
    EVICORN_GET("/watch/self_cancel", self_cancel_route),
    EVICORN_GET("/watch/cancel_due", cancel_due_route),
    EVICORN_GET("/watch/late_end", late_end_route),
    EVICORN_GET("/watch/errors", errors_route),
    EVICORN_GET_SYNC("/watch/errors_sync", errors_sync_route),
    EVICORN_GET("/watch/stats", stats_route),
};

EVICORN_PLUGIN("watchprobe", WATCHPROBE_VERSION, routes, startup, shutdown_probe)
