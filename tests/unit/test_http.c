/* Unit tests for server/http.c: reason phrases, the IMF-fixdate Date
 * value and its once-a-second cache, tokens and field values (validation
 * against response splitting), Connection options, hex digits,
 * {"detail": ...} JSON bodies and decimal formatting. */
#include "http.h"

#include "check.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* ---- reason phrases ---- */

TEST(reason_for_common_statuses)
{
    CHECK_EQ_STR(http_reason(100), "Continue");
    CHECK_EQ_STR(http_reason(101), "Switching Protocols");
    CHECK_EQ_STR(http_reason(200), "OK");
    CHECK_EQ_STR(http_reason(201), "Created");
    CHECK_EQ_STR(http_reason(204), "No Content");
    CHECK_EQ_STR(http_reason(301), "Moved Permanently");
    CHECK_EQ_STR(http_reason(304), "Not Modified");
    CHECK_EQ_STR(http_reason(307), "Temporary Redirect");
    CHECK_EQ_STR(http_reason(400), "Bad Request");
    CHECK_EQ_STR(http_reason(401), "Unauthorized");
    CHECK_EQ_STR(http_reason(403), "Forbidden");
    CHECK_EQ_STR(http_reason(404), "Not Found");
    CHECK_EQ_STR(http_reason(405), "Method Not Allowed");
    CHECK_EQ_STR(http_reason(413), "Content Too Large");
    CHECK_EQ_STR(http_reason(414), "URI Too Long");
    CHECK_EQ_STR(http_reason(422), "Unprocessable Content");
    CHECK_EQ_STR(http_reason(431), "Request Header Fields Too Large");
    CHECK_EQ_STR(http_reason(500), "Internal Server Error");
    CHECK_EQ_STR(http_reason(503), "Service Unavailable");
    CHECK_EQ_STR(http_reason(505), "HTTP Version Not Supported");
}

/* RFC 9110 renamed these; both sides of the ABI use the new names. */
TEST(reason_uses_rfc_9110_names)
{
    CHECK_EQ_STR(http_reason(413), "Content Too Large");
    CHECK_EQ_STR(http_reason(414), "URI Too Long");
    CHECK_EQ_STR(http_reason(416), "Range Not Satisfiable");
    CHECK_EQ_STR(http_reason(422), "Unprocessable Content");
    CHECK_EQ_STR(http_reason(501), "Not Implemented");
}

TEST(reason_for_unassigned_statuses_is_unknown)
{
    CHECK_EQ_STR(http_reason(0), "Unknown");
    CHECK_EQ_STR(http_reason(-1), "Unknown");
    CHECK_EQ_STR(http_reason(299), "Unknown");
    CHECK_EQ_STR(http_reason(419), "Unknown");
    CHECK_EQ_STR(http_reason(599), "Unknown");
    CHECK_EQ_STR(http_reason(600), "Unknown");
    CHECK_EQ_STR(http_reason(99999), "Unknown");
}

TEST(status_has_body_except_1xx_204_and_304)
{
    CHECK(!http_status_has_body(100));
    CHECK(!http_status_has_body(101));
    CHECK(!http_status_has_body(199));
    CHECK(http_status_has_body(200));
    CHECK(!http_status_has_body(204));
    CHECK(http_status_has_body(205));
    CHECK(http_status_has_body(301));
    CHECK(!http_status_has_body(304));
    CHECK(http_status_has_body(404));
    CHECK(http_status_has_body(500));
}

/* ---- dates ---- */

/* Formats t and checks the text, its length and its terminating NUL. */
static void check_date(time_t t, const char *want)
{
    char out[40];
    memset(out, 'X', sizeof out);
    CHECK_EQ_INT(http_date_format(t, out), 29);
    CHECK_EQ_INT(strlen(want), 29);
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(out[30], 'X'); /* writes 30 bytes, no more */
}

TEST(date_of_the_epoch)
{
    check_date(0, "Thu, 01 Jan 1970 00:00:00 GMT");
}

TEST(date_from_rfc_9110_example)
{
    check_date(784111777, "Sun, 06 Nov 1994 08:49:37 GMT");
}

TEST(date_of_a_leap_day)
{
    check_date(1709164800, "Thu, 29 Feb 2024 00:00:00 GMT");
    check_date(951782400 + 86399, "Tue, 29 Feb 2000 23:59:59 GMT");
}

TEST(date_after_a_leap_day_and_at_year_end)
{
    check_date(1709251200, "Fri, 01 Mar 2024 00:00:00 GMT");
    check_date(1704067199, "Sun, 31 Dec 2023 23:59:59 GMT");
    check_date(1704067200, "Mon, 01 Jan 2024 00:00:00 GMT");
}

TEST(date_uses_english_names_for_every_weekday_and_month)
{
    /* the first of each month of 2021 */
    static const struct {
        time_t t;
        const char *want;
    } days[] = {
        {1609459200, "Fri, 01 Jan 2021 00:00:00 GMT"},
        {1612137600, "Mon, 01 Feb 2021 00:00:00 GMT"},
        {1614556800, "Mon, 01 Mar 2021 00:00:00 GMT"},
        {1617235200, "Thu, 01 Apr 2021 00:00:00 GMT"},
        {1619827200, "Sat, 01 May 2021 00:00:00 GMT"},
        {1622505600, "Tue, 01 Jun 2021 00:00:00 GMT"},
        {1625097600, "Thu, 01 Jul 2021 00:00:00 GMT"},
        {1627776000, "Sun, 01 Aug 2021 00:00:00 GMT"},
        {1630454400, "Wed, 01 Sep 2021 00:00:00 GMT"},
        {1633046400, "Fri, 01 Oct 2021 00:00:00 GMT"},
        {1635724800, "Mon, 01 Nov 2021 00:00:00 GMT"},
        {1638316800, "Wed, 01 Dec 2021 00:00:00 GMT"},
    };
    for (size_t i = 0; i < sizeof days / sizeof days[0]; i++)
        check_date(days[i].t, days[i].want);
}

TEST(date_cache_returns_the_same_text_within_a_second)
{
    const char *a = http_date(784111777);
    CHECK_EQ_STR(a, "Sun, 06 Nov 1994 08:49:37 GMT");
    const char *b = http_date(784111777);
    CHECK(a == b);
    CHECK_EQ_STR(b, "Sun, 06 Nov 1994 08:49:37 GMT");
}

TEST(date_cache_changes_with_the_second)
{
    CHECK_EQ_STR(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK_EQ_STR(http_date(784111778), "Sun, 06 Nov 1994 08:49:38 GMT");
    CHECK_EQ_STR(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    CHECK_EQ_STR(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
}

/* ---- header validation ---- */

static bool name_ok(const char *s)
{
    return http_is_token(s, strlen(s));
}

static bool value_ok(const char *s)
{
    return http_field_value_valid(s, strlen(s));
}

TEST(header_name_accepts_tokens)
{
    CHECK(name_ok("Content-Type"));
    CHECK(name_ok("x-request-id"));
    CHECK(name_ok("X_Under.Score~1"));
    CHECK(name_ok("!#$%&'*+-.^_`|~"));
    CHECK(name_ok("a"));
}

TEST(header_name_rejects_empty)
{
    CHECK(!http_is_token("", 0));
    CHECK(!http_is_token("abc", 0));
}

TEST(header_name_rejects_separators_and_whitespace)
{
    CHECK(!name_ok("a b"));
    CHECK(!name_ok("a:b"));
    CHECK(!name_ok("a\tb"));
    CHECK(!name_ok("(a)"));
    CHECK(!name_ok("a\"b"));
    CHECK(!name_ok("a/b"));
    CHECK(!name_ok("a=b"));
    CHECK(!name_ok("caf\xc3\xa9"));
}

TEST(header_name_rejects_cr_lf_and_nul)
{
    CHECK(!name_ok("a\r"));
    CHECK(!name_ok("a\nb"));
    CHECK(!name_ok("X-A\r\nSet-Cookie"));
    CHECK(!http_is_token("a\0b", 3));
    CHECK(!http_is_token("\0", 1));
}

TEST(header_value_accepts_text_tab_and_empty)
{
    CHECK(value_ok("text/html; charset=utf-8"));
    CHECK(value_ok("a\tb"));
    CHECK(value_ok("  spaced  "));
    CHECK(value_ok(""));
    CHECK(value_ok("caf\xc3\xa9"));
}

TEST(header_value_rejects_cr_lf_and_nul)
{
    CHECK(!value_ok("a\rb"));
    CHECK(!value_ok("a\nb"));
    CHECK(!value_ok("x\r\nSet-Cookie: evil=1"));
    CHECK(!http_field_value_valid("a\0b", 3));
    CHECK(!http_field_value_valid("\0", 1));
}

TEST(header_value_rejects_other_control_bytes)
{
    CHECK(!value_ok("a\x01"));
    CHECK(!value_ok("\x1b[31m"));
    CHECK(!value_ok("a\x1f"));
    CHECK(!value_ok("a\x7f"));
    CHECK(!value_ok("\x0b"));
}

TEST(header_value_length_bounds_the_check)
{
    CHECK(http_field_value_valid("ok\r\n", 2));
    CHECK(!http_field_value_valid("ok\r\n", 3));
}

/* ---- JSON detail bodies ---- */

/* The body http_json_detail appends for detail, as a C string. */
static const char *detail_json(const char *detail)
{
    static char out[512];
    struct buf b = {0};
    CHECK_EQ_INT(http_json_detail(&b, detail), 0);
    size_t n = buf_size(&b) < sizeof out - 1 ? buf_size(&b) : sizeof out - 1;
    memcpy(out, buf_start(&b), n);
    out[n] = '\0';
    buf_free(&b);
    return out;
}

TEST(json_detail_wraps_plain_text)
{
    CHECK_EQ_STR(detail_json("Not Found"), "{\"detail\":\"Not Found\"}");
}

TEST(json_detail_of_empty_text)
{
    CHECK_EQ_STR(detail_json(""), "{\"detail\":\"\"}");
}

TEST(json_detail_escapes_quotes_and_backslashes)
{
    CHECK_EQ_STR(detail_json("say \"hi\" to C:\\path\\"),
                 "{\"detail\":\"say \\\"hi\\\" to C:\\\\path\\\\\"}");
}

TEST(json_detail_escapes_control_bytes)
{
    CHECK_EQ_STR(detail_json("a\nb\tc\rd\x01\x1f"),
                 "{\"detail\":\"a\\u000ab\\u0009c\\u000dd\\u0001\\u001f\"}");
}

TEST(json_detail_keeps_utf8_and_slashes)
{
    CHECK_EQ_STR(detail_json("caf\xc3\xa9 /a/b"), "{\"detail\":\"caf\xc3\xa9 /a/b\"}");
}

TEST(json_detail_appends_to_existing_content)
{
    struct buf b = {0};
    CHECK_EQ_INT(buf_append_str(&b, "prefix:"), 0);
    CHECK_EQ_INT(http_json_detail(&b, "x"), 0);
    CHECK_EQ_MEM(buf_start(&b), buf_size(&b), "prefix:{\"detail\":\"x\"}");
    buf_free(&b);
}

/* ---- decimal numbers ---- */

/* http_u64 of v as a C string; checks that the returned end is right. */
static const char *u64_text(uint64_t v)
{
    static char out[32];
    memset(out, 'X', sizeof out);
    char *end = http_u64(out, v);
    CHECK(end > out && end < out + 21);
    CHECK_EQ_INT(*end, 'X'); /* nothing written past the end */
    *end = '\0';
    return out;
}

TEST(u64_of_zero)
{
    CHECK_EQ_STR(u64_text(0), "0");
}

TEST(u64_of_small_and_round_numbers)
{
    CHECK_EQ_STR(u64_text(7), "7");
    CHECK_EQ_STR(u64_text(10), "10");
    CHECK_EQ_STR(u64_text(1048576), "1048576");
    CHECK_EQ_STR(u64_text(1000000000000ULL), "1000000000000");
}

TEST(u64_of_the_largest_value)
{
    CHECK_EQ_STR(u64_text(UINT64_MAX), "18446744073709551615");
}

/* ---- tchar and hex digits ---- */

TEST(tchar_is_exactly_rfc_9110_tchar)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; c++) {
        bool expect = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c != 0 && memchr(extra, c, sizeof extra - 1) != NULL);
        CHECK_EQ_INT(http_is_tchar((unsigned char)c), expect);
    }
}

TEST(hex_digit_values)
{
    CHECK_EQ_INT(http_hex_digit('0'), 0);
    CHECK_EQ_INT(http_hex_digit('9'), 9);
    CHECK_EQ_INT(http_hex_digit('a'), 10);
    CHECK_EQ_INT(http_hex_digit('F'), 15);
    CHECK_EQ_INT(http_hex_digit('g'), -1);
    CHECK_EQ_INT(http_hex_digit('G'), -1);
    CHECK_EQ_INT(http_hex_digit(' '), -1);
    CHECK_EQ_INT(http_hex_digit(0), -1);
}

/* ---- Connection options (RFC 9110 7.6.1) ---- */

static bool conn_has(const char *value, const char *option)
{
    return http_connection_has(value, strlen(value), option);
}

TEST(connection_option_found_alone_and_in_a_list)
{
    CHECK(conn_has("close", "close"));
    CHECK(conn_has("Close", "close"));
    CHECK(conn_has("keep-alive, close", "close"));
    CHECK(conn_has("close,upgrade", "close"));
    CHECK(conn_has("  upgrade ,\tCLOSE\t", "close"));
    CHECK(conn_has(",,close,,", "close"));
    CHECK(conn_has("keep-alive, Upgrade", "upgrade"));
}

TEST(connection_option_must_be_a_whole_token)
{
    CHECK(!conn_has("keep-alive", "close"));
    CHECK(!conn_has("closed", "close"));
    CHECK(!conn_has("enclose", "close"));
    CHECK(!conn_has("x-close-after", "close"));
    CHECK(!conn_has("close me", "close"));
    CHECK(!conn_has("", "close"));
    CHECK(!conn_has(",", "close"));
}

/* Values arrive length-delimited, packed back to back with the next
 * header's bytes: nothing past len may count. */
TEST(connection_option_is_bounded_by_the_length)
{
    const char packed[] = "keep-alivex-notecloseclose";
    CHECK(!http_connection_has(packed, 10, "close"));
    CHECK(!http_connection_has(packed, 0, "close"));
    CHECK(http_connection_has(packed + 21, 5, "close"));
    CHECK(!http_connection_has(packed + 21, 4, "close"));
    const char cl[] = {'c', 'l', 'o', 's', 'e'}; /* no terminating NUL */
    CHECK(http_connection_has(cl, sizeof cl, "close"));
}

CHECK_MAIN()
