/* pg_conn: one pooled PostgreSQL connection, from connecting to closing.
 *
 *   DOWN --timer--> CONNECTING --PQconnectPoll OK--> READY --lost--> DOWN
 *
 * Connecting is PQconnectStartParams then PQconnectPoll, driven by a
 * plugin watch on the socket (re-created whenever PQsocket changes: libpq
 * opens a new socket for each host or address it tries) whose timer
 * enforces connect_timeout. A failed attempt is retried after a back-off
 * (PG_BACKOFF_MIN doubling to PG_BACKOFF_MAX); the pool logs the first
 * failure of an outage and the recovery, not every retry.
 *
 * A READY connection is in libpq's pipeline mode and non-blocking. Every
 * command sent is recorded in a FIFO of items saying what the server will
 * answer (a statement's results and the NULL after them, or a sync) and
 * for which operation, so the replies can be matched without libpq telling
 * us which query they belong to; up to pipeline_depth operations are in
 * flight at once, each ending its statements with its own syncs. The socket's watch always waits
 * for readable, also on an idle connection, so a server that closes it is noticed at once
 * (PQconsumeInput fails); writable is added while PQflush has data left.
 *
 * statement_timeout: the pool's default is set at connect time through
 * the "options" parameter; cur_ms tracks what the session has, and a
 * statement that needs another value gets a SET before it. A SET undone
 * by a rollback (an error in its segment, a leased transaction) makes the
 * value unknown, so the next statement sets it again.
 *
 * Note: a host name in the conninfo is resolved by libpq with a blocking
 * getaddrinfo inside PQconnectPoll; use an address (host=127.0.0.1, or
 * hostaddr) where that matters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_internal.h"

static void conn_watch_cb(evicorn_watch *w, void *ud, unsigned events, int status);
static void conn_lost(evicorn_pg_conn *c, const char *why);
static void conn_start(evicorn_pg_conn *c, struct pg_op *op);

/* ---- the watch ---- */

/* Points c's watch at fd with events and timeout (as watch_set), making
 * a new watch when the fd changed; a new watch of a connecting c keeps
 * what is left of connect_timeout. */
static int conn_watch(evicorn_pg_conn *c, int fd, unsigned events, double timeout)
{
    if (c->w && c->wfd != fd) {
        evicorn_watch_cancel(c->w);
        c->w = NULL;
        c->wfd = -1;
        if (timeout < 0 && c->state == C_CONNECTING) {
            timeout = c->deadline - pg_now();
            if (timeout < 0.001)
                timeout = 0.001;
        }
    }
    if (!c->w) {
        int rc = evicorn_watch_new(NULL, fd, conn_watch_cb, c, &c->w);
        if (rc != 0) {
            c->w = NULL;
            return rc;
        }
        c->wfd = fd;
    }
    return evicorn_watch_set(c->w, events, timeout);
}

static void conn_unwatch(evicorn_pg_conn *c)
{
    if (c->w) {
        evicorn_watch_cancel(c->w);
        c->w = NULL;
        c->wfd = -1;
    }
}

/* ---- the items ---- */

static int reserve(evicorn_pg_conn *c, size_t more)
{
    if (c->icount + more <= c->icap)
        return 0;
    size_t cap = c->icap ? c->icap : 16;
    while (cap < c->icount + more)
        cap *= 2;
    struct pg_item *items = malloc(cap * sizeof *items);
    if (!items)
        return EVICORN_ENOMEM;
    for (size_t i = 0; i < c->icount; i++)
        items[i] = c->items[(c->ihead + i) % c->icap];
    free(c->items);
    c->items = items;
    c->icap = cap;
    c->ihead = 0;
    return 0;
}

/* Room was reserved. */
static void item_push(evicorn_pg_conn *c, enum pg_item_kind kind, int idx, int64_t ms,
                      struct pg_op *op)
{
    c->items[(c->ihead + c->icount) % c->icap] = (struct pg_item){kind, idx, ms, op};
    c->icount++;
}

static void item_pop(evicorn_pg_conn *c)
{
    c->ihead = (c->ihead + 1) % c->icap;
    c->icount--;
}

/* ---- helpers ---- */

static void notice_cb(void *arg, const char *message)
{
    evicorn_pg_conn *c = arg;
    pg_oneline(c->notice, sizeof c->notice, message);
    evicorn_log(NULL, EVICORN_LOG_DEBUG, "%s: %s", c->pool->label, c->notice);
}

static void update_label(evicorn_pg_conn *c)
{
    const char *host = PQhost(c->pg), *port = PQport(c->pg), *db = PQdb(c->pg);
    if (host && *host)
        snprintf(c->pool->label, sizeof c->pool->label, "%s:%s/%s", host, port ? port : "",
                 db ? db : "");
}

static bool conn_flush(evicorn_pg_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        conn_lost(c, PQerrorMessage(c->pg));
        return false;
    }
    bool ww = r == 1;
    if (ww != c->want_write) {
        c->want_write = ww;
        if (conn_watch(c, c->wfd, EVICORN_READABLE | (ww ? EVICORN_WRITABLE : 0), -1) != 0) {
            conn_lost(c, "cannot watch the socket");
            return false;
        }
    }
    return true;
}

/* Closes the PGconn (the watch first: it watches the fd PQfinish closes). */
static void conn_drop(evicorn_pg_conn *c)
{
    conn_unwatch(c);
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->state = C_DOWN;
    c->ihead = c->icount = 0;
    c->checking = c->want_write = c->seg_error = c->seg_set = c->rolling_back = false;
    c->exclusive = c->cancel_armed = false;
    c->cur_ms = -1;
}

static void schedule_connect(evicorn_pg_conn *c, double delay)
{
    if (conn_watch(c, -1, 0, delay) != 0)
        evicorn_log(NULL, EVICORN_LOG_ERROR,
                    "%s: cannot arm a reconnect timer: connection %d stays closed", c->pool->label,
                    c->index);
}

static void end_lease(evicorn_pg_conn *c)
{
    c->leased = c->lease_broken = c->lease_set = c->release_pending = false;
    c->lease_req = NULL;
}

/* ---- connecting ---- */

/* A connect attempt failed. */
static void conn_failed(evicorn_pg_conn *c, const char *why)
{
    evicorn_pg_pool *p = c->pool;
    char line[256];
    pg_oneline(line, sizeof line, why);
    snprintf(p->last_error, sizeof p->last_error, "%s", line);
    conn_drop(c);
    if (!p->down_logged) {
        evicorn_log(NULL, EVICORN_LOG_ERROR, "cannot connect to %s: %s (retrying)", p->label, line);
        p->down_logged = true;
    }
    if (!pg_pool_any_ready(p)) {
        char msg[640];
        p->outage = true;
        snprintf(msg, sizeof msg, "cannot connect to %s: %s", p->label, line);
        pg_pool_fail_waiters(p, EVICORN_ECONNREFUSED, 503, msg);
    }
    schedule_connect(c, c->backoff);
    c->backoff = c->backoff * 2 > PG_BACKOFF_MAX ? PG_BACKOFF_MAX : c->backoff * 2;
}

void pg_conn_connect(evicorn_pg_conn *c)
{
    evicorn_pg_pool *p = c->pool;
    const char *kw[4], *val[4];
    int n = 0;
    if (p->conninfo) {
        kw[n] = "dbname";
        val[n++] = p->conninfo;
    }
    kw[n] = "options";
    val[n++] = p->options;
    kw[n] = "fallback_application_name";
    val[n++] = "evicorn";
    kw[n] = NULL;
    val[n] = NULL;

    conn_unwatch(c);
    c->pg = PQconnectStartParams(kw, val, 1);
    if (!c->pg) {
        conn_failed(c, "out of memory");
        return;
    }
    PQsetNoticeProcessor(c->pg, notice_cb, c);
    update_label(c);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_failed(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = C_CONNECTING;
    c->notice[0] = '\0';
    c->deadline = pg_now() + p->connect_timeout;
    int fd = PQsocket(c->pg);
    if (fd < 0) {
        conn_failed(c, PQerrorMessage(c->pg));
        return;
    }
    /* The first round waits for writable: the connect under way. */
    if (conn_watch(c, fd, EVICORN_WRITABLE, p->connect_timeout) != 0)
        conn_failed(c, "cannot watch the socket");
}

static void conn_ready(evicorn_pg_conn *c)
{
    evicorn_pg_pool *p = c->pool;
    if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
        conn_failed(c, PQerrorMessage(c->pg));
        return;
    }
    if (conn_watch(c, PQsocket(c->pg), EVICORN_READABLE, 0) != 0) {
        conn_failed(c, "cannot watch the socket");
        return;
    }
    update_label(c);
    c->state = C_READY;
    c->cur_ms = p->default_ms;
    c->backoff = PG_BACKOFF_MIN;
    c->idle_since = pg_now();
    c->notice[0] = '\0';
    if (c->ever_ready)
        p->reconnects++;
    c->ever_ready = true;
    p->outage = false;
    if (p->down_logged) {
        evicorn_log(NULL, EVICORN_LOG_INFO, "connected to %s again", p->label);
        p->down_logged = false;
    }
    for (size_t i = 0; i < p->nstmts && c->state == C_READY; i++)
        pg_conn_prepare(c, i);
}

static void conn_poll(evicorn_pg_conn *c, unsigned events)
{
    if (events & EVICORN_TIMEOUT) {
        char msg[96];
        snprintf(msg, sizeof msg, "timeout expired after %g s (connect_timeout)",
                 c->pool->connect_timeout);
        conn_failed(c, msg);
        return;
    }
    PostgresPollingStatusType st = PQconnectPoll(c->pg);
    int fd = PQsocket(c->pg);
    switch (st) {
    case PGRES_POLLING_OK:
        conn_ready(c);
        return;
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:
        if (fd < 0 ||
            conn_watch(c, fd, st == PGRES_POLLING_READING ? EVICORN_READABLE : EVICORN_WRITABLE,
                       -1) != 0)
            conn_failed(c, "cannot watch the socket");
        return;
    default:
        conn_failed(c, PQerrorMessage(c->pg));
        return;
    }
}

/* ---- losing it ---- */

static void conn_lost(evicorn_pg_conn *c, const char *why)
{
    evicorn_pg_pool *p = c->pool;
    char line[256], full[800];
    pg_oneline(line, sizeof line, why);
    if (!line[0])
        snprintf(line, sizeof line, "the connection was closed");
    if (c->notice[0] && !strstr(line, c->notice))
        snprintf(full, sizeof full, "%s (%s)", line, c->notice);
    else
        snprintf(full, sizeof full, "%s", line);

    /* Every op in flight here ends; from the tail, so that the unsent
     * ones requeued at the head of the queue keep their order. */
    while (c->ops_tail) {
        struct pg_op *op = c->ops_tail;
        pg_conn_unlink(c, op);
        if (op->gone)
            pg_op_discard(op);
        else if (!op->sent)
            pg_op_requeue(op); /* nothing was sent: another connection may run it */
        else if (op->status != 0)
            pg_op_finish(op); /* the server said why (e.g. it shuts down) */
        else
            pg_op_fail(op, EVICORN_EIO, 503, "lost the connection to %s: %s", p->label, full);
    }
    if (c->release_pending)
        end_lease(c);
    else if (c->leased)
        c->lease_broken = true;
    conn_drop(c);
    if (!p->down_logged && !p->freeing) {
        evicorn_log(NULL, EVICORN_LOG_WARNING, "lost the connection to %s: %s (reconnecting)",
                    p->label, full);
        p->down_logged = true;
    }
    schedule_connect(c, c->backoff);
}

/* ---- running operations ---- */

bool pg_conn_idle(const evicorn_pg_conn *c)
{
    return !c->ops_head && !c->leased && !c->rolling_back && !c->checking;
}

bool pg_conn_op_exclusive(const evicorn_pg_conn *c, const struct pg_op *op)
{
    if (op->kind != OP_RUN)
        return true;
    for (size_t i = 0; i < op->n; i++)
        if (op->stmts[i].timeout_ms != c->cur_ms)
            return true;
    return false;
}

bool pg_conn_can_take(const evicorn_pg_conn *c, const struct pg_op *op)
{
    if (c->state != C_READY || c->leased || c->rolling_back || c->checking)
        return false;
    if (!c->ops_head)
        return true;
    return !c->exclusive && c->nops < c->pool->pipeline_depth && !pg_conn_op_exclusive(c, op);
}

void pg_conn_unlink(evicorn_pg_conn *c, struct pg_op *op)
{
    if (op == c->ops_head)
        c->head_since = pg_now();
    if (op->cprev)
        op->cprev->cnext = op->cnext;
    else
        c->ops_head = op->cnext;
    if (op->cnext)
        op->cnext->cprev = op->cprev;
    else
        c->ops_tail = op->cprev;
    op->cprev = op->cnext = NULL;
    c->nops--;
    if (!c->ops_head)
        c->exclusive = false;
}

bool pg_conn_may_cancel(const evicorn_pg_conn *c, const struct pg_op *op)
{
    if (c->state != C_READY || op != c->ops_head || !op->sent || op->syncs_left <= 0)
        return false;
    for (size_t i = 0; i < c->icount; i++) {
        const struct pg_item *it = &c->items[(c->ihead + i) % c->icap];
        if (it->op == op)
            return true;
        if (it->kind < IT_SYNC)
            return false; /* a PREPARE or a ROLLBACK runs before it */
    }
    return false;
}

void pg_conn_prepare(evicorn_pg_conn *c, size_t i)
{
    if (c->state != C_READY)
        return;
    const struct pg_prepared *s = &c->pool->stmts[i];
    if (reserve(c, 2) != 0) {
        conn_lost(c, "out of memory");
        return;
    }
    if (!PQsendPrepare(c->pg, s->name, s->sql, s->nparams, NULL) || !PQpipelineSync(c->pg)) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    item_push(c, IT_PREPARE, (int)i, 0, NULL);
    item_push(c, IT_SYNC, 0, 0, NULL);
    conn_flush(c);
}

void pg_conn_assign(evicorn_pg_conn *c, struct pg_op *op)
{
    evicorn_pg_pool *p = c->pool;
    bool was_idle = !c->ops_head;
    op->state = OP_ATTACHED;
    op->conn = c;
    op->exclusive = pg_conn_op_exclusive(c, op);
    op->cprev = c->ops_tail;
    op->cnext = NULL;
    if (c->ops_tail)
        c->ops_tail->cnext = op;
    else
        c->ops_head = op;
    c->ops_tail = op;
    c->nops++;
    if (was_idle) {
        c->exclusive = op->exclusive;
        c->head_since = pg_now();
    }
    if (op->rw)
        evicorn_watch_set(op->rw, 0, 0); /* the wait is over */
    if (was_idle && op->kind != OP_CONN_RUN && pg_now() - c->idle_since > p->idle_check) {
        /* Idle for long: a sync round trip proves it is still there. */
        if (reserve(c, 1) != 0 || !PQpipelineSync(c->pg)) {
            conn_lost(c, c->icap ? PQerrorMessage(c->pg) : "out of memory");
            return;
        }
        item_push(c, IT_SYNC_CHK, 0, 0, NULL);
        c->checking = true;
        conn_flush(c);
        return;
    }
    conn_start(c, op);
}

static void conn_send(evicorn_pg_conn *c, struct pg_op *op)
{
    evicorn_pg_pool *p = c->pool;
    if (reserve(c, 4 * op->n + 1) != 0) {
        pg_conn_unlink(c, op);
        pg_op_fail(op, EVICORN_ENOMEM, 500, "out of memory");
        return;
    }
    bool atomic = (op->flags & EVICORN_PG_ATOMIC) != 0;
    /* Each sync is flushed by libpq 15's PQpipelineSync: one send(2) per
     * statement of a non-atomic op. TCP_CORK on the socket from the first
     * statement to the last sync (the kernel then sends one segment) was
     * tried and measured (bench/db/run.py, 3 rounds, medians, pool 8,
     * depth 16): /queries?queries=20 PostgreSQL 323 us/request corked vs
     * 273 not, evicorn 189 vs 204 us/request, 2,900 vs 3,360 requests/s;
     * /db (one statement, never corked) unchanged. Not kept. */
    op->sent = true;
    op->syncs_left = 0;
    for (size_t i = 0; i < op->n; i++) {
        const struct pg_stmt *st = &op->stmts[i];
        if (st->timeout_ms != c->cur_ms) {
            char sql[64];
            snprintf(sql, sizeof sql, "SET statement_timeout = %lld", (long long)st->timeout_ms);
            if (!PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0))
                goto fail;
            item_push(c, IT_SET, 0, st->timeout_ms, op);
            /* Its own segment, so that a failing statement does not undo
             * it; inside an atomic run only before the first statement. */
            if (!atomic || i == 0) {
                if (!PQpipelineSync(c->pg))
                    goto fail;
                item_push(c, IT_SYNC, 0, 0, NULL);
            }
            c->cur_ms = st->timeout_ms;
        }
        int ok = st->sql ? PQsendQueryParams(c->pg, st->sql, st->nparams, NULL, st->values,
                                             st->lengths, NULL, 0)
                         : PQsendQueryPrepared(c->pg, st->prepared, st->nparams, st->values,
                                               st->lengths, NULL, 0);
        if (!ok)
            goto fail;
        item_push(c, IT_STMT, (int)i, 0, op);
        if (!atomic || i == op->n - 1) {
            if (!PQpipelineSync(c->pg))
                goto fail;
            item_push(c, IT_SYNC_OP, 0, 0, op);
            op->syncs_left++;
        }
    }
    p->queries += op->n;
    conn_flush(c);
    return;
fail:
    conn_lost(c, PQerrorMessage(c->pg));
}

/* op (on c) passed its check (or needed none). */
static void conn_start(evicorn_pg_conn *c, struct pg_op *op)
{
    if (op->kind == OP_ACQUIRE) {
        pg_conn_unlink(c, op);
        end_lease(c);
        c->leased = true;
        c->lease_req = op->req;
        op->conn = c;
        pg_op_finish(op);
        return;
    }
    conn_send(c, op);
}

void pg_conn_release(evicorn_pg_conn *c)
{
    if (c->ops_head)
        return; /* still draining: conn_op_done comes back here */
    if (c->state != C_READY || c->lease_broken) {
        end_lease(c);
        return;
    }
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    if (c->lease_set)
        c->cur_ms = -1;
    end_lease(c);
    c->idle_since = pg_now();
    if (ts == PQTRANS_IDLE)
        return;
    /* Left inside a transaction (or we cannot tell): roll it back. */
    if (reserve(c, 2) != 0) {
        conn_lost(c, "out of memory");
        return;
    }
    if (!PQsendQueryParams(c->pg, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) ||
        !PQpipelineSync(c->pg)) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    item_push(c, IT_ROLLBACK, 0, 0, NULL);
    item_push(c, IT_SYNC_RB, 0, 0, NULL);
    c->rolling_back = true;
    c->cur_ms = -1;
    conn_flush(c);
}

void pg_conn_close(evicorn_pg_conn *c)
{
    /* The pool failed the others already. */
    while (c->ops_head) {
        struct pg_op *op = c->ops_head;
        pg_conn_unlink(c, op);
        if (op->gone)
            pg_op_discard(op);
    }
    conn_drop(c);
    free(c->items);
    c->items = NULL;
    c->icap = 0;
}

/* ---- reading the replies ---- */

/* op's last sync came back (it was the head of c's FIFO). */
static void conn_op_done(evicorn_pg_conn *c, struct pg_op *op)
{
    pg_conn_unlink(c, op);
    c->idle_since = pg_now();
    /* A departed op that reaches the head may be cancelled now. */
    struct pg_op *next = c->ops_head;
    if (next && next->gone && !next->cancelled)
        pg_conn_cancel_later(c);
    if (op->gone) {
        pg_op_discard(op);
    } else {
        for (size_t i = 0; i < op->n && op->status == 0; i++)
            if (!op->results[i])
                pg_op_fail(op, EVICORN_EIO, 503, "no result for statement %zu from %s", i,
                           c->pool->label);
        if (op->state != OP_FINISHED)
            pg_op_finish(op);
    }
    if (c->release_pending)
        pg_conn_release(c);
}

static void conn_result(evicorn_pg_conn *c, const struct pg_item *it, PGresult *r)
{
    evicorn_pg_pool *p = c->pool;
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY;
    if (!ok)
        c->seg_error = true;
    switch (it->kind) {
    case IT_STMT: {
        struct pg_op *op = it->op;
        if (!op || op->gone)
            break;
        if (ok && !op->results[it->idx]) {
            op->results[it->idx] = r;
            return;
        }
        if (!ok && op->status == 0)
            pg_op_set_error(op, (size_t)it->idx, r, p->label);
        break;
    }
    case IT_SET:
        c->seg_set = true;
        if (!ok) {
            char line[256];
            pg_oneline(line, sizeof line, PQresultErrorMessage(r));
            evicorn_log(NULL, EVICORN_LOG_WARNING, "%s: SET statement_timeout failed: %s", p->label,
                        line);
        }
        break;
    case IT_PREPARE:
        if (!ok && !p->stmts[it->idx].failed_logged) {
            char line[256];
            pg_oneline(line, sizeof line, PQresultErrorMessage(r));
            evicorn_log(NULL, EVICORN_LOG_ERROR, "%s: cannot prepare statement \"%s\": %s",
                        p->label, p->stmts[it->idx].name, line);
            p->stmts[it->idx].failed_logged = true;
        }
        break;
    default:
        break;
    }
    PQclear(r);
}

/* A sync came back: the end of a segment. */
static void conn_segment_end(evicorn_pg_conn *c, const struct pg_item *it)
{
    if (c->seg_error && c->seg_set)
        c->cur_ms = -1;
    if (c->leased && c->seg_set)
        c->lease_set = true;
    c->seg_error = c->seg_set = false;
    switch (it->kind) {
    case IT_SYNC_OP:
        if (it->op && --it->op->syncs_left == 0)
            conn_op_done(c, it->op);
        break;
    case IT_SYNC_CHK:
        c->checking = false;
        c->idle_since = pg_now();
        if (c->ops_head)
            conn_start(c, c->ops_head);
        break;
    case IT_SYNC_RB:
        c->rolling_back = false;
        c->idle_since = pg_now();
        if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
            conn_lost(c, "still inside a transaction after ROLLBACK");
        break;
    default:
        break;
    }
}

static void conn_process(evicorn_pg_conn *c)
{
    while (c->state == C_READY && c->icount > 0) {
        if (PQisBusy(c->pg))
            return;
        PGresult *r = PQgetResult(c->pg);
        struct pg_item it = c->items[c->ihead];
        if (it.kind >= IT_SYNC) {
            if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
                char why[256];
                snprintf(why, sizeof why, "%s",
                         r ? PQresultErrorMessage(r) : "replies out of step with the pipeline");
                PQclear(r);
                conn_lost(c, PQstatus(c->pg) == CONNECTION_BAD ? PQerrorMessage(c->pg) : why);
                return;
            }
            PQclear(r);
            item_pop(c);
            conn_segment_end(c, &it);
        } else if (r) {
            conn_result(c, &it, r);
        } else {
            item_pop(c); /* the NULL after a statement's results */
        }
    }
}

void pg_conn_cancel_later(evicorn_pg_conn *c)
{
    if (c->cancel_armed || c->state != C_READY)
        return;
    double left = c->head_since + PG_CANCEL_DELAY - pg_now();
    unsigned events = EVICORN_READABLE | (c->want_write ? EVICORN_WRITABLE : 0);
    /* Should the timer not start, the op runs to its end: no cancel. */
    if (conn_watch(c, c->wfd, events, left > 0.001 ? left : 0.001) == 0)
        c->cancel_armed = true;
}

/* The timer of pg_conn_cancel_later. */
static void conn_cancel_due(evicorn_pg_conn *c)
{
    c->cancel_armed = false;
    struct pg_op *op = c->ops_head;
    if (!op || !op->gone || op->cancelled)
        return;
    if (pg_now() - c->head_since < PG_CANCEL_DELAY) {
        pg_conn_cancel_later(c); /* a newer head: its own delay */
        return;
    }
    if (pg_conn_may_cancel(c, op)) {
        op->cancelled = true;
        pg_pool_cancel_query(c->pool, c);
    }
}

static void conn_io(evicorn_pg_conn *c, unsigned events)
{
    if (events & EVICORN_TIMEOUT)
        conn_cancel_due(c);
    if ((events & EVICORN_READABLE) && !PQconsumeInput(c->pg)) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    if ((c->want_write || (events & EVICORN_WRITABLE)) && !conn_flush(c))
        return;
    conn_process(c);
    if (c->state == C_READY && PQstatus(c->pg) == CONNECTION_BAD)
        conn_lost(c, PQerrorMessage(c->pg));
}

static void conn_watch_cb(evicorn_watch *w, void *ud, unsigned events, int status)
{
    (void)w;
    evicorn_pg_conn *c = ud;
    evicorn_pg_pool *p = c->pool;
    if (status != 0)
        return;
    pg_pool_enter(p);
    switch (c->state) {
    case C_DOWN:
        if (events & EVICORN_TIMEOUT)
            pg_conn_connect(c);
        break;
    case C_CONNECTING:
        conn_poll(c, events);
        break;
    case C_READY:
        conn_io(c, events);
        break;
    }
    pg_pool_leave(p);
}
