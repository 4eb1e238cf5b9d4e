/* Unit tests for server/router.c: pattern parsing and its error reasons,
 * conflicts, matching by priority with backtracking, method resolution
 * (HEAD fallback, "*", 405 with Allow) and iteration. */
#include "router.h"

#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define T(n) ((void *)(uintptr_t)(n))

static char err[256];

/* Builds a router from a NULL-terminated list of method/pattern pairs; route
 * i gets target T(i + 1). */
static struct router *build(const char *const *spec)
{
    struct router *r = router_new();
    CHECK(r != NULL);
    for (size_t i = 0; r && spec[2 * i]; i++) {
        int rc = router_add(r, spec[2 * i], spec[2 * i + 1], T(i + 1), err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "  router_add %s %s: %s\n", spec[2 * i], spec[2 * i + 1], err);
        CHECK_EQ_INT(rc, 0);
    }
    return r;
}

static enum router_result match(const struct router *r, const char *method, const char *path,
                                struct router_match *m)
{
    return router_match(r, method, strlen(method), path, strlen(path), m);
}

/* Returns the target matched by GET path, or NULL when nothing matched. */
static void *get_target(const struct router *r, const char *path)
{
    struct router_match m;
    return match(r, "GET", path, &m) == ROUTER_FOUND ? m.target : NULL;
}

/* Adds a single route and expects it to be rejected with exactly want. */
static void expect_invalid(const char *method, const char *pattern, const char *want)
{
    struct router *r = router_new();
    CHECK(r != NULL);
    if (!r)
        return;
    err[0] = '\0';
    CHECK_EQ_INT(router_add(r, method, pattern, T(1), err, sizeof(err)), -1);
    CHECK_EQ_STR(err, want);
    CHECK_EQ_INT(router_count(r), 0);
    router_free(r);
}

/* ---- plain matching ---- */

TEST(static_route_matches_exact_path_only)
{
    struct router *r = build((const char *[]){"GET", "/items/list", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/items/list", &m), ROUTER_FOUND);
    CHECK(m.target == T(1));
    CHECK_EQ_STR(m.pattern, "/items/list");
    CHECK_EQ_INT(m.nparams, 0);
    CHECK(get_target(r, "/items") == NULL);
    CHECK(get_target(r, "/items/list/more") == NULL);
    CHECK(get_target(r, "/items/lis") == NULL);
    CHECK(get_target(r, "/items/listx") == NULL);
    router_free(r);
}

TEST(root_pattern_matches_only_slash)
{
    struct router *r = build((const char *[]){"GET", "/", NULL});
    CHECK(get_target(r, "/") == T(1));
    CHECK(get_target(r, "//") == NULL);
    CHECK(get_target(r, "/a") == NULL);
    router_free(r);
}

TEST(path_without_leading_slash_or_empty_is_not_found)
{
    struct router *r = build((const char *[]){"GET", "/", "GET", "/{x:path}", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "", &m), ROUTER_NOT_FOUND);
    CHECK_EQ_INT(match(r, "GET", "items", &m), ROUTER_NOT_FOUND);
    CHECK_EQ_INT(match(r, "GET", "*", &m), ROUTER_NOT_FOUND);
    router_free(r);
}

TEST(not_found_leaves_match_empty)
{
    struct router *r = build((const char *[]){"GET", "/a", NULL});
    struct router_match m;
    m.target = T(99);
    m.nparams = 5;
    CHECK_EQ_INT(match(r, "GET", "/b", &m), ROUTER_NOT_FOUND);
    CHECK(m.target == NULL);
    CHECK(m.pattern == NULL);
    CHECK(m.allow == NULL);
    CHECK_EQ_INT(m.nparams, 0);
    router_free(r);
}

TEST(empty_router_finds_nothing)
{
    struct router *r = router_new();
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/", &m), ROUTER_NOT_FOUND);
    CHECK_EQ_INT(router_count(r), 0);
    router_free(r);
}

TEST(trailing_slash_is_significant)
{
    struct router *r = build((const char *[]){"GET", "/calculate", NULL});
    CHECK(get_target(r, "/calculate") == T(1));
    CHECK(get_target(r, "/calculate/") == NULL);
    CHECK_EQ_INT(router_add(r, "GET", "/calculate/", T(2), err, sizeof(err)), 0);
    CHECK(get_target(r, "/calculate") == T(1));
    CHECK(get_target(r, "/calculate/") == T(2));
    router_free(r);
}

TEST(trailing_slash_after_parameter)
{
    struct router *r = build((const char *[]){"GET", "/items/{id}/", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/items/7/", &m), ROUTER_FOUND);
    CHECK_EQ_MEM(m.params[0].value, m.params[0].value_len, "7");
    CHECK(get_target(r, "/items/7") == NULL);
    router_free(r);
}

TEST(path_length_bounds_the_match)
{
    struct router *r = build((const char *[]){"GET", "/items/{id:int}", NULL});
    const char buf[] = "/items/42xyz";
    struct router_match m;
    CHECK_EQ_INT(router_match(r, "GET", 3, buf, 9, &m), ROUTER_FOUND);
    CHECK_EQ_MEM(m.params[0].value, m.params[0].value_len, "42");
    CHECK_EQ_INT(router_match(r, "GET", 3, buf, strlen(buf), &m), ROUTER_NOT_FOUND);
    router_free(r);
}

TEST(method_length_bounds_the_method)
{
    struct router *r = build((const char *[]){"GET", "/a", NULL});
    struct router_match m;
    CHECK_EQ_INT(router_match(r, "GETX", 3, "/a", 2, &m), ROUTER_FOUND);
    CHECK_EQ_INT(router_match(r, "GETX", 4, "/a", 2, &m), ROUTER_METHOD_NOT_ALLOWED);
    router_free(r);
}

/* ---- parameters ---- */

TEST(str_param_captures_segment_name_and_type)
{
    struct router *r = build((const char *[]){"GET", "/users/{user_id}", NULL});
    struct router_match m;
    const char *path = "/users/alice smith";
    CHECK_EQ_INT(match(r, "GET", path, &m), ROUTER_FOUND);
    CHECK_EQ_INT(m.nparams, 1);
    CHECK_EQ_STR(m.params[0].name, "user_id");
    CHECK_EQ_INT(m.params[0].name_len, 7);
    CHECK_EQ_INT(m.params[0].type, ROUTER_PARAM_STR);
    CHECK_EQ_MEM(m.params[0].value, m.params[0].value_len, "alice smith");
    CHECK(m.params[0].value == path + 7); /* points into the caller's path */
    router_free(r);
}

TEST(explicit_str_type_equals_default)
{
    struct router *r = build((const char *[]){"GET", "/u/{name:str}", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/u/x", &m), ROUTER_FOUND);
    CHECK_EQ_INT(m.params[0].type, ROUTER_PARAM_STR);
    CHECK_EQ_INT(router_add(r, "GET", "/u/{other}", T(2), err, sizeof(err)), -1);
    router_free(r);
}

TEST(str_param_rejects_empty_segment)
{
    struct router *r = build((const char *[]){"GET", "/items/{name}", NULL});
    CHECK(get_target(r, "/items/") == NULL);
    CHECK(get_target(r, "/items/a/") == NULL);
    router_free(r);
}

TEST(int_param_accepts_signed_digits)
{
    struct router *r = build((const char *[]){"GET", "/items/{id:int}", NULL});
    struct router_match m;
    const char *ok[] = {"/items/0", "/items/42", "/items/-7", "/items/007",
                        "/items/123456789012345678901234567890"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        CHECK_EQ_INT(match(r, "GET", ok[i], &m), ROUTER_FOUND);
        CHECK_EQ_STR(m.params[0].name, "id");
        CHECK_EQ_INT(m.params[0].type, ROUTER_PARAM_INT);
        CHECK_EQ_MEM(m.params[0].value, m.params[0].value_len, ok[i] + 7);
    }
    router_free(r);
}

TEST(int_param_rejects_non_integers)
{
    struct router *r = build((const char *[]){"GET", "/items/{id:int}", NULL});
    const char *bad[] = {"/items/12a", "/items/a12", "/items/-",  "/items/",   "/items/1.5",
                         "/items/+1",  "/items/1-2", "/items/ 1", "/items/--1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(get_target(r, bad[i]) == NULL);
    router_free(r);
}

TEST(float_param_accepts_decimal_forms)
{
    struct router *r = build((const char *[]){"GET", "/price/{p:float}", NULL});
    struct router_match m;
    const char *ok[] = {"/price/3", "/price/-1.5", "/price/2.", "/price/0.25", "/price/-0"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        CHECK_EQ_INT(match(r, "GET", ok[i], &m), ROUTER_FOUND);
        CHECK_EQ_INT(m.params[0].type, ROUTER_PARAM_FLOAT);
        CHECK_EQ_MEM(m.params[0].value, m.params[0].value_len, ok[i] + 7);
    }
    router_free(r);
}

TEST(float_param_rejects_exponent_inf_nan_and_junk)
{
    struct router *r = build((const char *[]){"GET", "/price/{p:float}", NULL});
    const char *bad[] = {"/price/1e5", "/price/inf", "/price/nan", "/price/.5", "/price/1.2.3",
                         "/price/-",   "/price/-.",  "/price/1.a", "/price/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(get_target(r, bad[i]) == NULL);
    router_free(r);
}

TEST(path_param_captures_remainder_with_slashes)
{
    struct router *r = build((const char *[]){"GET", "/files/{rest:path}", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/files/a/b.txt", &m), ROUTER_FOUND);
    CHECK_EQ_INT(m.nparams, 1);
    CHECK_EQ_STR(m.params[0].name, "rest");
    CHECK_EQ_INT(m.params[0].type, ROUTER_PARAM_PATH);
    CHECK_EQ_MEM(m.params[0].value, m.params[0].value_len, "a/b.txt");
    CHECK_EQ_INT(match(r, "GET", "/files/a//b/", &m), ROUTER_FOUND);
    CHECK_EQ_MEM(m.params[0].value, m.params[0].value_len, "a//b/");
    router_free(r);
}

TEST(path_param_may_be_empty)
{
    struct router *r = build((const char *[]){"GET", "/files/{rest:path}", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/files/", &m), ROUTER_FOUND);
    CHECK_EQ_INT(m.params[0].value_len, 0);
    CHECK(m.params[0].value != NULL);
    router_free(r);
}

TEST(path_param_needs_the_slash_before_it)
{
    struct router *r = build((const char *[]){"GET", "/files/{rest:path}", NULL});
    CHECK(get_target(r, "/files") == NULL);
    CHECK(get_target(r, "/filesx") == NULL);
    router_free(r);
}

TEST(root_path_param_matches_everything)
{
    struct router *r = build((const char *[]){"GET", "/{all:path}", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/", &m), ROUTER_FOUND);
    CHECK_EQ_INT(m.params[0].value_len, 0);
    CHECK_EQ_INT(match(r, "GET", "/x/y/", &m), ROUTER_FOUND);
    CHECK_EQ_MEM(m.params[0].value, m.params[0].value_len, "x/y/");
    router_free(r);
}

TEST(several_params_are_reported_in_order)
{
    struct router *r =
        build((const char *[]){"GET", "/u/{uid:int}/posts/{slug}/v/{ver:float}/{tail:path}", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/u/12/posts/hello/v/1.5/a/b", &m), ROUTER_FOUND);
    CHECK_EQ_INT(m.nparams, 4);
    CHECK_EQ_STR(m.params[0].name, "uid");
    CHECK_EQ_MEM(m.params[0].value, m.params[0].value_len, "12");
    CHECK_EQ_STR(m.params[1].name, "slug");
    CHECK_EQ_MEM(m.params[1].value, m.params[1].value_len, "hello");
    CHECK_EQ_STR(m.params[2].name, "ver");
    CHECK_EQ_INT(m.params[2].type, ROUTER_PARAM_FLOAT);
    CHECK_EQ_MEM(m.params[2].value, m.params[2].value_len, "1.5");
    CHECK_EQ_STR(m.params[3].name, "tail");
    CHECK_EQ_MEM(m.params[3].value, m.params[3].value_len, "a/b");
    router_free(r);
}

TEST(names_come_from_the_matched_route)
{
    /* Same node shape, different methods and names. */
    struct router *r =
        build((const char *[]){"GET", "/items/{item_id}", "DELETE", "/items/{victim}", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/items/5", &m), ROUTER_FOUND);
    CHECK_EQ_STR(m.params[0].name, "item_id");
    CHECK_EQ_INT(match(r, "DELETE", "/items/5", &m), ROUTER_FOUND);
    CHECK_EQ_STR(m.params[0].name, "victim");
    CHECK_EQ_STR(m.pattern, "/items/{victim}");
    router_free(r);
}

TEST(max_params_are_accepted_and_reported)
{
    const char *pat = "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}/{k}/{l}/{m}/{n}/{o}/{p:path}";
    struct router *r = build((const char *[]){"GET", pat, NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/x/y", &m), ROUTER_FOUND);
    CHECK_EQ_INT(m.nparams, ROUTER_MAX_PARAMS);
    CHECK_EQ_STR(m.params[9].name, "j");
    CHECK_EQ_MEM(m.params[9].value, m.params[9].value_len, "10");
    CHECK_EQ_STR(m.params[15].name, "p");
    CHECK_EQ_MEM(m.params[15].value, m.params[15].value_len, "x/y");
    router_free(r);
}

TEST(static_text_may_hold_any_decoded_bytes)
{
    struct router *r = build((const char *[]){"GET", "/caf\xc3\xa9/a b:c%d", NULL});
    CHECK(get_target(r, "/caf\xc3\xa9/a b:c%d") == T(1));
    router_free(r);
}

/* ---- priority and backtracking ---- */

TEST(priority_is_static_int_float_str_path)
{
    struct router *r =
        build((const char *[]){"GET", "/x/{rest:path}", "GET", "/x/{s}", "GET", "/x/{f:float}",
                               "GET", "/x/{i:int}", "GET", "/x/7", NULL});
    CHECK(get_target(r, "/x/7") == T(5));   /* static */
    CHECK(get_target(r, "/x/8") == T(4));   /* int */
    CHECK(get_target(r, "/x/8.5") == T(3)); /* float */
    CHECK(get_target(r, "/x/abc") == T(2)); /* str */
    CHECK(get_target(r, "/x/a/b") == T(1)); /* path */
    CHECK(get_target(r, "/x/") == T(1));    /* only path takes an empty segment */
    router_free(r);
}

TEST(priority_does_not_depend_on_add_order)
{
    struct router *r = build((const char *[]){"GET", "/x/7", "GET", "/x/{i:int}", "GET", "/x/{s}",
                                              "GET", "/x/{rest:path}", NULL});
    CHECK(get_target(r, "/x/7") == T(1));
    CHECK(get_target(r, "/x/8") == T(2));
    CHECK(get_target(r, "/x/abc") == T(3));
    CHECK(get_target(r, "/x/a/b") == T(4));
    router_free(r);
}

TEST(backtracking_falls_back_to_lower_priority_branch)
{
    struct router *r = build((const char *[]){"GET", "/items/{id:int}/x", "GET", "/items/special/y",
                                              "GET", "/items/{name}", NULL});
    struct router_match m;
    CHECK(get_target(r, "/items/5/x") == T(1));
    CHECK(get_target(r, "/items/special/y") == T(2));
    CHECK_EQ_INT(match(r, "GET", "/items/special", &m), ROUTER_FOUND); /* static fails, str */
    CHECK(m.target == T(3));
    CHECK_EQ_MEM(m.params[0].value, m.params[0].value_len, "special");
    CHECK(get_target(r, "/items/5") == T(3)); /* int branch has no end here */
    CHECK(get_target(r, "/items/special/x") == NULL);
    CHECK(get_target(r, "/items/5/y") == NULL);
    router_free(r);
}

TEST(backtracking_resets_params_of_abandoned_branch)
{
    struct router *r =
        build((const char *[]){"GET", "/a/{n:int}/{m:int}/end", "GET", "/a/{s}/{rest:path}", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/a/1/2/other", &m), ROUTER_FOUND);
    CHECK(m.target == T(2));
    CHECK_EQ_INT(m.nparams, 2);
    CHECK_EQ_STR(m.params[0].name, "s");
    CHECK_EQ_MEM(m.params[0].value, m.params[0].value_len, "1");
    CHECK_EQ_STR(m.params[1].name, "rest");
    CHECK_EQ_MEM(m.params[1].value, m.params[1].value_len, "2/other");
    router_free(r);
}

TEST(int_falls_back_to_float_then_str_deeper_down)
{
    struct router *r = build((const char *[]){"GET", "/v/{i:int}/int", "GET", "/v/{f:float}/float",
                                              "GET", "/v/{s}/str", NULL});
    CHECK(get_target(r, "/v/3/int") == T(1));
    CHECK(get_target(r, "/v/3/float") == T(2));
    CHECK(get_target(r, "/v/3/str") == T(3));
    CHECK(get_target(r, "/v/3.5/int") == NULL);
    router_free(r);
}

/* ---- methods ---- */

TEST(head_falls_back_to_get)
{
    struct router *r = build((const char *[]){"GET", "/a", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "HEAD", "/a", &m), ROUTER_FOUND);
    CHECK(m.target == T(1));
    router_free(r);
}

TEST(explicit_head_route_beats_get)
{
    struct router *r = build((const char *[]){"GET", "/a", "HEAD", "/a", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "HEAD", "/a", &m), ROUTER_FOUND);
    CHECK(m.target == T(2));
    CHECK_EQ_INT(match(r, "GET", "/a", &m), ROUTER_FOUND);
    CHECK(m.target == T(1));
    router_free(r);
}

TEST(get_does_not_fall_back_to_head)
{
    struct router *r = build((const char *[]){"HEAD", "/a", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/a", &m), ROUTER_METHOD_NOT_ALLOWED);
    CHECK_EQ_STR(m.allow, "HEAD");
    router_free(r);
}

TEST(method_match_is_exact_and_case_sensitive)
{
    struct router *r = build((const char *[]){"GET", "/a", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "get", "/a", &m), ROUTER_METHOD_NOT_ALLOWED);
    CHECK_EQ_INT(match(r, "GE", "/a", &m), ROUTER_METHOD_NOT_ALLOWED);
    router_free(r);
}

TEST(wildcard_method_matches_any_method)
{
    struct router *r = build((const char *[]){"*", "/any", NULL});
    struct router_match m;
    const char *methods[] = {"GET", "HEAD", "POST", "PROPFIND", "X"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        CHECK_EQ_INT(match(r, methods[i], "/any", &m), ROUTER_FOUND);
        CHECK(m.target == T(1));
    }
    router_free(r);
}

TEST(specific_method_beats_wildcard)
{
    /* A "*" route cannot share a pattern with another method (that is a
     * conflict), so this is about priorities: the static GET route wins for GET
     * and HEAD, the lower-priority "*" route takes the other methods. */
    struct router *r = build((const char *[]){"GET", "/c/x", "*", "/c/{s}", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/c/x", &m), ROUTER_FOUND);
    CHECK(m.target == T(1));
    CHECK_EQ_INT(match(r, "HEAD", "/c/x", &m), ROUTER_FOUND);
    CHECK(m.target == T(1));
    CHECK_EQ_INT(match(r, "POST", "/c/x", &m), ROUTER_FOUND);
    CHECK(m.target == T(2));
    router_free(r);
}

TEST(method_not_allowed_reports_allow)
{
    struct router *r =
        build((const char *[]){"POST", "/items", "GET", "/items", "PUT", "/items", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "DELETE", "/items", &m), ROUTER_METHOD_NOT_ALLOWED);
    CHECK_EQ_STR(m.allow, "GET, HEAD, POST, PUT");
    CHECK(m.target == NULL);
    CHECK_EQ_INT(m.nparams, 0);
    router_free(r);
}

TEST(allow_has_no_duplicates_when_head_is_explicit)
{
    struct router *r = build((const char *[]){"HEAD", "/a", "GET", "/a", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "POST", "/a", &m), ROUTER_METHOD_NOT_ALLOWED);
    CHECK_EQ_STR(m.allow, "GET, HEAD");
    router_free(r);
}

TEST(allow_without_get_has_no_head)
{
    struct router *r = build((const char *[]){"POST", "/a", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "HEAD", "/a", &m), ROUTER_METHOD_NOT_ALLOWED);
    CHECK_EQ_STR(m.allow, "POST");
    router_free(r);
}

TEST(full_match_at_lower_priority_beats_method_not_allowed)
{
    struct router *r =
        build((const char *[]){"GET", "/items/special", "POST", "/items/{name}", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "POST", "/items/special", &m), ROUTER_FOUND);
    CHECK(m.target == T(2));
    CHECK_EQ_MEM(m.params[0].value, m.params[0].value_len, "special");
    CHECK_EQ_INT(match(r, "GET", "/items/special", &m), ROUTER_FOUND);
    CHECK(m.target == T(1));
    CHECK_EQ_INT(m.nparams, 0);
    router_free(r);
}

TEST(method_not_allowed_uses_highest_priority_path_match)
{
    struct router *r =
        build((const char *[]){"GET", "/items/special", "POST", "/items/{name}", NULL});
    struct router_match m;
    CHECK_EQ_INT(match(r, "DELETE", "/items/special", &m), ROUTER_METHOD_NOT_ALLOWED);
    CHECK_EQ_STR(m.allow, "GET, HEAD");
    CHECK_EQ_INT(match(r, "DELETE", "/items/other", &m), ROUTER_METHOD_NOT_ALLOWED);
    CHECK_EQ_STR(m.allow, "POST");
    router_free(r);
}

/* ---- invalid patterns and methods ---- */

TEST(invalid_missing_leading_slash)
{
    expect_invalid("GET", "items", "invalid route pattern 'items': must start with '/'");
    expect_invalid("GET", "", "invalid route pattern '': must start with '/'");
}

TEST(invalid_unclosed_brace)
{
    expect_invalid("GET", "/a/{b", "invalid route pattern '/a/{b': unclosed '{'");
    expect_invalid("GET", "/a/{b/c}", "invalid route pattern '/a/{b/c}': unclosed '{'");
    expect_invalid("GET", "/a/x{b", "invalid route pattern '/a/x{b': unclosed '{'");
}

TEST(invalid_unmatched_closing_brace)
{
    expect_invalid("GET", "/a/b}", "invalid route pattern '/a/b}': unmatched '}'");
}

TEST(invalid_partial_segment_parameter)
{
    expect_invalid("GET", "/file-{id}.txt",
                   "invalid route pattern '/file-{id}.txt': a parameter must fill a whole "
                   "segment, found 'file-{id}.txt'");
    expect_invalid("GET", "/{id}.txt",
                   "invalid route pattern '/{id}.txt': a parameter must fill a whole segment, "
                   "found '{id}.txt'");
    expect_invalid("GET", "/{a}{b}",
                   "invalid route pattern '/{a}{b}': a parameter must fill a whole segment, "
                   "found '{a}{b}'");
}

TEST(invalid_empty_parameter_name)
{
    expect_invalid("GET", "/a/{}", "invalid route pattern '/a/{}': empty parameter name in '{}'");
    expect_invalid("GET", "/a/{:int}",
                   "invalid route pattern '/a/{:int}': empty parameter name in '{:int}'");
}

TEST(invalid_parameter_name)
{
    expect_invalid("GET", "/a/{1x}",
                   "invalid route pattern '/a/{1x}': invalid parameter name '1x' (expected "
                   "[A-Za-z_][A-Za-z0-9_]*)");
    expect_invalid("GET", "/a/{x-y}",
                   "invalid route pattern '/a/{x-y}': invalid parameter name 'x-y' (expected "
                   "[A-Za-z_][A-Za-z0-9_]*)");
    expect_invalid("GET", "/a/{ x }",
                   "invalid route pattern '/a/{ x }': invalid parameter name ' x ' (expected "
                   "[A-Za-z_][A-Za-z0-9_]*)");
    expect_invalid("GET", "/a/{{x}",
                   "invalid route pattern '/a/{{x}': invalid parameter name '{x' (expected "
                   "[A-Za-z_][A-Za-z0-9_]*)");
}

TEST(invalid_unknown_parameter_type)
{
    expect_invalid("GET", "/a/{id:uuid}",
                   "invalid route pattern '/a/{id:uuid}': unknown parameter type 'uuid' "
                   "(expected str, int, float or path)");
    expect_invalid("GET", "/a/{id:}",
                   "invalid route pattern '/a/{id:}': unknown parameter type '' (expected str, "
                   "int, float or path)");
    expect_invalid("GET", "/a/{id:INT}",
                   "invalid route pattern '/a/{id:INT}': unknown parameter type 'INT' "
                   "(expected str, int, float or path)");
}

TEST(invalid_duplicate_parameter_name)
{
    expect_invalid("GET", "/a/{id}/b/{id:int}",
                   "invalid route pattern '/a/{id}/b/{id:int}': duplicate parameter name 'id'");
}

TEST(invalid_empty_segment_in_the_middle)
{
    expect_invalid("GET", "/a//b", "invalid route pattern '/a//b': empty segment ('//')");
    expect_invalid("GET", "//", "invalid route pattern '//': empty segment ('//')");
    expect_invalid("GET", "/a//", "invalid route pattern '/a//': empty segment ('//')");
}

TEST(invalid_path_parameter_not_last)
{
    expect_invalid("GET", "/files/{rest:path}/x",
                   "invalid route pattern '/files/{rest:path}/x': '{rest:path}' must be the last "
                   "segment");
    expect_invalid("GET", "/files/{rest:path}/",
                   "invalid route pattern '/files/{rest:path}/': '{rest:path}' must be the last "
                   "segment");
}

TEST(invalid_too_many_parameters)
{
    expect_invalid("GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}/{k}/{l}/{m}/{n}/{o}/{p}/{q}",
                   "invalid route pattern "
                   "'/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}/{k}/{l}/{m}/{n}/{o}/{p}/{q}': more "
                   "than 16 parameters");
}

TEST(invalid_control_character_in_pattern)
{
    expect_invalid("GET", "/a\nb", "invalid route pattern: contains a control character");
}

TEST(invalid_method)
{
    expect_invalid("get", "/a",
                   "invalid method 'get': expected an upper-case token such as GET, or '*'");
    expect_invalid("", "/a", "invalid method '': expected an upper-case token such as GET, or '*'");
    expect_invalid("GET POST", "/a",
                   "invalid method 'GET POST': expected an upper-case token such as GET, or '*'");
    expect_invalid("G\r", "/a", "invalid method: contains a control character");
}

TEST(invalid_route_leaves_router_usable)
{
    struct router *r = build((const char *[]){"GET", "/a/{x:int}", NULL});
    CHECK_EQ_INT(router_add(r, "GET", "/a/{x:int}/b/{y:bad}", T(2), err, sizeof(err)), -1);
    CHECK_EQ_INT(router_count(r), 1);
    CHECK(get_target(r, "/a/1") == T(1));
    CHECK(get_target(r, "/a/1/b/2") == NULL);
    router_free(r);
}

TEST(error_is_truncated_to_errlen_and_err_may_be_null)
{
    struct router *r = router_new();
    char small[12];
    memset(small, 'x', sizeof(small));
    CHECK_EQ_INT(router_add(r, "GET", "/a/{b", T(1), small, sizeof(small)), -1);
    CHECK_EQ_STR(small, "invalid rou");
    CHECK_EQ_INT(router_add(r, "GET", "/a/{b", T(1), NULL, 0), -1);
    CHECK_EQ_INT(router_add(r, "GET", "/a", T(1), NULL, 0), 0);
    CHECK_EQ_INT(router_add(r, "GET", "/a", T(1), NULL, 0), -1);
    router_free(r);
}

/* ---- conflicts ---- */

TEST(conflict_same_shape_different_names)
{
    struct router *r = build((const char *[]){"GET", "/items/{item_id}", NULL});
    CHECK_EQ_INT(router_add(r, "GET", "/items/{id}", T(2), err, sizeof(err)), -1);
    CHECK_EQ_STR(err, "route GET /items/{id} conflicts with GET /items/{item_id}");
    CHECK_EQ_INT(router_count(r), 1);
    router_free(r);
}

TEST(conflict_identical_static_route)
{
    struct router *r = build((const char *[]){"POST", "/a/b/", NULL});
    CHECK_EQ_INT(router_add(r, "POST", "/a/b/", T(2), err, sizeof(err)), -1);
    CHECK_EQ_STR(err, "route POST /a/b/ conflicts with POST /a/b/");
    router_free(r);
}

TEST(conflict_wildcard_against_any_method)
{
    struct router *r = build((const char *[]){"GET", "/a/{x:int}", "*", "/b", NULL});
    CHECK_EQ_INT(router_add(r, "*", "/a/{y:int}", T(3), err, sizeof(err)), -1);
    CHECK_EQ_STR(err, "route * /a/{y:int} conflicts with GET /a/{x:int}");
    CHECK_EQ_INT(router_add(r, "DELETE", "/b", T(3), err, sizeof(err)), -1);
    CHECK_EQ_STR(err, "route DELETE /b conflicts with * /b");
    router_free(r);
}

TEST(no_conflict_for_different_methods)
{
    struct router *r = build((const char *[]){"GET", "/items/{id}", "POST", "/items/{name}", "HEAD",
                                              "/items/{x}", NULL});
    CHECK_EQ_INT(router_count(r), 3);
    router_free(r);
}

TEST(no_conflict_for_different_types_at_same_position)
{
    struct router *r =
        build((const char *[]){"GET", "/v/{a}", "GET", "/v/{a:int}", "GET", "/v/{a:float}", "GET",
                               "/v/{a:path}", "GET", "/v/static", NULL});
    CHECK_EQ_INT(router_count(r), 5);
    router_free(r);
}

TEST(no_conflict_for_trailing_slash_or_length)
{
    struct router *r =
        build((const char *[]){"GET", "/a", "GET", "/a/", "GET", "/a/{b}", "GET", "/a/{b}/", NULL});
    CHECK_EQ_INT(router_count(r), 4);
    router_free(r);
}

/* ---- scale and iteration ---- */

TEST(many_routes_still_match_correctly)
{
    enum { N = 1000 };
    struct router *r = router_new();
    char pat[64], path[64];
    for (int i = 0; i < N; i++) {
        /* Insert in a scrambled order to exercise sorted insertion. */
        int k = (i * 7919) % N;
        snprintf(pat, sizeof(pat), "/svc%d/items/{id:int}", k);
        CHECK_EQ_INT(router_add(r, "GET", pat, T(2 * k + 1), err, sizeof(err)), 0);
        snprintf(pat, sizeof(pat), "/svc%d/{name}", k);
        CHECK_EQ_INT(router_add(r, "POST", pat, T(2 * k + 2), err, sizeof(err)), 0);
    }
    CHECK_EQ_INT(router_count(r), 2 * N);
    struct router_match m;
    for (int k = 0; k < N; k++) {
        snprintf(path, sizeof(path), "/svc%d/items/%d", k, k * 3);
        CHECK_EQ_INT(match(r, "GET", path, &m), ROUTER_FOUND);
        CHECK(m.target == T(2 * k + 1));
        snprintf(pat, sizeof(pat), "%d", k * 3);
        CHECK_EQ_MEM(m.params[0].value, m.params[0].value_len, pat);
        snprintf(path, sizeof(path), "/svc%d/thing", k);
        CHECK_EQ_INT(match(r, "POST", path, &m), ROUTER_FOUND);
        CHECK(m.target == T(2 * k + 2));
        CHECK_EQ_INT(match(r, "GET", path, &m), ROUTER_METHOD_NOT_ALLOWED);
        CHECK_EQ_STR(m.allow, "POST");
    }
    CHECK_EQ_INT(match(r, "GET", "/svc1000/items/1", &m), ROUTER_NOT_FOUND);
    CHECK_EQ_INT(match(r, "GET", "/svc/items/1", &m), ROUTER_NOT_FOUND);
    router_free(r);
}

TEST(route_at_iterates_in_add_order)
{
    struct router *r = build((const char *[]){"GET", "/b", "POST", "/a/{x:int}", "*", "/", NULL});
    CHECK_EQ_INT(router_count(r), 3);
    const char *method, *pattern;
    void *target;
    CHECK_EQ_INT(router_route_at(r, 0, &method, &pattern, &target), 0);
    CHECK_EQ_STR(method, "GET");
    CHECK_EQ_STR(pattern, "/b");
    CHECK(target == T(1));
    CHECK_EQ_INT(router_route_at(r, 1, &method, &pattern, &target), 0);
    CHECK_EQ_STR(method, "POST");
    CHECK_EQ_STR(pattern, "/a/{x:int}");
    CHECK(target == T(2));
    CHECK_EQ_INT(router_route_at(r, 2, &method, &pattern, &target), 0);
    CHECK_EQ_STR(method, "*");
    CHECK_EQ_STR(pattern, "/");
    CHECK(target == T(3));
    CHECK_EQ_INT(router_route_at(r, 3, &method, &pattern, &target), -1);
    CHECK_EQ_INT(router_route_at(r, (size_t)-1, NULL, NULL, NULL), -1);
    CHECK_EQ_INT(router_route_at(r, 0, NULL, NULL, NULL), 0);
    router_free(r);
}

TEST(router_keeps_its_own_copies_of_strings)
{
    struct router *r = router_new();
    char method[] = "GET", pattern[] = "/a/{id}";
    CHECK_EQ_INT(router_add(r, method, pattern, T(1), err, sizeof(err)), 0);
    memset(method, 'X', 3);
    memset(pattern + 1, 'z', strlen(pattern) - 1);
    struct router_match m;
    CHECK_EQ_INT(match(r, "GET", "/a/1", &m), ROUTER_FOUND);
    CHECK_EQ_STR(m.pattern, "/a/{id}");
    CHECK_EQ_STR(m.params[0].name, "id");
    router_free(r);
}

TEST(free_accepts_null)
{
    router_free(NULL);
    CHECK_EQ_INT(router_count(NULL), 0);
}

CHECK_MAIN()
