/* Unit tests for server/http1_guard.c: the byte-level checks run in front of
 * http-parser. Each result kind (MORE, HEAD_END, MESSAGE_END, ERROR), where
 * scanning stops (`used`), body framing after h1_guard_set_body, the head and
 * line limits, and every malformed form it must refuse. */
#include "http1_guard.h"

#include "check.h"

#include <stdint.h>
#include <string.h>

#define MAX_HEAD 256
#define MAX_LINE 64

static struct h1_guard guard(void)
{
    struct h1_guard g;
    h1_guard_init(&g, MAX_HEAD, MAX_LINE);
    return g;
}

/* Scans a C string. */
static enum h1_guard_result scan(struct h1_guard *g, const char *s, size_t *used)
{
    return h1_guard_scan(g, s, strlen(s), used);
}

/* Scans a C string with an embedded NUL allowed: (pointer, length). */
#define S(lit) lit, sizeof(lit) - 1

/* Scans s from a fresh guard; expects an error and returns its status. When
 * s holds a head, the body that follows is framed by kind. */
static int error_status(const char *s, size_t len, enum h1_body_kind kind)
{
    struct h1_guard g = guard();
    size_t off = 0, used;
    for (;;) {
        enum h1_guard_result r = h1_guard_scan(&g, s + off, len - off, &used);
        off += used;
        if (r == H1_GUARD_ERROR) {
            CHECK(g.reason != NULL);
            return g.status;
        }
        if (r == H1_GUARD_HEAD_END)
            h1_guard_set_body(&g, kind, 0);
        else if (off == len)
            return 0;
    }
}

/* Scans s, which must be one head, then a chunked body; returns the status
 * of the error, or 0 when the whole message scanned cleanly. */
static int chunked_error(const char *body, size_t len)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &used),
                 H1_GUARD_HEAD_END);
    h1_guard_set_body(&g, H1_BODY_CHUNKED, 0);
    enum h1_guard_result r = h1_guard_scan(&g, body, len, &used);
    if (r == H1_GUARD_ERROR)
        return g.status;
    CHECK_EQ_INT(r, H1_GUARD_MESSAGE_END);
    CHECK_EQ_INT(used, len);
    return 0;
}

/* ---- result kinds and `used` ---- */

TEST(fresh_guard_is_between_messages)
{
    struct h1_guard g = guard();
    CHECK(!h1_guard_in_message(&g));
    size_t used = 99;
    CHECK_EQ_INT(h1_guard_scan(&g, "", 0, &used), H1_GUARD_MORE);
    CHECK_EQ_INT(used, 0);
}

TEST(partial_head_is_more_and_uses_every_byte)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "GET / HTTP/1.1\r\nHost: h\r\n", &used), H1_GUARD_MORE);
    CHECK_EQ_INT(used, 25);
    CHECK(h1_guard_in_message(&g));
}

TEST(head_end_stops_just_after_the_empty_line)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "GET / HTTP/1.1\r\nHost: h\r\n\r\nBODY", &used), H1_GUARD_HEAD_END);
    CHECK_EQ_INT(used, 27);
    CHECK(h1_guard_in_message(&g));
}

TEST(head_end_at_the_end_of_the_data_uses_it_all)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "GET / HTTP/1.1\r\nHost: h\r\n\r", &used), H1_GUARD_MORE);
    CHECK_EQ_INT(used, 26);
    CHECK_EQ_INT(scan(&g, "\n", &used), H1_GUARD_HEAD_END);
    CHECK_EQ_INT(used, 1);
}

TEST(head_without_header_lines_ends_at_the_empty_line)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "GET / HTTP/1.0\r\n\r\n", &used), H1_GUARD_HEAD_END);
    CHECK_EQ_INT(used, 18);
}

TEST(scanning_on_without_body_framing_is_a_500)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "GET / HTTP/1.1\r\n\r\n", &used), H1_GUARD_HEAD_END);
    CHECK_EQ_INT(scan(&g, "x", &used), H1_GUARD_ERROR);
    CHECK_EQ_INT(used, 0);
    CHECK_EQ_INT(g.status, 500);
}

TEST(error_stops_at_the_offending_byte)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "GET /\nrest", &used), H1_GUARD_ERROR);
    CHECK_EQ_INT(used, 5);
    CHECK_EQ_INT(g.status, 400);
    CHECK_EQ_STR(g.reason, "Invalid HTTP request: bare LF line ending");
}

TEST(error_is_sticky)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "\n", &used), H1_GUARD_ERROR);
    CHECK_EQ_INT(scan(&g, "GET / HTTP/1.1\r\n\r\n", &used), H1_GUARD_ERROR);
    CHECK_EQ_INT(used, 0);
    CHECK_EQ_INT(g.status, 400);
}

TEST(init_clears_an_error)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "\n", &used), H1_GUARD_ERROR);
    h1_guard_init(&g, MAX_HEAD, MAX_LINE);
    CHECK_EQ_INT(scan(&g, "GET / HTTP/1.1\r\n\r\n", &used), H1_GUARD_HEAD_END);
}

/* ---- body framing ---- */

TEST(no_body_returns_to_between_messages)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "GET / HTTP/1.1\r\n\r\n", &used), H1_GUARD_HEAD_END);
    h1_guard_set_body(&g, H1_BODY_NONE, 0);
    CHECK(!h1_guard_in_message(&g));
    CHECK_EQ_INT(scan(&g, "GET /2 HTTP/1.1\r\n\r\n", &used), H1_GUARD_HEAD_END);
    CHECK_EQ_INT(used, 19);
}

TEST(length_body_passes_exactly_its_bytes)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "POST / HTTP/1.1\r\n\r\n", &used), H1_GUARD_HEAD_END);
    h1_guard_set_body(&g, H1_BODY_LENGTH, 5);
    CHECK(h1_guard_in_message(&g));
    /* body bytes are not checked: a LF or NUL in a body is fine */
    CHECK_EQ_INT(h1_guard_scan(&g, S("h\n\0loGET"), &used), H1_GUARD_MESSAGE_END);
    CHECK_EQ_INT(used, 5);
    CHECK(!h1_guard_in_message(&g));
}

TEST(length_body_can_arrive_in_pieces)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "POST / HTTP/1.1\r\n\r\n", &used), H1_GUARD_HEAD_END);
    h1_guard_set_body(&g, H1_BODY_LENGTH, 6);
    CHECK_EQ_INT(scan(&g, "abc", &used), H1_GUARD_MORE);
    CHECK_EQ_INT(used, 3);
    CHECK_EQ_INT(g.remaining, 3);
    CHECK_EQ_INT(scan(&g, "de", &used), H1_GUARD_MORE);
    CHECK_EQ_INT(used, 2);
    CHECK_EQ_INT(scan(&g, "fGET", &used), H1_GUARD_MESSAGE_END);
    CHECK_EQ_INT(used, 1);
}

TEST(zero_length_body_is_no_body)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "POST / HTTP/1.1\r\n\r\n", &used), H1_GUARD_HEAD_END);
    h1_guard_set_body(&g, H1_BODY_LENGTH, 0);
    CHECK(!h1_guard_in_message(&g));
}

TEST(chunked_body_ends_after_the_last_chunk_and_empty_line)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "POST / HTTP/1.1\r\n\r\n", &used), H1_GUARD_HEAD_END);
    h1_guard_set_body(&g, H1_BODY_CHUNKED, 0);
    const char body[] = "5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n";
    char data[64];
    snprintf(data, sizeof data, "%sNEXT", body);
    CHECK_EQ_INT(scan(&g, data, &used), H1_GUARD_MESSAGE_END);
    CHECK_EQ_INT(used, strlen(body));
    CHECK(!h1_guard_in_message(&g));
}

TEST(chunked_body_can_arrive_one_byte_at_a_time)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "POST / HTTP/1.1\r\n\r\n", &used), H1_GUARD_HEAD_END);
    h1_guard_set_body(&g, H1_BODY_CHUNKED, 0);
    const char body[] = "3;x=\"a\\\"b\"\r\nabc\r\n0\r\nT: v\r\n\r\n";
    size_t n = strlen(body);
    for (size_t i = 0; i + 1 < n; i++) {
        CHECK_EQ_INT(h1_guard_scan(&g, body + i, 1, &used), H1_GUARD_MORE);
        CHECK_EQ_INT(used, 1);
    }
    CHECK_EQ_INT(h1_guard_scan(&g, body + n - 1, 1, &used), H1_GUARD_MESSAGE_END);
    CHECK_EQ_INT(used, 1);
}

TEST(chunked_trailers_end_at_their_empty_line)
{
    CHECK_EQ_INT(chunked_error(S("0\r\nX-A: 1\r\nX-B: 2\r\n\r\n")), 0);
}

/* ---- leading empty lines ---- */

TEST(leading_crlfs_are_allowed_before_a_message)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "\r\n\r\n", &used), H1_GUARD_MORE);
    CHECK_EQ_INT(used, 4);
    CHECK(!h1_guard_in_message(&g));
    CHECK_EQ_INT(scan(&g, "\r", &used), H1_GUARD_MORE);
    CHECK(!h1_guard_in_message(&g));
    CHECK_EQ_INT(scan(&g, "\nGET / HTTP/1.1\r\n\r\n", &used), H1_GUARD_HEAD_END);
    CHECK_EQ_INT(used, 19);
}

TEST(leading_crlfs_do_not_count_against_the_head_limit)
{
    struct h1_guard g;
    h1_guard_init(&g, 20, 20);
    size_t used;
    CHECK_EQ_INT(scan(&g, "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n", &used), H1_GUARD_MORE);
    CHECK_EQ_INT(scan(&g, "GET / HTTP/1.1\r\n\r\n", &used), H1_GUARD_HEAD_END);
}

TEST(leading_bare_lf_is_400)
{
    CHECK_EQ_INT(error_status(S("\nGET / HTTP/1.1\r\n\r\n"), H1_BODY_NONE), 400);
}

TEST(leading_bare_cr_is_400)
{
    CHECK_EQ_INT(error_status(S("\rGET / HTTP/1.1\r\n\r\n"), H1_BODY_NONE), 400);
}

/* ---- head bytes ---- */

TEST(bare_lf_in_the_head_is_400)
{
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\nHost: h\r\n\r\n"), H1_BODY_NONE), 400);
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nHost: h\n\r\n"), H1_BODY_NONE), 400);
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nHost: h\r\n\n"), H1_BODY_NONE), 400);
}

TEST(bare_cr_in_the_head_is_400)
{
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\rHost: h\r\n\r\n"), H1_BODY_NONE), 400);
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nHost: h\r\rx"), H1_BODY_NONE), 400);
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nHost: h\r\n\rx"), H1_BODY_NONE), 400);
}

TEST(obs_fold_is_400)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", &used), H1_GUARD_ERROR);
    CHECK_EQ_INT(g.status, 400);
    CHECK_EQ_STR(g.reason, "Invalid HTTP request: obsolete line folding");
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), H1_BODY_NONE), 400);
}

TEST(control_bytes_in_the_head_are_400_but_tab_is_allowed)
{
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"), H1_BODY_NONE), 400);
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n"), H1_BODY_NONE), 400);
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nX: a\x1f\r\n\r\n"), H1_BODY_NONE), 400);
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), H1_BODY_NONE), 400);
    CHECK_EQ_INT(error_status(S("GET /\x0c HTTP/1.1\r\n\r\n"), H1_BODY_NONE), 400);
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nX: a\tb\x80\xff\r\n\r\n"), H1_BODY_NONE), 0);
}

TEST(whitespace_before_a_colon_is_400)
{
    struct h1_guard g = guard();
    size_t used;
    CHECK_EQ_INT(scan(&g, "GET / HTTP/1.1\r\nHost : h\r\n\r\n", &used), H1_GUARD_ERROR);
    CHECK_EQ_INT(used, 20);
    CHECK_EQ_INT(g.status, 400);
    CHECK_EQ_STR(g.reason, "Invalid HTTP request: invalid character in header name");
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n"), H1_BODY_NONE), 400);
}

TEST(header_name_must_be_a_nonempty_token)
{
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\n: h\r\n\r\n"), H1_BODY_NONE), 400);
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nA\"B: h\r\n\r\n"), H1_BODY_NONE), 400);
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), H1_BODY_NONE), 400);
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09az: h\r\n\r\n"), H1_BODY_NONE),
                 0);
}

TEST(value_may_hold_colons_and_spaces)
{
    CHECK_EQ_INT(error_status(S("GET / HTTP/1.1\r\nX: a : b :: c\r\n\r\n"), H1_BODY_NONE), 0);
}

/* ---- first line ---- */

TEST(first_line_is_not_checked_by_default)
{
    CHECK_EQ_INT(error_status(S("GET / HTXP/1.1\r\n\r\n"), H1_BODY_NONE), 0);
    CHECK_EQ_INT(error_status(S("GET\t/\tHTTP/1.1\r\n\r\n"), H1_BODY_NONE), 0);
}

static int request_line_status(const char *line)
{
    struct h1_guard g = guard();
    h1_guard_set_first_line(&g, H1_FIRST_LINE_REQUEST);
    size_t used;
    enum h1_guard_result r = scan(&g, line, &used);
    if (r == H1_GUARD_ERROR)
        return g.status;
    CHECK_EQ_INT(r, H1_GUARD_HEAD_END);
    return 0;
}

TEST(request_line_must_end_with_an_http_version)
{
    CHECK_EQ_INT(request_line_status("GET / HTTP/1.1\r\n\r\n"), 0);
    CHECK_EQ_INT(request_line_status("GET / HTTP/1.0\r\n\r\n"), 0);
    CHECK_EQ_INT(request_line_status("GET / HTTP/2.0\r\n\r\n"), 0); /* spelt right; 505 later */
    CHECK_EQ_INT(request_line_status("GET / HTXP/1.1\r\n\r\n"), 400);
    CHECK_EQ_INT(request_line_status("GET / HTTP/1.x\r\n\r\n"), 400);
    CHECK_EQ_INT(request_line_status("GET / HTTP/1.1 \r\n\r\n"), 400);
    CHECK_EQ_INT(request_line_status("GET /HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ_INT(request_line_status("HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ_INT(request_line_status("GET\r\n\r\n"), 400);
}

TEST(request_line_version_is_found_across_pieces)
{
    struct h1_guard g = guard();
    h1_guard_set_first_line(&g, H1_FIRST_LINE_REQUEST);
    const char line[] = "GET /a/long/enough/target?q=1 HTTP/1.1\r\n\r\n";
    size_t used;
    for (size_t i = 0; i + 1 < strlen(line); i++)
        CHECK_EQ_INT(h1_guard_scan(&g, line + i, 1, &used), H1_GUARD_MORE);
    CHECK_EQ_INT(scan(&g, "\n", &used), H1_GUARD_HEAD_END);
}

TEST(tab_in_a_request_line_is_400)
{
    CHECK_EQ_INT(request_line_status("GET /a\tb HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ_INT(request_line_status("GET\t/ HTTP/1.1\r\n\r\n"), 400);
}

TEST(run_of_spaces_in_a_request_line_is_400)
{
    CHECK_EQ_INT(request_line_status("GET  / HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ_INT(request_line_status("GET /  HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ_INT(request_line_status(" GET / HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ_INT(request_line_status("GET /a%20b HTTP/1.1\r\n\r\n"), 0);
}

TEST(request_line_check_applies_to_every_message)
{
    struct h1_guard g = guard();
    h1_guard_set_first_line(&g, H1_FIRST_LINE_REQUEST);
    size_t used;
    CHECK_EQ_INT(scan(&g, "GET / HTTP/1.1\r\n\r\n", &used), H1_GUARD_HEAD_END);
    h1_guard_set_body(&g, H1_BODY_NONE, 0);
    CHECK_EQ_INT(scan(&g, "GET / HTTP/1.Z\r\n\r\n", &used), H1_GUARD_ERROR);
    CHECK_EQ_INT(g.status, 400);
}

/* ---- limits ---- */

/* A first line of exactly len bytes, its CRLF included. */
static void line_of(char *out, size_t len)
{
    memset(out, 'a', len);
    memcpy(out, "GET /", 5);
    memcpy(out + len - 11, " HTTP/1.1\r\n", 11);
    out[len] = '\0';
}

TEST(first_line_of_max_line_bytes_is_accepted)
{
    struct h1_guard g = guard();
    char line[MAX_LINE + 1];
    line_of(line, MAX_LINE);
    size_t used;
    CHECK_EQ_INT(scan(&g, line, &used), H1_GUARD_MORE);
    CHECK_EQ_INT(used, MAX_LINE);
}

TEST(first_line_longer_than_max_line_is_414)
{
    struct h1_guard g = guard();
    char line[MAX_LINE + 2];
    line_of(line, MAX_LINE + 1);
    size_t used;
    CHECK_EQ_INT(scan(&g, line, &used), H1_GUARD_ERROR);
    CHECK_EQ_INT(used, MAX_LINE);
    CHECK_EQ_INT(g.status, 414);
}

TEST(first_line_limit_applies_before_its_end)
{
    struct h1_guard g = guard();
    char line[200];
    memset(line, 'a', sizeof line - 1);
    line[sizeof line - 1] = '\0';
    size_t used;
    CHECK_EQ_INT(scan(&g, line, &used), H1_GUARD_ERROR);
    CHECK_EQ_INT(used, MAX_LINE);
    CHECK_EQ_INT(g.status, 414);
}

TEST(header_lines_may_be_longer_than_max_line)
{
    char head[MAX_HEAD];
    char value[MAX_LINE * 2];
    memset(value, 'v', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    snprintf(head, sizeof head, "GET / HTTP/1.1\r\nX: %s\r\n\r\n", value);
    CHECK_EQ_INT(error_status(head, strlen(head), H1_BODY_NONE), 0);
}

/* A head whose bytes, all but the final empty line, number exactly len. */
static void head_of(char *out, size_t len)
{
    const char *start = "GET / HTTP/1.1\r\nX: ";
    size_t n = strlen(start);
    memcpy(out, start, n);
    memset(out + n, 'v', len - n - 2);
    memcpy(out + len - 2, "\r\n\r\n", 5);
}

TEST(head_of_max_head_bytes_is_accepted)
{
    struct h1_guard g = guard();
    char head[MAX_HEAD + 3];
    head_of(head, MAX_HEAD);
    size_t used;
    CHECK_EQ_INT(scan(&g, head, &used), H1_GUARD_HEAD_END);
    CHECK_EQ_INT(used, MAX_HEAD + 2);
    CHECK_EQ_INT(g.head_len, MAX_HEAD);
}

TEST(head_longer_than_max_head_is_431)
{
    struct h1_guard g = guard();
    char head[MAX_HEAD + 4];
    head_of(head, MAX_HEAD + 1);
    size_t used;
    CHECK_EQ_INT(scan(&g, head, &used), H1_GUARD_ERROR);
    CHECK_EQ_INT(used, MAX_HEAD);
    CHECK_EQ_INT(g.status, 431);
}

TEST(head_limit_counts_each_message_afresh)
{
    struct h1_guard g = guard();
    char head[MAX_HEAD + 3];
    head_of(head, MAX_HEAD);
    size_t used;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(scan(&g, head, &used), H1_GUARD_HEAD_END);
        h1_guard_set_body(&g, H1_BODY_NONE, 0);
    }
}

TEST(trailers_longer_than_max_head_are_431)
{
    char body[MAX_HEAD + 32];
    char value[MAX_HEAD];
    memset(value, 't', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    int n = snprintf(body, sizeof body, "0\r\nT: %s\r\n\r\n", value);
    CHECK_EQ_INT(chunked_error(body, (size_t)n), 431);
}

/* ---- chunk lines ---- */

TEST(chunk_size_is_hex_in_either_case)
{
    CHECK_EQ_INT(chunked_error(S("a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n")), 0);
}

TEST(chunk_size_of_16_hex_digits_is_accepted)
{
    CHECK_EQ_INT(chunked_error(S("0000000000000001\r\nx\r\n0\r\n\r\n")), 0);
}

TEST(chunk_size_over_16_hex_digits_is_400)
{
    CHECK_EQ_INT(chunked_error(S("00000000000000001\r\nx\r\n0\r\n\r\n")), 400);
}

TEST(invalid_chunk_size_is_400)
{
    CHECK_EQ_INT(chunked_error(S("zz\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S("\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S(";x\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S("-1\r\n")), 400);
}

TEST(whitespace_around_a_chunk_size_is_400)
{
    CHECK_EQ_INT(chunked_error(S("5 \r\nhello\r\n0\r\n\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S(" 5\r\nhello\r\n0\r\n\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S("5\t\r\nhello\r\n0\r\n\r\n")), 400);
}

TEST(bare_lf_or_cr_in_a_chunk_line_is_400)
{
    CHECK_EQ_INT(chunked_error(S("5\nhello\r\n0\r\n\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S("5\rhello\r\n0\r\n\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S("5;a\nhello\r\n0\r\n\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S("0\r\n\n")), 400);
    CHECK_EQ_INT(chunked_error(S("0\r\nT: v\n\r\n")), 400);
}

TEST(chunk_extensions_are_accepted)
{
    CHECK_EQ_INT(chunked_error(S("5;a=b;c=\"q\\\"x\"\r\nhello\r\n0;z\r\n\r\n")), 0);
    CHECK_EQ_INT(chunked_error(S("5; a = b ;\tc\r\nhello\r\n0\r\n\r\n")), 0);
    CHECK_EQ_INT(chunked_error(S("5;q=\"a;b=c \\\\ \x80\"\r\nhello\r\n0\r\n\r\n")), 0);
}

TEST(chunk_extension_with_an_invalid_byte_is_400)
{
    CHECK_EQ_INT(chunked_error(S("5;a@b\r\nhello\r\n0\r\n\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S("5;a=\x01\r\nhello\r\n0\r\n\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S("5;a=\"\0\"\r\nhello\r\n0\r\n\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S("5;a=\"x\r\n\"\r\nhello\r\n0\r\n\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S("5;a=\"\\\r\"\r\nhello\r\n0\r\n\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S("5;a=\x80\r\nhello\r\n0\r\n\r\n")), 400);
}

/* A one-byte chunk whose extension, from the ';' to the end of the line,
 * is len bytes, then the last chunk. */
static int chunk_with_extension(size_t len)
{
    char body[2100];
    body[0] = '1';
    body[1] = ';';
    memset(body + 2, 'e', len - 1);
    size_t n = 1 + len;
    memcpy(body + n, "\r\nx\r\n0\r\n\r\n", 10);
    return chunked_error(body, n + 10);
}

TEST(chunk_extension_of_1024_bytes_is_accepted)
{
    CHECK_EQ_INT(chunk_with_extension(1024), 0);
}

TEST(chunk_extension_over_1024_bytes_is_400)
{
    CHECK_EQ_INT(chunk_with_extension(1025), 400);
    CHECK_EQ_INT(chunk_with_extension(2000), 400);
}

TEST(chunk_extension_limit_is_per_chunk_line)
{
    char body[4200];
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        body[n++] = '1';
        body[n++] = ';';
        memset(body + n, 'e', 1000);
        n += 1000;
        memcpy(body + n, "\r\nx\r\n", 5);
        n += 5;
    }
    memcpy(body + n, "0\r\n\r\n", 5);
    CHECK_EQ_INT(chunked_error(body, n + 5), 0);
}

TEST(chunk_data_not_followed_by_crlf_is_400)
{
    CHECK_EQ_INT(chunked_error(S("5\r\nhelloX\r\n0\r\n\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S("5\r\nhello\n0\r\n\r\n")), 400);
    CHECK_EQ_INT(chunked_error(S("5\r\nhello\rX0\r\n\r\n")), 400);
}

TEST(chunk_data_bytes_are_not_checked)
{
    CHECK_EQ_INT(chunked_error(S("4\r\n\n\r\0\x7f\r\n0\r\n\r\n")), 0);
}

TEST(obs_fold_in_trailers_is_400)
{
    CHECK_EQ_INT(chunked_error(S("0\r\nT: a\r\n b\r\n\r\n")), 400);
}

TEST(control_byte_in_a_trailer_is_400)
{
    CHECK_EQ_INT(chunked_error(S("0\r\nT: a\x01\r\n\r\n")), 400);
}

TEST(whitespace_before_a_colon_in_a_trailer_is_400)
{
    CHECK_EQ_INT(chunked_error(S("0\r\nT : a\r\n\r\n")), 400);
}

CHECK_MAIN()
