/* dns: a per-worker asynchronous resolver with a cache that honours the
 * records' TTLs, on c-ares driven by the worker's libev loop.
 *
 * A name is looked up as getaddrinfo would (AF_UNSPEC: A and AAAA; the
 * hosts file first, then DNS, as /etc/resolv.conf and /etc/nsswitch say to
 * c-ares), without ever blocking the loop. Answers are cached by name:
 *  - an address list until the smallest TTL among its records has passed,
 *    bounded to [DNS_MIN_TTL, DNS_MAX_TTL] seconds (hosts-file entries,
 *    which carry no TTL, stay DNS_MIN_TTL);
 *  - a name that does not exist (NXDOMAIN, or no address of either family)
 *    for DNS_NEGATIVE_TTL seconds (a fixed time: c-ares's getaddrinfo does
 *    not hand over the SOA minimum);
 *  - a failure to get an answer at all (timeout, SERVFAIL, refused) is not
 *    cached: the next lookup asks again.
 * Lookups of a name already being resolved wait for the same query. The
 * cache holds at most DNS_MAX_NAMES answers; past that the oldest goes.
 *
 * EVICORN_DNS_SERVERS (read at dns_new, "host:port,host:port" as
 * ares_set_servers_ports_csv takes it) replaces the servers of
 * /etc/resolv.conf: an operations and test setting. */
#ifndef EVICORN_DNS_H
#define EVICORN_DNS_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#define DNS_MIN_TTL      1.0
#define DNS_MAX_TTL      300.0
#define DNS_NEGATIVE_TTL 5.0
#define DNS_MAX_NAMES    1024

struct dns;      /* one per worker */
struct dns_wait; /* one caller waiting for a lookup */

struct dns_addr {
    int family;    /* AF_INET or AF_INET6 */
    char text[46]; /* numeric form, no brackets (INET6_ADDRSTRLEN) */
};

struct dns_answer {
    int error;       /* 0, -EHOSTUNREACH (no such name, or no answer), -ENOMEM */
    const char *why; /* when error != 0: a short reason ("no such name", c-ares's message) */
    bool literal;    /* the name was an IP address: nothing was looked up */
    const struct dns_addr *addrs; /* when error == 0: at least one */
    size_t naddrs;
};

/* Called from the loop (never inside dns_resolve), once, unless the wait
 * was cancelled first. The answer is valid during the call only. */
typedef void (*dns_done_fn)(void *ud, const struct dns_answer *answer);

/* Loop thread. NULL when c-ares cannot start (logged). */
struct dns *dns_new(struct ev_loop *loop);
/* Loop thread, once no wait is left: ends the queries in flight and closes
 * c-ares's sockets. Waits still live are a bug: logged and freed without
 * their callback. */
void dns_free(struct dns *d);

/* Resolves host (a name, or an IPv4/IPv6 literal without brackets).
 * Returns 1 with *answer set when it is known now (cached, negative
 * included, or a literal; valid until the next dns call or the return to
 * the loop); 0 when a lookup is under way: done(ud, ...) runs later and
 * *wait identifies the wait for dns_cancel until then; -ENOMEM. */
int dns_resolve(struct dns *d, const char *host, dns_done_fn done, void *ud, struct dns_wait **wait,
                struct dns_answer *answer);

/* Forgets a wait: its callback will not run. The lookup itself goes on
 * (its answer is cached for the next caller). */
void dns_cancel(struct dns_wait *w);

#endif
