/* privileges: who the workers run as.
 *
 * Like nginx's `user` directive: the master keeps the privileges it was
 * started with (to bind ports below 1024, to read a key only root may
 * read, to supervise), and each worker, before it loads any plugin, drops
 * to --user/--group with no supplementary groups, so plugin code never
 * runs as root. Without --user the workers run as whoever started the
 * server (a warning says so when that is root).
 *
 * The user the workers run as is also the one, beside root, whose plugin
 * files and folders are trusted (plugin_trust.h). */
#ifndef EVICORN_PRIVILEGES_H
#define EVICORN_PRIVILEGES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct run_as {
    bool drop;     /* --user was given: workers change identity */
    uid_t uid;     /* the workers' user (the current one without --user) */
    gid_t gid;     /* and group */
    char name[64]; /* the user's name, for messages */
};

/* Master, at startup. Resolves --user and --group (names or numbers;
 * --group defaults to the user's primary group). Returns 0, or -1 with
 * one line in err: an unknown user or group, --group without --user, or
 * --user when not started as root. */
int privileges_resolve(const char *user, const char *group, struct run_as *out, char *err,
                       size_t errlen);

/* Worker, after fork and before loading anything. Sets the real,
 * effective and saved ids to the --user's and drops every supplementary
 * group, then checks that root cannot be regained. Returns 0 (nothing to
 * do without --user), or -1 with errno set. */
int privileges_drop(const struct run_as *r);

#endif
