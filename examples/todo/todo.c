/* todo: a JSON CRUD API on PostgreSQL, the shape of a small FastAPI app
 * with an async database driver.
 *
 *   GET    /todos?limit=100&offset=0   [todo, ...] in id order
 *   POST   /todos                      201 todo (the created row)
 *   GET    /todos/{id}                 todo, or 404 {"detail":"Todo not found"}
 *   PATCH  /todos/{id}                 todo with the given fields changed
 *   DELETE /todos/{id}                 204, or 404
 *
 * where todo is {"id":1,"title":"...","description":null,"completed":false}.
 *
 * Bodies are validated as FastAPI validates these pydantic 1 models, and
 * a bad request gets its 422 {"detail":[...]} with every error at once:
 *
 *     class TodoIn(BaseModel):             # POST
 *         title: constr(strict=True, min_length=1, max_length=200)
 *         description: Optional[StrictStr] = None
 *         completed: StrictBool = False
 *
 *     class TodoPatch(BaseModel):          # PATCH: fields left out keep
 *         title: constr(strict=True, min_length=1, max_length=200)
 *         description: Optional[StrictStr]  # null clears it
 *         completed: StrictBool
 *
 * (strict: a title must be a JSON string and completed a JSON boolean; a
 * number is not turned into either). limit is 1..100 and offset >= 0, as
 * Query(100, ge=1, le=100) and Query(0, ge=0). A text with a NUL character
 * is refused too: PostgreSQL cannot store one.
 *
 * Every write is one statement run as its own transaction
 * (EVICORN_PG_ATOMIC); its RETURNING clause gives the row to answer with.
 * The table is scripts/sql/todo.sql's (scripts/db-load creates it): the
 * plugin does not create tables; without it, requests answer 500 naming
 * the missing relation. */
#define EVICORN_PLUGIN_MIN_ABI_MINOR 3

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evicorn/pg.h>
#include <evicorn/sdk.h>

#define TITLE_MAX 200
#define LIMIT_MAX 100

#define COLUMNS "id, title, description, completed"

static const char not_found[] = "Todo not found";

/* What a query needs until its continuation has run: the parameters (the
 * strings point into body, kept alive here) and the statement. */
struct call {
    json_t *body;
    char id[24];
    char numbers[2][24];
    const char *values[7];
    evicorn_pg_query query;
};

static struct call *call_new(const char *sql)
{
    struct call *c = calloc(1, sizeof *c);
    if (c) {
        c->query.sql = sql;
        c->query.values = c->values;
    }
    return c;
}

static void call_free(struct call *c)
{
    json_decref(c->body);
    free(c);
}

/* Runs c's statement; on a refusal answers it and frees c. */
static void call_run(evicorn_request *req, struct call *c, unsigned flags, evicorn_pg_fn fn)
{
    int rc = evicorn_pg_run(req, evicorn_state(req), &c->query, 1, flags, fn, c);
    if (rc < 0) {
        call_free(c);
        evicorn_respond_error(req, rc == EVICORN_ENOMEM ? 500 : 503, NULL);
    }
}

/* ---- validation ---- */

/* pydantic 1's "ensure this value ..." errors with {"limit_value": n}. */
static void add_limit_error(evicorn_errors *errs, json_t *loc, const char *msg, const char *type,
                            long long limit)
{
    evicorn_errors_add_json(errs, loc, msg, type, json_pack("{s:I}", "limit_value", limit));
}

/* An integer query parameter with bounds (max < 0: none). */
static long long query_bounded(evicorn_request *req, const char *name, long long def, long long min,
                               long long max, evicorn_errors *errs)
{
    char *s = evicorn_query_str(req, name, NULL, NULL);
    if (!s)
        return def;
    long long v = def;
    char msg[96];
    if (evicorn_parse_int(s, strlen(s), &v) < 0) {
        evicorn_errors_add(errs, EVICORN_LOC_QUERY, name, EVICORN_MSG_INT, EVICORN_TYPE_INT);
    } else if (v < min) {
        snprintf(msg, sizeof msg, "ensure this value is greater than or equal to %lld", min);
        add_limit_error(errs, json_pack("[ss]", EVICORN_LOC_QUERY, name), msg,
                        "value_error.number.not_ge", min);
    } else if (max >= 0 && v > max) {
        snprintf(msg, sizeof msg, "ensure this value is less than or equal to %lld", max);
        add_limit_error(errs, json_pack("[ss]", EVICORN_LOC_QUERY, name), msg,
                        "value_error.number.not_le", max);
    }
    free(s);
    return v;
}

static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    return n;
}

static json_t *body_loc(const char *field)
{
    return json_pack("[ss]", EVICORN_LOC_BODY, field);
}

/* A text field: a JSON string without NUL characters, of min..max
 * characters (max 0: any), or null when nullable. Returns 0 when valid. */
static int check_text(const json_t *v, const char *field, int nullable, size_t min, size_t max,
                      evicorn_errors *errs)
{
    if (json_is_null(v)) {
        if (nullable)
            return 0;
        evicorn_errors_add(errs, EVICORN_LOC_BODY, field, EVICORN_MSG_NONE, EVICORN_TYPE_NONE);
        return -1;
    }
    if (!json_is_string(v)) {
        evicorn_errors_add(errs, EVICORN_LOC_BODY, field, EVICORN_MSG_STR, EVICORN_TYPE_STR);
        return -1;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (memchr(s, '\0', len)) {
        evicorn_errors_add(errs, EVICORN_LOC_BODY, field, "string contains a NUL character",
                           "value_error.str.nul");
        return -1;
    }
    size_t chars = utf8_chars(s, len);
    char msg[96];
    if (chars < min) {
        snprintf(msg, sizeof msg, "ensure this value has at least %zu characters", min);
        add_limit_error(errs, body_loc(field), msg, "value_error.any_str.min_length",
                        (long long)min);
        return -1;
    }
    if (max && chars > max) {
        snprintf(msg, sizeof msg, "ensure this value has at most %zu characters", max);
        add_limit_error(errs, body_loc(field), msg, "value_error.any_str.max_length",
                        (long long)max);
        return -1;
    }
    return 0;
}

static int check_completed(const json_t *v, evicorn_errors *errs)
{
    if (json_is_boolean(v))
        return 0;
    if (json_is_null(v))
        evicorn_errors_add(errs, EVICORN_LOC_BODY, "completed", EVICORN_MSG_NONE,
                           EVICORN_TYPE_NONE);
    else
        evicorn_errors_add(errs, EVICORN_LOC_BODY, "completed", "value is not a valid boolean",
                           "value_error.strictbool");
    return -1;
}

/* The {id} of the route (the router matched digits; beyond a long long it
 * is FastAPI's 422). Returns 0, or -1 after answering. */
static int todo_id(evicorn_request *req, struct call *c)
{
    evicorn_errors errs = EVICORN_ERRORS_INIT;
    long long id = evicorn_path_int(req, "id", &errs);
    if (evicorn_errors_any(&errs)) {
        evicorn_respond_validation(req, &errs);
        return -1;
    }
    snprintf(c->id, sizeof c->id, "%lld", id);
    c->values[0] = c->id;
    return 0;
}

/* ---- answers ---- */

/* The first row of the reply as the answer (status), or 404 when there is
 * none. */
static void answer_row(evicorn_request *req, const evicorn_pg_reply *reply, int status)
{
    if (reply->status != 0) {
        evicorn_pg_respond_error(req, reply);
        return;
    }
    if (PQntuples(reply->results[0]) == 0) {
        evicorn_respond_error(req, 404, not_found);
        return;
    }
    evicorn_respond_json(req, status, evicorn_pg_row_json(reply->results[0], 0));
}

static void got_row(evicorn_request *req, void *ud, const evicorn_pg_reply *reply)
{
    answer_row(req, reply, 200);
    call_free(ud);
}

static void got_created(evicorn_request *req, void *ud, const evicorn_pg_reply *reply)
{
    answer_row(req, reply, 201);
    call_free(ud);
}

static void got_rows(evicorn_request *req, void *ud, const evicorn_pg_reply *reply)
{
    if (reply->status != 0)
        evicorn_pg_respond_error(req, reply);
    else
        evicorn_respond_json(req, 200, evicorn_pg_rows_json(reply->results[0]));
    call_free(ud);
}

static void got_deleted(evicorn_request *req, void *ud, const evicorn_pg_reply *reply)
{
    if (reply->status != 0)
        evicorn_pg_respond_error(req, reply);
    else if (PQntuples(reply->results[0]) == 0)
        evicorn_respond_error(req, 404, not_found);
    else
        evicorn_respond(req, 204, NULL, 0, NULL, 0);
    call_free(ud);
}

/* ---- routes ---- */

static void list_todos(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_errors errs = EVICORN_ERRORS_INIT;
    long long limit = query_bounded(req, "limit", 100, 1, LIMIT_MAX, &errs);
    long long offset = query_bounded(req, "offset", 0, 0, -1, &errs);
    if (evicorn_errors_any(&errs)) {
        evicorn_respond_validation(req, &errs);
        return;
    }
    struct call *c = call_new("SELECT " COLUMNS " FROM todos ORDER BY id LIMIT $1 OFFSET $2");
    if (!c) {
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    snprintf(c->numbers[0], sizeof c->numbers[0], "%lld", limit);
    snprintf(c->numbers[1], sizeof c->numbers[1], "%lld", offset);
    c->values[0] = c->numbers[0];
    c->values[1] = c->numbers[1];
    c->query.nparams = 2;
    call_run(req, c, 0, got_rows);
}

static void get_todo(evicorn_request *req, void *data)
{
    (void)data;
    struct call *c = call_new("SELECT " COLUMNS " FROM todos WHERE id = $1");
    if (!c) {
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    if (todo_id(req, c) < 0) {
        call_free(c);
        return;
    }
    c->query.nparams = 1;
    call_run(req, c, 0, got_row);
}

static void delete_todo(evicorn_request *req, void *data)
{
    (void)data;
    struct call *c = call_new("DELETE FROM todos WHERE id = $1 RETURNING id");
    if (!c) {
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    if (todo_id(req, c) < 0) {
        call_free(c);
        return;
    }
    c->query.nparams = 1;
    call_run(req, c, EVICORN_PG_ATOMIC, got_deleted);
}

/* The body as an object, or NULL after answering 422 (or 400). */
static json_t *body_object(evicorn_request *req, evicorn_errors *errs)
{
    json_t *body = evicorn_json_body(req, errs);
    if (evicorn_json_expect_object(body, errs) < 0) {
        json_decref(body);
        evicorn_respond_validation(req, errs);
        return NULL;
    }
    return body;
}

static const char *text_value(const json_t *v)
{
    return json_is_string(v) ? json_string_value(v) : NULL; /* null -> SQL NULL */
}

static void got_create_body(evicorn_request *req, void *ud, const char *data, size_t len, int more,
                            int status)
{
    (void)ud, (void)data, (void)len, (void)more;
    if (status != 0)
        return; /* the client left, or the server answered 413 */
    evicorn_errors errs = EVICORN_ERRORS_INIT;
    json_t *body = body_object(req, &errs);
    if (!body)
        return;
    json_t *title = json_object_get(body, "title");
    json_t *description = json_object_get(body, "description");
    json_t *completed = json_object_get(body, "completed");
    if (!title)
        evicorn_errors_add(&errs, EVICORN_LOC_BODY, "title", EVICORN_MSG_MISSING,
                           EVICORN_TYPE_MISSING);
    else
        check_text(title, "title", 0, 1, TITLE_MAX, &errs);
    if (description)
        check_text(description, "description", 1, 0, 0, &errs);
    if (completed)
        check_completed(completed, &errs);
    if (evicorn_errors_any(&errs)) {
        json_decref(body);
        evicorn_respond_validation(req, &errs);
        return;
    }
    struct call *c = call_new("INSERT INTO todos (title, description, completed) "
                              "VALUES ($1, $2, $3) RETURNING " COLUMNS);
    if (!c) {
        json_decref(body);
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    c->body = body;
    c->values[0] = json_string_value(title);
    c->values[1] = description ? text_value(description) : NULL;
    c->values[2] = completed && json_is_true(completed) ? "true" : "false";
    c->query.nparams = 3;
    call_run(req, c, EVICORN_PG_ATOMIC, got_created);
}

static void create_todo(evicorn_request *req, void *data)
{
    (void)data;
    if (evicorn_read_body(req, got_create_body, NULL) < 0)
        evicorn_respond_error(req, 500, NULL);
}

static void got_patch_body(evicorn_request *req, void *ud, const char *data, size_t len, int more,
                           int status)
{
    struct call *c = ud;
    (void)data, (void)len, (void)more;
    if (status != 0) {
        call_free(c);
        return;
    }
    evicorn_errors errs = EVICORN_ERRORS_INIT;
    json_t *body = body_object(req, &errs);
    if (!body) {
        call_free(c);
        return;
    }
    c->body = body;
    json_t *title = json_object_get(body, "title");
    json_t *description = json_object_get(body, "description");
    json_t *completed = json_object_get(body, "completed");
    if (title)
        check_text(title, "title", 0, 1, TITLE_MAX, &errs);
    if (description)
        check_text(description, "description", 1, 0, 0, &errs);
    if (completed)
        check_completed(completed, &errs);
    if (evicorn_errors_any(&errs)) {
        call_free(c);
        evicorn_respond_validation(req, &errs);
        return;
    }
    /* $2, $4, $6 say whether the field was given; absent ones keep their
     * value. */
    c->values[1] = title ? "true" : "false";
    c->values[2] = title ? json_string_value(title) : NULL;
    c->values[3] = description ? "true" : "false";
    c->values[4] = description ? text_value(description) : NULL;
    c->values[5] = completed ? "true" : "false";
    c->values[6] = completed && json_is_true(completed) ? "true" : "false";
    c->query.nparams = 7;
    call_run(req, c, EVICORN_PG_ATOMIC, got_row);
}

static void patch_todo(evicorn_request *req, void *data)
{
    (void)data;
    struct call *c = call_new("UPDATE todos SET"
                              " title = CASE WHEN $2::boolean THEN $3::text ELSE title END,"
                              " description = CASE WHEN $4::boolean THEN $5::text"
                              " ELSE description END,"
                              " completed = CASE WHEN $6::boolean THEN $7::boolean"
                              " ELSE completed END"
                              " WHERE id = $1 RETURNING " COLUMNS);
    if (!c) {
        evicorn_respond_error(req, 500, NULL);
        return;
    }
    if (todo_id(req, c) < 0) {
        call_free(c);
        return;
    }
    if (evicorn_read_body(req, got_patch_body, c) < 0) {
        call_free(c);
        evicorn_respond_error(req, 500, NULL);
    }
}

/* ---- lifespan: one pool per worker ---- */

static int plugin_startup(void **state, char *err, size_t errlen)
{
    evicorn_pg_options opts = {.size = sizeof opts};
    evicorn_pg_pool *pool;
    int rc = evicorn_pg_pool_new(&opts, &pool, err, errlen);
    if (rc == EVICORN_ENOENT) /* no database: say what else to do */
        snprintf(err + strlen(err), errlen - strlen(err), ", and %s with scripts/db-load",
                 "create the table");
    if (rc != 0)
        return -1;
    *state = pool;
    return 0;
}

static void plugin_shutdown(void *state)
{
    evicorn_pg_pool_free(state);
}

static const evicorn_route routes[] = {
    EVICORN_GET("/todos", list_todos),
    EVICORN_POST("/todos", create_todo),
    EVICORN_GET("/todos/{id:int}", get_todo),
    EVICORN_PATCH("/todos/{id:int}", patch_todo),
    EVICORN_DELETE("/todos/{id:int}", delete_todo),
};

EVICORN_PLUGIN("todo", "1.0.0", routes, plugin_startup, plugin_shutdown)
