/* Unit tests for server/proxy_trust.c: which proxies --forwarded-allow-ips
 * trusts, and which client an X-Forwarded-For list names, by uvicorn's
 * rules (ProxyHeadersMiddleware). */
#include "proxy_trust.h"

#include <string.h>

#include "check.h"

static bool has(const struct proxy_trust *t, const char *host)
{
    return proxy_trust_has(t, host, strlen(host));
}

TEST(addresses_networks_and_literals)
{
    struct proxy_trust *t = proxy_trust_parse("127.0.0.1, ::1,10.0.0.0/8 ,fd00::/8,unix:sock");
    CHECK(t != NULL);
    CHECK(has(t, "127.0.0.1"));
    CHECK(has(t, "0:0:0:0:0:0:0:1")); /* compared as an address */
    CHECK(has(t, "10.200.3.4"));
    CHECK(has(t, "fd12::1"));
    CHECK(has(t, "unix:sock"));
    CHECK(!has(t, "127.0.0.2"));
    CHECK(!has(t, "11.0.0.1"));
    CHECK(!has(t, "fe80::1"));
    CHECK(!has(t, ""));
    CHECK(!proxy_trust_everyone(t));
    proxy_trust_free(t);
}

TEST(a_network_with_host_bits_is_a_literal)
{
    /* As Python's ip_network: 10.0.0.1/8 is not a network. */
    struct proxy_trust *t = proxy_trust_parse("10.0.0.1/8");
    CHECK(!has(t, "10.0.0.1"));
    CHECK(has(t, "10.0.0.1/8"));
    proxy_trust_free(t);
}

TEST(star_trusts_everyone)
{
    struct proxy_trust *t = proxy_trust_parse("*");
    CHECK(has(t, "203.0.113.9"));
    CHECK(proxy_trust_everyone(t));
    proxy_trust_free(t);
}

static void check_client(const char *allow, const char *const *values, size_t n, const char *host,
                         int port)
{
    size_t lens[8];
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(values[i]);
    struct proxy_trust *t = proxy_trust_parse(allow);
    struct forwarded_client fc;
    bool found = proxy_trust_client(t, values, lens, n, &fc);
    CHECK_EQ_INT(found, host != NULL);
    if (found && host) {
        CHECK_EQ_INT(fc.host_len, strlen(host));
        CHECK(strncmp(fc.host, host, fc.host_len) == 0);
        CHECK_EQ_INT(fc.port, port);
    }
    proxy_trust_free(t);
}

TEST(the_client_is_the_nearest_untrusted_hop)
{
    const char *one[] = {"203.0.113.9"};
    check_client("127.0.0.1", one, 1, "203.0.113.9", 0);
    const char *chain[] = {"198.51.100.1, 203.0.113.9, 127.0.0.1"};
    check_client("127.0.0.1", chain, 1, "203.0.113.9", 0);
    /* Two headers read as one list, in order. */
    const char *split[] = {"198.51.100.1", "203.0.113.9, 10.1.2.3"};
    check_client("127.0.0.1,10.0.0.0/8", split, 2, "203.0.113.9", 0);
}

TEST(all_trusted_gives_the_leftmost_and_star_too)
{
    const char *chain[] = {"10.0.0.5, 127.0.0.1"};
    check_client("127.0.0.1,10.0.0.0/8", chain, 1, "10.0.0.5", 0);
    const char *spoof[] = {"1.2.3.4, 203.0.113.9"};
    check_client("*", spoof, 1, "1.2.3.4", 0);
}

TEST(ports_and_brackets)
{
    const char *v4[] = {"203.0.113.9:4711"};
    check_client("127.0.0.1", v4, 1, "203.0.113.9", 4711);
    const char *v6[] = {"[2001:db8::1]:443"};
    check_client("127.0.0.1", v6, 1, "2001:db8::1", 443);
    const char *bare6[] = {"2001:db8::1"};
    check_client("127.0.0.1", bare6, 1, "2001:db8::1", 0);
    const char *badport[] = {"203.0.113.9:http"};
    check_client("127.0.0.1", badport, 1, "203.0.113.9:http", 0);
}

TEST(empty_values_name_nobody)
{
    const char *empty[] = {""};
    check_client("127.0.0.1", empty, 1, NULL, 0);
    const char *blank[] = {" , "};
    check_client("127.0.0.1", blank, 1, NULL, 0);
}

CHECK_MAIN()
