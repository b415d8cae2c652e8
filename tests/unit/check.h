/*
 * check.h - the smallest test harness that reports well: CHECK() records a failure with
 * file:line and goes on; main() returns check_result() so ctest sees the outcome.
 */
#ifndef GR_TEST_CHECK_H
#define GR_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        check_count++;                                                                             \
        if (!(cond)) {                                                                             \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        check_count++;                                                                             \
        if (check_a_ != check_b_) {                                                                \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a,          \
                    check_a_, check_b_);                                                           \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        check_count++;                                                                             \
        if (check_a_ == NULL || strcmp(check_a_, check_b_) != 0) {                                 \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a,      \
                    check_a_ ? check_a_ : "(null)", check_b_);                                     \
        }                                                                                          \
    } while (0)

#define CHECK_NEAR(a, b, eps)                                                                      \
    do {                                                                                           \
        double check_a_ = (a), check_b_ = (b);                                                     \
        check_count++;                                                                             \
        if (!(fabs(check_a_ - check_b_) <= (eps))) {                                               \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: %s == %.10f, expected %.10f\n", __FILE__, __LINE__, #a,        \
                    check_a_, check_b_);                                                           \
        }                                                                                          \
    } while (0)

static inline int check_result(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures == 0 ? 0 : 1;
}

#endif
