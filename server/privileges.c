/* privileges: resolving and dropping to the workers' user; see
 * privileges.h. */
#include "privileges.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A name, or a number when it is all digits (as chown accepts). */
static int parse_id(const char *s, unsigned long *out)
{
    char *end;
    if (!*s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v >= (unsigned long)(uid_t)-1)
        return -1;
    *out = v;
    return 0;
}

int privileges_resolve(const char *user, const char *group, struct run_as *out, char *err,
                       size_t errlen)
{
    *out = (struct run_as){.uid = geteuid(), .gid = getegid()};
    if (!user) {
        if (group) {
            snprintf(err, errlen, "--group needs --user");
            return -1;
        }
        const struct passwd *pw = getpwuid(out->uid);
        if (pw)
            snprintf(out->name, sizeof out->name, "%s", pw->pw_name);
        else
            snprintf(out->name, sizeof out->name, "uid %u", (unsigned)out->uid);
        return 0;
    }
    if (geteuid() != 0) {
        snprintf(err, errlen,
                 "--user %s: evicorn must be started as root to run its workers as another user",
                 user);
        return -1;
    }
    unsigned long id;
    const struct passwd *pw = parse_id(user, &id) == 0 ? getpwuid((uid_t)id) : getpwnam(user);
    if (!pw) {
        snprintf(err, errlen, "--user: no such user '%s'", user);
        return -1;
    }
    out->drop = true;
    out->uid = pw->pw_uid;
    out->gid = pw->pw_gid;
    snprintf(out->name, sizeof out->name, "%s", pw->pw_name);
    if (group) {
        const struct group *gr = parse_id(group, &id) == 0 ? getgrgid((gid_t)id) : getgrnam(group);
        if (!gr) {
            snprintf(err, errlen, "--group: no such group '%s'", group);
            return -1;
        }
        out->gid = gr->gr_gid;
    }
    return 0;
}

int privileges_drop(const struct run_as *r)
{
    if (!r->drop)
        return 0;
    /* Groups first: once the uid is not root, they cannot change. */
    if (setgroups(0, NULL) < 0 || setresgid(r->gid, r->gid, r->gid) < 0 ||
        setresuid(r->uid, r->uid, r->uid) < 0)
        return -1;
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
        return -1;
    if (ru != r->uid || eu != r->uid || su != r->uid || rg != r->gid || eg != r->gid ||
        sg != r->gid || getgroups(0, NULL) != 0) {
        errno = EPERM;
        return -1;
    }
    /* Dropping to root is no drop; any other user must not get it back. */
    if (r->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        errno = EPERM;
        return -1;
    }
    return 0;
}
