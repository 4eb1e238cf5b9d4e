/* redis_pubsub: subscriptions on the worker's subscriber connection.
 *
 * The client keeps its own list of subscriptions; hiredis's per-channel
 * callbacks all point at one function with the client as privdata, which
 * finds the subscriptions by name. So a subscription can be freed at any
 * time (hiredis may still deliver an UNSUBSCRIBE confirmation or a late
 * message for its channel: it finds nobody), and after a reconnect the
 * list is simply sent again. SUBSCRIBE goes out only while the
 * connection is up; the connection's coming up sends them all.
 *
 * A callback may subscribe or unsubscribe (itself included) while we
 * walk the list: an unsubscribed entry is only marked during a dispatch
 * and unlinked after it. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "redis_internal.h"

static int same_name(const struct evicorn_redis_sub *s, int pattern, const char *name, size_t len)
{
    return !s->removed && s->pattern == pattern && s->len == len && memcmp(s->name, name, len) == 0;
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata);

static void send_sub(struct evicorn_redis *c, const struct evicorn_redis_sub *s, int subscribe)
{
    static const char *const verbs[2][2] = {{"UNSUBSCRIBE", "PUNSUBSCRIBE"},
                                            {"SUBSCRIBE", "PSUBSCRIBE"}};
    struct rconn *rc = &c->sub;
    if (rc->state != RCONN_UP || !rc->ac)
        return;
    const char *verb = verbs[subscribe][s->pattern];
    const char *argv[2] = {verb, s->name};
    const size_t lens[2] = {strlen(verb), s->len};
    /* A failure here means the context is going away: the reconnect
     * sends the subscription again. (P)UNSUBSCRIBE is refused by hiredis
     * when nothing is subscribed, which is what we want anyway. */
    (void)redisAsyncCommandArgv(rc->ac, subscribe ? on_sub_reply : NULL, c, 2, argv, lens);
}

static void purge(struct evicorn_redis *c)
{
    struct evicorn_redis_sub **pp = &c->subs;
    while (*pp) {
        struct evicorn_redis_sub *s = *pp;
        if (s->removed) {
            *pp = s->next;
            free(s);
        } else {
            pp = &s->next;
        }
    }
    c->subs_dirty = 0;
}

/* Calls every live subscription matching (pattern, name) with msg; for a
 * SUBSCRIBED confirmation only those not yet active. */
static void dispatch(struct evicorn_redis *c, int pattern, const char *name, size_t len,
                     evicorn_redis_message *msg)
{
    c->dispatching++;
    for (struct evicorn_redis_sub *s = c->subs; s; s = s->next) {
        if (!same_name(s, pattern, name, len))
            continue;
        if (msg->event == EVICORN_REDIS_SUBSCRIBED) {
            if (s->active)
                continue;
            s->active = 1;
        }
        s->fn(s, s->ud, msg);
    }
    if (--c->dispatching == 0 && c->subs_dirty)
        purge(c);
}

static int is_str(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct evicorn_redis *c = privdata;
    const redisReply *r = reply;
    if (!r || c->sub.ac != ac || c->freeing)
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_ARRAY)
            return;
    const redisReply *kind = r->element[0];
    if (!is_str(kind))
        return;
    evicorn_redis_message msg = {0};
    if (strcasecmp(kind->str, "message") == 0 && is_str(r->element[1])) {
        msg.event = EVICORN_REDIS_MESSAGE;
        msg.channel = r->element[1]->str;
        msg.channel_len = r->element[1]->len;
        msg.data = r->element[2]->str;
        msg.len = r->element[2]->len;
        dispatch(c, 0, msg.channel, msg.channel_len, &msg);
    } else if (strcasecmp(kind->str, "pmessage") == 0 && r->elements >= 4 &&
               is_str(r->element[1]) && is_str(r->element[2])) {
        msg.event = EVICORN_REDIS_MESSAGE;
        msg.pattern = r->element[1]->str;
        msg.pattern_len = r->element[1]->len;
        msg.channel = r->element[2]->str;
        msg.channel_len = r->element[2]->len;
        msg.data = r->element[3]->str;
        msg.len = r->element[3]->len;
        dispatch(c, 1, msg.pattern, msg.pattern_len, &msg);
    } else if ((strcasecmp(kind->str, "subscribe") == 0 ||
                strcasecmp(kind->str, "psubscribe") == 0) &&
               is_str(r->element[1])) {
        int pattern = kind->str[0] == 'p' || kind->str[0] == 'P';
        msg.event = EVICORN_REDIS_SUBSCRIBED;
        msg.channel = r->element[1]->str;
        msg.channel_len = r->element[1]->len;
        if (pattern) {
            msg.pattern = msg.channel;
            msg.pattern_len = msg.channel_len;
        }
        dispatch(c, pattern, msg.channel, msg.channel_len, &msg);
    }
}

static int add(struct evicorn_redis *c, int pattern, const char *name, evicorn_redis_message_fn fn,
               void *ud, evicorn_redis_sub **out)
{
    if (out)
        *out = NULL;
    if (!c || !name || !*name || !fn)
        return EVICORN_EINVAL;
    if (!redis_on_loop(c))
        return EVICORN_EPERM;
    if (c->freeing)
        return EVICORN_EINVAL;
    size_t len = strlen(name);
    struct evicorn_redis_sub *s = calloc(1, sizeof *s + len + 1);
    if (!s)
        return EVICORN_ENOMEM;
    s->client = c;
    s->pattern = pattern;
    s->fn = fn;
    s->ud = ud;
    s->len = len;
    memcpy(s->name, name, len + 1);
    struct evicorn_redis_sub **pp = &c->subs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
    if (out)
        *out = s;
    /* Every subscription sends its own SUBSCRIBE, even to a channel
     * already subscribed: the server confirms each one, and that
     * confirmation is what makes the new subscription active. */
    if (c->sub.state == RCONN_IDLE)
        rconn_start(&c->sub);
    else
        send_sub(c, s, 1);
    return 0;
}

int evicorn_redis_subscribe(evicorn_redis *c, const char *channel, evicorn_redis_message_fn fn,
                            void *ud, evicorn_redis_sub **out)
{
    return add(c, 0, channel, fn, ud, out);
}

int evicorn_redis_psubscribe(evicorn_redis *c, const char *pattern, evicorn_redis_message_fn fn,
                             void *ud, evicorn_redis_sub **out)
{
    return add(c, 1, pattern, fn, ud, out);
}

void evicorn_redis_unsubscribe(evicorn_redis_sub *s)
{
    if (!s || s->removed)
        return;
    struct evicorn_redis *c = s->client;
    s->removed = 1;
    int still_wanted = 0;
    for (const struct evicorn_redis_sub *o = c->subs; o && !still_wanted; o = o->next)
        still_wanted = same_name(o, s->pattern, s->name, s->len);
    if (!still_wanted)
        send_sub(c, s, 0);
    if (c->dispatching) {
        c->subs_dirty = 1;
        return;
    }
    for (struct evicorn_redis_sub **pp = &c->subs; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    free(s);
}

int evicorn_redis_sub_active(const evicorn_redis_sub *s)
{
    return s && !s->removed && s->active;
}

void redis_pubsub_resubscribe(struct evicorn_redis *c)
{
    for (struct evicorn_redis_sub *s = c->subs; s; s = s->next) {
        if (s->removed)
            continue;
        s->active = 0;
        send_sub(c, s, 1);
    }
}

void redis_pubsub_reset(struct evicorn_redis *c)
{
    for (struct evicorn_redis_sub *s = c->subs; s; s = s->next)
        s->active = 0;
}

void redis_pubsub_free_all(struct evicorn_redis *c)
{
    while (c->subs) {
        struct evicorn_redis_sub *s = c->subs;
        c->subs = s->next;
        free(s);
    }
}
