/* open_beneath: opening a path that must not leave a folder, whatever the
 * path or the file system holds (.., absolute paths, symlinks, magic links
 * such as /proc/self/fd/N), with openat2(2) and RESOLVE_BENEATH (Linux
 * 5.6; glibc has no wrapper).
 *
 * Race-free: the kernel checks containment during the lookup itself, on
 * each dentry it walks, so no rename or new symlink can slip between a
 * check and the open, as it could with realpath() followed by open(). */
#ifndef EVICORN_OPEN_BENEATH_H
#define EVICORN_OPEN_BENEATH_H

/* Opens path relative to dirfd with flags (O_CLOEXEC is the caller's to
 * add). Returns the fd, or a negative errno value: -EXDEV when a step
 * would leave dirfd, -ELOOP for a magic link, -ENOSYS before Linux 5.6,
 * and whatever open(2) says. */
int open_beneath(int dirfd, const char *path, int flags);

#endif
