/* params: path and query parameters, converted as FastAPI converts them.
 *
 * FastAPI hands parameter strings to pydantic 1, whose int and float
 * validators are Python's int() and float(); the query string is parsed by
 * urllib's parse_qsl(keep_blank_values=True) and read through a dict, so
 * the last of repeated names wins. We follow those rules so a client sees
 * the same 200s and 422s as from the FastAPI service the plugin replaces.
 * Known limit: Python also accepts non-ASCII digits and whitespace. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* ---- conversions ---- */

/* str.strip()'s ASCII whitespace: Python counts 0x1c..0x1f too. */
static bool py_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static void strip(const char **s, size_t *len)
{
    while (*len && py_space((unsigned char)**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && py_space((unsigned char)(*s)[*len - 1]))
        (*len)--;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Copies a run of digits with single '_' between them (PEP 515) into out,
 * without the underscores. Returns how many bytes of s it used (0 when s
 * does not start with a digit), or -1 on a misplaced underscore. */
static long digits_run(const char *s, size_t len, char *out, size_t *outlen, size_t outcap)
{
    size_t i = 0;
    if (i >= len || !is_digit(s[i]))
        return 0;
    while (i < len) {
        if (is_digit(s[i])) {
            if (*outlen + 1 >= outcap)
                return -1;
            out[(*outlen)++] = s[i++];
        } else if (s[i] == '_' && i + 1 < len && is_digit(s[i + 1])) {
            i++;
        } else if (s[i] == '_') {
            return -1;
        } else {
            break;
        }
    }
    return (long)i;
}

int evicorn_parse_int(const char *s, size_t len, long long *out)
{
    char clean[64];
    size_t n = 0;
    strip(&s, &len);
    if (len && (*s == '+' || *s == '-')) {
        clean[n++] = *s;
        s++;
        len--;
    }
    long used = digits_run(s, len, clean, &n, sizeof clean);
    if (used <= 0 || (size_t)used != len)
        return -1;
    clean[n] = '\0';
    errno = 0;
    char *end;
    long long v = strtoll(clean, &end, 10);
    if (errno == ERANGE || *end)
        return -1;
    *out = v;
    return 0;
}

static bool word_is(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

int evicorn_parse_float(const char *s, size_t len, double *out)
{
    char clean[512];
    size_t n = 0;
    strip(&s, &len);
    if (len == 0)
        return -1;
    bool neg = false;
    if (*s == '+' || *s == '-') {
        neg = *s == '-';
        clean[n++] = *s;
        s++;
        len--;
    }
    if (word_is(s, len, "inf") || word_is(s, len, "infinity")) {
        *out = neg ? -INFINITY : INFINITY;
        return 0;
    }
    if (word_is(s, len, "nan")) {
        *out = NAN;
        return 0;
    }
    size_t i = 0;
    long used = digits_run(s, len, clean, &n, sizeof clean);
    if (used < 0)
        return -1;
    bool any = used > 0;
    i += (size_t)used;
    if (i < len && s[i] == '.') {
        clean[n++] = '.';
        i++;
        used = digits_run(s + i, len - i, clean, &n, sizeof clean);
        if (used < 0)
            return -1;
        any = any || used > 0;
        i += (size_t)used;
    }
    if (!any)
        return -1;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        clean[n++] = 'e';
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            clean[n++] = s[i++];
        used = digits_run(s + i, len - i, clean, &n, sizeof clean);
        if (used <= 0)
            return -1;
        i += (size_t)used;
    }
    if (i != len || n >= sizeof clean)
        return -1;
    clean[n] = '\0';
    /* Only [sign]digits[.digits][e[sign]digits] reaches strtod: no hex
     * floats. Overflow gives +-inf, as Python's float() does. */
    *out = strtod(clean, NULL);
    return 0;
}

int evicorn_parse_bool(const char *s, size_t len, int *out)
{
    static const char *const yes[] = {"1", "on", "t", "true", "y", "yes"};
    static const char *const no[] = {"0", "off", "f", "false", "n", "no"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (word_is(s, len, yes[i])) {
            *out = 1;
            return 0;
        }
        if (word_is(s, len, no[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* ---- path parameters ---- */

static int path_value(evicorn_request *req, const char *name, evicorn_str *v, evicorn_errors *errs)
{
    if (evicorn_sdk_api_->param(req, name, v) == 0)
        return 0;
    evicorn_errors_add(errs, EVICORN_LOC_PATH, name, EVICORN_MSG_MISSING, EVICORN_TYPE_MISSING);
    *v = (evicorn_str){"", 0};
    return -1;
}

evicorn_str evicorn_path_str(evicorn_request *req, const char *name, evicorn_errors *errs)
{
    evicorn_str v;
    path_value(req, name, &v, errs);
    return v;
}

long long evicorn_path_int(evicorn_request *req, const char *name, evicorn_errors *errs)
{
    evicorn_str v;
    long long out = 0;
    if (path_value(req, name, &v, errs) == 0 && evicorn_parse_int(v.ptr, v.len, &out) < 0) {
        evicorn_errors_add(errs, EVICORN_LOC_PATH, name, EVICORN_MSG_INT, EVICORN_TYPE_INT);
        out = 0;
    }
    return out;
}

double evicorn_path_float(evicorn_request *req, const char *name, evicorn_errors *errs)
{
    evicorn_str v;
    double out = 0;
    if (path_value(req, name, &v, errs) == 0 && evicorn_parse_float(v.ptr, v.len, &out) < 0) {
        evicorn_errors_add(errs, EVICORN_LOC_PATH, name, EVICORN_MSG_FLOAT, EVICORN_TYPE_FLOAT);
        out = 0;
    }
    return out;
}

/* ---- query parameters ---- */

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t sdk_pct_decode(const char *s, size_t len, bool plus_is_space, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int hi, lo;
        if (c == '+' && plus_is_space)
            out[n++] = ' ';
        else if (c == '%' && i + 2 < len && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
                 (lo = hexval((unsigned char)s[i + 2])) >= 0) {
            out[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else
            out[n++] = (char)c;
    }
    return n;
}

char *evicorn_url_decode(const char *s, size_t len, size_t *outlen)
{
    char *raw = malloc(len + 1);
    if (!raw)
        return NULL;
    size_t n = sdk_pct_decode(s, len, true, raw);
    if (sdk_utf8_valid(raw, n)) {
        raw[n] = '\0';
        if (outlen)
            *outlen = n;
        return raw;
    }
    evicorn_buf b = EVICORN_BUF_INIT;
    sdk_buf_utf8_lossy(&b, raw, n);
    free(raw);
    if (b.failed) {
        evicorn_buf_free(&b);
        return NULL;
    }
    if (outlen)
        *outlen = b.len;
    return b.data;
}

/* Whether the encoded name s[0..len) decodes to `name`. */
static bool name_matches(const char *s, size_t len, const char *name)
{
    size_t want = strlen(name);
    if (len < want)
        return false; /* decoding never lengthens */
    char small[256];
    char *buf = len <= sizeof small ? small : malloc(len);
    if (!buf)
        return false;
    size_t n = sdk_pct_decode(s, len, true, buf);
    bool eq = n == want && memcmp(buf, name, n) == 0;
    if (!eq && n >= want && !sdk_utf8_valid(buf, n)) {
        /* a name with invalid UTF-8 is compared as Python sees it */
        char *lossy = evicorn_url_decode(s, len, &n);
        eq = lossy && n == want && memcmp(lossy, name, n) == 0;
        free(lossy);
    }
    if (buf != small)
        free(buf);
    return eq;
}

/* Calls fn for every value of `name` in the query string, in order. */
static void query_each(evicorn_request *req, const char *name,
                       void (*fn)(const char *v, size_t len, void *ud), void *ud)
{
    evicorn_str q = evicorn_sdk_api_->query_string(req);
    const char *p = q.ptr, *end = q.ptr + q.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if (stop > p) {
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            const char *nend = eq ? eq : stop;
            if (name_matches(p, (size_t)(nend - p), name)) {
                const char *v = eq ? eq + 1 : stop;
                fn(v, (size_t)(stop - v), ud);
            }
        }
        if (!amp)
            break;
        p = amp + 1;
    }
}

struct last {
    const char *v;
    size_t len;
    bool found;
};

static void keep_last(const char *v, size_t len, void *ud)
{
    struct last *l = ud;
    l->v = v;
    l->len = len;
    l->found = true;
}

static struct last query_last(evicorn_request *req, const char *name)
{
    struct last l = {NULL, 0, false};
    query_each(req, name, keep_last, &l);
    return l;
}

int evicorn_query_has(evicorn_request *req, const char *name)
{
    return query_last(req, name).found;
}

int evicorn_query_require(evicorn_request *req, const char *name, evicorn_errors *errs)
{
    if (evicorn_query_has(req, name))
        return 1;
    evicorn_errors_add(errs, EVICORN_LOC_QUERY, name, EVICORN_MSG_MISSING, EVICORN_TYPE_MISSING);
    return 0;
}

char *evicorn_query_str(evicorn_request *req, const char *name, const char *def,
                        evicorn_errors *errs)
{
    struct last l = query_last(req, name);
    char *out;
    if (!l.found) {
        if (!def)
            return NULL;
        out = strdup(def);
    } else {
        out = evicorn_url_decode(l.v, l.len, NULL);
    }
    if (!out)
        evicorn_errors_fail(errs, 500, "Internal Server Error");
    return out;
}

/* The decoded last value, for a conversion; NULL when absent. */
static char *query_value(evicorn_request *req, const char *name, size_t *len, evicorn_errors *errs)
{
    struct last l = query_last(req, name);
    if (!l.found)
        return NULL;
    char *v = evicorn_url_decode(l.v, l.len, len);
    if (!v)
        evicorn_errors_fail(errs, 500, "Internal Server Error");
    return v;
}

long long evicorn_query_int(evicorn_request *req, const char *name, long long def,
                            evicorn_errors *errs)
{
    size_t len;
    char *v = query_value(req, name, &len, errs);
    if (!v)
        return def;
    long long out = def;
    if (evicorn_parse_int(v, len, &out) < 0) {
        evicorn_errors_add(errs, EVICORN_LOC_QUERY, name, EVICORN_MSG_INT, EVICORN_TYPE_INT);
        out = def;
    }
    free(v);
    return out;
}

double evicorn_query_float(evicorn_request *req, const char *name, double def, evicorn_errors *errs)
{
    size_t len;
    char *v = query_value(req, name, &len, errs);
    if (!v)
        return def;
    double out = def;
    if (evicorn_parse_float(v, len, &out) < 0) {
        evicorn_errors_add(errs, EVICORN_LOC_QUERY, name, EVICORN_MSG_FLOAT, EVICORN_TYPE_FLOAT);
        out = def;
    }
    free(v);
    return out;
}

int evicorn_query_bool(evicorn_request *req, const char *name, int def, evicorn_errors *errs)
{
    size_t len;
    char *v = query_value(req, name, &len, errs);
    if (!v)
        return def ? 1 : 0;
    int out = def ? 1 : 0;
    if (evicorn_parse_bool(v, len, &out) < 0) {
        evicorn_errors_add(errs, EVICORN_LOC_QUERY, name, EVICORN_MSG_BOOL, EVICORN_TYPE_BOOL);
        out = def ? 1 : 0;
    }
    free(v);
    return out;
}

struct list_ctx {
    json_t *arr;
    bool failed;
};

static void add_to_list(const char *v, size_t len, void *ud)
{
    struct list_ctx *c = ud;
    size_t n;
    char *s = evicorn_url_decode(v, len, &n);
    if (!s || json_array_append_new(c->arr, json_stringn(s, n)) < 0)
        c->failed = true;
    free(s);
}

json_t *evicorn_query_list(evicorn_request *req, const char *name)
{
    struct list_ctx c = {json_array(), false};
    if (!c.arr)
        return NULL;
    query_each(req, name, add_to_list, &c);
    if (c.failed) {
        json_decref(c.arr);
        return NULL;
    }
    return c.arr;
}
