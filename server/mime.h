/* mime: a file name's media type, from Debian's /etc/mime.types (package
 * media-types), for Content-Type.
 *
 * The table is loaded once per process: by the worker as it starts (with
 * its static mounts, before its first request), or by the first lookup in
 * a process that did not. Each worker reads it itself, so a worker started
 * after the file changed (a reload) sees the new table. When the file is
 * missing, a small built-in table (the web's common types) serves and one
 * warning says so.
 *
 * A name's type is its last extension's ("a.tar.gz" is application/gzip,
 * as mime.types has single extensions only), compared without case. When
 * the file lists an extension under several types, the first line wins.
 * Text types (text/..., and the legacy application/javascript) carry
 * "; charset=utf-8", as Starlette's responses do; application/json (which
 * has no charset parameter: RFC 8259 11) and image/svg+xml (whose XML
 * declaration says its encoding) do not. */
#ifndef EVICORN_MIME_H
#define EVICORN_MIME_H

#define MIME_TYPES_PATH "/etc/mime.types"

/* Loads MIME_TYPES_PATH unless a table is loaded; thread-safe. */
void mime_init(void);
/* Replaces this process's table with path's (tests, or a reload): 0, or
 * -1 with errno when it cannot be read (the built-in table is then in
 * place, and a warning logged). */
int mime_load(const char *path);
/* The Content-Type value for a file name (a path is fine), or NULL when
 * its extension is unknown. Loads the table first if needed. */
const char *mime_type_for(const char *name);
/* Frees the table (at exit, for leak checkers). */
void mime_free(void);

#endif
