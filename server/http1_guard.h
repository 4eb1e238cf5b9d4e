/* http1_guard: the byte-level strictness http-parser 2.9.4 lacks.
 *
 * http-parser accepts bare LF line endings, obs-fold continuation lines,
 * whitespace between a field name and its colon, spaces after a chunk size
 * and unbounded, unchecked chunk extensions. Each
 * lets two parsers frame the same bytes differently, which is how requests
 * are smuggled past a proxy. The guard scans every byte before http-parser
 * sees it and rejects those forms; it also bounds the request line and the
 * head. It keeps the message framing in step with the parser: it stops at
 * the end of a head, the adapter tells it how the body is framed (known only
 * once the parser has read the headers), and it stops at the end of each
 * message. It knows nothing of http-parser, so it can be tested and fuzzed
 * alone. */
#ifndef EVICORN_HTTP1_GUARD_H
#define EVICORN_HTTP1_GUARD_H

#include <stddef.h>
#include <stdint.h>

enum h1_guard_result {
    H1_GUARD_MORE,        /* all bytes scanned, message not finished */
    H1_GUARD_HEAD_END,    /* stopped just after the head; call h1_guard_set_body */
    H1_GUARD_MESSAGE_END, /* stopped just after a whole message */
    H1_GUARD_ERROR,       /* see status and reason */
};

enum h1_body_kind { H1_BODY_NONE, H1_BODY_LENGTH, H1_BODY_CHUNKED };

/* What the first line of each message must be (h1_guard_set_first_line).
 * http-parser, built without HTTP_PARSER_STRICT, reads "HTXP/1.1" as
 * HTTP/1.1; the guard checks the version's spelling itself. */
enum h1_first_line {
    H1_FIRST_LINE_ANY,     /* not checked (the default) */
    H1_FIRST_LINE_REQUEST, /* method SP target SP HTTP/d.d, no HT */
};

struct h1_guard {
    uint8_t state;
    uint8_t hex_digits;
    uint8_t in_first_line;
    uint8_t first_line; /* enum h1_first_line */
    uint8_t in_name;    /* in a field name: 1 before its first byte, 2 after */
    char version_major; /* of the last complete request line: '1' for HTTP/1.x */
    char line_tail[9];  /* the last bytes of a request line, in a ring */
    uint32_t max_head;  /* bytes of the head (request line + headers) */
    uint32_t max_line;  /* bytes of the request line */
    uint32_t head_len;  /* bytes of the current head so far */
    uint32_t line_len;  /* bytes of the first line so far */
    uint32_t ext_len;   /* bytes of chunk extensions on this chunk line */
    uint64_t remaining; /* body or chunk bytes left to pass */
    int status;         /* on error: the HTTP status to answer with */
    const char *reason; /* on error: why, for the client and the log */
};

void h1_guard_init(struct h1_guard *g, uint32_t max_head, uint32_t max_line);
/* Sets what the first line of each message must look like. */
void h1_guard_set_first_line(struct h1_guard *g, enum h1_first_line kind);
/* Scans data[0..len); *used is how many bytes were scanned when it stops. */
enum h1_guard_result h1_guard_scan(struct h1_guard *g, const char *data, size_t len, size_t *used);
/* After H1_GUARD_HEAD_END: how the body that follows is framed. */
void h1_guard_set_body(struct h1_guard *g, enum h1_body_kind kind, uint64_t length);
/* Whether any byte of an unfinished message has been seen. */
int h1_guard_in_message(const struct h1_guard *g);
/* The major version digit of the last complete request line ('1' for
 * HTTP/1.x), or 0 before one is complete. */
char h1_guard_version_major(const struct h1_guard *g);

#endif
