/* Backward kernels, and the training-mode forward pieces (dropout, batchnorm with batch
 * statistics, the loss). Every kernel reads its operands through a context (train.h) and runs
 * over one chunk; threads split the work so that each output element is computed by one thread
 * in a fixed order, so gradients never depend on the thread count. Parameter gradients are
 * written per chunk (into the chunk's slot) and summed across chunks by the update (optim.c). */
#include "train.h"
#include "../support/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static LLVMValueRef ctx_arg;

static LLVMValueRef I(cg *c, int64_t v) { return cg_i64(c, v); }
static LLVMValueRef iadd(cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(c->b, a, b, ""); }
static LLVMValueRef isub(cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSub(c->b, a, b, ""); }
static LLVMValueRef imul(cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildMul(c->b, a, b, ""); }
static LLVMValueRef idiv(cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSDiv(c->b, a, b, ""); }
static LLVMValueRef irem(cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSRem(c->b, a, b, ""); }
static LLVMValueRef F(cg *c, double v) { return cg_f32(c, v); }

static LLVMValueRef slot(cg *c, int k) {
    LLVMValueRef idx = I(c, k);
    return LLVMBuildInBoundsGEP2(c->b, c->i64, ctx_arg, &idx, 1, "");
}
static LLVMValueRef ctxp(cg *c, int k) { return LLVMBuildLoad2(c->b, c->ptr, slot(c, k), ""); }
static LLVMValueRef ctxi(cg *c, int k) { return LLVMBuildLoad2(c->b, c->i64, slot(c, k), ""); }

static void fn_attr(cg *c, const char *k, const char *v) {
    LLVMAddAttributeAtIndex(c->fn, LLVMAttributeFunctionIndex,
                            LLVMCreateStringAttribute(c->ctx, k, (unsigned)strlen(k), v, (unsigned)strlen(v)));
}

/* Starts px__t<node>_<what>(ctx, n, ith, nth). */
static LLVMValueRef tk_begin(cg *c, int node, const char *what) {
    LLVMTypeRef args[4] = {c->ptr, c->i64, c->i64, c->i64};
    char *name = pn_xasprintf("%s__t%d_%s", c->px, node, what);
    c->fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->vd, args, 4, 0));
    free(name);
    LLVMSetLinkage(c->fn, LLVMInternalLinkage);
    unsigned kind = LLVMGetEnumAttributeKindForName("noinline", 8);
    LLVMAddAttributeAtIndex(c->fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(c->ctx, kind, 0));
    if (c->wide_vectors) fn_attr(c, "prefer-vector-width", "512");
    fn_attr(c, "no-builtins", "");
    ctx_arg = LLVMGetParam(c->fn, 0);
    c->n = LLVMGetParam(c->fn, 1);
    c->ith = LLVMGetParam(c->fn, 2);
    c->nth = LLVMGetParam(c->fn, 3);
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry"));
    c->params = ctxp(c, TK_PARAMS);
    c->scratch = ctxp(c, TK_SCRATCH);
    return c->fn;
}

static LLVMValueRef tk_end(cg *c) {
    LLVMBuildRetVoid(c->b);
    return c->fn;
}

static LLVMValueRef imin(cg *c, LLVMValueRef a, LLVMValueRef b) { return cg_smin(c, a, b); }
static LLVMValueRef fsel(cg *c, LLVMValueRef cond, LLVMValueRef a, LLVMValueRef b) { return cg_select(c, cond, a, b); }
static LLVMValueRef fgt0(cg *c, LLVMValueRef v) { return LLVMBuildFCmp(c->b, LLVMRealOGT, v, F(c, 0.0), ""); }

/* Writes v to p[idx], or adds it when acc. */
static void put(cg *c, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx, bool acc) {
    if (acc) v = cg_fadd(c, cg_load(c, p, idx), v, false);
    cg_store(c, v, p, idx);
}

/* p[lo..hi) = 0. */
static void zero(cg *c, LLVMValueRef p, LLVMValueRef lo, LLVMValueRef hi) {
    cg_loop z;
    cg_loop_begin(c, &z, lo, hi, "z");
    cg_store(c, F(c, 0.0), p, z.iv);
    cg_loop_end(c, &z);
}

/* Sample count of a batched shape for the chunk: n * elems. */
static LLVMValueRef numel(cg *c, const pn_shape *s) { return cg_numel(c, s); }

bool cg_grad_edge(const pn_graph *g, int node, int k) {
    const pn_node *n = &g->nodes[node];
    if ((n->op == PN_OP_EMBEDDING && k == 0) || ((n->op == PN_OP_CROSS_ENTROPY || n->op == PN_OP_MSE) && k == 1)) return false;
    return g->tplan.grad[n->in[k]];
}

/* ---- a general GEMM ---------------------------------------------------------------------------
 * C[m*ldc + j] (+)= sum_{k<K} A[m*lda + k] * B[k*ldb + j], for m < M and j in [n0, n1). Register
 * tiles of MR rows by NV vectors; with split, threads take (panel, row tile) pairs in order. Each
 * element sums k in ascending order, so any split gives the same bits. */
static void gemm(cg *c, LLVMValueRef M, LLVMValueRef n0, LLVMValueRef n1, LLVMValueRef K, LLVMValueRef A,
                 LLVMValueRef lda, LLVMValueRef Bm, int64_t ldb, LLVMValueRef Cm, LLVMValueRef ldc, bool acc, bool split,
                 LLVMValueRef bias) {
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    int64_t NR = (int64_t)VW * NV;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    LLVMTypeRef it = LLVMVectorType(c->i32, (unsigned)VW);
    LLVMValueRef width = isub(c, n1, n0);
    LLVMValueRef panels = idiv(c, iadd(c, width, I(c, NR - 1)), I(c, NR));
    LLVMValueRef mtiles = idiv(c, iadd(c, M, I(c, MR - 1)), I(c, MR));
    LLVMValueRef total = imul(c, panels, mtiles), lo = I(c, 0), hi = total;
    if (split) cg_split(c, total, &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "tile");
    LLVMValueRef p = idiv(c, t.iv, mtiles), mt = irem(c, t.iv, mtiles);
    LLVMValueRef col = iadd(c, n0, imul(c, p, I(c, NR)));
    LLVMValueRef rem = LLVMBuildTrunc(c->b, isub(c, n1, col), c->i32, "");
    LLVMValueRef mask[8];
    for (int j = 0; j < NV; j++) {
        LLVMValueRef lane[64];
        for (int l = 0; l < VW; l++) lane[l] = LLVMConstInt(c->i32, (unsigned long long)(j * VW + l), 0);
        LLVMValueRef r = cg_splat(c, rem, VW);
        mask[j] = LLVMBuildICmp(c->b, LLVMIntSLT, LLVMConstVector(lane, (unsigned)VW), r, "");
        (void)it;
    }
    LLVMValueRef m0 = imul(c, mt, I(c, MR));
    LLVMValueRef rows = imin(c, I(c, MR), isub(c, M, m0));
    LLVMValueRef bp = cg_gep(c, Bm, col);
    for (int full = 1; full >= 0; full--) {
        cg_if f;
        cg_if_begin(c, &f, LLVMBuildICmp(c->b, full ? LLVMIntEQ : LLVMIntNE, rows, I(c, MR), ""));
        int mr = full ? MR : 1;
        cg_loop r;
        LLVMValueRef rbase = m0;
        if (!full) {
            cg_loop_begin(c, &r, m0, iadd(c, m0, rows), "r");
            rbase = r.iv;
        }
        LLVMValueRef arow[16], crow[16], init[16][8], accv[16][8];
        for (int i = 0; i < mr; i++) {
            LLVMValueRef m = iadd(c, rbase, I(c, i));
            arow[i] = cg_gep(c, A, imul(c, m, lda));
            crow[i] = cg_gep(c, Cm, iadd(c, imul(c, m, ldc), col));
            for (int j = 0; j < NV; j++)
                init[i][j] = acc    ? cg_masked_load(c, vt, cg_gep(c, crow[i], I(c, j * VW)), mask[j])
                             : bias ? cg_masked_load(c, vt, cg_gep(c, bias, iadd(c, col, I(c, j * VW))), mask[j])
                                    : LLVMConstNull(vt);
        }
        cg_micro_tile_ex(c, arow, mr, bp, ldb, NULL, mask, I(c, 0), K, init, accv);
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < NV; j++) cg_masked_store(c, accv[i][j], cg_gep(c, crow[i], I(c, j * VW)), mask[j]);
        if (!full) cg_loop_end(c, &r);
        cg_if_end(c, &f);
    }
    cg_loop_end(c, &t);
}

/* dst[j*ld_dst + i] = src[i*ld_src + j] for i < rows, j < cols (this thread does all of it). */
static void transpose(cg *c, LLVMValueRef dst, LLVMValueRef ld_dst, LLVMValueRef src, LLVMValueRef rows, int64_t cols) {
    cg_loop i;
    cg_loop_begin(c, &i, I(c, 0), rows, "ti");
    cg_loop j;
    cg_loop_begin(c, &j, I(c, 0), I(c, cols), "tj");
    cg_store(c, cg_load(c, src, iadd(c, imul(c, i.iv, I(c, cols)), j.iv)), dst, iadd(c, imul(c, j.iv, ld_dst), i.iv));
    cg_loop_end(c, &j);
    cg_loop_end(c, &i);
}

static void need_scratch(cg *c, int64_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (bytes > c->scratch_bytes) c->scratch_bytes = bytes;
}

static int64_t align16(int64_t v) { return (v + 15) / 16 * 16; }

/* ---- dense ------------------------------------------------------------------------------------ */
static LLVMValueRef bwd_dense(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    int64_t K, U = nd->ia[PN_DENSE_UNITS];
    tk_begin(c, node, "bwd");
    LLVMValueRef rows = cg_rows(c, &g->nodes[nd->in[0]].shape, &K);
    int64_t rest = pn_shape_sample_elems(&g->nodes[nd->in[0]].shape) / K;
    LLVMValueRef dy = ctxp(c, TK_DY), x = ctxp(c, TK_X), gw = ctxp(c, TK_GPARAMS);
    if (cg_grad_edge(g, node, 0))
        gemm(c, rows, I(c, 0), I(c, K), I(c, U), dy, I(c, U), c->params, K, ctxp(c, TK_DX), I(c, K), acc[0], true, NULL);
    /* dW = dy^T x: dy transposed into this thread's scratch (rows at most chunk * rest). */
    int64_t ld = g->tplan.chunk * rest;
    need_scratch(c, ld * U * 4);
    transpose(c, c->scratch, I(c, ld), dy, rows, U);
    gemm(c, I(c, U), I(c, 0), I(c, K), rows, c->scratch, I(c, ld), x, K, gw, I(c, K), false, true, NULL);
    if (nd->ia[PN_DENSE_BIAS]) {
        LLVMValueRef gb = cg_gep(c, gw, I(c, align16(U * K)));
        LLVMValueRef lo, hi;
        cg_split(c, I(c, U), &lo, &hi);
        zero(c, gb, lo, hi);
        cg_loop r;
        cg_loop_begin(c, &r, I(c, 0), rows, "r");
        LLVMValueRef drow = cg_gep(c, dy, imul(c, r.iv, I(c, U)));
        cg_loop u2;
        cg_loop_begin(c, &u2, lo, hi, "u2");
        put(c, cg_load(c, drow, u2.iv), gb, u2.iv, true);
        cg_loop_end(c, &u2);
        cg_loop_end(c, &r);
    }
    return tk_end(c);
}

/* The training forward of dense: y = b + x W^T, with W^T (made by cg_gen_prep) in the global area. */
LLVMValueRef cg_gen_dense_train(cg *c, int node) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    int64_t K, U = nd->ia[PN_DENSE_UNITS];
    tk_begin(c, node, "dense");
    LLVMValueRef rows = cg_rows(c, &g->nodes[nd->in[0]].shape, &K);
    LLVMValueRef wt = cg_gep(c, ctxp(c, TK_GLOBAL), I(c, g->tplan.global_off[node]));
    LLVMValueRef bias = nd->ia[PN_DENSE_BIAS] ? cg_gep(c, c->params, I(c, align16(U * K))) : NULL;
    gemm(c, rows, I(c, 0), I(c, U), I(c, K), ctxp(c, TK_X), I(c, K), wt, U, ctxp(c, TK_Y), I(c, U), false, true, bias);
    return tk_end(c);
}

/* ---- conv2d ------------------------------------------------------------------------------------
 * Per sample: colT[p][ci*KK + kh*KW + kw] = x[ci, oh*SH + kh - PH, ow*SW + kw - PW] (0 outside);
 * dW[O x CKK] += dy_s[O x P] colT; for dx, dcolT[P x CKK] = dy_s^T W, then scattered back
 * (col2im). dW is split by tiles; dx by input channels, so each thread owns its dx planes. */
static LLVMValueRef bwd_conv(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *xs = &g->nodes[nd->in[0]].shape;
    int64_t Ci = xs->d[1], H = xs->d[2], W = xs->d[3], O = nd->shape.d[1], OH = nd->shape.d[2], OW = nd->shape.d[3];
    int64_t KH = nd->ia[PN_CONV_KH], KW = nd->ia[PN_CONV_KW], SH = nd->ia[PN_CONV_SH], SW = nd->ia[PN_CONV_SW];
    int64_t PH = nd->ia[PN_CONV_PH], PW = nd->ia[PN_CONV_PW];
    int64_t KK = KH * KW, CKK = Ci * KK, P = OH * OW;
    bool need_dx = cg_grad_edge(g, node, 0);
    tk_begin(c, node, "bwd");
    need_scratch(c, (P * CKK * 2 + P * O) * 4);
    LLVMValueRef colT = c->scratch, dcolT = cg_gep(c, c->scratch, I(c, P * CKK)),
                 dyT = cg_gep(c, c->scratch, I(c, 2 * P * CKK));
    LLVMValueRef dy = ctxp(c, TK_DY), x = ctxp(c, TK_X), dx = ctxp(c, TK_DX), gw = ctxp(c, TK_GPARAMS);
    LLVMValueRef clo, chi;
    cg_split(c, I(c, Ci), &clo, &chi);
    cg_loop s;
    cg_loop_begin(c, &s, I(c, 0), c->n, "s");
    LLVMValueRef xs0 = cg_gep(c, x, imul(c, s.iv, I(c, Ci * H * W)));
    LLVMValueRef dys = cg_gep(c, dy, imul(c, s.iv, I(c, O * P)));
    /* colT, by this thread in full: rows p = (oh, ow), columns j = (ci, kh, kw), zero outside. */
    cg_loop ohl;
    cg_loop_begin(c, &ohl, I(c, 0), I(c, OH), "oh");
    cg_loop owl;
    cg_loop_begin(c, &owl, I(c, 0), I(c, OW), "ow");
    LLVMValueRef crow = cg_gep(c, colT, imul(c, iadd(c, imul(c, ohl.iv, I(c, OW)), owl.iv), I(c, CKK)));
    cg_loop cil;
    cg_loop_begin(c, &cil, I(c, 0), I(c, Ci), "ci");
    LLVMValueRef xplane = cg_gep(c, xs0, imul(c, cil.iv, I(c, H * W)));
    LLVMValueRef ccol = cg_gep(c, crow, imul(c, cil.iv, I(c, KK)));
    for (int64_t kh = 0; kh < KH; kh++) {
        LLVMValueRef ih = iadd(c, imul(c, ohl.iv, I(c, SH)), I(c, kh - PH));
        LLVMValueRef hok = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, ih, I(c, 0), ""),
                                        LLVMBuildICmp(c->b, LLVMIntSLT, ih, I(c, H), ""), "");
        for (int64_t kw = 0; kw < KW; kw++) {
            LLVMValueRef iw = iadd(c, imul(c, owl.iv, I(c, SW)), I(c, kw - PW));
            LLVMValueRef inb = LLVMBuildAnd(c->b, hok, LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, iw, I(c, 0), ""),
                                                               LLVMBuildICmp(c->b, LLVMIntSLT, iw, I(c, W), ""), ""), "");
            LLVMValueRef idx = LLVMBuildSelect(c->b, inb, iadd(c, imul(c, ih, I(c, W)), iw), I(c, 0), "");
            cg_store(c, fsel(c, inb, cg_load(c, xplane, idx), F(c, 0.0)), ccol, I(c, kh * KW + kw));
        }
    }
    cg_loop_end(c, &cil);
    cg_loop_end(c, &owl);
    cg_loop_end(c, &ohl);
    /* dW += dy_s colT (the first sample writes). */
    LLVMValueRef first = LLVMBuildICmp(c->b, LLVMIntEQ, s.iv, I(c, 0), "");
    for (int a = 0; a < 2; a++) {
        cg_if f;
        cg_if_begin(c, &f, a == 0 ? first : LLVMBuildNot(c->b, first, ""));
        gemm(c, I(c, O), I(c, 0), I(c, CKK), I(c, P), dys, I(c, P), colT, CKK, gw, I(c, CKK), a == 1, true, NULL);
        cg_if_end(c, &f);
    }
    if (nd->ia[PN_CONV_BIAS]) {
        LLVMValueRef gb = cg_gep(c, gw, I(c, align16(O * CKK)));
        LLVMValueRef lo, hi;
        cg_split(c, I(c, O), &lo, &hi);
        cg_loop o;
        cg_loop_begin(c, &o, lo, hi, "o");
        cg_loop q;
        cg_loop_begin(c, &q, I(c, 0), I(c, P), "q");
        LLVMValueRef sacc = cg_loop_acc(c, &q, F(c, 0.0));
        cg_loop_next(&q, sacc, cg_fadd(c, sacc, cg_load(c, dys, iadd(c, imul(c, o.iv, I(c, P)), q.iv)), true));
        cg_loop_end(c, &q);
        LLVMValueRef prev = cg_load(c, gb, o.iv);
        cg_store(c, fsel(c, first, sacc, cg_fadd(c, prev, sacc, false)), gb, o.iv);
        cg_loop_end(c, &o);
    }
    if (need_dx) {
        /* dyT[p][o], then dcolT for this thread's channels' columns, then col2im. */
        transpose(c, dyT, I(c, O), dys, I(c, O), P);
        gemm(c, I(c, P), imul(c, clo, I(c, KK)), imul(c, chi, I(c, KK)), I(c, O), dyT, I(c, O), c->params, CKK, dcolT,
             I(c, CKK), false, false, NULL);
        LLVMValueRef dxs = cg_gep(c, dx, imul(c, s.iv, I(c, Ci * H * W)));
        if (!acc[0]) {
            zero(c, dxs, imul(c, clo, I(c, H * W)), imul(c, chi, I(c, H * W)));
        }
        /* col2im: for each (oh, kh) row in range and each kw, the ow range that lands inside. */
        cg_loop cc;
        cg_loop_begin(c, &cc, clo, chi, "ci");
        LLVMValueRef dplane = cg_gep(c, dxs, imul(c, cc.iv, I(c, H * W)));
        LLVMValueRef dcol = cg_gep(c, dcolT, imul(c, cc.iv, I(c, KK)));
        cg_loop oh2;
        cg_loop_begin(c, &oh2, I(c, 0), I(c, OH), "oh2");
        for (int64_t kh = 0; kh < KH; kh++) {
            LLVMValueRef ih = iadd(c, imul(c, oh2.iv, I(c, SH)), I(c, kh - PH));
            cg_if f;
            cg_if_begin(c, &f, LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, ih, I(c, 0), ""),
                                            LLVMBuildICmp(c->b, LLVMIntSLT, ih, I(c, H), ""), ""));
            LLVMValueRef drow = cg_gep(c, dplane, imul(c, ih, I(c, W)));
            LLVMValueRef srow = cg_gep(c, dcol, imul(c, imul(c, oh2.iv, I(c, OW)), I(c, CKK)));
            for (int64_t kw = 0; kw < KW; kw++) {
                int64_t lo = PW - kw > 0 ? (PW - kw + SW - 1) / SW : 0;
                int64_t hi = (W - 1 + PW - kw) >= 0 ? (W - 1 + PW - kw) / SW + 1 : 0;
                if (hi > OW) hi = OW;
                if (lo >= hi) continue;
                cg_loop ow2;
                cg_loop_begin(c, &ow2, I(c, lo), I(c, hi), "ow2");
                LLVMValueRef iw = iadd(c, imul(c, ow2.iv, I(c, SW)), I(c, kw - PW));
                put(c, cg_load(c, srow, iadd(c, imul(c, ow2.iv, I(c, CKK)), I(c, kh * KW + kw))), drow, iw, true);
                cg_loop_end(c, &ow2);
            }
            cg_if_end(c, &f);
        }
        cg_loop_end(c, &oh2);
        cg_loop_end(c, &cc);
    }
    cg_loop_end(c, &s);
    return tk_end(c);
}

/* ---- pooling ---------------------------------------------------------------------------------- */
static LLVMValueRef bwd_pool(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *xs = &g->nodes[nd->in[0]].shape;
    int64_t C = xs->d[1], H = xs->d[2], W = xs->d[3], OH = nd->shape.d[2], OW = nd->shape.d[3];
    int64_t KH = nd->ia[PN_POOL_KH], KW = nd->ia[PN_POOL_KW], SH = nd->ia[PN_POOL_SH], SW = nd->ia[PN_POOL_SW];
    int64_t PH = nd->ia[PN_POOL_PH], PW = nd->ia[PN_POOL_PW];
    bool is_max = nd->op == PN_OP_MAXPOOL2D;
    tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY), x = ctxp(c, TK_X), dx = ctxp(c, TK_DX);
    LLVMValueRef lo, hi;
    cg_split(c, imul(c, c->n, I(c, C)), &lo, &hi);
    cg_loop pl;
    cg_loop_begin(c, &pl, lo, hi, "plane");
    LLVMValueRef xp = cg_gep(c, x, imul(c, pl.iv, I(c, H * W))), dxp = cg_gep(c, dx, imul(c, pl.iv, I(c, H * W)));
    LLVMValueRef dyp = cg_gep(c, dy, imul(c, pl.iv, I(c, OH * OW)));
    LLVMValueRef yp = cg_gep(c, ctxp(c, TK_Y), imul(c, pl.iv, I(c, OH * OW)));
    bool tiled = is_max && SH == KH && SW == KW && PH == 0 && PW == 0 && KH * KW <= 64;
    if (!acc[0] && (!tiled || H != OH * KH || W != OW * KW)) {
        zero(c, dxp, I(c, 0), I(c, H * W));
    }
    if (tiled) {
        /* Windows tile the plane: each window's maximum takes dy, the rest of it 0 (or +0). */
        cg_loop oh;
        cg_loop_begin(c, &oh, I(c, 0), I(c, OH), "oh");
        cg_loop ow;
        cg_loop_begin(c, &ow, I(c, 0), I(c, OW), "ow");
        LLVMValueRef d = cg_load(c, dyp, iadd(c, imul(c, oh.iv, I(c, OW)), ow.iv));
        LLVMValueRef corner = iadd(c, imul(c, oh.iv, I(c, KH * W)), imul(c, ow.iv, I(c, KW)));
        /* The forward pass stored the window's maximum: the first element equal to it takes dy
         * (a NaN maximum routes nothing). */
        LLVMValueRef m = cg_load(c, yp, iadd(c, imul(c, oh.iv, I(c, OW)), ow.iv));
        LLVMValueRef found = LLVMConstInt(c->i1, 0, 0);
        for (int64_t k = 0; k < KH * KW; k++) {
            LLVMValueRef at = iadd(c, corner, I(c, (k / KW) * W + k % KW));
            LLVMValueRef eq = LLVMBuildFCmp(c->b, LLVMRealOEQ, cg_load(c, xp, at), m, "");
            LLVMValueRef hit = LLVMBuildAnd(c->b, eq, LLVMBuildNot(c->b, found, ""), "");
            found = LLVMBuildOr(c->b, found, eq, "");
            put(c, fsel(c, hit, d, F(c, 0.0)), dxp, at, acc[0]);
        }
        cg_loop_end(c, &ow);
        cg_loop_end(c, &oh);
    }
    for (int64_t oh = 0; oh < OH && !tiled; oh++) {
        cg_loop ow;
        cg_loop_begin(c, &ow, I(c, 0), I(c, OW), "ow");
        LLVMValueRef d = cg_load(c, dyp, iadd(c, I(c, oh * OW), ow.iv));
        LLVMValueRef best = F(c, -INFINITY), bidx = I(c, -1);
        for (int64_t kh = 0; kh < KH; kh++) {
            int64_t ih = oh * SH + kh - PH;
            if (ih < 0 || ih >= H) continue;
            for (int64_t kw = 0; kw < KW; kw++) {
                LLVMValueRef iw = iadd(c, imul(c, ow.iv, I(c, SW)), I(c, kw - PW));
                LLVMValueRef inb = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, iw, I(c, 0), ""),
                                                LLVMBuildICmp(c->b, LLVMIntSLT, iw, I(c, W), ""), "");
                LLVMValueRef idx = iadd(c, I(c, ih * W), LLVMBuildSelect(c->b, inb, iw, I(c, 0), ""));
                if (is_max) {
                    LLVMValueRef v = cg_load(c, xp, idx);
                    /* The first maximum in window order (NaN wins, as in PyTorch). */
                    LLVMValueRef better = LLVMBuildAnd(c->b, inb,
                        LLVMBuildOr(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, v, best, ""),
                                    LLVMBuildAnd(c->b, LLVMBuildFCmp(c->b, LLVMRealUNO, v, v, ""),
                                                 LLVMBuildFCmp(c->b, LLVMRealORD, best, best, ""), ""), ""), "");
                    best = fsel(c, better, v, best);
                    bidx = LLVMBuildSelect(c->b, better, idx, bidx, "");
                } else {
                    cg_if f;
                    cg_if_begin(c, &f, inb);
                    put(c, cg_fmul(c, d, F(c, 1.0 / (double)(KH * KW)), false), dxp, idx, true);
                    cg_if_end(c, &f);
                }
            }
        }
        if (is_max) {
            cg_if f;
            cg_if_begin(c, &f, LLVMBuildICmp(c->b, LLVMIntSGE, bidx, I(c, 0), ""));
            put(c, d, dxp, bidx, true);
            cg_if_end(c, &f);
        }
        cg_loop_end(c, &ow);
    }
    cg_loop_end(c, &pl);
    return tk_end(c);
}

static LLVMValueRef bwd_global_avgpool(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_shape *xs = &g->nodes[g->nodes[node].in[0]].shape;
    int64_t HW = xs->d[2] * xs->d[3];
    tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY), dx = ctxp(c, TK_DX);
    LLVMValueRef lo, hi;
    cg_split(c, numel(c, xs), &lo, &hi);
    cg_loop e;
    cg_loop_begin(c, &e, lo, hi, "e");
    put(c, cg_fmul(c, cg_load(c, dy, idiv(c, e.iv, I(c, HW))), F(c, 1.0 / (double)HW), false), dx, e.iv, acc[0]);
    cg_loop_end(c, &e);
    return tk_end(c);
}

/* ---- elementwise ------------------------------------------------------------------------------ */

/* The dropout mask of element idx (global across the batch) at a step: keep with probability 1-p.
 * A counter-based hash, so forward and backward agree and no mask is stored. */
static LLVMValueRef dropout_keep(cg *c, int node, LLVMValueRef gidx, double p) {
    LLVMValueRef seed = ctxi(c, TK_SEED), step = ctxi(c, TK_STEP);
    LLVMValueRef h = LLVMBuildXor(c->b, imul(c, seed, I(c, INT64_C(0x9E3779B97F4A7C15))),
                                  imul(c, iadd(c, step, I(c, node * 65537)), I(c, INT64_C(0xBF58476D1CE4E5B9))), "");
    h = iadd(c, h, imul(c, gidx, I(c, INT64_C(0x94D049BB133111EB))));
    h = LLVMBuildXor(c->b, h, LLVMBuildLShr(c->b, h, I(c, 30), ""), "");
    h = imul(c, h, I(c, INT64_C(0xBF58476D1CE4E5B9)));
    h = LLVMBuildXor(c->b, h, LLVMBuildLShr(c->b, h, I(c, 27), ""), "");
    h = imul(c, h, I(c, INT64_C(0x94D049BB133111EB)));
    h = LLVMBuildXor(c->b, h, LLVMBuildLShr(c->b, h, I(c, 31), ""), "");
    LLVMValueRef top = LLVMBuildLShr(c->b, h, I(c, 40), ""); /* 24 bits */
    return LLVMBuildICmp(c->b, LLVMIntSGE, top, I(c, (int64_t)(p * 16777216.0 + 0.5)), "");
}

LLVMValueRef cg_gen_dropout_train(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    double p = nd->fa[PN_FA_VALUE];
    tk_begin(c, node, "dropout");
    LLVMValueRef y = ctxp(c, TK_Y), x = ctxp(c, TK_X);
    LLVMValueRef base = imul(c, ctxi(c, TK_S0), I(c, pn_shape_sample_elems(&nd->shape)));
    LLVMValueRef lo, hi;
    cg_split(c, numel(c, &nd->shape), &lo, &hi);
    cg_loop e;
    cg_loop_begin(c, &e, lo, hi, "e");
    LLVMValueRef keep = dropout_keep(c, node, iadd(c, base, e.iv), p);
    LLVMValueRef v = cg_fmul(c, cg_load(c, x, e.iv), F(c, p < 1 ? 1.0 / (1.0 - p) : 0.0), false);
    cg_store(c, fsel(c, keep, v, F(c, 0.0)), y, e.iv);
    cg_loop_end(c, &e);
    return tk_end(c);
}

static LLVMValueRef bwd_unary(cg *c, int node, const bool *acc) {
    const pn_node *nd = &c->g->nodes[node];
    tk_begin(c, node, "bwd");
    LLVMValueRef y = ctxp(c, TK_Y), dy = ctxp(c, TK_DY), x = ctxp(c, TK_X), dx = ctxp(c, TK_DX);
    LLVMValueRef base = imul(c, ctxi(c, TK_S0), I(c, pn_shape_sample_elems(&nd->shape)));
    LLVMValueRef lo, hi;
    cg_split(c, numel(c, &nd->shape), &lo, &hi);
    cg_loop e;
    cg_loop_begin(c, &e, lo, hi, "e");
    LLVMValueRef d = cg_load(c, dy, e.iv), r;
    switch (nd->op) {
    case PN_OP_RELU: r = fsel(c, fgt0(c, cg_load(c, x, e.iv)), d, F(c, 0.0)); break;
    case PN_OP_LEAKY_RELU:
        r = fsel(c, fgt0(c, cg_load(c, x, e.iv)), d, cg_fmul(c, d, F(c, nd->fa[PN_FA_VALUE]), false));
        break;
    case PN_OP_SIGMOID: {
        LLVMValueRef s = cg_load(c, y, e.iv);
        r = cg_fmul(c, d, cg_fmul(c, s, cg_fsub(c, F(c, 1.0), s), false), false);
        break;
    }
    case PN_OP_TANH: {
        LLVMValueRef t = cg_load(c, y, e.iv);
        r = cg_fmul(c, d, cg_fsub(c, F(c, 1.0), cg_fmul(c, t, t, false)), false);
        break;
    }
    case PN_OP_GELU: r = cg_fmul(c, d, cg_gelu_grad(c, cg_load(c, x, e.iv)), false); break;
    case PN_OP_DROPOUT: {
        double p = nd->fa[PN_FA_VALUE];
        LLVMValueRef keep = dropout_keep(c, node, iadd(c, base, e.iv), p);
        r = fsel(c, keep, cg_fmul(c, d, F(c, p < 1 ? 1.0 / (1.0 - p) : 0.0), false), F(c, 0.0));
        break;
    }
    default: PN_ASSERT(!"not unary"); r = d;
    }
    put(c, r, dx, e.iv, acc[0]);
    cg_loop_end(c, &e);
    return tk_end(c);
}

/* add, sub, mul: operands broadcast to the output (both batched, or one a constant). */
static LLVMValueRef bwd_binary(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *os = &nd->shape;
    int64_t E = pn_shape_sample_elems(os);
    tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY);
    for (int k = 0; k < 2; k++) {
        if (!cg_grad_edge(g, node, k)) continue;
        const pn_node *other = &g->nodes[nd->in[1 - k]];
        const pn_shape *ks = &g->nodes[nd->in[k]].shape;
        LLVMValueRef dx = ctxp(c, TK_DX + k), ov = ctxp(c, TK_X + 1 - k);
        double sign = (nd->op == PN_OP_SUB && k == 1) ? -1.0 : 1.0;
        /* Strides of operand k and of the other operand along the output's sample dims. */
        int64_t ks_str[PN_MAX_RANK] = {0}, os_str[PN_MAX_RANK] = {0};
        int R = os->rank;
        const pn_shape *ss[2] = {ks, &other->shape};
        int64_t *st[2] = {ks_str, os_str};
        bool other_const = other->op == PN_OP_CONST;
        for (int w = 0; w < 2; w++) {
            const pn_shape *s = ss[w];
            int rs = s->rank;
            int64_t own[PN_MAX_RANK], stride = 1;
            for (int sd = rs - 1; sd >= 0; sd--) {
                own[sd] = stride;
                if (!(sd == 0 && pn_shape_batched(s))) stride *= s->d[sd];
            }
            for (int d = 1; d < R; d++) {
                int sd = d - (R - rs);
                st[w][d] = (sd >= 0 && s->d[sd] != 1 && !(sd == 0 && pn_shape_batched(s))) ? own[sd] : 0;
            }
        }
        int64_t KE = pn_shape_sample_elems(ks), OE = other_const ? 0 : pn_shape_sample_elems(&other->shape);
        bool same = ks->rank == R && memcmp(ks->d, os->d, sizeof(int64_t) * (size_t)R) == 0;
        bool osame = other_const || (other->shape.rank == R && memcmp(other->shape.d, os->d, sizeof(int64_t) * (size_t)R) == 0);
        if (same && osame) {
            LLVMValueRef lo, hi;
            cg_split(c, numel(c, os), &lo, &hi);
            cg_loop e;
            cg_loop_begin(c, &e, lo, hi, "e");
            LLVMValueRef d = cg_load(c, dy, e.iv);
            if (nd->op == PN_OP_MUL) d = cg_fmul(c, d, other_const ? F(c, other->fa[PN_FA_VALUE]) : cg_load(c, ov, e.iv), false);
            else if (sign < 0) d = LLVMBuildFNeg(c->b, d, "");
            put(c, d, dx, e.iv, acc[k]);
            cg_loop_end(c, &e);
            continue;
        }
        /* Broadcast: per sample (both batched), sum over the output elements in order. */
        LLVMValueRef lo, hi;
        cg_split(c, c->n, &lo, &hi);
        cg_loop s;
        cg_loop_begin(c, &s, lo, hi, "s");
        LLVMValueRef dxs = cg_gep(c, dx, imul(c, s.iv, I(c, KE)));
        LLVMValueRef dys = cg_gep(c, dy, imul(c, s.iv, I(c, E)));
        LLVMValueRef ovs = other_const ? NULL : pn_shape_batched(&other->shape) ? cg_gep(c, ov, imul(c, s.iv, I(c, OE))) : ov;
        if (!acc[k]) {
            zero(c, dxs, I(c, 0), I(c, KE));
        }
        cg_loop e;
        cg_loop_begin(c, &e, I(c, 0), I(c, E), "e");
        LLVMValueRef rem = e.iv, ki = I(c, 0), oi = I(c, 0);
        for (int d = R - 1; d >= 1; d--) {
            LLVMValueRef idx = irem(c, rem, I(c, os->d[d]));
            rem = idiv(c, rem, I(c, os->d[d]));
            ki = iadd(c, ki, imul(c, idx, I(c, ks_str[d])));
            oi = iadd(c, oi, imul(c, idx, I(c, os_str[d])));
        }
        LLVMValueRef d = cg_load(c, dys, e.iv);
        if (nd->op == PN_OP_MUL) d = cg_fmul(c, d, other_const ? F(c, other->fa[PN_FA_VALUE]) : cg_load(c, ovs, oi), false);
        else if (sign < 0) d = LLVMBuildFNeg(c->b, d, "");
        put(c, d, dxs, ki, true);
        cg_loop_end(c, &e);
        cg_loop_end(c, &s);
    }
    return tk_end(c);
}

/* ---- softmax, log_softmax, layernorm ------------------------------------------------------------ */
static LLVMValueRef bwd_softmax(cg *c, int node, const bool *acc) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *s = &nd->shape;
    int axis = (int)nd->ia[PN_AXIS];
    int64_t A = s->d[axis], inner = 1, outer = 1;
    for (int d = axis + 1; d < s->rank; d++) inner *= s->d[d];
    for (int d = 1; d < axis; d++) outer *= s->d[d];
    bool logsm = nd->op == PN_OP_LOG_SOFTMAX;
    tk_begin(c, node, "bwd");
    LLVMValueRef y = ctxp(c, TK_Y), dy = ctxp(c, TK_DY), dx = ctxp(c, TK_DX);
    LLVMValueRef lo, hi;
    cg_split(c, imul(c, c->n, I(c, outer * inner)), &lo, &hi);
    cg_loop l;
    cg_loop_begin(c, &l, lo, hi, "lane");
    LLVMValueRef o = idiv(c, l.iv, I(c, inner)), in = irem(c, l.iv, I(c, inner));
    LLVMValueRef base = iadd(c, imul(c, o, I(c, A * inner)), in);
    cg_loop a;
    cg_loop_begin(c, &a, I(c, 0), I(c, A), "a");
    LLVMValueRef sum = cg_loop_acc(c, &a, F(c, 0.0));
    LLVMValueRef idx = iadd(c, base, imul(c, a.iv, I(c, inner)));
    LLVMValueRef t = logsm ? cg_load(c, dy, idx) : cg_fmul(c, cg_load(c, dy, idx), cg_load(c, y, idx), false);
    cg_loop_next(&a, sum, cg_fadd(c, sum, t, true));
    cg_loop_end(c, &a);
    cg_loop b;
    cg_loop_begin(c, &b, I(c, 0), I(c, A), "b");
    LLVMValueRef idx2 = iadd(c, base, imul(c, b.iv, I(c, inner)));
    LLVMValueRef yv = cg_load(c, y, idx2), dv = cg_load(c, dy, idx2);
    LLVMValueRef r = logsm ? cg_fsub(c, dv, cg_fmul(c, cg_exp(c, yv), sum, false))
                           : cg_fmul(c, yv, cg_fsub(c, dv, sum), false);
    put(c, r, dx, idx2, acc[0]);
    cg_loop_end(c, &b);
    cg_loop_end(c, &l);
    return tk_end(c);
}

/* Row statistics of layernorm: mean and 1/sqrt(var + eps), as the forward kernel computes them. */
static void row_stats(cg *c, LLVMValueRef xr, int64_t D, double eps, LLVMValueRef *mean, LLVMValueRef *rstd) {
    cg_loop k;
    cg_loop_begin(c, &k, I(c, 0), I(c, D), "k");
    LLVMValueRef s = cg_loop_acc(c, &k, F(c, 0.0));
    cg_loop_next(&k, s, cg_fadd(c, s, cg_load(c, xr, k.iv), true));
    cg_loop_end(c, &k);
    *mean = cg_fmul(c, s, F(c, 1.0 / (double)D), false);
    cg_loop k2;
    cg_loop_begin(c, &k2, I(c, 0), I(c, D), "k2");
    LLVMValueRef q = cg_loop_acc(c, &k2, F(c, 0.0));
    LLVMValueRef dv = cg_fsub(c, cg_load(c, xr, k2.iv), *mean);
    cg_loop_next(&k2, q, cg_fma(c, dv, dv, q));
    cg_loop_end(c, &k2);
    LLVMValueRef var = cg_fmul(c, q, F(c, 1.0 / (double)D), false);
    *rstd = cg_fdiv(c, F(c, 1.0), cg_call1(c, "llvm.sqrt", cg_fadd(c, var, F(c, eps), false)));
}

static LLVMValueRef bwd_layernorm(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    double eps = nd->fa[PN_FA_VALUE];
    int64_t D;
    tk_begin(c, node, "bwd");
    LLVMValueRef rows = cg_rows(c, &nd->shape, &D);
    int64_t maxrows = g->tplan.chunk * (pn_shape_sample_elems(&nd->shape) / D);
    need_scratch(c, maxrows * 2 * 4);
    LLVMValueRef dy = ctxp(c, TK_DY), x = ctxp(c, TK_X), dx = ctxp(c, TK_DX), gw = ctxp(c, TK_GPARAMS);
    LLVMValueRef w = c->params, gb = cg_gep(c, gw, I(c, align16(D)));
    /* Every row's statistics, into this thread's scratch. */
    cg_loop r;
    cg_loop_begin(c, &r, I(c, 0), rows, "r");
    LLVMValueRef mean, rstd;
    row_stats(c, cg_gep(c, x, imul(c, r.iv, I(c, D))), D, eps, &mean, &rstd);
    cg_store(c, mean, c->scratch, imul(c, r.iv, I(c, 2)));
    cg_store(c, rstd, c->scratch, iadd(c, imul(c, r.iv, I(c, 2)), I(c, 1)));
    cg_loop_end(c, &r);
    /* Weight and bias gradients, split over features, summed over rows in order. */
    LLVMValueRef jlo, jhi;
    cg_split(c, I(c, D), &jlo, &jhi);
    zero(c, gw, jlo, jhi);
    zero(c, gb, jlo, jhi);
    cg_loop r2;
    cg_loop_begin(c, &r2, I(c, 0), rows, "r2");
    LLVMValueRef m2 = cg_load(c, c->scratch, imul(c, r2.iv, I(c, 2)));
    LLVMValueRef s2 = cg_load(c, c->scratch, iadd(c, imul(c, r2.iv, I(c, 2)), I(c, 1)));
    LLVMValueRef xr = cg_gep(c, x, imul(c, r2.iv, I(c, D))), dr = cg_gep(c, dy, imul(c, r2.iv, I(c, D)));
    cg_loop j;
    cg_loop_begin(c, &j, jlo, jhi, "j");
    LLVMValueRef d = cg_load(c, dr, j.iv);
    LLVMValueRef xh = cg_fmul(c, cg_fsub(c, cg_load(c, xr, j.iv), m2), s2, false);
    put(c, cg_fmul(c, d, xh, false), gw, j.iv, true);
    put(c, d, gb, j.iv, true);
    cg_loop_end(c, &j);
    cg_loop_end(c, &r2);
    if (cg_grad_edge(g, node, 0)) {
        LLVMValueRef lo, hi;
        cg_split(c, rows, &lo, &hi);
        cg_loop r3;
        cg_loop_begin(c, &r3, lo, hi, "r3");
        LLVMValueRef m3 = cg_load(c, c->scratch, imul(c, r3.iv, I(c, 2)));
        LLVMValueRef s3 = cg_load(c, c->scratch, iadd(c, imul(c, r3.iv, I(c, 2)), I(c, 1)));
        LLVMValueRef xr3 = cg_gep(c, x, imul(c, r3.iv, I(c, D))), dr3 = cg_gep(c, dy, imul(c, r3.iv, I(c, D)));
        LLVMValueRef dxr = cg_gep(c, dx, imul(c, r3.iv, I(c, D)));
        cg_loop k;
        cg_loop_begin(c, &k, I(c, 0), I(c, D), "k");
        LLVMValueRef a1 = cg_loop_acc(c, &k, F(c, 0.0)), a2 = cg_loop_acc(c, &k, F(c, 0.0));
        LLVMValueRef dxh = cg_fmul(c, cg_load(c, dr3, k.iv), cg_load(c, w, k.iv), false);
        LLVMValueRef xh = cg_fmul(c, cg_fsub(c, cg_load(c, xr3, k.iv), m3), s3, false);
        cg_loop_next(&k, a1, cg_fadd(c, a1, dxh, true));
        cg_loop_next(&k, a2, cg_fma(c, dxh, xh, a2));
        cg_loop_end(c, &k);
        LLVMValueRef mean1 = cg_fmul(c, a1, F(c, 1.0 / (double)D), false), mean2 = cg_fmul(c, a2, F(c, 1.0 / (double)D), false);
        cg_loop k2;
        cg_loop_begin(c, &k2, I(c, 0), I(c, D), "k2");
        LLVMValueRef dxh2 = cg_fmul(c, cg_load(c, dr3, k2.iv), cg_load(c, w, k2.iv), false);
        LLVMValueRef xh2 = cg_fmul(c, cg_fsub(c, cg_load(c, xr3, k2.iv), m3), s3, false);
        LLVMValueRef v = cg_fsub(c, cg_fsub(c, dxh2, mean1), cg_fmul(c, xh2, mean2, false));
        put(c, cg_fmul(c, v, s3, false), dxr, k2.iv, acc[0]);
        cg_loop_end(c, &k2);
        cg_loop_end(c, &r3);
    }
    return tk_end(c);
}

/* ---- embedding, concat, transpose, matmul -------------------------------------------------------- */

/* The table's gradient: zeroed, then each id's row of dy added in sample order; split by columns. */
static LLVMValueRef bwd_embedding(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    int64_t V = nd->ia[PN_EMB_VOCAB], D = nd->ia[PN_EMB_DIM];
    int64_t ids_per = pn_shape_sample_elems(&g->nodes[nd->in[0]].shape);
    tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY), ids = ctxp(c, TK_X), gw = ctxp(c, TK_GPARAMS);
    LLVMValueRef lo, hi;
    cg_split(c, I(c, D), &lo, &hi);
    cg_loop v;
    cg_loop_begin(c, &v, I(c, 0), I(c, V), "v");
    cg_loop j;
    cg_loop_begin(c, &j, lo, hi, "j");
    cg_store(c, F(c, 0.0), gw, iadd(c, imul(c, v.iv, I(c, D)), j.iv));
    cg_loop_end(c, &j);
    cg_loop_end(c, &v);
    cg_loop t;
    cg_loop_begin(c, &t, I(c, 0), imul(c, c->n, I(c, ids_per)), "t");
    LLVMValueRef id = LLVMBuildSExt(c->b, cg_load_i32(c, ids, t.iv), c->i64, "");
    LLVMValueRef row = cg_gep(c, gw, imul(c, id, I(c, D))), drow = cg_gep(c, dy, imul(c, t.iv, I(c, D)));
    cg_loop j2;
    cg_loop_begin(c, &j2, lo, hi, "j2");
    put(c, cg_load(c, drow, j2.iv), row, j2.iv, true);
    cg_loop_end(c, &j2);
    cg_loop_end(c, &t);
    (void)acc;
    return tk_end(c);
}

static LLVMValueRef bwd_concat(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    int axis = (int)nd->ia[PN_AXIS];
    int64_t inner = 1, outer = 1;
    for (int d = axis + 1; d < nd->shape.rank; d++) inner *= nd->shape.d[d];
    for (int d = 1; d < axis; d++) outer *= nd->shape.d[d];
    int64_t OA = nd->shape.d[axis];
    tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY);
    int64_t off = 0;
    for (int k = 0; k < nd->ninputs; k++) {
        int64_t A = g->nodes[nd->in[k]].shape.d[axis];
        if (cg_grad_edge(g, node, k)) {
            LLVMValueRef dx = ctxp(c, TK_DX + k);
            LLVMValueRef lo, hi;
            cg_split(c, imul(c, c->n, I(c, outer * A * inner)), &lo, &hi);
            cg_loop e;
            cg_loop_begin(c, &e, lo, hi, "e");
            LLVMValueRef o = idiv(c, e.iv, I(c, A * inner)), r = irem(c, e.iv, I(c, A * inner));
            LLVMValueRef src = iadd(c, imul(c, o, I(c, OA * inner)), iadd(c, I(c, off * inner), r));
            put(c, cg_load(c, dy, src), dx, e.iv, acc[k]);
            cg_loop_end(c, &e);
        }
        off += A;
    }
    return tk_end(c);
}

/* y = transpose(x, perm): y's element at index i (in y's dims) is x's at index i[perm^-1]. */
static LLVMValueRef bwd_transpose(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *xs = &g->nodes[nd->in[0]].shape;
    int R = nd->shape.rank;
    int64_t xstr[PN_MAX_RANK];
    int64_t st = 1;
    for (int d = R - 1; d >= 0; d--) {
        xstr[d] = st;
        st *= xs->d[d] == PN_BATCH ? 1 : xs->d[d];
    }
    int64_t per = pn_shape_sample_elems(xs);
    tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY), dx = ctxp(c, TK_DX);
    LLVMValueRef lo, hi;
    cg_split(c, numel(c, &nd->shape), &lo, &hi);
    cg_loop e;
    cg_loop_begin(c, &e, lo, hi, "e");
    LLVMValueRef rem = e.iv, xi = I(c, 0);
    for (int d = R - 1; d >= 0; d--) {
        int src = (int)nd->ia[PN_PERM + d];
        LLVMValueRef idx;
        if (nd->shape.d[d] == PN_BATCH) {
            idx = rem;
        } else {
            idx = irem(c, rem, I(c, nd->shape.d[d]));
            rem = idiv(c, rem, I(c, nd->shape.d[d]));
        }
        xi = iadd(c, xi, imul(c, idx, I(c, xs->d[src] == PN_BATCH ? per : xstr[src])));
    }
    put(c, cg_load(c, dy, e.iv), dx, xi, acc[0]);
    cg_loop_end(c, &e);
    return tk_end(c);
}

/* matmul a [B.., N, K] x b [B.., K, M]: da = dy b^T, db = a^T dy, for operands whose batch dims are
 * the output's (the only ones that carry gradients); split over the gradient's elements. */
static LLVMValueRef bwd_matmul(cg *c, int node, const bool *acc, char *err, size_t errlen) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *sa = &g->nodes[nd->in[0]].shape, *sb = &g->nodes[nd->in[1]].shape, *so = &nd->shape;
    /* a [batch, K] times an unbatched b [K, M]: each sample is a 1 x K matrix. */
    bool rows = so->rank == 2 && sa->rank == 2 && pn_shape_batched(sa) && sb->rank == 2 && !pn_shape_batched(sb);
    for (int k = 0; k < 2; k++) {
        const pn_shape *s = k ? sb : sa;
        if (!cg_grad_edge(g, node, k) || (rows && k == 0)) continue;
        if (s->rank != so->rank || s->rank < 3 || memcmp(s->d, so->d, sizeof(int64_t) * (size_t)(s->rank - 2)) != 0) {
            snprintf(err, errlen, "training: the gradient of matmul '%s' needs operand %d to have the output's batch dimensions",
                     nd->name, k + 1);
            return NULL;
        }
    }
    int R = so->rank;
    int64_t N = rows ? 1 : so->d[R - 2], M = so->d[R - 1], K = sa->rank >= 2 ? sa->d[sa->rank - 1] : sa->d[0];
    int64_t oper = pn_shape_sample_elems(so) / (N * M); /* matrices per sample */
    bool bbat = pn_shape_batched(sb) && sb->rank == R && !rows, abat = pn_shape_batched(sa) && sa->rank == R;
    int64_t bper = sb->rank >= 2 ? sb->d[sb->rank - 2] * sb->d[sb->rank - 1] : 0;
    int64_t aper = N * K;
    tk_begin(c, node, "bwd");
    LLVMValueRef dy = ctxp(c, TK_DY), a = ctxp(c, TK_X), b = ctxp(c, TK_X + 1);
    for (int k = 0; k < 2; k++) {
        if (!cg_grad_edge(g, node, k)) continue;
        LLVMValueRef dx = ctxp(c, TK_DX + k);
        int64_t rows = k ? K : N, cols = k ? M : K;
        LLVMValueRef lo, hi;
        cg_split(c, imul(c, c->n, I(c, oper * rows * cols)), &lo, &hi);
        cg_loop e;
        cg_loop_begin(c, &e, lo, hi, "e");
        LLVMValueRef mat = idiv(c, e.iv, I(c, rows * cols)), rc = irem(c, e.iv, I(c, rows * cols));
        LLVMValueRef r = idiv(c, rc, I(c, cols)), col = irem(c, rc, I(c, cols));
        /* The other operand's matrix: per output matrix, or shared when it has no batch dims. */
        LLVMValueRef ob = k ? (abat ? imul(c, mat, I(c, aper)) : I(c, 0)) : (bbat ? imul(c, mat, I(c, bper)) : I(c, 0));
        LLVMValueRef dym = imul(c, mat, I(c, N * M));
        cg_loop t;
        int64_t len = k ? N : M;
        cg_loop_begin(c, &t, I(c, 0), I(c, len), "t");
        LLVMValueRef sacc = cg_loop_acc(c, &t, F(c, 0.0));
        LLVMValueRef prod;
        if (k == 0) /* da[r=i][col=kk] = sum_j dy[i][j] b[kk][j] */
            prod = cg_fmul(c, cg_load(c, dy, iadd(c, dym, iadd(c, imul(c, r, I(c, M)), t.iv))),
                           cg_load(c, b, iadd(c, ob, iadd(c, imul(c, col, I(c, M)), t.iv))), false);
        else /* db[r=kk][col=j] = sum_i a[i][kk] dy[i][j] */
            prod = cg_fmul(c, cg_load(c, a, iadd(c, ob, iadd(c, imul(c, t.iv, I(c, K)), r))),
                           cg_load(c, dy, iadd(c, dym, iadd(c, imul(c, t.iv, I(c, M)), col))), false);
        cg_loop_next(&t, sacc, cg_fadd(c, sacc, prod, true));
        cg_loop_end(c, &t);
        put(c, sacc, dx, e.iv, acc[k]);
        cg_loop_end(c, &e);
    }
    return tk_end(c);
}

/* ---- batchnorm (training) ------------------------------------------------------------------------
 * Per chunk, stats[off + c] = mean and stats[off + C + c] = M2 of channel c over the chunk's n*HW
 * values; the sync combines the chunks by a fixed tree (Chan's formula) into global[off + c] =
 * mean, global[off + C + c] = 1/sqrt(var + eps), and updates the running statistics. */
static void bn_dims(cg *c, int node, int64_t *C, int64_t *S) {
    const pn_shape *s = &c->g->nodes[node].shape;
    *C = s->d[1];
    *S = pn_shape_sample_elems(s) / s->d[1];
}

LLVMValueRef cg_gen_bn_stats(cg *c, int node) {
    int64_t C, S;
    bn_dims(c, node, &C, &S);
    tk_begin(c, node, "bnstats");
    LLVMValueRef x = ctxp(c, TK_X);
    LLVMValueRef st = cg_gep(c, ctxp(c, TK_STATS), I(c, c->g->tplan.stat_off[node]));
    LLVMValueRef lo, hi;
    cg_split(c, I(c, C), &lo, &hi);
    LLVMValueRef cnt = LLVMBuildSIToFP(c->b, imul(c, c->n, I(c, S)), c->f32, "");
    cg_loop ch;
    cg_loop_begin(c, &ch, lo, hi, "ch");
    LLVMValueRef sum = F(c, 0.0);
    for (int pass = 0; pass < 2; pass++) {
        cg_loop s;
        cg_loop_begin(c, &s, I(c, 0), c->n, "s");
        LLVMValueRef a = cg_loop_acc(c, &s, F(c, 0.0));
        LLVMValueRef xp = cg_gep(c, x, imul(c, iadd(c, imul(c, s.iv, I(c, C)), ch.iv), I(c, S)));
        cg_loop e;
        cg_loop_begin(c, &e, I(c, 0), I(c, S), "e");
        LLVMValueRef a2 = cg_loop_acc(c, &e, a);
        LLVMValueRef v = cg_load(c, xp, e.iv);
        if (pass) {
            LLVMValueRef d = cg_fsub(c, v, sum);
            cg_loop_next(&e, a2, cg_fma(c, d, d, a2));
        } else {
            cg_loop_next(&e, a2, cg_fadd(c, a2, v, true));
        }
        cg_loop_end(c, &e);
        cg_loop_next(&s, a, a2);
        cg_loop_end(c, &s);
        if (!pass) {
            sum = cg_fdiv(c, a, cnt);
            cg_store(c, sum, st, ch.iv);
        } else {
            cg_store(c, a, st, iadd(c, ch.iv, I(c, C)));
        }
    }
    cg_loop_end(c, &ch);
    return tk_end(c);
}

LLVMValueRef cg_gen_bn_norm(cg *c, int node) {
    int64_t C, S;
    bn_dims(c, node, &C, &S);
    tk_begin(c, node, "bnnorm");
    LLVMValueRef x = ctxp(c, TK_X), y = ctxp(c, TK_Y);
    LLVMValueRef gl = cg_gep(c, ctxp(c, TK_GLOBAL), I(c, c->g->tplan.global_off[node]));
    LLVMValueRef w = c->params, b = cg_gep(c, c->params, I(c, align16(C)));
    LLVMValueRef lo, hi;
    cg_split(c, imul(c, c->n, I(c, C)), &lo, &hi);
    cg_loop pl;
    cg_loop_begin(c, &pl, lo, hi, "pl");
    LLVMValueRef ch = irem(c, pl.iv, I(c, C));
    LLVMValueRef mean = cg_load(c, gl, ch), rstd = cg_load(c, gl, iadd(c, ch, I(c, C)));
    LLVMValueRef scale = cg_fmul(c, rstd, cg_load(c, w, ch), false), bias = cg_load(c, b, ch);
    cg_loop e;
    cg_loop_begin(c, &e, I(c, 0), I(c, S), "e");
    LLVMValueRef idx = iadd(c, imul(c, pl.iv, I(c, S)), e.iv);
    cg_store(c, cg_fma(c, cg_fsub(c, cg_load(c, x, idx), mean), scale, bias), y, idx);
    cg_loop_end(c, &e);
    cg_loop_end(c, &pl);
    return tk_end(c);
}

/* Chunk sums per channel of dy (beta's gradient) and dy*xhat (gamma's), into the chunk's slot
 * and its statistics (stats[off + 2C + c], stats[off + 3C + c]) for the sync. */
LLVMValueRef cg_gen_bn_bsum(cg *c, int node) {
    int64_t C, S;
    bn_dims(c, node, &C, &S);
    tk_begin(c, node, "bnbsum");
    LLVMValueRef x = ctxp(c, TK_X), dy = ctxp(c, TK_DY), gw = ctxp(c, TK_GPARAMS);
    LLVMValueRef gl = cg_gep(c, ctxp(c, TK_GLOBAL), I(c, c->g->tplan.global_off[node]));
    LLVMValueRef st = cg_gep(c, ctxp(c, TK_STATS), I(c, c->g->tplan.stat_off[node]));
    LLVMValueRef lo, hi;
    cg_split(c, I(c, C), &lo, &hi);
    cg_loop ch;
    cg_loop_begin(c, &ch, lo, hi, "ch");
    LLVMValueRef mean = cg_load(c, gl, ch.iv), rstd = cg_load(c, gl, iadd(c, ch.iv, I(c, C)));
    cg_loop s;
    cg_loop_begin(c, &s, I(c, 0), c->n, "s");
    LLVMValueRef a = cg_loop_acc(c, &s, F(c, 0.0)), b = cg_loop_acc(c, &s, F(c, 0.0));
    LLVMValueRef base = imul(c, iadd(c, imul(c, s.iv, I(c, C)), ch.iv), I(c, S));
    cg_loop e;
    cg_loop_begin(c, &e, I(c, 0), I(c, S), "e");
    LLVMValueRef a2 = cg_loop_acc(c, &e, a), b2 = cg_loop_acc(c, &e, b);
    LLVMValueRef d = cg_load(c, dy, iadd(c, base, e.iv));
    LLVMValueRef xh = cg_fmul(c, cg_fsub(c, cg_load(c, x, iadd(c, base, e.iv)), mean), rstd, false);
    cg_loop_next(&e, a2, cg_fadd(c, a2, d, true));
    cg_loop_next(&e, b2, cg_fma(c, d, xh, b2));
    cg_loop_end(c, &e);
    cg_loop_next(&s, a, a2);
    cg_loop_next(&s, b, b2);
    cg_loop_end(c, &s);
    cg_store(c, b, gw, ch.iv);
    cg_store(c, a, gw, iadd(c, ch.iv, I(c, align16(C))));
    cg_store(c, a, st, iadd(c, ch.iv, I(c, 2 * C)));
    cg_store(c, b, st, iadd(c, ch.iv, I(c, 3 * C)));
    cg_loop_end(c, &ch);
    return tk_end(c);
}

/* dx = gamma * rstd * (dy - sum_dy / M - xhat * sum_dyxhat / M), M = values per channel in the batch. */
LLVMValueRef cg_gen_bn_bdx(cg *c, int node, bool acc) {
    int64_t C, S;
    bn_dims(c, node, &C, &S);
    tk_begin(c, node, "bnbdx");
    LLVMValueRef x = ctxp(c, TK_X), dy = ctxp(c, TK_DY), dx = ctxp(c, TK_DX);
    LLVMValueRef gl = cg_gep(c, ctxp(c, TK_GLOBAL), I(c, c->g->tplan.global_off[node]));
    LLVMValueRef invm = cg_fdiv(c, F(c, 1.0), LLVMBuildSIToFP(c->b, imul(c, ctxi(c, TK_NTOTAL), I(c, S)), c->f32, ""));
    LLVMValueRef lo, hi;
    cg_split(c, imul(c, c->n, I(c, C)), &lo, &hi);
    cg_loop pl;
    cg_loop_begin(c, &pl, lo, hi, "pl");
    LLVMValueRef ch = irem(c, pl.iv, I(c, C));
    LLVMValueRef mean = cg_load(c, gl, ch), rstd = cg_load(c, gl, iadd(c, ch, I(c, C)));
    LLVMValueRef mdy = cg_fmul(c, cg_load(c, gl, iadd(c, ch, I(c, 2 * C))), invm, false);
    LLVMValueRef mdyx = cg_fmul(c, cg_load(c, gl, iadd(c, ch, I(c, 3 * C))), invm, false);
    LLVMValueRef k = cg_fmul(c, cg_load(c, c->params, ch), rstd, false);
    cg_loop e;
    cg_loop_begin(c, &e, I(c, 0), I(c, S), "e");
    LLVMValueRef idx = iadd(c, imul(c, pl.iv, I(c, S)), e.iv);
    LLVMValueRef xh = cg_fmul(c, cg_fsub(c, cg_load(c, x, idx), mean), rstd, false);
    LLVMValueRef v = cg_fsub(c, cg_fsub(c, cg_load(c, dy, idx), mdy), cg_fmul(c, xh, mdyx, false));
    put(c, cg_fmul(c, k, v, false), dx, idx, acc);
    cg_loop_end(c, &e);
    cg_loop_end(c, &pl);
    return tk_end(c);
}

/* ---- losses --------------------------------------------------------------------------------------
 * stats[0] = the chunk's loss sum, stats[1] = its correct predictions (cross_entropy); the gradient
 * of the mean loss over the whole batch goes to the prediction. */
LLVMValueRef cg_gen_loss(cg *c, int node, bool backward, bool acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *ps = &g->nodes[nd->in[0]].shape;
    tk_begin(c, node, backward ? "loss" : "evalloss");
    LLVMValueRef p = ctxp(c, TK_X), t = ctxp(c, TK_X + 1), dp = backward ? ctxp(c, TK_DX) : NULL;
    LLVMValueRef st = ctxp(c, TK_STATS);
    LLVMValueRef ntot = LLVMBuildSIToFP(c->b, ctxi(c, TK_NTOTAL), c->f32, "");
    LLVMValueRef zero_th = LLVMBuildICmp(c->b, LLVMIntEQ, c->ith, I(c, 0), "");
    if (nd->op == PN_OP_CROSS_ENTROPY) {
        int64_t K = ps->d[1];
        for (int part = 0; part < 2; part++) {
            /* part 0: thread 0 sums the loss in row order; part 1: the gradient, split by rows. */
            if (part == 1 && !backward) break;
            cg_if f;
            LLVMValueRef lo = I(c, 0), hi = c->n;
            if (part == 0) cg_if_begin(c, &f, zero_th);
            else cg_split(c, c->n, &lo, &hi);
            cg_loop r;
            cg_loop_begin(c, &r, lo, hi, "r");
            LLVMValueRef lsum = part == 0 ? cg_loop_acc(c, &r, F(c, 0.0)) : NULL;
            LLVMValueRef good = part == 0 ? cg_loop_acc(c, &r, F(c, 0.0)) : NULL;
            LLVMValueRef row = cg_gep(c, p, imul(c, r.iv, I(c, K)));
            LLVMValueRef lab = LLVMBuildSExt(c->b, cg_load_i32(c, t, r.iv), c->i64, "");
            cg_loop k;
            cg_loop_begin(c, &k, I(c, 0), I(c, K), "k");
            LLVMValueRef mx = cg_loop_acc(c, &k, F(c, -INFINITY)), am = cg_loop_acc(c, &k, I(c, 0));
            LLVMValueRef v = cg_load(c, row, k.iv);
            LLVMValueRef gt = LLVMBuildFCmp(c->b, LLVMRealOGT, v, mx, "");
            cg_loop_next(&k, mx, fsel(c, gt, v, mx));
            cg_loop_next(&k, am, LLVMBuildSelect(c->b, gt, k.iv, am, ""));
            cg_loop_end(c, &k);
            cg_loop k2;
            cg_loop_begin(c, &k2, I(c, 0), I(c, K), "k2");
            LLVMValueRef se = cg_loop_acc(c, &k2, F(c, 0.0));
            cg_loop_next(&k2, se, cg_fadd(c, se, cg_exp(c, cg_fsub(c, cg_load(c, row, k2.iv), mx)), true));
            cg_loop_end(c, &k2);
            if (part == 0) {
                LLVMValueRef lse = cg_fadd(c, cg_log(c, se), mx, false);
                LLVMValueRef l = cg_fsub(c, lse, cg_load(c, row, lab));
                cg_loop_next(&r, lsum, cg_fadd(c, lsum, l, false));
                LLVMValueRef hit = LLVMBuildICmp(c->b, LLVMIntEQ, am, lab, "");
                cg_loop_next(&r, good, cg_fadd(c, good, fsel(c, hit, F(c, 1.0), F(c, 0.0)), false));
            } else {
                LLVMValueRef inv = cg_fdiv(c, F(c, 1.0), se);
                LLVMValueRef drow = cg_gep(c, dp, imul(c, r.iv, I(c, K)));
                cg_loop k3;
                cg_loop_begin(c, &k3, I(c, 0), I(c, K), "k3");
                LLVMValueRef sm = cg_fmul(c, cg_exp(c, cg_fsub(c, cg_load(c, row, k3.iv), mx)), inv, false);
                LLVMValueRef one = LLVMBuildICmp(c->b, LLVMIntEQ, k3.iv, lab, "");
                LLVMValueRef gv = cg_fdiv(c, cg_fsub(c, sm, fsel(c, one, F(c, 1.0), F(c, 0.0))), ntot);
                put(c, gv, drow, k3.iv, acc);
                cg_loop_end(c, &k3);
            }
            cg_loop_end(c, &r);
            if (part == 0) {
                cg_store(c, lsum, st, I(c, 0));
                cg_store(c, good, st, I(c, 1));
                cg_if_end(c, &f);
            }
        }
        return tk_end(c);
    }
    /* mse: mean over every element of (p - t)^2. */
    int64_t E = pn_shape_sample_elems(ps);
    LLVMValueRef all = LLVMBuildSIToFP(c->b, imul(c, ctxi(c, TK_NTOTAL), I(c, E)), c->f32, "");
    cg_if f;
    cg_if_begin(c, &f, zero_th);
    cg_loop e;
    cg_loop_begin(c, &e, I(c, 0), numel(c, ps), "e");
    LLVMValueRef s = cg_loop_acc(c, &e, F(c, 0.0));
    LLVMValueRef d = cg_fsub(c, cg_load(c, p, e.iv), cg_load(c, t, e.iv));
    cg_loop_next(&e, s, cg_fma(c, d, d, s));
    cg_loop_end(c, &e);
    cg_store(c, s, st, I(c, 0));
    cg_store(c, F(c, 0.0), st, I(c, 1));
    cg_if_end(c, &f);
    if (backward) {
        LLVMValueRef lo, hi;
        cg_split(c, numel(c, ps), &lo, &hi);
        cg_loop e2;
        cg_loop_begin(c, &e2, lo, hi, "e2");
        LLVMValueRef d2 = cg_fsub(c, cg_load(c, p, e2.iv), cg_load(c, t, e2.iv));
        put(c, cg_fdiv(c, cg_fmul(c, d2, F(c, 2.0), false), all), dp, e2.iv, acc);
        cg_loop_end(c, &e2);
    }
    return tk_end(c);
}

LLVMValueRef cg_gen_backward(cg *c, int node, const bool *acc) {
    const pn_node *nd = &c->g->nodes[node];
    switch (nd->op) {
    case PN_OP_DENSE: return bwd_dense(c, node, acc);
    case PN_OP_CONV2D: return bwd_conv(c, node, acc);
    case PN_OP_MAXPOOL2D:
    case PN_OP_AVGPOOL2D: return bwd_pool(c, node, acc);
    case PN_OP_GLOBAL_AVGPOOL: return bwd_global_avgpool(c, node, acc);
    case PN_OP_RELU:
    case PN_OP_LEAKY_RELU:
    case PN_OP_SIGMOID:
    case PN_OP_TANH:
    case PN_OP_GELU:
    case PN_OP_DROPOUT: return bwd_unary(c, node, acc);
    case PN_OP_ADD:
    case PN_OP_SUB:
    case PN_OP_MUL: return bwd_binary(c, node, acc);
    case PN_OP_SOFTMAX:
    case PN_OP_LOG_SOFTMAX: return bwd_softmax(c, node, acc);
    case PN_OP_LAYERNORM: return bwd_layernorm(c, node, acc);
    case PN_OP_EMBEDDING: return bwd_embedding(c, node, acc);
    case PN_OP_CONCAT: return bwd_concat(c, node, acc);
    case PN_OP_TRANSPOSE: return bwd_transpose(c, node, acc);
    case PN_OP_MATMUL: {
        char err[256];
        LLVMValueRef f = bwd_matmul(c, node, acc, err, sizeof err);
        if (!f) snprintf(c->train_err, sizeof c->train_err, "%s", err);
        return f;
    }
    case PN_OP_BATCHNORM:   /* split in two around a sync: cg_gen_bn_bsum, cg_gen_bn_bdx */
    case PN_OP_RESHAPE:
    case PN_OP_FLATTEN:     /* views share their source's gradient */
    case PN_OP_INPUT:
    case PN_OP_CONST:
    case PN_OP_CROSS_ENTROPY:
    case PN_OP_MSE:
    case PN_OP_COUNT: return NULL;
    }
    return NULL;
}

/* ---- step-wide functions ------------------------------------------------------------------------ */

LLVMValueRef cg_call_arg;
#define call_arg cg_call_arg

LLVMValueRef cg_tcp(cg *c, int k) {
    LLVMValueRef idx = I(c, k);
    return LLVMBuildLoad2(c->b, c->ptr, LLVMBuildInBoundsGEP2(c->b, c->i64, call_arg, &idx, 1, ""), "");
}
LLVMValueRef cg_tci(cg *c, int k) {
    LLVMValueRef idx = I(c, k);
    return LLVMBuildLoad2(c->b, c->i64, LLVMBuildInBoundsGEP2(c->b, c->i64, call_arg, &idx, 1, ""), "");
}
LLVMValueRef cg_tcf(cg *c, int k) {
    LLVMValueRef idx = I(c, k);
    LLVMTypeRef dbl = LLVMDoubleTypeInContext(c->ctx);
    LLVMValueRef v = LLVMBuildLoad2(c->b, dbl, LLVMBuildInBoundsGEP2(c->b, c->i64, call_arg, &idx, 1, ""), "");
    return LLVMBuildFPTrunc(c->b, v, c->f32, "");
}

void cg_step_begin(cg *c, const char *name) {
    LLVMTypeRef args[3] = {c->ptr, c->i64, c->i64};
    char *full = pn_xasprintf("%s__%s", c->px, name);
    c->fn = LLVMAddFunction(c->mod, full, LLVMFunctionType(c->vd, args, 3, 0));
    free(full);
    LLVMSetLinkage(c->fn, LLVMInternalLinkage);
    if (c->wide_vectors) fn_attr(c, "prefer-vector-width", "512");
    fn_attr(c, "no-builtins", "");
    call_arg = LLVMGetParam(c->fn, 0);
    c->ith = LLVMGetParam(c->fn, 1);
    c->nth = LLVMGetParam(c->fn, 2);
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry"));
}

/* The fixed reduction tree over nch chunk values a[i * stride], in place: for s = 1, 2, 4, ...,
 * a[i] (op)= a[i + s] for i a multiple of 2s. body(c, i, j, arg) combines entry j into entry i. */

void cg_tree(cg *c, LLVMValueRef nch, cg_tree_fn body, void *arg) {
    cg_loop lv;
    cg_loop_begin(c, &lv, I(c, 0), I(c, 40), "level");
    LLVMValueRef s = LLVMBuildShl(c->b, I(c, 1), lv.iv, "");
    cg_if f;
    cg_if_begin(c, &f, LLVMBuildICmp(c->b, LLVMIntSLT, s, nch, ""));
    LLVMValueRef s2 = imul(c, s, I(c, 2));
    cg_loop p;
    cg_loop_begin(c, &p, I(c, 0), idiv(c, iadd(c, nch, isub(c, s2, I(c, 1))), s2), "pair");
    LLVMValueRef i = imul(c, p.iv, s2), j = iadd(c, i, s);
    cg_if f2;
    cg_if_begin(c, &f2, LLVMBuildICmp(c->b, LLVMIntSLT, j, nch, ""));
    body(c, i, j, s, arg);
    cg_if_end(c, &f2);
    cg_loop_end(c, &p);
    cg_if_end(c, &f);
    cg_loop_end(c, &lv);
}

typedef struct bn_tree {
    LLVMValueRef stats, ch, batch;
    int64_t C, S, chunk, stat_floats, off;
    bool backward;
} bn_tree;

static void bn_combine(cg *c, LLVMValueRef i, LLVMValueRef j, LLVMValueRef s, void *arg) {
    bn_tree *t = arg;
    LLVMValueRef ai = cg_gep(c, t->stats, iadd(c, imul(c, i, I(c, t->stat_floats)), iadd(c, I(c, t->off), t->ch)));
    LLVMValueRef aj = cg_gep(c, t->stats, iadd(c, imul(c, j, I(c, t->stat_floats)), iadd(c, I(c, t->off), t->ch)));
    if (t->backward) {
        for (int k = 2; k < 4; k++) {
            LLVMValueRef o = I(c, k * t->C);
            cg_store(c, cg_fadd(c, cg_load(c, ai, o), cg_load(c, aj, o), false), ai, o);
        }
        return;
    }
    /* Chan et al.: counts of the two subtrees from their sample ranges. */
    LLVMValueRef ch = I(c, t->chunk);
    LLVMValueRef ia = imul(c, i, ch), ja = imul(c, j, ch), jb = cg_smin(c, imul(c, iadd(c, j, s), ch), t->batch);
    LLVMValueRef na = LLVMBuildSIToFP(c->b, imul(c, isub(c, ja, ia), I(c, t->S)), c->f32, "");
    LLVMValueRef nb = LLVMBuildSIToFP(c->b, imul(c, isub(c, jb, ja), I(c, t->S)), c->f32, "");
    LLVMValueRef n = cg_fadd(c, na, nb, false);
    LLVMValueRef ma = cg_load(c, ai, I(c, 0)), mb = cg_load(c, aj, I(c, 0));
    LLVMValueRef d = cg_fsub(c, mb, ma);
    LLVMValueRef fb = cg_fdiv(c, nb, n);
    cg_store(c, cg_fma(c, d, fb, ma), ai, I(c, 0));
    LLVMValueRef m2 = cg_fadd(c, cg_load(c, ai, I(c, t->C)), cg_load(c, aj, I(c, t->C)), false);
    m2 = cg_fma(c, cg_fmul(c, cg_fmul(c, d, d, false), na, false), fb, m2);
    cg_store(c, m2, ai, I(c, t->C));
}

LLVMValueRef cg_gen_bn_sync(cg *c, int node, bool backward) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    int64_t C, S;
    bn_dims(c, node, &C, &S);
    char *name = pn_xasprintf("bnsync%d_%s", node, backward ? "bwd" : "fwd");
    cg_step_begin(c, name);
    free(name);
    LLVMValueRef stats = cg_tcp(c, TC_STATS), batch = cg_tci(c, TC_BATCH), nch = cg_tci(c, TC_NCHUNKS);
    LLVMValueRef gl = cg_gep(c, cg_tcp(c, TC_GLOBAL), I(c, g->tplan.global_off[node]));
    LLVMValueRef prm = cg_gep(c, cg_tcp(c, TC_PARAMS), I(c, g->plan.param_offset[node]));
    LLVMValueRef lo, hi;
    cg_split(c, I(c, C), &lo, &hi);
    cg_loop ch;
    cg_loop_begin(c, &ch, lo, hi, "ch");
    bn_tree t = {stats, ch.iv, batch, C, S, g->tplan.chunk, g->tplan.stat_floats, g->tplan.stat_off[node], backward};
    cg_tree(c, nch, bn_combine, &t);
    LLVMValueRef a0 = cg_gep(c, stats, iadd(c, I(c, t.off), ch.iv));
    if (backward) {
        cg_store(c, cg_load(c, a0, I(c, 2 * C)), gl, iadd(c, ch.iv, I(c, 2 * C)));
        cg_store(c, cg_load(c, a0, I(c, 3 * C)), gl, iadd(c, ch.iv, I(c, 3 * C)));
    } else {
        LLVMValueRef M = imul(c, batch, I(c, S));
        LLVMValueRef mean = cg_load(c, a0, I(c, 0)), m2 = cg_load(c, a0, I(c, C));
        LLVMValueRef var = cg_fdiv(c, m2, LLVMBuildSIToFP(c->b, M, c->f32, ""));
        LLVMValueRef rstd = cg_fdiv(c, F(c, 1.0), cg_call1(c, "llvm.sqrt", cg_fadd(c, var, F(c, nd->fa[PN_FA_VALUE]), false)));
        cg_store(c, mean, gl, ch.iv);
        cg_store(c, rstd, gl, iadd(c, ch.iv, I(c, C)));
        /* Running statistics, with the unbiased variance, as PyTorch keeps them. */
        LLVMValueRef Mm1 = cg_smax(c, isub(c, M, I(c, 1)), I(c, 1));
        LLVMValueRef uvar = cg_fdiv(c, m2, LLVMBuildSIToFP(c->b, Mm1, c->f32, ""));
        double mom = nd->fa[PN_FA_MOMENTUM];
        LLVMValueRef rm = cg_gep(c, prm, I(c, 2 * align16(C))), rv = cg_gep(c, prm, I(c, 3 * align16(C)));
        cg_store(c, cg_fadd(c, cg_fmul(c, cg_load(c, rm, ch.iv), F(c, 1.0 - mom), false), cg_fmul(c, mean, F(c, mom), false), false), rm, ch.iv);
        cg_store(c, cg_fadd(c, cg_fmul(c, cg_load(c, rv, ch.iv), F(c, 1.0 - mom), false), cg_fmul(c, uvar, F(c, mom), false), false), rv, ch.iv);
    }
    cg_loop_end(c, &ch);
    LLVMBuildRetVoid(c->b);
    return c->fn;
}
