/* Unit tests of the graph IR text form: print, parse back, print again; its errors; and passes,
 * fed text IR and compared as text IR. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/graph.h"
#include "passes/passes.h"

static char *print_graph(const pn_graph *g) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    pn_graph_print(g, f);
    fclose(f);
    return buf;
}

static const char digits[] =
    "network digits_mlp stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
    "  x = input() : f32[batch,64] stage=0 shard=1\n"
    "  fc1 = dense(x) units=128 bias=true : f32[batch,128] stage=0 shard=1  # fc1.weight[128,64] fc1.bias[128]\n"
    "  h1 = relu(fc1) : f32[batch,128] stage=0 shard=1\n"
    "  fc2 = dense(h1) units=10 bias=true : f32[batch,10] stage=0 shard=1  # fc2.weight[10,128] fc2.bias[10]\n"
    "  probs = softmax(fc2) axis=1 : f32[batch,10] stage=0 shard=1 output\n"
    "  label = input() : i32[batch] stage=0 shard=1 train\n"
    "  loss = cross_entropy(fc2, label) : f32[] stage=0 shard=1 train\n"
    "  output probs = probs\n"
    "  train loss=loss optimizer=sgd(lr=0.1, momentum=0.9, weight_decay=0, nesterov=false) batch=32 epochs=20 seed=0\n";

static void test_round_trip(void **state) {
    (void)state;
    char err[256];
    pn_graph *g = pn_graph_parse(digits, strlen(digits), err, sizeof err);
    assert_non_null(g);
    assert_int_equal(g->nnodes, 7);
    assert_int_equal(g->nodes[1].op, PN_OP_DENSE);
    assert_int_equal(g->nodes[1].nparams, 2);
    assert_int_equal(g->nodes[1].params[0].shape.d[1], 64);
    assert_int_equal(g->noutputs, 1);
    assert_true(g->train.present);
    assert_int_equal(g->train.batch, 32);
    assert_true(g->train.momentum == 0.9);
    char *text = print_graph(g);
    assert_string_equal(text, digits);
    free(text);
    pn_graph_free(g);
}

static const char pipeline[] =
    "network p stages=2 replicas=2 microbatches=8 schedule=1f1b\n"
    "  x = input() : f32[batch,3,8,8] stage=0 shard=1\n"
    "  c = conv2d(x) out_channels=4 kernel=[3,3] stride=[1,1] padding=[1,1] bias=false : f32[batch,4,8,8] stage=0 shard=2  # c.weight[4,3,3,3]\n"
    "  p = maxpool2d(c) size=[2,2] stride=[2,2] padding=[0,0] : f32[batch,4,4,4] stage=1 shard=1\n"
    "  t = transpose(p) perm=[0,1,3,2] : f32[batch,4,4,4] stage=1 shard=1\n"
    "  r = reshape(t) : f32[batch,64] stage=1 shard=1\n"
    "  k = const() value=0.5 : f32[] stage=1 shard=1\n"
    "  m = mul(r, k) : f32[batch,64] stage=1 shard=1 output\n"
    "  output y = m\n";

static void test_round_trip_attributes(void **state) {
    (void)state;
    char err[256];
    pn_graph *g = pn_graph_parse(pipeline, strlen(pipeline), err, sizeof err);
    assert_non_null(g);
    assert_int_equal(g->nstages, 2);
    assert_int_equal(g->replicas, 2);
    assert_int_equal(g->microbatches, 8);
    assert_int_equal(g->schedule, PN_SCHED_1F1B);
    assert_int_equal(g->nodes[1].shard, 2);
    assert_int_equal(g->nodes[2].stage, 1);
    assert_int_equal(g->nodes[3].ia[PN_PERM + 2], 3);
    assert_true(g->nodes[5].fa[PN_FA_VALUE] == 0.5);
    char *text = print_graph(g);
    assert_string_equal(text, pipeline);
    free(text);
    pn_graph_free(g);
}

/* Issue 18's attributes: conv2d's groups (printed only when not 1, 1 when absent), pad's four
 * sides (handed back to its rule as its list), elu's alpha, prelu's parameter. */
static const char *const new_ops =
    "network n stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
    "  x = input() : f32[batch,4,6,5] stage=0 shard=1\n"
    "  p = pad(x) top=1 bottom=0 left=2 right=3 : f32[batch,4,7,10] stage=0 shard=1\n"
    "  c = conv2d(p) out_channels=8 kernel=[3,3] stride=[1,1] padding=[1,1] bias=true groups=4 : f32[batch,8,7,10] stage=0 shard=1  # c.weight[8,1,3,3] c.bias[8]\n"
    "  d = conv2d(c) out_channels=2 kernel=[1,1] stride=[1,1] padding=[0,0] bias=false : f32[batch,2,7,10] stage=0 shard=1  # d.weight[2,8,1,1]\n"
    "  e = elu(d) alpha=0.5 : f32[batch,2,7,10] stage=0 shard=1\n"
    "  s = softplus(e) : f32[batch,2,7,10] stage=0 shard=1\n"
    "  y = prelu(s) : f32[batch,2,7,10] stage=0 shard=1 output  # y.weight[2]\n"
    "  output y = y\n";

static void test_round_trip_new_ops(void **state) {
    (void)state;
    char err[256];
    pn_graph *g = pn_graph_parse(new_ops, strlen(new_ops), err, sizeof err);
    if (!g) fail_msg("%s", err);
    assert_int_equal(g->nodes[1].ia[PN_PAD_RIGHT], 3);
    assert_int_equal(g->nodes[2].ia[PN_CONV_GROUPS], 4);
    assert_int_equal(g->nodes[3].ia[PN_CONV_GROUPS], 1);
    assert_true(g->nodes[4].fa[PN_FA_VALUE] == 0.5);
    assert_int_equal(g->nodes[6].nparams, 1);
    char *text = print_graph(g);
    assert_string_equal(text, new_ops);
    free(text);
    pn_graph_free(g);
}

static void expect_error(const char *text, const char *want) {
    char err[256];
    pn_graph *g = pn_graph_parse(text, strlen(text), err, sizeof err);
    assert_null(g);
    if (!strstr(err, want)) fail_msg("error '%s' does not contain '%s'", err, want);
}

static void test_errors(void **state) {
    (void)state;
    const char *h = "network n stages=1 replicas=1 microbatches=1 schedule=gpipe\n";
    char buf[512];
    expect_error("", "expected 'network'");
    expect_error("net n\n", "line 1: expected 'network'");
    snprintf(buf, sizeof buf, "%s  a = input() : f32[batch,4] stage=0 shard=1\n  b = frob(a) : f32[batch,4] stage=0 shard=1\n", h);
    expect_error(buf, "line 3: unknown op 'frob'");
    snprintf(buf, sizeof buf, "%s  b = relu(a) : f32[batch,4] stage=0 shard=1\n", h);
    expect_error(buf, "line 2: 'a' is not defined before this line");
    snprintf(buf, sizeof buf, "%s  a = input() : f32[batch,4] stage=0 shard=1\n  b = dense(a) units=3 bias=true : f32[batch,4] stage=0 shard=1\n", h);
    expect_error(buf, "does not match the inferred f32[batch,3]");
    snprintf(buf, sizeof buf, "%s  a = input() : f32[batch,4] stage=3 shard=1\n", h);
    expect_error(buf, "stage 3 is out of range");
    snprintf(buf, sizeof buf, "%s  a = input() : f32[batch,4] stage=0 shard=1\n  b = relu(a) units=3 : f32[batch,4] stage=0 shard=1\n", h);
    expect_error(buf, "'relu' has no attribute 'units'");
    snprintf(buf, sizeof buf, "%s  a = input() : f32[batch,4] stage=0 shard=1\n  a = relu(a) : f32[batch,4] stage=0 shard=1\n", h);
    expect_error(buf, "'a' is defined twice");
    snprintf(buf, sizeof buf, "%s  a = input() : f32[batch,4] stage=0 shard=1\n  output y = b\n", h);
    expect_error(buf, "unknown output node 'b'");
    snprintf(buf, sizeof buf, "%s  a = input() : f32[batch,4] stage=0 shard=1\n  b = conv2d(a) out_channels=2 kernel=[3,3] stride=[1,1] padding=[0,0] bias=true : f32[batch,2] stage=0 shard=1\n", h);
    expect_error(buf, "needs a 4-d NCHW input");
}

/* A tensor constant prints its values and reads them back exactly; a scalar one keeps value=. The
 * values must fill an f32 type without a batch axis. */
static void test_const_values(void **state) {
    (void)state;
    static const char text[] =
        "network n stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
        "  x = input() : f32[batch,2,3] stage=0 shard=1\n"
        "  m = const() values=[0.100000001,-2,3.5,1.00000001e-07,4,-0] : f32[2,3] stage=0 shard=1\n"
        "  k = const() value=2 : f32[] stage=0 shard=1\n"
        "  d = div(x, m) : f32[batch,2,3] stage=0 shard=1\n"
        "  y = mul(d, k) : f32[batch,2,3] stage=0 shard=1 output\n"
        "  output y = y\n";
    char err[256];
    pn_graph *g = pn_graph_parse(text, strlen(text), err, sizeof err);
    if (!g) fail_msg("parse: %s", err);
    assert_non_null(g->nodes[1].data);
    assert_int_equal(g->nodes[1].shape.rank, 2);
    assert_true(g->nodes[1].data[0] == 0.1f && g->nodes[1].data[3] == 1e-7f);
    assert_null(g->nodes[2].data);
    char *out = print_graph(g);
    assert_string_equal(out, text);
    free(out);
    pn_graph_free(g);
    const char *h = "network n stages=1 replicas=1 microbatches=1 schedule=gpipe\n";
    char buf[512];
    snprintf(buf, sizeof buf, "%s  m = const() values=[1,2,3] : f32[2,2] stage=0 shard=1\n", h);
    expect_error(buf, "line 2: a constant of 3 values cannot be of type f32[2,2]");
    snprintf(buf, sizeof buf, "%s  m = const() values=[1,2] : f32[batch,2] stage=0 shard=1\n", h);
    expect_error(buf, "cannot be of type f32[batch,2]");
    snprintf(buf, sizeof buf, "%s  m = const() values=[1,x] : f32[2] stage=0 shard=1\n", h);
    expect_error(buf, "line 2:");
}

/* frozen=true prints and reads back; false is not printed, and reads back when written. */
static void test_frozen(void **state) {
    (void)state;
    static const char text[] =
        "network n stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
        "  x = input() : f32[batch,4] stage=0 shard=1\n"
        "  a = dense(x) units=3 bias=true frozen=true : f32[batch,3] stage=0 shard=1  # a.weight[3,4] a.bias[3]\n"
        "  b = layernorm(a) eps=1e-05 frozen=true : f32[batch,3] stage=0 shard=1  # b.weight[3] b.bias[3]\n"
        "  y = dense(b) units=2 bias=false : f32[batch,2] stage=0 shard=1 output  # y.weight[2,3]\n"
        "  output y = y\n";
    char err[256];
    pn_graph *g = pn_graph_parse(text, strlen(text), err, sizeof err);
    if (!g) fail_msg("parse: %s", err);
    assert_false(g->nodes[1].params[0].trainable);
    assert_false(g->nodes[2].params[1].trainable);
    assert_true(g->nodes[3].params[0].trainable);
    char *out = print_graph(g);
    assert_string_equal(out, text);
    free(out);
    pn_graph_free(g);
    static const char unfrozen[] =
        "network n stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
        "  x = input() : f32[batch,4] stage=0 shard=1\n"
        "  y = dense(x) units=3 bias=true frozen=false : f32[batch,3] stage=0 shard=1 output\n"
        "  output y = y\n";
    g = pn_graph_parse(unfrozen, strlen(unfrozen), err, sizeof err);
    if (!g) fail_msg("parse: %s", err);
    assert_true(g->nodes[1].params[0].trainable);
    out = print_graph(g);
    assert_null(strstr(out, "frozen"));
    free(out);
    pn_graph_free(g);
}

/* Each op takes the inputs its signature names (found by fuzzing: dense() read a missing input). */
static void test_input_count(void **state) {
    (void)state;
    const char *h = "network n stages=1 replicas=1 microbatches=1 schedule=gpipe\n  a = input() : f32[batch,4] stage=0 shard=1\n";
    char buf[512];
    snprintf(buf, sizeof buf, "%s  b = dense() units=3 bias=true : f32[batch,3] stage=0 shard=1\n", h);
    expect_error(buf, "line 3: 'dense' takes 1 input, not 0");
    snprintf(buf, sizeof buf, "%s  b = add(a) : f32[batch,4] stage=0 shard=1\n", h);
    expect_error(buf, "line 3: 'add' takes 2 inputs, not 1");
    snprintf(buf, sizeof buf, "%s  b = matmul(a, a, a) : f32[batch,4] stage=0 shard=1\n", h);
    expect_error(buf, "line 3: 'matmul' takes 2 inputs, not 3");
    snprintf(buf, sizeof buf, "%s  b = input(a) : f32[batch,4] stage=0 shard=1\n", h);
    expect_error(buf, "line 3: 'input' takes 0 inputs, not 1");
    snprintf(buf, sizeof buf, "%s  b = concat() axis=1 : f32[batch,4] stage=0 shard=1\n", h);
    expect_error(buf, "line 3: 'concat' needs at least one tensor");
}

/* Nodes named like the keywords of the output and train lines print and parse back (found by fuzzing). */
static void test_keyword_names(void **state) {
    (void)state;
    static const char text[] =
        "network n stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
        "  output = input() : f32[batch,4] stage=0 shard=1\n"
        "  train = relu(output) : f32[batch,4] stage=0 shard=1 output\n"
        "  output train = train\n";
    char err[256];
    pn_graph *g = pn_graph_parse(text, strlen(text), err, sizeof err);
    if (!g) fail_msg("parse: %s", err);
    assert_int_equal(g->nnodes, 2);
    assert_string_equal(g->nodes[1].name, "train");
    char *out = print_graph(g);
    assert_string_equal(out, text);
    free(out);
    pn_graph_free(g);
}

/* Runs the inference passes up to and including `last` on text IR and returns the printed graph. */
static char *after_pass(const char *text, const char *last) {
    char err[256];
    pn_graph *g = pn_graph_parse(text, strlen(text), err, sizeof err);
    if (!g) fail_msg("parse: %s", err);
    for (int i = 0; i < pn_npasses; i++) {
        pn_passes[i].run(g);
        if (strcmp(pn_passes[i].name, last) == 0) break;
    }
    char *out = print_graph(g);
    pn_graph_free(g);
    return out;
}

#define H "network n stages=1 replicas=1 microbatches=1 schedule=gpipe\n"
#define X "  x = input() : f32[batch,3,10,10] stage=0 shard=1\n"
#define C "  c = conv2d(x) out_channels=4 kernel=[3,3] stride=[1,1] padding=[0,0] bias=true : f32[batch,4,8,8] stage=0 shard=1  # c.weight[4,3,3,3] c.bias[4]"
#define R "  r = relu(c) : f32[batch,4,8,8] stage=0 shard=1"
#define Y "  output y = p\n"

/* fuse_pool: a maxpool2d with kernel = stride over a conv2d chain joins the chain; overlapping
 * windows, padding, a second reader of the conv's value or another stage keep it separate. */
static void test_pass_fuse_pool(void **state) {
    (void)state;
    static const char P2[] = "  p = maxpool2d(r) size=[2,2] stride=[2,2] padding=[0,0] : f32[batch,4,4,4] stage=0 shard=1 output";
    static const char T[] = "  t = tanh(p) : f32[batch,4,4,4] stage=0 shard=1 output";
    char *got = after_pass(H X C "\n" R "\n" "  p = maxpool2d(r) size=[2,2] stride=[2,2] padding=[0,0] : f32[batch,4,4,4] stage=0 shard=1\n"
                           "  t = tanh(p) : f32[batch,4,4,4] stage=0 shard=1 output\n  output y = t\n", "fuse_pool");
    char want[2048];
    snprintf(want, sizeof want, "%s%s%s\n%s  # fused into c\n%.*s  # fused into c\n%s  # fused into c\n  output y = t\n", H, X, C, R,
             (int)(strlen(P2) - 7), P2, T);
    assert_string_equal(got, want);
    free(got);
    /* After fuse alone, the pool is still its own kernel. */
    got = after_pass(H X C "\n" R "\n" "  p = maxpool2d(r) size=[2,2] stride=[2,2] padding=[0,0] : f32[batch,4,4,4] stage=0 shard=1 output\n" Y, "fuse");
    snprintf(want, sizeof want, "%s%s%s\n%s  # fused into c\n%s\n%s", H, X, C, R, P2, Y);
    assert_string_equal(got, want);
    free(got);
    static const char *kept[] = {
        "  p = maxpool2d(r) size=[3,3] stride=[2,2] padding=[0,0] : f32[batch,4,3,3] stage=0 shard=1 output\n",
        "  p = maxpool2d(r) size=[2,2] stride=[2,2] padding=[1,1] : f32[batch,4,5,5] stage=0 shard=1 output\n",
        "  p = maxpool2d(r) size=[3,3] stride=[3,3] padding=[0,0] : f32[batch,4,2,2] stage=0 shard=1 output\n",
    };
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        char in[2048];
        snprintf(in, sizeof in, "%s%s%s\n%s\n%s%s", H, X, C, R, kept[i], Y);
        got = after_pass(in, "fuse_pool");
        assert_null(strstr(strstr(got, "  p = "), "fused"));
        free(got);
    }
    /* r is also an output: the conv's chain ends at r, and p reads it from memory. */
    char in[2048];
    snprintf(in, sizeof in, "%s%s%s\n  r = relu(c) : f32[batch,4,8,8] stage=0 shard=1 output\n%s\n  output y = p\n  output z = r\n", H, X, C, P2);
    got = after_pass(in, "fuse_pool");
    assert_non_null(strstr(got, "output  # fused into c"));
    assert_null(strstr(strstr(got, "  p = "), "fused"));
    free(got);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_round_trip_attributes),
        cmocka_unit_test(test_round_trip_new_ops),
        cmocka_unit_test(test_const_values),
        cmocka_unit_test(test_frozen),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_input_count),
        cmocka_unit_test(test_keyword_names),
        cmocka_unit_test(test_pass_fuse_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
