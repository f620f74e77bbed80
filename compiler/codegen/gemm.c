/* Kernels for dense and matmul. out[r, u] = sum_k x[r, k] * W[u, k] + b[u], then the fused
 * epilogue; work is split over (row, column) tiles so any thread count gives identical sums. */
#include "cg.h"
#include "../support/util.h"

static int64_t align16(int64_t v) { return (v + 15) / 16 * 16; }

/* dense: x [rows, K], params W [U, K] then b [U]. */
LLVMValueRef cg_gen_dense(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_node *x = &c->g->nodes[nd->in[0]];
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    int64_t K, U = nd->ia[PN_DENSE_UNITS];
    LLVMValueRef rows = cg_rows(c, &x->shape, &K);
    LLVMValueRef w = c->params;
    LLVMValueRef bias = nd->ia[PN_DENSE_BIAS] ? cg_gep(c, c->params, cg_i64(c, align16(U * K))) : NULL;
    LLVMValueRef lo, hi;
    cg_split(c, LLVMBuildMul(c->b, rows, cg_i64(c, U), ""), &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "t");
    LLVMValueRef r = LLVMBuildSDiv(c->b, t.iv, cg_i64(c, U), "r");
    LLVMValueRef u = LLVMBuildSRem(c->b, t.iv, cg_i64(c, U), "u");
    LLVMValueRef xrow = cg_gep(c, in, LLVMBuildMul(c->b, r, cg_i64(c, K), ""));
    LLVMValueRef wrow = cg_gep(c, w, LLVMBuildMul(c->b, u, cg_i64(c, K), ""));
    /* The dot product: a reduction the vectoriser may reorder (fixed order per output). */
    cg_loop k;
    cg_loop_begin(c, &k, cg_i64(c, 0), cg_i64(c, K), "k");
    LLVMValueRef acc = cg_loop_acc(c, &k, cg_f32(c, 0.0));
    cg_loop_next(&k, acc, cg_fma(c, cg_load(c, xrow, k.iv), cg_load(c, wrow, k.iv), acc));
    cg_loop_end(c, &k);
    LLVMValueRef v = acc;
    if (bias) v = cg_fadd(c, v, cg_load(c, bias, u), false);
    v = cg_epilogue(c, node, v);
    cg_store(c, v, out, t.iv);
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}

/* matmul: a [..., N, K] times b [..., K, M] with NumPy-broadcast batch dims (1-d operands are
 * promoted as in torch.matmul). out[bi, i, :] = sum_k a[bi, i, k] * b[bi, k, :]. */
LLVMValueRef cg_gen_matmul(cg *c, int node) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    pn_shape sa = g->nodes[nd->in[0]].shape, sb = g->nodes[nd->in[1]].shape;
    if (sa.rank == 1) sa = (pn_shape){2, {1, sa.d[0]}};
    if (sb.rank == 1) sb = (pn_shape){2, {sb.d[0], 1}};
    int64_t N = sa.d[sa.rank - 2], K = sa.d[sa.rank - 1], M = sb.d[sb.rank - 1];
    int nba = sa.rank - 2, nbb = sb.rank - 2, nb = nba > nbb ? nba : nbb;
    /* Output batch dims and the operands' strides along them (0 where broadcast). */
    int64_t ob[PN_MAX_RANK], sta[PN_MAX_RANK], stb[PN_MAX_RANK];
    for (int d = 0; d < nb; d++) {
        int da = d - (nb - nba), db = d - (nb - nbb);
        int64_t xa = da >= 0 ? sa.d[da] : 1, xb = db >= 0 ? sb.d[db] : 1;
        ob[d] = xa == 1 ? xb : xa;
        int64_t s = N * K;
        for (int e = da + 1; da >= 0 && e < nba; e++) s *= sa.d[e];
        sta[d] = (da >= 0 && xa != 1) ? s : 0;
        s = K * M;
        for (int e = db + 1; db >= 0 && e < nbb; e++) s *= sb.d[e];
        stb[d] = (db >= 0 && xb != 1) ? s : 0;
    }
    LLVMValueRef fn = cg_kernel_begin(c, node, 2);
    LLVMValueRef out = LLVMGetParam(fn, 0), pa = LLVMGetParam(fn, 1), pb = LLVMGetParam(fn, 2);
    LLVMValueRef nbatch = cg_i64(c, 1);
    for (int d = 0; d < nb; d++)
        nbatch = LLVMBuildMul(c->b, nbatch, ob[d] == PN_BATCH ? c->n : cg_i64(c, ob[d]), "");
    LLVMValueRef lo, hi;
    /* a: [batch, K] makes the batch the row axis of a single matrix. */
    LLVMValueRef Nv = N == PN_BATCH ? c->n : cg_i64(c, N);
    cg_split(c, LLVMBuildMul(c->b, nbatch, Nv, ""), &lo, &hi);
    cg_loop t;
    cg_loop_begin(c, &t, lo, hi, "t");
    LLVMValueRef bi = LLVMBuildSDiv(c->b, t.iv, Nv, "bi");
    LLVMValueRef i = LLVMBuildSRem(c->b, t.iv, Nv, "i");
    LLVMValueRef aoff = cg_i64(c, 0), boff = cg_i64(c, 0), rest = bi;
    for (int d = nb - 1; d >= 0; d--) {
        LLVMValueRef idx = d == 0 ? rest : LLVMBuildSRem(c->b, rest, cg_i64(c, ob[d]), "");
        if (d > 0) rest = LLVMBuildSDiv(c->b, rest, cg_i64(c, ob[d]), "");
        aoff = LLVMBuildAdd(c->b, aoff, LLVMBuildMul(c->b, idx, cg_i64(c, sta[d]), ""), "");
        boff = LLVMBuildAdd(c->b, boff, LLVMBuildMul(c->b, idx, cg_i64(c, stb[d]), ""), "");
    }
    LLVMValueRef arow = cg_gep(c, pa, LLVMBuildAdd(c->b, aoff, LLVMBuildMul(c->b, i, cg_i64(c, K), ""), ""));
    LLVMValueRef bmat = cg_gep(c, pb, boff);
    LLVMValueRef orow = cg_gep(c, out, LLVMBuildMul(c->b, t.iv, cg_i64(c, M), ""));
    cg_loop j0;
    cg_loop_begin(c, &j0, cg_i64(c, 0), cg_i64(c, M), "j0");
    cg_store(c, cg_f32(c, 0.0), orow, j0.iv);
    cg_loop_end(c, &j0);
    cg_loop k;
    cg_loop_begin(c, &k, cg_i64(c, 0), cg_i64(c, K), "k");
    LLVMValueRef av = cg_load(c, arow, k.iv);
    LLVMValueRef brow = cg_gep(c, bmat, LLVMBuildMul(c->b, k.iv, cg_i64(c, M), ""));
    cg_loop j;
    cg_loop_begin(c, &j, cg_i64(c, 0), cg_i64(c, M), "j");
    LLVMValueRef acc = cg_fma(c, av, cg_load(c, brow, j.iv), cg_load(c, orow, j.iv));
    cg_store(c, acc, orow, j.iv);
    cg_loop_end(c, &j);
    cg_loop_end(c, &k);
    if (g->plan.fuse_next[node] >= 0) {
        cg_loop j2;
        cg_loop_begin(c, &j2, cg_i64(c, 0), cg_i64(c, M), "j2");
        cg_store(c, cg_epilogue(c, node, cg_load(c, orow, j2.iv)), orow, j2.iv);
        cg_loop_end(c, &j2);
    }
    cg_loop_end(c, &t);
    cg_kernel_end(c);
    return fn;
}

/* ---- the register-blocked dense kernel ------------------------------------------------------
 * out[R, U] = x[R, K] * W^T + b, with W packed at create time into panels of NR columns:
 * panel p holds W[p*NR + j][k] at [k][j] (zero beyond U), so a k step loads NR/VW vectors.
 * A micro-tile of MR rows x NR columns lives in MR * NV vector registers through a block of KC
 * steps. Threads take a rectangle of (row tile, panel) space; every output element sums its k
 * in ascending order whatever the split, so results do not depend on the thread count. */

void cg_gemm_shape(const cg *c, int *vw, int *mr, int *nv) {
    if (c->wide_vectors) *vw = 16, *mr = 8, *nv = 3;
    else if (c->x86) *vw = 8, *mr = 6, *nv = 2;
    else *vw = 4, *mr = 8, *nv = 3;
}

bool cg_masks_take_vregs(const cg *c) { return !c->wide_vectors; }

int cg_tile_rows_max(const cg *c, int ncol, int nmask) {
    /* Vector registers: 32 with AVX-512 (and NEON), 16 with AVX2. A tile takes its accumulators,
     * a row of B, a broadcast of A, its masks where they take vector registers, and one to spare. */
    int regs = c->wide_vectors || !c->x86 ? 32 : 16, masks = cg_masks_take_vregs(c) ? nmask : 0;
    int rows = (regs - ncol - 1 - masks - 1) / ncol;
    return rows < 1 ? 1 : rows > 16 ? 16 : rows;
}

LLVMValueRef cg_splat(cg *c, LLVMValueRef s, int vw) {
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(s), (unsigned)vw);
    LLVMValueRef v = LLVMBuildInsertElement(c->b, LLVMGetUndef(vt), s, LLVMConstInt(c->i32, 0, 0), "");
    LLVMValueRef zero[64];
    for (int i = 0; i < vw; i++) zero[i] = LLVMConstInt(c->i32, 0, 0);
    return LLVMBuildShuffleVector(c->b, v, LLVMGetUndef(vt), LLVMConstVector(zero, (unsigned)vw), "");
}

LLVMValueRef cg_lane_index(cg *c, int vw) {
    LLVMValueRef l[64];
    for (int i = 0; i < vw; i++) l[i] = cg_i64(c, i);
    return LLVMConstVector(l, (unsigned)vw);
}

LLVMValueRef cg_lanes_below(cg *c, int vw, LLVMValueRef base, LLVMValueRef limit) {
    LLVMValueRef at = LLVMBuildAdd(c->b, cg_splat(c, base, vw), cg_lane_index(c, vw), "");
    return LLVMBuildICmp(c->b, LLVMIntSLT, at, cg_splat(c, limit, vw), "");
}

LLVMValueRef cg_mask_const(cg *c, int vw, int valid) {
    LLVMValueRef m[64];
    for (int i = 0; i < vw; i++) m[i] = LLVMConstInt(c->i1, i < valid, 0);
    return LLVMConstVector(m, (unsigned)vw);
}

void cg_panel_masks(cg *c, LLVMValueRef is_tail, int tail, LLVMValueRef *mask) {
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    for (int j = 0; j < NV; j++) {
        int valid = tail - j * VW;
        valid = valid < 0 ? 0 : valid > VW ? VW : valid;
        mask[j] = cg_select(c, is_tail, cg_mask_const(c, VW, valid), cg_mask_const(c, VW, VW));
    }
}

LLVMValueRef cg_masked_load(cg *c, LLVMTypeRef vt, LLVMValueRef p, LLVMValueRef mask) {
    LLVMTypeRef ts[2] = {vt, c->ptr};
    unsigned id = LLVMLookupIntrinsicID("llvm.masked.load", 16);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(c->mod, id, ts, 2);
    LLVMValueRef args[4] = {p, LLVMConstInt(c->i32, 4, 0), mask, LLVMConstNull(vt)};
    return LLVMBuildCall2(c->b, LLVMIntrinsicGetType(c->ctx, id, ts, 2), f, args, 4, "");
}

void cg_masked_store(cg *c, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask) {
    LLVMTypeRef ts[2] = {LLVMTypeOf(v), c->ptr};
    unsigned id = LLVMLookupIntrinsicID("llvm.masked.store", 17);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(c->mod, id, ts, 2);
    LLVMValueRef args[4] = {v, p, LLVMConstInt(c->i32, 4, 0), mask};
    LLVMBuildCall2(c->b, LLVMIntrinsicGetType(c->ctx, id, ts, 2), f, args, 4, "");
}

void cg_prefetch(cg *c, LLVMValueRef p, int rw) {
    LLVMTypeRef ts[1] = {c->ptr};
    unsigned id = LLVMLookupIntrinsicID("llvm.prefetch", 13);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(c->mod, id, ts, 1);
    LLVMValueRef args[4] = {p, LLVMConstInt(c->i32, (unsigned long long)rw, 0), LLVMConstInt(c->i32, 3, 0),
                            LLVMConstInt(c->i32, 1, 0)};
    LLVMBuildCall2(c->b, LLVMIntrinsicGetType(c->ctx, id, ts, 1), f, args, 4, "");
}

/* K block of the dense kernel: a 48-column panel slice of 1024 rows (192 KiB) stays in L2 while
 * the thread's row tiles pass over it; 1024 measured 5-10% faster than 512 on mlp_l. */
enum { GEMM_KC = 1024 };

/* The inner product of a micro-tile: for k in [k0, k1), acc[i][j] += a_i[k] * b_k[j*VW ...], with
 * a_i[k] read from row pointer arow[i]. Row b_k is bpanel + k * NR, or, with a table of offsets,
 * bpanel + boffs[k] (unaligned; masked by bmask when given). */
void cg_micro_tile_ex(cg *c, LLVMValueRef *arow, int mr, LLVMValueRef bpanel, int64_t NR, LLVMValueRef boffs,
                      LLVMValueRef *bmask, LLVMValueRef k0, LLVMValueRef k1, LLVMValueRef init[][8],
                      LLVMValueRef acc[][8]) {
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    cg_micro_tile_win(c, arow, mr, NV, 1, 0, bpanel, NR, boffs, bmask, k0, k1, init, acc);
}

/* The micro-tile with a_i[k] at arow[i][k * ak]. Its k loop keeps the tile in registers: a spilled
 * accumulator is stored and reloaded at every k, and in a process whose stack slot shares its low
 * 12 address bits with a stream the loop reads, every reload waits on the store (4K aliasing;
 * docs/performance.md, "Register tiles that stay in registers"; tests/cli/spill_test.py). */
static void micro_tile(cg *c, LLVMValueRef *arow, int64_t ak, int mr, int nv, int nwin, int64_t wstride,
                       LLVMValueRef bpanel, int64_t NR, LLVMValueRef boffs, LLVMValueRef *bmask, LLVMValueRef k0,
                       LLVMValueRef k1, LLVMValueRef init[][8], LLVMValueRef acc[][8], const cg_pf *pf) {
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    PN_ASSERT(nv * nwin <= 8 && mr <= 16 && (nwin == 1 || boffs));
    int ncol = nv * nwin;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    cg_loop k;
    cg_loop_begin(c, &k, k0, k1, "k");
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < ncol; j++) acc[i][j] = cg_loop_acc(c, &k, init[i][j]);
    LLVMValueRef b[8];
    for (int w = 0; w < nwin; w++) {
        LLVMValueRef off;
        if (boffs) {
            LLVMValueRef at = LLVMBuildAdd(c->b, k.iv, cg_i64(c, w * wstride), "");
            off = LLVMBuildLoad2(c->b, c->i64, LLVMBuildInBoundsGEP2(c->b, c->i64, boffs, &at, 1, ""), "");
        } else {
            off = LLVMBuildMul(c->b, k.iv, cg_i64(c, NR), "");
        }
        LLVMValueRef brow = cg_gep(c, bpanel, off);
        for (int j = 0; j < nv; j++) {
            LLVMValueRef at = cg_gep(c, brow, cg_i64(c, j * VW));
            LLVMValueRef *bj = &b[w * nv + j];
            if (bmask) {
                *bj = cg_masked_load(c, vt, at, bmask[j]);
            } else {
                *bj = LLVMBuildLoad2(c->b, vt, at, "");
                LLVMSetAlignment(*bj, boffs ? 4 : (unsigned)(VW * 4 < 64 ? VW * 4 : 64));
            }
        }
    }
    if (pf) { /* line min(k - k0, rows * nv - 1) of the block: row / nv, vector % nv */
        LLVMValueRef at = cg_smin(c, LLVMBuildSub(c->b, k.iv, k0, ""), cg_i64(c, pf->rows * pf->nv - 1));
        LLVMValueRef r = LLVMBuildSDiv(c->b, at, cg_i64(c, pf->nv), ""), v = LLVMBuildSRem(c->b, at, cg_i64(c, pf->nv), "");
        LLVMValueRef off = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, r, pf->ld, ""), LLVMBuildMul(c->b, v, cg_i64(c, VW), ""), "");
        cg_prefetch(c, LLVMBuildGEP2(c->b, c->f32, pf->base, &off, 1, ""), 1);
    }
    for (int i = 0; i < mr; i++) {
        LLVMValueRef ka = ak == 1 ? k.iv : LLVMBuildMul(c->b, k.iv, cg_i64(c, ak), "");
        LLVMValueRef a = cg_splat(c, cg_load(c, arow[i], ka), VW);
        for (int j = 0; j < ncol; j++) cg_loop_next(&k, acc[i][j], cg_fma(c, a, b[j], acc[i][j]));
    }
    /* Fully unrolled, the windows' constant offsets let loads be shared between them, and the
     * registers spill. So does a short loop of known length unrolled whole: every step's loads
     * are scheduled first (attention's scores backward, 4 steps: 13 spills a tile). */
    bool short_k = LLVMIsAConstantInt(k0) && LLVMIsAConstantInt(k1) &&
                   LLVMConstIntGetSExtValue(k1) - LLVMConstIntGetSExtValue(k0) <= 16;
    if (nwin > 1) k.unroll = 2;
    else if (short_k) k.unroll = 1;
    cg_loop_end(c, &k);
}

void cg_micro_tile_win(cg *c, LLVMValueRef *arow, int mr, int nv, int nwin, int64_t wstride, LLVMValueRef bpanel,
                       int64_t NR, LLVMValueRef boffs, LLVMValueRef *bmask, LLVMValueRef k0, LLVMValueRef k1,
                       LLVMValueRef init[][8], LLVMValueRef acc[][8]) {
    micro_tile(c, arow, 1, mr, nv, nwin, wstride, bpanel, NR, boffs, bmask, k0, k1, init, acc, NULL);
}

void cg_micro_tile_a(cg *c, LLVMValueRef *arow, int64_t ak, int mr, int nv, LLVMValueRef bpanel, int64_t NR,
                     LLVMValueRef *bmask, LLVMValueRef k0, LLVMValueRef k1, LLVMValueRef init[][8], LLVMValueRef acc[][8],
                     const cg_pf *pf) {
    micro_tile(c, arow, ak, mr, nv, 1, 0, bpanel, NR, NULL, bmask, k0, k1, init, acc, pf);
}

void cg_micro_tile(cg *c, LLVMValueRef *arow, int mr, LLVMValueRef bpanel, int64_t NR, LLVMValueRef k0,
                   LLVMValueRef k1, LLVMValueRef init[][8], LLVMValueRef acc[][8]) {
    cg_micro_tile_ex(c, arow, mr, bpanel, NR, NULL, NULL, k0, k1, init, acc);
}

/* One tile of the packed dense kernel: rows r0 .. r0+mr-1 (clamped to R; stores skip the rest)
 * by the NR columns of panel bp, over k in [k0, k1). */
struct dense_tile {
    int node, mr;
    LLVMValueRef r0, R, Rm1, in, out;
    int64_t K, U;
    LLVMValueRef col0, bp;
    int64_t NR;
    LLVMValueRef k0, k1, first, last, *mask, *bvec;
};

static void dense_tile(cg *c, const struct dense_tile *t) {
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    LLVMValueRef xrow[16], orow[16], valid[16];
    for (int i = 0; i < t->mr; i++) {
        LLVMValueRef r = LLVMBuildAdd(c->b, t->r0, cg_i64(c, i), "");
        valid[i] = LLVMBuildICmp(c->b, LLVMIntSLT, r, t->R, "");
        LLVMValueRef rc = cg_smin(c, r, t->Rm1);
        xrow[i] = cg_gep(c, t->in, LLVMBuildMul(c->b, rc, cg_i64(c, t->K), ""));
        orow[i] = cg_gep(c, t->out, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, rc, cg_i64(c, t->U), ""), t->col0, ""));
    }
    /* Start from zero, or from the partial sums of the previous k block. */
    LLVMValueRef init[16][8];
    for (int i = 0; i < t->mr; i++)
        for (int j = 0; j < NV; j++) {
            LLVMValueRef prev = cg_masked_load(c, vt, cg_gep(c, orow[i], cg_i64(c, j * VW)), t->mask[j]);
            init[i][j] = cg_select(c, t->first, LLVMConstNull(vt), prev);
        }
    LLVMValueRef acc[16][8];
    cg_micro_tile(c, xrow, t->mr, t->bp, t->NR, t->k0, t->k1, init, acc);
    /* Store; the last k block adds the bias and applies the fused epilogue. */
    for (int i = 0; i < t->mr; i++) {
        LLVMBasicBlockRef st = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "store");
        LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "next");
        LLVMBuildCondBr(c->b, valid[i], st, next);
        LLVMPositionBuilderAtEnd(c->b, st);
        for (int j = 0; j < NV; j++) {
            LLVMValueRef v = acc[i][j];
            LLVMValueRef fin = cg_epilogue(c, t->node, cg_fadd(c, v, t->bvec[j], false));
            cg_masked_store(c, cg_select(c, t->last, fin, v), cg_gep(c, orow[i], cg_i64(c, j * VW)), t->mask[j]);
        }
        LLVMBuildBr(c->b, next);
        LLVMPositionBuilderAtEnd(c->b, next);
    }
}

LLVMValueRef cg_gen_dense_packed(cg *c, int node, int64_t pack_rel) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_node *x = &c->g->nodes[nd->in[0]];
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    int64_t NR = (int64_t)VW * NV;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    int64_t K, U = nd->ia[PN_DENSE_UNITS];
    int64_t NP = (U + NR - 1) / NR;
    LLVMValueRef R = cg_rows(c, &x->shape, &K);
    LLVMValueRef packed = cg_gep(c, c->params, cg_i64(c, pack_rel));
    LLVMValueRef bias = cg_gep(c, packed, cg_i64(c, NP * K * NR)); /* padded to NP * NR */
    bool has_bias = nd->ia[PN_DENSE_BIAS] != 0 || cg_folded_bn(c, node) >= 0;
    /* Work items are (panel, row tile) pairs, panel-major; each thread takes a contiguous run of
     * them, so it streams only its share of the weights (the activations are the smaller
     * operand) and the threads' shares differ by at most one tile. @shard(features, K): K
     * workers, each a slice of the output features. */
    LLVMValueRef RT = LLVMBuildSDiv(c->b, LLVMBuildAdd(c->b, R, cg_i64(c, MR - 1), ""), cg_i64(c, MR), "RT");
    LLVMValueRef active = nd->shard > 1 ? cg_smin(c, c->nth, cg_i64(c, nd->shard)) : c->nth;
    LLVMBasicBlockRef work = LLVMAppendBasicBlockInContext(c->ctx, fn, "work");
    LLVMBasicBlockRef idle = LLVMAppendBasicBlockInContext(c->ctx, fn, "idle");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, c->ith, active, ""), work, idle);
    LLVMPositionBuilderAtEnd(c->b, idle);
    LLVMBuildRetVoid(c->b);
    LLVMPositionBuilderAtEnd(c->b, work);
    LLVMValueRef items = LLVMBuildMul(c->b, RT, cg_i64(c, NP), "");
    LLVMValueRef it_lo = LLVMBuildSDiv(c->b, LLVMBuildMul(c->b, items, c->ith, ""), active, "");
    LLVMValueRef it_hi = LLVMBuildSDiv(c->b, LLVMBuildMul(c->b, items, LLVMBuildAdd(c->b, c->ith, cg_i64(c, 1), ""), ""), active, "");
    LLVMValueRef p_lo = LLVMBuildSDiv(c->b, it_lo, RT, "");
    LLVMValueRef p_hi = LLVMBuildSDiv(c->b, LLVMBuildAdd(c->b, it_hi, LLVMBuildSub(c->b, RT, cg_i64(c, 1), ""), ""), RT, "");
    LLVMValueRef Rm1 = LLVMBuildSub(c->b, R, cg_i64(c, 1), "");
    int64_t nkc = (K + GEMM_KC - 1) / GEMM_KC;
    int tail = (int)(U - (NP - 1) * NR); /* valid columns of the last panel */
    cg_loop kc;
    cg_loop_begin(c, &kc, cg_i64(c, 0), cg_i64(c, nkc), "kc");
    LLVMValueRef k0 = LLVMBuildMul(c->b, kc.iv, cg_i64(c, GEMM_KC), "k0");
    LLVMValueRef k1 = cg_smin(c, LLVMBuildAdd(c->b, k0, cg_i64(c, GEMM_KC), ""), cg_i64(c, K));
    LLVMValueRef first = LLVMBuildICmp(c->b, LLVMIntEQ, kc.iv, cg_i64(c, 0), "");
    LLVMValueRef last = LLVMBuildICmp(c->b, LLVMIntEQ, kc.iv, cg_i64(c, nkc - 1), "");
    cg_loop p;
    cg_loop_begin(c, &p, p_lo, p_hi, "p");
    LLVMValueRef bp = cg_gep(c, packed, LLVMBuildMul(c->b, p.iv, cg_i64(c, K * NR), ""));
    LLVMValueRef is_tail = LLVMBuildICmp(c->b, LLVMIntEQ, p.iv, cg_i64(c, NP - 1), "");
    LLVMValueRef col0 = LLVMBuildMul(c->b, p.iv, cg_i64(c, NR), "col0");
    /* Column masks of the NV vectors of this panel. */
    LLVMValueRef mask[8];
    cg_panel_masks(c, is_tail, tail, mask);
    LLVMValueRef bvec[8];
    for (int j = 0; j < NV; j++)
        bvec[j] = has_bias ? LLVMBuildLoad2(c->b, vt, cg_gep(c, bias, LLVMBuildAdd(c->b, col0, cg_i64(c, j * VW), "")), "")
                           : LLVMConstNull(vt);
    LLVMValueRef pfirst = LLVMBuildMul(c->b, p.iv, RT, "");
    LLVMValueRef rt_lo = cg_smax(c, LLVMBuildSub(c->b, it_lo, pfirst, ""), cg_i64(c, 0));
    LLVMValueRef rt_hi = cg_smin(c, LLVMBuildSub(c->b, it_hi, pfirst, ""), RT);
    cg_loop rt;
    cg_loop_begin(c, &rt, rt_lo, rt_hi, "rt");
    LLVMValueRef r0 = LLVMBuildMul(c->b, rt.iv, cg_i64(c, MR), "r0");
    /* A full tile of MR rows, or, for the last rows (a batch of one, say), the smallest of 1, 2
     * and 4 rows that covers them: no multiply-adds for rows that do not exist. */
    LLVMValueRef left = LLVMBuildSub(c->b, R, r0, "left");
    int sizes[4] = {1, 2, 4, MR};
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, fn, "tile_done");
    for (int v = 0; v < 4; v++) {
        int mr = sizes[v];
        if (mr > MR || (v < 3 && mr >= MR)) continue;
        LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c->ctx, fn, "tile");
        LLVMBasicBlockRef other = LLVMAppendBasicBlockInContext(c->ctx, fn, "tile_next");
        LLVMValueRef fits = mr == MR ? LLVMConstInt(c->i1, 1, 0) : LLVMBuildICmp(c->b, LLVMIntSLE, left, cg_i64(c, mr), "");
        LLVMBuildCondBr(c->b, fits, body, other);
        LLVMPositionBuilderAtEnd(c->b, body);
        struct dense_tile t = {node, mr, r0, R, Rm1, in, out, K, U, col0, bp, NR, k0, k1, first, last, mask, bvec};
        dense_tile(c, &t);
        LLVMBuildBr(c->b, done);
        LLVMPositionBuilderAtEnd(c->b, other);
    }
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, done);
    cg_loop_end(c, &rt);
    cg_loop_end(c, &p);
    cg_loop_end(c, &kc);
    cg_kernel_end(c);
    return fn;
}
