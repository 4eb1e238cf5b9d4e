/* ws: WebSocket helpers over the host's 1.2 calls, and groups of
 * connections for broadcasting. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int evicorn_ws_accept(evicorn_request *ws, const char *subprotocol,
                      evicorn_ws_message_fn on_message, evicorn_ws_close_fn on_close, void *ud)
{
    if (!EVICORN_HAS(ws_accept))
        return EVICORN_ENOSYS;
    evicorn_ws_accept_options a = {
        .size = sizeof a,
        .subprotocol = subprotocol,
        .on_message = on_message,
        .on_close = on_close,
        .ud = ud,
    };
    return evicorn_sdk_api_->ws_accept(ws, &a);
}

int evicorn_ws_send_textn(evicorn_request *ws, const char *text, size_t len)
{
    if (!EVICORN_HAS(ws_send))
        return EVICORN_ENOSYS;
    return evicorn_sdk_api_->ws_send(ws, 0, text, len);
}

int evicorn_ws_send_text(evicorn_request *ws, const char *text)
{
    return evicorn_ws_send_textn(ws, text, text ? strlen(text) : 0);
}

int evicorn_ws_send_binary(evicorn_request *ws, const void *data, size_t len)
{
    if (!EVICORN_HAS(ws_send))
        return EVICORN_ENOSYS;
    return evicorn_sdk_api_->ws_send(ws, 1, data, len);
}

int evicorn_ws_send_json(evicorn_request *ws, json_t *value)
{
    if (!value)
        return EVICORN_ENOMEM;
    evicorn_buf b = EVICORN_BUF_INIT;
    int rc = evicorn_buf_json(&b, value);
    json_decref(value);
    if (rc == 0)
        rc = evicorn_ws_send_textn(ws, b.data, b.len);
    evicorn_buf_free(&b);
    return rc;
}

int evicorn_ws_close(evicorn_request *ws, int code, const char *reason)
{
    if (!EVICORN_HAS(ws_close))
        return EVICORN_ENOSYS;
    return evicorn_sdk_api_->ws_close(ws, code, reason, reason ? strlen(reason) : 0);
}

uint64_t evicorn_ws_id(evicorn_request *ws)
{
    return EVICORN_HAS(ws_id) ? evicorn_sdk_api_->ws_id(ws) : 0;
}

evicorn_str evicorn_ws_subprotocol(evicorn_request *ws, size_t i)
{
    evicorn_str s = {NULL, 0};
    if (EVICORN_HAS(ws_subprotocol_at) && evicorn_sdk_api_->ws_subprotocol_at(ws, i, &s) < 0)
        s = (evicorn_str){NULL, 0};
    return s;
}

/* ---- groups ---- */

struct evicorn_ws_group {
    pthread_mutex_t mu;
    evicorn_request **members;
    size_t n, cap;
};

evicorn_ws_group *evicorn_ws_group_new(void)
{
    evicorn_ws_group *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    if (pthread_mutex_init(&g->mu, NULL) != 0) {
        free(g);
        return NULL;
    }
    return g;
}

void evicorn_ws_group_free(evicorn_ws_group *g)
{
    if (!g)
        return;
    pthread_mutex_destroy(&g->mu);
    free(g->members);
    free(g);
}

/* Index of ws, or n. The caller holds the lock. */
static size_t find(const evicorn_ws_group *g, const evicorn_request *ws)
{
    size_t i = 0;
    while (i < g->n && g->members[i] != ws)
        i++;
    return i;
}

int evicorn_ws_group_add(evicorn_ws_group *g, evicorn_request *ws)
{
    int rc = 0;
    pthread_mutex_lock(&g->mu);
    if (find(g, ws) == g->n) {
        if (g->n == g->cap) {
            size_t cap = g->cap ? g->cap * 2 : 16;
            evicorn_request **m = realloc(g->members, cap * sizeof *m);
            if (!m)
                rc = EVICORN_ENOMEM;
            else {
                g->members = m;
                g->cap = cap;
            }
        }
        if (rc == 0)
            g->members[g->n++] = ws;
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

void evicorn_ws_group_remove(evicorn_ws_group *g, evicorn_request *ws)
{
    pthread_mutex_lock(&g->mu);
    size_t i = find(g, ws);
    if (i < g->n)
        g->members[i] = g->members[--g->n]; /* order does not matter */
    pthread_mutex_unlock(&g->mu);
}

size_t evicorn_ws_group_size(evicorn_ws_group *g)
{
    pthread_mutex_lock(&g->mu);
    size_t n = g->n;
    pthread_mutex_unlock(&g->mu);
    return n;
}

size_t evicorn_ws_group_broadcast(evicorn_ws_group *g, int binary, const void *data, size_t len)
{
    if (!EVICORN_HAS(ws_send))
        return 0;
    size_t sent = 0;
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->n; i++)
        if (evicorn_sdk_api_->ws_send(g->members[i], binary, data, len) == 0)
            sent++;
    pthread_mutex_unlock(&g->mu);
    return sent;
}
