/* scoreboard: what each worker is running, readable by the master.
 *
 * A shared anonymous mapping made by the master before it forks: each
 * worker slot records the route of the handler it entered last and clears
 * it on return. When a worker dies from a signal the master reads the slot
 * and names the route in flight. Diagnostics only: writers do not lock,
 * and the master reads a slot only once its worker is dead. */
#ifndef EVICORN_SCOREBOARD_H
#define EVICORN_SCOREBOARD_H

int scoreboard_create(int nworkers);
void scoreboard_enter(int slot, const char *route);
void scoreboard_leave(int slot);
/* The route slot's worker was running, or NULL; clears the slot. */
const char *scoreboard_take(int slot, char *out, unsigned len);

#endif
