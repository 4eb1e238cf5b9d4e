/* fuzz_ws: a client's WebSocket frames through ws_reader, and what it
 * delivers through the UTF-8 validator and permessage-deflate's inflater.
 *
 * The payload is a stream of frames (masked or not, any opcode, any
 * length). It is read twice: in one piece and in pieces whose lengths the
 * input chooses. Checked besides the sanitizers':
 *   - where the bytes are split changes nothing: both readings deliver the
 *     same events and end the same way, with the same close code;
 *   - a text message delivered is valid UTF-8, and the validator fed the
 *     same bytes in the input's pieces agrees with it fed them whole;
 *   - option bit 0: permessage-deflate is negotiated; each message whose
 *     first frame has RSV1 is inflated with a 64 KiB limit that is never
 *     passed by more than a step, and what inflates is deflated and
 *     inflated back unchanged.
 *
 * Input layout (split_input.h): options, split lengths, then the frames. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "split_input.h"
#include "utf8.h"
#include "ws_deflate.h"
#include "ws_reader.h"

#define MAX_SIZE (1u << 16)

struct run {
    struct buf log;
    bool inflate; /* permessage-deflate negotiated */
    bool check;   /* inflate what is compressed (one of the two readings) */
};

static void note(struct run *r, char kind, const void *p, size_t n)
{
    uint32_t len = (uint32_t)n;
    if (buf_append(&r->log, &kind, 1) < 0 || buf_append(&r->log, &len, sizeof len) < 0 ||
        buf_append(&r->log, p, n) < 0)
        abort();
}

/* Inflates a compressed message within the limit, and checks that what
 * inflates deflates and inflates back unchanged. */
static void check_inflate(const uint8_t *p, size_t n)
{
    static const struct ws_deflate_params params = {true, true, 15, 0};
    struct ws_zstream in = {0}, def = {0};
    struct buf out = {0}, wire = {0}, back = {0};
    uint16_t code = 0;
    if (ws_inflate_message(&in, &params, p, n, &out, MAX_SIZE, &code) == 0) {
        if (buf_size(&out) > MAX_SIZE)
            abort();
        if (ws_deflate_message(&def, &params, (const uint8_t *)buf_start(&out), buf_size(&out),
                               &wire) < 0 ||
            ws_inflate_message(&in, &params, (const uint8_t *)buf_start(&wire), buf_size(&wire),
                               &back, MAX_SIZE, &code) < 0 ||
            buf_size(&back) != buf_size(&out) ||
            memcmp(buf_start(&back), buf_start(&out), buf_size(&out)) != 0)
            abort();
    } else if (code != 1009 && code != 1007) {
        abort();
    } else if (buf_size(&out) > MAX_SIZE + 16384) {
        abort(); /* a bomb must stop a step past the limit */
    }
    ws_inflate_end(&in);
    ws_deflate_end(&def);
    buf_free(&out);
    buf_free(&wire);
    buf_free(&back);
}

static int on_message(void *ud, bool text, bool compressed, const uint8_t *p, size_t n)
{
    struct run *r = ud;
    if (compressed != r->inflate && compressed)
        abort(); /* RSV1 passed without permessage-deflate */
    if (text && !compressed && !utf8_valid(p, n))
        abort();
    if (compressed && r->check)
        check_inflate(p, n);
    note(r, compressed ? (text ? 't' : 'b') : (text ? 'T' : 'B'), p, n);
    return 0;
}

static int on_control(void *ud, uint8_t opcode, const uint8_t *p, size_t n)
{
    note(ud, (char)('0' + opcode), p, n);
    return 0;
}

static int on_close(void *ud, uint16_t code, const uint8_t *reason, size_t n)
{
    if (code != 1005 && !ws_close_code_valid(code))
        abort();
    note(ud, 'C', &code, sizeof code);
    note(ud, 'R', reason, n);
    return 0;
}

static const struct ws_reader_events events = {on_message, on_control, on_close};

/* Reads the frames in pieces (or whole when in is NULL); the result and
 * close code are appended to the log. */
static void read_frames(struct run *r, const uint8_t *frames, size_t len, struct split_input *in)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        abort();
    memcpy(copy, frames, len);
    struct ws_reader reader;
    ws_reader_init(&reader, &events, r, MAX_SIZE);
    if (r->inflate)
        ws_reader_allow_compression(&reader);
    int rc = 0;
    uint16_t code = 0;
    for (size_t at = 0; at < len && rc == 0;) {
        size_t n = in ? split_input_piece(in, len - at) : len - at;
        rc = ws_reader_feed(&reader, copy + at, n, &code);
        at += n;
    }
    ws_reader_free(&reader);
    free(copy);
    note(r, rc ? 'E' : 'e', &code, sizeof code);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct split_input in;
    if (!split_input_parse(&in, data, size))
        return 0;
    bool inflate = in.opts & 1;
    struct run whole = {.inflate = inflate, .check = true}, pieces = {.inflate = inflate};
    read_frames(&whole, in.payload, in.len, NULL);
    read_frames(&pieces, in.payload, in.len, &in);
    if (buf_size(&whole.log) != buf_size(&pieces.log) ||
        memcmp(buf_start(&whole.log), buf_start(&pieces.log), buf_size(&whole.log)) != 0)
        abort();
    buf_free(&whole.log);
    buf_free(&pieces.log);

    /* The validator in the input's pieces against the same bytes whole. */
    struct utf8_state s;
    utf8_init(&s);
    in.next = 0;
    enum utf8_result res = UTF8_COMPLETE;
    for (size_t at = 0; at < in.len && res != UTF8_INVALID;) {
        size_t n = split_input_piece(&in, in.len - at);
        res = utf8_feed(&s, in.payload + at, n);
        at += n;
    }
    if ((res == UTF8_COMPLETE) != (utf8_valid(in.payload, in.len) != 0))
        abort();
    return 0;
}
