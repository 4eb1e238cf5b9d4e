/* json: the server's one JSON string escaper, as the status page and error
 * details use it (json_append_string) and as the access log's JSON lines
 * use it for a client's bytes (json_escape_byte with ascii_only). */
#include "buf.h"
#include "check.h"
#include "json.h"

static void check_string(const char *in, const char *want)
{
    struct buf b = {0};
    CHECK_EQ_INT(json_append_string(&b, in), 0);
    CHECK_EQ_INT(buf_append(&b, "", 1), 0);
    CHECK_EQ_STR(buf_start(&b), want);
    buf_free(&b);
}

TEST(strings_escape_quotes_backslashes_and_control_bytes)
{
    check_string("plain", "\"plain\"");
    check_string("a\"b\\c", "\"a\\\"b\\\\c\"");
    check_string("tab\there\nnl\x01\x1f", "\"tab\\u0009here\\u000anl\\u0001\\u001f\"");
    check_string(NULL, "\"\"");
    /* UTF-8 the server wrote itself (plugin names, paths) stays as it is. */
    check_string("caf\xc3\xa9", "\"caf\xc3\xa9\"");
}

static const char *escaped(unsigned char c, bool ascii_only)
{
    static char out[7];
    size_t n = json_escape_byte(c, ascii_only, out);
    out[n] = '\0';
    return out;
}

TEST(client_bytes_become_ascii_json)
{
    CHECK_EQ_STR(escaped('a', true), "a");
    CHECK_EQ_STR(escaped('"', true), "\\\"");
    CHECK_EQ_STR(escaped('\\', true), "\\\\");
    CHECK_EQ_STR(escaped('\n', true), "\\u000a");
    CHECK_EQ_STR(escaped(0x7f, true), "\\u007f");
    CHECK_EQ_STR(escaped(0xe9, true), "\\u00e9");
    CHECK_EQ_STR(escaped(0xe9, false), "\xe9");
    CHECK_EQ_STR(escaped(0x7f, false), "\x7f");
}

CHECK_MAIN()
