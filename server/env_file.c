/* env_file: a .env file by python-dotenv's rules; see env_file.h. */
#include "env_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* Files larger than this are refused: a .env file is a few lines. */
#define ENV_FILE_MAX (1 << 20)

/* A growing string. */
struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static char *sb_take(struct sbuf *b)
{
    if (!b->p && !b->oom)
        sb_add(b, "", 0);
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    return b->p;
}

/* One binding: key, and value (NULL for "KEY" without "="). */
struct binding {
    char *key, *value;
};

struct bindings {
    struct binding *v;
    size_t n, cap;
};

static void bindings_free(struct bindings *bs)
{
    for (size_t i = 0; i < bs->n; i++) {
        free(bs->v[i].key);
        free(bs->v[i].value);
    }
    free(bs->v);
}

/* A later binding of a key replaces the earlier one, in its place (a dict). */
static int bindings_put(struct bindings *bs, char *key, char *value)
{
    for (size_t i = 0; i < bs->n; i++)
        if (strcmp(bs->v[i].key, key) == 0) {
            free(bs->v[i].value);
            free(key);
            bs->v[i].value = value;
            return 0;
        }
    if (bs->n == bs->cap) {
        size_t cap = bs->cap ? bs->cap * 2 : 16;
        struct binding *v = realloc(bs->v, cap * sizeof *v);
        if (!v)
            return -1;
        bs->v = v;
        bs->cap = cap;
    }
    bs->v[bs->n++] = (struct binding){key, value};
    return 0;
}

/* ---- the reader (python-dotenv's regular expressions, by hand) ---- */

struct reader {
    const char *s, *end, *pos;
    int line; /* of pos */
};

/* \s: what Python's re counts as whitespace in ASCII. */
static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* [^\S\r\n]: whitespace on one line. */
static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\v' || c == '\f';
}

static void advance(struct reader *r, const char *to)
{
    for (const char *p = r->pos; p < to; p++)
        if (*p == '\n' || (*p == '\r' && (p + 1 >= r->end || p[1] != '\n')))
            r->line++;
    r->pos = to;
}

static void skip_blanks(struct reader *r)
{
    const char *p = r->pos;
    while (p < r->end && is_blank(*p))
        p++;
    advance(r, p);
}

static char *dup_range(const char *a, const char *b)
{
    struct sbuf sb = {0};
    sb_add(&sb, a, b > a ? (size_t)(b - a) : 0);
    return sb_take(&sb);
}

/* A quoted value's body. As python-dotenv's '((?:\\'|[^'])*)': inside, a
 * quote must follow a backslash; the value ends at the first quote that
 * does not, else at the last quote there is. escapes lists the characters
 * after a backslash that are decoded. NULL in *out with 0 for an
 * unterminated value; -1 out of memory. */
static int read_quoted(struct reader *r, char quote, const char *escapes, char **out)
{
    const char *start = r->pos + 1, *p = NULL, *last = NULL;
    for (const char *q = start; q < r->end && !p; q++)
        if (*q == quote) {
            if (q == start || q[-1] != '\\')
                p = q;
            last = q;
        }
    if (!p)
        p = last;
    *out = NULL;
    if (!p)
        return 0;
    struct sbuf sb = {0};
    for (const char *q = r->pos + 1; q < p; q++) {
        if (*q == '\\' && q + 1 < p && q[1] && strchr(escapes, q[1])) {
            static const char from[] = "abfnrtv", to[] = "\a\b\f\n\r\t\v";
            const char *k = strchr(from, q[1]);
            char c = k ? to[k - from] : q[1];
            sb_add(&sb, &c, 1);
            q++;
            continue;
        }
        sb_add(&sb, q, 1);
    }
    advance(r, p + 1);
    if (!(*out = sb_take(&sb)))
        return -1;
    return 0;
}

/* Steps over one \n, \r\n or \r; false when none is there. */
static bool skip_newline(struct reader *r)
{
    if (r->pos >= r->end || (*r->pos != '\n' && *r->pos != '\r'))
        return false;
    advance(r, r->pos + (*r->pos == '\r' && r->pos + 1 < r->end && r->pos[1] == '\n' ? 2 : 1));
    return true;
}

static const char *line_end(const struct reader *r, const char *p)
{
    while (p < r->end && *p != '\n' && *p != '\r')
        p++;
    return p;
}

/* An unquoted value: the rest of the line, cut at the first whitespace
 * followed by '#', trailing whitespace removed. */
static char *read_unquoted(struct reader *r)
{
    const char *p = r->pos, *e = line_end(r, p), *cut = e;
    for (const char *q = p; q < e; q++)
        if (is_space(*q)) {
            const char *w = q;
            while (w < e && is_space(*w))
                w++;
            if (w < e && *w == '#') {
                cut = q;
                break;
            }
            q = w - 1;
        }
    while (cut > p && is_space(cut[-1]))
        cut--;
    advance(r, e);
    return dup_range(p, cut);
}

enum parsed { PARSED_NONE, PARSED_BINDING, PARSED_ERROR, PARSED_OOM };

static enum parsed parse_binding(struct reader *r, char **key, char **value)
{
    *key = *value = NULL;
    const char *p = r->pos;
    while (p < r->end && is_space(*p))
        p++;
    advance(r, p);
    if (r->pos >= r->end)
        return PARSED_NONE;
    if (r->end - r->pos > 6 && memcmp(r->pos, "export", 6) == 0 && is_blank(r->pos[6])) {
        advance(r, r->pos + 6);
        skip_blanks(r);
        if (r->pos >= r->end)
            return PARSED_ERROR;
    }
    /* The key: none for a comment, 'quoted', or up to '=', '#' or space. */
    if (*r->pos != '#') {
        if (*r->pos == '\'') {
            const char *q = r->pos + 1;
            while (q < r->end && *q != '\'')
                q++;
            if (q >= r->end || q == r->pos + 1)
                return PARSED_ERROR;
            *key = dup_range(r->pos + 1, q);
            advance(r, q + 1);
        } else {
            const char *q = r->pos;
            while (q < r->end && *q != '=' && *q != '#' && !is_space(*q))
                q++;
            if (q == r->pos)
                return PARSED_ERROR;
            *key = dup_range(r->pos, q);
            advance(r, q);
        }
        if (!*key)
            return PARSED_OOM;
    }
    skip_blanks(r);
    if (r->pos < r->end && *r->pos == '=') {
        advance(r, r->pos + 1);
        skip_blanks(r);
        char c = r->pos < r->end ? *r->pos : '\0';
        if (c == '\'' || c == '"') {
            if (read_quoted(r, c, c == '\'' ? "\\'" : "\\'\"abfnrtv", value) < 0)
                return PARSED_OOM;
            if (!*value)
                return PARSED_ERROR;
        } else if (c == '\0' || c == '\n' || c == '\r') {
            *value = dup_range(r->pos, r->pos);
        } else {
            *value = read_unquoted(r);
        }
        if (!*value)
            return PARSED_OOM;
    }
    /* An optional comment, then the end of the line. */
    const char *q = r->pos;
    while (q < r->end && is_blank(*q))
        q++;
    if (q < r->end && *q == '#')
        advance(r, line_end(r, q));
    skip_blanks(r);
    if (r->pos < r->end && !skip_newline(r))
        return PARSED_ERROR;
    return PARSED_BINDING;
}

/* ---- ${NAME} and ${NAME:-default} ---- */

static const char *lookup(const struct bindings *bs, const char *(*get_existing)(const char *),
                          const char *name, bool *found)
{
    const char *v = get_existing(name);
    *found = v != NULL;
    if (v)
        return v;
    for (size_t i = 0; i < bs->n; i++)
        if (strcmp(bs->v[i].key, name) == 0) {
            *found = true;
            return bs->v[i].value; /* NULL: a key without a value, read as "" */
        }
    return NULL;
}

static char *expand(const char *v, const struct bindings *earlier,
                    const char *(*get_existing)(const char *))
{
    struct sbuf sb = {0};
    const char *p = v;
    while (*p) {
        const char *open = strstr(p, "${");
        if (!open) {
            sb_add(&sb, p, strlen(p));
            break;
        }
        /* The name runs to '}' or ':'; ":-" starts a default up to '}'. */
        const char *n = open + 2, *ne = n;
        while (*ne && *ne != '}' && *ne != ':')
            ne++;
        const char *def = NULL, *close = ne;
        if (*ne == ':' && ne[1] == '-') {
            def = ne + 2;
            close = def;
            while (*close && *close != '}')
                close++;
        }
        if (*close != '}') { /* not a variable: literal text */
            sb_add(&sb, p, (size_t)(open + 2 - p));
            p = open + 2;
            continue;
        }
        sb_add(&sb, p, (size_t)(open - p));
        char *name = dup_range(n, ne);
        if (!name) {
            free(sb_take(&sb));
            return NULL;
        }
        bool found;
        const char *val = lookup(earlier, get_existing, name, &found);
        free(name);
        if (found)
            sb_add(&sb, val ? val : "", val ? strlen(val) : 0);
        else if (def)
            sb_add(&sb, def, (size_t)(close - def));
        p = close + 1;
    }
    return sb_take(&sb);
}

int env_file_parse(const char *text, size_t len, const char *(*get_existing)(const char *name),
                   env_set_fn set, void *ud, int *bad_line)
{
    struct reader r = {.s = text, .end = text + len, .pos = text, .line = 1};
    struct bindings bs = {0};
    int skipped = 0;
    while (r.pos < r.end) {
        int line = r.line;
        const char *start = r.pos;
        char *key, *value;
        enum parsed res = parse_binding(&r, &key, &value);
        if (res == PARSED_OOM) {
            free(key);
            free(value);
            bindings_free(&bs);
            return -1;
        }
        if (res == PARSED_ERROR) {
            free(key);
            free(value);
            /* python-dotenv names the line the statement started on, after
             * the blank lines before it. */
            while (start < r.pos && is_space(*start))
                line += *start++ == '\n';
            if (!skipped++ && bad_line)
                *bad_line = line;
            advance(&r, line_end(&r, r.pos));
            skip_newline(&r);
            continue;
        }
        if (res == PARSED_NONE || !key) {
            free(value);
            continue;
        }
        /* Expanded against the environment first, then earlier keys. */
        char *expanded = value ? expand(value, &bs, get_existing) : NULL;
        bool oom = value && !expanded;
        free(value);
        if (oom || bindings_put(&bs, key, expanded) < 0) {
            if (!oom)
                free(key);
            free(expanded);
            bindings_free(&bs);
            return -1;
        }
    }
    int rc = skipped;
    for (size_t i = 0; i < bs.n; i++)
        if (bs.v[i].value && !get_existing(bs.v[i].key) && set(ud, bs.v[i].key, bs.v[i].value) < 0)
            rc = -1;
    bindings_free(&bs);
    return rc;
}

static int set_process_env(void *ud, const char *name, const char *value)
{
    (void)ud;
    return setenv(name, value, 0);
}

static const char *get_process_env(const char *name)
{
    return getenv(name);
}

void env_file_load(const char *path, env_set_fn set_env, void *ud)
{
    const char *why = NULL;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
        why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if (st.st_size > ENV_FILE_MAX)
        why = "larger than 1 MiB";
    char *text = why ? NULL : malloc((size_t)st.st_size + 1);
    if (!why && !text)
        why = "out of memory";
    size_t got = 0;
    while (!why && got < (size_t)st.st_size) {
        ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            why = strerror(errno);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (fd >= 0)
        close(fd);
    if (why) {
        /* As python-dotenv: a file that is not there loads nothing. */
        log_warning("--env-file %s: %s; no variables loaded", path, why);
        free(text);
        return;
    }
    log_info("Loading environment from '%s'", path);
    int bad_line = 0;
    int rc = env_file_parse(text, got, get_process_env, set_env ? set_env : set_process_env, ud,
                            &bad_line);
    free(text);
    if (rc < 0)
        log_error("--env-file %s: cannot set the variables: %s", path, strerror(errno));
    else if (rc > 0)
        log_warning("--env-file %s: could not parse the statement starting at line %d%s", path,
                    bad_line, rc > 1 ? " (and others); they were skipped" : "; it was skipped");
}
