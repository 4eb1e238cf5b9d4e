/* static_spec: the --static flag's value; see static_spec.h. */
#include "static_spec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "open_beneath.h"

int static_spec_parse(const char *spec, size_t *prefix_len, const char **dir, char *err,
                      size_t errlen)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1]) {
        snprintf(err, errlen, "--static: invalid value '%s' (expected PREFIX=DIR)", spec);
        return -1;
    }
    size_t n = (size_t)(eq - spec);
    if (spec[0] != '/' || strcspn(spec, "\\?#%") < n) {
        snprintf(err, errlen,
                 "--static: invalid PREFIX in '%s' (an absolute path without \\, ?, # or %%)",
                 spec);
        return -1;
    }
    while (n > 1 && spec[n - 1] == '/')
        n--;
    /* Segments: none empty, ".", or "..": a prefix is compared with
     * request paths as they are, never normalised. */
    for (size_t i = 1; i < n;) {
        size_t k = i;
        while (k < n && spec[k] != '/')
            k++;
        size_t seg = k - i;
        if (seg == 0 || (seg == 1 && spec[i] == '.') ||
            (seg == 2 && spec[i] == '.' && spec[i + 1] == '.')) {
            snprintf(err, errlen, "--static: invalid PREFIX in '%s' (empty, . or .. segment)",
                     spec);
            return -1;
        }
        i = k + 1;
    }
    *prefix_len = n == 1 ? 0 : n;
    *dir = eq + 1;
    return 0;
}

int static_spec_check(const char *spec, char *err, size_t errlen)
{
    size_t plen;
    const char *dir;
    if (static_spec_parse(spec, &plen, &dir, err, errlen) < 0)
        return -1;
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "--static: '%s' is not a folder (%s)", dir, strerror(errno));
        return -1;
    }
    /* Files are opened with openat2 (Linux 5.6): say so now, not on every
     * request. */
    int probe = open_beneath(fd, ".", O_PATH | O_CLOEXEC);
    int e = -probe;
    close(fd);
    if (probe < 0) {
        snprintf(err, errlen, "--static: cannot open files beneath '%s' (%s%s)", dir, strerror(e),
                 e == ENOSYS ? ": openat2 needs Linux 5.6 or later" : "");
        return -1;
    }
    close(probe);
    return 0;
}
