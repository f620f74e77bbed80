/* The folded gradient tree (gradtree.h). */
#include "gradtree.h"

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
    while (t >= 2 && pnetrt_tree_siblings(blk[t - 2], blk[t - 1])) {
        add(bufs[t - 2], bufs[t - 1], r, nr, ith, nth);
        blk[t - 2].n *= 2;
        t--;
        added = true;
    }
    *top = t;
    return added;
}

void pnetrt_tree_finish(pnetrt_blk *blk, float **bufs, int *top, int keep, const pnetrt_range *r, int nr, int ith,
                        int nth) {
    int t = *top;
    while (t >= 2 && t > keep) {
        add(bufs[t - 2], bufs[t - 1], r, nr, ith, nth);
        blk[t - 2].n += blk[t - 1].n;
        t--;
    }
    *top = t;
}
