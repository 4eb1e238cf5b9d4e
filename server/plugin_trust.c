/* plugin_trust: owner and mode checks on plugin files and their folders;
 * see plugin_trust.h for the rule and why it is enough. */
#include "plugin_trust.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *owner_name(uid_t uid, char *buf, size_t len)
{
    const struct passwd *pw = getpwuid(uid);
    if (pw)
        snprintf(buf, len, "%s (uid %u)", pw->pw_name, (unsigned)uid);
    else
        snprintf(buf, len, "uid %u", (unsigned)uid);
    return buf;
}

static bool trusted_owner(const struct plugin_trust *t, uid_t uid)
{
    return uid == 0 || uid == t->uid;
}

static const char *who_writes(mode_t mode)
{
    bool g = mode & S_IWGRP, o = mode & S_IWOTH;
    return g && o ? "its group and others" : g ? "its group" : "others";
}

/* One object, file or folder: owner, then group/other write bits. */
static int judge(const struct plugin_trust *t, const struct stat *st, const char *what,
                 const char *path, char *why, size_t whylen)
{
    char owner[96];
    if (!trusted_owner(t, st->st_uid)) {
        if (t->uid == 0)
            snprintf(why, whylen, "%s %s is owned by %s, not by root; fix: chown root %s", what,
                     path, owner_name(st->st_uid, owner, sizeof owner), path);
        else
            snprintf(why, whylen,
                     "%s %s is owned by %s, not by root or %s, the user the workers run as; "
                     "fix: chown root %s",
                     what, path, owner_name(st->st_uid, owner, sizeof owner), t->name, path);
        return -1;
    }
    if (!(st->st_mode & (S_IWGRP | S_IWOTH)))
        return 0;
    /* A sticky folder owned by root may be writable by all: entries in it
     * can be renamed or removed only by root or their owners. */
    if (S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX) && st->st_uid == 0)
        return 0;
    snprintf(why, whylen, "%s %s is writable by %s (mode %04o); fix: chmod go-w %s", what, path,
             who_writes(st->st_mode), (unsigned)(st->st_mode & 07777), path);
    return -1;
}

int plugin_trust_file(const struct plugin_trust *t, const struct stat *st, const char *path,
                      char *why, size_t whylen)
{
    return judge(t, st, "file", path, why, whylen);
}

int plugin_trust_folder(const struct plugin_trust *t, const char *dir, char *why, size_t whylen)
{
    char real[PATH_MAX];
    if (!realpath(dir, real)) {
        snprintf(why, whylen, "cannot resolve folder %s: %s", dir, strerror(errno));
        return -1;
    }
    /* From the folder itself up to "/", each on its resolved path: no
     * component below is a link any more. */
    for (bool first = true;; first = false) {
        struct stat st;
        if (lstat(real, &st) < 0) {
            snprintf(why, whylen, "cannot check folder %s: %s", real, strerror(errno));
            return -1;
        }
        if (judge(t, &st, "folder", real, why, whylen) < 0) {
            if (!first) {
                size_t n = strlen(why);
                snprintf(why + n, whylen > n ? whylen - n : 0, " (a folder above %s)", dir);
            }
            return -1;
        }
        if (strcmp(real, "/") == 0)
            return 0;
        char *slash = strrchr(real, '/');
        if (slash == real)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
}
