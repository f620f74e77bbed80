/* Unit tests of the shape rules (ir/shapes.c): every op in ops.def, valid shapes and errors; and
 * that every row of the op table (ir/ops.c) is complete. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "ir/shapes.h"

#define B PN_BATCH
#define NARGS(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define DIMS(...) (int64_t[]){__VA_ARGS__}, NARGS(__VA_ARGS__)
#define F32(...) tensor(PN_F32, DIMS(__VA_ARGS__))
#define I32(...) tensor(PN_I32, DIMS(__VA_ARGS__))
#define ASSERT_SHAPE(s, ...) assert_shape((s), DIMS(__VA_ARGS__))
#define LIST(...) DIMS(__VA_ARGS__)
#define DEFAULT_STRIDE INT64_MIN /* a pool's stride argument left out (ops.def) */

/* ---- helpers ------------------------------------------------------------------------------ */

static pn_node tensor(pn_dtype t, const int64_t *d, int rank) {
    pn_node n = {.name = "in", .op = PN_OP_INPUT, .dtype = t};
    n.shape.rank = rank;
    for (int i = 0; i < rank; i++) n.shape.d[i] = d[i];
    return n;
}

static pn_node scalar(void) {
    pn_node n = {.name = "c", .op = PN_OP_CONST, .dtype = PN_F32};
    return n;
}

static pn_node op_node(pn_op op) {
    pn_node n = {.name = "n", .op = op, .dtype = PN_I32};
    n.shape.rank = 7; /* garbage the rule must overwrite */
    n.nparams = 3;
    return n;
}

static void assert_shape(const pn_shape *s, const int64_t *d, int rank) {
    assert_int_equal(s->rank, rank);
    for (int i = 0; i < rank; i++) assert_int_equal(s->d[i], d[i]);
}

/* Runs the rule for n over one, two or more inputs; err is reset first. */
static bool infer_list(pn_node *n, const pn_node *a, const pn_node *b, const int64_t *list, int nlist, pn_shape_err *e) {
    const pn_node *in[2] = {a, b};
    memset(e, 0, sizeof *e);
    e->arg = 99;
    return pn_shape_infer(n, in, b ? 2 : a ? 1 : 0, list, nlist, e);
}

static bool infer1(pn_node *n, const pn_node *a, pn_shape_err *e) { return infer_list(n, a, NULL, NULL, 0, e); }
static bool infer2(pn_node *n, const pn_node *a, const pn_node *b, pn_shape_err *e) { return infer_list(n, a, b, NULL, 0, e); }

static void expect_ok(bool ok, const pn_shape_err *e) {
    if (!ok) print_error("unexpected shape error: %s\n", e->msg);
    assert_true(ok);
}

static void expect_err(bool ok, const pn_shape_err *e, int arg, const char *sub) {
    assert_false(ok);
    if (!strstr(e->msg, sub)) print_error("message '%s' lacks '%s'\n", e->msg, sub);
    assert_non_null(strstr(e->msg, sub));
    assert_int_equal(e->arg, arg);
}

static void assert_param(const pn_node *n, int i, const char *suffix, bool trainable, const int64_t *d, int rank) {
    assert_true(i < n->nparams);
    assert_string_equal(n->params[i].suffix, suffix);
    assert_int_equal(n->params[i].trainable, trainable);
    assert_shape(&n->params[i].shape, d, rank);
}
#define ASSERT_PARAM(n, i, suffix, tr, ...) assert_param((n), (i), (suffix), (tr), DIMS(__VA_ARGS__))

static pn_node dense(int64_t units, bool bias) {
    pn_node n = op_node(PN_OP_DENSE);
    n.ia[PN_DENSE_UNITS] = units;
    n.ia[PN_DENSE_BIAS] = bias;
    return n;
}

static pn_node conv(int64_t oc, int64_t kh, int64_t kw, int64_t s, int64_t p, bool bias) {
    pn_node n = op_node(PN_OP_CONV2D);
    n.ia[PN_CONV_OUT] = oc;
    n.ia[PN_CONV_KH] = kh;
    n.ia[PN_CONV_KW] = kw;
    n.ia[PN_CONV_SH] = n.ia[PN_CONV_SW] = s;
    n.ia[PN_CONV_PH] = n.ia[PN_CONV_PW] = p;
    n.ia[PN_CONV_BIAS] = bias;
    n.ia[PN_CONV_GROUPS] = 1;
    return n;
}

static pn_node pool(pn_op op, int64_t k, int64_t s, int64_t p) {
    pn_node n = op_node(op);
    n.ia[PN_POOL_KH] = n.ia[PN_POOL_KW] = k;
    n.ia[PN_POOL_SH] = n.ia[PN_POOL_SW] = s;
    n.ia[PN_POOL_PH] = n.ia[PN_POOL_PW] = p;
    return n;
}

static pn_node axis_op(pn_op op, int64_t axis) {
    pn_node n = op_node(op);
    n.ia[PN_AXIS] = axis;
    return n;
}

/* ---- internal ops ------------------------------------------------------------------------- */

static void test_input_untouched(void **state) {
    (void)state;
    pn_node x = F32(B, 3, 4);
    pn_shape_err e;
    expect_ok(infer_list(&x, NULL, NULL, NULL, 0, &e), &e);
    ASSERT_SHAPE(&x.shape, B, 3, 4);
    pn_node ids = I32(B, 16);
    expect_ok(infer_list(&ids, NULL, NULL, NULL, 0, &e), &e);
    assert_int_equal(ids.dtype, PN_I32);
}

static void test_const_is_scalar(void **state) {
    (void)state;
    pn_node n = op_node(PN_OP_CONST);
    n.fa[PN_FA_VALUE] = 2.5;
    pn_shape_err e;
    expect_ok(infer_list(&n, NULL, NULL, NULL, 0, &e), &e);
    assert_int_equal(n.shape.rank, 0);
    assert_int_equal(n.dtype, PN_F32);
    assert_int_equal(n.nparams, 0);
}

static void test_eltwise_binary(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node a = F32(B, 3), b = F32(3), c = scalar(), w = F32(B, 4, 1), v = F32(5);
    pn_node n = op_node(PN_OP_ADD);
    expect_ok(infer2(&n, &a, &b, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 3);
    assert_int_equal(n.dtype, PN_F32);
    n = op_node(PN_OP_SUB);
    expect_ok(infer2(&n, &c, &a, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 3);
    n = op_node(PN_OP_MUL);
    expect_ok(infer2(&n, &w, &v, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 4, 5);
    n = op_node(PN_OP_DIV);
    expect_ok(infer2(&n, &w, &v, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 4, 5);

    pn_node d = F32(B, 4);
    n = op_node(PN_OP_ADD);
    expect_err(infer2(&n, &a, &d, &e), &e, -1, "operands of '+' do not broadcast: f32[batch,3] and f32[batch,4]");
    n = op_node(PN_OP_SUB);
    expect_err(infer2(&n, &a, &d, &e), &e, -1, "operands of '-'");
    n = op_node(PN_OP_MUL);
    expect_err(infer2(&n, &a, &d, &e), &e, -1, "operands of '*'");
    n = op_node(PN_OP_DIV);
    expect_err(infer2(&n, &a, &d, &e), &e, -1, "operands of '/' do not broadcast: f32[batch,3] and f32[batch,4]");
    /* batch against a fixed size */
    pn_node f = F32(2, 3);
    n = op_node(PN_OP_ADD);
    expect_err(infer2(&n, &a, &f, &e), &e, -1, "do not broadcast");
    /* i32 rejected, with the argument index */
    pn_node i = I32(B, 3);
    n = op_node(PN_OP_MUL);
    expect_err(infer2(&n, &a, &i, &e), &e, 1, "'mul' needs an f32 tensor, but this is i32[batch,3]");
}

/* ---- dense ------------------------------------------------------------------------------- */

static void test_dense(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 64), n = dense(128, true);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 128);
    assert_int_equal(n.dtype, PN_F32);
    assert_int_equal(n.nparams, 2);
    ASSERT_PARAM(&n, 0, "weight", true, 128, 64);
    ASSERT_PARAM(&n, 1, "bias", true, 128);

    n = dense(10, false);
    expect_ok(infer1(&n, &x, &e), &e);
    assert_int_equal(n.nparams, 1);
    ASSERT_PARAM(&n, 0, "weight", true, 10, 64);
}


static void test_dense_rank3_and_rank1(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 16, 32), n = dense(8, true);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 16, 8);
    ASSERT_PARAM(&n, 0, "weight", true, 8, 32);
    pn_node v = F32(7);
    n = dense(3, true);
    expect_ok(infer1(&n, &v, &e), &e);
    ASSERT_SHAPE(&n.shape, 3);
    ASSERT_PARAM(&n, 0, "weight", true, 3, 7);
}

static void test_dense_errors(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node xb = F32(B), n = dense(4, true);
    expect_err(infer1(&n, &xb, &e), &e, 0, "'dense' needs a feature axis, but the input is f32[batch]");
    pn_node s = scalar();
    n = dense(4, true);
    expect_err(infer1(&n, &s, &e), &e, 0, "needs a feature axis");
    pn_node x = F32(B, 8);
    n = dense(0, true);
    expect_err(infer1(&n, &x, &e), &e, 1, "'dense' units must be between 1 and 2147483647");
    n = dense((int64_t)PN_MAX_DIM + 1, true);
    expect_err(infer1(&n, &x, &e), &e, 1, "units must be between");
    pn_node big = F32(B, 1 << 20);
    n = dense(PN_MAX_DIM, true);
    expect_err(infer1(&n, &big, &e), &e, -1, "'dense' weight [2147483647, 1048576] is too large");
    pn_node i = I32(B, 8);
    n = dense(4, true);
    expect_err(infer1(&n, &i, &e), &e, 0, "'dense' needs an f32 tensor, but this is i32[batch,8]");
}

/* ---- conv2d ------------------------------------------------------------------------------ */

static void test_conv2d(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 1, 28, 28), n = conv(6, 5, 5, 1, 2, true);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 6, 28, 28);
    assert_int_equal(n.nparams, 2);
    ASSERT_PARAM(&n, 0, "weight", true, 6, 1, 5, 5);
    ASSERT_PARAM(&n, 1, "bias", true, 6);

    pn_node y = F32(B, 6, 14, 14);
    n = conv(16, 5, 5, 1, 0, false);
    expect_ok(infer1(&n, &y, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 16, 10, 10);
    assert_int_equal(n.nparams, 1);
    ASSERT_PARAM(&n, 0, "weight", true, 16, 6, 5, 5);
}

/* groups: weight [out, in / groups, KH, KW]; depthwise at groups = in_channels. */
static void test_conv2d_groups(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 8, 10, 10), n = conv(4, 3, 3, 1, 1, true);
    n.ia[PN_CONV_GROUPS] = 2;
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 4, 10, 10);
    ASSERT_PARAM(&n, 0, "weight", true, 4, 4, 3, 3);
    ASSERT_PARAM(&n, 1, "bias", true, 4);
    n = conv(16, 3, 3, 2, 1, false);
    n.ia[PN_CONV_GROUPS] = 8; /* depthwise, multiplier 2 */
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 16, 5, 5);
    ASSERT_PARAM(&n, 0, "weight", true, 16, 1, 3, 3);
    n = conv(4, 3, 3, 1, 1, true);
    n.ia[PN_CONV_GROUPS] = 3;
    expect_err(infer1(&n, &x, &e), &e, 7, "'conv2d' groups 3 does not divide the 8 input channels of f32[batch,8,10,10]");
    n = conv(6, 3, 3, 1, 1, true);
    n.ia[PN_CONV_GROUPS] = 4;
    expect_err(infer1(&n, &x, &e), &e, 7, "'conv2d' groups 4 does not divide out_channels 6");
    n = conv(4, 3, 3, 1, 1, true);
    n.ia[PN_CONV_GROUPS] = 0;
    expect_err(infer1(&n, &x, &e), &e, 7, "'conv2d' groups must be between 1 and 2147483647");
}

static void test_conv2d_stride_padding(void **state) {
    (void)state;
    pn_shape_err e;
    /* floor((32 + 2 - 3) / 2) + 1 = 16 */
    pn_node x = F32(B, 16, 32, 32), n = conv(32, 3, 3, 2, 1, false);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 32, 16, 16);
    /* floor((7 - 3) / 2) + 1 = 3: the last column is dropped */
    pn_node z = F32(2, 3, 7, 7);
    n = conv(4, 3, 3, 2, 0, true);
    expect_ok(infer1(&n, &z, &e), &e);
    ASSERT_SHAPE(&n.shape, 2, 4, 3, 3);
    /* kernel [3, 5], stride [1, 2], padding [0, 2] on 10 x 12: 8 x 8 */
    pn_node r = F32(B, 3, 10, 12);
    n = conv(8, 3, 5, 1, 0, true);
    n.ia[PN_CONV_SW] = 2;
    n.ia[PN_CONV_PW] = 2;
    expect_ok(infer1(&n, &r, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 8, 8, 6);
    ASSERT_PARAM(&n, 0, "weight", true, 8, 3, 3, 5);
    /* convolution padding may exceed half the kernel: (8 + 4 - 3) + 1 = 10 */
    pn_node q = F32(B, 1, 8, 8);
    n = conv(1, 3, 3, 1, 2, true);
    expect_ok(infer1(&n, &q, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 1, 10, 10);
}

static void test_conv2d_errors(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 1, 4, 4), n = conv(2, 5, 5, 1, 0, true);
    expect_err(infer1(&n, &x, &e), &e, -1, "'conv2d' window 5x5 is larger than the padded input 4x4");
    /* with padding 1 the window fits: 4 + 2 - 5 + 1 = 2 */
    n = conv(2, 5, 5, 1, 1, true);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 2, 2, 2);
    pn_node r3 = F32(B, 28, 28);
    n = conv(2, 3, 3, 1, 0, true);
    expect_err(infer1(&n, &r3, &e), &e, 0, "'conv2d' needs a 4-d NCHW input, but this is f32[batch,28,28]");
    n = conv(0, 3, 3, 1, 0, true);
    expect_err(infer1(&n, &x, &e), &e, 1, "'conv2d' out_channels must be between 1 and");
    /* kernel, stride and padding are call arguments 2, 3 and 4 */
    n = conv(2, 0, 3, 1, 0, true);
    expect_err(infer1(&n, &x, &e), &e, 2, "'conv2d' kernel size must be between 1 and 2147483647");
    n = conv(2, 3, 3, 0, 0, true);
    expect_err(infer1(&n, &x, &e), &e, 3, "'conv2d' stride must be between 1 and");
    n = conv(2, 3, 3, 1, -1, true);
    expect_err(infer1(&n, &x, &e), &e, 4, "'conv2d' padding must be between 0 and");
    n = conv(2, 3, (int64_t)PN_MAX_DIM + 1, 1, 0, true);
    expect_err(infer1(&n, &x, &e), &e, 2, "kernel size must be between");
    pn_node big = F32(B, 1 << 24, 8, 8);
    n = conv(1 << 24, 3, 3, 1, 1, true);
    expect_err(infer1(&n, &big, &e), &e, -1, "'conv2d' weight is too large");
}

/* ---- pooling ----------------------------------------------------------------------------- */

static void test_pool_default_stride(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 6, 28, 28), n = pool(PN_OP_MAXPOOL2D, 2, DEFAULT_STRIDE, 0);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 6, 14, 14);
    assert_int_equal(n.ia[PN_POOL_SH], 2);
    assert_int_equal(n.ia[PN_POOL_SW], 2);
    assert_int_equal(n.nparams, 0);
    /* odd size: floor((5 - 2) / 2) + 1 = 2 */
    pn_node o = F32(B, 1, 5, 5);
    n = pool(PN_OP_AVGPOOL2D, 2, DEFAULT_STRIDE, 0);
    expect_ok(infer1(&n, &o, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 1, 2, 2);
    /* explicit stride and padding: floor((32 + 2 - 3) / 2) + 1 = 16 */
    pn_node y = F32(B, 8, 32, 32);
    n = pool(PN_OP_MAXPOOL2D, 3, 2, 1);
    expect_ok(infer1(&n, &y, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 8, 16, 16);
    /* stride 1, size 3 */
    n = pool(PN_OP_AVGPOOL2D, 3, 1, 0);
    expect_ok(infer1(&n, &y, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 8, 30, 30);
}

static void test_pool_errors(void **state) {
    (void)state;
    pn_shape_err e;
    /* size, stride and padding are call arguments 1, 2 and 3 */
    pn_node x = F32(B, 1, 8, 8), n = pool(PN_OP_MAXPOOL2D, 2, DEFAULT_STRIDE, 2);
    expect_err(infer1(&n, &x, &e), &e, 3, "'maxpool2d' padding 2 is more than half the window size 2");
    n = pool(PN_OP_AVGPOOL2D, 3, 1, 2);
    expect_err(infer1(&n, &x, &e), &e, 3, "'avgpool2d' padding 2 is more than half the window size 3");
    /* exactly half is allowed: floor((8 + 2 - 2) / 2) + 1 = 5 */
    n = pool(PN_OP_MAXPOOL2D, 2, DEFAULT_STRIDE, 1);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 1, 5, 5);
    pn_node small = F32(B, 1, 2, 2);
    n = pool(PN_OP_MAXPOOL2D, 3, DEFAULT_STRIDE, 0);
    expect_err(infer1(&n, &small, &e), &e, -1, "'maxpool2d' window 3x3 is larger than the padded input 2x2");
    pn_node r2 = F32(B, 8);
    n = pool(PN_OP_AVGPOOL2D, 2, DEFAULT_STRIDE, 0);
    expect_err(infer1(&n, &r2, &e), &e, 0, "'avgpool2d' needs a 4-d NCHW input");
    n = pool(PN_OP_MAXPOOL2D, 0, DEFAULT_STRIDE, 0);
    expect_err(infer1(&n, &x, &e), &e, 1, "'maxpool2d' window size must be between 1 and");
    /* an explicit stride 0 is an error, not the default */
    n = pool(PN_OP_MAXPOOL2D, 2, 0, 0);
    expect_err(infer1(&n, &x, &e), &e, 2, "'maxpool2d' stride must be between 1 and");
    n = pool(PN_OP_AVGPOOL2D, 2, -1, 0);
    expect_err(infer1(&n, &x, &e), &e, 2, "stride must be between");
    n = pool(PN_OP_AVGPOOL2D, 2, 1, -1);
    expect_err(infer1(&n, &x, &e), &e, 3, "'avgpool2d' padding must be between 0 and");
}

static void test_global_avgpool(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 32, 8, 8), n = op_node(PN_OP_GLOBAL_AVGPOOL);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 32, 1, 1);
    assert_int_equal(n.nparams, 0);
    pn_node r2 = F32(B, 32);
    n = op_node(PN_OP_GLOBAL_AVGPOOL);
    expect_err(infer1(&n, &r2, &e), &e, 0, "'global_avgpool' needs a 4-d NCHW input, but this is f32[batch,32]");
}

/* ---- normalisation and embedding ---------------------------------------------------------- */

static pn_node norm(pn_op op, double eps, double momentum) {
    pn_node n = op_node(op);
    n.fa[PN_FA_VALUE] = eps;
    n.fa[PN_FA_MOMENTUM] = momentum;
    return n;
}

static void test_batchnorm(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 16, 8, 8), n = norm(PN_OP_BATCHNORM, 1e-5, 0.1);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 16, 8, 8);
    assert_int_equal(n.nparams, 4);
    ASSERT_PARAM(&n, 0, "weight", true, 16);
    ASSERT_PARAM(&n, 1, "bias", true, 16);
    ASSERT_PARAM(&n, 2, "running_mean", false, 16);
    ASSERT_PARAM(&n, 3, "running_var", false, 16);
    pn_node x2 = F32(B, 10);
    n = norm(PN_OP_BATCHNORM, 1e-5, 0.1);
    expect_ok(infer1(&n, &x2, &e), &e);
    ASSERT_PARAM(&n, 0, "weight", true, 10);

    pn_node x5 = F32(B, 2, 3, 4, 5);
    n = norm(PN_OP_BATCHNORM, 1e-5, 0.1);
    expect_err(infer1(&n, &x5, &e), &e, 0, "'batchnorm' needs an input of 2 to 4 dimensions");
    pn_node x1 = F32(B);
    n = norm(PN_OP_BATCHNORM, 1e-5, 0.1);
    expect_err(infer1(&n, &x1, &e), &e, 0, "2 to 4 dimensions");
    n = norm(PN_OP_BATCHNORM, 0, 0.1);
    expect_err(infer1(&n, &x, &e), &e, -1, "'batchnorm' eps must be positive");
    n = norm(PN_OP_BATCHNORM, 1e-5, 1.5);
    expect_err(infer1(&n, &x, &e), &e, -1, "'batchnorm' momentum must be between 0 and 1");
}

static void test_layernorm(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 10, 32), n = norm(PN_OP_LAYERNORM, 1e-5, 0);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 10, 32);
    assert_int_equal(n.nparams, 2);
    ASSERT_PARAM(&n, 0, "weight", true, 32);
    ASSERT_PARAM(&n, 1, "bias", true, 32);
    n = norm(PN_OP_LAYERNORM, -1, 0);
    expect_err(infer1(&n, &x, &e), &e, -1, "'layernorm' eps must be positive");
    pn_node xb = F32(B);
    n = norm(PN_OP_LAYERNORM, 1e-5, 0);
    expect_err(infer1(&n, &xb, &e), &e, 0, "'layernorm' needs a feature axis");
}

static pn_node embedding(int64_t vocab, int64_t dim) {
    pn_node n = op_node(PN_OP_EMBEDDING);
    n.ia[PN_EMB_VOCAB] = vocab;
    n.ia[PN_EMB_DIM] = dim;
    return n;
}

static void test_embedding(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node ids = I32(B, 16), n = embedding(1000, 32);
    expect_ok(infer1(&n, &ids, &e), &e);
    assert_int_equal(n.dtype, PN_F32);
    ASSERT_SHAPE(&n.shape, B, 16, 32);
    assert_int_equal(n.nparams, 1);
    ASSERT_PARAM(&n, 0, "weight", true, 1000, 32);

    pn_node f = F32(B, 16);
    n = embedding(1000, 32);
    expect_err(infer1(&n, &f, &e), &e, 0, "'embedding' needs ids of type i32, but this is f32[batch,16]");
    n = embedding(0, 32);
    expect_err(infer1(&n, &ids, &e), &e, 1, "'embedding' vocab must be between 1 and");
    n = embedding(10, 0);
    expect_err(infer1(&n, &ids, &e), &e, 2, "'embedding' dim must be between 1 and");
    pn_node deep = I32(B, 1, 1, 1, 1, 1, 1, 2);
    n = embedding(10, 4);
    expect_err(infer1(&n, &deep, &e), &e, 0, "more than 8 dimensions");
    n = embedding(PN_MAX_DIM, PN_MAX_DIM);
    expect_err(infer1(&n, &ids, &e), &e, -1, "'embedding' table is too large");
}

/* ---- elementwise unary ops ---------------------------------------------------------------- */

static void test_unary_eltwise(void **state) {
    (void)state;
    static const pn_op ops[] = {PN_OP_RELU, PN_OP_LEAKY_RELU, PN_OP_SIGMOID, PN_OP_TANH, PN_OP_GELU, PN_OP_SILU, PN_OP_ELU, PN_OP_SOFTPLUS};
    pn_shape_err e;
    pn_node x = F32(B, 3, 5), i = I32(B, 3);
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        pn_node n = op_node(ops[k]);
        n.fa[PN_FA_VALUE] = 0.01;
        expect_ok(infer1(&n, &x, &e), &e);
        ASSERT_SHAPE(&n.shape, B, 3, 5);
        assert_int_equal(n.dtype, PN_F32);
        assert_int_equal(n.nparams, 0);
        n = op_node(ops[k]);
        expect_err(infer1(&n, &i, &e), &e, 0, "needs an f32 tensor");
        assert_non_null(strstr(e.msg, pn_ops[ops[k]].name));
    }
}

/* elu and softplus are activations; prelu owns one slope per channel (axis 1). */
static void test_elu_softplus_prelu(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 3, 5), n = op_node(PN_OP_ELU);
    n.fa[PN_FA_VALUE] = 1.0;
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 3, 5);
    n = op_node(PN_OP_SOFTPLUS);
    expect_ok(infer1(&n, &x, &e), &e);
    assert_int_equal(n.nparams, 0);
    n = op_node(PN_OP_PRELU);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 3, 5);
    assert_int_equal(n.nparams, 1);
    ASSERT_PARAM(&n, 0, "weight", true, 3);
    pn_node img = F32(B, 6, 4, 4);
    n = op_node(PN_OP_PRELU);
    n.ia[PN_PRELU_FROZEN] = 1;
    expect_ok(infer1(&n, &img, &e), &e);
    ASSERT_PARAM(&n, 0, "weight", false, 6);
    pn_node v = F32(B);
    n = op_node(PN_OP_PRELU);
    expect_err(infer1(&n, &v, &e), &e, 0, "'prelu' needs a channel axis (axis 1), but the input is f32[batch]");
    pn_node i = I32(B, 3);
    n = op_node(PN_OP_PRELU);
    expect_err(infer1(&n, &i, &e), &e, 0, "'prelu' needs an f32 tensor");
}

/* pad: [rows, cols] pads both sides, [top, bottom, left, right] each. */
static void test_pad(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 3, 6, 5), n = op_node(PN_OP_PAD);
    static const int64_t two[] = {1, 2}, four[] = {0, 1, 3, 2}, neg[] = {0, -1, 0, 0}, three[] = {1, 1, 1};
    expect_ok(infer_list(&n, &x, NULL, two, 2, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 3, 8, 9);
    assert_int_equal(n.ia[PN_PAD_TOP], 1);
    assert_int_equal(n.ia[PN_PAD_RIGHT], 2);
    n = op_node(PN_OP_PAD);
    expect_ok(infer_list(&n, &x, NULL, four, 4, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 3, 7, 10);
    assert_int_equal(n.ia[PN_PAD_LEFT], 3);
    n = op_node(PN_OP_PAD);
    expect_err(infer_list(&n, &x, NULL, neg, 4, &e), &e, 1, "'pad' padding must be between 0 and 2147483647, not -1");
    n = op_node(PN_OP_PAD);
    expect_err(infer_list(&n, &x, NULL, three, 3, &e), &e, 1,
               "'pad' padding must be [rows, cols] or [top, bottom, left, right], not a list of 3");
    pn_node x2 = F32(B, 6);
    n = op_node(PN_OP_PAD);
    expect_err(infer_list(&n, &x2, NULL, two, 2, &e), &e, 0, "'pad' needs a 4-d NCHW input, but this is f32[batch,6]");
}

static void test_dropout(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 10), n = op_node(PN_OP_DROPOUT);
    n.fa[PN_FA_VALUE] = 0.5;
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 10);
    n = op_node(PN_OP_DROPOUT);
    n.fa[PN_FA_VALUE] = 0.0;
    expect_ok(infer1(&n, &x, &e), &e);
    n = op_node(PN_OP_DROPOUT);
    n.fa[PN_FA_VALUE] = 1.0;
    expect_err(infer1(&n, &x, &e), &e, 1, "'dropout' p must be in [0, 1)");
    n = op_node(PN_OP_DROPOUT);
    n.fa[PN_FA_VALUE] = -0.1;
    expect_err(infer1(&n, &x, &e), &e, 1, "'dropout' p must be in [0, 1)");
}

/* ---- softmax ------------------------------------------------------------------------------ */

static void test_softmax_axis(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 10), n = axis_op(PN_OP_SOFTMAX, -1);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 10);
    assert_int_equal(n.ia[PN_AXIS], 1);
    pn_node y = F32(B, 4, 6);
    n = axis_op(PN_OP_LOG_SOFTMAX, -2);
    expect_ok(infer1(&n, &y, &e), &e);
    assert_int_equal(n.ia[PN_AXIS], 1);
    n = axis_op(PN_OP_LOG_SOFTMAX, 2);
    expect_ok(infer1(&n, &y, &e), &e);
    assert_int_equal(n.ia[PN_AXIS], 2);
    /* axis 0 is fine without a batch axis */
    pn_node u = F32(3, 4);
    n = axis_op(PN_OP_SOFTMAX, 0);
    expect_ok(infer1(&n, &u, &e), &e);
    assert_int_equal(n.ia[PN_AXIS], 0);
}

static void test_softmax_errors(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 10), n = axis_op(PN_OP_SOFTMAX, 0);
    expect_err(infer1(&n, &x, &e), &e, 1, "'softmax' over the batch axis is not supported");
    n = axis_op(PN_OP_LOG_SOFTMAX, -2);
    expect_err(infer1(&n, &x, &e), &e, 1, "'log_softmax' over the batch axis");
    n = axis_op(PN_OP_SOFTMAX, 2);
    expect_err(infer1(&n, &x, &e), &e, 1, "axis 2 is out of range for f32[batch,10]");
    n = axis_op(PN_OP_SOFTMAX, -3);
    expect_err(infer1(&n, &x, &e), &e, 1, "axis -3 is out of range");
    pn_node s = scalar();
    n = axis_op(PN_OP_SOFTMAX, -1);
    expect_err(infer1(&n, &s, &e), &e, 0, "'softmax' needs a tensor of at least one dimension");
}

static void test_causal_softmax(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 2, 5, 7), n = op_node(PN_OP_CAUSAL_SOFTMAX);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 2, 5, 7);
    assert_int_equal(n.ia[PN_AXIS], 3); /* the last axis */
    pn_node u = F32(4, 4);
    n = op_node(PN_OP_CAUSAL_SOFTMAX);
    expect_ok(infer1(&n, &u, &e), &e);
    assert_int_equal(n.ia[PN_AXIS], 1);
    pn_node rows = F32(B, 7);
    n = op_node(PN_OP_CAUSAL_SOFTMAX);
    expect_err(infer1(&n, &rows, &e), &e, 0, "'causal_softmax' needs rows and columns after the batch axis");
    pn_node v = F32(7);
    n = op_node(PN_OP_CAUSAL_SOFTMAX);
    expect_err(infer1(&n, &v, &e), &e, 0, "([..., T, S]), but this is f32[7]");
}

static pn_node slice_op(int64_t axis, int64_t start, int64_t end) {
    pn_node n = axis_op(PN_OP_SLICE, axis);
    n.ia[PN_SLICE_START] = start;
    n.ia[PN_SLICE_END] = end;
    return n;
}

static void test_slice(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 6, 5), n = slice_op(1, 2, 5);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 3, 5);
    n = slice_op(-1, -3, -1); /* x[..., -3:-1] */
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 6, 2);
    assert_int_equal(n.ia[PN_AXIS], 2);
    assert_int_equal(n.ia[PN_SLICE_START], 2);
    assert_int_equal(n.ia[PN_SLICE_END], 4);
    n = slice_op(2, 0, 5); /* the whole axis */
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 6, 5);
    pn_node u = F32(4, 3), i = I32(B, 6);
    n = slice_op(0, 3, 4);
    expect_ok(infer1(&n, &u, &e), &e);
    ASSERT_SHAPE(&n.shape, 1, 3);
    n = slice_op(1, 0, 1);
    expect_err(infer1(&n, &i, &e), &e, 0, "'slice' needs an f32 tensor");
}

static void test_slice_errors(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 6, 5), n = slice_op(0, 0, 1);
    expect_err(infer1(&n, &x, &e), &e, 1, "'slice' along the batch axis is not supported");
    n = slice_op(3, 0, 1);
    expect_err(infer1(&n, &x, &e), &e, 1, "axis 3 is out of range for f32[batch,6,5]");
    n = slice_op(1, 6, 7);
    expect_err(infer1(&n, &x, &e), &e, 2, "'slice' start 6 is out of range for axis 1 of f32[batch,6,5] (-6 to 5)");
    n = slice_op(1, -7, 2);
    expect_err(infer1(&n, &x, &e), &e, 2, "start -7 is out of range");
    n = slice_op(1, 0, 7);
    expect_err(infer1(&n, &x, &e), &e, 3, "'slice' end 7 is out of range for axis 1 of f32[batch,6,5] (-6 to 6)");
    n = slice_op(1, 3, 3);
    expect_err(infer1(&n, &x, &e), &e, 3, "'slice' end 3 is not after start 3: the slice of axis 1 would be empty");
    n = slice_op(1, -2, -4);
    expect_err(infer1(&n, &x, &e), &e, 3, "end -4 is not after start -2");
    pn_node s = scalar();
    n = slice_op(0, 0, 1);
    expect_err(infer1(&n, &s, &e), &e, 0, "'slice' needs a tensor of at least one dimension");
}

static void test_positions(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node ids = I32(B, 7), h = F32(B, 7, 16), n = axis_op(PN_OP_POSITIONS, 1);
    expect_ok(infer1(&n, &ids, &e), &e); /* ids of either type: only the shape is read */
    assert_int_equal(n.dtype, PN_I32);
    ASSERT_SHAPE(&n.shape, B, 7);
    n = axis_op(PN_OP_POSITIONS, 1);
    expect_ok(infer1(&n, &h, &e), &e);
    assert_int_equal(n.dtype, PN_I32);
    ASSERT_SHAPE(&n.shape, B, 7);
    n = axis_op(PN_OP_POSITIONS, -1);
    expect_ok(infer1(&n, &h, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 7, 16);
    assert_int_equal(n.ia[PN_AXIS], 2);
    pn_node u = F32(5, 3);
    n = axis_op(PN_OP_POSITIONS, 0);
    expect_ok(infer1(&n, &u, &e), &e);
    ASSERT_SHAPE(&n.shape, 5);
    /* The positions feed an embedding of at least as many rows. */
    pn_node emb = embedding(7, 4);
    expect_ok(infer1(&emb, &n, &e), &e);
    ASSERT_SHAPE(&emb.shape, 5, 4);
    n = axis_op(PN_OP_POSITIONS, 1);
    expect_ok(infer1(&n, &h, &e), &e);
    emb = embedding(6, 4);
    expect_err(infer1(&emb, &n, &e), &e, 1, "'embedding' vocab 6 is smaller than the 7 positions it looks up");
}

static void test_positions_errors(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node h = F32(B, 7, 16), n = axis_op(PN_OP_POSITIONS, 0);
    expect_err(infer1(&n, &h, &e), &e, 1, "'positions' along the batch axis is not supported");
    n = axis_op(PN_OP_POSITIONS, 3);
    expect_err(infer1(&n, &h, &e), &e, 1, "axis 3 is out of range for f32[batch,7,16]");
    n = axis_op(PN_OP_POSITIONS, -4);
    expect_err(infer1(&n, &h, &e), &e, 1, "axis -4 is out of range");
    pn_node s = scalar();
    n = axis_op(PN_OP_POSITIONS, 0);
    expect_err(infer1(&n, &s, &e), &e, 0, "'positions' needs a tensor of at least one dimension");
}

/* ---- flatten, reshape --------------------------------------------------------------------- */

static void test_flatten(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 16, 5, 5), n = op_node(PN_OP_FLATTEN);
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 400);
    pn_node u = F32(3, 4, 5);
    n = op_node(PN_OP_FLATTEN);
    expect_ok(infer1(&n, &u, &e), &e);
    ASSERT_SHAPE(&n.shape, 3, 20);
    pn_node two = F32(B, 7);
    n = op_node(PN_OP_FLATTEN);
    expect_ok(infer1(&n, &two, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 7);
    pn_node one = F32(B);
    n = op_node(PN_OP_FLATTEN);
    expect_err(infer1(&n, &one, &e), &e, 0, "'flatten' needs at least 2 dimensions, but the input is f32[batch]");
}

static void test_reshape(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 16, 32), n = op_node(PN_OP_RESHAPE);
    expect_ok(infer_list(&n, &x, NULL, LIST(PN_LIST_BATCH, 512), &e), &e);
    ASSERT_SHAPE(&n.shape, B, 512);
    /* without a leading batch the batch axis is kept */
    n = op_node(PN_OP_RESHAPE);
    expect_ok(infer_list(&n, &x, NULL, LIST(8, 64), &e), &e);
    ASSERT_SHAPE(&n.shape, B, 8, 64);
    n = op_node(PN_OP_RESHAPE);
    expect_ok(infer_list(&n, &x, NULL, LIST(-1), &e), &e);
    ASSERT_SHAPE(&n.shape, B, 512);
    n = op_node(PN_OP_RESHAPE);
    expect_ok(infer_list(&n, &x, NULL, LIST(PN_LIST_BATCH, 4, -1, 2), &e), &e);
    ASSERT_SHAPE(&n.shape, B, 4, 64, 2);
    pn_node u = F32(6);
    n = op_node(PN_OP_RESHAPE);
    expect_ok(infer_list(&n, &u, NULL, LIST(2, 3), &e), &e);
    ASSERT_SHAPE(&n.shape, 2, 3);
    /* a batched input with no target dimensions: only one element per sample fits */
    pn_node b1 = F32(B, 1, 1);
    n = op_node(PN_OP_RESHAPE);
    expect_ok(infer_list(&n, &b1, NULL, LIST(PN_LIST_BATCH), &e), &e);
    ASSERT_SHAPE(&n.shape, B);
}

static void test_reshape_errors(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 12), n = op_node(PN_OP_RESHAPE);
    expect_err(infer_list(&n, &x, NULL, LIST(5), &e), &e, 1,
               "cannot reshape f32[batch,12] (12 elements per sample) into 5 elements");
    n = op_node(PN_OP_RESHAPE);
    expect_err(infer_list(&n, &x, NULL, LIST(5, -1), &e), &e, 1, "12 elements per sample do not divide by 5");
    n = op_node(PN_OP_RESHAPE);
    expect_err(infer_list(&n, &x, NULL, LIST(-1, -1), &e), &e, 1, "only one dimension can be -1");
    n = op_node(PN_OP_RESHAPE);
    expect_err(infer_list(&n, &x, NULL, LIST(3, PN_LIST_BATCH), &e), &e, 1, "'batch' can only be the first dimension");
    n = op_node(PN_OP_RESHAPE);
    expect_err(infer_list(&n, &x, NULL, LIST(0, 12), &e), &e, 1, "dimension 0 in 'reshape' must be positive");
    n = op_node(PN_OP_RESHAPE);
    expect_err(infer_list(&n, &x, NULL, LIST(-2, -6), &e), &e, 1, "dimension -2 in 'reshape' must be positive");
    pn_node u = F32(12);
    n = op_node(PN_OP_RESHAPE);
    expect_err(infer_list(&n, &u, NULL, LIST(PN_LIST_BATCH, 12), &e), &e, 1,
               "'batch' in the new shape, but the input f32[12] has no batch axis");
    n = op_node(PN_OP_RESHAPE);
    expect_err(infer_list(&n, &u, NULL, NULL, 0, &e), &e, 1, "'reshape' needs at least one dimension");
    n = op_node(PN_OP_RESHAPE);
    expect_err(infer_list(&n, &x, NULL, LIST(1, 1, 1, 1, 1, 1, 1, 12), &e), &e, 1, "more than 8 dimensions");
    n = op_node(PN_OP_RESHAPE);
    expect_err(infer_list(&n, &x, NULL, LIST(PN_MAX_DIM, PN_MAX_DIM, PN_MAX_DIM), &e), &e, 1, "'reshape' target is too large");
}

/* ---- concat, transpose -------------------------------------------------------------------- */

static void test_concat(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node a = F32(B, 3), b = F32(B, 5), n = axis_op(PN_OP_CONCAT, 1);
    expect_ok(infer2(&n, &a, &b, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 8);
    n = axis_op(PN_OP_CONCAT, -1);
    expect_ok(infer2(&n, &a, &b, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 8);
    assert_int_equal(n.ia[PN_AXIS], 1);
    /* three inputs, middle axis */
    pn_node p = F32(B, 2, 4), q = F32(B, 3, 4), r = F32(B, 5, 4);
    const pn_node *in[3] = {&p, &q, &r};
    n = axis_op(PN_OP_CONCAT, 1);
    expect_ok(pn_shape_infer(&n, in, 3, NULL, 0, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 10, 4);
    /* axis 0 without a batch axis */
    pn_node u = F32(2, 3), v = F32(4, 3);
    n = axis_op(PN_OP_CONCAT, 0);
    expect_ok(infer2(&n, &u, &v, &e), &e);
    ASSERT_SHAPE(&n.shape, 6, 3);
    /* one input */
    n = axis_op(PN_OP_CONCAT, 0);
    expect_ok(infer1(&n, &u, &e), &e);
    ASSERT_SHAPE(&n.shape, 2, 3);
}

static void test_concat_errors(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node a = F32(B, 3), b = F32(B, 5), n = axis_op(PN_OP_CONCAT, 0);
    expect_err(infer2(&n, &a, &b, &e), &e, 2, "'concat' along the batch axis is not supported");
    n = axis_op(PN_OP_CONCAT, -2);
    expect_err(infer2(&n, &a, &b, &e), &e, 2, "along the batch axis");
    n = axis_op(PN_OP_CONCAT, 2);
    expect_err(infer2(&n, &a, &b, &e), &e, 2, "axis 2 is out of range for f32[batch,3]");
    pn_node p = F32(B, 3, 4), q = F32(B, 3, 5);
    n = axis_op(PN_OP_CONCAT, 1);
    expect_err(infer2(&n, &p, &q, &e), &e, 1, "'concat' operand f32[batch,3,5] does not match f32[batch,3,4] outside axis 1");
    pn_node r = F32(B, 3, 4, 1);
    n = axis_op(PN_OP_CONCAT, 1);
    expect_err(infer2(&n, &p, &r, &e), &e, 1, "does not match");
    pn_node i = I32(B, 5);
    n = axis_op(PN_OP_CONCAT, 1);
    expect_err(infer2(&n, &a, &i, &e), &e, 1, "'concat' needs an f32 tensor");
    pn_node s = scalar();
    n = axis_op(PN_OP_CONCAT, 0);
    expect_err(infer1(&n, &s, &e), &e, 0, "'concat' needs tensors of at least one dimension");
    n = axis_op(PN_OP_CONCAT, 0);
    memset(&e, 0, sizeof e);
    assert_false(pn_shape_infer(&n, NULL, 0, NULL, 0, &e));
    assert_non_null(strstr(e.msg, "'concat' needs at least one tensor"));
}

/* A batched operand along axis 0 of an unbatched one must not add the batch marker (-1) as a size. */
static void test_concat_batch_operand_on_axis0(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node u = F32(3, 4), b = F32(B, 4), n = axis_op(PN_OP_CONCAT, 0);
    expect_err(infer2(&n, &u, &b, &e), &e, 1, "'concat' operand f32[batch,4] and f32[3,4] differ in having a batch axis");
    pn_node b3 = F32(B, 3, 4), u3 = F32(2, 3, 4);
    n = axis_op(PN_OP_CONCAT, 1);
    expect_err(infer2(&n, &u3, &b3, &e), &e, 1, "does not match");
}

static pn_node transpose(void) { return op_node(PN_OP_TRANSPOSE); }

static void test_transpose(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 4, 5), n = transpose();
    expect_ok(infer_list(&n, &x, NULL, LIST(0, 2, 1), &e), &e);
    ASSERT_SHAPE(&n.shape, B, 5, 4);
    assert_int_equal(n.ia[PN_PERM + 0], 0);
    assert_int_equal(n.ia[PN_PERM + 1], 2);
    assert_int_equal(n.ia[PN_PERM + 2], 1);
    n = transpose();
    expect_ok(infer_list(&n, &x, NULL, LIST(0, -1, -2), &e), &e);
    ASSERT_SHAPE(&n.shape, B, 5, 4);
    assert_int_equal(n.ia[PN_PERM + 1], 2);
    n = transpose();
    expect_ok(infer_list(&n, &x, NULL, LIST(0, 1, 2), &e), &e);
    ASSERT_SHAPE(&n.shape, B, 4, 5);
    pn_node u = F32(2, 3, 7);
    n = transpose();
    expect_ok(infer_list(&n, &u, NULL, LIST(2, 0, 1), &e), &e);
    ASSERT_SHAPE(&n.shape, 7, 2, 3);
}

static void test_transpose_errors(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 4, 5), n = transpose();
    expect_err(infer_list(&n, &x, NULL, LIST(1, 0, 2), &e), &e, 1, "'transpose' cannot move the batch axis");
    n = transpose();
    expect_err(infer_list(&n, &x, NULL, LIST(0, 1, 1), &e), &e, 1, "'transpose' needs a permutation of 0..2");
    n = transpose();
    expect_err(infer_list(&n, &x, NULL, LIST(0, 1, 3), &e), &e, 1, "permutation of 0..2");
    n = transpose();
    expect_err(infer_list(&n, &x, NULL, LIST(0, 1, -4), &e), &e, 1, "permutation of 0..2");
    n = transpose();
    expect_err(infer_list(&n, &x, NULL, LIST(PN_LIST_BATCH, 1, 2), &e), &e, 1, "permutation of 0..2");
    n = transpose();
    expect_err(infer_list(&n, &x, NULL, LIST(0, 1), &e), &e, 1,
               "'transpose' permutation has 2 entries, but the input f32[batch,4,5] has 3 dimensions");
}

/* frozen = true: the same parameters, none trained; batchnorm's buffers stay buffers. */
static void test_frozen(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node x = F32(B, 64), img = F32(B, 3, 8, 8), n = dense(128, true);
    n.ia[PN_DENSE_FROZEN] = 1;
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_PARAM(&n, 0, "weight", false, 128, 64);
    ASSERT_PARAM(&n, 1, "bias", false, 128);
    n = conv(4, 3, 3, 1, 0, true);
    n.ia[PN_CONV_FROZEN] = 1;
    expect_ok(infer1(&n, &img, &e), &e);
    ASSERT_PARAM(&n, 0, "weight", false, 4, 3, 3, 3);
    n = op_node(PN_OP_BATCHNORM);
    n.fa[PN_FA_VALUE] = 1e-5;
    n.ia[PN_NORM_FROZEN] = 1;
    expect_ok(infer1(&n, &img, &e), &e);
    ASSERT_PARAM(&n, 0, "weight", false, 3);
    ASSERT_PARAM(&n, 2, "running_mean", false, 3);
    n = op_node(PN_OP_LAYERNORM);
    n.fa[PN_FA_VALUE] = 1e-5;
    n.ia[PN_NORM_FROZEN] = 1;
    expect_ok(infer1(&n, &x, &e), &e);
    ASSERT_PARAM(&n, 1, "bias", false, 64);
    pn_node ids = I32(B, 5);
    n = embedding(10, 4);
    n.ia[PN_EMB_FROZEN] = 1;
    expect_ok(infer1(&n, &ids, &e), &e);
    ASSERT_PARAM(&n, 0, "weight", false, 10, 4);
    n = embedding(10, 4); /* not frozen: trained */
    expect_ok(infer1(&n, &ids, &e), &e);
    ASSERT_PARAM(&n, 0, "weight", true, 10, 4);
}

/* ---- matmul ------------------------------------------------------------------------------- */

static void test_matmul(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node a = F32(B, 4), w = F32(4, 5), n = op_node(PN_OP_MATMUL);
    expect_ok(infer2(&n, &a, &w, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 5);
    assert_int_equal(n.nparams, 0);
    /* attention scores: [N,T,d] x [N,d,T] */
    pn_node q = F32(B, 16, 32), kt = F32(B, 32, 16);
    n = op_node(PN_OP_MATMUL);
    expect_ok(infer2(&n, &q, &kt, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 16, 16);
    /* broadcast batch dims: [N,T,d] x [d,e] and [T,d] x [N,d,e] */
    pn_node m = F32(32, 8);
    n = op_node(PN_OP_MATMUL);
    expect_ok(infer2(&n, &q, &m, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 16, 8);
    pn_node t = F32(16, 32), bm = F32(B, 32, 8);
    n = op_node(PN_OP_MATMUL);
    expect_ok(infer2(&n, &t, &bm, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 16, 8);
    pn_node b4 = F32(B, 2, 3, 4), b3 = F32(1, 4, 6);
    n = op_node(PN_OP_MATMUL);
    expect_ok(infer2(&n, &b4, &b3, &e), &e);
    ASSERT_SHAPE(&n.shape, B, 2, 3, 6);
}

static void test_matmul_vectors(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node v = F32(4), m = F32(4, 5), n = op_node(PN_OP_MATMUL);
    expect_ok(infer2(&n, &v, &m, &e), &e);
    ASSERT_SHAPE(&n.shape, 5);
    pn_node m2 = F32(3, 4);
    n = op_node(PN_OP_MATMUL);
    expect_ok(infer2(&n, &m2, &v, &e), &e);
    ASSERT_SHAPE(&n.shape, 3);
    n = op_node(PN_OP_MATMUL);
    expect_ok(infer2(&n, &v, &v, &e), &e);
    assert_int_equal(n.shape.rank, 0);
    pn_node a = F32(B, 4);
    n = op_node(PN_OP_MATMUL);
    expect_ok(infer2(&n, &a, &v, &e), &e);
    ASSERT_SHAPE(&n.shape, B);
}

static void test_matmul_errors(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node a = F32(B, 4), b = F32(5, 6), n = op_node(PN_OP_MATMUL);
    expect_err(infer2(&n, &a, &b, &e), &e, -1, "'matmul' inner dimensions differ: f32[batch,4] times f32[5,6]");
    pn_node v = F32(4), bb = F32(B, 4);
    n = op_node(PN_OP_MATMUL);
    expect_err(infer2(&n, &v, &bb, &e), &e, -1, "'matmul' would contract over the batch axis");
    n = op_node(PN_OP_MATMUL);
    expect_err(infer2(&n, &a, &bb, &e), &e, -1, "contract over the batch axis");
    pn_node x = F32(B, 2, 3, 4), y = F32(5, 4, 6);
    n = op_node(PN_OP_MATMUL);
    expect_err(infer2(&n, &x, &y, &e), &e, -1, "'matmul' batch dimensions of f32[batch,2,3,4] and f32[5,4,6] do not broadcast");
    pn_node r3 = F32(B, 4, 6);
    n = op_node(PN_OP_MATMUL);
    expect_err(infer2(&n, &a, &r3, &e), &e, -1, "'matmul' would move the batch axis off the first axis");
    pn_node s = scalar();
    n = op_node(PN_OP_MATMUL);
    expect_err(infer2(&n, &s, &a, &e), &e, -1, "'matmul' needs tensors of at least one dimension");
    pn_node i = I32(4, 5);
    n = op_node(PN_OP_MATMUL);
    expect_err(infer2(&n, &a, &i, &e), &e, 1, "'matmul' needs an f32 tensor");
}

/* ---- losses ------------------------------------------------------------------------------- */

static void test_cross_entropy(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node logits = F32(B, 10), labels = I32(B), n = op_node(PN_OP_CROSS_ENTROPY);
    expect_ok(infer2(&n, &logits, &labels, &e), &e);
    assert_int_equal(n.shape.rank, 0);
    assert_int_equal(n.dtype, PN_F32);
    assert_int_equal(n.nparams, 0);
    pn_node fl = F32(B);
    n = op_node(PN_OP_CROSS_ENTROPY);
    expect_err(infer2(&n, &logits, &fl, &e), &e, 1, "'cross_entropy' needs labels of type i32, but this is f32[batch]");
    pn_node il = I32(B, 10);
    n = op_node(PN_OP_CROSS_ENTROPY);
    expect_err(infer2(&n, &il, &labels, &e), &e, 0, "'cross_entropy' needs an f32 tensor");
    pn_node l3 = F32(B, 4, 10);
    n = op_node(PN_OP_CROSS_ENTROPY);
    expect_err(infer2(&n, &l3, &labels, &e), &e, 0, "'cross_entropy' needs logits [N, C], but this is f32[batch,4,10]");
    pn_node lab2 = I32(B, 1);
    n = op_node(PN_OP_CROSS_ENTROPY);
    expect_err(infer2(&n, &logits, &lab2, &e), &e, 1,
               "'cross_entropy' labels must be [N] for logits f32[batch,10], but this is i32[batch,1]");
    pn_node fixed = F32(4, 10), lab5 = I32(5);
    n = op_node(PN_OP_CROSS_ENTROPY);
    expect_err(infer2(&n, &fixed, &lab5, &e), &e, 1, "labels must be [N]");
    pn_node lab4 = I32(4);
    n = op_node(PN_OP_CROSS_ENTROPY);
    expect_ok(infer2(&n, &fixed, &lab4, &e), &e);
}

static void test_mse(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node p = F32(B, 3), t = F32(B, 3), n = op_node(PN_OP_MSE);
    expect_ok(infer2(&n, &p, &t, &e), &e);
    assert_int_equal(n.shape.rank, 0);
    assert_int_equal(n.dtype, PN_F32);
    pn_node t2 = F32(B, 4);
    n = op_node(PN_OP_MSE);
    expect_err(infer2(&n, &p, &t2, &e), &e, 1, "'mse' needs prediction and target of one shape, but they are f32[batch,3] and f32[batch,4]");
    pn_node t3 = F32(B, 3, 1);
    n = op_node(PN_OP_MSE);
    expect_err(infer2(&n, &p, &t3, &e), &e, 1, "of one shape");
    pn_node ti = I32(B, 3);
    n = op_node(PN_OP_MSE);
    expect_err(infer2(&n, &p, &ti, &e), &e, 1, "'mse' needs an f32 tensor");
}

/* ---- broadcasting and size limits --------------------------------------------------------- */

static bool bcast(const pn_node *a, const pn_node *b, pn_shape *out) { return pn_broadcast(&a->shape, &b->shape, out); }

static void test_broadcast(void **state) {
    (void)state;
    pn_shape o;
    pn_node a = F32(B, 3), b = F32(3), c = F32(B, 1), d = F32(4, 1, 5), s = scalar(), one = F32(1, 3);
    assert_true(bcast(&a, &b, &o));
    ASSERT_SHAPE(&o, B, 3);
    assert_true(bcast(&b, &a, &o));
    ASSERT_SHAPE(&o, B, 3);
    assert_true(bcast(&c, &b, &o));
    ASSERT_SHAPE(&o, B, 3);
    assert_true(bcast(&a, &c, &o));
    ASSERT_SHAPE(&o, B, 3);
    assert_true(bcast(&one, &a, &o)); /* 1 against batch gives batch */
    ASSERT_SHAPE(&o, B, 3);
    assert_true(bcast(&s, &a, &o));
    ASSERT_SHAPE(&o, B, 3);
    assert_true(bcast(&s, &s, &o));
    assert_int_equal(o.rank, 0);
    pn_node e = F32(2, 5);
    assert_true(bcast(&d, &e, &o));
    ASSERT_SHAPE(&o, 4, 2, 5);
}

static void test_broadcast_errors(void **state) {
    (void)state;
    pn_shape o;
    pn_node a = F32(B, 3), b = F32(4), two = F32(2, 3), bb = F32(B), r3 = F32(B, 2, 3), ones = F32(1, 1);
    assert_false(bcast(&a, &b, &o));
    assert_false(bcast(&a, &two, &o));  /* batch against 2 */
    assert_false(bcast(&bb, &b, &o));   /* batch against 4 */
    assert_false(bcast(&bb, &r3, &o));  /* batch would line up with 3 */
    assert_false(bcast(&bb, &ones, &o)); /* batch would end up on axis 1 */
    assert_false(bcast(&a, &r3, &o));   /* [batch,3] vs [batch,2,3]: batch against 2 */
}

static void test_check_size(void **state) {
    (void)state;
    pn_shape_err e;
    pn_node ok = F32(B, 1 << 24, 1 << 24); /* exactly 2^48 per sample */
    memset(&e, 0, sizeof e);
    assert_true(pn_shape_check_size(&ok.shape, &e));
    pn_node big = F32(B, 1 << 24, 1 << 24, 2);
    assert_false(pn_shape_check_size(&big.shape, &e));
    assert_non_null(strstr(e.msg, "more than 2^48 elements per sample"));
    assert_int_equal(e.arg, -1);
    /* 2^24 * 2^24 * (2^31 - 1) overflows 64 bits on the last multiply */
    pn_node ovf = F32(1 << 24, 1 << 24, PN_MAX_DIM);
    memset(&e, 0, sizeof e);
    assert_false(pn_shape_check_size(&ovf.shape, &e));
    assert_non_null(strstr(e.msg, "tensor is too large"));
    pn_node huge = F32(PN_MAX_DIM, PN_MAX_DIM, PN_MAX_DIM, PN_MAX_DIM, PN_MAX_DIM, PN_MAX_DIM, PN_MAX_DIM, PN_MAX_DIM);
    memset(&e, 0, sizeof e);
    assert_false(pn_shape_check_size(&huge.shape, &e));
    assert_non_null(strstr(e.msg, "tensor is too large"));
    pn_node dim = F32(B, (int64_t)PN_MAX_DIM + 1);
    memset(&e, 0, sizeof e);
    assert_false(pn_shape_check_size(&dim.shape, &e));
    assert_non_null(strstr(e.msg, "dimension 2147483648 is too large (the limit is 2147483647)"));
    pn_node maxd = F32(PN_MAX_DIM);
    assert_true(pn_shape_check_size(&maxd.shape, &e));
    pn_node s = scalar();
    assert_true(pn_shape_check_size(&s.shape, &e));
}

/* ---- every op has a rule ------------------------------------------------------------------ */

static void test_every_op_has_a_rule(void **state) {
    (void)state;
    bool seen[PN_OP_COUNT] = {0};
    pn_node x4 = F32(B, 2, 8, 8), x2 = F32(B, 6), ids = I32(B, 3), lab = I32(B), m = F32(6, 6);
    for (int op = 0; op < PN_OP_COUNT; op++) {
        pn_node n = op_node((pn_op)op);
        const pn_node *a = &x2, *b = NULL;
        const int64_t *list = NULL;
        int nlist = 0;
        static const int64_t flat[] = {-1}, perm[] = {0, 1}, pad2[] = {1, 1};
        n.fa[PN_FA_VALUE] = 0.1;
        switch ((pn_op)op) {
        case PN_OP_INPUT: n = x2; a = NULL; break;
        case PN_OP_CONST: a = NULL; break;
        case PN_OP_ADD: case PN_OP_SUB: case PN_OP_MUL: case PN_OP_DIV: case PN_OP_MSE: b = &x2; break;
        case PN_OP_MATMUL: b = &m; break;
        case PN_OP_DENSE: n = dense(3, true); break;
        case PN_OP_CONV2D: n = conv(3, 3, 3, 1, 1, true); a = &x4; break;
        case PN_OP_MAXPOOL2D: case PN_OP_AVGPOOL2D: n = pool((pn_op)op, 2, DEFAULT_STRIDE, 0); a = &x4; break;
        case PN_OP_GLOBAL_AVGPOOL: case PN_OP_CAUSAL_SOFTMAX: a = &x4; break;
        case PN_OP_EMBEDDING: n = embedding(10, 4); a = &ids; break;
        case PN_OP_SOFTMAX: case PN_OP_LOG_SOFTMAX: n.ia[PN_AXIS] = -1; break;
        case PN_OP_CONCAT: n.ia[PN_AXIS] = 1; b = &x2; break;
        case PN_OP_RESHAPE: list = flat; nlist = 1; break;
        case PN_OP_TRANSPOSE: list = perm; nlist = 2; break;
        case PN_OP_SLICE: n.ia[PN_AXIS] = 1; n.ia[PN_SLICE_START] = 1; n.ia[PN_SLICE_END] = -1; break;
        case PN_OP_PAD: list = pad2; nlist = 2; a = &x4; break;
        case PN_OP_POSITIONS: n.ia[PN_AXIS] = 1; a = &ids; break;
        case PN_OP_CROSS_ENTROPY: b = &lab; break;
        default: break;
        }
        pn_shape_err e;
        bool ok = infer_list(&n, a, b, list, nlist, &e);
        if (!ok) print_error("op '%s': %s\n", pn_ops[op].name, e.msg);
        assert_true(ok);
        assert_true(n.shape.rank <= PN_MAX_RANK);
        seen[op] = true;
    }
    for (int op = 0; op < PN_OP_COUNT; op++) assert_true(seen[op]);
}

/* Every row of the op table is complete: a shape rule, FLOPs and a reference forward for every
 * op, a reference backward for every op a gradient can flow through (all but the leaves and the
 * ops with neither parameters nor an input that takes a gradient), attributes when it has any. */
static void test_op_table_rows(void **state) {
    (void)state;
    for (int op = 0; op < PN_OP_COUNT; op++) {
        const pn_op_info *o = &pn_ops[op];
        assert_non_null(o->name);
        assert_non_null(o->shape);
        assert_non_null(o->flops);
        assert_non_null(o->ref_forward);
        assert_non_null(o->attrs);
        bool leaf = op == PN_OP_INPUT || op == PN_OP_CONST;
        int ntensors = 0;
        for (const char *p = o->sig; p && (p = strstr(p, ":tensor")); p += 7) ntensors++;
        if (!leaf && ntensors > 0 && o->nograd_inputs == (1u << ntensors) - 1 && !(o->flags & PN_OPF_PARAMS))
            leaf = true; /* positions: no gradient flows through it */
        if (leaf != (o->ref_backward == NULL)) print_error("op '%s': backward\n", o->name);
        assert_true(leaf == (o->ref_backward == NULL));
        for (int k = 0; k < o->nattrs; k++) assert_non_null(o->attrs[k].key);
        assert_int_equal(o->i32_inputs & ~o->nograd_inputs, 0); /* no gradient flows into an i32 input */
        assert_int_equal(o->any_inputs & ~o->nograd_inputs, 0); /* nor into one of either type */
        assert_int_equal(o->any_inputs & o->i32_inputs, 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_input_untouched),
        cmocka_unit_test(test_const_is_scalar),
        cmocka_unit_test(test_eltwise_binary),
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_dense_rank3_and_rank1),
        cmocka_unit_test(test_dense_errors),
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_conv2d_stride_padding),
        cmocka_unit_test(test_conv2d_groups),
        cmocka_unit_test(test_conv2d_errors),
        cmocka_unit_test(test_pool_default_stride),
        cmocka_unit_test(test_pool_errors),
        cmocka_unit_test(test_global_avgpool),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_unary_eltwise),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_softmax_axis),
        cmocka_unit_test(test_softmax_errors),
        cmocka_unit_test(test_causal_softmax),
        cmocka_unit_test(test_slice),
        cmocka_unit_test(test_slice_errors),
        cmocka_unit_test(test_pad),
        cmocka_unit_test(test_elu_softplus_prelu),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_positions_errors),
        cmocka_unit_test(test_flatten),
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_reshape_errors),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_concat_errors),
        cmocka_unit_test(test_concat_batch_operand_on_axis0),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_transpose_errors),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_frozen),
        cmocka_unit_test(test_matmul_vectors),
        cmocka_unit_test(test_matmul_errors),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_mse),
        cmocka_unit_test(test_broadcast),
        cmocka_unit_test(test_broadcast_errors),
        cmocka_unit_test(test_check_size),
        cmocka_unit_test(test_every_op_has_a_rule),
        cmocka_unit_test(test_op_table_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
