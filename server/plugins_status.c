/* plugins_status: the --status-path page: this worker's plugins, their
 * generations (active and draining), routes and in-flight counts, as JSON.
 * Reads the registry; changes nothing. */
#include <stdio.h>
#include <unistd.h>

#include "json.h"
#include "plugins_internal.h"

static int status_generation(struct buf *b, const struct generation *g, bool *first)
{
    char num[160];
    if (!*first && buf_append(b, ",", 1) < 0)
        return -1;
    *first = false;
    if (buf_append_str(b, "{\"file\":") < 0 || json_append_string(b, g->file) < 0 ||
        buf_append_str(b, ",\"name\":") < 0 || json_append_string(b, generation_name(g)) < 0 ||
        buf_append_str(b, ",\"version\":") < 0 || json_append_string(b, g->desc.version) < 0)
        return -1;
    snprintf(num, sizeof num,
             ",\"generation\":%u,\"state\":\"%s\",\"in_flight\":%ld,\"references\":%u,"
             "\"mapped_copy\":",
             g->id, g->retired ? "draining" : "active", g->inflight, g->refs);
    if (buf_append_str(b, num) < 0 || json_append_string(b, g->copy) < 0 ||
        buf_append_str(b, ",\"routes\":[") < 0)
        return -1;
    for (size_t i = 0; i < g->nroutes; i++) {
        const struct route_entry *re = &g->routes[i];
        if ((i && buf_append(b, ",", 1) < 0) || buf_append_str(b, "{\"method\":") < 0 ||
            json_append_string(b, re->method) < 0 || buf_append_str(b, ",\"path\":") < 0 ||
            json_append_string(b, re->path) < 0 || buf_append_str(b, ",\"kind\":") < 0 ||
            json_append_string(b, re->kind == EVICORN_SYNC ? "sync" : "async") < 0 ||
            (re->websocket && buf_append_str(b, ",\"websocket\":true") < 0) ||
            buf_append(b, "}", 1) < 0)
            return -1;
    }
    return buf_append_str(b, "]}");
}

int plugins_status_json(const struct plugins *p, struct buf *b)
{
    char head[128];
    snprintf(head, sizeof head, "{\"worker\":%d,\"pid\":%d,\"plugins\":[", p->worker,
             (int)getpid());
    if (buf_append_str(b, head) < 0)
        return -1;
    bool first = true;
    for (const struct generation *g = p->active; g; g = g->next)
        if (status_generation(b, g, &first) < 0)
            return -1;
    for (const struct generation *g = p->retired; g; g = g->next)
        if (status_generation(b, g, &first) < 0)
            return -1;
    return buf_append_str(b, "]}");
}
