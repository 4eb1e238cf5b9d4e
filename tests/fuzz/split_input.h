/* split_input: the input layout the fuzz targets share.
 *
 *   byte 0     options, the target's own bits
 *   byte 1     n = byte & 15: how many split lengths follow
 *   n bytes    the lengths of successive pieces, (byte + 1) each, cycled
 *   the rest   the payload
 *
 * so that libFuzzer chooses both the bytes and where they are cut. */
#ifndef EVICORN_FUZZ_SPLIT_INPUT_H
#define EVICORN_FUZZ_SPLIT_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct split_input {
    uint8_t opts;
    const uint8_t *splits;
    size_t nsplits;
    const uint8_t *payload;
    size_t len;
    size_t next; /* index of the next split length */
};

/* False when the input is too short to hold its own layout. */
static inline bool split_input_parse(struct split_input *in, const uint8_t *data, size_t size)
{
    if (size < 2 || size < 2 + (size_t)(data[1] & 15))
        return false;
    in->opts = data[0];
    in->nsplits = data[1] & 15;
    in->splits = data + 2;
    in->payload = data + 2 + in->nsplits;
    in->len = size - 2 - in->nsplits;
    in->next = 0;
    return true;
}

/* The length of the next piece, at most left; everything left when the
 * input names no splits. */
static inline size_t split_input_piece(struct split_input *in, size_t left)
{
    size_t n = in->nsplits ? (size_t)in->splits[in->next++ % in->nsplits] + 1 : left;
    return n < left ? n : left;
}

#endif
