/* evicorn: an ASGI-style HTTP/1.1 server whose routes are hot-loaded
 * plugins. main parses the command line, opens the listening sockets and
 * hands over to the master process. */
#include <dirent.h>
#include <stdbool.h>
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
#include "exit_status.h"
#include "listener.h"
#include "log.h"
#include "master.h"
#include "plugin_sign.h"
#include "privileges.h"

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

/* The bridge that serves an ASGI app is a plugin shipped with the server,
 * found relative to the binary (build tree: plugins/asgi.so beside it;
 * installed: ../lib/evicorn/asgi.so), never in the user's plugins folder. */
static char bridge_path[PATH_MAX];

static int find_bridge(struct config *cfg)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    static const char *const candidates[] = {"%.3800s/plugins/asgi.so",
                                             "%.3800s/../lib/evicorn/asgi.so"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        int len = snprintf(bridge_path, sizeof bridge_path, candidates[i], exe);
        if (len > 0 && (size_t)len < sizeof bridge_path && access(bridge_path, R_OK) == 0) {
            cfg->bridge_file = bridge_path;
            if (cfg->app)
                cfg->bridge = bridge_path;
            return 0;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct config cfg;
    char err[512];
    switch (config_parse(&cfg, argc, argv, err, sizeof err)) {
    case CONFIG_ERROR:
        fprintf(stderr, "evicorn: error: %s\n", err);
        config_free(&cfg);
        return EXIT_USAGE;
    case CONFIG_EXIT_OK:
        config_free(&cfg);
        return EXIT_OK;
    case CONFIG_OK:
        break;
    }
    log_threshold = (enum log_level)cfg.log_level;

    /* Who the workers run as, and the key plugins are verified with, are
     * settled before anything starts: a bad one is a bad flag. */
    struct run_as run_as;
    struct plugin_key *plugin_key = NULL;
    if (privileges_resolve(cfg.user, cfg.group, &run_as, err, sizeof err) < 0 ||
        (cfg.plugin_pubkey &&
         !(plugin_key = plugin_key_load(cfg.plugin_pubkey, err, sizeof err)))) {
        fprintf(stderr, "evicorn: error: %s\n", err);
        config_free(&cfg);
        return EXIT_USAGE;
    }
    cfg.run_as = &run_as;
    cfg.plugin_key = plugin_key;

    /* libev's ABI must match the headers we were built with. */
    if (ev_version_major() != EV_VERSION_MAJOR || ev_version_minor() < EV_VERSION_MINOR) {
        log_critical("libev %d.%d does not match the %d.%d evicorn was built with",
                     ev_version_major(), ev_version_minor(), EV_VERSION_MAJOR, EV_VERSION_MINOR);
        return EXIT_ERROR;
    }
    if (!ev_default_loop(EVFLAG_AUTO)) {
        log_critical("cannot initialise the event loop");
        return EXIT_ERROR;
    }
    /* Each connection is a descriptor: take all the kernel allows us, as
     * nginx's worker_rlimit_nofile does, rather than the shell's 1024. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
            log_warning("cannot raise the open-file limit: %s", strerror(errno));
    }
    /* A client that closes early must cost an EPIPE, not the process; and a
     * plugin copy that exceeds RLIMIT_FSIZE must cost an EFBIG (the plugin
     * is refused), not the worker. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);

    bool have_bridge = find_bridge(&cfg) == 0;
    if (cfg.app && !have_bridge) {
        log_error("cannot serve %s: the Python bridge plugin (asgi.so) was not found next to %s",
                  cfg.app, argv[0]);
        plugin_key_free(plugin_key);
        config_free(&cfg);
        return EXIT_ERROR;
    }

    char private_dir[PATH_MAX];
    if (make_private_dir(private_dir, sizeof private_dir) < 0) {
        log_error("cannot create a private folder for plugin copies in %s: %m",
                  getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        plugin_key_free(plugin_key);
        config_free(&cfg);
        return EXIT_ERROR;
    }
    cfg.private_dir = private_dir;
    /* Plugin copies are written and mapped by the workers: the folder is
     * theirs alone (mkdtemp made it 0700). */
    if (run_as.drop && chown(private_dir, run_as.uid, run_as.gid) < 0) {
        log_error("cannot give the private folder %s to %s: %m", private_dir, run_as.name);
        remove_private_dir(private_dir);
        plugin_key_free(plugin_key);
        config_free(&cfg);
        return EXIT_ERROR;
    }

    struct listener *listeners;
    size_t n;
    if (listeners_open(&cfg, &listeners, &n, err, sizeof err) < 0) {
        log_error("%s", err);
        remove_private_dir(private_dir);
        plugin_key_free(plugin_key);
        config_free(&cfg);
        return EXIT_ERROR;
    }
    int status = master_run(&cfg, listeners, n);
    listeners_close(listeners, n);
    if (cfg.uds)
        unlink(cfg.uds);
    remove_private_dir(private_dir);
    plugin_key_free(plugin_key);
    config_free(&cfg);
    return status;
}
