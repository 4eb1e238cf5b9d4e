/* Helpers shared by evicorn's C unit tests (tests/unit/support.c, linked
 * into every unit test): a bounded ev_run, a sleep that resumes after
 * signals, and the removal of a test's scratch folder. */
#ifndef EVICORN_TEST_SUPPORT_H
#define EVICORN_TEST_SUPPORT_H

#include <ev.h>
#include <stdbool.h>

/* A timer callback that breaks the loop and, when t->data is not NULL,
 * sets the int it points at to 1. */
void break_loop_cb(struct ev_loop *loop, ev_timer *t, int revents);

/* Runs loop until a callback calls ev_break; returns 0 if a watchdog timer
 * of `seconds` had to break it instead. */
int run_bounded(struct ev_loop *loop, double seconds);

void sleep_ms(long ms);

/* Removes dir and everything in it, CHECKing every step. With missing_ok,
 * a folder that cannot be opened (a test removed or moved it) is passed
 * over; otherwise that is a failed CHECK. */
void remove_tree(const char *dir, bool missing_ok);

#endif
