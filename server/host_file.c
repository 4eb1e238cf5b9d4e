/* host_file: files for plugins (ABI 1.5); see host.h.
 *
 * respond_file and send_file hand a file to the response: the bytes leave
 * with sendfile(2) and are never read into memory. Either thread: a sync
 * handler's call is carried to the loop (host_xcall.c). respond_file is
 * file_response.c's work (the static file server's: validators,
 * conditional requests, ranges, precompressed siblings); the path is the
 * plugin's choice, so it is opened as given, not confined to a folder.
 *
 * file_read, file_write and file_stat are blocking I/O for async handlers:
 * each is an offload (host_call.c) whose work is the host's own. That
 * gives them what every offload has: the call, and with it the plugin
 * version whose continuation will run, stays open while the I/O is
 * pending; the continuation runs through call_run; a client that left
 * meanwhile makes it EVICORN_ECANCELED (the I/O itself is not interrupted:
 * a write that started finishes). Everything the work touches (the path,
 * the bytes to write, the bytes read) belongs to the operation, so
 * nothing of the plugin's is read on the pool.
 *
 * A replacing write is atomic and durable: the bytes go to a new hidden
 * file beside the target (".<name>.tmpXXXXXX"), which is fsync'ed, renamed
 * over the target, and the folder fsync'ed; a reader sees the old file or
 * the new one, never a part, even after a crash. Appending and exclusive
 * writes go to the file itself and are not synced (a log's appends would
 * pay a disk flush each). */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "container.h"
#include "file_response.h"
#include "host_internal.h"
#include "request.h"

#define KNOWN_WRITE_FLAGS (EVICORN_FILE_APPEND | EVICORN_FILE_EXCLUSIVE)

/* ---- errors ---- */

/* What the ABI says about a failed system call (errno values). */
static int abi_errno(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
        return EVICORN_ENOENT;
    case EACCES:
    case EPERM:
    case EISDIR:
    case ENXIO: /* a FIFO with no reader, a device */
    case ELOOP:
    case EXDEV:
        return EVICORN_EPERM;
    case EEXIST:
        return EVICORN_EEXIST;
    case ENOMEM:
        return EVICORN_ENOMEM;
    case ENAMETOOLONG:
    case EINVAL:
        return EVICORN_EINVAL;
    default:
        return EVICORN_EIO;
    }
}

/* file_response.c and request.c return negative errno values; the ones a
 * plugin can act on pass as they are. */
static int abi_result(int rc)
{
    switch (rc) {
    case 0:
    case -EPIPE:
    case -EALREADY:
    case -EINVAL:
    case -ENOMEM:
        return rc;
    default:
        return rc < 0 ? abi_errno(-rc) : rc;
    }
}

/* ---- respond_file and send_file (either thread) ---- */

struct file_xcall {
    struct xcall x;
    evicorn_file_response file; /* respond_file: the plugin's, as this host knows it */
    int fd;                     /* send_file */
    int64_t offset;
    int64_t count;
};

/* A duplicate of the plugin's fd (close-on-exec), which the response
 * owns, after checking it is a regular file open for reading. */
static int dup_regular(int fd, struct stat *st)
{
    if (fd < 0 || fstat(fd, st) < 0)
        return EVICORN_EINVAL;
    int mode = fcntl(fd, F_GETFL);
    if (mode < 0)
        return EVICORN_EINVAL;
    if (!S_ISREG(st->st_mode) || (mode & O_ACCMODE) == O_WRONLY)
        return EVICORN_EPERM;
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return copy < 0 ? abi_errno(errno) : copy;
}

static int do_respond_file(struct xcall *x)
{
    struct file_xcall *fx = container_of(x, struct file_xcall, x);
    const evicorn_file_response *f = &fx->file;
    struct request *r = x->c->r;
    if (f->offset < 0 || (f->nheaders && !f->headers))
        return EVICORN_EINVAL;
    if (request_response_started(r))
        return EVICORN_EALREADY;

    struct stat st;
    const char *encoding = NULL;
    int fd;
    if (f->path) {
        bool precompressed = (f->flags & EVICORN_FILE_PRECOMPRESSED) != 0;
        fd = file_open(r, AT_FDCWD, f->path, precompressed, false, &st, &encoding);
        if (fd < 0)
            return fd == -ENOENT ? EVICORN_ENOENT : abi_errno(-fd);
    } else {
        fd = dup_regular(f->fd, &st);
        if (fd < 0)
            return fd;
    }

    struct file_response_opts o;
    file_response_opts_init(&o);
    o.offset = f->offset;
    o.length = f->length;
    o.content_type = f->content_type;
    o.name = f->path;
    o.content_encoding = encoding;
    o.vary_encoding = f->path && (f->flags & EVICORN_FILE_PRECOMPRESSED);
    o.validators = !(f->flags & EVICORN_FILE_NO_VALIDATORS);
    o.headers = (const struct http_header *)f->headers;
    o.nheaders = f->nheaders;
    return abi_result(file_respond(r, fd, &st, &o));
}

int api_respond_file(evicorn_request *req, const evicorn_file_response *file)
{
    if (!file || file->size < sizeof file->size)
        return EVICORN_EINVAL;
    struct file_xcall fx = {.x = {.fn = do_respond_file, .c = call_of(req)}};
    /* An older plugin's shorter struct: the rest reads as zero. */
    size_t n = file->size < sizeof fx.file ? file->size : sizeof fx.file;
    memcpy(&fx.file, file, n);
    if (n <= offsetof(evicorn_file_response, fd) && !fx.file.path)
        return EVICORN_EINVAL;
    return xcall_run(&fx.x);
}

static void send_file_drained(struct request *r, void *ud)
{
    (void)r;
    xcall_finish(ud, 0);
}

static int do_send_file(struct xcall *x)
{
    struct file_xcall *fx = container_of(x, struct file_xcall, x);
    struct request *r = x->c->r;
    if (fx->offset < 0)
        return EVICORN_EINVAL;
    struct stat st;
    int fd = dup_regular(fx->fd, &st);
    if (fd < 0)
        return fd;
    int64_t count = fx->count;
    if (count < 0)
        count = st.st_size > fx->offset ? st.st_size - fx->offset : 0;
    int rc;
    if (count == 0) {
        /* Nothing of the file: just the end of the body when more == 0. */
        close(fd);
        rc = request_send(r, NULL, 0, x->more != 0);
    } else {
        rc = request_send_file(r, fd, (uint64_t)fx->offset, (uint64_t)count, x->more != 0);
    }
    rc = abi_result(rc);
    /* Backpressure for a blocking handler, as for send. */
    if (x->wait && rc == 0 && x->more && !request_writable(r) && !request_disconnected(r)) {
        request_on_drain(r, send_file_drained, x);
        return XCALL_LATER;
    }
    return rc;
}

int api_send_file(evicorn_request *req, int fd, int64_t offset, int64_t count, int more)
{
    struct file_xcall fx = {.x = {.fn = do_send_file, .c = call_of(req), .more = more},
                            .fd = fd,
                            .offset = offset,
                            .count = count};
    return xcall_run(&fx.x);
}

/* ---- file_read, file_write, file_stat (offloads) ---- */

enum file_op_kind { FILE_READ, FILE_WRITE, FILE_STAT };

struct file_op {
    enum file_op_kind kind;
    evicorn_file_fn fn;
    void *ud;
    unsigned flags;  /* file_write */
    size_t max_size; /* file_read */
    char *data;      /* file_read: what was read (malloc'ed); file_write: the copy below */
    size_t len;      /* file_write: bytes to write */
    int status;      /* the work's result */
    evicorn_file_result res;
    char path[]; /* then, for file_write, the bytes */
};

static void fill_result(evicorn_file_result *res, const struct stat *st)
{
    res->size = st->st_size;
    res->mtime = (double)st->st_mtim.tv_sec + st->st_mtim.tv_nsec / 1e9;
    res->mode = st->st_mode;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads the rest of fd into a buffer of at most max bytes (NUL-terminated
 * for convenience, the NUL not counted); -EMSGSIZE when there is more.
 * hint is the size fstat gave: usually the buffer is right at once, and a
 * one-byte read confirms the end (files in /proc say 0 and grow it). */
static int read_bounded(int fd, size_t hint, size_t max, char **out, size_t *outlen)
{
    size_t cap = hint > 0 ? (hint < max ? hint : max) : (max < 4096 ? max : 4096);
    char *buf = malloc(cap + 1);
    if (!buf)
        return -ENOMEM;
    size_t len = 0;
    int rc = 0;
    for (;;) {
        char probe;
        bool full = len == cap;
        ssize_t n = full ? read(fd, &probe, 1) : read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : 0;
            break;
        }
        if (!full) {
            len += (size_t)n;
            continue;
        }
        if (cap == max) {
            rc = -EMSGSIZE;
            break;
        }
        size_t grown = cap < max / 2 ? (cap < 2048 ? 4096 : cap * 2) : max;
        char *bigger = realloc(buf, (grown < max ? grown : max) + 1);
        if (!bigger) {
            rc = -ENOMEM;
            break;
        }
        buf = bigger;
        cap = grown < max ? grown : max;
        buf[len++] = probe;
    }
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;
}

/* O_NONBLOCK: opening a FIFO must not wait for its other end (it is then
 * refused as not a regular file). */
static int open_regular(const char *path, int flags, struct stat *st)
{
    int fd = open(path, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644);
    if (fd < 0)
        return -errno;
    if (fstat(fd, st) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return -EACCES;
    }
    return fd;
}

static int file_read_work(struct file_op *op)
{
    struct stat st;
    int fd = open_regular(op->path, O_RDONLY, &st);
    if (fd < 0)
        return fd;
    int rc = st.st_size >= 0 && (uint64_t)st.st_size > op->max_size
                 ? -EMSGSIZE
                 : read_bounded(fd, (size_t)st.st_size, op->max_size, &op->data, &op->res.len);
    close(fd);
    if (rc < 0)
        return rc;
    fill_result(&op->res, &st);
    op->res.data = op->data;
    op->res.size = (int64_t)op->res.len; /* the whole file, as read */
    return 0;
}

/* The folder of path ("." for a bare name) into dir, and a hidden
 * temporary name beside path into tmp: "<dir>/.<name>.tmpXXXXXX". */
static int temp_name_for(const char *path, char *tmp, size_t size, char *dir, size_t dirsize)
{
    static atomic_uint counter;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (*base == '\0')
        return -EISDIR;
    int dlen = slash ? (slash == path ? 1 : (int)(slash - path)) : 1;
    int n = snprintf(dir, dirsize, "%.*s", dlen, slash ? path : ".");
    if (n < 0 || (size_t)n >= dirsize)
        return -ENAMETOOLONG;
    /* Unlikely to collide; O_EXCL turns a collision into another try. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned v = (unsigned)ts.tv_nsec ^ ((unsigned)getpid() << 12) ^ atomic_fetch_add(&counter, 1);
    n = snprintf(tmp, size, "%.*s.%s.tmp%06x", (int)(base - path), path, base, v & 0xffffffu);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 && errno != EINVAL ? -errno : 0;
    close(fd);
    return rc;
}

static int replace_file(struct file_op *op, struct stat *st)
{
    char tmp[4096], dir[4096];
    int fd = -1, rc = 0;
    for (int tries = 0; fd < 0 && tries < 16; tries++) {
        rc = temp_name_for(op->path, tmp, sizeof tmp, dir, sizeof dir);
        if (rc < 0)
            return rc;
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0 && errno != EEXIST)
            return -errno;
    }
    if (fd < 0)
        return -EEXIST;
    rc = write_all(fd, op->data, op->len);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (rc == 0 && fstat(fd, st) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, op->path) < 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    /* The rename itself reaches the disk with the folder. */
    return fsync_dir(dir);
}

static int file_write_work(struct file_op *op)
{
    struct stat st;
    int rc;
    if (op->flags & KNOWN_WRITE_FLAGS) {
        int flags = O_WRONLY | O_CREAT;
        flags |= op->flags & EVICORN_FILE_APPEND ? O_APPEND : O_TRUNC;
        if (op->flags & EVICORN_FILE_EXCLUSIVE)
            flags |= O_EXCL;
        int fd = open_regular(op->path, flags, &st);
        if (fd < 0)
            return fd;
        rc = write_all(fd, op->data, op->len);
        if (rc == 0 && fstat(fd, &st) < 0)
            rc = -errno;
        if (close(fd) < 0 && rc == 0)
            rc = -errno;
    } else {
        rc = replace_file(op, &st);
    }
    if (rc < 0)
        return rc;
    fill_result(&op->res, &st);
    op->res.len = op->len;
    return 0;
}

static int file_stat_work(struct file_op *op)
{
    struct stat st;
    if (stat(op->path, &st) < 0)
        return -errno;
    fill_result(&op->res, &st);
    return 0;
}

/* On a pool thread. */
static void file_op_work(void *ud)
{
    struct file_op *op = ud;
    int rc = op->kind == FILE_READ    ? file_read_work(op)
             : op->kind == FILE_WRITE ? file_write_work(op)
                                      : file_stat_work(op);
    op->status = rc == -EMSGSIZE ? EVICORN_EMSGSIZE : rc < 0 ? abi_errno(-rc) : 0;
}

/* On the loop thread, inside call_run (the offload's continuation). */
static void file_op_done(evicorn_request *req, void *ud, int status)
{
    struct file_op *op = ud;
    int rc = status ? status : op->status;
    op->fn(req, op->ud, rc, rc ? NULL : &op->res);
    if (op->kind == FILE_READ)
        free(op->data);
    free(op);
}

/* A new operation owning copies of path and data[0..len). */
static int file_op_start(evicorn_request *req, enum file_op_kind kind, const char *path,
                         const void *data, size_t len, evicorn_file_fn fn, void *ud,
                         struct file_op **out)
{
    struct call *c = call_of(req);
    if (!host_on_loop(c->host))
        return EVICORN_EPERM;
    if (!path || !*path || !fn || (len && !data))
        return EVICORN_EINVAL;
    size_t plen = strlen(path) + 1;
    if (len > SIZE_MAX - sizeof(struct file_op) - plen)
        return EVICORN_ENOMEM;
    struct file_op *op = calloc(1, sizeof *op + plen + len);
    if (!op)
        return EVICORN_ENOMEM;
    op->kind = kind;
    op->fn = fn;
    op->ud = ud;
    memcpy(op->path, path, plen);
    if (len) {
        op->data = op->path + plen;
        memcpy(op->data, data, len);
    }
    op->len = len;
    *out = op;
    return 0;
}

static int file_op_submit(evicorn_request *req, struct file_op *op)
{
    int rc = api_offload(req, file_op_work, file_op_done, op);
    if (rc < 0)
        free(op);
    return rc;
}

int api_file_read(evicorn_request *req, const char *path, size_t max_size, evicorn_file_fn fn,
                  void *ud)
{
    struct file_op *op;
    int rc = file_op_start(req, FILE_READ, path, NULL, 0, fn, ud, &op);
    if (rc < 0)
        return rc;
    op->max_size = max_size;
    return file_op_submit(req, op);
}

int api_file_write(evicorn_request *req, const char *path, const void *data, size_t len,
                   unsigned flags, evicorn_file_fn fn, void *ud)
{
    if (flags & ~KNOWN_WRITE_FLAGS)
        return EVICORN_EINVAL;
    struct file_op *op;
    int rc = file_op_start(req, FILE_WRITE, path, data, len, fn, ud, &op);
    if (rc < 0)
        return rc;
    op->flags = flags;
    return file_op_submit(req, op);
}

int api_file_stat(evicorn_request *req, const char *path, evicorn_file_fn fn, void *ud)
{
    struct file_op *op;
    int rc = file_op_start(req, FILE_STAT, path, NULL, 0, fn, ud, &op);
    if (rc < 0)
        return rc;
    return file_op_submit(req, op);
}
