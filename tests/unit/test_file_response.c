/* Unit tests for the rules behind file responses: Range parsing
 * (http_range.c), entity-tags, HTTP-dates, preconditions and If-Range
 * (http_cond.c), Accept-Encoding q-values (http_accept.c), media types
 * (mime.c), and opening files beneath a folder (file_response.c). */
#include "file_response.h"
#include "http_accept.h"
#include "http_cond.h"
#include "http_range.h"
#include "mime.h"

#include "check.h"
#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Range ---- */

static enum http_range_result parse(const char *v, uint64_t size, struct http_range *out, size_t *n)
{
    return http_range_parse(v, strlen(v), size, out, n);
}

/* One range expected: first..last. */
static void check_one(const char *v, uint64_t size, uint64_t first, uint64_t last)
{
    struct http_range r[HTTP_RANGES_MAX];
    size_t n;
    CHECK_EQ_INT(parse(v, size, r, &n), HTTP_RANGE_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(r[0].first, first);
    CHECK_EQ_INT(r[0].last, last);
}

static void check_result(const char *v, uint64_t size, enum http_range_result want)
{
    struct http_range r[HTTP_RANGES_MAX];
    size_t n;
    enum http_range_result got = parse(v, size, r, &n);
    if (got != want)
        fprintf(stderr, "  range \"%s\" (size %llu)\n", v, (unsigned long long)size);
    CHECK_EQ_INT(got, want);
}

TEST(range_forms_of_one_range)
{
    check_one("bytes=0-4", 12, 0, 4);
    check_one("bytes=5-", 12, 5, 11);
    check_one("bytes=-3", 12, 9, 11);
    check_one("bytes=11-11", 12, 11, 11);
    check_one("bytes=0-0", 1, 0, 0);
}

TEST(range_clips_to_the_representation)
{
    check_one("bytes=0-100", 12, 0, 11);
    check_one("bytes=-20", 12, 0, 11);
    check_one("bytes=4-99999999999999999999999", 12, 4, 11); /* saturates, then clips */
    check_one("bytes=-99999999999999999999999", 12, 0, 11);
}

TEST(range_unit_is_case_insensitive_and_ows_is_allowed)
{
    check_one("BYTES=0-1", 12, 0, 1);
    check_one("Bytes=0-1", 12, 0, 1);
    check_one("bytes=0-1 ", 12, 0, 1);
    check_one(" bytes=0-1", 12, 0, 1);
}

TEST(range_list_keeps_the_order_asked)
{
    struct http_range r[HTTP_RANGES_MAX];
    size_t n;
    CHECK_EQ_INT(parse("bytes= 8-9 ,, 0-1,\t-1", 12, r, &n), HTTP_RANGE_OK);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(r[0].first, 8);
    CHECK_EQ_INT(r[0].last, 9);
    CHECK_EQ_INT(r[1].first, 0);
    CHECK_EQ_INT(r[1].last, 1);
    CHECK_EQ_INT(r[2].first, 11);
    CHECK_EQ_INT(r[2].last, 11);
}

TEST(range_drops_unsatisfiable_ranges_among_satisfiable_ones)
{
    struct http_range r[HTTP_RANGES_MAX];
    size_t n;
    CHECK_EQ_INT(parse("bytes=20-30, 0-1, -0", 12, r, &n), HTTP_RANGE_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(r[0].first, 0);
    CHECK_EQ_INT(r[0].last, 1);
}

TEST(range_with_nothing_satisfiable_is_416)
{
    check_result("bytes=12-", 12, HTTP_RANGE_UNSATISFIABLE);
    check_result("bytes=12-20", 12, HTTP_RANGE_UNSATISFIABLE);
    check_result("bytes=-0", 12, HTTP_RANGE_UNSATISFIABLE);
    check_result("bytes=20-30, 40-", 12, HTTP_RANGE_UNSATISFIABLE);
    check_result("bytes=99999999999999999999999-", 12, HTTP_RANGE_UNSATISFIABLE);
}

TEST(range_that_is_invalid_is_ignored)
{
    check_result("items=0-1", 12, HTTP_RANGE_IGNORE);
    check_result("bytes", 12, HTTP_RANGE_IGNORE);
    check_result("bytes=", 12, HTTP_RANGE_IGNORE);
    check_result("bytes= , ", 12, HTTP_RANGE_IGNORE);
    check_result("bytes=4-2", 12, HTTP_RANGE_IGNORE); /* last < first */
    check_result("bytes=a-b", 12, HTTP_RANGE_IGNORE);
    check_result("bytes=1", 12, HTTP_RANGE_IGNORE);
    check_result("bytes=-", 12, HTTP_RANGE_IGNORE);
    check_result("bytes=1-2x", 12, HTTP_RANGE_IGNORE);
    check_result("bytes=1-2;3", 12, HTTP_RANGE_IGNORE);
    check_result("bytes=1 -2", 12, HTTP_RANGE_IGNORE);
    check_result("bytes=+1-2", 12, HTTP_RANGE_IGNORE);
    /* An invalid element spoils the whole header, even after good ones. */
    check_result("bytes=0-1, 5-3", 12, HTTP_RANGE_IGNORE);
}

TEST(range_of_an_empty_representation_is_ignored)
{
    check_result("bytes=0-", 0, HTTP_RANGE_IGNORE);
    check_result("bytes=-5", 0, HTTP_RANGE_IGNORE);
}

TEST(range_count_is_limited)
{
    char v[256] = "bytes=";
    for (int i = 0; i < HTTP_RANGES_MAX; i++)
        snprintf(v + strlen(v), sizeof v - strlen(v), "%s%d-%d", i ? "," : "", i * 2, i * 2);
    struct http_range r[HTTP_RANGES_MAX];
    size_t n;
    CHECK_EQ_INT(parse(v, 100, r, &n), HTTP_RANGE_OK);
    CHECK_EQ_INT(n, HTTP_RANGES_MAX);
    strcat(v, ",90-91");
    check_result(v, 100, HTTP_RANGE_IGNORE);
}

TEST(range_total_beyond_the_representation_is_ignored)
{
    check_result("bytes=0-11,0-11", 12, HTTP_RANGE_IGNORE);
    check_result("bytes=0-,-12", 12, HTTP_RANGE_IGNORE);
    /* Overlapping but small: served as asked. */
    struct http_range r[HTTP_RANGES_MAX];
    size_t n;
    CHECK_EQ_INT(parse("bytes=0-3,2-5", 12, r, &n), HTTP_RANGE_OK);
    CHECK_EQ_INT(n, 2);
}

/* ---- entity-tags ---- */

TEST(etag_is_strong_and_names_inode_length_and_mtime)
{
    char tag[HTTP_ETAG_MAX];
    size_t n = http_etag_format(tag, 0x1a, 12, 0x5f, 0);
    CHECK_EQ_MEM(tag, n, "\"1a-c-5f\"");
    n = http_etag_format(tag, 0x1a, 12, 0x5f, 4);
    CHECK_EQ_MEM(tag, n, "\"1a-c-5f-4\"");
    n = http_etag_format(tag, UINT64_MAX, UINT64_MAX, INT64_MAX, UINT64_MAX);
    CHECK(n < HTTP_ETAG_MAX);
    CHECK_EQ_INT(tag[n], '\0');
}

static bool match(const char *list, bool strong)
{
    static const char etag[] = "\"abc\"";
    return http_etag_list_match(list, strlen(list), etag, sizeof etag - 1, strong);
}

TEST(etag_lists_match_by_strong_and_weak_comparison)
{
    CHECK(match("\"abc\"", true));
    CHECK(match("\"abc\"", false));
    CHECK(!match("W/\"abc\"", true));
    CHECK(match("W/\"abc\"", false));
    CHECK(!match("\"abcd\"", false));
    CHECK(!match("\"ab\"", false));
    CHECK(!match("abc", false));
}

TEST(etag_lists_take_star_spaces_and_several_tags)
{
    CHECK(match("*", true));
    CHECK(match(" * ", false));
    CHECK(match("\"x\", \"abc\"", true));
    CHECK(match("\"x\",\"abc\"", true));
    CHECK(match(" \"x\" ,\t, W/\"abc\" ", false));
    CHECK(!match("\"x\", \"y\"", false));
    /* A comma may sit inside a tag. */
    CHECK(!match("\"x,\"abc\"\"", false));
    CHECK(match("\"a,b\", \"abc\"", true));
}

TEST(etag_list_stops_at_a_malformed_element)
{
    CHECK(!match("\"x\" junk, \"abc\"", false));
    CHECK(!match("\"unterminated, \"abc\"", false));
    CHECK(!match("", false));
    CHECK(!match("*, \"abc\"", false)); /* "*" is only valid alone */
}

/* ---- HTTP-date ---- */

static const time_t now_2026 = 1788000000; /* Aug 2026 */

static time_t date(const char *s)
{
    time_t t;
    if (http_date_parse(s, strlen(s), now_2026, &t) < 0)
        return -1;
    return t;
}

TEST(date_parses_the_three_forms)
{
    CHECK_EQ_INT(date("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
    CHECK_EQ_INT(date("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
    CHECK_EQ_INT(date("Sun Nov  6 08:49:37 1994"), 784111777);
    CHECK_EQ_INT(date("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    CHECK_EQ_INT(date("Wed, 29 Feb 2012 00:00:00 GMT"), 1330473600);
}

TEST(date_round_trips_with_http_date_format)
{
    char out[32];
    for (time_t t = 0; t < 4000000000; t += 123456789) {
        http_date_format(t, out);
        CHECK_EQ_INT(date(out), t);
    }
}

TEST(date_two_digit_years_look_back_past_fifty_years_ahead)
{
    CHECK_EQ_INT(date("Tuesday, 01-Jan-70 00:00:00 GMT"), 3155760000); /* 2070 */
    /* 2026 + 50 = 2076: "76" is 2076, "77" is 1977. */
    time_t y2076 = date("Wednesday, 01-Jan-76 00:00:00 GMT");
    CHECK(y2076 > now_2026);
    time_t y1977 = date("Saturday, 01-Jan-77 00:00:00 GMT");
    CHECK_EQ_INT(y1977, 220924800);
    CHECK(date("Monday, 01-Jan-24 00:00:00 GMT") > 1700000000);
}

TEST(date_rejects_what_is_not_an_http_date)
{
    CHECK_EQ_INT(date(""), -1);
    CHECK_EQ_INT(date("yesterday"), -1);
    CHECK_EQ_INT(date("Sun, 06 Nov 1994 08:49:37 UTC"), -1);
    CHECK_EQ_INT(date("Sun, 06 Nov 1994 08:49:37 gmt"), -1);
    CHECK_EQ_INT(date("Sun, 6 Nov 1994 08:49:37 GMT"), -1);
    CHECK_EQ_INT(date("Sun, 06 Nox 1994 08:49:37 GMT"), -1);
    CHECK_EQ_INT(date("Sun, 30 Feb 1994 08:49:37 GMT"), -1);
    CHECK_EQ_INT(date("Sun, 29 Feb 1900 08:49:37 GMT"), -1);
    CHECK_EQ_INT(date("Sun, 06 Nov 1994 24:49:37 GMT"), -1);
    CHECK_EQ_INT(date("Sun, 06 Nov 1994 08:60:37 GMT"), -1);
    CHECK_EQ_INT(date("Xyz, 06 Nov 1994 08:49:37 GMT"), -1);
    CHECK_EQ_INT(date("Sun, 06 Nov 1994 08:49:37 GMT "), -1);
    CHECK_EQ_INT(date("Sun, 06 Nov 1994 08:49:37"), -1);
    CHECK_EQ_INT(date("Sun Nov 6 08:49:37 1994"), -1);
    CHECK_EQ_INT(date("Sunday, 06-Nov-1994 08:49:37 GMT"), -1);
    CHECK_EQ_INT(date("Sun, 06-Nov-94 08:49:37 GMT"), -1);
    CHECK_EQ_INT(date("784111777"), -1);
}

/* ---- preconditions (RFC 9110 13.2.2) ---- */

#define ETAG    "\"abc\""
#define LM      784111777 /* Sun, 06 Nov 1994 08:49:37 GMT */
#define LM_TEXT "Sun, 06 Nov 1994 08:49:37 GMT"
#define BEFORE  "Sun, 06 Nov 1994 08:49:36 GMT"
#define AFTER   "Sun, 06 Nov 1994 08:49:38 GMT"

struct cond_case {
    const char *im, *ius, *inm, *ims;
    bool get;
    enum http_cond_result want;
};

static void check_cond(const struct cond_case *c, int line)
{
    struct http_validators v = {ETAG, sizeof ETAG - 1, LM};
    struct http_preconditions p = {c->im,
                                   c->inm,
                                   c->ims,
                                   c->ius,
                                   c->im ? strlen(c->im) : 0,
                                   c->inm ? strlen(c->inm) : 0,
                                   c->ims ? strlen(c->ims) : 0,
                                   c->ius ? strlen(c->ius) : 0};
    enum http_cond_result got = http_preconditions_eval(&p, &v, c->get, now_2026);
    if (got != c->want)
        fprintf(stderr, "  case at line %d\n", line);
    CHECK_EQ_INT(got, c->want);
}

#define COND(im, ius, inm, ims, get, want)                                                         \
    check_cond(&(struct cond_case){im, ius, inm, ims, get, want}, __LINE__)

TEST(preconditions_absent_proceed)
{
    COND(NULL, NULL, NULL, NULL, true, HTTP_COND_PROCEED);
    COND(NULL, NULL, NULL, NULL, false, HTTP_COND_PROCEED);
}

TEST(if_match_compares_strongly)
{
    COND(ETAG, NULL, NULL, NULL, true, HTTP_COND_PROCEED);
    COND("*", NULL, NULL, NULL, true, HTTP_COND_PROCEED);
    COND("\"x\", " ETAG, NULL, NULL, NULL, false, HTTP_COND_PROCEED);
    COND("\"x\"", NULL, NULL, NULL, true, HTTP_COND_FAILED);
    COND("W/" ETAG, NULL, NULL, NULL, true, HTTP_COND_FAILED);
}

TEST(if_unmodified_since_fails_when_modified_after)
{
    COND(NULL, LM_TEXT, NULL, NULL, true, HTTP_COND_PROCEED);
    COND(NULL, AFTER, NULL, NULL, true, HTTP_COND_PROCEED);
    COND(NULL, BEFORE, NULL, NULL, true, HTTP_COND_FAILED);
    COND(NULL, BEFORE, NULL, NULL, false, HTTP_COND_FAILED);
    COND(NULL, "not a date", NULL, NULL, true, HTTP_COND_PROCEED);
}

TEST(if_match_takes_precedence_over_if_unmodified_since)
{
    COND(ETAG, BEFORE, NULL, NULL, true, HTTP_COND_PROCEED);
    COND("\"x\"", AFTER, NULL, NULL, true, HTTP_COND_FAILED);
}

TEST(if_none_match_compares_weakly_and_is_304_for_get_and_head)
{
    COND(NULL, NULL, ETAG, NULL, true, HTTP_COND_NOT_MODIFIED);
    COND(NULL, NULL, "W/" ETAG, NULL, true, HTTP_COND_NOT_MODIFIED);
    COND(NULL, NULL, "*", NULL, true, HTTP_COND_NOT_MODIFIED);
    COND(NULL, NULL, "\"x\"", NULL, true, HTTP_COND_PROCEED);
    COND(NULL, NULL, ETAG, NULL, false, HTTP_COND_FAILED);
}

TEST(if_modified_since_only_for_get_and_head)
{
    COND(NULL, NULL, NULL, LM_TEXT, true, HTTP_COND_NOT_MODIFIED);
    COND(NULL, NULL, NULL, AFTER, true, HTTP_COND_NOT_MODIFIED);
    COND(NULL, NULL, NULL, BEFORE, true, HTTP_COND_PROCEED);
    COND(NULL, NULL, NULL, LM_TEXT, false, HTTP_COND_PROCEED);
    COND(NULL, NULL, NULL, "garbage", true, HTTP_COND_PROCEED);
    COND(NULL, NULL, NULL, " " LM_TEXT " ", true, HTTP_COND_NOT_MODIFIED);
}

TEST(if_none_match_makes_if_modified_since_ignored)
{
    /* A cached copy with another tag is stale whatever its date says. */
    COND(NULL, NULL, "\"x\"", AFTER, true, HTTP_COND_PROCEED);
    COND(NULL, NULL, ETAG, BEFORE, true, HTTP_COND_NOT_MODIFIED);
}

TEST(failed_if_match_wins_over_if_none_match)
{
    COND("\"x\"", NULL, ETAG, NULL, true, HTTP_COND_FAILED);
    COND(NULL, BEFORE, ETAG, NULL, true, HTTP_COND_FAILED);
    COND(ETAG, NULL, ETAG, NULL, true, HTTP_COND_NOT_MODIFIED);
}

/* ---- If-Range ---- */

static bool if_range(const char *v, int64_t mtime_ns, int64_t now_ns)
{
    struct http_validators val = {ETAG, sizeof ETAG - 1, LM};
    return http_if_range_holds(v, strlen(v), &val, mtime_ns, now_ns);
}

#define NS(s) ((int64_t)(s)*1000000000)

TEST(if_range_with_an_etag_compares_strongly)
{
    CHECK(if_range(ETAG, NS(LM), NS(LM + 100)));
    CHECK(if_range(" " ETAG " ", NS(LM), NS(LM + 100)));
    CHECK(!if_range("W/" ETAG, NS(LM), NS(LM + 100)));
    CHECK(!if_range("\"x\"", NS(LM), NS(LM + 100)));
    CHECK(!if_range(ETAG ", \"x\"", NS(LM), NS(LM + 100))); /* one tag, not a list */
}

TEST(if_range_with_a_date_needs_an_exact_and_strong_last_modified)
{
    CHECK(if_range(LM_TEXT, NS(LM), NS(LM + 100)));
    CHECK(if_range(LM_TEXT, NS(LM) + 500000000, NS(LM) + 1500000000));
    /* Modified less than a second ago: the date is a weak validator. */
    CHECK(!if_range(LM_TEXT, NS(LM) + 500000000, NS(LM) + 900000000));
    CHECK(!if_range(AFTER, NS(LM), NS(LM + 100)));
    CHECK(!if_range(BEFORE, NS(LM), NS(LM + 100)));
    CHECK(!if_range("garbage", NS(LM), NS(LM + 100)));
    CHECK(!if_range("", NS(LM), NS(LM + 100)));
}

TEST(if_range_date_may_start_with_w)
{
    /* "Wed, ..." is a date, not a weak entity-tag. */
    struct http_validators val = {ETAG, sizeof ETAG - 1, 1330473600};
    const char *v = "Wed, 29 Feb 2012 00:00:00 GMT";
    CHECK(http_if_range_holds(v, strlen(v), &val, NS(1330473600), NS(1330473600 + 5)));
}

/* ---- Accept-Encoding ---- */

static int q(const char *v, const char *coding)
{
    return http_accept_encoding_q(v, strlen(v), coding);
}

TEST(accept_encoding_q_values)
{
    CHECK_EQ_INT(q("gzip, br", "br"), 1000);
    CHECK_EQ_INT(q("gzip, br", "gzip"), 1000);
    CHECK_EQ_INT(q("br;q=0", "br"), 0);
    CHECK_EQ_INT(q("br;q=0.5", "br"), 500);
    CHECK_EQ_INT(q("br;q=0.125", "br"), 125);
    CHECK_EQ_INT(q("br ; q=0.25 ", "br"), 250);
    CHECK_EQ_INT(q("BR;Q=1.000", "br"), 1000);
    CHECK_EQ_INT(q("gzip", "br"), -1);
    CHECK_EQ_INT(q("", "br"), -1);
    CHECK_EQ_INT(q("brotli", "br"), -1);
}

TEST(accept_encoding_star_covers_codings_not_named)
{
    CHECK_EQ_INT(q("*", "br"), 1000);
    CHECK_EQ_INT(q("*;q=0.5", "gzip"), 500);
    CHECK_EQ_INT(q("gzip;q=0.8, *;q=0.1", "br"), 100);
    CHECK_EQ_INT(q("gzip;q=0.8, *;q=0.1", "gzip"), 800);
    CHECK_EQ_INT(q("*;q=0, gzip", "gzip"), 1000);
}

TEST(accept_encoding_x_gzip_is_gzip)
{
    CHECK_EQ_INT(q("x-gzip", "gzip"), 1000);
    CHECK_EQ_INT(q("x-gzip;q=0.3", "gzip"), 300);
}

TEST(accept_encoding_skips_invalid_q_values)
{
    CHECK_EQ_INT(q("br;q=2", "br"), -1);
    CHECK_EQ_INT(q("br;q=1.5", "br"), -1);
    CHECK_EQ_INT(q("br;q=0.1234", "br"), -1);
    CHECK_EQ_INT(q("br;q=", "br"), -1);
    CHECK_EQ_INT(q("br;q=abc", "br"), -1);
    CHECK_EQ_INT(q("br;q=-1", "br"), -1);
    CHECK_EQ_INT(q("br;q=2, *;q=0.2", "br"), 200);
    /* Other parameters are allowed and ignored. */
    CHECK_EQ_INT(q("br;level=5;q=0.4", "br"), 400);
}

static size_t order(const char *v, enum http_coding out[HTTP_CODINGS])
{
    return http_accept_encoding_order(v, v ? strlen(v) : 0, out);
}

TEST(accept_encoding_order_prefers_br_on_a_tie)
{
    enum http_coding o[HTTP_CODINGS];
    CHECK_EQ_INT(order("gzip, br", o), 3);
    CHECK_EQ_INT(o[0], HTTP_CODING_BR);
    CHECK_EQ_INT(o[1], HTTP_CODING_GZIP);
    CHECK_EQ_INT(o[2], HTTP_CODING_IDENTITY);
    CHECK_EQ_INT(order("*", o), 3);
    CHECK_EQ_INT(o[0], HTTP_CODING_BR);
    CHECK_EQ_INT(o[2], HTTP_CODING_IDENTITY);
}

TEST(accept_encoding_order_follows_q_values)
{
    enum http_coding o[HTTP_CODINGS];
    CHECK_EQ_INT(order("gzip;q=1, br;q=0.5", o), 3);
    CHECK_EQ_INT(o[0], HTTP_CODING_GZIP);
    CHECK_EQ_INT(o[1], HTTP_CODING_BR);
    CHECK_EQ_INT(order("br;q=0, gzip", o), 2);
    CHECK_EQ_INT(o[0], HTTP_CODING_GZIP);
    CHECK_EQ_INT(o[1], HTTP_CODING_IDENTITY);
    /* identity named above a coding comes first. */
    CHECK_EQ_INT(order("gzip;q=0.5, identity", o), 2);
    CHECK_EQ_INT(o[0], HTTP_CODING_IDENTITY);
    CHECK_EQ_INT(o[1], HTTP_CODING_GZIP);
    /* identity not named ranks after every coding the client named. */
    CHECK_EQ_INT(order("gzip;q=0.001", o), 2);
    CHECK_EQ_INT(o[0], HTTP_CODING_GZIP);
    CHECK_EQ_INT(o[1], HTTP_CODING_IDENTITY);
}

TEST(accept_encoding_absent_or_empty_means_identity)
{
    enum http_coding o[HTTP_CODINGS];
    CHECK_EQ_INT(order(NULL, o), 1);
    CHECK_EQ_INT(o[0], HTTP_CODING_IDENTITY);
    CHECK_EQ_INT(order("", o), 1);
    CHECK_EQ_INT(o[0], HTTP_CODING_IDENTITY);
    CHECK_EQ_INT(order("identity", o), 1);
}

TEST(accept_encoding_can_exclude_everything)
{
    enum http_coding o[HTTP_CODINGS];
    CHECK_EQ_INT(order("*;q=0", o), 0);
    CHECK_EQ_INT(order("identity;q=0", o), 0);
    CHECK_EQ_INT(order("identity;q=0, br", o), 1);
    CHECK_EQ_INT(o[0], HTTP_CODING_BR);
}

/* ---- media types ---- */

static char *write_temp(const char *text)
{
    static char path[] = "/tmp/evicorn-mime-XXXXXX";
    strcpy(path, "/tmp/evicorn-mime-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return NULL;
    CHECK_EQ_INT(write(fd, text, strlen(text)), (long long)strlen(text));
    close(fd);
    return path;
}

TEST(mime_reads_a_mime_types_file)
{
    char *path = write_temp("# a comment line\n"
                            "text/html\t\t\t\thtml htm\n"
                            "application/json json # trailing comment\n"
                            "application/x-tcl tcl\n"
                            "text/x-tcl tcl\n"
                            "image/svg+xml svg svgz\n"
                            "application/javascript legacyjs\n"
                            "text/empty\n"
                            "MixedCase/Type MiXeD\r\n");
    CHECK_EQ_INT(mime_load(path), 0);
    unlink(path);
    CHECK_EQ_STR(mime_type_for("index.html"), "text/html; charset=utf-8");
    CHECK_EQ_STR(mime_type_for("INDEX.HTM"), "text/html; charset=utf-8");
    CHECK_EQ_STR(mime_type_for("dir/data.json"), "application/json");
    CHECK_EQ_STR(mime_type_for("a.svg"), "image/svg+xml");
    CHECK_EQ_STR(mime_type_for("old.legacyjs"), "application/javascript; charset=utf-8");
    CHECK_EQ_STR(mime_type_for("x.mixed"), "MixedCase/Type");
    /* The first line wins among equal extensions. */
    CHECK_EQ_STR(mime_type_for("a.tcl"), "application/x-tcl");
    mime_free();
}

TEST(mime_uses_the_last_extension_of_the_name_only)
{
    char *path = write_temp("application/gzip gz\ntext/plain txt\n");
    CHECK_EQ_INT(mime_load(path), 0);
    unlink(path);
    CHECK_EQ_STR(mime_type_for("a.tar.gz"), "application/gzip");
    CHECK(mime_type_for("noext") == NULL);
    CHECK(mime_type_for("dir.txt/noext") == NULL);
    CHECK(mime_type_for("trailingdot.") == NULL);
    CHECK(mime_type_for("a.unknown") == NULL);
    CHECK(mime_type_for(NULL) == NULL);
    CHECK_EQ_STR(mime_type_for(".txt"), "text/plain; charset=utf-8");
    mime_free();
}

TEST(mime_falls_back_to_a_built_in_table)
{
    CHECK_EQ_INT(mime_load("/nonexistent/mime.types"), -1);
    CHECK_EQ_INT(errno, ENOENT);
    CHECK_EQ_STR(mime_type_for("a.html"), "text/html; charset=utf-8");
    CHECK_EQ_STR(mime_type_for("a.css"), "text/css; charset=utf-8");
    CHECK_EQ_STR(mime_type_for("a.js"), "text/javascript; charset=utf-8");
    CHECK_EQ_STR(mime_type_for("a.json"), "application/json");
    CHECK_EQ_STR(mime_type_for("a.wasm"), "application/wasm");
    CHECK_EQ_STR(mime_type_for("a.png"), "image/png");
    CHECK_EQ_STR(mime_type_for("a.JPG"), "image/jpeg");
    CHECK_EQ_STR(mime_type_for("a.gif"), "image/gif");
    CHECK_EQ_STR(mime_type_for("a.svg"), "image/svg+xml");
    CHECK_EQ_STR(mime_type_for("a.txt"), "text/plain; charset=utf-8");
    CHECK_EQ_STR(mime_type_for("a.ico"), "image/vnd.microsoft.icon");
    CHECK_EQ_STR(mime_type_for("a.webp"), "image/webp");
    CHECK_EQ_STR(mime_type_for("a.woff2"), "font/woff2");
    mime_free();
}

TEST(mime_reads_the_system_table)
{
    if (access(MIME_TYPES_PATH, R_OK) != 0) {
        fprintf(stderr, "  (no %s: skipped)\n", MIME_TYPES_PATH);
        return;
    }
    CHECK_EQ_INT(mime_load(MIME_TYPES_PATH), 0);
    CHECK_EQ_STR(mime_type_for("app.js"), "text/javascript; charset=utf-8");
    CHECK_EQ_STR(mime_type_for("index.html"), "text/html; charset=utf-8");
    CHECK_EQ_STR(mime_type_for("a.wasm"), "application/wasm");
    CHECK_EQ_STR(mime_type_for("a.woff2"), "font/woff2");
    mime_free();
}

/* ---- opening beneath a folder ---- */

struct tree {
    char dir[64];
    int dirfd;
};

static void make_tree(struct tree *t)
{
    strcpy(t->dir, "/tmp/evicorn-files-XXXXXX");
    CHECK(mkdtemp(t->dir) != NULL);
    char p[256];
    snprintf(p, sizeof p, "%s/root", t->dir);
    CHECK_EQ_INT(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/root/sub", t->dir);
    CHECK_EQ_INT(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/secret", t->dir);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("secret", f);
        fclose(f);
    }
    snprintf(p, sizeof p, "%s/root/a.txt", t->dir);
    f = fopen(p, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("hello", f);
        fclose(f);
    }
    snprintf(p, sizeof p, "%s/root/fifo", t->dir);
    CHECK_EQ_INT(mkfifo(p, 0644), 0);
    snprintf(p, sizeof p, "%s/root/out", t->dir);
    CHECK_EQ_INT(symlink("../secret", p), 0);
    snprintf(p, sizeof p, "%s/root/abs", t->dir);
    char target[256];
    snprintf(target, sizeof target, "%s/secret", t->dir);
    CHECK_EQ_INT(symlink(target, p), 0);
    snprintf(p, sizeof p, "%s/root/sub/in", t->dir);
    CHECK_EQ_INT(symlink("../a.txt", p), 0);
    snprintf(p, sizeof p, "%s/root", t->dir);
    t->dirfd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
    CHECK(t->dirfd >= 0);
}

static int open_beneath(struct tree *t, const char *path)
{
    struct stat st;
    const char *enc = "unset";
    int fd = file_open(NULL, t->dirfd, path, false, true, &st, &enc);
    CHECK(enc == NULL);
    if (fd >= 0) {
        CHECK(S_ISREG(st.st_mode));
        close(fd);
        return 0;
    }
    return fd;
}

TEST(file_open_serves_regular_files_and_symlinks_that_stay_inside)
{
    struct tree t;
    make_tree(&t);
    CHECK_EQ_INT(open_beneath(&t, "a.txt"), 0);
    CHECK_EQ_INT(open_beneath(&t, "sub/in"), 0);
    CHECK_EQ_INT(open_beneath(&t, "sub/../a.txt"), 0);
    close(t.dirfd);
    remove_tree(t.dir, false);
}

TEST(file_open_refuses_to_leave_the_folder)
{
    struct tree t;
    make_tree(&t);
    CHECK_EQ_INT(open_beneath(&t, "../secret"), -EXDEV);
    CHECK_EQ_INT(open_beneath(&t, "sub/../../secret"), -EXDEV);
    CHECK_EQ_INT(open_beneath(&t, "out"), -EXDEV);
    CHECK_EQ_INT(open_beneath(&t, "abs"), -EXDEV);
    CHECK_EQ_INT(open_beneath(&t, "/etc/passwd"), -EXDEV);
    CHECK_EQ_INT(open_beneath(&t, "/proc/self/fd/0"), -EXDEV);
    close(t.dirfd);
    remove_tree(t.dir, false);
}

TEST(file_open_refuses_what_is_not_a_regular_file)
{
    struct tree t;
    make_tree(&t);
    /* The FIFO has no writer: a blocking open would hang here. */
    CHECK_EQ_INT(open_beneath(&t, "fifo"), -EACCES);
    CHECK_EQ_INT(open_beneath(&t, "sub"), -EACCES);
    CHECK_EQ_INT(open_beneath(&t, "missing"), -ENOENT);
    CHECK_EQ_INT(open_beneath(&t, "a.txt/x"), -ENOENT);
    close(t.dirfd);
    remove_tree(t.dir, false);
}

CHECK_MAIN()
