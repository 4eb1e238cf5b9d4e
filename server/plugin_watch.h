/* plugin_watch: noticing plugin files appear, change and disappear in the
 * plugins folder while the server runs.
 *
 * It uses inotify directly on an ev_io rather than ev_stat: ev_stat polls
 * (every few seconds by default), watches one path rather than a folder's
 * entries, and cannot see IN_CLOSE_WRITE, the moment a writer is done. Events
 * are debounced per file name so that a burst (an editor's save, a copy in
 * several writes, delete-then-recreate) becomes one report of the name's
 * final state. It reports names only; validating, copying and loading the
 * file is the caller's business (see plugin_file.h). */
#ifndef EVICORN_PLUGIN_WATCH_H
#define EVICORN_PLUGIN_WATCH_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct plugin_watch;

/* How long a name must stay quiet before it is reported, and the longest a
 * name that never goes quiet is held back. */
#define PLUGIN_WATCH_DEBOUNCE_SECONDS     0.010
#define PLUGIN_WATCH_DEBOUNCE_MAX_SECONDS 1.0

/* name: a candidate file name (plugin_file_is_candidate; not a path) in the
 * folder, valid only during the call. present: true when the name exists at
 * the end of its debounce (it was written: IN_CLOSE_WRITE, moved in:
 * IN_MOVED_TO, or found by a scan), false when it no longer exists (deleted
 * or moved away). A report of present=true may repeat for an unchanged file
 * (after an event-queue overflow everything is rescanned), so the consumer
 * should make reloading an unchanged file cheap. The callback may call
 * plugin_watch_scan but must not call plugin_watch_free. */
typedef void (*plugin_watch_fn)(void *ud, const char *name, bool present);

/* Loop thread. Starts watching dir (a folder; it need not contain anything
 * yet). The inotify watcher is ev_unref'd, so an idle watch does not keep
 * ev_run alive; pending debounce timers do. Returns NULL with a reason in err
 * (e.g. "cannot watch ./plugins: No such file or directory"). Call
 * plugin_watch_scan afterwards for the files already there: changes made
 * after plugin_watch_new returns are not missed. */
struct plugin_watch *plugin_watch_new(struct ev_loop *loop, const char *dir, plugin_watch_fn fn,
                                      void *ud, char *err, size_t errlen);

/* Loop thread. Calls fn(name, true) for every candidate now in the folder
 * (directories excluded), in strcmp order, and returns how many, or -1 after
 * logging why the folder could not be read. */
int plugin_watch_scan(struct plugin_watch *w);

/* Loop thread. Stops watching, drops pending reports without calling fn, and
 * frees everything (NULL is a no-op). Not from inside fn. */
void plugin_watch_free(struct plugin_watch *w);

#endif
