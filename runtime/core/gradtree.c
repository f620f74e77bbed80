/* The folded gradient tree (gradtree.h). */
#include "gradtree.h"

int pnetrt_tree_depth(int64_t n) {
    int d = 1;
    while (n > 1) {
        n = (n + 1) / 2;
        d++;
    }
    return 2 * d + 1;
}

static bool siblings(pnetrt_blk a, pnetrt_blk b) { return a.n == b.n && a.lo % (2 * a.n) == 0 && b.lo == a.lo + a.n; }

int pnetrt_tree_stack(int64_t c0, int64_t c1, pnetrt_blk *out, int *most) {
    int top = 0, deepest = 0;
    for (int64_t c = c0; c < c1; c++) {
        out[top++] = (pnetrt_blk){c, 1};
        if (top > deepest) deepest = top;
        while (top >= 2 && siblings(out[top - 2], out[top - 1])) {
            out[top - 2].n *= 2;
            top--;
        }
    }
    if (most) *most = deepest;
    return top;
}

/* dst += src over this thread's share of the ranges: the ranges' elements, in order, cut into nth
 * near-equal parts at multiples of 16. */
static void add(float *dst, const float *src, const pnetrt_range *r, int nr, int ith, int nth) {
    int64_t total = 0;
    for (int k = 0; k < nr; k++) total += r[k].hi - r[k].lo;
    int64_t units = (total + 15) / 16;
    int64_t a = units * ith / nth * 16, b = units * (ith + 1) / nth * 16, base = 0;
    for (int k = 0; k < nr && base < b; k++) {
        int64_t len = r[k].hi - r[k].lo;
        int64_t lo = (a > base ? a : base) - base, hi = (b < base + len ? b : base + len) - base;
        float *restrict d = dst + r[k].lo;
        const float *restrict s = src + r[k].lo;
        for (int64_t e = lo; e < hi; e++) d[e] += s[e];
        base += len;
    }
}

bool pnetrt_tree_push(pnetrt_blk *blk, float **bufs, int *top, pnetrt_blk b, float *buf, const pnetrt_range *r, int nr,
                      int ith, int nth) {
    int t = *top;
    blk[t] = b;
    bufs[t] = buf;
    t++;
    bool added = false;
    while (t >= 2 && siblings(blk[t - 2], blk[t - 1])) {
        add(bufs[t - 2], bufs[t - 1], r, nr, ith, nth);
        blk[t - 2].n *= 2;
        t--;
        added = true;
    }
    *top = t;
    return added;
}

void pnetrt_tree_finish(pnetrt_blk *blk, float **bufs, int *top, const pnetrt_range *r, int nr, int ith, int nth) {
    int t = *top;
    while (t >= 2) {
        add(bufs[t - 2], bufs[t - 1], r, nr, ith, nth);
        blk[t - 2].n += blk[t - 1].n;
        t--;
    }
    *top = t;
}
