/* json: the little JSON the server writes itself (error details, the
 * status page): string literals, escaped once here. Plugins build richer
 * JSON with the SDK. */
#ifndef EVICORN_JSON_H
#define EVICORN_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* The escaped form of byte c inside a JSON string literal (RFC 8259) into
 * out: '"' and '\\' escaped, control bytes as \u00XX; bytes from 0x7f up
 * as \u00XX too when ascii_only (for bytes that need not be UTF-8, such as a
 * client's), as they are otherwise. Returns its length: 1, 2 or 6. */
size_t json_escape_byte(unsigned char c, bool ascii_only, char out[static 6]);

/* Appends s (NUL-terminated; NULL is "") as a JSON string literal, quotes
 * included: '"' and '\\' escaped, control bytes as \u00XX, other bytes as
 * they are. Returns 0, or -1 on out of memory. */
int json_append_string(struct buf *b, const char *s);

#endif
