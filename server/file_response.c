/* file_response: answering a request with a file; see file_response.h.
 *
 * The rules of HTTP it applies live in pure files, each tested alone:
 * http_cond (ETag, dates, preconditions, If-Range), http_range (Range) and
 * http_accept (Accept-Encoding). This file reads the request's headers,
 * asks them, and writes the response through request.h: the head with an
 * exact Content-Length, then the body as file ranges that leave with
 * sendfile(2) when the connection's turn comes. */
#include "file_response.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "http_accept.h"
#include "http_cond.h"
#include "http_range.h"
#include "mime.h"
#include "open_beneath.h"
#include "request.h"

/* Headers a file response adds itself (at most), before the caller's. */
#define OWN_HEADERS_MAX 10

void file_response_opts_init(struct file_response_opts *o)
{
    *o = (struct file_response_opts){.length = -1, .validators = true, .max_age = -1};
}

/* ---- opening ---- */

static int open_path(int dirfd, const char *path, bool beneath)
{
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused
     * after fstat); it changes nothing for a regular file. O_NOCTTY: a
     * terminal device must not become the worker's. */
    int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    if (!beneath) {
        int fd;
        do
            fd = openat(dirfd, path, flags);
        while (fd < 0 && errno == EINTR);
        return fd < 0 ? -errno : fd;
    }
    /* No step may leave dirfd, symlinks included (open_beneath.h says
     * why that is race-free). */
    return open_beneath(dirfd, path, flags);
}

/* Opens a regular file; the errors file_open promises. */
static int open_regular(int dirfd, const char *path, bool beneath, struct stat *st)
{
    int fd = open_path(dirfd, path, beneath);
    if (fd == -ENOTDIR || fd == -ENAMETOOLONG)
        return -ENOENT;
    if (fd == -EPERM)
        return -EACCES;
    if (fd < 0)
        return fd;
    if (fstat(fd, st) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return -EACCES;
    }
    return fd;
}

static bool older(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int file_open(struct request *r, int dirfd, const char *path, bool precompressed, bool beneath,
              struct stat *st, const char **encoding)
{
    *encoding = NULL;
    int fd = open_regular(dirfd, path, beneath, st);
    if (fd < 0 || !precompressed)
        return fd;
    size_t alen = 0;
    const char *accept = request_header(r, "accept-encoding", &alen);
    enum http_coding order[HTTP_CODINGS];
    size_t n = http_accept_encoding_order(accept, alen, order);
    static const char *const suffixes[] = {[HTTP_CODING_BR] = ".br", [HTTP_CODING_GZIP] = ".gz"};
    static const char *const names[] = {[HTTP_CODING_BR] = "br", [HTTP_CODING_GZIP] = "gzip"};
    size_t plen = strlen(path);
    char sibling[PATH_MAX];
    for (size_t i = 0; i < n && order[i] != HTTP_CODING_IDENTITY; i++) {
        if (plen + 4 > sizeof sibling)
            break;
        memcpy(sibling, path, plen);
        memcpy(sibling + plen, suffixes[order[i]], 4);
        struct stat sst;
        int sfd = open_regular(dirfd, sibling, beneath, &sst);
        if (sfd < 0)
            continue;
        /* A sibling older than the file was made from an earlier version. */
        if (older(&sst.st_mtim, &st->st_mtim)) {
            close(sfd);
            continue;
        }
        close(fd);
        *st = sst;
        *encoding = names[order[i]];
        return sfd;
    }
    return fd;
}

/* ---- responding ---- */

struct header_list {
    struct http_header *h;
    size_t n;
};

static void add_header(struct header_list *l, const char *name, const char *value, size_t len)
{
    l->h[l->n++] = (struct http_header){name, strlen(name), value, len};
}

static void add_headers(struct header_list *l, const struct file_response_opts *o)
{
    for (size_t i = 0; i < o->nheaders; i++)
        l->h[l->n++] = o->headers[i];
}

/* A response without content: 304, 412, 416, and a HEAD's. */
static int respond_empty(struct request *r, int fd, int status, const struct header_list *l,
                         int64_t content_length)
{
    close(fd);
    int rc = request_start(r, status, l->h, l->n, content_length);
    if (rc < 0)
        return rc;
    return request_send(r, NULL, 0, false);
}

static int respond_whole(struct request *r, int fd, int status, const struct header_list *l,
                         uint64_t off, uint64_t len)
{
    if (r->is_head || len == 0)
        return respond_empty(r, fd, status, l, (int64_t)len);
    int rc = request_start(r, status, l->h, l->n, (int64_t)len);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return request_send_file(r, fd, off, len, false);
}

/* A boundary no file is likely to contain, different for each response. */
static void make_boundary(char out[17])
{
    static uint64_t counter;
    uint64_t v;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ ++counter * 0x9e3779b97f4a7c15ULL ^
            (uint64_t)getpid();
    }
    snprintf(out, 17, "%016llx", (unsigned long long)v);
}

static void close_all(int *fds, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++)
        close(fds[i]);
}

/* 206 multipart/byteranges (RFC 9110 14.6): each part's head (boundary,
 * Content-Type, Content-Range) is made first, so the Content-Length is
 * exact before anything is sent; each part's bytes are a file range of
 * their own, on a descriptor of their own (request_send_file takes it). */
static int respond_multipart(struct request *r, int fd, struct header_list *l, uint64_t off,
                             uint64_t size, const struct http_range *ranges, size_t n,
                             const char *type)
{
    char boundary[17];
    make_boundary(boundary);
    struct buf heads = {0};
    size_t ends[HTTP_RANGES_MAX];
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        char part[512];
        int k =
            snprintf(part, sizeof part,
                     "%s--%s\r\ncontent-type: %s\r\ncontent-range: bytes %llu-%llu/%llu\r\n\r\n",
                     i ? "\r\n" : "", boundary, type, (unsigned long long)ranges[i].first,
                     (unsigned long long)ranges[i].last, (unsigned long long)size);
        if (k < 0 || (size_t)k >= sizeof part || buf_append(&heads, part, (size_t)k) < 0) {
            buf_free(&heads);
            close(fd);
            return k < 0 || (size_t)k >= sizeof part ? -EINVAL : -ENOMEM;
        }
        ends[i] = buf_size(&heads);
        total += ranges[i].last - ranges[i].first + 1;
    }
    size_t body_heads = buf_size(&heads);
    if (buf_append_str(&heads, "\r\n--") < 0 || buf_append_str(&heads, boundary) < 0 ||
        buf_append_str(&heads, "--\r\n") < 0) {
        buf_free(&heads);
        close(fd);
        return -ENOMEM;
    }
    total += buf_size(&heads);

    /* All descriptors before the head: running out of them then means
     * nothing was sent. */
    int fds[HTTP_RANGES_MAX];
    fds[0] = fd;
    for (size_t i = 1; i < n; i++) {
        fds[i] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (fds[i] < 0) {
            int err = -errno;
            close_all(fds, 0, i);
            buf_free(&heads);
            return err;
        }
    }
    char ctype[64];
    int k = snprintf(ctype, sizeof ctype, "multipart/byteranges; boundary=%s", boundary);
    add_header(l, "content-type", ctype, (size_t)k);
    int rc = request_start(r, 206, l->h, l->n, (int64_t)total);
    size_t sent = 0, start = 0;
    for (; rc == 0 && sent < n; sent++) {
        const char *p = buf_start(&heads);
        rc = request_send(r, p + start, ends[sent] - start, true);
        start = ends[sent];
        if (rc < 0)
            break;
        uint64_t len = ranges[sent].last - ranges[sent].first + 1;
        rc = request_send_file(r, fds[sent], off + ranges[sent].first, len, true);
        fds[sent] = -1; /* taken, even on error */
    }
    close_all(fds, sent, n);
    if (rc == 0)
        rc = request_send(r, buf_start(&heads) + body_heads, buf_size(&heads) - body_heads, false);
    buf_free(&heads);
    return rc;
}

static bool method_is(const struct request *r, const char *m)
{
    size_t len;
    const char *method = request_method(r, &len);
    return len == strlen(m) && memcmp(method, m, len) == 0;
}

static void read_preconditions(struct request *r, struct http_preconditions *p)
{
    p->if_match = request_header(r, "if-match", &p->if_match_len);
    p->if_none_match = request_header(r, "if-none-match", &p->if_none_match_len);
    p->if_modified_since = request_header(r, "if-modified-since", &p->if_modified_since_len);
    p->if_unmodified_since = request_header(r, "if-unmodified-since", &p->if_unmodified_since_len);
}

/* The response's own strings, alive until it is started. */
struct file_meta {
    char etag[HTTP_ETAG_MAX];
    char last_modified[32];
    char cache_control[40];
    char content_range[80];
};

int file_respond(struct request *r, int fd, const struct stat *st,
                 const struct file_response_opts *o)
{
    if (o->offset < 0) {
        close(fd);
        return -EINVAL;
    }
    /* The representation: [off, off + size) of the file, clipped to it. */
    uint64_t file_size = st->st_size > 0 ? (uint64_t)st->st_size : 0;
    uint64_t off = (uint64_t)o->offset < file_size ? (uint64_t)o->offset : file_size;
    uint64_t size = file_size - off;
    if (o->length >= 0 && (uint64_t)o->length < size)
        size = (uint64_t)o->length;
    const char *type = o->content_type ? o->content_type : mime_type_for(o->name);
    if (!type)
        type = "application/octet-stream";

    struct http_header local[OWN_HEADERS_MAX + 8];
    struct header_list l = {local, 0};
    if (o->nheaders > 8 && !(l.h = malloc((OWN_HEADERS_MAX + o->nheaders) * sizeof *l.h))) {
        close(fd);
        return -ENOMEM;
    }
    struct file_meta m;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    int64_t mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    struct http_validators v = {.etag = NULL, .last_modified = -1};
    if (o->validators) {
        v.etag_len = http_etag_format(m.etag, (uint64_t)st->st_ino, size, mtime_ns, off);
        v.etag = m.etag;
        /* Never later than the response's Date (RFC 9110 8.8.2.1). */
        v.last_modified = st->st_mtim.tv_sec < now.tv_sec ? st->st_mtim.tv_sec : now.tv_sec;
        http_date_format(v.last_modified, m.last_modified);
    }
    /* What a 304 repeats of the 200 (RFC 9110 15.4.5). */
    if (v.etag)
        add_header(&l, "etag", v.etag, v.etag_len);
    if (o->max_age >= 0) {
        int k = snprintf(m.cache_control, sizeof m.cache_control, "max-age=%ld", o->max_age);
        add_header(&l, "cache-control", m.cache_control, (size_t)k);
    }
    if (o->vary_encoding)
        add_header(&l, "vary", "Accept-Encoding", 15);
    add_headers(&l, o);

    int rc;
    bool get = method_is(r, "GET");
    struct http_preconditions pre;
    read_preconditions(r, &pre);
    enum http_cond_result cond =
        o->validators ? http_preconditions_eval(&pre, &v, get || r->is_head, now.tv_sec)
                      : HTTP_COND_PROCEED;
    if (cond == HTTP_COND_NOT_MODIFIED) {
        rc = respond_empty(r, fd, 304, &l, -1);
        goto out;
    }
    if (cond == HTTP_COND_FAILED) {
        l.n = 0;
        rc = respond_empty(r, fd, 412, &l, 0);
        goto out;
    }
    if (v.etag)
        add_header(&l, "last-modified", m.last_modified, 29);

    /* Range: GET only (RFC 9110 14.2), and only with validators, which an
     * If-Range needs and a client resuming a download relies on. */
    size_t rlen = 0, ilen = 0;
    const char *range = o->validators && get ? request_header(r, "range", &rlen) : NULL;
    const char *if_range = range ? request_header(r, "if-range", &ilen) : NULL;
    struct http_range ranges[HTTP_RANGES_MAX];
    size_t nranges = 0;
    enum http_range_result rr = HTTP_RANGE_IGNORE;
    if (range && (!if_range || http_if_range_holds(if_range, ilen, &v, mtime_ns, now_ns)))
        rr = http_range_parse(range, rlen, size, ranges, &nranges);
    if (rr == HTTP_RANGE_UNSATISFIABLE) {
        int k = snprintf(m.content_range, sizeof m.content_range, "bytes */%llu",
                         (unsigned long long)size);
        l.n = 0;
        add_header(&l, "content-range", m.content_range, (size_t)k);
        rc = respond_empty(r, fd, 416, &l, 0);
        goto out;
    }
    if (o->content_encoding)
        add_header(&l, "content-encoding", o->content_encoding, strlen(o->content_encoding));
    if (rr == HTTP_RANGE_OK && nranges > 1) {
        rc = respond_multipart(r, fd, &l, off, size, ranges, nranges, type);
        goto out;
    }
    add_header(&l, "content-type", type, strlen(type));
    if (rr == HTTP_RANGE_OK) {
        int k = snprintf(m.content_range, sizeof m.content_range, "bytes %llu-%llu/%llu",
                         (unsigned long long)ranges[0].first, (unsigned long long)ranges[0].last,
                         (unsigned long long)size);
        add_header(&l, "content-range", m.content_range, (size_t)k);
        rc = respond_whole(r, fd, 206, &l, off + ranges[0].first,
                           ranges[0].last - ranges[0].first + 1);
        goto out;
    }
    if (o->validators)
        add_header(&l, "accept-ranges", "bytes", 5);
    rc = respond_whole(r, fd, 200, &l, off, size);
out:
    if (l.h != local)
        free(l.h);
    return rc;
}
