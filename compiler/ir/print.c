/* Prints the graph IR as text, one node per line:
 *   NAME = OP(INPUTS) ATTRS : TYPE stage=S shard=K [output] [train]  # parameters
 */
#include "graph.h"

#include <string.h>

static void print_pair(FILE *out, const char *key, const int64_t *v) {
    fprintf(out, " %s=[%lld,%lld]", key, (long long)v[0], (long long)v[1]);
}

static void print_attrs(const pn_graph *g, const pn_node *n, FILE *out) {
    const int64_t *ia = n->ia;
    switch (n->op) {
    case PN_OP_CONST: fprintf(out, " value=%.9g", n->fa[PN_FA_VALUE]); break;
    case PN_OP_DENSE:
        fprintf(out, " units=%lld bias=%s", (long long)ia[PN_DENSE_UNITS], ia[PN_DENSE_BIAS] ? "true" : "false");
        break;
    case PN_OP_CONV2D:
        fprintf(out, " out_channels=%lld", (long long)ia[PN_CONV_OUT]);
        print_pair(out, "kernel", ia + PN_CONV_KH);
        print_pair(out, "stride", ia + PN_CONV_SH);
        print_pair(out, "padding", ia + PN_CONV_PH);
        fprintf(out, " bias=%s", ia[PN_CONV_BIAS] ? "true" : "false");
        break;
    case PN_OP_MAXPOOL2D:
    case PN_OP_AVGPOOL2D:
        print_pair(out, "size", ia + PN_POOL_KH);
        print_pair(out, "stride", ia + PN_POOL_SH);
        print_pair(out, "padding", ia + PN_POOL_PH);
        break;
    case PN_OP_BATCHNORM:
        fprintf(out, " eps=%.9g momentum=%.9g", n->fa[PN_FA_VALUE], n->fa[PN_FA_MOMENTUM]);
        break;
    case PN_OP_LAYERNORM: fprintf(out, " eps=%.9g", n->fa[PN_FA_VALUE]); break;
    case PN_OP_EMBEDDING:
        fprintf(out, " vocab=%lld dim=%lld", (long long)ia[PN_EMB_VOCAB], (long long)ia[PN_EMB_DIM]);
        break;
    case PN_OP_LEAKY_RELU: fprintf(out, " slope=%.9g", n->fa[PN_FA_VALUE]); break;
    case PN_OP_DROPOUT: fprintf(out, " p=%.9g", n->fa[PN_FA_VALUE]); break;
    case PN_OP_SOFTMAX:
    case PN_OP_LOG_SOFTMAX:
    case PN_OP_CONCAT: fprintf(out, " axis=%lld", (long long)ia[PN_AXIS]); break;
    case PN_OP_TRANSPOSE:
        fprintf(out, " perm=[");
        for (int i = 0; i < n->shape.rank; i++) fprintf(out, "%s%lld", i ? "," : "", (long long)ia[PN_PERM + i]);
        fprintf(out, "]");
        break;
    default: break;
    }
    (void)g;
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
        print_attrs(g, n, out);
        fprintf(out, " : %s stage=%d shard=%d", pn_shape_str(n->dtype, &n->shape, buf, sizeof buf), n->stage,
                n->shard);
        if (n->flags & PN_NODE_OUTPUT) fprintf(out, " output");
        if (n->flags & PN_NODE_TRAIN) fprintf(out, " train");
        for (int k = 0; k < n->nparams; k++) {
            pn_shape_str(PN_F32, &n->params[k].shape, buf, sizeof buf);
            fprintf(out, "%s%s.%s%s", k ? " " : "  # ", n->name, n->params[k].suffix, buf + 3);
        }
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
