/* The inference passes, run in this order by compiler/main.c; each fills part of g->plan. */
#ifndef PN_PASSES_H
#define PN_PASSES_H
#include "../ir/graph.h"

void pass_prune(pn_graph *g);        /* live: nodes the outputs need, training-only ones dropped */
void pass_fold_batchnorm(pn_graph *g); /* batchnorm after conv2d/dense: folded into its weights */
void pass_fuse(pn_graph *g);         /* fuse_next/fused: elementwise chains into their producer */
void pass_fuse_pool(pn_graph *g);    /* maxpool over a conv2d chain: computed in the conv's kernel */
void pass_plan_params(pn_graph *g);  /* param_offset, param_floats: one parameter buffer */
void pass_plan_memory(pn_graph *g);  /* mem, arena sizes, chunk: one activation arena by liveness */
void pass_plan_train(pn_graph *g);   /* tplan: what a training step computes and keeps, gradients */

typedef struct pn_pass {
    const char *name;
    void (*run)(pn_graph *g);
} pn_pass;
extern const pn_pass pn_passes[];
extern const int pn_npasses;

#endif
