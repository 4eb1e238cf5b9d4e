/* scoreboard: per-worker "route in flight" in shared memory; see
 * scoreboard.h. */
#include "scoreboard.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define ROUTE_MAX 200

struct slot {
    volatile int busy;
    char route[ROUTE_MAX];
};

static struct slot *slots;
static int nslots;

int scoreboard_create(int nworkers)
{
    void *p = mmap(NULL, sizeof(struct slot) * (size_t)nworkers, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    slots = p;
    nslots = nworkers;
    return 0;
}

void scoreboard_enter(int slot, const char *route)
{
    if (!slots || slot < 0 || slot >= nslots)
        return;
    snprintf(slots[slot].route, ROUTE_MAX, "%s", route);
    slots[slot].busy = 1;
}

void scoreboard_leave(int slot)
{
    if (!slots || slot < 0 || slot >= nslots)
        return;
    slots[slot].busy = 0;
}

const char *scoreboard_take(int slot, char *out, unsigned len)
{
    if (!slots || slot < 0 || slot >= nslots || !slots[slot].busy)
        return NULL;
    snprintf(out, len, "%.*s", ROUTE_MAX - 1, slots[slot].route);
    slots[slot].busy = 0;
    return out;
}
