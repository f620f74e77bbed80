/* Shape rules: one per op, pure functions of the input shapes and the node's attributes. */
#ifndef PN_SHAPES_H
#define PN_SHAPES_H
#include "graph.h"

#include <stddef.h>

enum { PN_MAX_DIM = 2147483647 };
#define PN_MAX_ELEMS (INT64_C(1) << 48)
#define PN_LIST_BATCH INT64_MIN /* `batch` inside a reshape list */

/* The outcome of a shape rule: on failure, msg says why and arg names the offending call
 * argument (-1: the call as a whole). */
typedef struct pn_shape_err {
    char msg[256];
    int arg;
} pn_shape_err;

/* Fills n->shape, n->dtype and n->params from the inputs and n->ia/fa/list. Returns false with
 * err set on a user error. inputs[i] points at the i-th input node. */
bool pn_shape_infer(pn_node *n, const pn_node *const *inputs, int ninputs, const int64_t *list, int nlist,
                    pn_shape_err *err);

/* NumPy broadcasting with the symbolic batch dimension; false if the shapes do not broadcast. */
bool pn_broadcast(const pn_shape *a, const pn_shape *b, pn_shape *out);
/* Checks size limits of a shape; false with err set when it is too large. */
bool pn_shape_check_size(const pn_shape *s, pn_shape_err *err);

/* The per-op shape rules that the op table (ir/ops.c) points at, by family. */
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
bool pn_shape_causal_softmax(PN_SHAPE_ARGS);
bool pn_shape_flatten(PN_SHAPE_ARGS);
bool pn_shape_reshape(PN_SHAPE_ARGS);
bool pn_shape_concat(PN_SHAPE_ARGS);
bool pn_shape_transpose(PN_SHAPE_ARGS);
bool pn_shape_slice(PN_SHAPE_ARGS);
bool pn_shape_pad(PN_SHAPE_ARGS);
bool pn_shape_prelu(PN_SHAPE_ARGS);
bool pn_shape_positions(PN_SHAPE_ARGS);
bool pn_shape_matmul(PN_SHAPE_ARGS);
bool pn_shape_cross_entropy(PN_SHAPE_ARGS);
bool pn_shape_mse(PN_SHAPE_ARGS);

#endif
