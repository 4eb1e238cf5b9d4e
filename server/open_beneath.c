/* open_beneath: openat2 with RESOLVE_BENEATH; see open_beneath.h. */
#include "open_beneath.h"

#include <errno.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/* EAGAIN: a concurrent rename made a ".." step impossible to verify; the
 * man page says the call may be retried, and a few times is plenty. */
#define RETRIES 8

int open_beneath(int dirfd, const char *path, int flags)
{
    struct open_how how = {.flags = (uint64_t)(unsigned)flags,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int err = EAGAIN;
    for (int i = 0; i < RETRIES; i++) {
        long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        err = errno;
        if (err != EAGAIN && err != EINTR)
            break;
    }
    return -err;
}
