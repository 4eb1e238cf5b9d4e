/* Internal to libevicorn_redis: the client's state, shared by its files.
 *
 *   redis_adapter.c  hiredis's event hooks over the host's watches
 *   redis_client.c   settings, the two connections, reconnecting, logging
 *   redis_command.c  commands and their request-bound continuations
 *   redis_pubsub.c   subscriptions and their renewal after a reconnect
 */
#ifndef EVICORN_REDIS_INTERNAL_H
#define EVICORN_REDIS_INTERNAL_H

#include <pthread.h>

#include <evicorn/redis.h>
#include <hiredis/async.h>

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

#define REDIS_MSG_MAX 512

enum rconn_state {
    RCONN_IDLE,       /* never started (the subscriber before any subscription) */
    RCONN_CONNECTING, /* TCP, then AUTH/SELECT */
    RCONN_UP,
    RCONN_DOWN, /* waiting for the retry timer */
};

/* One connection to the server, remade after every failure. */
struct rconn {
    struct evicorn_redis *client;
    int subscriber;
    enum rconn_state state;
    /* The live context, or NULL. A context we gave up on is set NULL
     * before it is freed, so callbacks that hiredis still runs for it
     * (pending replies with NULL, its disconnect) know it is stale. */
    redisAsyncContext *ac;
    int handshake_left;   /* AUTH/SELECT replies still awaited */
    evicorn_watch *retry; /* plugin-level timer for the next attempt */
    double backoff;
    int ever_up;
    /* Why the last context was dropped, for the replies hiredis fails
     * after we let go of it. */
    int drop_status;
    char drop_msg[REDIS_MSG_MAX];
};

/* A command whose caller waits for a callback. */
struct rcmd {
    struct rcmd *prev, *next; /* the client's pending list, while fn != NULL */
    struct evicorn_redis *client;
    evicorn_request *req;
    evicorn_redis_fn fn; /* NULL once delivered */
    void *ud;
    evicorn_watch *watch; /* its timer (request- or plugin-level) */
    int in_hiredis;       /* hiredis holds it as a reply's privdata */
    int early_status;     /* failed before sending: the timer delivers it */
};

struct evicorn_redis_sub {
    struct evicorn_redis_sub *next;
    struct evicorn_redis *client;
    int pattern;
    int active;
    int removed; /* unsubscribed during a dispatch; freed after it */
    evicorn_redis_message_fn fn;
    void *ud;
    size_t len;
    char name[];
};

struct evicorn_redis {
    char host[128];
    int port;
    char *user;
    char *password;
    int db;
    char server[144]; /* "host:port", for messages */
    double connect_timeout, command_timeout, reconnect_min, reconnect_max;
    int max_pending;
    pthread_t loop_thread;
    int freeing;

    struct rconn cmd, sub;
    struct rcmd *pending;
    size_t npending;

    struct evicorn_redis_sub *subs;
    int dispatching;
    int subs_dirty;

    /* One warning per outage, one line on recovery. */
    int down_logged;
    double down_since;
    char last_error[REDIS_MSG_MAX];

    uint64_t commands, errors, reconnects;
};

/* redis_adapter.c: attaches hiredis's hooks to a plugin-level watch on
 * the context's socket; on_timeout runs when the watch's timer (set with
 * redis_adapter_timer) fires. 0 or an EVICORN_E* code (then nothing is
 * attached). */
int redis_adapter_attach(redisAsyncContext *ac, void (*on_timeout)(redisAsyncContext *ac));
/* (Re)starts the attached watch's timer: seconds > 0, or 0 to stop it. */
void redis_adapter_timer(redisAsyncContext *ac, double seconds);

/* redis_client.c */
int redis_on_loop(const struct evicorn_redis *c);
double redis_now(void);
/* Opens the connection now (from IDLE or DOWN). */
void rconn_start(struct rconn *rc);
/* Gives up on the live context (if any) with status and message for its
 * pending commands, and schedules the next attempt (unless freeing). */
void rconn_fail(struct rconn *rc, int status, const char *msg);

/* redis_command.c */
/* hiredis's reply callback of a command; privdata is its struct rcmd. */
void redis_command_reply(redisAsyncContext *ac, void *reply, void *privdata);
/* Delivers status to every command still waiting (client free). */
void redis_commands_cancel_all(struct evicorn_redis *c);
/* The error of a command that hiredis failed with a NULL reply. */
void redis_null_reply_error(struct rconn *rc, redisAsyncContext *ac, int *status, char *msg,
                            size_t size);

/* redis_pubsub.c */
/* The subscriber connection is up: sends every subscription again. */
void redis_pubsub_resubscribe(struct evicorn_redis *c);
/* It went down: nothing is confirmed any more. */
void redis_pubsub_reset(struct evicorn_redis *c);
void redis_pubsub_free_all(struct evicorn_redis *c);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
