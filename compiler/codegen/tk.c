/* The frame of the training kernels (train.h): a kernel's context and its start, the general
 * GEMM and transposition the backward kernels share, and the step-wide functions
 * px__NAME(call, ith, nth) with their fixed reduction tree over chunks. */
#include "tk.h"
#include "../support/util.h"

#include <stdlib.h>
#include <string.h>

static void fn_attr(cg *c, const char *k, const char *v) {
    LLVMAddAttributeAtIndex(c->fn, LLVMAttributeFunctionIndex,
                            LLVMCreateStringAttribute(c->ctx, k, (unsigned)strlen(k), v, (unsigned)strlen(v)));
}

/* Starts px__t<node>_<what>(ctx, n, ith, nth). */
LLVMValueRef cg_tk_begin(cg *c, int node, const char *what) {
    LLVMTypeRef args[4] = {c->ptr, c->i64, c->i64, c->i64};
    char *name = pn_xasprintf("%s__t%d_%s", c->px, node, what);
    c->fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->vd, args, 4, 0));
    free(name);
    LLVMSetLinkage(c->fn, LLVMInternalLinkage);
    unsigned kind = LLVMGetEnumAttributeKindForName("noinline", 8);
    LLVMAddAttributeAtIndex(c->fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(c->ctx, kind, 0));
    if (c->wide_vectors) fn_attr(c, "prefer-vector-width", "512");
    fn_attr(c, "no-builtins", "");
    c->tctx = LLVMGetParam(c->fn, 0);
    c->n = LLVMGetParam(c->fn, 1);
    c->ith = LLVMGetParam(c->fn, 2);
    c->nth = LLVMGetParam(c->fn, 3);
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry"));
    c->params = ctxp(c, TK_PARAMS);
    c->scratch = ctxp(c, TK_SCRATCH);
    return c->fn;
}

LLVMValueRef cg_tk_end(cg *c) {
    LLVMBuildRetVoid(c->b);
    return c->fn;
}

/* Writes v to p[idx], or adds it when acc. */
void cg_put(cg *c, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx, bool acc) {
    if (acc) v = cg_fadd(c, cg_load(c, p, idx), v, false);
    cg_store(c, v, p, idx);
}

/* p[lo..hi) = 0. */
void cg_zero(cg *c, LLVMValueRef p, LLVMValueRef lo, LLVMValueRef hi) {
    cg_loop z;
    cg_loop_begin(c, &z, lo, hi, "z");
    cg_store(c, F(c, 0.0), p, z.iv);
    cg_loop_end(c, &z);
}

bool cg_grad_edge(const pn_graph *g, int node, int k) {
    const pn_node *n = &g->nodes[node];
    if (k < 32 && (pn_ops[n->op].nograd_inputs >> k & 1)) return false; /* ids, labels, targets */
    return g->tplan.grad[n->in[k]];
}

/* One panel's register tiles of tk_gemm: C's columns [col, col + NR) (masked) of rows m0 + i. */
typedef struct tk_tile {
    LLVMValueRef A, lda;
    int64_t ak;
    LLVMValueRef Cm, ldc, col, bp;
    int64_t ldb;
    LLVMValueRef K;
    bool acc;
    LLVMValueRef bias, gadd;
    int NV;
} tk_tile;

/* The tile of rows [r, r + mr). */
static void tile_at(cg *c, const tk_tile *t, LLVMValueRef r, int mr, LLVMValueRef *mask, bool prefetch) {
    int VW, MR, NV0;
    cg_gemm_shape(c, &VW, &MR, &NV0);
    int NV = t->NV;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    LLVMValueRef arow[16], crow[16], init[16][8], accv[16][8];
    for (int i = 0; i < mr; i++) {
        LLVMValueRef m = iadd(c, r, I(c, i));
        arow[i] = cg_gep(c, t->A, imul(c, m, t->lda));
        crow[i] = cg_gep(c, t->Cm, iadd(c, imul(c, m, t->ldc), t->col));
        for (int j = 0; j < NV; j++)
            init[i][j] = t->acc    ? cg_masked_load(c, vt, cg_gep(c, crow[i], I(c, j * VW)), mask[j])
                         : t->bias ? cg_masked_load(c, vt, cg_gep(c, t->bias, iadd(c, t->col, I(c, j * VW))), mask[j])
                                   : LLVMConstNull(vt);
    }
    /* The next row tile's lines of C (or past C's end: a prefetch never faults) are fetched for
     * writing while this tile computes, a line per k: the dW slots are megabytes, out of cache,
     * and their read (gadd) or first write would otherwise wait on memory at every tile's end. */
    LLVMValueRef next = imul(c, I(c, mr), t->ldc); /* (a plain GEP: past C at the last tile) */
    cg_pf pf = {LLVMBuildGEP2(c->b, c->f32, crow[0], &next, 1, ""), t->ldc, mr, NV};
    cg_micro_tile_a(c, arow, t->ak, mr, NV, t->bp, t->ldb, mask, I(c, 0), t->K, init, accv, prefetch ? &pf : NULL);
    for (int add = 0; add < (t->gadd ? 2 : 1); add++) {
        cg_if ga;
        if (t->gadd) cg_if_begin(c, &ga, add ? t->gadd : LLVMBuildNot(c->b, t->gadd, ""));
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < NV; j++) {
                LLVMValueRef at = cg_gep(c, crow[i], I(c, j * VW)), v = accv[i][j];
                if (add) v = cg_fadd(c, cg_masked_load(c, vt, at, mask[j]), v, false);
                cg_masked_store(c, v, at, mask[j]);
            }
        if (t->gadd) cg_if_end(c, &ga);
    }
}

/* Rows [m0, m0 + rows) in tiles of mr rows, then one row at a time. */
static void tile_rows(cg *c, const tk_tile *t, LLVMValueRef m0, LLVMValueRef rows, int mr, LLVMValueRef *mask) {
    LLVMValueRef nb = idiv(c, rows, I(c, mr)), rest = iadd(c, m0, imul(c, nb, I(c, mr)));
    cg_loop b;
    cg_loop_begin(c, &b, I(c, 0), nb, "rtile");
    tile_at(c, t, iadd(c, m0, imul(c, b.iv, I(c, mr))), mr, mask, t->gadd != NULL);
    cg_loop_end(c, &b);
    cg_loop r;
    cg_loop_begin(c, &r, rest, iadd(c, m0, rows), "r");
    tile_at(c, t, r.iv, 1, mask, false);
    cg_loop_end(c, &r);
}

/* ---- a general GEMM ---------------------------------------------------------------------------
 * C[m*ldc + j] (+)= sum_{k<K} A[m*lda + k*ak] * B[k*ldb + j], for m < M and j in [n0, n1). Register
 * tiles of MR rows by NV vectors; with split, threads take (panel, row tile) pairs in order. Each
 * element sums k in ascending order, so any split gives the same bits. With panel > 0, B is stored
 * in panels of `panel` columns (ldb == panel): B[k][j] at (j / panel) * K * panel + k * panel +
 * j % panel, and a register tile's columns lie in one of them. With gadd (an i1, not with acc)
 * true, C = C + the sum instead, the sum made from zero first: fl(C + sum). */
static void tk_gemm(cg *c, LLVMValueRef M, LLVMValueRef n0, LLVMValueRef n1, LLVMValueRef K, LLVMValueRef A,
                    LLVMValueRef lda, int64_t ak, LLVMValueRef Bm, int64_t ldb, int64_t panel, LLVMValueRef Cm,
                    LLVMValueRef ldc, bool acc, bool split, LLVMValueRef bias, LLVMValueRef gadd) {
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    /* A narrow C (a known width under NV vectors: conv1's dW has Ci*KH*KW = 9 columns) takes
     * fewer vectors per row and more rows per tile, so that fewer lanes idle under the mask. The
     * sums are the same: each element still adds its k in ascending order. */
    if (LLVMIsAConstantInt(n0) && LLVMIsAConstantInt(n1)) {
        int64_t w = LLVMConstIntGetSExtValue(n1) - LLVMConstIntGetSExtValue(n0);
        if (w > 0 && w <= (int64_t)VW * (NV - 1)) {
            NV = (int)((w + VW - 1) / VW);
            MR = NV == 1 ? 16 : 12;
            int fit = cg_tile_rows_max(c, NV, 0); /* AVX2: 16 rows of one vector would spill */
            if (MR > fit) MR = fit;
        }
    }
    int64_t NR = (int64_t)VW * NV;
    /* A tile never straddles two panels: its width divides theirs, or B is one panel (n1 <= panel). */
    PN_ASSERT(!panel || (ldb == panel && (panel % NR == 0 || (LLVMIsAConstantInt(n0) && LLVMIsAConstantInt(n1) &&
                                                                 LLVMConstIntGetSExtValue(n0) == 0 &&
                                                                 LLVMConstIntGetSExtValue(n1) <= panel))));
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
    }
    LLVMValueRef m0 = imul(c, mt, I(c, MR));
    LLVMValueRef rows = imin(c, I(c, MR), isub(c, M, m0));
    LLVMValueRef bp = panel ? cg_gep(c, Bm, iadd(c, imul(c, idiv(c, col, I(c, panel)), imul(c, K, I(c, panel))),
                                                 irem(c, col, I(c, panel))))
                            : cg_gep(c, Bm, col);
    tk_tile tt = {A, lda, ak, Cm, ldc, col, bp, ldb, K, acc, bias, gadd, NV};
    if (!cg_masks_take_vregs(c)) {
        tile_rows(c, &tt, m0, rows, MR, mask);
    } else {
        /* Masks take vector registers here (AVX2, NEON): on AVX2 two more than a 6 x 2 tile leaves
         * free, and its k loop spilled. A tile whose columns all lie inside C takes constant masks (plain loads and
         * stores, no registers); the last panel's, masked, takes fewer rows at a time. */
        LLVMValueRef ones[8];
        for (int j = 0; j < NV; j++) ones[j] = cg_mask_const(c, VW, VW);
        int fit = cg_tile_rows_max(c, NV, NV), parts = (MR + fit - 1) / fit, mrm = (MR + parts - 1) / parts;
        LLVMValueRef whole = LLVMBuildICmp(c->b, LLVMIntSGE, rem, LLVMConstInt(c->i32, (unsigned long long)NR, 0), "");
        for (int w = 1; w >= 0; w--) {
            cg_if f;
            cg_if_begin(c, &f, w ? whole : LLVMBuildNot(c->b, whole, ""));
            tile_rows(c, &tt, m0, rows, w ? MR : mrm, w ? ones : mask);
            cg_if_end(c, &f);
        }
    }
    cg_loop_end(c, &t);
}

void cg_tk_gemm(cg *c, LLVMValueRef M, LLVMValueRef n0, LLVMValueRef n1, LLVMValueRef K, LLVMValueRef A,
                LLVMValueRef lda, LLVMValueRef Bm, int64_t ldb, LLVMValueRef Cm, LLVMValueRef ldc, bool acc, bool split,
                LLVMValueRef bias) {
    tk_gemm(c, M, n0, n1, K, A, lda, 1, Bm, ldb, 0, Cm, ldc, acc, split, bias, NULL);
}

void cg_tk_gemm_wt(cg *c, LLVMValueRef M, int64_t U, LLVMValueRef K, LLVMValueRef A, LLVMValueRef lda, LLVMValueRef Bm,
                   LLVMValueRef Cm, LLVMValueRef ldc, bool acc, bool split, LLVMValueRef bias) {
    int64_t P = pn_wt_panel(U);
    tk_gemm(c, M, I(c, 0), I(c, U), K, A, lda, 1, Bm, P, P, Cm, ldc, acc, split, bias, NULL);
}

void cg_tk_gemm_at(cg *c, LLVMValueRef M, LLVMValueRef n0, LLVMValueRef n1, LLVMValueRef K, LLVMValueRef A,
                   int64_t lda, LLVMValueRef Bm, int64_t ldb, LLVMValueRef Cm, LLVMValueRef ldc, bool split,
                   LLVMValueRef gadd) {
    tk_gemm(c, M, n0, n1, K, A, I(c, 1), lda, Bm, ldb, 0, Cm, ldc, false, split, NULL, gadd);
}

void cg_transpose_regs(cg *c, int VW, LLVMValueRef *r) {
    for (int d = VW / 2; d >= 1; d /= 2)
        for (int i = 0; i < VW; i++) {
            if (i & d) continue;
            LLVMValueRef mi[16], mj[16];
            for (int l = 0; l < VW; l++) {
                mi[l] = LLVMConstInt(c->i32, (unsigned long long)(l & d ? VW + l - d : l), 0);
                mj[l] = LLVMConstInt(c->i32, (unsigned long long)(l & d ? VW + l : l + d), 0);
            }
            LLVMValueRef ni = LLVMBuildShuffleVector(c->b, r[i], r[i + d], LLVMConstVector(mi, (unsigned)VW), "");
            LLVMValueRef nj = LLVMBuildShuffleVector(c->b, r[i], r[i + d], LLVMConstVector(mj, (unsigned)VW), "");
            r[i] = ni;
            r[i + d] = nj;
        }
}

/* dst[j*ld_dst + i] = src[i*cols + j] for i in [i0, i1), j in [j0, j1), one element at a time. */
static void transpose_scalar(cg *c, LLVMValueRef dst, LLVMValueRef ld_dst, LLVMValueRef src, int64_t cols,
                             LLVMValueRef i0, LLVMValueRef i1, LLVMValueRef j0, LLVMValueRef j1) {
    cg_loop i;
    cg_loop_begin(c, &i, i0, i1, "ti");
    cg_loop j;
    cg_loop_begin(c, &j, j0, j1, "tj");
    cg_store(c, cg_load(c, src, iadd(c, imul(c, i.iv, I(c, cols)), j.iv)), dst, iadd(c, imul(c, j.iv, ld_dst), i.iv));
    cg_loop_end(c, &j);
    cg_loop_end(c, &i);
}

/* dst[j*ld_dst + i] = src[i*cols + j] for i < rows, j < cols (this thread does all of it): VW x VW
 * blocks through registers, the ragged rows and columns element by element. */
void cg_tk_transpose(cg *c, LLVMValueRef dst, LLVMValueRef ld_dst, LLVMValueRef src, LLVMValueRef rows, int64_t cols) {
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    LLVMValueRef rf = imul(c, idiv(c, rows, I(c, VW)), I(c, VW)); /* rows in whole blocks */
    int64_t cf = cols / VW * VW;
    if (cf > 0) {
        cg_loop ib;
        cg_loop_begin(c, &ib, I(c, 0), idiv(c, rows, I(c, VW)), "tib");
        LLVMValueRef i0 = imul(c, ib.iv, I(c, VW));
        cg_loop jb;
        cg_loop_begin(c, &jb, I(c, 0), I(c, cols / VW), "tjb");
        LLVMValueRef j0 = imul(c, jb.iv, I(c, VW));
        LLVMValueRef r[16];
        for (int i = 0; i < VW; i++) {
            r[i] = LLVMBuildLoad2(c->b, vt, cg_gep(c, src, iadd(c, imul(c, iadd(c, i0, I(c, i)), I(c, cols)), j0)), "");
            LLVMSetAlignment(r[i], 4);
        }
        cg_transpose_regs(c, VW, r);
        for (int i = 0; i < VW; i++)
            LLVMSetAlignment(LLVMBuildStore(c->b, r[i], cg_gep(c, dst, iadd(c, imul(c, iadd(c, j0, I(c, i)), ld_dst), i0))), 4);
        cg_loop_end(c, &jb);
        cg_loop_end(c, &ib);
    }
    if (cf < cols) transpose_scalar(c, dst, ld_dst, src, cols, I(c, 0), rf, I(c, cf), I(c, cols));
    transpose_scalar(c, dst, ld_dst, src, cols, rf, rows, I(c, 0), I(c, cols));
}

void cg_need_scratch(cg *c, int64_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (bytes > c->scratch_bytes) c->scratch_bytes = bytes;
}

/* ---- step-wide functions ------------------------------------------------------------------------ */


LLVMValueRef cg_tcp(cg *c, int k) {
    LLVMValueRef idx = I(c, k);
    return LLVMBuildLoad2(c->b, c->ptr, LLVMBuildInBoundsGEP2(c->b, c->i64, c->call, &idx, 1, ""), "");
}
LLVMValueRef cg_tci(cg *c, int k) {
    LLVMValueRef idx = I(c, k);
    return LLVMBuildLoad2(c->b, c->i64, LLVMBuildInBoundsGEP2(c->b, c->i64, c->call, &idx, 1, ""), "");
}
LLVMValueRef cg_tcf(cg *c, int k) {
    LLVMValueRef idx = I(c, k);
    LLVMTypeRef dbl = LLVMDoubleTypeInContext(c->ctx);
    LLVMValueRef v = LLVMBuildLoad2(c->b, dbl, LLVMBuildInBoundsGEP2(c->b, c->i64, c->call, &idx, 1, ""), "");
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
    c->call = LLVMGetParam(c->fn, 0);
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
