/* calculate: a blocking route, run on the thread pool.
 *
 *   POST /calculate/  {"a": 1, "b": 2.5}  -> after 2 s: {"result":3.5}
 *
 * The 2-second sleep stands for CPU-bound work: FastAPI runs a plain `def`
 * endpoint in its thread pool, and an EVICORN_SYNC route is the same. The
 * event loop goes on serving other routes meanwhile.
 *
 * The body must be a JSON object whose values are numbers; anything else
 * gets FastAPI's 422, checked before the work starts (as FastAPI validates
 * before calling the endpoint). The sum stays an integer while every input
 * is one ({"a":1,"b":2} -> {"result":3}) and is a float otherwise. */
#include <time.h>

#include <evicorn/sdk.h>

static void work_for(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ; /* interrupted by a signal: sleep the rest */
}

/* The sum of obj's values, or NULL after adding a 422 entry per bad value
 * (loc ["body", key], pydantic's float message, or its null message). */
static json_t *sum_values(json_t *obj, evicorn_errors *errs)
{
    const char *key;
    json_t *v;
    json_int_t isum = 0;
    double fsum = 0;
    int all_int = 1, bad = 0;
    json_object_foreach(obj, key, v)
    {
        if (json_is_integer(v)) {
            json_int_t x = json_integer_value(v);
            if (__builtin_add_overflow(isum, x, &isum))
                all_int = 0; /* past 64 bits: the float sum is the answer */
            fsum += (double)x;
        } else if (json_is_real(v)) {
            all_int = 0;
            fsum += json_real_value(v);
        } else {
            int null = json_is_null(v);
            evicorn_errors_add(errs, EVICORN_LOC_BODY, key,
                               null ? EVICORN_MSG_NONE : EVICORN_MSG_FLOAT,
                               null ? EVICORN_TYPE_NONE : EVICORN_TYPE_FLOAT);
            bad = 1;
        }
    }
    if (bad)
        return NULL;
    return all_int ? json_integer(isum) : json_real(fsum);
}

static void calculate(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_errors errs = EVICORN_ERRORS_INIT;
    json_t *body = evicorn_json_body(req, &errs);
    json_t *result = NULL;
    if (evicorn_json_expect_object(body, &errs) == 0)
        result = sum_values(body, &errs);
    json_decref(body);
    if (evicorn_errors_any(&errs)) {
        json_decref(result);
        evicorn_respond_validation(req, &errs);
        return;
    }
    if (!result) { /* json_real refuses an infinite sum */
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    work_for(2.0);
    evicorn_respond_json(req, 200, json_pack("{s:o}", "result", result));
}

static const evicorn_route routes[] = {
    EVICORN_POST_SYNC("/calculate/", calculate),
};

EVICORN_PLUGIN("calculate", "1.0.0", routes, NULL, NULL)
