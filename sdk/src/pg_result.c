/* pg_result: what a query gives back. Typed getters over libpq's text
 * results, rows as JSON typed by the column's type OID, and the mapping
 * of a failure (SQLSTATE, lost connection) to a reply status, an HTTP
 * status and one line naming the server.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_internal.h"

/* Type OIDs (pg_type.dat); stable across server versions. */
#define OID_BOOL    16
#define OID_INT8    20
#define OID_INT2    21
#define OID_INT4    23
#define OID_OID     26
#define OID_JSON    114
#define OID_FLOAT4  700
#define OID_FLOAT8  701
#define OID_NUMERIC 1700
#define OID_JSONB   3802

void pg_oneline(char *dst, size_t size, const char *src)
{
    if (!size)
        return;
    size_t n = 0;
    bool space = false;
    for (const char *s = src ? src : ""; *s && n + 1 < size; s++) {
        char ch = *s;
        if (ch == '\n' || ch == '\r' || ch == '\t' || ch == ' ') {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < size)
            dst[n++] = ' ';
        space = false;
        dst[n++] = ch;
    }
    dst[n] = '\0';
}

static bool sqlstate_is(const char *state, const char *prefix)
{
    return state && strncmp(state, prefix, strlen(prefix)) == 0;
}

void pg_op_set_error(struct pg_op *op, size_t idx, const PGresult *res, const char *label)
{
    ExecStatusType st = PQresultStatus(res);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    char line[300];
    pg_oneline(line, sizeof line, primary ? primary : PQresultErrorMessage(res));
    if (!line[0])
        snprintf(line, sizeof line, "%s", PQresStatus(st));
    snprintf(op->sqlstate, sizeof op->sqlstate, "%s", state ? state : "");

    if (sqlstate_is(state, "57014") && strstr(line, "statement timeout")) {
        op->status = EVICORN_ETIMEDOUT;
        op->http_status = 504;
        snprintf(op->message, sizeof op->message,
                 "statement timed out after %g s (statement_timeout) on %s",
                 (double)op->stmts[idx].timeout_ms / 1000.0, label);
    } else if (sqlstate_is(state, "08") || sqlstate_is(state, "57") || sqlstate_is(state, "53")) {
        /* Connection trouble, the server shutting down, cancelled by an
         * administrator, out of resources: not the statement's fault. */
        op->status = EVICORN_EIO;
        op->http_status = 503;
        snprintf(op->message, sizeof op->message, "query failed on %s: %s (SQLSTATE %s)", label,
                 line, state);
    } else if (st == PGRES_FATAL_ERROR && state) {
        op->status = EVICORN_EINVAL;
        op->http_status = 500;
        snprintf(op->message, sizeof op->message, "query failed on %s: %s (SQLSTATE %s)", label,
                 line, state);
    } else {
        /* No SQLSTATE: libpq's own error, or an unexpected result kind. */
        op->status = PQresultStatus(res) == PGRES_FATAL_ERROR ? EVICORN_EIO : EVICORN_EINVAL;
        op->http_status = op->status == EVICORN_EIO ? 503 : 500;
        snprintf(op->message, sizeof op->message, "query failed on %s: %s", label, line);
    }
}

/* ---- getters ---- */

int evicorn_pg_column(const PGresult *res, const char *name)
{
    if (!res || !name)
        return -1;
    int n = PQnfields(res);
    for (int i = 0; i < n; i++)
        if (strcmp(PQfname(res, i), name) == 0)
            return i;
    return PQfnumber(res, name); /* libpq's rules: case-folding, quotes */
}

/* The text at (row, col): 0, or EVICORN_ENOENT for NULL or out of range. */
static int value_at(const PGresult *res, int row, int col, const char **out, int *len)
{
    if (!res || row < 0 || col < 0 || row >= PQntuples(res) || col >= PQnfields(res) ||
        PQgetisnull(res, row, col))
        return EVICORN_ENOENT;
    *out = PQgetvalue(res, row, col);
    *len = PQgetlength(res, row, col);
    return 0;
}

int evicorn_pg_get_int(const PGresult *res, int row, int col, int64_t *out)
{
    const char *s;
    int len;
    int rc = value_at(res, row, col, &s, &len);
    if (rc)
        return rc;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (len == 0 || end != s + len || errno == ERANGE)
        return EVICORN_EINVAL;
    if (out)
        *out = (int64_t)v;
    return 0;
}

int evicorn_pg_get_double(const PGresult *res, int row, int col, double *out)
{
    const char *s;
    int len;
    int rc = value_at(res, row, col, &s, &len);
    if (rc)
        return rc;
    char *end;
    double v = strtod(s, &end);
    if (len == 0 || end != s + len)
        return EVICORN_EINVAL;
    if (out)
        *out = v;
    return 0;
}

int evicorn_pg_get_bool(const PGresult *res, int row, int col, int *out)
{
    const char *s;
    int len;
    int rc = value_at(res, row, col, &s, &len);
    if (rc)
        return rc;
    int v;
    if (strcmp(s, "t") == 0 || strcmp(s, "true") == 0)
        v = 1;
    else if (strcmp(s, "f") == 0 || strcmp(s, "false") == 0)
        v = 0;
    else
        return EVICORN_EINVAL;
    if (out)
        *out = v;
    return 0;
}

int evicorn_pg_get_text(const PGresult *res, int row, int col, evicorn_str *out)
{
    const char *s;
    int len;
    int rc = value_at(res, row, col, &s, &len);
    if (rc)
        return rc;
    if (out)
        *out = (evicorn_str){s, (size_t)len};
    return 0;
}

/* ---- JSON ---- */

static json_t *json_text(const char *s, int len)
{
    json_t *v = json_stringn(s, (size_t)len);
    /* Not UTF-8 (a client_encoding other than UTF8): the SDK's JSON
     * writer replaces the bad bytes. */
    return v ? v : json_stringn_nocheck(s, (size_t)len);
}

static json_t *value_json(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return json_null();
    const char *s = PQgetvalue(res, row, col);
    int len = PQgetlength(res, row, col);
    switch (PQftype(res, col)) {
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID: {
        int64_t v;
        if (evicorn_pg_get_int(res, row, col, &v) == 0)
            return json_integer((json_int_t)v);
        break;
    }
    case OID_FLOAT4:
    case OID_FLOAT8:
    case OID_NUMERIC: {
        double v;
        if (evicorn_pg_get_double(res, row, col, &v) == 0 && isfinite(v))
            return json_real(v);
        break; /* NaN, Infinity: JSON has no such number */
    }
    case OID_BOOL: {
        int v;
        if (evicorn_pg_get_bool(res, row, col, &v) == 0)
            return json_boolean(v);
        break;
    }
    case OID_JSON:
    case OID_JSONB: {
        json_t *v = json_loadb(s, (size_t)len, JSON_DECODE_ANY, NULL);
        if (v)
            return v;
        break;
    }
    default:
        break;
    }
    return json_text(s, len);
}

json_t *evicorn_pg_row_json(const PGresult *res, int row)
{
    if (!res || row < 0 || row >= PQntuples(res))
        return NULL;
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    int n = PQnfields(res);
    for (int col = 0; col < n; col++) {
        json_t *v = value_json(res, row, col);
        if (!v || json_object_set_new(obj, PQfname(res, col), v) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

json_t *evicorn_pg_rows_json(const PGresult *res)
{
    json_t *arr = json_array();
    if (!arr || !res)
        return arr;
    int n = PQntuples(res);
    for (int row = 0; row < n; row++) {
        if (json_array_append_new(arr, evicorn_pg_row_json(res, row)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

int evicorn_pg_respond_error(evicorn_request *req, const evicorn_pg_reply *reply)
{
    if (!reply || reply->status == 0)
        return EVICORN_EINVAL;
    if (reply->status == EVICORN_ECANCELED)
        return 0; /* nobody to answer */
    int status = reply->http_status ? reply->http_status : 500;
    return evicorn_respond_error(req, status, reply->message);
}
