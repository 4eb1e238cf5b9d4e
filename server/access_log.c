/* access_log: --access-log-format templates and JSON lines; see
 * access_log.h. */
#include "access_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json.h"

/* A line being written: it stops growing at cap - 1, keeping room for the
 * final newline. */
struct line {
    char *p;
    size_t len, cap;
};

static void put(struct line *l, const char *s, size_t n)
{
    size_t room = l->cap - 1 - l->len;
    if (n > room)
        n = room;
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void put_str(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

static void putf(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct line *l, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(l, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static const char hex[] = "0123456789abcdef";

/* Bytes of one client-chosen value kept: lines stay bounded whatever the
 * head holds (ACCESS_LINE_MAX fits the worst case, every byte escaped). */
#define VALUE_MAX 1024

/* A client's bytes in a template: printable ASCII as is, but for " and \,
 * which with the rest become \xHH; "-" for nothing. */
static void put_text(struct line *l, const char *s, size_t n)
{
    if (!s || n == 0) {
        put(l, "-", 1);
        return;
    }
    if (n > VALUE_MAX)
        n = VALUE_MAX;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            put(l, (const char *)&c, 1);
        } else {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            put(l, esc, 4);
        }
    }
}

/* A JSON string (RFC 8259), or null for nothing. Bytes outside ASCII are
 * written as \u00HH (json_escape_byte's ascii_only), so the line is valid
 * JSON whatever the client sent. */
static void put_json(struct line *l, const char *s, size_t n, bool null_if_empty)
{
    if (!s || (n == 0 && null_if_empty)) {
        put(l, "null", 4);
        return;
    }
    if (n > VALUE_MAX)
        n = VALUE_MAX;
    put(l, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        char esc[6];
        put(l, esc, json_escape_byte((unsigned char)s[i], true, esc));
    }
    put(l, "\"", 1);
}

/* The target's path and query. */
static void split_target(const struct access_entry *e, size_t *path_len, const char **query,
                         size_t *query_len)
{
    const char *q = e->target ? memchr(e->target, '?', e->target_len) : NULL;
    *path_len = q ? (size_t)(q - e->target) : e->target_len;
    *query = q ? q + 1 : NULL;
    *query_len = q ? e->target_len - *path_len - 1 : 0;
}

static const char *header_of(const struct access_entry *e, const char *name, size_t *len)
{
    *len = 0;
    return e->header ? e->header(e->header_ud, name, len) : NULL;
}

static void put_client(struct line *l, const struct access_entry *e, bool json)
{
    char who[ADDR_TEXT_MAX];
    addr_text(e->client, who);
    if (json)
        put_json(l, who, strlen(who), false);
    else
        put_str(l, who);
}

/* ---- templates ---- */

/* The atom at fmt (just past "%("): its name and length, or -1 when it is
 * not "name)s". */
static int atom_at(const char *fmt, const char **name, size_t *len)
{
    const char *close = strstr(fmt, ")s");
    if (!close || close == fmt)
        return -1;
    *name = fmt;
    *len = (size_t)(close - fmt);
    return 0;
}

static bool atom_is_header(const char *name, size_t len)
{
    return len >= 4 && name[0] == '{' && name[len - 2] == '}' && name[len - 1] == 'i';
}

static bool atom_known(const char *name, size_t len)
{
    if (atom_is_header(name, len))
        return len > 4 && len - 3 < 64;
    return len == 1 && strchr("hrsbBmUqHtTLDfapR", name[0]);
}

int access_format_check(const char *fmt, char *err, size_t errlen)
{
    if (strcmp(fmt, "json") == 0)
        return 0;
    for (const char *p = fmt; *p; p++) {
        if (*p != '%')
            continue;
        if (p[1] == '%') {
            p++;
            continue;
        }
        const char *name;
        size_t len;
        if (p[1] != '(' || atom_at(p + 2, &name, &len) < 0) {
            snprintf(err, errlen, "--access-log-format: '%%' must start %%(name)s or be %%%%");
            return -1;
        }
        if (!atom_known(name, len)) {
            snprintf(err, errlen, "--access-log-format: unknown field %%(%.*s)s", (int)len, name);
            return -1;
        }
        p = name + len + 1;
    }
    return 0;
}

static void put_time_clf(struct line *l)
{
    time_t now = time(NULL);
    struct tm tm;
    char buf[64];
    gmtime_r(&now, &tm);
    size_t n = strftime(buf, sizeof buf, "[%d/%b/%Y:%H:%M:%S +0000]", &tm);
    put(l, buf, n);
}

static void put_atom(struct line *l, const struct access_entry *e, const char *name, size_t len)
{
    size_t path_len, query_len, hl;
    const char *query, *h;
    split_target(e, &path_len, &query, &query_len);
    if (atom_is_header(name, len)) {
        char lower[64];
        size_t n = len - 3;
        for (size_t i = 0; i < n; i++) {
            char c = name[1 + i];
            lower[i] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
        }
        lower[n] = '\0';
        h = header_of(e, lower, &hl);
        put_text(l, h, hl);
        return;
    }
    switch (name[0]) {
    case 'h':
        put_client(l, e, false);
        break;
    case 'r':
        if (!e->method) {
            put(l, "-", 1);
            break;
        }
        put_text(l, e->method, e->method_len);
        put(l, " ", 1);
        put_text(l, e->target, e->target_len);
        putf(l, " HTTP/1.%d", e->http_minor);
        break;
    case 's':
        putf(l, "%d", e->status);
        break;
    case 'b':
        if (e->bytes)
            putf(l, "%llu", (unsigned long long)e->bytes);
        else
            put(l, "-", 1);
        break;
    case 'B':
        putf(l, "%llu", (unsigned long long)e->bytes);
        break;
    case 'm':
        put_text(l, e->method, e->method_len);
        break;
    case 'U':
        put_text(l, e->target, path_len);
        break;
    case 'q':
        put_text(l, query, query_len);
        break;
    case 'H':
        putf(l, "HTTP/1.%d", e->http_minor);
        break;
    case 't':
        put_time_clf(l);
        break;
    case 'T':
        putf(l, "%lld", (long long)e->duration);
        break;
    case 'L':
        putf(l, "%.6f", e->duration);
        break;
    case 'D':
        putf(l, "%lld", (long long)(e->duration * 1e6));
        break;
    case 'f':
        h = header_of(e, "referer", &hl);
        put_text(l, h, hl);
        break;
    case 'a':
        h = header_of(e, "user-agent", &hl);
        put_text(l, h, hl);
        break;
    case 'p':
        putf(l, "%d", (int)getpid());
        break;
    case 'R':
        put_text(l, e->route, e->route ? strlen(e->route) : 0);
        break;
    }
}

static void render_template(struct line *l, const char *fmt, const struct access_entry *e)
{
    for (const char *p = fmt; *p; p++) {
        const char *name;
        size_t len;
        if (*p == '%' && p[1] == '%') {
            put(l, "%", 1);
            p++;
        } else if (*p == '%' && p[1] == '(' && atom_at(p + 2, &name, &len) == 0) {
            put_atom(l, e, name, len);
            p = name + len + 1;
        } else {
            put(l, p, 1);
        }
    }
}

/* ---- JSON lines ---- */

static void render_json(struct line *l, const struct access_entry *e)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);
    size_t path_len, query_len, hl;
    const char *query, *h;
    split_target(e, &path_len, &query, &query_len);
    putf(l, "{\"time\":\"%s\",\"client\":", when);
    put_client(l, e, true);
    put_str(l, ",\"method\":");
    put_json(l, e->method, e->method_len, true);
    put_str(l, ",\"path\":");
    put_json(l, e->target, path_len, true);
    put_str(l, ",\"query\":");
    put_json(l, query, query_len, false);
    putf(l, ",\"protocol\":\"HTTP/1.%d\",\"status\":%d,\"bytes\":%llu,\"duration\":%.6f",
         e->http_minor, e->status, (unsigned long long)e->bytes, e->duration);
    put_str(l, ",\"route\":");
    put_json(l, e->route, e->route ? strlen(e->route) : 0, true);
    put_str(l, ",\"user_agent\":");
    h = header_of(e, "user-agent", &hl);
    put_json(l, h, hl, false);
    put_str(l, ",\"referer\":");
    h = header_of(e, "referer", &hl);
    put_json(l, h, hl, false);
    putf(l, ",\"worker\":%d}", (int)getpid());
}

size_t access_format_render(const char *fmt, const struct access_entry *e, char *out, size_t cap)
{
    struct line l = {.p = out, .cap = cap};
    if (cap < 2)
        return 0;
    if (strcmp(fmt, "json") == 0)
        render_json(&l, e);
    else
        render_template(&l, fmt, e);
    out[l.len++] = '\n';
    return l.len;
}
