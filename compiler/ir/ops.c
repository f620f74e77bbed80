/* The op table: one row per op of ops.def, in its order, with everything the IR knows about the
 * op: its shape rule, its FLOP count, its attributes in the text form, its inputs that are i32,
 * those that carry no gradient and those of either type, and its reference forward and backward
 * in double
 * (reference.c). Adding an op to ops.def without its ROW_ here does not
 * compile. */
#include "ops.h"

#include <string.h>

/* ---- FLOPs per sample (multiply-add = 2); out is the output's elements per sample ------------- */
static const pn_shape *in_shape(const pn_graph *g, const pn_node *n, int k) { return &g->nodes[n->in[k]].shape; }

static int64_t flops_zero(const pn_graph *g, const pn_node *n, int64_t out) { return 0; }
static int64_t flops_one(const pn_graph *g, const pn_node *n, int64_t out) { return out; }
static int64_t flops_two(const pn_graph *g, const pn_node *n, int64_t out) { return 2 * out; }
static int64_t flops_four(const pn_graph *g, const pn_node *n, int64_t out) { return 4 * out; }
static int64_t flops_five(const pn_graph *g, const pn_node *n, int64_t out) { return 5 * out; }

/* dense and matmul: one multiply-add per output and contracted element. */
static int64_t flops_contract(const pn_graph *g, const pn_node *n, int64_t out) {
    const pn_shape *x = in_shape(g, n, 0);
    return 2 * out * x->d[x->rank - 1];
}

/* conv2d: each output reads its group's channels (all of them when groups = 1). */
static int64_t flops_conv2d(const pn_graph *g, const pn_node *n, int64_t out) {
    int64_t groups = n->ia[PN_CONV_GROUPS] > 1 ? n->ia[PN_CONV_GROUPS] : 1;
    return 2 * out * (in_shape(g, n, 0)->d[1] / groups) * n->ia[PN_CONV_KH] * n->ia[PN_CONV_KW];
}

static int64_t flops_pool(const pn_graph *g, const pn_node *n, int64_t out) {
    return out * n->ia[PN_POOL_KH] * n->ia[PN_POOL_KW];
}

static int64_t flops_global_avgpool(const pn_graph *g, const pn_node *n, int64_t out) {
    return pn_shape_sample_elems(in_shape(g, n, 0));
}

static int64_t flops_loss(const pn_graph *g, const pn_node *n, int64_t out) {
    return n->ninputs ? 3 * pn_shape_sample_elems(in_shape(g, n, 0)) : 0;
}

/* ---- attributes of the text form: key, kind and slot ----------------------------------------- */
#define A(key, kind, slot) {key, kind, slot}
static const pn_attr_desc none[] = {{0}};
static const pn_attr_desc const_a[] = {A("value", 'f', PN_FA_VALUE)};
static const pn_attr_desc dense_a[] = {A("units", 'i', PN_DENSE_UNITS), A("bias", 'b', PN_DENSE_BIAS),
                                       A("frozen", 'B', PN_DENSE_FROZEN)};
static const pn_attr_desc conv_a[] = {A("out_channels", 'i', PN_CONV_OUT), A("kernel", 'p', PN_CONV_KH),
                                      A("stride", 'p', PN_CONV_SH), A("padding", 'p', PN_CONV_PH),
                                      A("bias", 'b', PN_CONV_BIAS), A("frozen", 'B', PN_CONV_FROZEN),
                                      A("groups", 'g', PN_CONV_GROUPS)};
static const pn_attr_desc bn_a[] = {A("eps", 'f', PN_FA_VALUE), A("momentum", 'f', PN_FA_MOMENTUM),
                                    A("frozen", 'B', PN_NORM_FROZEN)};
static const pn_attr_desc ln_a[] = {A("eps", 'f', PN_FA_VALUE), A("frozen", 'B', PN_NORM_FROZEN)};
static const pn_attr_desc emb_a[] = {A("vocab", 'i', PN_EMB_VOCAB), A("dim", 'i', PN_EMB_DIM),
                                     A("frozen", 'B', PN_EMB_FROZEN)};
static const pn_attr_desc pool_a[] = {A("size", 'p', PN_POOL_KH), A("stride", 'p', PN_POOL_SH),
                                      A("padding", 'p', PN_POOL_PH)};
static const pn_attr_desc slope_a[] = {A("slope", 'f', PN_FA_VALUE)};
static const pn_attr_desc alpha_a[] = {A("alpha", 'f', PN_FA_VALUE)};
static const pn_attr_desc prelu_a[] = {A("frozen", 'B', PN_PRELU_FROZEN)};
static const pn_attr_desc pad_a[] = {A("top", 'i', PN_PAD_TOP), A("bottom", 'i', PN_PAD_BOTTOM), A("left", 'i', PN_PAD_LEFT),
                                     A("right", 'i', PN_PAD_RIGHT)};
static const pn_attr_desc p_a[] = {A("p", 'f', PN_FA_VALUE)};
static const pn_attr_desc axis_a[] = {A("axis", 'i', PN_AXIS)};
static const pn_attr_desc perm_a[] = {A("perm", 'l', PN_PERM)};
static const pn_attr_desc slice_a[] = {A("axis", 'i', PN_AXIS), A("start", 'i', PN_SLICE_START),
                                       A("end", 'i', PN_SLICE_END)};
#define ATTRS(t) (t), (int)(sizeof(t) / sizeof((t)[0]))
#define NO_ATTRS none, 0
#define IN(k) (1u << (k))

/* ---- the rows ---------------------------------------------------------------------------------- */
/*                         shape rule               FLOPs                 attributes      i32    no     any    reference forward,
 *                                                                                        input  grad   type   backward */
#define ROW_INPUT          pn_shape_input,          flops_zero,           NO_ATTRS,       0,     0,     0,     pn_ref_input,          NULL
#define ROW_CONST          pn_shape_const,          flops_zero,           ATTRS(const_a), 0,     0,     0,     pn_ref_const,          NULL
#define ROW_ADD            pn_shape_binary,         flops_one,            NO_ATTRS,       0,     0,     0,     pn_ref_binary,         pn_ref_binary_grad
#define ROW_SUB            pn_shape_binary,         flops_one,            NO_ATTRS,       0,     0,     0,     pn_ref_binary,         pn_ref_binary_grad
#define ROW_MUL            pn_shape_binary,         flops_one,            NO_ATTRS,       0,     0,     0,     pn_ref_binary,         pn_ref_binary_grad
#define ROW_DIV            pn_shape_binary,         flops_one,            NO_ATTRS,       0,     0,     0,     pn_ref_binary,         pn_ref_binary_grad
#define ROW_DENSE          pn_shape_dense,          flops_contract,       ATTRS(dense_a), 0,     0,     0,     pn_ref_dense,          pn_ref_dense_grad
#define ROW_CONV2D         pn_shape_conv2d,         flops_conv2d,         ATTRS(conv_a),  0,     0,     0,     pn_ref_conv2d,         pn_ref_conv2d_grad
#define ROW_BATCHNORM      pn_shape_batchnorm,      flops_two,            ATTRS(bn_a),    0,     0,     0,     pn_ref_batchnorm,      pn_ref_batchnorm_grad
#define ROW_LAYERNORM      pn_shape_layernorm,      flops_five,           ATTRS(ln_a),    0,     0,     0,     pn_ref_layernorm,      pn_ref_layernorm_grad
#define ROW_EMBEDDING      pn_shape_embedding,      flops_zero,           ATTRS(emb_a),   IN(0), IN(0), 0,     pn_ref_embedding,      pn_ref_embedding_grad
#define ROW_MAXPOOL2D      pn_shape_pool,           flops_pool,           ATTRS(pool_a),  0,     0,     0,     pn_ref_pool,           pn_ref_pool_grad
#define ROW_AVGPOOL2D      pn_shape_pool,           flops_pool,           ATTRS(pool_a),  0,     0,     0,     pn_ref_pool,           pn_ref_pool_grad
#define ROW_GLOBAL_AVGPOOL pn_shape_global_avgpool, flops_global_avgpool, NO_ATTRS,       0,     0,     0,     pn_ref_global_avgpool, pn_ref_global_avgpool_grad
#define ROW_RELU           pn_shape_same,           flops_one,            NO_ATTRS,       0,     0,     0,     pn_ref_relu,           pn_ref_relu_grad
#define ROW_LEAKY_RELU     pn_shape_same,           flops_one,            ATTRS(slope_a), 0,     0,     0,     pn_ref_leaky_relu,     pn_ref_leaky_relu_grad
#define ROW_SIGMOID        pn_shape_same,           flops_four,           NO_ATTRS,       0,     0,     0,     pn_ref_sigmoid,        pn_ref_sigmoid_grad
#define ROW_TANH           pn_shape_same,           flops_four,           NO_ATTRS,       0,     0,     0,     pn_ref_tanh,           pn_ref_tanh_grad
#define ROW_GELU           pn_shape_same,           flops_four,           NO_ATTRS,       0,     0,     0,     pn_ref_gelu,           pn_ref_gelu_grad
#define ROW_SILU           pn_shape_same,           flops_five,           NO_ATTRS,       0,     0,     0,     pn_ref_silu,           pn_ref_silu_grad
#define ROW_ELU            pn_shape_same,           flops_four,           ATTRS(alpha_a), 0,     0,     0,     pn_ref_elu,            pn_ref_elu_grad
#define ROW_SOFTPLUS       pn_shape_same,           flops_five,           NO_ATTRS,       0,     0,     0,     pn_ref_softplus,       pn_ref_softplus_grad
#define ROW_PRELU          pn_shape_prelu,          flops_two,            ATTRS(prelu_a), 0,     0,     0,     pn_ref_prelu,          pn_ref_prelu_grad
#define ROW_SOFTMAX        pn_shape_softmax,        flops_five,           ATTRS(axis_a),  0,     0,     0,     pn_ref_softmax,        pn_ref_softmax_grad
#define ROW_LOG_SOFTMAX    pn_shape_softmax,        flops_five,           ATTRS(axis_a),  0,     0,     0,     pn_ref_softmax,        pn_ref_softmax_grad
#define ROW_CAUSAL_SOFTMAX pn_shape_causal_softmax, flops_five,           NO_ATTRS,       0,     0,     0,     pn_ref_softmax,        pn_ref_softmax_grad
#define ROW_FLATTEN        pn_shape_flatten,        flops_zero,           NO_ATTRS,       0,     0,     0,     pn_ref_view,           pn_ref_view_grad
#define ROW_RESHAPE        pn_shape_reshape,        flops_zero,           NO_ATTRS,       0,     0,     0,     pn_ref_view,           pn_ref_view_grad
#define ROW_CONCAT         pn_shape_concat,         flops_zero,           ATTRS(axis_a),  0,     0,     0,     pn_ref_concat,         pn_ref_concat_grad
#define ROW_TRANSPOSE      pn_shape_transpose,      flops_zero,           ATTRS(perm_a),  0,     0,     0,     pn_ref_transpose,      pn_ref_transpose_grad
#define ROW_SLICE          pn_shape_slice,          flops_zero,           ATTRS(slice_a), 0,     0,     0,     pn_ref_slice,          pn_ref_slice_grad
#define ROW_PAD            pn_shape_pad,            flops_zero,           ATTRS(pad_a),   0,     0,     0,     pn_ref_pad,            pn_ref_pad_grad
#define ROW_POSITIONS      pn_shape_positions,      flops_zero,           ATTRS(axis_a),  0,     IN(0), IN(0), pn_ref_positions,      NULL
#define ROW_MATMUL         pn_shape_matmul,         flops_contract,       NO_ATTRS,       0,     0,     0,     pn_ref_matmul,         pn_ref_matmul_grad
#define ROW_DROPOUT        pn_shape_dropout,        flops_zero,           ATTRS(p_a),     0,     0,     0,     pn_ref_dropout,        pn_ref_dropout_grad
#define ROW_CROSS_ENTROPY  pn_shape_cross_entropy,  flops_loss,           NO_ATTRS,       IN(1), IN(1), 0,     pn_ref_cross_entropy,  pn_ref_cross_entropy_grad
#define ROW_MSE            pn_shape_mse,            flops_loss,           NO_ATTRS,       0,     IN(1), 0,     pn_ref_mse,            pn_ref_mse_grad
const pn_op_info pn_ops[] = {
#define PN_OP(id, name, sig, flags) [PN_OP_##id] = {name, sig, flags, ROW_##id},
#include "../ops.def"
#undef PN_OP
};
_Static_assert(sizeof(pn_ops) / sizeof(pn_ops[0]) == PN_OP_COUNT, "op table out of sync with ops.def");

pn_op pn_op_lookup(const char *name) {
    for (int i = 0; i < PN_OP_COUNT; i++)
        if (!(pn_ops[i].flags & PN_OPF_INTERNAL) && strcmp(pn_ops[i].name, name) == 0) return (pn_op)i;
    return PN_OP_COUNT;
}

const pn_attr_desc *pn_op_attrs(pn_op op, int *n) {
    *n = pn_ops[op].nattrs;
    return pn_ops[op].attrs;
}
