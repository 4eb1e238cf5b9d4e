/* Unit tests for server/mailbox.c and server/pool.c.
 *
 * Every test owns its ev_loop and runs it under a watchdog timer, and every
 * wait on another thread has a deadline, so a broken pool fails a test
 * instead of hanging the run. */
#include "check.h"
#include "mailbox.h"
#include "pool.h"
#include "support.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>

#define WATCHDOG_SECONDS 30.0
#define WAIT_SECONDS     20

/* ---- helpers ---- */

/* A rendezvous with a deadline: gate_wait returns once `need` threads have
 * arrived or the test opened the gate, or 0 after WAIT_SECONDS. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned arrived;
    int open;
};

static void gate_init(struct gate *g)
{
    CHECK_EQ_INT(pthread_mutex_init(&g->lock, NULL), 0);
    CHECK_EQ_INT(pthread_cond_init(&g->cond, NULL), 0);
    g->arrived = 0;
    g->open = 0;
}

static void gate_destroy(struct gate *g)
{
    CHECK_EQ_INT(pthread_cond_destroy(&g->cond), 0);
    CHECK_EQ_INT(pthread_mutex_destroy(&g->lock), 0);
}

static int gate_wait(struct gate *g, unsigned need)
{
    struct timespec deadline;
    CHECK_EQ_INT(clock_gettime(CLOCK_REALTIME, &deadline), 0);
    deadline.tv_sec += WAIT_SECONDS;
    CHECK_EQ_INT(pthread_mutex_lock(&g->lock), 0);
    g->arrived++;
    CHECK_EQ_INT(pthread_cond_broadcast(&g->cond), 0);
    int rc = 0;
    while (!g->open && g->arrived < need && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&g->cond, &g->lock, &deadline);
    int ok = g->open || g->arrived >= need;
    CHECK_EQ_INT(pthread_mutex_unlock(&g->lock), 0);
    return ok;
}

static void gate_open(struct gate *g)
{
    CHECK_EQ_INT(pthread_mutex_lock(&g->lock), 0);
    g->open = 1;
    CHECK_EQ_INT(pthread_cond_broadcast(&g->cond), 0);
    CHECK_EQ_INT(pthread_mutex_unlock(&g->lock), 0);
}

/* Polls a pool counter from the loop thread until it reaches want. */
static int wait_count(unsigned (*count)(const struct pool *), const struct pool *p, unsigned want)
{
    for (int i = 0; i < WAIT_SECONDS * 1000; i++) {
        if (count(p) == want)
            return 1;
        sleep_ms(1);
    }
    return 0;
}

#define CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- mailbox ---- */

struct thread_msg {
    struct mailbox_msg msg;
    struct ev_loop *loop;
    pthread_t ran_on;
    int runs;
};

static void thread_msg_fn(struct mailbox_msg *m)
{
    struct thread_msg *tm = CONTAINER_OF(m, struct thread_msg, msg);
    tm->ran_on = pthread_self();
    tm->runs++;
    ev_break(tm->loop, EVBREAK_ALL);
}

struct poster_arg {
    struct mailbox *mb;
    struct mailbox_msg *msg;
};

static void *post_one(void *arg)
{
    struct poster_arg *pa = arg;
    mailbox_post(pa->mb, pa->msg);
    return NULL;
}

TEST(mailbox_message_from_other_thread_runs_on_loop_thread)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct mailbox *mb = mailbox_new(loop);
    CHECK(mb != NULL);
    struct thread_msg tm = {.msg.fn = thread_msg_fn, .loop = loop};
    struct poster_arg pa = {mb, &tm.msg};
    pthread_t poster;
    CHECK_EQ_INT(pthread_create(&poster, NULL, post_one, &pa), 0);
    CHECK(run_bounded(loop, WATCHDOG_SECONDS));
    CHECK_EQ_INT(pthread_join(poster, NULL), 0);
    CHECK_EQ_INT(tm.runs, 1);
    CHECK(pthread_equal(tm.ran_on, pthread_self()));
    CHECK(!pthread_equal(tm.ran_on, poster));
    mailbox_free(mb);
    ev_loop_destroy(loop);
}

#define POSTERS          10
#define POSTS_PER_POSTER 10000

struct seq_msg {
    struct mailbox_msg msg;
    struct seq_state *state;
    unsigned poster, seq;
    unsigned runs;
};

struct seq_state {
    struct ev_loop *loop;
    unsigned next_seq[POSTERS];
    unsigned delivered, out_of_order;
};

static void seq_msg_fn(struct mailbox_msg *m)
{
    struct seq_msg *sm = CONTAINER_OF(m, struct seq_msg, msg);
    struct seq_state *st = sm->state;
    sm->runs++;
    if (sm->seq != st->next_seq[sm->poster])
        st->out_of_order++;
    st->next_seq[sm->poster] = sm->seq + 1;
    if (++st->delivered == POSTERS * POSTS_PER_POSTER)
        ev_break(st->loop, EVBREAK_ALL);
}

struct seq_poster {
    struct mailbox *mb;
    struct seq_msg *msgs; /* this poster's POSTS_PER_POSTER messages */
};

static void *post_many(void *arg)
{
    struct seq_poster *sp = arg;
    for (unsigned i = 0; i < POSTS_PER_POSTER; i++)
        mailbox_post(sp->mb, &sp->msgs[i].msg);
    return NULL;
}

TEST(mailbox_delivers_every_post_once_in_order_per_poster)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct mailbox *mb = mailbox_new(loop);
    CHECK(mb != NULL);
    struct seq_state st = {.loop = loop};
    struct seq_msg *msgs = calloc(POSTERS * POSTS_PER_POSTER, sizeof(*msgs));
    CHECK(msgs != NULL);
    struct seq_poster sp[POSTERS];
    pthread_t threads[POSTERS];
    for (unsigned t = 0; t < POSTERS; t++) {
        for (unsigned i = 0; i < POSTS_PER_POSTER; i++) {
            struct seq_msg *sm = &msgs[t * POSTS_PER_POSTER + i];
            sm->msg.fn = seq_msg_fn;
            sm->state = &st;
            sm->poster = t;
            sm->seq = i;
        }
        sp[t] = (struct seq_poster){mb, &msgs[t * POSTS_PER_POSTER]};
        CHECK_EQ_INT(pthread_create(&threads[t], NULL, post_many, &sp[t]), 0);
    }
    CHECK(run_bounded(loop, WATCHDOG_SECONDS));
    for (unsigned t = 0; t < POSTERS; t++)
        CHECK_EQ_INT(pthread_join(threads[t], NULL), 0);
    CHECK_EQ_INT(st.delivered, POSTERS * POSTS_PER_POSTER);
    CHECK_EQ_INT(st.out_of_order, 0);
    unsigned not_once = 0;
    for (unsigned i = 0; i < POSTERS * POSTS_PER_POSTER; i++)
        not_once += msgs[i].runs != 1;
    CHECK_EQ_INT(not_once, 0);
    free(msgs);
    mailbox_free(mb);
    ev_loop_destroy(loop);
}

struct chain_msg {
    struct mailbox_msg first, second;
    struct mailbox *mb;
    struct ev_loop *loop;
    int first_runs, second_runs;
};

static void chain_second_fn(struct mailbox_msg *m)
{
    struct chain_msg *cm = CONTAINER_OF(m, struct chain_msg, second);
    cm->second_runs++;
    if (cm->loop)
        ev_break(cm->loop, EVBREAK_ALL);
}

static void chain_first_fn(struct mailbox_msg *m)
{
    struct chain_msg *cm = CONTAINER_OF(m, struct chain_msg, first);
    cm->first_runs++;
    cm->second.fn = chain_second_fn;
    mailbox_post(cm->mb, &cm->second);
}

TEST(mailbox_message_can_post_another_message)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct mailbox *mb = mailbox_new(loop);
    CHECK(mb != NULL);
    struct chain_msg cm = {.first.fn = chain_first_fn, .mb = mb, .loop = loop};
    struct poster_arg pa = {mb, &cm.first};
    pthread_t poster;
    CHECK_EQ_INT(pthread_create(&poster, NULL, post_one, &pa), 0);
    CHECK(run_bounded(loop, WATCHDOG_SECONDS));
    CHECK_EQ_INT(pthread_join(poster, NULL), 0);
    CHECK_EQ_INT(cm.first_runs, 1);
    CHECK_EQ_INT(cm.second_runs, 1);
    mailbox_free(mb);
    ev_loop_destroy(loop);
}

TEST(mailbox_drain_runs_pending_messages_and_their_follow_ups_now)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct mailbox *mb = mailbox_new(loop);
    CHECK(mb != NULL);
    struct chain_msg cm = {.first.fn = chain_first_fn, .mb = mb};
    mailbox_post(mb, &cm.first);
    CHECK_EQ_INT(cm.first_runs, 0); /* posting never runs fn inline */
    mailbox_drain(mb);
    CHECK_EQ_INT(cm.first_runs, 1);
    CHECK_EQ_INT(cm.second_runs, 1);
    mailbox_drain(mb); /* empty: nothing runs twice */
    CHECK_EQ_INT(cm.first_runs, 1);
    mailbox_free(mb);
    ev_loop_destroy(loop);
}

TEST(mailbox_idle_does_not_keep_loop_alive)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct mailbox *mb = mailbox_new(loop);
    CHECK(mb != NULL);
    /* With only the unref'd async watcher, ev_run returns at once. */
    CHECK_EQ_INT(ev_run(loop, 0), 0);
    mailbox_free(mb);
    ev_loop_destroy(loop);
}

/* ---- pool ---- */

struct test_job {
    struct pool_job job;
    struct ev_loop *loop;
    struct gate *gate;      /* work waits on it when set */
    unsigned gate_need;     /* threads gate_wait waits for */
    atomic_int *done_count; /* done breaks the loop when it reaches done_goal */
    int done_goal;
    int index;
    int *order; /* work appends index here when set (max_threads == 1) */
    int *order_len;
    atomic_int *running, *max_running;
    /* Written by work, read on the loop thread after the mailbox or a join. */
    pthread_t work_thread;
    int work_ran, gate_ok;
    /* Written by done. */
    pthread_t done_thread;
    int done_ran, work_ran_before_done;
};

static void test_work(struct pool_job *j)
{
    struct test_job *tj = CONTAINER_OF(j, struct test_job, job);
    tj->work_thread = pthread_self();
    if (tj->running) {
        int now = atomic_fetch_add(tj->running, 1) + 1;
        int seen = atomic_load(tj->max_running);
        while (now > seen && !atomic_compare_exchange_weak(tj->max_running, &seen, now))
            ;
    }
    tj->gate_ok = tj->gate ? gate_wait(tj->gate, tj->gate_need) : 1;
    if (tj->running) {
        sleep_ms(2);
        atomic_fetch_sub(tj->running, 1);
    }
    if (tj->order)
        tj->order[(*tj->order_len)++] = tj->index;
    tj->work_ran = 1;
}

static void test_done(struct pool_job *j)
{
    struct test_job *tj = CONTAINER_OF(j, struct test_job, job);
    tj->done_thread = pthread_self();
    tj->work_ran_before_done = tj->work_ran;
    tj->done_ran++;
    if (tj->done_count && atomic_fetch_add(tj->done_count, 1) + 1 == tj->done_goal)
        ev_break(tj->loop, EVBREAK_ALL);
}

static void test_job_init(struct test_job *tj, struct ev_loop *loop, atomic_int *done_count,
                          int done_goal, int index)
{
    *tj = (struct test_job){
        .loop = loop, .done_count = done_count, .done_goal = done_goal, .index = index};
    tj->job.work = test_work;
    tj->job.done = test_done;
}

/* The loop, mailbox and pool every pool test needs. */
struct fixture {
    struct ev_loop *loop;
    struct mailbox *mb;
    struct pool *pool;
};

static void fixture_init(struct fixture *f, unsigned max_threads)
{
    f->loop = ev_loop_new(EVFLAG_AUTO);
    CHECK(f->loop != NULL);
    f->mb = mailbox_new(f->loop);
    CHECK(f->mb != NULL);
    f->pool = pool_new(f->mb, max_threads);
    CHECK(f->pool != NULL);
}

static void fixture_destroy(struct fixture *f)
{
    pool_free(f->pool);
    mailbox_drain(f->mb);
    mailbox_free(f->mb);
    ev_loop_destroy(f->loop);
}

TEST(pool_new_rejects_zero_max_threads)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct mailbox *mb = mailbox_new(loop);
    errno = 0;
    CHECK(pool_new(mb, 0) == NULL);
    CHECK_EQ_INT(errno, EINVAL);
    mailbox_free(mb);
    ev_loop_destroy(loop);
}

TEST(pool_starts_no_thread_before_first_submit)
{
    struct fixture f;
    fixture_init(&f, 4);
    CHECK_EQ_INT(pool_threads(f.pool), 0);
    CHECK_EQ_INT(pool_busy(f.pool), 0);
    CHECK_EQ_INT(pool_queued(f.pool), 0);
    atomic_int done_count = 0;
    struct test_job tj;
    test_job_init(&tj, f.loop, &done_count, 1, 0);
    CHECK_EQ_INT(pool_submit(f.pool, &tj.job), 0);
    CHECK_EQ_INT(pool_threads(f.pool), 1);
    CHECK(run_bounded(f.loop, WATCHDOG_SECONDS));
    CHECK_EQ_INT(tj.done_ran, 1);
    fixture_destroy(&f);
}

TEST(pool_reuses_idle_thread_instead_of_starting_another)
{
    struct fixture f;
    fixture_init(&f, 4);
    atomic_int done_count = 0;
    struct test_job tj[3];
    for (int i = 0; i < 3; i++) {
        /* One at a time: each submit finds the previous job's thread idle. */
        test_job_init(&tj[i], f.loop, &done_count, i + 1, i);
        CHECK_EQ_INT(pool_submit(f.pool, &tj[i].job), 0);
        CHECK(run_bounded(f.loop, WATCHDOG_SECONDS));
        CHECK_EQ_INT(tj[i].done_ran, 1);
        CHECK_EQ_INT(pool_threads(f.pool), 1);
    }
    fixture_destroy(&f);
}

TEST(pool_done_runs_on_loop_thread_after_work)
{
    struct fixture f;
    fixture_init(&f, 2);
    atomic_int done_count = 0;
    struct test_job tj;
    test_job_init(&tj, f.loop, &done_count, 1, 0);
    CHECK_EQ_INT(pool_submit(f.pool, &tj.job), 0);
    CHECK_EQ_INT(tj.done_ran, 0); /* never inline from submit */
    CHECK(run_bounded(f.loop, WATCHDOG_SECONDS));
    CHECK_EQ_INT(tj.done_ran, 1);
    CHECK_EQ_INT(tj.work_ran_before_done, 1);
    CHECK(!pthread_equal(tj.work_thread, pthread_self()));
    CHECK(pthread_equal(tj.done_thread, pthread_self()));
    fixture_destroy(&f);
}

TEST(pool_runs_jobs_concurrently_up_to_max_threads)
{
    enum { N = 4 };
    struct fixture f;
    fixture_init(&f, N);
    struct gate barrier;
    gate_init(&barrier);
    atomic_int done_count = 0;
    struct test_job tj[N];
    for (int i = 0; i < N; i++) {
        /* Each job waits until all N are running at once. */
        test_job_init(&tj[i], f.loop, &done_count, N, i);
        tj[i].gate = &barrier;
        tj[i].gate_need = N;
        CHECK_EQ_INT(pool_submit(f.pool, &tj[i].job), 0);
    }
    CHECK(run_bounded(f.loop, WATCHDOG_SECONDS));
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(tj[i].gate_ok, 1);
        CHECK_EQ_INT(tj[i].done_ran, 1);
    }
    CHECK_EQ_INT(pool_threads(f.pool), N);
    fixture_destroy(&f);
    gate_destroy(&barrier);
}

TEST(pool_never_starts_more_threads_than_max)
{
    enum { MAX = 3, JOBS = 12 };
    struct fixture f;
    fixture_init(&f, MAX);
    atomic_int done_count = 0, running = 0, max_running = 0;
    struct test_job tj[JOBS];
    for (int i = 0; i < JOBS; i++) {
        test_job_init(&tj[i], f.loop, &done_count, JOBS, i);
        tj[i].running = &running;
        tj[i].max_running = &max_running;
        CHECK_EQ_INT(pool_submit(f.pool, &tj[i].job), 0);
        CHECK(pool_threads(f.pool) <= MAX);
    }
    CHECK(run_bounded(f.loop, WATCHDOG_SECONDS));
    CHECK_EQ_INT(atomic_load(&done_count), JOBS);
    CHECK(atomic_load(&max_running) >= 1);
    CHECK(atomic_load(&max_running) <= MAX);
    CHECK(pool_threads(f.pool) <= MAX);
    fixture_destroy(&f);
}

TEST(pool_counts_busy_and_queued_while_jobs_block)
{
    enum { MAX = 2, JOBS = 5 };
    struct fixture f;
    fixture_init(&f, MAX);
    struct gate gate;
    gate_init(&gate);
    atomic_int done_count = 0;
    struct test_job tj[JOBS];
    for (int i = 0; i < JOBS; i++) {
        test_job_init(&tj[i], f.loop, &done_count, JOBS, i);
        tj[i].gate = &gate;
        tj[i].gate_need = ~0u; /* only gate_open lets them through */
        CHECK_EQ_INT(pool_submit(f.pool, &tj[i].job), 0);
    }
    CHECK(wait_count(pool_busy, f.pool, MAX));
    CHECK_EQ_INT(pool_threads(f.pool), MAX);
    CHECK_EQ_INT(pool_busy(f.pool), MAX);
    CHECK_EQ_INT(pool_queued(f.pool), JOBS - MAX);
    gate_open(&gate);
    CHECK(run_bounded(f.loop, WATCHDOG_SECONDS));
    CHECK_EQ_INT(atomic_load(&done_count), JOBS);
    CHECK_EQ_INT(pool_busy(f.pool), 0);
    CHECK_EQ_INT(pool_queued(f.pool), 0);
    CHECK_EQ_INT(pool_threads(f.pool), MAX);
    for (int i = 0; i < JOBS; i++)
        CHECK_EQ_INT(tj[i].gate_ok, 1);
    fixture_destroy(&f);
    gate_destroy(&gate);
}

TEST(pool_free_waits_for_queued_jobs)
{
    enum { JOBS = 5 };
    struct fixture f;
    fixture_init(&f, 1);
    struct gate gate;
    gate_init(&gate);
    atomic_int done_count = 0;
    int order[JOBS], order_len = 0;
    struct test_job tj[JOBS];
    for (int i = 0; i < JOBS; i++) {
        test_job_init(&tj[i], f.loop, &done_count, JOBS, i);
        tj[i].order = order;
        tj[i].order_len = &order_len;
        if (i == 0) {
            tj[i].gate = &gate; /* holds the only thread so the rest queue */
            tj[i].gate_need = ~0u;
        }
        CHECK_EQ_INT(pool_submit(f.pool, &tj[i].job), 0);
    }
    CHECK(wait_count(pool_busy, f.pool, 1));
    CHECK_EQ_INT(pool_queued(f.pool), JOBS - 1);
    gate_open(&gate);
    pool_free(f.pool);
    /* Every job ran, in submission order, on the single thread. */
    CHECK_EQ_INT(order_len, JOBS);
    for (int i = 0; i < order_len; i++)
        CHECK_EQ_INT(order[i], i);
    /* pool_free leaves done callbacks in the mailbox. */
    CHECK_EQ_INT(atomic_load(&done_count), 0);
    mailbox_drain(f.mb);
    CHECK_EQ_INT(atomic_load(&done_count), JOBS);
    for (int i = 0; i < JOBS; i++)
        CHECK_EQ_INT(tj[i].done_ran, 1);
    mailbox_free(f.mb);
    ev_loop_destroy(f.loop);
    gate_destroy(&gate);
}

static void free_in_work(struct pool_job *j)
{
    struct test_job *tj = CONTAINER_OF(j, struct test_job, job);
    atomic_fetch_add(tj->done_count, 1);
    free(tj);
}

TEST(pool_job_without_done_may_free_itself_in_work)
{
    struct fixture f;
    fixture_init(&f, 1);
    atomic_int ran = 0;
    for (int i = 0; i < 3; i++) {
        struct test_job *tj = calloc(1, sizeof(*tj));
        CHECK(tj != NULL);
        tj->done_count = &ran;
        tj->job.work = free_in_work;
        tj->job.done = NULL;
        CHECK_EQ_INT(pool_submit(f.pool, &tj->job), 0);
    }
    pool_free(f.pool);
    CHECK_EQ_INT(atomic_load(&ran), 3);
    mailbox_drain(f.mb);
    mailbox_free(f.mb);
    ev_loop_destroy(f.loop);
}

CHECK_MAIN()
