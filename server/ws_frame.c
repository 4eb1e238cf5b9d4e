/* ws_frame: RFC 6455 §5.2's frame layout; see ws_frame.h. */
#include "ws_frame.h"

#include <string.h>

#include "utf8.h"

static bool opcode_known(uint8_t op)
{
    return op == WS_OP_CONTINUATION || op == WS_OP_TEXT || op == WS_OP_BINARY ||
           op == WS_OP_CLOSE || op == WS_OP_PING || op == WS_OP_PONG;
}

static int refuse(uint16_t *close_code, uint16_t code)
{
    *close_code = code;
    return -1;
}

int ws_frame_parse_head(const uint8_t *p, size_t n, uint8_t allowed_rsv, uint64_t max_len,
                        struct ws_frame_head *h, uint16_t *close_code)
{
    if (n < 2)
        return 0;
    h->fin = (p[0] & 0x80) != 0;
    h->rsv = p[0] & (WS_RSV1 | WS_RSV2 | WS_RSV3);
    h->opcode = p[0] & 0x0F;
    h->masked = (p[1] & 0x80) != 0;
    uint8_t len7 = p[1] & 0x7F;
    /* What the first two bytes show is refused before waiting for more. */
    if (!opcode_known(h->opcode) || (h->rsv & ~allowed_rsv))
        return refuse(close_code, WS_CLOSE_PROTOCOL_ERROR);
    bool control = (h->opcode & 0x8) != 0;
    if (control && (!h->fin || len7 > 125))
        return refuse(close_code, WS_CLOSE_PROTOCOL_ERROR);
    if (!h->masked) /* §5.1: a server closes on an unmasked client frame */
        return refuse(close_code, WS_CLOSE_PROTOCOL_ERROR);
    size_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
    if (n < need)
        return 0;
    if (len7 == 126) {
        h->len = (uint64_t)p[2] << 8 | p[3];
    } else if (len7 == 127) {
        if (p[2] & 0x80) /* §5.2: the most significant bit must be 0 */
            return refuse(close_code, WS_CLOSE_PROTOCOL_ERROR);
        h->len = 0;
        for (int i = 0; i < 8; i++)
            h->len = h->len << 8 | p[2 + i];
    } else {
        h->len = len7;
    }
    if (h->len > max_len)
        return refuse(close_code, WS_CLOSE_TOO_BIG);
    if (n < need + 4)
        return 0;
    for (int i = 0; i < 4; i++)
        h->mask[i] = p[need + i];
    return (int)(need + 4);
}

void ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
    size_t k = (size_t)(offset & 3);
    size_t i = 0;
    /* Byte by byte up to a multiple of 4 into the payload, then 4 at once. */
    for (; i < n && k != 0; i++, k = (k + 1) & 3)
        p[i] ^= mask[k];
    uint32_t m4;
    uint8_t *mb = (uint8_t *)&m4;
    for (int j = 0; j < 4; j++)
        mb[j] = mask[j];
    for (; i + 4 <= n; i += 4) {
        uint32_t v;
        memcpy(&v, p + i, 4);
        v ^= m4;
        memcpy(p + i, &v, 4);
    }
    for (k = 0; i < n; i++, k++)
        p[i] ^= mask[k];
}

size_t ws_frame_head_write(uint8_t *out, bool fin, uint8_t rsv, uint8_t opcode, uint64_t len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & (WS_RSV1 | WS_RSV2 | WS_RSV3)) | (opcode & 0x0F));
    if (len <= 125) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (8 * (7 - i)));
    return 10;
}

bool ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int ws_close_parse(const uint8_t *p, size_t n, uint16_t *code, const uint8_t **reason,
                   size_t *reason_len, uint16_t *close_code)
{
    *reason = p;
    *reason_len = 0;
    if (n == 0) {
        *code = WS_CLOSE_NO_STATUS;
        return 0;
    }
    if (n == 1)
        return refuse(close_code, WS_CLOSE_PROTOCOL_ERROR);
    unsigned c = (unsigned)p[0] << 8 | p[1];
    if (!ws_close_code_valid(c))
        return refuse(close_code, WS_CLOSE_PROTOCOL_ERROR);
    if (!utf8_valid(p + 2, n - 2))
        return refuse(close_code, WS_CLOSE_INVALID_DATA);
    *code = (uint16_t)c;
    *reason = p + 2;
    *reason_len = n - 2;
    return 0;
}
