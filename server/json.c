/* json: JSON string literals; see json.h. */
#include "json.h"

#include <string.h>

int json_append_string(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    if (buf_append(b, "\"", 1) < 0)
        return -1;
    for (;;) {
        /* Copy the run of bytes that need no escape in one append. */
        size_t run = 0;
        while (p[run] && p[run] >= 0x20 && p[run] != '"' && p[run] != '\\')
            run++;
        if (run && buf_append(b, p, run) < 0)
            return -1;
        p += run;
        if (!*p)
            break;
        char esc[6] = {'\\', (char)*p};
        size_t n = 2;
        if (*p < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            n = 6;
        }
        if (buf_append(b, esc, n) < 0)
            return -1;
        p++;
    }
    return buf_append(b, "\"", 1);
}
