/* log: the server's log lines (stderr) and access log (stdout).
 *
 * Lines follow uvicorn's shape ("INFO:     message") so operators moving from
 * uvicorn read them the same way. Each server line is written with a single
 * write(2), so lines from several processes never interleave. Access-log
 * lines are buffered and handed over once per event-loop iteration
 * (log_flush), because one write per request would cost more than the
 * request itself, to a writer thread (log_writer.h), so a stdout that is
 * not read never stops the loop. */
#ifndef EVICORN_LOG_H
#define EVICORN_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"

enum log_level { LOG_CRITICAL, LOG_ERROR, LOG_WARNING, LOG_INFO, LOG_DEBUG, LOG_TRACE };

extern enum log_level log_threshold;

/* Parses "info" etc.; returns -1 for an unknown name. */
int log_level_parse(const char *name);
/* The name of a level ("info"), as log_level_parse takes it. */
const char *log_level_name(int level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_enabled(level) ((level) <= log_threshold)
#define log_critical(...)  log_msg(LOG_CRITICAL, __VA_ARGS__)
#define log_error(...)     log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warning(...)   log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)      log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)
#define log_trace(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_TRACE))                                                                \
            log_msg(LOG_TRACE, __VA_ARGS__);                                                       \
    } while (0)

/* Colours as uvicorn's (--use-colors): in the server's lines (stderr),
 * and in access lines (stdout). Off by default. */
void log_use_colors(bool server_lines, bool access_lines);

/* Appends one access-log line: client - "METHOD target HTTP/x.y" status
 * and reason phrase, as uvicorn writes it. */
void log_access(const struct addr *client, const char *method, size_t method_len,
                const char *target, size_t target_len, int http_minor, int status);
/* Appends one access-log line in --access-log-format's format fmt
 * ("json" or a template; access_log.h). */
struct access_entry;
void log_access_formatted(const char *fmt, const struct access_entry *e);
/* Hands buffered access-log lines to the writer thread. */
void log_flush(void);
/* Before the process exits: buffered lines, and lines queued for the
 * sink (log_sink.h), are written. */
void log_drain(void);

#endif
