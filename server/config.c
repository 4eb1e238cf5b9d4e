/* config: command-line parsing; see config.h.
 *
 * A table drives parsing so that --help, validation and the README stay in
 * step: each flag has a kind (boolean pair, integer with range, seconds,
 * size, string) and the field it fills. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "access_log.h"
#include "http.h"
#include "log.h"
#include "proxy_trust.h"
#include "static_spec.h"

enum opt_kind {
    OPT_BOOL,
    OPT_INT,
    OPT_LONG,
    OPT_SECONDS,
    OPT_SIZE,
    OPT_STRING,
    OPT_LIST,     /* repeatable: each value is appended to a struct str_list */
    OPT_CHOICE,   /* a const char * that must be one of choices */
    OPT_TRISTATE, /* an int: -1 when not given, else 1 (--x) or 0 (--no-x) */
    OPT_SPECIAL
};

struct opt {
    const char *name; /* without "--" */
    enum opt_kind kind;
    size_t offset;
    long min, max;
    const char *help;
};

#define F(field) offsetof(struct config, field)

/* The values an OPT_CHOICE takes: "a|b|c", "*:*" standing for module:attr. */
static const struct {
    const char *name, *choices;
} choice_opts[] = {
    {"interface", "auto|asgi3|asgi2|wsgi"},
    {"loop", "auto|asyncio|uvloop|none|*:*"},
    {"ws", "auto|none|websockets|websockets-sansio|wsproto"},
};

/* Switches with no --no- form. */
static const char *const single_switches[] = {"factory", "plugins-insecure", "reload"};

static const char *choices_of(const struct opt *o)
{
    for (size_t i = 0; i < sizeof choice_opts / sizeof choice_opts[0]; i++)
        if (strcmp(choice_opts[i].name, o->name) == 0)
            return choice_opts[i].choices;
    return "";
}

/* Whether --no-NAME exists for o. */
static bool negatable(const struct opt *o)
{
    if (o->kind == OPT_TRISTATE)
        return true;
    if (o->kind != OPT_BOOL)
        return false;
    for (size_t i = 0; i < sizeof single_switches / sizeof single_switches[0]; i++)
        if (strcmp(single_switches[i], o->name) == 0)
            return false;
    return true;
}

static const struct opt opts[] = {
    {"host", OPT_STRING, F(host), 0, 0, "Bind socket to this host. [default: 127.0.0.1]"},
    {"port", OPT_INT, F(port), 0, 65535,
     "Bind socket to this port; 0 picks a free one. [default: 8000]"},
    {"uds", OPT_STRING, F(uds), 0, 0, "Bind to a UNIX domain socket."},
    {"fd", OPT_INT, F(fd), 0, 1 << 20,
     "Serve on an inherited listening socket with this file descriptor."},
    {"fd-name", OPT_LIST, F(fd_names), 0, 0,
     "With systemd socket activation, serve only the sockets of this name (LISTEN_FDNAMES); "
     "repeatable. [default: every socket passed]"},
    {"backlog", OPT_INT, F(backlog), 1, 1 << 20,
     "Maximum number of connections waiting to be accepted. [default: 2048]"},
    {"workers", OPT_INT, F(workers), 0, 1024,
     "Number of worker processes; 0 = one per core. [default: $WEB_CONCURRENCY, else 1]"},
    {"threads", OPT_INT, F(threads), 1, 4096,
     "Thread pool size per worker for sync handlers. [default: 40]"},
    {"plugins", OPT_STRING, F(plugins_dir), 0, 0,
     "Folder watched for plugin .so files. [default: ./plugins]"},
    {"status-path", OPT_STRING, F(status_path), 0, 0,
     "Serve the worker's plugin status as JSON on this path (off by default)."},
    {"metrics-path", OPT_STRING, F(metrics_path), 0, 0,
     "Serve Prometheus metrics of the whole instance on this path (off by default)."},
    {"health-path", OPT_STRING, F(health_path), 0, 0,
     "Answer 200 on this path while the instance takes work, 503 once shutdown begins (off by "
     "default)."},
    {"shutdown-delay", OPT_SECONDS, F(shutdown_delay), 0, 0,
     "On SIGTERM/SIGINT, fail --health-path at once but keep serving this many seconds before "
     "the graceful shutdown. [default: 0]"},
    {"plugins-insecure", OPT_BOOL, F(plugins_insecure), 0, 0,
     "Only warn about plugin files and folders others can write (development). [default: "
     "refuse them]"},
    {"plugin-pubkey", OPT_STRING, F(plugin_pubkey), 0, 0,
     "Load only plugins signed with this Ed25519 key (PEM): NAME.so needs NAME.so.sig."},
    {"user", OPT_STRING, F(user), 0, 0,
     "Run the workers as this user (the master must be root). [default: the current user]"},
    {"group", OPT_STRING, F(group), 0, 0,
     "Run the workers with this group. [default: the --user's primary group]"},
    {"log-level", OPT_SPECIAL, 0, 0, 0, "critical|error|warning|info|debug|trace [default: info]"},
    {"log-config", OPT_STRING, F(log_config), 0, 0,
     "Configure Python logging from this file: .json, .yaml/.yml or .ini, as uvicorn; evicorn's "
     "own lines then go to the loggers uvicorn.error and uvicorn.access."},
    {"use-colors", OPT_TRISTATE, F(use_colors), 0, 0,
     "Colour level names and status codes. [default: when the output is a terminal]"},
    {"access-log", OPT_BOOL, F(access_log), 0, 0,
     "Enable/disable the access log. [default: enabled]"},
    {"access-log-format", OPT_STRING, F(access_log_format), 0, 0,
     "Access log line as %(name)s fields (h r s b B m U q H t T L D f a p R {header}i), or "
     "'json' for one JSON object per line. [default: uvicorn's line]"},
    {"timeout-keep-alive", OPT_SECONDS, F(timeout_keep_alive), 0, 0,
     "Close idle keep-alive connections after this many seconds. [default: 5]"},
    {"timeout-header", OPT_SECONDS, F(timeout_header), 0, 0,
     "The whole request head must arrive within this many seconds. [default: 10]"},
    {"timeout-body", OPT_SECONDS, F(timeout_body), 0, 0,
     "Close when a request body stalls this many seconds between reads. [default: 30]"},
    {"timeout-write", OPT_SECONDS, F(timeout_write), 0, 0,
     "Close when a client reads nothing of a pending response for this many seconds. [default: "
     "60]"},
    {"timeout-graceful-shutdown", OPT_SECONDS, F(timeout_graceful_shutdown), 0, 0,
     "Time in-flight requests get to finish on shutdown. [default: 30]"},
    {"timeout-worker", OPT_SECONDS, F(timeout_worker), 0, 0,
     "Replace a worker whose event loop a plugin's async code holds this many seconds; 0 = "
     "never. [default: 30]"},
    {"timeout-startup", OPT_SECONDS, F(timeout_startup), 0, 0,
     "Refuse a plugin whose loading and startup take longer than this (the ASGI app's lifespan "
     "is exempt); 0 = never. [default: 10]"},
    {"limit-concurrency", OPT_LONG, F(limit_concurrency), 0, 1L << 40,
     "Requests in flight per worker before answering 503. [default: none]"},
    {"limit-max-requests", OPT_LONG, F(limit_max_requests), 0, 1L << 62,
     "Replace a worker after it served this many requests. [default: none]"},
    {"limit-max-requests-jitter", OPT_LONG, F(limit_max_requests_jitter), 0, 1L << 40,
     "Add up to this many, chosen at random per worker, to --limit-max-requests. [default: 0]"},
    {"timeout-worker-healthcheck", OPT_SECONDS, F(timeout_worker_healthcheck), 0, 0,
     "Restart a worker that has not answered the master's health check for this long; 0 = "
     "never. [default: 5]"},
    {"h11-max-incomplete-event-size", OPT_SIZE, F(max_head), 0, 0,
     "Largest request head (request line and headers) in bytes; 431 beyond. [default: 16K]"},
    {"limit-body", OPT_SIZE, F(limit_body), 0, 0,
     "Largest request body, in bytes (K, M, G suffixes). [default: 1M]"},
    {"ws", OPT_CHOICE, F(ws), 0, 0,
     "auto|none: serve WebSocket routes, or treat upgrades as plain requests (websockets, "
     "websockets-sansio and wsproto mean auto). [default: auto]"},
    {"ws-max-size", OPT_SIZE, F(ws_max_size), 1, 0,
     "Largest WebSocket message in bytes, after decompression; 1009 beyond. [default: 16M]"},
    {"ws-max-queue", OPT_LONG, F(ws_max_queue), 1, 1L << 20,
     "WebSocket messages waiting for the app per connection before reading pauses. [default: 32]"},
    {"ws-ping-interval", OPT_SECONDS, F(ws_ping_interval), 0, 0,
     "Ping idle WebSocket clients after this many seconds; 0 = never. [default: 20]"},
    {"ws-ping-timeout", OPT_SECONDS, F(ws_ping_timeout), 0, 0,
     "Close with 1011 when a ping is not answered in this many seconds; 0 = wait. [default: 20]"},
    {"ws-per-message-deflate", OPT_BOOL, F(ws_per_message_deflate), 0, 0,
     "Enable/disable WebSocket compression (permessage-deflate). [default: enabled]"},
    {"timeout-websocket-drain", OPT_SECONDS, F(timeout_websocket_drain), 0, 0,
     "WebSocket connections of a replaced or removed plugin close with 1012 after this many "
     "seconds. [default: 60]"},
    {"fetch-max-connections", OPT_LONG, F(fetch_max_connections), 1, 1L << 20,
     "Outbound (fetch) connections per worker, open and kept alive together; more requests "
     "wait. [default: 64]"},
    {"fetch-max-host-connections", OPT_LONG, F(fetch_max_host_connections), 1, 1L << 20,
     "Outbound (fetch) connections per worker to one host and port. [default: 16]"},
    {"static", OPT_SPECIAL, 0, 0, 0,
     "PREFIX=DIR: serve the files of folder DIR at URL path PREFIX, before plugin routes; "
     "repeatable."},
    {"static-max-age", OPT_LONG, F(static_max_age), 0, 1L << 31,
     "Send Cache-Control: max-age=S (seconds) with --static files. [default: none]"},
    {"header", OPT_SPECIAL, 0, 0, 0, "Add a response header NAME:VALUE; repeatable."},
    {"server-header", OPT_BOOL, F(server_header), 0, 0,
     "Enable/disable the Server header. [default: enabled]"},
    {"date-header", OPT_BOOL, F(date_header), 0, 0,
     "Enable/disable the Date header. [default: enabled]"},
    {"root-path", OPT_STRING, F(root_path), 0, 0,
     "ASGI root_path for apps mounted below a prefix."},
    {"proxy-headers", OPT_BOOL, F(proxy_headers), 0, 0,
     "Trust X-Forwarded-For/-Proto from --forwarded-allow-ips. [default: enabled]"},
    {"forwarded-allow-ips", OPT_STRING, F(forwarded_allow_ips), 0, 0,
     "Comma-separated proxy IPs or networks to trust, or '*'. [default: $FORWARDED_ALLOW_IPS, "
     "else 127.0.0.1,::1]"},
    {"app-dir", OPT_STRING, F(app_dir), 0, 0, "Look for APP in this folder. [default: .]"},
    {"reload", OPT_BOOL, F(reload), 0, 0,
     "Start new workers with new code when the app's files change; the old ones drain."},
    {"reload-dir", OPT_LIST, F(reload_dirs), 0, 0,
     "Watch this folder for --reload; repeatable. [default: the current folder]"},
    {"reload-include", OPT_LIST, F(reload_includes), 0, 0,
     "Reload for files matching this glob; repeatable. [default: *.py]"},
    {"reload-exclude", OPT_LIST, F(reload_excludes), 0, 0,
     "Ignore files matching this glob; repeatable. [default: .* .py[cod] .sw.* ~*]"},
    {"reload-delay", OPT_SECONDS, F(reload_delay), 0, 0,
     "Wait this long after the last change before reloading. [default: 0.25]"},
    {"interface", OPT_CHOICE, F(interface), 0, 0,
     "auto|asgi3|asgi2|wsgi: how APP is called; wsgi runs it on the thread pool. [default: auto]"},
    {"loop", OPT_CHOICE, F(loop), 0, 0,
     "auto|asyncio|uvloop|none, or module:attr of a loop factory: the app's asyncio loop. "
     "[default: auto]"},
    {"env-file", OPT_STRING, F(env_file), 0, 0,
     "Load environment variables from this .env file; set ones win (python-dotenv's rules)."},
    {"factory", OPT_BOOL, F(factory), 0, 0, "Treat APP as a factory returning the app."},
    {"lifespan", OPT_SPECIAL, 0, 0, 0,
     "auto|on|off: run the app's lifespan events. [default: auto]"},
    {"version", OPT_SPECIAL, 0, 0, 0, "Print the version and exit."},
    {"help", OPT_SPECIAL, 0, 0, 0, "Print this help and exit."},
};

static void set_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The message is one line even when it quotes a value holding CR, LF or
 * other control bytes (argv may): those are written as \r, \n or \xHH. */
static void set_error(char *err, size_t errlen, const char *fmt, ...)
{
    char raw[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    if (errlen == 0)
        return;
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)raw; *p; p++) {
        char esc[5] = {(char)*p, 0};
        if (*p == '\r')
            memcpy(esc, "\\r", 3);
        else if (*p == '\n')
            memcpy(esc, "\\n", 3);
        else if (*p < 0x20 || *p == 0x7f)
            snprintf(esc, sizeof esc, "\\x%02x", *p);
        size_t k = strlen(esc);
        if (n + k >= errlen)
            break;
        memcpy(err + n, esc, k);
        n += k;
    }
    err[n] = '\0';
}

static void print_help(void)
{
    printf("Usage: evicorn [APP] [options]\n\n"
           "Serves HTTP/1.1 from plugin .so files in --plugins, and the ASGI app APP\n"
           "(module:attr) when given.\n\nOptions:\n");
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const struct opt *o = &opts[i];
        char name[64];
        if (negatable(o))
            snprintf(name, sizeof name, "--%s/--no-%s", o->name, o->name);
        else if (o->kind == OPT_BOOL || strcmp(o->name, "help") == 0 ||
                 strcmp(o->name, "version") == 0) /* these take no value */
            snprintf(name, sizeof name, "--%s", o->name);
        else
            snprintf(name, sizeof name, "--%s VALUE", o->name);
        printf("  %-36s %s\n", name, o->help);
    }
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0 || v > 1e7)
        return -1;
    *out = v;
    return 0;
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    uint64_t mult = 1;
    if (*end) {
        switch (*end) {
        case 'k':
        case 'K':
            mult = 1ULL << 10;
            break;
        case 'm':
        case 'M':
            mult = 1ULL << 20;
            break;
        case 'g':
        case 'G':
            mult = 1ULL << 30;
            break;
        default:
            return -1;
        }
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
        if (*end)
            return -1;
    }
    if (v > UINT64_MAX / mult)
        return -1;
    *out = (uint64_t)v * mult;
    return 0;
}

/* Header names are tokens and values may not hold CR, LF or NUL: a header
 * from the command line must not be able to split a response. */
static int valid_header_arg(const char *s)
{
    const char *colon = strchr(s, ':');
    return colon && http_is_token(s, (size_t)(colon - s)) &&
           http_field_value_valid(colon + 1, strlen(colon + 1));
}

static int list_add(struct str_list *l, const char *value)
{
    const char **items = realloc(l->items, (l->n + 1) * sizeof *items);
    if (!items)
        return -1;
    l->items = items;
    l->items[l->n++] = value;
    return 0;
}

static enum config_result apply_special(struct config *cfg, const struct opt *o, const char *val,
                                        char *err, size_t errlen)
{
    if (strcmp(o->name, "log-level") == 0) {
        int lvl = log_level_parse(val);
        if (lvl < 0) {
            set_error(err, errlen,
                      "--log-level: invalid value '%s' (expected critical, error, warning, info, "
                      "debug or trace)",
                      val);
            return CONFIG_ERROR;
        }
        cfg->log_level = lvl;
        cfg->log_level_given = true;
    } else if (strcmp(o->name, "lifespan") == 0) {
        if (strcmp(val, "auto") == 0)
            cfg->lifespan = LIFESPAN_AUTO;
        else if (strcmp(val, "on") == 0)
            cfg->lifespan = LIFESPAN_ON;
        else if (strcmp(val, "off") == 0)
            cfg->lifespan = LIFESPAN_OFF;
        else {
            set_error(err, errlen, "--lifespan: invalid value '%s' (expected auto, on or off)",
                      val);
            return CONFIG_ERROR;
        }
    } else if (strcmp(o->name, "header") == 0) {
        if (!valid_header_arg(val)) {
            set_error(err, errlen, "--header: invalid value '%s' (expected NAME:VALUE)", val);
            return CONFIG_ERROR;
        }
        if (list_add(&cfg->headers, val) < 0) {
            set_error(err, errlen, "out of memory");
            return CONFIG_ERROR;
        }
    } else if (strcmp(o->name, "static") == 0) {
        char why[512];
        if (static_spec_check(val, why, sizeof why) < 0) {
            set_error(err, errlen, "%s", why);
            return CONFIG_ERROR;
        }
        if (list_add(&cfg->statics, val) < 0) {
            set_error(err, errlen, "out of memory");
            return CONFIG_ERROR;
        }
    }
    return CONFIG_OK;
}

static int valid_app(const char *app)
{
    const char *colon = strchr(app, ':');
    return colon && colon != app && colon[1] && !strchr(colon + 1, ':');
}

/* Whether val is one of "a|b|c"; "*:*" stands for any module:attr. */
static bool choice_valid(const char *choices, const char *val)
{
    size_t n = strlen(val);
    for (const char *c = choices; *c;) {
        const char *bar = strchr(c, '|');
        size_t k = bar ? (size_t)(bar - c) : strlen(c);
        if (k == 3 && strncmp(c, "*:*", 3) == 0 ? valid_app(val)
                                                : k == n && strncmp(c, val, n) == 0)
            return true;
        c += k + (bar != NULL);
    }
    return false;
}

/* "a|b|c" as "a, b or c", and "*:*" as "module:attr". */
static void choices_text(const char *choices, char *out, size_t len)
{
    size_t used = 0, count = 1;
    for (const char *c = choices; *c; c++)
        count += *c == '|';
    size_t i = 0;
    for (const char *c = choices; *c && used < len; i++) {
        const char *bar = strchr(c, '|');
        size_t k = bar ? (size_t)(bar - c) : strlen(c);
        const char *sep = i == 0 ? "" : i + 1 == count ? " or " : ", ";
        bool any = k == 3 && strncmp(c, "*:*", 3) == 0;
        int m = snprintf(out + used, len - used, "%s%.*s", sep, any ? 11 : (int)k,
                         any ? "module:attr" : c);
        if (m < 0)
            break;
        used += (size_t)m;
        c += k + (bar != NULL);
    }
}

static enum config_result apply_value(struct config *cfg, const struct opt *o, const char *val,
                                      char *err, size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    long l;
    switch (o->kind) {
    case OPT_STRING:
        if (!*val) {
            set_error(err, errlen, "--%s: value must not be empty", o->name);
            return CONFIG_ERROR;
        }
        *(const char **)field = val;
        return CONFIG_OK;
    case OPT_INT:
    case OPT_LONG:
        if (parse_long(val, o->min, o->max, &l) < 0) {
            set_error(err, errlen, "--%s: invalid value '%s' (expected an integer from %ld to %ld)",
                      o->name, val, o->min, o->max);
            return CONFIG_ERROR;
        }
        if (o->kind == OPT_INT)
            *(int *)field = (int)l;
        else
            *(long *)field = l;
        return CONFIG_OK;
    case OPT_SECONDS:
        if (parse_seconds(val, (double *)field) < 0) {
            set_error(err, errlen, "--%s: invalid value '%s' (expected a number of seconds)",
                      o->name, val);
            return CONFIG_ERROR;
        }
        return CONFIG_OK;
    case OPT_SIZE:
        if (parse_size(val, (uint64_t *)field) < 0) {
            set_error(err, errlen, "--%s: invalid value '%s' (expected bytes, e.g. 1048576 or 1M)",
                      o->name, val);
            return CONFIG_ERROR;
        }
        return CONFIG_OK;
    case OPT_LIST:
        if (!*val) {
            set_error(err, errlen, "--%s: value must not be empty", o->name);
            return CONFIG_ERROR;
        }
        if (list_add((struct str_list *)field, val) < 0) {
            set_error(err, errlen, "out of memory");
            return CONFIG_ERROR;
        }
        return CONFIG_OK;
    case OPT_CHOICE:
        if (!choice_valid(choices_of(o), val)) {
            char expected[128];
            choices_text(choices_of(o), expected, sizeof expected);
            set_error(err, errlen, "--%s: invalid value '%s' (expected %s)", o->name, val,
                      expected);
            return CONFIG_ERROR;
        }
        *(const char **)field = val;
        return CONFIG_OK;
    case OPT_SPECIAL:
        return apply_special(cfg, o, val, err, errlen);
    case OPT_BOOL:
    case OPT_TRISTATE:
        break;
    }
    return CONFIG_ERROR;
}

/* Click's boolean words: 1, 0, -1 for anything else. */
static int bool_word(const char *v)
{
    static const char *const yes[] = {"1", "true", "t", "yes", "y", "on"};
    static const char *const no[] = {"0", "false", "f", "no", "n", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return 1;
        if (strcasecmp(v, no[i]) == 0)
            return 0;
    }
    return -1;
}

static const struct opt *find_opt(const char *name, size_t len, bool *negated)
{
    *negated = false;
    if (len > 3 && strncmp(name, "no-", 3) == 0) {
        for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
            if (negatable(&opts[i]) && strlen(opts[i].name) == len - 3 &&
                strncmp(opts[i].name, name + 3, len - 3) == 0) {
                *negated = true;
                return &opts[i];
            }
    }
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

/* Its address tells the default from a --plugins that names the same folder. */
static const char default_plugins_dir[] = "./plugins";

static void set_defaults(struct config *cfg)
{
    *cfg = (struct config){
        .app_dir = ".",
        .lifespan = LIFESPAN_AUTO,
        .host = "127.0.0.1",
        .port = 8000,
        .fd = -1,
        .backlog = 2048,
        .threads = 40,
        .plugins_dir = default_plugins_dir,
        .log_level = LOG_INFO,
        .access_log = true,
        .timeout_keep_alive = 5,
        .timeout_header = 10,
        .timeout_body = 30,
        .timeout_write = 60,
        .timeout_graceful_shutdown = 30,
        .timeout_worker = 30,
        .timeout_startup = 10,
        .limit_body = 1 << 20,
        .ws = "auto",
        .ws_max_size = 16 * 1024 * 1024,
        .ws_max_queue = 32,
        .ws_ping_interval = 20,
        .ws_ping_timeout = 20,
        .ws_per_message_deflate = true,
        .timeout_websocket_drain = 60,
        .fetch_max_connections = 64,
        .fetch_max_host_connections = 16,
        .server_header = true,
        .date_header = true,
        .root_path = "",
        .proxy_headers = true,
        .reload_delay = 0.25,
        .use_colors = -1,
        .interface = "auto",
        .loop = "auto",
        .timeout_worker_healthcheck = 5,
        .max_head = 16 * 1024,
        .static_max_age = -1,
        .workers = -1, /* not given: $WEB_CONCURRENCY or 1, see config_apply_env */
    };
}

enum config_result config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    set_defaults(cfg);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] != '-' || arg[2] == '\0') {
            if (arg[0] == '-') {
                set_error(err, errlen, "unknown option '%s' (see --help)", arg);
                return CONFIG_ERROR;
            }
            if (cfg->app) {
                set_error(err, errlen, "unexpected argument '%s': only one APP may be given", arg);
                return CONFIG_ERROR;
            }
            if (!valid_app(arg)) {
                set_error(err, errlen, "invalid APP '%s': expected module:attribute", arg);
                return CONFIG_ERROR;
            }
            cfg->app = arg;
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        bool negated;
        const struct opt *o = find_opt(name, nlen, &negated);
        if (!o) {
            set_error(err, errlen, "unknown option '--%.*s' (see --help)", (int)nlen, name);
            return CONFIG_ERROR;
        }
        if (strcmp(o->name, "help") == 0 || strcmp(o->name, "version") == 0) {
            if (eq) {
                set_error(err, errlen, "--%s takes no value", o->name);
                return CONFIG_ERROR;
            }
            if (o->name[0] == 'h')
                print_help();
            else
                printf("evicorn %s\n", EVICORN_VERSION);
            return CONFIG_EXIT_OK;
        }
        if (o->kind == OPT_BOOL || o->kind == OPT_TRISTATE) {
            /* Switches take no value, as in uvicorn; except that uvicorn's
             * --ws-per-message-deflate takes one (`... false`), which
             * evicorn accepts beside the plain switch and its --no- form. */
            bool valued = !negated && strcmp(o->name, "ws-per-message-deflate") == 0;
            int word = -1;
            if (eq && valued)
                word = bool_word(eq + 1);
            else if (valued && i + 1 < argc && bool_word(argv[i + 1]) >= 0)
                word = bool_word(argv[++i]);
            if (eq && word < 0) {
                if (valued)
                    set_error(err, errlen, "--%s: invalid value '%s' (expected true or false)",
                              o->name, eq + 1);
                else
                    set_error(err, errlen, "--%.*s takes no value", (int)nlen, name);
                return CONFIG_ERROR;
            }
            if (word >= 0)
                negated = word == 0;
            if (o->kind == OPT_BOOL)
                *(bool *)((char *)cfg + o->offset) = !negated;
            else
                *(int *)((char *)cfg + o->offset) = !negated;
            continue;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc) {
                set_error(err, errlen, "--%s needs a value", o->name);
                return CONFIG_ERROR;
            }
            val = argv[++i];
        }
        enum config_result r = apply_value(cfg, o, val, err, errlen);
        if (r != CONFIG_OK)
            return r;
    }
    if (cfg->uds && cfg->fd >= 0) {
        set_error(err, errlen, "--uds and --fd cannot be used together");
        return CONFIG_ERROR;
    }
    cfg->plugins_dir_given = cfg->plugins_dir != default_plugins_dir;
    if (cfg->max_head < 1024 || cfg->max_head > 1 << 30) {
        set_error(err, errlen,
                  "--h11-max-incomplete-event-size: %llu is out of range (1K to 1G bytes)",
                  (unsigned long long)cfg->max_head);
        return CONFIG_ERROR;
    }
    if (strcmp(cfg->interface, "wsgi") == 0 && !cfg->app) {
        set_error(err, errlen, "--interface wsgi needs an APP");
        return CONFIG_ERROR;
    }
    if (cfg->access_log_format && access_format_check(cfg->access_log_format, err, errlen) < 0)
        return CONFIG_ERROR;
    if (cfg->reload && !cfg->app) {
        set_error(err, errlen, "--reload needs an APP (plugins reload by themselves)");
        return CONFIG_ERROR;
    }
    const char *const paths[][2] = {{"--metrics-path", cfg->metrics_path},
                                    {"--health-path", cfg->health_path}};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (paths[i][1] && paths[i][1][0] != '/') {
            set_error(err, errlen, "%s: '%s' must start with '/'", paths[i][0], paths[i][1]);
            return CONFIG_ERROR;
        }
    return CONFIG_OK;
}

int config_apply_env(struct config *cfg, char *err, size_t errlen)
{
    if (!cfg->forwarded_allow_ips) {
        const char *env = getenv("FORWARDED_ALLOW_IPS");
        cfg->forwarded_allow_ips = env ? env : "127.0.0.1,::1";
    }
    proxy_trust_free(cfg->proxy_trust);
    if (!(cfg->proxy_trust = proxy_trust_parse(cfg->forwarded_allow_ips))) {
        set_error(err, errlen, "out of memory");
        return -1;
    }
    if (cfg->workers >= 0)
        return 0;
    cfg->workers = 1;
    const char *wc = getenv("WEB_CONCURRENCY");
    if (!wc)
        return 0;
    long n;
    if (parse_long(wc, 0, 1024, &n) < 0) {
        set_error(err, errlen,
                  "WEB_CONCURRENCY: invalid value '%s' (expected an integer from 0 to 1024)", wc);
        return -1;
    }
    cfg->workers = (int)n;
    return 0;
}

void config_free(struct config *cfg)
{
    proxy_trust_free(cfg->proxy_trust);
    cfg->proxy_trust = NULL;
    struct str_list *lists[] = {&cfg->headers,         &cfg->reload_dirs, &cfg->reload_includes,
                                &cfg->reload_excludes, &cfg->statics,     &cfg->fd_names};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        free(lists[i]->items);
        *lists[i] = (struct str_list){0};
    }
}
