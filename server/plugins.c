/* plugins: loading, replacing and unloading plugin generations; see
 * plugins.h for the model.
 *
 * A load runs in three phases, each undoing only what it set up:
 *  1. open and check: copy and validate the file, dlopen the copy, call
 *     its entry point, negotiate the ABI, copy its routes and check them
 *     against every other plugin's (a new route table, not yet in use);
 *  2. start: run its startup hook;
 *  3. install: swap the new route table in, in one pointer assignment,
 *     and retire the generation it replaces.
 * Every step that can fail is before the swap. A refusal is one log line
 * naming the file and the reason. */
#include "plugins.h"

#include <dlfcn.h>
#include <pwd.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "plugin_file.h"
#include "plugin_sign.h"
#include "plugin_watch.h"
#include "plugins_internal.h"
#include "router.h"
#include "scoreboard.h"

/* How long a replaced generation may take to drain before we say so. It
 * stays mapped either way: unmapping code that may still run would crash. */
#define DRAIN_WARN_SECONDS 30.0

static void schedule_retry(struct plugins *P, const char *name, int tries);

/* ---- route tables ---- */

struct route_table *plugins_routes(const struct plugins *P)
{
    return P->table;
}

void route_table_retain(struct route_table *t)
{
    t->refs++;
}

void route_table_release(struct route_table *t)
{
    if (t && --t->refs == 0) {
        router_free(t->router);
        router_free(t->ws_router);
        free(t);
    }
}

/* Builds a table of every active generation's routes, leaving out `skip`
 * and adding `add`. On a conflict, err names both routes. */
static struct route_table *build_table(const struct plugins *P, const struct generation *skip,
                                       struct generation *add, char *err, size_t errlen)
{
    struct route_table *t = calloc(1, sizeof *t);
    if (!t || !(t->router = router_new()) || !(t->ws_router = router_new())) {
        if (t)
            router_free(t->router);
        free(t);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->refs = 1;
    for (struct generation *g = P->active;; g = g->next) {
        struct generation *cur = g ? g : add;
        if (!cur)
            break;
        if (cur != skip) {
            for (size_t i = 0; i < cur->nroutes; i++) {
                struct route_entry *re = &cur->routes[i];
                char why[512];
                struct router *rt = re->websocket ? t->ws_router : t->router;
                if (router_add(rt, re->method, re->path, re, why, sizeof why) < 0) {
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

static void swap_table(struct plugins *P, struct route_table *t)
{
    struct route_table *old = P->table;
    P->table = t;
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

bool generation_retired(const struct generation *g, double *since)
{
    if (g->retired && since)
        *since = g->retired_at;
    return g->retired;
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

/* Where a generation's own code runs: the bridge's is not watched (its
 * startup is the app's lifespan, which may take as long as it takes). */
static struct plugin_site site_of(const struct generation *g)
{
    struct plugin_site s = *g->owner->site;
    if (!g->watched)
        s.watchdog = NULL;
    return s;
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
    watchdog_sync(g->owner->site->watchdog); /* it may be printing one of its routes */
    free_routes(g);
    free(g->file);
    free(g->path);
    free(g);
}

static void unlink_retired(struct generation *g)
{
    for (struct generation **pp = &g->owner->retired; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            return;
        }
}

/* Loop thread only, like everything here. */
static struct generation *running;
static void (*unload_hook)(struct generation *g);

struct generation *generation_enter(struct generation *g)
{
    struct generation *prev = running;
    running = g;
    return prev;
}

void generation_leave(struct generation *prev)
{
    running = prev;
}

struct generation *generation_running(void)
{
    return running;
}

void plugins_on_unload(void (*fn)(struct generation *g))
{
    unload_hook = fn;
}

static void unloading(struct generation *g)
{
    if (unload_hook)
        unload_hook(g);
}

static void run_shutdown(void *arg)
{
    struct generation *g = arg;
    struct generation *prev = generation_enter(g);
    g->desc.shutdown(g->state);
    generation_leave(prev);
}

/* The metrics' gauge of mapped generations, after one came or went. */
static void count_generations(const struct plugins *P)
{
    unsigned n = 0;
    for (const struct generation *g = P->active; g; g = g->next)
        n++;
    for (const struct generation *g = P->retired; g; g = g->next)
        n++;
    metrics_plugin_generations(n);
}

void generation_release(struct generation *g)
{
    if (--g->refs > 0)
        return;
    struct plugins *P = g->owner;
    /* The last request, continuation and background task on this code has
     * finished: run its lifespan shutdown, then unmap it. */
    if (g->desc.shutdown) {
        char name[128];
        snprintf(name, sizeof name, "%s (%s)", generation_name(g), g->file);
        struct watch_task task = {
            .kind = WATCH_CALLBACK, .role = "shutdown of plugin", .name = name};
        struct plugin_site site = site_of(g);
        plugin_run(&site, &task, PLUGIN_RUN_UNTIMED, run_shutdown, g);
    }
    if (g->retired && ev_is_active(&g->drain_timer)) {
        ev_ref(P->loop); /* balances the unref in retire() */
        ev_timer_stop(P->loop, &g->drain_timer);
    }
    unloading(g);
    unlink_retired(g);
    count_generations(P);
    if (!g->dl)
        log_info("plugin %s: generation %u unloaded", g->file, g->id);
    else if (dlclose(g->dl) != 0)
        log_warning("plugin %s: dlclose of generation %u failed: %s", g->file, g->id, dlerror());
    else
        log_info("plugin %s: generation %u unloaded", g->file, g->id);
    generation_free(g);
    if (P->closed && !P->retired)
        free(P);
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
    struct plugins *P = g->owner;
    g->retired = true;
    g->retired_at = ev_now(P->loop);
    g->next = P->retired;
    P->retired = g;
    ev_timer_init(&g->drain_timer, on_drain_timer, DRAIN_WARN_SECONDS, 0);
    g->drain_timer.data = g;
    ev_timer_start(P->loop, &g->drain_timer);
    ev_unref(P->loop); /* a draining plugin must not keep a stopping worker alive */
    generation_release(g);
}

static struct generation **find_active(struct plugins *P, const char *file)
{
    for (struct generation **pp = &P->active; *pp; pp = &(*pp)->next)
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
        bool websocket = (r.kind & EVICORN_WEBSOCKET) != 0;
        uint32_t kind = r.kind & ~EVICORN_WEBSOCKET;
        if (kind != EVICORN_ASYNC && kind != EVICORN_SYNC) {
            snprintf(why, whylen, "route %s %s has an unknown kind %u", r.method, r.path, r.kind);
            return -1;
        }
        if (!r.handler) {
            snprintf(why, whylen, "route %s %s has no handler", r.method, r.path);
            return -1;
        }
        if (websocket && strcmp(r.method, "GET") != 0 && strcmp(r.method, "*") != 0) {
            snprintf(why, whylen, "WebSocket route %s %s must use method GET", r.method, r.path);
            return -1;
        }
        struct route_entry *re = &g->routes[g->nroutes];
        re->gen = g;
        re->kind = kind;
        re->websocket = websocket;
        re->handler = r.handler;
        re->data = r.data;
        re->method = strdup(websocket ? "GET" : r.method);
        re->path = strdup(r.path);
        size_t ll = strlen(r.method) + strlen(r.path) + strlen(g->file) + 16;
        re->label = malloc(ll);
        g->nroutes++;
        if (!re->method || !re->path || !re->label) {
            snprintf(why, whylen, "out of memory");
            return -1;
        }
        snprintf(re->label, ll, "%s %s (%s)", websocket ? "WEBSOCKET" : r.method, r.path, g->file);
        re->watch =
            (struct watch_task){.kind = WATCH_CALLBACK, .role = "async handler", .name = re->label};
    }
    /* Each pattern alone first, so a bad pattern is reported as such and
     * not as a conflict. */
    struct router *solo = router_new(), *ws_solo = router_new();
    if (!solo || !ws_solo) {
        router_free(solo);
        router_free(ws_solo);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < g->nroutes && rc == 0; i++) {
        char err[512];
        struct route_entry *re = &g->routes[i];
        if (router_add(re->websocket ? ws_solo : solo, re->method, re->path, re, err, sizeof err) <
            0) {
            snprintf(why, whylen, "%s", err);
            rc = -1;
        }
    }
    router_free(solo);
    router_free(ws_solo);
    return rc;
}

static void log_refusal(const char *path, const char *why)
{
    log_error("plugin %s refused: %s", path, why);
    metrics_plugin_refused();
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

/* ---- trust: who could have written the code ---- */

/* Warnings collected under --plugins-insecure, logged once per file. */
struct trust_notes {
    const struct plugins *P;
    char text[1024];
};

static void note_distrust(struct trust_notes *n, const char *why)
{
    size_t len = strlen(n->text);
    snprintf(n->text + len, sizeof n->text - len, "%s%s", len ? "; " : "", why);
}

/* plugin_file_copy's judgement of the opened file (plugin_file_vet). */
static int vet_file(void *ud, const struct stat *st, const char *path, char *why, size_t whylen)
{
    struct trust_notes *n = ud;
    if (plugin_trust_file(&n->P->trust, st, path, why, whylen) == 0)
        return 0;
    if (!n->P->cfg->plugins_insecure)
        return -1;
    note_distrust(n, why);
    why[0] = '\0';
    return 0;
}

/* The folder the plugin comes from, and every folder above it. */
static int vet_folder(struct trust_notes *n, const char *path)
{
    char why[768];
    if (plugin_trust_folder(&n->P->trust, n->P->cfg->plugins_dir, why, sizeof why) == 0)
        return 0;
    if (!n->P->cfg->plugins_insecure) {
        log_refusal(path, why);
        return -1;
    }
    note_distrust(n, why);
    return 0;
}

/* Checks the signature of the copy about to be mapped against NAME.so.sig
 * beside the plugin file. */
static int verify_signature(const struct plugins *P, const char *path, const char *copy, char *why,
                            size_t whylen)
{
    char sig[PATH_MAX];
    if ((size_t)snprintf(sig, sizeof sig, "%s.sig", path) >= sizeof sig) {
        snprintf(why, whylen, "path too long for its signature");
        return -1;
    }
    return plugin_sign_verify(P->cfg->plugin_key, copy, sig, why, whylen);
}

/* ---- one load, in phases ---- */

struct load {
    struct plugins *P;
    const char *name; /* key: the file name in the plugins folder */
    const char *path; /* where to read it */
    int tries;
    struct plugin_file_id id; /* the file's identity, for the quarantine */
    struct generation *g;
    struct generation *old;    /* the generation it replaces, if any */
    struct route_table *table; /* every route once it serves */
    char why[768];
    /* When each step ended (CLOCK_MONOTONIC), for the debug line saying
     * where a load's time went. */
    double t_begin, t_copied, t_verified, t_started;
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Constructors and the entry point are plugin code: run as "loading". */
struct entry_call {
    struct generation *g;
    evicorn_plugin_entry_fn builtin; /* a plugin linked into the process */
    const char *copy;                /* else: the private copy to dlopen */
    const evicorn_host *host;
    const evicorn_plugin *desc;
    char *why;
    size_t whylen;
};

static void run_entry(void *arg)
{
    struct entry_call *e = arg;
    if (e->builtin) {
        struct generation *prev = generation_enter(e->g);
        e->desc = e->builtin(e->host);
        generation_leave(prev);
        if (!e->desc)
            snprintf(e->why, e->whylen, "its entry point returned no descriptor");
        return;
    }
    /* RTLD_LOCAL: two generations of one plugin define the same symbols,
     * and neither may bind to the other's. */
    dlerror();
    e->g->dl = dlopen(e->copy, RTLD_NOW | RTLD_LOCAL);
    /* The mapping stays valid once the name is gone: nothing to clean up
     * later, whatever happens to the process. */
    unlink(e->copy);
    if (!e->g->dl) {
        const char *err = dlerror();
        snprintf(e->why, e->whylen, "dlopen failed: %s", err ? err : "unknown error");
        return;
    }
    evicorn_plugin_entry_fn entry;
    *(void **)&entry = dlsym(e->g->dl, EVICORN_PLUGIN_ENTRY);
    if (!entry) {
        snprintf(e->why, e->whylen, "no %s symbol: not an evicorn plugin", EVICORN_PLUGIN_ENTRY);
        return;
    }
    struct generation *prev = generation_enter(e->g);
    e->desc = entry(e->host);
    generation_leave(prev);
    if (!e->desc)
        snprintf(e->why, e->whylen, "%s returned no descriptor", EVICORN_PLUGIN_ENTRY);
}

static void run_dlclose(void *arg)
{
    dlclose(arg);
}

static struct watch_task loading_task(const struct load *l)
{
    return (struct watch_task){.kind = WATCH_STARTUP,
                               .role = "loading of plugin",
                               .name = l->name,
                               .phase = "loading",
                               .file = l->id};
}

/* Undoes phase 1: its destructors still run as "loading". */
static void unload_unstarted(struct load *l)
{
    struct generation *g = l->g;
    unloading(g);
    if (g->dl) {
        struct watch_task task = loading_task(l);
        struct plugin_site site = site_of(g);
        plugin_run(&site, &task, PLUGIN_RUN_UNTIMED, run_dlclose, g->dl);
    }
    generation_free(g);
    l->g = NULL;
}

static int accept_plugin(struct load *l, evicorn_plugin_entry_fn builtin, const char *copy);

/* Phase 1 for a file in the plugins folder. Returns 0 with l->g and
 * l->table set; -1 when refused (logged) or postponed (a retry is
 * scheduled). */
static int open_file(struct load *l)
{
    struct plugins *P = l->P;
    char copy[PATH_MAX], prefix[64];
    /* The file's identity, to refuse a file whose startup hung a worker
     * before (scoreboard.h), and to quarantine it if it hangs this one. */
    if (file_id_of(l->path, &l->id) == 0) {
        double timeout;
        if (scoreboard_quarantined(&l->id, &timeout)) {
            log_error("plugin %s refused: its startup hung in an earlier worker (timeout %g s); "
                      "replace the file to retry",
                      l->path, timeout);
            metrics_plugin_refused();
            return -1;
        }
    }
    /* Generations count per file; the copy's name is also unique per
     * process, whatever the folder's history. */
    struct generation **slot = find_active(P, l->name);
    unsigned gen = slot ? (*slot)->id + 1 : 0;
    snprintf(prefix, sizeof prefix, "p%d-u%u-g%u", (int)getpid(), P->next_id++, gen);
    /* Files are judged by who could have written them. */
    struct trust_notes notes = {.P = P};
    struct plugin_file_vet vet = {vet_file, &notes};
    if (vet_folder(&notes, l->path) < 0)
        return -1;
    int rc = plugin_file_copy(l->path, P->cfg->private_dir, prefix, &vet, copy, sizeof copy, l->why,
                              sizeof l->why);
    if (rc == 1) {
        schedule_retry(P, l->name, l->tries + 1);
        return -1;
    }
    if (rc < 0) {
        if (!(errno == ENOENT && !slot)) /* else: gone before we got to it */
            log_refusal(l->path, l->why);
        return -1;
    }
    struct plugin_file_id after;
    if (file_id_of(l->path, &after) < 0 || !same_file_id(&l->id, &after)) {
        /* Replaced while we copied: the identity would not be the code's. */
        unlink(copy);
        schedule_retry(P, l->name, l->tries + 1);
        return -1;
    }
    if (notes.text[0])
        log_warning("plugin %s: %s; loading it anyway (--plugins-insecure)", l->path, notes.text);
    l->t_copied = now_seconds();
    if (P->cfg->plugin_key && verify_signature(P, l->path, copy, l->why, sizeof l->why) < 0) {
        unlink(copy);
        log_refusal(l->path, l->why);
        return -1;
    }
    l->t_verified = now_seconds();
    struct generation *g = calloc(1, sizeof *g);
    if (!g || !(g->file = strdup(l->name)) || !(g->path = strdup(l->path))) {
        unlink(copy);
        if (g) {
            g->owner = P;
            generation_free(g);
        }
        log_refusal(l->path, "out of memory");
        return -1;
    }
    g->owner = P;
    g->id = gen;
    g->watched = true;
    snprintf(g->copy, sizeof g->copy, "%s", copy);
    l->g = g;
    return accept_plugin(l, NULL, copy);
}

/* The rest of phase 1, for a file or a plugin linked into the process:
 * run its entry point, negotiate, copy and check its routes. */
static int accept_plugin(struct load *l, evicorn_plugin_entry_fn builtin, const char *copy)
{
    struct plugins *P = l->P;
    struct generation *g = l->g;
    evicorn_host host = {
        .size = sizeof host,
        .abi_major = EVICORN_ABI_MAJOR,
        .abi_minor = EVICORN_ABI_MINOR,
        .api = P->api,
        .server_version = EVICORN_VERSION,
        .plugin_file = l->path,
    };
    struct entry_call e = {.g = g,
                           .builtin = builtin,
                           .copy = copy,
                           .host = &host,
                           .why = l->why,
                           .whylen = sizeof l->why};
    struct watch_task task = loading_task(l);
    struct plugin_site site = site_of(g);
    l->why[0] = '\0';
    plugin_run(&site, &task, PLUGIN_RUN_UNTIMED, run_entry, &e);
    if (!e.desc)
        goto refuse;
    const evicorn_plugin *d = e.desc;
    if (d->size < offsetof(evicorn_plugin, routes)) {
        snprintf(l->why, sizeof l->why, "descriptor too small (%u bytes)", d->size);
        goto refuse;
    }
    memcpy(&g->desc, d, d->size < sizeof g->desc ? d->size : sizeof g->desc);
    g->desc.size = sizeof g->desc;
    if (g->desc.abi_major != EVICORN_ABI_MAJOR || g->desc.abi_minor > EVICORN_ABI_MINOR) {
        snprintf(l->why, sizeof l->why, "built for ABI %u.%u, this server speaks ABI %d.%d",
                 g->desc.abi_major, g->desc.abi_minor, EVICORN_ABI_MAJOR, EVICORN_ABI_MINOR);
        goto refuse;
    }
    if (!g->desc.name || !*g->desc.name || strlen(g->desc.name) > 64) {
        snprintf(l->why, sizeof l->why, "descriptor has no valid name");
        goto refuse;
    }
    if (copy_routes(g, l->why, sizeof l->why) < 0)
        goto refuse;
    struct generation **slot = find_active(P, l->name);
    l->old = slot ? *slot : NULL;
    l->table = build_table(P, l->old, g, l->why, sizeof l->why);
    if (!l->table)
        goto refuse;
    return 0;

refuse:
    log_refusal(l->path, l->why);
    unload_unstarted(l);
    return -1;
}

/* Phase 1 for a plugin linked into the process (the ASGI bridge when
 * evicorn runs inside Python): nothing to copy or map. */
static int open_builtin(struct load *l, evicorn_plugin_entry_fn entry)
{
    struct plugins *P = l->P;
    struct generation *g = calloc(1, sizeof *g);
    if (!g || !(g->file = strdup(l->name)) || !(g->path = strdup(l->path))) {
        if (g) {
            g->owner = P;
            generation_free(g);
        }
        log_refusal(l->path, "out of memory");
        return -1;
    }
    g->owner = P;
    g->watched = false;
    snprintf(g->copy, sizeof g->copy, "(built in)");
    l->g = g;
    return accept_plugin(l, entry, NULL);
}

struct startup_call {
    struct generation *g;
    char err[512];
    int rc;
};

static void run_startup(void *arg)
{
    struct startup_call *s = arg;
    struct generation *prev = generation_enter(s->g);
    s->rc = s->g->desc.startup(&s->g->state, s->err, sizeof s->err);
    generation_leave(prev);
}

/* Phase 2: the startup hook. On failure undoes phase 1 too. */
static int start(struct load *l)
{
    struct generation *g = l->g;
    l->t_started = now_seconds();
    if (!g->desc.startup)
        return 0;
    char who[128];
    snprintf(who, sizeof who, "%s (%s)", generation_name(g), l->name);
    struct watch_task task = {.kind = WATCH_STARTUP,
                              .role = "startup of plugin",
                              .name = who,
                              .phase = "startup",
                              .file = l->id};
    struct startup_call s = {.g = g};
    struct plugin_site site = site_of(g);
    plugin_run(&site, &task, PLUGIN_RUN_UNTIMED, run_startup, &s);
    l->t_started = now_seconds();
    if (s.rc == 0)
        return 0;
    snprintf(l->why, sizeof l->why, "startup failed: %s", s.err[0] ? s.err : "no reason given");
    log_refusal(l->path, l->why);
    route_table_release(l->table);
    l->table = NULL;
    unload_unstarted(l);
    return -1;
}

/* Phase 3: serve it. Cannot fail. */
static void install(struct load *l)
{
    struct plugins *P = l->P;
    struct generation *g = l->g, *old = l->old;
    g->refs = 1; /* the registry's */
    if (old) {
        struct generation **slot = find_active(P, l->name);
        *slot = old->next;
        old->next = NULL;
    }
    g->next = P->active;
    P->active = g;
    swap_table(P, l->table);
    metrics_plugin_loaded();
    if (old) {
        log_info("plugin %s: replaced %s %s (generation %u) with %s %s (generation %u, %zu "
                 "routes)",
                 l->name, generation_name(old), old->desc.version ? old->desc.version : "", old->id,
                 generation_name(g), g->desc.version ? g->desc.version : "", g->id, g->nroutes);
        retire(old);
    } else {
        log_info("plugin %s: loaded %s %s (generation %u, %zu routes)", l->name, generation_name(g),
                 g->desc.version ? g->desc.version : "", g->id, g->nroutes);
    }
    count_generations(P);
}

/* Loads (or reloads) one plugin file; its loading and startup are watched
 * (--timeout-startup). Returns 0 when it serves. */
static int load_path(struct plugins *P, const char *name, const char *path, int tries)
{
    struct load l = {.P = P, .name = name, .path = path, .tries = tries};
    l.t_begin = now_seconds();
    if (open_file(&l) < 0 || start(&l) < 0)
        return -1;
    install(&l);
    log_debug("plugin %s: loaded in %.2f ms (checks and copy %.2f, signature %.2f, dlopen and "
              "startup %.2f)",
              name, (l.t_started - l.t_begin) * 1000, (l.t_copied - l.t_begin) * 1000,
              (l.t_verified - l.t_copied) * 1000, (l.t_started - l.t_verified) * 1000);
    return 0;
}

/* Loads the ASGI bridge linked into the process. Not watched: its startup
 * is the app's lifespan startup, which uvicorn waits for however long it
 * takes, and so do we; a hung bridge is not a file to quarantine but an app
 * that never starts. */
static int load_builtin(struct plugins *P, const char *name, evicorn_plugin_entry_fn entry)
{
    struct load l = {.P = P, .name = name, .path = name, .tries = PLUGINS_RETRY_MAX};
    if (open_builtin(&l, entry) < 0 || start(&l) < 0)
        return -1;
    install(&l);
    return 0;
}

static void load_file(struct plugins *P, const char *name, int tries)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", P->cfg->plugins_dir, name);
    if (n < 0 || (size_t)n >= sizeof path) {
        log_error("plugin %s/%s refused: path too long", P->cfg->plugins_dir, name);
        metrics_plugin_refused();
        return;
    }
    load_path(P, name, path, tries);
}

/* ---- files still being written ---- */

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct plugins *P = t->data;
    struct plugin_retry pending[PLUGINS_RETRIES_MAX];
    size_t n = P->nretries;
    memcpy(pending, P->retries, n * sizeof *pending);
    P->nretries = 0;
    for (size_t i = 0; i < n; i++)
        load_file(P, pending[i].name, pending[i].tries);
}

/* A file changed while we copied it: try again shortly, a bounded number
 * of times. */
static void schedule_retry(struct plugins *P, const char *name, int tries)
{
    if (tries > PLUGINS_RETRY_MAX) {
        log_error("plugin %s/%s refused: still changing after %d attempts", P->cfg->plugins_dir,
                  name, PLUGINS_RETRY_MAX);
        metrics_plugin_refused();
        return;
    }
    for (size_t i = 0; i < P->nretries; i++)
        if (strcmp(P->retries[i].name, name) == 0)
            return;
    if (P->nretries == PLUGINS_RETRIES_MAX) {
        log_error("plugin %s/%s refused: too many files changing at once", P->cfg->plugins_dir,
                  name);
        metrics_plugin_refused();
        return;
    }
    struct plugin_retry *r = &P->retries[P->nretries++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->tries = tries;
    if (!ev_is_active(&P->retry_timer)) {
        ev_timer_set(&P->retry_timer, PLUGINS_RETRY_SECONDS, 0);
        ev_timer_start(P->loop, &P->retry_timer);
    }
}

/* ---- removal and the watcher ---- */

static void unload_file(struct plugins *P, const char *name)
{
    struct generation **slot = find_active(P, name);
    if (!slot)
        return;
    struct generation *g = *slot;
    char why[512];
    struct route_table *t = build_table(P, g, NULL, why, sizeof why);
    if (!t) {
        log_error("plugin %s: cannot remove: %s", name, why);
        return;
    }
    *slot = g->next;
    g->next = NULL;
    swap_table(P, t);
    log_info("plugin %s: removed %s (generation %u, %zu routes gone)", name, generation_name(g),
             g->id, g->nroutes);
    retire(g);
}

static void on_folder_change(void *ud, const char *name, bool present)
{
    struct plugins *P = ud;
    if (present)
        load_file(P, name, 0);
    else
        unload_file(P, name);
}

struct plugins *plugins_new(struct ev_loop *loop, const struct config *cfg, int worker,
                            const struct plugin_site *site, const evicorn_api *api)
{
    struct plugins *P = calloc(1, sizeof *P);
    if (!P) {
        log_error("worker %d: out of memory", worker);
        return NULL;
    }
    *P = (struct plugins){.loop = loop, .cfg = cfg, .worker = worker, .site = site, .api = api};
    /* Trusted beside root: the user this worker runs as (privileges.h). */
    P->trust.uid = geteuid();
    const struct passwd *pw = getpwuid(P->trust.uid);
    if (pw)
        snprintf(P->trust_name, sizeof P->trust_name, "%s", pw->pw_name);
    else
        snprintf(P->trust_name, sizeof P->trust_name, "uid %u", (unsigned)P->trust.uid);
    P->trust.name = P->trust_name;
    ev_init(&P->retry_timer, on_retry);
    P->retry_timer.data = P;
    char err[512];
    P->table = build_table(P, NULL, NULL, err, sizeof err);
    if (!P->table) {
        log_error("worker %d: %s", worker, err);
        free(P);
        return NULL;
    }
    /* The ASGI bridge serves APP; without it there is nothing to serve, so
     * its refusal (an app whose lifespan startup failed) stops the worker. */
    if (cfg->app && cfg->bridge_entry && load_builtin(P, "asgi", cfg->bridge_entry) < 0) {
        plugins_free(P);
        return NULL;
    }
    P->watch = plugin_watch_new(loop, cfg->plugins_dir, on_folder_change, P, err, sizeof err);
    if (!P->watch) {
        /* Serving without plugins beats not serving: say so once. An app
         * served without a plugins folder asked for none. */
        if (worker == 0 && (cfg->plugins_dir_given || !cfg->app))
            log_warning("%s; serving without plugins", err);
        else
            log_debug("%s; serving without plugins", err);
        return P;
    }
    plugin_watch_scan(P->watch);
    return P;
}

void plugins_free(struct plugins *P)
{
    if (!P)
        return;
    plugin_watch_free(P->watch);
    P->watch = NULL;
    ev_timer_stop(P->loop, &P->retry_timer);
    while (P->active) {
        struct generation *g = P->active;
        P->active = g->next;
        g->next = NULL;
        retire(g);
    }
    route_table_release(P->table);
    P->table = NULL;
    /* Generations still draining point to the registry: the last one to
     * go frees it. */
    P->closed = true;
    if (!P->retired)
        free(P);
}
