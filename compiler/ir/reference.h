/* The reference interpreter of the inference graph: the plain twin of every generated kernel. */
#ifndef PN_REFERENCE_H
#define PN_REFERENCE_H
#include "graph.h"

/* Runs g (planned by the inference passes, for param_offset) on `batch` samples. params uses
 * the planned layout; inputs and outputs are in declaration order. Returns 0 on success. */
int pn_reference_run(const pn_graph *g, const float *params, int64_t batch, const void *const *inputs,
                     void *const *outputs);

#endif
