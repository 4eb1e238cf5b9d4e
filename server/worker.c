/* worker: a worker process's loop, accept path and shutdown; see worker.h.
 *
 * Shutdown is graceful: SIGTERM or a first SIGINT stops accepting, closes
 * idle connections at once, lets requests in flight finish for up to
 * --timeout-graceful-shutdown, then exits 0. A second SIGINT exits at once. */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "container.h"
#include "embedding.h"
#include "exit_status.h"
#include "heartbeat.h"
#include "host.h"
#include "log.h"
#include "mailbox.h"
#include "plugins.h"
#include "pool.h"
#include "privileges.h"
#include "static.h"
#include "watchdog.h"

/* Connections accepted per wake-up of one listener, so one busy listener
 * cannot starve the connections already open. */
#define ACCEPT_BATCH 64
#define SCRATCH_SIZE (64 * 1024)
/* Pause after accept failed for lack of file descriptors. */
#define ACCEPT_RETRY_SECONDS 0.1
/* A worker short of descriptors hovers at the limit: each closed
 * connection lets one accept succeed and the next fail. So the failure is
 * logged at most once per ACCEPT_REPORT_SECONDS, with the count of those
 * not reported, rather than on every retry. */
#define ACCEPT_REPORT_SECONDS 60.0

static void worker_begin_shutdown(struct worker *w);

/* ---- the serving core ---- */

static void on_served(void *ud)
{
    struct worker *w = ud;
    w->served++;
    long max = w->max_requests;
    if (max > 0 && w->served >= max && !w->conns.draining) {
        log_info("Maximum request limit of %ld exceeded. Terminating process.", max);
        worker_begin_shutdown(w);
    }
}

/* --limit-max-requests plus 0 to --limit-max-requests-jitter chosen for
 * this worker, so workers started together do not all restart together. */
static long max_requests(const struct config *cfg)
{
    if (cfg->limit_max_requests <= 0)
        return 0;
    uint64_t r = 0;
    if (cfg->limit_max_requests_jitter > 0)
        arc4random_buf(&r, sizeof r);
    return cfg->limit_max_requests + (long)(r % ((uint64_t)cfg->limit_max_requests_jitter + 1));
}

int worker_core_init(struct worker *w, struct ev_loop *loop, const struct config *cfg)
{
    w->loop = loop;
    w->cfg = cfg;
    w->max_requests = max_requests(cfg);
    w->defer = (struct defer_queue){0};
    w->conns = (struct conn_ctx){
        .loop = loop,
        .defer = &w->defer,
        .timeout_write = cfg->timeout_write,
        .scratch_cap = SCRATCH_SIZE,
    };
    w->conns.scratch = malloc(SCRATCH_SIZE);
    w->requests = (struct request_ctx){
        .loop = loop,
        .cfg = cfg,
        .defer = &w->defer,
        .served = on_served,
        .served_ud = w,
    };
    ws_server_init(&w->ws, cfg);
    if (!w->conns.scratch || h1_server_init(&w->http1, cfg, &w->requests) < 0) {
        worker_core_free(w);
        return -1;
    }
    return 0;
}

void worker_core_free(struct worker *w)
{
    h1_server_free(&w->http1);
    free(w->conns.scratch);
    w->conns.scratch = NULL;
}

struct conn *worker_serve_fd(struct worker *w, int fd, const struct addr *peer)
{
    struct conn *c = conn_new(&w->conns, fd, peer);
    if (!c) {
        close(fd);
        return NULL;
    }
    if (h1_attach(&w->http1, c) < 0) {
        conn_abort(c); /* closes fd */
        return NULL;
    }
    return c;
}

void worker_end_iteration(struct worker *w)
{
    while (w->defer.first || w->conns.dirty) {
        while (w->defer.first) {
            struct defer *d = w->defer.first;
            w->defer.first = d->next;
            if (!w->defer.first)
                w->defer.last = NULL;
            d->queued = false;
            d->fn(d);
        }
        conn_flush_all(&w->conns);
    }
    log_flush();
}

/* ---- accepting ---- */

static void report_accept_failure(struct worker *w, const struct listener *l, int err)
{
    ev_tstamp now = ev_now(w->loop);
    if (w->accept_reports.once && now - w->accept_reports.at < ACCEPT_REPORT_SECONDS) {
        w->accept_reports.unreported++;
        return;
    }
    if (w->accept_reports.once)
        log_warning("accept on %s failed: %s (and %lu time(s) since the last report)", l->name,
                    strerror(err), w->accept_reports.unreported);
    else
        log_warning("accept on %s failed: %s; retrying every %.0f ms, reported at most every "
                    "%.0f s",
                    l->name, strerror(err), ACCEPT_RETRY_SECONDS * 1000, ACCEPT_REPORT_SECONDS);
    w->accept_reports.once = true;
    w->accept_reports.at = now;
    w->accept_reports.unreported = 0;
}

static void accept_pause(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        ev_io_stop(w->loop, &w->accepts[i].io);
}

static void accept_resume(struct worker *w)
{
    if (w->conns.draining)
        return;
    for (size_t i = 0; i < w->nlisteners; i++)
        ev_io_start(w->loop, &w->accepts[i].io);
}

static void on_accept_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    accept_resume(t->data);
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct worker_accept *a = container_of(io, struct worker_accept, io);
    struct worker *w = a->w;
    struct listener *l = a->listener;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        int fd = accept4(l->fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Keep serving the connections we have; try again shortly
                 * instead of spinning on a listener that stays readable. */
                report_accept_failure(w, l, errno);
                accept_pause(w);
                ev_timer_set(&w->accept_retry, ACCEPT_RETRY_SECONDS, 0);
                ev_timer_start(w->loop, &w->accept_retry);
                return;
            }
            log_error("accept on %s failed: %s", l->name, strerror(errno));
            return;
        }
        struct addr peer;
        if (l->unix_socket)
            peer = (struct addr){.unix_socket = true};
        else
            addr_from_sockaddr(&peer, (const struct sockaddr *)&sa);
        if (!l->unix_socket) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (!worker_serve_fd(w, fd, &peer)) {
            log_error("out of memory accepting a connection on %s", l->name);
            continue;
        }
        if (log_enabled(LOG_TRACE)) {
            char text[ADDR_TEXT_MAX];
            log_trace("%s: connected", addr_text(&peer, text));
        }
    }
}

/* ---- shutdown ---- */

static void on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)revents;
    struct worker *w = p->data;
    worker_end_iteration(w);
    if (w->conns.draining && w->conns.nconns == 0 && w->requests.inflight == 0 &&
        host_pending_jobs(w->host) == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void on_grace_expired(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = t->data;
    log_warning("graceful shutdown timed out with %zu connection(s) and %ld request(s) in flight",
                w->conns.nconns, w->requests.inflight);
    conn_abort_all(&w->conns);
    ev_break(loop, EVBREAK_ALL);
}

static void worker_begin_shutdown(struct worker *w)
{
    if (w->conns.draining)
        return;
    w->conns.draining = true;
    w->conns.drain_started = ev_now(w->loop);
    accept_pause(w);
    ev_timer_stop(w->loop, &w->accept_retry);
    conn_shutdown_all(&w->conns);
    ev_timer_set(&w->grace, w->cfg->timeout_graceful_shutdown, 0);
    ev_timer_start(w->loop, &w->grace);
}

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = s->data;
    if (s->signum == SIGINT && w->conns.draining) {
        log_drain();
        _exit(EXIT_ERROR); /* a second Ctrl-C: stop now */
    }
    if (s->signum == SIGQUIT) {
        log_drain();
        _exit(EXIT_OK);
    }
    worker_begin_shutdown(w);
}

static void on_serve(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)revents;
    struct worker *w = s->data;
    ev_ref(loop);
    ev_signal_stop(loop, s);
    accept_resume(w);
}

/* ---- the whole worker ---- */

/* Everything but the core and the loop's own watchers. */
static int worker_start_services(struct worker *w)
{
    w->mailbox = mailbox_new(w->loop);
    w->pool = w->mailbox ? pool_new(w->mailbox, (unsigned)w->cfg->threads) : NULL;
    if (!w->pool) {
        log_error("worker %d: cannot create the thread pool: %s", w->index, strerror(errno));
        return -1;
    }
    /* Before plugins load: their loading and startup are watched too. */
    w->site = (struct plugin_site){.watchdog = watchdog_start(w->cfg, w->index), .slot = w->index};
    if (!w->site.watchdog) {
        heartbeat_disable(); /* nothing beats: the master must not kill it for that */
        log_warning("worker %d: no watchdog (%s): plugin code that blocks the event loop will "
                    "not be named",
                    w->index, strerror(errno));
    }
    struct host_params hp = {
        .loop = w->loop,
        .cfg = w->cfg,
        .worker = w->index,
        .mailbox = w->mailbox,
        .pool = w->pool,
        .defer = &w->defer,
        .site = &w->site,
        .listener = &w->listeners[0],
        .ws = w->http1.websocket ? &w->ws : NULL,
    };
    w->host = host_new(&hp);
    if (!w->host) {
        log_error("worker %d: out of memory", w->index);
        return -1;
    }
    w->plugins = plugins_new(w->loop, w->cfg, w->index, &w->site, host_api());
    if (!w->plugins)
        return -1;
    w->dispatcher = (struct dispatcher){.plugins = w->plugins,
                                        .host = w->host,
                                        .status_path = w->cfg->status_path,
                                        .metrics_path = w->cfg->metrics_path,
                                        .health_path = w->cfg->health_path,
                                        .draining = &w->conns.draining};
    if (static_mounts_open(w->cfg->statics.items, w->cfg->statics.n, w->cfg->static_max_age,
                           &w->dispatcher.statics) < 0)
        return -1;
    w->requests.dispatch = dispatch_request;
    w->requests.dispatch_ud = &w->dispatcher;
    return 0;
}

static void worker_stop_services(struct worker *w)
{
    plugins_free(w->plugins);
    w->plugins = NULL;
    /* Pool threads finish first; their completions then run on this
     * thread (plugin code may still run in them, unwatched from now on). */
    watchdog_stop(w->site.watchdog);
    w->site.watchdog = NULL;
    pool_free(w->pool);
    if (w->mailbox) {
        mailbox_drain(w->mailbox);
        mailbox_free(w->mailbox);
    }
    host_free(w->host);
    w->host = NULL;
    static_mounts_free(w->dispatcher.statics);
    w->dispatcher.statics = NULL;
}

/* Tells the master this worker serves: its pid, in one write (atomic on a
 * pipe). */
static void announce_ready(int fd)
{
    if (fd < 0)
        return;
    pid_t pid = getpid();
    ssize_t n;
    do
        n = write(fd, &pid, sizeof pid);
    while (n < 0 && errno == EINTR);
    close(fd);
}

void worker_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGQUIT);
    sigaddset(set, WORKER_SIGNAL_SERVE);
}

int worker_run(const struct config *cfg, struct listener *listeners, size_t nlisteners, int index,
               int ready_fd, bool held)
{
    /* Before anything of a plugin's can run. A worker that cannot drop
     * would fail the same way again: the master must not retry it. */
    if (cfg->run_as && privileges_drop(cfg->run_as) < 0) {
        log_error("worker %d: cannot run as %s: %s", index, cfg->run_as->name, strerror(errno));
        return EXIT_WORKER_STARTUP_FAILED;
    }
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
        log_error("worker %d: out of memory", index);
        return EXIT_ERROR;
    }
    w->index = index;
    w->listeners = listeners;
    w->nlisteners = nlisteners;
    int status = EXIT_ERROR;
    w->accepts = calloc(nlisteners, sizeof *w->accepts);
    if (!w->accepts || worker_core_init(w, EV_DEFAULT, cfg) < 0) {
        log_error("worker %d: out of memory", index);
        goto out;
    }
    if (worker_start_services(w) < 0) {
        /* Plugins that refuse to start (an app whose startup failed) would
         * fail the same way in a replacement: say so to the master. */
        status = w->host && !w->plugins ? EXIT_WORKER_STARTUP_FAILED : EXIT_ERROR;
        const struct evicorn_embedding *emb = cfg->embedding;
        if (status == EXIT_WORKER_STARTUP_FAILED && emb && emb->app_load_failed &&
            emb->app_load_failed())
            status = EXIT_APP_LOAD_FAILED;
        goto out;
    }

    for (size_t i = 0; i < nlisteners; i++) {
        w->accepts[i].w = w;
        w->accepts[i].listener = &listeners[i];
        ev_io_init(&w->accepts[i].io, on_accept, listeners[i].fd, EV_READ);
        if (!held)
            ev_io_start(w->loop, &w->accepts[i].io);
    }
    ev_init(&w->accept_retry, on_accept_retry);
    w->accept_retry.data = w;
    ev_init(&w->grace, on_grace_expired);
    w->grace.data = w;
    ev_prepare_init(&w->prepare, on_prepare);
    w->prepare.data = w;
    ev_prepare_start(w->loop, &w->prepare);
    ev_signal_init(&w->sig_term, on_signal, SIGTERM);
    ev_signal_init(&w->sig_int, on_signal, SIGINT);
    ev_signal_init(&w->sig_quit, on_signal, SIGQUIT);
    w->sig_term.data = w->sig_int.data = w->sig_quit.data = w;
    ev_signal_start(w->loop, &w->sig_term);
    ev_signal_start(w->loop, &w->sig_int);
    ev_signal_start(w->loop, &w->sig_quit);
    ev_signal_init(&w->sig_serve, on_serve, WORKER_SIGNAL_SERVE);
    w->sig_serve.data = w;
    ev_signal_start(w->loop, &w->sig_serve);
    sigset_t handled;
    worker_signals(&handled);
    pthread_sigmask(SIG_UNBLOCK, &handled, NULL);
    /* Signals must not keep a drained loop alive. */
    ev_unref(w->loop);
    ev_unref(w->loop);
    ev_unref(w->loop);
    ev_unref(w->loop);

    log_debug("worker %d started (pid %d)", index, (int)getpid());
    announce_ready(ready_fd);
    ev_run(w->loop, 0);
    log_flush();

    ev_ref(w->loop);
    ev_ref(w->loop);
    ev_ref(w->loop);
    ev_signal_stop(w->loop, &w->sig_term);
    ev_signal_stop(w->loop, &w->sig_int);
    ev_signal_stop(w->loop, &w->sig_quit);
    if (ev_is_active(&w->sig_serve)) {
        ev_ref(w->loop);
        ev_signal_stop(w->loop, &w->sig_serve);
    }
    /* What is left (plugins' shutdown, the app's lifespan shutdown) must
     * not be cut by a second SIGTERM: a supervisor or `timeout` signals the
     * whole group as well as the master does. The master's kill timer
     * bounds it; a second Ctrl-C (SIGINT) still ends it at once. */
    signal(SIGTERM, SIG_IGN);
    ev_prepare_stop(w->loop, &w->prepare);
    ev_timer_stop(w->loop, &w->grace);
    accept_pause(w);
    conn_abort_all(&w->conns);
    /* Closing a connection tells its requests by deferred events (the
     * disconnect that cancels a handler's operations, a wait for room to
     * write): run them now, so every request still open ends and is freed
     * before the services go. */
    worker_end_iteration(w);
    status = EXIT_OK;
out:
    worker_stop_services(w);
    worker_core_free(w);
    free(w->accepts);
    free(w);
    log_flush();
    return status;
}
