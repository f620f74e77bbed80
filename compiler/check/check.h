/* The checker: resolves names, imports and blocks, infers shapes, checks directives and the
 * train block, and builds the graph IR of a network. */
#ifndef PN_CHECK_H
#define PN_CHECK_H
#include "../ir/graph.h"
#include "../parse/ast.h"

/* Checks every block of every loaded module and the networks of the main module.
 * With out == NULL every network is checked (a file of blocks alone is valid). Otherwise the
 * network named network_name, or the only one, is built into *out. Returns false on errors. */
bool pn_check(pn_program *prog, const char *network_name, pn_graph **out);

#endif
