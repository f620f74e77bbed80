/* pnetc --auto-partition: pipeline stages chosen by the cost model, printed back as source. */
#ifndef PN_AUTO_PARTITION_H
#define PN_AUTO_PARTITION_H
#include "../ir/graph.h"
#include "../parse/ast.h"

#include <stdio.h>

/* Writes the main file of prog with @partition groups splitting network g into S stages. It
 * reassigns g's node stages while it prices the cuts, and restores them. */
bool pn_auto_partition(pn_program *prog, pn_graph *g, int S, FILE *out, char *err, size_t errlen);

#endif
