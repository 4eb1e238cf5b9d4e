/* ws_reader: a client's frames in, whole messages and control frames out
 * (RFC 6455 §5.4-§5.6), with the rules that need the message around a
 * frame: a continuation without a start or a data frame inside a
 * fragmented message (1002), a message over the size limit (1009), text
 * that is not UTF-8 (1007, as soon as a byte shows it, even before the
 * message ends). Control frames may come between a message's fragments.
 * Bytes after a close frame are ignored.
 *
 * No I/O: the connection feeds what it read, in pieces of any size, and
 * gets the events back through the functions it gave. */
#ifndef EVICORN_WS_READER_H
#define EVICORN_WS_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "utf8.h"
#include "ws_frame.h"

/* Each returns 0 to go on, or -1 to stop: ws_reader_feed then returns -1
 * with close code 0. */
struct ws_reader_events {
    /* A whole message, p[0..n) valid only during the call (it may be the
     * caller's own input: a message in one frame is not copied).
     * compressed: its first frame had RSV1 (permessage-deflate): it is
     * still compressed, and text in it is checked for UTF-8 only once
     * inflated, by the receiver. */
    int (*message)(void *ud, bool text, bool compressed, const uint8_t *p, size_t n);
    /* A ping or a pong (opcode) and its payload (at most 125 bytes). */
    int (*control)(void *ud, uint8_t opcode, const uint8_t *p, size_t n);
    /* A valid close frame: its code (1005 for none) and reason. */
    int (*close)(void *ud, uint16_t code, const uint8_t *reason, size_t n);
};

struct ws_reader {
    const struct ws_reader_events *ev;
    void *ud;
    uint64_t max_size; /* of a message */
    uint8_t head[WS_FRAME_HEAD_MAX];
    size_t head_len; /* bytes of the next frame's head gathered */
    bool in_frame;   /* h is the frame whose payload comes */
    struct ws_frame_head h;
    uint64_t frame_got; /* payload bytes of h read */
    bool in_message;    /* a data message has started and not ended */
    bool text;
    bool deflate;    /* permessage-deflate was negotiated: RSV1 may start a message */
    bool compressed; /* the message being read had RSV1 */
    struct utf8_state utf8;
    struct buf msg; /* a fragmented message, or a frame that came in pieces */
    uint8_t control[125];
    bool closed; /* a close frame was read: nothing more is */
};

void ws_reader_init(struct ws_reader *r, const struct ws_reader_events *ev, void *ud,
                    uint64_t max_size);
void ws_reader_free(struct ws_reader *r);
/* After the handshake negotiated permessage-deflate. */
void ws_reader_allow_compression(struct ws_reader *r);

/* Reads p[0..n), unmasking it in place. 0: all of it was taken. -1 with
 * *close_code: close the connection with that code (1002, 1007, 1009;
 * 1011 when out of memory), or with 0 when an event asked to stop. */
int ws_reader_feed(struct ws_reader *r, uint8_t *p, size_t n, uint16_t *close_code);

#endif
