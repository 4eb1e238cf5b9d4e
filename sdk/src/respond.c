/* respond: whole responses in one call (text, JSON, FastAPI's errors).
 *
 * Each builds the body in a buffer and makes a single respond call, so
 * the host writes headers and body together with Content-Length. */
#include <stdio.h>
#include <string.h>

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
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Request Entity Too Large";
    case 414:
        return "Request-URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Requested Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 418:
        return "I'm a Teapot";
    case 422:
        return "Unprocessable Entity";
    case 423:
        return "Locked";
    case 425:
        return "Too Early";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 451:
        return "Unavailable For Legal Reasons";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}
