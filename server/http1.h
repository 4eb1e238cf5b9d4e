/* http1: the HTTP/1.x message parser, the only door to http-parser.
 *
 * Nothing else in evicorn includes http_parser.h: http-parser's struct
 * layout changed in a security release once, and it is unmaintained, so it
 * must stay replaceable. The adapter runs http1_guard in front of it, checks
 * the header-level rules it does not (framing headers, Host), lower-cases
 * header names, and stores the head where the caller says (the request
 * object), so a parsed head is never copied again.
 *
 * One parser per connection; it reads requests. Feeding stops after each
 * complete message so the caller decides when the next pipelined message
 * may start. Trailer fields of a chunked body are checked like header
 * lines, then dropped: the head is never changed once the head callback
 * has seen it. */
#ifndef EVICORN_HTTP1_H
#define EVICORN_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

struct h1_header {
    uint32_t name_off, name_len; /* into h1_head.store; name lower-cased */
    uint32_t value_off, value_len;
};

/* A parsed message head. The caller owns it and hands it to the parser in
 * the begin callback; it can be reused for the next message after
 * h1_head_reset. */
struct h1_head {
    struct buf store; /* target and header bytes */
    struct h1_header *headers;
    uint32_t nheaders, headers_cap;
    uint32_t target_off, target_len;
    const char *method; /* static string */
    uint8_t method_len;
    uint8_t http_major, http_minor;
    bool keep_alive;
    bool chunked;
    bool has_content_length;
    bool expect_continue;
    uint64_t content_length;
};

static inline const char *h1_head_target(const struct h1_head *h)
{
    return buf_start(&h->store) + h->target_off;
}
static inline const char *h1_header_name(const struct h1_head *h, uint32_t i)
{
    return buf_start(&h->store) + h->headers[i].name_off;
}
static inline const char *h1_header_value(const struct h1_head *h, uint32_t i)
{
    return buf_start(&h->store) + h->headers[i].value_off;
}
/* Index of the first header with this lower-case name, or -1. */
int h1_head_find(const struct h1_head *h, const char *name, size_t name_len);
void h1_head_reset(struct h1_head *h);
void h1_head_free(struct h1_head *h);

struct h1_callbacks {
    /* A message starts: where to store its head; NULL fails the parse. */
    struct h1_head *(*begin)(void *ud);
    /* The head is complete: 0, or -1 to stop (h1_parser_fail may have set
     * the answer). */
    int (*head)(void *ud, struct h1_head *head);
    /* De-chunked body bytes; 0 or -1 to stop. */
    int (*body)(void *ud, const char *data, size_t len);
    /* The message is complete; 0 or -1 to stop. */
    int (*complete)(void *ud);
};

struct h1_limits {
    uint32_t max_head;    /* bytes of request line + headers: 431 beyond */
    uint32_t max_line;    /* bytes of the request line: 414 beyond */
    uint32_t max_headers; /* header count: 431 beyond */
};

struct h1_parser;

struct h1_parser *h1_parser_new(const struct h1_limits *limits, const struct h1_callbacks *cb,
                                void *ud);
void h1_parser_free(struct h1_parser *p);
/* Parses data; returns the bytes consumed, stopping just after a complete
 * message, or -1 on an error (see h1_parser_error). */
ssize_t h1_parser_feed(struct h1_parser *p, const char *data, size_t len);
/* The peer closed its side: returns 0 between messages, or -1 when a
 * message was cut short. */
int h1_parser_finish(struct h1_parser *p);
/* Whether part of an unfinished message has been seen. */
bool h1_parser_in_message(const struct h1_parser *p);
/* After an error: the status to answer with and a reason. */
const char *h1_parser_error(const struct h1_parser *p, int *status);
/* Lets a callback fail the parse with a status and reason. */
void h1_parser_fail(struct h1_parser *p, int status, const char *reason);
/* Starts over on a new connection's bytes. */
void h1_parser_reset(struct h1_parser *p);

#endif
