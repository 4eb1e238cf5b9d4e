/* conn: the server's view of one client connection and its requests.
 *
 * A connection reads bytes, feeds them to the HTTP/1 parser and keeps the
 * requests it has parsed in a queue in arrival order. Requests are handed to
 * dispatch as soon as their head is complete, so pipelined requests run
 * concurrently; their responses still leave in order because a request that
 * is not at the front of the queue writes into its own buffer, which moves
 * to the connection's output when the requests before it are done.
 *
 * Output for every connection is written once per loop iteration (in the
 * worker's prepare watcher), so a batch of pipelined responses is one write.
 *
 * A request outlives its connection when a handler still holds it: the
 * connection then detaches (request->conn = NULL) and every later call on
 * the request reports the disconnect instead of touching freed memory. */
#ifndef EVICORN_CONN_H
#define EVICORN_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "http1.h"
#include "request.h"

struct worker;

/* A callback deferred to the end of the current loop iteration, so that
 * continuations never run inside the call that scheduled them. */
struct defer {
    struct defer *next;
    void (*fn)(struct defer *);
    bool queued;
};

enum body_mode { BODY_UNREAD, BODY_CHUNKS, BODY_WHOLE, BODY_DISCARD };
enum resp_state { RESP_NONE, RESP_STARTED, RESP_DONE };
enum resp_framing { FRAME_LENGTH, FRAME_CHUNKED, FRAME_CLOSE, FRAME_NONE };

struct request {
    struct worker *w;
    struct conn *conn; /* NULL once the connection is gone */
    struct request *next;
    unsigned refs;

    struct h1_head head;
    const char *raw_path; /* into head.store */
    size_t raw_path_len;
    const char *query;
    size_t query_len;
    const char *path; /* raw_path, or path_buf when percent-decoding changed it */
    size_t path_len;
    struct buf path_buf;
    char client[64]; /* "ip:port" as the access log and scope show it */
    const char *scheme;

    bool dispatched;
    bool disconnected;
    bool keep_alive;
    bool is_head;
    bool body_complete;
    bool body_too_large;
    bool body_broken; /* the body failed to parse after dispatch */
    bool sent_continue;
    bool handler_done;
    bool body_final_delivered; /* the last body call (more == false) happened */
    bool pending_disconnect;
    bool pending_drain;

    /* Request body not yet handed to the handler. */
    enum body_mode body_mode;
    struct buf body;
    uint64_t body_received;
    request_body_fn body_fn;
    void *body_ud;
    struct defer body_defer;

    request_event_fn disconnect_fn;
    void *disconnect_ud;
    request_event_fn drain_fn;
    void *drain_ud;
    struct defer event_defer;
    struct defer dispatch_defer;

    /* Response. */
    enum resp_state resp;
    enum resp_framing framing;
    int status;
    uint64_t resp_remaining; /* FRAME_LENGTH: body bytes still owed */
    struct buf out;          /* response bytes while not first in the queue */
};

struct conn {
    struct worker *w;
    struct conn *prev, *next; /* worker's list of connections */
    struct conn *dirty_next;  /* worker's list of connections with output to write */
    bool dirty;
    int fd;
    ev_io rio, wio;
    ev_timer timer;
    ev_tstamp deadline;   /* 0: no deadline now */
    ev_tstamp timer_at;   /* when the armed timer fires */
    ev_tstamp head_start; /* when the head being read began */
    struct h1_parser *parser;
    struct buf in;                /* bytes read but not yet parsed (parsing paused) */
    struct buf out;               /* bytes waiting for the socket */
    struct request *first, *last; /* queue, arrival order */
    struct request *reading;      /* request whose head or body is being parsed */
    unsigned queued;
    unsigned served;
    bool no_more_requests;    /* a response closes the connection: parse nothing more */
    bool closing;             /* close once the queue has drained and output is written */
    bool lingering;           /* write side shut; reading only until the client closes */
    bool need_linger;         /* the client may still be sending when we close */
    ev_tstamp body_progress;  /* last body bytes read */
    ev_tstamp write_progress; /* last bytes the client accepted */
    struct defer resume_defer;
    char peer[64];
    size_t peer_ip_len; /* peer[0..peer_ip_len) is the address alone */
    bool unix_socket;
};

/* worker.c calls these. */
struct conn *conn_accept(struct worker *w, int fd);
void conn_flush(struct conn *c);
/* Graceful shutdown: closes the connection now when idle, otherwise once its
 * in-flight requests are answered. */
void conn_shutdown(struct conn *c);
/* Force-closes; requests still held by handlers see a disconnect. */
void conn_abort(struct conn *c);

/* request.c and conn.c share these. */
int conn_request_output(struct conn *c, struct request *r, const void *data, size_t len);
/* Where request r's response bytes go now: the connection's output when r
 * is first in the queue, else r's own buffer. */
struct buf *conn_output_for(struct conn *c, struct request *r);
bool conn_output_full(const struct conn *c, const struct request *r);
void conn_response_done(struct conn *c, struct request *r);
void conn_body_consumed(struct conn *c);
void conn_schedule_flush(struct conn *c);
void defer_schedule(struct worker *w, struct defer *d, void (*fn)(struct defer *));
void request_detach(struct request *r);
struct request *request_alloc(struct worker *w, struct conn *c);
void request_body_arrived(struct request *r);
/* Derives path, query and client from a complete head; -1 when invalid. */
int request_prepare(struct request *r);
void request_drained(struct request *r);

#endif
