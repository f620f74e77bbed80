/* Unit tests of the ONNX front end (compiler/onnx): models built here with protobuf-c, imported from
 * their packed bytes; the graph, the weights, the names and every error message are checked. */
#include "onnx/onnx.h"
#include "onnx/onnx.pb-c.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- building models (never freed: each test builds a few small ones) --------------------- */

typedef struct model {
    Onnx__ModelProto m;
    Onnx__GraphProto g;
    Onnx__OperatorSetIdProto opset, *opsets[1];
    Onnx__NodeProto *nodes[32];
    Onnx__ValueInfoProto *ins[8], *outs[8];
    Onnx__TensorProto *inits[16];
} model;

/* The models' pieces: kept here and freed when the tests end (release_all), so that
 * LeakSanitizer sees no leak. */
static void **kept;
static size_t nkept, capkept;

static void *keep(void *p) {
    if (!p) return NULL;
    if (nkept == capkept) {
        capkept = capkept ? 2 * capkept : 256;
        kept = realloc(kept, capkept * sizeof *kept);
    }
    kept[nkept++] = p;
    return p;
}

static void *tcalloc(size_t n, size_t size) { return keep(calloc(n, size)); }
static char *tstrdup(const char *s) { return keep(strdup(s)); }

static int release_all(void **state) {
    (void)state;
    for (size_t i = 0; i < nkept; i++) free(kept[i]);
    free(kept);
    kept = NULL, nkept = capkept = 0;
    return 0;
}

static model *model_new(int64_t opset) {
    model *m = tcalloc(1, sizeof *m);
    onnx__model_proto__init(&m->m);
    onnx__graph_proto__init(&m->g);
    onnx__operator_set_id_proto__init(&m->opset);
    m->opset.domain = "";
    m->opset.has_version = 1;
    m->opset.version = opset;
    m->opsets[0] = &m->opset;
    m->m.n_opset_import = 1;
    m->m.opset_import = m->opsets;
    m->m.graph = &m->g;
    m->g.name = "net";
    m->g.node = m->nodes;
    m->g.input = m->ins;
    m->g.output = m->outs;
    m->g.initializer = m->inits;
    return m;
}

/* An f32 input; dims[k] < 0 is symbolic. */
static void input(model *m, const char *name, int rank, const int64_t *dims) {
    Onnx__ValueInfoProto *vi = tcalloc(1, sizeof *vi);
    Onnx__TypeProto *t = tcalloc(1, sizeof *t);
    Onnx__TypeProto__Tensor *tt = tcalloc(1, sizeof *tt);
    Onnx__TensorShapeProto *s = tcalloc(1, sizeof *s);
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(t);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(s);
    s->n_dim = (size_t)rank;
    s->dim = tcalloc((size_t)rank, sizeof *s->dim);
    for (int k = 0; k < rank; k++) {
        Onnx__TensorShapeProto__Dimension *d = tcalloc(1, sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[k] < 0) d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM, d->dim_param = "N";
        else d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE, d->dim_value = dims[k];
        s->dim[k] = d;
    }
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = s;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    vi->name = (char *)name;
    vi->type = t;
    m->ins[m->g.n_input++] = vi;
}

static void output(model *m, const char *name) {
    Onnx__ValueInfoProto *vi = tcalloc(1, sizeof *vi);
    onnx__value_info_proto__init(vi);
    vi->name = (char *)name;
    m->outs[m->g.n_output++] = vi;
}

/* An initializer of type dtype (FLOAT: f; INT64: i). */
static void init(model *m, const char *name, int rank, const int64_t *dims, const float *f, const int64_t *i) {
    Onnx__TensorProto *t = tcalloc(1, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = (char *)name;
    t->n_dims = (size_t)rank;
    t->dims = (int64_t *)dims;
    size_t n = 1;
    for (int k = 0; k < rank; k++) n *= (size_t)dims[k];
    t->has_data_type = 1;
    t->data_type = f ? ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT : ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    if (f) t->n_float_data = n, t->float_data = (float *)f;
    else t->n_int64_data = n, t->int64_data = (int64_t *)i;
    m->inits[m->g.n_initializer++] = t;
}

/* A node: ins and outs are space-separated tensor names ("" for none). */
static char **names(const char *list, size_t *n) {
    char *copy = tstrdup(list), **v = tcalloc(16, sizeof *v);
    *n = 0;
    for (char *w = strtok(copy, " "); w; w = strtok(NULL, " ")) v[(*n)++] = w;
    return v;
}

static Onnx__NodeProto *node(model *m, const char *op, const char *name, const char *ins, const char *outs) {
    Onnx__NodeProto *n = tcalloc(1, sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = (char *)op;
    n->name = (char *)name;
    n->input = names(ins, &n->n_input);
    n->output = names(outs, &n->n_output);
    n->attribute = tcalloc(8, sizeof *n->attribute);
    m->nodes[m->g.n_node++] = n;
    return n;
}

static Onnx__AttributeProto *attr(Onnx__NodeProto *n, const char *name, Onnx__AttributeProto__AttributeType type) {
    Onnx__AttributeProto *a = tcalloc(1, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static void attr_i(Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

static void attr_f(Onnx__NodeProto *n, const char *name, float v) {
    Onnx__AttributeProto *a = attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

static void attr_ints(Onnx__NodeProto *n, const char *name, int count, const int64_t *v) {
    Onnx__AttributeProto *a = attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = (size_t)count;
    a->ints = (int64_t *)v;
}

/* Imports the packed model; err receives the message of a failure. */
static pn_graph *import(model *m, pn_onnx_weights *w, char *err, size_t errlen) {
    size_t len = onnx__model_proto__get_packed_size(&m->m);
    uint8_t *buf = malloc(len + 1);
    onnx__model_proto__pack(&m->m, buf);
    pn_graph *g = pn_onnx_import(buf, len, w, err, errlen);
    free(buf);
    return g;
}

/* The import fails with exactly msg. */
static void expect_error(model *m, const char *msg) {
    pn_onnx_weights w;
    char err[512];
    pn_graph *g = import(m, &w, err, sizeof err);
    assert_null(g);
    assert_string_equal(err, msg);
}

static int find(const pn_graph *g, const char *name) {
    for (int i = 0; i < g->nnodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return i;
    return -1;
}

static const float *weight_data(const pn_onnx_weights *w, const char *name) {
    for (int k = 0; k < w->n; k++)
        if (strcmp(w->names[k], name) == 0) return w->data[k];
    return NULL;
}

/* ---- tests --------------------------------------------------------------------------------- */

static const int64_t batch4[] = {-1, 4};

/* Gemm with transB, alpha and beta: a dense layer named after its weight, alpha and beta folded in. */
static void test_gemm_dense(void **state) {
    model *m = model_new(13);
    input(m, "input.1", 2, batch4);
    static const int64_t wd[] = {3, 4}, bd[] = {3};
    static const float W[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, B[3] = {1, -1, 0.5f};
    init(m, "fc.weight", 2, wd, W, NULL);
    init(m, "fc.bias", 1, bd, B, NULL);
    Onnx__NodeProto *n = node(m, "Gemm", "/fc/Gemm", "input.1 fc.weight fc.bias", "/fc/Gemm_output_0");
    attr_i(n, "transB", 1);
    attr_f(n, "alpha", 2.0f);
    attr_f(n, "beta", 3.0f);
    node(m, "Relu", "r", "/fc/Gemm_output_0", "0");
    output(m, "0");
    pn_onnx_weights w;
    char err[512];
    pn_graph *g = import(m, &w, err, sizeof err);
    assert_non_null(g);
    assert_string_equal(g->name, "net");
    int x = find(g, "input_1"), fc = find(g, "fc"), r = find(g, "v0");
    assert_true(x >= 0 && fc >= 0 && r >= 0);
    assert_int_equal(g->nodes[x].shape.rank, 2);
    assert_int_equal(g->nodes[x].shape.d[0], PN_BATCH);
    assert_int_equal(g->nodes[fc].op, PN_OP_DENSE);
    assert_int_equal(g->nodes[fc].ia[PN_DENSE_UNITS], 3);
    assert_int_equal(g->nodes[r].op, PN_OP_RELU);
    assert_int_equal(g->noutputs, 1);
    assert_string_equal(g->outputs[0].name, "v0");
    const float *wt = weight_data(&w, "fc.weight"), *bias = weight_data(&w, "fc.bias");
    assert_non_null(wt);
    assert_non_null(bias);
    assert_true(wt[0] == 2.0f && wt[11] == 24.0f);
    assert_true(bias[0] == 3.0f && bias[1] == -3.0f && bias[2] == 1.5f);
    pn_onnx_weights_free(&w);
    pn_graph_free(g);
}

/* MatMul by a constant [K, N] then Add of a vector: one dense layer, W transposed, with the bias. */
static void test_matmul_add(void **state) {
    model *m = model_new(11);
    input(m, "x", 2, batch4);
    static const int64_t wd[] = {4, 2}, bd[] = {2};
    static const float W[8] = {1, 2, 3, 4, 5, 6, 7, 8}, B[2] = {10, 20};
    init(m, "w", 2, wd, W, NULL);
    init(m, "b", 1, bd, B, NULL);
    node(m, "MatMul", "mm", "x w", "h");
    node(m, "Add", "add", "h b", "y");
    output(m, "y");
    pn_onnx_weights w;
    char err[512];
    pn_graph *g = import(m, &w, err, sizeof err);
    assert_non_null(g);
    assert_int_equal(g->nnodes, 2);
    assert_int_equal(g->nodes[1].op, PN_OP_DENSE);
    assert_int_equal(g->nodes[1].ia[PN_DENSE_BIAS], 1);
    const float *wt = weight_data(&w, "w.weight");
    assert_non_null(wt);
    assert_true(wt[0] == 1 && wt[1] == 3 && wt[4] == 2); /* [2, 4]: row 0 is column 0 of W */
    assert_true(weight_data(&w, "w.bias")[1] == 20);
    assert_string_equal(g->outputs[0].name, "y");
    pn_onnx_weights_free(&w);
    pn_graph_free(g);
}

/* The naming rule of docs/onnx.md. */
static void test_names(void **state) {
    model *m = model_new(13);
    input(m, "0", 2, batch4);
    node(m, "Relu", "a", "0", "onnx::Relu_3");
    node(m, "Relu", "b", "onnx::Relu_3", "/layer/Relu_output_0");
    node(m, "Relu", "c", "/layer/Relu_output_0", "relu");
    node(m, "Sigmoid", "d", "relu", "a.b");
    node(m, "Sigmoid", "e", "a.b", "a_b");
    node(m, "Tanh", "f", "a_b", "a:b");
    output(m, "a:b");
    pn_onnx_weights w;
    char err[512];
    pn_graph *g = import(m, &w, err, sizeof err);
    assert_non_null(g);
    const char *want[] = {"v0", "onnx__Relu_3", "layer_Relu", "relu_", "a_b", "a_b_2", "a_b_3"};
    assert_int_equal(g->nnodes, 7);
    for (int i = 0; i < 7; i++) assert_string_equal(g->nodes[i].name, want[i]);
    assert_string_equal(g->outputs[0].name, "a_b_3");
    pn_onnx_weights_free(&w);
    pn_graph_free(g);
}

static const int64_t nchw[] = {-1, 64, 8, 8};

/* group: weight [M, C / group, kh, kw], a grouped conv2d; a group that does not fit X is an error. */
static void test_conv_group(void **state) {
    model *m = model_new(13);
    input(m, "x", 4, nchw);
    static const int64_t wd[] = {64, 2, 3, 3};
    static float W[64 * 2 * 9];
    init(m, "W", 4, wd, W, NULL);
    Onnx__NodeProto *n = node(m, "Conv", "Conv_3", "x W", "y");
    attr_i(n, "group", 32);
    output(m, "y");
    pn_onnx_weights w;
    char err[512];
    pn_graph *g = import(m, &w, err, sizeof err);
    assert_non_null(g);
    const pn_node *c = &g->nodes[1];
    assert_int_equal(c->op, PN_OP_CONV2D);
    assert_int_equal(c->ia[PN_CONV_GROUPS], 32);
    assert_int_equal(c->params[0].shape.d[1], 2);
    pn_onnx_weights_free(&w);
    pn_graph_free(g);

    m = model_new(13);
    input(m, "x", 4, nchw);
    init(m, "W", 4, wd, W, NULL);
    attr_i(node(m, "Conv", "Conv_3", "x W", "y"), "group", 3);
    output(m, "y");
    expect_error(m, "node 'Conv_3' (Conv, opset 13): W has 2 input channels per group (group = 3), but X has 64");
}

static const int64_t small4[] = {-1, 3, 5, 4};

/* Pad: zero pads are the identity, spatial ones a pad node (attribute before opset 11, input on);
 * everything else is an error. */
static void test_pad(void **state) {
    static const int64_t none[8] = {0}, spatial[8] = {0, 0, 1, 2, 0, 0, 3, 4}, chan[8] = {0, 1, 0, 0, 0, 0, 0, 0};
    static const int64_t pd[] = {8};
    pn_onnx_weights w;
    char err[512];
    for (int opset = 2; opset <= 11; opset += 9) {
        model *m = model_new(opset);
        input(m, "x", 4, small4);
        Onnx__NodeProto *a = node(m, "Pad", "p0", opset < 11 ? "x" : "x none", "z");
        Onnx__NodeProto *b = node(m, "Pad", "p1", opset < 11 ? "z" : "z spatial", "y");
        if (opset < 11) attr_ints(a, "pads", 8, none), attr_ints(b, "pads", 8, spatial);
        else init(m, "none", 1, pd, NULL, none), init(m, "spatial", 1, pd, NULL, spatial);
        output(m, "y");
        pn_graph *g = import(m, &w, err, sizeof err);
        assert_non_null(g);
        assert_int_equal(g->nnodes, 2); /* the zero Pad is the identity */
        const pn_node *p = &g->nodes[1];
        assert_int_equal(p->op, PN_OP_PAD);
        assert_true(p->ia[PN_PAD_TOP] == 1 && p->ia[PN_PAD_BOTTOM] == 3 && p->ia[PN_PAD_LEFT] == 2 && p->ia[PN_PAD_RIGHT] == 4);
        assert_true(p->shape.d[2] == 9 && p->shape.d[3] == 10);
        pn_onnx_weights_free(&w);
        pn_graph_free(g);
    }
    model *m = model_new(11);
    input(m, "x", 4, small4);
    init(m, "chan", 1, pd, NULL, chan);
    node(m, "Pad", "p", "x chan", "y");
    output(m, "y");
    expect_error(m, "node 'p' (Pad, opset 11): padding axes other than the two spatial axes of a 4-d input is not supported");

    m = model_new(2);
    input(m, "x", 4, small4);
    Onnx__NodeProto *n = node(m, "Pad", "p", "x", "y");
    attr_ints(n, "pads", 8, spatial);
    attr_f(n, "value", 1.5f);
    output(m, "y");
    expect_error(m, "node 'p' (Pad, opset 2): value = 1.5 is not supported (only zero padding)");

    m = model_new(2);
    input(m, "x", 4, small4);
    n = node(m, "Pad", "p", "x", "y");
    attr_ints(n, "pads", 8, spatial);
    Onnx__AttributeProto *mode = attr(n, "mode", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    mode->has_s = 1;
    mode->s.data = (uint8_t *)"reflect";
    mode->s.len = 7;
    output(m, "y");
    expect_error(m, "node 'p' (Pad, opset 2): only mode = constant is supported");
}

/* torch.onnx.export (1.13) computes a ZeroPad2d's pads from constants: folded, then a pad node. */
static void test_folded_pads(void **state) {
    model *m = model_new(13);
    input(m, "x", 4, small4);
    static const int64_t d1[] = {1}, d4[] = {4}, d2[] = {2};
    static const int64_t four[] = {4}, lrtb[] = {1, 2, 0, 1}, shape[] = {-1, 2}, start[] = {-1}, end[] = {INT64_MIN + 1},
                         axis0[] = {0}, back[] = {-1}, flat[] = {-1};
    init(m, "n", 1, d1, NULL, four);
    init(m, "given", 1, d4, NULL, lrtb);
    init(m, "shape", 1, d2, NULL, shape);
    init(m, "start", 1, d1, NULL, start);
    init(m, "end", 1, d1, NULL, end);
    init(m, "axis0", 1, d1, NULL, axis0);
    init(m, "back", 1, d1, NULL, back);
    init(m, "flat", 1, d1, NULL, flat);
    node(m, "ConstantOfShape", "cs", "n", "zeros"); /* float zeros: cast below */
    attr_i(node(m, "Cast", "c0", "zeros", "zi"), "to", 7);
    attr_i(node(m, "Concat", "cc", "given zi", "all"), "axis", 0);
    node(m, "Reshape", "r", "all shape", "pairs");
    node(m, "Slice", "s", "pairs start end axis0 back", "rev");
    attr_ints(node(m, "Transpose", "t", "rev", "cols"), "perm", 2, (const int64_t[]){1, 0});
    node(m, "Reshape", "r2", "cols flat", "pads");
    node(m, "Pad", "p", "x pads", "y");
    output(m, "y");
    pn_onnx_weights w;
    char err[512];
    pn_graph *g = import(m, &w, err, sizeof err);
    if (!g) fail_msg("%s", err);
    assert_int_equal(g->nnodes, 2);
    const pn_node *p = &g->nodes[1];
    assert_int_equal(p->op, PN_OP_PAD);
    /* pairs [[1,2],[0,1],[0,0],[0,0]] reversed, transposed: begins [0,0,0,1], ends [0,0,1,2] */
    assert_true(p->ia[PN_PAD_TOP] == 0 && p->ia[PN_PAD_LEFT] == 1 && p->ia[PN_PAD_BOTTOM] == 1 && p->ia[PN_PAD_RIGHT] == 2);
    pn_onnx_weights_free(&w);
    pn_graph_free(g);
}

/* Elu (alpha), Softplus, and PRelu with slopes [C, 1, 1], [F] and [1], named after the slope. */
static void test_activations(void **state) {
    model *m = model_new(13);
    input(m, "x", 4, small4);
    static const int64_t c11[] = {3, 1, 1}, one[] = {1}, c[] = {3}, wrong[] = {4};
    static const float s3[] = {0.1f, -0.2f, 0.3f}, s1[] = {0.5f}, s4[] = {1, 2, 3, 4};
    init(m, "act.weight", 3, c11, s3, NULL);
    init(m, "one", 1, one, s1, NULL);
    attr_f(node(m, "Elu", "e", "x", "h"), "alpha", 0.5f);
    node(m, "Softplus", "s", "h", "h2");
    node(m, "PRelu", "pr", "h2 act.weight", "h3");
    node(m, "PRelu", "pr2", "h3 one", "y");
    output(m, "y");
    pn_onnx_weights w;
    char err[512];
    pn_graph *g = import(m, &w, err, sizeof err);
    if (!g) fail_msg("%s", err);
    assert_int_equal(g->nodes[1].op, PN_OP_ELU);
    assert_true(g->nodes[1].fa[PN_FA_VALUE] == 0.5);
    assert_int_equal(g->nodes[2].op, PN_OP_SOFTPLUS);
    assert_int_equal(g->nodes[3].op, PN_OP_PRELU);
    assert_string_equal(g->nodes[3].name, "act");
    const float *a = weight_data(&w, "act.weight"), *b = weight_data(&w, "one.weight");
    assert_true(a && a[1] == -0.2f && b && b[0] == 0.5f && b[2] == 0.5f);
    pn_onnx_weights_free(&w);
    pn_graph_free(g);

    m = model_new(13); /* [C] on a 4-d input would broadcast along W, not the channels */
    input(m, "x", 4, small4);
    init(m, "s", 1, wrong, s4, NULL);
    node(m, "PRelu", "pr", "x s", "y");
    output(m, "y");
    expect_error(m, "node 'pr' (PRelu, opset 13): the slope must vary along axis 1 of X at most ([3], [3, 1, 1] or [1])");

    m = model_new(13);
    input(m, "x", 4, small4);
    init(m, "s", 1, c, s3, NULL);
    node(m, "PRelu", "pr", "x s", "y");
    output(m, "y");
    expect_error(m, "node 'pr' (PRelu, opset 13): the slope must vary along axis 1 of X at most ([3], [3, 1, 1] or [1])");

    m = model_new(13);
    input(m, "x", 4, small4);
    node(m, "PRelu", "pr", "x x", "y");
    output(m, "y");
    expect_error(m, "node 'pr' (PRelu, opset 13): input 1 ('x') must be a constant (an initializer)");
}

static void test_conv_pads(void **state) {
    model *m = model_new(13);
    input(m, "x", 4, nchw);
    static const int64_t wd[] = {4, 64, 3, 3}, pads[] = {1, 1, 0, 0};
    static float W[4 * 64 * 9];
    init(m, "W", 4, wd, W, NULL);
    Onnx__NodeProto *n = node(m, "Conv", "c", "x W", "y");
    attr_ints(n, "pads", 4, pads);
    output(m, "y");
    expect_error(m, "node 'c' (Conv, opset 13): pads = [1, 1, 0, 0] is not supported (only symmetric padding)");
}

static void test_unsupported(void **state) {
    model *m = model_new(13);
    input(m, "x", 2, batch4);
    node(m, "Erf", "", "x", "y");
    output(m, "y");
    expect_error(m, "node 'y' (Erf, opset 13): the op is not supported");

    m = model_new(13);
    input(m, "x", 2, batch4);
    attr_i(node(m, "Relu", "r", "x", "y"), "foo", 1);
    output(m, "y");
    expect_error(m, "node 'r' (Relu, opset 13): attribute 'foo' is not supported");

    m = model_new(11);
    static const int64_t d3[] = {-1, 4, 5};
    input(m, "x", 3, d3);
    attr_i(node(m, "Softmax", "s", "x", "y"), "axis", 1);
    output(m, "y");
    expect_error(m, "node 's' (Softmax, opset 11): axis = 1 on a 3-d input is not supported before opset 13 (only the last axis)");

    m = model_new(13);
    input(m, "x", 2, batch4);
    static const int64_t vd[] = {4};
    static const float v[4] = {1, 2, 3, 4};
    init(m, "v", 1, vd, v, NULL);
    node(m, "Mul", "m", "x v", "y");
    output(m, "y");
    expect_error(m, "node 'm' (Mul, opset 13): input 1 ('v') is a constant tensor of 4 elements; only scalar constants are supported");

    m = model_new(13);
    static const int64_t d2[] = {-1, -1};
    input(m, "x", 2, d2);
    node(m, "Relu", "r", "x", "y");
    output(m, "y");
    expect_error(m, "dimension 1 of input 'x' is symbolic ('N'); only the first may be");

    m = model_new(19);
    input(m, "x", 2, batch4);
    node(m, "Relu", "r", "x", "y");
    output(m, "y");
    expect_error(m, "opset 19 is not supported (1 to 18 are)");

    m = model_new(6); /* the broadcast attribute of Add before opset 7 */
    input(m, "x", 2, batch4);
    attr_i(node(m, "Add", "a", "x x", "y"), "broadcast", 1);
    output(m, "y");
    expect_error(m, "node 'a' (Add, opset 6): attribute 'broadcast' is not supported");
}

/* A shape rule's error, as the checker gives it, after the node. */
static void test_shape_error(void **state) {
    model *m = model_new(13);
    input(m, "x", 2, batch4);
    attr_ints(node(m, "MaxPool", "p", "x", "y"), "kernel_shape", 2, (const int64_t[]){2, 2});
    output(m, "y");
    expect_error(m, "node 'p' (MaxPool, opset 13): 'maxpool2d' needs a 4-d NCHW input, but this is f32[batch,4]");
}

/* Models that decode but lie: found by the fuzzer (pnet_fuzz_onnx) or written to break it. */
static void test_hostile(void **state) {
    model *m = model_new(13); /* an attribute without a name */
    input(m, "x", 2, batch4);
    attr_i(node(m, "Relu", "r", "x", "y"), "", 1);
    output(m, "y");
    expect_error(m, "node 'r' (Relu, opset 13): attribute '' is not supported");

    m = model_new(13); /* B's rows are not A's columns: the weight would be read past its end */
    input(m, "x", 2, batch4);
    static const int64_t wd[] = {3, 2};
    static const float W[6] = {0};
    init(m, "fc.weight", 2, wd, W, NULL);
    attr_i(node(m, "Gemm", "g", "x fc.weight", "y"), "transB", 1);
    output(m, "y");
    expect_error(m, "node 'g' (Gemm, opset 13): the weight has 2 inputs, but the input's last dimension is 4");

    m = model_new(13); /* 2^40 elements declared, none given: refused before any allocation */
    input(m, "x", 2, batch4);
    static const int64_t huge[] = {1 << 20, 1 << 20};
    static const float none[1] = {0};
    init(m, "w", 2, huge, none, NULL);
    m->inits[0]->n_float_data = 1;
    node(m, "MatMul", "mm", "x w", "y");
    output(m, "y");
    expect_error(m, "constant 'w' holds 1 values for its 1099511627776 elements");

    m = model_new(13); /* a node reading a tensor that no node writes */
    input(m, "x", 2, batch4);
    node(m, "Relu", "r", "nowhere", "y");
    output(m, "y");
    expect_error(m, "node 'r' (Relu, opset 13): input 'nowhere' is not defined before the node");
}

/* The graph's own input and output names stay beside their identifiers (the executables take both). */
static void test_source_names(void **state) {
    model *m = model_new(13);
    input(m, "input.1", 2, batch4);
    input(m, "x", 2, batch4);
    node(m, "Add", "a", "input.1 x", "onnx::Add_3");
    node(m, "Relu", "r", "onnx::Add_3", "y");
    output(m, "onnx::Add_3");
    output(m, "y");
    pn_onnx_weights w;
    char err[512];
    pn_graph *g = import(m, &w, err, sizeof err);
    assert_non_null(g);
    assert_string_equal(g->nodes[find(g, "input_1")].source_name, "input.1");
    assert_null(g->nodes[find(g, "x")].source_name);
    assert_string_equal(g->outputs[0].name, "onnx__Add_3");
    assert_string_equal(g->outputs[0].source_name, "onnx::Add_3");
    assert_null(g->outputs[1].source_name);
    pn_onnx_weights_free(&w);
    pn_graph_free(g);
}

/* A BOOL initializer, from 0/1 values. */
static void init_bool(model *m, const char *name, int rank, const int64_t *dims, const int32_t *v) {
    init(m, name, rank, dims, NULL, (const int64_t *)v);
    Onnx__TensorProto *t = m->inits[m->g.n_initializer - 1];
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
    t->n_int32_data = t->n_int64_data;
    t->int32_data = (int32_t *)v;
    t->n_int64_data = 0;
    t->int64_data = NULL;
}

/* PyTorch's decoder attention: x + pos(arange(x.shape[1])) through Shape, Gather, Cast and Range,
 * and masked_fill's Where before a Softmax: embedding(positions(x)) and causal_softmax. */
static void test_positions_causal(void **state) {
    model *m = model_new(13);
    static const int64_t xd[] = {-1, 3, 2}, pd[] = {5, 2}, one[] = {1}, md[] = {3, 3};
    static const float P[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, ninf[1] = {-INFINITY};
    static const int64_t i1[] = {1}, i0[] = {0};
    static const int32_t mask[9] = {0, 1, 1, 0, 0, 1, 0, 0, 0};
    input(m, "x", 3, xd);
    init(m, "pos.weight", 2, pd, P, NULL);
    init(m, "one", 0, one, NULL, i1);
    init(m, "zero", 0, one, NULL, i0);
    init(m, "ninf", 0, one, ninf, NULL);
    init_bool(m, "mask", 2, md, mask);
    node(m, "Shape", "sh", "x", "shape");
    attr_i(node(m, "Gather", "g", "shape one", "T"), "axis", 0);
    attr_i(node(m, "Cast", "c", "T", "T64"), "to", ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
    node(m, "Range", "rg", "zero T64 one", "ar");
    node(m, "Gather", "gp", "pos.weight ar", "pe");
    node(m, "Add", "add", "x pe", "h");
    attr_ints(node(m, "Transpose", "t", "h", "ht"), "perm", 3, (const int64_t[]){0, 2, 1});
    node(m, "MatMul", "mm", "h ht", "s");
    node(m, "Where", "w", "mask ninf s", "sm");
    attr_i(node(m, "Softmax", "sx", "sm", "y"), "axis", -1);
    output(m, "y");
    pn_onnx_weights w;
    char err[512];
    pn_graph *g = import(m, &w, err, sizeof err);
    if (!g) fail_msg("%s", err);
    int pos = find(g, "pos_positions"), emb = find(g, "pos"), add = find(g, "h"), sm = find(g, "y");
    assert_true(pos >= 0 && emb >= 0 && add >= 0 && sm >= 0);
    assert_int_equal(g->nodes[pos].op, PN_OP_POSITIONS);
    assert_int_equal(g->nodes[pos].ia[PN_AXIS], 1);
    assert_int_equal(g->nodes[emb].op, PN_OP_EMBEDDING);
    assert_int_equal(g->nodes[emb].ia[PN_EMB_VOCAB], 5);
    assert_int_equal(g->nodes[add].op, PN_OP_ADD);
    assert_int_equal(g->nodes[sm].op, PN_OP_CAUSAL_SOFTMAX);
    assert_true(weight_data(&w, "pos.weight") && weight_data(&w, "pos.weight")[9] == 9);
    pn_onnx_weights_free(&w);
    pn_graph_free(g);

    /* Not the causal mask (the diagonal masked too): Where is refused. */
    static const int32_t strict[9] = {1, 1, 1, 0, 1, 1, 0, 0, 1};
    m = model_new(13);
    static const int64_t sd[] = {-1, 3, 3};
    input(m, "s", 3, sd);
    init(m, "ninf", 0, one, ninf, NULL);
    init_bool(m, "mask", 2, md, strict);
    node(m, "Where", "w", "mask ninf s", "sm");
    node(m, "Softmax", "sx", "sm", "y");
    output(m, "y");
    expect_error(m, "node 'w' (Where, opset 13): only the causal mask before a Softmax is supported");
}

/* Shape arithmetic that needs the batch size, and Slice's limits. */
static void test_shape_ops(void **state) {
    static const int64_t one[] = {1}, i0[] = {0}, i1[] = {1}, xd[] = {-1, 6, 2};
    model *m = model_new(13);
    input(m, "x", 3, xd);
    init(m, "zero", 0, one, NULL, i0);
    init(m, "one", 0, one, NULL, i1);
    node(m, "Shape", "sh", "x", "shape");
    attr_i(node(m, "Gather", "g", "shape zero", "N"), "axis", 0);
    node(m, "Range", "rg", "zero N one", "y");
    output(m, "y");
    expect_error(m, "node 'rg' (Range, opset 13): a range over the batch is not supported: the batch size is not known when compiling");

    static const int64_t st[] = {1}, en[] = {5}, ax[] = {1}, sp[] = {2}, big[] = {INT64_MAX};
    m = model_new(13);
    input(m, "x", 3, xd);
    init(m, "st", 1, one, NULL, st);
    init(m, "en", 1, one, NULL, en);
    init(m, "ax", 1, one, NULL, ax);
    init(m, "sp", 1, one, NULL, sp);
    node(m, "Slice", "sl", "x st en ax sp", "y");
    output(m, "y");
    expect_error(m, "node 'sl' (Slice, opset 13): steps = 2 is not supported (only 1)");

    m = model_new(13); /* an end past the axis is clamped */
    input(m, "x", 3, xd);
    init(m, "st", 1, one, NULL, st);
    init(m, "en", 1, one, NULL, big);
    init(m, "ax", 1, one, NULL, ax);
    node(m, "Slice", "sl", "x st en ax", "y");
    output(m, "y");
    pn_onnx_weights w;
    char err[512];
    pn_graph *g = import(m, &w, err, sizeof err);
    if (!g) fail_msg("%s", err);
    int y = find(g, "y");
    assert_true(y >= 0);
    assert_int_equal(g->nodes[y].op, PN_OP_SLICE);
    assert_int_equal(g->nodes[y].ia[PN_SLICE_START], 1);
    assert_int_equal(g->nodes[y].ia[PN_SLICE_END], 6);
    assert_int_equal(g->nodes[y].shape.d[1], 5);
    pn_onnx_weights_free(&w);
    pn_graph_free(g);
}

/* `x.view(B, T, 2, C // 2)` with `B, T, C = x.size()`: the shape folded, the batch unknown. */
static void test_view_shape(void **state) {
    static const int64_t xd[] = {-1, 6, 4}, one[] = {1}, i0[] = {0}, i1[] = {1}, i2[] = {2}, ax0[] = {0};
    model *m = model_new(13);
    input(m, "x", 3, xd);
    init(m, "zero", 0, one, NULL, i0);
    init(m, "one", 0, one, NULL, i1);
    init(m, "two", 0, one, NULL, i2);
    init(m, "axes", 1, one, NULL, ax0);
    node(m, "Shape", "sh", "x", "shape");
    node(m, "Gather", "g0", "shape zero", "B");
    node(m, "Gather", "g1", "shape one", "T");
    node(m, "Gather", "g2", "shape two", "C");
    node(m, "Div", "d", "C two", "half");
    node(m, "Unsqueeze", "u0", "B axes", "B1");
    node(m, "Unsqueeze", "u1", "T axes", "T1");
    node(m, "Unsqueeze", "u2", "two axes", "H1");
    node(m, "Unsqueeze", "u3", "half axes", "D1");
    attr_i(node(m, "Concat", "c", "B1 T1 H1 D1", "shape4"), "axis", 0);
    node(m, "Reshape", "r", "x shape4", "y");
    output(m, "y");
    pn_onnx_weights w;
    char err[512];
    pn_graph *g = import(m, &w, err, sizeof err);
    if (!g) fail_msg("%s", err);
    int y = find(g, "y");
    assert_true(y >= 0);
    assert_int_equal(g->nodes[y].op, PN_OP_RESHAPE);
    assert_int_equal(g->nodes[y].shape.rank, 4);
    assert_int_equal(g->nodes[y].shape.d[0], PN_BATCH);
    assert_int_equal(g->nodes[y].shape.d[2], 2);
    assert_int_equal(g->nodes[y].shape.d[3], 2);
    pn_onnx_weights_free(&w);
    pn_graph_free(g);

    m = model_new(13); /* B * T needs the batch size */
    input(m, "x", 3, xd);
    init(m, "zero", 0, one, NULL, i0);
    init(m, "one", 0, one, NULL, i1);
    node(m, "Shape", "sh", "x", "shape");
    node(m, "Gather", "g0", "shape zero", "B");
    node(m, "Gather", "g1", "shape one", "T");
    node(m, "Mul", "bt", "B T", "BT");
    node(m, "Range", "rg", "zero BT one", "y");
    output(m, "y");
    expect_error(m, "node 'bt' (Mul, opset 13): arithmetic on the batch size is not supported: it is not known when compiling");
}

static void test_malformed(void **state) {
    pn_onnx_weights w;
    char err[512];
    static const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 'x'};
    assert_null(pn_onnx_import(junk, sizeof junk, &w, err, sizeof err));
    assert_string_equal(err, "not an ONNX model: the protobuf does not decode as a ModelProto");
    /* Every prefix of a valid model fails with one line or imports; none crashes. */
    model *m = model_new(13);
    input(m, "x", 2, batch4);
    node(m, "Relu", "r", "x", "y");
    output(m, "y");
    size_t len = onnx__model_proto__get_packed_size(&m->m);
    uint8_t *buf = malloc(len);
    onnx__model_proto__pack(&m->m, buf);
    for (size_t n = 0; n <= len; n++) {
        pn_graph *g = pn_onnx_import(buf, n, &w, err, sizeof err);
        if (g) {
            pn_onnx_weights_free(&w);
            pn_graph_free(g);
        } else {
            assert_true(err[0] && !strchr(err, '\n'));
        }
    }
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_dense), cmocka_unit_test(test_matmul_add),  cmocka_unit_test(test_names),
        cmocka_unit_test(test_conv_group), cmocka_unit_test(test_conv_pads),   cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_shape_error), cmocka_unit_test(test_hostile),    cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_pad),         cmocka_unit_test(test_folded_pads), cmocka_unit_test(test_activations),
        cmocka_unit_test(test_source_names), cmocka_unit_test(test_positions_causal), cmocka_unit_test(test_shape_ops),
        cmocka_unit_test(test_view_shape),
    };
    return cmocka_run_group_tests(tests, NULL, release_all);
}
