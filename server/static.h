/* static: the --static PREFIX=DIR folders, served before any plugin route.
 *
 * A request whose percent-decoded path is PREFIX or lies below it (at a
 * segment boundary: /static owns /static and /static/..., not /staticx)
 * belongs to that mount, the longest prefix winning, whether or not the
 * file exists. GET and HEAD only (405 otherwise); a folder is served by its
 * index.html, a folder asked for without its trailing slash is redirected
 * (301) to the path with it when it has an index.html, and there are no
 * listings. The response itself is file_response's: validators, ranges,
 * precompressed .br/.gz siblings, Vary: Accept-Encoding, and Cache-Control
 * from --static-max-age.
 *
 * Path safety (docs/static.md has the reasons): a path with a "." or ".."
 * segment, a backslash, or an encoded slash (%2F) is refused, and the file
 * is opened beneath the mount's folder with openat2(RESOLVE_BENEATH), so
 * no symlink leads out of it. Whatever cannot be served (missing,
 * unreadable, outside, not a regular file) is the same 404, which tells a
 * prober nothing about what is there.
 *
 * Each worker opens the folders once (O_PATH) as it starts; the loop
 * thread serves. */
#ifndef EVICORN_STATIC_H
#define EVICORN_STATIC_H

#include <stdbool.h>
#include <stddef.h>

struct request;
struct static_mounts;

/* Opens the --static folders (n checked specs) for this process, with
 * --static-max-age (-1: none). 0 with *out set (NULL when n is 0), or -1
 * after logging why. */
int static_mounts_open(const char *const *specs, size_t n, long max_age,
                       struct static_mounts **out);
void static_mounts_free(struct static_mounts *mounts);

/* When a mount owns r's path, answers r and returns true (the caller
 * finishes r); false leaves r untouched. mounts may be NULL. */
bool static_serve(const struct static_mounts *mounts, struct request *r);

#endif
