/* host_internal: what the host's files share (see host.h for the split).
 * Nothing outside host*.c includes this. */
#ifndef EVICORN_HOST_INTERNAL_H
#define EVICORN_HOST_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "buf.h"
#include "defer.h"
#include "host.h"
#include "mailbox.h"
#include "pool.h"

struct host {
    struct ev_loop *loop;
    const struct config *cfg;
    int worker;
    pthread_t loop_thread;
    struct mailbox *mailbox;
    struct pool *pool;
    struct defer_queue *defer;
    const struct plugin_site *site;
    const struct listener *listener;
    long pending_jobs;    /* offloads and background tasks not yet done */
    struct ws_server *ws; /* NULL: WebSockets are not served (--ws none) */
    struct ws_session *ws_sessions;
    uint64_t ws_next_id;
    ev_timer ws_drain_timer;
    struct evicorn_watch *plugin_watches; /* watches owned by plugin versions */
    struct httpc *httpc;                  /* outbound HTTP: the worker's curl multi */
    struct fetch_warned *insecure_warned; /* generations told about EVICORN_FETCH_INSECURE */
};

struct op;
struct background;
struct ws_session;

struct call {
    struct host *host;
    struct request *r;
    struct route_entry *re;
    struct generation *gen;
    struct route_table *table;
    struct op *ops; /* operations a continuation waits on */
    int holds;      /* plugin holds, and runs of plugin code in progress */
    bool returned;  /* the handler has returned */
    bool finished;
    bool cancelled; /* the client disconnected */
    struct buf body;
    bool body_ready;
    struct background *bg;
    evicorn_event_fn disconnect_fn;
    void *disconnect_ud;
    struct defer disconnect_defer;
    struct pool_job sync_job;
    struct ws_session *ws;            /* once a WebSocket handshake was accepted */
    struct evicorn_watch *watches;    /* bound to this request */
    struct evicorn_exchange *fetches; /* outbound requests in flight */
    struct defer ws_writable_defer;
    /* The route's path parameters, as many as matched (a call can live as
     * long as a WebSocket connection: it holds no more than it needs). */
    size_t nparams;
    struct router_param params[];
};

static inline struct call *call_of(evicorn_request *req)
{
    return (struct call *)req;
}

static inline evicorn_request *handle_of(struct call *c)
{
    return (evicorn_request *)c;
}

static inline bool host_on_loop(const struct host *h)
{
    return pthread_equal(pthread_self(), h->loop_thread);
}

/* ---- host_xcall.c ---- */

/* One call of the API, carried to the loop thread when made elsewhere. */
struct xcall_wait;
struct xcall {
    struct mailbox_msg msg;
    /* Runs on the loop thread; returns the result, or XCALL_LATER when it
     * will call xcall_finish itself. */
    int (*fn)(struct xcall *x);
    struct call *c;
    int status;
    const evicorn_header *headers;
    size_t n;
    const void *data;
    size_t len;
    int64_t content_length;
    int more;
    evicorn_event_fn event_fn;
    evicorn_work_fn work;
    void *ud;
    /* Set while the caller waits on another thread (a sync handler). */
    struct xcall_wait *wait;
};

#define XCALL_LATER 0x7fffffff /* no API function returns this */

/* Runs x->fn on the loop thread: at once when called there, otherwise
 * posted to the loop while the calling thread waits for its result. */
int xcall_run(struct xcall *x);
/* Completes an xcall whose fn returned XCALL_LATER. */
void xcall_finish(struct xcall *x, int result);

/* ---- host_scope.c ---- */

void api_log(evicorn_request *req, int level, const char *message);
evicorn_str api_method(evicorn_request *req);
evicorn_str api_path(evicorn_request *req);
evicorn_str api_raw_path(evicorn_request *req);
evicorn_str api_query_string(evicorn_request *req);
evicorn_str api_root_path(evicorn_request *req);
evicorn_str api_scheme(evicorn_request *req);
evicorn_str api_http_version(evicorn_request *req);
evicorn_str api_client_host(evicorn_request *req);
int api_client_port(evicorn_request *req);
evicorn_str api_server_host(evicorn_request *req);
int api_server_port(evicorn_request *req);
size_t api_header_count(evicorn_request *req);
int api_header_at(evicorn_request *req, size_t i, evicorn_header *out);
int api_header(evicorn_request *req, const char *name, evicorn_str *value);
size_t api_param_count(evicorn_request *req);
int api_param_at(evicorn_request *req, size_t i, evicorn_str *name, evicorn_str *value);
int api_param(evicorn_request *req, const char *name, evicorn_str *value);
evicorn_str api_route(evicorn_request *req);
void *api_state(evicorn_request *req);
evicorn_str api_body(evicorn_request *req);

/* ---- host_call.c ---- */

int api_receive(evicorn_request *req, evicorn_body_fn fn, void *ud);
int api_read_body(evicorn_request *req, evicorn_body_fn fn, void *ud);
int api_respond(evicorn_request *req, int status, const evicorn_header *headers, size_t n,
                const void *body, size_t len);
int api_start(evicorn_request *req, int status, const evicorn_header *headers, size_t n,
              int64_t content_length);
int api_send(evicorn_request *req, const void *data, size_t len, int more);
int api_writable(evicorn_request *req);
int api_on_writable(evicorn_request *req, evicorn_event_fn fn, void *ud);
int api_disconnected(evicorn_request *req);
int api_on_disconnect(evicorn_request *req, evicorn_event_fn fn, void *ud);
int api_sleep(evicorn_request *req, double seconds, evicorn_event_fn fn, void *ud);
int api_offload(evicorn_request *req, evicorn_work_fn work, evicorn_event_fn done, void *ud);
int api_hold(evicorn_request *req);
void api_release(evicorn_request *req);
int api_background(evicorn_request *req, evicorn_work_fn fn, void *ud);
int api_call_on_loop(evicorn_request *req, evicorn_event_fn fn, void *ud);

/* The door for request-bound plugin code on the loop thread: keeps the
 * call open while fn runs, under the watchdog. */
void call_run(struct call *c, void (*fn)(void *), void *arg);
/* Finishes the call if nothing keeps it open any more. */
void call_maybe_finish(struct call *c);
/* The client is gone: pending operations end with ECANCELED and the
 * plugin's disconnect callback runs. */
void call_cancel(struct call *c);
/* Room to write again (status 0) or never (ECANCELED): on_writable
 * continuations run. */
void call_writable(struct call *c, int status);

/* ---- host_ws.c ---- */

int api_ws_accept(evicorn_request *req, const evicorn_ws_accept_options *opts);
int api_ws_send(evicorn_request *req, int binary, const void *data, size_t len);
int api_ws_close(evicorn_request *req, int code, const char *reason, size_t len);
int api_ws_pause(evicorn_request *req, int paused);
int api_ws_subprotocol_at(evicorn_request *req, size_t i, evicorn_str *out);
int api_ws_extension_at(evicorn_request *req, size_t i, evicorn_str *out);
uint64_t api_ws_id(evicorn_request *req);
/* For a call with a session: whether more may be sent now. */
bool host_ws_writable(const struct call *c);
/* An on_writable continuation waits: call_writable runs on the next
 * writable event, or soon when there is room already. */
void host_ws_want_writable(struct call *c);
/* A sync handler that accepted has returned: its events may start. */
void host_ws_handler_returned(struct call *c);

/* ---- host_watch.c ---- */

int api_watch(evicorn_request *req, int fd, evicorn_watch_fn fn, void *ud, evicorn_watch **out);
int api_watch_set(evicorn_watch *w, unsigned events, double timeout);
void api_watch_cancel(evicorn_watch *w);
/* The client left: each of the call's watches gets its ECANCELED call. */
void host_watch_cancel_call(struct call *c);
/* g is about to be unmapped: its watches still live are logged and
 * stopped (plugins_on_unload's hook). */
void host_watch_unloading(struct generation *g);

/* ---- host_fetch.c ---- */

int api_fetch(evicorn_request *req, const evicorn_fetch_options *opts, evicorn_fetch_fn fn,
              void *ud);
int api_fetch_start(evicorn_request *req, const evicorn_fetch_options *opts,
                    const evicorn_fetch_events *events, void *ud, evicorn_exchange **out);
int api_fetch_pause(evicorn_exchange *f, int paused);
int api_fetch_write(evicorn_exchange *f, const void *data, size_t len, int more);
void api_fetch_cancel(evicorn_exchange *f);
/* The client left: each of the call's fetches ends now with ECANCELED. */
void host_fetch_cancel_call(struct call *c);
/* g is about to be unmapped: forget what was logged about it. */
void host_fetch_unloading(struct generation *g);
/* The worker's outbound HTTP client: started with the host, stopped once
 * every call has ended. */
int host_fetch_init(struct host *h);
void host_fetch_free(struct host *h);

/* ---- host_file.c ---- */

int api_respond_file(evicorn_request *req, const evicorn_file_response *file);
int api_send_file(evicorn_request *req, int fd, int64_t offset, int64_t count, int more);
int api_file_read(evicorn_request *req, const char *path, size_t max_size, evicorn_file_fn fn,
                  void *ud);
int api_file_write(evicorn_request *req, const char *path, const void *data, size_t len,
                   unsigned flags, evicorn_file_fn fn, void *ud);
int api_file_stat(evicorn_request *req, const char *path, evicorn_file_fn fn, void *ud);

/* ---- host.c ---- */

const char *api_config(const char *name);
/* The worker's host (a process runs one), for calls that take no
 * request; NULL before host_new and after host_free. */
struct host *host_current(void);

#endif
