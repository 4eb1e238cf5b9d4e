/* entry: the plugin side of negotiation, and logging.
 *
 * EVICORN_PLUGIN's evicorn_plugin_entry lands here. We check the host's
 * version before touching its table, then keep the table in one hidden
 * global that every other SDK function reads. The global is written once,
 * on the loop thread, before the host can run any handler, so readers on
 * pool threads need no synchronisation: the host's thread hand-off orders
 * the write before them. Each load of a plugin is a separate dlopen of a
 * private copy, so every generation has a global of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const evicorn_api *evicorn_sdk_api_;

/* A host whose major differs may have a different table, but the ABI keeps
 * log first so a refusal can still be explained. */
static void host_log(const evicorn_host *host, int level, const char *msg)
{
    const evicorn_api *api =
        host->size >= offsetof(evicorn_host, api) + sizeof host->api ? host->api : NULL;
    if (api && api->size >= offsetof(evicorn_api, log) + sizeof api->log && api->log)
        api->log(NULL, level, msg);
    else
        fprintf(stderr, "evicorn plugin: %s\n", msg);
}

const evicorn_plugin *evicorn_sdk_negotiate(const evicorn_host *host, const evicorn_plugin *desc)
{
    char msg[256];
    if (!host || host->size < offsetof(evicorn_host, api) + sizeof host->api || !host->api) {
        fprintf(stderr, "evicorn plugin %s: the host passed no function table\n", desc->name);
        return NULL;
    }
    if (host->abi_major != EVICORN_ABI_MAJOR || host->abi_minor < desc->abi_minor) {
        snprintf(msg, sizeof msg, "%s %s needs ABI %d.%u or a later 1.x, the host speaks %u.%u",
                 desc->name, desc->version ? desc->version : "", EVICORN_ABI_MAJOR,
                 (unsigned)desc->abi_minor, (unsigned)host->abi_major, (unsigned)host->abi_minor);
        host_log(host, EVICORN_LOG_ERROR, msg);
        return NULL;
    }
    /* Every ABI 1.0 function the SDK calls unchecked must be there. */
    const evicorn_api *api = host->api;
    if (api->size < offsetof(evicorn_api, background) + sizeof api->background) {
        snprintf(msg, sizeof msg, "%s: the host's function table is too small (%u bytes)",
                 desc->name, (unsigned)api->size);
        host_log(host, EVICORN_LOG_ERROR, msg);
        return NULL;
    }
    evicorn_sdk_api_ = api;
    return desc;
}

void evicorn_logv(evicorn_request *req, int level, const char *fmt, va_list ap)
{
    const evicorn_api *api = evicorn_sdk_api_;
    if (!api || !fmt)
        return;
    char line[4096];
    vsnprintf(line, sizeof line, fmt, ap);
    api->log(req, level, line);
}

void evicorn_log(evicorn_request *req, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    evicorn_logv(req, level, fmt, ap);
    va_end(ap);
}

char *evicorn_strdup(evicorn_str s)
{
    char *p = malloc(s.len + 1);
    if (!p)
        return NULL;
    if (s.len)
        memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    return p;
}
