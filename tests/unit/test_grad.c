/* Every op's gradient against finite differences: for each op a tiny network puts a trained layer
 * before the op, so the gradient reaches that layer's weights only through the op's backward
 * kernel. One training step at learning rate 0 gives the loss and the analytic gradient
 * (pnetrt_train_grad); then single parameter elements of every trained tensor are moved by
 * +-eps and the central difference of the training-mode loss must match. The step count is reset
 * before each step so dropout masks repeat. 1 and 2 threads must agree bit for bit. Compiling
 * dominates the run time, so most networks are built at -O0 and a few at -O3, as shipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jit_util.h"
#include "model.h"
#include "train_util.h"

/* |fd - g| <= RTOL * max(|fd|, |g|) + ATOL. The losses are near 1 and read back as f32, so the
 * central difference carries about 1e-7 / eps of rounding noise; ATOL sits well above it. */
#define RTOL 2e-2
#define ATOL 5e-4
#define SEED 7

static bool verbose;

/* The training-mode loss of one step at learning rate 0, at step 1 (the same dropout masks). */
static float step_loss(pnetrt_model *m, int64_t batch, const void *const *ins) {
    float loss = NAN;
    assert_int_equal(pnetrt_set_train_steps(m, 0), 0);
    if (pnetrt_train_step(m, batch, ins, &loss)) fail_msg("train step: %s", pnetrt_last_error(m));
    return loss;
}

static bool close_enough(double fd, double g) {
    return fabs(fd - g) <= RTOL * fmax(fabs(fd), fabs(g)) + ATOL;
}

/* One parameter element checked: the central difference of the loss in *wp by step eps against
 * the analytic gradient g. Where the loss has a kink inside [w - eps, w + eps] (a relu input or a
 * maxpool's winner switching), the one-sided differences disagree by about twice the central
 * difference's error, whereas a wrong gradient at a smooth point leaves them agreeing; such a
 * point proves nothing and is reported as a kink. */
typedef enum { FD_PASS, FD_FAIL, FD_KINK } fd_result;

static fd_result check_element(pnetrt_model *m, int64_t batch, const void *const *in, int64_t at, double eps, double l0,
                               double g, double *fd, bool *sensitive) {
    /* Each write goes through pnetrt_params_mut, as every writer's must (so the trainer knows its
     * transposed weights are stale). */
    float w0 = pnetrt_params_mut(m)[at], hi = (float)(w0 + eps), lo = (float)(w0 - eps);
    pnetrt_params_mut(m)[at] = hi;
    double lp = step_loss(m, batch, in);
    pnetrt_params_mut(m)[at] = lo;
    double lm = step_loss(m, batch, in);
    pnetrt_params_mut(m)[at] = w0;
    *fd = (lp - lm) / ((double)hi - (double)lo);
    double right = (lp - l0) / ((double)hi - w0), left = (l0 - lm) / (w0 - (double)lo);
    if (close_enough(*fd, g)) {
        *sensitive |= !close_enough(*fd, 1.1 * g);
        return FD_PASS;
    }
    return fabs(right - left) > fabs(*fd - g) ? FD_KINK : FD_FAIL;
}

/* Compiles src at opt_level and checks its gradient at `batch` by central differences of step
 * eps. */
static void check_grad(const char *src, int64_t batch, double eps, int opt_level) {
    compiled c;
    compile_net(src, false, opt_level, &c);
    const pnetrt_desc *d = c.desc;
    assert_non_null(d->train);
    void *ins[16];
    assert_true(d->ninputs + d->train->ntrain_inputs <= 16);
    make_inputs(d, batch, ins);
    const void *const *in = (const void *const *)ins;

    pnetrt_model *m = make_model(d, 1, SEED), *m2 = make_model(d, 2, SEED);
    float loss = step_loss(m, batch, in), loss2 = step_loss(m2, batch, in);
    assert_true(isfinite(loss));
    size_t bytes = (size_t)d->param_floats * sizeof(float);
    float *g = malloc(bytes + 4);
    assert_non_null(pnetrt_train_grad(m));
    memcpy(g, pnetrt_train_grad(m), bytes);
    if (loss != loss2) fail_msg("%s: loss %.9g on 1 thread, %.9g on 2", d->name, loss, loss2);
    for (int64_t p = 0; p < d->nparams; p++) {
        const pnetrt_tensor_desc *t = &d->params[p];
        if (t->trainable && memcmp(g + t->offset, pnetrt_train_grad(m2) + t->offset,
                                   (size_t)pnetrt_sample_elems(t) * sizeof(float)) != 0)
            fail_msg("%s: the gradient of %s differs between 1 and 2 threads", d->name, t->name);
    }
    if (verbose) printf("%s batch %lld: loss %.7g\n", d->name, (long long)batch, loss);

    bool first = true;
    for (int64_t p = 0; p < d->nparams; p++) {
        const pnetrt_tensor_desc *t = &d->params[p];
        if (!t->trainable) continue;
        int64_t n = pnetrt_sample_elems(t), best = 0;
        for (int64_t j = 1; j < n; j++)
            if (fabsf(g[t->offset + j]) > fabsf(g[t->offset + best])) best = j;
        /* The largest gradient element, then random ones; more of the first layer's weights. */
        int checks = first ? 8 : 4, done = 0, kinks = 0;
        bool sensitive = false;
        for (int k = 0; done < checks && done < n; k++) {
            int64_t j = k == 0 ? best : (int64_t)(rnd() * (double)n);
            double an = g[t->offset + j], fd;
            fd_result r = check_element(m2, batch, in, t->offset + j, eps, loss, an, &fd, &sensitive);
            if (verbose)
                printf("  %-22s [%3lld] grad % .6e  fd % .6e  err %.2e%s\n", t->name, (long long)j, an, fd,
                       fabs(fd - an), r == FD_KINK ? "  kink" : "");
            if (r == FD_FAIL)
                fail_msg("%s batch %lld: d loss / d %s[%lld]: analytic %.7g, finite difference %.7g", d->name,
                         (long long)batch, t->name, (long long)j, an, fd);
            if (r == FD_KINK && ++kinks > checks)
                fail_msg("%s: %d of the points checked in %s sit at kinks of the loss", d->name, kinks, t->name);
            done += r == FD_PASS;
        }
        /* The check must be able to see a 10% error in the first layer's gradient. */
        if (first && !sensitive) fail_msg("%s: the gradient of %s is too small to check", d->name, t->name);
        first = false;
    }
    assert_true(step_loss(m2, batch, in) == loss); /* the weights are back as they were */

    free(g);
    pnetrt_destroy(m);
    pnetrt_destroy(m2);
    for (int64_t i = 0; i < d->ninputs + d->train->ntrain_inputs; i++)
        free(ins[i]);
    release(&c);
}

/* Most networks end in three logits and cross_entropy with plain sgd. */
#define CE " train { label : i32[batch]; loss = cross_entropy(logits, label); optimizer = sgd(lr = 0.1); } }"

static void test_dense(void **s) {
    (void)s;
    check_grad("network g_dense { input x : f32[batch, 4, 5]; h = dense(x, 6); y = dense(h, 4, bias = false);"
               " output logits = dense(flatten(y), 3);" CE,
               5, 1e-2, 0);
}

static void test_conv2d(void **s) {
    (void)s;
    check_grad("network g_conv { input x : f32[batch, 2, 7, 6]; c = conv2d(x, 3, 3, padding = 1);"
               " d = conv2d(c, 4, [3, 2], stride = 2, padding = [1, 0]); e = conv2d(d, 2, 1, bias = false);"
               " output logits = dense(flatten(e), 3);" CE,
               5, 1e-2, 0);
    check_grad(
        "network g_conv2 { input x : f32[batch, 3, 8, 9]; c = conv2d(x, 4, [2, 3], stride = [2, 1], padding = [0, 1]);"
        " d = conv2d(c, 3, 3, stride = 2, padding = 1); e = conv2d(d, 2, [2, 5], padding = 2);"
        " output logits = dense(flatten(e), 3);" CE,
        5, 1e-2, 3);
    /* Strides past the kernel leave inputs no output reads. */
    check_grad("network g_conv3 { input x : f32[batch, 2, 9, 8]; c = conv2d(x, 3, 1, stride = 2);"
               " d = conv2d(c, 4, 2, stride = 3, padding = 1); output logits = dense(flatten(d), 3);" CE,
               5, 1e-2, 0);
}

static void test_maxpool2d(void **s) {
    (void)s;
    check_grad("network g_maxpool { input x : f32[batch, 2, 7, 7]; c = conv2d(x, 3, 3, padding = 1);"
               " p = maxpool2d(c, 2); output logits = dense(flatten(p), 3);" CE,
               5, 1e-3, 0);
    check_grad("network g_maxpool2 { input x : f32[batch, 2, 7, 7]; c = conv2d(x, 3, 3, padding = 1);"
               " p = maxpool2d(c, 3, stride = 2, padding = 1); output logits = dense(flatten(p), 3);" CE,
               5, 1e-3, 0);
}

static void test_avgpool2d(void **s) {
    (void)s;
    check_grad("network g_avgpool { input x : f32[batch, 2, 7, 7]; c = conv2d(x, 3, 3, padding = 1);"
               " p = avgpool2d(c, 2); q = avgpool2d(c, 3, stride = 2, padding = 1);"
               " output logits = dense(flatten(p), 3) + dense(flatten(q), 3);" CE,
               5, 1e-2, 3);
}

static void test_global_avgpool(void **s) {
    (void)s;
    check_grad("network g_gap { input x : f32[batch, 2, 5, 6]; c = conv2d(x, 4, 3, padding = 1);"
               " p = global_avgpool(c); output logits = dense(flatten(p), 3);" CE,
               5, 1e-2, 0);
}

#define ACT(NAME, OP, EPS)                                                                                             \
    check_grad("network g_" NAME " { input x : f32[batch, 5]; h = dense(x, 6); y = " OP ";"                            \
               " output logits = dense(y, 3);" CE,                                                                     \
               5, EPS, 0)

static void test_relu(void **s) {
    (void)s;
    ACT("relu", "relu(h)", 1e-3);
}

static void test_leaky_relu(void **s) {
    (void)s;
    ACT("leaky_relu", "leaky_relu(h, 0.2)", 1e-3);
}

static void test_sigmoid(void **s) {
    (void)s;
    ACT("sigmoid", "sigmoid(h)", 1e-2);
}

static void test_tanh(void **s) {
    (void)s;
    ACT("tanh", "tanh(h)", 1e-2);
}

static void test_gelu(void **s) {
    (void)s;
    ACT("gelu", "gelu(h)", 1e-2);
}

static void test_dropout(void **s) {
    (void)s;
    ACT("dropout", "dropout(h, 0.3)", 1e-2);
}

static void test_softmax(void **s) {
    (void)s;
    check_grad("network g_softmax { input x : f32[batch, 4, 5]; h = dense(x, 6);"
               " y = softmax(h) + softmax(h, axis = 1); output logits = dense(flatten(y), 3);" CE,
               5, 1e-2, 0);
    check_grad("network g_softmax4 { input x : f32[batch, 2, 5, 4]; c = conv2d(x, 3, 3, padding = 1);"
               " y = softmax(c, axis = 2) + log_softmax(c, axis = 1); output logits = dense(flatten(y), 3);" CE,
               5, 1e-2, 0);
}

static void test_log_softmax(void **s) {
    (void)s;
    check_grad("network g_log_softmax { input x : f32[batch, 4, 5]; h = dense(x, 6);"
               " y = log_softmax(h) + log_softmax(h, axis = 1); output logits = dense(flatten(y), 3);" CE,
               5, 1e-2, 0);
}

static void test_layernorm(void **s) {
    (void)s;
    check_grad("network g_layernorm { input x : f32[batch, 4, 5]; h = dense(x, 6); y = layernorm(h);"
               " output logits = dense(flatten(y), 3);" CE,
               5, 1e-2, 0);
}

static void test_batchnorm2d(void **s) {
    (void)s;
    const char *src =
        "network g_bn2 { input x : f32[batch, 2, 5, 4]; c = conv2d(x, 3, 3, padding = 1); b = batchnorm(c);"
        " output logits = dense(flatten(b), 3);" CE;
    check_grad(src, 5, 1e-2, 0);
    check_grad(src, 70, 1e-2, 3);
}

static void test_batchnorm1d(void **s) {
    (void)s;
    const char *src = "network g_bn1 { input x : f32[batch, 5]; h = dense(x, 6); b = batchnorm(h, eps = 0.001);"
                      " output logits = dense(b, 3);" CE;
    check_grad(src, 5, 1e-2, 0);
    check_grad(src, 70, 1e-2, 0);
    check_grad("network g_bn1l { input x : f32[batch, 3, 4]; h = dense(x, 5); b = batchnorm(h);"
               " output logits = dense(flatten(b), 3);" CE,
               5, 1e-2, 0);
}

static void test_embedding(void **s) {
    (void)s;
    check_grad("network g_embedding { input ids : i32[batch, 4]; e = embedding(ids, 7, 5);"
               " output logits = dense(flatten(e), 3);" CE,
               5, 1e-2, 0);
}

static void test_flatten_reshape(void **s) {
    (void)s;
    check_grad("network g_reshape { input x : f32[batch, 4, 5]; h = dense(x, 6); r = reshape(h, [batch, 3, 8]);"
               " f = flatten(dense(r, 2)); output logits = dense(f, 3) + dense(reshape(h, [24]), 3);" CE,
               5, 1e-2, 0);
    /* A view shares its source's gradient buffer, which another consumer also adds into. */
    check_grad("network g_view_fanout { input x : f32[batch, 4, 5]; h = dense(x, 6);"
               " output logits = dense(flatten(tanh(h)), 3) + dense(flatten(h), 3);" CE,
               5, 1e-2, 0);
}

static void test_concat(void **s) {
    (void)s;
    check_grad("network g_concat { input x : f32[batch, 3, 5]; a = dense(x, 4); b = dense(x, 2);"
               " c = concat(a, b, a, axis = -1); d = concat(a, tanh(a), axis = 1);"
               " output logits = dense(flatten(c), 3) + dense(flatten(d), 3);" CE,
               5, 1e-2, 0);
    check_grad(
        "network g_concat4 { input x : f32[batch, 2, 5, 4]; c = conv2d(x, 3, 3, padding = 1); d = conv2d(x, 2, 1);"
        " y = concat(c, d, axis = 1); z = concat(c, c, axis = 2);"
        " output logits = dense(flatten(y), 3) + dense(flatten(z), 3);" CE,
        5, 1e-2, 0);
}

static void test_transpose(void **s) {
    (void)s;
    check_grad("network g_transpose { input x : f32[batch, 4, 5]; h = dense(x, 6); t = transpose(h, [0, 2, 1]);"
               " u = dense(t, 3); v = transpose(reshape(h, [batch, 2, 2, 6]), [0, 3, 1, 2]);"
               " output logits = dense(flatten(u), 3) + dense(flatten(v), 3);" CE,
               5, 1e-2, 0);
}

static void test_matmul(void **s) {
    (void)s;
    check_grad("network g_matmul { input x : f32[batch, 4, 5]; input w : f32[6, 3]; a = dense(x, 6); b = dense(x, 6);"
               " p = matmul(matmul(a, transpose(b, [0, 2, 1])), a);"
               " q = matmul(reshape(a, [batch, 2, 2, 6]), reshape(b, [batch, 2, 6, 2]));"
               " output logits = dense(flatten(p), 3) + dense(flatten(q), 3) + dense(flatten(matmul(b, w)), 3);" CE,
               5, 1e-2, 3);
    /* Rows times an unbatched matrix: each sample's [1, K] row. */
    check_grad("network g_matmul_rows { input x : f32[batch, 5]; input w : f32[6, 3]; a = dense(x, 6);"
               " output logits = matmul(tanh(a), w) + dense(x, 3);" CE,
               5, 1e-2, 3);
}

static void test_binary_same_shape(void **s) {
    (void)s;
    check_grad("network g_binary { input x : f32[batch, 4, 5]; a = dense(x, 6); b = dense(x, 6);"
               " y = a * b + a - b * b; output logits = dense(flatten(y), 3);" CE,
               5, 1e-2, 0);
}

static void test_binary_broadcast(void **s) {
    (void)s;
    check_grad("network g_broadcast { input x : f32[batch, 4, 5]; input w : f32[6]; a = dense(x, 6); r = dense(x, 1);"
               " q = reshape(dense(flatten(x), 6), [batch, 1, 6]);"
               " y = a * r - q + r * q - a * q + a * w - w; output logits = dense(flatten(y), 3);" CE,
               5, 1e-2, 0);
}

static void test_binary_constants(void **s) {
    (void)s;
    check_grad("network g_constants { input x : f32[batch, 4, 5]; a = dense(x, 6);"
               " y = a * 0.5 + 1 - (2 - a) / 4 - -a * 3; output logits = dense(flatten(y), 3);" CE,
               5, 1e-2, 0);
}

static void test_mse(void **s) {
    (void)s;
    check_grad("network g_mse { input x : f32[batch, 5]; h = tanh(dense(x, 6)); output y = dense(h, 3);"
               " train { target : f32[batch, 3]; loss = mse(y, target); optimizer = sgd(lr = 0.1); } }",
               5, 1e-2, 0);
    check_grad("network g_mse3 { input x : f32[batch, 2, 5]; h = dense(x, 6); output y = dense(sigmoid(h), 3);"
               " train { target : f32[batch, 2, 3]; loss = mse(y, target); optimizer = sgd(lr = 0.1); } }",
               5, 1e-2, 0);
}

/* More than one 32-sample chunk: chunks' gradients are summed by a tree. */
static void test_many_chunks(void **s) {
    (void)s;
    check_grad("network g_chunks { input x : f32[batch, 2, 6, 6]; c = conv2d(x, 3, 3); p = avgpool2d(c, 2);"
               " h = tanh(dense(flatten(p), 6)); output logits = dense(dropout(h, 0.2), 3);" CE,
               70, 1e-2, 3);
}

/* Odd widths at -O3: vector loops with tails in layernorm, softmax and the loss. */
static void test_wide_optimised(void **s) {
    (void)s;
    check_grad("network g_wide { input x : f32[batch, 3, 21]; h = dense(x, 47); n = layernorm(h);"
               " y = softmax(n, axis = 1) + log_softmax(h); output logits = dense(flatten(y), 19);" CE,
               33, 1e-2, 3);
}

/* src checked and through every pass, with pnetc --train-chunk train_chunk (0: the default). */
static pn_graph *planned(const char *src, int train_chunk) {
    pn_graph *g = check_source(src);
    assert_non_null(g);
    g->train_chunk = train_chunk;
    for (int i = 0; i < pn_npasses; i++) pn_passes[i].run(g);
    return g;
}

/* The default chunk (plan_train.c): 64 samples where the trained weights pass a MiB and 64 samples'
 * kept values and gradients stay within 2 MiB, else 32; --train-chunk (train_chunk) overrides. */

static int64_t chunk_of(const char *src, int train_chunk) {
    pn_graph *g = planned(src, train_chunk);
    int64_t chunk = g->tplan.chunk;
    pn_graph_free(g);
    return chunk;
}

static void test_chunk_rule(void **s) {
    (void)s;
#define NET(units, wide) \
    "network g_chunk { input x : f32[batch, 512]; h = relu(dense(x, " #units ")); output logits = dense(h, " #wide ");" CE
    assert_int_equal(chunk_of(NET(512, 10), 0), 64);   /* 1.0 MiB + 20 KiB of weights */
    assert_int_equal(chunk_of(NET(480, 10), 0), 32);   /* under a MiB */
    assert_int_equal(chunk_of(NET(512, 10), 16), 16);  /* the option's */
    assert_int_equal(chunk_of(NET(512, 8192), 0), 32); /* 64 samples keep 4.5 MiB */
#undef NET
}

/* Kernels wider than a vector (17 > 16 floats): conv2d's backward gathers colT element by element,
 * its scalar twin; and 1 x 1 kernels, one lane of the vector gather. */
static void test_conv_wide_kernel(void **s) {
    (void)s;
    check_grad("network g_wide_k { input x : f32[batch, 2, 3, 20]; c = tanh(conv2d(x, 3, [2, 17], padding = [0, 1]));"
               " d = conv2d(c, 2, 1); output logits = dense(flatten(d), 3);" CE,
               5, 1e-2, 3);
}

/* A relu after a convolution that nothing else reads is applied by the convolution's kernel and
 * shares its storage (plan_train.c); one whose convolution feeds another op too is not. The
 * gradient through the first kind, by central differences (eps 1e-3, as for relu alone). */
static void test_conv_relu_fused(void **s) {
    (void)s;
    pn_graph *g = planned("network g_crelu2 { input x : f32[batch, 2, 7, 7]; c = relu(conv2d(x, 3, 3, padding = 1));"
                          " e = conv2d(c, 4, 3); f = relu(e) + e; output logits = dense(flatten(f), 3);" CE, 0);
    int fused = 0, alone = 0;
    for (int i = 0; i < g->nnodes; i++) {
        if (g->nodes[i].op != PN_OP_RELU) continue;
        if (g->tplan.fused[i]) {
            fused++;
            assert_int_equal(g->tplan.act[i], g->nodes[i].in[0]);
            assert_int_equal(g->tplan.act_off[i], -1);
        } else {
            alone++;
            assert_int_equal(g->tplan.act[i], i);
        }
    }
    assert_int_equal(fused, 1);
    assert_int_equal(alone, 1);
    pn_graph_free(g);
    /* Read from the next stage (directly, or through a view): the boundary sends the relu's own
     * storage and gradient, so no fusion. */
    const char *staged[] = {
        "network g_cstage { input x : f32[batch, 2, 7, 7]; @partition(0) { c = relu(conv2d(x, 3, 3, padding = 1)); }"
        " @partition(1) { d = maxpool2d(c, 2); output logits = dense(flatten(d), 3); }" CE,
        "network g_cstage2 { input x : f32[batch, 2, 7, 7]; @partition(0) { c = relu(conv2d(x, 3, 3, padding = 1)); f = flatten(c); }"
        " @partition(1) { output logits = dense(f, 3); }" CE,
    };
    for (int k = 0; k < 2; k++) {
        g = planned(staged[k], 0);
        for (int i = 0; i < g->nnodes; i++) assert_false(g->tplan.fused[i]);
        pn_graph_free(g);
    }
    check_grad("network g_crelu { input x : f32[batch, 2, 7, 7]; c = relu(conv2d(x, 3, 3, padding = 1));"
               " d = relu(conv2d(c, 4, 3)); output logits = dense(flatten(d), 3);" CE,
               5, 1e-3, 3);
}

/* A fused relu read by a max-pool alone: the pool's backward is the relu's too (plan_train.c), in
 * the vector path (2 x 2 windows tiling the plane), the tiled scalar one and the
 * general one (overlapping windows with padding): planes 16, 7 and 3 wide; gradients by central differences. */
static void test_pool_relu_bwd(void **s) {
    (void)s;
    const char *src = "network g_prelu { input x : f32[batch, 2, 16, 16]; a = relu(conv2d(x, 3, 3, padding = 1));"
                      " p = maxpool2d(a, 2); b = relu(conv2d(p, 3, 2)); q = maxpool2d(b, 2);"
                      " c = relu(conv2d(q, 4, 1)); r = maxpool2d(c, 3, stride = 2, padding = 1);"
                      " output logits = dense(flatten(r), 3);" CE;
    pn_graph *g = planned(src, 0);
    int n = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (g->tplan.pool_bwd[i]) {
            assert_int_equal(g->nodes[i].op, PN_OP_RELU);
            assert_int_equal(g->tplan.gbuf[i], g->tplan.gbuf[g->nodes[i].in[0]]);
            n++;
        }
    assert_int_equal(n, 3);
    pn_graph_free(g);
    check_grad(src, 4, 1e-3, 3);
}

static void test_no_train_block(void **s) {
    (void)s;
    compiled c;
    compile_net("network g_infer { input x : f32[batch, 4]; output y = dense(x, 2); }", false, 0, &c);
    assert_null(c.desc->train);
    pnetrt_model *m;
    assert_int_equal(pnetrt_create(&m, c.desc, NULL), 0);
    float x[8] = {0}, loss = 0;
    const void *ins[1] = {x};
    assert_int_not_equal(pnetrt_train_step(m, 2, ins, &loss), 0);
    assert_string_equal(pnetrt_last_error(m), "network 'g_infer' has no train { } block");
    assert_null(pnetrt_train_grad(m));
    pnetrt_destroy(m);
    release(&c);
}

/* The learning rate must be finite and positive, as the language requires. */
static void test_set_lr(void **s) {
    (void)s;
    compiled c;
    compile_net("network g_lr { input x : f32[batch, 4]; output logits = dense(x, 3);" CE, false, 0, &c);
    pnetrt_model *m;
    assert_int_equal(pnetrt_create(&m, c.desc, NULL), 0);
    const double bad[] = {0.0, -0.0, -1.0, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_not_equal(pnetrt_set_lr(m, bad[i]), 0);
        assert_non_null(strstr(pnetrt_last_error(m), "finite positive"));
    }
    assert_int_equal(pnetrt_set_lr(m, 0.25), 0);
    assert_true(pnetrt_lr(m) == 0.25);
    pnetrt_destroy(m);
    release(&c);
}

/* A model at lr 0.1 (make_model's is 0), one step from seed. */
static pnetrt_model *stepped(const pnetrt_desc *d, uint64_t seed, int64_t batch, const void *const *in) {
    pnetrt_model *m = make_model(d, 1, seed);
    assert_int_equal(pnetrt_set_lr(m, 0.1), 0);
    step_loss(m, batch, in);
    return m;
}

static void assert_same_params(pnetrt_model *a, pnetrt_model *b, size_t bytes) {
    assert_memory_equal(pnetrt_params_mut(a), pnetrt_params_mut(b), bytes);
}

/* The update transposes each dense W into W^T as it writes it, so the next step skips the prep
 * (the trainer's wt_gen); a step after the parameters were written another way (a checkpoint
 * loaded, pnetrt_params_mut) must prepare again, and gives the bits of a fresh model. Widths not
 * multiples of 16, and three chunks, so that the transposes' tails and the folded tree run. */
static void test_stale_transpose(void **s) {
    (void)s;
    compiled c;
    compile_net("network g_wt { input x : f32[batch, 37]; h = relu(dense(x, 40)); output logits = dense(h, 3);"
                " train { label : i32[batch]; loss = cross_entropy(logits, label);"
                " optimizer = sgd(lr = 0.1, momentum = 0.9); } }",
                false, 3, &c);
    const pnetrt_desc *d = c.desc;
    int64_t batch = 70;
    void *ins[16];
    make_inputs(d, batch, ins);
    const void *const *in = (const void *const *)ins;
    size_t bytes = (size_t)d->param_floats * sizeof(float);
    char path[] = "/tmp/pnet_test_wt_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);

    pnetrt_model *a = make_model(d, 1, SEED), *fresh = stepped(d, SEED, batch, in);
    assert_int_equal(pnetrt_set_lr(a, 0.1), 0);
    assert_int_equal(pnetrt_save(a, path, true, 0, 0), 0);
    step_loss(a, batch, in);
    step_loss(a, batch, in); /* W^T from the last update: no prep */
    assert_int_not_equal(memcmp(pnetrt_params_mut(a), pnetrt_params_mut(fresh), bytes), 0);
    assert_int_equal(pnetrt_load(a, path, NULL, NULL), 0);
    step_loss(a, batch, in);
    assert_same_params(a, fresh, bytes);

    step_loss(a, batch, in);
    pnetrt_init_params(d, pnetrt_params_mut(a), SEED + 1);
    step_loss(a, batch, in);
    pnetrt_model *fresh2 = stepped(d, SEED + 1, batch, in);
    assert_same_params(a, fresh2, bytes);

    unlink(path);
    pnetrt_destroy(a);
    pnetrt_destroy(fresh);
    pnetrt_destroy(fresh2);
    for (int64_t i = 0; i < d->ninputs + d->train->ntrain_inputs; i++) free(ins[i]);
    release(&c);
}

int main(void) {
    (void)&pnetrt_barrier; /* the JIT resolves it in this process */
    setenv("PNET_ADAPTIVE_THREADS", "0", 1);
    verbose = getenv("PNET_GRAD_VERBOSE") != NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_maxpool2d),
        cmocka_unit_test(test_avgpool2d),
        cmocka_unit_test(test_global_avgpool),
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_leaky_relu),
        cmocka_unit_test(test_sigmoid),
        cmocka_unit_test(test_tanh),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_log_softmax),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_batchnorm2d),
        cmocka_unit_test(test_batchnorm1d),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_flatten_reshape),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_binary_same_shape),
        cmocka_unit_test(test_binary_broadcast),
        cmocka_unit_test(test_binary_constants),
        cmocka_unit_test(test_mse),
        cmocka_unit_test(test_many_chunks),
        cmocka_unit_test(test_wide_optimised),
        cmocka_unit_test(test_chunk_rule),
        cmocka_unit_test(test_conv_wide_kernel),
        cmocka_unit_test(test_conv_relu_fused),
        cmocka_unit_test(test_pool_relu_bwd),
        cmocka_unit_test(test_no_train_block),
        cmocka_unit_test(test_set_lr),
        cmocka_unit_test(test_stale_transpose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
