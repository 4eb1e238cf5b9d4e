/* ws_handshake: the parts of the opening handshake (RFC 6455 §4.2) that
 * are computed rather than looked up: the client's key checked, and the
 * server's Sec-WebSocket-Accept derived from it. */
#ifndef EVICORN_WS_HANDSHAKE_H
#define EVICORN_WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

/* Base64 of SHA-1 over 20 bytes, and its terminating NUL. */
#define WS_ACCEPT_LEN 28

/* Whether key is what §4.1 requires of Sec-WebSocket-Key: the base64 of
 * 16 bytes (24 characters, ending in "=="). */
bool ws_key_valid(const char *key, size_t len);

/* Sec-WebSocket-Accept for a valid key: base64(SHA-1(key + the GUID of
 * §1.3)). 0, or -1 when the hash could not be computed. */
int ws_accept(const char *key, size_t len, char out[WS_ACCEPT_LEN + 1]);

#endif
