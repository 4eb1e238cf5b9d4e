/* host_xcall: the calls a sync handler makes from its pool thread, run on
 * the loop thread that owns the request.
 *
 * Every API function a sync handler may call packs its arguments into a
 * struct xcall and hands it to xcall_run with the function that does the
 * work on the loop. On the loop thread that function runs at once; on any
 * other thread the xcall is posted to the loop's mailbox and the caller
 * waits on a condition variable for the result, so error codes are exact.
 * A function may also finish later (send waits until a slow client has
 * read enough), which is the backpressure a blocking handler feels. */
#include "container.h"
#include "host_internal.h"

struct xcall_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int result;
    bool done;
};

void xcall_finish(struct xcall *x, int result)
{
    struct xcall_wait *w = x->wait;
    pthread_mutex_lock(&w->mu);
    w->result = result;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void xcall_on_loop(struct mailbox_msg *msg)
{
    struct xcall *x = container_of(msg, struct xcall, msg);
    int rc = x->fn(x);
    if (rc != XCALL_LATER)
        xcall_finish(x, rc);
}

int xcall_run(struct xcall *x)
{
    struct host *h = x->c->host;
    if (host_on_loop(h))
        return x->fn(x);
    struct xcall_wait w = {.done = false};
    if (pthread_mutex_init(&w.mu, NULL) != 0)
        return EVICORN_ENOMEM;
    if (pthread_cond_init(&w.cv, NULL) != 0) {
        pthread_mutex_destroy(&w.mu);
        return EVICORN_ENOMEM;
    }
    x->wait = &w;
    x->msg.fn = xcall_on_loop;
    mailbox_post(h->mailbox, &x->msg);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return w.result;
}
