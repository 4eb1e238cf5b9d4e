/* response: the pure formatting pieces of an HTTP/1.1 response.
 *
 * Status reasons, the Date header (formatted at most once a second), header
 * validation against response splitting, and FastAPI's {"detail": ...} error
 * bodies. No I/O here, so it is unit-tested directly. */
#ifndef EVICORN_RESPONSE_H
#define EVICORN_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"

/* The reason phrase for a status ("Not Found"); "Unknown" when unassigned. */
const char *http_reason(int status);
/* The IMF-fixdate for now, e.g. "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes),
 * reformatted only when the second changes. */
const char *http_date(time_t now);
/* Formats t into out (at least 30 bytes); returns the length (29). */
size_t http_date_format(time_t t, char *out);
/* A header name must be a token; a value must not hold CR, LF or NUL (or
 * other controls but HT), or the response could be split. */
bool http_header_name_valid(const char *name, size_t len);
bool http_header_value_valid(const char *value, size_t len);
/* Appends {"detail":"<escaped detail>"}; returns 0 or -1 on out of memory. */
int http_json_detail(struct buf *b, const char *detail);
/* Writes v in decimal at p; returns the end. */
char *http_u64(char *p, uint64_t v);
/* Whether a response with this status may carry a body. */
static inline bool http_status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

#endif
