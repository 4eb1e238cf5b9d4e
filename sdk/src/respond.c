/* respond: whole responses in one call (text, JSON, FastAPI's errors).
 *
 * Each builds the body in a buffer and makes a single respond call, so
 * the host writes headers and body together with Content-Length. */
#include <stdio.h>
#include <string.h>

#include <evicorn/status.h>

#include "internal.h"

int evicorn_respond_bytes(evicorn_request *req, int status, const char *content_type,
                          const void *body, size_t len)
{
    evicorn_header h = {"content-type", 12, content_type, content_type ? strlen(content_type) : 0};
    return evicorn_sdk_api_->respond(req, status, &h, content_type ? 1 : 0, body, len);
}

int evicorn_respond_text(evicorn_request *req, int status, const char *content_type,
                         const char *text)
{
    return evicorn_respond_bytes(req, status,
                                 content_type ? content_type : "text/plain; charset=utf-8", text,
                                 text ? strlen(text) : 0);
}

int evicorn_respond_json(evicorn_request *req, int status, json_t *value)
{
    if (!value)
        return EVICORN_ENOMEM;
    evicorn_buf b = EVICORN_BUF_INIT;
    int rc = evicorn_buf_json(&b, value);
    json_decref(value);
    if (rc == 0)
        rc = evicorn_respond_bytes(req, status, "application/json", b.data, b.len);
    evicorn_buf_free(&b);
    return rc;
}

int evicorn_respond_error(evicorn_request *req, int status, const char *detail)
{
    evicorn_buf b = EVICORN_BUF_INIT;
    if (!detail)
        detail = evicorn_status_reason(status);
    evicorn_buf_append(&b, "{\"detail\":", 10);
    evicorn_buf_json_string(&b, detail, strlen(detail));
    evicorn_buf_append(&b, "}", 1);
    int rc = b.failed ? EVICORN_ENOMEM
                      : evicorn_respond_bytes(req, status, "application/json", b.data, b.len);
    evicorn_buf_free(&b);
    return rc;
}

const char *evicorn_status_reason(int status)
{
    /* The list the server writes in its status lines (abi/evicorn/status.h). */
    switch (status) {
#define REASON(code, text)                                                                         \
    case code:                                                                                     \
        return text;
        EVICORN_STATUS_REASONS(REASON)
#undef REASON
    }
    return "Unknown";
}
