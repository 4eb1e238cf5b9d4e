/* router: segment trie from (method, path) to target; see router.h.
 *
 * The router owns a trie with one node per pattern prefix. A node owns its
 * static children (sorted, for binary search), one child per parameter type,
 * the list of routes whose pattern ends there and the Allow string for a 405
 * there, precomputed so that matching never allocates. Parameter names are
 * not part of the trie (patterns differing only in names are the same node,
 * which is exactly a conflict); each route owns its method, pattern and
 * parameter names in a single allocation, and matching takes the names from
 * the route it found. Every pattern segment consumes exactly one path
 * segment (a path parameter only ends a pattern), so the depth-first search
 * visits each node at most once per lookup. */
#include "router.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define NTYPES 4

struct route_param {
    const char *name;
    size_t name_len;
    enum router_param_type type;
};

struct route {
    const char *method;
    size_t method_len;
    const char *pattern;
    void *target;
    size_t nparams;
    struct route_param params[]; /* followed by the method, pattern and name strings */
};

struct edge {
    const char *label; /* the child's label */
    size_t len;
    struct node *child;
};

struct node {
    struct edge *statics; /* sorted by (len, bytes) */
    size_t nstatics, capstatics;
    struct node *param[NTYPES]; /* indexed by enum router_param_type */
    struct route **routes;      /* routes ending here, in add order */
    size_t nroutes, caproutes;
    char *allow;
    size_t label_len;
    char label[]; /* static text leading here (empty for parameter nodes) */
};

struct router {
    struct node *root;
    struct route **routes; /* all routes, in add order */
    size_t nroutes, caproutes;
};

/* One parsed pattern segment. */
struct seg {
    bool is_static;
    enum router_param_type type; /* when !is_static */
    const char *text;            /* static text, or the parameter name */
    size_t len;
};

static const char *const type_names[NTYPES] = {"str", "int", "float", "path"};

/* ---- errors ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Writes "invalid route pattern '<pattern>': <reason>". */
static int bad_pattern(char *err, size_t errlen, const char *pattern, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int bad_pattern(char *err, size_t errlen, const char *pattern, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return -1;
    int n = snprintf(err, errlen, "invalid route pattern '%s': ", pattern);
    if (n >= 0 && (size_t)n < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- pattern parsing ---- */

static bool is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ident(const char *s, size_t len)
{
    if (len == 0 || !is_ident_start(s[0]))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!is_ident_start(s[i]) && !is_digit(s[i]))
            return false;
    return true;
}

/* An upper-case RFC 9110 token: a lower-case method would never match what
 * clients send, so it is rejected rather than silently dead. */
static bool is_method(const char *m)
{
    if (!*m)
        return false;
    for (const char *p = m; *p; p++)
        if ((*p >= 'a' && *p <= 'z') || !http_is_tchar((unsigned char)*p))
            return false;
    return true;
}

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* Parses "{name}" or "{name:type}" filling the segment [s, s+len). */
static int parse_param(const char *pattern, const char *s, size_t len, struct seg *out, char *err,
                       size_t errlen)
{
    const char *close = memchr(s, '}', len);
    if (!close)
        return bad_pattern(err, errlen, pattern, "unclosed '{'");
    if (close != s + len - 1)
        return bad_pattern(err, errlen, pattern,
                           "a parameter must fill a whole segment, found '%.*s'", (int)len, s);
    const char *name = s + 1;
    size_t inner = (size_t)(close - name);
    const char *colon = memchr(name, ':', inner);
    size_t name_len = colon ? (size_t)(colon - name) : inner;
    if (name_len == 0)
        return bad_pattern(err, errlen, pattern, "empty parameter name in '%.*s'", (int)len, s);
    if (!is_ident(name, name_len))
        return bad_pattern(err, errlen, pattern,
                           "invalid parameter name '%.*s' (expected [A-Za-z_][A-Za-z0-9_]*)",
                           (int)name_len, name);
    out->is_static = false;
    out->text = name;
    out->len = name_len;
    out->type = ROUTER_PARAM_STR;
    if (!colon)
        return 0;
    const char *type = colon + 1;
    size_t type_len = (size_t)(close - type);
    for (int t = 0; t < NTYPES; t++) {
        if (strlen(type_names[t]) == type_len && memcmp(type_names[t], type, type_len) == 0) {
            out->type = (enum router_param_type)t;
            return 0;
        }
    }
    return bad_pattern(err, errlen, pattern,
                       "unknown parameter type '%.*s' (expected str, int, float or path)",
                       (int)type_len, type);
}

/* Splits pattern into segs (room for one per '/'); validates the whole
 * pattern before the trie is touched. */
static int parse_pattern(const char *pattern, struct seg *segs, size_t *nsegs, size_t *nparams,
                         char *err, size_t errlen)
{
    size_t n = 0, np = 0;
    const char *p = pattern + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        struct seg *sg = &segs[n];
        if (len > 0 && p[0] == '{') {
            if (parse_param(pattern, p, len, sg, err, errlen) < 0)
                return -1;
            for (size_t i = 0; i < n; i++)
                if (!segs[i].is_static && segs[i].len == sg->len &&
                    memcmp(segs[i].text, sg->text, sg->len) == 0)
                    return bad_pattern(err, errlen, pattern, "duplicate parameter name '%.*s'",
                                       (int)sg->len, sg->text);
            if (sg->type == ROUTER_PARAM_PATH && slash)
                return bad_pattern(err, errlen, pattern, "'{%.*s:path}' must be the last segment",
                                   (int)sg->len, sg->text);
            if (++np > ROUTER_MAX_PARAMS)
                return bad_pattern(err, errlen, pattern, "more than %d parameters",
                                   ROUTER_MAX_PARAMS);
        } else {
            const char *open = memchr(p, '{', len);
            if (open) {
                if (!memchr(open, '}', len - (size_t)(open - p)))
                    return bad_pattern(err, errlen, pattern, "unclosed '{'");
                return bad_pattern(err, errlen, pattern,
                                   "a parameter must fill a whole segment, found '%.*s'", (int)len,
                                   p);
            }
            if (memchr(p, '}', len))
                return bad_pattern(err, errlen, pattern, "unmatched '}'");
            /* Only the last segment may be empty: that is the trailing slash. */
            if (len == 0 && slash)
                return bad_pattern(err, errlen, pattern, "empty segment ('//')");
            sg->is_static = true;
            sg->text = p;
            sg->len = len;
        }
        n++;
        if (!slash)
            break;
        p = slash + 1;
    }
    *nsegs = n;
    *nparams = np;
    return 0;
}

/* ---- trie construction ---- */

static struct node *node_new(const char *label, size_t len)
{
    struct node *n = calloc(1, sizeof(*n) + len + 1);
    if (!n)
        return NULL;
    memcpy(n->label, label, len);
    n->label[len] = '\0';
    n->label_len = len;
    return n;
}

static void node_free(struct node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nstatics; i++)
        node_free(n->statics[i].child);
    for (int t = 0; t < NTYPES; t++)
        node_free(n->param[t]);
    free(n->statics);
    free(n->routes);
    free(n->allow);
    free(n);
}

static int label_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return alen < blen ? -1 : 1;
    return memcmp(a, b, alen);
}

/* Index of the static child labelled s, or where it would be inserted. */
static size_t static_search(const struct node *n, const char *s, size_t len, bool *found)
{
    size_t lo = 0, hi = n->nstatics;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = label_cmp(n->statics[mid].label, n->statics[mid].len, s, len);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

/* Returns arr with room for need elements (updating *cap), or NULL on out of
 * memory, in which case arr is untouched and still owned by the caller. */
static void *grow(void *arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return arr;
    size_t ncap = *cap ? *cap : 4;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / elem)
            return NULL;
        ncap *= 2;
    }
    void *p = realloc(arr, ncap * elem);
    if (p)
        *cap = ncap;
    return p;
}

static struct node *child_for(struct node *n, const struct seg *sg)
{
    if (!sg->is_static) {
        if (!n->param[sg->type])
            n->param[sg->type] = node_new("", 0);
        return n->param[sg->type];
    }
    bool found;
    size_t i = static_search(n, sg->text, sg->len, &found);
    if (found)
        return n->statics[i].child;
    struct edge *e = grow(n->statics, &n->capstatics, n->nstatics + 1, sizeof(*e));
    if (!e)
        return NULL;
    n->statics = e;
    struct node *c = node_new(sg->text, sg->len);
    if (!c)
        return NULL;
    memmove(&n->statics[i + 1], &n->statics[i], (n->nstatics - i) * sizeof(*n->statics));
    n->statics[i] = (struct edge){c->label, c->label_len, c};
    n->nstatics++;
    return c;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Builds the Allow string for a node's routes plus one more method. */
static char *build_allow(const struct node *n, const char *extra)
{
    size_t cap = n->nroutes + 2;
    const char **ms = malloc(cap * sizeof(*ms));
    if (!ms)
        return NULL;
    size_t k = 0;
    bool get = false;
    for (size_t i = 0; i <= n->nroutes; i++) {
        const char *m = i < n->nroutes ? n->routes[i]->method : extra;
        if (strcmp(m, "*") == 0)
            continue;
        ms[k++] = m;
        get = get || strcmp(m, "GET") == 0;
    }
    if (get)
        ms[k++] = "HEAD";
    qsort(ms, k, sizeof(*ms), cmp_str_ptr);
    size_t total = 1, u = 0;
    for (size_t i = 0; i < k; i++) {
        if (u > 0 && strcmp(ms[u - 1], ms[i]) == 0)
            continue;
        ms[u++] = ms[i];
        total += strlen(ms[i]) + 2;
    }
    char *s = malloc(total);
    if (s) {
        char *w = s;
        for (size_t i = 0; i < u; i++) {
            if (i > 0) {
                memcpy(w, ", ", 2);
                w += 2;
            }
            size_t l = strlen(ms[i]);
            memcpy(w, ms[i], l);
            w += l;
        }
        *w = '\0';
    }
    free(ms);
    return s;
}

/* One allocation holding the route, its parameter table and its strings. */
static struct route *route_new(const char *method, const char *pattern, void *target,
                               const struct seg *segs, size_t nsegs, size_t nparams)
{
    size_t mlen = strlen(method), plen = strlen(pattern);
    size_t size = sizeof(struct route) + nparams * sizeof(struct route_param) + mlen + plen + 2;
    for (size_t i = 0; i < nsegs; i++)
        if (!segs[i].is_static)
            size += segs[i].len + 1;
    struct route *rt = malloc(size);
    if (!rt)
        return NULL;
    char *w = (char *)&rt->params[nparams];
    memcpy(w, method, mlen + 1);
    rt->method = w;
    rt->method_len = mlen;
    w += mlen + 1;
    memcpy(w, pattern, plen + 1);
    rt->pattern = w;
    w += plen + 1;
    rt->target = target;
    rt->nparams = nparams;
    size_t k = 0;
    for (size_t i = 0; i < nsegs; i++) {
        if (segs[i].is_static)
            continue;
        memcpy(w, segs[i].text, segs[i].len);
        w[segs[i].len] = '\0';
        rt->params[k++] = (struct route_param){w, segs[i].len, segs[i].type};
        w += segs[i].len + 1;
    }
    return rt;
}

/* ---- public: lifetime ---- */

struct router *router_new(void)
{
    struct router *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->root = node_new("", 0);
    if (!r->root) {
        free(r);
        return NULL;
    }
    return r;
}

void router_free(struct router *r)
{
    if (!r)
        return;
    node_free(r->root);
    for (size_t i = 0; i < r->nroutes; i++)
        free(r->routes[i]);
    free(r->routes);
    free(r);
}

int router_add(struct router *r, const char *method, const char *pattern, void *target, char *err,
               size_t errlen)
{
    if (!r || !method || !pattern) {
        set_err(err, errlen, "router_add: NULL router, method or pattern");
        return -1;
    }
    if (!is_method(method)) {
        if (has_control(method))
            set_err(err, errlen, "invalid method: contains a control character");
        else
            set_err(err, errlen, "invalid method '%s': %s", method,
                    "expected an upper-case token such as GET, or '*'");
        return -1;
    }
    /* Checked first so that later messages can quote the pattern on one line. */
    if (has_control(pattern)) {
        set_err(err, errlen, "invalid route pattern: contains a control character");
        return -1;
    }
    if (pattern[0] != '/')
        return bad_pattern(err, errlen, pattern, "must start with '/'");

    size_t maxsegs = 0;
    for (const char *p = pattern; *p; p++)
        maxsegs += *p == '/';
    struct seg *segs = malloc(maxsegs * sizeof(*segs));
    if (!segs) {
        set_err(err, errlen, "out of memory adding route %s %s", method, pattern);
        return -1;
    }
    size_t nsegs = 0, nparams = 0;
    if (parse_pattern(pattern, segs, &nsegs, &nparams, err, errlen) < 0) {
        free(segs);
        return -1;
    }

    /* Nodes created here stay even if a later step fails: an empty node
     * matches nothing, so the router still behaves as before. */
    int rc = -1;
    struct route *rt = NULL;
    char *allow = NULL;
    struct node *n = r->root;
    for (size_t i = 0; i < nsegs && n; i++)
        n = child_for(n, &segs[i]);
    if (!n)
        goto oom;
    bool wild = strcmp(method, "*") == 0;
    for (size_t i = 0; i < n->nroutes; i++) {
        const struct route *o = n->routes[i];
        if (wild || strcmp(o->method, "*") == 0 || strcmp(o->method, method) == 0) {
            set_err(err, errlen, "route %s %s conflicts with %s %s", method, pattern, o->method,
                    o->pattern);
            goto out;
        }
    }
    struct route **nr = grow(n->routes, &n->caproutes, n->nroutes + 1, sizeof(*nr));
    if (!nr)
        goto oom;
    n->routes = nr;
    struct route **rr = grow(r->routes, &r->caproutes, r->nroutes + 1, sizeof(*rr));
    if (!rr)
        goto oom;
    r->routes = rr;
    allow = build_allow(n, method);
    rt = route_new(method, pattern, target, segs, nsegs, nparams);
    if (!allow || !rt)
        goto oom;

    free(n->allow);
    n->allow = allow;
    n->routes[n->nroutes++] = rt;
    r->routes[r->nroutes++] = rt;
    allow = NULL;
    rt = NULL;
    rc = 0;
    goto out;
oom:
    set_err(err, errlen, "out of memory adding route %s %s", method, pattern);
out:
    free(allow);
    free(rt);
    free(segs);
    return rc;
}

/* ---- public: matching ---- */

struct lookup {
    const char *method;
    size_t method_len;
    const char *path;
    size_t path_len;
    struct router_param *params;
    const struct route *found;
    const struct node *partial; /* first node whose pattern matched but not the method */
};

enum { NUM_INT = 1, NUM_FLOAT = 2 };

/* Classifies a segment in one pass: int is -?[0-9]+, float is -?[0-9]+(\.[0-9]*)? */
static int classify_number(const char *s, size_t len)
{
    size_t i = 0;
    if (i < len && s[i] == '-')
        i++;
    size_t digits = i;
    while (i < len && is_digit(s[i]))
        i++;
    if (i == digits)
        return 0;
    if (i == len)
        return NUM_INT | NUM_FLOAT;
    if (s[i] != '.')
        return 0;
    for (i++; i < len; i++)
        if (!is_digit(s[i]))
            return 0;
    return NUM_FLOAT;
}

/* Exact method, then GET for HEAD (Starlette adds HEAD to GET routes), then
 * "*" (which in practice is alone at its node: it conflicts with any other). */
static const struct route *route_for_method(const struct node *n, const struct lookup *lk)
{
    const struct route *get = NULL, *any = NULL;
    for (size_t i = 0; i < n->nroutes; i++) {
        const struct route *rt = n->routes[i];
        if (rt->method_len == lk->method_len && memcmp(rt->method, lk->method, lk->method_len) == 0)
            return rt;
        if (rt->method_len == 3 && memcmp(rt->method, "GET", 3) == 0)
            get = rt;
        else if (rt->method_len == 1 && rt->method[0] == '*')
            any = rt;
    }
    if (get && lk->method_len == 4 && memcmp(lk->method, "HEAD", 4) == 0)
        return get;
    return any;
}

/* The path is fully consumed at n: succeed if a route there takes the method. */
static bool finish(struct lookup *lk, const struct node *n)
{
    if (n->nroutes == 0)
        return false;
    const struct route *rt = route_for_method(n, lk);
    if (rt) {
        lk->found = rt;
        return true;
    }
    if (!lk->partial)
        lk->partial = n;
    return false;
}

static bool walk(struct lookup *lk, const struct node *n, size_t pos, size_t k);

/* Continues into child after the segment ending at end (the path end when last). */
static bool descend(struct lookup *lk, const struct node *child, bool last, size_t end, size_t k)
{
    if (last)
        return finish(lk, child);
    return walk(lk, child, end + 1, k);
}

/* Tries n's children, in priority order, against the segment starting at pos;
 * k parameters are bound so far. */
static bool walk(struct lookup *lk, const struct node *n, size_t pos, size_t k)
{
    if (n->nstatics == 0 && !n->param[0] && !n->param[1] && !n->param[2] && !n->param[3])
        return false;
    const char *seg = lk->path + pos;
    size_t rest = lk->path_len - pos;
    const char *slash = rest ? memchr(seg, '/', rest) : NULL;
    size_t len = slash ? (size_t)(slash - seg) : rest;
    bool last = !slash;
    size_t end = pos + len;

    if (n->nstatics) {
        bool found;
        size_t i = static_search(n, seg, len, &found);
        if (found && descend(lk, n->statics[i].child, last, end, k))
            return true;
    }
    /* Depth is bounded by the pattern's parameter count, checked at add time. */
    struct router_param *pv = &lk->params[k];
    const struct node *ci = n->param[ROUTER_PARAM_INT], *cf = n->param[ROUTER_PARAM_FLOAT];
    if (ci || cf) {
        int num = classify_number(seg, len);
        if (ci && (num & NUM_INT)) {
            pv->value = seg;
            pv->value_len = len;
            if (descend(lk, ci, last, end, k + 1))
                return true;
        }
        if (cf && (num & NUM_FLOAT)) {
            pv->value = seg;
            pv->value_len = len;
            if (descend(lk, cf, last, end, k + 1))
                return true;
        }
    }
    const struct node *cs = n->param[ROUTER_PARAM_STR];
    if (cs && len > 0) {
        pv->value = seg;
        pv->value_len = len;
        if (descend(lk, cs, last, end, k + 1))
            return true;
    }
    const struct node *cp = n->param[ROUTER_PARAM_PATH];
    if (cp) {
        pv->value = seg;
        pv->value_len = rest;
        if (finish(lk, cp))
            return true;
    }
    return false;
}

enum router_result router_match(const struct router *r, const char *method, size_t method_len,
                                const char *path, size_t path_len, struct router_match *m)
{
    m->target = NULL;
    m->pattern = NULL;
    m->nparams = 0;
    m->allow = NULL;
    if (!r || !path || path_len == 0 || path[0] != '/')
        return ROUTER_NOT_FOUND;
    struct lookup lk = {method, method_len, path, path_len, m->params, NULL, NULL};
    if (walk(&lk, r->root, 1, 0)) {
        const struct route *rt = lk.found;
        m->target = rt->target;
        m->pattern = rt->pattern;
        m->nparams = rt->nparams;
        for (size_t i = 0; i < rt->nparams; i++) {
            m->params[i].name = rt->params[i].name;
            m->params[i].name_len = rt->params[i].name_len;
            m->params[i].type = rt->params[i].type;
        }
        return ROUTER_FOUND;
    }
    if (lk.partial) {
        m->allow = lk.partial->allow;
        return ROUTER_METHOD_NOT_ALLOWED;
    }
    return ROUTER_NOT_FOUND;
}

/* ---- public: iteration ---- */

size_t router_count(const struct router *r)
{
    return r ? r->nroutes : 0;
}

int router_route_at(const struct router *r, size_t i, const char **method, const char **pattern,
                    void **target)
{
    if (!r || i >= r->nroutes)
        return -1;
    const struct route *rt = r->routes[i];
    if (method)
        *method = rt->method;
    if (pattern)
        *pattern = rt->pattern;
    if (target)
        *target = rt->target;
    return 0;
}
