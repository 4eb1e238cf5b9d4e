/* pgprobe: a test-only plugin over the SDK's PostgreSQL client
 * (evicorn/pg.h), for tests/http/test_pg_client.py. Built twice
 * (PGPROBE_VERSION "1" and "2") for the hot-reload test.
 *
 * The pool is made in startup from the environment: DATABASE_URL (or
 * libpq's PG* variables), EVICORN_PG_POOL_SIZE, and PGPROBE_ACQUIRE_TIMEOUT,
 * PGPROBE_MAX_WAITING, PGPROBE_STATEMENT_TIMEOUT, PGPROBE_CONNECT_TIMEOUT,
 * PGPROBE_IDLE_CHECK, PGPROBE_PIPELINE_DEPTH (seconds, or a count; unset:
 * the SDK's default).
 *
 * Routes (all async; failures answer what evicorn_pg_respond_error does):
 *   GET /pg/param?a=&b=        SELECT $1::int + $2::int: {"sum":..,"a":"<a>"}
 *   GET /pg/prepared?id=       the prepared statement pgprobe_echo:
 *                              {"id":id,"label":"row <id>"}
 *   GET /pg/pipeline?n=&atomic=&fail=
 *                              n statements in one run: [0,1,..,n-1];
 *                              statement `fail` (when given) divides by 0
 *   GET /pg/types              one row of every converted type, as JSON
 *   GET /pg/setup              creates the table pgprobe_tx
 *   GET /pg/tx?v=&commit=      leased transaction: BEGIN, INSERT v, then
 *                              COMMIT (commit=1) or release without it
 *                              (rolled back): {"id":..,"committed":bool}
 *   GET /pg/count?v=           rows of pgprobe_tx with v: {"n":..}
 *   GET /pg/sleep?s=&timeout=&tag=
 *                              SELECT pg_sleep(s) with statement_timeout
 *                              timeout (when given), tagged in a comment
 *                              so pg_stat_activity can find it
 *   GET /pg/hold?s=            leases a connection for s seconds
 *   GET /pg/error              SELECT 1/0
 *   GET /pg/stats              the pool's evicorn_pg_stats as JSON
 *   GET /pg/version            the plugin's version
 */
#define EVICORN_PLUGIN_MIN_ABI_MINOR 3
#include <evicorn/pg.h>
#include <evicorn/sdk.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PGPROBE_VERSION
#define PGPROBE_VERSION "1"
#endif

static evicorn_pg_pool *pool_of(evicorn_request *req)
{
    return evicorn_state(req);
}

static double env_double(const char *name)
{
    const char *s = getenv(name);
    return s && *s ? strtod(s, NULL) : 0;
}

/* Answers a call that failed before it started (fn will not run). */
static void call_failed(evicorn_request *req, const char *what, int rc)
{
    char detail[128];
    snprintf(detail, sizeof detail, "%s returned %d", what, rc);
    evicorn_respond_error(req, 500, detail);
}

/* ---- one row ---- */

static void row_done(evicorn_request *req, void *ud, const evicorn_pg_reply *r)
{
    (void)ud;
    if (r->status != 0) {
        evicorn_pg_respond_error(req, r);
        return;
    }
    if (PQntuples(r->results[0]) == 0)
        evicorn_respond_json(req, 200, json_pack("{s:s}", "status", PQcmdStatus(r->results[0])));
    else
        evicorn_respond_json(req, 200, evicorn_pg_row_json(r->results[0], 0));
}

static void run_one(evicorn_request *req, const evicorn_pg_query *q)
{
    int rc = evicorn_pg_run(req, pool_of(req), q, 1, 0, row_done, NULL);
    if (rc != 0)
        call_failed(req, "evicorn_pg_run", rc);
}

static void param(evicorn_request *req, void *data)
{
    (void)data;
    char a[32], b[32];
    snprintf(a, sizeof a, "%lld", evicorn_query_int(req, "a", 0, NULL));
    snprintf(b, sizeof b, "%lld", evicorn_query_int(req, "b", 0, NULL));
    const char *values[] = {a, b};
    evicorn_pg_query q = {
        .sql = "SELECT $1::int + $2::int AS sum, $1::text AS a",
        .nparams = 2,
        .values = values,
    };
    run_one(req, &q);
}

static void prepared(evicorn_request *req, void *data)
{
    (void)data;
    char id[32];
    snprintf(id, sizeof id, "%lld", evicorn_query_int(req, "id", 1, NULL));
    const char *values[] = {id};
    evicorn_pg_query q = {.prepared = "pgprobe_echo", .nparams = 1, .values = values};
    run_one(req, &q);
}

static void types(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_pg_query q = {
        .sql = "SELECT 1::int2 AS i2, 2::int4 AS i4, 9007199254740993::int8 AS i8, 26::oid AS o,"
               " 1.5::float4 AS f4, 2.25::float8 AS f8, 3.125::numeric AS num, true AS b,"
               " '{\"a\":[1,2]}'::json AS j, '{\"b\":null}'::jsonb AS jb, NULL::int AS n,"
               " 'h\xc3\xa9llo'::text AS t, 'NaN'::float8 AS nan",
    };
    run_one(req, &q);
}

static void error_route(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_pg_query q = {.sql = "SELECT 1/0 AS x"};
    run_one(req, &q);
}

static void setup(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_pg_query q = {
        .sql = "CREATE TABLE IF NOT EXISTS pgprobe_tx (id serial PRIMARY KEY, v int NOT NULL)",
    };
    run_one(req, &q);
}

static void count(evicorn_request *req, void *data)
{
    (void)data;
    char v[32];
    snprintf(v, sizeof v, "%lld", evicorn_query_int(req, "v", 0, NULL));
    const char *values[] = {v};
    evicorn_pg_query q = {
        .sql = "SELECT count(*)::int AS n FROM pgprobe_tx WHERE v = $1",
        .nparams = 1,
        .values = values,
    };
    run_one(req, &q);
}

/* ---- a pipeline of n ---- */

static void pipeline_done(evicorn_request *req, void *ud, const evicorn_pg_reply *r)
{
    (void)ud;
    if (r->status != 0) {
        evicorn_pg_respond_error(req, r);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < r->nresults; i++) {
        int64_t v = -1;
        evicorn_pg_get_int(r->results[i], 0, 0, &v);
        json_array_append_new(arr, json_integer(v));
    }
    evicorn_respond_json(req, 200, arr);
}

static void pipeline(evicorn_request *req, void *data)
{
    (void)data;
    long long n = evicorn_query_int(req, "n", 1, NULL);
    long long fail = evicorn_query_int(req, "fail", -1, NULL);
    int atomic = evicorn_query_bool(req, "atomic", 0, NULL);
    if (n < 1 || n > 1024) {
        evicorn_respond_error(req, 422, "n must be 1..1024");
        return;
    }
    evicorn_pg_query *q = calloc((size_t)n, sizeof *q);
    char(*nums)[24] = calloc((size_t)n, sizeof *nums);
    const char **values = calloc((size_t)n, sizeof *values);
    if (!q || !nums || !values) {
        free(q);
        free(nums);
        free(values);
        evicorn_respond_error(req, 500, "out of memory");
        return;
    }
    for (long long i = 0; i < n; i++) {
        snprintf(nums[i], sizeof nums[i], "%lld", i);
        values[i] = nums[i];
        q[i] = (evicorn_pg_query){
            .sql = i == fail ? "SELECT $1::int / 0 AS i" : "SELECT $1::int AS i",
            .nparams = 1,
            .values = &values[i],
        };
    }
    int rc = evicorn_pg_run(req, pool_of(req), q, (size_t)n, atomic ? EVICORN_PG_ATOMIC : 0,
                            pipeline_done, NULL);
    free(q);
    free(nums);
    free(values);
    if (rc != 0)
        call_failed(req, "evicorn_pg_run", rc);
}

/* ---- sleep, with a statement_timeout ---- */

static void sleep_done(evicorn_request *req, void *ud, const evicorn_pg_reply *r)
{
    (void)ud;
    if (r->status != 0) {
        evicorn_pg_respond_error(req, r);
        return;
    }
    evicorn_respond_json(req, 200, json_pack("{s:b}", "slept", 1));
}

static void sleep_route(evicorn_request *req, void *data)
{
    (void)data;
    char *s = evicorn_query_str(req, "s", "0", NULL);
    char *tag = evicorn_query_str(req, "tag", "none", NULL);
    double timeout = evicorn_query_float(req, "timeout", 0, NULL);
    char sql[160];
    int ok = s && tag && strlen(tag) < 64;
    for (const char *t = tag; ok && *t; t++)
        ok = isalnum((unsigned char)*t) || *t == '_';
    if (!ok) {
        free(s);
        free(tag);
        evicorn_respond_error(req, 422, "bad s or tag");
        return;
    }
    snprintf(sql, sizeof sql, "SELECT pg_sleep($1) /* pgprobe:%s */", tag);
    const char *values[] = {s};
    evicorn_pg_query q = {.sql = sql, .nparams = 1, .values = values, .statement_timeout = timeout};
    int rc = evicorn_pg_run(req, pool_of(req), &q, 1, 0, sleep_done, NULL);
    free(s);
    free(tag);
    if (rc != 0)
        call_failed(req, "evicorn_pg_run", rc);
}

/* ---- a leased transaction ---- */

struct tx {
    evicorn_pg_conn *conn;
    char v[32];
    int commit;
    long long id;
};

static void tx_end(evicorn_request *req, struct tx *t, const evicorn_pg_reply *r)
{
    evicorn_pg_release(t->conn);
    if (r && r->status != 0)
        evicorn_pg_respond_error(req, r);
    else
        evicorn_respond_json(
            req, 200, json_pack("{s:I,s:b}", "id", (json_int_t)t->id, "committed", t->commit));
    free(t);
}

static void tx_step(evicorn_request *req, struct tx *t, const char *sql, int nparams,
                    evicorn_pg_fn next)
{
    const char *values[] = {t->v};
    evicorn_pg_query q = {.sql = sql, .nparams = nparams, .values = values};
    int rc = evicorn_pg_conn_run(t->conn, &q, 1, 0, next, t);
    if (rc != 0) {
        evicorn_pg_release(t->conn);
        free(t);
        call_failed(req, "evicorn_pg_conn_run", rc);
    }
}

static void tx_committed(evicorn_request *req, void *ud, const evicorn_pg_reply *r)
{
    tx_end(req, ud, r);
}

static void tx_inserted(evicorn_request *req, void *ud, const evicorn_pg_reply *r)
{
    struct tx *t = ud;
    if (r->status != 0) {
        tx_end(req, t, r);
        return;
    }
    int64_t id = 0;
    evicorn_pg_get_int(r->results[0], 0, 0, &id);
    t->id = (long long)id;
    if (t->commit)
        tx_step(req, t, "COMMIT", 0, tx_committed);
    else
        tx_end(req, t, NULL); /* released inside the transaction: rolled back */
}

static void tx_begun(evicorn_request *req, void *ud, const evicorn_pg_reply *r)
{
    struct tx *t = ud;
    if (r->status != 0) {
        tx_end(req, t, r);
        return;
    }
    tx_step(req, t, "INSERT INTO pgprobe_tx (v) VALUES ($1) RETURNING id", 1, tx_inserted);
}

static void tx_acquired(evicorn_request *req, void *ud, evicorn_pg_conn *conn,
                        const evicorn_pg_reply *r)
{
    struct tx *t = ud;
    if (r->status != 0) {
        evicorn_pg_respond_error(req, r);
        free(t);
        return;
    }
    t->conn = conn;
    tx_step(req, t, "BEGIN", 0, tx_begun);
}

static void tx(evicorn_request *req, void *data)
{
    (void)data;
    struct tx *t = calloc(1, sizeof *t);
    if (!t) {
        evicorn_respond_error(req, 500, "out of memory");
        return;
    }
    snprintf(t->v, sizeof t->v, "%lld", evicorn_query_int(req, "v", 0, NULL));
    t->commit = evicorn_query_bool(req, "commit", 1, NULL);
    int rc = evicorn_pg_acquire(req, pool_of(req), tx_acquired, t);
    if (rc != 0) {
        free(t);
        call_failed(req, "evicorn_pg_acquire", rc);
    }
}

/* ---- holding a connection ---- */

struct hold {
    evicorn_pg_conn *conn;
    double seconds;
};

static void hold_slept(evicorn_request *req, void *ud, int status)
{
    struct hold *h = ud;
    evicorn_pg_release(h->conn);
    if (status == 0)
        evicorn_respond_json(req, 200, json_pack("{s:f}", "held", h->seconds));
    free(h);
}

static void hold_acquired(evicorn_request *req, void *ud, evicorn_pg_conn *conn,
                          const evicorn_pg_reply *r)
{
    struct hold *h = ud;
    if (r->status != 0) {
        evicorn_pg_respond_error(req, r);
        free(h);
        return;
    }
    h->conn = conn;
    int rc = evicorn_sleep(req, h->seconds, hold_slept, h);
    if (rc != 0) {
        evicorn_pg_release(conn);
        free(h);
        call_failed(req, "evicorn_sleep", rc);
    }
}

static void hold(evicorn_request *req, void *data)
{
    (void)data;
    struct hold *h = calloc(1, sizeof *h);
    if (!h) {
        evicorn_respond_error(req, 500, "out of memory");
        return;
    }
    h->seconds = evicorn_query_float(req, "s", 1, NULL);
    int rc = evicorn_pg_acquire(req, pool_of(req), hold_acquired, h);
    if (rc != 0) {
        free(h);
        call_failed(req, "evicorn_pg_acquire", rc);
    }
}

/* ---- state ---- */

static void stats(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_pg_stats s;
    evicorn_pg_pool_stats(pool_of(req), &s);
    evicorn_respond_json(req, 200,
                         json_pack("{s:i,s:i,s:i,s:i,s:I,s:I,s:I}", "open", s.open, "busy", s.busy,
                                   "connecting", s.connecting, "waiting", s.waiting, "queries",
                                   (json_int_t)s.queries, "errors", (json_int_t)s.errors,
                                   "reconnects", (json_int_t)s.reconnects));
}

static void version(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_respond_text(req, 200, NULL, PGPROBE_VERSION);
}

static int startup(void **state, char *err, size_t errlen)
{
    evicorn_pg_options o = {
        .size = sizeof o,
        .acquire_timeout = env_double("PGPROBE_ACQUIRE_TIMEOUT"),
        .max_waiting = (int)env_double("PGPROBE_MAX_WAITING"),
        .statement_timeout = env_double("PGPROBE_STATEMENT_TIMEOUT"),
        .connect_timeout = env_double("PGPROBE_CONNECT_TIMEOUT"),
        .idle_check = env_double("PGPROBE_IDLE_CHECK"),
        .pipeline_depth = (int)env_double("PGPROBE_PIPELINE_DEPTH"),
    };
    evicorn_pg_pool *pool;
    int rc = evicorn_pg_pool_new(&o, &pool, err, errlen);
    if (rc != 0)
        return rc;
    rc = evicorn_pg_prepare(pool, "pgprobe_echo", "SELECT $1::int AS id, 'row ' || $1 AS label", 1);
    if (rc != 0) {
        snprintf(err, errlen, "evicorn_pg_prepare returned %d", rc);
        evicorn_pg_pool_free(pool);
        return rc;
    }
    *state = pool;
    return 0;
}

static void shutdown_plugin(void *state)
{
    evicorn_pg_pool_free(state);
}

static const evicorn_route routes[] = {
    EVICORN_GET("/pg/param", param),       EVICORN_GET("/pg/prepared", prepared),
    EVICORN_GET("/pg/pipeline", pipeline), EVICORN_GET("/pg/types", types),
    EVICORN_GET("/pg/setup", setup),       EVICORN_GET("/pg/tx", tx),
    EVICORN_GET("/pg/count", count),       EVICORN_GET("/pg/sleep", sleep_route),
    EVICORN_GET("/pg/hold", hold),         EVICORN_GET("/pg/error", error_route),
    EVICORN_GET("/pg/stats", stats),       EVICORN_GET("/pg/version", version),
};

EVICORN_PLUGIN("pgprobe", PGPROBE_VERSION, routes, startup, shutdown_plugin)
