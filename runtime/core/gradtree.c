/* The folded gradient tree (gradtree.h). */
#include "gradtree.h"

/* bufs[0] = bufs[0] + (bufs[1] + (... + bufs[n - 1])) over this thread's share of the ranges: the
 * ranges' elements, in order, cut into nth near-equal parts at multiples of 16. These are the n - 1
 * additions the stack makes one at a time (bufs[n - 2] += bufs[n - 1], then bufs[n - 3] += that,
 * ...), the same operands in the same order, so the same bits, in one pass over the elements: the
 * partial sums stay in registers instead of going through memory. */
static void add_chain(float *const *bufs, int n, const pnetrt_range *r, int nr, int ith, int nth) {
    int64_t total = 0;
    for (int k = 0; k < nr; k++) total += r[k].hi - r[k].lo;
    int64_t units = (total + 15) / 16;
    int64_t a = units * ith / nth * 16, b = units * (ith + 1) / nth * 16, base = 0;
    for (int k = 0; k < nr && base < b; k++) {
        int64_t len = r[k].hi - r[k].lo;
        int64_t lo = (a > base ? a : base) - base, hi = (b < base + len ? b : base + len) - base;
        float *restrict d = bufs[0] + r[k].lo;
        const float *restrict s1 = bufs[n - 1] + r[k].lo;
        if (n == 2) {
            for (int64_t e = lo; e < hi; e++) d[e] += s1[e];
        } else if (n == 3) {
            const float *restrict s2 = bufs[1] + r[k].lo;
            for (int64_t e = lo; e < hi; e++) d[e] += s2[e] + s1[e];
        } else {
            for (int64_t e0 = lo; e0 < hi; e0 += 256) { /* blocks: each partial sum stays in L1 */
                int64_t e1 = e0 + 256 < hi ? e0 + 256 : hi;
                float v[256];
                for (int64_t e = e0; e < e1; e++) v[e - e0] = s1[e];
                for (int j = n - 2; j >= 1; j--) {
                    const float *restrict sj = bufs[j] + r[k].lo;
                    for (int64_t e = e0; e < e1; e++) v[e - e0] = sj[e] + v[e - e0];
                }
                for (int64_t e = e0; e < e1; e++) d[e] += v[e - e0];
            }
        }
        base += len;
    }
}

bool pnetrt_tree_push(pnetrt_blk *blk, float **bufs, int *top, pnetrt_blk b, float *buf, const pnetrt_range *r, int nr,
                      int ith, int nth) {
    int t = *top;
    blk[t] = b;
    bufs[t] = buf;
    t++;
    int m = 0; /* the siblings to add: the top m + 1 blocks become one */
    while (t - m >= 2 && pnetrt_tree_siblings(blk[t - m - 2], (pnetrt_blk){blk[t - m - 1].lo, blk[t - 1].n << m})) m++;
    if (m) {
        add_chain(bufs + t - m - 1, m + 1, r, nr, ith, nth);
        blk[t - m - 1].n = blk[t - 1].n << m;
    }
    *top = t - m;
    return m > 0;
}

void pnetrt_tree_finish(pnetrt_blk *blk, float **bufs, int *top, const pnetrt_range *r, int nr, int ith, int nth) {
    int t = *top;
    if (t >= 2) add_chain(bufs, t, r, nr, ith, nth);
    for (int j = 1; j < t; j++) blk[0].n += blk[j].n;
    if (t >= 2) *top = 1;
}
