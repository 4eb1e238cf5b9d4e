/* proxy_trust: --forwarded-allow-ips, the proxies whose X-Forwarded-For
 * and X-Forwarded-Proto are believed, with uvicorn's rules:
 *
 *  - the list is comma-separated: "*" (everyone), IP addresses (compared
 *    as addresses, so "::1" and "0:0:0:0:0:0:0:1" are one), networks in
 *    CIDR form ("10.0.0.0/8"), and anything else as a literal string;
 *  - the client of a request from a trusted peer is the first address,
 *    from the right of X-Forwarded-For (every proxy appends the one it
 *    saw), that is not itself a trusted proxy; when all are, the leftmost.
 *    With "*", the leftmost. Entries may carry a port ("1.2.3.4:5",
 *    "[::1]:5"). */
#ifndef EVICORN_PROXY_TRUST_H
#define EVICORN_PROXY_TRUST_H

#include <stdbool.h>
#include <stddef.h>

struct proxy_trust;

/* NULL when out of memory. */
struct proxy_trust *proxy_trust_parse(const char *list);
void proxy_trust_free(struct proxy_trust *t);

/* Whether the list is "*": a peer on a unix socket, which has no
 * address, is trusted only then (as in uvicorn). */
bool proxy_trust_everyone(const struct proxy_trust *t);

/* Whether host (an address, or the literal a peer is known by) is trusted. */
bool proxy_trust_has(const struct proxy_trust *t, const char *host, size_t len);

/* The client named by X-Forwarded-For values (several headers are read as
 * one list, in order). false when there is none (empty values). */
struct forwarded_client {
    const char *host; /* into the values */
    size_t host_len;
    int port; /* 0 when not given */
};
bool proxy_trust_client(const struct proxy_trust *t, const char *const *values, const size_t *lens,
                        size_t nvalues, struct forwarded_client *out);

#endif
