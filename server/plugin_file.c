/* plugin_file: the ELF check, the private copy and the candidate-name rule;
 * see plugin_file.h.
 *
 * The ELF check reads the headers through memcpy into local structs, so the
 * buffer needs no alignment, and every offset taken from the file is compared
 * with the buffer or file size by subtraction, never by an addition that
 * could wrap. It only accepts objects of this build's class, byte order and
 * machine, so the native Elf types describe the bytes exactly.
 *
 * plugin_file_copy owns two descriptors and, once created, the copy's name:
 * every exit path closes what is open and, unless it returns 0, unlinks the
 * copy it created (never a file it did not create: O_EXCL guarantees that a
 * name it failed to create belongs to someone else). On failure errno is
 * ENOENT only when the candidate itself is missing. */
#include "plugin_file.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- this build's ELF identity ---- */

#if __SIZEOF_POINTER__ == 8
typedef Elf64_Ehdr host_ehdr;
typedef Elf64_Phdr host_phdr;
typedef Elf64_Shdr host_shdr;
#define HOST_CLASS      ELFCLASS64
#define HOST_CLASS_NAME "64-bit"
#elif __SIZEOF_POINTER__ == 4
typedef Elf32_Ehdr host_ehdr;
typedef Elf32_Phdr host_phdr;
typedef Elf32_Shdr host_shdr;
#define HOST_CLASS      ELFCLASS32
#define HOST_CLASS_NAME "32-bit"
#else
#error "plugin_file: unsupported pointer size"
#endif

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_DATA      ELFDATA2LSB
#define HOST_DATA_NAME "little-endian"
#elif __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HOST_DATA      ELFDATA2MSB
#define HOST_DATA_NAME "big-endian"
#else
#error "plugin_file: unsupported byte order"
#endif

#if defined(__x86_64__)
#define HOST_MACHINE      EM_X86_64
#define HOST_MACHINE_NAME "x86-64"
#elif defined(__aarch64__)
#define HOST_MACHINE      EM_AARCH64
#define HOST_MACHINE_NAME "arm64"
#elif defined(__i386__)
#define HOST_MACHINE      EM_386
#define HOST_MACHINE_NAME "x86"
#elif defined(__arm__)
#define HOST_MACHINE      EM_ARM
#define HOST_MACHINE_NAME "arm"
#elif defined(__riscv)
#define HOST_MACHINE      EM_RISCV
#define HOST_MACHINE_NAME "riscv"
#else
#error "plugin_file: add this architecture's EM_ value"
#endif

#define COPY_BUF_BYTES 65536
#define MAX_NAME_BYTES 200

/* Writes a reason (when the caller gave room for one) and returns -1. */
__attribute__((format(printf, 3, 4))) static int refuse(char *why, size_t whylen, const char *fmt,
                                                        ...)
{
    if (why && whylen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void clear_why(char *why, size_t whylen)
{
    if (why && whylen > 0)
        why[0] = '\0';
}

/* Whether [off, off + size) lies inside [0, limit), without overflow. */
static bool range_inside(uint64_t off, uint64_t size, uint64_t limit)
{
    return off <= limit && size <= limit - off;
}

/* ---- the ELF check ---- */

/* The section header table, when there is one, must be a whole table of
 * host_shdr entries inside the file. */
static int check_sections(const host_ehdr *eh, const unsigned char *data, size_t len,
                          size_t file_size, char *why, size_t whylen)
{
    if (eh->e_shoff == 0) {
        if (eh->e_shnum != 0)
            return refuse(why, whylen, "bad section header table (e_shnum %u at offset 0)",
                          (unsigned)eh->e_shnum);
        return 0; /* no section headers: dlopen does not need them */
    }
    if (eh->e_shentsize != sizeof(host_shdr))
        return refuse(why, whylen, "bad section header size (e_shentsize %u)",
                      (unsigned)eh->e_shentsize);
    uint64_t count = eh->e_shnum;
    if (count == 0) {
        /* Extended numbering: the real count is section 0's sh_size. */
        if (!range_inside(eh->e_shoff, sizeof(host_shdr), file_size))
            return refuse(why, whylen, "truncated: section headers end past the end of the file");
        if (!range_inside(eh->e_shoff, sizeof(host_shdr), len))
            return refuse(why, whylen, "section header count beyond the first 64 KiB");
        host_shdr first;
        memcpy(&first, data + eh->e_shoff, sizeof first);
        count = first.sh_size;
        if (count == 0)
            count = 1;
    }
    if (count > UINT64_MAX / sizeof(host_shdr) ||
        !range_inside(eh->e_shoff, count * sizeof(host_shdr), file_size))
        return refuse(why, whylen, "truncated: section headers end past the end of the file");
    return 0;
}

int plugin_file_check_elf(const unsigned char *data, size_t len, size_t file_size, char *why,
                          size_t whylen)
{
    clear_why(why, whylen);
    if (len > file_size)
        len = file_size;
    if (file_size == 0)
        return refuse(why, whylen, "empty file");
    if (!data || len == 0)
        return refuse(why, whylen, "truncated ELF header");

    size_t magic_len = len < SELFMAG ? len : SELFMAG;
    if (memcmp(data, ELFMAG, magic_len) != 0)
        return refuse(why, whylen, "not an ELF file");
    if (len < EI_NIDENT)
        return refuse(why, whylen, "truncated ELF header");
    if (data[EI_CLASS] != HOST_CLASS)
        return refuse(why, whylen, "not a " HOST_CLASS_NAME " ELF object");
    if (data[EI_DATA] != HOST_DATA)
        return refuse(why, whylen, "wrong byte order (this host is " HOST_DATA_NAME ")");
    if (data[EI_VERSION] != EV_CURRENT)
        return refuse(why, whylen, "unknown ELF version %u", (unsigned)data[EI_VERSION]);
    if (len < sizeof(host_ehdr))
        return refuse(why, whylen, "truncated ELF header");

    host_ehdr eh;
    memcpy(&eh, data, sizeof eh);
    if (eh.e_version != EV_CURRENT)
        return refuse(why, whylen, "unknown ELF version %lu", (unsigned long)eh.e_version);
    if (eh.e_type != ET_DYN)
        return refuse(why, whylen, "not a shared object (e_type %u)", (unsigned)eh.e_type);
    if (eh.e_machine != HOST_MACHINE)
        return refuse(why, whylen,
                      "built for another machine (e_machine %u, this host is " HOST_MACHINE_NAME
                      ")",
                      (unsigned)eh.e_machine);
    if (eh.e_ehsize != sizeof(host_ehdr))
        return refuse(why, whylen, "bad ELF header size (e_ehsize %u)", (unsigned)eh.e_ehsize);
    if (eh.e_phnum == 0)
        return refuse(why, whylen, "no program headers");
    if (eh.e_phnum == PN_XNUM)
        return refuse(why, whylen, "too many program headers (e_phnum is PN_XNUM)");
    if (eh.e_phentsize != sizeof(host_phdr))
        return refuse(why, whylen, "bad program header size (e_phentsize %u)",
                      (unsigned)eh.e_phentsize);

    uint64_t ph_bytes = (uint64_t)eh.e_phnum * sizeof(host_phdr);
    if (!range_inside(eh.e_phoff, ph_bytes, file_size))
        return refuse(why, whylen, "truncated: program headers end past the end of the file");
    if (!range_inside(eh.e_phoff, ph_bytes, len))
        return refuse(why, whylen, "program headers beyond the first 64 KiB");

    if (check_sections(&eh, data, len, file_size, why, whylen) != 0)
        return -1;

    unsigned loads = 0;
    bool dynamic = false;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        host_phdr ph;
        memcpy(&ph, data + eh.e_phoff + (size_t)i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_LOAD) {
            if (!range_inside(ph.p_offset, ph.p_filesz, file_size))
                return refuse(why, whylen,
                              "truncated: a PT_LOAD segment ends past the end of the file");
            loads++;
        } else if (ph.p_type == PT_DYNAMIC) {
            if (!range_inside(ph.p_offset, ph.p_filesz, file_size))
                return refuse(why, whylen,
                              "truncated: the PT_DYNAMIC segment ends past the end of the file");
            dynamic = true;
        }
    }
    if (loads == 0)
        return refuse(why, whylen, "no PT_LOAD segment");
    if (!dynamic)
        return refuse(why, whylen, "no PT_DYNAMIC segment");
    return 0;
}

/* ---- the private copy ---- */

static int close_checked(int *fd)
{
    int rc = 0;
    if (*fd >= 0) {
        /* No retry on EINTR: on Linux the descriptor is gone either way. */
        rc = close(*fd);
        *fd = -1;
    }
    return rc;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO; /* a regular file never accepts nothing forever */
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until n bytes or end of file; returns the count or -1. */
static ssize_t read_full(int fd, unsigned char *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static bool same_timespec(struct timespec a, struct timespec b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* Validates the copy as it lies on disk: what dlopen will map. */
static int check_copy(const char *dst, unsigned char *buf, char *why, size_t whylen)
{
    int fd = open(dst, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return refuse(why, whylen, "cannot read back %s: %s", dst, strerror(errno));
    struct stat st;
    int rc;
    ssize_t got;
    if (fstat(fd, &st) != 0) {
        rc = refuse(why, whylen, "cannot stat %s: %s", dst, strerror(errno));
    } else if ((got = read_full(fd, buf, PLUGIN_FILE_HEAD_BYTES)) < 0) {
        rc = refuse(why, whylen, "cannot read back %s: %s", dst, strerror(errno));
    } else {
        rc = plugin_file_check_elf(buf, (size_t)got, (size_t)st.st_size, why, whylen);
    }
    (void)close_checked(&fd); /* read-only: nothing to lose */
    return rc;
}

/* Copies exactly size bytes; returns 0, 1 when the source ended early
 * (it shrank: still being written), or -1 with why set. */
static int copy_bytes(int src, const char *path, int dst, const char *dst_path, off_t size,
                      unsigned char *buf, char *why, size_t whylen)
{
    off_t left = size;
    while (left > 0) {
        size_t want = left < COPY_BUF_BYTES ? (size_t)left : COPY_BUF_BYTES;
        ssize_t r = read(src, buf, want);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return refuse(why, whylen, "cannot read %s: %s", path, strerror(errno));
        }
        if (r == 0)
            return 1;
        if (write_all(dst, buf, (size_t)r) != 0)
            return refuse(why, whylen, "cannot copy to %s: %s", dst_path, strerror(errno));
        left -= r;
    }
    return 0;
}

/* Deletes a copy this call created; a failure is appended to the reason
 * already in why, since the caller should hear about a file left behind. */
static void remove_copy(const char *dst_path, char *why, size_t whylen)
{
    if (unlink(dst_path) == 0 || errno == ENOENT)
        return;
    int err = errno;
    size_t used = why ? strnlen(why, whylen) : 0;
    if (why && used + 1 < whylen)
        snprintf(why + used, whylen - used, " (and cannot remove %s: %s)", dst_path, strerror(err));
}

/* Opens the candidate without following a final symbolic link. */
static int open_source(const char *path, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0)
        return fd;
    int err = errno;
    struct stat st;
    if (err == ELOOP && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
        return refuse(why, whylen, "is a symbolic link");
    return refuse(why, whylen, "cannot open %s: %s", path, strerror(err));
}

int plugin_file_copy(const char *path, const char *private_dir, const char *prefix,
                     const struct plugin_file_vet *vet, char *out_path, size_t out_len, char *why,
                     size_t whylen)
{
    clear_why(why, whylen);
    if (out_path && out_len > 0)
        out_path[0] = '\0';
    if (!path || !private_dir || !out_path || !prefix || !*prefix || strchr(prefix, '/'))
        return refuse(why, whylen, "bad arguments");
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!*base)
        return refuse(why, whylen, "no file name in %s", path);

    char dst_path[PATH_MAX];
    size_t dir_len = strlen(private_dir);
    const char *sep = dir_len > 0 && private_dir[dir_len - 1] == '/' ? "" : "/";
    int n = snprintf(dst_path, sizeof dst_path, "%s%s%s-%s", private_dir, sep, prefix, base);
    if (n < 0 || (size_t)n >= sizeof dst_path || (size_t)n >= out_len)
        return refuse(why, whylen, "path too long: %s%s%s-%s", private_dir, sep, prefix, base);

    int src = open_source(path, why, whylen);
    if (src < 0)
        return -1;

    int rc = -1, dst = -1;
    bool created = false;
    unsigned char *buf = NULL;
    struct stat before, after;
    if (fstat(src, &before) != 0) {
        refuse(why, whylen, "cannot stat %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(before.st_mode)) {
        refuse(why, whylen, "not a regular file");
        goto out;
    }
    if (before.st_size == 0) {
        refuse(why, whylen, "empty file");
        goto out;
    }
    if (vet && vet->fn(vet->ud, &before, path, why, whylen) != 0)
        goto out;
    buf = malloc(COPY_BUF_BYTES > PLUGIN_FILE_HEAD_BYTES ? COPY_BUF_BYTES : PLUGIN_FILE_HEAD_BYTES);
    if (!buf) {
        refuse(why, whylen, "cannot copy %s: out of memory", path);
        goto out;
    }

    dst = open(dst_path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0500);
    if (dst < 0) {
        refuse(why, whylen, "cannot copy to %s: %s", dst_path, strerror(errno));
        goto out;
    }
    created = true;

    int copied = copy_bytes(src, path, dst, dst_path, before.st_size, buf, why, whylen);
    if (copied < 0)
        goto out;
    /* close reports deferred write errors on some filesystems. */
    if (close_checked(&dst) != 0) {
        refuse(why, whylen, "cannot copy to %s: %s", dst_path, strerror(errno));
        goto out;
    }
    if (fstat(src, &after) != 0) {
        refuse(why, whylen, "cannot stat %s: %s", path, strerror(errno));
        goto out;
    }
    /* ctime too: it also moves when a writer restores mtime afterwards. */
    if (copied == 1 || after.st_size != before.st_size ||
        !same_timespec(after.st_mtim, before.st_mtim) ||
        !same_timespec(after.st_ctim, before.st_ctim)) {
        refuse(why, whylen, "still being written; will retry");
        rc = 1;
        goto out;
    }
    if (check_copy(dst_path, buf, why, whylen) != 0)
        goto out;

    memcpy(out_path, dst_path, (size_t)n + 1);
    rc = 0;
out:;
    /* Past open_source the candidate exists, so an ENOENT from here on is
     * the private folder gone (a /tmp cleaner, say). Callers read ENOENT as
     * "the candidate went away" and stay silent; this must be heard. */
    int err = errno == ENOENT ? EIO : errno;
    /* A close error matters only for the copy's writes, checked above. */
    (void)close_checked(&dst);
    (void)close_checked(&src);
    if (rc != 0 && created)
        remove_copy(dst_path, why, whylen);
    free(buf);
    errno = err;
    return rc;
}

/* ---- candidate names ---- */

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

int plugin_file_is_candidate(const char *name)
{
    if (!name || name[0] == '\0' || name[0] == '.')
        return 0;
    size_t len = strnlen(name, MAX_NAME_BYTES + 1);
    if (len > MAX_NAME_BYTES)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c == '~' || c < 0x20 || c == 0x7f)
            return 0;
    }
    if (ends_with(name, len, ".tmp") || ends_with(name, len, ".part") ||
        ends_with(name, len, ".swp"))
        return 0;
    return ends_with(name, len, ".so");
}
