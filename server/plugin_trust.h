/* plugin_trust: whether the server may run code from a plugin file, judged
 * by who could have written it.
 *
 * Loading a plugin runs its code with the workers' privileges, so a file
 * anyone else can change is a way in. As sshd's StrictModes does for key
 * files (and cron and sudo for theirs), a plugin file is trusted only when
 * it is owned by root or by the user the workers run as and is writable by
 * neither its group nor others, and only when the same holds for its
 * folder and every folder above it up to "/" (after symbolic links are
 * resolved: a link's own owner does not matter, where it leads does). A
 * sticky folder owned by root (/tmp) may be writable by others: there,
 * only root and an entry's owner can rename or remove that entry, so
 * nobody else can swap a trusted folder below it for their own.
 *
 * The file is judged by the descriptor it is read through (fstat), so a
 * file swapped in after the check is never the one loaded. Pure checks:
 * they log nothing and change nothing. */
#ifndef EVICORN_PLUGIN_TRUST_H
#define EVICORN_PLUGIN_TRUST_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Whom to trust besides root. */
struct plugin_trust {
    uid_t uid;        /* the user the workers run as */
    const char *name; /* that user's name, for messages */
};

/* Checks the plugin file open as st (fstat of the descriptor it is read
 * through); path is for the message. Returns 0, or -1 with one sentence in
 * why naming the owner or mode at fault and the fix. */
int plugin_trust_file(const struct plugin_trust *t, const struct stat *st, const char *path,
                      char *why, size_t whylen);

/* Checks the folder dir and every folder above it, after resolving
 * symbolic links. Returns 0, or -1 with one sentence in why naming the
 * folder, the owner or mode at fault and the fix (or why it could not be
 * checked). */
int plugin_trust_folder(const struct plugin_trust *t, const char *dir, char *why, size_t whylen);

#endif
