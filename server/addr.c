/* addr: socket addresses as text and port; see addr.h. */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

void addr_from_sockaddr(struct addr *a, const struct sockaddr *sa)
{
    *a = (struct addr){0};
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, a->ip, sizeof a->ip);
        a->port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, a->ip, sizeof a->ip);
        a->port = ntohs(in6->sin6_port);
    } else {
        a->unix_socket = true;
    }
}

void addr_set(struct addr *a, const char *ip, size_t n, uint16_t port)
{
    if (n >= sizeof a->ip)
        n = sizeof a->ip - 1;
    memcpy(a->ip, ip, n);
    a->ip[n] = '\0';
    a->port = port;
    a->unix_socket = false;
}

const char *addr_text(const struct addr *a, char out[ADDR_TEXT_MAX])
{
    if (a->unix_socket)
        snprintf(out, ADDR_TEXT_MAX, "unix");
    else
        snprintf(out, ADDR_TEXT_MAX, "%s:%u", a->ip, (unsigned)a->port);
    return out;
}
