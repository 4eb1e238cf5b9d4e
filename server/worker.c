/* worker: a worker process's loop, accept path and shutdown; see worker.h.
 *
 * Shutdown is graceful: SIGTERM or a first SIGINT stops accepting, closes
 * idle connections at once, lets requests in flight finish for up to
 * --timeout-graceful-shutdown, then exits 0. A second SIGINT exits at once. */
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "dispatch.h"
#include "host_api.h"
#include "log.h"
#include "mailbox.h"
#include "pool.h"

/* Connections accepted per wake-up of one listener, so one busy listener
 * cannot starve the connections already open. */
#define ACCEPT_BATCH 64
#define SCRATCH_SIZE (64 * 1024)
/* Pause after accept failed for lack of file descriptors. */
#define ACCEPT_RETRY_SECONDS 0.1

static struct worker the_worker;

/* A worker short of descriptors hovers at the limit: each closed
 * connection lets one accept succeed and the next fail. So the failure is
 * logged at most once per ACCEPT_REPORT_SECONDS, with the count of those
 * not reported, rather than on every retry. */
#define ACCEPT_REPORT_SECONDS 60.0

static struct {
    bool reported_once;
    ev_tstamp reported_at;
    unsigned long unreported;
} accept_failures;

static void report_accept_failure(struct worker *w, const struct listener *l, int err)
{
    ev_tstamp now = ev_now(w->loop);
    if (accept_failures.reported_once &&
        now - accept_failures.reported_at < ACCEPT_REPORT_SECONDS) {
        accept_failures.unreported++;
        return;
    }
    if (accept_failures.reported_once)
        log_warning("accept on %s failed: %s (and %lu time(s) since the last report)", l->name,
                    strerror(err), accept_failures.unreported);
    else
        log_warning("accept on %s failed: %s; retrying every %.0f ms, reported at most every "
                    "%.0f s",
                    l->name, strerror(err), ACCEPT_RETRY_SECONDS * 1000, ACCEPT_REPORT_SECONDS);
    accept_failures.reported_once = true;
    accept_failures.reported_at = now;
    accept_failures.unreported = 0;
}

static void worker_begin_shutdown(struct worker *w);

static void accept_pause(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        ev_io_stop(w->loop, &w->accept_io[i]);
}

static void accept_resume(struct worker *w)
{
    if (w->draining)
        return;
    for (size_t i = 0; i < w->nlisteners; i++)
        ev_io_start(w->loop, &w->accept_io[i]);
}

static void on_accept_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    accept_resume(t->data);
}

static void describe_peer(struct conn *c, const struct sockaddr_storage *sa, bool unix_socket)
{
    if (unix_socket || sa->ss_family == AF_UNIX) {
        c->unix_socket = true;
        snprintf(c->peer, sizeof c->peer, "unix");
        c->peer_ip_len = 4;
        return;
    }
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        port = ntohs(in->sin_port);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        port = ntohs(in6->sin6_port);
    }
    c->peer_ip_len = strlen(ip);
    snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = &the_worker;
    struct listener *l = io->data;
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
        if (!l->unix_socket) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        struct conn *c = conn_accept(w, fd);
        if (!c) {
            log_error("out of memory accepting a connection on %s", l->name);
            close(fd);
            continue;
        }
        describe_peer(c, &sa, l->unix_socket);
        c->next = w->conns;
        if (w->conns)
            w->conns->prev = c;
        w->conns = c;
        w->nconns++;
        log_trace("%s: connected", c->peer);
    }
}

void worker_conn_closed(struct worker *w, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    w->nconns--;
    log_trace("%s: closed", c->peer);
}

void worker_request_served(struct worker *w)
{
    w->served++;
    long max = w->cfg->limit_max_requests;
    if (max > 0 && w->served >= max && !w->draining) {
        log_info("Maximum request limit of %ld exceeded. Terminating process.", max);
        worker_begin_shutdown(w);
    }
}

/* End of each loop iteration: deferred continuations first (they produce
 * output), then one write per connection with output, then the access log. */
void worker_end_iteration(struct worker *w)
{
    while (w->defer_first || w->dirty) {
        while (w->defer_first) {
            struct defer *d = w->defer_first;
            w->defer_first = d->next;
            if (!w->defer_first)
                w->defer_last = NULL;
            d->queued = false;
            d->fn(d);
        }
        while (w->dirty) {
            struct conn *c = w->dirty;
            w->dirty = c->dirty_next;
            c->dirty = false;
            conn_flush(c);
        }
    }
    log_flush();
}

static void on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)revents;
    struct worker *w = p->data;
    worker_end_iteration(w);
    if (w->draining && w->nconns == 0 && w->inflight == 0 && host_pending_jobs() == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void close_all(struct worker *w, bool force)
{
    struct conn *c = w->conns;
    while (c) {
        struct conn *next = c->next;
        if (force)
            conn_abort(c);
        else
            conn_shutdown(c);
        c = next;
    }
}

static void on_grace_expired(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = t->data;
    log_warning("graceful shutdown timed out with %zu connection(s) and %ld request(s) in flight",
                w->nconns, w->inflight);
    close_all(w, true);
    ev_break(loop, EVBREAK_ALL);
}

static void worker_begin_shutdown(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    w->drain_started = ev_now(w->loop);
    accept_pause(w);
    ev_timer_stop(w->loop, &w->accept_retry);
    close_all(w, false);
    ev_timer_set(&w->grace, w->cfg->timeout_graceful_shutdown, 0);
    ev_timer_start(w->loop, &w->grace);
}

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = s->data;
    if (s->signum == SIGINT && w->draining) {
        log_flush();
        _exit(1); /* a second Ctrl-C: stop now */
    }
    if (s->signum == SIGQUIT) {
        log_flush();
        _exit(0);
    }
    worker_begin_shutdown(w);
}

/* "--header name:value" becomes "name: value\r\n", ready to copy into each
 * response head. */
static int build_default_headers(struct worker *w)
{
    const struct config *cfg = w->cfg;
    size_t cap = 1;
    for (size_t i = 0; i < cfg->nheaders; i++)
        cap += strlen(cfg->headers[i]) + 4;
    w->default_headers = malloc(cap);
    if (!w->default_headers)
        return -1;
    char *p = w->default_headers;
    for (size_t i = 0; i < cfg->nheaders; i++) {
        const char *h = cfg->headers[i], *colon = strchr(h, ':'), *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        /* Lower-cased like every header evicorn writes (and as uvicorn
         * writes --header). */
        for (const char *q = h; q < colon; q++)
            *p++ = (*q >= 'A' && *q <= 'Z') ? (char)(*q + 32) : *q;
        memcpy(p, ": ", 2);
        p += 2;
        memcpy(p, v, strlen(v));
        p += strlen(v);
        memcpy(p, "\r\n", 2);
        p += 2;
    }
    w->default_headers_len = (size_t)(p - w->default_headers);
    return 0;
}

static void worker_free(struct worker *w)
{
    pool_free(w->pool);
    if (w->mailbox) {
        mailbox_drain(w->mailbox);
        mailbox_free(w->mailbox);
    }
    while (w->free_requests) {
        struct request *r = w->free_requests;
        w->free_requests = r->next;
        h1_head_free(&r->head);
        buf_free(&r->body);
        buf_free(&r->out);
        buf_free(&r->path_buf);
        free(r);
    }
    free(w->accept_io);
    free(w->scratch);
    free(w->default_headers);
}

int worker_run(const struct config *cfg, struct listener *listeners, size_t nlisteners, int index)
{
    struct worker *w = &the_worker;
    *w = (struct worker){
        .loop = EV_DEFAULT,
        .cfg = cfg,
        .index = index,
        .listeners = listeners,
        .nlisteners = nlisteners,
        .limits = {.max_head = 16 * 1024, .max_line = 8 * 1024, .max_headers = 128},
    };
    int status = 1;
    w->scratch_cap = SCRATCH_SIZE;
    w->scratch = malloc(w->scratch_cap);
    w->accept_io = calloc(nlisteners, sizeof *w->accept_io);
    if (!w->scratch || !w->accept_io || build_default_headers(w) < 0) {
        log_error("worker %d: out of memory", index);
        goto out;
    }
    w->mailbox = mailbox_new(w->loop);
    w->pool = w->mailbox ? pool_new(w->mailbox, (unsigned)cfg->threads) : NULL;
    if (!w->pool) {
        log_error("worker %d: cannot create the thread pool: %s", index, strerror(errno));
        goto out;
    }
    if (dispatch_init(w) < 0) {
        status = 3;
        goto out;
    }

    for (size_t i = 0; i < nlisteners; i++) {
        ev_io_init(&w->accept_io[i], on_accept, listeners[i].fd, EV_READ);
        w->accept_io[i].data = &listeners[i];
        ev_io_start(w->loop, &w->accept_io[i]);
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
    /* Signals must not keep a drained loop alive. */
    ev_unref(w->loop);
    ev_unref(w->loop);
    ev_unref(w->loop);

    log_debug("worker %d started (pid %d)", index, (int)getpid());
    ev_run(w->loop, 0);
    log_flush();

    ev_ref(w->loop);
    ev_ref(w->loop);
    ev_ref(w->loop);
    ev_signal_stop(w->loop, &w->sig_term);
    ev_signal_stop(w->loop, &w->sig_int);
    ev_signal_stop(w->loop, &w->sig_quit);
    ev_prepare_stop(w->loop, &w->prepare);
    ev_timer_stop(w->loop, &w->grace);
    accept_pause(w);
    close_all(w, true);
    dispatch_shutdown(w);
    status = 0;
out:
    worker_free(w);
    log_flush();
    return status;
}
