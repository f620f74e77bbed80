/* The attributes of each op as they appear in the text form: key, kind and slot. One table
 * serves the printer and the parser. */
#include "graph.h"

#define A(key, kind, slot) {key, kind, slot}
static const pn_attr_desc none[] = {{0}};
static const pn_attr_desc const_a[] = {A("value", 'f', PN_FA_VALUE)};
static const pn_attr_desc dense_a[] = {A("units", 'i', PN_DENSE_UNITS), A("bias", 'b', PN_DENSE_BIAS)};
static const pn_attr_desc conv_a[] = {A("out_channels", 'i', PN_CONV_OUT), A("kernel", 'p', PN_CONV_KH),
                                      A("stride", 'p', PN_CONV_SH), A("padding", 'p', PN_CONV_PH),
                                      A("bias", 'b', PN_CONV_BIAS)};
static const pn_attr_desc bn_a[] = {A("eps", 'f', PN_FA_VALUE), A("momentum", 'f', PN_FA_MOMENTUM)};
static const pn_attr_desc ln_a[] = {A("eps", 'f', PN_FA_VALUE)};
static const pn_attr_desc emb_a[] = {A("vocab", 'i', PN_EMB_VOCAB), A("dim", 'i', PN_EMB_DIM)};
static const pn_attr_desc pool_a[] = {A("size", 'p', PN_POOL_KH), A("stride", 'p', PN_POOL_SH),
                                      A("padding", 'p', PN_POOL_PH)};
static const pn_attr_desc slope_a[] = {A("slope", 'f', PN_FA_VALUE)};
static const pn_attr_desc p_a[] = {A("p", 'f', PN_FA_VALUE)};
static const pn_attr_desc axis_a[] = {A("axis", 'i', PN_AXIS)};
static const pn_attr_desc perm_a[] = {A("perm", 'l', PN_PERM)};

#define LIST(t) (t), (int)(sizeof(t) / sizeof((t)[0]))

const pn_attr_desc *pn_op_attrs(pn_op op, int *n) {
    switch (op) {
    case PN_OP_CONST: return *n = 1, const_a;
    case PN_OP_DENSE: return *n = 2, dense_a;
    case PN_OP_CONV2D: return *n = 5, conv_a;
    case PN_OP_BATCHNORM: return *n = 2, bn_a;
    case PN_OP_LAYERNORM: return *n = 1, ln_a;
    case PN_OP_EMBEDDING: return *n = 2, emb_a;
    case PN_OP_MAXPOOL2D:
    case PN_OP_AVGPOOL2D: return *n = 3, pool_a;
    case PN_OP_LEAKY_RELU: return *n = 1, slope_a;
    case PN_OP_DROPOUT: return *n = 1, p_a;
    case PN_OP_SOFTMAX:
    case PN_OP_LOG_SOFTMAX:
    case PN_OP_CONCAT: return *n = 1, axis_a;
    case PN_OP_TRANSPOSE: return *n = 1, perm_a;
    case PN_OP_INPUT:
    case PN_OP_ADD:
    case PN_OP_SUB:
    case PN_OP_MUL:
    case PN_OP_GLOBAL_AVGPOOL:
    case PN_OP_RELU:
    case PN_OP_SIGMOID:
    case PN_OP_TANH:
    case PN_OP_GELU:
    case PN_OP_FLATTEN:
    case PN_OP_RESHAPE:
    case PN_OP_MATMUL:
    case PN_OP_CROSS_ENTROPY:
    case PN_OP_MSE:
    case PN_OP_COUNT: break;
    }
    *n = 0;
    return none;
}
