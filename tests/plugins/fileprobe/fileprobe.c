/* fileprobe: a test-only plugin for the ABI's files (1.5), built twice
 * (FILEPROBE_VERSION "1" and "2") for the hot-reload test. Every route
 * names its file with ?path=P (used as given). A call that fails answers
 * 418 {"rc": <the code>}, so the test sees exactly what the host returned.
 *
 * Routes (async unless _sync):
 *   GET  /fp/respond[_sync]?path=P[&offset=N&length=N&type=T
 *        &precompressed=1&novalidators=1]
 *                               respond_file by path, with an extra
 *                               header x-probe: <version>
 *   GET  /fp/respond_fd[_sync]?path=P[&offset=N&length=N]
 *                               respond_file with an fd the plugin opens
 *                               and closes right after the call
 *   GET  /fp/sendfile[_sync]?path=P[&offset=N&count=N]
 *                               start (chunked), "<<", send_file (more),
 *                               ">>" to end; the plugin closes its fd at
 *                               once after send_file
 *   GET  /fp/sendfile_last?path=P[&offset=N&count=N]
 *                               start with the Content-Length of the
 *                               part, then send_file with more == 0
 *   GET  /fp/read?path=P&max=N  file_read: the bytes, with x-size, x-mode
 *                               (octal) and x-mtime
 *   POST /fp/write?path=P[&mode=replace|append|exclusive|both]
 *                               file_write of the request body:
 *                               {"rc", "len", "size", "mode"}
 *   GET  /fp/stat?path=P        file_stat: {"rc", "size", "mtime", "mode"}
 *   GET  /fp/pending?op=read|write|stat&path=P
 *                               starts the operation and waits for it;
 *                               for the tests where the client leaves
 *                               first (the status the continuation got is
 *                               counted in /fp/stats)
 *   GET  /fp/block_sync?s=S     holds a pool thread for S seconds
 *   GET  /fp/errors             results of calls that must fail
 *   GET  /fp/errors_sync        file_read/_write/_stat from a pool thread
 *   GET  /fp/stats              counters, the version and open fds
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define EVICORN_PLUGIN_MIN_ABI_MINOR 5
#include <evicorn/sdk.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef FILEPROBE_VERSION
#define FILEPROBE_VERSION "1"
#endif

struct probe {
    long started;   /* file operations started */
    long completed; /* their continuations, whatever the status */
    long cancelled; /* ... with EVICORN_ECANCELED */
    int last_status;
    char last_version[16]; /* the version whose code ran the last continuation */
};

static struct probe *probe_of(evicorn_request *req)
{
    return evicorn_state(req);
}

static int startup(void **state, char *err, size_t errlen)
{
    struct probe *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *state = p;
    return 0;
}

static void shutdown_probe(void *state)
{
    free(state);
}

static void respond_rc(evicorn_request *req, int rc)
{
    evicorn_respond_json(req, 418, json_pack("{s:i}", "rc", rc));
}

/* ?name as a new string (free() it), or NULL. */
static char *query(evicorn_request *req, const char *name)
{
    return evicorn_query_str(req, name, NULL, NULL);
}

/* ---- respond_file ---- */

static void respond_by_path(evicorn_request *req, void *data)
{
    (void)data;
    char *path = query(req, "path");
    char *type = query(req, "type");
    evicorn_header h = {"x-probe", 7, FILEPROBE_VERSION, strlen(FILEPROBE_VERSION)};
    evicorn_file_response f = {
        .size = sizeof f,
        .path = path,
        .fd = -1,
        .offset = evicorn_query_int(req, "offset", 0, NULL),
        .length = evicorn_query_int(req, "length", -1, NULL),
        .content_type = type,
        .headers = &h,
        .nheaders = 1,
        .flags =
            (evicorn_query_bool(req, "precompressed", 0, NULL) ? EVICORN_FILE_PRECOMPRESSED : 0) |
            (evicorn_query_bool(req, "novalidators", 0, NULL) ? EVICORN_FILE_NO_VALIDATORS : 0),
    };
    int rc = path ? evicorn_respond_file(req, &f) : EVICORN_EINVAL;
    if (rc != 0)
        respond_rc(req, rc);
    free(path);
    free(type);
}

static void respond_by_fd(evicorn_request *req, void *data)
{
    (void)data;
    char *path = query(req, "path");
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) : -1;
    free(path);
    evicorn_file_response f = {
        .size = sizeof f,
        .fd = fd,
        .offset = evicorn_query_int(req, "offset", 0, NULL),
        .length = evicorn_query_int(req, "length", -1, NULL),
    };
    int rc = evicorn_respond_file(req, &f);
    if (fd >= 0)
        close(fd); /* the host has its own */
    if (rc != 0)
        respond_rc(req, rc);
}

/* ---- send_file ---- */

static void send_file_body(evicorn_request *req, int last)
{
    char *path = query(req, "path");
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    free(path);
    long long offset = evicorn_query_int(req, "offset", 0, NULL);
    long long count = evicorn_query_int(req, "count", -1, NULL);
    if (fd < 0) {
        respond_rc(req, EVICORN_ENOENT);
        return;
    }
    int rc;
    if (last) {
        /* The whole response is the file's part: its length is known. */
        off_t end = lseek(fd, 0, SEEK_END);
        long long len = count >= 0 ? count : (long long)end - offset;
        rc = evicorn_start(req, 200, NULL, 0, len);
        if (rc == 0)
            rc = evicorn_send_file(req, fd, offset, count, 0);
    } else {
        rc = evicorn_start(req, 200, NULL, 0, -1);
        if (rc == 0)
            rc = evicorn_send(req, "<<", 2, 1);
        if (rc == 0)
            rc = evicorn_send_file(req, fd, offset, count, 1);
        close(fd); /* the host has its own */
        fd = -1;
        if (rc == 0)
            rc = evicorn_send(req, ">>", 2, 0);
    }
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        evicorn_log(req, EVICORN_LOG_WARNING, "send_file: %d", rc);
}

static void sendfile_route(evicorn_request *req, void *data)
{
    (void)data;
    send_file_body(req, 0);
}

static void sendfile_last(evicorn_request *req, void *data)
{
    (void)data;
    send_file_body(req, 1);
}

/* ---- file_read, file_write, file_stat ---- */

static void count_done(evicorn_request *req, int status)
{
    struct probe *p = probe_of(req);
    p->completed++;
    p->last_status = status;
    if (status == EVICORN_ECANCELED)
        p->cancelled++;
    snprintf(p->last_version, sizeof p->last_version, "%s", FILEPROBE_VERSION);
}

static void read_done(evicorn_request *req, void *ud, int status, const evicorn_file_result *res)
{
    (void)ud;
    count_done(req, status);
    if (status != 0) {
        if (status != EVICORN_ECANCELED)
            respond_rc(req, status);
        return;
    }
    char size[32], mode[16], mtime[48];
    snprintf(size, sizeof size, "%lld", (long long)res->size);
    snprintf(mode, sizeof mode, "%o", (unsigned)res->mode);
    snprintf(mtime, sizeof mtime, "%.6f", res->mtime);
    evicorn_header h[] = {
        {"x-size", 6, size, strlen(size)},
        {"x-mode", 6, mode, strlen(mode)},
        {"x-mtime", 7, mtime, strlen(mtime)},
        {"content-type", 12, "application/octet-stream", 24},
    };
    evicorn_respond(req, 200, h, 4, res->data, res->len);
}

static void read_route(evicorn_request *req, void *data)
{
    (void)data;
    char *path = query(req, "path");
    long long max = evicorn_query_int(req, "max", 1 << 20, NULL);
    int rc = evicorn_file_read(req, path, (size_t)max, read_done, NULL);
    free(path);
    if (rc != 0)
        respond_rc(req, rc);
    else
        probe_of(req)->started++;
}

static json_t *result_json(int status, const evicorn_file_result *res)
{
    if (status != 0)
        return json_pack("{s:i}", "rc", status);
    return json_pack("{s:i,s:I,s:I,s:f,s:i}", "rc", 0, "len", (json_int_t)res->len, "size",
                     (json_int_t)res->size, "mtime", res->mtime, "mode", (int)res->mode);
}

static void result_done(evicorn_request *req, void *ud, int status, const evicorn_file_result *res)
{
    (void)ud;
    count_done(req, status);
    if (status != EVICORN_ECANCELED)
        evicorn_respond_json(req, 200, result_json(status, res));
}

static unsigned write_flags(evicorn_request *req)
{
    char *mode = query(req, "mode");
    unsigned flags = 0;
    if (mode && strcmp(mode, "append") == 0)
        flags = EVICORN_FILE_APPEND;
    else if (mode && strcmp(mode, "exclusive") == 0)
        flags = EVICORN_FILE_EXCLUSIVE;
    else if (mode && strcmp(mode, "both") == 0)
        flags = EVICORN_FILE_APPEND | EVICORN_FILE_EXCLUSIVE;
    free(mode);
    return flags;
}

static void write_body_ready(evicorn_request *req, void *ud, const char *data, size_t len, int more,
                             int status)
{
    (void)ud;
    (void)more;
    if (status != 0)
        return;
    char *path = query(req, "path");
    int rc = evicorn_file_write(req, path, data, len, write_flags(req), result_done, NULL);
    free(path);
    if (rc != 0)
        respond_rc(req, rc);
    else
        probe_of(req)->started++;
}

static void write_route(evicorn_request *req, void *data)
{
    (void)data;
    int rc = evicorn_read_body(req, write_body_ready, NULL);
    if (rc != 0)
        respond_rc(req, rc);
}

static void stat_route(evicorn_request *req, void *data)
{
    (void)data;
    char *path = query(req, "path");
    int rc = evicorn_file_stat(req, path, result_done, NULL);
    free(path);
    if (rc != 0)
        respond_rc(req, rc);
    else
        probe_of(req)->started++;
}

static void pending_route(evicorn_request *req, void *data)
{
    (void)data;
    char *op = query(req, "op");
    char *path = query(req, "path");
    int rc = EVICORN_EINVAL;
    if (op && strcmp(op, "read") == 0)
        rc = evicorn_file_read(req, path, 1 << 20, result_done, NULL);
    else if (op && strcmp(op, "write") == 0)
        rc = evicorn_file_write(req, path, "pending", 7, 0, result_done, NULL);
    else if (op && strcmp(op, "stat") == 0)
        rc = evicorn_file_stat(req, path, result_done, NULL);
    free(op);
    free(path);
    if (rc != 0)
        respond_rc(req, rc);
    else
        probe_of(req)->started++;
}

static void block_sync(evicorn_request *req, void *data)
{
    (void)data;
    double s = evicorn_query_float(req, "s", 1.0, NULL);
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
    evicorn_respond_text(req, 200, NULL, "unblocked");
}

/* ---- errors ---- */

static void never(evicorn_request *req, void *ud, int status, const evicorn_file_result *res)
{
    (void)ud;
    (void)status;
    (void)res;
    evicorn_log(req, EVICORN_LOG_ERROR, "a refused operation ran its continuation");
}

static void errors_route(evicorn_request *req, void *data)
{
    (void)data;
    const evicorn_api *api = evicorn_host_api();
    evicorn_file_response no_file = {.size = sizeof no_file, .fd = -1};
    evicorn_file_response bad_offset = {
        .size = sizeof bad_offset, .path = "/dev/null", .offset = -1};
    json_t *r = json_pack(
        "{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}", "respond_file_null",
        api->respond_file(req, NULL), "respond_file_bad_fd", api->respond_file(req, &no_file),
        "respond_file_negative_offset", api->respond_file(req, &bad_offset), "send_file_bad_fd",
        api->send_file(req, -1, 0, -1, 1), "read_null_path",
        api->file_read(req, NULL, 10, never, NULL), "read_no_fn",
        api->file_read(req, "/dev/null", 10, NULL, NULL), "write_bad_flags",
        api->file_write(req, "/tmp/x", "x", 1, 0x80, never, NULL), "write_null_data",
        api->file_write(req, "/tmp/x", NULL, 1, 0, never, NULL), "stat_empty_path",
        api->file_stat(req, "", never, NULL), "stat_null_path",
        api->file_stat(req, NULL, never, NULL));
    evicorn_respond_json(req, 200, r);
}

static void errors_sync(evicorn_request *req, void *data)
{
    (void)data;
    json_t *r =
        json_pack("{s:i,s:i,s:i}", "read", evicorn_file_read(req, "/dev/null", 10, never, NULL),
                  "write", evicorn_file_write(req, "/tmp/x", "x", 1, 0, never, NULL), "stat",
                  evicorn_file_stat(req, "/dev/null", never, NULL));
    evicorn_respond_json(req, 200, r);
}

/* ---- stats ---- */

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own */
}

static void stats_route(evicorn_request *req, void *data)
{
    (void)data;
    struct probe *p = probe_of(req);
    evicorn_respond_json(req, 200,
                         json_pack("{s:I,s:I,s:I,s:i,s:s,s:s,s:i,s:i}", "started",
                                   (json_int_t)p->started, "completed", (json_int_t)p->completed,
                                   "cancelled", (json_int_t)p->cancelled, "last_status",
                                   p->last_status, "last_version", p->last_version, "version",
                                   FILEPROBE_VERSION, "fds", open_fds(), "pid", (int)getpid()));
}

static const evicorn_route routes[] = {
    EVICORN_GET("/fp/respond", respond_by_path),
    EVICORN_GET_SYNC("/fp/respond_sync", respond_by_path),
    EVICORN_GET("/fp/respond_fd", respond_by_fd),
    EVICORN_GET_SYNC("/fp/respond_fd_sync", respond_by_fd),
    EVICORN_GET("/fp/sendfile", sendfile_route),
    EVICORN_GET_SYNC("/fp/sendfile_sync", sendfile_route),
    EVICORN_GET("/fp/sendfile_last", sendfile_last),
    EVICORN_GET("/fp/read", read_route),
    EVICORN_POST("/fp/write", write_route),
    EVICORN_GET("/fp/stat", stat_route),
    EVICORN_GET("/fp/pending", pending_route),
    EVICORN_GET_SYNC("/fp/block_sync", block_sync),
    EVICORN_GET("/fp/errors", errors_route),
    EVICORN_GET_SYNC("/fp/errors_sync", errors_sync),
    EVICORN_GET("/fp/stats", stats_route),
};

EVICORN_PLUGIN("fileprobe", FILEPROBE_VERSION, routes, startup, shutdown_probe)
