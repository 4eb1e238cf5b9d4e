/* Kore peer of bench/ws: GET /ws/echo sends every text and binary message
 * back as it came (kore_websocket_handshake, kore_websocket_send), and GET
 * /plaintext answers "Hello, World!" (the readiness check). Built by
 * `kodev build` against Debian's kore package; loaded by conf/ws.conf. */
#include <kore/kore.h>
#include <kore/http.h>

int plaintext(struct http_request *);
int ws_echo(struct http_request *);
void ws_connect(struct connection *);
void ws_message(struct connection *, u_int8_t, void *, size_t);
void ws_disconnect(struct connection *);

static const char plaintext_body[] = "Hello, World!";

int plaintext(struct http_request *req)
{
    http_response_header(req, "content-type", "text/plain");
    http_response(req, 200, plaintext_body, sizeof(plaintext_body) - 1);
    return (KORE_RESULT_OK);
}

int ws_echo(struct http_request *req)
{
    kore_websocket_handshake(req, "ws_connect", "ws_message", "ws_disconnect");
    return (KORE_RESULT_OK);
}

void ws_connect(struct connection *c)
{
    (void)c;
}

void ws_message(struct connection *c, u_int8_t op, void *data, size_t len)
{
    kore_websocket_send(c, op, data, len);
}

void ws_disconnect(struct connection *c)
{
    (void)c;
}
