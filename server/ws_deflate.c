/* ws_deflate: RFC 7692's negotiation; see ws_deflate.h. */
#include "ws_deflate.h"

#include <stdio.h>
#include <string.h>

#include "http.h"
#include "ws_frame.h"

/* A cursor over a header value. */
struct scan {
    const char *p, *end;
};

static void skip_ows(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t'))
        s->p++;
}

/* A token into out (NUL-terminated, truncated to cap - 1): its length, or
 * 0 when there is none. */
static size_t token(struct scan *s, char *out, size_t cap)
{
    skip_ows(s);
    size_t n = 0;
    while (s->p < s->end && http_is_tchar((unsigned char)*s->p)) {
        if (n + 1 < cap)
            out[n] = *s->p;
        n++;
        s->p++;
    }
    out[n < cap ? n : cap - 1] = '\0';
    return n;
}

/* A parameter's value: a token or a quoted string (§7.1 allows both). */
static bool value(struct scan *s, char *out, size_t cap)
{
    skip_ows(s);
    if (s->p < s->end && *s->p == '"') {
        size_t n = 0;
        for (s->p++; s->p < s->end && *s->p != '"'; s->p++) {
            if (*s->p == '\\' && s->p + 1 < s->end)
                s->p++;
            if (n + 1 < cap)
                out[n++] = *s->p;
        }
        if (s->p == s->end)
            return false;
        s->p++;
        out[n] = '\0';
        return n > 0;
    }
    return token(s, out, cap) > 0;
}

/* §7.1.2: a decimal integer 8..15 without leading zeros. */
static int window_bits(const char *v)
{
    if (strlen(v) == 1 && v[0] >= '8' && v[0] <= '9')
        return v[0] - '0';
    if (strlen(v) == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + v[1] - '0';
    return 0;
}

struct offer {
    bool deflate, valid;
    bool server_nct, client_nct, has_server_bits, has_client_bits;
    int server_bits, client_bits;
};

static void offer_param(struct offer *o, const char *name, bool has_value, const char *v)
{
    if (strcmp(name, "server_no_context_takeover") == 0 && !o->server_nct && !has_value) {
        o->server_nct = true;
    } else if (strcmp(name, "client_no_context_takeover") == 0 && !o->client_nct && !has_value) {
        o->client_nct = true;
    } else if (strcmp(name, "server_max_window_bits") == 0 && !o->has_server_bits && has_value &&
               window_bits(v)) {
        o->has_server_bits = true;
        o->server_bits = window_bits(v);
    } else if (strcmp(name, "client_max_window_bits") == 0 && !o->has_client_bits &&
               (!has_value || window_bits(v))) {
        o->has_client_bits = true;
        o->client_bits = has_value ? window_bits(v) : 0;
    } else {
        o->valid = false; /* unknown, repeated, or a bad value: decline this offer */
    }
}

/* One extension of the list; false on a syntax error. */
static bool next_offer(struct scan *s, struct offer *o)
{
    char name[64], pname[64], v[16];
    memset(o, 0, sizeof *o);
    if (!token(s, name, sizeof name))
        return false;
    o->deflate = strcmp(name, "permessage-deflate") == 0;
    o->valid = true;
    for (;;) {
        skip_ows(s);
        if (s->p == s->end || *s->p == ',')
            break;
        if (*s->p != ';' || (s->p++, !token(s, pname, sizeof pname)))
            return false;
        skip_ows(s);
        bool has_value = s->p < s->end && *s->p == '=';
        if (has_value && (s->p++, !value(s, v, sizeof v)))
            return false;
        if (o->deflate)
            offer_param(o, pname, has_value, has_value ? v : "");
    }
    if (s->p < s->end)
        s->p++; /* the comma */
    return true;
}

int ws_deflate_negotiate(const char *offers, size_t len, bool keep_context,
                         struct ws_deflate_params *params, char *answer, size_t cap)
{
    struct scan s = {offers, offers + len};
    struct offer o;
    for (;;) {
        skip_ows(&s);
        if (s.p == s.end)
            return 0;
        if (*s.p == ',') { /* empty list elements are allowed (RFC 9110 §5.6.1) */
            s.p++;
            continue;
        }
        if (!next_offer(&s, &o))
            return 0;
        if (o.deflate && o.valid)
            break;
    }
    params->server_no_context_takeover = o.server_nct || !keep_context;
    params->client_no_context_takeover = o.client_nct || !keep_context;
    params->server_max_window_bits = o.has_server_bits ? o.server_bits : 15;
    params->client_max_window_bits = o.has_client_bits ? o.client_bits : 0;
    int n = snprintf(answer, cap, "permessage-deflate%s%s",
                     params->server_no_context_takeover ? "; server_no_context_takeover" : "",
                     params->client_no_context_takeover ? "; client_no_context_takeover" : "");
    if (n >= 0 && (size_t)n < cap && o.has_server_bits)
        n += snprintf(answer + n, cap - (size_t)n, "; server_max_window_bits=%d", o.server_bits);
    return n >= 0 && (size_t)n < cap ? 1 : 0;
}

/* ---- messages ---- */

static const uint8_t sync_tail[4] = {0x00, 0x00, 0xFF, 0xFF};

/* Output is made in steps of this size, so a message's expansion is seen
 * a step at a time. */
#define STEP 16384

int ws_inflate_message(struct ws_zstream *in, const struct ws_deflate_params *params,
                       const uint8_t *p, size_t n, struct buf *out, uint64_t max,
                       uint16_t *close_code)
{
    if (!in->live) {
        memset(&in->z, 0, sizeof in->z);
        /* Raw DEFLATE, and the largest window: any the client used fits. */
        if (inflateInit2(&in->z, -15) != Z_OK) {
            *close_code = WS_CLOSE_INTERNAL_ERROR;
            return -1;
        }
        in->live = true;
    }
    int rc = 0;
    bool ended = false; /* the message's stream ended (BFINAL): no tail */
    for (int part = 0; part < 2 && rc == 0 && !ended; part++) {
        in->z.next_in = (Bytef *)(part == 0 ? p : sync_tail);
        in->z.avail_in = (uInt)(part == 0 ? n : sizeof sync_tail);
        while (rc == 0 && in->z.avail_in > 0) {
            char *room = buf_reserve(out, STEP);
            if (!room) {
                *close_code = WS_CLOSE_INTERNAL_ERROR;
                rc = -1;
                break;
            }
            in->z.next_out = (Bytef *)room;
            in->z.avail_out = STEP;
            int zr = inflate(&in->z, Z_SYNC_FLUSH);
            out->len += STEP - in->z.avail_out;
            if (zr != Z_OK && zr != Z_BUF_ERROR && zr != Z_STREAM_END) {
                *close_code = WS_CLOSE_INVALID_DATA;
                rc = -1;
            } else if (buf_size(out) > max) {
                *close_code = WS_CLOSE_TOO_BIG;
                rc = -1;
            } else if (zr == Z_STREAM_END) {
                /* A block with BFINAL set (§7.2.3.3): the stream ends here,
                 * the next message starts a new one. */
                inflateReset(&in->z);
                in->z.avail_in = 0;
                ended = true;
            } else if (zr == Z_BUF_ERROR && in->z.avail_out == STEP) {
                break; /* no progress possible */
            }
        }
    }
    if (rc < 0 || params->client_no_context_takeover)
        ws_inflate_end(in);
    return rc;
}

bool ws_deflate_can_compress(const struct ws_deflate_params *params)
{
    return params->server_max_window_bits >= 9;
}

int ws_deflate_message(struct ws_zstream *def, const struct ws_deflate_params *params,
                       const uint8_t *p, size_t n, struct buf *out)
{
    /* §7.2.3.6: the empty message is one byte, an empty block's start
     * (zlib emits nothing for a flush with nothing new). */
    if (n == 0)
        return buf_append(out, "", 1);
    if (!def->live) {
        memset(&def->z, 0, sizeof def->z);
        if (deflateInit2(&def->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                         -params->server_max_window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return -1;
        def->live = true;
    }
    size_t start = buf_size(out);
    def->z.next_in = (Bytef *)p;
    def->z.avail_in = (uInt)n;
    int rc = 0;
    do {
        size_t step = deflateBound(&def->z, def->z.avail_in) + 16;
        char *room = buf_reserve(out, step);
        if (!room) {
            rc = -1;
            break;
        }
        def->z.next_out = (Bytef *)room;
        def->z.avail_out = (uInt)step;
        if (deflate(&def->z, Z_SYNC_FLUSH) == Z_STREAM_ERROR)
            rc = -1;
        out->len += step - def->z.avail_out;
    } while (rc == 0 && (def->z.avail_in > 0 || def->z.avail_out == 0));
    /* The sync flush ends in 00 00 ff ff: the receiver adds it back. */
    if (rc == 0 && buf_size(out) - start >= 4 &&
        memcmp(buf_start(out) + buf_size(out) - 4, sync_tail, 4) == 0)
        out->len -= 4;
    else if (rc == 0)
        rc = -1;
    if (rc < 0 || params->server_no_context_takeover)
        ws_deflate_end(def);
    return rc;
}

void ws_inflate_end(struct ws_zstream *in)
{
    if (in->live)
        inflateEnd(&in->z);
    in->live = false;
}

void ws_deflate_end(struct ws_zstream *def)
{
    if (def->live)
        deflateEnd(&def->z);
    def->live = false;
}
