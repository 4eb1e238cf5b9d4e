/* conn: the transport side of a client connection; see conn.h.
 *
 * The connection re-decides two things after every event: whether to read
 * (not while the output is over the high-water mark, not while the
 * protocol is paused, not while unconsumed input is held) and when its one
 * timer fires (lingering, a stalled write, or the protocol's deadline). */
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "container.h"
#include "log.h"
#include "metrics.h"

/* Output held for a client before reading from it pauses and producers are
 * told to wait; they hear it is writable again below the low mark. */
#define OUT_HIGH_WATER (256 * 1024)
#define OUT_LOW_WATER  (64 * 1024)
/* After an error response, how long the client may keep sending before the
 * socket is closed (closing at once would reset the response away). */
#define LINGER_SECONDS 2.0
/* The output buffer kept between responses; a larger one is given back. */
#define KEEP_OUT_MAX 4096
/* The slot buffer kept between exchanges; a larger one is given back. */
#define KEEP_SLOT_MAX (64 * 1024)
/* File bytes one connection sends per turn: a fast reader of a large file
 * then waits for the next loop iteration instead of holding the loop. */
#define FILE_BURST (1024 * 1024)

static void on_read(struct ev_loop *loop, ev_io *io, int revents);
static void on_write(struct ev_loop *loop, ev_io *io, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *t, int revents);
static void conn_close(struct conn *c, enum conn_end why);
static void conn_flush(struct conn *c);

/* ---- plain socket I/O (TLS would replace these) ---- */

static ssize_t sock_read(struct conn *c, void *buf, size_t len)
{
    ssize_t n;
    do
        n = read(c->fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n;
}

static ssize_t sock_write(struct conn *c, const void *buf, size_t len, bool more)
{
    ssize_t n;
    do
        n = more ? send(c->fd, buf, len, MSG_MORE | MSG_NOSIGNAL) : write(c->fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n;
}

static ssize_t sock_sendfile(struct conn *c, int fd, off_t *off, size_t len)
{
    ssize_t n;
    do
        n = sendfile(c->fd, fd, off, len);
    while (n < 0 && errno == EINTR);
    return n;
}

static int sock_shutdown_write(struct conn *c)
{
    return shutdown(c->fd, SHUT_WR);
}

static const struct conn_io plain_io = {sock_read, sock_write, sock_sendfile, sock_shutdown_write};

/* ---- queued files ---- */

static void outq_free(struct conn_outq *q)
{
    while (q->first) {
        struct conn_file *f = q->first;
        q->first = f->next;
        close(f->fd);
        buf_free(&f->before);
        free(f);
    }
    q->last = NULL;
}

/* Queues a file range after what tail holds: tail's bytes become the
 * file's "before", and tail starts empty (it now follows the file). */
static int outq_push_file(struct conn_outq *q, struct buf *tail, int fd, uint64_t off, uint64_t len)
{
    struct conn_file *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        return -ENOMEM;
    }
    f->before = *tail;
    *tail = (struct buf){0};
    f->fd = fd;
    f->off = (off_t)off;
    f->len = len;
    if (q->last)
        q->last->next = f;
    else
        q->first = f;
    q->last = f;
    return 0;
}

/* Moves the output (files src, then bytes src_tail) to the end of the
 * output (files dst, then bytes dst_tail). */
static int outq_move(struct conn_outq *dst, struct buf *dst_tail, struct conn_outq *src,
                     struct buf *src_tail)
{
    if (src->first) {
        /* dst's trailing bytes go ahead of src's first file */
        if (buf_size(dst_tail) > 0) {
            if (buf_move(dst_tail, &src->first->before) < 0)
                return -1;
            struct buf t = src->first->before;
            src->first->before = *dst_tail;
            *dst_tail = t;
        }
        if (dst->last)
            dst->last->next = src->first;
        else
            dst->first = src->first;
        dst->last = src->last;
        src->first = src->last = NULL;
    }
    return buf_move(dst_tail, src_tail);
}

/* Output over the high-water mark, or a file waiting (it is not in memory,
 * but a client that does not read it must not make more output pile up). */
static bool output_full(const struct conn *c)
{
    return buf_size(&c->out) >= OUT_HIGH_WATER || c->files.first != NULL;
}

/* ---- lifetime ---- */

/* Output (or a close) is waiting: write it at the end of this iteration. */
static void conn_schedule_flush(struct conn *c)
{
    if (c->dirty || c->fd < 0)
        return;
    c->dirty = true;
    c->dirty_next = c->ctx->dirty;
    c->ctx->dirty = c;
}

static void conn_maybe_free(struct conn *c)
{
    if (c->fd >= 0 || c->dirty || c->resume_defer.queued)
        return;
    free(c);
}

struct conn *conn_new(struct conn_ctx *ctx, int fd, const struct addr *peer)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ctx = ctx;
    c->fd = fd;
    c->peer = *peer;
    c->io = &plain_io;
    ev_io_init(&c->rio, on_read, fd, EV_READ);
    ev_io_init(&c->wio, on_write, fd, EV_WRITE);
    ev_init(&c->timer, on_timer);
    c->rio.data = c->wio.data = c->timer.data = c;
    c->next = ctx->conns;
    if (ctx->conns)
        ctx->conns->prev = c;
    ctx->conns = c;
    ctx->nconns++;
    metrics_conn_opened();
    return c;
}

void conn_set_proto(struct conn *c, const struct conn_proto *proto, void *state)
{
    c->proto = proto;
    c->proto_state = state;
    conn_update(c);
}

const char *conn_peer_text(const struct conn *c, char out[ADDR_TEXT_MAX])
{
    return addr_text(&c->peer, out);
}

static void conn_close(struct conn *c, enum conn_end why)
{
    struct conn_ctx *ctx = c->ctx;
    if (c->fd < 0)
        return;
    /* The protocol lets go first, while the connection is still whole. */
    c->closing = true;
    if (c->proto)
        c->proto->closed(c, why);
    c->proto = NULL;
    c->proto_state = NULL;
    while (c->first_slot)
        conn_slot_pop(c);
    outq_free(&c->files);
    ev_io_stop(ctx->loop, &c->rio);
    ev_io_stop(ctx->loop, &c->wio);
    ev_timer_stop(ctx->loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    buf_free(&c->in);
    buf_free(&c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        ctx->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    ctx->nconns--;
    metrics_conn_closed();
    if (log_enabled(LOG_TRACE)) {
        char peer[ADDR_TEXT_MAX];
        log_trace("%s: closed", conn_peer_text(c, peer));
    }
    conn_maybe_free(c);
}

void conn_abort(struct conn *c)
{
    conn_close(c, CONN_END_ABORT);
}

void conn_abort_all(struct conn_ctx *ctx)
{
    while (ctx->conns)
        conn_abort(ctx->conns);
}

void conn_shutdown_all(struct conn_ctx *ctx)
{
    struct conn *c = ctx->conns;
    while (c) {
        struct conn *next = c->next;
        c->proto->shutdown(c);
        c = next;
    }
}

void conn_close_after_output(struct conn *c, bool linger)
{
    if (!c->closing) {
        c->close_slot = c->first_slot;
        c->close_done = c->first_slot == NULL;
    }
    c->closing = true;
    c->linger = c->linger || linger;
    conn_schedule_flush(c);
}

/* Shut the write side and read until the client closes or LINGER_SECONDS. */
static void conn_start_linger(struct conn *c)
{
    if (c->lingering)
        return;
    c->lingering = true;
    c->linger_start = ev_now(c->ctx->loop);
    if (c->io->shutdown_write(c) < 0) {
        conn_close(c, CONN_END_DONE);
        return;
    }
    conn_update(c);
}

/* ---- input ---- */

/* Hands bytes to the protocol; what it does not consume is held. */
static void conn_deliver(struct conn *c, const char *data, size_t len)
{
    if (c->lingering)
        return; /* only waiting for the client to close */
    if (buf_size(&c->in) > 0) {
        if (buf_append(&c->in, data, len) < 0) {
            conn_close(c, CONN_END_ERROR);
            return;
        }
        size_t n = c->proto->received(c, buf_start(&c->in), buf_size(&c->in));
        buf_consume(&c->in, n);
        return;
    }
    size_t n = c->proto->received(c, data, len);
    if (n < len && buf_append(&c->in, data + n, len - n) < 0)
        conn_close(c, CONN_END_ERROR);
}

static void conn_resume(struct defer *d)
{
    struct conn *c = container_of(d, struct conn, resume_defer);
    if (c->fd < 0) {
        conn_maybe_free(c);
        return;
    }
    if (buf_size(&c->in) > 0) {
        size_t n = c->proto->received(c, buf_start(&c->in), buf_size(&c->in));
        buf_consume(&c->in, n);
    }
    if (c->fd >= 0) {
        conn_schedule_flush(c);
        conn_update(c);
    }
}

void conn_resume_input(struct conn *c)
{
    if (buf_size(&c->in) > 0)
        defer_schedule(c->ctx->defer, &c->resume_defer, conn_resume);
    else
        conn_update(c);
}

ssize_t conn_read_now(struct conn *c)
{
    struct conn_ctx *ctx = c->ctx;
    ssize_t n = c->io->read(c, ctx->scratch, ctx->scratch_cap);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (n > 0) {
        metrics_bytes_received((uint64_t)n);
        conn_deliver(c, ctx->scratch, (size_t)n);
    }
    return n;
}

static void on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = io->data;
    struct conn_ctx *ctx = c->ctx;
    ssize_t n = c->io->read(c, ctx->scratch, ctx->scratch_cap);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        /* The client closed (or reset): whatever it had in flight is now
         * disconnected, and the protocol tells its handlers. */
        conn_close(c, c->lingering ? CONN_END_DONE : CONN_END_PEER);
        return;
    }
    metrics_bytes_received((uint64_t)n);
    conn_deliver(c, ctx->scratch, (size_t)n);
    if (c->fd >= 0) {
        conn_schedule_flush(c);
        conn_update(c);
    }
}

/* ---- output ---- */

struct buf *conn_output(struct conn *c)
{
    conn_schedule_flush(c);
    return &c->out;
}

bool conn_output_full(const struct conn *c)
{
    return output_full(c);
}

static void conn_notify_writable(struct conn *c)
{
    if (c->proto && !c->files.first && buf_size(&c->out) < OUT_LOW_WATER)
        c->proto->writable(c);
}

/* The socket takes no more now: wait until it is writable. */
static void conn_wait_writable(struct conn *c)
{
    struct ev_loop *loop = c->ctx->loop;
    if (!ev_is_active(&c->wio)) {
        c->write_progress = ev_now(loop);
        ev_io_start(loop, &c->wio);
    }
    conn_notify_writable(c);
    if (c->fd >= 0)
        conn_update(c);
}

static void conn_write_failed(struct conn *c, const char *what)
{
    if (log_enabled(LOG_DEBUG)) {
        char peer[ADDR_TEXT_MAX];
        log_debug("%s: %s failed: %s", conn_peer_text(c, peer), what, strerror(errno));
    }
    conn_close(c, CONN_END_ERROR);
}

enum write_result { WRITE_DONE, WRITE_AGAIN, WRITE_CLOSED };

/* Writes b whole; more: a file follows it. */
static enum write_result write_buf(struct conn *c, struct buf *b, bool more)
{
    while (buf_size(b) > 0) {
        ssize_t n = c->io->write(c, buf_start(b), buf_size(b), more);
        if (n > 0) {
            metrics_bytes_sent((uint64_t)n);
            buf_consume(b, (size_t)n);
            c->write_progress = ev_now(c->ctx->loop);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return WRITE_AGAIN;
        conn_write_failed(c, "write");
        return WRITE_CLOSED;
    }
    return WRITE_DONE;
}

/* Sends f's range, at most *budget bytes of it this turn. */
static enum write_result write_file(struct conn *c, struct conn_file *f, size_t *budget)
{
    while (f->len > 0) {
        if (*budget == 0)
            return WRITE_AGAIN;
        size_t want = f->len < *budget ? (size_t)f->len : *budget;
        ssize_t n = c->io->sendfile(c, f->fd, &f->off, want);
        if (n > 0) {
            metrics_bytes_sent((uint64_t)n);
            f->len -= (uint64_t)n;
            *budget -= (size_t)n;
            c->write_progress = ev_now(c->ctx->loop);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return WRITE_AGAIN;
        if (n == 0) {
            /* The file became shorter than the response promised (it was
             * truncated while being sent): the response cannot be
             * completed, and only closing tells the client so. */
            char peer[ADDR_TEXT_MAX];
            log_warning("%s: file ended %llu bytes early (truncated while being sent); closing",
                        conn_peer_text(c, peer), (unsigned long long)f->len);
            conn_close(c, CONN_END_ERROR);
            return WRITE_CLOSED;
        }
        conn_write_failed(c, "sendfile");
        return WRITE_CLOSED;
    }
    return WRITE_DONE;
}

static void conn_flush(struct conn *c)
{
    struct ev_loop *loop = c->ctx->loop;
    if (c->fd < 0) {
        conn_maybe_free(c); /* closed while it waited on the dirty list */
        return;
    }
    size_t budget = FILE_BURST;
    for (;;) {
        struct conn_file *f = c->files.first;
        /* Bytes before a file go out with it in one packet where they can. */
        bool more = f && f->len > 0 && budget > 0;
        enum write_result w = write_buf(c, f ? &f->before : &c->out, more);
        if (w == WRITE_DONE && f)
            w = write_file(c, f, &budget);
        if (w == WRITE_AGAIN) {
            conn_wait_writable(c);
            return;
        }
        if (w == WRITE_CLOSED)
            return;
        if (!f)
            break;
        c->files.first = f->next;
        if (!c->files.first)
            c->files.last = NULL;
        f->next = NULL;
        struct conn_outq one = {f, f};
        outq_free(&one);
    }
    ev_io_stop(loop, &c->wio);
    /* Keep a small output buffer for the next response on this connection
     * (no allocation per request); give back a large one. */
    if (c->out.cap > KEEP_OUT_MAX)
        buf_free(&c->out);
    conn_notify_writable(c);
    if (c->closing) {
        if (c->linger)
            conn_start_linger(c);
        else
            conn_close(c, CONN_END_DONE);
        return;
    }
    conn_update(c);
}

void conn_flush_all(struct conn_ctx *ctx)
{
    while (ctx->dirty) {
        struct conn *c = ctx->dirty;
        ctx->dirty = c->dirty_next;
        c->dirty = false;
        conn_flush(c);
    }
}

static void on_write(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    conn_flush(io->data);
}

/* ---- ordered output ---- */

void conn_slot_push(struct conn *c, struct conn_slot *s)
{
    s->next = NULL;
    s->linked = true;
    if (c->last_slot)
        c->last_slot->next = s;
    else
        c->first_slot = s;
    c->last_slot = s;
}

struct conn_slot *conn_slot_front(const struct conn *c)
{
    return c->first_slot;
}

struct buf *conn_slot_output(struct conn *c, struct conn_slot *s)
{
    if (s == c->first_slot && !(c->closing && (c->close_done || s != c->close_slot))) {
        conn_schedule_flush(c);
        return &c->out;
    }
    return &s->held;
}

int conn_slot_write(struct conn *c, struct conn_slot *s, const void *data, size_t len)
{
    return buf_append(conn_slot_output(c, s), data, len) < 0 ? -ENOMEM : 0;
}

int conn_slot_send_file(struct conn *c, struct conn_slot *s, int fd, uint64_t off, uint64_t len)
{
    struct buf *out = conn_slot_output(c, s);
    if (out == &c->out)
        return outq_push_file(&c->files, &c->out, fd, off, len);
    return outq_push_file(&s->held_files, &s->held, fd, off, len);
}

bool conn_slot_full(const struct conn *c, const struct conn_slot *s)
{
    if (s == c->first_slot)
        return output_full(c);
    return buf_size(&s->held) >= OUT_HIGH_WATER || s->held_files.first != NULL;
}

int conn_slot_pop(struct conn *c)
{
    struct conn_slot *s = c->first_slot;
    if (!s)
        return 0;
    c->first_slot = s->next;
    if (!c->first_slot)
        c->last_slot = NULL;
    s->next = NULL;
    s->linked = false;
    if (s == c->close_slot) {
        c->close_slot = NULL;
        c->close_done = true;
    }
    /* Once a close is asked for, nothing queued behind may leave. */
    if (c->first_slot && c->fd >= 0 && !c->closing) {
        conn_schedule_flush(c);
        struct conn_slot *next = c->first_slot;
        if (outq_move(&c->files, &c->out, &next->held_files, &next->held) < 0)
            return -1;
    }
    return 0;
}

void conn_slot_reset(struct conn_slot *s)
{
    s->next = NULL;
    s->linked = false;
    outq_free(&s->held_files);
    if (s->held.cap > KEEP_SLOT_MAX)
        buf_free(&s->held);
    else
        buf_clear(&s->held);
}

void conn_slot_free(struct conn_slot *s)
{
    outq_free(&s->held_files);
    buf_free(&s->held);
}

/* ---- reading interest and the timer ---- */

/* Arms the connection's one timer for `at` (0: none). The timer is re-armed
 * lazily: a later deadline is noticed when the earlier one fires, so a busy
 * connection does not touch the timer heap on every request. */
static void conn_arm(struct conn *c, ev_tstamp at)
{
    struct ev_loop *loop = c->ctx->loop;
    c->deadline = at;
    if (at == 0)
        return;
    if (ev_is_active(&c->timer) && c->timer_at <= at)
        return;
    ev_timer_stop(loop, &c->timer);
    ev_timer_set(&c->timer, at - ev_now(loop), 0);
    ev_timer_start(loop, &c->timer);
    c->timer_at = at;
}

void conn_update(struct conn *c)
{
    struct ev_loop *loop = c->ctx->loop;
    if (c->fd < 0 || !c->proto)
        return;

    /* Keep reading while a request is in flight, so a client that goes
     * away is noticed at once; stop when the client is not reading its
     * output, when the protocol is paused, or when input is already held
     * for it (conn_resume_input offers that first). */
    enum conn_input in = c->lingering ? CONN_INPUT_CLOSED : c->proto->input(c);
    bool want = true;
    if (output_full(c))
        want = false;
    else if (in == CONN_INPUT_PAUSED)
        want = false;
    else if (in == CONN_INPUT_OPEN && buf_size(&c->in) > 0)
        want = false;
    if (want && !ev_is_active(&c->rio))
        ev_io_start(loop, &c->rio);
    else if (!want && ev_is_active(&c->rio))
        ev_io_stop(loop, &c->rio);

    ev_tstamp at;
    if (c->lingering)
        at = c->linger_start + LINGER_SECONDS;
    else if (ev_is_active(&c->wio))
        at = c->write_progress + c->ctx->timeout_write;
    else
        at = c->proto->deadline(c);
    conn_arm(c, at);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct conn *c = t->data;
    ev_tstamp now = ev_now(loop);
    if (c->deadline == 0)
        return;
    if (now < c->deadline) {
        ev_timer_set(&c->timer, c->deadline - now, 0);
        ev_timer_start(loop, &c->timer);
        c->timer_at = c->deadline;
        return;
    }
    if (c->lingering) {
        conn_close(c, CONN_END_DONE);
        return;
    }
    if (ev_is_active(&c->wio)) {
        if (log_enabled(LOG_DEBUG)) {
            char peer[ADDR_TEXT_MAX];
            log_debug("%s: write timeout", conn_peer_text(c, peer));
        }
        conn_close(c, CONN_END_TIMEOUT);
        return;
    }
    if (c->proto->timeout(c))
        conn_close(c, CONN_END_TIMEOUT);
    else
        conn_update(c);
}
