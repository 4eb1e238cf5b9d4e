/* files: responding with a file by its path, and checking a file name
 * taken from a client before it is joined to a folder (ABI 1.5). */
#include <string.h>

#include "internal.h"

int evicorn_respond_file_path(evicorn_request *req, const char *path, unsigned flags)
{
    evicorn_file_response f = {
        .size = sizeof f,
        .path = path,
        .fd = -1,
        .length = -1,
        .flags = flags,
    };
    return evicorn_respond_file(req, &f);
}

/* One segment of a relative path: not empty, not "." or "..", and only
 * characters that mean nothing else to the file system or a terminal. */
static int segment_ok(const char *s, size_t len)
{
    if (len == 0 || (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '\\')
            return 0;
    }
    return 1;
}

int evicorn_file_name_ok(const char *name, size_t len)
{
    if (!name || len == 0)
        return 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || name[i] == '/') {
            if (!segment_ok(name + start, i - start))
                return 0;
            start = i + 1;
        }
    }
    return 1;
}
