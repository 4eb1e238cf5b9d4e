/* Unit tests for server/conn.c's output: bytes and file ranges (sent with
 * sendfile) leave in the order they were queued, across pipelined slots, a
 * slow reader gets the whole of a large file, and a file that turns out
 * shorter than promised closes the connection. The connection is one end of
 * a socketpair; the test reads the other end. */
#include "conn.h"

#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A protocol that consumes nothing and records how the connection ended. */
struct probe {
    bool closed;
    enum conn_end why;
    int writable;
};

static struct probe probe;

static size_t p_received(struct conn *c, const char *data, size_t len)
{
    (void)c;
    (void)data;
    return len;
}
static enum conn_input p_input(const struct conn *c)
{
    (void)c;
    return CONN_INPUT_OPEN;
}
static ev_tstamp p_deadline(const struct conn *c)
{
    (void)c;
    return 0;
}
static bool p_timeout(struct conn *c)
{
    (void)c;
    return true;
}
static void p_writable(struct conn *c)
{
    (void)c;
    probe.writable++;
}
static void p_shutdown(struct conn *c)
{
    (void)c;
}
static void p_closed(struct conn *c, enum conn_end why)
{
    (void)c;
    probe.closed = true;
    probe.why = why;
}

static const struct conn_proto probe_proto = {"probe",   p_received, p_input,    p_deadline,
                                              p_timeout, p_writable, p_shutdown, p_closed};

struct rig {
    struct ev_loop *loop;
    struct defer_queue defer;
    struct conn_ctx ctx;
    char scratch[4096];
    struct conn *c;
    int peer; /* the test's end */
};

static void rig_init(struct rig *g)
{
    memset(g, 0, sizeof *g);
    memset(&probe, 0, sizeof probe);
    g->loop = ev_loop_new(EVFLAG_AUTO);
    CHECK(g->loop != NULL);
    g->ctx.loop = g->loop;
    g->ctx.defer = &g->defer;
    g->ctx.timeout_write = 30;
    g->ctx.scratch = g->scratch;
    g->ctx.scratch_cap = sizeof g->scratch;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    struct addr peer = {0};
    g->c = conn_new(&g->ctx, sv[0], &peer);
    CHECK(g->c != NULL);
    conn_set_proto(g->c, &probe_proto, NULL);
    g->peer = sv[1];
}

static void rig_free(struct rig *g)
{
    conn_abort_all(&g->ctx);
    conn_flush_all(&g->ctx); /* frees connections closed while on the flush list */
    close(g->peer);
    ev_loop_destroy(g->loop);
}

/* Runs the loop (and the end-of-iteration flush) until the peer has read
 * want bytes or the connection closed; returns what it read. */
static size_t pump(struct rig *g, char *dst, size_t want)
{
    size_t got = 0;
    for (int spins = 0; spins < 100000 && got < want; spins++) {
        conn_flush_all(&g->ctx);
        ssize_t n = read(g->peer, dst + got, want - got);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0)
            break;
        if (g->ctx.nconns == 0 && errno == EAGAIN)
            break;
        ev_run(g->loop, EVRUN_NOWAIT);
    }
    return got;
}

/* A temporary file holding len bytes: byte i is 'a' + i % 26. */
static int temp_file(size_t len)
{
    char path[] = "/tmp/evicorn-test-conn-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    char block[4096];
    for (size_t off = 0; off < len;) {
        size_t k = len - off < sizeof block ? len - off : sizeof block;
        for (size_t i = 0; i < k; i++)
            block[i] = (char)('a' + (off + i) % 26);
        CHECK(write(fd, block, k) == (ssize_t)k);
        off += k;
    }
    return fd;
}

TEST(bytes_and_file_ranges_leave_in_order)
{
    struct rig g;
    rig_init(&g);
    struct conn_slot s = {0};
    conn_slot_push(g.c, &s);
    int fd = temp_file(100);
    CHECK(conn_slot_write(g.c, &s, "head:", 5) == 0);
    CHECK(conn_slot_send_file(g.c, &s, dup(fd), 2, 5) == 0);
    CHECK(conn_slot_write(g.c, &s, "|mid|", 5) == 0);
    CHECK(conn_slot_send_file(g.c, &s, dup(fd), 26, 3) == 0);
    CHECK(conn_slot_send_file(g.c, &s, dup(fd), 0, 0) == 0); /* an empty range */
    CHECK(conn_slot_write(g.c, &s, ":end", 4) == 0);
    CHECK(conn_output_full(g.c)); /* a file waits */
    char got[64];
    size_t n = pump(&g, got, 22);
    CHECK_EQ_MEM(got, n, "head:cdefg|mid|abc:end");
    CHECK(!conn_output_full(g.c));
    CHECK(!probe.closed);
    conn_slot_pop(g.c);
    close(fd);
    rig_free(&g);
}

TEST(a_file_queued_behind_the_front_waits_for_its_turn)
{
    struct rig g;
    rig_init(&g);
    struct conn_slot first = {0}, second = {0};
    conn_slot_push(g.c, &first);
    conn_slot_push(g.c, &second);
    int fd = temp_file(52);
    /* The second exchange answers first: its file and bytes are held. */
    CHECK(conn_slot_write(g.c, &second, "B<", 2) == 0);
    CHECK(conn_slot_send_file(g.c, &second, dup(fd), 0, 4) == 0);
    CHECK(conn_slot_write(g.c, &second, ">", 1) == 0);
    CHECK(conn_slot_full(g.c, &second));
    CHECK(conn_slot_write(g.c, &first, "A<", 2) == 0);
    CHECK(conn_slot_send_file(g.c, &first, dup(fd), 26, 2) == 0);
    CHECK(conn_slot_write(g.c, &first, ">", 1) == 0);
    CHECK(conn_slot_pop(g.c) == 0); /* the first is done: the second moves up */
    char got[64];
    size_t n = pump(&g, got, 12);
    CHECK_EQ_MEM(got, n, "A<ab>B<abcd>");
    conn_slot_pop(g.c);
    conn_slot_reset(&first);
    conn_slot_reset(&second);
    close(fd);
    rig_free(&g);
}

TEST(a_slow_reader_gets_a_large_file_whole)
{
    struct rig g;
    rig_init(&g);
    struct conn_slot s = {0};
    conn_slot_push(g.c, &s);
    size_t len = 3 * 1024 * 1024 + 17; /* several turns' worth (FILE_BURST) */
    int fd = temp_file(len);
    CHECK(conn_slot_send_file(g.c, &s, fd, 0, len) == 0);
    CHECK(conn_slot_write(g.c, &s, "!", 1) == 0);
    char *got = malloc(len + 1);
    CHECK(got != NULL);
    size_t n = 0;
    /* Read in small pieces: the socket fills, sendfile waits for room. */
    while (n < len + 1) {
        size_t k = pump(&g, got + n, (len + 1 - n) < 7000 ? len + 1 - n : 7000);
        if (k == 0)
            break;
        n += k;
    }
    CHECK_EQ_INT(n, len + 1);
    bool same = got[len] == '!';
    for (size_t i = 0; i < len && same; i++)
        same = got[i] == (char)('a' + i % 26);
    CHECK(same);
    CHECK(!probe.closed);
    CHECK(probe.writable > 0);
    free(got);
    conn_slot_pop(g.c);
    rig_free(&g);
}

TEST(a_file_shorter_than_promised_closes_the_connection)
{
    struct rig g;
    rig_init(&g);
    struct conn_slot s = {0};
    conn_slot_push(g.c, &s);
    int fd = temp_file(10);
    CHECK(conn_slot_write(g.c, &s, "x", 1) == 0);
    CHECK(conn_slot_send_file(g.c, &s, fd, 0, 1000) == 0); /* truncated to 10 */
    CHECK(conn_slot_write(g.c, &s, "never", 5) == 0);
    conn_slot_pop(g.c);
    char got[64];
    size_t n = pump(&g, got, sizeof got);
    CHECK_EQ_MEM(got, n, "xabcdefghij");
    CHECK(probe.closed);
    CHECK(probe.why == CONN_END_ERROR);
    rig_free(&g);
}

TEST(closing_with_files_queued_closes_their_descriptors)
{
    struct rig g;
    rig_init(&g);
    struct conn_slot first = {0}, second = {0};
    conn_slot_push(g.c, &first);
    conn_slot_push(g.c, &second);
    int fd = temp_file(10);
    int a = dup(fd), b = dup(fd);
    CHECK(conn_slot_send_file(g.c, &first, a, 0, 10) == 0);
    CHECK(conn_slot_send_file(g.c, &second, b, 0, 10) == 0);
    conn_abort(g.c);
    conn_slot_reset(&second); /* the protocol resets its slots */
    CHECK(fcntl(a, F_GETFD) < 0 && errno == EBADF);
    CHECK(fcntl(b, F_GETFD) < 0 && errno == EBADF);
    close(fd);
    rig_free(&g);
}

CHECK_MAIN()
