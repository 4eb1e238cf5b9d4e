/* config: the command line, parsed once in the master before anything starts.
 *
 * Flag names follow uvicorn's where the concept is the same. Parsing never
 * exits by itself: it returns a status and a one-line message, so main()
 * decides how to report it (one line on stderr, exit status 2). */
#ifndef EVICORN_CONFIG_H
#define EVICORN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../abi/evicorn/abi.h"

#define EVICORN_VERSION "0.1.0"

struct evicorn_embedding;
struct plugin_key;
struct proxy_trust;
struct run_as;

enum lifespan_mode { LIFESPAN_AUTO, LIFESPAN_ON, LIFESPAN_OFF };

/* A repeatable flag's values, in order. */
struct str_list {
    const char **items;
    size_t n;
};

struct config {
    const char *app; /* "module:attr" or NULL */
    const char *app_dir;
    bool factory;
    enum lifespan_mode lifespan;
    /* How APP is called ("auto", "asgi3", "asgi2", "wsgi") and the asyncio
     * loop the bridge runs ("auto", "asyncio", "uvloop", "none" or a
     * module:attr loop factory), as uvicorn's --interface and --loop. */
    const char *interface;
    const char *loop;
    /* --env-file: loaded by evicorn_run before the workers start. */
    const char *env_file;
    /* --log-config: Python logging configured from this file (uvicorn's
     * formats), and the server's lines sent through it (log.h). */
    const char *log_config;
    /* Set by evicorn_run: the ASGI bridge's entry point when evicorn runs
     * inside Python (embedding.h), else NULL. */
    evicorn_plugin_entry_fn bridge_entry;
    const struct evicorn_embedding *embedding;

    const char *host;
    int port;
    const char *uds;
    int fd; /* -1 when not given */
    /* --fd-name: of the sockets systemd passed (LISTEN_FDNAMES), serve
     * only those so named (default: all; listener.h). */
    struct str_list fd_names;
    int backlog;
    int workers; /* -1 until config_apply_env: not given */
    int threads;
    const char *plugins_dir;
    bool plugins_dir_given; /* by --plugins, not the default */
    /* Where plugin copies are made before dlopen; set by main, not a flag. */
    const char *private_dir;
    /* Serve this worker's plugin status as JSON on this path (opt-in). */
    const char *status_path;
    /* Prometheus metrics of the instance, and its health for a load
     * balancer, on these paths (opt-in; metrics.h). */
    const char *metrics_path;
    const char *health_path;
    /* After SIGTERM/SIGINT: seconds the health path fails while the
     * instance still serves, before the graceful shutdown begins. */
    double shutdown_delay;
    /* Workers run as this user and group (names or ids), root only. */
    const char *user;
    const char *group;
    /* Trust checks on plugin files and folders only warn. */
    bool plugins_insecure;
    /* Every plugin needs NAME.so.sig signed by this Ed25519 key (PEM). */
    const char *plugin_pubkey;
    /* Set by main, not flags: who the workers run as (privileges.h), and
     * the key plugins are verified with (plugin_sign.h), or NULL. */
    const struct run_as *run_as;
    const struct plugin_key *plugin_key;
    int log_level;
    bool log_level_given; /* by --log-level, not the default */
    bool access_log;
    /* --access-log-format: NULL for uvicorn's line, "json" for JSON lines,
     * else a template of %(name)s fields (access_log.h). */
    const char *access_log_format;
    int use_colors; /* -1: when the output is a terminal */

    double timeout_keep_alive;
    double timeout_header;
    double timeout_body;
    double timeout_write;
    double timeout_graceful_shutdown;
    /* Plugin code holding a worker's event loop longer than this ends the
     * worker (0: never); see watchdog.h. */
    double timeout_worker;
    /* Loading a plugin file and its startup hook must finish within this
     * (0: never); the ASGI bridge is exempt. */
    double timeout_startup;

    long limit_concurrency;  /* 0: none */
    long limit_max_requests; /* 0: none */
    long limit_max_requests_jitter;
    /* A worker whose watchdog thread has not beaten for this long is
     * killed and replaced by the master (0: never). */
    double timeout_worker_healthcheck;
    /* Bytes of request line and headers: 431 beyond (uvicorn's
     * --h11-max-incomplete-event-size). */
    uint64_t max_head;
    uint64_t limit_body;

    /* WebSocket (uvicorn's flags and defaults). */
    const char *ws; /* auto|none (websockets|websockets-sansio|wsproto mean auto) */
    uint64_t ws_max_size;
    long ws_max_queue;
    double ws_ping_interval; /* 0: no pings */
    double ws_ping_timeout;  /* 0: pings need no answer */
    bool ws_per_message_deflate;
    double timeout_websocket_drain; /* for connections on a replaced plugin */

    /* Outbound HTTP (fetch): the worker's cache of connections, in total
     * and per host and port (httpc.h). */
    long fetch_max_connections;
    long fetch_max_host_connections;

    /* --reload: new workers with new code when the app's files change
     * (master.c, reload_watch.h), watching reload_dirs (default: the
     * current folder) for files matching reload_includes and none of
     * reload_excludes (uvicorn's patterns), reload_delay after the last
     * change. */
    bool reload;
    struct str_list reload_dirs;
    struct str_list reload_includes;
    struct str_list reload_excludes;
    double reload_delay;

    /* --static PREFIX=DIR values, checked (static.h), in order; and
     * --static-max-age (-1: no Cache-Control). */
    struct str_list statics;
    long static_max_age;

    /* Extra response headers from --header, each "name: value". */
    struct str_list headers;
    bool server_header;
    bool date_header;
    const char *root_path;
    bool proxy_headers;
    /* NULL until config_apply_env: $FORWARDED_ALLOW_IPS, else uvicorn's
     * "127.0.0.1,::1"; proxy_trust is it parsed (proxy_trust.h). */
    const char *forwarded_allow_ips;
    struct proxy_trust *proxy_trust;
};

enum config_result { CONFIG_OK, CONFIG_EXIT_OK, CONFIG_ERROR };

/* Fills cfg from argv. On CONFIG_ERROR, err holds one line naming the flag
 * and what is wrong. CONFIG_EXIT_OK means --help or --version was printed. */
enum config_result config_parse(struct config *cfg, int argc, char **argv, char *err,
                                size_t errlen);
/* After the environment is final (--env-file loaded): --workers defaults
 * to $WEB_CONCURRENCY, else 1, and --forwarded-allow-ips to
 * $FORWARDED_ALLOW_IPS, as in uvicorn. -1 with one line in err when
 * WEB_CONCURRENCY is not a number. */
int config_apply_env(struct config *cfg, char *err, size_t errlen);
void config_free(struct config *cfg);

#endif
