/* json: the little JSON the server writes itself (error details, the
 * status page): string literals, escaped once here. Plugins build richer
 * JSON with the SDK. */
#ifndef EVICORN_JSON_H
#define EVICORN_JSON_H

#include "buf.h"

/* Appends s (NUL-terminated; NULL is "") as a JSON string literal, quotes
 * included: '"' and '\\' escaped, control bytes as \u00XX, other bytes as
 * they are. Returns 0, or -1 on out of memory. */
int json_append_string(struct buf *b, const char *s);

#endif
