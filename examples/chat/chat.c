/* chat: WebSocket routes.
 *
 *   GET /ws/echo          every text and binary message comes back as it was
 *   GET /ws/chat/{room}   each text message goes to every connection in the
 *                         room on this worker as {"from": <id>, "text": ...}
 *
 * Both are async: their events run on the worker's loop, so the rooms need
 * no lock of their own (the groups have one anyway). */
#define EVICORN_PLUGIN_MIN_ABI_MINOR 2
#include <evicorn/sdk.h>

#include <stdlib.h>
#include <string.h>

/* ---- /ws/echo ---- */

static void echo_message(evicorn_request *ws, void *ud, int binary, const char *data, size_t len)
{
    (void)ud;
    if (binary)
        evicorn_ws_send_binary(ws, data, len);
    else
        evicorn_ws_send_textn(ws, data, len);
}

static void echo(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_ws_accept(req, NULL, echo_message, NULL, NULL);
}

/* ---- /ws/chat/{room} ---- */

struct room {
    struct room *next;
    evicorn_ws_group *members;
    unsigned users;
    char name[];
};

static struct room *rooms;

static struct room *room_join(const evicorn_str *name)
{
    struct room *r = rooms;
    while (r && !(strlen(r->name) == name->len && memcmp(r->name, name->ptr, name->len) == 0))
        r = r->next;
    if (!r) {
        r = calloc(1, sizeof *r + name->len + 1);
        if (!r)
            return NULL;
        r->members = evicorn_ws_group_new();
        if (!r->members) {
            free(r);
            return NULL;
        }
        memcpy(r->name, name->ptr, name->len);
        r->next = rooms;
        rooms = r;
    }
    r->users++;
    return r;
}

static void room_leave(struct room *r, evicorn_request *ws)
{
    evicorn_ws_group_remove(r->members, ws);
    if (--r->users > 0)
        return;
    for (struct room **pp = &rooms; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    evicorn_ws_group_free(r->members);
    free(r);
}

static void chat_message(evicorn_request *ws, void *ud, int binary, const char *data, size_t len)
{
    struct room *r = ud;
    if (binary)
        return;
    evicorn_buf b = EVICORN_BUF_INIT;
    evicorn_buf_printf(&b, "{\"from\":%llu,\"text\":", (unsigned long long)evicorn_ws_id(ws));
    evicorn_buf_json_string(&b, data, len);
    evicorn_buf_puts(&b, "}");
    if (!b.failed)
        evicorn_ws_group_broadcast(r->members, 0, b.data, b.len);
    evicorn_buf_free(&b);
}

static void chat_close(evicorn_request *ws, void *ud, int code, const char *reason, size_t len)
{
    (void)code;
    (void)reason;
    (void)len;
    room_leave(ud, ws);
}

static void chat(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_str name = evicorn_path_str(req, "room", NULL);
    struct room *r = room_join(&name);
    if (!r) {
        evicorn_respond_error(req, 503, NULL);
        return;
    }
    if (evicorn_ws_accept(req, NULL, chat_message, chat_close, r) != 0) {
        room_leave(r, req);
        return;
    }
    if (evicorn_ws_group_add(r->members, req) != 0)
        evicorn_ws_close(req, EVICORN_WS_INTERNAL_ERROR, "out of memory");
}

static const evicorn_route routes[] = {
    EVICORN_WS("/ws/echo", echo),
    EVICORN_WS("/ws/chat/{room}", chat),
};

EVICORN_PLUGIN("chat", "1.0.0", routes, NULL, NULL)
