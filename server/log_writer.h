/* log_writer: access-log bytes leave for stdout on a thread of their own.
 *
 * stdout may be a pipe nobody reads quickly (a container runtime, a log
 * shipper that stalls, a terminal scrolled back): a write(2) there blocks,
 * and on the loop thread that would stop every connection of the worker.
 * The loop hands its batch of lines to a queue under a mutex and goes on;
 * the writer thread writes them. The queue is bounded: while it is full,
 * lines are dropped and counted, and the count is reported on stderr (one
 * line) once the writer catches up, as nginx's error log does for a
 * blocked access log buffer.
 *
 * The thread starts with the first batch, in each process that logs (a
 * forked worker starts its own; what a parent had queued is the parent's
 * to write). */
#ifndef EVICORN_LOG_WRITER_H
#define EVICORN_LOG_WRITER_H

#include <stddef.h>

/* Writes all n bytes to fd now, retrying short writes and EINTR; a
 * failing log is dropped (there is nowhere left to report it). */
void log_write_all(int fd, const char *p, size_t n);
/* Queues n bytes of whole lines for stdout. Never waits for the write. */
void log_writer_put(const char *p, size_t n);
/* Before the process exits: waits up to timeout seconds for what is
 * queued to be written, then stops the thread (what is left is dropped). */
void log_writer_drain(double timeout);

#endif
