/* Prints the graph IR as Graphviz, one cluster per pipeline stage. */
#include "graph.h"

static void dot_label_escape(FILE *out, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', out);
        fputc(*s, out);
    }
}

void pn_graph_print_dot(const pn_graph *g, FILE *out) {
    char buf[256];
    fprintf(out, "digraph \"%s\" {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n", g->name);
    for (int s = 0; s < g->nstages; s++) {
        fprintf(out, "  subgraph cluster_stage%d {\n    label=\"stage %d\";\n    style=rounded;\n", s, s);
        for (int i = 0; i < g->nnodes; i++) {
            const pn_node *n = &g->nodes[i];
            if (n->stage != s) continue;
            fprintf(out, "    n%d [label=\"", i);
            dot_label_escape(out, n->name);
            fprintf(out, "\\n%s %s", pn_ops[n->op].name, pn_shape_str(n->dtype, &n->shape, buf, sizeof buf));
            if (n->shard > 1) fprintf(out, "\\nshard %d", n->shard);
            fprintf(out, "\"%s%s];\n", n->flags & PN_NODE_OUTPUT ? ", peripheries=2" : "",
                    n->flags & PN_NODE_TRAIN ? ", style=dashed" : "");
        }
        fprintf(out, "  }\n");
    }
    for (int i = 0; i < g->nnodes; i++)
        for (int k = 0; k < g->nodes[i].ninputs; k++) fprintf(out, "  n%d -> n%d;\n", g->nodes[i].in[k], i);
    fprintf(out, "}\n");
}
