/* End-to-end tests of the checker: source text in, graph IR (names, shapes, directives, train) out. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check/check.h"
#include "io.h"
#include "parse/parse.h"

#define B PN_BATCH
#define NARGS(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define ASSERT_SHAPE(s, ...) assert_shape((s), (int64_t[]){__VA_ARGS__}, NARGS(__VA_ARGS__))

/* ---- helpers ------------------------------------------------------------------------------ */

/* A directory beside this file, such as "../../stdlib", made absolute. */
static const char *source_dir(const char *rel, char *out) {
    char buf[PATH_MAX];
    const char *slash = strrchr(__FILE__, '/');
    if (slash) snprintf(buf, sizeof buf, "%.*s/%s", (int)(slash - __FILE__), __FILE__, rel);
    else snprintf(buf, sizeof buf, "./%s", rel);
    assert_non_null(realpath(buf, out));
    return out;
}
#define STDLIB_DIR() source_dir("../../stdlib", (char[PATH_MAX]){0})
#define EXAMPLES_DIR() source_dir("../../examples", (char[PATH_MAX]){0})

typedef struct cfx {
    pn_diags d;
    pn_program prog;
    pn_graph *g;
    bool ok;
    FILE *out;
    char *buf;
    size_t size;
    char stdlib[PATH_MAX];
} cfx;

/* Loads text as path (or reads path when text is NULL) with the stdlib, and checks it into f->g. */
static cfx *check_at(const char *path, const char *text) {
    cfx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->out = open_memstream(&f->buf, &f->size);
    assert_non_null(f->out);
    pn_diags_init(&f->d, f->out);
    f->d.error_limit = 0;
    pn_program_init(&f->prog, &f->d);
    source_dir("../../stdlib", f->stdlib);
    f->prog.stdlib_dir = f->stdlib;
    pn_module *m = pn_program_load(&f->prog, path, text, text ? strlen(text) : 0);
    if (m && f->d.nerrors == 0) f->ok = pn_check(&f->prog, NULL, &f->g);
    if (f->ok) assert_non_null(f->g);
    else assert_null(f->g);
    return f;
}

static cfx *check(const char *text) { return check_at("t.pnet", text); }

static const char *diag_text(cfx *f) {
    pn_diags_flush(&f->d);
    fflush(f->out);
    return f->buf ? f->buf : "";
}

static void done(cfx *f) {
    pn_graph_free(f->g);
    pn_program_free(&f->prog);
    pn_diags_free(&f->d);
    fclose(f->out);
    free(f->buf);
    free(f);
}

static void expect_ok(cfx *f) {
    const char *t = diag_text(f);
    if (!f->ok) print_error("unexpected errors:\n%s\n", t);
    assert_true(f->ok);
    assert_int_equal(f->d.nerrors, 0);
}

static void expect_clean(cfx *f) {
    expect_ok(f);
    const char *t = diag_text(f);
    if (*t) print_error("unexpected diagnostics:\n%s\n", t);
    assert_string_equal(t, "");
}

static void expect_diag(cfx *f, const char *sub) {
    const char *t = diag_text(f);
    if (!strstr(t, sub)) print_error("diagnostics lack '%s':\n%s\n", sub, t);
    assert_non_null(strstr(t, sub));
}

static void expect_error(cfx *f, const char *sub) {
    assert_false(f->ok);
    assert_true(f->d.nerrors >= 1);
    expect_diag(f, sub);
}

static int find(cfx *f, const char *name) {
    for (int i = 0; i < f->g->nnodes; i++)
        if (strcmp(f->g->nodes[i].name, name) == 0) return i;
    return -1;
}

static const pn_node *node(cfx *f, const char *name) {
    int i = find(f, name);
    if (i < 0) print_error("no node named '%s'\n", name);
    assert_true(i >= 0);
    return &f->g->nodes[i];
}

static void assert_shape(const pn_shape *s, const int64_t *d, int rank) {
    assert_int_equal(s->rank, rank);
    for (int i = 0; i < rank; i++) assert_int_equal(s->d[i], d[i]);
}

static void assert_input(cfx *f, const pn_node *n, int i, const char *name) {
    assert_true(i < n->ninputs);
    assert_string_equal(f->g->nodes[n->in[i]].name, name);
}

static const pn_param_info *param(const pn_node *n, const char *suffix) {
    for (int i = 0; i < n->nparams; i++)
        if (strcmp(n->params[i].suffix, suffix) == 0) return &n->params[i];
    fail_msg("node '%s' has no parameter '%s'", n->name, suffix);
    return NULL;
}

/* Writes text to dir/name. */
static void write_file(const char *dir, const char *name, const char *text) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* ---- graphs ------------------------------------------------------------------------------- */

static const char *DIGITS = "network digits_mlp {\n"
                            "    input  x : f32[batch, 64];\n"
                            "    fc1 = dense(x, 128);\n"
                            "    h1  = relu(fc1);\n"
                            "    fc2 = dense(h1, 10);\n"
                            "    output probs = softmax(fc2);\n"
                            "    train {\n"
                            "        label     : i32[batch];\n"
                            "        loss      = cross_entropy(fc2, label);\n"
                            "        optimizer = sgd(lr = 0.1, momentum = 0.9);\n"
                            "        batch     = 32;\n"
                            "        epochs    = 20;\n"
                            "    }\n"
                            "}\n";

static void test_mlp_graph(void **state) {
    (void)state;
    cfx *f = check(DIGITS);
    expect_clean(f);
    pn_graph *g = f->g;
    assert_string_equal(g->name, "digits_mlp");
    assert_int_equal(g->nnodes, 7);
    const pn_node *x = node(f, "x");
    assert_int_equal(x->op, PN_OP_INPUT);
    ASSERT_SHAPE(&x->shape, B, 64);
    assert_true(x->flags & PN_NODE_NAMED);
    const pn_node *fc1 = node(f, "fc1");
    assert_int_equal(fc1->op, PN_OP_DENSE);
    ASSERT_SHAPE(&fc1->shape, B, 128);
    assert_int_equal(fc1->ia[PN_DENSE_UNITS], 128);
    assert_int_equal(fc1->ia[PN_DENSE_BIAS], 1);
    assert_true(fc1->flags & PN_NODE_NAMED);
    assert_false(fc1->flags & PN_NODE_TRAIN);
    assert_input(f, fc1, 0, "x");
    ASSERT_SHAPE(&param(fc1, "weight")->shape, 128, 64);
    ASSERT_SHAPE(&param(fc1, "bias")->shape, 128);
    assert_int_equal(node(f, "h1")->op, PN_OP_RELU);
    const pn_node *probs = node(f, "probs");
    assert_int_equal(probs->op, PN_OP_SOFTMAX);
    assert_int_equal(probs->ia[PN_AXIS], 1);
    assert_true(probs->flags & PN_NODE_OUTPUT);
    assert_int_equal(g->noutputs, 1);
    assert_string_equal(g->outputs[0].name, "probs");
    assert_int_equal(g->outputs[0].node, find(f, "probs"));
    /* defaults without directives */
    assert_int_equal(g->nstages, 1);
    assert_int_equal(g->replicas, 1);
    assert_int_equal(g->microbatches, 1);
    assert_false(g->has_pipeline);
    for (int i = 0; i < g->nnodes; i++) {
        assert_int_equal(g->nodes[i].stage, 0);
        assert_int_equal(g->nodes[i].shard, 1);
        for (int k = 0; k < g->nodes[i].ninputs; k++) assert_true(g->nodes[i].in[k] < i); /* topological */
    }
    done(f);
}

static void test_train_settings(void **state) {
    (void)state;
    cfx *f = check(DIGITS);
    expect_clean(f);
    pn_train *t = &f->g->train;
    assert_true(t->present);
    assert_int_equal(t->loss, find(f, "loss"));
    const pn_node *loss = node(f, "loss");
    assert_int_equal(loss->op, PN_OP_CROSS_ENTROPY);
    assert_int_equal(loss->shape.rank, 0);
    assert_true(loss->flags & PN_NODE_TRAIN);
    assert_input(f, loss, 0, "fc2");
    assert_input(f, loss, 1, "label");
    const pn_node *label = node(f, "label");
    assert_int_equal(label->dtype, PN_I32);
    ASSERT_SHAPE(&label->shape, B);
    assert_true(label->flags & PN_NODE_TRAIN);
    assert_int_equal(t->opt, PN_OPT_SGD);
    assert_true(t->lr == 0.1);
    assert_true(t->momentum == 0.9);
    assert_true(t->weight_decay == 0);
    assert_false(t->nesterov);
    assert_int_equal(t->batch, 32);
    assert_int_equal(t->epochs, 20);
    assert_int_equal(t->seed, 0);
    done(f);
}

static void test_train_adam_and_mse(void **state) {
    (void)state;
    cfx *f = check("network n {\n"
                   "  input x : f32[batch, 4];\n"
                   "  output y = dense(x, 2);\n"
                   "  train {\n"
                   "    target : f32[batch, 2];\n"
                   "    loss = mse(y, target);\n"
                   "    optimizer = adam(lr = 0.0003, weight_decay = 0.01);\n"
                   "    epochs = 3; seed = 7;\n"
                   "  }\n"
                   "}\n");
    expect_clean(f);
    pn_train *t = &f->g->train;
    assert_int_equal(node(f, "loss")->op, PN_OP_MSE);
    assert_int_equal(t->opt, PN_OPT_ADAM);
    assert_true(t->lr == 0.0003);
    assert_true(t->weight_decay == 0.01);
    assert_true(t->beta1 == 0.9);
    assert_true(t->beta2 == 0.999);
    assert_true(t->eps == 1e-8);
    assert_int_equal(t->batch, 32); /* default */
    assert_int_equal(t->epochs, 3);
    assert_int_equal(t->seed, 7);
    done(f);

    f = check("network n {\n"
              "  input x : f32[batch, 4];\n"
              "  output y = dense(x, 2);\n"
              "  train {\n"
              "    label : i32[batch];\n"
              "    loss = cross_entropy(y, label);\n"
              "    optimizer = adam(0.01, 0.8, beta2 = 0.99, eps = 1e-6);\n"
              "  }\n"
              "}\n");
    expect_clean(f);
    t = &f->g->train;
    assert_true(t->lr == 0.01);
    assert_true(t->beta1 == 0.8);
    assert_true(t->beta2 == 0.99);
    assert_true(t->eps == 1e-6);
    assert_int_equal(t->epochs, 1);
    done(f);

    f = check("network n {\n"
              "  input x : f32[batch, 4];\n"
              "  output y = dense(x, 2);\n"
              "  train {\n"
              "    label : i32[batch];\n"
              "    loss = cross_entropy(y, label);\n"
              "    optimizer = sgd(lr = 0.05, momentum = 0.9, weight_decay = 0.0005, nesterov = true);\n"
              "    batch = 128;\n"
              "  }\n"
              "}\n");
    expect_clean(f);
    t = &f->g->train;
    assert_int_equal(t->opt, PN_OPT_SGD);
    assert_true(t->nesterov);
    assert_true(t->weight_decay == 0.0005);
    assert_int_equal(t->batch, 128);
    done(f);
}

static void test_train_errors(void **state) {
    (void)state;
    cfx *f = check("network n {\n"
                   "  input x : f32[batch, 4];\n"
                   "  output y = dense(x, 2);\n"
                   "  train {\n"
                   "    label : i32[batch];\n"
                   "    loss = cross_entropy(y, label);\n"
                   "    optimizer = sgd(lr = 0.1, nesterov = true);\n"
                   "    epochs = 0;\n"
                   "  }\n"
                   "}\n");
    expect_error(f, "nesterov needs a positive momentum");
    expect_diag(f, "epochs must be a positive integer");
    done(f);
    f = check("network n {\n"
              "  input x : f32[batch, 4];\n"
              "  y = dense(x, 2);\n"
              "  output z = cross_entropy(y, y);\n"
              "}\n");
    expect_error(f, "'cross_entropy' is a loss: use it as 'loss = cross_entropy(...)' inside train { }");
    done(f);
}

static void test_node_names(void **state) {
    (void)state;
    cfx *f = check("block res(x, units) {\n"
                   "    a = dense(x, units);\n"
                   "    b = dense(relu(a), units);\n"
                   "    return relu(x + b);\n"
                   "}\n"
                   "network n {\n"
                   "    input x : f32[batch, 8];\n"
                   "    r = res(x, 8);\n"
                   "    y = dense(relu(r), 4);\n"
                   "    z = relu(dense(y, 4));\n"
                   "    w = relu(y) + relu(z);\n"
                   "    output o = w;\n"
                   "}\n");
    expect_clean(f);
    assert_int_equal(node(f, "r.a")->op, PN_OP_DENSE);
    assert_int_equal(node(f, "r.b.relu.0")->op, PN_OP_RELU);
    assert_input(f, node(f, "r.b.relu.0"), 0, "r.a");
    assert_int_equal(node(f, "r.b")->op, PN_OP_DENSE);
    ASSERT_SHAPE(&param(node(f, "r.b"), "weight")->shape, 8, 8);
    assert_int_equal(node(f, "r.add.0")->op, PN_OP_ADD);
    assert_input(f, node(f, "r.add.0"), 0, "x");
    assert_input(f, node(f, "r.add.0"), 1, "r.b");
    const pn_node *r = node(f, "r");
    assert_int_equal(r->op, PN_OP_RELU);
    assert_true(r->flags & PN_NODE_NAMED);
    assert_false(node(f, "r.b.relu.0")->flags & PN_NODE_NAMED);
    assert_int_equal(node(f, "y.relu.0")->op, PN_OP_RELU);
    assert_input(f, node(f, "y"), 0, "y.relu.0");
    assert_int_equal(node(f, "z.dense.0")->op, PN_OP_DENSE);
    assert_int_equal(node(f, "z")->op, PN_OP_RELU);
    assert_int_equal(node(f, "w.relu.0")->op, PN_OP_RELU);
    assert_int_equal(node(f, "w.relu.1")->op, PN_OP_RELU);
    assert_int_equal(node(f, "w")->op, PN_OP_ADD);
    assert_input(f, node(f, "w"), 0, "w.relu.0");
    assert_input(f, node(f, "w"), 1, "w.relu.1");
    /* `output o = w` names no new node: the output refers to w */
    assert_int_equal(find(f, "o"), -1);
    assert_int_equal(f->g->outputs[0].node, find(f, "w"));
    assert_string_equal(f->g->outputs[0].name, "o");
    done(f);
}

static void test_several_inputs_and_outputs(void **state) {
    (void)state;
    cfx *f = check("network two {\n"
                   "    input a : f32[batch, 3, 8, 8];\n"
                   "    input b : f32[batch, 5];\n"
                   "    input ids : i32[batch, 7];\n"
                   "    p = flatten(global_avgpool(a));\n"
                   "    q = concat(p, b, axis = 1);\n"
                   "    output logits = dense(q, 2);\n"
                   "    e = embedding(ids, 100, 4);\n"
                   "    output e;\n"
                   "    output q;\n"
                   "}\n");
    expect_clean(f);
    ASSERT_SHAPE(&node(f, "p")->shape, B, 3);
    ASSERT_SHAPE(&node(f, "p.global_avgpool.0")->shape, B, 3, 1, 1);
    const pn_node *q = node(f, "q");
    ASSERT_SHAPE(&q->shape, B, 8);
    assert_int_equal(q->ninputs, 2);
    assert_int_equal(q->ia[PN_AXIS], 1);
    ASSERT_SHAPE(&node(f, "e")->shape, B, 7, 4);
    assert_int_equal(node(f, "ids")->dtype, PN_I32);
    assert_int_equal(f->g->noutputs, 3);
    assert_string_equal(f->g->outputs[0].name, "logits");
    assert_string_equal(f->g->outputs[1].name, "e");
    assert_string_equal(f->g->outputs[2].name, "q");
    assert_int_equal(f->g->outputs[1].node, find(f, "e"));
    assert_int_equal(f->g->outputs[2].node, find(f, "q"));
    for (int i = 0; i < 3; i++) assert_true(f->g->nodes[f->g->outputs[i].node].flags & PN_NODE_OUTPUT);
    done(f);
}

/* ---- directives --------------------------------------------------------------------------- */

static void test_partition_shard_pipeline(void **state) {
    (void)state;
    cfx *f = check("block residual(x, units) {\n"
                   "    a = dense(x, units);\n"
                   "    return relu(x + a);\n"
                   "}\n"
                   "network wide {\n"
                   "    input x : f32[batch, 64];\n"
                   "    @partition(0) {\n"
                   "        fc1 = dense(x, 128);  h1 = relu(fc1);\n"
                   "        r   = residual(h1, 128);\n"
                   "    }\n"
                   "    @partition(1) {\n"
                   "        @shard(features, 4) fc3 = dense(r, 128);\n"
                   "        @shard(features, 2) c = dense(fc3, 2);\n"
                   "    }\n"
                   "    @partition(2) fc4 = dense(c, 16);\n"
                   "    output y = fc4;\n"
                   "    @shard(batch, 3);\n"
                   "    @pipeline(microbatches = 8, schedule = 1f1b);\n"
                   "}\n");
    expect_clean(f);
    pn_graph *g = f->g;
    assert_int_equal(g->nstages, 3);
    assert_int_equal(g->replicas, 3);
    assert_int_equal(g->microbatches, 8);
    assert_int_equal(g->schedule, PN_SCHED_1F1B);
    assert_true(g->has_pipeline);
    assert_int_equal(node(f, "x")->stage, 0);
    assert_int_equal(node(f, "fc1")->stage, 0);
    assert_int_equal(node(f, "r.a")->stage, 0);
    assert_int_equal(node(f, "r")->stage, 0);
    assert_int_equal(node(f, "fc3")->stage, 1);
    assert_int_equal(node(f, "fc3")->shard, 4);
    assert_int_equal(node(f, "c")->shard, 2);
    assert_int_equal(node(f, "fc1")->shard, 1);
    assert_int_equal(node(f, "fc4")->stage, 2);
    assert_int_equal(node(f, "fc4")->shard, 1);
    done(f);

    f = check("network n {\n"
              "    input x : f32[batch, 1, 8, 8];\n"
              "    @shard(features, 2) c = conv2d(x, 4, 3);\n"
              "    output y = c;\n"
              "    @pipeline(microbatches = 2);\n"
              "}\n");
    expect_clean(f);
    assert_int_equal(node(f, "c")->shard, 2);
    assert_int_equal(f->g->schedule, PN_SCHED_GPIPE);
    assert_int_equal(f->g->microbatches, 2);
    assert_int_equal(f->g->nstages, 1);
    done(f);
}

static void test_directive_errors(void **state) {
    (void)state;
    cfx *f = check("network n {\n"
                   "    input x : f32[batch, 4];\n"
                   "    @partition(0) a = dense(x, 4);\n"
                   "    @partition(2) b = dense(a, 4);\n"
                   "    output b;\n"
                   "}\n");
    expect_error(f, "t.pnet:4:5: error: pipeline stages must be numbered from 0 without gaps, but stage 1 is missing");
    done(f);
    f = check("network n {\n"
              "    input x : f32[batch, 4];\n"
              "    @partition(1) a = dense(x, 4);\n"
              "    @partition(0) b = relu(a);\n"
              "    output b;\n"
              "}\n");
    expect_error(f, "t.pnet:4:28: error: stage 0 reads 'a' from the later stage 1");
    expect_diag(f, "note: 'a' is defined here");
    done(f);
    f = check("network n {\n"
              "    input x : f32[batch, 4];\n"
              "    @shard(features, 2) h = relu(x);\n"
              "    output h;\n"
              "}\n");
    expect_error(f, "@shard(features) applies only to a dense or conv2d statement, but 'h' is a relu");
    done(f);
    f = check("network n {\n"
              "    input x : f32[batch, 4];\n"
              "    @shard(features, 8) h = dense(x, 4);\n"
              "    output h;\n"
              "    @pipeline(schedule = zigzag);\n"
              "}\n");
    expect_error(f, "cannot split 4 output features of 'h' across 8 workers");
    expect_diag(f, "unknown pipeline schedule; expected gpipe or 1f1b");
    done(f);
}

/* ---- imports ------------------------------------------------------------------------------ */

static void test_stdlib_import(void **state) {
    (void)state;
    cfx *f = check("import \"nn\";\n"
                   "network n {\n"
                   "    input x : f32[batch, 32];\n"
                   "    h = nn.mlp(x, 64, hidden_mult = 2);\n"
                   "    i = nn.mlp(h, 16);\n"
                   "    output y = nn.residual(i, 16);\n"
                   "}\n");
    expect_clean(f);
    assert_int_equal(f->prog.modules.len, 2);
    const pn_node *up = node(f, "h.up");
    assert_int_equal(up->ia[PN_DENSE_UNITS], 128);
    ASSERT_SHAPE(&param(up, "weight")->shape, 128, 32);
    assert_int_equal(node(f, "h.down.relu.0")->op, PN_OP_RELU);
    const pn_node *down = node(f, "h.down");
    ASSERT_SHAPE(&down->shape, B, 64);
    ASSERT_SHAPE(&param(down, "weight")->shape, 64, 128);
    assert_int_equal(node(f, "i.up")->ia[PN_DENSE_UNITS], 16); /* hidden_mult defaults to 1 */
    assert_int_equal(node(f, "y.a")->op, PN_OP_DENSE);
    assert_int_equal(node(f, "y")->op, PN_OP_RELU);
    /* the block's return value is named after the call */
    assert_int_equal(find(f, "h"), -1);
    done(f);

    f = check("import \"nn\";\n"
              "network n { input x : f32[batch, 4]; output y = nn.mlpp(x, 4); }\n");
    expect_error(f, "module 'nn' has no block 'mlpp'; did you mean 'mlp'?");
    done(f);
    f = check("network n { input x : f32[batch, 4]; output y = nn.mlp(x, 4); }\n");
    expect_error(f, "unknown module 'nn'; add 'import \"nn\";'");
    done(f);
}

static void test_file_imports(void **state) {
    (void)state;
    char dir[] = "/tmp/pnet_test_XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_file(dir, "layers.pnet", "block twice(x, units = 3) {\n"
                                   "    a = dense(x, units);\n"
                                   "    return dense(a, units);\n"
                                   "}\n");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/main.pnet", dir);
    cfx *f = check_at(path, "import \"layers\";\n"
                            "network n {\n"
                            "    input x : f32[batch, 4];\n"
                            "    t = layers.twice(x);\n"
                            "    output u = layers.twice(t, units = 5);\n"
                            "}\n");
    expect_clean(f);
    assert_int_equal(f->prog.modules.len, 2);
    assert_string_equal(((pn_module *)f->prog.modules.items[1])->ns, "layers");
    ASSERT_SHAPE(&node(f, "t")->shape, B, 3);
    ASSERT_SHAPE(&node(f, "t.a")->shape, B, 3);
    ASSERT_SHAPE(&node(f, "u.a")->shape, B, 5);
    ASSERT_SHAPE(&node(f, "u")->shape, B, 5);
    done(f);

    /* a cycle: a imports b, b imports a */
    write_file(dir, "a.pnet", "import \"b\";\nnetwork n { input x : f32[batch, 2]; output y = b.id(x); }\n");
    write_file(dir, "b.pnet", "import \"a\";\nblock id(x) { return relu(x); }\n");
    snprintf(path, sizeof path, "%s/a.pnet", dir);
    f = check_at(path, NULL);
    expect_error(f, "import cycle");
    expect_diag(f, "b.pnet:1:8: error: import cycle: '");
    done(f);

    /* a missing module */
    f = check_at(path, "import \"nosuch\";\nnetwork n { input x : f32[batch, 2]; output y = relu(x); }\n");
    expect_error(f, "module 'nosuch' not found");
    done(f);

    /* an imported network is ignored, with a warning */
    write_file(dir, "withnet.pnet", "block id(x) { return x; }\nnetwork other { input x : f32[2]; output x; }\n");
    f = check_at(path, "import \"withnet\";\nnetwork n { input x : f32[batch, 2]; output y = withnet.id(x); }\n");
    expect_ok(f);
    assert_int_equal(f->d.nwarnings, 1);
    expect_diag(f, "warning: network 'other' in an imported module is ignored");
    done(f);
    remove_dir(dir);
}

/* ---- blocks ------------------------------------------------------------------------------- */

static void test_block_defaults_and_keywords(void **state) {
    (void)state;
    cfx *f = check("block lin(x, units = 2 * 3, bias = false, kernel = 1) {\n"
                   "    return dense(x, units, bias = bias);\n"
                   "}\n"
                   "network n {\n"
                   "    input x : f32[batch, 4];\n"
                   "    a = lin(x);\n"
                   "    b = lin(x, 7);\n"
                   "    c = lin(x, bias = true, units = 9);\n"
                   "    d = lin(units = 1, x = x);\n"
                   "    output y = concat(a, b, c, d, axis = 1);\n"
                   "}\n");
    expect_clean(f);
    const pn_node *a = node(f, "a");
    assert_int_equal(a->ia[PN_DENSE_UNITS], 6);
    assert_int_equal(a->ia[PN_DENSE_BIAS], 0);
    assert_int_equal(a->nparams, 1);
    assert_int_equal(node(f, "b")->ia[PN_DENSE_UNITS], 7);
    const pn_node *c = node(f, "c");
    assert_int_equal(c->ia[PN_DENSE_UNITS], 9);
    assert_int_equal(c->nparams, 2);
    assert_int_equal(node(f, "d")->ia[PN_DENSE_UNITS], 1);
    ASSERT_SHAPE(&node(f, "y")->shape, B, 23);
    done(f);
}

static void test_block_call_errors(void **state) {
    (void)state;
    cfx *f = check("block lin(x, units) { return dense(x, units); }\n"
                   "network n {\n"
                   "    input x : f32[batch, 4];\n"
                   "    a = lin(x);\n"
                   "    b = lin(x, 2, 3);\n"
                   "    c = lin(x, 2, width = 3);\n"
                   "    output a;\n"
                   "}\n");
    expect_error(f, "missing argument 'units' in call to block 'lin'");
    expect_diag(f, "too many arguments in call to block 'lin' (it takes 2)");
    expect_diag(f, "block 'lin' has no parameter named 'width'");
    expect_diag(f, "note: block 'lin' is defined here");
    done(f);
}

static void test_recursion(void **state) {
    (void)state;
    cfx *f = check("block f(x) { return f(x); }\n"
                   "network n { input x : f32[batch, 2]; output y = f(x); }\n");
    expect_error(f, "recursive call of block 'f'");
    done(f);
    f = check("block p(x) { return q(x); }\n"
              "block q(x) { return relu(p(x)); }\n"
              "network n { input x : f32[batch, 2]; output y = p(x); }\n");
    expect_error(f, "recursive call of block 'p'");
    expect_diag(f, "note: in block 'q' called here");
    done(f);
}

static void test_error_in_block_expansion(void **state) {
    (void)state;
    cfx *f = check("block bad(x) {\n"
                   "    return dense(x, 4) + x;\n"
                   "}\n"
                   "block outer(x) { return bad(x); }\n"
                   "network n {\n"
                   "    input x : f32[batch, 3];\n"
                   "    output y = outer(x);\n"
                   "}\n");
    expect_error(f, "t.pnet:2:12: error: operands of '+' do not broadcast: f32[batch,4] and f32[batch,3]");
    expect_diag(f, "t.pnet:4:25: note: in block 'bad' called here");
    expect_diag(f, "t.pnet:7:16: note: in block 'outer' called here");
    /* the innermost call is noted first */
    const char *t = diag_text(f);
    assert_true(strstr(t, "in block 'bad'") < strstr(t, "in block 'outer'"));
    done(f);
}

static void test_block_structure_errors(void **state) {
    (void)state;
    cfx *f = check("block b(x) { y = relu(x); }\n"
                   "network n { input x : f32[batch, 2]; output y = relu(x); }\n");
    expect_error(f, "block 'b' has no 'return' statement");
    done(f);
    f = check("block relu(x) { return x; }\n"
              "network n { input x : f32[batch, 2]; output y = x; }\n");
    expect_error(f, "block 'relu' has the name of a built-in op");
    done(f);
    f = check("block b(x) { return x; y = x; }\n"
              "network n { input x : f32[batch, 2]; output y = b(x); }\n");
    expect_error(f, "statement after 'return' in block 'b'");
    done(f);
}

/* ---- names and constants ------------------------------------------------------------------ */

static void test_unused_warning(void **state) {
    (void)state;
    cfx *f = check("network n {\n"
                   "    input x : f32[batch, 4];\n"
                   "    input t : f32[batch, 4];\n"
                   "    h = relu(x);\n"
                   "    output y = dense(x, 2);\n"
                   "}\n");
    expect_ok(f);
    assert_int_equal(f->d.nwarnings, 2);
    expect_diag(f, "t.pnet:3:11: warning: 't' is never used");
    expect_diag(f, "t.pnet:4:5: warning: 'h' is never used");
    done(f);
}

static void test_constant_folding(void **state) {
    (void)state;
    cfx *f = check("network n {\n"
                   "    input x : f32[batch, 4];\n"
                   "    s = 8 / 2 + sqrt(16);\n"
                   "    a = x * s;\n"
                   "    b = x / 4;\n"
                   "    c = dense(x, 2 * 3 + 1);\n"
                   "    d = x * sqrt(2 * 8) / 8;\n"
                   "    e = -x;\n"
                   "    output y = concat(a, b, d, e, axis = 1);\n"
                   "    output c;\n"
                   "}\n");
    expect_clean(f);
    assert_int_equal(find(f, "s"), -1); /* a number, not a node */
    const pn_node *ac = node(f, "a.const.0");
    assert_int_equal(ac->op, PN_OP_CONST);
    assert_int_equal(ac->shape.rank, 0);
    assert_true(ac->fa[PN_FA_VALUE] == 8.0);
    assert_int_equal(node(f, "a")->op, PN_OP_MUL);
    /* x / 4 becomes x * 0.25 */
    assert_int_equal(node(f, "b")->op, PN_OP_MUL);
    assert_true(node(f, "b.const.0")->fa[PN_FA_VALUE] == 0.25);
    assert_int_equal(node(f, "c")->ia[PN_DENSE_UNITS], 7);
    /* (x * 4) / 8: two constants */
    assert_true(node(f, "d.const.0")->fa[PN_FA_VALUE] == 4.0);
    assert_true(node(f, "d.const.1")->fa[PN_FA_VALUE] == 0.125);
    assert_int_equal(node(f, "d.mul.0")->op, PN_OP_MUL);
    /* -x is 0 - x */
    const pn_node *e = node(f, "e");
    assert_int_equal(e->op, PN_OP_SUB);
    assert_input(f, e, 1, "x");
    assert_true(f->g->nodes[e->in[0]].fa[PN_FA_VALUE] == 0.0);
    done(f);
    /* by a tensor: a div node, the number before it a constant */
    f = check("network n { input x : f32[batch, 4]; input s : f32[4]; output y = x / s; output z = 2 / x; }\n");
    expect_clean(f);
    assert_int_equal(node(f, "y")->op, PN_OP_DIV);
    assert_input(f, node(f, "y"), 1, "s");
    assert_int_equal(node(f, "z")->op, PN_OP_DIV);
    assert_true(node(f, "z.const.0")->fa[PN_FA_VALUE] == 2.0);
    assert_input(f, node(f, "z"), 1, "x");
    done(f);
}

static void test_constant_errors(void **state) {
    (void)state;
    cfx *f = check("network n { input x : f32[batch, 4]; output y = dense(x, 8 / 2); }\n");
    expect_error(f, "argument 'units' of 'dense' must be an integer, not 4");
    done(f);
    f = check("network n { input x : f32[batch, 4]; output y = x * sqrt(0 - 4); }\n");
    expect_error(f, "sqrt needs a non-negative number");
    done(f);
    f = check("network n { input x : f32[batch, 4]; output y = x * (1 / 0); }\n");
    expect_error(f, "division by zero in constant expression");
    done(f);
    f = check("network n { input x : f32[batch, 4]; input s : f32[batch, 3]; output y = x / s; }\n");
    expect_error(f, "operands of '/' do not broadcast: f32[batch,4] and f32[batch,3]");
    done(f);
    f = check("network n { input x : f32[batch, 4]; output y = dense(x, 9223372036854775807 + 1); }\n");
    expect_error(f, "integer overflow in constant expression");
    done(f);
}

/* const NAME : f32[dims] = [numbers] or "FILE.npy": a const node holding the values; arithmetic
 * between constants is folded into another constant. */
static void test_tensor_constants(void **state) {
    (void)state;
    cfx *f = check("network n {\n"
                   "    input x : f32[batch, 2, 3];\n"
                   "    const m : f32[3] = [1, 2.5, -4];\n"
                   "    const s : f32[2, 1] = [[2], [0.5]];\n"
                   "    inv = 1 / s;\n"
                   "    output y = (x - m) * inv + -m;\n"
                   "}\n");
    expect_clean(f);
    const pn_node *m = node(f, "m");
    assert_int_equal(m->op, PN_OP_CONST);
    ASSERT_SHAPE(&m->shape, 3);
    assert_true(m->data[0] == 1.0f && m->data[1] == 2.5f && m->data[2] == -4.0f);
    const pn_node *inv = node(f, "inv"); /* folded: no div node */
    assert_int_equal(inv->op, PN_OP_CONST);
    ASSERT_SHAPE(&inv->shape, 2, 1);
    assert_true(inv->data[0] == 0.5f && inv->data[1] == 2.0f);
    const pn_node *neg = node(f, "y.sub.1");
    assert_int_equal(neg->op, PN_OP_CONST);
    assert_true(neg->data[2] == 4.0f);
    assert_int_equal(node(f, "y.mul.0")->op, PN_OP_MUL);
    done(f);

    char dir[] = "/tmp/pnet_test_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[PATH_MAX], npy[PATH_MAX + 16], err[256];
    snprintf(npy, sizeof npy, "%s/mean.npy", dir);
    float vals[4] = {0.25f, -1, 3, 8};
    pnetrt_array a = {PNETRT_F32, 2, {2, 2}, vals, sizeof vals};
    assert_int_equal(pnetrt_npy_write(npy, &a, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/main.pnet", dir); /* the file is found beside the .pnet */
    f = check_at(path, "network n { input x : f32[batch, 2, 2]; const mean : f32[2, 2] = \"mean.npy\"; output y = x - mean; }\n");
    expect_clean(f);
    assert_true(node(f, "mean")->data[3] == 8.0f);
    assert_int_equal(f->prog.deps.len, 1); /* for -MD */
    done(f);
    f = check_at(path, "network n { input x : f32[batch, 4]; const mean : f32[4] = \"mean.npy\"; output y = x - mean; }\n");
    expect_error(f, "'mean.npy' holds f32[2,2], but constant 'mean' is declared f32[4]");
    done(f);
    f = check_at(path, "network n { input x : f32[batch, 4]; const mean : f32[4] = \"none.npy\"; output y = x - mean; }\n");
    expect_error(f, "cannot find the file 'none.npy' of constant 'mean'");
    done(f);
    unlink(npy);
    rmdir(dir);

    static const char *const bad[][2] = {
        {"const m : f32[3] = [1, 2];", "constant 'm' is declared f32[3], 3 values, but the list has 2"},
        {"const m : f32[batch, 3] = [1, 2, 3];", "a constant must be f32 without a 'batch' dimension"},
        {"const m : i32[2] = [1, 2];", "a constant must be f32 without a 'batch' dimension, not i32[2]"},
        {"const m : f32[2] = [1, false];", "a constant's values must be numbers, not a boolean"},
        {"const m : f32[2] = 7;", "a constant's values are a \"FILE.npy\" or a list of numbers, not an integer"},
        {"const m : f32[2] = [0, 1]; k = 1 / m;", "division by zero in constant expression, at element 0"},
        {"const m : f32[2] = [1, 1]; const k : f32[3] = [1, 1, 1]; j = m + k;", "operands of '+' do not broadcast: f32[2] and f32[3]"},
        {"const x : f32[2] = [1, 1];", "redefinition of 'x'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char src[512];
        snprintf(src, sizeof src, "network n { input x : f32[batch, 2]; %s output y = x; }\n", bad[i][0]);
        f = check(src);
        expect_error(f, bad[i][1]);
        done(f);
    }
    f = check("block b(x) { const m : f32[1] = [1]; return x * m; }\nnetwork n { input x : f32[batch, 2]; output y = b(x); }\n");
    expect_error(f, "constants can only be declared in a network, outside train { }");
    done(f);
}

static void test_name_errors(void **state) {
    (void)state;
    cfx *f = check("network n {\n"
                   "    input x : f32[batch, 4];\n"
                   "    h = relu(xx);\n"
                   "    g = rellu(x);\n"
                   "    output y = relu(x);\n"
                   "    y = relu(x);\n"
                   "}\n");
    expect_error(f, "use of undeclared name 'xx'; did you mean 'x'?");
    expect_diag(f, "unknown op or block 'rellu'; did you mean 'relu'?");
    expect_diag(f, "redefinition of 'y'");
    done(f);
    f = check("network n { input x : f32[batch, 4]; h = relu(x); }\n");
    expect_error(f, "network 'n' has no outputs");
    done(f);
}

static void test_call_shape_error_location(void **state) {
    (void)state;
    cfx *f = check("network n {\n"
                   "    input x : f32[batch, 4];\n"
                   "    input i : i32[batch, 4];\n"
                   "    output y = concat(x, i, axis = 1);\n"
                   "}\n");
    /* the shape rule's argument index points at `i` */
    expect_error(f, "t.pnet:4:26: error: 'concat' needs an f32 tensor, but this is i32[batch,4]");
    done(f);
    f = check("network n {\n"
              "    input x : f32[batch, 4];\n"
              "    output y = softmax(x, axis = 0);\n"
              "}\n");
    expect_error(f, "t.pnet:3:34: error: 'softmax' over the batch axis is not supported");
    done(f);
}

static void test_call_forms(void **state) {
    (void)state;
    cfx *f = check("network n {\n"
                   "    input a : f32[batch, 2];\n"
                   "    input b : f32[batch, 3];\n"
                   "    input img : f32[batch, 1, 9, 9];\n"
                   "    c1 = concat(a, b, 1);\n"
                   "    c2 = concat(inputs = [a, b, a], axis = -1);\n"
                   "    p1 = maxpool2d(img, 3);\n"
                   "    p2 = avgpool2d(img, [3, 2], stride = [1, 2], padding = 1);\n"
                   "    k = conv2d(img, 2, [3, 1], bias = false);\n"
                   "    output y = concat(c1, c2, axis = 1);\n"
                   "    output p1; output p2; output k;\n"
                   "}\n");
    expect_clean(f);
    ASSERT_SHAPE(&node(f, "c1")->shape, B, 5);
    const pn_node *c2 = node(f, "c2");
    assert_int_equal(c2->ninputs, 3);
    assert_int_equal(c2->ia[PN_AXIS], 1);
    ASSERT_SHAPE(&c2->shape, B, 7);
    const pn_node *p1 = node(f, "p1");
    ASSERT_SHAPE(&p1->shape, B, 1, 3, 3); /* stride defaults to the size */
    assert_int_equal(p1->ia[PN_POOL_SH], 3);
    assert_int_equal(p1->ia[PN_POOL_SW], 3);
    /* floor((9 + 2 - 3) / 1) + 1 = 9 and floor((9 + 2 - 2) / 2) + 1 = 5 */
    ASSERT_SHAPE(&node(f, "p2")->shape, B, 1, 9, 5);
    const pn_node *k = node(f, "k");
    ASSERT_SHAPE(&k->shape, B, 2, 7, 9);
    assert_int_equal(k->nparams, 1);
    ASSERT_SHAPE(&param(k, "weight")->shape, 2, 1, 3, 1);
    done(f);

    f = check("network n {\n"
              "    input x : f32[batch, 4];\n"
              "    output y = relu(x);\n"
              "    train { t : f32[batch, 4]; loss = mse(y, t); optimizer = sgd(0.1); }\n"
              "    w = relu(t);\n"
              "}\n");
    expect_error(f, "t.pnet:5:14: error: 't' exists only in training and cannot be used outside train { }");
    done(f);
}

/* ---- examples ----------------------------------------------------------------------------- */

static void test_examples_check(void **state) {
    (void)state;
    char dir[PATH_MAX];
    source_dir("../../examples", dir);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".pnet") != 0) continue;
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        cfx *f = check_at(path, NULL);
        if (!f->ok || f->d.nwarnings) print_error("%s:\n%s\n", path, diag_text(f));
        expect_clean(f);
        assert_true(f->g->nnodes > 0);
        assert_true(f->g->noutputs > 0);
        done(f);
        n++;
    }
    closedir(d);
    assert_true(n >= 5);
}

static void test_example_wide_mlp(void **state) {
    (void)state;
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/wide_mlp.pnet", EXAMPLES_DIR());
    cfx *f = check_at(path, NULL);
    expect_clean(f);
    pn_graph *g = f->g;
    assert_int_equal(g->nstages, 2);
    assert_int_equal(g->replicas, 2);
    assert_int_equal(g->microbatches, 8);
    assert_int_equal(g->schedule, PN_SCHED_GPIPE);
    assert_int_equal(node(f, "fc1")->stage, 0);
    assert_int_equal(node(f, "r.b.relu.0")->stage, 0);
    assert_int_equal(node(f, "fc3")->stage, 1);
    assert_int_equal(node(f, "fc3")->shard, 2);
    assert_int_equal(node(f, "h3.up")->stage, 1);
    ASSERT_SHAPE(&node(f, "fc4")->shape, B, 1024);
    assert_false(g->train.present);
    done(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_graph),
        cmocka_unit_test(test_train_settings),
        cmocka_unit_test(test_train_adam_and_mse),
        cmocka_unit_test(test_train_errors),
        cmocka_unit_test(test_node_names),
        cmocka_unit_test(test_several_inputs_and_outputs),
        cmocka_unit_test(test_partition_shard_pipeline),
        cmocka_unit_test(test_directive_errors),
        cmocka_unit_test(test_stdlib_import),
        cmocka_unit_test(test_file_imports),
        cmocka_unit_test(test_block_defaults_and_keywords),
        cmocka_unit_test(test_block_call_errors),
        cmocka_unit_test(test_recursion),
        cmocka_unit_test(test_error_in_block_expansion),
        cmocka_unit_test(test_block_structure_errors),
        cmocka_unit_test(test_unused_warning),
        cmocka_unit_test(test_constant_folding),
        cmocka_unit_test(test_constant_errors),
        cmocka_unit_test(test_tensor_constants),
        cmocka_unit_test(test_name_errors),
        cmocka_unit_test(test_call_shape_error_location),
        cmocka_unit_test(test_call_forms),
        cmocka_unit_test(test_examples_check),
        cmocka_unit_test(test_example_wide_mlp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
