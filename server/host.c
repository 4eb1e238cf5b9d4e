/* host: the ABI function table and the host's life; see host.h.
 *
 * Threads: the loop thread owns every request. A sync handler runs on a
 * pool thread; the response calls it makes are carried to the loop
 * (host_xcall.c) and the pool thread waits for their result, so error codes
 * are exact and a slow client makes the handler wait instead of making the
 * worker buffer. Scope getters read data that does not change after
 * dispatch, so they need no hand-off. */
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "host_internal.h"
#include "log.h"
#include "plugins.h"

/* api->config takes no request, so it reaches the worker's host through
 * this one pointer: a process runs one worker, and the host outlives every
 * plugin that could call it. */
static struct host *current;

/* A plugin version is about to be unmapped: what the host keeps about it
 * goes. */
static void host_unloading(struct generation *g)
{
    host_watch_unloading(g);
    host_fetch_unloading(g);
}

struct host *host_new(const struct host_params *p)
{
    struct host *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    *h = (struct host){
        .loop = p->loop,
        .cfg = p->cfg,
        .worker = p->worker,
        .loop_thread = pthread_self(),
        .mailbox = p->mailbox,
        .pool = p->pool,
        .defer = p->defer,
        .site = p->site,
        .listener = p->listener,
        .ws = p->ws,
    };
    if (host_fetch_init(h) < 0) {
        free(h);
        return NULL;
    }
    current = h;
    plugins_on_unload(host_unloading);
    return h;
}

void host_free(struct host *h)
{
    if (!h)
        return;
    host_fetch_free(h);
    if (current == h)
        current = NULL;
    free(h);
}

struct host *host_current(void)
{
    return current;
}

long host_pending_jobs(const struct host *h)
{
    return h->pending_jobs;
}

const char *api_config(const char *name)
{
    static char workers[16], worker[16], threads[16], ws_max_queue[24];
    if (!name || !current)
        return NULL;
    const struct config *cfg = current->cfg;
    if (strcmp(name, "app") == 0)
        return cfg->app;
    if (strcmp(name, "app_dir") == 0)
        return cfg->app_dir;
    if (strcmp(name, "factory") == 0)
        return cfg->factory ? "1" : "0";
    if (strcmp(name, "lifespan") == 0)
        return cfg->lifespan == LIFESPAN_ON ? "on" : cfg->lifespan == LIFESPAN_OFF ? "off" : "auto";
    if (strcmp(name, "root_path") == 0)
        return cfg->root_path;
    if (strcmp(name, "interface") == 0)
        return cfg->interface;
    if (strcmp(name, "loop") == 0)
        return cfg->loop;
    if (strcmp(name, "log_level") == 0)
        return log_level_name(cfg->log_level);
    if (strcmp(name, "workers") == 0) {
        snprintf(workers, sizeof workers, "%d", cfg->workers);
        return workers;
    }
    if (strcmp(name, "worker") == 0) {
        snprintf(worker, sizeof worker, "%d", current->worker);
        return worker;
    }
    if (strcmp(name, "threads") == 0) {
        snprintf(threads, sizeof threads, "%d", cfg->threads);
        return threads;
    }
    if (strcmp(name, "ws_max_queue") == 0) {
        snprintf(ws_max_queue, sizeof ws_max_queue, "%ld", (long)cfg->ws_max_queue);
        return ws_max_queue;
    }
    return NULL;
}

static const evicorn_api api_table = {
    .size = sizeof(evicorn_api),
    .log = api_log,
    .method = api_method,
    .path = api_path,
    .raw_path = api_raw_path,
    .query_string = api_query_string,
    .root_path = api_root_path,
    .scheme = api_scheme,
    .http_version = api_http_version,
    .client_host = api_client_host,
    .client_port = api_client_port,
    .server_host = api_server_host,
    .server_port = api_server_port,
    .header_count = api_header_count,
    .header_at = api_header_at,
    .header = api_header,
    .param_count = api_param_count,
    .param_at = api_param_at,
    .param = api_param,
    .route = api_route,
    .state = api_state,
    .receive = api_receive,
    .read_body = api_read_body,
    .body = api_body,
    .respond = api_respond,
    .start = api_start,
    .send = api_send,
    .writable = api_writable,
    .on_writable = api_on_writable,
    .disconnected = api_disconnected,
    .on_disconnect = api_on_disconnect,
    .sleep = api_sleep,
    .offload = api_offload,
    .fetch = api_fetch,
    .hold = api_hold,
    .release = api_release,
    .background = api_background,
    .call_on_loop = api_call_on_loop,
    .config = api_config,
    .ws_accept = api_ws_accept,
    .ws_send = api_ws_send,
    .ws_close = api_ws_close,
    .ws_pause = api_ws_pause,
    .ws_subprotocol_at = api_ws_subprotocol_at,
    .ws_extension_at = api_ws_extension_at,
    .ws_id = api_ws_id,
    .watch = api_watch,
    .watch_set = api_watch_set,
    .watch_cancel = api_watch_cancel,
    .fetch_start = api_fetch_start,
    .fetch_pause = api_fetch_pause,
    .fetch_write = api_fetch_write,
    .fetch_cancel = api_fetch_cancel,
    .respond_file = api_respond_file,
    .send_file = api_send_file,
    .file_read = api_file_read,
    .file_write = api_file_write,
    .file_stat = api_file_stat,
};

const evicorn_api *host_api(void)
{
    return &api_table;
}
