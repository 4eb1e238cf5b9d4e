/* plugin_watch: inotify on an ev_io, per-name debounce timers and the
 * rescan after an overflow; see plugin_watch.h.
 *
 * The watch owns the inotify descriptor, a list of pending names (one heap
 * block each, holding its ev_timer) and the set of names it last reported
 * present. It keeps no descriptor open on the folder between uses: any open
 * reference postpones IN_DELETE_SELF until it is closed, so a removed folder
 * would go unnoticed; existence checks and scans open it when they need it. A
 * pending block is unlinked before its report and freed after it, so the
 * callback can trigger a scan without touching it. The "known" set exists
 * only for IN_Q_OVERFLOW: events were dropped, so the rescan debounces every
 * candidate and also every known name that vanished meanwhile, which no
 * event will ever report. Each report hands fn a name this module owns for
 * the duration of the call. */
#include "plugin_watch.h"

#include "log.h"
#include "plugin_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF |    \
     IN_ONLYDIR)

/* Room for many events per read; one event is at most
 * sizeof(struct inotify_event) + NAME_MAX + 1 bytes. */
#define EVENT_BUF_BYTES 4096
/* Reads per wakeup before yielding to the loop's other watchers; ev_io is
 * level-triggered, so whatever is left is read on the next iteration. */
#define MAX_READS_PER_WAKEUP 64

struct pending {
    ev_timer timer;
    struct plugin_watch *w;
    struct pending *next;
    ev_tstamp first; /* when this burst began */
    char name[];
};

struct plugin_watch {
    struct ev_loop *loop;
    plugin_watch_fn fn;
    void *ud;
    char *dir; /* as given, for messages */
    int inotify_fd, wd;
    ev_io io;
    bool io_active;
    bool gone; /* folder removed or moved away: logged, io stopped */
    struct pending *pending;
    char **known; /* names last reported present, unordered */
    size_t known_len, known_cap;
};

/* ---- the set of names last reported present ---- */

static size_t known_find(const struct plugin_watch *w, const char *name)
{
    for (size_t i = 0; i < w->known_len; i++)
        if (strcmp(w->known[i], name) == 0)
            return i;
    return SIZE_MAX;
}

static void known_set(struct plugin_watch *w, const char *name, bool present)
{
    size_t i = known_find(w, name);
    if (!present) {
        if (i != SIZE_MAX) {
            free(w->known[i]);
            w->known[i] = w->known[--w->known_len];
        }
        return;
    }
    if (i != SIZE_MAX)
        return;
    if (w->known_len == w->known_cap) {
        size_t cap = w->known_cap ? 2 * w->known_cap : 16;
        char **grown = realloc(w->known, cap * sizeof *grown);
        if (!grown)
            goto oom;
        w->known = grown;
        w->known_cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        goto oom;
    w->known[w->known_len++] = copy;
    return;
oom:
    /* Only an overflow rescan reads the set, and then only to report deletions. */
    log_warning("plugins folder %s: out of memory; a later removal of %s may go unreported", w->dir,
                name);
}

static void report(struct plugin_watch *w, const char *name, bool present)
{
    known_set(w, name, present);
    w->fn(w->ud, name, present);
}

/* ---- listing the folder ---- */

struct name_list {
    char **names;
    size_t len, cap;
};

static void name_list_free(struct name_list *l)
{
    for (size_t i = 0; i < l->len; i++)
        free(l->names[i]);
    free(l->names);
    *l = (struct name_list){0};
}

static int name_list_add(struct name_list *l, const char *name)
{
    if (l->len == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **grown = realloc(l->names, cap * sizeof *grown);
        if (!grown)
            return -1;
        l->names = grown;
        l->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -1;
    l->names[l->len++] = copy;
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_directory(DIR *d, const char *name)
{
    struct stat st;
    return fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* Fills out with the folder's candidates in strcmp order; 0 or -1 (logged). */
static int list_candidates(struct plugin_watch *w, struct name_list *out)
{
    *out = (struct name_list){0};
    DIR *d = opendir(w->dir);
    if (!d) {
        log_error("cannot scan plugins folder %s: %s", w->dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno != 0) {
                log_error("cannot scan plugins folder %s: %s", w->dir, strerror(errno));
                rc = -1;
            }
            break;
        }
        if (!plugin_file_is_candidate(e->d_name))
            continue;
        if (e->d_type == DT_DIR || (e->d_type == DT_UNKNOWN && is_directory(d, e->d_name)))
            continue;
        if (name_list_add(out, e->d_name) != 0) {
            log_error("cannot scan plugins folder %s: out of memory", w->dir);
            rc = -1;
            break;
        }
    }
    if (closedir(d) != 0 && rc == 0) {
        log_error("cannot scan plugins folder %s: %s", w->dir, strerror(errno));
        rc = -1;
    }
    if (rc != 0) {
        name_list_free(out);
        return -1;
    }
    if (out->len > 1)
        qsort(out->names, out->len, sizeof *out->names, compare_names);
    return 0;
}

int plugin_watch_scan(struct plugin_watch *w)
{
    struct name_list l;
    if (list_candidates(w, &l) != 0)
        return -1;
    /* Reports run on this private list, so fn may scan again. */
    for (size_t i = 0; i < l.len; i++)
        report(w, l.names[i], true);
    int n = (int)l.len;
    name_list_free(&l);
    return n;
}

/* ---- debounce ---- */

static void pending_unlink(struct plugin_watch *w, struct pending *p)
{
    for (struct pending **pp = &w->pending; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            return;
        }
    }
}

/* Whether name exists in the folder now (a directory does not count). */
static bool name_present(struct plugin_watch *w, const char *name)
{
    int dir_fd = open(w->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
        if (errno == ENOENT)
            return false; /* the folder went, and the file with it */
        log_warning("cannot check %s/%s: %s; reporting it present", w->dir, name, strerror(errno));
        return true; /* let the consumer try it and log the real reason */
    }
    struct stat st;
    bool present = true;
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        present = !S_ISDIR(st.st_mode);
    else if (errno == ENOENT || errno == ENOTDIR)
        present = false;
    else
        log_warning("cannot check %s/%s: %s; reporting it present", w->dir, name, strerror(errno));
    close(dir_fd); /* an O_PATH descriptor: closing it cannot fail usefully */
    return present;
}

static void debounce_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct pending *p = t->data;
    struct plugin_watch *w = p->w;
    ev_timer_stop(loop, t);
    pending_unlink(w, p);
    /* Decided now, at the end of the burst: delete-then-recreate is present. */
    report(w, p->name, name_present(w, p->name));
    free(p);
}

/* Starts or extends the debounce for name. */
static void touch(struct plugin_watch *w, const char *name)
{
    ev_tstamp now = ev_now(w->loop);
    for (struct pending *p = w->pending; p; p = p->next) {
        if (strcmp(p->name, name) != 0)
            continue;
        /* A name that never goes quiet is still reported, at the latest
         * PLUGIN_WATCH_DEBOUNCE_MAX_SECONDS after its burst began. */
        if (now - p->first < PLUGIN_WATCH_DEBOUNCE_MAX_SECONDS)
            ev_timer_again(w->loop, &p->timer);
        return;
    }
    size_t len = strlen(name);
    struct pending *p = malloc(sizeof *p + len + 1);
    if (!p) {
        log_error("plugins folder %s: out of memory; a change to %s is lost", w->dir, name);
        return;
    }
    memcpy(p->name, name, len + 1);
    p->w = w;
    p->first = now;
    p->next = w->pending;
    w->pending = p;
    ev_timer_init(&p->timer, debounce_cb, 0., PLUGIN_WATCH_DEBOUNCE_SECONDS);
    p->timer.data = p;
    ev_timer_again(w->loop, &p->timer);
}

/* After IN_Q_OVERFLOW some events were dropped, so every name that might
 * have changed goes through the debounce, which reports its state then: each
 * candidate in the folder (present) and each name last reported present that
 * is no longer listed (absent; no event will ever say so). Unchanged files are
 * reported present again; that is fine because the consumer's reload of an
 * unchanged file is cheap, and missing a change is not. */
static void rescan_after_overflow(struct plugin_watch *w)
{
    struct name_list now;
    if (list_candidates(w, &now) != 0)
        return;
    for (size_t i = 0; i < w->known_len; i++) {
        const char *name = w->known[i];
        if (!bsearch(&name, now.names, now.len, sizeof *now.names, compare_names))
            touch(w, name);
    }
    for (size_t i = 0; i < now.len; i++)
        touch(w, now.names[i]);
    name_list_free(&now);
}

/* ---- inotify ---- */

static void stop_io(struct plugin_watch *w)
{
    if (!w->io_active)
        return;
    /* libev requires re-referencing an unref'd watcher before stopping it. */
    ev_ref(w->loop);
    ev_io_stop(w->loop, &w->io);
    w->io_active = false;
}

static void folder_gone(struct plugin_watch *w, uint32_t mask)
{
    if (w->gone)
        return;
    w->gone = true;
    if (mask & IN_MOVE_SELF) {
        log_error("plugins folder %s was moved away; no further changes will be seen", w->dir);
        /* The watch would follow the folder to its new place; stop it so
         * the log line stays true. EINVAL means the kernel already dropped it. */
        if (inotify_rm_watch(w->inotify_fd, w->wd) != 0 && errno != EINVAL)
            log_warning("plugins folder %s: inotify_rm_watch: %s", w->dir, strerror(errno));
    } else {
        log_error("plugins folder %s was removed; no further changes will be seen", w->dir);
    }
    stop_io(w);
}

static void handle_event(struct plugin_watch *w, const struct inotify_event *ev, bool *overflow)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        *overflow = true;
        return;
    }
    if (ev->wd != w->wd)
        return;
    if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
        folder_gone(w, ev->mask);
        return;
    }
    if (ev->len == 0 || (ev->mask & IN_ISDIR))
        return;
    if (!plugin_file_is_candidate(ev->name))
        return;
    touch(w, ev->name);
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct plugin_watch *w = io->data;
    char buf[EVENT_BUF_BYTES] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool overflow = false;
    for (int reads = 0; reads < MAX_READS_PER_WAKEUP && w->io_active; reads++) {
        ssize_t n = read(w->inotify_fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            log_error("plugins folder %s: reading inotify events failed: %s; no further "
                      "changes will be seen",
                      w->dir, strerror(errno));
            stop_io(w);
            break;
        }
        if (n == 0)
            break;
        size_t off = 0;
        while (off < (size_t)n && w->io_active) {
            size_t left = (size_t)n - off;
            /* Aligned: buf is, and the kernel pads each name so the next
             * event is too. The kernel never splits an event; checked anyway. */
            const struct inotify_event *ev = (const void *)(buf + off);
            if (left < sizeof *ev || ev->len > left - sizeof *ev)
                break;
            handle_event(w, ev, &overflow);
            off += sizeof *ev + ev->len;
        }
    }
    if (overflow) {
        log_warning("plugins folder %s: too many changes at once (inotify queue overflow); "
                    "rescanning",
                    w->dir);
        rescan_after_overflow(w);
    }
}

/* ---- lifetime ---- */

struct plugin_watch *plugin_watch_new(struct ev_loop *loop, const char *dir, plugin_watch_fn fn,
                                      void *ud, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!loop || !dir || !fn) {
        if (err && errlen)
            snprintf(err, errlen, "cannot watch plugins folder: bad arguments");
        return NULL;
    }
    struct plugin_watch *w = calloc(1, sizeof *w);
    char *dir_copy = strdup(dir);
    if (!w || !dir_copy) {
        if (err && errlen)
            snprintf(err, errlen, "cannot watch %s: out of memory", dir);
        free(w);
        free(dir_copy);
        return NULL;
    }
    w->loop = loop;
    w->fn = fn;
    w->ud = ud;
    w->dir = dir_copy;
    w->wd = -1;
    w->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->inotify_fd < 0)
        goto fail;
    w->wd = inotify_add_watch(w->inotify_fd, dir, WATCH_MASK);
    if (w->wd < 0)
        goto fail;

    ev_io_init(&w->io, io_cb, w->inotify_fd, EV_READ);
    w->io.data = w;
    ev_io_start(loop, &w->io);
    ev_unref(loop);
    w->io_active = true;
    return w;
fail:
    if (err && errlen)
        snprintf(err, errlen, "cannot watch %s: %s", dir, strerror(errno));
    /* Opened for nothing but this watch; a close error is moot. */
    if (w->inotify_fd >= 0)
        close(w->inotify_fd);
    free(w->dir);
    free(w);
    return NULL;
}

void plugin_watch_free(struct plugin_watch *w)
{
    if (!w)
        return;
    stop_io(w);
    while (w->pending) {
        struct pending *p = w->pending;
        w->pending = p->next;
        ev_timer_stop(w->loop, &p->timer);
        free(p);
    }
    for (size_t i = 0; i < w->known_len; i++)
        free(w->known[i]);
    free(w->known);
    /* Closing the inotify descriptor drops the watch with it. */
    if (close(w->inotify_fd) != 0)
        log_warning("plugins folder %s: close: %s", w->dir, strerror(errno));
    free(w->dir);
    free(w);
}
