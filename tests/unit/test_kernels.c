/* Every generated kernel against its reference twin (compiler/ir/reference.c): small networks
 * are compiled for the host, loaded with LLVM's JIT, run through libpnetrt at batch 1 and 7 on
 * odd widths, and compared element by element; 1 and 3 threads must agree bit for bit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/train.h"
#include "ir/reference.h"
#include "jit_util.h"
#include "model.h"

/* Runs c at `batch` with `threads`, returning malloc'ed outputs; the reference likewise. */
static void run_r(compiled *c, int64_t batch, int threads, int replicas, void **ins, void **outs) {
    pnetrt_model *m;
    assert_int_equal(pnetrt_create(&m, c->desc, NULL), 0);
    assert_int_equal(pnetrt_set_threads(m, threads), 0);
    assert_int_equal(pnetrt_set_replicas(m, replicas), 0);
    if (pnetrt_infer(m, batch, (const void *const *)ins, outs)) fail_msg("infer: %s", pnetrt_last_error(m));
    pnetrt_destroy(m);
}

static void run(compiled *c, int64_t batch, int threads, void **ins, void **outs, bool reference) {
    if (reference) {
        assert_int_equal(pn_reference_run(c->g, c->weights, batch, (const void *const *)ins, outs), 0);
        return;
    }
    pnetrt_model *m;
    assert_int_equal(pnetrt_create(&m, c->desc, NULL), 0);
    assert_int_equal(pnetrt_set_threads(m, threads), 0);
    if (pnetrt_infer(m, batch, (const void *const *)ins, outs)) fail_msg("infer: %s", pnetrt_last_error(m));
    pnetrt_destroy(m);
}

static int64_t elems(const pnetrt_tensor_desc *t, int64_t batch) {
    return pnetrt_sample_elems(t) * (t->shape[0] < 0 ? batch : 1);
}

/* Compiles src and compares it with the reference at batch 1 and 7, and across thread counts. */
static void check_network(const char *src) {
    compiled c;
    compile_net(src, true, 3, &c);
    const pnetrt_desc *d = c.desc;
    for (int64_t batch = 1; batch <= 7; batch += 6) {
        void *ins[16], *got[16], *want[16], *got3[16];
        for (int64_t i = 0; i < d->ninputs; i++) {
            int64_t n = elems(&d->inputs[i], batch);
            ins[i] = malloc((size_t)n * 4 + 4);
            for (int64_t k = 0; k < n; k++) {
                if (d->inputs[i].dtype) ((int32_t *)ins[i])[k] = (int32_t)(rnd() * (double)d->inputs[i].limit);
                else ((float *)ins[i])[k] = (float)(4.0 * rnd() - 2.0);
            }
        }
        for (int64_t i = 0; i < d->noutputs; i++) {
            size_t n = (size_t)elems(&d->outputs[i], batch) * 4 + 4;
            got[i] = calloc(1, n);
            want[i] = calloc(1, n);
            got3[i] = calloc(1, n);
        }
        run(&c, batch, 1, ins, got, false);
        run(&c, batch, 3, ins, got3, false);
        for (int64_t i = 0; i < d->noutputs; i++)
            if (memcmp(got[i], got3[i], (size_t)elems(&d->outputs[i], batch) * 4) != 0)
                fail_msg("%s output '%s' differs between 1 and 3 threads", d->name, d->outputs[i].name);
        run_r(&c, batch, 5, 3, ins, got3); /* 3 replicas on 5 threads */
        run(&c, batch, 1, ins, want, true);
        for (int64_t i = 0; i < d->noutputs; i++) {
            int64_t n = elems(&d->outputs[i], batch);
            if (memcmp(got[i], got3[i], (size_t)n * 4) != 0)
                fail_msg("%s output '%s' differs between 1 thread and 3 replicas", d->name, d->outputs[i].name);
            if (d->outputs[i].dtype && memcmp(got[i], want[i], (size_t)n * 4) != 0)
                fail_msg("%s i32 output '%s' batch %lld differs from the reference", d->name, d->outputs[i].name,
                         (long long)batch);
            for (int64_t k = 0; k < n && !d->outputs[i].dtype; k++) {
                double a = ((float *)got[i])[k], e = ((float *)want[i])[k];
                if (!(fabs(a - e) <= 1e-5 + 1e-4 * fabs(e)))
                    fail_msg("%s output '%s' batch %lld element %lld: got %.9g, reference %.9g", d->name,
                             d->outputs[i].name, (long long)batch, (long long)k, a, e);
            }
        }
        for (int64_t i = 0; i < d->ninputs; i++) free(ins[i]);
        for (int64_t i = 0; i < d->noutputs; i++) {
            free(got[i]);
            free(want[i]);
            free(got3[i]);
        }
    }
    release(&c);
}

static void test_dense(void **s) {
    (void)s;
    check_network("network dn { input x : f32[batch, 33]; output y = dense(x, 17); output z = dense(x, 5, bias = false); }");
    check_network("network d3 { input x : f32[batch, 3, 13]; output y = relu(dense(x, 19)); }");
    /* K in three blocks of the register-tiled kernel, the last one partial; panels split
     * between threads mid-panel. */
    check_network("network dk { input x : f32[batch, 2100]; output y = relu(dense(x, 150)); }");
}

static void test_conv_pool(void **s) {
    (void)s;
    check_network("network cv { input x : f32[batch, 3, 11, 9];\n"
                  "  c = conv2d(x, 7, [3, 5], stride = 2, padding = 1);\n"
                  "  output y = maxpool2d(relu(c), 2, stride = 1, padding = 1);\n"
                  "  output z = avgpool2d(conv2d(x, 5, 3, bias = false), 3, stride = 2, padding = 1);\n"
                  "  output w = global_avgpool(c); }");
}

/* The number of maxpool2d nodes computed inside their conv's kernel (pass_fuse_pool). */
static int pooled_convs(const char *src) {
    compiled c;
    compile_net(src, true, 3, &c);
    int n = 0;
    for (int i = 0; i < c.g->nnodes; i++) n += c.g->nodes[i].op == PN_OP_MAXPOOL2D && c.g->plan.fused[i];
    release(&c);
    return n;
}

/* conv2d + epilogue + maxpool2d in one kernel: lanes over pooled pixels (small K, or padding;
 * phase planes built with vectors for a combined stride of 2, scalar otherwise) and lanes over
 * channels (large K, no padding; channel counts that leave a partial panel). */
static void test_conv_pool_fused(void **s) {
    (void)s;
    static const char *nets[] = {
        /* pixel lanes: padding, odd sizes; a pooled map of 5 x 4 */
        "network f1 { input x : f32[batch, 3, 11, 9]; output y = maxpool2d(relu(conv2d(x, 7, 3, padding = 1)), 2); }",
        /* channel lanes: K = 180, 29 channels, 3 x 3 pooled */
        "network f2 { input x : f32[batch, 20, 9, 8]; output y = maxpool2d(relu(conv2d(x, 29, 3)), 2); }",
        /* conv stride 2 under pool stride 2: phase factor 4 (scalar planes), with padding */
        "network f3 { input x : f32[batch, 2, 13, 11]; output y = maxpool2d(conv2d(x, 6, 3, stride = 2, padding = 1), 2); }",
        /* channel lanes with strides and a non-square window of 6 positions; 1 x 1 pooled map */
        "network f4 { input x : f32[batch, 24, 7, 9]; output y = maxpool2d(conv2d(x, 40, [3, 2], stride = 2), [2, 3]); }",
        /* a folded batchnorm before, and an activation after, the pool; no bias */
        "network f5 { input x : f32[batch, 4, 10, 10];\n"
        "  output y = tanh(maxpool2d(relu(batchnorm(conv2d(x, 9, 3, bias = false))), 2)); }",
        "network f6 { input x : f32[batch, 32, 6, 6];\n"
        "  output y = sigmoid(maxpool2d(batchnorm(conv2d(x, 17, 3, bias = false)) * 0.5, 2)) - 1; }",
        /* a pooled map wider than one vector of lanes (pixel lanes over several panels) */
        "network f7 { input x : f32[batch, 1, 40, 37]; output y = maxpool2d(relu(conv2d(x, 5, 3)), 2); }",
        /* a window of one position: the pooled conv is the conv */
        "network f9 { input x : f32[batch, 3, 8, 7]; output y = maxpool2d(relu(conv2d(x, 6, 3, padding = 1)), 1);\n"
        "  output z = maxpool2d(conv2d(x, 18, 3), 1); }",
        /* both layouts inside pipeline stages, run on micro-batches */
        "network f8 { input x : f32[batch, 1, 12, 12];\n"
        "  @partition(0) { p = maxpool2d(relu(conv2d(x, 16, 3)), 2); }\n"
        "  @partition(1) { q = maxpool2d(relu(conv2d(p, 32, 3)), 2); output y = dense(flatten(q), 5); }\n"
        "  @pipeline(microbatches = 3); }",
    };
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
        assert_int_equal(pooled_convs(nets[i]), i >= 7 ? 2 : 1);
        check_network(nets[i]);
    }
    /* Not fused: overlapping or padded windows, a conv value read twice, nine window positions,
     * and a pool in another pipeline stage. */
    static const char *kept[] = {
        "network k1 { input x : f32[batch, 3, 9, 9]; output y = maxpool2d(conv2d(x, 4, 3), 3, stride = 2); }",
        "network k2 { input x : f32[batch, 3, 9, 9]; output y = maxpool2d(conv2d(x, 4, 3), 2, padding = 1); }",
        "network k3 { input x : f32[batch, 3, 9, 9]; c = relu(conv2d(x, 4, 3)); output y = maxpool2d(c, 2); output z = c; }",
        "network k4 { input x : f32[batch, 3, 9, 9]; output y = maxpool2d(conv2d(x, 4, 3), 3); }",
        "network k5 { input x : f32[batch, 3, 9, 9]; @partition(0) c = conv2d(x, 4, 3);\n"
        "  @partition(1) { output y = maxpool2d(c, 2); } }",
    };
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        assert_int_equal(pooled_convs(kept[i]), 0);
        check_network(kept[i]);
    }
}

static void test_norms(void **s) {
    (void)s;
    check_network("network nm { input x : f32[batch, 6, 5, 3]; input v : f32[batch, 13];\n"
                  "  output a = batchnorm(x); output b = batchnorm(v); output c = layernorm(v);\n"
                  "  output d = sigmoid(layernorm(x)); }");
}

static void test_folded_batchnorm(void **s) {
    (void)s;
    check_network("network fb { input x : f32[batch, 3, 9, 7]; input v : f32[batch, 21];\n"
                  "  output a = relu(batchnorm(conv2d(x, 11, 3, padding = 1, bias = false)));\n"
                  "  output b = batchnorm(conv2d(x, 5, [1, 3], stride = 2));\n"
                  "  output c = gelu(batchnorm(dense(v, 19))); output d = batchnorm(dense(v, 7, bias = false)); }");
}

static void test_fused_constants(void **s) {
    (void)s;
    check_network("network fc { input x : f32[batch, 13]; input m : f32[batch, 3, 4, 5];\n"
                  "  output a = relu(dense(x, 9)) * 0.5 + 1; output b = 2 - sigmoid(dense(x, 17));\n"
                  "  output c = tanh(conv2d(m, 6, 3, padding = 1) / 4); output d = -dense(x, 3); }");
}

static void test_pipeline_stages(void **s) {
    (void)s;
    /* Four stages: 5 threads run them as a pipeline (3 replicas one after another). */
    check_network("network pp { input x : f32[batch, 2, 5, 5];\n"
                  "  @partition(0) { c = relu(conv2d(x, 7, 3, padding = 1)); }\n"
                  "  @partition(1) { p = maxpool2d(c, 2); f = flatten(p); }\n"
                  "  @partition(2) { h = gelu(dense(f, 19)); }\n"
                  "  @partition(3) { output y = softmax(dense(h, 5)); output z = h; }\n"
                  "  @pipeline(microbatches = 3); }");
}

static void test_feature_shards(void **s) {
    (void)s;
    check_network("network fs { input x : f32[batch, 3, 9, 9]; input v : f32[batch, 40];\n"
                  "  @shard(features, 2) c = conv2d(x, 29, 3);\n"
                  "  @shard(features, 3) d = dense(v, 150);\n"
                  "  output a = relu(c); output b = d; }");
}

/* A network run from inside the caller's own OpenMP team: the nested region gets one thread (no
 * oversubscription), pipelines fall back to running stages in turn, and nothing deadlocks. */
static void test_nested_in_caller_team(void **s) {
    (void)s;
    compiled c;
    compile_net("network nt { input x : f32[batch, 8];\n"
                "  @partition(0) a = relu(dense(x, 16)); @partition(1) { output y = dense(a, 4); } }", true, 3, &c);
    float x[6 * 8], ref[6 * 4], got[4][6 * 4];
    for (int i = 0; i < 6 * 8; i++) x[i] = (float)(i % 7) - 3;
    void *ins[1] = {x}, *outs[1] = {ref};
    run_r(&c, 6, 1, 1, ins, outs);
    int bad = 0;
#pragma omp parallel num_threads(4)
    {
        int t = omp_get_thread_num();
        pnetrt_model *m;
        if (pnetrt_create(&m, c.desc, NULL) == 0 && pnetrt_set_threads(m, 4) == 0) {
            const void *in[1] = {x};
            void *out[1] = {got[t]};
            if (pnetrt_infer(m, 6, in, out) != 0 || memcmp(got[t], ref, sizeof ref) != 0) {
#pragma omp atomic
                bad++;
            }
        } else {
#pragma omp atomic
            bad++;
        }
        pnetrt_destroy(m);
    }
    assert_int_equal(bad, 0);
    release(&c);
}

/* With nesting turned on by the caller, a call from inside its team still runs on one thread. */
static void test_nested_with_nesting_on(void **s) {
    (void)s;
    compiled c;
    compile_net("network nn { input x : f32[batch, 8]; output y = relu(dense(x, 16)); }", true, 3, &c);
    int prev = omp_get_max_active_levels(), bad = 0;
    omp_set_max_active_levels(4);
#pragma omp parallel num_threads(3)
    {
        pnetrt_model *m;
        if (pnetrt_create(&m, c.desc, NULL) || pnetrt_set_threads(m, 4) || pnetrt_call_threads(m) != 1) {
#pragma omp atomic
            bad++;
        }
        pnetrt_destroy(m);
    }
    omp_set_max_active_levels(prev);
    assert_int_equal(bad, 0);
    pnetrt_model *m;
    assert_int_equal(pnetrt_create(&m, c.desc, NULL), 0);
    assert_int_equal(pnetrt_set_threads(m, 4), 0);
    assert_int_equal(pnetrt_call_threads(m), 4);
    pnetrt_destroy(m);
    release(&c);
}

/* Without @shard(batch, R), each call picks its replicas: one for small batches, several (a
 * divisor of the team) for large ones, with the same results; the directive or the user's count
 * is kept as given. */
static void test_picked_replicas(void **s) {
    (void)s;
    compiled c, d;
    compile_net("network pr { input x : f32[batch, 64]; output y = dense(relu(dense(x, 64)), 8); }", true, 3, &c);
    compile_net("network pd { input x : f32[batch, 64]; @shard(batch, 1); output y = dense(relu(dense(x, 64)), 8); }",
                true, 3, &d);
    enum { B = 3000 };
    float *x = malloc(sizeof(float) * B * 64), *ref = malloc(sizeof(float) * B * 8), *got = malloc(sizeof(float) * B * 8);
    for (int i = 0; i < B * 64; i++) x[i] = (float)rnd() - 0.5f;
    const void *in[1] = {x};
    void *out[1] = {ref};
    pnetrt_model *m;
    assert_int_equal(pnetrt_create(&m, c.desc, NULL), 0);
    assert_int_equal(pnetrt_set_threads(m, 1), 0);
    assert_int_equal(pnetrt_infer(m, B, in, out), 0);
    assert_int_equal(pnetrt_last_replicas(m), 1);
    assert_int_equal(pnetrt_set_threads(m, 4), 0);
    out[0] = got;
    assert_int_equal(pnetrt_infer(m, 2, in, out), 0);
    assert_int_equal(pnetrt_last_replicas(m), 1);
    assert_memory_equal(got, ref, sizeof(float) * 2 * 8);
    assert_int_equal(pnetrt_infer(m, B, in, out), 0);
    int r = pnetrt_last_replicas(m); /* at most one per core */
    assert_true(omp_get_num_procs() < 2 ? r == 1 : r > 1 && 4 % r == 0 && r <= omp_get_num_procs());
    assert_memory_equal(got, ref, sizeof(float) * B * 8);
    assert_int_equal(pnetrt_set_replicas(m, 3), 0);
    assert_int_equal(pnetrt_infer(m, B, in, out), 0);
    assert_int_equal(pnetrt_last_replicas(m), 3);
    assert_memory_equal(got, ref, sizeof(float) * B * 8);
    pnetrt_destroy(m);
    assert_int_equal(pnetrt_create(&m, d.desc, NULL), 0);
    assert_int_equal(pnetrt_set_threads(m, 4), 0);
    assert_int_equal(pnetrt_infer(m, B, in, out), 0);
    assert_int_equal(pnetrt_last_replicas(m), 1);
    pnetrt_destroy(m);
    free(x), free(ref), free(got);
    release(&c);
    release(&d);
}

/* A call whose replicas the runtime picks runs the static plan, the claimed one (each thread
 * claiming units of the batch, no barriers) or one thread alone, by their measured cost, probing
 * another one call in 32: over 80 calls each runs, and every output is bitwise the one-thread
 * run's. */
static void test_claimed_plan(void **s) {
    (void)s;
    compiled c;
    compile_net("network cp { input x : f32[batch, 64]; output y = dense(relu(dense(x, 256)), 8); }", true, 3, &c);
    enum { B = 1000 };
    float *x = malloc(sizeof(float) * B * 64), *ref = malloc(sizeof(float) * B * 8), *got = malloc(sizeof(float) * B * 8);
    for (int i = 0; i < B * 64; i++) x[i] = (float)rnd() - 0.5f;
    const void *in[1] = {x};
    void *out[1] = {ref};
    setenv("PNET_ADAPTIVE_THREADS", "1", 1);
    pnetrt_model *m;
    assert_int_equal(pnetrt_create(&m, c.desc, NULL), 0);
    setenv("PNET_ADAPTIVE_THREADS", "0", 1);
    assert_int_equal(pnetrt_set_threads(m, 1), 0);
    assert_int_equal(pnetrt_infer(m, B, in, out), 0);
    assert_int_equal(pnetrt_last_plan(m), PNETRT_PLAN_STATIC);
    assert_int_equal(pnetrt_set_threads(m, 2), 0);
    out[0] = got;
    int claimed = 0, plain = 0, alone = 0;
    for (int k = 0; k < 80; k++) {
        memset(got, 0, sizeof(float) * B * 8);
        assert_int_equal(pnetrt_infer(m, B, in, out), 0);
        assert_memory_equal(got, ref, sizeof(float) * B * 8);
        if (pnetrt_last_plan(m) == PNETRT_PLAN_CLAIMED) claimed++, assert_int_equal(pnetrt_last_threads(m), 2);
        else if (pnetrt_last_plan(m) == PNETRT_PLAN_ONE) alone++, assert_int_equal(pnetrt_last_threads(m), 1);
        else plain++;
    }
    assert_true(omp_get_num_procs() < 2 || (claimed >= 1 && plain >= 1 && alone >= 1 && claimed + plain + alone == 80));
    pnetrt_destroy(m);
    release(&c);
    /* A two-stage pipeline on two threads: bound to a stage each, claiming the stages, or every
     * stage in turn on one thread. */
    compile_net("network cq { input x : f32[batch, 64];\n"
                "  @partition(0) h = relu(dense(x, 256)); @partition(1) { output y = dense(h, 8); } }", true, 3, &c);
    setenv("PNET_ADAPTIVE_THREADS", "1", 1);
    assert_int_equal(pnetrt_create(&m, c.desc, NULL), 0);
    setenv("PNET_ADAPTIVE_THREADS", "0", 1);
    assert_int_equal(pnetrt_set_threads(m, 1), 0);
    out[0] = ref;
    assert_int_equal(pnetrt_infer(m, B, in, out), 0);
    out[0] = got;
    assert_int_equal(pnetrt_set_threads(m, 2), 0);
    assert_true(pnetrt_pipelined(m));
    claimed = plain = alone = 0;
    for (int k = 0; k < 80; k++) {
        memset(got, 0, sizeof(float) * B * 8);
        assert_int_equal(pnetrt_infer(m, B, in, out), 0);
        assert_memory_equal(got, ref, sizeof(float) * B * 8);
        if (pnetrt_last_plan(m) == PNETRT_PLAN_CLAIMED) claimed++;
        else if (pnetrt_last_plan(m) == PNETRT_PLAN_ONE) alone++;
        else plain++;
    }
    assert_true(claimed >= 1 && plain >= 1 && alone >= 1 && claimed + plain + alone == 80);
    /* Micro-batches the user sets keep the pipeline a pipeline: bound or claimed stages only. */
    assert_int_equal(pnetrt_set_microbatches(m, 4), 0);
    claimed = plain = alone = 0;
    for (int k = 0; k < 40; k++) {
        assert_int_equal(pnetrt_infer(m, B, in, out), 0);
        assert_memory_equal(got, ref, sizeof(float) * B * 8);
        alone += pnetrt_last_plan(m) == PNETRT_PLAN_ONE;
    }
    assert_int_equal(alone, 0);
    pnetrt_destroy(m);
    free(x), free(ref), free(got);
    release(&c);
}

/* A batch of n random samples of `features` inputs and `targets` targets in [-0.5, 0.5), for a
 * training test (in: the step's inputs; the caller frees x and t). */
static void train_batch(int n, int features, int targets, float **x, float **t, const void **in) {
    *x = malloc(sizeof(float) * (size_t)(n * features));
    *t = malloc(sizeof(float) * (size_t)(n * targets));
    assert_non_null(*x);
    assert_non_null(*t);
    for (int i = 0; i < n * features; i++) (*x)[i] = (float)rnd() - 0.5f;
    for (int i = 0; i < n * targets; i++) (*t)[i] = (float)rnd() - 0.5f;
    in[0] = *x;
    in[1] = *t;
}

/* A training-plans test's end: m's weights must be ref's bit for bit; frees both, the batch and
 * the compiled network. */
static void end_pair(pnetrt_model *m, pnetrt_model *ref, int64_t P, float *x, float *t, compiled *c) {
    assert_memory_equal(pnetrt_params_mut(m), pnetrt_params_mut(ref), sizeof(float) * (size_t)P);
    pnetrt_destroy(m);
    pnetrt_destroy(ref);
    free(x), free(t);
    release(c);
}

/* A training-plans test's two models of d on `threads` threads, with the same parameters: ref
 * runs the plan asked for (PNET_ADAPTIVE_THREADS=0), m chooses among plans. */
static void plan_pair(const pnetrt_desc *d, int threads, pnetrt_model **ref, pnetrt_model **m) {
    setenv("PNET_ADAPTIVE_THREADS", "0", 1);
    assert_int_equal(pnetrt_create(ref, d, NULL), 0);
    setenv("PNET_ADAPTIVE_THREADS", "1", 1);
    assert_int_equal(pnetrt_create(m, d, NULL), 0);
    setenv("PNET_ADAPTIVE_THREADS", "0", 1);
    assert_int_equal(pnetrt_set_threads(*ref, threads), 0);
    assert_int_equal(pnetrt_set_threads(*m, threads), 0);
    memcpy(pnetrt_params_mut(*m), pnetrt_params_mut(*ref), sizeof(float) * (size_t)d->param_floats);
}

/* A pipelined training step runs as the pipeline or, when measured cheaper, unpipelined on one
 * thread (probing the other one step in 32; from the first step with pnetrt_train_try_plans):
 * over 80 steps both run, and every step's gradient and
 * the weights after them are bitwise those of the pipeline alone (PNET_ADAPTIVE_THREADS=0).
 * Micro-batches the user sets keep every step pipelined. */
static void test_train_plan(void **s) {
    (void)s;
    compiled c;
    compile_net("network tp { input x : f32[batch, 64];\n"
                "  @partition(0) h = relu(dense(x, 256)); @partition(1) { output y = dense(h, 8); }\n"
                "  @pipeline(microbatches = 4, schedule = 1f1b);\n"
                "  train { t : f32[batch, 8]; loss = mse(y, t); optimizer = sgd(lr = 0.01, momentum = 0.9); batch = 256; } }",
                false, 3, &c);
    const pnetrt_desc *d = c.desc;
    enum { B = 256 };
    int64_t P = d->param_floats;
    float *x, *t;
    const void *in[2];
    train_batch(B, 64, 8, &x, &t, in);
    pnetrt_model *ref, *m;
    plan_pair(d, 2, &ref, &m);
    assert_int_equal(pnetrt_train_try_plans(m), 0); /* a quiet machine's pipeline would not try one thread */
    int piped = 0, alone = 0;
    float l0, l1;
    for (int k = 0; k < 80; k++) {
        assert_int_equal(pnetrt_train_step(ref, B, in, &l0), 0);
        assert_non_null(strstr(pnetrt_train_schedule(ref), "pipeline of 2 stages"));
        assert_int_equal(pnetrt_train_step(m, B, in, &l1), 0);
        assert_memory_equal(&l1, &l0, sizeof l0);
        assert_memory_equal(pnetrt_train_grad(m), pnetrt_train_grad(ref), sizeof(float) * (size_t)P);
        if (strstr(pnetrt_train_schedule(m), "unpipelined")) alone++;
        else if (strstr(pnetrt_train_schedule(m), "pipeline of 2 stages")) piped++;
    }
    assert_true(piped >= 1 && alone >= 1 && piped + alone == 80);
    assert_memory_equal(pnetrt_params_mut(m), pnetrt_params_mut(ref), sizeof(float) * (size_t)P);
    assert_int_equal(pnetrt_set_microbatches(m, 4), 0);
    for (int k = 0; k < 40; k++) {
        assert_int_equal(pnetrt_train_step(m, B, in, &l1), 0);
        assert_non_null(strstr(pnetrt_train_schedule(m), "pipeline of 2 stages"));
    }
    pnetrt_destroy(m);
    pnetrt_destroy(ref);
    free(x), free(t);
    release(&c);
}

/* Replicas' training steps have the same two plans: the team's threads, or one thread, which a
 * quiet machine weighs only after pnetrt_train_try_plans (a busy one while it stays busy); with
 * more threads than CPUs, a third: one thread per CPU. Over 80 steps each runs, every gradient and
 * the weights after them bitwise those of the threads alone. */
static void train_plan_replicas(int threads) {
    compiled c;
    /* Large enough a step (0.4 GFLOP) that no team of up to 8 is cut for its size; under a MiB of
     * weights, so 8 chunks of 32 (plan_train.c). */
    compile_net("network tr { input x : f32[batch, 256]; h = relu(dense(x, 960)); output y = dense(h, 8);\n"
                "  train { t : f32[batch, 8]; loss = mse(y, t); optimizer = adam(lr = 0.001); batch = 256; } }",
                false, 3, &c);
    const pnetrt_desc *d = c.desc;
    enum { B = 256 };
    int64_t P = d->param_floats;
    float *x = malloc(sizeof(float) * B * 256), *t = malloc(sizeof(float) * B * 8);
    for (int i = 0; i < B * 256; i++) x[i] = (float)rnd() - 0.5f;
    for (int i = 0; i < B * 8; i++) t[i] = (float)rnd() - 0.5f;
    const void *in[2] = {x, t};
    pnetrt_model *ref, *m;
    plan_pair(d, threads, &ref, &m);
    assert_int_equal(pnetrt_train_try_plans(m), 0);
    int split = 0, alone = 0, cores = 0;
    bool over = threads > omp_get_num_procs();
    char all[64], one[64];
    snprintf(all, sizeof all, "%d threads: %d replicas", threads, threads);
    snprintf(one, sizeof one, "1 thread: %lld chunks of %lld, one replica", (long long)(B / d->train->chunk),
             (long long)d->train->chunk);
    float l0, l1;
    for (int k = 0; k < 80; k++) {
        assert_int_equal(pnetrt_train_step(ref, B, in, &l0), 0);
        assert_non_null(strstr(pnetrt_train_schedule(ref), all));
        assert_int_equal(pnetrt_train_step(m, B, in, &l1), 0);
        assert_memory_equal(&l1, &l0, sizeof l0);
        assert_memory_equal(pnetrt_train_grad(m), pnetrt_train_grad(ref), sizeof(float) * (size_t)P);
        if (strstr(pnetrt_train_schedule(m), one)) alone++;
        else if (strstr(pnetrt_train_schedule(m), "(one per CPU")) cores++;
        else if (strstr(pnetrt_train_schedule(m), all)) split++;
    }
    assert_true(split >= 1 && alone >= 1 && (cores >= 1) == over && split + alone + cores == 80);
    end_pair(m, ref, P, x, t, &c);
}

static void test_train_plan_replicas(void **s) {
    (void)s;
    train_plan_replicas(2);
}

static void test_train_plan_more_threads_than_cpus(void **s) {
    (void)s;
    train_plan_replicas(omp_get_num_procs() * 2 + 1 > 8 ? 8 : omp_get_num_procs() * 2 + 1);
}

/* A step's chunks cut among replica groups by their speed (split.h), here fixed as if measured:
 * 7 + 1 chunks on 2 threads, 4 + 3 + 1 on 3 (more threads than this machine's cores), for one
 * segment and for a network that batchnorm cuts into segments; the losses, gradients and weights
 * after 6 steps are bitwise one thread's. */
static void train_split(const char *src, int threads, const double *sec, const char *runs) {
    compiled c;
    compile_net(src, false, 3, &c);
    const pnetrt_desc *d = c.desc;
    enum { B = 256 };
    int64_t P = d->param_floats;
    float *x, *t;
    const void *in[2];
    train_batch(B, 64, 8, &x, &t, in);
    pnetrt_model *ref, *m;
    plan_pair(d, 1, &ref, &m);
    assert_int_equal(pnetrt_set_threads(m, threads), 0);
    assert_int_equal(pnetrt_set_replicas(m, threads), 0);
    assert_int_equal(pnetrt_train_fix_split(m, sec, threads), 0);
    float l0, l1;
    for (int k = 0; k < 6; k++) {
        assert_int_equal(pnetrt_train_step(ref, B, in, &l0), 0);
        assert_int_equal(pnetrt_train_step(m, B, in, &l1), 0);
        if (!strstr(pnetrt_train_schedule(m), runs)) fail_msg("schedule '%s' lacks '%s'", pnetrt_train_schedule(m), runs);
        assert_memory_equal(&l1, &l0, sizeof l0);
        assert_memory_equal(pnetrt_train_grad(m), pnetrt_train_grad(ref), sizeof(float) * (size_t)P);
    }
    end_pair(m, ref, P, x, t, &c);
}

static void test_train_split(void **s) {
    (void)s;
    const char *mlp = "network ts { input x : f32[batch, 64]; h = relu(dense(x, 512)); output y = dense(h, 8);\n"
                      "  train { t : f32[batch, 8]; loss = mse(y, t); optimizer = adam(lr = 0.001); batch = 256; } }";
    const char *bn = "network tb { input x : f32[batch, 64]; h = relu(batchnorm(dense(x, 512))); output y = dense(h, 8);\n"
                     "  train { t : f32[batch, 8]; loss = mse(y, t); optimizer = sgd(lr = 0.01, momentum = 0.9); batch = 256; } }";
    train_split(mlp, 2, (double[]){1e-3, 4e-3}, "2 replicas, 8 chunks of 32, runs of 7+1 chunks by the replicas' speed");
    train_split(mlp, 3, (double[]){1e-3, 1e-3, 3e-3}, "runs of 4+3+1 chunks");
    train_split(bn, 2, (double[]){4e-3, 1e-3}, "runs of 1+7 chunks");
}

/* Threads go to stages by FLOPs (each extra one where the work per thread is largest), or by
 * the user's shares, exactly when the pipeline has as many threads as they add up to. */
static void test_stage_threads(void **s) {
    (void)s;
    compiled c;
    compile_net("network st { input x : f32[batch, 64];\n"
                "  @partition(0) a = dense(x, 64); @partition(1) b = dense(a, 192); @partition(2) { output y = dense(b, 16); } }",
                true, 3, &c);
    pnetrt_model *m;
    assert_int_equal(pnetrt_create(&m, c.desc, NULL), 0);
    int count[3];
    pnetrt_share_threads(m, 3, 3, count);
    assert_true(count[0] == 1 && count[1] == 1 && count[2] == 1);
    pnetrt_share_threads(m, 7, 3, count); /* FLOPs 4 : 12 : 3; the slowest then does 3 per thread */
    assert_true(count[0] == 2 && count[1] == 4 && count[2] == 1);
    int shares[3] = {2, 1, 3};
    assert_int_equal(pnetrt_set_stage_threads(m, shares, 3), 0);
    pnetrt_share_threads(m, 6, 3, count);
    assert_true(count[0] == 2 && count[1] == 1 && count[2] == 3);
    pnetrt_share_threads(m, 12, 3, count);
    assert_true(count[0] == 4 && count[1] == 2 && count[2] == 6);
    assert_int_not_equal(pnetrt_set_stage_threads(m, shares, 2), 0);
    assert_non_null(strstr(pnetrt_last_error(m), "3 stages"));
    shares[1] = 0;
    assert_int_not_equal(pnetrt_set_stage_threads(m, shares, 3), 0);
    assert_int_equal(pnetrt_set_stage_threads(m, NULL, 0), 0);
    pnetrt_share_threads(m, 7, 3, count);
    assert_int_equal(count[1], 4);
    pnetrt_destroy(m);
    release(&c);
}

static void test_activations(void **s) {
    (void)s;
    check_network("network ac { input x : f32[batch, 37];\n"
                  "  output a = relu(x); output b = leaky_relu(x, 0.2); output c = sigmoid(x * 8);\n"
                  "  output d = tanh(x * 0.1); output e = tanh(x * 30); output f = gelu(x * 3); output g = dropout(x, 0.3);\n"
                  "  output h = softmax(x * 10); output i = log_softmax(x); output j = silu(x * 6);\n"
                  "  output k = silu(dense(x, 9)); output l = silu(x); }");
}

static void test_softmax_axes(void **s) {
    (void)s;
    check_network("network sa { input x : f32[batch, 5, 7, 3];\n"
                  "  output a = softmax(x, axis = 1); output b = log_softmax(x, axis = 2); output c = softmax(x, axis = -1); }");
}

/* Square and non-square [T, S] matrices, rows of one, and S not a multiple of the vector width. */
static void test_causal_softmax(void **s) {
    (void)s;
    check_network("network cs { input x : f32[batch, 5, 19]; input y : f32[batch, 2, 9, 9]; input z : f32[batch, 1, 3];\n"
                  "  output a = causal_softmax(x * 4); output b = causal_softmax(y); output c = causal_softmax(z);\n"
                  "  output d = causal_softmax(transpose(x, [0, 2, 1])); }");
}

/* Slices of every axis after the batch axis, unbatched, and of one element. */
static void test_slice(void **s) {
    (void)s;
    check_network("network sl { input x : f32[batch, 4, 6, 19]; input w : f32[5, 3];\n"
                  "  output a = slice(x, 1, 1, 3); output b = slice(x, 2, -4, 6); output c = slice(x, -1, 2, 19);\n"
                  "  output d = slice(w, 0, 4, 5); output e = slice(relu(x), 3, 18, 19) * 2; }");
}

/* elu and softplus on their own kernels and fused (softplus across its threshold and far below);
 * prelu per channel of NCHW, per feature of [batch, F] and of [batch, C, L]. */
static void test_elu_softplus_prelu(void **s) {
    (void)s;
    check_network("network ep { input x : f32[batch, 37]; input y : f32[batch, 3, 7, 5];\n"
                  "  output a = elu(x * 4); output b = elu(x, alpha = 0.3); output c = softplus(x * 30);\n"
                  "  output d = softplus(dense(x, 9)) * 2; output e = elu(conv2d(y, 4, 3, padding = 1)) + 1;\n"
                  "  output f = prelu(x * 3); output g = prelu(conv2d(y, 5, 3)); output h = prelu(reshape(y, [batch, 3, 35])); }");
}

/* pad: [rows, cols], four sides, before a conv2d, of an unbatched input and at the vector width. */
static void test_pad(void **s) {
    (void)s;
    check_network("network pd { input x : f32[batch, 3, 6, 19]; input w : f32[2, 3, 4, 5];\n"
                  "  output a = pad(x, [1, 2]); output b = pad(x, [0, 3, 17, 1]); output c = conv2d(pad(x, [1, 1]), 4, 3);\n"
                  "  output d = pad(w, [2, 0]); output e = pad(relu(x), [0, 0, 0, 16]) * 2; }");
}

/* Grouped conv2d by direct taps (fewer outputs per group than a tile's rows): groups 2, depthwise
 * (with stride, padding and a multiplier), stride 1 without padding (the dense conv's shifted
 * path), a folded batchnorm and a maxpool2d (not fused in); and as a GEMM per group (g, h). */
static void test_grouped_conv(void **s) {
    (void)s;
    check_network("network gc { input x : f32[batch, 6, 11, 9];\n"
                  "  output a = conv2d(x, 4, 3, padding = 1, groups = 2); output b = relu(conv2d(x, 6, 3, stride = 2, padding = 1, groups = 6));\n"
                  "  output c = conv2d(x, 12, [3, 2], bias = false, groups = 6); output d = conv2d(x, 9, 1, groups = 3);\n"
                  "  output e = relu(batchnorm(conv2d(x, 6, 3, bias = false, groups = 6)));\n"
                  "  output f = maxpool2d(relu(conv2d(x, 6, 3, groups = 3)), 2);\n"
                  "  output g = conv2d(x, 16, 3, padding = 1, groups = 2); output h = relu(conv2d(x, 18, [2, 3], stride = 2, groups = 2)); }");
}

/* pass_fuse may put any elementwise op of one tensor in an epilogue, which applies its row's
 * unary column: every such op has one, and one for its backward where cg_bwd_unary is it. */
static void test_unary_columns(void **s) {
    (void)s;
    for (int op = 0; op < PN_OP_COUNT; op++) {
        const cg_op_row *r = cg_op((pn_op)op);
        const char *sig = pn_ops[op].sig;
        bool one_tensor = sig && strstr(sig, ":tensor") && !strstr(strstr(sig, ":tensor") + 7, ":tensor");
        if ((pn_ops[op].flags & PN_OPF_ELTWISE) && one_tensor) {
            if (!r->unary) fail_msg("elementwise op '%s' has no unary column", pn_ops[op].name);
            if (r->backward == cg_bwd_unary && !r->unary_grad) fail_msg("op '%s' has no unary_grad column", pn_ops[op].name);
        }
    }
}

/* Positions of ids and of a hidden state as outputs, and feeding embeddings (learned positions). */
static void test_positions(void **s) {
    (void)s;
    check_network("network po { input ids : i32[batch, 9]; input x : f32[batch, 3, 5, 2]; input w : f32[4, 6];\n"
                  "  output p = positions(ids); output q = positions(x, axis = 2); output r = positions(w, axis = 0);\n"
                  "  output e = embedding(ids, 11, 5) + embedding(positions(ids), 9, 5);\n"
                  "  output f = embedding(positions(embedding(ids, 11, 3)), 12, 4); }");
}

static void test_shapes(void **s) {
    (void)s;
    check_network("network sh { input x : f32[batch, 4, 6]; input y : f32[batch, 3, 6];\n"
                  "  output a = flatten(x); output b = reshape(x, [-1, 8]); output c = transpose(x, [0, 2, 1]);\n"
                  "  output d = concat(x, y, x, axis = 1); output e = concat(x, x, axis = -1); }");
}

static void test_binary_broadcast(void **s) {
    (void)s;
    check_network("network bc { input x : f32[batch, 4, 5]; input r : f32[batch, 1, 5]; input c : f32[batch, 4, 1];\n"
                  "  output a = x + r; output b = x - c; output m = x * r * c; output k = x * 0.5 + 1; output n = -x; }");
}

/* Division by a tensor, broadcast both ways and by an unbatched divisor; a number over a tensor
 * alone and in dense's epilogue. Divisors are kept away from zero. */
static void test_div(void **s) {
    (void)s;
    check_network("network dv { input x : f32[batch, 4, 5]; input r : f32[batch, 1, 5]; input c : f32[batch, 4, 1];\n"
                  "  input w : f32[5]; v = x * x + 0.5;\n"
                  "  output a = x / (r * r + 1); output b = c / v; output d = x / (w * w + 0.25); output e = 2 / v;\n"
                  "  output f = 1 / (sigmoid(dense(x, 7)) + 0.5); }");
}

/* Tensor constants as operands of + - * / (broadcast, and in either position), of matmul, folded
 * into another constant, and as an output of their own. */
static void test_tensor_constants(void **s) {
    (void)s;
    check_network("network tc { input x : f32[batch, 3, 5];\n"
                  "  const m : f32[5] = [0.5, -1, 2, 0, 3.25]; const sd : f32[3, 1] = [2, 0.5, 4];\n"
                  "  const p : f32[5, 2] = [1, 0, -1, 2, 0.5, 0.5, 3, -2, 1, 1];\n"
                  "  output a = (x - m) / sd; output b = m * x + sd; output c = matmul(x, p); output d = x / (m * m + 1);\n"
                  "  output e = 2 - dense(x, 5) * m; output f = p; }");
}

static void test_matmul(void **s) {
    (void)s;
    check_network("network mm { input a : f32[batch, 3, 5]; input b : f32[batch, 5, 7]; input w : f32[5]; input m : f32[5, 4];\n"
                  "  input v : f32[batch, 5]; input c : f32[2, 5, 3];\n"
                  "  output p = matmul(a, b); output q = matmul(a, transpose(a, [0, 2, 1]));\n"
                  "  output r = matmul(w, b); output t = matmul(a, w); output u = matmul(v, m); output x = matmul(a, m);\n"
                  "  output y = matmul(reshape(a, [batch, 1, 3, 5]), c); }");
}

static void test_embedding(void **s) {
    (void)s;
    check_network("network em { input ids : i32[batch, 6]; e = embedding(ids, 11, 9); output y = e; output z = reshape(e, [batch, 54]); }");
}

static void test_outputs(void **s) {
    (void)s;
    check_network("network ou { input x : f32[batch, 9]; h = dense(x, 9); output a = h; output b = h; output c = relu(h); output d = x; }");
}

int main(void) {
    (void)&pnetrt_barrier; /* the JIT resolves it in this process */
    setenv("PNET_ADAPTIVE_THREADS", "0", 1); /* small tests must still run on every thread */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense),           cmocka_unit_test(test_conv_pool), cmocka_unit_test(test_conv_pool_fused),
        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_folded_batchnorm), cmocka_unit_test(test_fused_constants),
        cmocka_unit_test(test_pipeline_stages), cmocka_unit_test(test_feature_shards),
        cmocka_unit_test(test_nested_in_caller_team), cmocka_unit_test(test_nested_with_nesting_on),
        cmocka_unit_test(test_picked_replicas), cmocka_unit_test(test_claimed_plan), cmocka_unit_test(test_train_plan),
        cmocka_unit_test(test_train_plan_replicas), cmocka_unit_test(test_train_split),
        cmocka_unit_test(test_train_plan_more_threads_than_cpus),
        cmocka_unit_test(test_stage_threads),
        cmocka_unit_test(test_activations),     cmocka_unit_test(test_softmax_axes), cmocka_unit_test(test_causal_softmax), cmocka_unit_test(test_slice), cmocka_unit_test(test_positions), cmocka_unit_test(test_elu_softplus_prelu), cmocka_unit_test(test_pad), cmocka_unit_test(test_grouped_conv), cmocka_unit_test(test_unary_columns), cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_binary_broadcast), cmocka_unit_test(test_div), cmocka_unit_test(test_tensor_constants), cmocka_unit_test(test_matmul),     cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_outputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
