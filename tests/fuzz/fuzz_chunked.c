/* fuzz_chunked: the chunked body decoder, http-parser behind http1_guard.
 *
 * A fixed request head that announces a chunked body is followed by the
 * input's bytes (chunk sizes, extensions, data, trailers, and whatever comes
 * after: a pipelined request). The adapter sees them twice, in one piece and in
 * pieces whose lengths the input chooses, fed the way conn.c feeds it (one
 * h1_parser_feed per complete message). Two properties are checked besides
 * the sanitizers':
 *   - where the bytes are split changes nothing: both runs report the same
 *     heads, the same message ends, an error or none, and the same de-chunked
 *     body bytes, except that the body a message had before its error may
 *     be cut shorter in one run (given all at once, the guard finds a bad
 *     chunk line before http-parser hands over the chunks ahead of it);
 *   - a body the adapter accepts is the one a plain reading of RFC 9112's
 *     chunked grammar gives, ending at the same byte.
 *
 * Input layout (split_input.h): options, split lengths, then the bytes
 * after the head. Options: bit 1 the alternative head spelling; the other
 * bits are ignored (bit 0 once chose response mode, which the parser no
 * longer has: such inputs now run as requests, with the same payload). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "http1.h"
#include "split_input.h"

#define MAX_MSGS 4

static const struct h1_limits limits = {.max_head = 4096, .max_line = 1024, .max_headers = 32};

static const char *const heads[2] = {
    "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    "PUT /x?y=1 HTTP/1.1\r\nhost: a\r\ntransfer-encoding:  Chunked \r\ntrailer: t\r\n\r\n",
};

/* What one feeding saw, as text, so two feedings compare with memcmp. */
struct run {
    struct h1_parser *p;
    struct h1_head heads[MAX_MSGS];
    int begins;
    struct buf log;
    struct buf bodies[MAX_MSGS]; /* de-chunked body of each message */
    bool failed;                 /* the parse ended in an error */
    bool first_done;             /* the first message completed */
    size_t first_end;            /* ...and ended at this input offset */
};

static void note(struct run *r, const char *s, size_t n)
{
    if (buf_append(&r->log, s, n) < 0)
        abort();
}

static struct h1_head *on_begin(void *ud)
{
    struct run *r = ud;
    if (r->begins == MAX_MSGS)
        return NULL;
    /* Not noted: given all at once, the guard may refuse the next message
     * before http-parser begins it. */
    return &r->heads[r->begins++];
}

static int on_head(void *ud, struct h1_head *h)
{
    struct run *r = ud;
    char line[64];
    int n = snprintf(line, sizeof line, "<head %u %d %d %llu>", h->nheaders, h->chunked,
                     h->has_content_length, (unsigned long long)h->content_length);
    note(r, line, (size_t)n);
    return 0;
}

static int on_body(void *ud, const char *data, size_t len)
{
    struct run *r = ud;
    if (len == 0)
        abort(); /* the adapter never reports an empty piece */
    if (buf_append(&r->bodies[r->begins - 1], data, len) < 0)
        abort();
    return 0;
}

static int on_complete(void *ud)
{
    struct run *r = ud;
    note(r, "<complete>", 10);
    if (r->begins == 1)
        r->first_done = true;
    return 0;
}

static const struct h1_callbacks callbacks = {on_begin, on_head, on_body, on_complete};

/* Feeds data[0..len) in pieces of the given lengths (one piece when
 * nsplits is 0), keeping unparsed bytes the way conn.c does. */
static void feed(struct run *r, const uint8_t *data, size_t len, struct split_input *in)
{
    r->p = h1_parser_new(&limits, &callbacks, r);
    if (!r->p)
        abort();
    size_t avail = 0, off = 0;
    bool failed = false;
    while (avail < len && !failed) {
        avail += in ? split_input_piece(in, len - avail) : len - avail;
        while (off < avail) {
            ssize_t used = h1_parser_feed(r->p, (const char *)data + off, avail - off);
            if (used < 0) {
                /* Which error is reported first may depend on the pieces
                 * (the guard reads a head ahead of http-parser), so only
                 * that there is one is compared. */
                int status;
                h1_parser_error(r->p, &status);
                if (status < 400 || status > 599)
                    abort();
                note(r, "<error>", 7);
                failed = r->failed = true;
                break;
            }
            if ((size_t)used > avail - off)
                abort();
            off += (size_t)used;
            if (r->first_done && !r->first_end)
                r->first_end = off; /* feeding stops just after a complete message */
            if (used == 0)
                break; /* waiting for more bytes */
        }
    }
    if (!failed) {
        int rc = h1_parser_finish(r->p);
        note(r, rc == 0 ? "<eof>" : "<cut>", 5);
    }
    h1_parser_free(r->p);
}

static void run_free(struct run *r)
{
    for (int i = 0; i < MAX_MSGS; i++)
        h1_head_free(&r->heads[i]);
    buf_free(&r->log);
    for (int i = 0; i < MAX_MSGS; i++)
        buf_free(&r->bodies[i]);
}

static const uint8_t *find_crlf(const uint8_t *p, const uint8_t *end)
{
    for (; p + 1 < end; p++)
        if (p[0] == '\r' && p[1] == '\n')
            return p;
    return NULL;
}

/* A plain reading of the chunked grammar: hex size, anything up to CRLF,
 * data, CRLF; after the zero-size chunk, lines up to an empty one. Returns
 * the offset just past the body, or -1 when it does not parse. */
static long reference_dechunk(const uint8_t *p, size_t len, struct buf *out)
{
    const uint8_t *s = p, *end = p + len;
    for (;;) {
        uint64_t size = 0;
        int digits = 0;
        for (; s < end; s++, digits++) {
            int v = *s >= '0' && *s <= '9'   ? *s - '0'
                    : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
                    : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10
                                             : -1;
            if (v < 0)
                break;
            if (size >> 60)
                return -1;
            size = size * 16 + (uint64_t)v;
        }
        if (digits == 0)
            return -1;
        const uint8_t *eol = find_crlf(s, end);
        if (!eol)
            return -1;
        s = eol + 2;
        if (size == 0)
            break;
        if (size > (uint64_t)(end - s) || (uint64_t)(end - s) - size < 2)
            return -1;
        if (buf_append(out, s, size) < 0)
            abort();
        s += size;
        if (s[0] != '\r' || s[1] != '\n')
            return -1;
        s += 2;
    }
    while (end - s < 2 || s[0] != '\r' || s[1] != '\n') {
        const uint8_t *eol = find_crlf(s, end);
        if (!eol)
            return -1;
        s = eol + 2;
    }
    s += 2;
    return s - p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct split_input in;
    if (!split_input_parse(&in, data, size))
        return 0;
    uint8_t opts = in.opts;
    const uint8_t *rest = in.payload;
    size_t rest_len = in.len;

    const char *head = heads[(opts >> 1) & 1];
    size_t head_len = strlen(head);
    size_t len = head_len + rest_len;
    uint8_t *msg = malloc(len ? len : 1);
    if (!msg)
        abort();
    memcpy(msg, head, head_len);
    memcpy(msg + head_len, rest, rest_len);

    struct run whole = {0}, split = {0};
    feed(&whole, msg, len, NULL);
    feed(&split, msg, len, &in);

    if (buf_size(&whole.log) != buf_size(&split.log) ||
        memcmp(buf_start(&whole.log), buf_start(&split.log), buf_size(&whole.log)) != 0) {
        fprintf(stderr,
                "fuzz_chunked: one piece and split pieces differ\n  whole: %.*s\n  split: %.*s\n",
                (int)buf_size(&whole.log), buf_start(&whole.log), (int)buf_size(&split.log),
                buf_start(&split.log));
        abort();
    }
    for (int i = 0; i < whole.begins; i++) {
        const struct buf *a = &whole.bodies[i], *b = &split.bodies[i];
        size_t n = buf_size(a) < buf_size(b) ? buf_size(a) : buf_size(b);
        bool cut = whole.failed && i == whole.begins - 1;
        if ((!cut && buf_size(a) != buf_size(b)) || memcmp(buf_start(a), buf_start(b), n) != 0) {
            fprintf(stderr, "fuzz_chunked: body %d differs: %zu bytes in one piece, %zu split\n", i,
                    buf_size(a), buf_size(b));
            abort();
        }
    }
    if (whole.first_done) {
        struct buf ref = {0};
        long end = reference_dechunk(msg + head_len, rest_len, &ref);
        if (end < 0 || (size_t)end + head_len != whole.first_end ||
            buf_size(&ref) != buf_size(&whole.bodies[0]) ||
            memcmp(buf_start(&ref), buf_start(&whole.bodies[0]), buf_size(&ref)) != 0) {
            fprintf(stderr,
                    "fuzz_chunked: accepted body differs from the chunked grammar "
                    "(end %ld vs %zu, %zu vs %zu bytes)\n",
                    end, whole.first_end - head_len, buf_size(&ref), buf_size(&whole.bodies[0]));
            abort();
        }
        buf_free(&ref);
    }
    run_free(&whole);
    run_free(&split);
    free(msg);
    return 0;
}
