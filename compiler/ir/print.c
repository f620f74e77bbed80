/* Prints the graph IR as text, one node per line:
 *   NAME = OP(INPUTS) ATTRS : TYPE stage=S shard=K [output] [train]  # parameters; fused into HEAD
 * (the comment is not read back; "fused into" appears once pass_fuse has run).
 */
#include "graph.h"

#include <string.h>

static void print_attrs(const pn_node *n, FILE *out) {
    if (n->data) { /* a tensor constant: its values, which read back exactly */
        fprintf(out, " values=[");
        for (int64_t k = 0; k < pn_shape_sample_elems(&n->shape); k++) fprintf(out, "%s%.9g", k ? "," : "", n->data[k]);
        fprintf(out, "]");
        return;
    }
    int na;
    const pn_attr_desc *a = pn_op_attrs(n->op, &na);
    for (int i = 0; i < na; i++) {
        const int64_t *v = n->ia + a[i].slot;
        switch (a[i].kind) {
        case 'i': fprintf(out, " %s=%lld", a[i].key, (long long)v[0]); break;
        case 'b': fprintf(out, " %s=%s", a[i].key, v[0] ? "true" : "false"); break;
        case 'B': if (v[0]) fprintf(out, " %s=true", a[i].key); break;
        case 'g': if (v[0] != 1) fprintf(out, " %s=%lld", a[i].key, (long long)v[0]); break;
        case 'p': fprintf(out, " %s=[%lld,%lld]", a[i].key, (long long)v[0], (long long)v[1]); break;
        case 'f': fprintf(out, " %s=%.9g", a[i].key, n->fa[a[i].slot]); break;
        case 'l':
            fprintf(out, " %s=[", a[i].key);
            for (int k = 0; k < n->shape.rank; k++) fprintf(out, "%s%lld", k ? "," : "", (long long)v[k]);
            fprintf(out, "]");
            break;
        }
    }
}

void pn_graph_print(const pn_graph *g, FILE *out) {
    fprintf(out, "network %s stages=%d replicas=%d microbatches=%d schedule=%s\n", g->name, g->nstages,
            g->replicas, g->microbatches, g->schedule == PN_SCHED_1F1B ? "1f1b" : "gpipe");
    char buf[256];
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        fprintf(out, "  %s = %s(", n->name, pn_ops[n->op].name);
        for (int k = 0; k < n->ninputs; k++) fprintf(out, "%s%s", k ? ", " : "", g->nodes[n->in[k]].name);
        fprintf(out, ")");
        print_attrs(n, out);
        fprintf(out, " : %s stage=%d shard=%d", pn_shape_str(n->dtype, &n->shape, buf, sizeof buf), n->stage,
                n->shard);
        if (n->flags & PN_NODE_OUTPUT) fprintf(out, " output");
        if (n->flags & PN_NODE_TRAIN) fprintf(out, " train");
        for (int k = 0; k < n->nparams; k++) {
            pn_shape_str(PN_F32, &n->params[k].shape, buf, sizeof buf);
            fprintf(out, "%s%s.%s%s", k ? " " : "  # ", n->name, n->params[k].suffix, buf + 3);
        }
        int head = pn_fused_head(g, i);
        if (head != i) fprintf(out, "%sfused into %s", n->nparams ? "; " : "  # ", g->nodes[head].name);
        fprintf(out, "\n");
    }
    for (int i = 0; i < g->noutputs; i++)
        fprintf(out, "  output %s = %s\n", g->outputs[i].name, g->nodes[g->outputs[i].node].name);
    const pn_train *t = &g->train;
    if (t->present) {
        fprintf(out, "  train loss=%s", g->nodes[t->loss].name);
        if (t->opt == PN_OPT_SGD)
            fprintf(out, " optimizer=sgd(lr=%.9g, momentum=%.9g, weight_decay=%.9g, nesterov=%s)", t->lr,
                    t->momentum, t->weight_decay, t->nesterov ? "true" : "false");
        else
            fprintf(out, " optimizer=adam(lr=%.9g, beta1=%.9g, beta2=%.9g, eps=%.9g, weight_decay=%.9g)", t->lr,
                    t->beta1, t->beta2, t->eps, t->weight_decay);
        fprintf(out, " batch=%lld epochs=%lld seed=%lld\n", (long long)t->batch, (long long)t->epochs,
                (long long)t->seed);
    }
}
