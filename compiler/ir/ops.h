/* The per-op functions the op table (ops.c) points at, declared by family. Internal to ir/: the
 * rest of the compiler reaches them through pn_ops[op]. */
#ifndef PN_OPS_H
#define PN_OPS_H
#include "graph.h"
#include "shapes.h"

/* Shape rules (shapes.c): the signature of pn_op_info.shape. */
#define PN_SHAPE_ARGS pn_node *n, const pn_node *const *in, int nin, const int64_t *list, int nlist, pn_shape_err *e
bool pn_shape_input(PN_SHAPE_ARGS);
bool pn_shape_const(PN_SHAPE_ARGS);
bool pn_shape_binary(PN_SHAPE_ARGS);
bool pn_shape_dense(PN_SHAPE_ARGS);
bool pn_shape_conv2d(PN_SHAPE_ARGS);
bool pn_shape_pool(PN_SHAPE_ARGS);
bool pn_shape_global_avgpool(PN_SHAPE_ARGS);
bool pn_shape_batchnorm(PN_SHAPE_ARGS);
bool pn_shape_layernorm(PN_SHAPE_ARGS);
bool pn_shape_embedding(PN_SHAPE_ARGS);
bool pn_shape_same(PN_SHAPE_ARGS);
bool pn_shape_dropout(PN_SHAPE_ARGS);
bool pn_shape_softmax(PN_SHAPE_ARGS);
bool pn_shape_flatten(PN_SHAPE_ARGS);
bool pn_shape_reshape(PN_SHAPE_ARGS);
bool pn_shape_concat(PN_SHAPE_ARGS);
bool pn_shape_transpose(PN_SHAPE_ARGS);
bool pn_shape_matmul(PN_SHAPE_ARGS);
bool pn_shape_cross_entropy(PN_SHAPE_ARGS);
bool pn_shape_mse(PN_SHAPE_ARGS);

#endif
