/* http1_guard: strict line endings, no obs-fold, strict chunk lines; see
 * http1_guard.h for why it exists. A hand-written state machine, one byte at
 * a time except where it can skip a run of body bytes. */
#include "http1_guard.h"

#include <string.h>

#include "http.h"

enum {
    G_START,       /* before a message; empty lines (CRLF) are skipped */
    G_START_CR,    /* CR before a message, LF must follow */
    G_LINE,        /* inside a head line */
    G_LINE_CR,     /* CR ending a head line */
    G_LINE_START,  /* start of a header line, or of the empty line ending the head */
    G_END_CR,      /* CR of the empty line ending the head */
    G_BODY_WAIT,   /* head done; waiting for h1_guard_set_body */
    G_BODY_LEN,    /* passing a Content-Length body */
    G_CHUNK_SIZE,  /* hex digits of a chunk size */
    G_CHUNK_EXT,   /* chunk extensions after ';' */
    G_CHUNK_QUOTE, /* quoted-string inside a chunk extension */
    G_CHUNK_QESC,  /* backslash escape inside that quoted-string */
    G_CHUNK_CR,    /* CR ending a chunk-size line */
    G_CHUNK_DATA,  /* chunk data */
    G_DATA_CR,     /* CR after chunk data */
    G_DATA_LF,     /* LF after chunk data */
    G_TRAILER_START,
    G_TRAILER_LINE,
    G_TRAILER_CR,
    G_TRAILER_END_CR,
    G_ERROR,
};

/* Longest run of chunk extensions accepted on one chunk line: extensions
 * carry no meaning to evicorn, and unbounded ones are a resource attack. */
#define MAX_CHUNK_EXT 1024
/* Largest chunk size in hex digits: 16 digits fill 64 bits. */
#define MAX_HEX_DIGITS 16

void h1_guard_init(struct h1_guard *g, uint32_t max_head, uint32_t max_line)
{
    *g = (struct h1_guard){.state = G_START, .max_head = max_head, .max_line = max_line};
}

void h1_guard_set_first_line(struct h1_guard *g, enum h1_first_line kind)
{
    g->first_line = (uint8_t)kind;
}

int h1_guard_in_message(const struct h1_guard *g)
{
    return g->state != G_START && g->state != G_START_CR;
}

char h1_guard_version_major(const struct h1_guard *g)
{
    return g->version_major;
}

/* Control bytes other than HT have no place in a head: NUL in particular
 * truncates values for C consumers downstream. */
static int is_bad_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* Whether s (8 bytes) is "HTTP/d.d". */
static int is_version(const char *s)
{
    return memcmp(s, "HTTP/", 5) == 0 && s[5] >= '0' && s[5] <= '9' && s[6] == '.' && s[7] >= '0' &&
           s[7] <= '9';
}

/* Checks byte c of a request line, at 1-based position pos; returns NULL
 * or why the line is refused. A request line must end in " HTTP/d.d" and
 * hold no HT and no run of SPs (which some parsers take for one separator,
 * and others for an empty target). */
static const char *request_line_byte(struct h1_guard *g, unsigned char c, uint32_t pos)
{
    if (c == '\t')
        return "Invalid HTTP request: invalid request line";
    if (c == ' ' && (pos == 1 || g->line_tail[(pos - 2) % sizeof g->line_tail] == ' '))
        return "Invalid HTTP request: invalid request line";
    if (c != '\r') {
        g->line_tail[(pos - 1) % sizeof g->line_tail] = (char)c;
        return NULL;
    }
    /* pos - 1 bytes came before the CR; put the last 9 in order */
    uint32_t n = pos - 1;
    if (n < sizeof g->line_tail)
        return "Invalid HTTP request: invalid HTTP version";
    char tail[sizeof g->line_tail];
    for (uint32_t i = 0; i < sizeof tail; i++)
        tail[i] = g->line_tail[(n - sizeof tail + i) % sizeof tail];
    if (tail[0] != ' ' || !is_version(tail + 1))
        return "Invalid HTTP request: invalid HTTP version";
    g->version_major = tail[6];
    return NULL;
}

static enum h1_guard_result fail(struct h1_guard *g, int status, const char *reason)
{
    g->state = G_ERROR;
    g->status = status;
    g->reason = reason;
    return H1_GUARD_ERROR;
}

void h1_guard_set_body(struct h1_guard *g, enum h1_body_kind kind, uint64_t length)
{
    switch (kind) {
    case H1_BODY_NONE:
        g->state = G_START;
        break;
    case H1_BODY_LENGTH:
        g->remaining = length;
        g->state = length ? G_BODY_LEN : G_START;
        break;
    case H1_BODY_CHUNKED:
        g->remaining = 0;
        g->hex_digits = 0;
        g->ext_len = 0;
        g->state = G_CHUNK_SIZE;
        break;
    }
}

/* Counts one head byte against the limits. */
static int head_byte(struct h1_guard *g)
{
    if (++g->head_len > g->max_head)
        return -1;
    if (g->in_first_line && ++g->line_len > g->max_line)
        return -1;
    return 0;
}

static enum h1_guard_result head_limit(struct h1_guard *g)
{
    if (g->in_first_line && g->line_len > g->max_line)
        return fail(g, 414, "Request line too long");
    return fail(g, 431, "Request header fields too large");
}

enum h1_guard_result h1_guard_scan(struct h1_guard *g, const char *data, size_t len, size_t *used)
{
    size_t i = 0;
    enum h1_guard_result res = H1_GUARD_MORE;

    while (i < len) {
        unsigned char c = (unsigned char)data[i];
        switch (g->state) {
        case G_START:
            if (c == '\r') {
                g->state = G_START_CR;
                break;
            }
            if (c == '\n') {
                res = fail(g, 400, "Invalid HTTP request: bare LF line ending");
                goto out;
            }
            g->head_len = 0;
            g->line_len = 0;
            g->in_first_line = 1;
            g->in_name = 0;
            g->version_major = 0;
            g->state = G_LINE;
            continue; /* scan this byte as part of the line */
        case G_START_CR:
            if (c != '\n') {
                res = fail(g, 400, "Invalid HTTP request: bare CR");
                goto out;
            }
            g->state = G_START;
            break;
        case G_LINE:
        case G_TRAILER_LINE:
            if (g->state == G_LINE && head_byte(g) < 0) {
                res = head_limit(g);
                goto out;
            }
            if (g->state == G_TRAILER_LINE && ++g->head_len > g->max_head) {
                res = fail(g, 431, "Request trailer fields too large");
                goto out;
            }
            if (g->state == G_LINE && g->in_first_line && g->first_line == H1_FIRST_LINE_REQUEST) {
                const char *why = request_line_byte(g, c, g->line_len);
                if (why) {
                    res = fail(g, 400, why);
                    goto out;
                }
            }
            /* A field name is a token, right up to the colon: whitespace
             * before the colon must be refused (RFC 9112 5.1), and
             * http-parser would keep it as part of the name. */
            if (g->in_name) {
                if (c == ':' && g->in_name == 2) {
                    g->in_name = 0;
                } else if (!http_is_tchar(c)) {
                    res = fail(g, 400, "Invalid HTTP request: invalid character in header name");
                    goto out;
                } else {
                    g->in_name = 2;
                }
            }
            if (c == '\r') {
                g->state = g->state == G_LINE ? G_LINE_CR : G_TRAILER_CR;
            } else if (c == '\n') {
                res = fail(g, 400, "Invalid HTTP request: bare LF line ending");
                goto out;
            } else if (is_bad_ctl(c)) {
                res = fail(g, 400, "Invalid HTTP request: control character in head");
                goto out;
            }
            break;
        case G_LINE_CR:
        case G_TRAILER_CR:
            if (c != '\n') {
                res = fail(g, 400, "Invalid HTTP request: bare CR");
                goto out;
            }
            if (g->state == G_LINE_CR) {
                if (head_byte(g) < 0) {
                    res = head_limit(g);
                    goto out;
                }
                g->in_first_line = 0;
                g->state = G_LINE_START;
            } else {
                g->state = G_TRAILER_START;
            }
            break;
        case G_LINE_START:
        case G_TRAILER_START:
            if (c == ' ' || c == '\t') {
                res = fail(g, 400, "Invalid HTTP request: obsolete line folding");
                goto out;
            }
            if (c == '\r') {
                g->state = g->state == G_LINE_START ? G_END_CR : G_TRAILER_END_CR;
                break;
            }
            g->state = g->state == G_LINE_START ? G_LINE : G_TRAILER_LINE;
            g->in_name = 1;
            continue;
        case G_END_CR:
        case G_TRAILER_END_CR:
            if (c != '\n') {
                res = fail(g, 400, "Invalid HTTP request: bare CR");
                goto out;
            }
            i++;
            if (g->state == G_END_CR) {
                g->state = G_BODY_WAIT;
                res = H1_GUARD_HEAD_END;
            } else {
                g->state = G_START;
                res = H1_GUARD_MESSAGE_END;
            }
            goto out;
        case G_BODY_WAIT:
            /* The adapter must say how the body is framed first. */
            res = fail(g, 500, "guard used without body framing");
            goto out;
        case G_BODY_LEN:
        case G_CHUNK_DATA: {
            size_t n = len - i;
            if (n > g->remaining)
                n = (size_t)g->remaining;
            g->remaining -= n;
            i += n;
            if (g->remaining == 0) {
                if (g->state == G_BODY_LEN) {
                    g->state = G_START;
                    res = H1_GUARD_MESSAGE_END;
                    goto out;
                }
                g->state = G_DATA_CR;
            }
            continue;
        }
        case G_CHUNK_SIZE: {
            int v = http_hex_digit(c);
            if (v >= 0) {
                if (++g->hex_digits > MAX_HEX_DIGITS) {
                    res = fail(g, 400, "Invalid HTTP request: chunk size too large");
                    goto out;
                }
                g->remaining = (g->remaining << 4) | (uint64_t)v;
            } else if (g->hex_digits && c == ';') {
                g->state = G_CHUNK_EXT;
            } else if (g->hex_digits && c == '\r') {
                g->state = G_CHUNK_CR;
            } else {
                res = fail(g, 400, "Invalid HTTP request: invalid chunk size");
                goto out;
            }
            break;
        }
        case G_CHUNK_EXT:
        case G_CHUNK_QUOTE:
        case G_CHUNK_QESC:
            if (++g->ext_len > MAX_CHUNK_EXT) {
                res = fail(g, 400, "Invalid HTTP request: chunk extension too long");
                goto out;
            }
            if (g->state == G_CHUNK_QESC) {
                if (is_bad_ctl(c) || c == '\r' || c == '\n')
                    goto bad_ext;
                g->state = G_CHUNK_QUOTE;
            } else if (g->state == G_CHUNK_QUOTE) {
                if (c == '"')
                    g->state = G_CHUNK_EXT;
                else if (c == '\\')
                    g->state = G_CHUNK_QESC;
                else if (is_bad_ctl(c) || c == '\r' || c == '\n')
                    goto bad_ext;
            } else if (c == '\r') {
                g->state = G_CHUNK_CR;
            } else if (c == '"') {
                g->state = G_CHUNK_QUOTE;
            } else if (!http_is_tchar(c) && c != ';' && c != '=' && c != ' ' && c != '\t') {
                goto bad_ext;
            }
            break;
        bad_ext:
            res = fail(g, 400, "Invalid HTTP request: invalid chunk extension");
            goto out;
        case G_CHUNK_CR:
            if (c != '\n') {
                res = fail(g, 400, "Invalid HTTP request: bare CR in chunk line");
                goto out;
            }
            g->hex_digits = 0;
            g->ext_len = 0;
            if (g->remaining == 0) {
                g->head_len = 0;
                g->state = G_TRAILER_START;
            } else {
                g->state = G_CHUNK_DATA;
            }
            break;
        case G_DATA_CR:
            if (c != '\r') {
                res = fail(g, 400, "Invalid HTTP request: chunk data longer than its size");
                goto out;
            }
            g->state = G_DATA_LF;
            break;
        case G_DATA_LF:
            if (c != '\n') {
                res = fail(g, 400, "Invalid HTTP request: bare CR after chunk data");
                goto out;
            }
            g->remaining = 0;
            g->state = G_CHUNK_SIZE;
            break;
        case G_ERROR:
        default:
            res = H1_GUARD_ERROR;
            goto out;
        }
        i++;
    }
out:
    *used = i;
    return res;
}
