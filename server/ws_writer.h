/* ws_writer: what the server sends, as frames (RFC 6455 §5; never
 * masked): messages, compressed with permessage-deflate when it was
 * negotiated and split into frames of a bounded size, pings and pongs,
 * and close frames. Appends to a buffer; the connection writes it. */
#ifndef EVICORN_WS_WRITER_H
#define EVICORN_WS_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "ws_deflate.h"

/* A message into out. params NULL: no compression; else it is compressed
 * through def (RSV1 on its first frame) unless params forbid it.
 * max_frame: the largest frame payload (0: one frame). 0, or -1 when out
 * of memory (out may then hold part of the message: close the
 * connection). */
int ws_write_message(struct buf *out, bool text, const uint8_t *p, size_t n,
                     const struct ws_deflate_params *params, struct ws_zstream *def,
                     size_t max_frame);

/* A ping or pong with at most 125 bytes of payload. 0, or -1 (out of
 * memory, or a payload too long). */
int ws_write_control(struct buf *out, uint8_t opcode, const uint8_t *p, size_t n);

/* A close frame: code 1005 sends none; otherwise the code, and the reason
 * cut to the 123 bytes a control frame leaves it, at a character boundary.
 * 0, or -1 when out of memory. */
int ws_write_close(struct buf *out, uint16_t code, const char *reason, size_t n);

#endif
