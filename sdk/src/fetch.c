/* fetch: outbound HTTP for async handlers, and answering as a gateway
 * when it fails. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

int evicorn_fetch_get(evicorn_request *req, const char *url, double timeout, evicorn_fetch_fn fn,
                      void *ud)
{
    evicorn_fetch_options o = {
        .size = sizeof o,
        .method = "GET",
        .url = url,
        .timeout = timeout > 0 ? timeout : 0,
        /* The whole exchange includes connecting: a short timeout must not
         * wait out the host's longer connect default. */
        .connect_timeout = timeout > 0 && timeout < 5 ? timeout : 0,
    };
    return evicorn_sdk_api_->fetch(req, &o, fn, ud);
}

int evicorn_fetch_error_status(const evicorn_fetch_result *res)
{
    if (!res || res->error == 0)
        return 0;
    return res->error == EVICORN_ETIMEDOUT ? 504 : 502;
}

int evicorn_fetch_respond_error(evicorn_request *req, const evicorn_fetch_result *res)
{
    int status = evicorn_fetch_error_status(res);
    if (!status)
        return EVICORN_EINVAL;
    char detail[512];
    snprintf(detail, sizeof detail, "upstream request %s: %s",
             status == 504 ? "timed out" : "failed",
             res->error_message ? res->error_message : "unknown error");
    return evicorn_respond_error(req, status, detail);
}

evicorn_str evicorn_fetch_header(const evicorn_fetch_result *res, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; res && i < res->nheaders; i++) {
        const evicorn_header *h = &res->headers[i];
        if (h->name_len == n && strncmp(h->name, name, n) == 0)
            return (evicorn_str){h->value, h->value_len};
    }
    return (evicorn_str){NULL, 0};
}
