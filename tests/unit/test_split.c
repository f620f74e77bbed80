/* A training step's chunks among replica groups by measured speed (runtime/core/split.c): equal
 * runs until every group of the team was measured; then runs that would finish together (a group
 * k times as fast gets about k times the chunks), each of at least one chunk, where that finishes
 * at least 8% sooner; no run whose folded
 * stack is deeper than the buffers allow, nor longer than a cap; a new team starts over; a test's
 * fixed speeds; the deepest stack of any run of a given length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pnetrt_ranks.h"
#include "split.h"

/* A step of the runs first[] on which group g took sec[g] seconds per chunk. */
static void step(pnetrt_split *s, int groups, int threads, const int64_t *first, const double *sec) {
    for (int g = 0; g < groups; g++) s->took[g] = sec[g] * (double)(first[g + 1] - first[g]);
    pnetrt_split_measured(s, groups, threads, first);
}

static void test_equal_until_measured(void **unused) {
    (void)unused;
    pnetrt_split s = {0};
    int64_t first[5];
    assert_false(pnetrt_split_chunks(&s, 2, 2, 8, 16, 0, 0, first));
    assert_int_equal(first[0], 8), assert_int_equal(first[1], 12), assert_int_equal(first[2], 16);
    assert_false(pnetrt_split_chunks(&s, 3, 3, 0, 7, 0, 0, first)); /* 0 .. 2 .. 4 .. 7 */
    assert_int_equal(first[1], 2), assert_int_equal(first[2], 4), assert_int_equal(first[3], 7);
    assert_false(pnetrt_split_chunks(&s, 1, 2, 0, 5, 0, 0, first));
    assert_int_equal(first[1], 5);
}

static void test_weighted(void **unused) {
    (void)unused;
    pnetrt_split s = {0};
    int64_t first[5];
    double sec[2] = {1e-3, 1.5e-3};
    pnetrt_split_chunks(&s, 2, 2, 0, 8, 0, 0, first);
    step(&s, 2, 2, first, sec);
    /* 5 chunks at 1 ms and 3 at 1.5 ms finish at 5 and 4.5 ms; 4 + 4 at 6 ms. */
    assert_true(pnetrt_split_chunks(&s, 2, 2, 0, 8, 0, 0, first));
    assert_int_equal(first[0], 0), assert_int_equal(first[1], 5), assert_int_equal(first[2], 8);
    /* Equal speeds keep equal runs; a difference within one chunk's worth moves nothing. */
    pnetrt_split e = {0};
    double same[2] = {1e-3, 1.1e-3};
    pnetrt_split_chunks(&e, 2, 2, 0, 8, 0, 0, first);
    step(&e, 2, 2, first, same);
    assert_false(pnetrt_split_chunks(&e, 2, 2, 0, 8, 0, 0, first));
    assert_int_equal(first[1], 4);
    /* At 1.3x, 5 + 3 chunks would finish at 5 ms against 5.2: under the 8% a cut must gain. */
    pnetrt_split_fix(&e, (double[]){1e-3, 1.3e-3}, 2);
    assert_false(pnetrt_split_chunks(&e, 2, 2, 0, 8, 0, 0, first));
    pnetrt_split_fix(&e, (double[]){1e-3, 1.45e-3}, 2); /* 5 against 5.8 ms */
    assert_true(pnetrt_split_chunks(&e, 2, 2, 0, 8, 0, 0, first));
    assert_int_equal(first[1], 5);
    /* Three groups at 1, 2 and 4 ms: 8 + 4 + 2 chunks all finish at 8 ms. */
    pnetrt_split t = {0};
    double three[3] = {1e-3, 2e-3, 4e-3};
    pnetrt_split_chunks(&t, 3, 3, 100, 114, 0, 0, first);
    step(&t, 3, 3, first, three);
    assert_true(pnetrt_split_chunks(&t, 3, 3, 100, 114, 0, 0, first));
    assert_int_equal(first[1], 108), assert_int_equal(first[2], 112), assert_int_equal(first[3], 114);
}

/* The measurements are averaged (half the last step's, half the ones before), and a new team, or
 * a group without a measurement, starts again from equal runs. */
static void test_adapts_and_restarts(void **unused) {
    (void)unused;
    pnetrt_split s = {0};
    int64_t first[3];
    double fast1[2] = {1e-3, 3e-3}, same[2] = {1e-3, 1e-3};
    pnetrt_split_chunks(&s, 2, 2, 0, 8, 0, 0, first);
    step(&s, 2, 2, first, fast1);
    assert_true(pnetrt_split_chunks(&s, 2, 2, 0, 8, 0, 0, first));
    assert_int_equal(first[1], 6); /* 6 at 1 ms, 2 at 3 ms */
    for (int k = 0; k < 6; k++) {  /* the second group got as fast: back to equal within a few steps */
        pnetrt_split_chunks(&s, 2, 2, 0, 8, 0, 0, first);
        step(&s, 2, 2, first, same);
    }
    assert_false(pnetrt_split_chunks(&s, 2, 2, 0, 8, 0, 0, first));
    step(&s, 2, 2, first, fast1);
    assert_false(pnetrt_split_chunks(&s, 2, 4, 0, 8, 0, 0, first)); /* another team: not measured */
    pnetrt_split_measured(&s, 2, 4, first);                      /* a step that measured nothing */
    assert_false(pnetrt_split_chunks(&s, 2, 4, 0, 8, 0, 0, first));
}

/* A group that is far slower still gets one chunk; with a limit on the folded stack's depth the
 * cut gives up part of the weighting to respect it, never below equal runs. */
static void test_depth_and_minimum(void **unused) {
    (void)unused;
    pnetrt_split s = {0};
    int64_t first[3];
    double skew[2] = {1.0, 1e-3};
    pnetrt_split_fix(&s, skew, 2);
    assert_true(pnetrt_split_chunks(&s, 2, 2, 0, 30, 0, 0, first));
    assert_int_equal(first[1], 1);
    pnetrt_blk stack[128];
    int most0, most1, eq0, eq1;
    pnetrt_tree_stack(1, 30, stack, &most1);
    pnetrt_tree_stack(0, 15, stack, &eq0);
    pnetrt_tree_stack(15, 30, stack, &eq1);
    int limit = eq0 > eq1 ? eq0 : eq1;
    assert_true(most1 > limit); /* so the limit binds (8 against 5) */
    pnetrt_split_chunks(&s, 2, 2, 0, 30, limit, 0, first);
    pnetrt_tree_stack(first[0], first[1], stack, &most0);
    pnetrt_tree_stack(first[1], first[2], stack, &most1);
    assert_true(most0 <= limit && most1 <= limit);
    assert_true(first[1] >= 1 && first[1] <= 15);
    /* Fixed speeds hold whatever the team, and steps measure nothing. */
    step(&s, 2, 2, first, (double[]){1e-3, 1e-3});
    assert_true(pnetrt_split_chunks(&s, 2, 7, 0, 30, 0, 0, first));
    assert_int_equal(first[1], 1);
    pnetrt_split_fix(&s, NULL, 0);
    assert_false(pnetrt_split_chunks(&s, 2, 2, 0, 31, 0, 0, first));
}

/* A cap on a run's chunks (the ranks' runs: twice the equal run) holds whatever the speeds, and
 * the deepest stack of any run of at most len chunks is what pnetrt_tree_stack reaches. */
static void test_cap_and_depth(void **unused) {
    (void)unused;
    pnetrt_split s = {0};
    int64_t first[5];
    pnetrt_split_fix(&s, (double[]){1e-3, 1e-3, 1e-3, 1.0}, 4);
    assert_true(pnetrt_split_chunks(&s, 4, 4, 0, 32, 0, 0, first));
    assert_int_equal(first[1], 11); /* 11 + 10 + 10 + 1 uncapped */
    assert_true(pnetrt_split_chunks(&s, 4, 4, 0, 32, 0, 10, first));
    for (int g = 0; g < 4; g++) assert_true(first[g + 1] - first[g] <= 10 && first[g + 1] - first[g] >= 1);
    assert_int_equal(first[4], 32);
    assert_false(pnetrt_split_chunks(&s, 4, 4, 0, 32, 0, 7, first)); /* 4 x 7 < 32: no room, equal runs */
    assert_int_equal(first[1], 8);
    int worst = 0;
    for (int64_t a = 0; a < 40; a++)
        for (int64_t b = a + 1; b <= 40 && b - a <= 9; b++) {
            pnetrt_blk stack[128];
            int most;
            pnetrt_tree_stack(a, b, stack, &most);
            if (most > worst) worst = most;
        }
    pnetrt_split d = {0};
    assert_int_equal(pnetrt_split_depth(&d, 40, 9), worst);
    assert_int_equal(pnetrt_split_depth(&d, 40, 9), worst); /* remembered */
    assert_int_equal(pnetrt_split_depth(&d, 40, 1), 1);
    assert_true(pnetrt_split_depth(&d, 40, 40) >= worst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal_until_measured),
        cmocka_unit_test(test_weighted),
        cmocka_unit_test(test_adapts_and_restarts),
        cmocka_unit_test(test_depth_and_minimum),
        cmocka_unit_test(test_cap_and_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
