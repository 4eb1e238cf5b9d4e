/* host_scope: the request-scope getters of the ABI (ASGI's scope). They
 * read what does not change after dispatch, so any thread may call them. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "host_internal.h"
#include "listener.h"
#include "log.h"
#include "plugins.h"
#include "request.h"

static evicorn_str str_of(const char *p, size_t n)
{
    return (evicorn_str){p ? p : "", p ? n : 0};
}

static evicorn_str cstr(const char *s)
{
    return str_of(s, s ? strlen(s) : 0);
}

/* The plugin file whose code is at addr, e.g. "asgi.so", into buf; NULL
 * when addr is not in a plugin. Plugins are mapped from private copies
 * named "p<pid>-u<n>-g<n>-<file>" (plugins.c), so the name needs no lookup
 * in the loop thread's registry and works from any thread. */
static const char *plugin_file_at(const void *addr, char *buf, size_t len)
{
    Dl_info info;
    if (!dladdr(addr, &info) || !info.dli_fname)
        return NULL;
    const char *base = strrchr(info.dli_fname, '/');
    base = base ? base + 1 : info.dli_fname;
    if (base[0] != 'p')
        return NULL;
    for (int dashes = 0; dashes < 3; dashes++) {
        base = strchr(base, '-');
        if (!base)
            return NULL;
        base++;
    }
    snprintf(buf, len, "%s", base);
    return buf;
}

void api_log(evicorn_request *req, int level, const char *message)
{
    if (level < LOG_CRITICAL)
        level = LOG_CRITICAL;
    if (level > LOG_TRACE)
        level = LOG_TRACE;
    if (!log_enabled((enum log_level)level))
        return;
    char file[256];
    const char *who = req ? generation_name(call_of(req)->gen)
                          : plugin_file_at(__builtin_return_address(0), file, sizeof file);
    /* Code linked into the server itself (the ASGI bridge inside Python)
     * speaks as the server, as uvicorn's lines do. */
    if (who)
        log_msg((enum log_level)level, "%s: %s", who, message ? message : "");
    else
        log_msg((enum log_level)level, "%s", message ? message : "");
}

evicorn_str api_method(evicorn_request *req)
{
    size_t n;
    const char *p = request_method(call_of(req)->r, &n);
    return str_of(p, n);
}

evicorn_str api_path(evicorn_request *req)
{
    size_t n;
    const char *p = request_path(call_of(req)->r, &n);
    return str_of(p, n);
}

evicorn_str api_raw_path(evicorn_request *req)
{
    size_t n;
    const char *p = request_raw_path(call_of(req)->r, &n);
    return str_of(p, n);
}

evicorn_str api_query_string(evicorn_request *req)
{
    size_t n;
    const char *p = request_query(call_of(req)->r, &n);
    return str_of(p, n);
}

evicorn_str api_root_path(evicorn_request *req)
{
    return cstr(call_of(req)->host->cfg->root_path);
}

evicorn_str api_scheme(evicorn_request *req)
{
    return cstr(request_scheme(call_of(req)->r));
}

evicorn_str api_http_version(evicorn_request *req)
{
    int major, minor;
    request_http_version(call_of(req)->r, &major, &minor);
    return minor ? str_of("1.1", 3) : str_of("1.0", 3);
}

/* A unix-domain socket has no host or port: "" and 0, as uvicorn's scope
 * has none. */
evicorn_str api_client_host(evicorn_request *req)
{
    return cstr(request_client(call_of(req)->r)->ip);
}

int api_client_port(evicorn_request *req)
{
    return request_client(call_of(req)->r)->port;
}

evicorn_str api_server_host(evicorn_request *req)
{
    return cstr(call_of(req)->host->listener->addr.ip);
}

int api_server_port(evicorn_request *req)
{
    return call_of(req)->host->listener->addr.port;
}

size_t api_header_count(evicorn_request *req)
{
    return request_header_count(call_of(req)->r);
}

int api_header_at(evicorn_request *req, size_t i, evicorn_header *out)
{
    struct request *r = call_of(req)->r;
    if (!out || i >= request_header_count(r))
        return EVICORN_ENOENT;
    request_header_at(r, i, &out->name, &out->name_len, &out->value, &out->value_len);
    return 0;
}

int api_header(evicorn_request *req, const char *name, evicorn_str *value)
{
    size_t n;
    const char *v = name ? request_header(call_of(req)->r, name, &n) : NULL;
    if (!v)
        return EVICORN_ENOENT;
    if (value)
        *value = str_of(v, n);
    return 0;
}

size_t api_param_count(evicorn_request *req)
{
    return call_of(req)->nparams;
}

int api_param_at(evicorn_request *req, size_t i, evicorn_str *name, evicorn_str *value)
{
    const struct call *c = call_of(req);
    if (i >= c->nparams)
        return EVICORN_ENOENT;
    if (name)
        *name = str_of(c->params[i].name, c->params[i].name_len);
    if (value)
        *value = str_of(c->params[i].value, c->params[i].value_len);
    return 0;
}

int api_param(evicorn_request *req, const char *name, evicorn_str *value)
{
    const struct call *c = call_of(req);
    size_t n = name ? strlen(name) : 0;
    for (size_t i = 0; i < c->nparams; i++)
        if (c->params[i].name_len == n && memcmp(c->params[i].name, name, n) == 0) {
            if (value)
                *value = str_of(c->params[i].value, c->params[i].value_len);
            return 0;
        }
    return EVICORN_ENOENT;
}

evicorn_str api_route(evicorn_request *req)
{
    return cstr(call_of(req)->re->path);
}

void *api_state(evicorn_request *req)
{
    return generation_state(call_of(req)->gen);
}

evicorn_str api_body(evicorn_request *req)
{
    struct call *c = call_of(req);
    if (!c->body_ready)
        return str_of("", 0);
    return str_of(buf_start(&c->body), buf_size(&c->body));
}
