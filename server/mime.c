/* mime: extension to media type; see mime.h.
 *
 * The table is two allocations: an arena of NUL-terminated strings (the
 * types, with their charset, and the lower-cased extensions) and an array
 * of entries sorted by extension, searched with bsearch. */
#include "mime.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "log.h"

/* An extension longer than this is no known type's. */
#define EXT_MAX 32

struct mime_entry {
    size_t ext, type; /* offsets into the arena */
    size_t line;      /* the first line wins among equal extensions */
};

struct mime_table {
    struct buf arena;
    struct mime_entry *entries;
    size_t n, cap;
};

static struct mime_table table;
static bool loaded;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* When /etc/mime.types is missing: what a web page is commonly made of. */
static const char builtin_types[] = "text/html html htm\n"
                                    "text/css css\n"
                                    "text/javascript js mjs\n"
                                    "text/plain txt\n"
                                    "application/json json\n"
                                    "application/wasm wasm\n"
                                    "image/png png\n"
                                    "image/jpeg jpg jpeg\n"
                                    "image/gif gif\n"
                                    "image/svg+xml svg\n"
                                    "image/webp webp\n"
                                    "image/vnd.microsoft.icon ico\n"
                                    "font/woff2 woff2\n";

static bool wants_charset(const char *type, size_t len)
{
    return (len > 5 && strncasecmp(type, "text/", 5) == 0) ||
           (len == 22 && strncasecmp(type, "application/javascript", 22) == 0);
}

static void table_free(struct mime_table *t)
{
    buf_free(&t->arena);
    free(t->entries);
    *t = (struct mime_table){0};
}

/* Appends s[0..len) (lower-cased when asked), then suffix and a NUL, to
 * the arena; its offset, or -1. */
static long arena_add(struct mime_table *t, const char *s, size_t len, bool lower,
                      const char *suffix)
{
    size_t off = buf_size(&t->arena);
    size_t slen = suffix ? strlen(suffix) : 0;
    char *p = buf_reserve(&t->arena, len + slen + 1);
    if (!p)
        return -1;
    for (size_t i = 0; i < len; i++)
        p[i] = lower && s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] + 32) : s[i];
    memcpy(p + len, suffix ? suffix : "", slen + 1);
    t->arena.len += len + slen + 1;
    return (long)off;
}

static int entry_add(struct mime_table *t, size_t ext, size_t type, size_t line)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        struct mime_entry *e = realloc(t->entries, cap * sizeof *e);
        if (!e)
            return -1;
        t->entries = e;
        t->cap = cap;
    }
    t->entries[t->n++] = (struct mime_entry){ext, type, line};
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* One line of mime.types: "type ext ext ...", '#' starting a comment. */
static int parse_line(struct mime_table *t, const char *s, size_t len, size_t line)
{
    const char *hash = memchr(s, '#', len);
    if (hash)
        len = (size_t)(hash - s);
    size_t i = 0;
    while (i < len && is_space(s[i]))
        i++;
    size_t tstart = i;
    while (i < len && !is_space(s[i]))
        i++;
    size_t tlen = i - tstart;
    if (tlen == 0 || !memchr(s + tstart, '/', tlen))
        return 0;
    long type = -1;
    while (i < len) {
        while (i < len && is_space(s[i]))
            i++;
        size_t estart = i;
        while (i < len && !is_space(s[i]))
            i++;
        size_t elen = i - estart;
        if (elen == 0 || elen > EXT_MAX)
            continue;
        if (type < 0) {
            const char *charset = wants_charset(s + tstart, tlen) ? "; charset=utf-8" : NULL;
            type = arena_add(t, s + tstart, tlen, false, charset);
            if (type < 0)
                return -1;
        }
        long ext = arena_add(t, s + estart, elen, true, NULL);
        if (ext < 0 || entry_add(t, (size_t)ext, (size_t)type, line) < 0)
            return -1;
    }
    return 0;
}

static const char *arena_str(const struct mime_table *t, size_t off)
{
    return buf_start(&t->arena) + off;
}

static const struct mime_table *sort_table;

static int entry_cmp(const void *a, const void *b)
{
    const struct mime_entry *x = a, *y = b;
    int c = strcmp(arena_str(sort_table, x->ext), arena_str(sort_table, y->ext));
    if (c)
        return c;
    return x->line < y->line ? -1 : x->line > y->line;
}

static int parse_text(struct mime_table *t, const char *text, size_t len)
{
    size_t line = 0;
    for (size_t i = 0; i < len; line++) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (parse_line(t, text + i, end - i, line) < 0)
            return -1;
        i = end + 1;
    }
    /* The sort runs once per load, before any lookup: the static it reads
     * through is not shared with a concurrent caller. */
    sort_table = t;
    qsort(t->entries, t->n, sizeof *t->entries, entry_cmp);
    sort_table = NULL;
    return 0;
}

static int read_file(const char *path, struct buf *out)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char chunk[8192];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(out, chunk, n) < 0) {
            rc = -1;
            errno = ENOMEM;
            break;
        }
    if (rc == 0 && ferror(f)) {
        rc = -1;
        errno = EIO;
    }
    fclose(f);
    return rc;
}

int mime_load(const char *path)
{
    struct buf text = {0};
    struct mime_table t = {0};
    int rc = read_file(path, &text);
    int err = errno;
    if (rc == 0 && parse_text(&t, (const char *)text.data, buf_size(&text)) < 0) {
        rc = -1;
        err = ENOMEM;
    }
    buf_free(&text);
    if (rc < 0) {
        log_warning("cannot read %s (%s): using a built-in table of common media types", path,
                    strerror(err));
        table_free(&t);
        if (parse_text(&t, builtin_types, sizeof builtin_types - 1) < 0)
            table_free(&t); /* out of memory: no table, every type unknown */
    }
    table_free(&table);
    table = t;
    loaded = true;
    errno = err;
    return rc;
}

static void load_system_table(void)
{
    if (!loaded)
        mime_load(MIME_TYPES_PATH);
}

void mime_init(void)
{
    pthread_once(&init_once, load_system_table);
}

static int find_cmp(const void *key, const void *e)
{
    return strcmp(key, arena_str(&table, ((const struct mime_entry *)e)->ext));
}

const char *mime_type_for(const char *name)
{
    mime_init();
    if (!name)
        return NULL;
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    if (!dot || !dot[1] || strlen(dot + 1) > EXT_MAX)
        return NULL;
    char ext[EXT_MAX + 1];
    size_t n = 0;
    for (const char *p = dot + 1; *p; p++)
        ext[n++] = *p >= 'A' && *p <= 'Z' ? (char)(*p + 32) : *p;
    ext[n] = '\0';
    const struct mime_entry *e = bsearch(ext, table.entries, table.n, sizeof *e, find_cmp);
    if (!e)
        return NULL;
    /* bsearch finds any equal entry: the first line's is the first. */
    while (e > table.entries && strcmp(arena_str(&table, e[-1].ext), ext) == 0)
        e--;
    return arena_str(&table, e->type);
}

void mime_free(void)
{
    table_free(&table);
    loaded = false;
}
