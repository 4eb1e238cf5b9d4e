/* proxy_trust: which proxies speak for the client; see proxy_trust.h. */
#include "proxy_trust.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum entry_kind { ENTRY_IP, ENTRY_NET, ENTRY_LITERAL };

struct entry {
    enum entry_kind kind;
    int family;           /* AF_INET or AF_INET6 for IPs and networks */
    unsigned char ip[16]; /* network address for ENTRY_NET */
    unsigned prefix;      /* bits, for ENTRY_NET */
    char *literal;
};

struct proxy_trust {
    bool everyone;
    struct entry *entries;
    size_t n;
};

/* Parses an address into family and 4 or 16 bytes. */
static bool parse_ip(const char *s, size_t len, int *family, unsigned char out[16])
{
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, out) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, buf, out) == 1) {
        *family = AF_INET6;
        return true;
    }
    return false;
}

static bool parse_net(const char *s, size_t len, struct entry *e)
{
    const char *slash = memchr(s, '/', len);
    if (!slash || slash + 1 == s + len)
        return false;
    if (!parse_ip(s, (size_t)(slash - s), &e->family, e->ip))
        return false;
    unsigned prefix = 0, max = e->family == AF_INET ? 32 : 128;
    for (const char *p = slash + 1; p < s + len; p++) {
        if (*p < '0' || *p > '9' || (prefix = prefix * 10 + (unsigned)(*p - '0')) > max)
            return false;
    }
    /* As Python's ip_network (strict): no host bits may be set. */
    size_t bytes = max / 8;
    for (size_t i = 0; i < bytes; i++) {
        unsigned keep = prefix >= (i + 1) * 8 ? 8 : prefix > i * 8 ? prefix - (unsigned)i * 8 : 0;
        unsigned char mask = (unsigned char)(keep ? 0xff << (8 - keep) : 0);
        if (e->ip[i] & ~mask)
            return false;
    }
    e->prefix = prefix;
    return true;
}

struct proxy_trust *proxy_trust_parse(const char *list)
{
    struct proxy_trust *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    size_t cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    t->entries = calloc(cap, sizeof *t->entries);
    if (!t->entries) {
        free(t);
        return NULL;
    }
    for (const char *p = list;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *s = p;
        while (len && (*s == ' ' || *s == '\t'))
            s++, len--;
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len == 1 && *s == '*')
            t->everyone = true;
        struct entry *en = &t->entries[t->n];
        if (memchr(s, '/', len) && parse_net(s, len, en)) {
            en->kind = ENTRY_NET;
            t->n++;
        } else if (parse_ip(s, len, &en->family, en->ip)) {
            en->kind = ENTRY_IP;
            t->n++;
        } else if (len > 0) {
            en->kind = ENTRY_LITERAL;
            if (!(en->literal = strndup(s, len))) {
                proxy_trust_free(t);
                return NULL;
            }
            t->n++;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return t;
}

void proxy_trust_free(struct proxy_trust *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->entries[i].literal);
    free(t->entries);
    free(t);
}

bool proxy_trust_everyone(const struct proxy_trust *t)
{
    return t->everyone;
}

static bool in_net(const struct entry *e, int family, const unsigned char ip[16])
{
    if (family != e->family)
        return false;
    unsigned full = e->prefix / 8, rest = e->prefix % 8;
    if (memcmp(ip, e->ip, full) != 0)
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (ip[full] & mask) == (e->ip[full] & mask);
}

bool proxy_trust_has(const struct proxy_trust *t, const char *host, size_t len)
{
    if (t->everyone)
        return true;
    if (len == 0)
        return false;
    int family;
    unsigned char ip[16];
    if (parse_ip(host, len, &family, ip)) {
        for (size_t i = 0; i < t->n; i++) {
            const struct entry *e = &t->entries[i];
            if ((e->kind == ENTRY_IP && e->family == family &&
                 memcmp(e->ip, ip, family == AF_INET ? 4 : 16) == 0) ||
                (e->kind == ENTRY_NET && in_net(e, family, ip)))
                return true;
        }
        return false;
    }
    for (size_t i = 0; i < t->n; i++) {
        const struct entry *e = &t->entries[i];
        if (e->kind == ENTRY_LITERAL && strlen(e->literal) == len &&
            memcmp(e->literal, host, len) == 0)
            return true;
    }
    return false;
}

/* "host", "v4:port" or "[v6]:port", as uvicorn reads an entry; anything
 * else is all host and no port. */
static void parse_host_port(const char *s, size_t len, struct forwarded_client *out)
{
    out->host = s;
    out->host_len = len;
    out->port = 0;
    const char *colon = NULL;
    size_t colons = 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ':') {
            colons++;
            colon = s + i;
        }
    const char *port = NULL;
    if (len && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return;
        out->host = s + 1;
        out->host_len = (size_t)(close - s - 1);
        if (close + 1 == s + len)
            return;
        if (close[1] != ':') {
            out->host = s;
            out->host_len = len;
            return;
        }
        port = close + 2;
    } else if (colons == 1) {
        port = colon + 1;
        out->host_len = (size_t)(colon - s);
    } else {
        return;
    }
    long v = 0;
    const char *end = s + len;
    bool ok = port < end;
    for (const char *p = port; p < end && ok; p++)
        ok = *p >= '0' && *p <= '9' && (v = v * 10 + (*p - '0')) <= 65535;
    if (ok)
        out->port = (int)v;
    else if (s[0] != '[') /* a bad port: the whole entry is the host */
        out->host_len = len;
}

/* The entries of the values, split at ',' and trimmed, in order. */
#define MAX_HOPS 64

bool proxy_trust_client(const struct proxy_trust *t, const char *const *values, const size_t *lens,
                        size_t nvalues, struct forwarded_client *out)
{
    const char *hop[MAX_HOPS];
    size_t hop_len[MAX_HOPS], n = 0;
    for (size_t v = 0; v < nvalues; v++) {
        const char *p = values[v], *end = values[v] + lens[v];
        for (;;) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *e = comma ? comma : end, *s = p;
            while (s < e && (*s == ' ' || *s == '\t'))
                s++;
            while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            /* Past MAX_HOPS, the rightmost ones are kept: they are the
             * ones nearest to us, which the walk reads first. */
            if (n == MAX_HOPS) {
                memmove(hop, hop + 1, (MAX_HOPS - 1) * sizeof *hop);
                memmove(hop_len, hop_len + 1, (MAX_HOPS - 1) * sizeof *hop_len);
                n--;
            }
            hop[n] = s;
            hop_len[n++] = (size_t)(e - s);
            if (!comma)
                break;
            p = comma + 1;
        }
    }
    if (n == 0)
        return false;
    if (!t->everyone)
        for (size_t i = n; i-- > 0;) {
            parse_host_port(hop[i], hop_len[i], out);
            if (!proxy_trust_has(t, out->host, out->host_len))
                return out->host_len > 0;
        }
    parse_host_port(hop[0], hop_len[0], out);
    return out->host_len > 0;
}
