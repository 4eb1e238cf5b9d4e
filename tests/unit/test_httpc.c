/* Unit tests for server/httpc.c, the outbound HTTP/1.1 client.
 *
 * Each test runs the client on its own ev_loop (with a mailbox and a pool for
 * name resolution) against a scripted server: a pthread with blocking
 * sockets on 127.0.0.1 that, per connection, reads one request, records it,
 * writes the scripted reply bytes and closes. Every loop run is bounded by a
 * watchdog timer and every server wait by a poll or socket timeout, so a
 * broken client fails a test instead of hanging the run. */
#include "check.h"
#include "httpc.h"
#include "mailbox.h"
#include "pool.h"
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WATCHDOG_SECONDS 15.0
#define SERVER_WAIT_MS   10000

struct fixture {
    struct ev_loop *loop;
    struct httpc *hc;
};

static void fixture_init(struct fixture *f)
{
    signal(SIGPIPE, SIG_IGN);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    CHECK(f->loop != NULL);
    f->hc = httpc_new(f->loop, NULL);
    CHECK(f->hc != NULL);
}

static void fixture_destroy(struct fixture *f)
{
    httpc_free(f->hc);
    ev_loop_destroy(f->loop);
}

/* ---- the scripted server ---- */

enum srv_mode {
    SRV_REPLY,  /* write reply, then close */
    SRV_SILENT, /* never answer; close once the client does */
    SRV_CLOSE,  /* close without a byte */
};

struct srv {
    int lfd;
    unsigned port;
    pthread_t thread;
    enum srv_mode mode;
    const char *reply;
    size_t reply_len;
    int connections;   /* to serve before the thread ends */
    int read_delay_ms; /* waits this long before reading, so the client's sends fill the socket */
    /* Written by the server thread; read after srv_stop (or atomically). */
    char *req; /* the first request, head and body, NUL-terminated */
    size_t req_len;
    atomic_int seen; /* requests read so far */
    int served;
};

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one request (head, then Content-Length bytes of body) into a malloc'd
 * NUL-terminated string. */
static char *read_request(int fd, size_t *len_out)
{
    size_t cap = 4096, len = 0, need = 0;
    char *b = malloc(cap + 1);
    if (!b)
        return NULL;
    for (;;) {
        if (!need) {
            b[len] = '\0';
            char *end = strstr(b, "\r\n\r\n");
            if (end) {
                size_t body = 0;
                const char *cl = strcasestr(b, "\r\ncontent-length:");
                if (cl && cl < end)
                    body = strtoul(cl + 17, NULL, 10);
                need = (size_t)(end + 4 - b) + body;
            }
        }
        if (need && len >= need)
            break;
        if (len == cap) {
            char *n = realloc(b, cap * 2 + 1);
            if (!n)
                break;
            b = n;
            cap *= 2;
        }
        ssize_t r = recv(fd, b + len, cap - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    b[len] = '\0';
    *len_out = len;
    return b;
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    for (int i = 0; i < s->connections; i++) {
        struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};
        if (poll(&pfd, 1, SERVER_WAIT_MS) <= 0)
            break;
        int c = accept(s->lfd, NULL, NULL);
        if (c < 0)
            break;
        struct timeval tv = {SERVER_WAIT_MS / 1000, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (s->read_delay_ms)
            sleep_ms(s->read_delay_ms);
        size_t len = 0;
        char *req = read_request(c, &len);
        if (i == 0) {
            s->req = req;
            s->req_len = len;
        } else {
            free(req);
        }
        atomic_fetch_add(&s->seen, 1);
        if (s->mode == SRV_REPLY) {
            write_all(c, s->reply, s->reply_len);
        } else if (s->mode == SRV_SILENT) {
            char tmp[256];
            while (recv(c, tmp, sizeof tmp, 0) > 0) /* until the client closes */
                ;
        }
        close(c);
        s->served++;
    }
    return NULL;
}

static int listen_socket(unsigned *port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    int one = 1;
    CHECK_EQ_INT(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK_EQ_INT(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    CHECK_EQ_INT(listen(fd, backlog), 0);
    socklen_t len = sizeof sin;
    CHECK_EQ_INT(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

static void srv_start_n(struct srv *s, enum srv_mode mode, const char *reply, size_t reply_len,
                        int connections, int read_delay_ms)
{
    memset(s, 0, sizeof *s);
    s->read_delay_ms = read_delay_ms;
    s->mode = mode;
    s->reply = reply;
    s->reply_len = reply_len;
    s->connections = connections;
    s->lfd = listen_socket(&s->port, 512);
    CHECK_EQ_INT(pthread_create(&s->thread, NULL, srv_main, s), 0);
}

/* A listener on [::1], or -1 when this host has no IPv6 loopback. */
static int listen_socket6(unsigned *port)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    socklen_t len = sizeof sin6;
    if (bind(fd, (struct sockaddr *)&sin6, sizeof sin6) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin6, &len) < 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(sin6.sin6_port);
    return fd;
}

static void srv_start(struct srv *s, const char *reply)
{
    srv_start_n(s, reply ? SRV_REPLY : SRV_SILENT, reply, reply ? strlen(reply) : 0, 1, 0);
}

static void srv_stop(struct srv *s)
{
    CHECK_EQ_INT(pthread_join(s->thread, NULL), 0);
    close(s->lfd);
}

static void srv_free(struct srv *s)
{
    free(s->req);
    s->req = NULL;
}

/* A port nothing listens on: bound, then closed. */
static unsigned closed_port(void)
{
    unsigned port;
    int fd = listen_socket(&port, 1);
    close(fd);
    return port;
}

/* ---- the client side ---- */

struct result {
    struct ev_loop *loop;
    int calls;
    int error;
    char msg[256];
    int status;
    char *body;
    size_t body_len;
    char header[128]; /* value of the header named by want_header */
    const char *want_header;
    bool has_header;
    bool *in_start; /* when set: done must not run while it is true */
    bool called_in_start;
    int *counter; /* concurrent tests: breaks the loop when it reaches goal */
    int goal;
};

static void on_done(void *ud, const struct httpc_response *res)
{
    struct result *rs = ud;
    rs->calls++;
    if (rs->in_start && *rs->in_start)
        rs->called_in_start = true;
    rs->error = res->error;
    if (res->error) {
        CHECK(res->error_msg != NULL && res->error_msg[0] != '\0');
        snprintf(rs->msg, sizeof rs->msg, "%s", res->error_msg ? res->error_msg : "");
    } else {
        CHECK(res->body != NULL);
        rs->status = res->status;
        rs->body = malloc(res->body_len + 1);
        CHECK(rs->body != NULL);
        if (rs->body) {
            memcpy(rs->body, res->body, res->body_len);
            rs->body[res->body_len] = '\0';
        }
        rs->body_len = res->body_len;
        for (size_t i = 0; rs->want_header && i < res->nheaders; i++) {
            const struct http_header *h = &res->headers[i];
            if (h->name_len == strlen(rs->want_header) &&
                memcmp(h->name, rs->want_header, h->name_len) == 0) {
                rs->has_header = true;
                snprintf(rs->header, sizeof rs->header, "%.*s", (int)h->value_len, h->value);
                break;
            }
        }
    }
    if (rs->counter) {
        if (++*rs->counter == rs->goal)
            ev_break(rs->loop, EVBREAK_ALL);
    } else {
        ev_break(rs->loop, EVBREAK_ALL);
    }
}

static const struct httpc_callbacks whole = {.done = on_done};

static void result_free(struct result *rs)
{
    free(rs->body);
    rs->body = NULL;
}

static const char *url_for(unsigned port, const char *path)
{
    static char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    return url;
}

/* Starts one request and runs the loop until its done callback. */
static void fetch(struct fixture *f, const struct httpc_options *opt, struct result *rs)
{
    rs->loop = f->loop;
    bool in_start = true;
    rs->in_start = &in_start;
    struct httpc_request *r = httpc_start(f->hc, opt, &whole, rs);
    in_start = false;
    CHECK(r != NULL);
    CHECK_EQ_INT(rs->calls, 0);
    CHECK(run_bounded(f->loop, WATCHDOG_SECONDS));
    CHECK_EQ_INT(rs->calls, 1);
    CHECK(!rs->called_in_start);
    rs->in_start = NULL;
}

static bool contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

static bool contains_ci(const char *hay, const char *needle)
{
    return hay && strcasestr(hay, needle) != NULL;
}

/* ---- tests: successful exchanges ---- */

TEST(get_with_content_length_body)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Test:  yes \r\n"
                  "Content-Length: 5\r\n\r\nhello");
    struct result rs = {.want_header = "x-test"};
    struct httpc_options opt = {.url = url_for(s.port, "/a/b?x=1&y=2#frag")};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK_EQ_INT(rs.status, 200);
    CHECK(rs.has_header);
    CHECK_EQ_STR(rs.header, "yes");
    CHECK_EQ_MEM(rs.body, rs.body_len, "hello");
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%u\r\n", s.port);
    CHECK(s.req && strncmp(s.req, "GET /a/b?x=1&y=2 HTTP/1.1\r\n", 27) == 0);
    CHECK(contains(s.req, host));
    CHECK(contains(s.req, "\r\nUser-Agent: evicorn\r\n"));
    CHECK(!contains_ci(s.req, "\r\nConnection:")); /* kept alive */
    CHECK(!contains(s.req, "Content-Length"));
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(chunked_response_is_dechunked)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n");
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(s.port, "/")};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK_EQ_INT(rs.status, 200);
    CHECK_EQ_MEM(rs.body, rs.body_len, "hello, world");
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(body_delimited_by_close)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(s.port, "/eof")};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK_EQ_INT(rs.status, 200);
    CHECK_EQ_MEM(rs.body, rs.body_len, "until the end");
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(empty_url_path_becomes_slash)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 204 No Content\r\n\r\n");
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(s.port, "?q=1")};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK_EQ_INT(rs.status, 204);
    CHECK_EQ_INT(rs.body_len, 0);
    CHECK(s.req && strncmp(s.req, "GET /?q=1 HTTP/1.1\r\n", 20) == 0);
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(post_sends_content_length_and_body)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
    struct result rs = {0};
    struct httpc_options opt = {
        .method = "POST", .url = url_for(s.port, "/items"), .body = "{\"a\":1}", .body_len = 7};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK_EQ_INT(rs.status, 201);
    CHECK_EQ_MEM(rs.body, rs.body_len, "ok");
    CHECK(s.req && strncmp(s.req, "POST /items HTTP/1.1\r\n", 22) == 0);
    CHECK(contains(s.req, "\r\nContent-Length: 7\r\n"));
    CHECK(s.req_len >= 7 && strcmp(s.req + s.req_len - 11, "\r\n\r\n{\"a\":1}") == 0);
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(post_without_body_sends_content_length_zero)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    struct result rs = {0};
    struct httpc_options opt = {.method = "POST", .url = url_for(s.port, "/")};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK(contains(s.req, "\r\nContent-Length: 0\r\n"));
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(large_body_is_sent_across_partial_writes)
{
    enum { N = 8 * 1024 * 1024 };
    struct fixture f;
    fixture_init(&f);
    char *body = malloc(N);
    CHECK(body != NULL);
    for (size_t i = 0; i < N; i++)
        body[i] = (char)('a' + i % 26);
    struct srv s;
    srv_start_n(&s, SRV_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 38, 1, 200);
    struct result rs = {0};
    struct httpc_options opt = {
        .method = "PUT", .url = url_for(s.port, "/big"), .body = body, .body_len = N};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK_EQ_INT(rs.status, 200);
    CHECK(contains(s.req, "\r\nContent-Length: 8388608\r\n"));
    CHECK(s.req_len > N);
    CHECK(s.req && memcmp(s.req + s.req_len - N, body, N) == 0);
    free(body);
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(caller_headers_are_sent)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    struct http_header h[] = {
        {"Accept", 6, "application/json", 16},
        {"X-Request-Id", 12, "abc 123", 7},
    };
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(s.port, "/"), .headers = h, .nheaders = 2};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK(contains(s.req, "\r\nAccept: application/json\r\n"));
    CHECK(contains(s.req, "\r\nX-Request-Id: abc 123\r\n"));
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(caller_user_agent_and_host_replace_defaults)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    struct http_header h[] = {
        {"user-agent", 10, "plugin/1.0", 10},
        {"Host", 4, "example.test", 12},
    };
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(s.port, "/"), .headers = h, .nheaders = 2};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK(contains_ci(s.req, "\r\nUser-Agent: plugin/1.0\r\n"));
    CHECK(contains(s.req, "\r\nHost: example.test\r\n"));
    CHECK(!contains(s.req, "evicorn"));
    CHECK(!contains(s.req, "127.0.0.1"));
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(head_request_skips_the_body)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    /* The server announces 100 bytes but sends none (a HEAD answer) before
     * closing: a client expecting them would call the response cut short. */
    srv_start_n(&s, SRV_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 40, 1, 0);
    struct result rs = {0};
    struct httpc_options opt = {.method = "HEAD", .url = url_for(s.port, "/"), .timeout = 5};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK_EQ_INT(rs.status, 200);
    CHECK_EQ_INT(rs.body_len, 0);
    CHECK(s.req && strncmp(s.req, "HEAD / HTTP/1.1\r\n", 17) == 0);
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(interim_1xx_responses_are_skipped)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                  "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal");
    struct result rs = {.want_header = "link"};
    struct httpc_options opt = {.url = url_for(s.port, "/")};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK_EQ_INT(rs.status, 200);
    CHECK(!rs.has_header); /* the head is the final response's */
    CHECK_EQ_MEM(rs.body, rs.body_len, "final");
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(localhost_is_resolved)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nname");
    char url[64];
    snprintf(url, sizeof url, "http://localhost:%u/n", s.port);
    struct result rs = {0};
    struct httpc_options opt = {.url = url};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK_EQ_MEM(rs.body, rs.body_len, "name");
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: localhost:%u\r\n", s.port);
    CHECK(contains(s.req, host));
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(ipv6_literal_host)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s = {.mode = SRV_REPLY, .connections = 1};
    s.reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6";
    s.reply_len = strlen(s.reply);
    s.lfd = listen_socket6(&s.port);
    if (s.lfd < 0) {
        fprintf(stderr, "  ipv6_literal_host: no IPv6 loopback, skipped\n");
        fixture_destroy(&f);
        return;
    }
    CHECK_EQ_INT(pthread_create(&s.thread, NULL, srv_main, &s), 0);
    char url[64];
    snprintf(url, sizeof url, "http://[::1]:%u/six", s.port);
    struct result rs = {0};
    struct httpc_options opt = {.url = url};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK_EQ_MEM(rs.body, rs.body_len, "v6");
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: [::1]:%u\r\n", s.port);
    CHECK(contains(s.req, host));
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(many_concurrent_requests_all_complete)
{
    enum { N = 200 };
    struct fixture f;
    fixture_init(&f);
    static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    struct srv s;
    srv_start_n(&s, SRV_REPLY, reply, sizeof reply - 1, N, 0);
    struct result *rs = calloc(N, sizeof *rs);
    CHECK(rs != NULL);
    int completed = 0;
    struct httpc_options opt = {.url = url_for(s.port, "/c")};
    for (int i = 0; i < N; i++) {
        rs[i] = (struct result){.loop = f.loop, .counter = &completed, .goal = N};
        CHECK(httpc_start(f.hc, &opt, &whole, &rs[i]) != NULL);
    }
    CHECK_EQ_INT(completed, 0);
    CHECK(run_bounded(f.loop, WATCHDOG_SECONDS));
    srv_stop(&s);
    CHECK_EQ_INT(completed, N);
    CHECK_EQ_INT(s.served, N);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        ok += rs[i].calls == 1 && rs[i].error == 0 && rs[i].status == 200 && rs[i].body_len == 3 &&
              memcmp(rs[i].body, "abc", 3) == 0;
        result_free(&rs[i]);
    }
    CHECK_EQ_INT(ok, N);
    free(rs);
    srv_free(&s);
    fixture_destroy(&f);
}

/* ---- tests: failures ---- */

TEST(connection_refused)
{
    struct fixture f;
    fixture_init(&f);
    unsigned port = closed_port();
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(port, "/")};
    fetch(&f, &opt, &rs);
    CHECK_EQ_INT(rs.error, -ECONNREFUSED);
    char want[64];
    snprintf(want, sizeof want, "connect to 127.0.0.1:%u refused", port);
    CHECK_EQ_STR(rs.msg, want);
    fixture_destroy(&f);
}

TEST(server_that_never_answers_times_out)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, NULL);
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(s.port, "/slow"), .timeout = 0.3};
    double t0 = ev_time();
    fetch(&f, &opt, &rs);
    double elapsed = ev_time() - t0;
    srv_stop(&s); /* the client's close ends the server's wait */
    CHECK_EQ_INT(rs.error, -ETIMEDOUT);
    CHECK(contains(rs.msg, "timed out"));
    CHECK(elapsed >= 0.25);
    CHECK(elapsed < 1.0);
    CHECK_EQ_INT(atomic_load(&s.seen), 1);
    srv_free(&s);
    fixture_destroy(&f);
}

TEST(connect_timeout_when_the_backlog_is_full)
{
    struct fixture f;
    fixture_init(&f);
    /* A listener that never accepts, with its accept queue filled: Linux
     * drops further SYNs, so a connect hangs. */
    unsigned port;
    int lfd = listen_socket(&port, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fillers[4];
    for (int i = 0; i < 4; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        CHECK(fillers[i] >= 0);
        int rc = connect(fillers[i], (struct sockaddr *)&sin, sizeof sin);
        CHECK(rc == 0 || errno == EINPROGRESS);
    }
    sleep_ms(100);
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(port, "/"), .connect_timeout = 0.2, .timeout = 2};
    double t0 = ev_time();
    fetch(&f, &opt, &rs);
    double elapsed = ev_time() - t0;
    CHECK_EQ_INT(rs.error, -ETIMEDOUT);
    CHECK(contains(rs.msg, "connect to 127.0.0.1:"));
    CHECK(contains(rs.msg, "timed out"));
    CHECK(elapsed < 1.0);
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(lfd);
    fixture_destroy(&f);
}

TEST(unresolvable_name_is_ehostunreach)
{
    struct fixture f;
    fixture_init(&f);
    struct result rs = {0};
    struct httpc_options opt = {.url = "http://nonexistent.invalid/"};
    fetch(&f, &opt, &rs);
    CHECK_EQ_INT(rs.error, -EHOSTUNREACH);
    CHECK(contains(rs.msg, "nonexistent.invalid"));
    fixture_destroy(&f);
}

TEST(invalid_response_is_eproto)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "garbage\r\n\r\n");
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(s.port, "/")};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, -EPROTO);
    CHECK(contains(rs.msg, "invalid response"));
    srv_free(&s);
    fixture_destroy(&f);
}

TEST(response_cut_short_is_eproto)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(s.port, "/")};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, -EPROTO);
    CHECK(contains(rs.msg, "cut short"));
    srv_free(&s);
    fixture_destroy(&f);
}

TEST(close_without_response_is_econnreset)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start_n(&s, SRV_CLOSE, NULL, 0, 1, 0);
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(s.port, "/")};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, -ECONNRESET);
    srv_free(&s);
    fixture_destroy(&f);
}

TEST(switching_protocols_is_eproto)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n");
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(s.port, "/")};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, -EPROTO);
    srv_free(&s);
    fixture_destroy(&f);
}

TEST(content_length_over_max_response_is_emsgsize)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world");
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(s.port, "/"), .max_response = 10};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, -EMSGSIZE);
    srv_free(&s);
    fixture_destroy(&f);
}

TEST(chunked_body_over_max_response_is_emsgsize)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n");
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(s.port, "/"), .max_response = 10};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, -EMSGSIZE);
    srv_free(&s);
    fixture_destroy(&f);
}

TEST(body_of_exactly_max_response_is_accepted)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789");
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(s.port, "/"), .max_response = 10};
    fetch(&f, &opt, &rs);
    srv_stop(&s);
    CHECK_EQ_INT(rs.error, 0);
    CHECK_EQ_MEM(rs.body, rs.body_len, "0123456789");
    srv_free(&s);
    result_free(&rs);
    fixture_destroy(&f);
}

TEST(https_is_supported)
{
    struct fixture f;
    fixture_init(&f);
    struct result rs = {0};
    char url[64];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/", closed_port());
    struct httpc_options opt = {.url = url};
    fetch(&f, &opt, &rs);
    CHECK_EQ_INT(rs.error, -ECONNREFUSED);
    fixture_destroy(&f);
}

TEST(malformed_urls_are_rejected)
{
    static const struct {
        const char *url;
        int error;
    } cases[] = {
        {"http://", -EINVAL},
        {"ftp://x", -EINVAL},
        {"http://host:99999/", -EINVAL},
        {"http://host:0/", -EINVAL},
        {"http://host:8x/", -EINVAL},
        {"no scheme", -EINVAL},
        {"://host/", -EINVAL},
        {"http://user@host/", -EINVAL},
        {"http://[::1/", -EINVAL},
        {"http://[zz::1]/", -EINVAL},
        {"http://[::1]x/", -EINVAL},
        {"http://ho st/", -EINVAL},
        {"http://host/a b", -EINVAL},
        {"http://host/a\r\nX: y", -EINVAL},
        {"http://:80/", -EINVAL},
    };
    struct fixture f;
    fixture_init(&f);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct result rs = {0};
        struct httpc_options opt = {.url = cases[i].url};
        fetch(&f, &opt, &rs);
        if (rs.error != cases[i].error)
            fprintf(stderr, "  url \"%s\": error %d, message \"%s\"\n", cases[i].url, rs.error,
                    rs.msg);
        CHECK_EQ_INT(rs.error, cases[i].error);
    }
    fixture_destroy(&f);
}

TEST(header_value_with_crlf_is_einval)
{
    struct fixture f;
    fixture_init(&f);
    struct http_header h[] = {{"X-Evil", 6, "a\r\nInjected: 1", 15}};
    struct result rs = {0};
    struct httpc_options opt = {.url = url_for(closed_port(), "/"), .headers = h, .nheaders = 1};
    fetch(&f, &opt, &rs);
    CHECK_EQ_INT(rs.error, -EINVAL);
    fixture_destroy(&f);
}

TEST(header_name_with_crlf_or_nul_is_einval)
{
    static const struct http_header bad[] = {
        {"X-A\r\nB", 7, "v", 1}, {"X-A\0B", 5, "v", 1}, {"X A", 3, "v", 1}, {"", 0, "v", 1}};
    struct fixture f;
    fixture_init(&f);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct result rs = {0};
        struct httpc_options opt = {
            .url = url_for(closed_port(), "/"), .headers = &bad[i], .nheaders = 1};
        fetch(&f, &opt, &rs);
        CHECK_EQ_INT(rs.error, -EINVAL);
    }
    fixture_destroy(&f);
}

TEST(framing_headers_from_the_caller_are_einval)
{
    static const struct http_header bad[] = {{"Content-Length", 14, "5", 1},
                                             {"transfer-encoding", 17, "chunked", 7},
                                             {"Connection", 10, "keep-alive", 10}};
    struct fixture f;
    fixture_init(&f);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct result rs = {0};
        struct httpc_options opt = {
            .url = url_for(closed_port(), "/"), .headers = &bad[i], .nheaders = 1};
        fetch(&f, &opt, &rs);
        CHECK_EQ_INT(rs.error, -EINVAL);
    }
    fixture_destroy(&f);
}

TEST(invalid_method_is_einval)
{
    struct fixture f;
    fixture_init(&f);
    struct result rs = {0};
    struct httpc_options opt = {.method = "GET /x HTTP/1.1\r\n", .url = "http://127.0.0.1/"};
    fetch(&f, &opt, &rs);
    CHECK_EQ_INT(rs.error, -EINVAL);
    fixture_destroy(&f);
}

/* done never runs inside httpc_start, even for errors found there: fetch
 * checks it for every test; this one covers each early-error path at once,
 * with done flagging a call made while httpc_start was still running. */
TEST(done_is_never_called_inside_start)
{
    struct fixture f;
    fixture_init(&f);
    const char *urls[] = {"bad", "https://x/", url_for(closed_port(), "/")};
    for (size_t i = 0; i < 3; i++) {
        bool in_start = true;
        struct result rs = {.loop = f.loop, .in_start = &in_start};
        struct httpc_options opt = {.url = urls[i]};
        CHECK(httpc_start(f.hc, &opt, &whole, &rs) != NULL);
        in_start = false;
        CHECK_EQ_INT(rs.calls, 0);
        CHECK(run_bounded(f.loop, WATCHDOG_SECONDS));
        CHECK_EQ_INT(rs.calls, 1);
        CHECK(!rs.called_in_start);
        CHECK(rs.error != 0);
    }
    /* NULL options are reported the same way. */
    struct result rs = {.loop = f.loop};
    CHECK(httpc_start(f.hc, NULL, &whole, &rs) != NULL);
    CHECK_EQ_INT(rs.calls, 0);
    CHECK(run_bounded(f.loop, WATCHDOG_SECONDS));
    CHECK_EQ_INT(rs.error, -EINVAL);
    fixture_destroy(&f);
}

/* ---- tests: cancellation ---- */

struct cancel_poll {
    struct srv *srv;
    struct httpc_request *req;
    struct result *rs;
    int calls_after_cancel; /* done calls seen right after httpc_cancel returned */
};

/* Cancels once the server has read the request. */
static void cancel_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct cancel_poll *cp = w->data;
    if (atomic_load(&cp->srv->seen) == 0)
        return;
    ev_timer_stop(loop, w);
    httpc_cancel(cp->req);
    cp->calls_after_cancel = cp->rs->calls;
}

static void quiet_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
    (void)w;
}

TEST(cancel_during_exchange_calls_done_synchronously_once)
{
    struct fixture f;
    fixture_init(&f);
    struct srv s;
    srv_start(&s, NULL);
    struct result rs = {.loop = f.loop};
    struct httpc_options opt = {.url = url_for(s.port, "/wait"), .timeout = 5};
    struct cancel_poll cp = {.srv = &s, .rs = &rs};
    cp.req = httpc_start(f.hc, &opt, &whole, &rs);
    CHECK(cp.req != NULL);
    ev_timer poller;
    ev_timer_init(&poller, cancel_poll_cb, 0.005, 0.005);
    poller.data = &cp;
    ev_timer_start(f.loop, &poller);
    CHECK(run_bounded(f.loop, WATCHDOG_SECONDS)); /* on_done breaks it */
    ev_timer_stop(f.loop, &poller);
    CHECK_EQ_INT(cp.calls_after_cancel, 1);
    CHECK_EQ_INT(rs.error, -ECANCELED);
    /* Nothing else arrives later. */
    ev_timer quiet;
    ev_timer_init(&quiet, quiet_cb, 0.2, 0.);
    ev_timer_start(f.loop, &quiet);
    ev_run(f.loop, 0);
    CHECK_EQ_INT(rs.calls, 1);
    srv_stop(&s); /* the cancel closed the socket, ending the server's wait */
    srv_free(&s);
    fixture_destroy(&f);
}

TEST(cancel_while_resolving_frees_safely)
{
    struct fixture f;
    fixture_init(&f);
    struct result rs = {.loop = f.loop};
    struct httpc_options opt = {.url = "http://localhost:1/"};
    struct httpc_request *r = httpc_start(f.hc, &opt, &whole, &rs);
    CHECK(r != NULL);
    httpc_cancel(r);
    CHECK_EQ_INT(rs.calls, 1);
    CHECK_EQ_INT(rs.error, -ECANCELED);
    /* The resolution finishes on its own; its completion must find the
     * request gone (run under ASan or valgrind to see it). */
    ev_timer quiet;
    ev_timer_init(&quiet, quiet_cb, 0.2, 0.);
    ev_timer_start(f.loop, &quiet);
    ev_run(f.loop, 0);
    CHECK_EQ_INT(rs.calls, 1);
    fixture_destroy(&f);
}

TEST(cancel_before_held_error_reports_cancel)
{
    struct fixture f;
    fixture_init(&f);
    struct result rs = {.loop = f.loop};
    struct httpc_options opt = {.url = "gopher://x/"};
    struct httpc_request *r = httpc_start(f.hc, &opt, &whole, &rs);
    CHECK(r != NULL);
    CHECK_EQ_INT(rs.calls, 0);
    httpc_cancel(r);
    CHECK_EQ_INT(rs.calls, 1);
    CHECK_EQ_INT(rs.error, -ECANCELED);
    ev_timer quiet;
    ev_timer_init(&quiet, quiet_cb, 0.1, 0.);
    ev_timer_start(f.loop, &quiet);
    ev_run(f.loop, 0);
    CHECK_EQ_INT(rs.calls, 1);
    fixture_destroy(&f);
}

CHECK_MAIN()
