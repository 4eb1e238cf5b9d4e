/* master: worker supervision; see master.h.
 *
 * Each worker occupies a slot (0..N-1). A slot's process is replaced when it
 * dies; a crash soon after start doubles the slot's restart delay (100 ms up
 * to 10 s), and a worker that stayed up resets it. A worker its watchdog
 * ended (watchdog.h) is reported with the reason it left in the
 * scoreboard; one ended for a plugin whose startup hung is replaced at once
 * and without back-off, because its replacement refuses the quarantined
 * file and so cannot fail the same way.
 *
 * With --reload, a change to the app's files starts a new generation of
 * workers beside the old ones. Each new worker says on the readiness pipe
 * when it serves (its app imported and started); only then is the old
 * worker of its slot told to drain, so a reload fails no request. New code
 * that does not start leaves the old workers serving; the next change
 * tries again.
 *
 * SIGHUP replaces the workers one slot at a time (a rolling restart): the
 * slot's new worker starts held, and only once it says it serves is it
 * released and the slot's old worker told to drain; then the next slot.
 * So as many workers accept as --workers asks, throughout. A new worker
 * that ends before it serves stops the roll (the old workers keep
 * serving, one error is logged): its replacement would most likely fail
 * the same way. A SIGHUP during a roll starts it again from slot 0, so
 * every worker ends up started after the last SIGHUP. */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "embedding.h"
#include "exit_status.h"
#include "heartbeat.h"
#include "log.h"
#include "log_sink.h"
#include "metrics.h"
#include "privileges.h"
#include "reload_watch.h"
#include "scoreboard.h"
#include "worker.h"

#define BACKOFF_FIRST 0.1
#define BACKOFF_MAX   10.0
/* A worker that lived longer than this did not crash at start. */
#define STABLE_SECONDS 5.0
/* After the graceful timeout, how long workers get before SIGKILL. */
#define KILL_GRACE 5.0

struct proc {
    struct proc *next;
    pid_t pid;
    int slot;
    unsigned gen;   /* the code generation it runs (--reload) */
    bool retiring;  /* replaced; its exit is expected */
    bool candidate; /* started for a reload and not serving yet */
    bool ready;     /* it said it serves */
    bool unhealthy; /* killed for failing the health check */
    struct heartbeat *hb;
    uint64_t last_beat;
    ev_tstamp beat_at; /* when last_beat was first seen */
    ev_tstamp started;
    ev_child child;
};

struct slot {
    int failures;
    ev_timer restart;
};

static struct {
    struct ev_loop *loop;
    const struct config *cfg;
    struct listener *listeners;
    size_t nlisteners;
    int nworkers;
    struct slot *slots;
    struct proc *procs;
    bool stopping;
    int sigint_count;
    int exit_status;
    ev_signal sig_term, sig_int, sig_hup;
    ev_timer kill_timer;
    ev_timer shutdown_delay; /* --shutdown-delay: serving on before begin_stop */
    ev_timer health;         /* --timeout-worker-healthcheck */
    int ready_pipe[2];       /* workers write their pid when they serve */
    ev_io ready_io;
    unsigned gen;        /* the newest code generation (--reload) */
    unsigned failed_gen; /* a generation that did not start, reported once */
    struct reload_watch *reload;
    /* The rolling restart SIGHUP started: the slot being replaced and its
     * new, held worker (0 when none is starting). */
    struct {
        bool active;
        int slot;
        pid_t pid;
    } roll;
} m;

static void on_child(struct ev_loop *loop, ev_child *w, int revents);
static void publish_ready(void);
static enum metrics_restart_cause restart_cause(int status, bool unhealthy);
static void on_shutdown_delay(struct ev_loop *loop, ev_timer *t, int revents);
static void reload_failed(unsigned gen, int slot, pid_t pid, int status);
static void roll_released(struct proc *p);
static void roll_failed(int slot, pid_t pid, int status);

/* In a new worker: drop every watcher the master had, so the worker's loop
 * starts clean. */
static void forget_master_state(void)
{
    ev_loop_fork(m.loop);
    ev_signal_stop(m.loop, &m.sig_term);
    ev_signal_stop(m.loop, &m.sig_int);
    ev_signal_stop(m.loop, &m.sig_hup);
    ev_timer_stop(m.loop, &m.kill_timer);
    ev_timer_stop(m.loop, &m.shutdown_delay);
    for (int i = 0; i < m.nworkers; i++)
        ev_timer_stop(m.loop, &m.slots[i].restart);
    for (struct proc *p = m.procs; p; p = p->next)
        ev_child_stop(m.loop, &p->child);
    ev_io_stop(m.loop, &m.ready_io);
    ev_timer_stop(m.loop, &m.health);
    close(m.ready_pipe[0]);
    if (m.reload)
        reload_watch_free(m.reload); /* closes its inotify descriptor */
}

static int spawn(int slot, bool candidate)
{
    struct proc *p = calloc(1, sizeof *p);
    if (!p) {
        log_error("cannot start worker %d: out of memory", slot);
        return -1;
    }
    log_flush();
    p->hb = m.cfg->timeout_worker_healthcheck > 0 ? heartbeat_new() : NULL;
    /* Inside Python, the interpreter must be told around the fork. */
    const struct evicorn_embedding *emb = m.cfg->embedding;
    sigset_t handled, saved;
    worker_signals(&handled);
    pthread_sigmask(SIG_BLOCK, &handled, &saved);
    log_sink_fork_begin();
    if (emb && emb->before_fork)
        emb->before_fork();
    int metrics_slot = metrics_claim();
    pid_t pid = fork();
    if (pid != 0) {
        if (emb && emb->after_fork_parent)
            emb->after_fork_parent();
        log_sink_fork_end();
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
    }
    if (pid < 0) {
        log_error("cannot start worker %d: fork: %s", slot, strerror(errno));
        metrics_unclaim(metrics_slot);
        heartbeat_free(p->hb);
        free(p);
        return -1;
    }
    if (pid == 0) {
        if (emb && emb->after_fork_child)
            emb->after_fork_child();
        heartbeat_adopt(p->hb);
        free(p);
        forget_master_state();
        metrics_attach(metrics_slot);
        int status = worker_run(m.cfg, m.listeners, m.nlisteners, slot, m.ready_pipe[1], candidate);
        log_drain();
        _exit(status);
    }
    metrics_bind(metrics_slot, pid);
    p->pid = pid;
    p->slot = slot;
    p->gen = m.gen;
    p->candidate = candidate;
    p->started = p->beat_at = ev_now(m.loop);
    ev_child_init(&p->child, on_child, pid, 0);
    p->child.data = p;
    ev_child_start(m.loop, &p->child);
    p->next = m.procs;
    m.procs = p;
    return 0;
}

static void on_restart(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct slot *s = t->data;
    int slot = (int)(s - m.slots);
    if (m.stopping)
        return;
    if (spawn(slot, false) < 0) {
        ev_timer_set(t, BACKOFF_MAX, 0);
        ev_timer_start(m.loop, t);
    }
}

static void unlink_proc(struct proc *p)
{
    for (struct proc **pp = &m.procs; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    ev_child_stop(m.loop, &p->child);
    heartbeat_free(p->hb);
    free(p);
}

static void signal_all(int sig)
{
    for (struct proc *p = m.procs; p; p = p->next)
        kill(p->pid, sig);
}

static void begin_stop(int status)
{
    if (m.stopping)
        return;
    m.stopping = true;
    m.exit_status = status;
    metrics_set_stopping();
    ev_timer_stop(m.loop, &m.shutdown_delay);
    for (int i = 0; i < m.nworkers; i++)
        ev_timer_stop(m.loop, &m.slots[i].restart);
    signal_all(SIGTERM);
    ev_timer_set(&m.kill_timer, m.cfg->timeout_graceful_shutdown + KILL_GRACE, 0);
    ev_timer_start(m.loop, &m.kill_timer);
    if (!m.procs)
        ev_break(m.loop, EVBREAK_ALL);
}

static void on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    struct proc *p = w->data;
    int st = w->rstatus, slot = p->slot;
    bool retiring = p->retiring, candidate = p->candidate, ready = p->ready,
         unhealthy = p->unhealthy;
    unsigned gen = p->gen;
    ev_tstamp lived = ev_now(loop) - p->started;
    pid_t pid = p->pid;
    unlink_proc(p);
    metrics_release(pid);
    publish_ready();

    /* Only a worker its watchdog ended leaves a reason. */
    char reason[512];
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    const char *why = code == EXIT_LOOP_BLOCKED || code == EXIT_STARTUP_HUNG
                          ? scoreboard_take_stop_reason(slot, reason, sizeof reason)
                          : NULL;
    if (m.stopping || retiring) {
        if (why)
            log_warning("worker %d (pid %d) was stopped while shutting down: %s", slot, (int)pid,
                        why);
        if (m.stopping && !m.procs)
            ev_break(loop, EVBREAK_ALL);
        return;
    }
    if (candidate && !ready && m.roll.active && pid == m.roll.pid) {
        roll_failed(slot, pid, st);
        return;
    }
    if (candidate && !ready) {
        reload_failed(gen, slot, pid, st);
        return;
    }
    /* With --reload, code that does not load waits for the next change
     * instead of stopping the server (as uvicorn's reloader does). */
    if (m.reload && WIFEXITED(st) &&
        (code == EXIT_APP_LOAD_FAILED || code == EXIT_WORKER_STARTUP_FAILED)) {
        log_error("worker %d (pid %d) could not start the app; waiting for the next change", slot,
                  (int)pid);
        return;
    }
    bool crashed = true, penalty = true;
    char route[256];
    const char *in_flight = scoreboard_take(slot, route, sizeof route);
    if (unhealthy) {
        log_error("worker %d (pid %d) was killed: it did not answer the health check for %g s "
                  "(--timeout-worker-healthcheck); starting a new one",
                  slot, (int)pid, m.cfg->timeout_worker_healthcheck);
    } else if (code == EXIT_LOOP_BLOCKED) {
        log_error("worker %d (pid %d) was stopped: %s; starting a new one", slot, (int)pid,
                  why ? why : "its event loop was blocked past --timeout-worker");
    } else if (code == EXIT_STARTUP_HUNG) {
        log_error("worker %d (pid %d) was stopped: %s; starting a new one without it", slot,
                  (int)pid,
                  why ? why : "a plugin's startup did not finish within --timeout-startup");
        /* Without a reason there was no scoreboard, hence no quarantine:
         * the next worker may hang the same way, so back off as usual. */
        penalty = why == NULL;
    } else if (WIFSIGNALED(st)) {
        log_error("worker %d (pid %d) died from signal %d (%s)%s%s", slot, (int)pid, WTERMSIG(st),
                  strsignal(WTERMSIG(st)), in_flight ? " while running " : "",
                  in_flight ? in_flight : "");
    } else if (WEXITSTATUS(st) == EXIT_WORKER_STARTUP_FAILED) {
        log_error("worker %d (pid %d) failed to start; stopping", slot, (int)pid);
        begin_stop(EXIT_WORKER_STARTUP_FAILED);
        return;
    } else if (WEXITSTATUS(st) == EXIT_APP_LOAD_FAILED) {
        log_error("worker %d (pid %d) could not load the app; stopping", slot, (int)pid);
        begin_stop(EXIT_ERROR);
        return;
    } else if (WEXITSTATUS(st) != 0) {
        log_error("worker %d (pid %d) exited with status %d", slot, (int)pid, WEXITSTATUS(st));
    } else {
        log_info("worker %d (pid %d) exited; starting a new one", slot, (int)pid);
        crashed = false;
    }
    metrics_count_restart(restart_cause(st, unhealthy));
    struct slot *s = &m.slots[slot];
    double delay = 0;
    if (crashed && penalty) {
        s->failures = lived < STABLE_SECONDS ? s->failures + 1 : 1;
        if (s->failures > 1) {
            delay = BACKOFF_FIRST;
            for (int i = 2; i < s->failures && delay < BACKOFF_MAX; i++)
                delay *= 2;
            if (delay > BACKOFF_MAX)
                delay = BACKOFF_MAX;
            log_warning("worker %d keeps failing; restarting in %.1f s", slot, delay);
        }
    } else if (!crashed) {
        s->failures = 0;
    }
    ev_timer_set(&s->restart, delay, 0);
    ev_timer_start(loop, &s->restart);
}

static void on_kill_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    log_warning("workers did not stop in time; killing them");
    signal_all(SIGKILL);
}

/* ---- the health check ---- */

/* Every second: a worker whose heartbeat has not moved for the timeout is
 * killed; on_child starts its replacement. */
static void on_health(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t;
    (void)revents;
    ev_tstamp now = ev_now(loop);
    double limit = m.cfg->timeout_worker_healthcheck;
    for (struct proc *p = m.procs; p; p = p->next) {
        uint64_t beat = heartbeat_read(p->hb);
        if (beat == HEARTBEAT_UNCHECKED || p->unhealthy || m.stopping)
            continue;
        if (beat != p->last_beat) {
            p->last_beat = beat;
            p->beat_at = now;
        } else if (now - p->beat_at >= limit) {
            p->unhealthy = true;
            kill(p->pid, SIGKILL);
        }
    }
}

/* ---- readiness and --reload ---- */

/* A new worker serves: the old worker of its slot may drain now. */
static void on_ready(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)io;
    (void)revents;
    pid_t pids[64];
    ssize_t n;
    while ((n = read(m.ready_pipe[0], pids, sizeof pids)) > 0) {
        for (size_t i = 0; i < (size_t)n / sizeof *pids; i++) {
            struct proc *p = m.procs;
            while (p && p->pid != pids[i])
                p = p->next;
            if (!p)
                continue;
            p->ready = true;
            if (!p->candidate || p->retiring)
                continue;
            if (m.roll.active && p->pid == m.roll.pid) {
                roll_released(p);
                continue;
            }
            /* Newer code is on its way, and this worker may have read a
             * file mid-write: it stays a candidate, and the next
             * generation replaces it. */
            if (m.reload && reload_watch_pending(m.reload))
                continue;
            p->candidate = false;
            kill(p->pid, WORKER_SIGNAL_SERVE);
            for (struct proc *old = m.procs; old; old = old->next)
                if (old != p && old->slot == p->slot && old->gen < p->gen && !old->retiring) {
                    old->retiring = true;
                    kill(old->pid, SIGTERM);
                    metrics_count_restart(METRICS_RESTART_RELOAD);
                }
            if (p->gen == m.gen)
                log_info("worker %d (pid %d) serves the new code", p->slot, (int)p->pid);
        }
    }
    publish_ready();
}

/* A worker started for a reload ended before it served: the old workers
 * keep serving, and the rest of that generation is stopped. */
static void reload_failed(unsigned gen, int slot, pid_t pid, int status)
{
    for (struct proc *p = m.procs; p; p = p->next)
        if (p->candidate && p->gen == gen && !p->retiring) {
            p->retiring = true;
            kill(p->pid, SIGTERM);
        }
    if (m.failed_gen == gen)
        return;
    m.failed_gen = gen;
    char how[64];
    if (WIFSIGNALED(status))
        snprintf(how, sizeof how, "died from signal %d", WTERMSIG(status));
    else
        snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
    bool any_serving = false;
    for (struct proc *p = m.procs; p; p = p->next)
        any_serving |= !p->candidate && !p->retiring;
    log_error("reload: the new code does not start (worker %d, pid %d, %s); %s; the next "
              "change tries again",
              slot, (int)pid, how,
              any_serving ? "the old workers keep serving" : "no worker serves meanwhile");
}

/* The app's files changed: a new generation of workers, one per slot. */
static void on_code_change(void *ud, const char *changed)
{
    (void)ud;
    if (m.stopping)
        return;
    log_warning("Detected changes in '%s'. Reloading...", changed);
    /* The new generation replaces every slot: a rolling restart under way
     * has nothing left to do (its held worker is stopped below). */
    m.roll.active = false;
    /* Workers of an earlier reload that have not started yet are stale. */
    for (struct proc *p = m.procs; p; p = p->next)
        if (p->candidate && !p->retiring) {
            p->retiring = true;
            kill(p->pid, SIGTERM);
        }
    m.gen++;
    for (int i = 0; i < m.nworkers; i++) {
        /* A slot with nothing serving (its code never started) is simply
         * filled; the others get a candidate beside their worker. */
        bool serving = false;
        for (struct proc *p = m.procs; p; p = p->next)
            serving |= p->slot == i && !p->retiring && !p->candidate;
        ev_timer_stop(m.loop, &m.slots[i].restart);
        spawn(i, serving);
    }
}

/* ---- SIGHUP: the rolling restart ---- */

/* Starts the held replacement of the roll's current slot, or ends the roll
 * after the last one. */
static void roll_next(void)
{
    if (m.stopping) {
        m.roll.active = false;
        return;
    }
    if (m.roll.slot >= m.nworkers) {
        m.roll.active = false;
        m.roll.pid = 0;
        log_info("SIGHUP: all %d worker(s) replaced", m.nworkers);
        return;
    }
    /* A slot whose worker is between a crash and its restart is filled by
     * the replacement itself. */
    ev_timer_stop(m.loop, &m.slots[m.roll.slot].restart);
    if (spawn(m.roll.slot, true) < 0) {
        m.roll.active = false;
        m.roll.pid = 0;
        log_error("SIGHUP: rolling restart stopped at worker %d; the old workers keep serving",
                  m.roll.slot);
        return;
    }
    m.roll.pid = m.procs->pid; /* spawn puts the new process first */
    log_info("SIGHUP: starting worker %d's replacement (pid %d)", m.roll.slot, (int)m.roll.pid);
}

/* The roll's new worker serves: release it, drain every other worker of
 * its slot, and go on with the next slot. */
static void roll_released(struct proc *p)
{
    p->candidate = false;
    kill(p->pid, WORKER_SIGNAL_SERVE);
    pid_t old_pid = 0;
    for (struct proc *old = m.procs; old; old = old->next)
        if (old != p && old->slot == p->slot && !old->retiring) {
            old->retiring = true;
            old_pid = old->pid;
            kill(old->pid, SIGTERM);
            metrics_count_restart(METRICS_RESTART_SIGHUP);
        }
    if (old_pid)
        log_info("SIGHUP: worker %d (pid %d) serves; the old one (pid %d) drains", p->slot,
                 (int)p->pid, (int)old_pid);
    else
        log_info("SIGHUP: worker %d (pid %d) serves", p->slot, (int)p->pid);
    m.roll.slot++;
    roll_next();
}

/* The roll's new worker ended before it served: the roll stops there. */
static void roll_failed(int slot, pid_t pid, int status)
{
    m.roll.active = false;
    m.roll.pid = 0;
    char how[64];
    if (WIFSIGNALED(status))
        snprintf(how, sizeof how, "died from signal %d", WTERMSIG(status));
    else
        snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
    log_error("SIGHUP: the new worker %d (pid %d) %s before it served; rolling restart stopped, "
              "the old workers keep serving",
              slot, (int)pid, how);
    /* Its slot may have lost its old worker meanwhile: fill it as after a
     * crash. */
    bool serving = false;
    for (struct proc *p = m.procs; p; p = p->next)
        serving |= p->slot == slot && !p->retiring;
    if (!serving && !m.stopping && !ev_is_active(&m.slots[slot].restart)) {
        ev_timer_set(&m.slots[slot].restart, BACKOFF_FIRST, 0);
        ev_timer_start(m.loop, &m.slots[slot].restart);
    }
}

static void roll_start(void)
{
    if (m.roll.active) {
        log_info("SIGHUP during a rolling restart: starting it again from worker 0");
        for (struct proc *p = m.procs; p; p = p->next)
            if (p->pid == m.roll.pid && !p->retiring) {
                p->retiring = true;
                kill(p->pid, SIGTERM);
            }
    } else {
        log_info("SIGHUP: replacing the %d worker(s) one at a time", m.nworkers);
    }
    m.roll.active = true;
    m.roll.slot = 0;
    m.roll.pid = 0;
    roll_next();
}

/* ---- metrics, health and the shutdown delay ---- */

/* How many workers accept connections now, for --health-path and the
 * metrics. */
static void publish_ready(void)
{
    int n = 0;
    for (struct proc *p = m.procs; p; p = p->next)
        n += p->ready && !p->candidate && !p->retiring;
    metrics_set_workers_ready(n);
}

/* Why a worker that on_child restarts ended. */
static enum metrics_restart_cause restart_cause(int status, bool unhealthy)
{
    if (unhealthy)
        return METRICS_RESTART_HEALTHCHECK;
    if (WIFSIGNALED(status))
        return METRICS_RESTART_CRASH;
    int code = WEXITSTATUS(status);
    if (code == EXIT_LOOP_BLOCKED || code == EXIT_STARTUP_HUNG)
        return METRICS_RESTART_WATCHDOG;
    if (code != 0)
        return METRICS_RESTART_CRASH;
    return m.cfg->limit_max_requests > 0 ? METRICS_RESTART_MAX_REQUESTS : METRICS_RESTART_EXITED;
}

static void on_shutdown_delay(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    log_info("shutting down");
    begin_stop(EXIT_OK);
}

/* SIGTERM or SIGINT: --health-path fails from now on. With
 * --shutdown-delay the workers go on serving that long, so a load balancer
 * sees the failing check and stops sending before connections close; a
 * second signal meanwhile shuts down at once. */
static void request_stop(void)
{
    metrics_set_stopping();
    if (!m.stopping && m.cfg->shutdown_delay > 0 && !ev_is_active(&m.shutdown_delay)) {
        log_info("shutting down in %g s (--shutdown-delay); serving until then",
                 m.cfg->shutdown_delay);
        ev_timer_set(&m.shutdown_delay, m.cfg->shutdown_delay, 0);
        ev_timer_start(m.loop, &m.shutdown_delay);
        return;
    }
    if (!m.stopping)
        log_info("shutting down");
    begin_stop(EXIT_OK);
}

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    if (s->signum == SIGHUP) {
        if (!m.stopping)
            roll_start();
        return;
    }
    if (s->signum == SIGINT && ++m.sigint_count >= 2) {
        log_warning("second interrupt: exiting now");
        signal_all(SIGKILL);
        log_flush();
        _exit(EXIT_ERROR);
    }
    request_stop();
}

/* Whose plugin files the workers will load: the operator should see it at
 * a glance. */
static void log_trust(const struct config *cfg)
{
    const struct run_as *r = cfg->run_as;
    char who[96] = "root";
    if (r && r->uid != 0)
        snprintf(who, sizeof who, "root or %s", r->name);
    if (r && r->uid == 0)
        log_warning("the workers run as root, and so does every plugin they load; --user NAME "
                    "runs them unprivileged");
    log_info("workers run as %s; plugins load only from files and folders owned by %s and "
             "writable by no one else%s%s",
             r ? r->name : "the current user", who,
             cfg->plugins_insecure ? " (--plugins-insecure: others only warned about)" : "",
             cfg->plugin_key ? ", signed with the --plugin-pubkey key" : "");
}

static int default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int master_run(const struct config *cfg, struct listener *listeners, size_t nlisteners)
{
    m.loop = EV_DEFAULT;
    m.cfg = cfg;
    m.listeners = listeners;
    m.nlisteners = nlisteners;
    m.nworkers = cfg->workers > 0 ? cfg->workers : default_workers();
    m.slots = calloc((size_t)m.nworkers, sizeof *m.slots);
    if (!m.slots) {
        log_error("out of memory");
        return EXIT_ERROR;
    }
    if (scoreboard_create(m.nworkers) < 0)
        log_warning("no scoreboard: crashed workers' routes will not be named");
    if ((cfg->metrics_path || cfg->health_path) && metrics_create(m.nworkers) < 0)
        log_warning("no shared memory for --metrics-path and --health-path: %s", strerror(errno));
    ev_init(&m.shutdown_delay, on_shutdown_delay);
    for (int i = 0; i < m.nworkers; i++) {
        ev_init(&m.slots[i].restart, on_restart);
        m.slots[i].restart.data = &m.slots[i];
    }
    ev_signal_init(&m.sig_term, on_signal, SIGTERM);
    ev_signal_init(&m.sig_int, on_signal, SIGINT);
    ev_signal_init(&m.sig_hup, on_signal, SIGHUP);
    ev_signal_start(m.loop, &m.sig_term);
    ev_signal_start(m.loop, &m.sig_int);
    ev_signal_start(m.loop, &m.sig_hup);
    ev_init(&m.kill_timer, on_kill_timer);
    if (pipe2(m.ready_pipe, O_CLOEXEC) < 0 || fcntl(m.ready_pipe[0], F_SETFL, O_NONBLOCK) < 0) {
        log_error("cannot create the readiness pipe: %s", strerror(errno));
        free(m.slots);
        return EXIT_ERROR;
    }
    ev_io_init(&m.ready_io, on_ready, m.ready_pipe[0], EV_READ);
    ev_io_start(m.loop, &m.ready_io);
    ev_timer_init(&m.health, on_health, 1.0, 1.0);
    if (cfg->timeout_worker_healthcheck > 0)
        ev_timer_start(m.loop, &m.health);
    if (cfg->reload) {
        char err[512];
        m.reload = reload_watch_new(m.loop, cfg, on_code_change, NULL, err, sizeof err);
        if (!m.reload) {
            log_error("%s", err);
            free(m.slots);
            return EXIT_ERROR;
        }
    }

    for (size_t i = 0; i < nlisteners; i++)
        log_info("evicorn running on %s (workers: %d, pid %d)", listeners[i].name, m.nworkers,
                 (int)getpid());
    log_trust(cfg);
    for (int i = 0; i < m.nworkers; i++)
        if (spawn(i, false) < 0) {
            begin_stop(EXIT_ERROR);
            break;
        }
    ev_run(m.loop, 0);
    while (m.procs)
        unlink_proc(m.procs);
    reload_watch_free(m.reload);
    m.reload = NULL;
    ev_io_stop(m.loop, &m.ready_io);
    ev_timer_stop(m.loop, &m.health);
    close(m.ready_pipe[0]);
    close(m.ready_pipe[1]);
    free(m.slots);
    log_info("stopped");
    return m.exit_status;
}
