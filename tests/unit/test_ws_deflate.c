/* Unit tests for server/ws_deflate.c: which permessage-deflate offer the
 * server takes and what it answers (RFC 7692 §7.1). */
#include "ws_deflate.h"

#include <string.h>

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

CHECK_MAIN()
