/* json_out: jansson values written the way FastAPI writes them.
 *
 * Starlette's JSONResponse is json.dumps(v, ensure_ascii=False,
 * allow_nan=False, separators=(",", ":")). jansson's own dumper differs in
 * two visible ways: it prints doubles with %.17g (0.1 comes out as
 * 0.10000000000000001) and escapes a few characters differently. So we
 * walk the tree ourselves; it is short, and clients comparing bodies with
 * a FastAPI service see the same bytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Python's float repr: the shortest digit string that reads back as the
 * same double, written in fixed notation when the decimal exponent is in
 * [-4, 16) and as d.ddde+XX otherwise. We find the shortest precision by
 * trying %.Ne from 1 to 17 digits; glibc rounds correctly, so the first
 * one that round-trips has the digits Python's dtoa would pick. */
void sdk_float_repr(double v, char *out, size_t size)
{
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    /* tmp is [-]d[.ddd]e[+-]XX */
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg)
        p++;
    char digits[20];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.')
            digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;

    char res[48];
    size_t n = 0;
    if (neg)
        res[n++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            res[n++] = '0';
            res[n++] = '.';
            for (int i = -1; i > exp; i--)
                res[n++] = '0';
            memcpy(res + n, digits, nd);
            n += nd;
        } else {
            size_t ip = (size_t)exp + 1; /* digits before the point */
            for (size_t i = 0; i < ip; i++)
                res[n++] = i < nd ? digits[i] : '0';
            res[n++] = '.';
            if (nd > ip) {
                memcpy(res + n, digits + ip, nd - ip);
                n += nd - ip;
            } else
                res[n++] = '0';
        }
        res[n] = '\0';
    } else {
        res[n++] = digits[0];
        if (nd > 1) {
            res[n++] = '.';
            memcpy(res + n, digits + 1, nd - 1);
            n += nd - 1;
        }
        snprintf(res + n, sizeof res - n, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    snprintf(out, size, "%s", res);
}

int evicorn_buf_json_string(evicorn_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0;
    evicorn_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        char esc[8];
        size_t elen = 0;
        if (c >= 0x80) {
            size_t n = sdk_utf8_seq(p + i, len - i);
            if (n) {
                i += n;
                continue;
            }
            evicorn_buf_append(b, s + run, i - run);
            evicorn_buf_append(b, "\xEF\xBF\xBD", 3);
            i += sdk_utf8_bad(p + i, len - i);
            run = i;
            continue;
        } else if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c < 0x20) {
            esc[0] = '\\';
            elen = 2;
            switch (c) {
            case '\b':
                esc[1] = 'b';
                break;
            case '\f':
                esc[1] = 'f';
                break;
            case '\n':
                esc[1] = 'n';
                break;
            case '\r':
                esc[1] = 'r';
                break;
            case '\t':
                esc[1] = 't';
                break;
            default:
                memcpy(esc + 1, "u00", 3);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                elen = 6;
            }
        } else {
            i++;
            continue;
        }
        evicorn_buf_append(b, s + run, i - run);
        evicorn_buf_append(b, esc, elen);
        run = ++i;
    }
    evicorn_buf_append(b, s + run, len - run);
    evicorn_buf_append(b, "\"", 1);
    return b->failed ? EVICORN_ENOMEM : 0;
}

static int dump(evicorn_buf *b, const json_t *v, int depth)
{
    if (depth > 2048)
        return EVICORN_EINVAL;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *item;
        bool first = true;
        evicorn_buf_append(b, "{", 1);
        /* jansson keeps insertion order, as Python's dict does. */
        json_object_foreach((json_t *)v, key, item)
        {
            if (!first)
                evicorn_buf_append(b, ",", 1);
            first = false;
            evicorn_buf_json_string(b, key, strlen(key));
            evicorn_buf_append(b, ":", 1);
            int rc = dump(b, item, depth + 1);
            if (rc < 0)
                return rc;
        }
        evicorn_buf_append(b, "}", 1);
        break;
    }
    case JSON_ARRAY:
        evicorn_buf_append(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                evicorn_buf_append(b, ",", 1);
            int rc = dump(b, json_array_get(v, i), depth + 1);
            if (rc < 0)
                return rc;
        }
        evicorn_buf_append(b, "]", 1);
        break;
    case JSON_STRING:
        evicorn_buf_json_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        evicorn_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL: {
        double d = json_real_value(v);
        if (!isfinite(d))
            return EVICORN_EINVAL; /* allow_nan=False */
        char num[48];
        sdk_float_repr(d, num, sizeof num);
        evicorn_buf_puts(b, num);
        break;
    }
    case JSON_TRUE:
        evicorn_buf_append(b, "true", 4);
        break;
    case JSON_FALSE:
        evicorn_buf_append(b, "false", 5);
        break;
    case JSON_NULL:
        evicorn_buf_append(b, "null", 4);
        break;
    }
    return b->failed ? EVICORN_ENOMEM : 0;
}

int evicorn_buf_json(evicorn_buf *b, const json_t *v)
{
    if (!v)
        return EVICORN_EINVAL;
    return dump(b, v, 0);
}
