/* reload_watch: inotify over folder trees, uvicorn's file filter, and a
 * quiet period; see reload_watch.h. */
#include "reload_watch.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* IN_MODIFY too: a save truncates first, and the quiet period (and
 * reload_watch_pending) must cover a file from then, not from its close. */
#define EVENTS (IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE)

static const char *const default_includes[] = {"*.py"};
static const char *const default_excludes[] = {".*", ".py[cod]", ".sw.*", "~*"};

struct watched_dir {
    int wd;
    char *path;      /* absolute */
    size_t root_len; /* length of the watched root it belongs to, for relative names */
};

struct reload_watch {
    struct ev_loop *loop;
    const struct config *cfg;
    reload_watch_fn fn;
    void *ud;
    int fd;
    ev_io io;
    ev_timer quiet;
    struct watched_dir *dirs;
    size_t ndirs, cap;
    char **exclude_dirs; /* --reload-exclude values that are folders (realpath) */
    size_t nexclude_dirs;
    char changed[PATH_MAX]; /* the first change since the last report */
    bool warned;            /* a folder could not be watched: said once */
};

/* ---- uvicorn's filter ---- */

static bool listed(const struct str_list *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i], s) == 0)
            return true;
    return false;
}

/* Path.match: the pattern's components, from the right, each match the
 * path's components, from the right. */
static bool path_match(const char *path, const char *pattern)
{
    const char *pe = path + strlen(path), *qe = pattern + strlen(pattern);
    for (;;) {
        const char *ps = pe, *qs = qe;
        while (ps > path && ps[-1] != '/')
            ps--;
        while (qs > pattern && qs[-1] != '/')
            qs--;
        char comp[NAME_MAX + 1], pat[NAME_MAX + 1];
        size_t pn = (size_t)(pe - ps), qn = (size_t)(qe - qs);
        if (pn > NAME_MAX || qn > NAME_MAX)
            return false;
        memcpy(comp, ps, pn);
        comp[pn] = '\0';
        memcpy(pat, qs, qn);
        pat[qn] = '\0';
        if (fnmatch(pat, comp, 0) != 0)
            return false;
        if (qs == pattern)
            return true;
        if (ps == path)
            return false; /* more pattern than path */
        pe = ps - 1;
        qe = qs - 1;
    }
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool excluded(const struct config *cfg, const char *relpath)
{
    for (size_t i = 0; i < sizeof default_excludes / sizeof *default_excludes; i++)
        if (!listed(&cfg->reload_includes, default_excludes[i]) &&
            path_match(relpath, default_excludes[i]))
            return true;
    for (size_t i = 0; i < cfg->reload_excludes.n; i++) {
        struct stat st;
        const char *e = cfg->reload_excludes.items[i];
        if (stat(e, &st) == 0 && S_ISDIR(st.st_mode))
            continue; /* a folder: judged by where the file is */
        if (path_match(relpath, e))
            return true;
    }
    return false;
}

/* One include pattern's verdict: 1 reload, 0 ignore, -1 no match. */
static int judge(const struct config *cfg, const char *relpath, const char *include)
{
    if (!path_match(relpath, include))
        return -1;
    if (ends_with(relpath, include))
        return 1; /* named outright */
    return excluded(cfg, relpath) ? 0 : 1;
}

bool reload_watch_matches(const struct config *cfg, const char *relpath)
{
    for (size_t i = 0; i < sizeof default_includes / sizeof *default_includes; i++) {
        if (listed(&cfg->reload_excludes, default_includes[i]))
            continue; /* a default include the user excluded */
        int v = judge(cfg, relpath, default_includes[i]);
        if (v >= 0)
            return v;
    }
    for (size_t i = 0; i < cfg->reload_includes.n; i++) {
        if (listed(&cfg->reload_excludes, cfg->reload_includes.items[i]))
            continue; /* both included and excluded: excluded wins */
        int v = judge(cfg, relpath, cfg->reload_includes.items[i]);
        if (v >= 0)
            return v;
    }
    return false;
}

/* ---- folders ---- */

/* A folder below a watched one that cannot be watched (inotify's watch
 * limit, say): said once, as changes there go unnoticed. */
static void watch_failed(struct reload_watch *w, const char *path)
{
    if (w->warned)
        return;
    w->warned = true;
    log_warning(
        "--reload: cannot watch %s: %s%s; changes there are not noticed", path, strerror(errno),
        errno == ENOSPC ? " (raise fs.inotify.max_user_watches, or narrow --reload-dir)" : "");
}

static bool folder_excluded(const struct reload_watch *w, const char *path)
{
    for (size_t i = 0; i < w->nexclude_dirs; i++) {
        size_t n = strlen(w->exclude_dirs[i]);
        if (strncmp(path, w->exclude_dirs[i], n) == 0 && (path[n] == '/' || path[n] == '\0'))
            return true;
    }
    return false;
}

/* Folders no app code lives in, and where trees are big (.git, .venv,
 * node_modules' dot-folders, __pycache__): not watched, which keeps
 * inotify's per-user watch limit for the code. */
static bool folder_skipped(const char *name)
{
    return name[0] == '.' || strcmp(name, "__pycache__") == 0;
}

static int add_dir(struct reload_watch *w, const char *path, size_t root_len)
{
    if (folder_excluded(w, path))
        return 0;
    int wd = inotify_add_watch(w->fd, path, EVENTS | IN_ONLYDIR);
    if (wd < 0)
        return -1;
    for (size_t i = 0; i < w->ndirs; i++)
        if (w->dirs[i].wd == wd)
            return 0; /* already watched (a folder reached twice) */
    if (w->ndirs == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        struct watched_dir *d = realloc(w->dirs, cap * sizeof *d);
        if (!d)
            return -1;
        w->dirs = d;
        w->cap = cap;
    }
    char *copy = strdup(path);
    if (!copy)
        return -1;
    w->dirs[w->ndirs++] = (struct watched_dir){.wd = wd, .path = copy, .root_len = root_len};
    /* Everything below, as it is now; what appears later is added when its
     * IN_CREATE arrives. */
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (folder_skipped(e->d_name))
            continue; /* also . and .. */
        char sub[PATH_MAX];
        if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub)
            continue;
        struct stat st;
        if ((e->d_type == DT_DIR ||
             (e->d_type == DT_UNKNOWN && lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))) &&
            add_dir(w, sub, root_len) < 0)
            watch_failed(w, sub);
    }
    closedir(d);
    return 0;
}

/* The kernel dropped a watch (its folder was removed or moved away). */
static void forget_dir(struct reload_watch *w, int wd)
{
    for (size_t i = 0; i < w->ndirs; i++)
        if (w->dirs[i].wd == wd) {
            free(w->dirs[i].path);
            w->dirs[i] = w->dirs[--w->ndirs];
            return;
        }
}

static const struct watched_dir *dir_of(const struct reload_watch *w, int wd)
{
    for (size_t i = 0; i < w->ndirs; i++)
        if (w->dirs[i].wd == wd)
            return &w->dirs[i];
    return NULL;
}

/* ---- events ---- */

static void on_quiet(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct reload_watch *w = t->data;
    char changed[PATH_MAX];
    snprintf(changed, sizeof changed, "%s", w->changed);
    w->changed[0] = '\0';
    w->fn(w->ud, changed);
}

static void read_events(struct reload_watch *w)
{
    struct ev_loop *loop = w->loop;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    while ((n = read(w->fd, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_IGNORED) {
                forget_dir(w, ev->wd);
                continue;
            }
            const struct watched_dir *d = dir_of(w, ev->wd);
            if (!d || !ev->len)
                continue;
            char path[PATH_MAX];
            if (snprintf(path, sizeof path, "%s/%s", d->path, ev->name) >= (int)sizeof path)
                continue;
            if (ev->mask & IN_ISDIR) {
                if ((ev->mask & (IN_CREATE | IN_MOVED_TO)) && !folder_skipped(ev->name) &&
                    add_dir(w, path, d->root_len) < 0)
                    watch_failed(w, path);
                continue;
            }
            const char *rel = path + d->root_len + 1;
            if (folder_excluded(w, path) || !reload_watch_matches(w->cfg, rel))
                continue;
            if (!w->changed[0])
                snprintf(w->changed, sizeof w->changed, "%s", rel);
            /* Restarted by every change: report once things are quiet. */
            ev_timer_stop(loop, &w->quiet);
            ev_timer_set(&w->quiet, w->cfg->reload_delay, 0);
            ev_timer_start(loop, &w->quiet);
        }
    }
}

static void on_events(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    read_events(io->data);
}

bool reload_watch_pending(struct reload_watch *w)
{
    read_events(w);
    return ev_is_active(&w->quiet);
}

struct reload_watch *reload_watch_new(struct ev_loop *loop, const struct config *cfg,
                                      reload_watch_fn fn, void *ud, char *err, size_t errlen)
{
    struct reload_watch *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "--reload: out of memory");
        return NULL;
    }
    w->loop = loop;
    w->cfg = cfg;
    w->fn = fn;
    w->ud = ud;
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        snprintf(err, errlen, "--reload: inotify: %s", strerror(errno));
        free(w);
        return NULL;
    }
    w->exclude_dirs = calloc(cfg->reload_excludes.n + 1, sizeof *w->exclude_dirs);
    if (!w->exclude_dirs) {
        snprintf(err, errlen, "--reload: out of memory");
        reload_watch_free(w);
        return NULL;
    }
    for (size_t i = 0; i < cfg->reload_excludes.n; i++) {
        char real[PATH_MAX];
        struct stat st;
        const char *e = cfg->reload_excludes.items[i];
        if (stat(e, &st) < 0 || !S_ISDIR(st.st_mode) || !realpath(e, real))
            continue; /* a pattern, not a folder */
        if (!(w->exclude_dirs[w->nexclude_dirs] = strdup(real))) {
            snprintf(err, errlen, "--reload: out of memory");
            reload_watch_free(w);
            return NULL;
        }
        w->nexclude_dirs++;
    }
    static const char *const here[] = {"."};
    const char *const *dirs = cfg->reload_dirs.n ? cfg->reload_dirs.items : here;
    size_t ndirs = cfg->reload_dirs.n ? cfg->reload_dirs.n : 1;
    char listed_dirs[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < ndirs; i++) {
        char real[PATH_MAX];
        if (!realpath(dirs[i], real) || add_dir(w, real, strlen(real)) < 0) {
            snprintf(err, errlen, "--reload-dir %s: %s", dirs[i], strerror(errno));
            reload_watch_free(w);
            return NULL;
        }
        int n =
            snprintf(listed_dirs + used, sizeof listed_dirs - used, "%s'%s'", i ? ", " : "", real);
        if (n > 0 && (size_t)n < sizeof listed_dirs - used)
            used += (size_t)n;
    }
    log_info("Will watch for changes in these directories: [%s]", listed_dirs);
    ev_io_init(&w->io, on_events, w->fd, EV_READ);
    w->io.data = w;
    ev_io_start(loop, &w->io);
    ev_init(&w->quiet, on_quiet);
    w->quiet.data = w;
    return w;
}

void reload_watch_free(struct reload_watch *w)
{
    if (!w)
        return;
    ev_io_stop(w->loop, &w->io); /* stopping a watcher never started is a no-op */
    ev_timer_stop(w->loop, &w->quiet);
    close(w->fd);
    for (size_t i = 0; i < w->ndirs; i++)
        free(w->dirs[i].path);
    free(w->dirs);
    for (size_t i = 0; w->exclude_dirs && i < w->nexclude_dirs; i++)
        free(w->exclude_dirs[i]);
    free(w->exclude_dirs);
    free(w);
}
