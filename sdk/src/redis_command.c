/* redis_command: commands and their continuations.
 *
 * A command with a callback is a struct rcmd with two owners: hiredis,
 * which holds it as the privdata of the reply callback until it calls
 * that callback (exactly once: with the reply, or with NULL when the
 * context goes away), and the caller's continuation, which waits on a
 * timer watch (bound to the request, or to the plugin for req == NULL).
 * Whichever comes first delivers: the reply; the timer (command timeout,
 * or an error found before sending, delivered on the next loop
 * iteration so the callback never runs inside the call); or the
 * request's ECANCELED. The continuation is then detached (fn = NULL, the
 * watch cancelled) and the struct is freed once hiredis has let go of it
 * too, so a reply that comes after a timeout or a disconnect is dropped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "redis_internal.h"

/* An error found before the command was sent is delivered this soon:
 * the next loop iteration. */
#define EARLY_DELAY 1e-6

static int http_status_of(int status)
{
    switch (status) {
    case 0:
    case EVICORN_ECANCELED:
        return 0;
    case EVICORN_ECONNREFUSED:
    case EVICORN_EIO:
    case EVICORN_EBUSY:
        return 503;
    case EVICORN_ETIMEDOUT:
        return 504;
    default:
        return 500;
    }
}

static void cmd_link(struct evicorn_redis *c, struct rcmd *m)
{
    m->next = c->pending;
    if (c->pending)
        c->pending->prev = m;
    c->pending = m;
    c->npending++;
}

static void cmd_unlink(struct rcmd *m)
{
    struct evicorn_redis *c = m->client;
    if (m->prev)
        m->prev->next = m->next;
    else
        c->pending = m->next;
    if (m->next)
        m->next->prev = m->prev;
    m->prev = m->next = NULL;
    c->npending--;
}

static void cmd_maybe_free(struct rcmd *m)
{
    if (!m->fn && !m->watch && !m->in_hiredis)
        free(m);
}

/* Runs the continuation once and detaches it. The watch goes only after
 * fn has returned: it is what keeps the request open, and a reply
 * arrives from the connection's watch, outside the request's own
 * callbacks, so cancelling it first would finish the request (answer
 * 500 and free it) before fn could respond. */
static void cmd_deliver(struct rcmd *m, const redisReply *reply, int status, const char *msg)
{
    evicorn_redis_fn fn = m->fn;
    if (!fn)
        return;
    m->fn = NULL;
    cmd_unlink(m);
    if (status == 0) {
        fn(m->req, m->ud, reply, NULL);
    } else {
        m->client->errors++;
        evicorn_redis_error err = {status, http_status_of(status), msg};
        fn(m->req, m->ud, reply, &err);
    }
    if (m->watch)
        evicorn_watch_cancel(m->watch);
    m->watch = NULL;
}

void redis_null_reply_error(struct rconn *rc, redisAsyncContext *ac, int *status, char *msg,
                            size_t size)
{
    const char *server = rc->client->server;
    if (rc->ac != ac) {
        *status = rc->drop_status ? rc->drop_status : EVICORN_EIO;
        snprintf(msg, size, "%s", rc->drop_msg[0] ? rc->drop_msg : "redis: connection closed");
    } else if (rc->state == RCONN_UP) {
        *status = EVICORN_EIO;
        snprintf(msg, size, "redis %s: connection lost with the command in flight: %s", server,
                 ac->errstr ? ac->errstr : "closed");
    } else {
        *status = EVICORN_ECONNREFUSED;
        snprintf(msg, size, "redis %s: cannot connect: %s", server,
                 ac->errstr ? ac->errstr : "closed");
    }
}

void redis_command_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct rcmd *m = privdata;
    const redisReply *r = reply;
    char msg[REDIS_MSG_MAX];
    m->in_hiredis = 0;
    if (m->fn) {
        if (!r) {
            int status;
            redis_null_reply_error(&m->client->cmd, ac, &status, msg, sizeof msg);
            cmd_deliver(m, NULL, status, msg);
        } else if (r->type == REDIS_REPLY_ERROR) {
            snprintf(msg, sizeof msg, "redis %s: %.*s", m->client->server, (int)r->len, r->str);
            cmd_deliver(m, r, EVICORN_EINVAL, msg);
        } else {
            cmd_deliver(m, r, 0, NULL);
        }
    }
    cmd_maybe_free(m);
}

static void on_timer(evicorn_watch *w, void *ud, unsigned events, int status)
{
    struct rcmd *m = ud;
    struct evicorn_redis *c = m->client;
    char msg[REDIS_MSG_MAX];
    (void)w;
    if (status != 0) {
        m->watch = NULL; /* gone with the request */
        snprintf(msg, sizeof msg, "redis %s: the client disconnected", c->server);
        cmd_deliver(m, NULL, EVICORN_ECANCELED, msg);
    } else if (events & EVICORN_TIMEOUT) {
        switch (m->early_status) {
        case 0:
            snprintf(msg, sizeof msg, "redis %s: no reply within %g s", c->server,
                     c->command_timeout);
            cmd_deliver(m, NULL, EVICORN_ETIMEDOUT, msg);
            break;
        case EVICORN_ECONNREFUSED:
            if (c->last_error[0])
                snprintf(msg, sizeof msg, "%s", c->last_error);
            else
                snprintf(msg, sizeof msg, "redis %s: not connected", c->server);
            cmd_deliver(m, NULL, m->early_status, msg);
            break;
        case EVICORN_EBUSY:
            snprintf(msg, sizeof msg, "redis %s: too many commands pending (%d)", c->server,
                     c->max_pending);
            cmd_deliver(m, NULL, m->early_status, msg);
            break;
        default:
            snprintf(msg, sizeof msg, "redis %s: cannot send the command", c->server);
            cmd_deliver(m, NULL, m->early_status, msg);
            break;
        }
    }
    cmd_maybe_free(m);
}

void redis_commands_cancel_all(struct evicorn_redis *c)
{
    char msg[REDIS_MSG_MAX];
    snprintf(msg, sizeof msg, "redis %s: the client was closed", c->server);
    while (c->pending) {
        struct rcmd *m = c->pending;
        cmd_deliver(m, NULL, EVICORN_ECANCELED, msg);
        cmd_maybe_free(m);
    }
}

/* Commands that would change the shared connection's state for every
 * request of the worker, or take it over. */
static int refused_verb(const char *cmd, int len)
{
    static const char *const refused[] = {"SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
                                          "MONITOR",   "SELECT",     "QUIT",        "RESET"};
    /* "*<argc>\r\n$<len>\r\n<verb>\r\n" */
    const char *p = memchr(cmd, '\n', (size_t)len);
    if (!p || ++p >= cmd + len || *p != '$')
        return 1;
    char *end;
    long vlen = strtol(p + 1, &end, 10);
    if (end >= cmd + len - 1 || end[0] != '\r' || end[1] != '\n' || vlen <= 0 ||
        end + 2 + vlen > cmd + len)
        return 1;
    const char *verb = end + 2;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (strlen(refused[i]) == (size_t)vlen && strncasecmp(verb, refused[i], (size_t)vlen) == 0)
            return 1;
    return 0;
}

/* Sends cmd[0..len), a formatted command (freed here, whatever happens). */
static int submit(evicorn_request *req, struct evicorn_redis *c, evicorn_redis_fn fn, void *ud,
                  char *cmd, int len)
{
    int rc = 0;
    struct rconn *conn = &c->cmd;
    if (!redis_on_loop(c)) {
        rc = EVICORN_EPERM;
        goto out;
    }
    int sendable = conn->ac && (conn->state == RCONN_UP || conn->state == RCONN_CONNECTING);
    if (refused_verb(cmd, len)) {
        rc = EVICORN_EINVAL;
        goto out;
    }
    if (!fn) {
        if (!sendable)
            rc = EVICORN_ECONNREFUSED;
        else if (redisAsyncFormattedCommand(conn->ac, NULL, NULL, cmd, (size_t)len) != REDIS_OK)
            rc = EVICORN_EIO;
        else
            c->commands++;
        goto out;
    }
    struct rcmd *m = calloc(1, sizeof *m);
    if (!m) {
        rc = EVICORN_ENOMEM;
        goto out;
    }
    m->client = c;
    m->req = req;
    m->fn = fn;
    m->ud = ud;
    rc = evicorn_watch_new(req, -1, on_timer, m, &m->watch);
    if (rc != 0) {
        free(m);
        goto out;
    }
    if (c->npending >= (size_t)c->max_pending)
        m->early_status = EVICORN_EBUSY;
    else if (!sendable)
        m->early_status = EVICORN_ECONNREFUSED;
    else if (redisAsyncFormattedCommand(conn->ac, redis_command_reply, m, cmd, (size_t)len) !=
             REDIS_OK)
        m->early_status = EVICORN_EIO;
    else
        m->in_hiredis = 1;
    if (m->in_hiredis)
        c->commands++;
    cmd_link(c, m);
    double timeout = m->early_status ? EARLY_DELAY : c->command_timeout;
    if (timeout > 0 && (rc = evicorn_watch_set(m->watch, 0, timeout)) != 0) {
        /* Undo: fn will not run; a reply still due is dropped. */
        m->fn = NULL;
        evicorn_watch_cancel(m->watch);
        m->watch = NULL;
        cmd_unlink(m);
        cmd_maybe_free(m);
    }
out:
    redisFreeCommand(cmd);
    return rc;
}

int evicorn_redis_command(evicorn_request *req, evicorn_redis *c, evicorn_redis_fn fn, void *ud,
                          int argc, const char *const *argv, const size_t *argvlen)
{
    if (!c || argc < 1 || !argv)
        return EVICORN_EINVAL;
    for (int i = 0; i < argc; i++)
        if (!argv[i])
            return EVICORN_EINVAL;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, (const char **)argv, argvlen);
    if (len < 0 || !cmd)
        return EVICORN_ENOMEM;
    return submit(req, c, fn, ud, cmd, len);
}

int evicorn_redis_commandf(evicorn_request *req, evicorn_redis *c, evicorn_redis_fn fn, void *ud,
                           const char *format, ...)
{
    if (!c || !format)
        return EVICORN_EINVAL;
    char *cmd = NULL;
    va_list ap;
    va_start(ap, format);
    int len = redisvFormatCommand(&cmd, format, ap);
    va_end(ap);
    if (len == -1)
        return EVICORN_ENOMEM;
    if (len < 0 || !cmd) {
        redisFreeCommand(cmd);
        return EVICORN_EINVAL;
    }
    return submit(req, c, fn, ud, cmd, len);
}

int evicorn_redis_publish(evicorn_redis *c, const char *channel, const void *data, size_t len)
{
    if (!channel || (!data && len))
        return EVICORN_EINVAL;
    const char *argv[3] = {"PUBLISH", channel, data ? data : ""};
    const size_t lens[3] = {7, strlen(channel), len};
    return evicorn_redis_command(NULL, c, NULL, NULL, 3, argv, lens);
}

int evicorn_redis_respond_error(evicorn_request *req, const evicorn_redis_error *err)
{
    if (!err)
        return EVICORN_EINVAL;
    if (err->status == EVICORN_ECANCELED)
        return EVICORN_EPIPE;
    int status = err->http_status ? err->http_status : 500;
    evicorn_buf b = EVICORN_BUF_INIT;
    const char *detail = err->message ? err->message : evicorn_status_reason(status);
    evicorn_buf_puts(&b, "{\"detail\":");
    evicorn_buf_json_string(&b, detail, strlen(detail));
    evicorn_buf_puts(&b, "}");
    if (b.failed) {
        evicorn_buf_free(&b);
        return EVICORN_ENOMEM;
    }
    static const char ct[] = "content-type", json[] = "application/json";
    static const char ra[] = "retry-after", one[] = "1";
    const evicorn_header headers[2] = {
        {ct, sizeof ct - 1, json, sizeof json - 1},
        {ra, sizeof ra - 1, one, sizeof one - 1},
    };
    int rc = evicorn_respond(req, status, headers, status == 503 ? 2 : 1, b.data, b.len);
    evicorn_buf_free(&b);
    return rc;
}

/* ---- replies as JSON ---- */

static json_t *string_json(const char *s, size_t len)
{
    evicorn_buf b = EVICORN_BUF_INIT;
    if (sdk_buf_utf8_lossy(&b, s, len) != 0) {
        evicorn_buf_free(&b);
        return NULL;
    }
    json_t *v = json_stringn(b.data ? b.data : "", b.len);
    evicorn_buf_free(&b);
    return v;
}

json_t *evicorn_redis_reply_json(const redisReply *r)
{
    if (!r)
        return NULL;
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        return string_json(r->str, r->len);
    case REDIS_REPLY_INTEGER:
        return json_integer(r->integer);
    case REDIS_REPLY_NIL:
        return json_null();
    case REDIS_REPLY_ERROR: {
        json_t *msg = string_json(r->str, r->len);
        return msg ? json_pack("{s:o}", "error", msg) : NULL;
    }
    case REDIS_REPLY_ARRAY: {
        json_t *a = json_array();
        for (size_t i = 0; a && i < r->elements; i++) {
            json_t *v = evicorn_redis_reply_json(r->element[i]);
            if (!v || json_array_append_new(a, v) != 0) {
                json_decref(a);
                a = NULL;
            }
        }
        return a;
    }
    default:
        return NULL;
    }
}
