/* ws_deflate: permessage-deflate (RFC 7692): choosing from a client's
 * offers, and compressing and decompressing whole messages with zlib.
 *
 * Decompression is bounded: a message that would inflate past the size
 * limit is refused when the limit is crossed, not after inflating the rest
 * (a small compressed message can expand a thousandfold). */
#ifndef EVICORN_WS_DEFLATE_H
#define EVICORN_WS_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "buf.h"

struct ws_deflate_params {
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    int server_max_window_bits; /* 8..15: the server compresses with at most this */
    int client_max_window_bits; /* 8..15, or 0 when not negotiated (15 then) */
};

/* From the Sec-WebSocket-Extensions offers (several header lines joined
 * with ", "): the first permessage-deflate offer whose parameters are all
 * known, valid and given once (§7.1). keep_context false: the answer adds
 * both no_context_takeover parameters, so that no compression state
 * outlives a message. 1 with *params and the answer's value written into
 * answer (NUL-terminated); 0 when no offer can be accepted (or answer is
 * too small): the connection goes on without compression. */
int ws_deflate_negotiate(const char *offers, size_t len, bool keep_context,
                         struct ws_deflate_params *params, char *answer, size_t cap);

/* A direction's zlib stream. With no context takeover for that direction
 * it exists only while a message is (de)compressed. */
struct ws_zstream {
    z_stream z;
    bool live;
};

/* Appends the decompressed message to out (§7.2.2: its payload, then
 * 00 00 ff ff, inflated), out holding at most max bytes in the end. 0, or
 * -1 with *close_code: 1009 once out would pass max (the rest is not
 * inflated), 1007 when the data is not DEFLATE, 1011 when out of memory. */
int ws_inflate_message(struct ws_zstream *in, const struct ws_deflate_params *params,
                       const uint8_t *p, size_t n, struct buf *out, uint64_t max,
                       uint16_t *close_code);

/* Whether the server may compress what it sends: zlib cannot deflate with
 * a 256-byte window (server_max_window_bits=8), so such messages go out
 * uncompressed, which §6 allows message by message. */
bool ws_deflate_can_compress(const struct ws_deflate_params *params);

/* Appends the compressed message to out (§7.2.1: DEFLATE, a sync flush,
 * its last 4 bytes 00 00 ff ff removed). 0, or -1 when out of memory. */
int ws_deflate_message(struct ws_zstream *def, const struct ws_deflate_params *params,
                       const uint8_t *p, size_t n, struct buf *out);

/* Frees a stream's state (at the end of the connection). */
void ws_inflate_end(struct ws_zstream *in);
void ws_deflate_end(struct ws_zstream *def);

#endif
