/* fuzz_plugin_file: the checks a plugin candidate passes before dlopen.
 *
 * Each input is a whole candidate file. It is checked in memory by
 * plugin_file_check_elf, as a truncated prefix of a larger file (so the
 * bounds against file_size, not len, are exercised) and as a file larger
 * than the bytes at hand, each from a heap block of exactly the length
 * passed so AddressSanitizer sees any read past it. Then it is written to a
 * temporary folder as "<name>.so" and run through plugin_file_copy, the
 * path the loader takes (open, copy to the private folder, check the copy);
 * whatever the copy made is removed again. Nothing is ever dlopened.
 *
 * The in-memory verdict and the copy's verdict must agree: the copy holds
 * the same bytes. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin_file.h"

static char dir[PATH_MAX];     /* where candidates are written */
static char private[PATH_MAX]; /* where plugin_file_copy copies them */

static void cleanup(void)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/cand.so", dir);
    unlink(path);
    rmdir(private);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/evicorn-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("fuzz_plugin_file: mkdtemp");
        abort();
    }
    snprintf(private, sizeof private, "%s/private", dir);
    if (mkdir(private, 0700) != 0) {
        perror("fuzz_plugin_file: mkdir");
        abort();
    }
    atexit(cleanup);
    return 0;
}

static int check_copy_of(const unsigned char *data, size_t len, size_t file_size)
{
    unsigned char *copy = malloc(len ? len : 1);
    if (!copy)
        abort();
    memcpy(copy, data, len);
    char why[256];
    int rc = plugin_file_check_elf(copy, len, file_size, why, sizeof why);
    if (rc != 0 && rc != -1)
        abort();
    if (rc == 0 && why[0] != '\0')
        abort(); /* why is "" on success */
    if (rc == -1 && why[0] == '\0')
        abort(); /* and says something on failure */
    free(copy);
    return rc;
}

static void write_all(int fd, const uint8_t *data, size_t size)
{
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            perror("fuzz_plugin_file: write");
            abort();
        }
        data += n;
        size -= (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t head = size < PLUGIN_FILE_HEAD_BYTES ? size : PLUGIN_FILE_HEAD_BYTES;
    int verdict = check_copy_of(data, head, size);
    /* A prefix of a file that is really this long... */
    check_copy_of(data, head / 2, size);
    /* ...and a file cut short after the bytes at hand. */
    check_copy_of(data, head, size + 4096);
    check_copy_of(data, head, size / 2);

    char path[PATH_MAX + 32], out[PATH_MAX + 64], why[512];
    snprintf(path, sizeof path, "%s/cand.so", dir);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror("fuzz_plugin_file: open");
        abort();
    }
    write_all(fd, data, size);
    close(fd);

    int rc = plugin_file_copy(path, private, "g1", NULL, out, sizeof out, why, sizeof why);
    if (rc == 0) {
        if (unlink(out) != 0) {
            perror("fuzz_plugin_file: unlink copy");
            abort();
        }
    } else if (out[0] != '\0') {
        abort(); /* out_path is "" on failure */
    }
    if (rc == 1) {
        fprintf(stderr, "fuzz_plugin_file: the candidate changed while copied: %s\n", why);
        abort(); /* nothing writes it meanwhile */
    }
    /* An empty file is refused before any ELF check. */
    if (size > 0 && (rc == 0) != (verdict == 0)) {
        fprintf(stderr, "fuzz_plugin_file: in memory %d, through the copy %d (%s)\n", verdict, rc,
                why);
        abort();
    }
    unlink(path);

    /* The name filter, on a name made of the input's first bytes. */
    char name[256];
    size_t n = size < sizeof name - 1 ? size : sizeof name - 1;
    memcpy(name, data, n);
    name[n] = '\0';
    plugin_file_is_candidate(name);
    return 0;
}
