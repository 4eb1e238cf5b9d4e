/* conn: one client connection as a transport.
 *
 * conn.c owns a connection's life (accepted, reading, writing, lingering,
 * closed, freed) and everything that is about bytes rather than meaning:
 * the socket, the input held while the protocol cannot take it, the output
 * and its backpressure, the timer, and the order in which the output of
 * pipelined exchanges leaves (slots). What the bytes mean belongs to a
 * protocol: HTTP/1.1 today (http1_proto.c), WebSocket after a 101, HTTP/2
 * later. The connection calls its protocol only through struct conn_proto;
 * the protocol calls the connection only through the functions below. The
 * connection never includes a protocol's header.
 *
 * TLS, when it comes, is a layer under the protocol: the connection's
 * socket reads and writes (conn_io) become TLS reads and writes, and no
 * protocol changes.
 *
 * Closing is never done inside a protocol callback: a protocol asks for a
 * close (conn_close_after_output) and the connection closes from its own
 * event callbacks or the end-of-iteration flush, so no caller ever holds a
 * pointer to a freed connection.
 *
 * Every function here is for the loop thread. */
#ifndef EVICORN_CONN_H
#define EVICORN_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "addr.h"
#include "buf.h"
#include "defer.h"

struct conn;

/* What the protocol can take now (conn_proto.input). */
enum conn_input {
    CONN_INPUT_OPEN,   /* parse what arrives */
    CONN_INPUT_PAUSED, /* not now: stop reading until conn_resume_input */
    CONN_INPUT_CLOSED, /* never again: read only to notice the peer closing */
};

/* Why a connection ended (conn_proto.closed). */
enum conn_end {
    CONN_END_DONE,    /* closed after its last output, as the protocol asked */
    CONN_END_PEER,    /* the peer closed or reset the connection */
    CONN_END_ERROR,   /* a read or write failed, or memory ran out */
    CONN_END_TIMEOUT, /* a deadline passed (the protocol's, or a stalled write) */
    CONN_END_ABORT,   /* the server closed it (shutdown deadline, forced stop) */
};

/* The calls a connection makes into its protocol. All run on the loop
 * thread from the connection's own callbacks; none may close or free the
 * connection (ask with conn_close_after_output instead), except closed,
 * after which the protocol never touches the connection again. */
struct conn_proto {
    const char *name;
    /* Bytes arrived. Returns how many were consumed; the rest stay held by
     * the connection and are offered again after conn_resume_input. */
    size_t (*received)(struct conn *c, const char *data, size_t len);
    /* Whether to read more now (asked whenever the connection re-decides). */
    enum conn_input (*input)(const struct conn *c);
    /* The protocol's own deadline (request head, body, keep-alive), or 0
     * for none. Asked whenever the connection re-decides. */
    ev_tstamp (*deadline)(const struct conn *c);
    /* The protocol's deadline passed. Return true to close the connection,
     * false if the protocol moved its deadline. */
    bool (*timeout)(struct conn *c);
    /* The output fell below the low-water mark: producers may write again. */
    void (*writable)(struct conn *c);
    /* Graceful shutdown began: finish what is in flight, start nothing new,
     * and ask for a close when idle. */
    void (*shutdown)(struct conn *c);
    /* The connection is closing: release everything tied to it (exchanges
     * in flight hear of the disconnect) and free the protocol's state. */
    void (*closed)(struct conn *c, enum conn_end why);
};

/* The socket operations beneath the protocol: plain reads and writes
 * today; TLS replaces these, nothing else. write's more says bytes of a
 * file follow at once (so the kernel may put them in the same packet);
 * sendfile sends up to len bytes of the file fd from *off, advancing it
 * (TLS, which cannot use sendfile(2), would read and encrypt them). */
struct conn_io {
    ssize_t (*read)(struct conn *c, void *buf, size_t len);
    ssize_t (*write)(struct conn *c, const void *buf, size_t len, bool more);
    ssize_t (*sendfile)(struct conn *c, int fd, off_t *off, size_t len);
    int (*shutdown_write)(struct conn *c);
};

/* A range of a file in the output. The bytes queued before it (before)
 * leave first, then len bytes of fd from off; output queued after it
 * follows it. Owned by the queue it is on; fd is closed with it. */
struct conn_file {
    struct conn_file *next;
    struct buf before;
    int fd;
    off_t off;
    uint64_t len;
};

/* Output in order: the files (each after its own bytes), then tail. */
struct conn_outq {
    struct conn_file *first, *last;
};

/* A place in the order output leaves in. A pipelined exchange takes a slot
 * when it starts; its bytes go straight to the connection's output while
 * its slot is at the front, and wait in the slot's own buffer otherwise,
 * moving to the output when the slots before it end. */
struct conn_slot {
    struct conn_slot *next;
    struct buf held;             /* output written while not at the front */
    struct conn_outq held_files; /* files queued while not at the front, ahead of held */
    bool linked;
};

/* Per-worker state every connection shares. The worker owns the instance;
 * conn.c owns what is in it. */
struct conn_ctx {
    struct ev_loop *loop;
    struct defer_queue *defer;
    double timeout_write; /* longest a client may leave output unread */
    char *scratch;        /* read buffer shared by all connections */
    size_t scratch_cap;
    struct conn *conns; /* every open connection */
    size_t nconns;
    struct conn *dirty; /* connections with output to write this iteration */
    bool draining;      /* graceful shutdown has begun */
    ev_tstamp drain_started;
};

struct conn {
    struct conn_ctx *ctx;
    struct conn *prev, *next; /* ctx->conns */
    struct conn *dirty_next;  /* ctx->dirty */
    bool dirty;
    int fd;
    struct addr peer;
    const struct conn_io *io;
    const struct conn_proto *proto;
    void *proto_state; /* the protocol's, for the protocol */
    ev_io rio, wio;
    ev_timer timer;
    ev_tstamp deadline;       /* 0: no deadline now */
    ev_tstamp timer_at;       /* when the armed timer fires */
    ev_tstamp linger_start;   /* when lingering began */
    ev_tstamp write_progress; /* last bytes the client accepted */
    struct buf in;            /* bytes the protocol has not consumed */
    struct buf out;           /* bytes waiting for the socket (after files) */
    struct conn_outq files;   /* file ranges waiting for the socket, ahead of out */
    struct conn_slot *first_slot, *last_slot;
    bool closing; /* close once output is written */
    /* The response at the front when the close was asked for: the last to
     * leave. Once it has (close_done), a later response's output stays in
     * its slot and is dropped with the connection (RFC 9112 9.6). */
    struct conn_slot *close_slot;
    bool close_done;
    bool linger;    /* ... by shutting the write side and reading until the client closes */
    bool lingering; /* write side shut; reading only until the client closes */
    struct defer resume_defer;
};

/* Takes over fd (non-blocking) for a new connection from peer; the
 * protocol is attached next with conn_set_proto. NULL on out of memory. */
struct conn *conn_new(struct conn_ctx *ctx, int fd, const struct addr *peer);
/* Attaches (or switches to, after an upgrade) a protocol; its state is
 * the protocol's to allocate and free. Re-decides reading and the timer. */
void conn_set_proto(struct conn *c, const struct conn_proto *proto, void *state);

/* ---- for the worker ---- */

/* Writes every connection's pending output (end of loop iteration). */
void conn_flush_all(struct conn_ctx *ctx);
/* Graceful shutdown: each protocol finishes what is in flight; idle
 * connections close at once. */
void conn_shutdown_all(struct conn_ctx *ctx);
/* Closes every connection now; exchanges still held by handlers see a
 * disconnect. */
void conn_abort_all(struct conn_ctx *ctx);
/* Closes one connection now (not from inside a protocol callback). */
void conn_abort(struct conn *c);

/* ---- for the protocol ---- */

/* The output buffer, for bytes that need no ordering; the connection
 * writes it at the end of the iteration. */
struct buf *conn_output(struct conn *c);
bool conn_output_full(const struct conn *c);
/* Re-decides reading and the timer after the protocol's state changed. */
void conn_update(struct conn *c);
/* The protocol can take input again: held bytes are offered (on the next
 * deferred run, never inside this call) and reading resumes. */
void conn_resume_input(struct conn *c);
/* Whether bytes the protocol has not consumed are held. */
static inline bool conn_has_held_input(const struct conn *c)
{
    return buf_size(&c->in) > 0;
}
/* Reads once, now, and hands what came to the protocol: > 0 bytes read,
 * 0 the peer closed, -EAGAIN nothing waiting, other negative errno values
 * on errors. For a shutdown that wants what a client already sent. */
ssize_t conn_read_now(struct conn *c);
/* Closes once the output is written. With linger, the write side is shut
 * first and the connection read until the client closes (or 2 s), so a
 * client still sending does not reset the last response away. */
void conn_close_after_output(struct conn *c, bool linger);
/* A text for log lines: "ip:port". */
const char *conn_peer_text(const struct conn *c, char out[ADDR_TEXT_MAX]);

/* Ordered output. */
void conn_slot_push(struct conn *c, struct conn_slot *s);
struct conn_slot *conn_slot_front(const struct conn *c);
/* Where s's bytes go now: the connection's output (and a flush is
 * scheduled) when s is at the front, else its own buffer. */
struct buf *conn_slot_output(struct conn *c, struct conn_slot *s);
int conn_slot_write(struct conn *c, struct conn_slot *s, const void *data, size_t len);
/* Queues len bytes of the open file fd from off as s's next output, sent
 * with sendfile: fd is taken (closed once sent, when the connection
 * closes, or at once on error). A file shorter than len ends the
 * connection when its end is reached. Returns 0 or -ENOMEM. While a file
 * is waiting, the output counts as full. */
int conn_slot_send_file(struct conn *c, struct conn_slot *s, int fd, uint64_t off, uint64_t len);
/* Whether s has as much output waiting as a client should be sent ahead. */
bool conn_slot_full(const struct conn *c, const struct conn_slot *s);
/* Removes the front slot; the next slot's held bytes join the output.
 * Returns 0, or -1 on out of memory (the caller closes). */
int conn_slot_pop(struct conn *c);
/* Clears a slot for reuse, keeping a small buffer. */
void conn_slot_reset(struct conn_slot *s);
/* Frees what a slot holds, for good. */
void conn_slot_free(struct conn_slot *s);

#endif
