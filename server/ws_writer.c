/* ws_writer: server frames; see ws_writer.h. */
#include "ws_writer.h"

#include "ws_frame.h"

static int frame(struct buf *out, bool fin, uint8_t rsv, uint8_t opcode, const void *p, size_t n)
{
    uint8_t head[WS_FRAME_HEAD_MAX];
    size_t hl = ws_frame_head_write(head, fin, rsv, opcode, n);
    return buf_append(out, head, hl) < 0 || buf_append(out, p, n) < 0 ? -1 : 0;
}

int ws_write_message(struct buf *out, bool text, const uint8_t *p, size_t n,
                     const struct ws_deflate_params *params, struct ws_zstream *def,
                     size_t max_frame)
{
    struct buf packed = {0};
    uint8_t rsv = 0;
    if (params && ws_deflate_can_compress(params)) {
        if (ws_deflate_message(def, params, p, n, &packed) < 0) {
            buf_free(&packed);
            return -1;
        }
        p = (const uint8_t *)buf_start(&packed);
        n = buf_size(&packed);
        rsv = WS_RSV1;
    }
    uint8_t opcode = text ? WS_OP_TEXT : WS_OP_BINARY;
    int rc = 0;
    do {
        size_t take = max_frame && n > max_frame ? max_frame : n;
        rc = frame(out, take == n, rsv, opcode, p, take);
        p += take;
        n -= take;
        opcode = WS_OP_CONTINUATION;
        rsv = 0; /* RSV1 marks the message, on its first frame only */
    } while (rc == 0 && n > 0);
    buf_free(&packed);
    return rc;
}

int ws_write_control(struct buf *out, uint8_t opcode, const uint8_t *p, size_t n)
{
    if (n > 125)
        return -1;
    return frame(out, true, 0, opcode, p, n);
}

int ws_write_close(struct buf *out, uint16_t code, const char *reason, size_t n)
{
    if (code == WS_CLOSE_NO_STATUS)
        return frame(out, true, 0, WS_OP_CLOSE, "", 0);
    uint8_t payload[125];
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (n > 123) {
        n = 123;
        /* Back to the start of a character: never half of one. */
        while (n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80)
            n--;
    }
    for (size_t i = 0; i < n; i++)
        payload[2 + i] = (uint8_t)reason[i];
    return frame(out, true, 0, WS_OP_CLOSE, payload, 2 + n);
}
