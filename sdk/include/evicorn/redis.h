/* evicorn SDK: Redis on the event loop (libevicorn_redis.a, over hiredis).
 *
 * An async route awaits a Redis command the way a FastAPI handler awaits
 * redis.asyncio: the command goes out on the worker's connection, the
 * loop serves other requests meanwhile, and a continuation runs with the
 * reply. Publish/subscribe runs on a second connection of the worker,
 * whose subscriptions survive a restart of the server.
 *
 *     static evicorn_redis *redis;   // one per worker: made in startup
 *
 *     static void got(evicorn_request *req, void *ud, const redisReply *reply,
 *                     const evicorn_redis_error *err)
 *     {
 *         if (err) {
 *             evicorn_redis_respond_error(req, err);   // 503 / 504 / 500 + detail
 *             return;
 *         }
 *         evicorn_respond_json(req, 200, evicorn_redis_reply_json(reply));
 *     }
 *
 *     static void counter(evicorn_request *req, void *data)
 *     {
 *         evicorn_redis_commandf(req, redis, got, NULL, "INCR %s", "hits");
 *     }
 *
 * How it sits on the loop. hiredis's async API does no I/O waiting of its
 * own: it asks an event-library adapter to start and stop watching its
 * socket (the addRead/delRead/addWrite/delWrite hooks of
 * redisAsyncContext.ev) and to forget the socket (cleanup), and is told
 * when the socket is ready (redisAsyncHandleRead/Write). hiredis ships an
 * adapter for libev, the server's loop, but it needs the loop itself
 * (struct ev_loop and ev_io watchers), and no libev layout crosses the
 * plugin ABI: the server may change its loop without breaking plugins.
 * So the SDK has its own adapter, written as adapters/libev.h is, over
 * the ABI's watches (abi.h, 1.3): each connection's socket is one
 * plugin-level watch (req == NULL: connections outlive requests), whose
 * interest follows the four hooks, whose timer bounds the connection
 * attempt, and which the cleanup hook cancels before hiredis closes the
 * socket. Requests are tied to commands with request-level timer watches
 * (fd -1), which keep a request open while its reply is pending, time
 * the command out, and tell of a client that left.
 *
 * Connections. Each worker has one command connection (commands are
 * pipelined on it, in order) and, from the first subscription on, one
 * subscriber connection. When the server cannot be reached or goes away,
 * the client retries with back-off (reconnect_min doubling to
 * reconnect_max) on a plugin-level timer, and:
 *   - a command issued while a connection attempt is in flight waits in
 *     hiredis's output buffer (bounded by connect_timeout and
 *     max_pending), so the first requests after startup do not fail;
 *   - a command issued while the server is known to be down fails at
 *     once (its callback runs on the next loop iteration) with
 *     EVICORN_ECONNREFUSED, 503: queueing them for longer would only turn
 *     an outage into a pile of timeouts, and a 503 tells the client to
 *     come back;
 *   - commands in flight when the connection is lost fail with
 *     EVICORN_EIO (503): whether the server ran them is unknown;
 *   - every subscription is sent again on the new subscriber connection.
 * One warning names the server when it becomes unreachable and one line
 * when it is back; the attempts in between log at debug level.
 *
 * Threads: loop thread only (EVICORN_ASYNC routes, their continuations,
 * watch callbacks, startup and shutdown); elsewhere the calls return
 * EVICORN_EPERM. A sync route that wants Redis uses hiredis's blocking
 * API directly.
 *
 * Settings: url "redis://[[user]:password@]host[:port][/db]"; when NULL,
 * $REDIS_URL; when that is unset, $REDIS_HOST with $REDIS_PORT (6379),
 * $REDIS_PASSWORD and $REDIS_DB. The host is resolved by hiredis with
 * getaddrinfo, which blocks: give an address, or a name from /etc/hosts.
 * hiredis 0.14 has no TLS: rediss:// is refused.
 */
#ifndef EVICORN_REDIS_H
#define EVICORN_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <evicorn/sdk.h>
#include <hiredis/hiredis.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* A worker's client: its command connection, its subscriber connection
 * and its subscriptions. */
typedef struct evicorn_redis evicorn_redis;
/* One subscription (evicorn_redis_subscribe). */
typedef struct evicorn_redis_sub evicorn_redis_sub;

typedef struct evicorn_redis_options {
    uint32_t size; /* sizeof(evicorn_redis_options) */
    /* NULL: $REDIS_URL, else $REDIS_HOST and friends (see above). */
    const char *url;
    /* Seconds to connect (TCP, AUTH, SELECT) before giving up on an
     * attempt; 0: 2. */
    double connect_timeout;
    /* Seconds a request-bound command may wait for its reply (queueing
     * included) before its callback gets EVICORN_ETIMEDOUT; 0: 5; < 0:
     * none. */
    double command_timeout;
    /* Reconnect back-off: the first retry after reconnect_min seconds,
     * doubling up to reconnect_max; 0: 0.1 and 2. */
    double reconnect_min;
    double reconnect_max;
    /* Commands awaiting a reply with a callback; more fail at once with
     * EVICORN_EBUSY (503). 0: 10000. */
    int max_pending;
} evicorn_redis_options;

/* Creates the worker's client and starts connecting (in the background).
 * Call it from the startup hook; opts may be NULL for the defaults.
 * Returns 0; EVICORN_ENOENT when no server is configured (no url,
 * REDIS_URL nor REDIS_HOST: a plugin may then serve without Redis);
 * EVICORN_EINVAL for a url it cannot use; EVICORN_ENOSYS on a host
 * without watches (older than ABI 1.3); EVICORN_EPERM off the loop
 * thread; EVICORN_ENOMEM. On failure a reason is in err and *out is
 * NULL. */
int evicorn_redis_new(const evicorn_redis_options *opts, evicorn_redis **out, char *err,
                      size_t errlen);
/* Closes both connections and frees the client, its watches and its
 * subscriptions (their handles become invalid). Commands still pending
 * get EVICORN_ECANCELED first. Call it from the shutdown hook, never
 * from one of the client's own callbacks. NULL is ignored. */
void evicorn_redis_free(evicorn_redis *client);

/* "host:port" of the server, for messages. */
const char *evicorn_redis_server(const evicorn_redis *client);
/* Nonzero while the command connection is up. */
int evicorn_redis_connected(const evicorn_redis *client);

/* ---- commands ---- */

/* Why a command failed; valid only during the callback. */
typedef struct evicorn_redis_error {
    /* EVICORN_ECONNREFUSED  the server is down or refused AUTH/SELECT -> 503;
     * EVICORN_EIO           the connection was lost with the command in
     *                       flight (it may or may not have run) -> 503;
     * EVICORN_EBUSY         more than max_pending commands in flight -> 503;
     * EVICORN_ETIMEDOUT     no reply within command_timeout -> 504;
     * EVICORN_EINVAL        the server answered an error reply (WRONGTYPE,
     *                       ...): the reply is passed too -> 500;
     * EVICORN_ECANCELED     the client disconnected, or the Redis client
     *                       is being freed: respond nothing;
     * EVICORN_ENOMEM        -> 500. */
    int status;
    /* The HTTP status the above suggests. */
    int http_status;
    /* One line saying what failed, naming the server. */
    const char *message;
} evicorn_redis_error;

/* A command's continuation. On success err is NULL and reply is the
 * server's answer (never an error reply). On failure err says why, and
 * reply is NULL, except for EVICORN_EINVAL, where it is the error reply.
 * The reply is hiredis's and lives only during the call. req is the
 * request the command was issued for (NULL for plugin-level commands). */
typedef void (*evicorn_redis_fn)(evicorn_request *req, void *ud, const redisReply *reply,
                                 const evicorn_redis_error *err);

/* Sends one command, argv[0..argc) (binary-safe: argvlen[i] bytes each;
 * argvlen NULL means strlen), then fn runs once with its reply: the
 * continuation rule of abi.h (never before this returns, exactly once,
 * on the loop). With req != NULL the request stays open until fn has run,
 * the command times out after command_timeout, and a client that
 * disconnects meanwhile gets fn with EVICORN_ECANCELED at once (the reply,
 * when it comes, is dropped). With req == NULL the command belongs to the
 * plugin (a publish, a counter) and fn, when not NULL, runs with req NULL
 * under the same timeout; fn NULL is fire-and-forget: the reply is
 * dropped, and a server known to be down is the return value.
 * The connection is shared by every request of the worker, so commands
 * that would change it for all of them are refused: (P)SUBSCRIBE,
 * (P)UNSUBSCRIBE (use evicorn_redis_subscribe), MONITOR, SELECT (use the
 * URL's /db), QUIT and RESET. A transaction (MULTI ... EXEC) must be
 * issued in one go, without waiting for a reply in between, or other
 * requests' commands land inside it. Commands run in order, so a blocking
 * one (BLPOP, ...) holds up every command behind it on the worker.
 * Returns 0; EVICORN_EINVAL (no client, no command, a refused command),
 * EVICORN_EPERM (off the loop thread), EVICORN_ENOMEM, or a watch error
 * (then fn never runs); with fn NULL also EVICORN_ECONNREFUSED or
 * EVICORN_EIO. */
int evicorn_redis_command(evicorn_request *req, evicorn_redis *client, evicorn_redis_fn fn,
                          void *ud, int argc, const char *const *argv, const size_t *argvlen);
/* The same with hiredis's format: "SET %s %b" takes a string, then a
 * pointer and a size_t length; each %-argument is one argument of the
 * command, whatever spaces it holds. */
int evicorn_redis_commandf(evicorn_request *req, evicorn_redis *client, evicorn_redis_fn fn,
                           void *ud, const char *format, ...);

/* PUBLISH channel data, fire-and-forget (plugin-level). Returns 0 once
 * queued; EVICORN_ECONNREFUSED while the server is down; as
 * evicorn_redis_command otherwise. */
int evicorn_redis_publish(evicorn_redis *client, const char *channel, const void *data, size_t len);

/* Answers a failed command as {"detail": message} with its http_status
 * (a 503 also carries Retry-After: 1). Nothing is sent for
 * EVICORN_ECANCELED (the client is gone): returns EVICORN_EPIPE. */
int evicorn_redis_respond_error(evicorn_request *req, const evicorn_redis_error *err);

/* A reply as JSON: strings and statuses -> string (invalid UTF-8 replaced
 * by U+FFFD), integers -> integer, nil -> null, arrays -> array, an error
 * reply -> {"error": message}. New reference; NULL for a NULL reply or
 * out of memory. */
json_t *evicorn_redis_reply_json(const redisReply *reply);

/* ---- publish/subscribe ---- */

enum evicorn_redis_event {
    /* A message published to the channel (or a channel the pattern
     * matches). */
    EVICORN_REDIS_MESSAGE = 1,
    /* The server confirmed the subscription: messages published from now
     * on arrive. Also after each resubscription following a reconnect
     * (messages published while disconnected are lost, as in Redis). */
    EVICORN_REDIS_SUBSCRIBED = 2,
};

/* What a subscription's callback is told; valid only during the call. */
typedef struct evicorn_redis_message {
    int event; /* enum evicorn_redis_event */
    /* The channel the message was published to (for SUBSCRIBED: the
     * channel or the pattern subscribed). */
    const char *channel;
    size_t channel_len;
    /* The pattern that matched, for pattern subscriptions; else NULL. */
    const char *pattern;
    size_t pattern_len;
    /* The message (EVICORN_REDIS_MESSAGE); binary-safe, not
     * NUL-terminated. */
    const char *data;
    size_t len;
} evicorn_redis_message;

typedef void (*evicorn_redis_message_fn)(evicorn_redis_sub *sub, void *ud,
                                         const evicorn_redis_message *msg);

/* Subscribes to channel (SUBSCRIBE) on the worker's subscriber
 * connection, opened on first use. The subscription belongs to the
 * plugin, not to a request, and lasts until evicorn_redis_unsubscribe or
 * evicorn_redis_free: across reconnects it is renewed automatically. fn
 * runs on the loop for every message (and for SUBSCRIBED); it may
 * subscribe and unsubscribe, itself included. Several subscriptions to
 * one channel each get every message. Returns 0 with the handle in
 * *out (out may be NULL); EVICORN_EINVAL, EVICORN_EPERM, EVICORN_ENOMEM;
 * it does not fail while the server is down. */
int evicorn_redis_subscribe(evicorn_redis *client, const char *channel, evicorn_redis_message_fn fn,
                            void *ud, evicorn_redis_sub **out);
/* The same for a glob-style pattern (PSUBSCRIBE), e.g. "chat:*". */
int evicorn_redis_psubscribe(evicorn_redis *client, const char *pattern,
                             evicorn_redis_message_fn fn, void *ud, evicorn_redis_sub **out);
/* Ends the subscription: fn does not run again and sub is freed. The
 * channel is unsubscribed on the server when no other subscription of
 * the client wants it. NULL is ignored. Loop thread only. */
void evicorn_redis_unsubscribe(evicorn_redis_sub *sub);
/* Nonzero once the server has confirmed the subscription on the current
 * subscriber connection. */
int evicorn_redis_sub_active(const evicorn_redis_sub *sub);

/* ---- state ---- */

typedef struct evicorn_redis_stats {
    int connected;            /* the command connection is up */
    int subscriber_connected; /* the subscriber connection is up */
    size_t pending;           /* commands awaiting their callback */
    size_t subscriptions;
    uint64_t commands;   /* commands sent */
    uint64_t errors;     /* callbacks that got an error */
    uint64_t reconnects; /* connections made again after a failure */
} evicorn_redis_stats;
void evicorn_redis_get_stats(const evicorn_redis *client, evicorn_redis_stats *out);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif
