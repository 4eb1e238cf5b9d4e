/* pg_pool: a worker's pool of PostgreSQL connections, and the operations
 * (a run, an acquire) waiting for one.
 *
 * An operation first looks for a connection that can take it: an idle
 * one, else the least loaded one running fewer than pipeline_depth
 * operations (pipelined: pg_internal.h); failing that it waits in a
 * bounded FIFO queue, with its request watch's timer set to
 * acquire_timeout. A connection that finishes an operation (or is
 * released, or opens) takes the head of the queue. When the server cannot
 * be reached at all (a connect attempt failed and no connection is open),
 * waiters and new operations fail at once with 503 rather than waiting out
 * their timeout: the connections keep retrying with back-off meanwhile.
 *
 * Continuations never run inside the call that registered them. Finished
 * operations go to a done list; it is delivered at the end of whichever
 * of our watch callbacks is running, or, when the operation finished
 * inside a call from the plugin (an evicorn_pg_run that finds the server
 * down), on the operation's own timer a moment later.
 *
 * A request whose client disconnects has its watch called with
 * EVICORN_ECANCELED: a waiting operation leaves the queue; a running one
 * gets a cancel request sent to the server by a short-lived thread (libpq
 * 15's PQcancel blocks) when no other operation's statement can be hit by
 * it (the rule in pg_internal.h), and its connection drops its remaining
 * results as they come. The threads are joined at the latest in
 * evicorn_pg_pool_free, so none outlives the plugin's code.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pg_internal.h"

static void op_watch_cb(evicorn_watch *w, void *ud, unsigned events, int status);
static void reap_cancelers(evicorn_pg_pool *p, bool all);

double pg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) EVICORN_PRINTF(3, 4);
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* statement_timeout in ms for a number of seconds (0: none). */
static int64_t timeout_ms(double s)
{
    if (!(s > 0))
        return 0;
    double ms = s * 1000.0 + 0.5;
    if (ms < 1)
        return 1;
    if (ms > 2147483647.0)
        return 2147483647;
    return (int64_t)ms;
}

/* ---- the operation's copy of its statements ---- */

/* A bump allocator run twice over the same steps: once with base NULL to
 * measure, once to carve the single allocation up. */
struct bump {
    char *base;
    size_t off;
};

static void *bump(struct bump *b, size_t len)
{
    size_t a = _Alignof(max_align_t);
    b->off = (b->off + a - 1) & ~(a - 1);
    void *r = b->base ? b->base + b->off : NULL;
    b->off += len;
    return r;
}

static char *bump_str(struct bump *b, const char *s, size_t len)
{
    char *d = bump(b, len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

static void op_layout(struct bump *b, struct pg_op **opp, const evicorn_pg_query *q, size_t n)
{
    struct pg_op *op = bump(b, sizeof *op);
    struct pg_stmt *stmts = bump(b, n * sizeof *stmts);
    PGresult **results = bump(b, n * sizeof *results);
    for (size_t i = 0; i < n; i++) {
        const char *text = q[i].sql ? q[i].sql : q[i].prepared;
        char *copy = bump_str(b, text, strlen(text));
        int np = q[i].nparams;
        const char **values = bump(b, (size_t)np * sizeof *values);
        int *lengths = bump(b, (size_t)np * sizeof *lengths);
        for (int j = 0; j < np; j++) {
            const char *v = q[i].values[j];
            size_t len = !v ? 0 : q[i].lengths ? (size_t)q[i].lengths[j] : strlen(v);
            char *vc = v ? bump_str(b, v, len) : NULL;
            if (b->base) {
                values[j] = vc;
                lengths[j] = (int)len;
            }
        }
        if (b->base) {
            stmts[i] = (struct pg_stmt){
                .sql = q[i].sql ? copy : NULL,
                .prepared = q[i].sql ? NULL : copy,
                .nparams = np,
                .values = values,
                .lengths = lengths,
            };
        }
    }
    if (b->base) {
        memset(op, 0, sizeof *op);
        op->stmts = stmts;
        op->results = results;
        for (size_t i = 0; i < n; i++)
            results[i] = NULL;
        *opp = op;
    }
}

static struct pg_op *op_new(evicorn_pg_pool *p, enum pg_op_kind kind, evicorn_request *req,
                            const evicorn_pg_query *q, size_t n, unsigned flags)
{
    struct bump b = {NULL, 0};
    struct pg_op *op = NULL;
    op_layout(&b, &op, q, n);
    b.base = malloc(b.off);
    if (!b.base)
        return NULL;
    b.off = 0;
    op_layout(&b, &op, q, n);
    op->kind = kind;
    op->state = OP_NEW;
    op->pool = p;
    op->req = req;
    op->n = n;
    op->flags = flags;
    for (size_t i = 0; i < n; i++) {
        double t = q[i].statement_timeout;
        op->stmts[i].timeout_ms = t == 0 ? p->default_ms : t < 0 ? 0 : timeout_ms(t);
    }
    return op;
}

static void op_free(struct pg_op *op)
{
    for (size_t i = 0; i < op->n; i++)
        PQclear(op->results[i]);
    free(op);
}

void pg_op_discard(struct pg_op *op)
{
    op_free(op);
}

/* ---- the wait queue and the done list ---- */

static void queue_unlink(evicorn_pg_pool *p, struct pg_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        p->wait_head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        p->wait_tail = op->prev;
    op->prev = op->next = NULL;
    p->nwaiting--;
}

static void queue_push(evicorn_pg_pool *p, struct pg_op *op, bool head)
{
    op->state = OP_QUEUED;
    op->conn = NULL;
    op->prev = op->next = NULL;
    if (head) {
        op->next = p->wait_head;
        if (p->wait_head)
            p->wait_head->prev = op;
        else
            p->wait_tail = op;
        p->wait_head = op;
    } else {
        op->prev = p->wait_tail;
        if (p->wait_tail)
            p->wait_tail->next = op;
        else
            p->wait_head = op;
        p->wait_tail = op;
    }
    p->nwaiting++;
    if (op->rw)
        evicorn_watch_set(op->rw, 0, p->acquire_timeout);
}

static void done_unlink(evicorn_pg_pool *p, struct pg_op *op)
{
    struct pg_op **pp = &p->done_head, *prev = NULL;
    while (*pp && *pp != op) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = op->next;
    if (p->done_tail == op)
        p->done_tail = prev;
    op->next = NULL;
}

void pg_op_finish(struct pg_op *op)
{
    evicorn_pg_pool *p = op->pool;
    op->state = OP_FINISHED;
    op->prev = op->next = NULL;
    if (p->done_tail)
        p->done_tail->next = op;
    else
        p->done_head = op;
    p->done_tail = op;
}

void pg_op_fail(struct pg_op *op, int status, int http_status, const char *fmt, ...)
{
    op->status = status;
    op->http_status = http_status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->message, sizeof op->message, fmt, ap);
    va_end(ap);
    pg_op_finish(op);
}

void pg_op_requeue(struct pg_op *op)
{
    queue_push(op->pool, op, true);
}

/* Runs the continuation, then lets the request go. */
static void op_deliver(struct pg_op *op)
{
    evicorn_pg_pool *p = op->pool;
    evicorn_pg_reply r = {
        .status = op->status,
        .http_status = op->status ? op->http_status : 0,
        .message = op->status ? op->message : NULL,
        .sqlstate = op->status && op->sqlstate[0] ? op->sqlstate : NULL,
        .results = op->status ? NULL : op->results,
        .nresults = op->status ? 0 : op->n,
    };
    if (op->status && op->status != EVICORN_ECANCELED)
        p->errors++;
    if (op->kind == OP_ACQUIRE) {
        if (op->afn)
            op->afn(op->req, op->ud, op->status ? NULL : op->conn, &r);
    } else if (op->fn) {
        op->fn(op->req, op->ud, &r);
    }
    /* After the continuation: cancelling the watch may finish the request. */
    if (op->rw)
        evicorn_watch_cancel(op->rw);
    op_free(op);
}

void pg_pool_enter(evicorn_pg_pool *p)
{
    p->depth++;
}

void pg_pool_leave(evicorn_pg_pool *p)
{
    if (p->depth == 1 && p->cancelers)
        reap_cancelers(p, false);
    if (p->depth == 1) {
        for (;;) {
            /* Connections freed meanwhile take waiters first; a
             * continuation may free more, or queue more. */
            pg_pool_dispatch(p);
            if (!p->done_head)
                break;
            struct pg_op *op = p->done_head;
            p->done_head = op->next;
            if (!p->done_head)
                p->done_tail = NULL;
            op->next = NULL;
            op_deliver(op);
        }
    }
    p->depth--;
}

static void deferred_unlink(evicorn_pg_pool *p, struct pg_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        p->deferred = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
    op->deferred = false;
}

/* The end of a call from the plugin: what finished meanwhile is delivered
 * on each op's own timer (never inside that call), unless one of our
 * callbacks is running and will deliver it when it returns. Each is
 * delivered by its own timer's callback only: cancelling a watch whose
 * timer has expired in the same loop iteration is left to nobody else. */
static void entry_leave(evicorn_pg_pool *p)
{
    if (p->depth > 0)
        return;
    pg_pool_dispatch(p);
    while (p->done_head) {
        struct pg_op *op = p->done_head;
        p->done_head = op->next;
        if (!p->done_head)
            p->done_tail = NULL;
        op->next = p->deferred;
        op->prev = NULL;
        if (p->deferred)
            p->deferred->prev = op;
        p->deferred = op;
        op->deferred = true;
        if (op->rw)
            evicorn_watch_set(op->rw, 0, 1e-6);
    }
}

/* ---- connections ---- */

bool pg_pool_any_ready(const evicorn_pg_pool *p)
{
    for (int i = 0; i < p->size; i++)
        if (p->conns[i].state == C_READY)
            return true;
    return false;
}

/* The connection op goes to: an idle one, else the least loaded one that
 * can take it (below its pipeline depth); NULL when none can. */
static evicorn_pg_conn *find_available(evicorn_pg_pool *p, const struct pg_op *op)
{
    evicorn_pg_conn *best = NULL;
    for (int i = 0; i < p->size; i++) {
        evicorn_pg_conn *c = &p->conns[i];
        if (!pg_conn_can_take(c, op))
            continue;
        if (c->nops == 0)
            return c;
        if (!best || c->nops < best->nops)
            best = c;
    }
    return best;
}

void pg_pool_dispatch(evicorn_pg_pool *p)
{
    if (p->freeing)
        return;
    /* In order: an op that must wait for an idle connection holds back
     * the ones behind it, so that it is not overtaken for ever. */
    while (p->wait_head) {
        evicorn_pg_conn *c = find_available(p, p->wait_head);
        if (!c)
            break;
        struct pg_op *op = p->wait_head;
        queue_unlink(p, op);
        pg_conn_assign(c, op);
    }
}

void pg_pool_fail_waiters(evicorn_pg_pool *p, int status, int http_status, const char *msg)
{
    while (p->wait_head) {
        struct pg_op *op = p->wait_head;
        queue_unlink(p, op);
        pg_op_fail(op, status, http_status, "%s", msg);
    }
}

/* ---- cancelling a query on the server ---- */

static void *cancel_main(void *arg)
{
    struct pg_canceler *k = arg;
    char err[256];
    (void)PQcancel(k->cancel, err, (int)sizeof err);
    PQfreeCancel(k->cancel);
    k->cancel = NULL;
    atomic_store(&k->done, 1);
    return NULL;
}

static void reap_cancelers(evicorn_pg_pool *p, bool all)
{
    struct pg_canceler **pp = &p->cancelers;
    while (*pp) {
        struct pg_canceler *k = *pp;
        if (all || atomic_load(&k->done)) {
            pthread_join(k->tid, NULL);
            *pp = k->next;
            free(k);
            p->ncancelers--;
        } else {
            pp = &k->next;
        }
    }
}

void pg_pool_cancel_query(evicorn_pg_pool *p, evicorn_pg_conn *c)
{
    reap_cancelers(p, false);
    if (!c->pg)
        return;
    if (p->ncancelers >= PG_CANCEL_THREADS_MAX) {
        evicorn_log(NULL, EVICORN_LOG_WARNING,
                    "%s: %d cancel requests already under way: the query of a disconnected "
                    "request runs to its end",
                    p->label, p->ncancelers);
        return;
    }
    struct pg_canceler *k = calloc(1, sizeof *k);
    if (!k)
        return;
    k->cancel = PQgetCancel(c->pg);
    if (!k->cancel) {
        free(k);
        return;
    }
    /* The thread takes no signals: they are the loop thread's business. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&k->tid, NULL, cancel_main, k);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        evicorn_log(NULL, EVICORN_LOG_WARNING, "%s: cannot start a thread to cancel a query: %s",
                    p->label, strerror(rc));
        PQfreeCancel(k->cancel);
        free(k);
        return;
    }
    k->next = p->cancelers;
    p->cancelers = k;
    p->ncancelers++;
}

/* ---- the request watch ---- */

static evicorn_pg_reply canceled_reply(void)
{
    return (evicorn_pg_reply){
        .status = EVICORN_ECANCELED,
        .message = "the client disconnected",
    };
}

/* The client left. */
static void op_client_gone(struct pg_op *op)
{
    evicorn_pg_pool *p = op->pool;
    switch (op->state) {
    case OP_NEW:
        break;
    case OP_QUEUED:
        queue_unlink(p, op);
        pg_op_fail(op, EVICORN_ECANCELED, 0, "the client disconnected");
        break;
    case OP_ATTACHED:
        if (!op->sent) {
            /* Only the idle check is in flight: the connection finishes it
             * and goes back to the pool. */
            pg_conn_unlink(op->conn, op);
            pg_op_fail(op, EVICORN_ECANCELED, 0, "the client disconnected");
            break;
        }
        /* The statements run or wait their turn on the connection, which
         * keeps the op to drain its results, and frees it. Cancelled on
         * the server if it still runs a moment later at the head of the
         * FIFO (the rule in pg_internal.h). */
        op->gone = true;
        if (op == op->conn->ops_head)
            pg_conn_cancel_later(op->conn);
        evicorn_pg_reply r = canceled_reply();
        evicorn_pg_fn fn = op->fn;
        op->fn = NULL;
        if (fn)
            fn(op->req, op->ud, &r);
        op->req = NULL;
        break;
    case OP_FINISHED:
        if (op->deferred)
            deferred_unlink(p, op);
        else
            done_unlink(p, op);
        if (op->kind == OP_ACQUIRE && op->status == 0 && op->conn) {
            /* Leased but not yet handed over: back to the pool. */
            op->conn->release_pending = true;
            pg_conn_release(op->conn);
        }
        op->status = EVICORN_ECANCELED;
        op->http_status = 0;
        snprintf(op->message, sizeof op->message, "the client disconnected");
        pg_op_finish(op);
        break;
    }
}

static void op_watch_cb(evicorn_watch *w, void *ud, unsigned events, int status)
{
    (void)w;
    struct pg_op *op = ud;
    evicorn_pg_pool *p = op->pool;
    pg_pool_enter(p);
    if (status == EVICORN_ECANCELED) {
        op->rw = NULL; /* the host dropped it */
        op_client_gone(op);
    } else if ((events & EVICORN_TIMEOUT) && op->deferred) {
        deferred_unlink(p, op);
        op_deliver(op);
    } else if ((events & EVICORN_TIMEOUT) && op->state == OP_QUEUED) {
        queue_unlink(p, op);
        int busy = 0;
        for (int i = 0; i < p->size; i++)
            busy += p->conns[i].state == C_READY && !pg_conn_idle(&p->conns[i]);
        pg_op_fail(op, EVICORN_ETIMEDOUT, 503,
                   "no connection to %s within %g s (%d of %d connections busy, %d requests "
                   "waiting)",
                   p->label, p->acquire_timeout, busy, p->size, p->nwaiting);
    }
    /* OP_FINISHED: delivered below. */
    pg_pool_leave(p);
}

/* Takes a new op from the plugin: run it now, queue it, or fail it. */
static int submit(evicorn_pg_pool *p, struct pg_op *op)
{
    int rc = evicorn_watch_new(op->req, -1, op_watch_cb, op, &op->rw);
    if (rc != 0) {
        op_free(op);
        return rc;
    }
    evicorn_pg_conn *c;
    if (p->outage && !pg_pool_any_ready(p)) {
        pg_op_fail(op, EVICORN_ECONNREFUSED, 503, "cannot connect to %s: %s", p->label,
                   p->last_error);
    } else if (!p->wait_head && (c = find_available(p, op)) != NULL) {
        pg_conn_assign(c, op);
    } else if (p->nwaiting >= p->max_waiting) {
        pg_op_fail(op, EVICORN_EBUSY, 503,
                   "too many requests waiting for a connection to %s (%d, max_waiting)", p->label,
                   p->nwaiting);
    } else {
        queue_push(p, op, false);
    }
    entry_leave(p);
    return 0;
}

/* ---- the public calls ---- */

static int env_pool_size(int *out, char *err, size_t errlen)
{
    const char *s = getenv("EVICORN_PG_POOL_SIZE");
    *out = 8;
    if (!s || !*s)
        return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 1 || v > 10000) {
        set_err(err, errlen, "EVICORN_PG_POOL_SIZE=%s: expected a number of connections, 1-10000",
                s);
        return EVICORN_EINVAL;
    }
    *out = (int)v;
    return 0;
}

static int env_pipeline_depth(int *out, char *err, size_t errlen)
{
    const char *s = getenv("EVICORN_PG_PIPELINE_DEPTH");
    *out = PG_PIPELINE_DEPTH_DEFAULT;
    if (!s || !*s)
        return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 1 || v > PG_PIPELINE_DEPTH_MAX) {
        set_err(err, errlen,
                "EVICORN_PG_PIPELINE_DEPTH=%s: expected a number of operations per connection, "
                "1-%d",
                s, PG_PIPELINE_DEPTH_MAX);
        return EVICORN_EINVAL;
    }
    *out = (int)v;
    return 0;
}

static bool looks_like_conninfo(const char *s)
{
    return strchr(s, '=') || strncmp(s, "postgresql://", 13) == 0 ||
           strncmp(s, "postgres://", 11) == 0;
}

/* The options every connection opens with: the user's (conninfo or
 * PGOPTIONS) and our statement_timeout, so that we know its value. */
static int build_options(evicorn_pg_pool *p, char *err, size_t errlen)
{
    const char *user = NULL;
    PQconninfoOption *parsed = NULL;
    if (p->conninfo && looks_like_conninfo(p->conninfo)) {
        char *msg = NULL;
        parsed = PQconninfoParse(p->conninfo, &msg);
        if (!parsed) {
            if (!msg) {
                set_err(err, errlen, "out of memory");
                return EVICORN_ENOMEM;
            }
            char line[256];
            pg_oneline(line, sizeof line, msg);
            PQfreemem(msg);
            set_err(err, errlen, "invalid conninfo: %s", line);
            return EVICORN_EINVAL;
        }
        for (PQconninfoOption *o = parsed; o->keyword; o++)
            if (strcmp(o->keyword, "options") == 0 && o->val && *o->val)
                user = o->val;
    }
    if (!user)
        user = getenv("PGOPTIONS");
    size_t need = (user ? strlen(user) : 0) + 64;
    p->options = malloc(need);
    if (p->options)
        snprintf(p->options, need, "%s%s-c statement_timeout=%lld", user ? user : "",
                 user && *user ? " " : "", (long long)p->default_ms);
    PQconninfoFree(parsed);
    if (!p->options) {
        set_err(err, errlen, "out of memory");
        return EVICORN_ENOMEM;
    }
    return 0;
}

int evicorn_pg_pool_new(const evicorn_pg_options *opts, evicorn_pg_pool **out, char *err,
                        size_t errlen)
{
    if (!out)
        return EVICORN_EINVAL;
    *out = NULL;
    if (!EVICORN_HAS(watch)) {
        set_err(err, errlen, "the host has no watches (ABI 1.3): the PostgreSQL client needs them");
        return EVICORN_ENOSYS;
    }
    evicorn_pg_options o = {0};
    if (opts) {
        size_t n = opts->size && opts->size < sizeof o ? opts->size : sizeof o;
        memcpy(&o, opts, n);
    }
    const char *conninfo = o.conninfo;
    if (!conninfo || !*conninfo)
        conninfo = getenv("DATABASE_URL");
    if (conninfo && !*conninfo)
        conninfo = NULL;
    if (!conninfo && !getenv("PGHOST") && !getenv("PGHOSTADDR") && !getenv("PGDATABASE") &&
        !getenv("PGPORT") && !getenv("PGSERVICE")) {
        set_err(err, errlen,
                "no database configured: set DATABASE_URL (postgresql://user@host:port/dbname) "
                "or PGHOST/PGDATABASE");
        return EVICORN_ENOENT;
    }
    int size = o.pool_size;
    if (size <= 0) {
        int rc = env_pool_size(&size, err, errlen);
        if (rc)
            return rc;
    }
    if (o.max_waiting < 0 || o.acquire_timeout < 0 || o.connect_timeout < 0 || o.idle_check < 0 ||
        o.pipeline_depth < 0) {
        set_err(err, errlen, "negative pool option");
        return EVICORN_EINVAL;
    }
    if (o.pipeline_depth > PG_PIPELINE_DEPTH_MAX) {
        set_err(err, errlen, "pipeline_depth %d: at most %d", o.pipeline_depth,
                PG_PIPELINE_DEPTH_MAX);
        return EVICORN_EINVAL;
    }
    int depth = o.pipeline_depth;
    if (depth == 0) {
        int rc = env_pipeline_depth(&depth, err, errlen);
        if (rc)
            return rc;
    }

    evicorn_pg_pool *p = calloc(1, sizeof *p);
    if (!p)
        goto nomem;
    p->size = size;
    p->pipeline_depth = depth;
    p->max_waiting = o.max_waiting ? o.max_waiting : 1024;
    p->acquire_timeout = o.acquire_timeout > 0 ? o.acquire_timeout : 5;
    p->connect_timeout = o.connect_timeout > 0 ? o.connect_timeout : 5;
    p->statement_timeout = o.statement_timeout > 0 ? o.statement_timeout : 0;
    p->default_ms = timeout_ms(p->statement_timeout);
    p->idle_check = o.idle_check > 0 ? o.idle_check : 30;
    snprintf(p->label, sizeof p->label, "the database");
    if (conninfo && !(p->conninfo = strdup(conninfo)))
        goto nomem;
    int rc = build_options(p, err, errlen);
    if (rc) {
        free(p->conninfo);
        free(p);
        return rc;
    }
    p->conns = calloc((size_t)size, sizeof *p->conns);
    if (!p->conns)
        goto nomem;
    for (int i = 0; i < size; i++) {
        evicorn_pg_conn *c = &p->conns[i];
        c->pool = p;
        c->index = i;
        c->state = C_DOWN;
        c->wfd = -1;
        c->cur_ms = -1;
        c->backoff = PG_BACKOFF_MIN;
    }
    pg_pool_enter(p);
    for (int i = 0; i < size; i++)
        pg_conn_connect(&p->conns[i]);
    pg_pool_leave(p);
    *out = p;
    return 0;

nomem:
    if (p) {
        free(p->conninfo);
        free(p->options);
        free(p->conns);
        free(p);
    }
    set_err(err, errlen, "out of memory");
    return EVICORN_ENOMEM;
}

void evicorn_pg_pool_free(evicorn_pg_pool *p)
{
    if (!p)
        return;
    p->freeing = true;
    pg_pool_enter(p);
    pg_pool_fail_waiters(p, EVICORN_ECANCELED, 0, "the pool was closed");
    while (p->deferred) {
        struct pg_op *op = p->deferred;
        deferred_unlink(p, op);
        pg_op_finish(op);
    }
    for (int i = 0; i < p->size; i++) {
        evicorn_pg_conn *c = &p->conns[i];
        for (struct pg_op *op = c->ops_head, *next; op; op = next) {
            next = op->cnext;
            if (!op->gone) {
                pg_conn_unlink(c, op);
                pg_op_fail(op, EVICORN_ECANCELED, 0, "the pool was closed");
            }
        }
        pg_conn_close(c);
    }
    pg_pool_leave(p);
    reap_cancelers(p, true);
    for (size_t i = 0; i < p->nstmts; i++) {
        free(p->stmts[i].name);
        free(p->stmts[i].sql);
    }
    free(p->stmts);
    free(p->conns);
    free(p->conninfo);
    free(p->options);
    free(p);
}

int evicorn_pg_prepare(evicorn_pg_pool *p, const char *name, const char *sql, int nparams)
{
    if (!p || !name || !*name || !sql || nparams < 0 || p->freeing)
        return EVICORN_EINVAL;
    for (size_t i = 0; i < p->nstmts; i++)
        if (strcmp(p->stmts[i].name, name) == 0)
            return EVICORN_EINVAL;
    if (p->nstmts == p->stmts_cap) {
        size_t cap = p->stmts_cap ? 2 * p->stmts_cap : 8;
        struct pg_prepared *s = realloc(p->stmts, cap * sizeof *s);
        if (!s)
            return EVICORN_ENOMEM;
        p->stmts = s;
        p->stmts_cap = cap;
    }
    struct pg_prepared *s = &p->stmts[p->nstmts];
    s->name = strdup(name);
    s->sql = strdup(sql);
    s->nparams = nparams;
    if (!s->name || !s->sql) {
        free(s->name);
        free(s->sql);
        return EVICORN_ENOMEM;
    }
    p->nstmts++;
    /* Connections still opening prepare it once open. */
    for (int i = 0; i < p->size; i++)
        if (p->conns[i].state == C_READY)
            pg_conn_prepare(&p->conns[i], p->nstmts - 1);
    entry_leave(p);
    return 0;
}

static int check_queries(const evicorn_pg_pool *p, const evicorn_pg_query *q, size_t n)
{
    if (!q || n == 0 || n > PG_MAX_STATEMENTS)
        return EVICORN_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!q[i].sql && !q[i].prepared)
            return EVICORN_EINVAL;
        if (q[i].nparams < 0 || (q[i].nparams > 0 && !q[i].values))
            return EVICORN_EINVAL;
        if (q[i].lengths)
            for (int j = 0; j < q[i].nparams; j++)
                if (q[i].lengths[j] < 0)
                    return EVICORN_EINVAL;
        if (!q[i].sql) {
            bool known = false;
            for (size_t k = 0; k < p->nstmts && !known; k++)
                known = strcmp(p->stmts[k].name, q[i].prepared) == 0;
            if (!known)
                return EVICORN_EINVAL;
        }
    }
    return 0;
}

int evicorn_pg_run(evicorn_request *req, evicorn_pg_pool *p, const evicorn_pg_query *queries,
                   size_t n, unsigned flags, evicorn_pg_fn fn, void *ud)
{
    if (!req || !p || !fn || p->freeing)
        return EVICORN_EINVAL;
    int rc = check_queries(p, queries, n);
    if (rc)
        return rc;
    struct pg_op *op = op_new(p, OP_RUN, req, queries, n, flags);
    if (!op)
        return EVICORN_ENOMEM;
    op->fn = fn;
    op->ud = ud;
    return submit(p, op);
}

int evicorn_pg_acquire(evicorn_request *req, evicorn_pg_pool *p, evicorn_pg_acquire_fn fn, void *ud)
{
    if (!req || !p || !fn || p->freeing)
        return EVICORN_EINVAL;
    struct pg_op *op = op_new(p, OP_ACQUIRE, req, NULL, 0, 0);
    if (!op)
        return EVICORN_ENOMEM;
    op->afn = fn;
    op->ud = ud;
    return submit(p, op);
}

int evicorn_pg_conn_run(evicorn_pg_conn *c, const evicorn_pg_query *queries, size_t n,
                        unsigned flags, evicorn_pg_fn fn, void *ud)
{
    if (!c || !fn || !c->leased || c->release_pending || c->pool->freeing)
        return EVICORN_EINVAL;
    if (c->ops_head)
        return EVICORN_EBUSY;
    evicorn_pg_pool *p = c->pool;
    int rc = check_queries(p, queries, n);
    if (rc)
        return rc;
    struct pg_op *op = op_new(p, OP_CONN_RUN, c->lease_req, queries, n, flags);
    if (!op)
        return EVICORN_ENOMEM;
    op->fn = fn;
    op->ud = ud;
    rc = evicorn_watch_new(op->req, -1, op_watch_cb, op, &op->rw);
    if (rc != 0) {
        op_free(op);
        return rc;
    }
    if (c->lease_broken || c->state != C_READY)
        pg_op_fail(op, EVICORN_EIO, 503, "lost the connection to %s during the transaction",
                   p->label);
    else
        pg_conn_assign(c, op);
    entry_leave(p);
    return 0;
}

void evicorn_pg_release(evicorn_pg_conn *c)
{
    if (!c || !c->leased || c->release_pending)
        return;
    evicorn_pg_pool *p = c->pool;
    c->release_pending = true;
    pg_conn_release(c);
    entry_leave(p);
}

void evicorn_pg_pool_stats(const evicorn_pg_pool *p, evicorn_pg_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!p)
        return;
    for (int i = 0; i < p->size; i++) {
        const evicorn_pg_conn *c = &p->conns[i];
        if (c->state == C_READY) {
            out->open++;
            if (!pg_conn_idle(c))
                out->busy++;
        } else if (c->state == C_CONNECTING) {
            out->connecting++;
        }
    }
    out->waiting = p->nwaiting;
    out->queries = p->queries;
    out->errors = p->errors;
    out->reconnects = p->reconnects;
}
