/* The generated backward kernels against their plain twin (ir/reference.c): every op's
 * network is compiled in-process, one training step at learning rate 0 runs on 1 and 3 threads
 * at batch 1, 7 and 37 (two chunks), and the loss and every trained parameter's gradient must
 * match the reference's, computed in double. Widths are odd, so vector loops run their tails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jit_util.h"
#include "train_util.h"
#include "ir/reference.h"

/* |jit - ref| <= RTOL * max(|jit|, |ref|) + ATOL: float32 kernels against double. Gradients are
 * sums of at most a few thousand terms of size about 1, so float rounding stays near 1e-6
 * relative; a gradient that cancels to about 0 keeps an absolute error below ATOL. */
#define RTOL 1e-4
#define ATOL 1e-5
#define SEED 7

static bool verbose;
static double worst_seen; /* the largest error seen, as a share of the tolerance */

static bool close_enough(double a, double b) {
    return fabs(a - b) <= RTOL * fmax(fabs(a), fabs(b)) + ATOL;
}

/* Compares the trained parameters' gradient g with the reference; on the first tensor with a
 * mismatch, writes its worst element to msg and returns false. */
static bool grads_match(const pnetrt_desc *d, const float *g, const double *ref, char *msg, size_t len) {
    for (int64_t p = 0; p < d->nparams; p++) {
        const pnetrt_tensor_desc *t = &d->params[p];
        if (!t->trainable) continue;
        int64_t worst = -1, bad = 0, n = pnetrt_sample_elems(t);
        double worst_err = 0;
        for (int64_t j = 0; j < n; j++) {
            double a = g[t->offset + j], b = ref[t->offset + j];
            double e = fabs(a - b) / (RTOL * fmax(fabs(a), fabs(b)) + ATOL);
            if (close_enough(a, b)) {
                worst_seen = fmax(worst_seen, e);
                continue;
            }
            bad++;
            if (!(e <= worst_err)) worst_err = e, worst = j;
        }
        if (bad) {
            snprintf(msg, len, "%s: %lld of %lld elements differ; worst [%lld]: kernel %.9g, reference %.9g", t->name,
                     (long long)bad, (long long)n, (long long)worst, g[t->offset + worst], ref[t->offset + worst]);
            return false;
        }
    }
    return true;
}

/* The largest trained gradient element, for the sensitivity check. */
static int64_t largest(const pnetrt_desc *d, const double *ref) {
    int64_t best = -1;
    for (int64_t p = 0; p < d->nparams; p++) {
        const pnetrt_tensor_desc *t = &d->params[p];
        for (int64_t j = 0; t->trainable && j < pnetrt_sample_elems(t); j++)
            if (best < 0 || fabs(ref[t->offset + j]) > fabs(ref[best])) best = t->offset + j;
    }
    return best;
}

static const int64_t batches[] = {1, 7, 37};
static const int thread_counts[] = {1, 3};

/* Compiles src at opt_level; at each batch size up to max_batch and each thread count, one step at
 * learning rate 0 must give the reference's loss and gradient. */
static void check_twin_upto(const char *src, int opt_level, int64_t max_batch) {
    compiled c;
    compile_net(src, false, opt_level, &c);
    const pnetrt_desc *d = c.desc;
    assert_non_null(d->train);
    size_t nf = (size_t)d->param_floats + 1;
    double *ref = malloc(nf * sizeof(double));
    float *params = malloc(nf * sizeof(float));
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        int64_t batch = batches[b];
        if (batch > max_batch) break;
        void *ins[16];
        int nin = make_inputs(d, batch, ins);
        const void *const *in = (const void *const *)ins;
        double rloss = NAN;
        for (size_t k = 0; k < sizeof thread_counts / sizeof thread_counts[0]; k++) {
            pnetrt_model *m = make_model(d, thread_counts[k], SEED);
            if (k == 0) {
                /* The step updates batchnorm's running statistics: keep the weights it starts from. */
                memcpy(params, pnetrt_params_mut(m), (size_t)d->param_floats * sizeof(float));
                char err[256];
                if (!pn_reference_train_grad(c.g, batch, in, params, pnetrt_train_seed(m), 1, &rloss, ref, err,
                                             sizeof err))
                    fail_msg("%s: reference: %s", d->name, err);
            }
            float loss = NAN;
            assert_int_equal(pnetrt_set_train_steps(m, 0), 0);
            if (pnetrt_train_step(m, batch, in, &loss)) fail_msg("train step: %s", pnetrt_last_error(m));
            const float *g = pnetrt_train_grad(m);
            assert_non_null(g);
            if (verbose)
                printf("%s batch %lld threads %d: loss %.8g, reference %.8g\n", d->name, (long long)batch,
                       thread_counts[k], loss, rloss);
            if (!close_enough(loss, rloss))
                fail_msg("%s batch %lld threads %d: loss %.9g, reference %.9g", d->name, (long long)batch,
                         thread_counts[k], loss, rloss);
            char msg[512];
            if (!grads_match(d, g, ref, msg, sizeof msg))
                fail_msg("%s batch %lld threads %d: %s", d->name, (long long)batch, thread_counts[k], msg);
            /* The comparison must see a 0.1% error in the largest gradient element. */
            int64_t j = largest(d, ref);
            if (k == 0 && j >= 0) {
                float *wrong = malloc(nf * sizeof(float));
                memcpy(wrong, g, (size_t)d->param_floats * sizeof(float));
                wrong[j] *= 1.001f;
                assert_false(grads_match(d, wrong, ref, msg, sizeof msg));
                free(wrong);
            }
            pnetrt_destroy(m);
        }
        for (int i = 0; i < nin; i++)
            free(ins[i]);
    }
    if (verbose) printf("%s: worst error so far %.1f%% of the tolerance\n", d->name, 100 * worst_seen);
    free(ref);
    free(params);
    release(&c);
}

static void check_twin(const char *src, int opt_level) {
    check_twin_upto(src, opt_level, INT64_MAX);
}

/* Networks with an input that has no batch axis (w : f32[6, 3]) run at every batch too: such an
 * input is shared by all chunks (an earlier tptr offset it per chunk; this caught it). */
#define UNBATCHED_INPUT_MAX_BATCH INT64_MAX

/* Most networks end in three logits and cross_entropy with plain sgd. */
#define CE " train { label : i32[batch]; loss = cross_entropy(logits, label); optimizer = sgd(lr = 0.1); } }"

static void test_dense(void **s) {
    (void)s;
    check_twin("network r_dense { input x : f32[batch, 4, 5]; h = dense(x, 6); y = dense(h, 4, bias = false);"
               " output logits = dense(flatten(y), 3);" CE,
               0);
}

static void test_conv2d(void **s) {
    (void)s;
    check_twin("network r_conv { input x : f32[batch, 2, 7, 6]; c = conv2d(x, 3, 3, padding = 1);"
               " d = conv2d(c, 4, [3, 2], stride = 2, padding = [1, 0]); e = conv2d(d, 2, 1, bias = false);"
               " output logits = dense(flatten(e), 3);" CE,
               0);
    check_twin(
        "network r_conv2 { input x : f32[batch, 3, 8, 9]; c = conv2d(x, 4, [2, 3], stride = [2, 1], padding = [0, 1]);"
        " d = conv2d(c, 3, 3, stride = 2, padding = 1); e = conv2d(d, 2, [2, 5], padding = 2);"
        " output logits = dense(flatten(e), 3);" CE,
        3);
    check_twin("network r_conv3 { input x : f32[batch, 2, 9, 8]; c = conv2d(x, 3, 1, stride = 2);"
               " d = conv2d(c, 4, 2, stride = 3, padding = 1); output logits = dense(flatten(d), 3);" CE,
               0);
}

static void test_pooling(void **s) {
    (void)s;
    check_twin("network r_maxpool { input x : f32[batch, 2, 7, 7]; c = conv2d(x, 3, 3, padding = 1);"
               " p = maxpool2d(c, 2); q = maxpool2d(c, 3, stride = 2, padding = 1);"
               " output logits = dense(flatten(p), 3) + dense(flatten(q), 3);" CE,
               0);
    check_twin("network r_avgpool { input x : f32[batch, 2, 7, 7]; c = conv2d(x, 3, 3, padding = 1);"
               " p = avgpool2d(c, 2); q = avgpool2d(c, 3, stride = 2, padding = 1);"
               " output logits = dense(flatten(p), 3) + dense(flatten(q), 3);" CE,
               3);
    check_twin("network r_gap { input x : f32[batch, 2, 5, 6]; c = conv2d(x, 4, 3, padding = 1);"
               " p = global_avgpool(c); output logits = dense(flatten(p), 3);" CE,
               0);
}

static void test_activations(void **s) {
    (void)s;
    check_twin("network r_act { input x : f32[batch, 5]; h = dense(x, 7);"
               " y = relu(h) + leaky_relu(h, 0.2) + sigmoid(h) + tanh(h) + gelu(h) + silu(h);"
               " output logits = dense(y, 3);" CE,
               0);
}

/* silu fused into dense's epilogue at inference; in training its own kernel and backward. */
static void test_silu(void **s) {
    (void)s;
    check_twin("network r_silu { input x : f32[batch, 3, 9]; h = silu(dense(x, 11)); y = silu(h * 3);"
               " output logits = dense(flatten(y), 3);" CE,
               3);
}

/* elu and softplus fused into conv2d's and dense's epilogues at inference; in training their own
 * kernels and backward, softplus across its threshold 20. */
static void test_elu_softplus(void **s) {
    (void)s;
    check_twin("network r_elu { input x : f32[batch, 2, 5, 4]; c = elu(conv2d(x, 3, 3, padding = 1));"
               " h = softplus(dense(flatten(c), 11)); y = elu(h * 3 - 2, alpha = 0.5) + softplus(h * 20 - 10);"
               " output logits = dense(y, 3);" CE,
               3);
}

/* prelu's slopes per channel of NCHW and per feature of [batch, F], and frozen ones: the gradient
 * still flows through to the layers before. */
static void test_prelu(void **s) {
    (void)s;
    check_twin("network r_prelu { input x : f32[batch, 2, 5, 4]; c = prelu(conv2d(x, 3, 3, padding = 1));"
               " h = prelu(dense(flatten(c), 9)); f = prelu(dense(h, 5), frozen = true);"
               " output logits = dense(f, 3);" CE,
               0);
}

/* Without weights, prelu's slopes start at 0.25 (nn.PReLU's init, PNETRT_INIT_QUARTER). */
static void test_prelu_init(void **s) {
    (void)s;
    compiled c;
    compile_net("network r_prelu0 { input x : f32[batch, 5]; output logits = prelu(dense(x, 3));" CE, false, 0, &c);
    pnetrt_model *m = make_model(c.desc, 1, SEED);
    const pnetrt_desc *d = c.desc;
    int found = 0;
    for (int64_t p = 0; p < d->nparams; p++) {
        if (strcmp(d->params[p].name, "logits.weight") != 0) continue;
        const float *w = pnetrt_params_mut(m) + d->params[p].offset;
        for (int k = 0; k < 3; k++) assert_true(w[k] == 0.25f);
        found = 1;
    }
    assert_true(found);
    pnetrt_destroy(m);
    release(&c);
}

/* pad's gradient is the slice of dy inside the padding, into a conv2d's and an avgpool2d's input. */
static void test_pad(void **s) {
    (void)s;
    check_twin("network r_pad { input x : f32[batch, 2, 5, 4]; c = conv2d(x, 3, 3); p = pad(c, [0, 2, 1, 3]);"
               " d = conv2d(pad(relu(p), [1, 1]), 2, 3, stride = 2); q = avgpool2d(pad(c, [1, 0]), 2);"
               " output logits = dense(flatten(d), 3) + dense(flatten(q), 3);" CE,
               0);
}

/* Grouped conv2d: two groups, depthwise with stride and padding, a depthwise multiplier without
 * bias; the data and weight gradients per group. */
static void test_grouped_conv(void **s) {
    (void)s;
    check_twin("network r_gconv { input x : f32[batch, 4, 6, 5]; a = conv2d(x, 6, 3, padding = 1, groups = 2);"
               " b = conv2d(relu(a), 6, 3, stride = 2, padding = 1, groups = 6);"
               " c = conv2d(b, 12, [2, 3], bias = false, groups = 6); d = conv2d(x, 16, 3, groups = 2);"
               " output logits = dense(flatten(c), 3) + dense(flatten(d), 3);" CE,
               0);
}

static void test_dropout(void **s) {
    (void)s;
    check_twin("network r_dropout { input x : f32[batch, 2, 6, 6]; c = conv2d(x, 3, 3); p = avgpool2d(c, 2);"
               " h = tanh(dense(flatten(p), 6)); output logits = dense(dropout(h, 0.2), 3);" CE,
               3);
}

static void test_softmax(void **s) {
    (void)s;
    check_twin("network r_softmax { input x : f32[batch, 4, 5]; h = dense(x, 6);"
               " y = softmax(h) + softmax(h, axis = 1) + log_softmax(h) + log_softmax(h, axis = 1);"
               " output logits = dense(flatten(y), 3);" CE,
               0);
    check_twin("network r_softmax4 { input x : f32[batch, 2, 5, 4]; c = conv2d(x, 3, 3, padding = 1);"
               " y = softmax(c, axis = 2) + log_softmax(c, axis = 1); output logits = dense(flatten(y), 3);" CE,
               0);
}

/* Decoder attention scores: rows of 5 queries over 5 and 7 keys. */
static void test_causal_softmax(void **s) {
    (void)s;
    check_twin("network r_causal { input x : f32[batch, 5, 4]; q = dense(x, 6); k = dense(x, 6);"
               " p = causal_softmax(matmul(q, transpose(k, [0, 2, 1]))); a = matmul(p, dense(x, 3));"
               " w = causal_softmax(dense(x, 7) * 3);"
               " output logits = dense(flatten(a), 3) + dense(flatten(w), 3);" CE,
               0);
}

static void test_layernorm(void **s) {
    (void)s;
    check_twin("network r_layernorm { input x : f32[batch, 4, 5]; h = dense(x, 6); y = layernorm(h);"
               " output logits = dense(flatten(y), 3);" CE,
               0);
}

static void test_batchnorm(void **s) {
    (void)s;
    check_twin("network r_bn2 { input x : f32[batch, 2, 5, 4]; c = conv2d(x, 3, 3, padding = 1); b = batchnorm(c);"
               " output logits = dense(flatten(b), 3);" CE,
               3);
    check_twin("network r_bn1 { input x : f32[batch, 5]; h = dense(x, 6); b = batchnorm(h, eps = 0.001);"
               " output logits = dense(b, 3);" CE,
               0);
    check_twin("network r_bn1l { input x : f32[batch, 3, 4]; h = dense(x, 5); b = batchnorm(h);"
               " output logits = dense(flatten(b), 3);" CE,
               0);
}

static void test_embedding(void **s) {
    (void)s;
    check_twin("network r_embedding { input ids : i32[batch, 4]; e = embedding(ids, 7, 5);"
               " output logits = dense(flatten(e), 3);" CE,
               0);
}

/* Learned position embeddings: the positions of the ids, and of a hidden state, whose producer
 * takes no gradient through them. */
static void test_positions(void **s) {
    (void)s;
    check_twin("network r_positions { input ids : i32[batch, 6]; t = embedding(ids, 9, 5);"
               " h = t + embedding(positions(ids), 6, 5); u = dense(h, 4); v = u + embedding(positions(u), 7, 4);"
               " output logits = dense(flatten(v), 3);" CE,
               0);
}

static void test_views(void **s) {
    (void)s;
    check_twin("network r_reshape { input x : f32[batch, 4, 5]; h = dense(x, 6); r = reshape(h, [batch, 3, 8]);"
               " f = flatten(dense(r, 2)); output logits = dense(f, 3) + dense(reshape(h, [24]), 3)"
               " + dense(flatten(tanh(h)), 3);" CE,
               0);
}

static void test_concat(void **s) {
    (void)s;
    check_twin("network r_concat { input x : f32[batch, 3, 5]; a = dense(x, 4); b = dense(x, 2);"
               " c = concat(a, b, a, axis = -1); d = concat(a, tanh(a), axis = 1);"
               " output logits = dense(flatten(c), 3) + dense(flatten(d), 3);" CE,
               0);
    check_twin(
        "network r_concat4 { input x : f32[batch, 2, 5, 4]; c = conv2d(x, 3, 3, padding = 1); d = conv2d(x, 2, 1);"
        " y = concat(c, d, axis = 1); z = concat(c, c, axis = 2);"
        " output logits = dense(flatten(y), 3) + dense(flatten(z), 3);" CE,
        0);
}

/* The gradient scattered into zeros, into a buffer of its own and onto another consumer's. */
static void test_slice(void **s) {
    (void)s;
    check_twin("network r_slice { input x : f32[batch, 5, 7]; h = dense(x, 9); a = slice(h, 1, 1, 4);"
               " b = slice(h, -1, -5, -1); c = slice(dense(x, 3), 2, 2, 3);"
               " output logits = dense(flatten(a), 3) + dense(flatten(b), 3) + dense(flatten(h), 3) + dense(flatten(c), 3);" CE,
               0);
}

static void test_transpose(void **s) {
    (void)s;
    check_twin("network r_transpose { input x : f32[batch, 4, 5]; h = dense(x, 6); t = transpose(h, [0, 2, 1]);"
               " u = dense(t, 3); v = transpose(reshape(h, [batch, 2, 2, 6]), [0, 3, 1, 2]);"
               " output logits = dense(flatten(u), 3) + dense(flatten(v), 3);" CE,
               0);
}

static void test_matmul(void **s) {
    (void)s;
    check_twin_upto(
        "network r_matmul { input x : f32[batch, 4, 5]; input w : f32[6, 3]; a = dense(x, 6); b = dense(x, 6);"
        " p = matmul(matmul(a, transpose(b, [0, 2, 1])), a);"
        " q = matmul(reshape(a, [batch, 2, 2, 6]), reshape(b, [batch, 2, 6, 2]));"
        " output logits = dense(flatten(p), 3) + dense(flatten(q), 3) + dense(flatten(matmul(b, w)), 3);" CE,
        3, UNBATCHED_INPUT_MAX_BATCH);
    check_twin_upto("network r_matmul_rows { input x : f32[batch, 5]; input w : f32[6, 3]; a = dense(x, 6);"
                    " output logits = matmul(tanh(a), w) + dense(x, 3);" CE,
                    0, UNBATCHED_INPUT_MAX_BATCH);
}

static void test_binary(void **s) {
    (void)s;
    check_twin("network r_binary { input x : f32[batch, 4, 5]; a = dense(x, 6); b = dense(x, 6);"
               " y = a * b + a - b * b; output logits = dense(flatten(y), 3);" CE,
               0);
    check_twin("network r_constants { input x : f32[batch, 4, 5]; a = dense(x, 6);"
               " y = a * 0.5 + 1 - (2 - a) / 4 - -a * 3; output logits = dense(flatten(y), 3);" CE,
               0);
    check_twin_upto(
        "network r_broadcast { input x : f32[batch, 4, 5]; input w : f32[6]; a = dense(x, 6); r = dense(x, 1);"
        " q = reshape(dense(flatten(x), 6), [batch, 1, 6]);"
        " y = a * r - q + r * q - a * q + a * w - w; output logits = dense(flatten(y), 3);" CE,
        0, UNBATCHED_INPUT_MAX_BATCH);
}

/* Division by a tensor: both operands take a gradient, broadcast either way; a number over a
 * tensor; an unbatched dividend. Divisors stay away from zero. */
static void test_div(void **s) {
    (void)s;
    check_twin("network r_div { input x : f32[batch, 4, 5]; a = dense(x, 6); b = dense(x, 6); r = dense(x, 1);"
               " y = a / (b * b + 1) + 2 / (a * a + 1) - b / (r * r + 0.5) + r / (a * a + 2);"
               " output logits = dense(flatten(y), 3);" CE,
               0);
    check_twin_upto("network r_div_w { input x : f32[batch, 4, 5]; input w : f32[6]; a = dense(x, 6);"
                    " y = (a + w) / (a * a + 1) + w / (a * a + 3); output logits = dense(flatten(y), 3);" CE,
                    0, UNBATCHED_INPUT_MAX_BATCH);
}

/* Tensor constants as operands: no gradient flows into them, all flows past them. */
static void test_tensor_constants(void **s) {
    (void)s;
    check_twin("network r_const { input x : f32[batch, 4, 5]; const m : f32[5] = [0.5, -1, 2, 0, 3];"
               " const sd : f32[4, 1] = [2, 0.5, 4, 1.5]; a = dense(x, 5);"
               " y = (a - m) / sd + m / (a * a + 1) - sd * a; output logits = dense(flatten(y), 3);" CE,
               0);
}

/* frozen = true: the twin and the generated step agree on what is trained (nothing of a frozen
 * layer) and on the gradients that pass through frozen layers to trained ones before them. */
static void test_frozen(void **s) {
    (void)s;
    check_twin("network r_frozen { input x : f32[batch, 2, 6, 5]; c = conv2d(x, 3, 3, padding = 1, frozen = true);"
               " d = conv2d(relu(c), 4, 3); n = layernorm(flatten(d), frozen = true); h = dense(n, 7, frozen = true);"
               " output logits = dense(tanh(h), 3);" CE,
               0);
}

static void test_mse(void **s) {
    (void)s;
    check_twin("network r_mse { input x : f32[batch, 5]; h = tanh(dense(x, 6)); output y = dense(h, 3);"
               " train { target : f32[batch, 3]; loss = mse(y, target); optimizer = sgd(lr = 0.1); } }",
               0);
    check_twin("network r_mse3 { input x : f32[batch, 2, 5]; h = dense(x, 6); output y = dense(sigmoid(h), 3);"
               " train { target : f32[batch, 2, 3]; loss = mse(y, target); optimizer = sgd(lr = 0.1); } }",
               0);
}

/* Odd widths at -O3: vector loops with tails in dense, layernorm, softmax and the loss. */
static void test_wide_optimised(void **s) {
    (void)s;
    check_twin("network r_wide { input x : f32[batch, 3, 21]; h = dense(x, 47); n = layernorm(h);"
               " y = softmax(n, axis = 1) + log_softmax(h); output logits = dense(flatten(y), 19);" CE,
               3);
}

int main(void) {
    (void)&pnetrt_barrier; /* the JIT resolves it in this process */
    setenv("PNET_ADAPTIVE_THREADS", "0", 1);
    verbose = getenv("PNET_GRAD_VERBOSE") != NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense),          cmocka_unit_test(test_conv2d),    cmocka_unit_test(test_pooling),
        cmocka_unit_test(test_activations),    cmocka_unit_test(test_dropout),   cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_layernorm),      cmocka_unit_test(test_batchnorm), cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_views),          cmocka_unit_test(test_concat),    cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_matmul),         cmocka_unit_test(test_binary), cmocka_unit_test(test_div), cmocka_unit_test(test_tensor_constants), cmocka_unit_test(test_frozen),    cmocka_unit_test(test_mse),
        cmocka_unit_test(test_wide_optimised), cmocka_unit_test(test_silu),
        cmocka_unit_test(test_elu_softplus),   cmocka_unit_test(test_prelu), cmocka_unit_test(test_prelu_init), cmocka_unit_test(test_pad),
        cmocka_unit_test(test_grouped_conv),
        cmocka_unit_test(test_causal_softmax), cmocka_unit_test(test_slice),
        cmocka_unit_test(test_positions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
