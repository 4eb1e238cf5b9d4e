/* http_range: the Range header for bytes (RFC 9110 14.1.2 and 14.2).
 *
 * Parses "bytes=a-b, c-, -n" against a representation of known length
 * into ranges to send, in the order asked. What a server may refuse is
 * refused here, in one place:
 *  - an invalid specifier (another unit, a malformed element, last < first)
 *    is ignored: the answer is the whole representation (14.2 allows
 *    ignoring; a 200 is what clients handle best);
 *  - more than HTTP_RANGES_MAX ranges, or ranges whose lengths add up to
 *    more than the representation (overlaps asked to make the response
 *    larger than the file, a denial-of-service pattern 14.2 names), are
 *    ignored the same way;
 *  - an empty representation has no byte to address: Range is ignored;
 *  - numbers too large for 64 bits saturate, which leaves a first-pos
 *    beyond the end (unsatisfiable) and a last-pos or suffix clipped to
 *    the end.
 * Pure functions; values are not NUL-terminated. */
#ifndef EVICORN_HTTP_RANGE_H
#define EVICORN_HTTP_RANGE_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_RANGES_MAX 16

/* Bytes first..last, inclusive, within the representation. */
struct http_range {
    uint64_t first, last;
};

enum http_range_result {
    HTTP_RANGE_IGNORE,        /* answer 200 with the whole representation */
    HTTP_RANGE_OK,            /* answer 206 with out[0..*n) */
    HTTP_RANGE_UNSATISFIABLE, /* answer 416 with Content-Range: bytes * / size */
};

/* Parses a Range value for a representation of size bytes; out holds
 * HTTP_RANGES_MAX ranges. */
enum http_range_result http_range_parse(const char *value, size_t len, uint64_t size,
                                        struct http_range *out, size_t *n);

#endif
