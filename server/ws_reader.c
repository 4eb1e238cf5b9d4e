/* ws_reader: frames to messages; see ws_reader.h. */
#include "ws_reader.h"

#include <string.h>

/* A message buffer larger than this is freed after its message. */
#define KEEP_MESSAGE_BUFFER (4 * 1024)

void ws_reader_init(struct ws_reader *r, const struct ws_reader_events *ev, void *ud,
                    uint64_t max_size)
{
    memset(r, 0, sizeof *r);
    r->ev = ev;
    r->ud = ud;
    r->max_size = max_size;
    utf8_init(&r->utf8);
}

void ws_reader_free(struct ws_reader *r)
{
    buf_free(&r->msg);
}

void ws_reader_allow_compression(struct ws_reader *r)
{
    r->deflate = true;
}

static int fail(uint16_t *close_code, uint16_t code)
{
    *close_code = code;
    return -1;
}

static bool is_control(uint8_t opcode)
{
    return (opcode & 0x8) != 0;
}

/* A frame's head is read: the rules of the message around it. */
static int begin_frame(struct ws_reader *r, uint16_t *close_code)
{
    const struct ws_frame_head *h = &r->h;
    /* RFC 7692 §6.1: RSV1 marks a compressed message on its first frame;
     * on a control frame or a continuation it is an error. */
    bool rsv1 = (h->rsv & WS_RSV1) != 0;
    if (rsv1 && (is_control(h->opcode) || h->opcode == WS_OP_CONTINUATION))
        return fail(close_code, WS_CLOSE_PROTOCOL_ERROR);
    if (is_control(h->opcode))
        return 0;
    if (h->opcode == WS_OP_CONTINUATION) {
        if (!r->in_message)
            return fail(close_code, WS_CLOSE_PROTOCOL_ERROR);
    } else {
        if (r->in_message)
            return fail(close_code, WS_CLOSE_PROTOCOL_ERROR);
        r->in_message = true;
        r->text = h->opcode == WS_OP_TEXT;
        r->compressed = rsv1;
        utf8_init(&r->utf8);
        buf_clear(&r->msg);
    }
    if (buf_size(&r->msg) + h->len > r->max_size)
        return fail(close_code, WS_CLOSE_TOO_BIG);
    return 0;
}

/* The whole payload of r->h is read. */
static int end_frame(struct ws_reader *r, uint16_t *close_code)
{
    const struct ws_frame_head *h = &r->h;
    int rc = 0;
    r->in_frame = false;
    if (h->opcode == WS_OP_CLOSE) {
        uint16_t code;
        const uint8_t *reason;
        size_t len;
        if (ws_close_parse(r->control, (size_t)h->len, &code, &reason, &len, close_code) < 0)
            return -1;
        r->closed = true;
        rc = r->ev->close(r->ud, code, reason, len);
    } else if (is_control(h->opcode)) {
        rc = r->ev->control(r->ud, h->opcode, r->control, (size_t)h->len);
    } else if (h->fin) {
        if (r->text && !r->compressed && r->utf8.need)
            return fail(close_code, WS_CLOSE_INVALID_DATA); /* ends inside a character */
        r->in_message = false;
        rc = r->ev->message(r->ud, r->text, r->compressed, (const uint8_t *)buf_start(&r->msg),
                            buf_size(&r->msg));
        /* An idle connection keeps no buffer sized for its largest message. */
        if (r->msg.cap > KEEP_MESSAGE_BUFFER)
            buf_free(&r->msg);
        else
            buf_clear(&r->msg);
    }
    return rc < 0 ? fail(close_code, 0) : 0;
}

int ws_reader_feed(struct ws_reader *r, uint8_t *p, size_t n, uint16_t *close_code)
{
    while (n > 0 && !r->closed) {
        if (!r->in_frame) {
            size_t take = WS_FRAME_HEAD_MAX - r->head_len;
            if (take > n)
                take = n;
            memcpy(r->head + r->head_len, p, take);
            int len = ws_frame_parse_head(r->head, r->head_len + take, r->deflate ? WS_RSV1 : 0,
                                          r->max_size, &r->h, close_code);
            if (len < 0)
                return -1;
            if (len == 0) {
                r->head_len += take;
                p += take;
                n -= take;
                continue;
            }
            size_t used = (size_t)len - r->head_len;
            p += used;
            n -= used;
            r->head_len = 0;
            if (begin_frame(r, close_code) < 0)
                return -1;
            r->in_frame = true;
            r->frame_got = 0;
            if (r->h.len == 0 && end_frame(r, close_code) < 0)
                return -1;
            continue;
        }
        uint64_t left = r->h.len - r->frame_got;
        size_t take = n < left ? n : (size_t)left;
        ws_unmask(p, take, r->h.mask, r->frame_got);
        if (take == r->h.len && r->h.fin && !is_control(r->h.opcode) && buf_size(&r->msg) == 0) {
            /* A whole message in one frame, all at hand: delivered from
             * the input itself. */
            if (r->text && !r->compressed && utf8_feed(&r->utf8, p, take) != UTF8_COMPLETE)
                return fail(close_code, WS_CLOSE_INVALID_DATA);
            r->in_frame = false;
            r->in_message = false;
            int rc = r->ev->message(r->ud, r->text, r->compressed, p, take);
            if (rc < 0)
                return fail(close_code, 0);
            p += take;
            n -= take;
            continue;
        }
        if (is_control(r->h.opcode)) {
            memcpy(r->control + r->frame_got, p, take);
        } else {
            if (r->text && !r->compressed && utf8_feed(&r->utf8, p, take) == UTF8_INVALID)
                return fail(close_code, WS_CLOSE_INVALID_DATA);
            if (buf_append(&r->msg, p, take) < 0)
                return fail(close_code, WS_CLOSE_INTERNAL_ERROR);
        }
        r->frame_got += take;
        p += take;
        n -= take;
        if (r->frame_got == r->h.len && end_frame(r, close_code) < 0)
            return -1;
    }
    return 0;
}
