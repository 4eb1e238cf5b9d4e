/* run: the server from the command line to its exit status: parse argv,
 * settle who the workers run as, open the listening sockets, and hand over
 * to the master process; or, given an APP outside Python, hand the process
 * to a Python interpreter (app_launch.h). The C binary's main and the
 * Python module both start here (embedding.h). */
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

#include "app_launch.h"
#include "config.h"
#include "embedding.h"
#include "env_file.h"
#include "exit_status.h"
#include "listener.h"
#include "log.h"
#include "log_sink.h"
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

/* Python's logging as uvicorn sets it up (inside Python); with
 * --log-config the server's own lines go through it too. -1 with one line
 * in err. */
static int setup_logging(const struct config *cfg, const struct evicorn_embedding *emb, char *err,
                         size_t errlen)
{
    bool python = emb && emb->configure_logging && emb->log_sink;
    if (!python) {
        if (!cfg->log_config)
            return 0;
        snprintf(err, errlen, "--log-config configures Python's logging: it needs an APP");
        return -1;
    }
    const char *level = cfg->log_level_given ? log_level_name(cfg->log_level) : NULL;
    if (emb->configure_logging(cfg->log_config, level, cfg->access_log, cfg->use_colors, err,
                               errlen) < 0)
        return -1;
    if (cfg->log_config && log_sink_install(emb->log_sink) < 0) {
        snprintf(err, errlen, "--log-config: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int evicorn_run(int argc, char **argv, const struct evicorn_embedding *emb)
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
    log_use_colors(cfg.use_colors < 0 ? isatty(STDERR_FILENO) : cfg.use_colors,
                   cfg.use_colors < 0 ? isatty(STDOUT_FILENO) : cfg.use_colors);

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

    /* An APP is served inside a Python interpreter: the C binary hands the
     * process over to one; the module (emb) is already inside one. */
    if (cfg.app && !emb) {
        int status = app_launch(&cfg, argc, argv);
        plugin_key_free(plugin_key);
        config_free(&cfg);
        return status;
    }
    cfg.embedding = emb;
    cfg.bridge_entry = emb ? emb->bridge_entry : NULL;

    /* The environment is final before anything reads it: --env-file, then
     * $WEB_CONCURRENCY as --workers' default (uvicorn's order). Inside
     * Python the variables go through os.environ, which the app reads. */
    if (cfg.env_file)
        env_file_load(cfg.env_file, emb ? emb->set_env : NULL, NULL);
    if (config_apply_env(&cfg, err, sizeof err) < 0 ||
        setup_logging(&cfg, emb, err, sizeof err) < 0) {
        fprintf(stderr, "evicorn: error: %s\n", err);
        plugin_key_free(plugin_key);
        config_free(&cfg);
        return EXIT_USAGE;
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
    int opened = listeners_open(&cfg, &listeners, &n, err, sizeof err);
    if (emb && emb->unset_env)
        for (size_t i = 0; i < LISTENER_ACTIVATION_VARS; i++)
            emb->unset_env(listener_activation_vars[i]);
    if (opened < 0) {
        log_error("%s", err);
        remove_private_dir(private_dir);
        plugin_key_free(plugin_key);
        config_free(&cfg);
        return opened == LISTENERS_USAGE ? EXIT_USAGE : EXIT_ERROR;
    }
    int status = master_run(&cfg, listeners, n);
    log_drain();
    listeners_close(listeners, n);
    if (cfg.uds)
        unlink(cfg.uds);
    remove_private_dir(private_dir);
    plugin_key_free(plugin_key);
    config_free(&cfg);
    return status;
}
