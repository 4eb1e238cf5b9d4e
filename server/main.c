/* evicorn: an ASGI-style HTTP/1.1 server whose routes are hot-loaded
 * plugins. main parses the command line, opens the listening sockets and
 * hands over to the master process. */
#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "master.h"

/* Plugins are copied here before dlopen (see plugins.c); one folder per
 * server, shared by its workers, removed at exit. */
static int make_private_dir(char *out, size_t len)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    snprintf(out, len, "%s/evicorn-%d-XXXXXX", tmp, (int)getpid());
    return mkdtemp(out) ? 0 : -1;
}

static void remove_private_dir(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[PATH_MAX];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

int main(int argc, char **argv)
{
    struct config cfg;
    char err[512];
    switch (config_parse(&cfg, argc, argv, err, sizeof err)) {
    case CONFIG_ERROR:
        fprintf(stderr, "evicorn: error: %s\n", err);
        config_free(&cfg);
        return 2;
    case CONFIG_EXIT_OK:
        config_free(&cfg);
        return 0;
    case CONFIG_OK:
        break;
    }
    log_threshold = (enum log_level)cfg.log_level;

    /* libev's ABI must match the headers we were built with. */
    if (ev_version_major() != EV_VERSION_MAJOR || ev_version_minor() < EV_VERSION_MINOR) {
        log_critical("libev %d.%d does not match the %d.%d evicorn was built with",
                     ev_version_major(), ev_version_minor(), EV_VERSION_MAJOR, EV_VERSION_MINOR);
        return 1;
    }
    if (!ev_default_loop(EVFLAG_AUTO)) {
        log_critical("cannot initialise the event loop");
        return 1;
    }
    /* Each connection is a descriptor: take all the kernel allows us, as
     * nginx's worker_rlimit_nofile does, rather than the shell's 1024. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
            log_warning("cannot raise the open-file limit: %s", strerror(errno));
    }
    /* A client that closes early must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);

    char private_dir[PATH_MAX];
    if (make_private_dir(private_dir, sizeof private_dir) < 0) {
        log_error("cannot create a private folder for plugin copies in %s: %m",
                  getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        config_free(&cfg);
        return 1;
    }
    cfg.private_dir = private_dir;

    struct listener *listeners;
    size_t n;
    if (listeners_open(&cfg, &listeners, &n, err, sizeof err) < 0) {
        log_error("%s", err);
        remove_private_dir(private_dir);
        config_free(&cfg);
        return 1;
    }
    int status = master_run(&cfg, listeners, n);
    listeners_close(listeners, n);
    if (cfg.uds)
        unlink(cfg.uds);
    remove_private_dir(private_dir);
    config_free(&cfg);
    return status;
}
