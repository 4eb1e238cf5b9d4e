/* router: maps (HTTP method, percent-decoded path) to a target pointer.
 *
 * Patterns follow FastAPI/Starlette: '/'-separated segments, each either
 * static text or one parameter {name} / {name:str|int|float|path}. A router
 * is built once with router_add and then only read, so router_match can run
 * on the hot path of every request: it does not allocate and may be called
 * from several threads at once. When the set of routes changes the caller
 * builds a new router and swaps it in, hence there is no removal.
 *
 * Priority at each segment: static, then int, then float, then str, then
 * path; the first alternative that matches the whole path and the method
 * wins, backtracking when a branch fails further down. A HEAD request uses a
 * GET route when the path has no HEAD route; "*" routes take any method. */
#ifndef EVICORN_ROUTER_H
#define EVICORN_ROUTER_H

#include <stddef.h>

#define ROUTER_MAX_PARAMS 16

enum router_param_type {
    ROUTER_PARAM_STR,
    ROUTER_PARAM_INT,
    ROUTER_PARAM_FLOAT,
    ROUTER_PARAM_PATH
};

struct router_param {
    const char *name; /* points into the router (NUL-terminated), valid as long as the router */
    size_t name_len;
    const char *value; /* points into the path passed to router_match */
    size_t value_len;
    enum router_param_type type;
};

struct router_match {
    void *target;        /* the target given to router_add, when ROUTER_FOUND */
    const char *pattern; /* the pattern string of the matched route (NUL-terminated, owned by
                            router) */
    size_t nparams;
    struct router_param params[ROUTER_MAX_PARAMS];
    /* when ROUTER_METHOD_NOT_ALLOWED: the methods the path does allow, as one
       string "GET, HEAD, POST" (sorted, no duplicates, HEAD included when GET is) owned by the
       router */
    const char *allow;
};

enum router_result { ROUTER_FOUND, ROUTER_NOT_FOUND, ROUTER_METHOD_NOT_ALLOWED };

struct router *router_new(void);    /* NULL on out of memory */
void router_free(struct router *r); /* NULL is fine */
/* Adds a route. method: an upper-case token such as "GET" ("*" = any method).
 * Returns 0, or -1 with a one-line human reason written to err (e.g.
 * "invalid route pattern '/a/{b': unclosed '{'", "route GET /items/{id} conflicts with GET
 * /items/{item_id}"). A conflict is the same method (or "*" vs anything) with a pattern that
 * matches exactly the same paths (same static segments, same parameter types at the same
 * positions; parameter names do not matter). err may be NULL; the reason is truncated to errlen.
 * On failure the router is unchanged as far as matching and iteration can tell. */
int router_add(struct router *r, const char *method, const char *pattern, void *target, char *err,
               size_t errlen);
/* Matches a request. path need not be NUL-terminated; only path[0..path_len) is read. On
 * ROUTER_FOUND, target, pattern and params are set; on ROUTER_METHOD_NOT_ALLOWED, allow is set
 * (the methods of the highest-priority route set whose pattern matches the path, as Starlette's
 * first partial match); the other fields are NULL / 0. */
enum router_result router_match(const struct router *r, const char *method, size_t method_len,
                                const char *path, size_t path_len, struct router_match *m);
/* Number of routes added; and iteration for a status page: fills method/pattern/target of route i
 * (0-based, in add order). Returns -1 when i is out of range. Any out pointer may be NULL. */
size_t router_count(const struct router *r);
int router_route_at(const struct router *r, size_t i, const char **method, const char **pattern,
                    void **target);

#endif
