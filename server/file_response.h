/* file_response: answers a request with a file, the way a static file
 * server does, whoever asked for it (a --static folder, a plugin's
 * respond_file, the ASGI bridge's pathsend).
 *
 * Given an open regular file, it decides the response from the request's
 * method and headers: 200, 206 with one range, 206 multipart/byteranges
 * with several, 416, 304 or 412, in RFC 9110 section 13.2.2's order of
 * precedence (If-Match, If-Unmodified-Since, If-None-Match,
 * If-Modified-Since, then Range with If-Range). The validators are a strong
 * ETag made from the file's inode, size and modification time, and
 * Last-Modified. The body leaves with sendfile(2) through
 * request_send_file; nothing of the file is read into memory.
 *
 * Loop thread only. */
#ifndef EVICORN_FILE_RESPONSE_H
#define EVICORN_FILE_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "http.h"

struct request;

struct file_response_opts {
    /* The representation within the file: offset and length (length < 0:
     * to the end of the file). Ranges are within it. */
    int64_t offset;
    int64_t length;
    /* NULL: looked up from name's extension (mime.h), else
     * application/octet-stream. */
    const char *content_type;
    const char *name; /* the file's name, for the type; may be NULL */
    /* The file is this encoding of the representation ("br", "gzip"):
     * sent as Content-Encoding. NULL for none. */
    const char *content_encoding;
    /* Send Vary: Accept-Encoding (a representation chosen by encoding). */
    bool vary_encoding;
    /* ETag, Last-Modified, conditional requests and ranges. */
    bool validators;
    /* Cache-Control: max-age=N when >= 0. */
    long max_age;
    /* More headers for the response (after the ones made here). */
    const struct http_header *headers;
    size_t nheaders;
};

/* Fills o with the defaults: the whole file, validators on, no max-age. */
void file_response_opts_init(struct file_response_opts *o);

/* Responds with fd (an open regular file described by st; taken: closed
 * when sent, or before returning on error). The response is complete when
 * it returns 0; on a negative errno value nothing was sent unless
 * request_response_started(r) (the client left mid-way: -EPIPE). */
int file_respond(struct request *r, int fd, const struct stat *st,
                 const struct file_response_opts *o);

/* Opens path (relative to dirfd, or absolute with dirfd AT_FDCWD) for a
 * file response: a regular file, read-only, close-on-exec. With
 * precompressed, path.br or path.gz is opened instead when the request's
 * Accept-Encoding takes that coding (q-values honoured, br preferred on a
 * tie) and the sibling is a regular file at least as new as path;
 * *encoding is then "br" or "gzip", else NULL. With beneath, no step of
 * path may leave dirfd (openat2 RESOLVE_BENEATH). Returns the fd, or
 * -ENOENT (missing), -EACCES (unreadable, or a special file: -EACCES too,
 * so nothing about it leaks), -ELOOP/-EXDEV (leaves dirfd), or another
 * negative errno value for a shortage of the moment (-EMFILE, -ENOMEM). */
int file_open(struct request *r, int dirfd, const char *path, bool precompressed, bool beneath,
              struct stat *st, const char **encoding);

#endif
