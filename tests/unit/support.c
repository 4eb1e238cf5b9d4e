/* Helpers shared by evicorn's C unit tests; see support.h. */
#include "support.h"
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void break_loop_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    if (t->data)
        *(int *)t->data = 1;
    ev_break(loop, EVBREAK_ALL);
}

int run_bounded(struct ev_loop *loop, double seconds)
{
    int fired = 0;
    ev_timer watchdog;
    ev_timer_init(&watchdog, break_loop_cb, seconds, 0.);
    watchdog.data = &fired;
    ev_timer_start(loop, &watchdog);
    ev_run(loop, 0);
    ev_timer_stop(loop, &watchdog);
    return !fired;
}

void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void remove_tree(const char *dir, bool missing_ok)
{
    DIR *d = opendir(dir);
    if (!missing_ok)
        CHECK(d != NULL);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        CHECK_EQ_INT(lstat(p, &st), 0);
        if (S_ISDIR(st.st_mode))
            remove_tree(p, missing_ok);
        else
            CHECK_EQ_INT(unlink(p), 0);
    }
    CHECK_EQ_INT(closedir(d), 0);
    CHECK_EQ_INT(rmdir(dir), 0);
}
