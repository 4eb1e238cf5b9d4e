/* utf8: validating UTF-8 fed in pieces of any size (WebSocket text
 * messages and close reasons, RFC 6455 §8.1).
 *
 * Well-formed is the Unicode Standard's Table 3-7 (RFC 3629): no overlong
 * forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF. A byte
 * that cannot continue the sequence it is in, or start one, makes the
 * input invalid at that byte: a peer sending a message whose first bytes
 * are already invalid is refused then, not after the rest arrived. */
#ifndef EVICORN_UTF8_H
#define EVICORN_UTF8_H

#include <stddef.h>
#include <stdint.h>

struct utf8_state {
    uint8_t need;   /* continuation bytes still expected */
    uint8_t lo, hi; /* the range the next continuation byte must be in */
};

enum utf8_result {
    UTF8_COMPLETE, /* everything so far is valid and ends on a character */
    UTF8_PARTIAL,  /* valid so far, but inside a character */
    UTF8_INVALID,
};

static inline void utf8_init(struct utf8_state *s)
{
    s->need = 0;
    s->lo = 0x80;
    s->hi = 0xBF;
}

/* Feeds n more bytes. After UTF8_INVALID the state must not be fed again. */
enum utf8_result utf8_feed(struct utf8_state *s, const uint8_t *p, size_t n);

/* Whole input: valid and complete. */
int utf8_valid(const uint8_t *p, size_t n);

#endif
