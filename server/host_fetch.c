/* host_fetch: outbound HTTP for plugins (fetch, and from 1.4 fetch_start
 * with fetch_pause, fetch_write and fetch_cancel); see host.h.
 *
 * An evicorn_exchange is one exchange of httpc (httpc.h: libcurl's multi on
 * the worker's loop) bound to the call that started it: it is on the
 * call's list of fetches, which keeps the call (and with it the plugin's
 * generation, so its code stays mapped across a hot reload) open until
 * the exchange's last event has run. A client that leaves cancels every
 * fetch of its call (host_fetch_cancel_call): each ends at once with
 * EVICORN_ECANCELED and its connection is closed, never reused.
 *
 * httpc already promises that its callbacks run from the loop and never
 * inside the httpc call that caused them; every run of plugin code goes
 * through call_run. fetch_cancel uses httpc_abort, so on_end follows on a
 * later turn of the loop, never inside fetch_cancel. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "host_internal.h"
#include "httpc.h"
#include "log.h"
#include "plugins.h"

struct evicorn_exchange {
    struct evicorn_exchange *prev, *next; /* the call's fetches */
    struct call *c;
    struct httpc_request *hr; /* NULL once the exchange ended */
    bool streamed;
    bool cancelling; /* host_fetch_cancel_call has cancelled it */
    evicorn_fetch_fn fn;
    evicorn_fetch_events ev;
    void *ud;
};

/* Generations already warned about EVICORN_FETCH_INSECURE. */
struct fetch_warned {
    struct fetch_warned *next;
    struct generation *gen;
};

/* The ABI's flags are httpc's. */
_Static_assert(EVICORN_FETCH_FOLLOW_REDIRECTS == HTTPC_FOLLOW_REDIRECTS, "flag");
_Static_assert(EVICORN_FETCH_DECOMPRESS == HTTPC_DECOMPRESS, "flag");
_Static_assert(EVICORN_FETCH_INSECURE == HTTPC_INSECURE, "flag");
_Static_assert(EVICORN_FETCH_HTTP1_ONLY == HTTPC_HTTP1_ONLY, "flag");
_Static_assert(EVICORN_FETCH_STREAM_BODY == HTTPC_STREAM_BODY, "flag");
_Static_assert(sizeof(evicorn_header) == sizeof(struct http_header) &&
                   offsetof(evicorn_header, value_len) == offsetof(struct http_header, value_len),
               "evicorn_header and http_header share their layout");

#define KNOWN_FLAGS                                                                                \
    (EVICORN_FETCH_FOLLOW_REDIRECTS | EVICORN_FETCH_DECOMPRESS | EVICORN_FETCH_INSECURE |          \
     EVICORN_FETCH_HTTP1_ONLY | EVICORN_FETCH_STREAM_BODY)

/* ---- the host's client ---- */

int host_fetch_init(struct host *h)
{
    struct httpc_limits limits = {
        .max_connections = h->cfg ? h->cfg->fetch_max_connections : 0,
        .max_host_connections = h->cfg ? h->cfg->fetch_max_host_connections : 0,
    };
    h->httpc = httpc_new(h->loop, &limits);
    return h->httpc ? 0 : -1;
}

void host_fetch_free(struct host *h)
{
    httpc_free(h->httpc);
    h->httpc = NULL;
    while (h->insecure_warned) {
        struct fetch_warned *w = h->insecure_warned;
        h->insecure_warned = w->next;
        free(w);
    }
}

void host_fetch_unloading(struct generation *g)
{
    struct host *h = host_current();
    if (!h)
        return;
    for (struct fetch_warned **pp = &h->insecure_warned; *pp; pp = &(*pp)->next) {
        if ((*pp)->gen == g) {
            struct fetch_warned *w = *pp;
            *pp = w->next;
            free(w);
            return;
        }
    }
}

/* Verification off is worth one warning per plugin version, not one per
 * request. */
static void warn_insecure(struct call *c, const char *url)
{
    struct host *h = c->host;
    for (struct fetch_warned *w = h->insecure_warned; w; w = w->next)
        if (w->gen == c->gen)
            return;
    struct fetch_warned *w = malloc(sizeof *w);
    if (w) {
        w->gen = c->gen;
        w->next = h->insecure_warned;
        h->insecure_warned = w;
    }
    log_warning("%s: fetch with EVICORN_FETCH_INSECURE (first to %.200s): certificates and host "
                "names are not verified",
                generation_name(c->gen), url);
}

/* ---- results ---- */

static int abi_error(int err)
{
    switch (err) {
    case 0:
        return 0;
    case -ECONNREFUSED:
        return EVICORN_ECONNREFUSED;
    case -ETIMEDOUT:
        return EVICORN_ETIMEDOUT;
    case -ECANCELED:
        return EVICORN_ECANCELED;
    case -EMSGSIZE:
        return EVICORN_EMSGSIZE;
    case -EINVAL:
        return EVICORN_EINVAL;
    default: /* unresolvable names, TLS, invalid responses, resets */
        return EVICORN_EIO;
    }
}

static evicorn_fetch_result to_result(const struct httpc_response *res)
{
    evicorn_fetch_result out = {.size = sizeof out, .url = res->url, .redirects = res->redirects};
    out.error = abi_error(res->error);
    if (out.error) {
        out.error_message = res->error_msg ? res->error_msg : "request failed";
        return out;
    }
    out.status_code = res->status;
    out.headers = (const evicorn_header *)res->headers;
    out.nheaders = res->nheaders;
    out.body = res->body ? res->body : "";
    out.body_len = res->body_len;
    out.http_version = res->http_version;
    return out;
}

/* ---- runs of plugin code ---- */

struct fetch_run {
    struct evicorn_exchange *f;
    const evicorn_fetch_result *res;
    const char *data;
    size_t len;
};

static void run_fn(void *arg)
{
    struct fetch_run *x = arg;
    x->f->fn(handle_of(x->f->c), x->f->ud, x->res);
}

static void run_end(void *arg)
{
    struct fetch_run *x = arg;
    x->f->ev.on_end(handle_of(x->f->c), x->f->ud, x->res);
}

static void run_head(void *arg)
{
    struct fetch_run *x = arg;
    x->f->ev.on_head(handle_of(x->f->c), x->f->ud, x->f, x->res);
}

static void run_data(void *arg)
{
    struct fetch_run *x = arg;
    x->f->ev.on_data(handle_of(x->f->c), x->f->ud, x->f, x->data, x->len);
}

static void run_writable(void *arg)
{
    struct fetch_run *x = arg;
    x->f->ev.on_writable(handle_of(x->f->c), x->f->ud, x->f);
}

/* ---- httpc's callbacks ---- */

static void fetch_unlink(struct evicorn_exchange *f)
{
    struct call *c = f->c;
    if (f->prev)
        f->prev->next = f->next;
    else
        c->fetches = f->next;
    if (f->next)
        f->next->prev = f->prev;
    f->prev = f->next = NULL;
}

/* The last event: the fetch leaves the call (which may then finish, once
 * the continuation has returned) and is freed after it. */
static void fetch_done(void *ud, const struct httpc_response *res)
{
    struct evicorn_exchange *f = ud;
    struct call *c = f->c;
    f->hr = NULL;
    fetch_unlink(f);
    evicorn_fetch_result out = to_result(res);
    struct fetch_run x = {.f = f, .res = &out};
    if (f->streamed ? f->ev.on_end != NULL : f->fn != NULL)
        call_run(c, f->streamed ? run_end : run_fn, &x);
    else
        call_maybe_finish(c);
    free(f);
}

static void fetch_head(void *ud, const struct httpc_response *res)
{
    struct evicorn_exchange *f = ud;
    if (!f->ev.on_head)
        return;
    evicorn_fetch_result out = to_result(res);
    struct fetch_run x = {.f = f, .res = &out};
    call_run(f->c, run_head, &x);
}

static void fetch_data(void *ud, const char *data, size_t len)
{
    struct evicorn_exchange *f = ud;
    if (!f->ev.on_data)
        return;
    struct fetch_run x = {.f = f, .data = data, .len = len};
    call_run(f->c, run_data, &x);
}

static void fetch_writable(void *ud)
{
    struct evicorn_exchange *f = ud;
    if (!f->ev.on_writable)
        return;
    struct fetch_run x = {.f = f};
    call_run(f->c, run_writable, &x);
}

/* ---- the API ---- */

/* Reads the plugin's options (as many as its size covers; the rest is
 * zero) into httpc's. */
static int read_options(struct call *c, const evicorn_fetch_options *opts, struct httpc_options *ho)
{
    if (!opts || opts->size < offsetof(evicorn_fetch_options, connect_timeout))
        return EVICORN_EINVAL;
    evicorn_fetch_options o = {0};
    memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
    if (!o.url || (o.flags & ~KNOWN_FLAGS) || o.max_redirects < 0)
        return EVICORN_EINVAL;
    if (o.flags & EVICORN_FETCH_INSECURE)
        warn_insecure(c, o.url);
    *ho = (struct httpc_options){
        .method = o.method,
        .url = o.url,
        .headers = (const struct http_header *)o.headers,
        .nheaders = o.nheaders,
        .body = o.body,
        .body_len = o.body_len,
        .connect_timeout = o.connect_timeout,
        .timeout = o.timeout,
        .max_response = o.max_response,
        .flags = o.flags,
        .max_redirects = o.max_redirects,
        .ca_file = o.ca_file,
    };
    return 0;
}

static int start(struct call *c, const struct httpc_options *ho, struct evicorn_exchange *f)
{
    static const struct httpc_callbacks whole = {.done = fetch_done};
    static const struct httpc_callbacks streamed = {
        .head = fetch_head, .data = fetch_data, .writable = fetch_writable, .done = fetch_done};
    f->c = c;
    f->next = c->fetches;
    if (c->fetches)
        c->fetches->prev = f;
    c->fetches = f;
    f->hr = httpc_start(c->host->httpc, ho, f->streamed ? &streamed : &whole, f);
    if (!f->hr) {
        fetch_unlink(f);
        free(f);
        return EVICORN_ENOMEM;
    }
    return 0;
}

int api_fetch(evicorn_request *req, const evicorn_fetch_options *opts, evicorn_fetch_fn fn,
              void *ud)
{
    struct call *c = call_of(req);
    if (!host_on_loop(c->host))
        return EVICORN_EPERM;
    if (!fn)
        return EVICORN_EINVAL;
    struct httpc_options ho;
    int rc = read_options(c, opts, &ho);
    if (rc < 0)
        return rc;
    if (ho.flags & EVICORN_FETCH_STREAM_BODY)
        return EVICORN_EINVAL; /* fetch_start's */
    if (c->cancelled)
        return EVICORN_EPIPE;
    if (!c->host->httpc)
        return EVICORN_EIO;
    struct evicorn_exchange *f = calloc(1, sizeof *f);
    if (!f)
        return EVICORN_ENOMEM;
    f->fn = fn;
    f->ud = ud;
    return start(c, &ho, f);
}

int api_fetch_start(evicorn_request *req, const evicorn_fetch_options *opts,
                    const evicorn_fetch_events *events, void *ud, evicorn_exchange **out)
{
    struct call *c = call_of(req);
    if (!host_on_loop(c->host))
        return EVICORN_EPERM;
    if (!events || events->size < offsetof(evicorn_fetch_events, on_head))
        return EVICORN_EINVAL;
    struct httpc_options ho;
    int rc = read_options(c, opts, &ho);
    if (rc < 0)
        return rc;
    if (c->cancelled)
        return EVICORN_EPIPE;
    if (!c->host->httpc)
        return EVICORN_EIO;
    struct evicorn_exchange *f = calloc(1, sizeof *f);
    if (!f)
        return EVICORN_ENOMEM;
    memcpy(&f->ev, events, events->size < sizeof f->ev ? events->size : sizeof f->ev);
    f->ev.size = sizeof f->ev;
    f->streamed = true;
    f->ud = ud;
    rc = start(c, &ho, f);
    if (rc == 0 && out)
        *out = f;
    return rc;
}

int api_fetch_pause(evicorn_exchange *f, int paused)
{
    if (!f)
        return EVICORN_EINVAL;
    if (!host_on_loop(f->c->host))
        return EVICORN_EPERM;
    if (!f->hr)
        return EVICORN_EPIPE;
    httpc_pause(f->hr, paused != 0);
    return 0;
}

int api_fetch_write(evicorn_exchange *f, const void *data, size_t len, int more)
{
    if (!f)
        return EVICORN_EINVAL;
    if (!host_on_loop(f->c->host))
        return EVICORN_EPERM;
    if (!f->hr)
        return EVICORN_EPIPE;
    int rc = httpc_write(f->hr, data, len, more != 0);
    if (rc >= 0)
        return rc;
    return rc == -EPIPE ? EVICORN_EPIPE : rc == -ENOMEM ? EVICORN_ENOMEM : EVICORN_EINVAL;
}

void api_fetch_cancel(evicorn_exchange *f)
{
    if (!f || !host_on_loop(f->c->host) || !f->hr)
        return;
    httpc_abort(f->hr); /* on_end follows from the loop */
}

void host_fetch_cancel_call(struct call *c)
{
    /* Each cancel runs that fetch's last event now, and plugin code there
     * may touch the list: start over after each. */
    for (;;) {
        struct evicorn_exchange *f = c->fetches;
        while (f && f->cancelling)
            f = f->next;
        if (!f)
            return;
        f->cancelling = true;
        httpc_cancel(f->hr);
    }
}
