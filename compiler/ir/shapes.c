/* Shape rules for every op in ops.def, one function per family, pointed at by the op table
 * (ops.c). Semantics follow PyTorch; layout is NCHW. */
#include "shapes.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static bool fail(pn_shape_err *e, int arg, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(pn_shape_err *e, int arg, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->arg = arg;
    return false;
}

#define SHAPE(n) pn_shape_str((n)->dtype, &(n)->shape, sbuf, sizeof sbuf)

bool pn_shape_check_size(const pn_shape *s, pn_shape_err *err) {
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        if (s->d[i] == PN_BATCH) continue;
        if (s->d[i] > PN_MAX_DIM) return fail(err, -1, "dimension %lld is too large (the limit is %d)", (long long)s->d[i], PN_MAX_DIM);
        if (__builtin_mul_overflow(n, s->d[i], &n) || n > PN_MAX_ELEMS)
            return fail(err, -1, "tensor is too large: more than 2^48 elements per sample");
    }
    return true;
}

bool pn_broadcast(const pn_shape *a, const pn_shape *b, pn_shape *out) {
    int r = a->rank > b->rank ? a->rank : b->rank;
    out->rank = r;
    for (int i = 0; i < r; i++) {
        int ia = a->rank - r + i, ib = b->rank - r + i;
        int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
        int64_t d;
        if (da == db) d = da;
        else if (da == 1) d = db;
        else if (db == 1) d = da;
        else return false; /* includes batch against a fixed size > 1 */
        out->d[i] = d;
    }
    for (int i = 1; i < r; i++)
        if (out->d[i] == PN_BATCH) return false; /* batch would move off the first axis */
    return true;
}

/* The node's `frozen` attribute (ops with parameters): its parameters are not trained. */
static bool frozen(const pn_node *n) {
    int na;
    const pn_attr_desc *a = pn_op_attrs(n->op, &na);
    for (int i = 0; i < na; i++)
        if (strcmp(a[i].key, "frozen") == 0) return n->ia[a[i].slot] != 0;
    return false;
}

static void add_param(pn_node *n, const char *suffix, bool trainable, int rank, const int64_t *dims) {
    pn_param_info *p = &n->params[n->nparams++];
    p->suffix = suffix;
    p->trainable = trainable && !frozen(n);
    p->shape.rank = rank;
    for (int i = 0; i < rank; i++) p->shape.d[i] = dims[i];
}

/* Normalises a possibly negative axis against rank; false when out of range. */
static bool norm_axis(int64_t *axis, int rank) {
    if (*axis < -rank || *axis >= rank) return false;
    if (*axis < 0) *axis += rank;
    return true;
}

static bool need_f32(const pn_node *in, int arg, const char *op, pn_shape_err *e) {
    char sbuf[128];
    if (in->dtype != PN_F32) return fail(e, arg, "'%s' needs an f32 tensor, but this is %s", op, SHAPE(in));
    return true;
}

/* Output size of a window op along one axis: floor((x + 2p - k) / s) + 1. */
static bool window(int64_t x, int64_t k, int64_t s, int64_t p, int64_t *out) {
    int64_t span = x + 2 * p - k;
    if (span < 0) return false;
    *out = span / s + 1;
    return true;
}

/* Window ops: conv2d(x, out, kernel, stride, padding), pools(x, size, stride, padding). The
 * kernel, stride and padding are call arguments a0, a0 + 1 and a0 + 2. */
static bool infer_window(pn_node *n, const pn_node *x, int ik, int is, int ip, bool is_conv, pn_shape_err *e) {
    char sbuf[128];
    const char *op = pn_ops[n->op].name;
    int a0 = is_conv ? 2 : 1;
    if (x->shape.rank != 4) return fail(e, 0, "'%s' needs a 4-d NCHW input, but this is %s", op, SHAPE(x));
    for (int k = 0; k < 2; k++) {
        if (n->ia[ik + k] < 1 || n->ia[ik + k] > PN_MAX_DIM)
            return fail(e, a0, "'%s' %s must be between 1 and %d", op, is_conv ? "kernel size" : "window size", PN_MAX_DIM);
        if (n->ia[is + k] < 1 || n->ia[is + k] > PN_MAX_DIM)
            return fail(e, a0 + 1, "'%s' stride must be between 1 and %d", op, PN_MAX_DIM);
        if (n->ia[ip + k] < 0 || n->ia[ip + k] > PN_MAX_DIM)
            return fail(e, a0 + 2, "'%s' padding must be between 0 and %d", op, PN_MAX_DIM);
        if (!is_conv && n->ia[ip + k] * 2 > n->ia[ik + k])
            return fail(e, a0 + 2, "'%s' padding %lld is more than half the window size %lld", op,
                        (long long)n->ia[ip + k], (long long)n->ia[ik + k]);
    }
    n->shape = x->shape;
    for (int k = 0; k < 2; k++) {
        if (!window(x->shape.d[2 + k], n->ia[ik + k], n->ia[is + k], n->ia[ip + k], &n->shape.d[2 + k]))
            return fail(e, -1, "'%s' window %lldx%lld is larger than the padded input %lldx%lld", op,
                        (long long)n->ia[ik], (long long)n->ia[ik + 1],
                        (long long)(x->shape.d[2] + 2 * n->ia[ip]), (long long)(x->shape.d[3] + 2 * n->ia[ip + 1]));
    }
    return true;
}

static bool infer_reshape(pn_node *n, const pn_node *x, const int64_t *list, int nlist, pn_shape_err *e) {
    char sbuf[128];
    bool batched = pn_shape_batched(&x->shape);
    int start = 0;
    if (nlist > 0 && list[0] == PN_LIST_BATCH) {
        if (!batched) return fail(e, 1, "'batch' in the new shape, but the input %s has no batch axis", SHAPE(x));
        start = 1;
    }
    int r = (batched ? 1 : 0) + nlist - start;
    if (r > PN_MAX_RANK) return fail(e, 1, "'reshape' target has more than %d dimensions", PN_MAX_RANK);
    if (nlist - start == 0 && !batched) return fail(e, 1, "'reshape' needs at least one dimension");
    n->shape.rank = r;
    int o = 0, infer = -1;
    int64_t known = 1;
    if (batched) n->shape.d[o++] = PN_BATCH;
    for (int i = start; i < nlist; i++) {
        int64_t d = list[i];
        if (d == PN_LIST_BATCH) return fail(e, 1, "'batch' can only be the first dimension");
        if (d == -1) {
            if (infer >= 0) return fail(e, 1, "only one dimension can be -1");
            infer = o;
        } else if (d < 1) {
            return fail(e, 1, "dimension %lld in 'reshape' must be positive (or -1 to infer it)", (long long)d);
        } else if (d > PN_MAX_DIM || __builtin_mul_overflow(known, d, &known) || known > PN_MAX_ELEMS) {
            return fail(e, 1, "'reshape' target is too large");
        }
        n->shape.d[o++] = d;
    }
    int64_t have = pn_shape_sample_elems(&x->shape);
    if (infer >= 0) {
        if (have % known != 0)
            return fail(e, 1, "cannot reshape %s: %lld elements per sample do not divide by %lld", SHAPE(x),
                        (long long)have, (long long)known);
        n->shape.d[infer] = have / known;
    } else if (known != have) {
        return fail(e, 1, "cannot reshape %s (%lld elements per sample) into %lld elements", SHAPE(x),
                    (long long)have, (long long)known);
    }
    return true;
}

static bool infer_matmul(pn_node *n, const pn_node *a, const pn_node *b, pn_shape_err *e) {
    char sbuf[128], sbuf2[128];
    pn_shape sa = a->shape, sb = b->shape;
    if (sa.rank < 1 || sb.rank < 1) return fail(e, -1, "'matmul' needs tensors of at least one dimension");
    bool va = sa.rank == 1, vb = sb.rank == 1;
    if (va) sa = (pn_shape){2, {1, sa.d[0]}};
    if (vb) sb = (pn_shape){2, {sb.d[0], 1}};
    int64_t k1 = sa.d[sa.rank - 1], k2 = sb.d[sb.rank - 2];
    if (k1 == PN_BATCH || k2 == PN_BATCH)
        return fail(e, -1, "'matmul' would contract over the batch axis");
    if (k1 != k2)
        return fail(e, -1, "'matmul' inner dimensions differ: %s times %s", SHAPE(a),
                    pn_shape_str(b->dtype, &b->shape, sbuf2, sizeof sbuf2));
    pn_shape ba = {sa.rank - 2, {0}}, bb = {sb.rank - 2, {0}}, bo;
    for (int i = 0; i < ba.rank; i++) ba.d[i] = sa.d[i];
    for (int i = 0; i < bb.rank; i++) bb.d[i] = sb.d[i];
    /* The batch axis may be the row axis of a (a: [batch, k]); keep it first in the result. */
    if (!pn_broadcast(&ba, &bb, &bo))
        return fail(e, -1, "'matmul' batch dimensions of %s and %s do not broadcast", SHAPE(a),
                    pn_shape_str(b->dtype, &b->shape, sbuf2, sizeof sbuf2));
    n->shape = bo;
    if (!va) n->shape.d[n->shape.rank++] = sa.d[sa.rank - 2];
    if (!vb) n->shape.d[n->shape.rank++] = sb.d[sb.rank - 1];
    if (n->shape.rank > PN_MAX_RANK) return fail(e, -1, "'matmul' result has too many dimensions");
    for (int i = 1; i < n->shape.rank; i++)
        if (n->shape.d[i] == PN_BATCH) return fail(e, -1, "'matmul' would move the batch axis off the first axis");
    return true;
}

/* The number of tensor inputs op takes, from its signature: [*min, *max]. */
static void arity(pn_op op, int *min, int *max) {
    const char *sig = pn_ops[op].sig;
    *min = *max = op == PN_OP_ADD || op == PN_OP_SUB || op == PN_OP_MUL || op == PN_OP_DIV ? 2 : 0;
    for (const char *p = sig; p && (p = strstr(p, ":tensor")); p += 7) {
        if (p[7] == 's') {
            *max = 64; /* none at all is the rule's own error */
        } else {
            (*min)++;
            (*max)++;
        }
    }
}

/* The name of call argument k in op's signature ("ids" of "ids:tensor vocab:int ..."). */
static const char *arg_name(pn_op op, int k, char *buf, size_t n) {
    const char *p = pn_ops[op].sig ? pn_ops[op].sig : "";
    for (; k > 0 && (p = strchr(p, ' ')); k--) p++;
    size_t len = p ? strcspn(p, ":") : 0;
    snprintf(buf, n, "%.*s", (int)len, p ? p : "");
    return buf;
}

bool pn_shape_infer(pn_node *n, const pn_node *const *in, int nin, const int64_t *list, int nlist, pn_shape_err *e) {
    char sbuf[128];
    const char *op = pn_ops[n->op].name;
    int min, max;
    arity(n->op, &min, &max);
    if (nin < min || nin > max) {
        e->arg = -1;
        if (min == max)
            snprintf(e->msg, sizeof e->msg, "'%s' takes %d input%s, not %d", op, min, min == 1 ? "" : "s", nin);
        else
            snprintf(e->msg, sizeof e->msg, "'%s' takes at most %d inputs, not %d", op, max, nin);
        return false;
    }
    if (n->op == PN_OP_INPUT) return true; /* shape and type given by the declaration */
    n->dtype = PN_F32;
    n->nparams = 0;
    e->arg = -1;
    e->msg[0] = 0;
    /* Every op reads f32 tensors except the inputs its row marks i32 (embedding ids, labels) or
     * of either type (positions' x). */
    for (int i = 0; i < nin; i++) {
        bool want_i32 = i < 32 && (pn_ops[n->op].i32_inputs >> i & 1);
        if (i < 32 && (pn_ops[n->op].any_inputs >> i & 1)) continue;
        if (want_i32 && in[i]->dtype != PN_I32) {
            char arg[64];
            return fail(e, i, "'%s' needs %s of type i32, but this is %s", op, arg_name(n->op, i, arg, sizeof arg),
                        pn_shape_str(in[i]->dtype, &in[i]->shape, sbuf, sizeof sbuf));
        }
        if (!want_i32 && !need_f32(in[i], i, op, e)) return false;
    }
    return pn_ops[n->op].shape(n, in, nin, list, nlist, e);
}

/* ---- the rules, pointed at by the op table (ops.c) ------------------------------------------- */
#define X (nin > 0 ? in[0] : NULL)

bool pn_shape_input(PN_SHAPE_ARGS) { return true; }

bool pn_shape_const(PN_SHAPE_ARGS) {
    if (!n->data) n->shape.rank = 0; /* a scalar; a tensor constant keeps its declared shape */
    return true;
}

bool pn_shape_binary(PN_SHAPE_ARGS) {
    char sbuf[128], sbuf2[128];
    if (!pn_broadcast(&in[0]->shape, &in[1]->shape, &n->shape))
        return fail(e, -1, "operands of '%s' do not broadcast: %s and %s", n->op == PN_OP_ADD ? "+" : n->op == PN_OP_SUB ? "-" : n->op == PN_OP_MUL ? "*" : "/",
                    SHAPE(in[0]), pn_shape_str(in[1]->dtype, &in[1]->shape, sbuf2, sizeof sbuf2));
    return true;
}

bool pn_shape_dense(PN_SHAPE_ARGS) {
    char sbuf[128];
    const pn_node *x = X;
    int64_t units = n->ia[PN_DENSE_UNITS];
    if (x->shape.rank < 1 || (x->shape.rank == 1 && pn_shape_batched(&x->shape)))
        return fail(e, 0, "'dense' needs a feature axis, but the input is %s", SHAPE(x));
    if (units < 1 || units > PN_MAX_DIM) return fail(e, 1, "'dense' units must be between 1 and %d", PN_MAX_DIM);
    int64_t fin = x->shape.d[x->shape.rank - 1];
    n->shape = x->shape;
    n->shape.d[n->shape.rank - 1] = units;
    add_param(n, "weight", true, 2, (int64_t[]){units, fin});
    if (n->ia[PN_DENSE_BIAS]) add_param(n, "bias", true, 1, (int64_t[]){units});
    int64_t pc;
    if (__builtin_mul_overflow(units, fin, &pc) || pc > PN_MAX_ELEMS)
        return fail(e, -1, "'dense' weight [%lld, %lld] is too large", (long long)units, (long long)fin);
    return true;
}

/* conv2d: weight [out_channels, in_channels / groups, KH, KW], as PyTorch's. */
bool pn_shape_conv2d(PN_SHAPE_ARGS) {
    char sbuf[128];
    const pn_node *x = X;
    int64_t oc = n->ia[PN_CONV_OUT], groups = n->ia[PN_CONV_GROUPS];
    if (oc < 1 || oc > PN_MAX_DIM) return fail(e, 1, "'conv2d' out_channels must be between 1 and %d", PN_MAX_DIM);
    if (!infer_window(n, x, PN_CONV_KH, PN_CONV_SH, PN_CONV_PH, true, e)) return false;
    if (groups < 1 || groups > PN_MAX_DIM) return fail(e, 7, "'conv2d' groups must be between 1 and %d", PN_MAX_DIM);
    if (x->shape.d[1] % groups != 0)
        return fail(e, 7, "'conv2d' groups %lld does not divide the %lld input channels of %s", (long long)groups,
                    (long long)x->shape.d[1], SHAPE(x));
    if (oc % groups != 0)
        return fail(e, 7, "'conv2d' groups %lld does not divide out_channels %lld", (long long)groups, (long long)oc);
    n->shape.d[1] = oc;
    int64_t w[4] = {oc, x->shape.d[1] / groups, n->ia[PN_CONV_KH], n->ia[PN_CONV_KW]}, pc = 1;
    for (int i = 0; i < 4; i++)
        if (__builtin_mul_overflow(pc, w[i], &pc) || pc > PN_MAX_ELEMS)
            return fail(e, -1, "'conv2d' weight is too large");
    add_param(n, "weight", true, 4, w);
    if (n->ia[PN_CONV_BIAS]) add_param(n, "bias", true, 1, (int64_t[]){oc});
    return true;
}

bool pn_shape_pool(PN_SHAPE_ARGS) {
    for (int k = 0; k < 2; k++)
        if (n->ia[PN_POOL_SH + k] == INT64_MIN) n->ia[PN_POOL_SH + k] = n->ia[PN_POOL_KH + k]; /* default: size */
    return infer_window(n, X, PN_POOL_KH, PN_POOL_SH, PN_POOL_PH, false, e);
}

bool pn_shape_global_avgpool(PN_SHAPE_ARGS) {
    char sbuf[128];
    const pn_node *x = X;
    if (x->shape.rank != 4) return fail(e, 0, "'global_avgpool' needs a 4-d NCHW input, but this is %s", SHAPE(x));
    n->shape = x->shape;
    n->shape.d[2] = n->shape.d[3] = 1;
    return true;
}

bool pn_shape_batchnorm(PN_SHAPE_ARGS) {
    char sbuf[128];
    const pn_node *x = X;
    if (x->shape.rank < 2 || x->shape.rank > 4)
        return fail(e, 0, "'batchnorm' needs an input of 2 to 4 dimensions [N, C, ...], but this is %s", SHAPE(x));
    if (!(n->fa[PN_FA_VALUE] > 0)) return fail(e, -1, "'batchnorm' eps must be positive");
    if (!(n->fa[PN_FA_MOMENTUM] >= 0 && n->fa[PN_FA_MOMENTUM] <= 1)) return fail(e, -1, "'batchnorm' momentum must be between 0 and 1");
    int64_t c = x->shape.d[1];
    n->shape = x->shape;
    add_param(n, "weight", true, 1, &c);
    add_param(n, "bias", true, 1, &c);
    add_param(n, "running_mean", false, 1, &c);
    add_param(n, "running_var", false, 1, &c);
    return true;
}

bool pn_shape_layernorm(PN_SHAPE_ARGS) {
    char sbuf[128];
    const pn_node *x = X;
    if (x->shape.rank < 1 || (x->shape.rank == 1 && pn_shape_batched(&x->shape)))
        return fail(e, 0, "'layernorm' needs a feature axis, but the input is %s", SHAPE(x));
    if (!(n->fa[PN_FA_VALUE] > 0)) return fail(e, -1, "'layernorm' eps must be positive");
    int64_t d = x->shape.d[x->shape.rank - 1];
    n->shape = x->shape;
    add_param(n, "weight", true, 1, &d);
    add_param(n, "bias", true, 1, &d);
    return true;
}

bool pn_shape_embedding(PN_SHAPE_ARGS) {
    const pn_node *x = X;
    int64_t vocab = n->ia[PN_EMB_VOCAB], dim = n->ia[PN_EMB_DIM], pc;
    if (vocab < 1 || vocab > PN_MAX_DIM) return fail(e, 1, "'embedding' vocab must be between 1 and %d", PN_MAX_DIM);
    if (dim < 1 || dim > PN_MAX_DIM) return fail(e, 2, "'embedding' dim must be between 1 and %d", PN_MAX_DIM);
    if (x->shape.rank >= PN_MAX_RANK) return fail(e, 0, "'embedding' result would have more than %d dimensions", PN_MAX_RANK);
    /* Ids that positions computes are not checked at run time like an input's: check them here. */
    if (x->op == PN_OP_POSITIONS && x->shape.d[x->shape.rank - 1] > vocab)
        return fail(e, 1, "'embedding' vocab %lld is smaller than the %lld positions it looks up", (long long)vocab,
                    (long long)x->shape.d[x->shape.rank - 1]);
    if (__builtin_mul_overflow(vocab, dim, &pc) || pc > PN_MAX_ELEMS) return fail(e, -1, "'embedding' table is too large");
    n->shape = x->shape;
    n->shape.d[n->shape.rank++] = dim;
    add_param(n, "weight", true, 2, (int64_t[]){vocab, dim});
    return true;
}

/* Elementwise activations: the input's shape. */
bool pn_shape_same(PN_SHAPE_ARGS) {
    n->shape = X->shape;
    return true;
}

bool pn_shape_dropout(PN_SHAPE_ARGS) {
    if (!(n->fa[PN_FA_VALUE] >= 0 && n->fa[PN_FA_VALUE] < 1)) return fail(e, 1, "'dropout' p must be in [0, 1)");
    n->shape = X->shape;
    return true;
}

bool pn_shape_softmax(PN_SHAPE_ARGS) {
    char sbuf[128];
    const pn_node *x = X;
    const char *op = pn_ops[n->op].name;
    if (x->shape.rank < 1) return fail(e, 0, "'%s' needs a tensor of at least one dimension", op);
    if (!norm_axis(&n->ia[PN_AXIS], x->shape.rank))
        return fail(e, 1, "axis %lld is out of range for %s", (long long)n->ia[PN_AXIS], SHAPE(x));
    if (n->ia[PN_AXIS] == 0 && pn_shape_batched(&x->shape))
        return fail(e, 1, "'%s' over the batch axis is not supported", op);
    n->shape = x->shape;
    return true;
}

/* causal_softmax: softmax over the last axis, row i of the last-but-one axis masked to columns
 * j <= i; both axes are a sample's, so the rank is at least 2 (3 with a batch axis). */
bool pn_shape_causal_softmax(PN_SHAPE_ARGS) {
    char sbuf[128];
    const pn_node *x = X;
    if (x->shape.rank < 2 + (pn_shape_batched(&x->shape) ? 1 : 0))
        return fail(e, 0, "'causal_softmax' needs rows and columns after the batch axis ([..., T, S]), but this is %s",
                    SHAPE(x));
    n->ia[PN_AXIS] = x->shape.rank - 1;
    n->shape = x->shape;
    return true;
}

bool pn_shape_flatten(PN_SHAPE_ARGS) {
    char sbuf[128];
    const pn_node *x = X;
    if (x->shape.rank < 2) return fail(e, 0, "'flatten' needs at least 2 dimensions, but the input is %s", SHAPE(x));
    int64_t rest = 1;
    for (int i = 1; i < x->shape.rank; i++) rest *= x->shape.d[i];
    n->shape = (pn_shape){2, {x->shape.d[0], rest}};
    return true;
}

bool pn_shape_reshape(PN_SHAPE_ARGS) { return infer_reshape(n, X, list, nlist, e); }

bool pn_shape_concat(PN_SHAPE_ARGS) {
    char sbuf[128], sbuf2[128];
    const pn_node *x = X;
    if (nin < 1) return fail(e, -1, "'concat' needs at least one tensor");
    int r = x->shape.rank;
    if (r < 1) return fail(e, 0, "'concat' needs tensors of at least one dimension");
    if (!norm_axis(&n->ia[PN_AXIS], r)) return fail(e, nin, "axis %lld is out of range for %s", (long long)n->ia[PN_AXIS], SHAPE(x));
    int axis = (int)n->ia[PN_AXIS];
    if (axis == 0 && pn_shape_batched(&x->shape)) return fail(e, nin, "'concat' along the batch axis is not supported");
    n->shape = x->shape;
    for (int i = 1; i < nin; i++) {
        const pn_shape *s = &in[i]->shape;
        bool ok = s->rank == r;
        for (int k = 0; ok && k < r; k++) ok = k == axis || s->d[k] == x->shape.d[k];
        if (ok && pn_shape_batched(s) != pn_shape_batched(&x->shape))
            return fail(e, i, "'concat' operand %s and %s differ in having a batch axis",
                        pn_shape_str(in[i]->dtype, s, sbuf2, sizeof sbuf2), SHAPE(x));
        if (!ok)
            return fail(e, i, "'concat' operand %s does not match %s outside axis %d",
                        pn_shape_str(in[i]->dtype, s, sbuf2, sizeof sbuf2), SHAPE(x), axis);
        if (__builtin_add_overflow(n->shape.d[axis], s->d[axis], &n->shape.d[axis]) || n->shape.d[axis] > PN_MAX_DIM)
            return fail(e, -1, "'concat' result is too large");
    }
    return true;
}

bool pn_shape_transpose(PN_SHAPE_ARGS) {
    char sbuf[128];
    const pn_node *x = X;
    int r = x->shape.rank;
    if (nlist != r) return fail(e, 1, "'transpose' permutation has %d entries, but the input %s has %d dimensions", nlist, SHAPE(x), r);
    bool seen[PN_MAX_RANK] = {0};
    for (int i = 0; i < r; i++) {
        int64_t p = list[i];
        if (p != PN_LIST_BATCH && p < 0 && p >= -r) p += r;
        if (p == PN_LIST_BATCH || p < 0 || p >= r || seen[p]) return fail(e, 1, "'transpose' needs a permutation of 0..%d", r - 1);
        seen[p] = true;
        n->ia[PN_PERM + i] = p;
        n->shape.d[i] = x->shape.d[p];
    }
    n->shape.rank = r;
    if (pn_shape_batched(&x->shape) && n->ia[PN_PERM] != 0) return fail(e, 1, "'transpose' cannot move the batch axis");
    return true;
}

/* slice(x, axis, start, end): elements start..end-1 along axis. A negative axis, start or end
 * counts from the end (Python's x[..., -3:-1]); out of range is an error, never clamped: start in
 * [-size, size), end in [-size, size] and after start. The node keeps them non-negative. */
bool pn_shape_slice(PN_SHAPE_ARGS) {
    char sbuf[128];
    const pn_node *x = X;
    if (x->shape.rank < 1) return fail(e, 0, "'slice' needs a tensor of at least one dimension");
    if (!norm_axis(&n->ia[PN_AXIS], x->shape.rank))
        return fail(e, 1, "axis %lld is out of range for %s", (long long)n->ia[PN_AXIS], SHAPE(x));
    int axis = (int)n->ia[PN_AXIS];
    if (axis == 0 && pn_shape_batched(&x->shape)) return fail(e, 1, "'slice' along the batch axis is not supported");
    int64_t size = x->shape.d[axis], *start = &n->ia[PN_SLICE_START], *end = &n->ia[PN_SLICE_END];
    if (*start < -size || *start >= size)
        return fail(e, 2, "'slice' start %lld is out of range for axis %d of %s (%lld to %lld)", (long long)*start, axis,
                    SHAPE(x), (long long)-size, (long long)size - 1);
    if (*end < -size || *end > size)
        return fail(e, 3, "'slice' end %lld is out of range for axis %d of %s (%lld to %lld)", (long long)*end, axis,
                    SHAPE(x), (long long)-size, (long long)size);
    int64_t s = *start < 0 ? *start + size : *start, t = *end < 0 ? *end + size : *end;
    if (t <= s)
        return fail(e, 3, "'slice' end %lld is not after start %lld: the slice of axis %d would be empty", (long long)*end,
                    (long long)*start, axis);
    *start = s;
    *end = t;
    n->shape = x->shape;
    n->shape.d[axis] = t - s;
    return true;
}

/* pad(x, padding): zeros around the spatial axes of an NCHW tensor; padding is [rows, cols] (both
 * sides) or [top, bottom, left, right], kept in ia[PN_PAD_TOP..PN_PAD_RIGHT]. */
bool pn_shape_pad(PN_SHAPE_ARGS) {
    char sbuf[128];
    const pn_node *x = X;
    if (x->shape.rank != 4) return fail(e, 0, "'pad' needs a 4-d NCHW input, but this is %s", SHAPE(x));
    if (nlist != 2 && nlist != 4)
        return fail(e, 1, "'pad' padding must be [rows, cols] or [top, bottom, left, right], not a list of %d", nlist);
    for (int k = 0; k < nlist; k++)
        if (list[k] < 0 || list[k] > PN_MAX_DIM)
            return fail(e, 1, "'pad' padding must be between 0 and %d, not %lld", PN_MAX_DIM, (long long)list[k]);
    int64_t *p = &n->ia[PN_PAD_TOP];
    if (nlist == 2) p[0] = p[1] = list[0], p[2] = p[3] = list[1];
    else for (int k = 0; k < 4; k++) p[k] = list[k];
    n->shape = x->shape;
    n->shape.d[2] += p[0] + p[1];
    n->shape.d[3] += p[2] + p[3];
    return pn_shape_check_size(&n->shape, e);
}

/* prelu(x): y = x > 0 ? x : weight[c] x, one learnable slope per channel c (axis 1). */
bool pn_shape_prelu(PN_SHAPE_ARGS) {
    char sbuf[128];
    const pn_node *x = X;
    if (x->shape.rank < 2) return fail(e, 0, "'prelu' needs a channel axis (axis 1), but the input is %s", SHAPE(x));
    int64_t c = x->shape.d[1];
    n->shape = x->shape;
    add_param(n, "weight", true, 1, &c);
    return true;
}

/* positions(x, axis): the i32 indices 0..T-1 of x's axis (of length T), shaped as x's axes up to
 * that one, so that embedding(positions(ids), T, D) has the shape of embedding(ids, V, D). */
bool pn_shape_positions(PN_SHAPE_ARGS) {
    char sbuf[128];
    const pn_node *x = X;
    if (x->shape.rank < 1) return fail(e, 0, "'positions' needs a tensor of at least one dimension");
    if (!norm_axis(&n->ia[PN_AXIS], x->shape.rank))
        return fail(e, 1, "axis %lld is out of range for %s", (long long)n->ia[PN_AXIS], SHAPE(x));
    int axis = (int)n->ia[PN_AXIS];
    if (axis == 0 && pn_shape_batched(&x->shape))
        return fail(e, 1, "'positions' along the batch axis is not supported: it counts positions within a sample");
    n->shape = x->shape;
    n->shape.rank = axis + 1;
    n->dtype = PN_I32;
    return true;
}

bool pn_shape_matmul(PN_SHAPE_ARGS) { return infer_matmul(n, in[0], in[1], e); }

bool pn_shape_cross_entropy(PN_SHAPE_ARGS) {
    char sbuf[128], sbuf2[128];
    const pn_node *x = X, *lab = in[1];
    if (x->shape.rank != 2) return fail(e, 0, "'cross_entropy' needs logits [N, C], but this is %s", SHAPE(x));
    if (lab->shape.rank != 1 || lab->shape.d[0] != x->shape.d[0])
        return fail(e, 1, "'cross_entropy' labels must be [N] for logits %s, but this is %s", SHAPE(x),
                    pn_shape_str(lab->dtype, &lab->shape, sbuf2, sizeof sbuf2));
    n->shape.rank = 0;
    return true;
}

bool pn_shape_mse(PN_SHAPE_ARGS) {
    char sbuf[128], sbuf2[128];
    if (in[0]->shape.rank != in[1]->shape.rank ||
        memcmp(in[0]->shape.d, in[1]->shape.d, sizeof(int64_t) * (size_t)in[0]->shape.rank) != 0)
        return fail(e, 1, "'mse' needs prediction and target of one shape, but they are %s and %s", SHAPE(in[0]),
                    pn_shape_str(in[1]->dtype, &in[1]->shape, sbuf2, sizeof sbuf2));
    n->shape.rank = 0;
    return true;
}
