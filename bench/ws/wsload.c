/* wsload: a WebSocket load generator for bench/ws (RFC 6455, RFC 7692).
 *
 *   wsload [options] ws://HOST:PORT/PATH
 *
 * One thread, one epoll loop, non-blocking sockets. It opens -c connections
 * (at most --connect-batch handshakes at a time), checks each opening
 * handshake (101, Sec-WebSocket-Accept, the extension answer), then runs
 * one of three modes:
 *
 *   echo       every connection sends a message, waits for it to come back
 *              whole and unchanged, and sends the next one at once (closed
 *              loop, one message in flight per connection), for -w seconds
 *              of warm-up and then -d measured seconds. Round trips that
 *              end inside the measured window are counted; their latency
 *              (send to the echo's last byte) goes into a log-linear
 *              histogram (exact below 256 ns, then 128 sub-buckets per
 *              power of two).
 *   broadcast  -c receivers and one more connection, the sender, all on the
 *              same path (a chat room). Each of -r rounds the sender sends
 *              one text message carrying a round token; the round ends when
 *              every receiver has got a message with that token. Per round:
 *              the time from the send to the first, the median, the 99th
 *              percentile and the last receiver.
 *   idle       the connections are opened and held: a line {"event":"ready"}
 *              is printed once all are open, then it waits for SIGTERM,
 *              SIGINT, SIGUSR1 or the end of standard input (answering
 *              pings meanwhile), and prints what it saw. With --http the
 *              connections are HTTP/1.1 keep-alive ones instead: one GET
 *              each, its answer read, then held.
 *
 * Messages: -s bytes of ASCII text shaped like small JSON records (so that
 * permessage-deflate has something realistic to compress), sent as text,
 * or as binary with -b. Every frame a client sends must be masked; the
 * masking key is drawn once per run and the masked frame built once, so
 * the generator spends its time on the connections rather than on masking
 * (a server cannot tell the difference). With -z the handshake offers
 * permessage-deflate (by default with client_no_context_takeover and
 * server_no_context_takeover, so that every message is compressed on its
 * own by both sides and every server does the same work); the message is
 * then compressed once, and every compressed message from the server is
 * inflated and checked. --require-deflate makes a server that declines the
 * offer an error.
 *
 * Output: one JSON object on standard output (idle mode: the ready line
 * first; echo with --events: a line as the measured window opens and one
 * as it ends). The client's own CPU time over the measured window is included,
 * so a caller can tell when the generator's core, not the server's, was
 * the limit. Exit status: 0, 1 for failures (connections that did not open
 * or closed, wrong echoes, incomplete rounds), 2 for usage errors.
 *
 * Limits: IPv4 numeric addresses only; no TLS; one thread. RLIMIT_NOFILE is
 * raised as needed. With --src the connections are spread over several
 * local addresses (e.g. 127.0.0.2,127.0.0.3) in case one address runs out
 * of ephemeral ports. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#define HIST_SUB_BITS  7
#define HIST_SUB       (1u << HIST_SUB_BITS)
#define HIST_MAX_SHIFT 36
#define HIST_BUCKETS   ((HIST_MAX_SHIFT + 2) * HIST_SUB)

#define RBUF_SIZE   (256 * 1024)
#define MAX_MESSAGE (64u * 1024 * 1024)
#define WS_GUID     "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum mode { MODE_ECHO, MODE_BROADCAST, MODE_IDLE };
enum cstate { C_NEW, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSING, C_CLOSED };

struct hist {
    uint64_t count;
    uint64_t max;
    double sum;
    uint64_t b[HIST_BUCKETS];
};

struct conn {
    int fd;
    uint32_t idx;
    uint8_t state;
    bool deflate;  /* permessage-deflate negotiated */
    bool srv_nct;  /* server_no_context_takeover negotiated */
    bool in_msg;   /* a fragmented message is being put together */
    bool msg_comp; /* ... and it is compressed */
    bool waiting;  /* echo: a message is in flight */
    bool want_out; /* EPOLLOUT is armed */
    bool close_sent;
    uint8_t msg_op;
    uint8_t cli_bits; /* client_max_window_bits the server asked for (15: none) */
    uint8_t *pend;    /* input not parsed yet */
    size_t pend_len, pend_cap;
    uint8_t *msg; /* fragments of the message being put together */
    size_t msg_len, msg_cap;
    uint8_t *out; /* output a short write left */
    size_t out_len, out_off, out_cap;
    z_stream *inf; /* the server keeps its context: one inflater each */
    uint64_t sent_ns;
    uint32_t round; /* broadcast: the last round this receiver got */
    char key[32];
};

struct opts {
    enum mode mode;
    int conns;
    double duration, warmup, timeout, settle, gap;
    size_t size;
    bool binary, deflate, require_deflate, http, verify, events;
    const char *offer;
    int rounds, batch;
    const char *url;
    char *srcs;
};

static struct opts opt = {
    .mode = MODE_ECHO,
    .conns = 1,
    .duration = 10,
    .warmup = 2,
    .timeout = 60,
    .settle = 1,
    .gap = 0.2,
    .size = 32,
    .verify = true,
    .offer = "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
    .rounds = 5,
    .batch = 256,
};

static char host[256], path[2048];
static int port;
static struct sockaddr_in addr;
static struct in_addr *src_addrs;
static int nsrc;

static int ep = -1;
static struct conn *conns;
static int nconns; /* receivers + sender in broadcast mode */
static uint8_t *rbuf;
static uint8_t *payload; /* the message */
static uint8_t mask_key[4];
/* The masked frame of the message, plain and compressed per client window
 * (index: window bits; 0 for the plain frame). */
static uint8_t *frames[16];
static size_t frame_len[16];
static size_t compressed_size;
static uint8_t *ibuf; /* inflated messages */
static size_t ibuf_cap;
static z_stream shared_inf;
static bool shared_inf_ready;

static volatile sig_atomic_t stop_signal;

/* State of the run. */
static int next_connect, connecting, opened, failed_open, closed_early;
static bool running, stopping;
static int still_open_at_end;
static uint64_t t_begin_ns, t_open_ns, t_warm_end_ns, t_end_ns;
static struct hist latency;
static uint64_t round_trips, mismatches, unexpected, protocol_errors, pings, deflate_count;
static uint64_t handshake_status[6]; /* 1xx..5xx, and other */
static int first_status;
static char first_error[200];
static char extension_answer[512];
static double client_cpu_start, client_cpu_end;
static uint64_t server_close_codes[5]; /* 1000, 1001, 1006(no frame), 1011, other */

/* broadcast */
static uint32_t cur_round;
static int round_received;
static uint64_t round_sent_ns, round_first_ns;
static uint64_t *arrivals; /* per receiver, this round */
struct round_result {
    double first_ms, p50_ms, p99_ms, all_ms;
    int received;
};
static struct round_result *rounds;
static int rounds_done;

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void note_error(const char *fmt, ...)
{
    if (first_error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(first_error, sizeof first_error, fmt, ap);
    va_end(ap);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "wsload: out of memory\n");
        exit(1);
    }
    return q;
}

static void grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    *buf = xrealloc(*buf, c);
    *cap = c;
}

/* ---- histogram -------------------------------------------------------------- */

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

static double hist_value(size_t i)
{
    if (i < 2 * HIST_SUB)
        return (double)i;
    size_t shift = i / HIST_SUB - 1;
    double lo = (double)((uint64_t)(i - shift * HIST_SUB) << shift);
    return lo + (double)((uint64_t)1 << shift) / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
}

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

/* ---- the message and its frames --------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* ASCII text shaped like a stream of small JSON records, cut to n bytes. */
static void make_payload(size_t n)
{
    static const char *const names[] = {"alice", "bob", "carol", "dave", "erin", "frank"};
    static const char *const kinds[] = {"move", "chat", "join", "leave", "score", "ping"};
    payload = xrealloc(NULL, n + 256);
    size_t len = 0;
    while (len < n) {
        len += (size_t)snprintf((char *)payload + len, 256,
                                "{\"user\":\"%s%u\",\"event\":\"%s\",\"x\":%u,\"y\":%u,"
                                "\"ts\":%llu}\n",
                                names[rng() % 6], (unsigned)(rng() % 1000), kinds[rng() % 6],
                                (unsigned)(rng() % 4096), (unsigned)(rng() % 4096),
                                (unsigned long long)(1700000000000ull + rng() % 100000000));
    }
}

/* A masked client frame of one message (FIN set) into a new buffer. */
static uint8_t *build_frame(uint8_t opcode, bool rsv1, const uint8_t *p, size_t n, size_t *out_n)
{
    uint8_t *f = xrealloc(NULL, n + 14);
    size_t h = 0;
    f[h++] = (uint8_t)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
    if (n < 126) {
        f[h++] = (uint8_t)(0x80 | n);
    } else if (n <= 0xffff) {
        f[h++] = 0x80 | 126;
        f[h++] = (uint8_t)(n >> 8);
        f[h++] = (uint8_t)n;
    } else {
        f[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            f[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    memcpy(f + h, mask_key, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        f[h + i] = p[i] ^ mask_key[i & 3];
    *out_n = h + n;
    return f;
}

/* The message compressed on its own (RFC 7692 7.2.1: raw DEFLATE, flushed,
 * the trailing 00 00 ff ff removed) with a window of `bits`. */
static uint8_t *compress_message(const uint8_t *p, size_t n, int bits, size_t *out_n)
{
    z_stream z = {0};
    if (bits < 9)
        bits = 9;
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, (uLong)n) + 16;
    uint8_t *out = xrealloc(NULL, cap);
    z.next_in = (Bytef *)p;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_SYNC_FLUSH);
    size_t len = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_OK || len < 4 || memcmp(out + len - 4, "\x00\x00\xff\xff", 4) != 0) {
        free(out);
        return NULL;
    }
    *out_n = len - 4;
    return out;
}

static const uint8_t *message_frame(const struct conn *c, size_t *n)
{
    int k = c->deflate ? c->cli_bits : 0;
    if (!frames[k]) {
        uint8_t op = opt.binary ? 2 : 1;
        if (k == 0 || k < 9) {
            /* A window of 8 bits cannot be honoured by zlib: this message
             * goes uncompressed (allowed: compression is per message). */
            frames[k] = build_frame(op, false, payload, opt.size, &frame_len[k]);
        } else {
            size_t cn;
            uint8_t *cp = compress_message(payload, opt.size, k, &cn);
            if (!cp) {
                fprintf(stderr, "wsload: cannot compress the message\n");
                exit(1);
            }
            compressed_size = cn;
            frames[k] = build_frame(op, true, cp, cn, &frame_len[k]);
            free(cp);
        }
    }
    *n = frame_len[k];
    return frames[k];
}

/* ---- connections: output ---------------------------------------------------- */

static void conn_close(struct conn *c);

static void set_events(struct conn *c, bool want_out)
{
    if (c->want_out == want_out || c->fd < 0)
        return;
    c->want_out = want_out;
    struct epoll_event e = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static int conn_write(struct conn *c, const void *data, size_t n)
{
    const uint8_t *p = data;
    if (c->out_len == c->out_off) {
        c->out_len = c->out_off = 0;
        while (n > 0) {
            ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                note_error("send: %s", strerror(errno));
                return -1;
            }
            p += w;
            n -= (size_t)w;
        }
        if (n == 0)
            return 0;
    }
    grow(&c->out, &c->out_cap, c->out_len + n);
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    set_events(c, true);
    return 0;
}

static int conn_flush(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            note_error("send: %s", strerror(errno));
            return -1;
        }
        c->out_off += (size_t)w;
    }
    c->out_len = c->out_off = 0;
    set_events(c, false);
    return 0;
}

static int send_control(struct conn *c, uint8_t opcode, const uint8_t *p, size_t n)
{
    size_t fn;
    uint8_t *f = build_frame(opcode, false, p, n, &fn);
    int rc = conn_write(c, f, fn);
    free(f);
    return rc;
}

static int send_message(struct conn *c, uint64_t now)
{
    size_t n;
    const uint8_t *f = message_frame(c, &n);
    c->sent_ns = now;
    c->waiting = true;
    return conn_write(c, f, n);
}

/* ---- connections: opening ----------------------------------------------------- */

static void fail_open(struct conn *c, const char *why)
{
    note_error("connection %u: %s", c->idx, why);
    failed_open++;
    connecting--;
    conn_close(c);
}

static void start_connect(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        note_error("socket: %s", strerror(errno));
        failed_open++;
        c->state = C_CLOSED;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nsrc > 0) {
        struct sockaddr_in s = {.sin_family = AF_INET, .sin_addr = src_addrs[c->idx % nsrc]};
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (struct sockaddr *)&s, sizeof s) < 0) {
            note_error("bind: %s", strerror(errno));
            failed_open++;
            close(c->fd);
            c->fd = -1;
            c->state = C_CLOSED;
            return;
        }
    }
    connecting++;
    c->state = C_CONNECTING;
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    c->want_out = true;
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
        fail_open(c, strerror(errno));
}

static void connect_more(void)
{
    while (next_connect < nconns && connecting < opt.batch)
        start_connect(&conns[next_connect++]);
}

static void send_handshake(struct conn *c)
{
    uint8_t raw[16];
    for (int i = 0; i < 16; i++)
        raw[i] = (uint8_t)rng();
    EVP_EncodeBlock((unsigned char *)c->key, raw, 16);
    char req[4096];
    int n;
    if (opt.http) {
        n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path, host, port);
    } else {
        n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     path, host, port, c->key, opt.deflate ? "Sec-WebSocket-Extensions: " : "",
                     opt.deflate ? opt.offer : "", opt.deflate ? "\r\n" : "");
    }
    c->state = C_HANDSHAKE;
    set_events(c, false);
    if (conn_write(c, req, (size_t)n) < 0)
        fail_open(c, "handshake write failed");
}

/* A header's value in a response head (NUL-terminated), or NULL. */
static const char *header_value(const char *head, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p && p[2] != '\r') {
        p += 2;
        const char *eol = strstr(p, "\r\n");
        if (!eol)
            return NULL;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = eol;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *len = (size_t)(e - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

/* The server's permessage-deflate answer: which parameters it set. */
static bool parse_extensions(struct conn *c, const char *v, size_t n)
{
    char buf[512];
    if (n >= sizeof buf)
        return false;
    memcpy(buf, v, n);
    buf[n] = 0;
    if (!extension_answer[0])
        snprintf(extension_answer, sizeof extension_answer, "%s", buf);
    char *save = NULL;
    char *tok = strtok_r(buf, ";", &save);
    if (!tok)
        return false;
    while (*tok == ' ')
        tok++;
    if (strncmp(tok, "permessage-deflate", 18) != 0 || (tok[18] && tok[18] != ' '))
        return false;
    c->deflate = true;
    c->cli_bits = 15;
    while ((tok = strtok_r(NULL, ";", &save))) {
        while (*tok == ' ')
            tok++;
        if (strncmp(tok, "server_no_context_takeover", 26) == 0)
            c->srv_nct = true;
        else if (strncmp(tok, "client_max_window_bits", 22) == 0) {
            const char *eq = strchr(tok, '=');
            if (eq) {
                int b = atoi(eq + 1 + (eq[1] == '"'));
                if (b >= 8 && b <= 15)
                    c->cli_bits = (uint8_t)b;
            }
        }
    }
    return true;
}

static void conn_opened(struct conn *c)
{
    c->state = C_OPEN;
    connecting--;
    opened++;
    if (c->deflate)
        deflate_count++;
    connect_more();
}

/* The handshake's answer, once its head is complete; returns the bytes of
 * the head, 0 if it is not complete yet, -1 if the connection failed. */
static long parse_handshake(struct conn *c, uint8_t *p, size_t n)
{
    char *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) {
        if (n > 16384) {
            fail_open(c, "handshake answer too long");
            return -1;
        }
        return 0;
    }
    size_t head_len = (size_t)((uint8_t *)end - p) + 4;
    char save = (char)p[head_len - 1];
    p[head_len - 1] = 0; /* a terminator for the string functions (the last \n) */
    const char *head = (const char *)p;
    int status = 0;
    if (strncmp(head, "HTTP/1.", 7) == 0)
        status = atoi(head + 9);
    if (!first_status)
        first_status = status;
    handshake_status[status >= 100 && status < 600 ? status / 100 : 0]++;
    size_t vl = 0;
    const char *v;
    if (opt.http) {
        /* The answer must be complete with its Content-Length body: the
         * idle connection then holds nothing of the request. */
        v = header_value(head, "content-length", &vl);
        size_t body = v ? (size_t)strtoull(v, NULL, 10) : 0;
        p[head_len - 1] = (uint8_t)save;
        if (status != 200) {
            char why[64];
            snprintf(why, sizeof why, "HTTP status %d", status);
            fail_open(c, why);
            return -1;
        }
        if (n < head_len + body)
            return 0;
        conn_opened(c);
        return (long)(head_len + body);
    }
    if (status != 101) {
        p[head_len - 1] = (uint8_t)save;
        char why[64];
        snprintf(why, sizeof why, "handshake answered %d", status);
        fail_open(c, why);
        return -1;
    }
    v = header_value(head, "sec-websocket-accept", &vl);
    char want[64], concat[64];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    int kl = snprintf(concat, sizeof concat, "%s%s", c->key, WS_GUID);
    EVP_Digest(concat, (size_t)kl, digest, &dlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)want, digest, (int)dlen);
    if (!v || vl != strlen(want) || memcmp(v, want, vl) != 0) {
        p[head_len - 1] = (uint8_t)save;
        fail_open(c, "wrong or missing Sec-WebSocket-Accept");
        return -1;
    }
    v = header_value(head, "sec-websocket-extensions", &vl);
    bool ok = true;
    if (v) {
        if (!opt.deflate || !parse_extensions(c, v, vl))
            ok = false;
    }
    p[head_len - 1] = (uint8_t)save;
    if (!ok) {
        fail_open(c, "an extension that was not offered");
        return -1;
    }
    if (opt.require_deflate && !c->deflate) {
        fail_open(c, "permessage-deflate declined (--require-deflate)");
        return -1;
    }
    conn_opened(c);
    return (long)head_len;
}

/* ---- connections: messages ---------------------------------------------------- */

static int inflate_message(struct conn *c, const uint8_t *p, size_t n, const uint8_t **out,
                           size_t *out_n)
{
    z_stream *z;
    if (c->srv_nct) {
        if (!shared_inf_ready) {
            if (inflateInit2(&shared_inf, -15) != Z_OK)
                return -1;
            shared_inf_ready = true;
        } else {
            inflateReset(&shared_inf);
        }
        z = &shared_inf;
    } else {
        if (!c->inf) {
            c->inf = calloc(1, sizeof *c->inf);
            if (!c->inf || inflateInit2(c->inf, -15) != Z_OK)
                return -1;
        }
        z = c->inf;
    }
    static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
    size_t len = 0;
    for (int part = 0; part < 2; part++) {
        z->next_in = (Bytef *)(part ? tail : p);
        z->avail_in = (uInt)(part ? 4 : n);
        while (z->avail_in > 0) {
            grow(&ibuf, &ibuf_cap, len + 16384);
            z->next_out = ibuf + len;
            z->avail_out = (uInt)(ibuf_cap - len);
            int rc = inflate(z, Z_SYNC_FLUSH);
            len = ibuf_cap - z->avail_out;
            if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END)
                return -1;
            if (len > MAX_MESSAGE)
                return -1;
            if (rc == Z_BUF_ERROR && z->avail_out != 0)
                break;
        }
    }
    *out = ibuf;
    *out_n = len;
    return 0;
}

static int on_message(struct conn *c, uint8_t op, bool compressed, const uint8_t *p, size_t n)
{
    if (compressed) {
        if (!c->deflate || inflate_message(c, p, n, &p, &n) < 0) {
            protocol_errors++;
            note_error("connection %u: a compressed message that does not inflate", c->idx);
            return -1;
        }
    }
    uint64_t now = now_ns();
    if (opt.mode == MODE_ECHO) {
        if (!c->waiting) {
            unexpected++;
            return 0;
        }
        c->waiting = false;
        if (opt.verify &&
            (n != opt.size || memcmp(p, payload, n) != 0 || op != (opt.binary ? 2 : 1))) {
            if (!mismatches)
                note_error("connection %u: the echo differs (%zu bytes, opcode %u)", c->idx, n, op);
            mismatches++;
        }
        if (now >= t_warm_end_ns && now < t_end_ns) {
            round_trips++;
            hist_add(&latency, now - c->sent_ns);
        }
        if (running && !stopping)
            return send_message(c, now);
        return 0;
    }
    if (opt.mode == MODE_BROADCAST) {
        if ((int)c->idx == opt.conns || cur_round == 0 || c->round == cur_round) {
            return 0; /* the sender's own copy, or before the first round */
        }
        char token[32];
        int tl = snprintf(token, sizeof token, "#round-%u#", cur_round);
        if (!memmem(p, n, token, (size_t)tl)) {
            unexpected++;
            return 0;
        }
        c->round = cur_round;
        if (round_received == 0)
            round_first_ns = now;
        arrivals[round_received++] = now - round_sent_ns;
        return 0;
    }
    unexpected++;
    return 0;
}

static void count_close_code(int code)
{
    int k = code == 1000 ? 0 : code == 1001 ? 1 : code == 1006 ? 2 : code == 1011 ? 3 : 4;
    server_close_codes[k]++;
}

/* One complete frame; -1 when the connection is to be closed. */
static int on_frame(struct conn *c, uint8_t b0, const uint8_t *p, size_t n)
{
    bool fin = b0 & 0x80, rsv1 = b0 & 0x40;
    uint8_t op = b0 & 0x0f;
    if (op >= 8) {
        if (op == 9) {
            pings++;
            return send_control(c, 10, p, n);
        }
        if (op == 10)
            return 0;
        if (op == 8) {
            int code = n >= 2 ? (p[0] << 8 | p[1]) : 1005;
            count_close_code(code);
            if (!stopping) {
                note_error("connection %u: the server closed it with %d", c->idx, code);
                closed_early++;
            }
            if (!c->close_sent) {
                c->close_sent = true;
                send_control(c, 8, p, n >= 2 ? 2 : 0);
            }
            c->state = C_CLOSING;
            return -1;
        }
        protocol_errors++;
        return -1;
    }
    if (op == 0) {
        if (!c->in_msg) {
            protocol_errors++;
            note_error("connection %u: a continuation frame with no message", c->idx);
            return -1;
        }
        grow(&c->msg, &c->msg_cap, c->msg_len + n);
        memcpy(c->msg + c->msg_len, p, n);
        c->msg_len += n;
        if (!fin)
            return 0;
        c->in_msg = false;
        return on_message(c, c->msg_op, c->msg_comp, c->msg, c->msg_len);
    }
    if ((op != 1 && op != 2) || c->in_msg) {
        protocol_errors++;
        note_error("connection %u: unexpected opcode %u", c->idx, op);
        return -1;
    }
    if (fin)
        return on_message(c, op, rsv1, p, n);
    c->in_msg = true;
    c->msg_op = op;
    c->msg_comp = rsv1;
    c->msg_len = 0;
    grow(&c->msg, &c->msg_cap, n);
    memcpy(c->msg, p, n);
    c->msg_len = n;
    return 0;
}

/* Frames in p[0..n); returns the bytes consumed, or -1 to close. Server
 * frames are unmasked, so payloads are used where they lie. */
static long parse_frames(struct conn *c, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (n - off >= 2) {
        uint8_t b0 = p[off], b1 = p[off + 1];
        if (b1 & 0x80) {
            protocol_errors++;
            note_error("connection %u: a masked frame from the server", c->idx);
            return -1;
        }
        size_t hdr = 2;
        uint64_t len = b1 & 0x7f;
        if (len == 126) {
            if (n - off < 4)
                break;
            len = (uint64_t)p[off + 2] << 8 | p[off + 3];
            hdr = 4;
        } else if (len == 127) {
            if (n - off < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | p[off + 2 + i];
            hdr = 10;
        }
        if (len > MAX_MESSAGE) {
            protocol_errors++;
            return -1;
        }
        if (n - off < hdr + len)
            break;
        if (on_frame(c, b0, p + off + hdr, (size_t)len) < 0)
            return -1;
        off += hdr + (size_t)len;
    }
    return (long)off;
}

/* New input: the handshake's answer, then frames. */
static int consume(struct conn *c, uint8_t *p, size_t n)
{
    size_t off = 0;
    if (c->state == C_HANDSHAKE) {
        long h = parse_handshake(c, p, n);
        if (h <= 0)
            return h < 0 ? -1 : 1; /* 1: keep everything, the head is incomplete */
        off = (size_t)h;
    }
    if (c->state == C_OPEN && opt.http) {
        if (n > off) {
            unexpected++;
        }
        return 0;
    }
    long used = parse_frames(c, p + off, n - off);
    if (used < 0)
        return -1;
    off += (size_t)used;
    /* What is left is the start of a frame: kept for the next read. */
    if (off < n) {
        if (p == c->pend) {
            memmove(c->pend, c->pend + off, n - off);
            c->pend_len = n - off;
        } else {
            grow(&c->pend, &c->pend_cap, n - off);
            memcpy(c->pend, p + off, n - off);
            c->pend_len = n - off;
        }
    } else {
        c->pend_len = 0;
    }
    return 0;
}

static void on_readable(struct conn *c)
{
    for (;;) {
        ssize_t r = read(c->fd, rbuf, RBUF_SIZE);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
        }
        if (r <= 0) {
            if (c->state == C_HANDSHAKE) {
                fail_open(c, r == 0 ? "closed during the handshake" : strerror(errno));
                return;
            }
            if (c->state == C_OPEN && !stopping) {
                closed_early++;
                count_close_code(1006);
                note_error("connection %u: %s", c->idx,
                           r == 0 ? "closed by the server" : strerror(errno));
            }
            conn_close(c);
            return;
        }
        int rc;
        if (c->pend_len) {
            grow(&c->pend, &c->pend_cap, c->pend_len + (size_t)r);
            memcpy(c->pend + c->pend_len, rbuf, (size_t)r);
            c->pend_len += (size_t)r;
            size_t n = c->pend_len;
            rc = consume(c, c->pend, n);
            if (rc == 1)
                c->pend_len = n;
        } else {
            rc = consume(c, rbuf, (size_t)r);
            if (rc == 1) {
                grow(&c->pend, &c->pend_cap, (size_t)r);
                memcpy(c->pend, rbuf, (size_t)r);
                c->pend_len = (size_t)r;
            }
        }
        if (rc < 0) {
            if (c->state == C_OPEN && !stopping) {
                closed_early++;
            }
            conn_close(c);
            return;
        }
        if ((size_t)r < RBUF_SIZE)
            return; /* level-triggered: the rest, if any, comes with the next wait */
    }
}

static void on_event(struct conn *c, uint32_t ev)
{
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            fail_open(c, strerror(err));
            return;
        }
        send_handshake(c);
        return;
    }
    if ((ev & EPOLLOUT) && c->state != C_CLOSED) {
        if (conn_flush(c) < 0) {
            if (c->state == C_HANDSHAKE)
                fail_open(c, "write failed");
            else
                conn_close(c);
            return;
        }
    }
    if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->state != C_CLOSED)
        on_readable(c);
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->state = C_CLOSED;
    free(c->pend);
    free(c->msg);
    free(c->out);
    c->pend = c->msg = c->out = NULL;
    c->pend_len = c->pend_cap = c->msg_len = c->msg_cap = 0;
    c->out_len = c->out_off = c->out_cap = 0;
    if (c->inf) {
        inflateEnd(c->inf);
        free(c->inf);
        c->inf = NULL;
    }
}

/* ---- the loop ---------------------------------------------------------------- */

/* Waits for events until `deadline_ns` (0: one wait of up to 100 ms) or
 * until done() says so. */
static void loop_until(uint64_t deadline_ns, bool (*done)(void))
{
    struct epoll_event evs[512];
    for (;;) {
        if (stop_signal && opt.mode != MODE_IDLE)
            return;
        if (done && done())
            return;
        uint64_t now = now_ns();
        if (deadline_ns && now >= deadline_ns)
            return;
        int ms = 100;
        if (deadline_ns) {
            uint64_t left = deadline_ns - now;
            ms = (int)((left + 999999) / 1000000);
            if (ms > 100)
                ms = 100;
        }
        int n = epoll_wait(ep, evs, 512, ms);
        if (n < 0) {
            if (errno == EINTR) {
                if (stop_signal)
                    return;
                continue;
            }
            perror("wsload: epoll_wait");
            exit(1);
        }
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
        if (!deadline_ns && !done)
            return; /* one wait */
    }
}

static bool all_opened(void)
{
    return opened + failed_open >= nconns;
}

static bool round_complete(void)
{
    return round_received >= opt.conns;
}

static void open_all(void)
{
    t_begin_ns = now_ns();
    connect_more();
    loop_until(t_begin_ns + (uint64_t)(opt.timeout * 1e9), all_opened);
    t_open_ns = now_ns();
    if (!all_opened()) {
        note_error("%d of %d connections open after %.0f s", opened, nconns, opt.timeout);
        /* Those still in the handshake count as failed. */
        for (int i = 0; i < nconns; i++)
            if (conns[i].state == C_CONNECTING || conns[i].state == C_HANDSHAKE ||
                conns[i].state == C_NEW) {
                if (conns[i].state != C_NEW)
                    connecting--;
                failed_open++;
                conn_close(&conns[i]);
            }
    }
}

/* Sends a close frame on every open connection and waits a little for the
 * server to close them (so the server, not this client, holds TIME_WAIT). */
static bool none_open(void)
{
    for (int i = 0; i < nconns; i++)
        if (conns[i].state == C_OPEN || conns[i].state == C_CLOSING)
            return false;
    return true;
}

static void close_all(double wait_s)
{
    stopping = true;
    if (!opt.http) {
        static const uint8_t normal[2] = {0x03, 0xe8};
        for (int i = 0; i < nconns; i++) {
            struct conn *c = &conns[i];
            if (c->state == C_OPEN && !c->close_sent) {
                c->close_sent = true;
                c->state = C_CLOSING;
                if (send_control(c, 8, normal, 2) < 0)
                    conn_close(c);
            }
        }
        loop_until(now_ns() + (uint64_t)(wait_s * 1e9), none_open);
    }
    for (int i = 0; i < nconns; i++)
        conn_close(&conns[i]);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void run_broadcast(void)
{
    struct conn *sender = &conns[opt.conns];
    arrivals = calloc((size_t)opt.conns, sizeof *arrivals);
    rounds = calloc((size_t)opt.rounds + 1, sizeof *rounds);
    if (!arrivals || !rounds) {
        fprintf(stderr, "wsload: out of memory\n");
        exit(1);
    }
    loop_until(now_ns() + (uint64_t)(opt.settle * 1e9), NULL);
    client_cpu_start = cpu_seconds();
    for (int r = 1; r <= opt.rounds && !stop_signal; r++) {
        if (sender->state != C_OPEN) {
            note_error("the sender's connection is not open");
            break;
        }
        char text[256];
        char *msg = text;
        size_t len = (size_t)snprintf(text, sizeof text, "#round-%d# ", r);
        size_t want = opt.size > len ? opt.size : len;
        if (want > sizeof text) {
            msg = xrealloc(NULL, want);
            memcpy(msg, text, len);
        }
        for (size_t i = len; i < want; i++)
            msg[i] = (char)payload[i - len];
        size_t fn;
        uint8_t *f = build_frame(1, false, (uint8_t *)msg, want, &fn);
        if (msg != text)
            free(msg);
        cur_round = (uint32_t)r;
        round_received = 0;
        round_sent_ns = now_ns();
        conn_write(sender, f, fn);
        free(f);
        loop_until(round_sent_ns + (uint64_t)(opt.timeout * 1e9), round_complete);
        struct round_result *rr = &rounds[rounds_done++];
        rr->received = round_received;
        if (round_received > 0) {
            qsort(arrivals, (size_t)round_received, sizeof *arrivals, cmp_u64);
            rr->first_ms = (double)arrivals[0] / 1e6;
            rr->p50_ms = (double)arrivals[(round_received - 1) / 2] / 1e6;
            rr->p99_ms = (double)arrivals[(size_t)((round_received - 1) * 0.99)] / 1e6;
            rr->all_ms = (double)arrivals[round_received - 1] / 1e6;
        }
        if (round_received < opt.conns) {
            note_error("round %d: %d of %d receivers got the message within %.0f s", r,
                       round_received, opt.conns, opt.timeout);
            break;
        }
        /* A pause between rounds, the connections still served. */
        loop_until(now_ns() + (uint64_t)(opt.gap * 1e9), NULL);
    }
    client_cpu_end = cpu_seconds();
}

/* --events: a line when the measured window starts and ends, so a caller
 * can sample the server's CPU time over the same window. */
static void emit_event(const char *name)
{
    if (!opt.events)
        return;
    printf("{\"event\":\"%s\"}\n", name);
    fflush(stdout);
}

static void run_echo(void)
{
    uint64_t now = now_ns();
    running = true;
    t_warm_end_ns = now + (uint64_t)(opt.warmup * 1e9);
    t_end_ns = t_warm_end_ns + (uint64_t)(opt.duration * 1e9);
    for (int i = 0; i < nconns; i++)
        if (conns[i].state == C_OPEN)
            send_message(&conns[i], now_ns());
    loop_until(t_warm_end_ns, NULL);
    client_cpu_start = cpu_seconds();
    emit_event("measure_start");
    loop_until(t_end_ns, NULL);
    client_cpu_end = cpu_seconds();
    emit_event("measure_end");
    stopping = true;
}

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_signal = 1;
}

static bool stop_or_eof(void)
{
    if (stop_signal)
        return true;
    char b[256];
    ssize_t r = read(0, b, sizeof b);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR && errno != EWOULDBLOCK);
}

static void run_idle(void)
{
    printf("{\"event\":\"ready\",\"opened\":%d,\"failed\":%d,\"connect_s\":%.3f}\n", opened,
           failed_open, (double)(t_open_ns - t_begin_ns) / 1e9);
    fflush(stdout);
    int fl = fcntl(0, F_GETFL);
    if (fl >= 0)
        fcntl(0, F_SETFL, fl | O_NONBLOCK);
    client_cpu_start = cpu_seconds();
    while (!stop_or_eof())
        loop_until(0, NULL);
    client_cpu_end = cpu_seconds();
}

/* ---- output ------------------------------------------------------------------- */

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median_of(double *v, int n)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int print_result(void)
{
    static const char *const modes[] = {"echo", "broadcast", "idle"};
    int still_open = still_open_at_end;
    printf("{\"mode\":\"%s\",\"url\":", modes[opt.mode]);
    json_string(opt.url);
    printf(",\"http\":%s,\"connections\":%d,\"opened\":%d,\"failed_open\":%d,"
           "\"connect_s\":%.3f,\"size\":%zu,\"binary\":%s,\"deflate_offered\":%s,"
           "\"deflate_negotiated\":%llu,\"compressed_size\":%zu,\"extensions\":",
           opt.http ? "true" : "false", nconns, opened, failed_open,
           (double)(t_open_ns - t_begin_ns) / 1e9, opt.size, opt.binary ? "true" : "false",
           opt.deflate ? "true" : "false", (unsigned long long)deflate_count, compressed_size);
    json_string(extension_answer);
    printf(",\"first_status\":%d,\"handshake_status\":{\"1xx\":%llu,\"2xx\":%llu,\"3xx\":%llu,"
           "\"4xx\":%llu,\"5xx\":%llu,\"other\":%llu}",
           first_status, (unsigned long long)handshake_status[1],
           (unsigned long long)handshake_status[2], (unsigned long long)handshake_status[3],
           (unsigned long long)handshake_status[4], (unsigned long long)handshake_status[5],
           (unsigned long long)handshake_status[0]);
    double window = opt.mode == MODE_ECHO ? opt.duration : 0;
    double cpu = client_cpu_end - client_cpu_start;
    printf(",\"client_cpu_s\":%.3f", cpu);
    if (opt.mode == MODE_ECHO) {
        printf(",\"warmup_s\":%g,\"duration_s\":%g,\"round_trips\":%llu,\"rate\":%.1f,"
               "\"client_cpu_share\":%.3f",
               opt.warmup, opt.duration, (unsigned long long)round_trips,
               window > 0 ? (double)round_trips / window : 0, window > 0 ? cpu / window : 0);
        printf(",\"latency_us\":{\"mean\":%.2f,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,"
               "\"p99_9\":%.2f,\"max\":%.2f}",
               latency.count ? latency.sum / (double)latency.count / 1e3 : 0,
               hist_percentile(&latency, 50) / 1e3, hist_percentile(&latency, 90) / 1e3,
               hist_percentile(&latency, 99) / 1e3, hist_percentile(&latency, 99.9) / 1e3,
               (double)latency.max / 1e3);
    }
    if (opt.mode == MODE_BROADCAST) {
        printf(",\"receivers\":%d,\"rounds_asked\":%d,\"rounds\":[", opt.conns, opt.rounds);
        double *all = calloc((size_t)rounds_done + 1, sizeof *all);
        double *p50 = calloc((size_t)rounds_done + 1, sizeof *p50);
        int complete = 0;
        for (int i = 0; i < rounds_done; i++) {
            struct round_result *r = &rounds[i];
            printf("%s{\"received\":%d,\"first_ms\":%.3f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
                   "\"all_ms\":%.3f}",
                   i ? "," : "", r->received, r->first_ms, r->p50_ms, r->p99_ms, r->all_ms);
            if (r->received == opt.conns) {
                all[complete] = r->all_ms;
                p50[complete++] = r->p50_ms;
            }
        }
        printf("],\"rounds_complete\":%d,\"all_ms_median\":%.3f,\"p50_ms_median\":%.3f", complete,
               median_of(all, complete), median_of(p50, complete));
        free(all);
        free(p50);
    }
    if (opt.mode == MODE_IDLE)
        printf(",\"held_s\":%.3f", (double)(now_ns() - t_open_ns) / 1e9);
    printf(",\"still_open_at_end\":%d,\"pings_answered\":%llu,\"closed_early\":%d,"
           "\"mismatches\":%llu,\"unexpected_messages\":%llu,\"protocol_errors\":%llu,"
           "\"server_close_codes\":{\"1000\":%llu,\"1001\":%llu,\"1006\":%llu,\"1011\":%llu,"
           "\"other\":%llu},\"error\":",
           still_open, (unsigned long long)pings, closed_early, (unsigned long long)mismatches,
           (unsigned long long)unexpected, (unsigned long long)protocol_errors,
           (unsigned long long)server_close_codes[0], (unsigned long long)server_close_codes[1],
           (unsigned long long)server_close_codes[2], (unsigned long long)server_close_codes[3],
           (unsigned long long)server_close_codes[4]);
    if (first_error[0])
        json_string(first_error);
    else
        printf("null");
    printf("}\n");
    fflush(stdout);
    bool ok = failed_open == 0 && closed_early == 0 && mismatches == 0 && protocol_errors == 0;
    if (opt.mode == MODE_BROADCAST)
        ok = ok && rounds_done == opt.rounds && rounds_done > 0 &&
             rounds[rounds_done - 1].received == opt.conns;
    return ok ? 0 : 1;
}

/* ---- setup --------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: wsload [options] ws://HOST:PORT/PATH\n"
        "  -m, --mode MODE        echo (default), broadcast or idle\n"
        "  -c, --connections N    connections (broadcast: receivers, plus one sender) [1]\n"
        "  -d, --duration S       measured seconds (echo) [10]\n"
        "  -w, --warmup S         warm-up seconds before them (echo) [2]\n"
        "  -s, --size BYTES       message size [32]\n"
        "  -b, --binary           binary messages (default: text)\n"
        "  -z, --deflate          offer permessage-deflate\n"
        "      --offer TEXT       the Sec-WebSocket-Extensions offer [%s]\n"
        "      --require-deflate  a server that declines the offer is an error\n"
        "      --no-verify        do not compare echoes with what was sent\n"
        "  -r, --rounds N         broadcast rounds [5]\n"
        "      --gap S            pause between broadcast rounds [0.2]\n"
        "      --settle S         wait after connecting, before the first round [1]\n"
        "      --http             idle mode: HTTP/1.1 keep-alive connections, one GET each\n"
        "  -t, --timeout S        to open all connections; for one broadcast round [60]\n"
        "      --connect-batch N  handshakes in flight at once [256]\n"
        "      --src A,B,...      local IPv4 addresses to spread connections over\n"
        "      --events           echo: print {\"event\":\"measure_start\"} and\n"
        "                         {\"event\":\"measure_end\"} lines as the window opens and ends\n",
        opt.offer);
}

static int parse_url(const char *url)
{
    const char *p = url;
    if (strncmp(p, "ws://", 5) == 0)
        p += 5;
    else if (strncmp(p, "http://", 7) == 0)
        p += 7;
    else
        return -1;
    const char *colon = strchr(p, ':');
    const char *slash = strchr(p, '/');
    if (!colon || (slash && slash < colon) || (size_t)(colon - p) >= sizeof host)
        return -1;
    memcpy(host, p, (size_t)(colon - p));
    host[colon - p] = 0;
    port = atoi(colon + 1);
    if (port <= 0 || port > 65535)
        return -1;
    snprintf(path, sizeof path, "%s", slash ? slash : "/");
    addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return -1;
    return 0;
}

static void raise_nofile(int need)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t want = (rlim_t)need + 64;
    if (rl.rlim_cur >= want)
        return;
    if (rl.rlim_max < want) {
        struct rlimit up = {want, want};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return;
    }
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want)
        fprintf(stderr, "wsload: warning: RLIMIT_NOFILE is %llu, %d connections need %llu\n",
                (unsigned long long)rl.rlim_cur, need, (unsigned long long)want);
}

int main(int argc, char **argv)
{
    enum {
        O_OFFER = 256,
        O_REQUIRE,
        O_NOVERIFY,
        O_GAP,
        O_SETTLE,
        O_HTTP,
        O_BATCH,
        O_SRC,
        O_EVENTS
    };
    static const struct option longopts[] = {
        {"mode", required_argument, NULL, 'm'},
        {"connections", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"size", required_argument, NULL, 's'},
        {"binary", no_argument, NULL, 'b'},
        {"deflate", no_argument, NULL, 'z'},
        {"offer", required_argument, NULL, O_OFFER},
        {"require-deflate", no_argument, NULL, O_REQUIRE},
        {"no-verify", no_argument, NULL, O_NOVERIFY},
        {"rounds", required_argument, NULL, 'r'},
        {"gap", required_argument, NULL, O_GAP},
        {"settle", required_argument, NULL, O_SETTLE},
        {"http", no_argument, NULL, O_HTTP},
        {"timeout", required_argument, NULL, 't'},
        {"connect-batch", required_argument, NULL, O_BATCH},
        {"src", required_argument, NULL, O_SRC},
        {"events", no_argument, NULL, O_EVENTS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "m:c:d:w:s:bzr:t:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            if (strcmp(optarg, "echo") == 0)
                opt.mode = MODE_ECHO;
            else if (strcmp(optarg, "broadcast") == 0)
                opt.mode = MODE_BROADCAST;
            else if (strcmp(optarg, "idle") == 0)
                opt.mode = MODE_IDLE;
            else {
                fprintf(stderr, "wsload: unknown mode '%s'\n", optarg);
                return 2;
            }
            break;
        case 'c':
            opt.conns = atoi(optarg);
            break;
        case 'd':
            opt.duration = atof(optarg);
            break;
        case 'w':
            opt.warmup = atof(optarg);
            break;
        case 's':
            opt.size = (size_t)strtoull(optarg, NULL, 10);
            break;
        case 'b':
            opt.binary = true;
            break;
        case 'z':
            opt.deflate = true;
            break;
        case O_OFFER:
            opt.offer = optarg;
            opt.deflate = true;
            break;
        case O_REQUIRE:
            opt.require_deflate = true;
            opt.deflate = true;
            break;
        case O_NOVERIFY:
            opt.verify = false;
            break;
        case 'r':
            opt.rounds = atoi(optarg);
            break;
        case O_GAP:
            opt.gap = atof(optarg);
            break;
        case O_SETTLE:
            opt.settle = atof(optarg);
            break;
        case O_HTTP:
            opt.http = true;
            break;
        case 't':
            opt.timeout = atof(optarg);
            break;
        case O_BATCH:
            opt.batch = atoi(optarg);
            break;
        case O_SRC:
            opt.srcs = optarg;
            break;
        case O_EVENTS:
            opt.events = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    opt.url = argv[optind];
    if (parse_url(opt.url) < 0) {
        fprintf(stderr, "wsload: cannot use '%s' (ws://IPv4:PORT/PATH)\n", opt.url);
        return 2;
    }
    if (opt.conns < 1 || opt.size < 1 || opt.size > MAX_MESSAGE || opt.batch < 1 ||
        opt.rounds < 1 || opt.duration <= 0 || opt.warmup < 0 || opt.timeout <= 0) {
        fprintf(stderr, "wsload: bad option value\n");
        return 2;
    }
    if (opt.http && opt.mode != MODE_IDLE) {
        fprintf(stderr, "wsload: --http is for idle mode only\n");
        return 2;
    }
    if (opt.srcs) {
        for (char *s = strtok(opt.srcs, ","); s; s = strtok(NULL, ",")) {
            src_addrs = xrealloc(src_addrs, sizeof *src_addrs * (size_t)(nsrc + 1));
            if (inet_pton(AF_INET, s, &src_addrs[nsrc]) != 1) {
                fprintf(stderr, "wsload: bad --src address '%s'\n", s);
                return 2;
            }
            nsrc++;
        }
    }

    uint64_t seed;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = now_ns();
    rng_state ^= seed | 1;
    uint64_t mk;
    do
        mk = rng();
    while ((uint32_t)mk == 0);
    memcpy(mask_key, &mk, 4);
    /* The message itself is the same in every run. */
    uint64_t keep = rng_state;
    rng_state = 0x243f6a8885a308d3u;
    make_payload(opt.size);
    rng_state = keep;

    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    nconns = opt.conns + (opt.mode == MODE_BROADCAST ? 1 : 0);
    raise_nofile(nconns + 16);
    rbuf = xrealloc(NULL, RBUF_SIZE);
    conns = calloc((size_t)nconns, sizeof *conns);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || ep < 0) {
        perror("wsload");
        return 1;
    }
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].idx = (uint32_t)i;
        conns[i].state = C_NEW;
    }

    open_all();
    if (opened == nconns || opt.mode == MODE_IDLE) {
        if (opt.mode == MODE_ECHO)
            run_echo();
        else if (opt.mode == MODE_BROADCAST)
            run_broadcast();
        else
            run_idle();
    }
    for (int i = 0; i < nconns; i++)
        still_open_at_end += conns[i].state == C_OPEN;
    close_all(2.0);
    return print_result();
}
