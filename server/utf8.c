/* utf8: Table 3-7 of the Unicode Standard as a small state machine; see
 * utf8.h. */
#include "utf8.h"

#include <string.h>

/* A lead byte: how many continuation bytes follow, and the range the first
 * of them must be in (the later ones are always 80..BF). */
static int lead(struct utf8_state *s, uint8_t b)
{
    if (b < 0x80)
        return 1;
    s->lo = 0x80;
    s->hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        s->need = 1;
    } else if (b == 0xE0) {
        s->need = 2;
        s->lo = 0xA0; /* no overlong 3-byte forms */
    } else if (b == 0xED) {
        s->need = 2;
        s->hi = 0x9F; /* no surrogates */
    } else if (b >= 0xE1 && b <= 0xEF) {
        s->need = 2;
    } else if (b == 0xF0) {
        s->need = 3;
        s->lo = 0x90; /* no overlong 4-byte forms */
    } else if (b >= 0xF1 && b <= 0xF3) {
        s->need = 3;
    } else if (b == 0xF4) {
        s->need = 3;
        s->hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return 0; /* 80..C1 (a continuation or an overlong lead), F5..FF */
    }
    return 1;
}

/* Eight bytes at a time while they are all ASCII (no high bit), which most
 * text is: the state machine is only needed around other bytes. */
static size_t ascii_run(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull)
            break;
        i += 8;
    }
    return i;
}

enum utf8_result utf8_feed(struct utf8_state *s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s->need == 0 && p[i] < 0x80) {
            i += ascii_run(p + i, n - i);
            if (i == n)
                break;
        }
        uint8_t b = p[i];
        if (s->need == 0) {
            if (!lead(s, b))
                return UTF8_INVALID;
            continue;
        }
        if (b < s->lo || b > s->hi)
            return UTF8_INVALID;
        s->need--;
        s->lo = 0x80;
        s->hi = 0xBF;
    }
    return s->need ? UTF8_PARTIAL : UTF8_COMPLETE;
}

int utf8_valid(const uint8_t *p, size_t n)
{
    struct utf8_state s;
    utf8_init(&s);
    return utf8_feed(&s, p, n) == UTF8_COMPLETE;
}
