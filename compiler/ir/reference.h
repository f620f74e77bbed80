/* The reference interpreter (reference.c): the plain double-precision twin of every generated
 * kernel, forward and backward, one interpreter for both. */
#ifndef PN_REFERENCE_H
#define PN_REFERENCE_H
#include "graph.h"

/* Runs g (planned by the inference passes, for param_offset) on `batch` samples. params uses
 * the planned layout; inputs and outputs are in declaration order. Returns 0 on success. */
int pn_reference_run(const pn_graph *g, const float *params, int64_t batch, const void *const *inputs,
                     void *const *outputs);

/* The twin of a training step's gradient: the training-mode forward pass in
 * double (batchnorm on batch statistics; dropout masks from seed and step as the generated code
 * draws them), then a plain reverse pass. inputs are the network's inputs, then its training
 * inputs, each of `batch` samples; params uses the planned layout. Writes the batch's mean loss
 * and the gradient of every trained parameter into grad (g->plan.param_floats doubles, zero
 * elsewhere). Returns false and writes err when it cannot. */
bool pn_reference_train_grad(const pn_graph *g, int64_t batch, const void *const *inputs, const float *params,
                             uint64_t seed, int64_t step, double *loss, double *grad, char *err, size_t errlen);

#endif
