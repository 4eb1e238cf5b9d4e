/* ws_handshake: the parts of the opening handshake (RFC 6455 §4.2) that
 * are computed rather than looked up: the client's key checked, and the
 * server's Sec-WebSocket-Accept derived from it. */
#ifndef EVICORN_WS_HANDSHAKE_H
#define EVICORN_WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "http1.h"

/* Base64 of SHA-1 over 20 bytes, and its terminating NUL. */
#define WS_ACCEPT_LEN 28

/* Whether key is what §4.1 requires of Sec-WebSocket-Key: the base64 of
 * 16 bytes (24 characters, ending in "=="). */
bool ws_key_valid(const char *key, size_t len);

/* Sec-WebSocket-Accept for a valid key: base64(SHA-1(key + the GUID of
 * §1.3)). 0, or -1 when the hash could not be computed. */
int ws_accept(const char *key, size_t len, char out[WS_ACCEPT_LEN + 1]);

/* Whether a comma-separated header value (Connection, Upgrade) holds
 * token, compared without regard to case. */
bool ws_token_list_has(const char *value, size_t len, const char *token);

/* What a request's head says about an upgrade to WebSocket (§4.2.1). */
enum ws_check {
    WS_CHECK_NOT_WEBSOCKET, /* no "Upgrade: websocket": an ordinary request */
    WS_CHECK_OK,            /* a valid opening handshake */
    WS_CHECK_BAD_REQUEST,   /* 400: not GET, not HTTP/1.1+, a missing or bad key */
    WS_CHECK_NO_UPGRADE,    /* 426 with "Upgrade: websocket": Connection lacks upgrade */
    WS_CHECK_BAD_VERSION,   /* 426 with "Sec-WebSocket-Version: 13" */
};

/* Checks h; *why is a short reason for a refusal, and *key (with *key_len)
 * the client's key when the result is WS_CHECK_OK. */
enum ws_check ws_handshake_check(const struct h1_head *h, const char **why, const char **key,
                                 size_t *key_len);

#endif
