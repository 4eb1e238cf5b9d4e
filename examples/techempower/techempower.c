/* techempower: the TechEmpower Framework Benchmarks database tests, on
 * PostgreSQL through the SDK's pool (evicorn/pg.h).
 *
 *   GET /db                     {"id":N,"randomNumber":N}, one random row
 *   GET /queries?queries=N      [{"id":..,"randomNumber":..}, ...], N rows
 *   GET /fortunes               the fortune table as an HTML page
 *   GET /updates?queries=N      N rows read, given new random numbers, saved
 *   GET /cached-queries?count=N N rows from this worker's copy of the table
 *
 * (/json and /plaintext are examples/hello's.) N is clamped as the
 * benchmark's rules say: missing, not an integer or below 1 gives 1, above
 * 500 gives 500. The tables are TechEmpower's world(id, randomnumber) and
 * fortune(id, message); scripts/db-load creates and fills them.
 *
 * Each worker has its own pool, made in startup from DATABASE_URL (or
 * libpq's PG* variables); with neither, startup refuses the plugin with
 * one line and the server serves everything else.
 *
 * How each test meets the rules:
 *   - every query is a prepared statement; /queries and /updates send
 *     their N reads in one pipeline, each read its own statement and sync
 *     (no batching, no WHERE id IN);
 *   - /updates reads N distinct rows, gives each a new number different
 *     from the old one, and writes them with one UPDATE (a bulk update,
 *     which the rules allow), the rows in id order so that concurrent
 *     requests lock rows in the same order and never deadlock;
 *   - /fortunes reads all 12 rows on every request, adds the 13th in
 *     memory, sorts by message (byte order of UTF-8, i.e. code point
 *     order) and escapes every message;
 *   - /cached-queries reads the whole world table once per worker, on the
 *     first request that needs it (a few requests arriving together may
 *     each load it; the first to finish fills the cache), and answers
 *     from memory after that. Rows changed by /updates later are not seen
 *     by the cache: that is what the benchmark's cached test measures.
 *
 * TECHEMPOWER_ONE_SYNC=1 (for measurement only, outside the rules) sends
 * the N reads of /queries with one sync at the end instead of one each:
 * what pgbench's \startpipeline ... \endpipeline sends, so the two can be
 * compared statement for statement (bench/db). */
#define EVICORN_PLUGIN_MIN_ABI_MINOR 3

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <evicorn/pg.h>
#include <evicorn/sdk.h>

#define WORLD_ROWS  10000
#define MAX_QUERIES 500

#define LIT(s) s, sizeof(s) - 1

static const evicorn_header json_headers[] = {{LIT("content-type"), LIT("application/json")}};
static const evicorn_header html_headers[] = {
    {LIT("content-type"), LIT("text/html; charset=utf-8")}};

struct te {
    evicorn_pg_pool *pool;
    unsigned queries_flags; /* EVICORN_PG_ATOMIC with TECHEMPOWER_ONE_SYNC */
    int *cache;             /* randomnumber by id (index 0 unused); NULL until loaded */
};

/* ---- random numbers: xorshift64*, one state per worker (loop thread only) */

static uint64_t rng_state;

static void rng_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    rng_state = seed ? seed : 0x9e3779b97f4a7c15ull;
}

/* 1..WORLD_ROWS */
static int random_row(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (int)((rng_state * 0x2545f4914f6cdd1dull >> 33) % WORLD_ROWS) + 1;
}

/* ---- the queries and count parameters ---- */

/* The benchmark's clamp: absent, not an integer or < 1 gives 1; > 500
 * gives 500. */
static int query_count(evicorn_request *req, const char *name)
{
    char *s = evicorn_query_str(req, name, NULL, NULL);
    if (!s)
        return 1;
    const char *p = s;
    int negative = 0;
    if (*p == '+' || *p == '-')
        negative = *p++ == '-';
    long n = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++)
        if (n <= MAX_QUERIES)
            n = n * 10 + (*p - '0');
    int valid = digits > 0 && *p == '\0';
    free(s);
    if (!valid || negative || n < 1)
        return 1;
    return n > MAX_QUERIES ? MAX_QUERIES : (int)n;
}

/* ---- answers ---- */

static void respond_json_buf(evicorn_request *req, evicorn_buf *b)
{
    if (b->failed)
        evicorn_respond_error(req, 500, NULL);
    else
        evicorn_respond(req, 200, json_headers, 1, b->data, b->len);
    evicorn_buf_free(b);
}

static void append_world(evicorn_buf *b, int id, int number)
{
    evicorn_buf_printf(b, "{\"id\":%d,\"randomNumber\":%d}", id, number);
}

/* The row of a one-row result: 0, or -1 (then the request got a 500). */
static int world_row(evicorn_request *req, const PGresult *res, int *id, int *number)
{
    int64_t a, b;
    if (PQntuples(res) != 1 || evicorn_pg_get_int(res, 0, 0, &a) != 0 ||
        evicorn_pg_get_int(res, 0, 1, &b) != 0) {
        evicorn_respond_error(req, 500, "world row not found");
        return -1;
    }
    *id = (int)a;
    *number = (int)b;
    return 0;
}

/* The status of a failed evicorn_pg_run call (fn will not run). */
static void respond_run_error(evicorn_request *req, int rc)
{
    evicorn_respond_error(req, rc == EVICORN_ENOMEM ? 500 : 503, NULL);
}

/* ---- N reads of world in one pipeline: shared by /db, /queries, /updates */

struct reads {
    int n;
    int single; /* /db: an object, not an array */
    int ids[MAX_QUERIES];
    char text[MAX_QUERIES][8];
    const char *values[MAX_QUERIES];
    evicorn_pg_query queries[MAX_QUERIES];
};

/* n reads of random rows; distinct: no id twice (for /updates). */
static struct reads *reads_new(int n, int distinct)
{
    struct reads *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->n = n;
    for (int i = 0; i < n; i++) {
        int id;
    again:
        id = random_row();
        if (distinct)
            for (int j = 0; j < i; j++)
                if (r->ids[j] == id)
                    goto again;
        r->ids[i] = id;
        snprintf(r->text[i], sizeof r->text[i], "%d", id);
        r->values[i] = r->text[i];
        r->queries[i] =
            (evicorn_pg_query){.prepared = "world", .nparams = 1, .values = &r->values[i]};
    }
    return r;
}

static void got_reads(evicorn_request *req, void *ud, const evicorn_pg_reply *reply)
{
    struct reads *r = ud;
    if (reply->status != 0) {
        evicorn_pg_respond_error(req, reply);
        free(r);
        return;
    }
    evicorn_buf b = EVICORN_BUF_INIT;
    if (!r->single)
        evicorn_buf_append(&b, "[", 1);
    for (int i = 0; i < r->n; i++) {
        int id, number;
        if (world_row(req, reply->results[i], &id, &number) < 0) {
            evicorn_buf_free(&b);
            free(r);
            return;
        }
        if (i > 0)
            evicorn_buf_append(&b, ",", 1);
        append_world(&b, id, number);
    }
    if (!r->single)
        evicorn_buf_append(&b, "]", 1);
    free(r);
    respond_json_buf(req, &b);
}

static void run_reads(evicorn_request *req, int n, int single)
{
    struct te *te = evicorn_state(req);
    struct reads *r = reads_new(n, 0);
    if (!r) {
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    r->single = single;
    unsigned flags = single ? 0 : te->queries_flags;
    int rc = evicorn_pg_run(req, te->pool, r->queries, (size_t)n, flags, got_reads, r);
    if (rc < 0) {
        free(r);
        respond_run_error(req, rc);
    }
}

static void db(evicorn_request *req, void *data)
{
    (void)data;
    run_reads(req, 1, 1);
}

static void queries(evicorn_request *req, void *data)
{
    (void)data;
    run_reads(req, query_count(req, "queries"), 0);
}

/* ---- /updates: the reads, then one UPDATE ---- */

struct update {
    struct reads *reads;
    evicorn_buf body; /* the answer, built before the write */
    evicorn_buf ids;  /* "{1,2,...}" in id order */
    evicorn_buf numbers;
    const char *values[2];
    evicorn_pg_query query;
};

static void update_free(struct update *u)
{
    free(u->reads);
    evicorn_buf_free(&u->body);
    evicorn_buf_free(&u->ids);
    evicorn_buf_free(&u->numbers);
    free(u);
}

static void updated(evicorn_request *req, void *ud, const evicorn_pg_reply *reply)
{
    struct update *u = ud;
    if (reply->status != 0)
        evicorn_pg_respond_error(req, reply);
    else
        evicorn_respond(req, 200, json_headers, 1, u->body.data, u->body.len);
    update_free(u);
}

struct pair {
    int id, number;
};

static int by_id(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static void got_update_reads(evicorn_request *req, void *ud, const evicorn_pg_reply *reply)
{
    struct update *u = ud;
    struct reads *r = u->reads;
    if (reply->status != 0) {
        evicorn_pg_respond_error(req, reply);
        update_free(u);
        return;
    }
    struct pair rows[MAX_QUERIES];
    evicorn_buf_append(&u->body, "[", 1);
    for (int i = 0; i < r->n; i++) {
        int id, old;
        if (world_row(req, reply->results[i], &id, &old) < 0) {
            update_free(u);
            return;
        }
        int number;
        do
            number = random_row();
        while (number == old);
        rows[i] = (struct pair){id, number};
        if (i > 0)
            evicorn_buf_append(&u->body, ",", 1);
        append_world(&u->body, id, number);
    }
    evicorn_buf_append(&u->body, "]", 1);

    qsort(rows, (size_t)r->n, sizeof rows[0], by_id);
    evicorn_buf_append(&u->ids, "{", 1);
    evicorn_buf_append(&u->numbers, "{", 1);
    for (int i = 0; i < r->n; i++) {
        evicorn_buf_printf(&u->ids, i ? ",%d" : "%d", rows[i].id);
        evicorn_buf_printf(&u->numbers, i ? ",%d" : "%d", rows[i].number);
    }
    evicorn_buf_append(&u->ids, "}", 1);
    evicorn_buf_append(&u->numbers, "}", 1);
    if (u->body.failed || u->ids.failed || u->numbers.failed) {
        evicorn_respond_error(req, 500, NULL);
        update_free(u);
        return;
    }
    u->values[0] = u->ids.data;
    u->values[1] = u->numbers.data;
    u->query = (evicorn_pg_query){.prepared = "update", .nparams = 2, .values = u->values};
    struct te *te = evicorn_state(req);
    int rc = evicorn_pg_run(req, te->pool, &u->query, 1, 0, updated, u);
    if (rc < 0) {
        update_free(u);
        respond_run_error(req, rc);
    }
}

static void updates(evicorn_request *req, void *data)
{
    (void)data;
    struct te *te = evicorn_state(req);
    int n = query_count(req, "queries");
    struct update *u = calloc(1, sizeof *u);
    if (!u || !(u->reads = reads_new(n, 1))) {
        free(u);
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    int rc = evicorn_pg_run(req, te->pool, u->reads->queries, (size_t)n, 0, got_update_reads, u);
    if (rc < 0) {
        update_free(u);
        respond_run_error(req, rc);
    }
}

/* ---- /fortunes ---- */

struct fortune {
    int id;
    const char *message;
    size_t len;
};

static int by_message(const void *a, const void *b)
{
    const struct fortune *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->message, y->message, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Appends s HTML-escaped: & < > " ' become entities. */
static void append_escaped(evicorn_buf *b, const char *s, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        const char *entity;
        switch (s[i]) {
        case '&':
            entity = "&amp;";
            break;
        case '<':
            entity = "&lt;";
            break;
        case '>':
            entity = "&gt;";
            break;
        case '"':
            entity = "&quot;";
            break;
        case '\'':
            entity = "&#39;";
            break;
        default:
            continue;
        }
        evicorn_buf_append(b, s + start, i - start);
        evicorn_buf_puts(b, entity);
        start = i + 1;
    }
    evicorn_buf_append(b, s + start, len - start);
}

static const char added_fortune[] = "Additional fortune added at request time.";

static void got_fortunes(evicorn_request *req, void *ud, const evicorn_pg_reply *reply)
{
    (void)ud;
    if (reply->status != 0) {
        evicorn_pg_respond_error(req, reply);
        return;
    }
    const PGresult *res = reply->results[0];
    int rows = PQntuples(res);
    struct fortune *f = malloc(((size_t)rows + 1) * sizeof *f);
    if (!f) {
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    int n = 0;
    for (int i = 0; i < rows; i++) {
        int64_t id;
        if (evicorn_pg_get_int(res, i, 0, &id) != 0)
            continue;
        f[n].id = (int)id;
        f[n].message = PQgetvalue(res, i, 1);
        f[n].len = (size_t)PQgetlength(res, i, 1);
        n++;
    }
    f[n++] = (struct fortune){0, added_fortune, sizeof added_fortune - 1};
    qsort(f, (size_t)n, sizeof *f, by_message);

    evicorn_buf b = EVICORN_BUF_INIT;
    evicorn_buf_puts(&b, "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
                         "<tr><th>id</th><th>message</th></tr>");
    for (int i = 0; i < n; i++) {
        evicorn_buf_printf(&b, "<tr><td>%d</td><td>", f[i].id);
        append_escaped(&b, f[i].message, f[i].len);
        evicorn_buf_puts(&b, "</td></tr>");
    }
    evicorn_buf_puts(&b, "</table></body></html>");
    free(f);
    if (b.failed)
        evicorn_respond_error(req, 500, NULL);
    else
        evicorn_respond(req, 200, html_headers, 1, b.data, b.len);
    evicorn_buf_free(&b);
}

static void fortunes(evicorn_request *req, void *data)
{
    (void)data;
    struct te *te = evicorn_state(req);
    static const evicorn_pg_query q = {.prepared = "fortunes"};
    int rc = evicorn_pg_run(req, te->pool, &q, 1, 0, got_fortunes, NULL);
    if (rc < 0)
        respond_run_error(req, rc);
}

/* ---- /cached-queries ---- */

static void answer_cached(evicorn_request *req, const int *cache, int n)
{
    evicorn_buf b = EVICORN_BUF_INIT;
    evicorn_buf_append(&b, "[", 1);
    for (int i = 0; i < n; i++) {
        int id = random_row();
        if (i > 0)
            evicorn_buf_append(&b, ",", 1);
        append_world(&b, id, cache[id]);
    }
    evicorn_buf_append(&b, "]", 1);
    respond_json_buf(req, &b);
}

static void got_table(evicorn_request *req, void *ud, const evicorn_pg_reply *reply)
{
    int n = (int)(intptr_t)ud;
    struct te *te = evicorn_state(req);
    if (reply->status != 0) {
        evicorn_pg_respond_error(req, reply);
        return;
    }
    if (!te->cache) {
        const PGresult *res = reply->results[0];
        int *cache = calloc(WORLD_ROWS + 1, sizeof *cache);
        if (!cache) {
            evicorn_respond_error(req, 500, NULL);
            return;
        }
        for (int i = 0; i < PQntuples(res); i++) {
            int64_t id, number;
            if (evicorn_pg_get_int(res, i, 0, &id) == 0 &&
                evicorn_pg_get_int(res, i, 1, &number) == 0 && id >= 1 && id <= WORLD_ROWS)
                cache[id] = (int)number;
        }
        te->cache = cache;
    }
    answer_cached(req, te->cache, n);
}

static void cached_queries(evicorn_request *req, void *data)
{
    (void)data;
    struct te *te = evicorn_state(req);
    int n = query_count(req, "count");
    if (te->cache) {
        answer_cached(req, te->cache, n);
        return;
    }
    static const evicorn_pg_query q = {.prepared = "world_all"};
    int rc = evicorn_pg_run(req, te->pool, &q, 1, 0, got_table, (void *)(intptr_t)n);
    if (rc < 0)
        respond_run_error(req, rc);
}

/* ---- lifespan ---- */

static int plugin_startup(void **state, char *err, size_t errlen)
{
    struct te *te = calloc(1, sizeof *te);
    if (!te) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    evicorn_pg_options opts = {.size = sizeof opts};
    int rc = evicorn_pg_pool_new(&opts, &te->pool, err, errlen);
    if (rc == EVICORN_ENOENT) /* no database: say what else to do */
        snprintf(err + strlen(err), errlen - strlen(err), ", and %s with scripts/db-load",
                 "load the tables");
    if (rc != 0) {
        free(te);
        return -1;
    }
    static const struct {
        const char *name, *sql;
        int nparams;
    } statements[] = {
        {"world", "SELECT id, randomnumber FROM world WHERE id = $1", 1},
        {"world_all", "SELECT id, randomnumber FROM world", 0},
        {"fortunes", "SELECT id, message FROM fortune", 0},
        {"update",
         "UPDATE world SET randomnumber = v.r FROM "
         "(SELECT unnest($1::int[]) AS id, unnest($2::int[]) AS r) AS v WHERE world.id = v.id",
         2},
    };
    for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
        rc = evicorn_pg_prepare(te->pool, statements[i].name, statements[i].sql,
                                statements[i].nparams);
        if (rc != 0) {
            snprintf(err, errlen, "cannot register statement %s (%d)", statements[i].name, rc);
            evicorn_pg_pool_free(te->pool);
            free(te);
            return -1;
        }
    }
    const char *one_sync = getenv("TECHEMPOWER_ONE_SYNC");
    if (one_sync && strcmp(one_sync, "1") == 0) {
        te->queries_flags = EVICORN_PG_ATOMIC;
        evicorn_log(NULL, 2,
                    "TECHEMPOWER_ONE_SYNC=1: /queries sends one sync per request, "
                    "outside the benchmark's rules (for measurement only)");
    }
    rng_seed();
    *state = te;
    return 0;
}

static void plugin_shutdown(void *state)
{
    struct te *te = state;
    evicorn_pg_pool_free(te->pool);
    free(te->cache);
    free(te);
}

static const evicorn_route routes[] = {
    EVICORN_GET("/db", db),
    EVICORN_GET("/queries", queries),
    EVICORN_GET("/fortunes", fortunes),
    EVICORN_GET("/updates", updates),
    EVICORN_GET("/cached-queries", cached_queries),
};

EVICORN_PLUGIN("techempower", "1.0.0", routes, plugin_startup, plugin_shutdown)
