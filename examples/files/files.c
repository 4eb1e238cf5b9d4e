/* files: download and upload files kept in one folder (ABI 1.5).
 *
 *   GET  /files/{name:path}
 *       -> the file, sent by the server with sendfile(2): Content-Type
 *          from the extension, ETag and Last-Modified, 304/412 for
 *          conditional requests, 206/416 for Range, HEAD. 404 for a
 *          missing file, a folder, or a name that is not allowed.
 *   POST /files/{name}
 *       -> stores the request body as the file `name`, replacing it
 *          atomically, and answers 201 {"name":"...","size":N}. 413 for a
 *          body over the limit: at once when Content-Length says so,
 *          without reading it, else as soon as a chunked body passes it.
 *
 * The folder is EVICORN_FILES_DIR (default ./files-data; `make run` uses
 * build/files-data), created at startup when missing; the upload limit is
 * EVICORN_FILES_MAX_UPLOAD bytes (default 10 MiB).
 *
 * Names come from the client, and respond_file opens whatever path it is
 * given, so the plugin checks each name before joining it to the folder:
 * segment by segment (evicorn_file_name_ok: no empty, "." or ".."
 * segment, no leading '/', no backslash, NUL or control character), and
 * no segment may start with '.' (hidden files stay hidden, and so do the
 * server's temporary files of an upload in progress). By its text such a
 * name cannot leave the folder; a symbolic link inside the folder is its
 * owner's doing and is followed.
 *
 * An upload is read whole (bounded by the limit) and written with one
 * replacing file_write: the server writes a temporary file beside the
 * target, syncs it and renames it over the target, so a reader never
 * sees half an upload under the final name, even if the client leaves or
 * the machine stops midway. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EVICORN_PLUGIN_MIN_ABI_MINOR 5
#include <evicorn/sdk.h>

#define DEFAULT_DIR        "./files-data"
#define DEFAULT_MAX_UPLOAD (10u << 20)

struct files {
    char *dir;
    size_t max_upload;
};

/* One upload in progress: the body so far, then the write. */
struct upload {
    struct files *f;
    char *path;
    char *name;
    evicorn_buf body;
};

static int plugin_startup(void **state, char *err, size_t errlen)
{
    const char *dir = getenv("EVICORN_FILES_DIR");
    const char *max = getenv("EVICORN_FILES_MAX_UPLOAD");
    struct files *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = strdup(dir && *dir ? dir : DEFAULT_DIR))) {
        free(f);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f->max_upload = DEFAULT_MAX_UPLOAD;
    if (max && *max) {
        long long n;
        if (evicorn_parse_int(max, strlen(max), &n) < 0 || n < 0) {
            snprintf(err, errlen, "EVICORN_FILES_MAX_UPLOAD: not a byte count: %s", max);
            goto fail;
        }
        f->max_upload = (size_t)n;
    }
    if (mkdir(f->dir, 0755) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", f->dir, strerror(errno));
        goto fail;
    }
    *state = f;
    return 0;
fail:
    free(f->dir);
    free(f);
    return -1;
}

static void plugin_shutdown(void *state)
{
    struct files *f = state;
    free(f->dir);
    free(f);
}

/* Whether name may name a file of the folder (see the top of this file). */
static int name_allowed(evicorn_str name)
{
    if (!evicorn_file_name_ok(name.ptr, name.len))
        return 0;
    for (size_t i = 0; i < name.len; i++)
        if (name.ptr[i] == '.' && (i == 0 || name.ptr[i - 1] == '/'))
            return 0;
    return 1;
}

/* "<dir>/<name>" (free() it), or NULL when out of memory. */
static char *path_in(const struct files *f, evicorn_str name)
{
    size_t dlen = strlen(f->dir);
    char *path = malloc(dlen + 1 + name.len + 1);
    if (!path)
        return NULL;
    memcpy(path, f->dir, dlen);
    path[dlen] = '/';
    memcpy(path + dlen + 1, name.ptr, name.len);
    path[dlen + 1 + name.len] = '\0';
    return path;
}

static void download(evicorn_request *req, void *data)
{
    (void)data;
    struct files *f = evicorn_state(req);
    evicorn_str name = evicorn_path_str(req, "name", NULL);
    if (!name_allowed(name)) {
        evicorn_respond_error(req, 404, NULL);
        return;
    }
    char *path = path_in(f, name);
    if (!path) {
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    int rc = evicorn_respond_file_path(req, path, 0);
    free(path);
    if (rc == EVICORN_ENOENT || rc == EVICORN_EPERM)
        evicorn_respond_error(req, 404, NULL);
    else if (rc < 0 && rc != EVICORN_EPIPE && rc != EVICORN_EALREADY)
        evicorn_respond_error(req, 500, NULL);
}

static void upload_free(struct upload *u)
{
    evicorn_buf_free(&u->body);
    free(u->path);
    free(u->name);
    free(u);
}

static int respond_too_large(evicorn_request *req, const struct files *f)
{
    char detail[96];
    snprintf(detail, sizeof detail, "Upload larger than %zu bytes", f->max_upload);
    return evicorn_respond_error(req, 413, detail);
}

static void stored(evicorn_request *req, void *ud, int status, const evicorn_file_result *res)
{
    struct upload *u = ud;
    if (status == 0)
        evicorn_respond_json(
            req, 201, json_pack("{s:s,s:I}", "name", u->name, "size", (json_int_t)res->size));
    else if (status != EVICORN_ECANCELED)
        evicorn_respond_error(req, 500, "Cannot store the file");
    upload_free(u);
}

static void body_chunk(evicorn_request *req, void *ud, const char *data, size_t len, int more,
                       int status)
{
    struct upload *u = ud;
    if (status == EVICORN_EMSGSIZE) {
        respond_too_large(req, u->f);
    } else if (status == 0 && u->body.len + len > u->f->max_upload) {
        respond_too_large(req, u->f); /* the rest of the body is not read */
    } else if (status == 0 && evicorn_buf_append(&u->body, data, len) < 0) {
        evicorn_respond_error(req, 500, NULL);
    } else if (status == 0 && more) {
        if (evicorn_receive(req, body_chunk, u) < 0) {
            evicorn_respond_error(req, 500, NULL);
            upload_free(u);
        }
        return;
    } else if (status == 0) {
        /* The whole body: one atomic replacing write. */
        const char *bytes = u->body.data ? u->body.data : "";
        if (evicorn_file_write(req, u->path, bytes, u->body.len, 0, stored, u) == 0)
            return;
        evicorn_respond_error(req, 500, "Cannot store the file");
    }
    upload_free(u);
}

static void upload(evicorn_request *req, void *data)
{
    (void)data;
    struct files *f = evicorn_state(req);
    evicorn_str name = evicorn_path_str(req, "name", NULL);
    if (!name_allowed(name)) {
        evicorn_respond_error(req, 404, NULL);
        return;
    }
    /* Refused before a byte of the body is read (no 100 Continue either). */
    evicorn_str cl;
    long long announced;
    if (evicorn_header_get(req, "content-length", &cl) == 0 &&
        evicorn_parse_int(cl.ptr, cl.len, &announced) == 0 && announced >= 0 &&
        (unsigned long long)announced > f->max_upload) {
        respond_too_large(req, f);
        return;
    }
    struct upload *u = calloc(1, sizeof *u);
    if (!u || !(u->path = path_in(f, name)) || !(u->name = evicorn_strdup(name))) {
        if (u)
            upload_free(u);
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    u->f = f;
    if (evicorn_receive(req, body_chunk, u) < 0) {
        upload_free(u);
        evicorn_respond_error(req, 500, NULL);
    }
}

static const evicorn_route routes[] = {
    EVICORN_GET("/files/{name:path}", download),
    EVICORN_POST("/files/{name}", upload),
};

EVICORN_PLUGIN("files", "1.0.0", routes, plugin_startup, plugin_shutdown)
