/* Helpers of the training kernels (tk.c) and the short IR builders their generators share. A
 * training kernel reads its operands through the context slots of train.h (c->tctx); a
 * step-wide function reads the step call (c->call). */
#ifndef PN_CG_TK_H
#define PN_CG_TK_H
#include "train.h"

static inline LLVMValueRef I(cg *c, int64_t v) { return cg_i64(c, v); }
static inline LLVMValueRef iadd(cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(c->b, a, b, ""); }
static inline LLVMValueRef isub(cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSub(c->b, a, b, ""); }
static inline LLVMValueRef imul(cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildMul(c->b, a, b, ""); }
static inline LLVMValueRef idiv(cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSDiv(c->b, a, b, ""); }
static inline LLVMValueRef irem(cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSRem(c->b, a, b, ""); }
static inline LLVMValueRef F(cg *c, double v) { return cg_f32(c, v); }
static inline LLVMValueRef imin(cg *c, LLVMValueRef a, LLVMValueRef b) { return cg_smin(c, a, b); }
static inline LLVMValueRef fsel(cg *c, LLVMValueRef cond, LLVMValueRef a, LLVMValueRef b) { return cg_select(c, cond, a, b); }
static inline LLVMValueRef fgt0(cg *c, LLVMValueRef v) { return LLVMBuildFCmp(c->b, LLVMRealOGT, v, F(c, 0.0), ""); }
/* Sample count of a batched shape for the chunk: n * elems. */
static inline LLVMValueRef numel(cg *c, const pn_shape *s) { return cg_numel(c, s); }
static inline int64_t align16(int64_t v) { return (v + 15) / 16 * 16; }

/* Context slot k of the kernel being built, its address and its value as a pointer or an i64. */
static inline LLVMValueRef slot(cg *c, int k) {
    LLVMValueRef idx = I(c, k);
    return LLVMBuildInBoundsGEP2(c->b, c->i64, c->tctx, &idx, 1, "");
}
static inline LLVMValueRef ctxp(cg *c, int k) { return LLVMBuildLoad2(c->b, c->ptr, slot(c, k), ""); }
static inline LLVMValueRef ctxi(cg *c, int k) { return LLVMBuildLoad2(c->b, c->i64, slot(c, k), ""); }

/* Starts px__t<node>_<what>(ctx, n, ith, nth); cg_tk_end returns it. */
LLVMValueRef cg_tk_begin(cg *c, int node, const char *what);
LLVMValueRef cg_tk_end(cg *c);
/* Writes v to p[idx], or adds it when acc. */
void cg_put(cg *c, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx, bool acc);
/* p[lo..hi) = 0. */
void cg_zero(cg *c, LLVMValueRef p, LLVMValueRef lo, LLVMValueRef hi);
/* C[m*ldc + j] (+)= sum_{k<K} A[m*lda + k] * B[k*ldb + j] (+ bias[j]) for m < M, j in [n0, n1). */
void cg_tk_gemm(cg *c, LLVMValueRef M, LLVMValueRef n0, LLVMValueRef n1, LLVMValueRef K, LLVMValueRef A,
                LLVMValueRef lda, LLVMValueRef Bm, int64_t ldb, LLVMValueRef Cm, LLVMValueRef ldc, bool acc, bool split,
                LLVMValueRef bias);
/* C = A^T B without acc: C[m*ldc + j] = sum_{k<K} A[k*lda + m] * B[k*ldb + j], A read in place
 * (a tile's rows are adjacent floats of A's rows); where gadd (an i1, or NULL for never) is true,
 * C = C + that sum, the sum made first (the tree's addition of train.h's TK_GADD). */
void cg_tk_gemm_at(cg *c, LLVMValueRef M, LLVMValueRef n0, LLVMValueRef n1, LLVMValueRef K, LLVMValueRef A,
                   int64_t lda, LLVMValueRef Bm, int64_t ldb, LLVMValueRef Cm, LLVMValueRef ldc, bool split,
                   LLVMValueRef gadd);
/* The same over columns [0, U), with B [K, U] in the global area's panels of pn_wt_panel(U) columns
 * (graph.h): a dense layer's W^T, or its W in panels (U its K there). */
void cg_tk_gemm_wt(cg *c, LLVMValueRef M, int64_t U, LLVMValueRef K, LLVMValueRef A, LLVMValueRef lda, LLVMValueRef Bm,
                   LLVMValueRef Cm, LLVMValueRef ldc, bool acc, bool split, LLVMValueRef bias);
/* dst[j*ld_dst + i] = src[i*cols + j] for i < rows, j < cols (this thread does all of it). */
void cg_tk_transpose(cg *c, LLVMValueRef dst, LLVMValueRef ld_dst, LLVMValueRef src, LLVMValueRef rows, int64_t cols);
/* Raises the per-thread scratch to at least bytes. */
void cg_need_scratch(cg *c, int64_t bytes);

#endif
