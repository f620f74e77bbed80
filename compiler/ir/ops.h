/* The per-op functions the op table (ops.c) points at, declared by family. Internal to ir/: the
 * rest of the compiler reaches them through pn_ops[op]. */
#ifndef PN_OPS_H
#define PN_OPS_H
#include "graph.h"
#include "shapes.h"

/* The reference twin (reference.c): a run's state, each op's forward and backward. */
typedef struct pn_ref pn_ref;
bool pn_ref_input(pn_ref *r, int i);
bool pn_ref_const(pn_ref *r, int i);
bool pn_ref_binary(pn_ref *r, int i);
void pn_ref_binary_grad(pn_ref *r, int i);
bool pn_ref_dense(pn_ref *r, int i);
void pn_ref_dense_grad(pn_ref *r, int i);
bool pn_ref_conv2d(pn_ref *r, int i);
void pn_ref_conv2d_grad(pn_ref *r, int i);
bool pn_ref_pool(pn_ref *r, int i);
void pn_ref_pool_grad(pn_ref *r, int i);
bool pn_ref_global_avgpool(pn_ref *r, int i);
void pn_ref_global_avgpool_grad(pn_ref *r, int i);
bool pn_ref_batchnorm(pn_ref *r, int i);
void pn_ref_batchnorm_grad(pn_ref *r, int i);
bool pn_ref_layernorm(pn_ref *r, int i);
void pn_ref_layernorm_grad(pn_ref *r, int i);
bool pn_ref_embedding(pn_ref *r, int i);
void pn_ref_embedding_grad(pn_ref *r, int i);
bool pn_ref_relu(pn_ref *r, int i);
void pn_ref_relu_grad(pn_ref *r, int i);
bool pn_ref_leaky_relu(pn_ref *r, int i);
void pn_ref_leaky_relu_grad(pn_ref *r, int i);
bool pn_ref_sigmoid(pn_ref *r, int i);
void pn_ref_sigmoid_grad(pn_ref *r, int i);
bool pn_ref_tanh(pn_ref *r, int i);
void pn_ref_tanh_grad(pn_ref *r, int i);
bool pn_ref_gelu(pn_ref *r, int i);
void pn_ref_gelu_grad(pn_ref *r, int i);
bool pn_ref_silu(pn_ref *r, int i);
void pn_ref_silu_grad(pn_ref *r, int i);
bool pn_ref_elu(pn_ref *r, int i);
void pn_ref_elu_grad(pn_ref *r, int i);
bool pn_ref_softplus(pn_ref *r, int i);
void pn_ref_softplus_grad(pn_ref *r, int i);
bool pn_ref_prelu(pn_ref *r, int i);
void pn_ref_prelu_grad(pn_ref *r, int i);
bool pn_ref_dropout(pn_ref *r, int i);
void pn_ref_dropout_grad(pn_ref *r, int i);
bool pn_ref_softmax(pn_ref *r, int i);
void pn_ref_softmax_grad(pn_ref *r, int i);
bool pn_ref_view(pn_ref *r, int i);
void pn_ref_view_grad(pn_ref *r, int i);
bool pn_ref_transpose(pn_ref *r, int i);
void pn_ref_transpose_grad(pn_ref *r, int i);
bool pn_ref_slice(pn_ref *r, int i);
void pn_ref_slice_grad(pn_ref *r, int i);
bool pn_ref_pad(pn_ref *r, int i);
void pn_ref_pad_grad(pn_ref *r, int i);
bool pn_ref_positions(pn_ref *r, int i);
bool pn_ref_concat(pn_ref *r, int i);
void pn_ref_concat_grad(pn_ref *r, int i);
bool pn_ref_matmul(pn_ref *r, int i);
void pn_ref_matmul_grad(pn_ref *r, int i);
bool pn_ref_cross_entropy(pn_ref *r, int i);
void pn_ref_cross_entropy_grad(pn_ref *r, int i);
bool pn_ref_mse(pn_ref *r, int i);
void pn_ref_mse_grad(pn_ref *r, int i);

#endif
