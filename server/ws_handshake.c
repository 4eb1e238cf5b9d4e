/* ws_handshake: Sec-WebSocket-Key and Sec-WebSocket-Accept; see
 * ws_handshake.h. SHA-1 and base64 are OpenSSL's libcrypto. */
#include "ws_handshake.h"

#include <openssl/evp.h>
#include <strings.h>
#include <string.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static bool base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

bool ws_key_valid(const char *key, size_t len)
{
    if (len != 24 || key[22] != '=' || key[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!base64_char(key[i]))
            return false;
    /* The last character before "==" carries 2 bits of the 16th byte and 4
     * bits of padding, which must be zero: A, Q, g or w. */
    return strchr("AQgw", key[21]) != NULL;
}

int ws_accept(const char *key, size_t len, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, key, len) == 1 &&
             EVP_DigestUpdate(ctx, ws_guid, sizeof ws_guid - 1) == 1 &&
             EVP_DigestFinal_ex(ctx, digest, &dlen) == 1 && dlen == 20;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    return EVP_EncodeBlock((unsigned char *)out, digest, 20) == WS_ACCEPT_LEN ? 0 : -1;
}

bool ws_token_list_has(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = value, *end = value + len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *start = p;
        while (p < end && *p != ',')
            p++;
        const char *stop = p;
        while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t'))
            stop--;
        if ((size_t)(stop - start) == tlen && strncasecmp(start, token, tlen) == 0)
            return true;
    }
    return false;
}

/* Whether any header named name (lower case) holds token. */
static bool any_has(const struct h1_head *h, const char *name, const char *token)
{
    size_t nlen = strlen(name);
    for (uint32_t i = 0; i < h->nheaders; i++)
        if (h->headers[i].name_len == nlen && memcmp(h1_header_name(h, i), name, nlen) == 0 &&
            ws_token_list_has(h1_header_value(h, i), h->headers[i].value_len, token))
            return true;
    return false;
}

/* The only header named name: its index, -1 when absent, -2 when repeated. */
static int only(const struct h1_head *h, const char *name)
{
    size_t nlen = strlen(name);
    int found = -1;
    for (uint32_t i = 0; i < h->nheaders; i++)
        if (h->headers[i].name_len == nlen && memcmp(h1_header_name(h, i), name, nlen) == 0) {
            if (found >= 0)
                return -2;
            found = (int)i;
        }
    return found;
}

enum ws_check ws_handshake_check(const struct h1_head *h, const char **why, const char **key,
                                 size_t *key_len)
{
    if (!any_has(h, "upgrade", "websocket"))
        return WS_CHECK_NOT_WEBSOCKET;
    if (h->method_len != 3 || memcmp(h->method, "GET", 3) != 0) {
        *why = "a WebSocket handshake is a GET request";
        return WS_CHECK_BAD_REQUEST;
    }
    if (h->http_major < 1 || (h->http_major == 1 && h->http_minor < 1)) {
        *why = "a WebSocket handshake needs HTTP/1.1";
        return WS_CHECK_BAD_REQUEST;
    }
    if (!any_has(h, "connection", "upgrade")) {
        *why = "the Connection header does not ask for an upgrade";
        return WS_CHECK_NO_UPGRADE;
    }
    int v = only(h, "sec-websocket-version");
    if (v < 0 || h->headers[v].value_len != 2 || memcmp(h1_header_value(h, (uint32_t)v), "13", 2)) {
        *why = "only WebSocket version 13 is spoken";
        return WS_CHECK_BAD_VERSION;
    }
    int k = only(h, "sec-websocket-key");
    if (k < 0 || !ws_key_valid(h1_header_value(h, (uint32_t)k), h->headers[k].value_len)) {
        *why =
            k == -2 ? "more than one Sec-WebSocket-Key" : "a missing or invalid Sec-WebSocket-Key";
        return WS_CHECK_BAD_REQUEST;
    }
    *key = h1_header_value(h, (uint32_t)k);
    *key_len = h->headers[k].value_len;
    return WS_CHECK_OK;
}
