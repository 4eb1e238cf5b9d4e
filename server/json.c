/* json: JSON string literals; see json.h. */
#include "json.h"

#include <string.h>

size_t json_escape_byte(unsigned char c, bool ascii_only, char out[static 6])
{
    static const char hex[] = "0123456789abcdef";
    if (c == '"' || c == '\\') {
        out[0] = '\\';
        out[1] = (char)c;
        return 2;
    }
    if (c >= 0x20 && (c < 0x7f || !ascii_only)) {
        out[0] = (char)c;
        return 1;
    }
    memcpy(out, "\\u00", 4);
    out[4] = hex[c >> 4];
    out[5] = hex[c & 15];
    return 6;
}

int json_append_string(struct buf *b, const char *s)
{
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
        char esc[6];
        if (buf_append(b, esc, json_escape_byte(*p, false, esc)) < 0)
            return -1;
        p++;
    }
    return buf_append(b, "\"", 1);
}
