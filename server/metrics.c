/* metrics: shared counters and the Prometheus exposition; see metrics.h. */
#include "metrics.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "log.h"

#define ROUTE_NAME_MAX 128
/* Slots per worker: room for a replacement beside each worker (--reload,
 * SIGHUP) and for one more generation of stale candidates. */
#define SLOTS_PER_WORKER 3
#define SLOTS_EXTRA      2

enum method {
    M_GET,
    M_HEAD,
    M_POST,
    M_PUT,
    M_DELETE,
    M_PATCH,
    M_OPTIONS,
    M_CONNECT,
    M_TRACE,
    M_OTHER,
    METHODS
};
static const char *const method_names[METHODS] = {"GET",   "HEAD",    "POST",    "PUT",   "DELETE",
                                                  "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER"};

/* Status classes 1xx..5xx. */
#define CLASSES 5

/* The histogram's upper bounds: Prometheus clients' defaults (5 ms to
 * 10 s), with 1 ms and 2.5 ms below them, since most requests here take
 * less than 5 ms. */
#define BUCKETS 13
static const uint64_t bucket_ns[BUCKETS] = {
    1000000,   2500000,   5000000,    10000000,   25000000,   50000000,   100000000,
    250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000};
static const char *const bucket_le[BUCKETS] = {"0.001", "0.0025", "0.005", "0.01", "0.025",
                                               "0.05",  "0.1",    "0.25",  "0.5",  "1",
                                               "2.5",   "5",      "10"};

static const char *const restart_causes[METRICS_RESTART_CAUSES] = {
    "crash", "watchdog", "healthcheck", "max_requests", "exited", "reload", "sighup"};
static const char *const client_reasons[METRICS_CLIENT_ERRORS] = {"bad_request", "limits",
                                                                  "timeout"};

typedef _Atomic uint64_t counter;
typedef _Atomic int64_t gauge;

struct route_series {
    counter requests[METHODS][CLASSES];
    counter buckets[BUCKETS + 1]; /* not cumulative; the last is above 10 s */
    counter sum_ns;
};

struct mslot {
    _Atomic uint32_t nroutes; /* names below it are written and never change */
    char names[METRICS_ROUTES_MAX][ROUTE_NAME_MAX];
    struct route_series routes[METRICS_ROUTES_MAX];
    counter received, sent, conns_total, plugin_loads, plugin_refusals;
    counter client_errors[METRICS_CLIENT_ERRORS];
    gauge conns_open, websockets_open, in_flight, pool_busy, pool_queued, plugin_generations;
};

struct region {
    atomic_int stopping;
    atomic_int workers_ready;
    counter restarts[METRICS_RESTART_CAUSES];
    struct mslot slots[];
};

static struct region *region;
static int nslots;
/* The master's: which process holds each slot (0: free). */
static pid_t *holders;
/* This process's slot, or NULL. */
static struct mslot *self;

/* A worker's private index of its slot's names, so finding a route's id
 * costs a hash and one comparison. */
#define INDEX_SIZE 256
static struct {
    uint32_t hash;
    uint16_t id;
    bool used;
} route_index[INDEX_SIZE];
static unsigned route_indexed;

/* Single writer: a load and a store, no locked instruction. */
static inline void add(counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void gauge_add(gauge *g, int64_t n)
{
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint64_t get(counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- the master ---- */

int metrics_create(int nworkers)
{
    int n = nworkers * SLOTS_PER_WORKER + SLOTS_EXTRA;
    size_t len = sizeof(struct region) + sizeof(struct mslot) * (size_t)n;
    holders = calloc((size_t)n, sizeof *holders);
    if (!holders)
        return -1;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        int err = errno;
        free(holders);
        holders = NULL;
        errno = err;
        return -1;
    }
    region = p; /* zero-filled: every counter 0, every slot free */
    nslots = n;
    return 0;
}

int metrics_claim(void)
{
    if (!region)
        return -1;
    /* The lowest free slot: workers keep landing in the slots earlier ones
     * used, which keeps the set of touched slots small. */
    for (int i = 0; i < nslots; i++)
        if (holders[i] == 0) {
            holders[i] = -1; /* claimed, not yet bound */
            return i;
        }
    return -1;
}

void metrics_bind(int slot, pid_t pid)
{
    if (region && slot >= 0 && slot < nslots)
        holders[slot] = pid;
}

void metrics_unclaim(int slot)
{
    if (region && slot >= 0 && slot < nslots)
        holders[slot] = 0;
}

void metrics_release(pid_t pid)
{
    if (!region)
        return;
    for (int i = 0; i < nslots; i++) {
        if (holders[i] != pid)
            continue;
        /* Dead: what it had open is gone with it. */
        struct mslot *s = &region->slots[i];
        atomic_store(&s->conns_open, 0);
        atomic_store(&s->websockets_open, 0);
        atomic_store(&s->in_flight, 0);
        atomic_store(&s->pool_busy, 0);
        atomic_store(&s->pool_queued, 0);
        atomic_store(&s->plugin_generations, 0);
        holders[i] = 0;
        return;
    }
}

void metrics_count_restart(enum metrics_restart_cause cause)
{
    if (region && cause < METRICS_RESTART_CAUSES)
        add(&region->restarts[cause], 1);
}

void metrics_set_workers_ready(int n)
{
    if (region)
        atomic_store(&region->workers_ready, n);
}

void metrics_set_stopping(void)
{
    if (region)
        atomic_store(&region->stopping, 1);
}

/* ---- a worker ---- */

static uint32_t hash_name(const char *s, size_t *len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    const char *p = s;
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    *len = (size_t)(p - s);
    return h;
}

static void index_add(uint32_t h, uint16_t id)
{
    if (route_indexed >= INDEX_SIZE * 3 / 4)
        return; /* found by the scan from then on */
    unsigned i = h % INDEX_SIZE;
    while (route_index[i].used)
        i = (i + 1) % INDEX_SIZE;
    route_index[i].hash = h;
    route_index[i].id = id;
    route_index[i].used = true;
    route_indexed++;
}

/* The slot's id for name, appending it when there is room. */
static uint16_t slot_route(const char *name, size_t len)
{
    uint32_t n = atomic_load_explicit(&self->nroutes, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(self->names[i], name) == 0)
            return (uint16_t)i;
    if (n >= METRICS_ROUTES_MAX)
        return METRICS_ROUTE_OTHER;
    memcpy(self->names[n], name, len + 1);
    atomic_store_explicit(&self->nroutes, n + 1, memory_order_release);
    return (uint16_t)n;
}

uint16_t metrics_route(const char *name)
{
    if (!self)
        return METRICS_ROUTE_REJECTED;
    size_t len;
    uint32_t h = hash_name(name, &len);
    if (len >= ROUTE_NAME_MAX)
        return METRICS_ROUTE_OTHER;
    for (unsigned i = h % INDEX_SIZE; route_index[i].used; i = (i + 1) % INDEX_SIZE)
        if (route_index[i].hash == h && strcmp(self->names[route_index[i].id], name) == 0)
            return route_index[i].id;
    uint16_t id = slot_route(name, len);
    if (id != METRICS_ROUTE_OTHER || strcmp(name, "<other>") == 0)
        index_add(h, id);
    return id;
}

void metrics_attach(int slot)
{
    self = region && slot >= 0 && slot < nslots ? &region->slots[slot] : NULL;
    free(holders); /* the master's bookkeeping */
    holders = NULL;
    memset(route_index, 0, sizeof route_index);
    route_indexed = 0;
    if (!self)
        return;
    /* A fresh slot gets them in this order; a reused one has them. */
    metrics_route("<rejected>");
    metrics_route("<unmatched>");
    metrics_route("<other>");
}

bool metrics_instance_healthy(bool self_serving)
{
    if (!region)
        return self_serving;
    if (atomic_load(&region->stopping))
        return false;
    return self_serving || atomic_load(&region->workers_ready) > 0;
}

int metrics_workers_ready(void)
{
    return region ? atomic_load(&region->workers_ready) : 0;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void metrics_request_dispatched(uint64_t *start_ns)
{
    if (!self) {
        *start_ns = 0;
        return;
    }
    *start_ns = now_ns();
    gauge_add(&self->in_flight, 1);
}

void metrics_request_finished(void)
{
    if (self)
        gauge_add(&self->in_flight, -1);
}

static enum method method_of(const char *m, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
    } known[M_OTHER] = {{"GET", 3},   {"HEAD", 4},    {"POST", 4},    {"PUT", 3},  {"DELETE", 6},
                        {"PATCH", 5}, {"OPTIONS", 7}, {"CONNECT", 7}, {"TRACE", 5}};
    if (!m)
        return M_OTHER;
    for (int i = 0; i < M_OTHER; i++)
        if (known[i].len == len && memcmp(known[i].name, m, len) == 0)
            return (enum method)i;
    return M_OTHER;
}

void metrics_request_done(uint16_t route, const char *method, size_t method_len, int status,
                          uint64_t start_ns)
{
    if (!self)
        return;
    if (route >= METRICS_ROUTES_MAX)
        route = METRICS_ROUTE_OTHER;
    int cls = status / 100 - 1;
    if (cls < 0 || cls >= CLASSES)
        cls = CLASSES - 1;
    struct route_series *rs = &self->routes[route];
    add(&rs->requests[method_of(method, method_len)][cls], 1);
    if (start_ns == 0)
        return; /* never dispatched: no handler time to speak of */
    uint64_t took = now_ns() - start_ns;
    int b = 0;
    while (b < BUCKETS && took > bucket_ns[b])
        b++;
    add(&rs->buckets[b], 1);
    add(&rs->sum_ns, took);
}

void metrics_conn_opened(void)
{
    if (self) {
        add(&self->conns_total, 1);
        gauge_add(&self->conns_open, 1);
    }
}

void metrics_conn_closed(void)
{
    if (self)
        gauge_add(&self->conns_open, -1);
}

void metrics_bytes_received(uint64_t n)
{
    if (self)
        add(&self->received, n);
}

void metrics_bytes_sent(uint64_t n)
{
    if (self)
        add(&self->sent, n);
}

void metrics_websocket_opened(void)
{
    if (self)
        gauge_add(&self->websockets_open, 1);
}

void metrics_websocket_closed(void)
{
    if (self)
        gauge_add(&self->websockets_open, -1);
}

void metrics_client_error(enum metrics_client_error reason)
{
    if (self && reason < METRICS_CLIENT_ERRORS)
        add(&self->client_errors[reason], 1);
}

void metrics_pool_state(unsigned busy, unsigned queued)
{
    if (self) {
        atomic_store_explicit(&self->pool_busy, busy, memory_order_relaxed);
        atomic_store_explicit(&self->pool_queued, queued, memory_order_relaxed);
    }
}

void metrics_plugin_loaded(void)
{
    if (self)
        add(&self->plugin_loads, 1);
}

void metrics_plugin_refused(void)
{
    if (self)
        add(&self->plugin_refusals, 1);
}

void metrics_plugin_generations(unsigned n)
{
    if (self)
        atomic_store_explicit(&self->plugin_generations, n, memory_order_relaxed);
}

/* ---- the exposition ---- */

/* One route's series summed over the slots, by name. */
struct merged {
    const char *name; /* in the region: names never change once published */
    uint64_t requests[METHODS][CLASSES];
    uint64_t buckets[BUCKETS + 1];
    uint64_t sum_ns;
};

/* More distinct names than this over all slots (each slot has at most
 * METRICS_ROUTES_MAX) are summed into <other>. */
#define MERGED_MAX 1024

struct merge {
    struct merged *m;
    size_t n;
    int16_t index[MERGED_MAX * 2]; /* -1: empty */
};

static struct merged *merged_for(struct merge *g, const char *name)
{
    size_t len;
    uint32_t h = hash_name(name, &len);
    size_t i = h % (MERGED_MAX * 2);
    for (; g->index[i] >= 0; i = (i + 1) % (MERGED_MAX * 2))
        if (strcmp(g->m[g->index[i]].name, name) == 0)
            return &g->m[g->index[i]];
    if (g->n == MERGED_MAX)
        return strcmp(name, "<other>") == 0 ? NULL : merged_for(g, "<other>");
    g->index[i] = (int16_t)g->n;
    g->m[g->n].name = name;
    return &g->m[g->n++];
}

static void merge_slot(struct merge *g, struct mslot *s)
{
    uint32_t n = atomic_load_explicit(&s->nroutes, memory_order_acquire);
    for (uint32_t r = 0; r < n && r < METRICS_ROUTES_MAX; r++) {
        struct route_series *rs = &s->routes[r];
        uint64_t total = get(&rs->sum_ns);
        for (int b = 0; b <= BUCKETS; b++)
            total |= get(&rs->buckets[b]);
        for (int m = 0; m < METHODS; m++)
            for (int c = 0; c < CLASSES; c++)
                total |= get(&rs->requests[m][c]);
        if (!total)
            continue;
        struct merged *d = merged_for(g, s->names[r]);
        if (!d)
            continue;
        for (int m = 0; m < METHODS; m++)
            for (int c = 0; c < CLASSES; c++)
                d->requests[m][c] += get(&rs->requests[m][c]);
        for (int b = 0; b <= BUCKETS; b++)
            d->buckets[b] += get(&rs->buckets[b]);
        d->sum_ns += get(&rs->sum_ns);
    }
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct merged *)a)->name, ((const struct merged *)b)->name);
}

/* A label value, escaped as the text format wants. */
static int append_label(struct buf *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        if (esc ? buf_append_str(b, esc) < 0 : buf_append(b, p, 1) < 0)
            return -1;
    }
    return 0;
}

static int append_head(struct buf *b, const char *name, const char *type, const char *help)
{
    char line[512];
    snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    return buf_append_str(b, line);
}

static int append_value(struct buf *b, const char *name, const char *help, const char *type,
                        int64_t v)
{
    char line[96];
    snprintf(line, sizeof line, "%s %lld\n", name, (long long)v);
    return append_head(b, name, type, help) < 0 || buf_append_str(b, line) < 0 ? -1 : 0;
}

struct totals {
    uint64_t received, sent, conns_total, plugin_loads, plugin_refusals;
    uint64_t client_errors[METRICS_CLIENT_ERRORS];
    int64_t conns_open, websockets_open, in_flight, pool_busy, pool_queued, plugin_generations;
};

static void sum_slot(struct totals *t, struct mslot *s)
{
    t->received += get(&s->received);
    t->sent += get(&s->sent);
    t->conns_total += get(&s->conns_total);
    t->plugin_loads += get(&s->plugin_loads);
    t->plugin_refusals += get(&s->plugin_refusals);
    for (int i = 0; i < METRICS_CLIENT_ERRORS; i++)
        t->client_errors[i] += get(&s->client_errors[i]);
    t->conns_open += atomic_load_explicit(&s->conns_open, memory_order_relaxed);
    t->websockets_open += atomic_load_explicit(&s->websockets_open, memory_order_relaxed);
    t->in_flight += atomic_load_explicit(&s->in_flight, memory_order_relaxed);
    t->pool_busy += atomic_load_explicit(&s->pool_busy, memory_order_relaxed);
    t->pool_queued += atomic_load_explicit(&s->pool_queued, memory_order_relaxed);
    t->plugin_generations += atomic_load_explicit(&s->plugin_generations, memory_order_relaxed);
}

static int render_requests(struct buf *b, const struct merge *g)
{
    if (append_head(b, "evicorn_http_requests_total", "counter",
                    "HTTP responses sent, by route template, method and status class.") < 0)
        return -1;
    for (size_t i = 0; i < g->n; i++)
        for (int m = 0; m < METHODS; m++)
            for (int c = 0; c < CLASSES; c++) {
                uint64_t v = g->m[i].requests[m][c];
                if (!v)
                    continue;
                char tail[96];
                snprintf(tail, sizeof tail, "\",method=\"%s\",status=\"%dxx\"} %llu\n",
                         method_names[m], c + 1, (unsigned long long)v);
                if (buf_append_str(b, "evicorn_http_requests_total{route=\"") < 0 ||
                    append_label(b, g->m[i].name) < 0 || buf_append_str(b, tail) < 0)
                    return -1;
            }
    return 0;
}

static int render_durations(struct buf *b, const struct merge *g)
{
    static const char name[] = "evicorn_http_request_duration_seconds";
    if (append_head(b, name, "histogram",
                    "Time from dispatch to the last byte of the response handed to the "
                    "connection, by route template.") < 0)
        return -1;
    for (size_t i = 0; i < g->n; i++) {
        const struct merged *d = &g->m[i];
        uint64_t cum = 0;
        for (int k = 0; k <= BUCKETS; k++)
            cum += d->buckets[k];
        if (!cum)
            continue;
        char tail[128];
        cum = 0;
        for (int k = 0; k <= BUCKETS; k++) {
            cum += d->buckets[k];
            snprintf(tail, sizeof tail, "\",le=\"%s\"} %llu\n", k < BUCKETS ? bucket_le[k] : "+Inf",
                     (unsigned long long)cum);
            if (buf_append_str(b, name) < 0 || buf_append_str(b, "_bucket{route=\"") < 0 ||
                append_label(b, d->name) < 0 || buf_append_str(b, tail) < 0)
                return -1;
        }
        snprintf(tail, sizeof tail, "\"} %.9f\n", (double)d->sum_ns / 1e9);
        if (buf_append_str(b, name) < 0 || buf_append_str(b, "_sum{route=\"") < 0 ||
            append_label(b, d->name) < 0 || buf_append_str(b, tail) < 0)
            return -1;
        snprintf(tail, sizeof tail, "\"} %llu\n", (unsigned long long)cum);
        if (buf_append_str(b, name) < 0 || buf_append_str(b, "_count{route=\"") < 0 ||
            append_label(b, d->name) < 0 || buf_append_str(b, tail) < 0)
            return -1;
    }
    return 0;
}

static int render_labelled(struct buf *b, const char *name, const char *help, const char *label,
                           const char *const *values, const uint64_t *counts, int n)
{
    if (append_head(b, name, "counter", help) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        char line[256];
        snprintf(line, sizeof line, "%s{%s=\"%s\"} %llu\n", name, label, values[i],
                 (unsigned long long)counts[i]);
        if (buf_append_str(b, line) < 0)
            return -1;
    }
    return 0;
}

static int render_totals(struct buf *b, const struct totals *t)
{
    uint64_t restarts[METRICS_RESTART_CAUSES];
    for (int i = 0; i < METRICS_RESTART_CAUSES; i++)
        restarts[i] = get(&region->restarts[i]);
    if (append_value(b, "evicorn_http_requests_in_flight", "Requests dispatched and not finished.",
                     "gauge", t->in_flight) < 0 ||
        append_value(b, "evicorn_connections_open", "Client connections open.", "gauge",
                     t->conns_open) < 0 ||
        append_value(b, "evicorn_connections_total", "Client connections accepted.", "counter",
                     (int64_t)t->conns_total) < 0 ||
        append_value(b, "evicorn_websocket_connections_open", "WebSocket connections open.",
                     "gauge", t->websockets_open) < 0 ||
        append_value(b, "evicorn_http_received_bytes_total", "Bytes read from client connections.",
                     "counter", (int64_t)t->received) < 0 ||
        append_value(b, "evicorn_http_sent_bytes_total",
                     "Bytes written to client connections, files included.", "counter",
                     (int64_t)t->sent) < 0 ||
        render_labelled(b, "evicorn_http_client_errors_total",
                        "Requests the server itself refused or closed, by reason.", "reason",
                        client_reasons, t->client_errors, METRICS_CLIENT_ERRORS) < 0 ||
        append_value(b, "evicorn_threadpool_busy_threads", "Pool threads running a job.", "gauge",
                     t->pool_busy) < 0 ||
        append_value(b, "evicorn_threadpool_queued_tasks", "Jobs waiting for a pool thread.",
                     "gauge", t->pool_queued) < 0 ||
        append_value(b, "evicorn_plugin_loads_total",
                     "Plugin generations loaded, counted in every worker.", "counter",
                     (int64_t)t->plugin_loads) < 0 ||
        append_value(b, "evicorn_plugin_refusals_total",
                     "Plugin files refused, counted in every worker.", "counter",
                     (int64_t)t->plugin_refusals) < 0 ||
        append_value(b, "evicorn_plugin_generations",
                     "Plugin generations mapped (active and draining), summed over workers.",
                     "gauge", t->plugin_generations) < 0 ||
        render_labelled(b, "evicorn_worker_restarts_total", "Workers replaced, by cause.", "cause",
                        restart_causes, restarts, METRICS_RESTART_CAUSES) < 0 ||
        append_value(b, "evicorn_workers_ready", "Workers serving.", "gauge",
                     atomic_load(&region->workers_ready)) < 0 ||
        append_head(b, "evicorn_info", "gauge", "The server's version.") < 0 ||
        buf_append_str(b, "evicorn_info{version=\"" EVICORN_VERSION "\"} 1\n") < 0)
        return -1;
    return 0;
}

int metrics_render(struct buf *out)
{
    if (!region)
        return buf_append_str(out, "# no metrics: shared memory is unavailable\n");
    struct merge *g = malloc(sizeof *g);
    if (!g)
        return -1;
    g->m = calloc(MERGED_MAX, sizeof *g->m);
    if (!g->m) {
        free(g);
        return -1;
    }
    g->n = 0;
    memset(g->index, 0xff, sizeof g->index);
    struct totals t = {0};
    for (int i = 0; i < nslots; i++) {
        merge_slot(g, &region->slots[i]);
        sum_slot(&t, &region->slots[i]);
    }
    qsort(g->m, g->n, sizeof *g->m, by_name);
    int rc =
        render_requests(out, g) < 0 || render_durations(out, g) < 0 || render_totals(out, &t) < 0
            ? -1
            : 0;
    free(g->m);
    free(g);
    return rc;
}
