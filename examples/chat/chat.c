/* chat: WebSocket routes.
 *
 *   GET /ws/echo          every text and binary message comes back as it was
 *   GET /ws/chat/{room}   each text message goes to every connection in the
 *                         room on this worker as {"from": <id>, "text": ...}
 *   GET /ws/rooms/{room}  a room shared by every worker and every server
 *                         using the same Redis: a text message is published
 *                         to the channel "chat:<room>" as {"from":
 *                         "<pid>-<id>", "text": ...}, and each worker
 *                         subscribed to it hands it to its own members. A
 *                         member is first told {"you": "<pid>-<id>",
 *                         "room": ..., "worker": <pid>} once the worker's
 *                         subscription is confirmed. Redis comes from
 *                         REDIS_URL (or REDIS_HOST); without it the route
 *                         answers the handshake with 503.
 *
 * All are async: their events run on the worker's loop, so the rooms need
 * no lock of their own (the groups have one anyway). */
#define EVICORN_PLUGIN_MIN_ABI_MINOR 2
#include <evicorn/sdk.h>
#ifdef CHAT_WITH_REDIS
#include <evicorn/redis.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ---- /ws/rooms/{room} ---- */

#ifdef CHAT_WITH_REDIS
struct rmember {
    struct rmember *next;
    struct rroom *room;
    evicorn_request *ws;
    int welcomed;
    char id[48]; /* "<pid>-<ws_id>": unique across workers */
};

/* A room with members on this worker, subscribed to its channel. */
struct rroom {
    struct rroom *next;
    evicorn_redis_sub *sub;
    struct rmember *members;
    char *name;
    char channel[]; /* "chat:<room>" */
};

static evicorn_redis *redis; /* this worker's client; NULL without Redis */
static struct rroom *rrooms;

static void rroom_welcome(struct rmember *m)
{
    evicorn_buf b = EVICORN_BUF_INIT;
    evicorn_buf_printf(&b, "{\"you\":\"%s\",\"room\":", m->id);
    evicorn_buf_json_string(&b, m->room->name, strlen(m->room->name));
    evicorn_buf_printf(&b, ",\"worker\":%ld}", (long)getpid());
    if (!b.failed && evicorn_ws_send_textn(m->ws, b.data, b.len) == 0)
        m->welcomed = 1;
    evicorn_buf_free(&b);
}

/* Messages of the room's channel, from any worker or server. */
static void rroom_event(evicorn_redis_sub *sub, void *ud, const evicorn_redis_message *msg)
{
    struct rroom *r = ud;
    (void)sub;
    for (struct rmember *m = r->members; m; m = m->next) {
        if (msg->event == EVICORN_REDIS_SUBSCRIBED && !m->welcomed)
            rroom_welcome(m);
        else if (msg->event == EVICORN_REDIS_MESSAGE)
            evicorn_ws_send_textn(m->ws, msg->data, msg->len);
    }
}

static struct rroom *rroom_get(const evicorn_str *name)
{
    static const char prefix[] = "chat:";
    struct rroom *r = rrooms;
    size_t plen = sizeof prefix - 1;
    while (r && !(strlen(r->channel) == plen + name->len &&
                  memcmp(r->channel + plen, name->ptr, name->len) == 0))
        r = r->next;
    if (r)
        return r;
    r = calloc(1, sizeof *r + plen + name->len + 1);
    if (!r)
        return NULL;
    memcpy(r->channel, prefix, plen);
    memcpy(r->channel + plen, name->ptr, name->len);
    r->name = r->channel + plen;
    if (evicorn_redis_subscribe(redis, r->channel, rroom_event, r, &r->sub) != 0) {
        free(r);
        return NULL;
    }
    r->next = rrooms;
    rrooms = r;
    return r;
}

/* Frees the room once it has no member left. */
static void rroom_maybe_free(struct rroom *r)
{
    if (r->members)
        return;
    for (struct rroom **pp = &rrooms; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    evicorn_redis_unsubscribe(r->sub);
    free(r);
}

static void rroom_leave(struct rmember *m)
{
    struct rroom *r = m->room;
    for (struct rmember **pp = &r->members; *pp; pp = &(*pp)->next)
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    free(m);
    rroom_maybe_free(r);
}

static void rooms_message(evicorn_request *ws, void *ud, int binary, const char *data, size_t len)
{
    struct rmember *m = ud;
    if (binary)
        return;
    evicorn_buf b = EVICORN_BUF_INIT;
    evicorn_buf_printf(&b, "{\"from\":\"%s\",\"text\":", m->id);
    evicorn_buf_json_string(&b, data, len);
    evicorn_buf_puts(&b, "}");
    int rc =
        b.failed ? EVICORN_ENOMEM : evicorn_redis_publish(redis, m->room->channel, b.data, b.len);
    evicorn_buf_free(&b);
    if (rc != 0) {
        /* Nobody got it, this member included: say so rather than drop it. */
        char err[256];
        snprintf(err, sizeof err, "{\"error\":\"not delivered: redis %s is unavailable\"}",
                 evicorn_redis_server(redis));
        evicorn_ws_send_text(ws, err);
    }
}

static void rooms_close(evicorn_request *ws, void *ud, int code, const char *reason, size_t len)
{
    (void)ws;
    (void)code;
    (void)reason;
    (void)len;
    rroom_leave(ud);
}

static void shared_room(evicorn_request *req, void *data)
{
    (void)data;
    if (!redis) {
        evicorn_respond_error(req, 503, "chat rooms need Redis (REDIS_URL)");
        return;
    }
    evicorn_str name = evicorn_path_str(req, "room", NULL);
    struct rroom *r = rroom_get(&name);
    struct rmember *m = r ? calloc(1, sizeof *m) : NULL;
    if (!m) {
        if (r)
            rroom_maybe_free(r);
        evicorn_respond_error(req, 503, NULL);
        return;
    }
    m->room = r;
    m->ws = req;
    if (evicorn_ws_accept(req, NULL, rooms_message, rooms_close, m) != 0) {
        free(m);
        rroom_maybe_free(r);
        return;
    }
    snprintf(m->id, sizeof m->id, "%ld-%llu", (long)getpid(),
             (unsigned long long)evicorn_ws_id(req));
    m->next = r->members;
    r->members = m;
    if (evicorn_redis_sub_active(r->sub))
        rroom_welcome(m);
}

static int chat_startup(void **state, char *err, size_t errlen)
{
    (void)state;
    char why[256];
    int rc = evicorn_redis_new(NULL, &redis, why, sizeof why);
    if (rc != 0)
        evicorn_log(NULL, rc == EVICORN_ENOENT ? EVICORN_LOG_INFO : EVICORN_LOG_WARNING,
                    "/ws/rooms/{room} answers 503: %s", why);
    (void)err;
    (void)errlen;
    return 0;
}

static void chat_shutdown(void *state)
{
    (void)state;
    /* Every connection has closed by now, so every room is gone. */
    evicorn_redis_free(redis);
    redis = NULL;
}
#else
static void shared_room(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_respond_error(req, 503, "this chat was built without Redis (hiredis)");
}
#define chat_startup  NULL
#define chat_shutdown NULL
#endif

static const evicorn_route routes[] = {
    EVICORN_WS("/ws/echo", echo),
    EVICORN_WS("/ws/chat/{room}", chat),
    EVICORN_WS("/ws/rooms/{room}", shared_room),
};

EVICORN_PLUGIN("chat", "1.0.0", routes, chat_startup, chat_shutdown)
