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

#endif
