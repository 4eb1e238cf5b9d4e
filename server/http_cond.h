/* http_cond: conditional requests (RFC 9110 section 13): entity-tags and
 * their comparison (8.8.3), HTTP-dates in the three forms a recipient must
 * accept (5.6.7), the preconditions in the order of 13.2.2, and If-Range
 * (13.1.5).
 *
 * Pure functions over header values (not NUL-terminated) and the
 * validators of the selected representation, so each rule is tested
 * without a server. */
#ifndef EVICORN_HTTP_COND_H
#define EVICORN_HTTP_COND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Longest entity-tag http_etag_format writes, quotes included. */
#define HTTP_ETAG_MAX 72

/* A strong entity-tag for a file: "<inode>-<length>-<mtime ns>" in hex,
 * with "-<offset>" when the representation starts inside the file. Any
 * change of content through write(2) or rename(2) changes the mtime or
 * the inode, so the tag changes with it. Returns the length written to
 * out (at least HTTP_ETAG_MAX bytes); out is NUL-terminated. */
size_t http_etag_format(char *out, uint64_t inode, uint64_t length, int64_t mtime_ns,
                        uint64_t offset);

/* Whether a list of entity-tags (If-Match, If-None-Match) matches etag (a
 * strong tag, quotes included). "*" matches. strong: the strong comparison
 * (a weak tag on either side never matches), else the weak one (opaque
 * parts equal). A malformed element ends the list: what follows does not
 * match. */
bool http_etag_list_match(const char *list, size_t len, const char *etag, size_t etag_len,
                          bool strong);

/* Parses an HTTP-date: IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"),
 * RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT", a two-digit year more than
 * 50 years ahead of now being the past century's) or asctime ("Sun Nov  6
 * 08:49:37 1994"). 0 with *out set, or -1 when invalid. */
int http_date_parse(const char *s, size_t len, time_t now, time_t *out);

/* What the preconditions say. */
enum http_cond_result {
    HTTP_COND_PROCEED,      /* answer as if unconditional */
    HTTP_COND_NOT_MODIFIED, /* 304 */
    HTTP_COND_FAILED,       /* 412 */
};

/* The selected representation's validators. */
struct http_validators {
    const char *etag; /* strong, quotes included; NULL: none */
    size_t etag_len;
    time_t last_modified; /* seconds; < 0: none */
};

/* The request's precondition headers: NULL when absent. */
struct http_preconditions {
    const char *if_match, *if_none_match, *if_modified_since, *if_unmodified_since;
    size_t if_match_len, if_none_match_len, if_modified_since_len, if_unmodified_since_len;
};

/* RFC 9110 13.2.2: If-Match (strong), else If-Unmodified-Since; then
 * If-None-Match (weak; 304 for GET and HEAD, else 412), else, for GET and
 * HEAD only, If-Modified-Since. An invalid date is ignored. */
enum http_cond_result http_preconditions_eval(const struct http_preconditions *p,
                                              const struct http_validators *v, bool get_or_head,
                                              time_t now);

/* Whether If-Range's value lets a Range apply (13.1.5): an entity-tag that
 * strongly matches, or a date exactly equal to Last-Modified when that is
 * a strong validator (mtime_ns at least one second before now_ns). */
bool http_if_range_holds(const char *value, size_t len, const struct http_validators *v,
                         int64_t mtime_ns, int64_t now_ns);

#endif
