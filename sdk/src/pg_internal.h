/* Internal to the PostgreSQL client (pg_pool.c, pg_conn.c, pg_result.c).
 *
 * Three kinds of object, each with one owner:
 *  - the pool (evicorn_pg_pool), owned by the plugin: its connection
 *    slots, the queue of operations waiting for a connection, the
 *    registered prepared statements and the cancel threads;
 *  - a connection slot (evicorn_pg_conn), owned by the pool: it survives
 *    reconnects, so a leased handle stays valid until the pool is freed;
 *  - an operation (struct pg_op): one evicorn_pg_run, evicorn_pg_acquire
 *    or evicorn_pg_conn_run, owned by whoever holds it at the time (the
 *    wait queue, the connection it runs on, or the done list) until its
 *    continuation has run. It carries a copy of its statements (the
 *    caller's arrays may live on the stack) and a request watch that
 *    keeps the request open, times out the wait for a connection and
 *    reports the client's disconnect.
 *
 * Pipelining: a connection runs up to pipeline_depth operations at once,
 * a FIFO (ops_head..ops_tail) in the order their statements were sent.
 * Every item of the expected-results ring that belongs to an operation
 * names it, so results are matched in order. A non-atomic operation ends
 * each statement with its own Sync, an atomic one ends its last with one:
 * an error aborts the rest of its segment only, up to that Sync, which is
 * always the operation's own, so the operations before and after it on the
 * connection are unaffected. A lease (acquire, and the runs on the leased
 * connection) and a run that needs a SET statement_timeout run alone on
 * an idle connection (pg_conn_op_exclusive).
 *
 * Cancelling on a client's disconnect: PQcancel cancels whatever the
 * backend runs when the request arrives. A cancel request is sent for a
 * departed op only while it is at the head of its connection's FIFO and
 * the items before its own are syncs (no other op's statement, no
 * PREPARE): the backend then runs its statement or is about to. An op
 * further back is not cancelled when its client leaves: its results are
 * dropped as they come; if it reaches the head with statements still to
 * run, the cancel request may be sent then. And only once it has been the
 * head for PG_CANCEL_DELAY and still runs: a head op whose last statement
 * completes while the request is on its way would let the cancel land on
 * the statement of the op behind it (which would fail with SQLSTATE 57014,
 * a 503). Waiting until the head op has proved a long one makes that
 * window small next to its run time, and spares a cancel thread for every
 * short query a departing client leaves behind (a load generator that
 * stops closes all its connections at once). At most one cancel per op.
 */
#ifndef EVICORN_PG_INTERNAL_H
#define EVICORN_PG_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <evicorn/pg.h>

/* Seconds between reconnect attempts: doubled after each failure. */
#define PG_BACKOFF_MIN 0.1
#define PG_BACKOFF_MAX 1.0
/* Cancel threads alive at once; beyond, a disconnected request's query is
 * left to finish (or to hit its statement_timeout) and drained. */
#define PG_CANCEL_THREADS_MAX 32
/* Seconds a departed op must have been at the head of its connection's
 * FIFO, still running, before a cancel request is sent for it (see the
 * rule above). */
#define PG_CANCEL_DELAY 0.02
/* Statements per evicorn_pg_run. */
#define PG_MAX_STATEMENTS 1024
/* Operations in flight on one connection (evicorn_pg_options's
 * pipeline_depth): the default, and the most $EVICORN_PG_PIPELINE_DEPTH
 * or the option may ask for. */
#define PG_PIPELINE_DEPTH_DEFAULT 16
#define PG_PIPELINE_DEPTH_MAX     1024

enum pg_op_kind { OP_RUN, OP_ACQUIRE, OP_CONN_RUN };

enum pg_op_state {
    OP_NEW,      /* not yet queued nor attached */
    OP_QUEUED,   /* in the pool's wait queue */
    OP_ATTACHED, /* on a connection (waiting for its check, or sent) */
    OP_FINISHED, /* outcome final: in the done list or its timer is armed */
};

/* One statement of an operation, its strings copied into the op. */
struct pg_stmt {
    const char *sql;      /* or NULL and: */
    const char *prepared; /* a registered statement's name */
    int nparams;
    const char **values;
    int *lengths;
    int64_t timeout_ms; /* statement_timeout it runs under; 0: none */
};

struct pg_op {
    enum pg_op_kind kind;
    enum pg_op_state state;
    evicorn_pg_pool *pool;
    evicorn_request *req;
    evicorn_watch *rw; /* request watch; NULL once the host dropped it */
    evicorn_pg_conn *conn;
    evicorn_pg_fn fn;
    evicorn_pg_acquire_fn afn;
    void *ud;
    unsigned flags;
    struct pg_stmt *stmts;
    size_t n;
    PGresult **results; /* n slots, owned */
    int syncs_left;     /* pipeline syncs still to come back */
    bool sent;          /* statements are on the wire */
    bool gone;          /* the client left: fn ran; results are drained, dropped */
    bool exclusive;     /* runs alone on its connection (see pg_conn_can_take) */
    bool cancelled;     /* a cancel request was sent to the server for it */
    bool deferred;      /* in the pool's deferred list: rw's timer delivers it */
    /* The outcome. */
    int status, http_status;
    char sqlstate[6];
    char message[1024];
    /* Wait queue or deferred list (prev, next), or done list (next). */
    struct pg_op *prev, *next;
    /* The FIFO of the connection it is attached to. */
    struct pg_op *cprev, *cnext;
};

/* What a connection expects back from the server, in order. */
enum pg_item_kind {
    IT_PREPARE,  /* a statement prepared after connecting */
    IT_SET,      /* SET statement_timeout (ms in the item) for op */
    IT_STMT,     /* statement idx of op */
    IT_ROLLBACK, /* the ROLLBACK of a released connection */
    IT_SYNC,     /* a sync of the connection's own (after PREPARE, SET) */
    IT_SYNC_OP,  /* a sync ending a segment of op's statements */
    IT_SYNC_CHK, /* the round trip checking an idle connection */
    IT_SYNC_RB,  /* the sync after IT_ROLLBACK */
};

struct pg_item {
    enum pg_item_kind kind;
    int idx;
    int64_t ms;
    struct pg_op *op; /* IT_SET, IT_STMT, IT_SYNC_OP: whose; else NULL */
};

enum pg_conn_state { C_DOWN, C_CONNECTING, C_READY };

struct evicorn_pg_conn {
    evicorn_pg_pool *pool;
    int index;
    enum pg_conn_state state;
    PGconn *pg;
    evicorn_watch *w; /* the socket's watch (fd wfd), or the back-off timer */
    int wfd;
    bool want_write; /* PQflush left data: wait for writable too */
    bool ever_ready;
    double backoff;
    double deadline;   /* end of the connect attempt (monotonic s) */
    double idle_since; /* monotonic s */
    int64_t cur_ms;    /* statement_timeout on the server; -1 unknown */
    /* The items, a ring. */
    struct pg_item *items;
    size_t ihead, icount, icap;
    /* The operations in flight here, in the order of their items (the
     * head's results come first); nops of them. */
    struct pg_op *ops_head, *ops_tail;
    int nops;
    bool exclusive;    /* the ops here are an exclusive one: no other joins */
    bool checking;     /* an IT_SYNC_CHK is in flight for ops_head */
    double head_since; /* when ops_head became the head (monotonic s) */
    bool cancel_armed; /* the watch's timer runs for pg_conn_cancel_later */
    bool seg_error;    /* an error since the last sync */
    bool seg_set;      /* a SET since the last sync */
    bool leased;
    bool lease_broken; /* the connection was lost during the lease */
    bool lease_set;    /* a SET ran during the lease */
    bool release_pending;
    bool rolling_back;
    evicorn_request *lease_req;
    char notice[256]; /* the last notice (why the server closed it) */
};

struct pg_prepared {
    char *name, *sql;
    int nparams;
    bool failed_logged;
};

/* A thread running one blocking PQcancel. */
struct pg_canceler {
    pthread_t tid;
    PGcancel *cancel;
    atomic_int done;
    struct pg_canceler *next;
};

struct evicorn_pg_pool {
    char *conninfo; /* NULL: libpq's environment */
    char *options;  /* "options" with our statement_timeout */
    int size, max_waiting;
    int pipeline_depth; /* operations in flight per connection */
    double acquire_timeout, connect_timeout, statement_timeout, idle_check;
    int64_t default_ms;
    evicorn_pg_conn *conns;
    struct pg_op *wait_head, *wait_tail;
    int nwaiting;
    struct pg_op *done_head, *done_tail;
    struct pg_op *deferred; /* finished, delivered by their own timer */
    int depth;              /* >0 inside one of our watch callbacks */
    struct pg_prepared *stmts;
    size_t nstmts, stmts_cap;
    char label[256];      /* host:port/dbname */
    char last_error[256]; /* why the last connect attempt failed */
    bool outage;          /* a connect attempt failed with no connection open */
    bool down_logged;     /* the outage was logged: log the recovery next */
    bool freeing;
    struct pg_canceler *cancelers;
    int ncancelers;
    uint64_t queries, errors, reconnects;
};

/* ---- pg_pool.c ---- */
double pg_now(void);
/* The outcome is final: deliver it when the current callback ends (or on
 * the op's timer when no callback of ours is running). */
void pg_op_finish(struct pg_op *op);
void pg_op_fail(struct pg_op *op, int status, int http_status, const char *fmt, ...)
    EVICORN_PRINTF(4, 5);
/* Puts an op whose connection broke before sending it back at the head
 * of the queue. */
void pg_op_requeue(struct pg_op *op);
/* Frees an op nobody waits for any more (its client left). */
void pg_op_discard(struct pg_op *op);
/* Hands waiting operations to available connections. */
void pg_pool_dispatch(evicorn_pg_pool *p);
/* A connect attempt failed and no connection is open: fail the waiters. */
void pg_pool_fail_waiters(evicorn_pg_pool *p, int status, int http_status, const char *msg);
bool pg_pool_any_ready(const evicorn_pg_pool *p);
/* Asks the server to cancel what c runs (on a short-lived thread). */
void pg_pool_cancel_query(evicorn_pg_pool *p, evicorn_pg_conn *c);
/* Enter and leave one of our callbacks; leaving delivers finished ops. */
void pg_pool_enter(evicorn_pg_pool *p);
void pg_pool_leave(evicorn_pg_pool *p);

/* ---- pg_conn.c ---- */
void pg_conn_connect(evicorn_pg_conn *c);
/* Whether op must run alone on c: a lease (OP_ACQUIRE, and OP_CONN_RUN
 * on a leased connection), or a run one of whose statements needs a SET
 * statement_timeout on c (a SET inside another op's segment could be
 * undone by that op's error, and the ops behind would run under the wrong
 * value). */
bool pg_conn_op_exclusive(const evicorn_pg_conn *c, const struct pg_op *op);
/* Whether c may take op from the queue now: c is READY, not leased, not
 * checking or rolling back, and either idle (op exclusive) or running
 * fewer than pipeline_depth ops none of which is exclusive. */
bool pg_conn_can_take(const evicorn_pg_conn *c, const struct pg_op *op);
/* Whether c runs nothing (no op, lease, rollback or check). */
bool pg_conn_idle(const evicorn_pg_conn *c);
/* Runs op on c (at the tail of its FIFO): a check round trip first when
 * c was idle long, then the statements (OP_RUN/OP_CONN_RUN) or the lease
 * (OP_ACQUIRE). */
void pg_conn_assign(evicorn_pg_conn *c, struct pg_op *op);
/* Takes op out of c's FIFO (its items are gone, or were never sent). */
void pg_conn_unlink(evicorn_pg_conn *c, struct pg_op *op);
/* Whether a cancel request to the server may be sent for op (sent on c)
 * now: it heads the FIFO, and only syncs are before its items. */
bool pg_conn_may_cancel(const evicorn_pg_conn *c, const struct pg_op *op);
/* The client of c's head op left: a cancel request goes to the server if
 * it still runs PG_CANCEL_DELAY after it became the head. */
void pg_conn_cancel_later(evicorn_pg_conn *c);
/* Sends the pool's prepared statement i on c (registered after c opened). */
void pg_conn_prepare(evicorn_pg_conn *c, size_t i);
/* The lease is over: roll back if needed, then back to the pool. */
void pg_conn_release(evicorn_pg_conn *c);
/* Closes c for good (pool_free): no callbacks. */
void pg_conn_close(evicorn_pg_conn *c);

/* ---- pg_result.c ---- */
/* Fills op's outcome from the failed result of its statement idx. */
void pg_op_set_error(struct pg_op *op, size_t idx, const PGresult *res, const char *label);
/* src on one line (newlines and tabs as spaces, trimmed) into dst. */
void pg_oneline(char *dst, size_t size, const char *src);

#endif
