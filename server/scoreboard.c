/* scoreboard: per-worker "route in flight" and stop reason, and the plugin
 * quarantine, in shared memory; see scoreboard.h. */
#include "scoreboard.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define ROUTE_MAX  200
#define REASON_MAX 400

struct slot {
    volatile int busy;
    char route[ROUTE_MAX];
    atomic_int stopped; /* reason holds a line */
    char reason[REASON_MAX];
};

/* seq is odd while the entry is being written and 0 while it was never
 * used; the fields are atomics only so that a reader racing a writer is
 * well defined (it then sees seq change and ignores the entry). */
struct quarantined {
    atomic_uint seq;
    _Atomic uint64_t dev, ino, size, mtime_ns, timeout_ms;
};

struct board {
    atomic_uint qnext;
    struct quarantined q[QUARANTINE_MAX];
    struct slot slots[];
};

static struct board *board;
static int nslots;

int scoreboard_create(int nworkers)
{
    size_t len = sizeof(struct board) + sizeof(struct slot) * (size_t)nworkers;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    board = p; /* zero-filled: no quarantine, every slot idle */
    nslots = nworkers;
    return 0;
}

static struct slot *slot_at(int slot)
{
    return board && slot >= 0 && slot < nslots ? &board->slots[slot] : NULL;
}

void scoreboard_enter(int slot, const char *route)
{
    struct slot *s = slot_at(slot);
    if (!s)
        return;
    snprintf(s->route, ROUTE_MAX, "%s", route);
    s->busy = 1;
}

void scoreboard_leave(int slot)
{
    struct slot *s = slot_at(slot);
    if (s)
        s->busy = 0;
}

const char *scoreboard_take(int slot, char *out, unsigned len)
{
    struct slot *s = slot_at(slot);
    if (!s || !s->busy)
        return NULL;
    snprintf(out, len, "%.*s", ROUTE_MAX - 1, s->route);
    s->busy = 0;
    return out;
}

int scoreboard_set_stop_reason(int slot, const char *reason)
{
    struct slot *s = slot_at(slot);
    if (!s)
        return -1;
    snprintf(s->reason, REASON_MAX, "%s", reason);
    atomic_store_explicit(&s->stopped, 1, memory_order_release);
    return 0;
}

const char *scoreboard_take_stop_reason(int slot, char *out, unsigned len)
{
    struct slot *s = slot_at(slot);
    if (!s || !atomic_load_explicit(&s->stopped, memory_order_acquire))
        return NULL;
    snprintf(out, len, "%.*s", REASON_MAX - 1, s->reason);
    atomic_store_explicit(&s->stopped, 0, memory_order_relaxed);
    return out;
}

/* ---- quarantine ---- */

static bool entry_matches(struct quarantined *e, const struct plugin_file_id *id, double *timeout)
{
    unsigned s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
    if (s1 == 0 || (s1 & 1))
        return false;
    bool same = atomic_load_explicit(&e->dev, memory_order_relaxed) == id->dev &&
                atomic_load_explicit(&e->ino, memory_order_relaxed) == id->ino &&
                atomic_load_explicit(&e->size, memory_order_relaxed) == id->size &&
                atomic_load_explicit(&e->mtime_ns, memory_order_relaxed) == (uint64_t)id->mtime_ns;
    uint64_t ms = atomic_load_explicit(&e->timeout_ms, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&e->seq, memory_order_relaxed) != s1 || !same)
        return false;
    if (timeout)
        *timeout = (double)ms / 1000.0;
    return true;
}

bool scoreboard_quarantined(const struct plugin_file_id *id, double *timeout)
{
    if (!board)
        return false;
    for (int i = 0; i < QUARANTINE_MAX; i++)
        if (entry_matches(&board->q[i], id, timeout))
            return true;
    return false;
}

int scoreboard_quarantine(const struct plugin_file_id *id, double timeout)
{
    if (!board)
        return -1;
    if (scoreboard_quarantined(id, NULL))
        return 0;
    unsigned i = atomic_fetch_add_explicit(&board->qnext, 1, memory_order_relaxed);
    struct quarantined *e = &board->q[i % QUARANTINE_MAX];
    unsigned odd = (atomic_load_explicit(&e->seq, memory_order_relaxed) + 1) | 1;
    atomic_store_explicit(&e->seq, odd, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&e->dev, id->dev, memory_order_relaxed);
    atomic_store_explicit(&e->ino, id->ino, memory_order_relaxed);
    atomic_store_explicit(&e->size, id->size, memory_order_relaxed);
    atomic_store_explicit(&e->mtime_ns, (uint64_t)id->mtime_ns, memory_order_relaxed);
    atomic_store_explicit(&e->timeout_ms, (uint64_t)(timeout * 1000.0 + 0.5), memory_order_relaxed);
    atomic_store_explicit(&e->seq, odd + 1, memory_order_release);
    return 0;
}
