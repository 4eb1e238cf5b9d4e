/* errors: FastAPI's validation errors, collected then answered at once.
 *
 * The shape is pydantic 1's error list as FastAPI 0.92 serializes it:
 * {"detail":[{"loc":[...],"msg":"...","type":"..."[,"ctx":{...}]}]}.
 * Running out of memory while collecting turns the answer into a 500, so
 * a client never gets a 422 that silently lost an entry. */
#include "internal.h"

static void errors_oom(evicorn_errors *errs)
{
    evicorn_errors_fail(errs, 500, "Internal Server Error");
}

int evicorn_errors_add_json(evicorn_errors *errs, json_t *loc, const char *msg, const char *type,
                            json_t *ctx)
{
    if (!errs) {
        json_decref(loc);
        json_decref(ctx);
        return 0;
    }
    json_t *e = json_object();
    if (!errs->list)
        errs->list = json_array();
    if (!e || !errs->list || !loc) {
        json_decref(loc);
        json_decref(ctx);
        goto oom;
    }
    /* json_object_set_new takes its value's reference even when it fails. */
    int rc = json_object_set_new(e, "loc", loc);
    rc |= json_object_set_new(e, "msg", json_string(msg ? msg : ""));
    rc |= json_object_set_new(e, "type", json_string(type ? type : ""));
    if (ctx)
        rc |= json_object_set_new(e, "ctx", ctx);
    if (rc != 0)
        goto oom;
    if (json_array_append_new(errs->list, e) < 0) {
        e = NULL; /* taken too */
        goto oom;
    }
    return 0;
oom:
    json_decref(e);
    errors_oom(errs);
    return EVICORN_ENOMEM;
}

int evicorn_errors_add(evicorn_errors *errs, const char *loc_kind, const char *loc_name,
                       const char *msg, const char *type)
{
    json_t *loc = loc_name ? json_pack("[ss]", loc_kind, loc_name) : json_pack("[s]", loc_kind);
    if (!loc && errs) {
        errors_oom(errs);
        return EVICORN_ENOMEM;
    }
    return evicorn_errors_add_json(errs, loc, msg, type, NULL);
}

void evicorn_errors_fail(evicorn_errors *errs, int status, const char *detail)
{
    if (!errs)
        return;
    errs->status = status;
    errs->detail = detail;
}

int evicorn_errors_any(const evicorn_errors *errs)
{
    return errs && (errs->status != 0 || json_array_size(errs->list) > 0);
}

json_t *evicorn_errors_json(const evicorn_errors *errs)
{
    if (errs && errs->list)
        return json_incref(errs->list);
    return json_array();
}

int evicorn_respond_validation(evicorn_request *req, evicorn_errors *errs)
{
    int rc;
    if (errs && errs->status) {
        rc = evicorn_respond_error(req, errs->status, errs->detail);
    } else {
        json_t *body = json_pack("{s:o}", "detail", evicorn_errors_json(errs));
        rc = body ? evicorn_respond_json(req, 422, body)
                  : evicorn_respond_error(req, 500, "Internal Server Error");
    }
    evicorn_errors_clear(errs);
    return rc;
}

void evicorn_errors_clear(evicorn_errors *errs)
{
    if (!errs)
        return;
    json_decref(errs->list);
    *errs = (evicorn_errors)EVICORN_ERRORS_INIT;
}
