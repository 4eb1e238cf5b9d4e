/* ws_proto: WebSocket on a connection; see ws_proto.h.
 *
 * Like every protocol, nothing here closes the connection from inside a
 * callback: a close is asked for (conn_close_after_output) and the
 * connection does it from its own callbacks. */
#include "ws_proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "utf8.h"
#include "ws_frame.h"
#include "ws_reader.h"
#include "ws_writer.h"

/* How long the peer has to answer our close frame before the connection
 * is closed anyway (RFC 6455 7.1.1 lets the server close first). */
#define CLOSE_TIMEOUT 5.0
/* A message buffer larger than this is freed after its message, so an
 * idle connection holds no memory for the largest message it once got. */
#define KEEP_MESSAGE_BUFFER (4 * 1024)

struct ws_compression {
    struct ws_deflate_params params;
    struct ws_zstream inflater, deflater;
    struct buf inflated;
};

struct ws_conn {
    struct ws_server *srv;
    struct conn *conn; /* NULL until attached */
    const struct ws_events *ev;
    void *ud;
    struct ws_reader reader;
    /* permessage-deflate, when negotiated: apart so that a connection
     * without it carries none of it. */
    struct ws_compression *z;
    struct buf early; /* output before the connection was attached */
    bool paused;
    bool failed;         /* a protocol error: nothing more is read */
    bool close_sent;     /* our close frame is queued */
    bool close_received; /* the peer's close frame arrived */
    uint16_t close_code; /* what the owner hears: the peer's code, else ours */
    char *close_reason;  /* allocated when a close carries one */
    size_t close_reason_len;
    ev_tstamp close_sent_at;
    ev_tstamp last_seen;    /* when the peer last sent anything */
    ev_tstamp ping_sent_at; /* 0: no ping waits for its pong */
    ev_tstamp last_ping;    /* when the last ping went out */
};

void ws_server_init(struct ws_server *s, const struct config *cfg)
{
    *s = (struct ws_server){
        .max_size = cfg->ws_max_size,
        .ping_interval = cfg->ws_ping_interval,
        .ping_timeout = cfg->ws_ping_timeout,
        .deflate = cfg->ws_per_message_deflate,
    };
}

static struct ws_conn *ws_of(const struct conn *c)
{
    return c->proto_state;
}

static ev_tstamp now_of(const struct ws_conn *wc)
{
    return ev_now(wc->conn->ctx->loop);
}

static struct buf *out_of(struct ws_conn *wc)
{
    return wc->conn ? conn_output(wc->conn) : &wc->early;
}

/* What the owner will hear; a reason that cannot be kept is dropped. */
static void record_close(struct ws_conn *wc, uint16_t code, const char *reason, size_t n)
{
    wc->close_code = code;
    free(wc->close_reason);
    wc->close_reason = NULL;
    wc->close_reason_len = 0;
    if (n > WS_CLOSE_REASON_MAX)
        n = WS_CLOSE_REASON_MAX;
    if (n > 0 && (wc->close_reason = malloc(n))) {
        memcpy(wc->close_reason, reason, n);
        wc->close_reason_len = n;
    }
}

/* Queues our close frame (once) and records the code, unless the peer's
 * own close already decided what the owner hears. */
static int send_close(struct ws_conn *wc, uint16_t code, const char *reason, size_t n)
{
    if (wc->close_sent)
        return -EPIPE;
    if (ws_write_close(out_of(wc), code, reason, n) < 0)
        return -ENOMEM;
    wc->close_sent = true;
    if (!wc->close_received)
        record_close(wc, code, reason, n);
    if (wc->conn)
        wc->close_sent_at = now_of(wc);
    return 0;
}

/* Fails the connection (RFC 6455 7.1.7): our close frame with the code,
 * then the connection closes, lingering so the frame is not reset away. */
static void fail(struct ws_conn *wc, uint16_t code)
{
    if (log_enabled(LOG_DEBUG)) {
        char peer[ADDR_TEXT_MAX];
        log_debug("%s: WebSocket closed with %u", conn_peer_text(wc->conn, peer), code);
    }
    wc->failed = true;
    send_close(wc, code, NULL, 0);
    conn_close_after_output(wc->conn, true);
}

/* ---- the reader's events ---- */

static int on_message(void *ud, bool text, bool compressed, const uint8_t *data, size_t len)
{
    struct ws_conn *wc = ud;
    const char *p = (const char *)data;
    size_t n = len;
    struct ws_compression *z = wc->z;
    if (compressed) {
        uint16_t code = 0;
        buf_clear(&z->inflated);
        if (ws_inflate_message(&z->inflater, &z->params, (const uint8_t *)p, n, &z->inflated,
                               wc->srv->max_size, &code) < 0) {
            fail(wc, code);
            return -1;
        }
        p = buf_start(&z->inflated);
        n = buf_size(&z->inflated);
        if (text && !utf8_valid((const uint8_t *)p, n)) {
            fail(wc, WS_CLOSE_INVALID_DATA);
            return -1;
        }
    }
    /* After our close, the peer's messages have nobody to go to. */
    if (!wc->close_sent)
        wc->ev->message(wc->ud, !text, p, n);
    if (z && z->inflated.cap > KEEP_MESSAGE_BUFFER)
        buf_free(&z->inflated);
    return 0;
}

static int on_control(void *ud, uint8_t opcode, const uint8_t *p, size_t n)
{
    struct ws_conn *wc = ud;
    if (opcode == WS_OP_PING && !wc->close_sent) {
        if (ws_write_control(out_of(wc), WS_OP_PONG, p, n) < 0) {
            fail(wc, WS_CLOSE_INTERNAL_ERROR);
            return -1;
        }
    } else if (opcode == WS_OP_PONG) {
        wc->ping_sent_at = 0;
    }
    return 0;
}

static int on_close(void *ud, uint16_t code, const uint8_t *reason, size_t n)
{
    struct ws_conn *wc = ud;
    wc->close_received = true;
    record_close(wc, code, (const char *)reason, n);
    /* Answer with the same code (none for a close without one), then the
     * server closes the TCP connection first (7.1.1). */
    if (!wc->close_sent)
        send_close(wc, code, NULL, 0);
    conn_close_after_output(wc->conn, false);
    return 0;
}

static const struct ws_reader_events reader_events = {on_message, on_control, on_close};

/* ---- the connection's view ---- */

static size_t ws_received(struct conn *c, const char *data, size_t len)
{
    struct ws_conn *wc = ws_of(c);
    if (wc->failed || wc->close_received)
        return len; /* 7.1.7 / 5.5.1: nothing after a close or an error counts */
    /* Paused, frames wait; after our close, only the peer's answer is
     * awaited (messages are dropped), so reading goes on. */
    if (wc->paused && !wc->close_sent)
        return 0;
    wc->last_seen = now_of(wc);
    uint16_t code = 0;
    /* The connection's input buffers are its own and writable: frames are
     * unmasked in place. */
    if (ws_reader_feed(&wc->reader, (uint8_t *)data, len, &code) < 0 && code != 0 && !wc->failed)
        fail(wc, code);
    return len;
}

static enum conn_input ws_input(const struct conn *c)
{
    const struct ws_conn *wc = ws_of(c);
    if (wc->failed || wc->close_received)
        return CONN_INPUT_CLOSED;
    return wc->paused && !wc->close_sent ? CONN_INPUT_PAUSED : CONN_INPUT_OPEN;
}

static ev_tstamp ws_deadline(const struct conn *c)
{
    const struct ws_conn *wc = ws_of(c);
    const struct ws_server *srv = wc->srv;
    if (wc->close_sent)
        return wc->close_sent_at + CLOSE_TIMEOUT;
    if (wc->paused)
        return 0; /* a pong could not be read: no keepalive while paused */
    if (wc->ping_sent_at > 0)
        return wc->ping_sent_at + srv->ping_timeout;
    ev_tstamp from = wc->last_seen > wc->last_ping ? wc->last_seen : wc->last_ping;
    return srv->ping_interval > 0 ? from + srv->ping_interval : 0;
}

static bool ws_timeout(struct conn *c)
{
    struct ws_conn *wc = ws_of(c);
    if (wc->close_sent)
        return true; /* the peer did not answer our close */
    if (wc->ping_sent_at > 0) {
        /* Like the websockets library behind uvicorn: no pong, 1011. */
        fail(wc, WS_CLOSE_INTERNAL_ERROR);
        return false;
    }
    static const uint8_t payload[] = "evicorn";
    if (ws_write_control(conn_output(c), WS_OP_PING, payload, sizeof payload - 1) < 0)
        return true;
    wc->last_ping = now_of(wc);
    if (wc->srv->ping_timeout > 0)
        wc->ping_sent_at = wc->last_ping;
    return false;
}

static void ws_writable(struct conn *c)
{
    struct ws_conn *wc = ws_of(c);
    wc->ev->writable(wc->ud);
}

static void ws_shutdown(struct conn *c)
{
    struct ws_conn *wc = ws_of(c);
    /* Graceful shutdown: the peer is told the server is going away, and
     * has until the close timeout (or the shutdown's own) to answer. */
    if (!wc->close_sent)
        send_close(wc, WS_CLOSE_GOING_AWAY, NULL, 0);
    conn_resume_input(c); /* frames held while paused may hold the answer */
}

static void ws_conn_free(struct ws_conn *wc)
{
    ws_reader_free(&wc->reader);
    if (wc->z) {
        ws_inflate_end(&wc->z->inflater);
        ws_deflate_end(&wc->z->deflater);
        buf_free(&wc->z->inflated);
        free(wc->z);
    }
    free(wc->close_reason);
    buf_free(&wc->early);
    free(wc);
}

static void ws_closed(struct conn *c, enum conn_end why)
{
    struct ws_conn *wc = ws_of(c);
    (void)why;
    wc->srv->open--;
    metrics_websocket_closed();
    uint16_t code =
        wc->close_received || wc->close_sent ? wc->close_code : (uint16_t)WS_CLOSE_ABNORMAL;
    wc->ev->closed(wc->ud, code, wc->close_reason, wc->close_reason_len);
    ws_conn_free(wc);
}

static const struct conn_proto ws_conn_proto = {
    .name = "websocket",
    .received = ws_received,
    .input = ws_input,
    .deadline = ws_deadline,
    .timeout = ws_timeout,
    .writable = ws_writable,
    .shutdown = ws_shutdown,
    .closed = ws_closed,
};

/* ---- for the owner ---- */

struct ws_conn *ws_conn_new(struct ws_server *srv, const struct ws_deflate_params *deflate,
                            const struct ws_events *ev, void *ud)
{
    struct ws_conn *wc = calloc(1, sizeof *wc);
    if (!wc)
        return NULL;
    wc->srv = srv;
    wc->ev = ev;
    wc->ud = ud;
    ws_reader_init(&wc->reader, &reader_events, wc, srv->max_size);
    if (deflate) {
        wc->z = calloc(1, sizeof *wc->z);
        if (!wc->z) {
            free(wc);
            return NULL;
        }
        wc->z->params = *deflate;
        ws_reader_allow_compression(&wc->reader);
    }
    return wc;
}

void ws_conn_discard(struct ws_conn *wc)
{
    ws_conn_free(wc);
}

void ws_conn_attach(void *ud, struct conn *c)
{
    struct ws_conn *wc = ud;
    if (!c) {
        wc->ev->closed(wc->ud, WS_CLOSE_ABNORMAL, NULL, 0);
        ws_conn_free(wc);
        return;
    }
    wc->conn = c;
    wc->srv->open++;
    metrics_websocket_opened();
    wc->last_seen = now_of(wc);
    if (wc->close_sent)
        wc->close_sent_at = wc->last_seen;
    conn_set_proto(c, &ws_conn_proto, wc);
    if (buf_size(&wc->early) > 0) {
        if (buf_append(conn_output(c), buf_start(&wc->early), buf_size(&wc->early)) < 0)
            fail(wc, WS_CLOSE_INTERNAL_ERROR);
        buf_free(&wc->early);
    }
    /* Accepted while the server is shutting down: told at once. */
    if (c->ctx->draining && !wc->close_sent)
        send_close(wc, WS_CLOSE_GOING_AWAY, NULL, 0);
    if (wc->close_sent)
        conn_update(c);
    /* Frames the client sent right after its handshake were held. */
    conn_resume_input(c);
}

int ws_conn_send(struct ws_conn *wc, bool binary, const void *p, size_t n)
{
    if (wc->close_sent || wc->close_received || wc->failed)
        return -EPIPE;
    if (!binary && !utf8_valid(p, n))
        return -EINVAL;
    struct ws_compression *z = wc->z;
    bool compress = z && ws_deflate_can_compress(&z->params);
    if (ws_write_message(out_of(wc), !binary, p, n, compress ? &z->params : NULL,
                         z ? &z->deflater : NULL, 0) < 0) {
        if (wc->conn)
            fail(wc, WS_CLOSE_INTERNAL_ERROR);
        return -ENOMEM;
    }
    return 0;
}

int ws_conn_close(struct ws_conn *wc, uint16_t code, const char *reason, size_t n)
{
    int rc = send_close(wc, code, reason, n);
    if (rc == 0 && wc->conn)
        conn_resume_input(wc->conn);
    return rc;
}

bool ws_conn_writable(const struct ws_conn *wc)
{
    return !wc->conn || !conn_output_full(wc->conn);
}

void ws_conn_pause(struct ws_conn *wc, bool paused)
{
    if (wc->paused == paused)
        return;
    wc->paused = paused;
    if (!wc->conn)
        return;
    if (paused)
        conn_update(wc->conn);
    else
        conn_resume_input(wc->conn);
}
