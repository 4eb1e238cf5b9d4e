/* buf: a growable byte buffer with a read offset.
 *
 * Used for a connection's pending output and a request's body and head
 * storage. Bytes are appended at the end and consumed from the front; the
 * consumed prefix is reclaimed lazily, when room is needed, so consuming is
 * O(1). Storage is allocated on first use, so an empty buffer costs nothing. */
#ifndef EVICORN_BUF_H
#define EVICORN_BUF_H

#include <stddef.h>

struct buf {
    char *data;
    size_t off; /* first unconsumed byte */
    size_t len; /* end of valid bytes (data[off..len) is the content) */
    size_t cap;
};

static inline size_t buf_size(const struct buf *b)
{
    return b->len - b->off;
}

/* Never NULL: a buffer that has held nothing yet has no storage, and NULL + 0
 * is undefined in C (as is memcpy or memcmp from NULL, even of 0 bytes). */
static inline const char *buf_start(const struct buf *b)
{
    return b->data ? b->data + b->off : "";
}

/* Makes room for n more bytes; returns where they go, or NULL on out of memory. */
char *buf_reserve(struct buf *b, size_t n);
/* Appends n bytes; returns 0, or -1 on out of memory (the buffer is unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
/* Drops n bytes from the front. */
void buf_consume(struct buf *b, size_t n);
/* Empties the buffer, keeping its storage. */
void buf_clear(struct buf *b);
/* Frees the storage; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);
/* Moves all content of src to the end of dst (src becomes empty). Steals
 * src's storage when dst is empty, so handing a whole buffer over is free. */
int buf_move(struct buf *dst, struct buf *src);

#endif
