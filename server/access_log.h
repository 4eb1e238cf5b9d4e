/* access_log: access-log lines in the format --access-log-format asks for.
 *
 * Without the flag the line stays uvicorn's (log.c). With it, either a
 * template of gunicorn-style atoms, %(name)s, or "json": one JSON object
 * per request with fixed keys. Every value a client chose (the target,
 * headers) is escaped, so no request can start a line of its own or forge
 * a field: in templates, bytes outside printable ASCII and the characters
 * " and \ become \xHH (as nginx writes them); in JSON, strings are escaped
 * per RFC 8259, bytes outside ASCII as \u00HH.
 *
 * Atoms: h client address, r request line, s status, b body bytes ("-"
 * for none), B body bytes, m method, U path, q query string, H protocol,
 * t time [day/Mon/year:H:M:S +0000], T duration in whole seconds, L in
 * seconds with microseconds, D in microseconds, f Referer, a User-Agent,
 * p worker pid, R route template, {name}i request header name. %% is a %. */
#ifndef EVICORN_ACCESS_LOG_H
#define EVICORN_ACCESS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* One completed request, as the access log sees it. Strings need not be
 * NUL-terminated; NULL (or length 0) is "-" (null in JSON). */
struct access_entry {
    const struct addr *client;
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    int http_minor;
    int status;
    uint64_t bytes;
    double duration; /* seconds */
    const char *route;
    /* The value of a request header (lower-case name), or NULL. */
    const char *(*header)(const void *ud, const char *name, size_t *len);
    const void *header_ud;
};

/* A buffer this large holds any line of a format whose fixed text is
 * short (each client-chosen value is cut at 1024 bytes). */
#define ACCESS_LINE_MAX 65536

/* 0 when fmt is "json" or a valid template; else -1 with a one-line reason. */
int access_format_check(const char *fmt, char *err, size_t errlen);
/* Writes one line for e (ending in \n) into out; returns its length, at
 * most cap - 1 (a longer line is cut, still ending in \n). */
size_t access_format_render(const char *fmt, const struct access_entry *e, char *out, size_t cap);

#endif
