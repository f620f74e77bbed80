/* pass_plan_params: lays out every parameter of the live nodes in one float buffer, in node
 * order, each tensor at a 64-byte boundary. */
#include "passes.h"

void pass_plan_params(pn_graph *g) {
    pn_plan *p = &g->plan;
    int64_t off = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        p->param_offset[i] = -1;
        if (!n->nparams) continue;
        p->param_offset[i] = off;
        for (int k = 0; k < n->nparams; k++) {
            int64_t e = 1;
            for (int d = 0; d < n->params[k].shape.rank; d++) e *= n->params[k].shape.d[d];
            off += (e + 15) / 16 * 16;
        }
    }
    p->param_floats = off;
}
