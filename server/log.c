/* log: server and access log lines; see log.h. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "access_log.h"
#include "http.h"
#include "log_sink.h"
#include "log_writer.h"

enum log_level log_threshold = LOG_INFO;

static const char *const level_names[] = {"critical", "error", "warning", "info", "debug", "trace"};
static const char *const level_prefixes[] = {
    "CRITICAL: ", "ERROR:    ", "WARNING:  ", "INFO:     ", "DEBUG:    ", "TRACE:    "};

/* uvicorn's colours (--use-colors): the level name, and in access lines the
 * request line in bold and the status by its class. */
static bool colors_err, colors_out;
static const char *const level_colors[] = {"\033[91m", "\033[31m", "\033[33m",
                                           "\033[32m", "\033[36m", "\033[34m"};
static const char *const status_colors[] = {"",         "\033[97m", "\033[32m",
                                            "\033[33m", "\033[31m", "\033[91m"};
#define RESET "\033[0m"
#define BOLD  "\033[1m"

void log_use_colors(bool server_lines, bool access_lines)
{
    colors_err = server_lines;
    colors_out = access_lines;
}

/* "INFO:     " or its coloured form; returns its length. */
static size_t level_prefix(enum log_level level, bool colors, char *out, size_t cap)
{
    const char *plain = level_prefixes[level];
    if (!colors) {
        size_t n = strlen(plain);
        memcpy(out, plain, n);
        return n;
    }
    const char *colon = strchr(plain, ':');
    int n = snprintf(out, cap, "%s%.*s" RESET "%s", level_colors[level], (int)(colon - plain),
                     plain, colon);
    return n > 0 ? (size_t)n : 0;
}

/* Access lines wait here until log_flush; sized so a burst of pipelined
 * requests is one write. */
static char access_buf[16384];
static size_t access_len;

const char *log_level_name(int level)
{
    if (level < LOG_CRITICAL || level > LOG_TRACE)
        return "info";
    return level_names[level];
}

int log_level_parse(const char *name)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++)
        if (strcmp(name, level_names[i]) == 0)
            return (int)i;
    return -1;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char line[2048];
    bool to_sink = log_sink_active();
    size_t n = to_sink ? 0 : level_prefix(level, colors_err, line, 32);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    if (to_sink && log_sink_message(level, line))
        return;
    if (to_sink) { /* not queued: written here after all */
        char copy[sizeof line];
        memcpy(copy, line, sizeof copy);
        n = level_prefix(level, colors_err, line, 32);
        m = snprintf(line + n, sizeof line - n - 1, "%s", copy);
        if (m < 0)
            return;
    }
    n += (size_t)m < sizeof line - n - 1 ? (size_t)m : sizeof line - n - 2;
    line[n++] = '\n';
    log_write_all(STDERR_FILENO, line, n);
}

void log_flush(void)
{
    if (access_len == 0)
        return;
    log_writer_put(access_buf, access_len);
    access_len = 0;
}

void log_access(const struct addr *client, const char *method, size_t method_len,
                const char *target, size_t target_len, int http_minor, int status)
{
    if (!log_enabled(LOG_INFO))
        return;
    if (target_len > 1024)
        target_len = 1024; /* keep one line bounded */
    char who[ADDR_TEXT_MAX];
    addr_text(client, who);
    if (log_sink_active() && log_sink_access(who, method, method_len, target, target_len,
                                             http_minor ? "1.1" : "1.0", status))
        return;
    /* uvicorn's line, with the status's reason phrase. */
    const char *reason = http_reason(status);
    if (strcmp(reason, "Unknown") == 0)
        reason = "";
    size_t need = 64 + strlen(who) + method_len + target_len + strlen(reason) + 32;
    if (access_len + need > sizeof access_buf)
        log_flush();
    char prefix[32];
    size_t pn = level_prefix(LOG_INFO, colors_out, prefix, sizeof prefix);
    bool c = colors_out;
    int m = snprintf(access_buf + access_len, sizeof access_buf - access_len,
                     "%.*s%s - \"%s%.*s %.*s HTTP/1.%d%s\" %s%d %s%s\n", (int)pn, prefix, who,
                     c ? BOLD : "", (int)method_len, method, (int)target_len, target, http_minor,
                     c ? RESET : "", c ? status_colors[status / 100 % 6] : "", status, reason,
                     c ? RESET : "");
    if (m > 0 && (size_t)m < sizeof access_buf - access_len)
        access_len += (size_t)m;
}

void log_access_formatted(const char *fmt, const struct access_entry *e)
{
    if (!log_enabled(LOG_INFO))
        return;
    static char line[ACCESS_LINE_MAX];
    size_t n = access_format_render(fmt, e, line, sizeof line);
    if (access_len + n > sizeof access_buf)
        log_flush();
    if (n > sizeof access_buf) {
        log_writer_put(line, n);
        return;
    }
    memcpy(access_buf + access_len, line, n);
    access_len += n;
}

/* A line the sink could not take, in the plain format. */
static void write_record(const struct log_record *r)
{
    if (r->access) {
        char line[2048];
        int m = snprintf(line, sizeof line, "%s%s - \"%s %s HTTP/%s\" %d %s\n",
                         level_prefixes[LOG_INFO], r->client, r->method, r->target, r->http_version,
                         r->status, http_reason(r->status));
        if (m > 0)
            log_write_all(STDOUT_FILENO, line,
                          (size_t)m < sizeof line ? (size_t)m : sizeof line - 1);
        return;
    }
    char line[2048];
    int m = snprintf(line, sizeof line, "%s%s\n", level_prefixes[r->level], r->text);
    if (m > 0)
        log_write_all(STDERR_FILENO, line, (size_t)m < sizeof line ? (size_t)m : sizeof line - 1);
}

void log_drain(void)
{
    log_flush();
    log_writer_drain(2.0);
    log_sink_drain(2.0, write_record);
}
