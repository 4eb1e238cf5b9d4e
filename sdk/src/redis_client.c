/* redis_client: a worker's Redis client and its two connections.
 *
 * Each connection (struct rconn) goes IDLE -> CONNECTING -> UP, and on
 * any failure to DOWN, from where a plugin-level timer watch brings it
 * back to CONNECTING after a back-off that doubles up to reconnect_max
 * and starts over once a connection is up. hiredis 0.14 frees a context
 * itself after a failed connect or a lost connection and runs every
 * pending callback with a NULL reply; a context we give up on ourselves
 * (connect timeout, AUTH refused, shutdown) is freed with redisAsyncFree
 * after rconn.ac is cleared, so the callbacks that still come for it can
 * tell it is stale and read why from drop_status.
 *
 * Logging: the first failure of an outage is a warning naming the
 * server; the retries are debug lines; the recovery (both connections
 * the client needs up again) is one info line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "redis_internal.h"

static void on_connect(const redisAsyncContext *ac, int status);
static void on_disconnect(const redisAsyncContext *ac, int status);
static void on_handshake(redisAsyncContext *ac, void *reply, void *privdata);
static void on_connect_timeout(redisAsyncContext *ac);
static void on_retry(evicorn_watch *w, void *ud, unsigned events, int status);

/* ---- helpers ---- */

int redis_on_loop(const struct evicorn_redis *c)
{
    return pthread_equal(pthread_self(), c->loop_thread);
}

double redis_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *role(const struct rconn *rc)
{
    return rc->subscriber ? "subscriber connection" : "connection";
}

/* ---- settings ---- */

/* A NUL-terminated copy of s[0..len) with %XX decoded (URL userinfo). */
static char *pct_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    out[sdk_pct_decode(s, len, false, out)] = '\0';
    return out;
}

static int parse_port(const char *s, size_t len, int *out)
{
    if (len == 0 || len > 5)
        return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *out = v;
    return 0;
}

static int parse_db(const char *s, size_t len, int *out)
{
    if (len == 0 || len > 6)
        return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int set_host(struct evicorn_redis *c, const char *s, size_t len)
{
    if (len == 0 || len >= sizeof c->host)
        return -1;
    memcpy(c->host, s, len);
    c->host[len] = '\0';
    return 0;
}

/* redis://[[user]:password@]host[:port][/db] */
static int parse_url(struct evicorn_redis *c, const char *url, char *err, size_t errlen)
{
    static const char scheme[] = "redis://";
    if (strncmp(url, "rediss://", 9) == 0) {
        snprintf(err, errlen, "redis: TLS (rediss://) is not supported by this hiredis");
        return EVICORN_EINVAL;
    }
    if (strncmp(url, scheme, sizeof scheme - 1) != 0) {
        snprintf(err, errlen, "redis: the URL must start with redis://");
        return EVICORN_EINVAL;
    }
    const char *p = url + sizeof scheme - 1;
    const char *end = p + strcspn(p, "/?#");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *user_end = colon ? colon : at;
        if (user_end > p && !(c->user = pct_decode(p, (size_t)(user_end - p))))
            return EVICORN_ENOMEM;
        if (colon && !(c->password = pct_decode(colon + 1, (size_t)(at - colon - 1))))
            return EVICORN_ENOMEM;
        p = at + 1;
    }
    const char *host = p, *host_end, *port = NULL;
    if (*p == '[') {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (!host_end)
            goto bad;
        if (host_end + 1 < end) {
            if (host_end[1] != ':')
                goto bad;
            port = host_end + 2;
        }
    } else {
        host_end = memchr(p, ':', (size_t)(end - p));
        if (host_end)
            port = host_end + 1;
        else
            host_end = end;
    }
    if (set_host(c, host, (size_t)(host_end - host)) != 0)
        goto bad;
    c->port = 6379;
    if (port && parse_port(port, (size_t)(end - port), &c->port) != 0)
        goto bad;
    c->db = 0;
    if (*end == '/' && end[1] != '\0' && end[1] != '?' && end[1] != '#') {
        const char *db = end + 1;
        if (parse_db(db, strcspn(db, "?#"), &c->db) != 0)
            goto bad;
    }
    return 0;
bad:
    snprintf(err, errlen, "redis: cannot use the URL (want redis://[:password@]host[:port][/db])");
    return EVICORN_EINVAL;
}

static int settings_from_env(struct evicorn_redis *c, char *err, size_t errlen)
{
    const char *url = getenv("REDIS_URL");
    if (url && *url)
        return parse_url(c, url, err, errlen);
    const char *host = getenv("REDIS_HOST");
    if (!host || !*host) {
        snprintf(err, errlen, "redis: no server configured (REDIS_URL or REDIS_HOST)");
        return EVICORN_ENOENT;
    }
    if (set_host(c, host, strlen(host)) != 0)
        goto bad;
    const char *port = getenv("REDIS_PORT");
    c->port = 6379;
    if (port && *port && parse_port(port, strlen(port), &c->port) != 0)
        goto bad;
    const char *db = getenv("REDIS_DB");
    if (db && *db && parse_db(db, strlen(db), &c->db) != 0)
        goto bad;
    const char *password = getenv("REDIS_PASSWORD");
    if (password && *password && !(c->password = strdup(password)))
        return EVICORN_ENOMEM;
    return 0;
bad:
    snprintf(err, errlen, "redis: bad REDIS_HOST, REDIS_PORT or REDIS_DB");
    return EVICORN_EINVAL;
}

/* ---- outages: one warning, one recovery line ---- */

static void note_down(struct rconn *rc, const char *msg)
{
    struct evicorn_redis *c = rc->client;
    snprintf(c->last_error, sizeof c->last_error, "%s", msg);
    if (c->freeing)
        return;
    if (!c->down_logged) {
        c->down_logged = 1;
        c->down_since = redis_now();
        evicorn_log(NULL, EVICORN_LOG_WARNING,
                    "%s; commands fail with 503 until it is back (retrying every %g s at most)",
                    msg, c->reconnect_max);
    } else {
        evicorn_log(NULL, EVICORN_LOG_DEBUG, "%s", msg);
    }
}

static void note_up(struct rconn *rc)
{
    struct evicorn_redis *c = rc->client;
    if (rc->ever_up)
        c->reconnects++;
    rc->ever_up = 1;
    int all_up =
        c->cmd.state == RCONN_UP && (c->sub.state == RCONN_IDLE || c->sub.state == RCONN_UP);
    if (c->down_logged && all_up) {
        c->down_logged = 0;
        evicorn_log(NULL, EVICORN_LOG_INFO, "redis %s: connected again after %.1f s", c->server,
                    redis_now() - c->down_since);
    }
}

/* ---- one connection ---- */

static void rconn_up(struct rconn *rc)
{
    rc->state = RCONN_UP;
    rc->backoff = rc->client->reconnect_min;
    redis_adapter_timer(rc->ac, 0);
    note_up(rc);
    if (rc->subscriber)
        redis_pubsub_resubscribe(rc->client);
}

static void schedule_retry(struct rconn *rc)
{
    struct evicorn_redis *c = rc->client;
    rc->state = RCONN_DOWN;
    if (c->freeing || !rc->retry)
        return;
    int rc_set = evicorn_watch_set(rc->retry, 0, rc->backoff);
    if (rc_set != 0)
        evicorn_log(NULL, EVICORN_LOG_ERROR, "redis %s: cannot arm the reconnect timer (%d)",
                    c->server, rc_set);
    rc->backoff *= 2;
    if (rc->backoff > c->reconnect_max)
        rc->backoff = c->reconnect_max;
}

void rconn_fail(struct rconn *rc, int status, const char *msg)
{
    redisAsyncContext *ac = rc->ac;
    int was_up = rc->state == RCONN_UP;
    rc->ac = NULL;
    rc->drop_status = status;
    snprintf(rc->drop_msg, sizeof rc->drop_msg, "%s", msg);
    if (rc->subscriber && was_up)
        redis_pubsub_reset(rc->client);
    note_down(rc, msg);
    schedule_retry(rc);
    if (ac)
        redisAsyncFree(ac); /* deferred by hiredis when inside one of its callbacks */
}

/* AUTH and SELECT go first; the connection counts as up once they
 * succeeded. Commands issued meanwhile queue behind them. */
static int send_handshake(struct rconn *rc)
{
    struct evicorn_redis *c = rc->client;
    rc->handshake_left = 0;
    if (c->password) {
        const char *argv[3] = {"AUTH", c->user ? c->user : c->password, c->password};
        int argc = c->user ? 3 : 2;
        if (redisAsyncCommandArgv(rc->ac, on_handshake, rc, argc, argv, NULL) != REDIS_OK)
            return -1;
        rc->handshake_left++;
    }
    if (c->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", c->db);
        const char *argv[2] = {"SELECT", db};
        if (redisAsyncCommandArgv(rc->ac, on_handshake, rc, 2, argv, NULL) != REDIS_OK)
            return -1;
        rc->handshake_left++;
    }
    return 0;
}

void rconn_start(struct rconn *rc)
{
    struct evicorn_redis *c = rc->client;
    char msg[REDIS_MSG_MAX];
    rc->state = RCONN_CONNECTING;
    redisAsyncContext *ac = redisAsyncConnect(c->host, c->port);
    if (!ac) {
        snprintf(msg, sizeof msg, "redis %s: cannot connect: out of memory", c->server);
        rconn_fail(rc, EVICORN_ECONNREFUSED, msg);
        return;
    }
    if (ac->err) {
        /* Refused at once (loopback) or unresolvable: nothing is
         * attached yet and no callback is pending. */
        snprintf(msg, sizeof msg, "redis %s: cannot connect: %s", c->server, ac->errstr);
        redisAsyncFree(ac);
        rconn_fail(rc, EVICORN_ECONNREFUSED, msg);
        return;
    }
    int rc_attach = redis_adapter_attach(ac, on_connect_timeout);
    if (rc_attach != 0) {
        snprintf(msg, sizeof msg, "redis %s: cannot watch the connection (%d)", c->server,
                 rc_attach);
        redisAsyncFree(ac);
        rconn_fail(rc, EVICORN_ECONNREFUSED, msg);
        return;
    }
    ac->data = rc;
    rc->ac = ac;
    /* Setting the connect callback also asks for the first write event,
     * which tells that the connection is made. */
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redis_adapter_timer(ac, c->connect_timeout);
    if (send_handshake(rc) != 0) {
        snprintf(msg, sizeof msg, "redis %s: cannot send AUTH/SELECT", c->server);
        rconn_fail(rc, EVICORN_ECONNREFUSED, msg);
    }
}

static void on_retry(evicorn_watch *w, void *ud, unsigned events, int status)
{
    struct rconn *rc = ud;
    (void)w;
    (void)events;
    if (status != 0) {
        rc->retry = NULL;
        return;
    }
    if (rc->state == RCONN_DOWN && !rc->client->freeing)
        rconn_start(rc);
}

/* hiredis 0.14 calls this outside its callback guard: giving up on the
 * context here must not free it (it does so itself on failure). */
static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rconn *rc = ac->data;
    if (!rc || rc->ac != ac)
        return;
    if (status != REDIS_OK) {
        char msg[REDIS_MSG_MAX];
        snprintf(msg, sizeof msg, "redis %s: cannot connect: %s", rc->client->server,
                 ac->errstr ? ac->errstr : (ac->c.errstr[0] ? ac->c.errstr : "failed"));
        rc->ac = NULL; /* hiredis frees it when we return */
        rconn_fail(rc, EVICORN_ECONNREFUSED, msg);
        return;
    }
    if (rc->handshake_left == 0)
        rconn_up(rc);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rconn *rc = ac->data;
    (void)status;
    if (!rc || rc->ac != ac)
        return; /* one we gave up on: already handled */
    char msg[REDIS_MSG_MAX];
    const char *why = ac->errstr ? ac->errstr : "closed";
    if (rc->state == RCONN_UP)
        snprintf(msg, sizeof msg, "redis %s: %s lost: %s", rc->client->server, role(rc), why);
    else
        snprintf(msg, sizeof msg, "redis %s: cannot connect: %s", rc->client->server, why);
    rc->ac = NULL; /* hiredis frees it when we return */
    rconn_fail(rc, EVICORN_EIO, msg);
}

static void on_handshake(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct rconn *rc = privdata;
    redisReply *r = reply;
    if (!r || rc->ac != ac)
        return; /* the context is going away: its disconnect says why */
    if (r->type == REDIS_REPLY_ERROR) {
        char msg[REDIS_MSG_MAX];
        /* AUTH, when there is a password, is the first of them. */
        struct evicorn_redis *c = rc->client;
        int total = (c->password != NULL) + (c->db != 0);
        const char *what = c->password && rc->handshake_left == total ? "AUTH" : "SELECT";
        snprintf(msg, sizeof msg, "redis %s: refused %s: %.*s", c->server, what, (int)r->len,
                 r->str);
        rconn_fail(rc, EVICORN_ECONNREFUSED, msg);
        return;
    }
    if (--rc->handshake_left == 0 && (ac->c.flags & REDIS_CONNECTED))
        rconn_up(rc);
}

static void on_connect_timeout(redisAsyncContext *ac)
{
    struct rconn *rc = ac->data;
    if (!rc || rc->ac != ac || rc->state == RCONN_UP)
        return;
    char msg[REDIS_MSG_MAX];
    snprintf(msg, sizeof msg, "redis %s: cannot connect: no answer within %g s", rc->client->server,
             rc->client->connect_timeout);
    rconn_fail(rc, EVICORN_ECONNREFUSED, msg);
}

static int rconn_init(struct evicorn_redis *c, struct rconn *rc, int subscriber)
{
    rc->client = c;
    rc->subscriber = subscriber;
    rc->state = RCONN_IDLE;
    rc->backoff = c->reconnect_min;
    return evicorn_watch_new(NULL, -1, on_retry, rc, &rc->retry);
}

static void rconn_close(struct rconn *rc)
{
    if (rc->retry)
        evicorn_watch_cancel(rc->retry);
    rc->retry = NULL;
    if (rc->ac) {
        char msg[REDIS_MSG_MAX];
        snprintf(msg, sizeof msg, "redis %s: the client was closed", rc->client->server);
        redisAsyncContext *ac = rc->ac;
        rc->ac = NULL;
        rc->drop_status = EVICORN_ECANCELED;
        snprintf(rc->drop_msg, sizeof rc->drop_msg, "%s", msg);
        redisAsyncFree(ac);
    }
    rc->state = RCONN_IDLE;
}

/* ---- the client ---- */

int evicorn_redis_new(const evicorn_redis_options *opts, evicorn_redis **out, char *err,
                      size_t errlen)
{
    evicorn_redis_options o = {0};
    char dummy[1];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!out)
        return EVICORN_EINVAL;
    *out = NULL;
    if (opts) {
        size_t n = opts->size < sizeof o ? opts->size : sizeof o;
        memcpy(&o, opts, n);
    }
    if (!EVICORN_HAS(watch)) {
        snprintf(err, errlen, "redis: the server is too old (no watches: ABI 1.3 needed)");
        return EVICORN_ENOSYS;
    }
    struct evicorn_redis *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "redis: out of memory");
        return EVICORN_ENOMEM;
    }
    c->loop_thread = pthread_self();
    int rc = o.url ? parse_url(c, o.url, err, errlen) : settings_from_env(c, err, errlen);
    if (rc != 0)
        goto fail;
    if (strchr(c->host, ':'))
        snprintf(c->server, sizeof c->server, "[%s]:%d", c->host, c->port);
    else
        snprintf(c->server, sizeof c->server, "%s:%d", c->host, c->port);
    c->connect_timeout = o.connect_timeout > 0 ? o.connect_timeout : 2.0;
    c->command_timeout = o.command_timeout > 0   ? o.command_timeout
                         : o.command_timeout < 0 ? 0
                                                 : 5.0;
    c->reconnect_min = o.reconnect_min > 0 ? o.reconnect_min : 0.1;
    c->reconnect_max = o.reconnect_max > 0 ? o.reconnect_max : 2.0;
    if (c->reconnect_max < c->reconnect_min)
        c->reconnect_max = c->reconnect_min;
    c->max_pending = o.max_pending > 0 ? o.max_pending : 10000;
    rc = rconn_init(c, &c->cmd, 0);
    if (rc == 0)
        rc = rconn_init(c, &c->sub, 1);
    if (rc != 0) {
        if (rc == EVICORN_EPERM)
            snprintf(err, errlen, "redis: evicorn_redis_new must run on the loop thread (startup)");
        else
            snprintf(err, errlen, "redis: cannot create a timer (%d)", rc);
        goto fail;
    }
    rconn_start(&c->cmd);
    *out = c;
    return 0;
fail:
    evicorn_redis_free(c);
    if (rc == EVICORN_ENOMEM && !err[0])
        snprintf(err, errlen, "redis: out of memory");
    return rc;
}

void evicorn_redis_free(evicorn_redis *c)
{
    if (!c)
        return;
    c->freeing = 1;
    /* Freeing the contexts fails their pending commands (ECANCELED)
     * and cancels their watches through the adapter's cleanup. */
    rconn_close(&c->cmd);
    rconn_close(&c->sub);
    redis_commands_cancel_all(c);
    redis_pubsub_free_all(c);
    free(c->user);
    free(c->password);
    free(c);
}

const char *evicorn_redis_server(const evicorn_redis *c)
{
    return c ? c->server : "";
}

int evicorn_redis_connected(const evicorn_redis *c)
{
    return c && c->cmd.state == RCONN_UP;
}

void evicorn_redis_get_stats(const evicorn_redis *c, evicorn_redis_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    out->connected = c->cmd.state == RCONN_UP;
    out->subscriber_connected = c->sub.state == RCONN_UP;
    out->pending = c->npending;
    for (const struct evicorn_redis_sub *s = c->subs; s; s = s->next)
        out->subscriptions += !s->removed;
    out->commands = c->commands;
    out->errors = c->errors;
    out->reconnects = c->reconnects;
}
