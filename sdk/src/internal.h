/* Internal helpers shared by the SDK's files; nothing here is public. */
#ifndef EVICORN_SDK_INTERNAL_H
#define EVICORN_SDK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <evicorn/sdk.h>

/* Length of the valid UTF-8 sequence at s[0..len), or 0 when the bytes
 * there are not one (overlong forms, surrogates and values past U+10FFFF
 * are invalid, as in Python's decoder). */
size_t sdk_utf8_seq(const unsigned char *s, size_t len);
/* How many bytes at s (an invalid sequence) one U+FFFD replaces. */
size_t sdk_utf8_bad(const unsigned char *s, size_t len);
/* s[0..len) with every %XX decoded, and '+' as a space when plus_is_space
 * (a query string), into out, which has room for len bytes. Other bytes,
 * a stray '%' included, are copied. Returns the length written. */
size_t sdk_pct_decode(const char *s, size_t len, bool plus_is_space, char *out);
/* Whether all of s[0..len) is valid UTF-8. */
bool sdk_utf8_valid(const char *s, size_t len);
/* Appends s[0..len) with every invalid byte replaced by U+FFFD. */
int sdk_buf_utf8_lossy(evicorn_buf *b, const char *s, size_t len);
/* Python's repr() of a finite double into out (at least 32 bytes). */
void sdk_float_repr(double v, char *out, size_t size);

#endif
