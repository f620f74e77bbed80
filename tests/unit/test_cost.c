/* Unit tests of the cost model (compiler/ir/report.c, profile.c): op kinds, fused activations,
 * the pipeline time and micro-batch choice, and bench --profile files read back, good and bad. */
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

#include "ir/report.h"

static const char two_stages[] =
    "network p stages=2 replicas=1 microbatches=4 schedule=gpipe\n"
    "  x = input() : f32[batch,3,8,8] stage=0 shard=1\n"
    "  c = conv2d(x) out_channels=4 kernel=[3,3] stride=[1,1] padding=[1,1] bias=false : f32[batch,4,8,8] stage=0 shard=1  # c.weight[4,3,3,3]\n"
    "  r = relu(c) : f32[batch,4,8,8] stage=0 shard=1\n"
    "  p = maxpool2d(r) size=[2,2] stride=[2,2] padding=[0,0] : f32[batch,4,4,4] stage=1 shard=1\n"
    "  f = flatten(p) : f32[batch,64] stage=1 shard=1\n"
    "  d = dense(f) units=10 bias=true : f32[batch,10] stage=1 shard=1  # d.weight[10,64] d.bias[10]\n"
    "  s = softmax(d) axis=1 : f32[batch,10] stage=1 shard=1 output\n"
    "  output y = s\n";

static pn_graph *parse(const char *text) {
    char err[256];
    pn_graph *g = pn_graph_parse(text, strlen(text), err, sizeof err);
    if (!g) fail_msg("%s", err);
    return g;
}

static void test_kinds(void **state) {
    (void)state;
    pn_graph *g = parse(two_stages);
    assert_int_equal(pn_node_cost_kind(&g->nodes[0]), -1); /* input */
    assert_int_equal(pn_node_cost_kind(&g->nodes[1]), PN_COST_CONV);
    assert_int_equal(pn_node_cost_kind(&g->nodes[2]), PN_COST_ELTWISE);
    assert_int_equal(pn_node_cost_kind(&g->nodes[3]), PN_COST_POOL);
    assert_int_equal(pn_node_cost_kind(&g->nodes[4]), -1); /* a view */
    assert_int_equal(pn_node_cost_kind(&g->nodes[5]), PN_COST_DENSE);
    assert_int_equal(pn_node_cost_kind(&g->nodes[6]), PN_COST_NORM);
    /* The relu runs in the conv's epilogue: nothing of its own. The conv costs its FLOPs at the
     * convolution rate at least. */
    assert_true(pn_node_cost(g, &g->nodes[2]) == 0);
    assert_true(pn_node_cost(g, &g->nodes[1]) >= (double)pn_node_flops(g, &g->nodes[1]) / pn_cost_rates[PN_COST_CONV].flops_per_s);
    assert_true(pn_node_cost(g, &g->nodes[4]) == 0);
    assert_true(pn_node_cost(g, &g->nodes[6]) > 0);
    pn_graph_free(g);
}

/* A relu of an input has no kernel to ride on: it costs element-wise time. */
static void test_unfused_eltwise(void **state) {
    (void)state;
    pn_graph *g = parse("network e stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
                        "  x = input() : f32[batch,1024] stage=0 shard=1\n"
                        "  r = relu(x) : f32[batch,1024] stage=0 shard=1 output\n"
                        "  output y = r\n");
    assert_true(pn_node_cost(g, &g->nodes[1]) > 0);
    pn_graph_free(g);
}

static void test_pipeline_time(void **state) {
    (void)state;
    pn_stage_stats st[4] = {{.cost = 1e-6}, {.cost = 1e-6}, {.cost = 1e-6}, {.cost = 1e-6}};
    double bubble;
    /* Equal stages, nothing per call: the textbook bubble (S-1)/(M+S-1), and more is better. */
    pn_pipeline_time(st, 4, 64, 64, 8, &bubble);
    assert_true(fabs(bubble - 3.0 / 11.0) < 1e-12);
    /* (the least count within 1% of the best time) */
    int many = pn_best_microbatches(st, 4, 64, 64);
    assert_true(many >= 32 && many <= 64);
    assert_true(pn_pipeline_time(st, 4, 64, 64, many, NULL) <= 1.01 * pn_pipeline_time(st, 4, 64, 64, 64, NULL));
    assert_true(pn_best_microbatches(st, 4, 8, 8) <= 8); /* at most one sample each */
    /* Chunks stream one after another: a batch of four chunks fills the pipeline once. */
    pn_pipeline_time(st, 4, 256, 64, 8, &bubble);
    assert_true(fabs(bubble - 3.0 / 35.0) < 1e-12);
    assert_true(fabs(pn_pipeline_time(st, 4, 256, 64, 8, NULL) - 35.0 * 1e-6 * 8 / 256) < 1e-15);
    /* A large cost per micro-batch: one micro-batch is best. */
    for (int s = 0; s < 4; s++) st[s].call = 1e-3;
    assert_int_equal(pn_best_microbatches(st, 4, 64, 64), 1);
    /* In between, a count in between. */
    for (int s = 0; s < 4; s++) st[s].call = 2e-6;
    int M = pn_best_microbatches(st, 4, 64, 64);
    assert_true(M > 1 && M < 64);
    assert_true(pn_pipeline_time(st, 4, 64, 64, M, NULL) <= pn_pipeline_time(st, 4, 64, 64, 1, NULL));
    assert_true(pn_pipeline_time(st, 4, 64, 64, M, NULL) <= pn_pipeline_time(st, 4, 64, 64, 64, NULL));
    /* Equal stages where a wait costs a hand-off's latency: the second stage starts that much late,
     * and never waits again; both idle the longer. */
    pn_stage_stats lag[2] = {{.cost = 1e-6}, {.cost = 1e-6, .wait = 8e-6}};
    double t = pn_pipeline_time(lag, 2, 64, 64, 8, &bubble);
    assert_true(fabs(t - (8e-6 + 8e-6 + 8 * 8e-6) / 64) < 1e-15);
    assert_true(fabs(bubble - 0.2) < 1e-12);
    /* A faster second stage waits whenever it has caught up (micro-batches 0, 3 and 6 here): it ends
     * at 70 us where the first ends at 64. */
    lag[1].cost = 0.375e-6;
    assert_true(fabs(pn_pipeline_time(lag, 2, 64, 64, 8, NULL) - 70e-6 / 64) < 1e-15);
    /* A slower second stage never waits after the first micro-batch. */
    lag[1].cost = 3e-6;
    assert_true(fabs(pn_pipeline_time(lag, 2, 64, 64, 8, NULL) - (8e-6 + 8e-6 + 8 * 24e-6) / 64) < 1e-15);
    /* One slow stage: it sets the pace, and the others idle. */
    pn_stage_stats un[2] = {{.cost = 3e-6}, {.cost = 1e-6}};
    pn_pipeline_time(un, 2, 64, 64, 64, &bubble);
    assert_true(bubble > 0.3 && bubble < 0.35); /* the fast stage idles 2/3 of the time */
}

/* A convolution that gathers its patches (padded, strided, or grouped with groups of at least
 * PN_COST_MR channels) pays per sample for the panel's elements and rows; one with stride 1 and no
 * padding reads its input in place, and a depthwise one runs direct taps: neither gathers. */
static void test_conv_gathers(void **state) {
    (void)state;
    pn_graph *g = parse("network c stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
                        "  x = input() : f32[batch,4,10,10] stage=0 shard=1\n"
                        "  a = conv2d(x) out_channels=16 kernel=[3,3] stride=[1,1] padding=[1,1] bias=false : f32[batch,16,10,10] stage=0 shard=1 output  # a.weight[16,4,3,3]\n"
                        "  b = conv2d(x) out_channels=16 kernel=[3,3] stride=[1,1] padding=[0,0] bias=false : f32[batch,16,8,8] stage=0 shard=1 output  # b.weight[16,4,3,3]\n"
                        "  s = conv2d(x) out_channels=16 kernel=[3,3] stride=[2,2] padding=[0,0] bias=false : f32[batch,16,4,4] stage=0 shard=1 output  # s.weight[16,4,3,3]\n"
                        "  d = conv2d(x) out_channels=4 kernel=[3,3] stride=[1,1] padding=[1,1] bias=false groups=4 : f32[batch,4,10,10] stage=0 shard=1 output  # d.weight[4,1,3,3]\n"
                        "  h = conv2d(x) out_channels=16 kernel=[3,3] stride=[1,1] padding=[0,0] bias=false groups=2 : f32[batch,16,8,8] stage=0 shard=1 output  # h.weight[16,2,3,3]\n"
                        "  output ya = a\n  output yb = b\n  output ys = s\n  output yd = d\n  output yh = h\n");
    const pn_cost_rate *r = &pn_cost_rates[PN_COST_CONV];
    assert_true(pn_conv_gathers(&g->nodes[1], PN_COST_MR) && !pn_conv_gathers(&g->nodes[2], PN_COST_MR));
    assert_true(pn_conv_gathers(&g->nodes[3], PN_COST_MR) && !pn_conv_gathers(&g->nodes[4], PN_COST_MR));
    /* Groups of 8 channels fill a tile's rows: they gather, even with stride 1 and no padding. */
    assert_true(pn_conv_gathers(&g->nodes[5], PN_COST_MR));
    double call = r->call_s / (double)pn_report_chunk(g);
    for (int i = 1; i <= 5; i++) {
        const pn_node *n = &g->nodes[i];
        double oh = (double)n->shape.d[2], ow = (double)n->shape.d[3], rows = 4 * 9 * oh;
        double want = (double)pn_node_flops(g, n) / r->flops_per_s +
                      4.0 * (400 + (double)n->shape.d[1] * oh * ow) / r->bytes_per_s + call;
        if (i == 1 || i == 3 || i == 5) want += rows * ow / r->gather_per_s + rows / r->gather_rows_per_s;
        assert_true(fabs(pn_node_cost(g, n) - want) <= 1e-9 * want);
    }
    pn_graph_free(g);
}

/* A max-pool whose windows tile the output of a conv (and its relu) in the same stage runs in the
 * conv's kernel (pass_fuse_pool): it costs nothing of its own, and the conv stores the pooled map,
 * a quarter of the bytes. Across a stage boundary (two_stages) the pool has a kernel of its own. */
static void test_pool_in_conv(void **state) {
    (void)state;
    static const char one_stage[] =
        "network p stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
        "  x = input() : f32[batch,3,8,8] stage=0 shard=1\n"
        "  c = conv2d(x) out_channels=4 kernel=[3,3] stride=[1,1] padding=[1,1] bias=false : f32[batch,4,8,8] stage=0 shard=1  # c.weight[4,3,3,3]\n"
        "  r = relu(c) : f32[batch,4,8,8] stage=0 shard=1\n"
        "  p = maxpool2d(r) size=[2,2] stride=[2,2] padding=[0,0] : f32[batch,4,4,4] stage=0 shard=1 output\n"
        "  output y = p\n";
    pn_graph *g = parse(one_stage), *h = parse(two_stages);
    const pn_cost_rate *r = &pn_cost_rates[PN_COST_CONV];
    assert_true(pn_node_cost(g, &g->nodes[3]) == 0);
    assert_true(pn_node_cost(h, &h->nodes[3]) > 0);
    /* The unpooled map's bytes not stored, and no panel gathered: the pooled kernel reads the
     * input's phase planes (3 channels x 9 taps x 8 output rows of 8 pixels). */
    double fewer = 4.0 * (4 * 8 * 8 - 4 * 4 * 4) / r->bytes_per_s + 3 * 9 * 8 * 8 / r->gather_per_s +
                   3 * 9 * 8 / r->gather_rows_per_s;
    assert_true(fabs(pn_node_cost(h, &h->nodes[1]) - pn_node_cost(g, &g->nodes[1]) - fewer) < 1e-9 * pn_node_cost(h, &h->nodes[1]));
    pn_graph_free(g);
    pn_graph_free(h);
    /* Through a batchnorm that folds into the conv (costing nothing) and a scale by a constant. */
    static const char bn_chain[] =
        "network b stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
        "  x = input() : f32[batch,3,8,8] stage=0 shard=1\n"
        "  c = conv2d(x) out_channels=4 kernel=[3,3] stride=[1,1] padding=[1,1] bias=false : f32[batch,4,8,8] stage=0 shard=1  # c.weight[4,3,3,3]\n"
        "  b = batchnorm(c) eps=0.00001 momentum=0.1 : f32[batch,4,8,8] stage=0 shard=1  # b.weight[4] b.bias[4]\n"
        "  h = const() value=0.5 : f32[] stage=0 shard=1\n"
        "  m = mul(b, h) : f32[batch,4,8,8] stage=0 shard=1\n"
        "  r = relu(m) : f32[batch,4,8,8] stage=0 shard=1\n"
        "  p = maxpool2d(r) size=[2,2] stride=[2,2] padding=[0,0] : f32[batch,4,4,4] stage=0 shard=1 output\n"
        "  output y = p\n";
    g = parse(bn_chain);
    for (int i = 2; i < g->nnodes; i++) assert_true(pn_node_cost(g, &g->nodes[i]) == 0);
    pn_graph_free(g);
}

/* A stage reads what the stage before wrote from another core's cache: the values it reads of
 * earlier stages, once each (r, 4 x 8 x 8 floats), cost PN_COST_XFER a byte on top. */
static void test_stage_inputs(void **state) {
    (void)state;
    pn_graph *g = parse(two_stages);
    pn_stage_stats st[2];
    pn_report_stats(g, st, 2);
    assert_true(st[0].in_bytes == 0 && st[1].in_bytes == 4.0 * 4 * 8 * 8);
    /* The nodes' per-sample parts (pn_node_cost less the per-call part spread over the chunk), and
     * the transfer. */
    double own = 0;
    for (int i = 0; i < g->nnodes; i++) own += g->nodes[i].stage == 1 ? pn_node_cost(g, &g->nodes[i]) : 0;
    own -= st[1].call / (double)pn_report_chunk(g);
    double want = own + 1024 * PN_COST_XFER;
    assert_true(fabs(st[1].cost - want) < 1e-9 * want);
    pn_graph_free(g);
}

/* Micro-batches are the runtime's slices: a call of 70 samples in chunks of 64 and 8 slices each is
 * 8 slices of 8, then the last 6 samples over 8 slices, two of them empty (they run nothing). */
static void test_pipeline_slices(void **state) {
    (void)state;
    pn_stage_stats one[1] = {{.cost = 1e-6, .call = 1e-5}};
    double bubble = 1;
    double t = pn_pipeline_time(one, 1, 70, 64, 8, &bubble);
    assert_true(fabs(t - (70 * 1e-6 + 14 * 1e-5) / 70) < 1e-15);
    assert_true(fabs(bubble) < 1e-12);
    /* Two stages: the last micro-batch, of 1 sample, is the drain; the first, of 8, the fill. */
    pn_stage_stats two[2] = {{.cost = 1e-6}, {.cost = 1e-6}};
    t = pn_pipeline_time(two, 2, 70, 64, 8, &bubble);
    assert_true(fabs(t * 70 - (8e-6 + 70e-6)) < 1e-15);
    assert_true(fabs(bubble - (1 - 140e-6 / (2 * 78e-6))) < 1e-12);
    assert_true(fabs(pn_pipeline_time_on(two, 2, 70, 64, 8, 1, NULL) * 70 - 140e-6) < 1e-15);
}

/* Without a profile, every call reads a layer's parameters again beyond those a core's cache
 * keeps: a dense layer of 64 MiB of weights costs that per call, so small calls of it cost more per
 * sample; one of 40 KiB costs nothing per call for them. */
static void test_params_per_call(void **state) {
    (void)state;
    pn_graph *g = parse("network w stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
                        "  x = input() : f32[batch,4096] stage=0 shard=1\n"
                        "  d = dense(x) units=4096 bias=false : f32[batch,4096] stage=0 shard=1  # d.weight[4096,4096]\n"
                        "  e = dense(d) units=10 bias=false : f32[batch,10] stage=0 shard=1 output  # e.weight[10,4096]\n"
                        "  output y = e\n");
    const pn_cost_rate *r = &pn_cost_rates[PN_COST_DENSE];
    double wide = pn_node_cost(g, &g->nodes[1]), narrow = pn_node_cost(g, &g->nodes[2]);
    double reread = (4.0 * 4096 * 4096 - r->param_cached) / r->param_bytes_per_s;
    assert_true(4.0 * 4096 * 4096 > r->param_cached && 4.0 * 10 * 4096 < r->param_cached);
    long long C = pn_report_chunk(g);
    /* At C samples per call each sample pays a C-th of the re-read, and of the call. */
    double per_sample = (double)pn_node_flops(g, &g->nodes[1]) / r->flops_per_s + 4.0 * 8192 / r->bytes_per_s;
    assert_true(fabs(wide - (per_sample + (r->call_s + reread) / (double)C)) < 1e-9 * wide);
    double small = (double)pn_node_flops(g, &g->nodes[2]) / r->flops_per_s + 4.0 * 4106 / r->bytes_per_s;
    assert_true(fabs(narrow - (small + r->call_s / (double)C)) < 1e-9 * narrow);
    pn_graph_free(g);
}

/* Stages on fewer CPUs than stages take turns: at most `cores` micro-batches at once. */
static void test_pipeline_time_on_fewer_cores(void **state) {
    (void)state;
    pn_stage_stats st[4] = {{.cost = 1e-6}, {.cost = 1e-6}, {.cost = 1e-6}, {.cost = 1e-6}};
    double b0, b1;
    /* A core per stage, or more, or none given: the same as pn_pipeline_time. */
    for (int cores = 0; cores <= 8; cores += 4) {
        assert_true(pn_pipeline_time_on(st, 4, 64, 64, 8, cores, &b1) == pn_pipeline_time(st, 4, 64, 64, 8, &b0));
        assert_true(b0 == b1);
    }
    /* One core: the stages' work one after another, each idle three quarters of the time. */
    double t = pn_pipeline_time_on(st, 4, 64, 64, 8, 1, &b1);
    assert_true(fabs(t - 4 * 64 * 1e-6 / 64) < 1e-15);
    assert_true(fabs(b1 - 0.75) < 1e-12);
    /* Two cores, many micro-batches: twice the single-stage time per sample, each stage idle about
     * half the time (the textbook bubble on a core per stage: 3/67). */
    t = pn_pipeline_time_on(st, 4, 64, 64, 64, 2, &b1);
    assert_true(t >= 2e-6 && t < 2.1e-6);
    assert_true(b1 > 0.5 - 1e-12 && b1 < 0.53);
    assert_true(pn_pipeline_time(st, 4, 64, 64, 64, &b0) < t && b0 < 0.05);
    /* Never faster than the work over the cores, never slower than the work on one core. */
    pn_stage_stats un[3] = {{.cost = 3e-6, .call = 1e-6}, {.cost = 1e-6, .wait = 2e-6}, {.cost = 2e-6}};
    for (int M = 1; M <= 16; M *= 2) {
        double w = 0, on2 = pn_pipeline_time_on(un, 3, 64, 32, M, 2, NULL) * 64;
        for (int s = 0; s < 3; s++) w += (un[s].cost * 32.0 / M + un[s].call) * (2 * M);
        assert_true(on2 >= w / 2 - 1e-15 && on2 <= w + 2 * M * 2e-6 + 1e-15);
        assert_true(on2 >= pn_pipeline_time(un, 3, 64, 32, M, NULL) * 64 - 1e-15);
    }
    assert_true(pn_best_microbatches_on(st, 4, 64, 64, 0) == pn_best_microbatches(st, 4, 64, 64));
}

static char path[64];

static const char *write_profile(const char *text) {
    snprintf(path, sizeof path, "/tmp/pnet_test_cost_%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_profile_report(void **state) {
    (void)state;
    char err[256];
    pn_profile *p = pn_profile_load(write_profile(
        "{\"pnet_profile\": 1, \"network\": \"p\", \"machine\": {\"cpu\": \"Test CPU\", \"cpus\": 2}, \"batch\": 32,"
        " \"samples\": 32, \"threads\": 1, \"barrier_s\": 0, \"xfer_byte_s\": 0, \"later\": [1, {\"x\": null}],"
        " \"layers\": [{\"name\": \"x\", \"kernel\": false, \"forward_s\": 0},"
        " {\"name\": \"c\", \"op\": \"conv2d\", \"kernel\": true, \"forward_s\": 3e-6},"
        " {\"name\": \"r\", \"kernel\": false, \"forward_s\": 0},"
        " {\"name\": \"p\", \"kernel\": true, \"forward_s\": 0.5e-6},"
        " {\"name\": \"d\", \"kernel\": true, \"forward_s\": 0.25e-6},"
        " {\"name\": \"s\", \"kernel\": true, \"forward_s\": 0.25e-6}],"
        " \"training\": {\"threads\": 2, \"batch\": 32, \"steps\": 9, \"pipelined\": true, \"step_s\": 0, \"update_s\": 1e-6,"
        " \"stages\": [{\"stage\": 0, \"forward_s\": 3e-6, \"backward_s\": 6e-6},"
        " {\"stage\": 1, \"forward_s\": 1e-6, \"backward_s\": 2e-6}],"
        " \"layers\": [{\"name\": \"c\", \"stage\": 0, \"forward_s\": 2e-6, \"backward_s\": 4e-6},"
        " {\"name\": \"d\", \"stage\": 1, \"forward_s\": 1e-6, \"backward_s\": 1e-6},"
        " {\"name\": \"s\", \"stage\": 1, \"forward_s\": 0.5e-6, \"backward_s\": 0.5e-6}]}}\n"),
        err, sizeof err);
    if (!p) fail_msg("%s", err);
    assert_string_equal(p->cpu, "Test CPU");
    assert_int_equal(p->cpus, 2);
    assert_int_equal(p->nlayers, 6);
    assert_int_equal(p->samples, 32);
    pn_graph *g = parse(two_stages);
    assert_true(pn_profile_matches(p, g, err, sizeof err));
    g->profile = p;
    pn_stage_stats st[2];
    double balance = pn_report_stats(g, st, 2);
    assert_true(fabs(st[0].cost - 3e-6) < 1e-15);
    assert_true(fabs(st[1].cost - 1e-6) < 1e-15);
    assert_int_equal(st[0].kernels, 1);
    assert_int_equal(st[1].kernels, 3);
    assert_int_equal(pn_report_chunk(g), 32);
    assert_int_equal(pn_report_batch(g), 32);
    assert_true(fabs(balance - 1.5) < 1e-9); /* 3 against a mean of 2 */
    /* Stage 1 reads r's 1024 bytes per sample from stage 0's core: at the profile's rate, or at
     * PN_COST_XFER where the profile did not measure it. */
    p->xfer_byte_s = 1e-10;
    pn_report_stats(g, st, 2);
    assert_true(fabs(st[1].cost - (1e-6 + 1024 * 1e-10)) < 1e-15);
    p->xfer_byte_s = -1;
    pn_report_stats(g, st, 2);
    assert_true(fabs(st[1].cost - (1e-6 + 1024 * PN_COST_XFER)) < 1e-15);
    assert_true(st[0].wait == 0 && st[1].wait == PN_COST_HANDOFF); /* the profile measured no hand-off */
    char *text = pn_graph_report_text(g);
    assert_non_null(strstr(text, "costs: measured by bench --profile"));
    assert_non_null(strstr(text, "Test CPU"));
    assert_non_null(strstr(text, "predicted with these costs for a batch of 32 in chunks of 32"));
    assert_non_null(strstr(text, "  training, measured (2 threads, batch 32): stage 0 forward 3 + backward 6 us, stage 1 forward 1 + "
                                 "backward 2 us per sample; the slowest stage 75% of the stages' time; update 1 us per sample\n"));
    /* Each layer's part of the steps, summed by this network's stages. */
    assert_non_null(strstr(text, "  training by layer, measured: stage 0 forward 2 + backward 4 us, stage 1 forward 1.5 + backward "
                                 "1.5 us per sample; the slowest stage 67% of the stages' time\n"));
    assert_null(strstr(text, "stages will take turns"));
    free(text);
    /* A profile whose steps timed none of this network's layers: no line of zeros. */
    double *fwd = p->train_layer_fwd, *bwd = p->train_layer_bwd, none[7] = {0};
    p->train_layer_fwd = p->train_layer_bwd = none;
    text = pn_graph_report_text(g);
    assert_null(strstr(text, "training by layer"));
    free(text);
    p->train_layer_fwd = fwd;
    p->train_layer_bwd = bwd;
    p->cpus = 1;
    text = pn_graph_report_text(g);
    assert_non_null(strstr(text, "  note: the profiled machine has 1 CPU for 2 stages: stages will take turns on the cores"));
    free(text);
    pn_graph_free(g);
    /* Another network's profile is refused. */
    g = parse("network q stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
              "  x = input() : f32[batch,4] stage=0 shard=1\n"
              "  r = relu(x) : f32[batch,4] stage=0 shard=1 output\n"
              "  output y = r\n");
    assert_false(pn_profile_matches(p, g, err, sizeof err));
    assert_string_equal(err, "the profile is of network 'p', not 'q'");
    pn_graph_free(g);
    pn_profile_free(p);
    unlink(path);
}

/* A profile's micro-batch sizes, spreads and a part per call below zero (a sample costs more in a
 * large call than in a small one), read back and used by the prediction. */
static void test_profile_micro_spread(void **state) {
    (void)state;
    char err[256], spread[512] = "[", half[512] = "[";
    for (int g = 0; g < PN_PROFILE_SPREAD; g++) {
        snprintf(spread + strlen(spread), sizeof spread - strlen(spread), "%s%s", g < 16 ? "0.5" : "1.5",
                 g + 1 < PN_PROFILE_SPREAD ? ", " : "]");
        snprintf(half + strlen(half), sizeof half - strlen(half), "%s%s", g < 16 ? "0.9" : "1.1",
                 g + 1 < PN_PROFILE_SPREAD ? ", " : "]");
    }
    char text[4096];
    snprintf(text, sizeof text,
             "{\"pnet_profile\": 1, \"network\": \"p\", \"batch\": 32, \"samples\": 32, \"small_samples\": 8,"
             " \"micro_samples\": [8, 9], \"threads\": 1, \"barrier_s\": 0, \"xfer_byte_s\": 0,"
             " \"layers\": [{\"name\": \"x\", \"kernel\": false, \"forward_s\": 0},"
             " {\"name\": \"c\", \"kernel\": true, \"forward_s\": 3e-6, \"call_s\": -2e-6, \"micro_s\": [20e-6, 23e-6],"
             " \"spread\": %s},"
             " {\"name\": \"r\", \"kernel\": false, \"forward_s\": 0},"
             " {\"name\": \"p\", \"kernel\": true, \"forward_s\": 0.5e-6},"
             " {\"name\": \"d\", \"kernel\": true, \"forward_s\": 0.25e-6, \"micro_s\": [1e-6, 1.5e-6],"
             " \"spread\": %s},"
             " {\"name\": \"s\", \"kernel\": true, \"forward_s\": 0.25e-6}]}\n",
             spread, half);
    pn_profile *p = pn_profile_load(write_profile(text), err, sizeof err);
    if (!p) fail_msg("%s", err);
    assert_int_equal(p->small, 8);
    assert_true(p->micro_samples[0] == 8 && p->micro_samples[1] == 9);
    assert_true(p->call_s[1] == -2e-6 && p->micro[2] == 20e-6 && p->micro[3] == 23e-6 && p->spread[32] == 0.5);
    assert_true(p->micro[0] == 0 && p->spread[0] == 0); /* the input: none */
    pn_graph *g = parse(two_stages);
    assert_true(pn_profile_matches(p, g, err, sizeof err));
    g->profile = p;
    pn_stage_stats st[2];
    pn_report_stats(g, st, 2);
    /* The chunk's time stays the measured one; the micro-batches' are the measured ones too. */
    assert_true(fabs(st[0].cost * 32 + st[0].call - 3e-6 * 32) < 1e-15);
    assert_true(st[0].micro_n[0] == 8 && st[0].micro_n[1] == 9);
    assert_true(fabs(st[0].micro_t[0] - 20e-6) < 1e-15 && fabs(st[0].micro_t[1] - 23e-6) < 1e-15);
    /* Stage 1: d measured; p and s on their lines (0.5 and 0.25 us a sample, nothing per call). */
    assert_true(fabs(st[1].micro_t[0] - (1e-6 + 0.75e-6 * 8)) < 1e-15);
    assert_true(fabs(st[1].micro_t[1] - (1.5e-6 + 0.75e-6 * 9)) < 1e-15);
    /* Stage 0 is all c: its spread is c's. Stage 1's is d's, diluted by p and s, which do not spread. */
    /* 1.5 / 0.5, each over their mean */
    assert_true(fabs(st[0].spread[PN_PROFILE_SPREAD - 1] / st[0].spread[0] - 3) < 1e-9);
    double mean = 0;
    for (int g2 = 0; g2 < PN_PROFILE_SPREAD; g2++) mean += st[0].spread[g2] / PN_PROFILE_SPREAD;
    assert_true(fabs(mean - 1) < 1e-12);
    assert_true(st[0].slot == 0 && st[1].slot == 0); /* the micro-batches were timed in the slots */
    double w = 0.25; /* d's part of stage 1 (at 8 samples, on the lines of cost and call) */
    assert_true(fabs(st[1].spread[PN_PROFILE_SPREAD - 1] / st[1].spread[0] - (1 + 0.1 * w) / (1 - 0.1 * w)) < 1e-9);
    /* The prediction draws each micro-batch's time: the same every time. Of two equal stages, a
     * late micro-batch of one holds up the other: a larger bubble and a longer call than at the
     * mean times. */
    double b1, b2, b0;
    double t1 = pn_pipeline_time(st, 2, 32, 32, 4, &b1), t2 = pn_pipeline_time(st, 2, 32, 32, 4, &b2);
    assert_true(t1 == t2 && b1 == b2);
    pn_stage_stats eq[2] = {{.cost = 1e-6}, {.cost = 1e-6}};
    double t0 = pn_pipeline_time(eq, 2, 64, 64, 16, &b0);
    memcpy(eq[0].spread, st[0].spread, sizeof eq[0].spread);
    memcpy(eq[1].spread, st[0].spread, sizeof eq[1].spread);
    t1 = pn_pipeline_time(eq, 2, 64, 64, 16, &b1);
    assert_true(b1 > b0 + 0.05 && t1 > 1.02 * t0); /* here 5.9% and 14.3%, 3% longer */
    pn_graph_free(g);
    pn_profile_free(p);
    unlink(path);
    /* A micro-batch's time: on the line through the two measured sizes (below the smaller too, but
     * never below nothing), and from the larger to the chunk's on the line of cost and call. */
    pn_stage_stats one[1] = {{.cost = 1e-6, .micro_n = {2, 3}, .micro_t = {3e-6, 4e-6}}};
    double bubble;
    assert_true(fabs(pn_pipeline_time(one, 1, 8, 8, 4, &bubble) * 8 - 4 * 3e-6) < 1e-15);       /* 2, 2, 2, 2 */
    assert_true(fabs(pn_pipeline_time(one, 1, 8, 8, 3, NULL) * 8 - (3e-6 + 2 * 4e-6)) < 1e-15); /* 2, 3, 3 */
    assert_true(fabs(pn_pipeline_time(one, 1, 8, 8, 8, NULL) * 8 - 8 * 2e-6) < 1e-15);          /* 1 each */
    assert_true(fabs(pn_pipeline_time(one, 1, 8, 8, 1, NULL) * 8 - 8e-6) < 1e-15);              /* the chunk */
    assert_true(fabs(pn_pipeline_time(one, 1, 8, 8, 2, NULL) * 8 - 2 * 4.8e-6) < 1e-15);        /* 4, 4 */
    /* Where the line heads below zero, a micro-batch smaller than the measured sizes costs its
     * samples' share of the smaller one: 1 us for 2 samples, 0.5 for 1 (the line: -2). */
    one[0].micro_t[0] = 1e-6;
    assert_true(fabs(pn_pipeline_time(one, 1, 8, 8, 8, NULL) * 8 - 8 * 0.5e-6) < 1e-15);
    /* So too without the sizes: a stage whose call part is below zero (2 us at 4 samples, 6 at 8)
     * costs 1 us for 2 samples, not the line's 0. */
    pn_stage_stats neg[1] = {{.cost = 1e-6, .call = -2e-6, .neg_call = -2e-6, .neg_from = 4}};
    assert_true(fabs(pn_pipeline_time(neg, 1, 8, 8, 4, NULL) * 8 - 4 * 1e-6) < 1e-15);
    assert_true(fabs(pn_pipeline_time(neg, 1, 8, 8, 2, NULL) * 8 - 2 * 2e-6) < 1e-15);
    assert_true(fabs(pn_pipeline_time(neg, 1, 8, 8, 1, NULL) * 8 - 6e-6) < 1e-15);
}

/* A profile's stage spreads (each stage's micro-batches timed beside the stage next to it): the
 * prediction takes them for a graph of the profiled stages, and its layers' spreads for another. */
static void test_profile_stage_spread(void **state) {
    (void)state;
    char err[256], rows[2][512], layer[512] = "[";
    for (int r = 0; r < 2; r++) {
        rows[r][0] = '[';
        rows[r][1] = 0;
        for (int g = 0; g < PN_PROFILE_SPREAD; g++)
            snprintf(rows[r] + strlen(rows[r]), sizeof rows[r] - strlen(rows[r]), "%s%s",
                     g < 16 ? (r ? "0.7" : "0.8") : (r ? "1.3" : "1.2"), g + 1 < PN_PROFILE_SPREAD ? ", " : "]");
    }
    for (int g = 0; g < PN_PROFILE_SPREAD; g++)
        snprintf(layer + strlen(layer), sizeof layer - strlen(layer), "%s%s", g < 16 ? "0.5" : "1.5",
                 g + 1 < PN_PROFILE_SPREAD ? ", " : "]");
    const char *cases[][2] = {{"0", "2"}, {"1", "2"}, {"0", "1"}}; /* c's stage; the stage spreads given */
    for (int t = 0; t < 3; t++) {
        char text[4096];
        snprintf(text, sizeof text,
                 "{\"pnet_profile\": 1, \"network\": \"p\", \"batch\": 32, \"samples\": 32, \"small_samples\": 8,"
                 " \"threads\": 1, \"barrier_s\": 0, \"xfer_byte_s\": 0, \"stage_spread\": [%s%s%s],"
                 " \"layers\": [{\"name\": \"x\", \"stage\": 0, \"kernel\": false, \"forward_s\": 0},"
                 " {\"name\": \"c\", \"stage\": %s, \"kernel\": true, \"forward_s\": 3e-6, \"spread\": %s},"
                 " {\"name\": \"r\", \"stage\": 0, \"kernel\": false, \"forward_s\": 0},"
                 " {\"name\": \"p\", \"stage\": 1, \"kernel\": true, \"forward_s\": 0.5e-6},"
                 " {\"name\": \"d\", \"stage\": 1, \"kernel\": true, \"forward_s\": 0.25e-6},"
                 " {\"name\": \"s\", \"stage\": 1, \"kernel\": true, \"forward_s\": 0.25e-6}]}\n",
                 rows[0], cases[t][1][0] == '2' ? ", " : "", cases[t][1][0] == '2' ? rows[1] : "", cases[t][0], layer);
        pn_profile *p = pn_profile_load(write_profile(text), err, sizeof err);
        if (!p) fail_msg("%s", err);
        assert_int_equal(p->stage_spreads, cases[t][1][0] - '0');
        assert_true(p->stage[1] == cases[t][0][0] - '0' && p->stage[3] == 1);
        pn_graph *g = parse(two_stages);
        assert_true(pn_profile_matches(p, g, err, sizeof err));
        g->profile = p;
        pn_stage_stats st[2];
        pn_report_stats(g, st, 2);
        if (t == 0) { /* the profiled stages: their own spreads */
            assert_true(st[0].spread[0] == 0.8 && st[0].spread[31] == 1.2);
            assert_true(st[1].spread[0] == 0.7 && st[1].spread[31] == 1.3);
        } else { /* c was on another stage, or a stage's spread is missing: the layers' */
            assert_true(fabs(st[0].spread[PN_PROFILE_SPREAD - 1] / st[0].spread[0] - 3) < 1e-9);
            assert_true(st[1].spread[0] == 0); /* no layer of stage 1 spreads */
        }
        pn_graph_free(g);
        pn_profile_free(p);
        unlink(path);
    }
}

/* Without a profile, a pipeline's micro-batches write their activations into arena slots taken in
 * turn, which the caches no longer hold: each stage pays per byte of them, with M > 1 only. */
static void test_slots(void **state) {
    (void)state;
    pn_graph *g = parse(two_stages);
    pn_stage_stats st[2];
    pn_report_stats(g, st, 2);
    assert_true(st[0].act_bytes > 0 && fabs(st[0].slot - st[0].act_bytes * PN_COST_SLOT_BYTE) < 1e-18);
    assert_true(fabs(st[1].slot - st[1].act_bytes * PN_COST_SLOT_BYTE) < 1e-18);
    pn_stage_stats one[1] = {{.cost = 1e-6, .slot = 0.5e-6}};
    assert_true(fabs(pn_pipeline_time(one, 1, 8, 8, 1, NULL) - 1e-6) < 1e-15);
    assert_true(fabs(pn_pipeline_time(one, 1, 8, 8, 2, NULL) - 1.5e-6) < 1e-15);
    pn_graph_free(g);
    /* One stage: no pipeline, no slots. */
    g = parse("network q stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
              "  x = input() : f32[batch,4] stage=0 shard=1\n"
              "  r = relu(x) : f32[batch,4] stage=0 shard=1 output\n"
              "  output y = r\n");
    pn_report_stats(g, st, 1);
    assert_true(st[0].slot == 0);
    pn_graph_free(g);
}

static void expect_bad(const char *text, const char *message) {
    char err[256];
    pn_profile *p = pn_profile_load(write_profile(text), err, sizeof err);
    assert_null(p);
    assert_string_equal(err, message);
    unlink(path);
}

static void test_profile_errors(void **state) {
    (void)state;
    expect_bad("{", "not a bench --profile file: not valid JSON");
    expect_bad("[]", "not a bench --profile file: not a JSON object");
    expect_bad("{\"network\": \"p\", \"layers\": []}", "not a bench --profile file: no \"pnet_profile\", \"network\" or \"layers\"");
    expect_bad("{\"pnet_profile\": 2, \"network\": \"p\", \"layers\": []}",
               "not a bench --profile file: a newer format (\"pnet_profile\" is not 1)");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"layers\": [{\"name\": \"a\", \"forward_s\": -1}]}",
               "not a bench --profile file: \"forward_s\" is not a number of at least 0");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"layers\": [{\"name\": \"a\"}]}",
               "not a bench --profile file: a layer without \"name\" and \"forward_s\"");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"layers\": [], \"training\": []}",
               "not a bench --profile file: \"training\" is not an object with a \"stages\" array");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"layers\": [], \"training\": {\"stages\": [{\"forward_s\": -2}]}}",
               "not a bench --profile file: \"forward_s\" is not a number of at least 0");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"layers\": [], \"training\": {\"stages\": [3]}}",
               "not a bench --profile file: a training stage is not an object");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"layers\": [], \"training\": {\"layers\": {}}}",
               "not a bench --profile file: \"training\" has a \"layers\" that is not an array");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"layers\": [{\"name\": \"a\", \"forward_s\": 0}], \"training\": "
               "{\"layers\": [{\"name\": \"b\", \"forward_s\": 0, \"backward_s\": 0}]}}",
               "not a bench --profile file: training layer 'b' is not among the layers");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"layers\": [{\"name\": \"a\", \"forward_s\": 0}], \"training\": "
               "{\"layers\": [{\"name\": \"a\", \"forward_s\": 0, \"backward_s\": -1}]}}",
               "not a bench --profile file: \"backward_s\" is not a number of at least 0");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"samples\": 32, \"layers\": [{\"name\": \"a\", "
               "\"forward_s\": 1e-6, \"call_s\": -1e-4}]}",
               "not a bench --profile file: \"call_s\" is below what a call of one sample allows");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"layers\": [{\"name\": \"a\", \"forward_s\": 1e-6, "
               "\"call_s\": \"x\"}]}",
               "not a bench --profile file: \"call_s\" is not a number");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"layers\": [{\"name\": \"a\", \"forward_s\": 0, "
               "\"spread\": [1, 1]}]}",
               "not a bench --profile file: \"spread\" is not an array of 32 positive numbers");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"layers\": [{\"name\": \"a\", \"forward_s\": 0, \"spread\": "
               "[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]}]}",
               "not a bench --profile file: \"spread\" is not an array of 32 positive numbers");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"layers\": [{\"name\": \"a\", \"forward_s\": 0, "
               "\"micro_s\": [1, 2]}]}",
               "not a bench --profile file: \"micro_s\" is not two numbers of at least 0 beside \"micro_samples\"");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"micro_samples\": [2, 3], \"layers\": [{\"name\": \"a\", "
               "\"forward_s\": 0, \"micro_s\": [1, -2]}]}",
               "not a bench --profile file: \"micro_s\" is not two numbers of at least 0 beside \"micro_samples\"");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"stage_spread\": [[1, 1]], \"layers\": []}",
               "not a bench --profile file: \"stage_spread\" is not an array of arrays of 32 positive numbers");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"stage_spread\": 3, \"layers\": []}",
               "not a bench --profile file: \"stage_spread\" is not an array of arrays of 32 positive numbers");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"layers\": [{\"name\": \"a\", \"stage\": -1, "
               "\"forward_s\": 0}]}",
               "not a bench --profile file: \"stage\" is not a number of at least 0");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"micro_samples\": [3, 3], \"layers\": []}",
               "not a bench --profile file: \"micro_samples\" is not two whole numbers of samples, the first at "
               "least 1, the second more");
    expect_bad("{\"pnet_profile\": 1, \"network\": \"p\", \"threads\": \"two\", \"layers\": []}",
               "not a bench --profile file: \"threads\" is not a number of at least 1");
    char err[256];
    assert_null(pn_profile_load("/nonexistent/p.json", err, sizeof err));
    assert_non_null(strstr(err, "cannot read the profile"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),          cmocka_unit_test(test_unfused_eltwise), cmocka_unit_test(test_pipeline_time),
        cmocka_unit_test(test_pipeline_time_on_fewer_cores), cmocka_unit_test(test_pipeline_slices), cmocka_unit_test(test_pool_in_conv), cmocka_unit_test(test_conv_gathers), cmocka_unit_test(test_stage_inputs), cmocka_unit_test(test_params_per_call),
        cmocka_unit_test(test_profile_report),
        cmocka_unit_test(test_profile_micro_spread),
        cmocka_unit_test(test_profile_stage_spread),
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_profile_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
