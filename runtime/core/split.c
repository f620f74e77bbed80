/* A training step's chunks among its replica groups by measured speed (split.h). */
#include "split.h"

#include "pnetrt_ranks.h" /* pnetrt_tree_stack, pnetrt_tree_depth */

#include <string.h>

/* The deepest folded stack among the runs first[0..groups]. */
static int deepest(int groups, const int64_t *first) {
    int worst = 0;
    for (int g = 0; g < groups; g++) {
        int64_t n = first[g + 1] - first[g];
        if (pnetrt_tree_depth(n) > 128) return 1 << 30; /* the step keeps a slot per chunk then */
        pnetrt_blk stack[128];
        int most = 0;
        pnetrt_tree_stack(first[g], first[g + 1], stack, &most);
        if (most > worst) worst = most;
    }
    return worst;
}

/* When the last group would finish the runs first[] at the measured seconds per chunk. */
static double finish(const pnetrt_split *s, int groups, const int64_t *first) {
    double last = 0;
    for (int g = 0; g < groups; g++) {
        double t = (double)(first[g + 1] - first[g]) * s->sec[g];
        if (t > last) last = t;
    }
    return last;
}

bool pnetrt_split_chunks(pnetrt_split *s, int groups, int threads, int64_t lo, int64_t hi, int depth, int64_t most_run,
                         int64_t *first) {
    int64_t n = hi - lo;
    for (int g = 0; g <= groups; g++) first[g] = lo + n * g / groups;
    bool known = groups > 1 && groups <= PNETRT_SPLIT_GROUPS && n >= groups &&
                 (s->fixed ? groups <= s->groups : s->groups == groups && s->threads == threads);
    for (int g = 0; known && g < groups; g++) known = s->sec[g] > 0;
    if (!known) return false;
    /* Greedy: one chunk each, then every further chunk to the group that would finish it first
     * (for equal jobs on machines of different speeds this minimises the latest finish). */
    if (most_run > 0 && most_run * groups < n) return false;
    int64_t count[PNETRT_SPLIT_GROUPS], weighted[PNETRT_SPLIT_GROUPS + 1];
    for (int g = 0; g < groups; g++) count[g] = 1;
    for (int64_t c = groups; c < n; c++) {
        int best = -1;
        for (int g = 0; g < groups; g++)
            if ((most_run <= 0 || count[g] < most_run) &&
                (best < 0 || (double)(count[g] + 1) * s->sec[g] < (double)(count[best] + 1) * s->sec[best]))
                best = g;
        count[best]++;
    }
    weighted[0] = lo;
    for (int g = 0; g < groups; g++) weighted[g + 1] = weighted[g] + count[g];
    /* Toward the equal runs, eighths at a time, until every stack fits: each boundary is a mix of
     * the two cuts' (rounded down, so runs keep at least one chunk), the last (w = 0) the equal one. */
    int64_t equal[PNETRT_SPLIT_GROUPS + 1];
    memcpy(equal, first, (size_t)(groups + 1) * sizeof *first);
    for (int w = 8; w > 0; w--) {
        for (int g = 0; g <= groups; g++) first[g] = lo + ((equal[g] - lo) * (8 - w) + (weighted[g] - lo) * w) / 8;
        if (depth <= 0 || deepest(groups, first) <= depth) break;
        memcpy(first, equal, (size_t)(groups + 1) * sizeof *first);
    }
    /* Only a clear gain moves the cut: one step's noise in the measurements would otherwise
     * move chunks back and forth for nothing. */
    if (finish(s, groups, first) > 0.92 * finish(s, groups, equal)) memcpy(first, equal, (size_t)(groups + 1) * sizeof *first);
    return memcmp(first, equal, (size_t)(groups + 1) * sizeof *first) != 0;
}

int pnetrt_split_depth(pnetrt_split *s, int64_t n, int64_t len) {
    if (len > n) len = n;
    if (len < 1) return 1;
    if (s->memo > 0 && s->memo_n == n && s->memo_len == len) return s->memo;
    /* A run's deepest is at most that of the longer run from the same start (its stack is a
     * prefix of the other's history), so the runs of exactly len chunks, and those cut by n, do. */
    if (pnetrt_tree_depth(len) > 128) return pnetrt_tree_depth(len); /* (no stack: a slot per chunk) */
    int worst = 1;
    for (int64_t a = 0; a < n; a++) {
        pnetrt_blk stack[128];
        int most = 0;
        pnetrt_tree_stack(a, a + len < n ? a + len : n, stack, &most);
        if (most > worst) worst = most;
    }
    s->memo_n = n;
    s->memo_len = len;
    s->memo = worst;
    return worst;
}

void pnetrt_split_measured(pnetrt_split *s, int groups, int threads, const int64_t *first) {
    if (groups > PNETRT_SPLIT_GROUPS) groups = PNETRT_SPLIT_GROUPS;
    double took[PNETRT_SPLIT_GROUPS];
    memcpy(took, s->took, sizeof took);
    memset(s->took, 0, sizeof s->took);
    if (s->fixed || groups < 2) return;
    if (s->groups != groups || s->threads != threads) {
        memset(s->sec, 0, sizeof s->sec);
        s->groups = groups;
        s->threads = threads;
    }
    /* Half the last measurement, half the ones before: a group that turned slow loses chunks within
     * a few steps, while one step's noise moves the cut little. A group without a measurement
     * (0 seconds) is unknown again, so the next cut is equal. */
    for (int g = 0; g < groups; g++) {
        int64_t n = first[g + 1] - first[g];
        double per = n > 0 ? took[g] / (double)n : 0;
        if (per > 0) s->sec[g] = s->sec[g] > 0 ? 0.5 * s->sec[g] + 0.5 * per : per;
        else if (n > 0) s->sec[g] = 0;
    }
}

double pnetrt_split_busiest(const pnetrt_split *s, int groups) {
    double most = 0;
    for (int g = 0; g < groups && g < PNETRT_SPLIT_GROUPS; g++)
        if (s->took[g] > most) most = s->took[g];
    return most;
}

void pnetrt_split_fix(pnetrt_split *s, const double *sec, int groups) {
    memset(s, 0, sizeof *s);
    if (groups < 1) return;
    if (groups > PNETRT_SPLIT_GROUPS) groups = PNETRT_SPLIT_GROUPS;
    memcpy(s->sec, sec, (size_t)groups * sizeof *sec);
    s->groups = groups;
    s->fixed = true;
}
