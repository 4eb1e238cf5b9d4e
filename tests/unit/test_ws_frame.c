/* Unit tests for server/utf8.c and server/ws_frame.c: UTF-8 as RFC 6455
 * requires it of text messages and close reasons (Unicode Table 3-7, fail
 * fast), and the frame format of RFC 6455 §5. */
#include "utf8.h"
#include "ws_frame.h"
#include "ws_handshake.h"

#include <string.h>

#include "check.h"

/* ---- UTF-8 ---- */

struct utf8_case {
    const char *bytes;
    size_t len;
    int valid;
    size_t fails_at; /* when invalid: the index of the first byte refused */
};

#define U(s, v, at)                                                                                \
    {                                                                                              \
        s, sizeof(s) - 1, v, at                                                                    \
    }

static const struct utf8_case utf8_cases[] = {
    U("", 1, 0),
    U("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!", 1, 0),
    U("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 1, 0), /* Greek "kosme" */
    U("\x00", 1, 0),
    U("\x7f", 1, 0),
    U("\xc2\x80", 1, 0),         /* U+0080, the first 2-byte character */
    U("\xdf\xbf", 1, 0),         /* U+07FF */
    U("\xe0\xa0\x80", 1, 0),     /* U+0800 */
    U("\xed\x9f\xbf", 1, 0),     /* U+D7FF, the last before the surrogates */
    U("\xee\x80\x80", 1, 0),     /* U+E000, the first after them */
    U("\xef\xbf\xbf", 1, 0),     /* U+FFFF (a noncharacter, still well-formed) */
    U("\xf0\x90\x80\x80", 1, 0), /* U+10000 */
    U("\xf4\x8f\xbf\xbf", 1, 0), /* U+10FFFF */
    /* Refused at the first byte that cannot be part of a character. */
    U("\x80", 0, 0),                     /* a lone continuation byte */
    U("ab\xbf", 0, 2),                   /* a continuation byte after ASCII */
    U("\xc0\xaf", 0, 0),                 /* overlong '/': C0 is never a lead */
    U("\xc1\xbf", 0, 0),                 /* overlong: C1 neither */
    U("\xe0\x80\xaf", 0, 1),             /* overlong 3-byte '/' */
    U("\xe0\x9f\xbf", 0, 1),             /* overlong U+07FF */
    U("\xf0\x80\x80\xaf", 0, 1),         /* overlong 4-byte '/' */
    U("\xf0\x8f\xbf\xbf", 0, 1),         /* overlong U+FFFF */
    U("\xed\xa0\x80", 0, 1),             /* U+D800, a surrogate */
    U("\xed\xbf\xbf", 0, 1),             /* U+DFFF */
    U("\xed\xa0\x80\xed\xb0\x80", 0, 1), /* a surrogate pair in UTF-8 (CESU) */
    U("\xf4\x90\x80\x80", 0, 1),         /* U+110000 */
    U("\xf5\x80\x80\x80", 0, 0),         /* F5: a lead of nothing */
    U("\xfe", 0, 0),
    U("\xff", 0, 0),
    U("\xc2\x41", 0, 1),     /* a lead then ASCII */
    U("\xe2\x82\x41", 0, 2), /* cut after two bytes of three */
    U("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
      "edited",
      0, 12),
};

TEST(utf8_accepts_table_3_7_and_refuses_the_rest_at_the_first_bad_byte)
{
    for (size_t i = 0; i < sizeof utf8_cases / sizeof *utf8_cases; i++) {
        const struct utf8_case *c = &utf8_cases[i];
        const uint8_t *p = (const uint8_t *)c->bytes;
        CHECK_EQ_INT(utf8_valid(p, c->len), c->valid);
        if (c->valid)
            continue;
        /* Fed one byte at a time: the refusal comes at fails_at exactly. */
        struct utf8_state s;
        utf8_init(&s);
        size_t at = c->len;
        for (size_t k = 0; k < c->len; k++)
            if (utf8_feed(&s, p + k, 1) == UTF8_INVALID) {
                at = k;
                break;
            }
        if (at != c->fails_at)
            fprintf(stderr, "  case %zu refused at %zu, not %zu\n", i, at, c->fails_at);
        CHECK_EQ_INT(at, c->fails_at);
    }
}

TEST(utf8_truncated_characters_are_partial_not_invalid)
{
    static const char *starts[] = {"\xc2", "\xe0\xa0", "\xf0\x90\x80", "a\xf4"};
    for (size_t i = 0; i < 4; i++) {
        struct utf8_state s;
        utf8_init(&s);
        CHECK_EQ_INT(utf8_feed(&s, (const uint8_t *)starts[i], strlen(starts[i])), UTF8_PARTIAL);
        CHECK_EQ_INT(utf8_valid((const uint8_t *)starts[i], strlen(starts[i])), 0);
    }
}

TEST(utf8_gives_the_same_answer_for_every_split_of_the_input)
{
    /* Every valid case cut in two at every point, and the result fed in
     * two pieces: valid and complete in the end, partial in between. */
    for (size_t i = 0; i < sizeof utf8_cases / sizeof *utf8_cases; i++) {
        const struct utf8_case *c = &utf8_cases[i];
        for (size_t cut = 0; cut <= c->len; cut++) {
            struct utf8_state s;
            utf8_init(&s);
            const uint8_t *p = (const uint8_t *)c->bytes;
            enum utf8_result a = utf8_feed(&s, p, cut);
            enum utf8_result r = a == UTF8_INVALID ? a : utf8_feed(&s, p + cut, c->len - cut);
            CHECK_EQ_INT(r == UTF8_COMPLETE, c->valid);
            if (c->valid)
                CHECK(a != UTF8_INVALID);
        }
    }
}

/* Table 3-7 one byte at a time, with no shortcut: what the validator's
 * eight-bytes-at-a-time ASCII path must agree with. */
static int reference_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b < 0x80) {
            i++;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            lo = b == 0xE0 ? 0xA0 : 0x80;
            hi = b == 0xED ? 0x9F : 0xBF;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            lo = b == 0xF0 ? 0x90 : 0x80;
            hi = b == 0xF4 ? 0x8F : 0xBF;
        } else {
            return 0;
        }
        if (i + need >= n)
            return 0; /* cut short */
        if (p[i + 1] < lo || p[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= need; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xBF)
                return 0;
        i += need + 1;
    }
    return 1;
}

TEST(utf8_long_ascii_runs_around_other_bytes_are_judged_byte_by_byte)
{
    /* Runs of ASCII of every length up to 40 with one valid or invalid
     * sequence placed at every offset, whole and split at every point. */
    static const char *inserts[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                    "\x80",     "\xc3",         "\xed\xa0\x80",
                                    "\xff",     "\xf4\x90"};
    uint8_t buf[64];
    for (size_t len = 0; len <= 40; len++)
        for (size_t at = 0; at <= len; at++)
            for (size_t k = 0; k < sizeof inserts / sizeof *inserts; k++) {
                size_t m = strlen(inserts[k]);
                memset(buf, 'a', len + m);
                memcpy(buf + at, inserts[k], m);
                size_t n = len + m;
                int want = reference_valid(buf, n);
                CHECK_EQ_INT(utf8_valid(buf, n), want);
                for (size_t cut = 0; cut <= n; cut += 3) {
                    struct utf8_state s;
                    utf8_init(&s);
                    enum utf8_result a = utf8_feed(&s, buf, cut);
                    enum utf8_result r = a == UTF8_INVALID ? a : utf8_feed(&s, buf + cut, n - cut);
                    CHECK_EQ_INT(r == UTF8_COMPLETE, want);
                }
            }
}

/* ---- frame heads ---- */

static int parse(const uint8_t *p, size_t n, struct ws_frame_head *h, uint16_t *code)
{
    return ws_frame_parse_head(p, n, 0, UINT64_MAX >> 1, h, code);
}

TEST(a_masked_text_frame_head_is_parsed)
{
    /* RFC 6455 §5.7: a single-frame masked text message "Hello". */
    const uint8_t f[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    struct ws_frame_head h;
    uint16_t code = 0;
    CHECK_EQ_INT(parse(f, sizeof f, &h, &code), 6);
    CHECK(h.fin);
    CHECK_EQ_INT(h.opcode, WS_OP_TEXT);
    CHECK_EQ_INT(h.len, 5);
    uint8_t payload[5];
    memcpy(payload, f + 6, 5);
    ws_unmask(payload, 5, h.mask, 0);
    CHECK_EQ_MEM(payload, 5, "Hello");
}

TEST(a_head_waits_for_all_its_bytes)
{
    const uint8_t f[] = {0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4};
    struct ws_frame_head h;
    uint16_t code = 0;
    for (size_t n = 0; n < sizeof f; n++)
        CHECK_EQ_INT(parse(f, n, &h, &code), 0);
    CHECK_EQ_INT(parse(f, sizeof f, &h, &code), 14);
    CHECK_EQ_INT(h.len, 65536);
    CHECK_EQ_INT(h.mask[3], 4);
    const uint8_t g[] = {0x82, 0xFE, 0x01, 0x00, 9, 9, 9, 9};
    CHECK_EQ_INT(parse(g, 3, &h, &code), 0);
    CHECK_EQ_INT(parse(g, sizeof g, &h, &code), 8);
    CHECK_EQ_INT(h.len, 256);
}

static uint16_t refused(const uint8_t *f, size_t n, uint8_t allowed_rsv, uint64_t max_len)
{
    struct ws_frame_head h;
    uint16_t code = 0;
    if (ws_frame_parse_head(f, n, allowed_rsv, max_len, &h, &code) != -1)
        return 0;
    return code;
}

TEST(heads_that_break_a_rule_are_refused_with_1002_or_1009)
{
    const uint8_t unmasked[] = {0x81, 0x05};
    CHECK_EQ_INT(refused(unmasked, 2, 0, 1000), 1002);
    for (uint8_t op = 3; op <= 7; op++) {
        const uint8_t f[] = {(uint8_t)(0x80 | op), 0x80};
        CHECK_EQ_INT(refused(f, 2, 0, 1000), 1002);
    }
    for (uint8_t op = 0xB; op <= 0xF; op++) {
        const uint8_t f[] = {(uint8_t)(0x80 | op), 0x80};
        CHECK_EQ_INT(refused(f, 2, 0, 1000), 1002);
    }
    const uint8_t rsv1[] = {0xC1, 0x80}, rsv2[] = {0xA1, 0x80}, rsv3[] = {0x91, 0x80};
    CHECK_EQ_INT(refused(rsv1, 2, 0, 1000), 1002);
    CHECK_EQ_INT(refused(rsv1, 2, WS_RSV1, 1000), 0); /* permessage-deflate */
    CHECK_EQ_INT(refused(rsv2, 2, WS_RSV1, 1000), 1002);
    CHECK_EQ_INT(refused(rsv3, 2, WS_RSV1, 1000), 1002);
    const uint8_t fragmented_ping[] = {0x09, 0x80};
    CHECK_EQ_INT(refused(fragmented_ping, 2, 0, 1000), 1002);
    const uint8_t long_close[] = {0x88, 0xFE, 0x00, 0x7E};
    CHECK_EQ_INT(refused(long_close, 2, 0, 1000), 1002);
    const uint8_t ping_125[] = {0x89, 0xFD};
    CHECK_EQ_INT(refused(ping_125, 2, 0, 1000), 0);
    const uint8_t top_bit[] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1};
    CHECK_EQ_INT(refused(top_bit, sizeof top_bit, 0, UINT64_MAX), 1002);
    const uint8_t big[] = {0x82, 0xFE, 0x04, 0x01};
    CHECK_EQ_INT(refused(big, sizeof big, 0, 1024), 1009);
    CHECK_EQ_INT(refused(big, sizeof big, 0, 1025), 0);
}

TEST(unmasking_at_any_offset_matches_byte_by_byte)
{
    const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    uint8_t data[67], fast[67];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    for (uint64_t off = 0; off < 8; off++)
        for (size_t n = 0; n <= sizeof data; n++) {
            memcpy(fast, data, n);
            ws_unmask(fast, n, mask, off);
            int same = 1;
            for (size_t i = 0; i < n; i++)
                same &= fast[i] == (uint8_t)(data[i] ^ mask[(off + i) & 3]);
            CHECK(same);
        }
}

TEST(server_heads_use_the_shortest_length_form)
{
    uint8_t out[WS_FRAME_HEAD_MAX];
    CHECK_EQ_INT(ws_frame_head_write(out, true, 0, WS_OP_TEXT, 125), 2);
    CHECK_EQ_INT(out[0], 0x81);
    CHECK_EQ_INT(out[1], 125);
    CHECK_EQ_INT(ws_frame_head_write(out, false, WS_RSV1, WS_OP_BINARY, 126), 4);
    CHECK_EQ_INT(out[0], 0x42);
    CHECK_EQ_INT(out[1], 126);
    CHECK_EQ_INT(out[2] << 8 | out[3], 126);
    CHECK_EQ_INT(ws_frame_head_write(out, true, 0, WS_OP_BINARY, 65535), 4);
    CHECK_EQ_INT(ws_frame_head_write(out, true, 0, WS_OP_BINARY, 65536), 10);
    CHECK_EQ_INT(out[1], 127);
    CHECK_EQ_INT(out[7], 1);
    CHECK_EQ_INT(out[8], 0);
    /* What the server writes, a client's parse reads back (once masked). */
    uint8_t f[WS_FRAME_HEAD_MAX + 4];
    size_t n = ws_frame_head_write(f, true, 0, WS_OP_PONG, 17);
    f[1] |= 0x80;
    memset(f + n, 0, 4);
    struct ws_frame_head h;
    uint16_t code;
    CHECK_EQ_INT(parse(f, n + 4, &h, &code), (int)n + 4);
    CHECK_EQ_INT(h.opcode, WS_OP_PONG);
    CHECK_EQ_INT(h.len, 17);
}

/* ---- close frames ---- */

TEST(close_codes_follow_the_registry)
{
    static const unsigned valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                     1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const unsigned invalid[] = {0,    999,  1004, 1005, 1006, 1015,
                                       1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++)
        CHECK(ws_close_code_valid(valid[i]));
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++)
        CHECK(!ws_close_code_valid(invalid[i]));
}

TEST(close_payloads_are_parsed_and_checked)
{
    uint16_t code = 0, err = 0;
    const uint8_t *reason;
    size_t len;
    CHECK_EQ_INT(ws_close_parse(NULL, 0, &code, &reason, &len, &err), 0);
    CHECK_EQ_INT(code, 1005);
    CHECK_EQ_INT(len, 0);
    const uint8_t one[] = {0x03};
    CHECK_EQ_INT(ws_close_parse(one, 1, &code, &reason, &len, &err), -1);
    CHECK_EQ_INT(err, 1002);
    const uint8_t bye[] = {0x03, 0xE8, 'b', 'y', 'e'};
    CHECK_EQ_INT(ws_close_parse(bye, sizeof bye, &code, &reason, &len, &err), 0);
    CHECK_EQ_INT(code, 1000);
    CHECK_EQ_MEM(reason, len, "bye");
    const uint8_t reserved[] = {0x03, 0xED}; /* 1005 */
    CHECK_EQ_INT(ws_close_parse(reserved, 2, &code, &reason, &len, &err), -1);
    CHECK_EQ_INT(err, 1002);
    const uint8_t bad_reason[] = {0x03, 0xE8, 0xce, 0xba, 0xed, 0xa0, 0x80};
    CHECK_EQ_INT(ws_close_parse(bad_reason, sizeof bad_reason, &code, &reason, &len, &err), -1);
    CHECK_EQ_INT(err, 1007);
}

/* ---- the handshake's key ---- */

TEST(the_accept_value_of_rfc_6455_section_1_3)
{
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    char out[WS_ACCEPT_LEN + 1];
    CHECK(ws_key_valid(key, strlen(key)));
    CHECK_EQ_INT(ws_accept(key, strlen(key), out), 0);
    CHECK_EQ_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(keys_that_are_not_16_bytes_of_base64_are_refused)
{
    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 characters */
        "dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
        "dGhlIHNhbXBsZSBub25jZQAA",  /* no padding: 18 bytes */
        "dGhlIHNhbXBsZSBub25jZR==",  /* padding bits set */
        "dGhlIHNhbXBsZSBub25jZ!==",  /* not base64 */
        "dGhlIHNhbXBsZSBub25j ==",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(!ws_key_valid(bad[i], strlen(bad[i])));
    CHECK(ws_key_valid("AAAAAAAAAAAAAAAAAAAAAA==", 24));
    CHECK(ws_key_valid("/////////////////////w==", 24));
}

/* ---- the handshake request ---- */

static struct h1_head parsed;

static struct h1_head *begin_head(void *ud)
{
    (void)ud;
    h1_head_reset(&parsed);
    return &parsed;
}

static int got_head(void *ud, struct h1_head *h)
{
    (void)ud;
    (void)h;
    return 0;
}

static int got_body(void *ud, const char *data, size_t len)
{
    (void)ud;
    (void)data;
    (void)len;
    return 0;
}

static int got_end(void *ud)
{
    (void)ud;
    return 0;
}

static const struct h1_callbacks head_only = {
    .begin = begin_head, .head = got_head, .body = got_body, .complete = got_end};

static enum ws_check check(const char *request, const char **why)
{
    static const struct h1_limits limits = {.max_head = 8192, .max_line = 1024, .max_headers = 64};
    struct h1_parser *p = h1_parser_new(&limits, &head_only, NULL);
    CHECK(p != NULL);
    CHECK(h1_parser_feed(p, request, strlen(request)) > 0);
    h1_parser_free(p);
    const char *key = NULL;
    size_t key_len = 0;
    *why = "";
    enum ws_check c = ws_handshake_check(&parsed, why, &key, &key_len);
    if (c == WS_CHECK_OK)
        CHECK_EQ_MEM(key, key_len, "dGhlIHNhbXBsZSBub25jZQ==");
    return c;
}

#define WS_HEADERS                                                                                 \
    "Host: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"                    \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

TEST(the_opening_handshake_is_checked_as_section_4_2_1_says)
{
    const char *why;
    CHECK_EQ_INT(
        check("GET /chat HTTP/1.1\r\n" WS_HEADERS "Sec-WebSocket-Version: 13\r\n\r\n", &why),
        WS_CHECK_OK);
    /* Tokens in lists, in any case. */
    CHECK_EQ_INT(check("GET /chat HTTP/1.1\r\nHost: a\r\nupgrade: WebSocket\r\n"
                       "connection: keep-alive, Upgrade\r\n"
                       "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "sec-websocket-version: 13\r\n\r\n",
                       &why),
                 WS_CHECK_OK);
    CHECK_EQ_INT(check("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &why), WS_CHECK_NOT_WEBSOCKET);
    CHECK_EQ_INT(
        check("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n", &why),
        WS_CHECK_NOT_WEBSOCKET);
    CHECK_EQ_INT(check("POST /chat HTTP/1.1\r\n" WS_HEADERS "Sec-WebSocket-Version: 13\r\n"
                       "Content-Length: 0\r\n\r\n",
                       &why),
                 WS_CHECK_BAD_REQUEST);
    CHECK_EQ_INT(
        check("GET /chat HTTP/1.0\r\n" WS_HEADERS "Sec-WebSocket-Version: 13\r\n\r\n", &why),
        WS_CHECK_BAD_REQUEST);
    CHECK_EQ_INT(check("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                       "Connection: keep-alive\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n",
                       &why),
                 WS_CHECK_NO_UPGRADE);
    CHECK_EQ_INT(
        check("GET /chat HTTP/1.1\r\n" WS_HEADERS "Sec-WebSocket-Version: 8\r\n\r\n", &why),
        WS_CHECK_BAD_VERSION);
    CHECK_EQ_INT(check("GET /chat HTTP/1.1\r\n" WS_HEADERS "\r\n", &why), WS_CHECK_BAD_VERSION);
    CHECK_EQ_INT(check("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
                       &why),
                 WS_CHECK_BAD_REQUEST);
    CHECK_EQ_INT(check("GET /chat HTTP/1.1\r\n" WS_HEADERS
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n",
                       &why),
                 WS_CHECK_BAD_REQUEST);
    CHECK_EQ_STR(why, "more than one Sec-WebSocket-Key");
    h1_head_free(&parsed);
}

CHECK_MAIN()
