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
    expect_ok(digits_mlp_infer(net, 0, x, NULL), digits_mlp_last_error(net), "infer of batch 0 with a NULL output");
    expect_ok(digits_mlp_infer(net, 0, NULL, NULL), digits_mlp_last_error(net), "infer of batch 0 with NULL buffers");
    expect_fail(digits_mlp_infer(NULL, 0, x, probs), digits_mlp_last_error(NULL), "infer(NULL) of batch 0");
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
    /* Stage shares are checked even where there are no stages to share them (digits_mlp). */
    int shares[2] = {1, 2}, negative[2] = {1, -2};
    expect_fail(digits_mlp_set_stage_threads(net, shares, -1), digits_mlp_last_error(net), "-1 stage shares");
    expect_fail(digits_mlp_set_stage_threads(net, negative, 2), digits_mlp_last_error(net), "a stage share of -2");
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

/* Writes checkpoint buf[0..n) to path with metadata value `key` replaced by `value` (or, when
 * rename is set, the key itself renamed to `value`, so the key is missing); 0 on success. */
static int edit_meta(const unsigned char *buf, size_t n, const char *key, const char *value, int rename,
                     const char *path) {
    size_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    static char head[1 << 16];
    if (hlen + 8 > n || hlen >= sizeof head - 256) return 1;
    memcpy(head, buf + 8, hlen);
    head[hlen] = 0;
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    char *at = strstr(head, pat);
    if (!at) return 1;
    char *from = rename ? at + 1 : at + strlen(pat);
    char *to = rename ? from + strlen(key) : strchr(from, '"');
    static char out[1 << 16];
    int len = snprintf(out, sizeof out, "%.*s%s%s", (int)(from - head), head, value, to);
    while (len > 0 && out[len - 1] == ' ') len--; /* the old padding */
    while (len % 8) out[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)((uint64_t)len >> (8 * i));
    int bad = fwrite(le, 1, 8, f) != 8 || fwrite(out, 1, (size_t)len, f) != (size_t)len ||
              fwrite(buf + 8 + hlen, 1, n - 8 - hlen, f) != n - 8 - hlen;
    return fclose(f) || bad;
}

/* Every metadata field of a checkpoint is checked as the option that sets it: a bad one fails the
 * load with one line naming the file and the field, and leaves the network as it was. */
static void checkpoint_meta(digits_mlp *net, const unsigned char *buf, size_t n) {
    static const struct {
        const char *key, *value;
        int rename;
    } cases[] = {
        {"lr", "nan", 0}, {"lr", "-1", 0}, {"lr", "0", 0}, {"lr", "inf", 0}, {"lr", "", 0}, {"lr", " 0.1", 0},
        {"lr", "0.1x", 0}, {"lr", "1e999", 0},
        {"epoch", "-3", 0}, {"epoch", "99999999999999999999", 0}, {"epoch", "1e3", 0}, {"epoch", "+1", 0},
        {"epoch", "0x10", 0}, {"epoch", "1000001", 0}, {"epoch", "", 0}, {"epoch", "epoxh", 1},
        {"batch", "-1", 0}, {"batch", "18446744073709551616", 0}, {"batch", "1.0", 0},
        {"step", "-1", 0}, {"step", "1.5", 0}, {"step", "9223372036854775807", 0}, {"step", "stex", 1},
        {"seed", "-1", 0}, {"seed", "-0", 0}, {"seed", "18446744073709551615", 0}, {"seed", " 7", 0},
        {"batch_size", "-4", 0}, {"batch_size", "16777217", 0}, {"shuffle", "2", 0}, {"shuffle", "-2", 0},
        {"optimizer", "rmsprop", 0}, {"optimizer", "adam", 0}, {"optimizer", "", 0},
    };
    char msg[160], want[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(msg, sizeof msg, "load of a checkpoint whose %s is %s'%s'", cases[i].key, cases[i].rename ? "renamed " : "",
                 cases[i].value);
        checks++;
        if (edit_meta(buf, n, cases[i].key, cases[i].value, cases[i].rename, "meta.safetensors")) {
            printf("FAIL: %s: cannot write the file\n", msg);
            failures++;
            continue;
        }
        int rc = digits_mlp_load(net, "meta.safetensors");
        const char *e = digits_mlp_last_error(net);
        expect_fail(rc, e, msg);
        snprintf(want, sizeof want, "metadata field '%s'", cases[i].key);
        if (rc && (!strstr(e, "meta.safetensors") || (!strstr(e, want) && strcmp(cases[i].key, "optimizer")))) {
            printf("FAIL: %s: the message names neither the file nor the field\n", msg);
            failures++;
        }
    }
    expect_ok(digits_mlp_infer(net, B, x, probs), digits_mlp_last_error(net), "infer");
    expect_same(ref, probs, B * DIGITS_MLP_PROBS_SIZE, "loads with bad metadata");
    /* Good values: accepted. */
    expect_ok(edit_meta(buf, n, "epoch", "1000000", 0, "meta.safetensors") || digits_mlp_load(net, "meta.safetensors"),
              digits_mlp_last_error(net), "load of a checkpoint at epoch 1000000");
    expect_ok(edit_meta(buf, n, "lr", "1e-3", 0, "meta.safetensors") || digits_mlp_load(net, "meta.safetensors"),
              digits_mlp_last_error(net), "load of a checkpoint with lr 1e-3");
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
    checkpoint_meta(net, buf, n);
    expect_ok(digits_mlp_infer(net, B, x, probs), digits_mlp_last_error(net), "infer");
    expect_same(ref, probs, B * DIGITS_MLP_PROBS_SIZE, "failed loads");
    expect_ok(digits_mlp_load(net, "good.safetensors"), digits_mlp_last_error(net), "load");
}

/* The network without a train block, with pipeline stages. */
static void untrained(void) {
    parallel_small *p = NULL;
    int shares[2] = {1, 2}, bad[2] = {0, 1}, negative[2] = {2, -1};
    expect_ok(parallel_small_create(&p, NULL), parallel_small_last_error(p), "create parallel_small");
    if (!p) return;
    expect_ok(parallel_small_infer(p, B, px, pref, ph), parallel_small_last_error(p), "infer");
    expect_fail(parallel_small_set_stage_threads(p, shares, 3), parallel_small_last_error(p),
                "3 stage shares for 2 stages");
    expect_fail(parallel_small_set_stage_threads(p, shares, -1), parallel_small_last_error(p), "-1 stage shares");
    expect_fail(parallel_small_set_stage_threads(p, bad, 2), parallel_small_last_error(p), "a stage share of 0");
    expect_fail(parallel_small_set_stage_threads(p, negative, 2), parallel_small_last_error(p), "a stage share of -1");
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
