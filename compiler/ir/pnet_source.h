/* The graph IR written back as .pnet source: one statement per node, named as the node, calling the
 * op by its own name (pnetc --emit=pnet; docs/onnx.md). Writes to a caller's FILE. */
#ifndef PN_PNET_SOURCE_H
#define PN_PNET_SOURCE_H
#include "graph.h"

#include <stddef.h>
#include <stdio.h>

/* Writes g as a network in .pnet syntax whose checked graph is g again. False with err set when a
 * node cannot be written (a name that is not an identifier, a loss, a value .pnet cannot spell). */
bool pn_graph_print_pnet(const pn_graph *g, FILE *out, char *err, size_t errlen);

#endif
