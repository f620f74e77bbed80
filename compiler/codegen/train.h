/* The training side of the code generator: the layout of a training kernel's context and the
 * generators of the training kernels (the *_grad.c files beside each construct's forward
 * kernels, optim.c, the losses in step.c) and of the step functions libpnetrt calls (step.c). */
#ifndef PN_CG_TRAIN_H
#define PN_CG_TRAIN_H
#include "cg.h"

/* A training kernel is px__t<node>_<what>(const void **ctx, int64_t n, int64_t ith, int64_t nth):
 * n samples of one chunk, split over nth threads. ctx holds 8-byte slots: */
enum {
    TK_Y = 0,         /* the node's value */
    TK_DY = 1,        /* its gradient */
    TK_X = 2,         /* the inputs' values, TK_MAX_INPUTS slots */
    TK_DX = 18,       /* the inputs' gradient buffers (unused when an input takes none) */
    TK_PARAMS = 34,   /* the node's parameters */
    TK_GPARAMS = 35,  /* the node's parameter gradients in this chunk's slot */
    TK_STATS = 36,    /* this chunk's statistics (floats) */
    TK_GLOBAL = 37,   /* the step's global statistics */
    TK_SCRATCH = 38,  /* this thread's scratch */
    TK_S0 = 39,       /* index of the chunk's first sample in the batch */
    TK_NTOTAL = 40,   /* samples in the whole batch */
    TK_SEED = 41,
    TK_STEP = 42,
    TK_GADD = 43,     /* the call's grad_add: add the parameter gradients to the slot's */
    TK_COUNT = 44,
    TK_MAX_INPUTS = 16,
};

/* The step call (pnetrt_train_call in runtime/pnetrt_abi.h), 8-byte fields. */
enum {
    TC_INPUTS = 0, TC_PARAMS, TC_SLOTS, TC_STATS, TC_GLOBAL, TC_OPT, TC_BATCH, TC_NCHUNKS, TC_STEP, TC_SEED,
    TC_LR, TC_ADAM_STEP, TC_ADAM_BC2, TC_ELEM_LO, TC_ELEM_HI, TC_OPT_STRIDE, TC_SUMS, TC_NSUMS, TC_GRAD_ADD, TC_COUNT
};

/* Input k of node carries a gradient back. */
bool cg_grad_edge(const pn_graph *g, int node, int k);
/* The backward kernel of node (dispatch.c, its op's row): reads y, dy and the inputs; writes
 * (acc[k]: adds to) the inputs' gradients and its parameter gradients. NULL when the node needs
 * none. */
LLVMValueRef cg_gen_backward(cg *c, int node, const bool *acc);
/* The backward kernels, one per row of the op table (dispatch.c), beside their forward kernels:
 * gemm_grad.c, conv_grad.c, eltwise_grad.c, reduce_grad.c, shape_grad.c. */
LLVMValueRef cg_bwd_dense(cg *c, int node, const bool *acc);
LLVMValueRef cg_bwd_matmul(cg *c, int node, const bool *acc); /* NULL after cg_fail: not supported */
LLVMValueRef cg_bwd_conv(cg *c, int node, const bool *acc);
LLVMValueRef cg_bwd_pool(cg *c, int node, const bool *acc);
LLVMValueRef cg_bwd_global_avgpool(cg *c, int node, const bool *acc);
LLVMValueRef cg_bwd_unary(cg *c, int node, const bool *acc);
/* The unary_grad column (eltwise_grad.c): dy times each elementwise op's derivative at one element. */
LLVMValueRef cg_ew_relu_grad(cg *c, int node, LLVMValueRef dy, const cg_elt *at);
LLVMValueRef cg_ew_leaky_relu_grad(cg *c, int node, LLVMValueRef dy, const cg_elt *at);
LLVMValueRef cg_ew_sigmoid_grad(cg *c, int node, LLVMValueRef dy, const cg_elt *at);
LLVMValueRef cg_ew_tanh_grad(cg *c, int node, LLVMValueRef dy, const cg_elt *at);
LLVMValueRef cg_ew_gelu_grad(cg *c, int node, LLVMValueRef dy, const cg_elt *at);
LLVMValueRef cg_ew_silu_grad(cg *c, int node, LLVMValueRef dy, const cg_elt *at);
LLVMValueRef cg_ew_elu_grad(cg *c, int node, LLVMValueRef dy, const cg_elt *at);
LLVMValueRef cg_ew_softplus_grad(cg *c, int node, LLVMValueRef dy, const cg_elt *at);
LLVMValueRef cg_ew_dropout_grad(cg *c, int node, LLVMValueRef dy, const cg_elt *at);
LLVMValueRef cg_bwd_binary(cg *c, int node, const bool *acc);
LLVMValueRef cg_bwd_softmax(cg *c, int node, const bool *acc);
LLVMValueRef cg_bwd_layernorm(cg *c, int node, const bool *acc);
LLVMValueRef cg_bwd_embedding(cg *c, int node, const bool *acc);
LLVMValueRef cg_bwd_concat(cg *c, int node, const bool *acc);
LLVMValueRef cg_bwd_transpose(cg *c, int node, const bool *acc);
LLVMValueRef cg_bwd_slice(cg *c, int node, const bool *acc);
LLVMValueRef cg_bwd_pad(cg *c, int node, const bool *acc);
LLVMValueRef cg_bwd_prelu(cg *c, int node, const bool *acc);
/* The train column: training forwards that differ from the inference kernel. dense's runs over
 * W^T, made by the prep function (gemm_grad.c); dropout's draws its mask (eltwise_grad.c). */
LLVMValueRef cg_gen_dense_train(cg *c, int node);
LLVMValueRef cg_gen_dropout_train(cg *c, int node);
/* The synced column (reduce_grad.c): batchnorm's forward with batch statistics and its backward,
 * each a kernel per chunk, a sync of the chunks' statistics and a kernel after it. */
cg_pass cg_bn_pass(cg *c, int node, bool backward, const bool *acc);
/* The loss: chunk loss sum and correct count into stats; with backward, the logits' gradient. */
LLVMValueRef cg_gen_loss(cg *c, int node, bool backward, bool acc);
/* Step-wide functions px__...(const int64_t *call, int64_t ith, int64_t nth). */
LLVMValueRef cg_gen_update(cg *c);
LLVMValueRef cg_gen_prep(cg *c);

/* The functions of a training step (step.c). */
typedef struct pn_train_fns {
    LLVMValueRef segs, syncs; /* constant arrays: nseg segment functions, nseg - 1 syncs */
    LLVMValueRef prep, update, eval;
    int nseg;
    int nstages;                  /* pipeline training: stages, or 0 when not available */
    LLVMValueRef stage_fwd, stage_bwd, stage_eval; /* constant arrays of nstages segment functions, or null */
    /* Per parameter tensor (nparams, in the descriptor's order): the segment whose kernels write
     * its gradient, -1 for none, -2 for several (pnetrt_train_desc.grad_segment). The caller frees. */
    int64_t *grad_segment, nparams;
} pn_train_fns;
/* Builds them when the graph has a train block (else returns true with *segs NULL); false after
 * cg_fail when a kernel cannot be built. */
bool cg_gen_training(cg *c, LLVMValueRef *segs, pn_train_fns *fns);

/* Step-wide functions (tk.c), shared by optim.c and the batchnorm sync (reduce_grad.c). */
/* Starts px__<name>(const int64_t *call, int64_t ith, int64_t nth); fields via cg_tcp/tci/tcf. */
void cg_step_begin(cg *c, const char *name);
LLVMValueRef cg_tcp(cg *c, int field);
LLVMValueRef cg_tci(cg *c, int field);
LLVMValueRef cg_tcf(cg *c, int field); /* a double field, as float */
/* The fixed reduction tree over nch chunks: for s = 1, 2, 4, ..., entry j = i + s is combined into
 * entry i for every i that is a multiple of 2s (and j < nch). */
typedef void (*cg_tree_fn)(cg *c, LLVMValueRef i, LLVMValueRef j, LLVMValueRef s, void *arg);
void cg_tree(cg *c, LLVMValueRef nch, cg_tree_fn body, void *arg);

/* Transposes the VW x VW block of floats in r[0..VW) (row i in r[i]) in registers: for d = VW/2,
 * ..., 1 each pair of rows i, i + d (bit d of i clear) swaps its off-diagonal d-blocks, which swaps
 * bit d of the row index with bit d of the lane index; after every d, row and lane have traded
 * places (tk.c). */
void cg_transpose_regs(cg *c, int VW, LLVMValueRef *r);

#endif
