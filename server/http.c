/* http: version-independent rules of HTTP; see http.h. */
#include "http.h"

#include <string.h>

#include "../abi/evicorn/status.h"
#include "json.h"

#define T1(c) [(unsigned char)(c)] = 1
const unsigned char http_tchar_table[256] = {
    T1('!'), T1('#'), T1('$'), T1('%'), T1('&'), T1('\''), T1('*'), T1('+'), T1('-'), T1('.'),
    T1('^'), T1('_'), T1('`'), T1('|'), T1('~'), T1('0'),  T1('1'), T1('2'), T1('3'), T1('4'),
    T1('5'), T1('6'), T1('7'), T1('8'), T1('9'), T1('A'),  T1('B'), T1('C'), T1('D'), T1('E'),
    T1('F'), T1('G'), T1('H'), T1('I'), T1('J'), T1('K'),  T1('L'), T1('M'), T1('N'), T1('O'),
    T1('P'), T1('Q'), T1('R'), T1('S'), T1('T'), T1('U'),  T1('V'), T1('W'), T1('X'), T1('Y'),
    T1('Z'), T1('a'), T1('b'), T1('c'), T1('d'), T1('e'),  T1('f'), T1('g'), T1('h'), T1('i'),
    T1('j'), T1('k'), T1('l'), T1('m'), T1('n'), T1('o'),  T1('p'), T1('q'), T1('r'), T1('s'),
    T1('t'), T1('u'), T1('v'), T1('w'), T1('x'), T1('y'),  T1('z'),
};
#undef T1

bool http_is_token(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!http_is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

bool http_field_value_valid(const char *value, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

bool http_connection_has(const char *value, size_t len, const char *option)
{
    size_t olen = strlen(option);
    size_t i = 0;
    while (i < len) {
        /* One list element: skip OWS and empty elements, take the token,
         * then expect OWS and a comma or the end. */
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        size_t start = i;
        while (i < len && value[i] != ',' && value[i] != ' ' && value[i] != '\t')
            i++;
        size_t n = i - start;
        if (n == olen && n > 0) {
            size_t k = 0;
            while (k < n && lower(value[start + k]) == lower(option[k]))
                k++;
            if (k == n) {
                size_t j = i;
                while (j < len && (value[j] == ' ' || value[j] == '\t'))
                    j++;
                if (j == len || value[j] == ',')
                    return true;
            }
        }
        while (i < len && value[i] != ',')
            i++;
    }
    return false;
}

int http_hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

const char *http_reason(int status)
{
    switch (status) {
#define REASON(code, text)                                                                         \
    case code:                                                                                     \
        return text;
        EVICORN_STATUS_REASONS(REASON)
#undef REASON
    }
    return "Unknown";
}

size_t http_date_format(time_t t, char *out)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        memcpy(out, "Thu, 01 Jan 1970 00:00:00 GMT", 30);
        return 29;
    }
    /* Not strftime: its names follow the locale, HTTP's do not. */
    int year = (tm.tm_year + 1900) % 10000;
    char *p = out;
    memcpy(p, days[tm.tm_wday % 7], 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    *p++ = (char)('0' + tm.tm_mday / 10);
    *p++ = (char)('0' + tm.tm_mday % 10);
    *p++ = ' ';
    memcpy(p, months[tm.tm_mon % 12], 3);
    p += 3;
    *p++ = ' ';
    *p++ = (char)('0' + year / 1000);
    *p++ = (char)('0' + year / 100 % 10);
    *p++ = (char)('0' + year / 10 % 10);
    *p++ = (char)('0' + year % 10);
    *p++ = ' ';
    *p++ = (char)('0' + tm.tm_hour / 10);
    *p++ = (char)('0' + tm.tm_hour % 10);
    *p++ = ':';
    *p++ = (char)('0' + tm.tm_min / 10);
    *p++ = (char)('0' + tm.tm_min % 10);
    *p++ = ':';
    *p++ = (char)('0' + tm.tm_sec / 10);
    *p++ = (char)('0' + tm.tm_sec % 10);
    memcpy(p, " GMT", 5);
    return 29;
}

const char *http_date(time_t now)
{
    static time_t cached_at = -1;
    static char cached[32];
    if (now != cached_at) {
        http_date_format(now, cached);
        cached_at = now;
    }
    return cached;
}

char *http_u64(char *p, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

int http_json_detail(struct buf *b, const char *detail)
{
    if (buf_append(b, "{\"detail\":", 10) < 0 || json_append_string(b, detail) < 0)
        return -1;
    return buf_append(b, "}", 1);
}
