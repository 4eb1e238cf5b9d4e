/* buf: growable byte buffer; see buf.h. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

char *buf_reserve(struct buf *b, size_t n)
{
    /* A buffer without storage grows even for n == 0: NULL would read as
     * out of memory (and NULL + 0 is undefined). */
    if (b->data && b->cap - b->len >= n)
        return b->data + b->len;
    /* Reclaim the consumed prefix before growing: output buffers are
     * consumed from the front as the socket drains. */
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= n)
            return b->data + b->len;
    }
    size_t need = b->len + n;
    if (need < n)
        return NULL;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > ((size_t)-1) / 2)
            return NULL;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return NULL;
    b->data = p;
    b->cap = cap;
    return b->data + b->len;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    char *dst = buf_reserve(b, n);
    if (!dst)
        return -1;
    memcpy(dst, p, n);
    b->len += n;
    return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

void buf_consume(struct buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

void buf_clear(struct buf *b)
{
    b->off = b->len = 0;
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

int buf_move(struct buf *dst, struct buf *src)
{
    if (buf_size(src) == 0)
        return 0;
    if (buf_size(dst) == 0) {
        free(dst->data);
        *dst = *src;
        *src = (struct buf){0};
        return 0;
    }
    if (buf_append(dst, buf_start(src), buf_size(src)) < 0)
        return -1;
    buf_clear(src);
    return 0;
}
