/* http: the rules of HTTP that do not depend on the protocol version, each
 * written once: the token grammar (RFC 9110 5.6.2), field values (5.5),
 * the options of a Connection field (7.6.1), status reasons (15, from the
 * list both sides of the ABI share), dates (5.6.7) and hex digits.
 *
 * Everything that reads or writes HTTP (the HTTP/1 guard and adapter, the
 * response writer, the router, the outbound client, the command line)
 * takes its rules from here, so a rule is fixed and tested in one place.
 * Pure functions, no I/O. */
#ifndef EVICORN_HTTP_H
#define EVICORN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"

/* A header field as handlers and clients pass them: not NUL-terminated. */
struct http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

extern const unsigned char http_tchar_table[256];

/* tchar: "!#$%&'*+-.^_`|~", digits and letters. */
static inline bool http_is_tchar(unsigned char c)
{
    return http_tchar_table[c] != 0;
}
/* A token: one or more tchars (field names, methods). */
bool http_is_token(const char *s, size_t len);
/* A field value holds no control byte but HT (CR, LF and NUL would split
 * or truncate a message); obs-text (0x80-0xff) is allowed. */
bool http_field_value_valid(const char *value, size_t len);
/* Whether a Connection field value (a comma-separated list of tokens,
 * RFC 9110 7.6.1) names option, case-insensitively. Reads exactly len
 * bytes: values are not NUL-terminated. */
bool http_connection_has(const char *value, size_t len, const char *option);
/* The value of a hex digit, or -1. */
int http_hex_digit(unsigned char c);

/* The reason phrase for a status ("Not Found"); "Unknown" when unassigned. */
const char *http_reason(int status);
/* Whether a response with this status may carry a body. */
static inline bool http_status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

/* The IMF-fixdate for now, e.g. "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes),
 * reformatted only when the second changes (a per-process cache). */
const char *http_date(time_t now);
/* Formats t into out (at least 30 bytes); returns the length (29). */
size_t http_date_format(time_t t, char *out);
/* Writes v in decimal at p; returns the end. */
char *http_u64(char *p, uint64_t v);
/* Appends FastAPI's error body {"detail":"<escaped detail>"}; 0, or -1 on
 * out of memory. */
int http_json_detail(struct buf *b, const char *detail);

#endif
