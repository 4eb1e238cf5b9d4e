/* static: --static folders; see static.h. */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "file_response.h"
#include "log.h"
#include "metrics.h"
#include "mime.h"
#include "open_beneath.h"
#include "request.h"
#include "static_spec.h"

struct static_mount {
    char *prefix; /* without a trailing slash: "" for "/" */
    size_t prefix_len;
    const char *dir; /* as given, for log lines */
    int dirfd;       /* O_PATH | O_DIRECTORY */
};

struct static_mounts {
    struct static_mount *m; /* longest prefix first */
    size_t n;
    long max_age;
};

/* ---- mounts ---- */

static int longest_first(const void *a, const void *b)
{
    const struct static_mount *x = a, *y = b;
    return x->prefix_len < y->prefix_len ? 1 : x->prefix_len > y->prefix_len ? -1 : 0;
}

int static_mounts_open(const char *const *specs, size_t n, long max_age, struct static_mounts **out)
{
    *out = NULL;
    /* Content types serve plugins' file responses too: load them now, not
     * during a request. */
    mime_init();
    if (n == 0)
        return 0;
    struct static_mounts *ms = calloc(1, sizeof *ms);
    if (!ms || !(ms->m = calloc(n, sizeof *ms->m))) {
        free(ms);
        log_error("out of memory");
        return -1;
    }
    ms->max_age = max_age;
    for (size_t i = 0; i < n; i++) {
        char err[256];
        size_t plen;
        const char *dir;
        if (static_spec_parse(specs[i], &plen, &dir, err, sizeof err) < 0) {
            log_error("%s", err);
            goto fail;
        }
        struct static_mount *m = &ms->m[ms->n];
        m->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (m->dirfd < 0) {
            log_error("--static: cannot open the folder '%s': %s", dir, strerror(errno));
            goto fail;
        }
        ms->n++;
        m->dir = dir;
        m->prefix_len = plen;
        if (!(m->prefix = strndup(specs[i], plen))) {
            log_error("out of memory");
            goto fail;
        }
    }
    qsort(ms->m, ms->n, sizeof *ms->m, longest_first);
    *out = ms;
    return 0;
fail:
    static_mounts_free(ms);
    return -1;
}

void static_mounts_free(struct static_mounts *ms)
{
    if (!ms)
        return;
    for (size_t i = 0; i < ms->n; i++) {
        close(ms->m[i].dirfd);
        free(ms->m[i].prefix);
    }
    free(ms->m);
    free(ms);
}

/* ---- serving ---- */

static const struct static_mount *owner(const struct static_mounts *ms, const char *path,
                                        size_t len)
{
    for (size_t i = 0; i < ms->n; i++) {
        const struct static_mount *m = &ms->m[i];
        if (len >= m->prefix_len && memcmp(path, m->prefix, m->prefix_len) == 0 &&
            (len == m->prefix_len || path[m->prefix_len] == '/'))
            return m;
    }
    return NULL;
}

static bool has_encoded_slash(const char *raw, size_t len)
{
    for (size_t i = 0; i + 2 < len; i++)
        if (raw[i] == '%' && raw[i + 1] == '2' && (raw[i + 2] == 'f' || raw[i + 2] == 'F'))
            return true;
    return false;
}

/* The path below the mount as a relative path (segments joined by one
 * slash; empty segments dropped, as "//" means nothing more than "/").
 * *folder says the request ended in a slash. -1 when the path is refused:
 * a "." or ".." segment, a backslash, a NUL, an encoded slash (which would
 * make one segment two), or too long. */
static int relative_path(const struct request *r, const struct static_mount *m, char *rel,
                         size_t cap, bool *folder)
{
    size_t raw_len, len;
    const char *raw = request_raw_path(r, &raw_len);
    const char *path = request_path(r, &len);
    if (has_encoded_slash(raw, raw_len))
        return -1;
    const char *rest = path + m->prefix_len;
    size_t n = len - m->prefix_len;
    if (memchr(rest, '\\', n) || memchr(rest, '\0', n))
        return -1;
    *folder = n > 0 && rest[n - 1] == '/';
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && rest[j] != '/')
            j++;
        size_t seg = j - i;
        if ((seg == 1 && rest[i] == '.') || (seg == 2 && rest[i] == '.' && rest[i + 1] == '.'))
            return -1;
        if (seg) {
            if (k + seg + 2 > cap)
                return -1;
            if (k)
                rel[k++] = '/';
            memcpy(rel + k, rest + i, seg);
            k += seg;
        }
        i = j + 1;
    }
    rel[k] = '\0';
    return 0;
}

static void respond_not_found(struct request *r)
{
    request_respond_error(r, 404, "Not Found");
}

/* A failure to open as a status: everything that says something about
 * the file is the same 404; only a shortage of the moment differs. */
static void respond_open_error(struct request *r, const struct static_mount *m, int err)
{
    switch (-err) {
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EAGAIN:
        log_warning("--static %s: cannot open a file: %s", m->prefix_len ? m->prefix : "/",
                    strerror(-err));
        request_respond_error(r, 503, NULL);
        return;
    default:
        respond_not_found(r);
    }
}

static void respond_method_not_allowed(struct request *r)
{
    static const char body[] = "{\"detail\":\"Method Not Allowed\"}";
    static const struct http_header h[2] = {{"content-type", 12, "application/json", 16},
                                            {"allow", 5, "GET, HEAD", 9}};
    request_respond(r, 405, h, 2, body, sizeof body - 1);
}

/* 301 to the same path with a trailing slash, the query kept. Built from
 * the path as received (already a valid target) with runs of slashes made
 * one, so "//host" can never become a Location naming another host. */
static void redirect_to_folder(struct request *r)
{
    size_t raw_len, qlen;
    const char *raw = request_raw_path(r, &raw_len);
    const char *query = request_query(r, &qlen);
    struct buf loc = {0};
    char *p = buf_reserve(&loc, raw_len + qlen + 2);
    if (!p) {
        request_respond_error(r, 503, NULL);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < raw_len; i++)
        if (!(raw[i] == '/' && k && p[k - 1] == '/'))
            p[k++] = raw[i];
    if (!k || p[k - 1] != '/')
        p[k++] = '/';
    if (qlen) {
        p[k++] = '?';
        memcpy(p + k, query, qlen);
        k += qlen;
    }
    struct http_header h = {"location", 8, p, k};
    request_respond(r, 301, &h, 1, "", 0);
    buf_free(&loc);
}

static bool is_folder(const struct static_mount *m, const char *rel)
{
    int fd = open_beneath(m->dirfd, *rel ? rel : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static bool has_index(const struct static_mount *m, struct request *r, const char *rel)
{
    char path[PATH_MAX];
    struct stat st;
    const char *enc;
    int n = snprintf(path, sizeof path, "%s%sindex.html", rel, *rel ? "/" : "");
    if (n < 0 || (size_t)n >= sizeof path)
        return false;
    int fd = file_open(r, m->dirfd, path, false, true, &st, &enc);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* Answers r with the file at rel: 0, or file_open's error with nothing
 * sent. */
static int serve_file(const struct static_mounts *ms, const struct static_mount *m,
                      struct request *r, const char *rel)
{
    struct stat st;
    const char *encoding;
    int fd = file_open(r, m->dirfd, rel, true, true, &st, &encoding);
    if (fd < 0)
        return fd;
    struct file_response_opts o;
    file_response_opts_init(&o);
    o.name = rel;
    o.content_encoding = encoding;
    o.vary_encoding = true;
    o.max_age = ms->max_age;
    int rc = file_respond(r, fd, &st, &o);
    if (rc < 0 && !request_response_started(r))
        request_respond_error(r, 503, NULL);
    return 0;
}

bool static_serve(const struct static_mounts *ms, struct request *r)
{
    if (!ms)
        return false;
    size_t len;
    const char *path = request_path(r, &len);
    const struct static_mount *m = owner(ms, path, len);
    if (!m)
        return false;
    r->metrics_route = metrics_route(m->prefix_len ? m->prefix : "/");
    size_t mlen;
    const char *method = request_method(r, &mlen);
    if (!(mlen == 3 && memcmp(method, "GET", 3) == 0) && !r->is_head) {
        respond_method_not_allowed(r);
        return true;
    }
    char rel[PATH_MAX];
    bool folder;
    if (relative_path(r, m, rel, sizeof rel - sizeof "/index.html", &folder) < 0) {
        respond_not_found(r);
        return true;
    }
    if (!folder && !*rel) {
        /* The mount's own path, without its slash: its folder. */
        if (has_index(m, r, rel))
            redirect_to_folder(r);
        else
            respond_not_found(r);
        return true;
    }
    if (folder) {
        size_t k = strlen(rel);
        snprintf(rel + k, sizeof rel - k, "%sindex.html", k ? "/" : "");
    }
    int err = serve_file(ms, m, r, rel);
    if (err == 0)
        return true;
    /* Not a regular file: a folder asked for without its slash? */
    if (!folder && err == -EACCES && is_folder(m, rel) && has_index(m, r, rel))
        redirect_to_folder(r);
    else
        respond_open_error(r, m, err);
    return true;
}
