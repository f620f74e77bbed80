/* The prepare function libpnetrt runs at create: the prepared copy of the parameters the kernels
 * read, with folded batchnorms and dense (and channel-lane conv) weights packed into panels. */
#include "emit.h"
#include "../support/util.h"

#include <stdlib.h>

/* The weights of a dense or conv2d node as a matrix [rows][k]: dense [units][in], conv2d
 * [out_channels][in_channels * KH * KW]. */
static void weight_matrix(const pn_node *n, int64_t *rows, int64_t *k) {
    *k = n->params[0].shape.d[1];
    if (n->op == PN_OP_CONV2D) {
        *rows = n->ia[PN_CONV_OUT];
        *k *= n->ia[PN_CONV_KH] * n->ia[PN_CONV_KW];
    } else {
        *rows = n->ia[PN_DENSE_UNITS];
    }
}

/* The floats of node n's parameters in the raw buffer, each tensor padded to 16 floats. */
static int64_t raw_floats(const pn_node *n) {
    int64_t f = 0;
    for (int k = 0; k < n->nparams; k++) f += (pn_shape_sample_elems(&n->params[k].shape) + 15) / 16 * 16;
    return f;
}

/* Plans the prepared buffer: a copy of the raw parameters, then the folded biases, then the
 * packed panels (and padded bias) of every dense layer that do not fit its raw slots, and the
 * packed weights of the convs whose kernels take lanes over channels. */
void cg_plan_packing(cg *c) {
    const pn_graph *g = c->g;
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    int64_t cur = g->plan.param_floats;
    c->pack_offset = pn_xcalloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof(int64_t));
    c->pack_width = pn_xcalloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof(int64_t));
    c->fold_bias = pn_xcalloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof(int64_t));
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        c->pack_offset[i] = -1;
        c->fold_bias[i] = -1;
        if (!g->plan.live[i] || g->plan.fused[i]) continue;
        if (n->op == PN_OP_CONV2D && cg_folded_bn(c, i) >= 0) {
            c->fold_bias[i] = cur;
            cur += (n->ia[PN_CONV_OUT] + 15) / 16 * 16;
        }
        int64_t NR = n->op == PN_OP_DENSE ? (int64_t)VW * NV : n->op == PN_OP_CONV2D ? cg_conv_pack_width(c, i) : 0;
        if (NR == 0) continue;
        int64_t U, K;
        weight_matrix(n, &U, &K);
        int64_t NP = (U + NR - 1) / NR, size = NP * K * NR + (n->op == PN_OP_DENSE ? NP * NR : 0);
        c->pack_width[i] = NR;
        /* The dense kernels read only the panels, so panels that fit the layer's own raw slots
         * (whole panels and a bias) take them: no second copy of the weights. */
        if (n->op == PN_OP_DENSE && size <= raw_floats(n)) {
            c->pack_offset[i] = g->plan.param_offset[i];
            continue;
        }
        c->pack_offset[i] = cur;
        cur += (size + 15) / 16 * 16;
    }
    c->prepared_floats = cur;
}

/* The folded form of batchnorm node bn for channel ch: y = x * scale + shift, with
 * scale = gamma / sqrt(running_var + eps) and shift = beta - running_mean * scale. */
static void bn_scale_shift(cg *c, LLVMValueRef raw, int bn, LLVMValueRef ch, LLVMValueRef *scale, LLVMValueRef *shift) {
    const pn_node *b = &c->g->nodes[bn];
    int64_t a = (b->shape.d[1] + 15) / 16 * 16;
    LLVMValueRef base = cg_gep(c, raw, cg_i64(c, c->g->plan.param_offset[bn]));
    LLVMValueRef gamma = cg_load(c, base, ch), beta = cg_load(c, cg_gep(c, base, cg_i64(c, a)), ch);
    LLVMValueRef mean = cg_load(c, cg_gep(c, base, cg_i64(c, 2 * a)), ch), var = cg_load(c, cg_gep(c, base, cg_i64(c, 3 * a)), ch);
    *scale = cg_fdiv(c, gamma, cg_call1(c, "llvm.sqrt", cg_fadd(c, var, cg_f32(c, b->fa[PN_FA_VALUE]), false)));
    *shift = cg_fsub(c, beta, cg_fmul(c, mean, *scale, false));
}

/* void px__prepare(const float *raw, float *prepared): copies, folds batchnorms, then packs
 * W[u][k] into panels. */
LLVMValueRef cg_gen_prepare(cg *c) {
    const pn_graph *g = c->g;
    char *name = pn_xasprintf("%s__prepare", c->px);
    LLVMTypeRef args[2] = {c->ptr, c->ptr};
    c->fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->vd, args, 2, 0));
    free(name);
    LLVMSetLinkage(c->fn, LLVMInternalLinkage);
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry"));
    LLVMValueRef raw = LLVMGetParam(c->fn, 0), prep = LLVMGetParam(c->fn, 1);
    cg_loop i;
    cg_loop_begin(c, &i, cg_i64(c, 0), cg_i64(c, g->plan.param_floats), "i");
    cg_store(c, cg_load(c, raw, i.iv), prep, i.iv);
    cg_loop_end(c, &i);
    /* Folded batchnorms: conv2d weights scaled in place, the shifted bias in fold_bias. */
    for (int n = 0; n < g->nnodes; n++) {
        if (c->fold_bias[n] < 0) continue;
        const pn_node *nd = &g->nodes[n];
        int64_t OC, K;
        weight_matrix(nd, &OC, &K);
        LLVMValueRef w = cg_gep(c, raw, cg_i64(c, g->plan.param_offset[n]));
        LLVMValueRef pw = cg_gep(c, prep, cg_i64(c, g->plan.param_offset[n]));
        LLVMValueRef pb = cg_gep(c, prep, cg_i64(c, c->fold_bias[n]));
        cg_loop oc;
        cg_loop_begin(c, &oc, cg_i64(c, 0), cg_i64(c, OC), "oc");
        LLVMValueRef scale, shift;
        bn_scale_shift(c, raw, cg_folded_bn(c, n), oc.iv, &scale, &shift);
        cg_loop k;
        cg_loop_begin(c, &k, cg_i64(c, 0), cg_i64(c, K), "k");
        LLVMValueRef at = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, oc.iv, cg_i64(c, K), ""), k.iv, "");
        cg_store(c, cg_fmul(c, cg_load(c, w, at), scale, false), pw, at);
        cg_loop_end(c, &k);
        LLVMValueRef b = nd->ia[PN_CONV_BIAS] ? cg_load(c, cg_gep(c, w, cg_i64(c, (OC * K + 15) / 16 * 16)), oc.iv) : cg_f32(c, 0.0);
        cg_store(c, cg_fma(c, b, scale, shift), pb, oc.iv);
        cg_loop_end(c, &oc);
    }
    for (int n = 0; n < g->nnodes; n++) {
        if (c->pack_offset[n] < 0) continue;
        const pn_node *nd = &g->nodes[n];
        bool conv = nd->op == PN_OP_CONV2D;
        /* A conv's weights are read after its batchnorm was folded into them, above. */
        int bn = conv ? -1 : cg_folded_bn(c, n);
        int64_t U, K;
        weight_matrix(nd, &U, &K);
        int64_t NR = c->pack_width[n], NP = (U + NR - 1) / NR;
        LLVMValueRef w = cg_gep(c, conv ? prep : raw, cg_i64(c, g->plan.param_offset[n]));
        LLVMValueRef dst = cg_gep(c, prep, cg_i64(c, c->pack_offset[n]));
        /* dst[(p*K + k)*NR + j] = W[p*NR + j][k], zero past U. */
        cg_loop col;
        cg_loop_begin(c, &col, cg_i64(c, 0), cg_i64(c, NP * NR), "col");
        LLVMValueRef p = LLVMBuildSDiv(c->b, col.iv, cg_i64(c, NR), ""), j = LLVMBuildSRem(c->b, col.iv, cg_i64(c, NR), "");
        LLVMValueRef in_range = LLVMBuildICmp(c->b, LLVMIntSLT, col.iv, cg_i64(c, U), "");
        LLVMValueRef src_row = cg_smin(c, col.iv, cg_i64(c, U - 1));
        LLVMValueRef scale = cg_f32(c, 1.0), shift = cg_f32(c, 0.0);
        if (bn >= 0) bn_scale_shift(c, raw, bn, src_row, &scale, &shift);
        cg_loop k;
        cg_loop_begin(c, &k, cg_i64(c, 0), cg_i64(c, K), "k");
        LLVMValueRef v = cg_load(c, w, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, src_row, cg_i64(c, K), ""), k.iv, ""));
        v = cg_select(c, in_range, bn >= 0 ? cg_fmul(c, v, scale, false) : v, cg_f32(c, 0.0));
        LLVMValueRef at = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, p, cg_i64(c, K), ""), k.iv, ""),
                                                          cg_i64(c, NR), ""), j, "");
        cg_store(c, v, dst, at);
        cg_loop_end(c, &k);
        if (conv) { /* the kernel reads the bias where it is */
            cg_loop_end(c, &col);
            continue;
        }
        LLVMValueRef bias = cg_f32(c, 0.0);
        if (nd->ia[PN_DENSE_BIAS]) {
            LLVMValueRef bsrc = cg_gep(c, w, cg_i64(c, (U * K + 15) / 16 * 16));
            bias = cg_load(c, bsrc, src_row);
        }
        if (bn >= 0) bias = cg_fma(c, bias, scale, shift);
        bias = cg_select(c, in_range, bias, cg_f32(c, 0.0));
        cg_store(c, bias, dst, LLVMBuildAdd(c->b, cg_i64(c, NP * K * NR), col.iv, ""));
        cg_loop_end(c, &col);
    }
    LLVMBuildRetVoid(c->b);
    return c->fn;
}

/* One parameter's rows [row0, row0 + nrows) (rows: the first axis; a scalar is one row) between a
 * buffer that holds just those rows and the prepared buffer: into it (back false), or out of it
 * (back true). A packed dense layer's weights and bias live only as panels; every other tensor
 * sits at its raw offset, and a packed conv's weights are packed as well. The prepared buffer
 * starts zeroed, so padding is never written. */
static void param_rows(cg *c, int n, int k, int64_t off, LLVMValueRef row0, LLVMValueRef nrows, LLVMValueRef rows,
                       LLVMValueRef prep, bool back) {
    const pn_node *nd = &c->g->nodes[n];
    const pn_shape *s = &nd->params[k].shape;
    int64_t elems = pn_shape_sample_elems(s), R = s->rank > 0 ? s->d[0] : 1, E = R > 0 ? elems / R : 0;
    bool dense = c->pack_offset[n] >= 0 && nd->op == PN_OP_DENSE && k < 2;
    LLVMValueRef end = LLVMBuildAdd(c->b, row0, nrows, "");
    if (!dense) {
        LLVMValueRef at = cg_gep(c, prep, LLVMBuildAdd(c->b, cg_i64(c, off), LLVMBuildMul(c->b, row0, cg_i64(c, E), ""), ""));
        cg_loop i;
        cg_loop_begin(c, &i, cg_i64(c, 0), LLVMBuildMul(c->b, nrows, cg_i64(c, E), ""), "i");
        if (back) cg_store(c, cg_load(c, at, i.iv), rows, i.iv);
        else cg_store(c, cg_load(c, rows, i.iv), at, i.iv);
        cg_loop_end(c, &i);
        if (back || c->pack_offset[n] < 0 || k != 0) return;
    }
    /* Panels: packed[(r / NR * K + j) * NR + r % NR] = W[r][j]; a dense bias after NP * K * NR. */
    int64_t NR = c->pack_width[n], U, K;
    weight_matrix(nd, &U, &K);
    int64_t NP = (U + NR - 1) / NR;
    LLVMValueRef packed = cg_gep(c, prep, cg_i64(c, c->pack_offset[n]));
    cg_loop r;
    cg_loop_begin(c, &r, row0, end, "r");
    LLVMValueRef src = cg_gep(c, rows, LLVMBuildMul(c->b, LLVMBuildSub(c->b, r.iv, row0, ""), cg_i64(c, E), ""));
    if (k == 1) {
        LLVMValueRef at = LLVMBuildAdd(c->b, cg_i64(c, NP * K * NR), r.iv, "");
        if (back) cg_store(c, cg_load(c, packed, at), src, cg_i64(c, 0));
        else cg_store(c, cg_load(c, src, cg_i64(c, 0)), packed, at);
    } else {
        LLVMValueRef p = LLVMBuildSDiv(c->b, r.iv, cg_i64(c, NR), ""), jr = LLVMBuildSRem(c->b, r.iv, cg_i64(c, NR), "");
        LLVMValueRef base = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, p, cg_i64(c, K * NR), ""), jr, "");
        cg_loop j;
        cg_loop_begin(c, &j, cg_i64(c, 0), cg_i64(c, K), "j");
        LLVMValueRef at = LLVMBuildAdd(c->b, base, LLVMBuildMul(c->b, j.iv, cg_i64(c, NR), ""), "");
        if (back) cg_store(c, cg_load(c, packed, at), src, j.iv);
        else cg_store(c, cg_load(c, src, j.iv), packed, at);
        cg_loop_end(c, &j);
    }
    cg_loop_end(c, &r);
}

/* void px__prepare_param(int64_t p, int64_t row0, int64_t nrows, const float *rows, float *prepared)
 * and px__unprepare_param(p, row0, nrows, const float *prepared, float *rows): parameter p (in
 * descriptor order) a slice of rows at a time, so libpnetrt loads weights straight into the
 * prepared buffer and derives raw parameters only when asked. A switch over p. */
static LLVMValueRef gen_param_fn(cg *c, bool back) {
    const pn_graph *g = c->g;
    char *name = pn_xasprintf("%s__%sprepare_param", c->px, back ? "un" : "");
    LLVMTypeRef args[5] = {c->i64, c->i64, c->i64, c->ptr, c->ptr};
    LLVMValueRef fn = c->fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->vd, args, 5, 0));
    free(name);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(c->ctx, fn, "entry");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, fn, "done");
    LLVMPositionBuilderAtEnd(c->b, done);
    LLVMBuildRetVoid(c->b);
    LLVMPositionBuilderAtEnd(c->b, entry);
    LLVMValueRef sw = LLVMBuildSwitch(c->b, LLVMGetParam(fn, 0), done, 16);
    LLVMValueRef row0 = LLVMGetParam(fn, 1), nrows = LLVMGetParam(fn, 2);
    LLVMValueRef rows = LLVMGetParam(fn, back ? 4 : 3), prep = LLVMGetParam(fn, back ? 3 : 4);
    int64_t np = 0;
    for (int n = 0; n < g->nnodes; n++) {
        int64_t off = g->plan.param_offset[n];
        for (int k = 0; k < g->nodes[n].nparams; k++, np++) {
            LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(c->ctx, fn, "param");
            LLVMAddCase(sw, cg_i64(c, np), bb);
            LLVMPositionBuilderAtEnd(c->b, bb);
            param_rows(c, n, k, off, row0, nrows, rows, prep, back);
            LLVMBuildBr(c->b, done);
            off += (pn_shape_sample_elems(&g->nodes[n].params[k].shape) + 15) / 16 * 16;
        }
    }
    return fn;
}

void cg_gen_param_fns(cg *c, LLVMValueRef *prepare, LLVMValueRef *unprepare) {
    *prepare = *unprepare = LLVMConstNull(c->ptr);
    /* A folded batchnorm mixes several tensors into one prepared value: such networks prepare
     * from the whole raw buffer (px__prepare) instead. */
    for (int n = 0; n < c->g->nnodes; n++)
        if (c->fold_bias[n] >= 0 || cg_folded_bn(c, n) >= 0) return;
    *prepare = gen_param_fn(c, false);
    *unprepare = gen_param_fn(c, true);
}
