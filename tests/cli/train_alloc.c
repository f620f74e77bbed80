/* A training step allocates nothing once the first step at a batch has run (docs/codegen.md, "The
 * runtime"): trains tests/train/cases/pipe.pnet through its embedding header under the batch-parallel
 * and the pipelined schedule, on 1 and 2 threads, and counts the runtime's calls to malloc, calloc,
 * realloc, free, posix_memalign and aligned_alloc during steps 2 to 6. The program links libpnetrt.a
 * with -Wl,--wrap for each (tests/cli/train_alloc.sh), so the runtime's and the generated code's calls
 * come here; the OpenMP library's own are not counted. */
#include "pipe.h"

#include <stdio.h>
#include <stdlib.h>

enum { B = 70, STEPS = 6 };

static int counting;
static long calls;

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
int __real_posix_memalign(void **p, size_t align, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);

void *__wrap_malloc(size_t n) {
    calls += counting;
    return __real_malloc(n);
}
void *__wrap_calloc(size_t k, size_t n) {
    calls += counting;
    return __real_calloc(k, n);
}
void *__wrap_realloc(void *p, size_t n) {
    calls += counting;
    return __real_realloc(p, n);
}
void __wrap_free(void *p) {
    calls += counting && p;
    __real_free(p);
}
int __wrap_posix_memalign(void **p, size_t align, size_t n) {
    calls += counting;
    return __real_posix_memalign(p, align, n);
}
void *__wrap_aligned_alloc(size_t align, size_t n) {
    calls += counting;
    return __real_aligned_alloc(align, n);
}

static float X[B * PIPE_X_SIZE];
static int32_t Y[B];

/* Allocation calls during steps 2..STEPS under `schedule` on `threads` threads, or -1 on an error; *first gets
   those of step 1, which makes the trainer (so that a wrapper that caught nothing is noticed). */
static long steps_allocs(const char *schedule, int threads, long *first) {
    pipe *net;
    if (pipe_create(&net, NULL) || pipe_set_threads(net, threads) || pipe_set_schedule(net, schedule)) {
        fprintf(stderr, "create: %s\n", pipe_last_error(net));
        pipe_destroy(net);
        return -1;
    }
    long n = 0;
    for (int s = 0; s < STEPS; s++) {
        float loss;
        calls = 0;
        counting = 1;
        int rc = pipe_train_step(net, B, X, Y, &loss);
        counting = 0;
        if (s == 0) *first = calls;
        else n += calls;
        if (rc) {
            fprintf(stderr, "train_step: %s\n", pipe_last_error(net));
            pipe_destroy(net);
            return -1;
        }
    }
    pipe_destroy(net);
    return n;
}

int main(void) {
    for (int i = 0; i < B * PIPE_X_SIZE; i++) X[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    for (int i = 0; i < B; i++) Y[i] = i % 5;
    static const char *const schedules[] = {"batch", "pipeline"};
    int bad = 0;
    for (int k = 0; k < 2; k++)
        for (int threads = 1; threads <= 2; threads++) {
            long first = 0, n = steps_allocs(schedules[k], threads, &first);
            printf("%s, %d thread%s: %ld allocation calls in step 1, %ld in steps 2-%d\n", schedules[k], threads,
                   threads > 1 ? "s" : "", first, n, STEPS);
            bad |= n != 0 || first == 0;
        }
    return bad;
}
