/* Unit tests for server/buf.c and buf.h: the byte buffer under every
 * connection's input and output and every request's head and body. */
#include "buf.h"

#include "check.h"

#include <string.h>

/* Found by fuzz_request: a request without a body handed its handler
 * buf_start() of a buffer that never held a byte, which was NULL + 0 (and
 * then memcpy/memcmp from NULL): undefined behaviour, reported by UBSan. */
TEST(start_of_a_never_used_buffer_is_a_valid_pointer)
{
    struct buf b = {0};
    CHECK(buf_start(&b) != NULL);
    CHECK_EQ_INT(buf_size(&b), 0);
    char dst[1] = {'x'};
    memcpy(dst, buf_start(&b), buf_size(&b));
    CHECK_EQ_INT(dst[0], 'x');
}

TEST(start_after_free_is_a_valid_pointer)
{
    struct buf b = {0};
    CHECK_EQ_INT(buf_append_str(&b, "abc"), 0);
    buf_free(&b);
    CHECK(buf_start(&b) != NULL);
    CHECK_EQ_INT(buf_size(&b), 0);
}

TEST(reserving_nothing_in_a_never_used_buffer_is_not_out_of_memory)
{
    struct buf b = {0};
    CHECK(buf_reserve(&b, 0) != NULL);
    buf_free(&b);
}

TEST(consume_drops_bytes_from_the_front)
{
    struct buf b = {0};
    CHECK_EQ_INT(buf_append(&b, "hello world", 11), 0);
    buf_consume(&b, 6);
    CHECK_EQ_MEM(buf_start(&b), buf_size(&b), "world");
    CHECK_EQ_INT(buf_append(&b, "!", 1), 0);
    CHECK_EQ_MEM(buf_start(&b), buf_size(&b), "world!");
    buf_free(&b);
}

TEST(move_into_an_empty_buffer_takes_the_content)
{
    struct buf src = {0}, dst = {0};
    CHECK_EQ_INT(buf_append_str(&src, "abc"), 0);
    CHECK_EQ_INT(buf_move(&dst, &src), 0);
    CHECK_EQ_MEM(buf_start(&dst), buf_size(&dst), "abc");
    CHECK_EQ_INT(buf_size(&src), 0);
    buf_free(&src);
    buf_free(&dst);
}

TEST(move_of_an_empty_buffer_changes_nothing)
{
    struct buf src = {0}, dst = {0};
    CHECK_EQ_INT(buf_append_str(&dst, "x"), 0);
    CHECK_EQ_INT(buf_move(&dst, &src), 0);
    CHECK_EQ_MEM(buf_start(&dst), buf_size(&dst), "x");
    buf_free(&src);
    buf_free(&dst);
}

CHECK_MAIN()
