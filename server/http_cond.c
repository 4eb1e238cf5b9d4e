/* http_cond: entity-tags, HTTP-dates and preconditions; see http_cond.h. */
#include "http_cond.h"

#include <stdio.h>
#include <string.h>

size_t http_etag_format(char *out, uint64_t inode, uint64_t length, int64_t mtime_ns,
                        uint64_t offset)
{
    int n;
    if (offset)
        n = snprintf(out, HTTP_ETAG_MAX, "\"%llx-%llx-%llx-%llx\"", (unsigned long long)inode,
                     (unsigned long long)length, (unsigned long long)mtime_ns,
                     (unsigned long long)offset);
    else
        n = snprintf(out, HTTP_ETAG_MAX, "\"%llx-%llx-%llx\"", (unsigned long long)inode,
                     (unsigned long long)length, (unsigned long long)mtime_ns);
    return n < 0 ? 0 : (size_t)n;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* etagc: %x21 / %x23-7E / obs-text (RFC 9110 8.8.3). */
static bool is_etagc(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c != 0x7f);
}

/* Reads one entity-tag at s[*i]: its opaque part (quotes included) and
 * whether it is weak. -1 when malformed. */
static int read_etag(const char *s, size_t len, size_t *i, const char **opaque, size_t *olen,
                     bool *weak)
{
    size_t k = *i;
    *weak = false;
    if (k + 1 < len && s[k] == 'W' && s[k + 1] == '/') {
        *weak = true;
        k += 2;
    }
    if (k >= len || s[k] != '"')
        return -1;
    size_t start = k++;
    while (k < len && is_etagc((unsigned char)s[k]))
        k++;
    if (k >= len || s[k] != '"')
        return -1;
    k++;
    *opaque = s + start;
    *olen = k - start;
    *i = k;
    return 0;
}

bool http_etag_list_match(const char *list, size_t len, const char *etag, size_t etag_len,
                          bool strong)
{
    size_t i = 0;
    while (i < len && is_ows(list[i]))
        i++;
    size_t end = len;
    while (end > i && is_ows(list[end - 1]))
        end--;
    if (end - i == 1 && list[i] == '*')
        return etag != NULL;
    if (!etag)
        return false;
    while (i < end) {
        /* #entity-tag: empty elements and OWS around commas allowed. */
        if (list[i] == ',' || is_ows(list[i])) {
            i++;
            continue;
        }
        const char *opaque;
        size_t olen;
        bool weak;
        if (read_etag(list, end, &i, &opaque, &olen, &weak) < 0)
            return false;
        if (olen == etag_len && memcmp(opaque, etag, olen) == 0 && !(strong && weak))
            return true;
        while (i < end && is_ows(list[i]))
            i++;
        if (i < end && list[i] != ',')
            return false;
    }
    return false;
}

/* ---- HTTP-date ---- */

static const char month_names[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char day_names[7][4] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const long_day_names[7] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                              "Friday", "Saturday", "Sunday"};

static int month_of(const char *s)
{
    for (int m = 0; m < 12; m++)
        if (memcmp(s, month_names[m], 3) == 0)
            return m;
    return -1;
}

/* n decimal digits at s; -1 when any is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* "HH:MM:SS" at s. */
static int read_time(const char *s, int *h, int *m, int *sec)
{
    if (s[2] != ':' || s[5] != ':')
        return -1;
    *h = digits(s, 2);
    *m = digits(s + 3, 2);
    *sec = digits(s + 6, 2);
    /* 60: a leap second, which timegm folds into the next minute. */
    return *h < 0 || *h > 23 || *m < 0 || *m > 59 || *sec < 0 || *sec > 60 ? -1 : 0;
}

static bool leap_year(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int make_time(int year, int mon, int day, int h, int m, int s, time_t *out)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (year < 1900 || mon < 0 || day < 1 ||
        day > mdays[mon] + (mon == 1 && leap_year(year) ? 1 : 0))
        return -1;
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = mon,
                    .tm_mday = day,
                    .tm_hour = h,
                    .tm_min = m,
                    .tm_sec = s};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *out = t;
    return 0;
}

static int day_name_len(const char *s, size_t len, bool long_form)
{
    for (int d = 0; d < 7; d++) {
        const char *name = long_form ? long_day_names[d] : day_names[d];
        size_t n = strlen(name);
        if (len >= n && memcmp(s, name, n) == 0)
            return (int)n;
    }
    return -1;
}

int http_date_parse(const char *s, size_t len, time_t now, time_t *out)
{
    int h, m, sec;
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (len == 29 && day_name_len(s, len, false) == 3 && s[3] == ',' && s[4] == ' ' &&
        s[7] == ' ' && s[11] == ' ' && s[16] == ' ' && memcmp(s + 25, " GMT", 4) == 0) {
        int day = digits(s + 5, 2), mon = month_of(s + 8), year = digits(s + 12, 4);
        if (day < 0 || year < 0 || read_time(s + 17, &h, &m, &sec) < 0)
            return -1;
        return make_time(year, mon, day, h, m, sec, out);
    }
    /* asctime: "Sun Nov  6 08:49:37 1994" (the day padded with a space) */
    if (len == 24 && day_name_len(s, len, false) == 3 && s[3] == ' ' && s[7] == ' ' &&
        s[10] == ' ' && s[19] == ' ') {
        int mon = month_of(s + 4);
        int day = s[8] == ' ' ? digits(s + 9, 1) : digits(s + 8, 2);
        int year = digits(s + 20, 4);
        if (day < 0 || year < 0 || read_time(s + 11, &h, &m, &sec) < 0)
            return -1;
        return make_time(year, mon, day, h, m, sec, out);
    }
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    int dn = day_name_len(s, len, true);
    if (dn < 0 || len != (size_t)dn + 24)
        return -1;
    const char *p = s + dn;
    if (p[0] != ',' || p[1] != ' ' || p[4] != '-' || p[8] != '-' || p[11] != ' ' ||
        memcmp(p + 20, " GMT", 4) != 0)
        return -1;
    int day = digits(p + 2, 2), mon = month_of(p + 5), yy = digits(p + 9, 2);
    if (day < 0 || yy < 0 || read_time(p + 12, &h, &m, &sec) < 0)
        return -1;
    /* RFC 9110 5.6.7: a two-digit year more than 50 years in the future
     * is the most recent past year with those digits. */
    struct tm nowtm;
    int this_year = gmtime_r(&now, &nowtm) ? nowtm.tm_year + 1900 : 1970;
    int year = this_year - this_year % 100 + yy;
    if (year > this_year + 50)
        year -= 100;
    return make_time(year, mon, day, h, m, sec, out);
}

/* ---- preconditions ---- */

static bool date_header(const char *v, size_t len, time_t now, time_t *out)
{
    if (!v)
        return false;
    while (len && is_ows(*v))
        v++, len--;
    while (len && is_ows(v[len - 1]))
        len--;
    return http_date_parse(v, len, now, out) == 0;
}

enum http_cond_result http_preconditions_eval(const struct http_preconditions *p,
                                              const struct http_validators *v, bool get_or_head,
                                              time_t now)
{
    time_t t;
    /* Step 1 and 2: the client's idea of the current state. */
    if (p->if_match) {
        if (!http_etag_list_match(p->if_match, p->if_match_len, v->etag, v->etag_len, true))
            return HTTP_COND_FAILED;
    } else if (v->last_modified >= 0 &&
               date_header(p->if_unmodified_since, p->if_unmodified_since_len, now, &t)) {
        if (v->last_modified > t)
            return HTTP_COND_FAILED;
    }
    /* Step 3 and 4: whether the client's cached copy is still good. */
    if (p->if_none_match) {
        if (http_etag_list_match(p->if_none_match, p->if_none_match_len, v->etag, v->etag_len,
                                 false))
            return get_or_head ? HTTP_COND_NOT_MODIFIED : HTTP_COND_FAILED;
    } else if (get_or_head && v->last_modified >= 0 &&
               date_header(p->if_modified_since, p->if_modified_since_len, now, &t)) {
        if (v->last_modified <= t)
            return HTTP_COND_NOT_MODIFIED;
    }
    return HTTP_COND_PROCEED;
}

bool http_if_range_holds(const char *value, size_t len, const struct http_validators *v,
                         int64_t mtime_ns, int64_t now_ns)
{
    while (len && is_ows(*value))
        value++, len--;
    while (len && is_ows(value[len - 1]))
        len--;
    if (len && (value[0] == '"' || (len > 1 && value[0] == 'W' && value[1] == '/'))) {
        /* Exactly one entity-tag, compared strongly. */
        size_t i = 0;
        const char *opaque;
        size_t olen;
        bool weak;
        if (read_etag(value, len, &i, &opaque, &olen, &weak) < 0 || i != len || weak || !v->etag)
            return false;
        return olen == v->etag_len && memcmp(opaque, v->etag, olen) == 0;
    }
    time_t t;
    if (v->last_modified < 0 || http_date_parse(value, len, (time_t)(now_ns / 1000000000), &t) < 0)
        return false;
    return t == v->last_modified && now_ns - mtime_ns >= 1000000000;
}
