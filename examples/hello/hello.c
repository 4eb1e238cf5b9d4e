/* hello: the smallest plugin, and the fast path.
 *
 *   GET /           {"Hello":"World"}
 *   GET /plaintext  Hello, World!   (text/plain)
 *   GET /json       {"message":"Hello, World!"}
 *
 * These are the benchmark routes, so each answer is a constant: bodies and
 * headers are built at compile time and every request costs one call to
 * the host, with no allocation and no JSON library. */
#include <evicorn/sdk.h>

#define LIT(s) s, sizeof(s) - 1

static const evicorn_header json_headers[] = {{LIT("content-type"), LIT("application/json")}};
static const evicorn_header text_headers[] = {
    {LIT("content-type"), LIT("text/plain; charset=utf-8")}};

static const char root_body[] = "{\"Hello\":\"World\"}";
static const char plaintext_body[] = "Hello, World!";
static const char json_body[] = "{\"message\":\"Hello, World!\"}";

static void root(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_respond(req, 200, json_headers, 1, root_body, sizeof root_body - 1);
}

static void plaintext(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_respond(req, 200, text_headers, 1, plaintext_body, sizeof plaintext_body - 1);
}

static void json(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_respond(req, 200, json_headers, 1, json_body, sizeof json_body - 1);
}

static const evicorn_route routes[] = {
    EVICORN_GET("/", root),
    EVICORN_GET("/plaintext", plaintext),
    EVICORN_GET("/json", json),
};

EVICORN_PLUGIN("hello", "1.0.0", routes, NULL, NULL)
