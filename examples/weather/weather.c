/* weather: an async route that waits without blocking.
 *
 *   GET /weather/{city}  -> after 1 s: {"city":"<city>","temperature":"25°C"}
 *
 * FastAPI's `await asyncio.sleep(1)`: the handler hands a continuation to
 * the host's timer and returns at once, so one worker keeps thousands of
 * these waiting while it serves other requests. The city is read again in
 * the continuation: the request (and its path) lives until the response,
 * so nothing needs to be allocated or freed here. */
#include <evicorn/sdk.h>

static void answer(evicorn_request *req, void *ud, int status)
{
    (void)ud;
    if (status == EVICORN_ECANCELED)
        return; /* the client left: nobody to answer, nothing to free */
    evicorn_str city = evicorn_path_str(req, "city", NULL);
    evicorn_buf b = EVICORN_BUF_INIT;
    evicorn_buf_puts(&b, "{\"city\":");
    evicorn_buf_json_string(&b, city.ptr, city.len);
    evicorn_buf_puts(&b, ",\"temperature\":\"25\xC2\xB0"
                         "C\"}");
    if (b.failed)
        evicorn_respond_error(req, 500, NULL);
    else
        evicorn_respond_bytes(req, 200, "application/json", b.data, b.len);
    evicorn_buf_free(&b);
}

static void weather(evicorn_request *req, void *data)
{
    (void)data;
    int rc = evicorn_sleep(req, 1.0, answer, NULL);
    if (rc < 0 && rc != EVICORN_EPIPE) {
        evicorn_log(req, EVICORN_LOG_ERROR, "cannot start the timer (%d)", rc);
        evicorn_respond_error(req, 500, NULL);
    }
}

static const evicorn_route routes[] = {
    EVICORN_GET("/weather/{city}", weather),
};

EVICORN_PLUGIN("weather", "1.0.0", routes, NULL, NULL)
