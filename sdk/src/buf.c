/* buf: the growable byte buffer bodies are built in, and UTF-8 checks.
 *
 * A failed append poisons the buffer (failed = 1) so that a run of appends
 * can be checked once, at the end, without losing what came before. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int buf_reserve(evicorn_buf *b, size_t more)
{
    if (b->failed)
        return EVICORN_ENOMEM;
    if (more < b->cap - b->len) /* keeps room for the NUL */
        return 0;
    if (more > SIZE_MAX / 2 - b->len)
        goto fail;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len <= more)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        goto fail;
    b->data = p;
    b->cap = cap;
    return 0;
fail:
    b->failed = 1;
    return EVICORN_ENOMEM;
}

int evicorn_buf_append(evicorn_buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len) < 0)
        return EVICORN_ENOMEM;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int evicorn_buf_puts(evicorn_buf *b, const char *s)
{
    return evicorn_buf_append(b, s, strlen(s));
}

int evicorn_buf_printf(evicorn_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return EVICORN_EINVAL;
    }
    if ((size_t)n < sizeof small)
        return evicorn_buf_append(b, small, (size_t)n);
    if (buf_reserve(b, (size_t)n) < 0)
        return EVICORN_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void evicorn_buf_free(evicorn_buf *b)
{
    free(b->data);
    *b = (evicorn_buf)EVICORN_BUF_INIT;
}

/* ---- UTF-8 ---- */

size_t sdk_utf8_seq(const unsigned char *s, size_t len)
{
    if (len == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* past U+10FFFF */
    } else
        return 0;
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

bool sdk_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = sdk_utf8_seq(p + i, len - i);
        if (!n)
            return false;
        i += n;
    }
    return true;
}

size_t sdk_utf8_bad(const unsigned char *s, size_t len)
{
    /* The maximal subpart: a lead byte and the continuation bytes that
     * could still have completed it count as one bad sequence, as in
     * Python's decoder with errors="replace". */
    unsigned c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else
        return 1;
    size_t i = 1;
    if (i < len && s[i] >= lo && s[i] <= hi) {
        i++;
        while (i < n && i < len && (s[i] & 0xC0) == 0x80)
            i++;
    }
    return i;
}

int sdk_buf_utf8_lossy(evicorn_buf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < len) {
        size_t n = p[i] < 0x80 ? 1 : sdk_utf8_seq(p + i, len - i);
        if (n) {
            i += n;
            continue;
        }
        evicorn_buf_append(b, s + run, i - run);
        evicorn_buf_append(b, "\xEF\xBF\xBD", 3);
        i += sdk_utf8_bad(p + i, len - i);
        run = i;
    }
    evicorn_buf_append(b, s + run, len - run);
    return b->failed ? EVICORN_ENOMEM : 0;
}
