/* The folded gradient tree (runtime/core/gradtree.c) against the fixed tree it replaces: for
 * chunk counts 1..70 and every way of cutting the chunks into 1-5 contiguous runs (thread groups
 * or ranks), folding each run as its chunks complete and then adding the runs' stacks gives the
 * same bits as the in-place tree over one slot per chunk (docs/training.md). So does the step's
 * fused form (train_fold.c): the last chunk pushed without adding, the stack finished down to a
 * few blocks, which the update adds from the right as it reads them. Also the stack's depth stays
 * within pnetrt_tree_depth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gradtree.h"

#include <stdlib.h>
#include <string.h>

enum { P = 37, MAXN = 70 };

static float slots[MAXN][P];

/* The reference: the generated update's in-place tree (s = 1, 2, 4, ...: slot i adds slot i + s). */
static void reference(int n, float *out) {
    static float a[MAXN][P];
    memcpy(a, slots, sizeof a);
    for (int s = 1; s < n; s *= 2)
        for (int i = 0; i + s < n; i += 2 * s)
            for (int e = 0; e < P; e++) a[i][e] += a[i + s][e];
    memcpy(out, a[0], sizeof a[0]);
}

/* Runs [cut[g], cut[g + 1]) folded chunk by chunk, then their stacks pushed in order and finished. */
static void folded(int n, const int *cut, int runs, float *out, int nth) {
    static float buf[5][64][P];
    pnetrt_range all = {0, P};
    int depth = pnetrt_tree_depth(n);
    assert_true(depth <= 64);
    for (int g = 0; g < runs; g++) {
        pnetrt_blk blk[64];
        float *bufs[64];
        int top = 0, most = 0;
        for (int c = cut[g]; c < cut[g + 1]; c++) {
            memcpy(buf[g][top], slots[c], sizeof slots[c]);
            /* Each of nth "threads" keeps its own copy of the stack and adds its share. */
            pnetrt_blk b2[64];
            float *f2[64];
            int t2 = top;
            for (int ith = 0; ith < nth; ith++) {
                memcpy(b2, blk, sizeof blk);
                memcpy(f2, bufs, sizeof bufs);
                t2 = top;
                pnetrt_tree_push(b2, f2, &t2, (pnetrt_blk){c, 1}, buf[g][top], &all, 1, ith, nth);
            }
            memcpy(blk, b2, sizeof blk);
            memcpy(bufs, f2, sizeof bufs);
            top = t2;
            if (top > most) most = top;
        }
        pnetrt_blk sim[64];
        int m2;
        int k = pnetrt_tree_stack(cut[g], cut[g + 1], sim, &m2);
        assert_int_equal(k, top);
        assert_true(m2 <= depth);
        for (int j = 0; j < k; j++) {
            assert_int_equal(sim[j].lo, blk[j].lo);
            assert_int_equal(sim[j].n, blk[j].n);
            assert_ptr_equal(bufs[j], buf[g][j]);
        }
    }
    pnetrt_blk blk[64], sim[64];
    float *bufs[64];
    int top = 0;
    for (int g = 0; g < runs; g++) {
        int k = pnetrt_tree_stack(cut[g], cut[g + 1], sim, NULL);
        for (int j = 0; j < k; j++) pnetrt_tree_push(blk, bufs, &top, sim[j], buf[g][j], &all, 1, 0, 1);
    }
    pnetrt_tree_finish(blk, bufs, &top, 1, &all, 1, 0, 1);
    assert_int_equal(top, 1);
    assert_int_equal(blk[0].lo, 0);
    assert_int_equal(blk[0].n, n);
    memcpy(out, bufs[0], sizeof(float) * P);
}

/* The fused form: runs folded as above, except that the last run's last chunk is pushed without
 * adding (in the run and when the runs' stacks are combined); the stack finished down to keep
 * blocks; then the update's sum, added from the right in a register. */
static void fused(int n, const int *cut, int runs, int keep, float *out) {
    static float buf[5][64][P];
    pnetrt_range all = {0, P};
    pnetrt_blk blk[64], sim[64];
    float *bufs[64];
    int top = 0;
    for (int g = 0; g < runs; g++) {
        bool raw = cut[g + 1] == n && cut[g + 1] > cut[g];
        int gt = 0;
        for (int c = cut[g]; c < cut[g + 1]; c++) {
            memcpy(buf[g][gt], slots[c], sizeof slots[c]);
            if (raw && c == n - 1) {
                blk[gt] = (pnetrt_blk){c, 1};
                bufs[gt] = buf[g][gt];
                gt++;
            } else {
                pnetrt_tree_push(blk, bufs, &gt, (pnetrt_blk){c, 1}, buf[g][gt], &all, 1, 0, 1);
            }
        }
    }
    for (int g = 0; g < runs; g++) {
        bool raw = cut[g + 1] == n && cut[g + 1] > cut[g];
        int k = pnetrt_tree_stack(cut[g], raw ? cut[g + 1] - 1 : cut[g + 1], sim, NULL);
        for (int j = 0; j < k; j++) pnetrt_tree_push(blk, bufs, &top, sim[j], buf[g][j], &all, 1, 0, 1);
        if (raw) {
            blk[top] = (pnetrt_blk){n - 1, 1};
            bufs[top++] = buf[g][k];
        }
    }
    pnetrt_tree_finish(blk, bufs, &top, keep, &all, 1, 0, 1);
    assert_true(top >= 1 && top <= keep);
    for (int e = 0; e < P; e++) {
        float v = bufs[top - 1][e];
        for (int j = top - 2; j >= 0; j--) v = bufs[j][e] + v;
        out[e] = v;
    }
}

static void test_same_bits(void **state) {
    (void)state;
    srand(7);
    for (int c = 0; c < MAXN; c++)
        for (int e = 0; e < P; e++) slots[c][e] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f + (float)(rand() % 1000) * 1e-3f;
    float want[P], got[P];
    int checked = 0;
    for (int n = 1; n <= MAXN; n++) {
        reference(n, want);
        for (int runs = 1; runs <= 5 && runs <= n; runs++)
            for (int shift = 0; shift < 3; shift++) {
                int cut[6];
                for (int g = 0; g <= runs; g++) cut[g] = g == runs ? n : g == 0 ? 0 : (n * g + shift) / runs;
                for (int g = 0; g < runs; g++)
                    if (cut[g + 1] < cut[g]) cut[g + 1] = cut[g];
                folded(n, cut, runs, got, 1 + shift);
                assert_memory_equal(want, got, sizeof want);
                for (int keep = 1; keep <= 4; keep += 3) {
                    fused(n, cut, runs, keep, got);
                    assert_memory_equal(want, got, sizeof want);
                }
                checked++;
            }
    }
    assert_true(checked > 500);
}

/* The deepest stack over runs of n chunks, wherever they start, is within the bound. */
static void test_depth(void **state) {
    (void)state;
    pnetrt_blk s[200];
    for (int64_t n = 1; n <= 300; n++)
        for (int64_t c0 = 0; c0 < 70; c0 += 3) {
            int most;
            pnetrt_tree_stack(c0, c0 + n, s, &most);
            assert_true(most <= pnetrt_tree_depth(n));
        }
    int most;
    pnetrt_tree_stack(0, 32, s, &most);
    assert_int_equal(most, 6); /* a binary counter to 32: 5 bits, and the chunk just pushed */
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_same_bits), cmocka_unit_test(test_depth)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
