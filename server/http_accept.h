/* http_accept: Accept-Encoding (RFC 9110 12.5.3), for choosing between a
 * file and its precompressed siblings.
 *
 * Pure functions; values are not NUL-terminated. */
#ifndef EVICORN_HTTP_ACCEPT_H
#define EVICORN_HTTP_ACCEPT_H

#include <stddef.h>

/* The q-value, in thousandths (0 to 1000), that an Accept-Encoding value
 * gives coding (case-insensitive): its own element, else "*"'s, else -1
 * (not mentioned). "x-gzip" counts as "gzip" (RFC 9110 8.4.1.3). An
 * element with an invalid q-value is skipped. */
int http_accept_encoding_q(const char *value, size_t len, const char *coding);

/* The codings a file can be sent in, in the server's order of preference
 * on a tie. */
enum http_coding { HTTP_CODING_BR, HTTP_CODING_GZIP, HTTP_CODING_IDENTITY, HTTP_CODINGS };

/* Orders the codings by what the request accepts (value NULL: no
 * Accept-Encoding, which gets identity only: a client that does not say
 * it decodes is not sent an encoding). Writes the acceptable codings,
 * best first (ties in enum order) into order and returns their count;
 * identity not mentioned is acceptable and ranks last. */
size_t http_accept_encoding_order(const char *value, size_t len,
                                  enum http_coding order[HTTP_CODINGS]);

#endif
