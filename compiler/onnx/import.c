/* The ONNX front end: an ONNX ModelProto, decoded by protobuf-c from code generated from the system
 * onnx/onnx.proto, becomes the graph IR that the .pnet checker builds. Every node goes through the
 * op's shape rule (pn_shape_infer), as a checked .pnet statement does; initializers become the
 * parameters, in PyTorch's layout. Names map to identifiers by ident() (docs/onnx.md, "Names"). */
#include "onnx.h"
#include "onnx/onnx.pb-c.h"
#include "../ir/shapes.h"
#include "../support/strmap.h"
#include "../support/util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Opsets of the default domain: an op whose meaning changed across them is checked by its attributes
 * (before opset 7, Add's broadcast; before 13, Softmax's axis; ...). */
enum { OPSET_MIN = 1, OPSET_MAX = 18, MAX_IN = 64 };

/* An ONNX tensor: a graph node's value, or a constant (initializer or Constant node). */
typedef struct value {
    int node;                /* the graph node computing it, or -1 for a constant */
    int dtype;               /* a constant's ONNX element type */
    int rank;
    int64_t dims[PN_MAX_RANK];
    int64_t numel;
    float *f;                /* FLOAT constants */
    int64_t *i;              /* INT64 and INT32 constants */
    const char *name;        /* the ONNX name */
    const char *why;         /* a constant whose data cannot be read: why, else NULL */
    /* A FLOAT constant that is rows 0..n-1 of the 2-d initializer rows_of (a Gather by the constant
     * ids 0..n-1, as PyTorch exports `pos(arange(T))`), else NULL: an Add maps it onto
     * embedding(positions(...)). */
    const struct value *rows_of;
} value;

/* In an INT64 constant computed from a Shape: the batch dimension, whose size is not known. */
#define BATCH_DIM INT64_MIN

typedef struct imp {
    const Onnx__GraphProto *gp;
    int64_t opset;
    pn_graph *g;
    pn_onnx_weights *w;
    pn_strmap values;            /* ONNX tensor name -> value * */
    pn_strmap taken;             /* identifiers given to nodes and outputs */
    pn_arena arena;              /* values and constant data */
    const Onnx__NodeProto *node; /* the node being imported, for messages */
    bool *absorbed;              /* nodes computed by an earlier one (MatMul + Add) */
    char *err;
    size_t errlen;
    bool failed;
} imp;

static const char *S(const char *s) { return s ? s : ""; }

/* Records the first error; "node 'N' (Op, opset K): " before it while a node is imported. */
static bool fail(imp *im, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(imp *im, const char *fmt, ...) {
    if (im->failed) return false;
    im->failed = true;
    int n = 0;
    if (im->node) {
        const Onnx__NodeProto *nd = im->node;
        const char *name = nd->name && *nd->name ? nd->name : nd->n_output ? S(nd->output[0]) : "";
        n = snprintf(im->err, im->errlen, "node '%s' (%s, opset %lld): ", name, S(nd->op_type), (long long)im->opset);
        if (n < 0 || (size_t)n >= im->errlen) return false;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(im->err + n, im->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    for (char *c = im->err; *c; c++) /* one line, whatever the model's names hold */
        if (*c == '\n' || *c == '\r') *c = ' ';
    return false;
}

/* ---- names ----------------------------------------------------------------------------- */

static bool reserved(const char *s) {
    static const char *const words[] = {"network", "input", "output", "block", "import", "return",
                                        "train", "true", "false", "batch", "sqrt"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strcmp(s, words[i]) == 0) return true;
    return pn_op_lookup(s) != PN_OP_COUNT;
}

/* The identifier for an ONNX name: a trailing "_output_0" (PyTorch's) is dropped, every character
 * outside [A-Za-z0-9_] becomes '_', leading '_' are dropped, a name that is then empty or starts with
 * a digit gets a 'v' in front, a keyword or op name gets '_' behind, and a name already taken gets
 * _2, _3, ... behind. */
static const char *ident(imp *im, const char *onnx) {
    const char *s = S(onnx);
    size_t n = strlen(s), suffix = strlen("_output_0");
    if (n > suffix && strcmp(s + n - suffix, "_output_0") == 0) n -= suffix;
    char *b = pn_xmalloc(n + 2), *o = b;
    const char *end = s + n;
    while (s < end && !isalnum((unsigned char)*s)) s++;
    if (s == end || isdigit((unsigned char)*s)) *o++ = 'v';
    for (; s < end; s++) *o++ = isalnum((unsigned char)*s) ? *s : '_';
    *o = 0;
    char *name = reserved(b) ? pn_xasprintf("%s_", b) : pn_xstrdup(b);
    free(b);
    for (int k = 2; pn_strmap_get(&im->taken, name); k++) {
        char *base = name;
        size_t cut = strlen(base);
        if (k > 2) cut = strrchr(base, '_') - base;
        name = pn_xasprintf("%.*s_%d", (int)cut, base, k);
        free(base);
    }
    const char *kept = pn_arena_strdup(&im->g->arena, name);
    free(name);
    pn_strmap_put(&im->taken, kept, (void *)1);
    return kept;
}

/* A graph input's or output's own name, kept beside its identifier id for the executables'
 * --input NAME=FILE and info (pnetrt_tensor_desc.source_name): NULL when it is the identifier, or
 * when it cannot be given there (empty, holding '=' or a control character). */
static const char *source_name(imp *im, const char *onnx, const char *id) {
    if (!*onnx || strcmp(onnx, id) == 0) return NULL;
    for (const unsigned char *c = (const unsigned char *)onnx; *c; c++)
        if (*c < 0x20 || *c == 0x7f || *c == '=') return NULL;
    return pn_arena_strdup(&im->g->arena, onnx);
}

/* The length of s without the suffix, or 0 when s does not end with it (or is only it). */
static size_t stem_len(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0 ? n - k : 0;
}

/* A layer's name from its weight's (or bias's) initializer: "fc1.weight" -> "fc1", so that its
 * parameters keep the ONNX names where those are identifiers (docs/onnx.md); with suffix, the stem
 * and suffix ("pos.weight", "_positions" -> "pos_positions"). */
static const char *layer_name_with(imp *im, const value *weight, const char *suffix) {
    const char *s = S(weight->name);
    size_t n = stem_len(s, ".weight") ? stem_len(s, ".weight") : stem_len(s, ".bias") ? stem_len(s, ".bias") : strlen(s);
    char *stem = pn_xasprintf("%.*s%s", (int)n, s, suffix);
    const char *id = ident(im, stem);
    free(stem);
    return id;
}

static const char *layer_name(imp *im, const value *weight) { return layer_name_with(im, weight, ""); }

/* ---- values ---------------------------------------------------------------------------- */

static value *new_value(imp *im, const char *name) {
    value *v = pn_arena_alloc(&im->arena, sizeof *v);
    v->node = -1;
    v->name = pn_arena_strdup(&im->arena, S(name));
    return v;
}

static const char *type_name(int t) {
    static const char *const names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
                                        "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64",
                                        "COMPLEX128", "BFLOAT16"};
    return t >= 0 && t < (int)(sizeof names / sizeof *names) ? names[t] : "an unknown type";
}

/* A constant from a TensorProto. Data it cannot read (another element type, external data) leaves
 * v->why set; only a node that uses the constant fails on it. */
static value *read_tensor(imp *im, const Onnx__TensorProto *t, const char *name) {
    value *v = new_value(im, name);
    v->dtype = t->has_data_type ? t->data_type : 0;
    if (t->n_dims > PN_MAX_RANK) return fail(im, "constant '%s' has %zu dimensions (at most %d)", v->name, t->n_dims, PN_MAX_RANK), NULL;
    v->rank = (int)t->n_dims;
    v->numel = 1;
    for (int k = 0; k < v->rank; k++) {
        v->dims[k] = t->dims[k];
        if (t->dims[k] < 0 || t->dims[k] > PN_MAX_DIM || __builtin_mul_overflow(v->numel, t->dims[k], &v->numel) ||
            v->numel > PN_MAX_ELEMS)
            return fail(im, "constant '%s' has an invalid dimension %lld", v->name, (long long)t->dims[k]), NULL;
    }
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        v->why = "its data is in an external file, which is not supported";
        return v;
    }
    size_t n = (size_t)v->numel;
    const ProtobufCBinaryData *raw = t->has_raw_data ? &t->raw_data : NULL;
    if (v->dtype == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        /* The data is checked against the dimensions before anything is allocated for it. */
        if (raw ? raw->len != n * sizeof(float) : t->n_float_data != n)
            return fail(im, "constant '%s' holds %zu values for its %zu elements", v->name, raw ? raw->len / 4 : t->n_float_data, n), NULL;
        v->f = pn_arena_alloc(&im->arena, n * sizeof(float) + 1);
        if (n) memcpy(v->f, raw ? (const void *)raw->data : (const void *)t->float_data, n * sizeof(float));
    } else if (v->dtype == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || v->dtype == ONNX__TENSOR_PROTO__DATA_TYPE__INT32) {
        bool is64 = v->dtype == ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
        size_t es = is64 ? 8 : 4, have = raw ? raw->len / es : is64 ? t->n_int64_data : t->n_int32_data;
        if ((raw && raw->len != n * es) || have != n)
            return fail(im, "constant '%s' holds %zu values for its %zu elements", v->name, have, n), NULL;
        v->i = pn_arena_alloc(&im->arena, n * sizeof(int64_t) + 1);
        for (size_t k = 0; k < n; k++) {
            if (raw && is64) memcpy(&v->i[k], raw->data + 8 * k, 8);
            else if (raw) {
                int32_t x;
                memcpy(&x, raw->data + 4 * k, 4);
                v->i[k] = x;
            } else v->i[k] = is64 ? t->int64_data[k] : t->int32_data[k];
        }
    } else if (v->dtype == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL) { /* as 0 and 1 in v->i: masks */
        size_t have = raw ? raw->len : t->n_int32_data;
        if (have != n) return fail(im, "constant '%s' holds %zu values for its %zu elements", v->name, have, n), NULL;
        v->i = pn_arena_alloc(&im->arena, n * sizeof(int64_t) + 1);
        for (size_t k = 0; k < n; k++) v->i[k] = (raw ? raw->data[k] : t->int32_data[k]) != 0;
    } else {
        v->why = "its element type is not supported";
    }
    return v;
}

/* Node input k, or NULL (after an error) when it is missing or unknown. */
static value *input(imp *im, int k) {
    const Onnx__NodeProto *nd = im->node;
    if ((size_t)k >= nd->n_input || !nd->input[k] || !*nd->input[k]) return fail(im, "input %d is missing", k), NULL;
    value *v = pn_strmap_get(&im->values, nd->input[k]);
    if (!v) fail(im, "input '%s' is not defined before the node", nd->input[k]);
    return v;
}

static bool has_input(const imp *im, int k) {
    return (size_t)k < im->node->n_input && im->node->input[k] && *im->node->input[k];
}

/* Node input k as a computed tensor (a graph node); -1 after an error. */
static int act(imp *im, int k) {
    value *v = input(im, k);
    if (!v) return -1;
    if (v->node < 0) return fail(im, "input %d ('%s') is a constant; only computed tensors are supported there", k, v->name), -1;
    return v->node;
}

/* Node input k as a FLOAT constant (an initializer or a Constant node's value); NULL after an error. */
static value *cst(imp *im, int k, int dtype) {
    value *v = input(im, k);
    if (!v) return NULL;
    if (v->node >= 0) return fail(im, "input %d ('%s') must be a constant (an initializer)", k, v->name), NULL;
    if (v->why) return fail(im, "constant '%s': %s", v->name, v->why), NULL;
    bool is_bool = v->dtype == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
    bool ok = dtype == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT  ? v->f != NULL
              : dtype == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL ? v->i != NULL && is_bool
                                                             : v->i != NULL && !is_bool;
    if (!ok) return fail(im, "constant '%s' is %s, not %s", v->name, type_name(v->dtype), type_name(dtype)), NULL;
    return v;
}

static void bind(imp *im, const char *name, int node) {
    value *v = new_value(im, name);
    v->node = node;
    pn_strmap_put(&im->values, v->name, v);
}

/* Outputs past the first must be absent or unused (Dropout's mask, MaxPool's indices, ...). */
static bool one_output(imp *im) {
    const Onnx__NodeProto *nd = im->node;
    for (size_t k = 1; k < nd->n_output; k++)
        if (nd->output[k] && *nd->output[k]) return fail(im, "output %zu ('%s') is not supported", k, nd->output[k]);
    return nd->n_output >= 1 && nd->output[0] && *nd->output[0] ? true : fail(im, "the node has no output");
}

/* ---- attributes ------------------------------------------------------------------------- */

static const Onnx__AttributeProto *attr(const imp *im, const char *name) {
    for (size_t k = 0; k < im->node->n_attribute; k++)
        if (strcmp(S(im->node->attribute[k]->name), name) == 0) return im->node->attribute[k];
    return NULL;
}

/* Every attribute of the node must be one of the space-separated names in known. */
static bool only(imp *im, const char *known) {
    for (size_t k = 0; k < im->node->n_attribute; k++) {
        const char *a = S(im->node->attribute[k]->name);
        size_t n = strlen(a);
        bool found = false;
        for (const char *p = known; *p && !found;) {
            size_t len = strcspn(p, " ");
            found = n && len == n && memcmp(p, a, n) == 0;
            p += len;
            p += *p == ' ';
        }
        if (!found) return fail(im, "attribute '%s' is not supported", a);
    }
    return true;
}

static int64_t attr_i(const imp *im, const char *name, int64_t def) {
    const Onnx__AttributeProto *a = attr(im, name);
    return a && a->has_i ? a->i : def;
}

static double attr_f(const imp *im, const char *name, double def) {
    const Onnx__AttributeProto *a = attr(im, name);
    return a && a->has_f ? a->f : def;
}

/* The ints of attribute name into out[0..max); the count, or -1 when absent or too long. */
static int attr_ints(const imp *im, const char *name, int64_t *out, int max) {
    const Onnx__AttributeProto *a = attr(im, name);
    if (!a || a->n_ints > (size_t)max) return -1;
    if (a->n_ints) memcpy(out, a->ints, a->n_ints * sizeof(int64_t));
    return (int)a->n_ints;
}

/* The string attribute equals s (absent: def). */
static bool attr_is(const imp *im, const char *name, const char *s, bool def) {
    const Onnx__AttributeProto *a = attr(im, name);
    if (!a || !a->has_s) return def;
    return a->s.len == strlen(s) && memcmp(a->s.data, s, a->s.len) == 0;
}

/* ---- graph nodes ------------------------------------------------------------------------ */

/* Adds node n (op, attributes and name set) through its shape rule; -1 after an error. */
static int add(imp *im, pn_node *n, const int32_t *in, int nin, const int64_t *list, int nlist) {
    const pn_node *inputs[MAX_IN];
    for (int k = 0; k < nin; k++) inputs[k] = &im->g->nodes[in[k]];
    n->loc = PN_NOLOC;
    n->shard = 1;
    pn_shape_err se;
    if (!pn_shape_infer(n, inputs, nin, list, nlist, &se)) return fail(im, "%s", se.msg), -1;
    return pn_graph_add(im->g, n, in, nin);
}

/* The node for output 0, named after it. */
static pn_node plain(imp *im, pn_op op) {
    return (pn_node){.name = ident(im, im->node->output[0]), .op = op};
}

/* A node that computes a step of output 0 (named after it with a suffix), or output 0 itself when
 * suffix is NULL; -1 after an error. */
static int step(imp *im, pn_op op, const char *suffix, const int32_t *in, int nin, const int64_t *list, int nlist, double f) {
    char *name = suffix ? pn_xasprintf("%s_%s", im->node->output[0], suffix) : NULL;
    pn_node n = {.name = ident(im, name ? name : im->node->output[0]), .op = op};
    free(name);
    n.fa[PN_FA_VALUE] = f;
    return add(im, &n, in, nin, list, nlist);
}

/* Parameter k of node id gets data (copied), under NODE.SUFFIX. */
static void weight(imp *im, int id, int k, const float *data) {
    const pn_node *n = &im->g->nodes[id];
    pn_onnx_weights *w = im->w;
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->names = pn_xrealloc(w->names, sizeof *w->names * (size_t)w->cap);
        w->ranks = pn_xrealloc(w->ranks, sizeof *w->ranks * (size_t)w->cap);
        w->shapes = pn_xrealloc(w->shapes, sizeof *w->shapes * (size_t)w->cap);
        w->data = pn_xrealloc(w->data, sizeof *w->data * (size_t)w->cap);
    }
    const pn_param_info *p = &n->params[k];
    int64_t count = pn_shape_sample_elems(&p->shape);
    w->names[w->n] = pn_xasprintf("%s.%s", n->name, p->suffix);
    w->ranks[w->n] = p->shape.rank;
    for (int d = 0; d < p->shape.rank; d++) w->shapes[w->n][d] = p->shape.d[d];
    w->data[w->n] = pn_xmalloc((size_t)count * sizeof(float) + 1);
    if (count > 0) memcpy(w->data[w->n], data, (size_t)count * sizeof(float));
    w->n++;
}

static bool is_vector(const value *v, int64_t n) { return v->numel == n && (v->rank <= 1 || (v->rank == 2 && v->dims[0] == 1)); }

/* A dense layer: y = x W^T + b, W [units, in] given as w[u * in + k]; bias NULL for none. */
static bool dense(imp *im, int x, const value *named, int64_t units, int64_t in, const float *w, const float *bias) {
    const pn_shape *s = &im->g->nodes[x].shape;
    if (s->rank < 1 || s->d[s->rank - 1] != in)
        return fail(im, "the weight has %lld inputs, but the input's last dimension is %lld", (long long)in,
                    s->rank ? (long long)s->d[s->rank - 1] : 0LL);
    pn_node n = {.name = layer_name(im, named), .op = PN_OP_DENSE};
    n.ia[PN_DENSE_UNITS] = units;
    n.ia[PN_DENSE_BIAS] = bias != NULL;
    int id = add(im, &n, (int32_t[]){x}, 1, NULL, 0);
    if (id < 0) return false;
    weight(im, id, 0, w);
    if (bias) weight(im, id, 1, bias);
    bind(im, im->node->output[0], id);
    return true;
}

/* Gemm with B computed: matmul of the (transposed) operands, times alpha, plus beta * C for C
 * computed or a scalar constant. */
static bool gemm_computed(imp *im, int a, int b) {
    static const int64_t swap[2] = {1, 0};
    if (attr_i(im, "transA", 0) && (a = step(im, PN_OP_TRANSPOSE, "At", (int32_t[]){a}, 1, swap, 2, 0)) < 0) return false;
    if (attr_i(im, "transB", 0) && (b = step(im, PN_OP_TRANSPOSE, "Bt", (int32_t[]){b}, 1, swap, 2, 0)) < 0) return false;
    double alpha = attr_f(im, "alpha", 1.0), beta = attr_f(im, "beta", 1.0);
    bool scale = alpha != 1.0, bias = has_input(im, 2) && beta != 0.0;
    int y = step(im, PN_OP_MATMUL, scale || bias ? "matmul" : NULL, (int32_t[]){a, b}, 2, NULL, 0, 0);
    if (y < 0) return false;
    if (scale) {
        int k = step(im, PN_OP_CONST, "alpha", NULL, 0, NULL, 0, alpha);
        if (k < 0 || (y = step(im, PN_OP_MUL, bias ? "scaled" : NULL, (int32_t[]){y, k}, 2, NULL, 0, 0)) < 0) return false;
    }
    if (bias) {
        value *c = input(im, 2);
        if (!c) return false;
        int ci = c->node;
        if (ci < 0) {
            if (!(c = cst(im, 2, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT))) return false;
            if (c->numel != 1) return fail(im, "C must be computed or a scalar when B is computed");
            if ((ci = step(im, PN_OP_CONST, "C", NULL, 0, NULL, 0, c->f[0] * beta)) < 0) return false;
        } else if (beta != 1.0) {
            int k = step(im, PN_OP_CONST, "beta", NULL, 0, NULL, 0, beta);
            if (k < 0 || (ci = step(im, PN_OP_MUL, "C", (int32_t[]){ci, k}, 2, NULL, 0, 0)) < 0) return false;
        }
        if ((y = step(im, PN_OP_ADD, NULL, (int32_t[]){y, ci}, 2, NULL, 0, 0)) < 0) return false;
    }
    bind(im, im->node->output[0], y);
    return true;
}

/* Gemm: Y = alpha * A' B' + beta * C, with A computed and B, C constants: a dense layer. */
static bool op_gemm(imp *im) {
    if (!only(im, "alpha beta transA transB broadcast") || !one_output(im)) return false;
    int x = act(im, 0);
    value *b = x < 0 ? NULL : input(im, 1);
    if (!b) return false;
    if (b->node >= 0) return gemm_computed(im, x, b->node);
    if (attr_i(im, "transA", 0)) return fail(im, "transA = %lld with a constant B is not supported", (long long)attr_i(im, "transA", 0));
    if (!(b = cst(im, 1, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT))) return false;
    if (b->rank != 2) return fail(im, "B must have 2 dimensions");
    bool tb = attr_i(im, "transB", 0) != 0;
    double alpha = attr_f(im, "alpha", 1.0), beta = attr_f(im, "beta", 1.0);
    int64_t K = tb ? b->dims[1] : b->dims[0], N = tb ? b->dims[0] : b->dims[1];
    float *w = pn_xmalloc((size_t)(N * K) * sizeof(float) + 1), *bias = NULL;
    for (int64_t u = 0; u < N; u++)
        for (int64_t k = 0; k < K; k++) {
            float e = tb ? b->f[u * K + k] : b->f[k * N + u];
            w[u * K + k] = alpha == 1.0 ? e : (float)(alpha * e);
        }
    if (has_input(im, 2) && beta != 0.0) {
        value *c = cst(im, 2, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
        if (!c || (!is_vector(c, N) && c->numel != 1)) {
            free(w);
            return c ? fail(im, "C must be a vector of %lld elements or a scalar", (long long)N) : false;
        }
        bias = pn_xmalloc((size_t)N * sizeof(float));
        for (int64_t u = 0; u < N; u++) {
            float e = c->f[c->numel == 1 ? 0 : u];
            bias[u] = beta == 1.0 ? e : (float)(beta * e);
        }
    }
    bool ok = dense(im, x, b, N, K, w, bias);
    free(w);
    free(bias);
    return ok;
}

/* The index of the only node that reads tensor name, after node i; -1 when it is read by none,
 * by several, or is a graph output. */
static int sole_reader(const imp *im, size_t i, const char *name) {
    for (size_t k = 0; k < im->gp->n_output; k++)
        if (strcmp(S(im->gp->output[k]->name), name) == 0) return -1;
    int found = -1;
    for (size_t j = i + 1; j < im->gp->n_node; j++) {
        const Onnx__NodeProto *nd = im->gp->node[j];
        for (size_t k = 0; k < nd->n_input; k++) {
            if (strcmp(S(nd->input[k]), name) != 0) continue;
            if (found >= 0) return -1;
            found = (int)j;
        }
    }
    return found;
}

/* ---- patterns of older exports: GELU and LayerNorm written with primitives -------------------- */

/* The node after index that alone reads tensor name, if its op type is op; -1 otherwise. */
static int next_op(const imp *im, size_t index, const char *name, const char *op) {
    int j = sole_reader(im, index, name);
    if (j < 0) return -1;
    const Onnx__NodeProto *nd = im->gp->node[j];
    return strcmp(S(nd->op_type), op) == 0 && nd->n_output == 1 && (!nd->domain || !*nd->domain) ? j : -1;
}

/* Node j's input that is not tensor name (j has two inputs, one of them name); NULL otherwise. */
static const char *other_input(const imp *im, int j, const char *name) {
    const Onnx__NodeProto *nd = im->gp->node[j];
    if (nd->n_input != 2) return NULL;
    if (strcmp(S(nd->input[0]), name) == 0) return S(nd->input[1]);
    return strcmp(S(nd->input[1]), name) == 0 ? S(nd->input[0]) : NULL;
}

/* Tensor name is a FLOAT scalar constant within 1e-6 of want (NaN want: any), into *v. */
static bool scalar_is(const imp *im, const char *name, double want, double *v) {
    const value *c = name ? pn_strmap_get(&im->values, name) : NULL;
    if (!c || c->node >= 0 || !c->f || c->numel != 1) return false;
    if (v) *v = c->f[0];
    return want != want || (c->f[0] > want - 1e-6 && c->f[0] < want + 1e-6);
}

/* GELU as torch.onnx.export writes it before opset 20:
 *   Mul(Mul(x, Add(Erf(Div(x, sqrt(2))), 1)), 0.5)
 * at the Div: one gelu node, the other four absorbed. False (and no error) when it does not match. */
static bool gelu_pattern(imp *im, size_t i) {
    const Onnx__NodeProto *div = im->node;
    if (div->n_input != 2 || div->n_output != 1 || !scalar_is(im, div->input[1], 1.4142135623730951, NULL)) return false;
    const value *x = pn_strmap_get(&im->values, S(div->input[0]));
    if (!x || x->node < 0) return false;
    int erf = next_op(im, i, div->output[0], "Erf");
    int plus = erf < 0 ? -1 : next_op(im, (size_t)erf, im->gp->node[erf]->output[0], "Add");
    if (plus < 0 || !scalar_is(im, other_input(im, plus, im->gp->node[erf]->output[0]), 1.0, NULL)) return false;
    int mul = next_op(im, (size_t)plus, im->gp->node[plus]->output[0], "Mul");
    const char *xin = mul < 0 ? NULL : other_input(im, mul, im->gp->node[plus]->output[0]);
    if (!xin || strcmp(xin, S(div->input[0])) != 0) return false;
    int half = next_op(im, (size_t)mul, im->gp->node[mul]->output[0], "Mul");
    if (half < 0 || !scalar_is(im, other_input(im, half, im->gp->node[mul]->output[0]), 0.5, NULL)) return false;
    const char *out = im->gp->node[half]->output[0];
    pn_node n = {.name = ident(im, out), .op = PN_OP_GELU};
    int id = add(im, &n, (int32_t[]){x->node}, 1, NULL, 0);
    if (id < 0) return true; /* matched; the error is set */
    im->absorbed[erf] = im->absorbed[plus] = im->absorbed[mul] = im->absorbed[half] = true;
    bind(im, out, id);
    return true;
}

/* ReduceMean over the last axis of a rank-r tensor, keeping it. */
static bool mean_last(const imp *im, int j, int r) {
    const Onnx__NodeProto *nd = im->gp->node[j];
    int64_t axes[2] = {0};
    int na = 0;
    for (size_t k = 0; k < nd->n_attribute; k++) {
        const Onnx__AttributeProto *a = nd->attribute[k];
        if (!strcmp(S(a->name), "keepdims") && a->i != 1) return false;
        if (!strcmp(S(a->name), "axes")) {
            if (a->n_ints != 1) return false;
            axes[na++] = a->ints[0];
        } else if (strcmp(S(a->name), "keepdims") != 0) return false;
    }
    return nd->n_input == 1 && na == 1 && (axes[0] == -1 || axes[0] == r - 1);
}

/* LayerNorm as torch.onnx.export writes it before opset 17:
 *   d = Sub(x, ReduceMean(x)); q = Div(d, Sqrt(Add(ReduceMean(Pow(d, 2)), eps)));
 *   y = Add(Mul(q, weight), bias)
 * over the last axis, at the first ReduceMean: one layernorm node. False when it does not match. */
static bool layernorm_pattern(imp *im, size_t i) {
    const Onnx__NodeProto *r1 = im->node;
    const value *x = r1->n_input == 1 ? pn_strmap_get(&im->values, S(r1->input[0])) : NULL;
    if (!x || x->node < 0 || r1->n_output != 1) return false;
    const pn_shape *s = &im->g->nodes[x->node].shape;
    if (s->rank < 1 || !mean_last(im, (int)i, s->rank)) return false;
    int sub = next_op(im, i, r1->output[0], "Sub");
    if (sub < 0 || strcmp(S(im->gp->node[sub]->input[0]), S(r1->input[0])) != 0) return false;
    const char *d = im->gp->node[sub]->output[0];
    int pw = -1, dv = -1, readers = 0; /* d is read by the Pow and the Div only */
    for (size_t j = (size_t)sub + 1; j < im->gp->n_node; j++) {
        const Onnx__NodeProto *nd = im->gp->node[j];
        for (size_t k = 0; k < nd->n_input; k++) {
            if (strcmp(S(nd->input[k]), d) != 0) continue;
            readers++;
            if (!strcmp(S(nd->op_type), "Pow") && k == 0) pw = (int)j;
            else if (!strcmp(S(nd->op_type), "Div") && k == 0) dv = (int)j;
        }
    }
    for (size_t k = 0; k < im->gp->n_output; k++)
        if (strcmp(S(im->gp->output[k]->name), d) == 0) return false;
    if (readers != 2 || pw < 0 || dv < 0 || im->gp->node[pw]->n_input != 2 || !scalar_is(im, im->gp->node[pw]->input[1], 2.0, NULL))
        return false;
    int r2 = next_op(im, (size_t)pw, im->gp->node[pw]->output[0], "ReduceMean");
    if (r2 < 0 || !mean_last(im, r2, s->rank)) return false;
    int ae = next_op(im, (size_t)r2, im->gp->node[r2]->output[0], "Add");
    double eps = 0;
    if (ae < 0 || !scalar_is(im, other_input(im, ae, im->gp->node[r2]->output[0]), 0.0 / 0.0, &eps) || !(eps > 0)) return false;
    int sq = next_op(im, (size_t)ae, im->gp->node[ae]->output[0], "Sqrt");
    if (sq < 0 || next_op(im, (size_t)sq, im->gp->node[sq]->output[0], "Div") != dv ||
        strcmp(S(im->gp->node[dv]->input[1]), im->gp->node[sq]->output[0]) != 0)
        return false;
    /* The affine part, when there is one: Mul by a vector, then Add of a vector. */
    int64_t D = s->d[s->rank - 1];
    const char *out = im->gp->node[dv]->output[0];
    const value *w = NULL, *b = NULL;
    int mul = next_op(im, (size_t)dv, out, "Mul"), badd = -1;
    if (mul >= 0) {
        w = pn_strmap_get(&im->values, S(other_input(im, mul, out)));
        badd = next_op(im, (size_t)mul, im->gp->node[mul]->output[0], "Add");
        b = badd < 0 ? NULL : pn_strmap_get(&im->values, S(other_input(im, badd, im->gp->node[mul]->output[0])));
        if (!w || w->node >= 0 || !w->f || !is_vector(w, D) || w->rank != 1 || !b || b->node >= 0 || !b->f || !is_vector(b, D) || b->rank != 1)
            w = b = NULL, mul = badd = -1;
    }
    if (mul >= 0) out = im->gp->node[badd]->output[0];
    pn_node n = {.name = w ? layer_name(im, w) : ident(im, out), .op = PN_OP_LAYERNORM};
    n.fa[PN_FA_VALUE] = eps;
    int id = add(im, &n, (int32_t[]){x->node}, 1, NULL, 0);
    if (id < 0) return true;
    float *ones = pn_xmalloc((size_t)D * sizeof(float) + 1), *zeros = pn_xcalloc((size_t)D + 1, sizeof(float));
    for (int64_t k = 0; k < D; k++) ones[k] = 1.0f;
    weight(im, id, 0, w ? w->f : ones);
    weight(im, id, 1, b ? b->f : zeros);
    free(ones);
    free(zeros);
    int absorbed[] = {sub, pw, r2, ae, sq, dv, mul, badd};
    for (size_t k = 0; k < sizeof absorbed / sizeof *absorbed; k++)
        if (absorbed[k] >= 0) im->absorbed[absorbed[k]] = true;
    bind(im, out, id);
    return true;
}

/* ---- shape arithmetic: Shape, Gather, Cast and Range of constants, folded --------------------- */

/* PyTorch computes sequence lengths from shapes (`arange(ids.shape[1])` is Shape, Gather, Cast and
 * Range): each of these ops on constants, or Shape of a tensor whose sizes are known, is folded into
 * a constant. The batch dimension's size is not known: it is BATCH_DIM, which only Gather, Cast and
 * Reshape (as 0, "copy") may pass on. */

/* The node's output 0 becomes the constant v. */
static bool bind_const(imp *im, value *v) {
    v->name = pn_arena_strdup(&im->arena, im->node->output[0]);
    pn_strmap_put(&im->values, v->name, v);
    return true;
}

/* A new constant of the given type and shape, its data allocated. */
static value *new_const(imp *im, int dtype, int rank, const int64_t *dims) {
    value *v = new_value(im, im->node->output[0]);
    v->dtype = dtype;
    v->rank = rank;
    v->numel = 1;
    for (int k = 0; k < rank; k++) v->numel *= (v->dims[k] = dims[k]);
    if (dtype == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) v->f = pn_arena_alloc(&im->arena, (size_t)v->numel * sizeof(float) + 1);
    else v->i = pn_arena_alloc(&im->arena, (size_t)v->numel * sizeof(int64_t) + 1);
    return v;
}

/* Shape of a computed tensor (opset 15's start and end too): its sizes, the batch as BATCH_DIM. */
static bool op_shape(imp *im) {
    if (!only(im, "start end") || !one_output(im)) return false;
    int x = act(im, 0);
    if (x < 0) return false;
    const pn_shape *s = &im->g->nodes[x].shape;
    int64_t lo = attr_i(im, "start", 0), hi = attr_i(im, "end", s->rank);
    if (lo < 0) lo += s->rank;
    if (hi < 0) hi += s->rank;
    lo = lo < 0 ? 0 : lo > s->rank ? s->rank : lo;
    hi = hi < lo ? lo : hi > s->rank ? s->rank : hi;
    value *v = new_const(im, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, (int64_t[]){hi - lo});
    for (int64_t k = lo; k < hi; k++) v->i[k - lo] = s->d[k] == PN_BATCH ? BATCH_DIM : s->d[k];
    return bind_const(im, v);
}

/* Gather on axis 0 of a constant by constant ids: a constant. Rows 0..n-1 of a 2-d FLOAT table,
 * in order, remember the table (value.rows_of). */
static bool gather_constants(imp *im, value *data, value *ids) {
    if (data->why || ids->why) return fail(im, "constant '%s': %s", data->why ? data->name : ids->name, data->why ? data->why : ids->why);
    if (!ids->i || ids->dtype == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL) return fail(im, "the indices must be INT64 or INT32");
    if (attr_i(im, "axis", 0) != 0) return fail(im, "axis = %lld of constants is not supported (only 0)", (long long)attr_i(im, "axis", 0));
    if (data->rank < 1 || ids->rank + data->rank - 1 > PN_MAX_RANK) return fail(im, "the data must have 1 to %d dimensions", PN_MAX_RANK);
    int64_t dims[PN_MAX_RANK], row = data->numel / (data->dims[0] ? data->dims[0] : 1);
    if (ids->numel > 0 && row > ((int64_t)1 << 28) / ids->numel) return fail(im, "the gathered constant would hold more than 2^28 values");
    int rank = 0;
    for (int k = 0; k < ids->rank; k++) dims[rank++] = ids->dims[k];
    for (int k = 1; k < data->rank; k++) dims[rank++] = data->dims[k];
    value *v = new_const(im, data->f ? ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT : ONNX__TENSOR_PROTO__DATA_TYPE__INT64, rank, dims);
    bool in_order = data->f && data->rank == 2 && ids->rank == 1;
    for (int64_t k = 0; k < ids->numel; k++) {
        int64_t r = ids->i[k] < 0 ? ids->i[k] + data->dims[0] : ids->i[k];
        if (r < 0 || r >= data->dims[0]) return fail(im, "index %lld is out of range for %lld rows", (long long)ids->i[k], (long long)data->dims[0]);
        in_order &= r == k;
        if (data->f) memcpy(v->f + k * row, data->f + r * row, (size_t)row * sizeof(float));
        else memcpy(v->i + k * row, data->i + r * row, (size_t)row * sizeof(int64_t));
    }
    v->rows_of = in_order ? data : NULL;
    return bind_const(im, v);
}

/* Cast of a constant (to FLOAT, INT64, INT32 or BOOL), or of a computed tensor to its own type. */
static bool op_cast(imp *im) {
    if (!only(im, "to saturate") || !one_output(im)) return false;
    value *x = input(im, 0);
    if (!x) return false;
    int64_t to = attr_i(im, "to", 0);
    bool to_float = to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    bool to_int = to == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || to == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    if (x->node >= 0) {
        pn_dtype t = im->g->nodes[x->node].dtype;
        if (!((to_float && t == PN_F32) || (to_int && t == PN_I32)))
            return fail(im, "to = %s of a computed %s tensor is not supported", type_name((int)to), pn_dtype_name(t));
        bind(im, im->node->output[0], x->node);
        return true;
    }
    if (x->why) return fail(im, "constant '%s': %s", x->name, x->why);
    bool to_bool = to == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
    if (!to_float && !to_int && !to_bool) return fail(im, "to = %s is not supported", type_name((int)to));
    value *v = new_const(im, to_float ? ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT : to_bool ? (int)to : ONNX__TENSOR_PROTO__DATA_TYPE__INT64,
                         x->rank, x->dims);
    for (int64_t k = 0; k < x->numel && to_bool; k++) v->i[k] = x->f ? x->f[k] != 0 : x->i[k] != 0;
    for (int64_t k = 0; k < x->numel && !to_bool; k++) {
        if (x->i && x->i[k] == BATCH_DIM && !to_int) return fail(im, "the batch size is not known when compiling");
        if (to_float) v->f[k] = x->f ? x->f[k] : (float)x->i[k];
        else if (x->i) v->i[k] = x->i[k];
        else if (!(x->f[k] > -9.2e18f && x->f[k] < 9.2e18f)) return fail(im, "the value %g cannot be cast to an integer", (double)x->f[k]);
        else v->i[k] = (int64_t)x->f[k];
    }
    return bind_const(im, v);
}

/* Range of integer scalar constants: start, start + delta, ... before limit. */
static bool op_range(imp *im) {
    if (!only(im, "") || !one_output(im)) return false;
    int64_t a[3];
    for (int k = 0; k < 3; k++) {
        value *c = cst(im, k, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
        if (!c) return false;
        if (c->numel != 1) return fail(im, "input %d must be a scalar", k);
        if (c->i[0] == BATCH_DIM) return fail(im, "a range over the batch is not supported: the batch size is not known when compiling");
        a[k] = c->i[0];
    }
    if (a[2] == 0) return fail(im, "delta must not be 0");
    if (a[0] < -PN_MAX_DIM || a[0] > PN_MAX_DIM || a[1] < -PN_MAX_DIM || a[1] > PN_MAX_DIM)
        return fail(im, "start and limit must lie within [%d, %d]", -PN_MAX_DIM, PN_MAX_DIM);
    int64_t n = (a[1] - a[0] + a[2] - (a[2] > 0 ? 1 : -1)) / a[2];
    if (n < 0) n = 0;
    if (n > (int64_t)1 << 24) return fail(im, "a range of %lld values is not supported", (long long)n);
    value *v = new_const(im, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, &n);
    for (int64_t k = 0; k < n; k++) v->i[k] = a[0] + k * a[2];
    return bind_const(im, v);
}

/* A constant sliced on axes ax[0..n) to [lo[k], hi[k]): a constant (GPT's `mask[:, :, :T, :T]`). */
static bool slice_constant(imp *im, const value *c, const int64_t *lo, const int64_t *hi, const int64_t *ax, int n) {
    int64_t first[PN_MAX_RANK], dims[PN_MAX_RANK];
    for (int k = 0; k < c->rank; k++) first[k] = 0, dims[k] = c->dims[k];
    for (int k = 0; k < n; k++) first[ax[k]] = lo[k], dims[ax[k]] = hi[k] - lo[k];
    value *v = new_const(im, c->dtype, c->rank, dims);
    for (int64_t o = 0; o < v->numel; o++) {
        int64_t rest = o, src = 0, stride = 1;
        for (int k = c->rank - 1; k >= 0; k--) {
            src += (first[k] + rest % dims[k]) * stride;
            rest /= dims[k];
            stride *= c->dims[k];
        }
        if (c->f) v->f[o] = c->f[src];
        else v->i[o] = c->i[src];
    }
    return bind_const(im, v);
}

/* Add, Sub, Mul or Div (op '+', '-', '*', '/') of two constants of one shape, or of one and a scalar:
 * a constant (shape arithmetic such as `C // heads`); integers divide as C does, as ONNX says.
 * False (and no error) when an input is computed. */
static bool fold_arith(imp *im, char op) {
    const Onnx__NodeProto *nd = im->node;
    value *a = nd->n_input == 2 ? pn_strmap_get(&im->values, S(nd->input[0])) : NULL;
    value *b = a ? pn_strmap_get(&im->values, S(nd->input[1])) : NULL;
    if (!b || a->node >= 0 || b->node >= 0 || nd->n_attribute) return false;
    if (!one_output(im)) return true;
    if (a->why || b->why || (!a->f && !a->i) || (!b->f && !b->i))
        return fail(im, "constant '%s': %s", a->why ? a->name : b->name, a->why ? a->why : b->why ? b->why : "it holds no values");
    if ((a->f != NULL) != (b->f != NULL)) return fail(im, "the constants are of different types");
    const value *big = a->numel >= b->numel ? a : b;
    bool same = a->rank == b->rank && a->numel == b->numel;
    for (int k = 0; same && k < a->rank; k++) same = a->dims[k] == b->dims[k];
    if (!same && a->numel != 1 && b->numel != 1) return fail(im, "only constants of one shape, or one and a scalar, are supported");
    value *v = new_const(im, a->f ? ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT : ONNX__TENSOR_PROTO__DATA_TYPE__INT64, big->rank, big->dims);
    for (int64_t k = 0; k < v->numel; k++) {
        int64_t i = a->numel == 1 ? 0 : k, j = b->numel == 1 ? 0 : k;
        if (a->f) {
            float x = a->f[i], y = b->f[j];
            v->f[k] = op == '+' ? x + y : op == '-' ? x - y : op == '*' ? x * y : x / y;
            continue;
        }
        int64_t x = a->i[i], y = b->i[j], r = 0;
        if (x == BATCH_DIM || y == BATCH_DIM) return fail(im, "arithmetic on the batch size is not supported: it is not known when compiling");
        bool over = op == '+' ? __builtin_add_overflow(x, y, &r) : op == '-' ? __builtin_sub_overflow(x, y, &r)
                    : op == '*' ? __builtin_mul_overflow(x, y, &r) : (y == 0 || (x == INT64_MIN && y == -1));
        if (over) return fail(im, "the integer %s of %lld and %lld is not defined", op == '/' ? "quotient" : "result", (long long)x, (long long)y);
        v->i[k] = op == '/' ? x / y : r;
    }
    return bind_const(im, v);
}

/* Equal of two constants of one shape, or of a constant and a scalar constant: a BOOL constant
 * (GPT's `mask == 0`, before a Where). */
static bool op_equal(imp *im) {
    if (!only(im, "") || !one_output(im)) return false;
    value *a = input(im, 0), *b = a ? input(im, 1) : NULL;
    if (!b) return false;
    if (a->node >= 0 || b->node >= 0) return fail(im, "Equal of computed tensors is not supported (only of constants)");
    if (a->why || b->why) return fail(im, "constant '%s': %s", a->why ? a->name : b->name, a->why ? a->why : b->why);
    if (b->numel != 1 && a->numel == 1) {
        value *t = a;
        a = b, b = t;
    }
    bool same = a->rank == b->rank && a->numel == b->numel;
    for (int k = 0; same && k < a->rank; k++) same = a->dims[k] == b->dims[k];
    if (!same && b->numel != 1) return fail(im, "only constants of one shape, or one and a scalar, are supported");
    value *v = new_const(im, ONNX__TENSOR_PROTO__DATA_TYPE__BOOL, a->rank, a->dims);
    for (int64_t k = 0; k < a->numel; k++) {
        int64_t j = b->numel == 1 ? 0 : k;
        double x = a->f ? a->f[k] : (double)a->i[k], y = b->f ? b->f[j] : (double)b->i[j];
        v->i[k] = x == y;
    }
    return bind_const(im, v);
}

/* Unsqueeze of a constant (axes an attribute before opset 13, an input from 13): a constant. */
static bool op_unsqueeze(imp *im) {
    if (!only(im, im->opset < 13 ? "axes" : "") || !one_output(im)) return false;
    value *x = input(im, 0);
    if (!x) return false;
    if (x->node >= 0) return fail(im, "Unsqueeze of a computed tensor is not supported (only of constants)");
    if (x->why) return fail(im, "constant '%s': %s", x->name, x->why);
    int64_t axes[PN_MAX_RANK];
    int n = -1;
    if (im->opset < 13) {
        n = attr_ints(im, "axes", axes, PN_MAX_RANK);
    } else {
        value *c = cst(im, 1, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
        if (!c) return false;
        if (c->numel <= PN_MAX_RANK) {
            n = (int)c->numel;
            for (int k = 0; k < n; k++) axes[k] = c->i[k];
        }
    }
    int r = x->rank + n;
    if (n < 0 || r > PN_MAX_RANK) return fail(im, "axes must name at most %d new axes", PN_MAX_RANK - x->rank);
    bool one[PN_MAX_RANK] = {false};
    for (int k = 0; k < n; k++) {
        int64_t a = axes[k] < 0 ? axes[k] + r : axes[k];
        if (a < 0 || a >= r || one[a]) return fail(im, "axis %lld is out of range or repeated", (long long)axes[k]);
        one[a] = true;
    }
    int64_t dims[PN_MAX_RANK];
    for (int k = 0, j = 0; k < r; k++) dims[k] = one[k] ? 1 : x->dims[j++];
    value *v = new_const(im, x->dtype, r, dims);
    if (x->f) memcpy(v->f, x->f, (size_t)x->numel * sizeof(float));
    else memcpy(v->i, x->i, (size_t)x->numel * sizeof(int64_t));
    return bind_const(im, v);
}

/* Concat of 1-d integer constants (a shape: `view(B, T, C)` is Shape, Gather, Unsqueeze, Concat). */
static bool concat_constants(imp *im) {
    int64_t dims[1] = {0};
    int nin = (int)im->node->n_input;
    for (int k = 0; k < nin; k++) {
        value *c = cst(im, k, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
        if (!c) return false;
        if (c->rank != 1) return fail(im, "only 1-d integer constants are concatenated");
        dims[0] += c->numel;
    }
    if (dims[0] > PN_MAX_RANK * 8) return fail(im, "a constant of %lld values is not supported", (long long)dims[0]);
    value *v = new_const(im, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, dims);
    int64_t at = 0;
    for (int k = 0; k < nin; k++) {
        value *c = pn_strmap_get(&im->values, im->node->input[k]);
        memcpy(v->i + at, c->i, (size_t)c->numel * sizeof(int64_t));
        at += c->numel;
    }
    return bind_const(im, v);
}

/* Slice of a computed tensor by constant starts, ends, axes (default: the first ones) and steps 1:
 * one `slice` per axis that it narrows. Out-of-range ends are clamped, as ONNX says. */
static bool op_slice(imp *im) {
    bool attrs = im->opset < 10;
    if (!only(im, attrs ? "axes ends starts" : "") || !one_output(im)) return false;
    value *xv = input(im, 0);
    if (!xv) return false;
    if (xv->node < 0 && xv->why) return fail(im, "constant '%s': %s", xv->name, xv->why);
    int x = xv->node;
    int64_t v[4][PN_MAX_RANK];
    int n[4] = {-1, -1, -1, -1};
    static const char *const names[] = {"starts", "ends", "axes", "steps"};
    for (int k = 0; k < 4; k++) {
        if (attrs) {
            n[k] = k < 3 ? attr_ints(im, names[k], v[k], PN_MAX_RANK) : -1;
            if (n[k] < 0 && attr(im, names[k])) return fail(im, "%s has too many entries", names[k]);
            continue;
        }
        if (!has_input(im, 1 + k)) continue;
        value *c = cst(im, 1 + k, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
        if (!c) return false;
        if (c->rank != 1 || c->numel > PN_MAX_RANK) return fail(im, "%s must be a 1-d constant of at most %d values", names[k], PN_MAX_RANK);
        n[k] = (int)c->numel;
        for (int j = 0; j < n[k]; j++) v[k][j] = c->i[j];
    }
    if (n[0] < 0 || n[1] != n[0] || (n[2] >= 0 && n[2] != n[0]) || (n[3] >= 0 && n[3] != n[0]))
        return fail(im, "starts, ends, axes and steps must be given with as many values");
    int y = x, todo = 0, done = 0;
    unsigned seen = 0;
    pn_shape cs = {.rank = xv->rank}; /* a constant's shape */
    for (int k = 0; k < xv->rank && x < 0; k++) cs.d[k] = xv->dims[k];
    const pn_shape *s = x >= 0 ? &im->g->nodes[x].shape : &cs;
    int64_t lo[PN_MAX_RANK], hi[PN_MAX_RANK], ax[PN_MAX_RANK];
    for (int k = 0; k < n[0]; k++) {
        int64_t a = n[2] >= 0 ? v[2][k] : k;
        if (a < 0) a += s->rank;
        if (a < 0 || a >= s->rank) return fail(im, "axis %lld is out of range", (long long)(n[2] >= 0 ? v[2][k] : k));
        if (n[3] >= 0 && v[3][k] != 1) return fail(im, "steps = %lld is not supported (only 1)", (long long)v[3][k]);
        if (seen & (1u << a)) return fail(im, "axis %lld is given twice", (long long)a);
        seen |= 1u << a;
        int64_t d = s->d[a], b = v[0][k], e = v[1][k];
        if (d == PN_BATCH) {
            if ((b == 0 || b <= -PN_MAX_DIM) && e >= PN_MAX_DIM) continue; /* the whole batch */
            return fail(im, "slicing the batch axis is not supported");
        }
        b = b < 0 ? b + d : b, e = e < 0 ? e + d : e;
        b = b < 0 ? 0 : b > d ? d : b, e = e < 0 ? 0 : e > d ? d : e;
        if (e <= b) return fail(im, "the slice of axis %lld would be empty", (long long)a);
        if (b == 0 && e == d) continue;
        lo[todo] = b, hi[todo] = e, ax[todo] = a;
        todo++;
    }
    if (x < 0) return slice_constant(im, xv, lo, hi, ax, todo);
    for (int k = 0; k < todo; k++) {
        char *name = done + 1 < todo ? pn_xasprintf("%s_%d", im->node->output[0], done + 1) : NULL;
        pn_node sl = {.name = ident(im, name ? name : im->node->output[0]), .op = PN_OP_SLICE};
        free(name);
        sl.ia[PN_AXIS] = ax[k], sl.ia[PN_SLICE_START] = lo[k], sl.ia[PN_SLICE_END] = hi[k];
        if ((y = add(im, &sl, (int32_t[]){y}, 1, NULL, 0)) < 0) return false;
        done++;
    }
    bind(im, im->node->output[0], y);
    return true;
}

/* ---- patterns of attention: learned positions, the causal mask -------------------------------- */

/* Add of a computed x [batch, ..., T, D] and rows 0..T-1 of an embedding table [vocab, D] (what
 * PyTorch exports for `x + pos(arange(T))`): x + embedding(positions(x, axis = rank - 2)), the
 * table the embedding's weight. False (and no error) when the Add is not that. */
static bool positions_pattern(imp *im) {
    const Onnx__NodeProto *nd = im->node;
    if (nd->n_input != 2 || nd->n_output != 1 || nd->n_attribute) return false;
    value *a = pn_strmap_get(&im->values, S(nd->input[0])), *b = pn_strmap_get(&im->values, S(nd->input[1]));
    if (!a || !b) return false;
    bool first = a->node < 0;
    value *rows = first ? a : b, *x = first ? b : a;
    if (x->node < 0 || !rows->rows_of) return false;
    const pn_shape *s = &im->g->nodes[x->node].shape;
    int r = s->rank;
    if (!pn_shape_batched(s) || r < 3 || s->d[r - 2] != rows->dims[0] || s->d[r - 1] != rows->dims[1] || im->g->nodes[x->node].dtype != PN_F32)
        return false;
    const value *table = rows->rows_of;
    pn_node p = {.name = layer_name_with(im, table, "_positions"), .op = PN_OP_POSITIONS};
    p.ia[PN_AXIS] = r - 2;
    int pos = add(im, &p, (int32_t[]){x->node}, 1, NULL, 0);
    if (pos < 0) return true;
    pn_node e = {.name = layer_name(im, table), .op = PN_OP_EMBEDDING};
    e.ia[PN_EMB_VOCAB] = table->dims[0];
    e.ia[PN_EMB_DIM] = table->dims[1];
    int emb = add(im, &e, (int32_t[]){pos}, 1, NULL, 0);
    if (emb < 0) return true;
    weight(im, emb, 0, table->f);
    pn_node sum = plain(im, PN_OP_ADD);
    int id = add(im, &sum, first ? (int32_t[]){emb, x->node} : (int32_t[]){x->node, emb}, 2, NULL, 0);
    if (id >= 0) bind(im, nd->output[0], id);
    return true;
}

/* A mask value that removes an entry from a softmax: -inf, or at most -1e4 (exp underflows). */
static bool masks(double v) { return v <= -1e4; }

/* Constant m, over the scores s [batch, ..., T, S] (m's leading dimensions 1), is the causal mask:
 * kind 0 adds 0 where j <= i and a masking value where j > i; kind 1 is true where j > i (masked_fill);
 * kind 2 true where j <= i (Where(m, scores, -inf)). */
static bool is_causal(const value *m, const pn_shape *s, int kind) {
    int r = s->rank;
    if (m->why || m->rank < 2 || (kind == 0 ? !m->f : !m->i)) return false; /* leading dimensions 1: numel says */
    int64_t T = s->d[r - 2], S2 = s->d[r - 1];
    if (m->dims[m->rank - 2] != T || m->dims[m->rank - 1] != S2 || m->numel != T * S2) return false;
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < S2; j++) {
            int64_t k = i * S2 + j;
            bool masked = kind == 0 ? masks(m->f[k]) : (m->i[k] != 0) == (kind == 1);
            if (masked != (j > i) || (kind == 0 && !masked && m->f[k] != 0)) return false;
        }
    return true;
}

/* The causal mask before a softmax over the last axis, as PyTorch exports it: Add(scores, M) with M
 * a constant of 0 and -inf (or a large negative value), or Where(mask, -inf, scores) of a boolean
 * constant (masked_fill), then Softmax: one causal_softmax node, at the Add or Where, the Softmax
 * absorbed. False (and no error) when it does not match. */
static bool causal_pattern(imp *im, size_t index) {
    const Onnx__NodeProto *nd = im->node;
    bool where = strcmp(S(nd->op_type), "Where") == 0;
    if (nd->n_input != (where ? 3u : 2u) || nd->n_output != 1 || nd->n_attribute) return false;
    value *in[3] = {NULL};
    for (size_t k = 0; k < nd->n_input; k++)
        if (!(in[k] = pn_strmap_get(&im->values, S(nd->input[k])))) return false;
    const value *scores = NULL, *mask = NULL;
    int kind = 0;
    double v;
    if (!where) {
        scores = in[0]->node >= 0 ? in[0] : in[1];
        mask = in[0]->node >= 0 ? in[1] : in[0];
    } else if (in[2]->node >= 0 && scalar_is(im, nd->input[1], 0.0 / 0.0, &v) && masks(v)) {
        scores = in[2], mask = in[0], kind = 1;
    } else if (in[1]->node >= 0 && scalar_is(im, nd->input[2], 0.0 / 0.0, &v) && masks(v)) {
        scores = in[1], mask = in[0], kind = 2;
    }
    if (!scores || scores->node < 0 || mask->node >= 0) return false;
    const pn_shape *s = &im->g->nodes[scores->node].shape;
    if (s->rank < 2 + pn_shape_batched(s) || !is_causal(mask, s, kind)) return false;
    int j = next_op(im, index, nd->output[0], "Softmax");
    if (j < 0) return false;
    const Onnx__NodeProto *sm = im->gp->node[j];
    int64_t axis = im->opset >= 13 ? -1 : 1;
    for (size_t k = 0; k < sm->n_attribute; k++) {
        if (strcmp(S(sm->attribute[k]->name), "axis") != 0) return false;
        axis = sm->attribute[k]->i;
    }
    if (axis < 0) axis += s->rank;
    if (axis != s->rank - 1) return false;
    pn_node n = {.name = ident(im, sm->output[0]), .op = PN_OP_CAUSAL_SOFTMAX};
    int id = add(im, &n, (int32_t[]){scores->node}, 1, NULL, 0);
    if (id < 0) return true;
    im->absorbed[j] = true;
    bind(im, sm->output[0], id);
    return true;
}

/* MatMul: A B with B a 2-d constant is a dense layer (its bias the vector a lone Add then adds); two
 * computed tensors are a matmul. */
static bool op_matmul(imp *im, size_t index) {
    if (!only(im, "") || !one_output(im)) return false;
    int x = act(im, 0);
    value *b = x < 0 ? NULL : input(im, 1);
    if (!b) return false;
    if (b->node >= 0) {
        pn_node n = plain(im, PN_OP_MATMUL);
        int id = add(im, &n, (int32_t[]){x, b->node}, 2, NULL, 0);
        if (id >= 0) bind(im, im->node->output[0], id);
        return id >= 0;
    }
    if (!(b = cst(im, 1, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT))) return false;
    if (b->rank != 2) return fail(im, "a constant B must have 2 dimensions");
    int64_t K = b->dims[0], N = b->dims[1];
    float *w = pn_xmalloc((size_t)(N * K) * sizeof(float) + 1);
    for (int64_t u = 0; u < N; u++)
        for (int64_t k = 0; k < K; k++) w[u * K + k] = b->f[k * N + u];
    const float *bias = NULL;
    const value *named = b;
    int j = sole_reader(im, index, im->node->output[0]);
    const Onnx__NodeProto *add_node = j >= 0 ? im->gp->node[j] : NULL;
    if (add_node && strcmp(S(add_node->op_type), "Add") == 0 && add_node->n_input == 2 && add_node->n_output == 1 &&
        add_node->n_attribute == 0 && (!add_node->domain || !*add_node->domain)) {
        int other = strcmp(S(add_node->input[0]), im->node->output[0]) == 0 ? 1 : 0;
        value *c = pn_strmap_get(&im->values, S(add_node->input[other]));
        if (c && c->node < 0 && c->f && c->rank == 1 && c->numel == N) {
            bias = c->f;
            im->absorbed[j] = true;
            /* PyTorch's MatMul weight is a transposed copy ("onnx::MatMul_74"); its bias keeps "q.bias". */
            if (!stem_len(S(b->name), ".weight") && stem_len(S(c->name), ".bias")) named = c;
        }
    }
    bool ok = dense(im, x, named, N, K, w, bias);
    if (ok && bias) bind(im, add_node->output[0], im->g->nnodes - 1);
    free(w);
    return ok;
}

/* Add, Sub, Mul of two computed tensors, or of one and a scalar constant. */
static bool op_binary(imp *im, pn_op op) {
    if (!only(im, "") || !one_output(im)) return false;
    int32_t in[2];
    for (int k = 0; k < 2; k++) {
        value *v = input(im, k);
        if (!v) return false;
        if (v->node >= 0) {
            in[k] = v->node;
            continue;
        }
        if (!(v = cst(im, k, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT))) return false;
        if (v->numel != 1) return fail(im, "input %d ('%s') is a constant tensor of %lld elements; only scalar constants are supported",
                                       k, v->name, (long long)v->numel);
        pn_node c = {.name = ident(im, v->name), .op = PN_OP_CONST};
        c.fa[PN_FA_VALUE] = v->f[0];
        if ((in[k] = add(im, &c, NULL, 0, NULL, 0)) < 0) return false;
    }
    if (im->g->nodes[in[0]].op == PN_OP_CONST && im->g->nodes[in[1]].op == PN_OP_CONST)
        return fail(im, "both inputs are constants");
    pn_node n = plain(im, op);
    int id = add(im, &n, in, 2, NULL, 0);
    if (id >= 0) bind(im, im->node->output[0], id);
    return id >= 0;
}

/* Div of a computed tensor by a scalar constant c: a multiplication by 1 / c. */
static bool op_div(imp *im) {
    if (!only(im, "") || !one_output(im)) return false;
    int x = act(im, 0);
    value *c = x < 0 ? NULL : input(im, 1);
    if (!c) return false;
    if (c->node >= 0) return fail(im, "a computed divisor is not supported (only a scalar constant)");
    if (!(c = cst(im, 1, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT))) return false;
    if (c->numel != 1 || c->f[0] == 0) return fail(im, "the divisor must be a non-zero scalar constant");
    int k = step(im, PN_OP_CONST, "reciprocal", NULL, 0, NULL, 0, 1.0 / c->f[0]);
    int id = k < 0 ? -1 : step(im, PN_OP_MUL, NULL, (int32_t[]){x, k}, 2, NULL, 0, 0);
    if (id >= 0) bind(im, im->node->output[0], id);
    return id >= 0;
}

static bool op_transpose(imp *im) {
    if (!only(im, "perm") || !one_output(im)) return false;
    int x = act(im, 0);
    if (x < 0) return false;
    int r = im->g->nodes[x].shape.rank;
    int64_t perm[PN_MAX_RANK];
    int n = attr_ints(im, "perm", perm, PN_MAX_RANK);
    if (n < 0 && attr(im, "perm")) return fail(im, "perm has too many entries");
    if (n < 0)
        for (n = 0; n < r; n++) perm[n] = r - 1 - n; /* the default reverses the axes */
    int id = step(im, PN_OP_TRANSPOSE, NULL, (int32_t[]){x}, 1, perm, n, 0);
    if (id >= 0) bind(im, im->node->output[0], id);
    return id >= 0;
}

static bool op_concat(imp *im) {
    if (!only(im, "axis") || !one_output(im)) return false;
    if (!attr(im, "axis")) return fail(im, "axis is missing");
    int32_t in[MAX_IN];
    int nin = (int)im->node->n_input;
    if (nin < 1 || nin > MAX_IN) return fail(im, "%d inputs are not supported (1 to %d)", nin, MAX_IN);
    bool constants = true;
    for (int k = 0; k < nin && constants; k++) {
        value *c = pn_strmap_get(&im->values, S(im->node->input[k]));
        constants = c && c->node < 0;
    }
    if (constants) return concat_constants(im);
    for (int k = 0; k < nin; k++)
        if ((in[k] = act(im, k)) < 0) return false;
    pn_node n = plain(im, PN_OP_CONCAT);
    n.ia[PN_AXIS] = attr_i(im, "axis", 0);
    int id = add(im, &n, in, nin, NULL, 0);
    if (id >= 0) bind(im, im->node->output[0], id);
    return id >= 0;
}

/* LayerNormalization (opset 17) over the last axis: Scale and B constant vectors. */
static bool op_layernorm(imp *im) {
    if (!only(im, "axis epsilon stash_type") || !one_output(im)) return false;
    int x = act(im, 0);
    value *scale = x < 0 ? NULL : cst(im, 1, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT), *b = NULL;
    if (!scale) return false;
    const pn_shape *s = &im->g->nodes[x].shape;
    int64_t axis = attr_i(im, "axis", -1);
    if (axis != -1 && axis != s->rank - 1) return fail(im, "axis = %lld is not supported (only the last axis)", (long long)axis);
    if (attr_i(im, "stash_type", 1) != 1) return fail(im, "stash_type = %lld is not supported", (long long)attr_i(im, "stash_type", 1));
    if (has_input(im, 2) && !(b = cst(im, 2, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT))) return false;
    int64_t D = s->rank ? s->d[s->rank - 1] : 0;
    if (!is_vector(scale, D) || (b && !is_vector(b, D))) return fail(im, "Scale and B must be vectors of %lld elements", (long long)D);
    pn_node n = {.name = layer_name(im, scale), .op = PN_OP_LAYERNORM};
    n.fa[PN_FA_VALUE] = attr_f(im, "epsilon", 1e-5);
    int id = add(im, &n, (int32_t[]){x}, 1, NULL, 0);
    if (id < 0) return false;
    float *zero = b ? NULL : pn_xcalloc((size_t)D + 1, sizeof(float));
    weight(im, id, 0, scale->f);
    weight(im, id, 1, b ? b->f : zero);
    free(zero);
    bind(im, im->node->output[0], id);
    return true;
}

/* Relu, Sigmoid, Tanh, LeakyRelu: x in, one op out. */
static bool op_unary(imp *im, pn_op op, const char *attrs) {
    if (!only(im, attrs) || !one_output(im)) return false;
    int x = act(im, 0);
    if (x < 0) return false;
    pn_node n = plain(im, op);
    if (op == PN_OP_LEAKY_RELU) n.fa[PN_FA_VALUE] = attr_f(im, "alpha", 0.01);
    int id = add(im, &n, (int32_t[]){x}, 1, NULL, 0);
    if (id >= 0) bind(im, im->node->output[0], id);
    return id >= 0;
}

/* Identity, and Dropout at inference: the output is the input. */
static bool op_alias(imp *im, bool dropout) {
    if (!only(im, dropout ? "ratio is_test seed" : "") || !one_output(im)) return false;
    if (dropout && has_input(im, 2)) {
        value *t = input(im, 2);
        if (!t) return false;
        if (t->node >= 0 || (t->i && t->i[0]) || (!t->i && t->numel))
            return fail(im, "training_mode must be a constant false");
    }
    value *in = input(im, 0);
    if (in && in->node < 0 && !dropout) { /* PyTorch shares equal initializers through Identity */
        value *v = new_value(im, im->node->output[0]);
        const char *name = v->name;
        *v = *in;
        v->name = name;
        pn_strmap_put(&im->values, v->name, v);
        return true;
    }
    int x = in ? act(im, 0) : -1;
    if (x >= 0) bind(im, im->node->output[0], x);
    return x >= 0;
}

/* ---- the ops of issue 18: Pad, Elu, Softplus, PRelu ------------------------------------------ */

/* Pad, mode constant with value 0: pads nothing (torch.onnx.export writes one before each
 * AveragePool), the output is the input; pads only the two spatial axes of a 4-d input, a pad
 * node. The pads come from the attribute before opset 11, from input 1 on (and input 3, the axes
 * they apply to, at opset 18); the value from the attribute, or input 2. */
static bool op_pad(imp *im) {
    if (!only(im, "mode pads value") || !one_output(im)) return false;
    if (!attr_is(im, "mode", "constant", true)) return fail(im, "only mode = constant is supported");
    int x = act(im, 0);
    if (x < 0) return false;
    const pn_shape *s = &im->g->nodes[x].shape;
    int r = s->rank;
    int64_t p[2 * PN_MAX_RANK] = {0}, given[2 * PN_MAX_RANK], axes[PN_MAX_RANK];
    int n = attr_ints(im, "pads", given, 2 * PN_MAX_RANK), na = r;
    double fill = attr_f(im, "value", 0.0);
    for (int k = 0; k < r; k++) axes[k] = k;
    if (im->opset >= 11) {
        value *v = cst(im, 1, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
        if (!v) return false;
        if (v->numel > 2 * PN_MAX_RANK) return fail(im, "pads has %lld entries", (long long)v->numel);
        n = (int)v->numel;
        if (n) memcpy(given, v->i, sizeof(int64_t) * (size_t)n);
        if (has_input(im, 2)) {
            value *c = input(im, 2);
            if (!c) return false;
            if (c->node >= 0 || c->numel != 1 || (!c->f && !c->i)) return fail(im, "constant_value must be a scalar constant");
            fill = c->f ? c->f[0] : (double)c->i[0];
        }
        if (has_input(im, 3)) {
            value *a = cst(im, 3, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
            if (!a) return false;
            if (a->numel > r) return fail(im, "axes has %lld entries for a %d-d input", (long long)a->numel, r);
            na = (int)a->numel;
            for (int k = 0; k < na; k++) {
                axes[k] = a->i[k] < 0 ? a->i[k] + r : a->i[k];
                if (axes[k] < 0 || axes[k] >= r) return fail(im, "axis %lld is out of range", (long long)a->i[k]);
            }
        }
    }
    if (n < 0) n = 0;
    if (n != 2 * na) return fail(im, "pads has %d entries for %d axes", n, na);
    for (int k = 0; k < na; k++) p[axes[k]] = given[k], p[r + axes[k]] = given[na + k];
    bool zero = true;
    for (int k = 0; k < 2 * r; k++) zero &= p[k] == 0;
    if (zero) {
        bind(im, im->node->output[0], x);
        return true;
    }
    if (fill != 0) return fail(im, "value = %g is not supported (only zero padding)", fill);
    for (int k = 0; k < 2 * r; k++)
        if (p[k] < 0) return fail(im, "negative pads (cropping) are not supported");
    if (r != 4 || p[0] || p[1] || p[r] || p[r + 1])
        return fail(im, "padding axes other than the two spatial axes of a 4-d input is not supported");
    int64_t sides[4] = {p[2], p[r + 2], p[3], p[r + 3]}; /* top, bottom, left, right */
    pn_node node = plain(im, PN_OP_PAD);
    int id = add(im, &node, (int32_t[]){x}, 1, sides, 4);
    if (id >= 0) bind(im, im->node->output[0], id);
    return id >= 0;
}

/* ---- constant folding: the shape arithmetic of older exports --------------------------------- */
/* torch.onnx.export (1.13) computes a ZeroPad2d's pads with ConstantOfShape, Concat, Reshape,
 * Slice, Transpose and Cast of constants: such a node whose inputs are all constants (but Cast,
 * which op_cast folds) is evaluated here into a constant, which the node reading it (Pad) then
 * takes as given. */
enum { FOLD_MAX_ELEMS = 1 << 20 };

static bool all_constant(const imp *im) {
    if (im->node->n_input == 0) return false;
    for (size_t k = 0; k < im->node->n_input; k++) {
        if (!has_input(im, (int)k)) continue;
        const value *v = pn_strmap_get(&im->values, im->node->input[k]);
        if (!v || v->node >= 0) return false;
    }
    return true;
}

/* Input k as a readable constant of numbers (FLOAT, INT64 or INT32); NULL after an error. */
static value *fold_in(imp *im, int k) {
    value *v = input(im, k);
    if (!v) return NULL;
    if (v->why) return fail(im, "constant '%s': %s", v->name, v->why), NULL;
    if (!v->f && !v->i) return fail(im, "constant '%s' is %s", v->name, type_name(v->dtype)), NULL;
    return v;
}

/* A new constant for output 0 of the given dims, of like's element type (ints or floats). */
static value *fold_out(imp *im, const value *like, int rank, const int64_t *dims) {
    value *v = new_value(im, im->node->output[0]);
    v->dtype = like->dtype;
    v->rank = rank;
    v->numel = 1;
    for (int k = 0; k < rank; k++) {
        v->dims[k] = dims[k];
        if (dims[k] < 0 || __builtin_mul_overflow(v->numel, dims[k], &v->numel) || v->numel > FOLD_MAX_ELEMS)
            return fail(im, "the folded constant is too large"), NULL;
    }
    if (like->i) v->i = pn_arena_alloc(&im->arena, (size_t)v->numel * sizeof(int64_t) + 1);
    else v->f = pn_arena_alloc(&im->arena, (size_t)v->numel * sizeof(float) + 1);
    return v;
}

static void fold_copy(value *dst, int64_t di, const value *src, int64_t si) {
    if (dst->i) dst->i[di] = src->i ? src->i[si] : (int64_t)src->f[si];
    else dst->f[di] = src->f ? src->f[si] : (float)src->i[si];
}

/* Row-major strides of v; off of multi-index idx. */
static void strides_of(const value *v, int64_t *st) {
    int64_t s = 1;
    for (int k = v->rank - 1; k >= 0; k--) st[k] = s, s *= v->dims[k];
}

static void unravel_dims(int64_t e, const int64_t *dims, int rank, int64_t *idx) {
    for (int k = rank - 1; k >= 0; k--) {
        idx[k] = dims[k] ? e % dims[k] : 0;
        e = dims[k] ? e / dims[k] : 0;
    }
}

static bool fold_constant_of_shape(imp *im) {
    value *shape = cst(im, 0, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
    if (!shape) return false;
    if (shape->numel > PN_MAX_RANK) return fail(im, "the shape has %lld entries", (long long)shape->numel);
    const Onnx__AttributeProto *a = attr(im, "value");
    value zero = {.dtype = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, .numel = 1, .f = (float[]){0}}, *fillv = &zero;
    if (a && a->t && !(fillv = read_tensor(im, a->t, "value"))) return false;
    if (fillv->why || (!fillv->f && !fillv->i) || fillv->numel != 1) return fail(im, "value must be one number");
    value *out = fold_out(im, fillv, (int)shape->numel, shape->i);
    if (!out) return false;
    for (int64_t e = 0; e < out->numel; e++) fold_copy(out, e, fillv, 0);
    pn_strmap_put(&im->values, out->name, out);
    return true;
}

static bool fold_concat(imp *im) {
    int nin = (int)im->node->n_input;
    value *in[MAX_IN];
    if (nin < 1 || nin > MAX_IN) return fail(im, "%d inputs are not supported", nin);
    for (int k = 0; k < nin; k++)
        if (!(in[k] = fold_in(im, k))) return false;
    int r = in[0]->rank;
    int64_t axis = attr_i(im, "axis", 0);
    if (axis < 0) axis += r;
    if (axis < 0 || axis >= r) return fail(im, "axis = %lld is out of range", (long long)attr_i(im, "axis", 0));
    int64_t dims[PN_MAX_RANK];
    memcpy(dims, in[0]->dims, sizeof dims);
    dims[axis] = 0;
    for (int k = 0; k < nin; k++) {
        if (in[k]->rank != r || !in[k]->i != !in[0]->i) return fail(im, "the inputs differ in rank or type");
        for (int d = 0; d < r; d++)
            if (d != axis && in[k]->dims[d] != in[0]->dims[d]) return fail(im, "the inputs differ in shape");
        dims[axis] += in[k]->dims[axis];
    }
    value *out = fold_out(im, in[0], r, dims);
    if (!out) return false;
    int64_t idx[PN_MAX_RANK], st[PN_MAX_RANK];
    for (int64_t e = 0; e < out->numel; e++) {
        unravel_dims(e, dims, r, idx);
        int k = 0;
        while (idx[axis] >= in[k]->dims[axis]) idx[axis] -= in[k++]->dims[axis];
        strides_of(in[k], st);
        int64_t off = 0;
        for (int d = 0; d < r; d++) off += idx[d] * st[d];
        fold_copy(out, e, in[k], off);
    }
    pn_strmap_put(&im->values, out->name, out);
    return true;
}

static bool fold_reshape(imp *im) {
    value *x = fold_in(im, 0), *shape = x ? cst(im, 1, ONNX__TENSOR_PROTO__DATA_TYPE__INT64) : NULL;
    if (!shape) return false;
    if (shape->numel > PN_MAX_RANK) return fail(im, "the shape has %lld entries", (long long)shape->numel);
    int64_t dims[PN_MAX_RANK], known = 1;
    int infer = -1, r = (int)shape->numel;
    for (int k = 0; k < r; k++) {
        dims[k] = shape->i[k] == 0 && k < x->rank ? x->dims[k] : shape->i[k];
        if (dims[k] == -1 && infer < 0) infer = k;
        else if (dims[k] < 0 || __builtin_mul_overflow(known, dims[k], &known)) return fail(im, "the shape is invalid");
    }
    if (infer >= 0) dims[infer] = known ? x->numel / known : 0;
    value *out = fold_out(im, x, r, dims);
    if (!out) return false;
    if (out->numel != x->numel) return fail(im, "cannot reshape %lld elements into %lld", (long long)x->numel, (long long)out->numel);
    for (int64_t e = 0; e < out->numel; e++) fold_copy(out, e, x, e);
    pn_strmap_put(&im->values, out->name, out);
    return true;
}

/* Slice with ONNX's clamping: starts, ends, axes, steps from inputs 1-4 (attributes before opset 10). */
static bool fold_slice(imp *im) {
    value *x = fold_in(im, 0);
    if (!x) return false;
    int r = x->rank, n;
    int64_t starts[PN_MAX_RANK], ends[PN_MAX_RANK], axes[PN_MAX_RANK], steps[PN_MAX_RANK];
    if (im->opset < 10) {
        n = attr_ints(im, "starts", starts, PN_MAX_RANK);
        if (n < 0 || attr_ints(im, "ends", ends, PN_MAX_RANK) != n) return fail(im, "starts and ends must match");
        if (attr(im, "axes") && attr_ints(im, "axes", axes, PN_MAX_RANK) != n) return fail(im, "axes must match starts");
        if (!attr(im, "axes"))
            for (int k = 0; k < n; k++) axes[k] = k;
        for (int k = 0; k < n; k++) steps[k] = 1;
    } else {
        value *v[4] = {NULL};
        for (int k = 0; k < 4; k++)
            if ((k < 2 || has_input(im, k + 1)) && !(v[k] = cst(im, k + 1, ONNX__TENSOR_PROTO__DATA_TYPE__INT64))) return false;
        n = (int)v[0]->numel;
        if (n > PN_MAX_RANK || v[1]->numel != n || (v[2] && v[2]->numel != n) || (v[3] && v[3]->numel != n))
            return fail(im, "starts, ends, axes and steps must have the same length");
        for (int k = 0; k < n; k++) {
            starts[k] = v[0]->i[k], ends[k] = v[1]->i[k];
            axes[k] = v[2] ? v[2]->i[k] : k;
            steps[k] = v[3] ? v[3]->i[k] : 1;
        }
    }
    int64_t first[PN_MAX_RANK], step[PN_MAX_RANK], dims[PN_MAX_RANK];
    for (int d = 0; d < r; d++) first[d] = 0, step[d] = 1, dims[d] = x->dims[d];
    for (int k = 0; k < n; k++) {
        int64_t a = axes[k] < 0 ? axes[k] + r : axes[k], dim, s = steps[k], b = starts[k], e = ends[k];
        if (a < 0 || a >= r || s == 0) return fail(im, "axis %lld or step %lld is invalid", (long long)axes[k], (long long)s);
        dim = x->dims[a];
        if (b < 0) b += dim;
        if (e < 0) e += dim;
        if (s > 0) {
            b = b < 0 ? 0 : b > dim ? dim : b;
            e = e < 0 ? 0 : e > dim ? dim : e;
            dims[a] = e > b ? (e - b + s - 1) / s : 0;
        } else {
            b = b < 0 ? 0 : b > dim - 1 ? dim - 1 : b;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
            dims[a] = b > e ? (b - e - s - 1) / -s : 0;
        }
        first[a] = b, step[a] = s;
    }
    value *out = fold_out(im, x, r, dims);
    if (!out) return false;
    int64_t idx[PN_MAX_RANK], st[PN_MAX_RANK];
    strides_of(x, st);
    for (int64_t e = 0; e < out->numel; e++) {
        unravel_dims(e, dims, r, idx);
        int64_t off = 0;
        for (int d = 0; d < r; d++) off += (first[d] + idx[d] * step[d]) * st[d];
        fold_copy(out, e, x, off);
    }
    pn_strmap_put(&im->values, out->name, out);
    return true;
}

static bool fold_transpose(imp *im) {
    value *x = fold_in(im, 0);
    if (!x) return false;
    int r = x->rank;
    int64_t perm[PN_MAX_RANK], dims[PN_MAX_RANK], idx[PN_MAX_RANK], st[PN_MAX_RANK];
    int n = attr_ints(im, "perm", perm, PN_MAX_RANK);
    if (n < 0)
        for (n = 0; n < r; n++) perm[n] = r - 1 - n;
    bool seen[PN_MAX_RANK] = {0};
    if (n != r) return fail(im, "perm has %d entries for %d axes", n, r);
    for (int k = 0; k < r; k++) {
        if (perm[k] < 0 || perm[k] >= r || seen[perm[k]]) return fail(im, "perm is not a permutation");
        seen[perm[k]] = true;
        dims[k] = x->dims[perm[k]];
    }
    value *out = fold_out(im, x, r, dims);
    if (!out) return false;
    strides_of(x, st);
    for (int64_t e = 0; e < out->numel; e++) {
        unravel_dims(e, dims, r, idx);
        int64_t off = 0;
        for (int k = 0; k < r; k++) off += idx[k] * st[perm[k]];
        fold_copy(out, e, x, off);
    }
    pn_strmap_put(&im->values, out->name, out);
    return true;
}

/* Folds node op when it is one of the above and all its inputs are constants: *done then tells
 * whether it succeeded. False: not folded, the node is imported as usual. */
static bool fold_node(imp *im, const char *op, bool *done) {
    /* Cast is op_cast's: it also folds constants, to BOOL too, and knows the batch size's mark. */
    static const char *const ops[] = {"ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose"};
    static bool (*const fns[])(imp *) = {fold_constant_of_shape, fold_concat, fold_reshape, fold_slice, fold_transpose};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        if (strcmp(op, ops[k]) != 0) continue;
        if (!all_constant(im)) return false;
        *done = one_output(im) && fns[k](im);
        return true;
    }
    return false;
}

/* Elu (alpha) and Softplus: activations of one tensor. */
static bool op_elu_softplus(imp *im, pn_op op) {
    if (!only(im, op == PN_OP_ELU ? "alpha" : "") || !one_output(im)) return false;
    int x = act(im, 0);
    if (x < 0) return false;
    pn_node n = plain(im, op);
    n.fa[PN_FA_VALUE] = attr_f(im, "alpha", 1.0);
    int id = add(im, &n, (int32_t[]){x}, 1, NULL, 0);
    if (id >= 0) bind(im, im->node->output[0], id);
    return id >= 0;
}

/* PRelu with a constant slope that varies along axis 1 at most (broadcast to X from the right:
 * [C] for a [N, C] input, [C, 1, 1] for [N, C, H, W]) or is one value ([1]): a prelu layer named
 * after the slope, whose weight [C] the slope's values fill. */
static bool op_prelu(imp *im) {
    if (!only(im, "") || !one_output(im)) return false;
    int x = act(im, 0);
    value *sl = x < 0 ? NULL : cst(im, 1, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    if (!sl) return false;
    const pn_shape *s = &im->g->nodes[x].shape;
    if (s->rank < 2) return fail(im, "X needs a channel axis (axis 1)");
    int64_t C = s->d[1];
    bool ok = sl->rank < s->rank && (sl->numel == 1 || sl->numel == C);
    for (int k = 0; ok && k < sl->rank; k++) {
        int axis = s->rank - sl->rank + k;
        ok = sl->dims[k] == 1 || (axis == 1 && sl->dims[k] == C);
    }
    if (!ok) return fail(im, "the slope must vary along axis 1 of X at most ([%lld], [%lld, 1, 1] or [1])", (long long)C, (long long)C);
    pn_node n = {.name = layer_name(im, sl), .op = PN_OP_PRELU};
    int id = add(im, &n, (int32_t[]){x}, 1, NULL, 0);
    if (id < 0) return false;
    float *w = pn_xmalloc((size_t)C * sizeof(float) + 1);
    for (int64_t c = 0; c < C; c++) w[c] = sl->f[sl->numel == 1 ? 0 : c];
    weight(im, id, 0, w);
    free(w);
    bind(im, im->node->output[0], id);
    return true;
}

/* Gather on axis 0 of a 2-d FLOAT initializer [vocab, dim] by computed ids: an embedding. */
static bool op_gather(imp *im) {
    if (!only(im, "axis") || !one_output(im)) return false;
    value *data = input(im, 0), *ix = data ? input(im, 1) : NULL;
    if (!ix) return false;
    if (data->node < 0 && ix->node < 0) return gather_constants(im, data, ix);
    if (attr_i(im, "axis", 0) != 0) return fail(im, "axis = %lld is not supported (only 0)", (long long)attr_i(im, "axis", 0));
    value *table = cst(im, 0, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    int ids = table ? act(im, 1) : -1;
    if (ids < 0) return false;
    if (table->rank != 2) return fail(im, "the table must have 2 dimensions [vocab, dim]");
    pn_node n = {.name = layer_name(im, table), .op = PN_OP_EMBEDDING};
    n.ia[PN_EMB_VOCAB] = table->dims[0];
    n.ia[PN_EMB_DIM] = table->dims[1];
    int id = add(im, &n, (int32_t[]){ids}, 1, NULL, 0);
    if (id < 0) return false;
    weight(im, id, 0, table->f);
    bind(im, im->node->output[0], id);
    return true;
}

/* Softmax, LogSoftmax: over one axis. Before opset 13 the input is seen as 2-d [before axis, from
 * axis], which is a softmax over the last axis only when axis is the last. */
static bool op_softmax(imp *im, pn_op op) {
    if (!only(im, "axis") || !one_output(im)) return false;
    int x = act(im, 0);
    if (x < 0) return false;
    int rank = im->g->nodes[x].shape.rank;
    int64_t axis = attr_i(im, "axis", im->opset >= 13 ? -1 : 1);
    if (axis < 0) axis += rank;
    if (im->opset < 13 && axis != rank - 1)
        return fail(im, "axis = %lld on a %d-d input is not supported before opset 13 (only the last axis)",
                    (long long)attr_i(im, "axis", 1), rank);
    pn_node n = plain(im, op);
    n.ia[PN_AXIS] = axis;
    int id = add(im, &n, (int32_t[]){x}, 1, NULL, 0);
    if (id >= 0) bind(im, im->node->output[0], id);
    return id >= 0;
}

/* A reshape of x to the ONNX shape want[0..n) (0 copies x's dimension, -1 is inferred); a batch
 * dimension stays the batch dimension. */
static bool reshape(imp *im, int x, const int64_t *want, int n) {
    const pn_shape *s = &im->g->nodes[x].shape;
    bool batched = pn_shape_batched(s);
    int64_t list[PN_MAX_RANK];
    int nlist = 0, start = 0;
    if (n > PN_MAX_RANK) return fail(im, "the new shape has %d dimensions (at most %d)", n, PN_MAX_RANK);
    if (batched) {
        bool rest_infers = false;
        for (int k = 1; k < n; k++) rest_infers |= want[k] == -1;
        if (n < 1 || !(want[0] == 0 || want[0] == BATCH_DIM || (want[0] == -1 && !rest_infers)))
            return fail(im, "the new shape must keep the batch dimension first (0, or -1 with the other dimensions given)");
        start = 1;
    }
    for (int k = start; k < n; k++) {
        if (want[k] == BATCH_DIM) return fail(im, "dimension %d of the new shape is the batch size, which only dimension 0 may be", k);
        if (want[k] == 0) {
            if (k >= s->rank) return fail(im, "dimension %d of the new shape copies a dimension the input does not have", k);
            list[nlist++] = s->d[k];
        } else {
            list[nlist++] = want[k];
        }
    }
    pn_node r = plain(im, PN_OP_RESHAPE);
    int id = add(im, &r, (int32_t[]){x}, 1, list, nlist);
    if (id >= 0) bind(im, im->node->output[0], id);
    return id >= 0;
}

static bool op_reshape(imp *im) {
    if (!only(im, "allowzero") || !one_output(im)) return false;
    if (attr_i(im, "allowzero", 0)) return fail(im, "allowzero = %lld is not supported", (long long)attr_i(im, "allowzero", 0));
    int x = act(im, 0);
    value *shape = x < 0 ? NULL : cst(im, 1, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
    if (!shape) return false;
    if (shape->rank != 1) return fail(im, "the shape must be a 1-d constant");
    return reshape(im, x, shape->i, (int)shape->numel);
}

/* Flatten(axis): [prod(d[0..axis)), prod(d[axis..))]; with a batch dimension only axis 1. */
static bool op_flatten(imp *im) {
    if (!only(im, "axis") || !one_output(im)) return false;
    int x = act(im, 0);
    if (x < 0) return false;
    const pn_shape *s = &im->g->nodes[x].shape;
    int64_t axis = attr_i(im, "axis", 1);
    if (axis < 0) axis += s->rank;
    if (axis == 1 && s->rank >= 2) {
        pn_node n = plain(im, PN_OP_FLATTEN);
        int id = add(im, &n, (int32_t[]){x}, 1, NULL, 0);
        if (id >= 0) bind(im, im->node->output[0], id);
        return id >= 0;
    }
    if (pn_shape_batched(s) || axis < 0 || axis > s->rank)
        return fail(im, "axis = %lld is not supported on %s input", (long long)attr_i(im, "axis", 1),
                    pn_shape_batched(s) ? "a batched" : "this");
    int64_t want[2] = {1, 1};
    for (int k = 0; k < s->rank; k++) want[k >= axis] *= s->d[k];
    return reshape(im, x, want, 2);
}

/* pads [begin..., end...] of a 2-d window must be symmetric; auto_pad NOTSET or VALID. */
static bool window_pads(imp *im, int64_t *ph, int64_t *pw) {
    *ph = *pw = 0;
    if (!attr_is(im, "auto_pad", "NOTSET", true) && !attr_is(im, "auto_pad", "VALID", false))
        return fail(im, "auto_pad other than NOTSET and VALID is not supported");
    int64_t p[4];
    int np = attr_ints(im, "pads", p, 4);
    if (np < 0 && attr(im, "pads")) return fail(im, "pads must have 4 entries");
    if (np == 4 && attr_is(im, "auto_pad", "NOTSET", true)) {
        if (p[0] != p[2] || p[1] != p[3])
            return fail(im, "pads = [%lld, %lld, %lld, %lld] is not supported (only symmetric padding)", (long long)p[0],
                        (long long)p[1], (long long)p[2], (long long)p[3]);
        *ph = p[0], *pw = p[1];
    } else if (np >= 0 && np != 4) {
        return fail(im, "pads must have 4 entries");
    }
    int64_t d[4];
    int nd = attr_ints(im, "dilations", d, 4);
    for (int k = 0; k < nd; k++)
        if (d[k] != 1) return fail(im, "dilations = %lld is not supported (only 1)", (long long)d[k]);
    return true;
}

/* kernel_shape and strides of a 2-d window into ia[k..k+1], ia[s..s+1]; strides default 1. */
static bool window(imp *im, pn_node *n, int ik, int is, bool need_kernel) {
    int64_t v[3];
    int nk = attr_ints(im, "kernel_shape", v, 3);
    if (nk >= 0 && nk != 2) return fail(im, "kernel_shape has %d entries; only 2-d windows are supported", nk);
    if (nk < 0 && need_kernel) return fail(im, "kernel_shape is missing");
    if (nk == 2) n->ia[ik] = v[0], n->ia[ik + 1] = v[1];
    int ns = attr_ints(im, "strides", v, 3);
    if (ns >= 0 && ns != 2) return fail(im, "strides must have 2 entries");
    n->ia[is] = ns == 2 ? v[0] : 1;
    n->ia[is + 1] = ns == 2 ? v[1] : 1;
    return true;
}

/* Conv: X computed [N, C, H, W], W constant [M, C / group, kh, kw], B constant [M]; dilation 1. */
static bool op_conv(imp *im) {
    if (!only(im, "auto_pad dilations group kernel_shape pads strides") || !one_output(im)) return false;
    int64_t group = attr_i(im, "group", 1);
    if (group < 1) return fail(im, "group = %lld is not supported", (long long)group);
    int x = act(im, 0);
    value *w = x < 0 ? NULL : cst(im, 1, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT), *b = NULL;
    if (!w) return false;
    if (w->rank != 4) return fail(im, "only 2-d convolutions are supported (W has %d dimensions)", w->rank);
    if (has_input(im, 2) && !(b = cst(im, 2, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT))) return false;
    if (b && !is_vector(b, w->dims[0])) return fail(im, "B must be a vector of %lld elements", (long long)w->dims[0]);
    pn_node n = {.name = layer_name(im, w), .op = PN_OP_CONV2D};
    if (!window(im, &n, PN_CONV_KH, PN_CONV_SH, false) || !window_pads(im, &n.ia[PN_CONV_PH], &n.ia[PN_CONV_PW])) return false;
    if (!attr(im, "kernel_shape")) n.ia[PN_CONV_KH] = w->dims[2], n.ia[PN_CONV_KW] = w->dims[3];
    if (n.ia[PN_CONV_KH] != w->dims[2] || n.ia[PN_CONV_KW] != w->dims[3]) return fail(im, "kernel_shape does not match W");
    if (im->g->nodes[x].shape.rank == 4 && im->g->nodes[x].shape.d[1] != w->dims[1] * group)
        return fail(im, "W has %lld input channels per group (group = %lld), but X has %lld", (long long)w->dims[1],
                    (long long)group, (long long)im->g->nodes[x].shape.d[1]);
    n.ia[PN_CONV_OUT] = w->dims[0];
    n.ia[PN_CONV_GROUPS] = group;
    n.ia[PN_CONV_BIAS] = b != NULL;
    int id = add(im, &n, (int32_t[]){x}, 1, NULL, 0);
    if (id < 0) return false;
    weight(im, id, 0, w->f);
    if (b) weight(im, id, 1, b->f);
    bind(im, im->node->output[0], id);
    return true;
}

/* MaxPool, AveragePool: 2-d windows, ceil_mode 0; an average over padding counts the padding. */
static bool op_pool(imp *im, pn_op op) {
    bool max = op == PN_OP_MAXPOOL2D;
    if (!only(im, max ? "auto_pad ceil_mode dilations kernel_shape pads storage_order strides"
                      : "auto_pad ceil_mode count_include_pad kernel_shape pads strides") ||
        !one_output(im))
        return false;
    if (attr_i(im, "ceil_mode", 0)) return fail(im, "ceil_mode = %lld is not supported", (long long)attr_i(im, "ceil_mode", 0));
    if (attr_i(im, "storage_order", 0)) return fail(im, "storage_order = 1 is not supported");
    int x = act(im, 0);
    if (x < 0) return false;
    pn_node n = plain(im, op);
    if (!window(im, &n, PN_POOL_KH, PN_POOL_SH, true) || !window_pads(im, &n.ia[PN_POOL_PH], &n.ia[PN_POOL_PW])) return false;
    if (!max && (n.ia[PN_POOL_PH] || n.ia[PN_POOL_PW]) && !attr_i(im, "count_include_pad", 0))
        return fail(im, "count_include_pad = 0 with padding is not supported");
    int id = add(im, &n, (int32_t[]){x}, 1, NULL, 0);
    if (id >= 0) bind(im, im->node->output[0], id);
    return id >= 0;
}

static bool op_global_avgpool(imp *im) {
    if (!only(im, "") || !one_output(im)) return false;
    int x = act(im, 0);
    if (x < 0) return false;
    pn_node n = plain(im, PN_OP_GLOBAL_AVGPOOL);
    int id = add(im, &n, (int32_t[]){x}, 1, NULL, 0);
    if (id >= 0) bind(im, im->node->output[0], id);
    return id >= 0;
}

/* BatchNormalization at inference: X computed; scale, B, mean, var constants [C]. */
static bool op_batchnorm(imp *im) {
    if (!only(im, "epsilon momentum spatial training_mode is_test consumed_inputs") || !one_output(im)) return false;
    if (attr_i(im, "training_mode", 0)) return fail(im, "training_mode = 1 is not supported");
    if (attr_i(im, "spatial", 1) != 1) return fail(im, "spatial = 0 is not supported");
    int x = act(im, 0);
    if (x < 0) return false;
    value *p[4];
    for (int k = 0; k < 4; k++)
        if (!(p[k] = cst(im, 1 + k, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT))) return false;
    const pn_shape *s = &im->g->nodes[x].shape;
    for (int k = 0; k < 4 && s->rank >= 2; k++)
        if (!is_vector(p[k], s->d[1])) return fail(im, "input %d must be a vector of %lld elements", 1 + k, (long long)s->d[1]);
    pn_node n = {.name = layer_name(im, p[0]), .op = PN_OP_BATCHNORM};
    n.fa[PN_FA_VALUE] = attr_f(im, "epsilon", 1e-5);
    /* ONNX's momentum weighs the running value, PyTorch's (and pnet's) the batch's. */
    double m = 1.0 - attr_f(im, "momentum", 0.9);
    n.fa[PN_FA_MOMENTUM] = m >= 0 && m <= 1 ? m : 0.1;
    int id = add(im, &n, (int32_t[]){x}, 1, NULL, 0);
    if (id < 0) return false;
    for (int k = 0; k < 4; k++) weight(im, id, k, p[k]->f);
    bind(im, im->node->output[0], id);
    return true;
}

/* Constant: its value (a tensor, or value_float(s) / value_int(s)) becomes a constant. */
static bool op_constant(imp *im) {
    if (!only(im, "value value_float value_floats value_int value_ints") || !one_output(im)) return false;
    const Onnx__AttributeProto *a = im->node->n_attribute == 1 ? im->node->attribute[0] : NULL;
    if (!a) return fail(im, "a Constant needs exactly one value attribute");
    value *v;
    if (a->t) {
        if (!(v = read_tensor(im, a->t, im->node->output[0]))) return false;
    } else {
        v = new_value(im, im->node->output[0]);
        const char *n = S(a->name);
        bool ints = strstr(n, "int") != NULL, list = n[strlen(n) - 1] == 's';
        v->numel = list ? (int64_t)(ints ? a->n_ints : a->n_floats) : 1;
        v->rank = list ? 1 : 0;
        v->dims[0] = v->numel;
        v->dtype = ints ? ONNX__TENSOR_PROTO__DATA_TYPE__INT64 : ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
        if (ints) {
            v->i = pn_arena_alloc(&im->arena, (size_t)v->numel * sizeof(int64_t) + 1);
            if (list && v->numel) memcpy(v->i, a->ints, (size_t)v->numel * sizeof(int64_t));
            else v->i[0] = a->i;
        } else {
            v->f = pn_arena_alloc(&im->arena, (size_t)v->numel * sizeof(float) + 1);
            if (list && v->numel) memcpy(v->f, a->floats, (size_t)v->numel * sizeof(float));
            else v->f[0] = a->f;
        }
    }
    pn_strmap_put(&im->values, v->name, v);
    return true;
}

/* ---- 1-d windows: Conv, MaxPool, AveragePool and GlobalAveragePool over [N, C, L] --------------- */

/* Node input 0 is a computed 3-d tensor [N, C, L]. */
static bool is_1d(imp *im) {
    const value *v = im->node->n_input ? pn_strmap_get(&im->values, S(im->node->input[0])) : NULL;
    return v && v->node >= 0 && im->g->nodes[v->node].shape.rank == 3;
}

/* Attribute a of a 1-d window with a height of 1 in front: kernel_shape, strides and dilations
 * [a] -> [1, a], pads [b, e] -> [0, b, 0, e]; any other attribute as it is. */
static Onnx__AttributeProto *attr_2d(imp *im, const Onnx__AttributeProto *a) {
    Onnx__AttributeProto *b = pn_arena_alloc(&im->arena, sizeof *b);
    *b = *a;
    const char *n = S(a->name);
    bool pads = !strcmp(n, "pads");
    if ((pads || !strcmp(n, "kernel_shape") || !strcmp(n, "strides") || !strcmp(n, "dilations")) && a->n_ints == (pads ? 2u : 1u)) {
        b->n_ints = pads ? 4 : 2;
        b->ints = pn_arena_alloc(&im->arena, 4 * sizeof(int64_t));
        if (pads) b->ints[0] = 0, b->ints[1] = a->ints[0], b->ints[2] = 0, b->ints[3] = a->ints[1];
        else b->ints[0] = 1, b->ints[1] = a->ints[0];
    }
    return b;
}

/* The key of name's 4-d form: name#2d. Messages may show it. */
static char *key_2d(imp *im, const char *name) {
    char *k = pn_xasprintf("%s#2d", S(name));
    char *kept = pn_arena_strdup(&im->arena, k);
    free(k);
    return kept;
}

/* A 1-d Conv, MaxPool, AveragePool or GlobalAveragePool (op: PN_OP_CONV2D, ...): its 2-d form over
 * x reshaped to [N, C, 1, L], with a Conv's W [M, C, k] as [M, C, 1, k], then reshaped back. The 2-d
 * node is imported by its own function from a copy of the node that reads and writes the 4-d
 * tensors under keys of their own. */
static bool window_1d(imp *im, pn_op op) {
    const Onnx__NodeProto *nd = im->node;
    if (!one_output(im)) return false;
    int x = act(im, 0);
    if (x < 0) return false;
    const pn_shape *s = &im->g->nodes[x].shape;
    bool batched = pn_shape_batched(s);
    int64_t list[4] = {s->d[0], s->d[1], 1, s->d[2]};
    int in4 = step(im, PN_OP_RESHAPE, "2d", (int32_t[]){x}, 1, list + batched, 4 - batched, 0);
    if (in4 < 0) return false;
    Onnx__NodeProto copy = *nd;
    char **inputs = pn_arena_alloc(&im->arena, (nd->n_input + 1) * sizeof *inputs), *outputs[1];
    Onnx__AttributeProto **attrs = pn_arena_alloc(&im->arena, (nd->n_attribute + 1) * sizeof *attrs);
    for (size_t k = 0; k < nd->n_input; k++) inputs[k] = nd->input[k];
    for (size_t k = 0; k < nd->n_attribute; k++) attrs[k] = attr_2d(im, nd->attribute[k]);
    inputs[0] = key_2d(im, nd->input[0]);
    outputs[0] = key_2d(im, nd->output[0]);
    bind(im, inputs[0], in4);
    if (op == PN_OP_CONV2D && nd->n_input >= 2) {
        value *w = pn_strmap_get(&im->values, S(nd->input[1]));
        if (w && w->node < 0 && w->rank == 3) {
            value *w4 = pn_arena_alloc(&im->arena, sizeof *w4);
            *w4 = *w; /* the same data and name: the layer is named after it */
            w4->rank = 4;
            w4->dims[3] = w->dims[2], w4->dims[2] = 1;
            inputs[1] = key_2d(im, nd->input[1]);
            pn_strmap_put(&im->values, inputs[1], w4);
        }
    }
    copy.input = inputs, copy.output = outputs, copy.n_output = 1, copy.attribute = attrs;
    im->node = &copy;
    bool ok = op == PN_OP_CONV2D ? op_conv(im) : op == PN_OP_GLOBAL_AVGPOOL ? op_global_avgpool(im) : op_pool(im, op);
    im->node = nd;
    const value *y = ok ? pn_strmap_get(&im->values, outputs[0]) : NULL;
    if (!y) return false;
    const pn_shape *ys = &im->g->nodes[y->node].shape;
    int64_t back[3] = {ys->d[0], ys->d[1], ys->d[3]};
    int id = step(im, PN_OP_RESHAPE, NULL, (int32_t[]){y->node}, 1, back + batched, 3 - batched, 0);
    if (id >= 0) bind(im, nd->output[0], id);
    return id >= 0;
}

static bool import_node(imp *im, size_t index) {
    const Onnx__NodeProto *nd = im->node;
    const char *op = S(nd->op_type);
    if (nd->domain && *nd->domain && strcmp(nd->domain, "ai.onnx") != 0)
        return fail(im, "the domain '%s' is not supported", nd->domain);
    bool folded;
    if (fold_node(im, op, &folded)) return folded;
    if (!strcmp(op, "Gemm")) return op_gemm(im);
    if (!strcmp(op, "MatMul")) return op_matmul(im, index);
    if (!strcmp(op, "Add")) return fold_arith(im, '+') || positions_pattern(im) || causal_pattern(im, index) || op_binary(im, PN_OP_ADD);
    if (!strcmp(op, "Sub")) return fold_arith(im, '-') || op_binary(im, PN_OP_SUB);
    if (!strcmp(op, "Mul")) return fold_arith(im, '*') || op_binary(im, PN_OP_MUL);
    if (!strcmp(op, "Relu")) return op_unary(im, PN_OP_RELU, "");
    if (!strcmp(op, "LeakyRelu")) return op_unary(im, PN_OP_LEAKY_RELU, "alpha");
    if (!strcmp(op, "Sigmoid")) return op_unary(im, PN_OP_SIGMOID, "");
    if (!strcmp(op, "Tanh")) return op_unary(im, PN_OP_TANH, "");
    if (!strcmp(op, "Softmax")) return op_softmax(im, PN_OP_SOFTMAX);
    if (!strcmp(op, "LogSoftmax")) return op_softmax(im, PN_OP_LOG_SOFTMAX);
    if (!strcmp(op, "Flatten")) return op_flatten(im);
    if (!strcmp(op, "Reshape")) return op_reshape(im);
    if (!strcmp(op, "Conv")) return is_1d(im) ? window_1d(im, PN_OP_CONV2D) : op_conv(im);
    if (!strcmp(op, "MaxPool")) return is_1d(im) ? window_1d(im, PN_OP_MAXPOOL2D) : op_pool(im, PN_OP_MAXPOOL2D);
    if (!strcmp(op, "AveragePool")) return is_1d(im) ? window_1d(im, PN_OP_AVGPOOL2D) : op_pool(im, PN_OP_AVGPOOL2D);
    if (!strcmp(op, "GlobalAveragePool")) return is_1d(im) ? window_1d(im, PN_OP_GLOBAL_AVGPOOL) : op_global_avgpool(im);
    if (!strcmp(op, "BatchNormalization")) return op_batchnorm(im);
    if (!strcmp(op, "Identity")) return op_alias(im, false);
    if (!strcmp(op, "Dropout")) return op_alias(im, true);
    if (!strcmp(op, "Constant")) return op_constant(im);
    if (!strcmp(op, "Pad")) return op_pad(im);
    if (!strcmp(op, "Elu")) return op_elu_softplus(im, PN_OP_ELU);
    if (!strcmp(op, "Softplus")) return op_elu_softplus(im, PN_OP_SOFTPLUS);
    if (!strcmp(op, "PRelu")) return op_prelu(im);
    if (!strcmp(op, "Div")) return fold_arith(im, '/') || gelu_pattern(im, index) || op_div(im);
    if (!strcmp(op, "ReduceMean")) return layernorm_pattern(im, index) || fail(im, "only the LayerNorm pattern of ReduceMean is supported");
    if (!strcmp(op, "Transpose")) return op_transpose(im);
    if (!strcmp(op, "Gather")) return op_gather(im);
    if (!strcmp(op, "Concat")) return op_concat(im);
    if (!strcmp(op, "LayerNormalization")) return op_layernorm(im);
    if (!strcmp(op, "Shape")) return op_shape(im);
    if (!strcmp(op, "Cast")) return op_cast(im);
    if (!strcmp(op, "Range")) return op_range(im);
    if (!strcmp(op, "Slice")) return op_slice(im);
    if (!strcmp(op, "Equal")) return op_equal(im);
    if (!strcmp(op, "Unsqueeze")) return op_unsqueeze(im);
    if (!strcmp(op, "Where")) return causal_pattern(im, index) || fail(im, "only the causal mask before a Softmax is supported");
    return fail(im, "the op is not supported");
}

/* A graph input: f32, its first dimension symbolic (batch) or fixed, the others fixed. */
static bool import_input(imp *im, const Onnx__ValueInfoProto *vi) {
    const char *name = S(vi->name);
    const Onnx__TypeProto *t = vi->type;
    if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type)
        return fail(im, "input '%s' is not a tensor", name);
    const Onnx__TypeProto__Tensor *tt = t->tensor_type;
    bool ints = tt->elem_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || tt->elem_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    if (tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && !ints)
        return fail(im, "input '%s' is %s; only FLOAT, INT64 and INT32 inputs are supported", name, type_name(tt->elem_type));
    if (!tt->shape) return fail(im, "input '%s' has no shape", name);
    if (tt->shape->n_dim < 1 || tt->shape->n_dim > PN_MAX_RANK)
        return fail(im, "input '%s' has %zu dimensions (1 to %d are supported)", name, tt->shape->n_dim, PN_MAX_RANK);
    /* Integer inputs (token ids) are i32: the executables read int64 .npy files and check the range. */
    pn_node n = {.name = ident(im, name), .op = PN_OP_INPUT, .dtype = ints ? PN_I32 : PN_F32, .flags = PN_NODE_NAMED};
    n.source_name = source_name(im, name, n.name);
    n.shape.rank = (int)tt->shape->n_dim;
    for (int k = 0; k < n.shape.rank; k++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[k];
        bool fixed = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        if (fixed && d->dim_value >= 1 && d->dim_value <= PN_MAX_DIM) n.shape.d[k] = d->dim_value;
        else if (!fixed && k == 0) n.shape.d[k] = PN_BATCH;
        else if (!fixed)
            return fail(im, "dimension %d of input '%s' is symbolic ('%s'); only the first may be", k, name,
                        d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM ? S(d->dim_param) : "");
        else return fail(im, "dimension %d of input '%s' is %lld", k, name, (long long)d->dim_value);
    }
    pn_shape_err se;
    if (!pn_shape_check_size(&n.shape, &se)) return fail(im, "input '%s': %s", name, se.msg);
    int id = add(im, &n, NULL, 0, NULL, 0);
    if (id >= 0) bind(im, name, id);
    return id >= 0;
}

static bool import_graph(imp *im) {
    const Onnx__GraphProto *gp = im->gp;
    for (size_t k = 0; k < gp->n_initializer; k++) {
        value *v = read_tensor(im, gp->initializer[k], gp->initializer[k]->name);
        if (!v) return false;
        pn_strmap_put(&im->values, v->name, v);
    }
    for (size_t k = 0; k < gp->n_input; k++) /* older exports list the initializers as inputs too */
        if (!pn_strmap_get(&im->values, S(gp->input[k]->name)) && !import_input(im, gp->input[k])) return false;
    if (im->g->nnodes == 0) return fail(im, "the graph has no inputs");
    im->absorbed = pn_xcalloc(gp->n_node + 1, sizeof(bool));
    /* Constant nodes first: they read nothing, and the patterns look ahead at their values. */
    for (size_t k = 0; k < gp->n_node; k++) {
        im->node = gp->node[k];
        if (strcmp(S(im->node->op_type), "Constant") != 0 || (im->node->domain && *im->node->domain)) continue;
        if (!op_constant(im)) return false;
        im->absorbed[k] = true;
    }
    for (size_t k = 0; k < gp->n_node; k++) {
        im->node = gp->node[k];
        if (!im->absorbed[k] && (!import_node(im, k) || im->failed)) return false; /* a pattern may match, then fail */
    }
    im->node = NULL;
    if (gp->n_output == 0) return fail(im, "the graph has no outputs");
    for (size_t k = 0; k < gp->n_output; k++) {
        const char *name = S(gp->output[k]->name);
        value *v = pn_strmap_get(&im->values, name);
        if (!v) return fail(im, "output '%s' is not computed by any node", name);
        if (v->node < 0) return fail(im, "output '%s' is a constant", name);
        if (im->g->nodes[v->node].op == PN_OP_INPUT) return fail(im, "output '%s' is a graph input", name);
        /* The output's identifier, unless the node already bears it. */
        const char *node_name = im->g->nodes[v->node].name;
        pn_strmap_put(&im->taken, node_name, NULL);
        const char *out = ident(im, name);
        pn_strmap_put(&im->taken, node_name, (void *)1);
        pn_graph_add_output(im->g, out, v->node, PN_NOLOC);
        im->g->outputs[im->g->noutputs - 1].source_name = source_name(im, name, out);
    }
    return true;
}

const bool pn_onnx_supported = true;

pn_graph *pn_onnx_import(const uint8_t *data, size_t len, pn_onnx_weights *w, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    err[0] = 0;
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, data);
    if (!m) {
        snprintf(err, errlen, "not an ONNX model: the protobuf does not decode as a ModelProto");
        return NULL;
    }
    imp im = {.w = w, .err = err, .errlen = errlen, .opset = -1};
    pn_arena_init(&im.arena);
    for (size_t k = 0; k < m->n_opset_import; k++) {
        const char *d = S(m->opset_import[k]->domain);
        if ((!*d || !strcmp(d, "ai.onnx")) && m->opset_import[k]->has_version) im.opset = m->opset_import[k]->version;
    }
    if (!m->graph) fail(&im, "the model has no graph");
    else if (im.opset < 0) fail(&im, "the model imports no opset of the default domain");
    else if (im.opset < OPSET_MIN || im.opset > OPSET_MAX)
        fail(&im, "opset %lld is not supported (%d to %d are)", (long long)im.opset, OPSET_MIN, OPSET_MAX);
    if (!im.failed) {
        im.gp = m->graph;
        im.g = pn_graph_new("model");
        const char *gname = S(m->graph->name);
        im.g->name = ident(&im, *gname ? gname : "model");
        pn_strmap_put(&im.taken, im.g->name, NULL); /* the network's name is not a node's */
        import_graph(&im);
    }
    free(im.absorbed);
    pn_strmap_free(&im.values);
    pn_strmap_free(&im.taken);
    pn_arena_free(&im.arena);
    onnx__model_proto__free_unpacked(m, NULL);
    if (im.failed) {
        pn_graph_free(im.g);
        pn_onnx_weights_free(w);
        return NULL;
    }
    return im.g;
}

void pn_onnx_weights_free(pn_onnx_weights *w) {
    for (int k = 0; k < w->n; k++) {
        free(w->names[k]);
        free(w->data[k]);
    }
    free(w->names);
    free(w->ranks);
    free(w->shapes);
    free(w->data);
    memset(w, 0, sizeof *w);
}
