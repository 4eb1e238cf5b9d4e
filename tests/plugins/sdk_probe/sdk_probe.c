/* sdk_probe: a test-only plugin exposing the SDK's conversions over HTTP, so
 * tests/http/test_examples.py can compare them with FastAPI's own answers
 * for the same requests. Every route mirrors a FastAPI endpoint written
 * next to it in comments. */
#include <stdlib.h>
#include <string.h>

#include <evicorn/sdk.h>

/* @app.get("/sdk/items/{item_id}")
 * def items(item_id: int, q: float = 1.0, flag: bool = False,
 *           s: Optional[str] = None) */
static void items(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_errors errs = EVICORN_ERRORS_INIT;
    long long id = evicorn_path_int(req, "item_id", &errs);
    double q = evicorn_query_float(req, "q", 1.0, &errs);
    int flag = evicorn_query_bool(req, "flag", 0, &errs);
    char *s = evicorn_query_str(req, "s", NULL, &errs);
    if (evicorn_errors_any(&errs)) {
        free(s);
        evicorn_respond_validation(req, &errs);
        return;
    }
    json_t *out =
        json_pack("{s:I, s:f, s:b, s:s?}", "item_id", (json_int_t)id, "q", q, "flag", flag, "s", s);
    free(s);
    evicorn_respond_json(req, 200, out);
}

/* @app.get("/sdk/price/{price}")
 * def price(price: float, n: int) */
static void price(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_errors errs = EVICORN_ERRORS_INIT;
    double p = evicorn_path_float(req, "price", &errs);
    evicorn_query_require(req, "n", &errs);
    long long n = evicorn_query_int(req, "n", 0, &errs);
    if (evicorn_errors_any(&errs)) {
        evicorn_respond_validation(req, &errs);
        return;
    }
    evicorn_respond_json(req, 200, json_pack("{s:f, s:I}", "price", p, "n", (json_int_t)n));
}

/* @app.get("/sdk/tags")
 * def tags(tag: List[str] = Query([])) */
static void tags(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_respond_json(req, 200, json_pack("{s:o?}", "tag", evicorn_query_list(req, "tag")));
}

/* @app.post("/sdk/echo")
 * def echo(body: Any = Body(...)): return body */
static void echo(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_errors errs = EVICORN_ERRORS_INIT;
    json_t *v = evicorn_json_body(req, &errs);
    if (!v) {
        evicorn_respond_validation(req, &errs);
        return;
    }
    evicorn_respond_json(req, 200, v);
}

/* @app.post("/sdk/floats")
 * def floats(data: Dict[str, float]): return {"result": sum(data.values())} */
static void floats(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_errors errs = EVICORN_ERRORS_INIT;
    json_t *body = evicorn_json_body(req, &errs);
    double sum = 0;
    if (evicorn_json_expect_object(body, &errs) == 0) {
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v)
        {
            double x;
            json_t *loc = json_pack("[ss]", "body", key);
            if (evicorn_json_to_float(v, loc, &x, &errs) == 0)
                sum += x;
            json_decref(loc);
        }
    }
    if (evicorn_errors_any(&errs)) {
        json_decref(body);
        evicorn_respond_validation(req, &errs);
        return;
    }
    /* Python's sum() of no values is the integer 0. */
    json_t *result = json_object_size(body) ? json_real(sum) : json_integer(0);
    json_decref(body);
    evicorn_respond_json(req, 200, json_pack("{s:o}", "result", result));
}

/* The same body read from an async handler: read_body, then the helpers. */
static void async_echo_body(evicorn_request *req, void *ud, const char *chunk, size_t len, int more,
                            int status)
{
    (void)ud;
    (void)chunk;
    (void)len;
    (void)more;
    if (status == EVICORN_ECANCELED || status == EVICORN_EPIPE)
        return;
    if (status == EVICORN_EMSGSIZE)
        return; /* the host has answered 413 */
    echo(req, NULL);
}

static void async_echo(evicorn_request *req, void *data)
{
    (void)data;
    if (evicorn_read_body(req, async_echo_body, NULL) < 0)
        evicorn_respond_error(req, 500, NULL);
}

/* @app.get("/sdk/error/{status}") raises HTTPException(status) */
static void error(evicorn_request *req, void *data)
{
    (void)data;
    long long status = evicorn_path_int(req, "status", NULL);
    char *detail = evicorn_query_str(req, "detail", NULL, NULL);
    evicorn_respond_error(req, (int)status, detail);
    free(detail);
}

/* Streams `n` chunks of "chunk <i>\n" with evicorn_start/evicorn_send. */
static void stream(evicorn_request *req, void *data)
{
    (void)data;
    long long n = evicorn_query_int(req, "n", 3, NULL);
    static const evicorn_header h[] = {{"content-type", 12, "text/plain; charset=utf-8", 25}};
    if (evicorn_start(req, 200, h, 1, -1) < 0)
        return;
    for (long long i = 0; i < n; i++) {
        evicorn_buf b = EVICORN_BUF_INIT;
        evicorn_buf_printf(&b, "chunk %lld\n", i);
        int rc = b.failed ? EVICORN_ENOMEM : evicorn_send(req, b.data, b.len, 1);
        evicorn_buf_free(&b);
        if (rc < 0)
            return;
    }
    evicorn_send(req, NULL, 0, 0);
}

static const evicorn_route routes[] = {
    EVICORN_GET("/sdk/items/{item_id}", items),
    EVICORN_GET_SYNC("/sdk/price/{price}", price),
    EVICORN_GET("/sdk/tags", tags),
    EVICORN_POST_SYNC("/sdk/echo", echo),
    EVICORN_POST("/sdk/async-echo", async_echo),
    EVICORN_POST_SYNC("/sdk/floats", floats),
    EVICORN_GET("/sdk/error/{status}", error),
    EVICORN_GET_SYNC("/sdk/stream", stream),
};

EVICORN_PLUGIN("sdk_probe", "0.0.0", routes, NULL, NULL)
