/* Kore peer for the evicorn benchmarks: the same two routes as the hello
 * example plugin, answering with fixed bodies. Built by `kodev build` from
 * Debian's kore package (see bench/run); loaded by conf/bench.conf. */
#include <kore/kore.h>
#include <kore/http.h>

int plaintext(struct http_request *);
int json(struct http_request *);

static const char plaintext_body[] = "Hello, World!";
static const char json_body[] = "{\"message\":\"Hello, World!\"}";

int plaintext(struct http_request *req)
{
    http_response_header(req, "content-type", "text/plain");
    http_response(req, 200, plaintext_body, sizeof(plaintext_body) - 1);
    return (KORE_RESULT_OK);
}

int json(struct http_request *req)
{
    http_response_header(req, "content-type", "application/json");
    http_response(req, 200, json_body, sizeof(json_body) - 1);
    return (KORE_RESULT_OK);
}
