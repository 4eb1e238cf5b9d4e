/* reload_watch: noticing that an app's source files changed (--reload).
 *
 * Watches folders and everything below them with inotify (one watch per
 * folder, added as folders appear), filters file names with uvicorn's
 * --reload-include and --reload-exclude globs, and reports a change once
 * the files have been quiet for --reload-delay, so a save of several files
 * is one reload. The master decides what a change means (master.c). */
#ifndef EVICORN_RELOAD_WATCH_H
#define EVICORN_RELOAD_WATCH_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct config;
struct reload_watch;

/* changed: one of the changed files (relative to the folder it was found
 * in), for the log; valid during the call. */
typedef void (*reload_watch_fn)(void *ud, const char *changed);

/* Starts watching what cfg names (reload_dirs, default the current folder).
 * NULL with one line in err when a folder cannot be watched. */
struct reload_watch *reload_watch_new(struct ev_loop *loop, const struct config *cfg,
                                      reload_watch_fn fn, void *ud, char *err, size_t errlen);
void reload_watch_free(struct reload_watch *w);

/* Whether a change is waiting for its quiet period (events not yet read
 * are read first): code loaded meanwhile may have been read mid-write. */
bool reload_watch_pending(struct reload_watch *w);

/* Whether a file (path relative to a watched folder) is one a change to
 * reloads for: uvicorn's rules. Includes are *.py plus --reload-include,
 * less any pattern also excluded; excludes are .*, .py[cod], .sw.* and ~*
 * less any pattern also included, plus --reload-exclude. A file matching
 * an include is reloaded for unless an exclude matches it too, or the
 * include names its end outright. A pattern matches the path's last
 * components, one glob per component (as pathlib's Path.match). */
bool reload_watch_matches(const struct config *cfg, const char *relpath);

#endif
