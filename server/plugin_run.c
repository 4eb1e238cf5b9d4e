/* plugin_run: the bookkeeping around plugin code; see plugin_run.h. */
#include "plugin_run.h"

#include <time.h>

#include "log.h"
#include "scoreboard.h"

/* An async callback that holds the loop longer than this is logged, like
 * asyncio's slow-callback warning. */
#define SLOW_CALLBACK_SECONDS 0.1

static double clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void plugin_run(const struct plugin_site *site, const struct watch_task *task, unsigned flags,
                void (*fn)(void *arg), void *arg)
{
    scoreboard_enter(site->slot, task->name);
    if (flags & PLUGIN_RUN_POOL) {
        fn(arg);
        scoreboard_leave(site->slot);
        return;
    }
    double started = (flags & PLUGIN_RUN_UNTIMED) ? 0 : clock_now();
    const struct watch_task *prev = watchdog_enter(site->watchdog, task);
    fn(arg);
    watchdog_leave(site->watchdog, prev);
    scoreboard_leave(site->slot);
    if (flags & PLUGIN_RUN_UNTIMED) {
        /* Loading and lifespan tasks live on the caller's stack: the
         * watchdog must be done reading one before it goes. (A route's
         * task lives as long as its generation, which syncs when freed.) */
        watchdog_sync(site->watchdog);
        return;
    }
    double took = clock_now() - started;
    if (took > SLOW_CALLBACK_SECONDS)
        log_warning("%s held the event loop for %.0f ms; async handlers must not block (use a "
                    "sync route or offload)",
                    task->name, took * 1000);
}
