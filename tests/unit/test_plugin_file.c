/* Unit tests for server/plugin_file.c.
 *
 * No compiler is assumed at test time, so the valid inputs are real shared
 * objects already on the machine: the C library this test is linked with
 * (found with dl_iterate_phdr) and, when it is built as PIE, this test's own
 * executable. Invalid inputs are in-memory copies of libc's headers with one
 * field changed. Every buffer handed to plugin_file_check_elf is a heap block
 * of exactly the length passed, so AddressSanitizer reports any read past it,
 * and a seeded random-mutation loop exercises the bounds checks. File tests
 * run in a fresh mkdtemp directory that each test removes. */
#include "check.h"
#include "plugin_file.h"
#include "support.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEAD PLUGIN_FILE_HEAD_BYTES

/* ---- helpers ---- */

static int find_libc(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    const char *name = info->dlpi_name;
    const char *slash = name ? strrchr(name, '/') : NULL;
    if (slash && strncmp(slash + 1, "libc.so", 7) == 0) {
        snprintf(data, PATH_MAX, "%s", name);
        return 1;
    }
    return 0;
}

/* The path of the C library this process runs on. */
static const char *libc_path(void)
{
    static char path[PATH_MAX];
    if (!path[0])
        dl_iterate_phdr(find_libc, path);
    CHECK(path[0] != '\0');
    return path;
}

/* Reads a whole file into a new heap block; NULL on failure. */
static unsigned char *slurp(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    if (fd < 0)
        return NULL;
    struct stat st;
    CHECK_EQ_INT(fstat(fd, &st), 0);
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    CHECK(buf != NULL);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        CHECK(r > 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    CHECK_EQ_INT(close(fd), 0);
    *size = got;
    return buf;
}

static void spit(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK_EQ_INT(write(fd, data, len), (long long)len);
    CHECK_EQ_INT(close(fd), 0);
}

static unsigned char *libc_cache;

static void free_libc_cache(void)
{
    free(libc_cache);
}

/* libc's bytes, read once and freed at exit. */
static const unsigned char *libc_bytes(size_t *size)
{
    static size_t n;
    if (!libc_cache) {
        libc_cache = slurp(libc_path(), &n);
        CHECK_EQ_INT(atexit(free_libc_cache), 0);
    }
    *size = n;
    return libc_cache;
}

static ElfW(Ehdr) libc_ehdr(void)
{
    size_t size;
    const unsigned char *b = libc_bytes(&size);
    ElfW(Ehdr) eh;
    memcpy(&eh, b, sizeof eh);
    return eh;
}

/* Runs the check on an exact-size heap copy of data[0..len). */
static int check_exact(const unsigned char *data, size_t len, size_t file_size, char *why,
                       size_t whylen)
{
    unsigned char *copy = malloc(len ? len : 1);
    CHECK(copy != NULL);
    if (len)
        memcpy(copy, data, len);
    int rc = plugin_file_check_elf(len ? copy : NULL, len, file_size, why, whylen);
    free(copy);
    return rc;
}

/* A writable copy of libc's first HEAD bytes (or all of it when smaller). */
struct head {
    unsigned char *b;
    size_t len, size;
};

static struct head head_copy(void)
{
    struct head h;
    const unsigned char *src = libc_bytes(&h.size);
    h.len = h.size < HEAD ? h.size : HEAD;
    h.b = malloc(h.len);
    CHECK(h.b != NULL);
    memcpy(h.b, src, h.len);
    return h;
}

/* Checks h with the header replaced by eh; returns the reason ("" = ok). */
static const char *check_with_ehdr(struct head *h, const ElfW(Ehdr) * eh)
{
    static char why[200];
    memcpy(h->b, eh, sizeof *eh);
    int rc = check_exact(h->b, h->len, h->size, why, sizeof why);
    CHECK(rc == 0 ? why[0] == '\0' : why[0] != '\0');
    return why;
}

/* Index of libc's first program header of the given type, or -1. */
static int find_phdr(const struct head *h, uint32_t type)
{
    ElfW(Ehdr) eh;
    memcpy(&eh, h->b, sizeof eh);
    for (int i = 0; i < eh.e_phnum; i++) {
        ElfW(Phdr) ph;
        memcpy(&ph, h->b + eh.e_phoff + (size_t)i * sizeof ph, sizeof ph);
        if (ph.p_type == type)
            return i;
    }
    return -1;
}

static ElfW(Phdr) get_phdr(const struct head *h, int i)
{
    ElfW(Phdr) ph;
    memcpy(&ph, h->b + libc_ehdr().e_phoff + (size_t)i * sizeof ph, sizeof ph);
    return ph;
}

static void put_phdr(struct head *h, int i, const ElfW(Phdr) * ph)
{
    memcpy(h->b + libc_ehdr().e_phoff + (size_t)i * sizeof *ph, ph, sizeof *ph);
}

static const char *check_head(struct head *h)
{
    static char why[200];
    int rc = check_exact(h->b, h->len, h->size, why, sizeof why);
    CHECK(rc == 0 ? why[0] == '\0' : why[0] != '\0');
    return why;
}

/* A scratch directory with "src" and "priv" subdirectories. */
struct scratch {
    char root[64], src[96], priv[96];
};

static void scratch_init(struct scratch *s)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(s->root, sizeof s->root, "%s/evicorn-pf-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(s->root) != NULL);
    snprintf(s->src, sizeof s->src, "%s/src", s->root);
    snprintf(s->priv, sizeof s->priv, "%s/priv", s->root);
    CHECK_EQ_INT(mkdir(s->src, 0700), 0);
    CHECK_EQ_INT(mkdir(s->priv, 0700), 0);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    CHECK_EQ_INT(closedir(d), 0);
    return n;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- plugin_file_check_elf: valid inputs ---- */

TEST(check_elf_accepts_libc_head_and_whole_file)
{
    size_t size;
    const unsigned char *b = libc_bytes(&size);
    CHECK(size > HEAD);
    char why[200] = "x";
    CHECK_EQ_INT(check_exact(b, HEAD, size, why, sizeof why), 0);
    CHECK_EQ_STR(why, "");
    strcpy(why, "x");
    CHECK_EQ_INT(plugin_file_check_elf(b, size, size, why, sizeof why), 0);
    CHECK_EQ_STR(why, "");
}

TEST(check_elf_accepts_own_executable_when_pie)
{
    size_t size;
    unsigned char *b = slurp("/proc/self/exe", &size);
    if (!b)
        return;
    ElfW(Ehdr) eh;
    CHECK(size >= sizeof eh);
    memcpy(&eh, b, sizeof eh);
    char why[200];
    int rc = check_exact(b, size < HEAD ? size : HEAD, size, why, sizeof why);
    if (eh.e_type == ET_DYN) {
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_STR(why, "");
    } else {
        CHECK_EQ_INT(rc, -1);
        CHECK_EQ_STR(why, "not a shared object (e_type 2)");
    }
    free(b);
}

/* ---- plugin_file_check_elf: refusals ---- */

TEST(check_elf_refuses_empty_input)
{
    char why[200];
    CHECK_EQ_INT(plugin_file_check_elf(NULL, 0, 0, why, sizeof why), -1);
    CHECK_EQ_STR(why, "empty file");
    size_t size;
    const unsigned char *b = libc_bytes(&size);
    CHECK_EQ_INT(check_exact(b, 0, size, why, sizeof why), -1);
    CHECK_EQ_STR(why, "truncated ELF header");
}

TEST(check_elf_refuses_wrong_magic)
{
    char why[200];
    const unsigned char text[] = "hello, world\n";
    CHECK_EQ_INT(check_exact(text, sizeof text - 1, sizeof text - 1, why, sizeof why), -1);
    CHECK_EQ_STR(why, "not an ELF file");
    const unsigned char two[] = {0x7f, 'X'};
    CHECK_EQ_INT(check_exact(two, 2, 2, why, sizeof why), -1);
    CHECK_EQ_STR(why, "not an ELF file");

    struct head h = head_copy();
    h.b[1] = 'e';
    CHECK_EQ_STR(check_head(&h), "not an ELF file");
    free(h.b);
}

TEST(check_elf_refuses_other_class_byte_order_and_version)
{
    struct head h = head_copy();
#if __SIZEOF_POINTER__ == 8
    h.b[EI_CLASS] = ELFCLASS32;
    CHECK_EQ_STR(check_head(&h), "not a 64-bit ELF object");
#else
    h.b[EI_CLASS] = ELFCLASS64;
    CHECK_EQ_STR(check_head(&h), "not a 32-bit ELF object");
#endif
    h.b[EI_CLASS] = ELFCLASSNONE;
    CHECK(starts_with(check_head(&h), "not a "));
    h.b[EI_CLASS] = libc_bytes(&h.size)[EI_CLASS];

    unsigned char native = h.b[EI_DATA];
    h.b[EI_DATA] = native == ELFDATA2LSB ? ELFDATA2MSB : ELFDATA2LSB;
    CHECK(starts_with(check_head(&h), "wrong byte order (this host is "));
    h.b[EI_DATA] = native;

    h.b[EI_VERSION] = 2;
    CHECK_EQ_STR(check_head(&h), "unknown ELF version 2");
    h.b[EI_VERSION] = EV_CURRENT;
    CHECK_EQ_STR(check_head(&h), "");

    ElfW(Ehdr) eh = libc_ehdr();
    eh.e_version = 7;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "unknown ELF version 7");
    free(h.b);
}

TEST(check_elf_refuses_other_machine)
{
    struct head h = head_copy();
    ElfW(Ehdr) eh = libc_ehdr();
#if defined(__x86_64__)
    eh.e_machine = EM_AARCH64;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh),
                 "built for another machine (e_machine 183, this host is x86-64)");
#elif defined(__aarch64__)
    eh.e_machine = EM_X86_64;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh),
                 "built for another machine (e_machine 62, this host is arm64)");
#endif
    eh.e_machine = EM_S390;
    CHECK(starts_with(check_with_ehdr(&h, &eh), "built for another machine (e_machine 22, "));
    free(h.b);
}

TEST(check_elf_refuses_non_shared_objects)
{
    struct head h = head_copy();
    ElfW(Ehdr) eh = libc_ehdr();
    eh.e_type = ET_EXEC;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "not a shared object (e_type 2)");
    eh.e_type = ET_REL;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "not a shared object (e_type 1)");
    eh.e_type = ET_CORE;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "not a shared object (e_type 4)");
    free(h.b);
}

TEST(check_elf_refuses_bad_entry_sizes)
{
    struct head h = head_copy();
    ElfW(Ehdr) good = libc_ehdr(), eh = good;
    eh.e_ehsize = 52;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "bad ELF header size (e_ehsize 52)");
    eh = good;
    eh.e_phentsize = 32;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "bad program header size (e_phentsize 32)");
    eh = good;
    eh.e_shentsize = 40;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "bad section header size (e_shentsize 40)");
    /* Without a section header table, e_shentsize does not matter. */
    eh.e_shoff = 0;
    eh.e_shnum = 0;
    eh.e_shentsize = 0;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "");
    eh.e_shnum = 3;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "bad section header table (e_shnum 3 at offset 0)");
    free(h.b);
}

TEST(check_elf_refuses_truncated_files)
{
    size_t size;
    const unsigned char *b = libc_bytes(&size);
    ElfW(Ehdr) eh = libc_ehdr();
    char why[200];
    const size_t header_cuts[] = {1, 4, 16, 63};
    for (size_t i = 0; i < sizeof header_cuts / sizeof header_cuts[0]; i++) {
        size_t n = header_cuts[i];
        CHECK_EQ_INT(check_exact(b, n, n, why, sizeof why), -1);
        CHECK_EQ_STR(why, "truncated ELF header");
    }
    /* A complete header whose program headers follow it. */
    CHECK_EQ_INT(eh.e_phoff, sizeof eh);
    CHECK_EQ_INT(check_exact(b, 64, 64, why, sizeof why), -1);
    CHECK_EQ_STR(why, "truncated: program headers end past the end of the file");

    /* libc's section headers are the last thing in the file. */
    CHECK_EQ_INT(eh.e_shoff + (size_t)eh.e_shnum * eh.e_shentsize, size);
    const size_t tail_cuts[] = {size / 2, size - 1, size - sizeof(ElfW(Shdr)), eh.e_shoff + 1};
    for (size_t i = 0; i < sizeof tail_cuts / sizeof tail_cuts[0]; i++) {
        size_t n = tail_cuts[i];
        CHECK_EQ_INT(check_exact(b, n < HEAD ? n : HEAD, n, why, sizeof why), -1);
        CHECK_EQ_STR(why, "truncated: section headers end past the end of the file");
    }
}

TEST(check_elf_refuses_program_headers_out_of_range)
{
    struct head h = head_copy();
    ElfW(Ehdr) good = libc_ehdr(), eh = good;
    const char *past = "truncated: program headers end past the end of the file";
    eh.e_phoff = h.size;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), past);
    eh.e_phoff = h.size - 8;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), past);
    eh.e_phoff = (ElfW(Off)) - 8; /* would wrap if added to the table size */
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), past);
    eh.e_phoff = HEAD + 4096; /* inside the file, beyond what the caller read */
    CHECK(h.size > HEAD + 4096 + (size_t)good.e_phnum * sizeof(ElfW(Phdr)));
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "program headers beyond the first 64 KiB");
    eh.e_phoff = HEAD - 8;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "program headers beyond the first 64 KiB");

    eh = good;
    eh.e_phnum = 0xfffe;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), past);
    eh.e_phnum = PN_XNUM;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "too many program headers (e_phnum is PN_XNUM)");
    eh.e_phnum = 0;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "no program headers");
    free(h.b);
}

TEST(check_elf_refuses_section_headers_out_of_range)
{
    struct head h = head_copy();
    ElfW(Ehdr) good = libc_ehdr(), eh = good;
    const char *past = "truncated: section headers end past the end of the file";
    eh.e_shoff = (ElfW(Off)) - 100;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), past);
    eh.e_shoff = h.size;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), past);
    eh = good;
    eh.e_shnum = 0xffff;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), past);
    /* Extended numbering: the count is in section 0, which lies past 64 KiB. */
    eh.e_shnum = 0;
    CHECK_EQ_STR(check_with_ehdr(&h, &eh), "section header count beyond the first 64 KiB");
    /* ... or inside it: point e_shoff at a zeroed spot in the buffer. */
    size_t zeros = 0;
    for (size_t i = h.len - sizeof(ElfW(Shdr)); i > 64 && !zeros; i -= 8) {
        bool all_zero = true;
        for (size_t j = 0; j < sizeof(ElfW(Shdr)) && all_zero; j++)
            all_zero = h.b[i + j] == 0;
        if (all_zero)
            zeros = i;
    }
    if (zeros) {
        eh.e_shoff = zeros;
        CHECK_EQ_STR(check_with_ehdr(&h, &eh), ""); /* count 0 there means 1 section */
    }
    free(h.b);
}

TEST(check_elf_refuses_bad_segments)
{
    struct head h = head_copy();
    int dyn = find_phdr(&h, PT_DYNAMIC), load = find_phdr(&h, PT_LOAD);
    CHECK(dyn >= 0 && load >= 0);
    if (dyn < 0 || load < 0)
        return;
    ElfW(Phdr) d = get_phdr(&h, dyn), l = get_phdr(&h, load), ph;

    ph = d;
    ph.p_filesz = h.size;
    put_phdr(&h, dyn, &ph);
    CHECK_EQ_STR(check_head(&h), "truncated: the PT_DYNAMIC segment ends past the end of the file");
    ph.p_offset = (ElfW(Off)) - 16;
    ph.p_filesz = 32;
    put_phdr(&h, dyn, &ph);
    CHECK_EQ_STR(check_head(&h), "truncated: the PT_DYNAMIC segment ends past the end of the file");
    ph.p_type = PT_NULL;
    put_phdr(&h, dyn, &ph);
    CHECK_EQ_STR(check_head(&h), "no PT_DYNAMIC segment");
    put_phdr(&h, dyn, &d);
    CHECK_EQ_STR(check_head(&h), "");

    ph = l;
    ph.p_offset = h.size - 1;
    ph.p_filesz = 2;
    put_phdr(&h, load, &ph);
    CHECK_EQ_STR(check_head(&h), "truncated: a PT_LOAD segment ends past the end of the file");
    put_phdr(&h, load, &l);

    for (int i; (i = find_phdr(&h, PT_LOAD)) >= 0;) {
        ph = get_phdr(&h, i);
        ph.p_type = PT_NOTE;
        put_phdr(&h, i, &ph);
    }
    CHECK_EQ_STR(check_head(&h), "no PT_LOAD segment");
    free(h.b);
}

TEST(check_elf_treats_len_beyond_file_size_as_file_size)
{
    size_t size;
    const unsigned char *b = libc_bytes(&size);
    char why[200];
    /* The buffer is 64 KiB, but the file is said to be 100 bytes long. */
    CHECK_EQ_INT(check_exact(b, HEAD, 100, why, sizeof why), -1);
    CHECK_EQ_STR(why, "truncated: program headers end past the end of the file");
}

TEST(check_elf_reason_buffer_may_be_small_or_absent)
{
    const unsigned char text[] = "text";
    char why[8];
    memset(why, 'z', sizeof why);
    CHECK_EQ_INT(plugin_file_check_elf(text, 4, 4, why, sizeof why), -1);
    CHECK_EQ_STR(why, "not an ");
    CHECK_EQ_INT(plugin_file_check_elf(text, 4, 4, NULL, 0), -1);
    CHECK_EQ_INT(plugin_file_check_elf(text, 4, 4, why, 0), -1);
    CHECK_EQ_STR(why, "not an "); /* untouched */
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Random header damage and random lengths: every call must return 0 or -1
 * with a reason, and ASan checks that nothing outside the block is read. */
TEST(check_elf_survives_random_mutations)
{
    size_t size;
    const unsigned char *b = libc_bytes(&size);
    ElfW(Ehdr) eh = libc_ehdr();
    size_t meta = eh.e_phoff + (size_t)eh.e_phnum * sizeof(ElfW(Phdr)); /* headers' extent */
    char why[200];
    unsigned accepted = 0, refused = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = (size_t)(rng() % 4 == 0 ? rng() % (meta + 1) : meta + rng() % 4096);
        if (len > size)
            len = size;
        size_t file_size = rng() % 8 == 0 ? (size_t)(rng() % (2 * size)) : size;
        unsigned char *buf = malloc(len ? len : 1);
        CHECK(buf != NULL);
        if (!buf)
            return;
        memcpy(buf, b, len);
        int flips = (int)(rng() % 6);
        for (int f = 0; f < flips && len > 0; f++) {
            size_t at = (size_t)(rng() % (len < meta ? len : meta));
            if (rng() % 2 && at + 8 <= len) {
                uint64_t v = rng() % 3 == 0 ? UINT64_MAX - rng() % 64 : rng() % (2 * size);
                memcpy(buf + at, &v, 8);
            } else {
                buf[at] = (unsigned char)rng();
            }
        }
        int rc = plugin_file_check_elf(len ? buf : NULL, len, file_size, why, sizeof why);
        CHECK(rc == 0 || rc == -1);
        CHECK(rc == 0 ? why[0] == '\0' : why[0] != '\0');
        rc == 0 ? accepted++ : refused++;
        free(buf);
    }
    CHECK(accepted > 0);
    CHECK(refused > 0);
}

/* ---- plugin_file_copy ---- */

/* A vet that records what it judged and, once, replaces the file at its
 * path the moment it has judged the descriptor. */
struct swap_after_vet {
    const char *path, *other;
    int calls;
    mode_t seen_mode;
};

static int vet_then_swap(void *ud, const struct stat *st, const char *path, char *why,
                         size_t whylen)
{
    struct swap_after_vet *s = ud;
    (void)why;
    (void)whylen;
    s->calls++;
    s->seen_mode = st->st_mode & 07777;
    CHECK_EQ_STR(path, s->path);
    if (s->other) {
        CHECK_EQ_INT(rename(s->other, s->path), 0);
        s->other = NULL;
    }
    return 0;
}

static int vet_refuse(void *ud, const struct stat *st, const char *path, char *why, size_t whylen)
{
    (void)ud;
    (void)st;
    snprintf(why, whylen, "file %s is writable by others", path);
    return -1;
}

/* The file judged is the file read: a file swapped in after the check is
 * never copied unjudged. Its arrival changes the judged file (unlinked, its
 * ctime moves), so the copy is abandoned for a retry, and the retry judges
 * the newcomer. */
TEST(copy_never_reads_a_file_swapped_in_after_the_vet)
{
    struct scratch s;
    scratch_init(&s);
    char path[PATH_MAX], other[PATH_MAX], out[PATH_MAX], why[300];
    snprintf(path, sizeof path, "%s/x.so", s.src);
    snprintf(other, sizeof other, "%s/evil.so", s.src);
    size_t len;
    const unsigned char *libc = libc_bytes(&len);
    spit(path, libc, len);
    CHECK_EQ_INT(chmod(path, 0644), 0);
    spit(other, "not the judged file", 19);
    CHECK_EQ_INT(chmod(other, 0666), 0);
    struct swap_after_vet sw = {.path = path, .other = other};
    struct plugin_file_vet vet = {vet_then_swap, &sw};
    int rc = plugin_file_copy(path, s.priv, "w0", &vet, out, sizeof out, why, sizeof why);
    CHECK_EQ_INT(sw.calls, 1);
    CHECK_EQ_INT(sw.seen_mode, 0644);
    if (rc == 0) {
        size_t got_len;
        unsigned char *got = slurp(out, &got_len);
        CHECK(got && got_len == len && memcmp(got, libc, len) == 0);
        free(got);
        CHECK_EQ_INT(unlink(out), 0);
    } else {
        CHECK_EQ_INT(rc, 1);
        CHECK_EQ_INT(count_entries(s.priv), 0);
    }
    /* The next attempt judges what is there now. */
    rc = plugin_file_copy(path, s.priv, "w1", &vet, out, sizeof out, why, sizeof why);
    CHECK_EQ_INT(sw.calls, 2);
    CHECK_EQ_INT(sw.seen_mode, 0666);
    remove_tree(s.root, false);
}

TEST(copy_refused_by_the_vet_leaves_nothing)
{
    struct scratch s;
    scratch_init(&s);
    char out[PATH_MAX], why[300];
    struct plugin_file_vet vet = {vet_refuse, NULL};
    CHECK_EQ_INT(
        plugin_file_copy(libc_path(), s.priv, "w0", &vet, out, sizeof out, why, sizeof why), -1);
    CHECK(strstr(why, "is writable by others") != NULL);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(count_entries(s.priv), 0);
    remove_tree(s.root, false);
}

TEST(copy_makes_a_private_identical_copy)
{
    struct scratch s;
    scratch_init(&s);
    char out[PATH_MAX], why[300] = "x", want[PATH_MAX];
    CHECK_EQ_INT(
        plugin_file_copy(libc_path(), s.priv, "w0-g7", NULL, out, sizeof out, why, sizeof why), 0);
    CHECK_EQ_STR(why, "");
    const char *base = strrchr(libc_path(), '/') + 1;
    snprintf(want, sizeof want, "%s/w0-g7-%s", s.priv, base);
    CHECK_EQ_STR(out, want);

    size_t a_len, b_len;
    const unsigned char *a = libc_bytes(&a_len);
    unsigned char *b = slurp(out, &b_len);
    CHECK_EQ_INT(a_len, b_len);
    CHECK(b && a_len == b_len && memcmp(a, b, a_len) == 0);
    free(b);
    struct stat st;
    CHECK_EQ_INT(lstat(out, &st), 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK_EQ_INT(st.st_mode & 07777, 0500);

    /* A trailing slash on private_dir does not double the separator. */
    char dir_slash[PATH_MAX];
    snprintf(dir_slash, sizeof dir_slash, "%s/", s.priv);
    CHECK_EQ_INT(
        plugin_file_copy(libc_path(), dir_slash, "w1", NULL, out, sizeof out, why, sizeof why), 0);
    snprintf(want, sizeof want, "%s/w1-%s", s.priv, base);
    CHECK_EQ_STR(out, want);
    remove_tree(s.root, false);
}

TEST(copy_prefixes_give_distinct_paths_and_a_reused_prefix_fails_cleanly)
{
    struct scratch s;
    scratch_init(&s);
    char p1[PATH_MAX], p2[PATH_MAX], p3[PATH_MAX] = "x", why[300];
    CHECK_EQ_INT(
        plugin_file_copy(libc_path(), s.priv, "w0-g1", NULL, p1, sizeof p1, why, sizeof why), 0);
    CHECK_EQ_INT(
        plugin_file_copy(libc_path(), s.priv, "w0-g2", NULL, p2, sizeof p2, why, sizeof why), 0);
    CHECK(strcmp(p1, p2) != 0);
    CHECK_EQ_INT(
        plugin_file_copy(libc_path(), s.priv, "w0-g1", NULL, p3, sizeof p3, why, sizeof why), -1);
    CHECK_EQ_STR(p3, "");
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "cannot copy to %s: File exists", p1);
    CHECK_EQ_STR(why, want);
    /* The earlier copy is untouched. */
    size_t a_len, b_len;
    const unsigned char *a = libc_bytes(&a_len);
    unsigned char *b = slurp(p1, &b_len);
    CHECK(b && a_len == b_len && memcmp(a, b, a_len) == 0);
    free(b);
    CHECK_EQ_INT(count_entries(s.priv), 2);
    remove_tree(s.root, false);
}

/* Runs plugin_file_copy on src/<name> and checks it was refused with why. */
static void expect_refused(const struct scratch *s, const char *name, const char *want_why)
{
    char path[PATH_MAX], out[PATH_MAX] = "x", why[300];
    snprintf(path, sizeof path, "%s/%s", s->src, name);
    CHECK_EQ_INT(plugin_file_copy(path, s->priv, "w0-g1", NULL, out, sizeof out, why, sizeof why),
                 -1);
    CHECK_EQ_STR(why, want_why);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(count_entries(s->priv), 0); /* nothing left behind */
}

TEST(copy_refuses_links_directories_fifos_empty_and_non_elf_files)
{
    struct scratch s;
    scratch_init(&s);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/link.so", s.src);
    CHECK_EQ_INT(symlink(libc_path(), p), 0);
    expect_refused(&s, "link.so", "is a symbolic link");

    snprintf(p, sizeof p, "%s/dir.so", s.src);
    CHECK_EQ_INT(mkdir(p, 0700), 0);
    expect_refused(&s, "dir.so", "not a regular file");

    snprintf(p, sizeof p, "%s/fifo.so", s.src);
    CHECK_EQ_INT(mkfifo(p, 0600), 0);
    expect_refused(&s, "fifo.so", "not a regular file"); /* and does not block */

    snprintf(p, sizeof p, "%s/empty.so", s.src);
    spit(p, "", 0);
    expect_refused(&s, "empty.so", "empty file");

    snprintf(p, sizeof p, "%s/text.so", s.src);
    spit(p, "#!/bin/sh\necho hi\n", 18);
    expect_refused(&s, "text.so", "not an ELF file");

    size_t size;
    const unsigned char *b = libc_bytes(&size);
    snprintf(p, sizeof p, "%s/half.so", s.src);
    spit(p, b, size / 2);
    expect_refused(&s, "half.so", "truncated: section headers end past the end of the file");

    char want[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/missing.so", s.src);
    snprintf(want, sizeof want, "cannot open %s: No such file or directory", p);
    expect_refused(&s, "missing.so", want);
    remove_tree(s.root, false);
}

TEST(copy_reports_unusable_private_dir_with_errno_text)
{
    struct scratch s;
    scratch_init(&s);
    char dir[PATH_MAX], out[PATH_MAX], why[300], want[PATH_MAX + 100];
    const char *base = strrchr(libc_path(), '/') + 1;

    snprintf(dir, sizeof dir, "%s/no-such-dir", s.root);
    CHECK_EQ_INT(plugin_file_copy(libc_path(), dir, "w0", NULL, out, sizeof out, why, sizeof why),
                 -1);
    snprintf(want, sizeof want, "cannot copy to %s/w0-%s: No such file or directory", dir, base);
    CHECK_EQ_STR(why, want);

    snprintf(dir, sizeof dir, "%s/plain-file", s.root);
    spit(dir, "x", 1);
    CHECK_EQ_INT(plugin_file_copy(libc_path(), dir, "w0", NULL, out, sizeof out, why, sizeof why),
                 -1);
    snprintf(want, sizeof want, "cannot copy to %s/w0-%s: Not a directory", dir, base);
    CHECK_EQ_STR(why, want);

    CHECK_EQ_INT(
        plugin_file_copy(libc_path(), "/proc", "w0", NULL, out, sizeof out, why, sizeof why), -1);
    CHECK(starts_with(why, "cannot copy to /proc/w0-"));
    CHECK(strchr(why, ':') != NULL);
    remove_tree(s.root, false);
}

TEST(copy_refuses_bad_prefix_and_short_output_buffer)
{
    struct scratch s;
    scratch_init(&s);
    char out[PATH_MAX], why[300];
    CHECK_EQ_INT(
        plugin_file_copy(libc_path(), s.priv, "a/b", NULL, out, sizeof out, why, sizeof why), -1);
    CHECK_EQ_STR(why, "bad arguments");
    CHECK_EQ_INT(plugin_file_copy(libc_path(), s.priv, "", NULL, out, sizeof out, why, sizeof why),
                 -1);
    CHECK_EQ_STR(why, "bad arguments");
    char small[16] = "x";
    CHECK_EQ_INT(
        plugin_file_copy(libc_path(), s.priv, "w0", NULL, small, sizeof small, why, sizeof why),
        -1);
    CHECK(starts_with(why, "path too long: "));
    CHECK_EQ_STR(small, "");
    CHECK_EQ_INT(count_entries(s.priv), 0);
    remove_tree(s.root, false);
}

struct appender {
    int fd;
    atomic_bool stop;
    unsigned long writes;
};

static void *append_until_stopped(void *arg)
{
    struct appender *a = arg;
    while (!atomic_load(&a->stop))
        if (write(a->fd, "x", 1) == 1)
            a->writes++;
    return NULL;
}

/* A file that grows while it is copied is reported as "retry later" and no
 * copy is left. Whether one attempt overlaps a write depends on scheduling,
 * so attempts repeat until one does; each must be a success or a retry. */
TEST(copy_asks_to_retry_while_source_is_being_written)
{
    struct scratch s;
    scratch_init(&s);
    size_t size;
    const unsigned char *b = libc_bytes(&size);
    char src[PATH_MAX], out[PATH_MAX], why[300];
    snprintf(src, sizeof src, "%s/growing.so", s.src);
    spit(src, b, size);
    struct appender a = {.fd = open(src, O_WRONLY | O_APPEND | O_CLOEXEC)};
    CHECK(a.fd >= 0);
    atomic_init(&a.stop, false);
    pthread_t t;
    CHECK_EQ_INT(pthread_create(&t, NULL, append_until_stopped, &a), 0);
    int retries = 0, others = 0;
    for (int i = 0; i < 2000 && retries == 0; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "g%d", i);
        int rc = plugin_file_copy(src, s.priv, prefix, NULL, out, sizeof out, why, sizeof why);
        if (rc == 1) {
            retries++;
            CHECK_EQ_STR(why, "still being written; will retry");
            CHECK_EQ_STR(out, "");
        } else if (rc == 0) {
            CHECK_EQ_INT(unlink(out), 0);
        } else {
            others++;
            fprintf(stderr, "  unexpected refusal: %s\n", why);
        }
    }
    atomic_store(&a.stop, true);
    CHECK_EQ_INT(pthread_join(t, NULL), 0);
    CHECK_EQ_INT(close(a.fd), 0);
    CHECK_EQ_INT(retries, 1);
    CHECK_EQ_INT(others, 0);
    CHECK(a.writes > 0);
    CHECK_EQ_INT(count_entries(s.priv), 0);
    remove_tree(s.root, false);
}

/* ---- plugin_file_is_candidate ---- */

TEST(is_candidate_table)
{
    char long_ok[201], long_bad[202];
    memset(long_ok, 'a', sizeof long_ok);
    memcpy(long_ok + 197, ".so", 4); /* 200 bytes */
    memset(long_bad, 'a', sizeof long_bad);
    memcpy(long_bad + 198, ".so", 4); /* 201 bytes */
    const struct {
        const char *name;
        int want;
    } cases[] = {
        {"hello.so", 1},
        {"a.so", 1},
        {"libfoo-1.2.so", 1},
        {"with space.so", 1},
        {long_ok, 1},
        {long_bad, 0},
        {"", 0},
        {".so", 0},
        {".hidden.so", 0},
        {"hello", 0},
        {"hello.so.1", 0},
        {"hello.SO", 0},
        {"hello.so~", 0},
        {"hel~lo.so", 0},
        {"hello.so.tmp", 0},
        {"hello.tmp", 0},
        {"hello.part", 0},
        {"hello.so.part", 0},
        {"hello.so.swp", 0},
        {".hello.so.swp", 0},
        {"dir/hello.so", 0},
        {"/hello.so", 0},
        {"new\nline.so", 0},
        {"tab\t.so", 0},
        {"x.txt", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = plugin_file_is_candidate(cases[i].name);
        if (got != cases[i].want)
            fprintf(stderr, "  candidate \"%s\"\n", cases[i].name);
        CHECK_EQ_INT(got, cases[i].want);
    }
    CHECK_EQ_INT(plugin_file_is_candidate(NULL), 0);
}

CHECK_MAIN()
