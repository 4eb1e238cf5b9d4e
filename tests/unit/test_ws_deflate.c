/* Unit tests for server/ws_deflate.c: which permessage-deflate offer the
 * server takes and what it answers (RFC 7692 §7.1). */
#include "ws_deflate.h"

#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

#include "check.h"

static int take(const char *offers, bool keep_context, struct ws_deflate_params *p, char *answer)
{
    return ws_deflate_negotiate(offers, strlen(offers), keep_context, p, answer, 256);
}

TEST(a_plain_offer_is_taken_with_the_defaults)
{
    struct ws_deflate_params p;
    char a[256];
    CHECK_EQ_INT(take("permessage-deflate", true, &p, a), 1);
    CHECK_EQ_STR(a, "permessage-deflate");
    CHECK(!p.server_no_context_takeover);
    CHECK(!p.client_no_context_takeover);
    CHECK_EQ_INT(p.server_max_window_bits, 15);
    CHECK_EQ_INT(p.client_max_window_bits, 0);
}

TEST(parameters_are_honoured_and_answered)
{
    struct ws_deflate_params p;
    char a[256];
    /* What browsers send. */
    CHECK_EQ_INT(take("permessage-deflate; client_max_window_bits", true, &p, a), 1);
    CHECK_EQ_STR(a, "permessage-deflate");
    CHECK_EQ_INT(take("permessage-deflate; server_no_context_takeover; "
                      "client_no_context_takeover; server_max_window_bits=9; "
                      "client_max_window_bits=10",
                      true, &p, a),
                 1);
    CHECK_EQ_STR(a, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                    "server_max_window_bits=9");
    CHECK(p.server_no_context_takeover);
    CHECK(p.client_no_context_takeover);
    CHECK_EQ_INT(p.server_max_window_bits, 9);
    CHECK_EQ_INT(p.client_max_window_bits, 10);
    CHECK_EQ_INT(take("permessage-deflate; server_max_window_bits=\"12\"", true, &p, a), 1);
    CHECK_EQ_INT(p.server_max_window_bits, 12);
}

TEST(without_context_the_answer_asks_for_none_both_ways)
{
    struct ws_deflate_params p;
    char a[256];
    CHECK_EQ_INT(take("permessage-deflate", false, &p, a), 1);
    CHECK_EQ_STR(a, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    CHECK(p.server_no_context_takeover && p.client_no_context_takeover);
}

TEST(an_invalid_offer_is_declined_and_the_next_one_taken)
{
    struct ws_deflate_params p;
    char a[256];
    static const char *declined[] = {
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; unknown_parameter",
        "x-webkit-deflate-frame",
        "",
    };
    for (size_t i = 0; i < sizeof declined / sizeof *declined; i++)
        CHECK_EQ_INT(take(declined[i], true, &p, a), 0);
    CHECK_EQ_INT(take("permessage-deflate; server_max_window_bits=7, permessage-deflate; "
                      "client_max_window_bits=8",
                      true, &p, a),
                 1);
    CHECK_EQ_INT(p.client_max_window_bits, 8);
    CHECK_EQ_INT(p.server_max_window_bits, 15);
    CHECK_EQ_INT(take("foo; bar=1, ,permessage-deflate", true, &p, a), 1);
}

TEST(a_header_that_does_not_parse_is_declined)
{
    struct ws_deflate_params p;
    char a[256];
    CHECK_EQ_INT(take("permessage-deflate;", true, &p, a), 0);
    CHECK_EQ_INT(take("permessage-deflate; server_max_window_bits=\"9", true, &p, a), 0);
    CHECK_EQ_INT(take("permessage-deflate server_no_context_takeover", true, &p, a), 0);
    CHECK_EQ_INT(take("; permessage-deflate", true, &p, a), 0);
}

/* ---- messages ---- */

static const struct ws_deflate_params takeover = {false, false, 15, 0};
static const struct ws_deflate_params no_takeover = {true, true, 15, 0};

TEST(the_examples_of_rfc_7692_section_7_2_3_inflate)
{
    struct ws_zstream in = {0};
    struct buf out = {0};
    uint16_t code = 0;
    /* §7.2.3.1: "Hello", then §7.2.3.2: "Hello" again with the context. */
    const uint8_t first[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    const uint8_t again[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
    CHECK_EQ_INT(ws_inflate_message(&in, &takeover, first, sizeof first, &out, 100, &code), 0);
    CHECK_EQ_MEM(buf_start(&out), buf_size(&out), "Hello");
    buf_clear(&out);
    CHECK_EQ_INT(ws_inflate_message(&in, &takeover, again, sizeof again, &out, 100, &code), 0);
    CHECK_EQ_MEM(buf_start(&out), buf_size(&out), "Hello");
    /* §7.2.3.3: a block with BFINAL set, then an ordinary message. */
    const uint8_t bfinal[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
    buf_clear(&out);
    CHECK_EQ_INT(ws_inflate_message(&in, &no_takeover, bfinal, sizeof bfinal, &out, 100, &code), 0);
    CHECK_EQ_MEM(buf_start(&out), buf_size(&out), "Hello");
    CHECK(!in.live); /* no context takeover: nothing kept between messages */
    buf_clear(&out);
    CHECK_EQ_INT(ws_inflate_message(&in, &no_takeover, first, sizeof first, &out, 100, &code), 0);
    CHECK_EQ_MEM(buf_start(&out), buf_size(&out), "Hello");
    /* §7.2.3.6: the empty message is one 00 byte. */
    const uint8_t empty[] = {0x00};
    buf_clear(&out);
    CHECK_EQ_INT(ws_inflate_message(&in, &no_takeover, empty, 1, &out, 100, &code), 0);
    CHECK_EQ_INT(buf_size(&out), 0);
    ws_inflate_end(&in);
    buf_free(&out);
}

TEST(messages_round_trip_with_and_without_context)
{
    const struct ws_deflate_params *modes[] = {&takeover, &no_takeover};
    for (int m = 0; m < 2; m++) {
        struct ws_zstream def = {0}, in = {0};
        struct buf wire = {0}, out = {0};
        uint16_t code = 0;
        size_t sizes[3] = {0};
        for (int i = 0; i < 3; i++) {
            const char *msg = i == 1 ? "" : "a message that repeats, a message that repeats";
            buf_clear(&wire);
            buf_clear(&out);
            CHECK_EQ_INT(
                ws_deflate_message(&def, modes[m], (const uint8_t *)msg, strlen(msg), &wire), 0);
            sizes[i] = buf_size(&wire);
            CHECK_EQ_INT(ws_inflate_message(&in, modes[m], (const uint8_t *)buf_start(&wire),
                                            buf_size(&wire), &out, 1000, &code),
                         0);
            CHECK_EQ_MEM(buf_start(&out), buf_size(&out), msg);
        }
        CHECK_EQ_INT(sizes[1], 1); /* the empty message: 00 */
        if (m == 0)
            CHECK(sizes[2] < sizes[0]); /* the context made the third smaller */
        else
            CHECK_EQ_INT(sizes[2], sizes[0]);
        ws_deflate_end(&def);
        ws_inflate_end(&in);
        buf_free(&wire);
        buf_free(&out);
    }
}

TEST(a_compression_bomb_stops_at_the_limit)
{
    /* 64 MiB of zeros compress to about 64 KiB; the limit is 1 MiB. */
    size_t big = 64u << 20;
    uint8_t *zeros = calloc(1, big);
    struct ws_zstream def = {0}, in = {0};
    struct buf wire = {0}, out = {0};
    uint16_t code = 0;
    CHECK(zeros != NULL);
    CHECK_EQ_INT(ws_deflate_message(&def, &no_takeover, zeros, big, &wire), 0);
    CHECK(buf_size(&wire) < (big >> 8));
    CHECK_EQ_INT(ws_inflate_message(&in, &no_takeover, (const uint8_t *)buf_start(&wire),
                                    buf_size(&wire), &out, 1u << 20, &code),
                 -1);
    CHECK_EQ_INT(code, 1009);
    CHECK(buf_size(&out) <= (1u << 20) + 16384); /* stopped a step past the limit */
    CHECK(!in.live);
    free(zeros);
    ws_deflate_end(&def);
    buf_free(&wire);
    buf_free(&out);
}

TEST(data_that_is_not_deflate_closes_with_1007)
{
    struct ws_zstream in = {0};
    struct buf out = {0};
    uint16_t code = 0;
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK_EQ_INT(ws_inflate_message(&in, &takeover, junk, sizeof junk, &out, 100, &code), -1);
    CHECK_EQ_INT(code, 1007);
    CHECK(!in.live);
    buf_free(&out);
}

TEST(a_256_byte_window_is_never_used_to_compress)
{
    struct ws_deflate_params p = {false, false, 8, 0};
    CHECK(!ws_deflate_can_compress(&p));
    p.server_max_window_bits = 9;
    CHECK(ws_deflate_can_compress(&p));
}

CHECK_MAIN()
