/* redisprobe: a test-only plugin over the SDK's Redis client
 * (evicorn/redis.h). The server comes from REDIS_URL (or REDIS_HOST);
 * REDISPROBE_COMMAND_TIMEOUT sets the command timeout in seconds. Without
 * a server configured every route answers 503.
 *
 * Commands, bound to the request:
 *   GET /redisprobe/cmd?a=ARG&a=ARG...   the command, one ?a= per argument:
 *       200 {"reply": <the reply as JSON>}, or the client's error answer
 *       (503 while Redis is down, 504 on a timeout, 500 for an error
 *       reply). A client that leaves first is counted ("canceled").
 *   GET /redisprobe/incr/{key}           INCR through the printf-style call
 * Plugin-level:
 *   GET /redisprobe/bg?a=ARG...          the command with req NULL; 202 at
 *       once, its outcome later in GET /redisprobe/bg_result
 *   GET /redisprobe/publish/{channel}?data=TEXT   fire-and-forget PUBLISH:
 *       202, or 503 when Redis is known to be down
 * Subscriptions (plugin-level; each channel once):
 *   GET /redisprobe/subscribe/{channel}, /redisprobe/psubscribe/{pattern}
 *   GET /redisprobe/unsubscribe/{name}
 *   GET /redisprobe/messages/{name}  {"active", "confirmations", "messages":
 *       [{"channel", "data"}]}
 * State:
 *   GET /redisprobe/stats  the client's counters, "canceled", "pid"
 */
#define EVICORN_PLUGIN_MIN_ABI_MINOR 3
#include <evicorn/redis.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_MESSAGES 1000

struct chan {
    struct chan *next;
    evicorn_redis_sub *sub;
    int pattern;
    unsigned confirmations;
    json_t *messages;
    char name[];
};

struct probe {
    evicorn_redis *redis;
    struct chan *chans;
    unsigned canceled;
    json_t *bg_result; /* the last plugin-level outcome, or NULL */
};

static struct probe *probe_of(evicorn_request *req)
{
    return evicorn_state(req);
}

static int need_redis(evicorn_request *req, struct probe *p)
{
    if (p && p->redis)
        return 1;
    evicorn_respond_error(req, 503, "no Redis configured");
    return 0;
}

/* ---- commands ---- */

static void got_reply(evicorn_request *req, void *ud, const redisReply *reply,
                      const evicorn_redis_error *err)
{
    struct probe *p = ud;
    if (err) {
        if (err->status == EVICORN_ECANCELED)
            p->canceled++;
        evicorn_redis_respond_error(req, err);
        return;
    }
    evicorn_respond_json(req, 200, json_pack("{s:o}", "reply", evicorn_redis_reply_json(reply)));
}

/* The ?a= values as an argv; NULL when there are none. */
static json_t *args_of(evicorn_request *req)
{
    json_t *args = evicorn_query_list(req, "a");
    if (args && json_array_size(args) == 0) {
        json_decref(args);
        return NULL;
    }
    return args;
}

static int run(evicorn_request *req, struct probe *p, json_t *args, evicorn_redis_fn fn)
{
    size_t n = json_array_size(args);
    const char **argv = calloc(n, sizeof *argv);
    size_t *lens = calloc(n, sizeof *lens);
    int rc = EVICORN_ENOMEM;
    if (argv && lens) {
        for (size_t i = 0; i < n; i++) {
            argv[i] = json_string_value(json_array_get(args, i));
            lens[i] = json_string_length(json_array_get(args, i));
        }
        rc = evicorn_redis_command(req, p->redis, fn, p, (int)n, argv, lens);
    }
    free(argv);
    free(lens);
    return rc;
}

static void cmd(evicorn_request *req, void *data)
{
    (void)data;
    struct probe *p = probe_of(req);
    if (!need_redis(req, p))
        return;
    json_t *args = args_of(req);
    if (!args) {
        evicorn_respond_error(req, 422, "no ?a= arguments");
        return;
    }
    int rc = run(req, p, args, got_reply);
    json_decref(args);
    if (rc != 0)
        evicorn_respond_json(req, rc == EVICORN_EINVAL ? 422 : 500,
                             json_pack("{s:s,s:i}", "detail", "command refused", "rc", rc));
}

static void incr(evicorn_request *req, void *data)
{
    (void)data;
    struct probe *p = probe_of(req);
    if (!need_redis(req, p))
        return;
    char *key = evicorn_strdup(evicorn_path_str(req, "key", NULL));
    int rc =
        key ? evicorn_redis_commandf(req, p->redis, got_reply, p, "INCR %s", key) : EVICORN_ENOMEM;
    free(key);
    if (rc != 0)
        evicorn_respond_error(req, 500, "INCR failed");
}

static void bg_done(evicorn_request *req, void *ud, const redisReply *reply,
                    const evicorn_redis_error *err)
{
    struct probe *p = ud;
    json_decref(p->bg_result);
    if (err)
        p->bg_result =
            json_pack("{s:i,s:i,s:s,s:b}", "status", err->status, "http_status", err->http_status,
                      "message", err->message, "req_null", req == NULL);
    else
        p->bg_result = json_pack("{s:i,s:o,s:b}", "status", 0, "reply",
                                 evicorn_redis_reply_json(reply), "req_null", req == NULL);
}

static void bg(evicorn_request *req, void *data)
{
    (void)data;
    struct probe *p = probe_of(req);
    if (!need_redis(req, p))
        return;
    json_t *args = args_of(req);
    if (!args) {
        evicorn_respond_error(req, 422, "no ?a= arguments");
        return;
    }
    json_decref(p->bg_result);
    p->bg_result = NULL;
    int rc = run(NULL, p, args, bg_done);
    json_decref(args);
    evicorn_respond_json(req, rc == 0 ? 202 : 500, json_pack("{s:i}", "rc", rc));
}

static void bg_result(evicorn_request *req, void *data)
{
    (void)data;
    struct probe *p = probe_of(req);
    if (!need_redis(req, p))
        return;
    if (!p->bg_result) {
        evicorn_respond_error(req, 404, "not yet");
        return;
    }
    evicorn_respond_json(req, 200, json_incref(p->bg_result));
}

static void publish(evicorn_request *req, void *data)
{
    (void)data;
    struct probe *p = probe_of(req);
    if (!need_redis(req, p))
        return;
    char *channel = evicorn_strdup(evicorn_path_str(req, "channel", NULL));
    char *text = evicorn_query_str(req, "data", "", NULL);
    int rc = channel && text ? evicorn_redis_publish(p->redis, channel, text, strlen(text))
                             : EVICORN_ENOMEM;
    free(channel);
    free(text);
    if (rc == 0)
        evicorn_respond_json(req, 202, json_pack("{s:b}", "queued", 1));
    else
        evicorn_respond_json(req, rc == EVICORN_ECONNREFUSED ? 503 : 500,
                             json_pack("{s:s,s:i}", "detail", "not published", "rc", rc));
}

/* ---- subscriptions ---- */

static struct chan *chan_find(struct probe *p, const char *name, size_t len)
{
    for (struct chan *c = p->chans; c; c = c->next)
        if (strlen(c->name) == len && memcmp(c->name, name, len) == 0)
            return c;
    return NULL;
}

static void on_message(evicorn_redis_sub *sub, void *ud, const evicorn_redis_message *msg)
{
    struct chan *c = ud;
    (void)sub;
    if (msg->event == EVICORN_REDIS_SUBSCRIBED) {
        c->confirmations++;
        return;
    }
    if (json_array_size(c->messages) >= MAX_MESSAGES)
        return;
    json_array_append_new(c->messages, json_pack("{s:s%,s:s%}", "channel", msg->channel,
                                                 msg->channel_len, "data", msg->data, msg->len));
}

static void chan_free(struct chan *c)
{
    evicorn_redis_unsubscribe(c->sub);
    json_decref(c->messages);
    free(c);
}

static void subscribe_route(evicorn_request *req, int pattern)
{
    struct probe *p = probe_of(req);
    if (!need_redis(req, p))
        return;
    evicorn_str name = evicorn_path_str(req, "name", NULL);
    struct chan *c = chan_find(p, name.ptr, name.len);
    if (!c) {
        c = calloc(1, sizeof *c + name.len + 1);
        if (!c || !(c->messages = json_array())) {
            free(c);
            evicorn_respond_error(req, 500, "out of memory");
            return;
        }
        memcpy(c->name, name.ptr, name.len);
        c->pattern = pattern;
        int rc = pattern ? evicorn_redis_psubscribe(p->redis, c->name, on_message, c, &c->sub)
                         : evicorn_redis_subscribe(p->redis, c->name, on_message, c, &c->sub);
        if (rc != 0) {
            chan_free(c);
            evicorn_respond_json(req, 500, json_pack("{s:s,s:i}", "detail", "subscribe", "rc", rc));
            return;
        }
        c->next = p->chans;
        p->chans = c;
    }
    evicorn_respond_json(req, 200, json_pack("{s:b}", "active", evicorn_redis_sub_active(c->sub)));
}

static void subscribe(evicorn_request *req, void *data)
{
    (void)data;
    subscribe_route(req, 0);
}

static void psubscribe(evicorn_request *req, void *data)
{
    (void)data;
    subscribe_route(req, 1);
}

static void unsubscribe(evicorn_request *req, void *data)
{
    (void)data;
    struct probe *p = probe_of(req);
    if (!need_redis(req, p))
        return;
    evicorn_str name = evicorn_path_str(req, "name", NULL);
    for (struct chan **pp = &p->chans; *pp; pp = &(*pp)->next)
        if (*pp == chan_find(p, name.ptr, name.len)) {
            struct chan *c = *pp;
            *pp = c->next;
            chan_free(c);
            evicorn_respond_json(req, 200, json_pack("{s:b}", "removed", 1));
            return;
        }
    evicorn_respond_error(req, 404, NULL);
}

static void messages(evicorn_request *req, void *data)
{
    (void)data;
    struct probe *p = probe_of(req);
    if (!need_redis(req, p))
        return;
    evicorn_str name = evicorn_path_str(req, "name", NULL);
    struct chan *c = chan_find(p, name.ptr, name.len);
    if (!c) {
        evicorn_respond_error(req, 404, NULL);
        return;
    }
    evicorn_respond_json(req, 200,
                         json_pack("{s:b,s:i,s:O}", "active", evicorn_redis_sub_active(c->sub),
                                   "confirmations", (int)c->confirmations, "messages",
                                   c->messages));
}

static void stats(evicorn_request *req, void *data)
{
    (void)data;
    struct probe *p = probe_of(req);
    if (!need_redis(req, p))
        return;
    evicorn_redis_stats s;
    evicorn_redis_get_stats(p->redis, &s);
    evicorn_respond_json(req, 200,
                         json_pack("{s:i,s:b,s:b,s:I,s:I,s:I,s:I,s:I,s:i,s:s}", "pid",
                                   (int)getpid(), "connected", s.connected, "subscriber_connected",
                                   s.subscriber_connected, "pending", (json_int_t)s.pending,
                                   "subscriptions", (json_int_t)s.subscriptions, "commands",
                                   (json_int_t)s.commands, "errors", (json_int_t)s.errors,
                                   "reconnects", (json_int_t)s.reconnects, "canceled",
                                   (int)p->canceled, "server", evicorn_redis_server(p->redis)));
}

/* ---- lifespan ---- */

static int startup(void **state, char *err, size_t errlen)
{
    struct probe *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    evicorn_redis_options opts = {.size = sizeof opts};
    const char *t = getenv("REDISPROBE_COMMAND_TIMEOUT");
    if (t && *t)
        opts.command_timeout = atof(t);
    opts.reconnect_max = 0.5;
    int rc = evicorn_redis_new(&opts, &p->redis, err, errlen);
    if (rc == EVICORN_ENOENT) {
        evicorn_log(NULL, EVICORN_LOG_WARNING, "%s: every route answers 503", err);
    } else if (rc != 0) {
        free(p);
        return 1;
    }
    *state = p;
    return 0;
}

static void shutdown_(void *state)
{
    struct probe *p = state;
    if (!p)
        return;
    while (p->chans) {
        struct chan *c = p->chans;
        p->chans = c->next;
        chan_free(c);
    }
    evicorn_redis_free(p->redis);
    json_decref(p->bg_result);
    free(p);
}

static const evicorn_route routes[] = {
    EVICORN_GET("/redisprobe/cmd", cmd),
    EVICORN_GET("/redisprobe/incr/{key}", incr),
    EVICORN_GET("/redisprobe/bg", bg),
    EVICORN_GET("/redisprobe/bg_result", bg_result),
    EVICORN_GET("/redisprobe/publish/{channel}", publish),
    EVICORN_GET("/redisprobe/subscribe/{name}", subscribe),
    EVICORN_GET("/redisprobe/psubscribe/{name}", psubscribe),
    EVICORN_GET("/redisprobe/unsubscribe/{name}", unsubscribe),
    EVICORN_GET("/redisprobe/messages/{name}", messages),
    EVICORN_GET("/redisprobe/stats", stats),
};

EVICORN_PLUGIN("redisprobe", "1.0.0", routes, startup, shutdown_)
