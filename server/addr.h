/* addr: a socket address as the server shows it: an IP address in text and
 * a port, kept apart so nothing re-parses "ip:port" to get one back.
 *
 * Connections store their peer this way once, at accept; requests copy it
 * as their client (X-Forwarded-For may replace it); listeners store their
 * own address; logs and the ASGI scope format or read the parts. */
#ifndef EVICORN_ADDR_H
#define EVICORN_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Big enough for any IPv6 text and for a host name a proxy forwards. */
#define ADDR_IP_MAX 64
/* "ip:port" with the terminating NUL. */
#define ADDR_TEXT_MAX (ADDR_IP_MAX + 8)

struct addr {
    char ip[ADDR_IP_MAX]; /* "127.0.0.1", "::1"; "" for a unix-domain socket */
    uint16_t port;
    bool unix_socket;
};

/* From a socket address (AF_INET, AF_INET6, AF_UNIX). */
void addr_from_sockaddr(struct addr *a, const struct sockaddr *sa);
/* Sets ip to the n bytes at ip (truncated to fit) and port. */
void addr_set(struct addr *a, const char *ip, size_t n, uint16_t port);
/* "ip:port" as uvicorn's logs and the access log show it (IPv6 without
 * brackets), or "unix"; returns out. */
const char *addr_text(const struct addr *a, char out[ADDR_TEXT_MAX]);

#endif
