/* Unit tests for server/dns.c, the per-worker resolver: what it answers
 * without asking a DNS server (IP literals, the hosts file), that a wait
 * cancelled never calls back, and that a query still in flight is freed
 * with the resolver. No test talks to a real DNS server: the one queries
 * would go to is a loopback port that never answers. */
#include "check.h"
#include "dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WATCHDOG_SECONDS 10.0

struct result {
    int calls;
    int error;
    char first[46];
};

static void on_done(void *ud, const struct dns_answer *a)
{
    struct result *r = ud;
    r->calls++;
    r->error = a->error;
    if (!a->error && a->naddrs)
        strcpy(r->first, a->addrs[0].text);
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* A UDP port on 127.0.0.1 bound and never read: queries to it time out. */
static int silent_server(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%u", ntohs(sa.sin_port));
    setenv("EVICORN_DNS_SERVERS", servers, 1);
    return fd;
}

TEST(ip_literals_are_answered_at_once)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct dns *d = dns_new(loop);
    CHECK(d != NULL);
    struct dns_wait *w;
    struct dns_answer a;
    struct result r = {0};
    CHECK_EQ_INT(dns_resolve(d, "192.0.2.7", on_done, &r, &w, &a), 1);
    CHECK(a.literal && a.error == 0 && a.naddrs == 1);
    CHECK_EQ_STR(a.addrs[0].text, "192.0.2.7");
    CHECK_EQ_INT(dns_resolve(d, "::1", on_done, &r, &w, &a), 1);
    CHECK(a.literal && a.addrs[0].family == AF_INET6);
    CHECK(w == NULL && r.calls == 0);
    dns_free(d);
    ev_loop_destroy(loop);
}

TEST(localhost_resolves_from_the_hosts_file_without_a_server)
{
    int fd = silent_server();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct dns *d = dns_new(loop);
    CHECK(d != NULL);
    struct dns_wait *w;
    struct dns_answer a;
    struct result r = {0};
    int rc = dns_resolve(d, "localhost", on_done, &r, &w, &a);
    if (rc == 0) {
        ev_timer dog;
        ev_timer_init(&dog, on_watchdog, WATCHDOG_SECONDS, 0.);
        ev_timer_start(loop, &dog);
        while (r.calls == 0 && ev_is_active(&dog))
            ev_run(loop, EVRUN_ONCE);
        ev_timer_stop(loop, &dog);
        CHECK_EQ_INT(r.calls, 1);
        CHECK_EQ_INT(r.error, 0);
    } else {
        CHECK_EQ_INT(rc, 1);
        CHECK_EQ_INT(a.error, 0);
        CHECK(a.naddrs >= 1);
    }
    /* Cached now: answered at once. */
    CHECK_EQ_INT(dns_resolve(d, "LOCALHOST", on_done, &r, &w, &a), 1);
    CHECK(a.error == 0 && a.naddrs >= 1 && !a.literal);
    dns_free(d);
    ev_loop_destroy(loop);
    close(fd);
    unsetenv("EVICORN_DNS_SERVERS");
}

TEST(a_cancelled_wait_never_calls_back_and_shutdown_frees_the_query)
{
    int fd = silent_server();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct dns *d = dns_new(loop);
    CHECK(d != NULL);
    struct dns_wait *w1, *w2;
    struct dns_answer a;
    struct result r1 = {0}, r2 = {0};
    CHECK_EQ_INT(dns_resolve(d, "nowhere.evicorn.test", on_done, &r1, &w1, &a), 0);
    /* The same name waits for the same query. */
    CHECK_EQ_INT(dns_resolve(d, "nowhere.evicorn.test", on_done, &r2, &w2, &a), 0);
    CHECK(w1 != NULL && w2 != NULL && w1 != w2);
    dns_cancel(w1);
    dns_cancel(w2);
    ev_timer dog;
    ev_timer_init(&dog, on_watchdog, 0.2, 0.);
    ev_timer_start(loop, &dog);
    ev_run(loop, 0);
    CHECK_EQ_INT(r1.calls + r2.calls, 0);
    dns_free(d); /* the query is still in flight */
    ev_loop_destroy(loop);
    close(fd);
    unsetenv("EVICORN_DNS_SERVERS");
}

CHECK_MAIN()
