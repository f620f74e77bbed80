/* st_compare REF.safetensors GOT.safetensors RTOL ATOL
 *
 * Compares the tensors of two safetensors files (read with runtime/io/safetensors.c): every tensor of
 * REF must be in GOT under the same name with the same shape, and every element must satisfy
 * |got - ref| <= atol + rtol * |ref|; NaN never matches. Tensors only in GOT (such as a training
 * run's optimizer.* state) are ignored. Prints one line per failing tensor with its worst element.
 * Exit status 0 when all match, 1 on any mismatch or error, 2 on bad usage. */
#include "io.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void shape_text(int rank, const int64_t *shape, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < rank && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? "," : "", shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* The multi-index of flat element i, as "[i0,i1,...]". */
static void index_text(int rank, const int64_t *shape, size_t i, char *buf, size_t n) {
    int64_t idx[PNETRT_MAX_RANK] = {0};
    for (int d = rank - 1; d >= 0; d--) {
        if (shape[d] == 0) continue;
        idx[d] = (int64_t)(i % (size_t)shape[d]);
        i /= (size_t)shape[d];
    }
    shape_text(rank, idx, buf, n);
}

static bool parse_tol(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || isinf(v)) return false;
    *out = v;
    return true;
}

/* Compares tensor `name`; 0 when it matches, 1 otherwise (after printing why). */
static int compare_one(pnetrt_st *ref, pnetrt_st *got, const char *name, double rtol, double atol) {
    int rank, grank;
    int64_t shape[PNETRT_MAX_RANK], gshape[PNETRT_MAX_RANK];
    char rs[200], gs[200], err[512];
    if (pnetrt_st_shape(ref, name, &rank, shape)) {
        printf("%s: cannot read its shape from the reference\n", name);
        return 1;
    }
    if (pnetrt_st_shape(got, name, &grank, gshape)) {
        printf("%s: missing\n", name);
        return 1;
    }
    bool same = grank == rank;
    for (int i = 0; same && i < rank; i++) same = gshape[i] == shape[i];
    if (!same) {
        shape_text(rank, shape, rs, sizeof rs);
        shape_text(grank, gshape, gs, sizeof gs);
        printf("%s: shape %s, expected %s\n", name, gs, rs);
        return 1;
    }
    size_t count = 1;
    for (int i = 0; i < rank; i++) count *= (size_t)shape[i];
    float *r = malloc((count ? count : 1) * sizeof *r), *g = malloc((count ? count : 1) * sizeof *g);
    if (!r || !g) {
        free(r);
        free(g);
        printf("%s: out of memory for %zu elements\n", name, count);
        return 1;
    }
    int rc = 0;
    if (pnetrt_st_read_f32(ref, name, rank, shape, r, err, sizeof err) ||
        pnetrt_st_read_f32(got, name, rank, shape, g, err, sizeof err)) {
        printf("%s: %s\n", name, err);
        rc = 1;
        goto out;
    }
    size_t bad = 0, worst = 0;
    double worst_excess = -1; /* |diff| - tol of the worst element; +inf for NaN */
    for (size_t i = 0; i < count; i++) {
        double d = fabs((double)g[i] - (double)r[i]), tol = atol + rtol * fabs((double)r[i]);
        double excess = isnan(d) ? INFINITY : d - tol;
        if (excess > 0) {
            bad++;
            if (excess > worst_excess) {
                worst_excess = excess;
                worst = i;
            }
        }
    }
    if (bad) {
        char at[200];
        index_text(rank, shape, worst, at, sizeof at);
        double d = fabs((double)g[worst] - (double)r[worst]);
        printf("%s: %zu of %zu elements differ; worst at %s: got %.9g, expected %.9g (|diff| %.3g > tolerance %.3g)\n",
               name, bad, count, at, (double)g[worst], (double)r[worst], d, atol + rtol * fabs((double)r[worst]));
        rc = 1;
    }
out:
    free(r);
    free(g);
    return rc;
}

int main(int argc, char **argv) {
    double rtol, atol;
    if (argc != 5) {
        fprintf(stderr, "usage: st_compare REF.safetensors GOT.safetensors RTOL ATOL\n");
        return 2;
    }
    if (!parse_tol(argv[3], &rtol) || !parse_tol(argv[4], &atol)) {
        fprintf(stderr, "st_compare: error: RTOL and ATOL must be non-negative numbers\n");
        return 2;
    }
    char err[512];
    pnetrt_st *ref = NULL, *got = NULL;
    if (pnetrt_st_open(argv[1], &ref, err, sizeof err) || pnetrt_st_open(argv[2], &got, err, sizeof err)) {
        fprintf(stderr, "st_compare: error: %s\n", err);
        pnetrt_st_close(ref);
        return 1;
    }
    int n = pnetrt_st_count(ref), failed = 0;
    for (int i = 0; i < n; i++) failed += compare_one(ref, got, pnetrt_st_name(ref, i), rtol, atol);
    if (failed) printf("%d of %d tensors differ\n", failed, n);
    else printf("%d tensors match\n", n);
    pnetrt_st_close(ref);
    pnetrt_st_close(got);
    return failed ? 1 : 0;
}
