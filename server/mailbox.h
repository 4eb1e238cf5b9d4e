/* Cross-thread handoff into one libev loop.
 *
 * libev loops are single-threaded and ev_async_send is the only thread-safe
 * libev call, so other threads never touch a loop directly: they post a
 * message here and its function runs later on the loop's thread. Messages are
 * intrusive (embedded in the caller's own struct), so posting never allocates
 * and never fails. */
#ifndef EVICORN_MAILBOX_H
#define EVICORN_MAILBOX_H

#include <ev.h>

struct mailbox;

struct mailbox_msg {
    struct mailbox_msg *next;         /* private to the mailbox */
    void (*fn)(struct mailbox_msg *); /* runs on the loop thread */
};

/* Loop thread. Starts an ev_async watcher on loop (it is unref'd with
 * ev_unref so an idle mailbox does not keep ev_run alive). NULL on out of
 * memory. */
struct mailbox *mailbox_new(struct ev_loop *loop);

/* Any thread. msg->fn must be set; msg must stay valid until fn runs.
 * Messages from one thread run in the order posted. fn may post new messages;
 * they run in the same or the next drain. */
void mailbox_post(struct mailbox *mb, struct mailbox_msg *msg);

/* Loop thread: runs everything posted so far, now (used at shutdown). It
 * repeats until the mailbox is empty, so messages posted by the functions it
 * runs are run too. Must not be called from a message's fn. */
void mailbox_drain(struct mailbox *mb);

/* Loop thread: stops the watcher and frees the mailbox (NULL is a no-op).
 * Does not run pending messages. No thread may be posting any more, and it
 * must not be called from a message's fn. */
void mailbox_free(struct mailbox *mb);

#endif
