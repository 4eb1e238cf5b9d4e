/* heartbeat: the master's health check of its workers
 * (--timeout-worker-healthcheck).
 *
 * Before it forks a worker the master maps one shared counter for it; the
 * worker's watchdog thread, which runs whatever its event loop does,
 * advances the counter on every sample (each 100 ms). A worker whose
 * counter has not moved for the timeout is wedged as a process (stopped,
 * deadlocked, a C extension that holds every thread) and the master kills
 * and replaces it, as uvicorn's supervisor does with a worker that does
 * not answer its ping. A blocked event loop alone is --timeout-worker's
 * business (watchdog.h), so a long request does not fail the check. */
#ifndef EVICORN_HEARTBEAT_H
#define EVICORN_HEARTBEAT_H

#include <stdbool.h>
#include <stdint.h>

struct heartbeat;

/* Master, before fork: NULL when the mapping fails (the worker then runs
 * unchecked). */
struct heartbeat *heartbeat_new(void);
/* Master, once the worker is reaped. */
void heartbeat_free(struct heartbeat *hb);
/* The counter's value; HEARTBEAT_UNCHECKED when the worker has none. */
uint64_t heartbeat_read(const struct heartbeat *hb);
#define HEARTBEAT_UNCHECKED UINT64_MAX

/* Worker, after fork: where its beats go (NULL: nowhere). */
void heartbeat_adopt(struct heartbeat *hb);
/* Worker, any thread: one beat. */
void heartbeat_beat(void);
/* Worker: nothing will beat (no watchdog thread): do not check it. */
void heartbeat_disable(void);

#endif
