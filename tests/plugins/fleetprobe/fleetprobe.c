/* fleetprobe: a test-only plugin for the fleet tests (tests/http/test_fleet.py),
 * built twice, FLEETPROBE_VERSION "1" and "2", so a client behind a load
 * balancer can tell which version each instance serves, and which instance
 * answered (the environment's FLEETPROBE_INSTANCE, read at startup).
 *
 *   GET /fleet    fleetprobe v<version> on <instance>   (text/plain)
 *
 * The answer is built once at startup: the tests count requests, not work,
 * and a cheap route keeps the balancer the busy part. */
#include <evicorn/sdk.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FLEETPROBE_VERSION
#define FLEETPROBE_VERSION "1"
#endif

#define LIT(s) s, sizeof(s) - 1

static const evicorn_header text_headers[] = {
    {LIT("content-type"), LIT("text/plain; charset=utf-8")}};

struct answer {
    size_t len;
    char body[128];
};

static int startup(void **state, char *err, size_t errlen)
{
    struct answer *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    const char *instance = getenv("FLEETPROBE_INSTANCE");
    int n = snprintf(a->body, sizeof a->body, "fleetprobe v%s on %s", FLEETPROBE_VERSION,
                     instance && *instance ? instance : "-");
    /* A long instance name is cut: the answer only needs to tell them apart. */
    a->len = n < 0 ? 0 : ((size_t)n < sizeof a->body ? (size_t)n : sizeof a->body - 1);
    *state = a;
    return 0;
}

static void shutdown_probe(void *state)
{
    free(state);
}

static void fleet(evicorn_request *req, void *data)
{
    (void)data;
    const struct answer *a = evicorn_state(req);
    evicorn_respond(req, 200, text_headers, 1, a->body, a->len);
}

static const evicorn_route routes[] = {
    EVICORN_GET("/fleet", fleet),
};

EVICORN_PLUGIN("fleetprobe", FLEETPROBE_VERSION ".0.0", routes, startup, shutdown_probe)
