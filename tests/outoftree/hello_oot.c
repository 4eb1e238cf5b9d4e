/* hello_oot: a plugin built outside the evicorn tree, against the
 * installed SDK only (see test_outoftree.py). OOT_NAME tells the two
 * builds apart: GET /oot/<OOT_NAME>?n=2 -> {"built_with":"<OOT_NAME>","n":2}. */
#include <evicorn/sdk.h>

#ifndef OOT_NAME
#define OOT_NAME "cc"
#endif

static void oot(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_errors errs = EVICORN_ERRORS_INIT;
    long long n = evicorn_query_int(req, "n", 1, &errs);
    if (evicorn_errors_any(&errs)) {
        evicorn_respond_validation(req, &errs);
        return;
    }
    evicorn_respond_json(req, 200,
                         json_pack("{s:s, s:I}", "built_with", OOT_NAME, "n", (json_int_t)n));
}

static const evicorn_route routes[] = {
    EVICORN_GET("/oot/" OOT_NAME, oot),
};

EVICORN_PLUGIN("hello_oot_" OOT_NAME, "1.0.0", routes, NULL, NULL)
