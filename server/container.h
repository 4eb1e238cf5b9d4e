/* container_of: from a pointer to a member back to the struct holding it,
 * for the intrusive links (deferred work, pool jobs, mailbox messages,
 * connection slots) that embed one object's hook in another. */
#ifndef EVICORN_CONTAINER_H
#define EVICORN_CONTAINER_H

#include <stddef.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
