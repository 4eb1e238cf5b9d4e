/* http_accept: Accept-Encoding q-values; see http_accept.h. */
#include "http_accept.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in
 * thousandths; -1 when invalid. */
static int parse_qvalue(const char *s, size_t len)
{
    if (len == 0 || (s[0] != '0' && s[0] != '1'))
        return -1;
    int q = (s[0] - '0') * 1000;
    if (len == 1)
        return q;
    if (s[1] != '.' || len > 5)
        return -1;
    int scale = 100;
    for (size_t i = 2; i < len; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        q += (s[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

/* The q-value of one element's parameters (";q=0.5"): 1000 without one,
 * -1 when malformed. */
static int element_q(const char *p, size_t len)
{
    int q = 1000;
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(p[i]) || p[i] == ';'))
            i++;
        size_t start = i;
        while (i < len && p[i] != ';')
            i++;
        size_t end = i;
        while (end > start && is_ows(p[end - 1]))
            end--;
        if (end == start)
            continue;
        const char *eq = memchr(p + start, '=', end - start);
        if (!eq)
            return -1;
        size_t nlen = (size_t)(eq - (p + start));
        while (nlen && is_ows(p[start + nlen - 1]))
            nlen--;
        const char *v = eq + 1;
        size_t vlen = (size_t)(p + end - v);
        while (vlen && is_ows(*v))
            v++, vlen--;
        if (nlen == 1 && (p[start] == 'q' || p[start] == 'Q')) {
            q = parse_qvalue(v, vlen);
            if (q < 0)
                return -1;
        }
    }
    return q;
}

static bool coding_is(const char *s, size_t len, const char *coding)
{
    size_t n = strlen(coding);
    if (len == n && strncasecmp(s, coding, n) == 0)
        return true;
    return strcmp(coding, "gzip") == 0 && len == 6 && strncasecmp(s, "x-gzip", 6) == 0;
}

int http_accept_encoding_q(const char *value, size_t len, const char *coding)
{
    int own = -1, any = -1;
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(value[i]) || value[i] == ','))
            i++;
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        size_t end = i;
        if (end == start)
            continue;
        size_t name_end = start;
        while (name_end < end && value[name_end] != ';' && !is_ows(value[name_end]))
            name_end++;
        int q = element_q(value + name_end, end - name_end);
        if (q < 0)
            continue;
        if (coding_is(value + start, name_end - start, coding))
            own = own < q ? q : own; /* the most favourable of repeated elements */
        else if (name_end - start == 1 && value[start] == '*')
            any = q;
    }
    return own >= 0 ? own : any;
}

size_t http_accept_encoding_order(const char *value, size_t len,
                                  enum http_coding order[HTTP_CODINGS])
{
    if (!value) {
        order[0] = HTTP_CODING_IDENTITY;
        return 1;
    }
    static const char *const names[HTTP_CODINGS] = {"br", "gzip", "identity"};
    int q[HTTP_CODINGS];
    for (int c = 0; c < HTTP_CODINGS; c++)
        q[c] = http_accept_encoding_q(value, len, names[c]);
    if (q[HTTP_CODING_BR] < 0)
        q[HTTP_CODING_BR] = 0;
    if (q[HTTP_CODING_GZIP] < 0)
        q[HTTP_CODING_GZIP] = 0;
    /* identity is acceptable unless excluded (12.5.3); unranked, it comes
     * after every coding the client named. */
    if (q[HTTP_CODING_IDENTITY] < 0)
        q[HTTP_CODING_IDENTITY] = 1;
    size_t n = 0;
    for (int c = 0; c < HTTP_CODINGS; c++) {
        if (q[c] == 0)
            continue;
        size_t k = n++;
        /* Insertion by q, stable: a tie keeps the enum's order. */
        while (k > 0 && q[order[k - 1]] < q[c]) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = (enum http_coding)c;
    }
    return n;
}
