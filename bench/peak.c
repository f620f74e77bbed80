/* bench/peak.c — the machine's fp32 peak, measured: independent chains of fused multiply-adds on
 * the widest vectors the compiler targets (build with -O2 -march=native -fopenmp
 * -ffp-contract=fast; bench/peak.sh does), on every thread of an OpenMP team at once.
 *
 * usage: peak [THREADS]      (default: OMP_NUM_THREADS, else every core)
 * prints: "peak: X GFLOP/s fp32 on T threads (V-bit vectors)"
 *
 * The shares of peak in docs/performance.md and bench/*.sh are against this number: the CPU of
 * the machine at hand changes between sessions (a Zen 4 VM measured 232 GFLOP/s on 2 cores, a
 * Zen 5 one 415). Twelve chains cover an FMA latency of 4-6 cycles on two pipes. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__AVX512F__)
enum { LANES = 16 };
#elif defined(__AVX__)
enum { LANES = 8 };
#else
enum { LANES = 4 };
#endif
typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

int main(int argc, char **argv) {
    if (argc > 2 || (argc == 2 && atoi(argv[1]) < 1)) {
        fprintf(stderr, "usage: peak [THREADS]\n");
        return 2;
    }
    if (argc == 2) omp_set_num_threads(atoi(argv[1]));
    const long iters = 50000000;
    double best = 0;
    int threads = 1;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = omp_get_wtime();
        float sink = 0;
#pragma omp parallel reduction(+ : sink)
        {
            vec b, c, a[12];
            for (int l = 0; l < LANES; l++) b[l] = 0.999f, c[l] = 1e-4f;
            for (int i = 0; i < 12; i++)
                for (int l = 0; l < LANES; l++) a[i][l] = (float)(i + l);
            for (long k = 0; k < iters; k++) {
                a[0] = a[0] * b + c, a[1] = a[1] * b + c, a[2] = a[2] * b + c, a[3] = a[3] * b + c;
                a[4] = a[4] * b + c, a[5] = a[5] * b + c, a[6] = a[6] * b + c, a[7] = a[7] * b + c;
                a[8] = a[8] * b + c, a[9] = a[9] * b + c, a[10] = a[10] * b + c, a[11] = a[11] * b + c;
            }
            for (int i = 0; i < 12; i++)
                for (int l = 0; l < LANES; l++) sink += a[i][l]; /* keeps the chains live */
#pragma omp single
            threads = omp_get_num_threads();
        }
        double s = omp_get_wtime() - t0;
        double g = (double)iters * 12 * LANES * 2 * threads / s / 1e9;
        if (g > best) best = g;
        if (sink == 1234.5f) putchar(' ');
    }
    printf("peak: %.0f GFLOP/s fp32 on %d thread%s (%d-bit vectors)\n", best, threads, threads == 1 ? "" : "s", LANES * 32);
    return 0;
}
