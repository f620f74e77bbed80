/* Calls the embedding API of two generated headers the way a careless program would: NULL
 * handles and buffers, out-of-range batches and settings, failed creates used anyway, unwritable
 * and truncated files, create/destroy in a loop. Every failure must return non-zero with a
 * one-line reason from *_last_error, and change nothing: the outputs afterwards are the same.
 * tests/cli/embed_test.sh builds it against digits_mlp.h (trains) and parallel_small.h
 * (tests/e2e/cases/parallel_small.pnet: pipeline stages, no train block) and runs it, also
 * under valgrind when it is installed. */
#include "digits_mlp.h"
#include "parallel_small.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* Bytes of heap in use, where the C library says (glibc); 0 elsewhere. */
static size_t heap_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    return mallinfo2().uordblks;
#else
    return 0;
#endif
}

static int failures, checks;

/* A call that must fail: non-zero, with a non-empty one-line message. */
static void expect_fail(int rc, const char *err, const char *what) {
    checks++;
    if (rc == 0) {
        printf("FAIL: %s was accepted\n", what);
        failures++;
    } else if (!err || !*err || strchr(err, '\n')) {
        printf("FAIL: %s: bad message '%s'\n", what, err ? err : "(null)");
        failures++;
    } else {
        printf("rejected %s: %s\n", what, err);
    }
}

static void expect_ok(int rc, const char *err, const char *what) {
    checks++;
    if (rc != 0) {
        printf("FAIL: %s: %s\n", what, err ? err : "(null)");
        failures++;
    }
}

enum { B = 3, PX = PARALLEL_SMALL_X_SIZE };

static float x[B * DIGITS_MLP_X_SIZE], probs[B * DIGITS_MLP_PROBS_SIZE], ref[B * DIGITS_MLP_PROBS_SIZE];
static int32_t label[B];
static float px[B * PX], py[B * PARALLEL_SMALL_Y_SIZE], ph[B * PARALLEL_SMALL_HIDDEN_SIZE];
static float pref[B * PARALLEL_SMALL_Y_SIZE];

/* The outputs of the last infer equal those of the first. */
static void expect_same(const float *a, const float *b, size_t n, const char *what) {
    checks++;
    if (memcmp(a, b, n * sizeof *a)) {
        printf("FAIL: outputs changed after %s\n", what);
        failures++;
    }
}

static void null_handles(void) {
    float loss;
    int shares[2] = {1, 1};
    expect_fail(digits_mlp_create(NULL, NULL), digits_mlp_last_error(NULL), "create(NULL)");
    expect_fail(digits_mlp_infer(NULL, B, x, probs), digits_mlp_last_error(NULL), "infer(NULL)");
    expect_fail(digits_mlp_set_threads(NULL, 2), digits_mlp_last_error(NULL), "set_threads(NULL)");
    expect_fail(digits_mlp_set_replicas(NULL, 2), digits_mlp_last_error(NULL), "set_replicas(NULL)");
    expect_fail(digits_mlp_set_microbatches(NULL, 2), digits_mlp_last_error(NULL), "set_microbatches(NULL)");
    expect_fail(digits_mlp_set_stage_threads(NULL, shares, 2), digits_mlp_last_error(NULL), "set_stage_threads(NULL)");
    expect_fail(digits_mlp_set_schedule(NULL, "batch"), digits_mlp_last_error(NULL), "set_schedule(NULL)");
    expect_fail(digits_mlp_save(NULL, "x.safetensors"), digits_mlp_last_error(NULL), "save(NULL)");
    expect_fail(digits_mlp_load(NULL, "x.safetensors"), digits_mlp_last_error(NULL), "load(NULL)");
    expect_fail(digits_mlp_train_step(NULL, B, x, label, &loss), digits_mlp_last_error(NULL), "train_step(NULL)");
    expect_fail(digits_mlp_set_lr(NULL, 0.1), digits_mlp_last_error(NULL), "set_lr(NULL)");
    digits_mlp_destroy(NULL);
    parallel_small_destroy(NULL);
}

/* A handle whose create failed can still be asked for its error, and every call on it fails. */
static void failed_create(const char *path, const char *what) {
    digits_mlp *net = NULL;
    float loss;
    char msg[600];
    int rc = digits_mlp_create(&net, path);
    expect_fail(rc, digits_mlp_last_error(net), what);
    if (!net) return;
    snprintf(msg, sizeof msg, "infer after %s", what);
    expect_fail(digits_mlp_infer(net, B, x, probs), digits_mlp_last_error(net), msg);
    snprintf(msg, sizeof msg, "train_step after %s", what);
    expect_fail(digits_mlp_train_step(net, B, x, label, &loss), digits_mlp_last_error(net), msg);
    snprintf(msg, sizeof msg, "save after %s", what);
    expect_fail(digits_mlp_save(net, "never.safetensors"), digits_mlp_last_error(net), msg);
    snprintf(msg, sizeof msg, "load after %s", what);
    expect_fail(digits_mlp_load(net, "never.safetensors"), digits_mlp_last_error(net), msg);
    digits_mlp_destroy(net);
}

static void infer_batches(digits_mlp *net) {
    expect_ok(digits_mlp_infer(net, B, x, ref), digits_mlp_last_error(net), "infer");
    expect_ok(digits_mlp_infer(net, 0, x, probs), digits_mlp_last_error(net), "infer of batch 0");
    expect_fail(digits_mlp_infer(net, -1, x, probs), digits_mlp_last_error(net), "infer of batch -1");
    expect_fail(digits_mlp_infer(net, INT64_MIN, x, probs), digits_mlp_last_error(net), "infer of batch INT64_MIN");
    expect_fail(digits_mlp_infer(net, INT64_MAX, x, probs), digits_mlp_last_error(net), "infer of batch INT64_MAX");
    expect_fail(digits_mlp_infer(net, INT64_C(1) << 60, x, probs), digits_mlp_last_error(net), "infer of batch 2^60");
    expect_fail(digits_mlp_infer(net, B, NULL, probs), digits_mlp_last_error(net), "infer with a NULL input");
    expect_fail(digits_mlp_infer(net, B, x, NULL), digits_mlp_last_error(net), "infer with a NULL output");
    expect_ok(digits_mlp_infer(net, B, x, probs), digits_mlp_last_error(net), "infer");
    expect_same(ref, probs, B * DIGITS_MLP_PROBS_SIZE, "bad infer calls");
}

static void settings(digits_mlp *net) {
    expect_fail(digits_mlp_set_threads(net, 0), digits_mlp_last_error(net), "0 threads");
    expect_fail(digits_mlp_set_threads(net, -5), digits_mlp_last_error(net), "-5 threads");
    expect_fail(digits_mlp_set_threads(net, 1 << 30), digits_mlp_last_error(net), "2^30 threads");
    expect_fail(digits_mlp_set_replicas(net, 0), digits_mlp_last_error(net), "0 replicas");
    expect_fail(digits_mlp_set_microbatches(net, 0), digits_mlp_last_error(net), "0 micro-batches");
    expect_fail(digits_mlp_set_schedule(net, NULL), digits_mlp_last_error(net), "a NULL schedule");
    expect_fail(digits_mlp_set_schedule(net, ""), digits_mlp_last_error(net), "an empty schedule");
    expect_fail(digits_mlp_set_lr(net, -1), digits_mlp_last_error(net), "learning rate -1");
    expect_fail(digits_mlp_set_lr(net, 0.0 / 0.0), digits_mlp_last_error(net), "learning rate NaN");
    expect_fail(digits_mlp_set_lr(net, 1.0 / 0.0), digits_mlp_last_error(net), "learning rate inf");
    /* Thread counts changed between calls, and more threads than cores: the same outputs. */
    int counts[] = {1, 2, 3, 7, 2, 1};
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        expect_ok(digits_mlp_set_threads(net, counts[i]), digits_mlp_last_error(net), "set_threads");
        expect_ok(digits_mlp_infer(net, B, x, probs), digits_mlp_last_error(net), "infer");
        expect_same(ref, probs, B * DIGITS_MLP_PROBS_SIZE, "set_threads");
    }
}

static void training(digits_mlp *net) {
    float loss = -1;
    expect_fail(digits_mlp_train_step(net, 0, x, label, &loss), digits_mlp_last_error(net), "train_step of batch 0");
    expect_fail(digits_mlp_train_step(net, -1, x, label, &loss), digits_mlp_last_error(net), "train_step of batch -1");
    expect_fail(digits_mlp_train_step(net, INT64_MAX, x, label, &loss), digits_mlp_last_error(net),
                "train_step of batch INT64_MAX");
    expect_fail(digits_mlp_train_step(net, INT64_C(1) << 40, x, label, &loss), digits_mlp_last_error(net),
                "train_step of batch 2^40");
    expect_fail(digits_mlp_train_step(net, B, NULL, label, &loss), digits_mlp_last_error(net),
                "train_step with NULL x");
    expect_fail(digits_mlp_train_step(net, B, x, NULL, &loss), digits_mlp_last_error(net),
                "train_step with NULL labels");
    int32_t bad[B] = {0, 10, 1};
    expect_fail(digits_mlp_train_step(net, B, x, bad, &loss), digits_mlp_last_error(net), "train_step with label 10");
    expect_ok(digits_mlp_infer(net, B, x, probs), digits_mlp_last_error(net), "infer");
    expect_same(ref, probs, B * DIGITS_MLP_PROBS_SIZE, "rejected train steps");
    expect_ok(digits_mlp_train_step(net, B, x, label, NULL), digits_mlp_last_error(net), "train_step with NULL loss");
    expect_ok(digits_mlp_set_threads(net, 2), digits_mlp_last_error(net), "set_threads");
    expect_ok(digits_mlp_train_step(net, B, x, label, &loss), digits_mlp_last_error(net), "train_step on 2 threads");
}

static void files(digits_mlp *net) {
    expect_ok(digits_mlp_save(net, "good.safetensors"), digits_mlp_last_error(net), "save");
    expect_ok(digits_mlp_infer(net, B, x, ref), digits_mlp_last_error(net), "infer");
    expect_fail(digits_mlp_save(net, NULL), digits_mlp_last_error(net), "save to NULL");
    expect_fail(digits_mlp_save(net, ""), digits_mlp_last_error(net), "save to ''");
    expect_fail(digits_mlp_load(net, ""), digits_mlp_last_error(net), "load of ''");
    expect_fail(digits_mlp_save(net, "/nonexistent/dir/w.safetensors"), digits_mlp_last_error(net),
                "save into a missing directory");
    expect_fail(digits_mlp_save(net, "."), digits_mlp_last_error(net), "save onto a directory");
    expect_fail(digits_mlp_save(net, "/proc/version"), digits_mlp_last_error(net), "save onto /proc/version");
    expect_fail(digits_mlp_load(net, NULL), digits_mlp_last_error(net), "load of NULL");
    expect_fail(digits_mlp_load(net, "missing.safetensors"), digits_mlp_last_error(net), "load of a missing file");
    expect_fail(digits_mlp_load(net, "."), digits_mlp_last_error(net), "load of a directory");
    expect_fail(digits_mlp_load(net, "/dev/null"), digits_mlp_last_error(net), "load of /dev/null");
    /* Truncated at every length of the header and at a few of the data. */
    FILE *f = fopen("good.safetensors", "rb");
    static unsigned char buf[1 << 20];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    checks++;
    if (n < 100) {
        printf("FAIL: good.safetensors holds %zu bytes\n", n);
        failures++;
        return;
    }
    size_t hdr = 8 + (size_t)buf[0] + ((size_t)buf[1] << 8);
    int truncated_ok = 1;
    for (size_t len = 0; len < n; len += len < hdr + 8 ? 1 : (n - hdr) / 7 + 1) {
        FILE *t = fopen("trunc.safetensors", "wb");
        if (!t || fwrite(buf, 1, len, t) != len || fclose(t)) return;
        const char *e;
        if (digits_mlp_load(net, "trunc.safetensors") == 0 || !*(e = digits_mlp_last_error(net)) || strchr(e, '\n')) {
            printf("FAIL: load of the checkpoint cut to %zu bytes: '%s'\n", len, digits_mlp_last_error(net));
            truncated_ok = 0;
        }
    }
    checks++;
    failures += !truncated_ok;
    if (truncated_ok) printf("rejected the checkpoint cut at every length: %s\n", digits_mlp_last_error(net));
    expect_ok(digits_mlp_infer(net, B, x, probs), digits_mlp_last_error(net), "infer");
    expect_same(ref, probs, B * DIGITS_MLP_PROBS_SIZE, "failed loads");
    expect_ok(digits_mlp_load(net, "good.safetensors"), digits_mlp_last_error(net), "load");
}

/* The network without a train block, with pipeline stages. */
static void untrained(void) {
    parallel_small *p = NULL;
    int shares[2] = {1, 2}, bad[2] = {0, 1};
    expect_ok(parallel_small_create(&p, NULL), parallel_small_last_error(p), "create parallel_small");
    if (!p) return;
    expect_ok(parallel_small_infer(p, B, px, pref, ph), parallel_small_last_error(p), "infer");
    expect_fail(parallel_small_set_stage_threads(p, shares, 3), parallel_small_last_error(p),
                "3 stage shares for 2 stages");
    expect_fail(parallel_small_set_stage_threads(p, shares, -1), parallel_small_last_error(p), "-1 stage shares");
    expect_fail(parallel_small_set_stage_threads(p, bad, 2), parallel_small_last_error(p), "a stage share of 0");
    expect_fail(parallel_small_set_microbatches(p, 1 << 20), parallel_small_last_error(p), "2^20 micro-batches");
    expect_fail(parallel_small_infer(p, INT64_MAX, px, py, ph), parallel_small_last_error(p),
                "infer of batch INT64_MAX");
    const char *schedules[] = {"pipeline", "hybrid", "batch", "serial", "pipeline"};
    for (int i = 0; i < 5; i++) {
        expect_ok(parallel_small_set_schedule(p, schedules[i]) || parallel_small_set_threads(p, 1 + i % 3) ||
                      parallel_small_set_stage_threads(p, i % 2 ? shares : NULL, 2) ||
                      parallel_small_set_microbatches(p, 1 + i) || parallel_small_infer(p, B, px, py, ph),
                  parallel_small_last_error(p), schedules[i]);
        expect_same(pref, py, B * PARALLEL_SMALL_Y_SIZE, schedules[i]);
    }
    expect_ok(parallel_small_save(p, "ps.safetensors"), parallel_small_last_error(p), "save parallel_small");
    expect_ok(parallel_small_load(p, "ps.safetensors"), parallel_small_last_error(p), "load parallel_small");
    digits_mlp *d = NULL;
    int rc = digits_mlp_create(&d, "ps.safetensors");
    expect_fail(rc, digits_mlp_last_error(d), "another network's weights");
    digits_mlp_destroy(d);
    expect_fail(parallel_small_load(p, "good.safetensors"), parallel_small_last_error(p),
                "load of another network's checkpoint");
    parallel_small_destroy(p);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 100;
    for (int i = 0; i < B * DIGITS_MLP_X_SIZE; i++)
        x[i] = (float)((i * 7) % 17);
    for (int i = 0; i < B * PX; i++)
        px[i] = (float)((i * 5) % 11) / 11.0f;
    for (int i = 0; i < B; i++)
        label[i] = i;
    null_handles();
    failed_create("missing.safetensors", "create with a missing file");
    failed_create("/dev/null", "create with an empty file");
    failed_create(".", "create with a directory");
    /* glibc counts the chunks its per-thread cache keeps (7 of each size) as in use, and OpenMP
     * makes its thread teams on first use: the heap settles after a few rounds, then must stay. */
    enum { SETTLE = 20 };
    size_t heap_settled = 0;
    for (int i = 0; i < rounds; i++) {
        if (i == SETTLE) heap_settled = heap_in_use();
        digits_mlp *net = NULL;
        if (digits_mlp_create(&net, NULL) || digits_mlp_infer(net, B, x, probs)) {
            printf("FAIL: create/destroy round %d: %s\n", i, digits_mlp_last_error(net));
            digits_mlp_destroy(net);
            return 1;
        }
        if (i % 2) digits_mlp_train_step(net, B, x, label, NULL); /* with and without a trainer */
        digits_mlp_destroy(net);
    }
    /* Create and destroy give back all they took: the heap does not grow with the rounds. */
    size_t heap = heap_in_use();
    checks++;
    if (rounds > SETTLE && heap > heap_settled) {
        printf("FAIL: the heap grew from %zu to %zu bytes over %d create/destroy rounds\n", heap_settled, heap,
               rounds - SETTLE);
        failures++;
    }
    digits_mlp *net = NULL;
    if (digits_mlp_create(&net, NULL)) {
        printf("FAIL: create: %s\n", digits_mlp_last_error(net));
        return 1;
    }
    infer_batches(net);
    settings(net);
    training(net);
    files(net);
    digits_mlp_destroy(net);
    untrained();
    printf("%d create/destroy rounds; %d checks, %d failed\n", rounds, checks, failures);
    return failures != 0;
}
