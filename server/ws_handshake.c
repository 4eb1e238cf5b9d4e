/* ws_handshake: Sec-WebSocket-Key and Sec-WebSocket-Accept; see
 * ws_handshake.h. SHA-1 and base64 are OpenSSL's libcrypto. */
#include "ws_handshake.h"

#include <openssl/evp.h>
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
