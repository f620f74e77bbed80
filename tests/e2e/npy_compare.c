/* npy_compare ACTUAL.npy EXPECTED.npy [--rtol R] [--atol A] [--exact]
 *
 * Compares two .npy arrays (read with runtime/io/npy.c): the dtypes and shapes must be equal, and every
 * element must satisfy |a - e| <= atol + rtol * |e| (defaults rtol 1e-4, atol 1e-5), or be bitwise
 * equal with --exact. NaN never matches (except bitwise-equal NaNs with --exact). Prints the worst
 * element on failure. Exit status 0 when they match, 1 otherwise; every error is one line. */
#include "io.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void shape_text(const pnetrt_array *a, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "%s[", a->dtype == PNETRT_I32 ? "i32" : "f32");
    for (int i = 0; i < a->rank && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)a->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* The multi-index of flat element i, as "[i0,i1,...]". */
static void index_text(const pnetrt_array *a, size_t i, char *buf, size_t n) {
    int64_t idx[PNETRT_MAX_RANK];
    for (int d = a->rank - 1; d >= 0; d--) {
        idx[d] = a->shape[d] ? (int64_t)(i % (size_t)a->shape[d]) : 0;
        if (a->shape[d]) i /= (size_t)a->shape[d];
    }
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < a->rank && k < n; d++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? "," : "", (long long)idx[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static bool parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || isinf(v)) return false;
    *out = v;
    return true;
}

int main(int argc, char **argv) {
    const char *paths[2] = {NULL, NULL};
    int npaths = 0;
    double rtol = 1e-4, atol = 1e-5;
    bool exact = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rtol") == 0 || strcmp(argv[i], "--atol") == 0) {
            if (i + 1 >= argc || !parse_double(argv[i + 1], argv[i][2] == 'r' ? &rtol : &atol)) {
                fprintf(stderr, "npy_compare: error: %s needs a non-negative number\n", argv[i]);
                return 1;
            }
            i++;
        } else if (strcmp(argv[i], "--exact") == 0) {
            exact = true;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "npy_compare: error: unknown option '%s'\n", argv[i]);
            return 1;
        } else if (npaths < 2) {
            paths[npaths++] = argv[i];
        } else {
            fprintf(stderr, "npy_compare: error: too many files; usage: npy_compare ACTUAL.npy EXPECTED.npy [--rtol R] [--atol A] [--exact]\n");
            return 1;
        }
    }
    if (npaths != 2) {
        fprintf(stderr, "usage: npy_compare ACTUAL.npy EXPECTED.npy [--rtol R] [--atol A] [--exact]\n");
        return 1;
    }

    char err[512];
    pnetrt_array a = {0}, e = {0};
    if (pnetrt_npy_read(paths[0], &a, err, sizeof err) || pnetrt_npy_read(paths[1], &e, err, sizeof err)) {
        fprintf(stderr, "npy_compare: error: %s\n", err);
        pnetrt_array_free(&a);
        return 1;
    }
    int rc = 0;
    char sa[160], se[160];
    shape_text(&a, sa, sizeof sa);
    shape_text(&e, se, sizeof se);
    if (a.dtype != e.dtype || a.rank != e.rank || memcmp(a.shape, e.shape, sizeof(int64_t) * (size_t)a.rank) != 0) {
        fprintf(stderr, "npy_compare: %s is %s but %s is %s\n", paths[0], sa, paths[1], se);
        rc = 1;
        goto done;
    }

    size_t n = a.nbytes / 4, bad = 0, worst = 0;
    double worst_excess = -1; /* the largest |a - e| - (atol + rtol |e|), over the failing elements */
    for (size_t i = 0; i < n; i++) {
        double av, ev;
        bool ok;
        if (a.dtype == PNETRT_I32) {
            av = ((const int32_t *)a.data)[i];
            ev = ((const int32_t *)e.data)[i];
        } else {
            av = ((const float *)a.data)[i];
            ev = ((const float *)e.data)[i];
        }
        double excess;
        if (exact) {
            ok = memcmp((const char *)a.data + 4 * i, (const char *)e.data + 4 * i, 4) == 0;
            excess = ok ? 0 : (isnan(av) || isnan(ev) ? INFINITY : fabs(av - ev));
        } else {
            excess = fabs(av - ev) - (atol + rtol * fabs(ev));
            ok = excess <= 0;
            if (isnan(av) || isnan(ev)) ok = false, excess = INFINITY;
        }
        if (!ok) {
            if (bad == 0 || excess > worst_excess) worst_excess = excess, worst = i;
            bad++;
        }
    }
    if (bad) {
        char idx[200];
        index_text(&a, worst, idx, sizeof idx);
        double av = a.dtype == PNETRT_I32 ? ((const int32_t *)a.data)[worst] : ((const float *)a.data)[worst];
        double ev = e.dtype == PNETRT_I32 ? ((const int32_t *)e.data)[worst] : ((const float *)e.data)[worst];
        if (exact)
            fprintf(stderr, "npy_compare: %s: %zu of %zu elements differ from %s (not bitwise equal); worst at %s: %.9g vs %.9g\n",
                    paths[0], bad, n, paths[1], idx, av, ev);
        else
            fprintf(stderr,
                    "npy_compare: %s: %zu of %zu elements differ from %s beyond atol %g + rtol %g; worst at %s: %.9g vs expected %.9g (|diff| %.3g)\n",
                    paths[0], bad, n, paths[1], atol, rtol, idx, av, ev, fabs(av - ev));
        rc = 1;
    }
done:
    pnetrt_array_free(&a);
    pnetrt_array_free(&e);
    return rc;
}
