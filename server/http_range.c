/* http_range: the bytes Range header; see http_range.h. */
#include "http_range.h"

#include <stdbool.h>
#include <strings.h>

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* 1*DIGIT at s[*i], saturating at UINT64_MAX; -1 when there is none. */
static int read_u64(const char *s, size_t len, size_t *i, uint64_t *out)
{
    size_t k = *i;
    uint64_t v = 0;
    if (k >= len || !is_digit(s[k]))
        return -1;
    for (; k < len && is_digit(s[k]); k++) {
        unsigned d = (unsigned)(s[k] - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *i = k;
    *out = v;
    return 0;
}

enum http_range_result http_range_parse(const char *value, size_t len, uint64_t size,
                                        struct http_range *out, size_t *n)
{
    *n = 0;
    size_t i = 0;
    while (i < len && is_ows(value[i]))
        i++;
    /* range-unit "=" range-set; the unit is case-insensitive. */
    if (len - i < 6 || strncasecmp(value + i, "bytes=", 6) != 0)
        return HTTP_RANGE_IGNORE;
    i += 6;
    if (size == 0)
        return HTTP_RANGE_IGNORE;
    size_t specs = 0;
    uint64_t total = 0;
    while (i < len) {
        /* 1#range-spec: empty elements and OWS around commas allowed. */
        if (value[i] == ',' || is_ows(value[i])) {
            i++;
            continue;
        }
        uint64_t first, last;
        bool satisfiable;
        if (value[i] == '-') {
            /* suffix-range: the last n bytes; 0 asks for nothing. */
            i++;
            uint64_t suffix;
            if (read_u64(value, len, &i, &suffix) < 0)
                return HTTP_RANGE_IGNORE;
            satisfiable = suffix > 0;
            first = suffix >= size ? 0 : size - suffix;
            last = size - 1;
        } else {
            if (read_u64(value, len, &i, &first) < 0 || i >= len || value[i] != '-')
                return HTTP_RANGE_IGNORE;
            i++;
            last = UINT64_MAX;
            if (i < len && is_digit(value[i])) {
                read_u64(value, len, &i, &last);
                if (last < first)
                    return HTTP_RANGE_IGNORE; /* an invalid int-range */
            }
            satisfiable = first < size;
            if (last >= size)
                last = size - 1;
        }
        while (i < len && is_ows(value[i]))
            i++;
        if (i < len && value[i] != ',')
            return HTTP_RANGE_IGNORE;
        if (++specs > HTTP_RANGES_MAX)
            return HTTP_RANGE_IGNORE;
        if (!satisfiable)
            continue;
        total += last - first + 1; /* at most size per range: no overflow in 16 */
        if (total > size)
            return HTTP_RANGE_IGNORE;
        out[(*n)++] = (struct http_range){first, last};
    }
    if (specs == 0)
        return HTTP_RANGE_IGNORE; /* "bytes=" with no range-spec is invalid */
    return *n ? HTTP_RANGE_OK : HTTP_RANGE_UNSATISFIABLE;
}
