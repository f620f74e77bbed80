/* Training kernels of the normalisations (beside reduce.c): the backward of softmax,
 * log_softmax and layernorm, and batchnorm with batch statistics: per-chunk statistics, the
 * sync that combines them across chunks, normalisation, and its backward. */
#include "tk.h"
#include "../support/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- softmax, log_softmax, causal_softmax, layernorm --------------------------------------------- */
/* causal_softmax's backward is softmax's over the last axis: its masked outputs are 0, so they add
 * nothing to the sum and get a zero gradient. */
LLVMValueRef cg_bwd_softmax(cg *c, int node, const bool *acc) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *s = &nd->shape;
    int axis = (int)nd->ia[PN_AXIS];
    int64_t A = s->d[axis], inner = 1, outer = 1;
    for (int d = axis + 1; d < s->rank; d++) inner *= s->d[d];
    for (int d = 1; d < axis; d++) outer *= s->d[d];
    bool logsm = nd->op == PN_OP_LOG_SOFTMAX;
    cg_tk_begin(c, node, "bwd");
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
    cg_put(c, r, dx, idx2, acc[0]);
    cg_loop_end(c, &b);
    cg_loop_end(c, &l);
    return cg_tk_end(c);
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

LLVMValueRef cg_bwd_layernorm(cg *c, int node, const bool *acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    double eps = nd->fa[PN_FA_VALUE];
    int64_t D;
    cg_tk_begin(c, node, "bwd");
    LLVMValueRef rows = cg_rows(c, &nd->shape, &D);
    int64_t maxrows = g->tplan.chunk * (pn_shape_sample_elems(&nd->shape) / D);
    cg_need_scratch(c, maxrows * 2 * 4);
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
    cg_zero(c, gw, jlo, jhi);
    cg_zero(c, gb, jlo, jhi);
    cg_loop r2;
    cg_loop_begin(c, &r2, I(c, 0), rows, "r2");
    LLVMValueRef m2 = cg_load(c, c->scratch, imul(c, r2.iv, I(c, 2)));
    LLVMValueRef s2 = cg_load(c, c->scratch, iadd(c, imul(c, r2.iv, I(c, 2)), I(c, 1)));
    LLVMValueRef xr = cg_gep(c, x, imul(c, r2.iv, I(c, D))), dr = cg_gep(c, dy, imul(c, r2.iv, I(c, D)));
    cg_loop j;
    cg_loop_begin(c, &j, jlo, jhi, "j");
    LLVMValueRef d = cg_load(c, dr, j.iv);
    LLVMValueRef xh = cg_fmul(c, cg_fsub(c, cg_load(c, xr, j.iv), m2), s2, false);
    cg_put(c, cg_fmul(c, d, xh, false), gw, j.iv, true);
    cg_put(c, d, gb, j.iv, true);
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
        cg_put(c, cg_fmul(c, v, s3, false), dxr, k2.iv, acc[0]);
        cg_loop_end(c, &k2);
        cg_loop_end(c, &r3);
    }
    return cg_tk_end(c);
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

static LLVMValueRef gen_bn_stats(cg *c, int node) {
    int64_t C, S;
    bn_dims(c, node, &C, &S);
    cg_tk_begin(c, node, "bnstats");
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
    return cg_tk_end(c);
}

static LLVMValueRef gen_bn_norm(cg *c, int node) {
    int64_t C, S;
    bn_dims(c, node, &C, &S);
    cg_tk_begin(c, node, "bnnorm");
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
    return cg_tk_end(c);
}

/* Chunk sums per channel of dy (beta's gradient) and dy*xhat (gamma's), into the chunk's slot
 * and its statistics (stats[off + 2C + c], stats[off + 3C + c]) for the sync. */
static LLVMValueRef gen_bn_bsum(cg *c, int node) {
    int64_t C, S;
    bn_dims(c, node, &C, &S);
    cg_tk_begin(c, node, "bnbsum");
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
    return cg_tk_end(c);
}

/* dx = gamma * rstd * (dy - sum_dy / M - xhat * sum_dyxhat / M), M = values per channel in the batch. */
static LLVMValueRef gen_bn_bdx(cg *c, int node, bool acc) {
    int64_t C, S;
    bn_dims(c, node, &C, &S);
    cg_tk_begin(c, node, "bnbdx");
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
    cg_put(c, cg_fmul(c, k, v, false), dx, idx, acc);
    cg_loop_end(c, &e);
    cg_loop_end(c, &pl);
    return cg_tk_end(c);
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

/* The step-wide function between the chunks' kernels: combines their statistics (or sums) by the
 * fixed tree into the global ones. */
static LLVMValueRef gen_bn_sync(cg *c, int node, bool backward) {
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

/* batchnorm's pass of the training step (the codegen table's synced column). Forward: the chunks'
 * statistics, their sync, normalisation. Backward: the chunks' sums of dy and dy*xhat (and the
 * gamma and beta gradients), their sync, then dx when x takes a gradient. */
cg_pass cg_bn_pass(cg *c, int node, bool backward, const bool *acc) {
    cg_pass p = {0};
    p.kernel = backward ? gen_bn_bsum(c, node) : gen_bn_stats(c, node);
    p.sync = gen_bn_sync(c, node, backward);
    if (!backward) p.after = gen_bn_norm(c, node);
    else if (cg_grad_edge(c->g, node, 0)) p.after = gen_bn_bdx(c, node, acc[0]);
    return p;
}
