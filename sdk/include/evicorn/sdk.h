/* evicorn SDK: what a plugin author writes against.
 *
 * evicorn/abi.h is the contract between the server and a plugin; this
 * header is a convenience layer over it, compiled into the plugin itself
 * (libevicorn_sdk.a, linked statically, every symbol hidden). It gives:
 *
 *   - EVICORN_PLUGIN: defines the one exported symbol and the descriptor;
 *   - thin wrappers over the host's function table (evicorn_respond, ...);
 *   - responses: text, JSON (byte for byte FastAPI's JSONResponse) and
 *     FastAPI's {"detail": ...} errors;
 *   - printf-style logging;
 *   - path and query parameters converted as FastAPI (pydantic 1) does,
 *     and 422 responses shaped exactly like FastAPI 0.92's;
 *   - JSON request bodies (jansson values);
 *   - outbound HTTP: whole responses, streamed ones (1.4) and a reverse
 *     proxy helper;
 *   - WebSocket routes: accept, send text/binary/JSON, close, and groups
 *     of connections to broadcast to;
 *   - files (1.5): responses the server sends with sendfile(2), ranges
 *     and validators included, and file I/O on the thread pool.
 *
 * A complete plugin:
 *
 *     #include <evicorn/sdk.h>
 *
 *     static void hello(evicorn_request *req, void *data)
 *     {
 *         (void)data;
 *         evicorn_respond_text(req, 200, NULL, "Hello, World!");
 *     }
 *
 *     static const evicorn_route routes[] = {
 *         EVICORN_GET("/hello", hello),
 *     };
 *
 *     EVICORN_PLUGIN("hello", "1.0.0", routes, NULL, NULL)
 *
 * Build it with `cc -shared -fPIC hello.c $(pkg-config --cflags --libs
 * evicorn) -o hello.so`, or evicorn_add_plugin() in CMake, and drop it into
 * the server's plugins folder (docs/plugins.md).
 *
 * Conventions:
 *   - Functions returning int return 0 (or a documented count) or a
 *     negative EVICORN_E* code from abi.h.
 *   - Threads: everything here may be called from whichever thread runs
 *     the handler (the loop for EVICORN_ASYNC routes, a pool thread for
 *     EVICORN_SYNC ones) unless it says "loop thread only": those are the
 *     host's async operations, which answer EVICORN_EPERM elsewhere.
 *   - Memory: a function that hands the caller something to free says so
 *     and names the function to free it with. For jansson values, "steals"
 *     means the function takes over the caller's reference (as jansson's
 *     json_object_set_new does), whether it succeeds or not; "new
 *     reference" means the caller must json_decref the result.
 *   - Strings from the host (evicorn_str) are not NUL-terminated and live
 *     as long as the request; print them with "%.*s", (int)s.len, s.ptr.
 */
#ifndef EVICORN_SDK_H
#define EVICORN_SDK_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <evicorn/abi.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EVICORN_SDK_VERSION "0.1.0"

/* The oldest host minor this plugin needs; EVICORN_PLUGIN puts it in the
 * descriptor, and a host older than that refuses the plugin. The SDK uses
 * only ABI 1.0 calls (it checks EVICORN_API_HAS before anything newer), so
 * 0 is right unless the plugin itself calls a later function without
 * checking. Define it before including this header to raise it. */
#ifndef EVICORN_PLUGIN_MIN_ABI_MINOR
#define EVICORN_PLUGIN_MIN_ABI_MINOR 0
#endif

/* Returned by a wrapper whose host function is missing from the host's
 * table (a host older than the minor that added it). */
#ifndef EVICORN_ENOSYS
#define EVICORN_ENOSYS (-38)
#endif

#if defined(__GNUC__)
#define EVICORN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define EVICORN_PRINTF(f, a)
#endif

/* Everything declared below is internal to the plugin: even a plugin built
 * without -fvisibility=hidden exports nothing of the SDK's. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* ======================================================================
 * Defining a plugin
 * ====================================================================== */

/* One route. method: "GET", "POST", ... or "*"; path: a template such as
 * "/items/{item_id}" (parameter types "{id:int}", "{x:float}",
 * "{rest:path}" make the router itself refuse a non-matching path with a
 * 404; plain "{name}" plus evicorn_path_int gives FastAPI's 422 instead);
 * kind: EVICORN_ASYNC or EVICORN_SYNC (see abi.h); handler:
 * void fn(evicorn_request *req, void *data). */
#define EVICORN_ROUTE(method_, path_, kind_, handler_)                                             \
    EVICORN_ROUTE_DATA(method_, path_, kind_, handler_, NULL)
/* The same with a pointer handed to the handler as its second argument. */
#define EVICORN_ROUTE_DATA(method_, path_, kind_, handler_, data_)                                 \
    {                                                                                              \
        .size = sizeof(evicorn_route), .method = (method_), .path = (path_), .kind = (kind_),      \
        .handler = (handler_), .data = (data_)                                                     \
    }

/* Shorthands. The plain ones are async (FastAPI's `async def`: run on the
 * event loop, must not block); the _SYNC ones run on the thread pool and
 * may block (FastAPI's plain `def`). */
#define EVICORN_GET(path, handler)         EVICORN_ROUTE("GET", path, EVICORN_ASYNC, handler)
#define EVICORN_POST(path, handler)        EVICORN_ROUTE("POST", path, EVICORN_ASYNC, handler)
#define EVICORN_PUT(path, handler)         EVICORN_ROUTE("PUT", path, EVICORN_ASYNC, handler)
#define EVICORN_PATCH(path, handler)       EVICORN_ROUTE("PATCH", path, EVICORN_ASYNC, handler)
#define EVICORN_DELETE(path, handler)      EVICORN_ROUTE("DELETE", path, EVICORN_ASYNC, handler)
#define EVICORN_GET_SYNC(path, handler)    EVICORN_ROUTE("GET", path, EVICORN_SYNC, handler)
#define EVICORN_POST_SYNC(path, handler)   EVICORN_ROUTE("POST", path, EVICORN_SYNC, handler)
#define EVICORN_PUT_SYNC(path, handler)    EVICORN_ROUTE("PUT", path, EVICORN_SYNC, handler)
#define EVICORN_PATCH_SYNC(path, handler)  EVICORN_ROUTE("PATCH", path, EVICORN_SYNC, handler)
#define EVICORN_DELETE_SYNC(path, handler) EVICORN_ROUTE("DELETE", path, EVICORN_SYNC, handler)

/* Checks the host and remembers its function table for the SDK; used by
 * EVICORN_PLUGIN, not meant to be called directly. Returns desc, or NULL
 * after logging why when the host speaks another major ABI version or a
 * minor older than desc->abi_minor. */
const evicorn_plugin *evicorn_sdk_negotiate(const evicorn_host *host, const evicorn_plugin *desc);

/* The entry keeps its C name in a C++ plugin too. */
#ifdef __cplusplus
#define EVICORN_SDK_EXTERN_C extern "C"
#else
#define EVICORN_SDK_EXTERN_C
#endif

/* Refuses to compile when `a` is a pointer rather than an array (its
 * element count would silently be wrong). */
#if defined(__GNUC__) && !defined(__cplusplus)
#define EVICORN_SDK_ASSERT_ARRAY_(a)                                                               \
    _Static_assert(!__builtin_types_compatible_p(__typeof__(a), __typeof__(&(a)[0])),              \
                   "EVICORN_PLUGIN: routes must be an array, not a pointer")
#else
#define EVICORN_SDK_ASSERT_ARRAY_(a) ((void)0)
#endif

/* Defines evicorn_plugin_entry, the only symbol a plugin exports.
 *   name, version: string literals, shown in logs and on the status page;
 *   routes: a static array of evicorn_route (not a pointer: its size is
 *           taken with sizeof);
 *   startup: int fn(void **state, char *err, size_t errlen) or NULL. Runs
 *           on the loop thread before any route is served; may store a
 *           pointer in *state (handlers read it with evicorn_state). To
 *           refuse the load, write a reason into err and return nonzero:
 *           the previous version of the plugin keeps serving;
 *   shutdown: void fn(void *state) or NULL. Runs once this version's last
 *           request, continuation and background task have finished: free
 *           the state there.
 * Use it once, at file scope, in one of the plugin's files. */
#define EVICORN_PLUGIN(name_, version_, routes_, startup_, shutdown_)                              \
    EVICORN_SDK_EXTERN_C EVICORN_EXPORT const evicorn_plugin *evicorn_plugin_entry(                \
        const evicorn_host *evicorn_host_);                                                        \
    EVICORN_SDK_EXTERN_C EVICORN_EXPORT const evicorn_plugin *evicorn_plugin_entry(                \
        const evicorn_host *evicorn_host_)                                                         \
    {                                                                                              \
        static const evicorn_plugin desc = {                                                       \
            .size = sizeof(evicorn_plugin),                                                        \
            .abi_major = EVICORN_ABI_MAJOR,                                                        \
            .abi_minor = EVICORN_PLUGIN_MIN_ABI_MINOR,                                             \
            .name = (name_),                                                                       \
            .version = (version_),                                                                 \
            .routes = (routes_),                                                                   \
            .nroutes = (uint32_t)(sizeof(routes_) / sizeof((routes_)[0])),                         \
            .route_size = sizeof(evicorn_route),                                                   \
            .startup = (startup_),                                                                 \
            .shutdown = (shutdown_),                                                               \
        };                                                                                         \
        EVICORN_SDK_ASSERT_ARRAY_(routes_);                                                        \
        return evicorn_sdk_negotiate(evicorn_host_, &desc);                                        \
    }

/* ======================================================================
 * The host's function table
 * ====================================================================== */

/* Set once by evicorn_plugin_entry; internal to the plugin. */
extern const evicorn_api *evicorn_sdk_api_;

/* The host's function table, for calls the SDK does not wrap. NULL until
 * the host has called evicorn_plugin_entry. Before calling a function
 * added after ABI 1.0, check EVICORN_HAS(fn). */
static inline const evicorn_api *evicorn_host_api(void)
{
    return evicorn_sdk_api_;
}

/* Whether the host's table has function `fn`, e.g. EVICORN_HAS(fetch). */
#define EVICORN_HAS(fn) (evicorn_sdk_api_ != NULL && EVICORN_API_HAS(evicorn_sdk_api_, fn))

/* The wrappers below call the host directly: each function exists since
 * ABI 1.0, and the contract of each is the one written in abi.h. A wrapper
 * for a function added in a later minor returns EVICORN_ENOSYS (or an
 * empty value) when the host's table lacks it. */

/* -- scope: any thread while the request is live -- */
static inline evicorn_str evicorn_method(evicorn_request *req)
{
    return evicorn_sdk_api_->method(req);
}
/* Percent-decoded. */
static inline evicorn_str evicorn_path(evicorn_request *req)
{
    return evicorn_sdk_api_->path(req);
}
static inline evicorn_str evicorn_raw_path(evicorn_request *req)
{
    return evicorn_sdk_api_->raw_path(req);
}
/* Still percent-encoded, without the '?'. See evicorn_query_* for values. */
static inline evicorn_str evicorn_query_string(evicorn_request *req)
{
    return evicorn_sdk_api_->query_string(req);
}
static inline evicorn_str evicorn_root_path(evicorn_request *req)
{
    return evicorn_sdk_api_->root_path(req);
}
static inline evicorn_str evicorn_scheme(evicorn_request *req)
{
    return evicorn_sdk_api_->scheme(req);
}
static inline evicorn_str evicorn_http_version(evicorn_request *req)
{
    return evicorn_sdk_api_->http_version(req);
}
static inline evicorn_str evicorn_client_host(evicorn_request *req)
{
    return evicorn_sdk_api_->client_host(req);
}
static inline int evicorn_client_port(evicorn_request *req)
{
    return evicorn_sdk_api_->client_port(req);
}
static inline evicorn_str evicorn_server_host(evicorn_request *req)
{
    return evicorn_sdk_api_->server_host(req);
}
static inline int evicorn_server_port(evicorn_request *req)
{
    return evicorn_sdk_api_->server_port(req);
}
static inline size_t evicorn_header_count(evicorn_request *req)
{
    return evicorn_sdk_api_->header_count(req);
}
static inline int evicorn_header_at(evicorn_request *req, size_t i, evicorn_header *out)
{
    return evicorn_sdk_api_->header_at(req, i, out);
}
/* The first header named `name` (lower-case): 0, or EVICORN_ENOENT. */
static inline int evicorn_header_get(evicorn_request *req, const char *name, evicorn_str *value)
{
    return evicorn_sdk_api_->header(req, name, value);
}
/* The matched route's template, e.g. "/items/{item_id}". */
static inline evicorn_str evicorn_route_pattern(evicorn_request *req)
{
    return evicorn_sdk_api_->route(req);
}
/* What the plugin's startup stored in *state (NULL without a startup). */
static inline void *evicorn_state(evicorn_request *req)
{
    return evicorn_sdk_api_->state(req);
}

/* -- body -- */
static inline int evicorn_receive(evicorn_request *req, evicorn_body_fn fn, void *ud)
{
    return evicorn_sdk_api_->receive(req, fn, ud);
}
static inline int evicorn_read_body(evicorn_request *req, evicorn_body_fn fn, void *ud)
{
    return evicorn_sdk_api_->read_body(req, fn, ud);
}
static inline evicorn_str evicorn_body(evicorn_request *req)
{
    return evicorn_sdk_api_->body(req);
}

/* -- response -- */
static inline int evicorn_respond(evicorn_request *req, int status, const evicorn_header *headers,
                                  size_t n, const void *body, size_t len)
{
    return evicorn_sdk_api_->respond(req, status, headers, n, body, len);
}
static inline int evicorn_start(evicorn_request *req, int status, const evicorn_header *headers,
                                size_t n, int64_t content_length)
{
    return evicorn_sdk_api_->start(req, status, headers, n, content_length);
}
static inline int evicorn_send(evicorn_request *req, const void *data, size_t len, int more)
{
    return evicorn_sdk_api_->send(req, data, len, more);
}
static inline int evicorn_writable(evicorn_request *req)
{
    return evicorn_sdk_api_->writable(req);
}
static inline int evicorn_on_writable(evicorn_request *req, evicorn_event_fn fn, void *ud)
{
    return evicorn_sdk_api_->on_writable(req, fn, ud);
}
static inline int evicorn_disconnected(evicorn_request *req)
{
    return evicorn_sdk_api_->disconnected(req);
}
static inline int evicorn_on_disconnect(evicorn_request *req, evicorn_event_fn fn, void *ud)
{
    return evicorn_sdk_api_->on_disconnect(req, fn, ud);
}

/* -- async operations: loop thread only -- */
static inline int evicorn_sleep(evicorn_request *req, double seconds, evicorn_event_fn fn, void *ud)
{
    return evicorn_sdk_api_->sleep(req, seconds, fn, ud);
}
static inline int evicorn_offload(evicorn_request *req, evicorn_work_fn work, evicorn_event_fn done,
                                  void *ud)
{
    return evicorn_sdk_api_->offload(req, work, done, ud);
}
static inline int evicorn_fetch(evicorn_request *req, const evicorn_fetch_options *opts,
                                evicorn_fetch_fn fn, void *ud)
{
    return evicorn_sdk_api_->fetch(req, opts, fn, ud);
}
/* -- any thread -- */
static inline int evicorn_hold(evicorn_request *req)
{
    return evicorn_sdk_api_->hold(req);
}
static inline void evicorn_release(evicorn_request *req)
{
    evicorn_sdk_api_->release(req);
}
static inline int evicorn_background(evicorn_request *req, evicorn_work_fn fn, void *ud)
{
    return evicorn_sdk_api_->background(req, fn, ud);
}

/* ======================================================================
 * Logging
 * ====================================================================== */

/* uvicorn's levels, as the ABI numbers them. */
enum evicorn_log_level {
    EVICORN_LOG_CRITICAL = 0,
    EVICORN_LOG_ERROR = 1,
    EVICORN_LOG_WARNING = 2,
    EVICORN_LOG_INFO = 3,
    EVICORN_LOG_DEBUG = 4,
    EVICORN_LOG_TRACE = 5,
};

/* Logs one line through the server ("INFO:     <plugin>: message"). req
 * may be NULL (e.g. in startup). Messages longer than 4 KiB are cut.
 * Newlines are the caller's business: keep to one line. Any thread. */
void evicorn_log(evicorn_request *req, int level, const char *fmt, ...) EVICORN_PRINTF(3, 4);
void evicorn_logv(evicorn_request *req, int level, const char *fmt, va_list ap)
    EVICORN_PRINTF(3, 0);

/* ======================================================================
 * A growable byte buffer
 * ====================================================================== */

/* For building bodies. Zero-initialise (EVICORN_BUF_INIT); after a failed
 * append the buffer keeps what it had, every later append fails too and
 * `failed` is set, so a sequence of appends can be checked once at the
 * end. Free with evicorn_buf_free. data is NUL-terminated when non-NULL
 * (the NUL is not counted in len). */
typedef struct evicorn_buf {
    char *data;
    size_t len;
    size_t cap;
    int failed;
} evicorn_buf;

#define EVICORN_BUF_INIT                                                                           \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

/* Each returns 0, or EVICORN_ENOMEM. */
int evicorn_buf_append(evicorn_buf *b, const void *data, size_t len);
int evicorn_buf_puts(evicorn_buf *b, const char *s);
int evicorn_buf_printf(evicorn_buf *b, const char *fmt, ...) EVICORN_PRINTF(2, 3);
/* Appends v as compact JSON exactly as Python's json.dumps(v,
 * ensure_ascii=False, separators=(",", ":")) writes it (FastAPI's
 * JSONResponse): object keys in insertion order, UTF-8 unescaped, floats in
 * Python's shortest repr (0.1, 3.0, 1e+16). EVICORN_EINVAL for NULL. */
int evicorn_buf_json(evicorn_buf *b, const json_t *v);
/* Appends s[0..len) as a JSON string literal, quotes included, escaped as
 * Python does; invalid UTF-8 bytes become U+FFFD. */
int evicorn_buf_json_string(evicorn_buf *b, const char *s, size_t len);
/* Frees the data and resets *b to EVICORN_BUF_INIT. */
void evicorn_buf_free(evicorn_buf *b);

/* ======================================================================
 * Responses
 * ====================================================================== */

/* Each answers the whole response in one call and returns the host's
 * result: 0, EVICORN_EALREADY (a response was already sent), EVICORN_EPIPE
 * (the client is gone), EVICORN_ENOMEM. From a sync handler they wait
 * until the loop has taken the response. */

/* status with body[0..len) and a Content-Type (NULL: none). */
int evicorn_respond_bytes(evicorn_request *req, int status, const char *content_type,
                          const void *body, size_t len);

/* A NUL-terminated text. content_type NULL means Starlette's
 * PlainTextResponse type, "text/plain; charset=utf-8". */
int evicorn_respond_text(evicorn_request *req, int status, const char *content_type,
                         const char *text);

/* Content-Type: application/json, value serialized as evicorn_buf_json.
 * Steals value: the caller's reference is released whatever happens, so
 * evicorn_respond_json(req, 200, json_pack("{s:i}", "n", 1)) leaks nothing.
 * A NULL value (e.g. json_pack out of memory) sends nothing and returns
 * EVICORN_ENOMEM; the host then answers 500 as for any request left
 * without a response. */
int evicorn_respond_json(evicorn_request *req, int status, json_t *value);

/* FastAPI's HTTPException: {"detail":"<detail>"} as application/json.
 * detail NULL means the status's reason phrase ("Not Found"). */
int evicorn_respond_error(evicorn_request *req, int status, const char *detail);

/* The standard reason phrase for status, e.g. "Bad Gateway"; "Unknown"
 * for codes it does not know. */
const char *evicorn_status_reason(int status);

/* ======================================================================
 * Validation errors (FastAPI's RequestValidationError)
 * ====================================================================== */

/* Collects pydantic-style errors so a handler can check every parameter
 * and answer once with all of them, in order. Start from
 * EVICORN_ERRORS_INIT (on the stack is fine); evicorn_respond_validation
 * answers and empties it, evicorn_errors_clear empties it without
 * answering. Fields are private. Any thread, one thread at a time. */
typedef struct evicorn_errors {
    json_t *list; /* the "detail" array, created on the first error */
    int status;   /* 0: answer 422 with list; else answer status with detail */
    const char *detail;
} evicorn_errors;

#define EVICORN_ERRORS_INIT                                                                        \
    {                                                                                              \
        NULL, 0, NULL                                                                              \
    }

/* Where an error is: the first element of FastAPI's "loc". */
#define EVICORN_LOC_PATH   "path"
#define EVICORN_LOC_QUERY  "query"
#define EVICORN_LOC_HEADER "header"
#define EVICORN_LOC_COOKIE "cookie"
#define EVICORN_LOC_BODY   "body"

/* pydantic 1's messages and types, for evicorn_errors_add. */
#define EVICORN_MSG_MISSING  "field required"
#define EVICORN_TYPE_MISSING "value_error.missing"
#define EVICORN_MSG_INT      "value is not a valid integer"
#define EVICORN_TYPE_INT     "type_error.integer"
#define EVICORN_MSG_FLOAT    "value is not a valid float"
#define EVICORN_TYPE_FLOAT   "type_error.float"
#define EVICORN_MSG_BOOL     "value could not be parsed to a boolean"
#define EVICORN_TYPE_BOOL    "type_error.bool"
#define EVICORN_MSG_DICT     "value is not a valid dict"
#define EVICORN_TYPE_DICT    "type_error.dict"
#define EVICORN_MSG_LIST     "value is not a valid list"
#define EVICORN_TYPE_LIST    "type_error.list"
#define EVICORN_MSG_STR      "str type expected"
#define EVICORN_TYPE_STR     "type_error.str"
#define EVICORN_MSG_NONE     "none is not an allowed value"
#define EVICORN_TYPE_NONE    "type_error.none.not_allowed"

/* Adds {"loc":[loc_kind, loc_name],"msg":msg,"type":type}; loc_name NULL
 * gives "loc":[loc_kind] (e.g. the whole body). Returns 0 or
 * EVICORN_ENOMEM (then the collector answers 500 instead). */
int evicorn_errors_add(evicorn_errors *errs, const char *loc_kind, const char *loc_name,
                       const char *msg, const char *type);

/* The general form: loc is a JSON array (strings and integers, e.g.
 * ["body","items",3,"price"]) and ctx an optional object; both are stolen
 * (ctx may be NULL). */
int evicorn_errors_add_json(evicorn_errors *errs, json_t *loc, const char *msg, const char *type,
                            json_t *ctx);

/* Makes the answer status with {"detail": detail} instead of a 422, as
 * FastAPI does for a body it cannot decode at all (400). The last call
 * wins; detail must outlive the collector (a string literal). */
void evicorn_errors_fail(evicorn_errors *errs, int status, const char *detail);

/* Nonzero when anything was recorded. */
int evicorn_errors_any(const evicorn_errors *errs);

/* The "detail" array (new reference; an empty array when nothing was
 * recorded; NULL when out of memory), e.g. to wrap in an answer of your
 * own. */
json_t *evicorn_errors_json(const evicorn_errors *errs);

/* Answers 422 {"detail":[...]} (application/json) with the collected
 * errors, or the status set by evicorn_errors_fail, then empties errs.
 * With nothing recorded it answers 422 with an empty list. Returns what
 * evicorn_respond_bytes returns. */
int evicorn_respond_validation(evicorn_request *req, evicorn_errors *errs);

/* Frees what errs holds and makes it empty again. */
void evicorn_errors_clear(evicorn_errors *errs);

/* ======================================================================
 * Path and query parameters
 * ====================================================================== */

/* Path parameters are the route template's {names}, already
 * percent-decoded by the host. Conversions follow pydantic 1 (Python's
 * int() and float()): surrounding whitespace and '_' between digits are
 * accepted, "1.0" is not an int, "inf"/"nan" are floats. Integers must fit
 * in a long long (else they are "not a valid integer"). A failure is added
 * to errs (which may be NULL) as FastAPI would report it, loc
 * ["path", name], and 0 is returned. */

/* The value (host-owned, valid for the request). A name the route does not
 * have adds "field required" and gives an empty string. */
evicorn_str evicorn_path_str(evicorn_request *req, const char *name, evicorn_errors *errs);
long long evicorn_path_int(evicorn_request *req, const char *name, evicorn_errors *errs);
double evicorn_path_float(evicorn_request *req, const char *name, evicorn_errors *errs);

/* Query parameters come from the query string as Starlette parses it:
 * split on '&', '+' is a space, %XX decoded, invalid UTF-8 replaced with
 * U+FFFD, a name without '=' has the empty value. When a name appears more
 * than once the LAST value counts, as in FastAPI (request.query_params).
 * An absent parameter gives `def` and is not an error; to make it
 * required, call evicorn_query_require. An empty value ("?n=") is present:
 * it is an error for int, float and bool, as in FastAPI. Failures are
 * added to errs with loc ["query", name]. */

/* Nonzero when the query string has the parameter. */
int evicorn_query_has(evicorn_request *req, const char *name);
/* Adds "field required" (loc ["query", name]) when the parameter is
 * absent; returns nonzero when it is present. */
int evicorn_query_require(evicorn_request *req, const char *name, evicorn_errors *errs);
/* The decoded value as a new NUL-terminated string the caller frees with
 * free(); a copy of def when absent; NULL when absent and def is NULL (or
 * out of memory, which is also added to errs). */
char *evicorn_query_str(evicorn_request *req, const char *name, const char *def,
                        evicorn_errors *errs);
long long evicorn_query_int(evicorn_request *req, const char *name, long long def,
                            evicorn_errors *errs);
double evicorn_query_float(evicorn_request *req, const char *name, double def,
                           evicorn_errors *errs);
/* pydantic's booleans, case-insensitively: 1 on t true y yes 1, 0 off f
 * false n no 0. Anything else is "value could not be parsed to a
 * boolean". Returns 0 or 1. */
int evicorn_query_bool(evicorn_request *req, const char *name, int def, evicorn_errors *errs);
/* Every value of a repeated parameter (FastAPI's List[str] = Query()), as
 * a JSON array of strings in order (new reference; empty when absent;
 * NULL when out of memory). */
json_t *evicorn_query_list(evicorn_request *req, const char *name);

/* The conversions themselves, for values from anywhere (headers, ...).
 * Each returns 0 and stores the result, or -1 for a value pydantic would
 * refuse. s need not be NUL-terminated. */
int evicorn_parse_int(const char *s, size_t len, long long *out);
int evicorn_parse_float(const char *s, size_t len, double *out);
int evicorn_parse_bool(const char *s, size_t len, int *out);
/* Decodes a query-string component (+ and %XX) into a new NUL-terminated
 * string (caller frees with free(); NULL when out of memory); *outlen, if
 * not NULL, gets its length. */
char *evicorn_url_decode(const char *s, size_t len, size_t *outlen);

/* A NUL-terminated copy of a host string; free() it. NULL when out of
 * memory. */
char *evicorn_strdup(evicorn_str s);

/* ======================================================================
 * JSON request bodies
 * ====================================================================== */

/* Parses data[0..len) as Python's json.loads would, into a jansson value
 * (new reference). On failure it returns NULL and adds to errs what
 * FastAPI 0.92 reports:
 *   - empty input: loc ["body"], "field required", value_error.missing;
 *   - a syntax error: loc ["body", <char position>], Python's message, e.g.
 *     "Expecting value: line 1 column 1 (char 0)", type
 *     "value_error.jsondecode", and ctx {msg, doc, pos, lineno, colno};
 *   - bytes that are not UTF-8: evicorn_errors_fail(400, "There was an
 *     error parsing the body").
 * Differences from Python: NaN and Infinity are refused (at their
 * position, "Expecting value"); integers beyond 64 bits make every number
 * of the document a double. errs may be NULL. */
json_t *evicorn_json_parse(const char *data, size_t len, evicorn_errors *errs);

/* The request's body as FastAPI reads a JSON body parameter: empty ->
 * "field required"; no Content-Type, application/json or
 * application/<x>+json -> evicorn_json_parse; any other Content-Type ->
 * the raw bytes as a JSON string (which then fails an object check with
 * "value is not a valid dict", as in FastAPI). Uses evicorn_body: call it
 * from a sync handler, or from an async one once read_body completed.
 * New reference, or NULL with errs filled. */
json_t *evicorn_json_body(evicorn_request *req, evicorn_errors *errs);

/* For a body that must be an object (a pydantic model or Dict): returns 0
 * when v is an object, else adds loc ["body"] "value is not a valid dict"
 * (type_error.dict) and returns -1. v may be NULL (then -1 without adding:
 * the parse already said why). */
int evicorn_json_expect_object(const json_t *v, evicorn_errors *errs);

/* pydantic's float coercion of one JSON value: numbers, true/false (1/0)
 * and numeric strings ("2.5") convert; null adds "none is not an allowed
 * value"; anything else "value is not a valid float". loc is the full
 * location (borrowed, e.g. ["body","price"]). Returns 0 or -1. */
int evicorn_json_to_float(const json_t *v, const json_t *loc, double *out, evicorn_errors *errs);

/* ======================================================================
 * Outbound HTTP
 * ====================================================================== */

/* GET url without blocking the loop (loop thread only: call it from an
 * async handler or continuation). url is http:// or, on a 1.4 host,
 * https:// (certificates checked against the system's store, or the
 * bundle named by SSL_CERT_FILE). timeout is in seconds for the whole
 * exchange, connecting included (0: the host's default, 30 s). fn runs
 * once, on the loop, with the result; res->error is EVICORN_ECANCELED when
 * the client left first (then just free ud). Returns 0, or an EVICORN_E*
 * code and fn will not run. */
int evicorn_fetch_get(evicorn_request *req, const char *url, double timeout, evicorn_fetch_fn fn,
                      void *ud);

/* The HTTP status a gateway answers for a failed fetch: 504 for
 * EVICORN_ETIMEDOUT, 502 for every other error, 0 when res->error is 0. */
int evicorn_fetch_error_status(const evicorn_fetch_result *res);

/* Answers a failed fetch as a gateway: 504 or 502 with
 * {"detail":"upstream request timed out: <message>"} or
 * {"detail":"upstream request failed: <message>"}. Returns the respond
 * result, or EVICORN_EINVAL when res->error is 0. Do not call it for
 * EVICORN_ECANCELED: there is nobody to answer. */
int evicorn_fetch_respond_error(evicorn_request *req, const evicorn_fetch_result *res);

/* The first response header named `name` (lower-case), or an empty string
 * (ptr NULL) when absent. */
evicorn_str evicorn_fetch_header(const evicorn_fetch_result *res, const char *name);

/* -- streamed outbound HTTP (ABI 1.4) --
 *
 * evicorn_fetch_start is evicorn_fetch with the response delivered as it
 * arrives: events->on_head with the status and headers, on_data with each
 * piece of the body, on_end last, exactly once (abi.h,
 * evicorn_fetch_events). The handle *out lives until on_end has run. A
 * client that disconnects cancels the exchange (on_end gets
 * EVICORN_ECANCELED). Loop thread only. Each wrapper returns
 * EVICORN_ENOSYS on a host older than 1.4 (the events never run); a plugin
 * that cannot do without them defines EVICORN_PLUGIN_MIN_ABI_MINOR 4. */
static inline int evicorn_fetch_start(evicorn_request *req, const evicorn_fetch_options *opts,
                                      const evicorn_fetch_events *events, void *ud,
                                      evicorn_exchange **out)
{
    if (!EVICORN_HAS(fetch_start))
        return EVICORN_ENOSYS;
    return evicorn_sdk_api_->fetch_start(req, opts, events, ud, out);
}
/* paused != 0 stops on_data (the upstream is then not read, so its TCP
 * window closes) until called again with 0. */
static inline int evicorn_fetch_pause(evicorn_exchange *f, int paused)
{
    if (!EVICORN_HAS(fetch_pause))
        return EVICORN_ENOSYS;
    return evicorn_sdk_api_->fetch_pause(f, paused);
}
/* With EVICORN_FETCH_STREAM_BODY: a piece of the request body (copied),
 * more == 0 for the last. 1 when more may be written now, 0 when the host
 * holds enough (wait for on_writable), or an error. */
static inline int evicorn_fetch_write(evicorn_exchange *f, const void *data, size_t len, int more)
{
    if (!EVICORN_HAS(fetch_write))
        return EVICORN_ENOSYS;
    return evicorn_sdk_api_->fetch_write(f, data, len, more);
}
/* Aborts the exchange: on_end runs soon (not inside this call) with
 * EVICORN_ECANCELED. Returns 0, or EVICORN_ENOSYS. */
static inline int evicorn_fetch_cancel(evicorn_exchange *f)
{
    if (!EVICORN_HAS(fetch_cancel))
        return EVICORN_ENOSYS;
    evicorn_sdk_api_->fetch_cancel(f);
    return 0;
}

/* -- a reverse proxy in one call (ABI 1.4) --
 *
 * evicorn_fetch_proxy sends opts to the upstream with evicorn_fetch_start
 * and streams the answer to this request's client, as a gateway
 * (RFC 9110 7.6):
 *   - the upstream's status and headers, without the hop-by-hop ones
 *     (Connection, Keep-Alive, Proxy-Authenticate, Proxy-Authorization,
 *     TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Connection and every
 *     header named in Connection); Content-Length is kept (the response
 *     is then framed by length) unless the body is decoded
 *     (EVICORN_FETCH_DECOMPRESS in opts->flags, which also drops
 *     Content-Encoding); then `Via: <version> evicorn` is added, after
 *     the upstream's own Via entries (<version> is the upstream
 *     response's, "1.1" for HTTP/1.1);
 *   - the body, piece by piece as it arrives. While the client is slow to
 *     read (evicorn_writable is 0) the fetch is paused, so the upstream's
 *     TCP window closes instead of the worker's memory growing, and
 *     resumed from evicorn_on_writable;
 *   - the end: the response is completed when the upstream's is. If the
 *     exchange fails before the head came, the client gets what
 *     evicorn_fetch_respond_error answers (502, or 504 for a timeout, with
 *     a detail); after the head it can only be cut off (the host closes
 *     the connection, so the client sees an incomplete body), and a
 *     warning is logged. A client that leaves cancels the upstream
 *     exchange (the host does that).
 * The response is then the helper's: the caller sends nothing else.
 * opts->timeout bounds the whole exchange, streaming included (0: the
 * host's 30 s); raise it to proxy long downloads to slow clients.
 * opts and p are only read during the call. Loop thread only. Returns 0,
 * or an error (EVICORN_ENOSYS on a host older than 1.4, EVICORN_ENOMEM,
 * what fetch_start returned) and nothing was answered. */
typedef struct evicorn_fetch_proxy_options {
    uint32_t size;                 /* sizeof(evicorn_fetch_proxy_options) */
    uint32_t flags;                /* EVICORN_PROXY_* below */
    const evicorn_header *headers; /* extra response headers, after the upstream's */
    size_t nheaders;
    const char *via; /* the name in Via; NULL: "evicorn" */
} evicorn_fetch_proxy_options;

/* Forward the client's request headers too, after opts->headers: all but
 * Host, the hop-by-hop ones (as above, and those named in the client's
 * Connection), Content-Length and Expect (the client's body is not
 * forwarded), and those whose name opts->headers already has. A Via entry
 * for the client's hop is added (RFC 9110 7.6.3). */
#define EVICORN_PROXY_CLIENT_HEADERS 0x01u

/* p may be NULL (no flags, no extra headers). */
int evicorn_fetch_proxy(evicorn_request *req, const evicorn_fetch_options *opts,
                        const evicorn_fetch_proxy_options *p);

/* Nonzero when a header named name[0..len) (any case) is hop-by-hop by
 * RFC 9110 7.6.1: one of the fixed list above, or a token of the
 * connection value (the message's Connection header, or NULL). */
int evicorn_header_hop_by_hop(const char *name, size_t len, const char *connection,
                              size_t connection_len);

/* ======================================================================
 * WebSocket (ABI 1.2)
 * ====================================================================== */

/* WebSocket routes: the handler gets the opening handshake and accepts it
 * with evicorn_ws_accept (or rejects it with any HTTP response). The
 * plain form is async: every event runs on the loop and must not block;
 * _SYNC routes run the handler and each event on the thread pool, one at
 * a time per connection. A plugin with such routes needs a 1.2 host:
 * define EVICORN_PLUGIN_MIN_ABI_MINOR 2 before including this header. */
#define EVICORN_WS(path, handler)                                                                  \
    EVICORN_ROUTE("GET", path, EVICORN_ASYNC | EVICORN_WEBSOCKET, handler)
#define EVICORN_WS_SYNC(path, handler)                                                             \
    EVICORN_ROUTE("GET", path, EVICORN_SYNC | EVICORN_WEBSOCKET, handler)

/* Accepts with an optional subprotocol (one the client offered, or NULL);
 * on_message gets every whole message, on_close the end (both may be
 * NULL), each with ud. Returns the host's result (EVICORN_ENOSYS on a host
 * older than 1.2). */
int evicorn_ws_accept(evicorn_request *ws, const char *subprotocol,
                      evicorn_ws_message_fn on_message, evicorn_ws_close_fn on_close, void *ud);
/* A NUL-terminated UTF-8 text message. */
int evicorn_ws_send_text(evicorn_request *ws, const char *text);
/* A text message of len bytes (UTF-8), or a binary one. */
int evicorn_ws_send_textn(evicorn_request *ws, const char *text, size_t len);
int evicorn_ws_send_binary(evicorn_request *ws, const void *data, size_t len);
/* value as compact JSON (as Starlette's send_json writes it), in a text
 * message. Steals value; NULL gives EVICORN_ENOMEM. */
int evicorn_ws_send_json(evicorn_request *ws, json_t *value);
/* Starts the closing handshake: code 1000-1003, 1007-1014 or 3000-4999,
 * reason NULL or NUL-terminated UTF-8. Before accepting: 403. */
int evicorn_ws_close(evicorn_request *ws, int code, const char *reason);
/* A number naming the connection in this worker (0 before accepting). */
uint64_t evicorn_ws_id(evicorn_request *ws);
/* The i-th subprotocol the client offered, or an empty string (ptr NULL). */
evicorn_str evicorn_ws_subprotocol(evicorn_request *ws, size_t i);

/* A set of open connections to broadcast to (a chat room, the subscribers
 * of a topic). It holds handles, not references: remove a connection in
 * its on_close, before the handle goes. Safe from any thread. */
typedef struct evicorn_ws_group evicorn_ws_group;
/* NULL on out of memory. */
evicorn_ws_group *evicorn_ws_group_new(void);
void evicorn_ws_group_free(evicorn_ws_group *g);
/* 0, or EVICORN_ENOMEM. Adding a member twice keeps one. */
int evicorn_ws_group_add(evicorn_ws_group *g, evicorn_request *ws);
void evicorn_ws_group_remove(evicorn_ws_group *g, evicorn_request *ws);
size_t evicorn_ws_group_size(evicorn_ws_group *g);
/* Sends one message to every member; returns how many took it (members
 * whose connection is closing are skipped). */
size_t evicorn_ws_group_broadcast(evicorn_ws_group *g, int binary, const void *data, size_t len);

/* ======================================================================
 * File descriptors and timers (ABI 1.3)
 * ====================================================================== */

/* Watches (abi.h): fn runs each time fd is ready for what watch_set asked,
 * or the timer fires, until evicorn_watch_cancel. req != NULL binds the
 * watch to the request (keeps it open; fn gets EVICORN_ECANCELED once if
 * the client leaves, and the watch is gone); req == NULL binds it to the
 * plugin (cancel it by the shutdown hook). fd -1 makes a pure timer.
 * Loop thread only. EVICORN_ENOSYS on a host older than 1.3; a plugin
 * that needs them defines EVICORN_PLUGIN_MIN_ABI_MINOR 3. */
static inline int evicorn_watch_new(evicorn_request *req, int fd, evicorn_watch_fn fn, void *ud,
                                    evicorn_watch **out)
{
    if (!EVICORN_HAS(watch))
        return EVICORN_ENOSYS;
    return evicorn_sdk_api_->watch(req, fd, fn, ud, out);
}
/* events: EVICORN_READABLE | EVICORN_WRITABLE, or 0; timeout > 0 (re)arms
 * the one-shot timer, 0 stops it, < 0 leaves it. */
static inline int evicorn_watch_set(evicorn_watch *w, unsigned events, double timeout)
{
    return evicorn_sdk_api_->watch_set(w, events, timeout);
}
static inline void evicorn_watch_cancel(evicorn_watch *w)
{
    evicorn_sdk_api_->watch_cancel(w);
}

/* ======================================================================
 * Files (ABI 1.5)
 * ====================================================================== */

/* Responding with a file: the server sends it with sendfile(2) (never
 * read into memory) and does what a static file server does: Content-Type
 * from the extension, ETag and Last-Modified, conditional requests (304,
 * 412), Range (206, 416) and HEAD. The response is complete when it
 * returns 0; EVICORN_ENOENT (no such file) and EVICORN_EPERM (unreadable,
 * or not a regular file) mean nothing was sent: the handler answers, e.g.
 * with evicorn_respond_error(req, 404, NULL). The path is opened as given:
 * a name taken from the client must be checked first
 * (evicorn_file_name_ok). Either thread. Each returns EVICORN_ENOSYS on a
 * host older than 1.5. */
static inline int evicorn_respond_file(evicorn_request *req, const evicorn_file_response *file)
{
    if (!EVICORN_HAS(respond_file))
        return EVICORN_ENOSYS;
    return evicorn_sdk_api_->respond_file(req, file);
}
/* The whole file at path; flags EVICORN_FILE_PRECOMPRESSED (serve path.br
 * or path.gz to a client that takes it) and EVICORN_FILE_NO_VALIDATORS. */
int evicorn_respond_file_path(evicorn_request *req, const char *path, unsigned flags);

/* Body bytes from a file, after evicorn_start: count bytes of fd from
 * offset (count < 0: to the end), more == 0 to complete the response. The
 * server duplicates fd; the caller still closes its own. Either thread. */
static inline int evicorn_send_file(evicorn_request *req, int fd, int64_t offset, int64_t count,
                                    int more)
{
    if (!EVICORN_HAS(send_file))
        return EVICORN_ENOSYS;
    return evicorn_sdk_api_->send_file(req, fd, offset, count, more);
}

/* Nonzero when name[0..len) is safe to append to a folder of one's own:
 * a relative path of one or more segments separated by '/', none empty,
 * "." or "..", with no backslash, NUL or control character. It cannot
 * climb out of the folder by its text; symbolic links inside the folder
 * still lead where the folder's owner made them lead. */
int evicorn_file_name_ok(const char *name, size_t len);

/* Blocking file I/O run on the thread pool for async handlers (Python's
 * aiofiles): fn runs later on the loop with status 0 and the result, or
 * an error (res NULL): EVICORN_ENOENT, EVICORN_EPERM, EVICORN_EEXIST,
 * EVICORN_EMSGSIZE, EVICORN_EIO, or EVICORN_ECANCELED when the client left
 * first (the I/O may still have happened; free ud there). Loop thread
 * only; a sync handler uses open/read/write directly. Returns 0, or an
 * error and fn will not run. */

/* The whole file, at most max_size bytes (EVICORN_EMSGSIZE beyond); the
 * bytes are res->data[0..res->len), valid during fn. */
static inline int evicorn_file_read(evicorn_request *req, const char *path, size_t max_size,
                                    evicorn_file_fn fn, void *ud)
{
    if (!EVICORN_HAS(file_read))
        return EVICORN_ENOSYS;
    return evicorn_sdk_api_->file_read(req, path, max_size, fn, ud);
}
/* Writes data[0..len) (copied before it returns). flags 0 replaces the
 * file atomically and durably (a new file beside it, synced, renamed
 * over it); EVICORN_FILE_APPEND appends (creating the file);
 * EVICORN_FILE_EXCLUSIVE creates it, EVICORN_EEXIST if it exists. */
static inline int evicorn_file_write(evicorn_request *req, const char *path, const void *data,
                                     size_t len, unsigned flags, evicorn_file_fn fn, void *ud)
{
    if (!EVICORN_HAS(file_write))
        return EVICORN_ENOSYS;
    return evicorn_sdk_api_->file_write(req, path, data, len, flags, fn, ud);
}
/* res->size, res->mtime and res->mode of path (symbolic links followed). */
static inline int evicorn_file_stat(evicorn_request *req, const char *path, evicorn_file_fn fn,
                                    void *ud)
{
    if (!EVICORN_HAS(file_stat))
        return EVICORN_ENOSYS;
    return evicorn_sdk_api_->file_stat(req, path, fn, ud);
}

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif
