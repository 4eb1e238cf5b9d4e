/* tasks: work that runs after the response (FastAPI's BackgroundTasks).
 *
 *   POST /send-notification/{email}
 *       -> {"message":"Notification sent in the background"}, at once;
 *          then "<email>\n" is appended to the notification log.
 *
 * The log is EVICORN_NOTIFICATION_LOG (default ./notifications.log, read
 * at startup). Each task opens it with O_APPEND and writes its whole line
 * in one write(2), so lines from concurrent tasks, workers and processes
 * never interleave. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <evicorn/sdk.h>

struct note {
    const char *log_path; /* owned by the plugin state, which outlives every task */
    size_t len;
    char line[]; /* "<email>\n" */
};

static int plugin_startup(void **state, char *err, size_t errlen)
{
    const char *path = getenv("EVICORN_NOTIFICATION_LOG");
    char *copy = strdup(path && *path ? path : "./notifications.log");
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *state = copy;
    return 0;
}

static void plugin_shutdown(void *state)
{
    free(state);
}

/* Runs on the thread pool after the response went out; owns note. */
static void write_notification(void *ud)
{
    struct note *n = ud;
    int fd = open(n->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        evicorn_log(NULL, EVICORN_LOG_ERROR, "cannot open %s: %s", n->log_path, strerror(errno));
    } else {
        ssize_t w = write(fd, n->line, n->len);
        if (w != (ssize_t)n->len)
            evicorn_log(NULL, EVICORN_LOG_ERROR, "cannot append to %s: %s", n->log_path,
                        w < 0 ? strerror(errno) : "short write");
        close(fd);
    }
    free(n);
}

static void send_notification(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_str email = evicorn_path_str(req, "email", NULL);
    struct note *n = malloc(sizeof *n + email.len + 1);
    if (!n) {
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    n->log_path = evicorn_state(req);
    /* One notification, one line: a decoded %0A must not start another. */
    for (size_t i = 0; i < email.len; i++)
        n->line[i] = email.ptr[i] == '\n' || email.ptr[i] == '\r' ? ' ' : email.ptr[i];
    n->line[email.len] = '\n';
    n->len = email.len + 1;
    if (evicorn_background(req, write_notification, n) < 0) {
        free(n);
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    static const char body[] = "{\"message\":\"Notification sent in the background\"}";
    evicorn_respond_bytes(req, 200, "application/json", body, sizeof body - 1);
}

static const evicorn_route routes[] = {
    EVICORN_POST("/send-notification/{email}", send_notification),
};

EVICORN_PLUGIN("tasks", "1.0.0", routes, plugin_startup, plugin_shutdown)
