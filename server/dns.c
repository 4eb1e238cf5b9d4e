/* dns: c-ares on the worker's libev loop, with a TTL cache; see dns.h.
 *
 * c-ares says which sockets it uses through its socket-state callback (an
 * ev_io per socket, struct sock) and when it next needs to run through
 * ares_timeout (one ev_timer, re-armed after every call into c-ares).
 * Readiness and expiry go back through ares_process_fd.
 *
 * As in httpc.c, c-ares's callbacks only record: a finished query stores
 * its answer in its struct name and joins the done list, which is run
 * after ares_process_fd has returned. So no caller code runs inside
 * c-ares, and a query that ends inside ares_getaddrinfo (a hosts-file
 * hit) is simply an answer dns_resolve can return at once.
 *
 * A struct name is a cache entry or a query in flight (pending). Names
 * are found through a small chained hash table; answered ones are also on
 * the age list, oldest first, for eviction. */
#include "dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "container.h"
#include "log.h"

#define NBUCKETS 1024
/* c-ares's defaults (5 s, 4 tries, per server) would hold a request for
 * over a minute when the servers do not answer. */
#define QUERY_TIMEOUT_MS 2000
#define QUERY_TRIES      2

struct sock {
    ev_io io;
    struct dns *d;
    int fd;
    struct sock *next;
};

struct dns_wait {
    struct name *name;
    dns_done_fn done;
    void *ud;
    struct dns_wait *prev, *next;
};

struct name {
    struct dns *d;
    char *host;               /* lower-cased */
    struct name *hnext;       /* hash chain */
    struct name *prev, *next; /* answered: the age list */
    struct name *done_next;   /* the done list */
    bool pending;             /* a query is in flight */
    bool aged;                /* on the age list */
    bool busy;                /* its waits are being called: not evicted */
    ev_tstamp expires;        /* answered: cached until then (0: not cached) */
    int error;
    char why[64];
    struct dns_addr *addrs;
    size_t naddrs;
    struct dns_wait *waits;
};

struct dns {
    struct ev_loop *loop;
    ares_channel channel;
    ev_timer timer;
    struct sock *socks;
    struct name *buckets[NBUCKETS];
    struct name *oldest, *newest; /* the age list */
    size_t naged;
    struct name *done_first, *done_last;
    bool destroying;
    struct dns_addr literal; /* the answer for an IP literal */
    char why[64];            /* the reason of an answer not cached */
};

/* ---- the cache ---- */

static unsigned hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h % NBUCKETS;
}

static struct name *find(struct dns *d, const char *host)
{
    for (struct name *n = d->buckets[hash(host)]; n; n = n->hnext)
        if (strcmp(n->host, host) == 0)
            return n;
    return NULL;
}

static void age_unlink(struct name *n)
{
    struct dns *d = n->d;
    if (!n->aged)
        return;
    if (n->prev)
        n->prev->next = n->next;
    else
        d->oldest = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        d->newest = n->prev;
    n->prev = n->next = NULL;
    n->aged = false;
    d->naged--;
}

static void age_append(struct name *n)
{
    struct dns *d = n->d;
    n->prev = d->newest;
    n->next = NULL;
    if (d->newest)
        d->newest->next = n;
    else
        d->oldest = n;
    d->newest = n;
    n->aged = true;
    d->naged++;
}

static void name_free(struct name *n)
{
    struct dns *d = n->d;
    struct name **pp = &d->buckets[hash(n->host)];
    while (*pp && *pp != n)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = n->hnext;
    age_unlink(n);
    while (n->waits) { /* only at dns_free */
        struct dns_wait *w = n->waits;
        n->waits = w->next;
        free(w);
    }
    free(n->addrs);
    free(n->host);
    free(n);
}

static void evict(struct dns *d)
{
    struct name *n = d->oldest;
    while (d->naged > DNS_MAX_NAMES && n) {
        struct name *next = n->next;
        if (!n->busy)
            name_free(n);
        n = next;
    }
}

/* ---- the loop side ---- */

static void run_done(struct dns *d);

static void arm_timer(struct dns *d)
{
    struct timeval tv;
    ev_timer_stop(d->loop, &d->timer);
    if (d->destroying || !ares_timeout(d->channel, NULL, &tv))
        return;
    ev_timer_set(&d->timer, (double)tv.tv_sec + (double)tv.tv_usec / 1e6, 0.);
    ev_timer_start(d->loop, &d->timer);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct sock *s = container_of(w, struct sock, io);
    struct dns *d = s->d;
    int fd = s->fd; /* s may be freed inside */
    ares_process_fd(d->channel, revents & EV_READ ? fd : ARES_SOCKET_BAD,
                    revents & EV_WRITE ? fd : ARES_SOCKET_BAD);
    run_done(d);
    arm_timer(d);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct dns *d = container_of(w, struct dns, timer);
    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    run_done(d);
    arm_timer(d);
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns *d = data;
    struct sock **pp = &d->socks;
    while (*pp && (*pp)->fd != fd)
        pp = &(*pp)->next;
    struct sock *s = *pp;
    if (!readable && !writable) {
        if (s) {
            ev_io_stop(d->loop, &s->io);
            *pp = s->next;
            free(s);
        }
        return;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) {
            /* The query on it times out instead of being answered. */
            log_error("dns: out of memory watching a resolver socket");
            return;
        }
        s->d = d;
        s->fd = fd;
        ev_init(&s->io, on_io);
        s->next = d->socks;
        d->socks = s;
    }
    ev_io_stop(d->loop, &s->io);
    ev_io_set(&s->io, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    ev_io_start(d->loop, &s->io);
}

/* ---- answers ---- */

static void set_failure(struct name *n, int status)
{
    n->error = -EHOSTUNREACH;
    n->naddrs = 0;
    if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
        snprintf(n->why, sizeof n->why, "no such name");
        n->expires = ev_now(n->d->loop) + DNS_NEGATIVE_TTL;
    } else if (status == ARES_ENOMEM) {
        n->error = -ENOMEM;
        snprintf(n->why, sizeof n->why, "out of memory");
    } else {
        snprintf(n->why, sizeof n->why, "%s", ares_strerror(status));
    }
}

static void store(struct name *n, const struct ares_addrinfo *res)
{
    size_t count = 0;
    for (const struct ares_addrinfo_node *a = res->nodes; a; a = a->ai_next)
        if (a->ai_family == AF_INET || a->ai_family == AF_INET6)
            count++;
    if (count == 0) {
        set_failure(n, ARES_ENODATA);
        return;
    }
    free(n->addrs);
    n->addrs = calloc(count, sizeof *n->addrs);
    if (!n->addrs) {
        set_failure(n, ARES_ENOMEM);
        return;
    }
    double ttl = DNS_MAX_TTL;
    size_t i = 0;
    for (const struct ares_addrinfo_node *a = res->nodes; a; a = a->ai_next) {
        const void *bin;
        if (a->ai_family == AF_INET)
            bin = &((const struct sockaddr_in *)(const void *)a->ai_addr)->sin_addr;
        else if (a->ai_family == AF_INET6)
            bin = &((const struct sockaddr_in6 *)(const void *)a->ai_addr)->sin6_addr;
        else
            continue;
        if (!inet_ntop(a->ai_family, bin, n->addrs[i].text, sizeof n->addrs[i].text))
            continue;
        n->addrs[i].family = a->ai_family;
        i++;
        if (a->ai_ttl < ttl)
            ttl = a->ai_ttl;
    }
    if (ttl < DNS_MIN_TTL)
        ttl = DNS_MIN_TTL;
    n->naddrs = i;
    n->error = i ? 0 : -EHOSTUNREACH;
    if (!i)
        snprintf(n->why, sizeof n->why, "no usable address");
    else
        n->expires = ev_now(n->d->loop) + ttl;
}

/* c-ares's callback: records the answer and queues the name. */
static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct name *n = arg;
    struct dns *d = n->d;
    n->pending = false;
    n->expires = 0;
    n->error = 0;
    n->naddrs = 0;
    if (status == ARES_SUCCESS && res)
        store(n, res);
    else
        set_failure(n, status);
    if (res)
        ares_freeaddrinfo(res);
    if (d->destroying)
        return; /* dns_free frees every name */
    n->done_next = NULL;
    if (d->done_last)
        d->done_last->done_next = n;
    else
        d->done_first = n;
    d->done_last = n;
}

static void fill(const struct name *n, struct dns_answer *a)
{
    *a = (struct dns_answer){.error = n->error,
                             .why = n->error ? n->why : NULL,
                             .addrs = n->error ? NULL : n->addrs,
                             .naddrs = n->error ? 0 : n->naddrs};
}

/* Files an answered name: cached (on the age list) or, when it is not to
 * be kept, freed. */
static void settle(struct name *n)
{
    if (n->expires > 0) {
        age_append(n);
        evict(n->d);
    } else {
        name_free(n);
    }
}

/* Hands each finished query's answer to its waits, then files it. */
static void run_done(struct dns *d)
{
    struct name *n;
    while ((n = d->done_first)) {
        d->done_first = n->done_next;
        if (!d->done_first)
            d->done_last = NULL;
        n->busy = true;
        struct dns_wait *w;
        while ((w = n->waits)) {
            n->waits = w->next;
            if (n->waits)
                n->waits->prev = NULL;
            struct dns_answer a;
            fill(n, &a);
            dns_done_fn done = w->done;
            void *ud = w->ud;
            free(w);
            done(ud, &a);
        }
        n->busy = false;
        settle(n);
    }
}

/* Takes a finished query off the done list (it ended inside
 * ares_getaddrinfo, before anyone waited). */
static void done_unlink(struct dns *d, struct name *n)
{
    struct name **pp = &d->done_first, *prev = NULL;
    while (*pp && *pp != n) {
        prev = *pp;
        pp = &(*pp)->done_next;
    }
    if (!*pp)
        return;
    *pp = n->done_next;
    if (d->done_last == n)
        d->done_last = prev;
}

/* ---- the interface ---- */

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_status;

static void library_init(void)
{
    library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

struct dns *dns_new(struct ev_loop *loop)
{
    pthread_once(&library_once, library_init);
    if (library_status != ARES_SUCCESS) {
        log_error("dns: cannot start c-ares: %s", ares_strerror(library_status));
        return NULL;
    }
    struct dns *d = calloc(1, sizeof *d);
    if (!d) {
        log_error("dns: out of memory");
        return NULL;
    }
    d->loop = loop;
    ev_timer_init(&d->timer, on_timer, 0., 0.);
    struct ares_options o = {
        .sock_state_cb = on_sock_state,
        .sock_state_cb_data = d,
        .timeout = QUERY_TIMEOUT_MS,
        .tries = QUERY_TRIES,
    };
    int rc = ares_init_options(&d->channel, &o,
                               ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        log_error("dns: cannot start c-ares: %s", ares_strerror(rc));
        free(d);
        return NULL;
    }
    const char *servers = getenv("EVICORN_DNS_SERVERS");
    if (servers && *servers) {
        rc = ares_set_servers_ports_csv(d->channel, servers);
        if (rc != ARES_SUCCESS) {
            log_error("dns: EVICORN_DNS_SERVERS \"%s\": %s", servers, ares_strerror(rc));
            ares_destroy(d->channel);
            free(d);
            return NULL;
        }
    }
    return d;
}

void dns_free(struct dns *d)
{
    if (!d)
        return;
    d->destroying = true;
    ev_timer_stop(d->loop, &d->timer);
    ares_destroy(d->channel); /* on_answer runs for each query in flight */
    while (d->socks) {
        struct sock *s = d->socks;
        d->socks = s->next;
        ev_io_stop(d->loop, &s->io);
        free(s);
    }
    for (size_t i = 0; i < NBUCKETS; i++) {
        while (d->buckets[i]) {
            if (d->buckets[i]->waits)
                log_error("dns: a lookup of %s still waited for at shutdown", d->buckets[i]->host);
            name_free(d->buckets[i]);
        }
    }
    free(d);
}

static bool literal(struct dns *d, const char *host, struct dns_answer *a)
{
    unsigned char bin[sizeof(struct in6_addr)];
    int family = inet_pton(AF_INET, host, bin) == 1    ? AF_INET
                 : inet_pton(AF_INET6, host, bin) == 1 ? AF_INET6
                                                       : 0;
    if (!family)
        return false;
    d->literal.family = family;
    snprintf(d->literal.text, sizeof d->literal.text, "%s", host);
    *a = (struct dns_answer){.literal = true, .addrs = &d->literal, .naddrs = 1};
    return true;
}

static struct dns_wait *wait_add(struct name *n, dns_done_fn done, void *ud)
{
    struct dns_wait *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->name = n;
    w->done = done;
    w->ud = ud;
    w->next = n->waits;
    if (n->waits)
        n->waits->prev = w;
    n->waits = w;
    return w;
}

int dns_resolve(struct dns *d, const char *host, dns_done_fn done, void *ud, struct dns_wait **wait,
                struct dns_answer *answer)
{
    *wait = NULL;
    if (literal(d, host, answer))
        return 1;
    size_t len = strlen(host);
    char key[256];
    if (len == 0 || len >= sizeof key) {
        *answer = (struct dns_answer){.error = -EHOSTUNREACH, .why = "invalid name"};
        return 1;
    }
    for (size_t i = 0; i <= len; i++)
        key[i] = host[i] >= 'A' && host[i] <= 'Z' ? (char)(host[i] + 32) : host[i];
    if (len > 1 && key[len - 1] == '.')
        key[len - 1] = '\0'; /* "example.com." is "example.com" */
    struct name *n = find(d, key);
    if (n && !n->pending && n->expires > ev_now(d->loop)) {
        fill(n, answer);
        return 1;
    }
    if (n && n->busy) {
        fill(n, answer); /* its answer is being handed out: the same for this caller */
        return 1;
    }
    if (n && n->pending) {
        *wait = wait_add(n, done, ud);
        return *wait ? 0 : -ENOMEM;
    }
    if (!n) {
        n = calloc(1, sizeof *n);
        if (!n || !(n->host = strdup(key))) {
            free(n);
            return -ENOMEM;
        }
        n->d = d;
        unsigned b = hash(key);
        n->hnext = d->buckets[b];
        d->buckets[b] = n;
    }
    age_unlink(n); /* expired: asked again */
    n->pending = true;
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC};
    ares_getaddrinfo(d->channel, n->host, NULL, &hints, on_answer, n);
    if (!n->pending) { /* answered at once (the hosts file, a bad name) */
        done_unlink(d, n);
        fill(n, answer);
        if (n->expires > 0) {
            age_append(n); /* the newest: not what evict frees */
            evict(d);
        } else {
            snprintf(d->why, sizeof d->why, "%s", n->why);
            answer->why = d->why;
            name_free(n);
        }
        return 1;
    }
    arm_timer(d);
    *wait = wait_add(n, done, ud);
    return *wait ? 0 : -ENOMEM;
}

void dns_cancel(struct dns_wait *w)
{
    if (!w)
        return;
    struct name *n = w->name;
    if (w->prev)
        w->prev->next = w->next;
    else
        n->waits = w->next;
    if (w->next)
        w->next->prev = w->prev;
    free(w);
}
