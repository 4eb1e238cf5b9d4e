/* master: the supervisor process.
 *
 * Forks the workers, restarts one that dies (with back-off, so a crash loop
 * cannot spin), replaces them one at a time on SIGHUP, and shuts them down
 * gracefully on SIGTERM/SIGINT. It serves no requests itself. */
#ifndef EVICORN_MASTER_H
#define EVICORN_MASTER_H

#include <stddef.h>

#include "config.h"
#include "listener.h"

int master_run(const struct config *cfg, struct listener *listeners, size_t nlisteners);

#endif
