/* evicorn SDK: PostgreSQL on the event loop (libevicorn_pg.a, over libpq).
 *
 * An async route awaits a query the way a FastAPI handler awaits asyncpg:
 * the query goes out on one of the worker's pooled connections, the loop
 * serves other requests meanwhile, and a continuation runs with the
 * results. Nothing here blocks the loop: connections are opened with
 * PQconnectStart/PQconnectPoll and driven through the host's watches
 * (abi.h, 1.3), queries are sent in libpq's pipeline mode.
 *
 *     static evicorn_pg_pool *pool;   // one per worker: made in startup
 *
 *     static void got_row(evicorn_request *req, void *ud, const evicorn_pg_reply *r)
 *     {
 *         if (r->status != 0) {
 *             evicorn_pg_respond_error(req, r);   // 503 / 504 / 500 + detail
 *             return;
 *         }
 *         json_t *row = evicorn_pg_row_json(r->results[0], 0);
 *         evicorn_respond_json(req, 200, row);
 *     }
 *
 *     static void world(evicorn_request *req, void *data)
 *     {
 *         const char *id = "42";
 *         evicorn_pg_query q = {.prepared = "world", .nparams = 1, .values = &id};
 *         evicorn_pg_run(req, pool, &q, 1, 0, got_row, NULL);
 *     }
 *
 * Threads: loop thread only (EVICORN_ASYNC routes, their continuations,
 * startup and shutdown); elsewhere the calls return EVICORN_EPERM. A sync
 * route that wants PostgreSQL uses libpq's blocking calls directly.
 *
 * Settings follow libpq's own conventions: conninfo (a "key=value" string
 * or a postgresql:// URI); when NULL, the DATABASE_URL environment
 * variable; when that is unset too, libpq's PGHOST, PGPORT, PGDATABASE,
 * PGUSER, PGPASSWORD, ... Every failure is logged on one line naming the
 * plugin (the host prefixes it) and the server (host:port/database).
 */
#ifndef EVICORN_PG_H
#define EVICORN_PG_H

#include <stddef.h>
#include <stdint.h>

#include <evicorn/sdk.h>
#include <libpq-fe.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* A worker's pool of connections to one database. */
typedef struct evicorn_pg_pool evicorn_pg_pool;
/* A connection leased from the pool (evicorn_pg_acquire) for a sequence
 * of steps that must share it: a transaction whose later statements
 * depend on earlier results. */
typedef struct evicorn_pg_conn evicorn_pg_conn;

typedef struct evicorn_pg_options {
    uint32_t size; /* sizeof(evicorn_pg_options) */
    /* NULL: $DATABASE_URL, else libpq's PG* environment variables. */
    const char *conninfo;
    /* Connections per worker; 0: $EVICORN_PG_POOL_SIZE, else 8. */
    int pool_size;
    /* Requests that may wait for a connection; more get 503 at once.
     * 0: 1024. */
    int max_waiting;
    /* Seconds a request may wait for a connection before 503; 0: 5. */
    double acquire_timeout;
    /* Seconds to open a connection (TCP, TLS, authentication); 0: 5. */
    double connect_timeout;
    /* Default statement_timeout of every query, in seconds (the server
     * cancels a query that runs longer: the reply is 504); 0: none. */
    double statement_timeout;
    /* An idle connection unused this long is checked (a round trip)
     * before it is handed out again; 0: 30 s. */
    double idle_check;
    /* Operations (evicorn_pg_run) in flight on one connection at once:
     * the statements of several requests are pipelined on it, each still
     * ending with its own sync, so the server reads several per wake-up
     * and one request's error does not touch the others'. A waiting
     * request goes to an idle connection, else to the least loaded one
     * below this depth. Leases (evicorn_pg_acquire) and runs that change
     * statement_timeout have a connection to themselves. 1: one at a
     * time. 0: $EVICORN_PG_PIPELINE_DEPTH, else 16. At most 1024. */
    int pipeline_depth;
} evicorn_pg_options;

/* Creates the pool and starts opening its connections (in the
 * background: a query issued before one is ready waits in the queue).
 * Call it from the startup hook. Returns 0; or, with a reason in err:
 * EVICORN_ENOENT when no database is configured (neither conninfo,
 * DATABASE_URL nor PGHOST, PGHOSTADDR, PGDATABASE, PGPORT or PGSERVICE
 * set: a plugin may then refuse to load, or serve without a database);
 * EVICORN_EINVAL for a conninfo libpq cannot parse or a bad
 * $EVICORN_PG_POOL_SIZE or $EVICORN_PG_PIPELINE_DEPTH; EVICORN_ENOSYS on a host older than ABI 1.3
 * (a plugin using this defines EVICORN_PLUGIN_MIN_ABI_MINOR 3). */
int evicorn_pg_pool_new(const evicorn_pg_options *opts, evicorn_pg_pool **out, char *err,
                        size_t errlen);
/* Closes every connection and frees the pool. Requests still waiting or
 * running get EVICORN_ECANCELED first. Call it from the shutdown hook. */
void evicorn_pg_pool_free(evicorn_pg_pool *pool);

/* Registers a prepared statement, prepared on every connection of the
 * pool (those open now and every later one) before it runs a query.
 * nparams may be 0 to let the server infer the parameter types. Call it
 * in startup, after evicorn_pg_pool_new. */
int evicorn_pg_prepare(evicorn_pg_pool *pool, const char *name, const char *sql, int nparams);

/* One statement. Parameters are sent in text format; a NULL value is SQL
 * NULL. Results come back in text format. */
typedef struct evicorn_pg_query {
    const char *sql;      /* the statement; or NULL and: */
    const char *prepared; /* the name given to evicorn_pg_prepare */
    int nparams;
    const char *const *values; /* NUL-terminated, or with lengths */
    const int *lengths;        /* NULL: strlen of each value */
    /* Seconds; 0: the pool's statement_timeout; < 0: none. */
    double statement_timeout;
} evicorn_pg_query;

/* The outcome of evicorn_pg_run / evicorn_pg_conn_run. */
typedef struct evicorn_pg_reply {
    /* 0: every statement succeeded, results[i] holds the i-th one's.
     * Otherwise:
     *   EVICORN_ETIMEDOUT  no connection within acquire_timeout (the pool
     *                      is exhausted or the server is down) -> 503,
     *                      or a statement ran past its statement_timeout
     *                      -> 504;
     *   EVICORN_EBUSY      max_waiting requests already wait for a
     *                      connection -> 503 at once;
     *   EVICORN_ECONNREFUSED  the server cannot be reached -> 503;
     *   EVICORN_EIO        the connection was lost mid-query -> 503;
     *   EVICORN_EINVAL     the server refused a statement (SQL error,
     *                      constraint violated; sqlstate says which) -> 500;
     *   EVICORN_ECANCELED  the client disconnected (the query was
     *                      cancelled on the server); respond nothing.
     *   EVICORN_ENOMEM     -> 500. */
    int status;
    /* The HTTP status the above suggests (0 when status is 0). */
    int http_status;
    /* One line saying what failed, naming the server; NULL on success. */
    const char *message;
    /* The server's SQLSTATE ("23505", "57014", ...) when it reported an
     * error, else NULL. */
    const char *sqlstate;
    /* One result per statement (PGRES_TUPLES_OK or PGRES_COMMAND_OK),
     * owned by the SDK and valid only during the callback; NULL (and
     * nresults 0) when status is not 0. */
    PGresult *const *results;
    size_t nresults;
} evicorn_pg_reply;

typedef void (*evicorn_pg_fn)(evicorn_request *req, void *ud, const evicorn_pg_reply *reply);

/* Flags for evicorn_pg_run. */
enum {
    /* All statements run in one implicit transaction (one pipeline sync):
     * all of them take effect or none. Without it, each is its own. */
    EVICORN_PG_ATOMIC = 1,
};

/* Runs n statements (1..1024) for req on a pooled connection, all sent at
 * once in one pipeline (one round trip for n statements), then fn runs
 * once with their results: the continuation rule of abi.h (never before
 * this returns, exactly once, on the loop). The request stays open until
 * fn has run. A client that disconnects meanwhile has its statement
 * cancelled on the server (once no other request's statement runs before
 * it on that connection; until then its results are just dropped), and fn
 * gets EVICORN_ECANCELED.
 * The statements, their SQL and their values are copied before this
 * returns: the caller's arrays need not outlive the call.
 * Returns 0, or EVICORN_EINVAL / EVICORN_EPERM / EVICORN_ENOMEM, or
 * EVICORN_EPIPE when the client is already gone (then fn never runs). */
int evicorn_pg_run(evicorn_request *req, evicorn_pg_pool *pool, const evicorn_pg_query *queries,
                   size_t n, unsigned flags, evicorn_pg_fn fn, void *ud);

/* Leases a connection for a sequence of steps (a transaction across
 * round trips): fn gets the connection (status 0), or a NULL connection
 * and the reasons above (503 after acquire_timeout, ECANCELED). */
typedef void (*evicorn_pg_acquire_fn)(evicorn_request *req, void *ud, evicorn_pg_conn *conn,
                                      const evicorn_pg_reply *reply);
int evicorn_pg_acquire(evicorn_request *req, evicorn_pg_pool *pool, evicorn_pg_acquire_fn fn,
                       void *ud);
/* evicorn_pg_run on a leased connection, for the request that acquired
 * it; one at a time (EVICORN_EBUSY while the previous one runs). A
 * connection lost since it was leased fails with EVICORN_EIO. */
int evicorn_pg_conn_run(evicorn_pg_conn *conn, const evicorn_pg_query *queries, size_t n,
                        unsigned flags, evicorn_pg_fn fn, void *ud);
/* Gives the connection back. One left inside a transaction (BEGIN
 * without COMMIT, or a failed statement) is rolled back first. Must be
 * called exactly once per leased connection, also after an error. */
void evicorn_pg_release(evicorn_pg_conn *conn);

/* ---- results ---- */

/* The column named name, or -1. */
int evicorn_pg_column(const PGresult *res, const char *name);
/* Typed values of (row, col); EVICORN_ENOENT for SQL NULL or out of
 * range, EVICORN_EINVAL when the text is not of that type. */
int evicorn_pg_get_int(const PGresult *res, int row, int col, int64_t *out);
int evicorn_pg_get_double(const PGresult *res, int row, int col, double *out);
int evicorn_pg_get_bool(const PGresult *res, int row, int col, int *out);
int evicorn_pg_get_text(const PGresult *res, int row, int col, evicorn_str *out);
/* A row as a JSON object by column name, values typed by the column's
 * type: int2/4/8 and oid -> integer, float4/8 and numeric -> real,
 * bool -> true/false, json/jsonb -> the parsed value, NULL -> null,
 * anything else -> string. New reference; NULL when out of memory or
 * row is out of range. */
json_t *evicorn_pg_row_json(const PGresult *res, int row);
/* Every row, as an array of such objects. New reference. */
json_t *evicorn_pg_rows_json(const PGresult *res);

/* Answers a failed reply as {"detail": message} with its http_status
 * (nothing for EVICORN_ECANCELED: the client is gone). */
int evicorn_pg_respond_error(evicorn_request *req, const evicorn_pg_reply *reply);

/* The pool's state for a status page: connections open, busy, and
 * requests waiting. */
typedef struct evicorn_pg_stats {
    int open, busy, connecting, waiting;
    uint64_t queries, errors, reconnects;
} evicorn_pg_stats;
void evicorn_pg_pool_stats(const evicorn_pg_pool *pool, evicorn_pg_stats *out);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif
