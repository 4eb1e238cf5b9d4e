/* listener: the listening sockets, opened once in the master.
 *
 * The master binds before forking and every worker inherits the same
 * sockets (rather than each binding its own with SO_REUSEPORT): a bind
 * error is reported once, before any worker starts; --fd, --uds and the
 * sockets systemd passed work the same way as TCP; and a worker that dies
 * or is replaced on SIGHUP loses no connection waiting in the accept
 * queue, because the queue belongs to the shared socket, not to the
 * worker. */
#ifndef EVICORN_LISTENER_H
#define EVICORN_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"
#include "config.h"

struct listener {
    int fd;
    bool unix_socket;
    char name[128];   /* "http://127.0.0.1:8000", "unix:/path" */
    struct addr addr; /* the address clients reach (no IP or port for a unix socket) */
};

/* The variables socket activation reads; listeners_open removes them from
 * the environment, whether they were meant for this process or not. */
#define LISTENER_ACTIVATION_VARS 3
extern const char *const listener_activation_vars[LISTENER_ACTIVATION_VARS];

/* Opens what cfg asks for: the sockets systemd passed (socket activation,
 * sd_listen_fds(3) semantics: all of them, or those --fd-name names) when
 * $LISTEN_PID is this process, else --fd, --uds or --host/--port. Returns
 * 0, or -1 (or LISTENERS_USAGE for sockets or flags that cannot be served as
 * given) with a one-line reason. */
#define LISTENERS_USAGE (-2)
int listeners_open(const struct config *cfg, struct listener **out, size_t *n, char *err,
                   size_t errlen);
void listeners_close(struct listener *l, size_t n);

#endif
