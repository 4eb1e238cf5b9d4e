/* scoreboard: what each worker is running, and what the workers learnt,
 * readable by the master and by later workers.
 *
 * A shared anonymous mapping made by the master before it forks:
 *
 *  - each worker slot records the route of the handler it entered last and
 *    clears it on return. When a worker dies from a signal the master reads
 *    the slot and names the route in flight. Diagnostics only: writers do
 *    not lock, and the master reads a slot only once its worker is dead;
 *  - a worker that its watchdog ends writes why into its slot (one line),
 *    which the master logs;
 *  - a small quarantine of plugin files whose loading or startup hung a
 *    worker, identified by device, inode, size and mtime, so a replacement
 *    worker refuses them instead of hanging again. It is a ring: the
 *    oldest entry gives way when it is full. Entries are written by one
 *    worker at a time in practice; each carries a sequence number so a
 *    reader never takes a half-written entry for a match. */
#ifndef EVICORN_SCOREBOARD_H
#define EVICORN_SCOREBOARD_H

#include <stdbool.h>
#include <stdint.h>

/* How many files the quarantine remembers. */
#define QUARANTINE_MAX 32

struct plugin_file_id {
    uint64_t dev, ino, size;
    int64_t mtime_ns;
};

int scoreboard_create(int nworkers);
void scoreboard_enter(int slot, const char *route);
void scoreboard_leave(int slot);
/* The route slot's worker was running, or NULL; clears the slot. */
const char *scoreboard_take(int slot, char *out, unsigned len);

/* Any thread. Records why slot's worker is ending itself. Returns 0, or -1
 * when there is no scoreboard. */
int scoreboard_set_stop_reason(int slot, const char *reason);
/* The reason slot's worker recorded, or NULL; clears it. */
const char *scoreboard_take_stop_reason(int slot, char *out, unsigned len);

/* Any thread. Adds a file to the quarantine with the timeout it exceeded.
 * Returns 0, or -1 when there is no scoreboard. */
int scoreboard_quarantine(const struct plugin_file_id *id, double timeout);
/* Whether id is quarantined; if so *timeout is the timeout it exceeded. */
bool scoreboard_quarantined(const struct plugin_file_id *id, double *timeout);

#endif
