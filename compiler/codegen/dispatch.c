/* Op dispatch: one row per op of ops.def with its kernel generators (inference, backward, and
 * what the training step runs in training and evaluation mode), and the constants kernels read.
 * The inference module (emit.c) and the training step (step.c) both call down into this file; it
 * calls down into the kernel files (gemm.c, conv.c, eltwise.c, reduce.c, shape.c and their
 * *_grad.c twins). */
#include "train.h"
#include "../support/util.h"

#include <stdlib.h>

/* dense: over weight panels packed by prepare when it planned them, else straight. */
static LLVMValueRef gen_dense(cg *c, int i) {
    return c->pack_offset[i] >= 0 ? cg_gen_dense_packed(c, i, c->pack_offset[i] - c->g->plan.param_offset[i])
                                  : cg_gen_dense(c, i);
}

/* reshape, flatten, inference dropout: a view, unless it is an output. */
static LLVMValueRef gen_view(cg *c, int i) {
    return c->g->plan.mem[i].kind == PN_MEM_ALIAS ? NULL : cg_gen_copy(c, i);
}

/* Each op's row, by its ops.def name: the inference kernel, the backward kernel (NULL: none; the
 * training step builds the losses' own kernels, batchnorm's are its synced column below), and for
 * the elementwise ops of one tensor (and + - * by a constant, when fused) their value and
 * derivative at one element (eltwise.c, eltwise_grad.c). An op of ops.def without a row here
 * does not compile. */
/*                        inference              backward               unary               unary_grad */
#define CG_INPUT          NULL,                  NULL,                  NULL,               NULL
#define CG_CONST          NULL,                  NULL,                  NULL,               NULL
#define CG_ADD            cg_gen_binary,         cg_bwd_binary,         cg_ew_const_binary, NULL
#define CG_SUB            cg_gen_binary,         cg_bwd_binary,         cg_ew_const_binary, NULL
#define CG_MUL            cg_gen_binary,         cg_bwd_binary,         cg_ew_const_binary, NULL
#define CG_DIV            cg_gen_binary,         cg_bwd_binary,         cg_ew_const_binary, NULL
#define CG_DENSE          gen_dense,             cg_bwd_dense,          NULL,               NULL
#define CG_CONV2D         cg_gen_conv2d,         cg_bwd_conv,           NULL,               NULL
#define CG_BATCHNORM      cg_gen_batchnorm,      NULL,                  NULL,               NULL
#define CG_LAYERNORM      cg_gen_layernorm,      cg_bwd_layernorm,      NULL,               NULL
#define CG_EMBEDDING      cg_gen_embedding,      cg_bwd_embedding,      NULL,               NULL
#define CG_MAXPOOL2D      cg_gen_pool,           cg_bwd_pool,           NULL,               NULL
#define CG_AVGPOOL2D      cg_gen_pool,           cg_bwd_pool,           NULL,               NULL
#define CG_GLOBAL_AVGPOOL cg_gen_global_avgpool, cg_bwd_global_avgpool, NULL,               NULL
#define CG_RELU           cg_gen_eltwise,        cg_bwd_unary,          cg_ew_relu,         cg_ew_relu_grad
#define CG_LEAKY_RELU     cg_gen_eltwise,        cg_bwd_unary,          cg_ew_leaky_relu,   cg_ew_leaky_relu_grad
#define CG_SIGMOID        cg_gen_eltwise,        cg_bwd_unary,          cg_ew_sigmoid,      cg_ew_sigmoid_grad
#define CG_TANH           cg_gen_eltwise,        cg_bwd_unary,          cg_ew_tanh,         cg_ew_tanh_grad
#define CG_GELU           cg_gen_eltwise,        cg_bwd_unary,          cg_ew_gelu,         cg_ew_gelu_grad
#define CG_SILU           cg_gen_eltwise,        cg_bwd_unary,          cg_ew_silu,         cg_ew_silu_grad
#define CG_ELU            cg_gen_eltwise,        cg_bwd_unary,          cg_ew_elu,          cg_ew_elu_grad
#define CG_SOFTPLUS       cg_gen_eltwise,        cg_bwd_unary,          cg_ew_softplus,     cg_ew_softplus_grad
#define CG_PRELU          cg_gen_prelu,          cg_bwd_prelu,          NULL,               NULL
#define CG_SOFTMAX        cg_gen_softmax,        cg_bwd_softmax,        NULL,               NULL
#define CG_LOG_SOFTMAX    cg_gen_softmax,        cg_bwd_softmax,        NULL,               NULL
#define CG_CAUSAL_SOFTMAX cg_gen_softmax,        cg_bwd_softmax,        NULL,               NULL
#define CG_DROPOUT        gen_view,              cg_bwd_unary,          cg_ew_identity,     cg_ew_dropout_grad
#define CG_RESHAPE        gen_view,              NULL,                  NULL,               NULL
#define CG_FLATTEN        gen_view,              NULL,                  NULL,               NULL
#define CG_TRANSPOSE      cg_gen_transpose,      cg_bwd_transpose,      NULL,               NULL
#define CG_SLICE          cg_gen_slice,          cg_bwd_slice,          NULL,               NULL
#define CG_PAD            cg_gen_pad,            cg_bwd_pad,            NULL,               NULL
#define CG_POSITIONS      cg_gen_positions,      NULL,                  NULL,               NULL
#define CG_CONCAT         cg_gen_concat,         cg_bwd_concat,         NULL,               NULL
#define CG_MATMUL         cg_gen_matmul,         cg_bwd_matmul,         NULL,               NULL
#define CG_CROSS_ENTROPY  NULL,                  NULL,                  NULL,               NULL
#define CG_MSE            NULL,                  NULL,                  NULL,               NULL

/* The rest of each op's row, which the training step reads (step.c): its training forward where
 * that differs from its inference kernel, its kernel in the evaluation forward where that is not
 * the training forward's, and for an op whose passes both wait on the whole batch, the pass
 * around a sync (cg_op_row in cg.h). */
/*                              train                  eval                   synced */
#define CG_TRAIN_INPUT          NULL,                  NULL,                  NULL
#define CG_TRAIN_CONST          NULL,                  NULL,                  NULL
#define CG_TRAIN_ADD            NULL,                  NULL,                  NULL
#define CG_TRAIN_SUB            NULL,                  NULL,                  NULL
#define CG_TRAIN_MUL            NULL,                  NULL,                  NULL
#define CG_TRAIN_DIV            NULL,                  NULL,                  NULL
#define CG_TRAIN_DENSE          cg_gen_dense_train,    NULL,                  NULL
#define CG_TRAIN_CONV2D         NULL,                  NULL,                  NULL
#define CG_TRAIN_BATCHNORM      NULL,                  cg_gen_batchnorm,      cg_bn_pass
#define CG_TRAIN_LAYERNORM      NULL,                  NULL,                  NULL
#define CG_TRAIN_EMBEDDING      NULL,                  NULL,                  NULL
#define CG_TRAIN_MAXPOOL2D      NULL,                  NULL,                  NULL
#define CG_TRAIN_AVGPOOL2D      NULL,                  NULL,                  NULL
#define CG_TRAIN_GLOBAL_AVGPOOL NULL,                  NULL,                  NULL
#define CG_TRAIN_RELU           NULL,                  NULL,                  NULL
#define CG_TRAIN_LEAKY_RELU     NULL,                  NULL,                  NULL
#define CG_TRAIN_SIGMOID        NULL,                  NULL,                  NULL
#define CG_TRAIN_TANH           NULL,                  NULL,                  NULL
#define CG_TRAIN_GELU           NULL,                  NULL,                  NULL
#define CG_TRAIN_SILU           NULL,                  NULL,                  NULL
#define CG_TRAIN_ELU            NULL,                  NULL,                  NULL
#define CG_TRAIN_SOFTPLUS       NULL,                  NULL,                  NULL
#define CG_TRAIN_PRELU          NULL,                  NULL,                  NULL
#define CG_TRAIN_SOFTMAX        NULL,                  NULL,                  NULL
#define CG_TRAIN_LOG_SOFTMAX    NULL,                  NULL,                  NULL
#define CG_TRAIN_CAUSAL_SOFTMAX NULL,                  NULL,                  NULL
#define CG_TRAIN_DROPOUT        cg_gen_dropout_train,  cg_gen_copy,           NULL
#define CG_TRAIN_RESHAPE        NULL,                  NULL,                  NULL
#define CG_TRAIN_FLATTEN        NULL,                  NULL,                  NULL
#define CG_TRAIN_TRANSPOSE      NULL,                  NULL,                  NULL
#define CG_TRAIN_SLICE          NULL,                  NULL,                  NULL
#define CG_TRAIN_PAD            NULL,                  NULL,                  NULL
#define CG_TRAIN_POSITIONS      NULL,                  NULL,                  NULL
#define CG_TRAIN_CONCAT         NULL,                  NULL,                  NULL
#define CG_TRAIN_MATMUL         NULL,                  NULL,                  NULL
#define CG_TRAIN_CROSS_ENTROPY  NULL,                  NULL,                  NULL
#define CG_TRAIN_MSE            NULL,                  NULL,                  NULL

static const cg_op_row rows[] = {
#define PN_OP(id, name, sig, flags) [PN_OP_##id] = {CG_##id, CG_TRAIN_##id},
#include "../ops.def"
#undef PN_OP
};
_Static_assert(sizeof rows / sizeof rows[0] == PN_OP_COUNT, "one codegen row per op of ops.def");

const cg_op_row *cg_op(pn_op op) {
    PN_ASSERT(op < PN_OP_COUNT);
    return &rows[op];
}

LLVMValueRef cg_gen_kernel(cg *c, int i) {
    const cg_op_row *r = cg_op(c->g->nodes[i].op);
    return r->kernel ? r->kernel(c, i) : NULL;
}

LLVMValueRef cg_unary(cg *c, const pn_node *op, LLVMValueRef v) {
    const cg_op_row *r = cg_op(op->op);
    PN_ASSERT(r->unary); /* pass_fuse fuses only ops with a unary column */
    return r->unary(c, op, v);
}

LLVMValueRef cg_gen_backward(cg *c, int node, const bool *acc) {
    const cg_op_row *r = cg_op(c->g->nodes[node].op);
    return r->backward ? r->backward(c, node, acc) : NULL;
}

LLVMValueRef cg_const_global(cg *c, int i) {
    char *name = pn_xasprintf("%s__c%d", c->px, i);
    LLVMValueRef gv = LLVMGetNamedGlobal(c->mod, name);
    const pn_node *nd = &c->g->nodes[i];
    if (!gv && nd->data) { /* a tensor constant: its values, aligned for vector loads */
        int64_t cnt = pn_shape_sample_elems(&nd->shape);
        LLVMValueRef *v = pn_xcalloc((size_t)cnt, sizeof *v);
        for (int64_t k = 0; k < cnt; k++) v[k] = cg_f32(c, nd->data[k]);
        LLVMValueRef init = LLVMConstArray2(c->f32, v, (uint64_t)cnt);
        free(v);
        gv = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
        LLVMSetInitializer(gv, init);
        LLVMSetAlignment(gv, 64);
        LLVMSetGlobalConstant(gv, 1);
        LLVMSetLinkage(gv, LLVMPrivateLinkage);
    }
    if (!gv) {
        gv = LLVMAddGlobal(c->mod, c->f32, name);
        LLVMSetInitializer(gv, cg_f32(c, nd->fa[PN_FA_VALUE]));
        LLVMSetGlobalConstant(gv, 1);
        LLVMSetLinkage(gv, LLVMPrivateLinkage);
    }
    free(name);
    return gv;
}
