/* plugins: loading, replacing and unloading plugin generations; see
 * plugins.h for the model.
 *
 * Every step that can fail happens before the swap: copy and validate the
 * file, dlopen the copy, negotiate the ABI, check the routes against every
 * other plugin's, run startup. Only then do the new routes replace the old
 * ones, in one pointer assignment. A refusal is one log line naming the
 * file and the reason. */
#include "plugins.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host_api.h"
#include "log.h"
#include "plugin_file.h"
#include "plugin_watch.h"
#include "router.h"
#include "scoreboard.h"
#include "worker.h"

/* How long a replaced generation may take to drain before we say so. It
 * stays mapped either way: unmapping code that may still run would crash. */
#define DRAIN_WARN_SECONDS 30.0
/* A file still being written is retried this often, this many times. */
#define RETRY_SECONDS       0.1
#define RETRY_MAX           100
#define MAX_RETRIES_PENDING 64

struct generation {
    struct generation *next;
    char *file; /* name in the plugins folder, e.g. "hello.so" */
    char *path; /* where it was loaded from, for messages */
    void *dl;
    evicorn_plugin desc; /* zero-extended copy of the plugin's descriptor */
    struct route_entry *routes;
    size_t nroutes;
    void *state;
    unsigned refs;
    unsigned id;
    long inflight;
    bool retired;
    bool watched; /* by the watchdog: every plugin but the ASGI bridge */
    ev_timer drain_timer;
    ev_tstamp retired_at;
    char copy[PATH_MAX]; /* the private copy that was mapped */
};

struct retry {
    char name[256];
    int tries;
};

static struct {
    struct worker *w;
    struct generation *active;
    struct generation *retired;
    struct route_table *table;
    struct plugin_watch *watch;
    unsigned next_id;
    struct retry retries[MAX_RETRIES_PENDING];
    size_t nretries;
    ev_timer retry_timer;
} P;

/* ---- route tables ---- */

struct route_table *plugins_routes(void)
{
    return P.table;
}

void route_table_retain(struct route_table *t)
{
    t->refs++;
}

void route_table_release(struct route_table *t)
{
    if (t && --t->refs == 0) {
        router_free(t->router);
        free(t);
    }
}

/* Builds a table of every active generation's routes, leaving out `skip`
 * and adding `add`. On a conflict, err names both routes. */
static struct route_table *build_table(struct generation *skip, struct generation *add, char *err,
                                       size_t errlen)
{
    struct route_table *t = calloc(1, sizeof *t);
    if (!t || !(t->router = router_new())) {
        free(t);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->refs = 1;
    for (struct generation *g = P.active;; g = g->next) {
        struct generation *cur = g ? g : add;
        if (!cur)
            break;
        if (cur != skip) {
            for (size_t i = 0; i < cur->nroutes; i++) {
                struct route_entry *re = &cur->routes[i];
                char why[512];
                if (router_add(t->router, re->method, re->path, re, why, sizeof why) < 0) {
                    snprintf(err, errlen, "%s", why);
                    route_table_release(t);
                    return NULL;
                }
            }
        }
        if (!g)
            break;
    }
    return t;
}

static void swap_table(struct route_table *t)
{
    struct route_table *old = P.table;
    P.table = t;
    route_table_release(old);
}

/* ---- generations ---- */

const char *generation_name(const struct generation *g)
{
    return g->desc.name ? g->desc.name : g->file;
}

void *generation_state(const struct generation *g)
{
    return g->state;
}

void generation_retain(struct generation *g)
{
    g->refs++;
}

void generation_request_started(struct generation *g)
{
    g->inflight++;
}

void generation_request_ended(struct generation *g)
{
    g->inflight--;
}

static void free_routes(struct generation *g)
{
    for (size_t i = 0; i < g->nroutes; i++) {
        free(g->routes[i].method);
        free(g->routes[i].path);
        free(g->routes[i].label);
    }
    free(g->routes);
    g->routes = NULL;
    g->nroutes = 0;
}

static void generation_free(struct generation *g)
{
    watchdog_sync(); /* the watchdog may be printing one of its routes */
    free_routes(g);
    free(g->file);
    free(g->path);
    free(g);
}

static void unlink_retired(struct generation *g)
{
    for (struct generation **pp = &P.retired; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            return;
        }
}

void generation_release(struct generation *g)
{
    if (--g->refs > 0)
        return;
    /* The last request, continuation and background task on this code has
     * finished: run its lifespan shutdown, then unmap it. */
    if (g->desc.shutdown) {
        char name[128];
        snprintf(name, sizeof name, "%s (%s)", generation_name(g), g->file);
        struct watch_task task = {
            .kind = WATCH_CALLBACK, .role = "shutdown of plugin", .name = name};
        const struct watch_task *prev = g->watched ? watchdog_enter(&task) : NULL;
        g->desc.shutdown(g->state);
        if (g->watched) {
            watchdog_leave(prev);
            watchdog_sync();
        }
    }
    if (g->retired && ev_is_active(&g->drain_timer)) {
        ev_ref(P.w->loop); /* balances the unref in retire() */
        ev_timer_stop(P.w->loop, &g->drain_timer);
    }
    unlink_retired(g);
    if (dlclose(g->dl) != 0)
        log_warning("plugin %s: dlclose of generation %u failed: %s", g->file, g->id, dlerror());
    else
        log_info("plugin %s: generation %u unloaded", g->file, g->id);
    generation_free(g);
}

static void on_drain_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct generation *g = t->data;
    ev_ref(loop); /* the timer stopped itself: balance retire()'s unref */
    log_warning("plugin %s: generation %u still has %ld request(s) and %u reference(s) after "
                "%.0f s; keeping it mapped",
                g->file, g->id, g->inflight, g->refs, DRAIN_WARN_SECONDS);
}

static void retire(struct generation *g)
{
    g->retired = true;
    g->retired_at = ev_now(P.w->loop);
    g->next = P.retired;
    P.retired = g;
    ev_timer_init(&g->drain_timer, on_drain_timer, DRAIN_WARN_SECONDS, 0);
    g->drain_timer.data = g;
    ev_timer_start(P.w->loop, &g->drain_timer);
    ev_unref(P.w->loop); /* a draining plugin must not keep a stopping worker alive */
    generation_release(g);
}

static struct generation **find_active(const char *file)
{
    for (struct generation **pp = &P.active; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->file, file) == 0)
            return pp;
    return NULL;
}

static bool valid_method(const char *m)
{
    if (!m || !*m)
        return false;
    if (strcmp(m, "*") == 0)
        return true;
    for (const char *p = m; *p; p++)
        if (*p < 'A' || *p > 'Z')
            return false;
    return strlen(m) <= 16;
}

/* Copies the plugin's routes into host-owned entries, validating each. */
static int copy_routes(struct generation *g, char *why, size_t whylen)
{
    const evicorn_plugin *d = &g->desc;
    if (d->nroutes > 0 && (!d->routes || d->route_size < offsetof(evicorn_route, data))) {
        snprintf(why, whylen, "route table missing or its route_size (%u) too small",
                 d->route_size);
        return -1;
    }
    if (d->nroutes > 10000) {
        snprintf(why, whylen, "too many routes (%u)", d->nroutes);
        return -1;
    }
    g->routes = calloc(d->nroutes ? d->nroutes : 1, sizeof *g->routes);
    if (!g->routes) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < d->nroutes; i++) {
        evicorn_route r = {0};
        const char *src = (const char *)d->routes + (size_t)i * d->route_size;
        size_t n = d->route_size < sizeof r ? d->route_size : sizeof r;
        memcpy(&r, src, n);
        if (!valid_method(r.method)) {
            snprintf(why, whylen, "route %u has an invalid method", i);
            return -1;
        }
        if (!r.path || r.path[0] != '/') {
            snprintf(why, whylen, "route %u (%s) has an invalid path", i, r.method);
            return -1;
        }
        if (r.kind != EVICORN_ASYNC && r.kind != EVICORN_SYNC) {
            snprintf(why, whylen, "route %s %s has an unknown kind %u", r.method, r.path, r.kind);
            return -1;
        }
        if (!r.handler) {
            snprintf(why, whylen, "route %s %s has no handler", r.method, r.path);
            return -1;
        }
        struct route_entry *re = &g->routes[g->nroutes];
        re->gen = g;
        re->kind = r.kind;
        re->handler = r.handler;
        re->data = r.data;
        re->method = strdup(r.method);
        re->path = strdup(r.path);
        size_t ll = strlen(r.method) + strlen(r.path) + strlen(g->file) + 16;
        re->label = malloc(ll);
        g->nroutes++;
        if (!re->method || !re->path || !re->label) {
            snprintf(why, whylen, "out of memory");
            return -1;
        }
        snprintf(re->label, ll, "%s %s (%s)", r.method, r.path, g->file);
        re->watch =
            (struct watch_task){.kind = WATCH_CALLBACK, .role = "async handler", .name = re->label};
    }
    /* Each pattern alone first, so a bad pattern is reported as such and
     * not as a conflict. */
    struct router *solo = router_new();
    if (!solo) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < g->nroutes; i++) {
        char err[512];
        if (router_add(solo, g->routes[i].method, g->routes[i].path, &g->routes[i], err,
                       sizeof err) < 0) {
            snprintf(why, whylen, "%s", err);
            router_free(solo);
            return -1;
        }
    }
    router_free(solo);
    return 0;
}

static void schedule_retry(const char *name, int tries);

static void plugin_log_refusal(const char *path, const char *why)
{
    log_error("plugin %s refused: %s", path, why);
}

static int file_id_of(const char *path, struct plugin_file_id *id)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    *id = (struct plugin_file_id){
        .dev = (uint64_t)st.st_dev,
        .ino = (uint64_t)st.st_ino,
        .size = (uint64_t)st.st_size,
        .mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec,
    };
    return 0;
}

static bool same_file_id(const struct plugin_file_id *a, const struct plugin_file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

/* Loads (or reloads) one plugin: name is its key (the file name in the
 * plugins folder), path where to read it. Loading and startup are
 * watched (--timeout-startup) unless `watched` is false: the ASGI bridge's
 * startup is the app's lifespan startup, which uvicorn waits for however
 * long it takes, and so do we; a hung bridge is not a file to quarantine
 * but an app that never starts. Returns 0 when it serves. */
static int load_path(const char *name, const char *path, int tries, bool watched)
{
    struct worker *w = P.w;
    char copy[PATH_MAX], prefix[64], why[768] = "";
    /* The file's identity, to refuse a file whose startup hung a worker
     * before (scoreboard.h), and to quarantine it if it hangs this one. */
    struct plugin_file_id id = {0};
    if (watched && file_id_of(path, &id) == 0) {
        double timeout;
        if (scoreboard_quarantined(&id, &timeout)) {
            log_error("plugin %s refused: its startup hung in an earlier worker (timeout %g s); "
                      "replace the file to retry",
                      path, timeout);
            return -1;
        }
    }
    /* Generations count per file; the copy's name is also unique per
     * process, whatever the folder's history. */
    struct generation **prev = find_active(name);
    unsigned gen = prev ? (*prev)->id + 1 : 0;
    snprintf(prefix, sizeof prefix, "p%d-u%u-g%u", (int)getpid(), P.next_id++, gen);
    int rc =
        plugin_file_copy(path, w->cfg->private_dir, prefix, copy, sizeof copy, why, sizeof why);
    if (rc == 1) {
        schedule_retry(name, tries + 1);
        return -1;
    }
    if (rc < 0) {
        if (errno == ENOENT && !find_active(name))
            return -1; /* gone before we got to it */
        plugin_log_refusal(path, why);
        return -1;
    }
    struct plugin_file_id after;
    if (watched && (file_id_of(path, &after) < 0 || !same_file_id(&id, &after))) {
        /* Replaced while we copied: the identity would not be the code's. */
        unlink(copy);
        schedule_retry(name, tries + 1);
        return -1;
    }
    struct generation *g = calloc(1, sizeof *g);
    if (!g || !(g->file = strdup(name)) || !(g->path = strdup(path))) {
        unlink(copy);
        if (g)
            generation_free(g);
        plugin_log_refusal(path, "out of memory");
        return -1;
    }
    g->id = gen;
    g->watched = watched;
    snprintf(g->copy, sizeof g->copy, "%s", copy);

    /* Constructors and the entry point run plugin code on this thread:
     * watched like startup, until the startup hook takes over. */
    struct watch_task loading = {.kind = WATCH_STARTUP,
                                 .role = "loading of plugin",
                                 .name = name,
                                 .phase = "loading",
                                 .file = id};
    const struct watch_task *outer = NULL;
    bool watching = watched;
    if (watching)
        outer = watchdog_enter(&loading);
    /* RTLD_LOCAL: two generations of one plugin define the same symbols,
     * and neither may bind to the other's. */
    dlerror();
    g->dl = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
    /* The mapping stays valid once the name is gone: nothing to clean up
     * later, whatever happens to the process. */
    unlink(copy);
    if (!g->dl) {
        const char *e = dlerror();
        snprintf(why, sizeof why, "dlopen failed: %s", e ? e : "unknown error");
        goto refuse;
    }
    evicorn_plugin_entry_fn entry;
    *(void **)&entry = dlsym(g->dl, EVICORN_PLUGIN_ENTRY);
    if (!entry) {
        snprintf(why, sizeof why, "no %s symbol: not an evicorn plugin", EVICORN_PLUGIN_ENTRY);
        goto refuse;
    }
    evicorn_host host = {
        .size = sizeof host,
        .abi_major = EVICORN_ABI_MAJOR,
        .abi_minor = EVICORN_ABI_MINOR,
        .api = host_api(),
        .server_version = EVICORN_VERSION,
        .plugin_file = path,
    };
    const evicorn_plugin *d = entry(&host);
    if (!d) {
        snprintf(why, sizeof why, "%s returned no descriptor", EVICORN_PLUGIN_ENTRY);
        goto refuse;
    }
    if (d->size < offsetof(evicorn_plugin, routes)) {
        snprintf(why, sizeof why, "descriptor too small (%u bytes)", d->size);
        goto refuse;
    }
    memcpy(&g->desc, d, d->size < sizeof g->desc ? d->size : sizeof g->desc);
    g->desc.size = sizeof g->desc;
    if (g->desc.abi_major != EVICORN_ABI_MAJOR || g->desc.abi_minor > EVICORN_ABI_MINOR) {
        snprintf(why, sizeof why, "built for ABI %u.%u, this server speaks ABI %d.%d",
                 g->desc.abi_major, g->desc.abi_minor, EVICORN_ABI_MAJOR, EVICORN_ABI_MINOR);
        goto refuse;
    }
    if (!g->desc.name || !*g->desc.name || strlen(g->desc.name) > 64) {
        snprintf(why, sizeof why, "descriptor has no valid name");
        goto refuse;
    }
    if (copy_routes(g, why, sizeof why) < 0)
        goto refuse;

    struct generation **slot = find_active(name);
    struct generation *old = slot ? *slot : NULL;
    struct route_table *t = build_table(old, g, why, sizeof why);
    if (!t)
        goto refuse;
    if (watching) {
        watchdog_leave(outer);
        watchdog_sync();
        watching = false;
    }
    if (g->desc.startup) {
        char err[512] = "", who[128];
        snprintf(who, sizeof who, "%s (%s)", generation_name(g), name);
        struct watch_task starting = {.kind = WATCH_STARTUP,
                                      .role = "startup of plugin",
                                      .name = who,
                                      .phase = "startup",
                                      .file = id};
        if (watched)
            outer = watchdog_enter(&starting);
        int src = g->desc.startup(&g->state, err, sizeof err);
        if (watched) {
            watchdog_leave(outer);
            watchdog_sync();
        }
        if (src != 0) {
            route_table_release(t);
            snprintf(why, sizeof why, "startup failed: %s", err[0] ? err : "no reason given");
            goto refuse;
        }
    }

    /* Everything checked: swap. */
    g->refs = 1; /* the registry's */
    if (old) {
        *slot = old->next;
        old->next = NULL;
    }
    g->next = P.active;
    P.active = g;
    swap_table(t);
    if (old) {
        log_info("plugin %s: replaced %s %s (generation %u) with %s %s (generation %u, %zu "
                 "routes)",
                 name, generation_name(old), old->desc.version ? old->desc.version : "", old->id,
                 generation_name(g), g->desc.version ? g->desc.version : "", g->id, g->nroutes);
        retire(old);
    } else {
        log_info("plugin %s: loaded %s %s (generation %u, %zu routes)", name, generation_name(g),
                 g->desc.version ? g->desc.version : "", g->id, g->nroutes);
    }
    return 0;

refuse:
    plugin_log_refusal(path, why);
    if (g->dl)
        dlclose(g->dl); /* destructors: still watched when loading failed */
    if (watching) {
        watchdog_leave(outer);
        watchdog_sync();
    }
    generation_free(g);
    return -1;
}

/* Whether path is the server's own ASGI bridge, which is loaded only to
 * serve APP, never as an ordinary plugin (it sits in build/plugins beside
 * the examples). */
static bool is_bridge(const char *path)
{
    const char *bridge = P.w->cfg->bridge_file;
    struct stat a, b;
    return bridge && stat(path, &a) == 0 && stat(bridge, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

static void load_file(const char *name, int tries)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", P.w->cfg->plugins_dir, name);
    if (n < 0 || (size_t)n >= sizeof path) {
        log_error("plugin %s/%s refused: path too long", P.w->cfg->plugins_dir, name);
        return;
    }
    if (is_bridge(path)) {
        log_debug("plugin %s: the ASGI bridge is loaded only to serve an APP; skipped", path);
        return;
    }
    load_path(name, path, tries, true);
}

/* ---- files still being written ---- */

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    struct retry pending[MAX_RETRIES_PENDING];
    size_t n = P.nretries;
    memcpy(pending, P.retries, n * sizeof *pending);
    P.nretries = 0;
    for (size_t i = 0; i < n; i++)
        load_file(pending[i].name, pending[i].tries);
}

/* A file changed while we copied it: try again shortly, a bounded number
 * of times. */
static void schedule_retry(const char *name, int tries)
{
    if (tries > RETRY_MAX) {
        log_error("plugin %s/%s refused: still changing after %d attempts", P.w->cfg->plugins_dir,
                  name, RETRY_MAX);
        return;
    }
    for (size_t i = 0; i < P.nretries; i++)
        if (strcmp(P.retries[i].name, name) == 0)
            return;
    if (P.nretries == MAX_RETRIES_PENDING) {
        log_error("plugin %s/%s refused: too many files changing at once", P.w->cfg->plugins_dir,
                  name);
        return;
    }
    struct retry *r = &P.retries[P.nretries++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->tries = tries;
    if (!ev_is_active(&P.retry_timer)) {
        ev_timer_set(&P.retry_timer, RETRY_SECONDS, 0);
        ev_timer_start(P.w->loop, &P.retry_timer);
    }
}

/* ---- removal and the watcher ---- */

static void unload_file(const char *name)
{
    struct generation **slot = find_active(name);
    if (!slot)
        return;
    struct generation *g = *slot;
    char why[512];
    struct route_table *t = build_table(g, NULL, why, sizeof why);
    if (!t) {
        log_error("plugin %s: cannot remove: %s", name, why);
        return;
    }
    *slot = g->next;
    g->next = NULL;
    swap_table(t);
    log_info("plugin %s: removed %s (generation %u, %zu routes gone)", name, generation_name(g),
             g->id, g->nroutes);
    retire(g);
}

static void on_folder_change(void *ud, const char *name, bool present)
{
    (void)ud;
    if (present)
        load_file(name, 0);
    else
        unload_file(name);
}

int plugins_init(struct worker *w)
{
    P.w = w;
    ev_init(&P.retry_timer, on_retry);
    P.table = build_table(NULL, NULL, (char[128]){0}, 128);
    if (!P.table)
        return -1;
    /* The ASGI bridge serves APP; without it there is nothing to serve, so
     * its refusal (an app whose lifespan startup failed) stops the worker. */
    if (w->cfg->bridge && load_path("asgi.so", w->cfg->bridge, RETRY_MAX, false) < 0)
        return -1;
    char err[512];
    P.watch =
        plugin_watch_new(w->loop, w->cfg->plugins_dir, on_folder_change, NULL, err, sizeof err);
    if (!P.watch) {
        /* Serving without plugins beats not serving: say so once. */
        if (w->index == 0)
            log_warning("%s; serving without plugins", err);
        return 0;
    }
    plugin_watch_scan(P.watch);
    return 0;
}

void plugins_shutdown(struct worker *w)
{
    (void)w;
    if (!P.w)
        return;
    plugin_watch_free(P.watch);
    P.watch = NULL;
    ev_timer_stop(P.w->loop, &P.retry_timer);
    while (P.active) {
        struct generation *g = P.active;
        P.active = g->next;
        g->next = NULL;
        retire(g);
    }
    route_table_release(P.table);
    P.table = NULL;
}

bool plugins_busy(void)
{
    for (struct generation *g = P.retired; g; g = g->next)
        if (g->inflight > 0)
            return true;
    for (struct generation *g = P.active; g; g = g->next)
        if (g->inflight > 0)
            return true;
    return false;
}

/* ---- status ---- */

static int json_str(struct buf *b, const char *s)
{
    if (buf_append(b, "\"", 1) < 0)
        return -1;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        char esc[8];
        int n;
        if (*p == '"' || *p == '\\')
            n = snprintf(esc, sizeof esc, "\\%c", *p);
        else if (*p < 0x20)
            n = snprintf(esc, sizeof esc, "\\u%04x", *p);
        else
            n = snprintf(esc, sizeof esc, "%c", *p);
        if (buf_append(b, esc, (size_t)n) < 0)
            return -1;
    }
    return buf_append(b, "\"", 1);
}

static int status_generation(struct buf *b, const struct generation *g, bool *first)
{
    char num[160];
    if (!*first && buf_append(b, ",", 1) < 0)
        return -1;
    *first = false;
    if (buf_append_str(b, "{\"file\":") < 0 || json_str(b, g->file) < 0 ||
        buf_append_str(b, ",\"name\":") < 0 || json_str(b, generation_name(g)) < 0 ||
        buf_append_str(b, ",\"version\":") < 0 || json_str(b, g->desc.version) < 0)
        return -1;
    snprintf(num, sizeof num,
             ",\"generation\":%u,\"state\":\"%s\",\"in_flight\":%ld,\"references\":%u,"
             "\"mapped_copy\":",
             g->id, g->retired ? "draining" : "active", g->inflight, g->refs);
    if (buf_append_str(b, num) < 0 || json_str(b, g->copy) < 0 ||
        buf_append_str(b, ",\"routes\":[") < 0)
        return -1;
    for (size_t i = 0; i < g->nroutes; i++) {
        const struct route_entry *re = &g->routes[i];
        if ((i && buf_append(b, ",", 1) < 0) || buf_append_str(b, "{\"method\":") < 0 ||
            json_str(b, re->method) < 0 || buf_append_str(b, ",\"path\":") < 0 ||
            json_str(b, re->path) < 0 || buf_append_str(b, ",\"kind\":") < 0 ||
            json_str(b, re->kind == EVICORN_SYNC ? "sync" : "async") < 0 ||
            buf_append(b, "}", 1) < 0)
            return -1;
    }
    return buf_append_str(b, "]}");
}

int plugins_status_json(struct buf *b)
{
    char head[128];
    snprintf(head, sizeof head, "{\"worker\":%d,\"pid\":%d,\"plugins\":[", P.w ? P.w->index : -1,
             (int)getpid());
    if (buf_append_str(b, head) < 0)
        return -1;
    bool first = true;
    for (struct generation *g = P.active; g; g = g->next)
        if (status_generation(b, g, &first) < 0)
            return -1;
    for (struct generation *g = P.retired; g; g = g->next)
        if (status_generation(b, g, &first) < 0)
            return -1;
    return buf_append_str(b, "]}");
}
