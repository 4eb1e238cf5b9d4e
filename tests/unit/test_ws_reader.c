/* Unit tests for server/ws_reader.c: a client's frames, fed in pieces of
 * every size, become messages and control frames, and every rule that
 * needs the message around a frame closes with its code (RFC 6455). */
#include "ws_reader.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

/* What the reader reported, as text: "T:hello", "B:...", "ping:..",
 * "pong:..", "close:1000:bye", one per line. */
struct seen {
    char log[4096];
    int stop_after; /* events before an event returns -1; 0: never */
    int events;
};

static void add(struct seen *s, const char *kind, const void *p, size_t n)
{
    size_t at = strlen(s->log);
    snprintf(s->log + at, sizeof s->log - at, "%s:%.*s\n", kind, (int)n, (const char *)p);
}

static int stop_now(struct seen *s)
{
    return ++s->events == s->stop_after ? -1 : 0;
}

static int on_message(void *ud, bool text, bool compressed, const uint8_t *p, size_t n)
{
    add(ud, compressed ? (text ? "zT" : "zB") : (text ? "T" : "B"), p, n);
    return stop_now(ud);
}

static int on_control(void *ud, uint8_t opcode, const uint8_t *p, size_t n)
{
    add(ud, opcode == WS_OP_PING ? "ping" : "pong", p, n);
    return stop_now(ud);
}

static int on_close(void *ud, uint16_t code, const uint8_t *reason, size_t n)
{
    char kind[16];
    snprintf(kind, sizeof kind, "close:%u", code);
    add(ud, kind, reason, n);
    return stop_now(ud);
}

static const struct ws_reader_events events = {on_message, on_control, on_close};

/* A masked client frame appended to out. */
static size_t frame_rsv(uint8_t *out, bool fin, uint8_t rsv, uint8_t opcode, const char *payload,
                        size_t len)
{
    static const uint8_t mask[4] = {0xA1, 0x02, 0x7C, 0x44};
    size_t n = ws_frame_head_write(out, fin, rsv, opcode, len);
    out[1] |= 0x80;
    memcpy(out + n, mask, 4);
    n += 4;
    memcpy(out + n, payload, len);
    ws_unmask(out + n, len, mask, 0);
    return n + len;
}

static size_t frame(uint8_t *out, bool fin, uint8_t opcode, const char *payload, size_t len)
{
    return frame_rsv(out, fin, 0, opcode, payload, len);
}

#define FRAME(out, fin, op, s)  frame(out, fin, op, s, sizeof(s) - 1)
#define ZFRAME(out, fin, op, s) frame_rsv(out, fin, WS_RSV1, op, s, sizeof(s) - 1)

/* Feeds the stream in pieces of `piece` bytes; returns the result, the
 * close code in *code. */
static bool compression; /* the next feeds negotiated permessage-deflate */

static int feed(const uint8_t *stream, size_t n, size_t piece, uint64_t max, struct seen *s,
                uint16_t *code)
{
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, stream, n);
    struct ws_reader r;
    ws_reader_init(&r, &events, s, max);
    if (compression)
        ws_reader_allow_compression(&r);
    int rc = 0;
    *code = 0;
    for (size_t at = 0; at < n && rc == 0; at += piece)
        rc = ws_reader_feed(&r, copy + at, at + piece <= n ? piece : n - at, code);
    ws_reader_free(&r);
    free(copy);
    return rc;
}

/* The same stream in every piece size gives the same events and result. */
static void expect(const uint8_t *stream, size_t n, uint64_t max, int rc, uint16_t code,
                   const char *log)
{
    for (size_t piece = 1; piece <= n + 1; piece++) {
        struct seen s = {0};
        uint16_t got_code;
        int got = feed(stream, n, piece, max, &s, &got_code);
        if (got != rc || got_code != code || strcmp(s.log, log) != 0) {
            fprintf(stderr, "  piece %zu: rc %d code %u log \"%s\"\n", piece, got, got_code, s.log);
            CHECK(0);
            return;
        }
    }
}

TEST(single_frames_and_control_frames_are_delivered)
{
    uint8_t st[512];
    size_t n = 0;
    n += FRAME(st + n, true, WS_OP_TEXT, "Hello");
    n += FRAME(st + n, true, WS_OP_BINARY, "\x01\x02");
    n += FRAME(st + n, true, WS_OP_PING, "p1");
    n += FRAME(st + n, true, WS_OP_PONG, "");
    n += FRAME(st + n, true, WS_OP_TEXT, "");
    n += FRAME(st + n, true, WS_OP_CLOSE,
               "\x03\xe8"
               "bye");
    expect(st, n, 1024, 0, 0, "T:Hello\nB:\x01\x02\nping:p1\npong:\nT:\nclose:1000:bye\n");
}

TEST(fragments_are_reassembled_with_control_frames_between_them)
{
    uint8_t st[512];
    size_t n = 0;
    n += FRAME(st + n, false, WS_OP_TEXT, "frag");
    n += FRAME(st + n, false, WS_OP_CONTINUATION, "");
    n += FRAME(st + n, true, WS_OP_PING, "in between");
    n += FRAME(st + n, false, WS_OP_CONTINUATION, "men");
    n += FRAME(st + n, true, WS_OP_CONTINUATION, "ted");
    expect(st, n, 1024, 0, 0, "ping:in between\nT:fragmented\n");
}

TEST(nothing_after_a_close_frame_is_read)
{
    uint8_t st[512];
    size_t n = 0;
    n += FRAME(st + n, true, WS_OP_CLOSE, "");
    n += FRAME(st + n, true, WS_OP_TEXT, "after");
    st[n++] = 0xFF; /* not even a valid head */
    expect(st, n, 1024, 0, 0, "close:1005:\n");
}

TEST(message_rules_close_with_1002)
{
    uint8_t st[512];
    size_t n = FRAME(st, true, WS_OP_CONTINUATION, "orphan");
    expect(st, n, 1024, -1, 1002, "");
    n = 0;
    n += FRAME(st + n, false, WS_OP_TEXT, "start");
    n += FRAME(st + n, true, WS_OP_BINARY, "another start");
    expect(st, n, 1024, -1, 1002, "");
    n = FRAME(st, true, WS_OP_CLOSE, "\x03");
    expect(st, n, 1024, -1, 1002, "");
    n = FRAME(st, true, WS_OP_CLOSE, "\x03\xed"); /* 1005 on the wire */
    expect(st, n, 1024, -1, 1002, "");
}

TEST(invalid_text_closes_with_1007_at_the_first_bad_byte)
{
    uint8_t st[512];
    /* The second fragment is invalid and the message never ends: refused
     * all the same (fail fast), after the first fragment's valid bytes. */
    size_t n = 0;
    n += FRAME(st + n, false, WS_OP_TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5");
    size_t first = n;
    n += FRAME(st + n, false, WS_OP_CONTINUATION, "\xed\xa0\x80");
    expect(st, n, 1024, -1, 1007, "");
    expect(st, first, 1024, 0, 0, "");
    /* A message that ends inside a character. */
    n = FRAME(st, true, WS_OP_TEXT, "ok\xe2\x82");
    expect(st, n, 1024, -1, 1007, "");
    /* A character split across two fragments is fine. */
    n = 0;
    n += FRAME(st + n, false, WS_OP_TEXT, "\xe2\x82");
    n += FRAME(st + n, true, WS_OP_CONTINUATION, "\xac");
    expect(st, n, 1024, 0, 0, "T:\xe2\x82\xac\n");
    /* A close reason that is not UTF-8. */
    n = FRAME(st, true, WS_OP_CLOSE, "\x03\xe8\xff");
    expect(st, n, 1024, -1, 1007, "");
}

TEST(the_size_limit_counts_the_whole_message)
{
    uint8_t st[512];
    size_t n = FRAME(st, true, WS_OP_BINARY, "0123456789");
    expect(st, n, 10, 0, 0, "B:0123456789\n");
    expect(st, n, 9, -1, 1009, "");
    n = 0;
    n += FRAME(st + n, false, WS_OP_TEXT, "01234");
    n += FRAME(st + n, true, WS_OP_CONTINUATION, "56789");
    expect(st, n, 10, 0, 0, "T:0123456789\n");
    expect(st, n, 9, -1, 1009, "");
}

TEST(an_event_can_stop_the_reader)
{
    uint8_t st[512];
    size_t n = 0;
    n += FRAME(st + n, true, WS_OP_TEXT, "one");
    n += FRAME(st + n, true, WS_OP_TEXT, "two");
    struct seen s = {.stop_after = 1};
    uint16_t code;
    CHECK_EQ_INT(feed(st, n, n, 1024, &s, &code), -1);
    CHECK_EQ_INT(code, 0);
    CHECK_EQ_STR(s.log, "T:one\n");
}

TEST(rsv1_marks_a_compressed_message_only_when_negotiated)
{
    uint8_t st[512];
    size_t n = 0;
    /* Compressed bytes are not UTF-8: checked after inflating, not here. */
    n += ZFRAME(st + n, false, WS_OP_TEXT, "\xf2\x48");
    n += FRAME(st + n, true, WS_OP_CONTINUATION, "\xcd\xc9\xc9\x07\x01");
    n += FRAME(st + n, true, WS_OP_TEXT, "plain");
    compression = true;
    expect(st, n, 1024, 0, 0, "zT:\xf2\x48\xcd\xc9\xc9\x07\x01\nT:plain\n");
    /* RSV1 on a continuation or a control frame. */
    n = 0;
    n += FRAME(st + n, false, WS_OP_BINARY, "a");
    n += ZFRAME(st + n, true, WS_OP_CONTINUATION, "b");
    expect(st, n, 1024, -1, 1002, "");
    n = ZFRAME(st, true, WS_OP_PING, "");
    expect(st, n, 1024, -1, 1002, "");
    compression = false;
    /* Not negotiated: RSV1 is an error on any frame. */
    n = ZFRAME(st, true, WS_OP_BINARY, "x");
    expect(st, n, 1024, -1, 1002, "");
}

CHECK_MAIN()
