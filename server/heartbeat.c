/* heartbeat: one shared counter per worker; see heartbeat.h. */
#include "heartbeat.h"

#include <stdatomic.h>
#include <stddef.h>
#include <sys/mman.h>

struct heartbeat {
    _Atomic uint64_t beats;
};

/* The worker's own, after fork. */
static struct heartbeat *mine;

struct heartbeat *heartbeat_new(void)
{
    void *p = mmap(NULL, sizeof(struct heartbeat), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p; /* zero-filled: no beat yet */
}

void heartbeat_free(struct heartbeat *hb)
{
    if (hb)
        munmap(hb, sizeof *hb);
}

uint64_t heartbeat_read(const struct heartbeat *hb)
{
    return hb ? atomic_load_explicit(&hb->beats, memory_order_relaxed) : HEARTBEAT_UNCHECKED;
}

void heartbeat_adopt(struct heartbeat *hb)
{
    mine = hb;
}

void heartbeat_beat(void)
{
    if (mine && atomic_load_explicit(&mine->beats, memory_order_relaxed) != HEARTBEAT_UNCHECKED)
        atomic_fetch_add_explicit(&mine->beats, 1, memory_order_relaxed);
}

void heartbeat_disable(void)
{
    if (mine)
        atomic_store_explicit(&mine->beats, HEARTBEAT_UNCHECKED, memory_order_relaxed);
}
