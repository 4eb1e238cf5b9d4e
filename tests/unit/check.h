/* A minimal test harness for evicorn's C unit tests.
 *
 * Each test is a function registered with TEST(); main() comes from
 * CHECK_MAIN(). A failed CHECK prints the expression and location and marks
 * the current test failed; the run ends with one "N passed, N failed" line,
 * and the exit status is non-zero when any test failed. */
#ifndef EVICORN_TEST_CHECK_H
#define EVICORN_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

struct check_test {
    const char *name;
    void (*fn)(void);
};

extern int check_failed_now;

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #expr);             \
            check_failed_now = 1;                                                                  \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        if (check_a_ != check_b_) {                                                                \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a,    \
                    #b, check_a_, check_b_);                                                       \
            check_failed_now = 1;                                                                  \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {                           \
            fprintf(stderr, "  %s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__,    \
                    #a, #b, check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)");       \
            check_failed_now = 1;                                                                  \
        }                                                                                          \
    } while (0)

/* Compares a (pointer, length) run with a C string. */
#define CHECK_EQ_MEM(ptr, len, str)                                                                \
    do {                                                                                           \
        const char *check_p_ = (const char *)(ptr), *check_s_ = (str);                             \
        size_t check_l_ = (len);                                                                   \
        if (check_l_ != strlen(check_s_) || memcmp(check_p_, check_s_, check_l_) != 0) {           \
            fprintf(stderr, "  %s:%d: %s == \"%s\" failed: got \"%.*s\"\n", __FILE__, __LINE__,    \
                    #ptr, check_s_, (int)check_l_, check_p_ ? check_p_ : "");                      \
            check_failed_now = 1;                                                                  \
        }                                                                                          \
    } while (0)

#define TEST(name)                                                                                 \
    static void name(void);                                                                        \
    static const struct check_test check_entry_##name                                              \
        __attribute__((used, section("check_tests"), aligned(sizeof(void *)))) = {#name, name};    \
    static void name(void)

#define CHECK_MAIN()                                                                               \
    int check_failed_now;                                                                          \
    extern const struct check_test __start_check_tests[], __stop_check_tests[];                    \
    int main(void)                                                                                 \
    {                                                                                              \
        int passed = 0, failed = 0;                                                                \
        for (const struct check_test *t = __start_check_tests; t < __stop_check_tests; t++) {      \
            check_failed_now = 0;                                                                  \
            t->fn();                                                                               \
            if (check_failed_now) {                                                                \
                fprintf(stderr, "FAIL %s\n", t->name);                                             \
                failed++;                                                                          \
            } else {                                                                               \
                passed++;                                                                          \
            }                                                                                      \
        }                                                                                          \
        printf("%d passed, %d failed\n", passed, failed);                                          \
        return failed ? 1 : 0;                                                                     \
    }

#endif
