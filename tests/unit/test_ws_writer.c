/* Unit tests for server/ws_writer.c: the server's frames, read back the
 * way a client reads them. */
#include "ws_writer.h"

#include <string.h>

#include "check.h"
#include "utf8.h"
#include "ws_frame.h"

/* One unmasked frame at p: its head's fields, its payload; the bytes it
 * took, or 0. */
struct got {
    bool fin;
    uint8_t rsv, opcode;
    const uint8_t *payload;
    size_t len;
};

static size_t read_frame(const uint8_t *p, size_t n, struct got *g)
{
    if (n < 2 || (p[1] & 0x80))
        return 0;
    g->fin = p[0] & 0x80;
    g->rsv = p[0] & 0x70;
    g->opcode = p[0] & 0x0F;
    size_t len = p[1] & 0x7F, hl = 2;
    if (len == 126) {
        len = (size_t)p[2] << 8 | p[3];
        hl = 4;
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        hl = 10;
    }
    if (n < hl + len)
        return 0;
    g->payload = p + hl;
    g->len = len;
    return hl + len;
}

TEST(a_message_is_split_into_frames_of_the_size_given)
{
    struct buf out = {0};
    CHECK_EQ_INT(ws_write_message(&out, true, (const uint8_t *)"abcdefghij", 10, NULL, NULL, 4), 0);
    const uint8_t *p = (const uint8_t *)buf_start(&out);
    size_t n = buf_size(&out);
    static const char *parts[] = {"abcd", "efgh", "ij"};
    for (int i = 0; i < 3; i++) {
        struct got g = {0};
        size_t used = read_frame(p, n, &g);
        CHECK(used > 0);
        CHECK_EQ_INT(g.opcode, i == 0 ? WS_OP_TEXT : WS_OP_CONTINUATION);
        CHECK_EQ_INT(g.fin, i == 2);
        CHECK_EQ_INT(g.rsv, 0);
        CHECK_EQ_MEM(g.payload, g.len, parts[i]);
        p += used;
        n -= used;
    }
    CHECK_EQ_INT(n, 0);
    buf_clear(&out);
    /* The empty message is one frame. */
    CHECK_EQ_INT(ws_write_message(&out, false, NULL, 0, NULL, NULL, 4), 0);
    CHECK_EQ_INT(buf_size(&out), 2);
    CHECK_EQ_INT((uint8_t)buf_start(&out)[0], 0x82);
    buf_free(&out);
}

TEST(a_compressed_message_has_rsv1_on_its_first_frame_only_and_inflates_back)
{
    static const struct ws_deflate_params params = {true, true, 15, 0};
    struct ws_zstream def = {0}, in = {0};
    struct buf out = {0}, joined = {0}, msg = {0};
    char text[3000];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + (i * 7) % 26);
    CHECK_EQ_INT(
        ws_write_message(&out, true, (const uint8_t *)text, sizeof text, &params, &def, 64), 0);
    const uint8_t *p = (const uint8_t *)buf_start(&out);
    size_t n = buf_size(&out);
    int frames = 0;
    struct got g = {0};
    for (size_t used; (used = read_frame(p, n, &g)) > 0; p += used, n -= used, frames++) {
        CHECK_EQ_INT(g.rsv, frames == 0 ? 0x40 : 0);
        CHECK_EQ_INT(g.opcode, frames == 0 ? WS_OP_TEXT : WS_OP_CONTINUATION);
        buf_append(&joined, g.payload, g.len);
    }
    CHECK_EQ_INT(n, 0);
    CHECK(frames >= 1 && g.fin);
    uint16_t code = 0;
    CHECK_EQ_INT(ws_inflate_message(&in, &params, (const uint8_t *)buf_start(&joined),
                                    buf_size(&joined), &msg, 1 << 20, &code),
                 0);
    CHECK_EQ_INT(buf_size(&msg), sizeof text);
    CHECK(memcmp(buf_start(&msg), text, sizeof text) == 0);
    /* No compression with a 256-byte window: sent as it is. */
    struct ws_deflate_params small = {true, true, 8, 0};
    buf_clear(&out);
    CHECK_EQ_INT(ws_write_message(&out, false, (const uint8_t *)"xyz", 3, &small, &def, 0), 0);
    CHECK_EQ_INT(read_frame((const uint8_t *)buf_start(&out), buf_size(&out), &g), 5);
    CHECK_EQ_INT(g.rsv, 0);
    ws_deflate_end(&def);
    ws_inflate_end(&in);
    buf_free(&out);
    buf_free(&joined);
    buf_free(&msg);
}

TEST(close_frames_carry_a_code_and_a_reason_cut_at_a_character)
{
    struct buf out = {0};
    struct got g = {0};
    CHECK_EQ_INT(ws_write_close(&out, 1005, NULL, 0), 0);
    CHECK_EQ_INT(read_frame((const uint8_t *)buf_start(&out), buf_size(&out), &g), 2);
    CHECK_EQ_INT(g.opcode, WS_OP_CLOSE);
    CHECK_EQ_INT(g.len, 0);
    buf_clear(&out);
    /* 62 two-byte characters: 124 bytes, one too many; the cut drops a
     * whole character, not half of one. */
    char reason[124];
    for (int i = 0; i < 62; i++) {
        reason[2 * i] = (char)0xc3;
        reason[2 * i + 1] = (char)0xa9;
    }
    CHECK_EQ_INT(ws_write_close(&out, 1012, reason, sizeof reason), 0);
    CHECK(read_frame((const uint8_t *)buf_start(&out), buf_size(&out), &g) > 0);
    CHECK_EQ_INT(g.len, 2 + 122);
    CHECK_EQ_INT(g.payload[0] << 8 | g.payload[1], 1012);
    CHECK(utf8_valid(g.payload + 2, g.len - 2));
    uint16_t code, err;
    const uint8_t *r;
    size_t rl;
    CHECK_EQ_INT(ws_close_parse(g.payload, g.len, &code, &r, &rl, &err), 0);
    buf_free(&out);
}

TEST(control_frames_are_limited_to_125_bytes)
{
    struct buf out = {0};
    uint8_t data[126] = {0};
    CHECK_EQ_INT(ws_write_control(&out, WS_OP_PING, data, 125), 0);
    CHECK_EQ_INT(buf_size(&out), 127);
    CHECK_EQ_INT(ws_write_control(&out, WS_OP_PONG, data, 126), -1);
    buf_free(&out);
}

CHECK_MAIN()
