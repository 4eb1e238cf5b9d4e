/* static_spec: the value of --static, "PREFIX=DIR", checked by the command
 * line in the master and parsed again by each worker as it opens its
 * mounts (static.h). Apart from static.c so that the command line does
 * not depend on the request layer. */
#ifndef EVICORN_STATIC_SPEC_H
#define EVICORN_STATIC_SPEC_H

#include <stddef.h>

/* Splits spec at its first '=': PREFIX (*prefix_len bytes of spec, its
 * trailing slashes dropped, so "/" is 0 bytes) and DIR. -1 with one line
 * in err when PREFIX is not an absolute path of plain segments (none
 * empty, "." or "..", no \, ?, # or %) or DIR is empty. */
int static_spec_parse(const char *spec, size_t *prefix_len, const char **dir, char *err,
                      size_t errlen);

/* static_spec_parse, and DIR an existing folder files can be opened
 * beneath (openat2, Linux 5.6). 0, or -1 with one line in err. */
int static_spec_check(const char *spec, char *err, size_t errlen);

#endif
