/* json_in: request bodies parsed as FastAPI parses them.
 *
 * jansson does the parsing. When it refuses a document we rescan it with
 * a small copy of the decision procedure of CPython's json scanner
 * (Modules/_json.c, 3.11), only to find the error Python would report:
 * its message and its position in characters. FastAPI puts those in the
 * 422 ("Expecting ',' delimiter: line 1 column 7 (char 6)"), and clients
 * written against FastAPI match on them. The rescan runs only on bad
 * input, so the cost of doing it twice does not matter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* Deeper than jansson's own limit: past it we report jansson's error. */
#define SCAN_MAX_DEPTH 4096

struct scan {
    const unsigned char *s;
    size_t len;
    const char *msg; /* Python's message, once an error is found */
    size_t pos;      /* its byte offset */
    int depth;
};

static bool scan_fail(struct scan *sc, const char *msg, size_t pos)
{
    sc->msg = msg;
    sc->pos = pos;
    return false;
}

static bool ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const struct scan *sc, size_t i)
{
    while (i < sc->len && ws(sc->s[i]))
        i++;
    return i;
}

static bool digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool hex4(const unsigned char *p)
{
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        if (!digit(c) && !((c | 0x20) >= 'a' && (c | 0x20) <= 'f'))
            return false;
    }
    return true;
}

static unsigned hexval4(const unsigned char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i];
        v = v << 4 | (digit((unsigned char)c) ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* scanstring_unicode: end is just past the opening quote. Positions are
 * byte offsets here; they are turned into characters at the end. Python
 * reads characters where we read bytes, but every byte the rules look at
 * is ASCII, and a multi-byte character is never split by them. */
static bool scan_string(struct scan *sc, size_t end, size_t *next_out)
{
    const unsigned char *s = sc->s;
    size_t len = sc->len, begin = end - 1;
    for (;;) {
        size_t next;
        unsigned char c = 0;
        for (next = end; next < len; next++) {
            c = s[next];
            if (c == '"' || c == '\\')
                break;
            if (c <= 0x1f)
                return scan_fail(sc, "Invalid control character at", next);
        }
        if (next >= len || (c != '"' && c != '\\'))
            return scan_fail(sc, "Unterminated string starting at", begin);
        next++;
        if (c == '"') {
            *next_out = next;
            return true;
        }
        if (next == len)
            return scan_fail(sc, "Unterminated string starting at", begin);
        c = s[next];
        if (c != 'u') {
            end = next + 1;
            if (!strchr("\"\\/bfnrt", c) || c == 0)
                return scan_fail(sc, "Invalid \\escape", end - 2);
            continue;
        }
        next++;
        end = next + 4;
        if (end >= len)
            return scan_fail(sc, "Invalid \\uXXXX escape", next - 1);
        if (!hex4(s + next))
            return scan_fail(sc, "Invalid \\uXXXX escape", end - 5);
        unsigned u = hexval4(s + next);
        next = end;
        if (u >= 0xD800 && u <= 0xDBFF && end + 6 < len && s[next] == '\\' && s[next + 1] == 'u') {
            end += 6;
            if (!hex4(s + next + 2))
                return scan_fail(sc, "Invalid \\uXXXX escape", end - 5);
            unsigned u2 = hexval4(s + next + 2);
            if (!(u2 >= 0xDC00 && u2 <= 0xDFFF))
                end -= 6;
        }
    }
}

/* _match_number_unicode; "Expecting value" is its StopIteration. */
static bool scan_number(struct scan *sc, size_t idx, size_t *next_out)
{
    const unsigned char *s = sc->s;
    size_t start = idx;
    if (sc->len == 0)
        return scan_fail(sc, "Expecting value", start);
    size_t end_idx = sc->len - 1;
    if (s[idx] == '-') {
        idx++;
        if (idx > end_idx)
            return scan_fail(sc, "Expecting value", start);
    }
    if (s[idx] >= '1' && s[idx] <= '9') {
        idx++;
        while (idx <= end_idx && digit(s[idx]))
            idx++;
    } else if (s[idx] == '0') {
        idx++;
    } else {
        return scan_fail(sc, "Expecting value", start);
    }
    if (idx < end_idx && s[idx] == '.' && digit(s[idx + 1])) {
        idx += 2;
        while (idx <= end_idx && digit(s[idx]))
            idx++;
    }
    if (idx < end_idx && (s[idx] == 'e' || s[idx] == 'E')) {
        size_t e_start = idx;
        idx++;
        if (idx < end_idx && (s[idx] == '-' || s[idx] == '+'))
            idx++;
        while (idx <= end_idx && digit(s[idx]))
            idx++;
        if (!digit(s[idx - 1]))
            idx = e_start;
    }
    *next_out = idx;
    return true;
}

static bool scan_value(struct scan *sc, size_t idx, size_t *next_out);

static bool scan_object(struct scan *sc, size_t idx, size_t *next_out)
{
    const unsigned char *s = sc->s;
    size_t len = sc->len;
    idx = skip_ws(sc, idx);
    if (idx >= len || s[idx] != '}') {
        for (;;) {
            if (idx >= len || s[idx] != '"')
                return scan_fail(sc, "Expecting property name enclosed in double quotes", idx);
            if (!scan_string(sc, idx + 1, &idx))
                return false;
            idx = skip_ws(sc, idx);
            if (idx >= len || s[idx] != ':')
                return scan_fail(sc, "Expecting ':' delimiter", idx);
            idx = skip_ws(sc, idx + 1);
            if (!scan_value(sc, idx, &idx))
                return false;
            idx = skip_ws(sc, idx);
            if (idx < len && s[idx] == '}')
                break;
            if (idx >= len || s[idx] != ',')
                return scan_fail(sc, "Expecting ',' delimiter", idx);
            idx = skip_ws(sc, idx + 1);
        }
    }
    *next_out = idx + 1;
    return true;
}

static bool scan_array(struct scan *sc, size_t idx, size_t *next_out)
{
    const unsigned char *s = sc->s;
    size_t len = sc->len;
    idx = skip_ws(sc, idx);
    if (idx >= len || s[idx] != ']') {
        for (;;) {
            if (!scan_value(sc, idx, &idx))
                return false;
            idx = skip_ws(sc, idx);
            if (idx < len && s[idx] == ']')
                break;
            if (idx >= len || s[idx] != ',')
                return scan_fail(sc, "Expecting ',' delimiter", idx);
            idx = skip_ws(sc, idx + 1);
        }
    }
    *next_out = idx + 1;
    return true;
}

static bool word_at(const struct scan *sc, size_t idx, const char *w)
{
    size_t n = strlen(w);
    return idx + n <= sc->len && memcmp(sc->s + idx, w, n) == 0;
}

/* scan_once_unicode. NaN and Infinity, which Python accepts, are refused
 * here as "Expecting value": JSON has no such numbers, and FastAPI could
 * not send them back either. */
static bool scan_value(struct scan *sc, size_t idx, size_t *next_out)
{
    if (idx >= sc->len)
        return scan_fail(sc, "Expecting value", idx);
    bool ok;
    switch (sc->s[idx]) {
    case '"':
        return scan_string(sc, idx + 1, next_out);
    case '{':
    case '[':
        if (++sc->depth > SCAN_MAX_DEPTH)
            return scan_fail(sc, NULL, idx);
        ok = sc->s[idx] == '{' ? scan_object(sc, idx + 1, next_out)
                               : scan_array(sc, idx + 1, next_out);
        sc->depth--;
        return ok;
    case 'n':
        if (word_at(sc, idx, "null")) {
            *next_out = idx + 4;
            return true;
        }
        break;
    case 't':
        if (word_at(sc, idx, "true")) {
            *next_out = idx + 4;
            return true;
        }
        break;
    case 'f':
        if (word_at(sc, idx, "false")) {
            *next_out = idx + 5;
            return true;
        }
        break;
    }
    return scan_number(sc, idx, next_out);
}

/* Python's error for doc, or false when its rules find none (then jansson
 * refused something Python accepts: a huge number, deep nesting). */
static bool python_error(const unsigned char *doc, size_t len, const char **msg, size_t *pos)
{
    struct scan sc = {doc, len, NULL, 0, 0};
    size_t end;
    if (scan_value(&sc, skip_ws(&sc, 0), &end)) {
        end = skip_ws(&sc, end);
        if (end == len)
            return false;
        scan_fail(&sc, "Extra data", end);
    }
    if (!sc.msg)
        return false;
    *msg = sc.msg;
    *pos = sc.pos;
    return true;
}

/* Characters in doc[0..off): UTF-8 lead bytes. */
static size_t char_index(const unsigned char *doc, size_t off)
{
    size_t n = 0;
    for (size_t i = 0; i < off; i++)
        n += (doc[i] & 0xC0) != 0x80;
    return n;
}

/* JSONDecodeError as FastAPI 0.92 reports it: loc ["body", pos], msg
 * "<msg>: line L column C (char P)", ctx {msg, doc, pos, lineno, colno}. */
static void add_decode_error(evicorn_errors *errs, const char *doc, size_t len, const char *msg,
                             size_t off)
{
    const unsigned char *d = (const unsigned char *)doc;
    size_t pos = char_index(d, off), lineno = 1, last_nl = 0;
    bool seen_nl = false;
    for (size_t i = 0; i < off; i++)
        if (d[i] == '\n') {
            lineno++;
            last_nl = i;
            seen_nl = true;
        }
    size_t colno = seen_nl ? pos - char_index(d, last_nl) : pos + 1;
    char full[256];
    snprintf(full, sizeof full, "%s: line %zu column %zu (char %zu)", msg, lineno, colno, pos);
    json_t *loc = json_pack("[sI]", "body", (json_int_t)pos);
    json_t *ctx =
        json_pack("{s:s, s:s%, s:I, s:I, s:I}", "msg", msg, "doc", doc, len, "pos", (json_int_t)pos,
                  "lineno", (json_int_t)lineno, "colno", (json_int_t)colno);
    evicorn_errors_add_json(errs, loc, full, "value_error.jsondecode", ctx);
}

json_t *evicorn_json_parse(const char *data, size_t len, evicorn_errors *errs)
{
    if (len == 0 || !data) {
        evicorn_errors_add(errs, EVICORN_LOC_BODY, NULL, EVICORN_MSG_MISSING, EVICORN_TYPE_MISSING);
        return NULL;
    }
    /* json.loads(bytes) decodes with utf-8-sig: one BOM is dropped. */
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) {
        data += 3;
        len -= 3;
    }
    if (!sdk_utf8_valid(data, len)) {
        evicorn_errors_fail(errs, 400, "There was an error parsing the body");
        return NULL;
    }
    const size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_error_t jerr;
    json_t *v = json_loadb(data, len, flags, &jerr);
    if (!v && json_error_code(&jerr) == json_error_numeric_overflow)
        v = json_loadb(data, len, flags | JSON_DECODE_INT_AS_REAL, &jerr);
    if (v)
        return v;
    if (json_error_code(&jerr) == json_error_out_of_memory) {
        evicorn_errors_fail(errs, 500, "Internal Server Error");
        return NULL;
    }
    const char *msg;
    size_t off;
    if (!python_error((const unsigned char *)data, len, &msg, &off)) {
        msg = jerr.text;
        off = jerr.position > 0 && (size_t)jerr.position <= len ? (size_t)jerr.position : 0;
    }
    add_decode_error(errs, data, len, msg, off);
    return NULL;
}

/* FastAPI reads the body as JSON when there is no Content-Type or it is
 * application/json or application/<x>+json (email.message's rules). */
static bool json_content_type(evicorn_request *req)
{
    evicorn_str ct;
    if (evicorn_sdk_api_->header(req, "content-type", &ct) < 0 || ct.len == 0)
        return true;
    const char *p = ct.ptr, *end = memchr(ct.ptr, ';', ct.len);
    if (!end)
        end = ct.ptr + ct.len;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    if (!slash || memchr(slash + 1, '/', (size_t)(end - slash - 1)))
        return false; /* not type/subtype: email reads it as text/plain */
    size_t sub = (size_t)(end - slash - 1);
    if ((size_t)(slash - p) != 11 || strncasecmp(p, "application", 11) != 0)
        return false;
    return (sub == 4 && strncasecmp(slash + 1, "json", 4) == 0) ||
           (sub >= 5 && strncasecmp(end - 5, "+json", 5) == 0);
}

json_t *evicorn_json_body(evicorn_request *req, evicorn_errors *errs)
{
    evicorn_str body = evicorn_sdk_api_->body(req);
    if (body.len == 0 || json_content_type(req))
        return evicorn_json_parse(body.ptr, body.len, errs);
    /* FastAPI passes the bytes on; they then fail any model or dict. */
    evicorn_buf b = EVICORN_BUF_INIT;
    sdk_buf_utf8_lossy(&b, body.ptr, body.len);
    json_t *v = b.failed ? NULL : json_stringn(b.data, b.len);
    evicorn_buf_free(&b);
    if (!v)
        evicorn_errors_fail(errs, 500, "Internal Server Error");
    return v;
}

int evicorn_json_expect_object(const json_t *v, evicorn_errors *errs)
{
    if (json_is_object(v))
        return 0;
    if (v)
        evicorn_errors_add(errs, EVICORN_LOC_BODY, NULL, EVICORN_MSG_DICT, EVICORN_TYPE_DICT);
    return -1;
}

int evicorn_json_to_float(const json_t *v, const json_t *loc, double *out, evicorn_errors *errs)
{
    const char *msg = EVICORN_MSG_FLOAT, *type = EVICORN_TYPE_FLOAT;
    if (!v) {
        msg = EVICORN_MSG_MISSING;
        type = EVICORN_TYPE_MISSING;
        goto fail;
    }
    switch (json_typeof(v)) {
    case JSON_INTEGER:
    case JSON_REAL:
        *out = json_number_value(v);
        return 0;
    case JSON_TRUE:
        *out = 1;
        return 0;
    case JSON_FALSE:
        *out = 0;
        return 0;
    case JSON_STRING:
        if (evicorn_parse_float(json_string_value(v), json_string_length(v), out) == 0)
            return 0;
        break;
    case JSON_NULL:
        msg = EVICORN_MSG_NONE;
        type = EVICORN_TYPE_NONE;
        break;
    default:
        break;
    }
fail:
    evicorn_errors_add_json(errs, loc ? json_deep_copy(loc) : json_array(), msg, type, NULL);
    return -1;
}
