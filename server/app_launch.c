/* app_launch: choosing the interpreter for an APP and handing over to it;
 * see app_launch.h. */
#include "app_launch.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "exit_status.h"
#include "log.h"

/* What the probe prints: the extension-module suffix and the version. */
static const char probe_code[] = "import sys, sysconfig\n"
                                 "print(sysconfig.get_config_var('EXT_SUFFIX') or '')\n"
                                 "print('%d.%d.%d' % sys.version_info[:3])\n";

static bool executable(const char *path)
{
    return access(path, X_OK) == 0;
}

/* $VIRTUAL_ENV/bin/python, else python3 on PATH. */
static int find_interpreter(char *out, size_t len, const char **why)
{
    const char *venv = getenv("VIRTUAL_ENV");
    if (venv && *venv) {
        snprintf(out, len, "%s/bin/python", venv);
        if (executable(out))
            return 0;
        *why = "VIRTUAL_ENV names a folder without bin/python";
        return -1;
    }
    const char *path = getenv("PATH");
    for (const char *p = path ? path : ""; *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0 && snprintf(out, len, "%.*s/python3", (int)n, p) < (int)len && executable(out))
            return 0;
        p += n + (e ? 1 : 0);
    }
    *why = "no python3 on PATH and no VIRTUAL_ENV";
    return -1;
}

/* Runs python with argv; its stdout (up to len bytes) into out when out is
 * not NULL. Returns its exit status, or -1. */
static int run_python(const char *python, char *const argv[], char *out, size_t len)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, STDERR_FILENO);
        execv(python, argv);
        _exit(EXIT_EXEC_FAILED);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(fds[0], out ? out + n : (char[64]){0}, out ? len - 1 - n : 64)) > 0)
        if (out)
            n += (size_t)r;
    close(fds[0]);
    if (out)
        out[n] = '\0';
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The folder holding evicorn/_core<suffix> beside this binary: the build
 * tree (<bindir>/python) or an install prefix (<bindir>/../lib/evicorn/python). */
static int module_beside_binary(const char *suffix, char *out, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0 || !*suffix)
        return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    static const char *const candidates[] = {"%s/python", "%s/../lib/evicorn/python"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        char dir[PATH_MAX], file[PATH_MAX + 320];
        if (snprintf(dir, sizeof dir, candidates[i], exe) >= (int)sizeof dir)
            continue;
        if (snprintf(file, sizeof file, "%s/evicorn/_core%s", dir, suffix) >= (int)sizeof file)
            continue;
        if (len >= PATH_MAX && access(file, R_OK) == 0 && realpath(dir, out))
            return 0;
    }
    return -1;
}

int app_launch(const struct config *cfg, int argc, char **argv)
{
    char python[PATH_MAX];
    const char *why = NULL;
    if (find_interpreter(python, sizeof python, &why) < 0) {
        log_error("cannot serve %s: %s", cfg->app, why);
        return EXIT_ERROR;
    }
    char probe[256];
    char *probe_argv[] = {python, "-I", "-c", (char *)probe_code, NULL};
    if (run_python(python, probe_argv, probe, sizeof probe) != 0) {
        log_error("cannot serve %s: %s does not run", cfg->app, python);
        return EXIT_ERROR;
    }
    char *nl = strchr(probe, '\n');
    const char *suffix = probe, *version = nl ? nl + 1 : "?";
    if (nl)
        *nl = '\0';
    char *end = strchr(version, '\n');
    if (end)
        *end = '\0';

    char moddir[PATH_MAX];
    bool beside = module_beside_binary(suffix, moddir, sizeof moddir) == 0;
    if (beside) {
        /* Ahead of the interpreter's own packages: this binary's module. */
        const char *old = getenv("PYTHONPATH");
        char *path = malloc(strlen(moddir) + (old ? strlen(old) : 0) + 2);
        if (!path) {
            log_error("cannot serve %s: out of memory", cfg->app);
            return EXIT_ERROR;
        }
        sprintf(path, "%s%s%s", moddir, old && *old ? ":" : "", old && *old ? old : "");
        setenv("PYTHONPATH", path, 1);
        free(path);
    } else {
        char *check_argv[] = {python, "-c", "import evicorn._core", NULL};
        if (run_python(python, check_argv, NULL, 0) != 0) {
            log_error("cannot serve %s with %s (Python %s): evicorn's module is neither built "
                      "for it beside this binary nor installed in it; pip install evicorn "
                      "into that environment, or build evicorn with it",
                      cfg->app, python, version);
            return EXIT_ERROR;
        }
    }
    log_info("serving %s with %s (Python %s)", cfg->app, python, version);
    log_flush();
#ifdef EVICORN_ASAN_RUNTIME
    /* A sanitized build's module needs the sanitizer's runtime loaded
     * before anything else in the interpreter's process; and the
     * interpreter, which frees little at exit, is not what the leak
     * checker is for. */
    const char *pre = getenv("LD_PRELOAD");
    char preload[PATH_MAX * 2];
    snprintf(preload, sizeof preload, "%s%s%s", EVICORN_ASAN_RUNTIME, pre && *pre ? ":" : "",
             pre && *pre ? pre : "");
    setenv("LD_PRELOAD", preload, 1);
    const char *opts = getenv("ASAN_OPTIONS");
    char asan[1024];
    snprintf(asan, sizeof asan, "%s%sdetect_leaks=0", opts && *opts ? opts : "",
             opts && *opts ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
#endif

    /* python -m evicorn ARGS...: the same arguments, the same process. */
    char **args = calloc((size_t)argc + 3, sizeof *args);
    if (!args) {
        log_error("cannot serve %s: out of memory", cfg->app);
        return EXIT_ERROR;
    }
    args[0] = python;
    args[1] = "-m";
    args[2] = "evicorn";
    for (int i = 1; i < argc; i++)
        args[i + 2] = argv[i];
    execv(python, args);
    log_error("cannot serve %s: cannot run %s: %s", cfg->app, python, strerror(errno));
    free(args);
    return EXIT_ERROR;
}
