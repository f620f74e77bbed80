/* One handle of the embedding API shared by 8 pthreads: each calls digits_mlp_infer many times on
 * its own inputs, with 1 and then 2 threads per call, and every result must be bitwise the serial
 * one (or an error, which a serialised handle never returns), and each thread's failing calls leave
 * it its own message in last_error. Then one thread trains while the
 * others infer: every infer must see the weights after a whole number of steps, so its outputs
 * equal those a second handle computed serially after some step k, and k never goes back.
 * Run by tests/cli/embed_test.sh. */
#include "digits_mlp.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { THREADS = 8, CALLS = 200, INPUTS = 16, B = 48, STEPS = 12 };
enum { XS = B * DIGITS_MLP_X_SIZE, PS = B * DIGITS_MLP_PROBS_SIZE };

static digits_mlp *shared;
static float x[INPUTS][XS];
static float ref[STEPS + 1][INPUTS][PS]; /* ref[k][i]: outputs for x[i] after k training steps */
static int32_t label[B];
static _Atomic int wrong, errors;

typedef struct job {
    int id, steps_known; /* steps_known: 0 means the weights never change */
} job;

/* The step whose serial outputs these are, at or after `from`; -1 when none matches. */
static int match(int i, const float *out, int from, int last) {
    for (int k = from; k <= last; k++)
        if (!memcmp(out, ref[k][i], sizeof ref[k][i])) return k;
    return -1;
}

static void *worker(void *arg) {
    const job *j = arg;
    float out[PS];
    int k = 0;
    for (int c = 0; c < CALLS; c++) {
        int i = (j->id * 5 + c) % INPUTS;
        memset(out, 0xff, sizeof out);
        if (digits_mlp_infer(shared, B, x[i], out)) {
            errors++;
            continue;
        }
        if (c % 10 == 0) {
            /* A failing call: this thread reads its own message, not another thread's. */
            char want[64];
            snprintf(want, sizeof want, "batch size %d is negative", -1 - j->id);
            if (!digits_mlp_infer(shared, -1 - j->id, x[i], out) || strcmp(digits_mlp_last_error(shared), want)) {
                if (wrong++ < 5) printf("FAIL: thread %d: infer of batch %d: '%s'\n", j->id, -1 - j->id,
                                        digits_mlp_last_error(shared));
            }
        }
        int got = match(i, out, k, j->steps_known);
        if (got < 0) {
            if (wrong++ < 5) printf("FAIL: thread %d call %d (input %d): outputs match no serial result\n", j->id, c, i);
        } else {
            k = got;
        }
    }
    return NULL;
}

static void *trainer(void *arg) {
    (void)arg;
    for (int s = 0; s < STEPS; s++) {
        if (digits_mlp_train_step(shared, B, x[s % INPUTS], label, NULL)) {
            printf("FAIL: train_step %d: %s\n", s + 1, digits_mlp_last_error(shared));
            errors++;
        }
    }
    return NULL;
}

/* 8 threads infer at once (and, with train, one more trains); returns the failures. */
static int run(int threads_per_call, int train) {
    pthread_t th[THREADS + 1];
    job jobs[THREADS];
    wrong = errors = 0;
    if (digits_mlp_create(&shared, NULL)) { /* a fresh handle: no steps taken */
        printf("FAIL: create: %s\n", digits_mlp_last_error(shared));
        return 1;
    }
    if (digits_mlp_set_threads(shared, threads_per_call)) {
        printf("FAIL: set_threads: %s\n", digits_mlp_last_error(shared));
        return 1;
    }
    for (int t = 0; t < THREADS; t++) {
        jobs[t] = (job){t, train ? STEPS : 0};
        if (pthread_create(&th[t], NULL, worker, &jobs[t])) return 1;
    }
    if (train && pthread_create(&th[THREADS], NULL, trainer, NULL)) return 1;
    for (int t = 0; t < THREADS + (train != 0); t++) pthread_join(th[t], NULL);
    digits_mlp_destroy(shared);
    printf("%d threads x %d calls, %d thread%s per call%s: %d wrong, %d errors\n", THREADS, CALLS, threads_per_call,
           threads_per_call == 1 ? "" : "s", train ? ", training at once" : "", (int)wrong, (int)errors);
    return wrong + errors;
}

int main(void) {
    for (int i = 0; i < INPUTS; i++)
        for (int k = 0; k < XS; k++) x[i][k] = (float)((k * 7 + i * 13) % 17);
    for (int i = 0; i < B; i++) label[i] = (i * 3) % 10;
    /* The serial results: a second handle, trained step by step. */
    digits_mlp *serial;
    if (digits_mlp_create(&serial, NULL)) {
        printf("FAIL: create\n");
        return 1;
    }
    digits_mlp_set_threads(serial, 1);
    for (int k = 0; k <= STEPS; k++) {
        for (int i = 0; i < INPUTS; i++)
            if (digits_mlp_infer(serial, B, x[i], ref[k][i])) return printf("FAIL: serial infer\n"), 1;
        if (k < STEPS && digits_mlp_train_step(serial, B, x[k % INPUTS], label, NULL))
            return printf("FAIL: serial train_step: %s\n", digits_mlp_last_error(serial)), 1;
    }
    digits_mlp_destroy(serial);
    int bad = run(1, 0) + run(2, 0) + run(1, 1) + run(2, 1);
    printf("%s\n", bad ? "FAIL" : "ok");
    return bad != 0;
}
