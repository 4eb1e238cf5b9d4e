/* ws_frame: the WebSocket frame format (RFC 6455 §5): a received frame's
 * head, unmasking, a server frame's head, close frame payloads.
 *
 * Only what one frame shows on its own is checked here; the rules that
 * need the message around it (a continuation without a start, a data frame
 * inside a fragmented message, RSV1 on a continuation, the size of a whole
 * message, UTF-8 across frames) belong to the connection's protocol. */
#ifndef EVICORN_WS_FRAME_H
#define EVICORN_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
    WS_OP_CONTINUATION = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close codes (§7.4.1) the server itself uses. */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_NO_STATUS = 1005, /* never on the wire: a close frame without a code */
    WS_CLOSE_ABNORMAL = 1006,  /* never on the wire: the connection was lost */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL_ERROR = 1011,
    WS_CLOSE_SERVICE_RESTART = 1012,
};

/* RSV bits as they sit in the first byte. */
#define WS_RSV1 0x40
#define WS_RSV2 0x20
#define WS_RSV3 0x10

/* The longest head: 2 bytes, 8 of extended length, 4 of mask. */
#define WS_FRAME_HEAD_MAX 14

struct ws_frame_head {
    bool fin;
    uint8_t rsv; /* WS_RSV1 | WS_RSV2 | WS_RSV3 as received */
    uint8_t opcode;
    bool masked;
    uint8_t mask[4];
    uint64_t len;
};

/* A client frame's head at the start of p[0..n): the head's length (2..14)
 * with *h filled, 0 when more bytes are needed, or -1 with *close_code
 * when the head alone breaks a rule: an unknown opcode, RSV bits outside
 * allowed_rsv, a control frame that is fragmented or longer than 125
 * bytes, an unmasked frame, a 64-bit length with its top bit set (1002);
 * a payload longer than max_len (1009). */
int ws_frame_parse_head(const uint8_t *p, size_t n, uint8_t allowed_rsv, uint64_t max_len,
                        struct ws_frame_head *h, uint16_t *close_code);

/* XORs n payload bytes with the mask; offset: how far into the payload p
 * starts (a payload may arrive in pieces). */
void ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);

/* A server frame's head (never masked, §5.1) into out, which has room for
 * WS_FRAME_HEAD_MAX bytes: its length, in the shortest form. */
size_t ws_frame_head_write(uint8_t *out, bool fin, uint8_t rsv, uint8_t opcode, uint64_t len);

/* Whether a close code may be sent or received: 1000-1003, 1007-1014
 * (IANA's registry), 3000-4999 (libraries and applications). Never 1004,
 * 1005, 1006, 1015, 1016-2999, or anything outside 1000-4999. */
/* The longest close reason: a control frame's 125 bytes less the code. */
#define WS_CLOSE_REASON_MAX 123

bool ws_close_code_valid(unsigned code);

/* A received close frame's payload: 0 with *code and its reason (code 1005
 * when the payload is empty), or -1 with *close_code: 1002 for a 1-byte
 * payload or a code ws_close_code_valid refuses, 1007 for a reason that
 * is not UTF-8. */
int ws_close_parse(const uint8_t *p, size_t n, uint16_t *code, const uint8_t **reason,
                   size_t *reason_len, uint16_t *close_code);

#endif
