/* proxy: a reverse proxy route, streaming an upstream's response through.
 *
 *   GET /proxy/{path:path}?<query> -> <EVICORN_PROXY_UPSTREAM>/<path>?<query>
 *
 * The upstream's status, headers (without the hop-by-hop ones, with
 * `Via: 1.1 evicorn` added) and body reach the client as they arrive, at
 * the pace the client reads: while it is slow the upstream is not read
 * (evicorn_fetch_proxy). The client's request headers go upstream too,
 * except Host and the hop-by-hop ones. A failure before the upstream
 * answered is a 502 (504 for a timeout) with a detail.
 *
 * EVICORN_PROXY_UPSTREAM is the base URL (http:// or https://, e.g.
 * http://127.0.0.1:9000/static); without it the plugin refuses to load,
 * and the server serves the other plugins. EVICORN_PROXY_TIMEOUT bounds a
 * whole exchange, body included (seconds, default 60). Needs a 1.4 server
 * (streamed fetch). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVICORN_PLUGIN_MIN_ABI_MINOR 4
#include <evicorn/sdk.h>

#define ROUTE_PREFIX    "/proxy/"
#define DEFAULT_TIMEOUT 60.0

struct settings {
    char *base; /* without a trailing '/' */
    double timeout;
};

static int refuse(char *err, size_t errlen, struct settings *s, const char *why)
{
    snprintf(err, errlen, "%s", why);
    if (s)
        free(s->base);
    free(s);
    return -1;
}

static int plugin_startup(void **state, char *err, size_t errlen)
{
    const char *base = getenv("EVICORN_PROXY_UPSTREAM");
    if (!base || !*base)
        return refuse(err, errlen, NULL,
                      "no upstream configured: set EVICORN_PROXY_UPSTREAM to a base URL, "
                      "e.g. http://127.0.0.1:9000");
    if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0)
        return refuse(err, errlen, NULL,
                      "EVICORN_PROXY_UPSTREAM must be an http:// or https:// URL");
    if (strpbrk(base, "?#"))
        return refuse(err, errlen, NULL,
                      "EVICORN_PROXY_UPSTREAM must be a base URL, without '?' or '#'");
    if (!EVICORN_HAS(fetch_start))
        return refuse(err, errlen, NULL, "this server has no streamed fetch (ABI 1.4)");
    struct settings *s = calloc(1, sizeof *s);
    if (!s || !(s->base = strdup(base)))
        return refuse(err, errlen, s, "out of memory");
    size_t n = strlen(s->base);
    while (n > 0 && s->base[n - 1] == '/')
        s->base[--n] = '\0';
    s->timeout = DEFAULT_TIMEOUT;
    const char *t = getenv("EVICORN_PROXY_TIMEOUT");
    if (t && *t &&
        (evicorn_parse_float(t, strlen(t), &s->timeout) < 0 || !(s->timeout > 0) ||
         s->timeout > 86400))
        return refuse(err, errlen, s, "EVICORN_PROXY_TIMEOUT is not a number of seconds");
    *state = s;
    return 0;
}

static void plugin_shutdown(void *state)
{
    struct settings *s = state;
    if (s)
        free(s->base);
    free(s);
}

/* Whether the decoded path has a "." or ".." segment: the upstream (or
 * the client library) would resolve it, and ".." could leave the base
 * URL's path. */
static int has_dot_segment(evicorn_str p)
{
    size_t i = 0;
    while (i <= p.len) {
        size_t j = i;
        while (j < p.len && p.ptr[j] != '/')
            j++;
        size_t n = j - i;
        if ((n == 1 && p.ptr[i] == '.') || (n == 2 && p.ptr[i] == '.' && p.ptr[i + 1] == '.'))
            return 1;
        i = j + 1;
    }
    return 0;
}

/* Appends the path as received (still percent-encoded, so "%2F" stays
 * what it was); when the raw path does not start with the route's prefix
 * (an encoded prefix), the decoded parameter re-encoded. */
static void append_path(evicorn_buf *url, evicorn_request *req, evicorn_str decoded)
{
    evicorn_str raw = evicorn_raw_path(req);
    size_t plen = sizeof ROUTE_PREFIX - 1;
    if (raw.len >= plen && memcmp(raw.ptr, ROUTE_PREFIX, plen) == 0) {
        evicorn_buf_append(url, raw.ptr + plen, raw.len - plen);
        return;
    }
    static const char keep[] = "-._~!$&'()*+,;=:@/";
    for (size_t i = 0; i < decoded.len; i++) {
        unsigned char c = (unsigned char)decoded.ptr[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            (c && strchr(keep, c)))
            evicorn_buf_append(url, &decoded.ptr[i], 1);
        else
            evicorn_buf_printf(url, "%%%02X", c);
    }
}

static void proxy(evicorn_request *req, void *data)
{
    (void)data;
    const struct settings *s = evicorn_state(req);
    evicorn_str path = evicorn_path_str(req, "path", NULL);
    if (has_dot_segment(path)) {
        evicorn_respond_error(req, 400, "'.' and '..' segments are not proxied");
        return;
    }
    evicorn_buf url = EVICORN_BUF_INIT;
    evicorn_buf_printf(&url, "%s/", s->base);
    append_path(&url, req, path);
    evicorn_str query = evicorn_query_string(req);
    if (query.len) {
        evicorn_buf_puts(&url, "?");
        evicorn_buf_append(&url, query.ptr, query.len);
    }
    char *method = evicorn_strdup(evicorn_method(req));
    if (url.failed || !method) {
        evicorn_buf_free(&url);
        free(method);
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    evicorn_fetch_options o = {
        .size = sizeof o,
        .method = method,
        .url = url.data,
        .timeout = s->timeout,
    };
    evicorn_fetch_proxy_options p = {
        .size = sizeof p,
        .flags = EVICORN_PROXY_CLIENT_HEADERS,
    };
    int rc = evicorn_fetch_proxy(req, &o, &p);
    if (rc < 0 && rc != EVICORN_EPIPE) {
        evicorn_log(req, EVICORN_LOG_ERROR, "cannot proxy to %s (%d)", url.data, rc);
        evicorn_respond_error(req, 502, "upstream request failed: cannot start the request");
    }
    evicorn_buf_free(&url);
    free(method);
}

static const evicorn_route routes[] = {
    EVICORN_GET("/proxy/{path:path}", proxy),
};

EVICORN_PLUGIN("proxy", "1.0.0", routes, plugin_startup, plugin_shutdown)
