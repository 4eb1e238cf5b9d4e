/* defer: work that runs at the end of the current loop iteration.
 *
 * A continuation must never run inside the call that scheduled it (the
 * ABI promises plugins this), and parser callbacks must not re-enter the
 * parser; both schedule a struct defer instead. Deferred entries are
 * intrusive (embedded in the object they belong to), so scheduling never
 * allocates and never fails, and scheduling one already queued is a no-op.
 *
 * The queue is the worker's: worker.c owns the one instance per loop and
 * drains it at the end of every iteration (worker_end_iteration); the
 * layers below are handed a pointer to it. */
#ifndef EVICORN_DEFER_H
#define EVICORN_DEFER_H

#include <stdbool.h>
#include <stddef.h>

struct defer {
    struct defer *next;
    void (*fn)(struct defer *);
    bool queued;
};

struct defer_queue {
    struct defer *first, *last;
};

static inline void defer_schedule(struct defer_queue *q, struct defer *d,
                                  void (*fn)(struct defer *))
{
    if (d->queued)
        return;
    d->fn = fn;
    d->next = NULL;
    d->queued = true;
    if (q->last)
        q->last->next = d;
    else
        q->first = d;
    q->last = d;
}

#endif
