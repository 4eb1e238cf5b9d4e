/* plugin_file: deciding whether a file dropped into the plugins folder may be
 * loaded, and making the private copy that is loaded instead of it.
 *
 * The server never dlopens a file in the plugins folder itself: an operator
 * may overwrite it in place while it is mapped (Linux gives no ETXTBSY for
 * shared objects, and the running code would change under us), and dlopen
 * returns the already-loaded handle for a path it has seen. So each candidate
 * is copied into a directory only the server writes, under a name unique to
 * its generation, and only the copy is validated and loaded. The ELF check is
 * a pure function over a byte buffer, separate from the I/O, so it can be
 * fuzzed on its own. */
#ifndef EVICORN_PLUGIN_FILE_H
#define EVICORN_PLUGIN_FILE_H

#include <stddef.h>
#include <sys/stat.h>

/* How many leading bytes of a file plugin_file_copy hands to
 * plugin_file_check_elf. */
#define PLUGIN_FILE_HEAD_BYTES 65536

/* Any thread; pure. Checks that data (the first len bytes of a file whose
 * total size is file_size) is an ELF shared object this process could load:
 * magic, the class and byte order of this build, EV_CURRENT, ET_DYN, this
 * build's machine, header entry sizes of this class, program and section
 * header tables lying entirely inside file_size (so a truncated copy is
 * refused before dlopen maps it), at least one PT_LOAD and a PT_DYNAMIC whose
 * file ranges lie inside file_size. The program headers must lie inside data
 * (pass PLUGIN_FILE_HEAD_BYTES when the file is larger). A len greater than
 * file_size is treated as file_size. Never reads outside data[0..len).
 * Returns 0, or -1 with a short reason in why (when why is not NULL and
 * whylen > 0; why is set to "" on success). */
int plugin_file_check_elf(const unsigned char *data, size_t len, size_t file_size, char *why,
                          size_t whylen);

/* A judgement on the source by the descriptor it is read through (who owns
 * it, who may write it: plugin_trust.h), made before a byte is copied.
 * fn returns 0 to go on, or -1 with the reason in why to refuse. */
struct plugin_file_vet {
    int (*fn)(void *ud, const struct stat *st, const char *path, char *why, size_t whylen);
    void *ud;
};

/* Any thread; blocking file I/O (it reads the whole candidate, so call it off
 * the loop thread or accept the pause). Validates the candidate at path and
 * copies it to "<private_dir>/<prefix>-<basename of path>" (created with
 * O_EXCL and mode 0500, so an existing copy is never replaced), then checks
 * the copy with plugin_file_check_elf. The source is opened with O_NOFOLLOW
 * (a symbolic link is refused) and O_NONBLOCK (a FIFO named *.so must not
 * stall the caller) and must be a non-empty regular file, which vet (when
 * not NULL) accepts. If its size, mtime
 * or ctime changed while it was copied, the copy is deleted and 1 is returned
 * with "still being written; will retry": the caller tries again later. On
 * success out_path holds the copy's path (the caller owns that file from then
 * on) and why is "". Every failure deletes what this call created.
 * Returns 0 (copied), 1 (retry later) or -1 (refused, reason in why; out_path
 * is ""). prefix must be non-empty and contain no '/'. */
int plugin_file_copy(const char *path, const char *private_dir, const char *prefix,
                     const struct plugin_file_vet *vet, char *out_path, size_t out_len, char *why,
                     size_t whylen);

/* Any thread; pure. Whether a directory entry name is a plugin candidate:
 * 1 to 200 bytes, ends in ".so", does not start with '.', contains no '/',
 * no '~' and no control characters (names are logged), and does not end in
 * ".tmp", ".part" or ".swp". Returns 1 or 0. */
int plugin_file_is_candidate(const char *name);

#endif
