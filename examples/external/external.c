/* external: calling another HTTP service from an async route.
 *
 *   GET /external-api -> the upstream's JSON body, with its status
 *
 * FastAPI's `async with httpx.AsyncClient() as c: r = await c.get(url)`.
 * The upstream URL is EVICORN_EXTERNAL_API_URL, by default this server's
 * own /json. It may be https:// (on a 1.4 server) with nothing to change
 * here: the server's client verifies the certificate against the system's
 * store, or the bundle in SSL_CERT_FILE, and keeps the connection alive for
 * the next request. Failures answer as a gateway: 502 when the upstream
 * refuses, is unreachable, fails TLS verification or sends something that
 * is not JSON, 504 when it does not answer within
 * EVICORN_EXTERNAL_API_TIMEOUT seconds (default 5).
 *
 * The settings are read once, in the lifespan startup, into the plugin's
 * state; shutdown frees them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evicorn/sdk.h>

#define DEFAULT_TIMEOUT 5.0

struct settings {
    char *url; /* NULL: this server's /json */
    double timeout;
};

static int plugin_startup(void **state, char *err, size_t errlen)
{
    struct settings *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->timeout = DEFAULT_TIMEOUT;
    const char *url = getenv("EVICORN_EXTERNAL_API_URL");
    if (url && *url && !(s->url = strdup(url))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *t = getenv("EVICORN_EXTERNAL_API_TIMEOUT");
    if (t && *t) {
        if (evicorn_parse_float(t, strlen(t), &s->timeout) < 0 || !(s->timeout > 0) ||
            s->timeout > 86400) {
            snprintf(err, errlen, "EVICORN_EXTERNAL_API_TIMEOUT=%s is not a number of seconds", t);
            free(s->url);
            free(s);
            return -1;
        }
    }
    *state = s;
    return 0;
}

static void plugin_shutdown(void *state)
{
    struct settings *s = state;
    if (s)
        free(s->url);
    free(s);
}

/* http://<host>:<port>/json for the address this request came in on. */
static int own_json_url(evicorn_request *req, char *out, size_t size)
{
    evicorn_str host = evicorn_server_host(req);
    int port = evicorn_server_port(req);
    if (port <= 0)
        return -1; /* a unix socket: no URL reaches it */
    if (host.len == 0 || (host.len == 7 && memcmp(host.ptr, "0.0.0.0", 7) == 0))
        host = (evicorn_str){"127.0.0.1", 9};
    else if (host.len == 2 && memcmp(host.ptr, "::", 2) == 0)
        host = (evicorn_str){"::1", 3};
    int v6 = memchr(host.ptr, ':', host.len) != NULL;
    int n = snprintf(out, size, "http://%s%.*s%s:%d/json", v6 ? "[" : "", (int)host.len, host.ptr,
                     v6 ? "]" : "", port);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

static void upstream_done(evicorn_request *req, void *ud, const evicorn_fetch_result *res)
{
    (void)ud;
    if (res->error == EVICORN_ECANCELED)
        return; /* the client left */
    if (res->error) {
        evicorn_fetch_respond_error(req, res);
        return;
    }
    json_error_t jerr;
    json_t *v = json_loadb(res->body, res->body_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v) {
        evicorn_log(req, EVICORN_LOG_WARNING,
                    "upstream answered %d with a body that is not JSON: %s", res->status_code,
                    jerr.text);
        evicorn_respond_error(req, 502, "upstream answered with invalid JSON");
        return;
    }
    evicorn_respond_json(req, res->status_code, v);
}

static void external_api(evicorn_request *req, void *data)
{
    (void)data;
    const struct settings *s = evicorn_state(req);
    char own[300];
    const char *url = s->url;
    if (!url) {
        if (own_json_url(req, own, sizeof own) < 0) {
            evicorn_respond_error(req, 502, "no upstream URL: set EVICORN_EXTERNAL_API_URL");
            return;
        }
        url = own;
    }
    int rc = evicorn_fetch_get(req, url, s->timeout, upstream_done, NULL);
    if (rc < 0 && rc != EVICORN_EPIPE) {
        evicorn_log(req, EVICORN_LOG_ERROR, "cannot fetch %s (%d)", url, rc);
        evicorn_respond_error(req, 502, "upstream request failed: cannot start the request");
    }
}

static const evicorn_route routes[] = {
    EVICORN_GET("/external-api", external_api),
};

EVICORN_PLUGIN("external", "1.0.0", routes, plugin_startup, plugin_shutdown)
