/* ws_proto: WebSocket (RFC 6455, RFC 7692) as a protocol on a connection.
 *
 * A connection speaks it after an accepted opening handshake: the HTTP/1.1
 * protocol answers 101 and hands the connection over (request_upgrade),
 * and ws_conn_attach makes this the connection's protocol. ws_proto.c owns
 * a WebSocket connection's state from ws_conn_new to the connection's
 * closed callback: reading frames into whole messages (ws_reader.c),
 * inflating compressed ones (ws_deflate.c), answering pings, pinging an
 * idle peer and closing it when it does not answer, the closing
 * handshake in both directions, and framing what the server sends
 * (ws_writer.c).
 *
 * Its owner (the host's session for the plugin that accepted it) hears of
 * messages, writability and the end through struct ws_events, and talks to
 * it only through the functions below. Everything here runs on the loop
 * thread. */
#ifndef EVICORN_WS_PROTO_H
#define EVICORN_WS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "ws_deflate.h"

struct config;
struct ws_conn;

/* Per-worker settings and counts; the worker owns the instance. */
struct ws_server {
    uint64_t max_size;    /* --ws-max-size */
    double ping_interval; /* --ws-ping-interval (0: never) */
    double ping_timeout;  /* --ws-ping-timeout (0: no answer needed) */
    bool deflate;         /* --ws-per-message-deflate */
    size_t open;          /* connections attached and not yet closed */
};

void ws_server_init(struct ws_server *s, const struct config *cfg);

/* What the owner hears. None may free the connection; closed is the last
 * call, after which the ws_conn is gone. */
struct ws_events {
    /* A whole message (inflated; text is valid UTF-8); p is valid only
     * during the call. */
    void (*message)(void *ud, bool binary, const char *p, size_t n);
    /* The output fell below the low-water mark (after ws_conn_writable
     * said false). */
    void (*writable)(void *ud);
    /* The connection ended: the peer's close code and reason, the code the
     * server closed with when the peer did not answer, or 1006 when it was
     * lost without a close frame. */
    void (*closed)(void *ud, uint16_t code, const char *reason, size_t n);
};

/* A connection for an accepted handshake; deflate NULL when
 * permessage-deflate was not negotiated. Output written before it is
 * attached waits, and leaves after the 101. NULL on out of memory. */
struct ws_conn *ws_conn_new(struct ws_server *srv, const struct ws_deflate_params *deflate,
                            const struct ws_events *ev, void *ud);
/* Frees a connection that was never attached nor handed to
 * request_upgrade (the upgrade failed); no event is sent. */
void ws_conn_discard(struct ws_conn *wc);
/* request_upgrade's attach: c becomes this protocol's (NULL: the client
 * left before the 101 went out; the owner hears 1006). */
void ws_conn_attach(void *wc, struct conn *c);

/* One message. 0; -EPIPE once a close was sent or received or the
 * connection is gone; -EINVAL for text that is not UTF-8; -ENOMEM. */
int ws_conn_send(struct ws_conn *wc, bool binary, const void *p, size_t n);
/* Starts the closing handshake with a valid code (ws_close_code_valid)
 * and a reason; the connection closes once the peer answers, or after a
 * few seconds. -EPIPE when a close was already sent. */
int ws_conn_close(struct ws_conn *wc, uint16_t code, const char *reason, size_t n);
/* Whether more output may be queued now; when false, writable follows. */
bool ws_conn_writable(const struct ws_conn *wc);
/* Stops reading (no more messages) until unpaused. */
void ws_conn_pause(struct ws_conn *wc, bool paused);

#endif
