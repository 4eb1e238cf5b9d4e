/* loadgen: an open-loop HTTP/1.1 load generator, for latency at a fixed rate.
 *
 * wrk keeps every connection busy and sends the next request only when the
 * previous answer arrived, so when the server stalls, wrk stalls with it and
 * never records the requests a real client would have sent meanwhile
 * ("coordinated omission"): its percentiles at saturation look far better
 * than what users would see. loadgen instead schedules requests at a constant
 * aggregate rate, request i at start + i / rate, whatever the server does.
 * A due request goes out on the first idle keep-alive connection (one request
 * in flight per connection, no pipelining); when none is idle it waits in
 * line. Its latency runs from its *intended* send time to the end of its
 * response, so a stall is charged to every request that should have been sent
 * during it, as in wrk2.
 *
 * Latencies go into a log-linear histogram (exact below 256 ns, then 128
 * linear sub-buckets per power of two: under 0.4 % error), from which p50 to
 * p99.99 and the maximum are printed as key=value lines on stdout. The delay
 * between a request's intended and actual send time ("send lag") is printed
 * too: it is the generator's own precision, and grows when it cannot keep up
 * or when all connections are busy.
 *
 * Timing: a timerfd armed at the next intended send time (nanosecond
 * resolution; epoll's millisecond timeouts are too coarse), and the schedule
 * is also checked before each wait for events, so a busy loop sends on time.
 *
 * Known limits: one thread, so about one core's worth of requests (the
 * suite's rates are well below that); numeric hosts or names getaddrinfo
 * resolves; no TLS. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <http_parser.h>

#define HIST_SUB_BITS  7
#define HIST_SUB       (1u << HIST_SUB_BITS)
#define HIST_MAX_SHIFT 36 /* 2^(36+8) ns: about 4.9 hours */
#define HIST_BUCKETS   ((HIST_MAX_SHIFT + 2) * HIST_SUB)

/* Values in nanoseconds. */
struct hist {
    uint64_t count;
    uint64_t max;
    double sum;
    uint64_t b[HIST_BUCKETS];
};

enum conn_state { CONN_CLOSED, CONN_CONNECTING, CONN_IDLE, CONN_BUSY };

struct conn {
    ev_io io;
    int fd;
    enum conn_state state;
    int queued;      /* in the idle line (maybe stale: see idle_pop) */
    int done;        /* set by on_message_complete */
    uint64_t index;  /* the request in flight */
    double sent_at;  /* when it went out */
    size_t written;  /* bytes of it written so far */
    double retry_at; /* a closed connection reconnects after this */
    http_parser parser;
};

struct opts {
    double rate;
    int conns;
    double duration;
    double warmup;
    double timeout;
    double tick;
    const char *method;
    const char *body;
    const char *url;
    char *headers; /* "Name: value\r\n" lines */
    size_t headers_len;
};

static struct opts opt = {
    .conns = 64, .duration = 10, .warmup = 0, .timeout = 5, .tick = 50e-6, .method = "GET"};

static struct ev_loop *loop;
static struct sockaddr_storage addr;
static socklen_t addrlen;
static char *request;
static size_t request_len;

static struct conn *conns;
static struct conn **idle; /* FIFO of idle connections, so all are used evenly */
static size_t idle_head, idle_len, idle_cap;

static double t_start;     /* intended send time of request 0 */
static uint64_t n_warm;    /* requests 0 .. n_warm-1 are not recorded */
static uint64_t n_total;   /* requests scheduled in all */
static uint64_t next_due;  /* the first request not yet due */
static uint64_t next_send; /* the first due request not yet sent */
static int draining;
static double drain_deadline;

static struct hist latency, lag;
static uint64_t completed, non2xx, io_errors, timeouts, connect_errors, reconnects;
static uint64_t closed_idle;
static uint64_t first_error_status;
static char first_error[160];

static int tfd = -1;
static double armed_at; /* the timerfd's expiry, to re-arm only on change */
static ev_io tick_io;
static ev_prepare pump_prepare;
static ev_timer housekeeping;

static http_parser_settings parser_settings;

static void conn_open(struct conn *c);
static void conn_close(struct conn *c, double now);
static void dispatch(void);

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double intended(uint64_t i)
{
    return t_start + (double)i / opt.rate;
}

static void note_error(const char *fmt, const char *detail)
{
    if (!first_error[0])
        snprintf(first_error, sizeof first_error, fmt, detail);
}

/* ---- histogram ------------------------------------------------------------ */

static size_t hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (size_t)v;
    int shift = 63 - __builtin_clzll(v) - HIST_SUB_BITS;
    if (shift > HIST_MAX_SHIFT) {
        shift = HIST_MAX_SHIFT;
        v = ((uint64_t)2 * HIST_SUB - 1) << shift;
    }
    return (size_t)shift * HIST_SUB + (size_t)(v >> shift);
}

/* The middle of bucket i's range. */
static double hist_value(size_t i)
{
    if (i < 2 * HIST_SUB)
        return (double)i;
    size_t shift = i / HIST_SUB - 1;
    double lo = (double)((uint64_t)(i - shift * HIST_SUB) << shift);
    return lo + (double)((uint64_t)1 << shift) / 2;
}

static void hist_add(struct hist *h, double seconds)
{
    uint64_t v = seconds <= 0 ? 0 : (uint64_t)(seconds * 1e9);
    h->b[hist_index(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
}

/* The p-th percentile in nanoseconds: the value at rank ceil(p% of count). */
static double hist_percentile(const struct hist *h, double p)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            double v = hist_value(i);
            return v > (double)h->max ? (double)h->max : v;
        }
    }
    return (double)h->max;
}

/* ---- the idle line -------------------------------------------------------- */

static void idle_push(struct conn *c)
{
    if (c->queued)
        return; /* still in line from before it was closed and reopened */
    idle[(idle_head + idle_len) % idle_cap] = c;
    idle_len++;
    c->queued = 1;
}

/* The next idle connection, skipping entries of connections that closed
 * (or went busy) since they were queued. */
static struct conn *idle_pop(void)
{
    while (idle_len) {
        struct conn *c = idle[idle_head];
        idle_head = (idle_head + 1) % idle_cap;
        idle_len--;
        c->queued = 0;
        if (c->state == CONN_IDLE)
            return c;
    }
    return NULL;
}

/* ---- requests ------------------------------------------------------------- */

static void record(struct conn *c, double now)
{
    if (c->index < n_warm)
        return;
    completed++;
    hist_add(&latency, now - intended(c->index));
    unsigned status = c->parser.status_code;
    if (status < 200 || status > 299) {
        non2xx++;
        if (!first_error_status)
            first_error_status = status;
    }
}

static void conn_write(struct conn *c)
{
    while (c->written < request_len) {
        ssize_t n = write(c->fd, request + c->written, request_len - c->written);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                ev_io_stop(loop, &c->io);
                ev_io_set(&c->io, c->fd, EV_READ | EV_WRITE);
                ev_io_start(loop, &c->io);
                return;
            }
            if (c->index >= n_warm)
                io_errors++;
            note_error("write: %s", strerror(errno));
            conn_close(c, now_mono());
            return;
        }
        c->written += (size_t)n;
    }
    if (c->io.events & EV_WRITE) {
        ev_io_stop(loop, &c->io);
        ev_io_set(&c->io, c->fd, EV_READ);
        ev_io_start(loop, &c->io);
    }
}

static void send_on(struct conn *c, uint64_t i)
{
    double now = now_mono();
    c->state = CONN_BUSY;
    c->index = i;
    c->sent_at = now;
    c->written = 0;
    c->done = 0;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    if (i >= n_warm)
        hist_add(&lag, now - intended(i));
    conn_write(c);
}

/* Sends due requests, oldest first, while connections are idle. */
static void dispatch(void)
{
    while (next_send < next_due) {
        struct conn *c = idle_pop();
        if (!c)
            return;
        send_on(c, next_send++);
    }
}

/* Marks the requests due by now, sends what it can, and arms the timer for
 * the next one. */
static void pump(void)
{
    double now = now_mono();
    while (next_due < n_total && intended(next_due) <= now)
        next_due++;
    dispatch();
    if (next_due >= n_total) {
        if (!draining) {
            draining = 1;
            drain_deadline = intended(n_total) + opt.timeout;
        }
        return;
    }
    double at = intended(next_due);
    if (at < now + opt.tick)
        at = now + opt.tick;
    if (armed_at > now && armed_at <= at)
        return; /* an earlier expiry is already set: it pumps again */
    armed_at = at;
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)at;
    its.it_value.tv_nsec = (long)((at - (double)(time_t)at) * 1e9);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
        its.it_value.tv_nsec = 1;
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* ---- connections ---------------------------------------------------------- */

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->done = 1;
    return 0;
}

static void conn_close(struct conn *c, double now)
{
    if (c->fd >= 0) {
        ev_io_stop(loop, &c->io);
        close(c->fd);
        c->fd = -1;
    }
    c->state = CONN_CLOSED;
    c->retry_at = now;
}

/* The response is complete: record it, then the connection is idle again,
 * or is reopened when the server asked to close it. */
static void finish(struct conn *c, double now, int keep_alive)
{
    record(c, now);
    if (keep_alive) {
        c->state = CONN_IDLE;
        idle_push(c);
    } else {
        reconnects++;
        conn_close(c, now);
        conn_open(c);
    }
    dispatch();
}

static void on_readable(struct conn *c)
{
    static char buf[65536];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
        }
        double now = now_mono();
        if (c->state != CONN_BUSY) {
            /* Idle: the server closed it (keep-alive timeout) or sent
             * something unasked. Either way it is reopened, no error. */
            closed_idle++;
            conn_close(c, now);
            conn_open(c);
            return;
        }
        if (n < 0) {
            if (c->index >= n_warm)
                io_errors++;
            note_error("read: %s", strerror(errno));
            conn_close(c, now);
            return;
        }
        size_t used = http_parser_execute(&c->parser, &parser_settings, buf, (size_t)n);
        if (c->done) {
            finish(c, now, n > 0 && http_should_keep_alive(&c->parser));
            return;
        }
        if (n == 0 || used != (size_t)n || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
            if (c->index >= n_warm)
                io_errors++;
            if (n == 0)
                note_error("%s", "the server closed a connection with a request in flight");
            else
                note_error("bad response: %s",
                           http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
            conn_close(c, now);
            return;
        }
    }
}

static void on_connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        connect_errors++;
        note_error("connect: %s", strerror(err));
        conn_close(c, now_mono() + 0.1);
        return;
    }
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->fd, EV_READ);
    ev_io_start(loop, &c->io);
    c->state = CONN_IDLE;
    idle_push(c);
    if (t_start > 0)
        dispatch();
}

static void conn_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l;
    struct conn *c = (struct conn *)w;
    if (c->state == CONN_CONNECTING) {
        on_connected(c);
        return;
    }
    if (revents & EV_WRITE && c->state == CONN_BUSY)
        conn_write(c);
    if (revents & EV_READ && c->fd >= 0)
        on_readable(c);
}

static void conn_open(struct conn *c)
{
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        connect_errors++;
        note_error("socket: %s", strerror(errno));
        conn_close(c, now_mono() + 0.1);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, addrlen) < 0 && errno != EINPROGRESS) {
        connect_errors++;
        note_error("connect: %s", strerror(errno));
        close(fd);
        conn_close(c, now_mono() + 0.1);
        return;
    }
    c->fd = fd;
    c->state = CONN_CONNECTING;
    ev_io_init(&c->io, conn_cb, fd, EV_WRITE);
    ev_io_start(loop, &c->io);
}

/* ---- timers --------------------------------------------------------------- */

static void tick_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l;
    (void)revents;
    uint64_t expirations;
    if (read(w->fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        perror("loadgen: timerfd");
    pump();
}

static void prepare_cb(struct ev_loop *l, ev_prepare *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
    if (t_start > 0 && !draining)
        pump();
}

/* Every 20 ms: reopen closed connections, fail requests past the timeout,
 * and end the run once everything scheduled is answered (or given up on). */
static void housekeeping_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    double now = now_mono();
    int busy = 0;
    for (int i = 0; i < opt.conns; i++) {
        struct conn *c = &conns[i];
        if (c->state == CONN_BUSY && now - c->sent_at > opt.timeout) {
            if (c->index >= n_warm)
                timeouts++;
            note_error("%s", "a request timed out");
            conn_close(c, now);
        }
        if (c->state == CONN_CLOSED && now >= c->retry_at && !(draining && now > drain_deadline))
            conn_open(c);
        busy += c->state == CONN_BUSY;
    }
    if (draining && ((next_send >= n_total && !busy) || now > drain_deadline))
        ev_break(l, EVBREAK_ALL);
}

/* ---- set-up --------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: loadgen -r RATE [options] http://HOST:PORT/PATH\n"
               "\n"
               "Sends requests at a constant aggregate RATE (req/s) over keep-alive\n"
               "connections and prints latency from each request's intended send time.\n"
               "\n"
               "  -r, --rate N          requests per second (required)\n"
               "  -c, --connections N   keep-alive connections (default 64)\n"
               "  -d, --duration S      measured seconds (default 10)\n"
               "  -w, --warmup S        seconds at the same rate first, not recorded (default 0)\n"
               "  -t, --timeout S       a request unanswered this long fails (default 5)\n"
               "  -m, --method M        request method (default GET)\n"
               "  -b, --body TEXT       request body (sent with content-length)\n"
               "  -H, --header 'N: V'   extra request header; repeatable\n"
               "      --tick S          shortest timer interval (default 0.00005)\n"
               "  -h, --help            this text\n"
               "\n"
               "Output: key=value lines on stdout; latencies in microseconds.\n"
               "Exit status: 0 done, 1 no connection could be made, 2 bad arguments.\n");
}

static void bad(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "loadgen: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (try --help)\n");
    exit(2);
}

static double parse_positive(const char *name, const char *s, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || v > max)
        bad("bad %s '%s': expected a positive number", name, s);
    return v;
}

static void add_header(const char *h)
{
    const char *colon = strchr(h, ':');
    if (!colon || colon == h || strpbrk(h, "\r\n"))
        bad("bad --header '%s'%s: expected 'Name: value'", h, "");
    size_t len = strlen(h);
    char *p = realloc(opt.headers, opt.headers_len + len + 3);
    if (!p) {
        perror("loadgen");
        exit(1);
    }
    memcpy(p + opt.headers_len, h, len);
    memcpy(p + opt.headers_len + len, "\r\n", 3);
    opt.headers = p;
    opt.headers_len += len + 2;
}

static void parse_args(int argc, char **argv)
{
    static const struct option longs[] = {{"rate", required_argument, NULL, 'r'},
                                          {"connections", required_argument, NULL, 'c'},
                                          {"duration", required_argument, NULL, 'd'},
                                          {"warmup", required_argument, NULL, 'w'},
                                          {"timeout", required_argument, NULL, 't'},
                                          {"method", required_argument, NULL, 'm'},
                                          {"body", required_argument, NULL, 'b'},
                                          {"header", required_argument, NULL, 'H'},
                                          {"tick", required_argument, NULL, 'T'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":r:c:d:w:t:m:b:H:h", longs, NULL)) != -1) {
        switch (ch) {
        case 'r':
            opt.rate = parse_positive("--rate", optarg, 1e7);
            break;
        case 'c': {
            double v = parse_positive("--connections", optarg, 1e6);
            if (v != floor(v))
                bad("bad --connections '%s'%s: expected a whole number", optarg, "");
            opt.conns = (int)v;
            break;
        }
        case 'd':
            opt.duration = parse_positive("--duration", optarg, 86400);
            break;
        case 'w':
            opt.warmup = strcmp(optarg, "0") ? parse_positive("--warmup", optarg, 86400) : 0;
            break;
        case 't':
            opt.timeout = parse_positive("--timeout", optarg, 3600);
            break;
        case 'T':
            opt.tick = parse_positive("--tick", optarg, 1);
            break;
        case 'm':
            if (!*optarg || strpbrk(optarg, " \r\n"))
                bad("bad --method '%s'%s", optarg, "");
            opt.method = optarg;
            break;
        case 'b':
            opt.body = optarg;
            break;
        case 'H':
            add_header(optarg);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case ':':
            bad("%s needs a value%s", argv[optind - 1], "");
            break;
        default:
            bad("unknown option '%s'%s", argv[optind - 1], "");
        }
    }
    if (optind != argc - 1)
        bad("%s%s", optind >= argc ? "no URL given" : "more than one URL given", "");
    if (opt.rate <= 0)
        bad("%s%s", "--rate is required", "");
    opt.url = argv[optind];
}

/* http://HOST[:PORT][/PATH] -> addr, and the request bytes. */
static void prepare_request(void)
{
    const char *u = opt.url;
    if (strncmp(u, "http://", 7) != 0)
        bad("bad URL '%s'%s: only http://HOST:PORT/PATH", u, "");
    u += 7;
    const char *slash = strchr(u, '/');
    const char *path = slash ? slash : "/";
    size_t hostport_len = slash ? (size_t)(slash - u) : strlen(u);
    char hostport[256];
    if (hostport_len == 0 || hostport_len >= sizeof hostport)
        bad("bad URL '%s'%s: no host", opt.url, "");
    memcpy(hostport, u, hostport_len);
    hostport[hostport_len] = 0;
    char host[256], port[16] = "80";
    const char *colon = strrchr(hostport, ':');
    if (colon) {
        size_t hl = (size_t)(colon - hostport);
        memcpy(host, hostport, hl);
        host[hl] = 0;
        if (strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof port ||
            strspn(colon + 1, "0123456789") != strlen(colon + 1))
            bad("bad URL '%s'%s: bad port", opt.url, "");
        strcpy(port, colon + 1);
    } else {
        strcpy(host, hostport);
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        bad("cannot resolve '%s': %s", host, gai_strerror(rc));
    memcpy(&addr, res->ai_addr, res->ai_addrlen);
    addrlen = res->ai_addrlen;
    freeaddrinfo(res);

    size_t body_len = opt.body ? strlen(opt.body) : 0;
    size_t cap = strlen(opt.method) + strlen(path) + hostport_len + opt.headers_len + body_len + 96;
    request = malloc(cap);
    if (!request) {
        perror("loadgen");
        exit(1);
    }
    int n = snprintf(request, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n%s", opt.method, path, hostport,
                     opt.headers ? opt.headers : "");
    if (opt.body)
        n += snprintf(request + n, cap - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(request + n, cap - (size_t)n, "\r\n");
    if (opt.body) {
        memcpy(request + n, opt.body, body_len);
        n += (int)body_len;
    }
    request_len = (size_t)n;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t need = (rlim_t)opt.conns + 32;
    if (rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < need) {
        fprintf(stderr, "loadgen: RLIMIT_NOFILE %llu is too low for %d connections\n",
                (unsigned long long)rl.rlim_cur, opt.conns);
        exit(2);
    }
}

/* Opens every connection before the clock starts; returns how many made it. */
static int connect_all(void)
{
    for (int i = 0; i < opt.conns; i++) {
        conns[i].fd = -1;
        conn_open(&conns[i]);
    }
    double deadline = now_mono() + opt.timeout;
    for (;;) {
        int pending = 0, up = 0;
        for (int i = 0; i < opt.conns; i++) {
            pending += conns[i].state == CONN_CONNECTING;
            up += conns[i].state == CONN_IDLE;
        }
        if (!pending || now_mono() > deadline)
            return up;
        ev_run(loop, EVRUN_ONCE);
    }
}

static void print_hist(const char *name, const struct hist *h)
{
    static const struct {
        const char *key;
        double p;
    } ps[] = {{"p50", 50}, {"p75", 75},     {"p90", 90},
              {"p99", 99}, {"p99_9", 99.9}, {"p99_99", 99.99}};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        printf("%s_%s_us=%.1f\n", name, ps[i].key, hist_percentile(h, ps[i].p) / 1e3);
    printf("%s_max_us=%.1f\n", name, (double)h->max / 1e3);
    printf("%s_mean_us=%.1f\n", name, h->count ? h->sum / (double)h->count / 1e3 : 0.0);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    prepare_request();
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);

    loop = EV_DEFAULT;
    conns = calloc((size_t)opt.conns, sizeof *conns);
    idle_cap = (size_t)opt.conns + 1;
    idle = calloc(idle_cap, sizeof *idle);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!conns || !idle || tfd < 0) {
        perror("loadgen: set-up");
        return 1;
    }
    parser_settings.on_message_complete = on_message_complete;

    int up = connect_all();
    if (up == 0) {
        fprintf(stderr, "loadgen: cannot connect to %s: %s\n", opt.url,
                first_error[0] ? first_error : "timed out");
        return 1;
    }

    n_warm = (uint64_t)(opt.warmup * opt.rate);
    n_total = n_warm + (uint64_t)(opt.duration * opt.rate);
    if (n_total == n_warm)
        n_total++;
    ev_io_init(&tick_io, tick_cb, tfd, EV_READ);
    ev_io_start(loop, &tick_io);
    ev_prepare_init(&pump_prepare, prepare_cb);
    ev_prepare_start(loop, &pump_prepare);
    ev_timer_init(&housekeeping, housekeeping_cb, 0.02, 0.02);
    ev_timer_start(loop, &housekeeping);

    t_start = now_mono();
    pump();
    ev_run(loop, 0);
    double t_end = now_mono();

    uint64_t scheduled = n_total - n_warm;
    uint64_t unsent = n_total - (next_send > n_warm ? next_send : n_warm);
    printf("url=%s\n", opt.url);
    printf("method=%s\n", opt.method);
    printf("target_rps=%.1f\n", opt.rate);
    printf("connections=%d\n", opt.conns);
    printf("connections_up_at_start=%d\n", up);
    printf("duration_s=%.3f\n", opt.duration);
    printf("warmup_s=%.3f\n", opt.warmup);
    printf("scheduled=%llu\n", (unsigned long long)scheduled);
    printf("completed=%llu\n", (unsigned long long)completed);
    printf("achieved_rps=%.1f\n", (double)completed / opt.duration);
    printf("non2xx=%llu\n", (unsigned long long)non2xx);
    printf("io_errors=%llu\n", (unsigned long long)io_errors);
    printf("timeouts=%llu\n", (unsigned long long)timeouts);
    printf("connect_errors=%llu\n", (unsigned long long)connect_errors);
    printf("unsent=%llu\n", (unsigned long long)unsent);
    long long unanswered =
        (long long)scheduled - (long long)(completed + io_errors + timeouts + unsent);
    printf("unanswered=%lld\n", unanswered > 0 ? unanswered : 0);
    printf("reconnects=%llu\n", (unsigned long long)reconnects);
    printf("closed_idle=%llu\n", (unsigned long long)closed_idle);
    printf("drain_s=%.3f\n", t_end - intended(n_total));
    print_hist("latency", &latency);
    print_hist("send_lag", &lag);
    if (first_error_status)
        printf("first_error_status=%llu\n", (unsigned long long)first_error_status);
    if (first_error[0])
        printf("first_error=%s\n", first_error);
    return 0;
}
